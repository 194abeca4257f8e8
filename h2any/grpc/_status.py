"""gRPC status codes and the error a failed call raises."""

from __future__ import annotations

import enum
from typing import final

from .._exceptions import H2anyError
from ._metadata import Metadata

__all__ = ("RpcError", "StatusCode")


@final
class StatusCode(enum.IntEnum):
    """The outcome of a gRPC call: gRPC's status codes, with gRPC's names and numbers.

    An `IntEnum`, so ``StatusCode.NOT_FOUND == 5``; ``grpc.StatusCode.NOT_FOUND.value[0]``
    is the same number in grpcio.
    """

    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


@final
class RpcError(H2anyError):
    """A gRPC call ended with a status other than ``OK``: the server said so, or the call
    failed on this side (deadline, cancellation, a lost connection, a message too large).

    ``code()``, ``details()``, ``initial_metadata()`` and ``trailing_metadata()`` are
    methods, as on grpcio's ``grpc.aio.AioRpcError``. An error that came from h2any below
    (a [`StreamReset`][h2any.StreamReset], a
    [`ConnectionClosed`][h2any.ConnectionClosed], ...) is kept as ``__cause__``.
    """

    def __init__(
        self,
        code: StatusCode,
        details: str = "",
        initial_metadata: Metadata | None = None,
        trailing_metadata: Metadata | None = None,
    ) -> None:
        super().__init__(f"{code.name}: {details}" if details else code.name)
        self._code = code
        self._details = details
        self._initial_metadata = Metadata() if initial_metadata is None else initial_metadata
        self._trailing_metadata = Metadata() if trailing_metadata is None else trailing_metadata

    def __repr__(self) -> str:
        return f"<RpcError {self._code.name} details={self._details!r}>"

    def code(self) -> StatusCode:
        """The call's [`StatusCode`][h2any.grpc.StatusCode]."""
        return self._code

    def details(self) -> str:
        """The status message (``grpc-message``, percent-decoded), or one of h2any's own."""
        return self._details

    def initial_metadata(self) -> Metadata:
        """The metadata of the response headers (empty for a trailers-only response)."""
        return self._initial_metadata

    def trailing_metadata(self) -> Metadata:
        """The metadata that came with the status (the trailers, or a trailers-only
        response's headers)."""
        return self._trailing_metadata
