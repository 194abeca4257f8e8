"""HPACK coders that remember header blocks they have already produced or read.

A client sends nearly the same request headers again and again, and a server answers with
nearly the same response headers: once the fields are in the dynamic tables, the header
blocks repeat byte for byte. Pure-Python HPACK spends a quarter of a small request's time
re-deriving them. These subclasses of ``hpack``'s ``Encoder`` and ``Decoder`` keep the
result of a block that left the dynamic table unchanged, valid only while the table stays
unchanged: every change (an insertion, an eviction, a size update) moves the table's
``generation`` and empties the cache. A cached result is therefore exactly what the coder
would compute again -- the same bytes, the same header tuples.

Both engines get these (``_engine.py``). ``jh2``'s own coders are compiled, but a cached
block costs less than compiled HPACK still (small requests ~10% faster with ``jh2``); for
``jh2`` the coders speak its compiled coders' dialect (``triples``).
"""

from __future__ import annotations

from typing import Any

__all__ = ("caching_coders",)

# Header blocks remembered per table state: a connection's distinct recurring blocks, each
# at most BLOCK_SIZE bytes encoded (so a cache holds at most 256 KiB of blocks, plus the
# decoded fields, which mostly share their bytes with the dynamic table).
CACHE_SIZE = 64
BLOCK_SIZE = 4096


def caching_coders(
    hpack_module: Any, *, triples: bool = False, errors: tuple[type[Exception], ...] | None = None
) -> tuple[type[Any], type[Any]]:
    """The caching ``(Encoder, Decoder)`` classes for ``hpack_module`` (``hpack``).

    ``triples``: decode to ``(name, value, never_indexed)`` triples, as jh2's compiled
    decoder does (jh2 then expects them; its encoder passes triples, which hpack accepts).
    ``errors``: the ``(HPACKError, OversizedHeaderListError)`` classes the engine catches, if
    not hpack's own: a decoding error is raised as those.
    """
    hpack_error: Any
    oversized_error: Any
    hpack_error, oversized_error = errors or (None, None)
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
            if hpack_error is None:
                headers = super().decode(data, raw)
            else:
                try:
                    headers = super().decode(data, raw)
                except hpack_module.OversizedHeaderListError as exc:
                    raise oversized_error(str(exc)) from exc
                except hpack_module.HPACKError as exc:
                    raise hpack_error(str(exc)) from exc
            if triples:
                headers = [(field[0], field[1], not field.indexable) for field in headers]
            if table.generation == state[0] and len(cache) < CACHE_SIZE and len(key) <= BLOCK_SIZE:
                cache[key] = tuple(headers)
            return headers

    return CachingEncoder, CachingDecoder
