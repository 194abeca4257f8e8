"""h2any's client TLS stream (``h2any._tls.TLSByteStream``) against a real TLS server.

The server is anyio's own TLS listener on loopback. The stream must behave as anyio's
``TLSStream`` does where h2any relies on it (attributes, errors), and read in batches: one
``receive()`` returns every record already decrypted-able, not one 16 KiB record.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest
from anyio.streams.tls import TLSAttribute, TLSListener
from conftest import Certs

from h2any._socket import start_tls
from h2any._tls import BUFFER_SIZE

pytestmark = pytest.mark.anyio

RECORD = 16 * 1024  # the largest TLS record's payload
Handler = Callable[[anyio.abc.ByteStream], Awaitable[None]]


@asynccontextmanager
async def tls_server(certs: Certs, handler: Handler) -> AsyncIterator[int]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert_path, certs.key_path)
    context.set_alpn_protocols(["h2"])
    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
    listener = TLSListener(tcp, context, standard_compatible=False)

    async def serve(stream: anyio.abc.ByteStream) -> None:
        async with stream:
            await handler(stream)

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield tcp.extra(anyio.abc.SocketAttribute.local_port)
        tg.cancel_scope.cancel()


async def connect(port: int, certs: Certs, hostname: str = "localhost") -> anyio.abc.ByteStream:
    tcp = await anyio.connect_tcp("127.0.0.1", port)
    return await start_tls(tcp, hostname, certs.client_ssl_context())


async def test_handshake_gives_anyio_tls_attributes(certs: Certs) -> None:
    async def echo(stream: anyio.abc.ByteStream) -> None:
        await stream.send(bytes(await stream.receive()))

    with anyio.fail_after(10):
        async with tls_server(certs, echo) as port:
            stream = await connect(port, certs)
            async with stream:
                assert stream.extra(TLSAttribute.alpn_protocol) == "h2"
                assert stream.extra(TLSAttribute.tls_version).startswith("TLSv1.")
                assert stream.extra(TLSAttribute.server_side) is False
                assert stream.extra(TLSAttribute.peer_certificate)["subjectAltName"]
                assert isinstance(stream.extra(TLSAttribute.ssl_object), ssl.SSLObject)
                await stream.send(b"ping")
                assert bytes(await stream.receive()) == b"ping"


async def test_one_receive_returns_many_records(certs: Certs) -> None:
    total = 256 * 1024  # fits the loopback socket buffers: the server finishes sending
    sent = anyio.Event()

    async def blast(stream: anyio.abc.ByteStream) -> None:
        for _ in range(total // RECORD):
            await stream.send(b"x" * RECORD)
        sent.set()
        await stream.receive()  # until the client closes

    with anyio.fail_after(10):
        async with tls_server(certs, blast) as port:
            stream = await connect(port, certs)
            async with stream:
                await sent.wait()  # the records sit in the client's socket buffer
                sizes = []
                received = 0
                while received < total:
                    chunk = await stream.receive(1024 * 1024)
                    sizes.append(len(chunk))
                    received += len(chunk)
                assert received == total
                assert max(sizes) > RECORD
                assert max(sizes) <= BUFFER_SIZE


async def test_receive_respects_max_bytes(certs: Certs) -> None:
    async def send_big(stream: anyio.abc.ByteStream) -> None:
        await stream.send(b"y" * 100_000)
        await stream.receive()

    with anyio.fail_after(10):
        async with tls_server(certs, send_big) as port:
            stream = await connect(port, certs)
            async with stream:
                got = b""
                while len(got) < 100_000:
                    chunk = bytes(await stream.receive(1000))
                    assert 0 < len(chunk) <= 1000
                    got += chunk
                assert got == b"y" * 100_000


async def test_a_peer_closing_without_close_notify_is_end_of_stream(certs: Certs) -> None:
    async def close_abruptly(stream: anyio.abc.ByteStream) -> None:
        await stream.send(b"last words")
        # Returning closes it: with standard_compatible=False, without close_notify.

    with anyio.fail_after(10):
        async with tls_server(certs, close_abruptly) as port:
            stream = await connect(port, certs)
            async with stream:
                assert bytes(await stream.receive()) == b"last words"
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await stream.receive()


async def test_a_certificate_for_another_name_fails_the_handshake(certs: Certs) -> None:
    async def nothing(stream: anyio.abc.ByteStream) -> None:
        await stream.receive()

    with anyio.fail_after(10):
        async with tls_server(certs, nothing) as port:
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(port, certs, hostname="elsewhere.example")
