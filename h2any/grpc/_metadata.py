"""gRPC metadata: what it looks like to users, and how it travels as HTTP/2 header fields.

Keys are lowercase ASCII. A key ending in ``-bin`` carries bytes, base64-encoded on the wire
(sent unpadded, accepted padded or not; several values may share one field, separated by
commas); any other key carries printable ASCII text.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator, Sequence
from typing import Union, final, overload

from .._exceptions import InvalidRequest

__all__ = ("Metadata", "MetadataTypes", "metadata_from_wire", "metadata_to_wire")

MetadataValue = Union[str, bytes]

# Fields of the transport, never metadata: the request's own (refused if a user sets them)
# and the response's (left out of what the user sees).
RESERVED_REQUEST_KEYS = frozenset(
    {
        "content-type",
        "te",
        "grpc-timeout",
        "grpc-encoding",
        "grpc-accept-encoding",
        "grpc-status",
        "grpc-message",
        "content-length",
        "host",
        "connection",
        "transfer-encoding",
    }
)
_TRANSPORT_RESPONSE_KEYS = frozenset(
    {
        b"content-type",
        b"grpc-status",
        b"grpc-message",
        b"grpc-encoding",
        b"grpc-accept-encoding",
        b"content-length",
        b"te",
    }
)
_KEY_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")


@final
class Metadata(Sequence[tuple[str, MetadataValue]]):
    """gRPC metadata: ``(key, value)`` pairs in the order they came, keys repeated as sent.

    ``metadata["key"]`` and ``metadata.get("key")`` give the first value of a key,
    `get_all` every one; iterating gives the pairs. Values of ``-bin`` keys are
    ``bytes``, the others ``str``. Compares equal to a tuple or list of the same pairs.
    """

    __slots__ = ("_pairs",)

    def __init__(self, *pairs: tuple[str, MetadataValue]) -> None:
        self._pairs: tuple[tuple[str, MetadataValue], ...] = tuple(pairs)

    @overload
    def __getitem__(self, index: int) -> tuple[str, MetadataValue]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[str, MetadataValue]]: ...
    @overload
    def __getitem__(self, index: str) -> MetadataValue: ...
    def __getitem__(
        self, index: int | slice | str
    ) -> tuple[str, MetadataValue] | Sequence[tuple[str, MetadataValue]] | MetadataValue:
        if isinstance(index, str):
            for key, value in self._pairs:
                if key == index:
                    return value
            raise KeyError(index)
        return self._pairs[index]

    def __len__(self) -> int:
        return len(self._pairs)

    def __iter__(self) -> Iterator[tuple[str, MetadataValue]]:
        return iter(self._pairs)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return any(key == item for key, _ in self._pairs)
        return item in self._pairs

    def get(self, key: str, default: MetadataValue | None = None) -> MetadataValue | None:
        """The first value of ``key``, or ``default``."""
        for name, value in self._pairs:
            if name == key:
                return value
        return default

    def get_all(self, key: str) -> list[MetadataValue]:
        """Every value of ``key``, in order (an empty list if there is none)."""
        return [value for name, value in self._pairs if name == key]

    def keys(self) -> list[str]:
        """The keys, in order, repeated as they came."""
        return [key for key, _ in self._pairs]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Metadata):
            return self._pairs == other._pairs
        if isinstance(other, (tuple, list)):
            return self._pairs == tuple(tuple(pair) for pair in other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._pairs)

    def __repr__(self) -> str:
        return f"Metadata{self._pairs!r}"


#: What ``metadata=`` takes: a `Metadata`, or ``(key, value)`` pairs.
MetadataTypes = Union[Metadata, Iterable[tuple[str, MetadataValue]]]


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidRequest(f"metadata keys are str, not {type(key).__name__}")
    lowered = key.lower()
    if not lowered or not _KEY_CHARACTERS.issuperset(lowered):
        raise InvalidRequest(
            f"metadata key {key!r}: only ASCII letters, digits, '-', '_' and '.' are allowed"
        )
    if lowered in RESERVED_REQUEST_KEYS:
        raise InvalidRequest(f"metadata key {key!r} is reserved for the gRPC transport")
    return lowered


def metadata_to_wire(metadata: MetadataTypes | None) -> list[tuple[str, str]]:
    """Header fields for the request's ``metadata``: keys lowercased and checked, ``-bin``
    values base64-encoded (unpadded).

    Raises:
        InvalidRequest: a key that is not allowed, a value of the wrong type, or a text
            value that is not printable ASCII.
    """
    if metadata is None:
        return []
    fields = []
    for pair in metadata:
        try:
            key, value = pair
        except (TypeError, ValueError):
            raise InvalidRequest(f"metadata must be (key, value) pairs, not {pair!r}") from None
        name = _check_key(key)
        if name.endswith("-bin"):
            if isinstance(value, str):
                value = value.encode()
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise InvalidRequest(f"metadata {name!r}: a -bin value is bytes")
            text = base64.b64encode(bytes(value)).decode("ascii").rstrip("=")
        else:
            if not isinstance(value, str):
                raise InvalidRequest(
                    f"metadata {name!r}: a value is str (bytes go under a key ending in -bin)"
                )
            if not all(" " <= character <= "~" for character in value):
                raise InvalidRequest(
                    f"metadata {name!r}: a text value is printable ASCII "
                    "(send anything else under a key ending in -bin)"
                )
            text = value
        fields.append((name, text))
    return fields


def _decode_binary(value: bytes) -> bytes:
    try:
        return base64.b64decode(value + b"=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return value  # not base64 after all: handed over as it came


def metadata_from_wire(fields: Iterable[tuple[bytes, bytes]]) -> Metadata:
    """The metadata in response header fields: the transport's own fields left out,
    ``-bin`` values decoded (each comma-separated value on its own)."""
    pairs: list[tuple[str, MetadataValue]] = []
    for name, value in fields:
        if name in _TRANSPORT_RESPONSE_KEYS or name.startswith(b":"):
            continue
        key = name.decode("latin-1")
        if key.endswith("-bin"):
            for part in value.split(b","):
                pairs.append((key, _decode_binary(part.strip())))
        else:
            pairs.append((key, value.decode("latin-1")))
    return Metadata(*pairs)
