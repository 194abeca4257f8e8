"""Server push: off by default, claimed through get_pushes, bounded and origin-checked."""

from __future__ import annotations

import hashlib

import anyio
import h2.events
import pytest
from h2.errors import ErrorCodes
from scripted import ScriptedPeer, scripted_server

import h2any
import h2any.sync

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def pushing_nghttpd(nghttpd_factory):
    return nghttpd_factory(["-p/hello.txt=/1b,/1m.bin"])


async def test_push_is_off_by_default(pushing_nghttpd) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(pushing_nghttpd.url) as conn:
            response = await conn.request("GET", "/hello.txt")
            assert await response.read() == b"hello, world\n"
            with pytest.raises(RuntimeError, match="enable_push"):
                conn.get_pushes()


async def test_pushes_from_nghttpd_are_delivered(pushing_nghttpd) -> None:
    sha256 = pushing_nghttpd.docroot.sha256
    with anyio.fail_after(10):
        async with h2any.Connection(pushing_nghttpd.url, enable_push=True) as conn:
            response = await conn.request("GET", "/hello.txt")
            pushes = [push async for push in conn.get_pushes(response.stream_id, capture_all=True)]
            assert sorted(push.path for push in pushes) == ["/1b", "/1m.bin"]
            for push in pushes:
                assert push.parent_stream_id == response.stream_id
                assert push.stream_id % 2 == 0
                assert push.method == "GET"
                pushed = await push.get_response()
                assert pushed.status == 200
                body = await pushed.read()
                assert hashlib.sha256(body).hexdigest() == sha256[push.path.lstrip("/")]
            assert await response.read() == b"hello, world\n"
            # Each call yields only promises not yielded before.
            assert [push async for push in conn.get_pushes()] == []


def _promise(
    peer: ScriptedPeer,
    parent: int,
    path: str,
    authority: str,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> int:
    promised = peer.h2.get_next_available_stream_id()
    peer.h2.push_stream(
        parent,
        promised,
        [
            (b":method", b"GET"),
            (b":scheme", b"http"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
            *(extra if extra is not None else [(b"x-pushed", b"yes")]),
        ],
    )
    return promised


@pytest.mark.parametrize("when", ["before-headers", "after-headers", "mid-body"])
async def test_promises_may_arrive_before_after_or_amid_the_parent_response(when: str) -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        parent = request.stream_id
        authority = request.authority
        promised = None
        if when == "before-headers":
            promised = _promise(peer, parent, "/early", authority)
        peer.h2.send_headers(parent, [(b":status", b"200")])
        if when == "after-headers":
            promised = _promise(peer, parent, "/early", authority)
        peer.h2.send_data(parent, b"first half ")
        if when == "mid-body":
            promised = _promise(peer, parent, "/early", authority)
        peer.h2.send_data(parent, b"second half", end_stream=True)
        await peer.flush()
        assert promised is not None
        await peer.respond(promised, headers=[("content-type", "text/plain")], body=b"pushed!")

    with anyio.fail_after(5):
        async with (
            scripted_server(handler) as server,
            h2any.Connection(server.url, enable_push=True) as conn,
        ):
            response = await conn.request("GET", "/")
            assert await response.read() == b"first half second half"
            pushes = [p async for p in conn.get_pushes(response.stream_id, capture_all=True)]
            assert [push.path for push in pushes] == ["/early"]
            assert pushes[0].request_headers["x-pushed"] == "yes"
            pushed = await pushes[0].get_response()
            assert pushed.headers["content-type"] == "text/plain"
            assert await pushed.read() == b"pushed!"


async def test_a_promised_request_s_split_cookie_is_joined() -> None:
    # RFC 9113 section 8.2.3: a Cookie may travel as several fields; the promised request
    # shows it as one (h2's inbound normalisation is off: h2any joins it itself).
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        cookies = [(b"cookie", b"a=1"), (b"x-between", b"yes"), (b"cookie", b"b=2")]
        promised = _promise(peer, request.stream_id, "/with-cookie", request.authority, cookies)
        await peer.respond(request.stream_id, body=b"page")
        await peer.respond(promised, body=b"pushed")

    with anyio.fail_after(5):
        async with (
            scripted_server(handler) as server,
            h2any.Connection(server.url, enable_push=True) as conn,
        ):
            response = await conn.request("GET", "/")
            assert await response.read() == b"page"
            [push] = [p async for p in conn.get_pushes(response.stream_id, capture_all=True)]
            assert push.request_headers.get_list("cookie") == ["a=1; b=2"]
            assert push.request_headers["x-between"] == "yes"
            pushed = await push.get_response()
            assert pushed.request.headers.get_list("cookie") == ["a=1; b=2"]
            assert await pushed.read() == b"pushed"


async def test_cancel_resets_the_pushed_stream_and_the_connection_carries_on() -> None:
    resets: dict[int, int] = {}
    promised_ids: list[int] = []
    reset_seen = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        promised = _promise(peer, request.stream_id, "/cached", request.authority)
        promised_ids.append(promised)
        await peer.respond(request.stream_id, body=b"page")
        peer.h2.send_headers(promised, [(b":status", b"200")])
        await peer.flush()
        event = await peer.wait_for(lambda e: isinstance(e, h2.events.StreamReset))
        resets[event.stream_id] = event.error_code
        reset_seen.set()
        after = await peer.expect_request()
        await peer.respond(after.stream_id, body=b"after")

    with anyio.fail_after(5):
        async with (
            scripted_server(handler) as server,
            h2any.Connection(server.url, enable_push=True) as conn,
        ):
            response = await conn.request("GET", "/")
            async for push in conn.get_pushes(response.stream_id, capture_all=True):
                await push.cancel()
            await reset_seen.wait()
            assert await (await conn.request("GET", "/after")).read() == b"after"
    assert resets == {promised_ids[0]: ErrorCodes.CANCEL}


async def test_cross_origin_pushes_are_refused_unless_the_policy_accepts_them() -> None:
    refused: list[int] = []

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        for _ in range(2):
            request = await peer.expect_request()
            promised = _promise(peer, request.stream_id, "/evil.js", "evil.example")
            await peer.flush()
            event = None
            if request.path == "/strict":
                event = await peer.wait_for(lambda e: isinstance(e, h2.events.StreamReset))
                assert event.stream_id == promised
                refused.append(event.error_code)
            await peer.respond(request.stream_id, body=b"ok")
            if request.path == "/lenient":
                await peer.respond(promised, body=b"alert(1)")

    with anyio.fail_after(5):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url, enable_push=True) as conn:
                response = await conn.request("GET", "/strict")
                await response.read()
                assert [p async for p in conn.get_pushes(capture_all=True)] == []

            def trust_everyone(push: h2any.PushedStream) -> bool:
                return push.authority == "evil.example"

            async with h2any.Connection(
                server.url, enable_push=True, push_policy=trust_everyone
            ) as conn:
                response = await conn.request("GET", "/lenient")
                await response.read()
                pushes = [p async for p in conn.get_pushes(capture_all=True)]
                assert [(p.authority, p.path) for p in pushes] == [("evil.example", "/evil.js")]
    assert refused == [ErrorCodes.REFUSED_STREAM]


async def test_a_push_flood_is_bounded_by_max_unclaimed_pushes() -> None:
    outcome: dict[str, int] = {}

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        promised = [
            _promise(peer, request.stream_id, f"/flood/{n}", request.authority) for n in range(50)
        ]
        await peer.flush()
        refused = set()
        while len(refused) < 45:
            event = await peer.wait_for(lambda e: isinstance(e, h2.events.StreamReset))
            assert event.error_code == ErrorCodes.REFUSED_STREAM
            refused.add(event.stream_id)
        outcome["refused"] = len(refused)
        for stream_id in promised:
            if stream_id not in refused:
                await peer.respond(stream_id, body=b"kept")
        await peer.respond(request.stream_id, body=b"done")

    with anyio.fail_after(5):
        async with (
            scripted_server(handler) as server,
            h2any.Connection(server.url, enable_push=True, max_unclaimed_pushes=5) as conn,
        ):
            response = await conn.request("GET", "/")
            assert await response.read() == b"done"
            pushes = [p async for p in conn.get_pushes(response.stream_id)]
            assert [p.path for p in pushes] == [f"/flood/{n}" for n in range(5)]
            for push in pushes:
                assert await (await push.get_response()).read() == b"kept"
    assert outcome == {"refused": 45}


async def test_unclaimed_pushes_do_not_block_the_connection_window() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        promised = _promise(peer, request.stream_id, "/big", request.authority)
        # The push fills its whole stream window (64 KiB), which equals the connection's.
        await peer.respond(promised, body=b"p" * 65_535, end=False)
        # The parent response needs the connection window too: it must still get through.
        await peer.respond(request.stream_id, body=b"r" * 200_000)

    with anyio.fail_after(5):
        async with (
            scripted_server(handler) as server,
            h2any.Connection(
                server.url,
                enable_push=True,
                initial_window_size=65_535,
                connection_window_size=65_535,
            ) as conn,
        ):
            response = await conn.request("GET", "/")
            assert await response.read() == b"r" * 200_000


def test_sync_facade_delivers_pushes(pushing_nghttpd) -> None:
    with h2any.sync.Connection(pushing_nghttpd.url, enable_push=True) as conn:
        response = conn.request("GET", "/hello.txt")
        assert response.read() == b"hello, world\n"
        pushes = list(conn.get_pushes(response.stream_id, capture_all=True))
        assert sorted(p.path for p in pushes) == ["/1b", "/1m.bin"]
        small = next(p for p in pushes if p.path == "/1b")
        assert small.get_response().read() == b"x"
        next(p for p in pushes if p.path == "/1m.bin").cancel()
        assert conn.request("GET", "/1b").read() == b"x"


async def test_pushes_from_hypercorn_push_extension_are_delivered(hypercorn_server) -> None:
    from asgi_app import pattern_bytes

    with anyio.fail_after(10):
        async with h2any.Connection(hypercorn_server.url_h2c, enable_push=True) as conn:
            response = await conn.request("GET", "/push-page")
            assert await response.read() == b"page"
            pushes = [p async for p in conn.get_pushes(response.stream_id, capture_all=True)]
            assert sorted(p.path for p in pushes) == ["/bytes/10", "/bytes/20"]
            for push in pushes:
                size = int(push.path.rsplit("/", 1)[1])
                assert await (await push.get_response()).read() == pattern_bytes(size)
