"""The stand-in internet of the documentation examples (used by ``tests/test_docs.py``).

The examples in ``README.md`` and ``docs/*.md`` talk to ``https://example.org`` and a few
other made-up hosts. The test suite runs them unchanged against local peers instead:

* **the origin** -- hypercorn over TLS (ALPN ``h2``) on a loopback port, serving
  :func:`origin_app`, with a certificate for every name in :data:`ORIGIN_NAMES` issued by a
  throwaway CA;
* **the proxy** -- a minimal HTTP CONNECT proxy on another loopback port, standing in for
  ``proxy.corp``; it tunnels to the origin whatever origin name it is asked for.

:mod:`docs_runner` (in the example's process) connects to these ports for those names and
trusts the throwaway CA in place of certifi's roots, as a hosts file and a corporate CA
would. It also fills the example's working directory with the files the examples name
(:data:`WORKDIR_FILES`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
from asgi_app import lifespan
from hypercorn.config import Config, Sockets

#: Host names served by the origin (any port).
ORIGIN_NAMES = ("example.org", "internal.example.org", "wiki.corp.example")
#: Host names served by the CONNECT proxy (any port).
PROXY_NAMES = ("proxy.corp",)
#: ``/big``: a body large enough to arrive in many DATA frames.
BIG_SIZE = 1 << 20
#: Paths pushed with ``GET /`` when the client accepts server push.
PUSHED = ("/style.css", "/script.js")
STARTUP_DEADLINE = 10.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_PAGE = b"<!doctype html>\n<title>Example Domain</title>\n<h1>Example Domain</h1>\n"
_STATIC = {
    "/style.css": (b"text/css", b"h1 { font-family: sans-serif }\n"),
    "/script.js": (b"text/javascript", b"console.log('hello')\n"),
}


# -- the origin ---------------------------------------------------------------------------


async def origin_app(scope: Scope, receive: Receive, send: Send) -> None:
    """What ``https://example.org`` serves to the examples.

    * ``GET /`` -- a small HTML page; pushes :data:`PUSHED` when the client enables push;
    * ``GET /style.css``, ``GET /script.js`` -- what ``/`` pushes;
    * ``GET /big`` -- :data:`BIG_SIZE` bytes, in 64 KiB pieces;
    * ``POST|PUT /upload`` -- reads the body as it streams in and answers JSON
      ``{"received": bytes, "content-length": header or null}``;
    * ``GET /trickle`` -- a body that never ends: one byte every 10 ms;
    * anything else -- 404.
    """
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    assert scope["type"] == "http"
    method, path = scope["method"], scope["path"]
    if method == "GET" and path == "/":
        if "http.response.push" in scope.get("extensions", {}):
            for pushed in PUSHED:  # hypercorn adds :scheme and :authority (from host)
                await send({"type": "http.response.push", "path": pushed, "headers": []})
        await _respond(send, 200, _PAGE, b"text/html; charset=utf-8")
    elif method == "GET" and path in _STATIC:
        content_type, body = _STATIC[path]
        await _respond(send, 200, body, content_type)
    elif method == "GET" and path == "/big":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/octet-stream"),
                    (b"content-length", str(BIG_SIZE).encode()),
                ],
            }
        )
        piece = b"x" * 65536
        for _ in range(BIG_SIZE // len(piece) - 1):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": piece, "more_body": False})
    elif method == "GET" and path == "/trickle":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while True:  # until the client goes away (hypercorn then cancels this task)
            await send({"type": "http.response.body", "body": b".", "more_body": True})
            await asyncio.sleep(0.01)
    elif method in ("POST", "PUT") and path == "/upload":
        received = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            received += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        length = dict(scope["headers"]).get(b"content-length")
        answer = {"received": received, "content-length": length and int(length)}
        await _respond(send, 200, json.dumps(answer).encode(), b"application/json")
    else:
        await _respond(send, 404, b"Not Found\n", b"text/plain")


async def _respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


# -- the proxy ----------------------------------------------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


def _connect_proxy(origin_port: int, tunnels: list[str]) -> Callable[..., Awaitable[None]]:
    """A CONNECT-only proxy: ``CONNECT <origin name>:<port>`` tunnels to the origin.

    Each tunnel's target (``host:port``) is appended to ``tunnels``.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            host = target.rpartition(":")[0].strip("[]")
            if method != "CONNECT" or host not in ORIGIN_NAMES:
                writer.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n")
                return
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", origin_port
            )
            tunnels.append(target)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        except (OSError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(OSError):
                writer.close()

    return handle


# -- the network --------------------------------------------------------------------------


def _listening_socket() -> socket.socket:
    """A TCP socket on a free loopback port, already listening (so no startup race)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _OriginConfig(Config):
    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._socket = sock

    def create_sockets(self) -> Sockets:
        return Sockets([self._socket], [], [])


@dataclass
class DocsNetwork:
    """The running origin and proxy, and the files the examples expect to find."""

    origin_port: int
    proxy_port: int
    ca_path: Path
    workdir: Path
    tunnels: list[str] = field(default_factory=list)
    """The targets of the proxy's tunnels so far (``host:port``)."""

    def environ(self) -> dict[str, str]:
        """What :mod:`docs_runner` reads: ``H2ANY_DOCS_NETWORK`` (JSON)."""
        hosts = {name: self.origin_port for name in ORIGIN_NAMES}
        hosts.update({name: self.proxy_port for name in PROXY_NAMES})
        return {"H2ANY_DOCS_NETWORK": json.dumps({"hosts": hosts, "ca": str(self.ca_path)})}


#: Files in the examples' working directory: the CA (``my-ca.pem``), a client certificate
#: with its key (``me.pem``) and 1 MiB to upload (``video.mp4``).
WORKDIR_FILES = ("my-ca.pem", "me.pem", "video.mp4")


@contextlib.contextmanager
def docs_network(directory: Path) -> Any:
    """Start the origin and the proxy for the duration of a ``with`` block."""
    ca = trustme.CA()
    server = ca.issue_cert(*ORIGIN_NAMES)
    client = ca.issue_cert("me.example.org")
    ca_path = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert_path, key_path = directory / "origin.pem", directory / "origin-key.pem"
    cert_path.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    server.private_key_pem.write_to_path(str(key_path))
    workdir = directory / "workdir"
    workdir.mkdir()
    ca.cert_pem.write_to_path(str(workdir / "my-ca.pem"))
    (workdir / "me.pem").write_bytes(
        client.private_key_pem.bytes() + b"".join(b.bytes() for b in client.cert_chain_pems)
    )
    (workdir / "video.mp4").write_bytes(bytes(range(256)) * 4096)  # 1 MiB

    origin_socket, proxy_socket = _listening_socket(), _listening_socket()
    config = _OriginConfig(origin_socket)
    config.certfile, config.keyfile = str(cert_path), str(key_path)
    config.ca_certs = str(ca_path)  # client certificates (optional) must come from the CA
    config.verify_mode = ssl.CERT_OPTIONAL
    config.keep_alive_max_requests = 1_000_000_000
    config.graceful_timeout = 1.0
    config.accesslog = None
    config.errorlog = "-"
    network = DocsNetwork(
        origin_port=origin_socket.getsockname()[1],
        proxy_port=proxy_socket.getsockname()[1],
        ca_path=ca_path,
        workdir=workdir,
    )
    thread = _NetworkThread(config, proxy_socket, network)
    thread.start()
    try:
        if not thread.ready.wait(STARTUP_DEADLINE):
            raise RuntimeError("the docs network did not start")
        if thread.error is not None:
            raise thread.error
        yield network
    finally:
        thread.stop()
        thread.join(STARTUP_DEADLINE)
        origin_socket.close()
        proxy_socket.close()
        if thread.is_alive():
            raise RuntimeError("the docs network did not shut down")
        if thread.error is not None:
            raise thread.error


def _ignore_cancellation(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # At shutdown, Python 3.11's asyncio.streams reports connections cancelled mid-way as
    # "Exception in callback ... CancelledError"; that is the shutdown working, not an error.
    if not isinstance(context.get("exception"), asyncio.CancelledError):
        loop.default_exception_handler(context)


class _NetworkThread(threading.Thread):
    """hypercorn and the proxy, on one asyncio loop of their own."""

    def __init__(self, config: Config, proxy_socket: socket.socket, network: DocsNetwork) -> None:
        super().__init__(name="docs-network", daemon=True)
        self.config = config
        self.proxy_socket = proxy_socket
        self.network = network
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self.error = exc
        finally:
            self.ready.set()

    async def _main(self) -> None:
        from hypercorn.asyncio import serve

        self._loop = asyncio.get_running_loop()
        self._loop.set_exception_handler(_ignore_cancellation)
        self._shutdown = asyncio.Event()
        proxy = await asyncio.start_server(
            _connect_proxy(self.network.origin_port, self.network.tunnels), sock=self.proxy_socket
        )
        async with proxy:
            self.ready.set()  # both sockets were listening already: connections queue
            await serve(origin_app, self.config, shutdown_trigger=self._shutdown.wait)  # type: ignore[arg-type]

    def stop(self) -> None:
        loop, event = self._loop, self._shutdown
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
                loop.call_soon_threadsafe(event.set)
