"""Server push: the registry of promised streams, PushedStream, and get_pushes' iterator.

The connection task records each PUSH_PROMISE it accepts as a [`PushedStream`][h2any.PushedStream]
in the `PushRegistry` and feeds the promised stream's events into its own inbox, like any
response. Pushes are off unless ``enable_push=True``; promises for another origin are
refused unless ``push_policy`` accepts them; at most ``max_unclaimed_pushes`` promises wait
to be taken by [`Connection.get_pushes`][h2any.Connection.get_pushes]. A push's data counts against
the connection window only as it arrives (granted back at once), and against its own stream window
until read, so unclaimed pushes never hold up other streams and cost bounded memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, final

import anyio
import anyio.lowlevel

from ._config import Origin
from ._exceptions import ReadTimeout
from ._headers import headers_from_wire
from ._response import Response, receive_response

if TYPE_CHECKING:
    from ._stream import Stream

__all__ = ("PushIterator", "PushPolicy", "PushRegistry", "PushedStream")


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
        stream: Stream,
        parent_stream_id: int,
        headers: list[tuple[bytes, bytes]],
        max_decompressed_size: int | None = None,
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
        self.request_headers = headers_from_wire([f for f in headers if f[0][:1] != b":"])
        self._stream = stream
        self._max_decompressed_size = max_decompressed_size
        self.claimed = False  # get_response() or cancel() was called
        self.yielded = False  # get_pushes() has handed it out

    def __repr__(self) -> str:
        return f"<PushedStream {self.method} {self.path} stream {self.stream_id}>"

    async def get_response(self) -> Response:
        """Wait for the pushed response's headers and return it (read it like any other)."""
        self.claimed = True
        return await receive_response(self._stream, self._max_decompressed_size)

    async def cancel(self) -> None:
        """Refuse the push: RST_STREAM(CANCEL), and release whatever was buffered for it."""
        self.claimed = True
        self._stream.abandon()
        await anyio.lowlevel.checkpoint()


PushPolicy = Callable[[PushedStream], bool]


@final
class PushRegistry:
    """The promises accepted and not yet handed out, and the news of more (or of an end)."""

    __slots__ = (
        "_max_unclaimed",
        "_news",
        "_origin",
        "_policy",
        "parents_done",
        "promises",
        "read_timeout",
    )

    def __init__(
        self,
        origin: Origin,
        policy: PushPolicy | None,
        max_unclaimed: int,
        read_timeout: float | None,
    ) -> None:
        self._origin = origin
        self._policy = policy
        self._max_unclaimed = max_unclaimed
        self.read_timeout = read_timeout
        self.promises: deque[PushedStream] = deque()
        self._news: anyio.Event | None = None
        # Whether the parent stream (None: every open request) has ended; set by the task.
        self.parents_done: Callable[[int | None], bool] = lambda stream_id: True

    def accepts(self, push: PushedStream) -> bool:
        """Whether to keep this promise: the policy (default: our origin only) and room."""
        if self._policy is not None:
            accepted = bool(self._policy(push))
        else:
            origin = self._origin
            accepted = push.scheme == origin.scheme and push.authority == origin.authority
        return accepted and len(self.promises) < self._max_unclaimed

    def add(self, push: PushedStream) -> None:
        self.promises.append(push)
        self.news()

    def news(self) -> None:
        """Something changed (a promise, a stream's end, the connection's): wake iterators."""
        if self._news is not None:
            self._news.set()
            self._news = None

    def clear(self) -> None:
        self.promises.clear()
        self.news()

    async def wait_news(self) -> None:
        if self._news is None:
            self._news = anyio.Event()
        limit = self.read_timeout
        try:
            with anyio.fail_after(limit):
                await self._news.wait()
        except TimeoutError:
            raise ReadTimeout(f"no push promise nor end of stream within {limit} s") from None


@final
class PushIterator:
    """The async iterator [`Connection.get_pushes`][h2any.Connection.get_pushes] returns."""

    __slots__ = ("_capture_all", "_registry", "_stream_id")

    def __init__(self, registry: PushRegistry, stream_id: int | None, capture_all: bool):
        self._registry = registry
        self._stream_id = stream_id
        self._capture_all = capture_all

    def __aiter__(self) -> PushIterator:
        return self

    async def __anext__(self) -> PushedStream:
        registry = self._registry
        promises = registry.promises
        stream_id = self._stream_id
        while True:
            for push in promises:
                if stream_id is None or push.parent_stream_id == stream_id:
                    promises.remove(push)
                    push.yielded = True
                    return push
            if not self._capture_all or registry.parents_done(stream_id):
                raise StopAsyncIteration
            await registry.wait_news()
