"""Timeouts: read, write, pool; each raises its own h2any error and resets only its stream."""

from __future__ import annotations

import anyio
import h2.events
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from scripted import ScriptedPeer, scripted_server

import h2any

pytestmark = pytest.mark.anyio


async def test_read_timeout_waiting_for_headers_resets_the_stream(hypercorn_server) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            with pytest.raises(h2any.ReadTimeout) as caught:
                await conn.request(
                    "GET", "/slow-headers?delay=5", timeout=h2any.Timeout(10, read=0.2)
                )
            assert isinstance(caught.value, TimeoutError)
            response = await conn.request("GET", "/status/200")
            assert response.status == 200
            await response.read()
            # The reset was queued before the second request, so it has been sent by now.
            assert conn.open_streams == 0


async def test_read_timeout_mid_body_raises_and_resets_the_stream() -> None:
    reset_codes: list[int] = []
    reset_seen = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.respond(request.stream_id, body=b"first", end=False)
        event = await peer.wait_for(lambda e: isinstance(e, h2.events.StreamReset))
        reset_codes.append(event.error_code)
        reset_seen.set()

    with anyio.fail_after(5):
        async with (
            scripted_server(handler) as server,
            h2any.Connection(server.url, timeout=h2any.Timeout(5, read=0.2)) as conn,
        ):
            response = await conn.request("GET", "/")
            chunks = response.aiter_bytes()
            assert await chunks.__anext__() == b"first"
            with pytest.raises(h2any.ReadTimeout):
                await chunks.__anext__()
            await reset_seen.wait()
    assert reset_codes == [ErrorCodes.CANCEL]


async def test_pool_timeout_when_no_stream_slot_frees() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake({SettingCodes.MAX_CONCURRENT_STREAMS: 1})
        await peer.expect_request()  # never answered: holds the only slot

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with anyio.create_task_group() as tg:
                tg.start_soon(conn.request, "GET", "/holds-the-slot")
                await anyio.wait_all_tasks_blocked()
                with pytest.raises(h2any.PoolTimeout) as caught:
                    await conn.request("GET", "/queued", timeout=h2any.Timeout(5, pool=0.2))
                assert "1 of 1 streams open" in str(caught.value)
                tg.cancel_scope.cancel()


async def test_write_timeout_when_the_peer_never_opens_its_window() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        peer.auto_ack_data = False
        await peer.handshake({SettingCodes.INITIAL_WINDOW_SIZE: 0})
        await peer.expect_request()

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            with pytest.raises(h2any.WriteTimeout):
                await conn.request(
                    "POST", "/", body=b"x" * 1000, timeout=h2any.Timeout(5, write=0.2)
                )
            await conn.ping()  # a round trip after the reset command was queued
            assert conn.open_streams == 0


async def test_ping_times_out_when_the_peer_never_answers() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        await anyio.sleep_forever()  # reads nothing more: PINGs go unanswered

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            with pytest.raises(h2any.ReadTimeout):
                await conn.ping(timeout=0.2)


def test_timeout_accepts_one_value_for_all_and_overrides() -> None:
    timeout = h2any.Timeout(7, pool=None, read=1.5)
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (7, 1.5, 7, None)
    assert h2any.Timeout(None).read is None


async def test_a_shorter_timeout_registered_later_fires_first() -> None:
    # The watchdog sleeps until the earliest deadline it knows; a request that arrives later
    # with an earlier deadline must re-arm it, not wait behind the first one's.
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        await peer.expect_request()
        await peer.expect_request()
        await peer.wait_closed()  # never answers

    failures: list[str] = []
    short_failed = anyio.Event()

    async def request(conn: h2any.Connection, name: str, read: float) -> None:
        with pytest.raises(h2any.ReadTimeout):
            await conn.request("GET", f"/{name}", timeout=h2any.Timeout(10, read=read))
        failures.append(name)
        if name == "short":
            short_failed.set()

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with anyio.create_task_group() as tg:
                tg.start_soon(request, conn, "long", 3.0)
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(request, conn, "short", 0.2)
                with anyio.move_on_after(2.0):  # well before the long one's 3 s
                    await short_failed.wait()
                assert failures == ["short"]
    assert failures == ["short", "long"]


async def test_each_wait_for_body_data_gets_a_fresh_read_timeout() -> None:
    # Data arriving every 0.1 s keeps a 0.5 s read timeout from firing although the whole
    # body takes 0.8 s; the first gap longer than the timeout fires it. (The peer's pacing
    # is the behaviour under test; the 5x margin keeps a loaded CI machine from firing early.)
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.respond(request.stream_id, body=b"", end=False)
        for _ in range(8):
            await anyio.sleep(0.1)  # the slow peer's pacing
            await peer.send_data(request.stream_id, b"x")
        await peer.wait_closed()

    with anyio.fail_after(10):
        async with (
            scripted_server(handler) as server,
            h2any.Connection(server.url, timeout=h2any.Timeout(5, read=0.5)) as conn,
        ):
            response = await conn.request("GET", "/")
            received = b""

            async def read_all() -> None:
                nonlocal received
                async for chunk in response.aiter_bytes():
                    received += chunk

            with pytest.raises(h2any.ReadTimeout):
                await read_all()
            assert received == b"x" * 8
