"""The package as users get it: sdist and wheel (LICENSE, metadata, no development tools in
its requirements), one version, the oldest Python it claims, and ``.ci/run``'s set-up.

The set-up tests run ``.ci/run`` for real, in temporary directories, with Debian's own
``/usr/bin/python3`` (marked externally managed, PEP 668: ``pip install`` into it fails as
root) -- what a fresh Debian 12 or Ubuntu 24.04 machine has. The branch that installs
``python3-venv`` when ``python3 -m venv`` fails is checked with a stand-in ``apt-get`` and a
``python3`` that cannot make a virtual environment until that ``apt-get`` ran (the machine's
own python3-venv is already installed, and uninstalling it is not an option here).
"""

from __future__ import annotations

import email.parser
import email.policy
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.message import Message
from pathlib import Path

import pytest

import h2any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = None  # type: ignore[assignment]

ROOT = Path(__file__).resolve().parent.parent
CI_RUN = ROOT / ".ci" / "run"
DEBIAN_PYTHON = Path("/usr/bin/python3")

# What must never be a requirement of the published package (development tools).
DEV_TOOLS = {"pytest", "mypy", "ruff", "nox", "coverage", "hypothesis", "mkdocs", "hypercorn"}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel, built from the checkout (with hatchling from the test group,
    so no index is needed; else in an isolated environment)."""
    out = tmp_path_factory.mktemp("dist")
    isolation: list[str] = []
    try:
        import hatchling  # noqa: F401

        isolation = ["--no-isolation"]
    except ImportError:
        pass
    subprocess.run(
        [sys.executable, "-m", "build", *isolation, "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def _metadata(text: str) -> Message:
    return email.parser.Parser(policy=email.policy.compat32).parsestr(text)


def _wheel(dist: Path) -> tuple[Message, set[str], str]:
    (wheel,) = dist.glob("h2any-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (meta_name,) = (n for n in names if n.endswith(".dist-info/METADATA"))
        (licence,) = (n for n in names if n.endswith(".dist-info/licenses/LICENSE"))
        return _metadata(archive.read(meta_name).decode()), names, archive.read(licence).decode()


def _sdist(dist: Path) -> tuple[Message, set[str], str]:
    (sdist,) = dist.glob("h2any-*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = set(archive.getnames())
        top = sdist.name.removesuffix(".tar.gz")

        def read(name: str) -> str:
            member = archive.extractfile(f"{top}/{name}")
            assert member is not None
            return member.read().decode()

        return _metadata(read("PKG-INFO")), names, read("LICENSE")


def _check_metadata(meta: Message) -> None:
    assert meta["Name"] == "h2any"
    assert meta["Version"] == h2any.__version__
    assert meta["License-Expression"] == "MIT"
    assert meta["Requires-Python"] == ">=3.10"
    urls = dict(value.split(", ", 1) for value in meta.get_all("Project-URL", []))
    assert {"Homepage", "Documentation", "Source", "Issues", "Changelog"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())
    classifiers = set(meta.get_all("Classifier", []))
    assert any(c.startswith("Development Status ::") for c in classifiers)
    assert "Typing :: Typed" in classifiers
    for minor in (10, 11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in classifiers
    requires = meta.get_all("Requires-Dist", [])
    names = {r.split(";")[0].split("[")[0].split("<")[0].split(">")[0].strip() for r in requires}
    assert {"anyio", "h2", "certifi"} <= names
    assert not names & DEV_TOOLS, f"development tools in the package's requirements: {names}"
    extras = set(meta.get_all("Provides-Extra", []))
    assert {"trio", "brotli", "zstd", "speed", "cli"} <= extras
    assert not extras & {"dev", "docs", "bench", "test", "lint"}
    # Every published requirement of an engine private API has an upper bound.
    assert any(r.startswith("h2") and "<5" in r for r in requires)
    assert any(r.startswith("jh2") and "<6" in r for r in requires)


def test_wheel_ships_license_and_complete_metadata(dist: Path) -> None:
    meta, names, licence = _wheel(dist)
    _check_metadata(meta)
    assert "MIT License" in licence
    assert "h2any/py.typed" in names
    assert not any(name.startswith(("tests/", "benchmarks/", "docs/")) for name in names)


def test_sdist_ships_license_and_complete_metadata(dist: Path) -> None:
    meta, names, licence = _sdist(dist)
    _check_metadata(meta)
    assert "MIT License" in licence
    (top,) = {name.split("/", 1)[0] for name in names}
    for needed in ("LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "h2any/py.typed"):
        assert f"{top}/{needed}" in names
    assert not any("/site/" in name or "/.venv" in name or ".pyc" in name for name in names)


@pytest.mark.skipif(tomllib is None, reason="tomllib is Python 3.11+")
def test_version_has_one_source() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]
    assert project["project"]["dynamic"] == ["version"]
    assert project["tool"]["hatch"]["version"]["path"] == "h2any/_version.py"
    # Development tools live in PEP 735 groups, which are not published.
    groups = project["dependency-groups"]
    assert {"test", "lint", "docs", "dev", "bench"} <= set(groups)
    assert not {"dev", "docs", "bench"} & set(project["project"]["optional-dependencies"])


def _python_310() -> str | None:
    """A working Python 3.10 (a pyenv shim may name one that is not selected)."""
    candidates = [
        shutil.which("python3.10"),
        *map(str, Path.home().glob(".pyenv/versions/3.10*/bin/python3.10")),
    ]
    for candidate in candidates:
        if candidate is None:
            continue
        try:
            probe = subprocess.run(
                [candidate, "-c", "import sys, venv; print(sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except OSError:
            continue
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 10)":
            return candidate
    return None


PYTHON_310 = _python_310()


def _venv(python: str, where: Path) -> Path:
    subprocess.run([python, "-m", "venv", str(where)], check=True, timeout=120)
    return where / "bin" / "python"


@pytest.mark.skipif(PYTHON_310 is None, reason="no Python 3.10 here")
def test_oldest_python_installs_the_wheel_and_runs_the_demo(dist: Path, tmp_path: Path) -> None:
    """``requires-python = ">=3.10"`` is true: the wheel installs (with its dependencies
    only) into a Python 3.10 environment and the demo works there."""
    assert PYTHON_310 is not None
    python = _venv(PYTHON_310, tmp_path / "venv")
    (wheel,) = dist.glob("h2any-*.whl")
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, str(wheel)], check=True, timeout=300)
    # The suite's jh2 pass pins H2ANY_ENGINE=jh2; this environment has the required
    # dependencies only.
    env = {name: value for name, value in os.environ.items() if name != "H2ANY_ENGINE"}
    result = subprocess.run(
        [str(python), "-m", "h2any", "demo", "--requests", "50"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("OK")
    installed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    assert "pytest" not in installed
    assert "mypy" not in installed


def _externally_managed(python: Path) -> bool:
    if not python.exists():
        return False
    stdlib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('stdlib'))"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return (Path(stdlib) / "EXTERNALLY-MANAGED").exists()


@pytest.fixture
def ci_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    # H2ANY_ENGINE: the suite's jh2 pass pins the engine; a fresh install has no jh2.
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PIP_REQUIRE_VIRTUALENV", "H2ANY_ENGINE"):
        env.pop(name, None)
    env["H2ANY_CI_VENV"] = str(tmp_path / "venv-ci")
    return env


@pytest.mark.skipif(not _externally_managed(DEBIAN_PYTHON), reason="no PEP 668 system python3 here")
def test_ci_run_sets_up_its_own_venv_with_the_system_python(ci_env: dict[str, str]) -> None:
    """``.ci/run demo`` and ``.ci/run``'s set-up with Debian's externally managed python3:
    both work (pip never touches the system Python) and the venv has the test tools."""
    ci_env["PYTHON"] = str(DEBIAN_PYTHON)
    demo = subprocess.run(
        ["bash", str(CI_RUN), "demo", "--requests", "50"],
        env=ci_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert demo.returncode == 0, demo.stderr[-2000:]
    assert demo.stdout.rstrip().endswith("OK")
    setup = subprocess.run(
        ["bash", str(CI_RUN), "--setup-only"],
        env=ci_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert setup.returncode == 0, setup.stderr[-2000:]
    assert f"h2any {h2any.__version__}" in setup.stdout
    venv_python = Path(ci_env["H2ANY_CI_VENV"]) / "bin" / "python"
    version = subprocess.run(
        [str(venv_python), "-m", "pip", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[1]
    assert tuple(int(part) for part in version.split(".")[:2]) >= (25, 1)


def test_ci_run_installs_python3_venv_when_venv_fails(
    ci_env: dict[str, str], tmp_path: Path
) -> None:
    """Where ``python3 -m venv`` fails (Debian without python3-venv), ``.ci/run`` asks
    apt-get for python3-venv and tries again."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "apt-ran"
    apt_log = tmp_path / "apt.log"
    (bin_dir / "apt-get").write_text(
        f'#!/bin/sh\necho "$@" >> {apt_log}\ntouch {marker}\n', encoding="utf-8"
    )
    # A python3 whose venv module "is missing" until apt-get ran; otherwise the real one.
    (bin_dir / "python3").write_text(
        "#!/bin/sh\n"
        f'if [ "$1 $2" = "-m venv" ] && [ ! -e {marker} ]; then\n'
        "  echo 'ensurepip is not available' >&2; exit 1\nfi\n"
        f'exec {sys.executable} "$@"\n',
        encoding="utf-8",
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    ci_env["PATH"] = f"{bin_dir}{os.pathsep}{ci_env['PATH']}"
    ci_env["PYTHON"] = "python3"
    # Set-up only as far as the venv: the stand-in python runs the rest for real, so stop
    # it early with a demo of one request.
    result = subprocess.run(
        ["bash", str(CI_RUN), "demo", "--requests", "1"],
        env=ci_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    calls = apt_log.read_text().splitlines()
    assert any(call.startswith("update") for call in calls)
    assert any(call.startswith("install") and "python3-venv" in call for call in calls)
