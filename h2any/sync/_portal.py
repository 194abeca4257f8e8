"""The event-loop thread behind each blocking facade object.

A facade runs the *same* async objects as the async API, inside an anyio
:class:`~anyio.from_thread.BlockingPortal` hosted by one daemon thread of its own. Calling
threads hand coroutines to that loop and wait for the result; nothing here knows HTTP/2.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

__all__ = ("LoopThread", "check_not_in_event_loop")

T = TypeVar("T")


def _running_event_loop() -> str | None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return "asyncio"
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
        else:
            return "trio"
    return None


def check_not_in_event_loop(what: str) -> None:
    """Refuse a blocking call made from inside a running event loop (it would block it)."""
    library = _running_event_loop()
    if library is None:
        return
    raise RuntimeError(
        f"{what} blocks, and was called from inside a running {library} event loop, which it "
        "would freeze; use the async API (h2any.Connection) there, or call it from a thread "
        "(anyio.to_thread.run_sync)"
    )


class LoopThread:
    """One daemon thread running an event loop with a blocking portal into it."""

    def __init__(self, backend: str = "asyncio", backend_options: dict[str, Any] | None = None):
        if backend not in ("asyncio", "trio"):
            raise ValueError(f"backend must be 'asyncio' or 'trio', not {backend!r}")
        self.backend = backend
        self._ready = threading.Event()
        self._portal: BlockingPortal | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._main,
            args=(backend, backend_options or {}),
            name=f"h2any-{backend}-loop",
            # A facade that is never closed must not keep the interpreter from exiting.
            daemon=True,
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _main(self, backend: str, backend_options: dict[str, Any]) -> None:
        try:
            anyio.run(self._serve, backend=backend, backend_options=backend_options)
        except BaseException as exc:  # pragma: no cover - the loop failed to start
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        async with BlockingPortal() as portal:
            self._portal = portal
            self._ready.set()
            await portal.sleep_until_stopped()

    @property
    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def call(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await function(*args)`` in the loop and return its result.

        If the calling thread is interrupted while it waits (KeyboardInterrupt), the task
        in the loop is cancelled, so nothing is left running on its behalf.
        """
        portal = self._portal
        if portal is None:
            raise RuntimeError("this h2any.sync object is closed")
        future: Future[T] = portal.start_task_soon(function, *args)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def start(self, function: Callable[..., Awaitable[Any]]) -> None:
        """Start ``function(task_status=...)`` as a long-lived task in the loop's task group;
        return once it has called ``task_status.started()`` (raise if it fails before)."""
        portal = self._portal
        if portal is None:
            raise RuntimeError("this h2any.sync object is closed")
        portal.start_task(function)

    def stop(self) -> None:
        """Stop the loop and join its thread (idempotent)."""
        portal, self._portal = self._portal, None
        if portal is not None:
            if self.in_loop_thread:
                portal.start_task_soon(portal.stop, True)
                return
            portal.call(portal.stop, True)
        if not self.in_loop_thread:
            self._thread.join()
