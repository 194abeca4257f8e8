"""Blocking gRPC calls for threads: [`h2any.grpc.Channel`][h2any.grpc.Channel] hosted in an
event-loop thread of its own (``import h2any.sync.grpc``)."""

from __future__ import annotations

from ..grpc import EOF as EOF
from ..grpc import Metadata as Metadata
from ..grpc import RpcError as RpcError
from ..grpc import StatusCode as StatusCode
from ..grpc._sync import Call as Call
from ..grpc._sync import Channel as Channel
from ..grpc._sync import StreamStreamMultiCallable as StreamStreamMultiCallable
from ..grpc._sync import StreamUnaryMultiCallable as StreamUnaryMultiCallable
from ..grpc._sync import UnaryStreamMultiCallable as UnaryStreamMultiCallable
from ..grpc._sync import UnaryUnaryMultiCallable as UnaryUnaryMultiCallable

__all__ = (
    "EOF",
    "Call",
    "Channel",
    "Metadata",
    "RpcError",
    "StatusCode",
    "StreamStreamMultiCallable",
    "StreamUnaryMultiCallable",
    "UnaryStreamMultiCallable",
    "UnaryUnaryMultiCallable",
)
