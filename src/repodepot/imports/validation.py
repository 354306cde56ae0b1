"""What an import may fetch: allowed schemes, no local paths or helpers, no private hosts.

Every refusal is InvalidInput naming the field, so the API answers 422 with it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from repodepot.exceptions import InvalidInput
from repodepot.git.redact import strip_userinfo

NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22, "git": 9418}
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, kw_only=True, slots=True)
class Source:
    """A validated source: the URL to store and show, and credentials found in it."""

    url: str
    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def validate_name(value: str, field_name: str) -> str:
    """An owner or slug: 1-100 of `[A-Za-z0-9._-]`, not starting with `-` or `.`, no `..`."""
    if not NAME.fullmatch(value) or value.startswith(("-", ".")) or ".." in value:
        raise InvalidInput(
            f"{field_name} must be 1-100 letters, digits, '.', '_' or '-', not starting with "
            "'-' or '.' and without '..'",
            field=field_name,
        )
    if value.endswith((".git", ".lock")):
        raise InvalidInput(f"{field_name} must not end in '.git' or '.lock'", field=field_name)
    return value


def parse_source(url: str, allowed_schemes: Sequence[str]) -> Source:
    """Check `url` against the allowlist; raises InvalidInput(field="url") saying why not."""
    url = url.strip()
    allowed = ", ".join(allowed_schemes)
    if not url:
        raise InvalidInput("url is required", field="url")
    if url.startswith("-"):
        raise InvalidInput("url must not start with '-'", field="url")
    if any(ord(char) < 33 or ord(char) == 127 for char in url):
        raise InvalidInput("url must not contain spaces or control characters", field="url")
    head = url.split("/", 1)[0]
    if "::" in head:
        raise InvalidInput("transport helpers such as ext:: and fd:: are not allowed", field="url")
    if "://" not in url:
        raise InvalidInput(
            f"url must be an absolute URL with one of these schemes: {allowed} "
            "(local paths and scp-like 'host:path' addresses are not accepted)",
            field="url",
        )
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        raise InvalidInput("file:// URLs are not allowed", field="url")
    if scheme not in allowed_schemes:
        raise InvalidInput(f"scheme {scheme!r} is not allowed; allowed: {allowed}", field="url")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise InvalidInput("url has an invalid port", field="url") from None
    if not host or host.startswith("-"):
        raise InvalidInput("url has no valid host", field="url")
    if not parts.path.strip("/"):
        raise InvalidInput("url names no repository path", field="url")
    return Source(
        url=strip_userinfo(url),
        scheme=scheme,
        host=host,
        port=port or DEFAULT_PORTS[scheme],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def _blocked(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def _allowlisted(host: str, address: IPAddress, allowlist: Sequence[str]) -> bool:
    for entry in allowlist:
        if entry.lower() == host.lower():
            return True
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue  # a host name entry
    return False


async def resolve_public(source: Source, allowlist: Sequence[str]) -> str:
    """Resolve the host and return the address to connect to.

    Raises InvalidInput(field="url") when the host does not resolve, or resolves to a
    loopback, private, link-local or otherwise internal address that is not allowlisted.
    The caller pins git to the returned address, so a second lookup cannot differ.
    """
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            source.host, source.port, type=socket.SOCK_STREAM
        )
    except (socket.gaierror, UnicodeError):
        raise InvalidInput(f"host {source.host!r} cannot be resolved", field="url") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    for address in addresses:
        if _blocked(address) and not _allowlisted(source.host, address, allowlist):
            raise InvalidInput(
                f"host {source.host!r} resolves to {address}, a loopback, private or "
                "link-local address; an admin can allow it with REPODEPOT_OUTBOUND_ALLOWLIST",
                field="url",
            )
    return str(addresses[0])


def pin_config(source: Source, address: str) -> list[tuple[str, str]]:
    """Settings that make git HTTP(S) connect to `address` and never follow redirects."""
    if source.scheme not in ("http", "https"):
        return []
    shown = f"[{address}]" if ":" in address else address
    return [
        ("http.curloptResolve", f"{source.host}:{source.port}:{shown}"),
        ("http.followRedirects", "false"),
    ]
