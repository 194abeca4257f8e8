"""``h2any ws URL``: a WebSocket session over HTTP/2 (RFC 8441) from the command line.

Each line read from stdin is sent as one message (text; ``--binary``: binary) and each
message received is written to stdout, one per line, as it arrives -- interactive at a
terminal, or in a pipe: ``printf 'a\\nb\\n' | h2any ws wss://example.org/echo``. At the end
of stdin the WebSocket is closed with 1000 (messages the server sends meanwhile are still
written); when the server closes first, reading stdin stops.

Exit status: 0 when the WebSocket ended with a normal close (1000, or 1001 "going away");
``EXIT_WS_CLOSED`` (56, curl's "failure receiving network data") when the server closed it
with any other code (printed on stderr); the ``h2any`` client's codes for the rest (7: no
connection or no extended CONNECT, 35: TLS, 22: the server refused the handshake, 28: a
timeout, 2: usage).
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO, Final, TextIO

import anyio
import anyio.to_thread

import h2any

from ._cli import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    backend_problem,
    classify,
    leaf_error,
)

__all__ = ("EXIT_WS_CLOSED", "main")

#: The server closed the WebSocket with a code other than 1000/1001.
EXIT_WS_CLOSED: Final = 56
_NORMAL_CODES: Final = (1000, 1001)


@dataclass(frozen=True)
class WsOptions:
    url: str
    headers: list[tuple[str, str]]
    subprotocols: list[str]
    binary: bool
    verify: bool | str
    connect_timeout: float
    max_message_size: int
    backend: str
    verbose: bool


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="h2any ws",
        description="A WebSocket session over HTTP/2 (RFC 8441): stdin lines are sent as "
        "messages, received messages are written to stdout, one per line.",
    )
    parser.add_argument("url", help="ws://, wss://, http:// or https:// URL")
    parser.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="an extra header for the handshake (repeatable)",
    )
    parser.add_argument(
        "-p",
        "--subprotocol",
        action="append",
        default=[],
        metavar="NAME",
        help="offer this subprotocol (repeatable; the server picks one)",
    )
    parser.add_argument("--binary", action="store_true", help="send each line as a binary message")
    parser.add_argument(
        "-k", "--insecure", action="store_true", help="do not verify the server's certificate"
    )
    parser.add_argument("--cacert", metavar="FILE", help="CA bundle to verify the server with")
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="limit for connecting and for the handshake (default: 10)",
    )
    parser.add_argument(
        "--max-message-size",
        type=int,
        default=4 * 1024 * 1024,
        metavar="BYTES",
        help="largest message accepted (default: 4 MiB; larger closes with 1009)",
    )
    parser.add_argument(
        "--backend", choices=("asyncio", "trio"), default="asyncio", help="event loop"
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="report the handshake and close on stderr"
    )
    return parser


def parse_ws_options(argv: Sequence[str]) -> WsOptions:
    """The options of ``h2any ws ...`` (``argv`` without the ``ws``); SystemExit on a bad
    command line."""
    parser = _parser()
    args = parser.parse_args(list(argv))
    headers = []
    for header in args.header:
        name, colon, value = header.partition(":")
        if not colon or not name.strip():
            parser.error(f"a header is 'Name: value', not {header!r}")
        headers.append((name.strip(), value.strip()))
    if args.max_message_size < 1:
        parser.error("--max-message-size must be positive")
    if args.connect_timeout <= 0:
        parser.error("--connect-timeout must be positive")
    verify: bool | str = False if args.insecure else (args.cacert or True)
    return WsOptions(
        url=args.url,
        headers=headers,
        subprotocols=args.subprotocol,
        binary=args.binary,
        verify=verify,
        connect_timeout=args.connect_timeout,
        max_message_size=args.max_message_size,
        backend=args.backend,
        verbose=args.verbose,
    )


async def run_session(options: WsOptions, stdin: BinaryIO, stdout: BinaryIO, stderr: TextIO) -> int:
    """The session: stdin lines out, messages in; the exit status."""
    # The read timeout bounds the handshake and the closing handshake; an idle session
    # waits for messages as long as it stays open.
    timeout = h2any.Timeout(options.connect_timeout)
    async with (
        h2any.Client(verify=options.verify, timeout=timeout) as client,
        client.websocket(
            options.url,
            subprotocols=options.subprotocols or None,
            headers=options.headers,
            max_message_size=options.max_message_size,
        ) as ws,
    ):
        if options.verbose:
            stderr.write(
                f"* WebSocket open on stream {ws.stream_id}, subprotocol {ws.subprotocol}\n"
            )

        async def send_stdin() -> None:
            while True:
                line = await anyio.to_thread.run_sync(stdin.readline, abandon_on_cancel=True)
                if not line:
                    break
                payload = line.rstrip(b"\r\n")
                await ws.send(payload if options.binary else payload.decode("utf-8", "replace"))
            await ws.close()

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(send_stdin)
            async for message in ws:
                data = message.encode("utf-8") if isinstance(message, str) else message
                stdout.write(data + b"\n")
                stdout.flush()
            task_group.cancel_scope.cancel()  # the server closed: stop reading stdin
        code, reason = ws.close_code, ws.close_reason
    if options.verbose or code not in _NORMAL_CODES:
        stderr.write(f"* closed: {code} {reason or ''}".rstrip() + "\n")
    return EXIT_OK if code in _NORMAL_CODES else EXIT_WS_CLOSED


def main(argv: Sequence[str]) -> int:
    """Run ``h2any ws ...`` (``argv`` without the ``ws``); return the exit status."""
    try:
        options = parse_ws_options(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    problem = backend_problem(options.backend)
    if problem is not None:
        sys.stderr.write(f"h2any ws: error: {problem}\n")
        return EXIT_USAGE
    try:
        return anyio.run(
            run_session,
            options,
            sys.stdin.buffer,
            sys.stdout.buffer,
            sys.stderr,
            backend=options.backend,
        )
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BaseException as raised:
        error = leaf_error(raised)
        if isinstance(error, ImportError) and "websockets" in str(error):
            code, message = EXIT_USAGE, str(error)
        else:
            code, message = classify(error)
        if code == 1:
            traceback.print_exception(raised, file=sys.stderr)
        sys.stderr.write(f"h2any ws: error: {' '.join(message.split())}\n")
        return code
