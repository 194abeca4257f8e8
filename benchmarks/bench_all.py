"""Every benchmark: ``bench_core.py``, ``bench_scenarios.py``, then ``bench_threads.py``
(what ``nox -s bench`` runs).

Usage::

    python benchmarks/bench_all.py [--quick] [--tls] [--backend asyncio|trio|uvloop ...]
        [--niquests-python PYTHON] [--part core|scenarios|threads ...] [--output FILE]

``--quick``, ``--tls``, ``--backend`` and ``--output`` are passed to the first two scripts
(each writes its own marked section of the output file; ``bench_threads.py`` prints its
table, and takes ``--quick``), ``--niquests-python`` to ``bench_scenarios.py``; run the
scripts directly for their other options. ``--part`` runs some of the three only. With
``--output`` the charts are redrawn from the file at the end (``chart.py``; ``--tls``:
``docs/img/bench-tls-*.png``). The exit status is non-zero if any had a failed row.

``--tls`` runs everything over TLS against a certificate from a throw-away ``trustme`` CA;
write its results to a file of their own (``--output docs/benchmarks-tls.md``) so the h2c
results stay. ``bench_threads.py`` has no TLS option: here it runs (h2any and httpx; the
hyper shim's row is h2c only) against a TLS nghttpd with ``certifi.where()`` pointing at
the test CA and ``$SSL_CERT_FILE``/``$SSL_CERT_DIR`` unset (h2any's and httpx's default
``verify`` read them, so both verify the server against that CA), and its result line goes
into the output file between ``bench_threads`` markers.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import bench_core
import bench_scenarios
import bench_threads

PARTS = ("core", "scenarios", "threads")
THREADS_START = "<!-- bench_threads:start -->"
THREADS_END = "<!-- bench_threads:end -->"


class _Tee(io.StringIO):
    """Keeps what is printed and prints it too."""

    def write(self, text: str) -> int:
        sys.__stdout__.write(text)
        sys.__stdout__.flush()
        return super().write(text)


@contextlib.contextmanager
def _threads_over_tls() -> Iterator[None]:
    """``bench_threads`` against a TLS nghttpd, every client trusting only the test CA."""
    import certifi

    nghttpd, where = bench_core.nghttpd, certifi.where
    # httpx's default verify reads $SSL_CERT_FILE / $SSL_CERT_DIR before certifi's bundle.
    saved = {name: os.environ.pop(name, None) for name in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
    with bench_core.maybe_tls(True) as tls:
        assert tls is not None
        bench_core.nghttpd = partial(nghttpd, tls=tls)  # type: ignore[assignment]
        certifi.where = lambda: tls.ca
        try:
            yield
        finally:
            bench_core.nghttpd, certifi.where = nghttpd, where  # type: ignore[assignment]
            os.environ.update({name: value for name, value in saved.items() if value})


def threads_section(output: str, argv: list[str], load: str, tls: bool) -> str | None:
    """The markdown line ``chart.py`` reads the threads bars from, from bench_threads' output."""
    rates = dict(re.findall(r"^\s+(h2any|httpx)\s+([\d,]+) req/s", output, re.MULTILINE))
    ratio = re.search(r"^\s+h2any / httpx: ([\d.]+)x", output, re.MULTILINE)
    if "h2any" not in rates or "httpx" not in rates or ratio is None:
        return None
    how = "over TLS (the test CA as certifi's bundle)" if tls else "h2c"
    loop = re.search(r"h2any loop thread: (.+)$", output, re.MULTILINE)
    if loop is not None:
        how += f", h2any's loop thread on {loop.group(1)}"
    return (
        "## Threads: 8 threads sharing one `h2any.sync.Connection`"
        + (", over TLS" if tls else "")
        + "\n\n"
        f"`python benchmarks/bench_threads.py {' '.join(argv)}`, {how}, load average at the "
        f"end {load}: **h2any {rates['h2any']} req/s vs httpx {rates['httpx']}, "
        f"{ratio.group(1)}x** (median of same-repetition ratios).\n"
    )


def run_threads(args: argparse.Namespace) -> int:
    argv = ["--quick"] if args.quick else []
    if args.tls:  # the hyper-compatible shim's benchmark speaks h2c only (secure=False)
        argv += ["--client", "h2any", "--client", "httpx"]
    tee = _Tee()
    with (
        contextlib.redirect_stdout(tee),
        _threads_over_tls() if args.tls else contextlib.nullcontext(),
    ):
        status = bench_threads.main(argv)
    if args.output is not None:
        section = threads_section(tee.getvalue(), argv, bench_core.load_average(), args.tls)
        if section is not None:
            intro = bench_core.TLS_INTRO if args.tls else bench_core.INTRO
            bench_core.write_output(args.output, section, THREADS_START, THREADS_END, intro)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run, smaller transfers")
    parser.add_argument("--tls", action="store_true", help="over TLS (a trustme CA)")
    parser.add_argument("--backend", nargs="+", choices=bench_core.BACKENDS, action="extend")
    parser.add_argument("--niquests-python", help="the interpreter that has niquests")
    parser.add_argument("--part", nargs="+", choices=PARTS, action="extend")
    parser.add_argument("--output", type=Path, help="write the markdown sections to this file")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    parts = args.part or list(PARTS)
    shared = ["--quick"] if args.quick else []
    if args.tls:
        shared.append("--tls")
    if args.backend:
        shared += ["--backend", *args.backend]
    if args.output is not None:
        shared += ["--output", str(args.output)]
    status = 0
    if "core" in parts:
        status = bench_core.main(shared)
        if status == 130:
            return status
        print()
    if "scenarios" in parts:
        extra = ["--niquests-python", args.niquests_python] if args.niquests_python else []
        status = max(status, bench_scenarios.main(shared + extra))
        if status == 130:
            return status
        print()
    if "threads" in parts:
        status = max(status, run_threads(args))
    if args.output is not None:
        import chart

        chart.draw(args.output, args.output.parent / "img", tls=args.tls)
    return status


if __name__ == "__main__":
    sys.exit(main())
