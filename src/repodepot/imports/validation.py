"""What an import may fetch: allowed schemes, no local paths or helpers, no private hosts.

Every refusal is InvalidInput naming the field, so the API answers 422 with it. Which
addresses may be reached is `repodepot.outbound`'s policy, the same for every fetch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from repodepot.exceptions import InvalidInput
from repodepot.git.redact import query_secret, strip_credentials
from repodepot.outbound import origin

NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


@dataclass(frozen=True, kw_only=True, slots=True)
class Source:
    """A validated source: the URL to store and show, and credentials found in it.

    The credentials come from the URL's userinfo or, failing that, a token in its
    query string (`?private_token=…`); the URL kept has neither.
    """

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
    scheme = url.split("://", 1)[0].lower()
    if scheme == "file":
        raise InvalidInput("file:// URLs are not allowed", field="url")
    if scheme not in allowed_schemes:
        raise InvalidInput(f"scheme {scheme!r} is not allowed; allowed: {allowed}", field="url")
    target = origin(url)  # InvalidInput for brackets, bad ports, no host
    if target.host.startswith("-"):
        raise InvalidInput("url has no valid host", field="url")
    parts = urlsplit(url)
    if not parts.path.strip("/"):
        raise InvalidInput("url names no repository path", field="url")
    password = unquote(parts.password) if parts.password else query_secret(url)
    return Source(
        url=strip_credentials(url),
        scheme=scheme,
        host=target.host,
        port=target.port,
        username=unquote(parts.username) if parts.username else None,
        password=password,
    )
