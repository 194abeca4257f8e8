"""``Request``: what was sent -- method, URL and headers -- as a response remembers it."""

from __future__ import annotations

from base64 import b64encode
from typing import final

from ._config import mask_url
from ._headers import Headers, HeaderTypes, headers_from_wire

__all__ = ("Request", "basic_authorization", "request_from_fields")


@final
class Request:
    """A request as sent: its method, full URL and headers.

    [`Response.request`][h2any.Response.request] gives the one that produced a response (and
    [`HTTPStatusError.request`][h2any.HTTPStatusError] the one that failed). Its repr never shows
    a password in the URL; [`Headers`][h2any.Headers] hide ``authorization`` values in theirs.

    Arguments:
        method: the method, upper-cased (``"GET"``).
        url: the absolute URL (``"https://example.org/path?query"``).
        headers: the request's headers, as a [`Headers`][h2any.Headers] or anything it takes.
    """

    __slots__ = ("headers", "method", "url")

    def __init__(self, method: str, url: str, *, headers: HeaderTypes | None = None) -> None:
        self.method: str = method.upper()
        self.url: str = url
        self.headers: Headers = headers if isinstance(headers, Headers) else Headers(headers or ())

    def __repr__(self) -> str:
        return f"<Request({self.method!r}, {mask_url(self.url)!r})>"


def request_from_fields(fields: list[tuple[bytes, bytes]]) -> Request:
    """The [`Request`][h2any.Request] of a request's HEADERS fields (pseudo-headers first, as
    ``_request.RequestBuilder`` builds them); ``:authority`` never holds user information."""
    method = scheme = authority = path = ""
    regular: list[tuple[bytes, bytes]] = []
    for name, value in fields:
        if name[:1] == b":":
            text = value.decode("latin-1")
            if name == b":method":
                method = text
            elif name == b":scheme":
                scheme = text
            elif name == b":authority":
                authority = text
            elif name == b":path":
                path = text
        else:
            regular.append((bytes(name), bytes(value)))
    request = Request.__new__(Request)
    request.method = method
    request.url = f"{scheme}://{authority}{path if path != '*' else ''}"
    request.headers = headers_from_wire(regular)
    return request


def basic_authorization(username: str, password: str) -> bytes:
    """The ``authorization`` value of HTTP Basic auth (RFC 7617) for ``username`` and
    ``password``, each encoded as UTF-8."""
    token = b64encode(f"{username}:{password}".encode())
    return b"Basic " + token
