"""The response to one request: status and headers at once, the body as it is read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import TYPE_CHECKING, final

import anyio
import anyio.lowlevel

from ._decoders import ContentDecoder, make_decoder
from ._exceptions import ProtocolError, ReadTimeout
from ._headers import Headers, has_wire_name, headers_from_wire
from ._stream import Data, Ended, Failed, ResponseHeaders, Trailers

if TYPE_CHECKING:
    from ._stream import Stream

__all__ = ("Response", "body_arrived", "body_read", "cached_body", "receive_response")

# How long a failed request waits for its body's pump to stop (a sync source may be in the
# middle of a read in a worker thread).
PUMP_STOP_TIMEOUT = 2.0


@final
class _Empty:
    """The type of ``EMPTY``: nothing has arrived yet."""


EMPTY = _Empty()


@final
class Response:
    """An HTTP/2 response, returned by [`Connection.request`][h2any.Connection.request] when its
    headers arrive.

    Attributes:
        status: the status code.
        headers: the response [`Headers`][h2any.Headers].
        stream_id: the HTTP/2 stream that carried it.
        trailers: trailing [`Headers`][h2any.Headers], once the body has been read (``None`` if the
            server sent none).
        http_version: always ``"HTTP/2"``.

    The body is read with `read` or `aiter_bytes`; data is granted back to the
    server's flow-control window only as it is consumed here.
    """

    http_version = "HTTP/2"

    def __init__(
        self,
        stream: Stream,
        status: int,
        headers: Headers,
        max_decompressed_size: int | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.stream_id = stream.stream_id
        self.trailers: Headers | None = None
        self._max_decompressed_size = max_decompressed_size
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
        """The body, after `read`."""
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
            ReadTimeout, StreamReset, ConnectionClosed, ...: as `aiter_bytes`.
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
        decoder = make_decoder(self.headers.get("content-encoding"), self._max_decompressed_size)
        return decoder.decode(self._content) + decoder.flush()

    def aiter_bytes(self, *, decode_content: bool = True) -> AsyncIterator[bytes]:
        """Iterate over the body in chunks as they arrive, decoded unless
        ``decode_content=False`` (decoding streams: it never buffers the whole body).

        Breaking out of the loop early is fine: closing the response (or leaving
        [`Connection.stream`][h2any.Connection.stream]) then resets the stream.

        Raises:
            ReadTimeout: no data arrived within the read timeout (the stream is reset).
            DecodingError: as `read`.
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
                kind = type(item)
                if kind is Data:
                    stream.consumed(item.flow_size)  # type: ignore[union-attr]
                    if item.data:  # type: ignore[union-attr]
                        return item.data  # type: ignore[union-attr]
                elif kind is Ended:
                    self._complete = True
                    return None
                elif kind is Trailers:
                    self.trailers = headers_from_wire(item.fields)  # type: ignore[union-attr]
                elif kind is Failed:
                    raise item.error  # type: ignore[union-attr]
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
        while True:
            chunk = self._take()
            if chunk is not EMPTY:
                return chunk  # type: ignore[return-value]
            limit = stream.timeout.read
            try:
                await stream.watch(limit)
            except BaseException:
                self._give_up()
                raise
            finally:
                stream.unwatch()
            if stream.timed_out and not stream.items:
                self._give_up()
                if stream.expires <= stream.link.watchdog.clock():
                    raise stream.timeout_error()
                raise ReadTimeout(f"stream {self.stream_id}: no data for {limit} s")

    def _give_up(self) -> None:
        """Reading failed or was cancelled: reset the stream, release its unread data."""
        self._stream.abandon()
        self._closed = True

    async def aclose(self) -> None:
        """Close the response; if the body was not read to its end, reset the stream.

        Unread data is handed back to the connection's flow-control window.
        """
        if not self._closed:
            self._closed = True
            if not self._complete or self._stream.items:
                self._stream.abandon()
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
    """The async iterator behind [`Response.aiter_bytes`][h2any.Response.aiter_bytes].

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
                if decode_content and has_wire_name(headers, b"content-encoding")
                else None
            )
            if encoding:
                self._decoder = make_decoder(encoding, response._max_decompressed_size)

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
        decoder = self._decoder
        while True:
            if decoder is not None and decoder.more:
                # The last chunk decodes to more than one piece: the next piece, with
                # no new input (decoded output stays bounded, however large the bomb).
                output: bytes | None = self._emit(b"")
            else:
                output = self._emit(await response._next_chunk())
            if output is None:
                raise StopAsyncIteration
            if output:
                return output

    def take_ready(self) -> list[bytes]:
        """The (decoded) chunks of what has already arrived, without waiting."""
        chunks = []
        response = self._response
        decoder = self._decoder
        while not self.done:
            if decoder is not None and decoder.more:
                output = self._emit(b"")
                if output:
                    chunks.append(output)
                continue
            chunk = response._take()
            if chunk is EMPTY:
                break
            output = self._emit(chunk)  # type: ignore[arg-type]
            if output:
                chunks.append(output)
        return chunks

    def _emit(self, chunk: bytes | None) -> bytes | None:
        """What to hand out for ``chunk`` (None: the body's end): the (decoded) bytes, b""
        if the decoder kept them all for now, or None once the body is over. A decoder
        hands out one bounded piece per call; while ``decoder.more``, the callers call
        again with b"" before they take the next chunk."""
        decoder = self._decoder
        if decoder is None:
            if chunk is None:
                self.done = True
            return chunk
        try:
            output = decoder.flush() if chunk is None else decoder.decode_piece(chunk)
        except BaseException:
            self._response._give_up()
            raise
        if chunk is None:
            self.done = True
            return output or None
        return output


def body_arrived(response: Response) -> bool:
    """Whether the whole body has arrived (it may not have been read yet)."""
    return response._stream.remote_done


def body_read(response: Response) -> bool:
    """Whether [`Response.read`][h2any.Response.read] has read the body (and keeps it)."""
    return response._content is not None


def cached_body(response: Response, decode_content: bool = True) -> bytes | None:
    """The body if [`Response.read`][h2any.Response.read] already read it (as ``read`` would return
    it again), else None."""
    if response._content is None:
        return None
    return response._cached(decode_content)


async def receive_response(stream: Stream, max_decompressed_size: int | None = None) -> Response:
    """The [`Response`][h2any.Response] of ``stream`` once its headers arrive; the stream is
    abandoned (reset) if this fails or is cancelled.

    The wait is inlined here rather than in a helper coroutine: with thousands of
    requests queued, every object a waiting request holds is walked by the garbage
    collector (a coroutine layer less is 1% of a fan-out).

    Raises:
        PoolTimeout, WriteTimeout, ReadTimeout: per the stream's stage and timeouts.
        StreamReset, ConnectionClosed, ConnectionTerminated, ProtocolError: it failed.
        Exception: whatever a streamed request body's source raised.
    """
    items = stream.items
    try:
        while True:
            if not items:
                # The connection task moves the deadline as the stream progresses.
                watchdog = stream.link.watchdog
                try:
                    await watchdog.watch(stream, stream.reader_limit(), stream.expires)
                finally:
                    watchdog.unwatch(stream)
                if not items:
                    if stream.timed_out:
                        raise stream.timeout_error()
                    continue
            item = items.popleft()
            kind = type(item)
            if kind is ResponseHeaders:
                raw = item.fields  # type: ignore[union-attr]
                # Checked when received: exactly one :status, first, three digits.
                return Response(
                    stream, int(raw[0][1]), headers_from_wire(raw[1:]), max_decompressed_size
                )
            if kind is Failed:
                raise item.error  # type: ignore[union-attr]
            # DATA or END before HEADERS cannot happen: h2 rejects it as a protocol error.
            raise ProtocolError(f"stream {stream.stream_id}: response ended before headers")
    except BaseException:
        stream.abandon()
        pump_done = stream.pump_done
        if pump_done is not None:
            # A body= pump still running must stop before the caller learns of the failure
            # (the Client rewinds the body to retry it); reset, it stops at its next step.
            with anyio.CancelScope(shield=True), anyio.move_on_after(PUMP_STOP_TIMEOUT):
                await pump_done.wait()
        raise
