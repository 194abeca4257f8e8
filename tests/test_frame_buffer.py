"""h2any reads and writes DATA and HEADERS frames itself, exactly as each engine would.

Reading: ``_engine._FrameBuffer`` builds DATA and whole HEADERS frames itself; it is checked
against the engine's stock ``FrameBuffer`` over random frame sequences, cut into random
pieces: the same frames (class and every attribute) or the same error, with the joining of
runs of DATA frames off; with it on, what each stream receives is the same. Writing:
``send_data_frame`` against the engine's ``send_data``, ``send_request_headers`` against
its ``send_headers``. Both engines.
"""

from __future__ import annotations

import importlib
import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scripted import raw_frame

from h2any._engine import get_engine

ENGINES = ["h2", "jh2"]


_data_frame = st.builds(
    lambda flags, stream_id, payload, pad: raw_frame(
        0x0,
        flags,
        stream_id,
        (bytes([pad]) + payload + b"\0" * pad) if flags & 0x8 else payload,
    ),
    st.sampled_from([0x0, 0x1, 0x8, 0x9, 0x20, 0xFF]),
    st.sampled_from([0, 1, 3, 2**31 - 1, 2**31 + 5]),
    # Small payloads are sliced out of the read buffer, larger ones (> 2 KiB) copied once.
    st.one_of(st.binary(max_size=300), st.binary(min_size=2040, max_size=2060)),
    st.integers(0, 20),
)
_headers_frame = st.builds(
    lambda flags, stream_id, block, pad: raw_frame(
        0x1,
        flags,
        stream_id,
        (bytes([pad]) if flags & 0x8 else b"")
        + (b"\x80\0\0\x03\x10" if flags & 0x20 else b"")
        + block
        + (b"\0" * pad if flags & 0x8 else b""),
    ),
    st.sampled_from([0x4, 0x5, 0x0, 0x1, 0xC, 0x24, 0x25, 0x2D, 0xFF]),
    st.sampled_from([0, 1, 3, 2**31 - 1, 2**31 + 5]),
    st.sampled_from([b"", b"\x88", b"\x88\x0f\x10\x01\x35"]),
    st.integers(0, 20),
)
_other_frame = st.sampled_from(
    [
        raw_frame(0x8, 0, 1, (1000).to_bytes(4, "big")),  # WINDOW_UPDATE
        raw_frame(0x8, 0, 1, b"\0\0\0\0"),  # zero increment on a stream: a stream error
        raw_frame(0x8, 0xFF, 0, b"\x7f\xff\xff\xff"),  # the largest increment, any flags
        raw_frame(0x8, 0, 3, b"\x80\0\0\x05"),  # the reserved bit set
        raw_frame(0x8, 0, 3, b"\0\0\x01"),  # too short
        raw_frame(0x6, 0, 0, b"12345678"),  # PING
        raw_frame(0x3, 0, 5, b"\0\0\0\x08"),  # RST_STREAM
        raw_frame(0x1, 0x4, 1, b"\x88"),  # HEADERS, END_HEADERS
        raw_frame(0x1, 0x0, 1, b"\x88"),  # HEADERS without END_HEADERS: CONTINUATION next
        raw_frame(0x9, 0x4, 1, b""),  # CONTINUATION, END_HEADERS
        raw_frame(0x0, 0x0, 1, b"x" * 20000),  # DATA over the 16 KiB frame size limit
        raw_frame(0xEE, 0x0, 1, b"extension"),  # unknown type
    ]
)


def _describe(frame: Any) -> tuple[Any, ...]:
    attributes = {
        name: sorted(value) if name == "flags" else value for name, value in vars(frame).items()
    }
    return type(frame).__name__, sorted(attributes.items())


def _read_all(buffer: Any, pieces: list[bytes]) -> list[Any]:
    buffer.max_frame_size = 16384
    seen: list[Any] = []
    try:
        for piece in pieces:
            buffer.add_data(piece)
            seen.extend(_describe(frame) for frame in buffer)
    except Exception as exc:
        seen.append(("error", type(exc).__name__))
    seen.append(("stream errors", getattr(buffer, "stream_errors", [])))
    return seen


def _read_both(
    engine_name: str, frames: list[bytes], cuts: list[int], *, coalesce: bool
) -> tuple[list[Any], list[Any]]:
    """``frames`` cut at ``cuts`` read by h2any's frame buffer (joining DATA frames or not)
    and by the engine's stock one: what each saw (_read_all)."""
    stream = b"".join(frames)
    edges = sorted({0, len(stream), *(cut for cut in cuts if cut < len(stream))})
    pieces = [stream[a:b] for a, b in itertools.pairwise(edges)]
    ours = get_engine(engine_name).new_connection().incoming_buffer
    assert ours.coalesce  # on by default
    ours.coalesce = coalesce
    stock_class = importlib.import_module(f"{engine_name}.frame_buffer").FrameBuffer
    return _read_all(ours, pieces), _read_all(stock_class(server=False), pieces)


@pytest.mark.parametrize("engine_name", ENGINES)
@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(st.one_of(_data_frame, _headers_frame, _other_frame), max_size=12),
    cuts=st.lists(st.integers(0, 30000), max_size=6),
)
def test_frames_match_the_engines_own_frame_buffer(
    engine_name: str, frames: list[bytes], cuts: list[int]
) -> None:
    got, expected = _read_both(engine_name, frames, cuts, coalesce=False)
    # The zero-increment WINDOW_UPDATE is the one deliberate difference (a stream error for
    # us, a connection error for the engine): compare only sequences without one.
    if any(entry == ("stream errors", []) for entry in got):
        assert got[:-1] == expected[:-1]


def _per_stream(seen: list[Any]) -> Any:
    """What ``seen`` (as _read_all describes frames) carries, as joining DATA frames keeps
    it: each stream's DATA payloads joined, with their flow-controlled lengths summed and
    END_STREAM counted; every other frame, the error and the stream errors in order."""
    data: dict[Any, list[Any]] = {}
    others = []
    for entry in seen:
        if entry[0] == "DataFrame":
            fields = dict(entry[1])
            padding = fields["pad_length"] + 1 if "PADDED" in fields["flags"] else 0
            carried = data.setdefault(fields["stream_id"], [b"", 0, 0])
            carried[0] += fields["data"]
            carried[1] += len(fields["data"]) + padding
            carried[2] += "END_STREAM" in fields["flags"]
        else:
            others.append(entry)
    return sorted((stream_id, *carried) for stream_id, carried in data.items()), others


@pytest.mark.parametrize("engine_name", ENGINES)
@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(st.one_of(_data_frame, _data_frame, _other_frame), max_size=14),
    cuts=st.lists(st.integers(0, 30000), max_size=6),
)
def test_joined_data_frames_carry_what_the_engines_frames_carry(
    engine_name: str, frames: list[bytes], cuts: list[int]
) -> None:
    # A run of DATA frames that are in the buffer together comes out as one frame per stream
    # (the reader's per-frame work, once per stream and read): each stream gets the same
    # bytes, flow-controlled lengths and END_STREAM as from the engine's frames; every other
    # frame, and every error, as the engine's.
    got, expected = _read_both(engine_name, frames, cuts, coalesce=True)
    if any(entry == ("stream errors", []) for entry in got):
        assert _per_stream(got[:-1]) == _per_stream(expected[:-1])
        assert len(got) <= len(expected)


def test_frames_in_one_read_are_joined() -> None:
    # Four 16 KiB frames of stream 1 and the one that ends it, then a PING, in one read:
    # one DATA frame of all five (END_STREAM), then the PING.
    ours = get_engine("h2").new_connection().incoming_buffer
    ours.max_frame_size = 16384
    payloads = [bytes([n]) * 16384 for n in range(4)] + [b"end"]
    wire = b"".join(
        raw_frame(0x0, 0x1 if n == 4 else 0x0, 1, payload) for n, payload in enumerate(payloads)
    )
    ours.add_data(wire + raw_frame(0x6, 0, 0, b"12345678"))
    frames = list(ours)
    assert [type(frame).__name__ for frame in frames] == ["DataFrame", "PingFrame"]
    assert frames[0].data == b"".join(payloads)
    assert frames[0].flow_controlled_length == 4 * 16384 + 3
    assert "END_STREAM" in frames[0].flags


def test_interleaved_streams_in_one_read_are_joined_per_stream() -> None:
    # Frames of streams 1 and 3 in turn (as a server sends two downloads), stream 3 ending,
    # then a PING: one DATA frame for each stream, in stream order, then the PING.
    ours = get_engine("h2").new_connection().incoming_buffer
    ours.max_frame_size = 16384
    wire = b"".join(
        raw_frame(0x0, 0x1 if (n == 5 and stream_id == 3) else 0x0, stream_id, bytes([n]) * 100)
        for n in range(6)
        for stream_id in (1, 3)
    )
    ours.add_data(wire + raw_frame(0x6, 0, 0, b"12345678"))
    frames = list(ours)
    assert [(type(f).__name__, f.stream_id) for f in frames] == [
        ("DataFrame", 1),
        ("DataFrame", 3),
        ("PingFrame", 0),
    ]
    assert frames[0].data == frames[1].data == b"".join(bytes([n]) * 100 for n in range(6))
    assert "END_STREAM" not in frames[0].flags
    assert "END_STREAM" in frames[1].flags
    assert frames[1].flow_controlled_length == 600


@pytest.mark.parametrize("engine_name", ENGINES)
@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 20000), max_size=12),
    window=st.integers(0, 70000),
    half_closed=st.booleans(),
)
def test_send_data_frame_does_what_send_data_does(
    engine_name: str, sizes: list[int], window: int, half_closed: bool
) -> None:
    # h2any writes body DATA frames itself (``send_data_frame``): the same bytes, windows
    # and states as the engine's ``send_data``, and the same errors where that refuses.
    engine = get_engine(engine_name)
    connections = [engine.new_connection() for _ in range(2)]
    for connection in connections:
        connection.initiate_connection()
        connection.send_headers(
            1,
            [(b":method", b"POST"), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"x")],
        )
        connection.outbound_flow_control_window = window
        if half_closed:
            connection.streams[1].state_machine.state = importlib.import_module(
                f"{engine_name}.stream"
            ).StreamState.HALF_CLOSED_REMOTE
        connection.data_to_send()
    fast, stock = connections
    for size in sizes:
        data = memoryview(bytes(range(256)) * (size // 256 + 1))[:size]
        outcomes = []
        for connection, send in ((fast, fast.send_data_frame), (stock, stock.send_data)):
            try:
                send(1, data)
                outcomes.append(("sent", connection.data_to_send()))
            except Exception as exc:
                outcomes.append(("error", type(exc).__name__))
            outcomes.append(
                (
                    connection.outbound_flow_control_window,
                    connection.local_flow_control_window(1),
                    connection.streams[1].state_machine.state,
                )
            )
        assert outcomes[:2] == outcomes[2:]


_request_field = st.sampled_from(
    [
        (b"accept", b"*/*"),
        (b"user-agent", b"h2any"),
        (b"x-long", b"v" * 17000),
        (b"cookie", b"a=1"),
        ("never", b"authorization", b"secret"),
    ]
)


@pytest.mark.parametrize("engine_name", ENGINES)
@settings(max_examples=100, deadline=None)
@given(
    requests=st.lists(
        st.tuples(
            st.lists(_request_field, max_size=5),
            st.booleans(),
            st.sampled_from([b"GET", b"HEAD", b"POST"]),
        ),
        min_size=1,
        max_size=6,
    ),
    max_streams=st.integers(1, 4),
)
def test_send_request_headers_does_what_send_headers_does(
    engine_name: str, requests: list[Any], max_streams: int
) -> None:
    # h2any frames a new request's header block itself (``send_request_headers``): the same
    # bytes (HEADERS and CONTINUATION frames), the same stream records and states as the
    # engine's ``send_headers``, and the same errors (here: too many streams).
    engine = get_engine(engine_name)
    connections = [engine.new_connection() for _ in range(2)]
    for connection in connections:
        connection.initiate_connection()
        connection.remote_settings.max_concurrent_streams = max_streams
        connection.remote_settings.acknowledge()
        connection.data_to_send()
    fast, stock = connections
    for number, (extra, end_stream, method) in enumerate(requests):
        fields = [
            (b":method", method),
            (b":scheme", b"https"),
            (b":authority", b"example.org"),
            (b":path", f"/{number}".encode()),
        ]
        for field in extra:
            if field[0] == "never":
                fields.append(engine.NeverIndexedHeaderTuple(field[1], field[2]))
            else:
                fields.append(field)
        stream_id = 2 * number + 1
        outcomes = []
        for connection, send in (
            (fast, lambda *a: fast.send_request_headers(*a)),
            (stock, lambda i, f, e: stock.send_headers(i, f, end_stream=e)),
        ):
            connection.outbound_open_count = len(connection.streams)
            try:
                send(stream_id, list(fields), end_stream)
                outcomes.append(("sent", connection.data_to_send()))
            except Exception as exc:
                outcomes.append(("error", type(exc).__name__))
            stream = connection.streams.get(stream_id)
            outcomes.append(
                None
                if stream is None
                else (
                    stream.state_machine.state,
                    stream.state_machine.client,
                    stream.state_machine.headers_sent,
                    stream._authority,
                    stream.request_method,
                    stream.outbound_flow_control_window,
                    stream.inbound_flow_control_window,
                )
            )
            outcomes.append((connection.highest_outbound_stream_id, connection.state_machine.state))
        assert outcomes[:3] == outcomes[3:]
