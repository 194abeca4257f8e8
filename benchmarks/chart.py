"""Draw docs/benchmarks.png from the result tables in docs/benchmarks.md.

Usage: ``python benchmarks/chart.py [docs/benchmarks.md] [docs/benchmarks.png]`` (run by
``bench_all.py --output`` after the tables are written). For every table with a "ratio to
httpx" column, one group of bars: each row's ratio to httpx measured in the same run
(h2load, the C ceiling, is left out: it would flatten every other bar).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

_HEADING = re.compile(r"^###\s+(.*)$")
_RATIO = re.compile(r"([\d.,]+)x")


def tables(markdown: str) -> list[tuple[str, list[tuple[str, float]]]]:
    """``(title, [(row label, ratio to httpx), ...])`` for each table that has ratios."""
    found: list[tuple[str, list[tuple[str, float]]]] = []
    title = ""
    header: list[str] | None = None
    rows: list[tuple[str, float]] = []
    for line in [*markdown.splitlines(), ""]:
        heading = _HEADING.match(line)
        if heading:
            title = heading.group(1).split(":")[0]
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if header is None:
                header = [c.lower() for c in cells]
            elif not set(cells[0]) <= {"-", ":"}:
                ratio_column = next((i for i, c in enumerate(header) if "ratio" in c), None)
                match = _RATIO.match(cells[ratio_column]) if ratio_column is not None else None
                if match and cells[0] != "h2load":
                    label = " ".join(c for c in cells[:2] if c)
                    rows.append((label[:48], float(match.group(1).replace(",", ""))))
            continue
        if header is not None and rows:
            found.append((title, rows))
        header, rows = None, []
    return found


def draw(markdown_path: Path, png_path: Path) -> None:
    groups = tables(markdown_path.read_text())
    if not groups:
        raise SystemExit(f"no result tables with ratios in {markdown_path}")
    height = sum(len(rows) for _, rows in groups) * 0.32 + len(groups) * 0.6
    figure, axes = plt.subplots(figsize=(9, max(3.0, height)))
    labels: list[str] = []
    values: list[float] = []
    colours: list[str] = []
    for title, rows in groups:
        for label, ratio in rows:
            labels.append(f"{title}: {label}")
            values.append(ratio)
            colours.append("#2a7ab9" if label.startswith("h2any") else "#9a9a9a")
    positions = range(len(values))
    axes.barh(list(positions), values, color=colours)
    axes.set_yticks(list(positions), labels, fontsize=7)
    axes.invert_yaxis()
    axes.axvline(1.0, color="black", linewidth=0.8)
    axes.set_xscale("log")
    axes.set_xlabel("throughput relative to httpx (http2=True) in the same run; log scale")
    axes.set_title("h2any (blue) and httpx (grey), one connection to nghttpd, 2 cores")
    figure.tight_layout()
    figure.savefig(png_path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    markdown = Path(args[0]) if args else Path("docs/benchmarks.md")
    png = Path(args[1]) if len(args) > 1 else markdown.with_suffix(".png")
    draw(markdown, png)
    print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
