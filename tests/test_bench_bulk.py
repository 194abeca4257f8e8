"""benchmarks/bench_bulk.py (issue 26's targets in one run): its smallest mode against a real
nghttpd (h2c, plus the TLS download rows) prints and writes a table with every target row.
A harness test: tiny transfers, one run, no timing is checked. niquests joins if this
interpreter has it or ``$H2ANY_BENCH_NIQUESTS_PYTHON`` names one that has (a virtual
environment of its own: niquests replaces urllib3); else its children are left out."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPT = BENCHMARKS / "bench_bulk.py"

pytestmark = pytest.mark.skipif(shutil.which("nghttpd") is None, reason="needs nghttpd")

ROWS = [
    "1 MiB download, 1 stream, jh2, asyncio: >= 2x niquests' best",
    "1 MiB download, 1 stream, jh2, asyncio: >= 70% of the jh2 floor",
    "1 MiB download, 1 stream, jh2, trio: >= 2x niquests' best",
    "1 MiB download, 1 stream, jh2, trio: >= 70% of the jh2 floor",
    "1 MiB upload (64 KiB windows), 1 stream, jh2, asyncio: >= 2x niquests' best",
    "1 MiB upload (64 KiB windows), 1 stream, jh2, trio: >= 2x niquests' best",
    "1 MiB upload (64 KiB windows), 1 stream, jh2, asyncio: >= 60% of the jh2 upload floor",
    "1 MiB upload (64 KiB windows), 1 stream, jh2, trio: >= 60% of the jh2 upload floor",
    "8 MiB file upload: peak RSS growth < 16 MiB",
    "8 x 1 MiB parallel, jh2, asyncio: aggregate >= 1.2x one stream",
    "8 x 1 MiB parallel, jh2, asyncio: fastest / slowest finish >= 0.75",
    "8 x 1 MiB parallel, jh2, trio: aggregate >= 1.2x one stream",
    "8 x 1 MiB parallel, jh2, trio: fastest / slowest finish >= 0.75",
    "TLS 1 MiB download, jh2, asyncio: >= 1.5x niquests' best over TLS",
    "TLS 1 MiB download, jh2, trio: >= 1.5x niquests' best over TLS",
    "TLS 1 MiB download, jh2, asyncio: >= 70% of the h2c download",
    "TLS 1 MiB download, jh2, trio: >= 70% of the h2c download",
    "small GETs (1,000, 100 in flight), jh2: trio >= 85% of asyncio",
    "1 MiB download, jh2: trio >= 85% of asyncio",
]


def niquests_option() -> list[str]:
    python = os.environ.get("H2ANY_BENCH_NIQUESTS_PYTHON", "")
    if python and os.path.exists(python):
        return ["--niquests-python", python]
    return [] if importlib.util.find_spec("niquests") else ["--no-niquests"]


def test_quick_run_reports_every_target(tmp_path: Path) -> None:
    pytest.importorskip("jh2")
    pytest.importorskip("trio")
    pytest.importorskip("trustme")
    output = tmp_path / "bulk.md"
    command = [
        sys.executable,
        str(SCRIPT),
        "--quick",
        *niquests_option(),
        "--engines",
        "jh2",
        "--backends",
        "asyncio",
        "trio",
        "--rows",
        "download",
        "upload",
        "rss",
        "parallel",
        "small",
        "tls-download",
        "--output",
        str(output),
    ]
    without_niquests = "--no-niquests" in command
    env = {k: v for k, v in os.environ.items() if k != "H2ANY_ENGINE"}
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    written = output.read_text()
    assert "<!-- bench_bulk:start -->" in written
    table = [line for line in written.splitlines() if line.startswith("| ")]
    assert table[0] == "| target | measured | ratio | met |"
    assert [line.split(" | ")[0][2:] for line in table[1:]] == ROWS
    for line in table[1:]:
        target, measured, ratio, met = line[2:-2].split(" | ")
        assert "FAILED" not in measured
        if "niquests" in target and without_niquests:
            assert met == "n/a"  # niquests left out
        else:
            assert met in ("yes", "no"), line  # measured, whatever the figure
            assert ratio != "n/a", line
    assert "load average (1/5/15 min) at the start" in written
    assert "load average (1/5/15 min) at the end" in written
    assert "python benchmarks/bench_bulk.py --quick" in written
    assert "the run took" in proc.stdout
