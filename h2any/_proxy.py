"""HTTP proxies: CONNECT tunnels, and the environment's proxy settings.

(Interface in place; the implementation lands with issue 11.)
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import anyio.abc

from ._config import Origin

__all__ = ("ProxyConfig", "environment_ca_bundle", "environment_proxy", "open_tunnel")


@dataclass(frozen=True)
class ProxyConfig:
    """A parsed proxy URL."""

    url: str

    @classmethod
    def parse(cls, url: str) -> ProxyConfig:
        raise NotImplementedError("proxies are not supported yet (issue 11)")


async def open_tunnel(
    proxy: ProxyConfig, target: Origin, ssl_context: ssl.SSLContext | None
) -> anyio.abc.ByteStream:
    """A byte stream to ``target`` through ``proxy`` (TLS-wrapped if ``ssl_context``)."""
    raise NotImplementedError("proxies are not supported yet (issue 11)")


def environment_proxy(origin: Origin) -> str | None:
    """The proxy URL the environment names for ``origin`` (HTTPS_PROXY, HTTP_PROXY,
    ALL_PROXY, NO_PROXY), or None."""
    return None


def environment_ca_bundle() -> str | None:
    """The CA bundle the environment names (SSL_CERT_FILE), or None."""
    return None
