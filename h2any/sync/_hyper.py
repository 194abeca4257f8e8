"""A drop-in for hyper's ``HTTP20Connection`` and ``HTTPConnection``, built on the blocking facade.

hyper (abandoned; it no longer imports on Python 3.10+) had a stdlib-``http.client``-like
API: ``request()`` sends and returns a stream id, ``getresponse(stream_id)`` collects the
response later. This module maps that API onto [`h2any.sync.Connection`][h2any.sync.Connection]
(and, for ``HTTPConnection`` talking to an HTTP/1.1 server, onto
[`h2any.sync.Client`][h2any.sync.Client]); it holds no protocol logic of its own.

Theory of operation
===================

* **One facade per shim**, opened lazily on first use (or by ``connect()``), closed by
  ``close()``. After ``close()`` the next use opens a fresh connection, as in hyper.
* **Send now, collect later.** ``request()`` hands the request to a task in the facade's
  loop, which queues it with the core (``queue_request``) and then collects its response.
  The core's ``on_open`` hook fires when the connection task writes the HEADERS frame and
  has assigned the stream id; it wakes the calling thread directly (a lock it waits on),
  and ``request()`` returns that id -- the one on the wire -- as hyper did (hyper wrote
  HEADERS before returning). A request that never opens (no stream slot within the pool
  timeout, the connection lost) raises from ``request()``. Threads' requests are queued
  concurrently; each learns its own id. ``getresponse()`` waits for the collecting task.
* **Stream ids of ``putrequest()``.** HTTP/2 opens streams in increasing id order, and
  ``putrequest()`` must return an id before anything is sent. The shim therefore *reserves*
  ids: ``putrequest()`` waits until no request is on its way to the wire (so the next id is
  known), and no request or ``endheaders()`` is queued while a draft reserved before it is
  not open yet (it waits, up to the pool timeout, then raises ``PoolTimeout``). The calling
  thread's own earlier unsent draft cannot be waited for: that call raises
  ``InvalidRequest`` (hyper failed the same sequence at the earlier stream's
  ``endheaders()``, with h2's ``StreamIDTooLowError``).
* **Thread safety.** Any number of threads may share one shim: the facade is thread-safe;
  the shim's own state (open connection, requests not yet collected) is under a lock.
  ``getresponse()`` / ``getpushes()`` / ``putheader()`` without a stream id mean the calling
  thread's own oldest outstanding / latest request, so threads never take each other's
  responses.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, MutableMapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from types import TracebackType
from typing import Any, final
from urllib.parse import quote

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._config import Timeout, TimeoutTypes, as_timeout
from .._connection import DEFAULT_TIMEOUT, PendingResponse, queue_request
from .._connection import Connection as AsyncConnection
from .._exceptions import (
    ConnectionClosed,
    H2anyError,
    HTTPVersionError,
    InvalidRequest,
    PoolTimeout,
    ProtocolError,
    StreamReset,
)
from .._flow import BaseFlowControlManager
from .._headers import Headers
from .._options import HyperOptions, Unpack
from .._response import Response as AsyncResponse
from .._response import body_read, cached_body
from ._client import Client
from ._connection import Connection, PushedStream, hosted_connection, take_complete_body
from ._connection import Response as SyncResponse
from ._portal import LoopThread, check_not_in_event_loop

__all__ = (
    "ChunkedDecodeError",
    "HPACKDecodingError",
    "HPACKEncodingError",
    "HTTP11Response",
    "HTTP20Connection",
    "HTTP20Error",
    "HTTP20Push",
    "HTTP20Response",
    "HTTPConnection",
    "HTTPHeaderMap",
    "HTTPVersion",
    "InvalidResponseError",
    "LineTooLongError",
    "SocketError",
    "StreamResetError",
)

# hyper silently dropped these; h2any refuses them (they are not allowed in HTTP/2).
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
# Header names whose values hyper never split on commas.
_UNSPLIT = frozenset({b"set-cookie", b"set-cookie2"})

_HeaderInput = Any  # a mapping, an HTTPHeaderMap, or (name, value) pairs; str or bytes

# ---------------------------------------------------------------------------- hyper's errors
# hyper's exception names, as aliases of the h2any errors raised in the same situations
# (docs/migrating-from-hyper.md has the table). ``except hyper_name`` keeps working.

HTTP20Error = H2anyError
"""hyper's ``hyper.http20.exceptions.HTTP20Error``: the base of every h2any error."""
StreamResetError = StreamReset
"""hyper's ``StreamResetError``: the stream was reset."""
HPACKEncodingError = InvalidRequest
"""hyper's ``HPACKEncodingError``: a header that cannot be sent."""
HPACKDecodingError = ProtocolError
"""hyper's ``HPACKDecodingError``: the server's header block could not be decoded."""
InvalidResponseError = ProtocolError
"""hyper's ``hyper.common.exceptions.InvalidResponseError``: a malformed response."""
ChunkedDecodeError = ProtocolError
"""hyper's ``ChunkedDecodeError``: broken HTTP/1.1 chunked framing."""
LineTooLongError = ProtocolError
"""hyper's ``LineTooLongError``: an HTTP/1.1 head line over the limit."""
SocketError = ConnectionClosed
"""hyper's ``SocketError``: the connection's socket failed or closed."""


class HTTPVersion(enum.Enum):
    """hyper's ``hyper.common.util.HTTPVersion``: the ``version`` of connections and
    responses."""

    http11 = "HTTP/1.1"
    http20 = "HTTP/2"


def no_cookies() -> CookieJar:
    """A cookie jar that keeps nothing, for a [`Client`][h2any.sync.Client] whose user
    handles cookies (or, as hyper, none)."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def _bytes(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise ValueError(f"header names and values are str or bytes, not {type(value).__name__}")


# ---------------------------------------------------------------------------- headers


@final
class HTTPHeaderMap(MutableMapping[Any, Any]):
    """hyper's header container: case-insensitive, repeated names kept, values as bytes.

    A `collections.abc.MutableMapping` with hyper's semantics:

    * ``headers["name"]`` / ``headers[b"name"]`` is the LIST of values, in order, each
      comma-separated value split out (except ``set-cookie``); ``KeyError`` if absent.
    * ``get(name, default=None)`` is the same list, or ``default``.
    * Iteration, ``items()``, ``keys()``, ``values()`` go over ``(name, value)`` pairs of
      bytes in that split ("canonical") form, names lowercase; ``len()`` counts them.
    * ``iter_raw()`` gives the fields exactly as stored.
    * ``headers[name] = value`` appends a field; ``del headers[name]`` removes every field
      of that name; ``replace(name, value)`` puts one field in place of the first of that
      name (removing the others), or appends it; ``merge(other)`` appends the fields of
      another map (as stored) or of a mapping's ``items()``.
    * ``update()``, ``pop()``, ``setdefault()`` come from ``MutableMapping``: ``update``
      appends, ``pop`` returns the list and removes the name.
    """

    __slots__ = ("_items",)

    def __init__(self, *args: Iterable[tuple[str | bytes, str | bytes]], **kwargs: str) -> None:
        self._items: list[tuple[bytes, bytes]] = []
        for fields in args:
            for name, value in fields:
                self._items.append((_bytes(name), _bytes(value)))
        for name, value in kwargs.items():
            self._items.append((_bytes(name), _bytes(value)))

    @staticmethod
    def _canonical(name: bytes, value: bytes) -> Iterator[tuple[bytes, bytes]]:
        name = name.lower()
        if name in _UNSPLIT:
            yield name, value
        else:
            for part in value.split(b","):
                yield name, part.strip()

    def __getitem__(self, key: str | bytes) -> list[bytes]:
        wanted = _bytes(key).lower()
        values = [
            value
            for name, raw in self._items
            if name.lower() == wanted
            for _, value in self._canonical(name, raw)
        ]
        if not values:
            raise KeyError(key)
        return values

    def get(self, key: str | bytes, default: Any = None) -> Any:
        """Every value of ``key`` as a list of bytes, or ``default`` if there is none."""
        try:
            return self[key]
        except KeyError:
            return default

    def __setitem__(self, key: str | bytes, value: str | bytes) -> None:
        self._items.append((_bytes(key), _bytes(value)))

    def __delitem__(self, key: str | bytes) -> None:
        wanted = _bytes(key).lower()
        kept = [(n, v) for n, v in self._items if n.lower() != wanted]
        if len(kept) == len(self._items):
            raise KeyError(key)
        self._items = kept

    def replace(self, key: str | bytes, value: str | bytes) -> None:
        """Replace every field named ``key`` by one ``key: value`` field, at the place of
        the first of them; append it if there was none."""
        name, data = _bytes(key), _bytes(value)
        wanted = name.lower()
        places = [i for i, (n, _) in enumerate(self._items) if n.lower() == wanted]
        if not places:
            self._items.append((name, data))
            return
        first = places[0]
        for index in reversed(places[1:]):
            del self._items[index]
        self._items[first] = (name, data)

    def merge(self, other: Any) -> None:
        """Append the fields of ``other``: another `HTTPHeaderMap` (as stored), or any
        mapping (its ``items()``). Merging a map into itself does nothing."""
        if other is self:
            return
        if isinstance(other, HTTPHeaderMap):
            self._items.extend(other.iter_raw())
            return
        for name, value in other.items():
            self._items.append((_bytes(name), _bytes(value)))

    def popitem(self) -> tuple[bytes, bytes]:
        """Remove and return the first field, as stored (``KeyError`` if empty)."""
        if not self._items:
            raise KeyError("popitem(): the header map is empty")
        return self._items.pop(0)

    def clear(self) -> None:
        """Remove every field."""
        self._items.clear()

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        for name, value in self._items:
            yield from self._canonical(name, value)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (str, bytes)):
            return False
        wanted = _bytes(key).lower()
        return any(name.lower() == wanted for name, _ in self._items)

    def keys(self) -> Iterator[bytes]:  # type: ignore[override]
        """Every name, once per canonical value (so as many as ``len()``)."""
        return (name for name, _ in self)

    def values(self) -> Iterator[bytes]:  # type: ignore[override]
        """Every canonical value."""
        return (value for _, value in self)

    def items(self) -> Iterator[tuple[bytes, bytes]]:  # type: ignore[override]
        """The ``(name, value)`` pairs, as iteration gives them."""
        return iter(self)

    def iter_raw(self) -> Iterator[tuple[bytes, bytes]]:
        """The fields exactly as received or added, in order."""
        return iter(list(self._items))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HTTPHeaderMap):
            return self._items == other._items
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"HTTPHeaderMap({self._items!r})"


def _pairs(headers: _HeaderInput) -> list[tuple[bytes, bytes]]:
    if headers is None:
        return []
    if isinstance(headers, HTTPHeaderMap):
        return list(headers.iter_raw())
    if isinstance(headers, Headers):
        return headers.raw
    items = headers.items() if hasattr(headers, "items") else headers
    return [(_bytes(name), _bytes(value)) for name, value in items]


# ---------------------------------------------------------------------------- responses


class _ShimResponse:
    """What hyper's two response classes share: reading, trailers, closing."""

    version: HTTPVersion

    def __init__(self, response: SyncResponse, loop: LoopThread) -> None:
        self._response = response
        self._async: AsyncResponse = response._response
        self._loop = loop
        self.status: int = response.status
        self.reason = ""
        self.headers = HTTPHeaderMap(response.headers.raw)
        self._buffer = bytearray()
        self._chunks: Any = None  # the core's body iterator, once partial reading began
        self._decode: bool | None = None
        self._eof = False
        self._trailers: HTTPHeaderMap | None = None

    def _next_chunk(self, decode_content: bool) -> bytes | None:
        if self._decode is None:
            self._decode = decode_content
            self._chunks = self._async.aiter_bytes(decode_content=decode_content)
        elif self._decode != decode_content:
            raise ValueError(
                "read() was already called with decode_content="
                f"{self._decode}; one response cannot mix decoded and raw reads"
            )
        if self._eof:
            return None
        try:
            chunk: bytes = self._loop.call(self._chunks.__anext__)
        except StopAsyncIteration:
            self._eof = True
            return None
        return chunk

    def read(self, amt: int | None = None, decode_content: bool = True) -> bytes:
        """Read the body: all that is left if ``amt`` is None, else up to ``amt`` bytes.

        Returns ``b""`` once the body is exhausted. ``decode_content=False`` gives the
        bytes as sent (no gzip/deflate/br/zstd decoding); choose one way per response.
        Raises the same errors as [`h2any.Response.read`][h2any.Response.read].
        """
        check_not_in_event_loop("HTTP20Response.read()")
        if amt is None:
            if self._decode is None and not self._eof:
                # Nothing read yet: the whole body at once -- already here if it came with
                # the headers, else in one call into the loop.
                self._decode = decode_content
                if body_read(self._async):
                    self._eof = True
                    return cached_body(self._async, decode_content)  # type: ignore[return-value]
                body: bytes = self._loop.call(
                    functools.partial(self._async.read, decode_content=decode_content)
                )
                self._eof = True
                return body
            while (chunk := self._next_chunk(decode_content)) is not None:
                self._buffer += chunk
            data = bytes(self._buffer)
            self._buffer.clear()
            return data
        if amt < 0:
            raise ValueError("amt must be None or a non-negative number of bytes")
        while len(self._buffer) < amt:
            chunk = self._next_chunk(decode_content)
            if chunk is None:
                break
            self._buffer += chunk
        data = bytes(self._buffer[:amt])
        del self._buffer[:amt]
        return data

    def read_chunked(self, decode_content: bool = True) -> Iterator[bytes]:
        """Yield the rest of the body in chunks as they arrive."""
        check_not_in_event_loop("HTTP20Response.read_chunked()")
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            yield data
        while (chunk := self._next_chunk(decode_content)) is not None:
            yield chunk

    @property
    def trailers(self) -> HTTPHeaderMap:
        """The trailing headers (empty if the server sent none).

        The trailers follow the body, so this reads whatever is left of the body and keeps
        it for a later `read`.
        """
        if self._trailers is None:
            if not self._eof:
                decode = True if self._decode is None else self._decode
                while (chunk := self._next_chunk(decode)) is not None:
                    self._buffer += chunk
            self._trailers = HTTPHeaderMap(self._async.trailers.raw if self._async.trailers else ())
        return self._trailers

    def fileno(self) -> int:
        """Raises `NotImplementedError`, as hyper's did: the response has no socket of its
        own (its stream shares the connection's)."""
        raise NotImplementedError("a response has no socket of its own")

    def close(self) -> None:
        """Close the response; if its body was not read to the end, reset the stream."""
        self._response.close()


@final
class HTTP20Response(_ShimResponse):
    """A response, as hyper's ``HTTP20Response``; returned by ``getresponse()``.

    Attributes: ``status``, ``reason`` (always ``""``: HTTP/2 has no reason phrase, and
    hyper left it empty), ``headers`` (an [`HTTPHeaderMap`][h2any.sync.HTTPHeaderMap]),
    ``stream_id`` (the stream id on the wire), ``trailers``, ``version``
    (``HTTPVersion.http20``). Use it as a context manager, or call `close`.
    """

    version = HTTPVersion.http20

    def __init__(self, response: SyncResponse, loop: LoopThread) -> None:
        super().__init__(response, loop)
        self.stream_id: int = response.stream_id

    def __repr__(self) -> str:
        return f"<h2any.sync.HTTP20Response [{self.status}] stream {self.stream_id}>"

    def __enter__(self) -> HTTP20Response:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@final
class HTTP11Response(_ShimResponse):
    """A response over HTTP/1.1, as hyper's ``HTTP11Response``; what
    [`HTTPConnection.get_response`][h2any.sync.HTTPConnection.get_response] returns when the
    server does not speak HTTP/2.

    Same reading methods as [`HTTP20Response`][h2any.sync.HTTP20Response]; ``reason`` is the
    phrase for the status, ``version`` is ``HTTPVersion.http11``, and there is no stream id.
    """

    version = HTTPVersion.http11

    def __init__(self, response: SyncResponse, loop: LoopThread) -> None:
        super().__init__(response, loop)
        self.reason = response.reason_phrase

    def __repr__(self) -> str:
        return f"<h2any.sync.HTTP11Response [{self.status}]>"

    def __enter__(self) -> HTTP11Response:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@final
class HTTP20Push:
    """A promised (pushed) stream, as hyper's ``HTTP20Push``; yielded by ``getpushes()``.

    Attributes: ``scheme``, ``method``, ``authority``, ``path`` (bytes: the promised
    request's pseudo-headers), ``request_headers`` (an
    [`HTTPHeaderMap`][h2any.sync.HTTPHeaderMap] of the promised request's other headers: as in
    hyper, the pseudo-headers are taken out), ``stream_id`` (the promised stream) and
    ``parent_stream_id``.
    """

    def __init__(self, push: PushedStream, loop: LoopThread) -> None:
        self._push = push
        self._loop = loop
        self.scheme = _bytes(push.scheme)
        self.method = _bytes(push.method)
        self.authority = _bytes(push.authority)
        self.path = _bytes(push.path)
        self.stream_id: int = push.stream_id
        self.parent_stream_id: int = push.parent_stream_id
        self.request_headers = HTTPHeaderMap(
            (name, value) for name, value in _pairs(push.request_headers) if name[:1] != b":"
        )

    def __repr__(self) -> str:
        return f"<h2any.sync.HTTP20Push {self.path!r} (parent stream {self.parent_stream_id})>"

    def getresponse(self) -> HTTP20Response:
        """Wait for the pushed response's headers and return it."""
        return HTTP20Response(self._push.get_response(), self._loop)

    get_response = getresponse

    def cancel(self) -> None:
        """Refuse the pushed stream (RST_STREAM CANCEL) and drop what was buffered for it."""
        self._push.cancel()


# ---------------------------------------------------------------------------- connection


class _Outcome:
    """A request's result, set once by the loop thread: a lighter
    ``concurrent.futures.Future`` (a plain lock to wait on, no ``Condition``)."""

    __slots__ = ("_done", "_error", "_ready", "_result")

    def __init__(self) -> None:
        self._done = False
        self._result: AsyncResponse | None = None
        self._error: BaseException | None = None
        self._ready = threading.Lock()
        self._ready.acquire()  # released once the outcome is set

    def set_result(self, result: AsyncResponse) -> None:
        self._result = result
        self._done = True
        self._ready.release()

    def set_exception(self, error: BaseException) -> None:
        self._error = error
        self._done = True
        self._ready.release()

    def done(self) -> bool:
        return self._done

    def exception(self) -> BaseException | None:
        """The error, once done (``None`` if it succeeded or is not done yet)."""
        return self._error

    def result(self) -> AsyncResponse:
        """Wait until the outcome is set; return the result or raise the error."""
        if not self._done:
            with self._ready:  # released again at once, for any other waiting thread
                pass
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result


class _Pending:
    """One request sent: its stream id and its result arrive from the loop thread.

    ``wait_open()`` blocks the sending thread until the stream is open on the wire
    (``on_open``, in the connection task) or the request failed before that (``settle``).
    """

    __slots__ = ("_opened", "call", "future", "response", "settled", "stream_id")

    def __init__(self) -> None:
        self.future = _Outcome()
        self.response: HTTP20Response | None = None  # set by getresponse()/getpushes()
        self.call: PendingResponse | None = None
        self.stream_id = 0
        self.settled = False  # open on the wire, or failed before that
        self._opened = threading.Lock()
        self._opened.acquire()  # released once the stream is open, or the request failed

    def mark_open(self) -> None:
        """``on_open``: the HEADERS frame is written and the stream id assigned."""
        assert self.call is not None
        self.stream_id = self.call.stream_id
        self.settle()

    def settle(self) -> None:
        """Wake the sending thread (idempotent)."""
        self.settled = True
        try:
            self._opened.release()
        except RuntimeError:
            pass  # already released

    def wait_open(self) -> int:
        """The stream id once open, or 0 if the request failed first (see ``future``)."""
        self._opened.acquire()
        return self.stream_id


class _Draft:
    """A request under construction with ``putrequest()``, under its reserved stream id.

    ``endheaders()`` sends it; a body continued with ``send()`` flows through ``pipe``, a
    small memory channel in the loop thread that the core reads as an async iterable (so
    each ``send()`` waits while the server's window is shut: bounded memory).
    """

    __slots__ = (
        "headers",
        "method",
        "opened",
        "pending",
        "pipe",
        "sent_headers",
        "thread",
        "url",
    )

    def __init__(self, method: str, url: str) -> None:
        self.method = method
        self.url = url
        self.headers: list[tuple[bytes, bytes]] = []
        self.sent_headers = False  # endheaders() called
        self.opened = False  # its stream is open on the wire, under the reserved id
        self.pending: _Pending | None = None  # once sent
        self.pipe: MemoryObjectSendStream[bytes] | None = None
        self.thread = threading.get_ident()


class _Runner:
    """The shim's task group in the facade's loop thread, where responses are collected.

    It holds no reference to the shim, so an abandoned shim is garbage-collected and its
    facade warns (ResourceWarning) and closes.
    """

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self._task_group: anyio.abc.TaskGroup | None = None

    async def host(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            task_status.started()
            await anyio.sleep_forever()  # cancelled when the facade stops its loop

    async def run(
        self,
        pending: _Pending,
        method: str,
        url: str,
        headers: list[tuple[bytes, bytes]],
        body: Any,
    ) -> None:
        """One request, in a task of the loop: queue it (its ``on_open`` wakes the sending
        thread with the stream id), then collect its response for ``getresponse()``."""
        try:
            call = queue_request(
                self._connection, method, url, headers, body, None, on_open=pending.mark_open
            )
        except Exception as exc:  # refused at once: a bad request, a closed connection
            if isinstance(body, MemoryObjectReceiveStream):
                body.close()
            pending.future.set_exception(exc)
            pending.settle()
            return
        # The connection task opens the stream later (no await in between): on_open can
        # rely on pending.call.
        pending.call = call
        try:
            response = await take_complete_body(await call)
        except Exception as exc:
            pending.future.set_exception(exc)
        except BaseException:  # cancelled: the facade is closing its loop
            pending.future.set_exception(ConnectionClosed("the connection was closed"))
            raise
        else:
            pending.future.set_result(response)
        finally:
            pending.settle()
            if isinstance(body, MemoryObjectReceiveStream):
                body.close()  # a send() still waiting fails instead of hanging


class _ThreadState(threading.local):
    def __init__(self) -> None:
        self.outstanding: deque[int] = deque()  # ids sent by this thread, not collected
        self.latest: int | None = None  # the last request id this thread made


def _hyper_timeout(timeout: Any) -> Timeout | None:
    """hyper's ``timeout``: seconds, or a ``(connect, read)`` tuple; or an h2any
    [`Timeout`][h2any.Timeout]. hyper's read timeout was its socket's timeout, so it bounds
    writes and waits for a stream slot too."""
    if timeout is None:
        return None
    if isinstance(timeout, tuple):
        if len(timeout) != 2:
            raise ValueError(f"timeout must be seconds or (connect, read), not {timeout!r}")
        connect, read = timeout
        return Timeout(read, connect=connect)
    return as_timeout(timeout)


def _proxy_url(proxy_host: str | None, proxy_port: int | None, proxy_headers: Any) -> str | None:
    """hyper's ``proxy_host``/``proxy_port``/``proxy_headers`` as an h2any ``proxy=`` URL.

    The only proxy header h2any sends is ``Proxy-Authorization`` (Basic), from the URL's
    credentials: a Basic ``Proxy-Authorization`` in ``proxy_headers`` becomes them; any other
    proxy header is refused (``NotImplementedError``)."""
    if not proxy_host:
        if proxy_headers:
            raise ValueError("proxy_headers needs proxy_host")
        return None
    host, parsed_port = _split_host(proxy_host)
    port = proxy_port if proxy_port is not None else (parsed_port or 8080)
    userinfo = ""
    for name, value in _pairs(proxy_headers):
        if name.lower() != b"proxy-authorization":
            raise NotImplementedError(
                f"proxy header {name.decode('latin-1')!r}: h2any sends only "
                "Proxy-Authorization (Basic) to a proxy"
            )
        scheme, _, token = value.partition(b" ")
        try:
            if scheme.lower() != b"basic":
                raise ValueError
            user, colon, password = base64.b64decode(token, validate=True).partition(b":")
        except (ValueError, binascii.Error):
            raise NotImplementedError(
                "proxy_headers: h2any sends only Basic Proxy-Authorization to a proxy"
            ) from None
        userinfo = quote(user.decode("utf-8"), safe="")
        if colon:
            userinfo += ":" + quote(password.decode("utf-8"), safe="")
        userinfo += "@"
    literal = f"[{host}]" if ":" in host else host
    return f"http://{userinfo}{literal}:{port}"


def _force_proto(force_proto: Any) -> None:
    if force_proto is None:
        return
    if _bytes(force_proto) != b"h2":
        raise ValueError(
            f"force_proto={force_proto!r}: h2any speaks HTTP/2 as 'h2' only (RFC 9113)"
        )


@final
class HTTP20Connection:
    """hyper's ``HTTP20Connection`` on h2any: ``request()`` now, ``getresponse()`` later.

    Arguments (hyper's, in hyper's order):
        host: ``"host"``, ``"host:port"``, ``"[v6]:port"`` or an IPv6 literal.
        port: overrides a port in ``host``; default 443.
        secure: TLS if True, cleartext h2c if False; ``None`` (hyper's rule) means TLS
            exactly when the port is 443.
        window_manager: a [`h2any.BaseFlowControlManager`][h2any.BaseFlowControlManager] *class*.
        enable_push: accept server push (see `getpushes`).
        ssl_context: an `ssl.SSLContext` used as given (h2any's ``verify=``);
            default: certifi roots, hostname checked.
        proxy_host: an HTTP proxy, ``"host"`` or ``"host:port"`` (default port 8080); h2any
            tunnels through it with CONNECT, for ``https`` and ``http`` alike.
        proxy_port: the proxy's port, overriding one in ``proxy_host``.
        force_proto: ``"h2"`` (or ``None``); h2any negotiates nothing else.
        proxy_headers: headers for the proxy: only a Basic ``Proxy-Authorization``.
        timeout: seconds, or hyper's ``(connect, read)`` tuple, or an
            [`h2any.Timeout`][h2any.Timeout]; default h2any's (10 s per step; hyper's default
            was to wait forever).

    Keywords beyond hyper's: ``backend`` (``"asyncio"``/``"trio"``) and any other option of
    [`h2any.Connection`][h2any.Connection].

    Attributes, as hyper's: ``host``, ``port``, ``secure``, ``ssl_context``, ``proxy_host``,
    ``proxy_port``, ``proxy_headers``, ``force_proto``, ``version``
    (``HTTPVersion.http20``); and ``url``, the origin.

    Thread-safe: any number of threads may share one instance (see the module notes). The
    connection opens on first use or `connect`; close it with `close` or a
    ``with`` block. Responses must not be used after the connection is closed.
    """

    version = HTTPVersion.http20

    def __init__(
        self,
        host: str,
        port: int | None = None,
        secure: bool | None = None,
        window_manager: type[BaseFlowControlManager] | None = None,
        enable_push: bool = False,
        ssl_context: Any = None,
        proxy_host: str | None = None,
        proxy_port: int | None = None,
        force_proto: str | bytes | None = None,
        proxy_headers: _HeaderInput = None,
        timeout: TimeoutTypes | tuple[float | None, float | None] | None = None,
        *,
        backend: str = "asyncio",
        backend_options: dict[str, Any] | None = None,
        **options: Unpack[HyperOptions],
    ) -> None:
        connection_options: dict[str, Any] = dict(options)
        self.host, parsed_port = _split_host(host)
        self.port = port if port is not None else (parsed_port or 443)
        self.secure = (self.port == 443) if secure is None else bool(secure)
        literal = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"{'https' if self.secure else 'http'}://{literal}:{self.port}"
        self.ssl_context = ssl_context
        _force_proto(force_proto)
        self.force_proto = force_proto
        proxy = _proxy_url(proxy_host, proxy_port, proxy_headers)
        if proxy is not None:
            proxy_name, proxy_parsed_port = _split_host(proxy_host or "")
            self.proxy_host: str | None = proxy_name
            self.proxy_port: int | None = (
                proxy_port if proxy_port is not None else (proxy_parsed_port or 8080)
            )
            connection_options["proxy"] = proxy
        else:
            self.proxy_host = self.proxy_port = None
        self.proxy_headers = proxy_headers
        if window_manager is not None:
            connection_options["window_manager"] = window_manager
        if enable_push:
            connection_options["enable_push"] = True
        if ssl_context is not None:
            connection_options["verify"] = ssl_context
        chosen = _hyper_timeout(timeout)
        if chosen is not None:
            connection_options["timeout"] = chosen
        AsyncConnection(self.url, **connection_options)  # check the options now, not at first use
        self._pool_timeout = as_timeout(connection_options.get("timeout", DEFAULT_TIMEOUT)).pool
        self._options = connection_options
        self._backend = backend
        self._backend_options = backend_options
        self._lock = threading.Lock()  # the shim's state below
        self._turn = threading.Condition(self._lock)  # streams open in stream id order
        self._in_flight: set[_Pending] = set()  # queued, stream not open yet
        self._connection: Connection | None = None
        self._runner: _Runner | None = None
        self._next_stream_id = 1  # the id the next stream to open will get
        self._pending: dict[int, _Pending] = {}
        self._drafts: dict[int, _Draft] = {}  # by reserved id, headers not sent yet
        self._threads = _ThreadState()

    def __repr__(self) -> str:
        state = "open" if self._connection is not None else "not connected"
        return f"<h2any.sync.HTTP20Connection {self.url} ({state})>"

    # ------------------------------------------------------------------ lifecycle

    def connect(self) -> None:
        """Open the connection (TCP, TLS, HTTP/2 preface). No-op if already open."""
        self._open()

    def _open(self) -> tuple[Connection, _Runner]:
        with self._lock:
            connection, runner = self._connection, self._runner
            if connection is not None and runner is not None:
                return connection, runner
            connection = Connection(
                self.url,
                backend=self._backend,
                backend_options=self._backend_options,
                **self._options,
            )
            try:
                runner = _Runner(hosted_connection(connection))
                connection._loop.start(runner.host)
            except BaseException:
                connection.close()
                raise
            self._connection, self._runner = connection, runner
            self._next_stream_id = 1
            return connection, runner

    def close(self, error_code: int | None = None) -> None:
        """Close the connection: GOAWAY, every uncollected request fails, thread ended.

        Idempotent. The next request opens a new connection. ``error_code`` is accepted
        for hyper compatibility and ignored.
        """
        with self._lock:
            connection, self._connection, self._runner = self._connection, None, None
            self._pending.clear()
            self._drafts.clear()
            waiting = list(self._in_flight)
            self._in_flight.clear()
            self._turn.notify_all()
        if connection is not None:
            connection.close()  # stops the loop thread: nothing sets these outcomes now
        for pending in waiting:
            if not pending.future.done():
                pending.future.set_exception(ConnectionClosed("the connection was closed"))
            pending.settle()

    def __enter__(self) -> HTTP20Connection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ requests

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: _HeaderInput = None,
    ) -> int:
        """Send a request now; return its stream id (the one on the wire) for `getresponse`.

        Returns once the request's HEADERS frame is written, as hyper did: that may wait for
        a stream slot (up to the pool timeout: ``PoolTimeout``). ``body`` is anything
        [`h2any.Connection.request`][h2any.Connection.request] takes: bytes, str (UTF-8), a file
        (streamed, never read whole), or an iterable of bytes; ``headers`` a mapping or
        ``(name, value)`` pairs of str or bytes. A streamed body is sent in the background:
        ``getresponse()`` raises if it fails. Connection-specific headers (``Connection``,
        ...) are dropped, as hyper did. Raises [`h2any.InvalidRequest`][h2any.InvalidRequest]
        for a bad request and the connection errors of [`h2any.Connection`][h2any.Connection].
        """
        check_not_in_event_loop("HTTP20Connection.request()")
        return self._send(method, url, _pairs(headers), body, None)

    def _wait_turn(self, reserved: int | None) -> None:
        """Under ``_turn``, before a request is queued: wait until every draft reserved
        before ``reserved`` (every draft, for ``request()``: None) is open on the wire, so
        that streams open in id order. For ``putrequest()`` (``reserved=-1``): wait until no
        request is on its way to the wire, so that the next id is known."""
        me = threading.get_ident()
        deadline = None if self._pool_timeout is None else time.monotonic() + self._pool_timeout
        while True:
            self._sweep()
            if reserved == -1:
                earlier = []
                if not self._in_flight:
                    return
            else:
                earlier = [
                    (stream_id, draft)
                    for stream_id, draft in self._drafts.items()
                    if not draft.opened and (reserved is None or stream_id < reserved)
                ]
                if not earlier:
                    return
            for stream_id, draft in earlier:
                if draft.thread == me and not draft.sent_headers:
                    raise InvalidRequest(
                        f"stream {stream_id}, begun with putrequest(), must be sent with "
                        "endheaders() first: HTTP/2 opens streams in stream id order"
                    )
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                waiting_for = (
                    f"stream {earlier[0][0]}'s endheaders() in another thread"
                    if earlier
                    else "the requests being sent to open"
                )
                raise PoolTimeout(
                    f"no turn to open a stream within {self._pool_timeout} s "
                    f"(waiting for {waiting_for})"
                )
            # Capped: a request whose sender was interrupted wakes no one (see _sweep).
            self._turn.wait(0.5 if remaining is None else min(remaining, 0.5))

    def _sweep(self) -> None:
        """Under ``_turn``: account for requests whose sending thread stopped waiting
        (interrupted) but whose stream has since opened or failed."""
        for pending in [p for p in self._in_flight if p.settled]:
            self._in_flight.discard(pending)
            if pending.stream_id:
                self._next_stream_id = max(self._next_stream_id, pending.stream_id + 2)
        for stream_id, draft in list(self._drafts.items()):
            if not draft.opened and draft.pending is not None and draft.pending.settled:
                if draft.pending.stream_id:
                    draft.opened = True
                else:
                    del self._drafts[stream_id]

    def _send(
        self,
        method: str,
        url: str,
        fields: list[tuple[bytes, bytes]],
        body: Any,
        reserved: int | None,
    ) -> int:
        method, url, headers = _prepare(method, url, fields)
        connection, runner = self._open()
        pending = _Pending()
        with self._turn:
            self._wait_turn(reserved)
            if self._connection is not connection:
                raise ConnectionClosed("the connection was closed")
            if reserved is not None:
                self._drafts[reserved].sent_headers = True
                self._drafts[reserved].pending = pending
            self._in_flight.add(pending)
        try:
            connection._loop.submit(runner.run, pending, method, url, headers, body)
        except RuntimeError:  # the loop has stopped: close() from another thread
            pending.future.set_exception(ConnectionClosed("the connection was closed"))
            pending.settle()
        # Woken by on_open in the connection task, by a failure before the stream opened
        # (bounded by the pool timeout), or by close().
        stream_id = pending.wait_open()
        with self._turn:
            self._in_flight.discard(pending)
            if stream_id:
                self._next_stream_id = max(self._next_stream_id, stream_id + 2)
                self._pending[stream_id] = pending
            if reserved is not None:
                draft = self._drafts.get(reserved)
                if draft is not None:
                    if stream_id:
                        draft.opened = True
                    else:
                        del self._drafts[reserved]
            self._turn.notify_all()
        if not stream_id:
            error = pending.future.exception()
            assert error is not None
            raise error
        if reserved is not None and stream_id != reserved:
            # Only if the connection was replaced between putrequest() and endheaders().
            with self._lock:
                self._pending[reserved] = self._pending.pop(stream_id)
            stream_id = reserved
        state = self._threads
        state.outstanding.append(stream_id)
        state.latest = stream_id
        return stream_id

    def getresponse(self, stream_id: int | None = None) -> HTTP20Response:
        """Wait for the response to request ``stream_id`` and return it.

        Without ``stream_id``: the oldest request this thread sent and has not collected
        (hyper's documented rule, per thread). Each response is returned once. Raises
        ``ValueError`` for an unknown or already collected id, and the request's own error
        (timeouts, resets, connection loss) if it failed.
        """
        check_not_in_event_loop("HTTP20Connection.getresponse()")
        state = self._threads
        with self._lock:
            if stream_id is None:
                while state.outstanding and state.outstanding[0] not in self._pending:
                    state.outstanding.popleft()
                if not state.outstanding:
                    raise ValueError("no request of this thread is waiting for getresponse()")
                stream_id = state.outstanding.popleft()
            pending = self._pending.pop(stream_id, None)
            connection = self._connection
        if pending is None or connection is None:
            raise ValueError(f"no response for stream {stream_id} awaits getresponse()")
        try:
            state.outstanding.remove(stream_id)
        except ValueError:
            pass
        return self._response_of(pending, connection._loop)

    get_response = getresponse

    @staticmethod
    def _response_of(pending: _Pending, loop: LoopThread) -> HTTP20Response:
        if pending.response is None:
            response = pending.future.result()
            pending.response = HTTP20Response(SyncResponse(loop, response), loop)
        return pending.response

    def getpushes(
        self, stream_id: int | None = None, capture_all: bool = False
    ) -> Iterator[HTTP20Push]:
        """Yield the pushes promised on request ``stream_id`` (default: this thread's latest).

        Not idempotent: each push is yielded once. ``capture_all=False`` yields what has
        arrived, without blocking; ``True`` then waits for more until the parent stream
        ends. Needs ``enable_push=True``.
        """
        check_not_in_event_loop("HTTP20Connection.getpushes()")
        if stream_id is None:
            stream_id = self._threads.latest
            if stream_id is None:
                raise ValueError("this thread has made no request")
        with self._lock:
            pending = self._pending.get(stream_id)
            connection = self._connection
        if connection is None:
            raise ValueError(f"no request with stream id {stream_id} on an open connection")
        if pending is not None:
            # A promise comes before its parent's response headers or with them: wait for
            # those, so that capture_all=False sees the promises sent with the headers.
            self._response_of(pending, connection._loop)
        loop = connection._loop
        return (HTTP20Push(push, loop) for push in connection.get_pushes(stream_id, capture_all))

    get_pushes = getpushes

    def ping(self, opaque_data: bytes | str = b"\0" * 8) -> float:
        """Send a PING and wait for its acknowledgement; return the round trip in seconds.

        ``opaque_data`` (8 bytes) is checked for hyper compatibility; h2any chooses the
        payload itself to match acknowledgements to pings.
        """
        if len(_bytes(opaque_data)) != 8:
            raise ValueError("PING opaque data must be 8 bytes")
        connection, _ = self._open()
        return connection.ping()

    # ------------------------------------------------------------------ hyper's low-level API

    def putrequest(self, method: str, selector: str, **kwargs: Any) -> int:
        """Start building a request; return its stream id. Nothing is sent yet.

        The id is reserved: streams open in id order, so a later request waits for this
        one's `endheaders` (see the module notes).
        """
        self._open()
        with self._turn:
            self._wait_turn(-1)  # requests on their way: the next free id is not known yet
            stream_id = max([self._next_stream_id, *(d + 2 for d in self._drafts)])
            self._drafts[stream_id] = _Draft(method, selector)
        self._threads.latest = stream_id
        return stream_id

    def _draft(self, stream_id: int | None) -> tuple[int, _Draft]:
        if stream_id is None:
            stream_id = self._threads.latest
        with self._lock:
            draft = self._drafts.get(stream_id) if stream_id is not None else None
        if draft is None or stream_id is None:
            raise ValueError(f"no request under construction with stream id {stream_id}")
        return stream_id, draft

    def putheader(
        self,
        header: str | bytes,
        argument: str | bytes,
        stream_id: int | None = None,
        replace: bool = False,
    ) -> None:
        """Add a header to a request from `putrequest` (``replace``: drop others)."""
        _, draft = self._draft(stream_id)
        name = _bytes(header).lower()
        if draft.sent_headers:
            raise ValueError("the headers of this request were already ended")
        if replace:
            draft.headers = [(n, v) for n, v in draft.headers if n != name]
        draft.headers.append((name, _bytes(argument)))

    def endheaders(
        self,
        message_body: bytes | str | None = None,
        final: bool = False,
        stream_id: int | None = None,
    ) -> None:
        """Send the request's headers now, with ``message_body`` if given.

        With ``final=True`` the request is complete; otherwise its body continues with
        `send` calls, the last one with ``final=True``.
        """
        check_not_in_event_loop("HTTP20Connection.endheaders()")
        stream_id, draft = self._draft(stream_id)
        if draft.sent_headers:
            raise ValueError(f"the headers of stream {stream_id} were already sent")
        body: Any
        if final:
            body = None if message_body is None else _bytes(message_body)
        else:
            draft.pipe, body = anyio.create_memory_object_stream[bytes](1)
        self._send(draft.method, draft.url, draft.headers, body, stream_id)
        if final:
            with self._lock:
                self._drafts.pop(stream_id, None)
        elif message_body is not None:
            self.send(message_body, stream_id=stream_id)

    def send(self, data: bytes | str, final: bool = False, stream_id: int | None = None) -> None:
        """Send more of the body of a request begun with `putrequest`.

        Blocks while the server's flow-control window is shut. ``final=True`` ends the
        body. Raises the request's own error if it has already failed.
        """
        check_not_in_event_loop("HTTP20Connection.send()")
        stream_id, draft = self._draft(stream_id)
        pipe = draft.pipe
        if pipe is None:
            raise ValueError("call endheaders() before send()")
        connection = self._connection
        if connection is None:
            raise ValueError(f"stream {stream_id}: the connection was closed")
        try:
            if data:
                connection._loop.call(pipe.send, _bytes(data))
            if final:
                with self._lock:
                    self._drafts.pop(stream_id, None)
                connection._loop.call(pipe.aclose)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            # The request ended (it failed, or the connection closed) before its body did.
            with self._lock:
                self._drafts.pop(stream_id, None)
                pending = self._pending.get(stream_id)
            if pending is not None and pending.future.done():
                error = pending.future.exception()
                if error is not None:
                    raise error from None
            raise ConnectionClosed(f"stream {stream_id} ended before its body") from None


# ---------------------------------------------------------------------------- HTTPConnection


class _Http11Draft:
    """A ``putrequest()`` on an HTTP/1.1 connection: its body is gathered until ``final``."""

    __slots__ = ("body", "headers", "method", "url")

    def __init__(self, method: str, url: str) -> None:
        self.method = method
        self.url = url
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: bytearray | None = None  # set by endheaders()


class _Http11Thread(threading.local):
    def __init__(self) -> None:
        self.responses: deque[SyncResponse] = deque()  # sent, not collected, in order
        self.draft: _Http11Draft | None = None


@final
class HTTPConnection:
    """hyper's ``HTTPConnection``: HTTP/2 when the server speaks it, else HTTP/1.1.

    Same arguments as [`HTTP20Connection`][h2any.sync.HTTP20Connection], except that the
    default port is 80, as in hyper. The protocol is chosen on first use (or `connect`):
    ``https`` by TLS ALPN, plain ``http`` by trying HTTP/2 with prior knowledge (hyper sent
    an ``Upgrade: h2c`` HTTP/1.1 request instead; h2any does not upgrade). Over HTTP/2 every
    method is that of [`HTTP20Connection`][h2any.sync.HTTP20Connection]; over HTTP/1.1,
    ``request()`` returns ``None`` (as hyper's did) and `get_response` returns an
    [`HTTP11Response`][h2any.sync.HTTP11Response], in the order the requests were sent, per
    thread. Connections are kept alive (and pooled) by an
    [`h2any.sync.Client`][h2any.sync.Client]. ``version`` is the protocol in use
    (``HTTPVersion.http11`` until one is chosen, as in hyper).
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        secure: bool | None = None,
        window_manager: type[BaseFlowControlManager] | None = None,
        enable_push: bool = False,
        ssl_context: Any = None,
        proxy_host: str | None = None,
        proxy_port: int | None = None,
        proxy_headers: _HeaderInput = None,
        timeout: TimeoutTypes | tuple[float | None, float | None] | None = None,
        *,
        backend: str = "asyncio",
        backend_options: dict[str, Any] | None = None,
        **options: Unpack[HyperOptions],
    ) -> None:
        name, parsed_port = _split_host(host)
        chosen_port = port if port is not None else (parsed_port or 80)
        self._h2 = HTTP20Connection(
            name,
            chosen_port,
            secure,
            window_manager,
            enable_push,
            ssl_context,
            proxy_host,
            proxy_port,
            None,
            proxy_headers,
            timeout,
            backend=backend,
            backend_options=backend_options,
            **options,
        )
        self.host, self.port, self.secure = self._h2.host, self._h2.port, self._h2.secure
        self.ssl_context = ssl_context
        self.proxy_host, self.proxy_port = self._h2.proxy_host, self._h2.proxy_port
        self.proxy_headers = proxy_headers
        self.url = self._h2.url
        self._client_options: dict[str, Any] = {
            "backend": backend,
            "backend_options": backend_options,
            "http2": False,
            "trust_env": False,
            "follow_redirects": False,
            "cookies": no_cookies(),  # hyper kept no cookies
        }
        for key in ("verify", "cert", "timeout", "proxy", "headers", "max_decompressed_size"):
            if key in self._h2._options:
                self._client_options[key] = self._h2._options[key]
        self._lock = threading.Lock()
        self._mode: HTTPVersion | None = None
        self._client: Client | None = None
        self._threads = _Http11Thread()

    def __repr__(self) -> str:
        mode = "not connected" if self._mode is None else self._mode.value
        return f"<h2any.sync.HTTPConnection {self.url} ({mode})>"

    @property
    def version(self) -> HTTPVersion:
        """The protocol in use: ``HTTPVersion.http20`` or ``HTTPVersion.http11``."""
        return HTTPVersion.http11 if self._mode is None else self._mode

    def connect(self) -> None:
        """Connect and choose the protocol (no-op once chosen)."""
        self._choose()

    def _choose(self) -> HTTPVersion:
        with self._lock:
            if self._mode is None:
                try:
                    self._h2.connect()
                except HTTPVersionError:
                    self._client = Client(**self._client_options)
                    self._mode = HTTPVersion.http11
                else:
                    self._mode = HTTPVersion.http20
            return self._mode

    def _http11(self) -> Client:
        client = self._client
        if client is None:  # closed, then used again
            with self._lock:
                if self._client is None:
                    self._client = Client(**self._client_options)
                client = self._client
        return client

    def request(
        self, method: str, url: str, body: Any = None, headers: _HeaderInput = None
    ) -> int | None:
        """Send a request; return its stream id over HTTP/2, ``None`` over HTTP/1.1.

        Over HTTP/1.1 this returns once the response's head has arrived (h2any's client
        sends and reads in one call); the response waits for `get_response`.
        """
        if self._choose() is HTTPVersion.http20:
            return self._h2.request(method, url, body, headers)
        check_not_in_event_loop("HTTPConnection.request()")
        self._request_http11(method, url, _pairs(headers), body)
        return None

    def _request_http11(
        self, method: str, url: str, fields: list[tuple[bytes, bytes]], body: Any
    ) -> None:
        method, url, headers = _prepare(method, url, fields)
        if not url.startswith("/"):
            raise InvalidRequest(f"the request target must start with '/': {url!r}")
        response = self._http11().request(method, self.url + url, content=body, headers=headers)
        self._threads.responses.append(response)

    def get_response(self, stream_id: int | None = None) -> HTTP20Response | HTTP11Response:
        """The response to request ``stream_id`` (HTTP/2), or this thread's oldest
        uncollected one."""
        if self._mode is HTTPVersion.http20:
            return self._h2.getresponse(stream_id)
        if stream_id is not None:
            raise ValueError("HTTP/1.1 has no stream ids: call get_response() without one")
        responses = self._threads.responses
        if not responses:
            raise ValueError("no request of this thread is waiting for get_response()")
        response = responses.popleft()
        return HTTP11Response(response, response._loop)

    getresponse = get_response

    def putrequest(self, method: str, selector: str, **kwargs: Any) -> int | None:
        """Start building a request: its stream id over HTTP/2, ``None`` over HTTP/1.1."""
        if self._choose() is HTTPVersion.http20:
            return self._h2.putrequest(method, selector, **kwargs)
        self._threads.draft = _Http11Draft(method, selector)
        return None

    def _http11_draft(self) -> _Http11Draft:
        draft = self._threads.draft
        if draft is None:
            raise ValueError("no request under construction in this thread")
        return draft

    def putheader(
        self,
        header: str | bytes,
        argument: str | bytes,
        stream_id: int | None = None,
        replace: bool = False,
    ) -> None:
        """Add a header to the request from `putrequest`."""
        if self._mode is HTTPVersion.http20:
            self._h2.putheader(header, argument, stream_id, replace)
            return
        draft = self._http11_draft()
        name = _bytes(header).lower()
        if replace:
            draft.headers = [(n, v) for n, v in draft.headers if n != name]
        draft.headers.append((name, _bytes(argument)))

    def endheaders(
        self,
        message_body: bytes | str | None = None,
        final: bool = False,
        stream_id: int | None = None,
    ) -> None:
        """End the headers. Over HTTP/1.1 the body is gathered until ``final`` and the
        request sent then (with a Content-Length)."""
        if self._mode is HTTPVersion.http20:
            self._h2.endheaders(message_body, final, stream_id)
            return
        draft = self._http11_draft()
        draft.body = bytearray(b"" if message_body is None else _bytes(message_body))
        if final:
            self._finish_http11(draft)

    def send(self, data: bytes | str, final: bool = False, stream_id: int | None = None) -> None:
        """Send more of the body (HTTP/1.1: gathered until ``final``)."""
        if self._mode is HTTPVersion.http20:
            self._h2.send(data, final, stream_id)
            return
        draft = self._http11_draft()
        if draft.body is None:
            raise ValueError("call endheaders() before send()")
        draft.body += _bytes(data)
        if final:
            self._finish_http11(draft)

    def _finish_http11(self, draft: _Http11Draft) -> None:
        self._threads.draft = None
        body = bytes(draft.body or b"")
        self._request_http11(draft.method, draft.url, draft.headers, body or None)

    def getpushes(
        self, stream_id: int | None = None, capture_all: bool = False
    ) -> Iterator[HTTP20Push]:
        """Server pushes (HTTP/2 only; nothing over HTTP/1.1)."""
        if self._mode is HTTPVersion.http20:
            return self._h2.getpushes(stream_id, capture_all)
        return iter(())

    get_pushes = getpushes

    def close(self) -> None:
        """Close the connection(s). The next request connects (and chooses) again."""
        with self._lock:
            client, self._client, self._mode = self._client, None, None
        self._h2.close()
        if client is not None:
            client.close()

    def __enter__(self) -> HTTPConnection:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _split_host(host: str) -> tuple[str, int | None]:
    """``"h"``, ``"h:1"``, ``"[::1]:1"``, ``"::1"`` -> (host, port or None)."""
    if host.startswith("["):
        literal, _, rest = host[1:].partition("]")
        return literal, int(rest[1:]) if rest.startswith(":") else None
    if host.count(":") == 1:
        name, _, port = host.partition(":")
        return name, int(port)
    return host, None


def _prepare(
    method: str, url: str, fields: list[tuple[bytes, bytes]]
) -> tuple[str, str, list[tuple[bytes, bytes]]]:
    """hyper's header conventions -> h2any's: pseudo-headers, dropped fields."""
    headers: list[tuple[bytes, bytes]] = []
    for raw_name, value in fields:
        name = raw_name.lower()
        if name in _CONNECTION_SPECIFIC:
            continue
        if name == b":method":
            method = value.decode("ascii")
        elif name == b":path":
            url = value.decode("utf-8")
        elif name == b":authority":
            headers.append((b"host", value))
        elif name == b":scheme":
            pass  # the connection's own scheme is used
        elif name.startswith(b":"):
            raise InvalidRequest(f"unknown pseudo-header {raw_name!r}")
        else:
            headers.append((name, value))
    return method, url, headers
