"""Full-duplex streams: ``Connection.open_stream()`` sends and receives at the same time.

Peers: hypercorn's ``POST /echo-chunks`` (echoes each request piece as it arrives, so a
ping-pong only passes when the response is readable while the request is still open), the
scripted h2 server for resets and trailers, and the blocking facade from two threads. The
embedded server (h2any.testing) is not used here: its App sees whole requests only.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import AsyncIterator

import anyio
import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
from anyio.abc import SocketStream
from h2.errors import ErrorCodes
from scripted import ScriptedPeer, scripted_server

import h2any
import h2any.sync

pytestmark = pytest.mark.anyio

ECHO = "/echo-chunks"
ROUNDS = 10
#: An error code no peer here sends by accident.
CALM_DOWN = ErrorCodes.ENHANCE_YOUR_CALM


def message(i: int, size: int = 0) -> bytes:
    """Round ``i``'s request piece: distinct content and (unless ``size``) a distinct length."""
    head = f"round {i}:".encode()
    return head + bytes([65 + i % 26]) * ((size or 100 + 37 * i) - len(head))


async def read_exactly(chunks: AsyncIterator[bytes], size: int) -> bytes:
    """``size`` bytes of the body: the server may cut its DATA frames differently."""
    data = bytearray()
    while len(data) < size:
        data += await anext(chunks)
    return bytes(data)


# -- the peer itself (raw h2, no h2any): /echo-chunks answers before the request ends --------


async def test_peer_echo_chunks_echoes_each_piece_before_the_request_ends(
    hypercorn_server,
) -> None:
    config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    client = h2.connection.H2Connection(config)

    async def events_until(
        sock: SocketStream, wanted: type[h2.events.Event]
    ) -> list[h2.events.Event]:
        seen: list[h2.events.Event] = []
        while not any(isinstance(event, wanted) for event in seen):
            seen += client.receive_data(await sock.receive())
            await sock.send(client.data_to_send())
        return seen

    with anyio.fail_after(5):
        async with await anyio.connect_tcp("127.0.0.1", hypercorn_server.port_h2c) as sock:
            client.initiate_connection()
            client.send_headers(
                1,
                [
                    (b":method", b"POST"),
                    (b":path", ECHO.encode()),
                    (b":scheme", b"http"),
                    (b":authority", b"127.0.0.1"),
                ],
            )
            await sock.send(client.data_to_send())
            seen = await events_until(sock, h2.events.ResponseReceived)
            for i in range(3):
                client.send_data(1, message(i))
                await sock.send(client.data_to_send())
                echoed = b""
                while len(echoed) < len(message(i)):
                    seen = await events_until(sock, h2.events.DataReceived)
                    for event in seen:
                        if isinstance(event, h2.events.DataReceived):
                            client.acknowledge_received_data(event.flow_controlled_length, 1)
                            echoed += event.data
                assert echoed == message(i)
            client.end_stream(1)
            await sock.send(client.data_to_send())
            await events_until(sock, h2.events.StreamEnded)


# -- ping-pong -------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
async def test_echo_ping_pong_cannot_pass_half_duplex(hypercorn_server, certs, tls) -> None:
    url = hypercorn_server.url_tls if tls else hypercorn_server.url_h2c
    with anyio.fail_after(10):
        async with h2any.Connection(url, verify=certs.ca_path if tls else True) as conn:
            async with conn.open_stream("POST", ECHO) as stream:
                await stream.send(message(0))
                response = await stream.response()
                assert response.status == 200
                assert stream.stream_id == response.stream_id == 1
                chunks = response.aiter_bytes()
                assert await read_exactly(chunks, len(message(0))) == message(0)
                for i in range(1, ROUNDS):
                    await stream.send(message(i))
                    assert await read_exactly(chunks, len(message(i))) == message(i)
                await stream.send_eof()
                assert [chunk async for chunk in chunks] == []
                assert response.is_complete


async def test_response_headers_arrive_before_any_request_body(hypercorn_server) -> None:
    with anyio.fail_after(5):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            async with conn.open_stream("POST", ECHO) as stream:
                response = await stream.response()
                assert response.status == 200
                assert stream.stream_id == 1
                await stream.send_eof()
                assert await response.read() == b""


async def test_send_accepts_bytes_bytearray_memoryview_and_str(hypercorn_server) -> None:
    with anyio.fail_after(5):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            async with conn.open_stream("POST", ECHO) as stream:
                await stream.send(b"bytes,")
                await stream.send(bytearray(b"bytearray,"))
                await stream.send(memoryview(b"xmemoryview,")[1:])
                await stream.send("str")
                await stream.send_eof()
                response = await stream.response()
                assert await response.read() == b"bytes,bytearray,memoryview,str"


async def test_stream_id_is_zero_while_the_stream_waits_for_a_slot() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1})
        for _ in range(2):
            request = await peer.expect_request()
            await peer.respond(request.stream_id, end=False)  # the headers at once
            body = await peer.read_body(request.stream_id)
            await peer.send_data(request.stream_id, body.upper(), end=True)

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            await conn.ping()  # the server's SETTINGS (one stream at a time) are in force
            async with conn.open_stream("POST", "/first") as first:
                await first.send(b"first")
                response = await first.response()
                assert first.stream_id == 1
                async with conn.open_stream("POST", "/second") as second:
                    assert second.stream_id == 0  # queued behind the first
                    await second.send(b"second")  # taken, to go out once it opens
                    await second.send_eof()
                    await first.send_eof()
                    assert await response.read() == b"FIRST"
                    assert await (await second.response()).read() == b"SECOND"
                    assert second.stream_id == 3


@pytest.mark.parametrize("api", ["request", "stream"])
async def test_streamed_request_body_keeps_uploading_after_the_response_arrives(
    hypercorn_server, api
) -> None:
    answered = anyio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"first,"
        await answered.wait()  # the rest comes only once the caller holds the response
        yield b"second"

    with anyio.fail_after(5):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            if api == "request":
                response = await conn.request("POST", ECHO, body=body())
                answered.set()
                assert await response.read() == b"first,second"
            else:
                async with conn.stream("POST", ECHO, body=body()) as response:
                    answered.set()
                    assert await response.read() == b"first,second"


# -- request trailers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "trailers",
    [{"x-checksum": "abc123"}, [("x-checksum", "abc123"), ("x-note", "one"), ("x-note", "two")]],
    ids=["mapping", "pairs"],
)
async def test_send_eof_trailers_reach_the_server(trailers) -> None:
    seen: dict[str, object] = {}

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        event = await peer.wait_for(lambda e: isinstance(e, h2.events.TrailersReceived))
        seen["body"] = request.body
        seen["ended"] = request.ended
        seen["trailers"] = event.headers
        await peer.respond(request.stream_id, body=b"ok")

    expected = list(trailers.items()) if isinstance(trailers, dict) else trailers
    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with conn.open_stream("POST", "/upload") as stream:
                await stream.send(b"payload")
                await stream.send_eof(trailers=trailers)
                response = await stream.response()
                assert await response.read() == b"ok"
    assert seen["body"] == b"payload"
    assert seen["ended"] is True
    assert seen["trailers"] == [(k.encode(), v.encode()) for k, v in expected]


# -- leaving early -------------------------------------------------------------------------------


@pytest.mark.parametrize("left", ["request_not_ended", "response_not_read"])
async def test_leaving_open_stream_early_resets_it_with_cancel(left) -> None:
    reset: dict[str, int] = {}
    reset_seen = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        sid = request.stream_id
        # A complete response when the client leaves with its request open; else an open one.
        await peer.respond(sid, body=b"first piece", end=left == "request_not_ended")
        event = await peer.wait_for(
            lambda e: isinstance(e, h2.events.StreamReset) and e.stream_id == sid
        )
        reset["code"] = event.error_code
        reset_seen.set()
        following = await peer.expect_request()
        await peer.respond(following.stream_id, body=b"still serving")

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with conn.open_stream("POST", "/duplex") as stream:
                await stream.send(b"hello")
                response = await stream.response()
                if left == "request_not_ended":
                    assert await response.read() == b"first piece"
                else:
                    await stream.send_eof()
                    assert await read_exactly(response.aiter_bytes(), 11) == b"first piece"
            await reset_seen.wait()
            assert reset["code"] == ErrorCodes.CANCEL
            response = await conn.request("GET", "/next")
            assert await response.read() == b"still serving"


async def test_completed_exchange_leaves_the_block_without_a_reset() -> None:
    seen: dict[str, object] = {}
    checked = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        seen["body"] = await peer.read_body(request.stream_id)
        await peer.respond(request.stream_id, body=b"done", trailers=[("x-t", "1")])
        # The client pings after leaving the block: a reset would have come before the ping.
        await peer.wait_for(lambda e: isinstance(e, h2.events.PingReceived))
        seen["resets"] = dict(peer.resets)
        checked.set()

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with conn.open_stream("POST", "/duplex") as stream:
                await stream.send(b"all of it")
                await stream.send_eof()
                response = await stream.response()
                assert await response.read() == b"done"
                assert response.trailers is not None
                assert response.trailers["x-t"] == "1"
            await conn.ping()
            await checked.wait()
    assert seen == {"body": b"all of it", "resets": {}}


# -- two tasks -------------------------------------------------------------------------------


async def test_one_task_sends_while_another_reads_the_echoes(hypercorn_server) -> None:
    pieces = [message(i, 4096) for i in range(200)]
    expected = b"".join(pieces)  # 800 KiB each way through 64 KiB windows both ways
    received = bytearray()
    with anyio.fail_after(20):
        async with h2any.Connection(
            hypercorn_server.url_h2c, initial_window_size=65535, connection_window_size=65535
        ) as conn:
            async with conn.open_stream("POST", ECHO) as stream:

                async def send_all() -> None:
                    for piece in pieces:
                        await stream.send(piece)
                    await stream.send_eof()

                async def read_all() -> None:
                    response = await stream.response()
                    async for chunk in response.aiter_bytes():
                        received.extend(chunk)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(send_all)
                    tg.start_soon(read_all)
    assert len(received) == len(expected)
    assert hashlib.sha256(received).digest() == hashlib.sha256(expected).digest()


# -- errors ----------------------------------------------------------------------------------


async def test_send_after_send_eof_raises(hypercorn_server) -> None:
    with anyio.fail_after(5):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            async with conn.open_stream("POST", ECHO) as stream:
                await stream.send(b"a")
                await stream.send_eof()
                with pytest.raises((RuntimeError, h2any.H2anyError)):
                    await stream.send(b"b")


async def test_send_is_bounded_and_raises_write_timeout_while_the_window_stays_shut() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        peer.auto_ack_data = False  # the server takes one window's worth, then no more
        await peer.handshake()
        await peer.expect_request()
        following = await peer.expect_request()
        await peer.respond(following.stream_id, body=b"still serving")

    accepted = 0
    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            shut = h2any.Timeout(5, write=0.2)
            async with conn.open_stream("POST", "/upload", timeout=shut) as stream:

                async def send_until_it_fails() -> None:
                    nonlocal accepted
                    while True:
                        await stream.send(b"x" * 4096)
                        accepted += 4096

                with pytest.raises(h2any.WriteTimeout):
                    await send_until_it_fails()
            assert accepted < 4 * 1024 * 1024  # the 64 KiB window and a bounded buffer
            response = await conn.request("GET", "/next")
            assert await response.read() == b"still serving"


async def test_server_reset_reaches_response_and_then_send() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.reset(request.stream_id, CALM_DOWN)
        following = await peer.expect_request()
        await peer.respond(following.stream_id, body=b"still serving")

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with conn.open_stream("POST", "/duplex") as stream:
                with pytest.raises(h2any.StreamReset) as waiting:
                    await stream.response()
                assert waiting.value.error_code == CALM_DOWN
                with pytest.raises(h2any.StreamReset) as sending:
                    await stream.send(b"more")
                assert sending.value.error_code == CALM_DOWN
            response = await conn.request("GET", "/next")
            assert await response.read() == b"still serving"


async def test_server_reset_mid_upload_reaches_the_sending_task_and_response() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        sid = request.stream_id
        await peer.wait_for(lambda e: isinstance(e, h2.events.DataReceived) and e.stream_id == sid)
        await peer.reset(sid, CALM_DOWN)
        following = await peer.expect_request()
        await peer.respond(following.stream_id, body=b"still serving")

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with conn.open_stream("POST", "/duplex") as stream:

                async def send_until_it_fails() -> None:
                    while True:  # the server keeps its windows open: only the reset stops this
                        await stream.send(b"x" * 1024)

                with pytest.raises(h2any.StreamReset) as sending:
                    await send_until_it_fails()
                assert sending.value.error_code == CALM_DOWN
                with pytest.raises(h2any.StreamReset) as waiting:
                    await stream.response()
                assert waiting.value.error_code == CALM_DOWN
            response = await conn.request("GET", "/next")
            assert await response.read() == b"still serving"


# -- the blocking facade, from two threads ---------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_duplex_stream_one_thread_sends_another_reads(hypercorn_server, backend) -> None:
    messages = [message(i) for i in range(ROUNDS)]
    ends = [sum(map(len, messages[: i + 1])) for i in range(ROUNDS)]
    echoed = [threading.Event() for _ in range(ROUNDS)]
    body_ended = threading.Event()
    received = bytearray()
    errors: list[BaseException] = []

    def read_echoes(stream: h2any.sync.DuplexStream) -> None:
        try:
            response = stream.response()
            assert response.status == 200
            for chunk in response.iter_bytes():
                received.extend(chunk)
                for i, end in enumerate(ends):
                    if len(received) >= end:
                        echoed[i].set()
            body_ended.set()
        except BaseException as exc:  # reported by the test's own thread
            errors.append(exc)

    reader: threading.Thread | None = None
    with h2any.sync.Connection(hypercorn_server.url_h2c, backend=backend, timeout=10) as conn:
        try:
            with conn.open_stream("POST", ECHO) as stream:
                reader = threading.Thread(target=read_echoes, args=(stream,), name="echo-reader")
                reader.start()
                for i, piece in enumerate(messages):
                    stream.send(piece)
                    # The next piece goes only once this one came back: half duplex hangs here.
                    assert echoed[i].wait(5), f"no echo of round {i}: {errors!r}"
                stream.send_eof()
                assert body_ended.wait(5), f"the body did not end: {errors!r}"
        finally:
            if reader is not None:
                reader.join(10)  # leaving the block above reset the stream if it failed
    assert reader is not None
    assert not reader.is_alive()
    assert errors == []
    assert bytes(received) == b"".join(messages)
