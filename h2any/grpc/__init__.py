"""gRPC calls over h2any, on asyncio and trio, shaped like ``grpc.aio``'s channel API.

```python
import h2any.grpc

async with h2any.grpc.Channel("http://127.0.0.1:50051") as channel:
    say = channel.unary_unary("/helloworld.Greeter/SayHello")
    reply = await say(b"...", timeout=2.0)
```

Messages are ``bytes`` unless the multi-callable is given a ``request_serializer`` and a
``response_deserializer`` (protobuf's ``SerializeToString`` and ``FromString``).
"""

from __future__ import annotations

from ._call import EOF as EOF
from ._call import StreamStreamCall as StreamStreamCall
from ._call import StreamUnaryCall as StreamUnaryCall
from ._call import UnaryStreamCall as UnaryStreamCall
from ._call import UnaryUnaryCall as UnaryUnaryCall
from ._channel import Channel as Channel
from ._channel import StreamStreamMultiCallable as StreamStreamMultiCallable
from ._channel import StreamUnaryMultiCallable as StreamUnaryMultiCallable
from ._channel import UnaryStreamMultiCallable as UnaryStreamMultiCallable
from ._channel import UnaryUnaryMultiCallable as UnaryUnaryMultiCallable
from ._metadata import Metadata as Metadata
from ._status import RpcError as RpcError
from ._status import StatusCode as StatusCode

__all__ = (
    "EOF",
    "Channel",
    "Metadata",
    "RpcError",
    "StatusCode",
    "StreamStreamCall",
    "StreamStreamMultiCallable",
    "StreamUnaryCall",
    "StreamUnaryMultiCallable",
    "UnaryStreamCall",
    "UnaryStreamMultiCallable",
    "UnaryUnaryCall",
    "UnaryUnaryMultiCallable",
)
