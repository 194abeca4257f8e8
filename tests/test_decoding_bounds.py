"""Bounded decompression: every coding decodes a piece at a time, whatever the bomb.

A body is decoded in pieces of at most about ``PIECE`` bytes (brotli rounds its output
buffer up, to under twice that), the rest kept compressed until the reader asks for it;
``max_decompressed_size`` is checked as each piece is made and counts the final output
only. Peak memory is measured in a subprocess against a 400 MB bomb of zeros per coding.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import brotli
import pytest
import zstandard
from scripted import ClientResetStream, ScriptedPeer, ScriptedServer, scripted_server

import h2any
from h2any._decoders import PIECE, make_decoder

pytestmark = pytest.mark.anyio

BOUND = 2 * PIECE  # brotli's output buffer grows in steps past its limit; zlib/zstd stay near PIECE
ZERO = bytes(1 << 20)


def gzip_bomb(megabytes: int) -> bytes:
    """``megabytes`` MiB of zeros, gzipped, made without holding them: one deflate segment
    (full flush: no history) repeated, then the final block and the trailer."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    segment = compressor.compress(ZERO) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(megabytes):
        crc = zlib.crc32(ZERO, crc)
    size = (megabytes << 20) & 0xFFFFFFFF
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + segment * megabytes + compressor.flush() + struct.pack("<II", crc, size)


def br_bomb(megabytes: int) -> bytes:
    compressor = brotli.Compressor(quality=5)
    return b"".join(compressor.process(ZERO) for _ in range(megabytes)) + compressor.finish()


def zstd_bomb(megabytes: int) -> bytes:
    compressor = zstandard.ZstdCompressor().compressobj()
    return b"".join(compressor.compress(ZERO) for _ in range(megabytes)) + compressor.flush()


BOMBS = {"gzip": gzip_bomb, "br": br_bomb, "zstd": zstd_bomb}


def bomb_server(
    payloads: dict[str, tuple[str, bytes]],
) -> AbstractAsyncContextManager[ScriptedServer]:
    """A scripted server answering ``GET /<name>`` with ``payloads[name]`` (coding, body)."""

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        while True:
            request = await peer.expect_request()
            coding, body = payloads[request.path.lstrip("/")]
            try:
                await peer.respond(
                    request.stream_id, headers=[("content-encoding", coding)], body=body
                )
            except ClientResetStream:
                continue

    return scripted_server(handler)


# -- pieces, in process --------------------------------------------------------------------


@pytest.mark.parametrize("coding", sorted(BOMBS))
def test_every_coding_decodes_a_bomb_in_bounded_pieces(coding: str) -> None:
    payload = BOMBS[coding](20)
    decoder = make_decoder(coding)
    sizes = []
    for start in range(0, len(payload), 16384):
        sizes.append(len(decoder.decode_piece(payload[start : start + 16384])))
        while decoder.more:
            sizes.append(len(decoder.decode_piece(b"")))
    assert decoder.flush() == b""
    assert sum(sizes) == 20 << 20
    assert max(sizes) <= BOUND


@pytest.mark.parametrize("coding", sorted(BOMBS))
def test_a_limit_is_enforced_within_one_piece_of_it(coding: str) -> None:
    payload = BOMBS[coding](20)
    decoder = make_decoder(coding, max_size=1_000_000)
    produced = 0
    with pytest.raises(h2any.DecodingError, match="max_decompressed_size"):  # noqa: PT012
        produced += len(decoder.decode_piece(payload))
        while decoder.more:
            produced += len(decoder.decode_piece(b""))
    assert produced <= 1_000_000


def test_a_limit_counts_the_final_output_of_a_chain_only() -> None:
    body = os.urandom(300_000) * 2  # 600 KB; gzipped once it is still ~300 KB
    payload = gzip.compress(gzip.compress(body))
    decoder = make_decoder("gzip, gzip", max_size=1_000_000)
    assert decoder.decode(payload) + decoder.flush() == body
    decoder = make_decoder("gzip, gzip", max_size=len(body) - 1)
    with pytest.raises(h2any.DecodingError, match="max_decompressed_size"):
        decoder.decode(payload)


def test_a_chained_bomb_is_decoded_in_bounded_pieces() -> None:
    payload = zstandard.ZstdCompressor().compress(gzip_bomb(20))
    decoder = make_decoder("gzip, zstd")
    sizes = [len(decoder.decode_piece(payload))]
    while decoder.more:
        sizes.append(len(decoder.decode_piece(b"")))
    assert decoder.flush() == b""
    assert sum(sizes) == 20 << 20
    assert max(sizes) <= BOUND


def test_zstd_frames_of_every_block_kind_round_trip_in_small_chunks() -> None:
    # Raw blocks (incompressible), RLE blocks (zeros), compressed ones, and a checksum.
    body = os.urandom(200_000) + bytes(300_000) + b"abc" * 100_000
    compressor = zstandard.ZstdCompressor(write_checksum=True, write_content_size=False)
    payload = compressor.compress(body)
    for step in (1, 7, 1000, len(payload)):
        decoder = make_decoder("zstd")
        pieces = []
        for start in range(0, len(payload), step):
            pieces.append(decoder.decode_piece(payload[start : start + step]))
            while decoder.more:
                pieces.append(decoder.decode_piece(b""))
        assert b"".join(pieces) + decoder.flush() == body
        assert max(map(len, pieces)) <= BOUND


def test_data_after_the_end_of_a_zstd_frame_is_refused() -> None:
    payload = zstandard.ZstdCompressor().compress(b"x" * 1000)
    decoder = make_decoder("zstd")
    assert decoder.decode(payload) == b"x" * 1000
    with pytest.raises(h2any.DecodingError, match="after the end"):
        decoder.decode(b"garbage")


# -- through a real peer, both backends ----------------------------------------------------


async def test_a_chained_gzip_body_under_the_limit_passes_it() -> None:
    body = os.urandom(300_000) * 2
    payloads = {"chained": ("gzip, gzip", gzip.compress(gzip.compress(body)))}
    with anyio.fail_after(10):
        async with bomb_server(payloads) as server:
            async with h2any.Connection(server.url, max_decompressed_size=1_000_000) as conn:
                response = await conn.request("GET", "/chained")
                assert await response.read() == body


async def test_streamed_bombs_come_in_bounded_chunks_for_every_coding() -> None:
    payloads = {coding: (coding, make(20)) for coding, make in BOMBS.items()}
    with anyio.fail_after(10):
        async with bomb_server(payloads) as server:
            async with h2any.Connection(server.url) as conn:
                for coding in payloads:
                    async with conn.stream("GET", f"/{coding}") as response:
                        sizes = [len(chunk) async for chunk in response.aiter_bytes()]
                    assert sum(sizes) == 20 << 20, coding
                    assert max(sizes) <= BOUND, coding


# -- memory, in a subprocess ----------------------------------------------------------------

_BOMB_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import anyio, h2any
    sys.path.insert(0, {tests!r})
    from test_decoding_bounds import BOMBS, bomb_server

    MEGABYTES = 400

    def field(name):
        for line in open("/proc/self/status"):
            if line.startswith(name):
                return int(line.split()[1]) * 1024

    def reset_peak():
        open("/proc/self/clear_refs", "w").write("5")
        return field("VmRSS:")

    async def main():
        payloads = {{coding: (coding, make(MEGABYTES)) for coding, make in BOMBS.items()}}
        figures = {{}}
        async with bomb_server(payloads) as server:
            async with h2any.Connection(server.url, max_decompressed_size=1_000_000) as conn:
                for coding in payloads:
                    before = reset_peak()
                    try:
                        await (await conn.request("GET", "/" + coding)).read()
                        error = None
                    except h2any.DecodingError as exc:
                        error = str(exc)
                    figures[coding + " limit"] = {{"error": error, "rss": field("VmHWM:") - before}}
            async with h2any.Connection(server.url) as conn:
                for coding in payloads:
                    before = reset_peak()
                    total = biggest = 0
                    async with conn.stream("GET", "/" + coding) as response:
                        async for chunk in response.aiter_bytes():
                            total += len(chunk)
                            biggest = max(biggest, len(chunk))
                    figures[coding + " stream"] = {{
                        "total": total, "biggest": biggest, "rss": field("VmHWM:") - before
                    }}
        print(json.dumps(figures))

    anyio.run(main, backend=sys.argv[1])
    """
)


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
def test_a_400_mb_bomb_costs_little_memory_in_every_coding(anyio_backend: str) -> None:
    # Before: br +769 MB and zstd +392 MB before the limit was seen; streamed without a
    # limit, br and zstd came as one 400 MB chunk, gzip in chunks up to 16.8 MB.
    script = _BOMB_SCRIPT.format(tests=str(Path(__file__).parent))
    result = subprocess.run(
        [sys.executable, "-c", script, anyio_backend],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    for coding in BOMBS:
        limited, streamed = figures[coding + " limit"], figures[coding + " stream"]
        assert "max_decompressed_size" in (limited["error"] or ""), figures
        assert limited["rss"] < 30 * 1024 * 1024, figures
        assert streamed["total"] == 400 << 20, figures
        assert streamed["biggest"] <= BOUND, figures
        assert streamed["rss"] < 30 * 1024 * 1024, figures


def test_brotli_without_an_output_cap_is_fed_in_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    # brotli < 1.2 and brotlicffi have no output_buffer_limit: the input goes in slices.
    monkeypatch.setattr("h2any._decoders._BROTLI_OUTPUT_LIMIT", False)
    payload = br_bomb(20)
    decoder = make_decoder("br")
    assert len(decoder.decode(payload)) == 20 << 20
    assert decoder.flush() == b""
    decoder = make_decoder("br", max_size=1_000_000)
    with pytest.raises(h2any.DecodingError, match="max_decompressed_size"):
        decoder.decode(payload)
