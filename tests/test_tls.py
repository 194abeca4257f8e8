"""Connecting: certificate verification, ALPN, connect errors and timeouts, IPv6 literals."""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import h2.config
import pytest
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSListener
from scripted import ScriptedPeer

import h2any

pytestmark = pytest.mark.anyio


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(
    not _has_ipv6_loopback(), reason="this machine has no IPv6 loopback (cannot bind ::1)"
)


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (tiny race accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _drain(stream: anyio.abc.ByteStream) -> None:
    """Server handler: read (and ignore) everything until the client goes away."""
    async with stream:
        try:
            while True:
                await stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass


async def _serve_hello(stream: anyio.abc.ByteStream) -> None:
    """Server handler: speak HTTP/2 (over whatever ``stream`` is) and answer one request."""
    config = h2.config.H2Configuration(client_side=False, header_encoding=None)
    peer = ScriptedPeer(stream, config)  # type: ignore[arg-type]  # only send/receive used
    async with stream:
        try:
            await peer.handshake()
            request = await peer.expect_request()
            await peer.respond(request.stream_id, body=b"hello over TLS")
            await peer.wait_closed()
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass


@asynccontextmanager
async def _tcp_server(
    tls_context: ssl.SSLContext | None = None,
    handler: Callable[[anyio.abc.ByteStream], Awaitable[None]] = _drain,
) -> AsyncIterator[int]:
    """Listen on 127.0.0.1 and run ``handler`` (default: drain) for every connection; with
    ``tls_context``, after a TLS handshake. Yields the port."""
    listener: anyio.abc.Listener[anyio.abc.ByteStream]
    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = tcp.extra(SocketAttribute.local_port)
    listener = tcp if tls_context is None else TLSListener(tcp, tls_context, False)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handler)
        try:
            yield port
        finally:
            tg.cancel_scope.cancel()


def _server_context(certs, *names: str, alpn: list[str]) -> ssl.SSLContext:
    """A server context with a cert from the test CA (for ``names``, or the usual one)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    if names:
        certs.ca.issue_cert(*names).configure_cert(context)
    else:
        context.load_cert_chain(certs.cert_path, certs.key_path)
    context.set_alpn_protocols(alpn)
    return context


async def _get_hello(conn: h2any.Connection) -> None:
    response = await conn.request("GET", "/hello.txt")
    assert response.status == 200
    assert await response.read() == b"hello, world\n"


# -- certificate verification -------------------------------------------------------------


async def test_default_verify_rejects_a_server_signed_by_an_unknown_ca(nghttpd_tls) -> None:
    with anyio.fail_after(10):
        with pytest.raises(h2any.TLSError) as info:
            async with h2any.Connection(nghttpd_tls.url):
                pytest.fail("the connection should not have been established")
    error = info.value
    assert type(error) is h2any.TLSError  # not wrapped in an ExceptionGroup
    assert isinstance(error, h2any.ConnectError)
    assert "certificate" in str(error).lower()
    assert isinstance(error.__cause__, ssl.SSLError)


async def test_default_verify_rejects_unknown_ca_via_connect(nghttpd_tls) -> None:
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            with pytest.raises(h2any.TLSError) as info:
                await h2any.connect(tg, nghttpd_tls.url)
    assert type(info.value) is h2any.TLSError


async def test_verify_with_ca_bundle_path_connects(nghttpd_tls, certs) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd_tls.url, verify=certs.ca_path) as conn:
            await _get_hello(conn)


async def test_verify_false_connects_without_verification(nghttpd_tls) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd_tls.url, verify=False) as conn:
            await _get_hello(conn)


async def test_verify_with_ssl_context_connects(nghttpd_tls, certs) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd_tls.url, verify=certs.client_ssl_context()) as conn:
            await _get_hello(conn)


async def test_verify_with_ssl_context_without_alpn_still_negotiates_h2(nghttpd_tls, certs) -> None:
    context = ssl.create_default_context(cafile=certs.ca_path)
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd_tls.url, verify=context) as conn:
            await _get_hello(conn)


async def test_verify_with_missing_ca_file_is_an_invalid_request(tmp_path) -> None:
    with pytest.raises(h2any.InvalidRequest, match="no such CA bundle"):
        h2any.Connection("https://localhost:1", verify=str(tmp_path / "missing.pem"))


async def test_wrong_hostname_in_certificate_is_a_tls_error(certs) -> None:
    context = _server_context(certs, "other.example", alpn=["h2"])
    with anyio.fail_after(10):
        async with _tcp_server(context) as port:
            with pytest.raises(h2any.TLSError) as info:
                async with h2any.Connection(f"https://localhost:{port}", verify=certs.ca_path):
                    pytest.fail("the connection should not have been established")
    assert type(info.value) is h2any.TLSError
    assert "hostname mismatch" in str(info.value).lower()


async def test_wrong_ip_address_in_certificate_is_a_tls_error(certs) -> None:
    context = _server_context(certs, "other.example", "10.0.0.1", alpn=["h2"])
    with anyio.fail_after(10):
        async with _tcp_server(context) as port:
            with pytest.raises(h2any.TLSError) as info:
                async with h2any.Connection(f"https://127.0.0.1:{port}", verify=certs.ca_path):
                    pytest.fail("the connection should not have been established")
    assert type(info.value) is h2any.TLSError
    assert "ip address mismatch" in str(info.value).lower()


async def test_verify_false_accepts_the_wrong_hostname(certs) -> None:
    context = _server_context(certs, "other.example", alpn=["h2"])
    with anyio.fail_after(10):
        async with (
            _tcp_server(context, _serve_hello) as port,
            h2any.Connection(f"https://localhost:{port}", verify=False) as conn,
        ):
            response = await conn.request("GET", "/")
            assert await response.read() == b"hello over TLS"


async def test_right_hostname_from_the_same_test_server_is_accepted(certs) -> None:
    # The control case for the wrong-hostname tests: same server code, matching cert.
    context = _server_context(certs, "localhost", alpn=["h2"])
    with anyio.fail_after(10):
        async with (
            _tcp_server(context, _serve_hello) as port,
            h2any.Connection(f"https://localhost:{port}", verify=certs.ca_path) as conn,
        ):
            response = await conn.request("GET", "/")
            assert await response.read() == b"hello over TLS"


# -- ALPN ---------------------------------------------------------------------------------


async def test_server_selecting_only_http11_is_a_connect_error(certs) -> None:
    context = _server_context(certs, alpn=["http/1.1"])
    with anyio.fail_after(10):
        async with _tcp_server(context) as port:
            with pytest.raises(h2any.ConnectError, match=r"ALPN|HTTP/2") as info:
                async with h2any.Connection(f"https://localhost:{port}", verify=certs.ca_path):
                    pytest.fail("the connection should not have been established")
    assert type(info.value) in (h2any.ConnectError, h2any.TLSError, h2any.HTTPVersionError)


async def test_server_without_alpn_is_a_connect_error(certs) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert_path, certs.key_path)
    with anyio.fail_after(10):
        async with _tcp_server(context) as port:
            with pytest.raises(h2any.ConnectError, match=r"ALPN|HTTP/2"):
                async with h2any.Connection(f"https://localhost:{port}", verify=certs.ca_path):
                    pytest.fail("the connection should not have been established")


async def test_hypercorn_offering_h2_and_http11_negotiates_h2(hypercorn_server, certs) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(hypercorn_server.url_tls, verify=certs.ca_path) as conn:
            response = await conn.request("GET", "/status/204")
            assert response.status == 204
            assert response.http_version == "HTTP/2"


# -- connect errors and timeouts ----------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_closed_port_is_a_connect_error(scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{_closed_port()}"
    with anyio.fail_after(10):
        with pytest.raises(h2any.ConnectError) as info:
            async with h2any.Connection(url, verify=False):
                pytest.fail("the connection should not have been established")
    error = info.value
    assert type(error) is h2any.ConnectError
    assert "127.0.0.1" in str(error)


async def test_tls_handshake_that_never_completes_is_a_connect_timeout() -> None:
    timeout = h2any.Timeout(5, connect=0.3)
    with anyio.fail_after(5):
        async with _tcp_server() as port:
            started = anyio.current_time()
            with pytest.raises(h2any.ConnectTimeout) as info:
                async with h2any.Connection(
                    f"https://127.0.0.1:{port}", verify=False, timeout=timeout
                ):
                    pytest.fail("the connection should not have been established")
            elapsed = anyio.current_time() - started
    assert isinstance(info.value, h2any.TimeoutError)
    assert isinstance(info.value, TimeoutError)
    assert "0.3" in str(info.value)
    assert 0.25 <= elapsed < 3


# -- IPv6 ---------------------------------------------------------------------------------


@needs_ipv6
async def test_ipv6_literal_url_over_h2c(nghttpd) -> None:
    url = f"http://[::1]:{nghttpd.port}"
    with anyio.fail_after(10):
        async with h2any.Connection(url) as conn:
            assert conn.origin.host == "::1"
            assert conn.origin.authority == f"[::1]:{nghttpd.port}"
            await _get_hello(conn)
            response = await conn.request("GET", url + "/1b")
            assert await response.read() == b"x"


@needs_ipv6
async def test_ipv6_literal_url_over_tls_verifies_the_ip_address(nghttpd_tls, certs) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(
            f"https://[::1]:{nghttpd_tls.port}", verify=certs.ca_path
        ) as conn:
            await _get_hello(conn)


async def test_a_self_signed_certificate_is_a_tls_error(certs, tmp_path) -> None:
    # The CA's own certificate is self-signed: served as the leaf, nothing vouches for it.
    key = tmp_path / "self-signed.key"
    cert = tmp_path / "self-signed.pem"
    key.write_bytes(certs.ca.private_key_pem.bytes())
    cert.write_bytes(certs.ca.cert_pem.bytes())
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    context.set_alpn_protocols(["h2"])
    with anyio.fail_after(10):
        async with _tcp_server(context) as port:
            with pytest.raises(h2any.TLSError) as info:
                async with h2any.Connection(f"https://127.0.0.1:{port}"):
                    pytest.fail("the connection should not have been established")
    assert "self-signed" in str(info.value).lower() or "verify failed" in str(info.value).lower()
