"""Every Python example in README.md and docs/*.md runs, unchanged, against local servers.

**What runs.** Every fenced block labelled ``python`` or ``py`` is a whole program and is
executed as it is written; :func:`test_every_python_block_is_collected` checks that none is
left out and that no Python hides under another label. An example that calls
``anyio.run(...)`` runs twice, on asyncio and on trio; the others (blocking code, and
asyncio-only code under ``asyncio.run(...)``) run once.

**Where it runs.** Each example runs in a process of its own, forked from a
``python -X dev -W error tests/docs_runner.py serve`` process that has imported h2any,
anyio and trio once (which saves half a second per example); its working directory holds
the files the examples name (``my-ca.pem``, ``me.pem``, ``video.mp4``). The examples'
hosts are a stand-in network (``tests/docs_network.py``), started once per session:

* ``example.org``, ``internal.example.org``, ``wiki.corp.example`` (any port): hypercorn,
  TLS with ALPN ``h2``, with a certificate for those names from a throwaway CA;
* ``proxy.corp`` (any port): a CONNECT proxy to the names above;
* ``localhost``, ``127.0.0.1``: themselves (the examples built on ``h2any.testing.serve``).

The example's process connects to loopback for those names (TLS still checks the name),
trusts the throwaway CA where it would trust certifi's roots, and maps ``import hyper``
onto h2any's hyper shim (see ``docs_runner``); any other name fails to resolve. A run
passes when the process exits 0 with nothing on stderr: no traceback, no logged error, no
uncaught ``ResourceWarning``, no h2any thread left running.

**Markers.** HTML comments right before a block tell more about it:
``<!-- docs-test: env NAME=VALUE ... -->`` sets environment variables for the example (what
the page's shell lines ``export``); ``<!-- docs-test: output TEXT ... -->`` requires each
``TEXT`` in what it prints, where exit status alone would not show that it did its job
(that a push arrived, say). :func:`test_proxy_examples_tunnel_through_the_proxy` checks
the proxy examples from the proxy's side.

The runs start together when the first of them is needed, as many at a time as there are
CPUs, each bounded by :data:`EXAMPLE_TIMEOUT`.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CLIENT_ENVIRONMENT
from docs_network import DocsNetwork, docs_network

ROOT = Path(__file__).resolve().parent.parent
RUNNER = Path(__file__).resolve().parent / "docs_runner.py"
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PYTHON_LABELS = ("python", "py")
EXAMPLE_TIMEOUT = 60.0

_FENCE = re.compile(r"^```(?P<label>[\w+-]*)[^\n]*\n(?P<code>.*?)^```[ \t]*$", re.M | re.S)
_MARKER = re.compile(r"<!--\s*docs-test:(?P<body>(?:(?!-->).)*)-->", re.S)
_MARKERS = re.compile(r"(?:<!--\s*docs-test:(?:(?!-->).)*-->\s*)+\Z", re.S)


@dataclass(frozen=True)
class Example:
    """One Python block of one page."""

    page: str
    line: int
    code: str
    env: tuple[tuple[str, str], ...] = ()
    output: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def backends(self) -> tuple[str, ...]:
        return ("asyncio", "trio") if "anyio.run(" in self.code else ("sync",)


def _fences(path: Path) -> Iterator[tuple[int, str, str, str]]:
    """(line, label, code, text before the fence) of each fenced block of a page."""
    text = path.read_text()
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        yield line, match["label"], match["code"], text[: match.start()]


def _markers(before: str) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...]]:
    """The ``env`` and ``output`` of the docs-test comments right before a fence."""
    env: list[tuple[str, str]] = []
    output: list[str] = []
    run = _MARKERS.search(before)
    for marker in _MARKER.finditer(run.group(0) if run else ""):
        directive, *words = shlex.split(marker["body"])
        if directive == "env":
            pairs = [word.partition("=") for word in words]
            assert all(sep for _, sep, _ in pairs), f"env takes NAME=VALUE: {marker[0]!r}"
            env.extend((name, value) for name, _, value in pairs)
        else:
            assert directive == "output", f"unknown docs-test marker: {marker[0]!r}"
            output.extend(words)
    return tuple(env), tuple(output)


def collect_examples() -> list[Example]:
    examples = []
    for path in PAGES:
        for line, label, code, before in _fences(path):
            if label in PYTHON_LABELS:
                examples.append(Example(path.name, line, code, *_markers(before)))
    return examples


EXAMPLES = collect_examples()
RUNS = [(example, backend) for example in EXAMPLES for backend in example.backends]


# -- running ------------------------------------------------------------------------------


def _environ(network: DocsNetwork) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CLIENT_ENVIRONMENT}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(network.environ())
    return env


@dataclass
class Result:
    returncode: int | None  # None: killed after EXAMPLE_TIMEOUT
    stdout: str
    stderr: str


class ForkServer:
    """``docs_runner.py serve``: runs each example in a fork of one prepared process."""

    def __init__(self, network: DocsNetwork) -> None:
        self.network = network
        self.directory = network.workdir.parent / "examples"
        self.directory.mkdir()
        self.process = subprocess.Popen(
            [sys.executable, "-X", "dev", "-W", "error", str(RUNNER), "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=network.workdir,
            env=_environ(network),
        )
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._jobs: dict[int, Future[int | None]] = {}
        self._gone = False  # the server exited: no job will be answered
        self._reader = threading.Thread(target=self._read_answers, daemon=True)
        self._reader.start()

    def _read_answers(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            answer = json.loads(line)
            with self._lock:
                future = self._jobs.pop(answer["id"])
            future.set_result(answer["returncode"])
        with self._lock:
            self._gone = True
            for future in self._jobs.values():
                future.set_exception(RuntimeError("the docs fork server exited"))
            self._jobs.clear()

    def run(self, example: Example, backend: str) -> Result:
        name = f"{example.page}-{example.line}-{backend}"
        script = self.directory / f"{name}.py"
        script.write_text(example.code)
        job = {
            "script": str(script),
            "backend": backend,
            "cwd": str(self.network.workdir),
            "stdout": str(self.directory / f"{name}.stdout"),
            "stderr": str(self.directory / f"{name}.stderr"),
            "env": dict(example.env),
            "timeout": EXAMPLE_TIMEOUT,
        }
        future: Future[int | None] = Future()
        assert self.process.stdin is not None
        with self._lock:
            if self._gone:
                raise RuntimeError("the docs fork server exited")
            job["id"] = next(self._ids)
            self._jobs[job["id"]] = future
            self.process.stdin.write(json.dumps(job).encode() + b"\n")
            self.process.stdin.flush()
        returncode = future.result(timeout=EXAMPLE_TIMEOUT + 10)
        return Result(returncode, Path(job["stdout"]).read_text(), Path(job["stderr"]).read_text())

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=EXAMPLE_TIMEOUT)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self._reader.join()
            assert self.process.stdout is not None
            self.process.stdout.close()


@dataclass
class ExampleRuns:
    network: DocsNetwork
    futures: dict[tuple[Example, str], Future[Result]]


@pytest.fixture(scope="session")
def example_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExampleRuns]:
    """Start every example run this session selected, as many at a time as there are CPUs."""
    selected = [
        (item.callspec.params["example"], item.callspec.params["backend"])
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.originalname == "test_example_runs"
    ]
    with docs_network(tmp_path_factory.mktemp("docs-network")) as network:
        server = ForkServer(network)
        pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2)
        try:
            yield ExampleRuns(network, {key: pool.submit(server.run, *key) for key in selected})
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            server.close()


@pytest.mark.parametrize(
    ("example", "backend"), [pytest.param(e, b, id=f"{e.id}-{b}") for e, b in RUNS]
)
def test_example_runs(
    example: Example,
    backend: str,
    example_runs: ExampleRuns,
) -> None:
    result = example_runs.futures[(example, backend)].result()
    report = (
        f"{example.id} on {backend}: exit {result.returncode}\n"
        f"--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    )
    assert (result.returncode, result.stderr) == (0, ""), report
    missing = [text for text in example.output if text not in result.stdout]
    assert not missing, f"output without {missing}: {report}"


def test_proxy_examples_tunnel_through_the_proxy(example_runs: ExampleRuns) -> None:
    """The proxies page's examples reach example.org through proxy.corp, and
    wiki.corp.example (in NO_PROXY) directly."""
    runs = [f for (example, _), f in example_runs.futures.items() if example.page == "proxies.md"]
    if not runs:
        pytest.skip("no example of proxies.md was selected")
    for run in runs:
        run.result()
    assert set(example_runs.network.tunnels) == {"example.org:443"}


# -- collection ---------------------------------------------------------------------------

_PYTHON_LINE = re.compile(
    r"^(>>> |import \w|from [\w.]+ import |async def |def \w|class \w|async with |with \w)",
    re.M,
)


def test_every_python_block_is_collected() -> None:
    """Each ``python``/``py`` block is an example; no other block holds Python."""
    collected = {example.id for example in EXAMPLES}
    for path in PAGES:
        in_fence, label, start, body = False, "", 0, []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            fence = line.lstrip().startswith(("```", "~~~"))
            assert in_fence or not fence or line.startswith("```"), (
                f"{path.name}:{number}: only unindented ``` fences are collected"
            )
            if not in_fence and line.startswith("```"):
                in_fence, label, start, body = True, (line[3:].split() or [""])[0], number, []
            elif in_fence and line.strip() == "```":
                in_fence = False
                block = "\n".join(body)
                if label in PYTHON_LABELS:
                    assert f"{path.name}:{start}" in collected
                else:
                    assert not _PYTHON_LINE.search(block), (
                        f"{path.name}:{start} looks like Python but is labelled {label!r}"
                    )
            elif in_fence:
                body.append(line)
        assert not in_fence, f"{path.name}: unclosed code fence at line {start}"
    assert len(collected) == len(EXAMPLES) >= 40


def test_async_examples_run_their_code() -> None:
    """An example that defines coroutines also runs them (else half of it would be dead)."""
    for example in EXAMPLES:
        if "async def " in example.code:
            runs = "anyio.run(" in example.code or "asyncio.run(" in example.code
            assert runs, f"{example.id}: async code that never runs"
