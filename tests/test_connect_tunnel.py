"""A plain CONNECT (RFC 9113 section 8.5) through ``Connection.open_stream``: a tunnel to a
``host:port`` over one stream, carrying only ``:method`` and ``:authority``."""

from __future__ import annotations

import anyio
import pytest
from scripted import ScriptedPeer, scripted_server

import h2any

pytestmark = pytest.mark.anyio


async def test_a_plain_connect_names_only_its_target_and_tunnels_both_ways() -> None:
    seen: list[list[tuple[bytes, bytes]]] = []

    async def tunnel_to_upper(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        seen.append([(n, v) for n, v in request.headers if n.startswith(b":")])
        await peer.respond(request.stream_id, end=False)
        body = await peer.read_body(request.stream_id)
        await peer.send_data(request.stream_id, body.upper(), end=True)

    with anyio.fail_after(10):
        async with scripted_server(tunnel_to_upper) as server:
            async with h2any.Connection(server.url) as conn:
                async with conn.open_stream("CONNECT", "db.internal:5432") as stream:
                    response = await stream.response()
                    assert response.status == 200
                    await stream.send(b"select 1;")
                    await stream.send_eof()
                    assert await response.read() == b"SELECT 1;"
    assert seen == [[(b":method", b"CONNECT"), (b":authority", b"db.internal:5432")]]


@pytest.mark.parametrize("target", ["/path", "db.internal", "db.internal:http", "a b:80", "h:0"])
async def test_a_plain_connect_without_host_and_port_is_refused(target: str) -> None:
    with anyio.fail_after(10):
        async with scripted_server(lambda peer: peer.handshake()) as server:
            async with h2any.Connection(server.url) as conn:
                with pytest.raises(h2any.InvalidRequest, match="host:port"):
                    conn.open_stream("CONNECT", target)
