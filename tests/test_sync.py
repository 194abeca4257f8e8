"""The blocking facade h2any.sync: same behaviour as the async API, from any thread."""

from __future__ import annotations

import gc
import hashlib
import os
import signal as signal_module
import threading
import uuid
from typing import Any

import anyio
import pytest
from asgi_app import arrived
from conftest import loop_thread_count

import h2any
import h2any.sync

BACKENDS = ["asyncio", "trio"]
# The loop thread's event loops: asyncio as configured by default (on uvloop when it is
# installed), plain asyncio (explicit options replace that default), and trio.
LOOPS = [
    pytest.param({"backend": "asyncio"}, id="asyncio-default"),
    pytest.param({"backend": "asyncio", "backend_options": {}}, id="asyncio-plain"),
    pytest.param({"backend": "trio"}, id="trio"),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_request_read_and_stream(hypercorn_server, backend: str) -> None:
    with h2any.sync.Connection(hypercorn_server.url_h2c, backend=backend) as conn:
        response = conn.request("POST", "/echo", body=b"hello")
        assert (response.status, response.headers["x-method"]) == (200, "POST")
        assert response.stream_id == 1
        assert response.read() == b"hello"
        with conn.stream("GET", "/stream?chunks=3&size=4&delay=0") as streamed:
            assert list(streamed.iter_bytes()) != []
        response = conn.request("GET", "/trailers", headers={"te": "trailers"})
        assert response.read() == b"body"
        assert response.trailers is not None
        assert response.trailers["x-checksum"] == "abc"
        assert conn.ping() > 0


def test_streamed_body_arrives_in_order(nghttpd, backend: str) -> None:
    with h2any.sync.Connection(nghttpd.url, backend=backend) as conn:
        with conn.stream("GET", "/16m.bin") as response:
            digest = hashlib.sha256()
            for chunk in response.iter_bytes():
                digest.update(chunk)
    assert digest.hexdigest() == nghttpd.docroot.sha256["16m.bin"]


@pytest.fixture(scope="module")
def echo_server(nghttpd_factory):
    return nghttpd_factory(["--echo-upload"])


def test_32_threads_share_one_connection_without_mixups(echo_server) -> None:
    failures: list[BaseException] = []
    done = [0] * 32

    def work(index: int) -> None:
        try:
            for number in range(300):
                body = f"{index}:{number}:{uuid.uuid4()}".encode() * (1 + number % 7)
                response = conn.request("POST", "/hello.txt", body=body)
                echoed = response.read()
                assert hashlib.sha256(echoed).digest() == hashlib.sha256(body).digest()
                done[index] += 1
        except BaseException as exc:  # reported below, from the test's thread
            failures.append(exc)

    with h2any.sync.Connection(echo_server.url, timeout=60) as conn:
        threads = [threading.Thread(target=work, args=(index,)) for index in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in threads), "a thread hung"
    assert failures == []
    assert done == [300] * 32


def test_close_ends_the_loop_thread_and_leaks_nothing(nghttpd, backend: str) -> None:
    before = loop_thread_count()
    with h2any.sync.Connection(nghttpd.url, backend=backend) as conn:
        assert loop_thread_count() == before + 1
        conn.request("GET", "/1b").read()
    assert loop_thread_count() == before
    assert conn.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        conn.request("GET", "/1b")
    conn.close()  # idempotent


def test_unclosed_facade_warns_and_is_cleaned_up(nghttpd) -> None:
    before = loop_thread_count()
    conn = h2any.sync.Connection(nghttpd.url)
    with pytest.warns(ResourceWarning, match="unclosed"):  # noqa: PT031
        del conn  # CPython finalises at once; gc.collect() covers other interpreters
        gc.collect()
    assert loop_thread_count() == before


def test_connect_errors_are_raised_and_leave_no_thread(backend: str) -> None:
    before = loop_thread_count()
    with socket_closed_port() as port:
        with pytest.raises(h2any.ConnectError):
            h2any.sync.Connection(f"http://127.0.0.1:{port}", backend=backend)
    assert loop_thread_count() == before


@pytest.mark.parametrize("loop", LOOPS)
def test_blocked_read_honours_the_read_timeout(hypercorn_server, loop: dict[str, Any]) -> None:
    with h2any.sync.Connection(
        hypercorn_server.url_h2c, timeout=h2any.Timeout(10, read=0.2), **loop
    ) as conn:
        response = conn.request("GET", "/stream?chunks=2&size=1&delay=5")
        with pytest.raises(h2any.ReadTimeout):
            response.read()
        assert conn.request("GET", "/status/204").status == 204


@pytest.mark.parametrize("loop", LOOPS)
def test_keyboard_interrupt_while_blocked_does_not_wedge_the_connection(
    hypercorn_server, loop: dict[str, Any]
) -> None:
    signal = f"interrupt-{uuid.uuid4()}"

    def interrupt_when_the_request_is_in_flight() -> None:
        assert arrived(signal).wait(10)
        # A real signal, so that the main thread's blocking wait is interrupted.
        os.kill(os.getpid(), signal_module.SIGINT)

    with h2any.sync.Connection(hypercorn_server.url_h2c, **loop) as conn:
        helper = threading.Thread(target=interrupt_when_the_request_is_in_flight)
        helper.start()
        with pytest.raises(KeyboardInterrupt):
            conn.request("GET", f"/slow-headers?delay=30&signal={signal}")
        helper.join()
        # The interrupted request was cancelled in the loop thread; the connection works.
        assert conn.request("GET", "/status/200").status == 200
        conn.ping()


def test_calls_from_inside_an_event_loop_are_refused(nghttpd) -> None:
    with h2any.sync.Connection(nghttpd.url) as conn:

        async def misuse() -> None:
            with pytest.raises(RuntimeError, match="event loop"):
                conn.request("GET", "/1b")
            with pytest.raises(RuntimeError, match="event loop"):
                h2any.sync.Connection(nghttpd.url)

        for backend in BACKENDS:
            anyio.run(misuse, backend=backend)


class socket_closed_port:
    """A loopback port with nothing listening on it."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])

    def __exit__(self, *exc_info: object) -> None:
        return None
