"""The gRPC channel: one HTTP/2 connection, and the multi-callables that start calls on it."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, Generic, TypeVar, final

import anyio
import anyio.abc

from .._connection import Connection, connect
from .._exceptions import H2anyError, InvalidRequest
from .._options import ConnectOptions, Unpack
from .._version import __version__
from ._call import (
    Deserializer,
    RequestIterableType,
    Rpc,
    Serializer,
    StreamStreamCall,
    StreamUnaryCall,
    UnaryStreamCall,
    UnaryUnaryCall,
    pump_requests,
)
from ._metadata import MetadataTypes, metadata_to_wire
from ._status import RpcError, StatusCode
from ._wire import MAX_MESSAGE_LENGTH, encode_timeout

__all__ = (
    "Channel",
    "StreamStreamMultiCallable",
    "StreamUnaryMultiCallable",
    "UnaryStreamMultiCallable",
    "UnaryUnaryMultiCallable",
)

RequestT = TypeVar("RequestT")
ResponseT = TypeVar("ResponseT")

#: grpcio's default for ``max_receive_message_length``.
DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH = 4 * 1024 * 1024
_COMPRESSIONS = (None, "identity", "gzip")
_USER_AGENT = f"grpc-python-h2any/{__version__}"


def _check_compression(compression: str | None) -> bool:
    if compression not in _COMPRESSIONS:
        raise ValueError(f"compression must be None, 'identity' or 'gzip', not {compression!r}")
    return compression == "gzip"


def _check_limit(name: str, value: int | None) -> int | None:
    if value is None or value < 0:
        return None
    if not isinstance(value, int):
        raise TypeError(f"{name} is an int or None")
    return min(value, MAX_MESSAGE_LENGTH)


@final
class Channel:
    """A gRPC channel over one HTTP/2 connection, shaped like ``grpc.aio.Channel``.

    ``target`` is ``"http://host:port"`` (h2c, prior knowledge), ``"https://host:port"``
    (TLS, ALPN ``h2``), or an open [`Connection`][h2any.Connection] to use (the channel then
    leaves closing it to you). Use the channel as an async context manager; it opens its
    connection at the first call, and opens a new one for a later call if that one was
    closed (a GOAWAY, a lost socket). Calls fail with ``UNAVAILABLE`` if it cannot connect.

    Arguments:
        max_receive_message_length: the largest response message accepted, in bytes
            (4 MiB by default, as grpcio); a larger one fails the call with
            ``RESOURCE_EXHAUSTED`` as soon as its length prefix arrives. ``None`` or a
            negative number: no limit below the wire format's (4 GiB).
        max_send_message_length: the largest request message sent (``None``: no limit);
            a larger one fails the call with ``RESOURCE_EXHAUSTED`` without sending it.
        compression: ``"gzip"`` compresses every request message (``grpc-encoding:
            gzip``) unless a call says otherwise; ``None`` or ``"identity"`` sends them as
            they are. Responses compressed with gzip are accepted either way.
        metadata: metadata sent with every call, before the call's own.
        **connection_options: passed to [`Connection`][h2any.Connection] (``verify``,
            ``cert``, ``timeout`` for connecting, ``keepalive_interval``, ...; typed, as
            [`ConnectionOptions`][h2any.ConnectionOptions] plus ``timeout`` and
            ``headers``).

    Raises:
        ValueError: a bad option (InvalidRequest for a bad target or metadata).
    """

    def __init__(
        self,
        target: str | Connection,
        *,
        max_receive_message_length: int | None = DEFAULT_MAX_RECEIVE_MESSAGE_LENGTH,
        max_send_message_length: int | None = None,
        compression: str | None = None,
        metadata: MetadataTypes | None = None,
        **connection_options: Unpack[ConnectOptions],
    ) -> None:
        if isinstance(target, Connection):
            if connection_options:
                raise TypeError("connection options go to the Connection, not the Channel")
            self._url: str | None = None
            self._connection: Connection | None = target
        else:
            if not isinstance(target, str) or "://" not in target:
                raise InvalidRequest(
                    f"target must be an http:// or https:// URL or a Connection, not {target!r}"
                )
            Connection(target, **connection_options)  # checks the URL and options now
            self._url = target
            self._connection = None
        self._options = connection_options
        self._max_receive = _check_limit("max_receive_message_length", max_receive_message_length)
        self._max_send = _check_limit("max_send_message_length", max_send_message_length)
        self._compress = _check_compression(compression)
        self._headers = [
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("user-agent", _USER_AGENT),
            ("grpc-accept-encoding", "identity,gzip"),
            *metadata_to_wire(metadata),
        ]
        self._task_group: anyio.abc.TaskGroup | None = None
        self._connecting: anyio.Lock | None = None
        self._closed = False

    def __repr__(self) -> str:
        target = self._url if self._url is not None else repr(self._connection)
        return f"<h2any.grpc.Channel {target}>"

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Channel:
        if self._task_group is not None or self._closed:
            raise RuntimeError("this Channel was already used; make a new one")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self._connecting = anyio.Lock()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel: calls still in progress fail, and a connection the channel
        opened is closed (GOAWAY). Idempotent."""
        if self._closed:
            return
        self._closed = True
        task_group = self._task_group
        try:
            if self._url is not None and self._connection is not None:
                with anyio.CancelScope(shield=True):
                    await self._connection.aclose()
        finally:
            if task_group is not None:
                task_group.cancel_scope.cancel()
                await task_group.__aexit__(None, None, None)

    async def _connection_for_call(self) -> Connection:
        """The connection a new call goes on: the open one, or a new one."""
        connection = self._connection
        if connection is not None and not connection.is_closed:
            return connection
        if self._closed or self._task_group is None:
            raise RpcError(
                StatusCode.UNAVAILABLE,
                "the channel is closed" if self._closed else "use the Channel in 'async with'",
            )
        if self._url is None:
            raise RpcError(StatusCode.UNAVAILABLE, "the channel's connection is closed")
        assert self._connecting is not None
        async with self._connecting:
            connection = self._connection
            if connection is None or connection.is_closed:
                try:
                    connection = await connect(self._task_group, self._url, **self._options)
                except H2anyError as exc:
                    raise RpcError(StatusCode.UNAVAILABLE, f"failed to connect: {exc}") from exc
                self._connection = connection
        return connection

    def _start_soon(self, function: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        task_group = self._task_group
        if task_group is not None and not self._closed:
            task_group.start_soon(function)

    # ------------------------------------------------------------------ calls

    def _rpc(
        self,
        method: str,
        timeout: float | None,
        metadata: MetadataTypes | None,
        compression: str | None,
        serializer: Serializer | None,
        deserializer: Deserializer | None,
        default_compress: bool,
    ) -> Rpc:
        if self._task_group is None or self._closed:
            raise RuntimeError("the Channel is not open: use it in 'async with'")
        compress = default_compress if compression is None else _check_compression(compression)
        headers = self._headers  # shared while nothing is added: the core only reads it
        deadline = None
        if timeout is not None or compress or metadata is not None:
            headers = headers.copy()
            if timeout is not None:
                deadline = anyio.current_time() + timeout
                headers.append(("grpc-timeout", encode_timeout(max(timeout, 0.0))))
            if compress:
                headers.append(("grpc-encoding", "gzip"))
            if metadata is not None:
                headers += metadata_to_wire(metadata)
        return Rpc(
            self,
            method,
            headers,
            deadline,
            compress,
            self._max_send,
            self._max_receive,
            serializer,
            deserializer,
        )

    def _pump(self, rpc: Rpc, requests: RequestIterableType) -> None:
        rpc.pumping = True
        assert self._task_group is not None
        self._task_group.start_soon(pump_requests, rpc, requests)

    def unary_unary(
        self,
        method: str,
        request_serializer: Serializer | None = None,
        response_deserializer: Deserializer | None = None,
    ) -> UnaryUnaryMultiCallable[Any, Any]:
        """A callable for the unary method ``method`` (``"/package.Service/Method"``).

        ``request_serializer`` turns a request into bytes (``Message.SerializeToString``),
        ``response_deserializer`` bytes into a response (``Message.FromString``); without
        them messages are bytes.
        """
        return UnaryUnaryMultiCallable(
            self, _check_method(method), request_serializer, response_deserializer
        )

    def unary_stream(
        self,
        method: str,
        request_serializer: Serializer | None = None,
        response_deserializer: Deserializer | None = None,
    ) -> UnaryStreamMultiCallable[Any, Any]:
        """A callable for the server-streaming method ``method``; see `unary_unary`."""
        return UnaryStreamMultiCallable(
            self, _check_method(method), request_serializer, response_deserializer
        )

    def stream_unary(
        self,
        method: str,
        request_serializer: Serializer | None = None,
        response_deserializer: Deserializer | None = None,
    ) -> StreamUnaryMultiCallable[Any, Any]:
        """A callable for the client-streaming method ``method``; see `unary_unary`."""
        return StreamUnaryMultiCallable(
            self, _check_method(method), request_serializer, response_deserializer
        )

    def stream_stream(
        self,
        method: str,
        request_serializer: Serializer | None = None,
        response_deserializer: Deserializer | None = None,
    ) -> StreamStreamMultiCallable[Any, Any]:
        """A callable for the bidirectional-streaming method ``method``; see
        `unary_unary`."""
        return StreamStreamMultiCallable(
            self, _check_method(method), request_serializer, response_deserializer
        )


def _check_method(method: str) -> str:
    if not isinstance(method, str) or not method.startswith("/") or " " in method:
        raise InvalidRequest(f"a gRPC method is '/package.Service/Method', not {method!r}")
    return method


class MultiCallableBase(Generic[RequestT, ResponseT]):
    __slots__ = ("_channel", "_deserializer", "_method", "_serializer")

    def __init__(
        self,
        channel: Channel,
        method: str,
        serializer: Serializer | None,
        deserializer: Deserializer | None,
    ) -> None:
        self._channel = channel
        self._method = method
        self._serializer = serializer
        self._deserializer = deserializer

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._method}>"

    def _rpc(
        self, timeout: float | None, metadata: MetadataTypes | None, compression: str | None
    ) -> Rpc:
        channel = self._channel
        return channel._rpc(
            self._method,
            timeout,
            metadata,
            compression,
            self._serializer,
            self._deserializer,
            channel._compress,
        )


@final
class UnaryUnaryMultiCallable(MultiCallableBase[RequestT, ResponseT]):
    """Calls a unary method: ``reply = await multicallable(request, timeout=...)``."""

    __slots__ = ()

    def __call__(
        self,
        request: RequestT,
        *,
        timeout: float | None = None,
        metadata: MetadataTypes | None = None,
        compression: str | None = None,
    ) -> UnaryUnaryCall[RequestT, ResponseT]:
        """Start a call: ``await`` the returned [`UnaryUnaryCall`][h2any.grpc.UnaryUnaryCall]
        for the response.

        Arguments:
            request: the request message.
            timeout: seconds before the call fails with ``DEADLINE_EXCEEDED`` (sent to
                the server as ``grpc-timeout``); ``None``: no deadline.
            metadata: ``(key, value)`` pairs sent as request headers (``-bin`` keys take
                bytes).
            compression: ``"gzip"`` or ``"identity"`` for this call (default: the
                channel's).

        Raises:
            InvalidRequest: bad metadata.
            RpcError: (when awaited) the call failed.
        """
        return UnaryUnaryCall(self._rpc(timeout, metadata, compression), request)


@final
class UnaryStreamMultiCallable(MultiCallableBase[RequestT, ResponseT]):
    """Calls a server-streaming method: ``async for reply in multicallable(request)``."""

    __slots__ = ()

    def __call__(
        self,
        request: RequestT,
        *,
        timeout: float | None = None,
        metadata: MetadataTypes | None = None,
        compression: str | None = None,
    ) -> UnaryStreamCall[RequestT, ResponseT]:
        """Start a call; read the responses from the returned
        [`UnaryStreamCall`][h2any.grpc.UnaryStreamCall]. Arguments as
        [`UnaryUnaryMultiCallable`][h2any.grpc.UnaryUnaryMultiCallable]."""
        return UnaryStreamCall(self._rpc(timeout, metadata, compression), request)


@final
class StreamUnaryMultiCallable(MultiCallableBase[RequestT, ResponseT]):
    """Calls a client-streaming method: write the requests, then ``await`` the call."""

    __slots__ = ()

    def __call__(
        self,
        request_iterator: RequestIterableType | None = None,
        *,
        timeout: float | None = None,
        metadata: MetadataTypes | None = None,
        compression: str | None = None,
    ) -> StreamUnaryCall[RequestT, ResponseT]:
        """Start a call. With ``request_iterator`` (an async or plain iterable) its
        messages are sent by a task of the channel's, then the request stream is ended;
        without it, use the call's ``write()`` and ``done_writing()``. Other arguments as
        [`UnaryUnaryMultiCallable`][h2any.grpc.UnaryUnaryMultiCallable]."""
        rpc = self._rpc(timeout, metadata, compression)
        if request_iterator is not None:
            self._channel._pump(rpc, request_iterator)
        return StreamUnaryCall(rpc)


@final
class StreamStreamMultiCallable(MultiCallableBase[RequestT, ResponseT]):
    """Calls a bidirectional-streaming method: write and read on the returned call."""

    __slots__ = ()

    def __call__(
        self,
        request_iterator: RequestIterableType | None = None,
        *,
        timeout: float | None = None,
        metadata: MetadataTypes | None = None,
        compression: str | None = None,
    ) -> StreamStreamCall[RequestT, ResponseT]:
        """Start a call; arguments as
        [`StreamUnaryMultiCallable`][h2any.grpc.StreamUnaryMultiCallable]."""
        rpc = self._rpc(timeout, metadata, compression)
        if request_iterator is not None:
            self._channel._pump(rpc, request_iterator)
        return StreamStreamCall(rpc)
