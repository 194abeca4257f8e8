"""A scripted HTTP/2 server for fault injection, built on raw ``h2`` and anyio sockets.

It runs inside the test's own event loop, so it works on asyncio and trio::

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        req = await peer.expect_request()
        await peer.respond(req.stream_id, body=b"hi")

    with anyio.fail_after(5):
        async with scripted_server(handler) as server:
            ...  # talk to server.url ("http://127.0.0.1:PORT", h2c prior knowledge)

``handler`` runs once per accepted connection.  An exception raised by a handler propagates
out of the ``async with`` (unwrapped when it is the only one); a handler that ends because the
client went away (``anyio.EndOfStream``, ``BrokenResourceError``, ``ClosedResourceError``) is
fine.  When a handler returns normally the connection stays open and keeps being serviced
(SETTINGS/PING acks, data acks) until the client closes it or the context exits; call
``peer.close()`` to drop it instead.  Nothing here sleeps: every wait is a socket read, bounded
by the caller's ``anyio.fail_after``.
"""

from __future__ import annotations

import socket
import struct
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
from anyio.abc import Listener, SocketAttribute, SocketStream
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from hyperframe.frame import GoAwayFrame, SettingsFrame

__all__ = [
    "ClientResetStream",
    "Request",
    "ScriptedPeer",
    "ScriptedServer",
    "encode_headers",
    "raw_frame",
    "scripted_server",
]

if sys.version_info < (3, 11):  # pragma: no cover
    from exceptiongroup import BaseExceptionGroup

HeaderPairs = Iterable[tuple[bytes | str, bytes | str]]
Handler = Callable[["ScriptedPeer"], Awaitable[None]]

_DISCONNECTED = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError)

# Frame type codes (RFC 9113 section 6) for use with raw_frame().
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE = 0x0, 0x1, 0x2, 0x3, 0x4, 0x5
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0x6, 0x7, 0x8, 0x9
# Flags.
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20


def raw_frame(type_: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """Build an HTTP/2 frame by hand: 9-byte header (24-bit length) + payload, unvalidated."""
    length = len(payload)
    header = struct.pack(">BHBBL", length >> 16, length & 0xFFFF, type_, flags, stream_id)
    return header + payload


def encode_headers(headers: HeaderPairs) -> bytes:
    """HPACK-encode ``headers`` without touching any dynamic table (never-indexed literals).

    The result can go into a hand-built HEADERS/CONTINUATION frame (see :func:`raw_frame`)
    without desynchronising the peer's ``h2`` encoder state, and it is not validated, so it can
    carry illegal fields (uppercase names, bad pseudo-headers, ...).
    """
    encoder = hpack.Encoder()
    return encoder.encode([(_b(k), _b(v), True) for k, v in headers], huffman=False)


def _b(value: bytes | str) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else bytes(value)


class ClientResetStream(Exception):
    """The client reset a stream that ``read_body``/``send_data`` was working on."""

    def __init__(self, stream_id: int, error_code: int) -> None:
        super().__init__(f"client reset stream {stream_id} with error code {error_code!r}")
        self.stream_id = stream_id
        self.error_code = error_code


@dataclass
class Request:
    """A request seen by the scripted server; ``body``/``ended`` update as data arrives."""

    stream_id: int
    headers: list[tuple[bytes, bytes]]
    ended: bool = False
    _body: bytearray = field(default_factory=bytearray, repr=False)

    @property
    def body(self) -> bytes:
        """Body bytes received so far."""
        return bytes(self._body)

    def header(self, name: bytes | str) -> bytes | None:
        """First value of header ``name`` (case-insensitive), or None."""
        key = _b(name).lower()
        for k, v in self.headers:
            if k.lower() == key:
                return v
        return None

    def header_list(self, name: bytes | str) -> list[bytes]:
        """All values of header ``name`` in order."""
        key = _b(name).lower()
        return [v for k, v in self.headers if k.lower() == key]

    @property
    def method(self) -> str:
        """The ``:method`` pseudo-header."""
        return (self.header(b":method") or b"").decode("latin-1")

    @property
    def path(self) -> str:
        """The ``:path`` pseudo-header."""
        return (self.header(b":path") or b"").decode("latin-1")

    @property
    def authority(self) -> str:
        """The ``:authority`` pseudo-header."""
        return (self.header(b":authority") or b"").decode("latin-1")


class ScriptedPeer:
    """Server side of one accepted connection, driven step by step by a test handler."""

    def __init__(self, stream: SocketStream, config: h2.config.H2Configuration) -> None:
        self.stream = stream
        self.h2 = h2.connection.H2Connection(config=config)
        #: Requests by stream id, in arrival order.
        self.requests: dict[int, Request] = {}
        #: Every event received on this connection, in order.
        self.events: list[h2.events.Event] = []
        #: Streams the client reset: stream id -> error code.
        self.resets: dict[int, int] = {}
        #: The client's GOAWAY, if any.
        self.goaway_received: h2.events.ConnectionTerminated | None = None
        #: Acknowledge received DATA automatically so the client's windows reopen.
        #: Set to False to let the client's send window run dry (flow-control tests).
        self.auto_ack_data = True
        self.closed = False
        self._pending: deque[h2.events.Event] = deque()
        self._handed_out: set[int] = set()
        self._h2_dead = False

    # -- low level ----------------------------------------------------------------------------

    async def flush(self) -> None:
        """Write whatever h2 has queued."""
        data = self.h2.data_to_send()
        if data:
            await self.stream.send(data)

    async def send_raw(self, data: bytes) -> None:
        """Write ``data`` as-is (garbage, hand-built frames); h2's state is not updated."""
        await self.flush()
        await self.stream.send(data)

    async def _receive(self) -> list[h2.events.Event]:
        """Read once, feed h2, do the bookkeeping, flush acks; events also go to the queue."""
        data = await self.stream.receive(65536)
        if self._h2_dead:
            return []
        try:
            events = self.h2.receive_data(data)
        except ProtocolError:
            if self.goaway_received is not None:
                # After the client's GOAWAY h2 rejects every further frame (its connection
                # state machine is CLOSED); that is not the client's fault, so stop parsing.
                self._h2_dead = True
                return []
            await self._flush_quietly()
            raise
        except Exception:
            await self._flush_quietly()
            raise
        for event in events:
            self._bookkeep(event)
        await self.flush()
        self.events.extend(events)
        self._pending.extend(events)
        return events

    async def _flush_quietly(self) -> None:
        # h2 queues a GOAWAY on protocol errors: try to send it before raising.
        with anyio.CancelScope(shield=True):
            try:
                await self.flush()
            except (*_DISCONNECTED, OSError):
                pass

    def _bookkeep(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.RequestReceived):
            assert event.stream_id is not None
            headers = [(_b(k), _b(v)) for k, v in event.headers or []]
            self.requests[event.stream_id] = Request(event.stream_id, headers)
        elif isinstance(event, h2.events.DataReceived):
            assert event.stream_id is not None
            req = self.requests.get(event.stream_id)
            if req is not None and event.data:
                req._body += event.data
            if self.auto_ack_data and event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            req = self.requests.get(event.stream_id or 0)
            if req is not None:
                req.ended = True
        elif isinstance(event, h2.events.StreamReset):
            assert event.stream_id is not None
            self.resets[event.stream_id] = event.error_code or 0
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway_received = event

    # -- reading ------------------------------------------------------------------------------

    async def next_events(self) -> list[h2.events.Event]:
        """Return queued events not yet handed out, else read once from the socket.

        Raises ``anyio.EndOfStream`` when the client closed the connection.
        """
        if self._pending:
            events = list(self._pending)
            self._pending.clear()
            return events
        await self._receive()
        events = list(self._pending)
        self._pending.clear()
        return events

    async def expect_request(self) -> Request:
        """Wait for the next request (HEADERS) not yet returned; other events stay queued."""
        while True:
            for event in self._pending:
                if (
                    isinstance(event, h2.events.RequestReceived)
                    and event.stream_id not in self._handed_out
                ):
                    self._pending.remove(event)
                    assert event.stream_id is not None
                    self._handed_out.add(event.stream_id)
                    return self.requests[event.stream_id]
            await self._receive()

    async def read_body(self, stream_id: int) -> bytes:
        """Read until the request on ``stream_id`` ends; return its whole body.

        Raises :class:`ClientResetStream` if the client resets the stream first.
        """
        while True:
            req = self.requests.get(stream_id)
            if req is not None and req.ended:
                return req.body
            if stream_id in self.resets:
                raise ClientResetStream(stream_id, self.resets[stream_id])
            await self._receive()

    async def wait_for(self, predicate: Callable[[h2.events.Event], bool]) -> h2.events.Event:
        """Read until an event (queued or new) matches ``predicate``; it is removed from the
        queue, other events stay queued."""
        while True:
            for event in self._pending:
                if predicate(event):
                    self._pending.remove(event)
                    return event
            await self._receive()

    async def wait_closed(self) -> list[h2.events.Event]:
        """Read until the client closes the socket; return the events not yet handed out
        plus everything seen meanwhile (e.g. to assert on RST_STREAM or GOAWAY)."""
        try:
            while True:
                await self._receive()
        except _DISCONNECTED:
            pass
        events = list(self._pending)
        self._pending.clear()
        return events

    # -- writing ------------------------------------------------------------------------------

    async def handshake(
        self,
        settings: Mapping[h2.settings.SettingCodes | int, int] | None = None,
        *,
        separate: bool = False,
    ) -> None:
        """Send the server preface (SETTINGS).

        ``settings`` (e.g. ``{SettingCodes.MAX_CONCURRENT_STREAMS: 1}``) go into the initial
        SETTINGS frame; locally they take effect when the client ACKs it (as RFC 9113 says:
        the client may use the default 64 KiB windows until it has seen our SETTINGS).  With
        ``separate=True`` they are sent as a second SETTINGS frame via ``update_settings``.
        """
        self.h2.initiate_connection()
        if settings and not separate:
            # Replace h2's SETTINGS frame by one that also carries ours, and queue ours as
            # pending local settings (applied by h2 on the ACK).
            self.h2.data_to_send()
            frame = SettingsFrame(0)
            for code, value in self.h2.local_settings.items():
                frame.settings[code] = value
            for code, value in settings.items():
                frame.settings[code] = value
                self.h2.local_settings[code] = value
            await self.stream.send(frame.serialize())
        elif settings:
            self.h2.update_settings(dict(settings))
        await self.flush()

    async def respond(
        self,
        stream_id: int,
        status: int = 200,
        headers: HeaderPairs = (),
        body: bytes = b"",
        end: bool = True,
        trailers: HeaderPairs | None = None,
    ) -> None:
        """Send response HEADERS, then ``body`` (flow-controlled), then optional trailers.

        ``end=False`` leaves the stream open after the body (send more with ``send_data``).
        """
        hdrs = [(b":status", str(status).encode()), *((_b(k), _b(v)) for k, v in headers)]
        only_headers = not body and trailers is None
        self.h2.send_headers(stream_id, hdrs, end_stream=end and only_headers)
        await self.flush()
        if body:
            await self.send_data(stream_id, body, end=end and trailers is None)
        if trailers is not None:
            tr = [(_b(k), _b(v)) for k, v in trailers]
            self.h2.send_headers(stream_id, tr, end_stream=True)
            await self.flush()

    async def send_data(self, stream_id: int, data: bytes, end: bool = False) -> None:
        """Send DATA respecting flow control, reading events while the window is short.

        Raises :class:`ClientResetStream` if the client resets the stream meanwhile.
        """
        view = memoryview(data)
        while view or (end and not data):
            if stream_id in self.resets:
                raise ClientResetStream(stream_id, self.resets[stream_id])
            window = min(
                self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size
            )
            if not view:
                self.h2.end_stream(stream_id)
                break
            if window <= 0:
                await self.flush()
                await self._receive()
                continue
            chunk, view = view[:window], view[window:]
            self.h2.send_data(stream_id, bytes(chunk), end_stream=end and not view)
            await self.flush()
        await self.flush()

    async def reset(self, stream_id: int, error_code: int = ErrorCodes.CANCEL) -> None:
        """Send RST_STREAM."""
        self.h2.reset_stream(stream_id, error_code)
        await self.flush()

    async def goaway(
        self, error_code: int = 0, last_stream_id: int | None = None, data: bytes = b""
    ) -> None:
        """Send GOAWAY (``last_stream_id`` defaults to the highest stream seen so far).

        The frame is built by hand rather than via ``h2.close_connection``: h2 moves to its
        CLOSED state after a GOAWAY and then refuses to send or receive anything, whereas a
        real server keeps serving streams up to ``last_stream_id`` (graceful shutdown).
        """
        if last_stream_id is None:
            last_stream_id = self.h2.highest_inbound_stream_id
        frame = GoAwayFrame(
            0, last_stream_id=last_stream_id, error_code=int(error_code), additional_data=data
        )
        await self.send_raw(frame.serialize())

    async def ping(self, data: bytes = b"scripted") -> None:
        """Send a PING (8 bytes of opaque data); the ACK shows up as PingAckReceived."""
        self.h2.ping(data)
        await self.flush()

    async def close(self, *, abort: bool = False) -> None:
        """Close the socket now; ``abort=True`` sends a TCP RST (SO_LINGER 0) instead of FIN."""
        if self.closed:
            return
        self.closed = True
        if abort:
            raw: socket.socket = self.stream.extra(SocketAttribute.raw_socket)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await self.stream.aclose()


class ScriptedServer:
    """Handle yielded by :func:`scripted_server`."""

    def __init__(self, port: int, handler: Handler, config: h2.config.H2Configuration) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        #: Number of connections accepted so far.
        self.connections = 0
        #: One peer per accepted connection, in accept order.
        self.peers: list[ScriptedPeer] = []
        self._handler = handler
        self._config = config
        self._accepted = anyio.Event()

    async def wait_connections(self, n: int) -> None:
        """Wait until at least ``n`` connections have been accepted."""
        while self.connections < n:
            await self._accepted.wait()

    async def _serve(self, listener: Listener[SocketStream]) -> None:
        await listener.serve(self._run)

    async def _run(self, stream: SocketStream) -> None:
        peer = ScriptedPeer(stream, self._config)
        self.peers.append(peer)
        self.connections += 1
        self._accepted.set()
        self._accepted = anyio.Event()
        async with stream:
            try:
                await self._handler(peer)
                # Keep servicing the connection (acks) until the client leaves.
                while not peer.closed:
                    await peer._receive()
            except _DISCONNECTED:
                pass
            finally:
                peer.closed = True


def _unwrap(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


@asynccontextmanager
async def scripted_server(
    handler: Handler,
    *,
    config: h2.config.H2Configuration | None = None,
) -> AsyncIterator[ScriptedServer]:
    """Listen on 127.0.0.1 (port 0) and run ``handler`` for every accepted connection."""
    if config is None:
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(SocketAttribute.local_port)
    server = ScriptedServer(port, handler, config)
    try:
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(server._serve, listener)
            try:
                yield server
            finally:
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        inner = _unwrap(group)
        if inner is group:
            raise
        raise inner from None
