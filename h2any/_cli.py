"""The ``h2any`` command: one HTTP/2 request from the shell, in the manner of curl.

``h2any [METHOD] URL [options]`` sends one request over one HTTP/2 connection (TLS with ALPN
``h2`` for ``https://``, cleartext h2c with prior knowledge for ``http://``) and writes the
response body to stdout or a file. See ``docs/cli.md`` for every option and the exit codes.

Errors end the command with one line on stderr (``h2any: error: ...``) and an exit status
that tells them apart (curl's numbers where curl has one); ``--debug`` adds the traceback.
"""

from __future__ import annotations

import argparse
import base64
import builtins
import http
import io
import json
import os
import socket
import ssl
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO, Final, TextIO
from urllib.parse import unquote, urlsplit

import anyio

import h2any
from h2any._config import Origin
from h2any._proxy import environment_proxy

__all__ = ("main",)

# -- exit codes (curl's numbers where curl has an equivalent) ---------------------------

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1  # an unexpected error (a bug): please report it
EXIT_USAGE: Final = 2  # bad command line
EXIT_BAD_URL: Final = 3  # the URL, a header or the method could not be used
EXIT_RESOLVE: Final = 6  # the host name could not be resolved
EXIT_CONNECT: Final = 7  # no connection: refused, unreachable, or the server is not HTTP/2
EXIT_PROTOCOL: Final = 16  # HTTP/2 protocol error, GOAWAY, or connection lost mid-exchange
EXIT_HTTP_ERROR: Final = 22  # --fail and a status >= 400
EXIT_WRITE: Final = 23  # the body could not be written (-o, --push-dir, closed stdout)
EXIT_READ: Final = 26  # a local file could not be read (-d @file, --cert, --key)
EXIT_TIMEOUT: Final = 28  # --timeout or --max-time expired
EXIT_TLS: Final = 35  # TLS handshake failed (certificate verification, protocol, ALPN)
EXIT_TOO_MANY_REDIRECTS: Final = 47  # -L and more than --max-redirs redirects
EXIT_DECODING: Final = 61  # the Content-Encoding could not be decoded
EXIT_STREAM_RESET: Final = 92  # the server reset the stream (RST_STREAM)
EXIT_INTERRUPTED: Final = 130  # Ctrl-C


_FRAME_TYPES: Final = {
    0x0: "DATA",
    0x1: "HEADERS",
    0x2: "PRIORITY",
    0x3: "RST_STREAM",
    0x4: "SETTINGS",
    0x5: "PUSH_PROMISE",
    0x6: "PING",
    0x7: "GOAWAY",
    0x8: "WINDOW_UPDATE",
    0x9: "CONTINUATION",
    0xA: "ALTSVC",
    0x10: "ORIGIN",
}
_INDENT: Final = " " * 10


class CLIError(Exception):
    """An error that ends the command with ``code`` and one line of ``message``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- the command line ------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``h2any [METHOD] URL`` (``h2any demo`` has its own)."""
    parser = argparse.ArgumentParser(
        prog="h2any",
        usage="h2any [METHOD] URL [options]\n       h2any demo [--requests N] ...",
        description="Send one HTTP/2 request and write the response body to stdout. "
        "https:// URLs use TLS (ALPN h2); http:// URLs use h2c with prior knowledge. "
        "'h2any demo' runs the multiplexing demo against an embedded server.",
        epilog="Exit status: 0 success, 2 usage, 3 bad URL/header, "
        "6 host not resolved, 7 connect failed, 16 HTTP/2 protocol error, 22 HTTP status "
        ">= 400 with --fail, 23 write error, 26 read error, 28 timeout, 35 TLS error, "
        "47 too many redirects, "
        "61 bad content encoding, 92 stream reset, 130 interrupted. See docs/cli.md.",
    )
    parser.add_argument(
        "words",
        nargs="+",
        metavar="[METHOD] URL",
        help="request method (default GET, or POST with -d/--json) and absolute http:// or "
        "https:// URL",
    )
    request = parser.add_argument_group("request")
    request.add_argument(
        "-X",
        "--request",
        metavar="METHOD",
        help="request method, as curl's -X (the same as giving METHOD before the URL)",
    )
    request.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="add a request header (repeatable); 'NAME;' sends an empty value",
    )
    request.add_argument(
        "-d",
        "--data",
        action="append",
        default=[],
        metavar="DATA",
        help="request body: DATA as given, @FILE for a file's bytes, @- for stdin "
        "(sent verbatim; implies POST unless METHOD is given)",
    )
    request.add_argument(
        "--json",
        action="append",
        default=[],
        metavar="DATA",
        help="send DATA (or @FILE, @-) as a JSON body, as curl 7.82+: like -d, with "
        "'content-type: application/json' and 'accept: application/json' unless -H gives them",
    )
    request.add_argument(
        "-I",
        "--head",
        action="store_true",
        help="send HEAD and print the response headers only",
    )
    request.add_argument(
        "-L",
        "--location",
        action="store_true",
        help="follow redirects (3xx with a Location), as curl -L; credentials and cookies are "
        "not sent to another origin",
    )
    request.add_argument(
        "--max-redirs",
        type=int,
        default=20,
        metavar="N",
        help="with -L, follow at most N redirects (default 20); one more is exit 47",
    )
    request.add_argument(
        "--http2-prior-knowledge",
        action="store_true",
        help="accepted for curl familiarity; http:// URLs always use h2c prior knowledge",
    )
    request.add_argument(
        "--push",
        action="store_true",
        help="accept server push; list pushed resources on stderr (save them with -o DIR "
        "or --push-dir)",
    )
    request.add_argument(
        "--push-dir", metavar="DIR", help="save pushed resources under DIR (implies --push)"
    )
    request.add_argument(
        "--proxy",
        metavar="URL",
        help="tunnel through this HTTP proxy (CONNECT); default: HTTPS_PROXY etc., as curl",
    )
    tls = parser.add_argument_group("TLS")
    tls.add_argument("--cacert", metavar="PATH", help="CA bundle (PEM file or directory)")
    tls.add_argument(
        "-k", "--insecure", action="store_true", help="do not verify the server certificate"
    )
    tls.add_argument("-E", "--cert", metavar="PATH", help="client certificate (PEM)")
    tls.add_argument("--key", metavar="PATH", help="private key of --cert, if separate")
    limits = parser.add_argument_group("timeouts")
    limits.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help="limit each phase: connect, each wait for data, each stalled write "
        "(default 10; 0 = none)",
    )
    limits.add_argument(
        "-m",
        "--max-time",
        type=_seconds,
        metavar="SECONDS",
        help="limit the whole command, pushes included (default: none)",
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write the body to FILE ('-': stdout); an existing directory (or a path "
        "ending in '/') receives the body under its URL's file name, and pushes",
    )
    output.add_argument(
        "-i",
        "--include",
        action="store_true",
        help="write the status line and response headers (and trailers) with the body",
    )
    output.add_argument(
        "--summary-json",
        action="store_true",
        help="print a JSON summary (status, headers, timings, stream id, sizes) instead "
        "of the body",
    )
    output.add_argument(
        "--raw",
        action="store_true",
        help="do not decode Content-Encoding: write the body bytes as they came (and do not "
        "pretty-print JSON)",
    )
    output.add_argument(
        "-f",
        "--fail",
        action="store_true",
        help="exit with 22 and write no body when the status is 400 or more",
    )
    output.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="print the HTTP/2 frames exchanged on stderr (the client's own SETTINGS "
        "first), like nghttp -v",
    )
    output.add_argument("--no-progress", action="store_true", help="never draw a progress bar")
    output.add_argument("--debug", action="store_true", help="print a traceback with errors")
    output.add_argument(
        "--backend",
        choices=("asyncio", "trio"),
        default="asyncio",
        help="async backend to run on (default: asyncio; trio needs h2any[trio])",
    )
    output.add_argument("-V", "--version", action="version", version=f"h2any {h2any.__version__}")
    return parser


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be 0 or more seconds: {text!r}")
    return value


@dataclass
class Options:
    """The parsed and checked command line."""

    method: str
    url: str
    origin: str
    target: str
    headers: list[tuple[str, str]]
    data: str | None
    verify: bool | str
    cert: str | tuple[str, str] | None
    timeout: h2any.Timeout | None  # None: the library's default
    max_time: float | None
    output: str | None
    include: bool
    head: bool
    summary_json: bool
    raw: bool
    fail: bool
    verbose: bool
    push: bool
    push_dir: str | None
    proxy: str | None
    location: bool
    max_redirects: int
    progress: bool
    debug: bool
    backend: str


def parse_options(argv: Sequence[str]) -> Options:
    """Parse ``argv``; a usage error exits with status 2 (argparse's own behaviour)."""
    parser = build_parser()
    args = parser.parse_intermixed_args(list(argv))
    words: list[str] = args.words
    if len(words) > 2:
        parser.error(f"expected [METHOD] URL, got {len(words)} words: {' '.join(words)}")
    if len(args.data) + len(args.json) > 1:
        parser.error("give one request body: -d/--data or --json, once")
    data: str | None = (args.data + args.json)[0] if args.data or args.json else None
    method: str | None = None
    if len(words) == 2:
        method, url = words
        if "://" in method:
            parser.error(f"expected METHOD URL, but the method looks like a URL: {method!r}")
        method = method.upper()
    else:
        url = words[0]
    if args.request is not None:
        requested = args.request.upper()
        if not requested or any(c.isspace() for c in requested):
            parser.error(f"-X/--request expects a method, got {args.request!r}")
        if method is not None and method != requested:
            parser.error(f"two methods given: {method} before the URL and {requested} with -X")
        method = requested
    explicit = method is not None
    if method is None:
        method = "POST" if data is not None else "GET"
    if args.head:
        if explicit and method != "HEAD":
            parser.error(f"-I/--head sends HEAD, but the method given is {method}")
        method = "HEAD"
    if args.key and not args.cert:
        parser.error("--key needs --cert")
    if args.max_redirs < 0:
        parser.error("--max-redirs must be 0 or more")
    if args.location and (args.push or args.push_dir):
        parser.error("-L/--location and --push do not go together (pushes need one connection)")
    headers = [_parse_header(parser, text) for text in args.header]
    if args.json:
        given = {name for name, _ in headers}
        for name in ("content-type", "accept"):
            if name not in given:
                headers.append((name, "application/json"))
    origin, target, auth = _split_url(url)
    if auth is not None and not any(name == "authorization" for name, _ in headers):
        headers.append(("authorization", auth))
    verify: bool | str = True
    if args.insecure:
        verify = False
    elif args.cacert:
        verify = args.cacert
    for path in (args.cert, args.key):
        if path and not os.access(path, os.R_OK):
            raise CLIError(EXIT_READ, f"cannot read {path}: no such file, or not readable")
    cert: str | tuple[str, str] | None = None
    if args.cert:
        cert = (args.cert, args.key) if args.key else args.cert
    timeout = None if args.timeout is None else h2any.Timeout(args.timeout or None)
    push = bool(args.push or args.push_dir)
    return Options(
        method=method,
        url=url,
        origin=origin,
        target=target,
        headers=headers,
        data=data,
        verify=verify,
        cert=cert,
        timeout=timeout,
        max_time=args.max_time or None,
        output=None if args.output == "-" else args.output,
        include=args.include or args.head,
        head=args.head,
        summary_json=args.summary_json,
        raw=args.raw,
        fail=args.fail,
        verbose=args.verbose,
        push=push,
        push_dir=args.push_dir,
        proxy=args.proxy,
        location=args.location,
        max_redirects=args.max_redirs,
        progress=not args.no_progress and not args.verbose,
        debug=args.debug,
        backend=args.backend,
    )


def _parse_header(parser: argparse.ArgumentParser, text: str) -> tuple[str, str]:
    """``'Name: value'`` -> ``("name", "value")``; ``'Name;'`` -> ``("name", "")``."""
    if ":" in text:
        name, _, value = text.partition(":")
        value = value.strip()
    elif text.endswith(";"):
        name, value = text[:-1], ""
    else:
        parser.error(f"-H expects 'NAME: VALUE', got {text!r}")
    name = name.strip().lower()
    if not name:
        parser.error(f"-H expects 'NAME: VALUE', got {text!r}")
    return name, value


def _split_url(url: str) -> tuple[str, str, str | None]:
    """``(origin, request target, basic authorization or None)`` of an absolute URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise CLIError(EXIT_BAD_URL, f"invalid URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise CLIError(
            EXIT_BAD_URL,
            f"URL {url!r} must be absolute and start with https:// or http:// (h2c)",
        )
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    origin = f"{scheme}://{host}" + (f":{port}" if port is not None else "")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    auth = None
    if parts.username is not None:
        user_pass = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(user_pass.encode()).decode("ascii")
    return origin, target, auth


# -- frames, for -v ----------------------------------------------------------------------


def _name_of(enum_type: Any, value: int, prefix: str = "") -> str:
    try:
        return f"{prefix}{enum_type(value).name}"
    except ValueError:
        return "UNKNOWN"


class FrameObserver:
    """The ``frame_observer`` the CLI gives the connection: counts the DATA bytes of each
    stream, and with ``verbose`` prints every frame on ``out`` in the style of ``nghttp -v``.

    Header blocks are decoded with HPACK decoders of our own, fed every block in order, so
    they track the connection's dynamic tables exactly.
    """

    def __init__(self, out: TextIO, verbose: bool, started: float) -> None:
        import hpack

        self.out = out
        self.verbose = verbose
        self.started = started
        self.saw_send = False  # the core reports sent frames (not only received ones)
        self.data_bytes: dict[int, int] = {}
        self._hpack = hpack
        self._new_connection()

    def _new_connection(self) -> None:
        self._decoders = {"recv": self._hpack.Decoder(), "send": self._hpack.Decoder()}
        for decoder in self._decoders.values():
            decoder.max_header_list_size = 2**31
            decoder.max_allowed_table_size = 2**31
        self._blocks: dict[str, bytes] = {"recv": b"", "send": b""}
        self._broken: set[str] = set()

    def __call__(self, direction: str, frame: Any) -> None:
        """Record (and with ``verbose`` print) one frame."""
        frame_type = getattr(frame, "type", None)
        if direction == "send":
            self.saw_send = True
            if frame_type == 0x4 and "ACK" not in frame.flags and frame.stream_id == 0:
                # A new connection's preface (-L to another origin): fresh HPACK tables.
                self._new_connection()
        if frame_type == 0x0 and direction == "recv":
            self.data_bytes[frame.stream_id] = self.data_bytes.get(frame.stream_id, 0) + len(
                frame.data
            )
        lines = self._describe(direction, frame) if self.verbose else None
        if self.verbose and frame_type in (0x1, 0x5, 0x9):
            fields = self._header_block(direction, frame)
            if lines is not None and fields is not None:
                lines.extend(f"{_INDENT}{name}: {value}" for name, value in fields)
        if lines:
            self.write(lines)

    def write(self, lines: list[str]) -> None:
        """Print ``lines`` (the first one gets the timestamp)."""
        stamp = f"[{time.perf_counter() - self.started:7.3f}] "
        try:
            self.out.write(stamp + "\n".join(lines) + "\n")
            self.out.flush()
        except (OSError, ValueError):
            pass

    def _describe(self, direction: str, frame: Any) -> list[str]:
        from h2.errors import ErrorCodes
        from h2.settings import SettingCodes

        kind = _FRAME_TYPES.get(frame.type, f"UNKNOWN(0x{frame.type:02x})")
        flag_names = [f.name for f in frame.defined_flags if f.name in frame.flags]
        flag_bits = sum(f.bit for f in frame.defined_flags if f.name in frame.flags)
        length = frame.body_len
        if direction == "send" or not length:
            try:
                length = len(frame.serialize_body())
            except Exception:
                pass
        lines = [
            f"{direction} {kind} frame <length={length}, flags=0x{flag_bits:02x}, "
            f"stream_id={frame.stream_id}>"
        ]
        if flag_names:
            lines.append(f"{_INDENT}; {' | '.join(flag_names)}")
        if kind == "SETTINGS" and "ACK" not in frame.flags:
            lines.append(f"{_INDENT}(niv={len(frame.settings)})")
            for code, value in frame.settings.items():
                name = _name_of(SettingCodes, code)
                lines.append(f"{_INDENT}[SETTINGS_{name}(0x{code:02x}):{value}]")
        elif kind == "WINDOW_UPDATE":
            lines.append(f"{_INDENT}(window_size_increment={frame.window_increment})")
        elif kind == "RST_STREAM":
            code = frame.error_code
            lines.append(f"{_INDENT}(error_code={_name_of(ErrorCodes, code)}(0x{code:02x}))")
        elif kind == "GOAWAY":
            code = frame.error_code
            data = frame.additional_data or b""
            lines.append(
                f"{_INDENT}(last_stream_id={frame.last_stream_id}, "
                f"error_code={_name_of(ErrorCodes, code)}(0x{code:02x}), "
                f"opaque_data({len(data)})=[{data[:200].decode('latin-1')}])"
            )
        elif kind == "PING":
            lines.append(f"{_INDENT}(opaque_data={bytes(frame.opaque_data).hex()})")
        elif kind == "PUSH_PROMISE":
            lines.append(f"{_INDENT}(promised_stream_id={frame.promised_stream_id})")
        if kind == "PRIORITY" or (kind == "HEADERS" and "PRIORITY" in frame.flags):
            lines.append(
                f"{_INDENT}(dep_stream_id={frame.depends_on}, weight={frame.stream_weight + 1}, "
                f"exclusive={int(bool(frame.exclusive))})"
            )
        return lines

    def _header_block(self, direction: str, frame: Any) -> list[tuple[str, str]] | None:
        """Decode a complete header block (HEADERS/PUSH_PROMISE + CONTINUATIONs)."""
        self._blocks[direction] += bytes(frame.data)
        if "END_HEADERS" not in frame.flags:
            return None
        block, self._blocks[direction] = self._blocks[direction], b""
        if direction in self._broken:
            return [("; header block not decoded", f"{len(block)} bytes")]
        try:
            fields = self._decoders[direction].decode(block, raw=True)
        except Exception as exc:  # our copy of the table is now out of step: stop decoding
            self._broken.add(direction)
            return [("; header block not decoded", f"{exc}")]
        return [
            (bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
            for name, value in fields
        ]


# -- progress bars ----------------------------------------------------------------------


class Progress:
    """Progress of the upload and the download; this base class draws nothing."""

    def start(self, description: str, total: int | None) -> None:
        """Begin a bar (``total`` bytes, or unknown)."""

    def advance(self, amount: int) -> None:
        """``amount`` more bytes of the current bar are done (thread-safe)."""

    def stop(self) -> None:
        """Remove every bar from the terminal."""


class RichProgress(Progress):
    """Transient ``rich`` progress bars on stderr."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
        from rich.progress import Progress as Bars

        self._bars = Bars(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            transient=True,
        )
        self._task: Any = None
        self._running = False

    def start(self, description: str, total: int | None) -> None:
        if self._task is not None:
            self._bars.remove_task(self._task)
        self._task = self._bars.add_task(description, total=total)
        if not self._running:
            self._bars.start()
            self._running = True

    def advance(self, amount: int) -> None:
        task = self._task
        if task is not None and self._running:
            self._bars.advance(task, amount)

    def stop(self) -> None:
        if self._running:
            self._running = False
            self._bars.stop()
        if self._task is not None:
            self._bars.remove_task(self._task)
            self._task = None


def make_progress(wanted: bool) -> Progress:
    """Bars only in an interactive terminal (stdout and stderr) with ``rich`` installed."""
    if not wanted or not (_isatty(sys.stderr) and _isatty(sys.stdout)):
        return Progress()
    try:
        return RichProgress()
    except ImportError:
        return Progress()


def _isatty(stream: IO[Any] | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (OSError, ValueError):
        return False


class CountingReader(io.RawIOBase):
    """A request body file that reports each piece read (for the upload bar and sizes)."""

    def __init__(self, file: BinaryIO, on_read: Callable[[int], None]) -> None:
        super().__init__()
        self._file = file
        self._on_read = on_read

    def read(self, size: int = -1) -> bytes:
        """Read from the file, counting what was read."""
        try:
            data = self._file.read(size)
        except OSError as exc:
            raise CLIError(EXIT_READ, f"cannot read the request body: {exc}") from exc
        self._on_read(len(data))
        return data

    def readable(self) -> bool:
        """Always true."""
        return True

    def seekable(self) -> bool:
        """Whether the file is (so that its size, hence Content-Length, is known)."""
        return self._file.seekable()

    def tell(self) -> int:
        """The file's position."""
        return self._file.tell()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move in the file."""
        return self._file.seek(offset, whence)

    def fileno(self) -> int:
        """The file's descriptor."""
        return self._file.fileno()


# -- output -----------------------------------------------------------------------------


class Output:
    """Where the body goes: a file, opened on first write, or stdout."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._file: BinaryIO | None = None

    @property
    def is_stdout(self) -> bool:
        """True when writing to stdout."""
        return self.path is None

    def write(self, data: bytes) -> None:
        """Write (and flush, so streamed bodies show up as they arrive)."""
        try:
            if self._file is None:
                self._file = sys.stdout.buffer if self.path is None else self.path.open("wb")
            self._file.write(data)
            self._file.flush()
        except OSError as exc:
            where = "stdout" if self.path is None else str(self.path)
            raise CLIError(EXIT_WRITE, f"cannot write to {where}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        """Close the file (an empty body still creates it)."""
        if self.path is not None and self._file is None:
            self.write(b"")
        if self._file is not None and self.path is not None:
            self._file.close()


def _file_name(target: str) -> str:
    """The file name a URL path saves under: its last segment, or ``index.html``."""
    path = target.split("?", 1)[0]
    name = path.rsplit("/", 1)[-1]
    return name if name not in ("", ".", "..") else "index.html"


def _push_path(directory: Path, path: str) -> Path:
    """Where a pushed resource saves: its URL path under ``directory``, never outside it."""
    clean = path.split("?", 1)[0].split("#", 1)[0]
    parts = [part for part in clean.split("/") if part not in ("", ".", "..")]
    if not parts or clean.endswith("/"):
        parts.append("index.html")
    return directory.joinpath(*parts)


# -- the request ------------------------------------------------------------------------


@dataclass
class _Result:
    status: int = 0
    stream_id: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    trailers: list[tuple[str, str]] | None = None
    connect: float | None = None
    first_byte: float | None = None
    total: float | None = None
    uploaded: int = 0
    downloaded: int = 0
    pushes: list[dict[str, Any]] = field(default_factory=list)
    output: str | None = None


RequestFunction = Callable[..., Awaitable[h2any.Response]]


@asynccontextmanager
async def _session(
    options: Options, connection_options: dict[str, Any]
) -> AsyncIterator[tuple[RequestFunction, str, h2any.Connection | None]]:
    """Yield ``(request function, what to request, connection)``: one
    [`h2any.Connection`][h2any.Connection] to the URL's origin (so its pushes can be claimed),
    through ``--proxy`` or, like curl, the proxy the environment names (HTTPS_PROXY, NO_PROXY, ...).
    """
    if options.location:
        # Redirects may lead to other origins: the Client (HTTP/2 only, as the rest of the
        # command) opens what they need; it drops credentials on the way to another origin.
        client_options = dict(connection_options)
        if options.proxy is not None:
            client_options["proxy"] = options.proxy
        async with h2any.Client(
            http1=False,
            follow_redirects=True,
            max_redirects=options.max_redirects,
            **client_options,
        ) as client:
            yield client.request, options.origin + options.target, None
        return
    proxy = options.proxy
    if proxy is None:
        proxy = environment_proxy(Origin.parse(options.origin))
    async with h2any.Connection(options.origin, proxy=proxy, **connection_options) as connection:
        yield connection.request, options.target, connection


def _open_body(options: Options, result: _Result, progress: Progress) -> Any:
    """The request body for ``-d``: bytes, or a counting reader over a file or stdin."""
    data = options.data
    if data is None:
        return None
    if not data.startswith("@"):
        body = os.fsencode(data)
        result.uploaded = len(body)
        return body
    name = data[1:]

    def count(amount: int) -> None:
        result.uploaded += amount
        progress.advance(amount)

    if name == "-":
        file: BinaryIO = sys.stdin.buffer
    else:
        try:
            file = open(name, "rb")  # noqa: SIM115 -- closed by _run_request
        except OSError as exc:
            raise CLIError(EXIT_READ, f"cannot read {name}: {exc.strerror or exc}") from None
    reader = CountingReader(file, count)
    size = None
    try:
        if file.seekable():
            size = os.fstat(file.fileno()).st_size - file.tell()
    except (OSError, ValueError):
        size = None
    progress.start(f"{options.method} {name if name != '-' else 'stdin'}", size)
    return reader


def _status_line(status: int) -> str:
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"{status} {phrase}".rstrip()


async def _run_request(options: Options, stderr: TextIO) -> int:
    """Perform the request described by ``options``; return the exit status."""
    started = time.perf_counter()
    observer = FrameObserver(stderr, options.verbose, started)
    output_path, push_dir = _output_paths(options)
    output = Output(output_path)
    body_to_terminal = output.is_stdout and not options.summary_json
    progress = make_progress(options.progress)
    result = _Result(output=None if output_path is None else str(output_path))

    connection_options: dict[str, Any] = {
        "verify": options.verify,
        "enable_push": options.push,
        "frame_observer": observer,
    }
    if options.cert is not None:
        connection_options["cert"] = options.cert
    if options.timeout is not None:
        connection_options["timeout"] = options.timeout

    body = _open_body(options, result, progress)
    code = EXIT_OK
    try:
        async with _session(options, connection_options) as (request, url, connection):
            result.connect = time.perf_counter() - started if connection is not None else None
            if options.verbose and not observer.saw_send:
                observer.write(_request_lines(options, body, result))
            response = await request(options.method, url, headers=options.headers, body=body)
            progress.stop()
            if options.location:
                _report_redirects(response, stderr, options.verbose)
            result.first_byte = time.perf_counter() - started
            result.status = response.status
            result.stream_id = response.stream_id
            result.headers = response.headers.items()
            failed = options.fail and response.status >= 400
            if failed:
                await response.aclose()
                code = EXIT_HTTP_ERROR
            else:
                if options.include and not options.summary_json:
                    output.write(_head_bytes(response))
                if not options.head:
                    await _read_body(options, response, output, result, progress, body_to_terminal)
                    if response.trailers is not None:
                        result.trailers = response.trailers.items()
                        if options.include and not options.summary_json:
                            output.write(
                                b"".join(
                                    f"{n}: {v}\r\n".encode("latin-1") for n, v in result.trailers
                                )
                            )
                else:
                    await response.read()
                    await response.aclose()
                if output_path is not None:
                    output.close()
                if connection is not None and options.push:
                    await _collect_pushes(connection, response.stream_id, push_dir, result, stderr)
    finally:
        progress.stop()
        if isinstance(body, CountingReader) and body._file is not sys.stdin.buffer:
            body._file.close()
    result.total = time.perf_counter() - started
    result.downloaded = observer.data_bytes.get(result.stream_id, 0)
    if options.summary_json:
        _print_json(options, result)
    if code == EXIT_HTTP_ERROR:
        raise CLIError(
            EXIT_HTTP_ERROR,
            f"the server answered {_status_line(result.status)} (--fail)",
        )
    return code


def _report_redirects(response: h2any.Response, stderr: TextIO, verbose: bool) -> None:
    """With ``-v``, one line on stderr per redirect followed (``-L``)."""
    if not verbose:
        return
    for hop in response.history:
        location = hop.headers.get("location", "")
        stderr.write(f"h2any: {_status_line(hop.status)} from {hop.url} -> {location}\n")
    stderr.flush()


def _output_paths(options: Options) -> tuple[Path | None, Path | None]:
    """(the body's file or None for stdout, the directory pushes save in or None)."""
    push_dir = Path(options.push_dir) if options.push_dir else None
    if options.output is None:
        return None, push_dir
    path = Path(options.output)
    if options.output.endswith(("/", os.sep)) or path.is_dir():
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CLIError(EXIT_WRITE, f"cannot create {path}: {exc.strerror or exc}") from None
        if push_dir is None and options.push:
            push_dir = path
        return path / _file_name(options.target), push_dir
    return path, push_dir


def _request_lines(options: Options, body: Any, result: _Result) -> list[str]:
    """The request HEADERS frame, as sent, for ``-v`` when the core reports no sent frames."""
    authority = options.origin.split("://", 1)[1]
    fields = [
        (":method", options.method),
        (":scheme", options.origin.split("://", 1)[0]),
        (":authority", authority),
        (":path", options.target),
    ]
    for name, value in options.headers:
        if name == "host":
            fields[2] = (":authority", value)
        else:
            fields.append((name, value))
    size: int | None = None
    if isinstance(body, bytes):
        size = len(body)
    elif isinstance(body, CountingReader) and body.seekable():
        try:
            size = os.fstat(body.fileno()).st_size - body.tell()
        except (OSError, ValueError):
            size = None
    if size is not None and not any(name == "content-length" for name, _ in fields):
        fields.append(("content-length", str(size)))
    flags = "END_HEADERS" if body is not None else "END_STREAM | END_HEADERS"
    lines = [
        "send HEADERS frame <stream_id=1>  (reconstructed from the request)",
        f"{_INDENT}; {flags}",
    ]
    lines.extend(f"{_INDENT}{name}: {value}" for name, value in fields)
    lines.append(f"{_INDENT}; + user-agent and accept-encoding, unless given, from h2any")
    if body is not None:
        what = f"{size} bytes" if size is not None else "streamed, length unknown"
        lines.append(f"{_INDENT}; the request body follows in DATA frames ({what})")
    return lines


def _head_bytes(response: h2any.Response) -> bytes:
    lines = [f"HTTP/2 {response.status}\r\n"]
    lines.extend(f"{name}: {value}\r\n" for name, value in response.headers.items())
    lines.append("\r\n")
    return "".join(lines).encode("latin-1", "replace")


async def _read_body(
    options: Options,
    response: h2any.Response,
    output: Output,
    result: _Result,
    progress: Progress,
    body_to_terminal: bool,
) -> None:
    decode = not options.raw
    total: int | None = None
    length = response.headers.get("content-length")
    if (
        length is not None
        and length.isdigit()
        and (not decode or not response.headers.get("content-encoding"))
    ):
        total = int(length)
    show = not body_to_terminal
    if show:
        progress.start(f"{response.status} {_file_name(options.target)}", total)
    # A JSON body for a terminal is gathered (up to PRETTY_JSON_LIMIT) and shown by rich,
    # indented and coloured; anything else streams through as it arrives.
    console = None
    if body_to_terminal and decode and _is_json(response.headers.get("content-type")):
        console = _json_console()
    gathered: bytearray | None = bytearray() if console is not None else None
    try:
        async for chunk in response.aiter_bytes(decode_content=decode):
            if gathered is not None:
                gathered += chunk
                if len(gathered) > PRETTY_JSON_LIMIT:
                    output.write(bytes(gathered))
                    gathered = None
                continue
            if not options.summary_json or output.path is not None:
                output.write(chunk)
            if show:
                progress.advance(len(chunk))
    finally:
        progress.stop()
        await response.aclose()
    if gathered is not None:
        _write_json(console, bytes(gathered), output)


PRETTY_JSON_LIMIT: Final = 8 * 1024 * 1024  # larger JSON bodies stream to the terminal raw


def _is_json(content_type: str | None) -> bool:
    """Whether a Content-Type names JSON (``application/json``, ``application/*+json``)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _json_console() -> Any:
    """A rich console on stdout when stdout is a terminal and rich is installed, else None."""
    if not _isatty(sys.stdout):
        return None
    try:
        from rich.console import Console
    except ImportError:
        return None
    return Console(file=sys.stdout, soft_wrap=True)


def _write_json(console: Any, body: bytes, output: Output) -> None:
    """``body`` pretty-printed and coloured by ``console``; as it came if it is not JSON."""
    try:
        text = body.decode("utf-8")
        json.loads(text)
    except ValueError:  # not UTF-8 or not JSON after all: the bytes as they came
        output.write(body)
        return
    try:
        sys.stdout.flush()
        console.print_json(text)
        sys.stdout.flush()
    except OSError as exc:
        raise CLIError(EXIT_WRITE, f"cannot write to stdout: {exc.strerror or exc}") from exc


async def _collect_pushes(
    connection: h2any.Connection,
    stream_id: int,
    push_dir: Path | None,
    result: _Result,
    stderr: TextIO,
) -> None:
    """Claim every push that came with the response: list it on stderr, maybe save it."""
    async for push in connection.get_pushes(stream_id, capture_all=True):
        entry: dict[str, Any] = {
            "method": push.method,
            "url": f"{push.scheme}://{push.authority}{push.path}",
            "path": push.path,
            "stream_id": push.stream_id,
        }
        response = await push.get_response()
        destination = _push_path(push_dir, push.path) if push_dir is not None else None
        size = 0
        async with response:
            if destination is not None:
                try:
                    destination.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise CLIError(
                        EXIT_WRITE, f"cannot create {destination.parent}: {exc.strerror or exc}"
                    ) from None
            saved = Output(destination) if destination is not None else None
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if saved is not None:
                    saved.write(chunk)
            if saved is not None:
                saved.close()
        entry.update(status=response.status, size=size, saved_to=destination and str(destination))
        result.pushes.append(entry)
        where = f" -> {destination}" if destination is not None else ""
        stderr.write(
            f"h2any: pushed {push.method} {entry['url']} (stream {push.stream_id}): "
            f"{response.status}, {size} bytes{where}\n"
        )
        stderr.flush()


def _print_json(options: Options, result: _Result) -> None:
    def rounded(value: float | None) -> float | None:
        return None if value is None else round(value, 6)

    summary: dict[str, Any] = {
        "method": options.method,
        "url": options.origin + options.target,  # without any user:password@
        "http_version": "HTTP/2",
        "status": result.status,
        "stream_id": result.stream_id,
        "headers": [[name, value] for name, value in result.headers],
        "trailers": (None if result.trailers is None else [[n, v] for n, v in result.trailers]),
        "timings": {
            "connect": rounded(result.connect),
            "first_byte": rounded(result.first_byte),
            "total": rounded(result.total),
        },
        "sizes": {
            "request_body": result.uploaded,
            "response_body_wire": result.downloaded,
        },
        "output": result.output,
    }
    if options.push:
        summary["pushes"] = result.pushes
    text = json.dumps(summary, indent=2) + "\n"
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as exc:
        raise CLIError(EXIT_WRITE, f"cannot write to stdout: {exc.strerror or exc}") from exc


# -- errors -----------------------------------------------------------------------------


def leaf_error(exc: BaseException) -> BaseException:
    """The one real error inside (nested) exception groups of a single member."""
    while True:
        inner = getattr(exc, "exceptions", None)
        if isinstance(inner, tuple) and len(inner) == 1 and isinstance(inner[0], BaseException):
            exc = inner[0]
        else:
            return exc


def classify(exc: BaseException) -> tuple[int, str]:
    """The exit status and the one-line message for an error."""
    exc = leaf_error(exc)
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, CLIError):
        return exc.code, exc.message
    if isinstance(exc, h2any.TLSError):
        return EXIT_TLS, message
    if isinstance(exc, h2any.ConnectError):
        if isinstance(exc.__cause__, socket.gaierror):
            return EXIT_RESOLVE, message
        return EXIT_CONNECT, message
    if isinstance(exc, builtins.TimeoutError):
        if not isinstance(exc, h2any.TimeoutError):
            message = "the request took longer than --max-time"
        return EXIT_TIMEOUT, message
    if isinstance(exc, h2any.StreamReset):
        return EXIT_STREAM_RESET, message
    if isinstance(exc, h2any.DecodingError):
        return EXIT_DECODING, message
    if isinstance(exc, h2any.TooManyRedirects):
        return EXIT_TOO_MANY_REDIRECTS, message
    if isinstance(exc, h2any.InvalidRequest):
        return EXIT_BAD_URL, message
    if isinstance(exc, h2any.WebSocketHandshakeError):  # h2any ws: the server said no
        return EXIT_HTTP_ERROR, message
    if isinstance(exc, h2any.ExtendedConnectUnsupported):  # h2any ws: no RFC 8441 there
        return EXIT_CONNECT, message
    if isinstance(exc, (h2any.ProtocolError, h2any.ConnectionClosed, h2any.FlowControlError)):
        return EXIT_PROTOCOL, message
    if isinstance(exc, h2any.H2anyError):
        return EXIT_PROTOCOL, message
    if isinstance(exc, ssl.SSLError):  # loading --cert/--key
        return EXIT_TLS, f"TLS setup failed: {message}"
    if isinstance(exc, OSError):  # a local file: --cert, --key
        return EXIT_READ, message
    return EXIT_FAILURE, f"unexpected {type(exc).__name__}: {message}"


def backend_problem(backend: str) -> str | None:
    """Why ``backend`` cannot run here (its library is not installed), or None."""
    if backend == "trio":
        try:
            import trio  # noqa: F401
        except ImportError:
            return (
                "the trio backend needs trio, which is not installed: "
                "pip install 'h2any[trio]' (or use --backend asyncio)"
            )
    return None


def _report(code: int, message: str, stderr: TextIO) -> None:
    try:
        stderr.write(f"h2any: error: {message}\n")
        stderr.flush()
    except (OSError, ValueError):
        pass


async def _main_async(options: Options) -> int:
    if options.max_time is None:
        return await _run_request(options, sys.stderr)
    with anyio.fail_after(options.max_time):
        return await _run_request(options, sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``h2any [METHOD] URL [options]``; return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        options = parse_options(args)
        problem = backend_problem(options.backend)
        if problem is not None:
            raise CLIError(EXIT_USAGE, problem)
        return anyio.run(_main_async, options, backend=options.backend)
    except SystemExit as exc:  # argparse: usage errors (2), --help and --version (0)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        _report(EXIT_INTERRUPTED, "interrupted", sys.stderr)
        return EXIT_INTERRUPTED
    except BaseException as exc:
        code, message = classify(exc)
        if debug:
            traceback.print_exception(exc, file=sys.stderr)
        _report(code, message, sys.stderr)
        if code == EXIT_WRITE:
            _silence_stdout()
        return code
    finally:
        try:
            sys.stdout.flush()
        except (OSError, ValueError):
            _silence_stdout()


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that a closed pipe raises nothing at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
