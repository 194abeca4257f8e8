"""The ``Headers`` container: construction, case-insensitive lookup, order and repeats."""

from __future__ import annotations

import pytest

import h2any

PAIRS = [("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("set-cookie", "b=2")]


def test_headers_from_a_dict() -> None:
    headers = h2any.Headers({"Content-Type": "text/plain", "X-One": "1"})
    assert list(headers) == [("content-type", "text/plain"), ("x-one", "1")]


def test_headers_from_a_list_of_str_pairs() -> None:
    headers = h2any.Headers(PAIRS)
    assert list(headers) == [
        ("content-type", "text/plain"),
        ("set-cookie", "a=1"),
        ("set-cookie", "b=2"),
    ]


def test_headers_from_a_list_of_bytes_pairs_equal_the_str_form() -> None:
    headers = h2any.Headers([(n.encode(), v.encode()) for n, v in PAIRS])
    assert headers == h2any.Headers(PAIRS)
    assert headers["content-type"] == "text/plain"


def test_headers_from_a_bytes_dict() -> None:
    headers = h2any.Headers({b"X-Bytes": b"\xe9t\xe9"})
    assert headers["x-bytes"] == "\xe9t\xe9"
    assert headers.raw == [(b"x-bytes", b"\xe9t\xe9")]


def test_headers_copied_from_headers_are_equal() -> None:
    original = h2any.Headers(PAIRS)
    copy = h2any.Headers(original)
    assert copy == original
    assert copy is not original


def test_getitem_is_case_insensitive() -> None:
    headers = h2any.Headers(PAIRS)
    assert headers["content-type"] == headers["CONTENT-TYPE"] == headers["Content-Type"]
    assert headers["CoNtEnT-tYpE"] == "text/plain"


def test_get_is_case_insensitive_and_has_a_default() -> None:
    headers = h2any.Headers(PAIRS)
    assert headers.get("CONTENT-TYPE") == "text/plain"
    assert headers.get("missing") is None
    assert headers.get("missing", "fallback") == "fallback"
    assert headers.get("Set-Cookie", "fallback") == "a=1, b=2"


def test_get_list_is_case_insensitive_and_keeps_order() -> None:
    headers = h2any.Headers(PAIRS)
    assert headers.get_list("SET-COOKIE") == ["a=1", "b=2"]
    assert headers.get_list("content-type") == ["text/plain"]
    assert headers.get_list("missing") == []


def test_contains_is_case_insensitive() -> None:
    headers = h2any.Headers(PAIRS)
    assert "content-type" in headers
    assert "CONTENT-TYPE" in headers
    assert "Set-Cookie" in headers
    assert "missing" not in headers
    assert b"content-type" not in headers  # only str names are looked up
    assert 1 not in headers


def test_repeated_names_are_joined_with_comma_space() -> None:
    headers = h2any.Headers([("x-multi", "one"), ("X-Other", "z"), ("X-Multi", "two")])
    assert headers["x-multi"] == "one, two"


def test_iteration_yields_lowercase_pairs_in_order_with_repeats() -> None:
    fields = [("B", "1"), ("a", "2"), ("b", "3"), ("C", "4")]
    headers = h2any.Headers(fields)
    assert list(headers) == [("b", "1"), ("a", "2"), ("b", "3"), ("c", "4")]
    assert headers.items() == list(headers)


def test_raw_gives_bytes_pairs_in_order() -> None:
    headers = h2any.Headers(PAIRS)
    assert headers.raw == [
        (b"content-type", b"text/plain"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
    ]


def test_keys_are_distinct_in_order_of_first_appearance() -> None:
    headers = h2any.Headers([("b", "1"), ("A", "2"), ("B", "3"), ("c", "4")])
    assert headers.keys() == ["b", "a", "c"]


def test_len_counts_every_field_including_repeats() -> None:
    assert len(h2any.Headers(PAIRS)) == 3
    assert len(h2any.Headers()) == 0
    assert len(h2any.Headers({})) == 0


def test_equality_depends_on_fields_and_order() -> None:
    assert h2any.Headers(PAIRS) == h2any.Headers(list(PAIRS))
    assert h2any.Headers([("a", "1")]) == h2any.Headers([("A", "1")])
    assert h2any.Headers([("a", "1"), ("b", "2")]) != h2any.Headers([("b", "2"), ("a", "1")])
    assert h2any.Headers([("a", "1")]) != h2any.Headers([("a", "2")])
    assert h2any.Headers([("a", "1")]) != [("a", "1")]


def test_headers_are_unhashable() -> None:
    with pytest.raises(TypeError):
        hash(h2any.Headers(PAIRS))


def test_missing_name_raises_key_error() -> None:
    headers = h2any.Headers(PAIRS)
    with pytest.raises(KeyError, match="x-missing"):
        headers["x-missing"]
