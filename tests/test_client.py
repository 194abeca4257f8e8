"""h2any.Client: connections pooled by origin, shared, replaced, and retried on."""

from __future__ import annotations

import json
import socket
import threading

import anyio
import h2.events
import pytest
from conftest import loop_thread_count
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from scripted import ScriptedPeer, scripted_server

import h2any

pytestmark = pytest.mark.anyio


async def test_two_origins_used_concurrently_get_one_connection_each(
    nghttpd, hypercorn_server
) -> None:
    results: list[bytes] = []

    async def fetch(client: h2any.Client, url: str) -> None:
        response = await client.get(url)
        results.append(await response.read())

    with anyio.fail_after(20):
        async with h2any.Client() as client:
            async with anyio.create_task_group() as tg:
                for _ in range(200):
                    tg.start_soon(fetch, client, nghttpd.url + "/1b")
                    tg.start_soon(fetch, client, hypercorn_server.url_h2c + "/bytes/3")
            assert client.connections == {nghttpd.url: 1, hypercorn_server.url_h2c: 1}
            assert client.connections_opened == 2
    assert sorted(set(results)) == [b"\x00\x01\x02", b"x"]
    assert len(results) == 400


async def test_concurrent_first_requests_share_one_connection() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        while True:
            request = await peer.expect_request()
            await peer.respond(request.stream_id, body=b"ok")

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Client() as client:
            async with anyio.create_task_group() as tg:
                for _ in range(50):
                    tg.start_soon(client.get, server.url + "/")
            assert server.connections == 1


async def test_goaway_every_100_requests_loses_none_of_5000_and_repeats_none() -> None:
    served: list[str] = []

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        count = last = 0
        while count < 100:
            for event in await peer.next_events():
                if isinstance(event, h2.events.RequestReceived) and count < 100:
                    path = dict(event.headers or [])[b":path"]
                    served.append(path.decode())
                    peer.h2.send_headers(event.stream_id, [(b":status", b"200")])
                    peer.h2.send_data(event.stream_id, path, end_stream=True)
                    count += 1
                    last = event.stream_id or 0
            await peer.flush()
        # Graceful shutdown: everything above the last served stream was never processed.
        await peer.goaway(last_stream_id=last)
        await peer.close()

    bodies: list[bytes] = []
    indexes = iter(range(5000))

    async def worker(client: h2any.Client, url: str) -> None:
        for index in indexes:
            response = await client.post(f"{url}/{index}", body=b"payload")
            bodies.append(await response.read())

    with anyio.fail_after(60):
        async with scripted_server(handler) as server, h2any.Client() as client:
            async with anyio.create_task_group() as tg:
                for _ in range(250):  # 250 requests in flight at any time
                    tg.start_soon(worker, client, server.url)
    assert sorted(bodies) == sorted(f"/{i}".encode() for i in range(5000))
    assert sorted(served) == sorted(f"/{i}" for i in range(5000))  # each processed once
    assert server.connections == 50


async def test_refused_stream_is_retried_whatever_the_method() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        first = await peer.expect_request()
        await peer.reset(first.stream_id, ErrorCodes.REFUSED_STREAM)
        second = await peer.expect_request()
        body = await peer.read_body(second.stream_id)
        await peer.respond(second.stream_id, body=b"got " + body)

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Client() as client:
            response = await client.post(server.url + "/", body=b"once")
            assert await response.read() == b"got once"


@pytest.mark.parametrize(("method", "retried"), [("GET", True), ("PUT", True), ("POST", False)])
async def test_lost_connection_retries_only_idempotent_requests_once(
    method: str, retried: bool
) -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        if peer is server.peers[0]:
            await peer.close(abort=True)  # may or may not have processed it
            return
        await peer.read_body(request.stream_id)
        await peer.respond(request.stream_id, body=b"second try")

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Client() as client:
            if retried:
                response = await client.request(method, server.url + "/", body=b"x")
                assert await response.read() == b"second try"
                assert server.connections == 2
            else:
                with pytest.raises(h2any.ConnectionClosed):
                    await client.request(method, server.url + "/", body=b"x")
                assert server.connections == 1


async def test_a_request_never_sent_on_a_lost_connection_is_retried_whatever_the_method() -> None:
    # One stream at a time: the second POST waits for a slot on the first connection, which
    # is then lost (a TCP reset, no GOAWAY). The first POST may have been processed, so it
    # fails; the second never went out, so it is sent on a new connection.
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake({SettingCodes.MAX_CONCURRENT_STREAMS: 1})
        request = await peer.expect_request()
        if peer is server.peers[0]:
            arrived.set()
            await waiting.wait()
            await peer.close(abort=True)
            return
        await peer.read_body(request.stream_id)
        await peer.respond(request.stream_id, body=b"sent once " + request.path.encode())

    arrived = anyio.Event()
    waiting = anyio.Event()
    outcomes: dict[str, object] = {}

    async def post(client: h2any.Client, path: str) -> None:
        try:
            response = await client.post(server.url + path, body=b"x")
            outcomes[path] = await response.read()
        except h2any.ConnectionClosed as exc:
            outcomes[path] = exc

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Client() as client:
            async with anyio.create_task_group() as tg:
                tg.start_soon(post, client, "/first")
                await arrived.wait()
                tg.start_soon(post, client, "/second")
                await anyio.wait_all_tasks_blocked()  # the second waits for a stream slot
                waiting.set()
    assert isinstance(outcomes["/first"], h2any.ConnectionClosed)
    assert outcomes["/second"] == b"sent once /second"
    assert server.connections == 2


async def test_a_non_replayable_body_is_not_retried() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.reset(request.stream_id, ErrorCodes.REFUSED_STREAM)

    async def pieces():
        yield b"gone once sent"

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Client() as client:
            with pytest.raises(h2any.StreamReset) as caught:
                await client.post(server.url + "/", body=pieces())
            assert caught.value.retryable


async def test_a_dead_connection_is_replaced_on_the_next_request() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.respond(request.stream_id, body=b"hello")
        if len(server.peers) == 1:
            await peer.close()  # the server drops the idle connection

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Client() as client:
            assert await (await client.get(server.url + "/")).read() == b"hello"
            await server.peers[0].wait_closed()
            assert await (await client.get(server.url + "/")).read() == b"hello"
            assert server.connections == 2


async def test_more_connections_open_when_saturated_if_allowed() -> None:
    both_in = anyio.Event()
    waiting: list[tuple[ScriptedPeer, int]] = []

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake({SettingCodes.MAX_CONCURRENT_STREAMS: 1})
        request = await peer.expect_request()
        waiting.append((peer, request.stream_id))
        if len(waiting) == 2:
            both_in.set()
        await both_in.wait()
        await peer.respond(request.stream_id, body=b"ok")

    with anyio.fail_after(10):
        async with (
            scripted_server(handler) as server,
            h2any.Client(max_connections_per_origin=2) as client,
        ):
            async with anyio.create_task_group() as tg:
                for _ in range(2):
                    tg.start_soon(client.get, server.url + "/")
            assert server.connections == 2
            assert client.connections == {server.url: 2}


async def test_idle_connections_are_closed_after_keepalive_expiry() -> None:
    closed = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.respond(request.stream_id, body=b"bye")
        await peer.wait_closed()
        closed.set()

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Client(keepalive_expiry=0.1) as client:
            await (await client.get(server.url + "/")).read()
            await closed.wait()
            assert client.connections == {}
            assert server.peers[0].goaway_received is not None


async def test_base_url_params_json_and_default_headers(hypercorn_server) -> None:
    with anyio.fail_after(10):
        async with h2any.Client(
            base_url=hypercorn_server.url_h2c + "/", headers={"x-default": "1", "x-both": "client"}
        ) as client:
            response = await client.get(
                "headers?a=1", params={"b": "2", "c": ["3", "4"]}, headers={"x-both": "request"}
            )
            seen = json.loads(await response.read())
            assert seen["query_string"] == "a=1&b=2&c=3&c=4"
            headers = dict(map(tuple, seen["headers"]))
            assert headers["x-default"] == "1"
            assert headers["x-both"] == "request"
            response = await client.post("/echo", json={"k": [1, 2]})
            assert json.loads(await response.read()) == {"k": [1, 2]}


async def test_one_shot_helpers(nghttpd) -> None:
    with anyio.fail_after(10):
        response = await h2any.get(nghttpd.url + "/hello.txt")
    assert response.status == 200
    assert response.content == b"hello, world\n"


async def test_requests_to_a_closed_client_are_refused(nghttpd) -> None:
    async with h2any.Client() as client:
        pass
    with pytest.raises(RuntimeError, match="async with"):
        await client.get(nghttpd.url + "/1b")


async def test_relative_url_without_base_url_is_invalid() -> None:
    async with h2any.Client() as client:
        with pytest.raises(h2any.InvalidRequest, match="not absolute"):
            await client.get("/relative")


async def test_client_waits_for_stream_slots_and_does_not_drop_pings() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake({SettingCodes.MAX_CONCURRENT_STREAMS: 2})
        for _ in range(10):
            request = await peer.expect_request()
            await peer.respond(request.stream_id, body=b"ok")
            await peer.ping()
            await peer.wait_for(lambda e: isinstance(e, h2.events.PingAckReceived))

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Client() as client:
            async with anyio.create_task_group() as tg:
                for _ in range(10):
                    tg.start_soon(client.get, server.url + "/")
            assert server.connections == 1


def test_sync_client_shared_by_threads_across_two_origins(nghttpd, hypercorn_server) -> None:

    import h2any.sync

    failures: list[BaseException] = []
    before = loop_thread_count()

    def work() -> None:
        try:
            for _ in range(50):
                assert client.get(nghttpd.url + "/1b").read() == b"x"
                assert client.get(hypercorn_server.url_h2c + "/bytes/2").read() == b"\x00\x01"
        except BaseException as exc:
            failures.append(exc)

    with h2any.sync.Client() as client:
        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert client.connections == {nghttpd.url: 1, hypercorn_server.url_h2c: 1}
    assert failures == []
    assert loop_thread_count() == before


async def test_a_request_s_own_connect_timeout_bounds_opening_its_connection() -> None:
    # A listener that never accepts: TCP connects (the backlog), TLS never answers. The
    # Client's connect timeout is 30 s; each request's own is far shorter, and the one that
    # waits for the connection the first is opening is bounded by its own too.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        url = f"https://127.0.0.1:{silent.getsockname()[1]}/"
        with anyio.fail_after(10):
            async with h2any.Client(timeout=h2any.Timeout(30)) as client:
                errors: list[BaseException] = []

                async def get(connect: float) -> None:
                    try:
                        await client.get(url, timeout=h2any.Timeout(30, connect=connect))
                    except h2any.ConnectTimeout as exc:
                        errors.append(exc)

                started = anyio.current_time()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(get, 0.5)
                    tg.start_soon(get, 0.2)
                elapsed = anyio.current_time() - started
    # (Whichever opened the connection, the other waited on it within its own bound; when
    # the 0.2 s one opened it, the other is handed that attempt's failure.)
    assert len(errors) == 2
    assert {str(exc).rsplit(" ", 2)[1] for exc in errors} <= {"0.2", "0.5"}
    assert elapsed < 5  # not the Client's 30 s
