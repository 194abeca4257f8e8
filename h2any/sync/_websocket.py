"""WebSockets on the blocking facade: ``h2any.sync.WebSocket``, from
``h2any.sync.Connection.websocket``.

Every call is forwarded to the async [`h2any.WebSocket`][h2any.WebSocket] in the connection's
loop thread; its reader (PONGs, the closing handshake, flow control) runs there whether or
not a thread is receiving. No protocol logic lives here.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from types import TracebackType
from typing import final

from .._headers import Headers
from .._websocket import WebSocket as AsyncWebSocket
from .._websocket import WebSocketClosed, leave_websocket
from ._portal import LoopThread, check_not_in_event_loop

__all__ = ("WebSocket",)


@final
class WebSocket:
    """A WebSocket on the blocking facade; see [`h2any.WebSocket`][h2any.WebSocket].

    Thread-safe: one thread may `send` while another waits in `receive`. Use it as
    the context manager that ``h2any.sync.Connection.websocket()`` gives: leaving the block
    closes it with 1000 (or, after an exception, resets its stream).
    """

    def __init__(self, loop: LoopThread, websocket: AsyncWebSocket) -> None:
        self._loop = loop
        self._websocket = websocket
        self.subprotocol: str | None = websocket.subprotocol
        self.response_headers: Headers = websocket.response_headers

    def __repr__(self) -> str:
        return f"<h2any.sync.WebSocket stream {self.stream_id}>"

    @property
    def stream_id(self) -> int:
        """The HTTP/2 stream that carries the WebSocket."""
        return self._websocket.stream_id

    @property
    def close_code(self) -> int | None:
        """The code of the server's close frame (1005: none in it, 1006: no close frame);
        ``None`` while open."""
        return self._websocket.close_code

    @property
    def close_reason(self) -> str | None:
        """The reason of the server's close frame; ``None`` while open."""
        return self._websocket.close_reason

    def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a text (``str``) or binary (bytes-like) message; see
        [`h2any.WebSocket.send`][h2any.WebSocket.send]."""
        check_not_in_event_loop("WebSocket.send()")
        self._loop.call(self._websocket.send, message)

    def receive(self) -> str | bytes:
        """The next whole message; see [`h2any.WebSocket.receive`][h2any.WebSocket.receive].
        Raises [`WebSocketClosed`][h2any.WebSocketClosed] once the WebSocket has closed."""
        check_not_in_event_loop("WebSocket.receive()")
        return self._loop.call(self._websocket.receive)

    def __iter__(self) -> Iterator[str | bytes]:
        """The messages, until the WebSocket closes (``close_code`` says how)."""
        while True:
            try:
                yield self.receive()
            except WebSocketClosed:
                return

    def ping(self, data: bytes = b"", *, timeout: float | None = None) -> float:
        """Send a PING, wait for its PONG, return the round trip in seconds; see
        [`h2any.WebSocket.ping`][h2any.WebSocket.ping]."""
        check_not_in_event_loop("WebSocket.ping()")
        return self._loop.call(functools.partial(self._websocket.ping, data, timeout=timeout))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Run the closing handshake; see [`h2any.WebSocket.close`][h2any.WebSocket.close]."""
        check_not_in_event_loop("WebSocket.close()")
        self._loop.call(self._websocket.close, code, reason)

    def statistics(self) -> dict[str, int | float]:
        """What the WebSocket holds in memory; see
        [`h2any.WebSocket.statistics`][h2any.WebSocket.statistics]."""
        return self._websocket.statistics()

    def __enter__(self) -> WebSocket:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._loop.in_loop_thread:
            return
        try:
            self._loop.call(leave_websocket, self._websocket, exc_type is not None)
        except RuntimeError:
            pass  # the connection (and its loop) is already closed: nothing left to close
