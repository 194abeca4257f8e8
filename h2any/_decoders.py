"""Streaming content decoders for ``Content-Encoding`` (gzip, deflate, br, zstd).

Each decoder takes the body piece by piece and never holds more than one piece's output;
``max_size`` bounds the total output, checked before the memory is allocated, so a
decompression bomb raises :class:`DecodingError` instead of exhausting memory.
"""

from __future__ import annotations

import importlib
import zlib
from typing import Any, Protocol

from ._exceptions import DecodingError

__all__ = ("SUPPORTED_ENCODINGS", "ContentDecoder", "accept_encoding", "make_decoder")


def _import_first(*names: str) -> Any:
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


# Optional: brotli (the `brotli` extra), zstd (the `zstd` extra, or Python 3.14's stdlib).
_brotli = _import_first("brotli", "brotlicffi")
_zstd = _import_first("compression.zstd", "zstandard")

# The piece size for bounded decompression: output is produced at most this much at a time.
_PIECE = 256 * 1024


class ContentDecoder(Protocol):
    def decode(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


class _Limit:
    """Counts decoded bytes against ``max_size``."""

    def __init__(self, max_size: int | None) -> None:
        self.remaining = max_size

    def take(self, data: bytes) -> bytes:
        if self.remaining is not None:
            self.remaining -= len(data)
            if self.remaining < 0:
                raise DecodingError("the decompressed body exceeds max_decompressed_size")
        return data


class _ZlibDecoder:
    """gzip and deflate (zlib-wrapped, or raw as some servers send it)."""

    def __init__(self, name: str, wbits: int, limit: _Limit) -> None:
        self._name = name
        self._wbits = wbits
        self._decompressor = zlib.decompressobj(wbits)
        self._limit = limit
        self._first = True
        self._pending = b""
        self._seen = False

    def decode(self, data: bytes) -> bytes:
        if data:
            self._seen = True
        if self._first:
            if self._name == "deflate":
                # "deflate" is meant to be zlib-wrapped, but raw DEFLATE is common too: tell
                # them apart by the zlib header (two bytes), however the body is chunked.
                self._pending += data
                if len(self._pending) < 2:
                    return b""
                data, self._pending = self._pending, b""
                header = data[0] * 256 + data[1]
                if data[0] & 0x0F != 8 or header % 31:
                    self._decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
            self._first = False
        try:
            return self._decode(data)
        except zlib.error as exc:
            raise DecodingError(f"invalid {self._name} data: {exc}") from exc

    def decode_raw(self, data: bytes) -> bytes:
        try:
            return self._decode(data)
        except zlib.error as exc:
            raise DecodingError(f"invalid {self._name} data: {exc}") from exc

    def _decode(self, data: bytes) -> bytes:
        decompressor = self._decompressor
        pieces = []
        while data:
            remaining = self._limit.remaining
            cap = _PIECE if remaining is None else min(_PIECE, remaining + 1)
            piece = decompressor.decompress(data, cap)
            pieces.append(self._limit.take(piece))
            data = decompressor.unconsumed_tail
            if decompressor.eof:
                if decompressor.unused_data.strip(b"\x00"):
                    if self._name == "gzip":  # concatenated gzip members
                        rest = decompressor.unused_data
                        self._decompressor = decompressor = zlib.decompressobj(self._wbits)
                        data = rest
                        continue
                    raise DecodingError(f"trailing garbage after the {self._name} stream")
                break
        return b"".join(pieces)

    def flush(self) -> bytes:
        if not self._seen:  # no body at all (HEAD, 204, 304): nothing to decode
            return b""
        if self._pending:  # a body shorter than a zlib header
            self._decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
            data, self._pending = self._pending, b""
            output = self.decode_raw(data)
            if not self._decompressor.eof:
                raise DecodingError(f"the {self._name} body is truncated")
            return output
        if not self._decompressor.eof:
            raise DecodingError(f"the {self._name} body is truncated")
        return self._limit.take(self._decompressor.flush())


class _BrotliDecoder:
    def __init__(self, limit: _Limit) -> None:
        assert _brotli is not None
        self._decompressor = _brotli.Decompressor()
        self._limit = limit
        self._seen = False

    def decode(self, data: bytes) -> bytes:
        if data:
            self._seen = True
        try:
            output = self._decompressor.process(data)
        except Exception as exc:  # brotli raises its own error type
            raise DecodingError(f"invalid br data: {exc}") from exc
        return self._limit.take(output)

    def flush(self) -> bytes:
        finished = getattr(self._decompressor, "is_finished", None)
        if self._seen and finished is not None and not finished():
            raise DecodingError("the br body is truncated")
        return b""


class _ZstdDecoder:
    def __init__(self, limit: _Limit) -> None:
        assert _zstd is not None
        decompressor = _zstd.ZstdDecompressor()
        if hasattr(decompressor, "decompressobj"):  # zstandard
            decompressor = decompressor.decompressobj()
        self._decompressor = decompressor
        self._limit = limit
        self._seen = False

    def decode(self, data: bytes) -> bytes:
        if data:
            self._seen = True
        try:
            output = self._decompressor.decompress(data)
        except Exception as exc:
            raise DecodingError(f"invalid zstd data: {exc}") from exc
        return self._limit.take(output)

    def flush(self) -> bytes:
        eof = getattr(self._decompressor, "eof", None)
        if self._seen and eof is False:
            raise DecodingError("the zstd body is truncated")
        return b""


class _IdentityDecoder:
    def decode(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


class _ChainDecoder:
    """Several codings: ``Content-Encoding: gzip, br`` was applied gzip first, so decode
    br first."""

    def __init__(self, decoders: list[ContentDecoder]) -> None:
        self._decoders = decoders

    def decode(self, data: bytes) -> bytes:
        for decoder in self._decoders:
            data = decoder.decode(data)
        return data

    def flush(self) -> bytes:
        data = b""
        for decoder in self._decoders:
            data = decoder.decode(data) + decoder.flush() if data else decoder.flush()
        return data


def _available() -> tuple[str, ...]:
    names = ["gzip", "deflate"]
    if _brotli is not None:
        names.append("br")
    if _zstd is not None:
        names.append("zstd")
    return tuple(names)


SUPPORTED_ENCODINGS = _available()


def accept_encoding() -> bytes:
    """The ``Accept-Encoding`` value for what this installation can decode."""
    return ", ".join(SUPPORTED_ENCODINGS).encode()


def make_decoder(content_encoding: str | None, max_size: int | None = None) -> ContentDecoder:
    """A decoder for a ``Content-Encoding`` header value (identity when absent)."""
    limit = _Limit(max_size)
    if not content_encoding:
        return _IdentityDecoder()
    decoders: list[ContentDecoder] = []
    for name in reversed([c.strip().lower() for c in content_encoding.split(",")]):
        if name in ("", "identity"):
            continue
        if name in ("gzip", "x-gzip"):
            decoders.append(_ZlibDecoder("gzip", zlib.MAX_WBITS | 16, limit))
        elif name == "deflate":
            decoders.append(_ZlibDecoder("deflate", zlib.MAX_WBITS, limit))
        elif name == "br" and _brotli is not None:
            decoders.append(_BrotliDecoder(limit))
        elif name == "zstd" and _zstd is not None:
            decoders.append(_ZstdDecoder(limit))
        else:
            raise DecodingError(
                f"unsupported Content-Encoding {name!r} (this installation decodes "
                f"{', '.join(SUPPORTED_ENCODINGS)}; read(decode_content=False) gives the raw bytes)"
            )
    if not decoders:
        return _IdentityDecoder()
    return decoders[0] if len(decoders) == 1 else _ChainDecoder(decoders)
