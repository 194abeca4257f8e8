"""How h2any's own byte streams hand over what a receive took from the socket.

A receive that found bytes waiting still lets other tasks run before it returns them (anyio's
contract: a receive is a checkpoint, where a cancellation gets in). If that checkpoint is
cancelled, the bytes are already out of the socket -- or out of the TLS library -- and
losing them would corrupt the stream: they are kept, and the next receive returns them
first. A receive that had to wait returns at once: its wait was the checkpoint.
"""

from __future__ import annotations

import anyio.lowlevel

__all__ = ("HandOver",)


class HandOver:
    """Mixin of the streams in ``_socket.py`` and ``_tls.py``: ``_kept`` and `_hand_over`."""

    _kept: bytes = b""  # taken by a receive that was cancelled after taking them

    async def _hand_over(self, data: memoryview | bytes) -> bytes:
        """``data``, after a checkpoint; if that is cancelled, kept for the next receive."""
        self._kept = b""
        try:
            await anyio.lowlevel.checkpoint()
        except BaseException:
            self._kept = bytes(data)
            raise
        return data  # type: ignore[return-value]
