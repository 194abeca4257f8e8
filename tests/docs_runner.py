"""Run documentation examples, unchanged, against the docs network.

``python -X dev -W error docs_runner.py serve`` is the fork server ``tests/test_docs.py``
starts (below); ``python -X dev -W error docs_runner.py EXAMPLE.py BACKEND`` runs one
example by itself. Either way ``H2ANY_DOCS_NETWORK`` (from :mod:`docs_network`) describes
the network, and each example runs in a process of its own, prepared so:

1. **Names.** ``h2any._socket.connect_tcp``, which h2any opens its connections with, and
   ``anyio.connect_tcp``, which it opens proxy connections with, connect to the
   loopback port of a docs network name (``example.org``, ``proxy.corp``, ...) whatever
   port the example asks for; TLS still checks the name the example used. Any other name
   that is not loopback fails to resolve (``socket.getaddrinfo``), so no example can reach
   the real internet.
2. **Trust.** ``certifi.where()`` names the docs network's CA instead of certifi's bundle:
   ``verify=True`` (the default) then trusts the origin's certificate, which is issued for
   those names. Host names are still checked. ``REQUESTS_CA_BUNDLE`` and ``CURL_CA_BUNDLE``
   are unset, so that requests (``h2any.contrib``'s examples) trusts certifi's, too.
3. **Backend.** ``anyio.run(main)`` runs on ``BACKEND`` (``asyncio`` or ``trio``) unless the
   example names one; ``BACKEND=sync`` changes nothing.
4. **hyper.** ``import hyper`` gives what the import table of
   ``docs/migrating-from-hyper.md`` says (read from the page, row by row):
   ``hyper.HTTP20Connection`` is ``h2any.sync.HTTP20Connection``,
   ``hyper.contrib.HTTP20Adapter`` is ``h2any.contrib.HTTP20Adapter``, and so on. hyper
   itself no longer imports on Python 3.10+, so this runs hyper code on the shim: the
   migration the page promises.

Then the example runs as ``__main__``. Afterwards, an exception nobody could catch (in
``__del__``, a ``ResourceWarning`` turned error by ``-W error``) or an h2any loop thread
still running fails the run: examples must leave nothing behind.
"""

from __future__ import annotations

import functools
import gc
import importlib
import json
import logging
import os
import re
import runpy
import selectors
import signal
import socket
import sys
import threading
import time
import types
from typing import Any

_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


def _install_names(hosts: dict[str, int]) -> None:
    import anyio

    real_connect_tcp = anyio.connect_tcp

    @functools.wraps(real_connect_tcp)
    async def connect_tcp(remote_host: Any, remote_port: int, **kwargs: Any) -> Any:
        name = str(remote_host)
        if name not in hosts:
            return await real_connect_tcp(remote_host, remote_port, **kwargs)
        if kwargs.get("ssl_context") is not None and kwargs.get("tls_hostname") is None:
            kwargs["tls_hostname"] = name  # TLS still checks the name the example used
        return await real_connect_tcp("127.0.0.1", hosts[name], **kwargs)

    anyio.connect_tcp = connect_tcp

    import h2any._socket

    real_h2any_connect = h2any._socket.connect_tcp

    @functools.wraps(real_h2any_connect)
    async def h2any_connect(host: str, port: int, buffer_size: int) -> Any:
        if host in hosts:  # TLS checks the origin's name: h2any passes it on separately
            return await real_h2any_connect("127.0.0.1", hosts[host], buffer_size)
        return await real_h2any_connect(host, port, buffer_size)

    h2any._socket.connect_tcp = h2any_connect
    real_getaddrinfo = socket.getaddrinfo

    @functools.wraps(real_getaddrinfo)
    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode("ascii") if isinstance(host, bytes) else host
        if name is None or name in _LOOPBACK or name.startswith("127."):
            return real_getaddrinfo(host, port, *args, **kwargs)
        raise socket.gaierror(socket.EAI_NONAME, f"{name!r} is not in the docs network")

    socket.getaddrinfo = getaddrinfo


def _install_trust(ca_path: str) -> None:
    import certifi

    certifi.where = lambda: ca_path
    # requests prefers these to certifi's bundle; the machine's would not hold the docs CA.
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(name, None)


def _install_backend(backend: str) -> None:
    import anyio

    real_run = anyio.run

    @functools.wraps(real_run)
    def run(func: Any, *args: Any, backend: str = backend, **kwargs: Any) -> Any:
        return real_run(func, *args, backend=backend, **kwargs)

    anyio.run = run  # type: ignore[assignment]


_HYPER_PAGE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "docs", "migrating-from-hyper.md"
)
# A row of the page's import table: | `hyper.dotted.Name` | `h2any.dotted.name` | ...
_HYPER_ROW = re.compile(r"^\|\s*`(hyper(?:\.\w+)+)`\s*\|\s*`(h2any(?:\.\w+)+)`\s*\|", re.M)


def hyper_names(page: str = _HYPER_PAGE) -> dict[str, str]:
    """The import table of ``docs/migrating-from-hyper.md``: hyper's name -> h2any's."""
    with open(page, encoding="utf-8") as file:
        return dict(_HYPER_ROW.findall(file.read()))


def _resolve(target: str) -> Any:
    """``h2any.sync.HTTP20Connection`` -> the object (importing its module on first use)."""
    module_name, _, attribute = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except ModuleNotFoundError:
        return importlib.import_module(target)


def _install_hyper() -> None:
    """``import hyper`` (and ``hyper.contrib``, ``hyper.http20.exceptions``, ...) gives the
    h2any names of the page's import table, each resolved on first use (so that an example
    that never touches ``hyper.contrib`` does not import requests)."""
    modules: dict[str, types.ModuleType] = {}
    names: dict[str, dict[str, str]] = {}
    for hyper_name, target in hyper_names().items():
        module_name, _, attribute = hyper_name.rpartition(".")
        names.setdefault(module_name, {})[attribute] = target
        parts = module_name.split(".")
        for depth in range(1, len(parts) + 1):
            names.setdefault(".".join(parts[:depth]), {})

    for module_name, attributes in names.items():
        module = types.ModuleType(module_name)
        module.__path__ = []  # a package: its submodules import

        def __getattr__(name: str, _attributes: dict[str, str] = attributes) -> Any:
            if name in _attributes:
                return _resolve(_attributes[name])
            raise AttributeError(name)

        module.__getattr__ = __getattr__  # type: ignore[method-assign]
        modules[module_name] = module
        sys.modules[module_name] = module
    for module_name, module in modules.items():
        parent, _, leaf = module_name.rpartition(".")
        if parent:
            setattr(modules[parent], leaf, module)


def _prepare() -> None:
    """What every example gets: the docs network, and ``import hyper``."""
    network = json.loads(os.environ["H2ANY_DOCS_NETWORK"])
    _install_names(network["hosts"])
    _install_trust(network["ca"])
    _install_hyper()
    # Import now what most examples import, so that a fork server's children share it.
    import trio  # noqa: F401

    import h2any.testing  # noqa: F401


def run_example(path: str, backend: str) -> int:
    """Run the example at ``path`` as ``__main__``; 0 if it ran clean, else 1."""
    if backend != "sync":
        _install_backend(backend)
    uncaught: list[str] = []

    def unraisable(info: Any) -> None:
        uncaught.append(
            f"{info.err_msg or 'Exception ignored in'}: {info.object!r}: "
            f"{info.exc_type.__name__}: {info.exc_value}"
        )

    sys.unraisablehook = unraisable
    # -X dev puts asyncio in debug mode, which warns of callbacks slower than 0.1 s: a
    # matter of machine load, not of the example. Errors are still logged.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    sys.argv = [path]
    sys.path[0] = os.path.dirname(os.path.abspath(path))
    runpy.run_path(path, run_name="__main__")
    gc.collect()
    left = [t.name for t in threading.enumerate() if t.name.startswith("h2any-") and t.is_alive()]
    for problem in uncaught:
        print(problem, file=sys.stderr)
    if left:
        print(f"h2any threads left running: {left}", file=sys.stderr)
    return 1 if uncaught or left else 0


# -- the fork server ----------------------------------------------------------------------
#
# Starting Python and importing anyio, trio and h2any takes about half a second; running a
# typical example, a tenth of that. So the test starts this module once as a fork server:
# it prepares and imports everything, then forks a child for each example it is sent.
# Each child is a fresh copy of that process -- nothing one example does is seen by
# another -- and exits through the interpreter's normal shutdown, as `python example.py`
# would.
#
# Protocol: stdin carries one JSON job per line, {"id", "script", "backend", "cwd",
# "stdout", "stderr", "env", "timeout"}; stdout answers {"id", "returncode"} per job,
# returncode None if the job overran its timeout and was killed. The server has no threads
# (fork and threads do not mix): one select() loop waits for jobs, for SIGCHLD (through a
# wakeup pipe) and for the nearest deadline. EOF on stdin: finish the jobs, then exit.


class _Child(Exception):
    """Raised in a forked child to leave the server loop with the example's exit code."""

    def __init__(self, code: int) -> None:
        self.code = code


def _start(job: dict[str, Any], close: list[int]) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    # The child: detach from the server, then run the example.
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for fd in close:
        os.close(fd)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        out = os.open(job[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, fd)
        os.close(out)
    os.chdir(job["cwd"])
    os.environ.update(job["env"])
    raise _Child(run_example(job["script"], job["backend"]))


def serve() -> int:
    _prepare()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    children: dict[int, tuple[int, float]] = {}  # pid -> (job id, deadline)
    overdue: set[int] = set()
    pending, eof = b"", False

    def answer(job_id: int, returncode: int | None) -> None:
        os.write(1, json.dumps({"id": job_id, "returncode": returncode}).encode() + b"\n")

    while not (eof and not children):
        now = time.monotonic()
        timeout = min((d for _, d in children.values()), default=now + 3600) - now
        for key, _ in selector.select(max(timeout, 0)):
            if key.fd == wake_r:
                os.read(wake_r, 4096)
                continue
            data = os.read(0, 65536)
            if not data:
                eof = True
                selector.unregister(0)
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                job = json.loads(line)
                pid = _start(job, [wake_r, wake_w])
                children[pid] = (job["id"], time.monotonic() + job["timeout"])
        while children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                break
            job_id, _ = children.pop(pid)
            code = None if pid in overdue else os.waitstatus_to_exitcode(status)
            overdue.discard(pid)
            answer(job_id, code)
        now = time.monotonic()
        for pid, (_, deadline) in children.items():
            if deadline <= now and pid not in overdue:
                overdue.add(pid)
                os.kill(pid, signal.SIGKILL)
    return 0


def main(argv: list[str]) -> int:
    if argv[1:] == ["serve"]:
        try:
            return serve()
        except _Child as child:
            return child.code
    _prepare()
    return run_example(argv[1], argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
