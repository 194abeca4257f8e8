"""What one ``Client.request()`` sends: redirects, auth answers, cookies and event hooks.

# Theory of operation
#
# A call to Client.request() may put several requests on the wire: the one asked for, the
# answer to an authentication challenge (at most one per hop), and one per redirect followed.
# Each goes through Client._send (one request to one origin, with the pool's retries); this
# module decides what to send next and what each request carries:
#
# * the hop's base request holds the caller's headers (and the client's defaults); what is
#   added for one send -- the Cookie header from the jar, the auth flow's Authorization -- goes
#   on a copy (the "wire" request, which event hooks see), so nothing added for one origin
#   leaks into the next hop;
# * auth and the request's own cookies= apply while the hop's origin (scheme, host, port) is
#   the original request's; a redirect elsewhere, https -> http included, drops them and the
#   caller's own Authorization, Cookie and Host headers;
# * cookies from the jar follow the jar's rules (domain, path, secure, expiry) per hop, and
#   every response's Set-Cookie fields are stored, redirects and 401s included;
# * 303 (and 301/302 after POST) turn into GET without a body; 307/308 send the body again,
#   which needs a body that can be replayed: bytes, a seekable file, a multipart body of
#   seekable files. A one-shot body is BodyNotReplayable, never a silently empty body;
# * a response that is not returned (a redirect followed, a challenge answered) is read, at
#   most INTERMEDIATE_BODY_LIMIT bytes, then closed; it stays in response.history.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from ._auth import Auth
from ._body import BodyTypes, replay_position, rewind
from ._config import Origin, Timeout, mask_url
from ._cookies import Cookies, cookie_header, store_cookies
from ._exceptions import BodyNotReplayable, H2anyError, InvalidRequest, TooManyRedirects
from ._headers import Headers
from ._models import Request

if TYPE_CHECKING:
    from ._client import Client
    from ._response import Response

__all__ = (
    "INTERMEDIATE_BODY_LIMIT",
    "REDIRECT_STATUSES",
    "EventHooks",
    "check_event_hooks",
    "send_chain",
)

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: How much of a response that is not returned (a redirect, a 401 answered) is read before it
#: is closed; more is not waited for (the stream is reset).
INTERMEDIATE_BODY_LIMIT = 64 * 1024

#: ``event_hooks=``: ``{"request": [hook, ...], "response": [hook, ...]}``.
EventHooks = Mapping[str, Sequence[Callable[[Any], Any]]]
# Headers that belong to the body: dropped when a redirect turns the request into a GET.
_BODY_HEADERS = ("content-type", "content-length", "content-encoding", "transfer-encoding")
# Headers that belong to the origin: dropped when a redirect leaves it.
_ORIGIN_HEADERS = ("authorization", "cookie", "host")


def check_event_hooks(hooks: EventHooks | None) -> dict[str, list[Callable[[Any], Any]]]:
    """``event_hooks=`` as a ``{"request": [...], "response": [...]}`` dict of lists."""
    result: dict[str, list[Callable[[Any], Any]]] = {"request": [], "response": []}
    for name, callables in (hooks or {}).items():
        if name not in result:
            raise ValueError(f"event_hooks keys are 'request' and 'response', not {name!r}")
        if callable(callables):
            raise TypeError(f"event_hooks[{name!r}] must be a list of callables")
        for hook in callables:
            if not callable(hook):
                raise TypeError(f"event_hooks[{name!r}] holds {hook!r}, which is not callable")
            result[name].append(hook)
    return result


def _without(headers: Headers, names: Sequence[str]) -> Headers:
    if not any(name in headers for name in names):
        return headers
    return Headers([(n, v) for n, v in headers if n not in names])


def _rewind(body: BodyTypes, position: int | None, request: Request, why: str) -> BodyTypes:
    if body is None:
        return None
    if position is None:
        raise BodyNotReplayable(
            f"{request.method} {mask_url(request.url)}: the request must be sent again ({why}) "
            "but its body was a one-shot source (an iterator or a pipe) already sent; pass "
            "bytes or a seekable file",
            request=request,
        )
    return rewind(body, position)


async def send_chain(
    client: Client,
    request: Request,
    origin: Origin,
    target: str,
    body: BodyTypes,
    *,
    auth: Auth | None,
    cookies: Cookies | None,
    follow_redirects: bool,
    timeout: Timeout,
) -> Response:
    """Send ``request`` and what it leads to (see the module notes); the final response, with
    the others in its ``history``. ``origin`` and ``target`` are those of ``request.url``."""
    first_origin = origin
    history: list[Response] = []
    replay_from = replay_position(body)
    sent = False
    redirects = 0
    while True:
        same_origin = origin == first_origin
        if sent:
            body = _rewind(body, replay_from, request, "to follow a redirect")
        response = await _send_with_auth(
            client,
            request,
            origin,
            target,
            body,
            auth if same_origin else None,
            cookies if same_origin else None,
            timeout,
            replay_from,
            history,
        )
        sent = True
        location = response.headers.get("location")
        if not follow_redirects or response.status not in REDIRECT_STATUSES or location is None:
            response.history = history
            return response
        try:
            if redirects >= client.max_redirects:
                raise TooManyRedirects(
                    f"more than {client.max_redirects} redirects; the last from "
                    f"{request.method} {mask_url(request.url)}",
                    request=request,
                )
            request, origin, target, keep_body = _redirect_request(
                client, request, origin, response.status, location
            )
        finally:
            await discard(response)
        history.append(response)
        redirects += 1
        if not keep_body:
            body, replay_from, sent = None, 0, False


def _redirect_request(
    client: Client, request: Request, origin: Origin, status: int, location: str
) -> tuple[Request, Origin, str, bool]:
    """The request a redirect asks for (with its origin and target), and whether it keeps
    the body."""
    try:
        url = urljoin(request.url, location.strip())
        parts = urlsplit(url)
    except ValueError:
        raise InvalidRequest(
            f"the redirect from {mask_url(request.url)} has an invalid Location"
        ) from None
    if parts.scheme not in ("http", "https"):
        raise InvalidRequest(
            f"the redirect from {mask_url(request.url)} leads to a {parts.scheme or 'relative'!r} "
            "URL; only http and https are followed"
        )
    new_origin, target, userinfo = client._split(url, None)
    new_url = f"{new_origin}{target}"
    method = request.method
    keep_body = True
    headers = request.headers
    if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
        method, keep_body = "GET", False
        headers = _without(headers, _BODY_HEADERS)
    if new_origin != origin:
        headers = _without(headers, _ORIGIN_HEADERS)
    if userinfo is not None and "authorization" not in headers:
        headers = Headers([*headers.raw, (b"authorization", userinfo)])
    return Request(method, new_url, headers=headers), new_origin, target, keep_body


async def _send_with_auth(
    client: Client,
    request: Request,
    origin: Origin,
    target: str,
    body: BodyTypes,
    auth: Auth | None,
    cookies: Cookies | None,
    timeout: Timeout,
    replay_from: int | None,
    history: list[Response],
) -> Response:
    """One hop: the request, and the answer to its auth challenge if the flow gives one."""
    wire = Request(request.method, request.url, headers=request.headers)
    if auth is None:
        return await _send_one(client, wire, origin, target, body, cookies, timeout)
    flow: Generator[Request, Response, None] = auth.auth_flow(wire)
    try:
        try:
            wire = next(flow)
        except StopIteration:
            raise InvalidRequest(
                f"{auth!r}.auth_flow returned without yielding the request"
            ) from None
        response = await _send_one(client, wire, origin, target, body, cookies, timeout)
        try:
            answer = flow.send(response)
        except StopIteration:
            return response
        except BaseException:
            await response.aclose()  # the flow failed on it (an unsupported challenge, ...)
            raise
        await discard(response)
        history.append(response)
        body = _rewind(body, replay_from, answer, "to answer an authentication challenge")
        response = await _send_one(client, answer, origin, target, body, cookies, timeout)
        try:
            flow.send(response)
        except StopIteration:
            return response
        except BaseException:
            await response.aclose()
            raise
        await response.aclose()
        raise InvalidRequest(f"{auth!r}.auth_flow answered twice; a flow may answer once")
    finally:
        flow.close()


async def _send_one(
    client: Client,
    wire: Request,
    origin: Origin,
    target: str,
    body: BodyTypes,
    cookies: Cookies | None,
    timeout: Timeout,
) -> Response:
    """Put one request on the wire: cookies, request hooks, the send, Set-Cookie, response
    hooks."""
    cookie = cookie_header(client.cookies.jar, wire.method, wire.url, wire.headers, cookies)
    if cookie is not None:
        wire.headers = Headers([*wire.headers.raw, (b"cookie", cookie.encode("latin-1"))])
    hooks = client.event_hooks
    for hook in hooks["request"]:
        await _call(hook, wire)
    response = await client._send(origin, wire.method, target, wire.headers, body, timeout)
    try:
        store_cookies(client.cookies.jar, wire.method, wire.url, response.headers)
        for hook in hooks["response"]:
            await _call(hook, response)
    except BaseException:
        await response.aclose()
        raise
    return response


async def _call(hook: Callable[[Any], Any], argument: Any) -> None:
    result = hook(argument)
    if inspect.isawaitable(result):
        await result


async def discard(response: Response) -> None:
    """Read what is left of a response that is not returned (bounded), then close it."""
    try:
        length = response.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) <= INTERMEDIATE_BODY_LIMIT:
            await response.read()
        else:
            received = 0
            async for chunk in response.aiter_bytes(decode_content=False):
                received += len(chunk)
                if received > INTERMEDIATE_BODY_LIMIT:
                    break
    except H2anyError:
        pass
    finally:
        await response.aclose()
