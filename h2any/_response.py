"""The response to one request: status and headers at once, the body as it is read."""

from __future__ import annotations

import codecs
import json as jsonlib
import sys
from collections import deque
from collections.abc import AsyncIterator, Iterable
from datetime import timedelta
from http import HTTPStatus
from time import perf_counter
from types import TracebackType
from typing import TYPE_CHECKING, Any, final

import anyio
import anyio.lowlevel

from ._config import mask_url
from ._decoders import ContentDecoder, make_decoder
from ._exceptions import HTTPStatusError, ProtocolError, ReadTimeout
from ._headers import Headers, has_wire_name, headers_from_wire
from ._models import Request, request_from_fields
from ._stream import Data, Ended, Failed, ResponseHeaders, Trailers

if TYPE_CHECKING:
    from ._stream import Stream

__all__ = (
    "LineSplitter",
    "Response",
    "TextDecoder",
    "body_arrived",
    "body_read",
    "cached_body",
    "charset_of",
    "decode_text",
    "receive_response",
    "split_lines",
    "status_error",
    "usable_encoding",
)

# How long a failed request waits for its body's pump to stop (a sync source may be in the
# middle of a read in a worker thread).
PUMP_STOP_TIMEOUT = 2.0


@final
class _Empty:
    """The type of ``EMPTY``: nothing has arrived yet."""


EMPTY = _Empty()


@final
class Response:
    """An HTTP/2 response, returned by [`Connection.request`][h2any.Connection.request] when its
    headers arrive.

    Attributes:
        status: the status code (``status_code`` is the same, as in httpx).
        headers: the response [`Headers`][h2any.Headers].
        stream_id: the HTTP/2 stream that carried it.
        trailers: trailing [`Headers`][h2any.Headers], once the body has been read (``None`` if the
            server sent none).
        http_version: ``"HTTP/2"`` (``"HTTP/1.1"`` for a [`Client`][h2any.Client] response that
            came over HTTP/1.1).
        num_bytes_downloaded: body bytes received so far, as they came off the wire (before
            decompression).

    The body is read with `read` or `aiter_bytes` (`aiter_text`, `aiter_lines`); data is
    granted back to the server's flow-control window only as it is consumed here. `text` and
    `json` need the body read first (``await response.read()``).

    The names httpx users know are here too (`status_code`, `text`, `json`,
    `raise_for_status`, `is_success`, `url`, `request`, `elapsed`, ...); they cost nothing
    until used: each is computed when first asked for.
    """

    http_version = "HTTP/2"
    num_bytes_downloaded = 0
    # Set only when used or known (class-level defaults: nothing per response on the hot
    # path). _started/_finished are perf_counter() readings for `elapsed`.
    _started: float | None = None
    _finished: float | None = None
    _request: Request | None = None
    _url: str | None = None
    _history: list[Response] | None = None
    _reason: str | None = None
    _encoding: str | None = None
    _text: str | None = None

    def __init__(
        self,
        stream: Stream,
        status: int,
        headers: Headers,
        max_decompressed_size: int | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.stream_id = stream.stream_id
        self.trailers: Headers | None = None
        self._max_decompressed_size = max_decompressed_size
        self._stream = stream
        self._complete = False
        self._closed = False
        self._content: bytes | None = None
        self._content_decoded = True

    def __repr__(self) -> str:
        return f"<Response [{self.status}] stream {self.stream_id}>"

    # ------------------------------------------------------------------ httpx's names

    @property
    def status_code(self) -> int:
        """The status code: the same as ``status`` (httpx's name)."""
        return self.status

    @property
    def reason_phrase(self) -> str:
        """The reason phrase: HTTP/2 sends none, so this is the standard phrase of the status
        (``"Not Found"``), as httpx gives for HTTP/2; ``""`` for a code without one. An
        HTTP/1.1 response gives the phrase the server sent."""
        reason = self._reason
        if reason is None:
            try:
                reason = HTTPStatus(self.status).phrase
            except ValueError:
                reason = ""
        return reason

    @reason_phrase.setter
    def reason_phrase(self, value: str) -> None:
        self._reason = value

    @property
    def is_informational(self) -> bool:
        """True for a 1xx status."""
        return 100 <= self.status <= 199

    @property
    def is_success(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status <= 299

    @property
    def is_redirect(self) -> bool:
        """True for a 3xx status (not all carry a ``Location``: see `has_redirect_location`)."""
        return 300 <= self.status <= 399

    @property
    def is_client_error(self) -> bool:
        """True for a 4xx status."""
        return 400 <= self.status <= 499

    @property
    def is_server_error(self) -> bool:
        """True for a 5xx status."""
        return 500 <= self.status <= 599

    @property
    def is_error(self) -> bool:
        """True for a 4xx or 5xx status."""
        return 400 <= self.status <= 599

    @property
    def has_redirect_location(self) -> bool:
        """True for a redirect that can be followed: 301, 302, 303, 307 or 308 with a
        ``Location`` header."""
        return self.status in _REDIRECT_STATUSES and "location" in self.headers

    @property
    def request(self) -> Request:
        """The [`Request`][h2any.Request] that was sent: method, full URL and headers (for a
        pushed response, the request the server's PUSH_PROMISE named)."""
        request = self._request
        if request is None:
            request = self._request = _request_of(self._stream)
        return request

    @request.setter
    def request(self, value: Request) -> None:
        self._request = value

    @property
    def url(self) -> str:
        """The full URL of the request (``"https://example.org/path?query"``), as sent:
        international host names in their IDNA form, the path percent-encoded. It never holds
        user information (the [`Client`][h2any.Client] sends that as an ``authorization``
        header)."""
        url = self._url
        if url is None:
            url = self._url = self.request.url
        return url

    @url.setter
    def url(self, value: str) -> None:
        self._url = value

    @property
    def history(self) -> list[Response]:
        """The redirect responses that led to this one, oldest first (``[]`` when the
        [`Client`][h2any.Client] followed no redirect)."""
        history = self._history
        if history is None:
            history = self._history = []
        return history

    @history.setter
    def history(self, value: list[Response]) -> None:
        self._history = value

    @property
    def elapsed(self) -> timedelta:
        """The time from sending the request to the end of the response body (as httpx).

        The clock starts when the request is handed to the connection
        ([`Connection.request`][h2any.Connection.request], [`Client.request`][h2any.Client.request]
        and ``stream``; for [`Connection.request_nowait`][h2any.Connection.request_nowait],
        [`DuplexStream.response`][h2any.DuplexStream.response] and pushes, when the response is
        awaited) and stops when the body ends, or when the response is closed before that.

        Raises:
            RuntimeError: the body is still being received (read it, or close the response).
        """
        started, finished = self._started, self._finished
        if started is None:
            raise RuntimeError("this response's time was not measured")
        if finished is None:
            raise RuntimeError(
                "'elapsed' is known once the body has been read or the response closed"
            )
        return timedelta(seconds=finished - started)

    @property
    def encoding(self) -> str:
        """The text encoding of the body: the ``charset`` of its ``Content-Type`` when Python
        knows it, else ``"utf-8"`` (httpx's default too; h2any does not guess from the bytes).
        Set it to decode `text` another way."""
        encoding = self._encoding
        if encoding is None:
            encoding = self._encoding = charset_of(self.headers.get("content-type")) or "utf-8"
        return encoding

    @encoding.setter
    def encoding(self, value: str) -> None:
        if not usable_encoding(value):
            raise LookupError(f"{value!r} is not a text encoding that can decode any body")
        self._encoding = value
        self._text = None

    @property
    def text(self) -> str:
        """The body as text, decoded with `encoding` (undecodable bytes become U+FFFD).

        Raises:
            RuntimeError: the body has not been read (``await response.read()`` first).
        """
        text = self._text
        if text is None:
            text = self._text = self.content.decode(self.encoding, errors="replace")
        return text

    def json(self, **kwargs: Any) -> Any:
        """The body parsed as JSON (``json.loads``, which takes UTF-8, -16 or -32);
        ``kwargs`` go to ``json.loads``.

        Raises:
            RuntimeError: the body has not been read (``await response.read()`` first).
            json.JSONDecodeError: the body is not JSON; ``UnicodeDecodeError`` if it is not
                even UTF-8, -16 or -32 (both are ``ValueError``).
        """
        return jsonlib.loads(self.content, **kwargs)

    def raise_for_status(self) -> Response:
        """Raise [`HTTPStatusError`][h2any.HTTPStatusError] unless the status is 2xx; return
        the response itself otherwise (so that calls chain, as in httpx).

        Raises:
            HTTPStatusError: a 1xx, 3xx, 4xx or 5xx status; the message names the status and
                the URL (never its credentials).
        """
        if 200 <= self.status <= 299:
            return self
        raise status_error(self, self)

    async def aread(self) -> bytes:
        """The same as `read` (httpx's name)."""
        return await self.read()

    def aiter_raw(self) -> AsyncIterator[bytes]:
        """The same as ``aiter_bytes(decode_content=False)`` (httpx's name)."""
        return self.aiter_bytes(decode_content=False)

    def aiter_text(self) -> AsyncIterator[str]:
        """Iterate over the body as text, decoded with `encoding` as it arrives (a character
        split between two chunks is held back until it is whole).

        Raises:
            ReadTimeout, DecodingError, StreamReset, ConnectionClosed: as `aiter_bytes`.
        """
        return _TextIterator(self.aiter_bytes(), self.encoding)

    def aiter_lines(self) -> AsyncIterator[str]:
        """Iterate over the body's lines as they arrive, without their line breaks. Lines
        end as with `str.splitlines` (``\n``, ``\r\n``, ``\r``, ...), as in httpx. A line
        is held in memory until it ends.

        Raises:
            ReadTimeout, DecodingError, StreamReset, ConnectionClosed: as `aiter_bytes`.
        """
        return _LineIterator(_TextIterator(self.aiter_bytes(), self.encoding))

    # ------------------------------------------------------------------ the body

    @property
    def is_complete(self) -> bool:
        """True once the whole body (and any trailers) has arrived and been consumed."""
        return self._complete

    @property
    def content(self) -> bytes:
        """The body, after `read`."""
        if self._content is None:
            raise RuntimeError("the body has not been read: call 'await response.read()' first")
        return self._content

    async def read(self, *, decode_content: bool = True) -> bytes:
        """Read and return the whole body.

        The body is decoded per its ``Content-Encoding`` (gzip, deflate, br, zstd) unless
        ``decode_content=False``, which gives the bytes as they came off the wire. The
        result is kept: a second call returns it again.

        Raises:
            DecodingError: the body is corrupt, truncated, in an unsupported coding, or
                larger than the connection's ``max_decompressed_size``.
            ReadTimeout, StreamReset, ConnectionClosed, ...: as `aiter_bytes`.
        """
        if self._content is not None:
            return self._cached(decode_content)
        if self._closed:
            raise RuntimeError("the response is closed; its body can no longer be read")
        iterator = _BodyIterator(self, decode_content)
        # What has arrived is taken without a coroutine step per chunk -- for a small
        # response, usually all of it (the stream had ended before its headers were read).
        chunks = iterator.take_ready()
        if not iterator.done:
            chunks += [chunk async for chunk in iterator]
        self._content = b"".join(chunks)
        self._content_decoded = decode_content
        return self._content

    def _cached(self, decode_content: bool) -> bytes:
        assert self._content is not None
        if decode_content == self._content_decoded or not self.headers.get("content-encoding"):
            return self._content
        if self._content_decoded:
            raise RuntimeError(
                "the body was already read decoded; the raw bytes were not kept "
                "(call read(decode_content=False) first to have both)"
            )
        decoder = make_decoder(self.headers.get("content-encoding"), self._max_decompressed_size)
        return decoder.decode(self._content) + decoder.flush()

    def aiter_bytes(self, *, decode_content: bool = True) -> AsyncIterator[bytes]:
        """Iterate over the body in chunks as they arrive, decoded unless
        ``decode_content=False`` (decoding streams: it never buffers the whole body).

        Breaking out of the loop early is fine: closing the response (or leaving
        [`Connection.stream`][h2any.Connection.stream]) then resets the stream.

        Raises:
            ReadTimeout: no data arrived within the read timeout (the stream is reset).
            DecodingError: as `read`.
            StreamReset, ConnectionClosed, ConnectionTerminated, ProtocolError: the
                stream or connection failed mid-body.
        """
        if self._closed and self._content is None:
            raise RuntimeError("the response is closed; its body can no longer be read")
        return _BodyIterator(self, decode_content)

    def _take(self) -> bytes | _Empty | None:
        """The next non-empty chunk already received, None at the end of the body, or
        ``EMPTY`` if nothing is there yet."""
        stream = self._stream
        items = stream.items
        try:
            while items:
                item = items.popleft()
                kind = type(item)
                if kind is Data:
                    stream.consumed(item.flow_size)  # type: ignore[union-attr]
                    data = item.data  # type: ignore[union-attr]
                    if data:
                        self.num_bytes_downloaded += len(data)
                        return data
                elif kind is Ended:
                    self._complete = True
                    self._finished = perf_counter()
                    return None
                elif kind is Trailers:
                    self.trailers = headers_from_wire(item.fields)  # type: ignore[union-attr]
                elif kind is Failed:
                    raise item.error  # type: ignore[union-attr]
                else:
                    raise ProtocolError(f"stream {self.stream_id}: unexpected second HEADERS")
        except BaseException:
            self._give_up()
            raise
        return None if self._complete else EMPTY

    async def _next_chunk(self) -> bytes | None:
        """The next non-empty chunk of the body, or None at its end; each wait for data is
        bounded by the read timeout (kept by the connection's watchdog, see ``_watch``)."""
        stream = self._stream
        while True:
            chunk = self._take()
            if chunk is not EMPTY:
                return chunk  # type: ignore[return-value]
            limit = stream.timeout.read
            try:
                await stream.watch(limit)
            except BaseException:
                self._give_up()
                raise
            finally:
                stream.unwatch()
            if stream.timed_out and not stream.items:
                self._give_up()
                if stream.expires <= stream.link.watchdog.clock():
                    raise stream.timeout_error()
                raise ReadTimeout(f"stream {self.stream_id}: no data for {limit} s")

    def _give_up(self) -> None:
        """Reading failed or was cancelled: reset the stream, release its unread data."""
        self._stream.abandon()
        self._closed = True
        if self._finished is None:
            self._finished = perf_counter()

    async def aclose(self) -> None:
        """Close the response; if the body was not read to its end, reset the stream.

        Unread data is handed back to the connection's flow-control window.
        """
        if not self._closed:
            self._closed = True
            if not self._complete or self._stream.items:
                self._stream.abandon()
            if self._finished is None:
                self._finished = perf_counter()
        await anyio.lowlevel.checkpoint()

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


@final
class _BodyIterator:
    """The async iterator behind [`Response.aiter_bytes`][h2any.Response.aiter_bytes].

    A class rather than an async generator: a generator abandoned by ``break`` would be
    finalised by the garbage collector (a ResourceWarning on trio); this needs no cleanup.
    """

    __slots__ = ("_decoder", "_replay", "_response", "done")

    def __init__(self, response: Response, decode_content: bool) -> None:
        self._response = response
        self.done = False
        self._decoder: ContentDecoder | None = None
        self._replay: bytes | None = None
        if response._content is not None:  # already read(): replay the body once
            self._replay = response._cached(decode_content)
        else:
            headers = response.headers
            encoding = (
                headers.get("content-encoding")
                if decode_content and has_wire_name(headers, b"content-encoding")
                else None
            )
            if encoding:
                self._decoder = make_decoder(encoding, response._max_decompressed_size)

    def __aiter__(self) -> _BodyIterator:
        return self

    async def __anext__(self) -> bytes:
        if self.done:
            raise StopAsyncIteration
        replay = self._replay
        if replay is not None:
            self.done = True
            if replay:
                return replay
            raise StopAsyncIteration
        response = self._response
        decoder = self._decoder
        while True:
            if decoder is not None and decoder.more:
                # The last chunk decodes to more than one piece: the next piece, with
                # no new input (decoded output stays bounded, however large the bomb).
                output: bytes | None = self._emit(b"")
            else:
                output = self._emit(await response._next_chunk())
            if output is None:
                raise StopAsyncIteration
            if output:
                return output

    def take_ready(self) -> list[bytes]:
        """The (decoded) chunks of what has already arrived, without waiting."""
        chunks = []
        response = self._response
        decoder = self._decoder
        while not self.done:
            if decoder is not None and decoder.more:
                output = self._emit(b"")
                if output:
                    chunks.append(output)
                continue
            chunk = response._take()
            if chunk is EMPTY:
                break
            output = self._emit(chunk)  # type: ignore[arg-type]
            if output:
                chunks.append(output)
        return chunks

    def _emit(self, chunk: bytes | None) -> bytes | None:
        """What to hand out for ``chunk`` (None: the body's end): the (decoded) bytes, b""
        if the decoder kept them all for now, or None once the body is over. A decoder
        hands out one bounded piece per call; while ``decoder.more``, the callers call
        again with b"" before they take the next chunk."""
        decoder = self._decoder
        if decoder is None:
            if chunk is None:
                self.done = True
            return chunk
        try:
            output = decoder.flush() if chunk is None else decoder.decode_piece(chunk)
        except BaseException:
            self._response._give_up()
            raise
        if chunk is None:
            self.done = True
            return output or None
        return output


_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_STATUS_KINDS = {
    1: "Informational response",
    3: "Redirect response",
    4: "Client error",
    5: "Server error",
}


def charset_of(content_type: str | None) -> str | None:
    """The ``charset`` parameter of a ``Content-Type`` value, if Python knows that encoding."""
    if not content_type or "charset" not in content_type.lower():
        return None
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip("\"'").strip()
            return charset if usable_encoding(charset) else None
    return None


# Bytes no text decoder takes whole: decoding them shows whether a codec can decode a body.
_PROBE = b"\xff\xfe\x00a\x80\xc3"


def usable_encoding(name: str) -> bool:
    """Whether ``name`` is a text encoding that decodes any bytes with ``errors="replace"``,
    whole and piece by piece: not ``rot13`` or ``base64`` (not text encodings), nor ``idna``,
    ``punycode`` or ``undefined`` (they raise whatever ``errors`` says) -- names a server's
    ``charset`` may hold."""
    try:
        _PROBE.decode(name, "replace")
        TextDecoder(name).decode(_PROBE, True)
    except Exception:
        return False
    return True


def status_error(response: Response, shown: Any) -> HTTPStatusError:
    """The [`HTTPStatusError`][h2any.HTTPStatusError] for ``response``'s status, its
    ``.response`` being ``shown`` (the response itself, or its blocking facade). Worded as
    httpx's; the URLs are masked."""
    status = response.status
    kind = _STATUS_KINDS.get(status // 100, "Invalid status code")
    try:
        request = response.request
        url = response.url
    except RuntimeError:  # a response without request fields (none are left so)
        request = Request("GET", "")
        url = "(unknown)"
    message = f"{kind} '{status} {response.reason_phrase}' for url '{mask_url(url)}'"
    if response.has_redirect_location:
        message += f"\nRedirect location: '{mask_url(response.headers['location'])}'"
    message += (
        f"\nFor more information check: https://developer.mozilla.org/en-US/docs/Web/HTTP/"
        f"Status/{status}"
    )
    return HTTPStatusError(message, request=request, response=shown)


# What str.splitlines takes for a line break.
_LINE_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


@final
class LineSplitter:
    """Cuts text that arrives in pieces into lines, as `str.splitlines` cuts the whole.

    A ``"\\r"`` at the end of a piece is held back (it may be the first half of
    ``"\\r\\n"``); an unfinished line is kept until its end arrives.
    """

    __slots__ = ("_cr", "_pending")

    def __init__(self) -> None:
        self._pending: list[str] = []
        self._cr = False

    def feed(self, text: str) -> list[str]:
        """The lines that ``text`` completes."""
        if self._cr:
            text = "\r" + text
            self._cr = False
        if text.endswith("\r"):
            self._cr = True
            text = text[:-1]
        if not text:
            return []
        ends_line = text[-1] in _LINE_BREAKS
        lines = text.splitlines()
        if len(lines) == 1 and not ends_line:
            self._pending.append(text)
            return []
        if self._pending:
            self._pending.append(lines[0])
            lines[0] = "".join(self._pending)
            self._pending = []
        if not ends_line:
            self._pending.append(lines.pop())
        return lines

    def flush(self) -> list[str]:
        """The last line, if the text did not end with a line break."""
        if not self._pending and not self._cr:
            return []
        line = "".join(self._pending)
        self._pending = []
        self._cr = False
        return [line]


@final
class TextDecoder:
    """Decodes a body that arrives in pieces: the same text as decoding it whole with
    ``errors="replace"`` (a character split between two pieces waits for its end).

    Python's incremental UTF-16 and UTF-32 decoders raise ``UnicodeError`` on a stream
    without a byte order mark, whatever ``errors`` says, where ``bytes.decode`` takes the
    machine's byte order: this does the same as ``bytes.decode``.
    """

    __slots__ = ("_decoder", "_encoding")

    def __init__(self, encoding: str) -> None:
        self._encoding = encoding
        self._decoder = codecs.getincrementaldecoder(encoding)(errors="replace")

    def decode(self, chunk: bytes, final: bool = False) -> str:
        try:
            return self._decoder.decode(chunk, final)
        except UnicodeDecodeError:  # pragma: no cover (errors="replace" does not raise it)
            raise
        except UnicodeError:
            # No BOM: go on in the machine's byte order, from the bytes held back so far.
            held = self._decoder.getstate()[0]
            name = f"{codecs.lookup(self._encoding).name}-{sys.byteorder[0]}e"
            self._decoder = codecs.getincrementaldecoder(name)(errors="replace")
            return self._decoder.decode(held + chunk, final)


def decode_text(chunks: Iterable[bytes], encoding: str) -> Iterable[str]:
    """``chunks`` decoded to text pieces (blocking iteration, for ``h2any.sync``)."""
    decoder = TextDecoder(encoding)
    for chunk in chunks:
        text = decoder.decode(chunk)
        if text:
            yield text
    text = decoder.decode(b"", True)
    if text:
        yield text


def split_lines(pieces: Iterable[str]) -> Iterable[str]:
    """The lines of text that arrives in ``pieces`` (blocking iteration, for ``h2any.sync``)."""
    splitter = LineSplitter()
    for piece in pieces:
        yield from splitter.feed(piece)
    yield from splitter.flush()


@final
class _TextIterator:
    """The async iterator behind [`Response.aiter_text`][h2any.Response.aiter_text] (a class,
    not an async generator: see `_BodyIterator`)."""

    __slots__ = ("_chunks", "_decoder", "_done")

    def __init__(self, chunks: AsyncIterator[bytes], encoding: str) -> None:
        self._chunks = chunks
        self._decoder = TextDecoder(encoding)
        self._done = False

    def __aiter__(self) -> _TextIterator:
        return self

    async def __anext__(self) -> str:
        while not self._done:
            try:
                chunk = await self._chunks.__anext__()
            except StopAsyncIteration:
                self._done = True
                text = self._decoder.decode(b"", True)
            else:
                text = self._decoder.decode(chunk)
            if text:
                return text
        raise StopAsyncIteration


@final
class _LineIterator:
    """The async iterator behind [`Response.aiter_lines`][h2any.Response.aiter_lines]."""

    __slots__ = ("_done", "_lines", "_splitter", "_text")

    def __init__(self, text: _TextIterator) -> None:
        self._text = text
        self._splitter = LineSplitter()
        self._lines: deque[str] = deque()
        self._done = False

    def __aiter__(self) -> _LineIterator:
        return self

    async def __anext__(self) -> str:
        lines = self._lines
        while not lines:
            if self._done:
                raise StopAsyncIteration
            try:
                piece = await self._text.__anext__()
            except StopAsyncIteration:
                self._done = True
                lines.extend(self._splitter.flush())
            else:
                lines.extend(self._splitter.feed(piece))
        return lines.popleft()


def _request_of(stream: Stream) -> Request:
    """The [`Request`][h2any.Request] of a stream, from the header fields it sent."""
    fields = stream.headers
    if not fields:
        raise RuntimeError("this response has no request of its own")
    if fields[0][0] == b":method":
        return request_from_fields(fields)
    if any(name == b":method" for name, _ in fields):  # a push promise's, in any order
        pseudo = [field for field in fields if field[0][:1] == b":"]
        pseudo.sort(key=lambda field: field[0] != b":method")
        return request_from_fields([*pseudo, *(f for f in fields if f[0][:1] != b":")])
    # An HTTP/1.1 stream (_http11.py) holds its head as sent, without pseudo-headers: the
    # method and target on the stream, the scheme on its connection's origin.
    origin = getattr(stream.link, "origin", None)
    scheme = getattr(origin, "scheme", "http").encode()
    method: bytes = getattr(stream, "method", b"GET")
    target: bytes = getattr(stream, "target", b"/")
    host = next((value for name, value in fields if name == b"host"), b"")
    pseudo = [(b":method", method), (b":scheme", scheme), (b":authority", host)]
    return request_from_fields([*pseudo, (b":path", target), *fields])


def body_arrived(response: Response) -> bool:
    """Whether the whole body has arrived (it may not have been read yet)."""
    return response._stream.remote_done


def body_read(response: Response) -> bool:
    """Whether [`Response.read`][h2any.Response.read] has read the body (and keeps it)."""
    return response._content is not None


def cached_body(response: Response, decode_content: bool = True) -> bytes | None:
    """The body if [`Response.read`][h2any.Response.read] already read it (as ``read`` would return
    it again), else None."""
    if response._content is None:
        return None
    return response._cached(decode_content)


async def receive_response(stream: Stream, max_decompressed_size: int | None = None) -> Response:
    """The [`Response`][h2any.Response] of ``stream`` once its headers arrive; the stream is
    abandoned (reset) if this fails or is cancelled.

    The wait is inlined here rather than in a helper coroutine: with thousands of
    requests queued, every object a waiting request holds is walked by the garbage
    collector (a coroutine layer less is 1% of a fan-out).

    Raises:
        PoolTimeout, WriteTimeout, ReadTimeout: per the stream's stage and timeouts.
        StreamReset, ConnectionClosed, ConnectionTerminated, ProtocolError: it failed.
        Exception: whatever a streamed request body's source raised.
    """
    items = stream.items
    started = perf_counter()  # for Response.elapsed
    try:
        while True:
            if not items:
                # The connection task moves the deadline as the stream progresses.
                watchdog = stream.link.watchdog
                try:
                    await watchdog.watch(stream, stream.reader_limit(), stream.expires)
                finally:
                    watchdog.unwatch(stream)
                if not items:
                    if stream.timed_out:
                        raise stream.timeout_error()
                    continue
            item = items.popleft()
            kind = type(item)
            if kind is ResponseHeaders:
                raw = item.fields  # type: ignore[union-attr]
                # Checked when received: exactly one :status, first, three digits.
                response = Response(
                    stream, int(raw[0][1]), headers_from_wire(raw[1:]), max_decompressed_size
                )
                response._started = started
                return response
            if kind is Failed:
                raise item.error  # type: ignore[union-attr]
            # DATA or END before HEADERS cannot happen: h2 rejects it as a protocol error.
            raise ProtocolError(f"stream {stream.stream_id}: response ended before headers")
    except BaseException:
        stream.abandon()
        pump_done = stream.pump_done
        if pump_done is not None:
            # A body= pump still running must stop before the caller learns of the failure
            # (the Client rewinds the body to retry it); reset, it stops at its next step.
            with anyio.CancelScope(shield=True), anyio.move_on_after(PUMP_STOP_TIMEOUT):
                await pump_done.wait()
        raise
