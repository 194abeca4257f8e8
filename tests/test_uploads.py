"""Streaming uploads: files and iterables, sized and unsized, bounded, fair, and failing well."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import h2.events
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from scripted import ScriptedPeer, scripted_server

import h2any
import h2any.sync

pytestmark = pytest.mark.anyio

SIZE = 3 * 1024 * 1024 + 17


@pytest.fixture
def upload_file(tmp_path: Path) -> tuple[Path, str]:
    data = bytes(range(256)) * (SIZE // 256) + b"x" * (SIZE % 256)
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def _expected(data: bytes) -> dict[str, object]:
    return {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}


async def _sha256(conn: h2any.Connection, body: object, **kwargs: object) -> dict[str, object]:
    response = await conn.request("POST", "/sha256", body=body, **kwargs)  # type: ignore[arg-type]
    return json.loads(await response.read())  # type: ignore[no-any-return]


async def test_sync_file_is_streamed_with_its_length(hypercorn_server, upload_file) -> None:
    path, digest = upload_file
    with anyio.fail_after(20):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            with path.open("rb") as file:
                file.seek(1000)  # only what is left of the file is sent
                result = await _sha256(conn, file)
    data = path.read_bytes()[1000:]
    assert result == _expected(data)
    assert digest  # the fixture's digest covers the whole file


async def test_async_file_is_streamed(hypercorn_server, upload_file) -> None:
    path, digest = upload_file
    with anyio.fail_after(20):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            async with await anyio.open_file(path, "rb") as file:
                result = await _sha256(conn, file)
    assert result == {"length": SIZE, "sha256": digest}


async def test_sync_and_async_iterables_are_streamed(hypercorn_server) -> None:
    pieces = [bytes([n]) * (10_000 + n) for n in range(100)]
    whole = b"".join(pieces)

    def sync_pieces() -> Iterator[bytes]:
        yield from pieces

    async def async_pieces() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    with anyio.fail_after(20):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            assert await _sha256(conn, sync_pieces()) == _expected(whole)
            assert await _sha256(conn, async_pieces()) == _expected(whole)
            assert await _sha256(conn, pieces) == _expected(whole)


async def test_content_length_is_sent_for_sized_bodies_only(upload_file) -> None:
    path, _ = upload_file
    seen: list[bytes | None] = []

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        for _ in range(3):
            request = await peer.expect_request()
            seen.append(request.header("content-length"))
            await peer.read_body(request.stream_id)
            await peer.respond(request.stream_id)

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            await conn.request("POST", "/", body="héllo")
            with path.open("rb") as file:
                await conn.request("POST", "/", body=file)
            await conn.request("POST", "/", body=iter([b"a", b"b"]))
    assert seen == [b"6", str(SIZE).encode(), None]


@pytest.mark.parametrize(("declared", "word"), [(5, "longer"), (50, "short")])
async def test_body_disagreeing_with_content_length_resets_the_stream(
    declared: int, word: str
) -> None:
    resets: list[int] = []
    request_seen = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        request_seen.set()
        event = await peer.wait_for(lambda e: isinstance(e, h2.events.StreamReset))
        assert event.stream_id == request.stream_id
        resets.append(event.error_code)
        after = await peer.expect_request()
        await peer.respond(after.stream_id, body=b"ok")

    async def ten_bytes() -> AsyncIterator[bytes]:
        yield b"01234"
        await request_seen.wait()  # the request is on the wire before the body goes wrong
        yield b"56789"

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            with pytest.raises(h2any.InvalidRequest, match=word):
                await conn.request(
                    "POST", "/", body=ten_bytes(), headers={"content-length": str(declared)}
                )
            response = await conn.request("GET", "/after")
            assert await response.read() == b"ok"
    assert resets == [ErrorCodes.CANCEL]


async def test_body_raising_midway_resets_the_stream_and_surfaces_the_error() -> None:
    reset_seen = anyio.Event()
    request_seen = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        await peer.expect_request()
        request_seen.set()
        await peer.wait_for(lambda e: isinstance(e, h2.events.StreamReset))
        reset_seen.set()

    class Broken(Exception):
        pass

    async def broken_body() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        await request_seen.wait()
        raise Broken("the disk went away")

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            with pytest.raises(Broken, match="disk went away"):
                await conn.request("POST", "/", body=broken_body())
            await reset_seen.wait()
            await conn.ping()


async def test_streamed_upload_hits_the_write_timeout_when_the_window_stays_shut() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        peer.auto_ack_data = False
        await peer.handshake({SettingCodes.INITIAL_WINDOW_SIZE: 0})
        await peer.expect_request()

    def endless() -> Iterator[bytes]:
        while True:
            yield b"z" * 65536

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            with pytest.raises(h2any.WriteTimeout):
                await conn.request("POST", "/", body=endless(), timeout=h2any.Timeout(5, write=0.3))


async def test_concurrent_uploads_share_the_connection_window_fairly() -> None:
    first_window: dict[int, int] = {}

    async def handler(peer: ScriptedPeer) -> None:
        peer.auto_ack_data = False
        # Stream windows start shut, so every upload is queued when they open together.
        await peer.handshake({SettingCodes.INITIAL_WINDOW_SIZE: 0})
        requests = [await peer.expect_request() for _ in range(4)]
        peer.h2.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        await peer.flush()
        # Collect exactly the connection's initial window (65,535 bytes) before granting more.
        total = 0
        while total < 65_535:
            for event in await peer.next_events():
                if isinstance(event, h2.events.DataReceived):
                    first_window[event.stream_id] = (
                        first_window.get(event.stream_id, 0) + event.flow_controlled_length
                    )
                    total += event.flow_controlled_length
        peer.auto_ack_data = True
        peer.h2.increment_flow_control_window(1 << 24)
        for request in requests:
            peer.h2.acknowledge_received_data(
                first_window.get(request.stream_id, 0), request.stream_id
            )
        await peer.flush()
        for request in requests:
            await peer.read_body(request.stream_id)
            await peer.respond(request.stream_id, body=b"done")

    async def upload(conn: h2any.Connection, index: int) -> None:
        response = await conn.request("POST", "/", body=bytes([index]) * 262_144)
        assert await response.read() == b"done"

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with anyio.create_task_group() as tg:
                for index in range(4):
                    tg.start_soon(upload, conn, index)
    # Every upload got an equal share of the first connection window: none starved.
    assert len(first_window) == 4
    assert max(first_window.values()) - min(first_window.values()) <= 16_384


def test_sync_facade_streams_files_and_generators(hypercorn_server, upload_file) -> None:
    path, digest = upload_file

    def pieces() -> Iterator[bytes]:
        yield b"abc" * 1000
        yield b"def" * 1000

    with h2any.sync.Connection(hypercorn_server.url_h2c) as conn:
        with path.open("rb") as file:
            response = conn.request("POST", "/sha256", body=file)
            assert json.loads(response.read()) == {"length": SIZE, "sha256": digest}
        response = conn.request("POST", "/sha256", body=pieces())
        assert json.loads(response.read()) == _expected(b"abc" * 1000 + b"def" * 1000)
