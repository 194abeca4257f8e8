"""Every error h2any raises, under one base class.

Errors from ``h2``, ``ssl``, ``OSError`` and anyio are translated at the boundary (the
connection task and the public methods); the original is kept as ``__cause__``.
"""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._models import Request

__all__ = (
    "BodyNotReplayable",
    "ConnectError",
    "ConnectTimeout",
    "ConnectionClosed",
    "ConnectionTerminated",
    "DecodingError",
    "FlowControlError",
    "H2anyError",
    "HTTPStatusError",
    "HTTPVersionError",
    "InvalidRequest",
    "PoolTimeout",
    "ProtocolError",
    "ProxyError",
    "ReadTimeout",
    "StreamReset",
    "TLSError",
    "TimeoutError",
    "TooManyRedirects",
    "WriteTimeout",
    "clone_error",
)


_REFUSED_STREAM = 0x7
_ENHANCE_YOUR_CALM = 0xB


def error_code_name(error_code: int) -> str:
    """The RFC 9113 name of an HTTP/2 error code, or its number when unknown."""
    from h2.errors import ErrorCodes

    try:
        return ErrorCodes(error_code).name
    except ValueError:
        return f"unknown error code {error_code:#x}"


class H2anyError(Exception):
    """Base class of every error raised by h2any."""


class ConnectError(H2anyError):
    """The connection could not be established (DNS, TCP, or the peer refused HTTP/2)."""


class TLSError(ConnectError):
    """The TLS handshake failed: certificate verification, protocol, or ALPN."""


class TimeoutError(H2anyError, builtins.TimeoutError):
    """Base class of the timeout errors; also a `builtins.TimeoutError`."""


class ConnectTimeout(TimeoutError):
    """Opening the connection (TCP and TLS) took longer than ``Timeout.connect``."""


class ReadTimeout(TimeoutError):
    """No event arrived on a stream within ``Timeout.read``."""


class WriteTimeout(TimeoutError):
    """Sending made no progress within ``Timeout.write`` (socket or flow-control window)."""


class PoolTimeout(TimeoutError):
    """No stream slot became free within ``Timeout.pool`` (peer's MAX_CONCURRENT_STREAMS)."""


class InvalidRequest(H2anyError, ValueError):
    """The request could not be sent as given: a bad header, method, URL or body."""


class TooManyRedirects(H2anyError):
    """A request was redirected more than the [`Client`][h2any.Client]'s ``max_redirects``
    times. ``request`` is the [`Request`][h2any.Request] that drew the last redirect; the
    message names its URL (never the URL's credentials)."""

    def __init__(self, message: str, *, request: Request | None = None) -> None:
        super().__init__(message)
        self.request = request


class BodyNotReplayable(H2anyError):
    """A request must be sent again -- to follow a 307/308 redirect, or to answer an
    authentication challenge -- but its body was a one-shot source (an iterator, a pipe)
    already sent. Pass ``bytes``, a seekable file, or a multipart body of seekable files.
    ``request`` is the [`Request`][h2any.Request] that could not be repeated."""

    def __init__(self, message: str, *, request: Request | None = None) -> None:
        super().__init__(message)
        self.request = request


class FlowControlError(H2anyError):
    """A window manager returned an invalid increment (negative, not an int, or one that
    would open a window past 2**31-1)."""


class DecodingError(H2anyError):
    """The response body could not be decoded per its Content-Encoding (corrupt, truncated,
    unsupported, or larger than ``max_decompressed_size``)."""


class ProtocolError(H2anyError):
    """The peer broke the HTTP/2 protocol; the connection is failed.

    ``error_code`` is the HTTP/2 error code sent to the peer in GOAWAY.
    """

    def __init__(self, message: str, error_code: int = 1) -> None:
        super().__init__(message)
        self.error_code = error_code


class HTTPVersionError(ConnectError, ProtocolError):
    """The server does not speak the HTTP version this connection needs.

    A [`Connection`][h2any.Connection] raises it when the peer does not speak HTTP/2: it
    answered the HTTP/2 preface with something other than SETTINGS (an ``HTTP/1.x`` status
    line, an HTML error page), closed the connection before any SETTINGS, or did not pick
    ``h2`` in TLS ALPN. A [`Client`][h2any.Client] falls back to HTTP/1.1 then, and raises it
    only when told not to (``http1=False``), or, with ``http2=False``, when the server picks
    ``h2`` alone.

    A [`ConnectError`][h2any.ConnectError] and a [`ProtocolError`][h2any.ProtocolError] both.
    ``origin`` is the server's origin (``"http://host:port"``); ``server_version`` what it
    speaks when that is known (``"HTTP/1.1"``, ``"HTTP/1.0"``, ``"HTTP/2"``), else ``None``.
    """

    def __init__(
        self, message: str, *, origin: str = "", server_version: str | None = None
    ) -> None:
        super().__init__(message, 1)
        self.origin = origin
        self.server_version = server_version


class StreamReset(H2anyError):
    """The stream was reset (RST_STREAM) by the peer, or by h2any on the user's behalf.

    ``retryable`` is true when the protocol guarantees the peer did not process the request
    (``REFUSED_STREAM``).
    """

    def __init__(self, stream_id: int, error_code: int, *, remote: bool = True) -> None:
        who = "peer" if remote else "client"
        super().__init__(
            f"stream {stream_id} was reset by the {who}: {error_code_name(error_code)}"
        )
        self.stream_id = stream_id
        self.error_code = error_code
        self.remote = remote
        self.retryable = error_code == _REFUSED_STREAM


class ConnectionClosed(H2anyError):
    """The connection is closed (by the user, by loss of the socket, or after an error).

    ``retryable`` is true when the request it ends never went out on this connection (it
    was waiting for a stream slot, or the connection was already closed when it came): it
    may be sent again on a new connection, whatever its method. A
    [`Client`][h2any.Client] does so.
    """

    retryable: bool = False


class ConnectionTerminated(ConnectionClosed):
    """The peer sent GOAWAY.

    ``retryable`` is true for streams above ``last_stream_id``: the peer promises it never
    processed them, so they may be sent again on a new connection.
    """

    def __init__(
        self,
        error_code: int,
        last_stream_id: int,
        *,
        retryable: bool = False,
        additional_data: bytes | None = None,
        stream_id: int | None = None,
    ) -> None:
        what = (
            f"the peer sent GOAWAY ({error_code_name(error_code)}, last_stream_id={last_stream_id})"
        )
        if stream_id is not None:
            if retryable and error_code == _ENHANCE_YOUR_CALM:
                # The Client never retries ENHANCE_YOUR_CALM: the server asked us to stop.
                what += (
                    f"; stream {stream_id} was not processed (the peer asks to slow down: "
                    "not retried)"
                )
            elif retryable:
                what += f"; stream {stream_id} was not processed and may be retried"
            else:
                what += f"; stream {stream_id} was cut off"
        if additional_data:
            what += f": {additional_data[:200]!r}"
        super().__init__(what)
        self.error_code = error_code
        self.last_stream_id = last_stream_id
        self.retryable = retryable
        self.additional_data = additional_data
        self.stream_id = stream_id


class ProxyError(ConnectError):
    """The proxy could not be reached, refused the CONNECT request, closed the connection or
    answered something that is not HTTP.

    ``status`` and ``reason`` are those of the proxy's answer to CONNECT (``None`` and ``""``
    when there was no valid answer); ``proxy_authenticate`` is the ``Proxy-Authenticate``
    challenge the answer carried (with a 407: what authentication the proxy asks for; several
    are joined with ", "), else ``None``.
    Messages never contain the proxy's credentials.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str = "",
        proxy_authenticate: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.proxy_authenticate = proxy_authenticate


class HTTPStatusError(H2anyError):
    """Raised by [`Response.raise_for_status`][h2any.Response.raise_for_status] for a status that
    is not 2xx (as httpx's ``HTTPStatusError``).

    ``request`` is the [`Request`][h2any.Request] that was sent, ``response`` the response that
    answered it (an [`h2any.Response`][h2any.Response] or an
    [`h2any.sync.Response`][h2any.sync.Response]). The message names the status and the URL,
    never the URL's credentials.
    """

    def __init__(self, message: str, *, request: Request, response: Any) -> None:
        super().__init__(message)
        self.request = request
        self.response = response


def clone_error(exc: H2anyError) -> H2anyError:
    """A copy of ``exc`` to raise in one more task.

    One exception object must not be raised in many tasks at once (tracebacks would pile
    up on it), so each waiter gets its own copy, with the same cause.
    """
    # Not copy.copy: it calls __init__ with the message alone, which StreamReset and
    # ConnectionTerminated do not take.
    cls = type(exc)
    clone = cls.__new__(cls, *exc.args)
    clone.__dict__.update(exc.__dict__)
    clone.__cause__ = exc.__cause__
    clone.__traceback__ = None
    return clone
