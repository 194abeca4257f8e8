"""h2any: an HTTP/2 client for asyncio, trio and threads, built on anyio and h2."""

from __future__ import annotations

from ._auth import Auth as Auth
from ._auth import BasicAuth as BasicAuth
from ._auth import BearerAuth as BearerAuth
from ._auth import DigestAuth as DigestAuth
from ._client import Client as Client
from ._client import delete as delete
from ._client import get as get
from ._client import head as head
from ._client import options as options
from ._client import patch as patch
from ._client import post as post
from ._client import put as put
from ._client import request as request
from ._config import RetryPolicy as RetryPolicy
from ._config import Timeout as Timeout
from ._connection import Connection as Connection
from ._connection import PendingResponse as PendingResponse
from ._connection import connect as connect
from ._cookies import Cookies as Cookies
from ._duplex import DuplexStream as DuplexStream
from ._exceptions import BodyNotReplayable as BodyNotReplayable
from ._exceptions import ConnectError as ConnectError
from ._exceptions import ConnectionClosed as ConnectionClosed
from ._exceptions import ConnectionTerminated as ConnectionTerminated
from ._exceptions import ConnectTimeout as ConnectTimeout
from ._exceptions import DecodingError as DecodingError
from ._exceptions import FlowControlError as FlowControlError
from ._exceptions import H2anyError as H2anyError
from ._exceptions import HTTPStatusError as HTTPStatusError
from ._exceptions import HTTPVersionError as HTTPVersionError
from ._exceptions import InvalidRequest as InvalidRequest
from ._exceptions import PoolTimeout as PoolTimeout
from ._exceptions import ProtocolError as ProtocolError
from ._exceptions import ProxyError as ProxyError
from ._exceptions import ReadTimeout as ReadTimeout
from ._exceptions import StreamReset as StreamReset
from ._exceptions import TimeoutError as TimeoutError
from ._exceptions import TLSError as TLSError
from ._exceptions import TooManyRedirects as TooManyRedirects
from ._exceptions import WriteTimeout as WriteTimeout
from ._flow import AdaptiveFlowControlManager as AdaptiveFlowControlManager
from ._flow import BaseFlowControlManager as BaseFlowControlManager
from ._flow import FlowControlManager as FlowControlManager
from ._headers import Headers as Headers
from ._models import Request as Request
from ._options import ConnectionOptions as ConnectionOptions
from ._push import PushedStream as PushedStream
from ._response import Response as Response
from ._version import __version__ as __version__
from ._websocket import ExtendedConnectUnsupported as ExtendedConnectUnsupported
from ._websocket import WebSocket as WebSocket
from ._websocket import WebSocketClosed as WebSocketClosed
from ._websocket import WebSocketError as WebSocketError
from ._websocket import WebSocketHandshakeError as WebSocketHandshakeError
from ._websocket import WebSocketMessageTooBig as WebSocketMessageTooBig

__all__ = (
    "AdaptiveFlowControlManager",
    "Auth",
    "BaseFlowControlManager",
    "BasicAuth",
    "BearerAuth",
    "BodyNotReplayable",
    "Client",
    "ConnectError",
    "ConnectTimeout",
    "Connection",
    "ConnectionClosed",
    "ConnectionOptions",
    "ConnectionTerminated",
    "Cookies",
    "DecodingError",
    "DigestAuth",
    "DuplexStream",
    "ExtendedConnectUnsupported",
    "FlowControlError",
    "FlowControlManager",
    "H2anyError",
    "HTTPStatusError",
    "HTTPVersionError",
    "Headers",
    "InvalidRequest",
    "PendingResponse",
    "PoolTimeout",
    "ProtocolError",
    "ProxyError",
    "PushedStream",
    "ReadTimeout",
    "Request",
    "Response",
    "RetryPolicy",
    "StreamReset",
    "TLSError",
    "Timeout",
    "TimeoutError",
    "TooManyRedirects",
    "WebSocket",
    "WebSocketClosed",
    "WebSocketError",
    "WebSocketHandshakeError",
    "WebSocketMessageTooBig",
    "WriteTimeout",
    "__version__",
    "connect",
    "delete",
    "get",
    "head",
    "options",
    "patch",
    "post",
    "put",
    "request",
)
