"""Floods: a peer that sends endless frames that cost work and carry nothing ends its connection.

The defences follow nghttp2's (``_task.py``: ``GLITCH_BURST``, ``OUTBOUND_REPLY_LIMIT``):

* frames that carry nothing (empty DATA without END_STREAM, empty header block fragments)
  and refused PUSH_PROMISEs draw on a bucket of 1000 "glitches", refilled 33 a second; past
  it the connection ends with GOAWAY ENHANCE_YOUR_CALM and every waiter gets a typed
  :class:`h2any.ProtocolError` (CVE-2019-9518);
* empty DATA frames are no progress: they do not restart the reader's read timeout;
* replies the engine queues by itself (PING ACKs ...) for a peer that reads none of them
  are capped (CVE-2019-9512);
* refused pushes leave nothing behind in the engine's stream table;
* a malformed response fails only its stream (RFC 9113 section 8.1.1), and a reset h2any
  sends itself is not reported as the peer's.

The floods' costs (CPU time, peak RSS) are measured in a subprocess, where nothing else runs.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest
from anyio.abc import SocketAttribute
from h2.errors import ErrorCodes
from scripted import (
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    PING,
    PUSH_PROMISE,
    WINDOW_UPDATE,
    ScriptedPeer,
    encode_headers,
    raw_frame,
    scripted_server,
)
from test_hostile_peers import record_resets
from test_push import _promise

import h2any
from h2any._task import GLITCH_BURST

pytestmark = pytest.mark.anyio

LIMIT = 10  # seconds any one test may take

EMPTY_DATA = raw_frame(DATA, 0, 1, b"")


def headers_frame(stream_id: int, fields: list[tuple[str, str]], *, end: bool = False) -> bytes:
    return raw_frame(
        HEADERS, END_HEADERS | (END_STREAM if end else 0), stream_id, encode_headers(fields)
    )


def push_promises(parent: int, first_promised: int, count: int, authority: str) -> bytes:
    """``count`` PUSH_PROMISEs on ``parent``, promising even streams from ``first_promised``."""
    frames = []
    for index in range(count):
        promised = first_promised + 2 * index
        block = encode_headers(
            [
                (":method", "GET"),
                (":scheme", "http"),
                (":authority", authority),
                (":path", f"/pushed/{index}"),
            ]
        )
        frames.append(
            raw_frame(PUSH_PROMISE, END_HEADERS, parent, struct.pack(">L", promised) + block)
        )
    return b"".join(frames)


def engine_streams(conn: h2any.Connection) -> int:
    """How many streams the engine's table holds."""
    return len(conn._task.h2.streams)  # type: ignore[attr-defined]


# -- empty frames (CVE-2019-9518) ---------------------------------------------------------


async def test_an_empty_data_flood_ends_the_connection_with_enhance_your_calm() -> None:
    goaway: list[int] = []

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        flood = raw_frame(DATA, 0, request.stream_id, b"") * (2 * GLITCH_BURST)
        await peer.send_raw(headers_frame(request.stream_id, [(":status", "200")]) + flood)
        await peer.wait_closed()
        if peer.goaway_received is not None:
            goaway.append(peer.goaway_received.error_code)

    with anyio.fail_after(LIMIT):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url) as conn:
                # The flood is seen before the engine parses it: the request itself fails.
                with pytest.raises(h2any.ProtocolError) as caught:
                    await (await conn.request("GET", "/")).read()
                assert caught.value.error_code == ErrorCodes.ENHANCE_YOUR_CALM
                assert "empty DATA" in str(caught.value)
                with pytest.raises(h2any.H2anyError):
                    await conn.request("GET", "/again")
    assert goaway == [ErrorCodes.ENHANCE_YOUR_CALM]


async def test_a_few_empty_data_frames_are_tolerated() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        sid = request.stream_id
        await peer.send_raw(
            headers_frame(sid, [(":status", "200")])
            + raw_frame(DATA, 0, sid, b"") * (GLITCH_BURST // 2)
            + raw_frame(DATA, 0, sid, b"body")
            + raw_frame(DATA, END_STREAM, sid, b"")
        )

    with anyio.fail_after(LIMIT):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url) as conn:
                response = await conn.request("GET", "/")
                assert await response.read() == b"body"


async def test_an_empty_header_block_flood_ends_the_connection() -> None:
    # Zero-length HEADERS frames as trailers without END_STREAM: each is a stream error,
    # and a flood of them a glitch flood.
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        flood = raw_frame(HEADERS, END_HEADERS, request.stream_id, b"") * (2 * GLITCH_BURST)
        await peer.send_raw(headers_frame(request.stream_id, [(":status", "200")]) + flood)
        await peer.wait_closed()

    with anyio.fail_after(LIMIT):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url) as conn:
                with pytest.raises(h2any.ProtocolError) as caught:
                    await (await conn.request("GET", "/")).read()
                assert caught.value.error_code == ErrorCodes.ENHANCE_YOUR_CALM


async def test_empty_data_frames_do_not_keep_the_read_timeout_from_firing() -> None:
    # One empty DATA frame every 50 ms, forever: the reader's 0.3 s read timeout still fires.
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        sid = request.stream_id
        await peer.send_raw(headers_frame(sid, [(":status", "200")]))
        while True:
            await peer.send_raw(raw_frame(DATA, 0, sid, b""))
            await anyio.sleep(0.05)  # the trickle's pace, not a synchronisation

    with anyio.fail_after(LIMIT):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url, timeout=h2any.Timeout(5, read=0.3)) as conn:
                response = await conn.request("GET", "/")
                started = anyio.current_time()
                with pytest.raises(h2any.ReadTimeout):
                    await response.read()
                assert anyio.current_time() - started < 2.0


# -- pushes ---------------------------------------------------------------------------------


async def test_refused_pushes_leave_nothing_in_the_engine_stream_table() -> None:
    refused = 300  # well inside the burst: the connection carries on

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        sid = request.stream_id
        await peer.send_raw(
            push_promises(sid, 2, 32 + refused, request.authority)
            + headers_frame(sid, [(":status", "200")], end=True)
        )
        second = await peer.expect_request()
        await peer.respond(second.stream_id, body=b"still fine")

    with anyio.fail_after(LIMIT):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url, enable_push=True) as conn:
                response = await conn.request("GET", "/")
                await response.read()
                assert conn._task.refused_pushes == refused  # type: ignore[attr-defined]
                # The 32 kept promises (unclaimed) and nothing of the refused ones.
                assert engine_streams(conn) <= 32
                again = await conn.request("GET", "/second")
                assert await again.read() == b"still fine"


async def test_cancelled_and_refused_pushes_leave_nothing_in_the_engine_stream_table() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        for index in range(34):  # 32 kept (max_unclaimed_pushes), 2 refused
            _promise(peer, request.stream_id, f"/pushed/{index}", request.authority)
        await peer.respond(request.stream_id, body=b"page")
        after = await peer.expect_request()
        await peer.respond(after.stream_id, body=b"after")

    with anyio.fail_after(LIMIT):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url, enable_push=True) as conn:
                response = await conn.request("GET", "/")
                cancelled = 0
                async for push in conn.get_pushes(response.stream_id, capture_all=True):
                    await push.cancel()
                    cancelled += 1
                assert await response.read() == b"page"
                assert await (await conn.request("GET", "/after")).read() == b"after"
                assert cancelled == 32
                assert conn._task.refused_pushes == 2  # type: ignore[attr-defined]
                assert engine_streams(conn) == 0


async def test_a_push_flood_ends_the_connection_with_enhance_your_calm() -> None:
    goaway: list[int] = []

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.send_raw(
            push_promises(request.stream_id, 2, 2 * GLITCH_BURST, request.authority)
        )
        await peer.wait_closed()
        if peer.goaway_received is not None:
            goaway.append(peer.goaway_received.error_code)

    with anyio.fail_after(LIMIT):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url, enable_push=True) as conn:
                with pytest.raises(h2any.ProtocolError) as caught:
                    await conn.request("GET", "/")
                assert caught.value.error_code == ErrorCodes.ENHANCE_YOUR_CALM
                assert "PUSH_PROMISE" in str(caught.value)
    # The client closes while the server may still be writing promises: its kernel then
    # resets the connection, and the GOAWAY can be lost with the unread bytes. When it
    # arrives, it says why.
    assert goaway in ([], [ErrorCodes.ENHANCE_YOUR_CALM])


# -- replies to a peer that does not read (CVE-2019-9512) -----------------------------------


async def test_a_ping_flood_from_a_peer_that_reads_nothing_ends_the_connection() -> None:
    batch = raw_frame(PING, 0, 0, b"12345678") * 2000

    async def handler(peer: ScriptedPeer) -> None:
        raw: socket.socket = peer.stream.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await peer.handshake()
        await peer.expect_request()
        while True:  # never reads again
            await peer.stream.send(batch)

    with anyio.fail_after(LIMIT):
        async with scripted_server(handler) as server:
            # A long write timeout: the flood defence must end it, not the timeout.
            async with h2any.Connection(server.url, timeout=h2any.Timeout(30)) as conn:
                # A small send buffer fills fast (the kernel's grows to megabytes).
                raw = conn._task._socket.extra(SocketAttribute.raw_socket)  # type: ignore[attr-defined]
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
                with pytest.raises(h2any.ProtocolError) as caught:
                    await conn.request("GET", "/")
                assert caught.value.error_code == ErrorCodes.ENHANCE_YOUR_CALM
                assert "reads none" in str(caught.value)


# -- stream errors, not connection errors ----------------------------------------------------


@pytest.mark.parametrize("fault", ["second HEADERS", "empty header block"])
async def test_a_malformed_response_fails_only_its_stream(fault: str) -> None:
    # RFC 9113 section 8.1.1: a second HEADERS without END_STREAM (or an empty header
    # block, read as trailers without END_STREAM) is a malformed response: a stream error.
    resets: dict[int, int] = {}

    async def handler(peer: ScriptedPeer) -> None:
        seen = record_resets(peer)
        await peer.handshake()
        first = await peer.expect_request()
        sid = first.stream_id
        bad = (
            headers_frame(sid, [("x-again", "1")])
            if fault == "second HEADERS"
            else raw_frame(HEADERS, END_HEADERS, sid, b"")
        )
        await peer.send_raw(headers_frame(sid, [(":status", "200")]) + bad)
        second = await peer.expect_request()
        await peer.respond(second.stream_id, body=b"still fine")
        await peer.wait_closed()
        resets.update(seen)

    with anyio.fail_after(LIMIT):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url) as conn:
                with pytest.raises(h2any.ProtocolError) as caught:
                    await (await conn.request("GET", "/first")).read()
                assert caught.value.error_code == ErrorCodes.PROTOCOL_ERROR
                assert "stream 1" in str(caught.value)
                second = await conn.request("GET", "/second")
                assert await second.read() == b"still fine"
                assert not conn.is_closed
    assert resets == {1: ErrorCodes.PROTOCOL_ERROR}


async def test_a_reset_h2any_sends_itself_is_not_blamed_on_the_peer() -> None:
    # A WINDOW_UPDATE that overflows the stream window: h2any resets the stream
    # (FLOW_CONTROL_ERROR); the error says so instead of "reset by the peer".
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.send_raw(
            raw_frame(WINDOW_UPDATE, 0, request.stream_id, struct.pack(">L", 2**31 - 1))
        )
        await peer.wait_closed()

    with anyio.fail_after(LIMIT):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url) as conn:
                with pytest.raises(h2any.H2anyError) as caught:
                    await conn.request("POST", "/", body=b"x" * 10)
                error = caught.value
                assert not isinstance(error, h2any.StreamReset) or not error.remote
                assert isinstance(error, h2any.ProtocolError), repr(error)
                assert error.error_code == ErrorCodes.FLOW_CONTROL_ERROR
                assert "h2any reset it" in str(error)


# -- the floods' costs, measured alone --------------------------------------------------------

_FLOOD_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    import anyio, h2any
    sys.path.insert(0, {tests!r})
    from scripted import DATA, HEADERS, END_HEADERS, raw_frame, encode_headers, scripted_server

    COUNT = 300_000

    async def main():
        async def handler(peer):
            await peer.handshake()
            request = await peer.expect_request()
            sid = request.stream_id
            head = raw_frame(HEADERS, END_HEADERS, sid, encode_headers([(":status", "200")]))
            await peer.send_raw(head + raw_frame(DATA, 0, sid, b"") * COUNT)
            await peer.wait_closed()

        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url) as conn:
                open("/proc/self/clear_refs", "w").write("5")
                before = rss()
                started = time.process_time()
                try:
                    await (await conn.request("GET", "/")).read()
                    error = None
                except h2any.ProtocolError as exc:
                    error = exc.error_code
                cpu = time.process_time() - started
                print(json.dumps({{"error": error, "cpu": cpu, "rss": peak() - before}}))

    def field(name):
        for line in open("/proc/self/status"):
            if line.startswith(name):
                return int(line.split()[1]) * 1024

    def rss():
        return field("VmRSS:")

    def peak():
        return field("VmHWM:")

    anyio.run(main, backend=sys.argv[1])
    """
)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
def test_an_empty_data_flood_costs_little_cpu_and_memory(anyio_backend: str) -> None:
    # 300,000 empty DATA frames (2.7 MB): before the defence, ~1.4 s of CPU and all of them
    # parsed; now the connection ends after the first thousand or so.
    script = _FLOOD_SCRIPT.format(tests=str(Path(__file__).parent))
    result = subprocess.run(
        [sys.executable, "-c", script, anyio_backend],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["error"] == ErrorCodes.ENHANCE_YOUR_CALM
    assert figures["cpu"] < 0.5, figures
    assert figures["rss"] < 16 * 1024 * 1024, figures
