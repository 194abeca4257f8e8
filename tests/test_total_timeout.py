"""``Timeout(total=...)``: one deadline for the whole exchange, whatever its stage.

The per-stage timeouts bound each wait; a server that trickles -- a byte of body every few
milliseconds, each wait well within ``read`` -- never trips them. ``total`` does: it bounds
the exchange from the call to the end of the body, in async code and through the blocking
facade alike, and the error raised is the one of the stage that was running (pool, write,
read), naming the total.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator

import anyio
import anyio.from_thread
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from scripted import ScriptedPeer, scripted_server

import h2any
import h2any.sync

pytestmark = pytest.mark.anyio

LIMIT = 10  # seconds any one test may take
PACE = 0.01  # the trickle's pace (the server's behaviour, not a synchronisation)


async def trickle(peer: ScriptedPeer) -> None:
    """Answer every request with a body that never ends: one byte every ``PACE`` s."""
    await peer.handshake()
    request = await peer.expect_request()
    await peer.respond(request.stream_id, body=b"", end=False)
    while True:
        await peer.send_data(request.stream_id, b"x")
        await anyio.sleep(PACE)


def test_total_is_separate_from_the_stage_timeouts() -> None:
    assert h2any.Timeout(10).total is None
    timeout = h2any.Timeout(10, total=30)
    assert (timeout.read, timeout.total) == (10, 30)
    with pytest.raises(ValueError, match="total"):
        h2any.Timeout(total=0)


async def test_a_trickled_body_is_cut_off_at_the_total() -> None:
    with anyio.fail_after(LIMIT):
        async with scripted_server(trickle) as server:
            timeout = h2any.Timeout(5, total=0.5)
            async with h2any.Connection(server.url, timeout=timeout) as conn:
                started = anyio.current_time()
                response = await conn.request("GET", "/")
                with pytest.raises(h2any.ReadTimeout, match=r"total timeout \(0.5 s\)"):
                    async for _ in response.aiter_bytes():
                        pass
                elapsed = anyio.current_time() - started
                assert 0.4 < elapsed < 3.0
                # The stream was reset; the connection carries on.
                assert not conn.is_closed


async def test_without_total_the_trickle_keeps_within_the_read_timeout() -> None:
    # The contrast: each wait is well within ``read``, so only ``total`` ends it.
    received = 0
    with anyio.fail_after(LIMIT):
        async with scripted_server(trickle) as server:
            async with h2any.Connection(server.url, timeout=h2any.Timeout(0.5)) as conn:
                response = await conn.request("GET", "/")
                with anyio.move_on_after(1.0):
                    async for chunk in response.aiter_bytes():
                        received += len(chunk)
                await response.aclose()
    assert received > 10  # still flowing after twice the read timeout


async def test_a_per_request_total_applies_to_that_request() -> None:
    with anyio.fail_after(LIMIT):
        async with scripted_server(trickle) as server:
            async with h2any.Connection(server.url) as conn:
                response = await conn.request("GET", "/", timeout=h2any.Timeout(5, total=0.3))
                with pytest.raises(h2any.ReadTimeout, match="total timeout"):
                    await response.read()


async def test_total_bounds_the_wait_for_a_stream_slot() -> None:
    async def one_slot(peer: ScriptedPeer) -> None:
        await peer.handshake({SettingCodes.MAX_CONCURRENT_STREAMS: 1})
        await peer.expect_request()  # held open: the only slot stays taken
        await peer.wait_closed()

    with anyio.fail_after(LIMIT):
        async with scripted_server(one_slot) as server:
            async with h2any.Connection(server.url, timeout=h2any.Timeout(5)) as conn:
                first = conn.request_nowait("GET", "/first")
                with pytest.raises(h2any.PoolTimeout, match="total timeout"):
                    await conn.request("GET", "/second", timeout=h2any.Timeout(5, total=0.3))
                first.cancel()


async def test_total_bounds_an_upload_the_server_never_makes_room_for() -> None:
    async def no_room(peer: ScriptedPeer) -> None:
        await peer.handshake({SettingCodes.INITIAL_WINDOW_SIZE: 0})
        await peer.expect_request()
        await peer.wait_closed()

    async def body() -> AsyncIterator[bytes]:
        while True:
            yield b"y" * 65536

    with anyio.fail_after(LIMIT):
        async with scripted_server(no_room) as server:
            async with h2any.Connection(server.url) as conn:
                with pytest.raises(h2any.WriteTimeout, match="total timeout"):
                    await conn.request(
                        "POST", "/", body=body(), timeout=h2any.Timeout(5, total=0.3)
                    )


async def test_total_bounds_a_duplex_stream() -> None:
    with anyio.fail_after(LIMIT):
        async with scripted_server(trickle) as server:
            async with h2any.Connection(server.url) as conn:
                async with conn.open_stream(
                    "POST", "/", timeout=h2any.Timeout(5, total=0.3)
                ) as stream:
                    await stream.send_eof()
                    response = await stream.response()
                    with pytest.raises(h2any.ReadTimeout, match="total timeout"):
                        await response.read()


async def test_a_client_total_spans_its_retries() -> None:
    # Every stream refused: retries would go on for retry_timeout (60 s) and 1000 attempts;
    # the total ends them.
    async def refuse_all(peer: ScriptedPeer) -> None:
        await peer.handshake()
        while True:
            request = await peer.expect_request()
            await peer.reset(request.stream_id, ErrorCodes.REFUSED_STREAM)

    policy = h2any.RetryPolicy(max_attempts=1000, backoff=0.01, max_backoff=0.05)
    with anyio.fail_after(LIMIT):
        async with scripted_server(refuse_all) as server:
            async with h2any.Client(retries=policy, timeout=h2any.Timeout(5, total=0.5)) as client:
                started = anyio.current_time()
                # The last refusal, or the attempt under way when the total passed.
                with pytest.raises((h2any.StreamReset, h2any.TimeoutError)):
                    await client.get(server.url + "/")
                assert anyio.current_time() - started < 3.0


async def test_a_client_total_cuts_off_a_trickled_body() -> None:
    with anyio.fail_after(LIMIT):
        async with scripted_server(trickle) as server:
            async with h2any.Client(timeout=h2any.Timeout(5, total=0.4)) as client:
                response = await client.get(server.url + "/")
                with pytest.raises(h2any.ReadTimeout, match="total timeout"):
                    await response.read()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_total_holds_for_a_thread_reading_through_the_blocking_facade(backend: str) -> None:
    # The server runs in a portal of its own; the facade's loop thread keeps the deadline,
    # so the calling thread is never left blocked in iter_bytes().
    outcome: list[BaseException] = []
    with anyio.from_thread.start_blocking_portal(backend) as portal:
        with portal.wrap_async_context_manager(scripted_server(trickle)) as server:

            def reader() -> None:
                timeout = h2any.Timeout(5, total=0.4)
                with h2any.sync.Connection(server.url, timeout=timeout, backend=backend) as conn:
                    try:
                        with conn.stream("GET", "/") as response:
                            for _ in response.iter_bytes():
                                pass
                    except h2any.H2anyError as exc:
                        outcome.append(exc)

            thread = threading.Thread(target=reader)
            thread.start()
            thread.join(LIMIT)
            assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], h2any.ReadTimeout)
    assert "total timeout" in str(outcome[0])
