"""Pluggable window managers: exact accounting, hyper's examples, bad managers, adaptation."""

from __future__ import annotations

import hashlib
from typing import ClassVar

import anyio
import h2.events
import pytest
from scripted import ScriptedPeer, scripted_server

import h2any

pytestmark = pytest.mark.anyio

WINDOW = 65_535


class Recording(h2any.FlowControlManager):
    """The default manager, remembering every increment it grants."""

    instances: ClassVar[list[Recording]] = []

    def __init__(self, initial_window_size: int, document_size: int | None = None) -> None:
        super().__init__(initial_window_size, document_size)
        self.granted: list[int] = []
        Recording.instances.append(self)

    def increase_window_size(self, frame_size: int) -> int:
        increment = super().increase_window_size(frame_size)
        self.granted.append(increment)
        return increment


async def test_window_accounting_is_exact() -> None:
    Recording.instances = []
    total = 1_000_000
    views: dict[str, int] = {}
    done = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.respond(request.stream_id, body=b"d" * total, end=False)
        # A PING round trip: every WINDOW_UPDATE the client sent before it has arrived.
        await done.wait()
        await peer.ping()
        await peer.wait_for(lambda e: isinstance(e, h2.events.PingAckReceived))
        views["stream"] = peer.h2.local_flow_control_window(request.stream_id)
        views["connection"] = peer.h2.outbound_flow_control_window
        await peer.send_data(request.stream_id, b"", end=True)

    with anyio.fail_after(10):
        async with (
            scripted_server(handler) as server,
            h2any.Connection(
                server.url,
                window_manager=Recording,
                initial_window_size=WINDOW,
                connection_window_size=2 * WINDOW,
            ) as conn,
        ):
            response = await conn.request("GET", "/")
            received = 0
            chunks = response.aiter_bytes()
            while received < total:
                received += len(await chunks.__anext__())
            done.set()
            assert [chunk async for chunk in chunks] == []
    connection_manager, stream_manager = Recording.instances
    # What the server may still send is exactly what the managers granted, minus what it sent.
    assert views["stream"] == WINDOW + sum(stream_manager.granted) - total
    assert views["connection"] == 2 * WINDOW + sum(connection_manager.granted) - total
    assert stream_manager.window_size == views["stream"]
    assert connection_manager.window_size == views["connection"]


async def test_hypers_stupid_flow_control_manager_works(nghttpd) -> None:
    class StupidFlowControlManager(h2any.BaseFlowControlManager):
        def increase_window_size(self, frame_size: int) -> int:
            return frame_size

    with anyio.fail_after(20):
        async with h2any.Connection(
            nghttpd.url, window_manager=StupidFlowControlManager, initial_window_size=WINDOW
        ) as conn:
            response = await conn.request("GET", "/16m.bin")
            body = await response.read()
    assert hashlib.sha256(body).hexdigest() == nghttpd.docroot.sha256["16m.bin"]


async def test_a_manager_that_never_grants_stalls_the_stream_not_the_process(nghttpd) -> None:
    class Miser(h2any.BaseFlowControlManager):
        def increase_window_size(self, frame_size: int) -> int:
            return 0

    with anyio.fail_after(10):
        async with h2any.Connection(
            nghttpd.url,
            window_manager=Miser,
            initial_window_size=WINDOW,
            timeout=h2any.Timeout(10, read=0.3),
        ) as conn:
            response = await conn.request("GET", "/1m.bin")
            with pytest.raises(h2any.ReadTimeout):
                await response.read()
            assert await conn.ping() > 0  # the connection task is alive


@pytest.mark.parametrize("bad", [-1, 2**31, 1.5, "10"])
async def test_nonsense_increments_fail_the_stream_with_a_clear_error(nghttpd, bad) -> None:
    stream_managers: list[h2any.BaseFlowControlManager] = []

    class Nonsense(h2any.FlowControlManager):
        def __init__(self, initial_window_size: int, document_size: int | None = None) -> None:
            super().__init__(initial_window_size, document_size)
            if initial_window_size == WINDOW:
                stream_managers.append(self)

        def increase_window_size(self, frame_size: int) -> int:
            if stream_managers and self is stream_managers[0]:  # the first stream's only
                return bad  # type: ignore[no-any-return]
            return super().increase_window_size(frame_size)

    with anyio.fail_after(10):
        async with h2any.Connection(
            nghttpd.url, window_manager=Nonsense, initial_window_size=WINDOW
        ) as conn:
            response = await conn.request("GET", "/1m.bin")
            with pytest.raises(h2any.FlowControlError, match=r"Nonsense\.increase_window_size"):
                await response.read()
            # Only that stream failed: the connection serves the next request.
            response = await conn.request("GET", "/hello.txt")
            assert await response.read() == b"hello, world\n"


async def test_document_size_is_the_content_length(nghttpd) -> None:
    Recording.instances = []
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd.url, window_manager=Recording) as conn:
            response = await conn.request("GET", "/1m.bin")
            await response.read()
    assert Recording.instances[1].document_size == 1024 * 1024


async def test_adaptive_manager_grows_the_window_for_a_fast_reader(nghttpd) -> None:
    managers: list[h2any.AdaptiveFlowControlManager] = []

    class Watched(h2any.AdaptiveFlowControlManager):
        def __init__(self, initial_window_size: int, document_size: int | None = None) -> None:
            super().__init__(initial_window_size, document_size)
            managers.append(self)

    with anyio.fail_after(20):
        async with h2any.Connection(
            nghttpd.url,
            window_manager=Watched,
            initial_window_size=WINDOW,
            connection_window_size=WINDOW,
        ) as conn:
            response = await conn.request("GET", "/16m.bin")
            body = await response.read()
    assert hashlib.sha256(body).hexdigest() == nghttpd.docroot.sha256["16m.bin"]
    connection_manager, stream_manager = managers
    assert stream_manager.target_window_size > WINDOW
    assert connection_manager.target_window_size > WINDOW
    assert stream_manager.target_window_size <= h2any.AdaptiveFlowControlManager.max_window_size


async def test_adaptive_manager_does_not_grow_for_a_reader_that_lags() -> None:
    managers: list[h2any.AdaptiveFlowControlManager] = []

    class Watched(h2any.AdaptiveFlowControlManager):
        def __init__(self, initial_window_size: int, document_size: int | None = None) -> None:
            super().__init__(initial_window_size, document_size)
            managers.append(self)

    window_full = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.respond(request.stream_id, body=b"s" * WINDOW, end=False)
        await peer.ping()
        await peer.wait_for(lambda e: isinstance(e, h2.events.PingAckReceived))
        window_full.set()
        await peer.send_data(request.stream_id, b"s" * WINDOW, end=True)

    with anyio.fail_after(10):
        async with (
            scripted_server(handler) as server,
            h2any.Connection(
                server.url,
                window_manager=Watched,
                initial_window_size=WINDOW,
                max_frame_size=16_384,  # the window arrives in four frames
            ) as conn,
        ):
            async with conn.stream("GET", "/") as response:
                await window_full.wait()  # the peer is blocked, the reader has read nothing
                chunks = response.aiter_bytes()
                received = len(await chunks.__anext__())  # one chunk: still lagging
                assert managers[1].target_window_size == WINDOW
                async for chunk in chunks:
                    received += len(chunk)
    assert received == 2 * WINDOW
