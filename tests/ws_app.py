"""An ASGI app for the WebSocket tests, and an in-process hypercorn that serves it.

hypercorn speaks WebSockets over HTTP/2 (RFC 8441: it announces
SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 and takes ``:method CONNECT`` + ``:protocol websocket``).

WebSocket routes:

* ``/echo``: accepts (choosing the first offered subprotocol it knows, ``SUBPROTOCOLS``)
  and sends every message back as it came (text as text, bytes as bytes); a text message
  ``"close:CODE:REASON"`` makes it close with that code instead.
* ``/close?code=N&reason=R``: accepts, then closes at once with that code and reason.
* ``/big?size=N``: accepts, sends one binary message of ``N`` bytes, then echoes.
* ``/burst?count=N&size=S``: accepts, sends ``N`` binary messages of ``S`` bytes, then
  echoes (a server that talks while the client does not read).
* ``/reject``: closes before accepting (hypercorn answers 403).
* ``/deny``: answers with an HTTP response of its own (401, ``www-authenticate``), through
  the ASGI ``websocket.http.response`` extension.
* ``/headers``: accepts and sends the handshake's request headers as a JSON text message.

HTTP routes: ``/hello`` (``hello``), ``/clients`` (a JSON list of the distinct client
addresses -- TCP connections -- this server has seen so far, WebSocket or HTTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from conftest import (
    STARTUP_DEADLINE,
    Certs,
    _can_connect,
    _HypercornThread,
    _listen_socket,
    _PrebindConfig,
)
from hypercorn.config import Sockets

SUBPROTOCOLS = ("chat.v2", "chat.v1")

Scope = dict[str, Any]

# Client addresses (one per TCP connection) seen by each server, by its port.
CLIENTS: dict[int, set[tuple[str, int]]] = {}
CLIENTS_LOCK = threading.Lock()


def _query(scope: Scope) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}


async def app(scope: Scope, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    client, server = scope.get("client"), scope.get("server")
    if client is not None and server is not None:
        with CLIENTS_LOCK:
            CLIENTS.setdefault(server[1], set()).add((client[0], client[1]))
    if scope["type"] == "http":
        await _http(scope, receive, send)
    else:
        await _websocket(scope, receive, send)


async def _http(scope: Scope, receive: Any, send: Any) -> None:
    while (await receive()).get("more_body"):
        pass
    if scope["path"] == "/clients":
        with CLIENTS_LOCK:
            body = json.dumps(sorted(CLIENTS.get(scope["server"][1], ()))).encode()
    else:
        body = b"hello"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def _websocket(scope: Scope, receive: Any, send: Any) -> None:
    path = scope["path"]
    query = _query(scope)
    connect = await receive()
    assert connect["type"] == "websocket.connect"
    if path == "/reject":
        await send({"type": "websocket.close", "code": 1008})
        return
    if path == "/deny":
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"www-authenticate", b'Bearer realm="ws"')],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"who are you?"})
        return
    chosen = next((p for p in scope["subprotocols"] if p in SUBPROTOCOLS), None)
    await send({"type": "websocket.accept", "subprotocol": chosen})
    if path == "/close":
        code = int(query.get("code", "1000"))
        await send({"type": "websocket.close", "code": code, "reason": query.get("reason", "")})
        return
    if path == "/headers":
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        await send({"type": "websocket.send", "text": json.dumps(headers)})
    elif path == "/big":
        await send({"type": "websocket.send", "bytes": b"b" * int(query["size"])})
    elif path == "/burst":
        size = int(query.get("size", "1024"))
        for n in range(int(query["count"])):
            await send({"type": "websocket.send", "bytes": n.to_bytes(4, "big") * (size // 4)})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is not None and text.startswith("close:"):
            _, code, reason = text.split(":", 2)
            await send({"type": "websocket.close", "code": int(code), "reason": reason})
            return
        if text is not None:
            await send({"type": "websocket.send", "text": text})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


# -- the server -------------------------------------------------------------------------


@dataclass
class WsServer:
    url: str
    port: int
    config: Any = field(repr=False)
    url_tls: str | None = None  # https://127.0.0.1:PORT when started with a certificate

    def clients(self) -> set[tuple[str, int]]:
        with CLIENTS_LOCK:
            return set(CLIENTS.get(self.port, ()))


class _LoopbackConfig(_PrebindConfig):
    """An h2c listening socket on 127.0.0.1, port 0, and a TLS one if a certificate is set."""

    def create_sockets(self) -> Sockets:
        try:
            secure = [_listen_socket(socket.AF_INET, "127.0.0.1", 0)] if self.certfile else []
            insecure = [_listen_socket(socket.AF_INET, "127.0.0.1", 0)]
            self.sockets = Sockets(secure, insecure, [])
            return self.sockets
        finally:
            self.bound.set()


class _WsHypercornThread(_HypercornThread):
    async def _main(self) -> None:
        from hypercorn.asyncio import serve

        self._loop = asyncio.get_running_loop()
        self._shutdown = asyncio.Event()
        await serve(app, self.config, shutdown_trigger=self._shutdown.wait)  # type: ignore[arg-type]


@contextlib.contextmanager
def ws_server(certs: Certs | None = None) -> Iterator[WsServer]:
    """hypercorn serving ``app`` over h2c on loopback (and over TLS too, with ``certs``)."""
    config = _LoopbackConfig()
    if certs is not None:
        config.certfile = certs.cert_path
        config.keyfile = certs.key_path
    config.accesslog = None
    config.errorlog = "-"
    config.graceful_timeout = 1.0
    config.keep_alive_max_requests = 1_000_000_000
    config.h2_max_concurrent_streams = 200
    thread = _WsHypercornThread(config)
    thread.start()
    try:
        if not config.bound.wait(STARTUP_DEADLINE) or config.sockets is None:
            thread.join(STARTUP_DEADLINE)
            raise RuntimeError(f"hypercorn failed to bind: {thread.error!r}")
        port = config.sockets.insecure_sockets[0].getsockname()[1]
        deadline = time.monotonic() + STARTUP_DEADLINE
        while not _can_connect(port):
            thread.join(0.02)
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"hypercorn did not start listening: {thread.error!r}")
        url_tls = None
        if config.sockets.secure_sockets:
            url_tls = f"https://127.0.0.1:{config.sockets.secure_sockets[0].getsockname()[1]}"
        yield WsServer(f"http://127.0.0.1:{port}", port, config, url_tls)
    finally:
        thread.stop()
        thread.join(STARTUP_DEADLINE)
        if thread.is_alive():
            raise RuntimeError("hypercorn did not shut down")
