"""TLS for the connection task: client-side TLS streams that read in large batches.

Two streams, both speaking like anyio's ``TLSStream`` where h2any relies on it (the same
``TLSAttribute`` extra attributes -- ALPN, certificate, version, ... --, the same errors:
``ssl.SSLError`` from the handshake, ``EndOfStream`` for a peer that closes, with or without
close_notify -- HTTP/2 does its own framing --, ``BrokenResourceError`` for a lost
transport). Like `AsyncioSocketStream`, ``receive`` returns a view of a buffer the next
``receive`` overwrites: callers copy what they keep. One ``receive()`` decrypts every record
already in hand, up to ``max_bytes``, where anyio's stream returns one TLS record (16 KiB
at most) per call -- a trip through the connection task's read loop per 16 KiB.

* `SocketTLSStream`, for the connections h2any opens itself (a plain socket, asyncio or
  trio): an ``ssl.SSLSocket`` in non-blocking mode. OpenSSL reads and writes the socket
  itself, decrypting from its own buffer into ours; the stream waits only when it says
  it must (``SSLWantReadError`` / ``SSLWantWriteError``), with anyio's ``wait_readable`` /
  ``wait_writable``. It can send without waiting (``send_now``, as the plain socket
  streams do), which takes a task switch off every window's worth of an upload. Against
  the memory BIO (loopback nghttpd, 64 MiB, same runs): downloads 1.1-1.6x faster,
  uploads 1.0-1.8x, client CPU a tenth to a half less; user-space instructions per MiB
  -23% down, -39% up. (A memory BIO over the raw socket -- one ``recv`` per 256 KiB, one
  ``send`` per write -- ran no faster and took more instructions.)
* `TLSByteStream`, for TLS over another stream (to the target inside an ``https://``
  proxy's tunnel, or over an asyncio transport's socket): the memory-BIO machinery, reading
  the transport in large pieces. Only the sender writes to the transport: bytes the TLS
  library queues while reading (TLS 1.3 key updates; HTTP/2 forbids renegotiation) wait
  for the next ``send``, so the connection task's reader and writer never both write.

Both are safe to cancel while reading: a ``receive`` cancelled while it waits has taken
nothing, and bytes one took before it was cancelled are returned by the next (as in
``_socket.py``: ``_handover.py``). A ``send`` cancelled part-way leaves
the stream broken (some of its records may be out; the rest would not decrypt).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeVar

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute

from ._handover import HandOver

__all__ = ("SocketTLSStream", "TLSByteStream")

#: Bytes asked of the transport per read (the socket may give fewer).
TRANSPORT_READ: Final = 256 * 1024
#: The decrypted-data buffer: one receive() returns at most this much.
BUFFER_SIZE: Final = 256 * 1024
#: Waiting for readiness that another task of the same stream is already waiting for (the
#: reader needs a write, or the writer a read: rare TLS housekeeping): poll this often.
BUSY_POLL: Final = 0.005

T = TypeVar("T")

# Waiting for a socket: anyio 4.7's names, else the older ones (h2any supports anyio>=4.4;
# before 4.7 there is no notify_closing, and nothing waits on a socket being closed here).
wait_readable: Callable[[socket.socket], Awaitable[None]] = getattr(
    anyio, "wait_readable", None
) or getattr(anyio, "wait_socket_readable")  # noqa: B009
wait_writable: Callable[[socket.socket], Awaitable[None]] = getattr(
    anyio, "wait_writable", None
) or getattr(anyio, "wait_socket_writable")  # noqa: B009
notify_closing: Callable[[socket.socket], None] = getattr(
    anyio, "notify_closing", lambda sock: None
)


class TLSByteStream(HandOver, anyio.abc.ByteStream):
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
        self._fail()
        return _translate(exc)

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
        if self._kept:
            return await self._hand_over(self._kept)
        limit = min(max_bytes, BUFFER_SIZE)
        # With a buffer, SSLObject.read returns the count (typeshed says bytes).
        read: Callable[[int, memoryview], int] = self._ssl.read  # type: ignore[assignment]
        data, waited = await _read_records(read, self._view, limit, self._wait, self._read_error)
        # (a view of the buffer, as in _socket.py: the caller copies what it keeps)
        return data if waited else await self._hand_over(data)  # type: ignore[return-value]

    async def _wait(self, readable: bool) -> None:
        await (self._fill() if readable else self._flush())

    def _read_error(self, exc: Exception) -> BaseException:
        if isinstance(exc, ssl.SSLZeroReturnError):
            return anyio.EndOfStream()  # close_notify: the stream can still be written
        if isinstance(exc, ssl.SSLError):
            return self._translate(exc)
        return exc

    async def send(self, item: bytes) -> None:
        if self._broken:
            raise anyio.BrokenResourceError
        try:
            self._ssl.write(item)
        except ssl.SSLError as exc:
            error = self._translate(exc)
            if error is exc:
                raise
            if isinstance(error, anyio.EndOfStream):  # an end is for readers to hear of
                error = anyio.BrokenResourceError()
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


class SocketTLSStream(HandOver, anyio.abc.ByteStream):
    """A client TLS session on a connected socket that nothing else reads or writes: an
    ``ssl.SSLSocket`` in non-blocking mode (see the module docstring)."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self._sock = sock
        # The SSLSocket's C object: its read/write are what SSLSocket.recv_into/send call
        # through Python-level wrappers -- once per 16 KiB record, and a would-block through
        # them costs 7 us instead of 2.5.
        ssl_object: Any = getattr(sock, "_sslobj", None)
        if ssl_object is not None and hasattr(ssl_object, "read"):
            self._read: Callable[[int, memoryview], int] = ssl_object.read
            self._write: Callable[[bytes], int] = ssl_object.write
        else:
            self._read = lambda size, buffer: sock.recv_into(buffer, size)
            self._write = sock.send
        self._buffer = bytearray(BUFFER_SIZE)
        self._view = memoryview(self._buffer)
        self._broken = False
        self._closed = False

    @classmethod
    async def wrap(
        cls, sock: socket.socket, hostname: str, ssl_context: ssl.SSLContext
    ) -> SocketTLSStream:
        """Take over ``sock`` (connected, non-blocking; it is detached: the new stream owns
        its file descriptor, and closes it if the handshake fails) and run the handshake as
        the client, checking the certificate against ``hostname``. Errors as
        `TLSByteStream.wrap`'s."""
        tls = ssl_context.wrap_socket(
            sock,
            server_hostname=hostname,
            do_handshake_on_connect=False,
            suppress_ragged_eofs=False,
        )
        stream = cls(tls)
        try:
            while True:
                try:
                    tls.do_handshake()
                except ssl.SSLWantReadError:
                    await wait_readable(tls)
                except ssl.SSLWantWriteError:
                    await wait_writable(tls)
                else:
                    return stream
        except BaseException as exc:
            await anyio.aclose_forcefully(stream)
            if isinstance(exc, ssl.SSLError):
                error = _translate(exc)
                if error is not exc:
                    raise error from exc
            elif isinstance(exc, OSError):
                raise anyio.BrokenResourceError from exc
            raise

    def _check(self) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        if self._broken:
            raise anyio.BrokenResourceError

    def _error(self, exc: Exception, reading: bool = False) -> BaseException:
        """What to raise for an error of the TLS library or the socket (an end of stream
        only to a reader: to a writer, the stream is broken)."""
        if self._closed:
            return anyio.ClosedResourceError()
        if isinstance(exc, ssl.SSLError):
            error = _translate(exc)
            if reading or not isinstance(error, anyio.EndOfStream):
                return error
        return anyio.BrokenResourceError()

    async def _wait(self, readable: bool) -> None:
        wait = wait_readable if readable else wait_writable
        try:
            await wait(self._sock)
        except anyio.BusyResourceError:
            # The stream's other task waits for the same readiness: poll instead.
            await anyio.sleep(BUSY_POLL)
        except anyio.ClosedResourceError:
            raise anyio.ClosedResourceError from None

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if max_bytes < 1:
            raise ValueError("max_bytes must be a positive integer")
        self._check()
        if self._kept:
            return await self._hand_over(self._kept)
        limit = min(max_bytes, BUFFER_SIZE)
        data, waited = await _read_records(
            self._read, self._view, limit, self._wait, self._read_error
        )
        return data if waited else await self._hand_over(data)  # type: ignore[return-value]

    def _read_error(self, exc: Exception) -> BaseException:
        return self._error(exc, reading=True)

    async def send(self, item: bytes) -> None:
        self._check()
        await anyio.lowlevel.checkpoint_if_cancelled()
        write = self._write
        waited = False
        try:
            while True:
                try:
                    write(item)
                except ssl.SSLWantWriteError:
                    await self._wait(readable=False)
                    waited = True
                except ssl.SSLWantReadError:
                    await self._wait(readable=True)
                    waited = True
                else:
                    break
        except (ssl.SSLError, OSError) as exc:
            self._broken = True
            error = self._error(exc)
            if error is exc:
                raise
            raise error from exc
        except BaseException:
            # Cancelled part-way: some records of ``item`` may be out, and the TLS library
            # expects the same write again; nothing else could follow.
            self._broken = True
            raise
        if not waited:
            # Sent: let others run, but do not report a cancellation for a write that
            # happened.
            await anyio.lowlevel.cancel_shielded_checkpoint()

    def send_now(self, item: bytes) -> int:
        """Encrypt and send ``item`` if the socket takes all of it at once: ``len(item)``;
        0 if it would have to wait.

        After a 0 the next write must start with ``item`` (the connection task sends what
        was not taken, ahead of anything newer): the TLS library may have sent some of its
        records already, and carries on after them rather than send them twice.
        """
        self._check()
        try:
            return self._write(item)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError):
            return 0
        except (ssl.SSLError, OSError) as exc:
            self._broken = True
            error = self._error(exc)
            if error is exc:
                raise
            raise error from exc

    async def send_eof(self) -> None:
        raise NotImplementedError("TLS streams cannot half-close (no TLS 1.3 send_eof)")

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            if self._sock.fileno() >= 0:
                notify_closing(self._sock)
            self._sock.close()
        await anyio.lowlevel.checkpoint()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        sock = self._sock
        return {
            SocketAttribute.family: lambda: sock.family,
            SocketAttribute.local_address: sock.getsockname,
            SocketAttribute.raw_socket: lambda: sock,
            SocketAttribute.remote_address: sock.getpeername,
            SocketAttribute.local_port: lambda: sock.getsockname()[1],
            SocketAttribute.remote_port: lambda: sock.getpeername()[1],
            TLSAttribute.alpn_protocol: sock.selected_alpn_protocol,
            TLSAttribute.channel_binding_tls_unique: sock.get_channel_binding,
            TLSAttribute.cipher: sock.cipher,
            TLSAttribute.peer_certificate: lambda: sock.getpeercert(False),
            TLSAttribute.peer_certificate_binary: lambda: sock.getpeercert(True),
            TLSAttribute.server_side: lambda: False,
            TLSAttribute.shared_ciphers: lambda: None,
            TLSAttribute.standard_compatible: lambda: False,
            TLSAttribute.ssl_object: lambda: sock,
            TLSAttribute.tls_version: sock.version,
        }


async def _read_records(
    read: Callable[[int, memoryview], int],
    view: memoryview,
    limit: int,
    wait: Callable[[bool], Awaitable[None]],
    error_for: Callable[[Exception], BaseException],
) -> tuple[memoryview, bool]:
    """Decrypt into ``view``, up to ``limit`` bytes, with ``read`` (an SSL object's); and
    whether it waited. Every record in hand is decrypted; it waits (``wait(readable)``) only
    while nothing is. The end of the stream or an error after some data is reported on the
    next call, after that data; ``error_for`` says what to raise for an error."""
    size = 0
    waited = False
    while size < limit:
        try:
            # With a buffer, an SSL object's read returns the count (typeshed says bytes).
            got = read(limit - size, view[size:limit])
        except ssl.SSLWantReadError:
            if size:
                break  # hand over what is decrypted; the rest comes next time
            await wait(True)
            waited = True
            continue
        except ssl.SSLWantWriteError:
            # The TLS library must write before it reads on (a TLS 1.3 key update).
            if size:
                break
            await wait(False)
            waited = True
            continue
        except (ssl.SSLError, OSError) as exc:
            if size:
                break  # report it on the next call, after this data
            error = error_for(exc)
            if error is exc:
                raise
            raise error from exc
        if not got:  # close_notify
            if size:
                break
            raise anyio.EndOfStream
        size += got
    return view[:size], waited


def _translate(exc: ssl.SSLError) -> BaseException:
    """anyio's reading of an SSL error (with ``standard_compatible=False``): a lost socket
    is ``BrokenResourceError``, an end without close_notify ``EndOfStream``."""
    if isinstance(exc, ssl.SSLSyscallError):
        return anyio.BrokenResourceError()
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)) or (
        exc.strerror and "UNEXPECTED_EOF_WHILE_READING" in exc.strerror
    ):
        return anyio.EndOfStream()
    return exc
