"""The ``h2`` state machine as h2any drives it, with the fixes its defaults need.

Only the connection task (``_connection.py``) ever calls into an ``_H2Connection``.
"""

from __future__ import annotations

from typing import Any

from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.exceptions import StreamClosedError

__all__ = ("ConnectionState", "H2Connection", "StreamClosedError", "new_h2_connection")

_RST_STREAM = 0x3


class _H2Connection(H2Connection):
    # Two behaviours of stock h2 that hurt a client, and what this subclass does instead:
    #
    # * After we reset a stream, the peer may legitimately keep sending frames that were
    #   already in flight (RFC 9113 section 5.4.2: we MUST ignore them). h2 answers each
    #   late frame with yet another RST_STREAM, and nghttpd drops the whole connection after
    #   a few dozen of those. We swallow those replies for streams *we* reset, and hand the
    #   late DATA bytes back to the connection task (``absorbed``) so it can return them to
    #   the connection window at once instead of waiting for h2's own late bookkeeping.
    # * GOAWAY: see ``_receive_goaway_frame``.

    def __init__(self, config: H2Configuration) -> None:
        super().__init__(config=config)
        self.reset_by_us: set[int] = set()
        self.absorbed = 0
        self._in_receive = False

    def _receive_frame(self, frame: Any) -> Any:
        self._in_receive = True
        try:
            return super()._receive_frame(frame)
        finally:
            self._in_receive = False

    def _prepare_for_sending(self, frames: Any) -> None:
        if self._in_receive and self.reset_by_us:
            frames = [
                f for f in frames if not (f.type == _RST_STREAM and f.stream_id in self.reset_by_us)
            ]
        super()._prepare_for_sending(frames)

    def _handle_data_on_closed_stream(self, events: Any, exc: Any, frame: Any) -> Any:
        if frame.stream_id in self.reset_by_us:
            self.absorbed += frame.flow_controlled_length
            return [], events + exc._events
        return super()._handle_data_on_closed_stream(events, exc, frame)

    def has_data_to_send(self) -> bool:
        return bool(self._data_to_send)

    def _receive_goaway_frame(self, frame: Any) -> Any:
        # h2 moves its state machine to CLOSED as soon as GOAWAY arrives (upstream h2 issue
        # 1181) and would then reject every later frame -- even the responses of streams the
        # peer promised to finish (those at or below last_stream_id), which may sit in the
        # very same read. The connection task refuses new streams itself once it sees the
        # ConnectionTerminated event, so the state machine stays open for the streams that
        # are still finishing.
        result = super()._receive_goaway_frame(frame)
        if self.state_machine.state == ConnectionState.CLOSED:
            self.state_machine.state = ConnectionState.CLIENT_OPEN
        return result

    def set_max_inbound_frame_size(self, size: int) -> None:
        # Checked against each frame header as soon as it arrives, so a bogus length fails
        # at once instead of waiting for megabytes that never come.
        self.max_inbound_frame_size = size


def new_h2_connection() -> _H2Connection:
    config = H2Configuration(
        client_side=True,
        header_encoding=None,
        # h2any builds and checks request headers itself (lowercase names, no connection-
        # specific fields, no CR/LF/NUL); h2's own pass over them costs ~15% of a small request.
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
        validate_inbound_headers=True,
        normalize_inbound_headers=True,
    )
    return _H2Connection(config)
