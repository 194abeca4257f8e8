"""The caching HPACK coders give exactly what hpack's own coders (and jh2's compiled ones) give.

Both run the same random sequence of header blocks, table size changes and limit changes;
every block, decoded list and error must match.
"""

from __future__ import annotations

from typing import Any

import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from h2any._hpack_cache import caching_coders

CachingEncoder, CachingDecoder = caching_coders(hpack)
TriplesEncoder, TriplesDecoder = caching_coders(hpack, triples=True)

_NAMES = [b":method", b":path", b"user-agent", b"accept-encoding", b"x-a", b"x-b", b"cookie"]
_VALUES = [b"GET", b"/", b"/a", b"gzip", b"", b"v" * 40, b"w" * 300]

_field = st.builds(
    lambda name, value, kind: (
        hpack.NeverIndexedHeaderTuple(name, value)
        if kind == "never"
        else hpack.HeaderTuple(name, value)
        if kind == "tuple-class"
        else (name, value)
    ),
    st.sampled_from(_NAMES),
    st.sampled_from(_VALUES),
    st.sampled_from(["plain", "tuple-class", "never"]),
)
_block = st.lists(_field, min_size=1, max_size=6)
# Blocks recur (that is what the cache is for): draw them from a small pool.
_operation = st.one_of(
    st.tuples(st.just("encode"), st.integers(0, 3)),
    st.tuples(st.just("resize"), st.sampled_from([0, 64, 256, 4096])),
    st.tuples(st.just("limit"), st.sampled_from([64, 200, 65536])),
)


@settings(max_examples=300, deadline=None)
@given(pool=st.lists(_block, min_size=1, max_size=4), operations=st.lists(_operation, max_size=40))
def test_caching_coders_match_hpack(pool: list[list[Any]], operations: list[Any]) -> None:
    encoders = (hpack.Encoder(), CachingEncoder())
    decoders = (hpack.Decoder(), CachingDecoder())
    for kind, argument in operations:
        if kind == "resize":
            for encoder in encoders:
                encoder.header_table_size = argument
            continue
        if kind == "limit":
            for decoder in decoders:
                decoder.max_header_list_size = argument
            continue
        fields = pool[argument % len(pool)]
        stock_block, cached_block = (encoder.encode(list(fields)) for encoder in encoders)
        assert cached_block == stock_block
        outcomes = []
        for decoder in decoders:
            try:
                outcomes.append(
                    ("ok", [(type(h), tuple(h)) for h in decoder.decode(stock_block, raw=True)])
                )
            except hpack.HPACKError as exc:
                outcomes.append(("error", type(exc)))
        assert outcomes[1] == outcomes[0]
        if outcomes[0][0] == "error":
            return  # a decoder that failed is unusable (as after a connection error)


def test_repeated_blocks_are_served_from_the_cache() -> None:
    encoder, decoder = CachingEncoder(), CachingDecoder()
    fields = [(b":method", b"GET"), (b":path", b"/x"), (b"user-agent", b"h2any")]
    first = encoder.encode(fields)  # inserts into the dynamic table: not cached
    second = encoder.encode(fields)  # all indexed now, table unchanged: cached
    assert encoder.encode(fields) == second
    assert len(encoder._cache) == 1
    assert decoder.decode(first, raw=True) == decoder.decode(second, raw=True)
    assert decoder.decode(second, raw=True) == fields
    assert len(decoder._cache) == 1


def test_a_table_change_empties_the_cache() -> None:
    encoder = CachingEncoder()
    fields = [(b"x-a", b"1")]
    encoder.encode(fields)
    encoder.encode(fields)
    assert encoder._cache
    encoder.encode([(b"x-b", b"2")])  # an insertion
    encoder.encode(fields)
    assert len(encoder._cache) == 1  # only the entry made under the new table state
    encoder.header_table_size = 0  # a size update must lead the next block, uncached
    block = encoder.encode(fields)
    assert block[0] & 0xE0 == 0x20


def test_never_indexed_fields_are_not_confused_with_equal_plain_ones() -> None:
    # NeverIndexedHeaderTuple(a, b) == (a, b), but they encode differently: a never-indexed
    # literal leaves the table unchanged (so its block is cached); the plain field that
    # follows must not be served that block -- it is a literal that enters the table.
    encoder = CachingEncoder()
    never = encoder.encode([hpack.NeverIndexedHeaderTuple(b"x-token", b"secret")])
    assert never[0] & 0xF0 == 0x10
    assert encoder._cache
    plain = encoder.encode([(b"x-token", b"secret")])
    assert plain[0] & 0xC0 == 0x40
    stock = hpack.Encoder()
    stock.encode([hpack.NeverIndexedHeaderTuple(b"x-token", b"secret")])
    assert plain == stock.encode([(b"x-token", b"secret")])


def test_large_blocks_are_not_kept() -> None:
    encoder, decoder = CachingEncoder(), CachingDecoder()
    fields = [(b"x-big", b"v" * 5000)]  # too big for the default 4 KiB table: never indexed
    block = encoder.encode(fields)
    assert encoder.encode(fields) == block
    assert decoder.decode(block, raw=True) == fields
    assert not encoder._cache
    assert not decoder._cache


def _jh2_decoder() -> Any:
    jh2_hazmat = pytest.importorskip("jh2._hazmat")  # the dev extra installs jh2
    return jh2_hazmat.Decoder()


@settings(max_examples=200, deadline=None)
@given(
    pool=st.lists(_block, min_size=1, max_size=4), picks=st.lists(st.integers(0, 3), max_size=30)
)
def test_triples_decoder_matches_jh2s_compiled_decoder(
    pool: list[list[Any]], picks: list[int]
) -> None:
    # For jh2, the cached coders stand in for its compiled ones: same (name, value,
    # never_indexed) triples for the same blocks, from the first block to the cached ones.
    encoder = hpack.Encoder()
    compiled, cached = _jh2_decoder(), TriplesDecoder()
    for pick in picks:
        block = encoder.encode(list(pool[pick % len(pool)]))
        assert cached.decode(block, raw=True) == compiled.decode(block, raw=True)


def test_triples_encoder_takes_jh2s_triples() -> None:
    # jh2 hands its encoder (name, value, sensitive) triples; hpack honours the third item.
    encoder, stock = TriplesEncoder(), hpack.Encoder()
    fields = [(b":method", b"GET", False), (b"authorization", b"secret", True)]
    expected = stock.encode(
        [(b":method", b"GET"), hpack.NeverIndexedHeaderTuple(b"authorization", b"secret")]
    )
    assert encoder.encode(fields) == expected
    assert encoder.encode(fields) == stock.encode(
        [(b":method", b"GET"), hpack.NeverIndexedHeaderTuple(b"authorization", b"secret")]
    )
