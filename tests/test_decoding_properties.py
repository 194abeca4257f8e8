"""Property tests: any body round-trips through every coding, however it is chunked."""

from __future__ import annotations

import gzip
import itertools
import zlib

import brotli
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from h2any._decoders import make_decoder


def _deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


CODINGS = {
    "gzip": lambda data: gzip.compress(data, mtime=0),
    "deflate": zlib.compress,
    "deflate-raw": _deflate_raw,
    "br": brotli.compress,
    "zstd": lambda data: zstandard.ZstdCompressor().compress(data),
    "gzip, br": lambda data: brotli.compress(gzip.compress(data, mtime=0)),
    "deflate, zstd": lambda data: zstandard.ZstdCompressor().compress(zlib.compress(data)),
}


def _header(coding: str) -> str:
    return "deflate" if coding == "deflate-raw" else coding


@settings(max_examples=200, deadline=None)
@given(
    body=st.binary(max_size=20_000)
    | st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=50), st.integers(1, 2000)),
    coding=st.sampled_from(sorted(CODINGS)),
    cuts=st.lists(st.integers(min_value=0, max_value=40_000), max_size=12),
)
def test_any_body_round_trips_through_every_coding_and_any_chunking(
    body: bytes, coding: str, cuts: list[int]
) -> None:
    encoded = CODINGS[coding](body)
    positions = sorted({0, len(encoded), *(c % (len(encoded) + 1) for c in cuts)})
    chunks = [encoded[a:b] for a, b in itertools.pairwise(positions)]
    decoder = make_decoder(_header(coding))
    decoded = b"".join(decoder.decode(chunk) for chunk in chunks) + decoder.flush()
    assert decoded == body


@settings(max_examples=100, deadline=None)
@given(body=st.binary(min_size=1, max_size=5_000), limit=st.integers(min_value=0, max_value=4_999))
def test_output_above_the_limit_always_raises(body: bytes, limit: int) -> None:
    import pytest

    import h2any

    decoder = make_decoder("gzip", max_size=min(limit, len(body) - 1))
    encoded = gzip.compress(body, mtime=0)
    with pytest.raises(h2any.DecodingError, match="max_decompressed_size"):  # noqa: PT012
        decoder.decode(encoded)
        decoder.flush()  # a limit at the very end is only reached here


def test_an_empty_encoded_body_decodes_to_nothing() -> None:
    # HEAD, 204 and 304 responses carry Content-Encoding without a body.
    for coding in ("gzip", "deflate", "br", "zstd", "gzip, br"):
        decoder = make_decoder(coding)
        assert decoder.decode(b"") + decoder.flush() == b""
