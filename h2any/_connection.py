"""The public ``Connection``: one HTTP/2 connection, shared by any number of tasks.

A thin object over the rooms below it: the connection task (``_task.py``) owns the socket
and the state machine; streams (``_stream.py``) carry each exchange; requests are checked
and built by ``_request.py``; bodies are sent by ``_upload.py``; responses are read by
``_response.py``. [`Connection.open_stream`][h2any.Connection.open_stream] gives the full-duplex
primitive; [`Connection.request`][h2any.Connection.request] and
[`Connection.stream`][h2any.Connection.stream] are a few lines over the same stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Final, final

import anyio
import anyio.abc

from ._body import BodyTypes, prepare_body
from ._config import Origin, Timeout, TimeoutTypes, VerifyTypes, as_timeout, make_ssl_context
from ._duplex import DuplexStream
from ._engine import get_engine
from ._flow import MAX_WINDOW_SIZE, BaseFlowControlManager, FlowControlManager
from ._headers import HeaderTypes
from ._log import DEBUG, request_debug_enabled, request_started
from ._options import ConnectOptions, Unpack
from ._proxy import ProxyConfig
from ._push import PushedStream, PushIterator, PushPolicy, PushRegistry
from ._request import RequestBuilder
from ._response import Response, receive_response
from ._stream import Stream
from ._task import ConnectionTask
from ._version import __version__
from ._websocket import (
    DEFAULT_MAX_MESSAGE_SIZE,
    ExtendedConnectUnsupported,
    WebSocket,
    handshake_headers,
    require_wsproto,
    start_websocket,
)

__all__ = (
    "Connection",
    "PendingResponse",
    "__version__",
    "connect",
    "connect_over",
    "queue_request",
    "run_connection",
)

DEFAULT_CONNECTION_WINDOW: Final = 16 * 1024 * 1024
DEFAULT_STREAM_WINDOW: Final = 2 * 1024 * 1024
DEFAULT_MAX_FRAME_SIZE: Final = 64 * 1024
DEFAULT_TIMEOUT: Final = Timeout()


@final
class PendingResponse:
    """A request queued by [`Connection.request_nowait`][h2any.Connection.request_nowait].

    ``await pending`` returns its [`Response`][h2any.Response] once the response headers arrive (or
    raises what [`Connection.request`][h2any.Connection.request] would); it can be awaited once.
    Cancelling the awaiting task, or calling `cancel` before awaiting, resets the stream. A pending
    response never awaited nor cancelled stays buffered (within its stream's window) until
    the connection closes, like a [`Response`][h2any.Response] never read; one larger than the
    window also keeps its stream slot.
    """

    __slots__ = ("_max_decompressed_size", "_stream", "_taken")

    def __init__(self, stream: Stream, max_decompressed_size: int | None) -> None:
        self._stream = stream
        self._max_decompressed_size = max_decompressed_size
        self._taken = False

    def __repr__(self) -> str:
        state = "awaited" if self._taken else "pending"
        return f"<PendingResponse {state} stream {self._stream.stream_id or '(not open)'}>"

    @property
    def stream_id(self) -> int:
        """The HTTP/2 stream id, or 0 while the request waits for a free stream slot."""
        return self._stream.stream_id

    def __await__(self) -> Generator[Any, None, Response]:
        if self._taken:
            raise RuntimeError("this PendingResponse was already awaited or cancelled")
        self._taken = True
        return receive_response(self._stream, self._max_decompressed_size).__await__()

    def cancel(self) -> None:
        """Give up on the response without awaiting it: the stream is reset (RST_STREAM
        CANCEL) if it is open, or never opened. Does nothing once awaited."""
        if not self._taken:
            self._taken = True
            self._stream.abandon()


@final
class Connection:
    """One HTTP/2 connection to one origin, shared by any number of tasks.

    ``url`` is an origin: ``https://host[:port]`` (TLS, ALPN ``h2``) or ``http://host[:port]``
    (h2c with prior knowledge). Use it as an async context manager, which runs the
    connection task in a task group of its own; or start it in your own task group with
    [`connect`][h2any.connect].

    Arguments:
        verify: ``True`` (certifi roots, hostname checked), a CA bundle path, an
            `ssl.SSLContext`, or ``False`` to skip verification (insecure).
        cert: a client certificate: PEM path, ``(certfile, keyfile)`` or with a password.
        timeout: a [`Timeout`][h2any.Timeout], or seconds for all of its parts, or ``None``.
        window_manager: the [`BaseFlowControlManager`][h2any.BaseFlowControlManager] *class* that
            decides when to grant received bytes back to the server.
        initial_window_size: the receive window of each stream, in bytes.
        connection_window_size: the receive window of the whole connection.
        max_frame_size: the largest DATA frame the server may send.
        max_concurrent_streams: a limit of our own on open streams (the server's applies too).
        headers: default headers sent with every request.
        max_decompressed_size: the largest decoded body [`Response.read`][h2any.Response.read] will
            produce; a larger one raises [`DecodingError`][h2any.DecodingError] (decompression
            bombs).
        enable_push: accept server push (off by default: SETTINGS_ENABLE_PUSH=0).
        push_policy: decides which pushes to accept, given the [`PushedStream`][h2any.PushedStream];
            by default only pushes for this connection's own origin are.
        max_unclaimed_pushes: how many promised pushes may wait for `get_pushes`;
            further ones are refused (RST_STREAM REFUSED_STREAM).
        keepalive_interval: after this many seconds without hearing from the server, send
            a PING; if no acknowledgement arrives within ``keepalive_timeout`` (default: the
            read timeout, or 20 s), the connection is declared dead and every waiter gets
            [`ConnectionClosed`][h2any.ConnectionClosed]. ``None`` (the default) sends no keepalive
            PINGs.
        max_header_list_size: the largest decoded header list accepted from the server
            (advertised in SETTINGS; a larger one fails the connection).
        engine: the HTTP/2 implementation: ``"h2"``, or ``"jh2"`` (faster; the ``speed``
            extra). By default the ``H2ANY_ENGINE`` environment variable, else ``jh2`` when
            it is installed, else ``h2``.
        proxy: an HTTP proxy URL (``http://[user:password@]host:port``, or ``https://``
            for TLS to the proxy itself) to tunnel through with CONNECT.
        frame_observer: a debugging hook called as ``frame_observer("send" | "recv",
            frame)`` with each HTTP/2 frame (a ``hyperframe.frame.Frame``), in the connection
            task; it must not block. The CLI's ``-v`` uses it.
    """

    def __init__(
        self,
        url: str,
        *,
        verify: VerifyTypes = True,
        cert: str | tuple[str, str] | tuple[str, str, str] | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        enable_push: bool = False,
        window_manager: type[BaseFlowControlManager] = FlowControlManager,
        initial_window_size: int = DEFAULT_STREAM_WINDOW,
        connection_window_size: int = DEFAULT_CONNECTION_WINDOW,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
        max_concurrent_streams: int | None = None,
        headers: HeaderTypes | None = None,
        max_decompressed_size: int | None = None,
        push_policy: PushPolicy | None = None,
        max_unclaimed_pushes: int = 32,
        keepalive_interval: float | None = None,
        keepalive_timeout: float | None = None,
        max_header_list_size: int = 64 * 1024,
        frame_observer: Callable[[str, Any], None] | None = None,
        proxy: str | None = None,
        engine: str | None = None,
    ) -> None:
        self.origin = Origin.parse(url)
        self.timeout = as_timeout(timeout)
        if not 65535 <= connection_window_size <= MAX_WINDOW_SIZE:
            raise ValueError("connection_window_size must be between 65535 and 2**31-1")
        if not 1 <= initial_window_size <= MAX_WINDOW_SIZE:
            raise ValueError("initial_window_size must be between 1 and 2**31-1")
        if not 16384 <= max_frame_size <= 16777215:
            raise ValueError("max_frame_size must be between 16384 and 16777215")
        if max_concurrent_streams is not None and max_concurrent_streams < 1:
            raise ValueError("max_concurrent_streams must be at least 1")
        if keepalive_interval is not None and not keepalive_interval > 0:
            raise ValueError("keepalive_interval must be positive or None")
        if max_unclaimed_pushes < 0:
            raise ValueError("max_unclaimed_pushes must be at least 0")
        if max_decompressed_size is not None and max_decompressed_size < 0:
            raise ValueError("max_decompressed_size must be None or at least 0")
        self._enable_push = enable_push
        self._max_decompressed_size = max_decompressed_size
        engine_ = get_engine(engine)
        self._requests = RequestBuilder(self.origin, headers, engine_.NeverIndexedHeaderTuple)
        self._pushes = PushRegistry(
            self.origin, push_policy, max_unclaimed_pushes, self.timeout.read
        )
        self._task = ConnectionTask(
            origin=self.origin,
            timeout=self.timeout,
            engine=engine_,
            ssl_context=(make_ssl_context(verify, cert) if self.origin.scheme == "https" else None),
            proxy=None if proxy is None else ProxyConfig.parse(proxy),
            window_manager=window_manager,
            initial_window_size=initial_window_size,
            connection_window_size=connection_window_size,
            max_frame_size=max_frame_size,
            max_concurrent_streams=max_concurrent_streams,
            max_header_list_size=max_header_list_size,
            enable_push=enable_push,
            pushes=self._pushes,
            max_decompressed_size=max_decompressed_size,
            keepalive_interval=keepalive_interval,
            keepalive_timeout=keepalive_timeout or self.timeout.read or 20.0,
            frame_observer=frame_observer,
        )
        self._task_group: anyio.abc.TaskGroup | None = None

    def __repr__(self) -> str:
        state = "closed" if self.is_closed else "open"
        engine = self._task.engine
        return f"<h2any.Connection {self.origin} ({state}, engine {engine.name} {engine.version})>"

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Connection:
        if self._task_group is not None or self._task.started:
            raise RuntimeError("this Connection was already started")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            await task_group.start(self._task.run)
        except BaseException:
            # The connection task failed before it started: nothing runs in the group.
            await task_group.__aexit__(None, None, None)
            raise
        self._task_group = task_group
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.aclose()
        finally:
            task_group, self._task_group = self._task_group, None
            if task_group is not None:
                await task_group.__aexit__(None, None, None)

    async def aclose(self) -> None:
        """Close the connection: GOAWAY to the peer, fail open streams, close the socket.

        Idempotent; waits (shielded from cancellation, at most a few seconds) until the
        connection task has finished.
        """
        await self._task.close()

    @property
    def is_closed(self) -> bool:
        """True once the connection can take no new requests."""
        task = self._task
        return task.closing or task.goaway is not None

    @property
    def open_streams(self) -> int:
        """How many streams are open on the wire right now."""
        return self._task.active

    @property
    def max_concurrent_streams(self) -> int:
        """The number of streams that may be open at once (the peer's limit and ours)."""
        return self._task.stream_limit()

    # ------------------------------------------------------------------ requests

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        body: BodyTypes = None,
        timeout: TimeoutTypes | None = None,
    ) -> Response:
        """Send a request and return its [`Response`][h2any.Response] once the response headers
        arrive.

        ``url`` is a path (``"/x?y=1"``) or an absolute URL on this connection's origin.
        The body is read later with ``await response.read()`` or ``response.aiter_bytes()``.
        A streamed ``body`` (a file or an iterable) keeps uploading after the response
        arrives if the server answers early; if the server's response *ends* first, the
        rest of the body is not sent (RFC 9113 section 8.1).

        Raises:
            InvalidRequest: bad method, URL, header or body.
            PoolTimeout, WriteTimeout, ReadTimeout: per [`Timeout`][h2any.Timeout].
            StreamReset: the server reset the stream.
            ConnectionClosed, ConnectionTerminated, ProtocolError: the connection ended.
            Exception: whatever a streamed body's source raised while it was being sent.
        """
        stream = self._begin(method, url, headers, body, timeout)
        return await receive_response(stream, self._max_decompressed_size)

    def request_nowait(
        self,
        method: str,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        body: BodyTypes = None,
        timeout: TimeoutTypes | None = None,
    ) -> PendingResponse:
        """Queue a request without waiting: ``await`` the returned
        [`PendingResponse`][h2any.PendingResponse] for its [`Response`][h2any.Response].

        Many requests can be issued from one task this way, with no task per request;
        their responses are buffered (each within its stream's flow-control window) until
        awaited. A streamed body (a file or an iterable) is sent by a task of the
        connection's own. Arguments and errors are those of `request`: a bad request
        or a closed connection raises here, timeouts and resets when awaited.
        """
        stream = self._begin(method, url, headers, body, timeout)
        return PendingResponse(stream, self._max_decompressed_size)

    def _begin(
        self,
        method: str,
        url: str,
        headers: HeaderTypes | None,
        body: BodyTypes,
        timeout: TimeoutTypes | None,
        first_in_line: bool = False,
        on_open: Callable[[], None] | None = None,
        expires: float | None = None,
    ) -> Stream:
        """Check and queue a request; start the pump of its streamed body, if it has one.
        ``expires``: its total deadline on the event loop's clock, if the caller set one."""
        prepared = prepare_body(body)
        fields, declared = self._requests.fields(method, url, headers, prepared.length)
        task = self._task
        source = prepared.source
        chosen = self.timeout if timeout is None else as_timeout(timeout)
        stream = Stream(task, fields, prepared.payload, source is not None, chosen)
        if expires is not None:
            stream.expires = expires
        stream.declared_length = declared
        stream.on_open = on_open
        task.queue(stream, first_in_line)
        if source is not None:
            task.start_pump(stream, source)
        if request_debug_enabled(DEBUG):  # the only cost of logging per request when off
            request_started(self.origin, method, url, prepared.length, source is not None)
        return stream

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        body: BodyTypes = None,
        timeout: TimeoutTypes | None = None,
    ) -> AsyncIterator[Response]:
        """Like `request`, as a context manager that closes the response on exit.

        Leaving the block before the body has been read resets the stream (RST_STREAM
        CANCEL).
        """
        response = await self.request(method, url, headers=headers, body=body, timeout=timeout)
        try:
            yield response
        finally:
            await response.aclose()

    def open_stream(
        self,
        method: str,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        timeout: TimeoutTypes | None = None,
        protocol: str | None = None,
    ) -> DuplexStream:
        """Open a full-duplex stream: send its request body piece by piece while its
        response arrives. Use it as an async context manager::

            async with conn.open_stream("POST", "/chat") as stream:
                await stream.send(b"hello")
                response = await stream.response()
                await stream.send_eof()
                body = await response.read()

        The request's HEADERS go out as soon as a stream slot is free (without
        END_STREAM); [`DuplexStream.send_eof`][h2any.DuplexStream.send_eof] ends the request side.
        Leaving the block before both sides have ended resets the stream.

        ``protocol`` makes it an extended CONNECT (RFC 8441): ``method`` must be
        ``"CONNECT"``, and the request carries ``:protocol`` (``"websocket"``, say) with
        ``:scheme`` and ``:path``; the server must have announced
        SETTINGS_ENABLE_CONNECT_PROTOCOL = 1. A plain ``"CONNECT"`` (no ``protocol``)
        opens a tunnel to ``url``, a ``host:port`` (RFC 9113 section 8.5: only ``:method``
        and ``:authority`` are sent).

        Raises:
            InvalidRequest: bad method, URL or header (or ``protocol``).
            ExtendedConnectUnsupported: ``protocol`` given, and the server did not announce
                extended CONNECT (nothing is sent).
            ConnectionClosed, ConnectionTerminated: the connection takes no new streams.
        """
        if protocol is not None:
            self._check_extended_connect()
        fields, declared = self._requests.fields(method, url, headers, None, protocol)
        task = self._task
        stream = Stream(
            task, fields, None, True, self.timeout if timeout is None else as_timeout(timeout)
        )
        stream.declared_length = declared
        stream.duplex = True
        task.queue(stream)
        if request_debug_enabled(DEBUG):
            request_started(self.origin, method, url, None, True, protocol or "full duplex")
        return DuplexStream(stream, self._max_decompressed_size)

    def _check_extended_connect(self) -> None:
        task = self._task
        task.check_open()
        if not task.extended_connect_enabled():
            raise ExtendedConnectUnsupported(
                f"{self.origin} does not accept WebSockets over HTTP/2: its SETTINGS lack "
                "SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441), so no extended CONNECT "
                "was sent"
            )

    @asynccontextmanager
    async def websocket(
        self,
        url: str,
        *,
        subprotocols: Sequence[str] | None = None,
        headers: HeaderTypes | None = None,
        timeout: TimeoutTypes | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> AsyncIterator[WebSocket]:
        """Open a WebSocket over HTTP/2 (RFC 8441) on this connection, as an async context
        manager that gives the [`WebSocket`][h2any.WebSocket]::

            async with conn.websocket("/chat", subprotocols=["chat.v2"]) as ws:
                await ws.send("hello")
                print(await ws.receive())

        ``url`` is a path or an absolute URL on this origin (``ws``/``wss`` schemes are
        not needed here). ``subprotocols`` are offered in preference order; ``headers``
        go with the handshake. Messages larger than ``max_message_size`` bytes close the
        WebSocket (1009). Timeouts (``timeout``, else the connection's): ``pool`` for a
        stream slot, ``read`` for the handshake's answer, a PONG and the closing handshake,
        ``write`` while the server's window is shut; an idle WebSocket has no deadline.

        Leaving the block closes the WebSocket with 1000; leaving it with an exception (or
        by cancellation) resets its stream. Needs ``wsproto`` (``pip install
        'h2any[websockets]'``).

        Raises:
            ImportError: wsproto is not installed.
            ExtendedConnectUnsupported: the server did not announce
                SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (nothing is sent).
            WebSocketHandshakeError: the server refused (its ``status`` and ``headers``).
            InvalidRequest, PoolTimeout, ReadTimeout, StreamReset, ConnectionClosed: as for
                any stream (a bad path or header, timeouts, the stream or the connection
                ended).
        """
        websocket = await open_websocket(
            self, url, subprotocols, headers, timeout, max_message_size
        )
        async with websocket:
            yield websocket

    async def ping(self, timeout: float | None = None) -> float:
        """Send a PING and return the round-trip time in seconds.

        Raises ReadTimeout if no acknowledgement arrives within ``timeout`` (default: the
        read timeout), and ConnectionClosed if the connection ends first.
        """
        return await self._task.ping(timeout)

    def get_pushes(
        self, stream_id: int | None = None, capture_all: bool = False
    ) -> AsyncIterator[PushedStream]:
        """Iterate over pushes the server promised (needs ``enable_push=True``).

        ``stream_id`` selects pushes that accompany that request's stream (``None``: any).
        Each call yields only promises not yielded before. With ``capture_all=False`` it
        yields what has arrived and stops; with ``capture_all=True`` it then waits for more
        until the parent stream (or, for ``None``, every open request) has ended, each wait
        bounded by the read timeout.
        """
        if not self._enable_push:
            raise RuntimeError("server push is off: open the connection with enable_push=True")
        return PushIterator(self._pushes, stream_id, capture_all)


async def connect_over(
    task_group: anyio.abc.TaskGroup,
    stream: anyio.abc.ByteStream,
    url: str,
    **options: Any,
) -> Connection:
    """[`connect`][h2any.connect] over ``stream``, a socket the [`Client`][h2any.Client] opened
    (TLS with ALPN ``h2`` already chosen, through ``proxy`` if given: named in the logs only);
    ``verify`` and ``cert`` are not used."""
    options = {**options, "verify": False}
    options.pop("cert", None)
    connection = Connection(url, **options)
    connection._task.preopened = stream
    await task_group.start(run_connection, connection)
    return connection


def queue_request(
    connection: Connection,
    method: str,
    url: str,
    headers: HeaderTypes | None,
    body: BodyTypes,
    timeout: TimeoutTypes | None,
    *,
    first_in_line: bool = False,
    on_open: Callable[[], None] | None = None,
    expires: float | None = None,
) -> PendingResponse:
    """[`Connection.request_nowait`][h2any.Connection.request_nowait] for the
    [`Client`][h2any.Client]: ``first_in_line`` puts the request ahead of others waiting for a
    stream slot (retries of requests the server never processed); ``on_open`` is called when its
    stream opens; ``expires`` is the request's total deadline on the event loop's clock."""
    stream = connection._begin(method, url, headers, body, timeout, first_in_line, on_open, expires)
    return PendingResponse(stream, connection._max_decompressed_size)


async def open_websocket(
    connection: Connection,
    url: str,
    subprotocols: Sequence[str] | None,
    headers: HeaderTypes | None,
    timeout: TimeoutTypes | None,
    max_message_size: int,
) -> WebSocket:
    """Send the WebSocket handshake (an extended CONNECT) and return the open
    [`WebSocket`][h2any.WebSocket] (its reader runs in a task of the connection's own). What
    [`Connection.websocket`][h2any.Connection.websocket] and the blocking facade enter;
    leave with ``_websocket.leave_websocket``."""
    require_wsproto()
    if max_message_size < 1:
        raise ValueError("max_message_size must be at least 1")
    connection._check_extended_connect()
    fields, _ = connection._requests.fields(
        "CONNECT", url, handshake_headers(subprotocols, headers), None, "websocket"
    )
    task = connection._task
    chosen = connection.timeout if timeout is None else as_timeout(timeout)
    stream = Stream(task, fields, None, True, chosen)
    stream.duplex = True  # Timeout.total bounds the handshake (see start_websocket)
    task.queue(stream)
    if request_debug_enabled(DEBUG):
        request_started(connection.origin, "CONNECT", url, None, True, "websocket")
    duplex = DuplexStream(stream, connection._max_decompressed_size)
    return await start_websocket(duplex, stream, task.start_task, subprotocols, max_message_size)


async def run_connection(
    connection: Connection, *, task_status: anyio.abc.TaskStatus[None]
) -> None:
    """The connection task of ``connection``, for ``task_group.start(...)``: connection
    errors are raised by ``start``; it runs until the connection closes."""
    await connection._task.run(task_status=task_status)


async def connect(
    task_group: anyio.abc.TaskGroup,
    url: str,
    **options: Unpack[ConnectOptions],
) -> Connection:
    """Open a [`Connection`][h2any.Connection] whose connection task runs in ``task_group``.

    The connection lives until ``await conn.aclose()`` or until ``task_group`` is
    cancelled, whichever comes first. Takes the same options as [`Connection`][h2any.Connection].
    Connection errors (DNS, TCP, TLS, ALPN) are raised here, not in the task group.
    """
    connection = Connection(url, **options)
    await task_group.start(run_connection, connection)
    return connection
