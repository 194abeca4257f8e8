"""One gRPC call on one HTTP/2 stream, and the call objects users hold.

Theory of operation
===================

A call is an ``Rpc``: one [`DuplexStream`][h2any.DuplexStream] opened at the call's first
operation (so a channel whose connection was lost opens a new one for it), request
messages sent with ``send`` as they are written, ``send_eof`` for ``done_writing``, and the
response body cut into messages by a `MessageReader` as they are read. Nothing runs
in the background except a request iterator's pump (in the channel's task group): every
operation runs in the task that awaits it.

* **The outcome is decided once.** ``_outcome`` is set by the first thing that ends the
  call: the server's status (trailers, or a trailers-only response), a deadline, a
  cancellation, a broken connection, a bad message. Any later operation, in any task,
  reports that outcome; so the error that a task sees after *another* task reset the
  stream is the reason it was reset, not "the stream was reset".
* **Deadlines** are a cancel scope around each operation (`_run`), with the call's
  absolute deadline: an operation that is waiting when it passes, or the first one
  started after it, ends the call with ``DEADLINE_EXCEEDED`` and resets the stream
  (RST_STREAM ``CANCEL``). ``grpc-timeout`` tells the server the same deadline, so it
  stops too.
* **Cancellation** of the awaiting task resets the stream the same way (the core does it
  as the wait is cancelled; `_abort` makes sure) and the call's outcome is ``CANCELLED``;
  the cancellation itself propagates unchanged.
* **Memory**: each message's length is checked from its prefix before it is taken in
  (``max_receive_message_length``), and the response is granted back to the server's
  window only as it is read, so an unread call holds at most its stream's window.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, Union, final

import anyio
from h2.errors import ErrorCodes

from .._config import Timeout
from .._duplex import DuplexStream
from .._exceptions import (
    ConnectError,
    ConnectionClosed,
    H2anyError,
    InvalidRequest,
    ProtocolError,
    StreamReset,
    TimeoutError,
)
from .._response import Response
from ._metadata import Metadata, metadata_from_wire
from ._status import RpcError, StatusCode
from ._wire import MessageError, MessageReader, encode_message, status_for_http

if TYPE_CHECKING:
    from ._channel import Channel

__all__ = (
    "EOF",
    "RequestIterableType",
    "StreamStreamCall",
    "StreamUnaryCall",
    "UnaryStreamCall",
    "UnaryUnaryCall",
)

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")
T = TypeVar("T")

RequestIterableType = Union[AsyncIterable[Any], Iterable[Any]]
Serializer = Callable[[Any], bytes]
Deserializer = Callable[[bytes], Any]

# The stream's own timeouts are off: a gRPC call has its deadline (or none), and a
# server-streaming call may be quiet for as long as it likes.
NO_STREAM_TIMEOUT = Timeout(None)


@final
class EOFType:
    """The type of [`EOF`][h2any.grpc.EOF]."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "h2any.grpc.EOF"

    def __bool__(self) -> bool:
        return False


#: What ``read()`` returns once the server has sent its last message (as ``grpc.aio.EOF``).
EOF = EOFType()

_RESET_CODES = {
    ErrorCodes.REFUSED_STREAM: StatusCode.UNAVAILABLE,
    ErrorCodes.CANCEL: StatusCode.CANCELLED,
    ErrorCodes.ENHANCE_YOUR_CALM: StatusCode.RESOURCE_EXHAUSTED,
    ErrorCodes.INADEQUATE_SECURITY: StatusCode.PERMISSION_DENIED,
}


def _status_for(error: H2anyError) -> tuple[StatusCode, str]:
    """The status of a call that failed with ``error`` from the layer below."""
    if isinstance(error, StreamReset):
        if error.remote:
            code = _RESET_CODES.get(error.error_code, StatusCode.INTERNAL)  # type: ignore[call-overload]
            return code, f"the server reset the stream: {error}"
        return StatusCode.CANCELLED, str(error)
    if isinstance(error, (ConnectionClosed, ConnectError)):
        return StatusCode.UNAVAILABLE, str(error)
    if isinstance(error, TimeoutError):
        return StatusCode.UNAVAILABLE, str(error)
    if isinstance(error, ProtocolError):
        return StatusCode.INTERNAL, str(error)
    return StatusCode.UNKNOWN, str(error)


def _parse_status(value: bytes | None) -> StatusCode:
    if value is None:
        return StatusCode.UNKNOWN
    try:
        return StatusCode(int(value))
    except ValueError:
        return StatusCode.UNKNOWN


def _decode_message(value: bytes | None) -> str:
    if not value:
        return ""
    from urllib.parse import unquote_to_bytes

    return unquote_to_bytes(value).decode("utf-8", "replace")


def _field(fields: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in fields:
        if key == name:
            return value
    return None


@final
class _ReadLock:
    """One reader of a call's response at a time. Cheaper than an ``anyio.Lock`` when
    nobody else waits, which is nearly always (an uncontended anyio lock costs two
    scheduler round trips, a tenth of a unary call); every holder awaits the stream,
    which is the checkpoint."""

    __slots__ = ("_held", "_released")

    def __init__(self) -> None:
        self._held = False
        self._released: anyio.Event | None = None

    async def __aenter__(self) -> None:
        while self._held:
            released = self._released
            if released is None:
                released = self._released = anyio.Event()
            await released.wait()
        self._held = True

    async def __aexit__(self, *exc_info: object) -> None:
        self._held = False
        released = self._released
        if released is not None:
            self._released = None
            released.set()


class Rpc:
    """The state of one call (see the theory of operation above)."""

    __slots__ = (
        "_channel",
        "_closing",
        "_compress",
        "_deadline",
        "_deserialize",
        "_eof_sent",
        "_headers",
        "_initial",
        "_lock",
        "_max_receive",
        "_max_send",
        "_opening",
        "_outcome",
        "_path",
        "_reader",
        "_response",
        "_serialize",
        "_stream",
        "pumping",
    )

    def __init__(
        self,
        channel: Channel,
        path: str,
        headers: list[tuple[str, str]],
        deadline: float | None,
        compress: bool,
        max_send: int | None,
        max_receive: int | None,
        serialize: Serializer | None,
        deserialize: Deserializer | None,
    ) -> None:
        self._channel = channel
        self._path = path
        self._headers = headers
        self._deadline = deadline
        self._compress = compress
        self._max_send = max_send
        self._max_receive = max_receive
        self._serialize = serialize
        self._deserialize = deserialize
        self._stream: DuplexStream | None = None
        self._opening: anyio.Event | None = None
        self._response: Response | None = None
        self._reader: MessageReader | None = None
        self._initial: Metadata | None = None
        self._outcome: RpcError | None = None  # code OK included
        self._eof_sent = False
        self._closing = False
        self._lock = _ReadLock()  # one reader of the response at a time
        self.pumping = False

    # ------------------------------------------------------------------ outcome

    @property
    def outcome(self) -> RpcError | None:
        return self._outcome

    def _settle(self, outcome: RpcError) -> RpcError:
        """Record the call's outcome, unless one was recorded first; return the one kept."""
        if self._outcome is None:
            self._outcome = outcome
        return self._outcome

    def _fail(self, code: StatusCode, details: str) -> RpcError:
        return self._settle(RpcError(code, details, self._initial, Metadata()))

    def _contradict(self, code: StatusCode, details: str) -> RpcError:
        """The call failed on this side although the server's status may say OK (a
        response that cannot be used): this failure is the outcome."""
        outcome = self._outcome
        if outcome is None or outcome.code() is StatusCode.OK:
            outcome = self._outcome = RpcError(
                code,
                details,
                self._initial,
                Metadata() if outcome is None else outcome.trailing_metadata(),
            )
        return outcome

    def raise_if_failed(self) -> None:
        outcome = self._outcome
        if outcome is not None and outcome.code() is not StatusCode.OK:
            raise outcome

    async def _abort(self) -> None:
        """Reset the stream (RST_STREAM CANCEL) if it is still open."""
        stream = self._stream
        if stream is not None:
            with anyio.CancelScope(shield=True):
                await stream.aclose()

    def cancel(self, details: str) -> bool:
        """Cancel the call from outside any operation (the stream is reset by a task of
        the channel's)."""
        if self._outcome is not None:
            return False
        self._fail(StatusCode.CANCELLED, details)
        stream = self._stream
        if stream is not None:
            self._channel._start_soon(stream.aclose)
        return True

    # ------------------------------------------------------------------ the guard

    async def run(self, operation: Callable[[], Awaitable[T]]) -> T:
        """Run one operation of the call under its deadline, mapping what goes wrong to
        the call's outcome (see the theory of operation)."""
        deadline = self._deadline
        if deadline is None:
            try:
                return await operation()
            except BaseException as exc:
                error = await self._failure(exc)
                if error is exc:
                    raise
                raise error from exc
        if anyio.current_time() >= deadline:
            # Passed already: fail even if the operation would not wait (data buffered).
            await self._abort()
            if self._outcome is None or self._outcome.code() is not StatusCode.OK:
                raise self._fail(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        with anyio.CancelScope(deadline=deadline) as scope:
            try:
                return await operation()
            except BaseException as exc:
                if scope.cancel_called and isinstance(exc, anyio.get_cancelled_exc_class()):
                    await self._abort()
                    raise  # the deadline's: the scope takes it, and we say why below
                error = await self._failure(exc)
                if error is exc:
                    raise
                raise error from exc
        # The deadline passed (the scope took its cancellation).
        error = self._fail(StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded")
        raise error

    async def _failure(self, exc: BaseException) -> BaseException:
        """What to raise for ``exc``, after recording the outcome it means."""
        if isinstance(exc, anyio.get_cancelled_exc_class()):
            await self._abort()
            self._fail(StatusCode.CANCELLED, "Locally cancelled by the calling task")
            return exc
        if isinstance(exc, RpcError):
            if exc.code() is not StatusCode.OK:
                await self._abort()
            return exc
        outcome = self._outcome
        if outcome is not None and outcome.code() is not StatusCode.OK:
            await self._abort()
            return outcome  # why the call ended first (it may be why ``exc`` happened)
        if isinstance(exc, (InvalidRequest, RuntimeError)):
            return exc  # the caller's mistake (metadata, a closed call): not a status
        await self._abort()
        if isinstance(exc, MessageError):
            return self._fail(StatusCode[exc.code_name], exc.details)
        if isinstance(exc, H2anyError):
            return self._fail(*_status_for(exc))
        return exc

    # ------------------------------------------------------------------ the request side

    async def _open(self) -> DuplexStream:
        stream = self._stream
        if stream is not None:
            return stream
        self.raise_if_failed()
        opening = self._opening
        if opening is not None:
            # Another task of this call is connecting (a request pump and a reader).
            await opening.wait()
            if self._stream is None:
                raise self._outcome or RuntimeError("the call failed to start")
            return self._stream
        self._opening = opening = anyio.Event()
        try:
            connection = await self._channel._connection_for_call()
            self.raise_if_failed()  # cancelled while connecting
            stream = self._stream = connection.open_stream(
                "POST", self._path, headers=self._headers, timeout=NO_STREAM_TIMEOUT
            )
        except RpcError as error:
            self._settle(error)
            raise
        finally:
            opening.set()
        return stream

    async def write(self, message: Any) -> None:
        """Send one request message."""
        if self._eof_sent:
            raise RuntimeError("write() after done_writing(): the request side is closed")
        self.raise_if_failed()
        if self._outcome is not None:
            raise RuntimeError("write() on a call that has ended")
        try:
            data = message if self._serialize is None else self._serialize(message)
        except Exception as exc:
            await self._abort()
            raise self._fail(
                StatusCode.INTERNAL, f"Exception serializing request: {exc!r}"
            ) from exc
        if not isinstance(data, (bytes, bytearray, memoryview)):
            await self._abort()
            raise self._fail(
                StatusCode.INTERNAL,
                f"a request message must serialize to bytes, not {type(data).__name__}",
            )
        if self._max_send is not None and len(data) > self._max_send:
            await self._abort()
            raise self._fail(
                StatusCode.RESOURCE_EXHAUSTED,
                f"Sent message larger than max ({len(data)} vs. {self._max_send})",
            )
        stream = await self._open()
        try:
            for piece in encode_message(bytes(data), self._compress):
                await stream.send(piece)
        except StreamReset as exc:
            await self._status_after_reset(exc)
            raise

    async def done_writing(self) -> None:
        """End the request side (END_STREAM)."""
        if self._eof_sent:
            return
        self._eof_sent = True
        if self._outcome is not None:
            return
        stream = await self._open()
        try:
            await stream.send_eof()
        except StreamReset as exc:
            await self._status_after_reset(exc)
            raise

    async def _status_after_reset(self, reset: StreamReset) -> None:
        """The server reset the stream while we were sending: if it had answered first
        (a status, usually an error, then RST_STREAM NO_ERROR), that answer is the
        outcome. Otherwise the caller raises the reset."""
        if not reset.remote or self._outcome is not None:
            return
        try:
            async with self._lock:
                await self._receive_headers()
                while self._outcome is None:
                    if await self._next_message() is None:
                        break
        except Exception:
            return  # no answer came before the reset: the caller raises the reset
        self.raise_if_failed()

    # ------------------------------------------------------------------ the response side

    async def _receive_headers(self) -> None:
        if self._response is not None or self._outcome is not None:
            return
        stream = await self._open()
        response = self._response = await stream.response()
        fields = response.headers.raw
        grpc_status = _field(fields, b"grpc-status")
        if response.status != 200 and grpc_status is None:
            raise self._fail(
                StatusCode[status_for_http(response.status)],
                f"Received http2 header with status: {response.status}",
            )
        if grpc_status is not None:
            # Trailers-only: the status, and its metadata, are in the only HEADERS frame.
            self._initial = Metadata()
            self._settle(
                RpcError(
                    _parse_status(grpc_status),
                    _decode_message(_field(fields, b"grpc-message")),
                    self._initial,
                    metadata_from_wire(fields),
                )
            )
            await self._close_stream()
            return
        content_type = _field(fields, b"content-type")
        if content_type is None or not content_type.startswith(b"application/grpc"):
            raise self._fail(
                StatusCode.UNKNOWN,
                f"the server answered with content-type {content_type!r}, not application/grpc",
            )
        self._initial = metadata_from_wire(fields)
        encoding = _field(fields, b"grpc-encoding")
        self._reader = MessageReader(
            response.aiter_bytes(decode_content=False),
            self._max_receive,
            None if encoding is None else encoding.decode("latin-1"),
        )

    async def _next_message(self) -> bytes | None:
        """The next response message, or None once the call has ended (outcome set)."""
        await self._receive_headers()
        reader = self._reader
        if reader is None or self._outcome is not None:
            return None
        data = await reader.next_message()
        if data is None:
            self._finish()
            await self._close_stream()
        return data

    def _finish(self) -> None:
        """The body has ended: the status is in the trailers."""
        response = self._response
        assert response is not None
        trailers = response.trailers
        fields = [] if trailers is None else trailers.raw
        grpc_status = _field(fields, b"grpc-status")
        if grpc_status is None:
            self._fail(StatusCode.INTERNAL, "the server ended the call without a grpc-status")
            return
        self._settle(
            RpcError(
                _parse_status(grpc_status),
                _decode_message(_field(fields, b"grpc-message")),
                self._initial,
                metadata_from_wire(fields),
            )
        )

    async def _close_stream(self) -> None:
        """The call has ended: close its stream (which resets it if the request side is
        still open, as when a server ends a call before the client's ``done_writing``)."""
        stream = self._stream
        if stream is None or self._closing:
            return
        self._closing = True
        response = self._response
        if self._eof_sent and response is not None and response.is_complete:
            return  # both sides have ended: nothing to reset, and no checkpoint to pay
        with anyio.CancelScope(shield=True):
            await stream.aclose()

    def _deserialized(self, data: bytes) -> Any:
        if self._deserialize is None:
            return data
        try:
            return self._deserialize(data)
        except Exception as exc:
            raise self._contradict(
                StatusCode.INTERNAL, f"Exception deserializing response: {exc!r}"
            ) from exc

    async def read(self) -> Any:
        """The next response message, or ``EOF`` once the call ended with OK."""
        async with self._lock:
            data = await self._next_message()
        if data is None:
            self.raise_if_failed()
            return EOF
        return self._deserialized(data)

    async def initial_metadata(self) -> Metadata:
        async with self._lock:
            await self._receive_headers()
        return Metadata() if self._initial is None else self._initial

    async def wait_outcome(self) -> RpcError:
        """Read the call to its end (discarding messages nobody read) and return its
        outcome (an ``RpcError`` whose code may be OK)."""
        async with self._lock:
            while self._outcome is None:
                if await self._next_message() is None and self._outcome is None:
                    self._fail(StatusCode.INTERNAL, "the call ended without a status")
        assert self._outcome is not None
        return self._outcome

    async def unary_response(self) -> Any:
        """Read the single response message of a unary-response call, then its status."""
        async with self._lock:
            data = await self._next_message()
            if data is not None:
                extra = await self._next_message()
                if extra is not None:
                    raise self._contradict(
                        StatusCode.INTERNAL, "the server sent more than one response message"
                    )
        self.raise_if_failed()
        if data is None:
            raise self._contradict(StatusCode.INTERNAL, "the server sent no response message")
        return self._deserialized(data)

    async def unary_unary(self, request: Any) -> Any:
        await self.write(request)
        await self.done_writing()
        return await self.unary_response()

    def time_remaining(self) -> float | None:
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - anyio.current_time())


class CallBase:
    """What every call object offers (as grpc.aio's ``Call``)."""

    __slots__ = ("_rpc",)

    def __init__(self, rpc: Rpc) -> None:
        self._rpc = rpc

    def __repr__(self) -> str:
        outcome = self._rpc.outcome
        state = "in progress" if outcome is None else outcome.code().name
        return f"<{type(self).__name__} {self._rpc._path} {state}>"

    async def initial_metadata(self) -> Metadata:
        """The metadata of the response headers, once they arrive (empty for a
        trailers-only response)."""
        rpc = self._rpc
        return await rpc.run(rpc.initial_metadata)

    async def trailing_metadata(self) -> Metadata:
        """The metadata that came with the status, once the call has ended (response
        messages not read by then are discarded)."""
        return (await self._outcome()).trailing_metadata()

    async def code(self) -> StatusCode:
        """The call's [`StatusCode`][h2any.grpc.StatusCode], once it has ended (response
        messages not read by then are discarded)."""
        return (await self._outcome()).code()

    async def details(self) -> str:
        """The status message, once the call has ended."""
        return (await self._outcome()).details()

    async def _outcome(self) -> RpcError:
        rpc = self._rpc
        outcome = rpc.outcome
        if outcome is not None:
            return outcome
        try:
            return await rpc.run(rpc.wait_outcome)
        except RpcError as error:
            return error

    def cancel(self) -> bool:
        """Cancel the call: its outcome becomes ``CANCELLED`` and the stream is reset
        (RST_STREAM CANCEL). Returns False if the call had already ended."""
        return self._rpc.cancel("Locally cancelled by application!")

    def cancelled(self) -> bool:
        """True if the call ended as ``CANCELLED``."""
        outcome = self._rpc.outcome
        return outcome is not None and outcome.code() is StatusCode.CANCELLED

    def done(self) -> bool:
        """True once the call has ended, whatever its outcome."""
        return self._rpc.outcome is not None

    def time_remaining(self) -> float | None:
        """Seconds left before the deadline (``None``: no deadline)."""
        return self._rpc.time_remaining()


class _ReadMixin(Generic[ResponseT]):
    __slots__ = ()
    _rpc: Rpc

    async def read(self) -> ResponseT | EOFType:
        """The next response message, or [`EOF`][h2any.grpc.EOF] once the server has ended
        the call with ``OK``.

        Raises:
            RpcError: the call failed (its status, the deadline, a message too large, ...).
        """
        rpc = self._rpc
        result: ResponseT | EOFType = await rpc.run(rpc.read)
        return result

    def __aiter__(self) -> AsyncIterator[ResponseT]:
        return _ResponseIterator(self._rpc)


@final
class _ResponseIterator(AsyncIterator[Any]):
    __slots__ = ("_rpc",)

    def __init__(self, rpc: Rpc) -> None:
        self._rpc = rpc

    async def __anext__(self) -> Any:
        rpc = self._rpc
        message = await rpc.run(rpc.read)
        if message is EOF:
            raise StopAsyncIteration
        return message


class _WriteMixin(Generic[RequestT]):
    __slots__ = ()
    _rpc: Rpc

    async def write(self, request: RequestT) -> None:
        """Send one request message; returns once the connection has taken it (flow
        control holds it back while the server's window is shut).

        Raises:
            RpcError: the call has failed.
            RuntimeError: after `done_writing`, or on a call made with a request iterator.
        """
        rpc = self._rpc
        if rpc.pumping:
            raise RuntimeError("write() on a call whose requests come from an iterator")
        await rpc.run(lambda: rpc.write(request))

    async def done_writing(self) -> None:
        """End the request stream (HTTP/2 END_STREAM); calling it again does nothing."""
        rpc = self._rpc
        if rpc.pumping:
            raise RuntimeError("done_writing() on a call whose requests come from an iterator")
        await rpc.run(rpc.done_writing)


@final
class UnaryUnaryCall(CallBase, Generic[RequestT, ResponseT]):
    """A unary call in progress: ``await`` it for the response message.

    Awaiting it again returns the same response (or raises the same
    [`RpcError`][h2any.grpc.RpcError]).
    """

    __slots__ = ("_request", "_result", "_started")

    def __init__(self, rpc: Rpc, request: RequestT) -> None:
        super().__init__(rpc)
        self._request: RequestT | None = request
        self._started = False
        self._result: Any = None

    def __await__(self) -> Generator[Any, None, ResponseT]:
        return self._response().__await__()

    async def _response(self) -> ResponseT:
        rpc = self._rpc
        if not self._started:
            self._started = True
            request, self._request = self._request, None
            self._result = await rpc.run(lambda: rpc.unary_unary(request))
        else:
            await rpc.run(rpc.wait_outcome)
            rpc.raise_if_failed()
        result: ResponseT = self._result
        return result

    async def initial_metadata(self) -> Metadata:
        """The metadata of the response headers (the request is sent first if it has not
        been yet)."""
        await self._send_request()
        return await super().initial_metadata()

    async def _outcome(self) -> RpcError:
        await self._send_request()
        return await super()._outcome()

    async def _send_request(self) -> None:
        rpc = self._rpc
        if not self._started:
            self._started = True
            request, self._request = self._request, None

            async def send_and_read() -> None:
                await rpc.write(request)
                await rpc.done_writing()
                self._result = await rpc.unary_response()

            try:
                await rpc.run(send_and_read)
            except RpcError:
                pass  # kept as the call's outcome


@final
class UnaryStreamCall(_ReadMixin[ResponseT], CallBase, Generic[RequestT, ResponseT]):
    """A server-streaming call in progress: `read` the responses, or ``async for``."""

    __slots__ = ("_request", "_started")

    def __init__(self, rpc: Rpc, request: RequestT) -> None:
        super().__init__(rpc)
        self._request: RequestT | None = request
        self._started = False

    async def _send_request(self) -> None:
        if not self._started:
            self._started = True
            rpc = self._rpc
            request, self._request = self._request, None

            async def send() -> None:
                await rpc.write(request)
                await rpc.done_writing()

            await rpc.run(send)

    async def read(self) -> ResponseT | EOFType:
        """The next response message, or [`EOF`][h2any.grpc.EOF] once the server has ended
        the call with ``OK``.

        Raises:
            RpcError: the call failed (its status, the deadline, a message too large, ...).
        """
        await self._send_request()
        return await super().read()

    def __aiter__(self) -> AsyncIterator[ResponseT]:
        return _SendFirstIterator(self)

    async def initial_metadata(self) -> Metadata:
        """The metadata of the response headers, once they arrive."""
        await self._send_request()
        return await super().initial_metadata()

    async def _outcome(self) -> RpcError:
        try:
            await self._send_request()
        except RpcError as error:
            return error
        return await super()._outcome()


@final
class _SendFirstIterator(AsyncIterator[Any]):
    __slots__ = ("_call",)

    def __init__(self, call: UnaryStreamCall[Any, Any]) -> None:
        self._call = call

    async def __anext__(self) -> Any:
        message = await self._call.read()
        if message is EOF:
            raise StopAsyncIteration
        return message


@final
class StreamUnaryCall(_WriteMixin[RequestT], CallBase, Generic[RequestT, ResponseT]):
    """A client-streaming call in progress: `write` requests, `done_writing`, then
    ``await`` the call for the response (awaiting ends the request stream if
    `done_writing` was not called)."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, ResponseT]:
        return self._response().__await__()

    async def _response(self) -> ResponseT:
        rpc = self._rpc

        async def finish() -> Any:
            if not rpc.pumping:
                await rpc.done_writing()
            return await rpc.unary_response()

        result: ResponseT = await rpc.run(finish)
        return result


@final
class StreamStreamCall(
    _ReadMixin[ResponseT], _WriteMixin[RequestT], CallBase, Generic[RequestT, ResponseT]
):
    """A bidirectional-streaming call in progress: `write` and `read` in any order, from
    one task or two; `done_writing` ends the request stream."""

    __slots__ = ()


async def pump_requests(rpc: Rpc, requests: RequestIterableType) -> None:
    """Send each message of ``requests``, then end the request stream (in the channel's
    task group). A failure of the iterator cancels the call; one of the call ends the pump
    (the call reports it)."""
    try:
        if isinstance(requests, AsyncIterable):
            async for request in requests:
                if rpc.outcome is not None:
                    return
                await rpc.run(lambda: rpc.write(request))  # noqa: B023 - awaited at once
        else:
            for request in requests:
                if rpc.outcome is not None:
                    return
                await rpc.run(lambda: rpc.write(request))  # noqa: B023 - awaited at once
        if rpc.outcome is None:
            await rpc.run(rpc.done_writing)
    except (RpcError, H2anyError, RuntimeError):
        return  # the call's outcome says what happened
    except Exception as exc:
        await rpc._abort()
        rpc._fail(StatusCode.CANCELLED, f"the request iterator raised {exc!r}")
