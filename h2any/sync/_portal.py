"""The event-loop thread behind each blocking facade object.

A facade runs the *same* async objects as the async API, in an event loop hosted by one
daemon thread of its own: a blocking portal into that loop. Calling threads hand coroutines
to the loop and wait for the result; nothing here knows HTTP/2.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import warnings
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.abc

__all__ = ("LoopHosted", "LoopThread", "check_not_in_event_loop")

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


class _Call:
    """One call from a thread into the loop: the result, and a lock released when done."""

    __slots__ = ("args", "done", "error", "function", "result", "scope")

    def __init__(self, function: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        self.function = function
        self.args = args
        self.result: Any = None
        self.error: BaseException | None = None
        self.scope: anyio.CancelScope | None = None
        # A plain lock, held until the loop releases it: the cheapest cross-thread wake-up.
        self.done = threading.Lock()
        self.done.acquire()

    def cancel(self) -> None:  # runs in the loop thread
        if self.scope is not None:
            self.scope.cancel()


_STOP = object()


class LoopThread:
    """One daemon thread running an event loop, and a light way for threads to call into it.

    Calls are queued (a deque under a lock), the loop is woken at most once per batch
    (``call_soon_threadsafe`` / trio's ``run_sync_soon``), and a dispatcher task starts one
    task per call in its task group; the calling thread blocks on a lock the task releases.
    This costs a fraction of a BlockingPortal round trip, which matters when many threads
    make many small requests.
    """

    def __init__(self, backend: str = "asyncio", backend_options: dict[str, Any] | None = None):
        if backend not in ("asyncio", "trio"):
            raise ValueError(f"backend must be 'asyncio' or 'trio', not {backend!r}")
        self.backend = backend
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._queue: deque[_Call | object] = deque()
        self._wake_pending = False
        self._running = False
        self._call_soon: Callable[[Callable[[], None]], None] | None = None
        self._wakeup: anyio.Event | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
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
        call_soon: Any
        if self.backend == "trio":
            import trio

            call_soon = trio.lowlevel.current_trio_token().run_sync_soon
        else:
            call_soon = asyncio.get_running_loop().call_soon_threadsafe
        self._call_soon = call_soon
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            self._wakeup = anyio.Event()
            self._running = True
            self._ready.set()
            while True:
                await self._wakeup.wait()
                self._wakeup = anyio.Event()
                with self._lock:
                    calls = list(self._queue)
                    self._queue.clear()
                    self._wake_pending = False
                for index, call in enumerate(calls):
                    if call is _STOP:
                        for late in calls[index + 1 :]:
                            if isinstance(late, _Call):
                                late.error = RuntimeError("this h2any.sync object is closed")
                                late.done.release()
                        task_group.cancel_scope.cancel()
                        return
                    assert isinstance(call, _Call)
                    task_group.start_soon(self._run_call, call)

    async def _run_call(self, call: _Call) -> None:
        try:
            with anyio.CancelScope() as call.scope:
                call.result = await call.function(*call.args)
            if call.scope.cancelled_caught:
                call.error = KeyboardInterrupt()
        except anyio.get_cancelled_exc_class():
            call.error = RuntimeError("the h2any.sync object was closed during the call")
            raise
        except BaseException as exc:
            call.error = exc
        finally:
            call.done.release()

    def _wake(self) -> None:  # runs in the loop thread
        if self._wakeup is not None:
            self._wakeup.set()

    def _schedule(self, item: _Call | object) -> None:
        with self._lock:
            if not self._running:
                raise RuntimeError("this h2any.sync object is closed")
            if item is _STOP:
                self._running = False
            self._queue.append(item)
            if self._wake_pending:
                return
            self._wake_pending = True
        assert self._call_soon is not None
        self._call_soon(self._wake)

    @property
    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def call(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await function(*args)`` in the loop and return its result.

        If the calling thread is interrupted while it waits (KeyboardInterrupt), the task
        in the loop is cancelled, so nothing is left running on its behalf.
        """
        call = _Call(function, args)
        self._schedule(call)
        try:
            call.done.acquire()
        except BaseException:
            if self._call_soon is not None:
                try:
                    self._call_soon(call.cancel)
                except RuntimeError:  # the loop has already stopped
                    pass
            raise
        if call.error is not None:
            raise call.error
        return call.result  # type: ignore[no-any-return]

    def start(self, function: Callable[..., Awaitable[Any]]) -> None:
        """Start ``function(task_status=...)`` as a long-lived task in the loop's task group;
        return once it has called ``task_status.started()`` (raise if it fails before)."""

        async def start_in_group() -> None:
            assert self._task_group is not None
            await self._task_group.start(function)  # type: ignore[arg-type]

        self.call(start_in_group)

    def stop(self) -> None:
        """Stop the loop and join its thread (idempotent)."""
        try:
            self._schedule(_STOP)
        except RuntimeError:
            pass  # already stopped
        if not self.in_loop_thread:
            self._thread.join()


_Hosted = TypeVar("_Hosted", bound="LoopHosted")


class LoopHosted:
    """Base of the facade objects that own a loop thread hosting one async object.

    Subclasses set ``_loop`` and ``_aclose_hosted`` (the async object's close method) and
    clear ``_closed`` once started. They get ``close()``, the context manager, and a
    ResourceWarning (and cleanup) when garbage-collected unclosed.
    """

    _closed = True
    _loop: LoopThread
    _aclose_hosted: Callable[[], Awaitable[None]]

    def close(self) -> None:
        """Close the hosted object (e.g. GOAWAY, sockets closed) and end the loop thread.

        Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self._loop.in_loop_thread:
                self._loop.call(self._aclose_hosted)
        finally:
            self._loop.stop()

    def __enter__(self: _Hosted) -> _Hosted:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        if self._closed:
            return
        name = f"h2any.sync.{type(self).__name__}"
        warnings.warn(
            f"unclosed {name}: use 'with {name}(...)' or call close()",
            ResourceWarning,
            stacklevel=2,
            source=self,
        )
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass
