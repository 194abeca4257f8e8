"""Deadlines: one watchdog task per connection wakes the waiters whose deadline passed.

A task about to wait on a stream (for its headers, a body chunk, or room for its upload)
writes a deadline on its `Waiter` and registers it with the connection's
`Watchdog`, which sleeps until the earliest deadline and wakes the waiters whose
deadline has passed; the waiter then raises the timeout itself, named by what it waited for.
The connection task moves a deadline as its stream progresses (pool -> write -> read).

Why not a cancel scope per wait: each costs a timer, rescheduled at every move; on asyncio
that was a third of the small-request time. Here a wait costs a dict entry.

Also here: the running event loop's own one-shot event and clock (anyio's wrappers cost a
backend lookup per call, paid several times per request), and the writer loop's wake-up flag.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, final

import anyio

from ._socket import running_on_trio

__all__ = ("EventLike", "Signal", "Waiter", "Watchdog", "native_primitives")

# A deadline this close counts as passed (timers may fire a hair early).
DEADLINE_SLACK: Final = 0.001


class EventLike(Protocol):
    """A one-shot event: ``set()`` once, ``await wait()``."""

    def set(self) -> None: ...

    def wait(self) -> Awaitable[Any]: ...


@final
class _FutureEvent(asyncio.Future[None]):
    """A one-shot asyncio event: a future, awaited as it is. ``asyncio.Event`` takes a
    global lock to bind itself to the loop, once per event -- once per request here."""

    __slots__ = ()

    def set(self) -> None:
        if not self.done():
            self.set_result(None)

    def wait(self) -> asyncio.Future[None]:
        return self


def native_primitives() -> tuple[Callable[[], EventLike], Callable[[], float]]:
    """The running event loop's own Event class and clock.

    Same clock as ``anyio.current_time()``, so deadlines mix with anyio's cancel scopes.
    """
    if running_on_trio():
        import trio

        return trio.Event, trio.current_time
    loop = asyncio.get_running_loop()
    return functools.partial(_FutureEvent, loop=loop), loop.time


@final
class Signal:
    """A wake-up flag with at most one waiter (the writer loop)."""

    __slots__ = ("_event", "_flag")

    def __init__(self) -> None:
        self._flag = False
        self._event: anyio.Event | None = None

    def set(self) -> None:
        if not self._flag:
            self._flag = True
            if self._event is not None:
                self._event.set()

    async def wait(self) -> None:
        if not self._flag:
            self._event = anyio.Event()
            try:
                await self._event.wait()
            finally:
                self._event = None
        self._flag = False


class Waiter:
    """One task's wait on a stream: its wake-up event and its deadline.

    ``deadline`` is on the connection's clock (``math.inf``: none); ``timed_out`` tells,
    after the wait, whether the watchdog ended it.
    """

    __slots__ = ("deadline", "event", "timed_out")

    def __init__(self) -> None:
        self.event: EventLike | None = None
        self.deadline = math.inf
        self.timed_out = False

    def wake(self) -> None:
        if self.event is not None:
            self.event.set()


@final
class Watchdog:
    """Keeps the deadlines of every waiter of one connection (see the module docstring)."""

    __slots__ = ("_alarm", "_due", "_watched", "clock", "new_event")

    def __init__(self) -> None:
        self._watched: dict[Waiter, None] = {}
        self._alarm: anyio.Event | None = None  # wakes the watchdog early
        self._due = math.inf  # when the watchdog wakes by itself
        # The running loop's own Event class and clock, once the connection task starts.
        self.new_event: Callable[[], EventLike] = anyio.Event
        self.clock: Callable[[], float] = anyio.current_time

    def start(self) -> None:
        """Called in the connection task: use the running loop's own primitives."""
        self.new_event, self.clock = native_primitives()

    def watch(self, waiter: Waiter, limit: float | None, cap: float = math.inf) -> Awaitable[Any]:
        """``waiter`` starts waiting, ``limit`` seconds at most (None: until the connection
        task moves its deadline), and never past the clock time ``cap`` (a request's total
        deadline); returns what to await. The wait ends, however it ends,
        with `unwatch`. (Not a coroutine wrapping the wait: thousands of queued
        requests each hold their chain of coroutines.)"""
        waiter.timed_out = False
        self._watched[waiter] = None
        self.restart(waiter, limit, cap)
        waiter.event = event = self.new_event()
        return event.wait()

    def unwatch(self, waiter: Waiter) -> None:
        waiter.event = None
        self._watched.pop(waiter, None)

    def restart(self, waiter: Waiter, limit: float | None, cap: float = math.inf) -> None:
        """Restart ``waiter``'s deadline: ``limit`` seconds from now (None: none), and no
        later than the clock time ``cap``."""
        if limit is None:
            waiter.deadline = deadline = cap
            if deadline == math.inf:
                return
        else:
            deadline = self.clock() + limit
            if deadline > cap:
                deadline = cap
            waiter.deadline = deadline
        if deadline < self._due:
            # Earlier than the watchdog's alarm: re-arm it (once; later ones need not).
            self._due = deadline
            if self._alarm is not None:
                self._alarm.set()

    async def run(self) -> None:
        """Wake the waiters whose deadline has passed; they raise their timeout themselves.

        It sleeps until the earliest deadline (deadlines only move later, except when a new
        waiter wakes it) and scans the waiters only when it wakes: with uniform timeouts,
        about once per timeout.
        """
        watched = self._watched
        while True:
            soon = self.clock() + DEADLINE_SLACK
            due = math.inf
            for waiter in list(watched):
                deadline = waiter.deadline
                if deadline <= soon:
                    del watched[waiter]
                    waiter.timed_out = True
                    waiter.wake()
                elif deadline < due:
                    due = deadline
            if soon < self._due < due:
                # Keep an alarm already asked for, even if its waiter has left: waits come
                # and go (one per request, one per piece of an upload), and each new one
                # that ends after the alarm then needs no wake-up of the watchdog.
                due = self._due
            self._due = due
            self._alarm = alarm = anyio.Event()
            with anyio.CancelScope(deadline=due):
                await alarm.wait()
