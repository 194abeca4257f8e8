"""h2any's client TLS streams (``h2any/_tls.py``) against a real TLS server on loopback.

Two streams: ``SocketTLSStream`` (an ``ssl.SSLSocket`` on a socket h2any opened itself, on
asyncio, uvloop and trio) and ``TLSByteStream`` (a memory BIO over any byte stream: a
proxy's tunnel). The server is anyio's own TLS listener (anyio's ``TLSStream``: a different
implementation from both). Each must behave as anyio's ``TLSStream`` does where h2any relies
on it (attributes, errors, ends of stream), move large amounts both ways intact, read in
batches (one ``receive()`` returns every record in hand, not one 16 KiB record), and lose
or repeat no byte when a read is cancelled.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute, TLSListener, TLSStream
from conftest import Certs

from h2any import _socket
from h2any._tls import BUFFER_SIZE, SocketTLSStream, TLSByteStream

pytestmark = pytest.mark.anyio

RECORD = 16 * 1024  # the largest TLS record's payload
MIB = 1024 * 1024
Handler = Callable[[anyio.abc.ByteStream], Awaitable[None]]
ClientTLSStream = SocketTLSStream | TLSByteStream


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """This module also runs on uvloop: SocketTLSStream waits through the loop's own
    add_reader/add_writer."""
    if request.param != "trio" and request.param != "asyncio":
        pytest.importorskip("uvloop")
    return request.param


@pytest.fixture(params=["socket", "bio"])
def kind(request: pytest.FixtureRequest) -> str:
    """Which stream: ``socket`` (SocketTLSStream) or ``bio`` (TLSByteStream)."""
    return str(request.param)


@asynccontextmanager
async def tls_server(
    certs: Certs, handler: Handler, *, close_notify: bool = False
) -> AsyncIterator[int]:
    """A TLS server on loopback running ``handler`` per connection; yields its port. With
    ``close_notify``, closing a connection sends close_notify (else it just closes)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert_path, certs.key_path)
    context.set_alpn_protocols(["h2"])
    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
    listener = TLSListener(tcp, context, standard_compatible=close_notify)

    async def serve(stream: anyio.abc.ByteStream) -> None:
        try:
            async with stream:
                await handler(stream)
        except (anyio.BrokenResourceError, anyio.EndOfStream, ssl.SSLError, OSError):
            pass  # the client went away first

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield tcp.extra(SocketAttribute.local_port)
        tg.cancel_scope.cancel()


async def connect(
    port: int, certs: Certs, kind: str = "socket", hostname: str = "localhost"
) -> ClientTLSStream:
    """A TLS stream of the given kind to the server on ``port``."""
    context = certs.client_ssl_context()
    if kind == "socket":
        tcp = await _socket.connect_tcp("127.0.0.1", port, MIB)
        stream = await _socket.start_tls(tcp, hostname, context)
        assert isinstance(stream, SocketTLSStream)
        return stream
    tcp = await anyio.connect_tcp("127.0.0.1", port)
    try:
        return await TLSByteStream.wrap(tcp, hostname, context)
    except BaseException:
        await anyio.aclose_forcefully(tcp)
        raise


async def receive_exactly(stream: anyio.abc.ByteStream, size: int) -> bytes:
    got = bytearray()
    while len(got) < size:
        got += await stream.receive(MIB)  # copied: the stream reuses its buffer
    return bytes(got)


def pattern(size: int, seed: int = 0) -> bytes:
    """``size`` bytes that differ from any shift of themselves (a lost or repeated piece
    shows)."""
    out = bytearray()
    counter = seed
    while len(out) < size:
        out += hashlib.sha256(counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


# -- the stream start_tls picks --------------------------------------------------------------


class Wrapper(anyio.abc.ByteStream):
    """A byte stream over another one that exposes its socket (like a proxy's tunnel, whose
    bytes may be buffered): TLS must not take the socket over."""

    def __init__(self, inner: anyio.abc.ByteStream, prefix: bytes = b"") -> None:
        self.inner = inner
        self.prefix = prefix  # bytes read already, handed out first

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self.prefix:
            data, self.prefix = self.prefix[:max_bytes], self.prefix[max_bytes:]
            return data
        return await self.inner.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self.inner.send(item)

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self.inner.extra_attributes


async def test_start_tls_takes_our_own_sockets_over_and_wraps_anything_else(
    certs: Certs, anyio_backend: Any
) -> None:
    async def echo(stream: anyio.abc.ByteStream) -> None:
        first = bytes(await stream.receive())
        if first.startswith(b"\x16\x03"):  # a TLS handshake inside the TLS stream
            server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_context.load_cert_chain(certs.cert_path, certs.key_path)
            inner = await TLSStream.wrap(
                Wrapper(stream, prefix=first),
                server_side=True,
                ssl_context=server_context,
                standard_compatible=False,
            )
            await inner.send(bytes(await inner.receive()))
            return
        await stream.send(first)

    context = certs.client_ssl_context()
    with anyio.fail_after(10):
        async with tls_server(certs, echo) as port:
            ours = await _socket.connect_tcp("127.0.0.1", port, MIB)
            async with await _socket.start_tls(ours, "localhost", context) as stream:
                assert isinstance(stream, SocketTLSStream)
                assert _socket.immediate_sender(stream) is not None
                await stream.send(b"ours")
                assert bytes(await stream.receive()) == b"ours"

            wrapped = Wrapper(await _socket.connect_tcp("127.0.0.1", port, MIB))
            async with await _socket.start_tls(wrapped, "localhost", context) as stream:
                assert isinstance(stream, TLSByteStream)
                assert _socket.immediate_sender(stream) is None
                await stream.send(b"wrapped")
                assert bytes(await stream.receive()) == b"wrapped"

            # TLS over a TLS stream (an https:// proxy's tunnel to an https:// target).
            outer = await connect(port, certs)
            async with await _socket.start_tls(outer, "localhost", context) as stream:
                assert isinstance(stream, TLSByteStream)
                await stream.send(b"inside")
                assert bytes(await stream.receive()) == b"inside"

            anyios = await anyio.connect_tcp("127.0.0.1", port)
            async with await _socket.start_tls(anyios, "localhost", context) as stream:
                # On asyncio, anyio's stream is an asyncio transport's: not ours to take.
                expected = SocketTLSStream if anyio_backend == "trio" else TLSByteStream
                assert isinstance(stream, expected)
                await stream.send(b"anyio")
                assert bytes(await stream.receive()) == b"anyio"


# -- handshake ------------------------------------------------------------------------------


async def test_handshake_gives_anyio_tls_attributes(certs: Certs, kind: str) -> None:
    async def echo(stream: anyio.abc.ByteStream) -> None:
        await stream.send(bytes(await stream.receive()))

    with anyio.fail_after(10):
        async with tls_server(certs, echo) as port:
            stream = await connect(port, certs, kind)
            async with stream:
                assert stream.extra(TLSAttribute.alpn_protocol) == "h2"
                assert stream.extra(TLSAttribute.tls_version).startswith("TLSv1.")
                assert stream.extra(TLSAttribute.server_side) is False
                assert stream.extra(TLSAttribute.standard_compatible) is False
                assert stream.extra(TLSAttribute.peer_certificate)["subjectAltName"]
                assert stream.extra(TLSAttribute.peer_certificate_binary)
                assert stream.extra(TLSAttribute.cipher)
                ssl_object = stream.extra(TLSAttribute.ssl_object)
                assert isinstance(ssl_object, (ssl.SSLObject, ssl.SSLSocket))
                assert ssl_object.selected_alpn_protocol() == "h2"
                raw = stream.extra(SocketAttribute.raw_socket)
                assert raw.fileno() >= 0
                assert stream.extra(SocketAttribute.remote_port) == port
                await stream.send(b"ping")
                assert bytes(await stream.receive()) == b"ping"


async def test_a_certificate_for_another_name_fails_the_handshake(certs: Certs, kind: str) -> None:
    async def nothing(stream: anyio.abc.ByteStream) -> None:
        await stream.receive()

    with anyio.fail_after(10):
        async with tls_server(certs, nothing) as port:
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(port, certs, kind, hostname="elsewhere.example")
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(port, certs, kind, hostname="127.0.0.2")  # an IP not in it


async def test_a_server_signed_by_an_unknown_ca_fails_the_handshake(
    certs: Certs, kind: str
) -> None:
    async def nothing(stream: anyio.abc.ByteStream) -> None:
        await stream.receive()

    with anyio.fail_after(10):
        async with tls_server(certs, nothing) as port:
            context = ssl.create_default_context()  # the system's roots: not the test CA
            tcp = await _socket.connect_tcp("127.0.0.1", port, MIB)
            stream: anyio.abc.ByteStream = tcp if kind == "socket" else Wrapper(tcp)
            with pytest.raises(ssl.SSLCertVerificationError):
                await _socket.start_tls(stream, "localhost", context)


async def test_a_server_that_speaks_no_tls_fails_the_handshake(
    kind: str, anyio_backend: Any
) -> None:
    async def http1(client: anyio.abc.SocketStream) -> None:
        async with client:
            await client.receive()
            await client.send(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")

    async def hang_up(client: anyio.abc.SocketStream) -> None:
        await client.aclose()

    context = ssl.create_default_context()
    for handler, errors in (
        (http1, (ssl.SSLError,)),
        (hang_up, (anyio.EndOfStream, anyio.BrokenResourceError)),
    ):
        with anyio.fail_after(10):
            async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
                port = listener.extra(SocketAttribute.local_port)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(listener.serve, handler)
                    tcp = await _socket.connect_tcp("127.0.0.1", port, MIB)
                    stream: anyio.abc.ByteStream = tcp if kind == "socket" else Wrapper(tcp)
                    with pytest.raises(errors):
                        await _socket.start_tls(stream, "localhost", context)
                    tg.cancel_scope.cancel()


# -- reading and writing --------------------------------------------------------------------


async def test_one_receive_returns_many_records(certs: Certs, kind: str) -> None:
    total = 256 * 1024  # fits the loopback socket buffers: the server finishes sending
    sent = anyio.Event()

    async def blast(stream: anyio.abc.ByteStream) -> None:
        for _ in range(total // RECORD):
            await stream.send(b"x" * RECORD)
        sent.set()
        await stream.receive()  # until the client closes

    with anyio.fail_after(10):
        async with tls_server(certs, blast) as port:
            stream = await connect(port, certs, kind)
            async with stream:
                await sent.wait()  # the records sit in the client's socket buffer
                sizes = []
                received = 0
                while received < total:
                    chunk = await stream.receive(MIB)
                    sizes.append(len(chunk))
                    received += len(chunk)
                assert received == total
                assert max(sizes) > RECORD
                assert max(sizes) <= BUFFER_SIZE


async def test_receive_respects_max_bytes(certs: Certs, kind: str) -> None:
    async def send_big(stream: anyio.abc.ByteStream) -> None:
        await stream.send(b"y" * 100_000)
        await stream.receive()

    with anyio.fail_after(10):
        async with tls_server(certs, send_big) as port:
            stream = await connect(port, certs, kind)
            async with stream:
                got = b""
                while len(got) < 100_000:
                    chunk = bytes(await stream.receive(1000))
                    assert 0 < len(chunk) <= 1000
                    got += chunk
                assert got == b"y" * 100_000
                with pytest.raises(ValueError, match="max_bytes"):
                    await stream.receive(0)


async def test_large_transfers_both_ways_at_once_arrive_intact(certs: Certs, kind: str) -> None:
    """8 MiB each way at the same time: the client's reader and writer run as two tasks
    on one stream (as the connection task's do), the server echoes."""
    size = 8 * MIB
    payload = pattern(size)

    async def echo(stream: anyio.abc.ByteStream) -> None:
        echoed = 0
        while echoed < size:
            data = await stream.receive(MIB)
            await stream.send(data)
            echoed += len(data)
        await stream.receive()  # until the client closes

    with anyio.fail_after(60):
        async with tls_server(certs, echo) as port:
            stream = await connect(port, certs, kind)
            async with stream:
                sent = 0

                async def write() -> None:
                    nonlocal sent
                    for start in range(0, size, 300_000):  # pieces of odd sizes
                        await stream.send(payload[start : start + 300_000])
                        sent += len(payload[start : start + 300_000])

                async with anyio.create_task_group() as tg:
                    tg.start_soon(write)
                    echoed = await receive_exactly(stream, size)
                assert sent == size
                assert echoed == payload


async def test_send_now_then_send_carries_on_without_repeating(certs: Certs) -> None:
    """``send_now`` into a full socket returns 0 (the TLS library may have sent part of the
    bytes already); the next write starts with the same bytes and may add more (the
    connection task's leftover plus newer frames): the peer gets everything once."""
    go = anyio.Event()
    done = anyio.Event()
    received = bytearray()
    piece = 64 * 1024
    expected = b""

    async def slow_reader(stream: anyio.abc.ByteStream) -> None:
        await go.wait()
        while len(received) < len(expected):
            received.extend(await stream.receive(MIB))
        done.set()
        await stream.receive()

    with anyio.fail_after(30):
        async with tls_server(certs, slow_reader) as port:
            stream = await connect(port, certs, "socket")
            async with stream:
                pieces = [pattern(piece, seed=1000 * i) for i in range(400)]  # 25 MiB
                sent = []
                index = 0
                while (taken := stream.send_now(pieces[index])) != 0:
                    assert taken == piece
                    sent.append(pieces[index])
                    index += 1
                    assert index < len(pieces) - 1, "the socket buffers never filled"
                assert stream.send_now(pieces[index]) == 0  # still full: the same bytes again
                expected = b"".join([*sent, pieces[index], pieces[index + 1]]) + b"end"
                go.set()
                # The leftover, with the next piece after it, in one write.
                await stream.send(pieces[index] + pieces[index + 1])
                await stream.send(b"end")
                await done.wait()
                assert bytes(received) == expected


# -- ends of stream --------------------------------------------------------------------------


async def test_close_notify_is_end_of_stream(certs: Certs, kind: str) -> None:
    async def say_goodbye(stream: anyio.abc.ByteStream) -> None:
        await stream.send(b"last words")
        # Returning closes it; with standard_compatible=True, with close_notify first.

    with anyio.fail_after(10):
        async with tls_server(certs, say_goodbye, close_notify=True) as port:
            stream = await connect(port, certs, kind)
            async with stream:
                assert await receive_exactly(stream, 10) == b"last words"
                with pytest.raises(anyio.EndOfStream):
                    await stream.receive()


async def test_a_peer_closing_without_close_notify_is_end_of_stream(
    certs: Certs, kind: str
) -> None:
    async def close_abruptly(stream: anyio.abc.ByteStream) -> None:
        await stream.send(b"last words")
        # Returning closes it: with standard_compatible=False, without close_notify.

    with anyio.fail_after(10):
        async with tls_server(certs, close_abruptly) as port:
            stream = await connect(port, certs, kind)
            async with stream:
                assert await receive_exactly(stream, 10) == b"last words"
                with pytest.raises(anyio.EndOfStream):
                    await stream.receive()


async def test_a_reset_connection_is_a_broken_resource(certs: Certs, kind: str) -> None:
    async def reset(stream: anyio.abc.ByteStream) -> None:
        raw = stream.extra(SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await stream.send(b"x")
        # Returning closes it: linger 0 makes that a TCP reset.

    with anyio.fail_after(10):
        async with tls_server(certs, reset) as port:
            stream = await connect(port, certs, kind)
            async with stream:
                # (With OpenSSL 3, Python reports a reset under an SSLSocket as an EOF
                # without close_notify: SSL_read_ex returns 0 either way.)
                with pytest.raises((anyio.BrokenResourceError, anyio.EndOfStream)):
                    await receive_exactly(stream, 2)  # the "x" may or may not come first
                with pytest.raises(anyio.BrokenResourceError):
                    await stream.send(b"y" * MIB)


async def test_a_closed_stream_says_so(certs: Certs, kind: str) -> None:
    async def nothing(stream: anyio.abc.ByteStream) -> None:
        await stream.receive()

    with anyio.fail_after(10):
        async with tls_server(certs, nothing) as port:
            stream = await connect(port, certs, kind)
            await stream.aclose()
            await stream.aclose()  # idempotent
            with pytest.raises((anyio.ClosedResourceError, anyio.BrokenResourceError)):
                await stream.receive()
            with pytest.raises((anyio.ClosedResourceError, anyio.BrokenResourceError)):
                await stream.send(b"x")


# -- cancellation ---------------------------------------------------------------------------


async def test_a_read_cancelled_while_waiting_loses_nothing(certs: Certs, kind: str) -> None:
    release = anyio.Event()

    async def late(stream: anyio.abc.ByteStream) -> None:
        await release.wait()
        await stream.send(b"after the cancellation")
        await stream.receive()

    with anyio.fail_after(10):
        async with tls_server(certs, late) as port:
            stream = await connect(port, certs, kind)
            async with stream:
                for _ in range(3):
                    with anyio.CancelScope() as scope:
                        async with anyio.create_task_group() as tg:

                            async def cancel_when_blocked() -> None:
                                await anyio.wait_all_tasks_blocked()
                                scope.cancel()

                            tg.start_soon(cancel_when_blocked)
                            await stream.receive()
                    assert scope.cancelled_caught
                release.set()
                assert await receive_exactly(stream, 22) == b"after the cancellation"


async def test_cancelled_reads_neither_lose_nor_repeat_bytes(certs: Certs, kind: str) -> None:
    """Reads cancelled at every point -- before data came, with data waiting -- then
    read again: what the reads returned is the server's stream, whole and in order."""
    size = 4 * MIB
    payload = pattern(size, seed=7)

    async def blast(stream: anyio.abc.ByteStream) -> None:
        for start in range(0, size, 100_000):
            await stream.send(payload[start : start + 100_000])
        await stream.receive()

    with anyio.fail_after(60):
        async with tls_server(certs, blast) as port:
            stream = await connect(port, certs, kind)
            async with stream:
                got = bytearray()
                cancelled = 0
                attempt = 0
                while len(got) < size:
                    attempt += 1
                    with anyio.CancelScope() as scope:
                        if attempt % 3 == 0:
                            scope.cancel()  # cancelled before the read starts
                        got += await stream.receive(attempt % 7 * 10_000 + 1)
                    cancelled += scope.cancelled_caught
                assert cancelled
                assert bytes(got) == payload


async def test_a_send_cancelled_part_way_leaves_the_stream_broken(certs: Certs) -> None:
    go = anyio.Event()

    async def stalled(stream: anyio.abc.ByteStream) -> None:
        await go.wait()

    with anyio.fail_after(10):
        async with tls_server(certs, stalled) as port:
            stream = await connect(port, certs, "socket")
            async with stream:
                with anyio.CancelScope() as scope:
                    async with anyio.create_task_group() as tg:

                        async def cancel_when_blocked() -> None:
                            await anyio.wait_all_tasks_blocked()
                            scope.cancel()

                        tg.start_soon(cancel_when_blocked)
                        await stream.send(b"z" * (64 * MIB))  # more than the buffers hold
                assert scope.cancelled_caught
                with pytest.raises(anyio.BrokenResourceError):
                    await stream.send(b"more")
                go.set()
