"""``h2any.httpx``: httpx's own API, through h2any's transports, against real peers.

Peers: nghttpd (h2c and TLS: files, 1,000 requests on one connection), hypercorn
(``tests/asgi_app.py``: echo, SHA-256 of a streamed upload, full-duplex echo, trailers),
the embedded ``h2any.testing.serve()`` (its ``stats`` count connections and client resets;
small apps of our own for redirects, cookies and requests that hang), the scripted h2 server
(``tests/scripted.py``) for faults, and Python's ``http.server`` as an HTTP/1.1-only server.
Every async test runs on asyncio and trio (httpx.AsyncClient runs on both); the blocking
transport runs from 8 threads.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio
import anyio.from_thread
import h2.settings
import httpx
import pytest
from h2.errors import ErrorCodes
from scripted import ScriptedPeer, scripted_server

import h2any
import h2any.httpx
import h2any.sync
from h2any.testing import Request, Response, serve

pytestmark = pytest.mark.anyio

TIMEOUT = 20  # hang guard for each test's body, in seconds


def transport(**options: object) -> h2any.httpx.AsyncTransport:
    """An AsyncTransport that ignores the environment's proxies (the tests run on loopback)."""
    return h2any.httpx.AsyncTransport(trust_env=False, **options)  # type: ignore[arg-type]


def async_client(**options: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport(), trust_env=False, **options)  # type: ignore[arg-type]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- import ---------------------------------------------------------------------------------


def test_importing_h2any_does_not_import_httpx() -> None:
    code = (
        "import sys, h2any, h2any.sync, h2any.testing\n"
        "assert 'httpx' not in sys.modules, sorted(m for m in sys.modules if 'httpx' in m)\n"
        "import h2any.httpx\n"
        "assert 'httpx' in sys.modules\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_without_httpx_the_import_error_says_what_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['httpx'] = None  # as if it were not installed\n"
        "try:\n"
        "    import h2any.httpx\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "pip install 'h2any[httpx]'" in result.stdout


def test_transports_are_httpx_transports() -> None:
    assert issubclass(h2any.httpx.AsyncTransport, httpx.AsyncBaseTransport)
    assert issubclass(h2any.httpx.Transport, httpx.BaseTransport)
    assert h2any.httpx.__all__ == ("TRAILERS", "AsyncTransport", "Transport")


def test_bad_options_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="max_connections_per_origin"):
        h2any.httpx.AsyncTransport(max_connections_per_origin=0)
    with pytest.raises(ValueError, match="initial_window_size"):
        h2any.httpx.Transport(initial_window_size=0)
    with pytest.raises(h2any.InvalidRequest):
        h2any.httpx.AsyncTransport(verify="/no/such/ca-bundle.pem")
    with pytest.raises(ValueError, match="headers"):
        h2any.httpx.AsyncTransport(proxy=httpx.Proxy("http://proxy:3128", headers={"x-a": "1"}))


def test_proxy_given_the_httpx_way() -> None:
    from h2any.httpx import _proxy_url

    assert _proxy_url("http://proxy.corp:3128") == "http://proxy.corp:3128"
    assert _proxy_url(httpx.URL("http://proxy.corp:3128")) == "http://proxy.corp:3128"
    with_auth = httpx.Proxy("http://proxy.corp:3128", auth=("me", "p@ss"))
    assert _proxy_url(with_auth) == "http://me:p%40ss@proxy.corp:3128"
    in_url = httpx.Proxy("http://me:secret@proxy.corp:3128")
    assert _proxy_url(in_url) == "http://me:secret@proxy.corp:3128"


@pytest.fixture(scope="module")
def tinyproxy_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """tinyproxy (BasicAuth), as tests/test_proxy.py starts it."""
    from test_proxy import _start_tinyproxy

    proxy = _start_tinyproxy(tmp_path_factory.mktemp("tinyproxy-httpx"), True)
    try:
        yield proxy
    finally:
        proxy.stop()


async def test_requests_tunnel_through_an_httpx_proxy_with_auth(
    tinyproxy_with_auth, nghttpd_tls, certs
) -> None:
    from test_proxy import PASSWORD, USER

    port = tinyproxy_with_auth.port  # type: ignore[attr-defined]
    proxy = httpx.Proxy(f"http://127.0.0.1:{port}", auth=(USER, PASSWORD))
    wrong = httpx.Proxy(f"http://127.0.0.1:{port}", auth=(USER, "wrong"))
    with anyio.fail_after(TIMEOUT):
        the_transport = transport(proxy=proxy, verify=certs.ca_path)
        async with httpx.AsyncClient(transport=the_transport) as client:
            response = await client.get(f"{nghttpd_tls.url}/hello.txt")
            assert response.content == b"hello, world\n"
            assert response.http_version == "HTTP/2"
        async with httpx.AsyncClient(transport=transport(proxy=wrong)) as client:
            with pytest.raises(httpx.ProxyError) as info:
                await client.get(f"{nghttpd_tls.url}/hello.txt")
    assert isinstance(info.value.__cause__, h2any.ProxyError)
    assert info.value.__cause__.status in (401, 407)  # tinyproxy answers 401
    assert "wrong" not in str(info.value)


# -- requests and responses -----------------------------------------------------------------


async def test_get_over_h2c_and_tls_against_nghttpd(nghttpd, nghttpd_tls, certs) -> None:
    with anyio.fail_after(TIMEOUT):
        async with async_client() as client:
            response = await client.get(f"{nghttpd.url}/hello.txt")
            assert response.status_code == 200
            assert response.content == b"hello, world\n"
            assert response.http_version == "HTTP/2"
            assert response.extensions["http_version"] == b"HTTP/2"
            assert response.reason_phrase == "OK"
            assert response.headers["content-length"] == "13"
            missing = await client.get(f"{nghttpd.url}/no-such-file")
            assert missing.status_code == 404
            assert missing.is_closed
        tls = h2any.httpx.AsyncTransport(verify=certs.ca_path, trust_env=False)
        async with httpx.AsyncClient(transport=tls) as client:
            response = await client.get(f"{nghttpd_tls.url}/hello.txt")
            assert response.content == b"hello, world\n"
            assert response.http_version == "HTTP/2"


async def test_request_headers_reach_the_server(hypercorn_server) -> None:
    with anyio.fail_after(TIMEOUT):
        async with async_client(headers={"X-Default": "d"}) as client:
            response = await client.get(
                f"{hypercorn_server.url_h2c}/headers",
                params={"q": "1", "r": "x"},
                headers={"X-Custom": "yes", "Accept": "application/json"},
            )
    seen = response.json()
    headers = dict(seen["headers"])
    assert headers["x-custom"] == "yes"
    assert headers["x-default"] == "d"
    assert headers["accept"] == "application/json"
    assert headers["user-agent"].startswith("python-httpx/")
    assert "connection" not in headers
    assert "transfer-encoding" not in headers
    assert seen["query_string"] == "q=1&r=x"
    assert seen["method"] == "GET"


async def test_repeated_and_changing_headers_each_reach_the_server(hypercorn_server) -> None:
    # The transport keeps the header blocks it converted (per transport): the same block
    # again, then a different one, then the first again, and a block too large to keep.
    url = f"{hypercorn_server.url_h2c}/headers"
    big = "b" * 3000
    sent = [{"X-A": "1"}, {"X-A": "1"}, {"X-A": "2", "X-B": "b"}, {"X-A": "1"}]
    sent += [{"X-Big": big}, {"X-Big": big}]
    with anyio.fail_after(TIMEOUT):
        async with async_client() as client:
            seen = [
                dict((await client.get(url, headers=headers)).json()["headers"]) for headers in sent
            ]
    assert [h.get("x-a") for h in seen] == ["1", "1", "2", "1", None, None]
    assert [h.get("x-b") for h in seen] == [None, None, "b", None, None, None]
    assert seen[4]["x-big"] == seen[5]["x-big"] == big
    assert all("connection" not in h for h in seen)


async def test_each_response_has_headers_of_its_own(nghttpd) -> None:
    # The transport keeps the httpx.Headers of response header blocks it saw (nghttpd
    # answers the same file with the same block): changing one response's headers must
    # not show in the next response's.
    with anyio.fail_after(TIMEOUT):
        async with async_client() as client:
            first = await client.get(f"{nghttpd.url}/hello.txt")
            first.headers["x-added"] = "1"
            del first.headers["content-length"]
            second = await client.get(f"{nghttpd.url}/hello.txt")
            missing = await client.get(f"{nghttpd.url}/no-such-file")
    assert "x-added" not in second.headers
    assert second.headers["content-length"] == "13"
    assert second.content == b"hello, world\n"
    assert missing.status_code == 404
    assert "x-added" not in missing.headers


async def test_post_bytes_json_and_form(hypercorn_server) -> None:
    url = f"{hypercorn_server.url_h2c}/echo"
    with anyio.fail_after(TIMEOUT):
        async with async_client() as client:
            response = await client.post(url, content=b"payload")
            assert response.content == b"payload"
            assert response.headers["x-body-length"] == "7"
            response = await client.post(url, json={"a": [1, 2]})
            assert json.loads(response.content) == {"a": [1, 2]}
            response = await client.put(url, data={"k": "v w"})
            assert response.content == b"k=v+w"
            assert response.headers["x-method"] == "PUT"
            response = await client.post(url, content=b"")
            assert response.content == b""


async def test_streamed_upload_is_sent_as_it_is_produced(hypercorn_server) -> None:
    size, piece = 8 << 20, 64 * 1024
    expected = hashlib.sha256()
    produced = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal produced
        for i in range(size // piece):
            data = bytes([i % 256]) * piece
            expected.update(data)
            produced += len(data)
            yield data

    with anyio.fail_after(TIMEOUT):
        async with async_client() as client:
            response = await client.post(f"{hypercorn_server.url_h2c}/sha256", content=body())
    assert response.json() == {"length": size, "sha256": expected.hexdigest()}
    assert produced == size


async def test_multipart_file_upload(hypercorn_server, tmp_path) -> None:
    path = tmp_path / "upload.bin"
    path.write_bytes(os.urandom(3 << 20))
    with anyio.fail_after(TIMEOUT):
        async with async_client() as client:
            with path.open("rb") as file:
                request = client.build_request(
                    "POST",
                    f"{hypercorn_server.url_h2c}/sha256",
                    files={"file": ("upload.bin", file)},
                    data={"name": "value"},
                )
                # What goes on the wire (httpx's multipart stream rewinds its files).
                wire = b"".join(request.stream)  # type: ignore[arg-type]
                response = await client.send(request)
    assert response.json() == {"length": len(wire), "sha256": hashlib.sha256(wire).hexdigest()}
    assert len(wire) > 3 << 20


async def test_full_duplex_request_and_response_streams(hypercorn_server) -> None:
    """Each request piece is produced only after the echo of the previous one was read: the
    body is neither slurped before sending nor the response held back until it ends."""
    send, receive = anyio.create_memory_object_stream[bytes](1)
    rounds = 5

    async def body() -> AsyncIterator[bytes]:
        for i in range(rounds):
            yield f"piece {i};".encode()
            with anyio.fail_after(5):
                await receive.receive()  # the echo of this piece was read

    with anyio.fail_after(TIMEOUT):
        async with async_client() as client, send, receive:
            async with client.stream(
                "POST", f"{hypercorn_server.url_h2c}/echo-chunks", content=body()
            ) as response:
                assert response.status_code == 200
                received = b""
                i = 0
                async for chunk in response.aiter_raw():
                    received += chunk
                    while i < rounds and f"piece {i};".encode() in received:
                        i += 1
                        await send.send(b"ok")
    assert received == b"".join(f"piece {i};".encode() for i in range(rounds))


async def test_streamed_download_with_its_digest(nghttpd) -> None:
    digest = hashlib.sha256()
    with anyio.fail_after(TIMEOUT):
        async with async_client() as client:
            async with client.stream("GET", f"{nghttpd.url}/16m.bin") as response:
                assert response.headers["content-length"] == str(16 << 20)
                async for chunk in response.aiter_bytes():
                    digest.update(chunk)
                assert response.num_bytes_downloaded == 16 << 20
    assert digest.hexdigest() == nghttpd.docroot.sha256["16m.bin"]


async def test_gzip_is_decoded_by_httpx(hypercorn_server) -> None:
    with anyio.fail_after(TIMEOUT):
        async with async_client() as client:
            response = await client.get(f"{hypercorn_server.url_h2c}/encoded/gzip?n=5000")
            raw = await client.get(
                f"{hypercorn_server.url_h2c}/encoded/gzip?n=5000",
                headers={"accept-encoding": "identity"},
            )
    assert response.headers["content-encoding"] == "gzip"
    assert len(response.content) == 5000
    assert raw.headers["content-encoding"] == "gzip"  # the app sends gzip anyway


async def test_trailers_in_extensions(hypercorn_server) -> None:
    with anyio.fail_after(TIMEOUT):
        async with async_client() as client:
            async with client.stream(
                "GET", f"{hypercorn_server.url_h2c}/trailers", headers={"te": "trailers"}
            ) as response:
                assert await response.aread() == b"body"
                trailers = response.extensions[h2any.httpx.TRAILERS]
            plain = await client.get(f"{hypercorn_server.url_h2c}/bytes/10")
    assert isinstance(trailers, httpx.Headers)
    assert trailers["x-trailer-2"]
    assert "x-checksum" in trailers
    assert h2any.httpx.TRAILERS not in plain.extensions


async def test_trailers_after_a_streamed_body() -> None:
    """Trailers that follow a body still streaming land in the extensions at its end."""
    go = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.respond(request.stream_id, body=b"first ", end=False)
        await go.wait()
        await peer.send_data(request.stream_id, b"second")
        peer.h2.send_headers(request.stream_id, [(b"x-checksum", b"c0ffee")], end_stream=True)
        await peer.flush()

    with anyio.fail_after(TIMEOUT):
        async with scripted_server(handler) as server, async_client() as client:
            async with client.stream("GET", f"{server.url}/") as response:
                assert h2any.httpx.TRAILERS not in response.extensions  # not yet
                go.set()
                assert await response.aread() == b"first second"
                trailers = response.extensions[h2any.httpx.TRAILERS]
    assert trailers["x-checksum"] == "c0ffee"


async def test_event_hooks_redirects_and_cookies_are_httpx_s() -> None:
    """The transport sends one request per call: httpx follows the redirect, runs the hooks
    for both requests and sends the cookie it stored (once: the Client's own jar is not
    used)."""
    seen: list[tuple[str, str | None]] = []

    async def app(request: Request) -> Response:
        seen.append((request.path, request.header("cookie")))
        if request.path == "/start":
            return Response(
                302, [("location", "/end"), ("set-cookie", "session=abc; Path=/")], b"moved"
            )
        return Response(200, [("content-type", "text/plain")], b"end")

    hooks: list[str] = []

    async def on_request(request: httpx.Request) -> None:
        hooks.append(f"request {request.url.path}")

    async def on_response(response: httpx.Response) -> None:
        hooks.append(f"response {response.status_code}")

    with anyio.fail_after(TIMEOUT):
        async with (
            serve(app) as server,
            async_client(
                event_hooks={"request": [on_request], "response": [on_response]},
                follow_redirects=True,
            ) as client,
        ):
            response = await client.get(f"{server.url}/start")
            assert response.text == "end"
            assert [r.status_code for r in response.history] == [302]
            again = await client.get(f"{server.url}/end")
            assert again.status_code == 200
            not_followed = await client.get(f"{server.url}/start", follow_redirects=False)
            assert not_followed.status_code == 302
            assert not_followed.next_request is not None
    assert hooks == [
        "request /start",
        "response 302",
        "request /end",
        "response 200",
        "request /end",
        "response 200",
        "request /start",
        "response 302",
    ]
    assert seen == [
        ("/start", None),
        ("/end", "session=abc"),
        ("/end", "session=abc"),
        ("/start", "session=abc"),
    ]


async def test_basic_auth_is_httpx_s(hypercorn_server) -> None:
    with anyio.fail_after(TIMEOUT):
        async with async_client(auth=("user", "pass")) as client:
            response = await client.get(f"{hypercorn_server.url_h2c}/headers")
    headers = dict(response.json()["headers"])
    assert headers["authorization"] == "Basic dXNlcjpwYXNz"


# -- one connection -------------------------------------------------------------------------


async def test_a_thousand_concurrent_requests_share_one_connection(nghttpd) -> None:
    the_transport = transport()
    with anyio.fail_after(60):
        async with serve() as server, httpx.AsyncClient(transport=the_transport) as client:
            bodies: list[bytes] = []

            async def one(url: str) -> None:
                response = await client.get(url)
                assert response.status_code == 200
                bodies.append(response.content)

            async with anyio.create_task_group() as tg:
                for i in range(1000):
                    tg.start_soon(one, f"{server.url}/bytes/{i % 7}")
            assert server.stats.connections == 1
            assert server.stats.requests == 1000
            async with anyio.create_task_group() as tg:
                for _ in range(1000):
                    tg.start_soon(one, f"{nghttpd.url}/1b")
            client_of = the_transport.client
            assert client_of is not None
            assert client_of.connections_opened == 2  # one per origin
            assert client_of.connections == {server.url: 1, nghttpd.url: 1}
    assert sorted(set(bodies)) == sorted(
        {bytes(i % 251 for i in range(n)) for n in range(7)} | {b"x"}
    )
    assert len(bodies) == 2000


# -- cancellation ---------------------------------------------------------------------------


@asynccontextmanager
async def hanging_server() -> AsyncIterator[tuple[object, anyio.Event]]:
    """A server whose ``/hang`` never answers (``arrived`` is set when it is called); other
    paths are the default app's."""
    arrived = anyio.Event()

    async def app(request: Request) -> Response:
        if request.path == "/hang":
            arrived.set()
            await anyio.sleep_forever()
        from h2any.testing import default_app

        return await default_app(request)

    async with serve(app) as server:
        yield server, arrived


async def test_cancelled_request_resets_its_stream() -> None:
    with anyio.fail_after(TIMEOUT):
        async with hanging_server() as (server, arrived), async_client() as client:
            url = server.url  # type: ignore[attr-defined]
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.get, f"{url}/hang")
                await arrived.wait()
                tg.cancel_scope.cancel()
            # RST_STREAM went out before this request's HEADERS, on the same connection.
            response = await client.get(f"{url}/bytes/3")
            assert response.content == bytes([0, 1, 2])
            stats = server.stats  # type: ignore[attr-defined]
            assert stats.streams_reset == 1
            assert stats.connections == 1


async def test_closing_an_unread_response_resets_its_stream() -> None:
    with anyio.fail_after(TIMEOUT):
        async with serve() as server, async_client() as client:
            # (Not partly read: httpx's own iterators would then be left to the garbage
            # collector, a ResourceWarning on trio.)
            async with client.stream("GET", f"{server.url}/bytes/{32 << 20}") as response:
                assert response.status_code == 200
            assert response.is_closed
            response = await client.get(f"{server.url}/bytes/3")
            assert response.content == bytes([0, 1, 2])
            assert server.stats.streams_reset == 1
            assert server.stats.connections == 1


# -- timeouts -------------------------------------------------------------------------------


async def _answer_nothing(peer: ScriptedPeer) -> None:
    await peer.handshake()
    await peer.expect_request()


async def test_read_timeout_is_httpx_read_timeout() -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            scripted_server(_answer_nothing) as server,
            async_client(timeout=httpx.Timeout(10, read=0.2)) as client,
        ):
            with pytest.raises(httpx.ReadTimeout) as info:
                await client.get(f"{server.url}/")
    assert isinstance(info.value.__cause__, h2any.ReadTimeout)
    assert info.value.request.url == f"{server.url}/"


async def test_read_timeout_mid_body_is_httpx_read_timeout() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.respond(request.stream_id, body=b"part", end=False)

    with anyio.fail_after(TIMEOUT):
        async with (
            scripted_server(handler) as server,
            async_client(timeout=httpx.Timeout(10, read=0.2)) as client,
        ):
            async with client.stream("GET", f"{server.url}/") as response:
                with pytest.raises(httpx.ReadTimeout) as info:
                    await response.aread()
    assert isinstance(info.value.__cause__, h2any.ReadTimeout)


async def test_pool_timeout_is_httpx_pool_timeout() -> None:
    first_arrived = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake({h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1})
        await peer.expect_request()
        first_arrived.set()

    with anyio.fail_after(TIMEOUT):
        async with (
            scripted_server(handler) as server,
            async_client(timeout=httpx.Timeout(10, read=5, pool=0.3)) as client,
        ):
            async with anyio.create_task_group() as tg:
                tg.start_soon(client.get, f"{server.url}/first")
                await first_arrived.wait()
                # The first request holds the only stream slot.
                with pytest.raises(httpx.PoolTimeout) as info:
                    await client.get(f"{server.url}/second")
                tg.cancel_scope.cancel()
    assert isinstance(info.value.__cause__, h2any.PoolTimeout)


async def test_write_timeout_is_httpx_write_timeout() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1024})
        await anyio.sleep_forever()  # never reads, never opens the window

    with anyio.fail_after(TIMEOUT):
        async with (
            scripted_server(handler) as server,
            async_client(timeout=httpx.Timeout(10, write=0.3)) as client,
        ):
            with pytest.raises(httpx.WriteTimeout) as info:
                await client.post(f"{server.url}/upload", content=b"x" * (1 << 20))
    assert isinstance(info.value.__cause__, h2any.WriteTimeout)


@asynccontextmanager
async def silent_tcp_server() -> AsyncIterator[int]:
    """A TCP server that accepts and then says nothing (a TLS handshake never completes)."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    accepted: list[object] = []

    async def hold(stream: anyio.abc.SocketStream) -> None:
        accepted.append(stream)
        async with stream:
            await anyio.sleep_forever()

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, hold)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


async def test_connect_timeout_is_httpx_connect_timeout() -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            silent_tcp_server() as port,
            async_client(timeout=httpx.Timeout(10, connect=0.3)) as client,
        ):
            with pytest.raises(httpx.ConnectTimeout) as info:
                await client.get(f"https://127.0.0.1:{port}/")
    assert isinstance(info.value.__cause__, h2any.ConnectTimeout)


# -- errors ---------------------------------------------------------------------------------


async def test_refused_connection_is_httpx_connect_error() -> None:
    with anyio.fail_after(TIMEOUT):
        async with async_client() as client:
            with pytest.raises(httpx.ConnectError) as info:
                await client.get(f"http://127.0.0.1:{_closed_port()}/")
    assert isinstance(info.value.__cause__, h2any.ConnectError)


async def test_untrusted_certificate_is_httpx_connect_error(nghttpd_tls) -> None:
    with anyio.fail_after(TIMEOUT):
        async with async_client() as client:
            with pytest.raises(httpx.ConnectError) as info:
                await client.get(f"{nghttpd_tls.url}/hello.txt")
    assert isinstance(info.value.__cause__, h2any.TLSError)


async def test_unreachable_proxy_is_httpx_proxy_error(nghttpd) -> None:
    proxy = f"http://127.0.0.1:{_closed_port()}"
    with anyio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(transport=transport(proxy=proxy)) as client:
            with pytest.raises(httpx.ProxyError) as info:
                await client.get(f"{nghttpd.url}/hello.txt")
    assert isinstance(info.value.__cause__, h2any.ProxyError)


async def test_stream_reset_by_the_server_is_remote_protocol_error() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.reset(request.stream_id, ErrorCodes.INTERNAL_ERROR)

    with anyio.fail_after(TIMEOUT):
        async with scripted_server(handler) as server, async_client() as client:
            with pytest.raises(httpx.RemoteProtocolError) as info:
                await client.get(f"{server.url}/")
    assert isinstance(info.value.__cause__, h2any.StreamReset)
    assert "INTERNAL_ERROR" in str(info.value)


async def test_goaway_mid_body_is_remote_protocol_error() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.respond(request.stream_id, body=b"part", end=False)
        await peer.goaway(ErrorCodes.INTERNAL_ERROR, last_stream_id=0)
        await peer.close()

    with anyio.fail_after(TIMEOUT):
        async with scripted_server(handler) as server, async_client() as client:
            async with client.stream("GET", f"{server.url}/") as response:
                with pytest.raises(httpx.RemoteProtocolError) as info:
                    await response.aread()
    assert isinstance(info.value.__cause__, h2any.ConnectionClosed)


async def test_connection_lost_mid_body_is_read_error() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.respond(request.stream_id, body=b"part", end=False)
        await peer.close(abort=True)

    with anyio.fail_after(TIMEOUT):
        async with scripted_server(handler) as server, async_client() as client:
            async with client.stream("GET", f"{server.url}/") as response:
                with pytest.raises(httpx.ReadError) as info:
                    await response.aread()
    assert isinstance(info.value.__cause__, h2any.ConnectionClosed)
    assert isinstance(info.value, httpx.TransportError)


async def test_connection_lost_during_upload_is_write_error() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        await peer.expect_request()
        await peer.close(abort=True)

    async def body() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 65536

    with anyio.fail_after(TIMEOUT):
        async with scripted_server(handler) as server, async_client() as client:
            with pytest.raises(httpx.WriteError) as info:
                await client.post(f"{server.url}/upload", content=body())
    assert isinstance(info.value.__cause__, h2any.ConnectionClosed)


async def test_invalid_request_is_local_protocol_error(nghttpd) -> None:
    with anyio.fail_after(TIMEOUT):
        async with async_client() as client:
            with pytest.raises(httpx.LocalProtocolError) as info:
                await client.get(f"{nghttpd.url}/", headers={"bad header": "x"})
            assert isinstance(info.value.__cause__, h2any.InvalidRequest)
            with pytest.raises(httpx.UnsupportedProtocol):
                await client.get("ftp://127.0.0.1/file")
            # The connection is still good.
            assert (await client.get(f"{nghttpd.url}/1b")).content == b"x"


# -- HTTP/1.1 -------------------------------------------------------------------------------


class _Http11Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = f"http/1.1 says {self.path}".encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def http11_server() -> Iterator[str]:
    """Python's http.server (HTTP/1.1 only) in a thread; yields its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Http11Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="http11-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_http11_only_server_through_the_transport() -> None:
    """The Client falls back to HTTP/1.1 when the server does not speak HTTP/2: httpx sees
    ``http_version`` HTTP/1.1 and the reason phrase the server sent."""
    with http11_server() as url:
        with anyio.fail_after(TIMEOUT):
            async with async_client() as client:
                response = await client.get(f"{url}/page")
                again = await client.get(f"{url}/again")
    assert response.status_code == 200
    assert response.text == "http/1.1 says /page"
    assert response.http_version == "HTTP/1.1"
    assert response.extensions["http_version"] == b"HTTP/1.1"
    assert response.reason_phrase == "OK"
    assert again.text == "http/1.1 says /again"


async def test_http11_refused_when_http1_is_off() -> None:
    with http11_server() as url:
        with anyio.fail_after(TIMEOUT):
            async with httpx.AsyncClient(transport=transport(http1=False)) as client:
                with pytest.raises(httpx.ConnectError) as info:
                    await client.get(f"{url}/page")
    assert isinstance(info.value.__cause__, h2any.ConnectError)


async def test_http1_only_when_http2_is_off(hypercorn_server) -> None:
    with anyio.fail_after(TIMEOUT):
        async with httpx.AsyncClient(transport=transport(http2=False)) as client:
            response = await client.post(f"{hypercorn_server.url_h2c}/echo", content=b"one")
            streamed = await client.get(f"{hypercorn_server.url_h2c}/stream?chunks=3&size=5")
    assert response.http_version == "HTTP/1.1"
    assert response.content == b"one"
    assert streamed.content == b"00000" + b"11111" + b"22222"


# -- lifecycle ------------------------------------------------------------------------------


async def test_client_used_without_async_with_and_closed(nghttpd) -> None:
    the_transport = transport()
    client = httpx.AsyncClient(transport=the_transport)
    with anyio.fail_after(TIMEOUT):
        try:
            assert (await client.get(f"{nghttpd.url}/1b")).content == b"x"
        finally:
            await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.get(f"{nghttpd.url}/1b")


async def test_transport_closed_before_any_request() -> None:
    the_transport = transport()
    await the_transport.aclose()
    async with httpx.AsyncClient(transport=the_transport) as client:
        with pytest.raises(RuntimeError, match="closed"):
            await client.get("http://127.0.0.1:1/")


# -- the blocking transport -----------------------------------------------------------------


def test_one_transport_across_event_loops(nghttpd) -> None:
    """A transport used in one event loop, then in another (the first has ended): the new
    loop gets connections of its own; the old ones were closed with their loop."""
    the_transport = transport()

    async def fetch() -> bytes:
        client = httpx.AsyncClient(transport=the_transport)
        response = await client.get(f"{nghttpd.url}/1b")
        assert the_transport.client is not None
        assert the_transport.client.connections == {nghttpd.url: 1}
        return response.content

    assert anyio.run(fetch, backend="asyncio") == b"x"
    assert anyio.run(fetch, backend="trio") == b"x"
    assert anyio.run(fetch, backend="asyncio") == b"x"

    async def close() -> None:
        await the_transport.aclose()

    anyio.run(close)


def test_sync_client_from_eight_threads(nghttpd, hypercorn_server) -> None:
    the_transport = h2any.httpx.Transport(trust_env=False)
    errors: list[BaseException] = []
    results: list[bytes] = []
    start = threading.Barrier(8)

    def work(n: int) -> None:
        try:
            start.wait(10)
            for i in range(25):
                response = client.get(f"{nghttpd.url}/hello.txt")
                assert response.http_version == "HTTP/2"
                results.append(response.content)
                echoed = client.post(f"{hypercorn_server.url_h2c}/echo", content=f"{n}-{i}")
                assert echoed.content == f"{n}-{i}".encode()
        except BaseException as exc:
            errors.append(exc)

    with httpx.Client(transport=the_transport) as client:
        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
        assert not errors, errors
        assert the_transport.client is not None
        assert the_transport.client.connections == {
            nghttpd.url: 1,
            hypercorn_server.url_h2c: 1,
        }
    assert results == [b"hello, world\n"] * 200


def test_sync_streaming_both_ways(nghttpd, hypercorn_server) -> None:
    size, piece = 4 << 20, 64 * 1024
    expected = hashlib.sha256()

    def body() -> Iterator[bytes]:
        for i in range(size // piece):
            data = bytes([i % 256]) * piece
            expected.update(data)
            yield data

    with httpx.Client(transport=h2any.httpx.Transport(trust_env=False)) as client:
        response = client.post(f"{hypercorn_server.url_h2c}/sha256", content=body())
        assert response.json() == {"length": size, "sha256": expected.hexdigest()}
        digest = hashlib.sha256()
        with client.stream("GET", f"{nghttpd.url}/16m.bin") as streamed:
            for chunk in streamed.iter_bytes():
                digest.update(chunk)
        assert digest.hexdigest() == nghttpd.docroot.sha256["16m.bin"]
        with client.stream("GET", f"{nghttpd.url}/16m.bin") as streamed:
            assert next(streamed.iter_raw())  # then closed unread: the stream is reset
        assert client.get(f"{nghttpd.url}/1b").content == b"x"
        trailers = client.get(f"{hypercorn_server.url_h2c}/trailers", headers={"te": "trailers"})
        assert "x-checksum" in trailers.extensions[h2any.httpx.TRAILERS]


def test_sync_close_of_an_unread_response_resets_its_stream() -> None:
    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve()) as server,
    ):
        with httpx.Client(transport=h2any.httpx.Transport(trust_env=False), timeout=10) as client:
            with client.stream("GET", f"{server.url}/bytes/{32 << 20}") as response:
                assert response.status_code == 200
            # RST_STREAM went out before this request's HEADERS, on the same connection.
            assert client.get(f"{server.url}/bytes/3").content == bytes([0, 1, 2])
        assert server.stats.streams_reset == 1
        assert server.stats.connections == 1


def test_sync_read_timeout_is_httpx_read_timeout() -> None:
    async def app(request: Request) -> Response:
        await anyio.sleep_forever()
        raise AssertionError("unreachable")

    with (
        anyio.from_thread.start_blocking_portal() as portal,
        portal.wrap_async_context_manager(serve(app)) as server,
        httpx.Client(
            transport=h2any.httpx.Transport(trust_env=False), timeout=httpx.Timeout(5, read=0.3)
        ) as client,
    ):
        with pytest.raises(httpx.ReadTimeout) as info:
            client.get(f"{server.url}/hang")
        assert isinstance(info.value.__cause__, h2any.ReadTimeout)
        assert info.value.request.url.path == "/hang"


def test_sync_errors_are_httpx_s(nghttpd) -> None:
    with httpx.Client(
        transport=h2any.httpx.Transport(trust_env=False), timeout=httpx.Timeout(5)
    ) as client:
        with pytest.raises(httpx.ConnectError) as info:
            client.get(f"http://127.0.0.1:{_closed_port()}/")
        assert isinstance(info.value.__cause__, h2any.ConnectError)
        with pytest.raises(httpx.LocalProtocolError):
            client.get(f"{nghttpd.url}/", headers={"bad header": "x"})
        assert client.get(f"{nghttpd.url}/1b").content == b"x"


def test_sync_transport_on_trio_loop_thread(nghttpd) -> None:
    the_transport = h2any.httpx.Transport(trust_env=False, backend="trio")
    with httpx.Client(transport=the_transport) as client:
        assert client.get(f"{nghttpd.url}/hello.txt").content == b"hello, world\n"


def test_sync_transport_closed_refuses_requests(nghttpd) -> None:
    the_transport = h2any.httpx.Transport(trust_env=False)
    with httpx.Client(transport=the_transport) as client:
        assert client.get(f"{nghttpd.url}/1b").content == b"x"
    with pytest.raises(RuntimeError, match="closed"):
        the_transport.handle_request(httpx.Request("GET", f"{nghttpd.url}/1b"))
