"""HPACK coders that remember header blocks they have already produced or read.

A client sends nearly the same request headers again and again, and a server answers with
nearly the same response headers: once the fields are in the dynamic tables, the header
blocks repeat byte for byte. Pure-Python HPACK spends a quarter of a small request's time
re-deriving them. These subclasses of ``hpack``'s ``Encoder`` and ``Decoder`` keep the
result of a block that left the dynamic table unchanged, valid only while the table stays
unchanged: every change (an insertion, an eviction, a size update) moves the table's
``generation`` and empties the cache. A cached result is therefore exactly what the coder
would compute again -- the same bytes, the same header tuples.

Stock ``h2`` gets these (``_engine.py``). ``jh2``'s coders are compiled and cannot be
subclassed: ``caching_compiled_coders`` wraps them instead, and learns whether a block
changed the table from the block itself (``changes_table``). A cached block is cheaper
than even compiled HPACK; a new one still gets the compiled coder.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ("caching_coders", "caching_compiled_coders", "changes_table")

# Header blocks remembered per table state: a connection's distinct recurring blocks, each
# at most BLOCK_SIZE bytes encoded (so a cache holds at most 256 KiB of blocks, plus the
# decoded fields, which mostly share their bytes with the dynamic table).
CACHE_SIZE = 64
BLOCK_SIZE = 4096


def caching_coders(hpack_module: Any) -> tuple[type[Any], type[Any]]:
    """The caching ``(Encoder, Decoder)`` classes for ``hpack_module`` (``hpack``)."""
    HeaderTable = hpack_module.table.HeaderTable

    class _Table(HeaderTable):  # type: ignore[misc,valid-type]
        """A header table that counts its changes."""

        def __init__(self) -> None:
            super().__init__()
            self.generation = 0

        def add(self, name: bytes, value: bytes) -> None:
            self.generation += 1
            super().add(name, value)

        @property
        def maxsize(self) -> int:
            return self._maxsize  # type: ignore[no-any-return]

        @maxsize.setter
        def maxsize(self, newmax: int) -> None:
            self.generation += 1
            HeaderTable.maxsize.fset(self, newmax)

    class CachingEncoder(hpack_module.Encoder):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.header_table = _Table()
            self._cache: dict[Any, bytes] = {}
            self._cache_generation = 0

        def encode(self, headers: Any, huffman: bool = True) -> bytes:
            table = self.header_table
            if table.resized or isinstance(headers, dict):
                # A pending size update goes first into the next block: not cacheable.
                return super().encode(headers, huffman)  # type: ignore[no-any-return]
            fields = headers if isinstance(headers, list) else list(headers)
            generation = table.generation
            cache = self._cache
            if generation != self._cache_generation:
                cache.clear()
                self._cache_generation = generation
            # The field classes matter: a NeverIndexedHeaderTuple equals a plain tuple.
            key = (huffman, tuple(fields), tuple(map(type, fields)))
            block = cache.get(key)
            if block is None:
                block = super().encode(fields, huffman)
                if (
                    table.generation == generation
                    and len(cache) < CACHE_SIZE
                    and len(block) <= BLOCK_SIZE
                ):
                    cache[key] = block
            return block

        def encode_fields(self, headers: list[Any]) -> bytes:
            """``encode``: the compiled wrapper's name for it (the fields are h2's already)."""
            return self.encode(headers)

    class CachingDecoder(hpack_module.Decoder):  # type: ignore[misc]
        def __init__(self, max_header_list_size: int | None = None) -> None:
            if max_header_list_size is None:
                super().__init__()
            else:
                super().__init__(max_header_list_size)
            self.header_table = _Table()
            self.max_allowed_table_size = self.header_table.maxsize
            self._cache: dict[bytes, tuple[Any, ...]] = {}
            self._cache_state: tuple[int, bool, int, int] = (-1, False, 0, 0)

        def decode(self, data: bytes, raw: bool = False) -> Any:
            table = self.header_table
            # The limits are part of the state: a block may pass under one and fail another.
            state = (table.generation, raw, self.max_header_list_size, self.max_allowed_table_size)
            cache = self._cache
            if state != self._cache_state:
                cache.clear()
                self._cache_state = state
            key = bytes(data)
            cached = cache.get(key)
            if cached is not None:
                return list(cached)
            headers = super().decode(data, raw)
            if table.generation == state[0] and len(cache) < CACHE_SIZE and len(key) <= BLOCK_SIZE:
                cache[key] = tuple(headers)
            return headers

        def decode_fields(self, data: bytes, to_fields: Callable[[Any, bytes], Any]) -> Any:
            """``to_fields(self, data)`` (the engine's ``_decode_headers``): the compiled
            wrapper's way to remember its conversion; here ``decode`` already does."""
            return to_fields(self, data)

    return CachingEncoder, CachingDecoder


def _integer_end(block: bytes, position: int, prefix_bits: int) -> tuple[int, int]:
    """The HPACK integer at ``position`` (RFC 7541 section 5.1): its value and end."""
    limit = (1 << prefix_bits) - 1
    value = block[position] & limit
    position += 1
    if value == limit:
        shift = 0
        while True:
            octet = block[position]
            position += 1
            value += (octet & 0x7F) << shift
            shift += 7
            if not octet & 0x80:
                break
    return value, position


def changes_table(block: bytes) -> bool:
    """Whether decoding the HPACK ``block`` changes the dynamic table: a literal with
    incremental indexing or a table size update anywhere in it (RFC 7541 section 6).

    ``block`` must be well formed (one a coder produced or accepted).
    """
    position = 0
    size = len(block)
    while position < size:
        octet = block[position]
        if octet & 0x80:  # indexed field
            position = _integer_end(block, position, 7)[1]
            continue
        if octet & 0x40 or octet & 0x20:  # literal with incremental indexing, size update
            return True
        # A literal without indexing or never indexed: name (index or string), value string.
        index, position = _integer_end(block, position, 4)
        for _ in range(1 if index else 2):
            length, position = _integer_end(block, position, 7)
            position += length
    return False


def _coder_setting(name: str) -> Any:
    """A setting of the wrapped coder (``self._coder``); changing it empties the cache: a
    new table size opens the next block with a size update, and the decoder's limits decide
    whether a block passes at all."""

    def get(self: Any) -> Any:
        return getattr(self._coder, name)

    def set_(self: Any, value: Any) -> None:
        self._cache.clear()
        setattr(self._coder, name, value)

    return property(get, set_)


def caching_compiled_coders(
    encoder_class: Any, decoder_class: Any, never_indexed: type[Any]
) -> tuple[type[Any], type[Any]]:
    """Caching wrappers of compiled ``(Encoder, Decoder)`` classes (jh2's), which speak in
    ``(name, value, sensitive)`` triples. Same rule as ``caching_coders``: a block is
    reused only while the table is unchanged since it was made, and only a block that left
    the table unchanged is kept.

    Both also speak h2's field form -- tuples, sensitive ones of class ``never_indexed`` --
    with the conversion to and from triples remembered too (``encode_fields``,
    ``decode_fields``)."""

    def remember(cache: dict[Any, Any], key: Any, block: bytes, value: Any) -> None:
        if changes_table(block):
            cache.clear()
        elif len(cache) < CACHE_SIZE and len(block) <= BLOCK_SIZE:
            cache[key] = value

    class CachingCompiledEncoder:
        __slots__ = ("_cache", "_coder")

        header_table_size = _coder_setting("header_table_size")

        def __init__(self) -> None:
            self._coder = encoder_class()
            self._cache: dict[Any, bytes] = {}

        def encode(self, headers: Any, huffman: bool | None = None) -> bytes:
            fields = tuple(headers)
            key = (huffman, fields)
            block = self._cache.get(key)
            if block is None:
                block = self._coder.encode(list(fields), huffman)
                remember(self._cache, key, block, block)
            return block

        def encode_fields(self, headers: list[Any]) -> bytes:
            """``encode`` of h2-style fields."""
            # The field classes matter: a never-indexed tuple equals a plain one.
            key = ("fields", tuple(headers), tuple(map(type, headers)))
            block = self._cache.get(key)
            if block is None:
                triples = [
                    (field[0], field[1], isinstance(field, never_indexed)) for field in headers
                ]
                block = self._coder.encode(triples, None)
                remember(self._cache, key, block, block)
            return block

    class CachingCompiledDecoder:
        __slots__ = ("_cache", "_coder")

        header_table_size = _coder_setting("header_table_size")
        max_allowed_table_size = _coder_setting("max_allowed_table_size")
        max_header_list_size = _coder_setting("max_header_list_size")

        def __init__(self, max_header_list_size: int | None = None) -> None:
            self._coder = decoder_class(max_header_list_size)
            self._cache: dict[Any, tuple[Any, ...]] = {}

        def decode(self, data: bytes, raw: bool | None = None) -> Any:
            key = (raw, bytes(data))
            cached = self._cache.get(key)
            if cached is not None:
                return list(cached)
            headers = self._coder.decode(data, raw)
            remember(self._cache, key, key[1], tuple(headers))
            return headers

        def decode_fields(self, data: bytes, to_fields: Callable[[Any, bytes], Any]) -> list[Any]:
            """``to_fields(self, data)``: the engine's h2-style fields of block ``data``,
            made from this decoder's triples (jh2's ``_decode_headers``, which also turns
            decoding errors into the engine's), remembered with the block."""
            block = bytes(data)
            key = ("fields", block)
            fields = self._cache.get(key)
            if fields is None:
                fields = tuple(to_fields(self, block))
                if (True, block) in self._cache and len(self._cache) < CACHE_SIZE:
                    self._cache[key] = fields  # its triples were kept: the table is unchanged
            return list(fields)

    return CachingCompiledEncoder, CachingCompiledDecoder
