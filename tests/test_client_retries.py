"""Client retries of requests the server never processed: capped, backed off, and stopped
by ENHANCE_YOUR_CALM, all within ``retry_timeout``. Counts are taken server-side."""

from __future__ import annotations

import anyio
import pytest
from h2.errors import ErrorCodes
from scripted import ScriptedPeer, scripted_server

import h2any

pytestmark = pytest.mark.anyio

# Small delays so that the tests stay fast: 10, 20, 40, 80 ms (each jittered to 50-100 %).
FAST = h2any.RetryPolicy(max_attempts=5, backoff=0.01, max_backoff=1.0)


class Refuser:
    """A handler answering every request with ``how`` and noting when each arrived."""

    def __init__(self, how: str, error_code: int = ErrorCodes.REFUSED_STREAM) -> None:
        self.how = how
        self.error_code = error_code
        self.arrivals: list[float] = []

    async def __call__(self, peer: ScriptedPeer) -> None:
        await peer.handshake()
        if self.how == "goaway-after-settings":
            await peer.goaway(self.error_code, last_stream_id=0)
            return
        while True:
            request = await peer.expect_request()
            self.arrivals.append(anyio.current_time())
            if self.how == "goaway":
                await peer.goaway(self.error_code, last_stream_id=0)
                return
            await peer.reset(request.stream_id, self.error_code)


async def test_refused_stream_on_every_request_stops_after_max_attempts() -> None:
    refuser = Refuser("reset")
    with anyio.fail_after(5):
        async with scripted_server(refuser) as server, h2any.Client(retries=FAST) as client:
            with pytest.raises(h2any.StreamReset) as caught:
                await client.get(server.url + "/")
            assert caught.value.error_code == ErrorCodes.REFUSED_STREAM
            assert len(refuser.arrivals) == 5
            assert server.connections == 1


async def test_goaway_before_any_stream_on_every_connection_stops_after_max_attempts() -> None:
    refuser = Refuser("goaway", ErrorCodes.NO_ERROR)
    with anyio.fail_after(5):
        async with scripted_server(refuser) as server, h2any.Client(retries=FAST) as client:
            with pytest.raises(h2any.ConnectionTerminated) as caught:
                await client.get(server.url + "/")
            assert caught.value.retryable
            assert server.connections == 5
            assert len(refuser.arrivals) == 5


async def test_delays_between_retries_grow_exponentially() -> None:
    refuser = Refuser("reset")
    policy = h2any.RetryPolicy(max_attempts=5, backoff=0.02, max_backoff=10.0)
    with anyio.fail_after(5):
        async with scripted_server(refuser) as server, h2any.Client(retries=policy) as client:
            with pytest.raises(h2any.StreamReset):
                await client.get(server.url + "/")
    gaps = [b - a for a, b in zip(refuser.arrivals, refuser.arrivals[1:], strict=False)]
    assert len(gaps) == 4
    for retry, gap in enumerate(gaps, start=1):
        # Jitter keeps each delay within [50 %, 100 %] of 20 ms * 2 ** (retry - 1).
        assert gap >= 0.5 * 0.02 * 2 ** (retry - 1)
    assert gaps[3] > 2 * gaps[0]


async def test_max_backoff_caps_each_delay() -> None:
    refuser = Refuser("reset")
    policy = h2any.RetryPolicy(max_attempts=12, backoff=0.01, max_backoff=0.02)
    with anyio.fail_after(5):
        async with scripted_server(refuser) as server, h2any.Client(retries=policy) as client:
            started = anyio.current_time()
            with pytest.raises(h2any.StreamReset):
                await client.get(server.url + "/")
            elapsed = anyio.current_time() - started
    assert len(refuser.arrivals) == 12
    # Uncapped, 11 doubling delays from 10 ms would take at least 10 s.
    assert elapsed < 2.0


async def test_retry_timeout_bounds_retries_whatever_max_attempts() -> None:
    refuser = Refuser("reset")
    policy = h2any.RetryPolicy(max_attempts=10_000, backoff=0.01, max_backoff=0.02)
    with anyio.fail_after(5):
        async with scripted_server(refuser) as server:
            async with h2any.Client(retries=policy, retry_timeout=0.3) as client:
                started = anyio.current_time()
                with pytest.raises(h2any.StreamReset):
                    await client.get(server.url + "/")
                elapsed = anyio.current_time() - started
    assert elapsed < 0.3 + 0.2
    # At least 10 ms between two tries: at most ~30 in 0.3 s.
    assert 2 <= len(refuser.arrivals) <= 32


@pytest.mark.parametrize("how", ["goaway", "goaway-after-settings", "reset"])
async def test_enhance_your_calm_is_not_retried(how: str) -> None:
    refuser = Refuser(how, ErrorCodes.ENHANCE_YOUR_CALM)
    expected = h2any.StreamReset if how == "reset" else h2any.ConnectionTerminated
    with anyio.fail_after(5):
        async with scripted_server(refuser) as server, h2any.Client() as client:
            with pytest.raises(expected) as caught:
                await client.get(server.url + "/")
            assert caught.value.error_code == ErrorCodes.ENHANCE_YOUR_CALM
            assert server.connections == 1
            assert len(refuser.arrivals) <= 1


async def test_refused_twice_then_answered_succeeds_on_the_third_try() -> None:
    requests = 0

    async def handler(peer: ScriptedPeer) -> None:
        nonlocal requests
        await peer.handshake()
        while True:
            request = await peer.expect_request()
            requests += 1
            if requests <= 2:
                await peer.reset(request.stream_id, ErrorCodes.REFUSED_STREAM)
            else:
                await peer.respond(request.stream_id, body=b"third time")

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Client(retries=FAST) as client:
            response = await client.get(server.url + "/")
            assert await response.read() == b"third time"
    assert requests == 3


async def test_retries_as_an_int_is_max_attempts_and_one_never_retries() -> None:
    refuser = Refuser("reset")
    with anyio.fail_after(5):
        async with scripted_server(refuser) as server, h2any.Client(retries=1) as client:
            assert client.retries.max_attempts == 1
            with pytest.raises(h2any.StreamReset):
                await client.get(server.url + "/")
    assert len(refuser.arrivals) == 1


def test_retry_policy_delay_doubles_with_jitter_up_to_max_backoff() -> None:
    policy = h2any.RetryPolicy(max_attempts=3, backoff=0.1, max_backoff=0.3)
    assert policy.delay(1, 0.0) == pytest.approx(0.05)
    assert policy.delay(1, 0.999) == pytest.approx(0.1, rel=1e-2)
    assert policy.delay(2, 0.0) == pytest.approx(0.1)
    assert policy.delay(3, 0.0) == pytest.approx(0.15)  # 0.4 capped at 0.3, halved
    assert policy.delay(500, 0.0) == pytest.approx(0.15)


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"backoff": -1.0}, {"max_backoff": -0.5}, {"max_attempts": 1.5}],
)
def test_retry_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="RetryPolicy"):
        h2any.RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_client_rejects_a_retries_of_the_wrong_type() -> None:
    with pytest.raises(TypeError):
        h2any.Client(retries="3")  # type: ignore[arg-type]


def test_sync_client_takes_a_retry_policy() -> None:
    from h2any.sync import Client

    with Client(retries=FAST) as client:
        assert client._client.retries is FAST


async def test_a_connection_closed_right_after_settings_is_capped_not_a_loop() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        await peer.close()

    with anyio.fail_after(5):
        async with scripted_server(handler) as server, h2any.Client(retries=FAST) as client:
            with pytest.raises(h2any.ConnectionClosed):
                await client.get(server.url + "/")
            # A request that never went out is retried, after a backoff, up to the
            # policy's attempts; one that may have been processed, once.
            assert server.connections <= FAST.max_attempts


async def test_concurrent_refused_requests_are_each_capped() -> None:
    refuser = Refuser("reset")
    failures: list[BaseException] = []

    async def one(client: h2any.Client, url: str) -> None:
        try:
            await client.get(url)
        except h2any.StreamReset as exc:
            failures.append(exc)

    with anyio.fail_after(5):
        async with scripted_server(refuser) as server, h2any.Client(retries=FAST) as client:
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(one, client, server.url + "/")
    assert len(failures) == 20
    assert len(refuser.arrivals) == 20 * 5
