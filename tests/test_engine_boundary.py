"""The engine boundary: what h2any's core uses of h2's (or jh2's) connection, and which engines
it accepts.

``_engine.EngineConnection`` lists every member of the engine's connection the core uses;
each engine's connection must have them all, with signatures that accept the calls the
Protocol allows, and the nested objects (settings, decoder, frame buffer, state machine)
must have theirs. An engine older than the supported versions, or one that lacks a private
member the overrides rely on, is refused when it is chosen, with a ValueError naming the
versions h2any supports -- never an AttributeError in the middle of a read. The supported
versions are the ones pyproject declares.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import re
import sys
from enum import Enum
from pathlib import Path
from typing import Any

import anyio
import pytest

import h2any
from h2any import _engine
from h2any._engine import EngineConnection, get_engine
from h2any.testing import serve

pytestmark = pytest.mark.anyio

ENGINES = [
    pytest.param("h2", id="h2"),
    pytest.param(
        "jh2",
        id="jh2",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("jh2") is None, reason="jh2 is not installed"
        ),
    ),
]
REQUEST = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/")]


def _protocol_members(protocol: type) -> dict[str, Any]:
    """The members a Protocol declares: annotated attributes (as None), properties and
    methods (as themselves)."""
    members: dict[str, Any] = dict.fromkeys(protocol.__annotations__)
    for name, value in vars(protocol).items():
        if not name.startswith("_") and (callable(value) or isinstance(value, property)):
            members[name] = value
    return members


def _accepts_every_call_of(implementation: Any, declared: Any) -> list[str]:
    """What stops ``implementation`` (a bound method) from taking every call ``declared``
    (the Protocol's function) allows: each declared parameter, by name and position, with a
    default where the declaration has one; no other parameter without a default."""
    problems = []
    accepted = list(inspect.signature(implementation).parameters.values())
    wanted = list(inspect.signature(declared).parameters.values())[1:]  # less self
    for position, parameter in enumerate(wanted):
        if position >= len(accepted) or accepted[position].name != parameter.name:
            problems.append(f"no parameter {parameter.name!r} at position {position}")
        elif parameter.default is not inspect.Parameter.empty and (
            accepted[position].default is inspect.Parameter.empty
        ):
            problems.append(f"{parameter.name!r} has no default")
    for parameter in accepted[len(wanted) :]:
        if parameter.default is inspect.Parameter.empty and parameter.kind not in (
            inspect.Parameter.VAR_POSITIONAL,
            inspect.Parameter.VAR_KEYWORD,
        ):
            problems.append(f"extra parameter {parameter.name!r} without a default")
    return problems


@pytest.fixture
def fresh_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    """No engine chosen yet in this test (they are built once per process otherwise)."""
    monkeypatch.setattr(_engine, "_ENGINES", {})


@pytest.mark.parametrize("engine_name", ENGINES)
def test_engine_connection_has_every_member_the_core_uses(engine_name: str) -> None:
    connection = get_engine(engine_name).new_connection()
    problems = {}
    for name, declared in _protocol_members(EngineConnection).items():
        if not hasattr(connection, name):
            problems[name] = "missing"
        elif callable(declared):
            method = getattr(connection, name)
            if not callable(method):
                problems[name] = "not callable"
            elif found := _accepts_every_call_of(method, declared):
                problems[name] = "; ".join(found)
    assert problems == {}


@pytest.mark.parametrize("engine_name", ENGINES)
def test_nested_engine_objects_have_what_the_core_uses(engine_name: str) -> None:
    engine = get_engine(engine_name)
    connection = engine.new_connection()
    codes = engine.SettingCodes
    assert all(
        isinstance(getattr(codes, name), int)
        for name in _protocol_members(_engine.EngineSettingCodes)
    )
    connection.local_settings = engine.Settings(
        client=True, initial_values={codes.MAX_CONCURRENT_STREAMS: 7, codes.ENABLE_PUSH: 0}
    )
    assert connection.local_settings.max_concurrent_streams == 7
    for settings in (connection.local_settings, connection.remote_settings):
        assert isinstance(settings.header_table_size, int)
        assert isinstance(settings.max_concurrent_streams, int)
    connection.decoder.max_header_list_size = 1000
    connection.decoder.max_allowed_table_size = connection.local_settings.header_table_size
    assert connection.frame_buffer.stream_errors == []
    assert isinstance(connection.state_machine.state, Enum)
    assert connection.state_machine.state.name == "IDLE"
    connection.reset_by_us.add(1)
    assert 1 in connection.reset_by_us
    assert engine.NeverIndexedHeaderTuple(b"authorization", b"secret") == (
        b"authorization",
        b"secret",
    )


@pytest.mark.parametrize("engine_name", ENGINES)
def test_outbound_size_counts_what_data_to_send_would_return(engine_name: str) -> None:
    connection = get_engine(engine_name).new_connection()
    assert (connection.outbound_size(), connection.has_data_to_send()) == (0, False)
    connection.initiate_connection()
    size = connection.outbound_size()
    assert connection.has_data_to_send()
    assert len(connection.data_to_send()) == size > 0
    assert (connection.outbound_size(), connection.has_data_to_send()) == (0, False)
    connection.receive_data(b"\0\0\0\x04\0\0\0\0\0")  # the server's SETTINGS: acknowledged
    connection.send_request_headers(1, REQUEST, False)
    connection.send_data_frame(1, memoryview(b"x" * 100))
    size = connection.outbound_size()
    assert len(connection.data_to_send()) == size > 100


@pytest.mark.parametrize("engine_name", ENGINES)
async def test_requests_and_uploads_go_through_each_engine(engine_name: str) -> None:
    body = bytes(range(256)) * 1000  # several DATA frames: the send batching's size
    with anyio.fail_after(10):
        async with serve() as server, h2any.Connection(server.url, engine=engine_name) as conn:
            response = await conn.request("GET", "/bytes/70000")
            assert (response.status, len(await response.read())) == (200, 70000)
            response = await conn.request("POST", "/echo", body=body)
            assert await response.read() == body


def test_engine_records_its_version(fresh_engines: None) -> None:
    engine = get_engine("h2")
    assert engine.version == importlib.metadata.version("h2")


@pytest.mark.parametrize(
    ("engine_name", "version", "requirement"),
    [("h2", "4.0.0", "h2>=4.1,<5"), ("h2", "3.2.0", "h2>=4.1,<5"), ("jh2", "4.9.1", "jh2>=5,<6")],
)
def test_an_engine_too_old_is_refused_when_chosen(
    fresh_engines: None,
    monkeypatch: pytest.MonkeyPatch,
    engine_name: str,
    version: str,
    requirement: str,
) -> None:
    monkeypatch.setattr(_engine, "_installed_version", lambda package: version)
    with pytest.raises(ValueError, match="is too old") as caught:
        get_engine(engine_name)
    assert f"{engine_name} {version} " in str(caught.value)
    assert requirement in str(caught.value)


async def test_a_connection_on_an_engine_too_old_fails_before_connecting(
    fresh_engines: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not in the first read, as an AttributeError inside an ExceptionGroup.
    monkeypatch.setattr(_engine, "_installed_version", lambda package: "4.0.0")
    with anyio.fail_after(5):
        with pytest.raises(ValueError, match=r"h2 4\.0\.0 is too old.*h2>=4\.1,<5"):
            async with h2any.Connection("http://127.0.0.1:9", engine="h2"):
                pass


def test_an_engine_lacking_a_relied_on_member_is_refused(
    fresh_engines: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    relied_on = dict(_engine._RELIED_ON)
    relied_on["H2Connection"] = (*relied_on["H2Connection"], "_moved_in_a_later_release")
    monkeypatch.setattr(_engine, "_RELIED_ON", relied_on)
    with pytest.raises(ValueError, match="lacks what h2any relies on") as caught:
        get_engine("h2")
    assert "H2Connection._moved_in_a_later_release" in str(caught.value)
    assert "h2>=4.1,<5" in str(caught.value)


@pytest.mark.skipif(importlib.util.find_spec("jh2") is None, reason="jh2 is not installed")
def test_the_default_engine_falls_back_to_h2_when_jh2_is_unsupported(
    fresh_engines: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = _engine._installed_version
    monkeypatch.setattr(
        _engine,
        "_installed_version",
        lambda package: "4.0.0" if package == "jh2" else installed(package),
    )
    monkeypatch.delenv("H2ANY_ENGINE", raising=False)
    assert get_engine().name == "h2"
    with pytest.raises(ValueError, match=r"jh2 4\.0\.0 is too old"):
        get_engine("jh2")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is new in Python 3.11")
def test_pyproject_declares_the_supported_versions() -> None:
    import tomllib

    pyproject = tomllib.loads(
        (Path(__file__).parent.parent / "pyproject.toml").read_text(encoding="utf-8")
    )
    project = pyproject["project"]
    requirements = [*project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        requirements.extend(extra)
    for package in _engine.SUPPORTED:
        declared = {
            requirement.split(";")[0].strip()
            for requirement in requirements
            if re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0] == package
        }
        assert declared == {_engine._requirement(package)}, package
