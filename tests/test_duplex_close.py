"""Closing a full-duplex stream from one task (or thread) ends the waits of the others."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator

import anyio
import h2.events
import pytest
from h2.errors import ErrorCodes
from scripted import ScriptedPeer, scripted_server

import h2any
import h2any.sync

pytestmark = pytest.mark.anyio


async def test_closing_a_duplex_stream_wakes_the_task_waiting_for_its_response() -> None:
    reset_seen = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()  # never answered
        event = await peer.wait_for(lambda e: isinstance(e, h2.events.StreamReset))
        assert event.stream_id == request.stream_id
        assert event.error_code == ErrorCodes.CANCEL
        reset_seen.set()
        following = await peer.expect_request()
        await peer.respond(following.stream_id, body=b"still serving")

    outcome: list[BaseException] = []
    # The read timeout is far beyond the hang guard: only the close can end the wait.
    patient = h2any.Timeout(30)
    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            stream = conn.open_stream("POST", "/duplex", timeout=patient)
            waiting = anyio.Event()

            async def wait_for_response() -> None:
                waiting.set()
                try:
                    await stream.response()
                except h2any.StreamReset as exc:
                    outcome.append(exc)

            async with anyio.create_task_group() as task_group:
                task_group.start_soon(wait_for_response)
                await waiting.wait()
                await stream.send(b"hello")
                await stream.aclose()
            await reset_seen.wait()
            response = await conn.request("GET", "/next")
            assert await response.read() == b"still serving"
    (error,) = outcome
    assert isinstance(error, h2any.StreamReset)
    assert error.error_code == ErrorCodes.CANCEL
    assert not error.remote


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_close_from_one_thread_wakes_the_thread_in_response(backend: str) -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        await peer.expect_request()
        await peer.wait_closed()

    outcome: list[BaseException] = []

    async def main() -> None:
        async with scripted_server(handler) as server:
            url = server.url

            def in_threads() -> None:
                with h2any.sync.Connection(url, backend=backend, timeout=30) as conn:
                    stream = conn.open_stream("POST", "/duplex")
                    started = threading.Event()

                    def reader() -> None:
                        started.set()
                        try:
                            stream.response()
                        except h2any.H2anyError as exc:
                            outcome.append(exc)

                    thread = threading.Thread(target=reader)
                    thread.start()
                    assert started.wait(5)
                    stream.send(b"hello")
                    stream.close()
                    thread.join(5)
                    assert not thread.is_alive()

            with anyio.fail_after(10):
                await anyio.to_thread.run_sync(in_threads, abandon_on_cancel=True)

    anyio.run(main, backend=backend)
    (error,) = outcome
    assert isinstance(error, h2any.StreamReset)


async def test_two_tasks_awaiting_response_get_the_same_object(hypercorn_server) -> None:
    got: list[h2any.Response] = []
    with anyio.fail_after(5):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            async with conn.open_stream("POST", "/echo-chunks") as stream:

                async def wait_for_it() -> None:
                    got.append(await stream.response())

                async with anyio.create_task_group() as task_group:
                    task_group.start_soon(wait_for_it)
                    task_group.start_soon(wait_for_it)
                    await stream.send(b"x")
                assert got[0] is got[1]
                await stream.send_eof()
                assert await got[0].read() == b"x"


async def test_leaving_a_stream_block_closes_a_body_source_that_is_waiting(
    hypercorn_server,
) -> None:
    # The pump of a body= is cancelled when its stream ends: a source that has nothing
    # more to give yet is closed at once, not when it next yields (or the connection ends).
    closed = anyio.Event()
    never = anyio.Event()

    async def body() -> AsyncIterator[bytes]:
        try:
            yield b"first"
            await never.wait()  # a producer with nothing more to give yet
            yield b"never"
        finally:
            closed.set()

    with anyio.fail_after(5):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            async with conn.stream("POST", "/echo-chunks", body=body()) as response:
                assert await anext(response.aiter_bytes()) == b"first"
            await closed.wait()
            assert not conn.is_closed
            response = await conn.request("POST", "/echo-chunks", body=b"again")
            assert await response.read() == b"again"
