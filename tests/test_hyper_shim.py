"""h2any.sync.HTTP20Connection: hyper's API, end to end against real servers.

Hang guard: every connection carries a timeout (h2any's default is 10 s per step, and tests
that wait on other threads join them with a deadline), so a broken shim fails, never hangs.
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import json
import threading
import uuid
from collections.abc import Iterator

import anyio
import pytest
from asgi_app import pattern_bytes
from conftest import loop_thread_count

import h2any
import h2any.sync
from h2any.sync import HTTP20Connection, HTTP20Response, HTTPHeaderMap
from h2any.testing import Request, Response, serve

BACKENDS = ["asyncio", "trio"]
TIMEOUT = 10.0


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _hostport(url: str) -> str:
    return url.split("://", 1)[1]


def test_hyper_style_request_then_getresponse_over_h2c(hypercorn_server, backend: str) -> None:
    conn = HTTP20Connection(
        _hostport(hypercorn_server.url_h2c), secure=False, backend=backend, timeout=TIMEOUT
    )
    try:
        stream_id = conn.request("POST", "/echo", body=b"hello", headers={"x-test": "1"})
        assert stream_id == 1
        response = conn.getresponse(stream_id)
        assert isinstance(response, HTTP20Response)
        assert (response.status, response.reason, response.stream_id) == (200, "", 1)
        assert response.headers[b"x-method"] == [b"POST"]
        assert response.read() == b"hello"
        assert response.read() == b""  # file-like: the body is consumed
        assert conn.request("GET", "/status/418") == 3
        teapot = conn.getresponse()
        assert (teapot.status, teapot.reason) == (418, "")  # HTTP/2 has no reason phrase
        assert teapot.version is h2any.sync.HTTPVersion.http20
        with pytest.raises(NotImplementedError):
            teapot.fileno()  # as hyper
    finally:
        conn.close()


def test_tls_with_an_ssl_context(hypercorn_server, certs, backend: str) -> None:
    with HTTP20Connection(
        "localhost",
        hypercorn_server.port_tls,
        secure=True,
        ssl_context=certs.client_ssl_context(),
        backend=backend,
        timeout=TIMEOUT,
    ) as conn:
        assert conn.url == f"https://localhost:{hypercorn_server.port_tls}"
        stream_id = conn.request("GET", "/bytes/1000")
        assert conn.getresponse(stream_id).read() == pattern_bytes(1000)


def test_tls_against_nghttpd_verifies_by_default(nghttpd_tls, certs) -> None:
    with HTTP20Connection(f"localhost:{nghttpd_tls.port}", secure=True, timeout=TIMEOUT) as conn:
        with pytest.raises(h2any.TLSError):  # the test CA is not in certifi's bundle
            conn.connect()
    context = certs.client_ssl_context()
    with HTTP20Connection(
        f"localhost:{nghttpd_tls.port}", secure=True, ssl_context=context, timeout=TIMEOUT
    ) as conn:
        conn.request("GET", "/hello.txt")
        assert conn.getresponse().read() == b"hello, world\n"


def test_host_port_and_secure_follow_hyper_rules() -> None:
    # Nothing connects until first use, so these need no server.
    assert HTTP20Connection("example.org").url == "https://example.org:443"
    assert HTTP20Connection("example.org:8080").url == "http://example.org:8080"
    assert HTTP20Connection("example.org:8443", secure=True).url == "https://example.org:8443"
    assert HTTP20Connection("example.org", 80).url == "http://example.org:80"
    assert HTTP20Connection("example.org:443", secure=False).url == "http://example.org:443"
    assert HTTP20Connection("[::1]:8080").url == "http://[::1]:8080"
    assert HTTP20Connection("::1").url == "https://[::1]:443"
    with pytest.raises(TypeError):
        HTTP20Connection("example.org", no_such_option=1)


def test_several_requests_collected_by_id_in_any_order(nghttpd, backend: str) -> None:
    files = ["1b", "hello.txt", "1m.bin", "1b", "hello.txt", "1m.bin"]
    with HTTP20Connection(_hostport(nghttpd.url), backend=backend, timeout=TIMEOUT) as conn:
        ids = [conn.request("GET", f"/{name}") for name in files]
        assert ids == [1, 3, 5, 7, 9, 11]
        for index in [4, 0, 5, 2, 1, 3]:
            response = conn.getresponse(ids[index])
            assert response.stream_id == ids[index]  # the id on the wire
            body = response.read()
            assert hashlib.sha256(body).hexdigest() == nghttpd.docroot.sha256[files[index]]
        with pytest.raises(ValueError, match="stream 3"):
            conn.getresponse(3)  # each response is returned once
        with pytest.raises(ValueError, match="no request"):
            conn.getresponse()


def test_getresponse_without_id_takes_this_threads_oldest(hypercorn_server) -> None:
    with HTTP20Connection(_hostport(hypercorn_server.url_h2c), timeout=TIMEOUT) as conn:
        conn.request("POST", "/echo", body=b"first")
        conn.request("POST", "/echo", body=b"second")
        other: list[object] = []

        def elsewhere() -> None:
            try:
                conn.getresponse()
            except ValueError as exc:  # this thread sent nothing
                other.append(exc)
            conn.request("POST", "/echo", body=b"theirs")
            other.append(conn.getresponse().read())

        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join(TIMEOUT * 2)
        assert not thread.is_alive()
        assert isinstance(other[0], ValueError)
        assert other[1] == b"theirs"
        assert conn.getresponse().read() == b"first"
        assert conn.getresponse().read() == b"second"


def test_read_amt_returns_pieces_and_buffers_the_rest(hypercorn_server, backend: str) -> None:
    size = 300_000
    with HTTP20Connection(
        _hostport(hypercorn_server.url_h2c), backend=backend, timeout=TIMEOUT
    ) as conn:
        conn.request("GET", f"/bytes/{size}")
        response = conn.getresponse()
        pieces = []
        while piece := response.read(7777):
            assert len(piece) <= 7777
            pieces.append(piece)
        assert all(len(piece) == 7777 for piece in pieces[:-1])
        assert b"".join(pieces) == pattern_bytes(size)
        assert response.read(10) == b""
        assert response.read(0) == b""

        conn.request("GET", f"/bytes/{size}")
        response = conn.getresponse()
        head = response.read(10)
        rest = response.read()  # amt=None after partial reads: everything left
        assert head + rest == pattern_bytes(size)

        conn.request("GET", "/stream?chunks=4&size=3&delay=0")
        chunks = list(conn.getresponse().read_chunked())
        assert b"".join(chunks) == b"000111222333"


def test_headers_map_semantics(hypercorn_server) -> None:
    with HTTP20Connection(_hostport(hypercorn_server.url_h2c), timeout=TIMEOUT) as conn:
        conn.request("GET", "/repeat-headers")
        with conn.getresponse() as response:
            headers = response.headers
            assert headers[b"set-cookie"] == [b"a=1", b"b=2"]
            assert headers["X-Multi"] == [b"one", b"two"]  # str or bytes, any case
            assert headers[b"content-type"] == [b"text/plain"]
            assert "content-type" in headers
            assert b"CONTENT-TYPE" in headers
            assert "nope" not in headers
            assert headers.get("nope") is None
            assert headers.get("nope", []) == []
            with pytest.raises(KeyError):
                headers["nope"]
            pairs = list(headers)
            assert (b"x-multi", b"two") in pairs
            assert all(isinstance(n, bytes) and isinstance(v, bytes) for n, v in pairs)
            assert len(headers) == len(pairs) == len(list(headers.keys()))
            assert list(headers.items()) == pairs
            assert response.read() == b"repeat"


def test_header_map_splits_commas_except_set_cookie() -> None:
    headers = HTTPHeaderMap([("Accept", "a, b"), (b"set-cookie", b"x=1, y=2")], te="trailers")
    assert headers["accept"] == [b"a", b"b"]
    assert headers["set-cookie"] == [b"x=1, y=2"]
    assert list(headers) == [
        (b"accept", b"a"),
        (b"accept", b"b"),
        (b"set-cookie", b"x=1, y=2"),
        (b"te", b"trailers"),
    ]
    assert next(headers.iter_raw()) == (b"Accept", b"a, b")
    headers["accept"] = "c"
    assert headers["ACCEPT"] == [b"a", b"b", b"c"]
    headers.replace("accept", "d")
    assert headers["accept"] == [b"d"]
    del headers["accept"]
    assert "accept" not in headers
    with pytest.raises(KeyError):
        del headers["accept"]
    assert headers == HTTPHeaderMap([(b"set-cookie", b"x=1, y=2"), (b"te", b"trailers")])


def test_trailers_read_the_body_and_keep_it(hypercorn_server) -> None:
    with HTTP20Connection(_hostport(hypercorn_server.url_h2c), timeout=TIMEOUT) as conn:
        conn.request("GET", "/trailers", headers={"te": "trailers"})
        response = conn.getresponse()
        assert response.trailers[b"x-checksum"] == [b"abc"]
        assert response.read() == b"body"
        conn.request("GET", "/bytes/5")
        plain = conn.getresponse()
        assert len(plain.trailers) == 0
        assert plain.read() == pattern_bytes(5)


def test_context_managers_close_responses_and_the_connection(nghttpd, backend: str) -> None:
    before = loop_thread_count()
    with HTTP20Connection(_hostport(nghttpd.url), backend=backend, timeout=TIMEOUT) as conn:
        assert loop_thread_count() == before  # opened lazily
        conn.request("GET", "/16m.bin")
        with conn.getresponse() as response:
            assert len(response.read(1000)) == 1000  # left early: the stream is reset
        assert loop_thread_count() == before + 1
        conn.request("GET", "/hello.txt")
        assert conn.getresponse().read() == b"hello, world\n"
    assert loop_thread_count() == before


def test_close_leaves_no_thread_and_the_next_request_reconnects(nghttpd) -> None:
    before = loop_thread_count()
    conn = HTTP20Connection(_hostport(nghttpd.url), timeout=TIMEOUT)
    conn.connect()
    conn.connect()  # no-op
    assert loop_thread_count() == before + 1
    uncollected = conn.request("GET", "/1m.bin")
    conn.close()
    assert loop_thread_count() == before
    with pytest.raises(ValueError, match="awaits getresponse"):
        conn.getresponse(uncollected)
    conn.close()  # idempotent
    assert conn.request("GET", "/1b") == 1  # a fresh connection numbers from 1 again
    assert conn.getresponse().read() == b"x"
    assert conn.ping(b"12345678") > 0
    conn.close()
    assert loop_thread_count() == before


def test_an_unclosed_shim_warns_and_is_cleaned_up(nghttpd) -> None:
    before = loop_thread_count()
    conn = HTTP20Connection(_hostport(nghttpd.url), timeout=TIMEOUT)
    conn.request("GET", "/1b")
    with pytest.warns(ResourceWarning, match="unclosed"):  # noqa: PT031
        del conn  # nothing in the loop thread refers back to the shim
        gc.collect()
    assert loop_thread_count() == before


def test_putrequest_putheader_endheaders_send(hypercorn_server, backend: str) -> None:
    with HTTP20Connection(
        _hostport(hypercorn_server.url_h2c), backend=backend, timeout=TIMEOUT
    ) as conn:
        stream_id = conn.putrequest("POST", "/echo")
        conn.putheader("X-One", "1", stream_id)
        conn.putheader("Connection", "keep-alive")  # dropped, as hyper did
        conn.endheaders(message_body=b"part1-", stream_id=stream_id)
        conn.send(b"part2-")
        conn.send("part3", final=True, stream_id=stream_id)
        response = conn.getresponse(stream_id)
        assert response.stream_id == stream_id == 1
        assert response.read() == b"part1-part2-part3"
        assert response.headers[b"x-body-length"] == [b"17"]

        stream_id = conn.putrequest("GET", "/headers")
        conn.putheader("x-replace", "old")
        conn.putheader("x-replace", "new", replace=True)
        conn.endheaders(final=True)
        echoed = json.loads(conn.getresponse(stream_id).read())
        sent = [pair for pair in echoed["headers"] if pair[0] == "x-replace"]
        assert sent == [["x-replace", "new"]]
        assert all(name != "connection" for name, _ in echoed["headers"])
        with pytest.raises(ValueError, match="under construction"):
            conn.send(b"late", stream_id=stream_id)


def test_send_streams_a_large_body_in_pieces(hypercorn_server, backend: str) -> None:
    piece = bytes(range(256)) * 256  # 64 KiB
    with HTTP20Connection(
        _hostport(hypercorn_server.url_h2c), backend=backend, timeout=TIMEOUT
    ) as conn:
        stream_id = conn.putrequest("POST", "/sha256")
        conn.endheaders()
        digest = hashlib.sha256()
        for _ in range(64):  # 4 MiB, more than any window: send() waits for the server
            conn.send(piece, stream_id=stream_id)
            digest.update(piece)
        conn.send(b"", final=True, stream_id=stream_id)
        result = json.loads(conn.getresponse(stream_id).read())
        assert result == {"length": 64 * len(piece), "sha256": digest.hexdigest()}


def test_request_streams_a_file_body(hypercorn_server, tmp_path) -> None:
    data = pattern_bytes(3_000_000)
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    with HTTP20Connection(_hostport(hypercorn_server.url_h2c), timeout=TIMEOUT) as conn:
        with path.open("rb") as file:
            stream_id = conn.request("POST", "/sha256", body=file)
            result = json.loads(conn.getresponse(stream_id).read())
    assert result == {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_invalid_requests_fail_at_once_and_use_no_stream_id(hypercorn_server) -> None:
    with HTTP20Connection(_hostport(hypercorn_server.url_h2c), timeout=TIMEOUT) as conn:
        with pytest.raises(h2any.InvalidRequest):
            conn.request("GET", "no-slash")
        with pytest.raises(h2any.InvalidRequest):
            conn.request("GET", "/", headers={"bad name": "x"})
        assert conn.request("GET", "/status/204") == 1
        assert conn.getresponse(1).status == 204


def test_failed_request_raises_from_getresponse(hypercorn_server) -> None:
    with HTTP20Connection(
        _hostport(hypercorn_server.url_h2c), timeout=h2any.Timeout(TIMEOUT, read=0.2)
    ) as conn:
        slow = conn.request("GET", "/slow-headers?delay=5")
        with pytest.raises(h2any.ReadTimeout):
            conn.getresponse(slow)
        conn.request("GET", "/status/200")
        assert conn.getresponse().status == 200


@pytest.fixture(scope="module")
def echo_server(nghttpd_factory):
    return nghttpd_factory(["--echo-upload"])


def test_8_threads_share_one_connection_with_checked_bodies(echo_server, backend: str) -> None:
    failures: list[BaseException] = []
    done = [0] * 8

    def work(index: int) -> None:
        try:
            for number in range(100):
                bodies = [
                    f"{index}:{number}:{k}:{uuid.uuid4()}".encode() * (1 + (number + k) % 9)
                    for k in range(3)
                ]
                ids = [conn.request("POST", "/hello.txt", body=body) for body in bodies]
                for stream_id, body in reversed(list(zip(ids, bodies, strict=True))):
                    response = conn.getresponse(stream_id)
                    assert response.read() == body
                done[index] += 1
        except BaseException as exc:  # reported below, from the test's thread
            failures.append(exc)

    with HTTP20Connection(_hostport(echo_server.url), backend=backend, timeout=TIMEOUT * 3) as conn:
        threads = [threading.Thread(target=work, args=(index,)) for index in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads), "a thread hung"
    assert failures == []
    assert done == [100] * 8


# ---------------------------------------------------------------------------- embedded server


class _ServerThread:
    """The embedded h2any.testing server, run in a thread with its own event loop."""

    def __init__(self, app) -> None:  # type: ignore[no-untyped-def]
        self._app = app
        self._ready = threading.Event()
        self._stop = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=anyio.run, args=(self._main,), daemon=True)

    async def _main(self) -> None:
        async with serve(self._app) as server:
            self.port = server.port
            self._ready.set()
            await anyio.to_thread.run_sync(self._stop.wait)

    def __enter__(self) -> _ServerThread:
        self._thread.start()
        assert self._ready.wait(TIMEOUT)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)


PLAIN = b"compressible " * 1000


async def gzip_app(request: Request) -> Response:
    return Response(200, headers=[("content-encoding", "gzip")], body=gzip.compress(PLAIN, mtime=0))


@pytest.fixture(scope="module")
def gzip_server() -> Iterator[_ServerThread]:
    with _ServerThread(gzip_app) as server:
        yield server


def test_read_decodes_content_unless_told_not_to(gzip_server) -> None:
    with HTTP20Connection(f"127.0.0.1:{gzip_server.port}", timeout=TIMEOUT) as conn:
        conn.request("GET", "/")
        assert conn.getresponse().read() == PLAIN
        conn.request("GET", "/")
        assert conn.getresponse().read(decode_content=False) == gzip.compress(PLAIN, mtime=0)
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.read(100) == PLAIN[:100]
        with pytest.raises(ValueError, match="decode_content"):
            response.read(decode_content=False)
        assert response.read() == PLAIN[100:]


def test_getpushes_yields_hyper_style_pushes(nghttpd_factory, backend: str) -> None:
    server = nghttpd_factory(["-p/hello.txt=/1b,/1m.bin"])
    with HTTP20Connection(
        _hostport(server.url), enable_push=True, backend=backend, timeout=TIMEOUT
    ) as conn:
        stream_id = conn.request("GET", "/hello.txt")
        pushes = list(conn.getpushes(stream_id, capture_all=True))
        assert sorted(push.path for push in pushes) == [b"/1b", b"/1m.bin"]
        for push in pushes:
            assert (push.method, push.scheme) == (b"GET", b"http")
            assert push.authority == _hostport(server.url).encode()
            assert not any(name.startswith(b":") for name, _ in push.request_headers)
            assert push.parent_stream_id == stream_id
        small = next(push for push in pushes if push.path == b"/1b")
        big = next(push for push in pushes if push.path == b"/1m.bin")
        big.cancel()  # already cached, say
        with small.getresponse() as pushed:
            assert (pushed.status, pushed.read()) == (200, b"x")
        assert conn.getresponse(stream_id).read() == b"hello, world\n"
        assert list(conn.getpushes(stream_id)) == []  # not idempotent

        # After getresponse(), and without an id (this thread's latest request).
        conn.request("GET", "/hello.txt")
        assert conn.getresponse().read() == b"hello, world\n"
        paths = sorted(push.path for push in conn.getpushes(capture_all=True))
        assert paths == [b"/1b", b"/1m.bin"]
        assert conn.ping() > 0  # the connection is fine after unclaimed pushes


def test_getpushes_needs_enable_push(nghttpd) -> None:
    with HTTP20Connection(_hostport(nghttpd.url), timeout=TIMEOUT) as conn:
        conn.request("GET", "/hello.txt")
        with pytest.raises(RuntimeError, match="enable_push"):
            list(conn.getpushes())
