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

__all__ = ("Origin", "Timeout", "TimeoutTypes", "VerifyTypes", "make_ssl_context")


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
