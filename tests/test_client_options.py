"""The connection options a Client passes to its connections: typed, checked at once, applied.

``h2any.ConnectionOptions`` (a ``TypedDict``) types ``**connection_options`` of
``h2any.Client`` (and ``h2any.sync.Client``, ``h2any.connect``, ``h2any.sync.Connection``),
so a type checker catches ``h2any.Client(verfy=False)``; at run time the same mistake raises
``TypeError`` when the client is made, naming the option and the nearest valid one. Peers: the
scripted h2 server (it reports the SETTINGS and window the client sent) and nghttpd (h2c and
TLS: the Client's TLS path opens its connections differently), with ``frame_observer``
showing what the client's connections sent.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import loop_thread_count, run_mypy
from scripted import ScriptedPeer, scripted_server

import h2any
import h2any.sync
from h2any._options import ClientOptions, ConnectOptions

# SETTINGS codes (RFC 9113 section 6.5.2); h2 and jh2 frames both carry them as ints.
ENABLE_PUSH, INITIAL_WINDOW_SIZE = 0x2, 0x4
MAX_FRAME_SIZE, MAX_HEADER_LIST_SIZE = 0x5, 0x6

#: Options unlike every default, so the server can only see them if they were applied.
OPTIONS: h2any.ConnectionOptions = {
    "initial_window_size": 300_000,
    "connection_window_size": 5_000_000,
    "max_frame_size": 32_768,
    "max_concurrent_streams": 7,
    "max_header_list_size": 40_000,
}


# -- the TypedDicts follow the signatures they describe ------------------------------------------


def _annotations(typed_dict: Any) -> dict[str, str]:
    """A TypedDict's keys and their types, as written (``from __future__ import annotations``)."""
    return {name: ref.__forward_arg__ for name, ref in typed_dict.__annotations__.items()}


def _keyword_parameters(function: Callable[..., Any], *leave_out: str) -> dict[str, str]:
    return {
        parameter.name: parameter.annotation
        for parameter in inspect.signature(function).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.name not in leave_out
    }


def test_connection_options_are_the_connection_keywords_the_client_does_not_take_itself() -> None:
    connection = _keyword_parameters(h2any.Connection.__init__)
    client = _keyword_parameters(h2any.Client.__init__)
    expected = {name: kind for name, kind in connection.items() if name not in client}
    assert set(connection) - set(expected) == {"timeout", "headers"}
    assert _annotations(h2any.ConnectionOptions) == expected  # same names, same types
    assert h2any.ConnectionOptions.__required_keys__ == frozenset()


def test_connect_options_are_every_connection_keyword() -> None:
    assert _annotations(ConnectOptions) == _keyword_parameters(h2any.Connection.__init__)


def test_client_options_are_the_client_keywords_but_event_hooks() -> None:
    own = _keyword_parameters(h2any.Client.__init__, "event_hooks")
    assert _annotations(ClientOptions) == {**_annotations(h2any.ConnectionOptions), **own}


def test_connection_options_are_exported() -> None:
    assert "ConnectionOptions" in h2any.__all__
    assert h2any.ConnectionOptions.__module__.startswith("h2any.")


# -- a type checker catches a misspelt or wrong-typed option --------------------------------------

TYPE_CHECKED = """\
import anyio.abc
import h2any
import h2any.sync, h2any.grpc, h2any.sync.grpc


async def main(task_group: anyio.abc.TaskGroup) -> None:
    h2any.Client(verfy=False)
    h2any.Client(initial_window_sise=1 << 20)
    h2any.Client(initial_window_size="1 MiB")
    h2any.Client(window_manager=h2any.FlowControlManager(65535))
    h2any.sync.Client(verfy=False)
    h2any.sync.Client(folow_redirects=True)
    await h2any.connect(task_group, "https://example.org", verfy=False)
    h2any.sync.Connection("https://example.org", max_frame_size=None)
    bad: h2any.ConnectionOptions = {"verfy": False}
    h2any.grpc.Channel("http://127.0.0.1:50051", verfy=False)
    h2any.sync.grpc.Channel("http://127.0.0.1:50051", compresion="gzip")
    h2any.sync.HTTP20Connection("example.org", initial_window_sise=1 << 20)
    h2any.sync.HTTPConnection("example.org", max_frame_size="16 KiB")
    # correct calls type-check
    options: h2any.ConnectionOptions = {"verify": False, "initial_window_size": 1 << 20}
    h2any.Client(**options)
    h2any.Client(
        timeout=5,
        headers={"x-a": "b"},
        verify="/etc/ssl/ca.pem",
        cert=("client.pem", "client.key"),
        proxy="http://proxy:3128",
        window_manager=h2any.AdaptiveFlowControlManager,
        max_concurrent_streams=None,
        keepalive_interval=30.0,
        frame_observer=lambda direction, frame: None,
        engine="h2",
    )
    h2any.sync.Client(backend="trio", base_url="https://example.org", verify=False)
    h2any.sync.Client(**options, follow_redirects=True)
    await h2any.connect(task_group, "https://example.org", timeout=5, enable_push=True)
    h2any.sync.Connection("https://example.org", backend="trio", headers={"x-a": "b"})
    h2any.grpc.Channel("https://example.org", compression="gzip", verify=False, timeout=5)
    h2any.sync.grpc.Channel(
        "https://example.org", max_receive_message_length=None, backend="trio", verify=False
    )
    h2any.sync.HTTP20Connection("example.org", 443, secure=True, headers={"x": "y"}, engine="h2")
    h2any.sync.HTTPConnection("example.org", enable_push=True, keepalive_interval=30.0)
"""


@pytest.mark.parametrize("python_version", ["3.10", "3.11"])
def test_a_misspelt_or_wrong_typed_option_fails_type_checking(
    tmp_path: Path, python_version: str
) -> None:
    source = tmp_path / "options.py"
    source.write_text(TYPE_CHECKED)
    stdout, stderr, status = run_mypy(source, python_version)
    assert status == 1, stdout + stderr
    errors = [line for line in stdout.splitlines() if ": error:" in line]
    lines = sorted({int(line.split(":")[1]) for line in errors})
    assert lines == list(range(7, 20)), stdout
    assert 'Unexpected keyword argument "verfy" for "Client"; did you mean "verify"?' in stdout
    assert '"initial_window_size" to "Client" has incompatible type "str"' in stdout
    assert 'Unexpected keyword argument "verfy" for "connect"' in stdout
    assert 'Unexpected keyword argument "verfy" for "Channel"' in stdout
    assert 'Unexpected keyword argument "compresion" for "Channel"' in stdout
    assert 'Unexpected keyword argument "initial_window_sise" for "HTTP20Connection"' in stdout
    assert '"max_frame_size" to "HTTPConnection" has incompatible type "str"' in stdout


# -- at run time: refused when the client is made --------------------------------------------------


@pytest.mark.parametrize(
    ("given", "hint"),
    [
        ({"verfy": False}, "; did you mean 'verify'?"),
        ({"initial_window_sise": 1 << 20}, "; did you mean 'initial_window_size'?"),
        ({"max_concurent_streams": 5}, "; did you mean 'max_concurrent_streams'?"),
        ({"folow_redirects": True}, "; did you mean 'follow_redirects'?"),  # the Client's own
        ({"url": "https://example.org"}, ""),
    ],
)
def test_a_misspelt_option_raises_type_error_at_construction(
    given: Mapping[str, Any], hint: str
) -> None:
    (name,) = given
    message = f"h2any.Client() got an unexpected keyword argument {name!r}{hint}"
    with pytest.raises(TypeError) as caught:
        h2any.Client(**given)
    assert str(caught.value) == message


def test_a_misspelt_option_raises_at_sync_client_construction_before_a_thread_starts() -> None:
    threads = loop_thread_count()
    with pytest.raises(TypeError) as caught:
        h2any.sync.Client(verfy=False)  # type: ignore[call-arg]
    assert str(caught.value) == (
        "h2any.sync.Client() got an unexpected keyword argument 'verfy'; did you mean 'verify'?"
    )
    with pytest.raises(TypeError, match="'backnd'; did you mean 'backend'"):
        h2any.sync.Client(backnd="trio")  # type: ignore[call-arg]
    assert loop_thread_count() == threads


def test_valid_options_and_the_clients_own_arguments_are_accepted() -> None:
    h2any.Client(**OPTIONS, verify=False, timeout=5, headers={"x-a": "b"}, enable_push=True)


def test_an_options_dict_is_not_changed_by_the_client() -> None:
    options: h2any.ConnectionOptions = {"verify": False}
    h2any.Client(**options, timeout=3)
    assert options == {"verify": False}


# -- the options reach every connection the client opens ----------------------------------------


def _settings_sent(frames: list[tuple[str, Any]]) -> dict[int, int]:
    """The settings of the first SETTINGS frame (not an ACK) the client sent."""
    for direction, frame in frames:
        if direction == "send" and type(frame).__name__ == "SettingsFrame" and frame.settings:
            return dict(frame.settings)
    raise AssertionError(f"no SETTINGS sent: {frames!r}")


def _connection_window_increment(frames: list[tuple[str, Any]]) -> int:
    for direction, frame in frames:
        if (
            direction == "send"
            and type(frame).__name__ == "WindowUpdateFrame"
            and frame.stream_id == 0
        ):
            return int(frame.window_increment)
    raise AssertionError(f"no connection WINDOW_UPDATE sent: {frames!r}")


def _assert_applied(frames: list[tuple[str, Any]]) -> None:
    settings = _settings_sent(frames)
    assert settings[INITIAL_WINDOW_SIZE] == 300_000
    assert settings[MAX_FRAME_SIZE] == 32_768
    assert settings[MAX_HEADER_LIST_SIZE] == 40_000
    assert settings[ENABLE_PUSH] == 0
    assert 65_535 + _connection_window_increment(frames) == 5_000_000


@pytest.mark.anyio
async def test_client_options_reach_the_server_in_the_connections_settings() -> None:
    seen: dict[str, int] = {}

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        settings = peer.h2.remote_settings
        seen["initial_window_size"] = settings.initial_window_size
        seen["max_frame_size"] = settings.max_frame_size
        seen["max_header_list_size"] = settings.max_header_list_size
        seen["connection_window"] = peer.h2.outbound_flow_control_window
        await peer.respond(request.stream_id, body=b"ok")

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Client(**OPTIONS) as client:
            response = await client.get(f"{server.url}/")
            assert await response.aread() == b"ok"
    assert seen == {
        "initial_window_size": 300_000,
        "max_frame_size": 32_768,
        "max_header_list_size": 40_000,
        "connection_window": 5_000_000,
    }


@pytest.mark.anyio
async def test_client_max_concurrent_streams_limits_the_streams_the_server_sees() -> None:
    # max_concurrent_streams is a limit of our own (not a SETTING): with 1, a second request
    # waits for the first one's stream, which the server holds, and times out in the pool
    # (PoolTimeout) without reaching the server; sent, it would wait for its answer instead
    # (ReadTimeout).
    arrived, release = anyio.Event(), anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        arrived.set()
        await release.wait()
        await peer.respond(request.stream_id, body=b"first")

    with anyio.fail_after(10):
        async with (
            scripted_server(handler) as server,
            h2any.Client(max_concurrent_streams=1, timeout=5) as client,
        ):
            async with anyio.create_task_group() as task_group:
                first: list[bytes] = []

                async def get_first() -> None:
                    response = await client.get(f"{server.url}/first")
                    first.append(await response.aread())

                task_group.start_soon(get_first)
                await arrived.wait()
                with pytest.raises(h2any.PoolTimeout):
                    await client.get(f"{server.url}/second", timeout=h2any.Timeout(2, pool=0.2))
                release.set()
            assert first == [b"first"]


@pytest.mark.anyio
@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
async def test_client_options_apply_to_each_connection_it_opens(
    tls: bool, nghttpd: Any, nghttpd_tls: Any, certs: Any
) -> None:
    server = nghttpd_tls if tls else nghttpd
    frames: list[tuple[str, Any]] = []
    with anyio.fail_after(10):
        async with h2any.Client(
            **OPTIONS,
            verify=certs.ca_path,
            frame_observer=lambda direction, frame: frames.append((direction, frame)),
            max_connections_per_origin=2,
        ) as client:
            response = await client.get(f"{server.url}/hello.txt")
            assert await response.aread() == b"hello, world\n"
            assert client.connections_opened == 1
    _assert_applied(frames)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sync_client_options_apply_to_its_connections(backend: str, nghttpd: Any) -> None:
    frames: list[tuple[str, Any]] = []
    with h2any.sync.Client(
        backend=backend,
        timeout=10,
        frame_observer=lambda direction, frame: frames.append((direction, frame)),
        **OPTIONS,
    ) as client:
        response = client.get(f"{nghttpd.url}/hello.txt")
        assert response.read() == b"hello, world\n"
    _assert_applied(frames)


@pytest.mark.anyio
async def test_connect_applies_its_typed_options(nghttpd: Any) -> None:
    frames: list[tuple[str, Any]] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as task_group:
            connection = await h2any.connect(
                task_group,
                nghttpd.url,
                timeout=10,
                frame_observer=lambda direction, frame: frames.append((direction, frame)),
                **OPTIONS,
            )
            try:
                assert connection.max_concurrent_streams == 7  # ours, below nghttpd's 100
                response = await connection.request("GET", "/hello.txt")
                assert await response.read() == b"hello, world\n"
            finally:
                await connection.aclose()
    _assert_applied(frames)


def test_the_docstring_describes_every_connection_option() -> None:
    doc = h2any.ConnectionOptions.__doc__ or ""
    described = [
        line.strip().partition(":")[0]
        for line in doc.partition("Attributes:")[2].splitlines()
        if line.startswith("        ") and not line.startswith("          ")
    ]
    assert described == list(h2any.ConnectionOptions.__annotations__)
