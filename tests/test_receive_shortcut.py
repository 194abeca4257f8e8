"""A response's HEADERS and DATA, and WINDOW_UPDATEs, take a short way through the engine.

``_engine._H2Connection._receive_on_stream`` handles a DATA or HEADERS frame on an open
stream of ours, and ``_receive_window_update`` a WINDOW_UPDATE, without the engine's generic
frame path. Two connections of the same engine, one with the short way and one without
(``receive_shortcut = False``), read the same random server frames (responses, informational
responses, trailers, bodies longer than their content-length or their window, WINDOW_UPDATEs
that fit or overflow, frames on unopened, closed and reset streams, GOAWAY either way), cut
at random points; after each piece they must agree on the events (every attribute), the
error, the bytes to send, and every stream's and the connection's state. Both engines.
"""

from __future__ import annotations

import itertools
from typing import Any

import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scripted import raw_frame

from h2any._engine import get_engine

ENGINES = ["h2", "jh2"]
STREAMS = (1, 3, 5, 7)  # opened by the client; 9 never is


_stream_id = st.sampled_from([*STREAMS, 9, 2])
_headers_op = st.tuples(
    st.just("headers"),
    _stream_id,
    st.sampled_from([b"200", b"204", b"100", None]),  # None: trailers (no :status)
    st.sampled_from([None, b"0", b"5", b"x"]),  # content-length
    st.booleans(),  # END_STREAM
    st.booleans(),  # padded
    st.booleans(),  # priority data
)
_data_op = st.tuples(
    st.just("data"),
    _stream_id,
    st.sampled_from([0, 1, 4, 5, 16384]),
    st.booleans(),  # END_STREAM
    st.booleans(),  # padded
)
_other_op = st.tuples(
    st.sampled_from(["rst", "goaway", "ping"]),
    _stream_id,
)
# WINDOW_UPDATEs take a short way too: on the connection (stream 0) or a stream, with an
# increment that fits, or one that overflows the window (a stream error on a stream, a
# connection error on the connection).
_window_update_op = st.tuples(
    st.just("window_update"),
    st.sampled_from([0, *STREAMS, 9, 2]),
    st.sampled_from([1, 100, 2**31 - 1]),
)


def _wire(ops: list[Any]) -> bytes:
    """The server's frames for ``ops``, header blocks from one HPACK encoder."""
    encoder = hpack.Encoder()
    out = []
    for op in ops:
        kind, stream_id = op[0], op[1]
        if kind == "headers":
            status, length, end_stream, padded, priority = op[2:]
            fields = [] if status is None else [(b":status", status)]
            fields.append((b"server", b"test"))
            if length is not None:
                fields.append((b"content-length", length))
            block = encoder.encode(fields)
            flags = 0x4 | (0x1 if end_stream else 0)
            if priority:
                flags |= 0x20
                block = (3).to_bytes(4, "big") + b"\x0f" + block
            if padded:
                flags |= 0x8
                block = b"\x02" + block + b"\0\0"
            out.append(raw_frame(0x1, flags, stream_id, block))
        elif kind == "data":
            size, end_stream, padded = op[2:]
            body = b"d" * size
            flags = 0x1 if end_stream else 0
            if padded:
                flags |= 0x8
                body = b"\x03" + body + b"\0\0\0"
            out.append(raw_frame(0x0, flags, stream_id, body))
        elif kind == "rst":
            out.append(raw_frame(0x3, 0, stream_id, (8).to_bytes(4, "big")))
        elif kind == "window_update":
            out.append(raw_frame(0x8, 0, stream_id, op[2].to_bytes(4, "big")))
        elif kind == "goaway":
            out.append(raw_frame(0x7, 0, 0, (5).to_bytes(4, "big") + b"\0\0\0\0"))
        else:
            out.append(raw_frame(0x6, 0, 0, b"12345678"))
    return b"".join(out)


def _describe(value: Any) -> Any:
    """Events (all attributes, nested events too) and header lists, comparably."""
    if isinstance(value, list):
        return [_describe(item) for item in value]
    if isinstance(value, tuple):
        return (type(value).__name__, *(_describe(item) for item in value))
    if hasattr(value, "__dict__") and type(value).__module__.endswith(".events"):
        return (type(value).__name__, sorted((k, _describe(v)) for k, v in vars(value).items()))
    return value


def _state(connection: Any) -> Any:
    streams = []
    for stream_id, stream in sorted(connection.streams.items()):
        machine = stream.state_machine
        streams.append(
            (
                stream_id,
                machine.state,
                machine.headers_received,
                machine.trailers_received,
                machine.stream_closed_by,
                stream.inbound_flow_control_window,
                stream.outbound_flow_control_window,
                stream._inbound_window_manager.current_window_size,
                stream._expected_content_length,
                stream._actual_content_length,
            )
        )
    return (
        streams,
        connection.state_machine.state,
        connection._inbound_flow_control_window_manager.current_window_size,
        connection.inbound_flow_control_window,
        connection.outbound_flow_control_window,
        sorted(connection._closed_streams.items()),
    )


@pytest.mark.parametrize("engine_name", ENGINES)
@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(st.one_of(_headers_op, _data_op, _other_op, _window_update_op), max_size=14),
    cuts=st.lists(st.integers(0, 40000), max_size=5),
    end_streams=st.lists(st.booleans(), min_size=len(STREAMS), max_size=len(STREAMS)),
    head=st.booleans(),
    close_at=st.one_of(st.none(), st.integers(0, 5)),
)
def test_receive_shortcut_matches_the_engines_own_path(
    engine_name: str,
    ops: list[Any],
    cuts: list[int],
    end_streams: list[bool],
    head: bool,
    close_at: int | None,
) -> None:
    engine = get_engine(engine_name)
    connections = [engine.new_connection() for _ in range(2)]
    connections[1].receive_shortcut = False
    for connection in connections:
        connection.initiate_connection()
        for stream_id, end_stream in zip(STREAMS, end_streams, strict=True):
            method = b"HEAD" if head and stream_id == 3 else b"GET"
            request = [(b":method", method), (b":path", b"/"), (b":scheme", b"http")]
            connection.send_headers(stream_id, [*request, (b":authority", b"x")], end_stream)
        connection.receive_data(raw_frame(0x4, 0, 0, b""))  # the server's SETTINGS
        connection.data_to_send()
    wire = _wire(ops)
    edges = sorted({0, len(wire), *(cut for cut in cuts if cut < len(wire))})
    for piece, (start, end) in enumerate(itertools.pairwise(edges)):
        outcomes = []
        for connection in connections:
            if piece == close_at:
                connection.close_connection()  # the client's GOAWAY: no longer CLIENT_OPEN
            try:
                events = connection.receive_data(wire[start:end])
                outcome: Any = ("events", _describe(events))
            except Exception as exc:
                outcome = ("error", type(exc).__name__, str(exc))
            outcomes.append((outcome, connection.data_to_send(), _state(connection)))
        assert outcomes[0] == outcomes[1]
        if outcomes[0][0][0] == "error":
            break
