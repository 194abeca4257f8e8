"""Requests h2any refuses to send: each raises InvalidRequest and leaves the connection usable."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import h2any

pytestmark = pytest.mark.anyio


def _case(match: str, id: str, method: str = "GET", url: str = "/hello.txt", **kwargs: Any):
    return pytest.param(method, url, kwargs, match, id=id)


BAD_VALUE = r"invalid value for header 'x-bad'"

INVALID_REQUESTS = [
    _case(r"invalid header name b'x bad'", "header-name-with-space", headers=[("x bad", "1")]),
    _case(r"invalid header name b'x:bad'", "header-name-with-colon", headers=[("x:bad", "1")]),
    _case(BAD_VALUE, "header-value-with-cr", headers=[("x-bad", "a\rb")]),
    _case(BAD_VALUE, "header-value-with-lf", headers=[("x-bad", "a\nb")]),
    _case(BAD_VALUE, "header-value-with-crlf", headers=[("x-bad", "a\r\nx-evil: 1")]),
    _case(BAD_VALUE, "header-value-with-nul", headers=[("x-bad", "a\x00b")]),
    _case(r"'connection' is connection-specific", "connection", headers={"connection": "close"}),
    _case(
        r"'transfer-encoding' is connection-specific",
        "transfer-encoding",
        headers={"Transfer-Encoding": "chunked"},
    ),
    _case(r"'keep-alive' is connection-specific", "keep-alive", headers={"keep-alive": "5"}),
    _case(r"'upgrade' is connection-specific", "upgrade", headers={"upgrade": "websocket"}),
    _case(r'"te".*"trailers"', "te-gzip", headers={"te": "gzip"}),
    _case(r"invalid method 'GE T'", "method-with-space", method="GE T"),
    _case(r"invalid method ''", "empty-method", method=""),
    _case(
        r"'http://example\.com/hello\.txt' is not on this connection's origin",
        "url-on-another-origin",
        url="http://example.com/hello.txt",
    ),
    _case(r"'hello\.txt' must be a path starting with '/'", "relative-url", url="hello.txt"),
    _case(r"path '/a b' contains whitespace", "path-with-space", url="/a b"),
    _case(r"path '/a\\tb' contains whitespace", "path-with-tab", url="/a\tb"),
    _case(
        r"content-length 5 does not match the body's 3 bytes",
        "content-length-mismatch",
        method="POST",
        headers={"content-length": "5"},
        body=b"abc",
    ),
    _case(
        r"body must be bytes, str, a file-like object, .* not int",
        "body-int",
        method="POST",
        body=5,
    ),
    _case(r"not a mapping", "body-dict", method="POST", body={"a": 1}),
]


@pytest.mark.parametrize(("method", "url", "kwargs", "match"), INVALID_REQUESTS)
async def test_invalid_request_is_refused_and_connection_stays_usable(
    nghttpd, method: str, url: str, kwargs: dict[str, Any], match: str
) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd.url) as conn:
            with pytest.raises(h2any.InvalidRequest, match=match) as info:
                await conn.request(method, url, **kwargs)
            assert isinstance(info.value, ValueError)
            assert not conn.is_closed
            response = await conn.request("GET", "/hello.txt")
            assert response.status == 200
            assert await response.read() == b"hello, world\n"
            # Nothing went on the wire for the refused request: this is the first stream.
            assert response.stream_id == 1


async def test_invalid_stream_request_is_refused_and_connection_stays_usable(nghttpd) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd.url) as conn:
            with pytest.raises(h2any.InvalidRequest, match="invalid header name"):
                async with conn.stream("GET", "/hello.txt", headers=[("bad name", "1")]):
                    pass
            async with conn.stream("GET", "/hello.txt") as response:
                assert await response.read() == b"hello, world\n"


async def test_many_invalid_requests_in_a_row_leave_the_connection_usable(nghttpd) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd.url) as conn:
            for _ in range(3):
                for method, url, kwargs, _match in (case.values for case in INVALID_REQUESTS):
                    with pytest.raises(h2any.InvalidRequest):
                        await conn.request(method, url, **kwargs)
            assert conn.open_streams == 0
            response = await conn.request("GET", "/1b")
            assert await response.read() == b"x"
            assert response.stream_id == 1


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        pytest.param({"x bad": "1"}, "invalid header name", id="name-with-space"),
        pytest.param({"x-bad": "a\r\nb"}, "'x-bad'", id="value-with-crlf"),
        pytest.param({"connection": "close"}, "'connection' is connection-specific", id="conn"),
    ],
)
def test_invalid_default_headers_are_refused_by_the_constructor(
    headers: dict[str, str], match: str
) -> None:
    with pytest.raises(h2any.InvalidRequest, match=match):
        h2any.Connection("http://127.0.0.1:1", headers=headers)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/path",
        "https://localhost/a/b",
        "http://127.0.0.1:8080?query=1",
    ],
)
def test_connection_url_with_a_path_or_query_is_refused(url: str) -> None:
    with pytest.raises(h2any.InvalidRequest, match="names only an origin") as info:
        h2any.Connection(url)
    assert isinstance(info.value, ValueError)


def test_connection_url_with_only_a_trailing_slash_is_an_origin() -> None:
    assert str(h2any.Connection("http://127.0.0.1:8080/").origin) == "http://127.0.0.1:8080"


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "ws://127.0.0.1:80", "127.0.0.1:80"])
def test_connection_url_with_a_non_http_scheme_is_refused(url: str) -> None:
    with pytest.raises(h2any.InvalidRequest, match=r"must start with https:// or http://"):
        h2any.Connection(url)


@pytest.mark.parametrize("url", ["http://", "https://:443"])
def test_connection_url_without_a_host_is_refused(url: str) -> None:
    with pytest.raises(h2any.InvalidRequest, match="has no host"):
        h2any.Connection(url)


def test_connection_url_with_a_bad_port_is_refused() -> None:
    with pytest.raises(h2any.InvalidRequest, match="invalid URL"):
        h2any.Connection("http://127.0.0.1:notaport")


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"timeout": -1}, id="all-minus-1"),
        pytest.param({"timeout": 0}, id="all-zero"),
        pytest.param({"timeout": 10, "connect": -0.5}, id="connect-minus-0.5"),
        pytest.param({"timeout": 10, "connect": -1}, id="connect-minus-1"),
        pytest.param({"timeout": 10, "read": -1}, id="read-minus-1"),
        pytest.param({"timeout": 10, "read": -2}, id="read-minus-2"),
        pytest.param({"timeout": 10, "write": -1}, id="write-minus-1"),
        pytest.param({"timeout": 10, "pool": -1}, id="pool-minus-1"),
        pytest.param({"timeout": None, "read": -3}, id="none-read-minus-3"),
    ],
)
def test_timeout_rejects_non_positive_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be positive or None"):
        h2any.Timeout(**kwargs)


def test_timeout_accepts_none_and_overrides() -> None:
    timeout = h2any.Timeout(5, connect=0.3, read=None)
    assert (timeout.connect, timeout.read, timeout.write, timeout.pool) == (0.3, None, 5, 5)
    assert h2any.Timeout(None).read is None
