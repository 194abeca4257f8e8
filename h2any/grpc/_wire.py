"""The gRPC wire format over HTTP/2: length-prefixed messages, ``grpc-timeout``, gzip.

Each message, either way, is one byte that says whether it is compressed, its length as
four bytes (big-endian), then the message. A message may span DATA frames and a DATA frame
may hold several messages: `MessageReader` cuts the response body into messages, and
checks each length prefix against the receive limit *before* taking in the message, so a
peer that claims 1 GiB costs no more than the DATA frames that carried the prefix.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import AsyncIterator

__all__ = (
    "MessageError",
    "MessageReader",
    "encode_message",
    "encode_timeout",
    "status_for_http",
)

_PREFIX = struct.Struct(">BI")
PREFIX_SIZE = 5
#: The largest message length the 4-byte prefix can say.
MAX_MESSAGE_LENGTH = 2**32 - 1
# Below this a message is copied after its prefix (one DATA frame's worth, one send);
# above it the prefix and the message are sent as two pieces, without the copy.
_JOIN_LIMIT = 64 * 1024

# gRPC's timeout units, smallest first, with their length in seconds.
_UNITS = (("n", 1e-9), ("u", 1e-6), ("m", 1e-3), ("S", 1.0), ("M", 60.0), ("H", 3600.0))


class MessageError(Exception):
    """A received message broke the rules; ``code_name`` names the gRPC status it means."""

    def __init__(self, code_name: str, details: str) -> None:
        super().__init__(details)
        self.code_name = code_name
        self.details = details


def encode_timeout(seconds: float) -> str:
    """``grpc-timeout`` for ``seconds``: at most 8 digits and a unit, rounded up so that the
    server never has less time than the client."""
    for unit, length in _UNITS:
        count = math.ceil(seconds / length)
        if count < 100_000_000:
            return f"{max(count, 1)}{unit}"
    return "99999999H"


def encode_message(message: bytes, compress: bool) -> list[bytes]:
    """The pieces to send for one message: with its prefix, gzip-compressed if asked."""
    if compress:
        message = gzip_compress(message)
    prefix = _PREFIX.pack(1 if compress else 0, len(message))
    if len(message) <= _JOIN_LIMIT:
        return [prefix + message]
    return [prefix, message]


def gzip_compress(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # 31: gzip container
    return compressor.compress(data) + compressor.flush()


def gzip_decompress(data: bytes, limit: int) -> bytes:
    """Decompress one gzip message, producing at most ``limit`` bytes.

    Raises:
        MessageError: corrupt (INTERNAL), or larger than ``limit`` once decompressed
            (RESOURCE_EXHAUSTED).
    """
    decompressor = zlib.decompressobj(31)
    try:
        output = decompressor.decompress(data, limit + 1)
    except zlib.error as exc:
        raise MessageError("INTERNAL", f"a gzip message could not be decompressed: {exc}") from exc
    if len(output) > limit or decompressor.unconsumed_tail:
        raise MessageError(
            "RESOURCE_EXHAUSTED",
            f"a received message decompresses to more than the limit ({limit} bytes)",
        )
    if not decompressor.eof:
        raise MessageError("INTERNAL", "a gzip message was truncated")
    return output


class MessageReader:
    """Cuts a response body (an iterator of chunks) into messages.

    ``limit`` bounds each message (``None``: the prefix's own bound); ``encoding`` is the
    response's ``grpc-encoding`` when this client can decode it (``"gzip"``), else what the
    server named, or ``None``.
    """

    __slots__ = ("_buffer", "_chunks", "_limit", "encoding")

    def __init__(self, chunks: AsyncIterator[bytes], limit: int | None, encoding: str | None):
        self._chunks = chunks
        self._limit = MAX_MESSAGE_LENGTH if limit is None else limit
        self._buffer = bytearray()
        self.encoding = encoding

    async def next_message(self) -> bytes | None:
        """The next message, or ``None`` at the end of the body.

        Raises:
            MessageError: a message over the limit (checked from its prefix, before it is
                taken in), compressed without an encoding this client accepts, or cut off
                by the end of the body.
            H2anyError: what the body's iterator raises.
        """
        buffer = self._buffer
        while True:
            if len(buffer) >= PREFIX_SIZE:
                flag, length = _PREFIX.unpack_from(buffer)
                if length > self._limit:
                    raise MessageError(
                        "RESOURCE_EXHAUSTED",
                        f"received message larger than max ({length} vs. {self._limit})",
                    )
                end = PREFIX_SIZE + length
                if len(buffer) >= end:
                    message = bytes(buffer[PREFIX_SIZE:end])
                    del buffer[:end]
                    if flag:
                        return self._decompress(flag, message)
                    return message
            elif not buffer:
                # The common case: a chunk that starts with a whole message (or several).
                try:
                    chunk = await self._chunks.__anext__()
                except StopAsyncIteration:
                    return None
                if len(chunk) >= PREFIX_SIZE:
                    flag, length = _PREFIX.unpack_from(chunk)
                    if length <= self._limit and len(chunk) == PREFIX_SIZE + length:
                        message = chunk[PREFIX_SIZE:]
                        return self._decompress(flag, message) if flag else message
                buffer += chunk
                continue
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                raise MessageError(
                    "INTERNAL", "the response ended in the middle of a message"
                ) from None
            buffer += chunk

    def _decompress(self, flag: int, message: bytes) -> bytes:
        if flag != 1:
            raise MessageError("INTERNAL", f"invalid compressed flag {flag} in a message prefix")
        if self.encoding is None or self.encoding == "identity":
            raise MessageError(
                "INTERNAL", "a compressed message in a response that names no grpc-encoding"
            )
        if self.encoding != "gzip":
            raise MessageError(
                "INTERNAL", f"a message compressed with {self.encoding!r}, which was not offered"
            )
        return gzip_decompress(message, self._limit)


def status_for_http(status: int) -> str:
    """The gRPC status name for a response whose HTTP status is not 200 (gRPC's
    "HTTP to gRPC status code mapping")."""
    return {
        400: "INTERNAL",
        401: "UNAUTHENTICATED",
        403: "PERMISSION_DENIED",
        404: "UNIMPLEMENTED",
        429: "UNAVAILABLE",
        502: "UNAVAILABLE",
        503: "UNAVAILABLE",
        504: "UNAVAILABLE",
    }.get(status, "UNKNOWN")
