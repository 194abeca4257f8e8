"""One stream: its state, its typed inbox events, and the port its users talk through.

Theory of operation
===================

A `Stream` is shared by exactly two parties: the connection task (``_task.py``),
which alone changes its ``state`` and feeds its inbox, and the tasks that use it -- one
reading the response ([`Response`][h2any.Response], [`PushedStream`][h2any.PushedStream]), and for
a full-duplex stream one sending the request body ([`DuplexStream`][h2any.DuplexStream], or the
upload pump of ``_upload.py``). Those never touch the connection's state; they talk to it through
the small port below:

* ``take()`` / ``watch(limit)`` + ``unwatch()``: the next inbox event, or a wait for one
  (the inbox is a deque fed without blocking; its size is bounded by the stream's window,
  because data is granted back only as the reader consumes it);
* ``consumed(n)``: the reader consumed ``n`` bytes (a WINDOW_UPDATE may follow);
* ``abandon()``: the user gave up on the stream (RST_STREAM CANCEL if it is still open);
* ``offer(piece)`` / ``wait_writable()`` / ``close_outbound(trailers)``: the request side.

The connection side is a `Link` (the connection task), so this module imports
nothing above it.

The state follows RFC 9113 section 5.1, seen from the client: ``IDLE`` (queued for a
stream slot), ``OPEN``, ``HALF_CLOSED_LOCAL`` (our END_STREAM sent), ``HALF_CLOSED_REMOTE``
(the server's END_STREAM received), ``CLOSED`` (both), ``RESET`` (ended abnormally: reset
by either side, failed, or never opened).
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, NamedTuple, Protocol, final

import anyio

from ._config import Timeout
from ._deadlines import EventLike, Waiter, Watchdog
from ._exceptions import FlowControlError, H2anyError, PoolTimeout, ReadTimeout, WriteTimeout
from ._flow import StreamWindow

__all__ = (
    "END",
    "Data",
    "Ended",
    "Failed",
    "InboxEvent",
    "Link",
    "ResponseHeaders",
    "Stream",
    "StreamState",
    "Trailers",
)


class StreamState(enum.Enum):
    IDLE = "idle"
    OPEN = "open"
    HALF_CLOSED_LOCAL = "half-closed (local)"
    HALF_CLOSED_REMOTE = "half-closed (remote)"
    CLOSED = "closed"
    RESET = "reset"


IDLE: Final = StreamState.IDLE
OPEN: Final = StreamState.OPEN
HALF_CLOSED_LOCAL: Final = StreamState.HALF_CLOSED_LOCAL
HALF_CLOSED_REMOTE: Final = StreamState.HALF_CLOSED_REMOTE
CLOSED: Final = StreamState.CLOSED
RESET: Final = StreamState.RESET


# Inbox events: what the connection task tells the reader of a stream, in order.


class ResponseHeaders(NamedTuple):
    """The response's header block, as received (``:status`` first, checked)."""

    fields: list[tuple[bytes, bytes]]


class Data(NamedTuple):
    """A piece of the body; ``flow_size`` counts against the window (padding included)."""

    data: bytes
    flow_size: int


class Trailers(NamedTuple):
    """The trailing header block."""

    fields: list[tuple[bytes, bytes]]


@final
class Ended:
    """The response ended (END_STREAM)."""

    __slots__ = ()


END: Final = Ended()


class Failed(NamedTuple):
    """The stream failed: the reader raises ``error`` (an h2any error, or what a streamed
    request body's source raised)."""

    error: BaseException


InboxEvent = ResponseHeaders | Data | Trailers | Ended | Failed


class Link(Protocol):
    """What a stream needs of its connection task (``_task.ConnectionTask``)."""

    @property
    def watchdog(self) -> Watchdog: ...

    def post_reset(self, stream: Stream) -> None: ...

    def post_flush(self, stream: Stream) -> None: ...

    def post_grant(self, stream: Stream, increment: int) -> None: ...

    def slot_report(self) -> str: ...


class Stream(Waiter):
    """One request/response exchange (the waiter it inherits is its reader's)."""

    __slots__ = (
        "abandoned",
        "declared_length",
        "duplex",
        "expires",
        "failure",
        "flush_posted",
        "headers",
        "is_push",
        "items",
        "link",
        "on_open",
        "out",
        "out_closed",
        "out_pending",
        "pump_done",
        "pump_scope",
        "state",
        "stream_id",
        "timeout",
        "trailers_out",
        "window",
        "writer",
    )

    def __init__(
        self,
        link: Link,
        headers: list[tuple[bytes, bytes]],
        payload: bytes | None,
        streaming: bool,
        timeout: Timeout,
    ) -> None:
        # The reader's Waiter fields (set here: a call less per request).
        self.event: EventLike | None = None
        self.deadline = math.inf
        self.timed_out = False
        self.link = link
        self.headers = headers
        self.state = IDLE
        self.stream_id = 0
        self.timeout = timeout
        # The request's total deadline on the connection's clock (Timeout.total), from now;
        # a Client moves it to where the whole request (retries included) started.
        total = timeout.total
        self.expires = math.inf if total is None else anyio.current_time() + total
        # Events from the connection task to the one task reading the stream.
        self.items: deque[InboxEvent] = deque()
        self.window: StreamWindow | None = None  # from when the stream opens
        # The request body still to send: pieces (the first possibly partly sent already),
        # how many bytes they hold, and whether more will come.
        self.out: deque[memoryview] = deque()
        self.out_pending = 0
        self.out_closed = not streaming
        if payload:
            self.out.append(memoryview(payload))
            self.out_pending = len(payload)
        self.trailers_out: list[tuple[bytes, bytes]] | None = None
        self.flush_posted = False
        self.writer: Waiter | None = None  # of the task waiting for room to send
        self.declared_length: int | None = None
        self.duplex = False  # the user sends; the reader waits with the read timeout
        self.is_push = False
        self.abandoned = False
        self.failure: BaseException | None = None  # why it failed, for its sender
        self.on_open: Callable[[], None] | None = None
        self.pump_done: EventLike | None = None  # set when a body= pump task has ended
        self.pump_scope: anyio.CancelScope | None = None  # of that pump, while it runs

    def __repr__(self) -> str:
        return f"<Stream {self.stream_id or '(not open)'} {self.state.value}>"

    # -------------------------------------------------------------- state (read anywhere)

    @property
    def opened(self) -> bool:
        return self.stream_id != 0

    @property
    def local_done(self) -> bool:
        # Identity tests: an Enum member's hash is a Python-level call (hot path).
        state = self.state
        return state is HALF_CLOSED_LOCAL or state is CLOSED or state is RESET

    @property
    def remote_done(self) -> bool:
        """The whole response has arrived (END_STREAM)."""
        state = self.state
        return state is HALF_CLOSED_REMOTE or state is CLOSED

    @property
    def finished(self) -> bool:
        state = self.state
        return state is CLOSED or state is RESET

    # -------------------------------------------------------------- connection task side

    def fail(self, error: BaseException) -> None:
        """Tell the reader (and the sender) that the stream failed (connection task)."""
        if self.failure is None:
            self.failure = error
        self.put(Failed(error))

    def put(self, item: InboxEvent) -> None:
        self.items.append(item)
        if self.event is not None:
            self.event.set()

    def wake_writer(self) -> None:
        writer = self.writer
        if writer is not None:
            writer.wake()

    def ended_locally(self) -> None:
        """Our END_STREAM went out."""
        self.state = CLOSED if self.state is HALF_CLOSED_REMOTE else HALF_CLOSED_LOCAL

    def ended_remotely(self) -> None:
        """The server's END_STREAM arrived."""
        self.state = CLOSED if self.state is HALF_CLOSED_LOCAL else HALF_CLOSED_REMOTE

    def terminate(self) -> None:
        """The stream is over on the wire (however it ended); no more will be sent."""
        state = self.state
        if state is HALF_CLOSED_REMOTE:
            self.state = CLOSED  # the response is complete; only our side was cut short
        elif state is not CLOSED:
            self.state = RESET
        if self.out:
            self.out.clear()
            self.out_pending = 0
        if self.writer is not None:
            self.writer.wake()
        if self.pump_scope is not None:
            # A body= pump may be waiting on its source: nothing more will be sent.
            self.pump_scope.cancel()

    # -------------------------------------------------------------- the reader's port

    def take(self) -> InboxEvent | None:
        """The next inbox event, or None if nothing is there yet."""
        items = self.items
        return items.popleft() if items else None

    def watch(self, limit: float | None) -> Awaitable[Any]:
        """Start waiting for the next event, ``limit`` seconds at most; end the wait with
        `unwatch`, then ``timed_out`` tells whether the deadline passed."""
        return self.link.watchdog.watch(self, limit, self.expires)

    def unwatch(self) -> None:
        self.link.watchdog.unwatch(self)

    def reader_limit(self) -> float | None:
        """The reader's timeout for the stage the stream is in: pool until it opens, the
        write timeout while a request body is being sent for it, read after."""
        timeout = self.timeout
        if not self.stream_id:
            return timeout.pool
        state = self.state
        if self.duplex or state is HALF_CLOSED_LOCAL or state is CLOSED or state is RESET:
            return timeout.read
        return timeout.write

    def consumed(self, size: int) -> None:
        """The application consumed ``size`` bytes of the body: grant them back to the
        server when the stream's window manager says so.

        Runs in the reading task; the window manager is a plain object of this event loop
        thread, consulted here at once, so most chunks cost no wake-up of the connection
        task. Raises FlowControlError (and resets the stream) for a manager's nonsense.
        """
        window = self.window
        if window is None:
            return
        try:
            increment = window.consumed(size)
        except FlowControlError:
            self.abandon()
            raise
        if increment and (self.state is OPEN or self.state is HALF_CLOSED_LOCAL):
            self.link.post_grant(self, increment)

    def abandon(self) -> None:
        """The user gave up on the stream: reset it if still open, drop what is unread."""
        if not self.abandoned:
            self.abandoned = True
            self.link.post_reset(self)

    # -------------------------------------------------------------- the sender's port

    def offer(self, piece: bytes | memoryview) -> None:
        """Queue a piece of the request body for the connection task (which sends it as
        the windows allow). The caller keeps ``out_pending`` bounded (`writable`)."""
        self.out.append(memoryview(piece))
        self.out_pending += len(piece)
        self._flush()

    def close_outbound(self, trailers: list[tuple[bytes, bytes]] | None = None) -> None:
        """The request body is complete; ``trailers`` go out after it."""
        self.trailers_out = trailers
        self.out_closed = True
        self._flush()

    def _flush(self) -> None:
        if not self.flush_posted:
            self.flush_posted = True
            self.link.post_flush(self)

    def timeout_error(self, waiting_for_room: bool = False) -> H2anyError:
        """The timeout error for a wait that ran out, named by the stream's stage (and by
        the request's total timeout, when that is what passed)."""
        timeout = self.timeout
        total = None
        if self.expires <= self.link.watchdog.clock():
            total = f"the request's total timeout ({timeout.total} s) passed"
        if not self.opened:
            if total is not None:
                return PoolTimeout(f"{total} while it waited for a stream slot")
            return PoolTimeout(
                f"no stream slot free within {timeout.pool} s ({self.link.slot_report()})"
            )
        if waiting_for_room or not (self.duplex or self.local_done):
            if total is not None:
                return WriteTimeout(f"stream {self.stream_id}: {total} while sending its body")
            return WriteTimeout(
                f"stream {self.stream_id}: the request body made no progress within "
                f"{timeout.write} s (the server's flow-control window stayed shut)"
            )
        if total is not None:
            return ReadTimeout(f"stream {self.stream_id}: {total} while reading the response")
        return ReadTimeout(f"stream {self.stream_id}: no response within {timeout.read} s")
