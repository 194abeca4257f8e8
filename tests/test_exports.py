"""The public surface of ``h2any``: ``__all__``, docstrings, the exception tree, ``py.typed``."""

from __future__ import annotations

import ast
import builtins
import inspect
from pathlib import Path

import pytest

import h2any

PACKAGE_DIR = Path(h2any.__file__).parent


def _documented_all() -> list[str]:
    """``__all__`` as written in h2any/__init__.py, read from the source (not the module)."""
    tree = ast.parse((PACKAGE_DIR / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__all__" for target in node.targets
        ):
            value = ast.literal_eval(node.value)
            return list(value)
    raise AssertionError("h2any/__init__.py has no literal __all__")


PUBLIC = _documented_all()
EXCEPTIONS = [
    name
    for name in PUBLIC
    if inspect.isclass(getattr(h2any, name, None))
    and issubclass(getattr(h2any, name), BaseException)
]


def test_all_matches_the_source_of_init() -> None:
    assert list(h2any.__all__) == PUBLIC


def test_all_has_no_duplicates() -> None:
    assert len(set(PUBLIC)) == len(PUBLIC)


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_is_importable(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from h2any import {name}", namespace)
    assert namespace[name] is getattr(h2any, name)


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from h2any import *", namespace)
    namespace.pop("__builtins__", None)
    assert sorted(namespace) == sorted(PUBLIC)


@pytest.mark.parametrize(
    "name",
    [n for n in PUBLIC if inspect.isclass(getattr(h2any, n)) or callable(getattr(h2any, n))],
)
def test_every_public_class_and_function_has_a_docstring(name: str) -> None:
    obj = getattr(h2any, name)
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    assert doc, f"h2any.{name} has no docstring of its own"
    assert doc.strip(), f"h2any.{name} has an empty docstring"


def test_no_private_name_is_exported() -> None:
    private = [name for name in PUBLIC if name.startswith("_") and name != "__version__"]
    assert private == []


def test_no_submodule_or_private_helper_leaks_into_all() -> None:
    for name in PUBLIC:
        obj = getattr(h2any, name)
        assert not inspect.ismodule(obj), name
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__.startswith("h2any"), name


def test_version_is_a_string() -> None:
    assert isinstance(h2any.__version__, str)
    assert h2any.__version__


def test_exceptions_are_exported() -> None:
    # Sanity check of the parametrisation below.
    assert "H2anyError" in EXCEPTIONS
    assert len(EXCEPTIONS) >= 10


@pytest.mark.parametrize("name", EXCEPTIONS)
def test_every_exported_exception_subclasses_h2any_error(name: str) -> None:
    assert issubclass(getattr(h2any, name), h2any.H2anyError)


def test_every_exception_class_in_the_package_is_exported() -> None:
    from h2any import _exceptions

    defined = {
        name
        for name, obj in vars(_exceptions).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == _exceptions.__name__
    }
    assert defined <= set(PUBLIC)


def test_timeout_error_is_also_the_builtin_timeout_error() -> None:
    assert issubclass(h2any.TimeoutError, builtins.TimeoutError)
    assert h2any.TimeoutError is not builtins.TimeoutError
    for name in ("ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout"):
        cls = getattr(h2any, name)
        assert issubclass(cls, h2any.TimeoutError)
        assert issubclass(cls, builtins.TimeoutError)
    with pytest.raises(builtins.TimeoutError):
        raise h2any.ReadTimeout("no data")


def test_exception_hierarchy() -> None:
    assert issubclass(h2any.TLSError, h2any.ConnectError)
    assert issubclass(h2any.ConnectionTerminated, h2any.ConnectionClosed)
    assert issubclass(h2any.InvalidRequest, ValueError)


def test_py_typed_marker_is_in_the_package() -> None:
    assert (PACKAGE_DIR / "py.typed").is_file()


def _request_api() -> list[tuple[str, object]]:
    """The signatures users call to connect and send: resolved at run time by tools that
    read annotations (``typing.get_type_hints``: pydantic, cattrs, FastAPI dependencies)."""
    import h2any.grpc
    import h2any.sync
    import h2any.sync.grpc

    api: list[tuple[str, object]] = []
    for module in (h2any, h2any.sync):
        for name in ("Client", "Connection"):
            cls = getattr(module, name)
            for method in ("__init__", "request", "stream", "get", "post", "put", "patch"):
                if method in vars(cls):
                    api.append((f"{module.__name__}.{name}.{method}", vars(cls)[method]))
        for name in ("request", "get", "post", "put", "patch", "delete"):
            api.append((f"{module.__name__}.{name}", getattr(module, name)))
    api.append(("h2any.connect", h2any.connect))
    api.append(("h2any.grpc.Channel.__init__", h2any.grpc.Channel.__init__))
    api.append(("h2any.sync.grpc.Channel.__init__", h2any.sync.grpc.Channel.__init__))
    return api


REQUEST_API = _request_api()


@pytest.mark.parametrize(("name", "function"), REQUEST_API, ids=[name for name, _ in REQUEST_API])
def test_the_request_api_s_annotations_resolve_at_run_time(name: str, function: object) -> None:
    import typing

    hints = typing.get_type_hints(function)  # names imported for type checkers only: NameError
    assert hints, name
