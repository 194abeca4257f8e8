"""Self-checks for the test peers, using httpx and raw h2 (no h2any involved)."""

from __future__ import annotations

import hashlib
import json
import socket

import anyio
import h2.config
import h2.connection
import h2.events
import httpx
import pytest
from anyio.abc import SocketStream
from asgi_app import pattern_bytes
from conftest import Certs, Docroot, HypercornServer, NghttpdFactory, NghttpdServer
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from scripted import ScriptedPeer, raw_frame, scripted_server

pytestmark = pytest.mark.anyio

TIMEOUT = 5


def _h2c_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(http1=False, http2=True, timeout=TIMEOUT)


def _tls_client(certs: Certs) -> httpx.AsyncClient:
    return httpx.AsyncClient(http2=True, verify=certs.client_ssl_context(), timeout=TIMEOUT)


# -- fixtures that need no server ---------------------------------------------------------


def test_docroot(docroot: Docroot) -> None:
    assert (docroot.path / "1b").read_bytes() == b"x"
    assert (docroot.path / "hello.txt").read_bytes() == b"hello, world\n"
    assert docroot.sizes["1m.bin"] == 1 << 20
    assert docroot.sizes["16m.bin"] == 16 << 20
    data = (docroot.path / "1m.bin").read_bytes()
    assert hashlib.sha256(data).hexdigest() == docroot.sha256["1m.bin"]


def test_pattern_bytes() -> None:
    data = pattern_bytes(1000)
    assert len(data) == 1000
    assert all(b == i % 251 for i, b in enumerate(data))


# -- nghttpd ------------------------------------------------------------------------------


async def test_nghttpd_h2c(nghttpd: NghttpdServer) -> None:
    with anyio.fail_after(TIMEOUT):
        async with _h2c_client() as client:
            r = await client.get(f"{nghttpd.url}/hello.txt")
            assert r.http_version == "HTTP/2"
            assert r.status_code == 200
            assert r.content == b"hello, world\n"
            r = await client.get(f"{nghttpd.url}/1m.bin")
            assert hashlib.sha256(r.content).hexdigest() == nghttpd.docroot.sha256["1m.bin"]
            r = await client.get(f"{nghttpd.url}/missing")
            assert r.status_code == 404


async def test_nghttpd_tls(nghttpd_tls: NghttpdServer, certs: Certs) -> None:
    assert nghttpd_tls.url.startswith("https://localhost:")
    with anyio.fail_after(TIMEOUT):
        async with _tls_client(certs) as client:
            r = await client.get(f"{nghttpd_tls.url}/hello.txt")
            assert r.http_version == "HTTP/2"
            assert r.content == b"hello, world\n"


def test_nghttpd_tls_alpn(nghttpd_tls: NghttpdServer, certs: Certs) -> None:
    ctx = certs.client_ssl_context(("h2", "http/1.1"))
    with (
        socket.create_connection(("127.0.0.1", nghttpd_tls.port), timeout=TIMEOUT) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


async def test_nghttpd_factory_extra_args(nghttpd_factory: NghttpdFactory) -> None:
    server = nghttpd_factory(["-m", "1", "--echo-upload"])
    try:
        assert server.port != 0
        with anyio.fail_after(TIMEOUT):
            async with _h2c_client() as client:
                r = await client.post(f"{server.url}/echo", content=b"abc")
                assert r.status_code == 200
                assert r.content == b"abc"
    finally:
        server.stop()


# -- hypercorn ----------------------------------------------------------------------------


@pytest.fixture(params=["h2c", "tls"])
def hypercorn_client_url(
    request: pytest.FixtureRequest, hypercorn_server: HypercornServer, certs: Certs
) -> tuple[str, httpx.AsyncClient]:
    if request.param == "h2c":
        return hypercorn_server.url_h2c, _h2c_client()
    return hypercorn_server.url_tls, _tls_client(certs)


async def test_hypercorn_routes(hypercorn_client_url: tuple[str, httpx.AsyncClient]) -> None:
    url, client = hypercorn_client_url
    with anyio.fail_after(TIMEOUT):
        async with client:
            r = await client.get(f"{url}/headers?a=1", headers={"x-test": "yes"})
            assert r.http_version == "HTTP/2"
            info = r.json()
            assert info["method"] == "GET"
            assert info["path"] == "/headers"
            assert info["query_string"] == "a=1"
            assert ["x-test", "yes"] in info["headers"]

            r = await client.post(f"{url}/echo", content=b"ping" * 1000)
            assert r.content == b"ping" * 1000
            assert r.headers["x-method"] == "POST"
            assert r.headers["x-body-length"] == "4000"
            r = await client.put(f"{url}/echo", content=b"")
            assert r.headers["x-method"] == "PUT"

            r = await client.get(f"{url}/repeat-headers")
            pairs = [(k, v) for k, v in r.headers.multi_items() if k in ("set-cookie", "x-multi")]
            assert pairs == [
                ("set-cookie", "a=1"),
                ("set-cookie", "b=2"),
                ("x-multi", "one"),
                ("x-multi", "two"),
            ]
            assert r.headers["content-type"] == "text/plain"

            r = await client.get(f"{url}/bytes/10")
            assert r.content == bytes(range(10))
            assert r.headers["content-length"] == "10"


async def test_hypercorn_more_routes(hypercorn_server: HypercornServer) -> None:
    url = hypercorn_server.url_h2c
    with anyio.fail_after(TIMEOUT):
        async with _h2c_client() as client:
            body = pattern_bytes(300_000)
            r = await client.post(f"{url}/sha256", content=body)
            assert r.json() == {"length": 300_000, "sha256": hashlib.sha256(body).hexdigest()}

            r = await client.get(f"{url}/bytes/{(1 << 20) + 1000}")
            assert r.content == pattern_bytes((1 << 20) + 1000)

            r = await client.get(f"{url}/stream?chunks=3&size=4&delay=0")
            assert r.content == b"000011112222"
            assert "content-length" not in r.headers

            r = await client.get(f"{url}/status/418")
            assert r.status_code == 418
            assert r.content == b""

            r = await client.get(f"{url}/slow-headers?delay=0")
            assert r.content == b"slow"

            r = await client.get(f"{url}/nope")
            assert r.status_code == 404


# -- raw h2 client helpers for scripted_server and hypercorn trailers ---------------------


async def _h2_connect(port: int) -> tuple[SocketStream, h2.connection.H2Connection]:
    stream = await anyio.connect_tcp("127.0.0.1", port)
    conn = h2.connection.H2Connection(
        config=h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    conn.initiate_connection()
    await stream.send(conn.data_to_send())
    return stream, conn


async def _h2_events(stream: SocketStream, conn: h2.connection.H2Connection) -> list[object]:
    events = conn.receive_data(await stream.receive())
    data = conn.data_to_send()
    if data:
        await stream.send(data)
    return list(events)


def _request_headers(port: int, path: str, method: str = "GET") -> list[tuple[bytes, bytes]]:
    return [
        (b":method", method.encode()),
        (b":scheme", b"http"),
        (b":authority", f"127.0.0.1:{port}".encode()),
        (b":path", path.encode()),
    ]


async def test_hypercorn_trailers_raw(hypercorn_server: HypercornServer) -> None:
    with anyio.fail_after(TIMEOUT):
        stream, conn = await _h2_connect(hypercorn_server.port_h2c)
        async with stream:
            headers = [
                *_request_headers(hypercorn_server.port_h2c, "/trailers"),
                (b"te", b"trailers"),
            ]
            conn.send_headers(1, headers, end_stream=True)
            await stream.send(conn.data_to_send())
            body, trailers, ended = b"", None, False
            while not ended:
                for event in await _h2_events(stream, conn):
                    if isinstance(event, h2.events.DataReceived):
                        body += event.data
                        conn.acknowledge_received_data(event.flow_controlled_length, 1)
                    elif isinstance(event, h2.events.TrailersReceived):
                        trailers = event.headers
                    elif isinstance(event, h2.events.StreamEnded):
                        ended = True
            assert body == b"body"
            assert trailers == [(b"x-checksum", b"abc"), (b"x-trailer-2", b"two")]
            conn.close_connection()
            await stream.send(conn.data_to_send())


# -- scripted server ----------------------------------------------------------------------


async def test_scripted_request_response() -> None:
    seen: list[tuple[str, str, bytes]] = []

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake({SettingCodes.MAX_CONCURRENT_STREAMS: 7})
        req = await peer.expect_request()
        body = await peer.read_body(req.stream_id)
        seen.append((req.method, req.path, body))
        await peer.respond(
            req.stream_id,
            headers=[("x-reply", "yes")],
            body=b"hello " + body,
            trailers=[("x-t", "1")],
        )

    with anyio.fail_after(TIMEOUT):
        async with scripted_server(handler) as server:
            assert server.url == f"http://127.0.0.1:{server.port}"
            stream, conn = await _h2_connect(server.port)
            async with stream:
                conn.send_headers(1, _request_headers(server.port, "/x", "POST"))
                conn.send_data(1, b"world", end_stream=True)
                await stream.send(conn.data_to_send())
                status, body, trailers, ended = None, b"", None, False
                while not ended:
                    for event in await _h2_events(stream, conn):
                        if isinstance(event, h2.events.ResponseReceived):
                            status = dict(event.headers)[b":status"]
                            assert dict(event.headers)[b"x-reply"] == b"yes"
                        elif isinstance(event, h2.events.DataReceived):
                            body += event.data
                        elif isinstance(event, h2.events.TrailersReceived):
                            trailers = event.headers
                        elif isinstance(event, h2.events.StreamEnded):
                            ended = True
                assert conn.remote_settings.max_concurrent_streams == 7
                assert (status, body, trailers) == (b"200", b"hello world", [(b"x-t", b"1")])
            assert server.connections == 1
    assert seen == [("POST", "/x", b"world")]


async def test_scripted_goaway_and_wait_closed() -> None:
    done = anyio.Event()
    closing_events: list[object] = []

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        req = await peer.expect_request()
        # Respond first: h2's client state machine goes CLOSED on GOAWAY and then rejects
        # any further frame, so a raw h2 client cannot read a response sent after it.
        await peer.respond(req.stream_id, body=b"last")
        await peer.goaway(ErrorCodes.NO_ERROR, last_stream_id=req.stream_id, data=b"bye")
        closing_events.extend(await peer.wait_closed())
        done.set()

    with anyio.fail_after(TIMEOUT):
        async with scripted_server(handler) as server:
            stream, conn = await _h2_connect(server.port)
            async with stream:
                conn.send_headers(1, _request_headers(server.port, "/"), end_stream=True)
                await stream.send(conn.data_to_send())
                goaway, body, ended = None, b"", False
                while not (ended and goaway):
                    for event in await _h2_events(stream, conn):
                        if isinstance(event, h2.events.ConnectionTerminated):
                            goaway = event
                        elif isinstance(event, h2.events.DataReceived):
                            body += event.data
                        elif isinstance(event, h2.events.StreamEnded):
                            ended = True
                assert goaway is not None
                assert goaway.error_code == ErrorCodes.NO_ERROR
                assert goaway.last_stream_id == 1
                assert goaway.additional_data == b"bye"
                assert body == b"last"
                # A hand-built PING, then the client's own GOAWAY, then close.
                await stream.send(raw_frame(0x6, 0, 0, b"pingpong"))
                conn.close_connection(ErrorCodes.NO_ERROR)
                await stream.send(conn.data_to_send())
            await done.wait()
    kinds = [type(e) for e in closing_events]
    assert h2.events.PingReceived in kinds
    assert h2.events.ConnectionTerminated in kinds


async def test_scripted_handler_error_propagates() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        await peer.expect_request()
        raise LookupError("boom")

    async def client() -> None:
        with anyio.fail_after(TIMEOUT):
            async with scripted_server(handler) as server:
                stream, conn = await _h2_connect(server.port)
                async with stream:
                    conn.send_headers(1, _request_headers(server.port, "/"), end_stream=True)
                    await stream.send(conn.data_to_send())
                    await anyio.Event().wait()  # cancelled when the handler fails

    with pytest.raises(LookupError, match="boom"):
        await client()


async def test_scripted_client_disconnect_is_fine() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        await peer.expect_request()  # raises EndOfStream: client leaves first

    with anyio.fail_after(TIMEOUT):
        async with scripted_server(handler) as server:
            stream, _conn = await _h2_connect(server.port)
            await stream.aclose()
            await server.wait_connections(1)
            assert server.connections == 1


async def test_scripted_with_httpx() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        req = await peer.expect_request()
        await peer.respond(
            req.stream_id,
            headers=[("content-type", "application/json")],
            body=json.dumps({"path": req.path}).encode(),
        )

    with anyio.fail_after(TIMEOUT):
        async with scripted_server(handler) as server, _h2c_client() as client:
            r = await client.get(f"{server.url}/abc")
            assert r.json() == {"path": "/abc"}


def test_raw_frame() -> None:
    frame = raw_frame(0x6, 0, 0, b"12345678")
    assert frame == b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"12345678"


async def test_scripted_flow_control_both_ways() -> None:
    big = pattern_bytes(300_000)

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake({SettingCodes.INITIAL_WINDOW_SIZE: 1000})
        req = await peer.expect_request()
        body = await peer.read_body(req.stream_id)  # needs our WINDOW_UPDATEs
        assert body == big
        await peer.respond(req.stream_id, body=big)  # needs the client's WINDOW_UPDATEs

    with anyio.fail_after(TIMEOUT):
        async with scripted_server(handler) as server, _h2c_client() as client:
            r = await client.post(f"{server.url}/up", content=big)
            assert r.content == big


async def test_scripted_abort() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        await peer.expect_request()
        await peer.close(abort=True)

    with anyio.fail_after(TIMEOUT):
        async with scripted_server(handler) as server, _h2c_client() as client:
            with pytest.raises(httpx.TransportError):
                await client.get(f"{server.url}/")
