"""A small embedded HTTP/2 server built on the sans-IO ``h2`` library and anyio.

The public names are re-exported from `h2any.testing`.

Shape: one *connection task* owns each socket and its `h2.connection.H2Connection`.
A reader task feeds received bytes into the connection's inbox; request handlers run in
their own tasks and hand their `Response` back through the same inbox.  The
connection task drains everything that is pending, lets h2 turn it into frames (sending
response bodies only as far as the peer's flow-control windows allow) and then performs a
single socket write.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field

import anyio
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
from anyio.abc import ByteStream, SocketAttribute, TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from anyio.streams.tls import TLSStream
from h2.errors import ErrorCodes

__all__ = ("App", "Request", "Response", "Server", "ServerStats", "default_app", "serve")

logger = logging.getLogger("h2any.testing")

#: Bytes requested from the socket per read.
_READ_SIZE = 65536
#: Stop generating DATA frames and write to the socket once this much is pending.
_WRITE_HIGH_WATER = 1 << 20
#: Largest body ``/bytes/N`` of the default app will produce.
_MAX_BYTES_ROUTE = 1 << 30
_TLS_HANDSHAKE_TIMEOUT = 10.0
_GOAWAY_TIMEOUT = 1.0


@dataclass(frozen=True)
class Request:
    """A complete HTTP/2 request, as handed to the application.

    ``headers`` holds the regular (non pseudo-) header fields, names in lower case, in the
    order received.  ``body`` is the whole request body.
    """

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    stream_id: int
    scheme: str = "http"
    authority: str = ""

    def header(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of header ``name`` (case-insensitive), or ``default``."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return default


@dataclass
class Response:
    """A response produced by the application.

    Header names must be lower case (HTTP/2 forbids upper-case names).  ``trailers``, when
    given, are sent in a final HEADERS frame after the body.
    """

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[str, str]] | None = None


#: The application signature: an async callable from `Request` to `Response`.
App = Callable[[Request], Awaitable[Response]]


@dataclass
class ServerStats:
    """Counters for one `serve` instance (all connections together)."""

    connections: int = 0
    """Connections accepted (after a successful TLS handshake, when TLS is used)."""
    active_connections: int = 0
    """Connections currently open."""
    requests: int = 0
    """Requests received completely and handed to the application."""
    responses: int = 0
    """Responses sent completely (final frame queued)."""
    streams_reset: int = 0
    """Streams reset by the client (RST_STREAM) before the response was complete."""
    handler_errors: int = 0
    """Application calls that raised an exception."""
    connection_errors: int = 0
    """Connections that ended with an unexpected exception (a bug; logged)."""
    active_streams: int = 0
    """Streams currently open (request received, response not finished)."""
    max_active_streams: int = 0
    """Peak of ``active_streams``: the concurrency the clients achieved."""
    bytes_received: int = 0
    """Bytes read from sockets (after TLS decryption)."""
    bytes_sent: int = 0
    """Bytes written to sockets (before TLS encryption)."""


class Server:
    """A running server, as yielded by `serve`."""

    def __init__(
        self,
        app: App,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        max_concurrent_streams: int,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.max_concurrent_streams = max_concurrent_streams
        self.stats = ServerStats()

    @property
    def url(self) -> str:
        """Base URL: ``http://HOST:PORT`` (h2c, prior knowledge) or ``https://localhost:PORT``."""
        if self.ssl_context is not None:
            return f"https://localhost:{self.port}"
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def __repr__(self) -> str:
        return f"<Server {self.url}>"

    async def _handle_socket(self, stream: ByteStream) -> None:
        try:
            if self.ssl_context is not None:
                try:
                    with anyio.fail_after(_TLS_HANDSHAKE_TIMEOUT):
                        stream = await TLSStream.wrap(
                            stream,
                            server_side=True,
                            ssl_context=self.ssl_context,
                            standard_compatible=False,
                        )
                except (
                    OSError,
                    TimeoutError,
                    ssl.SSLError,
                    anyio.BrokenResourceError,
                    anyio.EndOfStream,
                ) as exc:
                    logger.debug("TLS handshake failed: %r", exc)
                    await anyio.aclose_forcefully(stream)
                    return
            self.stats.connections += 1
            self.stats.active_connections += 1
            try:
                await _ServerConnection(self, stream).run()
            except Exception:
                # A bug in one connection must not take the whole server down.
                self.stats.connection_errors += 1
                logger.exception("HTTP/2 connection failed")
            finally:
                self.stats.active_connections -= 1
        finally:
            await anyio.aclose_forcefully(stream)


@asynccontextmanager
async def serve(
    app: App | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    ssl_context: ssl.SSLContext | None = None,
    max_concurrent_streams: int = 100,
) -> AsyncIterator[Server]:
    """Run an HTTP/2 server for the duration of an ``async with`` block.

    ``app`` defaults to `default_app`.  ``port=0`` picks a free port (see
    ``server.port`` / ``server.url``).  Without ``ssl_context`` the server speaks cleartext
    HTTP/2 with prior knowledge (h2c); with one it speaks TLS and the context's ALPN
    protocols are set to ``["h2"]``.  ``max_concurrent_streams`` is advertised in SETTINGS
    and enforced per connection.

    Leaving the block cancels the listener, every connection and every running handler,
    sends GOAWAY where possible and closes all sockets. An exception raised inside the block
    leaves it as itself, never wrapped in an ``ExceptionGroup``.
    """
    if ssl_context is not None:
        ssl_context.set_alpn_protocols(["h2"])
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    async with listener:
        bound_port: int = listener.extra(SocketAttribute.local_port)
        server = Server(app or default_app, host, bound_port, ssl_context, max_concurrent_streams)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(listener.serve, server._handle_socket, tg)
                try:
                    yield server
                finally:
                    tg.cancel_scope.cancel()
        except BaseException as exc:
            # The task group wraps what the block raised in an ExceptionGroup; raise the one
            # exception inside instead. asynccontextmanager then sees its own exception come
            # back and lets it continue unchanged (its traceback and __context__ kept).
            sole = _sole_exception(exc)
            if sole is exc:
                raise
            context = sole.__context__
            try:
                raise sole
            finally:
                sole.__context__ = context
                del sole, context


def _sole_exception(exc: BaseException) -> BaseException:
    """The one exception inside (nested) exception groups of one member, else ``exc``."""
    # BaseExceptionGroup is built in from Python 3.11, the exceptiongroup backport's before.
    inner = exc
    while any(cls.__name__ == "BaseExceptionGroup" for cls in type(inner).__mro__):
        members: tuple[BaseException, ...] = getattr(inner, "exceptions", ())
        if len(members) != 1:
            break
        (inner,) = members
    return inner


# --------------------------------------------------------------------------- connection


@dataclass
class _HandlerDone:
    stream_id: int
    response: Response | None
    error: Exception | None = None


class _Eof:
    """Sent by the reader task when the socket is finished."""


_EOF = _Eof()
_InboxItem = bytes | _HandlerDone | _Eof


class _Stream:
    __slots__ = (
        "authority",
        "body",
        "chunk",
        "headers",
        "method",
        "offset",
        "path",
        "request_ended",
        "scheme",
        "scope",
        "stream_id",
        "trailers",
    )

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.method = ""
        self.path = ""
        self.scheme = "http"
        self.authority = ""
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()
        self.request_ended = False
        self.scope: anyio.CancelScope | None = None
        # Outbound body, once the response headers have been queued.
        self.chunk: memoryview | None = None
        self.offset = 0
        self.trailers: list[tuple[str, str]] | None = None


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


class _ServerConnection:
    """Owns one socket and its H2Connection; nothing else touches either."""

    def __init__(self, server: Server, stream: ByteStream) -> None:
        self.server = server
        self.stats = server.stats
        self.stream = stream
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config=config)
        self.h2.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: server.max_concurrent_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
            },
        )
        self.streams: dict[int, _Stream] = {}
        # Streams with response bytes waiting for flow-control window, in FIFO order.
        self.sending: dict[int, _Stream] = {}
        send, receive = anyio.create_memory_object_stream[_InboxItem](64)
        self.inbox_send: MemoryObjectSendStream[_InboxItem] = send
        self.inbox_receive: MemoryObjectReceiveStream[_InboxItem] = receive
        self.closed = False
        self.writing = False
        self.tg: TaskGroup | None = None

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as tg, self.inbox_send, self.inbox_receive:
                self.tg = tg
                tg.start_soon(self._reader)
                try:
                    self.h2.initiate_connection()
                    await self._flush()
                    while not self.closed:
                        item = await self.inbox_receive.receive()
                        self._process(item)
                        while not self.closed:
                            try:
                                item = self.inbox_receive.receive_nowait()
                            except anyio.WouldBlock:
                                break
                            self._process(item)
                        await self._pump_and_flush()
                finally:
                    tg.cancel_scope.cancel()
                    await self._goodbye()
        finally:
            self.stats.active_streams -= len(self.streams)
            self.streams.clear()
            self.sending.clear()

    async def _goodbye(self) -> None:
        """Best effort GOAWAY on shutdown (skipped if a write was interrupted mid-frame)."""
        if self.writing or self.h2.state_machine.state == h2.connection.ConnectionState.CLOSED:
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(_GOAWAY_TIMEOUT):
            try:
                self.h2.close_connection()
                await self.stream.send(self.h2.data_to_send())
            except (
                OSError,
                anyio.BrokenResourceError,
                anyio.ClosedResourceError,
                h2.exceptions.ProtocolError,
            ):
                pass

    async def _reader(self) -> None:
        try:
            while True:
                data = await self.stream.receive(_READ_SIZE)
                self.stats.bytes_received += len(data)
                await self.inbox_send.send(data)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
            await self.inbox_send.send(_EOF)

    async def _flush(self) -> None:
        data = self.h2.data_to_send()
        if not data:
            return
        self.writing = True
        try:
            await self.stream.send(data)
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.closed = True
        else:
            self.stats.bytes_sent += len(data)
        self.writing = False

    async def _pump_and_flush(self) -> None:
        while True:
            more = self._pump()
            await self._flush()
            if not more or self.closed:
                return

    # -- everything below is synchronous: no awaits while touching h2 state ---------------

    def _process(self, item: _InboxItem) -> None:
        if isinstance(item, bytes):
            try:
                events = self.h2.receive_data(item)
            except h2.exceptions.ProtocolError as exc:
                # h2 has queued a GOAWAY; flush it and close.
                logger.debug("protocol error from client: %r", exc)
                self.closed = True
                return
            for event in events:
                self._handle_event(event)
        elif isinstance(item, _HandlerDone):
            self._handler_done(item)
        else:  # _EOF
            self.closed = True

    def _handle_event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            self._request_received(event)
        elif isinstance(event, h2.events.DataReceived):
            sid = event.stream_id
            self.h2.acknowledge_received_data(event.flow_controlled_length, sid)
            st = self.streams.get(sid)
            if st is not None and st.scope is None:
                st.body += event.data
        elif isinstance(event, h2.events.StreamEnded):
            st = self.streams.get(event.stream_id)
            if st is not None and not st.request_ended:
                st.request_ended = True
                self._start_handler(st)
        elif isinstance(event, h2.events.StreamReset):
            st = self.streams.get(event.stream_id)
            if st is not None:
                self.stats.streams_reset += 1
                self._forget(st)
        elif isinstance(event, h2.events.ConnectionTerminated):
            logger.debug("client sent GOAWAY: %r", event)
            self.closed = True
        # WindowUpdated / RemoteSettingsChanged need no action: _pump() runs after every
        # batch and sends whatever the new windows allow.  PINGs are answered by h2.

    def _request_received(self, event: h2.events.RequestReceived) -> None:
        st = _Stream(event.stream_id)
        for raw_name, raw_value in event.headers:
            name, value = _text(raw_name), _text(raw_value)
            if name == ":method":
                st.method = value
            elif name == ":path":
                st.path = value
            elif name == ":scheme":
                st.scheme = value
            elif name == ":authority":
                st.authority = value
            elif not name.startswith(":"):
                st.headers.append((name, value))
        self.streams[st.stream_id] = st
        self.stats.active_streams += 1
        self.stats.max_active_streams = max(
            self.stats.max_active_streams, self.stats.active_streams
        )

    def _start_handler(self, st: _Stream) -> None:
        assert self.tg is not None
        request = Request(
            method=st.method,
            path=st.path,
            headers=st.headers,
            body=bytes(st.body),
            stream_id=st.stream_id,
            scheme=st.scheme,
            authority=st.authority,
        )
        st.body = bytearray()
        st.scope = anyio.CancelScope()
        self.stats.requests += 1
        self.tg.start_soon(self._run_handler, request, st.scope)

    async def _run_handler(self, request: Request, scope: anyio.CancelScope) -> None:
        with scope:
            try:
                response = await self.server.app(request)
                if not isinstance(response, Response):
                    raise TypeError(f"app returned {type(response).__name__}, not Response")
                done = _HandlerDone(request.stream_id, response)
            except Exception as exc:
                done = _HandlerDone(request.stream_id, None, exc)
            with suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self.inbox_send.send(done)

    def _handler_done(self, done: _HandlerDone) -> None:
        st = self.streams.get(done.stream_id)
        if st is None:  # reset by the client meanwhile
            return
        response = done.response
        if response is None:
            self.stats.handler_errors += 1
            logger.error(
                "request handler failed for %s %s (stream %d)",
                st.method,
                st.path,
                st.stream_id,
                exc_info=done.error,
            )
            response = _error_response(500, "Internal Server Error")
        head_only = st.method == "HEAD"
        body = b"" if head_only else bytes(response.body)
        trailers = None if head_only else response.trailers
        headers = [(":status", str(response.status)), *response.headers]
        end_now = not body and not trailers
        try:
            self.h2.send_headers(st.stream_id, headers, end_stream=end_now)
        except (h2.exceptions.ProtocolError, ValueError, TypeError, UnicodeError) as exc:
            logger.error("could not send response headers on stream %d: %r", st.stream_id, exc)
            self._reset(st, ErrorCodes.INTERNAL_ERROR)
            return
        if end_now:
            self._finished(st)
            return
        st.chunk = memoryview(body)
        st.offset = 0
        st.trailers = trailers
        self.sending[st.stream_id] = st

    def _pump(self) -> bool:
        """Queue DATA frames round-robin within the flow-control windows.

        Returns True if it stopped only because enough output is pending for one write.
        """
        queued = 0
        progress = True
        while progress and self.sending:
            progress = False
            for st in list(self.sending.values()):
                sent = self._send_some(st)
                if sent >= 0:
                    progress = True
                    queued += sent
                if queued >= _WRITE_HIGH_WATER:
                    return True
        return False

    def _send_some(self, st: _Stream) -> int:
        """Queue up to one frame of ``st``'s body.

        Returns the number of body bytes queued, or -1 if nothing could be done (window
        exhausted).
        """
        assert st.chunk is not None
        sid = st.stream_id
        remaining = len(st.chunk) - st.offset
        try:
            if remaining:
                size = min(
                    remaining,
                    self.h2.local_flow_control_window(sid),
                    self.h2.max_outbound_frame_size,
                )
                if size <= 0:
                    return -1
                last = size == remaining
                self.h2.send_data(
                    sid, st.chunk[st.offset : st.offset + size], end_stream=last and not st.trailers
                )
                st.offset += size
                if not last:
                    return size
            else:
                size = 0
            if st.trailers:
                self.h2.send_headers(sid, st.trailers, end_stream=True)
        except (h2.exceptions.StreamClosedError, h2.exceptions.FlowControlError):
            self._forget(st)
            return 0
        except (h2.exceptions.ProtocolError, ValueError, TypeError, UnicodeError) as exc:
            logger.error("could not send response on stream %d: %r", sid, exc)
            self._reset(st, ErrorCodes.INTERNAL_ERROR)
            return 0
        self._finished(st)
        return size

    def _finished(self, st: _Stream) -> None:
        self.stats.responses += 1
        self._forget(st)

    def _reset(self, st: _Stream, code: ErrorCodes) -> None:
        with suppress(h2.exceptions.ProtocolError):
            self.h2.reset_stream(st.stream_id, code)
        self._forget(st)

    def _forget(self, st: _Stream) -> None:
        if self.streams.pop(st.stream_id, None) is not None:
            self.stats.active_streams -= 1
        self.sending.pop(st.stream_id, None)
        if st.scope is not None:
            st.scope.cancel()
        st.chunk = None


# --------------------------------------------------------------------------- default app


def _error_response(status: int, message: str) -> Response:
    body = (message + "\n").encode()
    return Response(
        status,
        [("content-type", "text/plain; charset=utf-8"), ("content-length", str(len(body)))],
        body,
    )


_PATTERN = bytes(range(251))


def _pattern_bytes(n: int) -> bytes:
    """``n`` deterministic bytes, byte ``i`` being ``i % 251``."""
    reps = -(-n // len(_PATTERN))
    return (_PATTERN * reps)[:n]


async def default_app(request: Request) -> Response:
    """The application used when `serve` is given none.

    Routes (query strings are ignored):

    * ``/`` -- a short text page naming the stream id;
    * ``/echo`` -- the request body, with the request's content-type;
    * ``/bytes/N`` -- ``N`` deterministic bytes, byte ``i`` being ``i % 251``;
    * ``/headers`` -- a JSON object of the request headers (repeated names joined by ", ");
    * anything else -- 404.
    """
    path = request.path.split("?", 1)[0]
    if path == "/":
        body = (
            f"Hello from h2any.testing: {request.method} {request.path} "
            f"on stream {request.stream_id}\n"
        ).encode()
        ctype = "text/plain; charset=utf-8"
    elif path == "/echo":
        body = request.body
        ctype = request.header("content-type", "application/octet-stream") or ""
    elif path.startswith("/bytes/"):
        try:
            n = int(path[len("/bytes/") :])
        except ValueError:
            return _error_response(400, "bad byte count")
        if not 0 <= n <= _MAX_BYTES_ROUTE:
            return _error_response(400, f"byte count must be within 0..{_MAX_BYTES_ROUTE}")
        body = _pattern_bytes(n)
        ctype = "application/octet-stream"
    elif path == "/headers":
        merged: dict[str, str] = {}
        for name, value in request.headers:
            merged[name] = f"{merged[name]}, {value}" if name in merged else value
        body = json.dumps(merged, indent=2, sort_keys=True).encode() + b"\n"
        ctype = "application/json"
    else:
        return _error_response(404, "Not Found")
    return Response(200, [("content-type", ctype), ("content-length", str(len(body)))], body)
