"""A blocking facade object never closed does not keep the program from exiting.

Its loop runs in a daemon thread; once the interpreter finalizes, that thread no longer
runs, and a close from ``__del__`` would wait for it forever (it did: a script that made
an ``h2any.sync.Client`` and ended never exited). Objects still open when the program ends
are closed at exit, while the thread still runs: the server gets its GOAWAY.
"""

from __future__ import annotations

import sys

import anyio
import h2.events
import pytest
from scripted import ScriptedPeer, scripted_server

pytestmark = pytest.mark.anyio

USES = {
    "Connection": "conn = h2any.sync.Connection(URL, backend=BACKEND)\n"
    "print(conn.request('GET', '/').read())\n",
    "Client": "client = h2any.sync.Client(backend=BACKEND)\nprint(client.get(URL + '/').read())\n",
    # Not an exit case: close() itself once let the client's task group end before the
    # connection tasks had sent their GOAWAY (about two closes in three, on both loops).
    "Client, closed": "client = h2any.sync.Client(backend=BACKEND)\n"
    "print(client.get(URL + '/').read())\nclient.close()\n",
    "requests adapter": "import requests, h2any.contrib\n"
    "session = requests.Session()\n"
    "session.mount('http://', h2any.contrib.HTTP20Adapter())\n"
    "print(session.get(URL + '/').content)\n",
}


@pytest.mark.parametrize("use", list(USES))
@pytest.mark.parametrize("loop", ["asyncio", "trio"])
async def test_an_unclosed_object_lets_the_program_end_with_a_goodbye(use: str, loop: str) -> None:
    goodbye = anyio.Event()

    async def handler(peer: ScriptedPeer) -> None:
        await peer.handshake()
        request = await peer.expect_request()
        await peer.respond(request.stream_id, body=b"hi")
        await peer.wait_for(lambda event: isinstance(event, h2.events.ConnectionTerminated))
        goodbye.set()

    async with scripted_server(handler) as server:
        code = f"import h2any.sync\nURL = {server.url!r}\nBACKEND = {loop!r}\n{USES[use]}"
        with anyio.fail_after(30):
            result = await anyio.run_process([sys.executable, "-c", code], check=False)
            assert result.returncode == 0, result.stderr.decode()
            assert result.stdout == b"b'hi'\n"
            await goodbye.wait()


async def test_an_unused_client_lets_the_program_end() -> None:
    code = "import h2any.sync\nclient = h2any.sync.Client()\nprint('made')\n"
    with anyio.fail_after(30):
        result = await anyio.run_process([sys.executable, "-c", code], check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"made\n"
