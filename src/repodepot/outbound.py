"""Where repodepot may connect, and where credentials may go.

One policy for every URL repodepot fetches: import clones, mirror clones and fetches
(imported and code host repositories alike, EnsureRevision's included), code host API
calls, and the clone URLs that hosts' APIs name.

- An address passes when it is globally reachable (`is_global`, and not multicast,
  reserved or site-local), judged on the IPv4 address inside the IPv4-mapped, 6to4 and
  NAT64 forms; or when `outbound_allowlist` names the host or a network holding the
  address. Every address a name resolves to must pass, not only the first.
- git connects only to the addresses checked (`http.curloptResolve`) and follows no
  redirect (`http.followRedirects=false`): a second lookup or a 302 gets nowhere.
- The API client connects to the address checked as well (`GuardedTransport`).
- Credentials belong to an origin (scheme, host, port); callers compare origins with
  `origin()` before a token goes anywhere.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple
from urllib.parse import urlsplit

import httpx

from repodepot.exceptions import InvalidInput
from repodepot.settings import Settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22, "git": 9418}
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052's well-known prefix


class OutboundRefused(InvalidInput):
    """repodepot may not connect there."""

    code = "outbound_refused"


class Unresolvable(OutboundRefused):
    """The host name cannot be resolved."""

    code = "unresolvable"


class Origin(NamedTuple):
    """Scheme, host and port: what a credential belongs to."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def origin(url: str) -> Origin:
    """The origin of `url`, host lowercased, port defaulted by scheme.

    Raises InvalidInput(field="url") when the URL has no host or an invalid host or port
    (`http://[127.0.0.1]/`, `http://[::1`).
    """
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        raise InvalidInput("url has an invalid host or port", field="url") from None
    scheme = parts.scheme.lower()
    if not host:
        raise InvalidInput("url has no valid host", field="url")
    if not host.isascii():  # curl would look up the punycode, not the name we checked
        raise InvalidInput("url's host must be ASCII (punycode for an IDN)", field="url")
    if port is None and scheme not in DEFAULT_PORTS:
        raise InvalidInput(f"url has no port and {scheme!r} has no default", field="url")
    return Origin(scheme, host.lower(), port or DEFAULT_PORTS[scheme])


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped, 6to4 or NAT64 address reaches, if it is one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: IPAddress) -> bool:
    """Whether `address` is globally reachable.

    Not loopback, private, shared (100.64/10), link-local, site-local, multicast,
    reserved or unspecified, nor an IPv4-mapped, 6to4 or NAT64 wrapper of one of those.
    """
    if isinstance(address, ipaddress.IPv6Address):
        inner = embedded_ipv4(address)
        if inner is not None:
            return is_public(inner)
        if address.is_site_local:  # fec0::/10: deprecated, but still routed inside sites
            return False
    return address.is_global and not address.is_multicast and not address.is_reserved


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Policy:
    """The outbound policy: public addresses, plus what `allowlist` names."""

    allowlist: tuple[str, ...] = ()
    _hosts: frozenset[str] = field(init=False, repr=False)
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Parsed once: `permits` runs for every address of every fetch and API call.
        hosts, networks = set(), []
        for entry in self.allowlist:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.rstrip(".").lower())
        object.__setattr__(self, "_hosts", frozenset(hosts))
        object.__setattr__(self, "_networks", tuple(networks))

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        """The policy of `REPODEPOT_OUTBOUND_ALLOWLIST`."""
        return cls(tuple(settings.outbound_allowlist))

    def permits(self, host: str, address: IPAddress) -> bool:
        """Whether `host`, resolved to `address`, may be reached."""
        return is_public(address) or self._allowlisted(host, address)

    def _allowlisted(self, host: str, address: IPAddress) -> bool:
        if host.rstrip(".").lower() in self._hosts:
            return True
        forms = [address]
        if isinstance(address, ipaddress.IPv6Address) and (inner := embedded_ipv4(address)):
            forms.append(inner)
        return any(
            form.version == network.version and form in network
            for network in self._networks
            for form in forms
        )

    async def resolve(self, host: str, port: int) -> list[str]:
        """Every address `host` resolves to, each checked, in the resolver's order.

        Raises Unresolvable, or OutboundRefused naming the first address refused
        (both InvalidInput with field "url").
        """
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except (socket.gaierror, UnicodeError):
            raise Unresolvable(f"host {host!r} cannot be resolved", field="url") from None
        found = list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))
        for text in found:
            address = ipaddress.ip_address(text)
            if not self.permits(host, address):
                raise OutboundRefused(
                    f"host {host!r} resolves to {address}, not a public address (loopback, "
                    "private or link-local, or another internal range); an admin can allow "
                    "it with REPODEPOT_OUTBOUND_ALLOWLIST",
                    field="url",
                )
        if not found:
            raise Unresolvable(f"host {host!r} cannot be resolved", field="url")
        return found

    async def git_config(self, url: str) -> list[tuple[str, str]]:
        """Check where `url` leads and return the git settings that hold git to it.

        For http(s): `http.curloptResolve` pins the host to the addresses checked and
        `http.followRedirects=false` stops a redirect elsewhere. Other schemes (ssh, git)
        are checked but cannot be pinned. Raises what `resolve` raises.
        """
        target = origin(url)
        addresses = await self.resolve(target.host, target.port)
        return git_pins(target, addresses)


def git_pins(target: Origin, addresses: Sequence[str]) -> list[tuple[str, str]]:
    """Settings that make git HTTP(S) connect to `addresses` and never follow redirects."""
    if target.scheme not in ("http", "https"):
        return []
    if _is_literal(target.host):  # a literal needs no lookup, so nothing to pin
        return [("http.followRedirects", "false")]
    shown = ",".join(f"[{address}]" if ":" in address else address for address in addresses)
    # Both spellings of a name with a trailing dot, whichever curl looks up.
    names = dict.fromkeys([target.host, target.host.rstrip(".")])
    pins = [("http.curloptResolve", f"{name}:{target.port}:{shown}") for name in names]
    return [*pins, ("http.followRedirects", "false")]


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The CA bundle, verifying, loaded once per process instead of once per transport.

    Every code host listing built a transport that loaded it anew, on the event loop: a
    permission sync of 1,000 accounts took 49 to 64 s with it and 30 to 36 s without
    (`python -m bench access`).
    """
    return httpx.create_ssl_context()


class GuardedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that connects each request to an address the policy checked.

    The request goes to the first checked address: its URL names the address, while the
    `Host` header and the TLS server name (and so the certificate check) keep the host.
    A refused address raises OutboundRefused; a name that does not resolve raises
    httpx.ConnectError, which callers retry like any connection failure. One transport
    serves one host (its connections are pooled by address).
    """

    def __init__(self, policy: Policy, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self._policy = policy
        self._inner = inner or httpx.AsyncHTTPTransport(trust_env=False, verify=tls_context())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Check the request's host, then send it to the address checked."""
        url = request.url
        port = url.port or DEFAULT_PORTS.get(url.scheme, 443)
        try:
            addresses = await self._policy.resolve(url.host, port)
        except Unresolvable as error:
            raise httpx.ConnectError(error.message, request=request) from None
        if _is_literal(url.host):
            return await self._inner.handle_async_request(request)
        pinned = httpx.Request(
            request.method,
            url.copy_with(host=addresses[0]),
            headers=request.headers,  # Host: still the name
            stream=request.stream,
            extensions={**request.extensions, "sni_hostname": url.host},
        )
        return await self._inner.handle_async_request(pinned)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        await self._inner.aclose()
