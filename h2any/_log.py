"""What h2any tells the ``logging`` module: the loggers, and one function per event.

Loggers (children of ``"h2any"``, which has only a ``NullHandler``, so nothing shows unless
the application configures logging -- not even warnings on stderr):

* ``h2any.connection`` -- INFO: a connection opened (origin, HTTP/2, TLS or h2c, proxy,
  engine, event loop) and closed (why); GOAWAY received (error code, last stream id); WARNING:
  the peer broke the protocol, or said goodbye with an error code. DEBUG: how the engine
  was chosen.
* ``h2any.request`` -- DEBUG: one line per request (method, origin, path; never the query
  string, header values or bodies).
* ``h2any.client`` -- INFO: a request retried on a fresh connection, and why.
* ``h2any.sync`` -- DEBUG: the event loop a blocking facade's loop thread runs.

Cost when nothing listens: the connection-level events happen once per connection; the
request line is guarded by ``isEnabledFor(DEBUG)`` (one dictionary look-up per request).

Nothing secret is logged: URLs go through `mask_url` and lose their query string, error
messages are h2any's own (which never quote passwords), header values and bodies are never
logged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, Final

from ._config import Origin, mask_url
from ._exceptions import ConnectionTerminated, HTTPVersionError, ProtocolError

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = (
    "UVLOOP_VARIABLE",
    "client_logger",
    "connection_closed",
    "connection_logger",
    "connection_opened",
    "goaway_received",
    "loop_thread_chosen",
    "request_debug_enabled",
    "request_logger",
    "request_started",
    "retrying",
    "safe_url",
    "stream_protocol_error",
    "uvloop_turned_off",
)

DEBUG: Final = logging.DEBUG

logger: Final = logging.getLogger("h2any")
# A library's only handler: without it, Python's last-resort handler would print h2any's
# warnings on stderr in programs that never configured logging.
logger.addHandler(logging.NullHandler())
connection_logger: Final = logging.getLogger("h2any.connection")
request_logger: Final = logging.getLogger("h2any.request")
client_logger: Final = logging.getLogger("h2any.client")
sync_logger: Final = logging.getLogger("h2any.sync")

# The environment variables that pin h2any's choices (docs/logging.md): H2ANY_ENGINE is read
# by _engine.get_engine; this one keeps the blocking facade's loop thread off uvloop.
UVLOOP_VARIABLE: Final = "H2ANY_UVLOOP"

# Bound once: the hot path's only cost when DEBUG is off (logging caches the answer).
request_debug_enabled: Final = request_logger.isEnabledFor

_ERROR_NAMES: Final = {
    0x0: "NO_ERROR",
    0x1: "PROTOCOL_ERROR",
    0x2: "INTERNAL_ERROR",
    0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT",
    0x5: "STREAM_CLOSED",
    0x6: "FRAME_SIZE_ERROR",
    0x7: "REFUSED_STREAM",
    0x8: "CANCEL",
    0x9: "COMPRESSION_ERROR",
    0xA: "CONNECT_ERROR",
    0xB: "ENHANCE_YOUR_CALM",
    0xC: "INADEQUATE_SECURITY",
    0xD: "HTTP_1_1_REQUIRED",
}


def error_name(code: int) -> str:
    """``"ENHANCE_YOUR_CALM (0xb)"`` for an HTTP/2 error code."""
    return f"{_ERROR_NAMES.get(code, 'UNKNOWN')} (0x{code:x})"


def safe_url(url: str, origin: Origin | None = None) -> str:
    """``url`` (absolute, or a path on ``origin``) as it may be logged: the password
    masked, the query string and fragment left out (they may carry tokens)."""
    if origin is not None and url.startswith("/"):
        url = f"{origin}{url}"
    cut = min((i for i in (url.find("?"), url.find("#")) if i >= 0), default=-1)
    if cut >= 0:
        url = url[:cut] + "?..."
    return mask_url(url)


def engine_label(engine: Engine) -> str:
    """``"jh2 5.0.15"``."""
    return f"{engine.name} {engine.version}"


def event_loop_label() -> str:
    """The running event loop: ``"asyncio"``, ``"asyncio (uvloop)"`` or ``"trio"``."""
    loop = asyncio._get_running_loop()
    if loop is not None:
        return "asyncio (uvloop)" if type(loop).__module__.startswith("uvloop") else "asyncio"
    lowlevel = getattr(sys.modules.get("trio"), "lowlevel", None)
    if lowlevel is not None and lowlevel.in_trio_run():
        return "trio"
    return "an unknown event loop"


def connection_opened(origin: Origin, engine: Engine, proxy: Any) -> None:
    """INFO: a connection is ready (the server's SETTINGS arrived)."""
    log = connection_logger
    if not log.isEnabledFor(logging.INFO):
        return
    security = "TLS" if origin.scheme == "https" else "h2c"
    via = f" via proxy {safe_url(str(proxy))}" if proxy is not None else ""
    log.info(
        "connection to %s open: HTTP/2, %s%s, engine %s, %s",
        origin,
        security,
        via,
        engine_label(engine),
        event_loop_label(),
    )
    if log.isEnabledFor(DEBUG):
        pinned = os.environ.get("H2ANY_ENGINE")
        rule = (
            f"H2ANY_ENGINE={pinned}"
            if pinned
            else "H2ANY_ENGINE unset: jh2 when it is installed and supported, else h2"
        )
        log.debug(
            "connection to %s: engine %s (engine= argument, else %s)",
            origin,
            engine_label(engine),
            rule,
        )


def connection_closed(origin: Origin, error: BaseException | None, started: bool) -> None:
    """INFO: a connection ended (WARNING when the peer broke the protocol or said goodbye
    with an error code). ``started``: it had been open (else it failed to start)."""
    log = connection_logger
    # (A server without HTTP/2 is no fault: the Client falls back to HTTP/1.1.)
    peer_fault = (isinstance(error, ProtocolError) and not isinstance(error, HTTPVersionError)) or (
        isinstance(error, ConnectionTerminated) and error.error_code != 0
    )
    level = logging.WARNING if peer_fault else logging.INFO
    if not log.isEnabledFor(level):
        return
    reason = " ".join(str(error).split()) if error is not None else "closed"
    if started:
        log.log(level, "connection to %s closed: %s", origin, reason)
    else:
        log.log(level, "connection to %s not opened: %s", origin, reason)


def goaway_received(
    origin: Origin,
    error_code: int | None,
    last_stream_id: int | None,
    additional_data: bytes | None,
) -> None:
    """INFO (WARNING with an error code): the server sent GOAWAY."""
    code = int(error_code or 0)
    level = logging.WARNING if code else logging.INFO
    log = connection_logger
    if not log.isEnabledFor(level):
        return
    data = ""
    if additional_data:
        text = bytes(additional_data[:100]).decode("ascii", "replace")
        data = f", debug data {text!r}"
    log.log(
        level,
        "GOAWAY from %s: %s, last stream id %s%s",
        origin,
        error_name(code),
        "(none)" if last_stream_id is None else last_stream_id,
        data,
    )


def stream_protocol_error(origin: Origin, stream_id: int, problem: str) -> None:
    """WARNING: a malformed response; h2any resets its stream (the connection carries on)."""
    log = connection_logger
    if log.isEnabledFor(logging.WARNING):
        text = " ".join(problem.split())
        if len(text) > 200:
            text = text[:200] + "..."
        log.warning(
            "stream %d on %s reset (PROTOCOL_ERROR): malformed response: %s",
            stream_id,
            origin,
            text,
        )


def request_started(
    origin: Origin,
    method: str,
    url: str,
    body_length: int | None,
    streamed: bool,
    kind: str = "",
) -> None:
    """DEBUG: one line per request (call only when ``request_debug_enabled(DEBUG)``);
    ``kind``: ``"full duplex"``, ``"websocket"``, or empty for a plain request."""
    if kind:
        body = f" ({kind})"
    elif streamed:
        body = ", body streamed"
    elif body_length:
        body = f", body {body_length} bytes"
    else:
        body = ""
    request_logger.debug("%s %s%s", method, safe_url(url, origin), body)


def retrying(
    method: str, origin: Origin, target: str, attempt: int, error: BaseException, delay: float
) -> None:
    """INFO: a request is tried again on a fresh connection."""
    log = client_logger
    if not log.isEnabledFor(logging.INFO):
        return
    reason = " ".join(str(error).split()) or type(error).__name__
    wait = f" in {delay:.3g} s" if delay else ""
    log.info(
        "retrying %s %s%s (attempt %d failed: %s)",
        method,
        safe_url(target, origin),
        wait,
        attempt,
        reason,
    )


def uvloop_turned_off() -> bool:
    """Whether ``H2ANY_UVLOOP`` says not to use uvloop (``0``, ``false``, ``no``, ``off``)."""
    value = os.environ.get(UVLOOP_VARIABLE, "").strip().lower()
    return value in ("0", "false", "no", "off")


def loop_thread_chosen(backend: str, options: dict[str, Any]) -> None:
    """DEBUG: the event loop a blocking facade's loop thread runs, and why."""
    if not sync_logger.isEnabledFor(DEBUG):
        return
    if options.get("use_uvloop"):
        why = f"uvloop is installed; {UVLOOP_VARIABLE}=0 turns it off"
        sync_logger.debug("loop thread: asyncio on uvloop (%s)", why)
    elif backend == "asyncio":
        why = (
            f"{UVLOOP_VARIABLE}={os.environ.get(UVLOOP_VARIABLE)}"
            if uvloop_turned_off()
            else "uvloop is not installed"
        )
        sync_logger.debug("loop thread: asyncio's own loop (%s)", why)
    else:
        sync_logger.debug("loop thread: %s", backend)
