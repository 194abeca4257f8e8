"""httpx transports over h2any: keep httpx's API, get h2any's HTTP/2.

```python
import httpx
import h2any.httpx

async with httpx.AsyncClient(transport=h2any.httpx.AsyncTransport()) as client:
    response = await client.get("https://example.org/")

with httpx.Client(transport=h2any.httpx.Transport()) as client:
    response = client.get("https://example.org/")
```

[`AsyncTransport`][h2any.httpx.AsyncTransport] sends each request through an
[`h2any.Client`][h2any.Client] (its pool, its retries of requests the server never
processed, its HTTP/1.1 fallback); [`Transport`][h2any.httpx.Transport] does the same from
threads, through the blocking facade [`h2any.sync.Client`][h2any.sync.Client]. httpx keeps
what is httpx's: redirects, cookies, auth, event hooks and content decoding happen in httpx,
and the transport sends exactly one request per call.

This module needs httpx (``pip install 'h2any[httpx]'``); ``import h2any`` alone never
imports it.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Literal, final

import anyio

try:
    import httpx
except ImportError as exc:  # pragma: no cover (the tests have httpx)
    raise ImportError(
        "h2any.httpx needs httpx: pip install 'h2any[httpx]' (or httpx>=0.27)"
    ) from exc

from ._client import Client as _AsyncClient
from ._config import Origin, RetryPolicy, Timeout
from ._exceptions import (
    ConnectError,
    ConnectionClosed,
    ConnectionTerminated,
    ConnectTimeout,
    DecodingError,
    H2anyError,
    InvalidRequest,
    PoolTimeout,
    ProtocolError,
    ProxyError,
    ReadTimeout,
    StreamReset,
    WriteTimeout,
)
from ._exceptions import TimeoutError as _TimeoutError
from ._flow import BaseFlowControlManager
from ._headers import Headers, headers_from_wire, kept_block
from ._response import Response as _AsyncResponse
from ._response import body_arrived
from .sync._client import Client as _SyncClient
from .sync._connection import Response as _SyncResponse
from .sync._connection import with_complete_body

if TYPE_CHECKING:
    from .sync._portal import LoopThread

__all__ = ("TRAILERS", "AsyncTransport", "Transport")

# Theory of operation
#
# * One request = one call of the Client's one-origin seam (``Client._send``): the pool picks
#   or opens the connection and retries what the server never processed; nothing of the
#   Client's own redirect/cookie/auth/hook layer runs (httpx does those, and doing them twice
#   would send cookies twice and follow redirects behind httpx's back).
# * The async Client owns a task group for its connection tasks, and a task group must be
#   entered and left by one task. httpx calls a transport from whatever task sends a request,
#   and a user may never enter the httpx client (``client = httpx.AsyncClient(...)`` at
#   module level, closed later with ``aclose()``). So the Client lives in a *host task* of
#   its own, started on the first request: an asyncio task, or a trio system task. Requests
#   still run in the caller's task (cancelling it resets its stream); only connection tasks
#   run in the host. ``aclose()`` (which httpx calls when its client closes) stops the host
#   and waits for it: no task or socket outlives the httpx client. A host left running when
#   the event loop ends is cancelled with the loop's other tasks, closing its connections;
#   the host remembers its loop, and a request made in another one starts a new host there.
# * The connect timeout of a new connection is the Client's, made with the first request's
#   timeouts (the Client has no per-request connect timeout: see the docs page).
# * Bodies: httpx's byte streams are handed over as iterables (pieces sent as the flow-control
#   windows allow: bounded memory); a body httpx holds in memory (``content=``) goes as bytes,
#   so that a retry on a fresh connection can send it again. Response bodies are passed on raw
#   (``decode_content=False``): httpx decodes ``Content-Encoding`` itself.

#: The key of a response's ``extensions`` that holds its trailers (an ``httpx.Headers``),
#: once the body has been read to its end and if the server sent any.
TRAILERS = "trailers"

_get_running_loop = asyncio.get_running_loop

_HTTP_VERSIONS = {"HTTP/2": b"HTTP/2", "HTTP/1.1": b"HTTP/1.1", "HTTP/1.0": b"HTTP/1.0"}
# Fields of HTTP/1.1 framing that httpx adds (or a user may) and HTTP/2 forbids (RFC 9113
# section 8.2.2); the Client frames the message itself, over HTTP/2 or HTTP/1.1.
_HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
# Timeout objects and origins already built, keyed by what they were built from (httpx sends
# the same few again and again); bounded.
_CACHE_LIMIT = 256
CertTypes = str | tuple[str, str] | tuple[str, str, str]
ProxyTypes = str | httpx.URL | httpx.Proxy


# --------------------------------------------------------------------------- options


def _proxy_url(proxy: ProxyTypes | None) -> str | None:
    """The proxy URL h2any takes (credentials as userinfo) for httpx's ways of naming one."""
    if proxy is None:
        return None
    if isinstance(proxy, httpx.Proxy):
        if proxy.ssl_context is not None:
            raise ValueError("h2any.httpx: httpx.Proxy(ssl_context=...) is not supported")
        extra = [name for name in proxy.headers if name.lower() != "proxy-authorization"]
        if extra:
            raise ValueError(
                f"h2any.httpx: httpx.Proxy(headers=...) is not supported (got {sorted(extra)})"
            )
        url = proxy.url
        if proxy.auth is not None:
            url = url.copy_with(username=proxy.auth[0], password=proxy.auth[1])
        return str(url)
    return str(proxy)


def _client_options(
    *,
    verify: ssl.SSLContext | str | bool,
    cert: CertTypes | None,
    proxy: ProxyTypes | None,
    trust_env: bool,
    http1: bool,
    http2: bool,
    max_connections_per_origin: int,
    keepalive_expiry: float | None,
    retries: RetryPolicy | int | None,
    retry_timeout: float | None,
    window_manager: type[BaseFlowControlManager] | None,
    initial_window_size: int | None,
    connection_window_size: int | None,
    max_concurrent_streams: int | None,
    keepalive_interval: float | None,
    engine: str | None,
) -> dict[str, Any]:
    """The keyword arguments of the [`h2any.Client`][h2any.Client] behind a transport
    (checked now: a bad option fails here, not on the first request)."""
    options: dict[str, Any] = {
        "verify": verify,
        "trust_env": trust_env,
        "max_connections_per_origin": max_connections_per_origin,
        "keepalive_expiry": keepalive_expiry,
        "retries": retries,
        "retry_timeout": retry_timeout,
    }
    optional = {
        "cert": cert,
        "proxy": _proxy_url(proxy),
        "window_manager": window_manager,
        "initial_window_size": initial_window_size,
        "connection_window_size": connection_window_size,
        "max_concurrent_streams": max_concurrent_streams,
        "keepalive_interval": keepalive_interval,
        "engine": engine,
    }
    options.update((name, value) for name, value in optional.items() if value is not None)
    options["http1"] = http1
    options["http2"] = http2
    # The transport sends through the Client's one-origin seam, below its redirects, cookies
    # and auth; off all the same, so that nothing of them ever runs twice.
    options["follow_redirects"] = False
    if verify is True and trust_env:
        del options["verify"]  # the Client then honours SSL_CERT_FILE, as httpx does
    _AsyncClient(**options)  # raises on a bad option (no I/O)
    return options


def _positive(value: object) -> float | None:
    if value is None:
        return None
    seconds = float(value)  # type: ignore[arg-type]
    # httpx allows 0 ("fail at once"); h2any's Timeout wants a positive number or None.
    return seconds if seconds > 0 else 1e-9


_timeouts: dict[tuple[object, ...], Timeout] = {}


def _timeout_of(request: httpx.Request) -> Timeout:
    """h2any's [`Timeout`][h2any.Timeout] for httpx's ``request.extensions["timeout"]``."""
    given = request.extensions.get("timeout")
    if not given:
        given = {}
    key = (given.get("connect"), given.get("read"), given.get("write"), given.get("pool"))
    timeout = _timeouts.get(key)
    if timeout is None:
        timeout = Timeout(
            None,
            connect=_positive(key[0]),
            read=_positive(key[1]),
            write=_positive(key[2]),
            pool=_positive(key[3]),
        )
        if len(_timeouts) >= _CACHE_LIMIT:
            _timeouts.clear()
        _timeouts[key] = timeout
    return timeout


_origins: dict[tuple[str, bytes, int | None], Origin] = {}


def _origin_of(request: httpx.Request) -> Origin:
    url = request.url
    scheme = url.scheme
    key = (scheme, url.raw_host, url.port)
    origin = _origins.get(key)
    if origin is None:
        if scheme not in ("http", "https"):
            if not scheme:
                message = f"request URL {url!r} is missing an 'http://' or 'https://' protocol"
            else:
                message = f"request URL {url!r} has an unsupported protocol {scheme + '://'!r}"
            raise httpx.UnsupportedProtocol(message, request=request)
        try:
            origin = Origin.parse(f"{scheme}://{url.netloc.decode('ascii')}")
        except InvalidRequest as exc:
            raise httpx.LocalProtocolError(str(exc), request=request) from exc
        if len(_origins) >= _CACHE_LIMIT:
            _origins.clear()
        _origins[key] = origin
    return origin


def _converted_headers(raw: list[tuple[bytes, bytes]]) -> Headers:
    """A request's header fields (httpx's ``headers.raw``) for h2any: names lowercased,
    HTTP/1.1 framing dropped (``Host`` is kept: h2any sends it as ``:authority``)."""
    fields = []
    for name, value in raw:
        name = name.lower()
        if name in _HOP_BY_HOP or (name == b"te" and value.lower() != b"trailers"):
            continue
        fields.append((name, value))
    return headers_from_wire(fields)


# A transport keeps the header blocks it converted (``kept_block``; per transport, so that no
# credentials outlive it).


def _response_headers(
    cache: dict[tuple[tuple[bytes, bytes], ...], httpx.Headers], response: _AsyncResponse
) -> httpx.Headers:
    """The response's header fields as ``httpx.Headers``, from ``cache`` when the same block
    came before (httpx.Response copies what it is given: the kept one is never changed)."""
    return kept_block(cache, response.headers.raw, httpx.Headers)


def _cached_headers(
    cache: dict[tuple[tuple[bytes, bytes], ...], Headers], request: httpx.Request
) -> Headers:
    """The request's header fields for h2any, from ``cache`` when the same block was converted
    before ([`Headers`][h2any.Headers] are immutable: one object serves every request)."""
    return kept_block(cache, request.headers.raw, _converted_headers)


# --------------------------------------------------------------------------- errors


def _mapped(exc: H2anyError, request: httpx.Request, *, writing: bool = False) -> Exception:
    """The httpx exception a user of httpx would catch for ``exc``."""
    message = str(exc) or type(exc).__name__
    kind: type[httpx.RequestError]
    if isinstance(exc, _TimeoutError):
        if isinstance(exc, ConnectTimeout):
            kind = httpx.ConnectTimeout
        elif isinstance(exc, ReadTimeout):
            kind = httpx.ReadTimeout
        elif isinstance(exc, WriteTimeout):
            kind = httpx.WriteTimeout
        elif isinstance(exc, PoolTimeout):
            kind = httpx.PoolTimeout
        else:
            kind = httpx.TimeoutException
    elif isinstance(exc, ProxyError):
        kind = httpx.ProxyError
    elif isinstance(exc, ConnectError):  # TLSError and HTTPVersionError too
        kind = httpx.ConnectError
    elif isinstance(exc, InvalidRequest):
        kind = httpx.LocalProtocolError
    elif isinstance(exc, DecodingError):
        kind = httpx.DecodingError
    elif isinstance(exc, (ProtocolError, StreamReset, ConnectionTerminated)):
        kind = httpx.RemoteProtocolError
    elif isinstance(exc, ConnectionClosed):
        kind = httpx.WriteError if writing else httpx.ReadError
    else:
        kind = httpx.TransportError
    error = kind(message, request=request)
    error.__cause__ = exc
    return error


# --------------------------------------------------------------------------- request bodies


@final
class _AsyncUpload:
    """httpx's async request stream as an async iterable for h2any, noting whether it
    ended (a connection lost before that is a write error)."""

    __slots__ = ("_iterator", "_stream", "done")

    def __init__(self, stream: httpx.AsyncByteStream) -> None:
        self._stream = stream
        self._iterator: AsyncIterator[bytes] | None = None
        self.done = False

    def __aiter__(self) -> _AsyncUpload:
        self._iterator = self._stream.__aiter__()
        return self

    async def __anext__(self) -> bytes:
        assert self._iterator is not None
        try:
            return await self._iterator.__anext__()
        except StopAsyncIteration:
            self.done = True
            raise

    async def aclose(self) -> None:
        aclose = getattr(self._iterator, "aclose", None)
        if aclose is not None:
            await aclose()


@final
class _SyncUpload:
    """httpx's sync request stream as an iterable for h2any (read in worker threads)."""

    __slots__ = ("_iterator", "_stream", "done")

    def __init__(self, stream: httpx.SyncByteStream) -> None:
        self._stream = stream
        self._iterator: Iterator[bytes] | None = None
        self.done = False

    def __iter__(self) -> _SyncUpload:
        self._iterator = iter(self._stream)
        return self

    def __next__(self) -> bytes:
        assert self._iterator is not None
        try:
            return next(self._iterator)
        except StopIteration:
            self.done = True
            raise


def _in_memory(request: httpx.Request) -> bytes | None:
    """The body, if httpx holds it in memory (``content=``, ``json=``, forms), else None."""
    stream = request.stream
    if isinstance(stream, httpx.ByteStream):
        # One piece, already in memory (request.content is not set on every such request:
        # httpx's redirects build theirs without reading it).
        try:
            return request.content
        except httpx.RequestNotRead:
            return b"".join(stream)
    return None


# --------------------------------------------------------------------------- responses


def _response_extensions(response: _AsyncResponse) -> dict[str, Any]:
    version = response.http_version
    extensions: dict[str, Any] = {
        "http_version": _HTTP_VERSIONS.get(version) or version.encode("ascii", "replace"),
        "stream_id": response.stream_id,
    }
    if version != "HTTP/2":
        # HTTP/2 has no reason phrase: without the key httpx gives the standard one.
        extensions["reason_phrase"] = response.reason_phrase.encode("ascii", "replace")
    return extensions


def _store_trailers(target: httpx.Response | None, trailers: Headers | None) -> None:
    if target is not None and trailers is not None:
        target.extensions[TRAILERS] = httpx.Headers(trailers.raw)


@final
class _AsyncResponseStream(httpx.AsyncByteStream):
    """A response body for httpx: raw chunks as they arrive; closing it early resets the
    stream."""

    def __init__(self, response: _AsyncResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request
        self._chunks: AsyncIterator[bytes] | None = None
        self.httpx_response: httpx.Response | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._chunks = self._response.aiter_bytes(decode_content=False)
        return self

    async def __anext__(self) -> bytes:
        chunks = self._chunks
        assert chunks is not None
        try:
            return await chunks.__anext__()
        except StopAsyncIteration:
            _store_trailers(self.httpx_response, self._response.trailers)
            raise
        except H2anyError as exc:
            raise _mapped(exc, self._request) from exc

    async def aclose(self) -> None:
        response = self._response
        if not response.is_complete:  # (a complete one has nothing to release)
            await response.aclose()


@final
class _ArrivedBody(httpx.AsyncByteStream):
    """A response body that had arrived whole with the headers: one piece, nothing to
    reset on close."""

    __slots__ = ("_body",)

    def __init__(self, body: bytes) -> None:
        self._body: bytes | None = body

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        body, self._body = self._body, None
        if not body:
            raise StopAsyncIteration
        return body


@final
class _SyncResponseStream(httpx.SyncByteStream):
    """A response body for httpx, from the blocking facade."""

    def __init__(self, response: _SyncResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request
        self.httpx_response: httpx.Response | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._response.iter_bytes(decode_content=False)
        except H2anyError as exc:
            raise _mapped(exc, self._request) from exc
        _store_trailers(self.httpx_response, self._response.trailers)

    def close(self) -> None:
        self._response.close()


# --------------------------------------------------------------------------- async


def _current_loop() -> object:
    """The running event loop: the asyncio loop, or trio's run (its token)."""
    try:
        return _get_running_loop()
    except RuntimeError:  # not asyncio: anyio's other backend, trio
        import trio

        return trio.lowlevel.current_trio_token()


class _Host:
    """The task that hosts an [`h2any.Client`][h2any.Client] (see the module's notes)."""

    def __init__(self, client: _AsyncClient, loop: object) -> None:
        self.client = client
        self.loop = loop
        self.ready = anyio.Event()
        self.stop = anyio.Event()
        self.done = anyio.Event()
        self.error: BaseException | None = None
        # True while the Client is up (entered, not yet left): requests take it at once.
        self.live = False
        self._task: object = None  # the asyncio task, kept referenced

    async def start(self) -> None:
        if isinstance(self.loop, asyncio.AbstractEventLoop):
            self._task = self.loop.create_task(self._run())
        else:
            import trio

            trio.lowlevel.spawn_system_task(self._run)
        await self.ready.wait()
        if self.error is not None:
            raise RuntimeError("the transport's h2any.Client failed to start") from self.error

    async def _run(self) -> None:
        try:
            async with self.client:
                self.live = True
                self.ready.set()
                await self.stop.wait()
        except BaseException as exc:
            # A trio system task must not raise (trio would end the run with an internal
            # error); a cancellation (the event loop ending) simply ends the host.
            if not isinstance(exc, anyio.get_cancelled_exc_class()):
                self.error = exc
        finally:
            self.live = False
            self.ready.set()
            self.done.set()

    async def aclose(self) -> None:
        self.stop.set()
        with anyio.CancelScope(shield=True):
            await self.done.wait()


class AsyncTransport(httpx.AsyncBaseTransport):
    """An httpx transport (``httpx.AsyncClient(transport=...)``) that sends requests through
    an [`h2any.Client`][h2any.Client]: HTTP/2, many requests on one connection per origin.

    Works on asyncio and trio. Redirects, cookies, auth and event hooks stay httpx's (set them
    on the ``httpx.AsyncClient``); so do timeouts: each request's ``timeout`` extension
    (httpx's ``timeout=``) becomes its [`h2any.Timeout`][h2any.Timeout]. The connect timeout
    that applies to a new connection is the one of the request that opened the first one.

    Responses carry ``extensions["http_version"]`` (``b"HTTP/2"``, or ``b"HTTP/1.1"`` when the
    server does not speak HTTP/2), ``extensions["stream_id"]`` and, once the body has been
    read (at once when it came whole with the headers) and if the server sent trailers,
    ``extensions["trailers"]`` (an ``httpx.Headers``).
    Closing a response before its body ends resets its stream (RST_STREAM CANCEL); the
    connection stays up for the others.

    Errors are httpx's (``httpx.ConnectError``, ``httpx.ReadTimeout``,
    ``httpx.RemoteProtocolError``, ...), the h2any error as their ``__cause__``.

    Arguments:
        verify: ``True`` (certifi roots), a CA bundle path, an `ssl.SSLContext`, or
            ``False`` (insecure), as in httpx.
        cert: a client certificate: a PEM path, ``(certfile, keyfile)`` or
            ``(certfile, keyfile, password)``.
        proxy: an HTTP proxy (a URL or an ``httpx.Proxy`` with ``auth``), used for every
            origin (CONNECT tunnel).
        trust_env: take the proxy from ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` (minus
            ``NO_PROXY``) and the CA bundle from ``SSL_CERT_FILE`` when none is given.
        http1: fall back to HTTP/1.1 for servers without HTTP/2 (over TLS by ALPN; for
            ``http://``, when the server answers the h2c preface as HTTP/1.x); ``False``
            refuses them (``httpx.ConnectError``).
        http2: ``False`` speaks HTTP/1.1 only (as httpx's own transport does by default).
        max_connections_per_origin: open more connections to one origin only when the open
            ones have no free stream (the server's MAX_CONCURRENT_STREAMS); 1 by default.
        keepalive_expiry: close connections idle for this many seconds (``None``: never).
        retries: tries for a request the server never processed (REFUSED_STREAM, above a
            GOAWAY's ``last_stream_id``): a [`RetryPolicy`][h2any.RetryPolicy] or an ``int``.
        retry_timeout: how long such retries may go on, in seconds.
        window_manager: as for [`h2any.Connection`][h2any.Connection] (``None``: h2any's
            default), as are ``initial_window_size``, ``connection_window_size``,
            ``max_concurrent_streams``, ``keepalive_interval`` and ``engine``.

    Raises:
        ValueError, TypeError: a bad option (at once, not on the first request).
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | str | bool = True,
        cert: CertTypes | None = None,
        proxy: ProxyTypes | None = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = True,
        max_connections_per_origin: int = 1,
        keepalive_expiry: float | None = 60.0,
        retries: RetryPolicy | int | None = None,
        retry_timeout: float | None = 60.0,
        window_manager: type[BaseFlowControlManager] | None = None,
        initial_window_size: int | None = None,
        connection_window_size: int | None = None,
        max_concurrent_streams: int | None = None,
        keepalive_interval: float | None = None,
        engine: str | None = None,
    ) -> None:
        self._options = _client_options(
            verify=verify,
            cert=cert,
            proxy=proxy,
            trust_env=trust_env,
            http1=http1,
            http2=http2,
            max_connections_per_origin=max_connections_per_origin,
            keepalive_expiry=keepalive_expiry,
            retries=retries,
            retry_timeout=retry_timeout,
            window_manager=window_manager,
            initial_window_size=initial_window_size,
            connection_window_size=connection_window_size,
            max_concurrent_streams=max_concurrent_streams,
            keepalive_interval=keepalive_interval,
            engine=engine,
        )
        self._host: _Host | None = None
        self._closed = False
        self._header_cache: dict[tuple[tuple[bytes, bytes], ...], Headers] = {}
        self._response_header_cache: dict[tuple[tuple[bytes, bytes], ...], httpx.Headers] = {}

    @property
    def client(self) -> _AsyncClient | None:
        """The [`h2any.Client`][h2any.Client] that sends the requests (``None`` before the
        first request): ``client.connections`` and ``client.connections_opened`` tell how
        many connections it holds and has opened."""
        return None if self._host is None else self._host.client

    async def _client(self, timeout: Timeout) -> _AsyncClient:
        host = self._host
        loop = _current_loop()
        if host is None or host.loop is not loop:
            # The first request -- or the first in another event loop, the one that hosted
            # the connections having ended (its tasks were cancelled, closing them).
            if self._closed:
                raise RuntimeError("this h2any.httpx.AsyncTransport is closed")
            # The first request's connect timeout is the Client's (it opens connections).
            client = _AsyncClient(**self._options, timeout=timeout)
            host = self._host = _Host(client, loop)
            await host.start()
        elif not host.ready.is_set():
            await host.ready.wait()
        if host.error is not None or host.done.is_set():
            raise RuntimeError("this h2any.httpx.AsyncTransport is closed") from host.error
        return host.client

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return the response at its headers (the body streams)."""
        origin = _origin_of(request)
        timeout = _timeout_of(request)
        host = self._host
        if host is not None and host.live and host.loop is _current_loop():
            client = host.client  # (the everyday case, without a coroutine step)
        else:
            client = await self._client(timeout)
        headers = _cached_headers(self._header_cache, request)
        target = request.url.raw_path.decode("ascii")
        body: Any = _in_memory(request)
        upload: _AsyncUpload | _SyncUpload | None = None
        if body is None:
            stream = request.stream
            if isinstance(stream, httpx.SyncByteStream):
                # Both sync and async (httpx's multipart body, reading files): iterated in
                # worker threads, where its file reads do not block the event loop.
                body = upload = _SyncUpload(stream)
            elif isinstance(stream, httpx.AsyncByteStream):
                body = upload = _AsyncUpload(stream)
            else:
                raise RuntimeError("AsyncTransport needs an async request stream")
        elif not body:
            body = None
        try:
            response = await client._send(origin, request.method, target, headers, body, timeout)
            if body_arrived(response):
                # The whole body came with the headers (a small response): taken now, without
                # waiting, and handed to httpx in one piece.
                arrived: bytes | None = await response.read(decode_content=False)
            else:
                arrived = None
        except H2anyError as exc:
            writing = upload is not None and not upload.done
            raise _mapped(exc, request, writing=writing) from exc
        extensions = _response_extensions(response)
        if arrived is not None:
            if response.trailers is not None:
                extensions[TRAILERS] = httpx.Headers(response.trailers.raw)
            return httpx.Response(
                response.status,
                headers=_response_headers(self._response_header_cache, response),
                stream=_ArrivedBody(arrived),
                extensions=extensions,
            )
        stream_out = _AsyncResponseStream(response, request)
        result = httpx.Response(
            response.status,
            headers=_response_headers(self._response_header_cache, response),
            stream=stream_out,
            extensions=extensions,
        )
        stream_out.httpx_response = result
        return result

    async def aclose(self) -> None:
        """Close every connection (GOAWAY) and the task that hosts them; idempotent."""
        self._closed = True
        host = self._host
        if host is not None and host.loop is _current_loop():
            await host.aclose()
        # (A host in an event loop that has ended was closed when its loop cancelled it.)


# --------------------------------------------------------------------------- sync


async def _send(
    client: _AsyncClient,
    origin: Origin,
    method: str,
    target: str,
    headers: Headers,
    body: Any,
    timeout: Timeout,
) -> _AsyncResponse:
    return await client._send(origin, method, target, headers, body, timeout)


class Transport(httpx.BaseTransport):
    """An httpx transport for the blocking ``httpx.Client``: requests go through an
    [`h2any.Client`][h2any.Client] hosted in an event-loop thread
    ([`h2any.sync.Client`][h2any.sync.Client]). Thread-safe: any number of threads share one
    ``httpx.Client`` and, per origin, one HTTP/2 connection.

    Takes the arguments of [`AsyncTransport`][h2any.httpx.AsyncTransport], and ``backend``
    (``"asyncio"`` or ``"trio"``) for the loop thread. The loop thread starts on the first
    request and ends with ``close()`` (which ``httpx.Client`` calls when it closes).
    Request bodies that httpx streams (iterators, files) are read in worker threads of the
    loop, a piece at a time.
    """

    def __init__(
        self,
        *,
        verify: ssl.SSLContext | str | bool = True,
        cert: CertTypes | None = None,
        proxy: ProxyTypes | None = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = True,
        max_connections_per_origin: int = 1,
        keepalive_expiry: float | None = 60.0,
        retries: RetryPolicy | int | None = None,
        retry_timeout: float | None = 60.0,
        window_manager: type[BaseFlowControlManager] | None = None,
        initial_window_size: int | None = None,
        connection_window_size: int | None = None,
        max_concurrent_streams: int | None = None,
        keepalive_interval: float | None = None,
        engine: str | None = None,
        backend: Literal["asyncio", "trio"] = "asyncio",
    ) -> None:
        self._options = _client_options(
            verify=verify,
            cert=cert,
            proxy=proxy,
            trust_env=trust_env,
            http1=http1,
            http2=http2,
            max_connections_per_origin=max_connections_per_origin,
            keepalive_expiry=keepalive_expiry,
            retries=retries,
            retry_timeout=retry_timeout,
            window_manager=window_manager,
            initial_window_size=initial_window_size,
            connection_window_size=connection_window_size,
            max_concurrent_streams=max_concurrent_streams,
            keepalive_interval=keepalive_interval,
            engine=engine,
        )
        self._backend = backend
        self._lock = threading.Lock()
        self._sync_client: _SyncClient | None = None
        self._header_cache: dict[tuple[tuple[bytes, bytes], ...], Headers] = {}
        self._response_header_cache: dict[tuple[tuple[bytes, bytes], ...], httpx.Headers] = {}
        self._closed = False

    @property
    def client(self) -> _SyncClient | None:
        """The [`h2any.sync.Client`][h2any.sync.Client] that sends the requests (``None``
        before the first request)."""
        return self._sync_client

    def _client(self, timeout: Timeout) -> _SyncClient:
        client = self._sync_client
        if client is None:
            with self._lock:
                if self._closed:
                    raise RuntimeError("this h2any.httpx.Transport is closed")
                client = self._sync_client
                if client is None:
                    client = self._sync_client = _SyncClient(
                        backend=self._backend, **self._options, timeout=timeout
                    )
        return client

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and return the response at its headers (the body streams)."""
        origin = _origin_of(request)
        timeout = _timeout_of(request)
        client = self._client(timeout)
        loop: LoopThread = client._loop
        headers = _cached_headers(self._header_cache, request)
        target = request.url.raw_path.decode("ascii")
        body: Any = _in_memory(request)
        upload: _SyncUpload | None = None
        if body is None:
            stream = request.stream
            if not isinstance(stream, httpx.SyncByteStream):
                raise RuntimeError("Transport needs a sync request stream")
            body = upload = _SyncUpload(stream)
        elif not body:
            body = None
        send = functools.partial(
            _send, client._client, origin, request.method, target, headers, body, timeout
        )
        try:
            response = loop.call(with_complete_body, send)
        except H2anyError as exc:
            writing = upload is not None and not upload.done
            raise _mapped(exc, request, writing=writing) from exc
        stream_out = _SyncResponseStream(_SyncResponse(loop, response), request)
        result = httpx.Response(
            response.status,
            headers=_response_headers(self._response_header_cache, response),
            stream=stream_out,
            extensions=_response_extensions(response),
        )
        stream_out.httpx_response = result
        return result

    def close(self) -> None:
        """Close every connection and end the loop thread; idempotent."""
        with self._lock:
            self._closed = True
            client, self._sync_client = self._sync_client, None
        if client is not None:
            client.close()
