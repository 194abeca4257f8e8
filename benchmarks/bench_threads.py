"""Threads sharing one connection: h2any.sync against httpx (http2=True).

Usage::

    python benchmarks/bench_threads.py [--quick] [--requests N] [--threads N] [--repeat N]
        [--backend asyncio|uvloop|trio] [--client h2any|hyper-shim|httpx ...]

Starts its own nghttpd (h2c, default settings; ``bench_core.nghttpd``) on a free loopback
port and stops it at the end. ``--threads`` (8) threads share ONE client and together make
``--requests`` (20,000) GETs of a 1-byte file, each thread one request at a time. Clients:

* ``h2any``: one ``h2any.sync.Connection`` (``conn.request(...).read()``);
* ``hyper-shim``: one ``h2any.sync.HTTP20Connection`` (``request`` -> ``getresponse`` ->
  ``read``), the same connection under hyper's API;
* ``httpx``: one ``httpx.Client(http1=False, http2=True)`` limited to one connection.

h2any's loop thread runs the facade's default unless ``--backend`` says otherwise: asyncio
on uvloop when uvloop is installed (``--backend asyncio`` forces plain asyncio).

The repetitions are interleaved -- repetition 1 of every client, then repetition 2, ... --
so that a noisy machine hits all clients alike; each ratio to httpx is taken between runs
of the same repetition, and the median of those ratios is reported, with the median rate
and process CPU time per request of each client. Each repetition uses a fresh client whose
connection is opened outside the timed part, after one untimed warm-up per client.

Every response is checked (status, body, HTTP/2; for httpx also that the pool held one
connection), so a broken client cannot look fast. A repetition that fails is reported, not
timed, and run again, up to ``--retries`` (5) times: httpx's thread-shared HTTP/2
connection often stalls until its timeout (``ReadTimeout``), or fails with an internal
error (``StreamIDTooLowError``, ``KeyError``, an h2 state error), more often the longer
the run.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import bench_core
import httpx

import h2any
import h2any.sync
from h2any.sync._portal import default_backend_options

SMALL_FILE = bench_core.SMALL_FILE
SMALL_BODY = bench_core.SMALL_BODY
CLIENTS = ("h2any", "hyper-shim", "httpx")
# Per-step timeout of every client: a stalled run fails fast instead of hanging.
TIMEOUT = 10.0


class BenchmarkError(Exception):
    """A response failed validation: the result must not be reported."""


# ---------------------------------------------------------------------------- clients


def _run_threads(threads: int, count: int, one: Callable[[], None]) -> float:
    """Make ``count`` calls of ``one`` from ``threads`` threads; return elapsed seconds."""
    shares = [count // threads + (1 if index < count % threads else 0) for index in range(threads)]
    failures: list[BaseException] = []
    start = threading.Barrier(threads + 1)

    def work(share: int) -> None:
        start.wait()
        try:
            for _ in range(share):
                one()
        except BaseException as exc:
            failures.append(exc)

    workers = [threading.Thread(target=work, args=(share,)) for share in shares]
    for worker in workers:
        worker.start()
    start.wait()
    began = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise failures[0]
    return elapsed


def loop_options(backend: str | None) -> tuple[str, dict[str, Any] | None]:
    """(``backend``, ``backend_options``) for h2any.sync, from ``--backend``."""
    if backend is None:
        return "asyncio", None  # the facade's default
    if backend == "uvloop":
        return "asyncio", {"use_uvloop": True}
    return backend, {}


def loop_description(backend: str | None) -> str:
    name, options = loop_options(backend)
    if options is None:
        options = default_backend_options(name)
    return "asyncio on uvloop" if options.get("use_uvloop") else name


def h2any_run(origin: str, threads: int, count: int, backend: str | None) -> float:
    name, options = loop_options(backend)
    with h2any.sync.Connection(
        origin, backend=name, backend_options=options, timeout=TIMEOUT
    ) as conn:
        conn.request("GET", "/" + SMALL_FILE).read()  # connected, outside the timed part

        def one() -> None:
            response = conn.request("GET", "/" + SMALL_FILE)
            body = response.read()
            if response.status != 200 or body != SMALL_BODY:
                raise BenchmarkError(f"h2any: status {response.status}, body {body!r}")

        return _run_threads(threads, count, one)


def shim_run(origin: str, threads: int, count: int, backend: str | None) -> float:
    name, options = loop_options(backend)
    host = origin.split("://", 1)[1]
    with h2any.sync.HTTP20Connection(
        host, secure=False, backend=name, backend_options=options, timeout=TIMEOUT
    ) as conn:
        conn.getresponse(conn.request("GET", "/" + SMALL_FILE)).read()

        def one() -> None:
            response = conn.getresponse(conn.request("GET", "/" + SMALL_FILE))
            body = response.read()
            if response.status != 200 or body != SMALL_BODY:
                raise BenchmarkError(f"hyper-shim: status {response.status}, body {body!r}")

        return _run_threads(threads, count, one)


def httpx_run(origin: str, threads: int, count: int, backend: str | None) -> float:
    url = origin + "/" + SMALL_FILE
    with httpx.Client(
        http1=False,
        http2=True,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        timeout=httpx.Timeout(TIMEOUT),
    ) as client:
        first = client.get(url)
        if first.status_code != 200 or first.http_version != "HTTP/2":
            raise BenchmarkError(f"httpx: {first.status_code} over {first.http_version}")

        def one() -> None:
            response = client.get(url)
            if (
                response.status_code != 200
                or response.http_version != "HTTP/2"
                or response.content != SMALL_BODY
            ):
                raise BenchmarkError(
                    f"httpx: {response.status_code} over {response.http_version}, "
                    f"body {response.content!r}"
                )

        elapsed = _run_threads(threads, count, one)
        # httpx exposes no connection count: look at httpcore's pool (read-only).
        pool = getattr(client._transport, "_pool", None)
        infos = [c.info() for c in getattr(pool, "connections", [])]
        if len(infos) != 1 or "HTTP/2" not in infos[0]:
            raise BenchmarkError(f"httpx: expected one HTTP/2 connection, got {infos}")
        return elapsed


RUNNERS: dict[str, Callable[[str, int, int, str | None], float]] = {
    "h2any": h2any_run,
    "hyper-shim": shim_run,
    "httpx": httpx_run,
}


# ---------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2,000 requests, for a smoke run")
    parser.add_argument("--requests", type=int, default=None, help="total GETs (20,000)")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--retries", type=int, default=5, help="reruns of a failed repetition")
    parser.add_argument(
        "--backend",
        choices=("asyncio", "uvloop", "trio"),
        default=None,
        help="h2any's loop thread (default: the facade's, uvloop when installed)",
    )
    parser.add_argument("--client", action="append", choices=CLIENTS, dest="clients")
    args = parser.parse_args(argv)
    if args.requests is None:
        args.requests = 2_000 if args.quick else 20_000
    args.clients = list(dict.fromkeys(args.clients or CLIENTS))
    return args


class Runs:
    """The timed repetitions of one client: rate and process CPU per request of each."""

    def __init__(self) -> None:
        self.rates: list[float | None] = []
        self.cpu: list[float] = []
        self.failures: list[str] = []

    def measure(self, run: Callable[[], float], count: int, retries: int) -> None:
        for _attempt in range(retries + 1):
            cpu_before = time.process_time()
            try:
                elapsed = run()
            except Exception as exc:  # reported, not timed; the repetition runs again
                self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            self.cpu.append((time.process_time() - cpu_before) / count)
            self.rates.append(count / elapsed)
            return
        self.rates.append(None)

    @property
    def timed(self) -> list[float]:
        return [rate for rate in self.rates if rate is not None]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(
        f"{args.threads} threads sharing one client, {args.requests:,} GETs of 1 byte, "
        f"nghttpd h2c; {args.repeat} interleaved repetitions; "
        f"h2any loop thread: {loop_description(args.backend)}"
    )
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, h2any {h2any.__version__}, "
        f"httpx {httpx.__version__}; load average at the start: {bench_core.load_average()}"
    )
    runs = {client: Runs() for client in args.clients}
    with bench_core.nghttpd(files={}) as server:
        origin = server.origin
        warm = min(args.requests, 1_000)
        timed = []
        for client in args.clients:
            warm_up = Runs()
            warm_up.measure(
                partial(RUNNERS[client], origin, args.threads, warm, args.backend),
                warm,
                args.retries,
            )
            runs[client].failures += warm_up.failures
            if warm_up.timed:
                timed.append(client)
        for repetition in range(args.repeat):
            # Rotate the order too, so that no client always runs first (or last).
            shift = repetition % max(len(timed), 1)
            for client in timed[shift:] + timed[:shift]:
                runs[client].measure(
                    partial(RUNNERS[client], origin, args.threads, args.requests, args.backend),
                    args.requests,
                    args.retries,
                )
    for client, result in runs.items():
        for failure in dict.fromkeys(result.failures):
            print(f"  {client:<11} a run FAILED ({result.failures.count(failure)}x): {failure}")
        if not result.timed:
            print(f"  {client:<11} FAILED: no timed run")
            continue
        shown = ", ".join("failed" if rate is None else f"{rate:,.0f}" for rate in result.rates)
        print(
            f"  {client:<11} {statistics.median(result.timed):>9,.0f} req/s   "
            f"{statistics.median(result.cpu) * 1e6:>5,.0f} us CPU/req   (runs: {shown})"
        )
    reference = runs.get("httpx")
    if reference is not None and reference.timed:
        for client, result in runs.items():
            if client == "httpx" or not result.timed:
                continue
            ratios = [
                mine / theirs
                for mine, theirs in zip(result.rates, reference.rates, strict=True)
                if mine is not None and theirs is not None
            ]
            if ratios:
                shown = ", ".join(f"{ratio:.2f}" for ratio in ratios)
                print(
                    f"  {client} / httpx: {statistics.median(ratios):.2f}x "
                    f"(median of same-repetition ratios: {shown})"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
