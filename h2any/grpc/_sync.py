"""The blocking gRPC channel: [`h2any.grpc.Channel`][h2any.grpc.Channel] in a loop thread of its
own, as ``h2any.sync.grpc.Channel`` (the same calls without ``await``; any number of threads
may share it)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar, final

import anyio
import anyio.abc

from .._options import ConnectOptions, Unpack
from ..sync._portal import LoopHosted, LoopThread, check_not_in_event_loop
from ._call import EOF, CallBase, Deserializer, EOFType, Serializer
from ._channel import DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH, MultiCallableBase
from ._channel import Channel as AsyncChannel
from ._metadata import Metadata, MetadataTypes
from ._status import RpcError, StatusCode

__all__ = (
    "Call",
    "Channel",
    "StreamStreamMultiCallable",
    "StreamUnaryMultiCallable",
    "UnaryStreamMultiCallable",
    "UnaryUnaryMultiCallable",
)

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")


@final
class Channel(LoopHosted):
    """A blocking, thread-safe gRPC channel: [`h2any.grpc.Channel`][h2any.grpc.Channel] run in
    an event-loop thread of its own.

    Takes the same arguments, plus ``backend`` (``"asyncio"`` or ``"trio"``) and
    ``backend_options`` for the loop thread. Use it as a context manager, or call
    ``close()``. Calls block the calling thread; calling them from inside a running event
    loop raises ``RuntimeError``.
    """

    def __init__(
        self,
        target: str,
        *,
        max_receive_message_length: int | None = DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH,
        max_send_message_length: int | None = None,
        compression: str | None = None,
        metadata: MetadataTypes | None = None,
        backend: str = "asyncio",
        backend_options: dict[str, Any] | None = None,
        **options: Unpack[ConnectOptions],
    ) -> None:
        check_not_in_event_loop("h2any.sync.grpc.Channel()")
        self._closed = True
        channel = AsyncChannel(  # checks the options in this thread
            target,
            max_receive_message_length=max_receive_message_length,
            max_send_message_length=max_send_message_length,
            compression=compression,
            metadata=metadata,
            **options,
        )
        self._channel = channel
        self._stop: anyio.Event | None = None
        self._stopped: anyio.Event | None = None
        self._loop = LoopThread(backend, backend_options)
        try:
            self._loop.start(self._host)
        except BaseException:
            self._loop.stop()
            raise
        self._aclose_hosted = self._aclose
        self._opened()

    async def _host(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        # The async channel is entered and left in this one long-lived task (its task
        # group must be), not in the tasks that serve the calling threads.
        self._stop = anyio.Event()
        self._stopped = anyio.Event()
        try:
            async with self._channel:
                task_status.started()
                await self._stop.wait()
        finally:
            self._stopped.set()

    async def _aclose(self) -> None:
        if self._stop is not None and self._stopped is not None:
            self._stop.set()
            await self._stopped.wait()

    def __repr__(self) -> str:
        return f"<h2any.sync.grpc.Channel {self._channel!r}>"

    def unary_unary(
        self,
        method: str,
        request_serializer: Serializer | None = None,
        response_deserializer: Deserializer | None = None,
    ) -> UnaryUnaryMultiCallable[Any, Any]:
        """A callable for a unary method: ``reply = multicallable(request, timeout=...)``."""
        return UnaryUnaryMultiCallable(
            self._loop,
            self._channel.unary_unary(method, request_serializer, response_deserializer),
        )

    def unary_stream(
        self,
        method: str,
        request_serializer: Serializer | None = None,
        response_deserializer: Deserializer | None = None,
    ) -> UnaryStreamMultiCallable[Any, Any]:
        """A callable for a server-streaming method: ``for reply in multicallable(request)``."""
        return UnaryStreamMultiCallable(
            self._loop,
            self._channel.unary_stream(method, request_serializer, response_deserializer),
        )

    def stream_unary(
        self,
        method: str,
        request_serializer: Serializer | None = None,
        response_deserializer: Deserializer | None = None,
    ) -> StreamUnaryMultiCallable[Any, Any]:
        """A callable for a client-streaming method: ``reply = multicallable(requests)``."""
        return StreamUnaryMultiCallable(
            self._loop,
            self._channel.stream_unary(method, request_serializer, response_deserializer),
        )

    def stream_stream(
        self,
        method: str,
        request_serializer: Serializer | None = None,
        response_deserializer: Deserializer | None = None,
    ) -> StreamStreamMultiCallable[Any, Any]:
        """A callable for a bidirectional method: returns a [`Call`][h2any.sync.grpc.Call] to
        ``write``/``read`` (or iterate)."""
        return StreamStreamMultiCallable(
            self._loop,
            self._channel.stream_stream(method, request_serializer, response_deserializer),
        )


async def _start(multicallable: Any, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
    """Make the async call object in the loop thread (it reads the loop's clock)."""
    return multicallable(*args, **options)


async def _await(awaitable: Any) -> Any:
    return await awaitable


async def _unary(multicallable: Any, request: Any, options: dict[str, Any]) -> Any:
    return await multicallable(request, **options)


@final
class Call(Generic[RequestT, ResponseT]):
    """A streaming call on the blocking channel: `write`, `done_writing`, `read` (or iterate
    over it for the responses), and the call's metadata and status. Thread-safe: one
    thread may write while another reads."""

    def __init__(self, loop: LoopThread, call: CallBase) -> None:
        self._loop = loop
        self._call: Any = call

    def __repr__(self) -> str:
        return f"<h2any.sync.grpc.Call {self._call!r}>"

    def write(self, request: RequestT) -> None:
        """Send one request message (see
        [`StreamStreamCall.write`][h2any.grpc.StreamStreamCall.write])."""
        check_not_in_event_loop("Call.write()")
        self._loop.call(self._call.write, request)

    def done_writing(self) -> None:
        """End the request stream."""
        check_not_in_event_loop("Call.done_writing()")
        self._loop.call(self._call.done_writing)

    def read(self) -> ResponseT | EOFType:
        """The next response message, or [`EOF`][h2any.grpc.EOF] after the last."""
        check_not_in_event_loop("Call.read()")
        result: ResponseT | EOFType = self._loop.call(self._call.read)
        return result

    def __iter__(self) -> Iterator[ResponseT]:
        while True:
            message = self.read()
            if message is EOF:
                return
            yield message  # type: ignore[misc]

    def initial_metadata(self) -> Metadata:
        """The metadata of the response headers."""
        result: Metadata = self._loop.call(self._call.initial_metadata)
        return result

    def trailing_metadata(self) -> Metadata:
        """The metadata that came with the status, once the call has ended."""
        result: Metadata = self._loop.call(self._call.trailing_metadata)
        return result

    def code(self) -> StatusCode:
        """The call's status code, once it has ended."""
        result: StatusCode = self._loop.call(self._call.code)
        return result

    def details(self) -> str:
        """The status message, once the call has ended."""
        result: str = self._loop.call(self._call.details)
        return result

    def cancel(self) -> bool:
        """Cancel the call (RST_STREAM CANCEL); False if it had already ended."""

        async def cancel() -> bool:
            result: bool = self._call.cancel()
            return result

        return self._loop.call(cancel)

    def _cancel_because(self, details: str) -> None:
        async def cancel() -> None:
            self._call._rpc.cancel(details)

        self._loop.call(cancel)

    def done(self) -> bool:
        """True once the call has ended."""
        result: bool = self._call.done()
        return result


class _SyncMultiCallable(Generic[RequestT, ResponseT]):
    __slots__ = ("_loop", "_multicallable")

    def __init__(self, loop: LoopThread, multicallable: MultiCallableBase[Any, Any]) -> None:
        self._loop = loop
        self._multicallable = multicallable

    def __repr__(self) -> str:
        return f"<h2any.sync.grpc.{type(self).__name__} {self._multicallable._method}>"


def _options(
    timeout: float | None, metadata: MetadataTypes | None, compression: str | None
) -> dict[str, Any]:
    return {"timeout": timeout, "metadata": metadata, "compression": compression}


@final
class UnaryUnaryMultiCallable(_SyncMultiCallable[RequestT, ResponseT]):
    """Calls a unary method and blocks for the reply."""

    __slots__ = ()

    def __call__(
        self,
        request: RequestT,
        *,
        timeout: float | None = None,
        metadata: MetadataTypes | None = None,
        compression: str | None = None,
    ) -> ResponseT:
        """Make the call and return the response message.

        Raises:
            RpcError: the call failed.
        """
        check_not_in_event_loop("UnaryUnaryMultiCallable()")
        result: ResponseT = self._loop.call(
            _unary, self._multicallable, request, _options(timeout, metadata, compression)
        )
        return result


@final
class UnaryStreamMultiCallable(_SyncMultiCallable[RequestT, ResponseT]):
    """Calls a server-streaming method; iterate over the returned [`Call`][h2any.sync.grpc.Call]."""

    __slots__ = ()

    def __call__(
        self,
        request: RequestT,
        *,
        timeout: float | None = None,
        metadata: MetadataTypes | None = None,
        compression: str | None = None,
    ) -> Call[RequestT, ResponseT]:
        """Start the call."""
        check_not_in_event_loop("UnaryStreamMultiCallable()")
        call = self._loop.call(
            _start, self._multicallable, (request,), _options(timeout, metadata, compression)
        )
        return Call(self._loop, call)


@final
class StreamUnaryMultiCallable(_SyncMultiCallable[RequestT, ResponseT]):
    """Calls a client-streaming method with an iterable of requests and blocks for the reply."""

    __slots__ = ()

    def __call__(
        self,
        request_iterator: Iterable[RequestT],
        *,
        timeout: float | None = None,
        metadata: MetadataTypes | None = None,
        compression: str | None = None,
    ) -> ResponseT:
        """Send every request of ``request_iterator`` (iterated in the calling thread), end
        the request stream and return the response message.

        Raises:
            RpcError: the call failed.
        """
        check_not_in_event_loop("StreamUnaryMultiCallable()")
        loop = self._loop
        call = loop.call(_start, self._multicallable, (), _options(timeout, metadata, compression))
        try:
            for request in request_iterator:
                loop.call(call.write, request)
            loop.call(call.done_writing)
        except RpcError:
            pass  # awaiting the call below raises the call's outcome
        except BaseException:
            Call(loop, call).cancel()
            raise
        result: ResponseT = loop.call(_await, call)
        return result


@final
class StreamStreamMultiCallable(_SyncMultiCallable[RequestT, ResponseT]):
    """Calls a bidirectional method: write and read on the returned
    [`Call`][h2any.sync.grpc.Call]."""

    __slots__ = ()

    def __call__(
        self,
        request_iterator: Iterable[RequestT] | None = None,
        *,
        timeout: float | None = None,
        metadata: MetadataTypes | None = None,
        compression: str | None = None,
    ) -> Call[RequestT, ResponseT]:
        """Start the call; one thread may write while another reads. With
        ``request_iterator``, a thread of its own sends its messages and ends the request
        stream (a failure of the iterator cancels the call), as grpcio's does."""
        check_not_in_event_loop("StreamStreamMultiCallable()")
        call = Call[RequestT, ResponseT](
            self._loop,
            self._loop.call(
                _start, self._multicallable, (), _options(timeout, metadata, compression)
            ),
        )
        if request_iterator is not None:
            threading.Thread(
                target=_pump, args=(call, request_iterator), name="grpc-request-pump", daemon=True
            ).start()
        return call


def _pump(call: Call[Any, Any], requests: Iterable[Any]) -> None:
    """Send ``requests`` on ``call`` from a thread of its own."""
    try:
        for request in requests:
            call.write(request)
        call.done_writing()
    except (RpcError, RuntimeError):
        pass  # the call has ended: its reader sees why
    except Exception as exc:
        call._cancel_because(f"the request iterator raised {exc!r}")
