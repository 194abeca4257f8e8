"""h2any.grpc with protobuf messages: ``SerializeToString`` and ``FromString`` plug in as
serializers, as with grpcio (protobuf is a test dependency only; the test is skipped
without it). The message classes are built at run time: no generated code."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from grpc_server import GrpcServerProcess, spawn_grpc_server

from h2any.grpc import Channel

protobuf = pytest.importorskip("google.protobuf")

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # noqa: E402

pytestmark = pytest.mark.anyio


def hello_classes() -> tuple[Any, Any]:
    """``demo.HelloRequest {string name = 1; int32 times = 2;}`` and ``demo.HelloReply``."""
    file = descriptor_pb2.FileDescriptorProto(name="hello_h2any.proto", package="demo")
    request = file.message_type.add(name="HelloRequest")
    request.field.add(name="name", number=1, type=9, label=1)  # string, optional
    request.field.add(name="times", number=2, type=5, label=1)  # int32
    reply = file.message_type.add(name="HelloReply")
    reply.field.add(name="message", number=1, type=9, label=1)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("demo.HelloRequest")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("demo.HelloReply")),
    )


HelloRequest, HelloReply = hello_classes()


@pytest.fixture(scope="module")
def grpc_peer() -> Iterator[GrpcServerProcess]:
    server = spawn_grpc_server()
    try:
        yield server
    finally:
        server.stop()


async def test_protobuf_messages_through_serializers(grpc_peer) -> None:
    with anyio.fail_after(10):
        async with Channel(grpc_peer.url) as channel:
            # The server echoes bytes: a HelloRequest comes back as one.
            say = channel.unary_unary(
                "/pkg.Test/Echo",
                request_serializer=HelloRequest.SerializeToString,
                response_deserializer=HelloRequest.FromString,
            )
            reply = await say(HelloRequest(name="h2any", times=3), timeout=5)
            assert reply.name == "h2any"
            assert reply.times == 3
            chat = channel.stream_stream(
                "/pkg.Test/Chat",
                request_serializer=HelloReply.SerializeToString,
                response_deserializer=HelloReply.FromString,
            )
            messages = [HelloReply(message=f"reply {n}") for n in range(20)]
            assert [m.message async for m in chat(messages)] == [m.message for m in messages]
