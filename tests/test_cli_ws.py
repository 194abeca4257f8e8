"""``h2any ws URL``: stdin lines out as messages, messages in on stdout, against hypercorn
(RFC 8441) and nghttpd (no extended CONNECT). The command runs in a subprocess."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from conftest import NghttpdServer
from ws_app import WsServer, ws_server

LIMIT = 60  # seconds a command may take (a guard against hangs)


@pytest.fixture(scope="module")
def server() -> Iterator[WsServer]:
    with ws_server() as running:
        yield running


def h2any_ws(*args: str, input: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "h2any", "ws", *args],
        input=input,
        capture_output=True,
        timeout=LIMIT,
        check=False,
    )


def h2any_ws_echoed(*args: str, lines: list[bytes]) -> subprocess.CompletedProcess[bytes]:
    """Run ``h2any ws`` with ``lines`` on stdin, which is closed only once the echo of each
    line is on stdout: the closing handshake cannot overtake the last echo (hypercorn
    answers a close frame before its app has sent the replies to the messages before it)."""
    with subprocess.Popen(
        [sys.executable, "-m", "h2any", "ws", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        timer = threading.Timer(LIMIT, process.kill)  # the hang guard
        timer.start()
        try:
            echoed = b""
            for line in lines:
                process.stdin.write(line)
                process.stdin.flush()
                echoed += process.stdout.readline()
            process.stdin.close()
            echoed += process.stdout.read()
            stderr = process.stderr.read() if process.stderr is not None else b""
            returncode = process.wait()
        finally:
            timer.cancel()
    return subprocess.CompletedProcess(process.args, returncode, echoed, stderr)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_lines_go_out_as_messages_and_echoes_come_back(server: WsServer, backend: str) -> None:
    url = server.url.replace("http://", "ws://") + "/echo"
    result = h2any_ws_echoed(url, "--backend", backend, "-v", lines=[b"hello\n", b"w\xc3\xb6rld\n"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\nwörld\n".encode()
    assert "subprotocol None" in result.stderr.decode()
    assert "closed: 1000" in result.stderr.decode()


def test_binary_lines_and_a_chosen_subprotocol(server: WsServer) -> None:
    result = h2any_ws_echoed(
        server.url + "/echo", "--binary", "-p", "nope", "-p", "chat.v2", "-v", lines=[b"\x01\x02\n"]
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"\x01\x02\n"
    assert "subprotocol chat.v2" in result.stderr.decode()


def test_a_server_close_with_another_code_is_reported_and_ends_the_session(
    server: WsServer,
) -> None:
    result = h2any_ws(server.url + "/close?code=4001&reason=bye")
    assert result.returncode == 56, result.stderr
    assert result.stderr.decode().strip() == "* closed: 4001 bye"


def test_a_refused_handshake_is_exit_22_with_the_status(server: WsServer) -> None:
    result = h2any_ws(server.url + "/deny")
    assert result.returncode == 22
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("h2any ws: error:")
    assert "401" in lines[0]


def test_a_server_without_extended_connect_is_exit_7(nghttpd: NghttpdServer) -> None:
    result = h2any_ws(nghttpd.url + "/")
    assert result.returncode == 7
    assert "SETTINGS_ENABLE_CONNECT_PROTOCOL" in result.stderr.decode()


def test_a_bad_header_is_a_usage_error(server: WsServer) -> None:
    result = h2any_ws(server.url + "/echo", "-H", "no colon")
    assert result.returncode == 2
    assert "Name: value" in result.stderr.decode()
