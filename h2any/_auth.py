"""Authentication: ``auth=`` on a [`Client`][h2any.Client] or a request.

One design serves every scheme: an [`Auth`][h2any.Auth] has a generator method ``auth_flow``
(as httpx's). It receives the [`Request`][h2any.Request] about to be sent, may change its
headers, and yields it; the client sends it and sends the [`Response`][h2any.Response] back
into the generator. A flow that returns there is done (that response is the answer); one that
yields the request again -- typically after a 401, with an ``Authorization`` computed from the
challenge -- has it sent once more. A flow may answer **once**: a second answer raises
[`InvalidRequest`][h2any.InvalidRequest] (it would loop with a server that refuses it).

``auth=(user, password)`` is [`BasicAuth`][h2any.BasicAuth]. No auth object shows a secret in
its repr; the client never puts one in a log line or an error message.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from base64 import b64encode
from collections.abc import Generator
from typing import TYPE_CHECKING, Union, final
from urllib.parse import urlsplit

from ._exceptions import InvalidRequest
from ._headers import Headers
from ._models import Request

if TYPE_CHECKING:
    from ._response import Response

__all__ = ("Auth", "AuthTypes", "BasicAuth", "BearerAuth", "DigestAuth", "as_auth", "set_header")


def set_header(request: Request, name: str, value: str) -> None:
    """Set header ``name`` on ``request`` to ``value``, replacing any field of that name."""
    name = name.lower()
    request.headers = Headers([*((n, v) for n, v in request.headers if n != name), (name, value)])


class Auth:
    """The base class of authentication schemes: override `auth_flow`.

    ```python
    class ApiKey(h2any.Auth):
        def __init__(self, key: str) -> None:
            self._key = key

        def auth_flow(self, request):
            h2any.Auth.set_header(request, "x-api-key", self._key)
            response = yield request
            if response.status == 401:  # e.g. refresh the key, then answer once
                ...
    ```
    """

    set_header = staticmethod(set_header)

    def auth_flow(self, request: Request) -> Generator[Request, Response, None]:
        """Change ``request`` (add headers), yield it, and receive its response; yield it
        once more to answer that response (a 401 challenge), or return to accept it."""
        yield request

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


@final
class BasicAuth(Auth):
    """HTTP Basic authentication (RFC 7617): ``user:password``, UTF-8, in every request's
    ``Authorization``. ``auth=("user", "password")`` makes one."""

    def __init__(self, username: str | bytes, password: str | bytes) -> None:
        user = username.encode() if isinstance(username, str) else username
        secret = password.encode() if isinstance(password, str) else password
        self._value = "Basic " + b64encode(user + b":" + secret).decode("ascii")

    def auth_flow(self, request: Request) -> Generator[Request, Response, None]:
        set_header(request, "authorization", self._value)
        yield request


@final
class BearerAuth(Auth):
    """A bearer token (RFC 6750) in every request's ``Authorization: Bearer TOKEN``."""

    def __init__(self, token: str) -> None:
        if any(ord(c) < 0x21 or ord(c) > 0x7E for c in token):
            raise InvalidRequest("a bearer token must be printable ASCII without spaces")
        self._value = f"Bearer {token}"

    def auth_flow(self, request: Request) -> Generator[Request, Response, None]:
        set_header(request, "authorization", self._value)
        yield request


_ALGORITHMS = {
    "MD5": "md5",
    "MD5-SESS": "md5",
    "SHA-256": "sha256",
    "SHA-256-SESS": "sha256",
}
_PARAMETER = re.compile(r'\s*([!#$%&\'*+.^_`|~0-9A-Za-z-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*,?')


@final
class DigestAuth(Auth):
    """HTTP Digest authentication (RFC 7616): MD5 and SHA-256 (and their ``-sess`` forms),
    ``qop=auth`` with a fresh client nonce and a nonce count.

    The first request goes out without credentials; a 401 with a ``WWW-Authenticate: Digest``
    challenge is answered once. The challenge is then remembered, so later requests to the
    same realm carry an answer at once (the nonce count increases) and do not need a 401 each.
    """

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password
        self._challenge: dict[str, str] | None = None
        self._nonce_count = 0

    def auth_flow(self, request: Request) -> Generator[Request, Response, None]:
        if self._challenge is not None:
            set_header(request, "authorization", self._answer(request, self._challenge))
        response = yield request
        if response.status != 401:
            return
        challenge = _digest_challenge(response.headers)
        if challenge is None:
            return
        if (
            self._challenge is not None
            and challenge.get("stale", "").lower() != "true"
            and challenge.get("nonce") == self._challenge.get("nonce")
        ):
            return  # our answer to this very nonce was refused: wrong credentials
        self._challenge = challenge
        self._nonce_count = 0
        set_header(request, "authorization", self._answer(request, challenge))
        yield request

    def _answer(self, request: Request, challenge: dict[str, str]) -> str:
        algorithm = challenge.get("algorithm", "MD5").upper()
        if algorithm not in _ALGORITHMS:
            raise InvalidRequest(f"the server's digest algorithm {algorithm!r} is not supported")
        hash_name = _ALGORITHMS[algorithm]

        def digest(text: str) -> str:
            return hashlib.new(hash_name, text.encode("utf-8")).hexdigest()

        realm = challenge.get("realm", "")
        nonce = challenge.get("nonce", "")
        parts = urlsplit(request.url)
        uri = parts.path or "/"
        if parts.query:
            uri += "?" + parts.query
        self._nonce_count += 1
        nc = f"{self._nonce_count:08x}"
        cnonce = hashlib.sha256(os.urandom(16) + str(time.time()).encode()).hexdigest()[:16]
        ha1 = digest(f"{self._username}:{realm}:{self._password}")
        if algorithm.endswith("-SESS"):
            ha1 = digest(f"{ha1}:{nonce}:{cnonce}")
        ha2 = digest(f"{request.method}:{uri}")
        qops = [q.strip().lower() for q in challenge.get("qop", "").split(",") if q.strip()]
        fields = [
            ("username", _quoted(self._username)),
            ("realm", _quoted(realm)),
            ("nonce", _quoted(nonce)),
            ("uri", _quoted(uri)),
            ("algorithm", challenge.get("algorithm", "MD5")),  # as the server spelt it
        ]
        if not qops:  # RFC 2069 compatibility: no qop, no cnonce
            fields.append(("response", _quoted(digest(f"{ha1}:{nonce}:{ha2}"))))
        elif "auth" in qops:
            response = digest(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
            fields += [
                ("response", _quoted(response)),
                ("qop", "auth"),
                ("nc", nc),
                ("cnonce", _quoted(cnonce)),
            ]
        else:
            raise InvalidRequest(
                f"the server's digest challenge offers qop {challenge.get('qop')!r}; only "
                "'auth' is supported"
            )
        if "opaque" in challenge:
            fields.append(("opaque", _quoted(challenge["opaque"])))
        return "Digest " + ", ".join(f"{key}={value}" for key, value in fields)


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _digest_challenge(headers: Headers) -> dict[str, str] | None:
    """The parameters of the first Digest challenge in ``WWW-Authenticate``, if any."""
    for value in headers.get_list("www-authenticate"):
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() != "digest":
            continue
        fields: dict[str, str] = {}
        for match in _PARAMETER.finditer(rest):
            key, raw = match.group(1).lower(), match.group(2)
            if raw.startswith('"'):
                raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
            fields[key] = raw
        if "nonce" in fields:
            return fields
    return None


#: What ``auth=`` takes: ``(username, password)`` for Basic, or an [`Auth`][h2any.Auth].
AuthTypes = Union[tuple[Union[str, bytes], Union[str, bytes]], Auth]


def as_auth(auth: AuthTypes | None) -> Auth | None:
    """``auth=`` as an [`Auth`][h2any.Auth] (or ``None``)."""
    if auth is None or isinstance(auth, Auth):
        return auth
    if isinstance(auth, tuple) and len(auth) == 2:
        return BasicAuth(auth[0], auth[1])
    raise InvalidRequest(
        f"auth= takes (username, password) or an h2any.Auth, not {type(auth).__name__}"
    )
