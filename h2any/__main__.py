"""Command line entry point: ``python -m h2any`` (or the ``h2any`` console script).

``h2any demo`` runs the demo below; anything else is the curl-like client of
`h2any._cli` (``h2any [METHOD] URL [options]``).

The demo starts the embedded HTTP/2 server from `h2any.testing` on a free loopback
port, opens ONE [`h2any.Connection`][h2any.Connection] to it and multiplexes many concurrent
requests over it, checking every response body.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

import anyio

import h2any
from h2any.testing import serve

__all__ = ("main",)


_MAX_SIZE = 120_000
_PATTERN = bytes(range(251)) * (_MAX_SIZE // 251 + 1)


def _pattern(n: int) -> bytes:
    """What the server's ``/bytes/N`` route returns: byte ``i`` is ``i % 251``."""
    return _PATTERN[:n]


@dataclass
class _Tally:
    in_flight: int = 0
    peak: int = 0
    done: int = 0
    gets: int = 0
    posts: int = 0
    bytes_down: int = 0
    bytes_up: int = 0
    stream_ids: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _plan(i: int) -> tuple[str, str, bytes, bytes]:
    """Request ``i``: (method, path, request body, expected response body)."""
    if i % 5 == 4:
        body = f"request {i} says hello ".encode() * (1 + i % 37)
        return "POST", "/echo", body, body
    size = (i * 7919) % 16_000 + (100_000 if i % 50 == 0 else 0)  # 0 B .. 116 kB, varied
    return "GET", f"/bytes/{size}", b"", _pattern(size)


async def _one(conn: h2any.Connection, i: int, tally: _Tally) -> None:
    method, path, body, expected = _plan(i)
    tally.in_flight += 1
    tally.peak = max(tally.peak, tally.in_flight)
    try:
        headers = {"content-type": "application/octet-stream"} if body else {}
        resp = await conn.request(method, path, headers=headers, body=body)
        data = await resp.read()
    except Exception as exc:
        tally.failures.append(f"#{i} {method} {path}: {exc!r}")
        return
    finally:
        tally.in_flight -= 1
    tally.stream_ids.append(resp.stream_id)
    tally.bytes_down += len(data)
    tally.bytes_up += len(body)
    tally.done += 1
    if method == "GET":
        tally.gets += 1
    else:
        tally.posts += 1
    if resp.status != 200:
        tally.failures.append(f"#{i} {method} {path}: status {resp.status}")
    elif data != expected:
        tally.failures.append(
            f"#{i} {method} {path}: body mismatch ({len(data)} bytes, expected {len(expected)})"
        )


async def _demo(n_requests: int, max_streams: int) -> int:
    out = sys.stdout
    async with serve(max_concurrent_streams=max_streams) as server:
        print(f"embedded HTTP/2 server : {server.url}  (h2c, prior knowledge)", file=out)
        async with h2any.Connection(server.url) as conn:
            sample = await conn.request("GET", "/", headers={"user-agent": "h2any-demo"})
            sample_body = await sample.read()

            tally = _Tally()
            start = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for i in range(n_requests):
                    tg.start_soon(_one, conn, i, tally)
            elapsed = time.perf_counter() - start

    ids = sorted(tally.stream_ids)
    stats = server.stats
    print(
        f"requests sent          : {n_requests} over ONE connection "
        f"({tally.gets} GET /bytes/N, {tally.posts} POST /echo)",
        file=out,
    )
    print(f"completed and verified : {tally.done - len(tally.failures)} / {n_requests}", file=out)
    print(
        f"concurrency achieved   : {tally.peak} requests in flight at once (client side); "
        f"{stats.max_active_streams} streams open at once (server side, limit {max_streams})",
        file=out,
    )
    if ids:
        print(
            f"streams used           : {len(set(ids))} distinct, "
            f"first id {ids[0]}, last id {ids[-1]}",
            file=out,
        )
    print(
        f"bytes                  : {tally.bytes_down:,} body bytes down, "
        f"{tally.bytes_up:,} up; {stats.bytes_sent:,} / {stats.bytes_received:,} "
        f"on the wire (server out / in)",
        file=out,
    )
    rate = n_requests / elapsed if elapsed > 0 else float("inf")
    print(
        f"elapsed                : {elapsed:.3f} s  ->  {rate:,.0f} req/s, "
        f"{tally.bytes_down / elapsed / 1e6 if elapsed > 0 else 0:,.1f} MB/s down",
        file=out,
    )
    print(f"server connections     : {stats.connections}", file=out)
    print(
        f"sample response        : GET / -> {sample.status} on stream {sample.stream_id}", file=out
    )
    for name, value in sample.headers.items():
        print(f"    {name}: {value}", file=out)
    print(f"    body: {sample_body.decode(errors='replace').strip()!r}", file=out)

    if tally.failures:
        print(f"FAILED: {len(tally.failures)} request(s) went wrong:", file=sys.stderr)
        for line in tally.failures[:20]:
            print(f"  {line}", file=sys.stderr)
        return 1
    if stats.connections != 1:
        print(f"FAILED: expected one connection, server saw {stats.connections}", file=sys.stderr)
        return 1
    print("OK", file=out)
    return 0


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="h2any", description="h2any command line tools")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser(
        "demo",
        help="multiplex many requests over one connection to an embedded HTTP/2 server",
        description="Start the embedded HTTP/2 server from h2any.testing on a free loopback "
        "port, send many concurrent requests over ONE h2any connection, verify every "
        "response body and report what happened.",
    )
    demo.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="async backend to run on (default: asyncio; trio needs h2any[trio])",
    )
    demo.add_argument(
        "--requests",
        type=int,
        default=1000,
        metavar="N",
        help="number of concurrent requests (default: 1000)",
    )
    demo.add_argument(
        "--max-streams",
        type=int,
        default=1000,
        metavar="N",
        help="server's SETTINGS_MAX_CONCURRENT_STREAMS (default: 1000)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``h2any`` command line; return the process exit status.

    ``h2any demo ...`` runs the demo, ``h2any ws URL`` a WebSocket session
    (`h2any._cli_ws.main`); every other command line goes to the HTTP/2 client
    (`h2any._cli.main`).
    """
    args_list = sys.argv[1:] if argv is None else list(argv)
    if args_list and args_list[0] == "ws":
        from h2any._cli_ws import main as ws_main

        return ws_main(args_list[1:])
    if not args_list or args_list[0] != "demo":
        from h2any._cli import main as cli_main

        return cli_main(args_list)
    return _demo_main(args_list)


def _demo_main(argv: list[str]) -> int:
    """``h2any demo [--backend B] [--requests N] [--max-streams N]``."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command != "demo":
        parser.print_help()
        return 2
    if args.requests < 1 or args.max_streams < 1:
        parser.error("--requests and --max-streams must be positive")
    from h2any._cli import EXIT_USAGE, backend_problem

    problem = backend_problem(args.backend)
    if problem is not None:
        print(f"h2any demo: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return anyio.run(_demo, args.requests, args.max_streams, backend=args.backend)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
