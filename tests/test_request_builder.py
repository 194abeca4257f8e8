"""A request builder that keeps checked header blocks gives what a fresh one gives.

`RequestBuilder.fields` keeps the checked form of each small header block it saw (a client
sends the same few blocks again and again). One builder, run over a random sequence of
requests whose blocks recur, must give for every request the fields -- or the
InvalidRequest message -- that a builder seeing that request first gives.
"""

from __future__ import annotations

import hpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from h2any import Headers, InvalidRequest
from h2any._config import Origin
from h2any._request import RequestBuilder

ORIGIN = Origin.parse("https://example.org")
DEFAULTS = {"x-default": "1", "user-agent": "tests/1"}

_NAMES = [
    "x-a",
    "host",
    "content-length",
    "user-agent",
    "accept-encoding",
    "cookie",
    "authorization",
    "te",
    "connection",
    "x-default",
    "Bad Name",
]
_VALUES = ["1", "12", "v", "example.net", "trailers", "gzip", "a" * 30, " padded", "x\ry", "abc"]

_block = st.lists(st.tuples(st.sampled_from(_NAMES), st.sampled_from(_VALUES)), max_size=3)
# Six blocks that share a first part and differ after it (or not at all): a kept block must
# be told apart from another by every field, not by a prefix.
_pool = st.tuples(_block, st.lists(_block, min_size=6, max_size=6)).map(
    lambda drawn: [drawn[0] + rest for rest in drawn[1]]
)
_request = st.tuples(
    st.sampled_from(["GET", "POST", "CONNECT", "bad method"]),
    st.sampled_from(["/", "/a?b", "example.org:443", "https://example.org/x"]),
    st.integers(0, 5),  # which block of the pool
    st.sampled_from([None, 1, 12]),  # the body's length, if known
    st.sampled_from([None, None, "websocket"]),  # an extended CONNECT's :protocol
    st.booleans(),  # the block as Headers, or as a list of pairs
)


def _builder() -> RequestBuilder:
    return RequestBuilder(ORIGIN, DEFAULTS, hpack.NeverIndexedHeaderTuple)


def _outcome(
    builder: RequestBuilder,
    method: str,
    url: str,
    block: list[tuple[str, str]],
    body_length: int | None,
    protocol: str | None,
    as_headers: bool,
) -> object:
    headers = Headers(block) if as_headers else list(block)
    try:
        fields, declared = builder.fields(method, url, headers, body_length, protocol)
    except InvalidRequest as exc:
        return ("InvalidRequest", str(exc))
    kinds = [type(field).__name__ for field in fields]
    return [tuple(field) for field in fields], kinds, declared


@settings(max_examples=300, deadline=None)
@given(pool=_pool, requests=st.lists(_request, max_size=30))
def test_kept_blocks_give_what_a_fresh_builder_gives(
    pool: list[list[tuple[str, str]]],
    requests: list[tuple[str, str, int, int | None, str | None, bool]],
) -> None:
    warm = _builder()
    for method, url, which, body_length, protocol, as_headers in requests:
        args = (method, url, pool[which], body_length, protocol, as_headers)
        assert _outcome(warm, *args) == _outcome(_builder(), *args)


def test_a_kept_block_still_checks_the_declared_length_against_each_body() -> None:
    builder = _builder()
    headers = Headers({"content-length": "3"})
    fields, declared = builder.fields("POST", "/", headers, 3)
    assert declared == 3
    assert (b"content-length", b"3") in fields
    with pytest.raises(InvalidRequest, match="content-length 3 does not match the body's 4"):
        builder.fields("POST", "/", headers, 4)


def test_a_kept_block_with_host_names_the_authority_of_each_request() -> None:
    builder = _builder()
    headers = Headers({"host": "example.net"})
    for path in ("/a", "/b"):
        fields, _ = builder.fields("GET", path, headers, None)
        assert fields[:4] == [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", b"example.net"),
            (b":path", path.encode()),
        ]
        assert not any(name == b"host" for name, _ in fields)


def test_large_blocks_are_checked_every_time_and_not_kept() -> None:
    builder = _builder()
    big = Headers({"x-big": "v" * 4096})
    builder.fields("GET", "/", big, None)
    builder.fields("GET", "/", Headers({"x-small": "v"}), None)
    assert len(builder._blocks) == 1  # only the small one
