"""Window managers are told of DATA frames in hyper's order.

As each DATA frame arrives, ``increase_window_size(frame_size)`` is called with that frame's
flow-controlled size (padding included) *before* ``window_size`` drops by it; the
WINDOW_UPDATE the manager asks for may wait until the reader has consumed those bytes. So a
manager written for hyper -- like hyper's own ``FlowControlManager``, rewritten here from
its documentation -- keeps working: it never opens a window past its size, and it never
stalls a download.
"""

from __future__ import annotations

import hashlib

import anyio
import h2.events
import pytest
from asgi_app import pattern_bytes
from scripted import ScriptedPeer, scripted_server

import h2any

pytestmark = pytest.mark.anyio

STREAM_WINDOW = 100_000
CONNECTION_WINDOW = 1 << 20
#: (payload length, pad length) of each DATA frame the server sends.
FRAMES = [(1000, None), (5000, None), (16384, None), (7, None), (300, 10)]
#: Their flow-controlled sizes: a padded frame also counts its padding and pad-length byte.
SIZES = [1000, 5000, 16384, 7, 311]
BODY = pattern_bytes(sum(length for length, _ in FRAMES))


class HyperFlowControlManager(h2any.BaseFlowControlManager):
    """hyper's default manager: once a frame would leave less than a quarter of the window
    (or under 1000 bytes), grant back everything needed to fill the window again."""

    def increase_window_size(self, frame_size: int) -> int:
        future_window_size = self.window_size - frame_size
        if future_window_size < self.initial_window_size / 4 or future_window_size < 1000:
            return self.initial_window_size - future_window_size
        return 0


def recording_manager() -> tuple[type[h2any.BaseFlowControlManager], list]:
    """A manager class that grants nothing and records ``(frame_size, window_size)`` per
    call, and the list of its instances."""
    instances: list = []

    class Recording(h2any.BaseFlowControlManager):
        def __init__(self, initial_window_size: int, document_size: int | None = None) -> None:
            super().__init__(initial_window_size, document_size)
            self.calls: list[tuple[int, int]] = []
            instances.append(self)

        def increase_window_size(self, frame_size: int) -> int:
            self.calls.append((frame_size, self.window_size))
            return 0

    return Recording, instances


async def send_known_frames_then_ping(peer: ScriptedPeer, delivered: anyio.Event) -> None:
    """Answer with FRAMES (END_STREAM on the last), then a PING: once it is acknowledged,
    the client has processed every DATA frame."""
    await peer.handshake()
    request = await peer.expect_request()
    sid = request.stream_id
    peer.h2.send_headers(sid, [(":status", "200"), ("content-length", str(len(BODY)))])
    offset = 0
    for index, (length, pad) in enumerate(FRAMES):
        last = index == len(FRAMES) - 1
        peer.h2.send_data(sid, BODY[offset : offset + length], end_stream=last, pad_length=pad)
        offset += length
    await peer.flush()
    await peer.ping()
    await peer.wait_for(lambda e: isinstance(e, h2.events.PingAckReceived))
    delivered.set()


async def test_stream_manager_is_told_of_each_data_frame_before_its_window_drops() -> None:
    manager_class, managers = recording_manager()
    delivered = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await send_known_frames_then_ping(peer, delivered)

    with anyio.fail_after(5):
        async with (
            scripted_server(handler) as server,
            h2any.Connection(
                server.url,
                window_manager=manager_class,
                initial_window_size=STREAM_WINDOW,
                connection_window_size=CONNECTION_WINDOW,
            ) as conn,
        ):
            response = await conn.request("GET", "/")
            await delivered.wait()  # the whole body has arrived; none of it was read
            (stream_manager,) = [m for m in managers if m.initial_window_size == STREAM_WINDOW]
            expected = [(size, STREAM_WINDOW - sum(SIZES[:i])) for i, size in enumerate(SIZES)]
            assert stream_manager.calls == expected
            assert await response.read() == BODY
            assert stream_manager.calls == expected  # consuming the body tells it nothing new


async def test_connection_manager_is_told_of_each_data_frame_as_it_arrives() -> None:
    manager_class, managers = recording_manager()
    delivered = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await send_known_frames_then_ping(peer, delivered)

    with anyio.fail_after(5):
        async with (
            scripted_server(handler) as server,
            h2any.Connection(
                server.url,
                window_manager=manager_class,
                initial_window_size=STREAM_WINDOW,
                connection_window_size=CONNECTION_WINDOW,
            ) as conn,
        ):
            response = await conn.request("GET", "/")
            await delivered.wait()
            (connection_manager,) = [
                m for m in managers if m.initial_window_size == CONNECTION_WINDOW
            ]
            assert [size for size, _ in connection_manager.calls] == SIZES
            assert await response.read() == BODY
            assert [size for size, _ in connection_manager.calls] == SIZES


async def test_hypers_flow_control_manager_downloads_far_past_its_window(nghttpd) -> None:
    with anyio.fail_after(20):
        async with h2any.Connection(
            nghttpd.url,
            window_manager=HyperFlowControlManager,
            initial_window_size=65535,
            connection_window_size=65535,
        ) as conn:
            response = await conn.request("GET", "/16m.bin")
            body = await response.read()
    assert hashlib.sha256(body).hexdigest() == nghttpd.docroot.sha256["16m.bin"]


async def test_hypers_flow_control_manager_never_opens_the_window_past_its_size() -> None:
    total = 2 * 1024 * 1024
    body = pattern_bytes(total)
    seen = {"sent": 0, "largest_window": 0}

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        sid = request.stream_id
        peer.h2.send_headers(sid, [(":status", "200")])
        sent = 0
        while sent < total:
            window = peer.h2.local_flow_control_window(sid)
            size = min(window, peer.h2.max_outbound_frame_size, total - sent)
            if size <= 0:
                await peer.flush()
                await peer.next_events()
                # The stream window as the server sees it, right after taking in grants:
                granted = sum(
                    e.delta or 0
                    for e in peer.events
                    if isinstance(e, h2.events.WindowUpdated) and e.stream_id == sid
                )
                stream_window = STREAM_WINDOW + granted - sent
                seen["largest_window"] = max(seen["largest_window"], stream_window)
                continue
            peer.h2.send_data(sid, body[sent : sent + size], end_stream=sent + size == total)
            sent += size
            seen["sent"] = sent
            await peer.flush()

    with anyio.fail_after(10):
        async with (
            scripted_server(handler) as server,
            h2any.Connection(
                server.url,
                window_manager=HyperFlowControlManager,
                initial_window_size=STREAM_WINDOW,
                connection_window_size=CONNECTION_WINDOW * 16,
            ) as conn,
        ):
            response = await conn.request("GET", "/")
            assert await response.read() == body
    assert seen["sent"] == total
    assert 0 < seen["largest_window"] <= STREAM_WINDOW
