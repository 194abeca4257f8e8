"""Forms: data= (urlencoded) and files= (multipart/form-data, streamed from files in bounded
memory), checked server-side (parsed with the standard library, hashed) under hypercorn."""

from __future__ import annotations

import hashlib
import io
import json
import os

import anyio
import pytest
from client_app import AppServer, app_servers

import h2any
import h2any.sync
from h2any._body import PIECE_SIZE
from h2any._multipart import MultipartBody

__all__ = ("app_servers",)

pytestmark = pytest.mark.anyio

Servers = tuple[AppServer, AppServer]


class _CountingFile(io.FileIO):
    """A file that records every read size: proves the upload streams it."""

    def __init__(self, path: str) -> None:
        super().__init__(path, "rb")
        self.reads: list[int] = []

    def read(self, size: int = -1) -> bytes:
        self.reads.append(size)
        return super().read(size)


async def test_data_is_sent_form_urlencoded(app_servers: Servers) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        async with h2any.Client() as client:
            response = await client.post(
                one.http_url + "/form",
                data={"name": "Zoë & co", "n": 3, "flag": True, "many": ["a", "b"]},
            )
            seen = json.loads(await response.read())
    assert seen["content-type"] == "application/x-www-form-urlencoded"
    assert seen["fields"] == {
        "name": ["Zoë & co"],
        "n": ["3"],
        "flag": ["true"],
        "many": ["a", "b"],
    }


async def test_files_are_uploaded_as_multipart_and_hash_server_side(
    app_servers: Servers, tmp_path
) -> None:
    one, _ = app_servers
    big = os.urandom(3 * PIECE_SIZE + 12345)
    path = tmp_path / "big.bin"
    path.write_bytes(big)
    file = _CountingFile(str(path))
    with anyio.fail_after(20):
        async with h2any.Client() as client:
            try:
                response = await client.post(
                    one.http_url + "/multipart",
                    data={"title": "holiday"},
                    files={
                        "upload": file,
                        "note": ("note.txt", "héllo", "text/plain; charset=utf-8"),
                        "raw": b"\x00\x01",
                    },
                )
                seen = json.loads(await response.read())
            finally:
                file.close()
    parts = {part["name"]: part for part in seen["parts"]}
    assert list(parts) == ["title", "upload", "note", "raw"]
    assert parts["title"]["filename"] is None
    assert parts["title"]["text"] == "holiday"
    assert parts["upload"]["filename"] == "big.bin"
    assert parts["upload"]["content_type"] == "application/octet-stream"
    assert parts["upload"]["sha256"] == hashlib.sha256(big).hexdigest()
    assert parts["note"]["filename"] == "note.txt"
    assert parts["note"]["text"] == "héllo"
    assert parts["raw"]["length"] == 2
    # streamed: read in pieces of PIECE_SIZE, never whole
    assert file.reads
    assert all(size == PIECE_SIZE for size in file.reads)
    assert len(file.reads) >= 4


async def test_multipart_has_a_content_length_when_sizes_are_known(
    app_servers: Servers, tmp_path
) -> None:
    one, _ = app_servers
    path = tmp_path / "f.txt"
    path.write_bytes(b"abc" * 1000)
    with anyio.fail_after(10):
        async with h2any.Client() as client, await anyio.open_file(path, "rb") as afile:
            with path.open("rb") as file:
                response = await client.post(
                    one.http_url + "/inspect", files={"a": file, "b": ("b.txt", afile)}
                )
                seen = json.loads(await response.read())
    declared = int(seen["headers"]["content-length"][0])
    assert declared == seen["length"]
    assert seen["headers"]["content-type"][0].startswith("multipart/form-data; boundary=")


async def test_multipart_from_a_pipe_has_no_content_length(app_servers: Servers) -> None:
    one, _ = app_servers
    read_end, write_end = os.pipe()
    os.write(write_end, b"piped data")
    os.close(write_end)
    with anyio.fail_after(10), os.fdopen(read_end, "rb") as pipe:
        async with h2any.Client() as client:
            response = await client.post(one.http_url + "/multipart", files={"p": ("p", pipe)})
            seen = json.loads(await response.read())
    assert seen["parts"][0]["text"] == "piped data"


def test_multipart_body_layout_and_replay(tmp_path) -> None:
    path = tmp_path / "x"
    path.write_bytes(b"0123456789")

    async def collect(body: MultipartBody) -> bytes:
        return b"".join([piece async for piece in body])

    with path.open("rb") as file:
        file.seek(2)  # the body starts where the file is
        body = MultipartBody({"k": "v"}, {"f": ("x.bin", file, "application/x")}, b"BOUNDARY")
        first = anyio.run(collect, body)
        second = anyio.run(collect, body)  # replayable: the file is rewound
    assert first == second
    assert first == (
        b"--BOUNDARY\r\n"
        b'Content-Disposition: form-data; name="k"\r\n\r\n'
        b"v\r\n"
        b"--BOUNDARY\r\n"
        b'Content-Disposition: form-data; name="f"; filename="x.bin"\r\n'
        b"Content-Type: application/x\r\n\r\n"
        b"23456789\r\n"
        b"--BOUNDARY--\r\n"
    )
    assert body.length == len(first)
    assert body.seekable()


def test_bad_form_arguments_are_invalid_requests(tmp_path) -> None:
    with pytest.raises(h2any.InvalidRequest, match="open binary file, not object"):
        MultipartBody(None, {"f": object()})  # type: ignore[dict-item]
    with pytest.raises(h2any.InvalidRequest, match="not a tuple of 5"):
        MultipartBody(None, {"f": ("a", b"", None, {}, 1)})  # type: ignore[dict-item]
    text = tmp_path / "t.txt"
    text.write_text("x")
    with text.open("r") as handle, pytest.raises(h2any.InvalidRequest, match="binary mode"):
        MultipartBody(None, {"f": handle})
    with pytest.raises(h2any.InvalidRequest, match="form field value"):
        MultipartBody({"k": object()}, {"f": b""})


async def test_only_one_body_argument(app_servers: Servers) -> None:
    one, _ = app_servers
    with anyio.fail_after(10):
        async with h2any.Client() as client:
            with pytest.raises(h2any.InvalidRequest, match="content= or json="):
                await client.post(one.http_url + "/inspect", content=b"x", json={})
            with pytest.raises(h2any.InvalidRequest, match="json= or data="):
                await client.post(one.http_url + "/inspect", data={"a": "b"}, files=None, json=1)


def test_sync_client_uploads_a_file(app_servers: Servers, tmp_path) -> None:
    one, _ = app_servers
    data = os.urandom(PIECE_SIZE + 1)
    path = tmp_path / "s.bin"
    path.write_bytes(data)
    with h2any.sync.Client() as client, path.open("rb") as file:
        seen = json.loads(client.post(one.http_url + "/multipart", files={"s": file}).read())
    assert seen["parts"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    response = h2any.sync.post(one.http_url + "/form", data={"a": "1"})
    assert json.loads(response.content)["fields"] == {"a": ["1"]}
