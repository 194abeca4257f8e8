"""A real grpcio server for the test suite, in-process, with no generated code.

Service ``pkg.Echo`` (messages are raw bytes: identity (de)serialisers):

* ``Chat`` (stream-stream) -> echoes each request message as it arrives, then status OK
* ``Fail`` (stream-stream) -> aborts at once with INVALID_ARGUMENT "bad" (a trailers-only
  response: grpc-status travels in the only HEADERS frame)
* ``FailAfterOne`` (stream-stream) -> echoes the first message, then aborts with
  INVALID_ARGUMENT "bad" (grpc-status travels in the trailers)

On the wire each message is length-prefixed: 1 byte compressed flag, 4 bytes big-endian
length, the payload (:func:`frame` and :func:`unframe`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc

__all__ = ["GrpcServer", "frame", "start_grpc_server", "unframe"]

SERVICE = "pkg.Echo"
#: Bytes of the length prefix in front of each gRPC message.
PREFIX = 5


def frame(payload: bytes) -> bytes:
    """One uncompressed gRPC message as it goes on the wire."""
    return struct.pack(">BI", 0, len(payload)) + payload


def unframe(buffer: bytearray) -> bytes | None:
    """Take one complete message off the front of ``buffer``, or None if it has none yet."""
    if len(buffer) < PREFIX:
        return None
    compressed, length = struct.unpack(">BI", buffer[:PREFIX])
    assert compressed == 0, "the test server never compresses"
    if len(buffer) < PREFIX + length:
        return None
    payload = bytes(buffer[PREFIX : PREFIX + length])
    del buffer[: PREFIX + length]
    return payload


def _chat(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    yield from requests


def _fail(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad")
    yield b""  # pragma: no cover  (abort raises)


def _fail_after_one(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    yield next(requests)
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad")


Behaviour = Callable[[Iterator[bytes], grpc.ServicerContext], Iterator[bytes]]


def _handler(behaviour: Behaviour) -> grpc.RpcMethodHandler:
    # No (de)serialisers: grpcio hands the handler raw bytes and sends what it yields as-is.
    return grpc.stream_stream_rpc_method_handler(behaviour)


@dataclass
class GrpcServer:
    """A running grpcio server at ``url`` (h2c, prior knowledge)."""

    server: grpc.Server
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop serving and wait until the server has shut down."""
        self.server.stop(grace=None).wait(10)


def start_grpc_server() -> GrpcServer:
    """Start the ``pkg.Echo`` service on 127.0.0.1 (port 0) in a thread pool."""
    server = grpc.server(ThreadPoolExecutor(max_workers=8, thread_name_prefix="grpc-test"))
    generic = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Chat": _handler(_chat),
            "Fail": _handler(_fail),
            "FailAfterOne": _handler(_fail_after_one),
        },
    )
    server.add_generic_rpc_handlers((generic,))
    port = server.add_insecure_port("127.0.0.1:0")
    if port == 0:
        raise RuntimeError("grpc server could not bind 127.0.0.1")
    server.start()
    return GrpcServer(server, port)
