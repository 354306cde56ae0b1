"""The git URL a fetch may use: allowed schemes, no local paths or helpers.

`parse_source` is the one check of a source URL, for an import's submit and worker and
for every mirror's fetch. Every refusal is InvalidInput naming the `url` field. Which
addresses may be reached is `repodepot.outbound`'s policy, applied at each fetch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from repodepot.exceptions import InvalidInput
from repodepot.git.redact import query_secret, strip_credentials
from repodepot.outbound import origin


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
