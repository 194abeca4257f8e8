"""The TCP connections the connection task reads and writes (``h2any/_socket.py``).

On asyncio they are plain sockets driven by the loop (``AsyncioSocketStream``); on trio,
anyio's own. Either way: the first address that answers wins, bytes arrive intact and in
order, the peer's close is ``EndOfStream``, and a closed stream says so.
"""

from __future__ import annotations

import socket
from typing import Any

import anyio
import anyio.abc
import pytest

from h2any import _socket

pytestmark = pytest.mark.anyio


async def _echo_once(listener: Any, received: list[bytes]) -> None:
    async with await listener.listeners[0].accept() as client:
        while True:
            try:
                data = await client.receive()
            except anyio.EndOfStream:
                return
            received.append(data)
            await client.send(data.upper())


async def test_bytes_go_both_ways_and_the_peers_close_ends_the_stream(
    anyio_backend: str,
) -> None:
    received: list[bytes] = []
    with anyio.fail_after(10):
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_echo_once, listener, received)
                stream = await _socket.connect_tcp("127.0.0.1", port, 1 << 20)
                if anyio_backend == "asyncio":
                    assert isinstance(stream, _socket.AsyncioSocketStream)
                raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
                assert raw.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                payload = bytes(range(256)) * 4096  # 1 MiB: several reads and writes
                await stream.send(payload)
                echoed = bytearray()
                while len(echoed) < len(payload):
                    echoed += await stream.receive(1 << 20)  # copied: the buffer is reused
                assert bytes(echoed) == payload.upper()
                await stream.send_eof()
                with pytest.raises(anyio.EndOfStream):
                    await stream.receive()
                await stream.aclose()
                with pytest.raises(anyio.ClosedResourceError):
                    await stream.receive()
                with pytest.raises(anyio.ClosedResourceError):
                    await stream.send(b"x")
    assert b"".join(received) == payload


async def test_an_address_that_refuses_gives_way_to_the_next(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A closed port on ::1 first (refused at once), then the listener on 127.0.0.1.
    closed = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    closed.bind(("::1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    with anyio.fail_after(10):
        async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
            port = listener.extra(anyio.abc.SocketAttribute.local_port)
            real_getaddrinfo = anyio.getaddrinfo

            async def getaddrinfo(host: Any, port_: Any, **kwargs: Any) -> Any:
                ipv6 = await real_getaddrinfo("::1", closed_port, **kwargs)
                ipv4 = await real_getaddrinfo("127.0.0.1", port, **kwargs)
                return ipv6 + ipv4

            monkeypatch.setattr(anyio, "getaddrinfo", getaddrinfo)
            # On trio h2any uses anyio.connect_tcp, which resolves through its own module.
            monkeypatch.setattr("anyio._core._sockets.getaddrinfo", getaddrinfo)
            async with anyio.create_task_group() as tg:
                tg.start_soon(_echo_once, listener, [])
                stream = await _socket.connect_tcp("dual.test", port, 1 << 16)
                await stream.send(b"ping")
                assert bytes(await stream.receive()) == b"PING"
                await stream.aclose()


async def test_no_address_answers_is_an_oserror(monkeypatch: pytest.MonkeyPatch) -> None:
    closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    with anyio.fail_after(10), pytest.raises(OSError, match=r"(?i)refused|failed"):
        await _socket.connect_tcp("127.0.0.1", closed_port, 1 << 16)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the plain-socket stream is asyncio's
async def test_send_now_sends_what_the_socket_takes_without_waiting(anyio_backend: str) -> None:
    # The connection task writes through send_now first and waits (under the write
    # timeout) only for what the socket did not take.
    with anyio.fail_after(10):
        ours, peer = socket.socketpair()
        ours.setblocking(False)
        ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        stream = _socket.AsyncioSocketStream(ours, 1 << 16)
        try:
            assert stream.send_now(b"hello") == 5
            assert peer.recv(5) == b"hello"
            big = b"x" * (1 << 22)
            taken = stream.send_now(big)
            assert 0 < taken < len(big)  # the peer reads nothing: the buffer fills
            assert stream.send_now(big) == 0
        finally:
            await stream.aclose()
            peer.close()
        with pytest.raises(anyio.ClosedResourceError):
            stream.send_now(b"x")


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # the plain-socket stream is asyncio's
async def test_cancelled_receives_lose_nothing(anyio_backend: str) -> None:
    # A receive cancelled before it takes bytes takes none; one cancelled after it took
    # them (while it lets other tasks run) still returns them. 1 MiB read through receives
    # cancelled every which way arrives whole and in order.
    payload = bytes(range(256)) * 4096
    with anyio.fail_after(20):
        ours, peer = socket.socketpair()
        ours.setblocking(False)
        stream = _socket.AsyncioSocketStream(ours, 1 << 16)
        got = bytearray()
        cancelled = 0
        try:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(anyio.to_thread.run_sync, peer.sendall, payload)
                attempt = 0
                while len(got) < len(payload):
                    attempt += 1
                    with anyio.CancelScope() as scope:
                        if attempt % 3 == 0:
                            scope.cancel()  # before the call: it must take nothing
                        elif attempt % 3 == 1:
                            # Cancelled while the receive lets others run (or waits).
                            task_group.start_soon(_cancel, scope)
                        got += await stream.receive()
                    cancelled += scope.cancelled_caught
        finally:
            await stream.aclose()
            peer.close()
    assert bytes(got) == payload
    assert cancelled  # some calls were cancelled on the way


async def _cancel(scope: anyio.CancelScope) -> None:
    scope.cancel()
