"""The HTTP/2 state machine as h2any drives it: stock ``h2``, or ``jh2`` when installed.

``jh2`` is an API-compatible fork of ``h2`` with compiled parts (the ``speed`` extra). The
engine is chosen per connection: ``engine="h2"`` / ``"jh2"``, else the ``H2ANY_ENGINE``
environment variable, else ``jh2`` if it imports and ``h2`` otherwise. Each engine gets the
same subclass of its ``H2Connection`` with the fixes h2any needs.

Only the connection task (``_connection.py``) ever calls into an engine's connection.
"""

from __future__ import annotations

import importlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ._hpack_cache import caching_coders, caching_compiled_coders

__all__ = ("Engine", "get_engine")

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
# Payloads up to this size are copied out of the read buffer by slicing (two small copies
# beat a memoryview's set-up); larger ones through a memoryview (one copy).
_SMALL_PAYLOAD = 2048


def _frame_header(length: int, kind: int, flags: int, stream_id: int) -> bytes:
    """The 9 bytes that open an HTTP/2 frame (RFC 9113 section 4.1)."""
    return (length << 48 | kind << 40 | flags << 32 | stream_id).to_bytes(9, "big")


@dataclass(frozen=True)
class Engine:
    """The pieces of one HTTP/2 implementation that h2any uses."""

    name: str
    events: ModuleType
    Settings: Any
    SettingCodes: Any
    NeverIndexedHeaderTuple: Any
    ProtocolError: type[Exception]
    FlowControlError: type[Exception]
    StreamClosedError: type[Exception]
    connection_class: Any
    configuration_class: Any

    def new_connection(self) -> Any:
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
            normalize_inbound_headers=True,
        )
        return self.connection_class(config)


_ENGINES: dict[str, Engine] = {}


def get_engine(name: str | None = None) -> Engine:
    """The engine for ``name`` ("h2", "jh2"), or the default (see the module docstring)."""
    choice = (name or os.environ.get("H2ANY_ENGINE") or "auto").lower()
    if choice == "auto":
        try:
            importlib.import_module("jh2")
        except ImportError:
            choice = "h2"
        else:
            choice = "jh2"
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
    return engine


def _build(package: str) -> Engine:
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
    # Cache the header blocks that repeat (_hpack_cache): around jh2's compiled coders when
    # it has them ("ALTERNATIVE_HPACK", then in (name, value, sensitive) triples), else as
    # subclasses of the engine's pure-Python hpack coders.
    compiled = getattr(connection_module, "ALTERNATIVE_HPACK", False)
    if compiled != getattr(stream_module, "ALTERNATIVE_HPACK", False):
        raise ImportError(f"{package}'s modules disagree on which HPACK coders they use")
    coders = (
        caching_compiled_coders(
            connection_module.Encoder, connection_module.Decoder, hpack.NeverIndexedHeaderTuple
        )
        if compiled
        else caching_coders(hpack)
    )
    exceptions = module("exceptions")
    ErrorCodes = module("errors").ErrorCodes
    ConnectionState = connection_module.ConnectionState
    StreamState = stream_module.StreamState
    stream_inputs = stream_module.StreamInputs
    connection_inputs = connection_module.ConnectionInputs
    client_stream_ids = connection_module.AllowedStreamIDs.ODD
    utilities = module("utilities")
    authority_from_headers = utilities.authority_from_headers
    extract_method_header = utilities.extract_method_header
    sendable_states = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE)
    FrameBuffer = module("frame_buffer").FrameBuffer
    # Where the engine's frame buffer keeps the bytes not yet parsed: ``_data`` (h2 4.3 and
    # later, jh2 5.0.10 and later), ``data`` before (as bytes; _FrameBuffer makes it a
    # bytearray, which the engine's own code also appends to and slices).
    buffer_name = "_data" if "_data" in vars(FrameBuffer(server=False)) else "data"
    RstStreamFrame = frame_module.RstStreamFrame
    StreamClosedError = exceptions.StreamClosedError
    StreamIDTooLowError = exceptions.StreamIDTooLowError

    DataFrame = frame_module.DataFrame
    HeadersFrame = frame_module.HeadersFrame
    Flags = hyperframe("flags").Flags
    data_flag_names = {flag.name for flag in DataFrame.defined_flags}
    headers_flag_names = {flag.name for flag in HeadersFrame.defined_flags}
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
        #   engine's way, which raises the engine's errors.
        # * RFC 9113 section 6.9: a WINDOW_UPDATE with a zero increment is a *stream* error
        #   when it names a stream. hyperframe refuses to parse it at all, which h2 turns into
        #   a connection error; so such frames are taken out here and reported to the
        #   connection task (``stream_errors``), which resets just that stream.

        def __init__(self) -> None:
            super().__init__(server=False)
            setattr(self, buffer_name, bytearray())
            self.stream_errors: list[tuple[int, str]] = []
            if not hasattr(self, "_data_offset"):
                self._data_offset = 0  # jh2 consumes by moving an offset; h2's stays 0

        def __next__(self) -> Any:
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
                    frame.body_len = length
                    frame.pad_length = 0
                    if length <= _SMALL_PAYLOAD:
                        frame.data = bytes(data[start + 9 : start + 9 + length])
                    else:  # one copy, not two
                        with memoryview(data) as view:
                            frame.data = view[start + 9 : start + 9 + length].tobytes()
                    self._consume(start, 9 + length)
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

    class _H2Connection(connection_module.H2Connection):  # type: ignore[misc,name-defined]
        # Two behaviours of stock h2 that hurt a client, and what this subclass does instead:
        #
        # * After we reset a stream, the peer may legitimately keep sending frames that were
        #   already in flight (RFC 9113 section 5.4.2: we MUST ignore them). h2 answers each
        #   late frame with yet another RST_STREAM, and nghttpd drops the whole connection after
        #   a few dozen of those. We swallow those replies for streams *we* reset, and hand the
        #   late DATA bytes back to the connection task (``absorbed``) so it can return them to
        #   the connection window at once instead of waiting for h2's own late bookkeeping.
        # * GOAWAY: see ``_receive_goaway_frame``.

        def __init__(self, config: Any) -> None:
            super().__init__(config=config)
            encoder_class, decoder_class = coders
            stock: Any = getattr(self, "decoder")  # noqa: B009 (the engine's, untyped here)
            decoder = decoder_class(stock.max_header_list_size)
            # What the engine advertises (jh2: 64 KiB; its compiled decoder does not say).
            decoder.max_allowed_table_size = self.local_settings.header_table_size
            self.encoder = encoder_class()
            self.decoder = decoder
            self.frame_buffer = self.incoming_buffer = _FrameBuffer()
            self.reset_by_us = _RecentSet(10_000)
            self.absorbed = 0
            self._in_receive = False
            self.frame_observer: Callable[[str, Any], None] | None = None
            self.outbound_open_count = 0
            self.receive_shortcut = True  # _receive_on_stream (the tests compare it with off)

        def _receive_frame(self, frame: Any) -> Any:
            # h2's own version, less its eager ``repr(frame)`` for a trace log nobody reads
            # (2% of a small request), with the frame observer and the late-frame filter,
            # and a short way for a response's HEADERS and DATA (``_receive_on_stream``).
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
            end_stream = "END_STREAM" in frame.flags
            if frame.__class__ is DataFrame:
                size = frame.flow_controlled_length
                self._inbound_flow_control_window_manager.window_consumed(size)
                return stream.receive_data(frame.data, end_stream, size)[1]
            headers = self.decoder.decode_fields(frame.data, decode_headers)
            return stream.receive_headers(headers, end_stream, self.config.header_encoding)[1]

        @property
        def open_outbound_streams(self) -> int:
            # h2 counts these by scanning every stream on each new request (6% of a small
            # request). The connection task keeps the count instead and prunes closed streams
            # itself (``forget_stream``), which is what h2's scan also did.
            return self.outbound_open_count

        def forget_stream(self, stream_id: int) -> None:
            """Drop a closed stream from h2's table, remembering how it closed (as h2 does)."""
            stream = self.streams.get(stream_id)
            if stream is not None and stream.closed:
                del self.streams[stream_id]
                self._closed_streams[stream_id] = stream.closed_by

        def _prepare_for_sending(self, frames: Any) -> None:
            if self._in_receive and self.reset_by_us:
                frames = [
                    f
                    for f in frames
                    if not (f.type == _RST_STREAM and f.stream_id in self.reset_by_us)
                ]
            if self.frame_observer is not None:
                for frame in frames:
                    self.frame_observer("send", frame)
            super()._prepare_for_sending(frames)

        def send_request_headers(self, stream_id: int, headers: Any, end_stream: bool) -> None:
            """``send_headers(stream_id, headers, end_stream)`` for a new request stream:
            the engine's stream creation and state changes, with the header block encoded
            and framed here (the engine's generic frame path costs a fifth of a small
            request); anything else, and every error, is ``send_headers``'s own."""
            if (
                self.frame_observer is not None
                or stream_id in self.streams
                or self.open_outbound_streams + 1 > self.remote_settings.max_concurrent_streams
                or self.state_machine.state is not client_open
            ):
                self.send_headers(stream_id, headers, end_stream=end_stream)
                return
            self.state_machine.process_input(connection_inputs.SEND_HEADERS)
            stream = self._begin_new_stream(stream_id, client_stream_ids)
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
            size = len(data)
            stream = self.streams.get(stream_id)
            if (
                stream is None
                or self.frame_observer is not None
                or stream.state_machine.state not in sendable_states
                or self.state_machine.state is not ConnectionState.CLIENT_OPEN
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

        def _handle_data_on_closed_stream(self, events: Any, exc: Any, frame: Any) -> Any:
            if frame.stream_id in self.reset_by_us:
                self.absorbed += frame.flow_controlled_length
                return [], events + exc._events
            return super()._handle_data_on_closed_stream(events, exc, frame)

        def reset_closed_or_open(self, stream_id: int, error_code: int) -> None:
            """RST_STREAM even if h2 already considers the stream closed (e.g. a malformed
            response that carried END_STREAM): the peer must learn it was refused."""
            self.reset_by_us.add(stream_id)
            try:
                self.reset_stream(stream_id, error_code)
            except StreamClosedError:
                frame = RstStreamFrame(stream_id)
                frame.error_code = error_code
                super()._prepare_for_sending([frame])

        def has_data_to_send(self) -> bool:
            return bool(self._data_to_send)

        def _receive_goaway_frame(self, frame: Any) -> Any:
            # h2 moves its state machine to CLOSED as soon as GOAWAY arrives (upstream h2 issue
            # 1181) and would then reject every later frame -- even the responses of streams the
            # peer promised to finish (those at or below last_stream_id), which may sit in the
            # very same read. The connection task refuses new streams itself once it sees the
            # ConnectionTerminated event, so the state machine stays open for the streams that
            # are still finishing.
            result = super()._receive_goaway_frame(frame)
            if self.state_machine.state == ConnectionState.CLOSED:
                self.state_machine.state = ConnectionState.CLIENT_OPEN
            return result

        def set_max_inbound_frame_size(self, size: int) -> None:
            # Checked against each frame header as soon as it arrives, so a bogus length fails
            # at once instead of waiting for megabytes that never come.
            self.max_inbound_frame_size = size

    return Engine(
        name=package,
        events=module("events"),
        Settings=module("settings").Settings,
        SettingCodes=module("settings").SettingCodes,
        NeverIndexedHeaderTuple=hpack.NeverIndexedHeaderTuple,
        ProtocolError=exceptions.ProtocolError,
        FlowControlError=exceptions.FlowControlError,
        StreamClosedError=StreamClosedError,
        connection_class=_H2Connection,
        configuration_class=module("config").H2Configuration,
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
