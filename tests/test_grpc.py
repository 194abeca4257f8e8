"""h2any.grpc against a real grpcio server (tests/grpc_server.py, in a process of its own):
the four call kinds, metadata both ways, statuses, deadlines, cancellation seen by the
server, message limits, gzip, TLS, and many calls on one connection."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from grpc_server import FAIL_DETAILS, TRAILER_BINARY, GrpcServerProcess, spawn_grpc_server

import h2any
import h2any.grpc
from h2any.grpc import EOF, Channel, Metadata, RpcError, StatusCode

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def grpc_peer(certs) -> Iterator[GrpcServerProcess]:
    server = spawn_grpc_server(certs.cert_path, certs.key_path)
    try:
        yield server
    finally:
        server.stop()


_ids = iter(range(10**9))


def call_id(name: str) -> str:
    """A fresh id for the server's call log (``Probe``)."""
    return f"{name}-{next(_ids)}"


async def server_saw(channel: Channel, tag: str) -> str:
    """How the server saw the call tagged ``tag`` end: cancelled, finished or unknown."""
    probe = channel.unary_unary("/pkg.Test/Probe")
    return (await probe(tag.encode(), timeout=10)).decode()


async def no_open_streams(conn: h2any.Connection) -> bool:
    """True if no stream is open once the connection task has handled what was queued
    before a PING (resets are posted to it, not sent by the caller)."""
    await conn.ping()
    return conn.open_streams == 0


# -- the four call kinds ------------------------------------------------------------------


async def test_unary_call_returns_the_reply_with_both_metadata(grpc_peer) -> None:
    with anyio.fail_after(10):
        async with Channel(grpc_peer.url) as channel:
            echo = channel.unary_unary("/pkg.Test/Echo")
            call = echo(b"hello", metadata=[("x-id", "1"), ("x-blob-bin", b"\x00\xff")])
            assert await call == b"hello"
            assert await call == b"hello"  # awaiting again gives the same reply
            assert await call.code() is StatusCode.OK
            assert await call.details() == ""
            initial = await call.initial_metadata()
            assert initial["x-id"] == "1"
            assert initial["x-blob-bin"] == b"\x00\xff"
            trailing = await call.trailing_metadata()
            assert trailing.get("x-trailer") == "yes"
            assert trailing.get_all("x-trailer-bin") == [TRAILER_BINARY]
            assert call.done()
            assert not call.cancelled()


async def test_request_metadata_reaches_the_server_with_binary_values(grpc_peer) -> None:
    with anyio.fail_after(10):
        async with Channel(grpc_peer.url, metadata=[("x-channel", "everywhere")]) as channel:
            show = channel.unary_unary(
                "/pkg.Test/Metadata", response_deserializer=lambda data: json.loads(data)
            )
            binary = bytes(range(256))
            reply = await show(
                b"",
                metadata=[("X-Mixed-Case", "lowered"), ("x-bin", binary), ("x-two", "a")],
            )
            seen = reply["metadata"]
            assert ["x-channel", "everywhere"] in seen
            assert ["x-mixed-case", "lowered"] in seen
            assert ["x-bin", {"hex": binary.hex()}] in seen
            assert ["x-two", "a"] in seen
            assert any(key == "user-agent" and "h2any" in value for key, value in seen)


async def test_server_streaming_call_reads_every_message_then_eof(grpc_peer) -> None:
    with anyio.fail_after(10):
        async with Channel(grpc_peer.url) as channel:
            count = channel.unary_stream("/pkg.Test/Count", response_deserializer=int)
            call = count(b"5")
            assert await call.read() == 0
            assert [n async for n in call] == [1, 2, 3, 4]
            assert await call.read() is EOF
            assert await call.code() is StatusCode.OK
            assert [n async for n in count(b"300")] == list(range(300))
            assert [n async for n in count(b"0")] == []


async def test_client_streaming_call_with_writes_and_with_iterators(grpc_peer) -> None:
    with anyio.fail_after(10):
        async with Channel(grpc_peer.url) as channel:
            total = channel.stream_unary("/pkg.Test/Sum")
            call = total()
            for message in [b"a", b"", b"x" * 200_000]:
                await call.write(message)
            await call.done_writing()
            assert await call == b"3 200001"

            async def messages() -> AsyncIterator[bytes]:
                for n in range(100):
                    yield bytes(n)

            assert await total(messages()) == f"100 {sum(range(100))}".encode()
            assert await total(iter([b"ab", b"c"])) == b"2 3"
            assert await total([]) == b"0 0"
            call = total()
            await call.write(b"xyz")
            assert await call == b"1 3"  # awaiting ends the request stream


async def test_bidirectional_ping_pong_answers_each_message_before_the_next(grpc_peer) -> None:
    with anyio.fail_after(10):
        async with Channel(grpc_peer.url) as channel:
            chat = channel.stream_stream("/pkg.Test/Chat")
            call = chat()
            for n in range(50):
                message = f"ping {n}".encode() * (n + 1)
                await call.write(message)
                assert await call.read() == message
            await call.done_writing()
            assert await call.read() is EOF
            assert await call.code() is StatusCode.OK


async def test_bidirectional_call_from_an_iterator_and_async_for(grpc_peer) -> None:
    with anyio.fail_after(10):
        async with Channel(grpc_peer.url) as channel:
            chat = channel.stream_stream(
                "/pkg.Test/Chat",
                request_serializer=str.encode,
                response_deserializer=bytes.decode,
            )
            words = [f"word {n}" for n in range(200)]
            call = chat(iter(words))
            assert [word async for word in call] == words
            with pytest.raises(RuntimeError, match="iterator"):
                await call.write("more")


async def test_sending_and_reading_in_two_tasks(grpc_peer) -> None:
    with anyio.fail_after(10):
        async with Channel(grpc_peer.url) as channel:
            call = channel.stream_stream("/pkg.Echo/Chat")()
            messages = [bytes([n]) * 70_000 for n in range(40)]  # 2.8 MB, past the windows

            async def send() -> None:
                for message in messages:
                    await call.write(message)
                await call.done_writing()

            async with anyio.create_task_group() as tg:
                tg.start_soon(send)
                received = [message async for message in call]
            assert received == messages


# -- statuses and errors ------------------------------------------------------------------


async def test_trailers_only_error_gives_code_details_and_trailing_metadata(grpc_peer) -> None:
    with anyio.fail_after(10):
        async with Channel(grpc_peer.url) as channel:
            fail = channel.unary_unary("/pkg.Test/Fail")
            for code in (StatusCode.NOT_FOUND, StatusCode.PERMISSION_DENIED, StatusCode.INTERNAL):
                call = fail(code.name.encode())
                with pytest.raises(RpcError) as failed:
                    await call
                error = failed.value
                assert isinstance(error, h2any.H2anyError)
                assert error.code() is code
                assert error.details() == FAIL_DETAILS  # percent-decoded UTF-8
                assert error.trailing_metadata()["x-why"] == "asked"
                assert error.trailing_metadata()["x-why-bin"] == TRAILER_BINARY
                assert error.initial_metadata() == ()
                assert await call.code() is code
                assert await call.details() == FAIL_DETAILS
                assert (await call.trailing_metadata()).get("x-why") == "asked"
                with pytest.raises(RpcError):  # awaiting again raises the same
                    await call


async def test_error_after_messages_carries_the_status_in_trailers(grpc_peer) -> None:
    with anyio.fail_after(10):
        async with Channel(grpc_peer.url) as channel:
            call = channel.unary_stream("/pkg.Test/FailAfter")(b"")
            assert await call.read() == b"first"
            with pytest.raises(RpcError) as failed:
                await call.read()
            assert failed.value.code() is StatusCode.DATA_LOSS
            assert failed.value.details() == FAIL_DETAILS
            assert failed.value.trailing_metadata()["x-why"] == "after"
            assert await call.code() is StatusCode.DATA_LOSS
            with pytest.raises(RpcError):
                async for _ in channel.unary_stream("/pkg.Test/FailAfter")(b""):
                    pass


async def test_unknown_method_is_unimplemented(grpc_peer) -> None:
    with anyio.fail_after(10):
        async with Channel(grpc_peer.url) as channel:
            with pytest.raises(RpcError) as failed:
                await channel.unary_unary("/pkg.Test/NoSuchMethod")(b"")
            assert failed.value.code() is StatusCode.UNIMPLEMENTED
            call = channel.stream_stream("/pkg.Nothing/Here")()
            await call.done_writing()
            assert await call.code() is StatusCode.UNIMPLEMENTED


async def test_unreachable_server_is_unavailable() -> None:
    with anyio.fail_after(10):
        async with Channel("http://127.0.0.1:1") as channel:
            with pytest.raises(RpcError) as failed:
                await channel.unary_unary("/pkg.Test/Echo")(b"")
            assert failed.value.code() is StatusCode.UNAVAILABLE
            assert isinstance(failed.value.__cause__, h2any.ConnectError)


async def test_serializer_failures_are_internal_and_reset_nothing_else(grpc_peer) -> None:
    def broken(data: bytes) -> object:
        raise ValueError("not this")

    with anyio.fail_after(10):
        async with Channel(grpc_peer.url) as channel:
            with pytest.raises(RpcError) as failed:
                await channel.unary_unary("/pkg.Test/Echo", response_deserializer=broken)(b"x")
            assert failed.value.code() is StatusCode.INTERNAL
            assert "deserializing" in failed.value.details()
            with pytest.raises(RpcError) as failed:
                await channel.unary_unary("/pkg.Test/Echo", request_serializer=broken)(b"x")
            assert failed.value.code() is StatusCode.INTERNAL
            assert await channel.unary_unary("/pkg.Test/Echo")(b"still fine") == b"still fine"


# -- deadlines and cancellation -------------------------------------------------------------


async def test_deadline_is_deadline_exceeded_and_the_server_stops(grpc_peer) -> None:
    with anyio.fail_after(20):
        async with h2any.Connection(grpc_peer.url) as conn, Channel(conn) as channel:
            tag = call_id("deadline")
            call = channel.stream_stream("/pkg.Test/SlowStream")(
                timeout=1.0, metadata=[("x-id", tag)]
            )
            await call.write(b"first")
            assert await call.read() == b"first"  # the handler is running
            assert 0 < call.time_remaining() <= 1.0
            with pytest.raises(RpcError) as failed:
                await call.read()
            assert failed.value.code() is StatusCode.DEADLINE_EXCEEDED
            assert await call.code() is StatusCode.DEADLINE_EXCEEDED
            with pytest.raises(RpcError) as failed:
                await call.write(b"late")
            assert failed.value.code() is StatusCode.DEADLINE_EXCEEDED
            assert await server_saw(channel, tag) == "cancelled"
            assert await no_open_streams(conn)  # the stream was reset, not left open

            with pytest.raises(RpcError) as failed:
                await channel.unary_unary("/pkg.Test/Slow")(b"", timeout=0.2)
            assert failed.value.code() is StatusCode.DEADLINE_EXCEEDED
            with pytest.raises(RpcError) as failed:
                await channel.unary_unary("/pkg.Test/Echo")(b"", timeout=0)
            assert failed.value.code() is StatusCode.DEADLINE_EXCEEDED


async def test_cancelling_the_calling_task_resets_the_stream_seen_by_the_server(
    grpc_peer,
) -> None:
    with anyio.fail_after(20):
        async with h2any.Connection(grpc_peer.url) as conn, Channel(conn) as channel:
            tag = call_id("cancel")
            call = channel.stream_stream("/pkg.Test/SlowStream")(metadata=[("x-id", tag)])
            with anyio.CancelScope() as scope:
                await call.write(b"first")
                assert await call.read() == b"first"  # the handler is running
                scope.cancel()
                await call.read()
            assert scope.cancelled_caught
            assert call.cancelled()
            assert await call.code() is StatusCode.CANCELLED
            # No deadline was sent: only the client's RST_STREAM can have stopped it.
            assert await server_saw(channel, tag) == "cancelled"
            assert await no_open_streams(conn)
            assert await channel.unary_unary("/pkg.Test/Echo")(b"after") == b"after"


async def test_call_cancel_resets_the_stream(grpc_peer) -> None:
    with anyio.fail_after(20):
        async with Channel(grpc_peer.url) as channel:
            tag = call_id("cancel-method")
            call = channel.stream_stream("/pkg.Test/SlowStream")(metadata=[("x-id", tag)])
            await call.write(b"first")
            assert await call.read() == b"first"
            assert call.cancel()
            assert not call.cancel()  # already ended
            assert call.cancelled()
            with pytest.raises(RpcError) as failed:
                await call.read()
            assert failed.value.code() is StatusCode.CANCELLED
            assert await server_saw(channel, tag) == "cancelled"


async def test_grpc_timeout_header_tells_the_server_the_deadline(grpc_peer) -> None:
    with anyio.fail_after(10):
        async with Channel(grpc_peer.url) as channel:
            show = channel.unary_unary("/pkg.Test/Metadata", response_deserializer=json.loads)
            reply = await show(b"", timeout=5)
            # grpcio takes grpc-timeout as the call's deadline and does not show it.
            assert "grpc-timeout" not in dict(reply["metadata"])


# -- message size limits ---------------------------------------------------------------------


async def test_a_response_over_max_receive_message_length_is_resource_exhausted(
    grpc_peer,
) -> None:
    with anyio.fail_after(20):
        async with h2any.Connection(grpc_peer.url) as conn:
            async with Channel(conn) as channel:
                big = channel.unary_unary("/pkg.Test/Big")
                assert len(await big(str(4 * 1024 * 1024).encode())) == 4 * 1024 * 1024
                with pytest.raises(RpcError) as failed:
                    await big(str(4 * 1024 * 1024 + 1).encode())
                assert failed.value.code() is StatusCode.RESOURCE_EXHAUSTED
                assert "4194305" in failed.value.details()
                assert await no_open_streams(conn)
            async with Channel(conn, max_receive_message_length=1000) as channel:
                big = channel.unary_unary("/pkg.Test/Big")
                assert len(await big(b"1000")) == 1000
                with pytest.raises(RpcError) as failed:
                    await big(b"1001")
                assert failed.value.code() is StatusCode.RESOURCE_EXHAUSTED
            async with Channel(conn, max_receive_message_length=None) as channel:
                big = channel.unary_unary("/pkg.Test/Big")
                assert len(await big(b"5000000")) == 5_000_000


async def test_a_request_over_max_send_message_length_is_not_sent(grpc_peer) -> None:
    with anyio.fail_after(10):
        async with Channel(grpc_peer.url, max_send_message_length=10) as channel:
            echo = channel.unary_unary("/pkg.Test/Echo")
            assert await echo(b"x" * 10) == b"x" * 10
            with pytest.raises(RpcError) as failed:
                await echo(b"x" * 11)
            assert failed.value.code() is StatusCode.RESOURCE_EXHAUSTED
            chat = channel.stream_stream("/pkg.Test/Chat")()
            await chat.write(b"fits")
            with pytest.raises(RpcError):
                await chat.write(b"does not fit")
            assert await chat.code() is StatusCode.RESOURCE_EXHAUSTED


# -- gzip -------------------------------------------------------------------------------------


async def test_gzip_both_ways(grpc_peer) -> None:
    payload = b"compressible " * 10_000
    with anyio.fail_after(10):
        async with Channel(grpc_peer.url, compression="gzip") as channel:
            assert await channel.unary_unary("/pkg.Test/Echo")(payload) == payload
            assert await channel.unary_unary("/pkg.Test/GzipEcho")(payload) == payload
            chat = channel.stream_stream("/pkg.Test/GzipChat")()
            for n in range(5):
                await chat.write(payload[: 1000 * n])
                assert await chat.read() == payload[: 1000 * n]
            await chat.done_writing()
            assert await chat.code() is StatusCode.OK
        async with Channel(grpc_peer.url) as channel:
            gzip_echo = channel.unary_unary("/pkg.Test/GzipEcho")
            assert await gzip_echo(payload, compression="identity") == payload
            assert await gzip_echo(payload, compression="gzip") == payload


async def test_gzip_bomb_is_bounded_by_max_receive_message_length(grpc_peer) -> None:
    with anyio.fail_after(10):
        async with Channel(grpc_peer.url, max_receive_message_length=100_000) as channel:
            gzip_echo = channel.unary_unary("/pkg.Test/GzipEcho")
            # 99,999 bytes of request (under the limit, compressed to ~100 bytes), then a
            # compressed reply that inflates past it.
            assert len(await gzip_echo(bytes(99_999))) == 99_999
            with pytest.raises(RpcError) as failed:
                await gzip_echo(bytes(100_001))
            assert failed.value.code() is StatusCode.RESOURCE_EXHAUSTED


# -- TLS, many calls, protobuf-style serializers ----------------------------------------------


async def test_tls_channel(grpc_peer, certs) -> None:
    with anyio.fail_after(10):
        async with Channel(grpc_peer.tls_url, verify=certs.ca_path) as channel:
            assert await channel.unary_unary("/pkg.Test/Echo")(b"secure") == b"secure"
            assert [m async for m in channel.unary_stream("/pkg.Test/Count")(b"3")] == [
                b"0",
                b"1",
                b"2",
            ]


async def test_500_concurrent_calls_on_one_connection(grpc_peer) -> None:
    with anyio.fail_after(60):
        async with h2any.Connection(grpc_peer.url) as conn, Channel(conn) as channel:
            echo = channel.unary_unary("/pkg.Test/Echo")
            count = channel.unary_stream("/pkg.Test/Count")
            results: dict[int, object] = {}

            async def one(n: int) -> None:
                if n % 5:
                    results[n] = await echo(str(n).encode())
                else:
                    results[n] = [m async for m in count(b"3")]

            async with anyio.create_task_group() as tg:
                for n in range(500):
                    tg.start_soon(one, n)
            for n in range(500):
                expected = [b"0", b"1", b"2"] if n % 5 == 0 else str(n).encode()
                assert results[n] == expected
            assert await no_open_streams(conn)


async def test_the_channel_reconnects_after_its_connection_closed(grpc_peer) -> None:
    with anyio.fail_after(10):
        async with Channel(grpc_peer.url) as channel:
            echo = channel.unary_unary("/pkg.Test/Echo")
            assert await echo(b"one") == b"one"
            first = channel._connection
            assert first is not None
            await first.aclose()
            assert await echo(b"two") == b"two"
            assert channel._connection is not first


async def test_a_closed_user_connection_is_unavailable(grpc_peer) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(grpc_peer.url) as conn, Channel(conn) as channel:
            await conn.aclose()
            with pytest.raises(RpcError) as failed:
                await channel.unary_unary("/pkg.Test/Echo")(b"")
            assert failed.value.code() is StatusCode.UNAVAILABLE


# -- local checks -----------------------------------------------------------------------------


async def test_bad_metadata_is_refused_before_anything_is_sent(grpc_peer) -> None:
    async with Channel(grpc_peer.url) as channel:
        echo = channel.unary_unary("/pkg.Test/Echo")
        for metadata, match in [
            ([("content-type", "text/plain")], "reserved"),
            ([("grpc-timeout", "1S")], "reserved"),
            ([("x-text", "caf\u00e9")], "printable ASCII"),
            ([("x-text", b"bytes")], "-bin"),
            ([("x-data-bin", 5)], "bytes"),
            ([("bad key", "v")], "only ASCII"),
        ]:
            with pytest.raises(h2any.InvalidRequest, match=match):
                echo(b"", metadata=metadata)
        with pytest.raises(h2any.InvalidRequest):
            channel.unary_unary("no-slash")
        with pytest.raises(ValueError, match="compression"):
            echo(b"", compression="brotli")


def test_channel_options_are_checked_at_construction() -> None:
    with pytest.raises(h2any.InvalidRequest):
        Channel("127.0.0.1:50051")
    with pytest.raises(ValueError, match="compression"):
        Channel("http://127.0.0.1:50051", compression="snappy")
    with pytest.raises(ValueError, match="initial_window_size"):
        Channel("http://127.0.0.1:50051", initial_window_size=0)


async def test_a_channel_must_be_entered(grpc_peer) -> None:
    channel = Channel(grpc_peer.url)
    with pytest.raises(RuntimeError, match="async with"):
        channel.unary_unary("/pkg.Test/Echo")(b"")


def test_status_codes_have_grpc_names_and_numbers() -> None:
    import grpc

    for code in grpc.StatusCode:
        number, _ = code.value
        assert StatusCode(number).name == code.name
    assert len(StatusCode) == len(grpc.StatusCode)


def test_metadata_behaves_as_a_sequence_of_pairs() -> None:
    metadata = Metadata(("a", "1"), ("b-bin", b"\x00"), ("a", "2"))
    assert metadata["a"] == "1"
    assert metadata.get_all("a") == ["1", "2"]
    assert metadata.get("missing") is None
    assert "b-bin" in metadata
    assert ("a", "2") in metadata
    assert metadata == [("a", "1"), ("b-bin", b"\x00"), ("a", "2")]
    assert metadata[1] == ("b-bin", b"\x00")
    assert list(metadata) == list(metadata[:])
    assert metadata.keys() == ["a", "b-bin", "a"]
    with pytest.raises(KeyError):
        metadata["missing"]


def test_grpc_timeout_encoding() -> None:
    from h2any.grpc._wire import encode_timeout

    assert encode_timeout(2.0) == "2000000000n" or encode_timeout(2.0) == "2000000u"
    assert encode_timeout(0.0) == "1n"
    assert encode_timeout(1e-9) == "1n"
    assert encode_timeout(0.05) == "50000000n"
    assert encode_timeout(3600.0) == "3600000m"
    assert encode_timeout(10**7) == "10000000S"
    assert encode_timeout(10**9) == "16666667M"
    assert encode_timeout(1e15) == "99999999H"
    for seconds in (0.001, 0.5, 7.25, 86400.0):
        text = encode_timeout(seconds)
        assert len(text) <= 9
        assert text[:-1].isdigit()


# -- less travelled paths -------------------------------------------------------------------


async def test_metadata_and_status_before_reading_the_reply(grpc_peer) -> None:
    with anyio.fail_after(10):
        async with Channel(grpc_peer.url) as channel:
            call = channel.unary_unary("/pkg.Test/Echo")(b"x", metadata=[("x-id", "early")])
            assert "in progress" in repr(call)
            assert (await call.initial_metadata())["x-id"] == "early"
            assert await call == b"x"
            assert "OK" in repr(call)
            call = channel.unary_unary("/pkg.Test/Echo")(b"y")
            assert await call.code() is StatusCode.OK
            assert await call == b"y"
            stream = channel.unary_stream("/pkg.Test/Count")(b"50")
            assert await stream.code() is StatusCode.OK  # the unread messages are dropped
            assert await stream.read() is EOF
            stream = channel.unary_stream("/pkg.Test/Count")(b"1")
            assert await stream.initial_metadata() == ()
            assert [m async for m in stream] == [b"0"]
            failing = channel.unary_unary("/pkg.Test/Fail")(b"ABORTED")
            assert await failing.code() is StatusCode.ABORTED
            assert (await failing.trailing_metadata())["x-why"] == "asked"


async def test_a_failing_async_request_iterator_cancels_the_call(grpc_peer) -> None:
    echoed = anyio.Event()

    async def requests() -> AsyncIterator[bytes]:
        yield b"one"
        await echoed.wait()
        raise ValueError("no more")

    with anyio.fail_after(10):
        async with Channel(grpc_peer.url) as channel:
            call = channel.stream_stream("/pkg.Test/SlowStream")(requests())
            assert await call.read() == b"one"
            echoed.set()
            with pytest.raises(RpcError) as failed:
                await call.read()
            assert failed.value.code() is StatusCode.CANCELLED
            assert "no more" in failed.value.details()
            with pytest.raises(RuntimeError, match="iterator"):
                await call.done_writing()


async def test_a_server_that_fails_while_we_send_gives_its_status(grpc_peer) -> None:
    # grpcio answers with its status (trailers-only) and then resets the stream with
    # NO_ERROR: a write that finds the stream reset reports the server's status.
    with anyio.fail_after(20):
        async with Channel(grpc_peer.url) as channel:
            call = channel.stream_stream("/pkg.Echo/Fail")()
            with pytest.raises(RpcError) as failed:
                await write_repeatedly(call, bytes(65536), 1000)
            assert failed.value.code() is StatusCode.INVALID_ARGUMENT
            assert failed.value.details() == "bad"
            assert await call.code() is StatusCode.INVALID_ARGUMENT


async def write_repeatedly(call: object, message: bytes, times: int) -> None:
    """Write ``message`` up to ``times`` times (until a write fails)."""
    for _ in range(times):
        await call.write(message)  # type: ignore[attr-defined]
