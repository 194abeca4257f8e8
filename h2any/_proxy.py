"""HTTP proxies: CONNECT tunnels, and the environment's proxy settings.

Theory of operation
===================

* `ProxyConfig` is a parsed proxy URL, ``http://[user:password@]host[:port]`` (plain
  TCP to the proxy) or ``https://...`` (TLS to the proxy itself). The default port is the
  scheme's: 80 or 443, as in urllib3, requests and httpx. Credentials are percent-decoded;
  the password never appears in ``repr()``/``str()`` (it is masked as ``****``), and error
  messages name the proxy by scheme, host and port only.
* `open_tunnel` connects to the proxy, sends ``CONNECT host:port HTTP/1.1`` (with
  ``Proxy-Authorization: Basic`` when the URL has credentials), reads the response head
  (at most `MAX_HEAD_SIZE` bytes) and, on a 2xx, hands back the tunnel -- wrapped in TLS
  to the target when an ``ssl_context`` is given. Anything else raises
  [`ProxyError`][h2any.ProxyError]. Errors of the inner TLS handshake (to the target) are left as
  they are (``ssl.SSLError``, ``anyio.BrokenResourceError``) so the caller reports them as TLS
  errors of the target.
* `environment_proxy` and `environment_ca_bundle` read the environment the way
  curl does (see their docstrings and ``docs/proxies.md``).
"""

from __future__ import annotations

import base64
import functools
import ipaddress
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

import anyio
import anyio.abc
import certifi

from ._config import Origin, check_url_characters, mask_url
from ._exceptions import InvalidRequest, ProxyError
from ._socket import start_tls

__all__ = (
    "MAX_HEAD_SIZE",
    "ProxyConfig",
    "environment_ca_bundle",
    "environment_proxy",
    "no_proxy_matches",
    "open_tunnel",
)

MAX_HEAD_SIZE: Final = 64 * 1024  # the largest CONNECT response head accepted
_READ_SIZE: Final = 16 * 1024
_STATUS_LINE = re.compile(r"HTTP/(\d)\.(\d) (\d{3})(?: (.*))?")
_BAD_HOST = re.compile(r"[\x00-\x20\x7f/\\?#@]")


@functools.lru_cache(maxsize=1)
def _default_proxy_ssl_context() -> ssl.SSLContext:
    """The context for TLS to an ``https://`` proxy: certifi's roots, hostname checks."""
    context = ssl.create_default_context(cafile=certifi.where())
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass(frozen=True, repr=False)
class ProxyConfig:
    """A parsed proxy URL: ``http://[user:password@]host[:port]`` or ``https://...``.

    ``ssl_context`` is used for TLS to an ``https://`` proxy (by default: certifi's roots
    with hostname verification). ``repr()`` and ``str()`` mask the password.
    """

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, compare=False)
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, url: str, *, ssl_context: ssl.SSLContext | None = None) -> ProxyConfig:
        """Parse a proxy URL; [`InvalidRequest`][h2any.InvalidRequest] if it is not one (the
        message never contains the password)."""
        if not isinstance(url, str):
            raise TypeError(f"a proxy URL must be a str, not {type(url).__name__}")
        if "://" not in url:
            raise InvalidRequest(
                f"proxy URL {_mask(url)!r} has no scheme (write http://host:port or "
                "https://host:port)"
            )
        check_url_characters(url, "proxy URL")
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            if "@" in url:
                # urlsplit's message may quote part of the password: leave it out.
                raise InvalidRequest(
                    f"invalid proxy URL {_mask(url)!r} (percent-encode any / # ? @ : in its "
                    "user name or password)"
                ) from None
            raise InvalidRequest(f"invalid proxy URL {_mask(url)!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise InvalidRequest(
                f"unsupported proxy scheme {scheme!r} in {_mask(url)!r} "
                "(h2any supports http:// and https:// proxies)"
            )
        host = parts.hostname
        if not host or _BAD_HOST.search(host):
            raise InvalidRequest(f"proxy URL {_mask(url)!r} has no valid host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise InvalidRequest(f"a proxy URL names only scheme, host and port: {_mask(url)!r}")
        username = None if parts.username is None else unquote(parts.username)
        password = None if parts.password is None else unquote(parts.password)
        return cls(
            scheme,
            host,
            port or (443 if scheme == "https" else 80),
            username,
            password,
            ssl_context,
        )

    @property
    def address(self) -> str:
        """``scheme://host:port`` -- the proxy without its credentials (used in messages)."""
        return f"{self.scheme}://{_host_port(self.host, self.port)}"

    @property
    def masked_url(self) -> str:
        """The URL with the password replaced by ``****``."""
        if self.username is None:
            return self.address
        user = quote(self.username, safe="")
        userinfo = user if self.password is None else f"{user}:****"
        return f"{self.scheme}://{userinfo}@{_host_port(self.host, self.port)}"

    def authorization(self) -> str | None:
        """The ``Proxy-Authorization`` value (Basic, UTF-8) for the URL's credentials."""
        if self.username is None:
            return None
        credentials = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(credentials).decode("ascii")

    def __repr__(self) -> str:
        return f"ProxyConfig({self.masked_url!r})"

    def __str__(self) -> str:
        return self.masked_url


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _mask(url: str) -> str:
    """``url`` with any ``user:password@`` reduced to ``user:****@`` (for messages), whatever
    characters the password holds (see `mask_url`)."""
    return mask_url(url)


class _PrefixedStream(anyio.abc.ByteStream):
    """A byte stream that first returns bytes already read from ``stream``."""

    def __init__(self, stream: anyio.abc.ByteStream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self._prefix:
            data, self._prefix = self._prefix[:max_bytes], self._prefix[max_bytes:]
            return data
        return await self._stream.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self._stream.send(item)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Any]:
        return self._stream.extra_attributes


async def _connect_to_proxy(proxy: ProxyConfig) -> anyio.abc.ByteStream:
    try:
        stream: anyio.abc.ByteStream = await anyio.connect_tcp(proxy.host, proxy.port)
    except OSError as exc:
        raise ProxyError(f"could not connect to proxy {proxy.address}: {exc}") from exc
    if proxy.scheme != "https":
        return stream
    try:
        return await start_tls(
            stream, proxy.host, proxy.ssl_context or _default_proxy_ssl_context()
        )
    except BaseException as exc:
        if isinstance(exc, anyio.BrokenResourceError) and exc.__cause__ is not None:
            exc = exc.__cause__
        if isinstance(exc, (ssl.SSLError, OSError, anyio.BrokenResourceError)):
            raise ProxyError(f"TLS handshake with proxy {proxy.address} failed: {exc}") from exc
        raise


async def _read_head(stream: anyio.abc.ByteStream, proxy: ProxyConfig) -> tuple[bytes, bytes]:
    """Read one response head (through its blank line); return it and any bytes after it."""
    buffer = bytearray()
    while True:
        ends = [
            (index, len(sep)) for sep in (b"\r\n\r\n", b"\n\n") if (index := buffer.find(sep)) != -1
        ]
        if ends:
            index, length = min(ends)
            if index + length > MAX_HEAD_SIZE:
                break
            return bytes(buffer[:index]), bytes(buffer[index + length :])
        if len(buffer) > MAX_HEAD_SIZE:
            break
        try:
            data = await stream.receive(_READ_SIZE)
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError) as exc:
            if buffer:
                what = f"closed the connection in the middle of its answer ({_excerpt(buffer)})"
            else:
                what = "closed the connection without answering the CONNECT request"
            if not isinstance(exc, anyio.EndOfStream):
                what += f": {exc.__cause__ or exc}"
            raise ProxyError(f"proxy {proxy.address} {what}") from None
        buffer += data
        if not buffer.startswith(b"HTTP/"[: len(buffer)]):
            raise ProxyError(f"proxy {proxy.address} did not answer with HTTP: {_excerpt(buffer)}")
    raise ProxyError(
        f"proxy {proxy.address} sent a response head larger than {MAX_HEAD_SIZE} bytes"
    )


def _excerpt(data: bytes | bytearray, limit: int = 80) -> str:
    text = repr(bytes(data[:limit]))
    return text + ("..." if len(data) > limit else "")


def _parse_head(head: bytes, proxy: ProxyConfig) -> tuple[int, str, str, list[str]]:
    """Status, reason, status line and ``Proxy-Authenticate`` values of a response head."""
    lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
    status_line = lines[0].rstrip("\r")
    match = _STATUS_LINE.fullmatch(status_line)
    if match is None:
        raise ProxyError(
            f"proxy {proxy.address} answered with an invalid status line: {status_line[:80]!r}"
        )
    status = int(match.group(3))
    reason = (match.group(4) or "").strip()
    challenges = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon and name.strip().lower() == "proxy-authenticate":
            challenges.append(value.strip())
    return status, reason, status_line, challenges


async def _handshake(
    stream: anyio.abc.ByteStream, proxy: ProxyConfig, target: Origin
) -> anyio.abc.ByteStream:
    """Send CONNECT and read the answer; return the tunnel (any bytes the proxy sent after
    its head are returned by it first -- nothing should come before our ClientHello or h2
    preface, but nothing is lost if something does)."""
    from ._version import __version__

    if _BAD_HOST.search(target.host):
        raise InvalidRequest(f"cannot tunnel to host {target.host!r}")
    authority = _host_port(target.host, target.port)
    lines = [
        f"CONNECT {authority} HTTP/1.1",
        f"Host: {authority}",
        f"User-Agent: h2any/{__version__}",
    ]
    authorization = proxy.authorization()
    if authorization is not None:
        lines.append(f"Proxy-Authorization: {authorization}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
    try:
        await stream.send(request)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
        raise ProxyError(
            f"proxy {proxy.address} closed the connection before the CONNECT request "
            f"was sent: {exc.__cause__ or exc}"
        ) from None
    while True:
        head, rest = await _read_head(stream, proxy)
        status, reason, status_line, challenges = _parse_head(head, proxy)
        if rest:
            stream = _PrefixedStream(stream, rest)
        if 100 <= status < 200:
            continue  # an interim response (100 Continue...): the real one follows
        if 200 <= status < 300:
            return stream
        challenge = ", ".join(challenges) or None
        message = f"proxy {proxy.address} refused CONNECT {authority}: {status_line}"
        if challenge:
            message += f" (it asks for: {challenge})"
        if status in (401, 407):
            # 407 is the proxy's "authenticate first"; some proxies (tinyproxy) answer wrong
            # credentials with 401.
            if proxy.username is not None:
                message += "; the credentials in the proxy URL were not accepted"
            else:
                message += "; the proxy URL has no credentials (http://user:password@host)"
        raise ProxyError(message, status=status, reason=reason, proxy_authenticate=challenge)


async def open_tunnel(
    proxy: ProxyConfig, target: Origin, ssl_context: ssl.SSLContext | None
) -> anyio.abc.ByteStream:
    """A byte stream to ``target`` through ``proxy`` (TLS-wrapped if ``ssl_context``).

    Raises [`ProxyError`][h2any.ProxyError] when the proxy cannot be reached, refuses the CONNECT
    request (``status``, ``reason`` and, for 407, ``proxy_authenticate`` are set), closes the
    connection or answers something that is not HTTP. Errors of the TLS handshake with the
    target propagate as ``ssl.SSLError`` or ``anyio.BrokenResourceError``. Apply a timeout
    around the call (the connection does: ``Timeout.connect``).
    """
    stream = await _connect_to_proxy(proxy)
    try:
        stream = await _handshake(stream, proxy, target)
        if ssl_context is not None:
            stream = await start_tls(stream, target.host, ssl_context)
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise
    return stream


# -- the environment ----------------------------------------------------------------------


def _getenv(environ: Mapping[str, str], name: str) -> str | None:
    """``name`` in lowercase if set (even empty: curl's rule), else in uppercase."""
    value = environ.get(name.lower())
    if value is None:
        value = environ.get(name.upper())
    return value


def environment_proxy(origin: Origin, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy URL the environment names for ``origin``, or None.

    ``https_proxy`` for https targets, ``http_proxy`` for http (h2c) targets, else
    ``all_proxy``; each in lowercase, or in uppercase if the lowercase one is unset
    (uppercase ``HTTP_PROXY`` is ignored under CGI, when ``REQUEST_METHOD`` is set:
    "httpoxy"). A variable that is set but empty means no proxy. A value without a scheme
    is taken as ``http://``. ``no_proxy`` (see `no_proxy_matches`) lists targets
    reached directly.
    """
    env = os.environ if environ is None else environ
    no_proxy = _getenv(env, "no_proxy")
    if no_proxy and no_proxy_matches(origin.host, origin.port, no_proxy):
        return None
    name = f"{origin.scheme}_proxy"
    value = env.get(name)
    if value is None and not (name == "http_proxy" and "REQUEST_METHOD" in env):
        value = env.get(name.upper())
    if value is None:
        value = _getenv(env, "all_proxy")
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    return value if "://" in value else f"http://{value}"


def _normalize_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def _split_entry(entry: str) -> tuple[str, int | None]:
    """``host[:port]``, ``[v6][:port]``, a bare IPv6 address or a CIDR range."""
    port: int | None = None
    if entry.startswith("["):
        host, _bracket, rest = entry[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        return host, port
    if entry.count(":") == 1:
        host, _colon, port_text = entry.partition(":")
        if port_text.isdigit():
            port = int(port_text)
        return host, port
    return entry, None


def no_proxy_matches(host: str, port: int, no_proxy: str) -> bool:
    """Does the ``no_proxy`` list exempt ``host:port`` from the proxy?

    Entries are separated by commas (or spaces). ``*`` matches everything. A domain, with or
    without a leading dot (or ``*.``), matches itself and every name under it:
    ``example.com`` and ``.example.com`` both match ``example.com`` and ``a.example.com``,
    not ``badexample.com``. An IP address matches that address, a CIDR range
    (``10.0.0.0/8``, ``fd00::/8``) every address in it -- only for targets given as IP
    addresses (names are not resolved). An entry may end in ``:port`` (IPv6 in brackets:
    ``[::1]:8080``) to match that port only. Matching ignores case and trailing dots.
    """
    target = _normalize_host(host)
    try:
        target_ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(
            target
        )
    except ValueError:
        target_ip = None
    for raw in re.split(r"[,\s]+", no_proxy):
        entry = raw.strip()
        if not entry:
            continue
        if entry == "*":
            return True
        name, entry_port = _split_entry(entry)
        if entry_port is not None and entry_port != port:
            continue
        name = _normalize_host(name)
        if "/" in name:
            if target_ip is None:
                continue
            try:
                network = ipaddress.ip_network(name, strict=False)
            except ValueError:
                continue
            if target_ip.version == network.version and target_ip in network:
                return True
            continue
        try:
            entry_ip = ipaddress.ip_address(name)
        except ValueError:
            entry_ip = None
        if entry_ip is not None or target_ip is not None:
            if entry_ip is not None and entry_ip == target_ip:
                return True
            continue
        name = name.removeprefix("*").lstrip(".")
        if name and (target == name or target.endswith("." + name)):
            return True
    return False


def environment_ca_bundle(environ: Mapping[str, str] | None = None) -> str | None:
    """The CA bundle the environment names: ``SSL_CERT_FILE`` if it names an existing file
    (OpenSSL's variable; the name is case-sensitive), else None."""
    env = os.environ if environ is None else environ
    cert_file = env.get("SSL_CERT_FILE")
    if cert_file and os.path.isfile(cert_file):
        return cert_file
    return None
