"""Fuzzing: a hypothesis-driven scripted peer sends random valid and invalid frame sequences.

Each example starts the scripted h2 server, lets the client send a few concurrent requests
(streams 1, 3, 5, ...), and once they have all arrived the server writes a random script of
frames -- valid responses, random DATA/HEADERS/RST_STREAM/WINDOW_UPDATE/SETTINGS/PING/GOAWAY/
PRIORITY/PUSH_PROMISE/CONTINUATION/unknown frames on open, closed and unopened streams,
random flags, lying lengths, truncated frames, garbage -- cut into random write sizes, then
closes the socket, resets it, or just stops talking.

Invariant, for every example:

* every request either completes or raises an ``h2any.H2anyError``, within its timeouts;
* ``async with h2any.Connection`` exits cleanly (no exception, no ExceptionGroup);
* no task is left running and no file descriptor (socket) is left open.

``H2ANY_FUZZ_EXAMPLES`` sets the number of examples per backend (default 300; ``nox -s
fuzz`` runs 5000).
"""

from __future__ import annotations

import itertools
import os
import struct
from dataclasses import dataclass, field

import anyio
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from scripted import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    GOAWAY,
    HEADERS,
    PADDED,
    PING,
    PRIORITY,
    PRIORITY_FLAG,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    ScriptedPeer,
    encode_headers,
    raw_frame,
    scripted_server,
)

import h2any

EXAMPLES = int(os.environ.get("H2ANY_FUZZ_EXAMPLES", "300"))
TIMEOUT = h2any.Timeout(2, read=0.3, write=0.5)
# The longest a request may take: the script is written at once, so after it the client
# waits at most one read timeout (plus scheduling slack on a loaded 2-core machine).
REQUEST_LIMIT = 5.0
EXAMPLE_LIMIT = 15.0
MAX_REQUESTS = 3

# -- strategies -----------------------------------------------------------------------------

request_ids = st.sampled_from([1, 3, 5])
stream_ids = st.one_of(
    request_ids,  # the client's requests (open, or closed by the script itself)
    st.sampled_from([0, 2, 4, 7, 9, 101, 2**31 - 1]),  # connection, even, unopened, huge
    st.integers(0, 2**31 - 1),
)
any_flags = st.integers(0, 255)
small_payloads = st.binary(max_size=64)
error_codes = st.one_of(st.sampled_from(list(ErrorCodes)), st.integers(0, 2**32 - 1))

statuses = st.one_of(
    st.sampled_from(["200", "204", "304", "404", "500"]),
    st.sampled_from(["100", "103", "abc", "", "2000", "-1", "20 0"]),  # 1xx, malformed
)
good_fields = st.sampled_from(
    [
        ("content-type", "text/plain"),
        ("content-length", "5"),
        ("content-length", "0"),
        ("content-encoding", "gzip"),
        ("server", "fuzz"),
        ("set-cookie", "a=b"),
        ("x-long", "v" * 500),
    ]
)
bad_fields = st.sampled_from(
    [
        ("X-Upper", "1"),
        ("connection", "close"),
        ("transfer-encoding", "chunked"),
        ("te", "gzip"),
        (":path", "/"),
        (":status", "200"),
        (":bogus", "x"),
        ("bad name", "x"),
        ("x-crlf", "a\r\nb"),
        ("content-length", "abc"),
        ("", "empty"),
    ]
)
field_lists = st.lists(st.one_of(good_fields, good_fields, bad_fields), max_size=6)


@st.composite
def header_blocks(draw: st.DrawFn) -> bytes:
    """An HPACK block: mostly a response head (maybe malformed), sometimes raw bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=40))
    fields: list[tuple[str, str]] = []
    if draw(st.integers(0, 9)) > 0:
        fields.append((":status", draw(statuses)))
    fields += draw(field_lists)
    if fields and draw(st.integers(0, 5)) == 0:
        fields = draw(st.permutations(fields))
    return encode_headers(fields)


@st.composite
def valid_responses(draw: st.DrawFn, stream_id: int | None = None) -> list[bytes]:
    """The frames of a well-formed response (maybe with trailers) on one request stream."""
    if stream_id is None:
        stream_id = draw(request_ids)
    status = draw(st.sampled_from(["200", "201", "404", "503"]))
    fields = [(":status", status)]
    if draw(st.integers(0, 9)) == 0:  # a malformed head (section 8.1.1: a stream error)
        fields = [(":status", draw(statuses)), *draw(st.lists(bad_fields, max_size=1))]
    body = draw(st.binary(max_size=300))
    size = draw(st.integers(1, 300))
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    trailers = draw(st.booleans())
    if draw(st.booleans()):
        fields.append(("content-length", str(len(body))))
    end_on_headers = not chunks and not trailers
    frames = [
        raw_frame(
            HEADERS,
            END_HEADERS | (END_STREAM if end_on_headers else 0),
            stream_id,
            encode_headers(fields),
        )
    ]
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1 and not trailers
        frames.append(raw_frame(DATA, END_STREAM if last else 0, stream_id, chunk))
    if trailers:
        block = encode_headers([("x-checksum", "abc")])
        frames.append(raw_frame(HEADERS, END_HEADERS | END_STREAM, stream_id, block))
    return frames


def _padded(draw: st.DrawFn, flags: int, payload: bytes) -> bytes:
    if flags & PADDED:
        pad = draw(st.integers(0, 255))
        return bytes([pad]) + payload + b"\x00" * draw(st.integers(0, pad + 2))
    return payload


@st.composite
def data_frames(draw: st.DrawFn) -> bytes:
    flags = draw(st.sampled_from([0, END_STREAM, PADDED, END_STREAM | PADDED])) | (
        draw(any_flags) if draw(st.integers(0, 9)) == 0 else 0
    )
    payload = _padded(draw, flags, draw(st.binary(max_size=200)))
    return raw_frame(DATA, flags, draw(stream_ids), payload)


@st.composite
def headers_frames(draw: st.DrawFn) -> bytes:
    flags = draw(st.sampled_from([END_HEADERS, END_HEADERS | END_STREAM, 0, END_STREAM, any_flags]))
    if not isinstance(flags, int):
        flags = draw(flags)
    payload = draw(header_blocks())
    if flags & PRIORITY_FLAG:
        payload = draw(st.binary(min_size=5, max_size=5)) + payload
    payload = _padded(draw, flags, payload)
    return raw_frame(HEADERS, flags, draw(stream_ids), payload)


@st.composite
def continuation_frames(draw: st.DrawFn) -> bytes:
    flags = draw(st.sampled_from([0, END_HEADERS]))
    payload = draw(st.one_of(header_blocks(), small_payloads))
    return raw_frame(CONTINUATION, flags, draw(stream_ids), payload)


@st.composite
def split_header_blocks(draw: st.DrawFn) -> bytes:
    """HEADERS + CONTINUATION(s), sometimes interrupted, sometimes never ended."""
    stream_id = draw(request_ids)
    block = draw(header_blocks())
    cut = draw(st.integers(0, len(block)))
    frames = [raw_frame(HEADERS, draw(st.sampled_from([0, END_STREAM])), stream_id, block[:cut])]
    rest = block[cut:]
    pieces = draw(st.integers(1, 4))
    size = max(1, -(-len(rest) // pieces))
    parts = [rest[i : i + size] for i in range(0, len(rest), size)] or [b""]
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        end = last and draw(st.integers(0, 5)) > 0
        target = stream_id if draw(st.integers(0, 9)) else draw(stream_ids)
        frames.append(raw_frame(CONTINUATION, END_HEADERS if end else 0, target, part))
    return b"".join(frames)


@st.composite
def rst_stream_frames(draw: st.DrawFn) -> bytes:
    payload = struct.pack(">L", draw(error_codes))
    if draw(st.integers(0, 9)) == 0:
        payload = draw(small_payloads)
    return raw_frame(RST_STREAM, draw(any_flags), draw(stream_ids), payload)


@st.composite
def window_update_frames(draw: st.DrawFn) -> bytes:
    increment = draw(
        st.one_of(st.integers(0, 70000), st.sampled_from([0, 2**31 - 1, 2**31, 2**32 - 1]))
    )
    payload = struct.pack(">L", increment)
    if draw(st.integers(0, 9)) == 0:
        payload = draw(small_payloads)
    return raw_frame(WINDOW_UPDATE, 0, draw(stream_ids), payload)


settings_codes = st.one_of(st.sampled_from(list(SettingCodes)), st.integers(0, 0xFFFF))
settings_values = st.one_of(
    st.sampled_from([0, 1, 16383, 16384, 65535, 2**24 - 1, 2**24, 2**31 - 1, 2**31, 2**32 - 1]),
    st.integers(0, 2**32 - 1),
)


@st.composite
def settings_frames(draw: st.DrawFn) -> bytes:
    pairs = draw(st.lists(st.tuples(settings_codes, settings_values), max_size=4))
    payload = b"".join(struct.pack(">HL", code, value) for code, value in pairs)
    kind = draw(st.integers(0, 9))
    flags = 0
    if kind == 0:
        payload = draw(small_payloads)  # wrong length, most likely
    elif kind == 1:
        flags = 1  # ACK (unsolicited; maybe with a payload)
        payload = b"" if draw(st.booleans()) else payload
    stream_id = 0 if draw(st.integers(0, 9)) else draw(stream_ids)
    return raw_frame(SETTINGS, flags, stream_id, payload)


@st.composite
def ping_frames(draw: st.DrawFn) -> bytes:
    payload = draw(st.one_of(st.binary(min_size=8, max_size=8), small_payloads))
    stream_id = 0 if draw(st.integers(0, 9)) else draw(stream_ids)
    return raw_frame(PING, draw(st.sampled_from([0, 1, 0xFF])), stream_id, payload)


@st.composite
def goaway_frames(draw: st.DrawFn) -> bytes:
    last = draw(st.one_of(request_ids, st.sampled_from([0, 2**31 - 1]), st.integers(0, 2**32 - 1)))
    payload = struct.pack(">LL", last, draw(error_codes)) + draw(small_payloads)
    if draw(st.integers(0, 9)) == 0:
        payload = payload[: draw(st.integers(0, 7))]
    stream_id = 0 if draw(st.integers(0, 9)) else draw(stream_ids)
    return raw_frame(GOAWAY, 0, stream_id, payload)


@st.composite
def priority_frames(draw: st.DrawFn) -> bytes:
    payload = draw(st.one_of(st.binary(min_size=5, max_size=5), small_payloads))
    return raw_frame(PRIORITY, draw(any_flags), draw(stream_ids), payload)


@st.composite
def push_promise_frames(draw: st.DrawFn) -> bytes:
    promised = draw(st.one_of(st.sampled_from([2, 4, 6, 3, 0]), st.integers(0, 2**31 - 1)))
    request = [(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1")]
    request.append((":path", "/pushed"))
    block = encode_headers(request) if draw(st.booleans()) else draw(header_blocks())
    flags = draw(st.sampled_from([END_HEADERS, 0, END_HEADERS | PADDED]))
    payload = _padded(draw, flags, struct.pack(">L", promised) + block)
    return raw_frame(PUSH_PROMISE, flags, draw(stream_ids), payload)


@st.composite
def unknown_frames(draw: st.DrawFn) -> bytes:
    type_ = draw(st.integers(0x0A, 0xFF))
    return raw_frame(type_, draw(any_flags), draw(stream_ids), draw(st.binary(max_size=100)))


@st.composite
def lying_frames(draw: st.DrawFn) -> bytes:
    """A frame header whose declared length does not match what follows."""
    length = draw(st.one_of(st.integers(0, 300), st.sampled_from([2**14, 2**16, 2**24 - 1])))
    header = struct.pack(
        ">BHBBL", length >> 16, length & 0xFFFF, draw(st.integers(0, 12)), draw(any_flags), 1
    )
    return header + draw(st.binary(max_size=100))


@st.composite
def truncated(draw: st.DrawFn, frames: st.SearchStrategy[bytes]) -> bytes:
    frame = draw(frames)
    return frame[: draw(st.integers(0, max(0, len(frame) - 1)))]


garbage = st.binary(min_size=1, max_size=64)

# Frames a correct server may send: they must never fail anything but what they address.
benign_settings_pairs = st.one_of(
    st.tuples(st.just(SettingCodes.HEADER_TABLE_SIZE), st.integers(0, 65536)),
    st.tuples(st.just(SettingCodes.ENABLE_PUSH), st.just(0)),
    st.tuples(st.just(SettingCodes.MAX_CONCURRENT_STREAMS), st.integers(0, 200)),
    st.tuples(st.just(SettingCodes.INITIAL_WINDOW_SIZE), st.integers(0, 2**31 - 1)),
    st.tuples(st.just(SettingCodes.MAX_FRAME_SIZE), st.integers(2**14, 2**24 - 1)),
    st.tuples(st.just(SettingCodes.MAX_HEADER_LIST_SIZE), st.integers(0, 2**32 - 1)),
    st.tuples(st.integers(0x10, 0xFFFF), st.integers(0, 2**32 - 1)),  # unknown: ignored
)


@st.composite
def benign_frames(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 6))
    if kind == 0:
        pairs = draw(st.lists(benign_settings_pairs, max_size=3))
        return raw_frame(SETTINGS, 0, 0, b"".join(struct.pack(">HL", *p) for p in pairs))
    if kind == 1:
        return raw_frame(PING, 0, 0, draw(st.binary(min_size=8, max_size=8)))
    if kind == 2:
        target = draw(st.one_of(st.just(0), request_ids))
        return raw_frame(WINDOW_UPDATE, 0, target, struct.pack(">L", draw(st.integers(1, 2**16))))
    if kind == 3:
        target = draw(st.one_of(request_ids, st.sampled_from([7, 9, 11])))
        dependency = draw(st.sampled_from([d for d in (0, 1, 3, 5) if d != target]))
        payload = struct.pack(">LB", dependency, draw(st.integers(0, 255)))
        return raw_frame(PRIORITY, 0, target, payload)
    if kind == 4:
        return draw(unknown_frames())
    if kind == 5:
        code = draw(st.sampled_from(list(ErrorCodes)))
        return raw_frame(RST_STREAM, 0, draw(request_ids), struct.pack(">L", code))
    last = draw(st.sampled_from([0, 1, 3, 2**31 - 1]))
    return raw_frame(GOAWAY, 0, 0, struct.pack(">LL", last, draw(st.sampled_from([0, 2, 11]))))


# Anything at all: most of these fail a stream or the whole connection.
hostile_frames = st.one_of(
    data_frames(),
    headers_frames(),
    continuation_frames(),
    rst_stream_frames(),
    window_update_frames(),
    settings_frames(),
    ping_frames(),
    goaway_frames(),
    priority_frames(),
    push_promise_frames(),
    split_header_blocks(),
    lying_frames(),
    truncated(st.one_of(data_frames(), headers_frames(), settings_frames())),
    valid_responses().map(b"".join),  # a response on a stream that may be closed or idle
    garbage,
)


def _interleave(draw: st.DrawFn, sequences: list[list[bytes]]) -> list[bytes]:
    """Merge frame sequences in a random order, keeping each one's own order."""
    queues = [list(seq) for seq in sequences if seq]
    merged: list[bytes] = []
    while queues:
        queue = queues[draw(st.integers(0, len(queues) - 1))]
        merged.append(queue.pop(0))
        if not queue:
            queues.remove(queue)
    return merged


@st.composite
def frame_sequences(draw: st.DrawFn, requests: int) -> list[bytes]:
    """Mostly a correct server: responses (interleaved) to some of the ``requests`` and
    harmless control frames, with a few hostile frames mixed in."""
    answered = draw(st.permutations([1 + 2 * i for i in range(requests)]))
    answered = answered[: draw(st.integers(0, requests))]
    responses = [draw(valid_responses(stream_id)) for stream_id in answered]
    frames = _interleave(draw, [*responses, draw(st.lists(benign_frames(), max_size=4))])
    for hostile in draw(st.lists(hostile_frames, max_size=2)):
        frames.insert(draw(st.integers(0, len(frames))), hostile)
    return frames


@dataclass
class Script:
    """What the scripted server does once all requests have arrived."""

    requests: int
    uploads: list[int]  # request body sizes (0: a GET)
    frames: list[bytes]
    cuts: list[int]  # write boundaries, as fractions of 1000 of the whole script
    ending: str  # "close", "abort" or "hang"
    enable_push: bool
    payload: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.payload = b"".join(self.frames)

    def writes(self) -> list[bytes]:
        size = len(self.payload)
        points = sorted({size * cut // 1000 for cut in self.cuts} | {0, size})
        return [self.payload[a:b] for a, b in itertools.pairwise(points) if b > a]


@st.composite
def scripts(draw: st.DrawFn) -> Script:
    requests = draw(st.integers(1, MAX_REQUESTS))
    return Script(
        requests=requests,
        uploads=draw(
            st.lists(
                st.one_of(st.just(0), st.integers(1, 20_000)),
                min_size=requests,
                max_size=requests,
            )
        ),
        frames=draw(frame_sequences(requests)),
        cuts=draw(st.lists(st.integers(0, 1000), max_size=6)),
        ending=draw(st.sampled_from(["close", "close", "close", "abort", "abort", "hang"])),
        enable_push=draw(st.booleans()),
    )


# -- one example ----------------------------------------------------------------------------

_DISCONNECTED = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError)


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def _run_example(script: Script) -> None:
    tasks_before = len(anyio.get_running_tasks())
    fds_before = _open_fds()
    outcomes: list[object] = []
    durations: list[float] = []

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        for _ in range(script.requests):
            await peer.expect_request()
        for chunk in script.writes():
            await peer.send_raw(chunk)
        if script.ending == "hang":
            while True:  # read (and ignore) whatever comes, until the client leaves
                await peer.stream.receive()
        await peer.close(abort=script.ending == "abort")

    async def fetch(conn: h2any.Connection, index: int) -> None:
        started = anyio.current_time()
        try:
            size = script.uploads[index]
            response = await conn.request(
                "POST" if size else "GET", f"/{index}", body=b"u" * size if size else None
            )
            outcomes.append(await response.read())
        except Exception as exc:
            outcomes.append(exc)
        durations.append(anyio.current_time() - started)

    with anyio.fail_after(EXAMPLE_LIMIT):
        async with scripted_server(handler) as server:
            connection_error: BaseException | None = None
            try:
                async with h2any.Connection(
                    server.url, timeout=TIMEOUT, enable_push=script.enable_push
                ) as conn:
                    async with anyio.create_task_group() as tg:
                        for index in range(script.requests):
                            tg.start_soon(fetch, conn, index)
            except Exception as exc:
                connection_error = exc
            assert connection_error is None, f"the Connection block raised: {connection_error!r}"
    assert len(outcomes) == script.requests
    for outcome in outcomes:
        assert isinstance(outcome, bytes | h2any.H2anyError), f"untyped: {outcome!r}"
        event(f"outcome: {'completed' if isinstance(outcome, bytes) else type(outcome).__name__}")
    assert max(durations) < REQUEST_LIMIT, f"a request took {max(durations):.2f} s"
    assert len(anyio.get_running_tasks()) == tasks_before, "a task was left running"
    leaked = _open_fds() - fds_before
    assert not leaked, f"file descriptors left open: {leaked}"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(script=scripts())
def test_random_frame_sequences_never_escape_typed_errors(backend: str, script: Script) -> None:
    anyio.run(_run_example, script, backend=backend)
