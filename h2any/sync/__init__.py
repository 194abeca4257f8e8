"""The blocking, thread-safe facade over h2any's async core.

``h2any.sync.Connection`` runs an ordinary :class:`h2any.Connection` in an event-loop thread
of its own; any number of threads may share it.
"""

from __future__ import annotations

from ._connection import Connection as Connection
from ._connection import Response as Response

__all__ = ("Connection", "Response")
