"""No stream starves another: responses nobody reads must not block a new stream's data.

Whatever set of streams is left unread, the connection window is returned as data arrives
(each unread stream buffers at most its own window), so a new request on the same
connection still gets its body. Each test runs with h2any's default windows (2 MiB per
stream, 16 MiB for the connection: nine unread 4 MiB bodies can fill 18 MiB) and with
tight ones (64 KiB each: one unread stream could fill the whole connection window), against
the embedded server and nghttpd.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from asgi_app import pattern_bytes
from conftest import NghttpdFactory, NghttpdServer

import h2any
from h2any.testing import serve

pytestmark = pytest.mark.anyio

BIG = 4 * 1024 * 1024
SMALL = 1024
TINY = 100
BIG_BODY = pattern_bytes(BIG)
SMALL_BODY = pattern_bytes(SMALL)
TINY_BODY = pattern_bytes(TINY)

WINDOWS = [
    pytest.param({}, id="default-windows"),
    pytest.param({"initial_window_size": 65535, "connection_window_size": 65535}, id="64k-windows"),
]
PEERS = ["embedded", "nghttpd"]


@dataclass
class Peer:
    url: str
    big: str
    small: str
    tiny: str


@pytest.fixture(scope="module")
def nghttpd_bodies(
    nghttpd_factory: NghttpdFactory, tmp_path_factory: pytest.TempPathFactory
) -> NghttpdServer:
    """nghttpd serving ``/big``, ``/small`` and ``/tiny`` (the /bytes/N pattern)."""
    root = tmp_path_factory.mktemp("starvation-docroot")
    for name, body in [("big", BIG_BODY), ("small", SMALL_BODY), ("tiny", TINY_BODY)]:
        Path(root / name).write_bytes(body)
    return nghttpd_factory(["-d", str(root)])  # the last -d wins


@asynccontextmanager
async def peer_of(kind: str, nghttpd_bodies: NghttpdServer) -> AsyncIterator[Peer]:
    if kind == "nghttpd":
        yield Peer(nghttpd_bodies.url, "/big", "/small", "/tiny")
    else:
        async with serve() as server:
            yield Peer(server.url, f"/bytes/{BIG}", f"/bytes/{SMALL}", f"/bytes/{TINY}")


@pytest.mark.parametrize("windows", WINDOWS)
@pytest.mark.parametrize("kind", PEERS)
async def test_nine_unread_downloads_do_not_starve_a_tenth_request(
    kind: str, windows: dict[str, Any], nghttpd_bodies: NghttpdServer
) -> None:
    with anyio.fail_after(15):
        async with (
            peer_of(kind, nghttpd_bodies) as peer,
            h2any.Connection(peer.url, **windows) as conn,
        ):
            unread = [await conn.request("GET", peer.big) for _ in range(9)]
            fresh = await conn.request("GET", peer.tiny)
            assert await fresh.read() == TINY_BODY
            for response in unread:
                assert await response.read() == BIG_BODY


@pytest.mark.parametrize("windows", WINDOWS)
@pytest.mark.parametrize("kind", PEERS)
async def test_twenty_concurrent_downloads_kept_then_read_one_by_one(
    kind: str, windows: dict[str, Any], nghttpd_bodies: NghttpdServer
) -> None:
    responses: list[h2any.Response] = []
    with anyio.fail_after(20):
        async with (
            peer_of(kind, nghttpd_bodies) as peer,
            h2any.Connection(peer.url, **windows) as conn,
        ):

            async def download() -> None:
                responses.append(await conn.request("GET", peer.big))

            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(download)
            assert len(responses) == 20
            for response in responses:
                assert await response.read() == BIG_BODY


@pytest.mark.parametrize("windows", WINDOWS)
@pytest.mark.parametrize("kind", PEERS)
async def test_a_hundred_unread_small_responses_do_not_starve_a_new_request(
    kind: str, windows: dict[str, Any], nghttpd_bodies: NghttpdServer
) -> None:
    with anyio.fail_after(15):
        async with (
            peer_of(kind, nghttpd_bodies) as peer,
            h2any.Connection(peer.url, **windows) as conn,
        ):
            unread = [await conn.request("GET", peer.small) for _ in range(100)]
            fresh = await conn.request("GET", peer.tiny)
            assert await fresh.read() == TINY_BODY
            for response in unread:
                assert await response.read() == SMALL_BODY
