"""h2any.contrib.HTTP20Adapter: requests over h2any, against real servers.

nghttpd over TLS (certificate checked against the test CA), hypercorn (h2c and TLS), and an
HTTP/1.1-only server (Python's http.server in a thread). Every adapter is closed by its
fixture; every request carries a timeout, so a broken adapter fails, never hangs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import pytest
from asgi_app import pattern_bytes
from h2.errors import ErrorCodes
from scripted import scripted_server
from test_proxy import tinyproxy, tinyproxy_factory  # noqa: F401

import h2any

requests = pytest.importorskip("requests")
from h2any.contrib import HTTP20Adapter  # noqa: E402

TIMEOUT = 10.0


@pytest.fixture(params=["asyncio", "trio"])
def session(request: pytest.FixtureRequest) -> Iterator[requests.Session]:
    adapter = HTTP20Adapter(backend=request.param)
    with requests.Session() as session:
        session.trust_env = False  # no proxy or CA bundle from the machine's environment
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        yield session


def _adapter(session: requests.Session) -> HTTP20Adapter:
    adapter = session.get_adapter("https://x")
    assert isinstance(adapter, HTTP20Adapter)
    return adapter


# ---------------------------------------------------------------------------- nghttpd, TLS


def test_get_over_tls_checks_the_certificate(session, nghttpd_tls, certs) -> None:
    url = f"https://localhost:{nghttpd_tls.port}/hello.txt"
    response = session.get(url, verify=certs.ca_path, timeout=TIMEOUT)
    assert (response.status_code, response.reason, response.content) == (
        200,
        "OK",
        b"hello, world\n",
    )
    assert response.url == url
    assert response.raw.version == 20
    assert response.headers["content-length"] == "13"
    # requests' default verify=True means certifi's roots, which do not hold the test CA.
    with pytest.raises(requests.exceptions.SSLError) as caught:
        session.get(url, timeout=TIMEOUT)
    assert isinstance(caught.value.__cause__, h2any.TLSError)
    assert session.get(url, verify=False, timeout=TIMEOUT).content == b"hello, world\n"
    # One client per (verify, cert, proxy) setting, each with its connection.
    assert len(_adapter(session)._clients) == 3


def test_streaming_a_large_download_by_hash(session, nghttpd_tls, certs) -> None:
    url = f"https://localhost:{nghttpd_tls.port}/16m.bin"
    with session.get(url, verify=certs.ca_path, stream=True, timeout=TIMEOUT) as response:
        digest = hashlib.sha256()
        sizes = set()
        for chunk in response.iter_content(chunk_size=65536):
            digest.update(chunk)
            sizes.add(len(chunk))
        assert max(sizes) == 65536
    assert digest.hexdigest() == nghttpd_tls.docroot.sha256["16m.bin"]


def test_leaving_a_stream_early_resets_it(session, nghttpd_tls, certs) -> None:
    url = f"https://localhost:{nghttpd_tls.port}/16m.bin"
    with session.get(url, verify=certs.ca_path, stream=True, timeout=TIMEOUT) as response:
        assert len(response.raw.read(1000)) == 1000
    # The connection carries on.
    small = session.get(f"https://localhost:{nghttpd_tls.port}/1b", verify=certs.ca_path)
    assert small.content == b"x"


# ---------------------------------------------------------------------------- hypercorn


def test_post_bodies_bytes_file_and_generator(session, hypercorn_server, tmp_path) -> None:
    base = hypercorn_server.url_h2c
    echoed = session.post(f"{base}/echo", data=b"hello", timeout=TIMEOUT)
    assert (echoed.status_code, echoed.content) == (200, b"hello")
    assert echoed.headers["x-body-length"] == "5"
    assert session.post(f"{base}/echo", json={"a": 1}, timeout=TIMEOUT).json() == {"a": 1}

    data = pattern_bytes(3_000_000)
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    expected = {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    with path.open("rb") as file:
        assert session.post(f"{base}/sha256", data=file, timeout=TIMEOUT).json() == expected

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(data), 100_000):
            yield data[start : start + 100_000]

    # A generator: requests adds Transfer-Encoding: chunked, which HTTP/2 has no use for.
    assert session.post(f"{base}/sha256", data=pieces(), timeout=TIMEOUT).json() == expected


def test_tls_origin_headers_cookies_and_status(session, hypercorn_server, certs) -> None:
    base = hypercorn_server.url_tls
    response = session.get(f"{base}/repeat-headers", verify=certs.ca_path, timeout=TIMEOUT)
    assert response.text == "repeat"
    assert response.headers["x-multi"] == "one, two"
    assert response.encoding == "ISO-8859-1"  # requests' rule for text/* without a charset
    assert session.cookies.get_dict() == {"a": "1", "b": "2"}  # requests keeps the cookies
    echoed = session.get(f"{base}/headers", verify=certs.ca_path, timeout=TIMEOUT).json()
    sent = dict(echoed["headers"])
    assert sent["cookie"] in ("a=1; b=2", "b=2; a=1")  # sent once, by requests
    assert "connection" not in sent
    missing = session.get(f"{base}/status/404", verify=certs.ca_path, timeout=TIMEOUT)
    assert (missing.status_code, missing.reason) == (404, "Not Found")
    with pytest.raises(requests.HTTPError, match="404 Client Error: Not Found"):
        missing.raise_for_status()


def test_content_is_decoded_and_raw_is_not(session, hypercorn_server) -> None:
    url = f"{hypercorn_server.url_h2c}/encoded/gzip?n=50000"
    decoded = session.get(url, timeout=TIMEOUT)
    assert len(decoded.content) == 50000
    raw = session.get(url, stream=True, timeout=TIMEOUT)
    with raw:
        compressed = raw.raw.read()  # as urllib3 under requests: the bytes as sent
    assert gzip.decompress(compressed) == decoded.content
    streamed = session.get(url, stream=True, timeout=TIMEOUT)
    assert b"".join(streamed.iter_content(chunk_size=None)) == decoded.content
    # The urllib3 idiom for a decoded copy of response.raw.
    with session.get(url, stream=True, timeout=TIMEOUT) as response:
        response.raw.decode_content = True
        assert response.raw.read() == decoded.content


def test_body_errors_map_to_requests_exceptions(session, hypercorn_server) -> None:
    url = f"{hypercorn_server.url_h2c}/encoded/corrupt-gzip?n=50000"
    with pytest.raises(requests.exceptions.ContentDecodingError) as caught:
        session.get(url, timeout=TIMEOUT)
    assert isinstance(caught.value.__cause__, h2any.DecodingError)
    with _ResettingServer() as server:
        with session.get(f"{server.url}/", stream=True, timeout=TIMEOUT) as response:
            assert response.status_code == 200
            with pytest.raises(requests.exceptions.ChunkedEncodingError) as caught:
                response.content  # noqa: B018
        assert isinstance(caught.value.__cause__, h2any.StreamReset)


class _ResettingServer:
    """tests/scripted.py's server in a thread: answers with headers and part of a body,
    then resets the stream."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._stop = threading.Event()
        self.url = ""
        self._thread = threading.Thread(target=anyio.run, args=(self._main,), daemon=True)

    @staticmethod
    async def _handler(peer) -> None:  # type: ignore[no-untyped-def]
        await peer.handshake()
        while True:
            request = await peer.expect_request()
            await peer.respond(request.stream_id, body=b"partial", end=False)
            await peer.reset(request.stream_id, ErrorCodes.INTERNAL_ERROR)

    async def _main(self) -> None:
        async with scripted_server(self._handler) as server:
            self.url = server.url
            self._ready.set()
            await anyio.to_thread.run_sync(self._stop.wait)

    def __enter__(self) -> _ResettingServer:
        self._thread.start()
        assert self._ready.wait(TIMEOUT)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)


def test_iter_lines_and_raw_stream(session, hypercorn_server) -> None:
    url = f"{hypercorn_server.url_h2c}/stream?chunks=5&size=4&delay=0"
    with session.get(url, stream=True, timeout=TIMEOUT) as response:
        assert list(response.raw.stream(3)) == [
            b"000",
            b"011",
            b"112",
            b"222",
            b"333",
            b"344",
            b"44",
        ]
    with session.get(url, stream=True, timeout=TIMEOUT) as response:
        assert response.raw.readable()
        assert response.raw.read(6) + response.raw.read() == b"00001111222233334444"


def test_8_threads_share_one_session_with_checked_bodies(session, hypercorn_server) -> None:
    base = hypercorn_server.url_h2c
    failures: list[BaseException] = []
    done = [0] * 8

    def work(index: int) -> None:
        try:
            for number in range(25):
                body = os.urandom(1000 + 997 * ((index * 25 + number) % 50))
                response = session.post(f"{base}/sha256", data=body, timeout=TIMEOUT * 3)
                assert response.json() == {
                    "length": len(body),
                    "sha256": hashlib.sha256(body).hexdigest(),
                }
                size = 1 + 4999 * number
                got = session.get(f"{base}/bytes/{size}", timeout=TIMEOUT * 3).content
                assert hashlib.sha256(got).digest() == hashlib.sha256(pattern_bytes(size)).digest()
                done[index] += 1
        except BaseException as exc:  # reported below, from the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    assert failures == []
    assert done == [25] * 8
    # One client, one HTTP/2 connection for all eight threads.
    (client,) = _adapter(session)._clients.values()
    assert list(client.connections.values()) == [1]


def test_timeouts_map_to_requests_exceptions(session, hypercorn_server) -> None:
    base = hypercorn_server.url_h2c
    with pytest.raises(requests.exceptions.ReadTimeout) as caught:
        session.get(f"{base}/slow-headers?delay=5", timeout=0.3)
    assert isinstance(caught.value.__cause__, h2any.ReadTimeout)
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.get(f"{base}/slow-headers?delay=5", timeout=(TIMEOUT, 0.3))
    # A read timeout while streaming the body: requests' own rule makes it a ConnectionError.
    url = f"{base}/stream?chunks=2&size=1&delay=5"
    with session.get(url, stream=True, timeout=(TIMEOUT, 0.3)) as response:
        with pytest.raises(requests.exceptions.ConnectionError) as caught:
            response.content  # noqa: B018
    assert isinstance(caught.value.__cause__, h2any.ReadTimeout)
    assert session.get(f"{base}/status/204", timeout=TIMEOUT).status_code == 204
    with pytest.raises(ValueError, match="connect, read"):
        session.get(f"{base}/status/204", timeout=(1, 2, 3))


def test_connect_errors_map_to_requests_exceptions(session) -> None:
    # A listener that never accepts: TCP connects (the backlog), TLS never answers.
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        with pytest.raises(requests.exceptions.ConnectTimeout) as caught:
            session.get(f"https://127.0.0.1:{port}/", timeout=(0.3, TIMEOUT))
    assert isinstance(caught.value.__cause__, h2any.ConnectTimeout)
    assert isinstance(caught.value, requests.exceptions.ConnectionError)
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    with pytest.raises(requests.exceptions.ConnectionError) as caught:
        session.get(f"http://127.0.0.1:{port}/", timeout=TIMEOUT)
    assert isinstance(caught.value.__cause__, h2any.ConnectError)
    with pytest.raises(requests.exceptions.InvalidSchema, match="socks"):
        session.get("http://127.0.0.1:1/", proxies={"http": "socks5://127.0.0.1:1"})


def test_proxies_from_the_session(
    session,
    tinyproxy,  # noqa: F811 (the fixture imported above)
    nghttpd_tls,
    certs,
) -> None:
    session.proxies = {"https": tinyproxy.url}
    url = f"https://localhost:{nghttpd_tls.port}/hello.txt"
    assert session.get(url, verify=certs.ca_path, timeout=TIMEOUT).content == b"hello, world\n"
    assert f"CONNECT localhost:{nghttpd_tls.port} " in tinyproxy.log()
    with socket.create_server(("127.0.0.1", 0)) as closed:
        dead = f"http://127.0.0.1:{closed.getsockname()[1]}"
    with pytest.raises(requests.exceptions.ProxyError) as caught:
        session.get(url, verify=certs.ca_path, proxies={"https": dead}, timeout=TIMEOUT)
    assert isinstance(caught.value.__cause__, h2any.ProxyError)


# ---------------------------------------------------------------------------- HTTP/1.1 only


class _Http11Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("location", "/landed")
            self.send_header("set-cookie", "hop=1")
            self.send_header("content-length", "0")
            self.end_headers()
            return
        size = int(self.path.rsplit("/", 1)[-1]) if self.path.startswith("/bytes/") else 0
        body = pattern_bytes(size) if size else self.path.encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.send_header("set-cookie", "h1=yes")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        if self.headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(self.rfile.readline().strip(), 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
        else:
            body = self.rfile.read(int(self.headers["content-length"]))
        answer = json.dumps({"length": len(body), "sha256": hashlib.sha256(body).hexdigest()})
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http11_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Http11Handler)
    # shutdown() waits for serve_forever's next poll: 0.05 s, not the default 0.5 s
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


def test_an_http11_origin_through_the_same_adapter(session, http11_url) -> None:
    response = session.get(f"{http11_url}/path?q=1", timeout=TIMEOUT)
    assert (response.status_code, response.content) == (200, b"/path?q=1")
    assert response.raw.version == 11
    assert session.cookies.get("h1") == "yes"
    redirected = session.get(f"{http11_url}/redirect", timeout=TIMEOUT)  # requests follows
    assert (redirected.url, redirected.content) == (f"{http11_url}/landed", b"/landed")
    assert [r.status_code for r in redirected.history] == [302]
    assert session.cookies.get("hop") == "1"
    body = os.urandom(200_000)
    expected = {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert session.post(f"{http11_url}/", data=body, timeout=TIMEOUT).json() == expected
    generated = session.post(f"{http11_url}/", data=iter([body[:5], body[5:]]), timeout=TIMEOUT)
    assert generated.json() == expected
    with session.get(f"{http11_url}/bytes/1000000", stream=True, timeout=TIMEOUT) as streamed:
        got = b"".join(streamed.iter_content(chunk_size=10_000))
    assert got == pattern_bytes(1_000_000)


def test_import_h2any_does_not_import_requests() -> None:
    code = "import sys, h2any, h2any.sync; assert 'requests' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_raw_is_a_binary_file(session, hypercorn_server, tmp_path) -> None:
    size = 300_000
    url = f"{hypercorn_server.url_h2c}/bytes/{size}"
    with session.get(url, stream=True, timeout=TIMEOUT) as response:
        raw = response.raw
        assert isinstance(raw, io.IOBase)
        assert raw.getheader("content-length") == str(size)
        with (tmp_path / "copy.bin").open("wb") as file:
            shutil.copyfileobj(raw, file)
        raw.release_conn()
    assert (tmp_path / "copy.bin").read_bytes() == pattern_bytes(size)
    assert raw.read() == b""


def test_adapter_options(hypercorn_server) -> None:
    with pytest.raises(TypeError, match="verify"):
        HTTP20Adapter(verify=False)
    with pytest.raises(TypeError, match="follow_redirects"):
        HTTP20Adapter(follow_redirects=True)
    adapter = HTTP20Adapter(window_manager=h2any.AdaptiveFlowControlManager, http1=False)
    with requests.Session() as session:
        session.mount("http://", adapter)
        response = session.get(f"{hypercorn_server.url_h2c}/bytes/100000", timeout=TIMEOUT)
        assert response.content == pattern_bytes(100000)
    adapter.close()  # idempotent; a later request would connect again


def _in_8_threads(work) -> None:  # type: ignore[no-untyped-def]
    failures: list[BaseException] = []

    def run(index: int) -> None:
        try:
            work(index)
        except BaseException as exc:  # reported below, from the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    assert failures == []


def test_8_threads_over_tls_and_over_http11(session, nghttpd_tls, certs, http11_url) -> None:
    base = f"https://localhost:{nghttpd_tls.port}"
    expected = nghttpd_tls.docroot.sha256

    def tls(index: int) -> None:
        for number in range(6):
            name = ("1m.bin", "hello.txt", "1b")[(index + number) % 3]
            body = session.get(f"{base}/{name}", verify=certs.ca_path, timeout=TIMEOUT * 3)
            assert hashlib.sha256(body.content).hexdigest() == expected[name]

    _in_8_threads(tls)

    def http11(index: int) -> None:
        for number in range(6):
            body = os.urandom(1 + 7919 * (index * 6 + number))
            answer = session.post(f"{http11_url}/", data=body, timeout=TIMEOUT * 3).json()
            assert answer == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}

    _in_8_threads(http11)
    clients = _adapter(session)._clients
    tls_client = clients[(certs.ca_path, None, None)]
    assert list(tls_client.connections.values()) == [1]  # one HTTP/2 connection
