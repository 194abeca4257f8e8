"""Client cookies: the per-Client jar (http.cookiejar rules, RFC 6265), cookies= on the Client
and per request, Set-Cookie from every response -- against hypercorn (tests/client_app.py)."""

from __future__ import annotations

import json
from http.cookiejar import CookieJar
from urllib.parse import quote

import anyio
import pytest
from client_app import AppServer, app_servers

import h2any
import h2any.sync

__all__ = ("app_servers",)

pytestmark = pytest.mark.anyio

Servers = tuple[AppServer, AppServer]


def _set(*cookies: str) -> str:
    return "/set-cookie?" + "&".join(f"c={quote(cookie, safe='')}" for cookie in cookies)


async def _sent_cookies(client: h2any.Client, url: str) -> str | None:
    response = await client.get(url)
    seen = json.loads(await response.read())
    values = seen["headers"].get("cookie")
    return None if values is None else "; ".join(values)


async def test_set_cookie_is_stored_and_sent_back_to_the_same_host(app_servers: Servers) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        async with h2any.Client() as client:
            response = await client.get(one.http_url + _set("a=1", "b=2; Path=/"))
            assert response.status == 200
            assert client.cookies["a"] == "1"
            assert await _sent_cookies(client, one.http_url + "/inspect") == "a=1; b=2"


async def test_host_only_cookies_do_not_go_to_another_host(app_servers: Servers) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        async with h2any.Client() as client:
            await client.get(one.http_url + _set("host=127"))  # set by 127.0.0.1
            other = f"http://localhost:{one.port_http}/inspect"
            assert await _sent_cookies(client, other) is None
            # Cookies are not isolated by port (RFC 6265 section 8.5): same host, other port.
            _, two = app_servers
            assert await _sent_cookies(client, two.http_url + "/inspect") == "host=127"


async def test_path_attribute_limits_where_a_cookie_goes(app_servers: Servers) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        async with h2any.Client() as client:
            await client.get(
                one.http_url + _set("deep=1; Path=/inspect", "other=2; Path=/elsewhere")
            )
            assert await _sent_cookies(client, one.http_url + "/inspect") == "deep=1"


async def test_a_domain_the_host_is_not_in_is_refused(app_servers: Servers) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        async with h2any.Client() as client:
            await client.get(one.http_url + _set("evil=1; Domain=example.com", "good=1"))
            assert list(client.cookies) == ["good"]


async def test_secure_cookies_go_over_https_only(app_servers: Servers, certs) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        async with h2any.Client(verify=certs.ca_path) as client:
            await client.get(one.https_url + _set("s=1; Secure", "plain=1"))
            assert sorted(client.cookies) == ["plain", "s"]
            assert await _sent_cookies(client, one.https_url + "/inspect") == "s=1; plain=1"
            http_same_host = f"http://localhost:{one.port_http}/inspect"
            assert await _sent_cookies(client, http_same_host) == "plain=1"


async def test_expired_and_max_age_zero_cookies_are_removed(app_servers: Servers) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        async with h2any.Client() as client:
            await client.get(one.http_url + _set("gone=1", "stay=1", "later=1; Max-Age=3600"))
            assert sorted(client.cookies) == ["gone", "later", "stay"]
            await client.get(
                one.http_url
                + _set("gone=; Max-Age=0", "stay=1; Expires=Thu, 01 Jan 1970 00:00:00 GMT")
            )
            assert sorted(client.cookies) == ["later"]
            assert await _sent_cookies(client, one.http_url + "/inspect") == "later=1"


async def test_set_cookie_on_a_redirect_is_stored_and_sent_on_the_next_hop(
    app_servers: Servers,
) -> None:
    one, _ = app_servers
    # /set-cookie answers 200; a redirect that sets a cookie: redirect to /set-cookie first,
    # then to /inspect, which must see the cookie set in between.
    target = quote("/inspect", safe="")
    with anyio.fail_after(10):
        async with h2any.Client(follow_redirects=True) as client:
            await client.get(one.http_url + _set("r=1"))
            response = await client.get(one.http_url + f"/redirect?to={target}")
            seen = json.loads(await response.read())
            assert seen["headers"]["cookie"] == ["r=1"]


async def test_client_cookies_and_request_cookies(app_servers: Servers) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        async with h2any.Client(cookies={"c": "client"}) as client:
            assert await _sent_cookies(client, one.http_url + "/inspect") == "c=client"
            response = await client.get(
                one.http_url + "/inspect", cookies={"r": "request", "c": "override"}
            )
            seen = json.loads(await response.read())
            assert seen["headers"]["cookie"] == ["r=request; c=override"]
            # the request's cookies were for that request only
            assert await _sent_cookies(client, one.http_url + "/inspect") == "c=client"


async def test_an_explicit_cookie_header_wins(app_servers: Servers) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        async with h2any.Client(cookies={"c": "client"}) as client:
            response = await client.get(one.http_url + "/inspect", headers={"cookie": "mine=1"})
            seen = json.loads(await response.read())
            assert seen["headers"]["cookie"] == ["mine=1"]


async def test_a_cookiejar_can_be_shared_and_replaced(app_servers: Servers) -> None:
    one, _ = app_servers
    jar = CookieJar()
    with anyio.fail_after(10):
        async with h2any.Client(cookies=jar) as client:
            await client.get(one.http_url + _set("kept=1"))
        assert [cookie.name for cookie in jar] == ["kept"]
        async with h2any.Client() as client:
            client.cookies = jar
            assert await _sent_cookies(client, one.http_url + "/inspect") == "kept=1"
            client.cookies.clear()
            assert await _sent_cookies(client, one.http_url + "/inspect") is None


def test_cookies_mapping_api_and_repr_hides_values() -> None:
    cookies = h2any.Cookies({"session": "SECRET-VALUE"})
    cookies.set("other", "x", domain="example.org", path="/a")
    assert cookies["session"] == "SECRET-VALUE"
    assert cookies.get("other", domain="example.org") == "x"
    assert cookies.get("missing", "default") == "default"
    assert len(cookies) == 2
    assert "SECRET-VALUE" not in repr(cookies)
    del cookies["session"]
    assert list(cookies) == ["other"]
    with pytest.raises(KeyError):
        cookies["session"]


def test_the_jar_is_bounded_per_domain() -> None:
    from h2any._cookies import MAX_COOKIES_PER_DOMAIN, store_cookies

    jar = CookieJar()
    headers = h2any.Headers([("set-cookie", f"c{i}=1") for i in range(MAX_COOKIES_PER_DOMAIN + 50)])
    store_cookies(jar, "GET", "http://flood.example/", headers)
    names = [cookie.name for cookie in jar]
    assert len(names) == MAX_COOKIES_PER_DOMAIN
    assert names[-1] == f"c{MAX_COOKIES_PER_DOMAIN + 49}"  # the newest are kept


def test_sync_client_keeps_cookies(app_servers: Servers) -> None:
    one, _ = app_servers
    with h2any.sync.Client() as client:
        client.get(one.http_url + _set("sync=1"))
        assert client.cookies["sync"] == "1"
        seen = json.loads(client.get(one.http_url + "/inspect").read())
        assert seen["headers"]["cookie"] == ["sync=1"]
        client.cookies = {"replaced": "yes"}
        seen = json.loads(client.get(one.http_url + "/inspect").read())
        assert seen["headers"]["cookie"] == ["replaced=yes"]
