"""The public surface of ``h2any.grpc`` and ``h2any.sync.grpc``: exactly the documented names,
each with a docstring; the error under h2any's base class; public classes final."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import h2any
import h2any.grpc
import h2any.sync.grpc

ROOT = Path(__file__).resolve().parent.parent
ASYNC_NAMES = (
    "EOF",
    "Channel",
    "Metadata",
    "RpcError",
    "StatusCode",
    "StreamStreamCall",
    "StreamStreamMultiCallable",
    "StreamUnaryCall",
    "StreamUnaryMultiCallable",
    "UnaryStreamCall",
    "UnaryStreamMultiCallable",
    "UnaryUnaryCall",
    "UnaryUnaryMultiCallable",
)
SYNC_NAMES = (
    "EOF",
    "Call",
    "Channel",
    "Metadata",
    "RpcError",
    "StatusCode",
    "StreamStreamMultiCallable",
    "StreamUnaryMultiCallable",
    "UnaryStreamMultiCallable",
    "UnaryUnaryMultiCallable",
)


def test_exported_names_are_the_documented_ones() -> None:
    assert h2any.grpc.__all__ == ASYNC_NAMES
    assert h2any.sync.grpc.__all__ == SYNC_NAMES
    api = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    for name in ASYNC_NAMES:
        assert f"::: h2any.grpc.{name}\n" in api, name
    for name in ("Channel", "Call"):
        assert f"::: h2any.sync.grpc.{name}\n" in api, name


@pytest.mark.parametrize(
    ("module", "name"),
    [(h2any.grpc, n) for n in ASYNC_NAMES] + [(h2any.sync.grpc, n) for n in SYNC_NAMES],
)
def test_every_public_class_has_a_docstring_and_is_final(module: object, name: str) -> None:
    obj = getattr(module, name)
    if not inspect.isclass(obj):
        return
    assert obj.__dict__.get("__doc__"), f"{name} has no docstring"
    assert getattr(obj, "__final__", False), f"{name} is not @final"


def test_rpc_error_is_an_h2any_error_with_grpc_methods() -> None:
    error = h2any.grpc.RpcError(h2any.grpc.StatusCode.ABORTED, "why")
    assert isinstance(error, h2any.H2anyError)
    assert error.code() == 10
    assert error.details() == "why"
    assert error.trailing_metadata() == ()
    assert error.initial_metadata() == ()
    assert "ABORTED" in str(error)
    assert h2any.sync.grpc.RpcError is h2any.grpc.RpcError
