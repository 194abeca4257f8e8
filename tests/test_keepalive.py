"""Keepalive PINGs: sent on idle connections; an unanswered one kills the connection."""

from __future__ import annotations

import anyio
import h2.events
import pytest
from scripted import ScriptedPeer, scripted_server

import h2any

pytestmark = pytest.mark.anyio


async def test_idle_connection_sends_keepalive_pings_and_stays_up() -> None:
    pinged = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        for _ in range(3):  # h2 answers each PING; the scripted peer flushes the ACK
            await peer.wait_for(lambda e: isinstance(e, h2.events.PingReceived))
        pinged.set()
        request = await peer.expect_request()
        await peer.respond(request.stream_id, body=b"alive")

    with anyio.fail_after(5):
        async with (
            scripted_server(handler) as server,
            h2any.Connection(server.url, keepalive_interval=0.05) as conn,
        ):
            await pinged.wait()
            response = await conn.request("GET", "/")
            assert await response.read() == b"alive"


async def test_unanswered_keepalive_fails_waiters_before_their_read_timeout() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        await peer.expect_request()
        await anyio.sleep_forever()  # a dead peer: reads nothing, answers nothing

    with anyio.fail_after(5):
        async with (
            scripted_server(handler) as server,
            h2any.Connection(
                server.url,
                keepalive_interval=0.1,
                keepalive_timeout=0.2,
                timeout=h2any.Timeout(30),
            ) as conn,
        ):
            started = anyio.current_time()
            with pytest.raises(h2any.ConnectionClosed, match="keepalive"):
                await conn.request("GET", "/")
            assert anyio.current_time() - started < 5
            assert conn.is_closed


def test_keepalive_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="keepalive_interval"):
        h2any.Connection("http://localhost", keepalive_interval=0)
