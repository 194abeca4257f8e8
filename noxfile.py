"""Project tasks: ``nox -s tests lint typecheck docs bench fuzz``."""

from __future__ import annotations

import os
import shutil

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

# The development tools are PEP 735 dependency groups in pyproject.toml (not published
# extras): each session installs the group it needs.
PYPROJECT = nox.project.load_toml("pyproject.toml")


def _group(name: str) -> list[str]:
    return list(nox.project.dependency_groups(PYPROJECT, name))


def _require_nghttpd(session: nox.Session, h2load: bool = False) -> None:
    """nghttpd (the test and benchmark server), tinyproxy and, for the benchmarks, h2load
    (the C ceiling): installed from Debian's nghttp2-server, tinyproxy-bin and
    nghttp2-client when missing and apt-get is there."""
    tools = ["nghttpd", "tinyproxy", *(["h2load"] if h2load else [])]
    if all(shutil.which(tool) for tool in tools):
        return
    if shutil.which("apt-get") is None:
        session.error(f"missing: install {', '.join(tools)} (nghttp2 and tinyproxy)")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    session.run(*sudo, "apt-get", "update", "-qq", external=True, env=env)
    packages = ["nghttp2-server", "tinyproxy-bin", *(["nghttp2-client"] if h2load else [])]
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]
    session.run(*sudo, *install, external=True, env=env)


@nox.session
@nox.parametrize("engine", ["h2", "jh2"])
def tests(session: nox.Session, engine: str) -> None:
    """The whole test suite, on asyncio and trio, with branch coverage; once per engine
    (stock h2, and jh2 from the speed extra)."""
    _require_nghttpd(session)
    session.install("-e", ".", *_group("test"), *_group("docs"))  # docs: test_docs_render
    session.env["H2ANY_ENGINE"] = engine
    session.run("coverage", "run", "-m", "pytest", "-q", *session.posargs)
    session.run("coverage", "report", "--show-missing", "--skip-covered")


# The engines pyproject allows, at both ends: (engine, what to install), by session id.
# "h2-lowest" is the oldest h2 with the oldest hpack and hyperframe it allows.
ENGINE_VERSIONS = {
    "h2-lowest": ("h2", ["h2==4.1.0", "hpack==4.0.0", "hyperframe==6.0.0"]),
    "h2-newest": ("h2", ["--upgrade", "h2>=4.1,<5"]),
    "jh2-lowest": ("jh2", ["jh2==5.0.0"]),
    "jh2-newest": ("jh2", ["--upgrade", "jh2>=5,<6"]),
}
# Tests that need hypercorn 0.18 (it sends response trailers; 0.17, the newest release that
# installs beside h2 older than 4.3, does not): left out where h2 is older than that.
NEEDS_HYPERCORN_018 = (
    "tests/test_cli.py::test_trailers",
    "tests/test_hyper_shim.py::test_trailers_read_the_body_and_keep_it",
    "tests/test_peers_selfcheck.py::test_hypercorn_trailers_raw",
    "tests/test_requests.py::test_trailers_are_available_after_the_body",
    "tests/test_sync.py::test_request_read_and_stream",
)


@nox.session
@nox.parametrize("version", list(ENGINE_VERSIONS), ids=list(ENGINE_VERSIONS))
def engines(session: nox.Session, version: str) -> None:
    """The test suite on the oldest and the newest h2 and jh2 that pyproject allows.

    The engine is installed with the dev extras, in one resolution (``nox -s engines --
    tests/test_requests.py`` runs less). With the oldest h2 the tests that need hypercorn
    0.18 are left out (NEEDS_HYPERCORN_018): they test the peer, not the engine.
    """
    _require_nghttpd(session)
    engine, requirements = ENGINE_VERSIONS[version]
    session.install("-e", ".", *_group("test"), *requirements)
    session.env["H2ANY_ENGINE"] = engine
    # The version h2any will drive (refused here, with the reason, if it does not support it).
    check = "import sys, h2any._engine as e; print(sys.argv[1], e.get_engine(sys.argv[1]).version)"
    session.run("python", "-c", check, engine)
    left_out = NEEDS_HYPERCORN_018 if version == "h2-lowest" else ()
    session.run("pytest", "-q", *(f"--deselect={test}" for test in left_out), *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """The hypothesis-driven scripted peer, at 5000 examples per backend."""
    session.install("-e", ".", *_group("test"))
    session.run(
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_fuzz.py",
        *session.posargs,
        env={"H2ANY_FUZZ_EXAMPLES": "5000"},
    )


@nox.session
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install(*_group("lint"))
    session.run("ruff", "check", "h2any", "tests", "benchmarks", "noxfile.py")
    session.run("ruff", "format", "--check", "h2any", "tests", "benchmarks", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", ".", *_group("test"), *_group("lint"))
    session.run("mypy", "--strict", "h2any")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site into site/."""
    session.install("-e", ".", *_group("docs"))
    session.run("mkdocs", "build", "--strict")


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks against httpx (http2=True) and h2load, on one connection to nghttpd:
    bench_core (small requests, download) and bench_scenarios (window managers, uploads,
    fan-out, parallel bulk, the h2 floor). About 30 minutes on 2 cores."""
    _require_nghttpd(session, h2load=True)
    session.install("-e", ".", *_group("bench"))
    session.run("python", "benchmarks/bench_all.py", *session.posargs)
