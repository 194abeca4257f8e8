"""h2any.sync.HTTP20Connection: hyper's API, end to end against real servers.

Hang guard: every connection carries a timeout (h2any's default is 10 s per step, and tests
that wait on other threads join them with a deadline), so a broken shim fails, never hangs.
"""

from __future__ import annotations

import base64
import collections.abc
import gc
import gzip
import hashlib
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import h2.settings
import pytest
from asgi_app import pattern_bytes
from conftest import loop_thread_count
from scripted import scripted_server
from test_proxy import tinyproxy, tinyproxy_factory  # noqa: F401

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


# ---------------------------------------------------------------------------- hyper 0.7's semantics


def _map(*fields: tuple[str | bytes, str | bytes]) -> HTTPHeaderMap:
    return HTTPHeaderMap(fields)


def _after(headers: HTTPHeaderMap, operation) -> list[tuple[bytes, bytes]]:  # type: ignore[no-untyped-def]
    operation(headers)
    return list(headers.iter_raw())


# Each row: what hyper 0.7's hyper/common/headers.py does (read from its source), as
# (case, expression over fresh maps, expected value).
HYPER_HEADER_MAP_SEMANTICS = [
    ("getitem splits on commas", lambda: _map(("a", "1, 2"))["a"], [b"1", b"2"]),
    (
        "set-cookie is not split",
        lambda: _map(("Set-Cookie", "x=1, y=2"))["set-cookie"],
        [b"x=1, y=2"],
    ),
    ("lookup ignores case", lambda: _map((b"X-A", b"1"))["x-a"], [b"1"]),
    (
        "repeated names, in order",
        lambda: _map(("a", "1"), ("b", "2"), ("A", "3"))[b"a"],
        [b"1", b"3"],
    ),
    ("get: default if absent", lambda: _map().get("a", "none"), "none"),
    ("get: the list if present", lambda: _map(("a", "1,2")).get("A"), [b"1", b"2"]),
    (
        "setitem appends",
        lambda: _after(_map(("a", "1")), lambda h: h.__setitem__("a", "2")),
        [(b"a", b"1"), (b"a", b"2")],
    ),
    (
        "delitem removes every field",
        lambda: _after(_map(("a", "1"), ("b", "2"), ("A", "3")), lambda h: h.__delitem__("a")),
        [(b"b", b"2")],
    ),
    (
        "replace keeps the first field's place",
        lambda: _after(_map(("a", "1"), ("b", "2"), ("A", "3")), lambda h: h.replace("a", "x")),
        [(b"a", b"x"), (b"b", b"2")],
    ),
    (
        "replace of an absent name appends",
        lambda: _after(_map(("b", "2")), lambda h: h.replace("a", "x")),
        [(b"b", b"2"), (b"a", b"x")],
    ),
    (
        "merge of a map keeps its fields as stored",
        lambda: _after(_map(("a", "1")), lambda h: h.merge(_map(("B", "2, 3")))),
        [(b"a", b"1"), (b"B", b"2, 3")],
    ),
    (
        "merge of a dict appends its items",
        lambda: _after(_map(("a", "1")), lambda h: h.merge({"a": "2"})),
        [(b"a", b"1"), (b"a", b"2")],
    ),
    (
        "merge into itself does nothing",
        lambda: (lambda h: _after(h, lambda m: m.merge(m)))(_map(("a", "1"))),
        [(b"a", b"1")],
    ),
    (
        "update appends (MutableMapping)",
        lambda: _after(_map(("a", "1")), lambda h: h.update({"a": "2"})),
        [(b"a", b"1"), (b"a", b"2")],
    ),
    ("len counts canonical values", lambda: len(_map(("a", "1, 2"), ("set-cookie", "x, y"))), 3),
    (
        "iteration: lowercase canonical pairs",
        lambda: list(_map(("A", "1, 2"))),
        [(b"a", b"1"), (b"a", b"2")],
    ),
    ("keys repeat names", lambda: list(_map(("a", "1,2"), ("b", "3")).keys()), [b"a", b"a", b"b"]),
    ("values are canonical", lambda: list(_map(("a", "1,2")).values()), [b"1", b"2"]),
    ("items as iteration", lambda: list(_map(("a", "1,2")).items()), [(b"a", b"1"), (b"a", b"2")]),
    (
        "iter_raw keeps case and commas",
        lambda: list(_map(("X-A", "1, 2")).iter_raw()),
        [(b"X-A", b"1, 2")],
    ),
    (
        "contains ignores case",
        lambda: (b"X-A" in _map(("x-a", "1")), "b" in _map(("x-a", "1"))),
        (True, False),
    ),
    (
        "equality compares fields as stored",
        lambda: (_map(("a", "1")) == _map(("a", "1")), _map(("A", "1")) == _map(("a", "1"))),
        (True, False),
    ),
    ("a MutableMapping", lambda: isinstance(_map(), collections.abc.MutableMapping), True),
]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [pytest.param(expr, expected, id=case) for case, expr, expected in HYPER_HEADER_MAP_SEMANTICS],
)
def test_header_map_follows_hyper_07(expression, expected) -> None:  # type: ignore[no-untyped-def]
    assert expression() == expected


def test_header_map_errors_as_hyper() -> None:
    headers = _map(("a", "1"))
    with pytest.raises(KeyError):
        headers["b"]
    with pytest.raises(KeyError):
        del headers["b"]
    with pytest.raises(ValueError, match="str or bytes"):  # hyper: ValueError too
        headers[b"c"] = 3  # type: ignore[assignment]
    assert headers.pop("a") == [b"1"]
    assert headers.pop("a", None) is None
    assert headers.setdefault("z", "9") == "9"  # MutableMapping's, as hyper's
    headers.clear()
    assert len(headers) == 0


# ---------------------------------------------------------------------------- exact stream ids


class _ScriptedThread:
    """tests/scripted.py's server in a thread with its own event loop: every request is
    answered with the stream id the server saw (``x-wire-stream``); ``/hold`` waits for
    ``release`` first."""

    def __init__(self, max_streams: int | None = None) -> None:
        self.release = threading.Event()
        self._max_streams = max_streams
        self._ready = threading.Event()
        self._stop = threading.Event()
        self.url = ""
        self._thread = threading.Thread(target=anyio.run, args=(self._main,), daemon=True)

    async def _handler(self, peer) -> None:  # type: ignore[no-untyped-def]
        settings = None
        if self._max_streams is not None:
            settings = {h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self._max_streams}
        await peer.handshake(settings)
        while True:
            request = await peer.expect_request()
            if request.path == "/hold":
                await anyio.to_thread.run_sync(self.release.wait, abandon_on_cancel=True)
            headers = [("x-wire-stream", str(request.stream_id))]
            await peer.respond(request.stream_id, headers=headers, body=request.path.encode())

    async def _main(self) -> None:
        async with scripted_server(self._handler) as server:
            self.url = server.url
            self._ready.set()
            await anyio.to_thread.run_sync(self._stop.wait)

    def __enter__(self) -> _ScriptedThread:
        self._thread.start()
        assert self._ready.wait(TIMEOUT)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release.set()
        self._stop.set()
        self._thread.join(TIMEOUT)


def _wire(response: HTTP20Response) -> int:
    return int(response.headers[b"x-wire-stream"][0])


def test_stream_ids_are_the_wire_ids_after_a_pool_timeout(backend: str) -> None:
    with _ScriptedThread(max_streams=1) as server:
        timeout = h2any.Timeout(TIMEOUT, pool=0.3)
        with HTTP20Connection(_hostport(server.url), backend=backend, timeout=timeout) as conn:
            held = conn.request("GET", "/hold")
            assert held == 1
            with pytest.raises(h2any.PoolTimeout):  # as hyper, the failure is request()'s
                conn.request("GET", "/never")  # no slot: never opened, used no id
            server.release.set()
            response = conn.getresponse(held)
            assert (_wire(response), response.read()) == (1, b"/hold")
            for expected in (3, 5):
                stream_id = conn.request("GET", f"/after/{expected}")
                response = conn.getresponse(stream_id)
                assert stream_id == response.stream_id == _wire(response) == expected


def test_stream_ids_are_the_wire_ids_for_putrequest_and_threads(backend: str) -> None:
    with _ScriptedThread() as server:
        with HTTP20Connection(_hostport(server.url), backend=backend, timeout=TIMEOUT) as conn:
            # A draft reserves its id; another thread's request waits for its endheaders().
            draft = conn.putrequest("GET", "/draft")
            assert draft == 1
            other: list[int] = []
            started = threading.Event()

            def elsewhere() -> None:
                started.set()
                stream_id = conn.request("GET", "/other")
                other.extend((stream_id, _wire(conn.getresponse(stream_id))))

            thread = threading.Thread(target=elsewhere)
            thread.start()
            assert started.wait(TIMEOUT)
            conn.putheader("x-draft", "1", draft)
            conn.endheaders(final=True, stream_id=draft)
            thread.join(TIMEOUT)
            assert other == [3, 3]
            assert _wire(conn.getresponse(draft)) == 1

            # The same thread's own earlier draft cannot be waited for: refused, as hyper's h2
            # refused the out-of-order stream.
            first = conn.putrequest("GET", "/first")
            second = conn.putrequest("GET", "/second")
            assert (first, second) == (5, 7)
            with pytest.raises(h2any.InvalidRequest, match="stream 5"):
                conn.endheaders(final=True, stream_id=second)
            with pytest.raises(h2any.InvalidRequest, match="stream 5"):
                conn.request("GET", "/third")
            conn.endheaders(final=True, stream_id=first)
            conn.endheaders(final=True, stream_id=second)
            for stream_id in (first, second):
                assert _wire(conn.getresponse(stream_id)) == stream_id

            # Many threads at once: every id returned is the one the server saw.
            seen: list[tuple[int, int]] = []
            lock = threading.Lock()

            def many() -> None:
                for _ in range(20):
                    stream_id = conn.request("GET", "/many")
                    wire = _wire(conn.getresponse(stream_id))
                    with lock:
                        seen.append((stream_id, wire))

            threads = [threading.Thread(target=many) for _ in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(TIMEOUT * 3)
            assert len(seen) == 80
            assert all(stream_id == wire for stream_id, wire in seen)
            assert sorted(wire for _, wire in seen) == list(range(9, 9 + 160, 2))


# ---------------------------------------------------------------------------- hyper's arguments


def test_hyper_constructor_arguments_and_attributes() -> None:
    conn = HTTP20Connection("example.org:8443", secure=True, timeout=(3, 10))
    assert conn._options["timeout"] == h2any.Timeout(10, connect=3)
    assert conn.version is h2any.sync.HTTPVersion.http20
    assert (conn.host, conn.port, conn.secure, conn.proxy_host, conn.proxy_port) == (
        "example.org",
        8443,
        True,
        None,
        None,
    )
    proxied = HTTP20Connection("example.org", proxy_host="proxy.corp")
    assert (proxied.proxy_host, proxied.proxy_port) == ("proxy.corp", 8080)
    assert proxied._options["proxy"] == "http://proxy.corp:8080"
    credentials = "Basic " + base64.b64encode(b"me:p@ss").decode()
    authed = HTTP20Connection(
        "example.org",
        proxy_host="proxy.corp:3128",
        proxy_headers={"Proxy-Authorization": credentials},
    )
    assert authed._options["proxy"] == "http://me:p%40ss@proxy.corp:3128"
    with pytest.raises(NotImplementedError, match="x-other"):
        HTTP20Connection("example.org", proxy_host="p", proxy_headers={"x-other": "1"})
    assert HTTP20Connection("example.org", force_proto="h2").force_proto == "h2"
    with pytest.raises(ValueError, match="force_proto"):
        HTTP20Connection("example.org", force_proto="http/1.1")
    with pytest.raises(ValueError, match="connect, read"):
        HTTP20Connection("example.org", timeout=(1, 2, 3))  # type: ignore[arg-type]


def test_proxy_host_tunnels_through_a_proxy(tinyproxy, nghttpd_tls, certs) -> None:  # noqa: F811
    with HTTP20Connection(
        "localhost",
        nghttpd_tls.port,
        secure=True,
        ssl_context=certs.client_ssl_context(),
        proxy_host="127.0.0.1",
        proxy_port=tinyproxy.port,
        timeout=TIMEOUT,
    ) as conn:
        conn.request("GET", "/hello.txt")
        assert conn.getresponse().read() == b"hello, world\n"
    assert f"CONNECT localhost:{nghttpd_tls.port} " in tinyproxy.log()


def test_hyper_exception_names_are_h2any_errors() -> None:
    sync = h2any.sync
    assert sync.HTTP20Error is h2any.H2anyError
    assert sync.StreamResetError is h2any.StreamReset
    assert sync.HPACKDecodingError is h2any.ProtocolError
    assert sync.HPACKEncodingError is h2any.InvalidRequest
    assert sync.ProtocolError is h2any.ProtocolError
    assert sync.ProxyError is h2any.ProxyError
    assert sync.SocketError is h2any.ConnectionClosed
    assert sync.InvalidResponseError is sync.ChunkedDecodeError is h2any.ProtocolError
    assert sync.LineTooLongError is h2any.ProtocolError


# ---------------------------------------------------------------------------- HTTPConnection


class _Http11Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = self.path.encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def http11_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Http11Handler)
    # shutdown() waits for serve_forever's next poll: 0.05 s, not the default 0.5 s
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(TIMEOUT)


def test_http_connection_speaks_http11_to_an_http11_server(
    http11_server: str, backend: str
) -> None:
    with h2any.sync.HTTPConnection(http11_server, backend=backend, timeout=TIMEOUT) as conn:
        assert conn.version is h2any.sync.HTTPVersion.http11
        assert conn.request("GET", "/one") is None  # as hyper: no stream id over HTTP/1.1
        assert conn.request("POST", "/", body=b"two") is None
        first, second = conn.get_response(), conn.get_response()
        assert isinstance(first, h2any.sync.HTTP11Response)
        assert (first.status, first.reason, first.read()) == (200, "OK", b"/one")
        assert second.read() == b"two"
        assert first.version is conn.version is h2any.sync.HTTPVersion.http11
        with pytest.raises(NotImplementedError):
            first.fileno()
        assert conn.putrequest("POST", "/") is None
        conn.putheader("content-type", "text/plain")
        conn.endheaders(b"a")
        conn.send(b"b", final=True)
        assert conn.getresponse().read() == b"ab"


def test_http_connection_speaks_h2_when_offered(hypercorn_server, nghttpd_tls, certs) -> None:
    with h2any.sync.HTTPConnection(_hostport(hypercorn_server.url_h2c), timeout=TIMEOUT) as conn:
        stream_id = conn.request("POST", "/echo", body=b"h2c")
        assert conn.version is h2any.sync.HTTPVersion.http20
        response = conn.get_response(stream_id)
        assert (response.stream_id, response.read()) == (1, b"h2c")
    with h2any.sync.HTTPConnection(
        f"localhost:{nghttpd_tls.port}",
        secure=True,
        ssl_context=certs.client_ssl_context(),
        timeout=TIMEOUT,
    ) as conn:
        assert conn.request("GET", "/hello.txt") == 1
        assert conn.get_response().read() == b"hello, world\n"


def test_every_name_of_the_import_map_resolves() -> None:
    # docs/migrating-from-hyper.md's import map: what `import hyper` gives in its examples.
    from docs_runner import _resolve, hyper_names

    names = hyper_names()
    assert names["hyper.HTTP20Connection"] == "h2any.sync.HTTP20Connection"
    assert names["hyper.contrib.HTTP20Adapter"] == "h2any.contrib.HTTP20Adapter"
    for target in names.values():
        assert _resolve(target) is not None, target
