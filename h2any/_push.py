"""Server push: promised streams, buffered per connection, claimed by the application.

The connection task records each PUSH_PROMISE it accepts as a :class:`PushedStream` and
feeds the promised stream's events into its own inbox, like any response. Pushes are off
unless ``enable_push=True``; promises for another origin are refused unless ``push_policy``
accepts them; at most ``max_unclaimed_pushes`` promises wait to be taken by
:meth:`Connection.get_pushes`, and the data of a push nobody has asked for is handed back to
the connection window at once, so unclaimed pushes never hold up other streams.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, final

import anyio
import anyio.lowlevel

from ._headers import Headers

if TYPE_CHECKING:
    from ._connection import Connection, _Stream
    from ._response import Response

__all__ = ("PushIterator", "PushPolicy", "PushedStream")


@final
class PushedStream:
    """A resource the server promised to push (PUSH_PROMISE), with the request it answers.

    Attributes:
        stream_id: the promised stream.
        parent_stream_id: the stream of the request that the push accompanies.
        method, scheme, authority, path: the promised request's pseudo-headers.
        request_headers: the promised request's other headers.
    """

    def __init__(
        self,
        connection: Connection,
        stream: _Stream,
        parent_stream_id: int,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        pseudo = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in headers
            if name[:1] == b":"
        }
        self.stream_id = stream.stream_id
        self.parent_stream_id = parent_stream_id
        self.method = pseudo.get(":method", "GET")
        self.scheme = pseudo.get(":scheme", "")
        self.authority = pseudo.get(":authority", "")
        self.path = pseudo.get(":path", "")
        self.request_headers = Headers._from_wire([f for f in headers if f[0][:1] != b":"])
        self._connection = connection
        self._stream = stream
        self.claimed = False  # get_response() or cancel() was called
        self.yielded = False  # get_pushes() has handed it out

    def __repr__(self) -> str:
        return f"<PushedStream {self.method} {self.path} stream {self.stream_id}>"

    async def get_response(self) -> Response:
        """Wait for the pushed response's headers and return it (read it like any other)."""
        connection = self._connection
        if not self.claimed:
            self.claimed = True
            connection._post(connection._cmd_claim_push, self._stream)
        return await connection._response(self._stream)

    async def cancel(self) -> None:
        """Refuse the push: RST_STREAM(CANCEL), and release whatever was buffered for it."""
        self.claimed = True
        self._connection._abandon(self._stream)
        await anyio.lowlevel.checkpoint()


PushPolicy = Callable[[PushedStream], bool]


@final
class PushIterator:
    """The async iterator :meth:`Connection.get_pushes` returns."""

    __slots__ = ("_capture_all", "_connection", "_stream_id")

    def __init__(self, connection: Connection, stream_id: int | None, capture_all: bool):
        self._connection = connection
        self._stream_id = stream_id
        self._capture_all = capture_all

    def __aiter__(self) -> PushIterator:
        return self

    async def __anext__(self) -> PushedStream:
        connection = self._connection
        promises = connection._push_promises
        stream_id = self._stream_id
        while True:
            for push in promises:
                if stream_id is None or push.parent_stream_id == stream_id:
                    promises.remove(push)
                    push.yielded = True
                    return push
            if not self._capture_all or connection._parents_done(stream_id):
                raise StopAsyncIteration
            await connection._wait_push_news()
