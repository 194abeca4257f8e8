"""Proxies: CONNECT tunnels through a real proxy (tinyproxy), proxy errors, and the
environment's proxy settings (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY, SSL_CERT_FILE).

tinyproxy (Debian ``tinyproxy-bin``, >= 1.11 for BasicAuth) runs in the foreground (``-d``)
on loopback with a config written here. With no ``ConnectPort`` line it allows CONNECT to
every port (its stock config file is what restricts CONNECT to 443 and 563).
"""

from __future__ import annotations

import hashlib
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import anyio.abc
import pytest
from anyio.streams.tls import TLSAttribute, TLSListener
from conftest import (
    CLIENT_ENVIRONMENT,
    POLL_INTERVAL,
    STARTUP_DEADLINE,
    Certs,
    NghttpdServer,
    free_port,
)

import h2any
import h2any._proxy
import h2any.sync
from h2any._config import Origin
from h2any._proxy import (
    ProxyConfig,
    environment_ca_bundle,
    environment_proxy,
    no_proxy_matches,
    open_tunnel,
)

pytestmark = pytest.mark.anyio

USER, PASSWORD = "proxyuser", "s3cret-pa55"
REFUSING_PROXY = "http://127.0.0.1:1"  # nothing listens there: using it fails at once


# -- tinyproxy ----------------------------------------------------------------------------


@dataclass
class Tinyproxy:
    """A running tinyproxy process on 127.0.0.1."""

    port: int
    auth: bool
    process: subprocess.Popen[bytes] = field(repr=False)
    log_path: Path = field(repr=False)

    @property
    def url(self) -> str:
        """The proxy URL, without credentials."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url_with_credentials(self) -> str:
        return f"http://{USER}:{PASSWORD}@127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Terminate the process and reap it (idempotent)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


TinyproxyFactory = Callable[..., Tinyproxy]


def _start_tinyproxy(directory: Path, auth: bool) -> Tinyproxy:
    """Start tinyproxy on a free port and wait until it accepts connections."""
    if shutil.which("tinyproxy") is None:
        raise RuntimeError("tinyproxy is not installed (apt-get install tinyproxy-bin)")
    last_error = ""
    for _attempt in range(3):
        port = free_port()
        conf = directory / f"tinyproxy-{port}.conf"
        log_path = directory / f"tinyproxy-{port}.log"
        lines = [
            f"Port {port}",
            "Listen 127.0.0.1",
            "Allow 127.0.0.1",
            "Timeout 600",
            "MaxClients 100",
            "LogLevel Info",
            f'LogFile "{log_path}"',
            f'PidFile "{directory / f"tinyproxy-{port}.pid"}"',
            "DisableViaHeader Yes",
        ]
        if auth:
            lines.append(f"BasicAuth {USER} {PASSWORD}")
        conf.write_text("\n".join(lines) + "\n")
        stderr_path = directory / f"tinyproxy-{port}.stderr"
        with stderr_path.open("wb") as err:
            process = subprocess.Popen(
                ["tinyproxy", "-d", "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )
        proxy = Tinyproxy(port, auth, process, log_path)
        deadline = time.monotonic() + STARTUP_DEADLINE
        while time.monotonic() < deadline:
            if _accepts(port):
                return proxy
            try:
                process.wait(timeout=POLL_INTERVAL)  # doubles as the poll delay
            except subprocess.TimeoutExpired:
                continue
            break  # exited early
        proxy.stop()
        last_error = (
            f"exited with {process.returncode}: {stderr_path.read_text()!r} {proxy.log()!r}"
        )
        if "Address already in use" not in last_error and "Could not" not in last_error:
            break
    raise RuntimeError(f"tinyproxy did not start accepting connections: {last_error}")


def _accepts(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def tinyproxy_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyproxyFactory]:
    """Start tinyproxy processes: ``tinyproxy_factory(auth=False)``; all stopped at the end."""
    directory = tmp_path_factory.mktemp("tinyproxy")
    started: list[Tinyproxy] = []

    def start(*, auth: bool = False) -> Tinyproxy:
        proxy = _start_tinyproxy(directory, auth)
        started.append(proxy)
        return proxy

    try:
        yield start
    finally:
        for proxy in started:
            proxy.stop()


@pytest.fixture(scope="session")
def tinyproxy(tinyproxy_factory: TinyproxyFactory) -> Tinyproxy:
    """An open tinyproxy (no authentication)."""
    return tinyproxy_factory()


@pytest.fixture(scope="session")
def tinyproxy_auth(tinyproxy_factory: TinyproxyFactory) -> Tinyproxy:
    """A tinyproxy that requires ``BasicAuth USER PASSWORD``."""
    return tinyproxy_factory(auth=True)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy variables in the environment (and SSL_CERT_FILE unset)."""
    for name in CLIENT_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_tinyproxy_is_recent_enough_for_basic_auth() -> None:
    if shutil.which("tinyproxy") is None:
        pytest.fail("tinyproxy is not installed (apt-get install tinyproxy-bin)")
    output = subprocess.run(
        ["tinyproxy", "-v"], capture_output=True, text=True, check=True, timeout=10
    ).stdout
    version = tuple(int(part) for part in output.split()[-1].split(".")[:2])
    assert version >= (1, 11), output


# -- fake proxies -------------------------------------------------------------------------


@asynccontextmanager
async def fake_proxy(reply: bytes | None, *, hang: bool = False) -> AsyncIterator[str]:
    """A loopback "proxy" that reads the request head, sends ``reply`` (or nothing) and
    closes -- or, with ``hang``, never answers. Yields its URL."""

    async def handle(client: anyio.abc.SocketStream) -> None:
        async with client:
            if reply is None and not hang:
                return
            received = b""
            while b"\r\n\r\n" not in received:
                try:
                    received += await client.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return
            if hang:
                await anyio.sleep_forever()
            assert reply is not None
            await client.send(reply)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield f"http://127.0.0.1:{port}"
        tg.cancel_scope.cancel()


async def _pipe(source: anyio.abc.ByteStream, sink: anyio.abc.ByteStream) -> None:
    """Copy ``source`` to ``sink`` until either ends (TLS has no half-close: no send_eof)."""
    try:
        async for chunk in source:
            await sink.send(chunk)
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        pass


@asynccontextmanager
async def tls_front(certs: Certs, backend_port: int) -> AsyncIterator[int]:
    """A TLS terminator on 127.0.0.1 in front of ``backend_port``: an https:// proxy when
    the backend is tinyproxy. Yields its port."""
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(certs.cert_path, certs.key_path)

    async def handle(client: anyio.abc.ByteStream) -> None:
        async with client:
            try:
                upstream = await anyio.connect_tcp("127.0.0.1", backend_port)
            except OSError:
                return
            async with upstream, anyio.create_task_group() as tg:

                async def forward(source: anyio.abc.ByteStream, sink: anyio.abc.ByteStream) -> None:
                    await _pipe(source, sink)
                    tg.cancel_scope.cancel()  # one side ended: close both

                tg.start_soon(forward, client, upstream)
                tg.start_soon(forward, upstream, client)

    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = tcp.extra(anyio.abc.SocketAttribute.local_port)
    listener = TLSListener(tcp, server_context, standard_compatible=False)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield port
        tg.cancel_scope.cancel()


def _proxy_tls_context(certs: Certs) -> ssl.SSLContext:
    return certs.client_ssl_context(alpn=("http/1.1",))


# -- tunnels through tinyproxy ------------------------------------------------------------


async def test_h2c_target_through_the_proxy(nghttpd: NghttpdServer, tinyproxy: Tinyproxy) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd.url, proxy=tinyproxy.url) as conn:
            response = await conn.request("GET", "/hello.txt")
            assert response.status == 200
            assert await response.read() == b"hello, world\n"
    assert f"CONNECT 127.0.0.1:{nghttpd.port} HTTP/1.1" in tinyproxy.log()


async def test_tls_target_through_the_proxy(
    nghttpd_tls: NghttpdServer, tinyproxy: Tinyproxy, certs: Certs
) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(
            nghttpd_tls.url, proxy=tinyproxy.url, verify=certs.ca_path
        ) as conn:
            response = await conn.request("GET", "/1m.bin")
            body = await response.read()
    assert hashlib.sha256(body).hexdigest() == nghttpd_tls.docroot.sha256["1m.bin"]
    assert f"CONNECT localhost:{nghttpd_tls.port} HTTP/1.1" in tinyproxy.log()


async def test_tls_target_named_by_ip_address_through_the_proxy(
    nghttpd_tls: NghttpdServer, tinyproxy: Tinyproxy, certs: Certs
) -> None:
    # The certificate names 127.0.0.1: the TLS client inside the tunnel checks the address
    # as it would the name (and is a client: anyio guesses "server" when given no name).
    with anyio.fail_after(10):
        async with h2any.Connection(
            f"https://127.0.0.1:{nghttpd_tls.port}", proxy=tinyproxy.url, verify=certs.ca_path
        ) as conn:
            response = await conn.request("GET", "/hello.txt")
            assert await response.read() == b"hello, world\n"
    assert f"CONNECT 127.0.0.1:{nghttpd_tls.port} HTTP/1.1" in tinyproxy.log()


async def test_tls_target_is_verified_inside_the_tunnel(
    nghttpd_tls: NghttpdServer, tinyproxy: Tinyproxy
) -> None:
    with anyio.fail_after(10):
        with pytest.raises(h2any.TLSError) as info:
            async with h2any.Connection(nghttpd_tls.url, proxy=tinyproxy.url):  # certifi
                pytest.fail("the connection should not have been established")
    assert type(info.value) is h2any.TLSError


async def test_proxy_without_credentials_gets_407_with_the_challenge(
    nghttpd: NghttpdServer, tinyproxy_auth: Tinyproxy
) -> None:
    with anyio.fail_after(10):
        with pytest.raises(h2any.ProxyError) as info:
            async with h2any.Connection(nghttpd.url, proxy=tinyproxy_auth.url):
                pytest.fail("the connection should not have been established")
    error = info.value
    assert type(error) is h2any.ProxyError  # not wrapped in an ExceptionGroup
    assert isinstance(error, h2any.ConnectError)
    assert error.status == 407
    assert error.reason == "Proxy Authentication Required"
    assert error.proxy_authenticate is not None
    assert error.proxy_authenticate.lower().startswith("basic realm=")
    assert "407 Proxy Authentication Required" in str(error)
    assert error.proxy_authenticate in str(error)


async def test_proxy_with_credentials_tunnels(
    nghttpd: NghttpdServer, tinyproxy_auth: Tinyproxy
) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd.url, proxy=tinyproxy_auth.url_with_credentials) as conn:
            response = await conn.request("GET", "/hello.txt")
            assert await response.read() == b"hello, world\n"
    assert PASSWORD not in tinyproxy_auth.log()


async def test_wrong_credentials_are_a_407_without_the_password_in_the_message(
    nghttpd: NghttpdServer, tinyproxy_auth: Tinyproxy
) -> None:
    wrong = f"http://{USER}:not-{PASSWORD}@127.0.0.1:{tinyproxy_auth.port}"
    with anyio.fail_after(10):
        with pytest.raises(h2any.ProxyError) as info:
            async with h2any.Connection(nghttpd.url, proxy=wrong):
                pytest.fail("the connection should not have been established")
    error = info.value
    assert error.status in (401, 407)  # tinyproxy answers wrong credentials with 401
    assert PASSWORD not in str(error)
    assert PASSWORD not in repr(error)
    assert "not accepted" in str(error)


def test_password_is_masked_in_repr_and_str() -> None:
    config = ProxyConfig.parse(f"http://{USER}:{PASSWORD}@127.0.0.1:3128")
    assert PASSWORD not in repr(config)
    assert PASSWORD not in str(config)
    assert repr(config) == f"ProxyConfig('http://{USER}:****@127.0.0.1:3128')"
    assert config.address == "http://127.0.0.1:3128"
    assert (config.username, config.password) == (USER, PASSWORD)


async def test_refused_connect_carries_the_status_line(tinyproxy: Tinyproxy) -> None:
    # tinyproxy answers "500 Unable to connect" when the target refuses the connection.
    with anyio.fail_after(10):
        with pytest.raises(h2any.ProxyError) as info:
            async with h2any.Connection(f"http://127.0.0.1:{free_port()}", proxy=tinyproxy.url):
                pytest.fail("the connection should not have been established")
    assert info.value.status == 500
    assert info.value.proxy_authenticate is None
    assert "500 Unable to connect" in str(info.value)


async def test_client_with_proxy(
    nghttpd: NghttpdServer, nghttpd_tls: NghttpdServer, tinyproxy: Tinyproxy, certs: Certs
) -> None:
    with anyio.fail_after(10):
        async with h2any.Client(proxy=tinyproxy.url, verify=certs.ca_path) as client:
            first = await client.get(nghttpd.url + "/hello.txt")
            second = await client.get(nghttpd_tls.url + "/1b")
            assert await first.read() == b"hello, world\n"
            assert await second.read() == b"x"
    log = tinyproxy.log()
    assert f"CONNECT 127.0.0.1:{nghttpd.port} " in log
    assert f"CONNECT localhost:{nghttpd_tls.port} " in log


async def test_https_proxy(
    nghttpd_tls: NghttpdServer,
    tinyproxy: Tinyproxy,
    certs: Certs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # TLS to the proxy (a TLS terminator in front of tinyproxy), then TLS to the target
    # inside that: TLS in TLS.
    with anyio.fail_after(10):
        async with tls_front(certs, tinyproxy.port) as port:
            proxy = ProxyConfig.parse(
                f"https://127.0.0.1:{port}", ssl_context=_proxy_tls_context(certs)
            )
            target = Origin.parse(nghttpd_tls.url)
            stream = await open_tunnel(proxy, target, certs.client_ssl_context())
            async with stream:
                assert stream.extra(TLSAttribute.alpn_protocol) == "h2"
            # Through the public API (the proxy's TLS context is the default one: point it at
            # the test CA).
            monkeypatch.setattr(
                h2any._proxy, "_default_proxy_ssl_context", lambda: _proxy_tls_context(certs)
            )
            async with h2any.Connection(
                nghttpd_tls.url, proxy=f"https://127.0.0.1:{port}", verify=certs.ca_path
            ) as conn:
                response = await conn.request("GET", "/hello.txt")
                assert await response.read() == b"hello, world\n"


async def test_https_proxy_with_an_untrusted_certificate_is_a_proxy_error(
    nghttpd: NghttpdServer, tinyproxy: Tinyproxy, certs: Certs
) -> None:
    with anyio.fail_after(10):
        async with tls_front(certs, tinyproxy.port) as port:
            with pytest.raises(h2any.ProxyError, match="TLS handshake with proxy"):
                async with h2any.Connection(nghttpd.url, proxy=f"https://127.0.0.1:{port}"):
                    pytest.fail("the connection should not have been established")


async def test_proxy_killed_mid_stream_fails_the_request(
    nghttpd: NghttpdServer, tinyproxy_factory: TinyproxyFactory
) -> None:
    proxy = tinyproxy_factory()
    received = 0

    async def download(conn: h2any.Connection) -> None:
        nonlocal received
        async with conn.stream("GET", "/16m.bin") as response:
            async for chunk in response.aiter_bytes():
                if received == 0:
                    # Data is flowing: kill the proxy (SIGKILL) and keep reading.
                    proxy.process.kill()
                    await anyio.to_thread.run_sync(proxy.process.wait)
                received += len(chunk)

    with anyio.fail_after(20):
        async with h2any.Connection(nghttpd.url, proxy=proxy.url) as conn:
            with pytest.raises(h2any.H2anyError) as info:
                await download(conn)
    assert isinstance(info.value, h2any.ConnectionClosed), repr(info.value)
    assert 0 < received < nghttpd.docroot.sizes["16m.bin"]


async def test_proxy_answering_garbage_is_a_proxy_error(nghttpd: NghttpdServer) -> None:
    with anyio.fail_after(10):
        async with fake_proxy(b"garbage\r\n\r\n") as url:
            with pytest.raises(h2any.ProxyError, match="did not answer with HTTP") as info:
                async with h2any.Connection(nghttpd.url, proxy=url):
                    pytest.fail("the connection should not have been established")
    assert type(info.value) is h2any.ProxyError
    assert info.value.status is None
    assert "garbage" in str(info.value)


async def test_proxy_with_an_invalid_status_line_is_a_proxy_error(nghttpd: NghttpdServer) -> None:
    with anyio.fail_after(10):
        async with fake_proxy(b"HTTP/1.1 2OO OK\r\n\r\n") as url:
            with pytest.raises(h2any.ProxyError, match="invalid status line"):
                async with h2any.Connection(nghttpd.url, proxy=url):
                    pytest.fail("the connection should not have been established")


async def test_proxy_closing_at_once_is_a_proxy_error(nghttpd: NghttpdServer) -> None:
    with anyio.fail_after(10):
        async with fake_proxy(None) as url:
            with pytest.raises(h2any.ProxyError, match="closed the connection") as info:
                async with h2any.Connection(nghttpd.url, proxy=f"http://u:{PASSWORD}@{url[7:]}"):
                    pytest.fail("the connection should not have been established")
    assert type(info.value) is h2any.ProxyError
    assert PASSWORD not in str(info.value)


async def test_proxy_closing_mid_head_is_a_proxy_error(nghttpd: NghttpdServer) -> None:
    with anyio.fail_after(10):
        async with fake_proxy(b"HTTP/1.1 200 Connection established\r\n") as url:
            with pytest.raises(h2any.ProxyError, match="in the middle of its answer"):
                async with h2any.Connection(nghttpd.url, proxy=url):
                    pytest.fail("the connection should not have been established")


async def test_endless_proxy_head_is_a_proxy_error(nghttpd: NghttpdServer) -> None:
    reply = b"HTTP/1.1 200 OK\r\n" + b"X-Filler: " + b"a" * 100_000 + b"\r\n\r\n"
    with anyio.fail_after(10):
        async with fake_proxy(reply) as url:
            with pytest.raises(h2any.ProxyError, match="larger than"):
                async with h2any.Connection(nghttpd.url, proxy=url):
                    pytest.fail("the connection should not have been established")


async def test_silent_proxy_is_a_connect_timeout(nghttpd: NghttpdServer) -> None:
    timeout = h2any.Timeout(10, connect=0.2)
    with anyio.fail_after(10):
        async with fake_proxy(None, hang=True) as url:
            with pytest.raises(h2any.ConnectTimeout):
                async with h2any.Connection(nghttpd.url, proxy=url, timeout=timeout):
                    pytest.fail("the connection should not have been established")


async def test_unreachable_proxy_is_a_proxy_error(nghttpd: NghttpdServer) -> None:
    with anyio.fail_after(10):
        with pytest.raises(h2any.ProxyError, match="could not connect to proxy") as info:
            async with h2any.Connection(nghttpd.url, proxy=f"http://u:{PASSWORD}@127.0.0.1:1"):
                pytest.fail("the connection should not have been established")
    assert PASSWORD not in str(info.value)


async def test_bytes_after_the_proxy_head_are_not_lost() -> None:
    # A "proxy" that says 200 and then, in the same write, the first bytes of the tunnel.
    with anyio.fail_after(10):
        async with fake_proxy(b"HTTP/1.1 200 OK\r\nX: y\r\n\r\nearly bytes") as url:
            stream = await open_tunnel(
                ProxyConfig.parse(url), Origin.parse("http://example.test:8080"), None
            )
            async with stream:
                data = b""
                while len(data) < len(b"early bytes"):
                    data += await stream.receive()
    assert data == b"early bytes"


async def test_interim_response_before_200_is_skipped() -> None:
    reply = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nafter"
    with anyio.fail_after(10):
        async with fake_proxy(reply) as url:
            stream = await open_tunnel(
                ProxyConfig.parse(url), Origin.parse("http://example.test"), None
            )
            async with stream:
                assert await stream.receive() == b"after"


def test_sync_facade_through_the_proxy(
    nghttpd: NghttpdServer, tinyproxy_auth: Tinyproxy, anyio_backend: str
) -> None:
    with h2any.sync.Connection(
        nghttpd.url, proxy=tinyproxy_auth.url_with_credentials, backend=anyio_backend
    ) as conn:
        response = conn.request("GET", "/hello.txt")
        assert response.read() == b"hello, world\n"


def test_sync_facade_raises_proxy_error(
    nghttpd: NghttpdServer, tinyproxy_auth: Tinyproxy, anyio_backend: str
) -> None:
    with pytest.raises(h2any.ProxyError) as info:
        with h2any.sync.Connection(nghttpd.url, proxy=tinyproxy_auth.url, backend=anyio_backend):
            pytest.fail("the connection should not have been established")
    assert info.value.status == 407


# -- the environment, through the Client -------------------------------------------------


async def test_https_proxy_variable_is_used_for_https_targets(
    nghttpd_tls: NghttpdServer, tinyproxy_auth: Tinyproxy, certs: Certs, clean_env
) -> None:
    clean_env.setenv("HTTPS_PROXY", tinyproxy_auth.url)  # no credentials: 407 proves use
    clean_env.setenv("HTTP_PROXY", REFUSING_PROXY)  # not for https targets
    with anyio.fail_after(10):
        async with h2any.Client(verify=certs.ca_path) as client:
            with pytest.raises(h2any.ProxyError) as info:
                await client.get(nghttpd_tls.url + "/1b")
            assert info.value.status == 407
        clean_env.setenv("HTTPS_PROXY", tinyproxy_auth.url_with_credentials)
        async with h2any.Client(verify=certs.ca_path) as client:
            response = await client.get(nghttpd_tls.url + "/1b")
            assert await response.read() == b"x"


async def test_http_proxy_variable_is_used_for_h2c_targets(
    nghttpd: NghttpdServer, tinyproxy: Tinyproxy, clean_env
) -> None:
    clean_env.setenv("http_proxy", tinyproxy.url)
    clean_env.setenv("HTTPS_PROXY", REFUSING_PROXY)  # not for http targets
    with anyio.fail_after(10):
        async with h2any.Client() as client:
            response = await client.get(nghttpd.url + "/hello.txt")
            assert await response.read() == b"hello, world\n"
    assert f"CONNECT 127.0.0.1:{nghttpd.port} " in tinyproxy.log()


async def test_all_proxy_variable_is_the_fallback(nghttpd: NghttpdServer, clean_env) -> None:
    clean_env.setenv("ALL_PROXY", REFUSING_PROXY)
    with anyio.fail_after(10):
        async with h2any.Client() as client:
            with pytest.raises(h2any.ProxyError, match="could not connect to proxy"):
                await client.get(nghttpd.url + "/1b")


@pytest.mark.parametrize(
    ("tls", "no_proxy"),
    [
        pytest.param(True, "localhost", id="hostname"),
        pytest.param(True, "example.com, .localhost", id="dot-domain"),
        pytest.param(False, "127.0.0.0/8", id="cidr"),
        pytest.param(False, "*", id="star"),
        pytest.param(False, "other.test,127.0.0.1:{port}", id="host-and-port"),
    ],
)
async def test_no_proxy_bypasses_the_proxy(
    nghttpd: NghttpdServer,
    nghttpd_tls: NghttpdServer,
    certs: Certs,
    clean_env,
    tls: bool,
    no_proxy: str,
) -> None:
    server = nghttpd_tls if tls else nghttpd
    clean_env.setenv("HTTPS_PROXY", REFUSING_PROXY)
    clean_env.setenv("HTTP_PROXY", REFUSING_PROXY)
    clean_env.setenv("NO_PROXY", no_proxy.format(port=server.port))
    with anyio.fail_after(10):
        async with h2any.Client(verify=certs.ca_path) as client:
            response = await client.get(server.url + "/1b")
            assert await response.read() == b"x"


async def test_no_proxy_for_another_port_does_not_bypass(nghttpd: NghttpdServer, clean_env) -> None:
    clean_env.setenv("HTTP_PROXY", REFUSING_PROXY)
    clean_env.setenv("NO_PROXY", f"127.0.0.1:{nghttpd.port + 1}")
    with anyio.fail_after(10):
        async with h2any.Client() as client:
            with pytest.raises(h2any.ProxyError):
                await client.get(nghttpd.url + "/1b")


async def test_trust_env_false_ignores_the_environment(
    nghttpd: NghttpdServer, nghttpd_tls: NghttpdServer, certs: Certs, clean_env
) -> None:
    clean_env.setenv("HTTPS_PROXY", REFUSING_PROXY)
    clean_env.setenv("HTTP_PROXY", REFUSING_PROXY)
    clean_env.setenv("ALL_PROXY", REFUSING_PROXY)
    clean_env.setenv("SSL_CERT_FILE", certs.ca_path)
    with anyio.fail_after(10):
        async with h2any.Client(trust_env=False, verify=certs.ca_path) as client:
            response = await client.get(nghttpd.url + "/1b")
            assert await response.read() == b"x"
            response = await client.get(nghttpd_tls.url + "/1b")
            assert await response.read() == b"x"
        # Without verify=, trust_env=False means certifi, which does not know the test CA.
        async with h2any.Client(trust_env=False) as client:
            with pytest.raises(h2any.TLSError):
                await client.get(nghttpd_tls.url + "/1b")


async def test_explicit_proxy_none_overrides_the_environment(
    nghttpd: NghttpdServer, clean_env
) -> None:
    clean_env.setenv("HTTP_PROXY", REFUSING_PROXY)
    with anyio.fail_after(10):
        async with h2any.Client(proxy=None) as client:
            response = await client.get(nghttpd.url + "/1b")
            assert await response.read() == b"x"


async def test_ssl_cert_file_is_the_trust_store(
    nghttpd_tls: NghttpdServer, certs: Certs, clean_env
) -> None:
    clean_env.setenv("SSL_CERT_FILE", certs.ca_path)
    with anyio.fail_after(10):
        async with h2any.Client() as client:
            response = await client.get(nghttpd_tls.url + "/1b")
            assert await response.read() == b"x"


# -- pure functions -------------------------------------------------------------------------


HTTPS = Origin("https", "api.example.com", 443)
H2C = Origin("http", "10.1.2.3", 8080)


@pytest.mark.parametrize(
    ("environ", "origin", "expected"),
    [
        ({}, HTTPS, None),
        ({"HTTPS_PROXY": "http://p:1"}, HTTPS, "http://p:1"),
        (
            {"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:1"},
            HTTPS,
            "http://lower:1",
        ),
        ({"HTTPS_PROXY": "http://p:1"}, H2C, None),
        ({"HTTP_PROXY": "http://p:1"}, H2C, "http://p:1"),
        ({"HTTP_PROXY": "http://p:1"}, HTTPS, None),
        ({"http_proxy": "http://p:1", "REQUEST_METHOD": "GET"}, H2C, "http://p:1"),
        ({"HTTP_PROXY": "http://p:1", "REQUEST_METHOD": "GET"}, H2C, None),  # httpoxy
        ({"ALL_PROXY": "http://all:1"}, HTTPS, "http://all:1"),
        ({"all_proxy": "http://all:1", "https_proxy": "http://s:1"}, HTTPS, "http://s:1"),
        ({"https_proxy": "", "ALL_PROXY": "http://all:1"}, HTTPS, None),  # set but empty
        ({"https_proxy": "", "HTTPS_PROXY": "http://upper:1"}, HTTPS, None),  # lowercase wins
        ({"HTTPS_PROXY": "proxy.corp:3128"}, HTTPS, "http://proxy.corp:3128"),
        ({"HTTPS_PROXY": " https://p:1 "}, HTTPS, "https://p:1"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "example.com"}, HTTPS, None),
        ({"HTTPS_PROXY": "http://p:1", "no_proxy": "", "NO_PROXY": "*"}, HTTPS, "http://p:1"),
        ({"HTTP_PROXY": "http://p:1", "no_proxy": "10.0.0.0/8"}, H2C, None),
        ({"HTTP_PROXY": "http://p:1", "no_proxy": "10.1.2.3:8081"}, H2C, "http://p:1"),
    ],
)
def test_environment_proxy(environ: dict[str, str], origin: Origin, expected: str | None) -> None:
    assert environment_proxy(origin, environ) == expected


def test_environment_proxy_reads_os_environ(clean_env) -> None:
    clean_env.setenv("https_proxy", "http://from-env:3128")
    assert environment_proxy(HTTPS) == "http://from-env:3128"
    clean_env.setenv("no_proxy", ".example.com")
    assert environment_proxy(HTTPS) is None


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "expected"),
    [
        ("example.com", 443, "example.com", True),
        ("EXAMPLE.com.", 443, "example.COM", True),
        ("www.example.com", 443, "example.com", True),
        ("www.example.com", 443, ".example.com", True),
        ("example.com", 443, ".example.com", True),
        ("www.example.com", 443, "*.example.com", True),
        ("badexample.com", 443, "example.com", False),
        ("example.com.evil", 443, "example.com", False),
        ("example.org", 443, "example.com,example.net", False),
        ("example.net", 443, "example.com, example.net", True),
        ("example.net", 443, "example.com example.net", True),
        ("anything", 1, "*", True),
        ("anything", 1, "a, *", True),
        ("anything", 1, "*.", False),
        ("example.com", 8443, "example.com:8443", True),
        ("example.com", 443, "example.com:8443", False),
        ("10.1.2.3", 80, "10.0.0.0/8", True),
        ("10.1.2.3", 80, "10.1.2.3", True),
        ("10.1.2.3", 80, "10.1.2.4", False),
        ("10.1.2.3", 80, "10.1.2.3:80", True),
        ("11.1.2.3", 80, "10.0.0.0/8", False),
        ("127.0.0.1", 80, "127.0.0.0/8", True),
        ("localhost", 80, "127.0.0.0/8", False),  # names are not resolved
        ("1.2.3.4", 80, "3.4", False),  # no suffix matching of addresses
        ("::1", 80, "::1", True),
        ("::1", 80, "[::1]:80", True),
        ("::1", 80, "[::1]:81", False),
        ("fd00::5", 80, "fd00::/8", True),
        ("fd00::5", 80, "10.0.0.0/8", False),
        ("10.0.0.1", 80, "fd00::/8", False),
        ("10.0.0.1", 80, "not-a-cidr/99, x", False),
        ("example.com", 443, "", False),
        ("example.com", 443, " , ,", False),
    ],
)
def test_no_proxy_matches(host: str, port: int, no_proxy: str, expected: bool) -> None:
    assert no_proxy_matches(host, port, no_proxy) is expected


def test_environment_ca_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not checked here")
    assert environment_ca_bundle({"SSL_CERT_FILE": str(bundle)}) == str(bundle)
    assert environment_ca_bundle({"SSL_CERT_FILE": str(tmp_path / "missing.pem")}) is None
    assert environment_ca_bundle({"SSL_CERT_FILE": str(tmp_path)}) is None  # a directory
    assert environment_ca_bundle({}) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://proxy:3128", ("http", "proxy", 3128, None, None)),
        ("http://proxy", ("http", "proxy", 80, None, None)),
        ("https://proxy", ("https", "proxy", 443, None, None)),
        ("HTTP://Proxy.Example:8080/", ("http", "proxy.example", 8080, None, None)),
        ("http://[::1]:3128", ("http", "::1", 3128, None, None)),
        ("http://u:p@proxy:1", ("http", "proxy", 1, "u", "p")),
        ("http://u%40corp:p%3A%40ss@proxy:1", ("http", "proxy", 1, "u@corp", "p:@ss")),
        ("http://u@proxy:1", ("http", "proxy", 1, "u", None)),
    ],
)
def test_proxy_url_parsing(url: str, expected: tuple[object, ...]) -> None:
    config = ProxyConfig.parse(url)
    assert (config.scheme, config.host, config.port, config.username, config.password) == (expected)


def test_basic_credentials_are_percent_decoded_utf8() -> None:
    config = ProxyConfig.parse("http://us%C3%A9r:p%40ss@proxy:1")
    assert config.authorization() == "Basic dXPDqXI6cEBzcw=="  # base64("usér:p@ss")
    assert repr(config) == "ProxyConfig('http://us%C3%A9r:****@proxy:1')"
    assert ProxyConfig.parse("http://proxy:1").authorization() is None


@pytest.mark.parametrize(
    "url",
    [
        f"user:{PASSWORD}@proxy:3128",
        f"socks5://user:{PASSWORD}@proxy:1080",
        f"http://user:{PASSWORD}@:3128",
        f"http://user:{PASSWORD}@proxy:99999",
        f"http://user:{PASSWORD}@proxy:3128/path",
        f"http://user:{PASSWORD}@proxy:3128?q",
        f"http://user:{PASSWORD}@proxy:port",
    ],
)
def test_invalid_proxy_urls(url: str) -> None:
    with pytest.raises(h2any.InvalidRequest) as info:
        ProxyConfig.parse(url)
    assert PASSWORD not in str(info.value)


def test_invalid_proxy_url_is_rejected_by_connection() -> None:
    with pytest.raises(h2any.InvalidRequest):
        h2any.Connection("http://127.0.0.1:1", proxy="ftp://proxy:21")


async def test_target_host_cannot_inject_into_the_connect_request() -> None:
    with anyio.fail_after(10):
        async with fake_proxy(b"HTTP/1.1 200 OK\r\n\r\n") as url:
            with pytest.raises(h2any.InvalidRequest):
                await open_tunnel(ProxyConfig.parse(url), Origin("http", "a\r\nX: y", 80), None)


def test_proxy_error_is_a_typed_connect_error() -> None:
    error = h2any.ProxyError("x", status=403, reason="Forbidden")
    assert isinstance(error, h2any.ConnectError)
    assert (error.status, error.reason, error.proxy_authenticate) == (403, "Forbidden", None)
    plain = h2any.ProxyError("y")
    assert (plain.status, plain.reason, plain.proxy_authenticate) == (None, "", None)
