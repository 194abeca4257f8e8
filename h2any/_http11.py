"""HTTP/1.1 connections for the [`Client`][h2any.Client], on h11, behind the same stream port.

Theory of operation
===================

An `HTTP11Connection` carries one request at a time over one socket, kept alive between
requests. It plugs into the same `_stream.Stream` port as an HTTP/2 connection: it is the
stream's `Link`, it feeds the stream's inbox with the same typed events (`ResponseHeaders`,
`Data`, `Trailers`, `END`, `Failed`), and moves the stream through the same states, so
[`Response`][h2any.Response] -- reading, decoding, timeouts, ``aclose()`` -- works unchanged,
and the Client's pool and retry loop treat both kinds alike (``open_streams``,
``max_concurrent_streams`` = 1, ``is_closed``, ``aclose``).

Invariants:

* **One owner.** The connection's task (`HTTP11Connection.run`, in the Client's task group) alone
  touches the socket and the ``h11.Connection``; requesting tasks only append to ``pending``
  and set ``wake``. While a request is in flight, the task runs an *exchange*: it writes the
  request head, then reads the response while a child task writes the body (a server may
  answer before it has read the body).
* **Bounded memory, both ways.** A streamed body is read piece by piece (as `_body.py` does for
  HTTP/2) and each piece is written before the next is read. The response is read from the
  socket only while less than ``READ_AHEAD`` bytes of it wait unconsumed in the inbox: the
  stream's ``window`` is a `_ReadAhead` whose ``consumed()`` (called by the reader as it
  consumes) wakes the exchange -- the backpressure HTTP/2 gets from its windows.
* **Deadlines** are the watchdog's, as for HTTP/2: pool while queued, write while the body
  goes out, read after. Writes have their own write timeout.
* **Reuse only when clean.** After the response's end, the connection takes the next request
  only if h11 says both sides are done (keep-alive, the whole body sent). A response the user
  abandons before its end (``aclose()``, a cancelled or timed-out read) closes the connection:
  HTTP/1.1 cannot skip the rest of a body. An idle connection whose socket became readable
  (the server closed it, or sent something unasked) counts as closed.
* **Failure reaches everyone.** Whatever ends the connection fails the stream in flight and every
  queued one with a typed error; a malformed response is a
  [`ProtocolError`][h2any.ProtocolError], a connection closed before the response ended is
  [`ConnectionClosed`][h2any.ConnectionClosed] (which the Client retries once for idempotent
  methods, as for HTTP/2).
"""

from __future__ import annotations

import select
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping
from typing import Any, Final, final

import anyio
import anyio.abc
import h11
from anyio.abc import SocketAttribute

from ._body import BodyTypes, prepare_body
from ._config import Origin, Timeout, TimeoutTypes, as_timeout
from ._deadlines import Signal, Watchdog
from ._exceptions import (
    ConnectionClosed,
    ConnectionTerminated,
    H2anyError,
    ProtocolError,
    WriteTimeout,
    clone_error,
)
from ._flow import StreamWindow
from ._headers import HeaderTypes
from ._request import RequestBuilder
from ._response import Response, receive_response
from ._stream import (
    END,
    HALF_CLOSED_LOCAL,
    OPEN,
    Data,
    ResponseHeaders,
    Stream,
    Trailers,
)
from ._upload import body_length_error

__all__ = ("READ_AHEAD", "HTTP11Connection", "queue_http11_request")

#: How much is read from the socket at a time.
READ_SIZE: Final = 64 * 1024
#: The most response body read from the socket ahead of the application, per response.
READ_AHEAD: Final = 256 * 1024
#: A whole body up to this size goes out in one write with the request head.
SMALL_BODY: Final = 64 * 1024
#: How long closing waits for the connection's task.
CLOSE_TIMEOUT: Final = 5.0

_new_data: Final = tuple.__new__


def _plain_field(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    # HTTP/1.1 has no HPACK table: a sensitive field needs no never-indexed marking.
    return (name, value)


@final
class _ReadAhead(StreamWindow):
    """A stream's ``window`` on HTTP/1.1: counts what is buffered unread, and wakes the exchange
    when the reader has consumed enough for it to read on. Grants nothing (there is no
    flow control in HTTP/1.1)."""

    __slots__ = ("_room", "unread")

    def __init__(self, room: Signal) -> None:  # no manager: nothing is ever granted
        self.unread = 0
        self._room = room

    @property
    def buffered(self) -> int:
        return self.unread

    def consumed(self, size: int) -> int:
        self.unread -= size
        if self.unread < READ_AHEAD:
            self._room.set()
        return 0


@final
class _HTTP11Stream(Stream):
    """A stream of an HTTP/1.1 connection: also its request line and body."""

    __slots__ = ("http_version", "method", "payload", "reason", "source", "target")

    http_version: str  # of the response's status line
    reason: str  # the reason phrase the server sent
    method: bytes
    target: bytes
    payload: bytes | None  # a whole body
    source: AsyncIterator[bytes] | None  # a streamed one


@final
class PendingHTTP11Response:
    """``await`` it for the [`Response`][h2any.Response] (as
    [`PendingResponse`][h2any.PendingResponse] for HTTP/2)."""

    __slots__ = ("_max_decompressed_size", "_stream")

    def __init__(self, stream: _HTTP11Stream, max_decompressed_size: int | None) -> None:
        self._stream = stream
        self._max_decompressed_size = max_decompressed_size

    def __await__(self) -> Generator[Any, None, Response]:
        return self._receive().__await__()

    async def _receive(self) -> Response:
        response = await receive_response(self._stream, self._max_decompressed_size)
        response.http_version = self._stream.http_version
        if self._stream.reason:
            response.reason_phrase = self._stream.reason
        return response


@final
class HTTP11Connection:
    """One HTTP/1.1 connection (h11) to one origin: one request at a time, kept alive.

    Made by the [`Client`][h2any.Client] over a socket it opened (TLS with ALPN ``http/1.1`` or
    none, or plain TCP to a server that does not speak h2c); its task runs in the Client's task
    group. The `_stream.Link` of its streams.
    """

    max_concurrent_streams: Final = 1

    def __init__(
        self,
        origin: Origin,
        socket: anyio.abc.ByteStream,
        *,
        timeout: Timeout,
        headers: HeaderTypes | None = None,
        max_decompressed_size: int | None = None,
        max_header_list_size: int = 64 * 1024,
    ) -> None:
        self.origin = origin
        self.timeout = timeout
        self._socket = socket
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_header_list_size)
        self._requests = RequestBuilder(origin, headers, _plain_field)
        self._max_decompressed_size = max_decompressed_size
        self.watchdog = Watchdog()
        self.pending: deque[_HTTP11Stream] = deque()
        self.current: _HTTP11Stream | None = None
        self.requests_sent = 0
        self.closing = False
        self.error: H2anyError | None = None
        self._wake = Signal()  # a request was queued, or the connection is closing
        self._room = Signal()  # the reader consumed: the exchange may read on
        self._scope: anyio.CancelScope | None = None
        self._exchange_scope: anyio.CancelScope | None = None
        self._writer_error: BaseException | None = None
        self._done: anyio.Event | None = None
        self._closed_by_client = False

    def __repr__(self) -> str:
        state = "closed" if self.closing else "open"
        return f"<h2any HTTP/1.1 connection {self.origin} ({state})>"

    # ------------------------------------------------------------------ for the pool

    @property
    def is_closed(self) -> bool:
        """True once the connection can take no new requests (an idle one whose peer closed
        it, or sent something unasked, included)."""
        if (
            not self.closing
            and self.current is None
            and not self.pending
            and self.requests_sent  # (TLS 1.3 session tickets make a new one readable)
            and self._stale()
        ):
            self._close_soon(ConnectionClosed(f"the server closed the connection to {self.origin}"))
        return self.closing

    @property
    def open_streams(self) -> int:
        """1 while a request is in flight, else 0 -- already once its exchange is over (the
        connection task may still be tidying up after a streamed body: a request queued
        meanwhile goes out next, rather than open another connection)."""
        current = self.current
        return 0 if current is None or current.finished else 1

    def _stale(self) -> bool:
        sock = self._socket.extra(SocketAttribute.raw_socket, None)
        if sock is None or sock.fileno() < 0:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    async def aclose(self) -> None:
        """Close the connection: fail the request in flight and queued ones, close the
        socket. Idempotent; waits (shielded, a few seconds at most) for the task to end."""
        if not self.closing:
            self._closed_by_client = True
            self._close_soon(ConnectionClosed("the connection was closed by the client"))
        if self._done is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(CLOSE_TIMEOUT):
                await self._done.wait()
        else:
            await anyio.aclose_forcefully(self._socket)

    def _close_soon(self, error: H2anyError) -> None:
        if self.error is None:
            self.error = error
        self.closing = True
        if self._scope is not None:
            self._scope.cancel()

    # ------------------------------------------------------------------ the streams' Link

    def post_reset(self, stream: Stream) -> None:
        """The user gave up on ``stream``: dropped if queued; if in flight before the end of its
        response, the connection is closed (the rest of a body cannot be skipped)."""
        if stream is self.current:
            if not stream.remote_done:
                self._writer_error = None
                if self._exchange_scope is not None:
                    self._exchange_scope.cancel()
                self.closing = True
        else:
            try:
                self.pending.remove(stream)  # type: ignore[arg-type]
            except ValueError:
                pass
            stream.terminate()

    def post_flush(self, stream: Stream) -> None:  # request bodies are written by the exchange
        pass

    def post_grant(self, stream: Stream, increment: int) -> None:  # no flow control
        pass

    def slot_report(self) -> str:
        return f"the HTTP/1.1 connection to {self.origin} is busy with another request"

    # ------------------------------------------------------------------ requests

    def queue(
        self,
        method: str,
        url: str,
        headers: HeaderTypes | None,
        body: BodyTypes,
        timeout: TimeoutTypes | None,
        first_in_line: bool = False,
        on_open: Callable[[], None] | None = None,
        expires: float | None = None,
    ) -> PendingHTTP11Response:
        """Check and queue a request; raises InvalidRequest, or ConnectionClosed if the
        connection takes no new requests."""
        prepared = prepare_body(body)
        fields, declared = self._requests.fields(method, url, headers, prepared.length)
        if self.closing:
            raise clone_error(self.error or ConnectionClosed("the connection is closed"))
        chosen = self.timeout if timeout is None else as_timeout(timeout)
        stream = _HTTP11Stream(self, fields, None, prepared.source is not None, chosen)
        if expires is not None:
            stream.expires = expires
        # The body's length, declared or known (a file's): its end goes out at that length.
        stream.declared_length = declared if declared is not None else prepared.length
        stream.on_open = on_open
        stream.payload = prepared.payload
        stream.source = prepared.source
        stream.http_version = "HTTP/1.1"
        stream.reason = ""
        # The request line and Host header from the HTTP/2-style fields.
        stream.method = fields[0][1]
        stream.target = fields[3][1]
        head = [(b"host", fields[2][1]), *fields[4:]]
        if prepared.source is not None and prepared.length is None and declared is None:
            head.append((b"transfer-encoding", b"chunked"))
        stream.headers = head
        if first_in_line:
            self.pending.appendleft(stream)
        else:
            self.pending.append(stream)
        self._wake.set()
        return PendingHTTP11Response(stream, self._max_decompressed_size)

    def _progressed(self, stream: Stream) -> None:
        if stream.event is not None:
            self.watchdog.restart(stream, stream.reader_limit(), stream.expires)

    # ------------------------------------------------------------------ the connection's task

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """The connection's task: serve queued requests one by one until the connection
        closes; then fail what is left and close the socket."""
        self._done = anyio.Event()
        self.watchdog.start()
        try:
            with anyio.CancelScope() as self._scope:
                if self.closing:
                    self._scope.cancel()
                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(self.watchdog.run)
                    task_status.started()
                    try:
                        await self._serve()
                    except Exception as exc:  # never into the Client's task group
                        failure = ConnectionClosed(f"the HTTP/1.1 connection failed: {exc!r}")
                        failure.__cause__ = exc
                        self.error = self.error or failure
                    task_group.cancel_scope.cancel()
        finally:
            self.closing = True
            error = self.error or ConnectionClosed("the connection was closed")
            current = self.current
            if current is not None:
                if not current.remote_done and not current.abandoned:
                    current.fail(clone_error(error))
                current.terminate()
            for stream in self.pending:
                if not stream.abandoned:
                    stream.fail(self._unsent_error(error))
                stream.terminate()
            self.pending.clear()
            self.current = None
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(self._socket)
            self._done.set()

    def _unsent_error(self, error: H2anyError) -> H2anyError:
        """The error for a request queued here that never went out: one the Client sends
        again on another connection, whatever its method (as an HTTP/2 request refused by
        GOAWAY), unless the Client itself closed the connection."""
        if self._closed_by_client:
            return clone_error(error)
        unsent = ConnectionTerminated(0, self.requests_sent, retryable=True)
        unsent.args = (
            f"the HTTP/1.1 connection to {self.origin} closed before this request was sent "
            f"({error}); it may be sent again",
        )
        return unsent

    async def _serve(self) -> None:
        while not self.closing:
            if not self.pending:
                await self._wake.wait()
                continue
            stream = self.pending.popleft()
            if stream.abandoned or stream.finished:
                continue
            if not await self._exchange(stream):
                return

    async def _exchange(self, stream: _HTTP11Stream) -> bool:
        """Send ``stream``'s request and deliver its response; whether the connection can
        take another request."""
        h11_connection = self._h11
        self.current = stream
        self.requests_sent += 1
        window = _ReadAhead(self._room)
        stream.window = window
        stream.stream_id = self.requests_sent
        source = stream.source
        payload = stream.payload
        stream.state = OPEN if source is not None else HALF_CLOSED_LOCAL
        if stream.on_open is not None:
            stream.on_open()
        self._progressed(stream)  # out of the pool stage
        self._writer_error = None
        error: BaseException | None = None
        try:
            with anyio.CancelScope() as self._exchange_scope:
                try:
                    head = h11_connection.send(
                        h11.Request(
                            method=stream.method, target=stream.target, headers=stream.headers
                        )
                    )
                    data: list[bytes] = [head]
                    if source is None:
                        if payload:
                            # The payload itself, not a copy joined to the framing.
                            data += (
                                h11_connection.send_with_data_passthrough(h11.Data(data=payload))
                                or []
                            )
                        data.append(h11_connection.send(h11.EndOfMessage()))
                        if len(payload or b"") <= SMALL_BODY:
                            data = [b"".join(data)]  # one write
                except h11.LocalProtocolError as exc:
                    error = ProtocolError(f"the request could not be sent as HTTP/1.1: {exc}")
                else:
                    try:
                        error = await self._exchange_body(stream, data, source, window)
                    except H2anyError as exc:  # WriteTimeout for the request head
                        error = exc
        finally:
            self._exchange_scope = None
        # (Cancelled from outside, the connection's task fails the stream still current.)
        self.current = None
        if self._writer_error is not None and not stream.remote_done:
            error = self._writer_error
        if (
            error is None
            and stream.remote_done
            and h11_connection.our_state is h11.DONE
            and h11_connection.their_state is h11.DONE
            and not self.closing
        ):
            h11_connection.start_next_cycle()
            return True
        # Not reusable: closed before anybody hears of this stream's end, so that no new
        # request is queued here meanwhile.
        if isinstance(error, H2anyError):
            self.error = error
        self.closing = True
        if error is not None and not stream.remote_done and not stream.abandoned:
            stream.fail(error)
        stream.terminate()
        return False

    async def _exchange_body(
        self,
        stream: _HTTP11Stream,
        head: list[bytes],
        source: AsyncIterator[bytes] | None,
        window: _ReadAhead,
    ) -> BaseException | None:
        """Write the request (its body from a child task when streamed) and read the response;
        the error that ended the exchange, if any."""
        try:
            for piece in head:
                if piece:
                    await self._send(piece)
        except ConnectionClosed as exc:
            if source is not None:
                return exc
            # The server may have answered and closed (a keep-alive connection it timed out
            # answers nothing): the reader tells.
        if source is None:
            stream.ended_locally()
            self._progressed(stream)
            return await self._receive(stream, window)
        stream.pump_done = anyio.Event()
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(self._pump, stream, source, task_group.cancel_scope)
            error = await self._receive(stream, window)
            # The response is over (or failed): the rest of the body is not needed.
            task_group.cancel_scope.cancel()
        return error

    async def _pump(
        self, stream: _HTTP11Stream, source: AsyncIterator[bytes], scope: anyio.CancelScope
    ) -> None:
        """Send a streamed body, piece by piece (each written before the next is read)."""
        h11_connection = self._h11
        declared = stream.declared_length
        sent = 0
        try:
            try:
                async for piece in source:
                    if not piece:
                        continue
                    sent += len(piece)
                    if declared is not None and sent > declared:
                        raise body_length_error(declared, sent)
                    parts = h11_connection.send_with_data_passthrough(h11.Data(data=piece))
                    for part in parts or ():
                        await self._send(part)
                    if sent == declared:
                        # The whole body: end it now (the server may answer at once),
                        # then only check that the source has nothing more.
                        await self._end_body(stream)
                    else:
                        self._progressed(stream)
                if declared is not None and sent != declared:
                    raise body_length_error(declared, sent)
                if declared is None:
                    await self._end_body(stream)
            finally:
                aclose = getattr(source, "aclose", None)
                if aclose is not None:
                    with anyio.CancelScope(shield=True):
                        await aclose()
        except ConnectionClosed:
            return  # the server stopped reading: the reader tells what it answered
        except Exception as exc:  # the body's own errors included: the reader raises them
            self._writer_error = exc
            scope.cancel()
            if self._exchange_scope is not None:
                self._exchange_scope.cancel()
        finally:
            if stream.pump_done is not None:
                stream.pump_done.set()

    async def _end_body(self, stream: _HTTP11Stream) -> None:
        await self._send(self._h11.send(h11.EndOfMessage()))
        stream.ended_locally()
        self._progressed(stream)

    async def _send(self, data: bytes) -> None:
        try:
            with anyio.fail_after(self.timeout.write):
                await self._socket.send(data)
        except TimeoutError:
            raise WriteTimeout(
                f"{self.origin}: the server read nothing for {self.timeout.write} s"
            ) from None
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            error = ConnectionClosed(f"the connection was lost: {exc.__cause__ or exc}")
            raise error from exc

    async def _receive(self, stream: _HTTP11Stream, window: _ReadAhead) -> H2anyError | None:
        """Read the response into ``stream``'s inbox, never more than READ_AHEAD bytes
        ahead of its reader; the error that ended it early, or None at its end."""
        h11_connection = self._h11
        receive = self._socket.receive
        room = self._room
        put = stream.put
        eof = False
        answered = False
        while True:
            try:
                event = h11_connection.next_event()
            except h11.RemoteProtocolError as exc:
                if eof:
                    return ConnectionClosed(
                        f"the server closed the connection before its response was complete ({exc})"
                    )
                return ProtocolError(f"{self.origin} sent a malformed HTTP/1.1 response: {exc}")
            if event is h11.NEED_DATA:
                while window.unread >= READ_AHEAD and not stream.abandoned:
                    await room.wait()
                try:
                    data = await receive(READ_SIZE)
                except anyio.EndOfStream:
                    data = b""
                    eof = True
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
                    return ConnectionClosed(f"the connection was lost: {exc.__cause__ or exc}")
                h11_connection.receive_data(bytes(data))
                continue
            if isinstance(event, h11.Data):
                chunk = event.data
                if chunk:
                    if type(chunk) is not bytes:
                        chunk = bytes(chunk)
                    window.unread += len(chunk)
                    put(_new_data(Data, (chunk, len(chunk))))
            elif isinstance(event, h11.Response):
                answered = True
                stream.http_version = "HTTP/" + event.http_version.decode()
                stream.reason = event.reason.decode("latin-1")
                status = str(event.status_code).encode()
                put(ResponseHeaders([(b":status", status), *event.headers]))
                self._progressed(stream)
            elif isinstance(event, h11.EndOfMessage):
                if event.headers:
                    put(Trailers(list(event.headers)))
                stream.ended_remotely()
                put(END)
                return None
            elif isinstance(event, h11.ConnectionClosed):
                what = "before its response was complete" if answered else "without answering"
                return ConnectionClosed(f"the server closed the connection {what}")
            elif isinstance(event, h11.InformationalResponse):
                continue  # 100 Continue, 103 Early Hints: the final response follows
            else:  # PAUSED cannot come before EndOfMessage
                return ProtocolError(f"{self.origin}: unexpected HTTP/1.1 event {event!r}")


def queue_http11_request(
    connection: HTTP11Connection,
    method: str,
    url: str,
    headers: HeaderTypes | None,
    body: BodyTypes,
    timeout: TimeoutTypes | None,
    *,
    first_in_line: bool = False,
    on_open: Callable[[], None] | None = None,
    expires: float | None = None,
) -> Awaitable[Response]:
    """``queue_request`` of ``_connection.py``, for an HTTP/1.1 connection."""
    return connection.queue(method, url, headers, body, timeout, first_in_line, on_open, expires)


async def start_http11(
    task_group: anyio.abc.TaskGroup,
    origin: Origin,
    socket: anyio.abc.ByteStream,
    options: Mapping[str, Any],
) -> HTTP11Connection:
    """An HTTP/1.1 connection over ``socket``, its task started in ``task_group``; takes the
    Client's connection options (those that apply to HTTP/1.1)."""
    connection = HTTP11Connection(
        origin,
        socket,
        timeout=as_timeout(options.get("timeout", Timeout())),
        headers=options.get("headers"),
        max_decompressed_size=options.get("max_decompressed_size"),
        max_header_list_size=options.get("max_header_list_size", 64 * 1024),
    )
    await task_group.start(connection.run)
    return connection
