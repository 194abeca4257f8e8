"""Request checks and header building: what goes into a request's HEADERS frame.

h2's own validation and normalisation of outbound headers is off (it cost ~15% of a small
request); the checks that matter are made here, once per request, in the requesting task,
so that a bad request fails with [`InvalidRequest`][h2any.InvalidRequest] before anything is sent.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final, final

from ._config import Origin, mask_url
from ._decoders import accept_encoding
from ._exceptions import InvalidRequest
from ._headers import Headers, HeaderTypes, kept_block
from ._version import __version__

__all__ = ("RequestBuilder", "check_headers", "percent_encode_non_ascii")

_TOKEN: Final = re.compile(rb"^[!#$%&'*+\-.^_`|~0-9a-z]+$")
_BAD_VALUE: Final = re.compile(rb"[\x00\r\n]|^[ \t]|[ \t]$")
_BAD_PATH: Final = re.compile(rb"[\x00-\x20\x7f]")
_NON_ASCII_BYTE: Final = re.compile(rb"[\x80-\xff]+")
# What a URL's host cannot hold (as Origin.parse refuses), for a Host header sent as
# :authority; userinfo ("@") is not allowed in :authority either (RFC 9113 section 8.3.1).
_BAD_AUTHORITY: Final = re.compile(rb"[\x00-\x20\x7f-\xff/\\?#@<>\"{}|^`]")
_CONNECTION_SPECIFIC: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
# Methods already checked, as sent (a bounded cache: the same few recur).
_GOOD_METHODS: dict[str, bytes] = {}
_SENSITIVE: Final = frozenset({b"authorization", b"proxy-authorization"})
_USER_AGENT: Final = f"h2any/{__version__}".encode()
_ACCEPT_ENCODING: Final = accept_encoding()

Fields = list[tuple[bytes, bytes]]

# A checked header block: the fields that follow the pseudo-headers, the Host header's value
# (sent as :authority) or None, the declared Content-Length or None, and whether the block
# has its own content-length, user-agent and accept-encoding.
_Block = tuple[Fields, bytes | None, int | None, bool, bool, bool]


def check_headers(headers: Headers, what: str = "header") -> Fields:
    """The fields of ``headers``, checked for HTTP/2 (RFC 9113 section 8.2).

    Raises:
        InvalidRequest: a name that is not a lowercase token, a value with CR, LF, NUL or
            surrounding whitespace, a connection-specific field, ``te`` other than trailers.
    """
    return _checked(headers.raw, what)


def _checked(raw: Fields, what: str = "header") -> Fields:
    checked: Fields = []
    for name, value in raw:
        if not _TOKEN.match(name):
            raise InvalidRequest(f"invalid {what} name {name!r}")
        if _BAD_VALUE.search(value):
            raise InvalidRequest(
                f"invalid value for {what} {name.decode()!r}: {value!r} "
                "(no CR, LF, NUL, or surrounding whitespace)"
            )
        if name in _CONNECTION_SPECIFIC:
            raise InvalidRequest(
                f"{what} {name.decode()!r} is connection-specific and not allowed in HTTP/2"
            )
        if name == b"te" and value.lower() != b"trailers":
            raise InvalidRequest('HTTP/2 allows the "te" header only with "trailers"')
        checked.append((name, value))
    return checked


def _protocol_field(method: str, protocol: str) -> bytes:
    """The checked ``:protocol`` of an extended CONNECT (RFC 8441 section 4)."""
    if method != "CONNECT":
        raise InvalidRequest(f"a :protocol ({protocol!r}) goes with the CONNECT method only")
    value = protocol.encode("ascii", "replace")
    if not _TOKEN.match(value.lower()):
        raise InvalidRequest(f"invalid :protocol {protocol!r} (a token, such as 'websocket')")
    return value


def check_trailers(trailers: HeaderTypes) -> Fields:
    """Checked trailer fields: as headers, and no pseudo-headers (RFC 9113 section 8.1)."""
    return check_headers(Headers(trailers), "trailer")


@final
class RequestBuilder:
    """Builds the checked header fields of requests to one origin."""

    __slots__ = (
        "_authority_field",
        "_blocks",
        "_default_headers",
        "_never_indexed",
        "_scheme_field",
        "origin",
    )

    def __init__(
        self,
        origin: Origin,
        default_headers: HeaderTypes | None,
        never_indexed: Callable[[bytes, bytes], tuple[bytes, bytes]],
    ) -> None:
        self.origin = origin
        self._default_headers = check_headers(Headers(default_headers or ()))
        self._scheme_field = (b":scheme", origin.scheme.encode("ascii"))
        self._authority_field = (b":authority", origin.authority.encode("ascii"))
        self._never_indexed = never_indexed
        self._blocks: dict[tuple[tuple[bytes, bytes], ...], _Block] = {}

    def fields(
        self,
        method: str,
        url: str,
        headers: HeaderTypes | None,
        body_length: int | None,
        protocol: str | None = None,
    ) -> tuple[Fields, int | None]:
        """The request's header fields, and the Content-Length the user declared (if any).

        ``protocol``: an extended CONNECT (RFC 8441 section 4): ``:method CONNECT`` with a
        ``:protocol`` pseudo-header (``"websocket"``), ``:scheme`` and ``:path`` as usual.
        A plain CONNECT (no ``protocol``; RFC 9113 section 8.5) asks for a tunnel to ``url``,
        a ``host:port``: it carries only ``:method`` and ``:authority`` (that host and port).

        Raises:
            InvalidRequest: bad method, URL, header, or a Content-Length at odds with the
                body's known length; a ``protocol`` that is not a token, or not with CONNECT.
        """
        method_bytes = _GOOD_METHODS.get(method)
        if method_bytes is None:
            method_bytes = method.encode("ascii", "replace")
            if not _TOKEN.match(method_bytes.lower()):
                raise InvalidRequest(f"invalid method {method!r}")
            if len(_GOOD_METHODS) < 64:
                _GOOD_METHODS[method] = method_bytes
        tunnel = method_bytes == b"CONNECT" and protocol is None
        if tunnel:
            fields = [(b":method", method_bytes), (b":authority", _tunnel_target(url))]
        else:
            fields = [
                (b":method", method_bytes),
                self._scheme_field,
                self._authority_field,
                (b":path", self.path_of(url)),
            ]
        if headers is None:
            raw: Fields = []
        elif isinstance(headers, Headers):
            raw = headers.raw
        else:
            raw = Headers(headers).raw
        tail, host, declared, has_length, has_agent, has_encoding = kept_block(
            self._blocks, raw, self._block
        )
        if host is not None and not tunnel:  # (a plain CONNECT's :authority is its target)
            fields[2] = (b":authority", host)
        if declared is not None and body_length is not None and declared != body_length:
            raise InvalidRequest(
                f"content-length {declared} does not match the body's {body_length} bytes"
            )
        fields.extend(tail)
        if body_length is not None and not has_length:
            fields.append((b"content-length", str(body_length).encode()))
        if not has_agent:
            fields.append((b"user-agent", _USER_AGENT))
        if not has_encoding and protocol is None and not tunnel:
            fields.append((b"accept-encoding", _ACCEPT_ENCODING))
        if protocol is not None:
            fields.insert(1, (b":protocol", _protocol_field(method, protocol)))
        return fields, declared

    def _block(self, raw: Fields) -> _Block:
        """The checked block of the user's header fields ``raw``, the defaults merged in."""
        user = _checked(raw)
        seen = {name for name, _ in user}
        for name, value in self._default_headers:
            if name not in seen:
                user.append((name, value))
                seen.add(name)
        tail: Fields = []
        host: bytes | None = None
        declared: int | None = None
        for name, value in user:
            if name == b"host":
                if not value or _BAD_AUTHORITY.search(value):
                    raise InvalidRequest(f"invalid host header {value!r}")
                host = value
            elif name == b"content-length":
                if not value.isdigit():
                    raise InvalidRequest(f"content-length must be a number, not {value!r}")
                declared = int(value)
                tail.append((name, value))
            elif name in _SENSITIVE or (name == b"cookie" and len(value) < 20):
                # Never put credentials into the peer's HPACK table (CRIME-style attacks).
                tail.append(self._never_indexed(name, value))
            else:
                tail.append((name, value))
        return (
            tail,
            host,
            declared,
            b"content-length" in seen,
            b"user-agent" in seen,
            b"accept-encoding" in seen,
        )

    def path_of(self, url: str) -> bytes:
        """The ``:path`` of ``url`` (a path, or an absolute URL on this origin)."""
        if url.startswith("/") or url == "*":
            path = url
        elif "://" in url:
            try:
                target = Origin.parse(url.split("/", 3)[0] + "//" + url.split("/", 3)[2])
            except InvalidRequest as exc:
                # With an "@" the message might quote a piece of an unencoded password.
                why = "" if "@" in url else f": {exc}"
                raise InvalidRequest(f"invalid URL {mask_url(url)!r}{why}") from None
            if target != self.origin:
                raise InvalidRequest(
                    f"URL {mask_url(url)!r} is not on this connection's origin {self.origin}"
                )
            rest = url.split("/", 3)[3] if url.count("/") >= 3 else ""
            path = "/" + rest
        else:
            raise InvalidRequest(
                f"URL {mask_url(url)!r} must be a path starting with '/' or absolute"
            )
        path = path.split("#", 1)[0]
        encoded = path.encode("ascii") if path.isascii() else percent_encode_non_ascii(path)
        if _BAD_PATH.search(encoded):
            raise InvalidRequest(f"URL path {path!r} contains whitespace or control characters")
        return encoded


def percent_encode_non_ascii(target: str) -> bytes:
    """``target`` (a path and query) with each non-ASCII character percent-encoded as UTF-8
    (``/ü`` -> ``/%C3%BC``), as browsers and httpx send it; everything else -- ``%xx``
    escapes already there included -- is kept as it is.

    A lone surrogate (no UTF-8 form) is [`InvalidRequest`][h2any.InvalidRequest]."""
    try:
        raw = target.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(
            f"URL path {target!r} has a character with no UTF-8 form (a lone surrogate)"
        ) from None
    return _NON_ASCII_BYTE.sub(_percent_escape, raw)


def _percent_escape(match: re.Match[bytes]) -> bytes:
    return b"".join(b"%%%02X" % byte for byte in match.group())


def _tunnel_target(url: str) -> bytes:
    """The ``:authority`` of a plain CONNECT: ``url`` must be ``host:port``."""
    target = url.encode("ascii", "replace")
    host, _, port = target.rpartition(b":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or _BAD_AUTHORITY.search(host):
        raise InvalidRequest(
            f"a CONNECT request names a tunnel's target as 'host:port', not {url!r} (for an "
            "extended CONNECT, such as a WebSocket, give protocol=)"
        )
    return target
