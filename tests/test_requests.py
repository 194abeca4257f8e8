"""Requests and responses against real servers: nghttpd and hypercorn, h2c and TLS."""

from __future__ import annotations

import hashlib
import json

import anyio
import pytest

import h2any

pytestmark = pytest.mark.anyio


async def test_get_over_h2c_from_nghttpd(nghttpd) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd.url) as conn:
            response = await conn.request("GET", "/hello.txt")
            assert response.status == 200
            assert response.stream_id == 1
            assert response.headers["Content-Type"] == "text/plain"
            assert response.headers["content-length"] == "13"
            assert await response.read() == b"hello, world\n"
            assert response.is_complete


async def test_get_over_tls_from_nghttpd(nghttpd_tls, certs) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd_tls.url, verify=certs.ca_path) as conn:
            response = await conn.request("GET", "/1m.bin")
            body = await response.read()
    assert hashlib.sha256(body).hexdigest() == nghttpd_tls.docroot.sha256["1m.bin"]


async def test_absolute_url_on_the_same_origin_is_accepted(nghttpd) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd.url) as conn:
            response = await conn.request("GET", nghttpd.url + "/1b")
            assert await response.read() == b"x"


async def test_streamed_download_matches_file_hash(nghttpd) -> None:
    digest = hashlib.sha256()
    with anyio.fail_after(20):
        async with h2any.Connection(nghttpd.url) as conn:
            async with conn.stream("GET", "/16m.bin") as response:
                chunks = 0
                async for chunk in response.aiter_bytes():
                    digest.update(chunk)
                    chunks += 1
    assert chunks > 1
    assert digest.hexdigest() == nghttpd.docroot.sha256["16m.bin"]


async def test_post_body_is_echoed_by_hypercorn(hypercorn_server) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB: larger than any initial window
    with anyio.fail_after(10):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            response = await conn.request("POST", "/echo", body=body)
            assert response.headers["x-method"] == "POST"
            assert await response.read() == body


async def test_str_body_is_sent_as_utf8_with_content_length(hypercorn_server) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            response = await conn.request("POST", "/sha256", body="héllo")
            result = json.loads(await response.read())
    assert result == {"length": 6, "sha256": hashlib.sha256("héllo".encode()).hexdigest()}


async def test_request_headers_reach_the_server_lowercased_in_order(
    hypercorn_server, certs
) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(hypercorn_server.url_tls, verify=certs.ca_path) as conn:
            response = await conn.request(
                "GET", "/headers?q=1", headers=[("X-One", "1"), ("x-two", "2"), ("X-One", "3")]
            )
            seen = json.loads(await response.read())
    assert seen["query_string"] == "q=1"
    names = [name for name, _ in seen["headers"]]
    assert [v for n, v in seen["headers"] if n == "x-one"] == ["1", "3"]
    assert names.index("x-one") < names.index("x-two")
    assert ("user-agent", f"h2any/{h2any.__version__}") in [tuple(h) for h in seen["headers"]]


async def test_response_headers_keep_repeats_and_wire_order(hypercorn_server) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            response = await conn.request("GET", "/repeat-headers")
            await response.read()
    headers = response.headers
    assert headers.get_list("Set-Cookie") == ["a=1", "b=2"]
    assert headers["x-multi"] == "one, two"
    assert "CONTENT-TYPE" in headers
    wire = [(n, v) for n, v in headers if n in ("set-cookie", "x-multi", "content-type")]
    assert wire == [
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
        ("x-multi", "one"),
        ("x-multi", "two"),
        ("content-type", "text/plain"),
    ]


async def test_trailers_are_available_after_the_body(hypercorn_server) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            response = await conn.request("GET", "/trailers", headers={"te": "trailers"})
            assert response.trailers is None
            assert await response.read() == b"body"
    assert response.trailers is not None
    assert response.trailers["x-checksum"] == "abc"
    assert response.trailers["x-trailer-2"] == "two"


async def test_slow_streaming_body_arrives_in_chunks(hypercorn_server) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            async with conn.stream("GET", "/stream?chunks=5&size=1000&delay=0.01") as response:
                chunks = [chunk async for chunk in response.aiter_bytes()]
    assert sum(map(len, chunks)) == 5000
    assert len(chunks) >= 2


async def test_status_codes_are_reported_not_raised(hypercorn_server) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            for code in (204, 404, 503):
                response = await conn.request("GET", f"/status/{code}")
                assert response.status == code
                assert await response.read() == b""


async def test_read_twice_returns_the_same_body(nghttpd) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd.url) as conn:
            response = await conn.request("GET", "/hello.txt")
            assert await response.read() == await response.read() == response.content


async def test_ping_returns_round_trip_time(nghttpd) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd.url) as conn:
            rtt = await conn.ping()
    assert 0 < rtt < 5
