"""Faulty peers (the scripted h2 server): every failure reaches the tasks it affects."""

from __future__ import annotations

import anyio
import h2.events
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from scripted import DATA, SETTINGS, ScriptedPeer, raw_frame, scripted_server

import h2any

pytestmark = pytest.mark.anyio


async def test_abrupt_close_mid_body_fails_the_reader_with_connection_closed() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.respond(request.stream_id, body=b"partial", end=False)
        await peer.close(abort=True)

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            response = await conn.request("GET", "/")
            with pytest.raises(h2any.ConnectionClosed):
                await response.read()
            with pytest.raises(h2any.ConnectionClosed):
                await conn.request("GET", "/again")


async def test_rst_stream_on_one_stream_fails_only_that_stream() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        first = await peer.expect_request()
        second = await peer.expect_request()
        await peer.reset(first.stream_id, ErrorCodes.INTERNAL_ERROR)
        await peer.respond(second.stream_id, body=b"fine")

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            outcome: dict[str, object] = {}

            async def fetch(name: str) -> None:
                try:
                    response = await conn.request("GET", f"/{name}")
                    outcome[name] = await response.read()
                except h2any.StreamReset as exc:
                    outcome[name] = exc

            async with anyio.create_task_group() as tg:
                tg.start_soon(fetch, "first")
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(fetch, "second")
            reset = outcome["first"]
            assert isinstance(reset, h2any.StreamReset)
            assert reset.error_code == ErrorCodes.INTERNAL_ERROR
            assert not reset.retryable
            assert "INTERNAL_ERROR" in str(reset)
            assert outcome["second"] == b"fine"


async def test_refused_stream_is_marked_retryable() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.reset(request.stream_id, ErrorCodes.REFUSED_STREAM)

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            with pytest.raises(h2any.StreamReset) as caught:
                await conn.request("GET", "/")
    assert caught.value.retryable


async def test_goaway_lets_lower_streams_finish_and_fails_higher_ones_as_retryable() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        requests = [await peer.expect_request() for _ in range(3)]
        low, _, high = sorted(r.stream_id for r in requests)
        await peer.goaway(last_stream_id=low + 2)
        await peer.respond(low, body=b"low")
        await peer.respond(low + 2, body=b"middle")
        assert high > low + 2

    results: dict[int, object] = {}

    async def fetch(conn: h2any.Connection, index: int) -> None:
        try:
            response = await conn.request("GET", f"/{index}")
            results[index] = await response.read()
        except h2any.ConnectionTerminated as exc:
            results[index] = exc

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with anyio.create_task_group() as tg:
                for index in range(3):
                    tg.start_soon(fetch, conn, index)
                    await anyio.wait_all_tasks_blocked()
            assert results[0] == b"low"
            assert results[1] == b"middle"
            refused = results[2]
            assert isinstance(refused, h2any.ConnectionTerminated)
            assert refused.retryable
            assert refused.last_stream_id == 3
            with pytest.raises(h2any.ConnectionTerminated) as caught:
                await conn.request("GET", "/after-goaway")
            assert caught.value.retryable
            assert conn.is_closed


async def test_graceful_two_step_goaway_completes_every_stream() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.goaway(last_stream_id=2**31 - 1)
        await peer.ping()  # a round trip between the two GOAWAYs, as RFC 9113 suggests
        await peer.wait_for(lambda e: isinstance(e, h2.events.PingAckReceived))
        await peer.goaway(last_stream_id=request.stream_id)
        await peer.respond(request.stream_id, body=b"done")

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            response = await conn.request("GET", "/")
            assert await response.read() == b"done"


async def test_garbage_bytes_fail_the_connection_with_protocol_error() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        await peer.expect_request()
        await peer.send_raw(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await peer.wait_closed()

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            with pytest.raises(h2any.ProtocolError):
                await conn.request("GET", "/")
            with pytest.raises(h2any.ProtocolError):
                await conn.request("GET", "/again")


async def test_settings_frame_on_a_stream_is_a_protocol_error() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.send_raw(raw_frame(SETTINGS, 0, request.stream_id))
        await peer.wait_closed()

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            with pytest.raises(h2any.ProtocolError):
                await conn.request("GET", "/")


async def test_oversized_frame_length_fails_at_once_instead_of_waiting() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        # A DATA frame header declaring ~4.6 MB (far above our MAX_FRAME_SIZE), then nothing.
        await peer.send_raw(
            b"\x46\x46\x46" + bytes([DATA, 0]) + request.stream_id.to_bytes(4, "big")
        )

    with anyio.fail_after(5):
        async with (
            scripted_server(handler) as server,
            h2any.Connection(server.url, timeout=h2any.Timeout(30)) as conn,
        ):
            with pytest.raises(h2any.ProtocolError) as caught:
                await conn.request("GET", "/")
    assert caught.value.error_code == ErrorCodes.FRAME_SIZE_ERROR


async def test_data_on_an_unknown_stream_is_a_protocol_error() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        await peer.expect_request()
        await peer.send_raw(raw_frame(DATA, 0, 99, b"surprise"))

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            with pytest.raises(h2any.ProtocolError):
                await conn.request("GET", "/")


async def test_connection_loss_reaches_every_waiting_task() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        for _ in range(50):
            await peer.expect_request()
        await peer.close()

    failures: list[BaseException] = []

    async def fetch(conn: h2any.Connection) -> None:
        try:
            await conn.request("GET", "/")
        except h2any.H2anyError as exc:
            failures.append(exc)

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(fetch, conn)
    assert len(failures) == 50
    assert all(type(exc) is h2any.ConnectionClosed for exc in failures)
    assert len({id(exc) for exc in failures}) == 50  # each task got its own exception


async def test_goaway_with_error_fails_open_streams_with_its_code() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.goaway(ErrorCodes.ENHANCE_YOUR_CALM, last_stream_id=0, data=b"slow down")
        assert request.stream_id == 1

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            with pytest.raises(h2any.ConnectionTerminated) as caught:
                await conn.request("GET", "/")
    assert caught.value.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert caught.value.retryable
    assert caught.value.additional_data == b"slow down"


async def test_settings_lowering_max_frame_size_is_honoured_by_uploads() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake({SettingCodes.MAX_FRAME_SIZE: 16384})
        request = await peer.expect_request()
        body = await peer.read_body(request.stream_id)
        sizes = [len(e.data) for e in peer.events if isinstance(e, h2.events.DataReceived)]
        assert max(sizes) <= 16384
        await peer.respond(request.stream_id, body=str(len(body)).encode())

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            response = await conn.request("POST", "/", body=b"y" * 200_000)
            assert await response.read() == b"200000"
