"""The HTTP/2 state machine as h2any drives it: stock ``h2``, or ``jh2`` when installed.

``jh2`` is an API-compatible fork of ``h2`` with compiled parts (the ``speed`` extra). The
engine is chosen per connection: ``engine="h2"`` / ``"jh2"``, else the ``H2ANY_ENGINE``
environment variable, else ``jh2`` if it imports and is a version h2any supports, and ``h2``
otherwise. Each engine gets the same subclass of its ``H2Connection`` with the fixes h2any
needs.

Only the connection task ever calls into an engine's connection.

The boundary
------------

The rest of h2any sees an engine's connection only as `EngineConnection`: the part of
h2's ``H2Connection`` API that it calls, plus what this module adds (``send_request_headers``,
``send_data_frame``, ``outbound_size``, ``reset_by_us`` ...). Everything that reaches into
the engine's private members stays in this module, in the overrides below; each says why it
exists and which private members it relies on. Those members are checked once, when an
engine is first chosen (``_check_version``, ``_check_members``): an engine older than
``SUPPORTED`` says, or one that lacks what the overrides use, is refused with a
``ValueError`` that names the versions h2any is tested with -- not an ``AttributeError`` in
the middle of a read.

The versions in ``SUPPORTED`` are the ones pyproject declares and ``nox -s engines`` (and
``.ci/run``, for the oldest h2) tests.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import struct
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from types import ModuleType
from typing import TYPE_CHECKING, Any, Final, Protocol

from ._hpack_cache import caching_coders, caching_compiled_coders

__all__ = (
    "SUPPORTED",
    "Engine",
    "EngineConnection",
    "EngineDecoder",
    "EngineFrameBuffer",
    "EngineSettingCodes",
    "EngineSettings",
    "EngineSettingsFactory",
    "EngineStateMachine",
    "get_engine",
)

# The engine versions h2any supports: (oldest release, first major release not supported),
# as pyproject declares them ("h2>=4.1,<5" in the dependencies, "jh2>=5,<6" in the extras).
SUPPORTED: Final[dict[str, tuple[tuple[int, ...], tuple[int, ...]]]] = {
    "h2": ((4, 1), (5,)),
    "jh2": ((5,), (6,)),
}

# Frame types and flags (RFC 9113 section 6).
_DATA = 0x0
_HEADERS = 0x1
_RST_STREAM = 0x3
_WINDOW_UPDATE = 0x8
_CONTINUATION = 0x9
_END_STREAM = 0x1
_END_HEADERS = 0x4
_PADDED = 0x8
_PRIORITY = 0x20

# A frame header (RFC 9113 section 4.1): 24-bit length (as 16 + 8), type, flags, stream ID.
_unpack_frame_header = struct.Struct(">HBBBL").unpack_from
_unpack_increment = struct.Struct(">L").unpack_from
# Payloads up to this size are copied out of the read buffer by slicing (two small copies
# beat a memoryview's set-up); larger ones through a memoryview (one copy).
_SMALL_PAYLOAD = 2048
# Consecutive DATA frames of one stream are joined into one of up to about this size.
_COALESCE_LIMIT = 1 << 20


def _frame_header(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    """The 9 bytes that open an HTTP/2 frame (RFC 9113 section 4.1)."""
    return (length << 48 | kind << 40 | flags << 32 | stream_id).to_bytes(9, "big")


# ------------------------------------------------------------------ what the core sees


class EngineSettings(Protocol):
    """One side's settings (``local_settings``, ``remote_settings``), as far as h2any reads
    them."""

    @property
    def header_table_size(self) -> int: ...

    @property
    def max_concurrent_streams(self) -> int: ...

    @property
    def enable_connect_protocol(self) -> int: ...


class EngineSettingsFactory(Protocol):
    """The engine's ``Settings`` class: a client's local settings with h2any's values."""

    def __call__(self, *, client: bool, initial_values: dict[int, int]) -> EngineSettings: ...


class EngineSettingCodes(Protocol):
    """The engine's ``SettingCodes``: the settings h2any sends (RFC 9113 section 6.5.2)."""

    ENABLE_PUSH: int
    MAX_CONCURRENT_STREAMS: int
    INITIAL_WINDOW_SIZE: int
    MAX_FRAME_SIZE: int
    MAX_HEADER_LIST_SIZE: int


class EngineDecoder(Protocol):
    """The connection's HPACK decoder, as far as h2any configures it."""

    max_header_list_size: int
    max_allowed_table_size: int


class EngineFrameBuffer(Protocol):
    """The connection's frame buffer: frames it took out as stream errors, not yet handled
    (``(stream_id, what was wrong)``; the core empties the list), and whether it joins
    consecutive DATA frames of one stream into one (on unless the core turns it off)."""

    stream_errors: list[tuple[int, str]]
    coalesce: bool


class EngineStateMachine(Protocol):
    """The connection's state machine (``state.name`` is h2's ``ConnectionState`` name)."""

    @property
    def state(self) -> Enum: ...


class EngineConnection(Protocol):
    """What h2any uses of an engine's connection (``Engine.new_connection()``): h2's
    ``H2Connection`` API as far as h2any calls it, and what this module adds to it.

    Only the connection task touches it.
    """

    # Set by the connection task.
    frame_observer: Callable[[str, Any], None] | None
    """Called as ``frame_observer("send" | "recv", frame)`` for each frame (debugging)."""
    local_settings: EngineSettings
    absorbed: int
    """DATA bytes that arrived on streams h2any reset, to return to the connection window
    (the connection task reads and zeroes it after each read)."""
    outbound_open_count: int
    """The connection task's count of open streams (h2's own count scans every stream)."""
    receive_shortcut: bool
    """Whether a response's HEADERS and DATA take the short way (tests compare both)."""

    @property
    def remote_settings(self) -> EngineSettings: ...

    @property
    def decoder(self) -> EngineDecoder: ...

    @property
    def frame_buffer(self) -> EngineFrameBuffer: ...

    @property
    def reset_by_us(self) -> _RecentSet:
        """Streams h2any reset: late frames on them are ignored, not answered."""
        ...

    @property
    def state_machine(self) -> EngineStateMachine: ...

    @property
    def max_outbound_frame_size(self) -> int: ...

    @property
    def outbound_flow_control_window(self) -> int: ...

    # h2's own API.
    def initiate_connection(self) -> None: ...

    def receive_data(self, data: bytes) -> list[Any]: ...

    def data_to_send(self) -> bytes: ...

    def get_next_available_stream_id(self) -> int: ...

    def send_headers(
        self, stream_id: int, headers: Sequence[tuple[bytes, bytes]], end_stream: bool = False
    ) -> None: ...

    def send_data(
        self, stream_id: int, data: bytes | memoryview, end_stream: bool = False
    ) -> None: ...

    def end_stream(self, stream_id: int) -> None: ...

    def local_flow_control_window(self, stream_id: int) -> int: ...

    def increment_flow_control_window(self, increment: int, stream_id: int | None = None) -> None:
        """WINDOW_UPDATE for the connection (``stream_id`` None) or one stream."""
        ...

    def reset_stream(self, stream_id: int, error_code: int = 0) -> None: ...

    def ping(self, opaque_data: bytes) -> None: ...

    def close_connection(self, error_code: int = 0) -> None: ...

    # Added by h2any (below).
    def send_request_headers(
        self, stream_id: int, headers: Sequence[tuple[bytes, bytes]], end_stream: bool
    ) -> None:
        """``send_headers`` for a new request stream, framed here (faster)."""
        ...

    def send_data_frame(self, stream_id: int, data: memoryview) -> None:
        """``send_data`` without END_STREAM or padding, framed here (faster)."""
        ...

    def outbound_size(self) -> int:
        """The number of bytes queued for the socket (what ``data_to_send()`` would return)."""
        ...

    def has_data_to_send(self) -> bool: ...

    def forget_stream(self, stream_id: int) -> None:
        """Drop a closed stream from the engine's table."""
        ...

    def reset_closed_or_open(self, stream_id: int, error_code: int) -> None:
        """RST_STREAM even if the engine considers the stream closed already."""
        ...

    def set_max_inbound_frame_size(self, size: int) -> None: ...


@dataclass(frozen=True)
class Engine:
    """The pieces of one HTTP/2 implementation that h2any uses."""

    name: str
    version: str
    events: ModuleType
    Settings: EngineSettingsFactory
    SettingCodes: EngineSettingCodes
    NeverIndexedHeaderTuple: Callable[[bytes, bytes], tuple[bytes, bytes]]
    ProtocolError: type[Exception]
    FlowControlError: type[Exception]
    StreamClosedError: type[Exception]
    connection_class: Callable[[Any], EngineConnection]
    configuration_class: Callable[..., Any]

    def new_connection(self) -> EngineConnection:
        """A client connection of this engine, configured the way h2any drives it."""
        config = self.configuration_class(
            client_side=True,
            header_encoding=None,
            # h2any builds and checks request headers itself (lowercase names, no
            # connection-specific fields, no CR/LF/NUL); h2's own pass over them costs ~15%
            # of a small request.
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            # Response headers are checked by the connection task instead (``_headers.py``),
            # so that a malformed response fails only its stream (RFC 9113 section 8.1.1),
            # as a stream error, where h2 would fail the whole connection.
            validate_inbound_headers=False,
            # h2's inbound normalisation only joins split Cookie fields (a server's concern:
            # responses carry none; a pushed request's are joined by h2any), at the cost
            # of a generator step per response header field.
            normalize_inbound_headers=False,
        )
        return self.connection_class(config)


_ENGINES: dict[str, Engine] = {}


def get_engine(name: str | None = None) -> Engine:
    """The engine for ``name`` ("h2", "jh2"), or the default (see the module docstring).

    Raises:
        ValueError: ``name`` is neither, the engine is not installed, or h2any does not
            support the installed version (the message names the versions it does).
    """
    choice = (name or os.environ.get("H2ANY_ENGINE") or "auto").lower()
    if choice == "auto":
        engine = _ENGINES.get(choice)
        if engine is None:
            try:
                engine = get_engine("jh2")
            except ValueError:  # not installed, or a version h2any does not support
                engine = get_engine("h2")
            _ENGINES[choice] = engine
        return engine
    if choice not in ("h2", "jh2"):
        raise ValueError(f"engine must be 'h2' or 'jh2', not {choice!r}")
    engine = _ENGINES.get(choice)
    if engine is None:
        try:
            engine = _ENGINES[choice] = _build(choice)
        except ImportError as exc:
            raise ValueError(
                f"engine {choice!r} is not installed (pip install 'h2any[speed]' for jh2)"
            ) from exc
        except AttributeError as exc:  # a public name moved: not a version h2any knows
            raise ValueError(
                f"{choice} {_installed_version(choice)} is not one h2any can drive ({exc}); "
                f"h2any is tested with {_requirement(choice)}"
            ) from exc
    return engine


def _requirement(package: str) -> str:
    """The versions of ``package`` h2any supports, as a pip requirement ("h2>=4.1,<5")."""
    oldest, beyond = SUPPORTED[package]
    return f"{package}>={'.'.join(map(str, oldest))},<{'.'.join(map(str, beyond))}"


def _release(version: str) -> tuple[int, ...]:
    """The release numbers that open ``version`` ("4.1.0rc1" -> (4, 1, 0))."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(part) for part in match.group().split(".")) if match else ()


def _installed_version(package: str) -> str:
    """The installed version of ``package``, from its metadata ("?" if it has none)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(importlib.import_module(package), "__version__", "?"))


# ------------------------------------------------------------------ the engine's internals
#
# What follows departs from stock h2 where it is wrong for a client or slow on the hot path,
# and so relies on h2's private members; each override names those it uses. Overrides that
# need nothing of the engine but the connection's own members are here at module level
# (_ConnectionFixes); those that use the engine's classes (frames, states, exceptions) are in
# _build, which binds those classes as closure constants: the per-frame paths then look
# nothing up.

# The private (or undocumented) members the overrides use, by the object that has them:
# _check_members refuses an engine that lacks one, once, when it is first chosen. (The frame
# buffer's unparsed bytes, under ``_data`` or ``data``, are checked there separately.)
_RELIED_ON: Final = {
    "connection": ("_decode_headers",),
    "H2Connection": (
        "_data_to_send",
        "_frame_dispatch_table",
        "_begin_new_stream",
        "_closed_streams",
        "_inbound_flow_control_window_manager",
        "_receive_frame",
        "_receive_goaway_frame",
        "_handle_data_on_closed_stream",
        "_stream_is_closed_by_reset",
        "_stream_is_closed_by_end",
        "_prepare_for_sending",
        "incoming_buffer",
        "encoder",
        "decoder",
        "max_inbound_frame_size",
    ),
    "H2Stream": (
        "_authority",
        "request_method",
        "receive_data",
        "receive_headers",
        "closed_by",
        "outbound_flow_control_window",
    ),
    "FrameBuffer": ("_headers_buffer", "max_frame_size"),
    "StreamClosedError": ("_events",),
    "Flags": ("_valid_flags", "_flags"),
}

if TYPE_CHECKING:
    _EngineH2Connection = Any  # the engine's H2Connection: untyped, chosen at run time
else:
    _EngineH2Connection = object


class _ConnectionFixes(_EngineH2Connection):  # type: ignore[misc]
    """The departures from the engine's ``H2Connection`` that use none of its classes; the
    subclass built per engine (``_build``) puts this first in its bases."""

    reset_by_us: _RecentSet
    absorbed: int
    outbound_open_count: int
    frame_observer: Callable[[str, Any], None] | None
    receive_shortcut: bool
    _in_receive: bool

    def __init__(self, config: Any) -> None:
        super().__init__(config=config)
        # After we reset a stream, the peer may legitimately keep sending frames that were
        # already in flight (RFC 9113 section 5.4.2: we MUST ignore them). h2 answers each
        # late frame with yet another RST_STREAM, and nghttpd drops the whole connection
        # after a few dozen of those. We swallow those replies for streams *we* reset
        # (_prepare_for_sending), and hand the late DATA bytes back to the connection task
        # (``absorbed``, _handle_data_on_closed_stream) so it can return them to the
        # connection window at once instead of waiting for h2's own late bookkeeping.
        self.reset_by_us = _RecentSet(10_000)
        self.absorbed = 0
        self._in_receive = False  # set by _receive_frame while h2 handles a frame
        self.frame_observer = None
        self.outbound_open_count = 0
        self.receive_shortcut = True  # _receive_on_stream (the tests compare it with off)

    @property
    def open_outbound_streams(self) -> int:
        # h2 counts these by scanning every stream on each new request (6% of a small
        # request). The connection task keeps the count instead and prunes closed streams
        # itself (``forget_stream``), which is what h2's scan also did.
        # Relies on: h2 reading this property (send_headers) for the peer's stream limit.
        return self.outbound_open_count

    def forget_stream(self, stream_id: int) -> None:
        """Drop a closed stream from h2's table, remembering how it closed (as h2 does)."""
        # What h2's open-stream scan (above) did as it went, once the stream is closed.
        # Relies on: ``streams``, ``_closed_streams`` and the stream's ``closed_by``.
        stream = self.streams.get(stream_id)
        if stream is not None and stream.closed:
            del self.streams[stream_id]
            self._closed_streams[stream_id] = stream.closed_by

    def _prepare_for_sending(self, frames: Any) -> None:
        # Drops h2's RST_STREAM replies to late frames on streams we reset (see __init__),
        # and shows each outgoing frame to the frame observer.
        # Relies on: h2 sending every frame through ``_prepare_for_sending``.
        if self._in_receive and self.reset_by_us:
            frames = [
                f for f in frames if not (f.type == _RST_STREAM and f.stream_id in self.reset_by_us)
            ]
        if self.frame_observer is not None:
            for frame in frames:
                self.frame_observer("send", frame)
        super()._prepare_for_sending(frames)

    def _handle_data_on_closed_stream(self, events: Any, exc: Any, frame: Any) -> Any:
        # Late DATA on a stream we reset: no reply (see __init__), and its bytes go back to
        # the connection window through ``absorbed``.
        # Relies on: h2 calling ``_handle_data_on_closed_stream`` for DATA on a closed
        # stream, and StreamClosedError's ``_events``.
        if frame.stream_id in self.reset_by_us:
            self.absorbed += frame.flow_controlled_length
            return [], events + exc._events
        return super()._handle_data_on_closed_stream(events, exc, frame)

    def outbound_size(self) -> int:
        """The number of bytes queued for the socket (what ``data_to_send()`` would return)."""
        # Relies on: ``_data_to_send``, h2's outbound buffer (``data_to_send()`` would copy
        # it out and empty it).
        return len(self._data_to_send)

    def has_data_to_send(self) -> bool:
        """Whether anything is queued for the socket."""
        return bool(self._data_to_send)  # Relies on: ``_data_to_send``, as outbound_size.

    def set_max_inbound_frame_size(self, size: int) -> None:
        """Refuse inbound frames longer than ``size`` (the MAX_FRAME_SIZE h2any sends)."""
        # Checked against each frame header as soon as it arrives, so a bogus length fails
        # at once instead of waiting for megabytes that never come.
        # Relies on: h2 copying ``max_inbound_frame_size`` into its frame buffer on each
        # ``receive_data`` (h2 itself sets it only when our SETTINGS are acknowledged).
        self.max_inbound_frame_size = size


def _check_version(package: str, version: str) -> None:
    """Refuse an engine older than SUPPORTED says (a version that is not a release number
    is left to _check_members)."""
    release = _release(version)
    if release and release < SUPPORTED[package][0]:
        requirement = _requirement(package)
        raise ValueError(
            f"{package} {version} is too old for h2any, which needs {requirement} "
            f"(pip install --upgrade '{requirement}')"
        )


def _check_members(package: str, version: str, probes: dict[str, Any]) -> None:
    """Refuse an engine that lacks a private member the overrides use (``probes``: the
    connection module, and an instance of each class named in _RELIED_ON, or None if it
    could not be made)."""
    missing = [
        f"{owner}.{member}"
        for owner, members in _RELIED_ON.items()
        if probes[owner] is not None  # None: what makes one is missing (and reported)
        for member in members
        if not hasattr(probes[owner], member)
    ]
    buffer = probes["FrameBuffer"]
    if not hasattr(buffer, "_data") and not hasattr(buffer, "data"):
        missing.append("FrameBuffer._data")
    if missing:
        raise ValueError(
            f"{package} {version} lacks what h2any relies on ({', '.join(missing)}); "
            f"h2any is tested with {_requirement(package)}"
        )


def _build(package: str) -> Engine:
    version = _installed_version(package)  # ImportError: not installed
    _check_version(package, version)

    def module(name: str) -> Any:
        return importlib.import_module(f"{package}.{name}")

    def hyperframe(name: str) -> Any:
        # Stock h2 uses the separate hyperframe package; jh2 bundles its own copy.
        return importlib.import_module(
            f"hyperframe.{name}" if package == "h2" else f"{package}.hyperframe.{name}"
        )

    connection_module = module("connection")
    stream_module = module("stream")
    frame_module = hyperframe("frame")
    hpack = importlib.import_module("hpack") if package == "h2" else module("hpack")
    exceptions = module("exceptions")
    configuration_class = module("config").H2Configuration
    H2Connection = connection_module.H2Connection
    FrameBuffer = module("frame_buffer").FrameBuffer
    Flags = hyperframe("flags").Flags
    DataFrame = frame_module.DataFrame
    HeadersFrame = frame_module.HeadersFrame
    WindowUpdateFrame = frame_module.WindowUpdateFrame
    WindowUpdated = module("events").WindowUpdated
    StreamClosedError = exceptions.StreamClosedError
    EngineProtocolError = exceptions.ProtocolError
    H2Stream = stream_module.H2Stream
    stock_receive_headers = H2Stream.receive_headers
    stock_begin_new_stream = H2Connection._begin_new_stream
    client_stream_ids = connection_module.AllowedStreamIDs.ODD

    probe = H2Connection(config=configuration_class(client_side=True))
    begin_new_stream = getattr(probe, "_begin_new_stream", None)
    _check_members(
        package,
        version,
        {
            "connection": connection_module,
            "H2Connection": probe,
            "H2Stream": begin_new_stream(1, client_stream_ids) if begin_new_stream else None,
            "FrameBuffer": FrameBuffer(server=False),
            "StreamClosedError": StreamClosedError(1),
            "Flags": Flags(DataFrame.defined_flags),
        },
    )
    # Cache the header blocks that repeat (_hpack_cache): around jh2's compiled coders when
    # it has them ("ALTERNATIVE_HPACK", then in (name, value, sensitive) triples), else as
    # subclasses of the engine's pure-Python hpack coders.
    compiled = getattr(connection_module, "ALTERNATIVE_HPACK", False)
    if compiled != getattr(stream_module, "ALTERNATIVE_HPACK", False):
        raise ValueError(f"{package}'s modules disagree on which HPACK coders they use")
    coders = (
        caching_compiled_coders(
            connection_module.Encoder, connection_module.Decoder, hpack.NeverIndexedHeaderTuple
        )
        if compiled
        else caching_coders(hpack)
    )
    ErrorCodes = module("errors").ErrorCodes
    ConnectionState = connection_module.ConnectionState
    StreamState = stream_module.StreamState
    stream_inputs = stream_module.StreamInputs
    connection_inputs = connection_module.ConnectionInputs
    utilities = module("utilities")
    guard_increment_window = utilities.guard_increment_window
    authority_from_headers = utilities.authority_from_headers
    extract_method_header = utilities.extract_method_header
    sendable_states = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE)
    # Where the engine's frame buffer keeps the bytes not yet parsed: ``_data`` (h2 4.3 and
    # later, jh2 5.0.10 and later), ``data`` before (as bytes; _FrameBuffer makes it a
    # bytearray, which the engine's own code also appends to and slices).
    buffer_name = "_data" if "_data" in vars(FrameBuffer(server=False)) else "data"
    RstStreamFrame = frame_module.RstStreamFrame
    StreamIDTooLowError = exceptions.StreamIDTooLowError
    stock_prepare_for_sending = H2Connection._prepare_for_sending

    data_flag_names = {flag.name for flag in DataFrame.defined_flags}
    headers_flag_names = {flag.name for flag in HeadersFrame.defined_flags}
    no_flag_names: frozenset[str] = frozenset()  # WINDOW_UPDATE defines none
    new_object = object.__new__
    decode_headers = connection_module._decode_headers
    client_open = ConnectionState.CLIENT_OPEN
    # The stream states in which a response's HEADERS and DATA arrive (RFC 9113 section 5.1).
    receivable_states = (StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL)

    class _FrameBuffer(FrameBuffer):  # type: ignore[misc,valid-type]
        # Two departures from the engine's frame buffer:
        #
        # * DATA frames (nearly every frame of a download) and whole HEADERS frames (a
        #   response's) are built directly: the same frame, flags and payload hyperframe
        #   would build, without its generic path (a flag-name set built per frame, the
        #   payload copied twice). Anything unusual (padding, priority data, a header block
        #   split over CONTINUATION frames, stream 0, an overlong frame) still goes the
        #   engine's way, which raises the engine's errors. Measured (h2 4.4.1, 64 frames
        #   per read): 1.7 us a 100-byte DATA frame instead of 4.7, 5.1 us a 16 KiB one
        #   instead of 10.1; jh2 5.0.15 alike.
        # * RFC 9113 section 6.9: a WINDOW_UPDATE with a zero increment is a *stream* error
        #   when it names a stream. hyperframe refuses to parse it at all, which h2 turns into
        #   a connection error; so such frames are taken out here and reported to the
        #   connection task (``stream_errors``), which resets just that stream.
        #
        # Relies on: the buffer of unparsed bytes (``_data`` or ``data``, above) and jh2's
        # ``_data_offset`` into it; ``_headers_buffer`` (a header block in progress, left to
        # the engine); hyperframe's ``Flags._valid_flags`` / ``_flags`` and the attributes
        # of its DataFrame and HeadersFrame (tests/test_frame_buffer.py compares every one).

        def __init__(self) -> None:
            super().__init__(server=False)
            setattr(self, buffer_name, bytearray())
            self.stream_errors: list[tuple[int, str]] = []
            # Join consecutive DATA frames of one stream (_coalesce); off while a frame
            # observer wants to see each frame as it came.
            self.coalesce = True
            self._ready: deque[Any] = deque()
            if not hasattr(self, "_data_offset"):
                self._data_offset = 0  # jh2 consumes by moving an offset; h2's stays 0

        def __next__(self) -> Any:
            if self._ready:  # the other streams' frames of a run _coalesce joined
                return self._ready.popleft()
            while True:
                data: bytearray = getattr(self, buffer_name)
                start: int = self._data_offset
                available = len(data) - start
                if available < 9 or self._headers_buffer:
                    return super().__next__()
                length_high, length_low, kind, flag_byte, stream_id = _unpack_frame_header(
                    data, start
                )
                stream_id &= 0x7FFFFFFF
                if kind in (_DATA, _HEADERS):
                    length = length_high << 8 | length_low
                    if (
                        available < 9 + length
                        or flag_byte & _PADDED
                        or not stream_id
                        or length > self.max_frame_size
                    ):
                        return super().__next__()
                    flags = new_object(Flags)
                    if kind == _DATA:
                        frame = new_object(DataFrame)
                        flags._valid_flags = data_flag_names
                        flags._flags = {"END_STREAM"} if flag_byte & _END_STREAM else set()
                    else:
                        if flag_byte & _PRIORITY or not flag_byte & _END_HEADERS:
                            return super().__next__()
                        frame = new_object(HeadersFrame)
                        flags._valid_flags = headers_flag_names
                        flags._flags = (
                            {"END_HEADERS", "END_STREAM"}
                            if flag_byte & _END_STREAM
                            else {"END_HEADERS"}
                        )
                        frame.depends_on = frame.stream_weight = 0
                        frame.exclusive = False
                    frame.stream_id = stream_id
                    frame.flags = flags
                    frame.pad_length = 0
                    end = start + 9 + length
                    if kind == _DATA and self.coalesce and not flag_byte & _END_STREAM:
                        joined_end = self._coalesce(frame, data, start, end)
                        if joined_end:
                            self._consume(start, joined_end - start)
                            return frame
                    frame.body_len = length
                    if length <= _SMALL_PAYLOAD:
                        frame.data = bytes(data[start + 9 : end])
                    else:  # one copy, not two
                        with memoryview(data) as view:
                            frame.data = view[start + 9 : end].tobytes()
                    self._consume(start, 9 + length)
                    return frame
                if (
                    kind == _WINDOW_UPDATE
                    and available >= 13
                    and (length_high, length_low)
                    == (
                        0,
                        4,
                    )
                ):
                    increment = _unpack_increment(data, start + 9)[0]
                    if 0 < increment < 0x80000000:
                        # What hyperframe would build (an upload reads one or two of these
                        # per round trip), without its generic parse.
                        frame = new_object(WindowUpdateFrame)
                        flags = new_object(Flags)
                        flags._valid_flags = no_flag_names
                        flags._flags = set()
                        frame.stream_id = stream_id
                        frame.flags = flags
                        frame.body_len = 4
                        frame.window_increment = increment
                        self._consume(start, 13)
                        return frame
                if not (
                    kind == _WINDOW_UPDATE
                    and available >= 13
                    and (length_high, length_low) == (0, 4)
                    and bytes(data[start + 9 : start + 13])
                    in (b"\x00\x00\x00\x00", b"\x80\x00\x00\x00")
                    and stream_id
                ):
                    return super().__next__()
                self.stream_errors.append((stream_id, "a WINDOW_UPDATE with a zero increment"))
                self._consume(start, 13)

        def _coalesce(self, frame: Any, data: bytearray, start: int, end: int) -> int:
            """Join ``frame`` (a DATA frame at ``start``, ending at ``end``, not ending its
            stream) and the DATA frames that follow it in the buffer (whole, unpadded,
            within MAX_FRAME_SIZE, of any stream) into one frame per stream, as if the
            server had sent one larger frame for each: the engine, flow control and the
            reader then do their per-frame work once per stream and read instead of once
            per 16 KiB. Each stream keeps its order; a stream's group ends with its
            END_STREAM; the run stops at any other frame. ``frame`` gets its stream's
            bytes; the other streams' frames come next from ``__next__``. Returns where the
            run ends, or 0 when no DATA frame follows (nothing changed)."""
            limit = self.max_frame_size
            size = len(data)
            first = frame.stream_id
            groups: dict[int, list[tuple[int, int]]] = {first: [(start + 9, end)]}
            ended: set[int] = set()
            total = end - start - 9
            while size - end >= 9 and total < _COALESCE_LIMIT:
                length_high, length_low, kind, flag_byte, stream_id = _unpack_frame_header(
                    data, end
                )
                length = length_high << 8 | length_low
                stream_id &= 0x7FFFFFFF
                if (
                    kind != _DATA
                    or not stream_id
                    or stream_id in ended
                    or flag_byte & _PADDED
                    or length > limit
                    or size - end < 9 + length
                ):
                    break
                spans = groups.get(stream_id)
                if spans is None:
                    spans = groups[stream_id] = []
                spans.append((end + 9, end + 9 + length))
                total += length
                end += 9 + length
                if flag_byte & _END_STREAM:
                    ended.add(stream_id)
            if len(groups) == 1 and len(groups[first]) == 1:
                return 0
            with memoryview(data) as view:
                for stream_id, spans in groups.items():
                    if stream_id == first:
                        joined = frame
                    else:
                        joined = new_object(DataFrame)
                        joined.flags = flags = new_object(Flags)
                        flags._valid_flags = data_flag_names
                        flags._flags = set()
                        joined.stream_id = stream_id
                        joined.pad_length = 0
                        self._ready.append(joined)
                    if stream_id in ended:
                        joined.flags._flags = {"END_STREAM"}
                    joined.data = b"".join([view[a:b] for a, b in spans])
                    joined.body_len = len(joined.data)
            return end

        def _consume(self, start: int, size: int) -> None:
            """Drop the ``size``-byte frame at ``start``: jh2 moves its offset (and starts
            afresh when all is read), h2 deletes the front of its buffer."""
            data: bytearray = getattr(self, buffer_name)
            end = start + size
            if start:
                self._data_offset = end
                if end == len(data):
                    setattr(self, buffer_name, bytearray())
                    self._data_offset = 0
            else:
                del data[:end]

    class _H2Stream(H2Stream):  # type: ignore[misc,valid-type]
        # The engine's stream, but a header block that decoded (so HPACK state is intact) and
        # is not a valid next step of the response -- a second HEADERS without END_STREAM,
        # an empty header block (trailers without END_STREAM) -- is a malformed response,
        # a *stream* error (RFC 9113 section 8.1.1), where the engine's ProtocolError ends
        # the connection. The stream reports it in ``stream_errors`` (the frame buffer's
        # list, set by _begin_new_stream) and yields no events; the connection task then
        # resets just that stream (PROTOCOL_ERROR). Both ways a HEADERS frame is received
        # (the engine's, and _receive_on_stream) come through here.
        # Relies on: the stream's ``receive_headers`` being where the engine checks a header
        # block against the stream's state.

        stream_errors: list[tuple[int, str]]

        def receive_headers(self, headers: Any, end_stream: bool, header_encoding: Any) -> Any:
            try:
                return stock_receive_headers(self, headers, end_stream, header_encoding)
            except EngineProtocolError as exc:
                if isinstance(exc, StreamClosedError):
                    raise
                self.stream_errors.append((self.stream_id, f"a header block out of place ({exc})"))
                return [], []

    class _H2Connection(_ConnectionFixes, H2Connection):  # type: ignore[misc,valid-type]
        # The engine's H2Connection with _ConnectionFixes (module level), and the overrides
        # that use the engine's own classes.

        def __init__(self, config: Any) -> None:
            super().__init__(config)
            # HPACK coders that cache repeating header blocks (_hpack_cache), and the frame
            # buffer above, in place of the engine's.
            # Relies on: ``encoder``, ``decoder`` and ``incoming_buffer`` being the
            # attributes h2 codes and reads through.
            encoder_class, decoder_class = coders
            stock: Any = getattr(self, "decoder")  # noqa: B009 (the engine's, untyped here)
            decoder = decoder_class(stock.max_header_list_size)
            # What the engine advertises (jh2: 64 KiB; its compiled decoder does not say).
            decoder.max_allowed_table_size = self.local_settings.header_table_size
            self.encoder = encoder_class()
            self.decoder = decoder
            self.frame_buffer = self.incoming_buffer = _FrameBuffer()

        def _begin_new_stream(self, stream_id: int, allowed_ids: Any) -> Any:
            # Each stream is an _H2Stream (above). Relies on: ``_begin_new_stream`` making
            # every stream, and the engine's stream class taking a subclass in its place.
            stream = stock_begin_new_stream(self, stream_id, allowed_ids)
            stream.__class__ = _H2Stream
            stream.stream_errors = self.frame_buffer.stream_errors
            return stream

        def _receive_frame(self, frame: Any) -> Any:
            # h2's own version, less its eager ``repr(frame)`` for a trace log nobody reads
            # (2% of a small request), with the frame observer, the late-frame filter (see
            # _ConnectionFixes.__init__: a StreamClosedError or StreamIDTooLowError for a
            # stream we reset is answered, not fatal), and a short way for a response's
            # HEADERS and DATA (``_receive_on_stream``).
            # Relies on: h2 handing each frame to ``_receive_frame``; its
            # ``_frame_dispatch_table``, ``_prepare_for_sending``,
            # ``_stream_is_closed_by_reset`` / ``_by_end`` and StreamClosedError's
            # ``_events``.
            if self.frame_observer is not None:
                self.frame_observer("recv", frame)
            kind = frame.__class__
            if (
                kind is DataFrame or (kind is HeadersFrame and "PRIORITY" not in frame.flags)
            ) and self.receive_shortcut:
                stream = self.streams.get(frame.stream_id)
                if (
                    stream is not None
                    and stream.state_machine.state in receivable_states
                    and self.state_machine.state is client_open
                ):
                    return self._receive_on_stream(stream, frame)
            elif (
                kind is WindowUpdateFrame
                and self.receive_shortcut
                and self.state_machine.state is client_open
                and (not frame.stream_id or frame.stream_id in self.streams)
            ):
                return self._receive_window_update(frame)
            self._in_receive = True
            try:
                try:
                    frames, events = self._frame_dispatch_table[frame.__class__](frame)
                except StreamClosedError as exc:
                    # Closed by RST_STREAM: a stream error, answered with RST_STREAM (which
                    # _prepare_for_sending drops for streams we reset). Otherwise: connection.
                    if not self._stream_is_closed_by_reset(exc.stream_id):
                        raise
                    reply = RstStreamFrame(exc.stream_id)
                    reply.error_code = exc.error_code
                    self._prepare_for_sending([reply])
                    events = exc._events
                except StreamIDTooLowError as exc:
                    if self._stream_is_closed_by_reset(exc.stream_id):
                        reply = RstStreamFrame(exc.stream_id)
                        reply.error_code = ErrorCodes.STREAM_CLOSED
                        self._prepare_for_sending([reply])
                        events = []
                    elif self._stream_is_closed_by_end(exc.stream_id):
                        raise StreamClosedError(exc.stream_id) from exc
                    else:
                        raise
                else:
                    self._prepare_for_sending(frames)
                return events
            finally:
                self._in_receive = False

        def _receive_on_stream(self, stream: Any, frame: Any) -> Any:
            """The events of a DATA or (priority-less) HEADERS ``frame`` on ``stream``, an
            open stream of ours, on an open connection: what the engine's
            ``_receive_data_frame`` and ``_receive_headers_frame`` do then, through the same
            stream methods and flow control, less their steps that change nothing in that
            case (the connection state machine stays CLIENT_OPEN, the stream exists, no
            frame is sent in reply)."""
            # tests/test_receive_shortcut.py checks it against the engine's own path.
            # Relies on: ``_inbound_flow_control_window_manager``, the stream's
            # ``receive_data`` / ``receive_headers``, the module's ``_decode_headers``.
            end_stream = "END_STREAM" in frame.flags
            if frame.__class__ is DataFrame:
                size = frame.flow_controlled_length
                self._inbound_flow_control_window_manager.window_consumed(size)
                return stream.receive_data(frame.data, end_stream, size)[1]
            headers = self.decoder.decode_fields(frame.data, decode_headers)
            return stream.receive_headers(headers, end_stream, self.config.header_encoding)[1]

        def _receive_window_update(self, frame: Any) -> Any:
            """The events of a WINDOW_UPDATE for the connection or a stream it has, on an
            open connection: what the engine's ``_receive_window_update_frame`` does then,
            less its connection state step (no change while CLIENT_OPEN)."""
            # tests/test_receive_shortcut.py checks it against the engine's own path.
            # Relies on: ``outbound_flow_control_window``, the stream's
            # ``receive_window_update``, the WindowUpdated event's attributes.
            increment = frame.window_increment
            if not frame.stream_id:
                window: int = getattr(self, "outbound_flow_control_window")  # noqa: B009
                self.outbound_flow_control_window = guard_increment_window(window, increment)
                event = new_object(WindowUpdated)  # h2 4.3's takes keywords, jh2's none
                event.stream_id = 0
                event.delta = increment
                return [event]
            self._in_receive = True
            try:
                frames, events = self.streams[frame.stream_id].receive_window_update(increment)
                self._prepare_for_sending(frames)
                return events
            finally:
                self._in_receive = False

        def send_request_headers(
            self, stream_id: int, headers: Sequence[tuple[bytes, bytes]], end_stream: bool
        ) -> None:
            """``send_headers(stream_id, headers, end_stream)`` for a new request stream:
            the engine's stream creation and state changes, with the header block encoded
            and framed here (the engine's generic frame path costs a fifth of a small
            request); anything else, and every error, is ``send_headers``'s own."""
            # tests/test_frame_buffer.py checks it against ``send_headers``.
            # Relies on: ``_begin_new_stream``, ``_data_to_send``, the stream's
            # ``_authority`` and ``request_method`` (what send_headers records).
            if (
                self.frame_observer is not None
                or stream_id in self.streams
                or self.open_outbound_streams + 1 > self.remote_settings.max_concurrent_streams
                or self.state_machine.state is not client_open
            ):
                self.send_headers(stream_id, headers, end_stream=end_stream)
                return
            self.state_machine.process_input(connection_inputs.SEND_HEADERS)
            # Our _begin_new_stream (above), inlined: a call less per request.
            stream = stock_begin_new_stream(self, stream_id, client_stream_ids)
            stream.__class__ = _H2Stream
            stream.stream_errors = self.frame_buffer.stream_errors
            stream.state_machine.process_input(stream_inputs.SEND_HEADERS)
            block = self.encoder.encode_fields(headers)
            size = self.max_outbound_frame_size
            out = self._data_to_send
            flags = _END_STREAM if end_stream else 0
            kind = _HEADERS
            for start in range(0, max(len(block), 1), size):
                piece = block[start : start + size]
                last = start + size >= len(block)
                frame_flags = flags | _END_HEADERS if last else flags
                out += _frame_header(len(piece), kind, frame_flags, stream_id)
                out += piece
                kind, flags = _CONTINUATION, 0
            if end_stream:
                stream.state_machine.process_input(stream_inputs.SEND_END_STREAM)
            stream._authority = authority_from_headers(headers)
            stream.request_method = extract_method_header(headers)

        def send_data_frame(self, stream_id: int, data: memoryview) -> None:
            """``send_data(stream_id, data)`` (no END_STREAM, no padding): what it would do
            to the windows and the outbound bytes, without its frame object, when the stream
            is one a body is being sent on; otherwise ``send_data`` itself (its errors)."""
            # tests/test_frame_buffer.py checks it against ``send_data``.
            # Relies on: ``_data_to_send``.
            size = len(data)
            stream = self.streams.get(stream_id)
            if (
                stream is None
                or self.frame_observer is not None
                or stream.state_machine.state not in sendable_states
                or self.state_machine.state is not client_open
                or not 0 < size <= self.max_outbound_frame_size
                or size > self.outbound_flow_control_window
                or size > stream.outbound_flow_control_window
            ):
                self.send_data(stream_id, data)
                return
            out = self._data_to_send
            out += _frame_header(size, _DATA, 0, stream_id)
            out += data
            self.outbound_flow_control_window -= size
            stream.outbound_flow_control_window -= size

        def reset_closed_or_open(self, stream_id: int, error_code: int) -> None:
            """RST_STREAM even if h2 already considers the stream closed (e.g. a malformed
            response that carried END_STREAM): the peer must learn it was refused."""
            # Relies on: ``_prepare_for_sending`` (the engine's own: ours would drop this
            # RST_STREAM when it is sent while a frame is being received).
            self.reset_by_us.add(stream_id)
            try:
                self.reset_stream(stream_id, error_code)
            except StreamClosedError:
                frame = RstStreamFrame(stream_id)
                frame.error_code = error_code
                stock_prepare_for_sending(self, [frame])

        def _receive_goaway_frame(self, frame: Any) -> Any:
            # h2 moves its state machine to CLOSED as soon as GOAWAY arrives (upstream h2
            # issue 1181) and would then reject every later frame -- even the responses of
            # streams the peer promised to finish (those at or below last_stream_id), which
            # may sit in the very same read. The connection task refuses new streams itself
            # once it sees the ConnectionTerminated event, so the state machine stays open
            # for the streams that are still finishing.
            # Relies on: h2 handling GOAWAY in ``_receive_goaway_frame``.
            result = super()._receive_goaway_frame(frame)
            if self.state_machine.state == ConnectionState.CLOSED:
                self.state_machine.state = client_open
            return result

    return Engine(
        name=package,
        version=version,
        events=module("events"),
        Settings=module("settings").Settings,
        SettingCodes=module("settings").SettingCodes,
        NeverIndexedHeaderTuple=hpack.NeverIndexedHeaderTuple,
        ProtocolError=exceptions.ProtocolError,
        FlowControlError=exceptions.FlowControlError,
        StreamClosedError=StreamClosedError,
        connection_class=_H2Connection,
        configuration_class=configuration_class,
    )


class _RecentSet(dict[int, None]):
    """The most recent ``size`` stream IDs added (an ordered set with a bound)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size

    def add(self, stream_id: int) -> None:
        self[stream_id] = None
        if len(self) > self._size:
            del self[next(iter(self))]
