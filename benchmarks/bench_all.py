"""Every benchmark: ``bench_core.py``, ``bench_scenarios.py``, then ``bench_threads.py``
(what ``nox -s bench`` runs).

Usage::

    python benchmarks/bench_all.py [--quick] [--output docs/benchmarks.md]

``--quick`` and ``--output`` are passed to the first two scripts (each writes its own marked
section of the output file; ``bench_threads.py`` prints its table, and takes ``--quick``);
run the scripts directly for their other options. The exit status is non-zero if any had a
failed row.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import bench_core
import bench_scenarios
import bench_threads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run, smaller transfers")
    parser.add_argument("--output", type=Path, help="write the markdown sections to this file")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    shared = ["--quick"] if args.quick else []
    if args.output is not None:
        shared += ["--output", str(args.output)]
    status = bench_core.main(shared)
    if status == 130:
        return status
    print()
    status = max(status, bench_scenarios.main(shared))
    print()
    status = max(status, bench_threads.main(["--quick"] if args.quick else []))
    if args.output is not None:
        import chart

        chart.draw(args.output, args.output.parent / "img")
    return status


if __name__ == "__main__":
    sys.exit(main())
