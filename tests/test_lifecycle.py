"""Opening and closing connections: GOAWAY on exit, aclose, connect() in a caller's task group."""

from __future__ import annotations

import socket

import anyio
import anyio.abc
import pytest
from h2.errors import ErrorCodes
from scripted import ScriptedPeer, scripted_server

import h2any

pytestmark = pytest.mark.anyio


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (tiny race accepted)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _set_event(event: anyio.Event) -> None:
    event.set()


async def _request_until_it_fails(conn: h2any.Connection) -> None:
    # The server closed the socket: sooner or later (once the client noticed) requests fail.
    while True:
        await (await conn.request("GET", "/")).read()


def _task_count() -> int:
    return len(anyio.get_running_tasks())


class NeverResponds:
    """Scripted handler: handshake, take one request, never answer it, wait for the client
    to leave. ``request_seen`` is set when the request arrives, ``finished`` at the end."""

    def __init__(self) -> None:
        self.request_seen = anyio.Event()
        self.finished = anyio.Event()

    async def __call__(self, peer: ScriptedPeer) -> None:
        try:
            await peer.handshake()
            await peer.expect_request()
            self.request_seen.set()
            await peer.wait_closed()
        finally:
            self.finished.set()


class RespondsWithoutBody:
    """Scripted handler: answer the first request with headers only, keep the stream open."""

    def __init__(self) -> None:
        self.headers_sent = anyio.Event()

    async def __call__(self, peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.respond(request.stream_id, end=False)
        self.headers_sent.set()
        await peer.wait_closed()


# -- leaving async with -------------------------------------------------------------------


async def test_leaving_async_with_sends_goaway_and_closes_the_socket() -> None:
    finished = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        await peer.wait_closed()  # returns only once the client closed its socket
        finished.set()

    with anyio.fail_after(5):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url) as conn:
                assert not conn.is_closed
            assert conn.is_closed
            await finished.wait()
            peer = server.peers[0]
    assert peer.goaway_received is not None
    assert peer.goaway_received.error_code == ErrorCodes.NO_ERROR


async def test_goaway_on_exit_after_a_request_was_served() -> None:
    finished = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.respond(request.stream_id, body=b"hi")
        await peer.wait_closed()
        finished.set()

    with anyio.fail_after(5):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url) as conn:
                response = await conn.request("GET", "/")
                assert await response.read() == b"hi"
            await finished.wait()
            peer = server.peers[0]
    assert peer.goaway_received is not None
    assert peer.goaway_received.error_code == ErrorCodes.NO_ERROR
    assert server.connections == 1


# -- aclose while requests wait -----------------------------------------------------------


async def test_aclose_fails_a_request_waiting_for_headers_in_another_task() -> None:
    handler = NeverResponds()
    errors: list[BaseException] = []

    async def waiter(conn: h2any.Connection) -> None:
        try:
            await conn.request("GET", "/never")
        except h2any.H2anyError as exc:
            errors.append(exc)

    with anyio.fail_after(5):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url) as conn, anyio.create_task_group() as tg:
                tg.start_soon(waiter, conn)
                await handler.request_seen.wait()
                with anyio.fail_after(2):  # promptly: no close timeout involved
                    await conn.aclose()
            await handler.finished.wait()
            peer = server.peers[0]
    assert len(errors) == 1
    assert type(errors[0]) is h2any.ConnectionClosed
    assert peer.goaway_received is not None


async def test_aclose_fails_a_body_being_read_in_another_task() -> None:
    handler = RespondsWithoutBody()
    errors: list[BaseException] = []
    reading = anyio.Event()

    async def reader(response: h2any.Response) -> None:
        reading.set()
        try:
            await response.read()
        except h2any.H2anyError as exc:
            errors.append(exc)

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            response = await conn.request("GET", "/")
            assert response.status == 200
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader, response)
                await reading.wait()
                with anyio.fail_after(2):
                    await conn.aclose()
    assert len(errors) == 1
    assert isinstance(errors[0], h2any.ConnectionClosed)


async def test_requests_after_aclose_raise_connection_closed(nghttpd) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd.url) as conn:
            response = await conn.request("GET", "/1b")
            assert await response.read() == b"x"
            await conn.aclose()
            assert conn.is_closed
            with pytest.raises(h2any.ConnectionClosed):
                await conn.request("GET", "/1b")
            with pytest.raises(h2any.ConnectionClosed):
                async with conn.stream("GET", "/1b"):
                    pytest.fail("a stream opened on a closed connection")
            with pytest.raises(h2any.ConnectionClosed):
                await conn.ping()
        with pytest.raises(h2any.ConnectionClosed):
            await conn.request("GET", "/1b")


async def test_requests_after_leaving_async_with_raise_connection_closed(nghttpd) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd.url) as conn:
            pass
        with pytest.raises(h2any.ConnectionClosed) as info:
            await conn.request("GET", "/1b")
    assert type(info.value) is h2any.ConnectionClosed


async def test_aclose_is_idempotent(nghttpd) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd.url) as conn:
            await conn.aclose()
            await conn.aclose()
            async with anyio.create_task_group() as tg:  # concurrent closes too
                tg.start_soon(conn.aclose)
                tg.start_soon(conn.aclose)
        await conn.aclose()
    assert conn.is_closed


async def test_aclose_of_a_never_started_connection_does_nothing() -> None:
    conn = h2any.Connection(f"http://127.0.0.1:{_closed_port()}")
    with anyio.fail_after(5):
        await conn.aclose()
        await conn.aclose()


async def test_concurrent_aclose_calls_all_wait_for_the_end(nghttpd) -> None:
    # Every aclose() returns only once the connection task is gone: a request then fails.
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd.url) as conn:
            after: list[bool] = []

            async def close() -> None:
                await conn.aclose()
                after.append(conn.is_closed)

            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(close)
    assert after == [True, True, True]


# -- connect() in the caller's task group -------------------------------------------------


async def test_connect_in_a_task_group_serves_requests_and_aclose_ends_it(nghttpd) -> None:
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            conn = await h2any.connect(tg, nghttpd.url)
            response = await conn.request("GET", "/hello.txt")
            assert await response.read() == b"hello, world\n"
            await conn.aclose()
        # Leaving the task group means the connection task has ended.
    assert conn.is_closed
    with pytest.raises(h2any.ConnectionClosed):
        await conn.request("GET", "/hello.txt")


async def test_connect_sends_goaway_on_aclose() -> None:
    finished = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        await peer.wait_closed()
        finished.set()

    with anyio.fail_after(5):
        async with scripted_server(handler) as server:
            async with anyio.create_task_group() as tg:
                conn = await h2any.connect(tg, server.url)
                await conn.aclose()
            await finished.wait()
            peer = server.peers[0]
    assert peer.goaway_received is not None


async def test_cancelling_the_connection_task_group_fails_a_request_in_another_group() -> None:
    handler = NeverResponds()
    errors: list[BaseException] = []

    async def waiter(conn: h2any.Connection) -> None:
        try:
            await conn.request("GET", "/never")
        except h2any.H2anyError as exc:
            errors.append(exc)

    with anyio.fail_after(5):
        async with scripted_server(handler) as server:
            # requests_tg exits only once the waiter got its error.
            async with (
                anyio.create_task_group() as requests_tg,
                anyio.create_task_group() as connection_tg,
            ):
                conn = await h2any.connect(connection_tg, server.url)
                requests_tg.start_soon(waiter, conn)
                await handler.request_seen.wait()
                connection_tg.cancel_scope.cancel()
            assert conn.is_closed
            with pytest.raises(h2any.ConnectionClosed):
                await conn.request("GET", "/")
            await conn.aclose()  # still fine after the task group was cancelled
            await handler.finished.wait()
    assert len(errors) == 1
    assert isinstance(errors[0], h2any.ConnectionClosed)


async def test_cancelling_the_connection_task_group_fails_a_body_read_in_another_group() -> None:
    handler = RespondsWithoutBody()
    errors: list[BaseException] = []
    reading = anyio.Event()

    async def reader(response: h2any.Response) -> None:
        reading.set()
        try:
            await response.read()
        except h2any.H2anyError as exc:
            errors.append(exc)

    with anyio.fail_after(5):
        async with (
            scripted_server(handler) as server,
            anyio.create_task_group() as requests_tg,
            anyio.create_task_group() as connection_tg,
        ):
            conn = await h2any.connect(connection_tg, server.url)
            response = await conn.request("GET", "/")
            requests_tg.start_soon(reader, response)
            await reading.wait()
            connection_tg.cancel_scope.cancel()
    assert len(errors) == 1
    assert isinstance(errors[0], h2any.ConnectionClosed)


async def test_cancelling_the_connection_task_group_still_sends_goaway() -> None:
    finished = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        await peer.wait_closed()
        finished.set()

    with anyio.fail_after(5):
        async with scripted_server(handler) as server:
            async with anyio.create_task_group() as connection_tg:
                conn = await h2any.connect(connection_tg, server.url)
                connection_tg.cancel_scope.cancel()
            assert conn.is_closed
            await finished.wait()  # the client closed its socket
            peer = server.peers[0]
    assert peer.goaway_received is not None


async def test_connect_to_a_closed_port_raises_connect_error_directly() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    still_running = anyio.Event()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            with pytest.raises(h2any.ConnectError) as info:
                await h2any.connect(tg, url)
            # The caller's task group was not cancelled and still takes tasks.
            assert not tg.cancel_scope.cancel_called
            tg.start_soon(_set_event, still_running)
        assert still_running.is_set()
    assert type(info.value) is h2any.ConnectError  # not wrapped in an ExceptionGroup


async def test_connect_to_a_closed_port_leaves_sibling_tasks_running() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    sibling_started = anyio.Event()
    release = anyio.Event()
    sibling_finished = anyio.Event()

    async def sibling() -> None:
        sibling_started.set()
        await release.wait()
        sibling_finished.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sibling)
            await sibling_started.wait()
            with pytest.raises(h2any.ConnectError):
                await h2any.connect(tg, url)
            release.set()
    assert sibling_finished.is_set()


# -- startup errors and leftovers ---------------------------------------------------------


async def test_startup_error_is_raised_from_aenter() -> None:
    conn = h2any.Connection(f"http://127.0.0.1:{_closed_port()}")
    with anyio.fail_after(5):
        with pytest.raises(h2any.ConnectError) as info:
            await conn.__aenter__()
    assert type(info.value) is h2any.ConnectError
    with pytest.raises(RuntimeError, match="not open"):
        await conn.request("GET", "/")


async def test_startup_error_in_async_with_skips_the_body() -> None:
    body_ran = False
    with anyio.fail_after(5):
        with pytest.raises(h2any.ConnectError) as info:
            async with h2any.Connection(f"http://127.0.0.1:{_closed_port()}"):
                body_ran = True
    assert not body_ran
    assert type(info.value) is h2any.ConnectError


async def test_no_task_is_left_after_async_with(nghttpd) -> None:
    before = _task_count()
    with anyio.fail_after(10):
        async with h2any.Connection(nghttpd.url) as conn:
            assert _task_count() > before
            response = await conn.request("GET", "/1m.bin")
            await response.read()
            async with conn.stream("GET", "/16m.bin") as response:
                async for _chunk in response.aiter_bytes():
                    break  # abandoned mid-body
    assert _task_count() == before


async def test_no_task_is_left_after_connect_and_aclose(nghttpd) -> None:
    before = _task_count()
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            conn = await h2any.connect(tg, nghttpd.url)
            response = await conn.request("GET", "/hello.txt")
            await response.read()
            await conn.aclose()
    assert _task_count() == before


async def test_no_task_is_left_after_a_failed_start() -> None:
    before = _task_count()
    with anyio.fail_after(5):
        with pytest.raises(h2any.ConnectError):
            async with h2any.Connection(f"http://127.0.0.1:{_closed_port()}"):
                pass
        async with anyio.create_task_group() as tg:
            with pytest.raises(h2any.ConnectError):
                await h2any.connect(tg, f"http://127.0.0.1:{_closed_port()}")
    assert _task_count() == before


async def test_no_task_is_left_after_the_server_goes_away() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.respond(request.stream_id, body=b"bye")
        await peer.close()

    before = _task_count()
    with anyio.fail_after(5):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url) as conn:
                response = await conn.request("GET", "/")
                assert await response.read() == b"bye"
                with pytest.raises(h2any.ConnectionClosed):
                    await _request_until_it_fails(conn)
            assert server.connections == 1
    assert _task_count() == before


# -- the body of async with ---------------------------------------------------------------


class Boom(Exception):
    pass


async def test_exception_in_the_body_propagates_unwrapped_and_goaway_is_sent() -> None:
    finished = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        await peer.wait_closed()
        finished.set()

    with anyio.fail_after(5):
        async with scripted_server(handler) as server:
            with pytest.raises(Boom):
                async with h2any.Connection(server.url) as conn:
                    raise Boom
            assert conn.is_closed
            await finished.wait()
            peer = server.peers[0]
    assert peer.goaway_received is not None


async def test_cancelling_the_body_closes_the_connection_cleanly() -> None:
    handler = NeverResponds()
    with anyio.fail_after(5):
        async with scripted_server(handler) as server:
            with anyio.CancelScope() as scope:
                async with h2any.Connection(server.url) as conn:
                    async with anyio.create_task_group() as tg:

                        async def cancel_once_seen() -> None:
                            await handler.request_seen.wait()
                            scope.cancel()

                        tg.start_soon(cancel_once_seen)
                        await conn.request("GET", "/never")
                    pytest.fail("the request should have been cancelled")
            assert scope.cancelled_caught
            assert conn.is_closed
            await handler.finished.wait()  # the client closed its socket
            peer = server.peers[0]
    assert peer.goaway_received is not None


async def test_a_connection_cannot_be_entered_twice(nghttpd) -> None:
    with anyio.fail_after(10):
        conn = h2any.Connection(nghttpd.url)
        async with conn:
            with pytest.raises(RuntimeError, match="already started"):
                await conn.__aenter__()
        with pytest.raises(RuntimeError, match="already started"):
            async with conn:
                pytest.fail("a closed connection was entered again")
