"""Connection.request_nowait: many requests issued from one task, responses awaited later."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import h2.events
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from scripted import ScriptedPeer, scripted_server

import h2any
from h2any.testing import serve

pytestmark = pytest.mark.anyio


async def test_one_task_issues_more_requests_than_the_server_allows_at_once(nghttpd) -> None:
    # nghttpd allows 100 concurrent streams: 1,000 requests queue for slots, none lost.
    with anyio.fail_after(30):
        async with h2any.Connection(nghttpd.url) as conn:
            pending = [conn.request_nowait("GET", "/hello.txt") for _ in range(1000)]
            bodies = [await (await p).read() for p in pending]
            assert conn.open_streams == 0
    assert bodies == [b"hello, world\n"] * 1000


async def test_responses_can_be_awaited_in_any_order() -> None:
    with anyio.fail_after(10):
        async with serve() as server, h2any.Connection(server.url) as conn:
            pending = [conn.request_nowait("POST", "/echo", body=f"{i}") for i in range(20)]
            assert all(p.stream_id in (0, *range(1, 40, 2)) for p in pending)
            bodies = [await (await p).read() for p in reversed(pending)]
            ids = [p.stream_id for p in pending]
    assert bodies == [f"{i}".encode() for i in reversed(range(20))]
    assert ids == list(range(1, 40, 2))


async def test_a_pending_response_is_awaited_once() -> None:
    with anyio.fail_after(10):
        async with serve() as server, h2any.Connection(server.url) as conn:
            pending = conn.request_nowait("GET", "/")
            assert "pending" in repr(pending)
            response = await pending
            assert response.status == 200
            assert "awaited" in repr(pending)
            with pytest.raises(RuntimeError, match="already awaited"):
                await pending
            pending.cancel()  # a no-op once awaited: the response stays readable
            assert await response.read()


async def test_cancel_resets_an_open_stream_and_the_others_carry_on() -> None:
    resets: list[tuple[int, int]] = []
    both_seen = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        first = await peer.expect_request()
        second = await peer.expect_request()
        both_seen.set()
        event = await peer.wait_for(lambda e: isinstance(e, h2.events.StreamReset))
        resets.append((event.stream_id, event.error_code))
        assert event.stream_id == first.stream_id
        await peer.respond(second.stream_id, body=b"second")

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            first = conn.request_nowait("GET", "/first")
            second = conn.request_nowait("GET", "/second")
            await both_seen.wait()
            assert first.stream_id == 1
            first.cancel()
            assert await (await second).read() == b"second"
            with pytest.raises(RuntimeError, match="cancelled"):
                await first
            assert conn.open_streams == 0
    assert resets == [(1, ErrorCodes.CANCEL)]


async def test_cancel_while_waiting_for_a_stream_slot_never_opens_the_stream() -> None:
    paths: list[str] = []
    later: list[h2.events.Event] = []
    first_seen, cancelled = anyio.Event(), anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake({SettingCodes.MAX_CONCURRENT_STREAMS: 1})
        for _ in range(3):
            request = await peer.expect_request()
            paths.append(request.path)
            if request.path == "/first":
                first_seen.set()
                await cancelled.wait()
            await peer.respond(request.stream_id, body=request.path.encode())
        later.extend(await peer.wait_closed())

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            # Once the server's limit of one stream is in force, the second request queues
            # behind the first, which the server holds until the second is cancelled.
            await (await conn.request_nowait("GET", "/warm-up")).read()
            first = conn.request_nowait("GET", "/first")
            queued = conn.request_nowait("GET", "/queued")
            await first_seen.wait()
            queued.cancel()
            cancelled.set()
            assert await (await first).read() == b"/first"
            assert await (await conn.request_nowait("GET", "/last")).read() == b"/last"
            assert queued.stream_id == 0
    assert paths == ["/warm-up", "/first", "/last"]
    assert not [e for e in later if isinstance(e, h2.events.RequestReceived)]


async def test_bad_request_raises_at_once_and_the_connection_carries_on() -> None:
    with anyio.fail_after(10):
        async with serve() as server, h2any.Connection(server.url) as conn:
            with pytest.raises(h2any.InvalidRequest, match="must be a path"):
                conn.request_nowait("GET", "no-slash")
            with pytest.raises(h2any.InvalidRequest, match="header"):
                conn.request_nowait("GET", "/", headers={"connection": "close"})
            assert await (await conn.request_nowait("GET", "/")).read()


async def test_request_nowait_on_a_closed_connection_raises() -> None:
    with anyio.fail_after(10):
        async with serve() as server:
            conn = h2any.Connection(server.url)
            with pytest.raises(RuntimeError, match="not open"):
                conn.request_nowait("GET", "/")
            async with conn:
                pass
            with pytest.raises(h2any.ConnectionClosed):
                conn.request_nowait("GET", "/")


async def test_a_reset_by_the_server_is_raised_when_awaited() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        refused = await peer.expect_request()
        served = await peer.expect_request()
        await peer.reset(refused.stream_id, ErrorCodes.REFUSED_STREAM)
        await peer.respond(served.stream_id, body=b"fine")

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            refused = conn.request_nowait("GET", "/refused")
            served = conn.request_nowait("GET", "/served")
            assert await (await served).read() == b"fine"
            with pytest.raises(h2any.StreamReset) as caught:
                await refused
            assert caught.value.error_code == ErrorCodes.REFUSED_STREAM


async def test_a_streamed_body_is_sent_before_anyone_awaits() -> None:
    # The connection's own task pumps the body: nobody needs to await the response for it
    # to go out, and other requests go ahead meanwhile.
    sent: list[bytes] = []
    all_sent = anyio.Event()

    async def body() -> AsyncIterator[bytes]:
        for piece in (b"one, ", b"two, ", b"three"):
            sent.append(piece)
            yield piece
        all_sent.set()

    with anyio.fail_after(10):
        async with serve() as server, h2any.Connection(server.url) as conn:
            pending = conn.request_nowait("POST", "/echo", body=body())
            assert await (await conn.request_nowait("GET", "/")).read()
            await all_sent.wait()
            assert sent == [b"one, ", b"two, ", b"three"]
            response = await pending
            assert await response.read() == b"one, two, three"


async def test_the_read_timeout_runs_while_awaiting() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        await peer.expect_request()
        await peer.wait_closed()

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            pending = conn.request_nowait("GET", "/never", timeout=h2any.Timeout(5, read=0.2))
            with pytest.raises(h2any.ReadTimeout, match=r"no response within 0\.2 s"):
                await pending


async def test_closing_with_requests_pending_does_not_hang() -> None:
    # A response that arrived in full before the close can still be awaited and read;
    # the others fail with ConnectionClosed.
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        answered = await peer.expect_request()
        marker = await peer.expect_request()
        await peer.respond(answered.stream_id, body=b"in full")
        await peer.respond(marker.stream_id, body=b"marker")
        await peer.wait_closed()

    with anyio.fail_after(5):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url) as conn:
                answered = conn.request_nowait("GET", "/answered")
                marker = conn.request_nowait("GET", "/marker")
                unanswered = [conn.request_nowait("GET", f"/{i}") for i in range(10)]
                # The marker's response came after the first one's, on the same socket.
                assert await (await marker).read() == b"marker"
            response = await answered
            assert await response.read() == b"in full"
            for pending in unanswered:
                with pytest.raises(h2any.ConnectionClosed):
                    await pending


async def test_a_lost_connection_fails_every_pending_response() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        first = await peer.expect_request()
        await peer.respond(first.stream_id, body=b"answered")
        await peer.expect_request()
        await peer.close(abort=True)

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            answered = conn.request_nowait("GET", "/answered")
            lost = [conn.request_nowait("GET", f"/lost/{i}") for i in range(5)]
            assert await (await answered).read() == b"answered"
            for pending in lost:
                with pytest.raises(h2any.ConnectionClosed):
                    await pending
