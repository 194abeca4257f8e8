"""The response to one request: status and headers at once, the body as it is read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, final

import anyio
import anyio.lowlevel

from ._decoders import ContentDecoder, make_decoder
from ._exceptions import H2anyError, ProtocolError, ReadTimeout
from ._headers import Headers

if TYPE_CHECKING:
    from ._connection import Connection, _Stream

__all__ = ("Response",)

_DATA = 1
_TRAILERS = 2
_END = 3
_ERROR = 4


@final
class _Empty:
    """The type of ``EMPTY``: nothing has arrived yet."""


EMPTY = _Empty()


@final
class Response:
    """An HTTP/2 response, returned by :meth:`Connection.request` when its headers arrive.

    Attributes:
        status: the status code.
        headers: the response :class:`Headers`.
        stream_id: the HTTP/2 stream that carried it.
        trailers: trailing :class:`Headers`, once the body has been read (``None`` if the
            server sent none).
        http_version: always ``"HTTP/2"``.

    The body is read with :meth:`read` or :meth:`aiter_bytes`; data is granted back to the
    server's flow-control window only as it is consumed here.
    """

    http_version = "HTTP/2"

    def __init__(
        self, connection: Connection, stream: _Stream, status: int, headers: Headers
    ) -> None:
        self.status = status
        self.headers = headers
        self.stream_id = stream.stream_id
        self.trailers: Headers | None = None
        self._connection = connection
        self._stream = stream
        self._complete = False
        self._closed = False
        self._content: bytes | None = None
        self._content_decoded = True

    def __repr__(self) -> str:
        return f"<Response [{self.status}] stream {self.stream_id}>"

    @property
    def is_complete(self) -> bool:
        """True once the whole body (and any trailers) has arrived and been consumed."""
        return self._complete

    @property
    def content(self) -> bytes:
        """The body, after :meth:`read`."""
        if self._content is None:
            raise RuntimeError("the body has not been read: call 'await response.read()' first")
        return self._content

    async def read(self, *, decode_content: bool = True) -> bytes:
        """Read and return the whole body.

        The body is decoded per its ``Content-Encoding`` (gzip, deflate, br, zstd) unless
        ``decode_content=False``, which gives the bytes as they came off the wire. The
        result is kept: a second call returns it again.

        Raises:
            DecodingError: the body is corrupt, truncated, in an unsupported coding, or
                larger than the connection's ``max_decompressed_size``.
            ReadTimeout, StreamReset, ConnectionClosed, ...: as :meth:`aiter_bytes`.
        """
        if self._content is not None:
            return self._cached(decode_content)
        if self._closed:
            raise RuntimeError("the response is closed; its body can no longer be read")
        iterator = _BodyIterator(self, decode_content)
        # What has arrived is taken without a coroutine step per chunk -- for a small
        # response, usually all of it (the stream had ended before its headers were read).
        chunks = iterator.take_ready()
        if not iterator.done:
            chunks += [chunk async for chunk in iterator]
        self._content = b"".join(chunks)
        self._content_decoded = decode_content
        return self._content

    def _cached(self, decode_content: bool) -> bytes:
        assert self._content is not None
        if decode_content == self._content_decoded or not self.headers.get("content-encoding"):
            return self._content
        if self._content_decoded:
            raise RuntimeError(
                "the body was already read decoded; the raw bytes were not kept "
                "(call read(decode_content=False) first to have both)"
            )
        decoder = make_decoder(
            self.headers.get("content-encoding"), self._connection._max_decompressed_size
        )
        return decoder.decode(self._content) + decoder.flush()

    def aiter_bytes(self, *, decode_content: bool = True) -> AsyncIterator[bytes]:
        """Iterate over the body in chunks as they arrive, decoded unless
        ``decode_content=False`` (decoding streams: it never buffers the whole body).

        Breaking out of the loop early is fine: closing the response (or leaving
        :meth:`Connection.stream`) then resets the stream.

        Raises:
            ReadTimeout: no data arrived within the read timeout (the stream is reset).
            DecodingError: as :meth:`read`.
            StreamReset, ConnectionClosed, ConnectionTerminated, ProtocolError: the
                stream or connection failed mid-body.
        """
        if self._closed and self._content is None:
            raise RuntimeError("the response is closed; its body can no longer be read")
        return _BodyIterator(self, decode_content)

    def _take(self) -> bytes | _Empty | None:
        """The next non-empty chunk already received, None at the end of the body, or
        ``EMPTY`` if nothing is there yet."""
        stream = self._stream
        items = stream.items
        try:
            while items:
                item = items.popleft()
                kind = item[0]
                if kind == _DATA:
                    self._connection._consumed(stream, item[2])
                    if item[1]:
                        return item[1]  # type: ignore[no-any-return]
                elif kind == _END:
                    self._complete = True
                    return None
                elif kind == _TRAILERS:
                    self.trailers = Headers._from_wire(item[1])
                elif kind == _ERROR:
                    error: H2anyError = item[1]
                    raise error
                else:
                    raise ProtocolError(f"stream {self.stream_id}: unexpected second HEADERS")
        except BaseException:
            self._give_up()
            raise
        return None if self._complete else EMPTY

    async def _next_chunk(self) -> bytes | None:
        """The next non-empty chunk of the body, or None at its end; each wait for data is
        bounded by the read timeout (kept by the connection's watchdog, see ``_watch``)."""
        stream = self._stream
        connection = self._connection
        while True:
            chunk = self._take()
            if chunk is not EMPTY:
                return chunk  # type: ignore[return-value]
            limit = stream.timeout.read
            connection._watch(stream, limit)
            try:
                await stream.next_item(connection._new_event)
            except BaseException:
                self._give_up()
                raise
            finally:
                connection._unwatch(stream)
            if stream.timed_out and not stream.items:
                self._give_up()
                raise ReadTimeout(f"stream {self.stream_id}: no data for {limit} s")

    def _give_up(self) -> None:
        """Reading failed or was cancelled: reset the stream, release its unread data."""
        self._connection._abandon(self._stream)
        self._closed = True

    async def aclose(self) -> None:
        """Close the response; if the body was not read to its end, reset the stream.

        Unread data is handed back to the connection's flow-control window.
        """
        if not self._closed:
            self._closed = True
            if not self._complete or self._stream.items:
                self._connection._abandon(self._stream)
        await anyio.lowlevel.checkpoint()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


@final
class _BodyIterator:
    """The async iterator behind :meth:`Response.aiter_bytes`.

    A class rather than an async generator: a generator abandoned by ``break`` would be
    finalised by the garbage collector (a ResourceWarning on trio); this needs no cleanup.
    """

    __slots__ = ("_decoder", "_replay", "_response", "done")

    def __init__(self, response: Response, decode_content: bool) -> None:
        self._response = response
        self.done = False
        self._decoder: ContentDecoder | None = None
        self._replay: bytes | None = None
        if response._content is not None:  # already read(): replay the body once
            self._replay = response._cached(decode_content)
        else:
            headers = response.headers
            encoding = (
                headers.get("content-encoding")
                if decode_content and headers._has_wire_name(b"content-encoding")
                else None
            )
            if encoding:
                self._decoder = make_decoder(encoding, response._connection._max_decompressed_size)

    def __aiter__(self) -> _BodyIterator:
        return self

    async def __anext__(self) -> bytes:
        if self.done:
            raise StopAsyncIteration
        replay = self._replay
        if replay is not None:
            self.done = True
            if replay:
                return replay
            raise StopAsyncIteration
        response = self._response
        while True:
            output = self._emit(await response._next_chunk())
            if output is None:
                raise StopAsyncIteration
            if output:
                return output

    def take_ready(self) -> list[bytes]:
        """The (decoded) chunks of what has already arrived, without waiting."""
        chunks = []
        response = self._response
        while not self.done:
            chunk = response._take()
            if chunk is EMPTY:
                break
            output = self._emit(chunk)  # type: ignore[arg-type]
            if output:
                chunks.append(output)
        return chunks

    def _emit(self, chunk: bytes | None) -> bytes | None:
        """What to hand out for ``chunk`` (None: the body's end): the (decoded) bytes, b""
        if the decoder kept them all for now, or None once the body is over."""
        decoder = self._decoder
        if decoder is None:
            if chunk is None:
                self.done = True
            return chunk
        try:
            output = decoder.flush() if chunk is None else decoder.decode(chunk)
        except BaseException:
            self._response._give_up()
            raise
        if chunk is None:
            self.done = True
            return output or None
        return output
