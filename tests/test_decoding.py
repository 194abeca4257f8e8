"""Content decoding: gzip, deflate (both forms), br, zstd, chains, and bad data."""

from __future__ import annotations

import anyio
import pytest
from asgi_app import encode_body, noisy_bytes

import h2any

pytestmark = pytest.mark.anyio

N = 300_000


def _each_frame(direction: str, frame: object) -> None:
    """A frame observer: with one, each DATA frame is its own chunk (frames of a stream that
    arrive in one read are otherwise joined), so a body of several frames comes in several
    chunks, each decoded as it comes."""


@pytest.mark.parametrize("coding", ["gzip", "deflate", "deflate-raw", "br", "zstd", "gzip-br"])
async def test_bodies_are_decoded_transparently(hypercorn_server, coding: str) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(hypercorn_server.url_h2c, frame_observer=_each_frame) as conn:
            response = await conn.request("GET", f"/encoded/{coding}?n={N}")
            assert await response.read() == noisy_bytes(N)
            async with conn.stream("GET", f"/encoded/{coding}?n={N}") as streamed:
                chunks = [chunk async for chunk in streamed.aiter_bytes()]
    assert b"".join(chunks) == noisy_bytes(N)
    assert len(chunks) > 1  # decoded as it arrives, not buffered whole


async def test_decode_content_false_gives_the_bytes_on_the_wire(hypercorn_server) -> None:
    encoding, payload = encode_body("gzip", noisy_bytes(N))
    with anyio.fail_after(10):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            response = await conn.request("GET", f"/encoded/gzip?n={N}")
            assert response.headers["content-encoding"] == encoding.decode()
            assert await response.read(decode_content=False) == payload
            # The raw bytes were kept, so the decoded body is still available.
            assert await response.read() == noisy_bytes(N)
            async with conn.stream("GET", f"/encoded/gzip?n={N}") as streamed:
                raw = b"".join([c async for c in streamed.aiter_bytes(decode_content=False)])
    assert raw == payload


async def test_accept_encoding_names_what_is_installed_and_user_value_wins(
    hypercorn_server,
) -> None:
    import json

    with anyio.fail_after(10):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            response = await conn.request("GET", "/headers")
            sent = dict(map(tuple, json.loads(await response.read())["headers"]))
            response = await conn.request(
                "GET", "/headers", headers={"Accept-Encoding": "identity"}
            )
            overridden = dict(map(tuple, json.loads(await response.read())["headers"]))
    assert sent["accept-encoding"] == "gzip, deflate, br, zstd"
    assert overridden["accept-encoding"] == "identity"


@pytest.mark.parametrize(
    ("coding", "message"),
    [
        ("truncated-gzip", "truncated"),
        ("corrupt-gzip", "invalid gzip"),
        ("unknown", "unsupported"),
    ],
)
async def test_bad_encoded_bodies_raise_decoding_error(
    hypercorn_server, coding: str, message: str
) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(hypercorn_server.url_h2c) as conn:
            response = await conn.request("GET", f"/encoded/{coding}?n={N}")
            with pytest.raises(h2any.DecodingError, match=message):
                await response.read()
            # The stream is closed; the connection carries on.
            response = await conn.request("GET", "/status/200")
            assert response.status == 200


async def test_decompression_bomb_is_refused_before_allocation(hypercorn_server) -> None:
    with anyio.fail_after(10):
        async with h2any.Connection(
            hypercorn_server.url_h2c, max_decompressed_size=1_000_000
        ) as conn:
            response = await conn.request("GET", "/encoded/bomb?n=50000000")
            with pytest.raises(h2any.DecodingError, match="max_decompressed_size"):
                await response.read()
            response = await conn.request("GET", f"/encoded/gzip?n={N}")
            assert await response.read() == noisy_bytes(N)
