from __future__ import annotations

import pytest

from repodepot.exceptions import InvalidInput
from repodepot.git.urls import Source, parse_source
from repodepot.imports.validation import validate_name
from repodepot.outbound import Policy

HTTPS = ["https"]


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "required"),
        ("-uupload-pack=touch /tmp/x", "must not start with '-'"),
        ("ext::sh -c touch% /tmp/pwned", "spaces or control"),
        ("ext::ssh-evil", "transport helpers"),
        ("fd::3", "transport helpers"),
        ("file:///etc/passwd", "file:// URLs are not allowed"),
        ("/srv/git/repo.git", "local paths"),
        ("../repo.git", "local paths"),
        ("git@github.com:acme/w.git", "scp-like"),
        ("http://example.com/a.git", "scheme 'http' is not allowed; allowed: https"),
        ("ssh://git@example.com/a.git", "scheme 'ssh' is not allowed"),
        ("https:///nohost", "no valid host"),
        ("https://example.com/", "names no repository path"),
        ("https://example.com:99999/a.git", "invalid host or port"),
        ("https://exa mple.com/a.git", "spaces or control"),
        # Brackets hold only an IPv6 address; each of these was a 500 with a traceback.
        ("https://[127.0.0.1]/x.git", "invalid host or port"),
        ("https://[::1", "invalid host or port"),
        ("https://[zz]/x", "invalid host or port"),
        ("https://exämple.com/a.git", "must be ASCII"),
    ],
)
def test_bad_urls_are_refused_naming_the_field(url: str, reason: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_source(url, HTTPS)
    assert info.value.field == "url"
    assert reason in str(info.value)


def test_userinfo_is_stripped_and_kept_as_credentials() -> None:
    source = parse_source("https://alice:p%40ss@git.example.com/acme/w.git", HTTPS)
    assert source.url == "https://git.example.com/acme/w.git"
    assert (source.username, source.password) == ("alice", "p@ss")
    assert "p@ss" not in repr(source)
    assert source.port == 443


@pytest.mark.parametrize(
    ("url", "username"),
    [
        ("https://git.example.com/acme/w.git?private_token=glpat-SECRET0123", None),
        ("https://git.example.com/acme/w.git?access_token=glpat-SECRET0123", None),
        ("https://bob@git.example.com/acme/w.git?token=glpat-SECRET0123", "bob"),
    ],
)
def test_a_token_in_the_query_string_is_stripped_and_kept_as_credentials(
    url: str, username: str | None
) -> None:
    source = parse_source(url, HTTPS)
    assert source.url == "https://git.example.com/acme/w.git"
    assert (source.username, source.password) == (username, "glpat-SECRET0123")


def test_userinfo_wins_over_a_query_token_and_both_are_stripped() -> None:
    source = parse_source("https://a:pw@h.example/w.git?ref=x&private_token=other", HTTPS)
    assert source.url == "https://h.example/w.git?ref=x"
    assert source.password == "pw"


def test_http_and_ssh_only_when_enabled() -> None:
    assert parse_source("http://h.example/a.git", ["https", "http"]).port == 80
    assert parse_source("ssh://git@h.example:2222/a.git", ["ssh"]).port == 2222


@pytest.mark.parametrize("name", ["", "-x", ".x", "a..b", "a/b", "a b", "x" * 101, "w.git"])
def test_bad_owner_or_slug(name: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_name(name, "slug")
    assert info.value.field == "slug"


@pytest.mark.parametrize("name", ["a", "Acme_Corp", "widgets-2.0", "x" * 100])
def test_good_owner_or_slug(name: str) -> None:
    assert validate_name(name, "owner") == name


async def resolve_public(source: Source, allowlist: list[str]) -> str:
    """The first address an import of `source` connects to, every one checked."""
    return (await Policy(tuple(allowlist)).resolve(source.host, source.port))[0]


def _source(host: str) -> Source:
    return Source(url=f"https://{host}/a.git", scheme="https", host=host, port=443)


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "10.1.2.3", "169.254.169.254", "100.100.100.200", "::1"]
)
async def test_internal_addresses_are_refused_naming_the_url(host: str) -> None:
    with pytest.raises(InvalidInput, match="not a public address") as info:
        await resolve_public(_source(host), [])
    assert info.value.field == "url"
    assert "REPODEPOT_OUTBOUND_ALLOWLIST" in info.value.message


async def test_allowlisted_networks_and_hosts_pass() -> None:
    assert await resolve_public(_source("127.0.0.1"), ["127.0.0.0/8"]) == "127.0.0.1"
    assert await resolve_public(_source("localhost"), ["localhost"]) in ("127.0.0.1", "::1")
    with pytest.raises(InvalidInput):
        await resolve_public(_source("10.0.0.1"), ["127.0.0.0/8"])


async def test_unresolvable_hosts_are_refused() -> None:
    with pytest.raises(InvalidInput, match="cannot be resolved"):
        await resolve_public(_source("no-such-host.invalid"), [])
