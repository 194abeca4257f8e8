"""The connection task: the one owner of a connection's socket and HTTP/2 state machine.

Theory of operation
===================

One task per connection -- `ConnectionTask.run` and the loops it starts in its own
task group -- owns the socket and the engine's ``H2Connection``. Nothing else touches
either. Invariants it keeps (here, and only here):

* **Commands in.** Other tasks talk to it only by appending ``(function, argument)`` to
  ``commands`` (a deque: appending never blocks and is safe under cancellation) and setting
  the ``wake`` signal. The writer loop drains *every* queued command, then makes one socket
  write: under load about a hundred requests go out per write.
* **Events out.** Each stream has an inbox (``_stream.Stream``) that the reader loop feeds,
  never blocking, with typed events; it handles every event of one socket read, then
  yields. Reads happen whether or not anybody waits, so PING, SETTINGS and GOAWAY are
  answered at once.
* **Full duplex.** A stream's request side (the `Outbox`) and response side (its
  inbox) are independent: a response is delivered while its body is still being sent.
* **Backpressure without starvation.** Every DATA frame reaches the window managers as it
  arrives (``_flow.py``). The connection window is granted back at once, so no unread
  stream can starve another; a stream's window only as its reader consumes, so an inbox
  never holds more than its stream window.
* **Slots.** ``active`` counts streams h2 considers open; a request beyond the peer's
  MAX_CONCURRENT_STREAMS (100 until its first SETTINGS arrive) waits in ``pending`` until a
  slot frees. Every way a stream ends goes through `finish`, which frees its slot
  exactly once -- so cancelled requests never leak slots.
* **Deadlines** are kept by one watchdog task (``_deadlines.py``); the connection task moves
  a stream's deadlines as it progresses (pool -> write -> read).
* **Failure reaches everyone.** Any end of the connection (socket loss, protocol error,
  GOAWAY, ``close``) goes through `shutdown`, which posts a typed error into every
  inbox and fails every pending request and PING. The loops never raise into a task group;
  body pumps (tasks that feed a ``body=`` source to its stream) run in the connection's
  task group and end with it.
"""

from __future__ import annotations

import math
import os
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute
from h2.errors import ErrorCodes

from . import _log, _socket
from ._config import Origin, Timeout
from ._deadlines import Signal, Watchdog
from ._exceptions import (
    ConnectError,
    ConnectionClosed,
    ConnectionTerminated,
    ConnectTimeout,
    FlowControlError,
    H2anyError,
    HTTPVersionError,
    ProtocolError,
    ReadTimeout,
    StreamReset,
    TLSError,
    WriteTimeout,
    clone_error,
    error_code_name,
)
from ._flow import (
    AdaptiveFlowControlManager,
    BaseFlowControlManager,
    ConnectionWindow,
    FlowControlManager,
    StreamWindow,
)
from ._headers import joined_cookies, malformed_response_fields
from ._proxy import ProxyConfig, open_tunnel
from ._push import PushedStream, PushRegistry
from ._stream import (
    CLOSED,
    END,
    HALF_CLOSED_LOCAL,
    HALF_CLOSED_REMOTE,
    OPEN,
    Data,
    ResponseHeaders,
    Stream,
    Trailers,
)
from ._upload import Outbox, pump_body

if TYPE_CHECKING:
    from h2 import events as ev

    from ._engine import Engine, EngineConnection

__all__ = ("ConnectionTask",)

# Inbox events are built with tuple.__new__: a NamedTuple's own __new__ is a Python-level
# call, paid for every frame of every response.
new_data: Final = tuple.__new__

# Until the peer's first SETTINGS arrive h2 assumes no stream limit; a burst of requests
# sent in that moment would be refused by any real server. Assume the RFC's recommended
# minimum instead.
EARLY_STREAM_LIMIT: Final = 100
CLOSE_TIMEOUT: Final = 5.0
READ_SIZE: Final = 1024 * 1024
_HEADER_BLOCK_FRAMES: Final = frozenset({0x1, 0x5, 0x9})  # HEADERS, PUSH_PROMISE, CONTINUATION
_END_HEADERS: Final = 0x4
_END_STREAM: Final = 0x1
_DATA: Final = 0x0
_SETTINGS: Final = 0x4

# Flood defences, in nghttp2's manner (its "glitch" rate limit: a burst of 1000, then 33 a
# second). A *glitch* is a frame that costs us work and gives nothing: a DATA frame that
# carries no byte and does not end its stream, an empty HEADERS or CONTINUATION fragment, a
# PUSH_PROMISE we refuse (CVE-2019-9518, "empty frames flood"; and a push flood). A peer that
# sends more than the bucket holds ends the connection with GOAWAY ENHANCE_YOUR_CALM.
GLITCH_BURST: Final = 1000
GLITCH_RATE: Final = 33.0
# Replies the engine queues by itself as frames arrive (PING and SETTINGS ACKs) pile up while a
# peer does not read (CVE-2019-9512, "ping flood"): past this many queued behind a write the
# peer does not take, the connection ends (ENHANCE_YOUR_CALM). nghttp2's limit (its outbound
# queue's flood threshold) is the same. (Request DATA queued meanwhile is not counted: it is
# bounded by the flow-control windows.)
QUEUED_REPLY_LIMIT: Final = 1000


async def open_socket(
    origin: Origin,
    timeout: Timeout,
    ssl_context: ssl.SSLContext | None,
    proxy: ProxyConfig | None,
) -> anyio.abc.ByteStream:
    """A TCP connection to ``origin`` (through ``proxy``'s CONNECT tunnel if given), with TLS
    when ``ssl_context`` is given; errors as typed h2any errors. (For HTTP/2 and HTTP/1.1
    connections alike: the ALPN choice is the caller's to check.)"""
    try:
        with anyio.fail_after(timeout.connect):
            if proxy is not None:
                # A CONNECT tunnel through the proxy (TLS to the target inside it, for
                # https:// targets); ProxyError for anything the proxy does wrong.
                return await open_tunnel(proxy, origin, ssl_context)
            stream = await _socket.connect_tcp(origin.host, origin.port, READ_SIZE)
            if ssl_context is None:
                return stream
            return await _socket.start_tls(stream, origin.host, ssl_context)
    except TimeoutError:
        raise ConnectTimeout(f"could not connect to {origin} within {timeout.connect} s") from None
    except ssl.SSLError as exc:
        raise _tls_error(origin, exc) from exc
    except anyio.BrokenResourceError as exc:
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLError):
            raise _tls_error(origin, cause) from cause
        raise ConnectError(f"could not connect to {origin}: {cause or exc}") from exc
    except OSError as exc:
        raise ConnectError(f"could not connect to {origin}: {exc}") from exc


def _tls_error(origin: Origin, exc: ssl.SSLError) -> H2anyError:
    if "NO_APPLICATION_PROTOCOL" in f"{exc.reason} {exc}".upper().replace(" ", "_"):
        # The server speaks none of the protocols offered in ALPN (no HTTP/2, for a
        # Connection): it says so with an alert, in the middle of the handshake.
        return HTTPVersionError(
            f"{origin} speaks none of the HTTP versions offered in TLS ALPN (it ended the "
            f"handshake with: {exc})",
            origin=str(origin),
        )
    return TLSError(f"TLS handshake with {origin} failed: {exc}")


async def check_alpn_h2(stream: anyio.abc.ByteStream, origin: Origin) -> None:
    """Raise [`HTTPVersionError`][h2any.HTTPVersionError] (closing ``stream``) unless TLS ALPN
    picked ``h2``."""
    alpn = stream.extra(TLSAttribute.alpn_protocol, None)
    if alpn != "h2":
        await anyio.aclose_forcefully(stream)
        raise HTTPVersionError(
            f"{origin} does not speak HTTP/2 (ALPN did not select 'h2'"
            + (f"; it picked {alpn!r})" if alpn else "; it picked nothing)"),
            origin=str(origin),
            server_version="HTTP/1.1" if alpn in (None, "http/1.1") else None,
        )


class ConnectionTask:
    """The connection task of one connection, and the `_stream.Link` of its streams."""

    def __init__(
        self,
        *,
        origin: Origin,
        timeout: Timeout,
        engine: Engine,
        ssl_context: ssl.SSLContext | None,
        proxy: ProxyConfig | None,
        window_manager: type[BaseFlowControlManager],
        initial_window_size: int,
        connection_window_size: int,
        max_frame_size: int,
        max_concurrent_streams: int | None,
        max_header_list_size: int,
        enable_push: bool,
        pushes: PushRegistry,
        max_decompressed_size: int | None,
        keepalive_interval: float | None,
        keepalive_timeout: float,
        frame_observer: Callable[[str, Any], None] | None,
    ) -> None:
        self.origin = origin
        self.timeout = timeout
        self.engine = engine
        self._ssl_context = ssl_context
        self._proxy = proxy
        self._window_manager = window_manager
        self._initial_window_size = initial_window_size
        self._connection_window_size = connection_window_size
        self._max_frame_size = max_frame_size
        self._own_stream_limit = max_concurrent_streams or 2**31
        self._max_header_list_size = max_header_list_size
        # h2 holds up to 64 CONTINUATION frames of up to max_frame_size each before it
        # gives up: with large frames that is far too much memory for one header block.
        self._header_block_limit = max(2 * 1024 * 1024, 4 * max_header_list_size)
        self._enable_push = enable_push
        self.pushes = pushes
        pushes.parents_done = self._parents_done
        self._max_decompressed_size = max_decompressed_size
        self._keepalive_interval = keepalive_interval
        self._keepalive_timeout = keepalive_timeout

        self.h2: EngineConnection = engine.new_connection()
        self.h2.frame_observer = frame_observer
        # Consecutive DATA frames of a stream in one read are handled as one (the engine's,
        # flow control's and the reader's per-frame work once per read), unless someone
        # watches each frame: a frame observer, or a window manager of the user's own (told
        # of each DATA frame, as hyper's were).
        self.h2.frame_buffer.coalesce = frame_observer is None and window_manager in (
            FlowControlManager,
            AdaptiveFlowControlManager,
        )
        self._socket: anyio.abc.ByteStream | None = None
        self.preopened: anyio.abc.ByteStream | None = None  # a socket opened by the Client
        self.commands: deque[tuple[Callable[[Any], None], Any]] = deque()
        self.wake = Signal()
        self.watchdog = Watchdog()
        self.streams: dict[int, Stream] = {}
        self.pending: deque[Stream] = deque()
        self.outbox = Outbox(
            self.h2, engine.StreamClosedError, self._ended_locally, self._progressed
        )
        self.active = 0
        self._got_settings = False
        self._stream_limit: int | None = None  # stream_limit(), once worked out
        self._connection_window = ConnectionWindow(window_manager(connection_window_size))
        self._grants: dict[Stream, int] = {}  # stream increments readers released
        self.pings: dict[bytes, tuple[anyio.Event, list[float]]] = {}
        self.goaway: ev.ConnectionTerminated | None = None
        self.error: H2anyError | None = None
        self.closing = False
        self.started = False
        self._socket_lost = False
        self._said_goodbye = False
        self._writing = False  # a write in progress: cutting it off leaves half a frame
        # Bytes the reader's inline write could not hand to the socket; the writer sends
        # them first (see _send_inline).
        self._leftover = b""
        self._window_opened = False  # a WINDOW_UPDATE in the frames being handled
        self._replies = 0  # PING / SETTINGS ACKs the engine queued since the last write
        self._done: anyio.Event | None = None
        self._run_scope: anyio.CancelScope | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._last_receive = 0.0
        self._frame_skip = 0
        self._frame_header = b""
        self._header_block = 0  # bytes of an unfinished header block (HEADERS + CONTINUATIONs)
        self._glitches = float(GLITCH_BURST)  # the flood defences' bucket (see GLITCH_BURST)
        self._glitch_time = 0.0
        self.refused_pushes = 0
        self._settings_received: anyio.Event | None = None

    # ------------------------------------------------------------------ the streams' Link

    def post(self, function: Callable[[Any], None], argument: Any) -> None:
        self.commands.append((function, argument))
        self.wake.set()

    def post_reset(self, stream: Stream) -> None:
        self.post(self._cmd_reset, stream)

    def post_flush(self, stream: Stream) -> None:
        self.post(self._cmd_flush, stream)

    def post_grant(self, stream: Stream, increment: int) -> None:
        grants = self._grants
        if not grants:
            self.post(self._cmd_grant, None)
        grants[stream] = grants.get(stream, 0) + increment

    def slot_report(self) -> str:
        return f"{self.active} of {self.stream_limit()} streams open"

    # ------------------------------------------------------------------ for Connection

    def check_open(self) -> None:
        """Raise why no new stream can start, if one cannot."""
        if not self.started:
            raise RuntimeError(
                "the Connection is not open: use 'async with Connection(...)' or connect()"
            )
        goaway = self.goaway
        if goaway is not None:
            raise ConnectionTerminated(
                goaway.error_code or 0,
                goaway.last_stream_id or 0,
                retryable=True,
                additional_data=goaway.additional_data,
            )
        if self.closing:
            raise self._unsent_error()

    def _unsent_error(self) -> H2anyError:
        """The error of a request that never went out because the connection closed:
        retryable, since the server never saw it."""
        exc = clone_error(self.error or ConnectionClosed("the connection is closed"))
        if isinstance(exc, ConnectionClosed) and not isinstance(exc, ConnectionTerminated):
            exc.retryable = True
        return exc

    def queue(self, stream: Stream, first_in_line: bool = False) -> None:
        """Open ``stream`` as soon as a slot is free (``first_in_line``: ahead of the others
        waiting for one). Raises if the connection takes no new streams."""
        if not self.started or self.closing or self.goaway is not None:
            self.check_open()  # raises
        self.commands.append((self._cmd_open_first if first_in_line else self._cmd_open, stream))
        self.wake.set()

    def start_pump(self, stream: Stream, source: AsyncIterator[bytes]) -> None:
        """Feed a streamed ``body=`` to ``stream`` from a task of the connection's own."""
        assert self._task_group is not None
        stream.pump_done = anyio.Event()
        self._task_group.start_soon(self._pump, stream, source)

    async def _pump(self, stream: Stream, source: AsyncIterator[bytes]) -> None:
        try:
            # Cancelled when the stream ends first (Stream.terminate): the source is then
            # closed at once, not when it next yields.
            with anyio.CancelScope() as stream.pump_scope:
                if stream.finished:
                    stream.pump_scope.cancel()
                await pump_body(stream, source)
        except Exception as exc:  # the body's own errors included: the reader raises them
            self.post(self._cmd_fail, (stream, exc))
        finally:
            stream.pump_scope = None
            assert stream.pump_done is not None
            stream.pump_done.set()

    def start_task(self, function: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``function()`` in a task of the connection's own, cancelled when the
        connection ends (a WebSocket's reader); it must not raise."""
        assert self._task_group is not None
        self._task_group.start_soon(function)

    def extended_connect_enabled(self) -> bool:
        """Whether the peer sent SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 (RFC 8441 section 3)."""
        return self.h2.remote_settings.enable_connect_protocol == 1

    def stream_limit(self) -> int:
        """How many streams may be open at once (asked once or twice per request: kept, and
        worked out again when the peer's SETTINGS arrive)."""
        limit = self._stream_limit
        if limit is None:
            limit = self.h2.remote_settings.max_concurrent_streams
            if not self._got_settings:
                limit = min(limit, EARLY_STREAM_LIMIT)
            limit = self._stream_limit = min(limit, self._own_stream_limit)
        return limit

    async def ping(self, timeout: float | None) -> float:
        """Send a PING; the round-trip time. Raises ReadTimeout, ConnectionClosed."""
        self.check_open()
        payload = os.urandom(8)
        done = anyio.Event()
        result: list[float] = []
        self.pings[payload] = (done, result)
        started = time.perf_counter()
        self.post(self._cmd_ping, payload)
        limit = self.timeout.read if timeout is None else timeout
        try:
            with anyio.fail_after(limit):
                await done.wait()
        except TimeoutError:
            raise ReadTimeout(f"no PING acknowledgement within {limit} s") from None
        finally:
            self.pings.pop(payload, None)
        if not result:
            raise clone_error(self.error or ConnectionClosed("the connection is closed"))
        return result[0] - started

    async def close(self) -> None:
        """GOAWAY, fail open streams, close the socket; wait (shielded, a few seconds at
        most) until the connection task has finished."""
        if not self.started or self._done is None:
            return
        if not self.closing:
            self.shutdown(ConnectionClosed("the connection was closed by the client"))
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(CLOSE_TIMEOUT):
                await self._done.wait()
            if not self._done.is_set() and self._run_scope is not None:
                self._run_scope.cancel()
                await self._done.wait()

    # ------------------------------------------------------------------ the connection task

    async def _open_socket(self) -> anyio.abc.ByteStream:
        stream = await open_socket(self.origin, self.timeout, self._ssl_context, self._proxy)
        if self._ssl_context is not None:
            await check_alpn_h2(stream, self.origin)
        return stream

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """The connection task: connect, then read and write until the connection ends."""
        if self._done is not None:
            raise RuntimeError("this Connection was already started")
        self._done = anyio.Event()
        self._settings_received = anyio.Event()
        self.watchdog.start()
        self._socket = self.preopened if self.preopened is not None else await self._open_socket()
        h2 = self.h2
        engine = self.engine
        codes = engine.SettingCodes
        h2.local_settings = engine.Settings(
            client=True,
            initial_values={
                codes.ENABLE_PUSH: int(self._enable_push),
                codes.INITIAL_WINDOW_SIZE: self._initial_window_size,
                codes.MAX_FRAME_SIZE: self._max_frame_size,
                codes.MAX_CONCURRENT_STREAMS: 100,
                codes.MAX_HEADER_LIST_SIZE: self._max_header_list_size,
            },
        )
        h2.decoder.max_header_list_size = self._max_header_list_size
        h2.decoder.max_allowed_table_size = h2.local_settings.header_table_size
        h2.set_max_inbound_frame_size(self._max_frame_size)
        h2.initiate_connection()
        if h2.frame_observer is not None:
            # h2 writes its opening SETTINGS without _prepare_for_sending, where the observer
            # sees every other frame it sends: show it that one too (the values it carries).
            from hyperframe.frame import SettingsFrame

            local: Any = h2.local_settings  # a mapping of every setting it sends
            settings = {int(code): value for code, value in local.items()}
            h2.frame_observer("send", SettingsFrame(0, settings=settings))
        extra = self._connection_window_size - 65535
        if extra:
            h2.increment_flow_control_window(extra)
        self.wake.set()
        failure: H2anyError | None = None
        try:
            with anyio.CancelScope() as self._run_scope:
                async with anyio.create_task_group() as task_group:
                    self._task_group = task_group
                    task_group.start_soon(self._read_loop)
                    task_group.start_soon(self._write_then_stop, task_group)
                    task_group.start_soon(self.watchdog.run)
                    if self._keepalive_interval is not None:
                        task_group.start_soon(self._keepalive_loop, self._keepalive_interval)
                    failure = await self._wait_for_settings()
                    if failure is None:
                        self.started = True
                        _log.connection_opened(self.origin, self.engine, self._proxy)
                        task_status.started()
                    else:
                        task_group.cancel_scope.cancel()
        finally:
            self.shutdown(ConnectionClosed("the connection was closed"))
            _log.connection_closed(self.origin, failure or self.error, self.started)
            with anyio.CancelScope(shield=True):
                if not self._said_goodbye:
                    # Cancelled from outside (the task group or an enclosing scope): still
                    # tell the peer, briefly, unless a write was cut off mid-frame.
                    with anyio.move_on_after(0.5):
                        await self._say_goodbye()
                await anyio.aclose_forcefully(self._socket)
            self._done.set()
        if failure is not None:
            raise failure

    async def _wait_for_settings(self) -> H2anyError | None:
        """Wait for the server's first SETTINGS: the connection is usable only then.

        Knowing the server's stream limit before the first request avoids a burst of
        refused streams, and a server that does not speak HTTP/2 fails here, as a
        ConnectError, rather than in the first request.
        """
        assert self._settings_received is not None
        with anyio.move_on_after(self.timeout.connect):
            await self._settings_received.wait()
        if self._got_settings:
            return None
        if isinstance(self.error, HTTPVersionError):
            return clone_error(self.error)
        if self.error is not None:
            failure: H2anyError = ConnectError(
                f"{self.origin} did not start an HTTP/2 session: {self.error}"
            )
            failure.__cause__ = self.error
            return failure
        return ConnectTimeout(
            f"{self.origin} sent no HTTP/2 SETTINGS within {self.timeout.connect} s"
        )

    async def _write_then_stop(self, task_group: anyio.abc.TaskGroup) -> None:
        await self._write_loop()
        task_group.cancel_scope.cancel()

    async def _read_loop(self) -> None:
        assert self._socket is not None
        receive = self._socket.receive
        h2 = self.h2
        connection_window = self._connection_window
        current_time = anyio.current_time
        send_now: Callable[[bytes], int] | None = _socket.immediate_sender(self._socket)
        error: H2anyError
        try:
            # The first frame is checked apart (a peer that does not speak HTTP/2); the
            # loop reads at its end, so it pays nothing for that.
            data = await self._first_read(receive)
            while True:
                self._last_receive = current_time()
                self._check_frame_headers(data)
                events = h2.receive_data(data)
                self._handle_events(events)
                if h2.frame_buffer.stream_errors:
                    self._stream_errors(h2.frame_buffer.stream_errors)
                if h2.absorbed:
                    # Late DATA on streams we reset: h2 took it in; the connection's
                    # manager hears of it like any other frame.
                    connection_window.on_data(h2.absorbed)
                    h2.absorbed = 0
                grant = connection_window.take_grant()
                if grant:
                    h2.increment_flow_control_window(grant)
                opened, self._window_opened = self._window_opened, False
                if self.commands or h2.has_data_to_send() or (opened and self.outbox.sending):
                    if self._writing:
                        if self._replies > QUEUED_REPLY_LIMIT:
                            self._replies_pile_up(h2.outbound_size())
                        self.wake.set()
                    elif send_now is None or self.commands or self.closing or self._leftover:
                        self.wake.set()
                    else:
                        self._send_inline(send_now)
                data = await receive(READ_SIZE)
        except anyio.EndOfStream:
            self._socket_lost = True
            error = ConnectionClosed("the server closed the connection")
        except (anyio.BrokenResourceError, OSError) as exc:
            self._socket_lost = True
            error = ConnectionClosed(f"the connection was lost: {exc.__cause__ or exc}")
            error.__cause__ = exc
        except self.engine.FlowControlError as exc:
            error = ProtocolError(f"the server broke flow control: {exc}", 3)
            error.__cause__ = exc
        except self.engine.ProtocolError as exc:
            code = getattr(exc, "error_code", ErrorCodes.PROTOCOL_ERROR)
            error = ProtocolError(f"the server broke the HTTP/2 protocol: {exc}", int(code))
            error.__cause__ = exc
        except anyio.ClosedResourceError:
            return
        except H2anyError as exc:
            error = exc
        self.shutdown(error)
        if self._writing and self.started and self._task_group is not None:
            # The writer is stuck in a write the peer does not take (it stopped reading):
            # nothing more can be said to it; end now, not when the write timeout fires.
            self._task_group.cancel_scope.cancel()

    def _send_inline(self, send_now: Callable[[bytes], int]) -> None:
        """Send, from the reader, what the frames just read asked for (WINDOW_UPDATEs, ACKs,
        the request body a WINDOW_UPDATE let out) while the writer is idle: an upload into
        a small window is a round trip per window, and waking the writer for each was a
        task switch per round trip. What the socket does not take at once is left to the
        writer, ahead of anything newer."""
        outbox = self.outbox
        more = bool(outbox.sending) and not outbox.pump()
        data = self.h2.data_to_send()
        sent = send_now(data) if data else 0
        if sent < len(data):
            self._leftover = data[sent:]
            more = True
        else:
            self._replies = 0
        if more:
            self.wake.set()

    async def _first_read(self, receive: Callable[[int], Awaitable[bytes]]) -> bytes:
        """The first bytes from the peer, at least a frame header's worth: raises
        HTTPVersionError unless they start a SETTINGS frame (RFC 9113 section 3.4: the
        server's preface), or if the peer closes first -- an HTTP/1.x server answers the
        preface with a status line, an HTML error page, or by closing."""
        data = b""
        try:
            while len(data) < 9:
                piece = await receive(READ_SIZE)
                data = piece if not data else data + bytes(piece)
                if len(data) < 9:
                    data = bytes(data)  # the socket may reuse its buffer for the next read
        except anyio.EndOfStream:
            raise HTTPVersionError(
                f"{self.origin} closed the connection without an HTTP/2 SETTINGS frame "
                "(it does not speak HTTP/2 with prior knowledge)"
                + (f"; it sent {bytes(data)[:40]!r}" if data else ""),
                origin=str(self.origin),
            ) from None
        # A frame of type SETTINGS: an HTTP/2 peer (h2 checks the rest: a faulty SETTINGS
        # is a ProtocolError, not a sign of HTTP/1.x).
        if data[3] == _SETTINGS:
            return data
        head = bytes(data[:80])
        version: str | None = None
        if head.startswith(b"HTTP/1."):
            version = head[:8].decode("ascii", "replace")
            status_line = head.split(b"\r\n", 1)[0][:60]
            what = f"an HTTP/1.x status line {status_line!r}"
        elif head.lstrip()[:1] == b"<":
            what = f"an HTML page ({head[:40]!r}...), as HTTP/1.0 servers do"
            version = "HTTP/1.0"
        else:
            what = f"bytes that are not an HTTP/2 SETTINGS frame ({head[:16].hex()})"
        raise HTTPVersionError(
            f"{self.origin} does not speak HTTP/2 with prior knowledge: it answered the "
            f"HTTP/2 preface with {what}",
            origin=str(self.origin),
            server_version=version,
        )

    async def _keepalive_loop(self, interval: float) -> None:
        """PING the server after ``interval`` seconds of silence; no answer kills the
        connection, so that waiters fail promptly instead of waiting out their timeouts."""
        self._last_receive = anyio.current_time()
        while True:
            idle = anyio.current_time() - self._last_receive
            if idle < interval:
                await anyio.sleep(interval - idle)
                continue
            payload = os.urandom(8)
            answered = anyio.Event()
            self.pings[payload] = (answered, [])
            self.post(self._cmd_ping, payload)
            with anyio.move_on_after(self._keepalive_timeout):
                await answered.wait()
            self.pings.pop(payload, None)
            if self.closing:
                return
            if not answered.is_set():
                self.shutdown(
                    ConnectionClosed(
                        f"the server did not answer a keepalive PING within "
                        f"{self._keepalive_timeout} s; the connection is considered dead"
                    )
                )
                return
            self._last_receive = anyio.current_time()

    def _replies_pile_up(self, queued: int) -> None:
        """The peer does not read, yet its frames keep asking for replies."""
        raise ProtocolError(
            f"the server sends frames that need replies but reads none of them: {queued} "
            f"bytes queued, over {QUEUED_REPLY_LIMIT} replies (a flood)",
            ErrorCodes.ENHANCE_YOUR_CALM,
        )

    def _glitch(self, what: str) -> None:
        """The peer sent ``what``, a frame that costs work and carries nothing: take one from
        the bucket (see GLITCH_BURST); ProtocolError ENHANCE_YOUR_CALM when it is empty."""
        now = anyio.current_time()
        tokens = min(float(GLITCH_BURST), self._glitches + (now - self._glitch_time) * GLITCH_RATE)
        self._glitch_time = now
        if tokens < 1.0:
            raise ProtocolError(
                f"the server floods the connection with {what} (more than {GLITCH_BURST} "
                f"frames that carry nothing, or refused pushes, at over {GLITCH_RATE:g} a "
                "second)",
                ErrorCodes.ENHANCE_YOUR_CALM,
            )
        self._glitches = tokens - 1.0

    def _check_frame_headers(self, data: bytes) -> None:
        # h2 waits for a frame's whole declared length before it checks that length, so a
        # peer that is not speaking HTTP/2 ("HTTP/1.1 400 ..." reads as a 4.7 MB frame) would
        # leave us waiting for bytes that never come. Follow the frame boundaries here and
        # fail at once on a length above our SETTINGS_MAX_FRAME_SIZE.
        skip = self._frame_skip
        header = self._frame_header
        position = 0
        size = len(data)
        limit = self._max_frame_size
        while True:
            if skip:
                taken = min(skip, size - position)
                position += taken
                skip -= taken
            if position >= size:
                break
            needed = 9 - len(header)
            header += data[position : position + needed]
            position += needed
            if len(header) < 9:
                break
            length = int.from_bytes(header[:3], "big")
            if length > limit:
                raise ProtocolError(
                    f"the server sent a frame of {length} bytes, above our limit of {limit} "
                    f"(frame header {header.hex()}; is it speaking HTTP/2?)",
                    ErrorCodes.FRAME_SIZE_ERROR,
                )
            frame_type = header[3]
            if not length and frame_type != _SETTINGS:
                # A frame that carries nothing (SETTINGS ACKs aside): an empty DATA that
                # ends its stream is fine; any other is a glitch (an empty-frames flood).
                if frame_type == _DATA:
                    if not header[4] & _END_STREAM:
                        self._glitch("empty DATA frames")
                elif frame_type in _HEADER_BLOCK_FRAMES:
                    self._glitch("empty header block fragments")
            if frame_type in _HEADER_BLOCK_FRAMES or self._header_block:
                # h2 buffers a header block's frames until END_HEADERS: bound what it holds.
                self._header_block += length
                if header[4] & _END_HEADERS:
                    self._header_block = 0
                elif self._header_block > self._header_block_limit:
                    raise ProtocolError(
                        f"the server sent a header block of over {self._header_block} bytes "
                        "without ending it",
                        ErrorCodes.ENHANCE_YOUR_CALM,
                    )
            skip = length
            header = b""
        self._frame_skip = skip
        self._frame_header = header

    async def _write_loop(self) -> None:
        assert self._socket is not None
        send = self._socket.send
        # Plain sockets (asyncio and trio): a write the socket takes whole needs no timeout (a
        # cancel scope with a deadline per write was an eighth of a small-window upload).
        send_now: Callable[[bytes], int] | None = _socket.immediate_sender(self._socket)
        h2 = self.h2
        commands = self.commands
        outbox = self.outbox
        while True:
            await self.wake.wait()
            while commands:
                function, argument = commands.popleft()
                try:
                    function(argument)
                except H2anyError as exc:
                    self.shutdown(exc)
            if outbox.sending and not outbox.pump():
                self.wake.set()  # more to send once this batch is written
            if self.closing:
                await self._say_goodbye()
                return
            data = h2.data_to_send()
            if self._leftover:
                data = self._leftover + data
                self._leftover = b""
            if data:
                self._writing = True
                try:
                    sent = 0 if send_now is None else send_now(data)
                    if sent < len(data):
                        with anyio.fail_after(self.timeout.write):
                            await send(data[sent:])
                    self._writing = False
                    self._replies = 0
                except TimeoutError:
                    self._socket_lost = True
                    self.shutdown(
                        WriteTimeout(
                            f"the server read nothing for {self.timeout.write} s; "
                            "the connection is abandoned"
                        )
                    )
                    return
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                    self._socket_lost = True
                    error = ConnectionClosed(f"the connection was lost: {exc.__cause__ or exc}")
                    error.__cause__ = exc
                    self.shutdown(error)
                    return

    async def _say_goodbye(self) -> None:
        """Send GOAWAY (unless the peer is gone) and whatever h2 still has queued."""
        assert self._socket is not None
        self._said_goodbye = True
        h2 = self.h2
        lost = self._socket_lost or self._writing
        try:
            if not lost and h2.state_machine.state.name != "CLOSED":
                error = self.error
                code = error.error_code if isinstance(error, ProtocolError) else 0
                h2.close_connection(code)
        except self.engine.ProtocolError:
            pass
        data = self._leftover + h2.data_to_send()
        if data and not lost:
            with anyio.move_on_after(1.0):
                try:
                    await self._socket.send(data)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass

    # ------------------------------------------------------------------ commands

    def _cmd_open(self, stream: Stream) -> None:
        if stream.abandoned or stream.failure is not None:
            return
        if self.closing or self.goaway is not None:
            self._fail_unsent(stream)
        elif self.pending or self.active >= self.stream_limit():
            self.pending.append(stream)
        else:
            self._start(stream)

    def _cmd_open_first(self, stream: Stream) -> None:
        if self.pending and not stream.abandoned and not self.closing and self.goaway is None:
            self.pending.appendleft(stream)
        else:
            self._cmd_open(stream)

    def _fail_unsent(self, stream: Stream) -> None:
        goaway = self.goaway
        if goaway is not None:
            exc: H2anyError = ConnectionTerminated(
                goaway.error_code or 0,
                goaway.last_stream_id or 0,
                retryable=True,
                additional_data=goaway.additional_data,
            )
        else:
            exc = self._unsent_error()
        stream.fail(exc)
        stream.terminate()

    def _start(self, stream: Stream) -> None:
        h2 = self.h2
        stream_id = h2.get_next_available_stream_id()
        no_body = stream.out_closed and not stream.out and stream.trailers_out is None
        h2.send_request_headers(stream_id, stream.headers, no_body)
        stream.stream_id = stream_id
        stream.state = HALF_CLOSED_LOCAL if no_body else OPEN
        if stream.on_open is not None:
            stream.on_open()
        stream.window = StreamWindow(self._window_manager(self._initial_window_size))
        self.streams[stream_id] = stream
        self.active += 1
        h2.outbound_open_count = self.active
        if not no_body:
            self.outbox.add(stream)  # sent by Outbox.pump, fairly, after this batch
        if stream.event is not None or stream.writer is not None:
            self._progressed(stream)  # out of the pool stage

    def _progressed(self, stream: Stream) -> None:
        """The stream made progress: its waiters' deadlines restart."""
        watchdog = self.watchdog
        if stream.event is not None:
            watchdog.restart(stream, stream.reader_limit(), stream.expires)
        writer = stream.writer
        if writer is not None and writer.event is not None:
            watchdog.restart(writer, stream.timeout.write, stream.expires)

    def _ended_locally(self, stream: Stream) -> None:
        """Our END_STREAM for ``stream`` went out."""
        stream.ended_locally()
        if stream.state is CLOSED:
            self.finish(stream)
        else:
            self._progressed(stream)  # its reader now waits with the read timeout

    def _cmd_flush(self, stream: Stream) -> None:
        """A sender offered more body (or ended it): queue the stream for the pump."""
        stream.flush_posted = False
        if stream.opened and not stream.finished and not stream.local_done:
            self.outbox.add(stream)

    def _cmd_grant(self, _: None) -> None:
        """Send the stream WINDOW_UPDATEs that readers released as they consumed data."""
        grants, self._grants = self._grants, {}
        h2 = self.h2
        closed = self.engine.StreamClosedError
        for stream, increment in grants.items():
            if stream.state is OPEN or stream.state is HALF_CLOSED_LOCAL:
                try:
                    h2.increment_flow_control_window(increment, stream.stream_id)
                except closed:
                    pass

    def _cmd_reset(self, stream: Stream) -> None:
        """The user gave up on ``stream``: RST_STREAM CANCEL if it is open on the wire.
        A task still waiting on it (another task reading the response of a DuplexStream
        closed elsewhere) learns it at once."""
        self._abort(stream, StreamReset(stream.stream_id, ErrorCodes.CANCEL, remote=False))

    def _cmd_fail(self, argument: tuple[Stream, BaseException]) -> None:
        """A body pump failed (its source raised, or a timeout): fail the stream with it."""
        self._abort(*argument)

    def _abort(self, stream: Stream, error: BaseException) -> None:
        """End ``stream`` with ``error`` for its waiters: RST_STREAM CANCEL if it is open on
        the wire, out of the queue for a slot if it is not."""
        if stream.finished:
            return
        stream.fail(error)
        if not stream.opened:
            try:
                self.pending.remove(stream)
            except ValueError:
                pass
            stream.terminate()
            return
        self._reset(stream, ErrorCodes.CANCEL)

    def _reset(self, stream: Stream, code: int) -> None:
        stream_id = stream.stream_id
        self.h2.reset_by_us.add(stream_id)
        try:
            self.h2.reset_stream(stream_id, code)
        except (self.engine.StreamClosedError, self.engine.ProtocolError):
            pass
        self.finish(stream)

    def _cmd_ping(self, payload: bytes) -> None:
        self.h2.ping(payload)

    # ------------------------------------------------------------------ streams ending

    def finish(self, stream: Stream) -> None:
        """The stream is over on the wire: free its slot, exactly once."""
        stream.terminate()
        if self.streams.pop(stream.stream_id, None) is None:
            return  # already finished (or never opened)
        self.outbox.sending.pop(stream, None)
        if self._grants:
            self._grants.pop(stream, None)
        if not stream.is_push:
            self.active -= 1
            self.h2.outbound_open_count = self.active
        self.h2.forget_stream(stream.stream_id)
        if self.pending:
            self._open_pending()
        goaway = self.goaway
        if goaway is not None and not self.streams:
            self.shutdown(
                ConnectionTerminated(
                    goaway.error_code or 0,
                    goaway.last_stream_id or 0,
                    additional_data=goaway.additional_data,
                )
            )

    def _open_pending(self) -> None:
        pending = self.pending
        limit = self.stream_limit()
        while pending and self.active < limit and not self.closing and self.goaway is None:
            stream = pending.popleft()
            # Given up by its reader (a PoolTimeout, a cancellation) whose reset command is
            # still queued behind the frame that freed this slot: never open it.
            if not stream.abandoned:
                self._start(stream)

    def _fail_stream(
        self, stream: Stream, error: H2anyError, code: int = ErrorCodes.INTERNAL_ERROR
    ) -> None:
        """Fail one stream (reset it); the connection carries on."""
        if not stream.finished:
            stream.fail(error)
            try:
                self.h2.reset_closed_or_open(stream.stream_id, code)
            except self.engine.ProtocolError:
                pass
            self.finish(stream)

    def _malformed(self, stream: Stream, problem: str) -> None:
        """A stream error (RFC 9113 section 5.4.2): reset that stream, keep the connection."""
        _log.stream_protocol_error(self.origin, stream.stream_id, problem)
        self._fail_stream(
            stream,
            ProtocolError(
                f"stream {stream.stream_id}: malformed response: {problem}",
                ErrorCodes.PROTOCOL_ERROR,
            ),
            ErrorCodes.PROTOCOL_ERROR,
        )

    def _stream_errors(self, errors: list[tuple[int, str]]) -> None:
        """Frames the frame buffer took out as stream errors: reset those streams."""
        for stream_id, problem in errors:
            stream = self.streams.get(stream_id)
            if stream is not None:
                self._malformed(stream, f"the server sent {problem}")
        errors.clear()

    # ------------------------------------------------------------------ events

    def _handle_events(self, events: Iterable[ev.Event]) -> None:
        ev = self.engine.events  # the engine's event classes (h2's or jh2's)
        streams = self.streams
        for event in events:
            if isinstance(event, ev.DataReceived):
                size = event.flow_controlled_length or 0
                if not size and not event.stream_ended:
                    # Carries nothing (counted as a glitch in _check_frame_headers): not
                    # progress, so its reader is not woken and its read deadline stands.
                    continue
                self._connection_window.on_data(size)
                stream = streams.get(event.stream_id or 0)
                if stream is None or stream.abandoned:
                    continue  # a reset is on its way; the bytes are already granted back
                window = stream.window
                if window is not None:
                    try:
                        window.on_data(size, bool(event.stream_ended))
                    except FlowControlError as exc:
                        self._fail_stream(stream, exc)
                        continue
                stream.put(new_data(Data, (event.data, size)))
            elif isinstance(event, ev.ResponseReceived):
                stream = streams.get(event.stream_id or 0)
                if stream is not None:
                    problem = malformed_response_fields(event.headers, trailers=False)
                    if problem is not None:
                        self._malformed(stream, problem)
                        continue
                    stream.put(new_data(ResponseHeaders, (event.headers,)))
                    window = stream.window
                    if window is not None:
                        for name, value in event.headers:
                            if name == b"content-length" and value.isdigit():
                                window.manager.document_size = int(value)
            elif isinstance(event, ev.StreamEnded):
                stream = streams.get(event.stream_id or 0)
                if stream is not None:
                    self._ended_remotely(stream)
            elif isinstance(event, ev.TrailersReceived):
                stream = streams.get(event.stream_id or 0)
                if stream is not None:
                    problem = malformed_response_fields(event.headers, trailers=True)
                    if problem is not None:
                        self._malformed(stream, problem)
                        continue
                    stream.put(Trailers(event.headers))
            elif isinstance(event, ev.StreamReset):
                stream = streams.get(event.stream_id or 0)
                if stream is not None:
                    code = int(event.error_code or 0)
                    if not event.remote_reset:
                        # The engine reset the stream itself: the server broke the
                        # protocol on it (a WINDOW_UPDATE overflowing its window, say).
                        stream.fail(
                            ProtocolError(
                                f"stream {stream.stream_id}: the server broke the protocol "
                                f"on this stream; h2any reset it ({error_code_name(code)})",
                                code,
                            )
                        )
                    elif not (code == ErrorCodes.NO_ERROR and stream.remote_done):
                        # RFC 9113 section 8.1: NO_ERROR after a complete response only
                        # asks us to stop sending; the response stands.
                        stream.fail(StreamReset(stream.stream_id, code))
                    self.finish(stream)
            elif isinstance(event, ev.WindowUpdated):
                # Sent once all the frames of this read are handled (the reader's inline
                # send or the writer pumps): a read often opens both the connection's and
                # the stream's window.
                self._window_opened = True
            elif isinstance(event, ev.PingReceived):
                self._replies += 1  # the engine queued the ACK
            elif isinstance(event, ev.RemoteSettingsChanged):
                self._replies += 1
                self._stream_limit = None  # (the peer's limit may have changed)
                if not self._got_settings:
                    self._got_settings = True
                    assert self._settings_received is not None
                    self._settings_received.set()
                if self.pending:
                    self._open_pending()
                if self.outbox.sending:
                    self.outbox.pump()
            elif isinstance(event, ev.PingAckReceived):
                waiter = self.pings.get(event.ping_data or b"")
                if waiter is not None:
                    waiter[1].append(time.perf_counter())
                    waiter[0].set()
            elif isinstance(event, ev.ConnectionTerminated):
                self._on_goaway(event)
            elif isinstance(event, ev.PushedStreamReceived):
                self._on_push_promise(event)
            elif isinstance(event, ev.InformationalResponseReceived):
                stream = streams.get(event.stream_id or 0)
                problem = malformed_response_fields(event.headers, trailers=False)
                if stream is not None and problem is not None:
                    self._malformed(stream, problem)
            # Ignored: other 1xx responses, SETTINGS acks, PRIORITY, unknown frames.

    def _ended_remotely(self, stream: Stream) -> None:
        """The server's END_STREAM for ``stream`` arrived."""
        stream.ended_remotely()
        stream.put(END)
        if stream.state is HALF_CLOSED_REMOTE:
            if stream.duplex:
                self._progressed(stream)
            else:
                # The server answered in full before the body= was all sent (RFC 9113
                # section 8.1): the rest of it is not needed. Stop sending; the response
                # stands.
                self._reset(stream, ErrorCodes.CANCEL)
        else:
            self.finish(stream)
        if self._enable_push:
            self.pushes.news()

    def _on_push_promise(self, event: ev.PushedStreamReceived) -> None:
        pushed_id = event.pushed_stream_id or 0
        fields = joined_cookies(event.headers or [])
        # Its request is the promise's (a pushed Response's .request and .url come from it).
        stream = Stream(self, fields, None, False, self.timeout)
        stream.expires = math.inf  # nobody's call started it: Timeout.total bounds requests
        stream.stream_id = pushed_id
        stream.state = HALF_CLOSED_LOCAL
        stream.is_push = True
        stream.window = StreamWindow(self._window_manager(self._initial_window_size))
        push = PushedStream(
            stream,
            event.parent_stream_id or 0,
            fields,
            self._max_decompressed_size,
        )
        if self.closing or not self.pushes.accepts(push):
            # Refused: nothing of it stays behind (the engine's table included), and a
            # flood of refused pushes is a glitch (see GLITCH_BURST).
            h2 = self.h2
            h2.reset_by_us.add(pushed_id)
            h2.reset_stream(pushed_id, ErrorCodes.REFUSED_STREAM)
            h2.forget_stream(pushed_id)
            self.refused_pushes += 1
            self._glitch("refused PUSH_PROMISEs")
            return
        self.streams[pushed_id] = stream
        self.pushes.add(push)

    def _parents_done(self, stream_id: int | None) -> bool:
        if self.closing:
            return True
        if stream_id is None:
            return all(s.remote_done or s.is_push for s in self.streams.values())
        parent = self.streams.get(stream_id)
        return parent is None or parent.remote_done

    def _on_goaway(self, event: ev.ConnectionTerminated) -> None:
        _log.goaway_received(
            self.origin, event.error_code, event.last_stream_id, event.additional_data
        )
        error_code = int(event.error_code or 0)
        last_stream_id = event.last_stream_id if event.last_stream_id is not None else 2**31 - 1
        self.goaway = event
        for stream_id, stream in list(self.streams.items()):
            if stream_id % 2 and stream_id > last_stream_id:
                stream.fail(
                    ConnectionTerminated(
                        error_code,
                        last_stream_id,
                        retryable=True,
                        additional_data=event.additional_data,
                        stream_id=stream_id,
                    )
                )
                self.finish(stream)
        while self.pending:
            self._fail_unsent(self.pending.popleft())
        if not self.streams and not self.closing:
            self.shutdown(
                ConnectionTerminated(
                    error_code, last_stream_id, additional_data=event.additional_data
                )
            )

    def shutdown(self, error: H2anyError) -> None:
        """End the connection: every waiter gets a typed error, the writer says goodbye."""
        if self.error is None:
            self.error = error
        self.closing = True
        error = self.error
        for stream in list(self.streams.values()):
            if not stream.finished:
                if isinstance(error, ConnectionTerminated) and stream.stream_id:
                    goaway = ConnectionTerminated(
                        error.error_code,
                        error.last_stream_id,
                        retryable=stream.stream_id > error.last_stream_id,
                        additional_data=error.additional_data,
                        stream_id=stream.stream_id,
                    )
                    goaway.__cause__ = error.__cause__
                    stream.fail(goaway)
                else:
                    stream.fail(clone_error(error))
                stream.terminate()
        self.streams.clear()
        self.outbox.clear()
        while self.pending:
            self._fail_unsent(self.pending.popleft())
        # Requests posted but not yet taken by the connection task: nobody will take them.
        # (Other commands -- grants, flushes, resets, PINGs -- have nothing left to act on.)
        opens = (self._cmd_open, self._cmd_open_first)
        while self.commands:
            function, argument = self.commands.popleft()
            if function in opens and not argument.finished:
                self._fail_unsent(argument)
        for done, _ in self.pings.values():
            done.set()
        if self._settings_received is not None:
            self._settings_received.set()
        self.pushes.clear()
        self.wake.set()
