"""Request bodies on the wire: the sender's side and the connection task's send pump.

Theory of operation
===================

A request body reaches the server in two hops. The *sender* -- the user's task for a
[`DuplexStream`][h2any.DuplexStream], or a pump task for a ``body=`` that is a file or an iterable
-- hands pieces to its stream (``Stream.offer``) and waits (`wait_writable`) while more
than ``OUTBOUND_BUFFER`` bytes of it wait for the wire, so an upload of any size holds
bounded memory. The connection task's `Outbox` sends what the flow-control windows
allow, one frame per stream in turn so no upload starves another, and at most
``SEND_BATCH`` bytes into h2's buffer per socket write.

Sending and receiving are independent: a response may arrive (and be read) while its
request body is still going out. A ``body=`` upload whose response has already ended is
abandoned by the connection task (RFC 9113 section 8.1: the server has answered; the rest
of the body is not needed).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Final, final

import anyio

from ._body import PIECE_SIZE
from ._deadlines import Waiter
from ._exceptions import InvalidRequest

if TYPE_CHECKING:
    from ._engine import EngineConnection
    from ._stream import Stream

__all__ = (
    "OUTBOUND_BUFFER",
    "SEND_BATCH",
    "Outbox",
    "body_length_error",
    "pump_body",
    "wait_writable",
)

# At most this much request body goes into h2's outbound buffer per socket write.
SEND_BATCH: Final = 1024 * 1024
# A sender hands the connection task at most this much ahead of the wire.
OUTBOUND_BUFFER: Final = 4 * PIECE_SIZE


def body_length_error(declared: int, sent: int) -> InvalidRequest:
    """The error for a request body of ``sent`` bytes (too many, or it ended with too few)
    that disagrees with its declared content-length."""
    if sent > declared:
        return InvalidRequest(
            f"the request body is longer than its content-length {declared}; the stream was reset"
        )
    return InvalidRequest(
        f"the request body ended after {sent} bytes, short of its content-length "
        f"{declared}; the stream was reset"
    )


async def wait_writable(stream: Stream) -> None:
    """Wait until ``stream`` has room for more request body (or has ended).

    Raises:
        PoolTimeout, WriteTimeout: no room within the pool / write timeout.
    """
    writer = stream.writer
    if writer is None:
        writer = stream.writer = Waiter()
    watchdog = stream.link.watchdog
    while stream.out_pending >= OUTBOUND_BUFFER and not stream.finished:
        limit = stream.timeout.write if stream.opened else stream.timeout.pool
        try:
            await watchdog.watch(writer, limit, stream.expires)
        finally:
            watchdog.unwatch(writer)
        if writer.timed_out and stream.out_pending >= OUTBOUND_BUFFER and not stream.finished:
            raise stream.timeout_error(waiting_for_room=True)


async def pump_body(stream: Stream, source: AsyncIterator[bytes]) -> None:
    """Send a streamed ``body=`` on ``stream``, piece by piece, never far ahead of the wire.

    Stops quietly if the stream ends first (the server may answer, or reset the stream,
    before reading the whole body: the response reports what happened).

    Raises:
        InvalidRequest: the body disagrees with its declared content-length.
        PoolTimeout, WriteTimeout: as `wait_writable`.
        Exception: whatever the body's source raises.
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
                raise body_length_error(declared, sent)
            if stream.out_pending >= OUTBOUND_BUFFER:
                await wait_writable(stream)
                if stream.finished:
                    return
            stream.offer(piece)
        if declared is not None and sent != declared:
            raise body_length_error(declared, sent)
        if not stream.finished:
            stream.close_outbound()
    finally:
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True):
                await aclose()


@final
class Outbox:
    """The connection task's side of uploads: the streams with body to send, sent fairly.

    ``on_local_end(stream)`` is called when a stream's END_STREAM went out;
    ``on_progress(stream)`` when some of its body did (its waiters' deadlines restart).
    """

    __slots__ = ("_closed_error", "_h2", "_on_local_end", "_on_progress", "sending")

    def __init__(
        self,
        h2: EngineConnection,
        closed_error: type[Exception],
        on_local_end: Callable[[Stream], None],
        on_progress: Callable[[Stream], None],
    ) -> None:
        self._h2 = h2
        self._closed_error = closed_error
        self._on_local_end = on_local_end
        self._on_progress = on_progress
        self.sending: dict[Stream, None] = {}

    def add(self, stream: Stream) -> None:
        """``stream`` (open) has body, trailers or its END_STREAM to send."""
        self.sending[stream] = None

    def clear(self) -> None:
        self.sending.clear()

    def send_body(self, stream: Stream, max_frames: int = 1 << 30) -> int:
        """Send what the windows allow of ``stream``'s queued body (at most ``max_frames``
        frames), and its end once all is out; how many body bytes were sent."""
        try:
            return self._send_body(stream, max_frames)
        except self._closed_error:
            # The server closed the stream in the frames being handled right now (its
            # RST_STREAM event comes later in the same batch): nothing more to send.
            self.sending.pop(stream, None)
            return 0

    def _send_body(self, stream: Stream, max_frames: int) -> int:
        h2 = self._h2
        out = stream.out
        stream_id = stream.stream_id
        frame_size = h2.max_outbound_frame_size
        trailers = stream.trailers_out
        sent = 0
        while out and max_frames > 0:
            window = h2.local_flow_control_window(stream_id)
            if window <= 0:
                break
            piece = out[0]
            size = min(window, frame_size, len(piece))
            last = size == len(piece)
            end = last and len(out) == 1 and stream.out_closed and trailers is None
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
            sent += size
        if not out and stream.out_closed and not stream.local_done:
            if trailers is not None:
                h2.send_headers(stream_id, trailers, end_stream=True)
            elif not sent:  # the body ended after its last piece went out: an empty END_STREAM
                h2.end_stream(stream_id)
            self.sending.pop(stream, None)
            self._on_local_end(stream)
        elif not out and not stream.out_closed:
            self.sending.pop(stream, None)  # back when the sender offers more (a flush)
        if stream.out_pending < OUTBOUND_BUFFER:
            stream.wake_writer()
        if sent:
            self._on_progress(stream)
        return sent

    def pump(self) -> bool:
        """Share the connection window among streams with body to send: one frame each in
        turn. False if it stopped at SEND_BATCH with more to send (the writer comes back
        after its socket write), so h2's outbound buffer stays bounded however wide the
        server opens its window."""
        h2 = self._h2
        sending = self.sending
        batch = 0
        while sending and h2.outbound_flow_control_window > 0:
            if batch >= SEND_BATCH:
                return False
            progressed = 0
            if len(sending) == 1:  # nobody to take turns with: frames up to the batch
                frames = 1 + (SEND_BATCH - batch) // h2.max_outbound_frame_size
                for stream in list(sending):
                    progressed = self.send_body(stream, max_frames=frames)
            else:
                for stream in list(sending):
                    progressed += self.send_body(stream, max_frames=1)
            if not progressed:
                break
            batch += progressed
        # Streams whose body ended with nothing left to frame (no window needed).
        for stream in list(sending):
            if not stream.out and stream.out_closed:
                self.send_body(stream, max_frames=0)
        return True
