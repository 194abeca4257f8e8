"""A framework-free ASGI app served by hypercorn in the test suite.

Routes (HTTP only; lifespan is accepted and completed):

* ``GET /headers`` -> JSON ``{"method", "path", "query_string", "headers": [[name, value]]}``
* ``POST|PUT /echo`` -> the request body, ``x-method`` and ``x-body-length`` headers
* ``POST /sha256`` -> JSON ``{"length": n, "sha256": hex}`` of the streamed request body
* ``GET /bytes/{n}`` -> ``n`` bytes where byte ``i`` is ``i % 251``; content-length set
* ``GET /stream?chunks=N&size=S&delay=D`` -> ``N`` chunks of ``S`` bytes (chunk ``i`` is
  ``S`` copies of the ASCII digit ``i % 10``), ``D`` seconds apart; no content-length
* ``GET /status/{code}`` -> that status, empty body
* ``GET /trailers`` -> body ``b"body"`` plus trailers ``x-checksum``/``x-trailer-2`` (only when
  the request carries ``te: trailers``; hypercorn drops trailers otherwise)
* ``GET /repeat-headers`` -> repeated ``set-cookie`` and ``x-multi`` headers, in wire order
* ``GET /slow-headers?delay=D[&signal=NAME]`` -> waits ``D`` seconds, then 200 ``b"slow"``;
  with ``signal``, first sets the ``threading.Event`` ``arrived(NAME)`` (tests in other
  threads learn that the request reached the server)
* ``GET /encoded/{coding}?n=N`` -> ``noisy_bytes(N)`` with that Content-Encoding (gzip,
  deflate, deflate-raw, br, zstd, gzip-br, truncated-gzip, corrupt-gzip, unknown; ``bomb``
  is N zero bytes gzipped)
* ``GET /push-page`` -> ``b"page"``, pushing ``/bytes/10`` and ``/bytes/20`` (hypercorn's push
  extension)
* ``POST /echo-chunks`` -> 200 headers at once, then each request body piece echoed as it
  arrives (full duplex); the response ends when the request does
* anything else -> 404
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import anyio

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_PATTERN = bytes(range(251))
_CHUNK = 1 << 20


class _Disconnected(Exception):
    """The client went away while we were reading the request body."""


_arrivals: dict[str, threading.Event] = {}


def arrived(name: str) -> threading.Event:
    """The event ``/slow-headers?signal=NAME`` sets when such a request arrives."""
    return _arrivals.setdefault(name, threading.Event())


def noisy_bytes(n: int) -> bytes:
    """``n`` deterministic, barely compressible bytes (the body of ``/encoded/...``)."""
    import random

    return random.Random(n).randbytes(n)


def pattern_bytes(n: int) -> bytes:
    """Return the deterministic ``/bytes/{n}`` payload (byte ``i`` is ``i % 251``)."""
    reps = n // len(_PATTERN) + 1
    return (_PATTERN * reps)[:n]


async def _body_chunks(receive: Receive) -> AsyncIterator[bytes]:
    """Yield request body pieces as they arrive."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        if chunk:
            yield bytes(chunk)
        if not message.get("more_body", False):
            return


async def _read_body(receive: Receive) -> bytes:
    """Buffer the whole request body."""
    parts = [chunk async for chunk in _body_chunks(receive)]
    return b"".join(parts)


async def _respond(
    send: Send,
    status: int,
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """Send a complete response with a content-length."""
    hdrs = list(headers or [])
    hdrs.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _json(send: Send, payload: object, status: int = 200) -> None:
    body = json.dumps(payload).encode()
    await _respond(send, status, body, [(b"content-type", b"application/json")])


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return {k: v[-1] for k, v in parse_qs(raw, keep_blank_values=True).items()}


def _request_header(scope: Scope, name: bytes) -> list[bytes]:
    return [bytes(v) for k, v in scope["headers"] if bytes(k).lower() == name]


async def lifespan(receive: Receive, send: Send) -> None:
    """Answer an ASGI lifespan scope: start-up and shutdown complete at once."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI entry point."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    try:
        await _dispatch(scope, receive, send)
    except _Disconnected:
        return


async def _dispatch(scope: Scope, receive: Receive, send: Send) -> None:
    method: str = scope["method"]
    path: str = scope["path"]
    parts = path.strip("/").split("/")

    if method == "GET" and path == "/headers":
        await _json(
            send,
            {
                "method": method,
                "path": path,
                "query_string": scope.get("query_string", b"").decode("latin-1"),
                "headers": [
                    [bytes(k).decode("latin-1"), bytes(v).decode("latin-1")]
                    for k, v in scope["headers"]
                ],
            },
        )
    elif method in ("POST", "PUT") and path == "/echo":
        body = await _read_body(receive)
        await _respond(
            send,
            200,
            body,
            [
                (b"content-type", b"application/octet-stream"),
                (b"x-method", method.encode()),
                (b"x-body-length", str(len(body)).encode()),
            ],
        )
    elif method == "POST" and path == "/sha256":
        digest = hashlib.sha256()
        length = 0
        async for chunk in _body_chunks(receive):
            digest.update(chunk)
            length += len(chunk)
        await _json(send, {"length": length, "sha256": digest.hexdigest()})
    elif method == "GET" and len(parts) == 2 and parts[0] == "bytes" and parts[1].isdigit():
        await _send_bytes(send, int(parts[1]))
    elif method == "GET" and path == "/stream":
        await _send_stream(scope, send)
    elif method == "GET" and len(parts) == 2 and parts[0] == "status" and parts[1].isdigit():
        await send({"type": "http.response.start", "status": int(parts[1]), "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    elif method == "GET" and path == "/trailers":
        await _send_trailers(scope, send)
    elif method == "GET" and path == "/repeat-headers":
        await _respond(
            send,
            200,
            b"repeat",
            [
                (b"set-cookie", b"a=1"),
                (b"set-cookie", b"b=2"),
                (b"x-multi", b"one"),
                (b"x-multi", b"two"),
                (b"Content-Type", b"text/plain"),
            ],
        )
    elif method == "GET" and path == "/push-page":
        # hypercorn's ASGI server-push extension: promise /bytes/10 and /bytes/20.
        if "http.response.push" in scope.get("extensions", {}):
            for pushed in ("/bytes/10", "/bytes/20"):
                await send({"type": "http.response.push", "path": pushed, "headers": []})
        await _respond(send, 200, b"page")
    elif method == "GET" and path.startswith("/encoded/"):
        await _send_encoded(path.removeprefix("/encoded/"), scope, send)
    elif method == "GET" and path == "/slow-headers":
        query = _query(scope)
        if "signal" in query:
            arrived(query["signal"]).set()
        await anyio.sleep(float(query.get("delay", "1")))
        await _respond(send, 200, b"slow")
    elif method == "POST" and path == "/echo-chunks":
        await _echo_chunks(receive, send)
    else:
        await _respond(send, 404, b"not found")


def encode_body(coding: str, body: bytes) -> tuple[bytes, bytes]:
    """``body`` encoded for ``/encoded/{coding}``; returns (content-encoding, payload)."""
    import gzip
    import zlib

    import brotli
    import zstandard

    if coding == "gzip":
        return b"gzip", gzip.compress(body, mtime=0)
    if coding == "deflate":
        return b"deflate", zlib.compress(body)
    if coding == "deflate-raw":
        raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return b"deflate", raw.compress(body) + raw.flush()
    if coding == "br":
        return b"br", brotli.compress(body)
    if coding == "zstd":
        return b"zstd", zstandard.ZstdCompressor().compress(body)
    if coding == "gzip-br":  # gzip applied first, then br
        return b"gzip, br", brotli.compress(gzip.compress(body, mtime=0))
    if coding == "truncated-gzip":
        return b"gzip", gzip.compress(body, mtime=0)[:-20]
    if coding == "corrupt-gzip":
        data = bytearray(gzip.compress(body, mtime=0))
        data[20:30] = b"\xff" * 10
        return b"gzip", bytes(data)
    if coding == "unknown":
        return b"compress", body
    raise ValueError(coding)


async def _send_encoded(coding: str, scope: Scope, send: Send) -> None:
    n = int(_query(scope).get("n", "100000"))
    body = b"\0" * n if coding == "bomb" else noisy_bytes(n)
    encoding, payload = encode_body("gzip" if coding == "bomb" else coding, body)
    headers = [(b"content-encoding", encoding), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for start in range(0, len(payload), 7000):  # several DATA frames
        chunk = payload[start : start + 7000]
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send_bytes(send: Send, n: int) -> None:
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(n).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    payload = pattern_bytes(min(n, _CHUNK + len(_PATTERN)))
    sent = 0
    while n - sent > _CHUNK:
        # _CHUNK is not a multiple of 251, so re-slice at the right phase.
        offset = sent % len(_PATTERN)
        await send(
            {
                "type": "http.response.body",
                "body": payload[offset : offset + _CHUNK],
                "more_body": True,
            }
        )
        sent += _CHUNK
    offset = sent % len(_PATTERN)
    last = payload[offset : offset + (n - sent)]
    await send({"type": "http.response.body", "body": last, "more_body": False})


async def _send_stream(scope: Scope, send: Send) -> None:
    query = _query(scope)
    chunks = int(query.get("chunks", "3"))
    size = int(query.get("size", "10"))
    delay = float(query.get("delay", "0"))
    headers = [(b"content-type", b"application/octet-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for i in range(chunks):
        if i and delay:
            await anyio.sleep(delay)
        chunk = str(i % 10).encode() * size
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _send_trailers(scope: Scope, send: Send) -> None:
    wants = b"trailers" in [v.lower() for v in _request_header(scope, b"te")]
    supported = "http.response.trailers" in scope.get("extensions", {})
    trailers = wants and supported
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain")],
            "trailers": trailers,
        }
    )
    await send({"type": "http.response.body", "body": b"body", "more_body": False})
    if trailers:
        await send(
            {
                "type": "http.response.trailers",
                "headers": [(b"x-checksum", b"abc"), (b"x-trailer-2", b"two")],
                "more_trailers": False,
            }
        )


async def _echo_chunks(receive: Receive, send: Send) -> None:
    headers = [(b"content-type", b"application/octet-stream")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    async for chunk in _body_chunks(receive):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
