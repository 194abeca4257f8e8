"""The bulk-download floor of an engine: what its state machine alone can receive.

64 MiB of 16 KiB DATA frames (nghttpd's frame size) are serialised by a server
``H2Connection``, then fed to a client ``H2Connection`` in 256 KiB reads, each DATA frame
acknowledged (as a client must); only the client's calls are timed. The best of three runs,
in MB/s (10^6 bytes/s); and the upload floor (``upload_floor``), the same 64 MiB sent by a
client ``H2Connection`` into a server's default 64 KiB windows::

    python benchmarks/bench_bulk_floor.py h2     # or jh2
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from typing import Any

SIZE = 64 << 20
FRAME = 16384
READ = 256 * 1024


def _pair(engine: str, client_window: int | None = None) -> tuple[Any, Any]:
    """A client and a server ``H2Connection`` of ``engine``, their prefaces and SETTINGS
    exchanged; the client's receive windows opened to ``client_window`` if given."""
    connection = importlib.import_module(f"{engine}.connection")
    config = importlib.import_module(f"{engine}.config")
    settings = importlib.import_module(f"{engine}.settings")
    client = connection.H2Connection(config.H2Configuration(client_side=True, header_encoding=None))
    server = connection.H2Connection(
        config.H2Configuration(client_side=False, header_encoding=None)
    )
    client.initiate_connection()
    if client_window is not None:
        client.update_settings({settings.SettingCodes.INITIAL_WINDOW_SIZE: client_window})
        client.increment_flow_control_window(client_window - 65535)
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return client, server


def floor(engine: str) -> float:
    events = importlib.import_module(f"{engine}.events")
    client, server = _pair(engine, client_window=2**31 - 1)
    request = [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", b"x"), (b":path", b"/")]
    client.send_headers(1, request, end_stream=True)
    server.receive_data(client.data_to_send())
    server.send_headers(1, [(b":status", b"200")])
    payload = os.urandom(FRAME)
    for sent in range(0, SIZE, FRAME):
        server.send_data(1, payload, end_stream=sent + FRAME >= SIZE)
    wire = memoryview(server.data_to_send())
    data_received = events.DataReceived
    started = time.perf_counter()
    received = 0
    for start in range(0, len(wire), READ):
        for event in client.receive_data(wire[start : start + READ].tobytes()):
            if type(event) is data_received:
                received += len(event.data)
                client.acknowledge_received_data(event.flow_controlled_length, 1)
        client.data_to_send()
    elapsed = time.perf_counter() - started
    assert received == SIZE, received
    return SIZE / elapsed / 1e6


def upload_floor(engine: str) -> float:
    """The bulk-upload floor: 64 MiB sent by a client ``H2Connection`` in 16 KiB DATA frames
    into the default 64 KiB windows of a server ``H2Connection``, which acknowledges every
    frame at once (its WINDOW_UPDATEs, as the engine batches them, go back to the client).
    Only the client's calls are timed: ``send_data`` and ``data_to_send`` for the frames,
    ``receive_data`` for the WINDOW_UPDATEs."""
    events = importlib.import_module(f"{engine}.events")
    client, server = _pair(engine)
    request = [
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"x"),
        (b":path", b"/"),
    ]
    client.send_headers(1, request)
    server.receive_data(client.data_to_send())
    payload = memoryview(os.urandom(SIZE))
    data_received = events.DataReceived
    timed = 0.0
    sent = 0
    while sent < SIZE:
        started = time.perf_counter()
        window = min(client.local_flow_control_window(1), SIZE - sent)
        while window > 0:
            size = min(window, FRAME)
            client.send_data(1, payload[sent : sent + size], end_stream=sent + size >= SIZE)
            sent += size
            window -= size
        wire = client.data_to_send()
        timed += time.perf_counter() - started
        for event in server.receive_data(wire):
            if type(event) is data_received:
                server.acknowledge_received_data(event.flow_controlled_length, 1)
        updates = server.data_to_send()
        started = time.perf_counter()
        client.receive_data(updates)
        timed += time.perf_counter() - started
    return SIZE / timed / 1e6


if __name__ == "__main__":
    engine = sys.argv[1] if len(sys.argv) > 1 else "h2"
    print(f"{engine} bulk floor: {max(floor(engine) for _ in range(3)):,.0f} MB/s")
    print(f"{engine} upload floor: {max(upload_floor(engine) for _ in range(3)):,.0f} MB/s")
