"""The blocking, thread-safe facade over h2any's async core.

``h2any.sync.Connection`` runs an ordinary [`h2any.Connection`][h2any.Connection] in an event-loop
thread of its own; any number of threads may share it. ``HTTP20Connection`` is a drop-in for the
abandoned ``hyper`` library's class of that name, built on the facade; ``HTTPConnection`` is
hyper's HTTP/2-or-HTTP/1.1 connection; and hyper's exception names (``StreamResetError``, ...)
are aliases of h2any's errors (docs/migrating-from-hyper.md has the table).
"""

from __future__ import annotations

from .._exceptions import ProtocolError as ProtocolError
from .._exceptions import ProxyError as ProxyError
from ._client import Client as Client
from ._client import delete as delete
from ._client import get as get
from ._client import head as head
from ._client import options as options
from ._client import patch as patch
from ._client import post as post
from ._client import put as put
from ._client import request as request
from ._connection import Connection as Connection
from ._connection import DuplexStream as DuplexStream
from ._connection import PushedStream as PushedStream
from ._connection import Response as Response
from ._hyper import ChunkedDecodeError as ChunkedDecodeError
from ._hyper import HPACKDecodingError as HPACKDecodingError
from ._hyper import HPACKEncodingError as HPACKEncodingError
from ._hyper import HTTP11Response as HTTP11Response
from ._hyper import HTTP20Connection as HTTP20Connection
from ._hyper import HTTP20Error as HTTP20Error
from ._hyper import HTTP20Push as HTTP20Push
from ._hyper import HTTP20Response as HTTP20Response
from ._hyper import HTTPConnection as HTTPConnection
from ._hyper import HTTPHeaderMap as HTTPHeaderMap
from ._hyper import HTTPVersion as HTTPVersion
from ._hyper import InvalidResponseError as InvalidResponseError
from ._hyper import LineTooLongError as LineTooLongError
from ._hyper import SocketError as SocketError
from ._hyper import StreamResetError as StreamResetError
from ._websocket import WebSocket as WebSocket

__all__ = (
    "ChunkedDecodeError",
    "Client",
    "Connection",
    "DuplexStream",
    "HPACKDecodingError",
    "HPACKEncodingError",
    "HTTP11Response",
    "HTTP20Connection",
    "HTTP20Error",
    "HTTP20Push",
    "HTTP20Response",
    "HTTPConnection",
    "HTTPHeaderMap",
    "HTTPVersion",
    "InvalidResponseError",
    "LineTooLongError",
    "ProtocolError",
    "ProxyError",
    "PushedStream",
    "Response",
    "SocketError",
    "StreamResetError",
    "WebSocket",
    "delete",
    "get",
    "head",
    "options",
    "patch",
    "post",
    "put",
    "request",
)
