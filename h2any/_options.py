"""The keyword options a [`Client`][h2any.Client] passes to each connection it opens, typed.

``ConnectionOptions`` lists them for type checkers (``**connection_options:
Unpack[ConnectionOptions]``), so ``h2any.Client(verfy=False)`` is an error in the user's editor;
``check_options`` refuses a misspelt one at run time, at once.
The TypedDicts here must follow ``Connection.__init__`` and ``Client.__init__``: tests compare
them with the signatures.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any, TypedDict

# Unpack[...] of these TypedDicts types the **options of h2any's signatures, also at run time
# (typing.get_type_hints resolves them); anyio requires typing_extensions where typing lacks it.
if sys.version_info >= (3, 11):
    from typing import Unpack as Unpack
else:
    from typing_extensions import Unpack as Unpack

if TYPE_CHECKING:
    from ._auth import AuthTypes
    from ._config import RetryPolicy, TimeoutTypes, VerifyTypes
    from ._cookies import CookieTypes
    from ._flow import BaseFlowControlManager
    from ._headers import HeaderTypes
    from ._push import PushPolicy

__all__ = (
    "CLIENT_ARGUMENTS",
    "CLIENT_OPTIONS",
    "CONNECTION_OPTIONS",
    "ClientOptions",
    "ConnectOptions",
    "ConnectionOptions",
    "HyperOptions",
    "Unpack",
    "check_options",
)


class _TuningOptions(TypedDict, total=False):
    """The connection options that hyper's constructors do not name themselves (see
    ``HyperOptions``); ``ConnectionOptions`` adds those."""

    cert: str | tuple[str, str] | tuple[str, str, str] | None
    initial_window_size: int
    connection_window_size: int
    max_frame_size: int
    max_concurrent_streams: int | None
    max_decompressed_size: int | None
    push_policy: PushPolicy | None
    max_unclaimed_pushes: int
    keepalive_interval: float | None
    keepalive_timeout: float | None
    max_header_list_size: int
    frame_observer: Callable[[str, Any], None] | None
    engine: str | None


class ConnectionOptions(_TuningOptions, total=False):
    """The [`Connection`][h2any.Connection] options a [`Client`][h2any.Client] passes to every
    connection it opens (all optional; each means what it means for
    [`Connection`][h2any.Connection]).

    ``timeout`` and ``headers`` are not here: the Client takes them itself. A dict of options
    annotated with it has its names and types checked by type checkers:

    ```python
    options: h2any.ConnectionOptions = {"verify": False, "initial_window_size": 1 << 20}
    async with h2any.Client(**options) as client: ...
    ```

    Attributes:
        cert: a client certificate.
        initial_window_size: each stream's receive window.
        connection_window_size: the connection's receive window.
        max_frame_size: the largest DATA frame the server may send.
        max_concurrent_streams: a limit of our own on open streams.
        max_decompressed_size: the largest decoded body.
        push_policy: which pushes to accept.
        max_unclaimed_pushes: how many pushes may wait to be claimed.
        keepalive_interval: seconds of silence before a keepalive PING.
        keepalive_timeout: how long to wait for its acknowledgement.
        max_header_list_size: the largest header list accepted from the server.
        frame_observer: a debugging hook called with each frame.
        engine: ``"h2"`` or ``"jh2"``.
        verify: certificate verification: ``True``, a CA bundle path, an ``ssl.SSLContext``
            or ``False``.
        enable_push: accept server push.
        window_manager: the flow-control manager class.
        proxy: an HTTP proxy URL to tunnel through.
    """

    verify: VerifyTypes
    enable_push: bool
    window_manager: type[BaseFlowControlManager]
    proxy: str | None


class ConnectOptions(ConnectionOptions, total=False):
    """Every keyword option of [`Connection`][h2any.Connection]: ``ConnectionOptions`` plus
    ``timeout`` and ``headers`` (what [`connect`][h2any.connect] and
    [`h2any.sync.Connection`][h2any.sync.Connection] pass on)."""

    timeout: TimeoutTypes
    headers: HeaderTypes | None


class HyperOptions(_TuningOptions, total=False):
    """The connection options of the hyper shim's ``HTTP20Connection`` and
    ``HTTPConnection`` beyond the arguments they name as hyper did (``ssl_context``,
    ``window_manager``, ``enable_push``, proxy and ``timeout``): ``headers`` and the
    tuning options of [`Connection`][h2any.Connection]."""

    headers: HeaderTypes | None


class ClientOptions(ConnectionOptions, total=False):
    """The keyword arguments of [`Client`][h2any.Client] but ``event_hooks`` (which
    [`h2any.sync.Client`][h2any.sync.Client] takes itself, as blocking callables)."""

    base_url: str | None
    headers: HeaderTypes | None
    timeout: TimeoutTypes
    keepalive_expiry: float | None
    max_connections_per_origin: int
    max_http1_connections_per_origin: int
    http1: bool
    http2: bool
    retry_timeout: float | None
    retries: RetryPolicy | int | None
    trust_env: bool
    auth: AuthTypes | None
    cookies: CookieTypes | None
    follow_redirects: bool
    max_redirects: int


CONNECTION_OPTIONS: frozenset[str] = ConnectionOptions.__optional_keys__
CLIENT_OPTIONS: frozenset[str] = ClientOptions.__optional_keys__
# The keyword arguments Client.__init__ takes itself (for "did you mean" hints).
CLIENT_ARGUMENTS: frozenset[str] = CLIENT_OPTIONS - CONNECTION_OPTIONS | {"event_hooks"}


def check_options(
    owner: str, given: Iterable[str], allowed: Collection[str], others: Collection[str] = ()
) -> None:
    """Raise ``TypeError`` naming the first of ``given`` that is not in ``allowed``, and the
    nearest valid name (of ``allowed`` and ``others``, ``owner``'s named keyword arguments)
    when one is close enough."""
    for name in given:
        if name not in allowed:
            valid = sorted({*allowed, *others})
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"{owner} got an unexpected keyword argument {name!r}{hint}")
