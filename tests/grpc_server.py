"""A real grpcio server for the test suite, in-process, with no generated code.

Service ``pkg.Echo`` (messages are raw bytes: identity (de)serialisers):

* ``Chat`` (stream-stream) -> echoes each request message as it arrives, then status OK
* ``Fail`` (stream-stream) -> aborts at once with INVALID_ARGUMENT "bad" (a trailers-only
  response: grpc-status travels in the only HEADERS frame)
* ``FailAfterOne`` (stream-stream) -> echoes the first message, then aborts with
  INVALID_ARGUMENT "bad" (grpc-status travels in the trailers)

Service ``pkg.Test`` (for ``h2any.grpc``; also raw bytes, see ``_TEST_METHODS`` below): the
four call kinds, metadata both ways (``-bin`` included), errors with trailing metadata,
slow handlers for deadlines and cancellation, gzip, and ``Probe``, which tells a client
how the server saw a call end (``cancelled`` / ``finished``), so a test in another
process can check that a reset reached the server.

``python tests/grpc_server.py [CERT KEY]`` runs both services in a process of its own and
prints ``PORT`` (h2c) and, given a certificate and key, ``TLS_PORT`` on one line; it stops
when its standard input closes.

On the wire each message is length-prefixed: 1 byte compressed flag, 4 bytes big-endian
length, the payload (:func:`frame` and :func:`unframe`).
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc

__all__ = [
    "LOG",
    "GrpcServer",
    "GrpcServerProcess",
    "frame",
    "spawn_grpc_server",
    "start_grpc_server",
    "unframe",
]

SERVICE = "pkg.Echo"
#: Bytes of the length prefix in front of each gRPC message.
PREFIX = 5


def frame(payload: bytes) -> bytes:
    """One uncompressed gRPC message as it goes on the wire."""
    return struct.pack(">BI", 0, len(payload)) + payload


def unframe(buffer: bytearray) -> bytes | None:
    """Take one complete message off the front of ``buffer``, or None if it has none yet."""
    if len(buffer) < PREFIX:
        return None
    compressed, length = struct.unpack(">BI", buffer[:PREFIX])
    assert compressed == 0, "the test server never compresses"
    if len(buffer) < PREFIX + length:
        return None
    payload = bytes(buffer[PREFIX : PREFIX + length])
    del buffer[: PREFIX + length]
    return payload


def _chat(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    yield from requests


def _fail(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad")
    yield b""  # pragma: no cover  (abort raises)


def _fail_after_one(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    yield next(requests)
    context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad")


# -- pkg.Test ---------------------------------------------------------------------------------

TEST_SERVICE = "pkg.Test"
# Unicode and characters gRPC percent-encodes in grpc-message.
FAIL_DETAILS = "bad request: 50% off, caf\u00e9 \u2713"
TRAILER_BINARY = b"\x00\x01\xfe\xff"


class CallLog:
    """How calls tagged with ``x-id`` metadata ended, as the server saw them."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._ends: dict[str, str] = {}

    def record(self, call_id: str, how: str) -> None:
        with self._lock:
            self._ends.setdefault(call_id, how)
            self._lock.notify_all()

    def wait(self, call_id: str, timeout: float) -> str:
        with self._lock:
            self._lock.wait_for(lambda: call_id in self._ends, timeout)
            return self._ends.get(call_id, "unknown")


LOG = CallLog()


def _metadata(context: grpc.ServicerContext) -> dict[str, str | bytes]:
    return dict(context.invocation_metadata())


def _call_id(context: grpc.ServicerContext) -> str | None:
    value = _metadata(context).get("x-id")
    return value if isinstance(value, str) else None


def _unary_echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    """Echo; the request's x-* metadata come back as initial metadata, plus trailers."""
    echoed = [(k, v) for k, v in context.invocation_metadata() if k.startswith("x-")]
    context.send_initial_metadata(echoed)
    context.set_trailing_metadata([("x-trailer", "yes"), ("x-trailer-bin", TRAILER_BINARY)])
    return request


def _show_metadata(request: bytes, context: grpc.ServicerContext) -> bytes:
    """The request metadata as JSON: [key, text] or [key, {"hex": ...}] for bytes."""
    shown = [
        [k, {"hex": v.hex()} if isinstance(v, bytes) else v]
        for k, v in context.invocation_metadata()
    ]
    return json.dumps({"metadata": shown}).encode()


def _count(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    """``b"N"`` -> N messages ``b"0"`` .. ``b"N-1"``."""
    for i in range(int(request)):
        yield str(i).encode()


def _sum(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    """Client streaming: ``b"<messages> <bytes>"``."""
    count = total = 0
    for message in requests:
        count += 1
        total += len(message)
    return f"{count} {total}".encode()


def _fail_with(request: bytes, context: grpc.ServicerContext) -> bytes:
    """``b"CODE_NAME"``: abort before any reply (trailers-only), with trailing metadata."""
    context.set_trailing_metadata([("x-why", "asked"), ("x-why-bin", TRAILER_BINARY)])
    context.abort(grpc.StatusCode[request.decode()], FAIL_DETAILS)
    raise AssertionError("abort raises")  # pragma: no cover


def _fail_after_a_message(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    """One message, then ``DATA_LOSS`` in the trailers."""
    yield b"first"
    context.set_trailing_metadata([("x-why", "after")])
    context.abort(grpc.StatusCode.DATA_LOSS, FAIL_DETAILS)


def _watch(context: grpc.ServicerContext) -> threading.Event:
    """From the start of a handler: when the call ends before the handler says it has
    finished (a client reset or a deadline), log it as ``cancelled`` (with its ``x-id``).
    Registered first thing, so that a reset that comes early is not missed."""
    call_id = _call_id(context)
    ended = threading.Event()

    def on_end() -> None:
        if call_id is not None:
            LOG.record(call_id, "cancelled")
        ended.set()

    if not context.add_callback(on_end):
        on_end()  # the call had already ended
    return ended


def _wait_for_end(context: grpc.ServicerContext, ended: threading.Event) -> None:
    """Block until the call ends (at most 10 s); if it did not, log it ``finished``."""
    if not ended.wait(10.0):
        call_id = _call_id(context)
        if call_id is not None:
            LOG.record(call_id, "finished")


def _slow(request: bytes, context: grpc.ServicerContext) -> bytes:
    """Never answers: waits until the call is cancelled."""
    _wait_for_end(context, _watch(context))
    return b"too late"


def _slow_stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    """Echoes the first message, then waits until the call is cancelled."""
    ended = _watch(context)
    yield next(requests)
    _wait_for_end(context, ended)


def _big(request: bytes, context: grpc.ServicerContext) -> bytes:
    """``b"N"`` -> N bytes."""
    return b"x" * int(request)


def _gzip_echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    """Echo, compressed with gzip whatever the channel's default."""
    context.set_compression(grpc.Compression.Gzip)
    return request


def _gzip_stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    """Bidi echo, each reply gzip-compressed; then the request's grpc-encoding."""
    context.set_compression(grpc.Compression.Gzip)
    yield from requests


def _probe(request: bytes, context: grpc.ServicerContext) -> bytes:
    """``x-id`` value -> how that call ended (``cancelled``, ``finished``, ``unknown``),
    waiting up to 5 s for it to end."""
    return LOG.wait(request.decode(), 5.0).encode()


_TEST_METHODS: dict[str, grpc.RpcMethodHandler] = {
    "Echo": grpc.unary_unary_rpc_method_handler(_unary_echo),
    "Metadata": grpc.unary_unary_rpc_method_handler(_show_metadata),
    "Count": grpc.unary_stream_rpc_method_handler(_count),
    "Sum": grpc.stream_unary_rpc_method_handler(_sum),
    "Chat": grpc.stream_stream_rpc_method_handler(_chat),
    "Fail": grpc.unary_unary_rpc_method_handler(_fail_with),
    "FailAfter": grpc.unary_stream_rpc_method_handler(_fail_after_a_message),
    "Slow": grpc.unary_unary_rpc_method_handler(_slow),
    "SlowStream": grpc.stream_stream_rpc_method_handler(_slow_stream),
    "Big": grpc.unary_unary_rpc_method_handler(_big),
    "GzipEcho": grpc.unary_unary_rpc_method_handler(_gzip_echo),
    "GzipChat": grpc.stream_stream_rpc_method_handler(_gzip_stream),
    "Probe": grpc.unary_unary_rpc_method_handler(_probe),
}


Behaviour = Callable[[Iterator[bytes], grpc.ServicerContext], Iterator[bytes]]


def _handler(behaviour: Behaviour) -> grpc.RpcMethodHandler:
    # No (de)serialisers: grpcio hands the handler raw bytes and sends what it yields as-is.
    return grpc.stream_stream_rpc_method_handler(behaviour)


@dataclass
class GrpcServer:
    """A running grpcio server at ``url`` (h2c, prior knowledge)."""

    server: grpc.Server
    port: int
    tls_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        """Stop serving and wait until the server has shut down."""
        self.server.stop(grace=None).wait(10)


def start_grpc_server(tls: tuple[bytes, bytes] | None = None, max_workers: int = 8) -> GrpcServer:
    """Start the ``pkg.Echo`` and ``pkg.Test`` services on 127.0.0.1 (port 0) in a thread
    pool; with ``tls`` (certificate chain and key, PEM), a second port speaks TLS
    (``GrpcServer.tls_port``)."""
    server = grpc.server(
        ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc-test"),
        options=[("grpc.max_concurrent_streams", 1000)],
    )
    generic = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Chat": _handler(_chat),
            "Fail": _handler(_fail),
            "FailAfterOne": _handler(_fail_after_one),
        },
    )
    test = grpc.method_handlers_generic_handler(TEST_SERVICE, _TEST_METHODS)
    server.add_generic_rpc_handlers((generic, test))
    port = server.add_insecure_port("127.0.0.1:0")
    if port == 0:
        raise RuntimeError("grpc server could not bind 127.0.0.1")
    tls_port = 0
    if tls is not None:
        credentials = grpc.ssl_server_credentials([(tls[1], tls[0])])
        tls_port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    return GrpcServer(server, port, tls_port)


def main() -> None:
    """Serve in this process until standard input closes (see the module docstring)."""
    tls = None
    if len(sys.argv) == 3:
        with open(sys.argv[1], "rb") as cert, open(sys.argv[2], "rb") as key:
            tls = (cert.read(), key.read())
    server = start_grpc_server(tls, max_workers=64)
    print(server.port, server.tls_port, flush=True)
    sys.stdin.read()
    server.stop()


@dataclass
class GrpcServerProcess:
    """``python tests/grpc_server.py`` running in a process of its own."""

    process: subprocess.Popen[str]
    port: int
    tls_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"https://localhost:{self.tls_port}"

    def stop(self) -> None:
        """Close its standard input (it stops serving and exits) and wait for it."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def spawn_grpc_server(
    cert_path: str | None = None, key_path: str | None = None
) -> GrpcServerProcess:
    """Start ``pkg.Echo`` and ``pkg.Test`` in a process of their own (TLS too, given a
    certificate chain and key); returns once it listens."""
    args = [sys.executable, __file__]
    if cert_path is not None and key_path is not None:
        args += [cert_path, key_path]
    process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(10)
        raise RuntimeError(f"the gRPC server process exited ({process.returncode})")
    port, tls_port = (int(word) for word in line.split())
    return GrpcServerProcess(process, port, tls_port)


if __name__ == "__main__":
    main()
