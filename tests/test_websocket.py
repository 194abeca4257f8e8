"""WebSockets over HTTP/2 (RFC 8441) against real servers: hypercorn serving the tests'
own ASGI WebSocket app (``tests/ws_app.py``), and nghttpd, which does not announce
extended CONNECT. Every async test runs on asyncio and trio; the blocking facade from
threads."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator

import anyio
import pytest
from conftest import Certs, NghttpdServer
from ws_app import WsServer, ws_server

import h2any
import h2any.sync

pytestmark = pytest.mark.anyio

SIZES = [0, 1, 125, 126, 65535, 65536, 300_000, 1 << 20]


@pytest.fixture(scope="module")
def server() -> Iterator[WsServer]:
    with ws_server() as running:
        yield running


def payload(size: int) -> bytes:
    return bytes(range(256)) * (size // 256) + bytes(range(size % 256))


async def test_text_and_binary_messages_echo_from_0_bytes_to_1_mib(server: WsServer) -> None:
    with anyio.fail_after(30):
        async with h2any.Connection(server.url) as conn, conn.websocket("/echo") as ws:
            for size in SIZES:
                data = payload(size)
                await ws.send(data)
                assert await ws.receive() == data
                text = ("é" * size)[: size // 2]  # non-ASCII: 2 bytes each in UTF-8
                await ws.send(text)
                assert await ws.receive() == text
            # bytearray and memoryview are binary messages too.
            await ws.send(bytearray(b"ba"))
            await ws.send(memoryview(b"mv"))
            assert [await ws.receive(), await ws.receive()] == [b"ba", b"mv"]
        assert ws.close_code == 1000


async def test_wss_over_tls_with_alpn_h2(certs: Certs) -> None:
    with ws_server(certs) as own:
        assert own.url_tls is not None
        with anyio.fail_after(20):
            async with h2any.Connection(own.url_tls, verify=certs.ca_path) as conn:
                async with conn.websocket("/echo", subprotocols=["chat.v2"]) as ws:
                    assert ws.subprotocol == "chat.v2"
                    await ws.send(payload(100_000))
                    assert await ws.receive() == payload(100_000)
            async with h2any.Client(verify=certs.ca_path) as client:
                url = own.url_tls.replace("https://", "wss://") + "/close?code=4004"
                async with client.websocket(url) as ws:
                    with pytest.raises(h2any.WebSocketClosed):
                        await ws.receive()
                assert ws.close_code == 4004


async def test_the_server_chooses_among_the_offered_subprotocols(server: WsServer) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(server.url) as conn:
            async with conn.websocket("/echo", subprotocols=["chat.v3", "chat.v1"]) as ws:
                assert ws.subprotocol == "chat.v1"
                assert ws.response_headers["sec-websocket-protocol"] == "chat.v1"
            async with conn.websocket("/echo") as ws:
                assert ws.subprotocol is None


async def test_the_handshake_carries_version_subprotocols_and_headers(server: WsServer) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(server.url) as conn:
            async with conn.websocket(
                "/headers", subprotocols=["chat.v2", "x"], headers={"x-token": "t1"}
            ) as ws:
                seen = json.loads(await ws.receive())  # type: ignore[arg-type]
        assert seen["sec-websocket-version"] == "13"
        assert seen["sec-websocket-protocol"] == "chat.v2, x"
        assert seen["x-token"] == "t1"
        assert "accept-encoding" not in seen


async def test_a_server_initiated_close_carries_its_code_and_reason(server: WsServer) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(server.url) as conn:
            async with conn.websocket("/close?code=4001&reason=bye") as ws:
                with pytest.raises(h2any.WebSocketClosed) as caught:
                    await ws.receive()
                assert (caught.value.code, caught.value.reason) == (4001, "bye")
                assert caught.value.remote
                assert (ws.close_code, ws.close_reason) == (4001, "bye")
                with pytest.raises(h2any.WebSocketClosed):
                    await ws.send("too late")
            # The connection carries on (hypercorn's close was answered with a reset).
            response = await conn.request("GET", "/hello")
            assert await response.read() == b"hello"


async def test_async_for_reads_until_the_server_closes(server: WsServer) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(server.url) as conn, conn.websocket("/echo") as ws:
            for message in ["a", b"b", "close:1001:going away"]:
                await ws.send(message)
            assert [message async for message in ws] == ["a", b"b"]
            assert (ws.close_code, ws.close_reason) == (1001, "going away")


async def test_close_with_a_code_is_answered(server: WsServer) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(server.url) as conn:
            async with conn.websocket("/echo") as ws:
                await ws.close(4000, "done")
                assert (ws.close_code, ws.close_reason) == (4000, "done")
                await ws.close()  # again: nothing to do
                with pytest.raises(h2any.WebSocketClosed):
                    await ws.receive()
                with pytest.raises(ValueError, match="may not be sent"):
                    await ws.close(1006)
            assert await conn.ping() >= 0


async def test_ping_waits_for_the_matching_pong(server: WsServer) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(server.url) as conn, conn.websocket("/echo") as ws:
            assert await ws.ping(b"x") >= 0
            assert await ws.ping() >= 0  # random data
            async with anyio.create_task_group() as tg:
                for n in range(5):
                    tg.start_soon(ws.ping, b"p%d" % n)
            with pytest.raises(ValueError, match="125"):
                await ws.ping(b"x" * 126)


async def test_a_refusal_is_a_handshake_error_with_status_and_headers(server: WsServer) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(server.url) as conn:
            with pytest.raises(h2any.WebSocketHandshakeError, match="401") as caught:
                async with conn.websocket("/deny"):
                    pass
            assert caught.value.status == 401
            assert caught.value.headers["www-authenticate"] == 'Bearer realm="ws"'
            with pytest.raises(h2any.WebSocketHandshakeError) as caught:
                async with conn.websocket("/reject"):
                    pass
            assert caught.value.status == 403
            assert isinstance(caught.value, h2any.WebSocketError)
            assert isinstance(caught.value, h2any.H2anyError)


async def test_a_message_above_max_message_size_closes_with_1009(server: WsServer) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(server.url) as conn:
            async with conn.websocket("/big?size=100000", max_message_size=65536) as ws:
                with pytest.raises(h2any.WebSocketMessageTooBig):
                    await ws.receive()
                assert ws.close_code == 1009
            async with conn.websocket("/big?size=65536", max_message_size=65536) as ws:
                assert len(await ws.receive()) == 65536


async def test_cancelling_a_receive_leaves_the_websocket_usable(server: WsServer) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(server.url) as conn, conn.websocket("/echo") as ws:
            with anyio.move_on_after(0.05):
                await ws.receive()  # nothing comes
            async with anyio.create_task_group() as tg:
                tg.start_soon(ws.receive)
                await anyio.wait_all_tasks_blocked()
                tg.cancel_scope.cancel()
            await ws.send("still here")
            assert await ws.receive() == "still here"


async def test_leaving_the_block_with_an_error_resets_only_that_stream(server: WsServer) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(server.url) as conn:
            with pytest.raises(KeyError):  # noqa: PT012 (the error is raised in the block)
                async with conn.websocket("/echo") as ws:
                    await ws.send("x")
                    raise KeyError("boom")
            assert ws.close_code == 1006
            with anyio.CancelScope() as scope:
                async with conn.websocket("/echo") as ws:
                    scope.cancel()
                    await ws.receive()
            assert ws.close_code == 1006
            async with conn.websocket("/echo") as ws:
                await ws.send("fine")
                assert await ws.receive() == "fine"
            await conn.ping()  # the resets above were posted before it: all are done now
            assert conn.open_streams == 0


async def test_fifty_websockets_and_fifty_requests_share_one_connection() -> None:
    with ws_server() as own:  # a fresh server: it counts the connections it saw
        with anyio.fail_after(60):
            async with h2any.Connection(own.url) as conn:

                async def chat(n: int) -> None:
                    async with conn.websocket("/echo", subprotocols=["chat.v2"]) as ws:
                        for m in range(3):
                            await ws.send(f"{n}:{m}")
                            assert await ws.receive() == f"{n}:{m}"
                        await ws.send(payload(n * 1000))
                        assert await ws.receive() == payload(n * 1000)

                async def get() -> None:
                    response = await conn.request("GET", "/hello")
                    assert await response.read() == b"hello"

                async with anyio.create_task_group() as tg:
                    for n in range(50):
                        tg.start_soon(chat, n)
                        tg.start_soon(get)
                response = await conn.request("GET", "/clients")
                clients = json.loads(await response.read())
            assert len(clients) == 1
            assert len(own.clients()) == 1


async def test_client_websocket_uses_the_origins_pooled_connection() -> None:
    with ws_server() as own:
        with anyio.fail_after(20):
            async with h2any.Client() as client:
                url = own.url.replace("http://", "ws://") + "/echo"
                async with client.websocket(url, subprotocols=["chat.v1"]) as ws:
                    assert ws.subprotocol == "chat.v1"
                    response = await client.get(own.url + "/hello")
                    assert await response.read() == b"hello"
                    await ws.send("over ws://")
                    assert await ws.receive() == "over ws://"
                async with client.websocket(own.url + "/close?code=4003") as ws:
                    with pytest.raises(h2any.WebSocketClosed):
                        await ws.receive()
                assert ws.close_code == 4003
                assert list(client.connections.values()) == [1]  # one connection to the origin
            assert len(own.clients()) == 1


async def test_open_stream_with_protocol_is_an_extended_connect(server: WsServer) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(server.url) as conn:
            with pytest.raises(h2any.InvalidRequest, match="CONNECT"):
                conn.open_stream("GET", "/echo", protocol="websocket")
            with pytest.raises(h2any.InvalidRequest, match="protocol"):
                conn.open_stream("CONNECT", "/echo", protocol="web socket")
            headers = {"sec-websocket-version": "13"}
            async with conn.open_stream(
                "CONNECT", "/echo", headers=headers, protocol="websocket"
            ) as stream:
                response = await stream.response()
                assert response.status == 200


async def test_bad_arguments_are_refused_before_anything_is_sent(server: WsServer) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(server.url) as conn:
            with pytest.raises(h2any.InvalidRequest, match="subprotocol"):
                async with conn.websocket("/echo", subprotocols=["a b"]):
                    pass
            with pytest.raises(h2any.InvalidRequest, match="subprotocols="):
                async with conn.websocket("/echo", headers={"sec-websocket-protocol": "x"}):
                    pass
            with pytest.raises(ValueError, match="max_message_size"):
                async with conn.websocket("/echo", max_message_size=0):
                    pass
            async with conn.websocket("/echo") as ws:
                with pytest.raises(TypeError):
                    await ws.send(42)  # type: ignore[arg-type]


async def test_a_server_without_extended_connect_is_refused_at_once(
    nghttpd: NghttpdServer,
) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd.url) as conn:
            with pytest.raises(h2any.ExtendedConnectUnsupported, match="RFC 8441"):
                async with conn.websocket("/"):
                    pass
            response = await conn.request("GET", "/hello.txt")
            assert await response.read() == b"hello, world\n"


def test_import_h2any_does_not_import_wsproto() -> None:
    code = "import sys, h2any, h2any.sync; assert 'wsproto' not in sys.modules"
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)


async def test_without_wsproto_websocket_says_what_to_install(
    server: WsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "wsproto", None)
    async with h2any.Connection(server.url) as conn:
        with pytest.raises(ImportError, match=r"pip install 'h2any\[websockets\]'"):
            async with conn.websocket("/echo"):
                pass


# -- the blocking facade ----------------------------------------------------------------


def test_sync_websocket_from_two_threads(server: WsServer) -> None:
    count = 200
    received: list[str | bytes] = []
    with h2any.sync.Connection(server.url) as conn:
        with conn.websocket("/echo", subprotocols=["chat.v2"]) as ws:
            assert ws.subprotocol == "chat.v2"

            def reader() -> None:
                for _ in range(count):
                    received.append(ws.receive())

            thread = threading.Thread(target=reader)
            thread.start()
            for n in range(count):
                ws.send(f"m{n}" if n % 2 else b"b%d" % n)
            thread.join(20)
            assert not thread.is_alive()
            assert ws.ping(b"sync") >= 0
            ws.send("close:4002:sync bye")
            assert list(ws) == []
            assert (ws.close_code, ws.close_reason) == (4002, "sync bye")
        assert received == [f"m{n}" if n % 2 else b"b%d" % n for n in range(count)]
        with pytest.raises(h2any.WebSocketHandshakeError):
            with conn.websocket("/reject"):
                pass
        assert conn.request("GET", "/hello").read() == b"hello"


def test_sync_websocket_closes_on_leaving_and_resets_on_error(server: WsServer) -> None:
    with h2any.sync.Connection(server.url, backend="trio") as conn:
        with conn.websocket("/echo") as ws:
            ws.send(b"x")
            assert ws.receive() == b"x"
        assert ws.close_code == 1000
        with pytest.raises(RuntimeError, match="boom"):
            with conn.websocket("/echo") as ws:
                raise RuntimeError("boom")
        assert ws.close_code == 1006
        assert conn.request("GET", "/hello").read() == b"hello"


def test_sync_client_websocket_shares_the_origin_connection(server: WsServer) -> None:
    with h2any.sync.Client() as client:
        assert client.get(server.url + "/hello").read() == b"hello"
        ws_url = server.url.replace("http://", "ws://", 1)
        with client.websocket(ws_url + "/echo", subprotocols=["chat.v2"]) as ws:
            assert ws.subprotocol == "chat.v2"
            ws.send("hi")
            assert ws.receive() == "hi"
        assert list(client.connections.values()) == [1]  # one connection to the origin
