"""h2any.sync.grpc: the blocking channel, from threads, against the grpcio server."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import anyio
import pytest
from grpc_server import FAIL_DETAILS, GrpcServerProcess, spawn_grpc_server

import h2any.sync.grpc
from h2any.sync.grpc import EOF, Channel, RpcError, StatusCode


@pytest.fixture(scope="module")
def grpc_peer() -> Iterator[GrpcServerProcess]:
    server = spawn_grpc_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_the_four_call_kinds_without_await(grpc_peer, backend) -> None:
    with Channel(grpc_peer.url, backend=backend) as channel:
        assert channel.unary_unary("/pkg.Test/Echo")(b"hi", timeout=5) == b"hi"
        count = channel.unary_stream("/pkg.Test/Count", response_deserializer=int)
        assert list(count(b"4", timeout=5)) == [0, 1, 2, 3]
        total = channel.stream_unary("/pkg.Test/Sum")
        assert total(iter([b"ab", b"cde"]), timeout=5) == b"2 5"
        call = channel.stream_stream("/pkg.Test/Chat")(timeout=5)
        for n in range(10):
            call.write(str(n).encode())
            assert call.read() == str(n).encode()
        call.done_writing()
        assert call.read() is EOF
        assert call.code() is StatusCode.OK
        words = [f"w{n}".encode() for n in range(50)]
        assert list(channel.stream_stream("/pkg.Test/Chat")(iter(words))) == words


def test_metadata_and_errors(grpc_peer, backend) -> None:
    with Channel(grpc_peer.url, backend=backend) as channel:
        call = channel.unary_stream("/pkg.Test/Count")(b"1", metadata=[("x-id", "sync")])
        assert list(call) == [b"0"]
        assert call.trailing_metadata() == ()
        with pytest.raises(RpcError) as failed:
            channel.unary_unary("/pkg.Test/Fail")(b"ALREADY_EXISTS")
        assert failed.value.code() is StatusCode.ALREADY_EXISTS
        assert failed.value.details() == FAIL_DETAILS
        assert failed.value.trailing_metadata()["x-why"] == "asked"
        with pytest.raises(RpcError) as failed:
            channel.unary_unary("/pkg.Test/Slow")(b"", timeout=0.2)
        assert failed.value.code() is StatusCode.DEADLINE_EXCEEDED


def test_one_thread_writes_while_another_reads(grpc_peer) -> None:
    with Channel(grpc_peer.url) as channel:
        call = channel.stream_stream("/pkg.Echo/Chat")(timeout=10)
        messages = [bytes([n]) * 50_000 for n in range(40)]

        def send() -> None:
            for message in messages:
                call.write(message)
            call.done_writing()

        sender = threading.Thread(target=send)
        sender.start()
        assert list(call) == messages
        sender.join(10)


def test_many_threads_share_one_channel(grpc_peer) -> None:
    results: dict[int, bytes] = {}
    with Channel(grpc_peer.url) as channel:
        echo = channel.unary_unary("/pkg.Test/Echo")

        def work(n: int) -> None:
            for i in range(20):
                results[n * 100 + i] = echo(f"{n}/{i}".encode(), timeout=10)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert results == {n * 100 + i: f"{n}/{i}".encode() for n in range(8) for i in range(20)}


def test_a_failing_request_iterator_cancels_the_call(grpc_peer) -> None:
    echoed = threading.Event()

    def requests() -> Iterator[bytes]:
        yield b"one"
        echoed.wait(10)
        raise ValueError("no more")

    with Channel(grpc_peer.url) as channel:
        call = channel.stream_stream("/pkg.Test/SlowStream")(requests(), timeout=10)
        assert call.read() == b"one"
        echoed.set()
        with pytest.raises(RpcError) as failed:
            call.read()
        assert failed.value.code() is StatusCode.CANCELLED
        assert "no more" in failed.value.details()
        with pytest.raises(ValueError, match="no more"):
            channel.stream_unary("/pkg.Test/Sum")(requests(), timeout=10)


def test_refused_inside_an_event_loop(grpc_peer) -> None:
    with Channel(grpc_peer.url) as channel:
        echo = channel.unary_unary("/pkg.Test/Echo")

        async def inside() -> None:
            with pytest.raises(RuntimeError, match="event loop"):
                echo(b"")

        anyio.run(inside)
    assert h2any.sync.grpc.Channel is Channel
