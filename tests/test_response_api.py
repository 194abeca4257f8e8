"""The response API httpx users know, on ``h2any.Response`` and ``h2any.sync.Response``.

Peers: the embedded server (``h2any.testing.serve``) with an app of this file's own (status,
content type and body chosen by the request's path; DATA frames cut at 16 KiB with
``max_frame_size=16384``, so that characters and line breaks can be split between two
chunks), hypercorn (``tests/asgi_app.py``: slow headers, gzip) and nghttpd; the blocking facade
against the same embedded app run in a portal thread; Python's ``http.server`` for a response
that came over HTTP/1.1 (the Client falls back to it).
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.from_thread
import pytest
from hypothesis import given
from hypothesis import strategies as st

import h2any
import h2any.sync
from h2any._response import LineSplitter, charset_of, decode_text
from h2any.testing import Request as ServerRequest
from h2any.testing import Response as ServerResponse
from h2any.testing import serve

pytestmark = pytest.mark.anyio

FRAME = 16384
# A body whose first DATA frame (FRAME bytes) ends in the middle of a two-byte character,
# and whose "\r\n" is split between the second and third frames.
SPLIT_TEXT = "a" * (FRAME - 1) + "é" + "b" * (FRAME - 2) + "\r\n" + "last line"


async def app(request: ServerRequest) -> ServerResponse:
    """``/status/N``: that status (``?location=`` adds a Location header); ``/text?charset=C``:
    ``"café\\r\\nline 2\\nline 3"`` in C (a Content-Type without charset if C is empty);
    ``/json``; ``/split``: `SPLIT_TEXT`; ``/bad-utf8``; ``/gzip``; ``/echo``: the request's
    authority, path and headers as JSON."""
    url = urlsplit(request.path)
    query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
    if url.path.startswith("/status/"):
        headers = [("location", query["location"])] if "location" in query else []
        return ServerResponse(int(url.path[len("/status/") :]), headers=headers)
    if url.path == "/text":
        charset = query.get("charset", "")
        content_type = f"text/plain; charset={charset}" if charset else "text/plain"
        body = "café\r\nline 2\nline 3".encode(charset or "utf-8")
        return ServerResponse(200, headers=[("content-type", content_type)], body=body)
    if url.path == "/json":
        body = json.dumps({"name": "bücher", "n": [1, 2]}).encode()
        return ServerResponse(200, headers=[("content-type", "application/json")], body=body)
    if url.path == "/split":
        return ServerResponse(200, body=SPLIT_TEXT.encode())
    if url.path == "/utf16-no-bom":
        body = "café\nend".encode(f"utf-16-{sys.byteorder[0]}e")
        return ServerResponse(
            200, headers=[("content-type", "text/plain; charset=utf-16")], body=body
        )
    if url.path == "/bad-utf8":
        return ServerResponse(200, body=b"ok \xff\xfe end")
    if url.path == "/gzip":
        return ServerResponse(
            200, headers=[("content-encoding", "gzip")], body=gzip.compress(b"z" * 100_000)
        )
    if url.path == "/echo":
        body = json.dumps(
            {"authority": request.authority, "path": request.path, "headers": request.headers}
        ).encode()
        return ServerResponse(200, headers=[("content-type", "application/json")], body=body)
    return ServerResponse(404)


@contextmanager
def served_in_a_thread() -> Iterator[str]:
    """The embedded server running `app` in a portal thread (for the blocking facade)."""
    with anyio.from_thread.start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(serve(app)) as server:
            yield server.url


async def get(conn: h2any.Connection, path: str) -> h2any.Response:
    response = await conn.request("GET", path)
    await response.read()
    return response


# -- status ---------------------------------------------------------------------------------

STATUS_FLAGS = {
    # status: informational, success, redirect, client error, server error
    200: (False, True, False, False, False),
    204: (False, True, False, False, False),
    301: (False, False, True, False, False),
    304: (False, False, True, False, False),
    404: (False, False, False, True, False),
    451: (False, False, False, True, False),
    500: (False, False, False, False, True),
    503: (False, False, False, False, True),
}


async def test_status_code_reason_phrase_and_the_is_flags() -> None:
    with anyio.fail_after(10):
        async with serve(app) as server, h2any.Connection(server.url) as conn:
            for status, flags in STATUS_FLAGS.items():
                response = await get(conn, f"/status/{status}")
                assert response.status_code == response.status == status
                assert (
                    response.is_informational,
                    response.is_success,
                    response.is_redirect,
                    response.is_client_error,
                    response.is_server_error,
                ) == flags
                assert response.is_error == (flags[3] or flags[4])
            response = await get(conn, "/status/404")
            assert response.reason_phrase == "Not Found"
            # HTTP/2 carries no reason phrase: a code without a standard one has none.
            response = await get(conn, "/status/299")
            assert response.reason_phrase == ""
            assert response.is_success


async def test_has_redirect_location_needs_a_redirect_status_and_a_location() -> None:
    with anyio.fail_after(10):
        async with serve(app) as server, h2any.Connection(server.url) as conn:
            assert (await get(conn, "/status/302?location=/there")).has_redirect_location
            assert (await get(conn, "/status/308?location=/there")).has_redirect_location
            assert not (await get(conn, "/status/302")).has_redirect_location
            assert not (await get(conn, "/status/304?location=/there")).has_redirect_location
            assert not (await get(conn, "/status/200?location=/there")).has_redirect_location


async def test_raise_for_status_returns_the_response_for_2xx() -> None:
    with anyio.fail_after(10):
        async with serve(app) as server, h2any.Connection(server.url) as conn:
            response = await get(conn, "/status/200")
            assert response.raise_for_status() is response


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/status/404", ["Client error '404 Not Found' for url 'http://", "/status/404'"]),
        ("/status/503", ["Server error '503 Service Unavailable'"]),
        (
            "/status/301?location=/moved",
            ["Redirect response '301 Moved Permanently'", "Redirect location: '/moved'"],
        ),
    ],
)
async def test_raise_for_status_raises_http_status_error(path: str, words: list[str]) -> None:
    with anyio.fail_after(10):
        async with serve(app) as server, h2any.Connection(server.url) as conn:
            response = await get(conn, path)
            with pytest.raises(h2any.HTTPStatusError) as caught:
                response.raise_for_status()
    error = caught.value
    assert isinstance(error, h2any.H2anyError)
    assert error.response is response
    assert error.request is response.request
    assert error.request.method == "GET"
    assert error.request.url == f"{server.url}{path}"
    for word in words:
        assert word in str(error)
    status = path.split("/")[2].split("?")[0]
    assert f"https://developer.mozilla.org/en-US/docs/Web/HTTP/Status/{status}" in str(error)


async def test_http_status_error_masks_credentials_in_urls() -> None:
    with anyio.fail_after(10):
        async with serve(app) as server, h2any.Connection(server.url) as conn:
            response = await get(conn, "/status/302?location=https://u:hunter2@elsewhere/")
            # A URL the redirect machinery might set, with credentials in it.
            response.url = server.url.replace("://", "://me:hunter2@") + "/x"
            with pytest.raises(h2any.HTTPStatusError) as caught:
                response.raise_for_status()
    assert "hunter2" not in str(caught.value)
    assert "me:****@" in str(caught.value)
    assert "u:****@elsewhere" in str(caught.value)


# -- url, request, history, http_version ----------------------------------------------------


async def test_url_and_request_of_a_connection_request(nghttpd) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd.url) as conn:
            response = await conn.request(
                "GET", "/hello.txt?q=1", headers={"x-trace": "7", "authorization": "Bearer s3"}
            )
            await response.read()
    assert response.url == f"{nghttpd.url}/hello.txt?q=1"
    request = response.request
    assert isinstance(request, h2any.Request)
    assert request.method == "GET"
    assert request.url == response.url
    assert request.headers["x-trace"] == "7"
    assert request.headers["authorization"] == "Bearer s3"
    assert "s3" not in repr(request) + repr(request.headers)
    assert response.http_version == "HTTP/2"
    assert response.history == []


async def test_url_of_a_client_request_holds_params_and_no_userinfo(hypercorn_server) -> None:
    base = hypercorn_server.url_h2c.replace("://", "://alice:hunter2@")
    with anyio.fail_after(10):
        async with h2any.Client() as client:
            response = await client.request("GET", f"{base}/headers", params={"a": "b c"})
            await response.read()
    assert response.url == f"{hypercorn_server.url_h2c}/headers?a=b+c"
    assert "hunter2" not in repr(response.request) + response.url
    assert response.request.headers["authorization"].startswith("Basic ")


async def test_history_and_url_can_be_set_by_the_client() -> None:
    with anyio.fail_after(10):
        async with serve(app) as server, h2any.Connection(server.url) as conn:
            first = await get(conn, "/status/302?location=/json")
            final = await get(conn, "/json")
            final.history = [first]
            final.url = f"{server.url}/json"
            final.request = h2any.Request("get", f"{server.url}/json", headers={"a": "1"})
    assert final.history == [first]
    assert final.request.method == "GET"
    assert final.request.headers["a"] == "1"
    # The list is the response's own: appending to it keeps the entries.
    fresh = first.history
    fresh.append(final)
    assert first.history == [final]


def test_request_repr_masks_the_password() -> None:
    request = h2any.Request("POST", "https://bob:hunter2@example.org/x", headers={"a": "b"})
    assert repr(request) == "<Request('POST', 'https://bob:****@example.org/x')>"
    assert request.headers["a"] == "b"


# -- elapsed --------------------------------------------------------------------------------


async def test_elapsed_runs_from_the_request_to_the_end_of_the_body(hypercorn_server) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            response = await conn.request("GET", "/slow-headers?delay=0.2")
            with pytest.raises(RuntimeError, match="elapsed"):
                response.elapsed  # noqa: B018 (the body is still unread)
            await response.read()
    assert isinstance(response.elapsed, timedelta)
    assert timedelta(seconds=0.2) <= response.elapsed < timedelta(seconds=5)


async def test_elapsed_is_known_once_the_response_is_closed_early(hypercorn_server) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            async with conn.stream("GET", "/stream?chunks=50&size=10&delay=0.05") as response:
                async for _ in response.aiter_bytes():
                    break
            assert response.elapsed < timedelta(seconds=2)


# -- text, encoding, json -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("charset", "encoding"),
    [("utf-8", "utf-8"), ("latin-1", "latin-1"), ("UTF-16", "UTF-16"), ("", "utf-8")],
)
async def test_text_is_decoded_with_the_charset_of_the_content_type(
    charset: str, encoding: str
) -> None:
    with anyio.fail_after(10):
        async with serve(app) as server, h2any.Connection(server.url) as conn:
            response = await get(conn, f"/text?charset={charset}")
    assert response.encoding == encoding
    assert response.text == "café\r\nline 2\nline 3"


async def test_an_unknown_charset_falls_back_to_utf8_and_bad_bytes_are_replaced() -> None:
    with anyio.fail_after(10):
        async with serve(app) as server, h2any.Connection(server.url) as conn:
            response = await get(conn, "/bad-utf8")
    assert response.encoding == "utf-8"
    assert response.text == "ok \ufffd\ufffd end"
    response.encoding = "latin-1"
    assert response.text == "ok ÿþ end"
    with pytest.raises(LookupError):
        response.encoding = "no-such-codec"
    with pytest.raises(LookupError):
        response.encoding = "rot13"


async def test_text_and_json_need_the_body_read_first() -> None:
    with anyio.fail_after(10):
        async with serve(app) as server, h2any.Connection(server.url) as conn:
            response = await conn.request("GET", "/json")
            with pytest.raises(RuntimeError, match="read"):
                response.text  # noqa: B018
            with pytest.raises(RuntimeError, match="read"):
                response.json()
            assert await response.aread() == response.content
            assert response.json() == {"name": "bücher", "n": [1, 2]}
            not_json = await get(conn, "/text")
            with pytest.raises(json.JSONDecodeError):
                not_json.json()
            # Bytes that are not UTF-8 (nor -16, -32): a UnicodeDecodeError, a ValueError too.
            with pytest.raises(UnicodeDecodeError):
                (await get(conn, "/bad-utf8")).json()


@pytest.mark.parametrize(
    ("content_type", "charset"),
    [
        ("text/html; charset=ISO-8859-1", "ISO-8859-1"),
        ('text/html; charset="utf-8"', "utf-8"),
        ("text/plain; format=flowed; CHARSET = utf8 ", "utf8"),
        ("text/plain; charset=x-no-such-codec", None),
        # Codecs that exist but cannot decode any body with errors="replace".
        ("text/plain; charset=rot13", None),
        ("text/plain; charset=base64", None),
        ("text/plain; charset=idna", None),
        ("text/plain; charset=punycode", None),
        ("text/plain; charset=undefined", None),
        ("text/plain; charset=utf-16", "utf-16"),
        ("text/plain; charset=", None),
        ("text/plain", None),
        ("application/json", None),
        (None, None),
    ],
)
def test_charset_of_a_content_type(content_type: str | None, charset: str | None) -> None:
    assert charset_of(content_type) == charset


# -- streaming text and lines ---------------------------------------------------------------


def _each_frame(direction: str, frame: object) -> None:
    """A frame observer: with one, each DATA frame is its own chunk (consecutive frames of a
    stream in one read are otherwise joined), so the chunks below split where the frames do."""


async def test_aiter_text_joins_a_character_split_between_chunks() -> None:
    with anyio.fail_after(10):
        async with (
            serve(app) as server,
            h2any.Connection(server.url, max_frame_size=FRAME, frame_observer=_each_frame) as c,
        ):
            async with c.stream("GET", "/split") as response:
                chunks = [chunk async for chunk in response.aiter_bytes()]
            # The peer did cut "é" in two: the test means something.
            assert chunks[0][-1:] == "é".encode()[:1]
            async with c.stream("GET", "/split") as response:
                pieces = [piece async for piece in response.aiter_text()]
    assert "".join(pieces) == SPLIT_TEXT
    assert "\ufffd" not in "".join(pieces)


async def test_aiter_lines_splits_like_splitlines_across_chunks() -> None:
    with anyio.fail_after(10):
        async with (
            serve(app) as server,
            h2any.Connection(server.url, max_frame_size=FRAME, frame_observer=_each_frame) as c,
        ):
            async with c.stream("GET", "/split") as response:
                chunks = [chunk async for chunk in response.aiter_bytes()]
            assert chunks[1].endswith(b"\r")
            assert chunks[2].startswith(b"\n")
            async with c.stream("GET", "/split") as response:
                lines = [line async for line in response.aiter_lines()]
            assert lines == SPLIT_TEXT.splitlines()
            async with c.stream("GET", "/text?charset=latin-1") as response:
                assert [line async for line in response.aiter_lines()] == [
                    "café",
                    "line 2",
                    "line 3",
                ]


async def test_aiter_raw_and_num_bytes_downloaded_count_the_wire_bytes() -> None:
    with anyio.fail_after(10):
        async with serve(app) as server, h2any.Connection(server.url) as conn:
            async with conn.stream("GET", "/gzip") as response:
                raw = b"".join([chunk async for chunk in response.aiter_raw()])
            assert response.num_bytes_downloaded == len(raw)
            assert gzip.decompress(raw) == b"z" * 100_000
            decoded = await get(conn, "/gzip")
            assert decoded.content == b"z" * 100_000
            assert decoded.num_bytes_downloaded == len(raw)


@given(st.text(alphabet="ab\r\n\x0b\x85\u2028 ", max_size=40), st.data())
def test_line_splitter_agrees_with_splitlines(text: str, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=6)))
    pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    splitter = LineSplitter()
    lines = [line for piece in pieces for line in splitter.feed(piece)]
    lines += splitter.flush()
    assert lines == text.splitlines()


# Python's incremental UTF-16/32 decoders raise on a body without a byte order mark (h2any's
# decoder then takes the machine's byte order, as bytes.decode does).
@given(st.binary(max_size=60), st.sampled_from(["utf-8", "utf-16", "utf-32", "latin-1"]), st.data())
def test_text_decoded_piece_by_piece_is_the_text_decoded_whole(
    body: bytes, encoding: str, data: st.DataObject
) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=6)))
    chunks = [body[i:j] for i, j in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    assert "".join(decode_text(chunks, encoding)) == body.decode(encoding, "replace")


async def test_aiter_text_of_utf16_without_a_byte_order_mark() -> None:
    with anyio.fail_after(10):
        async with serve(app) as server, h2any.Connection(server.url) as conn:
            async with conn.stream("GET", "/utf16-no-bom") as response:
                assert [line async for line in response.aiter_lines()] == ["café", "end"]
            assert (await get(conn, "/utf16-no-bom")).text == "café\nend"


# -- the blocking facade --------------------------------------------------------------------


def test_sync_response_has_the_same_names() -> None:
    with served_in_a_thread() as url, h2any.sync.Connection(url, max_frame_size=FRAME) as conn:
        response = conn.request("GET", "/text?charset=latin-1")
        assert response.status_code == 200
        assert response.reason_phrase == "OK"
        assert response.is_success
        assert not response.is_error
        assert response.encoding == "latin-1"
        assert response.text == "café\r\nline 2\nline 3"
        assert response.url == f"{url}/text?charset=latin-1"
        assert response.request.method == "GET"
        assert response.elapsed > timedelta(0)
        assert response.history == []
        assert response.num_bytes_downloaded == len("café\r\nline 2\nline 3")
        # text and json() read the body when it has not been read (a large one here).
        with conn.stream("GET", "/split") as big:
            assert big.text == SPLIT_TEXT
        assert conn.request("GET", "/json").json()["name"] == "bücher"
        with conn.stream("GET", "/split") as big:
            assert "".join(big.iter_text()) == SPLIT_TEXT
        with conn.stream("GET", "/split") as big:
            assert list(big.iter_lines()) == SPLIT_TEXT.splitlines()
        with conn.stream("GET", "/gzip") as gz:
            assert gzip.decompress(b"".join(gz.iter_raw())) == b"z" * 100_000


def test_sync_raise_for_status_carries_the_sync_response() -> None:
    with served_in_a_thread() as url, h2any.sync.Connection(url) as conn:
        ok = conn.request("GET", "/status/204")
        assert ok.raise_for_status() is ok
        response = conn.request("GET", "/status/418")
        with pytest.raises(h2any.HTTPStatusError, match="418") as caught:
            response.raise_for_status()
    assert caught.value.response is response
    assert caught.value.request.url == f"{url}/status/418"


def test_sync_client_response_url_and_history(hypercorn_server) -> None:
    with h2any.sync.Client() as client:
        response = client.request("GET", f"{hypercorn_server.url_h2c}/headers")
        assert response.url == f"{hypercorn_server.url_h2c}/headers"
        assert response.json()["path"] == "/headers"
        assert response.history == []


# -- a pushed response ----------------------------------------------------------------------


async def test_a_pushed_response_has_the_promised_request(hypercorn_server) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(hypercorn_server.url_h2c, enable_push=True) as conn:
            response = await conn.request("GET", "/push-page")
            await response.read()
            pushes = [push async for push in conn.get_pushes(response.stream_id, True)]
            assert pushes
            pushed = await pushes[0].get_response()
            await pushed.read()
            assert pushed.request.method == "GET"
            assert pushed.url == pushed.request.url
            assert pushed.url.startswith(hypercorn_server.url_h2c + "/")
            assert pushed.raise_for_status() is pushed
            pushed.status = 404  # as if the push were a 404: still an HTTPStatusError
            with pytest.raises(h2any.HTTPStatusError, match="404") as info:
                pushed.raise_for_status()
            assert info.value.request.url == pushed.url
            for push in pushes[1:]:
                await push.cancel()


# -- over HTTP/1.1 --------------------------------------------------------------------------


class _Http11Handler(BaseHTTPRequestHandler):
    """``GET /status/N``: that status, ``text/plain; charset=latin-1`` body ``"café\\nend"``."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        status = int(self.path.split("/status/", 1)[1].split("?")[0])
        body = "café\nend".encode("latin-1")
        self.send_response(status)
        self.send_header("content-type", "text/plain; charset=latin-1")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http11_server() -> Iterator[str]:
    """``http.server`` (HTTP/1.1 only) in a thread; yields its ``http://`` URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Http11Handler)
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


async def test_a_response_over_http11_has_the_same_names(http11_server: str) -> None:
    with anyio.fail_after(10):
        async with h2any.Client() as client:
            response = await client.get(f"{http11_server}/status/200?q=ü")
            await response.read()
            missing = await client.get(f"{http11_server}/status/404")
            await missing.read()
            async with client.stream("GET", f"{http11_server}/status/200") as streamed:
                lines = [line async for line in streamed.aiter_lines()]
    assert response.http_version == "HTTP/1.1"
    assert response.url == f"{http11_server}/status/200?q=%C3%BC"
    assert response.request.method == "GET"
    assert response.request.url == response.url
    assert response.request.headers["host"] == http11_server.split("//")[1]
    assert response.text == "café\nend"
    assert lines == ["café", "end"]
    assert response.elapsed > timedelta(0)
    assert response.reason_phrase == "OK"
    with pytest.raises(h2any.HTTPStatusError, match=r"'404 Not Found' for url 'http://"):
        missing.raise_for_status()


def test_a_sync_response_over_http11_has_the_same_names(http11_server: str) -> None:
    with h2any.sync.Client() as client:
        response = client.get(f"{http11_server}/status/503")
        assert response.http_version == "HTTP/1.1"
        assert response.text == "café\nend"
        assert response.is_server_error
        with pytest.raises(h2any.HTTPStatusError, match="503") as caught:
            response.raise_for_status()
        assert caught.value.response is response
        assert caught.value.request.url == f"{http11_server}/status/503"
