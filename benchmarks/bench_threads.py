"""Threads sharing one connection: h2any.sync against httpx (http2=True).

Usage::

    python benchmarks/bench_threads.py [--quick] [--requests N] [--threads N] [--repeat N]
        [--backend asyncio|trio] [--client h2any|hyper-shim|httpx ...]

Starts its own nghttpd (h2c, default settings) on a free loopback port and stops it at the
end. ``--threads`` (8) threads share ONE client and together make ``--requests`` (20,000)
GETs of a 1-byte file, each thread one request at a time. Clients:

* ``h2any``: one ``h2any.sync.Connection`` (``conn.request(...).read()``);
* ``hyper-shim``: one ``h2any.sync.HTTP20Connection`` (``request`` -> ``getresponse`` ->
  ``read``), the same connection under hyper's API;
* ``httpx``: one ``httpx.Client(http1=False, http2=True)`` limited to one connection.

Each repetition uses a fresh client whose connection is opened outside the timed part;
the median of ``--repeat`` (3) timed repetitions is reported, after one untimed warm-up.
Every response is checked (status, body, HTTP/2; for httpx also that the pool held one
connection), so a broken client cannot look fast.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

import h2any
import h2any.sync

SMALL_FILE = "1b"
SMALL_BODY = b"a"
CLIENTS = ("h2any", "hyper-shim", "httpx")


class BenchmarkError(Exception):
    """A response failed validation: the result must not be reported."""


# ---------------------------------------------------------------------------- the server


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(proc: subprocess.Popen[bytes], port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


@contextlib.contextmanager
def nghttpd() -> Iterator[int]:
    """Run nghttpd (h2c, defaults) on a free loopback port; yield the port."""
    binary = shutil.which("nghttpd")
    if binary is None:
        raise SystemExit("nghttpd is missing: apt-get install nghttp2-server")
    with tempfile.TemporaryDirectory(prefix="h2any-bench-threads-") as tmp:
        (Path(tmp) / SMALL_FILE).write_bytes(SMALL_BODY)
        for _attempt in range(5):
            port = _free_port()
            proc = subprocess.Popen(
                [binary, "--no-tls", "-a", "127.0.0.1", "-d", tmp, str(port)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                if _listening(proc, port):
                    yield port
                    return
            finally:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        raise SystemExit("could not start nghttpd on a free port")


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


def h2any_run(origin: str, threads: int, count: int, backend: str) -> float:
    with h2any.sync.Connection(origin, backend=backend, timeout=60) as conn:
        conn.request("GET", "/" + SMALL_FILE).read()  # connected, outside the timed part

        def one() -> None:
            response = conn.request("GET", "/" + SMALL_FILE)
            body = response.read()
            if response.status != 200 or body != SMALL_BODY:
                raise BenchmarkError(f"h2any: status {response.status}, body {body!r}")

        return count / _run_threads(threads, count, one)


def shim_run(origin: str, threads: int, count: int, backend: str) -> float:
    host = origin.split("://", 1)[1]
    with h2any.sync.HTTP20Connection(host, secure=False, backend=backend, timeout=60) as conn:
        conn.getresponse(conn.request("GET", "/" + SMALL_FILE)).read()

        def one() -> None:
            response = conn.getresponse(conn.request("GET", "/" + SMALL_FILE))
            body = response.read()
            if response.status != 200 or body != SMALL_BODY:
                raise BenchmarkError(f"hyper-shim: status {response.status}, body {body!r}")

        return count / _run_threads(threads, count, one)


def httpx_run(origin: str, threads: int, count: int, backend: str) -> float:
    url = origin + "/" + SMALL_FILE
    with httpx.Client(
        http1=False,
        http2=True,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        timeout=httpx.Timeout(60.0),
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

        rate = count / _run_threads(threads, count, one)
        # httpx exposes no connection count: look at httpcore's pool (read-only).
        pool = getattr(client._transport, "_pool", None)
        infos = [c.info() for c in getattr(pool, "connections", [])]
        if len(infos) != 1 or "HTTP/2" not in infos[0]:
            raise BenchmarkError(f"httpx: expected one HTTP/2 connection, got {infos}")
        return rate


RUNNERS: dict[str, Callable[[str, int, int, str], float]] = {
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
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    parser.add_argument("--client", action="append", choices=CLIENTS, dest="clients")
    args = parser.parse_args(argv)
    if args.requests is None:
        args.requests = 2_000 if args.quick else 20_000
    args.clients = list(dict.fromkeys(args.clients or CLIENTS))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    print(
        f"{args.threads} threads sharing one client, {args.requests:,} GETs of 1 byte, "
        f"nghttpd h2c; median of {args.repeat}; h2any loop thread: {args.backend}"
    )
    print(
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, h2any {h2any.__version__}, "
        f"httpx {httpx.__version__}"
    )
    medians: dict[str, float] = {}
    with nghttpd() as port:
        origin = f"http://127.0.0.1:{port}"
        for client in args.clients:
            run = RUNNERS[client]
            try:
                run(origin, args.threads, min(args.requests, 1_000), args.backend)  # warm-up
                rates = [
                    run(origin, args.threads, args.requests, args.backend)
                    for _ in range(args.repeat)
                ]
            except Exception as exc:  # a failed client is reported, not timed
                print(f"  {client:<11} FAILED: {type(exc).__name__}: {exc}")
                continue
            medians[client] = statistics.median(rates)
            shown = ", ".join(f"{rate:,.0f}" for rate in rates)
            print(f"  {client:<11} {medians[client]:>9,.0f} req/s   (runs: {shown})")
    if "httpx" in medians:
        for client in medians:
            if client != "httpx":
                print(f"  {client} / httpx: {medians[client] / medians['httpx']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
