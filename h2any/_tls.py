"""TLS for the connection task: a client-side TLS stream that decrypts in large batches.

anyio's ``TLSStream`` hands back one TLS record per ``receive()`` -- at most 16 KiB, however
much the socket brought in -- so a download over TLS costs the connection task a trip
through its read loop (engine, frame checks, events) per 16 KiB, where a plain socket gives
it up to 1 MiB at once. `TLSByteStream` is the same memory-BIO machinery, read the other
way round: one ``receive()`` decrypts every record already in hand (reading the transport in
large pieces) into a reused buffer, up to ``max_bytes``.

It speaks exactly like anyio's stream where h2any relies on it: the same
``TLSAttribute`` extra attributes (ALPN, certificate, version, ...), the same errors
(``ssl.SSLError`` from the handshake, ``EndOfStream`` for a peer that closes without
close_notify -- HTTP/2 does its own framing -- ``BrokenResourceError`` for a lost
transport). Like `AsyncioSocketStream`, ``receive`` returns a view of a buffer the next
``receive`` overwrites: callers copy what they keep.

Only the sender writes to the transport: bytes the TLS library queues while reading
(TLS 1.3 key updates; HTTP/2 forbids renegotiation) wait for the next ``send``. So the
connection task's reader and writer never both write to the socket.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.tls import TLSAttribute

__all__ = ("TLSByteStream",)

#: Bytes asked of the transport per read (the socket may give fewer).
TRANSPORT_READ: Final = 256 * 1024
#: The decrypted-data buffer: one receive() returns at most this much.
BUFFER_SIZE: Final = 256 * 1024

T = TypeVar("T")


class TLSByteStream(anyio.abc.ByteStream):
    """A client TLS session over ``transport`` (see the module docstring)."""

    def __init__(
        self,
        transport: anyio.abc.ByteStream,
        ssl_object: ssl.SSLObject,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
    ) -> None:
        self._transport = transport
        self._ssl = ssl_object
        self._incoming = incoming
        self._outgoing = outgoing
        self._buffer = bytearray(BUFFER_SIZE)
        self._view = memoryview(self._buffer)
        self._broken = False

    @classmethod
    async def wrap(
        cls, transport: anyio.abc.ByteStream, hostname: str, ssl_context: ssl.SSLContext
    ) -> TLSByteStream:
        """Run the handshake as the client over ``transport``, checking the certificate
        against ``hostname``. Raises ``ssl.SSLError`` (verification, handshake),
        ``anyio.EndOfStream`` or ``anyio.BrokenResourceError`` (the transport failed)."""
        incoming = ssl.MemoryBIO()
        outgoing = ssl.MemoryBIO()
        ssl_object = ssl_context.wrap_bio(
            incoming, outgoing, server_side=False, server_hostname=hostname
        )
        stream = cls(transport, ssl_object, incoming, outgoing)
        await stream._drive(ssl_object.do_handshake)
        return stream

    # ------------------------------------------------------------------ I/O

    async def _flush(self) -> None:
        if self._outgoing.pending:
            data = self._outgoing.read()
            try:
                await self._transport.send(data)
            except BaseException:
                # The record's sequence number is spent: nothing sent later would decrypt.
                self._broken = True
                raise

    async def _fill(self) -> None:
        """Read the transport into the incoming BIO (EOF too)."""
        try:
            data = await self._transport.receive(TRANSPORT_READ)
        except anyio.EndOfStream:
            self._incoming.write_eof()
        except OSError as exc:
            self._fail()
            raise anyio.BrokenResourceError from exc
        else:
            self._incoming.write(data)

    def _fail(self) -> None:
        self._incoming.write_eof()
        self._outgoing.write_eof()

    def _translate(self, exc: ssl.SSLError) -> BaseException:
        """anyio's reading of an SSL error (with ``standard_compatible=False``)."""
        self._fail()
        if isinstance(exc, ssl.SSLSyscallError):
            return anyio.BrokenResourceError()
        if isinstance(exc, ssl.SSLEOFError) or (
            exc.strerror and "UNEXPECTED_EOF_WHILE_READING" in exc.strerror
        ):
            return anyio.EndOfStream()
        return exc

    async def _drive(self, method: Callable[[], T]) -> T:
        """Call ``method`` of the SSL object until it needs no more I/O (the handshake)."""
        if self._broken:
            raise anyio.BrokenResourceError
        while True:
            try:
                result = method()
            except ssl.SSLWantReadError:
                await self._flush()
                await self._fill()
            except ssl.SSLError as exc:
                error = self._translate(exc)
                if error is exc:
                    raise
                raise error from exc
            else:
                await self._flush()
                return result

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        if self._broken:
            raise anyio.BrokenResourceError
        read = self._ssl.read
        view = self._view
        limit = min(max_bytes, BUFFER_SIZE)
        size = 0
        waited = False
        while size < limit:
            try:
                # With a buffer, SSLObject.read returns the count (typeshed says bytes).
                got: int = read(limit - size, view[size:limit])  # type: ignore[assignment]
            except ssl.SSLWantReadError:
                if size:
                    break  # hand over what is decrypted; the rest comes next time
                await self._fill()
                waited = True
                continue
            except ssl.SSLZeroReturnError:
                if size:
                    break
                raise anyio.EndOfStream from None
            except ssl.SSLError as exc:
                if size:
                    break  # report it on the next call, after this data
                error = self._translate(exc)
                if error is exc:
                    raise
                raise error from exc
            if not got:
                if size:
                    break
                raise anyio.EndOfStream
            size += got
        if not waited:
            # Data was waiting: still let others run, and let a cancellation in.
            await anyio.lowlevel.checkpoint()
        return view[:size]  # type: ignore[return-value]

    async def send(self, item: bytes) -> None:
        if self._broken:
            raise anyio.BrokenResourceError
        try:
            self._ssl.write(item)
        except ssl.SSLError as exc:
            error = self._translate(exc)
            if error is exc:
                raise
            raise error from exc
        await self._flush()

    async def send_eof(self) -> None:
        raise NotImplementedError("TLS streams cannot half-close (no TLS 1.3 send_eof)")

    async def aclose(self) -> None:
        await self._transport.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        ssl_object = self._ssl
        return {
            **self._transport.extra_attributes,
            TLSAttribute.alpn_protocol: ssl_object.selected_alpn_protocol,
            TLSAttribute.channel_binding_tls_unique: ssl_object.get_channel_binding,
            TLSAttribute.cipher: ssl_object.cipher,
            TLSAttribute.peer_certificate: lambda: ssl_object.getpeercert(False),
            TLSAttribute.peer_certificate_binary: lambda: ssl_object.getpeercert(True),
            TLSAttribute.server_side: lambda: False,
            TLSAttribute.shared_ciphers: lambda: None,
            TLSAttribute.standard_compatible: lambda: False,
            TLSAttribute.ssl_object: lambda: ssl_object,
            TLSAttribute.tls_version: ssl_object.version,
        }
