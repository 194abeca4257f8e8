"""An ASGI app for the Client's request-side tests (redirects, forms, cookies, auth, hooks).

Served by hypercorn (h2c and TLS) through the ``client_servers`` fixture: two servers, so
four origins (``http://127.0.0.1:A``, ``https://localhost:A'``, ``http://127.0.0.1:B``, ...).

Routes (any method unless said):

* ``/inspect`` -> JSON ``{"method", "path", "query", "headers" (name -> list of values),
  "length", "sha256"}`` of the request, its body read as it streams in;
* ``/redirect?to=URL&status=N`` -> status ``N`` (302 by default) with ``Location: URL``, a
  short body; ``/chain/N`` -> 302 to ``/chain/N-1`` ... ``/chain/0`` -> 200 ``b"end"``;
* ``/form`` -> JSON of the urlencoded body (field -> list of values) and its content-type;
* ``/multipart`` -> JSON ``[{"name", "filename", "content_type", "length", "sha256"}]``
  of the multipart/form-data body, parsed with the standard library's ``email`` package;
* ``/set-cookie?c=SET-COOKIE&c=...`` -> 200 with each ``c`` as a Set-Cookie field;
* ``/basic``, ``/bearer``, ``/digest?algorithm=MD5|SHA-256[-sess]`` -> 200 JSON ``{"user": ...}``
  when the Authorization header holds ``alice``/``s3cret`` (or the token ``t0ken``), else
  401 with a ``WWW-Authenticate`` challenge; the digest check is RFC 7616 (qop=auth),
  done here against the client's answer;
* ``/stream-body?n=N`` -> ``N`` bytes in 1 KiB pieces, no content-length.
"""

from __future__ import annotations

import base64
import contextlib
import email.parser
import email.policy
import hashlib
import json
import os
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import pytest
from asgi_app import Receive, Scope, Send, lifespan
from conftest import STARTUP_DEADLINE, Certs, _can_connect, _HypercornThread, _PrebindConfig

USER, PASSWORD, TOKEN = "alice", "s3cret", "t0ken"
REALM = "h2any-tests"

# Digest nonces handed out (nonce -> algorithm); each may be answered once per nc value.
_nonces: dict[str, str] = {}


async def _body(receive: Receive) -> tuple[bytes, int]:
    chunks: list[bytes] = []
    pieces = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        chunk = message.get("body", b"")
        if chunk:
            pieces += 1
            chunks.append(bytes(chunk))
        if not message.get("more_body", False):
            return b"".join(chunks), pieces


class _Gone(Exception):
    pass


async def _respond(
    send: Send,
    status: int,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    fields = [*(headers or []), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": fields})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _json(send: Send, payload: object, status: int = 200, headers: Any = None) -> None:
    await _respond(
        send,
        status,
        json.dumps(payload).encode(),
        [(b"content-type", b"application/json"), *(headers or [])],
    )


def _headers(scope: Scope) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for name, value in scope["headers"]:
        result.setdefault(bytes(name).decode("latin-1").lower(), []).append(
            bytes(value).decode("latin-1")
        )
    return result


def _query(scope: Scope) -> dict[str, list[str]]:
    return parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI entry point."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    try:
        await _dispatch(scope, receive, send)
    except _Gone:
        return


async def _dispatch(scope: Scope, receive: Receive, send: Send) -> None:
    path: str = scope["path"]
    query = _query(scope)
    headers = _headers(scope)
    if path == "/inspect":
        body, pieces = await _body(receive)
        await _json(
            send,
            {
                "method": scope["method"],
                "path": path,
                "raw_path": scope.get("raw_path", b"").decode("latin-1"),
                "query": scope.get("query_string", b"").decode("latin-1"),
                "headers": headers,
                "length": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "pieces": pieces,
            },
        )
    elif path == "/redirect":
        await _body(receive)
        status = int(query.get("status", ["302"])[0])
        location = query["to"][0].encode()
        await _respond(send, status, b"moved", [(b"location", location)])
    elif path.startswith("/chain/"):
        await _body(receive)
        n = int(path.rsplit("/", 1)[1])
        if n == 0:
            await _respond(send, 200, b"end")
        else:
            await _respond(send, 302, b"", [(b"location", f"/chain/{n - 1}".encode())])
    elif path == "/form":
        body, _ = await _body(receive)
        await _json(
            send,
            {
                "content-type": headers.get("content-type", [""])[0],
                "fields": parse_qs(body.decode("ascii"), keep_blank_values=True),
            },
        )
    elif path == "/multipart":
        body, pieces = await _body(receive)
        await _json(send, {"parts": _parse_multipart(headers, body), "pieces": pieces})
    elif path == "/set-cookie":
        await _body(receive)
        fields = [(b"set-cookie", value.encode("latin-1")) for value in query.get("c", [])]
        await _respond(send, 200, b"set", fields)
    elif path == "/basic":
        await _body(receive)
        expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        if headers.get("authorization") == [expected]:
            await _json(send, {"user": USER})
        else:
            await _respond(
                send, 401, b"no", [(b"www-authenticate", f'Basic realm="{REALM}"'.encode())]
            )
    elif path == "/bearer":
        await _body(receive)
        if headers.get("authorization") == [f"Bearer {TOKEN}"]:
            await _json(send, {"user": "token"})
        else:
            await _respond(send, 401, b"no", [(b"www-authenticate", b"Bearer")])
    elif path == "/digest":
        await _body(receive)
        algorithm = query.get("algorithm", ["MD5"])[0]
        answer = headers.get("authorization", [""])[0]
        if answer.startswith("Digest ") and _digest_ok(scope, answer[7:]):
            await _json(send, {"user": USER})
        else:
            nonce = os.urandom(16).hex()
            _nonces[nonce] = algorithm
            challenge = (
                f'Digest realm="{REALM}", qop="auth", algorithm={algorithm}, '
                f'nonce="{nonce}", opaque="opaque-value"'
            )
            await _respond(send, 401, b"no", [(b"www-authenticate", challenge.encode())])
    elif path == "/stream-body":
        await _body(receive)
        n = int(query.get("n", ["0"])[0])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while n > 0:
            piece = min(n, 1024)
            n -= piece
            await send({"type": "http.response.body", "body": b"x" * piece, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    else:
        await _body(receive)
        await _respond(send, 404, b"not found")


def _parse_multipart(headers: dict[str, list[str]], body: bytes) -> list[dict[str, Any]]:
    content_type = headers.get("content-type", [""])[0]
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body
    )
    parts = []
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        assert isinstance(payload, bytes)
        parts.append(
            {
                "name": part.get_param("name", header="content-disposition"),
                "filename": part.get_filename(),
                "content_type": part.get("content-type"),
                "length": len(payload),
                "sha256": hashlib.sha256(payload).hexdigest(),
                "text": payload.decode("utf-8", "replace") if len(payload) < 100 else None,
            }
        )
    return parts


def _h(algorithm: str, text: str) -> str:
    name = "sha256" if algorithm.upper().startswith("SHA-256") else "md5"
    return hashlib.new(name, text.encode()).hexdigest()


def _digest_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for item in _split_commas(text):
        key, _, value = item.strip().partition("=")
        value = value.strip()
        if value.startswith('"') and value.endswith('"'):
            value = value[1:-1]
        fields[key.strip().lower()] = value
    return fields


def _split_commas(text: str) -> Iterator[str]:
    current, quoted = "", False
    for character in text:
        if character == '"':
            quoted = not quoted
        if character == "," and not quoted:
            yield current
            current = ""
        else:
            current += character
    if current.strip():
        yield current


def _digest_ok(scope: Scope, text: str) -> bool:
    fields = _digest_fields(text)
    algorithm = _nonces.get(fields.get("nonce", ""))
    if algorithm is None or fields.get("algorithm", "MD5").upper() != algorithm.upper():
        return False
    if fields.get("username") != USER or fields.get("realm") != REALM:
        return False
    if fields.get("qop") != "auth" or fields.get("opaque") != "opaque-value":
        return False
    uri = scope["path"]
    if scope.get("query_string"):
        uri += "?" + scope["query_string"].decode("latin-1")
    if fields.get("uri") != uri:
        return False
    ha1 = _h(algorithm, f"{USER}:{REALM}:{PASSWORD}")
    if algorithm.upper().endswith("-SESS"):
        ha1 = _h(algorithm, f"{ha1}:{fields['nonce']}:{fields.get('cnonce')}")
    ha2 = _h(algorithm, f"{scope['method']}:{uri}")
    expected = _h(
        algorithm,
        f"{ha1}:{fields['nonce']}:{fields.get('nc')}:{fields.get('cnonce')}:auth:{ha2}",
    )
    return fields.get("response") == expected


# -- servers ----------------------------------------------------------------------------------


@dataclass
class AppServer:
    """One hypercorn serving :func:`app`: ``http_url`` (h2c on 127.0.0.1) and ``https_url``
    (TLS on localhost)."""

    http_url: str
    https_url: str
    port_http: int
    port_https: int


class _AppThread(_HypercornThread):
    async def _main(self) -> None:
        import asyncio

        from hypercorn.asyncio import serve

        self._loop = asyncio.get_running_loop()
        self._shutdown = asyncio.Event()
        await serve(app, self.config, shutdown_trigger=self._shutdown.wait)  # type: ignore[arg-type]


@contextlib.contextmanager
def app_server(certs: Certs) -> Iterator[AppServer]:
    """Run hypercorn serving :func:`app` for the duration of the block."""
    config = _PrebindConfig()
    config.certfile = certs.cert_path
    config.keyfile = certs.key_path
    config.keep_alive_max_requests = 1_000_000_000
    config.graceful_timeout = 1.0
    config.accesslog = None
    config.errorlog = "-"
    thread = _AppThread(config)
    thread.start()
    try:
        if not config.bound.wait(STARTUP_DEADLINE) or config.sockets is None:
            thread.join(STARTUP_DEADLINE)
            raise RuntimeError(f"hypercorn failed to bind: {thread.error!r}")
        port_http = config.sockets.insecure_sockets[0].getsockname()[1]
        port_https = config.sockets.secure_sockets[0].getsockname()[1]
        import time

        deadline = time.monotonic() + STARTUP_DEADLINE
        while not _can_connect(port_http):
            thread.join(0.02)
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"hypercorn did not start listening: {thread.error!r}")
        yield AppServer(
            http_url=f"http://127.0.0.1:{port_http}",
            https_url=f"https://localhost:{port_https}",
            port_http=port_http,
            port_https=port_https,
        )
    finally:
        thread.stop()
        thread.join(STARTUP_DEADLINE)


Servers = MutableMapping[str, AppServer]


@pytest.fixture(scope="session")
def app_servers(certs: Certs) -> Iterator[tuple[AppServer, AppServer]]:
    """Two hypercorn servers running :func:`app` (two ports each: four origins)."""
    with app_server(certs) as one, app_server(certs) as two:
        yield one, two
