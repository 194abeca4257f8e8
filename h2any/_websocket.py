"""WebSockets over HTTP/2 (RFC 8441): [`WebSocket`][h2any.WebSocket], what
[`Connection.websocket`][h2any.Connection.websocket] gives, and its errors.

Theory of operation
===================

A WebSocket is one full-duplex stream opened with an extended CONNECT (``:method CONNECT``,
``:protocol websocket``); once the server answers 2xx, the stream's DATA in each direction
carries WebSocket frames (RFC 6455), which ``wsproto`` (the sans-IO library of the h2 and
h11 family) encodes and decodes. ``wsproto`` is imported only when a WebSocket opens:
``import h2any`` works without it.

* **One reader per WebSocket.** A task of the connection's own (``ConnectionTask.start_task``)
  reads the stream's inbox, feeds ``wsproto``, answers PING with PONG at once, matches PONGs
  with waiting `WebSocket.ping` calls, follows the closing handshake, and queues whole
  messages (fragments joined) for `WebSocket.receive`. It is the only reader of the stream;
  the application's tasks wait on the queue, so cancelling a task in ``receive()`` loses
  nothing and leaves the WebSocket usable.
* **Backpressure through the window.** What arrives is parsed at once (so control frames
  are answered while the application reads nothing), but granted back to the server
  (``Stream.consumed``: WINDOW_UPDATE) only while the queue of whole messages nobody
  received counts less than ``QUEUE_HIGH_WATER``; past ``QUEUE_LIMIT`` the reader parses
  nothing more until the application takes messages. Each queued message counts its
  payload plus ``MESSAGE_OVERHEAD`` (a flood of empty messages is not free). An application
  that stops reading stops the server within one stream window; memory per WebSocket stays
  within about ``QUEUE_LIMIT + max_message_size + the stream window``.
* **Bounded messages.** A message larger than ``max_message_size`` is dropped as it
  arrives, the WebSocket is closed with 1009, and ``receive()`` raises
  [`WebSocketMessageTooBig`][h2any.WebSocketMessageTooBig].
* **Sending** goes through the stream's [`DuplexStream`][h2any.DuplexStream] under a lock, one
  whole frame per piece (a message above ``FRAGMENT_SIZE`` goes in fragments), so frames
  never interleave and the server's window holds back a fast sender.
* **Closing** (RFC 8441 section 5): after the closing handshake the client ends its side of
  the stream (END_STREAM); leaving the ``async with`` block normally closes with 1000 and
  waits (bounded) for the server to end its side; leaving it with an error, or by
  cancellation, resets the stream (RST_STREAM CANCEL) at once.
"""

from __future__ import annotations

import io
import math
import os
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, final

import anyio
import anyio.lowlevel

from ._duplex import DuplexStream
from ._exceptions import (
    ConnectionClosed,
    FlowControlError,
    H2anyError,
    ProtocolError,
    ReadTimeout,
    clone_error,
)
from ._headers import Headers, HeaderTypes
from ._stream import Data, Ended, Failed, Stream, Trailers

if TYPE_CHECKING:
    from wsproto.connection import Connection as WSConnection

__all__ = (
    "DEFAULT_MAX_MESSAGE_SIZE",
    "ExtendedConnectUnsupported",
    "WebSocket",
    "WebSocketClosed",
    "WebSocketError",
    "WebSocketHandshakeError",
    "WebSocketMessageTooBig",
    "handshake_headers",
    "leave_websocket",
    "require_wsproto",
    "start_websocket",
)

DEFAULT_MAX_MESSAGE_SIZE: Final = 4 * 1024 * 1024
# Outgoing messages larger than this go out in fragments of this size: the masked copy
# wsproto makes of each frame stays small, and control frames may go between them.
FRAGMENT_SIZE: Final = 256 * 1024
# Whole messages nobody has received yet, in bytes, past which arriving data is no longer
# granted back to the server: the application's reading paces the server.
QUEUE_HIGH_WATER: Final = 1024 * 1024
# Past this (in the same count), the reader parses no further until the application takes
# messages: what arrives meanwhile waits in the stream's inbox, bounded by the window.
QUEUE_LIMIT: Final = 2 * QUEUE_HIGH_WATER
# What a queued message counts for beyond its payload (so empty messages are not free).
MESSAGE_OVERHEAD: Final = 64
# How long closing waits for the server's answer when the read timeout is None.
DEFAULT_CLOSE_TIMEOUT: Final = 10.0
INSTALL_HINT: Final = "WebSockets need the wsproto package: pip install 'h2any[websockets]'"

# Close codes (RFC 6455 section 7.4.1).
NORMAL_CLOSURE: Final = 1000
NO_STATUS_RECEIVED: Final = 1005
ABNORMAL_CLOSURE: Final = 1006
MESSAGE_TOO_BIG: Final = 1009
# Codes an endpoint may send in a close frame (RFC 6455 section 7.4; 3000-4999 registered
# or private); 1004, 1005, 1006 and 1015 are never sent.
_SENDABLE_CODES: Final = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)


# ------------------------------------------------------------------ errors


class WebSocketError(H2anyError):
    """Base class of the WebSocket errors."""


class ExtendedConnectUnsupported(WebSocketError):
    """The server did not announce ``SETTINGS_ENABLE_CONNECT_PROTOCOL = 1`` (RFC 8441
    section 3): it cannot take WebSockets (or any extended CONNECT) over HTTP/2. Raised
    before anything is sent."""


class WebSocketHandshakeError(WebSocketError):
    """The server refused the WebSocket (a status other than 2xx), or answered something a
    WebSocket cannot use (a subprotocol or an extension that was not offered).

    ``status`` and ``headers`` are those of the server's answer.
    """

    def __init__(self, message: str, status: int, headers: Headers) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


class WebSocketClosed(WebSocketError):
    """The WebSocket is closed: raised by [`WebSocket.receive`][h2any.WebSocket.receive] once
    every message that came before the close has been received, and by `send` and `ping`.

    ``code`` and ``reason`` are those of the close frame the server sent (1005 if it sent
    none, 1006 if the stream ended without one); ``remote`` is true when the server
    started the closing handshake.
    """

    def __init__(self, code: int, reason: str, *, remote: bool) -> None:
        who = "the server" if remote else "the client"
        text = f"the WebSocket was closed by {who} (code {code}"
        super().__init__(text + (f", {reason!r})" if reason else ")"))
        self.code = code
        self.reason = reason
        self.remote = remote


class WebSocketMessageTooBig(WebSocketError):
    """The server sent a message larger than ``max_message_size``: it was dropped and the
    WebSocket closed with code 1009."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the server sent a WebSocket message larger than max_message_size ({limit} "
            "bytes); the WebSocket was closed with code 1009"
        )
        self.limit = limit


# ------------------------------------------------------------------ the handshake


def handshake_headers(
    subprotocols: Sequence[str] | None, headers: HeaderTypes | None
) -> list[tuple[str, str]]:
    """The extended CONNECT's header fields (RFC 8441 section 5): ``sec-websocket-version:
    13``, the offered subprotocols, then the user's ``headers``.

    Raises:
        InvalidRequest: a subprotocol that is not a token.
    """
    from ._exceptions import InvalidRequest
    from ._request import check_headers

    fields = [("sec-websocket-version", "13")]
    if subprotocols:
        offered = list(subprotocols)
        for name in offered:
            if not isinstance(name, str) or not name or not _is_token(name):
                raise InvalidRequest(f"invalid WebSocket subprotocol {name!r} (a token)")
        fields.append(("sec-websocket-protocol", ", ".join(offered)))
    if headers:
        for field, value in check_headers(Headers(headers)):
            if field in (b"sec-websocket-version", b"sec-websocket-protocol"):
                hint = ": use subprotocols= instead" if field == b"sec-websocket-protocol" else ""
                raise InvalidRequest(f"{field.decode()!r} is set by websocket(){hint}")
            fields.append((field.decode("latin-1"), value.decode("latin-1")))
    return fields


def _is_token(text: str) -> bool:
    return text.isascii() and all(c.isalnum() or c in "!#$%&'*+-.^_`|~" for c in text)


def require_wsproto() -> None:
    """Raise a clear ImportError if wsproto (the ``websockets`` extra) is missing."""
    try:
        import wsproto  # noqa: F401
    except ImportError as exc:
        raise ImportError(INSTALL_HINT, name="wsproto") from exc


async def start_websocket(
    duplex: DuplexStream,
    stream: Stream,
    start_task: Callable[[Callable[[], Coroutine[Any, Any, None]]], None],
    subprotocols: Sequence[str] | None,
    max_message_size: int,
) -> WebSocket:
    """Wait for the answer to the extended CONNECT of ``duplex`` and, if it accepts the
    WebSocket, start its reader with ``start_task``.

    Raises:
        WebSocketHandshakeError: not a 2xx answer, or one naming a subprotocol or an
            extension that was not offered (the stream is reset).
        PoolTimeout, ReadTimeout, StreamReset, ConnectionClosed, ...: as
            [`DuplexStream.response`][h2any.DuplexStream.response].
    """
    response = await duplex.response()
    stream.expires = math.inf  # Timeout.total bounds the handshake, not the WebSocket's life
    status, headers = response.status, response.headers
    problem = None
    chosen = headers.get("sec-websocket-protocol")
    if not 200 <= status < 300:
        problem = f"the server refused the WebSocket: {status}"
    elif chosen is not None and chosen not in (subprotocols or ()):
        offered = ", ".join(subprotocols or ()) or "none"
        problem = f"the server chose subprotocol {chosen!r}, which was not offered ({offered})"
    elif headers.get("sec-websocket-extensions"):
        problem = (
            "the server answered with WebSocket extensions, which were not offered: "
            f"{headers.get('sec-websocket-extensions')!r}"
        )
    if problem is not None:
        await duplex.aclose()
        raise WebSocketHandshakeError(problem, status, headers)
    websocket = WebSocket(duplex, stream, headers, chosen, max_message_size)
    start_task(websocket._run_reader)
    return websocket


async def leave_websocket(websocket: WebSocket, failed: bool) -> None:
    """What leaving a WebSocket's block does: close it with 1000 (bounded by its close
    timeout), or, when the block ``failed`` (an error or a cancellation), reset its stream
    at once. The reader stops either way."""
    try:
        if not failed:
            await websocket.close(NORMAL_CLOSURE)
    finally:
        websocket._stop()
        with anyio.CancelScope(shield=True):
            await websocket._duplex.aclose()


# ------------------------------------------------------------------ the WebSocket


@final
class _Ping:
    __slots__ = ("acknowledged", "event")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.acknowledged = False


@final
class WebSocket:
    """A WebSocket over an HTTP/2 stream (RFC 8441), from
    [`Connection.websocket`][h2any.Connection.websocket].

    ``await send(message)`` sends a text (``str``) or binary (``bytes``) message;
    ``await receive()`` returns the next whole message; ``async for message in ws`` reads
    until the server closes. Sending and receiving may run in different tasks at once;
    PINGs from the server are answered whether or not anything is being received.

    Attributes:
        subprotocol: the subprotocol the server chose, or ``None``.
        response_headers: the [`Headers`][h2any.Headers] of the server's answer to the
            handshake.
        close_code: the code of the close frame the server sent (1005 if it carried none,
            1006 if the stream ended without one); ``None`` while open.
        close_reason: the reason that came with it (``""`` if none); ``None`` while open.
    """

    __slots__ = (
        "_buffered",
        "_changed",
        "_close_sent",
        "_close_timeout",
        "_discarding",
        "_duplex",
        "_eof_sent",
        "_failure",
        "_max_message_size",
        "_messages",
        "_partial",
        "_partial_size",
        "_pings",
        "_reader_done",
        "_reader_scope",
        "_room",
        "_send_lock",
        "_stream",
        "_uncredited",
        "_ws",
        "close_code",
        "close_reason",
        "response_headers",
        "subprotocol",
    )

    def __init__(
        self,
        duplex: DuplexStream,
        stream: Stream,
        response_headers: Headers,
        subprotocol: str | None,
        max_message_size: int,
    ) -> None:
        from wsproto import ConnectionType
        from wsproto.connection import Connection as WSConnection

        self._ws: WSConnection = WSConnection(ConnectionType.CLIENT)
        self._duplex = duplex
        self._stream = stream
        self.response_headers = response_headers
        self.subprotocol = subprotocol
        self._max_message_size = max_message_size
        read = stream.timeout.read
        self._close_timeout = DEFAULT_CLOSE_TIMEOUT if read is None else read
        self._messages: deque[tuple[str | bytes, int]] = deque()
        self._buffered = 0  # bytes of the queued messages
        self._uncredited = 0  # bytes received and parsed but not granted back yet
        self._partial: bytearray | io.StringIO | None = None  # the message arriving
        self._partial_size = 0
        self._discarding = False  # dropping the rest of a message that was too big
        self._changed = anyio.Event()
        self._send_lock = anyio.Lock()
        self._pings: dict[bytes, _Ping] = {}
        self._failure: H2anyError | None = None  # raised once the queue is drained
        self._close_sent = False
        self._eof_sent = False
        self._reader_done = anyio.Event()
        self._reader_scope: anyio.CancelScope | None = None
        self._room: anyio.Event | None = None  # the reader waits for the queue to shrink
        self.close_code: int | None = None
        self.close_reason: str | None = None

    def __repr__(self) -> str:
        state = "open" if self.close_code is None and self._failure is None else "closed"
        return f"<h2any.WebSocket stream {self._stream.stream_id} ({state})>"

    @property
    def stream_id(self) -> int:
        """The HTTP/2 stream that carries the WebSocket."""
        return self._stream.stream_id

    # -------------------------------------------------------------- the application's side

    async def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a message: ``str`` as a text message, bytes-like as a binary one.

        Returns once the connection has taken it; waits while the server's flow-control
        window is shut (up to the write timeout: then the stream is reset). Cancelling a
        send that is waiting resets the stream (a message cut short cannot be resumed).

        Raises:
            WebSocketClosed: the WebSocket is closing or closed.
            TypeError: neither ``str`` nor bytes-like.
            WriteTimeout, StreamReset, ConnectionClosed, ...: the stream or the connection
                failed.
        """
        from wsproto.events import BytesMessage, TextMessage

        payload: str | bytes
        if isinstance(message, str):
            payload = message
        elif isinstance(message, (bytes, bytearray, memoryview)):
            payload = bytes(message)
        else:
            raise TypeError(f"a WebSocket message is str or bytes, not {type(message).__name__}")
        async with self._send_lock:
            self._check_can_send()
            kind = TextMessage if isinstance(payload, str) else BytesMessage
            if len(payload) <= FRAGMENT_SIZE:
                await self._write(self._ws.send(kind(data=payload)))  # type: ignore[arg-type]
                return
            for start in range(0, len(payload), FRAGMENT_SIZE):
                piece = payload[start : start + FRAGMENT_SIZE]
                last = start + FRAGMENT_SIZE >= len(payload)
                event = kind(data=piece, message_finished=last)  # type: ignore[arg-type]
                await self._write(self._ws.send(event))
                if not last:
                    self._check_can_send()

    async def receive(self) -> str | bytes:
        """The next message: ``str`` for a text message, ``bytes`` for a binary one, whole
        (its fragments joined). Waits as long as it takes (wrap it in ``anyio.fail_after``
        for a limit); cancelling the wait loses nothing.

        Raises:
            WebSocketClosed: the WebSocket closed (after the messages that came before).
            WebSocketMessageTooBig: the server sent a message above ``max_message_size``.
            StreamReset, ConnectionClosed, ConnectionTerminated, ProtocolError: the stream
                or the connection failed.
        """
        await anyio.lowlevel.checkpoint()  # before taking: a cancellation loses nothing
        while True:
            messages = self._messages
            if messages:
                message, size = messages.popleft()
                self._buffered -= size
                self._credit()
                room = self._room
                if room is not None and self._buffered < QUEUE_LIMIT:
                    self._room = None
                    room.set()
                return message
            failure = self._failure
            if failure is not None:
                raise clone_error(failure)
            await self._changed.wait()

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> str | bytes:
        try:
            return await self.receive()
        except WebSocketClosed:
            raise StopAsyncIteration from None

    async def ping(self, data: bytes = b"", *, timeout: float | None = None) -> float:
        """Send a PING and wait for the server's matching PONG; return the round trip in
        seconds. ``data``: at most 125 bytes (by default 4 random ones); a PONG for a later
        PING also answers the earlier ones (RFC 6455 section 5.5.3).

        Raises:
            ValueError: ``data`` too long, or a PING with the same data still waiting.
            ReadTimeout: no PONG within ``timeout`` (default: the read timeout, or 10 s).
            WebSocketClosed, StreamReset, ConnectionClosed, ...: it closed or failed first.
        """
        from wsproto.events import Ping

        payload = bytes(data) if data else os.urandom(4)
        if len(payload) > 125:
            raise ValueError("a WebSocket PING carries at most 125 bytes")
        if payload in self._pings:
            raise ValueError(f"a PING with data {payload!r} is already waiting for its PONG")
        waiting = self._pings[payload] = _Ping()
        started = anyio.current_time()
        try:
            async with self._send_lock:
                self._check_can_send()
                await self._write(self._ws.send(Ping(payload=payload)))
            limit = self._close_timeout if timeout is None else timeout
            with anyio.move_on_after(limit):
                await waiting.event.wait()
        finally:
            if self._pings.get(payload) is waiting:
                del self._pings[payload]
        if waiting.acknowledged:
            return anyio.current_time() - started
        if self._failure is not None:
            raise clone_error(self._failure)
        raise ReadTimeout(f"WebSocket on stream {self.stream_id}: no PONG within {limit} s")

    async def close(self, code: int = NORMAL_CLOSURE, reason: str = "") -> None:
        """Close the WebSocket: send a close frame with ``code`` and ``reason`` and wait
        (up to the read timeout, or 10 s) for the server's, then end the stream. Messages
        that arrive meanwhile can still be received. Does nothing if it is already closed;
        a server that does not answer in time gets its stream reset.

        Raises:
            ValueError: a code that may not be sent (RFC 6455 section 7.4), or a reason
                longer than 123 bytes in UTF-8.
        """
        from wsproto.connection import ConnectionState
        from wsproto.events import CloseConnection

        if code not in _SENDABLE_CODES and not 3000 <= code <= 4999:
            raise ValueError(f"close code {code} may not be sent (RFC 6455 section 7.4)")
        if len(reason.encode("utf-8")) > 123:
            raise ValueError("a close reason is at most 123 bytes in UTF-8")
        await anyio.lowlevel.checkpoint()
        if not self._close_sent and self._failure is None:
            async with self._send_lock:
                if self._ws.state is ConnectionState.OPEN and self._failure is None:
                    self._send_final(self._ws.send(CloseConnection(code, reason)))
        with anyio.move_on_after(self._close_timeout):
            while self._failure is None:
                await self._changed.wait()
        if self._failure is None:
            # No answer: give up on the closing handshake (RFC 6455 section 7.1.7).
            reason = "no close frame from the server"
            self._fail(WebSocketClosed(ABNORMAL_CLOSURE, reason, remote=False))
            self._stream.abandon()

    async def __aenter__(self) -> WebSocket:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await leave_websocket(self, exc_type is not None)

    # -------------------------------------------------------------- sending

    def _check_can_send(self) -> None:
        from wsproto.connection import ConnectionState

        if self._ws.state is ConnectionState.OPEN and self._failure is None:
            return
        if self._failure is not None:
            raise clone_error(self._failure)
        raise WebSocketClosed(
            self.close_code or ABNORMAL_CLOSURE, "the WebSocket is closing", remote=False
        )

    async def _write(self, data: bytes) -> None:
        await self._duplex.send(data)

    def _answer_close_with_reset(self) -> bool:
        """Whether to answer the server's close frame with RST_STREAM CANCEL rather than
        with our close frame (RFC 6455 section 5.5.1 asks for the frame).

        hypercorn (0.18 and before) forgets a WebSocket's stream as soon as its application
        has closed it, and a DATA frame that arrives after that -- the close frame it asked
        for -- fails its whole connection, every other stream with it; a reset it takes in
        its stride. So: a reset for hypercorn (known by its ``server`` header, which it sends
        unless configured not to), the close frame for every other server.
        """
        server = self.response_headers.get("server") or ""
        return server.startswith("hypercorn")

    def _send_final(self, data: bytes) -> None:
        """Send our close frame with END_STREAM on the same DATA frame (RFC 8441 section 5:
        END_STREAM is the orderly end; nothing may follow a close frame anyway).

        One frame, not a close frame and then an empty END_STREAM: hypercorn forgets the
        stream as soon as the closing handshake is over, and a DATA frame after that (even
        an empty one) fails its whole connection. A server that never ends its side after
        the handshake gets its stream reset when the WebSocket's block is left.
        """
        self._close_sent = True
        stream = self._stream
        if self._eof_sent or stream.finished or stream.local_done:
            return
        self._eof_sent = True
        stream.offer(data)  # no checkpoint between: the connection task frames them together
        stream.close_outbound(None)

    # -------------------------------------------------------------- the reader task

    async def _run_reader(self) -> None:
        try:
            with anyio.CancelScope() as self._reader_scope:
                await self._read()
        except H2anyError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug: tell the application rather than hang it
            error = ProtocolError(f"WebSocket on stream {self.stream_id}: {exc!r}")
            error.__cause__ = exc
            self._fail(error)
            self._stream.abandon()
        finally:
            if self._failure is None:
                self._fail(ConnectionClosed("the connection closed under the WebSocket"))
            self._reader_done.set()

    async def _read(self) -> None:
        from wsproto.connection import ConnectionState

        stream = self._stream
        ws = self._ws
        receiving = (ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING)
        while True:
            await self._wait_for_room()
            item = stream.take()
            if item is None:
                # Deadlines do not apply here (an idle WebSocket is fine): a wake-up by
                # the watchdog is only a reason to look again.
                try:
                    await stream.watch(None)
                finally:
                    stream.unwatch()
                continue
            if isinstance(item, Data):
                self._uncredited += item.flow_size
                if item.data and ws.state in receiving:
                    ws.receive_data(item.data)
                    await self._handle_events()
                self._credit()
            elif isinstance(item, Ended):
                if self._failure is None:
                    self._peer_closed(ABNORMAL_CLOSURE, "the stream ended without a close frame")
                return
            elif isinstance(item, Failed):
                error = item.error
                if isinstance(error, H2anyError):
                    self._fail(error)
                else:
                    self._fail(ConnectionClosed(f"the WebSocket's stream failed: {error!r}"))
                return
            elif not isinstance(item, Trailers):
                stream.abandon()
                raise ProtocolError(f"stream {self.stream_id}: a second HEADERS on a WebSocket")
            self._notify()

    async def _handle_events(self) -> None:
        from wsproto.connection import ConnectionState
        from wsproto.events import CloseConnection, Message, Ping, Pong

        ws = self._ws
        for event in ws.events():
            if isinstance(event, Message):
                await self._add_fragment(event.data, event.message_finished)
                # wsproto parses a frame per event: stopping here leaves the rest unparsed.
                await self._wait_for_room()
            elif isinstance(event, Ping):
                if ws.state is ConnectionState.OPEN:
                    async with self._send_lock:
                        if ws.state is ConnectionState.OPEN:
                            await self._write(ws.send(event.response()))
            elif isinstance(event, Pong):
                self._acknowledge(bytes(event.payload))
            elif isinstance(event, CloseConnection):
                if ws.state is ConnectionState.CLOSED:
                    # The answer to our close frame.
                    self._peer_closed(event.code, event.reason or "", remote=False)
                elif ws.state is ConnectionState.REMOTE_CLOSING:
                    if self._answer_close_with_reset():
                        self._stream.abandon()
                    else:
                        async with self._send_lock:
                            self._send_final(ws.send(event.response()))
                    self._peer_closed(event.code, event.reason or "", remote=True)
                else:
                    # wsproto could not parse what arrived (bad frame, bad UTF-8): close
                    # with its code, and read no more.
                    await self._start_close(event.code, event.reason or "")
                    self._fail(
                        ProtocolError(
                            f"WebSocket on stream {self.stream_id}: the server broke the "
                            f"WebSocket protocol ({event.code}: {event.reason})"
                        )
                    )
                    self.close_code, self.close_reason = ABNORMAL_CLOSURE, event.reason or ""
                return

    async def _wait_for_room(self) -> None:
        """Whole messages pile up unread: parse no further until the application takes
        some (what arrives meanwhile stays unparsed, within the stream window)."""
        while self._buffered >= QUEUE_LIMIT and self._failure is None:
            self._room = room = anyio.Event()
            await room.wait()

    async def _add_fragment(self, data: str | bytes | bytearray, finished: bool) -> None:
        if self._discarding:
            self._discarding = not finished
            return
        if isinstance(data, str):
            size = len(data) if data.isascii() else len(data.encode("utf-8"))
        else:
            size = len(data)
        self._partial_size += size
        if self._partial_size > self._max_message_size:
            self._partial = None
            self._partial_size = 0
            self._discarding = not finished
            await self._start_close(MESSAGE_TOO_BIG, "message too big")
            self._fail(WebSocketMessageTooBig(self._max_message_size))
            return
        # One buffer per message, not a list of pieces: a server that sends a message a
        # byte per frame costs no object per byte.
        buffer = self._partial
        if buffer is None:
            buffer = self._partial = io.StringIO() if isinstance(data, str) else bytearray()
        if isinstance(buffer, io.StringIO):
            buffer.write(str(data))
        elif not isinstance(data, str):
            buffer += data
        if finished:
            message = buffer.getvalue() if isinstance(buffer, io.StringIO) else bytes(buffer)
            # Empty messages are not free: each counts its overhead against the queue.
            size = self._partial_size + MESSAGE_OVERHEAD
            self._messages.append((message, size))
            self._buffered += size
            self._partial = None
            self._partial_size = 0

    async def _start_close(self, code: int, reason: str) -> None:
        """Send a close frame from the reader (a message too big, a broken frame)."""
        from wsproto.connection import ConnectionState
        from wsproto.events import CloseConnection

        async with self._send_lock:
            if self._ws.state is ConnectionState.OPEN:
                self._send_final(self._ws.send(CloseConnection(code, reason)))

    def _acknowledge(self, payload: bytes) -> None:
        pings = self._pings
        if payload not in pings:
            return  # unsolicited (a heartbeat): RFC 6455 section 5.5.3
        for key in list(pings):
            waiting = pings.pop(key)
            waiting.acknowledged = True
            waiting.event.set()
            if key == payload:
                break

    def _peer_closed(self, code: int, reason: str, remote: bool = True) -> None:
        self.close_code, self.close_reason = code, reason
        self._fail(WebSocketClosed(code, reason, remote=remote))

    def _fail(self, error: H2anyError) -> None:
        """The WebSocket is over: ``error`` is what receive() raises after the queue."""
        if self._failure is None:
            self._failure = error
            if self.close_code is None:
                if isinstance(error, WebSocketMessageTooBig):
                    self.close_code, self.close_reason = MESSAGE_TOO_BIG, "message too big"
                elif isinstance(error, WebSocketClosed):
                    self.close_code, self.close_reason = error.code, error.reason
                else:
                    self.close_code, self.close_reason = ABNORMAL_CLOSURE, ""
            for waiting in self._pings.values():
                waiting.event.set()
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    def _credit(self) -> None:
        """Grant what was parsed back to the server, unless whole messages pile up."""
        if self._uncredited and self._buffered < QUEUE_HIGH_WATER:
            size, self._uncredited = self._uncredited, 0
            try:
                self._stream.consumed(size)
            except FlowControlError as exc:
                self._fail(exc)

    # -------------------------------------------------------------- ending

    def _stop(self) -> None:
        if self._failure is None:
            self._fail(WebSocketClosed(ABNORMAL_CLOSURE, "the WebSocket was left", remote=False))
        scope = self._reader_scope
        if scope is not None:
            scope.cancel()

    def statistics(self) -> dict[str, int | float]:
        """What the WebSocket holds in memory: ``queued_messages`` and ``queued_bytes``
        (whole messages not received yet), ``partial_bytes`` (a message arriving),
        ``ungranted_bytes`` (parsed but not granted back to the server's window)."""
        return {
            "queued_messages": len(self._messages),
            "queued_bytes": self._buffered,
            "partial_bytes": self._partial_size,
            "ungranted_bytes": self._uncredited,
        }
