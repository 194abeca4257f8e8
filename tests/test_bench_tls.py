"""The benchmark harness's TLS mode (issue 21's TLS charts): nghttpd over TLS with a trustme
CA's certificate, the clients verifying against that CA, and the TLS charts drawn from a
TLS results file. Real nghttpd on loopback; no timing is checked."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import h2any

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import bench_core  # noqa: E402 (benchmarks/ is not a package)

pytestmark = pytest.mark.anyio

DOCS = BENCHMARKS.parent / "docs"


async def test_clients_verify_the_test_ca(anyio_backend: str) -> None:
    with bench_core.maybe_tls(True) as tls, bench_core.nghttpd(files={}, tls=tls) as server:
        assert tls is not None
        assert server.origin.startswith("https://127.0.0.1:")
        assert tls.ca == bench_core.CA_FILE
        assert await bench_core.h2any_small(server.origin, 50) > 0
        assert await bench_core.httpx_small(server.origin, 20) > 0
        # The CA is what makes it work: without it verification fails.
        with pytest.raises(h2any.TLSError):
            async with h2any.Connection(server.origin) as conn:
                await conn.request("GET", "/" + bench_core.SMALL_FILE)
    assert bench_core.CA_FILE is None


def test_h2c_unchanged_without_tls() -> None:
    with bench_core.maybe_tls(False) as tls, bench_core.nghttpd(files={}, tls=tls) as server:
        assert tls is None
        assert server.origin.startswith("http://")
        assert bench_core.h2any_tls() == {}
    assert bench_core.nghttpd_command(False) == "nghttpd --no-tls -a 127.0.0.1 -d DOCROOT PORT"
    assert bench_core.nghttpd_command(True).endswith("PORT KEY.pem CERT.pem")


def test_tls_charts_from_the_tls_results_file(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    import chart

    results = DOCS / "benchmarks-tls.md"
    found = chart.charts(results.read_text(), tls=True)
    assert [c.name for c in found] == ["small", "fanout", "download", "downloads8", "upload"]
    assert all("TLS" in c.title for c in found)
    small = found[0]
    assert list(small.groups) == ["asyncio", "trio", "8 threads (sync)"]
    assert small.floor is not None  # from the fan-out table: the TLS run has no floor table
    assert {bar.client for bars in found[2].groups.values() for bar in bars} == {
        "h2any",
        "httpx",
        "niquests",
    }
    written = chart.draw(results, tmp_path)  # TLS from the file name
    assert sorted(p.name for p in written) == [
        f"bench-tls-{name}.png"
        for name in sorted(["small", "fanout", "download", "downloads8", "upload"])
    ]
    # The h2c results give the h2c charts, titles without TLS.
    h2c = chart.charts((DOCS / "benchmarks.md").read_text())
    assert [c.name for c in h2c] == [c.name for c in found]
    assert not any("TLS" in c.title for c in h2c)
