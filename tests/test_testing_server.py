"""Tests of the embedded server (h2any.testing), driven by a raw h2 client (not h2any)."""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from typing import Any

import anyio
import h2.config
import h2.connection
import h2.events
import h2.exceptions
import pytest
from anyio.abc import ByteStream
from anyio.streams.tls import TLSAttribute, TLSStream
from h2.errors import ErrorCodes

from h2any.testing import Request, Response, Server, default_app, serve

pytestmark = pytest.mark.anyio


def pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


@dataclass
class Result:
    stream_id: int
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    reset: ErrorCodes | int | None = None
    done: bool = False

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)


class RawClient:
    """A minimal single-task HTTP/2 client over an anyio byte stream."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.results: dict[int, Result] = {}
        self.uploads: dict[int, memoryview] = {}
        self.terminated: h2.events.ConnectionTerminated | None = None

    @classmethod
    async def connect(cls, server: Server, ssl_context: ssl.SSLContext | None = None) -> RawClient:
        stream: ByteStream = await anyio.connect_tcp("127.0.0.1", server.port)
        if ssl_context is not None:
            stream = await TLSStream.wrap(
                stream, hostname="localhost", ssl_context=ssl_context, standard_compatible=False
            )
        client = cls(stream)
        client.h2.initiate_connection()
        await client.flush()
        return client

    async def aclose(self) -> None:
        await self.stream.aclose()

    async def flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            await self.stream.send(data)

    def start(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> int:
        sid = self.h2.get_next_available_stream_id()
        hdrs = [
            (":method", method),
            (":path", path),
            (":scheme", "http"),
            (":authority", "localhost"),
            *(headers or []),
        ]
        self.h2.send_headers(sid, hdrs, end_stream=not body)
        if body:
            self.uploads[sid] = memoryview(body)
        self.results[sid] = Result(sid)
        return sid

    def _pump_uploads(self) -> None:
        for sid, view in list(self.uploads.items()):
            while view:
                size = min(
                    len(view),
                    self.h2.local_flow_control_window(sid),
                    self.h2.max_outbound_frame_size,
                )
                if size <= 0:
                    break
                self.h2.send_data(sid, view[:size], end_stream=size == len(view))
                view = view[size:]
            if view:
                self.uploads[sid] = view
            else:
                del self.uploads[sid]

    async def step(self) -> None:
        """Send what flow control allows, then read once and process the events."""
        self._pump_uploads()
        await self.flush()
        data = await self.stream.receive(65536)
        for event in self.h2.receive_data(data):
            self.handle(event)
        await self.flush()

    def handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            res = self.results[event.stream_id]
            for k, v in event.headers:
                assert isinstance(k, str)
                assert isinstance(v, str)
                if k == ":status":
                    res.status = int(v)
                else:
                    res.headers.append((k, v))
        elif isinstance(event, h2.events.DataReceived):
            self.results[event.stream_id].body += event.data
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.TrailersReceived):
            res = self.results[event.stream_id]
            res.trailers = [(str(k), str(v)) for k, v in event.headers]
        elif isinstance(event, h2.events.StreamEnded):
            self.results[event.stream_id].done = True
        elif isinstance(event, h2.events.StreamReset):
            res = self.results[event.stream_id]
            res.reset = event.error_code
            res.done = True
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.terminated = event

    async def wait(self, *sids: int) -> list[Result]:
        while not all(self.results[s].done for s in sids):
            await self.step()
        return [self.results[s] for s in sids]

    async def run_until_eof(self, raw: bool = False) -> None:
        """Keep reading (and, unless ``raw``, processing) until the stream raises."""
        while True:
            if raw:
                await self.stream.receive()
            else:
                await self.step()

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> Result:
        (res,) = await self.wait(self.start(method, path, body, headers))
        return res


async def test_get_root() -> None:
    with anyio.fail_after(10):
        async with serve() as server:
            assert server.url == f"http://127.0.0.1:{server.port}"
            client = await RawClient.connect(server)
            try:
                res = await client.request("GET", "/")
                assert res.status == 200
                assert res.header("content-type") == "text/plain; charset=utf-8"
                assert f"stream {res.stream_id}".encode() in res.body
                assert res.header("content-length") == str(len(res.body))

                res = await client.request("GET", "/nope")
                assert res.status == 404

                res = await client.request("GET", "/headers", headers=[("x-test", "1")])
                assert json.loads(res.body)["x-test"] == "1"

                res = await client.request("HEAD", "/bytes/10")
                assert res.status == 200
                assert res.body == b""
                assert res.header("content-length") == "10"
            finally:
                await client.aclose()
        assert server.stats.connections == 1
        assert server.stats.requests == 4
        assert server.stats.responses == 4
        assert server.stats.active_streams == 0


async def test_echo_1mib_upload() -> None:
    body = pattern(1 << 20)
    with anyio.fail_after(10):
        async with serve() as server:
            client = await RawClient.connect(server)
            try:
                res = await client.request(
                    "POST", "/echo", body, [("content-type", "application/x-test")]
                )
            finally:
                await client.aclose()
    assert res.status == 200
    assert res.header("content-type") == "application/x-test"
    assert bytes(res.body) == body
    # More than one default window's worth each way: flow control had to work.
    assert server.stats.bytes_received > 1 << 20
    assert server.stats.bytes_sent > 1 << 20


async def test_large_download() -> None:
    n = 5_000_000
    with anyio.fail_after(10):
        async with serve() as server:
            client = await RawClient.connect(server)
            try:
                res = await client.request("GET", f"/bytes/{n}")
            finally:
                await client.aclose()
    assert res.status == 200
    assert res.header("content-length") == str(n)
    assert len(res.body) == n
    assert bytes(res.body) == pattern(n)


async def test_100_concurrent_streams() -> None:
    in_flight = 0
    all_in = anyio.Event()

    async def app(request: Request) -> Response:
        nonlocal in_flight
        in_flight += 1
        if in_flight == 100:
            all_in.set()
        await all_in.wait()  # every handler is parked until all 100 run at once
        return Response(200, body=f"{request.stream_id}:".encode() + request.body)

    with anyio.fail_after(10):
        async with serve(app) as server:
            client = await RawClient.connect(server)
            try:
                sids = [client.start("POST", f"/{i}", body=str(i).encode()) for i in range(100)]
                results = await client.wait(*sids)
            finally:
                await client.aclose()
    for i, (sid, res) in enumerate(zip(sids, results, strict=True)):
        assert res.status == 200
        assert bytes(res.body) == f"{sid}:{i}".encode()
    assert server.stats.max_active_streams == 100


async def test_concurrent_large_downloads_share_window() -> None:
    sizes = [300_000, 1, 0, 200_000, 70_000]
    with anyio.fail_after(10):
        async with serve() as server:
            client = await RawClient.connect(server)
            try:
                sids = [client.start("GET", f"/bytes/{n}") for n in sizes]
                results = await client.wait(*sids)
            finally:
                await client.aclose()
    for n, res in zip(sizes, results, strict=True):
        assert bytes(res.body) == pattern(n)


async def test_handler_error_gives_500() -> None:
    async def app(request: Request) -> Response:
        if request.path == "/boom":
            raise RuntimeError("boom")
        return await default_app(request)

    with anyio.fail_after(10):
        async with serve(app) as server:
            client = await RawClient.connect(server)
            try:
                res = await client.request("GET", "/boom")
                assert res.status == 500
                res = await client.request("GET", "/bytes/3")  # still serving
                assert res.status == 200
                assert bytes(res.body) == b"\x00\x01\x02"
            finally:
                await client.aclose()
    assert server.stats.handler_errors == 1


async def test_trailers_and_invalid_response() -> None:
    async def app(request: Request) -> Response:
        if request.path == "/trailers":
            return Response(200, body=b"abc", trailers=[("x-checksum", "42")])
        return Response(200, headers=[(":foo", "x")], body=b"never")

    with anyio.fail_after(10):
        async with serve(app) as server:
            client = await RawClient.connect(server)
            try:
                res = await client.request("GET", "/trailers")
                assert bytes(res.body) == b"abc"
                assert res.trailers == [("x-checksum", "42")]
                res = await client.request("GET", "/invalid")
                assert res.reset == ErrorCodes.INTERNAL_ERROR
                res = await client.request("GET", "/trailers")
                assert res.status == 200
            finally:
                await client.aclose()


async def test_client_reset_cancels_handler() -> None:
    started = anyio.Event()
    cancelled = anyio.Event()

    async def app(request: Request) -> Response:
        if request.path != "/slow":
            return await default_app(request)
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    with anyio.fail_after(10):
        async with serve(app) as server:
            client = await RawClient.connect(server)
            try:
                sid = client.start("GET", "/slow")
                await client.flush()
                await started.wait()
                client.h2.reset_stream(sid, ErrorCodes.CANCEL)
                await client.flush()
                await cancelled.wait()
                res = await client.request("GET", "/")  # the connection lives on
                assert res.status == 200
                assert not client.results[sid].done
            finally:
                await client.aclose()
    assert server.stats.streams_reset == 1
    assert server.stats.handler_errors == 0


async def test_ping_and_goaway() -> None:
    with anyio.fail_after(10):
        async with serve() as server:
            client = await RawClient.connect(server)
            try:
                client.h2.ping(b"12345678")
                await client.flush()
                acked = False
                while not acked:
                    data = await client.stream.receive()
                    for event in client.h2.receive_data(data):
                        acked |= isinstance(event, h2.events.PingAckReceived)
                client.h2.close_connection()
                await client.flush()
                with pytest.raises(anyio.EndOfStream):  # the server hangs up
                    await client.run_until_eof(raw=True)
            finally:
                await client.aclose()


async def test_server_exit_sends_goaway_and_cancels_handlers() -> None:
    started = anyio.Event()
    cancelled = anyio.Event()

    async def app(request: Request) -> Response:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        raise AssertionError("unreachable")

    with anyio.fail_after(10):
        async with serve(app) as server:
            client = await RawClient.connect(server)
            client.start("GET", "/")
            await client.flush()
            await started.wait()
        assert cancelled.is_set()
        try:
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await client.run_until_eof()
            assert client.terminated is not None
            assert client.terminated.error_code == ErrorCodes.NO_ERROR
        finally:
            await client.aclose()


async def test_tls_alpn(certs: Any) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(certs.cert_path, certs.key_path)
    with anyio.fail_after(10):
        async with serve(ssl_context=server_ctx) as server:
            assert server.url == f"https://localhost:{server.port}"
            client = await RawClient.connect(server, certs.client_ssl_context())
            try:
                assert client.stream.extra(TLSAttribute.alpn_protocol) == "h2"
                res = await client.request("POST", "/echo", b"secret")
                assert bytes(res.body) == b"secret"
            finally:
                await client.aclose()


class _Boom(Exception):
    pass


async def test_an_error_in_the_block_escapes_as_itself() -> None:
    """What the user's ``async with serve()`` block raises leaves it unwrapped (no
    ExceptionGroup), with its own traceback and context, even with connections open."""
    error = _Boom("from the test's own code")

    async def use_the_server() -> None:
        async with serve() as server:
            client = await RawClient.connect(server)
            try:
                res = await client.request("GET", "/")
                assert res.status == 200
                raise error
            finally:
                await client.aclose()

    with anyio.fail_after(10), pytest.raises(_Boom) as info:
        await use_the_server()
    assert info.value is error
    assert type(info.value) is _Boom
    assert info.value.__context__ is None
    assert info.value.__cause__ is None
    assert any(
        entry.name == "test_an_error_in_the_block_escapes_as_itself" for entry in info.traceback
    )


async def test_an_error_raised_while_handling_another_keeps_its_context() -> None:
    async def use_the_server() -> None:
        async with serve():
            try:
                raise ValueError("first")
            except ValueError:
                raise KeyError("second") from None

    with anyio.fail_after(10), pytest.raises(KeyError) as info:
        await use_the_server()
    assert type(info.value.__context__) is ValueError
    assert info.value.__suppress_context__


async def test_cancelling_the_block_still_works() -> None:
    with anyio.fail_after(10):
        with anyio.move_on_after(0.05) as scope:
            async with serve():
                await anyio.sleep_forever()
    assert scope.cancelled_caught
