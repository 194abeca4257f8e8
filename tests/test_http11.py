"""HTTP/1.1 in the Client: the fallback when a server has no HTTP/2, and HTTP/1.1 connections.

Peers: Python's ``http.server`` (HTTP/1.0 and HTTP/1.1 only; it answers the h2c preface with a
bare HTML error page), an h11 server of the tests' own (below: uploads checked by hash, streamed
and stalled downloads, keep-alive counted per connection, malformed answers, and a server that
closes at once on the h2c preface), nginx with HTTP/2 off (tests/test_http11_nginx.py) and
hypercorn (both protocols: HTTP/2 must be preferred).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.lowlevel
import anyio.to_thread
import h11
import pytest

# tinyproxy, as tests/test_proxy.py starts it (a CONNECT proxy on loopback).
from test_proxy import Tinyproxy, tinyproxy, tinyproxy_factory  # noqa: F401

import h2any
import h2any.sync

pytestmark = pytest.mark.anyio

GUARD = 20  # seconds any test may take before it counts as hung


# -- Python's http.server -------------------------------------------------------------------


class _StdlibHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = f"stdlib {self.path}".encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain; charset=utf-8")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        data = self.rfile.read(length)
        body = hashlib.sha256(data).hexdigest().encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def stdlib_server() -> Iterator[str]:
    """``http.server`` (HTTP/1.1 keep-alive) in a thread; yields its ``http://`` URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StdlibHandler)
    server.daemon_threads = True
    # shutdown() waits for serve_forever's next poll: 0.05 s, not the default 0.5 s
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="stdlib-http", daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- an h11 server of the tests' own --------------------------------------------------------


@dataclass
class H11Server:
    """An HTTP/1.1 server on h11, a thread per connection.

    Routes: ``GET /hello``; ``POST /upload`` (answers the body's length and sha256 as JSON);
    ``GET /download?size=N`` (N bytes of a pattern, chunked, in 64 KiB pieces as the client
    reads); ``GET /stall`` (headers and 5 of 10 bytes, then nothing until ``release``);
    ``GET /gzip`` (a gzip-encoded body); ``GET /trailers`` (chunked, with a trailer);
    ``GET /malformed`` (an unparseable status line); ``GET /reason`` (status 299 with the
    reason phrase "Fine Thanks"); ``GET /close`` (Connection: close);
    ``GET /then-close`` (answered as keep-alive, then the connection is closed while idle).
    A request that is not HTTP/1.x -- the h2c preface -- is answered by closing at once.
    """

    port: int
    connections: int = 0
    requests: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    closed_idle: threading.Event = field(default_factory=threading.Event)  # /then-close done
    sockets: list[socket.socket] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _pattern(size: int) -> bytes:
    unit = bytes(range(256)) * 256  # 64 KiB
    return (unit * (size // len(unit) + 1))[:size]


def _next_event(conn: h11.Connection, sock: socket.socket) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(sock.recv(65536))


def _serve_h11(server: H11Server, sock: socket.socket) -> None:
    conn = h11.Connection(h11.SERVER)
    with sock:
        while True:
            try:
                event = _next_event(conn, sock)
            except (h11.RemoteProtocolError, OSError):
                return  # not HTTP/1.x (the h2c preface), or gone: close at once
            if isinstance(event, h11.ConnectionClosed):
                return
            assert isinstance(event, h11.Request), event
            if event.http_version not in (b"1.0", b"1.1"):
                return  # h11 parses "PRI * HTTP/2.0" (the h2c preface): close at once
            server.requests += 1
            target = urlsplit(event.target.decode())
            digest = hashlib.sha256()
            size = 0
            try:
                while True:
                    body_event = _next_event(conn, sock)
                    if isinstance(body_event, h11.EndOfMessage):
                        break
                    assert isinstance(body_event, h11.Data)
                    digest.update(body_event.data)
                    size += len(body_event.data)
            except (h11.RemoteProtocolError, OSError):
                return  # the client gave up on its body

            def send(*events: object) -> None:
                for item in events:
                    sock.sendall(conn.send(item))  # type: ignore[arg-type]

            path = target.path
            try:
                if path == "/upload":
                    body = json.dumps(
                        {
                            "size": size,
                            "sha256": digest.hexdigest(),
                            "chunked": any(
                                n == b"transfer-encoding" and v == b"chunked"
                                for n, v in event.headers
                            ),
                        }
                    ).encode()
                    headers = [("content-length", str(len(body)))]
                    send(h11.Response(status_code=200, headers=headers), h11.Data(data=body))
                    send(h11.EndOfMessage())
                elif path == "/reason":
                    headers = [("content-length", "0")]
                    send(h11.Response(status_code=299, headers=headers, reason=b"Fine Thanks"))
                    send(h11.EndOfMessage())
                elif path == "/download":
                    total = int(parse_qs(target.query)["size"][0])
                    data = _pattern(total)
                    send(h11.Response(status_code=200, headers=[("transfer-encoding", "chunked")]))
                    for start in range(0, total, 65536):
                        send(h11.Data(data=data[start : start + 65536]))
                    send(h11.EndOfMessage())
                elif path == "/stall":
                    send(
                        h11.Response(status_code=200, headers=[("content-length", "10")]),
                        h11.Data(data=b"12345"),
                    )
                    server.release.wait(GUARD)
                    return
                elif path == "/gzip":
                    body = gzip.compress(b"decoded " * 1000)
                    headers = [("content-length", str(len(body))), ("content-encoding", "gzip")]
                    send(h11.Response(status_code=200, headers=headers), h11.Data(data=body))
                    send(h11.EndOfMessage())
                elif path == "/trailers":
                    send(
                        h11.Response(status_code=200, headers=[("transfer-encoding", "chunked")]),
                        h11.Data(data=b"body"),
                        h11.EndOfMessage(headers=[("x-checksum", "abc")]),
                    )
                elif path == "/malformed":
                    sock.sendall(b"HTTP/1.1 two hundred OK\r\n\r\n")
                    return
                elif path == "/then-close":
                    # Keep-alive as far as the client can tell, then closed while idle.
                    headers = [("content-length", "2")]
                    send(h11.Response(status_code=200, headers=headers), h11.Data(data=b"ok"))
                    send(h11.EndOfMessage())
                    sock.close()
                    server.closed_idle.set()
                    return
                elif path == "/close":
                    body = b"bye"
                    headers = [("content-length", "3"), ("connection", "close")]
                    send(h11.Response(status_code=200, headers=headers), h11.Data(data=body))
                    send(h11.EndOfMessage())
                    return
                else:
                    body = f"h11 {event.method.decode()} {path}".encode()
                    headers = [("content-length", str(len(body)))]
                    send(h11.Response(status_code=200, headers=headers))
                    if event.method != b"HEAD":
                        send(h11.Data(data=body))
                    send(h11.EndOfMessage())
            except (h11.ProtocolError, OSError):
                return
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()


@contextmanager
def _h11_server() -> Iterator[H11Server]:
    listener = socket.create_server(("127.0.0.1", 0))
    server = H11Server(port=listener.getsockname()[1])
    threads: list[threading.Thread] = []

    def accept() -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:
                return
            server.connections += 1
            server.sockets.append(sock)
            thread = threading.Thread(target=_serve_h11, args=(server, sock), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, name="h11-server", daemon=True)
    acceptor.start()
    try:
        yield server
    finally:
        server.release.set()
        try:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() (close alone does not)
        except OSError:
            pass
        listener.close()
        for sock in server.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        acceptor.join(5)
        for thread in threads:
            thread.join(5)


@pytest.fixture
def h11_server() -> Iterator[H11Server]:
    with _h11_server() as server:
        yield server


# -- the fallback from h2c ------------------------------------------------------------------


async def test_get_falls_back_from_h2c_to_http11_against_http_server(stdlib_server) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client() as client:
            response = await client.get(f"{stdlib_server}/a?b=1")
            assert response.status == 200
            assert response.http_version == "HTTP/1.1"
            assert response.headers["content-type"] == "text/plain; charset=utf-8"
            assert await response.read() == b"stdlib /a?b=1"
            assert client.connections_opened == 1  # the refused h2c attempt is not counted


async def test_post_and_keep_alive_against_http_server(stdlib_server) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client() as client:
            for i in range(3):
                data = b"x" * (1000 * i + 1)
                response = await client.post(f"{stdlib_server}/p", body=data)
                assert await response.read() == hashlib.sha256(data).hexdigest().encode()
            assert client.connections_opened == 1  # kept alive


async def test_h2c_fallback_when_the_server_closes_at_once(h11_server) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client() as client:
            response = await client.get(f"{h11_server.url}/hello")
            assert await response.read() == b"h11 GET /hello"
            assert response.http_version == "HTTP/1.1"
            # One connection for the h2c preface (closed at once), one for HTTP/1.1.
            assert h11_server.connections == 2


async def test_the_origin_is_remembered_after_the_fallback(h11_server) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client(keepalive_expiry=None) as client:
            response = await client.get(f"{h11_server.url}/close")  # the server closes it
            assert await response.read() == b"bye"
            assert h11_server.connections == 2
            response = await client.get(f"{h11_server.url}/hello")
            assert await response.read() == b"h11 GET /hello"
            # Straight to HTTP/1.1: no second h2c attempt.
            assert h11_server.connections == 3


async def test_connection_alone_raises_http_version_error_with_the_html_page(
    stdlib_server,
) -> None:
    with anyio.fail_after(GUARD):
        with pytest.raises(h2any.HTTPVersionError, match="HTML page") as info:
            async with h2any.Connection(stdlib_server):
                pytest.fail("connected")
    error = info.value
    assert isinstance(error, h2any.ConnectError)
    assert isinstance(error, h2any.ProtocolError)
    assert error.origin == stdlib_server
    assert error.server_version == "HTTP/1.0"


async def test_connection_alone_raises_http_version_error_when_closed_at_once(
    h11_server,
) -> None:
    with anyio.fail_after(GUARD):
        with pytest.raises(h2any.HTTPVersionError, match="without an HTTP/2 SETTINGS"):
            async with h2any.Connection(h11_server.url):
                pytest.fail("connected")


async def test_connection_alone_names_an_http11_status_line() -> None:
    async def answer(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await stream.receive()
            await stream.send(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

    with anyio.fail_after(GUARD):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, answer)
            with pytest.raises(h2any.HTTPVersionError, match=r"HTTP/1\.1 400") as info:
                async with h2any.Connection(f"http://127.0.0.1:{port}"):
                    pytest.fail("connected")
            assert info.value.server_version == "HTTP/1.1"
            tg.cancel_scope.cancel()


async def test_http1_false_refuses_an_http11_server(stdlib_server) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client(http1=False) as client:
            with pytest.raises(h2any.HTTPVersionError, match="http1=False") as info:
                await client.get(f"{stdlib_server}/")
            assert stdlib_server in str(info.value)
            assert info.value.origin == stdlib_server


async def test_http2_false_speaks_http11_at_once(h11_server) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client(http2=False) as client:
            response = await client.get(f"{h11_server.url}/hello")
            assert await response.read() == b"h11 GET /hello"
            assert h11_server.connections == 1  # no h2c attempt


def test_http1_and_http2_cannot_both_be_false() -> None:
    with pytest.raises(ValueError, match="both"):
        h2any.Client(http1=False, http2=False)


async def test_http2_is_kept_for_h2c_servers(hypercorn_server) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client() as client:
            response = await client.get(f"{hypercorn_server.url_h2c}/")
            await response.read()
            assert response.http_version == "HTTP/2"


async def test_tls_alpn_prefers_http2_when_the_server_offers_both(hypercorn_server, certs) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client(verify=certs.ca_path) as client:
            response = await client.get(f"{hypercorn_server.url_tls}/")
            await response.read()
            assert response.http_version == "HTTP/2"


async def test_tls_http2_false_uses_http11_with_a_server_offering_both(
    hypercorn_server, certs
) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client(verify=certs.ca_path, http2=False) as client:
            response = await client.post(f"{hypercorn_server.url_tls}/echo", body=b"over 1.1")
            assert await response.read() == b"over 1.1"
            assert response.http_version == "HTTP/1.1"


# -- HTTP/1.1 connections: bodies, keep-alive, pooling ---------------------------------------


async def _pieces(count: int, size: int) -> AsyncIterator[bytes]:
    for i in range(count):
        yield bytes([i % 256]) * size


def _pieces_digest(count: int, size: int) -> str:
    digest = hashlib.sha256()
    for i in range(count):
        digest.update(bytes([i % 256]) * size)
    return digest.hexdigest()


async def test_streamed_upload_without_length_is_chunked(h11_server) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client(http2=False) as client:
            response = await client.post(f"{h11_server.url}/upload", body=_pieces(40, 100_000))
            result = json.loads(await response.read())
            assert result == {
                "size": 4_000_000,
                "sha256": _pieces_digest(40, 100_000),
                "chunked": True,
            }


class _AsyncReader:
    """A file-like object with an async ``read`` (no length known)."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    async def read(self, size: int = -1) -> bytes:
        await anyio.lowlevel.checkpoint()
        piece, self._data = self._data[:size], self._data[size:]
        return bytes(piece)


async def test_upload_from_a_file_sends_its_length(h11_server, tmp_path) -> None:
    path = tmp_path / "upload.bin"
    data = _pattern(3_000_000)
    path.write_bytes(data)
    with anyio.fail_after(GUARD):
        async with h2any.Client(http2=False) as client:
            with path.open("rb") as file:
                response = await client.post(f"{h11_server.url}/upload", body=file)
                result = json.loads(await response.read())
            assert result["size"] == len(data)
            assert result["sha256"] == hashlib.sha256(data).hexdigest()
            assert result["chunked"] is False
            # A sync iterable and an async file too.
            response = await client.post(f"{h11_server.url}/upload", body=iter([b"ab", b"cd"]))
            assert json.loads(await response.read())["size"] == 4
            response = await client.post(f"{h11_server.url}/upload", body=_AsyncReader(data))
            assert json.loads(await response.read())["size"] == len(data)
            async with await anyio.open_file(path, "rb") as async_file:
                response = await client.post(f"{h11_server.url}/upload", body=async_file)
                assert json.loads(await response.read())["size"] == len(data)
            assert h11_server.connections == 1


async def test_streamed_download_in_bounded_pieces(h11_server) -> None:
    size = 20 * 1024 * 1024
    with anyio.fail_after(GUARD):
        async with h2any.Client(http2=False) as client:
            async with client.stream("GET", f"{h11_server.url}/download?size={size}") as response:
                digest = hashlib.sha256()
                received = 0
                async for chunk in response.aiter_bytes():
                    assert len(chunk) <= 1024 * 1024
                    digest.update(chunk)
                    received += len(chunk)
                    # The reader consumes slowly: the connection reads only a bounded way ahead.
                    window = response._stream.window
                    assert window is not None
                    assert window.buffered <= 512 * 1024
                assert received == size
                assert digest.hexdigest() == hashlib.sha256(_pattern(size)).hexdigest()


async def test_keep_alive_reuses_one_connection(h11_server) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client(http2=False) as client:
            for i in range(10):
                response = await client.get(f"{h11_server.url}/r{i}")
                assert await response.read() == f"h11 GET /r{i}".encode()
            assert h11_server.connections == 1
            assert h11_server.requests == 10
            assert client.connections == {h11_server.url: 1}


async def test_pool_bound_and_one_request_at_a_time(h11_server) -> None:
    results: list[bytes] = []
    with anyio.fail_after(GUARD):
        async with h2any.Client(http2=False, max_http1_connections_per_origin=3) as client:

            async def fetch(i: int) -> None:
                response = await client.get(f"{h11_server.url}/c{i}")
                results.append(await response.read())

            async with anyio.create_task_group() as tg:
                for i in range(12):
                    tg.start_soon(fetch, i)
            assert sorted(results) == sorted(f"h11 GET /c{i}".encode() for i in range(12))
            assert h11_server.connections <= 3
            assert client.connections[h11_server.url] <= 3


async def test_http1_origins_run_up_to_six_requests_at_once_by_default(h11_server) -> None:
    # Each of the first six holds its connection (a body it has not sent whole), so a
    # seventh request can only wait: six connections, and no more.
    with anyio.fail_after(GUARD):
        async with h2any.Client(http2=False, timeout=h2any.Timeout(10, pool=0.3)) as client:
            held = [await client.get(f"{h11_server.url}/stall") for _ in range(6)]
            assert h11_server.connections == 6
            with pytest.raises(h2any.PoolTimeout):
                await client.get(f"{h11_server.url}/hello")
            for response in held:
                await response.aclose()


async def test_the_http2_limit_stays_one_connection_per_origin(hypercorn_server) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client() as client:

            async def fetch() -> None:
                await (await client.get(f"{hypercorn_server.url_h2c}/")).read()

            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(fetch)
            assert client.connections_opened == 1


async def test_the_reason_phrase_is_the_servers(h11_server) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client(http2=False) as client:
            response = await client.get(f"{h11_server.url}/reason")
            await response.read()
            assert (response.status_code, response.reason_phrase) == (299, "Fine Thanks")
            plain = await client.get(f"{h11_server.url}/hello")
            await plain.read()
            assert plain.reason_phrase == "OK"


async def test_head_has_no_body(h11_server) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client(http2=False) as client:
            response = await client.request("HEAD", f"{h11_server.url}/hello")
            assert response.status == 200
            assert await response.read() == b""
            response = await client.get(f"{h11_server.url}/hello")
            assert await response.read() == b"h11 GET /hello"
            assert h11_server.connections == 1


# -- errors, timeouts, cancellation ---------------------------------------------------------


async def test_read_timeout_on_a_stalled_body_closes_the_connection(h11_server) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client(http2=False, timeout=h2any.Timeout(10, read=0.3)) as client:
            response = await client.get(f"{h11_server.url}/stall")
            assert response.status == 200
            with pytest.raises(h2any.ReadTimeout):
                await response.read()
            # The pool recovers on a fresh connection.
            response = await client.get(f"{h11_server.url}/hello")
            assert await response.read() == b"h11 GET /hello"
            assert h11_server.connections == 2


async def test_malformed_response_is_a_protocol_error(h11_server) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client(http2=False) as client:
            with pytest.raises(h2any.ProtocolError, match=r"malformed HTTP/1\.1 response"):
                await client.get(f"{h11_server.url}/malformed")
            response = await client.get(f"{h11_server.url}/hello")
            assert await response.read() == b"h11 GET /hello"


async def test_cancelling_mid_body_closes_that_connection_and_the_pool_recovers(
    h11_server,
) -> None:
    size = 8 * 1024 * 1024
    with anyio.fail_after(GUARD):
        async with h2any.Client(http2=False) as client:
            got_some = anyio.Event()

            async def read_part() -> None:
                async with client.stream("GET", f"{h11_server.url}/download?size={size}") as r:
                    async for _ in r.aiter_bytes():
                        got_some.set()
                        await anyio.sleep_forever()

            async with anyio.create_task_group() as tg:
                tg.start_soon(read_part)
                await got_some.wait()
                tg.cancel_scope.cancel()
            response = await client.get(f"{h11_server.url}/hello")
            assert await response.read() == b"h11 GET /hello"
            assert h11_server.connections == 2
            assert client.connections == {h11_server.url: 1}


async def test_closing_a_response_early_closes_the_connection(h11_server) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client(http2=False) as client:
            response = await client.get(f"{h11_server.url}/download?size=4000000")
            await response.aclose()
            response = await client.get(f"{h11_server.url}/hello")
            assert await response.read() == b"h11 GET /hello"
            assert h11_server.connections == 2


async def test_an_error_from_the_body_source_reaches_the_caller(h11_server) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        raise RuntimeError("the source broke")

    with anyio.fail_after(GUARD):
        async with h2any.Client(http2=False) as client:
            with pytest.raises(RuntimeError, match="the source broke"):
                await client.post(f"{h11_server.url}/upload", body=broken())
            response = await client.get(f"{h11_server.url}/hello")
            assert await response.read() == b"h11 GET /hello"


async def test_wrong_content_length_is_invalid_request(h11_server) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client(http2=False) as client:
            with pytest.raises(h2any.InvalidRequest, match="content-length"):
                await client.post(
                    f"{h11_server.url}/upload",
                    body=_pieces(2, 10),
                    headers={"content-length": "5"},
                )


async def test_pool_timeout_while_the_only_connection_is_busy(h11_server) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client(
            http2=False, max_http1_connections_per_origin=1, timeout=h2any.Timeout(10, pool=0.3)
        ) as client:
            first = await client.get(f"{h11_server.url}/stall")
            with pytest.raises(h2any.PoolTimeout, match="busy"):
                await client.get(f"{h11_server.url}/hello")
            await first.aclose()


async def test_connection_refused_is_a_connect_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with anyio.fail_after(GUARD):
        async with h2any.Client(http2=False) as client:
            with pytest.raises(h2any.ConnectError):
                await client.get(f"http://127.0.0.1:{port}/")


# -- the blocking facade --------------------------------------------------------------------


def test_sync_client_against_http_server(stdlib_server) -> None:
    with h2any.sync.Client() as client:
        response = client.request("GET", f"{stdlib_server}/sync")
        assert response.status == 200
        assert response.read() == b"stdlib /sync"
        assert response.http_version == "HTTP/1.1"
        response = client.request("POST", f"{stdlib_server}/p", body=b"abc")
        assert response.read() == hashlib.sha256(b"abc").hexdigest().encode()


@contextmanager
def _deaf_server() -> Iterator[int]:
    """A server that accepts connections and never reads from them (small buffers)."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    thread = threading.Thread(target=accept, name="deaf-server", daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        try:
            listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        listener.close()
        thread.join(5)
        for sock in held:
            sock.close()


async def test_write_timeout_when_the_server_reads_nothing() -> None:
    with anyio.fail_after(GUARD), _deaf_server() as port:
        timeout = h2any.Timeout(10, write=0.3)
        async with h2any.Client(http2=False, timeout=timeout) as client:
            url = f"http://127.0.0.1:{port}/upload"
            with pytest.raises(h2any.WriteTimeout):
                await client.post(url, body=b"x" * (64 * 1024 * 1024))
            with pytest.raises(h2any.WriteTimeout):
                await client.post(url, body=_pieces(1000, 65536))


async def test_requests_queued_behind_a_closing_connection_are_sent_again(h11_server) -> None:
    results: list[bytes] = []
    with anyio.fail_after(GUARD):
        async with h2any.Client(http2=False) as client:  # one connection per origin

            async def post(i: int) -> None:
                # POST, not idempotent: retried only because it was never sent.
                response = await client.post(f"{h11_server.url}/close", body=b"%d" % i)
                results.append(await response.read())

            async with anyio.create_task_group() as tg:
                for i in range(4):
                    tg.start_soon(post, i)
            assert results == [b"bye"] * 4
            assert h11_server.connections == 4  # the server closes after each answer


async def test_fallback_and_http11_through_a_connect_proxy(
    stdlib_server,
    tinyproxy: Tinyproxy,  # noqa: F811 (the fixture imported above)
) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client(proxy=tinyproxy.url) as client:
            for _ in range(2):
                response = await client.get(f"{stdlib_server}/via-proxy")
                assert response.http_version == "HTTP/1.1"
                assert await response.read() == b"stdlib /via-proxy"
            assert client.connections_opened == 1
    port = stdlib_server.rsplit(":", 1)[1]
    # One tunnel for the h2c attempt, one for HTTP/1.1 (kept alive for both requests).
    assert tinyproxy.log().count(f"CONNECT 127.0.0.1:{port} ") == 2


async def test_decoding_and_trailers_work_as_over_http2(h11_server) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client(http2=False) as client:
            response = await client.get(f"{h11_server.url}/gzip")
            assert await response.read() == b"decoded " * 1000
            response = await client.get(f"{h11_server.url}/trailers")
            assert await response.read() == b"body"
            assert response.trailers is not None
            assert response.trailers["x-checksum"] == "abc"
            assert h11_server.connections == 1


async def test_total_timeout_cuts_off_a_stalled_http11_body(h11_server) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client(http2=False, timeout=h2any.Timeout(10, total=0.5)) as client:
            response = await client.get(f"{h11_server.url}/stall")
            with pytest.raises(h2any.ReadTimeout, match="total"):
                await response.read()


async def test_an_idle_connection_the_server_closed_is_not_reused(h11_server) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client(http2=False) as client:
            response = await client.get(f"{h11_server.url}/then-close")
            assert await response.read() == b"ok"
            # The server has closed it (on loopback its FIN is in our socket by then).
            assert await anyio.to_thread.run_sync(h11_server.closed_idle.wait, GUARD)
            # A POST is not retried if sent on a dead connection: it must go on a fresh one.
            response = await client.post(f"{h11_server.url}/upload", body=b"abc")
            assert json.loads(await response.read())["size"] == 3
            assert h11_server.connections == 2
