"""The caching HPACK coders give exactly what hpack's own coders (and jh2's compiled ones) give.

Both run the same random sequence of header blocks, table size changes and limit changes;
every block, decoded list and error must match.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from h2any._hpack_cache import caching_coders, caching_compiled_coders, changes_table

CachingEncoder, CachingDecoder = caching_coders(hpack)

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


def _assert_coders_agree(
    pool: list[list[Any]],
    operations: list[Any],
    encoders: tuple[Any, Any],
    decoders: tuple[Any, Any],
    *,
    encode: tuple[Callable[[Any, list[Any]], bytes], Callable[[Any, list[Any]], bytes]],
    decode: tuple[Callable[[Any, bytes], Any], Callable[[Any, bytes], Any]],
    decoded: Callable[[Any], Any],
    errors: type[Exception],
) -> None:
    """Run ``operations`` on a reference coder pair and a cached one (the second of each),
    each side coding with its own ``encode``/``decode`` function: every block, every decoded
    list (as ``decoded`` shows it) and every error must match."""
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
        stock_block, cached_block = (
            encode_with(encoder, list(fields))
            for encode_with, encoder in zip(encode, encoders, strict=True)
        )
        assert cached_block == stock_block
        outcomes = []
        for decode_with, decoder in zip(decode, decoders, strict=True):
            try:
                outcomes.append(("ok", decoded(decode_with(decoder, stock_block))))
            except errors as exc:
                outcomes.append(("error", type(exc)))
        assert outcomes[1] == outcomes[0]
        if outcomes[0][0] == "error":
            return  # a decoder that failed is unusable (as after a connection error)


def _encode(encoder: Any, fields: list[Any]) -> bytes:
    return encoder.encode(fields)  # type: ignore[no-any-return]


def _decode(decoder: Any, block: bytes) -> Any:
    return decoder.decode(block, raw=True)


@settings(max_examples=300, deadline=None)
@given(pool=st.lists(_block, min_size=1, max_size=4), operations=st.lists(_operation, max_size=40))
def test_caching_coders_match_hpack(pool: list[list[Any]], operations: list[Any]) -> None:
    _assert_coders_agree(
        pool,
        operations,
        (hpack.Encoder(), CachingEncoder()),
        (hpack.Decoder(), CachingDecoder()),
        encode=(_encode, _encode),
        decode=(_decode, _decode),
        decoded=lambda headers: [(type(h), tuple(h)) for h in headers],
        errors=hpack.HPACKError,
    )


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


@settings(max_examples=300, deadline=None)
@given(pool=st.lists(_block, min_size=1, max_size=4), operations=st.lists(_operation, max_size=40))
def test_changes_table_tells_table_changes(pool: list[list[Any]], operations: list[Any]) -> None:
    # Read off the block itself: does decoding it insert into (or resize) the table?
    encoder, decoder = hpack.Encoder(), CachingDecoder()
    for kind, argument in operations:
        if kind == "resize":
            encoder.header_table_size = argument
            continue
        if kind == "limit":
            continue
        block = encoder.encode(list(pool[argument % len(pool)]))
        before = decoder.header_table.generation
        try:
            decoder.decode(block, raw=True)
        except hpack.HPACKError:
            return  # hpack's encoder skips a size update after several resizes in a row
        assert changes_table(block) == (decoder.header_table.generation != before)


def _triples(fields: list[Any], never_indexed: type[Any]) -> list[Any]:
    return [(field[0], field[1], isinstance(field, never_indexed)) for field in fields]


@settings(max_examples=200, deadline=None)
@given(
    pool=st.lists(_block, min_size=1, max_size=4),
    operations=st.lists(_operation, max_size=40),
    form=st.sampled_from(["triples", "fields"]),
)
def test_compiled_coder_wrappers_match_the_compiled_coders(
    pool: list[list[Any]], operations: list[Any], form: str
) -> None:
    # jh2's compiled coders, bare and wrapped in the cache, fed the same sequence: as jh2
    # calls them (triples), or in h2's field form (``encode_fields``, ``decode_fields``)
    # against jh2's own conversion of the bare coders' triples.
    hazmat = pytest.importorskip("jh2._hazmat")  # the dev extra installs jh2
    jh2_connection = importlib.import_module("jh2.connection")
    never_indexed = jh2_connection.NeverIndexedHeaderTuple
    Encoder, Decoder = caching_compiled_coders(hazmat.Encoder, hazmat.Decoder, never_indexed)
    pool = [
        [never_indexed(*f) if isinstance(f, hpack.NeverIndexedHeaderTuple) else f for f in b]
        for b in pool
    ]

    def bare_encode(encoder: Any, fields: list[Any]) -> bytes:
        return encoder.encode(_triples(fields, never_indexed))  # type: ignore[no-any-return]

    if form == "triples":
        encode = (bare_encode, bare_encode)
        decode = (_decode, _decode)
        decoded: Callable[[Any], Any] = lambda headers: headers  # noqa: E731
    else:
        to_fields = jh2_connection._decode_headers
        encode = (bare_encode, lambda encoder, fields: encoder.encode_fields(fields))
        decode = (to_fields, lambda decoder, block: decoder.decode_fields(block, to_fields))
        decoded = lambda headers: [(type(h), tuple(h)) for h in headers]  # noqa: E731
    _assert_coders_agree(
        pool,
        operations,
        (hazmat.Encoder(), Encoder()),
        (hazmat.Decoder(), Decoder()),
        encode=encode,
        decode=decode,
        decoded=decoded,
        errors=Exception,
    )


def test_compiled_field_form_keeps_never_indexed_fields_apart() -> None:
    # As for the stock coders: a never-indexed field's block (cached: it leaves the table
    # alone) must not be served for the equal plain field, which enters the table.
    hazmat = pytest.importorskip("jh2._hazmat")
    never_indexed = importlib.import_module("jh2.connection").NeverIndexedHeaderTuple
    Encoder, _ = caching_compiled_coders(hazmat.Encoder, hazmat.Decoder, never_indexed)
    encoder = Encoder()
    never = encoder.encode_fields([never_indexed(b"x-token", b"secret")])
    assert never[0] & 0xF0 == 0x10
    assert encoder._cache
    plain = encoder.encode_fields([(b"x-token", b"secret")])
    assert plain[0] & 0xC0 == 0x40
