"""gRPC on one channel: h2any.grpc (asyncio, trio) beside grpcio's own asyncio client.

Usage::

    python benchmarks/bench_grpc.py [--calls N] [--in-flight N] [--messages N] [--repeat N]

Starts the test suite's grpcio server (``tests/grpc_server.py``, generic handlers, bytes in
and out, no generated code) in a process of its own, and measures two scenarios on ONE
channel per client, in this process:

* ``unary``: ``--calls`` (5,000) unary calls of ``/pkg.Test/Echo`` (16-byte message) with
  ``--in-flight`` (100) at a time: calls/s;
* ``stream``: one bidirectional ``/pkg.Echo/Chat`` call, ``--messages`` (20,000) 64-byte
  messages written by one task while another reads the echoes: messages/s.

Clients: ``h2any.grpc.Channel`` on asyncio and on trio, and ``grpc.aio.insecure_channel``
on asyncio. Each figure is the median of ``--repeat`` (3) interleaved repetitions after an
untimed warm-up, with the process CPU time per call / message (grpcio's C core threads
included). Every reply is checked. The server is Python grpcio with a thread pool, shared
by all clients and on the same 2 CPUs: it is the bottleneck of the unary scenario, so the
CPU time per call says more about the clients than the rate does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from grpc_server import spawn_grpc_server

import h2any.grpc

Scenario = Callable[[str, argparse.Namespace], Awaitable[int]]


async def h2any_unary(url: str, options: argparse.Namespace) -> int:
    async with h2any.grpc.Channel(url) as channel:
        echo = channel.unary_unary("/pkg.Test/Echo")
        assert await echo(b"warm-up") == b"warm-up"
        return await _timed_unary(lambda message: echo(message), options)


async def h2any_stream(url: str, options: argparse.Namespace) -> int:
    async with h2any.grpc.Channel(url) as channel:
        assert await channel.unary_unary("/pkg.Test/Echo")(b"warm-up") == b"warm-up"
        call = channel.stream_stream("/pkg.Echo/Chat")()
        message = b"m" * 64

        async def send() -> None:
            for _ in range(options.messages):
                await call.write(message)
            await call.done_writing()

        received = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            async for reply in call:
                assert reply == message
                received += 1
        assert received == options.messages
        return received


async def grpcio_unary(url: str, options: argparse.Namespace) -> int:
    import grpc

    async with grpc.aio.insecure_channel(url.removeprefix("http://")) as channel:
        echo = channel.unary_unary("/pkg.Test/Echo")
        assert await echo(b"warm-up") == b"warm-up"
        return await _timed_unary(lambda message: echo(message), options)


async def grpcio_stream(url: str, options: argparse.Namespace) -> int:
    import grpc

    async with grpc.aio.insecure_channel(url.removeprefix("http://")) as channel:
        assert await channel.unary_unary("/pkg.Test/Echo")(b"warm-up") == b"warm-up"
        call = channel.stream_stream("/pkg.Echo/Chat")()
        message = b"m" * 64

        async def send() -> None:
            for _ in range(options.messages):
                await call.write(message)
            await call.done_writing()

        received = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(send)
            async for reply in call:
                assert reply == message
                received += 1
        assert received == options.messages
        return received


async def _timed_unary(
    call: Callable[[bytes], Awaitable[bytes]], options: argparse.Namespace
) -> int:
    remaining = options.calls
    message = b"0123456789abcdef"

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            assert await call(message) == message

    async with anyio.create_task_group() as tg:
        for _ in range(options.in_flight):
            tg.start_soon(worker)
    return options.calls


CLIENTS: dict[str, tuple[str, Scenario, Scenario]] = {
    "h2any asyncio": ("asyncio", h2any_unary, h2any_stream),
    "h2any trio": ("trio", h2any_unary, h2any_stream),
    "grpc.aio asyncio": ("asyncio", grpcio_unary, grpcio_stream),
}


def measure(scenario: Scenario, backend: str, url: str, options: argparse.Namespace) -> tuple:
    async def timed() -> tuple[int, float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        count = await scenario(url, options)
        return count, time.perf_counter() - wall, time.process_time() - cpu

    return anyio.run(timed, backend=backend)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    server = spawn_grpc_server()
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        for _ in range(options.repeat):
            for name, (backend, unary, stream) in CLIENTS.items():
                for scenario_name, scenario in (("unary", unary), ("stream", stream)):
                    count, wall, cpu = measure(scenario, backend, server.url, options)
                    results.setdefault((name, scenario_name), []).append(
                        (count / wall, cpu / count * 1e6)
                    )
    finally:
        server.stop()
    print(f"# bench_grpc: {options}, load average {os.getloadavg()[0]:.2f}")
    print(f"{'client':18} {'scenario':8} {'rate/s':>9} {'CPU us/op':>10} {'rate vs grpc.aio':>17}")
    for (name, scenario_name), runs in results.items():
        rate = statistics.median(r for r, _ in runs)
        cpu = statistics.median(c for _, c in runs)
        reference = statistics.median(r for r, _ in results[("grpc.aio asyncio", scenario_name)])
        print(f"{name:18} {scenario_name:8} {rate:9.0f} {cpu:10.1f} {rate / reference:17.2f}")


if __name__ == "__main__":
    main()
