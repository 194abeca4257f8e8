"""The ``h2any`` command line, run for real (``python -m h2any ...``) against nghttpd and
hypercorn: bodies, headers, output files, JSON, frames (-v), push, and exit codes."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgi_app import noisy_bytes, pattern_bytes
from conftest import Certs, Docroot, HypercornServer, NghttpdFactory, NghttpdServer

import h2any
from h2any import _cli

TIMEOUT = 30


def h2any_cmd(
    *args: str, input: bytes | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m h2any ARGS`` and capture everything."""
    return subprocess.run(
        [sys.executable, "-m", "h2any", *args],
        input=input,
        capture_output=True,
        timeout=TIMEOUT,
        env=env,
        stdin=None if input is not None else subprocess.DEVNULL,
    )


def stderr_of(result: subprocess.CompletedProcess[bytes]) -> str:
    return result.stderr.decode(errors="replace")


def assert_one_error_line(result: subprocess.CompletedProcess[bytes], *fragments: str) -> str:
    """stderr is exactly one ``h2any: error: ...`` line, no traceback."""
    text = stderr_of(result)
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("h2any: error: "), text
    assert "Traceback" not in text
    for fragment in fragments:
        assert fragment in lines[0], text
    return lines[0]


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, never listening)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


# -- plain requests -----------------------------------------------------------------------


def test_get_over_h2c(nghttpd: NghttpdServer) -> None:
    result = h2any_cmd(f"{nghttpd.url}/hello.txt")
    assert result.returncode == 0, stderr_of(result)
    assert result.stdout == b"hello, world\n"
    assert result.stderr == b""


def test_explicit_method_and_prior_knowledge_flag(nghttpd: NghttpdServer) -> None:
    result = h2any_cmd("get", f"{nghttpd.url}/hello.txt", "--http2-prior-knowledge")
    assert result.returncode == 0, stderr_of(result)
    assert result.stdout == b"hello, world\n"


def test_get_over_tls_with_cacert(nghttpd_tls: NghttpdServer, certs: Certs) -> None:
    result = h2any_cmd("--cacert", certs.ca_path, f"{nghttpd_tls.url}/hello.txt")
    assert result.returncode == 0, stderr_of(result)
    assert result.stdout == b"hello, world\n"


def test_unknown_ca_is_a_tls_error(nghttpd_tls: NghttpdServer) -> None:
    result = h2any_cmd(f"{nghttpd_tls.url}/hello.txt")
    assert result.returncode == _cli.EXIT_TLS == 35
    assert_one_error_line(result, "TLS", "certificate")
    assert result.stdout == b""


def test_insecure_skips_verification(nghttpd_tls: NghttpdServer) -> None:
    result = h2any_cmd("--insecure", f"{nghttpd_tls.url}/hello.txt")
    assert result.returncode == 0, stderr_of(result)
    assert result.stdout == b"hello, world\n"


def test_trio_backend(hypercorn_server: HypercornServer, certs: Certs) -> None:
    url = f"{hypercorn_server.url_tls}/bytes/5000"
    result = h2any_cmd("--backend", "trio", "--cacert", certs.ca_path, url)
    assert result.returncode == 0, stderr_of(result)
    assert result.stdout == pattern_bytes(5000)


def test_request_headers_are_sent(hypercorn_server: HypercornServer) -> None:
    result = h2any_cmd(
        "GET",
        "-H",
        "X-Test: one two",
        f"{hypercorn_server.url_h2c}/headers?a=1",
        "-H",
        "x-empty;",
        "-H",
        "user-agent: cli-test",
    )
    assert result.returncode == 0, stderr_of(result)
    echoed = json.loads(result.stdout)
    assert echoed["query_string"] == "a=1"
    headers = echoed["headers"]
    assert ["x-test", "one two"] in headers
    assert ["x-empty", ""] in headers
    assert ["user-agent", "cli-test"] in headers


def test_request_flag_sets_the_method_like_curl(hypercorn_server: HypercornServer) -> None:
    put = h2any_cmd("-X", "PUT", f"{hypercorn_server.url_h2c}/echo", "-d", "x", "-i")
    assert put.returncode == 0, stderr_of(put)
    assert b"x-method: PUT" in put.stdout
    post = h2any_cmd("--request", "post", f"{hypercorn_server.url_h2c}/echo", "-d", "yz", "-i")
    assert post.returncode == 0, stderr_of(post)
    assert b"x-method: POST" in post.stdout
    assert post.stdout.endswith(b"\r\n\r\nyz")
    # The same method twice (before the URL and with -X) is no conflict.
    same = h2any_cmd("GET", "-X", "GET", f"{hypercorn_server.url_h2c}/headers")
    assert same.returncode == 0, stderr_of(same)
    assert json.loads(same.stdout)["method"] == "GET"


def test_json_sends_a_json_body_with_its_headers(hypercorn_server: HypercornServer) -> None:
    body = '{"name": "h2any", "tags": [1, 2]}'
    result = h2any_cmd("-v", "--json", body, f"{hypercorn_server.url_h2c}/echo", "-i")
    assert result.returncode == 0, stderr_of(result)
    head, _, echoed = result.stdout.partition(b"\r\n\r\n")
    assert echoed == body.encode()  # sent verbatim, like curl
    assert b"x-method: POST" in head  # --json implies POST, like -d
    frames = stderr_of(result)
    sent = frames[frames.index("send HEADERS frame") :]
    sent = sent[: sent.index("recv")]
    assert "content-type: application/json" in sent
    assert "accept: application/json" in sent


def test_json_from_a_file_with_the_callers_own_accept(
    hypercorn_server: HypercornServer, tmp_path: Path
) -> None:
    source = tmp_path / "body.json"
    source.write_text('{"from": "file"}')
    result = h2any_cmd(
        "-v",
        "-X",
        "PUT",
        "--json",
        f"@{source}",
        "-H",
        "accept: application/problem+json",
        f"{hypercorn_server.url_h2c}/echo",
    )
    assert result.returncode == 0, stderr_of(result)
    assert result.stdout == b'{"from": "file"}'
    frames = stderr_of(result)
    assert "accept: application/problem+json" in frames
    assert "accept: application/json" not in frames
    assert "content-type: application/json" in frames


def test_summary_json_is_the_old_json_flag(hypercorn_server: HypercornServer) -> None:
    result = h2any_cmd("--summary-json", f"{hypercorn_server.url_h2c}/bytes/10")
    assert result.returncode == 0, stderr_of(result)
    assert json.loads(result.stdout)["status"] == 200


@pytest.fixture(scope="module")
def redirecting_server() -> Iterator[str]:
    """An embedded server (in a loop thread of its own) whose /old redirects to /new,
    /loop to itself, and /other to /new on the same server under another name
    (localhost vs 127.0.0.1: another origin); /new answers with the request's auth."""
    import anyio.from_thread

    from h2any.testing import Request, Response, serve

    async def app(request: Request) -> Response:
        port = request.authority.rsplit(":", 1)[-1]
        if request.path == "/old":
            return Response(302, headers=[("location", "/new")])
        if request.path == "/loop":
            return Response(307, headers=[("location", "/loop")])
        if request.path == "/other":
            return Response(301, headers=[("location", f"http://localhost:{port}/new")])
        auth = dict(request.headers).get("authorization", "none")
        return Response(200, body=f"{request.method} {request.path} auth={auth}".encode())

    with anyio.from_thread.start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(serve(app)) as server:
            yield server.url


def test_location_follows_redirects(redirecting_server: str) -> None:
    plain = h2any_cmd(f"{redirecting_server}/old", "-i")
    assert plain.returncode == 0, stderr_of(plain)
    assert plain.stdout.startswith(b"HTTP/2 302\r\n")
    followed = h2any_cmd("-L", "-v", f"{redirecting_server}/old")
    assert followed.returncode == 0, stderr_of(followed)
    assert followed.stdout == b"GET /new auth=none"
    assert f"h2any: 302 Found from {redirecting_server}/old -> /new" in stderr_of(followed)


def test_location_drops_credentials_for_another_origin(redirecting_server: str) -> None:
    url = redirecting_server.replace("http://", "http://me:pw@") + "/other"
    result = h2any_cmd("--location", url)
    assert result.returncode == 0, stderr_of(result)
    assert result.stdout == b"GET /new auth=none"
    same = h2any_cmd("-L", redirecting_server.replace("http://", "http://me:pw@") + "/old")
    assert same.stdout.startswith(b"GET /new auth=Basic ")


def test_max_redirs_ends_a_redirect_loop(redirecting_server: str) -> None:
    result = h2any_cmd("-L", "--max-redirs", "3", f"{redirecting_server}/loop")
    assert result.returncode == _cli.EXIT_TOO_MANY_REDIRECTS == 47
    assert_one_error_line(result, "redirect")
    assert result.stdout == b""


# -- request bodies -----------------------------------------------------------------------


def test_data_literal_implies_post(hypercorn_server: HypercornServer) -> None:
    result = h2any_cmd(f"{hypercorn_server.url_h2c}/echo", "-d", "hello there", "-i")
    assert result.returncode == 0, stderr_of(result)
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert body == b"hello there"
    assert head.startswith(b"HTTP/2 200\r\n")
    assert b"x-method: POST" in head
    assert b"x-body-length: 11" in head


def test_data_from_file(hypercorn_server: HypercornServer, tmp_path: Path) -> None:
    payload = noisy_bytes(700_000)
    source = tmp_path / "upload.bin"
    source.write_bytes(payload)
    result = h2any_cmd(
        "PUT", f"{hypercorn_server.url_h2c}/echo", "-d", f"@{source}", "--summary-json"
    )
    assert result.returncode == 0, stderr_of(result)
    summary = json.loads(result.stdout)
    headers = dict(summary["headers"])
    assert headers["x-method"] == "PUT"
    assert headers["x-body-length"] == str(len(payload))
    assert summary["sizes"]["request_body"] == len(payload)
    assert summary["sizes"]["response_body_wire"] == len(payload)


def test_data_from_stdin(hypercorn_server: HypercornServer) -> None:
    payload = noisy_bytes(100_000)
    result = h2any_cmd(f"{hypercorn_server.url_h2c}/sha256", "-d", "@-", input=payload)
    assert result.returncode == 0, stderr_of(result)
    assert json.loads(result.stdout) == {
        "length": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }


def test_missing_data_file_is_a_read_error(hypercorn_server: HypercornServer) -> None:
    result = h2any_cmd(f"{hypercorn_server.url_h2c}/echo", "-d", "@/nonexistent/file")
    assert result.returncode == _cli.EXIT_READ == 26
    assert_one_error_line(result, "/nonexistent/file")


# -- responses ----------------------------------------------------------------------------


def test_status_404_with_and_without_fail(hypercorn_server: HypercornServer) -> None:
    url = f"{hypercorn_server.url_h2c}/status/404"
    plain = h2any_cmd(url)
    assert plain.returncode == 0, stderr_of(plain)
    failed = h2any_cmd("--fail", url)
    assert failed.returncode == _cli.EXIT_HTTP_ERROR == 22
    assert_one_error_line(failed, "404")
    assert failed.stdout == b""


def test_fail_leaves_success_alone(hypercorn_server: HypercornServer) -> None:
    result = h2any_cmd("--fail", f"{hypercorn_server.url_h2c}/status/204")
    assert result.returncode == 0, stderr_of(result)


def test_trailers(hypercorn_server: HypercornServer) -> None:
    url = f"{hypercorn_server.url_h2c}/trailers"
    included = h2any_cmd("-i", "-H", "te: trailers", url)
    assert included.returncode == 0, stderr_of(included)
    head, _, rest = included.stdout.partition(b"\r\n\r\n")
    assert b"content-type: text/plain" in head
    assert rest == b"body" + b"x-checksum: abc\r\nx-trailer-2: two\r\n"

    summary = json.loads(h2any_cmd("--summary-json", "-H", "te: trailers", url).stdout)
    assert summary["trailers"] == [["x-checksum", "abc"], ["x-trailer-2", "two"]]

    plain = h2any_cmd("-H", "te: trailers", url)
    assert plain.stdout == b"body"


def test_head_prints_headers_only(nghttpd: NghttpdServer) -> None:
    result = h2any_cmd("-I", f"{nghttpd.url}/hello.txt")
    assert result.returncode == 0, stderr_of(result)
    assert result.stdout.startswith(b"HTTP/2 200\r\n")
    assert result.stdout.endswith(b"\r\n\r\n")
    assert b"content-length: 13\r\n" in result.stdout


def test_json_summary(hypercorn_server: HypercornServer) -> None:
    result = h2any_cmd("--summary-json", f"{hypercorn_server.url_h2c}/bytes/100000")
    assert result.returncode == 0, stderr_of(result)
    summary = json.loads(result.stdout)
    assert summary["status"] == 200
    assert summary["http_version"] == "HTTP/2"
    assert summary["method"] == "GET"
    assert summary["stream_id"] == 1
    assert ["content-length", "100000"] in summary["headers"]
    timings = summary["timings"]
    assert 0 < timings["connect"] <= timings["first_byte"] <= timings["total"]
    assert summary["sizes"] == {"request_body": 0, "response_body_wire": 100_000}
    assert summary["output"] is None
    assert "pushes" not in summary


def test_content_decoding_and_raw(hypercorn_server: HypercornServer) -> None:
    url = f"{hypercorn_server.url_h2c}/encoded/gzip?n=50000"
    decoded = h2any_cmd(url)
    assert decoded.returncode == 0, stderr_of(decoded)
    assert decoded.stdout == noisy_bytes(50_000)
    raw = h2any_cmd("--raw", url)
    assert raw.returncode == 0, stderr_of(raw)
    assert gzip.decompress(raw.stdout) == noisy_bytes(50_000)


def test_corrupt_encoding_exit_code(hypercorn_server: HypercornServer) -> None:
    result = h2any_cmd(f"{hypercorn_server.url_h2c}/encoded/corrupt-gzip?n=50000")
    assert result.returncode == _cli.EXIT_DECODING == 61
    assert_one_error_line(result)


# -- output -------------------------------------------------------------------------------


def test_output_file(nghttpd: NghttpdServer, docroot: Docroot, tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    result = h2any_cmd("-o", str(target), f"{nghttpd.url}/1m.bin")
    assert result.returncode == 0, stderr_of(result)
    assert result.stdout == b""
    assert result.stderr == b""  # no progress bar when not in a terminal
    assert hashlib.sha256(target.read_bytes()).hexdigest() == docroot.sha256["1m.bin"]


def test_output_directory_uses_the_url_file_name(nghttpd: NghttpdServer, tmp_path: Path) -> None:
    result = h2any_cmd("-o", f"{tmp_path}/downloads/", f"{nghttpd.url}/hello.txt")
    assert result.returncode == 0, stderr_of(result)
    assert (tmp_path / "downloads" / "hello.txt").read_bytes() == b"hello, world\n"


def test_json_with_output_file(nghttpd: NghttpdServer, tmp_path: Path) -> None:
    target = tmp_path / "hello.txt"
    result = h2any_cmd("--summary-json", "-o", str(target), f"{nghttpd.url}/hello.txt")
    assert result.returncode == 0, stderr_of(result)
    assert json.loads(result.stdout)["output"] == str(target)
    assert target.read_bytes() == b"hello, world\n"


def test_unwritable_output_is_a_write_error(nghttpd: NghttpdServer, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = h2any_cmd("-o", str(blocker / "out"), f"{nghttpd.url}/hello.txt")
    assert result.returncode == _cli.EXIT_WRITE == 23
    assert_one_error_line(result)


# -- frames -------------------------------------------------------------------------------


def test_verbose_prints_frames(nghttpd: NghttpdServer) -> None:
    result = h2any_cmd("-v", f"{nghttpd.url}/hello.txt")
    assert result.returncode == 0, stderr_of(result)
    assert result.stdout == b"hello, world\n"
    text = stderr_of(result)
    assert "recv SETTINGS frame <length=" in text
    assert "[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100]" in text
    assert "; ACK" in text
    assert "send HEADERS frame" in text
    assert ":path: /hello.txt" in text
    assert "recv HEADERS frame" in text
    assert ":status: 200" in text
    assert "content-length: 13" in text
    assert "recv DATA frame <length=13, flags=0x01, stream_id=1>" in text
    assert "; END_STREAM" in text
    for line in text.splitlines():
        assert line.startswith(("[", " " * 10)), line


def test_verbose_starts_with_the_clients_own_settings(nghttpd: NghttpdServer) -> None:
    result = h2any_cmd("-v", f"{nghttpd.url}/hello.txt")
    assert result.returncode == 0, stderr_of(result)
    text = stderr_of(result)
    first = text.splitlines()[0]
    assert "send SETTINGS frame <length=" in first
    assert ", stream_id=0>" in first
    settings = text[: text.index("recv SETTINGS")]
    assert "[SETTINGS_ENABLE_PUSH(0x02):0]" in settings
    assert "[SETTINGS_MAX_CONCURRENT_STREAMS(0x03):100]" in settings
    assert "[SETTINGS_INITIAL_WINDOW_SIZE(0x04):" in settings
    # The length is that of the SETTINGS frame h2 sent: 6 bytes per setting.
    count = settings.count("[SETTINGS_")
    assert f"<length={6 * count}, flags=0x00, stream_id=0>" in first


def test_verbose_shows_window_updates_and_goaway_codes() -> None:
    from types import SimpleNamespace

    def frame(type: int, stream_id: int, **fields: Any) -> SimpleNamespace:
        return SimpleNamespace(
            type=type, stream_id=stream_id, defined_flags=[], flags=set(), body_len=8, **fields
        )

    window = frame(0x8, 0, window_increment=1000)
    reset = frame(0x3, 3, error_code=8)
    goaway = frame(0x7, 0, last_stream_id=5, error_code=1, additional_data=b"bye")

    import io

    out = io.StringIO()
    observer = _cli.FrameObserver(out, verbose=True, started=time.perf_counter())
    for fake in (window, reset, goaway):
        observer("recv", fake)
    text = out.getvalue()
    assert "recv WINDOW_UPDATE frame" in text
    assert "(window_size_increment=1000)" in text
    assert "recv RST_STREAM frame <length=8, flags=0x00, stream_id=3>" in text
    assert "(error_code=CANCEL(0x08))" in text
    assert "(last_stream_id=5, error_code=PROTOCOL_ERROR(0x01), opaque_data(3)=[bye])" in text


# -- push ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pushing_nghttpd(nghttpd_factory: NghttpdFactory) -> NghttpdServer:
    return nghttpd_factory(["-p/hello.txt=/1b"])


def test_push_listed_and_saved(pushing_nghttpd: NghttpdServer, tmp_path: Path) -> None:
    pushes = tmp_path / "pushed"
    result = h2any_cmd("--push-dir", str(pushes), f"{pushing_nghttpd.url}/hello.txt")
    assert result.returncode == 0, stderr_of(result)
    assert result.stdout == b"hello, world\n"
    assert (pushes / "1b").read_bytes() == b"x"
    lines = stderr_of(result).splitlines()
    assert len(lines) == 1, lines
    assert "pushed GET" in lines[0]
    assert "/1b" in lines[0]
    assert "200, 1 bytes" in lines[0]


def test_push_into_output_directory(pushing_nghttpd: NghttpdServer, tmp_path: Path) -> None:
    result = h2any_cmd(
        "--push", "--summary-json", "-o", f"{tmp_path}/", f"{pushing_nghttpd.url}/hello.txt"
    )
    assert result.returncode == 0, stderr_of(result)
    assert (tmp_path / "hello.txt").read_bytes() == b"hello, world\n"
    assert (tmp_path / "1b").read_bytes() == b"x"
    summary = json.loads(result.stdout)
    [push] = summary["pushes"]
    assert push["path"] == "/1b"
    assert push["status"] == 200
    assert push["size"] == 1
    assert push["stream_id"] == 2
    assert push["saved_to"] == str(tmp_path / "1b")


def test_push_listed_without_saving(pushing_nghttpd: NghttpdServer) -> None:
    result = h2any_cmd("--push", "-v", f"{pushing_nghttpd.url}/hello.txt")
    assert result.returncode == 0, stderr_of(result)
    text = stderr_of(result)
    assert "recv PUSH_PROMISE frame" in text
    assert "(promised_stream_id=2)" in text
    assert "h2any: pushed GET" in text


def test_without_push_flag_nothing_is_pushed(pushing_nghttpd: NghttpdServer) -> None:
    result = h2any_cmd("-v", f"{pushing_nghttpd.url}/hello.txt")
    assert result.returncode == 0, stderr_of(result)
    assert "PUSH_PROMISE" not in stderr_of(result)


# -- errors and exit codes ----------------------------------------------------------------


def test_closed_port_is_a_connect_error(closed_port: int) -> None:
    result = h2any_cmd(f"http://127.0.0.1:{closed_port}/")
    assert result.returncode == _cli.EXIT_CONNECT == 7
    assert_one_error_line(result, f"127.0.0.1:{closed_port}")
    assert result.stdout == b""


def test_debug_adds_the_traceback(closed_port: int) -> None:
    result = h2any_cmd("--debug", f"http://127.0.0.1:{closed_port}/")
    assert result.returncode == 7
    text = stderr_of(result)
    assert "Traceback" in text
    assert text.splitlines()[-1].startswith("h2any: error: ")


def test_read_timeout(hypercorn_server: HypercornServer) -> None:
    started = time.monotonic()
    result = h2any_cmd("--timeout", "0.2", f"{hypercorn_server.url_h2c}/slow-headers?delay=5")
    assert result.returncode == _cli.EXIT_TIMEOUT == 28
    assert_one_error_line(result)
    assert time.monotonic() - started < 4.5


def test_max_time(hypercorn_server: HypercornServer) -> None:
    result = h2any_cmd("--max-time", "0.3", f"{hypercorn_server.url_h2c}/slow-headers?delay=5")
    assert result.returncode == 28
    assert_one_error_line(result, "--max-time")


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["GET", "http://a/", "extra"],
        ["-H", "no-colon", "http://127.0.0.1/"],
        ["--timeout", "soon", "http://127.0.0.1/"],
        ["--bogus", "http://127.0.0.1/"],
        ["-d", "a", "-d", "b", "http://127.0.0.1/"],
        ["-d", "a", "--json", "{}", "http://127.0.0.1/"],
        ["PUT", "-X", "POST", "http://127.0.0.1/"],
        ["-X", "POST", "-I", "http://127.0.0.1/"],
        ["-X", "", "http://127.0.0.1/"],
        ["-L", "--push", "http://127.0.0.1/"],
        ["-L", "--max-redirs", "-1", "http://127.0.0.1/"],
    ],
)
def test_usage_errors(args: list[str]) -> None:
    result = h2any_cmd(*args)
    assert result.returncode == _cli.EXIT_USAGE == 2
    assert "Traceback" not in stderr_of(result)
    assert "usage: h2any" in stderr_of(result)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/", "127.0.0.1/x", "http://127.0.0.1:99999/"])
def test_bad_urls(url: str) -> None:
    result = h2any_cmd(url)
    assert result.returncode == _cli.EXIT_BAD_URL == 3
    assert_one_error_line(result)


def test_forbidden_header_is_refused(nghttpd: NghttpdServer) -> None:
    result = h2any_cmd("-H", "connection: close", f"{nghttpd.url}/hello.txt")
    assert result.returncode == _cli.EXIT_BAD_URL == 3
    assert_one_error_line(result, "connection")


def test_client_certificate_errors(
    nghttpd_tls: NghttpdServer, certs: Certs, tmp_path: Path
) -> None:
    missing = h2any_cmd("--cert", str(tmp_path / "missing.pem"), f"{nghttpd_tls.url}/")
    assert missing.returncode == _cli.EXIT_READ == 26
    assert_one_error_line(missing, "missing.pem")
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate")
    broken = h2any_cmd("--cacert", certs.ca_path, "--cert", str(not_pem), f"{nghttpd_tls.url}/")
    assert broken.returncode == _cli.EXIT_TLS == 35
    assert_one_error_line(broken)


def test_an_unreachable_proxy_is_a_connect_error(nghttpd: NghttpdServer, closed_port: int) -> None:
    proxy = f"http://127.0.0.1:{closed_port}"
    result = h2any_cmd("--proxy", proxy, f"{nghttpd.url}/hello.txt")
    assert result.returncode == _cli.EXIT_CONNECT, stderr_of(result)
    assert "proxy" in assert_one_error_line(result)
    assert result.stdout == b""


def test_the_environment_proxy_is_used_like_curl(
    nghttpd: NghttpdServer, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{closed_port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
    result = h2any_cmd(f"{nghttpd.url}/hello.txt")
    assert result.returncode == _cli.EXIT_CONNECT, stderr_of(result)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    result = h2any_cmd(f"{nghttpd.url}/hello.txt")
    assert result.returncode == 0, stderr_of(result)
    assert result.stdout == b"hello, world\n"


def test_help_and_version() -> None:
    helped = h2any_cmd("--help")
    assert helped.returncode == 0
    text = helped.stdout.decode()
    for option in (
        "--http2-prior-knowledge",
        "--cacert",
        "--push",
        "--json",
        "--summary-json",
        "-X METHOD, --request METHOD",
        "--fail",
        "demo",
    ):
        assert option in text
    version = h2any_cmd("--version")
    assert version.returncode == 0
    assert h2any.__version__ in version.stdout.decode()


def _without_trio(*args: str) -> subprocess.CompletedProcess[bytes]:
    """Run the command line as if trio were not installed."""
    code = (
        "import sys\nsys.modules['trio'] = None\n"
        f"from h2any.__main__ import main\nsys.exit(main({list(args)!r}))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        timeout=TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def test_a_missing_backend_is_a_one_line_usage_error(closed_port: int) -> None:
    result = _without_trio("--backend", "trio", f"http://127.0.0.1:{closed_port}/")
    assert result.returncode == _cli.EXIT_USAGE == 2
    assert_one_error_line(result, "trio", "pip install 'h2any[trio]'")
    assert result.stdout == b""


def test_demo_with_a_missing_backend_is_a_one_line_error() -> None:
    result = _without_trio("demo", "--backend", "trio", "--requests", "5")
    assert result.returncode == 2
    text = stderr_of(result)
    assert "Traceback" not in text
    (line,) = text.splitlines()
    assert line.startswith("h2any demo: error: ")
    assert "pip install 'h2any[trio]'" in line


# -- the demo stays -----------------------------------------------------------------------


def test_demo_still_runs() -> None:
    result = h2any_cmd("demo", "--requests", "50")
    assert result.returncode == 0, stderr_of(result)
    assert result.stdout.decode().rstrip().endswith("OK")


def test_console_script_runs_the_demo() -> None:
    script = shutil.which("h2any", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("the h2any console script is not installed next to this interpreter")
    result = subprocess.run(
        [script, "demo", "--requests", "20"], capture_output=True, timeout=TIMEOUT
    )
    assert result.returncode == 0, result.stderr


# -- progress bars ------------------------------------------------------------------------


def _run_in_terminal(args: list[str], prelude: str = "") -> tuple[int, bytes]:
    """Run the CLI with stdout and stderr on a pseudo-terminal; return (status, screen)."""
    import pty

    master, slave = pty.openpty()
    code = f"import sys\n{prelude}\nfrom h2any.__main__ import main\nsys.exit(main({args!r}))"
    env = {**os.environ, "TERM": "xterm", "COLUMNS": "100"}
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        status = process.wait(timeout=TIMEOUT)
    finally:
        reader.join(5)
        os.close(master)
    return status, b"".join(chunks)


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_progress_bar_in_a_terminal(hypercorn_server: HypercornServer, tmp_path: Path) -> None:
    pytest.importorskip("rich")
    target = tmp_path / "big.bin"
    status, screen = _run_in_terminal(
        ["-o", str(target), f"{hypercorn_server.url_h2c}/stream?chunks=5&size=1000&delay=0.2"]
    )
    assert status == 0, screen
    assert target.read_bytes() == b"".join(str(i).encode() * 1000 for i in range(5))
    assert b"200 stream" in screen  # the bar's description, drawn then erased


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_no_progress_bar_without_rich(hypercorn_server: HypercornServer, tmp_path: Path) -> None:
    target = tmp_path / "big.bin"
    status, screen = _run_in_terminal(
        ["-o", str(target), f"{hypercorn_server.url_h2c}/stream?chunks=3&size=1000&delay=0.1"],
        prelude="sys.modules['rich'] = None",
    )
    assert status == 0, screen
    assert screen == b""
    assert target.stat().st_size == 3000


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_json_is_pretty_and_coloured_in_a_terminal(hypercorn_server: HypercornServer) -> None:
    pytest.importorskip("rich")
    status, screen = _run_in_terminal([f"{hypercorn_server.url_h2c}/headers?x=1"])
    assert status == 0, screen
    assert b"\x1b[" in screen  # colour
    text = re.sub(rb"\x1b\[[0-9;]*m", b"", screen).decode().replace("\r\n", "\n")
    assert '\n  "method": "GET",\n' in text  # indented, one member a line
    assert json.loads(text)["query_string"] == "x=1"


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_json_stays_raw_without_rich_or_a_terminal(hypercorn_server: HypercornServer) -> None:
    url = f"{hypercorn_server.url_h2c}/headers"
    status, screen = _run_in_terminal([url], prelude="sys.modules['rich'] = None")
    assert status == 0, screen
    assert b"\x1b[" not in screen
    assert b'{"method": "GET"' in screen or b'{"method":"GET"' in screen
    piped = h2any_cmd(url)
    assert piped.returncode == 0, stderr_of(piped)
    assert b"\x1b[" not in piped.stdout
    assert b"\n  " not in piped.stdout  # as the server sent it
    assert json.loads(piped.stdout)["method"] == "GET"
