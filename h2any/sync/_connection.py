"""The blocking, thread-safe facade: ``h2any.sync.Connection`` and its responses.

Each facade hosts an ordinary async [`h2any.Connection`][h2any.Connection] in its own event-loop
thread (see ``_portal.py``) and forwards every call there. Any number of threads may share it:
their requests are multiplexed on the one HTTP/2 connection by the same connection task
that serves async callers. No protocol logic lives here.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from types import TracebackType
from typing import Any, final

from .._body import BodyTypes
from .._config import TimeoutTypes
from .._connection import Connection as AsyncConnection
from .._connection import open_websocket, run_connection
from .._duplex import DuplexStream as AsyncDuplexStream
from .._headers import Headers, HeaderTypes, has_wire_name
from .._models import Request
from .._options import ConnectOptions, Unpack
from .._push import PushedStream as AsyncPushedStream
from .._response import Response as AsyncResponse
from .._response import (
    body_arrived,
    body_read,
    cached_body,
    decode_text,
    split_lines,
    status_error,
)
from .._websocket import DEFAULT_MAX_MESSAGE_SIZE
from ._portal import LoopHosted, LoopThread, check_not_in_event_loop
from ._websocket import WebSocket

__all__ = (
    "Connection",
    "DuplexStream",
    "PushedStream",
    "Response",
    "hosted_connection",
    "take_complete_body",
)


@final
class Response:
    """A response on the blocking facade; the same data as [`h2any.Response`][h2any.Response].

    Attributes: ``status``, ``headers``, ``stream_id``, ``trailers`` (after the body),
    ``http_version``; and httpx's names, as on [`h2any.Response`][h2any.Response]:
    ``status_code``, ``text``, ``json()``, ``raise_for_status()``, ``is_success``, ``url``,
    ``request``, ``elapsed``, ``history``, ... Unlike the async response, `text` and `json`
    read the body first if it has not been read (blocking).
    """

    _history: list[Response] | None = None

    def __init__(self, loop: LoopThread, response: AsyncResponse) -> None:
        self._loop = loop
        self._response = response
        self.status = response.status
        self.headers: Headers = response.headers
        self.stream_id = response.stream_id
        self.http_version = response.http_version

    def __repr__(self) -> str:
        return f"<h2any.sync.Response [{self.status}] stream {self.stream_id}>"

    # ------------------------------------------------------------------ httpx's names

    @property
    def status_code(self) -> int:
        """The status code: the same as ``status``."""
        return self.status

    @property
    def reason_phrase(self) -> str:
        """See [`h2any.Response.reason_phrase`][h2any.Response.reason_phrase]."""
        return self._response.reason_phrase

    @property
    def is_informational(self) -> bool:
        """True for a 1xx status."""
        return self._response.is_informational

    @property
    def is_success(self) -> bool:
        """True for a 2xx status."""
        return self._response.is_success

    @property
    def is_redirect(self) -> bool:
        """True for a 3xx status."""
        return self._response.is_redirect

    @property
    def is_client_error(self) -> bool:
        """True for a 4xx status."""
        return self._response.is_client_error

    @property
    def is_server_error(self) -> bool:
        """True for a 5xx status."""
        return self._response.is_server_error

    @property
    def is_error(self) -> bool:
        """True for a 4xx or 5xx status."""
        return self._response.is_error

    @property
    def has_redirect_location(self) -> bool:
        """True for a 301, 302, 303, 307 or 308 with a ``Location`` header."""
        return self._response.has_redirect_location

    @property
    def request(self) -> Request:
        """The [`Request`][h2any.Request] that was sent."""
        return self._response.request

    @property
    def url(self) -> str:
        """The full URL of the request, never with user information."""
        return self._response.url

    @property
    def history(self) -> list[Response]:
        """The redirect responses that led to this one, oldest first."""
        history = self._history
        if history is None:
            history = self._history = [Response(self._loop, r) for r in self._response.history]
        return history

    @property
    def elapsed(self) -> timedelta:
        """See [`h2any.Response.elapsed`][h2any.Response.elapsed]."""
        return self._response.elapsed

    @property
    def num_bytes_downloaded(self) -> int:
        """Body bytes received so far, before decompression."""
        return self._response.num_bytes_downloaded

    @property
    def encoding(self) -> str:
        """See [`h2any.Response.encoding`][h2any.Response.encoding]; settable."""
        return self._response.encoding

    @encoding.setter
    def encoding(self, value: str) -> None:
        self._response.encoding = value

    @property
    def text(self) -> str:
        """The body as text (see [`h2any.Response.text`][h2any.Response.text]); reads the body
        first if it has not been read."""
        self._read_once()
        return self._response.text

    def json(self, **kwargs: Any) -> Any:
        """The body parsed as JSON (see [`h2any.Response.json`][h2any.Response.json]); reads
        the body first if it has not been read."""
        self._read_once()
        return self._response.json(**kwargs)

    def raise_for_status(self) -> Response:
        """Raise [`HTTPStatusError`][h2any.HTTPStatusError] (its ``response`` this object)
        unless the status is 2xx; return the response itself otherwise."""
        if 200 <= self.status <= 299:
            return self
        raise status_error(self._response, self)

    def iter_raw(self) -> Iterator[bytes]:
        """The same as ``iter_bytes(decode_content=False)``."""
        return self.iter_bytes(decode_content=False)

    def iter_text(self) -> Iterator[str]:
        """Yield the body as text as it arrives, decoded with `encoding`."""
        yield from decode_text(self.iter_bytes(), self.encoding)

    def iter_lines(self) -> Iterator[str]:
        """Yield the body's lines as they arrive, without their line breaks (as
        [`h2any.Response.aiter_lines`][h2any.Response.aiter_lines])."""
        yield from split_lines(decode_text(self.iter_bytes(), self.encoding))

    def _read_once(self) -> None:
        if not body_read(self._response):
            self.read()

    @property
    def trailers(self) -> Headers | None:
        """Trailing headers, once the body has been read (``None`` if the server sent none)."""
        return self._response.trailers

    @property
    def is_complete(self) -> bool:
        """True once the whole body has arrived and been consumed."""
        return self._response.is_complete

    @property
    def content(self) -> bytes:
        """The body, after `read`."""
        return self._response.content

    def read(self, *, decode_content: bool = True) -> bytes:
        """Read and return the whole body, decoded unless ``decode_content=False``.

        Honours the read timeout between chunks; same errors as
        [`h2any.Response.read`][h2any.Response.read].
        """
        body = cached_body(self._response, decode_content)
        if body is not None:
            # Already read (a small body comes back with its headers, see
            # take_complete_body): what read() would return is kept, no trip to the loop.
            return body
        check_not_in_event_loop("Response.read()")
        return self._loop.call(
            functools.partial(self._response.read, decode_content=decode_content)
        )

    def iter_bytes(self, *, decode_content: bool = True) -> Iterator[bytes]:
        """Yield the body in chunks as they arrive, decoded unless ``decode_content=False``."""
        body = cached_body(self._response, decode_content)
        if body is not None:
            # Already read: the body again, in one piece, as aiter_bytes() would replay it.
            if body:
                yield body
            return
        check_not_in_event_loop("Response.iter_bytes()")
        iterator = self._response.aiter_bytes(decode_content=decode_content)
        next_chunk = iterator.__anext__
        while True:
            try:
                chunk = self._loop.call(next_chunk)
            except StopAsyncIteration:
                return
            yield chunk

    def close(self) -> None:
        """Close the response; if its body was not read to the end, reset the stream."""
        if self._loop.in_loop_thread or body_read(self._response):
            return  # nothing to reset once the whole body has been read
        try:
            self._loop.call(self._response.aclose)
        except RuntimeError:
            pass  # the connection (and its loop) is already closed

    def __enter__(self) -> Response:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


async def take_complete_body(response: AsyncResponse) -> AsyncResponse:
    """In the loop thread, as a response's headers arrive: if its whole body has arrived
    with them (a small response), read it now, which saves the calling thread a second
    round trip into the loop for ``read()``. Nothing waits for data that is not there yet;
    compressed bodies are left for ``read()`` to decode, and to fail there if corrupt."""
    if body_arrived(response) and not has_wire_name(response.headers, b"content-encoding"):
        await response.read()
    return response


async def with_complete_body(request: Callable[[], Awaitable[AsyncResponse]]) -> AsyncResponse:
    """Send a request in the loop thread; return its response with a small body already
    read (`take_complete_body`)."""
    return await take_complete_body(await request())


async def _request(
    connection: AsyncConnection,
    method: str,
    url: str,
    headers: HeaderTypes | None,
    body: BodyTypes,
    timeout: TimeoutTypes | None,
) -> AsyncResponse:
    """[`Connection.request`][h2any.Connection.request] in the loop thread (positional arguments:
    the hot path)."""
    response = await connection.request(method, url, headers=headers, body=body, timeout=timeout)
    return await take_complete_body(response)


async def _open_stream(
    connection: AsyncConnection,
    method: str,
    url: str,
    headers: HeaderTypes | None,
    timeout: TimeoutTypes | None,
) -> AsyncDuplexStream:
    """[`Connection.open_stream`][h2any.Connection.open_stream] in the loop thread (it posts to the
    connection task)."""
    return connection.open_stream(method, url, headers=headers, timeout=timeout)


@final
class DuplexStream:
    """A full-duplex stream on the blocking facade; see [`h2any.DuplexStream`][h2any.DuplexStream].

    Thread-safe: one thread may `send` while another waits in `response` or
    reads the response's body.
    """

    def __init__(self, loop: LoopThread, stream: AsyncDuplexStream) -> None:
        self._loop = loop
        self._stream = stream
        self._response: Response | None = None

    def __repr__(self) -> str:
        return f"<h2any.sync.DuplexStream stream {self.stream_id}>"

    @property
    def stream_id(self) -> int:
        """The HTTP/2 stream id, or 0 while the stream waits for a free stream slot."""
        return self._stream.stream_id

    def send(self, data: bytes | bytearray | memoryview | str) -> None:
        """Send a piece of the request body; see
        [`h2any.DuplexStream.send`][h2any.DuplexStream.send]."""
        check_not_in_event_loop("DuplexStream.send()")
        self._loop.call(self._stream.send, data)

    def send_eof(self, trailers: HeaderTypes | None = None) -> None:
        """End the request side, with optional trailers; see
        [`h2any.DuplexStream.send_eof`][h2any.DuplexStream.send_eof]."""
        check_not_in_event_loop("DuplexStream.send_eof()")
        self._loop.call(self._stream.send_eof, trailers)

    def response(self) -> Response:
        """The [`Response`][h2any.Response], as soon as its headers arrive; the same on every
        call."""
        check_not_in_event_loop("DuplexStream.response()")
        if self._response is None:
            self._response = Response(self._loop, self._loop.call(self._stream.response))
        return self._response

    def close(self) -> None:
        """Close the stream; if either side has not ended, reset it (RST_STREAM CANCEL)."""
        if self._loop.in_loop_thread:
            return
        try:
            self._loop.call(self._stream.aclose)
        except RuntimeError:
            pass  # the connection (and its loop) is already closed

    def __enter__(self) -> DuplexStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@final
class PushedStream:
    """A server push on the blocking facade; see [`h2any.PushedStream`][h2any.PushedStream]."""

    def __init__(self, loop: LoopThread, push: AsyncPushedStream) -> None:
        self._loop = loop
        self._push = push
        self.stream_id = push.stream_id
        self.parent_stream_id = push.parent_stream_id
        self.method = push.method
        self.scheme = push.scheme
        self.authority = push.authority
        self.path = push.path
        self.request_headers = push.request_headers

    def __repr__(self) -> str:
        return f"<h2any.sync.PushedStream {self.method} {self.path} stream {self.stream_id}>"

    def get_response(self) -> Response:
        """Wait for the pushed response's headers and return it."""
        check_not_in_event_loop("PushedStream.get_response()")
        return Response(self._loop, self._loop.call(self._push.get_response))

    def cancel(self) -> None:
        """Refuse the push (RST_STREAM CANCEL) and release what was buffered for it."""
        self._loop.call(self._push.cancel)


@final
class Connection(LoopHosted):
    """A thread-safe, blocking HTTP/2 connection: the async core, run in its own loop thread.

    Takes the same arguments as [`h2any.Connection`][h2any.Connection], plus ``backend``
    (``"asyncio"`` or ``"trio"``) and ``backend_options`` for the loop thread (passed to
    ``anyio.run``; by default asyncio runs on uvloop when it is installed, ``{}`` turns
    that off). Use it as a context manager, or call `close`; a facade that is never
    closed warns (``ResourceWarning``).

    Raises the same errors as the async API. Calling it from inside a running event loop
    raises ``RuntimeError`` instead of freezing that loop.
    """

    def __init__(
        self,
        url: str,
        *,
        backend: str = "asyncio",
        backend_options: dict[str, Any] | None = None,
        **options: Unpack[ConnectOptions],
    ) -> None:
        check_not_in_event_loop("h2any.sync.Connection()")
        self._closed = True
        connection = AsyncConnection(url, **options)  # validates options in this thread
        self._loop = LoopThread(backend, backend_options)
        try:
            # The connection task runs in the loop thread's own task group, as with
            # h2any.connect(task_group, url): nursery-scoped to the loop thread.
            self._loop.start(functools.partial(run_connection, connection))
        except BaseException:
            self._loop.stop()
            raise
        self._connection = connection
        self._aclose_hosted = self._connection.aclose
        self._opened()
        self.origin = connection.origin

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<h2any.sync.Connection {self.origin} ({state})>"

    @property
    def is_closed(self) -> bool:
        """True once the connection can take no new requests."""
        return self._closed or self._connection.is_closed

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        body: BodyTypes = None,
        timeout: TimeoutTypes | None = None,
    ) -> Response:
        """Send a request; return the [`Response`][h2any.Response] once its headers arrive.

        Same arguments and errors as [`h2any.Connection.request`][h2any.Connection.request].
        """
        check_not_in_event_loop("Connection.request()")
        response = self._loop.call(_request, self._connection, method, url, headers, body, timeout)
        return Response(self._loop, response)

    @contextmanager
    def stream(
        self,
        method: str,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        body: BodyTypes = None,
        timeout: TimeoutTypes | None = None,
    ) -> Iterator[Response]:
        """Like `request`, as a context manager that closes the response on exit."""
        response = self.request(method, url, headers=headers, body=body, timeout=timeout)
        try:
            yield response
        finally:
            response.close()

    def open_stream(
        self,
        method: str,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        timeout: TimeoutTypes | None = None,
    ) -> DuplexStream:
        """Open a full-duplex stream (use it as a context manager); see
        [`h2any.Connection.open_stream`][h2any.Connection.open_stream]. One thread may send while
        another reads."""
        check_not_in_event_loop("Connection.open_stream()")
        stream = self._loop.call(_open_stream, self._connection, method, url, headers, timeout)
        return DuplexStream(self._loop, stream)

    @contextmanager
    def websocket(
        self,
        url: str,
        *,
        subprotocols: Sequence[str] | None = None,
        headers: HeaderTypes | None = None,
        timeout: TimeoutTypes | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> Iterator[WebSocket]:
        """Open a WebSocket over HTTP/2 (RFC 8441), as a context manager giving an
        ``h2any.sync.WebSocket``; same arguments and errors as
        [`h2any.Connection.websocket`][h2any.Connection.websocket]. Leaving the block closes
        it with 1000 (after an exception: resets its stream). One thread may send while
        another receives."""
        check_not_in_event_loop("Connection.websocket()")
        opened = self._loop.call(
            open_websocket,
            self._connection,
            url,
            subprotocols,
            headers,
            timeout,
            max_message_size,
        )
        with WebSocket(self._loop, opened) as websocket:
            yield websocket

    def get_pushes(
        self, stream_id: int | None = None, capture_all: bool = False
    ) -> Iterator[PushedStream]:
        """Iterate over pushes the server promised; see
        [`h2any.Connection.get_pushes`][h2any.Connection.get_pushes]."""
        check_not_in_event_loop("Connection.get_pushes()")
        iterator = self._connection.get_pushes(stream_id, capture_all)
        next_push = iterator.__anext__
        while True:
            try:
                push = self._loop.call(next_push)
            except StopAsyncIteration:
                return
            yield PushedStream(self._loop, push)

    def ping(self, timeout: float | None = None) -> float:
        """Send a PING and return the round-trip time in seconds."""
        check_not_in_event_loop("Connection.ping()")
        return self._loop.call(functools.partial(self._connection.ping, timeout))


def hosted_connection(connection: Connection) -> AsyncConnection:
    """The async [`h2any.Connection`][h2any.Connection] that ``connection`` hosts in its loop
    thread."""
    return connection._connection
