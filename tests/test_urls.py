"""URLs: international host names (IDNA), percent-encoding of path and query, user
information as Basic auth, and header values that are not text.

Peers: the embedded server (``h2any.testing.serve``) with an app that echoes the
``:authority``, ``:path`` and headers it received. An international host name is reached
through a CONNECT proxy of this file's own (``connect_proxy``): it records the target the
client asked for and connects every tunnel to the loopback server whatever the name, so the
test sees what went on the wire -- the CONNECT target, TLS's server name and ``:authority``
-- without a DNS entry for ``bücher.example``.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import pytest
import trustme

import h2any
import h2any.sync
from h2any._config import Origin
from h2any.testing import Request as ServerRequest
from h2any.testing import Response as ServerResponse
from h2any.testing import serve

pytestmark = pytest.mark.anyio

IDN_HOST = "bücher.example"
PUNYCODE_HOST = "xn--bcher-kva.example"


async def echo(request: ServerRequest) -> ServerResponse:
    body = json.dumps(
        {"authority": request.authority, "path": request.path, "headers": request.headers}
    ).encode()
    return ServerResponse(200, headers=[("content-type", "application/json")], body=body)


@dataclass
class ConnectProxy:
    url: str
    targets: list[str] = field(default_factory=list)


@asynccontextmanager
async def connect_proxy(backend_port: int) -> AsyncIterator[ConnectProxy]:
    """A loopback HTTP proxy that answers every CONNECT with 200 and tunnels it to
    ``127.0.0.1:backend_port``, recording the target asked for."""

    async def pipe(source: anyio.abc.ByteStream, sink: anyio.abc.ByteStream) -> None:
        try:
            async for chunk in source:
                await sink.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass

    async def handle(client: anyio.abc.SocketStream) -> None:
        async with client:
            head = b""
            while b"\r\n\r\n" not in head:
                try:
                    head += await client.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            method, target, _ = request_line.split(" ", 2)
            assert method == "CONNECT"
            proxy.targets.append(target)
            async with await anyio.connect_tcp("127.0.0.1", backend_port) as upstream:
                await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
                rest = head.split(b"\r\n\r\n", 1)[1]
                if rest:
                    await upstream.send(rest)
                async with anyio.create_task_group() as tg:

                    async def forward(a: anyio.abc.ByteStream, b: anyio.abc.ByteStream) -> None:
                        await pipe(a, b)
                        tg.cancel_scope.cancel()

                    tg.start_soon(forward, client, upstream)
                    tg.start_soon(forward, upstream, client)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    proxy = ConnectProxy(f"http://127.0.0.1:{port}")
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield proxy
        tg.cancel_scope.cancel()


# -- IDNA -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://bücher.example", PUNYCODE_HOST),
        ("https://BÜCHER.Example:8443", PUNYCODE_HOST),  # UTS #46 folds case
        ("https://\uff42ücher.example", PUNYCODE_HOST),  # ... and full-width forms
        ("https://faß.de", "xn--fa-hia.de"),  # IDNA 2008: ß is kept, not "ss"
        ("https://例え.テスト", "xn--r8jz45g.xn--zckzah"),
        ("https://[::1]:8443", "::1"),
        ("https://plain.example", "plain.example"),
    ],
)
def test_origin_of_an_international_host_is_its_idna_form(url: str, host: str) -> None:
    assert Origin.parse(url).host == host


@pytest.mark.parametrize(
    "url",
    [
        "https://a\u200db.example",  # a joiner where IDNA 2008 forbids it
        "https://" + "ü" * 70 + ".example",  # a label longer than 63 octets
        "https://xn--bcher-kva.\u0080example",
    ],
)
def test_a_host_without_an_idna_form_is_invalid_request(url: str) -> None:
    with pytest.raises(h2any.InvalidRequest, match="cannot be encoded"):
        h2any.Connection(url)


def test_the_idna_error_message_never_holds_the_password() -> None:
    with pytest.raises(h2any.InvalidRequest) as caught:
        Origin.parse("https://user:hunter2@a\u200db.example/")
    assert "hunter2" not in str(caught.value)


async def test_connection_to_an_international_host_sends_punycode() -> None:
    with anyio.fail_after(10):
        async with serve(echo) as server, connect_proxy(server.port) as proxy:
            url = f"http://{IDN_HOST}:{server.port}"
            async with h2any.Connection(url, proxy=proxy.url) as conn:
                assert PUNYCODE_HOST in repr(conn)
                response = await conn.request("GET", "/where")
                seen = json.loads(await response.read())
                # An absolute URL naming the origin in either form is on this connection.
                again = await conn.request("GET", f"http://BÜCHER.example:{server.port}/ü")
                assert json.loads(await again.read())["path"] == "/%C3%BC"
    assert proxy.targets == [f"{PUNYCODE_HOST}:{server.port}"]
    assert seen["authority"] == f"{PUNYCODE_HOST}:{server.port}"
    assert response.url == f"http://{PUNYCODE_HOST}:{server.port}/where"


async def test_client_to_an_international_host_sends_punycode() -> None:
    with anyio.fail_after(10):
        async with serve(echo) as server, connect_proxy(server.port) as proxy:
            async with h2any.Client(proxy=proxy.url, trust_env=False) as client:
                response = await client.request("GET", f"http://{IDN_HOST}:{server.port}/ü")
                seen = json.loads(await response.read())
    assert proxy.targets == [f"{PUNYCODE_HOST}:{server.port}"]
    assert seen["authority"] == f"{PUNYCODE_HOST}:{server.port}"
    assert seen["path"] == "/%C3%BC"


async def test_tls_to_an_international_host_checks_the_certificate_of_its_idna_form() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(PUNYCODE_HOST).configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with anyio.fail_after(10):
        async with serve(echo, ssl_context=server_context) as server:
            async with connect_proxy(server.port) as proxy:
                url = f"https://{IDN_HOST}:{server.port}"
                async with h2any.Connection(url, proxy=proxy.url, verify=client_context) as conn:
                    response = await conn.request("GET", "/")
                    seen = json.loads(await response.read())
    assert seen["authority"] == f"{PUNYCODE_HOST}:{server.port}"


def test_sync_client_to_an_international_host_sends_punycode() -> None:
    with anyio.from_thread.start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(serve(echo)) as server:
            with portal.wrap_async_context_manager(connect_proxy(server.port)) as proxy:
                with h2any.sync.Client(proxy=proxy.url, trust_env=False) as client:
                    response = client.request("GET", f"http://{IDN_HOST}:{server.port}/x")
                    seen = response.json()
    assert seen["authority"] == f"{PUNYCODE_HOST}:{server.port}"


# -- percent-encoding -----------------------------------------------------------------------

ENCODED_PATHS = [
    ("/bücher", "/b%C3%BCcher"),
    ("/a/€?q=ü&r=1", "/a/%E2%82%AC?q=%C3%BC&r=1"),
    ("/%C3%BC/ü", "/%C3%BC/%C3%BC"),  # escapes already there are kept as they are
    ("/x%20y?a=%2F", "/x%20y?a=%2F"),
    ("/😀", "/%F0%9F%98%80"),
    ("/ascii?only=1#fragment", "/ascii?only=1"),
]


@pytest.mark.parametrize(("path", "wire"), ENCODED_PATHS)
async def test_connection_percent_encodes_non_ascii_in_path_and_query(path: str, wire: str) -> None:
    with anyio.fail_after(10):
        async with serve(echo) as server, h2any.Connection(server.url) as conn:
            response = await conn.request("GET", path)
            assert json.loads(await response.read())["path"] == wire
            absolute = await conn.request("GET", server.url + path)
            assert json.loads(await absolute.read())["path"] == wire
    assert response.url == server.url + wire


@pytest.mark.parametrize(("path", "wire"), ENCODED_PATHS)
async def test_client_percent_encodes_non_ascii_in_path_and_query(path: str, wire: str) -> None:
    with anyio.fail_after(10):
        async with serve(echo) as server, h2any.Client() as client:
            response = await client.request("GET", server.url + path)
            assert json.loads(await response.read())["path"] == wire
            params = await client.request("GET", server.url + "/p", params={"ü": "€ x"})
            assert json.loads(await params.read())["path"] == "/p?%C3%BC=%E2%82%AC+x"


@pytest.mark.parametrize("path", ["/ü ü", "/ü\tx", "/€?q=\n", "/ü\x7f"])
async def test_whitespace_and_controls_are_still_refused_beside_non_ascii(path: str) -> None:
    with anyio.fail_after(10):
        async with serve(echo) as server:
            async with h2any.Connection(server.url) as conn:
                with pytest.raises(h2any.InvalidRequest):
                    await conn.request("GET", path)
            async with h2any.Client() as client:
                with pytest.raises(h2any.InvalidRequest):
                    await client.request("GET", server.url + path)


async def test_a_lone_surrogate_in_the_path_is_invalid_request() -> None:
    with anyio.fail_after(10):
        async with serve(echo) as server, h2any.Connection(server.url) as conn:
            with pytest.raises(h2any.InvalidRequest, match="UTF-8"):
                await conn.request("GET", "/a\udc80")


def test_sync_connection_percent_encodes_the_path() -> None:
    with anyio.from_thread.start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(serve(echo)) as server:
            with h2any.sync.Connection(server.url) as conn:
                assert conn.request("GET", "/ä?ö=1").json()["path"] == "/%C3%A4?%C3%B6=1"


# -- user information -----------------------------------------------------------------------


async def test_userinfo_becomes_basic_auth_and_leaves_the_authority() -> None:
    with anyio.fail_after(10):
        async with serve(echo) as server, h2any.Client() as client:
            url = server.url.replace("://", "://alice:s%C3%A9cret%40x@") + "/private"
            response = await client.request("GET", url)
            seen = json.loads(await response.read())
    headers = dict(seen["headers"])
    # "alice:sécret@x", UTF-8, base64
    assert headers["authorization"] == "Basic YWxpY2U6c8OpY3JldEB4"
    assert seen["authority"] == f"127.0.0.1:{server.port}"
    assert "@" not in seen["authority"]
    assert "cret" not in repr(response.request) + response.url + repr(response.request.headers)


async def test_userinfo_without_a_password_and_in_base_url() -> None:
    with anyio.fail_after(10):
        async with serve(echo) as server:
            base = server.url.replace("://", "://bob@")
            async with h2any.Client(base_url=base) as client:
                response = await client.request("GET", "/x")
                seen = json.loads(await response.read())
    assert dict(seen["headers"])["authorization"] == "Basic Ym9iOg=="  # "bob:"


async def test_an_authorization_header_of_the_request_wins_over_userinfo() -> None:
    with anyio.fail_after(10):
        async with serve(echo) as server, h2any.Client() as client:
            url = server.url.replace("://", "://alice:pw@") + "/x"
            response = await client.request("GET", url, headers={"Authorization": "Bearer t"})
            seen = json.loads(await response.read())
    assert [v for n, v in seen["headers"] if n == "authorization"] == ["Bearer t"]


async def test_userinfo_password_never_appears_in_a_connect_error() -> None:
    port = _closed_port()
    with anyio.fail_after(10):
        async with h2any.Client(retries=1, trust_env=False) as client:
            with pytest.raises(h2any.ConnectError) as caught:
                await client.request("GET", f"http://alice:hunter2@127.0.0.1:{port}/")
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(caught.value)


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- header values that are not text --------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"x-count": 5}, "x-count"),
        ({"x-none": None}, "x-none"),
        ([("x-float", 1.5)], "x-float"),
        ([(b"x-bytes-name", 7)], "x-bytes-name"),
    ],
)
async def test_a_header_value_that_is_not_text_is_invalid_request_naming_it(
    headers: Any, named: str
) -> None:
    with anyio.fail_after(10):
        async with serve(echo) as server:
            async with h2any.Connection(server.url) as conn:
                with pytest.raises(h2any.InvalidRequest, match=named):
                    await conn.request("GET", "/", headers=headers)
            async with h2any.Client() as client:
                with pytest.raises(h2any.InvalidRequest, match=named):
                    await client.request("GET", server.url, headers=headers)
    with pytest.raises(h2any.InvalidRequest, match=named):
        h2any.Connection("http://localhost", headers=headers)


def test_a_header_name_that_is_not_text_is_invalid_request() -> None:
    with pytest.raises(h2any.InvalidRequest, match="header name must be str or bytes"):
        h2any.Headers([(3, "x")])  # type: ignore[list-item]


# -- the ENHANCE_YOUR_CALM message ----------------------------------------------------------


def test_enhance_your_calm_is_not_called_retryable_in_the_message() -> None:
    calm = h2any.ConnectionTerminated(0xB, 1, retryable=True, stream_id=3)
    assert "may be retried" not in str(calm)
    assert "not retried" in str(calm)
    refused = h2any.ConnectionTerminated(0x0, 1, retryable=True, stream_id=3)
    assert "may be retried" in str(refused)
