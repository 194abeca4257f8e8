"""``HTTP20Adapter``: requests over h2any.

Theory of operation
===================

* **One client per TLS and proxy setting.** requests passes ``verify``, ``cert`` and the
  proxies with every request; an [`h2any.sync.Client`][h2any.sync.Client] takes them when it is
  made. So the adapter keeps a small map, ``(verify, cert, proxy) -> Client``: in practice one
  client, shared (thread-safely) by every thread of the session, holding one multiplexed
  HTTP/2 connection per origin (or kept-alive HTTP/1.1 connections for an origin without
  HTTP/2).
* **requests does the HTTP semantics**: redirects, cookies, authentication, environment
  proxies and CA bundles. The clients therefore follow no redirects, keep no cookies and read
  no environment (``trust_env=False``); the adapter only sends one request and builds
  requests' ``Response`` as ``HTTPAdapter.build_response`` does.
* **``response.raw``** is an [`H2anyRawResponse`][h2any.contrib.H2anyRawResponse]: a
  file-like object with urllib3's reading methods (``read(amt, decode_content)``,
  ``stream(amt, decode_content)``, ``release_conn()``, ``close()``), so ``iter_content``,
  ``stream=True`` and ``shutil.copyfileobj(response.raw, ...)`` work as with urllib3.
* **Errors** are requests' exception types, raised ``from`` the h2any error (its
  ``__cause__``), per the table in docs/migrating-from-hyper.md.
"""

from __future__ import annotations

import http.client
import io
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any

from requests.adapters import BaseAdapter
from requests.cookies import extract_cookies_to_jar
from requests.exceptions import (
    ChunkedEncodingError,
    ConnectTimeout,
    ContentDecodingError,
    InvalidHeader,
    InvalidSchema,
    InvalidURL,
    ReadTimeout,
    RequestException,
    SSLError,
    Timeout,
)
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import ProxyError as RequestsProxyError
from requests.models import PreparedRequest, Response
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers, select_proxy

from .._config import Timeout as H2anyTimeout
from .._exceptions import (
    ConnectionClosed,
    DecodingError,
    H2anyError,
    InvalidRequest,
    PoolTimeout,
    ProtocolError,
    StreamReset,
    TLSError,
    WriteTimeout,
)
from .._exceptions import ConnectTimeout as H2anyConnectTimeout
from .._exceptions import ProxyError as H2anyProxyError
from .._exceptions import ReadTimeout as H2anyReadTimeout
from ..sync._client import Client
from ..sync._connection import Response as SyncResponse
from ..sync._hyper import no_cookies

__all__ = ("H2anyRawResponse", "HTTP20Adapter")

# Fields of one HTTP/1.1 hop that HTTP/2 forbids; requests adds "Connection: keep-alive",
# and "Transfer-Encoding: chunked" for a generator body (h2any frames bodies itself).
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)

_HOP_BY_HOP_BYTES = frozenset(name.encode("ascii") for name in _HOP_BY_HOP)


def _latin1(value: str | bytes) -> bytes:
    """A header name or value as bytes (requests allows both; http.client sends str as
    Latin-1)."""
    return value if isinstance(value, bytes) else value.encode("latin-1")


# Options the adapter sets on its clients itself (requests' per-request arguments, or
# requests' own duties).
_RESERVED = frozenset(
    {"verify", "cert", "proxy", "timeout", "follow_redirects", "cookies", "auth", "trust_env"}
)


def _timeout(timeout: Any) -> H2anyTimeout:
    """requests' ``timeout``: ``None`` (wait forever), seconds for every wait, a
    ``(connect, read)`` tuple, or an [`h2any.Timeout`][h2any.Timeout]."""
    if isinstance(timeout, H2anyTimeout):
        return timeout
    if timeout is None:
        return H2anyTimeout(None)
    if isinstance(timeout, tuple):
        try:
            connect, read = timeout
        except ValueError:
            raise ValueError(
                f"Invalid timeout {timeout}. Pass a (connect, read) timeout tuple, "
                "or a single float to set both timeouts to the same value."
            ) from None
        # requests' read timeout is urllib3's socket timeout: it bounds every later wait.
        return H2anyTimeout(read, connect=connect)
    return H2anyTimeout(timeout)


def _body(body: Any) -> Any:
    """requests' prepared body, as h2any takes it: generators of str are encoded."""
    if body is None or isinstance(body, (bytes, bytearray, memoryview, str)):
        return body
    if callable(getattr(body, "read", None)):
        return body  # a file: streamed, in pieces
    if isinstance(body, Iterable):
        return (chunk.encode("utf-8") if isinstance(chunk, str) else chunk for chunk in body)
    return body


def _request_error(exc: H2anyError, request: PreparedRequest) -> RequestException:
    """The requests exception for an h2any error raised while sending ``request`` or waiting
    for its response headers (the caller raises it ``from exc``)."""
    message = str(exc)
    mapped: type[RequestException]
    if isinstance(exc, H2anyProxyError):
        mapped = RequestsProxyError
    elif isinstance(exc, TLSError):
        mapped = SSLError
    elif isinstance(exc, (H2anyConnectTimeout, PoolTimeout)):
        mapped = ConnectTimeout  # nothing was sent: safe to retry, as requests says
    elif isinstance(exc, H2anyReadTimeout):
        mapped = ReadTimeout
    elif isinstance(exc, WriteTimeout):
        mapped = Timeout
    elif isinstance(exc, InvalidRequest):
        lowered = message.lower()
        if "header" in lowered:
            mapped = InvalidHeader
        elif "url" in lowered or "host" in lowered or "scheme" in lowered:
            mapped = InvalidURL
        else:
            mapped = RequestException
    elif isinstance(exc, DecodingError):
        mapped = ContentDecodingError
    else:  # ConnectError, ConnectionClosed, StreamReset, ProtocolError, ...
        mapped = RequestsConnectionError
    return mapped(message, request=request)


def _body_error(exc: H2anyError) -> RequestException:
    """The requests exception for an h2any error raised while reading a body, as requests
    maps urllib3's (``Response.iter_content``)."""
    message = str(exc)
    if isinstance(exc, DecodingError):
        return ContentDecodingError(message)
    if isinstance(exc, H2anyReadTimeout):
        return RequestsConnectionError(message)  # requests: ReadTimeoutError -> ConnectionError
    if isinstance(exc, TLSError):
        return SSLError(message)
    if isinstance(exc, (StreamReset, ConnectionClosed, ProtocolError)):
        return ChunkedEncodingError(message)
    return RequestsConnectionError(message)


class _OriginalResponse:
    """What requests' cookie code reads of urllib3's ``_original_response``: ``msg``, an
    ``http.client.HTTPMessage`` of the response headers."""

    __slots__ = ("msg",)

    def __init__(self, msg: http.client.HTTPMessage) -> None:
        self.msg = msg


class H2anyRawResponse(io.IOBase):
    """``response.raw`` of a response from [`HTTP20Adapter`][h2any.contrib.HTTP20Adapter]: the
    body as a binary file, with urllib3's ``HTTPResponse`` reading methods.

    * ``read(amt=None, decode_content=False)``: up to ``amt`` bytes (all if None); as with
      urllib3 under requests, the bytes as sent unless ``decode_content=True`` (gzip,
      deflate, br, zstd). One response is read one way or the other, not both.
    * ``stream(amt=65536, decode_content=None)``: yields pieces of ``amt`` bytes (the last
      shorter; as they arrive if ``amt`` is None); what ``iter_content`` uses.
    * ``release_conn()``: nothing to give back (streams share the connection);
      ``close()`` resets the stream if the body was not read to the end.
    * ``status``, ``reason``, ``headers``, ``version`` (20 or 11, as urllib3),
      ``version_string``, ``stream_id``, ``getheader()``, ``getheaders()``.

    Reading errors are requests' exceptions (``ChunkedEncodingError``,
    ``ContentDecodingError``, ``ConnectionError``), with the h2any error as ``__cause__``.
    """

    def __init__(self, response: SyncResponse) -> None:
        super().__init__()
        self._response = response
        self.status: int = response.status
        self.reason: str = response.reason_phrase
        self.version_string: str = response.http_version
        self.version: int = 11 if response.http_version == "HTTP/1.1" else 20
        self.stream_id: int = response.stream_id
        self.decode_content = False
        fields: CaseInsensitiveDict[str] = CaseInsensitiveDict()
        msg = http.client.HTTPMessage()
        for raw_name, raw_value in response.headers.raw:
            name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
            msg[name] = value  # appends: repeated fields kept, for the cookie jar
            fields[name] = f"{fields[name]}, {value}" if name in fields else value
        self.headers = fields
        self._original_response = _OriginalResponse(msg)
        self._buffer = bytearray()
        self._chunks: Iterator[bytes] | None = None
        self._decoded: bool | None = None
        self._eof = False

    def __repr__(self) -> str:
        return f"<h2any.contrib.H2anyRawResponse [{self.status}] {self.version_string}>"

    def getheader(self, name: str, default: str | None = None) -> str | None:
        """The header's value (repeated fields joined by ``", "``), or ``default``."""
        return self.headers.get(name, default)

    def getheaders(self) -> CaseInsensitiveDict[str]:
        """The headers (as ``headers``)."""
        return self.headers

    def readable(self) -> bool:
        return True

    def isclosed(self) -> bool:
        """Whether the response is closed (read to the end, or `close`d)."""
        return self.closed

    def _next(self, decode_content: bool) -> bytes | None:
        if self._decoded is None:
            self._decoded = decode_content
            self._chunks = self._response.iter_bytes(decode_content=decode_content)
        elif self._decoded != decode_content:
            raise ValueError(
                f"this body is already being read with decode_content={self._decoded}; "
                "one response cannot mix decoded and raw reads"
            )
        if self._eof or self.closed:
            return None
        assert self._chunks is not None
        try:
            return next(self._chunks)
        except StopIteration:
            self._eof = True
            return None
        except H2anyError as exc:
            raise _body_error(exc) from exc

    def read(
        self,
        amt: int | None = None,
        decode_content: bool | None = None,
        cache_content: bool = False,
    ) -> bytes:
        """Read up to ``amt`` bytes (all that is left if None); ``b""`` at the end."""
        decode = self.decode_content if decode_content is None else decode_content
        if amt is not None and amt < 0:
            amt = None
        while amt is None or len(self._buffer) < amt:
            chunk = self._next(decode)
            if chunk is None:
                break
            self._buffer += chunk
        if amt is None:
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            data = bytes(self._buffer[:amt])
            del self._buffer[:amt]
        return data

    def readinto(self, buffer: Any) -> int:
        """``io`` protocol: read into ``buffer`` (raw bytes, as `read`)."""
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def stream(
        self, amt: int | None = 2**16, decode_content: bool | None = None
    ) -> Iterator[bytes]:
        """Yield the body in pieces of ``amt`` bytes (as they arrive if ``amt`` is None)."""
        decode = self.decode_content if decode_content is None else decode_content
        if amt is None:
            if self._buffer:
                data = bytes(self._buffer)
                self._buffer.clear()
                yield data
            while (chunk := self._next(decode)) is not None:
                if chunk:
                    yield chunk
            return
        while data := self.read(amt, decode_content=decode):
            yield data

    def __iter__(self) -> Iterator[bytes]:
        return self.stream(None)

    def release_conn(self) -> None:
        """Nothing to release: the response's stream shares its connection with others."""

    def close(self) -> None:
        """Close the body: if it was not read to the end, its stream is reset."""
        if not self.closed:
            if not self._eof:
                self._response.close()
            super().close()

    def __enter__(self) -> H2anyRawResponse:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _key(verify: Any, cert: Any, proxy: str | None) -> tuple[Any, Any, str | None]:
    if isinstance(verify, os.PathLike):
        verify = os.fspath(verify)
    if isinstance(cert, list):
        cert = tuple(cert)
    return verify, cert, proxy


class HTTP20Adapter(BaseAdapter):
    """A requests transport adapter that sends requests with h2any: HTTP/2, or HTTP/1.1 for a
    server without it.

    ```python
    session = requests.Session()
    session.mount("https://", HTTP20Adapter())
    session.mount("http://", HTTP20Adapter())
    ```

    A mounted session's requests to one origin share one multiplexed HTTP/2 connection (made
    by an [`h2any.sync.Client`][h2any.sync.Client], thread-safe: share the session between
    threads). requests' per-request ``verify``, ``cert``, ``timeout`` (seconds or
    ``(connect, read)``) and ``proxies`` apply; ``stream=True``, ``iter_content``,
    ``response.raw`` and streamed request bodies (files, generators) work as with requests'
    own adapter, and errors are requests' exceptions with the h2any error as ``__cause__``.

    Arguments:
        window_manager: hyper's argument: a
            [`BaseFlowControlManager`][h2any.BaseFlowControlManager] class for the HTTP/2
            connections.
        backend: ``"asyncio"`` or ``"trio"``, for the clients' loop threads.
        client_options: other options of [`h2any.Client`][h2any.Client]
            (``max_connections_per_origin``, ``http1``, ``keepalive_expiry``,
            ``retries``...). Not ``verify``/``cert``/``proxy``/``timeout`` (requests passes
            those per request) nor redirects, cookies, auth and ``trust_env`` (requests' own
            business).

    Close it with `close` (``session.close()`` does).
    """

    def __init__(
        self,
        window_manager: Any = None,
        *,
        backend: str = "asyncio",
        **client_options: Any,
    ) -> None:
        super().__init__()
        reserved = _RESERVED.intersection(client_options)
        if reserved:
            raise TypeError(
                f"HTTP20Adapter: {', '.join(sorted(reserved))} come from requests "
                "(per-request arguments and the Session), not from the adapter"
            )
        if window_manager is not None:
            client_options["window_manager"] = window_manager
        self.window_manager = window_manager
        self._backend = backend
        self._options = client_options
        self._lock = threading.Lock()
        self._clients: dict[tuple[Any, Any, str | None], Client] = {}

    def __repr__(self) -> str:
        return f"<h2any.contrib.HTTP20Adapter ({len(self._clients)} clients)>"

    def client(self, verify: Any = True, cert: Any = None, proxy: str | None = None) -> Client:
        """The [`h2any.sync.Client`][h2any.sync.Client] for these TLS and proxy settings,
        made on first use (thread-safe)."""
        key = _key(verify, cert, proxy)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                options: dict[str, Any] = {
                    **self._options,
                    "backend": self._backend,
                    "trust_env": False,
                    "follow_redirects": False,
                    "cookies": no_cookies(),
                    "verify": key[0],
                }
                if key[1] is not None:
                    options["cert"] = key[1]
                if proxy is not None:
                    options["proxy"] = proxy
                client = Client(**options)
                self._clients[key] = client
            return client

    def send(
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        """Send ``request`` (a requests ``PreparedRequest``) and return requests'
        ``Response``; see the class notes. The body is read by requests unless ``stream``."""
        url = request.url
        if not isinstance(url, str):
            url = url.decode("utf-8") if isinstance(url, bytes) else str(url)
        proxy = select_proxy(url, dict(proxies or {}))
        if proxy is not None:
            scheme = proxy.split("://", 1)[0].lower() if "://" in proxy else "http"
            if scheme not in ("http", "https"):
                raise InvalidSchema(
                    f"h2any supports http:// and https:// proxies, not {scheme}://",
                    request=request,
                )
            if "://" not in proxy:
                proxy = "http://" + proxy
        try:
            chosen = _timeout(timeout)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        headers = [
            (_latin1(name), _latin1(value))
            for name, value in (request.headers or {}).items()
            if _latin1(name).lower() not in _HOP_BY_HOP_BYTES
        ]
        try:
            client = self.client(verify, cert, proxy)
            response = client.request(
                request.method or "GET",
                url,
                body=_body(request.body),
                headers=headers,
                timeout=chosen,
            )
        except H2anyError as exc:
            raise _request_error(exc, request) from exc
        return self.build_response(request, H2anyRawResponse(response))

    def build_response(self, request: PreparedRequest, raw: H2anyRawResponse) -> Response:
        """requests' ``Response`` for ``raw``, filled as ``HTTPAdapter.build_response`` does:
        status, headers, encoding, reason, url, cookies, request, connection."""
        response = Response()
        response.status_code = raw.status
        response.headers = CaseInsensitiveDict(raw.headers)
        response.encoding = get_encoding_from_headers(response.headers)
        response.raw = raw
        response.reason = raw.reason
        url = request.url
        response.url = url.decode("utf-8") if isinstance(url, bytes) else (url or "")
        extract_cookies_to_jar(response.cookies, request, raw)
        response.request = request
        response.__dict__["connection"] = self  # typed HTTPAdapter in requests' stubs
        return response

    def close(self) -> None:
        """Close every client and its connections (idempotent). As with requests' own
        adapter, a later request connects again."""
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            client.close()
