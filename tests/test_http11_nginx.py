"""HTTP/1.1 fallback against nginx with HTTP/2 off, plain and over TLS.

nginx runs in the foreground (``daemon off``, one process) with a configuration of its own in
a temporary prefix, its error log on stderr, serving the tests' docroot. Each response carries
``x-connection`` (nginx's connection serial number), so keep-alive reuse is counted on the
server's side. Skipped, with the reason, only when no nginx binary is installed.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from conftest import POLL_INTERVAL, _can_connect

import h2any
import h2any.sync

pytestmark = pytest.mark.anyio

GUARD = 20
STARTUP_DEADLINE = 10.0

CONFIG = """
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 128; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000;
    client_max_body_size 64m;
    server {{
        listen 127.0.0.1:{port};
        listen 127.0.0.1:{tls_port} ssl;
        server_name localhost;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        root {docroot};
        add_header x-connection $connection always;
        location = /upload {{
            return 200 "got $content_length";
        }}
    }}
}}
"""


@dataclass
class Nginx:
    url: str
    url_tls: str
    process: subprocess.Popen[bytes]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def nginx(tmp_path_factory: pytest.TempPathFactory, certs, docroot) -> Iterator[Nginx]:
    """nginx with HTTP/2 off: ``url`` plain HTTP/1.1, ``url_tls`` HTTPS offering only
    ``http/1.1`` in ALPN."""
    binary = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )
    if binary is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    prefix = tmp_path_factory.mktemp("nginx")
    port, tls_port = _free_port(), _free_port()
    config = prefix / "nginx.conf"
    config.write_text(
        CONFIG.format(
            prefix=prefix,
            port=port,
            tls_port=tls_port,
            cert=certs.cert_path,
            key=certs.key_path,
            docroot=docroot.path,
        )
    )
    process = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(config), "-e", "stderr"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + STARTUP_DEADLINE
        while not (_can_connect(port) and _can_connect(tls_port)):
            if process.poll() is not None:
                stderr = process.stderr.read().decode() if process.stderr else ""
                raise RuntimeError(f"nginx exited at start: {stderr}")
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not start listening")
            try:
                process.wait(timeout=POLL_INTERVAL)  # doubles as the poll delay
            except subprocess.TimeoutExpired:
                pass
        yield Nginx(f"http://127.0.0.1:{port}", f"https://localhost:{tls_port}", process)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        if process.stderr is not None:
            process.stderr.close()


async def test_plain_nginx_falls_back_and_keeps_the_connection_alive(nginx, docroot) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client() as client:
            seen = set()
            for _ in range(5):
                response = await client.get(f"{nginx.url}/hello.txt")
                assert response.http_version == "HTTP/1.1"
                assert await response.read() == b"hello, world\n"
                seen.add(response.headers["x-connection"])
            assert len(seen) == 1  # one connection on the server's side
            assert client.connections_opened == 1


async def test_connection_alone_names_nginx_http11_answer(nginx) -> None:
    with anyio.fail_after(GUARD):
        with pytest.raises(h2any.HTTPVersionError) as info:
            async with h2any.Connection(nginx.url):
                pytest.fail("connected")
    assert info.value.origin == nginx.url


async def test_tls_nginx_alpn_picks_http11(nginx, certs, docroot) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client(verify=certs.ca_path) as client:
            seen = set()
            for _ in range(3):
                response = await client.get(f"{nginx.url_tls}/1m.bin")
                assert response.http_version == "HTTP/1.1"
                body = await response.read()
                assert hashlib.sha256(body).hexdigest() == docroot.sha256["1m.bin"]
                seen.add(response.headers["x-connection"])
            assert len(seen) == 1
            assert client.connections_opened == 1


async def test_tls_nginx_refused_with_http1_false(nginx, certs) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client(verify=certs.ca_path, http1=False) as client:
            with pytest.raises(h2any.HTTPVersionError, match="http1=False") as info:
                await client.get(f"{nginx.url_tls}/hello.txt")
            assert info.value.origin == nginx.url_tls


async def test_streamed_download_and_upload_over_tls(nginx, certs, docroot) -> None:
    async def pieces() -> object:
        for _ in range(20):
            yield b"z" * 100_000

    with anyio.fail_after(GUARD):
        async with h2any.Client(verify=certs.ca_path) as client:
            async with client.stream("GET", f"{nginx.url_tls}/16m.bin") as response:
                digest = hashlib.sha256()
                async for chunk in response.aiter_bytes():
                    digest.update(chunk)
                assert digest.hexdigest() == docroot.sha256["16m.bin"]
            response = await client.post(f"{nginx.url_tls}/upload", body=b"a" * 12345)
            assert await response.read() == b"got 12345"
            # nginx takes a chunked request body too.
            response = await client.post(f"{nginx.url_tls}/upload", body=pieces())
            assert response.status == 200
            await response.read()
            assert client.connections_opened == 1


async def test_parallel_requests_use_at_most_the_pool_bound(nginx) -> None:
    with anyio.fail_after(GUARD):
        async with h2any.Client(max_http1_connections_per_origin=4) as client:
            seen: set[str] = set()

            async def fetch() -> None:
                response = await client.get(f"{nginx.url}/1m.bin")
                await response.read()
                seen.add(response.headers["x-connection"])

            async with anyio.create_task_group() as tg:
                for _ in range(16):
                    tg.start_soon(fetch)
            assert 1 <= len(seen) <= 4


def test_sync_client_against_nginx(nginx) -> None:
    with h2any.sync.Client() as client:
        response = client.request("GET", f"{nginx.url}/hello.txt")
        assert response.read() == b"hello, world\n"
        assert response.http_version == "HTTP/1.1"
