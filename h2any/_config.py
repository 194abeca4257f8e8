"""Connection options: timeouts, origins, TLS contexts."""

from __future__ import annotations

import ipaddress
import os
import ssl
from dataclasses import dataclass
from typing import Any, Union
from urllib.parse import urlsplit

import certifi

from ._exceptions import InvalidRequest

__all__ = ("Origin", "RetryPolicy", "Timeout", "TimeoutTypes", "VerifyTypes", "make_ssl_context")


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


_UNSET: Any = _Unset()


@dataclass(frozen=True, init=False)
class Timeout:
    """Timeouts in seconds; ``None`` waits forever.

    ``Timeout(10)`` sets all four; keywords override one each:
    ``Timeout(10, connect=3)``.

    * ``connect``: opening TCP and TLS.
    * ``read``: the longest wait between two events of one stream (headers, a DATA frame, ...).
    * ``write``: the longest time sending may make no progress (socket or flow-control window).
    * ``pool``: the longest wait for a stream slot while the peer's MAX_CONCURRENT_STREAMS
      streams are open.
    """

    connect: float | None
    read: float | None
    write: float | None
    pool: float | None

    def __init__(
        self,
        timeout: float | None = 10.0,
        *,
        connect: float | None = _UNSET,
        read: float | None = _UNSET,
        write: float | None = _UNSET,
        pool: float | None = _UNSET,
    ) -> None:
        for name, value in (("connect", connect), ("read", read), ("write", write), ("pool", pool)):
            chosen = timeout if value is _UNSET else value
            if chosen is not None and not chosen > 0:
                raise ValueError(f"Timeout.{name} must be positive or None, not {chosen!r}")
            object.__setattr__(self, name, chosen)


@dataclass(frozen=True)
class RetryPolicy:
    """How a :class:`Client` retries requests the server never processed.

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
VerifyTypes = Union[bool, str, "os.PathLike[str]", ssl.SSLContext]


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
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise InvalidRequest(f"invalid URL {url!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise InvalidRequest(f"URL {url!r} must start with https:// or http:// (h2c)")
        host = parts.hostname
        if not host:
            raise InvalidRequest(f"URL {url!r} has no host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise InvalidRequest(
                f"a connection URL names only an origin; {url!r} has a path or query "
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

    ``verify`` is ``True`` (certifi bundle), a CA bundle path, an :class:`ssl.SSLContext`
    (used as given, with ALPN ``h2`` set on it), or ``False`` (no verification at all).
    ``cert`` is a client certificate: a PEM path holding both, or ``(certfile, keyfile)``
    or ``(certfile, keyfile, password)``.
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
        if os.path.isdir(path):
            context = ssl.create_default_context(capath=path)
        elif os.path.isfile(path):
            context = ssl.create_default_context(cafile=path)
        else:
            raise InvalidRequest(f"verify={path!r}: no such CA bundle file or directory")
    else:
        raise TypeError(f"verify must be a bool, a path or an ssl.SSLContext, not {verify!r}")
    if not isinstance(verify, ssl.SSLContext):
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        if cert is not None:
            if isinstance(cert, str):
                context.load_cert_chain(cert)
            elif len(cert) == 2:
                context.load_cert_chain(cert[0], cert[1])
            else:
                context.load_cert_chain(cert[0], cert[1], cert[2])
    context.set_alpn_protocols(["h2"])
    return context
