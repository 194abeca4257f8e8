"""Full-duplex streams: [`DuplexStream`][h2any.DuplexStream], what
[`Connection.open_stream`][h2any.Connection.open_stream] gives.

The request side and the response side of an HTTP/2 stream run independently: one task
may send while another reads, and the response is visible as soon as its headers arrive,
whatever the request side is doing. This is the primitive that protocols over HTTP/2 need
(gRPC streaming, an echo that answers each chunk, a server that answers early).
"""

from __future__ import annotations

from types import TracebackType
from typing import final

import anyio
import anyio.lowlevel
from h2.errors import ErrorCodes

from ._exceptions import ConnectionClosed, H2anyError, StreamReset, clone_error
from ._headers import HeaderTypes
from ._request import check_trailers
from ._response import Response, receive_response
from ._stream import Stream
from ._upload import OUTBOUND_BUFFER, body_length_error, wait_writable

__all__ = ("DuplexStream",)


@final
class DuplexStream:
    """One HTTP/2 stream whose request body is sent piece by piece while its response
    arrives: returned by [`Connection.open_stream`][h2any.Connection.open_stream].

    ``await send(data)`` as often as needed, ``await send_eof()`` to end the request
    (optionally with trailers); ``await response()`` returns the [`Response`][h2any.Response] as
    soon as its headers arrive. Sending and reading may run in different tasks at once. Both
    directions obey flow control: ``send`` waits while the server's window is shut (up to
    the write timeout), and the response is granted back to the server only as it is read.

    Leaving the ``async with`` block before both sides have ended resets the stream
    (RST_STREAM CANCEL); the connection carries on.
    """

    __slots__ = (
        "_closed",
        "_eof_sent",
        "_fetching",
        "_max_decompressed_size",
        "_response",
        "_response_error",
        "_sent",
        "_stream",
    )

    def __init__(self, stream: Stream, max_decompressed_size: int | None = None) -> None:
        self._stream = stream
        self._max_decompressed_size = max_decompressed_size
        self._response: Response | None = None
        self._fetching: anyio.Event | None = None  # set once the headers wait is over
        self._response_error: BaseException | None = None
        self._eof_sent = False
        self._closed = False
        self._sent = 0

    def __repr__(self) -> str:
        stream = self._stream
        return f"<DuplexStream {stream.stream_id or '(not open)'} {stream.state.value}>"

    @property
    def stream_id(self) -> int:
        """The HTTP/2 stream id, or 0 while the stream waits for a free stream slot."""
        return self._stream.stream_id

    async def send(self, data: bytes | bytearray | memoryview | str) -> None:
        """Send a piece of the request body (``str`` is sent as UTF-8).

        Returns once the connection has taken it (about 1 MiB at most waits ahead of the
        wire per stream, plus the piece being sent); an empty piece sends nothing.

        Raises:
            RuntimeError: after `send_eof` or `aclose`.
            InvalidRequest: more bytes than the declared content-length.
            PoolTimeout, WriteTimeout: no stream slot, or the server's window stayed shut
                (the stream is reset).
            StreamReset, ConnectionClosed, ConnectionTerminated, ProtocolError: the stream
                or the connection ended.
        """
        if self._eof_sent:
            raise RuntimeError("send() after send_eof(): the request side is closed")
        if self._closed:
            raise RuntimeError("send() on a closed DuplexStream")
        piece = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        stream = self._stream
        self._check_open()
        declared = stream.declared_length
        self._sent += len(piece)
        if declared is not None and self._sent > declared:
            stream.abandon()
            raise body_length_error(declared, self._sent)
        if not piece:
            await anyio.lowlevel.checkpoint()
            return
        if stream.out_pending >= OUTBOUND_BUFFER:
            try:
                await wait_writable(stream)
            except BaseException:
                stream.abandon()
                raise
            self._check_open()
        else:
            await anyio.lowlevel.checkpoint()
        stream.offer(piece)

    async def send_eof(self, trailers: HeaderTypes | None = None) -> None:
        """End the request side (END_STREAM), after sending ``trailers`` if given.

        Does nothing if the response has already ended and the server closed the stream.

        Raises:
            RuntimeError: called twice, or after `aclose`.
            InvalidRequest: bad trailers, or fewer bytes than the declared content-length.
            StreamReset, ConnectionClosed, ...: the stream or the connection ended first.
        """
        if self._eof_sent:
            raise RuntimeError("send_eof() was already called")
        if self._closed:
            raise RuntimeError("send_eof() on a closed DuplexStream")
        fields = check_trailers(trailers) if trailers is not None else None
        stream = self._stream
        declared = stream.declared_length
        if declared is not None and self._sent != declared:
            stream.abandon()
            raise body_length_error(declared, self._sent)
        self._eof_sent = True
        await anyio.lowlevel.checkpoint()
        if stream.finished and stream.remote_done:
            return  # the server answered in full and closed the stream: nothing to end
        self._check_open()
        stream.close_outbound(fields)

    async def response(self) -> Response:
        """The [`Response`][h2any.Response], as soon as its headers arrive (whether or not the
        request side has ended); the same object on every call.

        Raises:
            PoolTimeout, ReadTimeout: per the stream's timeouts (the stream is reset).
            StreamReset, ConnectionClosed, ConnectionTerminated, ProtocolError: it failed.
        """
        if self._response is not None:
            return self._response
        fetching = self._fetching
        if fetching is not None:
            # Another task is waiting for the headers: share its outcome.
            await fetching.wait()
            if self._response is not None:
                return self._response
            error = self._response_error
            if isinstance(error, H2anyError):
                raise clone_error(error)
            stream = self._stream
            raise StreamReset(stream.stream_id, ErrorCodes.CANCEL, remote=False)
        self._fetching = fetching = anyio.Event()
        try:
            self._response = await receive_response(self._stream, self._max_decompressed_size)
        except BaseException as exc:
            self._response_error = exc
            raise
        finally:
            fetching.set()
        return self._response

    def _check_open(self) -> None:
        stream = self._stream
        if not stream.finished:
            return
        failure = stream.failure
        if isinstance(failure, H2anyError):
            raise clone_error(failure)
        if failure is not None:
            raise failure
        if stream.abandoned:
            raise RuntimeError("the stream was reset by this client")
        if stream.remote_done:
            raise StreamReset(stream.stream_id, 0)  # answered in full; it reads no more
        raise ConnectionClosed(f"stream {stream.stream_id} has ended")

    async def aclose(self) -> None:
        """Close the stream; if either side has not ended, reset it (RST_STREAM CANCEL)."""
        if not self._closed:
            self._closed = True
            stream = self._stream
            if not stream.finished or stream.items:
                stream.abandon()
        await anyio.lowlevel.checkpoint()

    async def __aenter__(self) -> DuplexStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
