"""A real grpcio server as a full-duplex peer: length-prefixed messages both ways, trailers.

The server (tests/grpc_server.py) runs in-process in a thread pool; h2any talks to it over
h2c with ``open_stream()`` and frames the messages itself (no gRPC library on the client).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import anyio
import grpc
import pytest
from grpc_server import GrpcServer, frame, start_grpc_server, unframe

import h2any

pytestmark = pytest.mark.anyio

GRPC_HEADERS = {"content-type": "application/grpc", "te": "trailers"}
MESSAGES = [b"hello", b"", b"x" * 70_000, *(f"message {i}".encode() for i in range(7))]


@pytest.fixture(scope="session")
def grpc_server() -> Iterator[GrpcServer]:
    server = start_grpc_server()
    try:
        yield server
    finally:
        server.stop()


async def read_message(chunks: AsyncIterator[bytes], buffer: bytearray) -> bytes:
    """The next whole gRPC message of the response body (messages may span DATA frames)."""
    while (message := unframe(buffer)) is None:
        buffer += await anext(chunks)
    return message


def grpc_status(response: h2any.Response) -> str | None:
    """grpc-status from the trailers, or from the headers of a trailers-only response."""
    if response.trailers is not None and "grpc-status" in response.trailers:
        return response.trailers["grpc-status"]
    return response.headers.get("grpc-status")


def test_grpc_server_answers_a_grpcio_client(grpc_server) -> None:
    """The peer itself, checked with grpcio's own client."""
    with grpc.insecure_channel(f"127.0.0.1:{grpc_server.port}") as channel:
        chat = channel.stream_stream("/pkg.Echo/Chat")
        assert list(chat(iter(MESSAGES), timeout=5)) == MESSAGES
        with pytest.raises(grpc.RpcError) as failed:
            list(channel.stream_stream("/pkg.Echo/Fail")(iter([b"x"]), timeout=5))
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_grpc_bidirectional_chat_answers_each_message_before_the_next(grpc_server) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(grpc_server.url) as conn:
            async with conn.open_stream("POST", "/pkg.Echo/Chat", headers=GRPC_HEADERS) as stream:
                buffer = bytearray()
                await stream.send(frame(MESSAGES[0]))
                response = await stream.response()
                assert response.status == 200
                assert response.headers["content-type"] == "application/grpc"
                chunks = response.aiter_bytes()
                assert await read_message(chunks, buffer) == MESSAGES[0]
                for message in MESSAGES[1:]:
                    await stream.send(frame(message))
                    assert await read_message(chunks, buffer) == message
                await stream.send_eof()
                assert [chunk async for chunk in chunks] == []
                assert buffer == b""
    assert response.trailers is not None
    assert response.trailers["grpc-status"] == "0"


async def test_grpc_server_accepts_request_trailers(grpc_server) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(grpc_server.url) as conn:
            async with conn.open_stream("POST", "/pkg.Echo/Chat", headers=GRPC_HEADERS) as stream:
                await stream.send(frame(b"one"))
                await stream.send_eof(trailers={"x-checksum": "d41d8cd9"})
                response = await stream.response()
                buffer = bytearray(await response.read())
                assert unframe(buffer) == b"one"
                assert buffer == b""
    assert grpc_status(response) == "0"


async def test_grpc_abort_before_any_reply_gives_a_trailers_only_status(grpc_server) -> None:
    # grpcio answers with one HEADERS frame carrying grpc-status (END_STREAM), then resets
    # the stream with NO_ERROR since the request was not finished: the answer must survive.
    with anyio.fail_after(10):
        async with h2any.Connection(grpc_server.url) as conn:
            async with conn.open_stream("POST", "/pkg.Echo/Fail", headers=GRPC_HEADERS) as stream:
                response = await stream.response()
                assert response.status == 200
                assert await response.read() == b""
            assert grpc_status(response) == "3"  # INVALID_ARGUMENT
            assert response.headers.get("grpc-message") == "bad"
            assert await conn.ping() > 0  # the connection is fine


async def test_grpc_abort_after_a_reply_carries_the_status_in_trailers(grpc_server) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(grpc_server.url) as conn:
            async with conn.open_stream(
                "POST", "/pkg.Echo/FailAfterOne", headers=GRPC_HEADERS
            ) as stream:
                await stream.send(frame(b"only one"))
                response = await stream.response()
                buffer = bytearray()
                chunks = response.aiter_bytes()
                assert await read_message(chunks, buffer) == b"only one"
                assert [chunk async for chunk in chunks] == []
            assert response.trailers is not None
            assert response.trailers["grpc-status"] == "3"
            assert response.trailers["grpc-message"] == "bad"
            assert await conn.ping() > 0
