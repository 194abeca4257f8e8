"""The event-loop thread behind each blocking facade object.

A facade runs the *same* async objects as the async API, in an event loop hosted by one
daemon thread of its own: a blocking portal into that loop. Calling threads hand coroutines
to the loop and wait for the result; nothing here knows HTTP/2.
"""

from __future__ import annotations

import asyncio
import atexit
import sys
import threading
import warnings
import weakref
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.abc

from .._log import loop_thread_chosen, uvloop_turned_off

__all__ = ("Call", "LoopHosted", "LoopThread", "check_not_in_event_loop")

T = TypeVar("T")


def default_backend_options(backend: str) -> dict[str, Any]:
    """What the loop thread runs on when ``backend_options`` is not given: uvloop, when it
    is installed and the backend is asyncio (the loop thread is the facade's bottleneck, and
    uvloop's loop is cheaper to run and to wake), unless the ``H2ANY_UVLOOP`` environment
    variable is ``0``; else the backend's own loop."""
    options: dict[str, Any] = {}
    if backend == "asyncio" and not uvloop_turned_off():
        try:
            import uvloop  # noqa: F401
        except ImportError:
            pass
        else:
            options = {"use_uvloop": True}
    loop_thread_chosen(backend, options)
    return options


def _running_event_loop() -> str | None:
    # Runs before every blocking call: no exceptions raised and caught on the way.
    if asyncio._get_running_loop() is not None:
        return "asyncio"
    # A thread running trio has imported it completely; another thread may be importing
    # it right now (starting a trio loop thread), with ``trio.lowlevel`` not there yet.
    lowlevel = getattr(sys.modules.get("trio"), "lowlevel", None)
    if lowlevel is not None and lowlevel.in_trio_run():
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


class Call:
    """One call from a thread into the loop: the result, and a lock released when done."""

    __slots__ = ("args", "cancelled", "done", "error", "function", "result", "scope")

    def __init__(self, function: Callable[..., Awaitable[Any]], args: tuple[Any, ...]) -> None:
        self.function = function
        self.args = args
        self.result: Any = None
        self.error: BaseException | None = None
        self.cancelled: BaseException | None = None  # why the call was cancelled, if it was
        self.scope: Any = None  # the cancel scope the call runs in, while it runs
        # A plain lock, held until the loop releases it: the cheapest cross-thread wake-up.
        self.done = threading.Lock()
        self.done.acquire()


def _closed_during_the_call() -> RuntimeError:
    return RuntimeError("the h2any.sync object was closed during the call")


_STOP = object()
# Idle asyncio workers kept for the next calls; beyond these a worker ends when idle.
MAX_IDLE_WORKERS = 128

# Theory of operation
# ===================
#
# Under load every request of every calling thread is one trip through here, and the loop
# thread -- which also runs the connection task -- is the bottleneck: everything it spends
# on hosting a call is taken from HTTP/2 work, GIL held. So a call costs the loop as little
# as we can make it:
#
# * The calling thread appends the call to a deque and, unless a wake-up is already on its
#   way, wakes the loop (``call_soon_threadsafe`` / trio's ``run_sync_soon``): one wake-up
#   per batch, however many threads queue calls meanwhile.
# * That wake-up *is* the dispatch: the callback, in the loop thread, takes the whole batch
#   and starts every call at once, with no dispatcher task to wake in between. On asyncio
#   it hands each call to an idle *worker* task (resolving the future the worker waits on),
#   or starts a new worker when none is idle; a worker runs call after call in one anyio
#   cancel scope. A new task per call, and an anyio scope per call, each cost more than the
#   rest of a call's hosting (anyio's ``start_soon`` several times more). On trio, whose
#   tasks and scopes are cheap, each call is a task with a scope of its own, in a nursery
#   of ours.
# * The calling thread blocks on a plain lock that the task releases when the call is done:
#   the cheapest wait and wake-up there is (no Event/Condition, which are Python code).
#
# Cancellation goes through the call's cancel scope, never through its task: an asyncio
# ``Task.cancel()`` would break through the shielded scopes the core relies on (closing a
# connection, or an upload's source). If the calling thread is interrupted while it waits,
# it asks the loop to cancel that scope; the awaited coroutine sees an ordinary
# cancellation, so the core resets the stream. A cancelled scope serves no further call
# (its asyncio worker ends), and a call cancelled before it started never starts. ``stop``
# cancels every call not finished and waits for them, before it ends the task group of
# long-lived tasks (``start``): no task, and no waiting thread, outlives the loop.


class LoopThread:
    """One daemon thread running an event loop, and a light way for threads to call into it.

    Calls are queued, the loop is woken at most once per batch, and each call runs in a
    task (on asyncio, worker tasks serve call after call); the calling thread blocks on a
    lock the task releases. This costs a
    fraction of a BlockingPortal round trip, which matters when many threads make many
    small requests (see the theory of operation above).
    """

    def __init__(self, backend: str = "asyncio", backend_options: dict[str, Any] | None = None):
        if backend not in ("asyncio", "trio"):
            raise ValueError(f"backend must be 'asyncio' or 'trio', not {backend!r}")
        self.backend = backend
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._queue: deque[Call | object] = deque()
        self._wake_pending = False
        self._running = False
        self._call_soon: Callable[..., object] | None = None
        self._spawn: Callable[[Call], None] | None = None
        self._running_calls: dict[Call, None] = {}  # dispatched, not finished
        self._idle_workers: list[asyncio.Future[Call | None]] = []  # asyncio
        self._stopping: anyio.Event | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._thread = threading.Thread(
            target=self._main,
            args=(
                backend,
                default_backend_options(backend) if backend_options is None else backend_options,
            ),
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

    # ------------------------------------------------------------------ in the loop thread

    async def _serve(self) -> None:
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                self._stopping = anyio.Event()
                if self.backend == "trio":
                    await self._serve_trio()
                else:
                    await self._serve_asyncio()
                task_group.cancel_scope.cancel()
        finally:
            with self._lock:
                self._running = False
                late = list(self._queue)
                self._queue.clear()
            for call in late:
                if isinstance(call, Call):
                    self._fail(call, RuntimeError("this h2any.sync object is closed"))

    async def _serve_asyncio(self) -> None:
        loop = asyncio.get_running_loop()
        create_task = loop.create_task
        running = self._running_calls
        idle = self._idle_workers
        workers: set[asyncio.Task[None]] = set()

        def spawn(call: Call) -> None:
            running[call] = None
            while idle:
                waiter = idle.pop()
                if not waiter.done():
                    waiter.set_result(call)
                    return
            worker = create_task(self._asyncio_worker(call))
            workers.add(worker)
            worker.add_done_callback(workers.discard)

        self._spawn = spawn
        self._call_soon = loop.call_soon_threadsafe
        self._started()
        assert self._stopping is not None
        try:
            await self._stopping.wait()
        finally:
            with anyio.CancelScope(shield=True):
                for call in list(running):
                    self._cancel(call, _closed_during_the_call())
                for waiter in idle:
                    if not waiter.done():
                        waiter.set_result(None)
                idle.clear()
                if workers:
                    await asyncio.wait(workers)

    async def _asyncio_worker(self, call: Call) -> None:
        """Run ``call``, then the calls handed to this worker while it waits idle, until
        one of them is cancelled or the loop stops.

        The calls share the worker's cancel scope: on asyncio, entering an anyio scope (and
        a new task) costs more than the rest of a call's hosting, so a worker and its scope
        serve call after call. A cancelled scope serves no further call: its worker ends.
        """
        assert self._stopping is not None
        stopping = self._stopping
        idle = self._idle_workers
        create_future = asyncio.get_running_loop().create_future
        current: Call | None = call
        try:
            with anyio.CancelScope() as scope:
                while current is not None:
                    if current.cancelled is None:
                        current.scope = scope
                        try:
                            current.result = await current.function(*current.args)
                        except asyncio.CancelledError:
                            raise  # the scope's own (see below) or the loop's
                        except BaseException as exc:
                            current.error = exc
                        current.scope = None
                    else:  # cancelled before it started
                        current.error = current.cancelled
                    self._finish(current)
                    current = None
                    if scope.cancel_called or stopping.is_set() or len(idle) >= MAX_IDLE_WORKERS:
                        # A cancelled scope (the call swallowed the cancellation) serves no
                        # further call; nor is a worker kept beyond the idle ones wanted.
                        return
                    waiter: asyncio.Future[Call | None] = create_future()
                    idle.append(waiter)
                    current = await waiter
        finally:
            if current is not None:  # cancelled while it ran (by its scope, or the loop's end)
                current.scope = None
                current.error = current.cancelled or _closed_during_the_call()
                self._finish(current)

    async def _serve_trio(self) -> None:
        import trio

        async with trio.open_nursery() as nursery:
            start_soon = nursery.start_soon
            run_call = self._run_trio_call
            running = self._running_calls

            def spawn(call: Call) -> None:
                running[call] = None
                start_soon(run_call, call)

            self._spawn = spawn
            self._call_soon = trio.lowlevel.current_trio_token().run_sync_soon
            self._started()
            assert self._stopping is not None
            await self._stopping.wait()
            for call in list(running):
                self._cancel(call, _closed_during_the_call())
            nursery.cancel_scope.cancel()

    async def _run_trio_call(self, call: Call) -> None:
        import trio

        try:
            if call.cancelled is not None:  # before this task's first step
                call.error = call.cancelled
                return
            with trio.CancelScope() as scope:
                call.scope = scope
                call.result = await call.function(*call.args)
            if scope.cancelled_caught:
                call.error = call.cancelled or _closed_during_the_call()
        except trio.Cancelled:  # the nursery: the loop is stopping
            call.error = _closed_during_the_call()
            raise
        except BaseException as exc:
            call.error = exc
        finally:
            call.scope = None
            self._finish(call)

    def _finish(self, call: Call) -> None:
        self._running_calls.pop(call, None)
        call.done.release()

    def _started(self) -> None:
        with self._lock:
            self._running = True
        self._ready.set()

    @staticmethod
    def _fail(call: Call, error: BaseException) -> None:
        call.error = error
        call.done.release()

    def _dispatch(self) -> None:
        """Start a task for every queued call (the wake-up callback)."""
        with self._lock:
            calls = list(self._queue)
            self._queue.clear()
            self._wake_pending = False
        spawn = self._spawn
        assert spawn is not None
        for index, call in enumerate(calls):
            if call is _STOP:
                for late in calls[index + 1 :]:
                    if isinstance(late, Call):  # pragma: no cover - refused once stopping
                        self._fail(late, RuntimeError("this h2any.sync object is closed"))
                assert self._stopping is not None
                self._stopping.set()
                return
            assert isinstance(call, Call)
            spawn(call)

    @staticmethod
    def _cancel(call: Call, reason: BaseException) -> None:
        """Cancel ``call``'s scope; it fails with ``reason`` (unless it is already done)."""
        if call.cancelled is None:
            call.cancelled = reason
        if call.scope is not None:
            call.scope.cancel()

    def _cancel_from_outside(self, call: Call, reason: BaseException) -> None:
        """Cancel ``call`` from a thread that waits for it (interrupted, or out of time)."""
        call_soon = self._call_soon
        if call_soon is not None:
            try:
                call_soon(self._cancel, call, reason)
            except RuntimeError:  # the loop has already stopped
                pass

    # ------------------------------------------------------------------ from any thread

    def _schedule(self, item: Call | object) -> None:
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
        self._call_soon(self._dispatch)

    @property
    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def call(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``await function(*args)`` in the loop and return its result.

        If the calling thread is interrupted while it waits (KeyboardInterrupt), the task
        in the loop is cancelled, so nothing is left running on its behalf.
        """
        call = Call(function, args)
        self._schedule(call)
        return self.wait(call)  # type: ignore[no-any-return]

    def call_within(self, seconds: float, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`call`, given up after ``seconds``: the task is cancelled and TimeoutError
        raised."""
        call = Call(function, args)
        self._schedule(call)
        return self.wait(call, seconds)  # type: ignore[no-any-return]

    def submit(self, function: Callable[..., Awaitable[Any]], *args: Any) -> Call:
        """Queue ``await function(*args)`` for the loop and return at once; `wait`
        gives the result. Calls start in the order they were submitted (on asyncio their
        first steps also run in that order; trio shuffles the tasks it runs)."""
        call = Call(function, args)
        self._schedule(call)
        return call

    def wait(self, call: Call, timeout: float | None = None) -> Any:
        """The result of a `submit`-ted call, once it is done (or raise its error);
        an interrupted wait cancels the call, as in `call`, and so does one that lasts
        longer than ``timeout`` seconds (TimeoutError)."""
        try:
            done = call.done.acquire(timeout=-1 if timeout is None else timeout)
        except BaseException:
            self._cancel_from_outside(call, KeyboardInterrupt())
            raise
        if not done:
            self._cancel_from_outside(call, TimeoutError())
            raise TimeoutError(f"the loop thread did not finish the call in {timeout} s")
        if call.error is not None:
            raise call.error
        return call.result

    def start(self, function: Callable[..., Awaitable[Any]]) -> None:
        """Start ``function(task_status=...)`` as a long-lived task in the loop's task group;
        return once it has called ``task_status.started()`` (raise if it fails before)."""

        async def start_in_group() -> None:
            assert self._task_group is not None
            await self._task_group.start(function)  # type: ignore[arg-type]

        self.call(start_in_group)

    def stop(self, timeout: float | None = None) -> None:
        """Stop the loop and join its thread (idempotent); ``timeout``: wait no longer."""
        try:
            self._schedule(_STOP)
        except RuntimeError:
            pass  # already stopped
        if not self.in_loop_thread:
            self._thread.join(timeout)


_Hosted = TypeVar("_Hosted", bound="LoopHosted")


class LoopHosted:
    """Base of the facade objects that own a loop thread hosting one async object.

    Subclasses set ``_loop`` and ``_aclose_hosted`` (the async object's close method) and
    call `_opened` once started. They get ``close()``, the context manager, a
    ResourceWarning (and cleanup) when garbage-collected unclosed, and a close at the
    interpreter's exit if still open then (`_close_at_exit`).
    """

    _closed = True
    _loop: LoopThread
    _aclose_hosted: Callable[[], Awaitable[None]]

    def _opened(self) -> None:
        self._closed = False
        _open_objects.add(self)

    def close(self) -> None:
        """Close the hosted object (e.g. GOAWAY, sockets closed) and end the loop thread.

        Idempotent."""
        self._close_within(None)

    def _close_within(self, seconds: float | None) -> None:
        """`close`, giving the hosted object ``seconds`` to close and the loop as long again
        to stop (None: as long as they take)."""
        if self._closed:
            return
        self._closed = True
        _open_objects.discard(self)
        try:
            if not self._loop.in_loop_thread:  # (from the loop itself: it stops after this)
                if seconds is None:
                    self._loop.call(self._aclose_hosted)
                else:
                    self._loop.call_within(seconds, self._aclose_hosted)
        finally:
            self._loop.stop(seconds)

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
        if sys.is_finalizing():
            # The loop's daemon thread no longer runs: a call into it would never return.
            # (_close_at_exit closed what was open when the program ended.)
            return
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


#: Facade objects started and not closed (weakly: an unreferenced one closes in __del__).
_open_objects: weakref.WeakSet[LoopHosted] = weakref.WeakSet()

#: How long each facade object left open at exit gets to close.
EXIT_CLOSE_SECONDS = 5.0


@atexit.register
def _close_at_exit() -> None:
    """Close every facade object still open when the program ends (GOAWAY sent, sockets
    closed), while the loop threads still run: once the interpreter finalizes, its daemon
    threads stop, and a close from __del__ would wait for them forever."""
    for hosted in list(_open_objects):
        try:
            hosted._close_within(EXIT_CLOSE_SECONDS)
        except Exception:  # the program is ending: nothing to report to
            pass
