"""What h2any logs (``logging.getLogger("h2any")`` and its children), against real peers:
connections opened and closed, GOAWAY, retries, protocol errors, one DEBUG line per request,
and never a secret (passwords, query strings, header values, bodies)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest
from conftest import NghttpdServer
from h2.errors import ErrorCodes
from scripted import ScriptedPeer, encode_headers, raw_frame, scripted_server

import h2any
import h2any.sync
from h2any.testing import serve

pytestmark = pytest.mark.anyio

SECRETS = ("s3cret-pass", "s3cret-query", "s3cret-bearer", "s3cret-cookie", "s3cret-body")


def records(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name]


async def test_connection_open_and_close_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="h2any")
    with anyio.fail_after(10):
        async with serve() as server:
            async with h2any.Connection(server.url) as conn:
                engine = repr(conn).split("engine ", 1)[1].rstrip(")>")
                response = await conn.request("GET", "/")
                await response.read()
    opened, closed = records(caplog, "h2any.connection")
    assert opened.levelno == logging.INFO
    message = opened.getMessage()
    assert message.startswith(f"connection to {server.url} open: HTTP/2, h2c, engine ")
    assert engine in message  # "h2 4.3.0" or "jh2 5.0.15": what the repr says
    assert "asyncio" in message or "trio" in message
    assert closed.levelno == logging.INFO
    assert closed.getMessage().startswith(f"connection to {server.url} closed: ")
    # No request line below DEBUG.
    assert not records(caplog, "h2any.request")


async def test_the_engine_is_in_the_repr_and_its_rule_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="h2any")
    with anyio.fail_after(10):
        async with serve() as server:
            conn = h2any.Connection(server.url, engine="h2")
            assert "engine h2 " in repr(conn)
            async with conn:
                assert repr(conn).startswith(f"<h2any.Connection {server.url} (open, engine h2 ")
    assert "(closed, engine h2 " in repr(conn)
    rule = [r.getMessage() for r in records(caplog, "h2any.connection") if r.levelno == 10]
    assert any("engine h2 " in line and "H2ANY_ENGINE" in line for line in rule), rule


async def test_one_debug_line_per_request_and_no_secret(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="h2any")
    with anyio.fail_after(10):
        async with serve() as server:
            url = server.url.replace("http://", "http://user:s3cret-pass@")
            async with h2any.Client() as client:
                response = await client.request(
                    "POST",
                    f"{url}/echo?token=s3cret-query",
                    headers={"authorization": "Bearer s3cret-bearer", "cookie": "s3cret-cookie"},
                    body=b"s3cret-body",
                )
                assert await response.read() == b"s3cret-body"
                response = await client.get(f"{server.url}/bytes/10")
                await response.read()
    lines = [r.getMessage() for r in records(caplog, "h2any.request")]
    assert lines == [f"POST {server.url}/echo?..., body 11 bytes", f"GET {server.url}/bytes/10"]
    assert all(r.levelno == logging.DEBUG for r in records(caplog, "h2any.request"))
    for secret in SECRETS:
        assert secret not in caplog.text


async def test_goaway_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="h2any")

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        # GOAWAY first: the stream it names as the last one still gets its answer.
        await peer.goaway(ErrorCodes.NO_ERROR, last_stream_id=request.stream_id)
        await peer.respond(request.stream_id, body=b"ok")

    with anyio.fail_after(10):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url) as conn:
                response = await conn.request("GET", "/")
                assert await response.read() == b"ok"
    goaway = [r for r in records(caplog, "h2any.connection") if r.getMessage().startswith("GOAWAY")]
    assert len(goaway) == 1
    assert goaway[0].levelno == logging.INFO
    assert goaway[0].getMessage() == f"GOAWAY from {server.url}: NO_ERROR (0x0), last stream id 1"


async def test_goaway_with_an_error_code_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="h2any")

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        await peer.expect_request()
        await peer.goaway(ErrorCodes.ENHANCE_YOUR_CALM, last_stream_id=0, data=b"calm")

    with anyio.fail_after(10):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url) as conn:
                with pytest.raises(h2any.ConnectionTerminated):
                    await conn.request("GET", "/")
    messages = [(r.levelno, r.getMessage()) for r in records(caplog, "h2any.connection")]
    assert (
        logging.WARNING,
        f"GOAWAY from {server.url}: ENHANCE_YOUR_CALM (0xb), last stream id 0, debug data 'calm'",
    ) in messages
    level, closed = messages[-1]
    assert closed.startswith(f"connection to {server.url} closed: ")
    assert level == logging.WARNING


async def test_a_protocol_error_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="h2any")

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        await peer.expect_request()
        await peer.send_raw(raw_frame(0x0, 0x1, 0, b"DATA on stream 0"))

    with anyio.fail_after(10):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url) as conn:
                with pytest.raises(h2any.ProtocolError):
                    await conn.request("GET", "/")
    closed = records(caplog, "h2any.connection")[-1]
    assert closed.levelno == logging.WARNING
    assert "closed: the server broke the HTTP/2 protocol" in closed.getMessage()


async def test_retries_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="h2any")

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        for _ in range(2):
            request = await peer.expect_request()
            await peer.reset(request.stream_id, ErrorCodes.REFUSED_STREAM)
        request = await peer.expect_request()
        await peer.respond(request.stream_id, body=b"third time")

    policy = h2any.RetryPolicy(max_attempts=5, backoff=0.001, max_backoff=0.01)
    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Client(retries=policy) as client:
            url = server.url.replace("http://", "http://me:s3cret-pass@")
            response = await client.get(f"{url}/x?key=s3cret-query")
            assert await response.read() == b"third time"
    retries = records(caplog, "h2any.client")
    assert [r.levelno for r in retries] == [logging.INFO, logging.INFO]
    first = retries[0].getMessage()
    assert first.startswith(f"retrying GET {server.url}/x?... in ")
    assert "(attempt 1 failed: " in first
    assert "REFUSED_STREAM" in first or "refused" in first.lower()
    assert "(attempt 2 failed: " in retries[1].getMessage()
    for secret in SECRETS:
        assert secret not in caplog.text


async def test_nothing_is_logged_below_the_configured_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="h2any")
    with anyio.fail_after(10):
        async with serve() as server, h2any.Connection(server.url) as conn:
            for _ in range(3):
                response = await conn.request("GET", "/")
                await response.read()
    assert not [r for r in caplog.records if r.name.startswith("h2any")]


def test_h2any_uvloop_0_keeps_the_sync_loop_thread_off_uvloop(
    nghttpd: NghttpdServer, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The blocking facade's loop thread runs uvloop when it is installed, unless
    ``H2ANY_UVLOOP=0``; the DEBUG line of h2any.sync and the connection's INFO line say which."""
    pytest.importorskip("uvloop")
    caplog.set_level(logging.DEBUG, logger="h2any")
    for setting, loop, why in (
        (None, "asyncio (uvloop)", "uvloop is installed; H2ANY_UVLOOP=0 turns it off"),
        ("0", "asyncio", "H2ANY_UVLOOP=0"),
    ):
        if setting is None:
            monkeypatch.delenv("H2ANY_UVLOOP", raising=False)
        else:
            monkeypatch.setenv("H2ANY_UVLOOP", setting)
        caplog.clear()
        with h2any.sync.Connection(nghttpd.url, timeout=10) as conn:
            assert conn.request("GET", "/hello.txt").read() == b"hello, world\n"
        opened = [m for m in map(logging.LogRecord.getMessage, caplog.records) if " open: " in m]
        assert len(opened) == 1
        assert opened[0].endswith(f", {loop}")
        (chosen,) = (r.getMessage() for r in records(caplog, "h2any.sync"))
        assert why in chosen


async def test_a_malformed_response_at_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A stream error (h2any resets the stream, the connection carries on) is a WARNING."""
    caplog.set_level(logging.INFO, logger="h2any")

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        block = encode_headers([(":status", "200"), ("X-Upper", "1")])  # uppercase: malformed
        await peer.send_raw(raw_frame(0x1, 0x5, request.stream_id, block))
        request = await peer.expect_request()
        await peer.respond(request.stream_id, body=b"still here")

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            with pytest.raises(h2any.ProtocolError):
                await conn.request("GET", "/")
            response = await conn.request("GET", "/")
            assert await response.read() == b"still here"
    (warning,) = [r for r in records(caplog, "h2any.connection") if r.levelno == logging.WARNING]
    message = warning.getMessage()
    assert message.startswith(f"stream 1 on {server.url} reset (PROTOCOL_ERROR): malformed ")


def test_unconfigured_logging_prints_nothing(tmp_path: Path) -> None:
    """Without logging configured, even h2any's warnings stay off stderr (Python's
    last-resort handler would print them): h2any's logger has a NullHandler. In a fresh
    process, since pytest configures logging in its own."""
    code = textwrap.dedent(
        """
        import logging
        from h2any import _log
        from h2any._config import Origin

        origin = Origin.parse("http://example.org")
        assert logging.getLogger("h2any.connection").isEnabledFor(logging.WARNING)
        _log.goaway_received(origin, 11, 0, b"calm")
        _log.stream_protocol_error(origin, 1, "uppercase header name")
        print("logged")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "logged\n"
    assert result.stderr == ""


async def test_a_full_duplex_stream_has_its_request_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="h2any.request")
    with anyio.fail_after(10):
        async with serve() as server, h2any.Connection(server.url) as conn:
            async with conn.open_stream("POST", "/echo?secret=s3cret-query") as stream:
                await stream.send(b"s3cret-body")
                await stream.send_eof()
                response = await stream.response()
                assert await response.read() == b"s3cret-body"
    lines = [r.getMessage() for r in records(caplog, "h2any.request")]
    assert lines == [f"POST {server.url}/echo?... (full duplex)"]
    for secret in SECRETS:
        assert secret not in caplog.text
