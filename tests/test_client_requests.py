"""The request API of h2any.Client, h2any.sync.Client and the top-level functions: every method,
explicit keyword parameters (checked by mypy), bodies, event hooks -- against hypercorn."""

from __future__ import annotations

import hashlib
import inspect
import json
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from client_app import AppServer, app_servers
from conftest import run_mypy

import h2any
import h2any.sync

__all__ = ("app_servers",)

pytestmark = pytest.mark.anyio

Servers = tuple[AppServer, AppServer]
ROOT = Path(__file__).resolve().parent.parent


async def test_every_method_reaches_the_server(app_servers: Servers) -> None:
    one, _ = app_servers
    url = one.http_url + "/inspect"
    with anyio.fail_after(10):
        async with h2any.Client() as client:
            for name in ("get", "options", "delete"):
                response = await getattr(client, name)(url, params={"q": name})
                seen = json.loads(await response.read())
                assert (seen["method"], seen["query"]) == (name.upper(), f"q={name}")
            response = await client.head(url)
            assert response.status == 200
            assert await response.read() == b""
            for name in ("post", "put", "patch"):
                response = await getattr(client, name)(url, content=name.encode())
                seen = json.loads(await response.read())
                assert seen["method"] == name.upper()
                assert seen["sha256"] == hashlib.sha256(name.encode()).hexdigest()


async def test_body_forms(app_servers: Servers) -> None:
    one, _ = app_servers
    url = one.http_url + "/inspect"

    async def agen() -> AsyncIterator[bytes]:
        yield b"as"
        yield b"ync"

    def gen() -> Iterator[bytes]:
        yield b"sy"
        yield b"nc"

    with anyio.fail_after(10):
        async with h2any.Client() as client:
            cases = [
                ({"content": b"bytes"}, b"bytes"),
                ({"content": "text é"}, "text é".encode()),
                ({"body": b"old name"}, b"old name"),
                ({"content": agen()}, b"async"),
                ({"content": gen()}, b"sync"),
                ({"json": {"a": [1, None]}}, b'{"a":[1,null]}'),
            ]
            for kwargs, expected in cases:
                response = await client.post(url, **kwargs)
                seen = json.loads(await response.read())
                assert seen["sha256"] == hashlib.sha256(expected).hexdigest(), kwargs
            response = await client.post(url, json=[1])
            seen = json.loads(await response.read())
            assert seen["headers"]["content-type"] == ["application/json"]
            response = await client.post(
                url, json=[1], headers={"content-type": "application/vnd.x+json"}
            )
            seen = json.loads(await response.read())
            assert seen["headers"]["content-type"] == ["application/vnd.x+json"]


async def test_event_hooks_see_requests_and_responses(app_servers: Servers) -> None:
    one, _ = app_servers
    events: list[str] = []

    async def on_request(request: h2any.Request) -> None:
        events.append(f"request {request.method} {request.url}")
        h2any.Auth.set_header(request, "x-hooked", "1")

    async def on_response(response: h2any.Response) -> None:
        body = await response.read()  # hooks may read the body
        events.append(f"response {response.status} {len(body)}")

    def plain_hook(response: h2any.Response) -> None:
        events.append("plain")

    hooks = {"request": [on_request], "response": [on_response, plain_hook]}
    with anyio.fail_after(10):
        async with h2any.Client(event_hooks=hooks, follow_redirects=True) as client:
            response = await client.get(one.http_url + "/redirect?to=/inspect")
            seen = json.loads(await response.read())
    assert seen["headers"]["x-hooked"] == ["1"]
    assert events[0] == f"request GET {one.http_url}/redirect?to=/inspect"
    assert events[1:3] == ["response 302 5", "plain"]
    assert events[3] == f"request GET {one.http_url}/inspect"
    assert events[4].startswith("response 200 ")
    assert events[5] == "plain"


async def test_a_failing_hook_fails_the_request(app_servers: Servers) -> None:
    one, _ = app_servers

    async def refuse(response: h2any.Response) -> None:
        raise LookupError("refused by hook")

    with anyio.fail_after(10):
        async with h2any.Client(event_hooks={"response": [refuse]}) as client:
            with pytest.raises(LookupError, match="refused by hook"):
                await client.get(one.http_url + "/inspect")
            client.event_hooks["response"].clear()
            assert (await client.get(one.http_url + "/inspect")).status == 200


def test_bad_event_hooks_are_refused() -> None:
    with pytest.raises(ValueError, match="'request' and 'response'"):
        h2any.Client(event_hooks={"requests": []})
    with pytest.raises(TypeError, match="list of callables"):
        h2any.Client(event_hooks={"request": print})  # type: ignore[dict-item]


def test_sync_client_hooks_run_in_a_worker_thread_and_may_read(app_servers: Servers) -> None:
    one, _ = app_servers
    seen: list[tuple[str, object]] = []
    caller = threading.get_ident()

    def on_request(request: h2any.Request) -> None:
        seen.append(("request", request.method))

    def on_response(response: h2any.sync.Response) -> None:
        assert threading.get_ident() != caller
        seen.append(("response", json.loads(response.read())["method"]))

    hooks = {"request": [on_request], "response": [on_response]}
    with h2any.sync.Client(event_hooks=hooks) as client:
        response = client.post(one.http_url + "/inspect", content=b"x")
        assert json.loads(response.read())["length"] == 1  # still readable afterwards
    assert seen == [("request", "POST"), ("response", "POST")]


def test_sync_client_every_method(app_servers: Servers) -> None:
    one, _ = app_servers
    url = one.http_url + "/inspect"
    with h2any.sync.Client() as client:
        for name in ("get", "options", "delete"):
            assert json.loads(getattr(client, name)(url).read())["method"] == name.upper()
        assert client.head(url).status == 200
        for name in ("post", "put", "patch"):
            seen = json.loads(getattr(client, name)(url, data={"k": name}).read())
            assert seen["method"] == name.upper()
            assert seen["length"] == len(f"k={name}")
        with client.stream("GET", url) as response:
            assert json.loads(response.read())["method"] == "GET"


async def test_top_level_async_functions(app_servers: Servers) -> None:
    one, _ = app_servers
    url = one.http_url + "/inspect"
    with anyio.fail_after(10):
        for name in ("get", "options", "delete"):
            response = await getattr(h2any, name)(url, headers={"x-a": "1"})
            assert json.loads(response.content)["method"] == name.upper()
        assert (await h2any.head(url)).status == 200
        for name in ("post", "put", "patch"):
            response = await getattr(h2any, name)(url, json={"n": name})
            assert json.loads(response.content)["method"] == name.upper()
        response = await h2any.request("POST", url, content=b"abc", timeout=5)
        assert json.loads(response.content)["length"] == 3


def test_top_level_blocking_functions(app_servers: Servers, certs) -> None:
    one, _ = app_servers
    url = one.http_url + "/inspect"
    for name in ("get", "options", "delete"):
        assert json.loads(getattr(h2any.sync, name)(url).content)["method"] == name.upper()
    assert h2any.sync.head(url).status == 200
    for name in ("post", "put", "patch"):
        response = getattr(h2any.sync, name)(url, content=b"abcd", backend="trio")
        assert json.loads(response.content)["length"] == 4
    response = h2any.sync.get(one.https_url + "/inspect", verify=certs.ca_path)
    assert json.loads(response.content)["method"] == "GET"


def test_blocking_functions_refuse_a_running_event_loop() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="inside a running"):
            h2any.sync.get("http://127.0.0.1:1/")

    anyio.run(main)


# -- signatures ----------------------------------------------------------------------------

_NO_BODY = ("get", "head", "options", "delete")
_BODY = ("post", "put", "patch")


@pytest.mark.parametrize("name", [*_NO_BODY, *_BODY, "request", "stream"])
def test_method_parameters_are_httpx_names(name: str) -> None:
    ours = inspect.signature(getattr(h2any.Client, name)).parameters
    theirs = inspect.signature(getattr(httpx.AsyncClient, name)).parameters
    expected = set(theirs) - {"extensions"}
    if name in _BODY or name in ("request", "stream"):
        expected.add("body")  # h2any's older name for content=
    assert set(ours) == expected
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in ours.values())
    sync = inspect.signature(getattr(h2any.sync.Client, name)).parameters
    assert set(sync) == set(ours)


@pytest.mark.parametrize("name", [*_NO_BODY, *_BODY, "request"])
def test_top_level_functions_have_no_kwargs(name: str) -> None:
    for function in (getattr(h2any, name), getattr(h2any.sync, name)):
        parameters = inspect.signature(function).parameters
        assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        assert {"verify", "cert", "proxy", "timeout", "follow_redirects"} <= set(parameters)


def test_a_misspelt_keyword_fails_type_checking(tmp_path: Path) -> None:
    source = tmp_path / "typo.py"
    source.write_text(
        textwrap.dedent(
            """
            import h2any
            import h2any.sync


            async def main(client: h2any.Client, sync: h2any.sync.Client) -> None:
                await client.get("https://example.org/", verfy=False)
                await client.post("https://example.org/", jsn={})
                await client.get("https://example.org/", content=b"x")
                await h2any.get("https://example.org/", verfy=False)
                sync.get("https://example.org/", folow_redirects=True)
                h2any.sync.post("https://example.org/", dat={})
                # correct calls type-check
                await client.get("https://example.org/", params={"a": 1}, timeout=5)
                await client.post("https://example.org/", data={"a": "b"}, files={"f": b"x"})
                await h2any.get("https://example.org/", verify=False, follow_redirects=True)
                h2any.sync.put("https://example.org/", json=[1], auth=("u", "p"))
                sync.delete("https://example.org/", auth=h2any.BearerAuth("t"))
            """
        )
    )
    stdout, stderr, status = run_mypy(source, "3.11")
    assert status == 1, stdout + stderr
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    lines = sorted({int(line.split(":")[1]) for line in errors})
    assert lines == [7, 8, 9, 10, 11, 12], stdout
    assert 'Unexpected keyword argument "verfy"' in stdout
