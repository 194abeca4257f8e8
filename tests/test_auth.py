"""Client auth: Basic ((user, password) and URL userinfo), Bearer, Digest (RFC 7616, MD5 and
SHA-256, checked by the server in tests/client_app.py), custom Auth flows; on the Client and per
request; no credential in a repr, a log line or an error message."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Generator

import anyio
import pytest
from client_app import PASSWORD, TOKEN, USER, AppServer, app_servers

import h2any
import h2any.sync

__all__ = ("app_servers",)

pytestmark = pytest.mark.anyio

Servers = tuple[AppServer, AppServer]


async def _status(client: h2any.Client, url: str, **kwargs) -> int:
    response = await client.get(url, **kwargs)
    await response.read()
    return response.status


async def test_basic_auth_per_request_and_on_the_client(app_servers: Servers) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        async with h2any.Client() as client:
            assert await _status(client, one.http_url + "/basic") == 401
            assert await _status(client, one.http_url + "/basic", auth=(USER, PASSWORD)) == 200
            assert await _status(client, one.http_url + "/basic", auth=(USER, "wrong")) == 401
        async with h2any.Client(auth=h2any.BasicAuth(USER, PASSWORD)) as client:
            assert await _status(client, one.http_url + "/basic") == 200
            # a request's own auth wins
            assert await _status(client, one.http_url + "/basic", auth=(USER, "no")) == 401


async def test_basic_auth_from_the_url(app_servers: Servers) -> None:
    one, _ = app_servers
    url = one.http_url.replace("http://", f"http://{USER}:{PASSWORD}@") + "/basic"
    with anyio.fail_after(10):
        async with h2any.Client() as client:
            assert await _status(client, url) == 200


async def test_bearer_auth(app_servers: Servers) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        async with h2any.Client(auth=h2any.BearerAuth(TOKEN)) as client:
            assert await _status(client, one.http_url + "/bearer") == 200
            assert (
                await _status(client, one.http_url + "/bearer", auth=h2any.BearerAuth("x")) == 401
            )


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256", "MD5-sess", "SHA-256-sess"])
async def test_digest_auth_answers_the_challenge_once(app_servers: Servers, algorithm: str) -> None:
    one, _ = app_servers
    url = f"{one.http_url}/digest?algorithm={algorithm}"
    seen: list[int] = []

    async def count(response: h2any.Response) -> None:
        seen.append(response.status)

    with anyio.fail_after(10):
        async with h2any.Client(event_hooks={"response": [count]}) as client:
            auth = h2any.DigestAuth(USER, PASSWORD)
            response = await client.get(url, auth=auth)
            assert response.status == 200
            assert json.loads(await response.read()) == {"user": USER}
            assert [r.status for r in response.history] == [401]
            assert seen == [401, 200]
            # the challenge is remembered: the next request answers at once (nc=2)
            response = await client.get(url, auth=auth)
            assert response.status == 200
            assert seen == [401, 200, 200]
            # wrong password: answered once, then the 401 is returned
            response = await client.get(url, auth=h2any.DigestAuth(USER, "wrong"))
            assert response.status == 401
            assert len(response.history) == 1


async def test_digest_answer_replays_a_seekable_body_and_refuses_a_one_shot_one(
    app_servers: Servers, tmp_path
) -> None:
    one, _ = app_servers
    url = f"{one.http_url}/digest?algorithm=SHA-256"
    path = tmp_path / "body"
    path.write_bytes(b"z" * 100_000)

    async def once() -> AsyncIterator[bytes]:
        yield b"one-shot"

    with anyio.fail_after(10):
        async with h2any.Client() as client:
            with path.open("rb") as file:
                response = await client.post(
                    url, content=file, auth=h2any.DigestAuth(USER, PASSWORD)
                )
                assert response.status == 200
            with pytest.raises(h2any.BodyNotReplayable, match="authentication challenge"):
                await client.post(url, content=once(), auth=h2any.DigestAuth(USER, PASSWORD))


class _RefreshingAuth(h2any.Auth):
    """Sends a stale token, and on 401 a fresh one (a custom flow answering once)."""

    def __init__(self) -> None:
        self.calls = 0

    def auth_flow(self, request: h2any.Request) -> Generator[h2any.Request, h2any.Response, None]:
        self.calls += 1
        self.set_header(request, "authorization", "Bearer stale")
        response = yield request
        if response.status == 401:
            self.set_header(request, "authorization", f"Bearer {TOKEN}")
            yield request


class _Greedy(h2any.Auth):
    def auth_flow(self, request: h2any.Request) -> Generator[h2any.Request, h2any.Response, None]:
        while True:
            yield request


async def test_a_custom_auth_flow_adds_headers_and_answers_a_401_once(app_servers: Servers) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        async with h2any.Client() as client:
            auth = _RefreshingAuth()
            response = await client.get(one.http_url + "/bearer", auth=auth)
            assert response.status == 200
            assert [r.status for r in response.history] == [401]
            with pytest.raises(h2any.InvalidRequest, match="answered twice"):
                await client.get(one.http_url + "/bearer", auth=_Greedy())


async def test_auth_is_applied_per_hop_on_the_same_origin_only(app_servers: Servers) -> None:
    one, two = app_servers
    with anyio.fail_after(10):
        async with h2any.Client(follow_redirects=True, auth=(USER, PASSWORD)) as client:
            response = await client.get(one.http_url + "/redirect?to=/basic")
            assert response.status == 200
            response = await client.get(one.http_url + f"/redirect?to={two.http_url}/basic")
            assert response.status == 401


async def test_credentials_never_appear_in_reprs_logs_or_errors(
    app_servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    one, _ = app_servers
    secret, token = "pa55-SECRET-word", "tok-SECRET-en"
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    for auth in (
        h2any.BasicAuth(USER, secret),
        h2any.BearerAuth(token),
        h2any.DigestAuth(USER, secret),
    ):
        texts.append(repr(auth))
    requests: list[h2any.Request] = []

    async def keep(request: h2any.Request) -> None:
        requests.append(request)

    with anyio.fail_after(10):
        async with h2any.Client(
            auth=(USER, secret), event_hooks={"request": [keep]}, follow_redirects=True
        ) as client:
            texts.append(repr(client.auth))
            response = await client.get(one.http_url + "/basic")
            texts += [repr(response), repr(requests[-1]), repr(requests[-1].headers)]
            url = one.http_url.replace("http://", f"http://{USER}:{secret}@") + "/chain/5"
            async with h2any.Client(follow_redirects=True, max_redirects=1) as other:
                with pytest.raises(h2any.TooManyRedirects) as caught:
                    await other.get(url)
                texts.append(str(caught.value))
                texts.append(repr(caught.value.request))
            with pytest.raises(h2any.H2anyError) as failed:
                await client.get(
                    f"http://{USER}:{secret}@127.0.0.1:1/x", auth=h2any.BearerAuth(token)
                )
            texts.append(str(failed.value))
    texts.append(caplog.text)
    for text in texts:
        assert secret not in text
        assert token not in text


def test_sync_client_auth(app_servers: Servers) -> None:
    one, _ = app_servers
    with h2any.sync.Client(auth=h2any.DigestAuth(USER, PASSWORD)) as client:
        response = client.get(one.http_url + "/digest?algorithm=SHA-256")
        assert response.status == 200
    response = h2any.sync.get(one.http_url + "/bearer", auth=h2any.BearerAuth(TOKEN))
    assert response.status == 200


async def test_an_unsupported_digest_challenge_is_a_clear_error(app_servers: Servers) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        async with h2any.Client() as client:
            with pytest.raises(h2any.InvalidRequest, match="'SHA-512-256' is not supported"):
                await client.get(
                    one.http_url + "/digest?algorithm=SHA-512-256",
                    auth=h2any.DigestAuth(USER, PASSWORD),
                )
            # the 401 was closed; the connection serves the next request
            assert await _status(client, one.http_url + "/basic", auth=(USER, PASSWORD)) == 200
