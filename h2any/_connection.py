"""One HTTP/2 connection: the connection task and the public ``Connection`` object.

Theory of operation
===================

One task per connection -- the *connection task*, ``Connection._run`` and the two loops it
starts in its own task group -- owns the socket and the ``h2`` state machine. Nothing else
touches either. Invariants it keeps:

* **Commands in.** Other tasks talk to it only by appending ``(function, argument)`` to
  ``_commands`` (a deque: appending never blocks and is safe under cancellation) and setting
  the ``_wake`` signal. The writer loop drains *every* queued command, then makes one socket
  write: under load about a hundred requests go out per write.
* **Events out.** Each stream has an inbox (``_Stream.items``, a deque, and ``_Stream.event``,
  created only when the consumer must wait). The reader loop feeds every event of one
  socket read to the inboxes without ever blocking, then yields. Reads happen whether or
  not anybody waits, so PING, SETTINGS and GOAWAY are answered at once.
* **Backpressure.** Received DATA is granted back to the peer (WINDOW_UPDATE) only when the
  application consumes it: the response posts an ``ack`` command, and the window managers
  decide the increments. An inbox therefore never holds more than its stream window, and a
  stream that is closed or abandoned hands its unread bytes back to the connection window.
* **Slots.** ``_active`` counts streams h2 considers open; a request beyond the peer's
  MAX_CONCURRENT_STREAMS (100 until its first SETTINGS arrive) waits in ``_pending`` until a
  slot frees. Every way a stream ends goes through ``_finish``, which frees its slot exactly
  once -- so cancelled requests never leak slots.
* **Timeouts from one watchdog per connection.** A task about to wait on a stream (for its
  headers, a body chunk, or room for its upload) writes a deadline on the stream and
  registers it with the connection's watchdog task, which sleeps until the earliest deadline
  and wakes the waiters whose deadline has passed; the waiter then raises the timeout, named
  by the stream's state. The connection task moves a deadline as its stream progresses
  (pool -> write -> read). Per-request cancel scopes cost a timer each, rescheduled at every
  move: on asyncio that was a third of the small-request time.
* **Failure reaches everyone.** Any end of the connection (socket loss, protocol error,
  GOAWAY, ``aclose``) goes through ``_shutdown``, which posts a typed error into every inbox
  and fails every pending request and PING. The loops never raise into a task group.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import math
import os
import re
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol, final

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute
from h2.errors import ErrorCodes

from . import _socket
from ._body import PIECE_SIZE, BodyTypes, PreparedBody, prepare_body
from ._config import Origin, Timeout, TimeoutTypes, VerifyTypes, as_timeout, make_ssl_context
from ._decoders import accept_encoding
from ._engine import get_engine
from ._exceptions import (
    ConnectError,
    ConnectionClosed,
    ConnectionTerminated,
    ConnectTimeout,
    FlowControlError,
    H2anyError,
    InvalidRequest,
    PoolTimeout,
    ProtocolError,
    ReadTimeout,
    StreamReset,
    TLSError,
    WriteTimeout,
)
from ._flow import MAX_WINDOW_SIZE, BaseFlowControlManager, FlowControlManager
from ._headers import Headers, HeaderTypes, malformed_response_fields
from ._proxy import ProxyConfig, open_tunnel
from ._push import PushedStream, PushIterator, PushPolicy
from ._response import Response
from ._socket import running_on_trio

if TYPE_CHECKING:
    from h2 import events as ev

__all__ = ("Connection", "connect")

__version__ = "0.1.0"

DEFAULT_CONNECTION_WINDOW: Final = 16 * 1024 * 1024
DEFAULT_STREAM_WINDOW: Final = 2 * 1024 * 1024
DEFAULT_MAX_FRAME_SIZE: Final = 64 * 1024
# Until the peer's first SETTINGS arrive h2 assumes no stream limit; a burst of requests
# sent in that moment would be refused by any real server. Assume the RFC's recommended
# minimum instead.
EARLY_STREAM_LIMIT: Final = 100
CLOSE_TIMEOUT: Final = 5.0
READ_SIZE: Final = 1024 * 1024
# A deadline this close counts as passed (timers may fire a hair early).
DEADLINE_SLACK: Final = 0.001
DEFAULT_TIMEOUT: Final = Timeout()
# At most this much request body goes into h2's outbound buffer per socket write.
SEND_BATCH: Final = 1024 * 1024
# A streamed upload hands the connection task at most this much ahead of the wire.
OUTBOUND_BUFFER: Final = 4 * PIECE_SIZE

# Inbox item kinds.
_HEADERS: Final = 0
_DATA: Final = 1
_TRAILERS: Final = 2
_END: Final = 3
_ERROR: Final = 4
_END_ITEM: Final = (_END,)
_HEADER_BLOCK_FRAMES: Final = frozenset({0x1, 0x5, 0x9})  # HEADERS, PUSH_PROMISE, CONTINUATION
_END_HEADERS: Final = 0x4

_TOKEN = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9a-z]+$")
_BAD_VALUE = re.compile(rb"[\x00\r\n]|^[ \t]|[ \t]$")
_BAD_PATH = re.compile(rb"[\x00-\x20\x7f]")
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
# Methods already checked, as sent (a bounded cache: the same few recur).
_GOOD_METHODS: dict[str, bytes] = {}
_SENSITIVE = frozenset({b"authorization", b"proxy-authorization"})
_USER_AGENT = f"h2any/{__version__}".encode()
_ACCEPT_ENCODING = accept_encoding()


class _EventLike(Protocol):
    def set(self) -> None: ...

    def wait(self) -> Awaitable[Any]: ...


@final
class _FutureEvent(asyncio.Future[None]):
    """A one-shot asyncio event: a future, awaited as it is. ``asyncio.Event`` takes a
    global lock to bind itself to the loop, once per event -- once per request here."""

    __slots__ = ()

    def set(self) -> None:
        if not self.done():
            self.set_result(None)

    def wait(self) -> asyncio.Future[None]:
        return self


def _native_primitives() -> tuple[Callable[[], _EventLike], Callable[[], float]]:
    """The running event loop's own Event class and clock.

    anyio's wrappers of both cost a backend lookup per call (about 3 us per wait on asyncio),
    which is paid several times per request on the hot path. Same clock as
    ``anyio.current_time()``, so deadlines mix with anyio's cancel scopes.
    """
    if running_on_trio():
        import trio

        return trio.Event, trio.current_time
    loop = asyncio.get_running_loop()
    return functools.partial(_FutureEvent, loop=loop), loop.time


class _Signal:
    """A wake-up flag with at most one waiter (the writer loop)."""

    __slots__ = ("_event", "_flag")

    def __init__(self) -> None:
        self._flag = False
        self._event: anyio.Event | None = None

    def set(self) -> None:
        if not self._flag:
            self._flag = True
            if self._event is not None:
                self._event.set()

    async def wait(self) -> None:
        if not self._flag:
            self._event = anyio.Event()
            try:
                await self._event.wait()
            finally:
                self._event = None
        self._flag = False


class _Stream:
    """The connection task's record of one request/response exchange."""

    __slots__ = (
        "abandoned",
        "deadline",
        "declared_length",
        "event",
        "finished",
        "flush_posted",
        "grant_posted",
        "headers",
        "is_push",
        "items",
        "local_done",
        "on_open",
        "opened",
        "out",
        "out_closed",
        "out_pending",
        "precredit",
        "received",
        "remote_done",
        "returned",
        "stream_grant",
        "stream_id",
        "timed_out",
        "timeout",
        "window_manager",
        "writable",
    )

    def __init__(
        self,
        headers: list[tuple[bytes, bytes]],
        payload: bytes | None,
        streaming: bool,
        timeout: Timeout,
    ) -> None:
        self.headers = headers
        # The request body still to send: pieces (the first possibly partly sent already),
        # how many bytes they hold, and whether more will come.
        self.out: deque[memoryview] = deque()
        self.out_pending = 0
        self.out_closed = not streaming
        if payload:
            self.out.append(memoryview(payload))
            self.out_pending = len(payload)
        self.flush_posted = False
        self.writable: anyio.Event | None = None
        self.declared_length: int | None = None
        self.is_push = False
        self.on_open: Callable[[], None] | None = None
        self.precredit = False  # an unclaimed push: its bytes go back to the connection at once
        self.timeout = timeout
        # Events from the connection task to the one task reading the stream; ``put`` never
        # blocks (the connection task must not), the size is bounded by flow control.
        self.items: deque[tuple[Any, ...]] = deque()
        self.event: _EventLike | None = None  # of the task waiting for the next item
        self.stream_id = 0
        self.opened = False
        self.local_done = False
        self.remote_done = False
        self.finished = False
        self.abandoned = False
        self.received = 0  # flow-controlled bytes received
        self.returned = 0  # of those, handed back to the connection window
        self.stream_grant = 0  # stream window increment decided, not yet sent
        self.deadline = math.inf  # of the task waiting on this stream (Connection._watchdog)
        self.timed_out = False  # the watchdog woke that task: its deadline passed
        self.grant_posted = False
        self.window_manager: BaseFlowControlManager | None = None

    def put(self, item: tuple[Any, ...]) -> None:
        self.items.append(item)
        if self.event is not None:
            self.event.set()

    def next_item(self, new_event: Callable[[], _EventLike]) -> Awaitable[Any]:
        """What the reading task awaits (under ``Connection._watch``) for the next
        :meth:`put`, or a :meth:`wake`."""
        self.event = event = new_event()
        return event.wait()

    def wake(self) -> None:
        """Wake whichever task waits on this stream (for an item, or for room to write)."""
        if self.event is not None:
            self.event.set()
        if self.writable is not None:
            self.writable.set()


def _stage_limit(stream: _Stream) -> float | None:
    """The timeout of the stage ``stream`` is in: pool until it opens, write while its body
    is being sent, read after (``Connection._timeout_error`` names them the same way)."""
    timeout = stream.timeout
    if not stream.opened:
        return timeout.pool
    return timeout.read if stream.local_done else timeout.write


def _clone_error(exc: H2anyError) -> H2anyError:
    # One exception object must not be raised in many tasks at once (tracebacks would pile up
    # on it), so each waiter gets its own copy.
    clone = copy.copy(exc)
    clone.__cause__ = exc.__cause__
    clone.__traceback__ = None
    return clone


@final
class PendingResponse:
    """A request queued by :meth:`Connection.request_nowait`.

    ``await pending`` returns its :class:`Response` once the response headers arrive (or
    raises what :meth:`Connection.request` would); it can be awaited once. Cancelling the
    awaiting task, or calling :meth:`cancel` before awaiting, resets the stream. A pending
    response never awaited nor cancelled stays buffered (within its stream's window) until
    the connection closes, like a :class:`Response` never read; one larger than the window
    also keeps its stream slot.
    """

    __slots__ = ("_connection", "_source", "_stream", "_taken")

    def __init__(
        self, connection: Connection, stream: _Stream, source: AsyncIterator[bytes] | None
    ) -> None:
        self._connection = connection
        self._stream = stream
        self._source = source
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
        return self._connection._response(self._stream, self._source).__await__()

    def cancel(self) -> None:
        """Give up on the response without awaiting it: the stream is reset (RST_STREAM
        CANCEL) if it is open, or never opened. Does nothing once awaited."""
        if not self._taken:
            self._taken = True
            self._connection._abandon(self._stream)


@final
class Connection:
    """One HTTP/2 connection to one origin, shared by any number of tasks.

    ``url`` is an origin: ``https://host[:port]`` (TLS, ALPN ``h2``) or ``http://host[:port]``
    (h2c with prior knowledge). Use it as an async context manager, which runs the
    connection task in a task group of its own; or start it in your own task group with
    :func:`connect`.

    Arguments:
        verify: ``True`` (certifi roots, hostname checked), a CA bundle path, an
            :class:`ssl.SSLContext`, or ``False`` to skip verification (insecure).
        cert: a client certificate: PEM path, ``(certfile, keyfile)`` or with a password.
        timeout: a :class:`Timeout`, or seconds for all of its parts, or ``None``.
        window_manager: the :class:`BaseFlowControlManager` *class* that decides when to
            grant received bytes back to the server.
        initial_window_size: the receive window of each stream, in bytes.
        connection_window_size: the receive window of the whole connection.
        max_frame_size: the largest DATA frame the server may send.
        max_concurrent_streams: a limit of our own on open streams (the server's applies too).
        headers: default headers sent with every request.
        max_decompressed_size: the largest decoded body :meth:`Response.read` will
            produce; a larger one raises :class:`DecodingError` (decompression bombs).
        enable_push: accept server push (off by default: SETTINGS_ENABLE_PUSH=0).
        push_policy: decides which pushes to accept, given the :class:`PushedStream`;
            by default only pushes for this connection's own origin are.
        max_unclaimed_pushes: how many promised pushes may wait for :meth:`get_pushes`;
            further ones are refused (RST_STREAM REFUSED_STREAM).
        keepalive_interval: after this many seconds without hearing from the server, send
            a PING; if no acknowledgement arrives within ``keepalive_timeout`` (default: the
            read timeout, or 20 s), the connection is declared dead and every waiter gets
            :class:`ConnectionClosed`. ``None`` (the default) sends no keepalive PINGs.
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
        self._keepalive_interval = keepalive_interval
        self._keepalive_timeout = keepalive_timeout or self.timeout.read or 20.0
        self._max_header_list_size = max_header_list_size
        # h2 holds up to 64 CONTINUATION frames of up to max_frame_size each before it
        # gives up: with large frames that is far too much memory for one header block.
        self._header_block_limit = max(2 * 1024 * 1024, 4 * max_header_list_size)
        self._last_receive = 0.0
        if max_unclaimed_pushes < 0:
            raise ValueError("max_unclaimed_pushes must be at least 0")
        self._enable_push = enable_push
        self._push_policy = push_policy
        self._max_unclaimed_pushes = max_unclaimed_pushes
        self._push_promises: deque[PushedStream] = deque()
        self._push_news: anyio.Event | None = None
        self._ssl_context = (
            make_ssl_context(verify, cert) if self.origin.scheme == "https" else None
        )
        self._window_manager = window_manager
        self._initial_window_size = initial_window_size
        self._connection_window_size = connection_window_size
        self._max_frame_size = max_frame_size
        self._own_stream_limit = max_concurrent_streams or 2**31
        self._default_headers = self._check_headers(Headers(headers or ()))
        self._scheme_field = (b":scheme", self.origin.scheme.encode("ascii"))
        self._authority_field = (b":authority", self.origin.authority.encode("ascii"))
        if max_decompressed_size is not None and max_decompressed_size < 0:
            raise ValueError("max_decompressed_size must be None or at least 0")
        self._max_decompressed_size = max_decompressed_size

        self._proxy = None if proxy is None else ProxyConfig.parse(proxy)
        self._engine = get_engine(engine)
        self._h2 = self._engine.new_connection()
        self._h2.frame_observer = frame_observer
        self._socket: anyio.abc.ByteStream | None = None
        self._commands: deque[tuple[Callable[[Any], None], Any]] = deque()
        self._wake = _Signal()
        self._streams: dict[int, _Stream] = {}
        self._pending: deque[_Stream] = deque()
        self._sending: dict[_Stream, None] = {}
        self._active = 0
        self._got_settings = False
        self._conn_window_manager: BaseFlowControlManager = window_manager(connection_window_size)
        self._pings: dict[bytes, tuple[anyio.Event, list[float]]] = {}
        self._goaway: ev.ConnectionTerminated | None = None
        self._error: H2anyError | None = None
        self._closing = False
        self._socket_lost = False
        self._said_goodbye = False
        self._writing = False  # a write in progress: cutting it off leaves half a frame
        self._started = False
        self._done: anyio.Event
        self._run_scope: anyio.CancelScope | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._last_stream_id = 0
        self._frame_skip = 0
        self._connection_grant = 0  # connection window increment decided, not yet sent
        self._watched: dict[_Stream, None] = {}  # streams whose waiter has a deadline
        self._watchdog_event: anyio.Event | None = None  # wakes the watchdog early
        self._watchdog_due = math.inf  # when the watchdog wakes by itself
        self._header_block = 0  # bytes of an unfinished header block (HEADERS + CONTINUATIONs)
        self._settings_received: anyio.Event
        # The running loop's own Event class and clock, once the connection task starts.
        self._new_event: Callable[[], _EventLike] = anyio.Event
        self._clock: Callable[[], float] = anyio.current_time
        self._frame_header = b""

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Connection:
        if self._started:
            raise RuntimeError("this Connection was already started")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            await task_group.start(self._run)
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
        if not self._started:
            return
        if not self._closing:
            self._shutdown(ConnectionClosed("the connection was closed by the client"))
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(CLOSE_TIMEOUT):
                await self._done.wait()
            if not self._done.is_set() and self._run_scope is not None:
                self._run_scope.cancel()
                await self._done.wait()

    @property
    def is_closed(self) -> bool:
        """True once the connection can take no new requests."""
        return self._closing or self._goaway is not None

    @property
    def open_streams(self) -> int:
        """How many streams are open on the wire right now."""
        return self._active

    @property
    def max_concurrent_streams(self) -> int:
        """The number of streams that may be open at once (the peer's limit and ours)."""
        return self._stream_limit()

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
        """Send a request and return its :class:`Response` once the response headers arrive.

        ``url`` is a path (``"/x?y=1"``) or an absolute URL on this connection's origin.
        The body is read later with ``await response.read()`` or ``response.aiter_bytes()``.

        Raises:
            InvalidRequest: bad method, URL, header or body.
            PoolTimeout, WriteTimeout, ReadTimeout: per :class:`Timeout`.
            StreamReset: the server reset the stream.
            ConnectionClosed, ConnectionTerminated, ProtocolError: the connection ended.
        """
        stream, source = self._begin(method, url, headers, body, timeout)
        return await self._response(stream, source)

    def request_nowait(
        self,
        method: str,
        url: str,
        *,
        headers: HeaderTypes | None = None,
        body: BodyTypes = None,
        timeout: TimeoutTypes | None = None,
    ) -> PendingResponse:
        """Queue a request without waiting: ``await`` the returned :class:`PendingResponse`
        for its :class:`Response`.

        Many requests can be issued from one task this way, with no task per request;
        their responses are buffered (each within its stream's flow-control window) until
        awaited. A body given as bytes or str goes out at once; a streamed body (a file or
        an iterable) is sent by the task that awaits the response. Arguments and errors
        are those of :meth:`request`: a bad request or a closed connection raises here,
        timeouts and resets when awaited.
        """
        stream, source = self._begin(method, url, headers, body, timeout)
        return PendingResponse(self, stream, source)

    def _begin(
        self,
        method: str,
        url: str,
        headers: HeaderTypes | None,
        body: BodyTypes,
        timeout: TimeoutTypes | None,
        first_in_line: bool = False,
        on_open: Callable[[], None] | None = None,
    ) -> tuple[_Stream, AsyncIterator[bytes] | None]:
        """Check and queue a request: its stream, and the source of its streamed body (if
        it has one, the requesting task feeds it to the connection task). ``first_in_line``
        puts it ahead of others waiting for a stream slot (the Client's retries of requests
        the server never processed); ``on_open`` is called when its stream opens."""
        prepared = prepare_body(body)
        stream = self._new_stream(method, url, headers, prepared, timeout)
        stream.on_open = on_open
        self._check_open()
        self._post(self._cmd_open_first if first_in_line else self._cmd_open, stream)
        return stream, prepared.source

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
        """Like :meth:`request`, as a context manager that closes the response on exit.

        Leaving the block before the body has been read resets the stream (RST_STREAM
        CANCEL) and returns its unread bytes to the connection window.
        """
        response = await self.request(method, url, headers=headers, body=body, timeout=timeout)
        try:
            yield response
        finally:
            await response.aclose()

    async def ping(self, timeout: float | None = None) -> float:
        """Send a PING and return the round-trip time in seconds.

        Raises ReadTimeout if no acknowledgement arrives within ``timeout`` (default: the
        read timeout), and ConnectionClosed if the connection ends first.
        """
        self._check_open()
        payload = os.urandom(8)
        done = anyio.Event()
        result: list[float] = []
        self._pings[payload] = (done, result)
        started = time.perf_counter()
        self._post(self._cmd_ping, payload)
        limit = self.timeout.read if timeout is None else timeout
        try:
            with anyio.fail_after(limit):
                await done.wait()
        except TimeoutError:
            raise ReadTimeout(f"no PING acknowledgement within {limit} s") from None
        finally:
            self._pings.pop(payload, None)
        if not result:
            raise _clone_error(self._error or ConnectionClosed("the connection is closed"))
        return result[0] - started

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
        return PushIterator(self, stream_id, capture_all)

    def _parents_done(self, stream_id: int | None) -> bool:
        if self._closing:
            return True
        if stream_id is None:
            return all(s.remote_done or s.is_push for s in self._streams.values())
        parent = self._streams.get(stream_id)
        return parent is None or parent.remote_done

    async def _wait_push_news(self) -> None:
        if self._push_news is None:
            self._push_news = anyio.Event()
        limit = self.timeout.read
        try:
            with anyio.fail_after(limit):
                await self._push_news.wait()
        except TimeoutError:
            raise ReadTimeout(f"no push promise nor end of stream within {limit} s") from None

    def _push_news_arrived(self) -> None:
        if self._push_news is not None:
            self._push_news.set()
            self._push_news = None

    # ------------------------------------------------------------------ request building

    def _check_headers(self, headers: Headers) -> list[tuple[bytes, bytes]]:
        checked: list[tuple[bytes, bytes]] = []
        for name, value in headers.raw:
            if not _TOKEN.match(name):
                raise InvalidRequest(f"invalid header name {name!r}")
            if _BAD_VALUE.search(value):
                raise InvalidRequest(
                    f"invalid value for header {name.decode()!r}: {value!r} "
                    "(no CR, LF, NUL, or surrounding whitespace)"
                )
            if name in _CONNECTION_SPECIFIC:
                raise InvalidRequest(
                    f"header {name.decode()!r} is connection-specific and not allowed in HTTP/2"
                )
            if name == b"te" and value.lower() != b"trailers":
                raise InvalidRequest('HTTP/2 allows the "te" header only with "trailers"')
            checked.append((name, value))
        return checked

    def _new_stream(
        self,
        method: str,
        url: str,
        headers: HeaderTypes | None,
        body: PreparedBody,
        timeout: TimeoutTypes | None,
    ) -> _Stream:
        method_bytes = _GOOD_METHODS.get(method)
        if method_bytes is None:
            method_bytes = method.encode("ascii", "replace")
            if not _TOKEN.match(method_bytes.lower()):
                raise InvalidRequest(f"invalid method {method!r}")
            if len(_GOOD_METHODS) < 64:
                _GOOD_METHODS[method] = method_bytes
        path = self._path_of(url)
        payload = body.payload
        streaming = body.source is not None
        declared: int | None = None
        fields = [
            (b":method", method_bytes),
            self._scheme_field,
            self._authority_field,
            (b":path", path),
        ]
        user = self._check_headers(Headers(headers)) if headers else []
        seen = {name for name, _ in user}
        for name, value in self._default_headers:
            if name not in seen:
                user.append((name, value))
                seen.add(name)
        for name, value in user:
            if name == b"host":
                fields[2] = (b":authority", value)
            elif name == b"content-length":
                if not value.isdigit():
                    raise InvalidRequest(f"content-length must be a number, not {value!r}")
                declared = int(value)
                if body.length is not None and declared != body.length:
                    raise InvalidRequest(
                        f"content-length {declared} does not match the body's {body.length} bytes"
                    )
                fields.append((name, value))
            elif name in _SENSITIVE or (name == b"cookie" and len(value) < 20):
                # Never put credentials into the peer's HPACK table (CRIME-style attacks).
                fields.append(self._engine.NeverIndexedHeaderTuple(name, value))
            else:
                fields.append((name, value))
        if body.length is not None and b"content-length" not in seen:
            fields.append((b"content-length", str(body.length).encode()))
        if b"user-agent" not in seen:
            fields.append((b"user-agent", _USER_AGENT))
        if b"accept-encoding" not in seen:
            fields.append((b"accept-encoding", _ACCEPT_ENCODING))
        stream_timeout = self.timeout if timeout is None else as_timeout(timeout)
        stream = _Stream(fields, payload, streaming, stream_timeout)
        stream.declared_length = declared
        return stream

    def _path_of(self, url: str) -> bytes:
        if url.startswith("/") or url == "*":
            path = url
        elif "://" in url:
            try:
                target = Origin.parse(url.split("/", 3)[0] + "//" + url.split("/", 3)[2])
            except InvalidRequest:
                raise InvalidRequest(f"invalid URL {url!r}") from None
            if target != self.origin:
                raise InvalidRequest(
                    f"URL {url!r} is not on this connection's origin {self.origin}"
                )
            rest = url.split("/", 3)[3] if url.count("/") >= 3 else ""
            path = "/" + rest
        else:
            raise InvalidRequest(f"URL {url!r} must be a path starting with '/' or absolute")
        path = path.split("#", 1)[0]
        encoded = path.encode("utf-8")
        if _BAD_PATH.search(encoded):
            raise InvalidRequest(f"URL path {path!r} contains whitespace or control characters")
        return encoded

    # ------------------------------------------------------------------ requester side

    def _check_open(self) -> None:
        if not self._started:
            raise RuntimeError(
                "the Connection is not open: use 'async with Connection(...)' or connect()"
            )
        if self._goaway is not None:
            raise ConnectionTerminated(
                self._goaway.error_code or 0,
                self._goaway.last_stream_id or 0,
                retryable=True,
                additional_data=self._goaway.additional_data,
            )
        if self._closing:
            raise _clone_error(self._error or ConnectionClosed("the connection is closed"))

    def _post(self, function: Callable[[Any], None], argument: Any) -> None:
        self._commands.append((function, argument))
        self._wake.set()

    async def _response(
        self, stream: _Stream, source: AsyncIterator[bytes] | None = None
    ) -> Response:
        """The :class:`Response` of ``stream`` once its headers arrive, after sending the
        streamed body from ``source`` (if any); the stream is abandoned if this fails.

        The wait is inlined here rather than in a helper coroutine: with thousands of
        requests queued, every object a waiting request holds is walked by the garbage
        collector (a coroutine layer less is 1% of a fan-out)."""
        items = stream.items
        try:
            if source is not None:
                await self._send_streamed_body(stream, source)
            while True:
                if not items:
                    # The connection task moves the deadline as the stream progresses.
                    self._watch(stream, _stage_limit(stream))
                    try:
                        await stream.next_item(self._new_event)
                    finally:
                        self._unwatch(stream)
                    if not items:
                        if stream.timed_out:
                            raise self._timeout_error(stream)
                        continue
                item = items.popleft()
                kind = item[0]
                if kind == _HEADERS:
                    raw: list[tuple[bytes, bytes]] = item[1]
                    # Checked when received: exactly one :status, first, three digits.
                    return Response(self, stream, int(raw[0][1]), Headers._from_wire(raw[1:]))
                if kind == _ERROR:
                    raise item[1]
                # DATA or END before HEADERS cannot happen: h2 rejects it as a protocol error.
                raise ProtocolError(f"stream {stream.stream_id}: response ended before headers")
        except BaseException:
            self._abandon(stream)
            raise

    async def _send_streamed_body(self, stream: _Stream, source: AsyncIterator[bytes]) -> None:
        """Feed a streamed body to the connection task, never far ahead of the wire.

        Runs in the requesting task. Stops early if the stream ends first (the server may
        answer, or reset the stream, before reading the whole body); ``_response`` then
        reports what happened.
        """
        declared = stream.declared_length
        sent = 0
        try:
            async for piece in source:
                if stream.finished:
                    return
                if not piece:
                    continue
                sent += len(piece)
                if declared is not None and sent > declared:
                    raise InvalidRequest(
                        f"the request body is longer than its content-length {declared}; "
                        "the stream was reset"
                    )
                while stream.out_pending >= OUTBOUND_BUFFER and not stream.finished:
                    await self._wait_writable(stream)
                stream.out.append(memoryview(piece))
                stream.out_pending += len(piece)
                self._post_flush(stream)
            if declared is not None and sent != declared:
                raise InvalidRequest(
                    f"the request body ended after {sent} bytes, short of its content-length "
                    f"{declared}; the stream was reset"
                )
            stream.out_closed = True
            self._post_flush(stream)
        finally:
            aclose = getattr(source, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()

    def _post_flush(self, stream: _Stream) -> None:
        if not stream.flush_posted:
            stream.flush_posted = True
            self._post(self._cmd_flush, stream)

    async def _wait_writable(self, stream: _Stream) -> None:
        """Wait until the connection task has taken some of ``stream``'s queued body."""
        stream.writable = event = anyio.Event()
        self._watch(stream, _stage_limit(stream))
        try:
            await event.wait()
        finally:
            stream.writable = None
            self._unwatch(stream)
        if stream.timed_out and stream.out_pending >= OUTBOUND_BUFFER and not stream.finished:
            raise self._timeout_error(stream)

    def _timeout_error(self, stream: _Stream) -> H2anyError:
        timeout = stream.timeout
        if not stream.opened:
            return PoolTimeout(
                f"no stream slot free within {timeout.pool} s "
                f"({self._active} of {self._stream_limit()} streams open)"
            )
        if not stream.local_done:
            return WriteTimeout(
                f"stream {stream.stream_id}: the request body made no progress within "
                f"{timeout.write} s (the server's flow-control window stayed shut)"
            )
        return ReadTimeout(f"stream {stream.stream_id}: no response within {timeout.read} s")

    def _abandon(self, stream: _Stream) -> None:
        """The reader of ``stream`` gave up: reset it if still open, release unread data."""
        if not stream.abandoned:
            stream.abandoned = True
            self._post(self._cmd_reset, stream)

    def _consumed(self, stream: _Stream, size: int) -> None:
        """The application consumed ``size`` bytes of ``stream``'s body.

        Runs in the reading task. The window managers are plain objects of this event loop
        thread, so they are consulted here, at once; only an actual increment is posted to
        the connection task (which alone talks to h2) -- most consumed chunks then cost no
        wake-up of the connection task at all.
        """
        # Bytes already handed back (an unclaimed push's, a released stream's) are not
        # granted to the connection twice; the stream's own window still reopens.
        connection_part = min(size, stream.received - stream.returned)
        connection_increment = 0
        if connection_part > 0:
            stream.returned += connection_part
            manager = self._conn_window_manager
            try:
                connection_increment = self._checked_increment(
                    manager, "increase_window_size", manager.increase_window_size(connection_part)
                )
            except FlowControlError as exc:
                self._shutdown(exc)
                raise _clone_error(exc) from None
        stream_increment = 0
        stream_manager = stream.window_manager
        if stream_manager is not None and not stream.remote_done and not stream.finished:
            try:
                stream_increment = self._checked_increment(
                    stream_manager,
                    "increase_window_size",
                    stream_manager.increase_window_size(size),
                )
            except FlowControlError:
                self._abandon(stream)
                raise
        if connection_increment or stream_increment:
            if not stream.grant_posted:
                stream.grant_posted = True
                self._post(self._cmd_grant, stream)
            stream.stream_grant += stream_increment
            self._connection_grant += connection_increment

    # ------------------------------------------------------------------ the connection task

    async def _open_socket(self) -> anyio.abc.ByteStream:
        origin = self.origin
        try:
            with anyio.fail_after(self.timeout.connect):
                if self._proxy is not None:
                    # A CONNECT tunnel through the proxy (TLS to the target inside it, for
                    # https:// targets); ProxyError for anything the proxy does wrong.
                    stream = await open_tunnel(self._proxy, origin, self._ssl_context)
                    if self._ssl_context is None:
                        return stream
                else:
                    stream = await _socket.connect_tcp(origin.host, origin.port, READ_SIZE)
                    if self._ssl_context is None:
                        return stream
                    stream = await _socket.start_tls(stream, origin.host, self._ssl_context)
        except TimeoutError:
            raise ConnectTimeout(
                f"could not connect to {origin} within {self.timeout.connect} s"
            ) from None
        except ssl.SSLError as exc:
            raise TLSError(f"TLS handshake with {origin} failed: {exc}") from exc
        except anyio.BrokenResourceError as exc:
            cause = exc.__cause__
            if isinstance(cause, ssl.SSLError):
                raise TLSError(f"TLS handshake with {origin} failed: {cause}") from cause
            raise ConnectError(f"could not connect to {origin}: {cause or exc}") from exc
        except OSError as exc:
            raise ConnectError(f"could not connect to {origin}: {exc}") from exc
        if stream.extra(TLSAttribute.alpn_protocol, None) != "h2":
            await anyio.aclose_forcefully(stream)
            raise ConnectError(f"{origin} does not speak HTTP/2 (ALPN did not select 'h2')")
        return stream

    async def _run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """The connection task: connect, then read and write until the connection ends."""
        self._done = anyio.Event()
        self._settings_received = anyio.Event()
        self._new_event, self._clock = _native_primitives()
        self._socket = await self._open_socket()
        h2 = self._h2
        SettingCodes = self._engine.SettingCodes
        h2.local_settings = self._engine.Settings(
            client=True,
            initial_values={
                SettingCodes.ENABLE_PUSH: int(self._enable_push),
                SettingCodes.INITIAL_WINDOW_SIZE: self._initial_window_size,
                SettingCodes.MAX_FRAME_SIZE: self._max_frame_size,
                SettingCodes.MAX_CONCURRENT_STREAMS: 100,
                SettingCodes.MAX_HEADER_LIST_SIZE: self._max_header_list_size,
            },
        )
        h2.decoder.max_header_list_size = self._max_header_list_size
        h2.decoder.max_allowed_table_size = h2.local_settings.header_table_size
        h2.set_max_inbound_frame_size(self._max_frame_size)
        h2.initiate_connection()
        extra = self._connection_window_size - 65535
        if extra:
            h2.increment_flow_control_window(extra)
        self._wake.set()
        failure: H2anyError | None = None
        try:
            with anyio.CancelScope() as self._run_scope:
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(self._read_loop)
                    task_group.start_soon(self._write_then_stop, task_group)
                    task_group.start_soon(self._watchdog)
                    if self._keepalive_interval is not None:
                        task_group.start_soon(self._keepalive_loop, self._keepalive_interval)
                    failure = await self._wait_for_settings()
                    if failure is None:
                        self._started = True
                        task_status.started()
                    else:
                        task_group.cancel_scope.cancel()
        finally:
            self._shutdown(ConnectionClosed("the connection was closed"))
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
        with anyio.move_on_after(self.timeout.connect):
            await self._settings_received.wait()
        if self._got_settings:
            return None
        if self._error is not None:
            failure: H2anyError = ConnectError(
                f"{self.origin} did not start an HTTP/2 session: {self._error}"
            )
            failure.__cause__ = self._error
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
        h2 = self._h2
        current_time = anyio.current_time
        error: H2anyError
        try:
            while True:
                data = await receive(READ_SIZE)
                self._last_receive = current_time()
                self._check_frame_headers(data)
                events = h2.receive_data(data)
                self._handle_events(events)
                if h2.frame_buffer.stream_errors:
                    self._stream_errors(h2.frame_buffer.stream_errors)
                if h2.absorbed:
                    self._grant_connection(h2.absorbed)
                    h2.absorbed = 0
                if self._commands or h2.has_data_to_send():
                    self._wake.set()
        except anyio.EndOfStream:
            self._socket_lost = True
            error = ConnectionClosed("the server closed the connection")
        except (anyio.BrokenResourceError, OSError) as exc:
            self._socket_lost = True
            error = ConnectionClosed(f"the connection was lost: {exc.__cause__ or exc}")
            error.__cause__ = exc
        except self._engine.FlowControlError as exc:
            error = ProtocolError(f"the server broke flow control: {exc}", 3)
            error.__cause__ = exc
        except self._engine.ProtocolError as exc:
            code = getattr(exc, "error_code", ErrorCodes.PROTOCOL_ERROR)
            error = ProtocolError(f"the server broke the HTTP/2 protocol: {exc}", int(code))
            error.__cause__ = exc
        except anyio.ClosedResourceError:
            return
        except H2anyError as exc:
            error = exc
        self._shutdown(error)

    def _watch(self, stream: _Stream, limit: float | None) -> None:
        """A task starts waiting on ``stream`` (for an item, or for room to write), with a
        deadline ``limit`` seconds away (None: none, until the connection task moves it),
        kept by the watchdog; afterwards ``stream.timed_out`` tells whether it passed. The
        wait ends, however it ends, with :meth:`_unwatch`. (Not a coroutine wrapping the
        wait: thousands of queued requests each hold their chain of coroutines.)"""
        stream.timed_out = False
        self._watched[stream] = None
        self._set_deadline(stream, limit)

    def _unwatch(self, stream: _Stream) -> None:
        stream.event = None
        self._watched.pop(stream, None)

    def _set_deadline(self, stream: _Stream, limit: float | None) -> None:
        """Restart ``stream``'s deadline: ``limit`` seconds from now (None: none)."""
        if limit is None:
            stream.deadline = math.inf
            return
        stream.deadline = deadline = self._clock() + limit
        if deadline < self._watchdog_due:
            # Earlier than the watchdog's alarm: re-arm it (once; later ones need not).
            self._watchdog_due = deadline
            if self._watchdog_event is not None:
                self._watchdog_event.set()

    async def _watchdog(self) -> None:
        """Wake the waiters whose deadline has passed; they raise their timeout themselves.

        One task per connection instead of a timer per request. It sleeps until the earliest
        deadline (deadlines only move later, except when a new waiter wakes it) and scans
        the waiters only when it wakes: with uniform timeouts, about once per timeout.
        """
        watched = self._watched
        while True:
            soon = self._clock() + DEADLINE_SLACK
            due = math.inf
            for stream in list(watched):
                deadline = stream.deadline
                if deadline <= soon:
                    del watched[stream]
                    stream.timed_out = True
                    stream.wake()
                elif deadline < due:
                    due = deadline
            if soon < self._watchdog_due < due:
                # Keep an alarm already asked for, even if its waiter has left: waits come
                # and go (one per request, one per piece of an upload), and each new one
                # that ends after the alarm then needs no wake-up of the watchdog.
                due = self._watchdog_due
            self._watchdog_due = due
            self._watchdog_event = event = anyio.Event()
            with anyio.CancelScope(deadline=due):
                await event.wait()

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
            self._pings[payload] = (answered, [])
            self._post(self._cmd_ping, payload)
            with anyio.move_on_after(self._keepalive_timeout):
                await answered.wait()
            self._pings.pop(payload, None)
            if self._closing:
                return
            if not answered.is_set():
                self._shutdown(
                    ConnectionClosed(
                        f"the server did not answer a keepalive PING within "
                        f"{self._keepalive_timeout} s; the connection is considered dead"
                    )
                )
                return
            self._last_receive = anyio.current_time()

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
        # Plain sockets on asyncio: a write the socket takes whole needs no timeout (a
        # cancel scope with a deadline per write was an eighth of a small-window upload).
        send_now: Callable[[bytes], int] | None = getattr(self._socket, "send_now", None)
        h2 = self._h2
        commands = self._commands
        while True:
            await self._wake.wait()
            while commands:
                function, argument = commands.popleft()
                try:
                    function(argument)
                except H2anyError as exc:
                    self._shutdown(exc)
            if self._sending:
                self._pump_sending()
            if self._closing:
                await self._say_goodbye()
                return
            data = h2.data_to_send()
            if data:
                self._writing = True
                try:
                    sent = 0 if send_now is None else send_now(data)
                    if sent < len(data):
                        with anyio.fail_after(self.timeout.write):
                            await send(data[sent:])
                    self._writing = False
                except TimeoutError:
                    self._socket_lost = True
                    self._shutdown(
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
                    self._shutdown(error)
                    return

    async def _say_goodbye(self) -> None:
        """Send GOAWAY (unless the peer is gone) and whatever h2 still has queued."""
        assert self._socket is not None
        self._said_goodbye = True
        h2 = self._h2
        lost = self._socket_lost or self._writing
        try:
            if not lost and h2.state_machine.state.name != "CLOSED":
                error = self._error
                code = error.error_code if isinstance(error, ProtocolError) else 0
                h2.close_connection(code)
        except self._engine.ProtocolError:
            pass
        data = h2.data_to_send()
        if data and not lost:
            with anyio.move_on_after(1.0):
                try:
                    await self._socket.send(data)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass

    # ------------------------------------------------------------------ commands (connection task)

    def _stream_limit(self) -> int:
        limit: int = self._h2.remote_settings.max_concurrent_streams
        if not self._got_settings:
            limit = min(limit, EARLY_STREAM_LIMIT)
        return min(limit, self._own_stream_limit)

    def _cmd_open(self, stream: _Stream) -> None:
        if stream.abandoned:
            return
        if self._closing or self._goaway is not None:
            self._fail_unsent(stream)
        elif self._pending or self._active >= self._stream_limit():
            self._pending.append(stream)
        else:
            self._start(stream)

    def _cmd_open_first(self, stream: _Stream) -> None:
        if self._pending and not stream.abandoned and not self._closing and self._goaway is None:
            self._pending.appendleft(stream)
        else:
            self._cmd_open(stream)

    def _fail_unsent(self, stream: _Stream) -> None:
        stream.finished = True
        if stream.writable is not None:
            stream.writable.set()
        goaway = self._goaway
        if goaway is not None:
            exc: H2anyError = ConnectionTerminated(
                goaway.error_code or 0,
                goaway.last_stream_id or 0,
                retryable=True,
                additional_data=goaway.additional_data,
            )
        else:
            exc = _clone_error(self._error or ConnectionClosed("the connection is closed"))
        stream.put((_ERROR, exc))

    def _start(self, stream: _Stream) -> None:
        h2 = self._h2
        stream_id = h2.get_next_available_stream_id()
        no_body = stream.out_closed and not stream.out
        h2.send_request_headers(stream_id, stream.headers, no_body)
        stream.stream_id = stream_id
        stream.opened = True
        if stream.on_open is not None:
            stream.on_open()
        self._last_stream_id = stream_id
        stream.window_manager = self._window_manager(self._initial_window_size)
        self._streams[stream_id] = stream
        self._active += 1
        h2.outbound_open_count = self._active
        if no_body:
            stream.local_done = True
        else:
            self._sending[stream] = None  # sent by _pump_sending, fairly, after this batch
        self._move_deadline(stream)

    def _move_deadline(self, stream: _Stream) -> None:
        """The stream made progress: its waiter's deadline restarts (write while the body
        is being sent, read after)."""
        self._set_deadline(stream, _stage_limit(stream))

    def _send_body(self, stream: _Stream, max_frames: int = 1 << 30) -> bool:
        """Send what the windows allow of ``stream``'s queued body (at most ``max_frames``
        frames); True if anything was sent."""
        h2 = self._h2
        out = stream.out
        stream_id = stream.stream_id
        frame_size = h2.max_outbound_frame_size
        sent = False
        while out and max_frames > 0:
            window = h2.local_flow_control_window(stream_id)
            if window <= 0:
                break
            piece = out[0]
            size = min(window, frame_size, len(piece))
            last = size == len(piece)
            end = last and len(out) == 1 and stream.out_closed
            if end:
                h2.send_data(stream_id, piece[:size], end_stream=True)
            else:
                h2.send_data_frame(stream_id, piece[:size])
            if last:
                out.popleft()
            else:
                out[0] = piece[size:]
            stream.out_pending -= size
            max_frames -= 1
            sent = True
        if not out and stream.out_closed and not stream.local_done:
            if not sent:  # the body ended after its last piece went out: an empty END_STREAM
                h2.end_stream(stream_id)
            stream.local_done = True
            self._sending.pop(stream, None)
            if stream.remote_done:
                self._finish(stream)
        if stream.writable is not None and stream.out_pending < OUTBOUND_BUFFER:
            stream.writable.set()
        if sent:
            self._move_deadline(stream)
        return sent

    def _cmd_flush(self, stream: _Stream) -> None:
        """A streamed body has new pieces (or has ended): queue it for sending; the writer
        shares the windows among all such streams once the batch of commands is done."""
        stream.flush_posted = False
        if stream.opened and not stream.finished:
            self._sending[stream] = None

    def _pump_sending(self) -> None:
        """Share the connection window among streams with bodies to send: one frame each
        in turn, so no upload starves the others.

        At most SEND_BATCH bytes go to h2 per call: however wide the server opens its
        window, h2's outbound buffer (and the copies made joining frames) stays bounded; the
        writer comes back for more after each socket write.
        """
        h2 = self._h2
        queued_before = len(h2._data_to_send)
        while self._sending and h2.outbound_flow_control_window > 0:
            if len(h2._data_to_send) - queued_before >= SEND_BATCH:
                self._wake.set()  # more to send once this batch is written
                return
            progressed = False
            for stream in list(self._sending):
                if self._send_body(stream, max_frames=1):
                    progressed = True
            if not progressed:
                break

    def _cmd_grant(self, stream: _Stream) -> None:
        """Send the WINDOW_UPDATEs the window managers decided on as data was consumed."""
        stream.grant_posted = False
        increment, stream.stream_grant = stream.stream_grant, 0
        if increment and not stream.remote_done and not stream.finished:
            self._open_stream_window(stream, increment)
        increment, self._connection_grant = self._connection_grant, 0
        if increment:
            self._h2.increment_flow_control_window(increment)

    def _open_stream_window(self, stream: _Stream, increment: int) -> None:
        try:
            self._h2.increment_flow_control_window(increment, stream.stream_id)
        except self._engine.StreamClosedError:
            pass

    def _grant_connection(self, size: int) -> None:
        manager = self._conn_window_manager
        increment = self._checked_increment(
            manager, "increase_window_size", manager.increase_window_size(size)
        )
        if increment:
            self._h2.increment_flow_control_window(increment)

    @staticmethod
    def _checked_increment(manager: BaseFlowControlManager, method: str, increment: object) -> int:
        """Validate what a window manager returned, and account for it."""
        if increment is None and method == "blocked":
            return 0
        if type(increment) is not int or increment < 0:
            raise FlowControlError(
                f"{type(manager).__name__}.{method} returned {increment!r}; "
                "it must return a non-negative int"
            )
        if manager.window_size + increment > MAX_WINDOW_SIZE:
            raise FlowControlError(
                f"{type(manager).__name__}.{method} returned {increment}, which would open "
                f"the window to {manager.window_size + increment}, past 2**31-1"
            )
        manager.window_size += increment
        return increment

    def _when_blocked(self, manager: BaseFlowControlManager) -> int:
        """The peer has used up a window: ask the manager whether to open it further."""
        return self._checked_increment(manager, "blocked", manager.blocked())

    def _stream_errors(self, errors: list[tuple[int, str]]) -> None:
        """Frames the frame buffer took out as stream errors: reset those streams."""
        for stream_id, problem in errors:
            stream = self._streams.get(stream_id)
            if stream is not None:
                self._malformed(stream, f"the server sent {problem}")
        errors.clear()

    def _malformed(self, stream: _Stream, problem: str) -> None:
        """A stream error (RFC 9113 section 5.4.2): reset that stream, keep the connection."""
        self._fail_stream(
            stream,
            ProtocolError(
                f"stream {stream.stream_id}: malformed response: {problem}",
                ErrorCodes.PROTOCOL_ERROR,
            ),
            ErrorCodes.PROTOCOL_ERROR,
        )

    def _fail_stream(
        self, stream: _Stream, error: H2anyError, code: int = ErrorCodes.INTERNAL_ERROR
    ) -> None:
        """Fail one stream (reset it); the connection carries on."""
        if not stream.finished:
            stream.put((_ERROR, error))
            try:
                self._h2.reset_closed_or_open(stream.stream_id, code)
            except self._engine.ProtocolError:
                pass
            self._finish(stream)
            self._release(stream)

    def _cmd_reset(self, stream: _Stream) -> None:
        if stream.finished:
            self._release(stream)
            return
        if not stream.opened:
            try:
                self._pending.remove(stream)
            except ValueError:
                pass
            stream.finished = True
            if stream.writable is not None:
                stream.writable.set()
            return
        stream_id = stream.stream_id
        self._h2.reset_by_us.add(stream_id)
        try:
            self._h2.reset_stream(stream_id, ErrorCodes.CANCEL)
        except (self._engine.StreamClosedError, self._engine.ProtocolError):
            pass
        self._finish(stream)
        self._release(stream)

    def _release(self, stream: _Stream) -> None:
        """Hand bytes received but never consumed back to the connection window."""
        unread = stream.received - stream.returned
        if unread > 0:
            stream.returned = stream.received
            self._grant_connection(unread)

    def _finish(self, stream: _Stream) -> None:
        """The stream is closed on the wire: free its slot, exactly once."""
        if stream.finished:
            return
        stream.finished = True
        stream.local_done = stream.remote_done = True
        self._streams.pop(stream.stream_id, None)
        self._sending.pop(stream, None)
        stream.out.clear()
        stream.out_pending = 0
        if stream.writable is not None:
            stream.writable.set()
        if not stream.is_push:
            self._active -= 1
            self._h2.outbound_open_count = self._active
        self._h2.forget_stream(stream.stream_id)
        if self._pending:
            self._open_pending()
        if self._goaway is not None and not self._streams:
            self._shutdown(
                ConnectionTerminated(
                    self._goaway.error_code or 0,
                    self._goaway.last_stream_id or 0,
                    additional_data=self._goaway.additional_data,
                )
            )

    def _open_pending(self) -> None:
        pending = self._pending
        limit = self._stream_limit()
        while pending and self._active < limit and not self._closing and self._goaway is None:
            self._start(pending.popleft())

    def _cmd_ping(self, payload: bytes) -> None:
        self._h2.ping(payload)

    # ------------------------------------------------------------------ events (connection task)

    def _handle_events(self, events: Iterable[ev.Event]) -> None:
        ev = self._engine.events  # the engine's event classes (h2's or jh2's)
        streams = self._streams
        for event in events:
            if isinstance(event, ev.DataReceived):
                size = event.flow_controlled_length or 0
                connection_manager = self._conn_window_manager
                connection_manager.window_size -= size
                if connection_manager.window_size <= 0:
                    increment = self._when_blocked(connection_manager)
                    if increment:
                        self._h2.increment_flow_control_window(increment)
                stream = streams.get(event.stream_id or 0)
                if stream is None:
                    self._grant_connection(size)
                    continue
                stream.received += size
                manager = stream.window_manager
                if manager is not None:
                    manager.window_size -= size
                    if manager.window_size <= 0 and not event.stream_ended:
                        try:
                            increment = self._when_blocked(manager)
                        except FlowControlError as exc:
                            self._fail_stream(stream, exc)
                            continue
                        if increment:
                            self._open_stream_window(stream, increment)
                if stream.abandoned:
                    self._release(stream)
                    continue
                if stream.precredit:
                    self._release(stream)
                stream.put((_DATA, event.data, size))
            elif isinstance(event, ev.ResponseReceived):
                stream = streams.get(event.stream_id or 0)
                if stream is not None:
                    problem = malformed_response_fields(event.headers, trailers=False)
                    if problem is not None:
                        self._malformed(stream, problem)
                        continue
                    stream.put((_HEADERS, event.headers))
                    if stream.window_manager is not None:
                        for name, value in event.headers:
                            if name == b"content-length" and value.isdigit():
                                stream.window_manager.document_size = int(value)
            elif isinstance(event, ev.StreamEnded):
                stream = streams.get(event.stream_id or 0)
                if stream is not None:
                    stream.remote_done = True
                    stream.put(_END_ITEM)
                    if stream.local_done:
                        self._finish(stream)
                    if self._push_news is not None:
                        self._push_news_arrived()
            elif isinstance(event, ev.TrailersReceived):
                stream = streams.get(event.stream_id or 0)
                if stream is not None:
                    problem = malformed_response_fields(event.headers, trailers=True)
                    if problem is not None:
                        self._malformed(stream, problem)
                        continue
                    stream.put((_TRAILERS, event.headers))
            elif isinstance(event, ev.StreamReset):
                stream = streams.get(event.stream_id or 0)
                if stream is not None:
                    error = StreamReset(stream.stream_id, int(event.error_code or 0))
                    stream.put((_ERROR, error))
                    self._finish(stream)
                    self._release(stream)
            elif isinstance(event, ev.WindowUpdated):
                if self._sending:
                    self._pump_sending()
            elif isinstance(event, ev.RemoteSettingsChanged):
                if not self._got_settings:
                    self._got_settings = True
                    self._settings_received.set()
                if self._pending:
                    self._open_pending()
                self._pump_sending()
            elif isinstance(event, ev.PingAckReceived):
                waiter = self._pings.get(event.ping_data or b"")
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
            # Ignored: 1xx responses (we never send Expect), SETTINGS acks, PRIORITY,
            # unknown frames.

    def _on_push_promise(self, event: ev.PushedStreamReceived) -> None:
        pushed_id = event.pushed_stream_id or 0
        stream = _Stream([], None, False, self.timeout)
        stream.stream_id = pushed_id
        stream.opened = stream.local_done = stream.is_push = stream.precredit = True
        stream.window_manager = self._window_manager(self._initial_window_size)
        push = PushedStream(self, stream, event.parent_stream_id or 0, list(event.headers or []))
        if self._push_policy is not None:
            accepted = bool(self._push_policy(push))
        else:
            accepted = push.scheme == self.origin.scheme and push.authority == self.origin.authority
        unclaimed = len(self._push_promises)
        if not accepted or unclaimed >= self._max_unclaimed_pushes or self._closing:
            self._h2.reset_by_us.add(pushed_id)
            self._h2.reset_stream(pushed_id, ErrorCodes.REFUSED_STREAM)
            return
        self._streams[pushed_id] = stream
        self._push_promises.append(push)
        self._push_news_arrived()

    def _cmd_claim_push(self, stream: _Stream) -> None:
        """The application asked for a push's response: from now on its data counts
        against the connection window until consumed, like any response."""
        stream.precredit = False

    def _on_goaway(self, event: ev.ConnectionTerminated) -> None:
        error_code = int(event.error_code or 0)
        last_stream_id = event.last_stream_id if event.last_stream_id is not None else 2**31 - 1
        self._goaway = event
        for stream_id, stream in list(self._streams.items()):
            if stream_id % 2 and stream_id > last_stream_id:
                stream.put(
                    (
                        _ERROR,
                        ConnectionTerminated(
                            error_code,
                            last_stream_id,
                            retryable=True,
                            additional_data=event.additional_data,
                            stream_id=stream_id,
                        ),
                    )
                )
                self._finish(stream)
                self._release(stream)
        while self._pending:
            self._fail_unsent(self._pending.popleft())
        if not self._streams and not self._closing:
            self._shutdown(
                ConnectionTerminated(
                    error_code, last_stream_id, additional_data=event.additional_data
                )
            )

    def _shutdown(self, error: H2anyError) -> None:
        """End the connection: every waiter gets a typed error, the writer says goodbye."""
        if self._error is None:
            self._error = error
        self._closing = True
        error = self._error
        for stream in list(self._streams.values()):
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
                    stream.put((_ERROR, goaway))
                else:
                    stream.put((_ERROR, _clone_error(error)))
                stream.finished = True
                if stream.writable is not None:
                    stream.writable.set()
        self._streams.clear()
        self._sending.clear()
        while self._pending:
            self._fail_unsent(self._pending.popleft())
        # Requests posted but not yet taken by the connection task: nobody will take them.
        # (Other commands -- grants, flushes, resets, PINGs -- have nothing left to act on.)
        opens = (self._cmd_open, self._cmd_open_first)
        while self._commands:
            function, argument = self._commands.popleft()
            if function in opens:
                self._fail_unsent(argument)
        for done, _ in self._pings.values():
            done.set()
        self._settings_received.set()
        self._push_promises.clear()
        self._push_news_arrived()
        self._wake.set()


async def connect(
    task_group: anyio.abc.TaskGroup,
    url: str,
    **options: Any,
) -> Connection:
    """Open a :class:`Connection` whose connection task runs in ``task_group``.

    The connection lives until ``await conn.aclose()`` or until ``task_group`` is
    cancelled, whichever comes first. Takes the same options as :class:`Connection`.
    Connection errors (DNS, TCP, TLS, ALPN) are raised here, not in the task group.
    """
    connection = Connection(url, **options)
    await task_group.start(connection._run)
    return connection
