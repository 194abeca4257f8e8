"""``h2any.Client``: one HTTP/2 connection per origin, reused, replaced, and retried on.

The client owns a task group in which every connection task runs (as with
[`h2any.connect`][h2any.connect]). A request picks its origin's connection -- opening it on first
use, shared by every task that asks meanwhile -- and is retried on a fresh connection when the
protocol guarantees the server never processed it.

Retry rules:

* Streams above a GOAWAY's ``last_stream_id``, streams reset with REFUSED_STREAM, and
  requests refused because their connection was already going away were never processed:
  they are sent again, whatever the method, ahead of new requests -- provided the body can
  be replayed (none, bytes/str, or a seekable file) -- up to the
  [`RetryPolicy`][h2any.RetryPolicy]'s ``max_attempts``, after an exponentially growing, jittered
  delay, and never past ``retry_timeout``.
* ENHANCE_YOUR_CALM (in GOAWAY or RST_STREAM) is never retried: the server asked us to
  stop, so the error is raised at once.
* A request that may have been processed (the connection was lost mid-request) is retried
  only if its method is idempotent, and then at most once.

# Why back off: a server that refuses every request (GOAWAY with last_stream_id=0 on each
# new connection, or REFUSED_STREAM on each stream) used to be retried in a tight loop for
# the whole retry_timeout -- thousands of connections a second. The attempt cap bounds the
# total, the delay bounds the rate. A graceful GOAWAY (NO_ERROR) with last_stream_id > 0 --
# the server served streams on that connection and is rotating it, everyday traffic -- is
# retried at once and not counted: it costs no latency, and the server made progress.
"""

from __future__ import annotations

import math
import os
import random
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, final
from urllib.parse import unquote, urlencode, urljoin, urlsplit, urlunsplit

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute

from . import _log
from ._auth import Auth, AuthTypes, as_auth
from ._body import BodyTypes, replay_position, rewind
from ._config import (
    Origin,
    RetryPolicy,
    Timeout,
    TimeoutTypes,
    VerifyTypes,
    as_timeout,
    check_url_characters,
    make_ssl_context,
    mask_url,
)
from ._connection import (
    DEFAULT_TIMEOUT,
    Connection,
    connect,
    connect_over,
    open_websocket,
    queue_request,
)
from ._cookies import Cookies, CookieTypes
from ._deadlines import native_primitives
from ._exceptions import (
    ConnectionClosed,
    ConnectionTerminated,
    ConnectTimeout,
    H2anyError,
    HTTPVersionError,
    InvalidRequest,
    PoolTimeout,
    StreamReset,
    clone_error,
)
from ._headers import Headers, HeaderTypes
from ._http11 import HTTP11Connection, queue_http11_request, start_http11
from ._models import Request, basic_authorization
from ._multipart import FormData, RequestFiles, encode_request_body
from ._options import CLIENT_ARGUMENTS, CONNECTION_OPTIONS, ConnectionOptions, Unpack, check_options
from ._proxy import ProxyConfig, environment_ca_bundle, environment_proxy
from ._redirects import EventHooks, check_event_hooks, send_chain
from ._response import Response
from ._task import open_socket
from ._websocket import DEFAULT_MAX_MESSAGE_SIZE, ExtendedConnectUnsupported, WebSocket

__all__ = (
    "Client",
    "delete",
    "get",
    "head",
    "options",
    "patch",
    "post",
    "put",
    "request",
)

_NO_ERROR = 0x0
_ENHANCE_YOUR_CALM = 0xB
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
ParamTypes = Mapping[str, Any] | Sequence[tuple[str, Any]] | str
CertTypes = str | tuple[str, str] | tuple[str, str, str]


@dataclass(eq=False)
class _Slot:
    """A connection to one origin, or the promise of one being opened."""

    opened: anyio.Event = field(default_factory=anyio.Event)
    connection: Connection | HTTP11Connection | None = None
    # How a request is queued on ``connection`` (HTTP/2 or HTTP/1.1; no test per request).
    queue: Callable[..., Awaitable[Response]] = queue_request
    error: BaseException | None = None
    last_used: float = 0.0
    reserved: int = 0  # requests assigned here whose streams are not open yet

    @property
    def has_room(self) -> bool:
        connection = self.connection
        return (
            connection is not None
            and connection.open_streams + self.reserved < connection.max_concurrent_streams
        )

    @property
    def usable(self) -> bool:
        return self.connection is not None and not self.connection.is_closed


@final
class Client:
    """An HTTP/2 client for many origins: one multiplexed connection per origin, pooled.

    Use it as an async context manager. Takes the [`Connection`][h2any.Connection] options
    (``verify``, ``cert``, ``timeout``, ``enable_push``, ``window_manager``, ...) for every
    connection it opens -- typed as [`ConnectionOptions`][h2any.ConnectionOptions]; a name that
    is none of them raises ``TypeError`` here, at once -- and:

    Arguments:
        base_url: joined with relative request URLs.
        headers: default headers for every request (a request's own headers win).
        keepalive_expiry: close connections idle for this many seconds (``None``: never).
        max_connections_per_origin: open up to this many HTTP/2 connections to one origin
            when the open ones are saturated (the server's MAX_CONCURRENT_STREAMS); with 1
            (the default), requests wait for a stream slot instead.
        max_http1_connections_per_origin: the same for an origin reached over HTTP/1.1, where
            a connection carries one request at a time: how many requests to it run at once
            (default 6, as browsers do); more wait for a connection (``Timeout.pool``).
        http1: fall back to HTTP/1.1 for servers that do not speak HTTP/2 (over TLS: offer
            ALPN ``http/1.1`` besides ``h2``; for ``http://``: when the server answers the h2c
            preface as an HTTP/1.x server, remember the origin and use HTTP/1.1). ``False``
            refuses them with [`HTTPVersionError`][h2any.HTTPVersionError].
        http2: use HTTP/2; ``False`` speaks HTTP/1.1 only (ALPN ``http/1.1``, no h2c).
        retry_timeout: how long, from its start, a request may keep being retried on
            fresh connections (each attempt is still bounded by ``timeout``); ``None``: as
            long as it takes (still at most ``retries.max_attempts`` tries).
        retries: the [`RetryPolicy`][h2any.RetryPolicy] for requests the server never processed
            (tries per request, backoff between them), or an ``int``: ``max_attempts`` with the
            default backoff. Default: ``RetryPolicy()`` (5 tries, 50 ms doubling to 2 s).
        trust_env: take proxies from ``HTTPS_PROXY``/``HTTP_PROXY``/``ALL_PROXY`` (minus
            ``NO_PROXY``) and the CA bundle from ``SSL_CERT_FILE`` when no ``proxy=``/
            ``verify=`` is given. ``proxy=`` (an HTTP proxy URL) applies to every origin.
        auth: authentication for every request (a request's own ``auth=`` wins):
            ``(user, password)`` for Basic, or an [`Auth`][h2any.Auth] such as
            [`BearerAuth`][h2any.BearerAuth] or [`DigestAuth`][h2any.DigestAuth].
        cookies: cookies to start the jar with ([`Client.cookies`][h2any.Client.cookies]);
            a mapping or pairs are sent to every host, a ``CookieJar`` or
            [`Cookies`][h2any.Cookies] keep their own domains.
        follow_redirects: follow 3xx responses with a ``Location`` (default ``False``, as
            httpx); a request's own ``follow_redirects=`` wins.
        max_redirects: how many redirects one request follows before
            [`TooManyRedirects`][h2any.TooManyRedirects] (20).
        event_hooks: ``{"request": [...], "response": [...]}``: callables (async, or plain)
            called with each [`Request`][h2any.Request] before it is sent and each
            [`Response`][h2any.Response] when its headers arrive, redirects and auth answers
            included.
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        headers: HeaderTypes | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        keepalive_expiry: float | None = 60.0,
        max_connections_per_origin: int = 1,
        max_http1_connections_per_origin: int = 6,
        http1: bool = True,
        http2: bool = True,
        retry_timeout: float | None = 60.0,
        retries: RetryPolicy | int | None = None,
        trust_env: bool = True,
        auth: AuthTypes | None = None,
        cookies: CookieTypes | None = None,
        follow_redirects: bool = False,
        max_redirects: int = 20,
        event_hooks: EventHooks | None = None,
        **connection_options: Unpack[ConnectionOptions],
    ) -> None:
        check_options("h2any.Client()", connection_options, CONNECTION_OPTIONS, CLIENT_ARGUMENTS)
        if max_connections_per_origin < 1:
            raise ValueError("max_connections_per_origin must be at least 1")
        if max_http1_connections_per_origin < 1:
            raise ValueError("max_http1_connections_per_origin must be at least 1")
        if max_redirects < 0:
            raise ValueError("max_redirects must be 0 or more")
        self.auth: Auth | None = as_auth(auth)
        self._cookies = Cookies(cookies)
        self.follow_redirects = follow_redirects
        self.max_redirects = max_redirects
        self.event_hooks = check_event_hooks(event_hooks)
        self.timeout = as_timeout(timeout)
        self.base_url = base_url
        self._headers = Headers(headers or ())
        self._keepalive_expiry = keepalive_expiry
        self._max_per_origin = max_connections_per_origin
        self._max_http1_per_origin = max_http1_connections_per_origin
        if not (http1 or http2):
            raise ValueError("http1 and http2 cannot both be False")
        self._http1 = http1
        self._http2 = http2
        self._tls_context: ssl.SSLContext | None = None  # offering both ALPN protocols
        self._http11_origins: set[Origin] = set()  # h2c origins found to speak HTTP/1.1
        self._retry_timeout = math.inf if retry_timeout is None else retry_timeout
        if retries is None:
            retries = RetryPolicy()
        elif isinstance(retries, int) and not isinstance(retries, bool):
            retries = RetryPolicy(max_attempts=retries)
        elif not isinstance(retries, RetryPolicy):
            raise TypeError(f"retries must be a RetryPolicy or an int, not {retries!r}")
        self.retries = retries
        self._options: dict[str, Any] = {**connection_options, "timeout": self.timeout}
        self._trust_env = trust_env
        if trust_env and "verify" not in self._options:
            bundle = environment_ca_bundle()
            if bundle is not None:
                self._options["verify"] = bundle
        # Fail on bad options now, not on the first request (TLS files too, when named:
        # the check connection is h2c, so it would not load them).
        Connection("http://localhost", **self._options)
        verify = self._options.get("verify", True)
        cert = self._options.get("cert")
        if cert is not None or isinstance(verify, (str, os.PathLike)):
            make_ssl_context(verify, cert)
        self._pool: dict[Origin, list[_Slot]] = {}
        self._task_group: anyio.abc.TaskGroup | None = None
        # The clock of the event loop the Client runs in (anyio.current_time's, without
        # looking up the loop on each call), once entered.
        self._clock: Callable[[], float] = anyio.current_time
        self._closed = False
        self._closed_flag: anyio.Event | None = None
        self.connections_opened = 0

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Client:
        if self._task_group is not None or self._closed:
            raise RuntimeError("a Client can be entered only once")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        self._clock = native_primitives()[1]
        if self._keepalive_expiry is not None:
            task_group.start_soon(self._expire_idle, self._keepalive_expiry)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task_group = self._task_group
        try:
            await self.aclose()
        finally:
            if task_group is not None:
                task_group.cancel_scope.cancel()
                await task_group.__aexit__(None, None, None)

    def _closed_event(self) -> anyio.Event:
        if self._closed_flag is None:
            self._closed_flag = anyio.Event()
            if self._closed:
                self._closed_flag.set()
        return self._closed_flag

    async def aclose(self) -> None:
        """Close every connection (GOAWAY to each server). Idempotent."""
        self._closed = True
        slots = [slot for slots in self._pool.values() for slot in slots]
        self._pool.clear()
        try:
            with anyio.CancelScope(shield=True):
                for slot in slots:
                    if slot.connection is not None:
                        await slot.connection.aclose()
        finally:
            # Only now: the blocking facade's host task ends the client's task group once
            # it is set, and that would cancel connection tasks still sending their GOAWAY.
            if self._closed_flag is not None:
                self._closed_flag.set()

    @property
    def connections(self) -> dict[str, int]:
        """How many open connections the pool holds, per origin."""
        return {
            str(origin): sum(slot.usable for slot in slots)
            for origin, slots in self._pool.items()
            if any(slot.usable for slot in slots)
        }

    @property
    def cookies(self) -> Cookies:
        """The client's cookie jar: every response's ``Set-Cookie`` lands here, and requests
        carry the cookies that match them (domain, path, secure, expiry)."""
        return self._cookies

    @cookies.setter
    def cookies(self, cookies: CookieTypes) -> None:
        self._cookies = Cookies(cookies)

    async def _expire_idle(self, expiry: float) -> None:
        while True:
            await anyio.sleep(min(expiry, 1.0) if expiry > 0 else 0.05)
            now = self._clock()
            for slots in list(self._pool.values()):
                for slot in list(slots):
                    connection = slot.connection
                    if (
                        connection is not None
                        and connection.open_streams == 0
                        and now - slot.last_used >= expiry
                    ):
                        slots.remove(slot)
                        await connection.aclose()

    # ------------------------------------------------------------------ requests

    async def request(
        self,
        method: str,
        url: str,
        *,
        content: BodyTypes = None,
        body: BodyTypes = None,
        data: FormData | None = None,
        files: RequestFiles | None = None,
        json: Any = None,
        params: ParamTypes | None = None,
        headers: HeaderTypes | None = None,
        cookies: CookieTypes | None = None,
        auth: AuthTypes | None = None,
        follow_redirects: bool | None = None,
        timeout: TimeoutTypes | None = None,
    ) -> Response:
        """Send a request to any origin and return its [`Response`][h2any.Response] at headers.

        Arguments:
            url: absolute, or relative to ``base_url``; user information in it
                (``https://user:password@host/``) is sent as Basic auth, never in
                ``:authority``.
            content: the body: ``bytes``, ``str``, a sync or async file, a sync or async
                iterable of bytes (streamed). ``body=`` is the same (h2any's older name).
            data: form fields, sent ``application/x-www-form-urlencoded`` (or as the plain
                fields of a multipart body, with ``files=``).
            files: files to upload as ``multipart/form-data``: ``{"field": file}`` or
                ``{"field": (filename, file[, content_type[, headers]])}``; files are read in
                pieces as the upload proceeds, never whole.
            json: a value sent as an ``application/json`` body.
            params: added to the query string.
            headers: merged over the client's ``headers``.
            cookies: cookies for this request only (sent to its origin, not after a
                redirect elsewhere), on top of the client's jar.
            auth: ``(user, password)`` or an [`Auth`][h2any.Auth]; ``None``: the client's.
            follow_redirects: ``None``: the client's setting.
            timeout: ``None``: the client's.

        Raises the errors of [`Connection.request`][h2any.Connection.request], after the retries
        described in the module documentation; [`TooManyRedirects`][h2any.TooManyRedirects],
        [`BodyNotReplayable`][h2any.BodyNotReplayable].
        """
        if self._task_group is None or self._closed:
            raise RuntimeError("use the Client as 'async with h2any.Client() as client:'")
        origin, target, userinfo = self._split(url, params)
        request_headers = self._merge_headers(headers)
        if userinfo is not None and "authorization" not in request_headers:
            # https://user:password@host/: Basic auth, unless the request has its own.
            request_headers = Headers([*request_headers.raw, (b"authorization", userinfo)])
        request_body, implied = encode_request_body(
            content=content, body=body, data=data, files=files, json=json, headers=request_headers
        )
        if implied:
            request_headers = Headers([*request_headers.raw, *implied])
        return await send_chain(
            self,
            Request(method, f"{origin}{target}", headers=request_headers),
            origin,
            target,
            request_body,
            auth=self.auth if auth is None else as_auth(auth),
            cookies=None if cookies is None else Cookies(cookies),
            follow_redirects=(
                self.follow_redirects if follow_redirects is None else follow_redirects
            ),
            timeout=self.timeout if timeout is None else as_timeout(timeout),
        )

    async def _send(
        self,
        origin: Origin,
        method: str,
        target: str,
        request_headers: Headers,
        body: BodyTypes,
        request_timeout: Timeout,
    ) -> Response:
        """Send one request to ``origin`` (no redirects): pick a connection from the pool and
        retry on a fresh one when the server never processed it (the module's rules)."""
        replay_from = replay_position(body)
        now = self._clock()
        deadline = now + self._retry_timeout
        # Timeout.total bounds the whole exchange: connecting, retries and the body.
        expires = None if request_timeout.total is None else now + request_timeout.total
        if expires is not None and expires < deadline:
            deadline = expires
        retried_unprocessed = False
        retried_maybe_processed = False
        attempts = failed_attempts = 0
        slot = self._free_slot(origin)
        while True:
            attempts += 1
            if slot is None:
                slot = await self._slot_for(origin, deadline, request_timeout)
                now = self._clock()
            assert slot.connection is not None
            slot.last_used = now
            reservation = _Reservation(slot)
            try:
                # A retry of a request the server never processed goes ahead of others
                # waiting for a stream slot.
                response = await slot.queue(
                    slot.connection,
                    method,
                    target,
                    request_headers,
                    body,
                    request_timeout,
                    first_in_line=retried_unprocessed,
                    on_open=reservation.release,
                    expires=expires,
                )
            except (StreamReset, ConnectionClosed) as exc:
                if not (exc.retryable or isinstance(exc, (StreamReset, ConnectionTerminated))):
                    # The connection was lost with the request out: it may have been
                    # processed, so only an idempotent request is sent again, and once.
                    if (
                        retried_maybe_processed
                        or method not in IDEMPOTENT_METHODS
                        or replay_from is None
                        or attempts >= self.retries.max_attempts
                        or self._clock() >= deadline
                    ):
                        raise
                    retried_maybe_processed = True
                    _log.retrying(method, origin, target, attempts, exc, 0.0)
                    self._forget_if_closed(origin, slot)
                    body = rewind(body, replay_from)
                    slot = None
                    continue
                # The server never processed it (REFUSED_STREAM, above a GOAWAY's
                # last_stream_id), or it never went out (a ConnectionClosed that is
                # retryable: it waited for a stream slot on a connection then lost).
                if (
                    not exc.retryable
                    or replay_from is None
                    or getattr(exc, "error_code", None) == _ENHANCE_YOUR_CALM
                ):
                    raise
                # A graceful GOAWAY after the server processed streams on this connection
                # is everyday connection rotation: retried at once, and not counted.
                rotation = (
                    isinstance(exc, ConnectionTerminated)
                    and exc.error_code == _NO_ERROR
                    and exc.last_stream_id > 0
                )
                if rotation:
                    attempts -= 1
                    delay = 0.0
                elif attempts >= self.retries.max_attempts:
                    raise
                else:
                    failed_attempts += 1
                    delay = self.retries.delay(failed_attempts, random.random())
                if self._clock() + delay >= deadline:
                    raise
                retried_unprocessed = True
                _log.retrying(method, origin, target, attempts, exc, delay)
                self._forget_if_closed(origin, slot)
                reservation.release()
                if delay:
                    await anyio.sleep(delay)
                body = rewind(body, replay_from)
                slot = None
            else:
                slot.last_used = self._clock()
                return response
            finally:
                reservation.release()

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        content: BodyTypes = None,
        body: BodyTypes = None,
        data: FormData | None = None,
        files: RequestFiles | None = None,
        json: Any = None,
        params: ParamTypes | None = None,
        headers: HeaderTypes | None = None,
        cookies: CookieTypes | None = None,
        auth: AuthTypes | None = None,
        follow_redirects: bool | None = None,
        timeout: TimeoutTypes | None = None,
    ) -> AsyncIterator[Response]:
        """Like `request`, as a context manager that closes the response on exit."""
        response = await self.request(
            method,
            url,
            content=content,
            body=body,
            data=data,
            files=files,
            json=json,
            params=params,
            headers=headers,
            cookies=cookies,
            auth=auth,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )
        try:
            yield response
        finally:
            await response.aclose()

    async def get(
        self,
        url: str,
        *,
        params: ParamTypes | None = None,
        headers: HeaderTypes | None = None,
        cookies: CookieTypes | None = None,
        auth: AuthTypes | None = None,
        follow_redirects: bool | None = None,
        timeout: TimeoutTypes | None = None,
    ) -> Response:
        """``request("GET", url, ...)``."""
        return await self.request(
            "GET",
            url,
            params=params,
            headers=headers,
            cookies=cookies,
            auth=auth,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )

    async def head(
        self,
        url: str,
        *,
        params: ParamTypes | None = None,
        headers: HeaderTypes | None = None,
        cookies: CookieTypes | None = None,
        auth: AuthTypes | None = None,
        follow_redirects: bool | None = None,
        timeout: TimeoutTypes | None = None,
    ) -> Response:
        """``request("HEAD", url, ...)``."""
        return await self.request(
            "HEAD",
            url,
            params=params,
            headers=headers,
            cookies=cookies,
            auth=auth,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )

    async def options(
        self,
        url: str,
        *,
        params: ParamTypes | None = None,
        headers: HeaderTypes | None = None,
        cookies: CookieTypes | None = None,
        auth: AuthTypes | None = None,
        follow_redirects: bool | None = None,
        timeout: TimeoutTypes | None = None,
    ) -> Response:
        """``request("OPTIONS", url, ...)``."""
        return await self.request(
            "OPTIONS",
            url,
            params=params,
            headers=headers,
            cookies=cookies,
            auth=auth,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )

    async def delete(
        self,
        url: str,
        *,
        params: ParamTypes | None = None,
        headers: HeaderTypes | None = None,
        cookies: CookieTypes | None = None,
        auth: AuthTypes | None = None,
        follow_redirects: bool | None = None,
        timeout: TimeoutTypes | None = None,
    ) -> Response:
        """``request("DELETE", url, ...)``."""
        return await self.request(
            "DELETE",
            url,
            params=params,
            headers=headers,
            cookies=cookies,
            auth=auth,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )

    async def post(
        self,
        url: str,
        *,
        content: BodyTypes = None,
        body: BodyTypes = None,
        data: FormData | None = None,
        files: RequestFiles | None = None,
        json: Any = None,
        params: ParamTypes | None = None,
        headers: HeaderTypes | None = None,
        cookies: CookieTypes | None = None,
        auth: AuthTypes | None = None,
        follow_redirects: bool | None = None,
        timeout: TimeoutTypes | None = None,
    ) -> Response:
        """``request("POST", url, ...)``."""
        return await self.request(
            "POST",
            url,
            content=content,
            body=body,
            data=data,
            files=files,
            json=json,
            params=params,
            headers=headers,
            cookies=cookies,
            auth=auth,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )

    async def put(
        self,
        url: str,
        *,
        content: BodyTypes = None,
        body: BodyTypes = None,
        data: FormData | None = None,
        files: RequestFiles | None = None,
        json: Any = None,
        params: ParamTypes | None = None,
        headers: HeaderTypes | None = None,
        cookies: CookieTypes | None = None,
        auth: AuthTypes | None = None,
        follow_redirects: bool | None = None,
        timeout: TimeoutTypes | None = None,
    ) -> Response:
        """``request("PUT", url, ...)``."""
        return await self.request(
            "PUT",
            url,
            content=content,
            body=body,
            data=data,
            files=files,
            json=json,
            params=params,
            headers=headers,
            cookies=cookies,
            auth=auth,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )

    async def patch(
        self,
        url: str,
        *,
        content: BodyTypes = None,
        body: BodyTypes = None,
        data: FormData | None = None,
        files: RequestFiles | None = None,
        json: Any = None,
        params: ParamTypes | None = None,
        headers: HeaderTypes | None = None,
        cookies: CookieTypes | None = None,
        auth: AuthTypes | None = None,
        follow_redirects: bool | None = None,
        timeout: TimeoutTypes | None = None,
    ) -> Response:
        """``request("PATCH", url, ...)``."""
        return await self.request(
            "PATCH",
            url,
            content=content,
            body=body,
            data=data,
            files=files,
            json=json,
            params=params,
            headers=headers,
            cookies=cookies,
            auth=auth,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )

    # ------------------------------------------------------------------ pool

    def _split(self, url: str, params: ParamTypes | None) -> tuple[Origin, str, bytes | None]:
        """The origin and target (path and query) of ``url``, and the ``authorization``
        value (Basic) of the user information it holds, if any (never in ``:authority``)."""
        # Checked before urljoin/urlsplit, which silently drop tabs and newlines; a space
        # in the host or path is refused by Origin.parse and the connection, as there.
        check_url_characters(url)
        if self.base_url is not None:
            check_url_characters(self.base_url, "base_url")
            url = urljoin(self.base_url, url)
        try:
            parts = urlsplit(url)
        except ValueError:
            raise InvalidRequest(f"invalid URL {mask_url(url)!r}") from None
        if not parts.scheme or not parts.netloc:
            raise InvalidRequest(
                f"URL {mask_url(url)!r} is not absolute (and there is no base_url)"
            )
        try:
            origin = Origin.parse(urlunsplit((parts.scheme, parts.netloc, "", "", "")))
        except InvalidRequest:
            if "@" not in url:
                raise
            # The netloc may be a piece of an unencoded password ("user:pa/ss@host").
            raise InvalidRequest(
                f"invalid URL {mask_url(url)!r} (percent-encode any / # ? @ : in its user "
                "name or password)"
            ) from None
        query = parts.query
        if params is not None:
            extra = params if isinstance(params, str) else urlencode(params, doseq=True)
            query = f"{query}&{extra}" if query and extra else (query or extra)
        target = urlunsplit(("", "", parts.path or "/", query, ""))
        userinfo = None
        if "@" in parts.netloc:
            userinfo = basic_authorization(
                unquote(parts.username or ""), unquote(parts.password or "")
            )
        return origin, target, userinfo

    def _merge_headers(self, headers: HeaderTypes | None) -> Headers:
        if not self._headers:
            return Headers(headers or ())
        own = Headers(headers or ())
        merged = [(n, v) for n, v in self._headers if n not in own]
        return Headers([*merged, *own])

    def _forget_if_closed(self, origin: Origin, slot: _Slot) -> None:
        slots = self._pool.get(origin)
        if slots is not None and slot in slots and not slot.usable:
            slots.remove(slot)

    def _free_slot(self, origin: Origin) -> _Slot | None:
        """The first open connection to ``origin`` with a free stream slot, without waiting
        (the everyday case, checked before `_slot_for`, which tidies up and opens)."""
        slots = self._pool.get(origin)
        if slots:
            for slot in slots:
                connection = slot.connection
                if (
                    connection is not None
                    and not connection.is_closed
                    and connection.open_streams + slot.reserved < connection.max_concurrent_streams
                ):
                    return slot
        return None

    async def _slot_for(
        self, origin: Origin, deadline: float, timeout: Timeout | None = None
    ) -> _Slot:
        """The connection to use for ``origin``: an open one with a free stream slot, a
        new one (at most ``max_connections_per_origin``, or its HTTP/1.1 counterpart), or
        the least busy one.

        ``timeout``: the request's (default: the Client's): a connection opened for it gets
        its ``connect`` timeout, and it waits no longer for one being opened.
        """
        slots = self._pool.setdefault(origin, [])
        while True:
            slots[:] = [s for s in slots if s.connection is None or not s.connection.is_closed]
            opening = [s for s in slots if s.connection is None]
            ready = [s for s in slots if s.connection is not None]
            for slot in ready:
                if slot.has_room:
                    return slot
            if opening:
                slot = opening[0]
            elif len(slots) < self._limit_for(origin, ready) or not ready:
                slot = _Slot()
                slots.append(slot)
                assert self._task_group is not None
                self._task_group.start_soon(self._open, origin, slot, timeout)
            else:
                return min(
                    ready,
                    key=lambda s: (
                        s.connection.open_streams + s.reserved if s.connection else math.inf
                    ),
                )
            now = self._clock()
            until = deadline
            connect = None if timeout is None else timeout.connect
            if connect is not None:
                until = min(until, now + connect)
            with anyio.move_on_after(max(0.0, until - now)):
                await slot.opened.wait()
            if not slot.opened.is_set():
                if until < deadline:
                    raise ConnectTimeout(f"could not connect to {origin} within {connect} s")
                raise PoolTimeout(f"no connection to {origin} could be opened in time")
            if slot.error is not None:
                if slot in slots:
                    slots.remove(slot)
                error = slot.error
                if isinstance(error, H2anyError):
                    raise clone_error(error)
                raise error
            if slot.connection is not None and slot.connection.is_closed:
                # Closed as soon as opened (a GOAWAY right after SETTINGS): let the request
                # fail on it, as one attempt, rather than open another connection here.
                return slot

    def _limit_for(self, origin: Origin, ready: list[_Slot]) -> int:
        """How many connections ``origin`` may have: HTTP/1.1 ones carry one request each."""
        http1 = (
            not self._http2
            or origin in self._http11_origins
            or any(not isinstance(slot.connection, Connection) for slot in ready)
        )
        return self._max_http1_per_origin if http1 else self._max_per_origin

    async def _open(self, origin: Origin, slot: _Slot, timeout: Timeout | None = None) -> None:
        assert self._task_group is not None
        options = self._options
        connect = None if timeout is None else timeout.connect
        if timeout is not None and connect != options["timeout"].connect:
            # Opened for a request with a connect timeout of its own.
            options = {**options, "timeout": replace(options["timeout"], connect=connect)}
        if self._trust_env and "proxy" not in options:
            proxy = environment_proxy(origin)
            if proxy is not None:
                options = {**options, "proxy": proxy}
        try:
            if origin.scheme == "https" and self._http1:
                await self._open_tls(origin, slot, options)
            elif not self._http2 or origin in self._http11_origins:
                await self._open_http11(origin, slot, options)
            else:
                try:
                    slot.connection = await _connect(self._task_group, str(origin), options)
                except HTTPVersionError as exc:
                    if not self._http1 or origin.scheme == "https":
                        raise _refused(exc, origin) from exc
                    # An HTTP/1.x server (it answered the h2c preface as one, or closed):
                    # HTTP/1.1 on a fresh connection, and for this origin from now on.
                    self._http11_origins.add(origin)
                    await self._open_http11(origin, slot, options)
            self.connections_opened += 1
        except BaseException as exc:
            slot.error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            slot.opened.set()

    def _tls_context_for_both(self, options: Mapping[str, Any]) -> ssl.SSLContext:
        """The Client's TLS context, offering ALPN ``h2`` and ``http/1.1`` (or ``http/1.1`` alone
        with ``http2=False``); made once."""
        context = self._tls_context
        if context is None:
            context = make_ssl_context(options.get("verify", True), options.get("cert"))
            context.set_alpn_protocols(["h2", "http/1.1"] if self._http2 else ["http/1.1"])
            self._tls_context = context
        return context

    async def _open_tls(self, origin: Origin, slot: _Slot, options: Mapping[str, Any]) -> None:
        """TLS offering both protocols: HTTP/2 if the server picks ``h2``, else HTTP/1.1."""
        assert self._task_group is not None
        proxy = options.get("proxy")
        stream = await open_socket(
            origin,
            as_timeout(options.get("timeout", DEFAULT_TIMEOUT)),
            self._tls_context_for_both(options),
            None if proxy is None else ProxyConfig.parse(proxy),
        )
        if stream.extra(TLSAttribute.alpn_protocol, None) == "h2":
            slot.connection = await connect_over(self._task_group, stream, str(origin), **options)
        else:
            slot.connection = await start_http11(self._task_group, origin, stream, options)
            slot.queue = queue_http11_request

    async def _open_http11(self, origin: Origin, slot: _Slot, options: Mapping[str, Any]) -> None:
        assert self._task_group is not None
        proxy = options.get("proxy")
        stream = await open_socket(
            origin,
            as_timeout(options.get("timeout", DEFAULT_TIMEOUT)),
            self._tls_context_for_both(options) if origin.scheme == "https" else None,
            None if proxy is None else ProxyConfig.parse(proxy),
        )
        slot.connection = await start_http11(self._task_group, origin, stream, options)
        slot.queue = queue_http11_request

    @asynccontextmanager
    async def websocket(
        self,
        url: str,
        *,
        subprotocols: Sequence[str] | None = None,
        headers: HeaderTypes | None = None,
        timeout: TimeoutTypes | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> AsyncIterator[WebSocket]:
        """A WebSocket over HTTP/2 (RFC 8441) to ``url`` (``wss://`` or ``https://``, ``ws://``
        or ``http://``), on the origin's pooled connection, next to its requests; the
        arguments, errors and the block's end are those of
        [`Connection.websocket`][h2any.Connection.websocket] (the Client's headers go with the
        handshake). An origin that the Client reaches over HTTP/1.1 raises
        [`ExtendedConnectUnsupported`][h2any.ExtendedConnectUnsupported]."""
        connection, target = await self._websocket_connection(url)
        async with connection.websocket(
            target,
            subprotocols=subprotocols,
            headers=self._merge_headers(headers),
            timeout=timeout,
            max_message_size=max_message_size,
        ) as websocket:
            yield websocket

    async def _websocket_connection(self, url: str) -> tuple[Connection, str]:
        """The pooled HTTP/2 connection for a WebSocket to ``url`` (``ws``/``wss`` taken as
        ``http``/``https``), and the target on it."""
        scheme, colon, rest = url.partition(":")
        if colon and scheme.lower() in ("ws", "wss"):
            url = ("https:" if scheme.lower() == "wss" else "http:") + rest
        origin, target, _ = self._split(url, None)
        slot = await self._slot_for(origin, self._clock() + self._retry_timeout)
        connection = slot.connection
        if not isinstance(connection, Connection):
            raise ExtendedConnectUnsupported(
                f"{origin} is reached over HTTP/1.1: WebSockets here need HTTP/2 (RFC 8441)"
            )
        slot.last_used = self._clock()
        return connection, target


def _refused(exc: HTTPVersionError, origin: Origin) -> HTTPVersionError:
    """The error for a server without HTTP/2 when the Client may not fall back."""
    error = HTTPVersionError(
        f"{exc} -- and the Client does not fall back to HTTP/1.1 (http1=False)",
        origin=str(origin),
        server_version=exc.server_version,
    )
    return error


class _Reservation:
    """Counts a request against its slot until its stream opens (or the attempt ends)."""

    __slots__ = ("_slot",)

    def __init__(self, slot: _Slot) -> None:
        self._slot: _Slot | None = slot
        slot.reserved += 1

    def release(self) -> None:
        if self._slot is not None:
            self._slot.reserved -= 1
            self._slot = None


async def _connect(
    task_group: anyio.abc.TaskGroup, url: str, options: Mapping[str, Any]
) -> Connection:
    return await connect(task_group, url, **options)


async def request(
    method: str,
    url: str,
    *,
    content: BodyTypes = None,
    body: BodyTypes = None,
    data: FormData | None = None,
    files: RequestFiles | None = None,
    json: Any = None,
    params: ParamTypes | None = None,
    headers: HeaderTypes | None = None,
    cookies: CookieTypes | None = None,
    auth: AuthTypes | None = None,
    verify: VerifyTypes = True,
    cert: CertTypes | None = None,
    proxy: str | None = None,
    trust_env: bool = True,
    timeout: TimeoutTypes = DEFAULT_TIMEOUT,
    follow_redirects: bool = False,
    max_redirects: int = 20,
    http1: bool = True,
    http2: bool = True,
    max_decompressed_size: int | None = None,
) -> Response:
    """Send one request with a throwaway [`Client`][h2any.Client] and return the response, its
    body already read (``response.content``).

    The request arguments are those of [`Client.request`][h2any.Client.request]; ``verify``,
    ``cert``, ``proxy``, ``trust_env``, ``timeout``, ``follow_redirects``, ``max_redirects``,
    ``http1``, ``http2`` and ``max_decompressed_size`` are the Client's. For more than one
    request, use a [`Client`][h2any.Client]: it keeps the connection.
    """
    options: dict[str, Any] = {"cert": cert, "max_decompressed_size": max_decompressed_size}
    if proxy is not None:
        options["proxy"] = proxy
    async with Client(
        keepalive_expiry=None,
        verify=verify,
        trust_env=trust_env,
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        http1=http1,
        http2=http2,
        **options,
    ) as client:
        response = await client.request(
            method,
            url,
            content=content,
            body=body,
            data=data,
            files=files,
            json=json,
            params=params,
            headers=headers,
            cookies=cookies,
            auth=auth,
        )
        try:
            await response.read()
        finally:
            await response.aclose()
        return response


async def get(
    url: str,
    *,
    params: ParamTypes | None = None,
    headers: HeaderTypes | None = None,
    cookies: CookieTypes | None = None,
    auth: AuthTypes | None = None,
    verify: VerifyTypes = True,
    cert: CertTypes | None = None,
    proxy: str | None = None,
    trust_env: bool = True,
    timeout: TimeoutTypes = DEFAULT_TIMEOUT,
    follow_redirects: bool = False,
    max_redirects: int = 20,
    http1: bool = True,
    http2: bool = True,
    max_decompressed_size: int | None = None,
) -> Response:
    """``request("GET", url, ...)``, for one-off requests (see `request`)."""
    return await request(
        "GET",
        url,
        params=params,
        headers=headers,
        cookies=cookies,
        auth=auth,
        verify=verify,
        cert=cert,
        proxy=proxy,
        trust_env=trust_env,
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        http1=http1,
        http2=http2,
        max_decompressed_size=max_decompressed_size,
    )


async def head(
    url: str,
    *,
    params: ParamTypes | None = None,
    headers: HeaderTypes | None = None,
    cookies: CookieTypes | None = None,
    auth: AuthTypes | None = None,
    verify: VerifyTypes = True,
    cert: CertTypes | None = None,
    proxy: str | None = None,
    trust_env: bool = True,
    timeout: TimeoutTypes = DEFAULT_TIMEOUT,
    follow_redirects: bool = False,
    max_redirects: int = 20,
    http1: bool = True,
    http2: bool = True,
    max_decompressed_size: int | None = None,
) -> Response:
    """``request("HEAD", url, ...)``, for one-off requests (see `request`)."""
    return await request(
        "HEAD",
        url,
        params=params,
        headers=headers,
        cookies=cookies,
        auth=auth,
        verify=verify,
        cert=cert,
        proxy=proxy,
        trust_env=trust_env,
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        http1=http1,
        http2=http2,
        max_decompressed_size=max_decompressed_size,
    )


async def options(
    url: str,
    *,
    params: ParamTypes | None = None,
    headers: HeaderTypes | None = None,
    cookies: CookieTypes | None = None,
    auth: AuthTypes | None = None,
    verify: VerifyTypes = True,
    cert: CertTypes | None = None,
    proxy: str | None = None,
    trust_env: bool = True,
    timeout: TimeoutTypes = DEFAULT_TIMEOUT,
    follow_redirects: bool = False,
    max_redirects: int = 20,
    http1: bool = True,
    http2: bool = True,
    max_decompressed_size: int | None = None,
) -> Response:
    """``request("OPTIONS", url, ...)``, for one-off requests (see `request`)."""
    return await request(
        "OPTIONS",
        url,
        params=params,
        headers=headers,
        cookies=cookies,
        auth=auth,
        verify=verify,
        cert=cert,
        proxy=proxy,
        trust_env=trust_env,
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        http1=http1,
        http2=http2,
        max_decompressed_size=max_decompressed_size,
    )


async def delete(
    url: str,
    *,
    params: ParamTypes | None = None,
    headers: HeaderTypes | None = None,
    cookies: CookieTypes | None = None,
    auth: AuthTypes | None = None,
    verify: VerifyTypes = True,
    cert: CertTypes | None = None,
    proxy: str | None = None,
    trust_env: bool = True,
    timeout: TimeoutTypes = DEFAULT_TIMEOUT,
    follow_redirects: bool = False,
    max_redirects: int = 20,
    http1: bool = True,
    http2: bool = True,
    max_decompressed_size: int | None = None,
) -> Response:
    """``request("DELETE", url, ...)``, for one-off requests (see `request`)."""
    return await request(
        "DELETE",
        url,
        params=params,
        headers=headers,
        cookies=cookies,
        auth=auth,
        verify=verify,
        cert=cert,
        proxy=proxy,
        trust_env=trust_env,
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        http1=http1,
        http2=http2,
        max_decompressed_size=max_decompressed_size,
    )


async def post(
    url: str,
    *,
    content: BodyTypes = None,
    body: BodyTypes = None,
    data: FormData | None = None,
    files: RequestFiles | None = None,
    json: Any = None,
    params: ParamTypes | None = None,
    headers: HeaderTypes | None = None,
    cookies: CookieTypes | None = None,
    auth: AuthTypes | None = None,
    verify: VerifyTypes = True,
    cert: CertTypes | None = None,
    proxy: str | None = None,
    trust_env: bool = True,
    timeout: TimeoutTypes = DEFAULT_TIMEOUT,
    follow_redirects: bool = False,
    max_redirects: int = 20,
    http1: bool = True,
    http2: bool = True,
    max_decompressed_size: int | None = None,
) -> Response:
    """``request("POST", url, ...)``, for one-off requests (see `request`)."""
    return await request(
        "POST",
        url,
        content=content,
        body=body,
        data=data,
        files=files,
        json=json,
        params=params,
        headers=headers,
        cookies=cookies,
        auth=auth,
        verify=verify,
        cert=cert,
        proxy=proxy,
        trust_env=trust_env,
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        http1=http1,
        http2=http2,
        max_decompressed_size=max_decompressed_size,
    )


async def put(
    url: str,
    *,
    content: BodyTypes = None,
    body: BodyTypes = None,
    data: FormData | None = None,
    files: RequestFiles | None = None,
    json: Any = None,
    params: ParamTypes | None = None,
    headers: HeaderTypes | None = None,
    cookies: CookieTypes | None = None,
    auth: AuthTypes | None = None,
    verify: VerifyTypes = True,
    cert: CertTypes | None = None,
    proxy: str | None = None,
    trust_env: bool = True,
    timeout: TimeoutTypes = DEFAULT_TIMEOUT,
    follow_redirects: bool = False,
    max_redirects: int = 20,
    http1: bool = True,
    http2: bool = True,
    max_decompressed_size: int | None = None,
) -> Response:
    """``request("PUT", url, ...)``, for one-off requests (see `request`)."""
    return await request(
        "PUT",
        url,
        content=content,
        body=body,
        data=data,
        files=files,
        json=json,
        params=params,
        headers=headers,
        cookies=cookies,
        auth=auth,
        verify=verify,
        cert=cert,
        proxy=proxy,
        trust_env=trust_env,
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        http1=http1,
        http2=http2,
        max_decompressed_size=max_decompressed_size,
    )


async def patch(
    url: str,
    *,
    content: BodyTypes = None,
    body: BodyTypes = None,
    data: FormData | None = None,
    files: RequestFiles | None = None,
    json: Any = None,
    params: ParamTypes | None = None,
    headers: HeaderTypes | None = None,
    cookies: CookieTypes | None = None,
    auth: AuthTypes | None = None,
    verify: VerifyTypes = True,
    cert: CertTypes | None = None,
    proxy: str | None = None,
    trust_env: bool = True,
    timeout: TimeoutTypes = DEFAULT_TIMEOUT,
    follow_redirects: bool = False,
    max_redirects: int = 20,
    http1: bool = True,
    http2: bool = True,
    max_decompressed_size: int | None = None,
) -> Response:
    """``request("PATCH", url, ...)``, for one-off requests (see `request`)."""
    return await request(
        "PATCH",
        url,
        content=content,
        body=body,
        data=data,
        files=files,
        json=json,
        params=params,
        headers=headers,
        cookies=cookies,
        auth=auth,
        verify=verify,
        cert=cert,
        proxy=proxy,
        trust_env=trust_env,
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=max_redirects,
        http1=http1,
        http2=http2,
        max_decompressed_size=max_decompressed_size,
    )


async def wait_closed(client: Client) -> None:
    """Wait until ``client`` is closed (the blocking facade holds it open until then)."""
    await client._closed_event().wait()


async def open_client_websocket(
    client: Client,
    url: str,
    subprotocols: Sequence[str] | None,
    headers: HeaderTypes | None,
    timeout: TimeoutTypes | None,
    max_message_size: int,
) -> WebSocket:
    """[`Client.websocket`][h2any.Client.websocket] for the blocking facade: the open
    WebSocket on the origin's pooled connection (leave it with ``_websocket.leave_websocket``)."""
    connection, target = await client._websocket_connection(url)
    return await open_websocket(
        connection, target, subprotocols, client._merge_headers(headers), timeout, max_message_size
    )
