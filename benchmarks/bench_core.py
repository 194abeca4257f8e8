"""Core benchmarks: h2any against httpx (http2=True) and h2load, one connection to nghttpd.

Usage::

    python benchmarks/bench_core.py [--quick] [--backend asyncio|trio|uvloop ...]
        [--scenario small|download ...] [--client h2any|httpx|h2load ...]
        [--repeat N] [--requests N] [--tls] [--output docs/benchmarks.md]

The script starts its own ``nghttpd`` (h2c, default settings) on a free loopback port with a
temporary document root and stops it at the end, also on errors and Ctrl-C. With ``--tls``
nghttpd serves HTTP/2 over TLS instead, with a certificate for 127.0.0.1 issued by a
throw-away CA (``trustme``), and every client verifies the server against that CA (h2any
``verify=CA file``, httpx ``verify=SSLContext``; h2load does not verify). Write TLS results
to a file of their own (``--output docs/benchmarks-tls.md``) so the h2c ones stay.

Scenarios:

* ``small``: GETs of a 1-byte file over ONE connection, 100 in flight (a fixed pool of 100
  worker tasks pulling from a shared counter); result in requests per second.
* ``download``: one 64 MiB download, streamed and counted; result in MB/s (10**6 bytes/s).

Every scenario runs a warm-up and then ``--repeat`` timed repetitions, each on a fresh
connection (connection setup is not timed); the median is reported. Every response is
validated (status, body bytes, HTTP/2, one connection) so a broken client cannot look fast;
the download's SHA-256 is checked during the (untimed) warm-up.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import importlib.metadata
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx

import h2any

SMALL_FILE = "1b"
SMALL_BODY = b"a"
BIG_FILE = "64m.bin"
BIG_SIZE = 64 * 1024 * 1024
CONCURRENCY = 100
SMALL_REQUESTS = 20_000
QUICK_SMALL_REQUESTS = 5_000
REPEAT = 3
BACKENDS = ("asyncio", "uvloop", "trio")
SCENARIOS = ("small", "download")
CLIENTS = ("h2any", "httpx", "h2load")
H2LOAD_TIMEOUT = 600.0
NGHTTPD_DEFAULTS = (
    "nghttpd defaults: SETTINGS_MAX_CONCURRENT_STREAMS 100, "
    "stream and connection receive windows 64 KiB (-w 16 / -W 16), no TLS (h2c)"
)
NGHTTPD_TLS = (
    "nghttpd defaults: SETTINGS_MAX_CONCURRENT_STREAMS 100, "
    "stream and connection receive windows 64 KiB (-w 16 / -W 16), "
    "TLS (ALPN h2) with a certificate for 127.0.0.1 from a throw-away trustme CA"
)
#: The CA file every client verifies the server against in a ``--tls`` run (None: h2c).
#: Set by ``main`` (and by ``bench_scenarios``' child processes from their spec).
CA_FILE: str | None = None
BUSY_LOAD = 0.5  # a 1-minute load average above this before the run: somebody else is busy
MARK_START = "<!-- bench_core:start -->"
MARK_END = "<!-- bench_core:end -->"


class BenchmarkError(Exception):
    """A response failed validation (or a tool failed): the result must not be reported."""


# ---------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class TLSFiles:
    """PEM files of a throw-away CA and of the server certificate it issued for 127.0.0.1."""

    ca: str
    cert: str  # the certificate chain
    key: str


@contextlib.contextmanager
def tls_files() -> Iterator[TLSFiles]:
    """A ``trustme`` CA and a server certificate for 127.0.0.1 and localhost, written to a
    temporary directory (removed at the end)."""
    try:
        import trustme
    except ImportError:
        raise SystemExit("--tls needs trustme: pip install trustme") from None
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    with tempfile.TemporaryDirectory(prefix="h2any-bench-tls-") as tmp:
        files = TLSFiles(
            str(Path(tmp, "ca.pem")), str(Path(tmp, "cert.pem")), str(Path(tmp, "key.pem"))
        )
        ca.cert_pem.write_to_path(files.ca)
        for index, pem in enumerate(issued.cert_chain_pems):
            pem.write_to_path(files.cert, append=index > 0)
        issued.private_key_pem.write_to_path(files.key)
        yield files


def h2any_tls() -> dict[str, Any]:
    """h2any's keywords for this run: ``verify=`` the CA file in a TLS run, none for h2c."""
    return {"verify": CA_FILE} if CA_FILE else {}


def httpx_verify() -> ssl.SSLContext | bool:
    """httpx's ``verify=``: a context trusting the CA in a TLS run (httpx 0.28 deprecates a
    path there)."""
    return ssl.create_default_context(cafile=CA_FILE) if CA_FILE else True


@dataclass
class Server:
    port: int
    docroot: Path
    sha256: dict[str, str]  # file name -> SHA-256 of the random files in the docroot
    version: str
    args: tuple[str, ...] = ()  # extra nghttpd options (none: its defaults)
    tls: TLSFiles | None = None  # None: h2c

    @property
    def origin(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    @property
    def big_sha256(self) -> str:
        return self.sha256[BIG_FILE]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the benchmark process dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _wait_listening(proc: subprocess.Popen[bytes], port: int, timeout: float = 10.0) -> bool:
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


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def write_random_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path`` piece by piece; return their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as file:
        left = size
        while left:
            piece = os.urandom(min(left, 1 << 20))
            digest.update(piece)
            file.write(piece)
            left -= len(piece)
    return digest.hexdigest()


def nghttpd_version() -> str:
    binary = shutil.which("nghttpd")
    if binary is None:
        raise SystemExit("nghttpd is missing: apt-get install nghttp2-server nghttp2-client")
    return subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()


@contextlib.contextmanager
def nghttpd(
    extra_args: Sequence[str] = (),
    files: Mapping[str, int] | None = None,
    tls: TLSFiles | None = None,
) -> Iterator[Server]:
    """Run nghttpd (h2c, or TLS with ``tls``'s key and certificate; its defaults plus
    ``extra_args``) on a free loopback port over a temporary docroot holding the 1-byte
    file and ``files`` (name -> size) of random bytes (default: the 64 MiB download)."""
    version = nghttpd_version()
    binary = shutil.which("nghttpd") or "nghttpd"
    files = {BIG_FILE: BIG_SIZE} if files is None else files
    with tempfile.TemporaryDirectory(prefix="h2any-bench-") as tmp:
        docroot = Path(tmp)
        (docroot / SMALL_FILE).write_bytes(SMALL_BODY)
        sha256 = {name: write_random_file(docroot / name, size) for name, size in files.items()}
        for _attempt in range(5):
            port = _free_port()
            mode = [] if tls else ["--no-tls"]
            keys = [tls.key, tls.cert] if tls else []  # nghttpd [OPTION] PORT KEY CERT
            where = ["-a", "127.0.0.1", "-d", str(docroot), str(port)]
            proc = subprocess.Popen(
                [binary, *mode, *extra_args, *where, *keys],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
            try:
                if _wait_listening(proc, port):
                    yield Server(port, docroot, sha256, version, tuple(extra_args), tls)
                    return
            finally:
                _stop(proc)
                if proc.stderr is not None:
                    proc.stderr.close()
        raise SystemExit("could not start nghttpd on a free port")


# ---------------------------------------------------------------------------- measurements


@dataclass
class Result:
    scenario: str
    client: str
    backend: str
    unit: str
    values: list[float] = field(default_factory=list)
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values and not self.error else None


def _run_async(backend: str, func: Callable[[], Awaitable[float]]) -> float:
    if backend == "uvloop":
        return float(anyio.run(func, backend="asyncio", backend_options={"use_uvloop": True}))
    return float(anyio.run(func, backend=backend))


async def _worker_pool(count: int, one: Callable[[], Awaitable[None]]) -> float:
    """Run ``one`` ``count`` times with CONCURRENCY workers; return the elapsed seconds."""
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await one()

    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for _ in range(min(CONCURRENCY, count)):
            tg.start_soon(worker)
    return time.perf_counter() - started


# h2any ------------------------------------------------------------------------------


async def h2any_small(origin: str, count: int) -> float:
    path = "/" + SMALL_FILE
    async with h2any.Connection(origin, **h2any_tls()) as conn:

        async def one() -> None:
            resp = await conn.request("GET", path)
            body = await resp.read()
            if resp.status != 200 or body != SMALL_BODY:
                raise BenchmarkError(f"h2any: status {resp.status}, body {body!r}")

        elapsed = await _worker_pool(count, one)
        if conn.is_closed:
            raise BenchmarkError("h2any: the connection closed during the run")
    return count / elapsed


async def h2any_download(origin: str, expected_sha256: str | None) -> float:
    async with h2any.Connection(origin, **h2any_tls()) as conn:
        digest = hashlib.sha256() if expected_sha256 else None
        received = 0
        started = time.perf_counter()
        async with conn.stream("GET", "/" + BIG_FILE) as resp:
            if resp.status != 200:
                raise BenchmarkError(f"h2any: status {resp.status}")
            async for chunk in resp.aiter_bytes():
                received += len(chunk)
                if digest is not None:
                    digest.update(chunk)
        elapsed = time.perf_counter() - started
    _check_download("h2any", received, digest, expected_sha256)
    return received / elapsed / 1e6


# httpx ------------------------------------------------------------------------------


def _httpx_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        http1=False,
        http2=True,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        timeout=httpx.Timeout(60.0),
        verify=httpx_verify(),
    )


def _httpx_check_one_connection(client: httpx.AsyncClient, requests: int) -> None:
    """httpx exposes no public connection count: look at httpcore's pool (read-only)."""
    pool = getattr(client._transport, "_pool", None)
    connections = list(getattr(pool, "connections", []))
    infos = [conn.info() for conn in connections]
    if len(infos) != 1 or "HTTP/2" not in infos[0]:
        raise BenchmarkError(f"httpx: expected one HTTP/2 connection, the pool holds {infos}")
    match = re.search(r"Request Count: (\d+)", infos[0])
    if match is None or int(match.group(1)) != requests:
        raise BenchmarkError(f"httpx: expected {requests} requests on the connection: {infos[0]}")


async def httpx_small(origin: str, count: int) -> float:
    url = origin + "/" + SMALL_FILE
    async with _httpx_client() as client:
        # Open the connection outside the timed part, as for h2any.
        first = await client.get(url)
        if first.status_code != 200 or first.http_version != "HTTP/2":
            raise BenchmarkError(f"httpx: {first.status_code} over {first.http_version}")

        async def one() -> None:
            resp = await client.get(url)
            if (
                resp.status_code != 200
                or resp.http_version != "HTTP/2"
                or resp.content != SMALL_BODY
            ):
                raise BenchmarkError(
                    f"httpx: status {resp.status_code}, {resp.http_version}, body {resp.content!r}"
                )

        elapsed = await _worker_pool(count, one)
        _httpx_check_one_connection(client, count + 1)
    return count / elapsed


async def httpx_download(origin: str, expected_sha256: str | None) -> float:
    async with _httpx_client() as client:
        first = await client.get(origin + "/" + SMALL_FILE)  # connect outside the timed part
        if first.status_code != 200 or first.http_version != "HTTP/2":
            raise BenchmarkError(f"httpx: {first.status_code} over {first.http_version}")
        digest = hashlib.sha256() if expected_sha256 else None
        received = 0
        started = time.perf_counter()
        async with client.stream("GET", origin + "/" + BIG_FILE) as resp:
            if resp.status_code != 200 or resp.http_version != "HTTP/2":
                raise BenchmarkError(f"httpx: {resp.status_code} over {resp.http_version}")
            async for chunk in resp.aiter_raw():
                received += len(chunk)
                if digest is not None:
                    digest.update(chunk)
        elapsed = time.perf_counter() - started
        _httpx_check_one_connection(client, 2)
    _check_download("httpx", received, digest, expected_sha256)
    return received / elapsed / 1e6


def _check_download(
    client: str, received: int, digest: Any | None, expected_sha256: str | None
) -> None:
    if received != BIG_SIZE:
        raise BenchmarkError(f"{client}: received {received} bytes, expected {BIG_SIZE}")
    if digest is not None and digest.hexdigest() != expected_sha256:
        raise BenchmarkError(f"{client}: SHA-256 mismatch")


# h2load -----------------------------------------------------------------------------


def h2load_command(origin: str, scenario: str, count: int) -> list[str]:
    if scenario == "small":
        return ["h2load", "-n", str(count), "-c", "1", "-m", str(CONCURRENCY), origin + "/1b"]
    return ["h2load", "-n", "1", "-c", "1", "-m", "1", origin + "/" + BIG_FILE]


def h2load(command: list[str], expected: int) -> tuple[float, float, str]:
    """Run h2load, checking that ``expected`` requests succeeded with 2xx: the seconds it
    took, the req/s it reports, and its output."""
    proc = subprocess.run(command, capture_output=True, text=True, timeout=H2LOAD_TIMEOUT)
    out = proc.stdout
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    status = re.search(r"status codes: (\d+) 2xx", out)
    finished = re.search(r"finished in ([\d.]+)(s|ms|us), ([\d.]+) req/s", out)
    if (
        proc.returncode != 0
        or done is None
        or status is None
        or finished is None
        or int(done.group(1)) != expected
        or int(status.group(1)) != expected
    ):
        raise BenchmarkError(f"h2load failed: {out[-600:]} {proc.stderr[-300:]}")
    seconds = float(finished.group(1)) / {"s": 1, "ms": 1e3, "us": 1e6}[finished.group(2)]
    return seconds, float(finished.group(3)), out


def run_h2load(origin: str, scenario: str, count: int) -> float:
    command = h2load_command(origin, scenario, count)
    seconds, rate, out = h2load(command, count if scenario == "small" else 1)
    if scenario == "small":
        return rate
    data = re.search(r"traffic: .*?\((\d+)\) total, .*?\((\d+)\) data", out)
    if data is None or int(data.group(2)) < BIG_SIZE:
        raise BenchmarkError(f"h2load: short download: {out[-600:]}")
    return BIG_SIZE / seconds / 1e6


# ---------------------------------------------------------------------------- driver


@dataclass
class Plan:
    backends: list[str]
    scenarios: list[str]
    clients: list[str]
    repeat: int
    small_requests: int
    tls: bool = False


def _runner(
    scenario: str, client: str, backend: str, server: Server, plan: Plan
) -> Callable[[bool], float]:
    """The function that runs one row once (``warmup=True``: the untimed warm-up)."""
    origin = server.origin
    warmup_requests = max(1000, plan.small_requests // 10)

    def once(warmup: bool) -> float:
        if client == "h2load":
            count = warmup_requests if warmup else plan.small_requests
            return run_h2load(origin, scenario, count)
        if scenario == "small":
            func = h2any_small if client == "h2any" else httpx_small
            count = warmup_requests if warmup else plan.small_requests
            return _run_async(backend, partial(func, origin, count))
        download = h2any_download if client == "h2any" else httpx_download
        # The SHA-256 is checked once, in the untimed warm-up; timed runs count bytes.
        sha = server.big_sha256 if warmup else None
        return _run_async(backend, partial(download, origin, sha))

    return once


def _attempt(result: Result, once: Callable[[bool], float], warmup: bool) -> None:
    """One run of a row, its value recorded (timed runs) and printed, or its failure."""
    label = "warm-up" if warmup else f"{len(result.values) + 1}"
    print(f"  {result.scenario:8} {result.client:6} {result.backend:7} {label:>7} ...", end="")
    try:
        value = once(warmup)
    except BenchmarkError as exc:
        result.error = str(exc)
    except Exception as exc:  # a client crashing is a result too, not the end of the run
        result.error = f"{type(exc).__name__}: {exc}"
    else:
        if not warmup:
            result.values.append(value)
        print(f" {value:,.0f} {result.unit}", flush=True)
        return
    print(f"  FAILED: {result.error}", flush=True)


def run_plan(server: Server, plan: Plan) -> list[Result]:
    """Every row of each scenario in rounds: a warm-up of each, then each of the
    ``plan.repeat`` rounds runs every row once, so that the machine's drifts (large on a
    shared machine) hit the rows alike and the ratios between them hold."""
    results: list[Result] = []
    for scenario in plan.scenarios:
        unit = "req/s" if scenario == "small" else "MB/s"
        rows: list[tuple[Result, Callable[[bool], float]]] = []
        for client in plan.clients:
            for backend in ["C"] if client == "h2load" else plan.backends:
                result = Result(scenario, client, backend, unit)
                rows.append((result, _runner(scenario, client, backend, server, plan)))
        for warmup in [True] + [False] * plan.repeat:
            for result, once in rows:
                if result.error is None:
                    _attempt(result, once, warmup)
        results += [result for result, _ in rows]
    return results


def table(results: list[Result], scenario: str) -> str:
    rows = [r for r in results if r.scenario == scenario]
    if not rows:
        return ""
    unit = rows[0].unit
    base = next((r.median for r in rows if r.client == "httpx" and r.backend == "asyncio"), None)
    lines = [
        f"| client | backend | {unit} (median) | min - max | ratio to httpx (asyncio) |",
        "|---|---|--:|--:|--:|",
    ]
    for r in rows:
        median = r.median
        if median is None:
            lines.append(f"| {r.client} | {r.backend} | FAILED: {r.error} | | |")
            continue
        spread = f"{min(r.values):,.0f} - {max(r.values):,.0f}"
        ratio = f"{median / base:.2f}x" if base else "n/a"
        lines.append(f"| {r.client} | {r.backend} | {median:,.0f} | {spread} | {ratio} |")
    return "\n".join(lines)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git_revision() -> str:
    """The commit of the h2any tree being measured, and whether it has local changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--", "h2any"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit} (with uncommitted changes in h2any/)" if dirty else commit


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def engine_name() -> str:
    """The engine h2any uses in this run (``H2ANY_ENGINE``, else jh2 if installed)."""
    try:
        from h2any._engine import get_engine
    except ImportError:  # an h2any from before engines were pluggable
        return "h2"
    return get_engine().name


def engine_note() -> str:
    name = engine_name()
    return f"{name} {_version(name)} (`H2ANY_ENGINE={os.environ.get('H2ANY_ENGINE', '')}`)"


def environment(server: Server, server_note: str | None = None) -> list[str]:
    if server_note is None:
        server_note = NGHTTPD_TLS if server.tls else NGHTTPD_DEFAULTS
    packages = ("h2any", "h2", "hpack", "anyio", "httpx", "httpcore", "uvloop", "trio")
    return [
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: {platform.machine()}, `nproc` = {os.cpu_count()}, "
        f"{platform.system()} {platform.release()}, loopback only",
        f"- load average (1/5/15 min) at the start: {load_average()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()}); "
        f"h2any source: git {_git_revision()}",
        "- " + ", ".join(f"{p} {_version(p)}" for p in packages),
        f"- h2any's engine: {engine_note()}",
        f"- server: {server.version} ({server_note})",
        *([f"- TLS: {tls_note()}"] if server.tls else []),
    ]


def tls_note() -> str:
    """What a TLS run negotiates, for the environment list."""
    return (
        f"{ssl.OPENSSL_VERSION} on the client side; every Python client verifies the "
        "server's certificate (chain and host name) against the test CA; h2load does not "
        "verify"
    )


def nghttpd_command(tls: bool, extra_args: Sequence[str] = (), port: str = "PORT") -> str:
    """The nghttpd command line a report shows (h2c, or TLS with the test key and cert)."""
    mode = [] if tls else ["--no-tls"]
    keys = ["KEY.pem", "CERT.pem"] if tls else []
    return " ".join(
        ["nghttpd", *mode, *extra_args, "-a", "127.0.0.1", "-d", "DOCROOT", port, *keys]
    )


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str) -> str:
    """A markdown table; ``align`` has one letter per column: ``l`` or ``r``."""
    marks = {"l": "---", "r": "--:"}
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(marks[a] for a in align) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def busy_note(load_start: float) -> list[str]:
    """A warning when other processes were already using the CPUs as the run started."""
    if load_start < BUSY_LOAD:
        return []
    return [
        "",
        f"**Note:** the machine was not idle (1-minute load average {load_start:.2f} on "
        f"{os.cpu_count()} cores before the run; other processes, such as a test suite, "
        "competed for the CPUs). Absolute numbers are depressed and noisier than usual; the "
        "ratios, measured in the same run, are the meaningful part.",
    ]


def report(
    results: list[Result],
    env: list[str],
    plan: Plan,
    argv: list[str],
    load_start: float,
    load_end: str,
) -> str:
    origin = ("https" if plan.tls else "http") + "://127.0.0.1:PORT"
    small_cmd = " ".join(h2load_command(origin, "small", plan.small_requests))
    big_cmd = " ".join(h2load_command(origin, "download", 1))
    parts = [
        "## Results over TLS" if plan.tls else "## Results",
        "",
        *env,
        f"- load average (1/5/15 min) at the end: {load_end}",
        *busy_note(load_start),
        "",
        "Commands:",
        "",
        "```",
        "python benchmarks/bench_core.py " + " ".join(argv),
        nghttpd_command(plan.tls),
        small_cmd,
        big_cmd,
        "```",
        "",
        f"Each row: one warm-up, then {plan.repeat} timed run(s) on a fresh connection, in "
        "rounds (each round runs every row of the table once); "
        "the median is shown.",
        "",
    ]
    if "small" in plan.scenarios:
        parts += [
            f"### small: {plan.small_requests:,} GETs of a 1-byte file, one connection, "
            f"{CONCURRENCY} in flight",
            "",
            table(results, "small"),
            "",
        ]
    if "download" in plan.scenarios:
        parts += [
            "### download: one 64 MiB file, streamed (MB/s = 10^6 bytes/s)",
            "",
            table(results, "download"),
            "",
        ]
    return "\n".join(parts)


INTRO = """\
# Benchmarks

These numbers compare h2any with [httpx](https://www.python-httpx.org/) (`http2=True`, h2c
with prior knowledge, limited to one connection) and with `h2load`, nghttp2's C load
generator, which serves as the ceiling. Everything runs over **one HTTP/2 connection** on
**loopback** against a local `nghttpd` with its default settings (100 concurrent streams,
64 KiB receive windows, no TLS), on a **2-core** machine where client and server share the
CPUs, so the absolute numbers say little: read the **ratios**, which compare clients measured
in the same run. The *small* scenario sends 20,000 GETs of a 1-byte file with 100 requests
in flight (100 worker tasks); the *download* scenario streams one 64 MiB file. Each result
is the median of three runs after a warm-up (run in rounds, each round running every row
once, so that the machine's drifts hit all rows alike), and every response is validated
(status, body, HTTP/2, one connection, SHA-256 of the download).

To reproduce: `nox -s bench` (or `python benchmarks/bench_core.py --output
docs/benchmarks.md`; add `--quick` for a fast smoke run). The script starts and stops its
own `nghttpd`, so `nghttpd` and `h2load` must be installed (Debian: `nghttp2-server`,
`nghttp2-client`).
"""


TLS_INTRO = """\
# Benchmarks over TLS

The results of `benchmarks/bench_all.py --tls` (or `bench_core.py --tls` and
`bench_scenarios.py --tls`): the scenarios of [Benchmarks](benchmarks.md) with `nghttpd`
serving HTTP/2 over TLS (ALPN `h2`) with a certificate for 127.0.0.1 from a throw-away
`trustme` CA, every Python client verifying it against that CA. Same rules as there: one
connection, loopback, 2 cores shared by client and server, and each figure read as a ratio
to httpx measured in the same run. `python benchmarks/chart.py docs/benchmarks-tls.md`
draws the `bench-tls-*.png` charts from these tables.
"""


def write_output(
    path: Path,
    section: str,
    start: str = MARK_START,
    end: str = MARK_END,
    intro: str = INTRO,
) -> None:
    """Replace the section between the markers, or start the file with ``intro``."""
    block = f"{start}\n{section.rstrip()}\n{end}\n"
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + block + tail
    elif text.strip():
        text = text.rstrip() + "\n\n" + block
    else:
        text = intro + "\n" + block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, Plan]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run and fewer requests")
    parser.add_argument("--backend", nargs="+", choices=BACKENDS, action="extend")
    parser.add_argument("--scenario", nargs="+", choices=SCENARIOS, action="extend")
    parser.add_argument("--client", nargs="+", choices=CLIENTS, action="extend")
    parser.add_argument("--repeat", type=int, help=f"timed runs (default {REPEAT})")
    parser.add_argument(
        "--requests", type=int, help=f"GETs per small run (default {SMALL_REQUESTS:,})"
    )
    parser.add_argument(
        "--tls", action="store_true", help="HTTP/2 over TLS (a trustme CA) instead of h2c"
    )
    parser.add_argument("--output", type=Path, help="write a markdown section to this file")
    args = parser.parse_args(argv)
    plan = Plan(
        backends=_dedupe(args.backend or list(BACKENDS)),
        scenarios=_dedupe(args.scenario or list(SCENARIOS)),
        clients=_dedupe(args.client or list(CLIENTS)),
        repeat=args.repeat or (1 if args.quick else REPEAT),
        small_requests=args.requests or (QUICK_SMALL_REQUESTS if args.quick else SMALL_REQUESTS),
        tls=args.tls,
    )
    return args, plan


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # unwind through the finally blocks that stop nghttpd


@contextlib.contextmanager
def maybe_tls(tls: bool) -> Iterator[TLSFiles | None]:
    """The test CA's files for a TLS run (``CA_FILE`` set meanwhile), or None for h2c."""
    global CA_FILE
    if not tls:
        yield None
        return
    with tls_files() as files:
        CA_FILE = files.ca
        try:
            yield files
        finally:
            CA_FILE = None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, plan = parse_args(argv)
    signal.signal(signal.SIGTERM, _sigterm)
    load_start = os.getloadavg()[0]
    try:
        with maybe_tls(plan.tls) as tls, nghttpd(tls=tls) as server:
            note = NGHTTPD_TLS if tls else NGHTTPD_DEFAULTS
            print(f"{server.version} on {server.origin} ({note})")
            env = environment(server)
            for line in env:
                print(line)
            results = run_plan(server, plan)
    except KeyboardInterrupt:
        print("\ninterrupted; nghttpd stopped", file=sys.stderr)
        return 130
    load_end = load_average()
    section = report(results, env, plan, argv, load_start, load_end)
    print()
    print(section)
    if args.output is not None:
        write_output(args.output, section, intro=TLS_INTRO if plan.tls else INTRO)
        print(f"wrote {args.output}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
