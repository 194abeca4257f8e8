"""Client redirects: follow_redirects, max_redirects, method rewriting, body replay, history,
and what is not carried to another origin -- against hypercorn (tests/client_app.py)."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import AsyncIterator
from urllib.parse import quote

import anyio
import pytest
from client_app import PASSWORD, USER, AppServer, app_servers

import h2any
import h2any.sync

__all__ = ("app_servers",)

pytestmark = pytest.mark.anyio

Servers = tuple[AppServer, AppServer]


def _to(url: str, status: int = 302) -> str:
    return f"/redirect?status={status}&to={quote(url, safe='')}"


async def test_redirects_are_not_followed_by_default(app_servers: Servers) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        async with h2any.Client() as client:
            response = await client.get(one.http_url + _to("/inspect"))
            assert response.status == 302
            assert response.headers["location"] == "/inspect"
            assert response.history == []
            await response.aclose()


async def test_relative_location_is_followed_and_history_kept(app_servers: Servers) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        async with h2any.Client(follow_redirects=True) as client:
            response = await client.get(one.http_url + "/chain/3")
            assert response.status == 200
            assert await response.read() == b"end"
            assert [r.status for r in response.history] == [302, 302, 302]
            assert all(r.is_complete or True for r in response.history)


async def test_follow_redirects_per_request_overrides_the_client(app_servers: Servers) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        async with h2any.Client(follow_redirects=True) as client:
            response = await client.get(one.http_url + "/chain/1", follow_redirects=False)
            assert response.status == 302
            await response.aclose()
        async with h2any.Client() as client:
            response = await client.get(one.http_url + "/chain/1", follow_redirects=True)
            assert response.status == 200


async def test_too_many_redirects_is_a_typed_error(app_servers: Servers) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        async with h2any.Client(follow_redirects=True, max_redirects=2) as client:
            with pytest.raises(h2any.TooManyRedirects) as caught:
                await client.get(one.http_url + "/chain/3")
            assert "more than 2 redirects" in str(caught.value)
            assert isinstance(caught.value, h2any.H2anyError)
            assert caught.value.request is not None
            assert caught.value.request.url.endswith("/chain/1")
            # exactly max_redirects is fine
            response = await client.get(one.http_url + "/chain/2")
            assert response.status == 200


@pytest.mark.parametrize(
    ("status", "method", "expected"),
    [
        (301, "POST", "GET"),
        (302, "POST", "GET"),
        (303, "POST", "GET"),
        (303, "PUT", "GET"),
        (301, "PUT", "PUT"),
        (302, "PATCH", "PATCH"),
        (307, "POST", "POST"),
        (308, "PUT", "PUT"),
    ],
)
async def test_method_and_body_after_a_redirect(
    app_servers: Servers, status: int, method: str, expected: str
) -> None:
    one, _ = app_servers
    payload = b"payload " * 1000
    with anyio.fail_after(10):
        async with h2any.Client(follow_redirects=True) as client:
            response = await client.request(
                method,
                one.http_url + _to("/inspect", status),
                content=payload,
                headers={"content-type": "application/x-thing"},
            )
            seen = json.loads(await response.read())
    assert seen["method"] == expected
    assert response.history[0].status == status
    if expected == "GET":
        assert seen["length"] == 0
        assert "content-type" not in seen["headers"]
        assert "content-length" not in seen["headers"]
    else:
        assert seen["sha256"] == hashlib.sha256(payload).hexdigest()
        assert seen["headers"]["content-type"] == ["application/x-thing"]


async def test_307_replays_a_seekable_file_body(app_servers: Servers, tmp_path) -> None:
    one, _ = app_servers
    data = bytes(range(256)) * 4096  # 1 MiB
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    with anyio.fail_after(20):
        async with h2any.Client(follow_redirects=True) as client:
            with path.open("rb") as file:
                response = await client.post(one.http_url + _to("/inspect", 307), content=file)
                seen = json.loads(await response.read())
    assert seen["method"] == "POST"
    assert seen["length"] == len(data)
    assert seen["sha256"] == hashlib.sha256(data).hexdigest()


async def test_307_with_a_one_shot_iterator_body_is_a_clear_error(app_servers: Servers) -> None:
    one, _ = app_servers

    async def pieces() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 1000

    with anyio.fail_after(10):
        async with h2any.Client(follow_redirects=True) as client:
            with pytest.raises(h2any.BodyNotReplayable) as caught:
                await client.post(one.http_url + _to("/inspect", 307), content=pieces())
            assert "follow a redirect" in str(caught.value)
            # A 303 needs no replay: the iterator body is dropped and GET follows.
            response = await client.post(one.http_url + _to("/inspect", 303), content=pieces())
            assert json.loads(await response.read())["method"] == "GET"


async def test_redirect_to_another_origin_drops_auth_and_cookies(app_servers: Servers) -> None:
    one, two = app_servers
    target = two.http_url + "/inspect"
    with anyio.fail_after(10):
        async with h2any.Client(follow_redirects=True) as client:
            response = await client.get(
                one.http_url + _to(target),
                auth=(USER, PASSWORD),
                cookies={"session": "abc"},
                headers={"x-kept": "yes", "cookie": "manual=1"},
            )
            seen = json.loads(await response.read())
            assert response.history[0].status == 302
            assert "authorization" not in seen["headers"]
            assert "cookie" not in seen["headers"]
            assert seen["headers"]["x-kept"] == ["yes"]
            # Same origin: both carried.
            response = await client.get(
                one.http_url + _to("/inspect"), auth=(USER, PASSWORD), cookies={"session": "abc"}
            )
            seen = json.loads(await response.read())
            assert seen["headers"]["authorization"][0].startswith("Basic ")
            assert seen["headers"]["cookie"] == ["session=abc"]


async def test_redirect_from_https_to_http_drops_auth(app_servers: Servers, certs) -> None:
    one, _ = app_servers
    target = f"http://localhost:{one.port_http}/inspect"
    with anyio.fail_after(10):
        async with h2any.Client(follow_redirects=True, verify=certs.ca_path) as client:
            response = await client.get(
                one.https_url + _to(target),
                auth=h2any.BearerAuth("t0ken"),
                headers={"authorization": "Bearer manual"},
            )
            seen = json.loads(await response.read())
    assert "authorization" not in seen["headers"]
    assert response.history[0].status == 302


async def test_redirect_to_a_non_http_scheme_is_refused(app_servers: Servers) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        async with h2any.Client(follow_redirects=True) as client:
            with pytest.raises(h2any.InvalidRequest, match="only http and https"):
                await client.get(one.http_url + _to("ftp://example.org/file"))


async def test_intermediate_responses_are_read_and_closed(app_servers: Servers) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        async with h2any.Client(follow_redirects=True) as client:
            response = await client.get(one.http_url + _to("/chain/1"))
            assert [r.status for r in response.history] == [302, 302]
            first = response.history[0]
            assert first.is_complete
            assert first.content == b"moved"  # small bodies are kept, as httpx does
            # the connection is still fine, and no stream is left open
            assert (await client.get(one.http_url + "/chain/0")).status == 200
            assert client.connections == {one.http_url: 1}


async def test_stream_follows_redirects_too(app_servers: Servers) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        async with h2any.Client(follow_redirects=True) as client:
            async with client.stream("GET", one.http_url + _to("/stream-body?n=5000")) as response:
                total = 0
                async for chunk in response.aiter_bytes():
                    total += len(chunk)
            assert total == 5000
            assert len(response.history) == 1


def test_sync_client_follows_redirects(app_servers: Servers) -> None:
    one, two = app_servers
    with h2any.sync.Client(follow_redirects=True) as client:
        response = client.get(one.http_url + _to(two.http_url + "/chain/1"))
        assert response.status == 200
        assert response.read() == b"end"


def test_blocking_top_level_get_follows_redirects(app_servers: Servers) -> None:
    one, _ = app_servers
    response = h2any.sync.get(one.http_url + "/chain/2", follow_redirects=True)
    assert response.status == 200
    assert response.content == b"end"


async def test_top_level_async_get_follows_redirects(app_servers: Servers) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        response = await h2any.get(one.http_url + "/chain/2", follow_redirects=True)
    assert response.status == 200
    assert response.content == b"end"
    assert len(response.history) == 2
    assert isinstance(io.BytesIO(response.content).read(), bytes)
