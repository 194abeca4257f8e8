"""Flow-control window managers (hyper's pluggable model, consulted on *consumption*).

The connection makes one manager for the connection window and one per stream. It keeps
``window_size`` up to date (how many bytes the peer may still send: it drops as DATA
arrives and rises by each increment granted) and calls ``increase_window_size(n)`` each
time the application consumes ``n`` bytes. The manager answers how many bytes to grant
back to the peer in a WINDOW_UPDATE (0 for none). Because only consumed bytes are
offered, a stream never buffers more than its window: a slow reader slows the server.
"""

from __future__ import annotations

__all__ = ("AdaptiveFlowControlManager", "BaseFlowControlManager", "FlowControlManager")

MAX_WINDOW_SIZE = 2**31 - 1


class BaseFlowControlManager:
    """Base class of window managers; subclass it and implement :meth:`increase_window_size`.

    Attributes kept for subclasses: ``initial_window_size``, ``window_size`` (what the peer
    may still send), and ``document_size`` (the response's Content-Length when known).
    """

    def __init__(self, initial_window_size: int, document_size: int | None = None) -> None:
        self.initial_window_size = initial_window_size
        self.window_size = initial_window_size
        self.document_size = document_size

    def increase_window_size(self, frame_size: int) -> int:
        """The application consumed ``frame_size`` bytes: return how many bytes to grant."""
        raise NotImplementedError

    def blocked(self) -> int | None:
        """The peer says it is blocked by this window: return an increment, or ``None``."""
        return None


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
            self.window_size * 4 < self.initial_window_size
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
        self._peer_was_blocked = False

    def increase_window_size(self, frame_size: int) -> int:
        self._unacknowledged += frame_size
        target = self.target_window_size
        # Received but not yet consumed:
        buffered = target - self.window_size - self._unacknowledged
        if self._peer_was_blocked and buffered <= 0:
            self._peer_was_blocked = False
            limit = max(self.max_window_size, self.initial_window_size)
            growth = min(target, limit - target)
            if self.document_size is not None:  # no point growing past the whole body
                growth = min(growth, max(0, self.document_size - target))
            self.target_window_size = target + growth
            increment, self._unacknowledged = self._unacknowledged + growth, 0
            return increment
        if self._unacknowledged * 2 >= target or self.window_size * 4 < target:
            increment, self._unacknowledged = self._unacknowledged, 0
            return increment
        return 0

    def blocked(self) -> int | None:
        self._peer_was_blocked = True
        return None
