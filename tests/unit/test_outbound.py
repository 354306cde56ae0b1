"""The outbound policy: which addresses pass, how git is pinned, what the API client sends."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import httpx
import pytest

from repodepot.codehosts.config import parse_config
from repodepot.codehosts.sources import clone_origins
from repodepot.db.models import CodeHostKind
from repodepot.exceptions import InvalidInput
from repodepot.outbound import (
    GuardedTransport,
    Origin,
    OutboundRefused,
    Policy,
    git_pins,
    is_public,
    origin,
)

REFUSED = [
    "127.0.0.1",
    "127.0.0.2",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",  # shared address space (carrier-grade NAT)
    "100.100.100.200",  # a cloud metadata address, inside 100.64.0.0/10
    "169.254.169.254",
    "0.0.0.0",
    "224.0.0.1",
    "240.0.0.1",
    "::",
    "::1",
    "fd00::1",
    "fe80::1",
    "fec0::1",  # site-local
    "ff02::1",
    "2001:db8::1",
    "2001::1",  # Teredo
    "2002::1",  # 6to4 of 0.0.0.0
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "::ffff:100.100.100.200",
    "::ffff:127.0.0.1",
    "::7f00:1",  # IPv4-compatible, deprecated
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b:1::a00:1",  # local-use NAT64
]
ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "2606:4700::1111",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",
    "2002:808:808::1",
]


@pytest.mark.parametrize("address", REFUSED)
async def test_internal_addresses_are_refused(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))
    with pytest.raises(OutboundRefused, match="not a public address") as info:
        await Policy().resolve(address, 443)
    assert info.value.field == "url"
    assert "REPODEPOT_OUTBOUND_ALLOWLIST" in info.value.message


@pytest.mark.parametrize("address", ALLOWED)
async def test_public_addresses_pass(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))
    assert await Policy().resolve(address, 443) == [address]


@pytest.mark.parametrize(
    ("allowlist", "address"),
    [
        (("127.0.0.1",), "127.0.0.1"),
        (("127.0.0.0/8",), "::ffff:127.0.0.2"),
        (("100.64.0.0/10",), "100.100.100.200"),
        (("fd00::/8",), "fd00::1"),
    ],
)
async def test_an_allowlisted_network_passes(allowlist: tuple[str, ...], address: str) -> None:
    assert await Policy(allowlist).resolve(address, 443) == [address]


def _resolver(answers: dict[str, list[str]]) -> Any:
    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        found = answers.get(host) or ([host] if ":" in host or host[-1].isdigit() else None)
        if found is None:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        return [
            (
                socket.AF_INET6 if ":" in address else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (address, port),
            )
            for address in found
        ]

    return getaddrinfo


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    answers: dict[str, list[str]] = {}
    monkeypatch.setattr(socket, "getaddrinfo", _resolver(answers))
    return answers


async def test_every_address_a_name_resolves_to_must_pass(dns: dict[str, list[str]]) -> None:
    dns["mixed.example"] = ["8.8.8.8", "10.0.0.1"]
    with pytest.raises(OutboundRefused, match=r"resolves to 10\.0\.0\.1"):
        await Policy().resolve("mixed.example", 443)
    dns["twice.example"] = ["8.8.8.8", "2606:4700::1111", "8.8.8.8"]
    assert await Policy().resolve("twice.example", 443) == ["8.8.8.8", "2606:4700::1111"]


async def test_an_allowlisted_name_passes_whatever_it_resolves_to(
    dns: dict[str, list[str]],
) -> None:
    dns["git.internal"] = ["10.0.0.7"]
    assert await Policy(("GIT.internal",)).resolve("git.internal", 443) == ["10.0.0.7"]
    with pytest.raises(OutboundRefused):
        await Policy(("other.internal",)).resolve("git.internal", 443)


async def test_git_is_pinned_to_every_address_checked_and_follows_no_redirect(
    dns: dict[str, list[str]],
) -> None:
    dns["h.example"] = ["1.2.3.4", "2606:4700::1111"]
    assert await Policy().git_config("https://h.example/a.git") == [
        ("http.curloptResolve", "h.example:443:1.2.3.4,[2606:4700::1111]"),
        ("http.followRedirects", "false"),
    ]
    dns["h.example."] = ["1.2.3.4"]
    assert [pin[1] for pin in await Policy().git_config("http://h.example.:8080/a.git")] == [
        "h.example.:8080:1.2.3.4",
        "h.example:8080:1.2.3.4",
        "false",
    ]
    # A literal address needs no lookup, so nothing to pin; ssh cannot be pinned.
    assert git_pins(origin("https://8.8.8.8/a.git"), ["8.8.8.8"]) == [
        ("http.followRedirects", "false")
    ]
    assert await Policy().git_config("ssh://git@8.8.8.8/a.git") == []
    with pytest.raises(OutboundRefused):
        await Policy().git_config("ssh://git@127.0.0.1/a.git")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://GitHub.com/o/r.git", Origin("https", "github.com", 443)),
        ("http://u:p@127.0.0.1:8080/x", Origin("http", "127.0.0.1", 8080)),
        ("https://[2606:4700::1111]/x", Origin("https", "2606:4700::1111", 443)),
    ],
)
def test_origins(url: str, expected: Origin) -> None:
    assert origin(url) == expected


@pytest.mark.parametrize(
    "url", ["http://[127.0.0.1]/x.git", "http://[::1", "http://[zz]/x", "https:///x", "h:99999"]
)
def test_bad_urls_have_no_origin(url: str) -> None:
    with pytest.raises(InvalidInput) as info:
        origin(url)
    assert info.value.field == "url"


async def test_the_api_client_connects_to_the_address_checked(dns: dict[str, list[str]]) -> None:
    dns["api.example"] = ["8.8.8.8"]
    dns["inside.example"] = ["10.0.0.1"]
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    transport = GuardedTransport(Policy(), httpx.MockTransport(answer))
    async with httpx.AsyncClient(transport=transport) as client:
        response = await client.get("https://api.example:8443/v3/user", headers={"X-T": "1"})
        assert response.status_code == 200
        assert str(response.request.url) == "https://api.example:8443/v3/user"
        (sent,) = seen
        assert str(sent.url) == "https://8.8.8.8:8443/v3/user"
        assert sent.headers["host"] == "api.example:8443" and sent.headers["x-t"] == "1"
        assert sent.extensions["sni_hostname"] == "api.example"  # the certificate's name

        with pytest.raises(OutboundRefused, match=r"resolves to 10\.0\.0\.1"):
            await client.get("https://inside.example/v3/user")
        with pytest.raises(httpx.ConnectError, match="cannot be resolved"):
            await client.get("https://nowhere.example/v3/user")
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("kind", "config", "url", "gets_token"),
    [
        (CodeHostKind.github, {"url": "https://github.com"}, "https://github.com/o/r.git", True),
        (CodeHostKind.github, {"url": "https://github.com"}, "https://api.github.com/r", False),
        (CodeHostKind.github, {"url": "https://github.com"}, "http://github.com/o/r.git", False),
        (CodeHostKind.github, {"url": "https://ghe.corp"}, "https://GHE.corp:443/o/r.git", True),
        (CodeHostKind.github, {"url": "https://ghe.corp"}, "https://evil.example/o/r.git", False),
        (CodeHostKind.gitlab, {"url": "http://127.0.0.1:8080"}, "http://127.0.0.1:8080/g/p", True),
        (CodeHostKind.gitlab, {"url": "http://127.0.0.1:8080"}, "http://127.0.0.2:8080/g/p", False),
        (CodeHostKind.gitea, {"url": "https://tea.corp"}, "https://tea.corp:3000/o/r.git", False),
        (
            CodeHostKind.other,
            {"url": "https://git.corp", "repos": ["a/b", "https://mirror.corp/c.git"]},
            "https://mirror.corp/c.git",
            True,
        ),
    ],
)
def test_a_code_host_token_goes_only_to_its_clone_origins(
    kind: CodeHostKind, config: dict[str, Any], url: str, gets_token: bool
) -> None:
    parsed, _ = parse_config(kind, config)
    assert (origin(url) in clone_origins(parsed)) is gets_token
