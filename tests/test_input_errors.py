"""Caller input that cannot be sent is an ``InvalidRequest`` (never a UnicodeEncodeError or
FileNotFoundError; a certificate that does not load is a ``TLSError``, never an
ssl.SSLError), the same from ``Client`` and ``Connection``, and no password -- of a proxy
or of a URL -- appears in any message, repr or traceback."""

from __future__ import annotations

import traceback

import anyio
import pytest
from conftest import Certs
from scripted import ScriptedPeer, scripted_server

import h2any
from h2any._proxy import ProxyConfig

pytestmark = pytest.mark.anyio

# The secret part comes first: urlsplit's own messages quote the text before a stray "/".
PASSWORDS = [
    "topsecret/xyz",
    "topsecret#xyz",
    "topsecret?xyz",
    "topsecret@xyz",
    "topsecret:xyz",
    "topsecret xyz",
    "topsecret%zz",
    "topsecret\nxyz",
    "topsecret\txyz",
    "topsecrét/€",
    "1234/topsecret",
]


def _everything_shown(exc: BaseException) -> str:
    """All the text a user could see of ``exc``: str, repr, args, formatted traceback."""
    shown = [str(exc), repr(exc), repr(exc.args)]
    shown += traceback.format_exception(type(exc), exc, exc.__traceback__)
    return "\n".join(shown)


def _assert_hidden(exc: BaseException, password: str) -> None:
    shown = _everything_shown(exc)
    assert password not in shown
    assert "topsecret" not in shown


@pytest.mark.parametrize("password", PASSWORDS)
def test_an_unencoded_proxy_password_never_shows_in_the_error(password: str) -> None:
    for url in (f"http://user:{password}@proxy.corp:3128", f"http://user:{password}@proxy.corp"):
        try:
            connection = h2any.Connection("https://example.org", proxy=url)
        except h2any.InvalidRequest as exc:
            _assert_hidden(exc, password)
        else:  # parsed as some URL after all: nothing may show it either
            assert "topsecret" not in repr(connection)


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_client_proxy_password_never_shows_in_the_error(password: str) -> None:
    with pytest.raises(h2any.InvalidRequest) as caught:
        h2any.Client(proxy=f"http://user:{password}@proxy.corp:3128/x")
    _assert_hidden(caught.value, password)


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_connection_url_password_never_shows_in_the_error(password: str) -> None:
    try:
        h2any.Connection(f"https://user:{password}@example.org")
    except h2any.InvalidRequest as exc:
        _assert_hidden(exc, password)


@pytest.mark.parametrize("password", ["topsecret/xyz", "topsecret#xyz", "topsecret?xyz"])
async def test_a_request_url_password_never_shows_in_the_error(password: str) -> None:
    with anyio.fail_after(5):
        async with h2any.Client(trust_env=False) as client:
            with pytest.raises(h2any.InvalidRequest) as caught:
                await client.get(f"http://user:{password}@127.0.0.1:1/")
    _assert_hidden(caught.value, password)


async def test_an_environment_proxy_password_never_shows_in_the_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://user:topsecret/xyz@127.0.0.1:1")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with anyio.fail_after(5):
        async with h2any.Client() as client:
            with pytest.raises(h2any.InvalidRequest) as caught:
                await client.get("http://example.org/")
    _assert_hidden(caught.value, "topsecret/xyz")


def test_a_percent_encoded_proxy_password_is_masked_in_repr_and_str() -> None:
    proxy = ProxyConfig.parse("http://user:top%2Fsecret%23%3F%40x@proxy.corp:3128")
    assert proxy.password == "top/secret#?@x"
    for shown in (repr(proxy), str(proxy), proxy.masked_url):
        assert "secret" not in shown
        assert "user:****@proxy.corp:3128" in shown


# -- header encoding ----------------------------------------------------------------------


async def _idle(peer: ScriptedPeer) -> None:
    await peer.handshake()


UNENCODABLE = [
    ({"x-naïve€": "v"}, "name"),
    ({"x-token": "secret-€-value"}, "value"),
    ([("x-token", "v"), ("authorization", "Bearer ✓")], "value"),
]


@pytest.mark.parametrize(("headers", "where"), UNENCODABLE)
async def test_a_header_outside_latin_1_is_an_invalid_request(
    headers: h2any._headers.HeaderTypes, where: str
) -> None:
    with anyio.fail_after(5):
        async with scripted_server(_idle) as server:
            async with h2any.Connection(server.url) as connection:
                with pytest.raises(h2any.InvalidRequest, match="latin-1") as caught:
                    await connection.request("GET", "/", headers=headers)
            async with h2any.Client(trust_env=False) as client:
                with pytest.raises(h2any.InvalidRequest, match="latin-1"):
                    await client.get(server.url + "/", headers=headers)
            async with h2any.Client(trust_env=False, headers=headers) as client:
                with pytest.raises(h2any.InvalidRequest, match="latin-1"):
                    await client.get(server.url + "/")
            assert all(not peer.requests for peer in server.peers)
    if where == "value":
        assert "€" not in str(caught.value)
        assert "✓" not in str(caught.value)


def test_a_connection_with_default_headers_outside_latin_1_is_refused_at_once() -> None:
    with pytest.raises(h2any.InvalidRequest, match="latin-1"):
        h2any.Connection("http://127.0.0.1:1", headers={"x-a": "€"})


def test_latin_1_text_and_bytes_still_go_through() -> None:
    headers = h2any.Headers({"x-name": "café", b"x-raw": b"\xff"})
    assert headers.raw == [(b"x-name", b"caf\xe9"), (b"x-raw", b"\xff")]


# -- client certificates and CA bundles ---------------------------------------------------


def test_a_missing_cert_file_is_an_invalid_request_naming_it(tmp_path) -> None:
    missing = str(tmp_path / "nowhere.pem")
    with pytest.raises(h2any.InvalidRequest, match=r"nowhere.pem"):
        h2any.Connection("https://example.org", cert=missing)


def test_a_missing_key_file_is_an_invalid_request_naming_it(tmp_path, certs: Certs) -> None:
    missing = str(tmp_path / "no-key.pem")
    with pytest.raises(h2any.InvalidRequest, match=r"no-key.pem"):
        h2any.Connection("https://example.org", cert=(certs.cert_path, missing))


def test_a_cert_file_that_is_not_pem_is_a_tls_error_naming_it(tmp_path) -> None:
    bad = tmp_path / "garbage.pem"
    bad.write_bytes(b"this is not a certificate\n")
    with pytest.raises(h2any.TLSError, match=r"garbage.pem") as caught:
        h2any.Connection("https://example.org", cert=str(bad))
    assert "this is not" not in str(caught.value)


def test_a_key_that_does_not_match_the_cert_is_a_tls_error(certs: Certs) -> None:
    with pytest.raises(h2any.TLSError, match="client certificate"):
        h2any.Connection("https://example.org", cert=(certs.cert_path, certs.ca_path))


def test_a_wrong_key_password_is_a_tls_error_without_the_password(tmp_path, certs: Certs) -> None:
    from cryptography.hazmat.primitives import serialization

    with open(certs.key_path, "rb") as file:
        key = serialization.load_pem_private_key(file.read(), password=None)
    encrypted = tmp_path / "encrypted-key.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"the-right-one"),
        )
    )
    with pytest.raises(h2any.TLSError, match=r"encrypted-key.pem") as caught:
        h2any.Connection(
            "https://example.org", cert=(certs.cert_path, str(encrypted), "hunter2-password")
        )
    assert "hunter2-password" not in _everything_shown(caught.value)
    # The right password still loads it.
    h2any.Connection("https://example.org", cert=(certs.cert_path, str(encrypted), "the-right-one"))


def test_a_verify_bundle_that_is_not_pem_is_a_tls_error_naming_it(tmp_path) -> None:
    bad = tmp_path / "not-a-ca.pem"
    bad.write_bytes(b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n")
    with pytest.raises(h2any.TLSError, match=r"not-a-ca.pem"):
        h2any.Connection("https://example.org", verify=str(bad))


def test_a_client_with_a_bad_cert_fails_at_construction(tmp_path) -> None:
    with pytest.raises(h2any.InvalidRequest, match=r"nowhere.pem"):
        h2any.Client(cert=str(tmp_path / "nowhere.pem"))


# -- Client and Connection agree on paths and hosts ----------------------------------------

BAD_PATHS = ["/a\tb", "/a\nb", "/a\rb", "/a b", "/a\x00b", "/a\x7fb", "/?q=a\tb"]


@pytest.mark.parametrize("path", BAD_PATHS)
async def test_client_and_connection_both_refuse_a_path_with_whitespace_or_controls(
    path: str,
) -> None:
    with anyio.fail_after(5):
        async with scripted_server(_idle) as server:
            async with h2any.Connection(server.url) as connection:
                with pytest.raises(h2any.InvalidRequest):
                    await connection.request("GET", path)
            async with h2any.Client(trust_env=False) as client:
                with pytest.raises(h2any.InvalidRequest):
                    await client.get(server.url + path)
            async with h2any.Client(trust_env=False, base_url=server.url) as client:
                with pytest.raises(h2any.InvalidRequest):
                    await client.get(path)
            assert all(not peer.requests for peer in server.peers)


@pytest.mark.parametrize("host", ["exa mple.org", "exa\tmple.org", "a<b", "a\x00b"])
async def test_client_and_connection_both_refuse_a_bad_host(host: str) -> None:
    with pytest.raises(h2any.InvalidRequest):
        h2any.Connection(f"http://{host}")
    with anyio.fail_after(5):
        async with h2any.Client(trust_env=False) as client:
            with pytest.raises(h2any.InvalidRequest):
                await client.get(f"http://{host}/")
            assert client.connections_opened == 0


async def test_a_tab_in_base_url_is_refused() -> None:
    with anyio.fail_after(5):
        async with h2any.Client(trust_env=False, base_url="http://127.0.0.1:1/a\tb/") as client:
            with pytest.raises(h2any.InvalidRequest, match="base_url"):
                await client.get("c")


def test_an_international_host_is_sent_as_its_idna_form() -> None:
    connection = h2any.Connection("https://bücher.example")
    assert "xn--bcher-kva.example" in repr(connection)


@pytest.mark.parametrize("host", ["exa mple.org", "user@example.org", "", "a/b"])
async def test_a_host_header_that_is_no_host_is_refused_by_both(host: str) -> None:
    with anyio.fail_after(5):
        async with scripted_server(_idle) as server:
            async with h2any.Connection(server.url) as connection:
                with pytest.raises(h2any.InvalidRequest, match="host"):
                    await connection.request("GET", "/", headers={"host": host})
            async with h2any.Client(trust_env=False) as client:
                with pytest.raises(h2any.InvalidRequest, match="host"):
                    await client.get(server.url + "/", headers={"host": host})
            assert all(not peer.requests for peer in server.peers)
