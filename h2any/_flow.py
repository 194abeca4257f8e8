"""Flow control: the window managers (hyper's pluggable model) and the ledger of grants.

Everything that decides how much the server may send lives here.

Theory of operation
===================

The connection makes one manager for the connection window and one per stream, and tells
them about every DATA frame *as it arrives*, in hyper's order: ``increase_window_size(n)``
with the frame's flow-controlled size, then ``window_size`` drops by ``n`` and rises by the
increment the manager returned. When a window runs out, ``blocked()`` may open it further.

* **The connection window is granted at once.** Its WINDOW_UPDATE goes out as the frame
  arrives, so the connection window is never the reason one stream waits on another that
  nobody reads (RFC 9113 section 5.2: the connection window is shared; stream windows are
  what bound a stream's buffer).
* **A stream's grant waits for its reader.** The increment a stream manager asks for at a
  frame is sent only once the application has consumed that frame's bytes
  (`StreamWindow.consumed`). A stream therefore never buffers more than its window:
  a slow reader slows the server, not the heap. What a connection may buffer is the sum of
  its open streams' windows: at most ``max_concurrent_streams x`` the stream window (plus
  what a manager grows it to).
* ``data_consumed(n)`` (an h2any addition, 0 by default) lets a manager decide with the
  reader's pace in view: the adaptive manager grows a window there, and only when the
  reader has caught up.
"""

from __future__ import annotations

from collections import deque

from ._exceptions import FlowControlError

__all__ = (
    "AdaptiveFlowControlManager",
    "BaseFlowControlManager",
    "ConnectionWindow",
    "FlowControlManager",
    "StreamWindow",
)

MAX_WINDOW_SIZE = 2**31 - 1


class BaseFlowControlManager:
    """Base class of window managers; subclass it and implement `increase_window_size`.

    Attributes kept for subclasses: ``initial_window_size``, ``window_size`` (what the peer
    may still send), and ``document_size`` (the response's Content-Length when known).
    """

    def __init__(self, initial_window_size: int, document_size: int | None = None) -> None:
        self.initial_window_size = initial_window_size
        self.window_size = initial_window_size
        self.document_size = document_size

    def increase_window_size(self, frame_size: int) -> int:
        """A DATA frame of ``frame_size`` flow-controlled bytes arrived (``window_size``
        does not count it yet): return how many bytes to grant back (0 for none).

        For a stream the grant is sent once the application has consumed this frame."""
        raise NotImplementedError

    def blocked(self) -> int | None:
        """The peer has used up this window: return an increment, or ``None``."""
        return None

    def data_consumed(self, size: int) -> int:
        """The application consumed ``size`` bytes of this window's data: return an extra
        increment to grant at once (an h2any addition to hyper's model; 0 by default)."""
        return 0


class FlowControlManager(BaseFlowControlManager):
    """The default: grant consumed bytes back in batches of at least half the window.

    Fewer WINDOW_UPDATE frames than acknowledging every frame, and the peer never waits on
    a window while the application keeps reading.
    """

    def __init__(self, initial_window_size: int, document_size: int | None = None) -> None:
        super().__init__(initial_window_size, document_size)
        self._unacknowledged = 0

    def increase_window_size(self, frame_size: int) -> int:
        self._unacknowledged += frame_size
        if self._unacknowledged * 2 >= self.initial_window_size or (
            (self.window_size - frame_size) * 4 < self.initial_window_size
        ):
            increment, self._unacknowledged = self._unacknowledged, 0
            return increment
        return 0


class AdaptiveFlowControlManager(BaseFlowControlManager):
    """Grows the window toward the connection's bandwidth-delay product.

    Starts at ``initial_window_size``. When the peer has used up the whole window (it was
    *blocked*) and the application then consumes everything received -- so the window, not
    the reader, is what limits throughput -- the window doubles, up to ``max_window_size``.
    A slow reader leaves data buffered, so the window does not grow, and memory stays
    bounded by the current window.
    """

    #: The largest window this manager grows to (16 MiB; a larger initial window is kept).
    max_window_size = 16 * 1024 * 1024

    def __init__(self, initial_window_size: int, document_size: int | None = None) -> None:
        super().__init__(initial_window_size, document_size)
        self.target_window_size = initial_window_size
        self._unacknowledged = 0
        self._buffered = 0  # arrived, not yet consumed
        self._peer_was_blocked = False

    def increase_window_size(self, frame_size: int) -> int:
        self._buffered += frame_size
        self._unacknowledged += frame_size
        target = self.target_window_size
        if self._unacknowledged * 2 >= target or (self.window_size - frame_size) * 4 < target:
            increment, self._unacknowledged = self._unacknowledged, 0
            return increment
        return 0

    def blocked(self) -> int | None:
        self._peer_was_blocked = True
        return None

    def data_consumed(self, size: int) -> int:
        self._buffered -= size
        if not self._peer_was_blocked or self._buffered > 0:
            return 0
        self._peer_was_blocked = False
        target = self.target_window_size
        limit = max(self.max_window_size, self.initial_window_size)
        growth = min(target, limit - target)
        if self.document_size is not None:  # no point growing past the whole body
            growth = min(growth, max(0, self.document_size - target))
        self.target_window_size = target + growth
        return growth


def checked_increment(manager: BaseFlowControlManager, method: str, increment: object) -> int:
    """Validate what a window manager returned, and count it into its ``window_size``.

    Raises:
        FlowControlError: not a non-negative int, or it would open the window past 2**31-1.
    """
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


def _checked_answer(manager: BaseFlowControlManager, size: int, increment: object) -> int:
    """Check and count what ``increase_window_size(size)`` returned, once the window has
    been lowered by ``size`` (as the manager saw its window when it answered)."""
    manager.window_size += size
    try:
        return checked_increment(manager, "increase_window_size", increment)
    finally:
        manager.window_size -= size


class ConnectionWindow:
    """The connection's receive window: every DATA frame's bytes, granted back as they
    arrive. For this window data counts as consumed on arrival (``data_consumed`` is
    called at once): memory is bounded by the stream windows, not by this one."""

    __slots__ = ("_asks_on_consumption", "_decided", "_peer_window", "manager")

    def __init__(self, manager: BaseFlowControlManager) -> None:
        self.manager = manager
        self._asks_on_consumption = (
            type(manager).data_consumed is not BaseFlowControlManager.data_consumed
        )
        self._peer_window = manager.window_size  # what the peer may still send
        self._decided = 0  # increments decided, not yet sent

    def on_data(self, size: int) -> None:
        """A DATA frame arrived (on any stream, or one we no longer track); what to grant
        back is collected for `take_grant`. Raises FlowControlError."""
        manager = self.manager
        self._peer_window -= size
        # hyper's order: ask, then lower the window (inline: every DATA frame).
        increment = manager.increase_window_size(size)
        manager.window_size -= size
        if increment.__class__ is not int or increment != 0:
            increment = _checked_answer(manager, size, increment)
        if self._peer_window <= 0:
            increment += checked_increment(manager, "blocked", manager.blocked())
        if self._asks_on_consumption:
            increment += checked_increment(manager, "data_consumed", manager.data_consumed(size))
        self._decided += increment

    def take_grant(self) -> int:
        """The WINDOW_UPDATE increment to send now (after each socket read)."""
        increment, self._decided = self._decided, 0
        self._peer_window += increment
        return increment


class StreamWindow:
    """One stream's receive window: its manager's grants, each held until the application
    has consumed the frame it was decided at."""

    __slots__ = (
        "_asks_on_consumption",
        "_consumed",
        "_held",
        "_peer_window",
        "_received",
        "manager",
    )

    def __init__(self, manager: BaseFlowControlManager) -> None:
        self.manager = manager
        # Only managers that decide on consumption are asked then (a call saved per chunk).
        self._asks_on_consumption = (
            type(manager).data_consumed is not BaseFlowControlManager.data_consumed
        )
        self._received = 0
        self._consumed = 0
        # What the peer may still send: the manager's ``window_size`` counts grants still
        # held for the reader, this does not.
        self._peer_window = manager.window_size
        # (received offset the reader must reach, increment), oldest first.
        self._held: deque[tuple[int, int]] = deque()

    @property
    def buffered(self) -> int:
        """Bytes received and not yet consumed."""
        return self._received - self._consumed

    def on_data(self, size: int, stream_ended: bool) -> None:
        """A DATA frame of ``size`` flow-controlled bytes arrived (connection task).
        Raises FlowControlError for a manager's nonsense answer."""
        self._received += size
        self._peer_window -= size
        manager = self.manager
        # hyper's order: ask, then lower the window (inline: every DATA frame).
        increment = manager.increase_window_size(size)
        manager.window_size -= size
        if stream_ended:
            if increment.__class__ is not int or increment != 0:
                _checked_answer(manager, size, increment)  # nonsense is an error still
            return
        if increment.__class__ is not int or increment != 0:
            increment = _checked_answer(manager, size, increment)
        if self._peer_window <= 0:
            # The peer has used up the window it was given (grants held for the reader
            # do not count): it is blocked.
            increment += checked_increment(manager, "blocked", manager.blocked())
        if increment:
            self._held.append((self._received, increment))

    def consumed(self, size: int) -> int:
        """The application consumed ``size`` bytes (reading task): the stream increment
        that may go out now. Raises FlowControlError for a manager's nonsense answer."""
        self._consumed = consumed = self._consumed + size
        increment = 0
        if self._asks_on_consumption:
            manager = self.manager
            increment = checked_increment(manager, "data_consumed", manager.data_consumed(size))
        held = self._held
        while held and held[0][0] <= consumed:
            increment += held.popleft()[1]
        self._peer_window += increment
        return increment
