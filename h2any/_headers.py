"""The ``Headers`` container: case-insensitive lookup, wire order, repeated names kept."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TypeVar, Union, final, overload

from ._exceptions import InvalidRequest

__all__ = (
    "HeaderTypes",
    "Headers",
    "has_wire_name",
    "headers_from_wire",
    "joined_cookies",
    "kept_block",
    "malformed_response_fields",
)

HeaderTypes = Union[
    "Headers",
    Mapping[str, str],
    Mapping[bytes, bytes],
    Sequence[tuple[str, str]],
    Sequence[tuple[bytes, bytes]],
]


def _unencodable(fields: list[tuple[str, str]]) -> InvalidRequest:
    """The error for a field that is not latin-1 text (HTTP fields are bytes; h2any takes
    ``str`` as latin-1). The value itself is not quoted: it may be a credential."""
    for name, value in fields:
        if not _is_latin_1(name):
            return InvalidRequest(
                f"header name {name!r} has characters outside latin-1 (pass bytes, or "
                "encode it yourself)"
            )
        if not _is_latin_1(value):
            position = next(i for i, char in enumerate(value) if ord(char) > 0xFF)
            return InvalidRequest(
                f"the value of header {name!r} has a character outside latin-1 at position "
                f"{position} (pass bytes, or encode it yourself, e.g. percent-encoding)"
            )
    return InvalidRequest("a header has characters outside latin-1")  # pragma: no cover


def _is_latin_1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _text(value: str | bytes) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    raise TypeError(type(value).__name__)


def _not_text(pairs: Iterable[tuple[object, object]]) -> InvalidRequest:
    """The error for a field whose name or value is neither ``str`` nor ``bytes`` (an ``int``,
    ``None``, ...), naming the header; the value itself is not quoted (it may be a
    credential)."""
    for name, value in pairs:
        if not isinstance(name, (str, bytes, bytearray)):
            return InvalidRequest(
                f"a header name must be str or bytes, not {type(name).__name__}: {name!r}"
            )
        if not isinstance(value, (str, bytes, bytearray)):
            shown = name.decode("latin-1") if isinstance(name, (bytes, bytearray)) else name
            return InvalidRequest(
                f"the value of header {shown!r} must be str or bytes, not "
                f"{type(value).__name__} (convert it with str())"
            )
    return InvalidRequest("a header name or value is neither str nor bytes")  # pragma: no cover


# Header values a repr never shows (credentials), as httpx hides them.
_SECRET_NAMES = frozenset({"authorization", "proxy-authorization"})


@final
class Headers:
    """An ordered list of header fields with case-insensitive lookup by name.

    * ``headers["content-type"]`` gives the value; repeated fields are joined with ``", "``.
    * ``headers.get_list("set-cookie")`` gives every value of a name, in wire order.
    * Iteration yields ``(name, value)`` pairs in wire order, repeated names kept; names
      are lowercase, as HTTP/2 sends them.
    * ``headers.raw`` is the same list as ``bytes`` pairs, exactly as received.
    """

    __slots__ = ("_decoded", "_wire")

    def __init__(
        self, fields: HeaderTypes | Iterable[tuple[str | bytes, str | bytes]] = ()
    ) -> None:
        pairs: Iterable[tuple[str | bytes, str | bytes]]
        self._wire: list[tuple[bytes, bytes]] | None = None
        if isinstance(fields, Headers):
            self._decoded: list[tuple[str, str]] | None = list(fields._fields)
            return
        pairs = fields.items() if isinstance(fields, Mapping) else fields
        try:
            self._decoded = [(_text(name).lower(), _text(value)) for name, value in pairs]
        except TypeError:
            pairs = fields.items() if isinstance(fields, Mapping) else fields
            raise _not_text(pairs) from None

    @classmethod
    def _from_wire(cls, fields: list[tuple[bytes, bytes]]) -> Headers:
        return headers_from_wire(fields)

    @property
    def _fields(self) -> list[tuple[str, str]]:
        decoded = self._decoded
        if decoded is None:
            assert self._wire is not None
            decoded = self._decoded = [
                (n.decode("latin-1"), v.decode("latin-1")) for n, v in self._wire
            ]
        return decoded

    def _has_wire_name(self, name: bytes) -> bool:
        """Whether a field ``name`` (lowercase bytes) is present, without decoding."""
        return has_wire_name(self, name)

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...
    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of ``name`` (repeats joined with ``", "``), or ``default``."""
        values = self.get_list(name)
        return ", ".join(values) if values else default

    def get_list(self, name: str) -> list[str]:
        """Every value of ``name``, in wire order."""
        key = name.lower()
        return [v for n, v in self._fields if n == key]

    def keys(self) -> list[str]:
        """The distinct names, in order of first appearance."""
        return list(dict.fromkeys(n for n, _ in self._fields))

    def items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair in wire order."""
        return list(self._fields)

    @property
    def raw(self) -> list[tuple[bytes, bytes]]:
        """Every field as ``bytes`` pairs, in wire order."""
        if self._wire is not None:
            return list(self._wire)
        try:
            return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in self._fields]
        except UnicodeEncodeError:
            raise _unencodable(self._fields) from None

    def __getitem__(self, name: str) -> str:
        values = self.get_list(name)
        if not values:
            raise KeyError(name)
        return ", ".join(values)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        return any(n == key for n, _ in self._fields)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._fields == other._fields
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = [(n, "[secure]" if n in _SECRET_NAMES else v) for n, v in self._fields]
        return f"Headers({shown!r})"


_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
# Names already seen to be valid (a bounded cache: the same few dozen names recur).
_GOOD_NAMES: set[bytes] = set()
_WHITESPACE = (0x20, 0x09)


# Header blocks (as field tuples) already found well-formed, per kind (trailers or not):
# servers repeat the same blocks, and with HPACK's cache they arrive as the same objects.
_GOOD_BLOCKS: tuple[set[tuple[tuple[bytes, bytes], ...]], ...] = (set(), set())
_GOOD_BLOCKS_MAX = 256
_GOOD_BLOCK_SIZE = 4096  # bytes of names and values: the sets hold at most 2 MiB


def headers_from_wire(fields: list[tuple[bytes, bytes]]) -> Headers:
    """[`Headers`][h2any.Headers] over fields as received (decoded to text on first use: many
    responses' headers are never looked at)."""
    headers = _new_headers(Headers)
    headers._wire = fields
    headers._decoded = None
    return headers


_new_headers = object.__new__


def has_wire_name(headers: Headers, name: bytes) -> bool:
    """Whether ``headers`` has a field ``name`` (lowercase bytes), without decoding them."""
    wire = headers._wire
    if wire is not None:
        for field_name, _ in wire:  # noqa: SIM110 (a loop: no generator per response)
            if field_name == name:
                return True
        return False
    return name.decode("latin-1") in headers


_Kept = TypeVar("_Kept")

#: How many header blocks a cache of `kept_block` holds (it is emptied when full), and the
#: largest block it keeps (bytes of names and values).
BLOCK_CACHE_LIMIT = 64
BLOCK_CACHE_BYTES = 2048


def kept_block(
    cache: dict[tuple[tuple[bytes, bytes], ...], _Kept],
    raw: list[tuple[bytes, bytes]],
    make: Callable[[list[tuple[bytes, bytes]]], _Kept],
) -> _Kept:
    """``make(raw)`` for the header block ``raw``, from ``cache`` when the same block came
    before: a client sends (and a server answers with) the same few blocks again and again.
    Only small blocks are kept, and a bounded number of them. What ``make`` returns must not
    change afterwards: one object serves every use of the block."""
    key = tuple(raw)
    kept = cache.get(key)
    if kept is None:
        kept = make(raw)
        if sum(len(name) + len(value) for name, value in raw) <= BLOCK_CACHE_BYTES:
            if len(cache) >= BLOCK_CACHE_LIMIT:
                cache.clear()
            cache[key] = kept
    return kept


def joined_cookies(fields: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``fields`` with a Cookie split into several fields (RFC 9113 section 8.2.3) made one
    field again, last (as h2 would join it: h2any turns h2's inbound normalisation off, as
    responses carry no Cookie; a pushed request may)."""
    fields = list(fields)
    cookies = [value for name, value in fields if name == b"cookie"]
    if len(cookies) < 2:
        return fields
    joined = [field for field in fields if field[0] != b"cookie"]
    joined.append((b"cookie", b"; ".join(cookies)))
    return joined


def malformed_response_fields(fields: list[tuple[bytes, bytes]], *, trailers: bool) -> str | None:
    """Why a response's (or its trailers') header block is malformed (RFC 9113 section
    8.1.1), or None when it is fine."""
    key = tuple(fields)
    good_blocks = _GOOD_BLOCKS[trailers]
    if key in good_blocks:
        return None
    problem = _malformed(fields, trailers)
    if problem is None and sum(len(n) + len(v) for n, v in fields) <= _GOOD_BLOCK_SIZE:
        if len(good_blocks) >= _GOOD_BLOCKS_MAX:
            good_blocks.clear()
        good_blocks.add(key)
    return problem


def _malformed(fields: list[tuple[bytes, bytes]], trailers: bool) -> str | None:
    status_seen = False
    regular_seen = False
    good_names = _GOOD_NAMES
    for name, value in fields:
        if name[:1] == b":":
            if trailers:
                return f"pseudo-header {name!r} in trailers"
            if regular_seen:
                return f"pseudo-header {name!r} after a regular header"
            if name != b":status":
                return f"pseudo-header {name!r} is not allowed in a response"
            if status_seen:
                return "more than one :status"
            if len(value) != 3 or not value.isdigit():
                return f":status {value!r} is not a three-digit code"
            status_seen = True
            continue
        regular_seen = True
        if name not in good_names:
            if not _FIELD_NAME.match(name):
                return f"invalid header name {name!r} (HTTP/2 names are lowercase tokens)"
            if name in _CONNECTION_SPECIFIC:
                return f"connection-specific header {name!r}"
            if name != b"te" and len(good_names) < 1024:
                good_names.add(name)
        if name == b"te" and value != b"trailers":
            return f"connection-specific header {name!r}"
        if value and (
            value[0] in _WHITESPACE
            or value[-1] in _WHITESPACE
            or b"\r" in value
            or b"\n" in value
            or b"\x00" in value
        ):
            return f"invalid value for {name!r}"
    if not trailers and not status_seen:
        return "no :status"
    return None
