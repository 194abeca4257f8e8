"""Hostile or broken peers: each fault yields a typed ``h2any`` error, scoped per RFC 9113.

Every test drives the scripted h2 server (``tests/scripted.py``) into one fault and checks
three things:

* the request raises a *typed* error (an ``h2any.H2anyError`` subclass: never a bare
  ExceptionGroup, never an exception of h2, hpack, hyperframe or ssl);
* a **connection error** (RFC 9113 section 5.4.1) fails the whole connection: later
  requests on it raise too, and the client's GOAWAY carries the error code the RFC names;
* a **stream error** (section 5.4.2) fails only that stream: the client resets it with the
  error code the RFC names, and a second request on the same connection succeeds.

Each test names the RFC section that decides which kind of error the fault is.
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import h2.events
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from hyperframe.frame import Frame, RstStreamFrame
from scripted import (
    CONTINUATION,
    DATA,
    END_HEADERS,
    END_STREAM,
    HEADERS,
    PADDED,
    PING,
    PUSH_PROMISE,
    RST_STREAM,
    SETTINGS,
    WINDOW_UPDATE,
    HeaderPairs,
    ScriptedPeer,
    encode_headers,
    raw_frame,
    scripted_server,
)

import h2any

pytestmark = pytest.mark.anyio

MAX_WINDOW = 2**31 - 1
LIMIT = 10  # seconds any one test may take (the client's own timeouts are 10 s by default)

FaultSender = Callable[[ScriptedPeer, int], Awaitable[None]]


# -- helpers --------------------------------------------------------------------------------


def headers_frame(stream_id: int, headers: HeaderPairs, *, end_stream: bool = True) -> bytes:
    """One HEADERS frame carrying the whole (unvalidated) header block."""
    flags = END_HEADERS | (END_STREAM if end_stream else 0)
    return raw_frame(HEADERS, flags, stream_id, encode_headers(headers))


def window_update(stream_id: int, increment: int) -> bytes:
    return raw_frame(WINDOW_UPDATE, 0, stream_id, struct.pack(">L", increment))


def assert_typed(exc: BaseException) -> None:
    """The error is h2any's own: not an exception group, not h2's, hpack's or ssl's."""
    assert isinstance(exc, h2any.H2anyError), f"untyped error: {exc!r}"


async def outcome_of(call: Callable[[], Awaitable[object]]) -> object:
    """What ``call`` returned, or the exception it raised (cancellation passes through)."""
    try:
        return await call()
    except Exception as exc:
        return exc


async def failure_of(call: Callable[[], Awaitable[object]]) -> Exception:
    """The exception ``call`` raised; fails the test if it raised none."""
    result = await outcome_of(call)
    if not isinstance(result, Exception):
        pytest.fail(f"expected an error, got {result!r}")
    return result


async def get(
    conn: h2any.Connection,
    path: str = "/",
    *,
    method: str = "GET",
    body: object = None,
) -> bytes:
    """A request and its whole body."""
    response = await conn.request(method, path, body=body)  # type: ignore[arg-type]
    return await response.read()


def record_resets(peer: ScriptedPeer) -> dict[int, int]:
    """Record every RST_STREAM the client sends: stream id -> error code.

    ``peer.resets`` misses those for streams the server's h2 already considers closed (h2
    drops them silently), so the frames are observed as h2 parses them.
    """
    resets: dict[int, int] = {}
    receive_frame = peer.h2._receive_frame

    def spy(frame: Frame) -> object:
        if isinstance(frame, RstStreamFrame):
            resets[frame.stream_id] = frame.error_code
        return receive_frame(frame)

    peer.h2._receive_frame = spy  # type: ignore[method-assign]
    return resets


async def fault_fails_connection(
    send_fault: FaultSender,
    *,
    error_code: int,
    expected: type[h2any.H2anyError] = h2any.ProtocolError,
) -> None:
    """Send a request, inject a connection-level fault, and check the connection fails.

    The request raises ``expected`` with ``error_code``; a later request raises too; the
    client tells the server why in GOAWAY.
    """
    goaways: list[h2.events.ConnectionTerminated] = []

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await send_fault(peer, request.stream_id)
        await peer.wait_closed()
        if peer.goaway_received is not None:
            goaways.append(peer.goaway_received)

    with anyio.fail_after(LIMIT):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url) as conn:
                error = await failure_of(lambda: get(conn))
                assert_typed(error)
                assert isinstance(error, expected), repr(error)
                assert getattr(error, "error_code", None) == error_code, repr(error)
                again = await failure_of(lambda: get(conn, "/again"))
                assert_typed(again)
                assert isinstance(again, h2any.ProtocolError | h2any.ConnectionClosed)
                assert conn.is_closed
    assert goaways, "the client closed the connection without GOAWAY"
    assert goaways[0].error_code == error_code


async def fault_fails_stream(
    send_fault: FaultSender,
    *,
    reset_code: int | tuple[int, ...],
    first_body: bytes | None = None,
    method: str = "GET",
    body: bytes | None = None,
) -> Exception | None:
    """Send a request, inject a stream-level fault on its stream, check only it fails.

    The first request raises a typed stream error (``ProtocolError`` or ``StreamReset``:
    never a connection-wide one) unless ``first_body`` is given, in which case it must
    complete with that body (the fault came after its end). Either way the client resets
    the stream with ``reset_code`` (RFC 9113 section 5.4.2) and a second request on the
    same connection succeeds. Returns the first request's error.
    """
    resets: dict[int, int] = {}
    first_id: list[int] = []
    handler_done = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        seen = record_resets(peer)
        try:
            await peer.handshake()
            first = await peer.expect_request()
            first_id.append(first.stream_id)
            await send_fault(peer, first.stream_id)
            second = await peer.expect_request()
            await peer.respond(second.stream_id, body=b"still fine")
            await peer.wait_closed()  # the client's RST_STREAM may come after its request
        finally:
            resets.update(seen)
            handler_done.set()

    with anyio.fail_after(LIMIT):
        async with scripted_server(handler) as server:
            error = await _stream_fault_client(server.url, method, body, first_body)
            await handler_done.wait()
    expected = reset_code if isinstance(reset_code, tuple) else (reset_code,)
    assert resets.get(first_id[0]) in expected, (
        f"expected RST_STREAM {reset_code!r} on stream {first_id[0]}, server saw {resets}"
    )
    return error


async def _stream_fault_client(
    url: str, method: str, body: bytes | None, first_body: bytes | None
) -> Exception | None:
    """The client side of :func:`fault_fails_stream`."""
    error: Exception | None = None
    async with h2any.Connection(url) as conn:
        result = await outcome_of(lambda: get(conn, "/first", method=method, body=body))
        if isinstance(result, Exception):
            error = result
            assert_typed(error)
            assert not isinstance(error, h2any.ConnectionClosed), (
                f"a stream-level fault failed the whole connection: {error!r}"
            )
            assert isinstance(error, h2any.ProtocolError | h2any.StreamReset), repr(error)
            assert first_body is None, f"the complete response failed: {error!r}"
        else:
            assert first_body is not None, f"the faulty response was accepted: {result!r}"
            assert result == first_body
        assert await get(conn, "/second") == b"still fine"
        assert not conn.is_closed
    return error


# -- malformed frames (RFC 9113 section 6) --------------------------------------------------


async def test_data_frame_with_padding_longer_than_payload_is_a_connection_error() -> None:
    # Section 6.1: padding as long as the payload or longer -> connection error PROTOCOL_ERROR.
    async def fault(peer: ScriptedPeer, stream_id: int) -> None:
        await peer.send_raw(headers_frame(stream_id, [(":status", "200")], end_stream=False))
        await peer.send_raw(raw_frame(DATA, PADDED, stream_id, bytes([10]) + b"abc"))

    await fault_fails_connection(fault, error_code=ErrorCodes.PROTOCOL_ERROR)


async def test_headers_frame_with_padding_longer_than_payload_is_a_connection_error() -> None:
    # Section 6.2: same rule for HEADERS.
    async def fault(peer: ScriptedPeer, stream_id: int) -> None:
        block = encode_headers([(":status", "200")])
        payload = bytes([len(block) + 5]) + block
        await peer.send_raw(raw_frame(HEADERS, END_HEADERS | PADDED, stream_id, payload))

    await fault_fails_connection(fault, error_code=ErrorCodes.PROTOCOL_ERROR)


async def test_settings_frame_with_length_not_multiple_of_six_is_a_frame_size_error() -> None:
    # Section 6.5: a SETTINGS length other than a multiple of 6 -> connection error
    # FRAME_SIZE_ERROR.
    async def fault(peer: ScriptedPeer, stream_id: int) -> None:
        await peer.send_raw(raw_frame(SETTINGS, 0, 0, b"\x00\x03\x00\x00\x00\x64\x00"))

    await fault_fails_connection(fault, error_code=ErrorCodes.FRAME_SIZE_ERROR)


async def test_ping_frame_of_wrong_length_is_a_frame_size_error() -> None:
    # Section 6.7: a PING length other than 8 -> connection error FRAME_SIZE_ERROR.
    async def fault(peer: ScriptedPeer, stream_id: int) -> None:
        await peer.send_raw(raw_frame(PING, 0, 0, b"1234567"))

    await fault_fails_connection(fault, error_code=ErrorCodes.FRAME_SIZE_ERROR)


async def test_zero_window_update_on_a_stream_is_a_stream_error() -> None:
    # Section 6.9: an increment of 0 on a stream -> stream error PROTOCOL_ERROR.
    async def fault(peer: ScriptedPeer, stream_id: int) -> None:
        await peer.send_raw(window_update(stream_id, 0))

    await fault_fails_stream(fault, reset_code=ErrorCodes.PROTOCOL_ERROR)


async def test_zero_window_update_on_the_connection_is_a_connection_error() -> None:
    # Section 6.9: an increment of 0 on the connection window -> connection error
    # PROTOCOL_ERROR.
    async def fault(peer: ScriptedPeer, stream_id: int) -> None:
        await peer.send_raw(window_update(0, 0))

    await fault_fails_connection(fault, error_code=ErrorCodes.PROTOCOL_ERROR)


async def test_rst_stream_on_stream_zero_is_a_connection_error() -> None:
    # Section 6.4: RST_STREAM on stream 0 -> connection error PROTOCOL_ERROR.
    async def fault(peer: ScriptedPeer, stream_id: int) -> None:
        await peer.send_raw(raw_frame(RST_STREAM, 0, 0, struct.pack(">L", ErrorCodes.CANCEL)))

    await fault_fails_connection(fault, error_code=ErrorCodes.PROTOCOL_ERROR)


async def test_data_on_stream_zero_is_a_connection_error() -> None:
    # Section 6.1: DATA on stream 0 -> connection error PROTOCOL_ERROR.
    async def fault(peer: ScriptedPeer, stream_id: int) -> None:
        await peer.send_raw(raw_frame(DATA, 0, 0, b"nobody's"))

    await fault_fails_connection(fault, error_code=ErrorCodes.PROTOCOL_ERROR)


async def test_unknown_frame_types_are_ignored() -> None:
    # Sections 4.1 and 5.5: frames of unknown type MUST be ignored, on any stream.
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.send_raw(raw_frame(0xFA, 0xFF, 0, b"connection-level extension"))
        await peer.send_raw(raw_frame(0x0B, 0, request.stream_id, b"x" * 100))
        await peer.send_raw(raw_frame(0xFF, 0x01, 12345, b""))
        await peer.respond(request.stream_id, body=b"ignored them", end=False)
        await peer.send_raw(raw_frame(0x42, 0, request.stream_id, b"mid-body"))
        await peer.send_data(request.stream_id, b"", end=True)
        again = await peer.expect_request()
        await peer.respond(again.stream_id, body=b"again")

    with anyio.fail_after(LIMIT):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            response = await conn.request("GET", "/")
            assert await response.read() == b"ignored them"
            response = await conn.request("GET", "/again")
            assert await response.read() == b"again"
            assert not conn.is_closed


# -- invalid response headers (RFC 9113 section 8.2 and 8.3: malformed -> stream error) ---


async def test_uppercase_response_header_name_is_a_stream_error() -> None:
    # Section 8.2.1: uppercase field names make the response malformed; section 8.1.1:
    # malformed responses are stream errors of type PROTOCOL_ERROR.
    async def fault(peer: ScriptedPeer, stream_id: int) -> None:
        await peer.send_raw(headers_frame(stream_id, [(":status", "200"), ("X-Upper", "1")]))

    await fault_fails_stream(fault, reset_code=ErrorCodes.PROTOCOL_ERROR)


async def test_connection_specific_response_header_is_a_stream_error() -> None:
    # Section 8.2.2: connection-specific fields make the message malformed.
    async def fault(peer: ScriptedPeer, stream_id: int) -> None:
        await peer.send_raw(headers_frame(stream_id, [(":status", "200"), ("connection", "close")]))

    await fault_fails_stream(fault, reset_code=ErrorCodes.PROTOCOL_ERROR)


async def test_response_without_status_is_a_stream_error() -> None:
    # Section 8.3.2: a response without :status is malformed.
    async def fault(peer: ScriptedPeer, stream_id: int) -> None:
        await peer.send_raw(headers_frame(stream_id, [("content-type", "text/plain")]))

    await fault_fails_stream(fault, reset_code=ErrorCodes.PROTOCOL_ERROR)


async def test_pseudo_header_after_regular_header_is_a_stream_error() -> None:
    # Section 8.3: pseudo-header fields after regular ones make the message malformed.
    async def fault(peer: ScriptedPeer, stream_id: int) -> None:
        await peer.send_raw(headers_frame(stream_id, [("server", "x"), (":status", "200")]))

    await fault_fails_stream(fault, reset_code=ErrorCodes.PROTOCOL_ERROR)


async def test_non_numeric_status_is_a_stream_error() -> None:
    # Section 8.3.2 (:status carries the three-digit code of RFC 9110 section 15):
    # ":status: abc" is malformed, so a stream error -- never a ValueError.
    async def fault(peer: ScriptedPeer, stream_id: int) -> None:
        await peer.send_raw(headers_frame(stream_id, [(":status", "abc")]))

    await fault_fails_stream(fault, reset_code=ErrorCodes.PROTOCOL_ERROR)


# -- frames on closed streams (RFC 9113 section 5.1 and 6.1) -------------------------------


async def test_data_after_end_stream_fails_only_that_stream() -> None:
    # Section 6.1: DATA on a stream that is not "open" or "half-closed (local)" -> stream
    # error STREAM_CLOSED. (Section 5.1 would also allow a connection error for a fully
    # closed stream; h2any keeps the connection, as it does for late frames in general.)
    async def fault(peer: ScriptedPeer, stream_id: int) -> None:
        await peer.respond(stream_id, body=b"complete")
        await peer.send_raw(raw_frame(DATA, 0, stream_id, b"after the end"))

    await fault_fails_stream(fault, reset_code=ErrorCodes.STREAM_CLOSED, first_body=b"complete")


async def test_data_on_half_closed_remote_stream_fails_only_that_stream() -> None:
    # Section 5.1, half-closed (remote): frames other than WINDOW_UPDATE, PRIORITY and
    # RST_STREAM -> stream error STREAM_CLOSED. The server answered early (END_STREAM)
    # while the client was still uploading, then sent more DATA. The complete answer
    # alone already ends the upload (RFC 9113 section 8.1: RST_STREAM CANCEL); whichever
    # reaches the client's connection task first names the reset the server sees.
    async def fault(peer: ScriptedPeer, stream_id: int) -> None:
        await peer.respond(stream_id, body=b"early")
        await peer.send_raw(raw_frame(DATA, 0, stream_id, b"after the end"))

    error = await fault_fails_stream(
        fault,
        reset_code=(ErrorCodes.STREAM_CLOSED, ErrorCodes.CANCEL),
        first_body=b"early",
        method="POST",
        body=b"u" * 200_000,  # more than the default 64 KiB window: still uploading
    )
    assert error is None


# -- flow-control window overflow (RFC 9113 section 6.9.1) ----------------------------------


async def test_window_update_overflowing_a_stream_window_is_a_stream_error() -> None:
    # Section 6.9.1: a stream window past 2**31-1 -> RST_STREAM FLOW_CONTROL_ERROR.
    async def fault(peer: ScriptedPeer, stream_id: int) -> None:
        await peer.send_raw(window_update(stream_id, MAX_WINDOW))

    await fault_fails_stream(fault, reset_code=ErrorCodes.FLOW_CONTROL_ERROR)


async def test_window_update_overflowing_the_connection_window_is_a_connection_error() -> None:
    # Section 6.9.1: the connection window past 2**31-1 -> GOAWAY FLOW_CONTROL_ERROR.
    async def fault(peer: ScriptedPeer, stream_id: int) -> None:
        await peer.send_raw(window_update(0, MAX_WINDOW))

    await fault_fails_connection(fault, error_code=ErrorCodes.FLOW_CONTROL_ERROR)


# -- header floods and endless CONTINUATION (RFC 9113 sections 6.10, 10.5.1) ----------------


def flood_block(size: int) -> bytes:
    fields: list[tuple[str, str]] = [(":status", "200")]
    index = 0
    while sum(len(n) + len(v) + 3 for n, v in fields) < size:
        fields.append((f"x-flood-{index}", "v" * 1000))
        index += 1
    return encode_headers(fields)


def split_header_block(stream_id: int, block: bytes, frame_size: int, *, end: bool) -> bytes:
    pieces = [block[i : i + frame_size] for i in range(0, len(block), frame_size)]
    frames = [raw_frame(HEADERS, END_STREAM, stream_id, pieces[0])]
    frames += [raw_frame(CONTINUATION, 0, stream_id, piece) for piece in pieces[1:]]
    if end:
        last = frames[-1]
        frames[-1] = last[:4] + bytes([last[4] | END_HEADERS]) + last[5:]
    return b"".join(frames)


@pytest.mark.parametrize("frame_size", [16384, 65536], ids=["16KiB-frames", "64KiB-frames"])
async def test_header_list_above_max_header_list_size_fails_the_connection(
    frame_size: int,
) -> None:
    # Section 10.5.1: a field block larger than we accept may be discarded, but it "MUST be
    # processed to ensure a consistent connection state, unless the connection is closed":
    # h2any closes the connection (ENHANCE_YOUR_CALM, or PROTOCOL_ERROR when it stops at
    # the number of CONTINUATION frames before decoding).
    async def fault(peer: ScriptedPeer, stream_id: int) -> None:
        block = flood_block(1 << 20)
        await peer.send_raw(split_header_block(stream_id, block, frame_size, end=True))

    code = ErrorCodes.PROTOCOL_ERROR if frame_size == 16384 else ErrorCodes.ENHANCE_YOUR_CALM
    await fault_fails_connection(fault, error_code=code)


async def test_endless_tiny_continuation_frames_fail_the_connection_promptly() -> None:
    # Section 6.10: a header block must be followed by nothing but its CONTINUATION frames,
    # so a peer that never ends it blocks the whole connection: a connection error, raised
    # long before any read timeout (here 60 s).
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        block = encode_headers([(":status", "200")])
        await peer.send_raw(raw_frame(HEADERS, 0, request.stream_id, block))
        tiny = raw_frame(CONTINUATION, 0, request.stream_id, b"\x00")
        try:
            for _ in range(1000):
                await peer.send_raw(tiny * 100)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # the client hung up, as it should
        await peer.wait_closed()

    with anyio.fail_after(LIMIT):
        async with (
            scripted_server(handler) as server,
            h2any.Connection(server.url, timeout=h2any.Timeout(60)) as conn,
        ):
            error = await failure_of(lambda: get(conn))
            assert_typed(error)
            assert isinstance(error, h2any.ProtocolError), repr(error)
            with pytest.raises(h2any.H2anyError):
                await conn.request("GET", "/again")


# -- a peer that stops reading --------------------------------------------------------------


async def _endless_body(chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    piece = b"z" * chunk
    while True:
        yield piece


async def test_peer_that_stops_reading_socket_fails_upload_with_write_timeout() -> None:
    # The server opens every window wide, then never reads the socket again: once the
    # socket buffers are full, the upload makes no progress and the write timeout fires.
    # A connection that cannot write is dead: later requests fail too.
    stop = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake({SettingCodes.INITIAL_WINDOW_SIZE: MAX_WINDOW})
        await peer.send_raw(window_update(0, MAX_WINDOW - 65535))
        await peer.expect_request()
        await stop.wait()  # not reading: the client's writes back up

    with anyio.fail_after(LIMIT):
        async with scripted_server(handler) as server:
            # read=2: the follow-up request fails by the dead connection's write timeout or,
            # at the latest, by its own read timeout -- well inside LIMIT.
            async with h2any.Connection(server.url, timeout=h2any.Timeout(2, write=0.5)) as conn:
                error = await failure_of(lambda: get(conn, method="POST", body=_endless_body()))
                assert_typed(error)
                assert isinstance(error, h2any.WriteTimeout), repr(error)
                with pytest.raises(h2any.H2anyError):
                    await conn.request("GET", "/again")
            stop.set()


async def test_peer_that_never_opens_the_window_fails_only_that_upload() -> None:
    # The server reads but never grants window: the stream's upload stalls (flow control),
    # its write timeout fires, and the connection stays usable.
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        peer.auto_ack_data = False
        await peer.expect_request()
        again = await peer.expect_request()
        await peer.respond(again.stream_id, body=b"still fine")

    with anyio.fail_after(LIMIT):
        async with (
            scripted_server(handler) as server,
            h2any.Connection(server.url, timeout=h2any.Timeout(5, write=0.5)) as conn,
        ):
            error = await failure_of(lambda: get(conn, method="POST", body=_endless_body()))
            assert_typed(error)
            assert isinstance(error, h2any.WriteTimeout), repr(error)
            response = await conn.request("GET", "/again")
            assert await response.read() == b"still fine"


# -- GOAWAY, then frames for streams it disowned (RFC 9113 section 6.8) ---------------------


async def test_frames_after_goaway_for_streams_above_last_stream_id_are_ignored() -> None:
    # Section 6.8: streams above last_stream_id were not processed; the client fails them
    # as retryable. A server that answers them anyway must not disturb the streams it
    # promised to finish, nor raise anything untyped.
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        low = await peer.expect_request()
        high = await peer.expect_request()
        assert high.stream_id > low.stream_id
        await peer.goaway(last_stream_id=low.stream_id)
        await peer.respond(high.stream_id, body=b"disowned", end=False)
        await peer.send_raw(raw_frame(DATA, 0, high.stream_id, b"more disowned"))
        await peer.respond(low.stream_id, body=b"low")
        await peer.send_raw(raw_frame(DATA, END_STREAM, high.stream_id, b"end"))
        await peer.wait_closed()

    results: dict[str, object] = {}

    async def fetch(conn: h2any.Connection, name: str) -> None:
        results[name] = await outcome_of(lambda: get(conn, f"/{name}"))

    with anyio.fail_after(LIMIT):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with anyio.create_task_group() as tg:
                tg.start_soon(fetch, conn, "low")
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(fetch, conn, "high")
            assert results["low"] == b"low"
            high = results["high"]
            assert isinstance(high, h2any.ConnectionTerminated), repr(high)
            assert high.retryable
            with pytest.raises(h2any.ConnectionTerminated):
                await conn.request("GET", "/after")


# -- push while push is disabled (RFC 9113 section 6.6) -------------------------------------


async def test_push_promise_when_push_is_disabled_is_a_connection_error() -> None:
    # Section 6.6: PUSH_PROMISE after our SETTINGS_ENABLE_PUSH=0 was acknowledged ->
    # connection error PROTOCOL_ERROR. (The scripted server acknowledged our SETTINGS
    # before it saw the request, so the ACK precedes the PUSH_PROMISE on the wire.)
    async def fault(peer: ScriptedPeer, stream_id: int) -> None:
        promised = struct.pack(">L", 2)
        block = encode_headers(
            [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/p")]
        )
        await peer.send_raw(raw_frame(PUSH_PROMISE, END_HEADERS, stream_id, promised + block))

    await fault_fails_connection(fault, error_code=ErrorCodes.PROTOCOL_ERROR)


# -- settings changes mid-flight (RFC 9113 section 6.5.2, 6.9.2) ----------------------------


async def test_initial_window_size_change_making_windows_negative_is_honoured() -> None:
    # Section 6.9.2: lowering INITIAL_WINDOW_SIZE can make a stream window negative; the
    # sender must wait until WINDOW_UPDATE makes it positive again -- then finish.
    size = 300_000

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        peer.auto_ack_data = False
        request = await peer.expect_request()
        while len(request.body) < 65535:  # the client used up the default window
            await peer.next_events()
        peer.h2.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 16384})
        await peer.flush()
        await peer.wait_for(lambda e: isinstance(e, h2.events.SettingsAcknowledged))
        # The client's stream window is now 16384 - 65535 < 0: reopen it (and the
        # connection window), then let the automatic acknowledgements carry on.
        peer.h2.increment_flow_control_window(1 << 20, request.stream_id)
        peer.h2.increment_flow_control_window(1 << 20)
        await peer.flush()
        peer.auto_ack_data = True
        body = await peer.read_body(request.stream_id)
        await peer.respond(request.stream_id, body=str(len(body)).encode())

    with anyio.fail_after(LIMIT):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            response = await conn.request("POST", "/", body=b"w" * size)
            assert await response.read() == str(size).encode()


async def test_max_frame_size_lowered_mid_upload_is_honoured() -> None:
    # Section 6.5.2/6.5.3: once the client acknowledges the new MAX_FRAME_SIZE, none of
    # its frames may exceed it. The stream window (256 KiB) holds the upload back until
    # the change is acknowledged.
    size = 2_000_000
    window = 1 << 18
    seen: dict[str, list[int]] = {"before": [], "after": []}

    def lowered(ack: h2.events.SettingsAcknowledged) -> bool:
        change = ack.changed_settings.get(SettingCodes.MAX_FRAME_SIZE)
        return change is not None and change.new_value == 16384

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake(
            {SettingCodes.MAX_FRAME_SIZE: 1 << 20, SettingCodes.INITIAL_WINDOW_SIZE: window}
        )
        peer.h2.increment_flow_control_window(1 << 24)
        await peer.flush()
        peer.auto_ack_data = False
        request = await peer.expect_request()
        while len(request.body) < window:
            await peer.next_events()
        peer.h2.update_settings({SettingCodes.MAX_FRAME_SIZE: 16384})
        await peer.flush()
        await peer.wait_for(lambda e: isinstance(e, h2.events.SettingsAcknowledged) and lowered(e))
        peer.auto_ack_data = True
        peer.h2.acknowledge_received_data(len(request.body), request.stream_id)
        await peer.flush()
        body = await peer.read_body(request.stream_id)
        phase = "before"
        for event in peer.events:
            if isinstance(event, h2.events.SettingsAcknowledged) and lowered(event):
                phase = "after"
            elif isinstance(event, h2.events.DataReceived):
                seen[phase].append(event.flow_controlled_length or 0)
        await peer.respond(request.stream_id, body=str(len(body)).encode())

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size // 100_000):
            yield b"f" * 100_000

    with anyio.fail_after(LIMIT):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            response = await conn.request("POST", "/", body=body())
            assert await response.read() == str(size).encode()
    assert max(seen["before"]) > 16384  # large frames were in use before the change
    assert seen["after"], "the whole upload went out before the change"
    assert max(seen["after"]) <= 16384


async def test_a_huge_unfinished_header_block_is_refused_before_h2_buffers_it() -> None:
    # h2 would hold up to 64 CONTINUATION frames before giving up; with 1 MiB frames that
    # is 64 MiB for one header block. h2any stops once a block passes 2 MiB.
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        piece = b"\x00" * (1 << 20)
        await peer.send_raw(raw_frame(HEADERS, 0, request.stream_id, piece))
        try:
            for _ in range(5):
                await peer.send_raw(raw_frame(CONTINUATION, 0, request.stream_id, piece))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        await peer.wait_closed()

    with anyio.fail_after(LIMIT):
        async with (
            scripted_server(handler) as server,
            h2any.Connection(server.url, max_frame_size=1 << 20) as conn,
        ):
            error = await failure_of(lambda: get(conn))
            assert isinstance(error, h2any.ProtocolError)
            assert error.error_code == ErrorCodes.ENHANCE_YOUR_CALM
            assert "header block" in str(error)
