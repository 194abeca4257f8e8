"""An embedded HTTP/2 server for tests and demos.

Built on the sans-IO ``h2`` library and anyio, so it runs under asyncio and trio::

    from h2any.testing import serve, Request, Response

    async def app(request: Request) -> Response:
        return Response(200, headers=[("content-type", "text/plain")], body=b"hi")

    async with serve(app) as server:
        ...  # talk HTTP/2 to server.url

Without an ``app`` the server runs `default_app` (``/``, ``/echo``, ``/bytes/N``,
``/headers``).
"""

from ._server import App as App
from ._server import Request as Request
from ._server import Response as Response
from ._server import Server as Server
from ._server import ServerStats as ServerStats
from ._server import default_app as default_app
from ._server import serve as serve

__all__ = ("App", "Request", "Response", "Server", "ServerStats", "default_app", "serve")
