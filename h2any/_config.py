"""Connection options: timeouts, origins, TLS contexts."""

from __future__ import annotations

import ipaddress
import os
import re
import ssl
from dataclasses import dataclass
from typing import Any, Union, final
from urllib.parse import urlsplit

import certifi

from ._exceptions import InvalidRequest, TLSError

__all__ = (
    "Origin",
    "RetryPolicy",
    "Timeout",
    "TimeoutTypes",
    "VerifyTypes",
    "check_url_characters",
    "idna_host",
    "make_ssl_context",
    "mask_url",
)

# Control characters: urlsplit silently strips tab, CR and LF (WHATWG), which would send
# another path or host than the caller wrote; the others have no place in a URL either.
# (A space is refused later, in a host or a path, where it matters: a password may hold one.)
_BAD_URL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
# What cannot be in a host name (RFC 3986 reg-name, loosely), checked after urlsplit.
_BAD_HOST_CHARACTER = re.compile(r"[\x00-\x20\x7f/\\?#@<>\"{}|^`]")


def mask_url(url: str) -> str:
    """``url`` with its password (or anything that might be one) replaced by ``****``.

    For messages and reprs. A password may hold characters the caller did not
    percent-encode (``/``, ``#``, ``?``, ``@``, ...), so the authority is not taken to end at
    the first ``/``: everything before the *last* ``@`` counts as user information. Only the
    user name before the first ``:`` is kept, and not even that when it holds a ``/``, ``?``
    or ``#`` (then it was not a user name). Errs on masking too much.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    userinfo, at, after = rest.rpartition("@")
    if not at:
        return url
    user, colon, _password = userinfo.partition(":")
    if any(char in user for char in "/?#"):
        masked = "****@"
    else:
        masked = f"{user}:****@" if colon else f"{user}@"
    return f"{scheme}{sep}{masked}{after}"


def check_url_characters(url: str, what: str = "URL") -> None:
    """Raise [`InvalidRequest`][h2any.InvalidRequest] if ``url`` holds control characters (tab, CR,
    LF, ...)."""
    if _BAD_URL_CHARACTER.search(url):
        raise InvalidRequest(
            f"{what} {mask_url(url)!r} contains control characters (percent-encode them)"
        )


def idna_host(host: str, shown: str) -> str:
    """The ASCII form of an international host name (``bücher.example`` ->
    ``xn--bcher-kva.example``): IDNA 2008 with the UTS #46 mapping (case folding, full-width
    forms), as browsers and httpx do. [`InvalidRequest`][h2any.InvalidRequest] naming ``shown``
    (the URL, masked) if it has no such form."""
    import idna  # anyio's own dependency; imported when a non-ASCII host first appears

    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError) as exc:
        raise InvalidRequest(
            f"URL {shown!r} has a host name that cannot be encoded (IDNA): {host!r} ({exc})"
        ) from None


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


_UNSET: Any = _Unset()


@dataclass(frozen=True, init=False)
class Timeout:
    """Timeouts in seconds; ``None`` waits forever.

    ``Timeout(10)`` sets the four waits; keywords override one each:
    ``Timeout(10, connect=3)``. ``total`` is separate (``Timeout(10, total=30)``):

    * ``connect``: opening TCP and TLS.
    * ``read``: the longest wait between two events of one stream (headers, a DATA frame, ...).
    * ``write``: the longest time sending may make no progress (socket or flow-control window).
    * ``pool``: the longest wait for a stream slot while the peer's MAX_CONCURRENT_STREAMS
      streams are open.
    * ``total``: the whole exchange, from the call that sends the request to the end of its
      response body (with a [`Client`][h2any.Client]: opening the connection and retries
      included). A server that trickles its answer -- a byte now and then, each wait within
      ``read`` -- is still cut off here. Default ``None``: no overall deadline. When it
      passes, the wait that was running raises its own error (`PoolTimeout`,
      `WriteTimeout` or `ReadTimeout`, the message naming the total) and the stream is
      reset.
    """

    connect: float | None
    read: float | None
    write: float | None
    pool: float | None
    total: float | None

    def __init__(
        self,
        timeout: float | None = 10.0,
        *,
        connect: float | None = _UNSET,
        read: float | None = _UNSET,
        write: float | None = _UNSET,
        pool: float | None = _UNSET,
        total: float | None = None,
    ) -> None:
        for name, value in (("connect", connect), ("read", read), ("write", write), ("pool", pool)):
            chosen = timeout if value is _UNSET else value
            if chosen is not None and not chosen > 0:
                raise ValueError(f"Timeout.{name} must be positive or None, not {chosen!r}")
            object.__setattr__(self, name, chosen)
        if total is not None and not total > 0:
            raise ValueError(f"Timeout.total must be positive or None, not {total!r}")
        object.__setattr__(self, "total", total)


@final
@dataclass(frozen=True)
class RetryPolicy:
    """How a [`Client`][h2any.Client] retries requests the server never processed.

    Requests refused with REFUSED_STREAM or cut off above a GOAWAY's ``last_stream_id`` are
    sent again, at most ``max_attempts`` times in all (the first try included), and only
    within the Client's ``retry_timeout``. Before each retry the client waits an
    exponentially growing delay with jitter: before retry *n* (1, 2, ...) a random time
    between half and all of ``min(max_backoff, backoff * 2 ** (n - 1))``.

    A graceful GOAWAY (``NO_ERROR``) with ``last_stream_id`` above 0 -- a server that served
    streams on the connection and now rotates or shuts it down -- is everyday traffic: the
    requests it turned away are retried at once, and that retry is not counted.

    A server that answers with ENHANCE_YOUR_CALM (in GOAWAY or RST_STREAM) is not retried
    at all: the error is raised at once.

    Arguments:
        max_attempts: tries per request, the first included (1: never retry).
        backoff: the delay before the first retry that waits, in seconds; doubled each time.
        max_backoff: the largest delay between two tries, in seconds.

    Raises:
        ValueError: ``max_attempts`` below 1, or a negative delay.
    """

    max_attempts: int = 5
    backoff: float = 0.05
    max_backoff: float = 2.0

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ValueError(
                f"RetryPolicy.max_attempts must be at least 1, not {self.max_attempts!r}"
            )
        if not self.backoff >= 0 or not self.max_backoff >= 0:
            raise ValueError("RetryPolicy.backoff and max_backoff must not be negative")

    def delay(self, retry: int, random: float) -> float:
        """The wait before retry number ``retry`` (1 for the first), for ``random`` in [0, 1)."""
        ceiling = min(self.max_backoff, self.backoff * 2.0 ** min(retry - 1, 60))
        return ceiling * (0.5 + 0.5 * random)


TimeoutTypes = Union[Timeout, float, None]
VerifyTypes = Union[bool, str, os.PathLike[str], ssl.SSLContext]


def as_timeout(timeout: TimeoutTypes) -> Timeout:
    if isinstance(timeout, Timeout):
        return timeout
    return Timeout(timeout)


@dataclass(frozen=True)
class Origin:
    """Scheme, host and port of a connection, parsed from its URL."""

    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str) -> Origin:
        """The origin of ``url``; [`InvalidRequest`][h2any.InvalidRequest] if it is not a valid one
        (messages never hold the URL's password)."""
        check_url_characters(url)
        shown = mask_url(url)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            if "@" in url:
                # urlsplit's message may quote part of the password: leave it out.
                raise InvalidRequest(
                    f"invalid URL {shown!r} (percent-encode any / # ? @ : in its user name "
                    "or password)"
                ) from None
            raise InvalidRequest(f"invalid URL {shown!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise InvalidRequest(f"URL {shown!r} must start with https:// or http:// (h2c)")
        host = parts.hostname
        if not host:
            raise InvalidRequest(f"URL {shown!r} has no host")
        if _BAD_HOST_CHARACTER.search(host):
            raise InvalidRequest(f"URL {shown!r} has an invalid host {host!r}")
        if not host.isascii():
            host = idna_host(host, shown)
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise InvalidRequest(
                f"a connection URL names only an origin; {shown!r} has a path or query "
                "(pass the path to request())"
            )
        return cls(scheme, host, port or (443 if scheme == "https" else 80))

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.authority}"


def make_ssl_context(
    verify: VerifyTypes, cert: str | tuple[str, str] | tuple[str, str, str] | None = None
) -> ssl.SSLContext:
    """Build the client TLS context: certifi roots and hostname checks unless told otherwise.

    ``verify`` is ``True`` (certifi bundle), a CA bundle path, an `ssl.SSLContext`
    (used as given, with ALPN ``h2`` set on it), or ``False`` (no verification at all).
    ``cert`` is a client certificate: a PEM path holding both, or ``(certfile, keyfile)``
    or ``(certfile, keyfile, password)``.

    Raises:
        InvalidRequest: a ``verify`` or ``cert`` path that does not exist.
        TLSError: a CA bundle or client certificate that does not load (not PEM, a key at
            odds with its certificate, a wrong key password); the message names the file.
    """
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif verify is False:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif verify is True:
        context = ssl.create_default_context(cafile=certifi.where())
    elif isinstance(verify, (str, os.PathLike)):
        path = os.fspath(verify)
        try:
            if os.path.isdir(path):
                context = ssl.create_default_context(capath=path)
            elif os.path.isfile(path):
                context = ssl.create_default_context(cafile=path)
            else:
                raise InvalidRequest(f"verify={path!r}: no such CA bundle file or directory")
        except (OSError, ssl.SSLError) as exc:
            raise TLSError(f"verify={path!r}: cannot load the CA bundle: {_reason(exc)}") from exc
    else:
        raise TypeError(f"verify must be a bool, a path or an ssl.SSLContext, not {verify!r}")
    if not isinstance(verify, ssl.SSLContext):
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert is not None:
            _load_client_certificate(context, cert)
    context.set_alpn_protocols(["h2"])
    return context


def _reason(exc: BaseException) -> str:
    """What went wrong loading a file, without echoing file contents or passwords."""
    if isinstance(exc, ssl.SSLError):
        return exc.reason or exc.__class__.__name__
    if isinstance(exc, OSError):
        return exc.strerror or exc.__class__.__name__
    return exc.__class__.__name__


def _load_client_certificate(
    context: ssl.SSLContext, cert: str | tuple[str, str] | tuple[str, str, str]
) -> None:
    """``load_cert_chain`` with typed errors naming the files (never the key's password):
    [`InvalidRequest`][h2any.InvalidRequest] for a file that does not exist,
    [`TLSError`][h2any.TLSError] for one that does not load (not PEM, key and certificate at odds,
    wrong password)."""
    if isinstance(cert, (str, os.PathLike)):
        files: tuple[str, ...] = (os.fspath(cert),)
        password = None
    elif isinstance(cert, tuple) and len(cert) in (2, 3):
        files = (os.fspath(cert[0]), os.fspath(cert[1]))
        password = cert[2] if len(cert) == 3 else None
    else:
        raise TypeError(
            "cert must be a PEM path, (certfile, keyfile) or (certfile, keyfile, password)"
        )
    named = " and ".join(repr(name) for name in files)
    for name in files:
        if not os.path.isfile(name):
            raise InvalidRequest(f"cert: no such certificate or key file {name!r}")
    try:
        context.load_cert_chain(files[0], files[1] if len(files) == 2 else None, password)
    except (OSError, ssl.SSLError) as exc:
        raise TLSError(
            f"cert: cannot load the client certificate from {named}: {_reason(exc)} "
            "(a PEM certificate and its private key, the key's password if it has one)"
        ) from exc
