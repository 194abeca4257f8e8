"""Before and after: the issue's four rows for two checkouts of h2any, measured in one run.

Usage::

    python benchmarks/bench_compare.py [--baseline REF] [--current REF] [--rounds N]
        [--rows small fanout bulk upload] [--engine h2|jh2] [--backend asyncio|trio|uvloop]
        [--streams N] [--repeat N] [--no-peer] [--quick] [--output FILE] [--json FILE]

The *baseline* is a git ref (default ``d7407d8``, the commit before the restructuring of
the core package) checked out with ``git worktree add --detach`` into a temporary directory,
and removed again at the end; the *current* tree is this checkout's working tree, uncommitted
changes included (its ``h2any/`` copied at the start, so that edits during the run don't
mix into it), or with ``--current REF`` a second ref checked out like the baseline (two refs
-- or the same ref twice -- prove the harness and show its noise floor).

Every measurement runs in a Python process of its own whose ``PYTHONPATH`` starts with the
tree under test, so the two versions never share a process; the child checks that ``h2any``
was imported from that tree. The measuring code is the same for both: this directory's
``bench_core`` and ``bench_scenarios`` (their row functions, imported in the child), so only
h2any differs. Rows (one connection each, to ``nghttpd`` on loopback, started once for the
whole run):

* ``small``: ``bench_core.h2any_small`` -- 20,000 GETs of a 1-byte file, 100 in flight.
* ``fanout``: ``bench_scenarios.h2any_fanout`` -- 5,000 GETs of the 1-byte file started at
  once, a task each (anyio task group); any failed request fails the row.
* ``bulk``: ``bench_scenarios.downloads`` -- one 256 MiB download (``--streams N``: N at once
  on the connection).
* ``upload``: ``bench_scenarios.upload`` -- a sparse 512 MiB file POSTed with
  ``body=open(path, "rb")`` to a second nghttpd with 16 MiB receive windows.

Each round of a row starts a fresh child per tree and one for the row's peer; each imports
and warms up (untimed; the downloads' warm-up is a 64 MiB file whose SHA-256 is checked, the
timed downloads check their byte count), then the children take turns at ``--repeat`` (3)
timed runs each -- baseline, current, peer, then current, baseline, peer -- so the runs
compared are seconds apart, neither tree always goes first, and the machine's drift hits
both alike. A child's value for the round
is its best run: other processes only ever slow a run down, so the best is the steadiest
figure on a shared machine. The peer runs on the baseline tree: the h2 floor
(``bench_scenarios.h2_floor``, 5,000 GETs through the client side of a stock
``H2Connection`` in memory) for ``small`` and ``fanout``, httpx (``http2=True``) for
``bulk`` (64 MiB) and ``upload`` (128 MiB).

The first table shows each tree's median over the rounds, the median of the same-round
ratios current / baseline with their interquartile range, and each tree against the peer
(median of the same-round ratios). A row passes the issue's rule if current / baseline is at
least 0.95. The second table is the same work per second of the client process's CPU time
(``time.process_time``, all threads): it ignores time spent waiting, so it misses a stall,
but it barely moves when other processes compete for the CPUs.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
DEFAULT_BASELINE = "d7407d8"
ROWS = ("small", "fanout", "bulk", "upload")
BACKENDS = ("asyncio", "trio", "uvloop")
ENGINES = ("h2", "jh2")
ROUNDS = 10
REPEAT = 3
MIB = 1024 * 1024
MAX_LOSS = 0.05  # the issue: no row may lose more than 5%
CHILD_TIMEOUT = 300.0
UPLOAD_SERVER_ARGS = ("-w", "24", "-W", "24")  # as bench_scenarios: the client is the limit


@dataclass
class Sizes:
    small: int = 20_000
    fanout: int = 5_000
    bulk: int = 256 * MIB
    check: int = 64 * MIB  # the downloads' warm-up file (SHA-256-checked)
    upload: int = 512 * MIB
    upload_warmup: int = 64 * MIB
    floor: int = 5_000
    peer_bulk: int = 64 * MIB
    peer_upload: int = 128 * MIB

    @classmethod
    def quick(cls) -> Sizes:
        return cls(5_000, 1_000, 64 * MIB, 16 * MIB, 128 * MIB, 16 * MIB, 2_000, 16 * MIB, 32 * MIB)


def file_name(size: int) -> str:
    return f"{size // MIB}m.bin"


# ---------------------------------------------------------------------------- the child


def child_main(spec: dict[str, Any]) -> None:
    """A worker for one series, in a fresh process with the h2any that ``PYTHONPATH`` gives:
    import, warm up (untimed) and say so, then one timed run per ``run`` line on stdin, each
    answered by a JSON line on stdout, until stdin closes."""
    import h2any

    where = Path(h2any.__file__).resolve()
    if not where.is_relative_to(Path(spec["root"]).resolve()):
        raise SystemExit(f"h2any was imported from {where}, not from {spec['root']}")
    import bench_core as core

    job, origin, backend = spec["job"], spec["origin"], spec["backend"]
    run = partial(core._run_async, backend)
    if job != "small":
        import bench_scenarios as sc  # it needs more of h2any's API than bench_core
    # Each branch warms up and defines ``once`` (one timed run: the rate the row function
    # reports) and ``work`` (what one run moves, in the unit's numerator).
    if job == "small":
        work = count = spec["count"]
        run(partial(core.h2any_small, origin, max(1000, count // 10)))

        def once() -> float:
            return run(partial(core.h2any_small, origin, count))

    elif job == "floor":
        work = count = spec["count"]
        sc.h2_floor(count // 10)

        def once() -> float:
            return sc.h2_floor(count)

    elif job == "fanout":
        work = count = spec["count"]
        loop = "trio" if backend == "trio" else "asyncio"
        fanout = partial(sc.h2any_fanout, origin, backend=loop)
        sc.asyncio_result(run, partial(fanout, count // 5))

        def once() -> float:
            elapsed, errors = sc.asyncio_result(run, partial(fanout, count))
            if errors:
                raise core.BenchmarkError(f"fan-out errors: {dict(errors)}")
            return count / elapsed

    elif job == "bulk":
        base = {"client": spec["client"], "origin": origin, "options": {}}
        warm = {**base, "path": "/" + file_name(spec["check"]), "size": spec["check"]}
        _, digests = sc.asyncio_result(run, partial(sc.downloads, {**warm, "streams": 1}, True))
        if digests != [spec["sha256"]]:
            raise core.BenchmarkError(f"{spec['client']}: SHA-256 mismatch")
        timed = {**base, "path": "/" + file_name(spec["size"]), "size": spec["size"]}
        timed["streams"] = spec["streams"]
        work = spec["size"] * spec["streams"] / 1e6

        def once() -> float:  # downloads() checks every stream's byte count
            elapsed, _ = sc.asyncio_result(run, partial(sc.downloads, timed, False))
            return work / elapsed

    elif job == "upload":
        base = {"client": spec["client"], "origin": origin}
        run(partial(sc.upload, {**base, "file": spec["warm_file"], "size": spec["warm"]}, None))
        timed = {**base, "file": spec["file"], "size": spec["size"]}
        work = spec["size"] / 1e6

        def once() -> float:  # upload() checks the 200, which nghttpd sends after the body
            return work / run(partial(sc.upload, timed, None))

    else:
        raise SystemExit(f"unknown job {job!r}")
    say({"ready": True, "h2any": str(where.parent), "engine": core.engine_name()})
    for line in sys.stdin:
        if line.strip() == "run":
            cpu = time.process_time()
            value = once()
            say({"value": value, "cpu": work / (time.process_time() - cpu)})


def say(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


def describe(exc: BaseException) -> str:
    """``Type: message`` of the exception, or of each one in an exception group."""
    inner = getattr(exc, "exceptions", None)
    if isinstance(inner, tuple):
        return "; ".join(dict.fromkeys(describe(e) for e in inner))
    return f"{type(exc).__name__}: {exc}"


# ---------------------------------------------------------------------------- checkouts


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


@dataclass
class Tree:
    name: str  # "baseline" / "current"
    root: Path
    what: str  # for the report


@contextlib.contextmanager
def checkout(ref: str, name: str, tmp: Path) -> Iterator[Tree]:
    """``ref`` as a detached git worktree in ``tmp``, removed (with its metadata) on exit."""
    try:
        commit = git("rev-parse", "--verify", "--quiet", ref + "^{commit}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"{ref!r} is not a commit of {REPO}") from None
    path = tmp / name
    git("worktree", "add", "--detach", "--quiet", str(path), commit)
    try:
        yield Tree(name, path, f"`{ref}` ({commit[:9]}), a git worktree")
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            git("worktree", "remove", "--force", str(path))


def working_tree(tmp: Path) -> Tree:
    """A copy of the working tree's ``h2any/`` taken now, so that edits made while the run
    goes on (someone else's, say) cannot mix two versions into one column."""
    head = git("rev-parse", "--short=9", "HEAD")
    dirty = git("status", "--porcelain", "--", "h2any")
    changes = f"{len(dirty.splitlines())} changed path(s) in h2any/" if dirty else "clean"
    root = tmp / "current"
    shutil.copytree(REPO / "h2any", root / "h2any", ignore=shutil.ignore_patterns("__pycache__"))
    digest = hashlib.sha256()
    for path in sorted((root / "h2any").rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    stamp = time.strftime("%H:%M:%S")
    what = (
        f"working tree {REPO} (HEAD {head}, {changes}), h2any/ copied at {stamp} "
        f"(content SHA-256 {digest.hexdigest()[:12]})"
    )
    return Tree("current", root, what)


# ---------------------------------------------------------------------------- the parent


@dataclass
class Series:
    """One job (a row on one tree, or its peer) across the rounds."""

    row: str
    who: str  # "baseline", "current", "peer"
    label: str
    unit: str
    spec: dict[str, Any]
    tree: Tree
    # One entry per round (None: no value that round): the best run's rate, and the best
    # rate per CPU second.
    values: list[float | None] = field(default_factory=list)
    cpu: list[float | None] = field(default_factory=list)
    error: str | None = None
    seen: set[str] = field(default_factory=set)  # the h2any directory and engine reported


@dataclass
class Plan:
    rows: list[str]
    rounds: int
    engine: str
    backend: str
    streams: int
    repeat: int
    peer: bool
    sizes: Sizes
    tmp: Path = Path()  # the run's temporary directory, once it exists


class Worker:
    """The child process of one series for one round (``child_main``)."""

    def __init__(self, series: Series, plan: Plan) -> None:
        self.series = series
        env = dict(os.environ)
        env["PYTHONPATH"] = str(series.tree.root)
        # Bytecode caches outside the trees (the working tree is someone's checkout), kept
        # for the run so that the children don't recompile every module on start.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(plan.tmp / "pycache")
        env["H2ANY_ENGINE"] = plan.engine
        env["PYTHONHASHSEED"] = "0"  # the same dict and set layouts in every child
        spec = json.dumps({**series.spec, "root": str(series.tree.root)})
        self.stderr = tempfile.TemporaryFile(dir=plan.tmp)  # noqa: SIM115 (see close)
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--child", spec],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=env,
            cwd=HERE,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self.values: list[float] = []
        self.cpu: list[float] = []

    def _answer(self) -> dict[str, Any]:
        """The child's next line (one per request, so nothing waits in the buffer)."""
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], CHILD_TIMEOUT)
        line = self.proc.stdout.readline() if ready else ""
        if line:
            message = dict(json.loads(line))
            if "error" in message:
                raise RuntimeError(message["error"])
            return message
        if not ready:
            raise RuntimeError(f"no answer within {CHILD_TIMEOUT:.0f} s")
        self.proc.wait(timeout=10)
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        raise RuntimeError(lines[-1] if lines else f"exit status {self.proc.returncode}")

    def ready(self) -> None:
        message = self._answer()
        self.series.seen.add(f"h2any from {message['h2any']}, engine {message['engine']}")

    def run(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        message = self._answer()
        self.values.append(float(message["value"]))
        self.cpu.append(float(message["cpu"]))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.stderr.close()


def _die_with_parent() -> None:
    """In the child: get SIGTERM if this process dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _attempt(worker: Worker, step: Callable[[], None]) -> bool:
    """``step`` of ``worker``; on failure the series records the error and is done."""
    try:
        step()
    except (RuntimeError, OSError, ValueError) as exc:
        worker.series.error = str(exc) or type(exc).__name__
        return False
    return True


def run_round(series: list[Series], plan: Plan, number: int) -> None:
    """One round of one row: a worker per series (their imports and warm-ups overlap, and
    are not timed), then ``plan.repeat`` timed runs each, taking turns (baseline, current,
    peer, then current, baseline, peer); each series records its best run of the round."""
    started = time.monotonic()
    workers = [Worker(s, plan) for s in series if s.error is None]
    try:
        live = [w for w in workers if _attempt(w, w.ready)]
        for i in range(plan.repeat):
            # The trees swap places each turn, the peer goes last: nobody runs twice in a
            # row (a process running again at once finds its memory still in the caches).
            turn = live if (number + i) % 2 else [*live[1::-1], *live[2:]]
            for worker in turn:
                if worker.series.error is None:
                    _attempt(worker, worker.run)
    finally:
        for worker in workers:
            worker.close()
    done = {w.series.who: w for w in workers}
    parts = []
    for s in series:
        worker = done.get(s.who)
        ok = worker is not None and s.error is None and bool(worker.values)
        s.values.append(max(worker.values) if ok and worker else None)
        s.cpu.append(max(worker.cpu) if ok and worker else None)
        if worker is not None:
            parts.append(f"{s.who} " + (f"{s.values[-1]:,.0f}" if ok else f"FAILED: {s.error}"))
    seconds = time.monotonic() - started
    print(
        f"  {number}/{plan.rounds} {series[0].row:7} {', '.join(parts)} {series[0].unit} "
        f"(best of {plan.repeat}; {seconds:.1f} s)",
        flush=True,
    )


def make_series(
    plan: Plan, trees: tuple[Tree, Tree], server: Any, upload_server: Any, files: dict[str, str]
) -> dict[str, list[Series]]:
    """For each row: [baseline, current, peer] (the peer only with ``plan.peer``)."""
    sizes, backend = plan.sizes, plan.backend
    baseline, current = trees
    out: dict[str, list[Series]] = {}
    for row in plan.rows:
        if row == "small":
            spec: dict[str, Any] = {"job": "small", "count": sizes.small}
            unit, label = "req/s", f"{sizes.small:,} GETs, 100 in flight"
            peer: dict[str, Any] = {"job": "floor", "count": sizes.floor}
            peer_label = f"h2 floor ({sizes.floor:,} GETs in memory)"
        elif row == "fanout":
            spec = {"job": "fanout", "count": sizes.fanout}
            unit, label = "req/s", f"{sizes.fanout:,} GETs at once, a task each"
            peer = {"job": "floor", "count": sizes.floor}
            peer_label = f"h2 floor ({sizes.floor:,} GETs in memory)"
        elif row == "bulk":
            spec = {
                "job": "bulk",
                "client": "h2any",
                "size": sizes.bulk,
                "streams": plan.streams,
                "check": sizes.check,
                "sha256": server.sha256[file_name(sizes.check)],
            }
            unit = "MB/s"
            label = f"{plan.streams} x {sizes.bulk // MIB} MiB download"
            peer = {**spec, "client": "httpx", "size": sizes.peer_bulk, "streams": 1}
            peer_label = f"httpx, 1 x {sizes.peer_bulk // MIB} MiB download"
        else:
            spec = {
                "job": "upload",
                "client": "h2any",
                "file": files["upload"],
                "size": sizes.upload,
                "warm_file": files["warm"],
                "warm": sizes.upload_warmup,
            }
            unit, label = "MB/s", f"{sizes.upload // MIB} MiB file POST, 16 MiB windows"
            peer = {**spec, "client": "httpx", "file": files["peer"], "size": sizes.peer_upload}
            peer_label = f"httpx, {sizes.peer_upload // MIB} MiB file POST (64 KiB reads)"
        origin = upload_server.origin if row == "upload" else server.origin
        common = {"origin": origin, "backend": backend}
        series = [
            Series(row, "baseline", label, unit, {**common, **spec}, baseline),
            Series(row, "current", label, unit, {**common, **spec}, current),
        ]
        if plan.peer:
            series.append(Series(row, "peer", peer_label, unit, {**common, **peer}, baseline))
        out[row] = series
    return out


def run_rounds(plan: Plan, jobs: dict[str, list[Series]]) -> None:
    for number in range(1, plan.rounds + 1):
        for row in plan.rows:
            run_round(jobs[row], plan, number)


# ---------------------------------------------------------------------------- the report


def paired(top: list[float | None], bottom: list[float | None]) -> list[float]:
    """``top / bottom`` for every round where both have a value."""
    return [
        a / b for a, b in zip(top, bottom, strict=False) if a is not None and b is not None and b
    ]


def median(values: list[float | None]) -> float | None:
    good = [v for v in values if v is not None]
    return statistics.median(good) if good else None


def _quartiles(ratios: list[float]) -> str:
    if len(ratios) < 4:
        return f"{min(ratios):.3f} - {max(ratios):.3f}" if ratios else "n/a"
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return f"{q1:.3f} - {q3:.3f}"


def _num(series: Series, values: list[float | None]) -> str:
    value = median(values)
    return "FAILED" if series.error else "n/a" if value is None else f"{value:,.0f}"


def _ratio(ratios: list[float], failed: bool) -> str:
    return "n/a" if failed or not ratios else f"{statistics.median(ratios):.3f}"


def _markdown(header: list[str], align: str, body: list[list[str]]) -> str:
    marks = {"l": "---", "r": "--:"}
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks[a] for a in align) + "|"]
    return "\n".join([*lines, *("| " + " | ".join(cells) + " |" for cells in body)])


def table(plan: Plan, jobs: dict[str, list[Series]]) -> str:
    """Wall-clock rates: the issue's rule, and the peers."""
    header = [
        "row",
        "unit",
        "baseline (median)",
        "current (median)",
        "current / baseline (same-round median)",
        "interquartile range",
        f"within {MAX_LOSS:.0%}",
    ]
    if plan.peer:
        header += ["peer", "peer (median)", "baseline / peer", "current / peer"]
    body: list[list[str]] = []
    for row in plan.rows:
        series = {s.who: s for s in jobs[row]}
        base, cur = series["baseline"], series["current"]
        failed = bool(base.error or cur.error)
        ratios = paired(cur.values, base.values)
        if failed:
            verdict = "FAILED"
        elif not ratios:
            verdict = "n/a"
        else:
            verdict = "yes" if statistics.median(ratios) >= 1 - MAX_LOSS else "**NO**"
        line = [
            f"{row}: {base.label}",
            base.unit,
            _num(base, base.values),
            _num(cur, cur.values),
            _ratio(ratios, failed),
            "n/a" if failed else _quartiles(ratios),
            verdict,
        ]
        if plan.peer:
            peer = series["peer"]
            line += [
                peer.label,
                _num(peer, peer.values),
                _ratio(paired(base.values, peer.values), bool(base.error or peer.error)),
                _ratio(paired(cur.values, peer.values), bool(cur.error or peer.error)),
            ]
        body.append(line)
    return _markdown(header, "lrrrrrr" + ("lrrr" if plan.peer else ""), body)


def cpu_table(plan: Plan, jobs: dict[str, list[Series]]) -> str:
    """The same work per second of the client's CPU time."""
    header = [
        "row",
        "unit",
        "baseline (median)",
        "current (median)",
        "current / baseline (same-round median)",
        "interquartile range",
    ]
    body: list[list[str]] = []
    for row in plan.rows:
        series = {s.who: s for s in jobs[row]}
        base, cur = series["baseline"], series["current"]
        failed = bool(base.error or cur.error)
        ratios = paired(cur.cpu, base.cpu)
        body.append(
            [
                f"{row}: {base.label}",
                base.unit.replace("/s", " per CPU s"),
                _num(base, base.cpu),
                _num(cur, cur.cpu),
                _ratio(ratios, failed),
                "n/a" if failed else _quartiles(ratios),
            ]
        )
    return _markdown(header, "lrrrrr", body)


def failures(jobs: dict[str, list[Series]]) -> list[str]:
    return [
        f"- {s.row} {s.who} ({s.tree.what}): {s.error}"
        for row in jobs.values()
        for s in row
        if s.error
    ]


def report(
    plan: Plan,
    jobs: dict[str, list[Series]],
    trees: tuple[Tree, Tree],
    argv: list[str],
    server_version: str,
    load: tuple[str, str],
    minutes: float,
) -> str:
    seen = sorted({f"{s.who}: {x}" for row in jobs.values() for s in row for x in s.seen})
    parts = [
        "## Before and after: `bench_compare.py`",
        "",
        f"- baseline: {trees[0].what}",
        f"- current: {trees[1].what}",
        f"- backend {plan.backend}, `H2ANY_ENGINE={plan.engine}`; {plan.rounds} round(s), each "
        f"a fresh process per tree and peer, taking turns at {plan.repeat} timed runs "
        f"(baseline, current, peer, then current, baseline, peer), the best run kept; "
        f"{minutes:.1f} minutes",
        f"- machine: {platform.machine()}, `nproc` = {os.cpu_count()}, Python "
        f"{platform.python_version()}, {server_version} on loopback; load average "
        f"(1/5/15 min) {load[0]} at the start, {load[1]} at the end",
        *(f"- seen in the children: {x}" for x in seen),
        "",
        "```",
        "python benchmarks/bench_compare.py " + " ".join(argv),
        "```",
        "",
        table(plan, jobs),
        "",
        "Medians over the rounds of each process's best run. *current / baseline* is the "
        "median of the rounds' ratios of the two trees' values, with the middle half of "
        "those ratios beside it; the peer columns likewise. MB/s = 10^6 bytes/s.",
        "",
        "The same runs per second of the client process's CPU time (all its threads; waiting "
        "is not counted, so a stall does not show here, but other processes barely move it):",
        "",
        cpu_table(plan, jobs),
    ]
    errors = failures(jobs)
    if errors:
        parts += ["", "Failures (the row stopped at its first failure):", "", *errors]
    return "\n".join(parts)


def raw(jobs: dict[str, list[Series]], trees: tuple[Tree, Tree]) -> dict[str, Any]:
    """Every round's values, for ``--json``."""
    return {
        "trees": {t.name: t.what for t in trees},
        "rows": {
            row: {
                s.who: {"label": s.label, "unit": s.unit, "values": s.values, "cpu": s.cpu}
                | ({"error": s.error} if s.error else {})
                for s in series
            }
            for row, series in jobs.items()
        },
    }


# ---------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, Plan]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default=DEFAULT_BASELINE, help="git ref (%(default)s)")
    parser.add_argument("--current", help="git ref instead of the working tree")
    parser.add_argument("--rounds", type=int, help=f"rounds (default {ROUNDS}; --quick 3)")
    parser.add_argument("--rows", nargs="+", choices=ROWS, action="extend")
    parser.add_argument("--engine", choices=ENGINES, default="h2", help="(default %(default)s)")
    parser.add_argument("--backend", choices=BACKENDS, default="asyncio")
    parser.add_argument("--streams", type=int, default=1, help="bulk: downloads at once (1)")
    parser.add_argument(
        "--repeat", type=int, default=REPEAT, help="timed runs per process, best kept (%(default)s)"
    )
    parser.add_argument("--no-peer", dest="peer", action="store_false", help="skip the peers")
    parser.add_argument("--quick", action="store_true", help="smaller transfers, 3 rounds")
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    parser.add_argument("--json", type=Path, help="write every round's values to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    plan = Plan(
        rows=list(dict.fromkeys(args.rows or ROWS)),
        rounds=args.rounds or (3 if args.quick else ROUNDS),
        engine=args.engine,
        backend=args.backend,
        streams=args.streams,
        repeat=args.repeat,
        peer=args.peer,
        sizes=Sizes.quick() if args.quick else Sizes(),
    )
    return args, plan


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwind through the finally blocks (nghttpd, worktrees)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, plan = parse_args(argv)
    if args.child is not None:
        try:
            child_main(json.loads(args.child))
        except Exception as exc:  # the parent shows the message: the tree under test failed
            traceback.print_exc()
            say({"error": describe(exc)})
        return 0
    signal.signal(signal.SIGTERM, _sigterm)
    load_start = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    started = time.monotonic()
    sizes = plan.sizes
    try:
        with contextlib.ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="h2any-compare-")))
            plan.tmp = tmp
            baseline = stack.enter_context(checkout(args.baseline, "baseline", tmp))
            if args.current is None:
                current = working_tree(tmp)
            else:
                current = stack.enter_context(checkout(args.current, "current", tmp))
            trees = (baseline, current)
            # bench_core (nghttpd) imports h2any: give this process the baseline's, which is
            # known to import; the measurements run in children, each with its own tree.
            sys.path.insert(0, str(baseline.root))
            import bench_core as core

            files = {file_name(s): s for s in (sizes.bulk, sizes.check, sizes.peer_bulk)}
            server = stack.enter_context(core.nghttpd(files=files))
            upload_server = stack.enter_context(core.nghttpd(UPLOAD_SERVER_ARGS, {}))
            uploads = {"upload": sizes.upload, "warm": sizes.upload_warmup}
            uploads["peer"] = sizes.peer_upload
            paths = {}
            for name, size in uploads.items():
                path = tmp / f"{name}.bin"
                with path.open("wb") as file:  # sparse: reads cost no disk I/O
                    file.truncate(size)
                paths[name] = str(path)
            print(f"baseline: {baseline.what}\ncurrent: {current.what}")
            print(f"{server.version} on {server.origin} and {upload_server.origin} (uploads)")
            jobs = make_series(plan, trees, server, upload_server, paths)
            run_rounds(plan, jobs)
    except KeyboardInterrupt:
        print("\ninterrupted; nghttpd and the worktrees removed", file=sys.stderr)
        return 130
    load_end = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    minutes = (time.monotonic() - started) / 60
    section = report(plan, jobs, trees, argv, server.version, (load_start, load_end), minutes)
    print()
    print(section)
    if args.output is not None:
        args.output.write_text(section + "\n")
        print(f"wrote {args.output}")
    if args.json is not None:
        args.json.write_text(json.dumps(raw(jobs, trees), indent=1) + "\n")
    return 1 if failures(jobs) else 0


if __name__ == "__main__":
    sys.exit(main())
