"""Real test peers: nghttpd (h2c and TLS), in-process hypercorn, certificates and a docroot.

Fixture API (all servers listen on loopback only, except nghttpd which binds every interface):

* ``anyio_backend`` -> ``"asyncio"`` / ``"trio"`` (every ``@pytest.mark.anyio`` test runs twice)
* ``certs`` -> :class:`Certs` (``ca``, ``ca_path``, ``cert_path``, ``key_path``,
  ``client_ssl_context()``)
* ``docroot`` -> :class:`Docroot` (``path``, ``sha256`` name -> hex digest)
* ``nghttpd`` / ``nghttpd_tls`` -> :class:`NghttpdServer` (``url``, ``port``, ``docroot``,
  ``tls``, ``args``, ``stop()``)
* ``nghttpd_factory(extra_args=(), *, tls=False)`` -> another :class:`NghttpdServer`
* ``hypercorn_server`` -> :class:`HypercornServer` (``url_h2c``, ``url_tls``, ``port_h2c``,
  ``port_tls``)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import random
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from asgi_app import app
from hypercorn.config import Config, Sockets

STARTUP_DEADLINE = 10.0  # seconds a server gets to start accepting connections
POLL_INTERVAL = 0.02
# Variables of the outer environment that change where and how a client connects (the
# proxies, REQUEST_METHOD, which disables HTTP_PROXY under CGI, and SSL_CERT_FILE): tests
# of trust_env behaviour, and the documented examples, run without them.
CLIENT_ENVIRONMENT = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "REQUEST_METHOD",
    "SSL_CERT_FILE",
)


@pytest.fixture(
    params=[
        pytest.param("asyncio", id="asyncio"),
        pytest.param("trio", id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every anyio test on asyncio and on trio."""
    return str(request.param)


# -- leak check -----------------------------------------------------------------------------


def _h2any_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("h2any-")]


def loop_thread_count() -> int:
    """The sync facades' event-loop threads alive (other tests' worker threads come and go)."""
    return len(_h2any_threads())


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move everything alive after collection out of the collector's sight (``gc.freeze``).

    The leak check below runs a full ``gc.collect()`` after every test; with every test
    module, the libraries they import and the collected items in the heap (about 150,000
    objects) that took 0.1-0.2 s a test, minutes a run. None of those objects is garbage
    a test made: what a test creates is still collected, and checked, after it.
    """
    gc.collect()
    gc.freeze()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Give the frozen objects back to the collector: code run after the tests (hypothesis'
    summary imports hypothesis, whose ``register_random`` looks for referrers with
    ``gc.get_referrers``, which does not see frozen objects) finds them again."""
    gc.unfreeze()


@pytest.fixture(autouse=True)
def _no_leaked_h2any_resources() -> Iterator[None]:
    """Fail any test that leaves an h2any loop thread running or a socket unclosed.

    Unclosed sockets surface as ResourceWarnings when collected, which ``filterwarnings =
    error`` turns into failures; collecting here makes them belong to this test.
    """
    before = set(_h2any_threads())
    yield
    gc.collect()
    leaked = [name for name in _h2any_threads() if name not in before]
    assert not leaked, f"h2any threads left running: {leaked}"


# -- mypy -----------------------------------------------------------------------------------


def run_mypy(source: Path, python_version: str = "3.11") -> tuple[str, str, int]:
    """``mypy --strict SOURCE`` for ``python_version`` (nothing incremental; its cache in a
    directory beside the source) in a process of its own: ``(stdout, stderr, exit status)``, as
    ``mypy.api.run`` gives them.

    Not ``mypy.api.run`` in the test process: mypy keeps about 575,000 objects alive in
    module-level caches after a run, and every later test's leak check (a full
    ``gc.collect()``) walked them, 0.3 s or more a test for the rest of the session.
    """
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--cache-dir",
            str(source.parent / "mypy-cache"),
            "--python-version",
            python_version,
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    return result.stdout, result.stderr, result.returncode


# -- certificates -------------------------------------------------------------------------


@dataclass
class Certs:
    """A throwaway CA and a server certificate for localhost, 127.0.0.1 and ::1."""

    ca: trustme.CA
    ca_path: str
    cert_path: str
    key_path: str

    def client_ssl_context(self, alpn: Sequence[str] = ("h2",)) -> ssl.SSLContext:
        """An SSL context trusting the test CA, offering ``alpn``."""
        ctx = ssl.create_default_context(cafile=self.ca_path)
        ctx.set_alpn_protocols(list(alpn))
        return ctx


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    """Session-wide trustme CA and server certificate, written as PEM files."""
    directory = tmp_path_factory.mktemp("certs")
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1", "::1")
    ca_path = directory / "ca.pem"
    cert_path = directory / "server-chain.pem"
    key_path = directory / "server-key.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    server.private_key_pem.write_to_path(str(key_path))
    cert_path.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    return Certs(ca=ca, ca_path=str(ca_path), cert_path=str(cert_path), key_path=str(key_path))


# -- docroot ------------------------------------------------------------------------------


@dataclass
class Docroot:
    """Static files served by nghttpd; ``sha256`` maps file name -> hex digest."""

    path: Path
    sha256: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)


DOCROOT_FILES: dict[str, Callable[[], bytes]] = {
    "1b": lambda: b"x",
    "hello.txt": lambda: b"hello, world\n",
    "1m.bin": lambda: random.Random(1).randbytes(1 << 20),
    "16m.bin": lambda: random.Random(16).randbytes(16 << 20),
}


@pytest.fixture(scope="session")
def docroot(tmp_path_factory: pytest.TempPathFactory) -> Docroot:
    """A directory of deterministic files (``1b``, ``hello.txt``, ``1m.bin``, ``16m.bin``)."""
    directory = tmp_path_factory.mktemp("docroot")
    root = Docroot(path=directory)
    for name, make in DOCROOT_FILES.items():
        data = make()
        (directory / name).write_bytes(data)
        root.sha256[name] = hashlib.sha256(data).hexdigest()
        root.sizes[name] = len(data)
    return root


# -- helpers ------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port currently free on both IPv4 and IPv6 (tiny race accepted)."""
    if socket.has_ipv6:
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                sock.bind(("::", 0))
                return int(sock.getsockname()[1])
        except OSError:
            pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _can_connect(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


# -- nghttpd ------------------------------------------------------------------------------
#
# nghttpd defaults we rely on (nghttp2 1.52): SETTINGS_MAX_CONCURRENT_STREAMS 100 (-m),
# stream and connection initial windows 64 KiB - 1 (-w / -W take log2 sizes), one worker
# thread, files served from -d with content-length, 404 for missing files, POST/PUT bodies
# discarded unless --echo-upload.  Without -a it binds every address getaddrinfo returns
# (0.0.0.0 and ::), hence free_port() checks both families.


@dataclass
class NghttpdServer:
    """A running nghttpd process."""

    url: str
    port: int
    docroot: Docroot
    tls: bool
    args: list[str]
    process: subprocess.Popen[bytes] = field(repr=False)
    stderr_path: Path = field(repr=False)

    def stop(self) -> None:
        """Terminate the process and reap it (idempotent)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def stderr(self) -> str:
        """What nghttpd printed on stderr so far."""
        return self.stderr_path.read_text(errors="replace")


NghttpdFactory = Callable[..., NghttpdServer]


def _start_nghttpd(
    docroot: Docroot, certs: Certs, logdir: Path, extra_args: Sequence[str], tls: bool
) -> NghttpdServer:
    """Start nghttpd on a free port and wait until it accepts connections."""
    last_error = ""
    for _attempt in range(3):
        port = free_port()
        args = ["nghttpd", "-d", str(docroot.path), *extra_args]
        if tls:
            args += [str(port), certs.key_path, certs.cert_path]
            url = f"https://localhost:{port}"
        else:
            args = [*args[:1], "--no-tls", *args[1:], str(port)]
            url = f"http://127.0.0.1:{port}"
        stderr_path = logdir / f"nghttpd-{port}.stderr"
        with stderr_path.open("wb") as err:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        server = NghttpdServer(url, port, docroot, tls, args, proc, stderr_path)
        deadline = time.monotonic() + STARTUP_DEADLINE
        while time.monotonic() < deadline:
            if _can_connect(port):
                return server
            try:
                proc.wait(timeout=POLL_INTERVAL)  # doubles as the poll delay
            except subprocess.TimeoutExpired:
                continue
            break  # exited early
        server.stop()
        last_error = f"{args!r} exited with {proc.returncode}: {server.stderr()!r}"
        if "Address already in use" not in last_error:
            break
    raise RuntimeError(f"nghttpd did not start accepting connections: {last_error}")


@pytest.fixture(scope="session")
def nghttpd_factory(
    docroot: Docroot, certs: Certs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NghttpdFactory]:
    """Start extra nghttpd processes: ``nghttpd_factory(["-m", "1"], tls=False)``.

    Useful extra args: ``-m N`` max concurrent streams, ``-w N`` / ``-W N`` stream /
    connection window 2**N-1, ``-p/path=/push1,/push2`` server push, ``--echo-upload``,
    ``--trailer 'x: y'``, ``--early-response``, ``--no-content-length``, ``-b N`` padding.
    All processes are stopped at the end of the session.
    """
    logdir = tmp_path_factory.mktemp("nghttpd-logs")
    started: list[NghttpdServer] = []

    def start(extra_args: Sequence[str] = (), *, tls: bool = False) -> NghttpdServer:
        server = _start_nghttpd(docroot, certs, logdir, list(extra_args), tls)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="session")
def nghttpd(nghttpd_factory: NghttpdFactory) -> NghttpdServer:
    """nghttpd over h2c (prior knowledge) at ``http://127.0.0.1:PORT``."""
    return nghttpd_factory()


@pytest.fixture(scope="session")
def nghttpd_tls(nghttpd_factory: NghttpdFactory) -> NghttpdServer:
    """nghttpd over TLS (ALPN h2) at ``https://localhost:PORT``."""
    return nghttpd_factory(tls=True)


# -- hypercorn ----------------------------------------------------------------------------


@dataclass
class HypercornServer:
    """In-process hypercorn serving ``tests.asgi_app:app`` on h2c and TLS sockets."""

    url_h2c: str
    url_tls: str
    port_h2c: int
    port_tls: int
    config: Config = field(repr=False)


class _PrebindConfig(Config):
    """A hypercorn Config that binds loopback sockets on port 0 itself, so no port race.

    The TLS port is bound on 127.0.0.1 and, if possible, the same port on ::1, because
    ``localhost`` may resolve to either.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sockets: Sockets | None = None
        self.bound = threading.Event()  # set once create_sockets() returned or failed

    def create_sockets(self) -> Sockets:
        try:
            insecure = [_listen_socket(socket.AF_INET, "127.0.0.1", 0)]
            secure = [_listen_socket(socket.AF_INET, "127.0.0.1", 0)]
            self.sockets = Sockets(secure, insecure, [])
            tls_port = secure[0].getsockname()[1]
            with contextlib.suppress(OSError):  # no IPv6 loopback
                secure.append(_listen_socket(socket.AF_INET6, "::1", tls_port))
            return self.sockets
        finally:
            self.bound.set()

    def close_sockets(self) -> None:
        """Close the listening sockets (asyncio already did on a clean shutdown)."""
        if self.sockets is not None:
            for sock in [*self.sockets.secure_sockets, *self.sockets.insecure_sockets]:
                sock.close()


def _listen_socket(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


class _HypercornThread(threading.Thread):
    """Runs ``hypercorn.asyncio.serve`` on a private asyncio loop."""

    def __init__(self, config: _PrebindConfig) -> None:
        super().__init__(name="hypercorn", daemon=True)
        self.config = config
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            self.error = exc
        finally:
            self.config.close_sockets()
            self.config.bound.set()

    async def _main(self) -> None:
        from hypercorn.asyncio import serve

        self._loop = asyncio.get_running_loop()
        self._shutdown = asyncio.Event()
        await serve(app, self.config, shutdown_trigger=self._shutdown.wait)  # type: ignore[arg-type]

    def stop(self) -> None:
        """Ask serve() to shut down gracefully."""
        loop, event = self._loop, self._shutdown
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(event.set)


@pytest.fixture(scope="session")
def hypercorn_server(certs: Certs) -> Iterator[HypercornServer]:
    """hypercorn serving ``tests/asgi_app.py:app`` over h2c and TLS (ALPN h2, http/1.1).

    ``keep_alive_max_requests`` is raised (hypercorn closes a connection after 1,000
    requests by default); ``h2_max_concurrent_streams`` stays at hypercorn's default 100.
    """
    config = _PrebindConfig()
    config.certfile = certs.cert_path
    config.keyfile = certs.key_path
    config.keep_alive_max_requests = 1_000_000_000
    config.h2_max_concurrent_streams = 100
    config.graceful_timeout = 1.0
    config.accesslog = None
    config.errorlog = "-"

    thread = _HypercornThread(config)
    thread.start()
    try:
        if not config.bound.wait(STARTUP_DEADLINE) or config.sockets is None:
            thread.join(STARTUP_DEADLINE)
            raise RuntimeError(f"hypercorn failed to bind: {thread.error!r}")
        port_h2c = config.sockets.insecure_sockets[0].getsockname()[1]
        port_tls = config.sockets.secure_sockets[0].getsockname()[1]
        deadline = time.monotonic() + STARTUP_DEADLINE
        # serve() starts the TLS server before the h2c one: h2c accepting means both are up.
        while not _can_connect(port_h2c):
            thread.join(POLL_INTERVAL)  # doubles as the poll delay
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"hypercorn did not start listening: {thread.error!r}")
        yield HypercornServer(
            url_h2c=f"http://127.0.0.1:{port_h2c}",
            url_tls=f"https://localhost:{port_tls}",
            port_h2c=port_h2c,
            port_tls=port_tls,
            config=config,
        )
    finally:
        thread.stop()
        thread.join(STARTUP_DEADLINE)
        if thread.is_alive():
            raise RuntimeError("hypercorn did not shut down")
        if thread.error is not None:
            raise thread.error
