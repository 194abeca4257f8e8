"""Draw one small chart per benchmark scenario from the result tables in docs/benchmarks.md.

Usage: ``python benchmarks/chart.py [--tls] [docs/benchmarks.md] [docs/img]`` (``bench_all.py
--output`` runs it after writing the tables). ``--tls`` (implied by a results file whose
name ends in ``-tls``, such as ``docs/benchmarks-tls.md``, what ``bench_all.py --tls``
writes) draws the same charts from a TLS run's tables as ``bench-tls-*.png``, their titles
saying TLS. The tables are the results file: each chart
takes its bars from one scenario's table -- the median in the scenario's own unit (req/s,
MB/s) -- and writes over each bar its ratio to httpx *as that table gives it*, that is
against httpx measured in the same run (on the same event loop where the table has
several). Bars are grouped (by event loop, or by setup where there is one loop) and
coloured by client: h2any, httpx, niquests; the h2 floor is a dashed line. h2load, the C
ceiling, is left out (it would flatten every other bar; the tables have it).

Charts written (PNG, 110 dpi): ``bench-small.png``, ``bench-fanout.png``,
``bench-download.png``, ``bench-downloads8.png``, ``bench-upload.png`` (``bench-tls-small.png``
and so on with ``--tls``). Titles take the request counts and sizes from the tables'
headings and rows, so a run with other sizes is labelled with its own.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

_HEADING = re.compile(r"^###\s+([\w-]+)")
_NUMBER = re.compile(r"[\d][\d,]*(?:\.\d+)?")

COLOURS = {
    "h2any": ("#1f5f99", "#2a7ab9", "#5aa2d6", "#9cc7e8"),
    "httpx": ("#7a7a7a", "#9a9a9a", "#bdbdbd"),
    "niquests": ("#d9822b", "#f0b27a"),
}


@dataclass
class Table:
    """One result table: its column names (lowercase) and rows of cells."""

    header: list[str]
    rows: list[list[str]]
    title: str = ""  # the heading's text after the name ("20,000 GETs of a 1-byte file, ...")

    def column(self, *words: str) -> int:
        """The index of the first column whose name holds every word."""
        for index, name in enumerate(self.header):
            if all(word in name for word in words):
                return index
        raise KeyError(f"no column with {words} in {self.header}")


@dataclass
class Bar:
    client: str  # h2any, httpx, niquests (the colour family)
    label: str  # what the legend says
    value: float
    ratio: str  # "11.15x", as the table gives it


@dataclass
class Chart:
    name: str
    title: str
    unit: str
    groups: dict[str, list[Bar]] = field(default_factory=dict)
    floor: tuple[float, str] | None = None  # (value, label) of a dashed line
    note: str = ""


def parse_tables(markdown: str) -> dict[str, Table]:
    """Every table under a ``### name`` heading, by its first word (``small``, ...)."""
    tables: dict[str, Table] = {}
    name: str | None = None
    current: Table | None = None
    for line in [*markdown.splitlines(), ""]:
        heading = _HEADING.match(line)
        if heading:
            name = heading.group(1).rstrip(":").lower()
            title = line[heading.end() :].lstrip(": ").strip()
            current = None
            continue
        if line.startswith("|") and name is not None:
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if current is None:
                current = Table([cell.lower() for cell in cells], [], title)
                tables.setdefault(name, current)
            elif not set("".join(cells)) <= {"-", ":", " "}:
                current.rows.append(cells)
        elif current is not None:
            current = None
            name = None
    return tables


def number(text: str) -> float:
    match = _NUMBER.search(text)
    if match is None:
        raise ValueError(f"no number in {text!r}")
    return float(match.group().replace(",", ""))


def _bars(
    table: Table,
    place: Callable[[str, str], tuple[str, str] | None],
) -> dict[str, list[Bar]]:
    """Bars from ``table``: ``place(client, setup)`` gives (group, label) or None (left out)."""
    value_column = table.column("(median)")
    ratio_column = table.column("ratio to httpx")
    groups: dict[str, list[Bar]] = {}
    for row in table.rows:
        client, setup = row[0], row[1]
        where = place(client, setup)
        if where is None:
            continue
        group, label = where
        bar = Bar(client, label, number(row[value_column]), row[ratio_column])
        groups.setdefault(group, []).append(bar)
    return groups


def _count(text: str, what: str, default: str) -> str:
    """The number before ``what`` in a heading ("20,000" of "20,000 GETs"), else ``default``."""
    match = re.search(rf"([\d,]+) {what}", text)
    return match.group(1) if match else default


def _floor(table: Table, client: str = "h2 floor") -> tuple[float, str] | None:
    value_column = table.column("(median)")
    for row in table.rows:
        if row[0] == client:
            value = number(row[value_column])
            return value, f"h2 floor: {value:,.0f} req/s"
    return None


def charts(markdown: str, tls: bool = False) -> list[Chart]:
    """The charts that the tables in ``markdown`` give (a missing table: no chart);
    ``tls``: a TLS run's tables, which the titles say."""
    tables = parse_tables(markdown)
    found: list[Chart] = []

    def title(name: str, rest: str) -> str:
        return f"{name} over TLS: {rest}" if tls else f"{name}: {rest}"

    if "small" in tables:
        requests = _count(tables["small"].title, "GETs", "20,000")
        chart = Chart(
            "small",
            title("small", f"{requests} GETs of 1 byte, 100 in flight"),
            "req/s",
            _bars(
                tables["small"],
                lambda client, setup: (setup, client) if client in ("h2any", "httpx") else None,
            ),
        )
        threads = re.search(r"h2any ([\d,]+) req/s vs httpx ([\d,]+),\s*([\d.]+)x", markdown)
        if threads:
            h2any_rate, httpx_rate = number(threads.group(1)), number(threads.group(2))
            chart.groups["8 threads (sync)"] = [
                Bar("h2any", "h2any", h2any_rate, f"{threads.group(3)}x"),
                Bar("httpx", "httpx", httpx_rate, "1.00x"),
            ]
        if "floor" in tables:
            chart.floor = _floor(tables["floor"])
            chart.note = "floor: the floor scenario's run"
        elif "fan-out" in tables and _floor(tables["fan-out"]):
            chart.floor = _floor(tables["fan-out"])
            chart.note = "floor: the fan-out scenario's run"
        if tls and chart.floor is not None:
            chart.note += " (in memory, no TLS)"
        found.append(chart)

    if "fan-out" in tables:

        def fanout(client: str, setup: str) -> tuple[str, str] | None:
            if client not in ("h2any", "httpx"):
                return None
            loop, _, how = setup.partition(", ")
            if client == "httpx":
                return loop, "httpx"
            if "request_nowait" in how:
                return loop, "h2any, request_nowait"
            if "anyio" in how:
                return loop, "h2any, a task each (anyio)"
            return loop, "h2any, a task each (loop's own)"

        requests = _count(tables["fan-out"].title, "GETs", "5,000")
        chart = Chart(
            "fanout",
            title("fan-out", f"{requests} GETs started at once"),
            "req/s",
            _bars(tables["fan-out"], fanout),
        )
        chart.floor = _floor(tables["fan-out"])
        if tls and chart.floor is not None:
            chart.note = "floor: in memory, no TLS"
        for bars in chart.groups.values():
            for bar in bars:
                if bar.ratio == "n/a":
                    bar.ratio = ""  # the loop-API rows have no httpx twin
        found.append(chart)

    if "parallel" in tables:
        heading = re.search(r"(\d+) downloads of ([\d,]+ [KMG]iB)", tables["parallel"].title)
        streams, size = heading.groups() if heading else ("8", "64 MiB")
        for name, prefix, text in (
            ("download", "1 x", title("download", f"one {size} file")),
            (
                f"downloads{streams}",
                f"{streams} x",
                f"{streams} downloads of {size} at once" + (", over TLS" if tls else ""),
            ),
        ):

            def parallel(client: str, setup: str, prefix: str = prefix) -> tuple[str, str] | None:
                if client not in ("h2any", "httpx", "niquests") or not setup.startswith(
                    prefix + " "
                ):
                    return None
                if client == "niquests":
                    reads = "1 MiB reads" if "1 MiB" in setup else "chunks as received"
                    return "asyncio", f"niquests, {reads}"
                return "asyncio", client

            found.append(Chart(name, text, "MB/s", _bars(tables["parallel"], parallel)))

    if "upload" in tables:

        def upload(client: str, setup: str) -> tuple[str, str] | None:
            if client not in ("h2any", "httpx", "niquests"):
                return None
            size = re.match(r"[\d,]+ [KMG]iB", setup)
            if size is None:
                return None
            if "bytes object" in setup:
                body = f"{size.group()} bytes"
            elif " file" in setup:
                body = f"{size.group()} file"
            else:
                return None
            if "64 KiB windows" in setup:
                return f"{body}\n64 KiB windows", client
            if "16 MiB windows" in setup:
                return f"{body}\n16 MiB windows", client
            return None

        found.append(
            Chart(
                "upload",
                title("upload", "POST to nghttpd, asyncio"),
                "MB/s",
                _bars(tables["upload"], upload),
            )
        )
    return found


def draw_chart(chart: Chart, path: Path, tls: bool = False) -> None:
    """One chart: groups along x, a bar per client in each, the ratio to httpx on each."""
    labels: list[str] = []
    for bars in chart.groups.values():
        for bar in bars:
            if bar.label not in labels:
                labels.append(bar.label)
    shades: dict[str, str] = {}
    used: dict[str, int] = {}
    for label in labels:
        family = label.split(",")[0].split()[0]
        palette = COLOURS.get(family, ("#4c9a5b",))
        shades[label] = palette[used.get(family, 0) % len(palette)]
        used[family] = used.get(family, 0) + 1
    width = 0.8 / max(len(bars) for bars in chart.groups.values())
    figure, axes = plt.subplots(figsize=(max(5.6, 1.5 + 1.45 * len(chart.groups)), 3.2))
    top = max(bar.value for bars in chart.groups.values() for bar in bars)
    if chart.floor is not None:
        top = max(top, chart.floor[0])
    shown: set[str] = set()
    for position, bars in enumerate(chart.groups.values()):
        start = position - width * (len(bars) - 1) / 2
        for index, bar in enumerate(bars):
            x = start + index * width
            axes.bar(
                x,
                bar.value,
                width * 0.92,
                color=shades[bar.label],
                label=None if bar.label in shown else bar.label,
            )
            shown.add(bar.label)
            if bar.ratio:
                axes.text(
                    x, bar.value + top * 0.015, bar.ratio, ha="center", va="bottom", fontsize=6.5
                )
    if chart.floor is not None:
        axes.axhline(
            chart.floor[0], color="#3c8d40", linestyle="--", linewidth=1, label=chart.floor[1]
        )
    axes.set_xticks(range(len(chart.groups)), list(chart.groups), fontsize=8)
    axes.set_ylim(0, top * 1.15)
    axes.set_ylabel(chart.unit, fontsize=8)
    axes.tick_params(axis="y", labelsize=7)
    axes.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    axes.set_title(chart.title, fontsize=9)
    axes.spines[["top", "right"]].set_visible(False)
    axes.legend(fontsize=6.5, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    parts = ["over each bar: ratio to httpx in the same run"]
    if tls:
        parts.append("HTTP/2 over TLS, every client verifying a test CA")
    if chart.note:
        parts.append(chart.note)
    caption = "; ".join(parts)
    if len(caption) > 110:  # two lines rather than a cut-off one
        caption = "; ".join(parts[:2]) + "\n" + "; ".join(parts[2:])
    lines = caption.count("\n") + 1
    figure.text(0.01, 0.01, caption, fontsize=6, color="#555555")
    figure.tight_layout(rect=(0, 0.04 * lines, 1, 1))
    figure.savefig(path, dpi=110)
    plt.close(figure)


def is_tls_results(markdown_path: Path) -> bool:
    """A TLS run's results file is named ``...-tls.md`` (``bench_all.py --tls --output``)."""
    return markdown_path.stem.endswith("-tls")


def draw(markdown_path: Path, directory: Path, tls: bool | None = None) -> list[Path]:
    """Write every chart the tables in ``markdown_path`` give into ``directory``:
    ``bench-NAME.png``, or ``bench-tls-NAME.png`` for a TLS run's tables (``tls``; by
    default, when the file's name ends in ``-tls``)."""
    if tls is None:
        tls = is_tls_results(markdown_path)
    found = charts(markdown_path.read_text(), tls)
    if not found:
        raise SystemExit(f"no result tables in {markdown_path}")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    prefix = "bench-tls-" if tls else "bench-"
    for chart in found:
        path = directory / f"{prefix}{chart.name}.png"
        draw_chart(chart, path, tls)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    tls = True if "--tls" in args else None
    args = [arg for arg in args if arg != "--tls"]
    markdown = Path(args[0]) if args else Path("docs/benchmarks.md")
    directory = Path(args[1]) if len(args) > 1 else markdown.parent / "img"
    for path in draw(markdown, directory, tls):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
