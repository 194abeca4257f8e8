"""Request bodies: what ``body=`` accepts, and how it is read.

``bytes``/``str`` go to the connection task whole. Everything else is *streamed*: the
requesting task reads it piece by piece (sync files and sync iterables in a worker thread,
so a slow disk or generator never blocks the event loop) and hands each piece over only
when the stream's outbound buffer has room, so an upload of any size uses bounded memory.
"""

from __future__ import annotations

import inspect
import io
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Union

import anyio.to_thread

from ._exceptions import InvalidRequest

__all__ = (
    "BodyTypes",
    "PreparedBody",
    "prepare_body",
    "remaining_size",
    "replay_position",
    "rewind",
)

BodyTypes = Union[
    bytes,
    bytearray,
    memoryview,
    str,
    io.IOBase,
    Iterable[bytes],
    AsyncIterable[bytes],
    Any,  # file-like objects (sync or async `read`)
    None,
]

#: How much is read from a file or pulled from an iterable at a time.
PIECE_SIZE = 256 * 1024


@dataclass(frozen=True, slots=True)
class PreparedBody:
    """A request body ready to send: whole ``payload``, or a ``source`` of pieces."""

    payload: bytes | None
    source: AsyncIterator[bytes] | None
    length: int | None  # known size, for Content-Length


_NO_BODY = PreparedBody(None, None, None)


def prepare_body(body: BodyTypes) -> PreparedBody:
    """Classify ``body``; raise [`InvalidRequest`][h2any.InvalidRequest] for what cannot be sent."""
    if body is None:
        return _NO_BODY
    if isinstance(body, bytes):
        return PreparedBody(body, None, len(body))
    if isinstance(body, str):
        data = body.encode("utf-8")
        return PreparedBody(data, None, len(data))
    if isinstance(body, (bytearray, memoryview)):
        data = bytes(body)
        return PreparedBody(data, None, len(data))
    read = getattr(body, "read", None)
    if callable(read):
        if inspect.iscoroutinefunction(read):
            # Its other methods are coroutines too; anyio's AsyncFile exposes the sync file.
            wrapped = getattr(body, "wrapped", None)
            length = None if wrapped is None else remaining_size(wrapped)
            return PreparedBody(None, _read_async_file(read), length)
        return PreparedBody(None, _read_sync_file(read), remaining_size(body))
    if isinstance(body, AsyncIterable):
        return PreparedBody(None, _checked(aiter(body)), None)
    if isinstance(body, Mapping):
        raise InvalidRequest(
            "body must be bytes, str, a file or an iterable of bytes, not a mapping "
            "(encode it first, e.g. json.dumps(...).encode())"
        )
    if isinstance(body, Iterable):
        return PreparedBody(None, _iterate_in_thread(iter(body)), None)
    raise InvalidRequest(
        "body must be bytes, str, a file-like object, or a (sync or async) iterable of bytes, "
        f"not {type(body).__name__}"
    )


def remaining_size(file: Any) -> int | None:
    """Bytes left in a file, if that can be known without reading it."""
    try:
        if file.seekable():
            position = file.tell()
            end = file.seek(0, os.SEEK_END)
            file.seek(position)
            return int(end - position)
    except (AttributeError, OSError, ValueError, TypeError):
        pass
    try:
        stat = os.fstat(file.fileno())
    except (AttributeError, OSError, ValueError, TypeError, io.UnsupportedOperation):
        return None
    import stat as stat_module

    if stat_module.S_ISREG(stat.st_mode):
        try:
            return int(stat.st_size - file.tell())
        except (AttributeError, OSError, ValueError, TypeError):
            return int(stat.st_size)
    return None


def _piece(data: object) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    raise InvalidRequest(f"the request body produced {type(data).__name__}, not bytes")


async def _read_sync_file(read: Any) -> AsyncIterator[bytes]:
    while True:
        data = await anyio.to_thread.run_sync(read, PIECE_SIZE)
        if not data:
            return
        yield _piece(data)


async def _read_async_file(read: Any) -> AsyncIterator[bytes]:
    while True:
        data = await read(PIECE_SIZE)
        if not data:
            return
        yield _piece(data)


async def _checked(iterator: AsyncIterator[Any]) -> AsyncIterator[bytes]:
    try:
        async for data in iterator:
            yield _piece(data)
    finally:
        # An upload cut short (error, reset, timeout) leaves the user's async generator
        # unfinished: close it now rather than leave it to the garbage collector.
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


_DONE = object()


async def _iterate_in_thread(iterator: Iterator[Any]) -> AsyncIterator[bytes]:
    while True:
        data = await anyio.to_thread.run_sync(next, iterator, _DONE)
        if data is _DONE:
            return
        yield _piece(data)


def replay_position(body: BodyTypes) -> int | None:
    """Where a body can be replayed from, or None if it cannot (iterables, pipes)."""
    if body is None or isinstance(body, (bytes, bytearray, memoryview, str)):
        return 0
    if inspect.iscoroutinefunction(getattr(body, "read", None)):
        return None  # an async file (anyio's passes seekable() through, not tell/seek)
    seekable = getattr(body, "seekable", None)
    if callable(seekable) and not inspect.iscoroutinefunction(seekable):
        try:
            if seekable():
                return int(body.tell())  # type: ignore[union-attr]
        except (OSError, ValueError):
            return None
    return None


def rewind(body: BodyTypes, position: int) -> BodyTypes:
    """``body`` moved back to ``position`` (a file is seeked there; others are as they are)."""
    seek = getattr(body, "seek", None)
    if seek is not None and not isinstance(body, (bytes, bytearray, memoryview, str)):
        seek(position, os.SEEK_SET)
    return body
