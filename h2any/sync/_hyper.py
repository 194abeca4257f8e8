"""A drop-in for hyper's ``HTTP20Connection``, built on the blocking facade.

hyper (abandoned; it no longer imports on Python 3.10+) had a stdlib-``http.client``-like
API: ``request()`` sends and returns a stream id, ``getresponse(stream_id)`` collects the
response later. This module maps that API onto [`h2any.sync.Connection`][h2any.sync.Connection]; it
holds no protocol logic of its own.

Theory of operation
===================

* **One facade per shim**, opened lazily on first use (or by ``connect()``), closed by
  ``close()``. After ``close()`` the next use opens a fresh connection, as in hyper.
* **Send now, collect later.** The facade's ``request()`` blocks until the response headers
  arrive, which does not fit ``request() -> stream id``. So ``request()`` starts the async
  core's ``Connection.request`` as a task in the facade's loop thread (in a task group of
  the shim's own, see ``_Runner``) and returns once the request has been handed to the
  connection task; ``getresponse()`` waits for that task's result.
* **Request ids.** h2any assigns stream ids in its connection task when a stream opens
  (which may wait for a free slot), and reports none earlier. The shim therefore numbers
  requests itself, ``1, 3, 5, ...`` per connection, in the order ``request()`` /
  ``putrequest()`` are called, and submits ``request()`` calls to the core in exactly that
  order: a lock covers numbering and submission, and ``task_group.start()`` returns once
  the core has queued the request. On asyncio the loop starts submitted calls in the order
  they were submitted, so the lock is released at once and threads wait for their
  submissions concurrently; trio starts new tasks in shuffled order, so there each
  submission completes before the next begins. The core opens streams first come, first
  served, so the id returned is the stream id on the wire -- except after a request gave
  up waiting for a stream slot (``PoolTimeout``), when requests begun with ``putrequest()``
  are sent (``endheaders()``) in another order than they were begun, or, on asyncio, when
  a request refused at once (``InvalidRequest``) had a later request of another thread
  submitted behind it. The wire id is always ``HTTP20Response.stream_id``. An exact id
  would need a small hook from the core (see ``_Runner``).
* **Thread safety.** Any number of threads may share one shim: the facade is thread-safe;
  the shim's own state (open connection, requests not yet collected) is under a lock.
  ``getresponse()`` / ``getpushes()`` / ``putheader()`` without a stream id mean the calling
  thread's own oldest outstanding / latest request, so threads never take each other's
  responses.
"""

from __future__ import annotations

import functools
import http
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Any, final

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._config import TimeoutTypes
from .._connection import Connection as AsyncConnection
from .._exceptions import ConnectionClosed, InvalidRequest
from .._flow import BaseFlowControlManager
from .._headers import Headers
from .._response import Response as AsyncResponse
from .._response import body_read, cached_body
from ._connection import Connection, PushedStream, hosted_connection, take_complete_body
from ._connection import Response as SyncResponse
from ._portal import Call, LoopThread, check_not_in_event_loop

__all__ = ("HTTP20Connection", "HTTP20Push", "HTTP20Response", "HTTPHeaderMap")

# hyper silently dropped these; h2any refuses them (they are not allowed in HTTP/2).
_CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)
# Header names whose values hyper never split on commas.
_UNSPLIT = frozenset({b"set-cookie", b"set-cookie2"})

_WIRE_IDS_KEPT = 1024

_HeaderInput = Any  # a mapping, an HTTPHeaderMap, or (name, value) pairs; str or bytes


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


# ---------------------------------------------------------------------------- headers


@final
class HTTPHeaderMap:
    """hyper's header container: case-insensitive, repeated names kept, values as bytes.

    * ``headers["name"]`` / ``headers[b"name"]`` is the LIST of values, in order, each
      comma-separated value split out (except ``set-cookie``); ``KeyError`` if absent.
    * ``get(name, default=None)`` is the same list, or ``default``.
    * Iteration, ``items()``, ``keys()``, ``values()`` go over ``(name, value)`` pairs of
      bytes in that split ("canonical") form, names lowercase; ``len()`` counts them.
    * ``iter_raw()`` gives the fields exactly as stored.
    * ``headers[name] = value`` appends a field; ``del headers[name]`` removes every field
      of that name; ``replace(name, value)`` does both.
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
        """Replace every field named ``key`` with one ``key: value`` field."""
        try:
            del self[key]
        except KeyError:
            pass
        self[key] = value

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

    def keys(self) -> Iterator[bytes]:
        """Every name, once per canonical value (so as many as ``len()``)."""
        return (name for name, _ in self)

    def values(self) -> Iterator[bytes]:
        """Every canonical value."""
        return (value for _, value in self)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
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


@final
class HTTP20Response:
    """A response, as hyper's ``HTTP20Response``; returned by ``getresponse()``.

    Attributes: ``status``, ``reason`` (the standard phrase, ``""`` if unknown; HTTP/2
    sends none), ``headers`` (an `HTTPHeaderMap`), ``stream_id`` (the stream id on
    the wire), ``trailers``. Use it as a context manager, or call `close`.
    """

    def __init__(self, response: SyncResponse, loop: LoopThread) -> None:
        self._response = response
        self._async: AsyncResponse = response._response
        self._loop = loop
        self.status: int = response.status
        try:
            self.reason = http.HTTPStatus(self.status).phrase
        except ValueError:
            self.reason = ""
        self.headers = HTTPHeaderMap(response.headers.raw)
        self.stream_id: int = response.stream_id
        self._buffer = bytearray()
        self._chunks: Any = None  # the core's body iterator, once partial reading began
        self._decode: bool | None = None
        self._eof = False
        self._trailers: HTTPHeaderMap | None = None

    def __repr__(self) -> str:
        return f"<h2any.sync.HTTP20Response [{self.status}] stream {self.stream_id}>"

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

    def fileno(self) -> None:
        """hyper compatibility: there is no socket of this response's own."""
        return None

    def close(self) -> None:
        """Close the response; if its body was not read to the end, reset the stream."""
        self._response.close()

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
class HTTP20Push:
    """A promised (pushed) stream, as hyper's ``HTTP20Push``; yielded by ``getpushes()``.

    Attributes: ``scheme``, ``method``, ``authority``, ``path`` (bytes, from the promised
    request), ``request_headers`` (an `HTTPHeaderMap` of the promised request,
    pseudo-headers included, as in hyper), ``stream_id`` (the promised stream) and
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
        pseudo = [
            (b":method", self.method),
            (b":scheme", self.scheme),
            (b":authority", self.authority),
            (b":path", self.path),
        ]
        self.request_headers = HTTPHeaderMap(pseudo, _pairs(push.request_headers))

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
    """One request sent with ``request()``: its result arrives from the loop thread."""

    __slots__ = ("future", "response", "stream_id")

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.future = _Outcome()
        self.response: HTTP20Response | None = None  # set by getresponse()/getpushes()


class _Draft:
    """A request under construction with ``putrequest()``.

    ``endheaders()`` sends it; a body continued with ``send()`` flows through ``pipe``, a
    small memory channel in the loop thread that the core reads as an async iterable (so
    each ``send()`` waits while the server's window is shut: bounded memory).
    """

    __slots__ = ("headers", "method", "pipe", "sent_headers", "url")

    def __init__(self, method: str, url: str) -> None:
        self.method = method
        self.url = url
        self.headers: list[tuple[bytes, bytes]] = []
        self.sent_headers = False
        self.pipe: MemoryObjectSendStream[bytes] | None = None


class _Runner:
    """The shim's task group in the facade's loop thread, where requests run as tasks.

    It holds no reference to the shim, so an abandoned shim is garbage-collected and its
    facade warns (ResourceWarning) and closes.

    What an exact stream id would need from the core: a way to wait until a request's
    stream is *open on the wire* (HEADERS written, id assigned). ``Connection.request_nowait``
    returns at once, so its ``PendingResponse.stream_id`` is 0 until then; the shim would
    return the id after such a wait.
    """

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self._task_group: anyio.abc.TaskGroup | None = None

    async def host(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        async with anyio.create_task_group() as task_group:
            self._task_group = task_group
            task_status.started()
            await anyio.sleep_forever()  # cancelled when the facade stops its loop

    async def submit(self, pending: _Pending, method: str, url: str, kwargs: Any) -> None:
        """Start the request; return once the core has queued it (or raise its error)."""
        assert self._task_group is not None
        await self._task_group.start(self._run, pending, method, url, kwargs)
        future = pending.future
        if future.done():
            error = future.exception()
            if error is not None:
                raise error

    async def _run(
        self,
        pending: _Pending,
        method: str,
        url: str,
        kwargs: Any,
        *,
        task_status: anyio.abc.TaskStatus[None],
    ) -> None:
        call = self._connection.request(method, url, **kwargs)
        body = kwargs["body"]
        # started() does not yield: the request's synchronous part (checks, then queueing
        # the stream for the connection task) runs before submit() resumes.
        task_status.started()
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
            if isinstance(body, MemoryObjectReceiveStream):
                body.close()  # a send() still waiting fails instead of hanging


class _ThreadState(threading.local):
    def __init__(self) -> None:
        self.outstanding: deque[int] = deque()  # ids sent by this thread, not collected
        self.latest: int | None = None  # the last request id this thread made


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

    Keywords beyond hyper's: ``timeout`` (seconds or [`h2any.Timeout`][h2any.Timeout]; default
    h2any's), ``backend`` (``"asyncio"``/``"trio"``) and any other option of
    [`h2any.Connection`][h2any.Connection]. hyper's ``proxy_host``/``proxy_port``/``force_proto``
    are refused.

    Thread-safe: any number of threads may share one instance (see the module notes). The
    connection opens on first use or `connect`; close it with `close` or a
    ``with`` block. Responses must not be used after the connection is closed.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        secure: bool | None = None,
        window_manager: type[BaseFlowControlManager] | None = None,
        enable_push: bool = False,
        ssl_context: Any = None,
        *,
        timeout: TimeoutTypes | None = None,
        backend: str = "asyncio",
        backend_options: dict[str, Any] | None = None,
        proxy_host: str | None = None,
        proxy_port: int | None = None,
        force_proto: str | None = None,
        **options: Any,
    ) -> None:
        if proxy_host is not None or proxy_port is not None:
            raise NotImplementedError("HTTP20Connection: proxies are not supported")
        if force_proto is not None:
            raise NotImplementedError("HTTP20Connection: force_proto is not supported")
        self.host, parsed_port = _split_host(host)
        self.port = port if port is not None else (parsed_port or 443)
        self.secure = (self.port == 443) if secure is None else bool(secure)
        literal = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"{'https' if self.secure else 'http'}://{literal}:{self.port}"
        if window_manager is not None:
            options["window_manager"] = window_manager
        if enable_push:
            options["enable_push"] = True
        if ssl_context is not None:
            options["verify"] = ssl_context
        if timeout is not None:
            options["timeout"] = timeout
        AsyncConnection(self.url, **options)  # check the options now, not at first use
        self._options = options
        self._backend = backend
        self._backend_options = backend_options
        self._lock = threading.Lock()  # the shim's state below
        self._send_lock = threading.Lock()  # submissions, in request-id order
        self._connection: Connection | None = None
        self._runner: _Runner | None = None
        self._next_stream_id = 1
        self._pending: dict[int, _Pending] = {}
        self._drafts: dict[int, _Draft] = {}
        self._wire_ids: dict[int, int] = {}  # collected request id -> wire id, the latest
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
            self._wire_ids.clear()
        if connection is not None:
            connection.close()

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
        """Send a request now; return its stream id for `getresponse`.

        ``body`` is anything [`h2any.Connection.request`][h2any.Connection.request] takes: bytes,
        str (UTF-8), a file (streamed, never read whole), or an iterable of bytes; ``headers`` a
        mapping or ``(name, value)`` pairs of str or bytes. A streamed body is sent in the
        background: ``getresponse()`` raises if it fails. Connection-specific headers
        (``Connection``, ...) are dropped, as hyper did. Raises
        [`h2any.InvalidRequest`][h2any.InvalidRequest] for a bad request and the connection errors
        of [`h2any.Connection`][h2any.Connection].
        """
        check_not_in_event_loop("HTTP20Connection.request()")
        return self._send(method, url, _pairs(headers), body, stream_id=None)

    def _send(
        self,
        method: str,
        url: str,
        fields: list[tuple[bytes, bytes]],
        body: Any,
        stream_id: int | None,
    ) -> int:
        method, url, headers = _prepare(method, url, fields)
        connection, runner = self._open()
        loop = connection._loop
        # On asyncio, calls submitted to the loop start in submission order, so the lock
        # need only cover the submission: threads wait for their requests concurrently.
        # trio runs new tasks in shuffled order: there, one submission at a time.
        ordered = loop.backend == "asyncio"
        with self._send_lock:
            allocated = stream_id is None
            with self._lock:
                if stream_id is None:
                    stream_id = self._next_stream_id
                    self._next_stream_id += 2
                pending = _Pending(stream_id)
            submitted = loop.submit(
                runner.submit, pending, method, url, {"headers": headers, "body": body}
            )
            if not ordered:
                self._wait_submitted(loop, submitted, stream_id, allocated)
        if ordered:
            self._wait_submitted(loop, submitted, stream_id, allocated)
        with self._lock:
            self._pending[stream_id] = pending
        state = self._threads
        state.outstanding.append(stream_id)
        state.latest = stream_id
        return stream_id

    def _wait_submitted(
        self, loop: LoopThread, submitted: Call, stream_id: int, allocated: bool
    ) -> None:
        try:
            loop.wait(submitted)
        except BaseException:
            with self._lock:
                # Refused before reaching the wire: the id was not used there either
                # (unless a later request took the next one meanwhile).
                if allocated and self._next_stream_id == stream_id + 2:
                    self._next_stream_id = stream_id
            raise

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
        response = self._response_of(pending, connection._loop)
        with self._lock:
            # For getpushes() after getresponse(): remember the latest few wire ids.
            self._wire_ids[stream_id] = response.stream_id
            if len(self._wire_ids) > _WIRE_IDS_KEPT:
                del self._wire_ids[next(iter(self._wire_ids))]
        return response

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
            # Pushes are keyed by the id on the wire, known once the headers arrived.
            wire_id = self._response_of(pending, connection._loop).stream_id
        else:
            wire_id = self._wire_ids.get(stream_id, stream_id)
        loop = connection._loop
        return (HTTP20Push(push, loop) for push in connection.get_pushes(wire_id, capture_all))

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
        """Start building a request; return its stream id. Nothing is sent yet."""
        with self._lock:
            stream_id = self._next_stream_id
            self._next_stream_id += 2
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
        draft.sent_headers = True
        body: Any
        if final:
            with self._lock:
                self._drafts.pop(stream_id, None)
            body = None if message_body is None else _bytes(message_body)
        else:
            draft.pipe, body = anyio.create_memory_object_stream[bytes](1)
        try:
            self._send(draft.method, draft.url, draft.headers, body, stream_id=stream_id)
        except BaseException:
            with self._lock:
                self._drafts.pop(stream_id, None)
            raise
        if message_body is not None and not final:
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
