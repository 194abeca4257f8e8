"""Many tasks on one connection: multiplexing, stream limits, cancellation, slots."""

from __future__ import annotations

import anyio
import h2.events
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from scripted import ScriptedPeer, scripted_server

import h2any

pytestmark = pytest.mark.anyio


async def test_thousands_of_concurrent_requests_all_complete(nghttpd) -> None:
    bodies: list[bytes] = []

    async def fetch(conn: h2any.Connection) -> None:
        response = await conn.request("GET", "/hello.txt")
        bodies.append(await response.read())

    with anyio.fail_after(30):
        async with h2any.Connection(nghttpd.url) as conn:
            async with anyio.create_task_group() as tg:
                for _ in range(3000):
                    tg.start_soon(fetch, conn)
            assert conn.open_streams == 0
    assert bodies == [b"hello, world\n"] * 3000


async def test_peer_max_concurrent_streams_is_respected_by_queueing() -> None:
    observed_max = 0

    async def handler(peer: ScriptedPeer) -> None:
        nonlocal observed_max
        await peer.handshake({SettingCodes.MAX_CONCURRENT_STREAMS: 3})
        open_streams: list[int] = []
        served = 0
        while served < 30:
            # Serve one request only once as many as allowed are open at the same time
            # (or all that are left), so the client's queueing is what limits concurrency.
            while len(open_streams) < min(3, 30 - served):
                open_streams.append((await peer.expect_request()).stream_id)
            observed_max = max(observed_max, len(open_streams))
            stream_id = open_streams.pop(0)
            await peer.respond(stream_id, body=b"ok")
            served += 1

    async def fetch(conn: h2any.Connection) -> None:
        response = await conn.request("GET", "/")
        assert await response.read() == b"ok"

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with anyio.create_task_group() as tg:
                for _ in range(30):
                    tg.start_soon(fetch, conn)
    assert observed_max == 3
    assert conn.max_concurrent_streams == 3


async def test_lowered_max_concurrent_streams_mid_flight_does_not_deadlock() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake({SettingCodes.MAX_CONCURRENT_STREAMS: 10})
        first = [await peer.expect_request() for _ in range(10)]
        peer.h2.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 1})
        await peer.flush()
        await peer.wait_for(lambda e: isinstance(e, h2.events.SettingsAcknowledged))
        for request in first:
            await peer.respond(request.stream_id, body=b"early")
        for _ in range(10):
            request = await peer.expect_request()
            assert len([s for s in peer.h2.streams.values() if s.open]) <= 1
            await peer.respond(request.stream_id, body=b"late")
        # And up again: the queue drains with more in flight.
        peer.h2.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 100})
        await peer.flush()
        rest = [await peer.expect_request() for _ in range(20)]
        for request in rest:
            await peer.respond(request.stream_id, body=b"again")

    results: list[bytes] = []

    async def fetch(conn: h2any.Connection) -> None:
        response = await conn.request("GET", "/")
        results.append(await response.read())

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(fetch, conn)
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(fetch, conn)
    assert sorted(results) == sorted([b"early"] * 10 + [b"late"] * 10 + [b"again"] * 20)


@pytest.mark.parametrize("nowait", [False, True], ids=["request", "request_nowait"])
async def test_cancelled_request_sends_rst_stream_cancel_and_connection_carries_on(
    nowait: bool,
) -> None:
    request_seen = anyio.Event()
    reset_seen: list[int] = []

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        hung = await peer.expect_request()
        request_seen.set()
        event = await peer.wait_for(lambda e: isinstance(e, h2.events.StreamReset))
        assert event.stream_id == hung.stream_id
        reset_seen.append(event.error_code)
        after = await peer.expect_request()
        await peer.respond(after.stream_id, body=b"still fine")

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with anyio.create_task_group() as tg:
                if nowait:
                    # The waiter is whichever task awaits the PendingResponse.
                    pending = conn.request_nowait("GET", "/hangs")

                    async def waiter() -> None:
                        await pending

                    tg.start_soon(waiter)
                else:
                    tg.start_soon(conn.request, "GET", "/hangs")
                await request_seen.wait()
                tg.cancel_scope.cancel()
            response = await conn.request("GET", "/after")
            assert await response.read() == b"still fine"
    assert reset_seen == [ErrorCodes.CANCEL]


async def test_leaving_stream_early_resets_it_and_connection_carries_on(nghttpd) -> None:
    with anyio.fail_after(20):
        async with h2any.Connection(nghttpd.url) as conn:
            for _ in range(50):
                async with conn.stream("GET", "/16m.bin") as response:
                    async for _chunk in response.aiter_bytes():
                        break
            # nghttpd drops connections that answer late DATA with RST_STREAM storms;
            # this one must still work.
            response = await conn.request("GET", "/hello.txt")
            assert await response.read() == b"hello, world\n"
            assert conn.open_streams == 0


async def test_no_slot_leaks_after_1000_cancelled_requests() -> None:
    open_now: set[int] = set()
    changed = anyio.Event()
    rounds_cancelled = 10

    async def handler(peer: ScriptedPeer) -> None:
        nonlocal changed
        await peer.handshake()
        while True:
            for event in await peer.next_events():
                if isinstance(event, h2.events.RequestReceived):
                    open_now.add(event.stream_id)
                elif isinstance(event, h2.events.StreamReset):
                    open_now.discard(event.stream_id)
            changed.set()
            changed = anyio.Event()
            if len(open_now) == 100 and peer.h2.highest_inbound_stream_id > 2 * 100 * 10:
                for stream_id in sorted(open_now):
                    await peer.respond(stream_id, body=b"ok")
                open_now.clear()

    async def wait_until(predicate) -> None:
        while not predicate():
            await changed.wait()

    completed = 0

    async def fetch(conn: h2any.Connection) -> None:
        nonlocal completed
        response = await conn.request("GET", "/")
        assert await response.read() == b"ok"
        completed += 1

    with anyio.fail_after(20):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            for _ in range(rounds_cancelled):
                async with anyio.create_task_group() as tg:
                    for _ in range(100):
                        tg.start_soon(fetch, conn)
                    await wait_until(lambda: len(open_now) == 100)
                    tg.cancel_scope.cancel()
                await wait_until(lambda: not open_now)
            assert conn.open_streams == 0
            async with anyio.create_task_group() as tg:
                for _ in range(100):
                    tg.start_soon(fetch, conn)
    assert completed == 100
