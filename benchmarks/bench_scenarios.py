"""More benchmarks: window managers, upload memory, fan-out, parallel bulk and the h2 floor.

Usage::

    python benchmarks/bench_scenarios.py [--quick]
        [--scenario windows|upload|fanout|parallel|floor ...]
        [--backend asyncio|trio|uvloop ...] [--repeat N] [--tls]
        [--niquests-python PYTHON] [--output docs/benchmarks.md]

Reuses ``bench_core``'s nghttpd, validation and report helpers. Scenarios (ONE connection
each, h2any against httpx ``http2=True`` measured in the same run, h2load as the C ceiling;
the bulk scenarios -- ``windows``, ``upload``, ``parallel`` -- also against niquests, issue
9's reference for bulk transfers, over h2c with prior knowledge like the others):

* ``windows`` (issue 5): one 256 MiB download with each window manager -- the default
  ``FlowControlManager`` (2 MiB stream / 16 MiB connection windows), the
  ``AdaptiveFlowControlManager`` starting from 64 KiB windows, the default manager held to
  64 KiB windows, hyper's "stupid" manager (grants every frame back at once) -- and httpx.
  MB/s and peak RSS growth.
* ``upload`` (issue 4): POST a 1 GiB file (``body=open(path, "rb")``, a sparse temporary
  file) to nghttpd, which drains request bodies; MB/s and peak RSS growth (target: under
  16 MiB). httpx streams the same file (64 KiB reads); both also send a 64 MiB ``bytes``
  body, where httpx's HTTP/2 upload is quadratic.
* ``fanout`` (issue 9, scenario 2): 5,000 GETs of the 1-byte file started at once (5,000
  tasks, or for h2any also one task queueing them all with ``request_nowait``; the server
  allows 100 concurrent streams): req/s and errors.
* ``parallel`` (issue 9, scenario 3b): 8 parallel downloads of the 64 MiB file against one:
  aggregate MB/s and peak RSS growth.
* ``floor`` (issue 9, scenario 6): the client side of the ``h2`` state machine alone for the
  *small* scenario (a client and a server ``H2Connection`` joined in memory, only the
  client's calls timed), next to h2any's and httpx's *small* req/s as a share of it.

Transfers whose memory is reported run in a fresh Python process each (``--child``): the
child resets its peak RSS (``/proc/self/clear_refs``; a 2 ms VmRSS sampler elsewhere), does
the timed transfer, then repeats it untimed to check the SHA-256 of what it received.
niquests (asyncio only) runs as ``AsyncSession(disable_http1=True, disable_http3=True)``,
which speaks h2c with prior knowledge to an ``http://`` URL; its pool is held to one
connection and an audit hook on ``socket.connect`` proves it opened only one.
``--niquests-python`` (or ``$H2ANY_BENCH_NIQUESTS_PYTHON``) runs niquests' transfers in
another interpreter, a virtual environment of its own (niquests' urllib3-future replaces
``urllib3`` wherever it is installed): that interpreter finds niquests first, then this
one's site-packages for anyio, httpx and h2any.

``--tls`` runs every scenario over TLS (``bench_core.tls_files``: nghttpd with a
certificate from a throw-away ``trustme`` CA; h2any, httpx and niquests verify against it,
niquests with ``verify=CA file`` and ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` unset).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import signal
import site
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import bench_core as core
import httpx
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived, RequestReceived, ResponseReceived, StreamEnded

import h2any

SCENARIOS = ("windows", "upload", "fanout", "parallel", "floor")
MIB = 1024 * 1024
CHILD_TIMEOUT = 300.0  # the 5-minute cap on any one transfer (httpx's quadratic upload)
UPLOAD_SERVER_ARGS = ("-w", "24", "-W", "24")  # 16 MiB receive windows: the client is the limit
MARK_START = "<!-- bench_scenarios:start -->"
MARK_END = "<!-- bench_scenarios:end -->"
#: niquests' ways of streaming a download: label -> ``iter_content`` chunk size. Its default
#: (-1) yields each DATA frame as received (16 KiB from nghttpd), like h2any's and httpx's
#: iterators; larger reads are faster for niquests, so the ratio to niquests uses its best.
NIQUESTS_CHUNKS: dict[str, int] = {
    "iter_content() (its default: chunks as received)": -1,
    "iter_content(1 MiB)": MIB,
}
BULK_TARGET = 1.2  # issue 9: h2any >= 1.2x niquests MB/s for bulk downloads and uploads


@dataclass
class Sizes:
    window_download: int = 256 * MIB
    upload_file: int = 1024 * MIB
    upload_small_window: int = 256 * MIB  # against nghttpd's default 64 KiB windows
    upload_bytes: int = 64 * MIB
    fanout: int = 5_000
    parallel_file: int = 64 * MIB
    parallel_streams: int = 8
    floor_requests: int = core.SMALL_REQUESTS

    @classmethod
    def quick(cls) -> Sizes:
        return cls(32 * MIB, 64 * MIB, 32 * MIB, 8 * MIB, 1_000, 16 * MIB, 8, 5_000)


def file_name(size: int) -> str:
    return f"{size // MIB}m.bin"


class StupidFlowControlManager(h2any.BaseFlowControlManager):
    """hyper's example: every consumed frame is granted back at once."""

    def increase_window_size(self, frame_size: int) -> int:
        return frame_size


#: The window-manager variants of the ``windows`` scenario: label -> Connection keywords.
WINDOW_VARIANTS: dict[str, dict[str, Any]] = {
    "FlowControlManager, default windows (2 MiB stream, 16 MiB connection)": {},
    "AdaptiveFlowControlManager from 64 KiB windows": {
        "window_manager": "adaptive",
        "initial_window_size": 65535,
        "connection_window_size": 65535,
    },
    "FlowControlManager, 64 KiB windows": {
        "initial_window_size": 65535,
        "connection_window_size": 65535,
    },
    'hyper\'s "stupid" manager, default windows': {"window_manager": "stupid"},
}
MANAGERS: dict[str, type[h2any.BaseFlowControlManager]] = {
    "default": h2any.FlowControlManager,
    "adaptive": h2any.AdaptiveFlowControlManager,
    "stupid": StupidFlowControlManager,
}


# ---------------------------------------------------------------------------- memory (child)


def _proc_status_kib(name: str) -> int:
    with open("/proc/self/status") as status:
        match = re.search(rf"^{name}:\s+(\d+) kB", status.read(), re.MULTILINE)
    return int(match.group(1)) if match else 0


class PeakRSS:
    """The peak resident set size while a block runs, and the RSS just before it."""

    def __init__(self) -> None:
        self.baseline_kib = 0
        self.peak_kib = 0
        self._sampled = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._sampled = max(self._sampled, _proc_status_kib("VmRSS"))

    @contextlib.contextmanager
    def measure(self) -> Iterator[PeakRSS]:
        gc.collect()
        try:  # Linux >= 4.0: "5" resets VmHWM (the peak) to the current RSS
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")
            reset = True
        except OSError:
            reset = False
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        self.baseline_kib = _proc_status_kib("VmRSS")
        try:
            yield self
        finally:
            if reset:
                self.peak_kib = _proc_status_kib("VmHWM")
            else:
                self._stop.set()
                assert self._thread is not None
                self._thread.join()
                self.peak_kib = max(self._sampled, _proc_status_kib("VmRSS"))

    @property
    def growth_kib(self) -> int:
        return max(0, self.peak_kib - self.baseline_kib)


# ---------------------------------------------------------------------------- transfers (child)


def _h2any_connection(origin: str, options: dict[str, Any]) -> h2any.Connection:
    options = dict(options)
    manager = options.pop("window_manager", None)
    if manager is not None:
        options["window_manager"] = MANAGERS[manager]
    return h2any.Connection(origin, timeout=60.0, **core.h2any_tls(), **options)


async def _h2any_get(conn: h2any.Connection, path: str, digest: Any | None) -> int:
    received = 0
    async with conn.stream("GET", path) as resp:
        if resp.status != 200:
            raise core.BenchmarkError(f"h2any: status {resp.status}")
        async for chunk in resp.aiter_bytes():
            received += len(chunk)
            if digest is not None:
                digest.update(chunk)
    return received


async def _httpx_get(client: httpx.AsyncClient, url: str, digest: Any | None) -> int:
    received = 0
    async with client.stream("GET", url) as resp:
        if resp.status_code != 200 or resp.http_version != "HTTP/2":
            raise core.BenchmarkError(f"httpx: {resp.status_code} over {resp.http_version}")
        async for chunk in resp.aiter_raw():
            received += len(chunk)
            if digest is not None:
                digest.update(chunk)
    return received


#: The interpreter niquests' transfers run in (``--niquests-python``); this one by default.
NIQUESTS_PYTHON = os.environ.get("H2ANY_BENCH_NIQUESTS_PYTHON") or sys.executable
NIQUESTS_PACKAGES = ("niquests", "urllib3-future", "jh2")
_niquests_versions: dict[str, dict[str, str] | None] = {}


def niquests_versions() -> dict[str, str] | None:
    """niquests' stack in ``NIQUESTS_PYTHON`` (package -> version), None if it lacks niquests."""
    if NIQUESTS_PYTHON not in _niquests_versions:
        if sys.executable == NIQUESTS_PYTHON:
            found = importlib.util.find_spec("niquests") is not None
            versions = {p: core._version(p) for p in NIQUESTS_PACKAGES} if found else None
        else:
            probe = (
                "import json, importlib.metadata as m, niquests; "
                f"print(json.dumps({{p: m.version(p) for p in {NIQUESTS_PACKAGES!r}}}))"
            )
            proc = subprocess.run(
                [NIQUESTS_PYTHON, "-c", probe], capture_output=True, text=True, check=False
            )
            versions = json.loads(proc.stdout) if proc.returncode == 0 else None
        _niquests_versions[NIQUESTS_PYTHON] = versions
    return _niquests_versions[NIQUESTS_PYTHON]


def niquests_available() -> bool:
    return niquests_versions() is not None


#: TCP connections opened by this process, by address (``count_connections``).
CONNECTS: Counter[str] = Counter()


def _count_connect(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect":
        CONNECTS[str(args[1])] += 1


def count_connections() -> None:
    """From now on count every ``socket.connect`` of this process (an audit hook: it sees
    the connections any client opens, pooled or not, and cannot be removed)."""
    sys.addaudithook(_count_connect)


def _server_address(origin: str) -> str:
    host, port = origin.split("://", 1)[1].rsplit(":", 1)
    return str((host, int(port)))


@contextlib.asynccontextmanager
async def _niquests_session(origin: str) -> AsyncIterator[Any]:
    """An ``AsyncSession`` held to one h2c connection (prior knowledge: HTTP/1 and HTTP/3
    off), no retries; on leaving, checks that exactly one TCP connection was opened."""
    import niquests

    address = _server_address(origin)
    before = CONNECTS[address]
    async with niquests.AsyncSession(
        disable_http1=True,
        disable_http3=True,
        pool_connections=1,
        pool_maxsize=1,
        retries=0,
        timeout=60.0,
    ) as session:
        if core.CA_FILE:
            session.verify = core.CA_FILE  # the test CA (REQUESTS_CA_BUNDLE is unset)
        first = await session.get(origin + "/" + core.SMALL_FILE)  # connect, untimed
        _niquests_check(first, core.SMALL_BODY)
        yield session
    opened = CONNECTS[address] - before
    if opened != 1:
        raise core.BenchmarkError(f"niquests: opened {opened} connections, expected 1")


def _niquests_check(resp: Any, body: bytes | None = None) -> None:
    """HTTP/2 (``http_version`` 20), status 200 and, if given, the body."""
    if resp.status_code != 200 or resp.http_version != 20:
        raise core.BenchmarkError(f"niquests: {resp.status_code} over {resp.http_version}")
    if body is not None and resp.content != body:
        raise core.BenchmarkError(f"niquests: body {resp.content[:50]!r}")


async def _niquests_get(session: Any, url: str, chunk: int, digest: Any | None) -> int:
    received = 0
    resp = await session.get(url, stream=True)
    _niquests_check(resp)
    async for piece in await resp.iter_content(chunk):
        received += len(piece)
        if digest is not None:
            digest.update(piece)
    return received


async def downloads(spec: dict[str, Any], check: bool) -> tuple[float, list[str]]:
    """``streams`` parallel GETs of ``path`` on one connection: (seconds, SHA-256s if
    ``check``). The connection is opened before the clock starts."""
    origin, path, streams = spec["origin"], spec["path"], spec["streams"]
    digests = [hashlib.sha256() if check else None for _ in range(streams)]
    sizes = [0] * streams
    if spec["client"] == "h2any":
        async with _h2any_connection(origin, spec.get("options", {})) as conn:

            async def one(i: int) -> None:
                sizes[i] = await _h2any_get(conn, path, digests[i])

            started = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for i in range(streams):
                    tg.start_soon(one, i)
            elapsed = time.perf_counter() - started
            if conn.is_closed:
                raise core.BenchmarkError("h2any: the connection closed during the run")
    elif spec["client"] == "niquests":
        async with _niquests_session(origin) as session:

            async def one_niquests(i: int) -> None:
                sizes[i] = await _niquests_get(session, origin + path, spec["chunk"], digests[i])

            started = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for i in range(streams):
                    tg.start_soon(one_niquests, i)
            elapsed = time.perf_counter() - started
    else:
        async with core._httpx_client() as client:
            first = await client.get(origin + "/" + core.SMALL_FILE)  # connect, untimed
            if first.status_code != 200 or first.http_version != "HTTP/2":
                raise core.BenchmarkError(f"httpx: {first.status_code} {first.http_version}")

            async def one_httpx(i: int) -> None:
                sizes[i] = await _httpx_get(client, origin + path, digests[i])

            started = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for i in range(streams):
                    tg.start_soon(one_httpx, i)
            elapsed = time.perf_counter() - started
            core._httpx_check_one_connection(client, streams + 1)
    if any(size != spec["size"] for size in sizes):
        raise core.BenchmarkError(f"{spec['client']}: received {sizes}, expected {spec['size']}")
    return elapsed, [d.hexdigest() for d in digests if d is not None]


async def _file_pieces(path: str, size: int) -> AsyncIterator[bytes]:
    """httpx's own piece size for files (64 KiB); plain reads, the cheapest way (a sparse
    file costs no I/O), where h2any reads its file in a worker thread."""
    with open(path, "rb") as file:  # noqa: ASYNC230 (opening a local file does not block)
        while piece := file.read(64 * 1024):
            yield piece


async def upload(spec: dict[str, Any], payload: bytes | None) -> float:
    """POST the file (or ``payload``) to the 1-byte file, which nghttpd answers once it
    has drained the whole body; return the seconds from the request to the response."""
    origin, path, size = spec["origin"], spec.get("file"), spec["size"]
    url_path = "/" + core.SMALL_FILE
    if spec["client"] == "h2any":
        async with _h2any_connection(origin, {}) as conn:
            started = time.perf_counter()
            if payload is not None:
                resp = await conn.request("POST", url_path, body=payload)
                body = await resp.read()
            else:
                with open(path, "rb") as file:  # noqa: ASYNC230 (the body= under test)
                    resp = await conn.request("POST", url_path, body=file)
                    body = await resp.read()
            elapsed = time.perf_counter() - started
            status = resp.status
    elif spec["client"] == "niquests":
        async with _niquests_session(origin) as session:
            started = time.perf_counter()
            if payload is not None:
                resp_n = await session.post(origin + url_path, data=payload)
            else:
                with open(path, "rb") as file:  # noqa: ASYNC230 (niquests takes sync files)
                    resp_n = await session.post(origin + url_path, data=file)
            elapsed = time.perf_counter() - started
            _niquests_check(resp_n)
            status, body = resp_n.status_code, resp_n.content
    else:
        async with core._httpx_client() as client:
            first = await client.get(origin + url_path)  # connect, untimed
            if first.status_code != 200 or first.http_version != "HTTP/2":
                raise core.BenchmarkError(f"httpx: {first.status_code} {first.http_version}")
            content: Any = payload if payload is not None else _file_pieces(path, size)
            started = time.perf_counter()
            resp_x = await client.post(
                origin + url_path, content=content, headers={"content-length": str(size)}
            )
            elapsed = time.perf_counter() - started
            status, body = resp_x.status_code, resp_x.content
            core._httpx_check_one_connection(client, 2)
    # nghttp2 checks the body against content-length, so a 200 means every byte arrived.
    if status != 200 or body != core.SMALL_BODY:
        raise core.BenchmarkError(f"{spec['client']}: status {status}, body {body[:50]!r}")
    return elapsed


def child_main(spec: dict[str, Any]) -> dict[str, Any]:
    """One measured transfer in this (fresh) process; a JSON-able result."""
    core.CA_FILE = spec.get("ca")
    memory = PeakRSS()
    run = partial(core._run_async, spec.get("backend", "asyncio"))
    if spec["client"] == "niquests":
        import niquests  # noqa: F401 (imported before the measurement, like the others)

        count_connections()
    if spec["task"] == "download":
        with memory.measure():
            elapsed, _ = asyncio_result(run, partial(downloads, spec, False))
        _, digests = asyncio_result(run, partial(downloads, spec, True))  # untimed check
        if any(d != spec["sha256"] for d in digests):
            raise core.BenchmarkError(f"{spec['client']}: SHA-256 mismatch")
        moved = spec["size"] * spec["streams"]
    else:
        payload = b"\x01" * spec["size"] if spec.get("file") is None else None
        with memory.measure():
            elapsed = run(partial(upload, spec, payload))
        moved = spec["size"]
    return {
        "mbps": moved / elapsed / 1e6,
        "baseline_kib": memory.baseline_kib,
        "growth_kib": memory.growth_kib,
    }


def asyncio_result(run: Callable[..., Any], func: Callable[[], Any]) -> Any:
    """``core._run_async`` returns a float; run a coroutine returning anything instead."""
    box: list[Any] = []

    async def wrapper() -> float:
        box.append(await func())
        return 0.0

    run(wrapper)
    return box[0]


# ---------------------------------------------------------------------------- results


@dataclass
class Row:
    scenario: str
    client: str
    setup: str
    unit: str
    group: str = ""  # ratios compare rows of one group with that group's httpx row
    values: list[float] = field(default_factory=list)
    growth_mib: list[float] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    error_kinds: Counter[str] = field(default_factory=Counter)
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values and not self.error else None


def share_of_floor(row: Row, floor: Row | None) -> float | None:
    """``row`` as a share of the h2 floor: the median of the ratios of the two rows' runs
    in the same round (both run once per round), which the machine's drifts from one
    minute to the next cancel out of; the ratio of the medians if the rounds don't pair up
    (a row failed)."""
    if floor is None or floor.median is None or row.median is None:
        return None
    if len(row.values) == len(floor.values):
        return statistics.median(a / b for a, b in zip(row.values, floor.values, strict=True))
    return row.median / floor.median


def child_command(spec: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of a child process running ``spec``: this
    interpreter, or ``NIQUESTS_PYTHON`` for niquests, which then finds this interpreter's
    site-packages (anyio, httpx, h2any, ...) after its own (niquests, urllib3-future)."""
    script = Path(__file__).resolve()
    spec = {**spec, "ca": core.CA_FILE}
    env = dict(os.environ)
    if spec["client"] == "niquests":
        for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            env.pop(name, None)  # niquests gets verify=CA file; these would override it
    if spec["client"] != "niquests" or sys.executable == NIQUESTS_PYTHON:
        return [sys.executable, str(script), "--child", json.dumps(spec)], env
    sites = [*site.getsitepackages(), *sys.path]
    boot = (
        "import runpy, site, sys\n"
        f"sys.path.insert(0, {str(script.parent)!r})\n"
        f"for d in {[d for d in dict.fromkeys(sites) if d.endswith('-packages')]!r}:\n"
        "    site.addsitedir(d)\n"
        f"sys.argv = [{str(script)!r}, '--child', {json.dumps(spec)!r}]\n"
        f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
    )
    return [NIQUESTS_PYTHON, "-c", boot], env


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    command, env = child_command(spec)
    try:
        proc = subprocess.run(
            command, capture_output=True, text=True, timeout=CHILD_TIMEOUT, env=env
        )
    except subprocess.TimeoutExpired as exc:
        raise core.BenchmarkError(f"over the {CHILD_TIMEOUT:.0f} s cap") from exc
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise core.BenchmarkError(proc.stderr.strip().splitlines()[-1] if proc.stderr else "?")
    return dict(json.loads(lines[-1]))


def repeat_row(row: Row, times: int, once: Callable[[], dict[str, Any]]) -> Row:
    """Run ``once`` ``times`` times into ``row``, printing progress; failures end the row."""
    print(f"  {row.scenario:8} {row.client:8} {row.setup[:60]:60} ...", end="", flush=True)
    for _ in range(times):
        if not _measure_into(row, once):
            break
        print(f" {row.values[-1]:,.0f}", end="", flush=True)
    print(f"  FAILED: {row.error}" if row.error else f"  {row.unit}", flush=True)
    return row


def repeat_rows(jobs: list[tuple[Row, Callable[[], dict[str, Any]]]], times: int) -> list[Row]:
    """``repeat_row`` for several rows, interleaved: each of ``times`` rounds runs every row
    once, so that the machine's drifts (large on a shared machine: the same run varies by
    a third from one minute to the next) hit the rows alike, and their ratios hold."""
    for number in range(1, times + 1):
        for row, once in jobs:
            if row.error:
                continue
            label = f"  {row.scenario:8} {row.client:8} {row.setup[:50]:50} {number}/{times} ..."
            print(label, end="", flush=True)
            if _measure_into(row, once):
                print(f" {row.values[-1]:,.0f} {row.unit}", flush=True)
            else:
                print(f"  FAILED: {row.error}", flush=True)
    return [row for row, _ in jobs]


def _measure_into(row: Row, once: Callable[[], dict[str, Any]]) -> bool:
    """One run of ``once`` recorded in ``row``; False (and ``row.error``) if it failed."""
    try:
        result = once()
    except core.BenchmarkError as exc:
        row.error = str(exc)
        return False
    except Exception as exc:  # a client crashing is a result too
        row.error = f"{type(exc).__name__}: {exc}"
        return False
    row.values.append(result["value"])
    if "growth_kib" in result:
        row.growth_mib.append(result["growth_kib"] / 1024)
    if "errors" in result:
        row.errors.append(result["errors"])
        row.error_kinds.update(result.get("kinds", {}))
    return True


def child_row(row: Row, times: int, spec: dict[str, Any]) -> Row:
    def once() -> dict[str, Any]:
        result = run_child(spec)
        result["value"] = result["mbps"]
        return result

    return repeat_row(row, times, once)


def h2load(command: list[str], expected: int) -> float:
    """Run h2load; the seconds it took for ``expected`` successful requests."""
    return core.h2load(command, expected)[0]


def h2load_row(row: Row, times: int, command: list[str], expected: int, work: float) -> Row:
    """``work`` is the MB (or requests) one run moves: the value is work per second."""

    def once() -> dict[str, Any]:
        h2load(command, expected)  # warm-up
        return {"value": work / h2load(command, expected)}

    row.setup = row.setup or " ".join(command[:-1])
    return repeat_row(row, times, once)


def _mib(size: int) -> str:
    return f"{size / MIB:,.0f} MiB" if size < 1024 * MIB else f"{size / MIB / 1024:,.0f} GiB"


def _num(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def _ratio(value: float) -> str:
    return f"{value:.2f}x" if value >= 0.1 else f"{value:.2g}x"


def table(rows: list[Row], with_memory: bool, with_errors: bool = False) -> str:
    header = ["client", "setup", f"{rows[0].unit} (median)", "min - max"]
    align = "llrr"
    if with_memory:
        header.append("peak RSS growth (max)")
        align += "r"
    if with_errors:
        header.append("errors (total)")
        align += "r"
    floor = next((r for r in rows if r.client == "h2 floor"), None)
    if floor is not None:
        header.append("% of the h2 floor (same-round)")
        align += "r"
    header.append("ratio to httpx")
    align += "r"
    with_niquests = any(r.client == "niquests" for r in rows)
    if with_niquests:
        header.append("ratio to niquests (best)")
        align += "r"
    body: list[list[str]] = []
    for r in rows:
        median = r.median
        if median is None:
            body.append([r.client, r.setup, f"FAILED: {r.error}", *[""] * (len(header) - 3)])
            continue
        reference = next(
            (x.median for x in rows if x.client == "httpx" and x.group == r.group), None
        )
        spread = f"{_num(min(r.values))} - {_num(max(r.values))}"
        line = [r.client, r.setup, _num(median), spread]
        if with_memory:
            line.append(f"{max(r.growth_mib):,.1f} MiB" if r.growth_mib else "n/a")
        if with_errors:
            kinds = ", ".join(f"{n:,} {kind}" for kind, n in r.error_kinds.most_common())
            errors = f"{sum(r.errors):,}" if r.errors else "n/a"
            line.append(f"{errors} ({kinds})" if kinds else errors)
        if floor is not None:
            share = share_of_floor(r, floor)
            line.append(f"{100 * share:.1f}%" if share is not None else "n/a")
        line.append(_ratio(median / reference) if reference else "n/a")
        if with_niquests:
            best = best_niquests(rows, r.group)
            line.append(_ratio(median / best) if best else "n/a")
        body.append(line)
    return core.markdown_table(header, body, align)


def best_niquests(rows: list[Row], group: str) -> float | None:
    """The fastest niquests median of ``group`` (the reference of issue 9's bulk targets)."""
    medians = [r.median for r in rows if r.client == "niquests" and r.group == group]
    return max((m for m in medians if m is not None), default=None)


def h2any_median(rows: list[Row], group: str) -> float | None:
    """The first h2any row of ``group`` (in ``windows``: the default window manager)."""
    return next((r.median for r in rows if r.client == "h2any" and r.group == group), None)


def _versus(h2any_mbps: float | None, reference: float | None, target: float) -> str:
    if h2any_mbps is None or reference is None:
        return "n/a (a row failed or niquests is missing)"
    ratio = h2any_mbps / reference
    verdict = "met" if ratio >= target else "NOT met"
    return f"**{ratio:.2f}x** (target >= {target:.1f}x: {verdict})"


def targets_note(rows: list[Row], scenario: str) -> str:
    """Issue 9's bulk targets for one scenario's rows, as a line under its table."""
    if not any(r.client == "niquests" for r in rows):
        return "niquests is not installed: no comparison with issue 9's reference."
    if scenario == "windows":
        return (
            "Issue 9 target, h2any (default window manager) against niquests' best row: "
            + _versus(h2any_median(rows, ""), best_niquests(rows, ""), BULK_TARGET)
            + "."
        )
    if scenario == "upload":
        others = []
        for group, what in (("small-window", "64 KiB windows"), ("bytes", "`bytes` body")):
            h2any_mbps, reference = h2any_median(rows, group), best_niquests(rows, group)
            if h2any_mbps is not None and reference is not None:
                others.append(f"{what} {h2any_mbps / reference:.2f}x")
        return (
            "Issue 9 target (upload), h2any's file upload to the 16 MiB-window server against "
            "niquests': "
            + _versus(h2any_median(rows, "file"), best_niquests(rows, "file"), BULK_TARGET)
            + (f"; the other rows, h2any against niquests: {', '.join(others)}" if others else "")
            + "."
        )
    groups = sorted({r.group for r in rows}, key=int)
    one, many = groups[0], groups[-1]
    return (
        f"Issue 9 targets (bulk): h2any on {one} stream against niquests' best row: "
        + _versus(h2any_median(rows, one), best_niquests(rows, one), BULK_TARGET)
        + f"; h2any's {many} streams against its {one}: "
        + _versus(h2any_median(rows, many), h2any_median(rows, one), 1.0)
        + "."
    )


# ---------------------------------------------------------------------------- scenarios


@dataclass
class Plan:
    scenarios: list[str]
    backends: list[str]
    repeat: int
    sizes: Sizes
    tls: bool = False


def scenario_windows(server: core.Server, plan: Plan) -> list[Row]:
    size = plan.sizes.window_download
    path = "/" + file_name(size)
    base = {
        "task": "download",
        "origin": server.origin,
        "path": path,
        "size": size,
        "streams": 1,
        "sha256": server.sha256[file_name(size)],
    }
    rows = []
    for label, options in WINDOW_VARIANTS.items():
        row = Row("windows", "h2any", label, "MB/s")
        rows.append(child_row(row, plan.repeat, {**base, "client": "h2any", "options": options}))
    row = Row("windows", "httpx", "httpx defaults (opens its windows wide)", "MB/s")
    rows.append(child_row(row, plan.repeat, {**base, "client": "httpx"}))
    rows += niquests_download_rows(Row("windows", "niquests", "", "MB/s"), plan, base)
    command = ["h2load", "-n", "1", "-c", "1", "-m", "1", server.origin + path]
    rows.append(
        h2load_row(Row("windows", "h2load", "", "MB/s"), plan.repeat, command, 1, size / 1e6)
    )
    return rows


def niquests_download_rows(template: Row, plan: Plan, spec: dict[str, Any]) -> list[Row]:
    """One row per ``NIQUESTS_CHUNKS`` entry (none if niquests is missing)."""
    if not niquests_available():
        return []
    rows = []
    for how, chunk in NIQUESTS_CHUNKS.items():
        setup = f"{template.setup}, {how}" if template.setup else how
        row = Row(template.scenario, "niquests", setup, template.unit, group=template.group)
        rows.append(child_row(row, plan.repeat, {**spec, "client": "niquests", "chunk": chunk}))
    return rows


def upload_clients() -> tuple[str, ...]:
    return ("h2any", "httpx", "niquests") if niquests_available() else ("h2any", "httpx")


def scenario_parallel(server: core.Server, plan: Plan) -> list[Row]:
    size = plan.sizes.parallel_file
    path = "/" + file_name(size)
    rows = []
    for streams in (1, plan.sizes.parallel_streams):
        spec = {
            "task": "download",
            "origin": server.origin,
            "path": path,
            "size": size,
            "streams": streams,
            "sha256": server.sha256[file_name(size)],
        }
        setup = f"{streams} x {_mib(size)}"
        for client in ("h2any", "httpx"):
            row = Row("parallel", client, setup, "MB/s", group=str(streams))
            rows.append(child_row(row, plan.repeat, {**spec, "client": client}))
        row = Row("parallel", "niquests", setup, "MB/s", group=str(streams))
        rows += niquests_download_rows(row, plan, spec)
        command = [
            "h2load",
            "-n",
            str(streams),
            "-c",
            "1",
            "-m",
            str(streams),
            server.origin + path,
        ]
        row = Row("parallel", "h2load", setup, "MB/s", group=str(streams))
        rows.append(h2load_row(row, plan.repeat, command, streams, streams * size / 1e6))
    return rows


def scenario_upload(
    plan: Plan, upload_server: core.Server, default_server: core.Server
) -> list[Row]:
    sizes = plan.sizes
    rows = []
    with tempfile.TemporaryDirectory(prefix="h2any-upload-") as tmp:
        path = Path(tmp) / "upload.bin"
        with path.open("wb") as file:  # sparse: no disk space, reads return zeros
            file.truncate(sizes.upload_file)
        windows = "nghttpd -w 24 -W 24 (16 MiB windows)"
        for client in upload_clients():
            how = {
                "h2any": "open(path, 'rb')",
                "httpx": "64 KiB reads (async iterator)",
                "niquests": "data=open(path, 'rb')",
            }[client]
            row = Row(
                "upload",
                client,
                f"{_mib(sizes.upload_file)} file, {how}; {windows}",
                "MB/s",
                group="file",
            )
            spec = {
                "task": "upload",
                "client": client,
                "origin": upload_server.origin,
                "file": str(path),
                "size": sizes.upload_file,
            }
            rows.append(child_row(row, plan.repeat, spec))
        command = [
            "h2load",
            "-n",
            "1",
            "-c",
            "1",
            "-m",
            "1",
            "-d",
            str(path),
            upload_server.origin + "/" + core.SMALL_FILE,
        ]
        row = Row(
            "upload",
            "h2load",
            f"{_mib(sizes.upload_file)} file (h2load -d); {windows}",
            "MB/s",
            group="file",
        )
        rows.append(h2load_row(row, plan.repeat, command, 1, sizes.upload_file / 1e6))
        with path.open("r+b") as file:
            file.truncate(sizes.upload_small_window)
        for client in upload_clients():
            row = Row(
                "upload",
                client,
                f"{_mib(sizes.upload_small_window)} file; nghttpd defaults (64 KiB windows)",
                "MB/s",
                group="small-window",
            )
            spec = {
                "task": "upload",
                "client": client,
                "origin": default_server.origin,
                "file": str(path),
                "size": sizes.upload_small_window,
            }
            rows.append(child_row(row, plan.repeat, spec))
    for client in upload_clients():
        row = Row(
            "upload",
            client,
            f"{_mib(sizes.upload_bytes)} bytes object; {windows}",
            "MB/s",
            group="bytes",
        )
        spec = {
            "task": "upload",
            "client": client,
            "origin": upload_server.origin,
            "file": None,
            "size": sizes.upload_bytes,
        }
        rows.append(child_row(row, 1 if client == "httpx" else plan.repeat, spec))
    return rows


def spawner(backend: str, native: bool) -> str:
    """How ``start_all`` starts the tasks on ``backend``."""
    if not native:
        return "anyio task group"
    if backend == "trio":
        return "trio nursery"
    return "asyncio.TaskGroup" if sys.version_info >= (3, 11) else "asyncio.gather"


async def start_all(
    count: int, task: Callable[[], Coroutine[Any, Any, None]], backend: str, native: bool
) -> None:
    """Run ``count`` copies of ``task`` at once and wait for them all, started by anyio's
    task group, or (``native``) by the event loop's own API (see ``spawner``)."""
    if not native:
        async with anyio.create_task_group() as tg:
            for _ in range(count):
                tg.start_soon(task)
    elif backend == "trio":
        import trio

        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(task)
    elif sys.version_info >= (3, 11):
        async with asyncio.TaskGroup() as group:
            for _ in range(count):
                group.create_task(task())
    else:
        await asyncio.gather(*(task() for _ in range(count)))


async def spawn_alone(count: int, backend: str, native: bool) -> float:
    """Seconds to start and finish ``count`` tasks that do nothing: what starting the
    fan-out's tasks costs by itself."""

    async def nothing() -> None:
        pass

    started = time.perf_counter()
    await start_all(count, nothing, backend, native)
    return time.perf_counter() - started


async def _h2any_check(response: Awaitable[h2any.Response], errors: Counter[str]) -> None:
    """Await one fan-out response and read it; count what went wrong in ``errors``."""
    try:
        resp = await response
        body = await resp.read()
        if resp.status != 200 or body != core.SMALL_BODY:
            errors["wrong response"] += 1
    except h2any.H2anyError as exc:
        errors[type(exc).__name__] += 1


async def h2any_fanout(
    origin: str, count: int, backend: str = "asyncio", native: bool = False, nowait: bool = False
) -> tuple[float, Counter[str]]:
    """A task per request, each awaiting ``Connection.request`` (started by ``start_all``);
    or (``nowait``) no task per request: this task queues every request with
    ``request_nowait``, then awaits the responses in order."""
    path = "/" + core.SMALL_FILE
    errors: Counter[str] = Counter()
    async with h2any.Connection(origin, timeout=60.0, **core.h2any_tls()) as conn:

        async def one() -> None:
            await _h2any_check(conn.request("GET", path), errors)

        started = time.perf_counter()
        if nowait:
            pending = [conn.request_nowait("GET", path) for _ in range(count)]
            for response in pending:
                await _h2any_check(response, errors)
        else:
            await start_all(count, one, backend, native)
        elapsed = time.perf_counter() - started
        if conn.is_closed:
            raise core.BenchmarkError("h2any: the connection closed during the run")
    return elapsed, errors


async def httpx_fanout(
    origin: str, count: int, backend: str = "asyncio", native: bool = False
) -> tuple[float, Counter[str]]:
    url = origin + "/" + core.SMALL_FILE
    errors: Counter[str] = Counter()
    async with core._httpx_client() as client:
        await client.get(url)  # connect, untimed

        async def one() -> None:
            try:
                resp = await client.get(url)
                if (
                    resp.status_code != 200
                    or resp.http_version != "HTTP/2"
                    or resp.content != core.SMALL_BODY
                ):
                    errors["wrong response"] += 1
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1

        started = time.perf_counter()
        await start_all(count, one, backend, native)
        elapsed = time.perf_counter() - started
        # Requests that failed may or may not have reached the connection; and with
        # thousands of requests queued, httpcore sometimes replaces the connection that
        # served the untimed first request (the pool still holds exactly one).
        failed = sum(errors.values())
        for attempt in range(count - failed, count + 2):
            try:
                core._httpx_check_one_connection(client, attempt)
                break
            except core.BenchmarkError:
                if attempt == count + 1:
                    raise
    return elapsed, errors


def scenario_fanout(server: core.Server, plan: Plan) -> list[Row]:
    """The fan-out rows, then the ``spawn`` rows (what starting the tasks costs alone)."""
    count = plan.sizes.fanout
    # The floor (as in the floor scenario) runs in the same rounds: issue 9's fan-out target
    # is a share of it.
    floor = Row("fanout", "h2 floor", "in memory, client side (floor scenario)", "req/s")
    jobs: list[tuple[Row, Callable[[], dict[str, Any]]]] = [
        (floor, partial(_floor_once, plan.sizes.floor_requests))
    ]
    # h2any's tasks started both ways (anyio's task group costs several times the event
    # loop's own API per task: the spawn rows), and no task per request (request_nowait);
    # httpx's the anyio way only (its own cost per request dwarfs either).
    variants: list[tuple[str, Callable[..., Any], str]] = [
        ("h2any", h2any_fanout, "anyio"),
        ("h2any", h2any_fanout, "native"),
        ("h2any", partial(h2any_fanout, nowait=True), "nowait"),
        ("httpx", httpx_fanout, "anyio"),
    ]
    for client, func, how in variants:
        native = how == "native"
        for backend in plan.backends:
            run = partial(core._run_async, backend)
            loop = "trio" if backend == "trio" else "asyncio"

            def once(
                func: Any = func, run: Any = run, loop: str = loop, native: bool = native
            ) -> dict[str, Any]:
                fanout = partial(func, server.origin, backend=loop, native=native)
                asyncio_result(run, partial(fanout, count // 5))  # warm-up
                elapsed, errors = asyncio_result(run, partial(fanout, count))
                failed = sum(errors.values())
                return {"value": (count - failed) / elapsed, "errors": failed, "kinds": errors}

            way = "one task, request_nowait" if how == "nowait" else spawner(loop, native)
            setup = f"{backend}, {way}"
            group = f"{backend} native" if native else backend
            jobs.append((Row("fanout", client, setup, "req/s", group=group), once))
    for backend in plan.backends:
        run = partial(core._run_async, backend)
        loop = "trio" if backend == "trio" else "asyncio"
        for native in (False, True):

            def alone(run: Any = run, loop: str = loop, native: bool = native) -> dict[str, Any]:
                elapsed = asyncio_result(run, partial(spawn_alone, count, loop, native))
                return {"value": elapsed / count * 1e6}

            row = Row("spawn", "tasks alone", f"{backend}, {spawner(loop, native)}", "us/task")
            jobs.append((row, alone))
    rows = repeat_rows(jobs, plan.repeat)
    command = [
        "h2load",
        "-n",
        str(count),
        "-c",
        "1",
        "-m",
        str(count),
        server.origin + "/" + core.SMALL_FILE,
    ]
    row = Row("fanout", "h2load", f"C (h2load -m {count})", "req/s", group="asyncio")
    rows.append(h2load_row(row, plan.repeat, command, count, count))
    return rows


def spawn_table(rows: list[Row]) -> str:
    body = [
        [r.setup, f"{r.median:.1f}", f"{min(r.values):.1f} - {max(r.values):.1f}"]
        if r.median is not None
        else [r.setup, f"FAILED: {r.error}", ""]
        for r in rows
    ]
    return core.markdown_table(
        ["backend, started by", "us per task (median)", "min - max"], body, "lrr"
    )


def fanout_note(rows: list[Row]) -> str:
    """Issue 9's fan-out target against this run's h2any rows."""
    floor = next((r for r in rows if r.client == "h2 floor" and r.median is not None), None)
    if floor is None:
        return "The h2 floor row failed: no comparison with issue 9's target."
    engine = core.engine_name()
    target = 75 if engine == "h2" else 120
    verdicts = []
    for r in rows:
        share = share_of_floor(r, floor) if r.client == "h2any" else None
        if share is not None:
            share *= 100
            verdicts.append(f"{r.setup} {share:.0f}% ({'met' if share >= target else 'NOT met'})")
    return (
        f"Issue 9 target (fan-out, engine `{engine}`): h2any at >= {target}% of the h2 floor: "
        + "; ".join(verdicts)
        + "."
    )


# floor -------------------------------------------------------------------------------


def h2any_configuration() -> H2Configuration:
    """The ``H2Configuration`` h2any gives stock h2 (its engine module's API has changed
    before, hence the fallbacks)."""
    try:
        from h2any._engine import get_engine  # type: ignore[attr-defined]

        return get_engine("h2").new_connection().config  # type: ignore[no-any-return]
    except ImportError:
        pass
    try:
        from h2any._engine import new_h2_connection  # type: ignore[attr-defined]

        return new_h2_connection().config  # type: ignore[no-any-return]
    except ImportError:
        raise core.BenchmarkError("cannot find h2any's H2Configuration") from None


def h2_floor(requests: int, concurrency: int = core.CONCURRENCY) -> float:
    """Requests per second of the client-side h2 work for the *small* scenario.

    A stock ``H2Connection`` with h2any's ``H2Configuration`` (no header encoding, no
    outbound validation) and a server ``H2Connection`` exchange bytes in memory. The
    client sends ``concurrency`` GETs with h2any's header fields, the server answers each
    with nghttpd's header fields and a 1-byte body, and the client parses the answers;
    only the client's calls are timed.
    """
    client = H2Connection(config=h2any_configuration())
    server = H2Connection(H2Configuration(client_side=False, header_encoding=None))
    client.initiate_connection()
    client.increment_flow_control_window(16 * MIB - 65535)  # as h2any's default
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    request = [
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":authority", b"127.0.0.1:8080"),
        (b":path", b"/" + core.SMALL_FILE.encode()),
        (b"user-agent", f"h2any/{h2any.__version__}".encode()),
        (b"accept-encoding", b"gzip, deflate"),
    ]
    response = [
        (b":status", b"200"),
        (b"server", b"nghttpd nghttp2/1.52.0"),
        (b"date", b"Wed, 25 Nov 2026 17:00:00 GMT"),
        (b"content-length", b"1"),
        (b"last-modified", b"Wed, 25 Nov 2026 16:59:00 GMT"),
        (b"cache-control", b"max-age=3600"),
    ]
    clock = time.perf_counter
    client_time = 0.0
    done = 0
    while done < requests:
        batch = min(concurrency, requests - done)
        started = clock()
        for _ in range(batch):
            client.send_headers(client.get_next_available_stream_id(), request, end_stream=True)
        wire = client.data_to_send()
        client_time += clock() - started
        for event in server.receive_data(wire):
            if isinstance(event, RequestReceived):
                server.send_headers(event.stream_id, response)
                server.send_data(event.stream_id, core.SMALL_BODY, end_stream=True)
        wire = server.data_to_send()
        started = clock()
        bodies: dict[int, bytes] = {}
        statuses: dict[int, bytes] = {}
        ended = 0
        for event in client.receive_data(wire):
            if isinstance(event, ResponseReceived):
                statuses[event.stream_id] = event.headers[0][1]
            elif isinstance(event, DataReceived):
                bodies[event.stream_id] = bodies.get(event.stream_id, b"") + event.data
            elif isinstance(event, StreamEnded):
                ended += 1
        reply = client.data_to_send()
        client_time += clock() - started
        if reply:
            server.receive_data(reply)
        if ended != batch or any(
            statuses.get(s) != b"200" or body != core.SMALL_BODY for s, body in bodies.items()
        ):
            raise core.BenchmarkError("floor: a response went missing or is wrong")
        done += batch
    return requests / client_time


def _floor_once(count: int) -> dict[str, Any]:
    h2_floor(count // 10)  # warm-up
    return {"value": h2_floor(count)}


def scenario_floor(server: core.Server, plan: Plan) -> list[Row]:
    count = plan.sizes.floor_requests
    floor = Row("floor", "h2 floor", "in memory, client side", "req/s")
    jobs: list[tuple[Row, Callable[[], dict[str, Any]]]] = [(floor, partial(_floor_once, count))]
    # h2any on every backend; httpx (slow: 20,000 requests take a minute) on asyncio only,
    # bench_core has the rest.
    pairs = [("h2any", core.h2any_small, b) for b in plan.backends]
    pairs.append(("httpx", core.httpx_small, "asyncio"))
    for client, func, backend in pairs:
        run = partial(core._run_async, backend)

        def once(func: Any = func, run: Any = run) -> dict[str, Any]:
            run(partial(func, server.origin, max(1000, count // 10)))  # warm-up
            return {"value": run(partial(func, server.origin, count))}

        jobs.append((Row("floor", client, f"small, {backend}", "req/s"), once))
    rows = repeat_rows(jobs, plan.repeat)
    command = core.h2load_command(server.origin, "small", count)
    row = Row("floor", "h2load", "small, C", "req/s")
    rows.append(h2load_row(row, plan.repeat, command, count, count))
    return rows


def floor_table(rows: list[Row]) -> str:
    floor = rows[0]
    reference = next((r.median for r in rows if r.client == "httpx" and "asyncio" in r.setup), None)
    body = []
    for r in rows:
        median = r.median
        if median is None:
            body.append([r.client, r.setup, f"FAILED: {r.error}", "", "", ""])
            continue
        body.append(
            [
                r.client,
                r.setup,
                f"{median:,.0f}",
                f"{min(r.values):,.0f} - {max(r.values):,.0f}",
                f"{100 * share:.1f}%" if (share := share_of_floor(r, floor)) else "n/a",
                f"{median / reference:.2f}x" if reference else "n/a",
            ]
        )
    header = [
        "client",
        "what",
        "req/s (median)",
        "min - max",
        "% of the h2 floor (same-round)",
        "ratio to httpx (asyncio)",
    ]
    return core.markdown_table(header, body, "llrrrr")


# ---------------------------------------------------------------------------- report


def niquests_note() -> str:
    """niquests' HTTP/2 stack, for the environment list."""
    found = niquests_versions()
    if found is None:
        return "- niquests: not installed (`pip install niquests`): its rows are skipped"
    versions = ", ".join(f"{p} {v}" for p, v in found.items())
    where = "" if sys.executable == NIQUESTS_PYTHON else " (in a virtual environment of its own)"
    return f"- niquests' stack: {versions}{where}"


def report(
    rows: list[Row],
    env: list[str],
    plan: Plan,
    argv: list[str],
    load_start: float,
    load_end: str,
) -> str:
    sizes = plan.sizes
    by = {s: [r for r in rows if r.scenario == s] for s in SCENARIOS}
    spawn = [r for r in rows if r.scenario == "spawn"]
    title = "## More scenarios: window managers, upload, fan-out, parallel bulk, the h2 floor"
    parts = [
        title + (", over TLS" if plan.tls else ""),
        "",
        *env,
        niquests_note(),
        f"- upload server: the same nghttpd with `{' '.join(UPLOAD_SERVER_ARGS)}` (16 MiB "
        "stream and connection receive windows), except the rows marked *nghttpd defaults*",
        f"- load average (1/5/15 min) at the end: {load_end}",
        *core.busy_note(load_start),
        "",
        "Commands:",
        "",
        "```",
        "python benchmarks/bench_scenarios.py " + " ".join(argv),
        core.nghttpd_command(plan.tls),
        core.nghttpd_command(plan.tls, UPLOAD_SERVER_ARGS, "PORT2"),
        "```",
        "",
        f"Each row: {plan.repeat} timed run(s), median shown (fan-out and floor: in rounds, "
        "each round running every row of the table once); transfers with a memory column "
        "run each in a fresh Python process (asyncio), which resets its peak RSS before the "
        "timed transfer (`/proc/self/clear_refs`) and reports VmHWM minus the VmRSS just "
        "before it: the memory the transfer added (connection, buffers, the client's own "
        "allocations). Downloads are SHA-256-checked in a second, untimed transfer in the "
        "same process. MB/s = 10^6 bytes/s.",
        "",
    ]
    if niquests_available() and (by["windows"] or by["upload"] or by["parallel"]):
        parts += [
            "niquests, issue 9's reference for bulk transfers, joins the `windows`, `upload` and "
            "`parallel` scenarios: `AsyncSession(disable_http1=True, disable_http3=True, "
            "pool_connections=1, pool_maxsize=1, retries=0)` on asyncio, "
            + (
                "over TLS (ALPN `h2`, `verify=` the test CA) "
                if plan.tls
                else "h2c with prior knowledge "
            )
            + "to the same nghttpd, one untimed GET to connect first (as for httpx). "
            "Each response is checked for status 200 and `http_version` 20 (HTTP/2), and an "
            "audit hook on `socket.connect` proves the session opened exactly one TCP "
            "connection. Downloads stream with `stream=True` and `iter_content(n)`, once with "
            "its default `n` = -1 (each DATA frame as received, like the other clients' "
            "iterators) and once with 1 MiB reads (faster for niquests); the *ratio to "
            "niquests* column divides by the faster of its rows of the same kind.",
            "",
        ]
    if by["windows"]:
        parts += [
            f"### windows: one {_mib(sizes.window_download)} download per window manager (issue 5)",
            "",
            table(by["windows"], with_memory=True),
            "",
            targets_note(by["windows"], "windows"),
            "",
        ]
    if by["upload"]:
        parts += [
            "### upload: POST a file, drained by nghttpd (issue 4)",
            "",
            "The file is sparse (reads cost no disk I/O). h2any gets `body=open(path, 'rb')` "
            "and niquests `data=open(path, 'rb')`; httpx's `AsyncClient` refuses sync files, "
            "so it gets an async generator of 64 KiB reads of the same file (httpx's own "
            "piece size for files). All send `content-length`. The `bytes` rows allocate the "
            "body before the measurement "
            f"starts, so the growth excludes the {_mib(sizes.upload_bytes)} payload itself; "
            "httpx's `bytes` row is one run (it is quadratic). Ratios compare rows of the "
            "same kind.",
            "",
            table(by["upload"], with_memory=True),
            "",
            targets_note(by["upload"], "upload"),
            "",
        ]
    if by["fanout"]:
        parts += [
            f"### fan-out: {sizes.fanout:,} GETs of the 1-byte file started at once "
            "(issue 9, scenario 2)",
            "",
            f"{sizes.fanout:,} requests on one connection, all issued before any response "
            "is awaited; nghttpd allows 100 concurrent streams, so the clients queue the "
            "rest. Timeouts 60 s for both "
            "clients; a failed request counts as an error (req/s counts successes only). "
            "One warm-up of a fifth of the requests before each run. The *h2 floor* row is the "
            "floor scenario's measurement, run in the same rounds (each round runs every row "
            "once): issue 9's fan-out target is a share of it (75% with stock `h2`, 120% "
            "with `jh2`), shown as the median of the rounds' ratios. h2any issues them three "
            "ways: a task per request started by anyio's task group, a task per request "
            "started by the event loop's own API (`asyncio.TaskGroup`, a trio nursery), "
            "and one task queueing every request with `Connection.request_nowait` and "
            "then awaiting the responses in order (no task per request). httpx, which needs "
            "a task per request, starts them with anyio's task group. Ratios to httpx "
            "compare each h2any row with httpx on the same event loop (the loop-API rows: "
            "none).",
            "",
            table(by["fanout"], with_memory=False, with_errors=True),
            "",
            fanout_note(by["fanout"]),
            "",
        ]
        if spawn:
            parts += [
                f"What starting the tasks costs by itself: {sizes.fanout:,} tasks that do "
                "nothing, started and awaited the same two ways, in the same rounds. "
                "The difference between the two ways is paid by every request of the "
                "anyio rows above, whatever the client.",
                "",
                spawn_table(spawn),
                "",
            ]
    if by["parallel"]:
        parts += [
            f"### parallel: {sizes.parallel_streams} downloads of {_mib(sizes.parallel_file)} "
            "at once, against one (issue 9, scenario 3b)",
            "",
            "Aggregate MB/s over one connection, default windows for every client.",
            "",
            table(by["parallel"], with_memory=True),
            "",
            targets_note(by["parallel"], "parallel"),
            "",
        ]
    if by["floor"]:
        parts += [
            f"### floor: the client side of the h2 state machine, {sizes.floor_requests:,} "
            "GETs, 100 at a time (issue 9, scenario 6)",
            "",
            "The floor is a stock `h2.H2Connection` with h2any's `H2Configuration` "
            "(`header_encoding=None`, outbound validation and normalisation off) joined in "
            "memory to a server `H2Connection`: per batch of 100 the client sends the "
            "requests (h2any's header fields), the server answers (nghttpd's header fields, "
            "1-byte body), and the client parses the answers. Only the client's calls are "
            "timed, so this is the most any h2-based client can reach for the *small* "
            "scenario on this machine. The *small* rows are `bench_core`'s scenario measured "
            "in this run, in rounds with the floor; their share of it is the median of the "
            "rounds' ratios.",
            "",
            floor_table(by["floor"]),
            "",
        ]
    return "\n".join(parts)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, Plan]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run, smaller transfers")
    parser.add_argument("--scenario", nargs="+", choices=SCENARIOS, action="extend")
    parser.add_argument("--backend", nargs="+", choices=core.BACKENDS, action="extend")
    parser.add_argument("--repeat", type=int, help=f"timed runs (default {core.REPEAT})")
    parser.add_argument(
        "--tls", action="store_true", help="HTTP/2 over TLS (a trustme CA) instead of h2c"
    )
    parser.add_argument(
        "--niquests-python",
        help="the interpreter (a venv's python) that has niquests, if this one has not",
    )
    parser.add_argument("--output", type=Path, help="write a markdown section to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    plan = Plan(
        scenarios=core._dedupe(args.scenario or list(SCENARIOS)),
        backends=core._dedupe(args.backend or list(core.BACKENDS)),
        repeat=args.repeat or (1 if args.quick else core.REPEAT),
        sizes=Sizes.quick() if args.quick else Sizes(),
        tls=args.tls,
    )
    return args, plan


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, plan = parse_args(argv)
    if args.child is not None:
        print(json.dumps(child_main(json.loads(args.child))))
        return 0
    if args.niquests_python:
        global NIQUESTS_PYTHON
        NIQUESTS_PYTHON = args.niquests_python
    signal.signal(signal.SIGTERM, core._sigterm)
    load_start = os.getloadavg()[0]
    sizes = plan.sizes
    files = {file_name(s): s for s in (sizes.window_download, sizes.parallel_file)}
    rows: list[Row] = []
    try:
        with (
            core.maybe_tls(plan.tls) as tls,
            core.nghttpd(files=files, tls=tls) as server,
            core.nghttpd(UPLOAD_SERVER_ARGS, {}, tls) as big,
        ):
            print(f"{server.version} on {server.origin}, and {big.origin} for uploads")
            env = core.environment(server)
            for line in [*env, niquests_note()]:
                print(line)
            for scenario in plan.scenarios:
                if scenario == "windows":
                    rows += scenario_windows(server, plan)
                elif scenario == "upload":
                    rows += scenario_upload(plan, big, server)
                elif scenario == "fanout":
                    rows += scenario_fanout(server, plan)
                elif scenario == "parallel":
                    rows += scenario_parallel(server, plan)
                else:
                    rows += scenario_floor(server, plan)
    except KeyboardInterrupt:
        print("\ninterrupted; nghttpd stopped", file=sys.stderr)
        return 130
    section = report(rows, env, plan, argv, load_start, core.load_average())
    print()
    print(section)
    if args.output is not None:
        intro = core.TLS_INTRO if plan.tls else core.INTRO
        core.write_output(args.output, section, MARK_START, MARK_END, intro)
        print(f"wrote {args.output}")
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
