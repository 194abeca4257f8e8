"""httpx with h2any's transport vs httpx's own HTTP/2 (``http2=True``), in one run.

Usage::

    python benchmarks/bench_httpx_transport.py [--rounds N] [--requests N] [--upload-mib N]
        [--upload-bytes-mib N] [--rows small download upload upload-bytes]
        [--backend asyncio|trio|uvloop] [--output docs/httpx.md]

Both sides are the same ``httpx.AsyncClient`` code; only the transport differs:
``transport=h2any.httpx.AsyncTransport()`` against ``http1=False, http2=True`` (httpcore),
one connection each, to one ``nghttpd`` (h2c, its defaults: 100 concurrent streams, 64 KiB
receive windows) on loopback, started once for the run. httpx's pool is capped at one
connection so that both sides are checked to use one; with its default limits it uses one
anyway and runs as fast (small GETs, 3 alternating rounds: 1,435 against 1,448 per CPU
second, best of each). Rows:

* ``small``: ``--requests`` (10,000) GETs of a 1-byte file, 100 in flight (worker tasks);
  status, body and HTTP/2 checked on every response.
* ``download``: one 64 MiB file, streamed (``aiter_raw``), its byte count checked.
* ``upload``: a 64 MiB body (``--upload-mib``) POSTed as an async iterator of 64 KiB pieces
  (httpx streams it; nghttpd discards it and answers 200 when it has all of it).
* ``upload-bytes``: a 64 MiB ``bytes`` body (``--upload-bytes-mib``, 0 to skip), in the first
  round only: httpx's HTTP/2 slices such a body quadratically and takes about a minute.

Each round runs every row for both clients in turn (h2any first in odd rounds, httpx first in
even ones), after an untimed warm-up request on the client's connection. A client's figure
is its best round (other processes only slow a run down); the ratio column is h2any's best
over httpx's best, and the last column the median of the same-round ratios. A second table
gives the same work per second of the client process's CPU time (``time.process_time``, all
threads; nghttpd is another process): it misses stalls, but moves far less than wall-clock
time when other processes compete for the CPUs. The machine is shared: run it twice.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_core import (  # noqa: E402
    BIG_FILE,
    BIG_SIZE,
    SMALL_BODY,
    SMALL_FILE,
    BenchmarkError,
    _run_async,
    _worker_pool,
    engine_name,
    load_average,
    nghttpd,
    write_output,
)

import h2any  # noqa: E402
import h2any.httpx  # noqa: E402

PIECE = 64 * 1024
CLIENTS = ("h2any.httpx", "httpx http2=True")
#: Rows measured in the first round only (httpx takes a minute for a 64 MiB bytes body).
ONCE = frozenset({"upload-bytes"})
MARK_START = "<!-- bench_httpx_transport:start -->"
MARK_END = "<!-- bench_httpx_transport:end -->"


Rate = tuple[float, float]  # work per second of wall-clock time, and per CPU second


class Clock:
    """Wall-clock and CPU time (this process, every thread) from its creation."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def rate(self, work: float) -> Rate:
        wall = time.perf_counter() - self.wall
        cpu = time.process_time() - self.cpu
        return work / wall, work / cpu


def make_client(which: str) -> httpx.AsyncClient:
    if which == "h2any.httpx":
        return httpx.AsyncClient(
            transport=h2any.httpx.AsyncTransport(trust_env=False), timeout=120.0
        )
    return httpx.AsyncClient(
        http1=False,
        http2=True,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        timeout=120.0,
        trust_env=False,
    )


def check(which: str, response: httpx.Response) -> None:
    if response.status_code != 200 or response.http_version != "HTTP/2":
        raise BenchmarkError(f"{which}: {response.status_code} over {response.http_version}")


async def warm(which: str, client: httpx.AsyncClient, origin: str) -> None:
    check(which, await client.get(f"{origin}/{SMALL_FILE}"))


def connections(which: str, client: httpx.AsyncClient) -> int:
    """How many connections the client opened (h2any) or holds (httpx's pool)."""
    transport = client._transport
    if isinstance(transport, h2any.httpx.AsyncTransport):
        assert transport.client is not None
        return transport.client.connections_opened
    pool = getattr(transport, "_pool", None)
    return len(list(getattr(pool, "connections", [])))


async def small(which: str, origin: str, count: int) -> Rate:
    url = f"{origin}/{SMALL_FILE}"
    async with make_client(which) as client:
        await warm(which, client, origin)

        async def one() -> None:
            response = await client.get(url)
            check(which, response)
            if response.content != SMALL_BODY:
                raise BenchmarkError(f"{which}: body {response.content!r}")

        clock = Clock()
        await _worker_pool(count, one)
        rate = clock.rate(count)
        if connections(which, client) != 1:
            raise BenchmarkError(f"{which}: {connections(which, client)} connections")
    return rate


async def download(which: str, origin: str) -> Rate:
    async with make_client(which) as client:
        await warm(which, client, origin)
        received = 0
        clock = Clock()
        async with client.stream("GET", f"{origin}/{BIG_FILE}") as response:
            check(which, response)
            async for chunk in response.aiter_raw():
                received += len(chunk)
        rate = clock.rate(received / 1e6)
    if received != BIG_SIZE:
        raise BenchmarkError(f"{which}: received {received} bytes, expected {BIG_SIZE}")
    return rate


async def upload(which: str, origin: str, size: int) -> Rate:
    payload = os.urandom(PIECE)

    async def pieces() -> AsyncIterator[bytes]:
        left = size
        while left:
            n = min(left, PIECE)
            yield payload[:n]
            left -= n

    async with make_client(which) as client:
        await warm(which, client, origin)
        clock = Clock()
        response = await client.post(
            f"{origin}/{SMALL_FILE}",
            content=pieces(),
            headers={"content-length": str(size)},
        )
        rate = clock.rate(size / 1e6)
        check(which, response)
    return rate


async def upload_bytes(which: str, origin: str, size: int) -> Rate:
    payload = os.urandom(size)
    async with make_client(which) as client:
        await warm(which, client, origin)
        clock = Clock()
        response = await client.post(f"{origin}/{SMALL_FILE}", content=payload)
        rate = clock.rate(size / 1e6)
        check(which, response)
    return rate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--upload-mib", type=int, default=64)
    parser.add_argument("--upload-bytes-mib", type=int, default=64)
    parser.add_argument(
        "--output",
        type=Path,
        help="also write the tables into this file, between its bench_httpx_transport markers",
    )
    parser.add_argument("--backend", choices=("asyncio", "trio", "uvloop"), default="asyncio")
    parser.add_argument(
        "--rows",
        nargs="+",
        choices=("small", "download", "upload", "upload-bytes"),
        help="measure only these rows (default: all; upload-bytes unless --upload-bytes-mib 0)",
    )
    args = parser.parse_args(argv)
    rows: dict[str, tuple[str, Callable[[str, str], Awaitable[Rate]]]] = {
        "small": ("req/s", lambda which, origin: small(which, origin, args.requests)),
        "download": ("MB/s", download),
        "upload": ("MB/s", lambda which, origin: upload(which, origin, args.upload_mib << 20)),
    }
    if args.upload_bytes_mib:
        rows["upload-bytes"] = (
            "MB/s",
            lambda which, origin: upload_bytes(which, origin, args.upload_bytes_mib << 20),
        )
    if args.rows:
        rows = {row: spec for row, spec in rows.items() if row in args.rows}
    results: dict[tuple[str, str], list[Rate]] = {}
    load_before = load_average()
    with nghttpd() as server:
        for number in range(args.rounds):
            order = CLIENTS if number % 2 == 0 else tuple(reversed(CLIENTS))
            for row, (_unit, run) in rows.items():
                if row in ONCE and number:
                    continue
                for which in order:
                    holder: list[Rate] = []

                    async def measure(
                        which: str = which, run: Any = run, holder: list[Rate] = holder
                    ) -> float:
                        holder.append(await run(which, server.origin))
                        return 0.0

                    _run_async(args.backend, measure)
                    wall, cpu = holder[0]
                    results.setdefault((row, which), []).append((wall, cpu))
                    print(
                        f"round {number + 1} {row:12} {which:18} {wall:10.1f} "
                        f"(per CPU second: {cpu:.1f})",
                        flush=True,
                    )
    lines = [
        f"httpx {httpx.__version__}, h2any {h2any.__version__} ({engine_name()}), "
        f"{args.backend}, nghttpd defaults (h2c), {args.rounds} rounds, "
        f"{args.requests} small GETs a round; load average before {load_before}, "
        f"after {load_average()}."
    ]
    for title, index in (("Wall-clock time", 0), ("Per second of client CPU time", 1)):
        lines += [
            "",
            f"{title}:",
            "",
            "| row | unit | h2any.httpx (best) | httpx http2=True (best) | ratio "
            "| same-round median |",
            "|---|---|--:|--:|--:|--:|",
        ]
        for row, (unit, _run) in rows.items():
            ours = [rate[index] for rate in results[(row, CLIENTS[0])]]
            theirs = [rate[index] for rate in results[(row, CLIENTS[1])]]
            same_round = statistics.median(a / b for a, b in zip(ours, theirs, strict=True))
            lines.append(
                f"| {row} | {unit} | {max(ours):.1f} | {max(theirs):.1f} | "
                f"{max(ours) / max(theirs):.2f}x | {same_round:.2f}x |"
            )
    section = "\n".join(lines)
    print()
    print(section)
    if args.output is not None:
        write_output(args.output, section, MARK_START, MARK_END)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
