"""Streaming content decoders for ``Content-Encoding`` (gzip, deflate, br, zstd).

Every decoder works in bounded pieces: `ContentDecoder.decode_piece` takes the body
piece by piece and hands out at most about `PIECE` decoded bytes per call, keeping the
rest of its input (still compressed) until it is asked again; ``more`` says whether it has
output left without new input. ``max_size`` bounds the total of the *final* output (the
intermediate steps of a chain such as ``gzip, gzip`` do not count), and is checked as each
piece is produced -- a piece is never made larger than what the limit still allows (plus a
zstd block, 128 KiB, at most) -- so a decompression bomb raises
[`DecodingError`][h2any.DecodingError] having allocated about one piece, not the bomb.
"""

from __future__ import annotations

import importlib
import zlib
from collections import deque
from typing import Any, Protocol

from ._exceptions import DecodingError

# How each coding is bounded
#
# * gzip, deflate: zlib's ``decompress(data, max_length)`` with ``unconsumed_tail``.
# * br: brotli >= 1.2's ``process(data, output_buffer_limit=...)`` and
#   ``can_accept_more_data()``. Without them (older brotli, brotlicffi) the input is fed a
#   byte at a time while the output runs large -- a brotli meta-block can still expand one
#   byte to 16 MiB there, which is the bound such an installation gets.
# * zstd: zstandard's ``decompressobj`` cannot cap its output (Python 3.14's
#   ``compression.zstd`` could, but one way for both is simpler), so the frame is
#   skimmed: block headers are three bytes that give each block's size and at most how
#   much it decodes to (its own size for a raw block, the size it names for an RLE block,
#   128 KiB for a compressed one). The input is cut after the blocks that fill a piece,
#   and the rest waits. A frame that cannot be skimmed (an unknown magic number, say) is
#   fed 32 bytes at a time: 8 blocks, 1 MiB at most.

__all__ = ("PIECE", "SUPPORTED_ENCODINGS", "ContentDecoder", "accept_encoding", "make_decoder")


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


def _brotli_has_output_limit() -> bool:
    if _brotli is None:
        return False
    decompressor = _brotli.Decompressor()
    try:
        decompressor.process(b"", output_buffer_limit=1)
    except TypeError:
        return False
    return hasattr(decompressor, "can_accept_more_data")


_BROTLI_OUTPUT_LIMIT = _brotli_has_output_limit()

PIECE = 256 * 1024
"""Decoded output is produced at most this much at a time (a zstd block more at worst)."""


class ContentDecoder(Protocol):
    more: bool
    """Whether `decode_piece` has output left without new input."""

    def decode_piece(self, data: bytes) -> bytes:
        """Take ``data`` and return at most about `PIECE` decoded bytes."""
        ...

    def decode(self, data: bytes) -> bytes:
        """Take ``data`` and return all the output it gives (bounded by ``max_size`` only)."""
        ...

    def flush(self) -> bytes:
        """The body is over: check it was complete (call once ``more`` is false)."""
        ...


class _Limit:
    """Counts decoded bytes against ``max_size``."""

    __slots__ = ("remaining",)

    def __init__(self, max_size: int | None) -> None:
        self.remaining = max_size

    def cap(self) -> int:
        """The most output the next piece may have: one byte past the limit shows it."""
        remaining = self.remaining
        return PIECE if remaining is None else max(1, min(PIECE, remaining + 1))

    def take(self, data: bytes) -> bytes:
        if self.remaining is not None:
            self.remaining -= len(data)
            if self.remaining < 0:
                raise DecodingError("the decompressed body exceeds max_decompressed_size")
        return data


class _Decoder:
    """What every decoder shares: ``decode`` as the sum of its pieces."""

    more = False

    def decode_piece(self, data: bytes) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> bytes:
        output = self.decode_piece(data)
        if not self.more:
            return output
        pieces = [output]
        while self.more:
            pieces.append(self.decode_piece(b""))
        return b"".join(pieces)

    def flush(self) -> bytes:
        return b""


class _ZlibDecoder(_Decoder):
    """gzip and deflate (zlib-wrapped, or raw as some servers send it)."""

    def __init__(self, name: str, wbits: int, limit: _Limit) -> None:
        self._name = name
        self._wbits = wbits
        self._decompressor = zlib.decompressobj(wbits)
        self._limit = limit
        self._first = True
        self._pending = b""
        self._seen = False

    def decode_piece(self, data: bytes) -> bytes:
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

    def _decode(self, data: bytes) -> bytes:
        decompressor = self._decompressor
        tail = decompressor.unconsumed_tail
        if tail:
            data = tail + data if data else tail
        cap = self._limit.cap()
        output = decompressor.decompress(data, cap)
        while decompressor.eof and not output:
            unused = decompressor.unused_data
            if not unused.strip(b"\x00"):
                break
            if self._name != "gzip":
                raise DecodingError(f"trailing garbage after the {self._name} stream")
            # Concatenated gzip members: a new decompressor for the next one.
            self._decompressor = decompressor = zlib.decompressobj(self._wbits)
            output = decompressor.decompress(unused, cap)
        # A full piece may have more behind it even with all input consumed.
        self.more = (
            bool(decompressor.unconsumed_tail)
            or len(output) >= cap
            or (decompressor.eof and bool(decompressor.unused_data.strip(b"\x00")))
        )
        return self._limit.take(output)

    def flush(self) -> bytes:
        if not self._seen:  # no body at all (HEAD, 204, 304): nothing to decode
            return b""
        if self._pending:  # a body shorter than a zlib header
            self._decompressor = zlib.decompressobj(-zlib.MAX_WBITS)
            data, self._pending = self._pending, b""
            self._first = False
            try:
                output = self._limit.take(self._decompressor.decompress(data))
            except zlib.error as exc:
                raise DecodingError(f"invalid {self._name} data: {exc}") from exc
            if not self._decompressor.eof:
                raise DecodingError(f"the {self._name} body is truncated")
            return output
        if not self._decompressor.eof:
            raise DecodingError(f"the {self._name} body is truncated")
        return self._limit.take(self._decompressor.flush())


class _BrotliDecoder(_Decoder):
    def __init__(self, limit: _Limit) -> None:
        assert _brotli is not None
        self._decompressor = _brotli.Decompressor()
        self._limit = limit
        self._seen = False
        self._input = b""
        self._large = False

    def decode_piece(self, data: bytes) -> bytes:
        if data:
            self._seen = True
        decompressor = self._decompressor
        cap = self._limit.cap()
        try:
            if _BROTLI_OUTPUT_LIMIT:
                if self.more:
                    # New input only once the last piece's output has all been taken.
                    if data:
                        self._input += data
                    if self._input and decompressor.can_accept_more_data():
                        data, self._input = self._input, b""
                    else:
                        data = b""
                output = decompressor.process(data, output_buffer_limit=cap)
                self.more = (
                    bool(self._input)
                    or len(output) >= cap
                    or not decompressor.can_accept_more_data()
                )
            else:
                # No output cap: the input in slices, a byte at a time while output runs
                # large (one byte can still give a 16 MiB meta-block).
                if data:
                    self._input += data
                data = self._input
                size = 1 if self._large else 1024
                self._input = data[size:]
                output = decompressor.process(data[:size])
                self._large = len(output) >= cap // 8
                self.more = bool(self._input)
        except Exception as exc:  # brotli raises its own error type
            raise DecodingError(f"invalid br data: {exc}") from exc
        return self._limit.take(output)

    def flush(self) -> bytes:
        finished = getattr(self._decompressor, "is_finished", None)
        if self._seen and finished is not None and not finished():
            raise DecodingError("the br body is truncated")
        return b""


_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_BLOCK_MAX = 128 * 1024
_FRAME, _BLOCK, _CHECKSUM, _OPAQUE = range(4)


class _ZstdDecoder(_Decoder):
    def __init__(self, limit: _Limit) -> None:
        assert _zstd is not None
        decompressor = _zstd.ZstdDecompressor()
        if hasattr(decompressor, "decompressobj"):  # zstandard
            decompressor = decompressor.decompressobj()
        self._decompressor = decompressor
        self._limit = limit
        self._seen = False
        self._input = b""  # not yet fed to the decompressor; starts at offset _fed
        self._fed = 0
        # The skimmer: what is at offset _next, and the blocks seen but not yet fed
        # (offset of their end, most output).
        self._next = 0
        self._kind = _FRAME
        self._checksum = False
        self._blocks: deque[tuple[int, int]] = deque()

    def _skim(self) -> None:
        data, start = self._input, self._fed
        end = start + len(data)
        while self._kind != _OPAQUE:
            at = self._next - start
            if self._kind == _BLOCK:
                if self._next + 3 > end:
                    return
                header = int.from_bytes(data[at : at + 3], "little")
                block_type, size = (header >> 1) & 3, header >> 3
                if block_type == 3:  # reserved: let the decompressor say it is invalid
                    self._kind = _OPAQUE
                    return
                self._next += 3 + (1 if block_type == 1 else size)
                self._blocks.append((self._next, _ZSTD_BLOCK_MAX if block_type == 2 else size))
                if header & 1:
                    self._kind = _CHECKSUM
            elif self._kind == _CHECKSUM:
                self._next += 4 if self._checksum else 0
                self._kind = _FRAME
            else:  # a frame header
                if self._next + 5 > end:
                    return
                magic = int.from_bytes(data[at : at + 4], "little")
                if magic != _ZSTD_MAGIC:
                    self._kind = _OPAQUE  # skippable or legacy frames: fed in slices
                    return
                descriptor = data[at + 4]
                single_segment = descriptor >> 5 & 1
                fcs_size = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
                self._next += 5 + (not single_segment) + (0, 1, 2, 4)[descriptor & 3] + fcs_size
                self._checksum = bool(descriptor & 4)
                self._kind = _BLOCK

    def decode_piece(self, data: bytes) -> bytes:
        if data:
            self._seen = True
            self._input = self._input + data if self._input else data
            self._skim()
        pending = self._input
        fed = self._fed
        end = fed + len(pending)
        # Feed the complete blocks that fill a piece (at least one); if that is all of
        # them, what follows too (an incomplete block gives nothing, or a raw block's
        # bytes as they are).
        blocks = self._blocks
        budget = self._limit.cap()
        total = 0
        cut_at = fed
        while blocks and blocks[0][0] <= end:
            block_end, most = blocks[0]
            if total and total + most > budget:
                break
            total += most
            cut_at = block_end
            blocks.popleft()
        else:
            if self._kind != _OPAQUE:
                cut_at = end
            elif not total:
                cut_at = min(end, fed + 32)
        if cut_at >= end:
            chunk, self._input = pending, b""
        else:
            chunk, self._input = pending[: cut_at - fed], pending[cut_at - fed :]
        self._fed = fed + len(chunk)
        self.more = bool(self._input)
        if not chunk:
            return b""
        decompressor = self._decompressor
        if decompressor.eof:
            raise DecodingError("data after the end of the zstd frame")
        try:
            output = decompressor.decompress(chunk)
        except Exception as exc:
            raise DecodingError(f"invalid zstd data: {exc}") from exc
        return self._limit.take(output)

    def flush(self) -> bytes:
        eof = getattr(self._decompressor, "eof", None)
        if self._seen and eof is False:
            raise DecodingError("the zstd body is truncated")
        return b""


class _IdentityDecoder(_Decoder):
    def decode_piece(self, data: bytes) -> bytes:
        return data

    def decode(self, data: bytes) -> bytes:
        return data


class _ChainDecoder(_Decoder):
    """Several codings: ``Content-Encoding: gzip, br`` was applied gzip first, so decode
    br first. Each step hands the next one a piece at a time, and is asked for more only
    once the next one has used up what it had."""

    def __init__(self, decoders: list[ContentDecoder]) -> None:
        self._decoders = decoders
        self._input = b""

    def decode_piece(self, data: bytes) -> bytes:
        if data:
            self._input = self._input + data if self._input else data
        output = self._produce(len(self._decoders) - 1)
        self.more = bool(self._input) or any(decoder.more for decoder in self._decoders)
        return output

    def _produce(self, index: int) -> bytes:
        decoder = self._decoders[index]
        if decoder.more:
            return decoder.decode_piece(b"")
        if index == 0:
            data, self._input = self._input, b""
            return decoder.decode_piece(data)
        upstream = self._produce(index - 1)
        return decoder.decode_piece(upstream) if upstream else b""

    def flush(self) -> bytes:
        pieces = []
        decoders = self._decoders
        for index, decoder in enumerate(decoders):
            tail = decoder.flush()
            for after in decoders[index + 1 :]:  # in practice tails are empty
                tail = after.decode(tail) if tail else b""
            pieces.append(tail)
        return b"".join(pieces)


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
    """A decoder for a ``Content-Encoding`` header value (identity when absent).

    ``max_size`` bounds the final output; the steps of a chain before the last are
    unlimited (each still works in pieces, so they hold one piece at a time).
    """
    if not content_encoding:
        return _IdentityDecoder()
    if "," not in content_encoding:  # the common case, kept short
        name = content_encoding.strip().lower()
        if name in ("", "identity"):
            return _IdentityDecoder()
        return _one_decoder(name, _Limit(max_size))
    names = [
        name
        for name in (c.strip().lower() for c in reversed(content_encoding.split(",")))
        if name not in ("", "identity")
    ]
    if not names:
        return _IdentityDecoder()
    last = len(names) - 1
    decoders = [
        _one_decoder(name, _Limit(max_size if position == last else None))
        for position, name in enumerate(names)
    ]
    return decoders[0] if len(decoders) == 1 else _ChainDecoder(decoders)


def _one_decoder(name: str, limit: _Limit) -> ContentDecoder:
    if name in ("gzip", "x-gzip"):
        return _ZlibDecoder("gzip", zlib.MAX_WBITS | 16, limit)
    if name == "deflate":
        return _ZlibDecoder("deflate", zlib.MAX_WBITS, limit)
    if name == "br" and _brotli is not None:
        return _BrotliDecoder(limit)
    if name == "zstd" and _zstd is not None:
        return _ZstdDecoder(limit)
    raise DecodingError(
        f"unsupported Content-Encoding {name!r} (this installation decodes "
        f"{', '.join(SUPPORTED_ENCODINGS)}; read(decode_content=False) gives the raw bytes)"
    )
