"""Cookies: a jar per [`Client`][h2any.Client], on the standard library's ``http.cookiejar``.

``http.cookiejar.CookieJar`` with its ``DefaultCookiePolicy`` applies the rules of RFC 6265
as browsers do: a cookie without ``Domain`` goes back only to the host that set it, one with
``Domain`` to that domain and its subdomains (and only if the setting host is inside it),
``Path`` prefixes, ``Secure`` cookies only over https, ``Expires``/``Max-Age`` honoured (an
expired cookie deletes the one it names). The jar speaks ``urllib.request``'s objects; the two
adapters below let it read h2any's requests and responses instead.

# Bounded memory: a server can set many cookies, one response after another. Each response's
# Set-Cookie fields are already bounded by the header size limit; the jar itself is capped at
# MAX_COOKIES_PER_DOMAIN per domain and MAX_COOKIES in all (as browsers: 180 and 3000), the
# oldest dropped first.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from http.cookiejar import Cookie, CookieJar
from typing import Union, final

from ._headers import Headers

__all__ = ("CookieTypes", "Cookies", "cookie_header", "store_cookies")

MAX_COOKIES_PER_DOMAIN = 180
MAX_COOKIES = 3000


@final
class Cookies(MutableMapping[str, str]):
    """A cookie jar: ``http.cookiejar.CookieJar`` (in ``jar``) with a dict-like face.

    ``cookies["name"]`` is the value of the cookie of that name (an error if several domains
    or paths hold one: use `get` with ``domain=``/``path=``); `set` adds one. Iterating gives
    cookie names. [`Client.cookies`][h2any.Client.cookies] is one of these.
    """

    def __init__(self, cookies: CookieTypes | None = None) -> None:
        self.jar: CookieJar
        if isinstance(cookies, Cookies):
            self.jar = cookies.jar
        elif isinstance(cookies, CookieJar):
            self.jar = cookies
        else:
            self.jar = CookieJar()
            if cookies is not None:
                pairs = cookies.items() if isinstance(cookies, Mapping) else cookies
                for name, value in pairs:
                    self.set(name, value)

    def set(self, name: str, value: str, domain: str = "", path: str = "/") -> None:
        """Add a cookie. Without ``domain`` it is sent to every host (as httpx does for the
        cookies you set yourself); with one, to that host and its subdomains."""
        cookie = Cookie(
            version=0,
            name=name,
            value=value,
            port=None,
            port_specified=False,
            domain=domain,
            domain_specified=bool(domain),
            domain_initial_dot=domain.startswith("."),
            path=path,
            path_specified=bool(path),
            secure=False,
            expires=None,
            discard=True,
            comment=None,
            comment_url=None,
            rest={},
            rfc2109=False,
        )
        self.jar.set_cookie(cookie)

    def get(  # type: ignore[override]
        self,
        name: str,
        default: str | None = None,
        domain: str | None = None,
        path: str | None = None,
    ) -> str | None:
        """The value of cookie ``name`` (optionally only from ``domain``/``path``), or
        ``default``. Raises ``KeyError`` if several cookies match."""
        found: str | None = None
        for cookie in self.jar:
            if cookie.name != name:
                continue
            if domain is not None and cookie.domain != domain:
                continue
            if path is not None and cookie.path != path:
                continue
            if found is not None:
                raise KeyError(f"several cookies are named {name!r}: give domain= or path=")
            found = cookie.value if cookie.value is not None else ""
        return default if found is None else found

    def delete(self, name: str, domain: str | None = None, path: str | None = None) -> None:
        """Remove the cookies named ``name`` (optionally only from ``domain``/``path``)."""
        doomed = [
            cookie
            for cookie in self.jar
            if cookie.name == name
            and (domain is None or cookie.domain == domain)
            and (path is None or cookie.path == path)
        ]
        for cookie in doomed:
            self.jar.clear(cookie.domain, cookie.path, cookie.name)

    def clear(self, domain: str | None = None, path: str | None = None) -> None:
        """Remove every cookie (or those of ``domain``, or of ``domain`` and ``path``)."""
        self.jar.clear(domain, path)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        if self.get(name) is None:
            raise KeyError(name)
        self.delete(name)

    def __iter__(self) -> Iterator[str]:
        return (cookie.name for cookie in self.jar)

    def __len__(self) -> int:
        return len(self.jar)

    def __bool__(self) -> bool:
        return len(self.jar) > 0

    def __repr__(self) -> str:
        # Names and domains only: cookie values are often credentials.
        shown = ", ".join(f"{c.name}@{c.domain or '*'}{c.path}" for c in self.jar)
        return f"<Cookies [{shown}]>"


#: What ``cookies=`` takes: a [`Cookies`][h2any.Cookies], an ``http.cookiejar.CookieJar``, a
#: mapping of names to values, or a sequence of ``(name, value)`` pairs.
CookieTypes = Union[Cookies, CookieJar, Mapping[str, str], Sequence[tuple[str, str]]]


class _JarRequest(urllib.request.Request):
    """What ``CookieJar`` asks of a request (as ``urllib.request.Request``), for one of ours."""

    def __init__(self, method: str, url: str, headers: Headers) -> None:
        super().__init__(url=url, method=method)
        for name, value in headers:
            # Only the fields the jar looks at; header_items() keeps no secrets then.
            if name in ("host", "cookie"):
                self.add_unredirected_header(name.capitalize(), value)
        self.cookie: str | None = None

    def add_unredirected_header(self, key: str, val: str) -> None:
        super().add_unredirected_header(key, val)
        if key.lower() == "cookie":
            self.cookie = val


class _JarResponse:
    """What ``CookieJar.extract_cookies`` asks of a response: ``info().get_all(name)``."""

    def __init__(self, headers: Headers) -> None:
        self._headers = headers

    def info(self) -> _JarResponse:
        return self

    def get_all(self, name: str, default: list[str] | None = None) -> list[str] | None:
        values = self._headers.get_list(name)
        return values or default


def cookie_header(
    jar: CookieJar, method: str, url: str, headers: Headers, extra: Cookies | None
) -> str | None:
    """The Cookie header for a request to ``url``: the jar's cookies that match it (and
    ``extra``, the request's own cookies, which win by name); ``None`` if there are none or
    the request carries its own Cookie header."""
    if "cookie" in headers or (extra is None and next(iter(jar), None) is None):
        return None  # the common case costs no urllib request
    request = _JarRequest(method, url, headers)
    jar.add_cookie_header(request)
    pairs: list[str] = []
    own: set[str] = set()
    if extra is not None:
        for cookie in extra.jar:
            own.add(cookie.name)
            pairs.append(f"{cookie.name}={cookie.value or ''}")
    if request.cookie:
        pairs[:0] = [
            pair for pair in request.cookie.split("; ") if pair.split("=", 1)[0] not in own
        ]
    return "; ".join(pairs) or None


def store_cookies(jar: CookieJar, method: str, url: str, response_headers: Headers) -> None:
    """Store the Set-Cookie fields of a response to a request for ``url`` (the jar's rules
    decide which are accepted), then enforce the jar's size caps."""
    if "set-cookie" not in response_headers:
        return
    request = _JarRequest(method, url, Headers())
    jar.extract_cookies(_JarResponse(response_headers), request)  # type: ignore[arg-type]
    _enforce_caps(jar)


def _enforce_caps(jar: CookieJar) -> None:
    cookies = list(jar)
    if len(cookies) <= MAX_COOKIES_PER_DOMAIN:
        return
    jar.clear_expired_cookies()
    by_domain: dict[str, list[Cookie]] = {}
    for cookie in jar:
        by_domain.setdefault(cookie.domain, []).append(cookie)
    doomed: list[Cookie] = []
    for domain_cookies in by_domain.values():
        # CookieJar iterates in insertion order within a domain: the oldest come first.
        doomed += domain_cookies[: max(0, len(domain_cookies) - MAX_COOKIES_PER_DOMAIN)]
    kept = [cookie for cookie in jar if cookie not in doomed]
    doomed += kept[: max(0, len(kept) - MAX_COOKIES)]
    for cookie in doomed:
        try:
            jar.clear(cookie.domain, cookie.path, cookie.name)
        except KeyError:
            pass
