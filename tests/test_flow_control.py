"""Backpressure: received data is granted back to the peer only as it is consumed."""

from __future__ import annotations

import hashlib

import anyio
import h2.events
import pytest
from h2.settings import SettingCodes
from scripted import ScriptedPeer, scripted_server

import h2any

pytestmark = pytest.mark.anyio

WINDOW = 65_535


async def test_data_is_acknowledged_only_as_the_application_consumes_it() -> None:
    window_full = anyio.Event()
    client_read = anyio.Event()
    updates_before_read: list[int] = []

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.respond(request.stream_id, body=b"a" * WINDOW, end=False)
        # A PING round trip: once its ACK is back, the client has processed every frame
        # sent before it -- and must not have opened the stream window again.
        await peer.ping()
        await peer.wait_for(lambda e: isinstance(e, h2.events.PingAckReceived))
        updates_before_read.extend(
            e.delta
            for e in peer.events
            if isinstance(e, h2.events.WindowUpdated) and e.stream_id == request.stream_id
        )
        assert peer.h2.local_flow_control_window(request.stream_id) == 0
        window_full.set()
        await client_read.wait()
        update = await peer.wait_for(
            lambda e: isinstance(e, h2.events.WindowUpdated) and e.stream_id == request.stream_id
        )
        assert update.delta > 0
        await peer.send_data(request.stream_id, b"b" * 10, end=True)

    with anyio.fail_after(5):
        async with (
            scripted_server(handler) as server,
            h2any.Connection(server.url, initial_window_size=WINDOW) as conn,
        ):
            async with conn.stream("GET", "/") as response:
                await window_full.wait()
                chunks = response.aiter_bytes()
                received = 0
                while received < WINDOW:
                    received += len(await chunks.__anext__())
                client_read.set()
                rest = [chunk async for chunk in chunks]
    assert updates_before_read == []
    assert b"".join(rest) == b"b" * 10


async def test_an_unread_stream_does_not_starve_other_streams(nghttpd) -> None:
    with anyio.fail_after(20):
        async with h2any.Connection(
            nghttpd.url, initial_window_size=1 << 20, connection_window_size=2 << 20
        ) as conn:
            idle = await conn.request("GET", "/16m.bin")  # never read: holds <= 1 MiB
            response = await conn.request("GET", "/16m.bin")
            digest = hashlib.sha256()
            async for chunk in response.aiter_bytes():
                digest.update(chunk)
            assert digest.hexdigest() == nghttpd.docroot.sha256["16m.bin"]
            await idle.aclose()


async def test_closing_unread_streams_releases_their_share_of_the_connection_window(
    nghttpd,
) -> None:
    with anyio.fail_after(20):
        async with h2any.Connection(
            nghttpd.url, initial_window_size=1 << 20, connection_window_size=2 << 20
        ) as conn:
            # Two unread streams fill the whole connection window...
            first = await conn.request("GET", "/16m.bin")
            second = await conn.request("GET", "/16m.bin")
            # ...until they are closed, which must hand their bytes back.
            await first.aclose()
            await second.aclose()
            response = await conn.request("GET", "/1m.bin")
            body = await response.read()
            assert hashlib.sha256(body).hexdigest() == nghttpd.docroot.sha256["1m.bin"]


async def test_uploads_wait_for_window_updates_and_complete(hypercorn_server) -> None:
    body = bytes(range(256)) * 16_384  # 4 MiB against hypercorn's 64 KiB windows
    with anyio.fail_after(20):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            response = await conn.request("POST", "/sha256", body=body)
            assert await response.read() == (
                b'{"length": 4194304, "sha256": "'
                + hashlib.sha256(body).hexdigest().encode()
                + b'"}'
            )


async def test_concurrent_uploads_share_the_connection_window() -> None:
    bodies = {index: bytes([index]) * 300_000 for index in range(4)}

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake({SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        requests = [await peer.expect_request() for _ in bodies]
        for request in requests:
            body = await peer.read_body(request.stream_id)
            await peer.respond(request.stream_id, body=hashlib.sha256(body).hexdigest().encode())

    async def upload(conn: h2any.Connection, index: int) -> None:
        response = await conn.request("POST", f"/{index}", body=bodies[index])
        assert await response.read() == hashlib.sha256(bodies[index]).hexdigest().encode()

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with anyio.create_task_group() as tg:
                for index in bodies:
                    tg.start_soon(upload, conn, index)
