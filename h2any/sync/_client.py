"""``h2any.sync.Client``: the async [`h2any.Client`][h2any.Client], run in a loop thread of its
own."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, final

import anyio.to_thread

from .._auth import AuthTypes
from .._body import BodyTypes
from .._client import CertTypes, ParamTypes, open_client_websocket, wait_closed
from .._client import Client as AsyncClient
from .._config import TimeoutTypes, VerifyTypes
from .._connection import DEFAULT_TIMEOUT
from .._cookies import Cookies, CookieTypes
from .._headers import HeaderTypes
from .._multipart import FormData, RequestFiles
from .._options import CLIENT_OPTIONS, ClientOptions, Unpack, check_options
from .._redirects import EventHooks, check_event_hooks
from .._response import Response as AsyncResponse
from .._websocket import DEFAULT_MAX_MESSAGE_SIZE
from ._connection import Response, with_complete_body
from ._portal import LoopHosted, LoopThread, check_not_in_event_loop
from ._websocket import WebSocket

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


@final
class Client(LoopHosted):
    """A thread-safe, blocking client for many origins: [`h2any.Client`][h2any.Client] in a loop
    thread.

    Takes the same arguments as [`h2any.Client`][h2any.Client], plus ``backend`` (``"asyncio"`` or
    ``"trio"``) and ``backend_options`` (as [`h2any.sync.Connection`][h2any.sync.Connection]). Any
    number of threads may share it; requests to one origin share one HTTP/2 connection. Close it (or
    use ``with``); an unclosed client warns.

    ``event_hooks`` take plain (blocking) callables here. They are called in a worker thread
    of the client's loop (``anyio.to_thread.run_sync``), one at a time for a request, while
    that request waits: a request hook gets the [`Request`][h2any.Request], a response hook the
    [`h2any.sync.Response`][h2any.sync.Response], which it may read. An auth flow
    ([`h2any.Auth`][h2any.Auth]) runs in the loop thread and sees the async response: it may
    look at ``status`` and ``headers`` (all a challenge needs), not read the body.
    """

    def __init__(
        self,
        *,
        backend: str = "asyncio",
        backend_options: dict[str, Any] | None = None,
        event_hooks: EventHooks | None = None,
        **options: Unpack[ClientOptions],
    ) -> None:
        check_options(
            "h2any.sync.Client()",
            options,
            CLIENT_OPTIONS,
            ("backend", "backend_options", "event_hooks"),
        )
        check_not_in_event_loop("h2any.sync.Client()")
        self._closed = True
        hooks = check_event_hooks(event_hooks)
        client = AsyncClient(
            event_hooks={
                "request": [_in_worker_thread(hook) for hook in hooks["request"]],
                "response": [self._response_hook(hook) for hook in hooks["response"]],
            },
            **options,
        )
        self._loop = LoopThread(backend, backend_options)
        try:
            self._loop.start(functools.partial(_run_client, client))
        except BaseException:
            self._loop.stop()
            raise
        self._client = client
        self._aclose_hosted = self._client.aclose
        self._opened()

    def _response_hook(self, hook: Callable[[Response], Any]) -> Callable[[Any], Awaitable[None]]:
        async def call(response: AsyncResponse) -> None:
            await anyio.to_thread.run_sync(hook, Response(self._loop, response))

        return call

    @property
    def cookies(self) -> Cookies:
        """The client's cookie jar (see [`h2any.Client.cookies`][h2any.Client.cookies])."""
        return self._client.cookies

    @cookies.setter
    def cookies(self, cookies: CookieTypes) -> None:
        self._client.cookies = cookies

    def request(
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
        """Send a request; see [`h2any.Client.request`][h2any.Client.request]."""
        check_not_in_event_loop("Client.request()")
        call = functools.partial(
            self._client.request,
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
        return Response(self._loop, self._loop.call(with_complete_body, call))

    @contextmanager
    def stream(
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
    ) -> Iterator[Response]:
        """Like `request`, as a context manager that closes the response on exit."""
        response = self.request(
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
            response.close()

    def get(
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
        return self.request(
            "GET",
            url,
            params=params,
            headers=headers,
            cookies=cookies,
            auth=auth,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )

    def head(
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
        return self.request(
            "HEAD",
            url,
            params=params,
            headers=headers,
            cookies=cookies,
            auth=auth,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )

    def options(
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
        return self.request(
            "OPTIONS",
            url,
            params=params,
            headers=headers,
            cookies=cookies,
            auth=auth,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )

    def delete(
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
        return self.request(
            "DELETE",
            url,
            params=params,
            headers=headers,
            cookies=cookies,
            auth=auth,
            follow_redirects=follow_redirects,
            timeout=timeout,
        )

    def post(
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
        return self.request(
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

    def put(
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
        return self.request(
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

    def patch(
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
        return self.request(
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

    @contextmanager
    def websocket(
        self,
        url: str,
        *,
        subprotocols: Sequence[str] | None = None,
        headers: HeaderTypes | None = None,
        timeout: TimeoutTypes | None = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> Iterator[WebSocket]:
        """A WebSocket over HTTP/2 to ``url`` on the origin's pooled connection, as a context
        manager giving an ``h2any.sync.WebSocket``; see
        [`h2any.Client.websocket`][h2any.Client.websocket]. Leaving the block closes it with
        1000 (after an exception: resets its stream)."""
        check_not_in_event_loop("Client.websocket()")
        opened = self._loop.call(
            open_client_websocket,
            self._client,
            url,
            subprotocols,
            headers,
            timeout,
            max_message_size,
        )
        with WebSocket(self._loop, opened) as websocket:
            yield websocket

    @property
    def connections(self) -> dict[str, int]:
        """How many open connections the pool holds, per origin."""
        return self._client.connections


def _in_worker_thread(hook: Callable[[Any], Any]) -> Callable[[Any], Awaitable[None]]:
    async def call(argument: Any) -> None:
        await anyio.to_thread.run_sync(hook, argument)

    return call


async def _run_client(client: AsyncClient, *, task_status: Any) -> None:
    """Hold the client open in the loop thread until it is closed."""
    async with client:
        task_status.started()
        await wait_closed(client)


def request(
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
    backend: str = "asyncio",
) -> Response:
    """Send one request with a throwaway [`h2any.sync.Client`][h2any.sync.Client] and return
    the response, its body already read (``response.content``): the blocking
    [`h2any.request`][h2any.request]. Blocks; refused inside a running event loop.

    The request arguments are those of [`h2any.Client.request`][h2any.Client.request]; the
    others are the Client's (``backend``: the loop thread's, ``"asyncio"`` or ``"trio"``).
    """
    check_not_in_event_loop(f"h2any.sync.{method.lower()}()")
    options: dict[str, Any] = {"cert": cert, "max_decompressed_size": max_decompressed_size}
    if proxy is not None:
        options["proxy"] = proxy
    with Client(
        backend=backend,
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
        response = client.request(
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
            response.read()
        finally:
            response.close()
        return response


def get(
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
    backend: str = "asyncio",
) -> Response:
    """``request("GET", url, ...)``, blocking, for one-off requests (see `request`)."""
    return request(
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
        backend=backend,
    )


def head(
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
    backend: str = "asyncio",
) -> Response:
    """``request("HEAD", url, ...)``, blocking, for one-off requests (see `request`)."""
    return request(
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
        backend=backend,
    )


def options(
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
    backend: str = "asyncio",
) -> Response:
    """``request("OPTIONS", url, ...)``, blocking, for one-off requests (see `request`)."""
    return request(
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
        backend=backend,
    )


def delete(
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
    backend: str = "asyncio",
) -> Response:
    """``request("DELETE", url, ...)``, blocking, for one-off requests (see `request`)."""
    return request(
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
        backend=backend,
    )


def post(
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
    backend: str = "asyncio",
) -> Response:
    """``request("POST", url, ...)``, blocking, for one-off requests (see `request`)."""
    return request(
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
        backend=backend,
    )


def put(
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
    backend: str = "asyncio",
) -> Response:
    """``request("PUT", url, ...)``, blocking, for one-off requests (see `request`)."""
    return request(
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
        backend=backend,
    )


def patch(
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
    backend: str = "asyncio",
) -> Response:
    """``request("PATCH", url, ...)``, blocking, for one-off requests (see `request`)."""
    return request(
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
        backend=backend,
    )
