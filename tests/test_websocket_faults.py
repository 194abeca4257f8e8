"""WebSockets over HTTP/2 against scripted h2 servers: what a well-behaved peer never does.

A server without SETTINGS_ENABLE_CONNECT_PROTOCOL, one that never answers the handshake,
one that answers a subprotocol nobody offered, one that floods messages while the
application reads nothing (the stream window must stop it), one that pings meanwhile, one
that sends a message in fragments, one that breaks the WebSocket framing, one that ends or
resets the stream. The server side speaks WebSocket frames with wsproto (as a server).
"""

from __future__ import annotations

import anyio
import h2.events
import h2.settings
import pytest
from scripted import ScriptedPeer, scripted_server
from wsproto import ConnectionType
from wsproto.connection import Connection as WSConnection
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

import h2any
from h2any._websocket import MESSAGE_OVERHEAD, QUEUE_HIGH_WATER, QUEUE_LIMIT

pytestmark = pytest.mark.anyio

ENABLE_CONNECT = {h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1}
STREAM_WINDOW = 256 * 1024  # the client's per-stream receive window in the flood tests


async def accept(peer: ScriptedPeer, headers: tuple[tuple[str, str], ...] = ()) -> int:
    """Handshake with extended CONNECT allowed, take the WebSocket request, answer 200."""
    await peer.handshake(ENABLE_CONNECT)
    request = await peer.expect_request()
    assert request.method == "CONNECT"
    assert request.header(":protocol") == b"websocket"
    assert request.header("sec-websocket-version") == b"13"
    await peer.respond(request.stream_id, 200, headers, end=False)
    return request.stream_id


async def client_frames(peer: ScriptedPeer, ws: WSConnection, stream_id: int) -> list[object]:
    """Read until the client's DATA on ``stream_id`` yields WebSocket events; return them."""
    while True:
        events = await peer.next_events()
        for event in events:
            if isinstance(event, h2.events.DataReceived) and event.stream_id == stream_id:
                ws.receive_data(event.data)
        found = list(ws.events())
        if found:
            return found


async def answer_close(peer: ScriptedPeer, ws: WSConnection, stream_id: int) -> None:
    """Wait for the client's close frame; answer it, with END_STREAM."""
    while True:
        for event in await client_frames(peer, ws, stream_id):
            if isinstance(event, CloseConnection):
                await peer.send_data(stream_id, ws.send(event.response()), end=True)
                return


async def test_a_server_without_extended_connect_gets_no_request() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()  # no SETTINGS_ENABLE_CONNECT_PROTOCOL

    with anyio.fail_after(10):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url) as conn:
                with pytest.raises(h2any.ExtendedConnectUnsupported, match="ENABLE_CONNECT"):
                    async with conn.websocket("/ws"):
                        pass
                with pytest.raises(h2any.ExtendedConnectUnsupported):
                    conn.open_stream("CONNECT", "/ws", protocol="websocket")
                # Still usable, and nothing reached the server.
                assert not conn.is_closed
            assert server.peers[0].requests == {}


async def test_a_handshake_never_answered_times_out_and_resets_the_stream() -> None:
    reset = anyio.Event()
    codes: dict[int, int] = {}

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake(ENABLE_CONNECT)
        await peer.expect_request()
        await peer.wait_for(lambda e: isinstance(e, h2.events.StreamReset))
        codes.update(peer.resets)
        reset.set()

    with anyio.fail_after(10):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url, timeout=h2any.Timeout(5, read=0.3)) as conn:
                with pytest.raises(h2any.ReadTimeout):
                    async with conn.websocket("/ws"):
                        pass
                await reset.wait()
                assert codes == {1: h2.errors.ErrorCodes.CANCEL}
                assert await conn.ping() >= 0


async def test_a_subprotocol_not_offered_is_a_handshake_error() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await accept(peer, (("sec-websocket-protocol", "evil"),))

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            with pytest.raises(h2any.WebSocketHandshakeError, match="evil") as caught:
                async with conn.websocket("/ws", subprotocols=["chat"]):
                    pass
            assert caught.value.status == 200
            assert caught.value.headers["sec-websocket-protocol"] == "evil"


async def test_a_flood_is_stopped_by_the_stream_window_and_pings_are_still_answered() -> None:
    """The application reads nothing: the server can send about one stream window beyond
    what the WebSocket holds, then its window stays shut; a PING it sends meanwhile is
    answered. Once the application reads, the rest flows."""
    message = b"m" * 1000
    total_messages = 4000  # ~4 MB: far more than the window and the queue together
    blocked = anyio.Event()
    ponged = anyio.Event()
    finished = anyio.Event()
    state: dict[str, int] = {}

    async def handler(peer: ScriptedPeer) -> None:
        stream_id = await accept(peer)
        ws = WSConnection(ConnectionType.SERVER)
        sent = 0
        pinged = False
        for n in range(total_messages):
            frame = ws.send(BytesMessage(data=message))
            if not pinged and sent > STREAM_WINDOW // 2:
                await peer.send_data(stream_id, ws.send(Ping(b"hi")))
                pinged = True
            while peer.h2.local_flow_control_window(stream_id) < len(frame):
                if not blocked.is_set():
                    state["blocked_after"] = sent
                    blocked.set()
                for event in await peer.next_events():
                    if isinstance(event, h2.events.DataReceived):
                        ws.receive_data(event.data)
                for event in ws.events():
                    if isinstance(event, Pong) and event.payload == b"hi":
                        ponged.set()
            await peer.send_data(stream_id, frame)
            sent += len(frame)
            state["sent"] = n + 1
        finished.set()
        await answer_close(peer, ws, stream_id)

    with anyio.fail_after(30):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url, initial_window_size=STREAM_WINDOW) as conn:
                async with conn.websocket("/ws") as ws:
                    await blocked.wait()
                    # The server's window shut while the application read nothing.
                    stats = ws.statistics()
                    held = stats["queued_bytes"] + stats["partial_bytes"]
                    assert state["blocked_after"] <= QUEUE_HIGH_WATER + 2 * STREAM_WINDOW
                    assert held <= QUEUE_HIGH_WATER + STREAM_WINDOW + len(message)
                    # The PING went out before the window shut: answered, unread data or not.
                    await ponged.wait()
                    for _ in range(total_messages):
                        assert await ws.receive() == message
                    await finished.wait()
                    assert ws.statistics()["queued_messages"] == 0


async def test_fragments_from_the_server_are_joined() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        stream_id = await accept(peer)
        ws = WSConnection(ConnectionType.SERVER)
        for piece, last in [("frag", False), ("ment", False), ("ed ✓", True)]:
            await peer.send_data(stream_id, ws.send(TextMessage(data=piece, message_finished=last)))
        for piece, last in [(b"\x00" * 70000, False), (b"\x01", True)]:
            await peer.send_data(
                stream_id, ws.send(BytesMessage(data=piece, message_finished=last))
            )
        await answer_close(peer, ws, stream_id)

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with conn.websocket("/ws") as ws:
                assert await ws.receive() == "fragmented ✓"
                assert await ws.receive() == b"\x00" * 70000 + b"\x01"


async def test_a_fragmented_message_too_big_closes_with_1009() -> None:
    close_seen = anyio.Event()
    codes: list[int] = []

    async def handler(peer: ScriptedPeer) -> None:
        stream_id = await accept(peer)
        ws = WSConnection(ConnectionType.SERVER)
        for _ in range(10):  # 10 fragments of 300 bytes: 3000 > 2000
            await peer.send_data(
                stream_id, ws.send(BytesMessage(data=b"x" * 300, message_finished=False))
            )
        for event in await client_frames(peer, ws, stream_id):
            if isinstance(event, CloseConnection):
                codes.append(event.code)
                await peer.send_data(stream_id, ws.send(event.response()), end=True)
                close_seen.set()

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with conn.websocket("/ws", max_message_size=2000) as ws:
                with pytest.raises(h2any.WebSocketMessageTooBig) as caught:
                    await ws.receive()
                assert caught.value.limit == 2000
                await close_seen.wait()
                assert codes == [1009]
                assert ws.close_code == 1009
                with pytest.raises(h2any.WebSocketError):
                    await ws.send("more")


async def test_a_broken_frame_fails_the_websocket_with_a_protocol_error() -> None:
    got_close = anyio.Event()
    codes: list[int] = []

    async def handler(peer: ScriptedPeer) -> None:
        stream_id = await accept(peer)
        # A frame with reserved opcode 0x3: the client must fail the WebSocket (1002).
        await peer.send_data(stream_id, b"\x83\x00")
        ws = WSConnection(ConnectionType.SERVER)
        for event in await client_frames(peer, ws, stream_id):
            if isinstance(event, CloseConnection):
                codes.append(event.code)
                got_close.set()

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with conn.websocket("/ws") as ws:
                with pytest.raises(h2any.ProtocolError, match="WebSocket protocol"):
                    await ws.receive()
                await got_close.wait()
                assert codes == [1002]
                assert ws.close_code == 1006


async def test_a_stream_ended_without_a_close_frame_is_closed_1006() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        stream_id = await accept(peer)
        ws = WSConnection(ConnectionType.SERVER)
        await peer.send_data(stream_id, ws.send(TextMessage(data="last words")), end=True)

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with conn.websocket("/ws") as ws:
                assert [message async for message in ws] == ["last words"]
                assert ws.close_code == 1006
                with pytest.raises(h2any.WebSocketClosed) as caught:
                    await ws.receive()
                assert caught.value.code == 1006


async def test_a_stream_reset_by_the_server_reaches_receive_and_send() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        stream_id = await accept(peer)
        await peer.reset(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with conn.websocket("/ws") as ws:
                with pytest.raises(h2any.StreamReset) as caught:
                    await ws.receive()
                assert caught.value.error_code == h2.errors.ErrorCodes.INTERNAL_ERROR
                with pytest.raises(h2any.StreamReset):
                    await ws.send("x")
            assert ws.close_code == 1006
            response = await conn.ping()
            assert response >= 0


async def test_a_server_close_is_answered_with_a_close_frame_and_end_stream() -> None:
    answered = anyio.Event()
    seen: list[object] = []

    async def handler(peer: ScriptedPeer) -> None:
        stream_id = await accept(peer)
        ws = WSConnection(ConnectionType.SERVER)
        await peer.send_data(stream_id, ws.send(CloseConnection(4000, "bye")))
        while not peer.requests[stream_id].ended:
            events = await peer.next_events()
            for event in events:
                if isinstance(event, h2.events.DataReceived):
                    ws.receive_data(event.data)
            seen.extend(ws.events())
        await peer.send_data(stream_id, b"", end=True)
        answered.set()

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with conn.websocket("/ws") as ws:
                with pytest.raises(h2any.WebSocketClosed) as caught:
                    await ws.receive()
                assert (caught.value.code, caught.value.reason, caught.value.remote) == (
                    4000,
                    "bye",
                    True,
                )
                await answered.wait()
            assert [(e.code, e.reason) for e in seen if isinstance(e, CloseConnection)] == [
                (4000, "bye")
            ]
            assert server.peers[0].resets == {}  # closed in order, not reset


async def test_a_flood_of_empty_messages_is_bounded_too() -> None:
    """Empty messages carry no payload but cost memory: each counts its overhead, and
    past QUEUE_LIMIT the WebSocket parses nothing more until the application reads."""
    blocked = anyio.Event()
    total = 80_000  # 2 bytes each on the wire: 160 KB, more than queue and window take

    async def handler(peer: ScriptedPeer) -> None:
        stream_id = await accept(peer)
        ws = WSConnection(ConnectionType.SERVER)
        frame = ws.send(BytesMessage(data=b""))
        batch = frame * 1000
        for _ in range(total // 1000):
            while peer.h2.local_flow_control_window(stream_id) < len(batch):
                blocked.set()
                await peer.next_events()
            await peer.send_data(stream_id, batch)
        await answer_close(peer, ws, stream_id)

    with anyio.fail_after(60):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url, initial_window_size=65535) as conn:
                async with conn.websocket("/ws") as ws:
                    await blocked.wait()
                    stats = ws.statistics()
                    assert stats["queued_bytes"] <= QUEUE_LIMIT + MESSAGE_OVERHEAD
                    assert stats["queued_messages"] <= QUEUE_LIMIT // MESSAGE_OVERHEAD + 1
                    for _ in range(total):
                        assert await ws.receive() == b""


async def test_timeout_total_bounds_the_handshake_only() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake(ENABLE_CONNECT)
        await peer.expect_request()  # and never answer

    timeout = h2any.Timeout(5, total=0.3)
    with anyio.fail_after(10):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url, timeout=timeout) as conn:
                with pytest.raises(h2any.ReadTimeout, match="total"):
                    async with conn.websocket("/ws"):
                        pass


async def test_a_connection_lost_under_a_websocket_reaches_receive() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        stream_id = await accept(peer)
        ws = WSConnection(ConnectionType.SERVER)
        await peer.send_data(stream_id, ws.send(TextMessage(data="before")))
        await peer.close()

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with conn.websocket("/ws") as ws:
                assert await ws.receive() == "before"
                with pytest.raises(h2any.ConnectionClosed):
                    await ws.receive()
                with pytest.raises(h2any.ConnectionClosed):
                    await ws.ping()
            assert ws.close_code == 1006


async def test_a_close_with_end_stream_is_still_answered_with_a_close_frame() -> None:
    """A server that ends its side with its close frame still gets ours (RFC 6455 5.5.1),
    on a DATA frame with END_STREAM: the stream ends in order, no reset."""
    answered = anyio.Event()
    seen: list[tuple[int, str]] = []

    async def handler(peer: ScriptedPeer) -> None:
        stream_id = await accept(peer)
        ws = WSConnection(ConnectionType.SERVER)
        await peer.send_data(stream_id, ws.send(CloseConnection(1001, "restart")), end=True)
        while not peer.requests[stream_id].ended:
            for event in await peer.next_events():
                if isinstance(event, h2.events.DataReceived):
                    ws.receive_data(event.data)
            seen.extend((e.code, e.reason) for e in ws.events() if isinstance(e, CloseConnection))
        answered.set()

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with conn.websocket("/ws") as ws:
                assert [message async for message in ws] == []
                assert (ws.close_code, ws.close_reason) == (1001, "restart")
                await answered.wait()
            assert seen == [(1001, "restart")]
            assert server.peers[0].resets == {}
            assert await conn.ping() >= 0
            assert conn.open_streams == 0


async def test_a_pong_answers_every_earlier_ping_and_a_missing_pong_times_out() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        stream_id = await accept(peer)
        ws = WSConnection(ConnectionType.SERVER)
        pings: list[bytes] = []
        while len(pings) < 3:
            pings += [
                bytes(e.payload)
                for e in await client_frames(peer, ws, stream_id)
                if isinstance(e, Ping)
            ]
        # RFC 6455 5.5.3: answering only the latest PING is allowed.
        await peer.send_data(stream_id, ws.send(Pong(pings[-1])))
        # The fourth PING gets no answer at all.
        await client_frames(peer, ws, stream_id)
        await answer_close(peer, ws, stream_id)

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            async with conn.websocket("/ws") as ws:
                async with anyio.create_task_group() as tg:
                    for data in (b"1", b"2"):
                        tg.start_soon(ws.ping, data)
                    await anyio.wait_all_tasks_blocked()
                    await ws.ping(b"3")

                async def unanswered() -> None:
                    with pytest.raises(h2any.ReadTimeout, match="no PONG"):
                        await ws.ping(b"4", timeout=0.3)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(unanswered)
                    await anyio.wait_all_tasks_blocked()
                    with pytest.raises(ValueError, match="already waiting"):
                        await ws.ping(b"4")


async def test_a_close_never_answered_gives_up_after_the_read_timeout() -> None:
    reset = anyio.Event()
    codes: dict[int, int] = {}

    async def handler(peer: ScriptedPeer) -> None:
        await accept(peer)
        await peer.wait_for(lambda e: isinstance(e, h2.events.StreamReset))
        codes.update(peer.resets)
        reset.set()

    timeout = h2any.Timeout(5, read=0.3)
    with anyio.fail_after(10):
        async with scripted_server(handler) as server:
            async with h2any.Connection(server.url, timeout=timeout) as conn:
                async with conn.websocket("/ws") as ws:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(ws.close, 4000, "bye")
                        await anyio.wait_all_tasks_blocked()
                        with pytest.raises(h2any.WebSocketClosed, match="closing"):
                            await ws.send("while closing")
                assert ws.close_code == 1006
                await reset.wait()
                assert codes == {1: h2.errors.ErrorCodes.CANCEL}


async def test_an_extension_that_was_not_offered_is_a_handshake_error() -> None:
    async def handler(peer: ScriptedPeer) -> None:
        await accept(peer, (("sec-websocket-extensions", "permessage-deflate"),))

    with anyio.fail_after(10):
        async with scripted_server(handler) as server, h2any.Connection(server.url) as conn:
            with pytest.raises(h2any.WebSocketHandshakeError, match="extensions"):
                async with conn.websocket("/ws"):
                    pass
