"""Issue 26's bulk targets measured in one run: a Markdown table target | measured | ratio | met.

Usage::

    python benchmarks/bench_bulk.py [--quick] [--rounds N] [--runs N]
        [--rows download upload rss parallel tls-download tls-upload small ...]
        [--engines jh2 h2] [--backends asyncio trio] [--niquests-python PYTHON]
        [--no-niquests] [--output FILE]

One connection per client to ``nghttpd`` on loopback (``bench_core.nghttpd``: h2c with its
default 64 KiB receive windows, and a second one over TLS with a throw-away ``trustme`` CA for
the ``tls-*`` rows). Every measurement runs in a fresh child process (``--child``): h2any
(``H2ANY_ENGINE`` set per child, anyio on asyncio or trio), niquests (``--niquests-python``, a
virtual environment of its own: ``AsyncSession(disable_http1=True, disable_http3=True)`` with
``iter_content()`` and ``iter_content(1 MiB)``, and ``Session(multiplexed=True,
disable_http1=True, disable_http3=True)`` with ``iter_content(1 MiB)``), and the engines'
download and upload floors (``bench_bulk_floor``). A child validates and warms up untimed first
(downloads: SHA-256 of the body; uploads: the 200 nghttpd sends once it has drained the body,
nghttp2 checking it against ``content-length``), then keeps the best of ``--runs`` (3) timed
runs: wall-clock MB/s (10^6 bytes/s) and, for h2any, MB per CPU second of the child
(``time.process_time``). ``--rounds`` (2) rounds run every child once each, the second round
in the reverse order, so that the machine's drifts hit every client alike; each ratio is taken
between values of the same round, and the table shows the median of the rounds' ratios (with
their range).

Rows (groups for ``--rows``):

* ``download``: one 64 MiB download per engine and backend against niquests' best mode (first
  engine: >= 2x) and the engine's floor (jh2 >= 70%, h2 >= 90%); trio against asyncio on it.
* ``upload``: one 64 MiB ``bytes`` POST to the 1-byte file (nghttpd's 64 KiB windows: paced by
  WINDOW_UPDATE round trips for every client alike) against niquests' best (>= 2x) and the
  engine's upload floor (``bench_bulk_floor.upload_floor``, >= 60%; without it the row says
  it is not measured).
* ``rss``: a sparse 1 GiB file POSTed as ``body=open(path, "rb")``: peak RSS growth of the
  child (VmHWM after ``/proc/self/clear_refs``, ``bench_scenarios.PeakRSS``) < 16 MiB.
* ``parallel``: 8 parallel 64 MiB downloads on one connection against one download in the same
  child (runs alternating): aggregate >= 1.2x; fastest / slowest finish time >= 0.75.
* ``tls-download``, ``tls-upload``: the same transfers over TLS against niquests over TLS
  (>= 1.5x); the TLS download against the h2c one of the same round (>= 70%; needs
  ``download``).
* ``small``: ``bench_core.h2any_small`` (20,000 GETs of the 1-byte file, 100 in flight), trio
  against asyncio (>= 85%).

``--quick`` is a smoke test (1 MiB transfers, 1,000 GETs, one run, one round, one niquests mode
per transfer).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import hashlib
import json
import os
import signal
import site
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import bench_bulk_floor
import bench_core as core
import bench_scenarios as scen
from bench_bulk_floor import floor

import h2any

MIB = 1024 * 1024
GROUPS = ("download", "upload", "rss", "parallel", "tls-download", "tls-upload", "small")
ENGINES = ("jh2", "h2")
BACKENDS = ("asyncio", "trio")
BULK_FILE = "bulk.bin"
UPLOAD_PATH = "/" + core.SMALL_FILE
NIQUESTS_MODES = {  # label -> (kind, iter_content chunk size)
    "async iter_content()": ("nq-async", -1),
    "async iter_content(1 MiB)": ("nq-async", MIB),
    "sync multiplexed iter_content(1 MiB)": ("nq-sync", MIB),
}
NIQUESTS_UPLOAD_MODES = {"async": ("nq-async", 0), "sync multiplexed": ("nq-sync", 0)}
#: ``--quick``: the one niquests mode run per transfer (the sync and async sessions both run)
QUICK_NIQUESTS = {
    "dl": "sync multiplexed iter_content(1 MiB)",
    "up": "async",
    "tdl": "async iter_content(1 MiB)",
    "tup": "sync multiplexed",
}
FLOOR_TARGET = {"jh2": 0.70, "h2": 0.90}
MARK_START = "<!-- bench_bulk:start -->"
MARK_END = "<!-- bench_bulk:end -->"


@dataclass
class Sizes:
    bulk: int = 64 * MIB
    file: int = 1024 * MIB
    streams: int = 8
    small: int = core.SMALL_REQUESTS

    @classmethod
    def quick(cls) -> Sizes:
        return cls(MIB, 8 * MIB, 8, 1_000)


# ---------------------------------------------------------------------------- the children


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _sha_ok(client: str, digest: Any, spec: dict[str, Any]) -> None:
    if digest.hexdigest() != spec["sha256"]:
        raise core.BenchmarkError(f"{client}: SHA-256 mismatch")


def _size_ok(client: str, got: int, spec: dict[str, Any]) -> None:
    if got != spec["size"]:
        raise core.BenchmarkError(f"{client}: received {got} bytes, expected {spec['size']}")


async def _h2any_post(conn: h2any.Connection, body: Any) -> None:
    resp = await conn.request("POST", UPLOAD_PATH, body=body)
    got = await resp.read()
    # nghttp2 checks the body against content-length: a 200 means every byte arrived.
    if resp.status != 200 or got != core.SMALL_BODY:
        raise core.BenchmarkError(f"h2any: status {resp.status}, body {got[:50]!r}")


async def _h2any_streams(
    conn: h2any.Connection, spec: dict[str, Any], streams: int, check: bool
) -> tuple[float, float, float]:
    """``streams`` parallel downloads: (wall seconds, CPU seconds, fastest / slowest finish)."""
    finish = [0.0] * streams
    digests = [hashlib.sha256() if check else None for _ in range(streams)]
    wall, cpu = _clocks()

    async def one(i: int) -> None:
        _size_ok("h2any", await scen._h2any_get(conn, spec["path"], digests[i]), spec)
        finish[i] = time.perf_counter() - wall

    async with anyio.create_task_group() as tg:
        for i in range(streams):
            tg.start_soon(one, i)
    wall_end, cpu_end = _clocks()
    for digest in digests:
        if digest is not None:
            _sha_ok("h2any", digest, spec)
    return wall_end - wall, cpu_end - cpu, min(finish) / max(finish)


async def h2any_child(spec: dict[str, Any]) -> dict[str, Any]:
    """h2any's runs of ``spec["task"]`` on one connection (the small GETs: bench_core's)."""
    task, runs, size = spec["task"], spec["runs"], spec["size"]
    out: dict[str, Any] = {"mbps": [], "cpu_mbps": []}

    def record(work: float, wall: float, cpu: float, unit: float = 1e6) -> None:
        out["mbps"].append(work / wall / unit)
        out["cpu_mbps"].append(work / max(cpu, 1e-9) / unit)

    if task == "small":
        await core.h2any_small(spec["origin"], max(100, spec["requests"] // 10))  # warm-up
        for _ in range(runs):
            cpu = time.process_time()
            rate = await core.h2any_small(spec["origin"], spec["requests"])
            cpu = time.process_time() - cpu
            record(spec["requests"], spec["requests"] / rate, cpu, unit=1.0)  # req/s
        return out
    async with scen._h2any_connection(spec["origin"], {}) as conn:
        resp = await conn.request("GET", "/" + core.SMALL_FILE)  # connect, untimed
        await resp.read()
        if task == "download":
            digest = hashlib.sha256()
            _size_ok("h2any", await scen._h2any_get(conn, spec["path"], digest), spec)
            _sha_ok("h2any", digest, spec)
            for _ in range(runs):
                wall, cpu = _clocks()
                _size_ok("h2any", await scen._h2any_get(conn, spec["path"], None), spec)
                wall_end, cpu_end = _clocks()
                record(size, wall_end - wall, cpu_end - cpu)
        elif task == "upload":
            payload = b"\x01" * size
            await _h2any_post(conn, payload)  # warm-up
            for _ in range(runs):
                wall, cpu = _clocks()
                await _h2any_post(conn, payload)
                wall_end, cpu_end = _clocks()
                record(size, wall_end - wall, cpu_end - cpu)
        elif task == "file":
            memory = scen.PeakRSS()
            with memory.measure():
                wall, cpu = _clocks()
                with open(spec["file"], "rb") as file:  # noqa: ASYNC230 (the body= under test)
                    await _h2any_post(conn, file)
                wall_end, cpu_end = _clocks()
            record(size, wall_end - wall, cpu_end - cpu)
            out["growth_mib"] = memory.growth_kib / 1024
            out["baseline_mib"] = memory.baseline_kib / 1024
        elif task == "parallel":
            streams = spec["streams"]
            await _h2any_streams(conn, spec, streams, check=True)  # warm-up and SHA-256s
            out.update(one_mbps=[], fair=[])
            for _ in range(runs):
                wall, cpu, _ = await _h2any_streams(conn, spec, 1, check=False)
                out["one_mbps"].append(size / wall / 1e6)
                wall, cpu, fair = await _h2any_streams(conn, spec, streams, check=False)
                record(size * streams, wall, cpu)
                out["fair"].append(fair)
        else:
            raise ValueError(task)
        if conn.is_closed:
            raise core.BenchmarkError("h2any: the connection closed during the run")
    return out


async def niquests_async_child(spec: dict[str, Any]) -> dict[str, Any]:
    """``AsyncSession(disable_http1=True, disable_http3=True)`` held to one connection."""
    origin, size, mbps = spec["origin"], spec["size"], []
    async with scen._niquests_session(origin) as session:
        if spec["task"] == "download":
            digest = hashlib.sha256()
            got = await scen._niquests_get(session, origin + spec["path"], spec["chunk"], digest)
            _size_ok("niquests", got, spec)
            _sha_ok("niquests", digest, spec)
            for _ in range(spec["runs"]):
                wall = time.perf_counter()
                got = await scen._niquests_get(session, origin + spec["path"], spec["chunk"], None)
                mbps.append(size / (time.perf_counter() - wall) / 1e6)
                _size_ok("niquests", got, spec)
        else:
            payload = b"\x01" * size
            for run in range(spec["runs"] + 1):  # the first: warm-up
                wall = time.perf_counter()
                resp = await session.post(origin + UPLOAD_PATH, data=payload)
                elapsed = time.perf_counter() - wall
                scen._niquests_check(resp, core.SMALL_BODY)
                if run:
                    mbps.append(size / elapsed / 1e6)
    return {"mbps": mbps}


def niquests_sync_child(spec: dict[str, Any]) -> dict[str, Any]:
    """``Session(multiplexed=True, disable_http1=True, disable_http3=True)``, one connection."""
    import niquests  # type: ignore[import-not-found,unused-ignore]

    origin, size, mbps = spec["origin"], spec["size"], []
    address = scen._server_address(origin)
    before = scen.CONNECTS[address]
    with niquests.Session(
        multiplexed=True,
        disable_http1=True,
        disable_http3=True,
        pool_connections=1,
        pool_maxsize=1,
        retries=0,
        timeout=60.0,
    ) as session:
        if core.CA_FILE:
            session.verify = core.CA_FILE
        scen._niquests_check(session.get(origin + "/" + core.SMALL_FILE), core.SMALL_BODY)

        def get(digest: Any) -> int:
            resp = session.get(origin + spec["path"], stream=True)
            scen._niquests_check(resp)
            got = 0
            for piece in resp.iter_content(spec["chunk"]):
                got += len(piece)
                if digest is not None:
                    digest.update(piece)
            return got

        if spec["task"] == "download":
            digest = hashlib.sha256()
            _size_ok("niquests", get(digest), spec)
            _sha_ok("niquests", digest, spec)
            for _ in range(spec["runs"]):
                wall = time.perf_counter()
                got = get(None)
                mbps.append(size / (time.perf_counter() - wall) / 1e6)
                _size_ok("niquests", got, spec)
        else:
            payload = b"\x01" * size
            for run in range(spec["runs"] + 1):
                wall = time.perf_counter()
                resp = session.post(origin + UPLOAD_PATH, data=payload)
                scen._niquests_check(resp, core.SMALL_BODY)
                elapsed = time.perf_counter() - wall
                if run:
                    mbps.append(size / elapsed / 1e6)
    opened = scen.CONNECTS[address] - before
    if opened != 1:
        raise core.BenchmarkError(f"niquests: opened {opened} connections, expected 1")
    return {"mbps": mbps}


def child_main(spec: dict[str, Any]) -> dict[str, Any]:
    """One child's measurement (this process is fresh); a JSON-able result."""
    core.CA_FILE = spec.get("ca")
    kind = spec["kind"]
    if kind == "floor":
        return {"mbps": [floor(spec["engine"]) for _ in range(spec["runs"])]}
    if kind == "upload-floor":
        measure = bench_bulk_floor.upload_floor  # type: ignore[attr-defined,unused-ignore]
        return {"mbps": [measure(spec["engine"]) for _ in range(spec["runs"])]}
    if kind == "h2any":
        if core.engine_name() != spec["engine"]:
            raise core.BenchmarkError(f"h2any runs on {core.engine_name()}, not {spec['engine']}")
        box: list[dict[str, Any]] = []

        async def run() -> None:
            box.append(await h2any_child(spec))

        anyio.run(run, backend=spec["backend"])
        return box[0]
    import niquests  # noqa: F401 (imported before the measurement)

    scen.count_connections()
    if kind == "nq-async":
        return asyncio.run(niquests_async_child(spec))
    return niquests_sync_child(spec)


def child_command(spec: dict[str, Any]) -> tuple[list[str], dict[str, str]]:
    """This interpreter for h2any and the floors; ``NIQUESTS_PYTHON`` for niquests, which then
    finds this interpreter's site-packages after its own (as ``bench_scenarios`` does)."""
    script = Path(__file__).resolve()
    env = dict(os.environ)
    if spec["kind"] in ("h2any", "floor", "upload-floor"):
        env["H2ANY_ENGINE"] = spec.get("engine", "")
        return [sys.executable, str(script), "--child", json.dumps(spec)], env
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        env.pop(name, None)  # niquests gets verify=CA file; these would override it
    if sys.executable == scen.NIQUESTS_PYTHON:
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
    return [scen.NIQUESTS_PYTHON, "-c", boot], env


def run_child(spec: dict[str, Any], timeout: float) -> dict[str, Any]:
    command, env = child_command(spec)
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise core.BenchmarkError(f"over the {timeout:.0f} s cap") from exc
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise core.BenchmarkError(proc.stderr.strip().splitlines()[-1] if proc.stderr else "?")
    return dict(json.loads(lines[-1]))


# ---------------------------------------------------------------------------- the plan


@dataclass
class Plan:
    groups: list[str]
    engines: list[str]
    backends: list[str]
    rounds: int
    runs: int
    sizes: Sizes
    niquests: bool
    quick: bool


@dataclass
class Job:
    key: str
    spec: dict[str, Any]
    #: per round: the child's best values (mbps, cpu_mbps, ...), or None if it failed
    rounds: list[dict[str, Any] | None] = field(default_factory=list)
    error: str | None = None


def has_upload_floor() -> bool:
    """Whether ``bench_bulk_floor`` has an upload floor (``upload_floor(engine)``)."""
    return hasattr(bench_bulk_floor, "upload_floor")


def jobs_for(plan: Plan, h2c: core.Server, tls: core.Server | None, file: str) -> list[Job]:
    sizes, main = plan.sizes, plan.engines[0]
    jobs: list[Job] = []

    def common(server: core.Server) -> dict[str, Any]:
        return {
            "origin": server.origin,
            "path": "/" + BULK_FILE,
            "size": sizes.bulk,
            "sha256": server.sha256[BULK_FILE],
            "runs": plan.runs,
            "ca": server.tls.ca if server.tls else None,
        }

    def h2any_job(key: str, server: core.Server, engine: str, backend: str, **spec: Any) -> None:
        jobs.append(
            Job(
                key,
                {**common(server), "kind": "h2any", "engine": engine, "backend": backend, **spec},
            )
        )

    def niquests_jobs(prefix: str, server: core.Server, task: str) -> None:
        if not plan.niquests:
            return
        modes = NIQUESTS_MODES if task == "download" else NIQUESTS_UPLOAD_MODES
        for label, (kind, chunk) in modes.items():
            if plan.quick and label not in QUICK_NIQUESTS[prefix]:
                continue  # a smoke test: one mode per transfer, both sessions among them
            spec = {**common(server), "kind": kind, "chunk": chunk, "task": task}
            jobs.append(Job(f"{prefix}/niquests/{label}", spec))

    if "download" in plan.groups:
        for engine in plan.engines:
            for backend in plan.backends:
                h2any_job(f"dl/{engine}/{backend}", h2c, engine, backend, task="download")
            jobs.append(
                Job(f"floor/{engine}", {"kind": "floor", "engine": engine, "runs": plan.runs})
            )
        niquests_jobs("dl", h2c, "download")
    if "upload" in plan.groups:
        for backend in plan.backends:
            h2any_job(f"up/{main}/{backend}", h2c, main, backend, task="upload")
        if has_upload_floor():
            spec = {"kind": "upload-floor", "engine": main, "runs": plan.runs}
            jobs.append(Job(f"upfloor/{main}", spec))
        niquests_jobs("up", h2c, "upload")
    if "rss" in plan.groups:
        h2any_job("file", h2c, main, "asyncio", task="file", file=file, size=sizes.file, runs=1)
    if "parallel" in plan.groups:
        for backend in plan.backends:
            h2any_job(f"par/{backend}", h2c, main, backend, task="parallel", streams=sizes.streams)
    for group, task, short in (
        ("tls-download", "download", "tdl"),
        ("tls-upload", "upload", "tup"),
    ):
        if group in plan.groups and tls is not None:
            for backend in plan.backends:
                h2any_job(f"{short}/{main}/{backend}", tls, main, backend, task=task)
            niquests_jobs(short, tls, task)
    if "small" in plan.groups:
        for backend in plan.backends:
            h2any_job(f"small/{backend}", h2c, main, backend, task="small", requests=sizes.small)
    return jobs


def run_jobs(jobs: list[Job], plan: Plan) -> None:
    """``plan.rounds`` rounds, each running every job's child once, every other round in
    the reverse order."""
    timeout = 60.0 if plan.quick else 300.0
    for number in range(plan.rounds):
        order = jobs if number % 2 == 0 else jobs[::-1]
        for job in order:
            print(f"  round {number + 1}/{plan.rounds} {job.key:48} ...", end="", flush=True)
            if job.error:
                job.rounds.append(None)
                print(" skipped (failed before)")
                continue
            try:
                result = run_child(job.spec, timeout)
            except core.BenchmarkError as exc:
                job.error = str(exc)
                job.rounds.append(None)
                print(f" FAILED: {exc}", flush=True)
                continue
            best = max(range(len(result["mbps"])), key=lambda i: result["mbps"][i])
            summary = {"mbps": result["mbps"][best]}
            if "cpu_mbps" in result:
                summary["cpu_mbps"] = max(result["cpu_mbps"])
            for name in ("one_mbps",):
                if name in result:
                    summary[name] = max(result[name])
            if "fair" in result:
                summary["fair"] = min(result["fair"])
            if "growth_mib" in result:
                summary["growth_mib"] = result["growth_mib"]
            job.rounds.append(summary)
            print(" " + ", ".join(f"{k} {v:,.2f}" for k, v in summary.items()), flush=True)
        # keep every job's list one entry per round (a job added no entry if it raised)
        for job in jobs:
            while len(job.rounds) < number + 1:
                job.rounds.append(None)


# ---------------------------------------------------------------------------- the table


@dataclass
class Target:
    target: str
    measured: str
    ratio: str
    met: str


class Results:
    def __init__(self, jobs: list[Job], rounds: int) -> None:
        self.jobs = {job.key: job for job in jobs}
        self.rounds = rounds

    def values(self, key: str, name: str = "mbps") -> list[float | None]:
        job = self.jobs.get(key)
        if job is None:
            return [None] * self.rounds
        return [r.get(name) if r else None for r in job.rounds]

    def has(self, key: str) -> bool:
        return any(v is not None for v in self.values(key))

    def error(self, key: str) -> str | None:
        job = self.jobs.get(key)
        return job.error if job else None

    def best_niquests(self, prefix: str) -> tuple[list[float | None], list[str]]:
        """Per round, the fastest niquests mode, and the mode's label."""
        keys = [k for k in self.jobs if k.startswith(prefix + "/niquests/")]
        best: list[float | None] = []
        labels: list[str] = []
        for index in range(self.rounds):
            found = [(v, k) for k in keys if (v := self.values(k)[index]) is not None]
            if found:
                value, key = max(found)
                best.append(value)
                labels.append(key.rsplit("/", 1)[1])
            else:
                best.append(None)
        return best, labels


def _span(values: Sequence[float | None], unit: str = "", digits: int = 0) -> str:
    found = [v for v in values if v is not None]
    if not found:
        return "n/a"
    low, high = min(found), max(found)
    text = (
        f"{low:,.{digits}f}"
        if round(low, digits) == round(high, digits)
        else (f"{low:,.{digits}f}-{high:,.{digits}f}")
    )
    return text + unit


def _ratios(top: Sequence[float | None], bottom: Sequence[float | None]) -> list[float]:
    return [a / b for a, b in zip(top, bottom, strict=True) if a is not None and b]


def _ratio_cell(ratios: list[float], percent: bool) -> str:
    if not ratios:
        return "n/a"
    median = statistics.median(ratios)

    def show(x: float) -> str:
        return f"{x:.0%}" if percent else f"{x:.2f}x"

    if len(ratios) == 1:
        return show(median)
    return f"{show(median)} ({show(min(ratios))}-{show(max(ratios))})"


def _met(ratios: list[float], target: float, below: bool = False) -> str:
    if not ratios:
        return "n/a"
    median = statistics.median(ratios)
    return "yes" if (median < target if below else median >= target) else "no"


def _failed(results: Results, *keys: str) -> str:
    errors = [f"{k}: {e}" for k in keys if (e := results.error(k))]
    return "; ".join(errors)


def targets(results: Results, plan: Plan) -> list[Target]:
    rows: list[Target] = []
    main = plan.engines[0]
    size = f"{plan.sizes.bulk // MIB} MiB"
    nq_missing = "niquests not measured" if not plan.niquests else "niquests failed"

    def versus_niquests(label: str, key: str, prefix: str, goal: float) -> None:
        mine = results.values(key)
        cpu = results.values(key, "cpu_mbps")
        theirs, modes = results.best_niquests(prefix)
        ratios = _ratios(mine, theirs)
        measured = f"h2any {_span(mine)} MB/s ({_span(cpu)} per CPU-s)"
        if any(v is not None for v in theirs):
            winner = max(set(modes), key=modes.count)
            measured += f"; niquests best {_span(theirs)} MB/s ({winner})"
        else:
            measured += f"; {nq_missing}"
        if failed := _failed(results, key):
            measured += f"; FAILED {failed}"
        rows.append(Target(label, measured, _ratio_cell(ratios, False), _met(ratios, goal)))

    def versus(
        label: str,
        key: str,
        base_key: str,
        base_name: str,
        goal: float,
        percent: bool = True,
        name: str = "mbps",
        base_field: str = "mbps",
    ) -> None:
        mine, base = results.values(key, name), results.values(base_key, base_field)
        ratios = _ratios(mine, base)
        measured = f"{_span(mine)} MB/s vs {base_name} {_span(base)} MB/s"
        if failed := _failed(results, key, base_key):
            measured += f"; FAILED {failed}"
        rows.append(Target(label, measured, _ratio_cell(ratios, percent), _met(ratios, goal)))

    if "download" in plan.groups:
        for engine in plan.engines:
            for backend in plan.backends:
                key = f"dl/{engine}/{backend}"
                if engine == main:
                    versus_niquests(
                        f"{size} download, 1 stream, {engine}, {backend}: >= 2x niquests' best",
                        key,
                        "dl",
                        2.0,
                    )
                goal = FLOOR_TARGET.get(engine, 0.7)
                versus(
                    f"{size} download, 1 stream, {engine}, {backend}: >= {goal:.0%} of the "
                    f"{engine} floor",
                    key,
                    f"floor/{engine}",
                    f"{engine} floor",
                    goal,
                )
    if "upload" in plan.groups:
        for backend in plan.backends:
            versus_niquests(
                f"{size} upload (64 KiB windows), 1 stream, {main}, {backend}: "
                ">= 2x niquests' best",
                f"up/{main}/{backend}",
                "up",
                2.0,
            )
        for backend in plan.backends:
            if not has_upload_floor():
                break
            versus(
                f"{size} upload (64 KiB windows), 1 stream, {main}, {backend}: >= 60% of the "
                f"{main} upload floor",
                f"up/{main}/{backend}",
                f"upfloor/{main}",
                f"{main} upload floor",
                0.60,
            )
        if not has_upload_floor():
            rows.append(
                Target(
                    f"{size} upload, {main}: >= 60% of the engine's upload floor",
                    "not measured: benchmarks/ has no upload floor (bench_bulk_floor.py "
                    "measures downloads only)",
                    "n/a",
                    "n/a",
                )
            )
    if "rss" in plan.groups:
        growth = results.values("file", "growth_mib")
        speed = results.values("file")
        found = [g for g in growth if g is not None]
        measured = (
            f"peak RSS growth {_span(growth, ' MiB', 1)} at {_span(speed)} MB/s "
            f"({plan.sizes.file // MIB} MiB sparse file, body=open(path, 'rb'), asyncio)"
        )
        if failed := _failed(results, "file"):
            measured += f"; FAILED {failed}"
        rows.append(
            Target(
                f"{_mib(plan.sizes.file)} file upload: peak RSS growth < 16 MiB",
                measured,
                f"{max(found) / 16:.0%} of the cap" if found else "n/a",
                ("yes" if max(found) < 16 else "no") if found else "n/a",
            )
        )
    if "parallel" in plan.groups:
        streams = plan.sizes.streams
        for backend in plan.backends:
            key = f"par/{backend}"
            eight, one = results.values(key), results.values(key, "one_mbps")
            ratios = _ratios(eight, one)
            cpu = results.values(key, "cpu_mbps")
            measured = (
                f"{streams} streams {_span(eight)} MB/s aggregate ({_span(cpu)} per CPU-s) vs "
                f"1 stream {_span(one)} MB/s (same child, alternating)"
            )
            if failed := _failed(results, key):
                measured += f"; FAILED {failed}"
            rows.append(
                Target(
                    f"{streams} x {size} parallel, {main}, {backend}: aggregate >= 1.2x one stream",
                    measured,
                    _ratio_cell(ratios, False),
                    _met(ratios, 1.2),
                )
            )
            fair = [f for f in results.values(key, "fair") if f is not None]
            rows.append(
                Target(
                    f"{streams} x {size} parallel, {main}, {backend}: fastest / slowest "
                    "finish >= 0.75",
                    f"worst run of each round: {_span(fair, '', 2)}",
                    _span(fair, "", 2),
                    _met([min(fair)], 0.75) if fair else "n/a",
                )
            )
    for group, short, what in (
        ("tls-download", "tdl", "download"),
        ("tls-upload", "tup", "upload"),
    ):
        if group not in plan.groups:
            continue
        for backend in plan.backends:
            versus_niquests(
                f"TLS {size} {what}, {main}, {backend}: >= 1.5x niquests' best over TLS",
                f"{short}/{main}/{backend}",
                short,
                1.5,
            )
        if what == "download":
            for backend in plan.backends:
                tls_key, h2c_key = f"tdl/{main}/{backend}", f"dl/{main}/{backend}"
                if not results.has(h2c_key):
                    rows.append(
                        Target(
                            f"TLS {size} download, {backend}: >= 70% of the h2c download",
                            "h2c download not measured (add --rows download)",
                            "n/a",
                            "n/a",
                        )
                    )
                    continue
                versus(
                    f"TLS {size} download, {main}, {backend}: >= 70% of the h2c download",
                    tls_key,
                    h2c_key,
                    "h2c",
                    0.70,
                )
    if "asyncio" in plan.backends and "trio" in plan.backends:
        if "small" in plan.groups:
            trio, aio = results.values("small/trio"), results.values("small/asyncio")
            trio_cpu = results.values("small/trio", "cpu_mbps")
            aio_cpu = results.values("small/asyncio", "cpu_mbps")
            ratios = _ratios(trio, aio)

            measured = (
                f"trio {_span(trio)} req/s vs asyncio {_span(aio)}; per CPU-s "
                f"{_span(trio_cpu)} vs {_span(aio_cpu)} "
                f"({_ratio_cell(_ratios(trio_cpu, aio_cpu), True)})"
            )
            if failed := _failed(results, "small/trio", "small/asyncio"):
                measured += f"; FAILED {failed}"
            rows.append(
                Target(
                    f"small GETs ({plan.sizes.small:,}, 100 in flight), {main}: trio >= 85% "
                    "of asyncio",
                    measured,
                    _ratio_cell(ratios, True),
                    _met(ratios, 0.85),
                )
            )
        if "download" in plan.groups:
            trio_key, aio_key = f"dl/{main}/trio", f"dl/{main}/asyncio"
            cpu_ratio = _ratio_cell(
                _ratios(results.values(trio_key, "cpu_mbps"), results.values(aio_key, "cpu_mbps")),
                True,
            )
            ratios = _ratios(results.values(trio_key), results.values(aio_key))
            measured = (
                f"trio {_span(results.values(trio_key))} MB/s vs asyncio "
                f"{_span(results.values(aio_key))}; per CPU-s {cpu_ratio}"
            )
            rows.append(
                Target(
                    f"{size} download, {main}: trio >= 85% of asyncio",
                    measured,
                    _ratio_cell(ratios, True),
                    _met(ratios, 0.85),
                )
            )
    return rows


def _mib(size: int) -> str:
    return f"{size // MIB} MiB" if size < 1024 * MIB else f"{size // (1024 * MIB)} GiB"


def markdown(rows: list[Target]) -> str:
    return core.markdown_table(
        ["target", "measured", "ratio", "met"],
        [[r.target, r.measured, r.ratio, r.met] for r in rows],
        "llrl",
    )


def report(
    rows: list[Target],
    plan: Plan,
    argv: list[str],
    load_start: str,
    load_end: str,
    env: list[str],
) -> str:
    niquests = scen.niquests_note() if plan.niquests else "- niquests: not measured"
    parts = [
        f"## Bulk speed against issue 26's targets ({datetime.date.today().isoformat()})",
        "",
        *env,
        niquests,
        f"- load average (1/5/15 min) at the end: {load_end}",
        "",
        "Commands:",
        "",
        "```",
        "python benchmarks/bench_bulk.py " + " ".join(argv),
        core.nghttpd_command(False),
        *([core.nghttpd_command(True)] if any(g.startswith("tls") for g in plan.groups) else []),
        "```",
        "",
        f"Each figure: a fresh child process per client, the best of {plan.runs} timed "
        f"run(s) after an untimed, validated one; {plan.rounds} round(s), alternating the order "
        "of the children; a range is the rounds' spread, a ratio the median of the rounds' "
        "ratios (same round). MB/s = 10^6 bytes/s; per CPU-s = the h2any child's CPU time. "
        "Floors (`benchmarks/bench_bulk_floor.py`): 64 MiB of 16 KiB DATA frames fed to a "
        "client `H2Connection` in 256 KiB reads, each frame acknowledged (download); 64 MiB "
        "sent by a client `H2Connection` into a server's 64 KiB windows, every frame "
        "acknowledged at once (upload); only the client's calls timed. niquests: "
        "`AsyncSession(disable_http1=True, disable_http3=True)` with `iter_content()` and "
        "`iter_content(1 MiB)`, `Session(multiplexed=True, disable_http1=True, "
        "disable_http3=True)` with `iter_content(1 MiB)`, each held to one connection; its "
        "best mode of the round is the reference.",
        "",
        markdown(rows),
        "",
    ]
    del load_start
    return "\n".join(parts)


# ---------------------------------------------------------------------------- main


@contextlib.contextmanager
def servers(plan: Plan) -> Iterator[tuple[core.Server, core.Server | None]]:
    files = {BULK_FILE: plan.sizes.bulk}
    need_tls = any(g.startswith("tls") for g in plan.groups)
    with contextlib.ExitStack() as stack:
        h2c = stack.enter_context(core.nghttpd(files=files))
        tls = None
        if need_tls:
            tls_files = stack.enter_context(core.tls_files())
            tls = stack.enter_context(core.nghttpd(files=files, tls=tls_files))
        yield h2c, tls


@contextlib.contextmanager
def sparse_file(size: int) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="h2any-bulk-") as tmp:
        path = Path(tmp) / "upload.bin"
        with path.open("wb") as file:  # sparse: no disk space, reads return zeros
            file.truncate(size)
        yield str(path)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, Plan]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny transfers, 1 run, 1 round")
    parser.add_argument("--rows", nargs="+", choices=GROUPS, action="extend")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, action="extend")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, action="extend")
    parser.add_argument("--rounds", type=int, help="rounds of every child (default 2)")
    parser.add_argument("--runs", type=int, help="timed runs per child, best kept (default 3)")
    parser.add_argument("--niquests-python", help="the interpreter that has niquests")
    parser.add_argument("--no-niquests", action="store_true", help="skip niquests' children")
    parser.add_argument("--output", type=Path, help="write the section to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.niquests_python:
        scen.NIQUESTS_PYTHON = args.niquests_python
    niquests = not args.no_niquests and args.child is None and scen.niquests_available()
    plan = Plan(
        groups=core._dedupe(args.rows or list(GROUPS)),
        engines=core._dedupe(args.engines or list(ENGINES)),
        backends=core._dedupe(args.backends or list(BACKENDS)),
        rounds=args.rounds or (1 if args.quick else 2),
        runs=args.runs or (1 if args.quick else 3),
        sizes=Sizes.quick() if args.quick else Sizes(),
        niquests=niquests,
        quick=args.quick,
    )
    return args, plan


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, plan = parse_args(argv)
    if args.child is not None:
        print(json.dumps(child_main(json.loads(args.child))))
        return 0
    signal.signal(signal.SIGTERM, core._sigterm)
    load_start = core.load_average()
    started = time.monotonic()
    print(f"load average (1/5/15 min) at the start: {load_start}", flush=True)
    try:
        with servers(plan) as (h2c, tls), sparse_file(plan.sizes.file) as file:
            env = core.environment(h2c)
            for line in env:
                print(line)
            jobs = jobs_for(plan, h2c, tls, file)
            run_jobs(jobs, plan)
    except KeyboardInterrupt:
        print("\ninterrupted; nghttpd stopped", file=sys.stderr)
        return 130
    load_end = core.load_average()
    print(f"load average (1/5/15 min) at the end: {load_end}")
    print(f"the run took {time.monotonic() - started:.0f} s")
    env = [line for line in env if "h2any's engine" not in line]
    engines = ", ".join(f"{e} {core._version(e)}" for e in plan.engines)
    env.append(f"- h2any's engines: {engines} (`H2ANY_ENGINE` set per child)")
    rows = targets(Results(jobs, plan.rounds), plan)
    section = report(rows, plan, argv, load_start, load_end, env)
    print()
    print(section)
    if args.output is not None:
        core.write_output(args.output, section, MARK_START, MARK_END, intro="")
        print(f"wrote {args.output}")
    return 1 if any(job.error for job in jobs) else 0


if __name__ == "__main__":
    sys.exit(main())
