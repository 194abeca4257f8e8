"""``h2any.sync.Client``: the async [`h2any.Client`][h2any.Client], run in a loop thread of its
own."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, final

from .._body import BodyTypes
from .._client import Client as AsyncClient
from .._client import ParamTypes, wait_closed
from .._config import TimeoutTypes
from .._headers import HeaderTypes
from ._connection import Response, with_complete_body
from ._portal import LoopHosted, LoopThread, check_not_in_event_loop

__all__ = ("Client",)


@final
class Client(LoopHosted):
    """A thread-safe, blocking client for many origins: [`h2any.Client`][h2any.Client] in a loop
    thread.

    Takes the same arguments as [`h2any.Client`][h2any.Client], plus ``backend`` (``"asyncio"`` or
    ``"trio"``) and ``backend_options`` (as [`h2any.sync.Connection`][h2any.sync.Connection]). Any
    number of threads may share it; requests to one origin share one HTTP/2 connection. Close it (or
    use ``with``); an unclosed client warns.
    """

    def __init__(
        self,
        *,
        backend: str = "asyncio",
        backend_options: dict[str, Any] | None = None,
        **options: Any,
    ) -> None:
        check_not_in_event_loop("h2any.sync.Client()")
        self._closed = True
        client = AsyncClient(**options)
        self._loop = LoopThread(backend, backend_options)
        try:
            self._loop.start(functools.partial(_run_client, client))
        except BaseException:
            self._loop.stop()
            raise
        self._client = client
        self._aclose_hosted = self._client.aclose
        self._closed = False

    def request(
        self,
        method: str,
        url: str,
        *,
        params: ParamTypes | None = None,
        headers: HeaderTypes | None = None,
        body: BodyTypes = None,
        json: Any = None,
        timeout: TimeoutTypes | None = None,
    ) -> Response:
        """Send a request; see [`h2any.Client.request`][h2any.Client.request]."""
        check_not_in_event_loop("Client.request()")
        call = functools.partial(
            self._client.request,
            method,
            url,
            params=params,
            headers=headers,
            body=body,
            json=json,
            timeout=timeout,
        )
        return Response(self._loop, self._loop.call(with_complete_body, call))

    @contextmanager
    def stream(self, method: str, url: str, **kwargs: Any) -> Iterator[Response]:
        """Like `request`, as a context manager that closes the response on exit."""
        response = self.request(method, url, **kwargs)
        try:
            yield response
        finally:
            response.close()

    def get(self, url: str, **kwargs: Any) -> Response:
        """``request("GET", url, ...)``."""
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Response:
        """``request("POST", url, ...)``."""
        return self.request("POST", url, **kwargs)

    @property
    def connections(self) -> dict[str, int]:
        """How many open connections the pool holds, per origin."""
        return self._client.connections


async def _run_client(client: AsyncClient, *, task_status: Any) -> None:
    """Hold the client open in the loop thread until it is closed."""
    async with client:
        task_status.started()
        await wait_closed(client)
