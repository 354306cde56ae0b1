"""Remove credentials from any text that leaves the git layer (errors, logs, stored URLs)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s'\"]+@")
_TOKENS = re.compile(
    r"\b(?:rdp_[A-Za-z0-9_-]{16,}"  # ours
    r"|gh[pousr]_[A-Za-z0-9]{20,}"  # GitHub classic tokens
    r"|github_pat_[A-Za-z0-9_]{20,}"  # GitHub fine-grained tokens
    r"|glpat-[A-Za-z0-9_-]{20,}"  # GitLab personal access tokens
    r")"
)
_AUTH_HEADER = re.compile(r"(?i)(authorization:\s*(?:bearer|basic|token)\s+)\S+")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return `text` with URL userinfo, known token formats, auth headers and `secrets` masked."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, MASK)
    text = _USERINFO.sub(rf"\g<scheme>{MASK}@", text)
    text = _AUTH_HEADER.sub(rf"\g<1>{MASK}", text)
    return _TOKENS.sub(MASK, text)


def strip_userinfo(url: str) -> str:
    """The URL without `user:password@`, for storing and showing."""
    if "@" not in url:  # no userinfo possible; skips parsing for the common case
        return url
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))
