"""A server may answer before the request body is finished (RFC 9113 section 8.1).

``request()`` and ``stream()`` return the response as soon as its headers arrive while a
streamed body keeps uploading in the background; when the server has answered and will not
take the rest, the rest is abandoned cleanly (no WriteTimeout, the body source is closed)
and the connection keeps serving.

Peers: a scripted server that answers 413 after the first DATA and then stops reading (its
windows stay shut, no RST_STREAM), nghttpd ``--early-response`` (a complete response, then
RST_STREAM NO_ERROR), and a scripted server that sends a complete response then
RST_STREAM(NO_ERROR) in one write or two. A 64 MiB upload to a peer that stops reading
cannot finish, so getting the response at all proves it came early.

(hypercorn is not used: 0.18 drops the whole connection when DATA arrives for a stream
whose response it has finished -- ``KeyError`` in ``H2Protocol._handle_events``.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import anyio
import h2.events
import pytest
from asgi_app import pattern_bytes
from conftest import NghttpdFactory, NghttpdServer
from h2.errors import ErrorCodes
from scripted import ScriptedPeer, scripted_server

import h2any

pytestmark = pytest.mark.anyio

TOTAL = 64 * 1024 * 1024
PIECE = 64 * 1024
#: Far more than any window or send buffer on the way: the upload was cut short.
TAKEN_AT_MOST = TOTAL // 8
#: Longer than every hang guard here: an upload abandoned only when the write timeout
#: fires shows up as a hang, not as a pass.
PATIENT = h2any.Timeout(60)


class Upload:
    """A 64 MiB async generator body that records how much was taken and when it closed."""

    def __init__(self) -> None:
        self.yielded = 0
        self.closed = anyio.Event()

    async def chunks(self) -> AsyncIterator[bytes]:
        piece = b"u" * PIECE
        try:
            for _ in range(TOTAL // PIECE):
                self.yielded += PIECE
                yield piece
        finally:
            self.closed.set()


@dataclass
class EarlyPeer:
    url: str
    path: str
    status: int
    body: bytes
    next_path: str
    next_body: bytes
    server: object = None


async def answer_413_and_stop_reading(peer: ScriptedPeer) -> None:
    """413 after the first DATA of ``/upload``; received DATA is never acknowledged."""
    peer.auto_ack_data = False
    await peer.handshake()
    while True:
        request = await peer.expect_request()
        sid = request.stream_id
        if request.path == "/upload":
            await peer.wait_for(
                lambda e, sid=sid: isinstance(e, h2.events.DataReceived) and e.stream_id == sid
            )
            await peer.respond(sid, 413, [("content-type", "text/plain")], b"too large")
        else:
            await peer.respond(sid, body=b"next")


@asynccontextmanager
async def early_peer(kind: str, nghttpd_early: NghttpdServer) -> AsyncIterator[EarlyPeer]:
    if kind == "nghttpd-early-response":
        yield EarlyPeer(nghttpd_early.url, "/hello.txt", 200, b"hello, world\n", "/1b", b"x")
        return
    async with scripted_server(answer_413_and_stop_reading) as server:
        yield EarlyPeer(server.url, "/upload", 413, b"too large", "/next", b"next", server)


PEERS = ["scripted-413-stops-reading", "nghttpd-early-response"]


@pytest.fixture(scope="module")
def nghttpd_early(nghttpd_factory: NghttpdFactory) -> NghttpdServer:
    """nghttpd answering on the request HEADERS, then RST_STREAM(NO_ERROR)."""
    return nghttpd_factory(["--early-response"])


@pytest.fixture(scope="module")
def big_file_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("early") / "64m.bin"
    with path.open("wb") as file:
        file.truncate(TOTAL)  # sparse: 64 MiB of zeros that take no disk
    return path


@pytest.fixture
def big_file(big_file_path: Path) -> Iterator[BinaryIO]:
    with big_file_path.open("rb") as file:
        yield file


@pytest.mark.parametrize("api", ["request", "stream"])
@pytest.mark.parametrize("body_kind", ["async-generator", "sync-file"])
@pytest.mark.parametrize("peer_kind", PEERS)
async def test_early_answer_arrives_and_the_rest_of_the_upload_is_abandoned(
    peer_kind, body_kind, api, nghttpd_early, big_file
) -> None:
    upload = Upload()
    body = upload.chunks() if body_kind == "async-generator" else big_file
    with anyio.fail_after(5):
        async with (
            early_peer(peer_kind, nghttpd_early) as peer,
            h2any.Connection(peer.url, timeout=PATIENT) as conn,
        ):
            if api == "request":
                response = await conn.request("POST", peer.path, body=body)
                answer = response.status, await response.read()
            else:
                async with conn.stream("POST", peer.path, body=body) as response:
                    answer = response.status, await response.read()
            assert answer == (peer.status, peer.body)
            if body_kind == "async-generator":
                await upload.closed.wait()
                taken = upload.yielded
            else:
                taken = big_file.tell()
            assert taken < TAKEN_AT_MOST
            follow = await conn.request("GET", peer.next_path)
            assert await follow.read() == peer.next_body


async def test_abandoned_upload_stream_is_reset_not_left_open(nghttpd_early) -> None:
    upload = Upload()
    with anyio.fail_after(5):
        async with (
            early_peer("scripted-413-stops-reading", nghttpd_early) as peer,
            h2any.Connection(peer.url, timeout=PATIENT) as conn,
        ):
            response = await conn.request("POST", peer.path, body=upload.chunks())
            assert (response.status, await response.read()) == (413, b"too large")
            await upload.closed.wait()
            await conn.ping()  # a reset sent when the upload was dropped came before this
            assert peer.server.peers[0].resets.get(response.stream_id) in (
                ErrorCodes.CANCEL,
                ErrorCodes.NO_ERROR,
            )


@pytest.mark.parametrize("writes", ["one-write", "two-writes"])
async def test_complete_response_then_rst_no_error_is_still_fully_readable(writes) -> None:
    answer = pattern_bytes(50_000)

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        sid = request.stream_id
        await peer.wait_for(lambda e: isinstance(e, h2.events.DataReceived) and e.stream_id == sid)
        if writes == "two-writes":
            await peer.respond(sid, 200, body=answer)
            await peer.reset(sid, ErrorCodes.NO_ERROR)
        else:  # HEADERS, DATA..., END_STREAM and RST_STREAM all in one socket write
            peer.h2.send_headers(sid, [(":status", "200")])
            size = peer.h2.max_outbound_frame_size
            for start in range(0, len(answer), size):
                last = start + size >= len(answer)
                peer.h2.send_data(sid, answer[start : start + size], end_stream=last)
            peer.h2.reset_stream(sid, ErrorCodes.NO_ERROR)
            await peer.flush()
        following = await peer.expect_request()
        await peer.respond(following.stream_id, body=b"next")

    upload = Upload()
    with anyio.fail_after(5):
        async with (
            scripted_server(handler) as server,
            h2any.Connection(server.url, timeout=PATIENT) as conn,
        ):
            response = await conn.request("POST", "/upload", body=upload.chunks())
            assert response.status == 200
            assert await response.read() == answer
            await upload.closed.wait()
            assert upload.yielded < TAKEN_AT_MOST
            follow = await conn.request("GET", "/next")
            assert await follow.read() == b"next"
