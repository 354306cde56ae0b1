"""Remove credentials from any text that leaves the git layer (errors, logs, stored URLs).

Credentials hide in a URL's userinfo (`https://user:token@host/`) and in its query
string (`?private_token=…`, `?access_token=…`, `?token=…`, `?api_key=…`, a signature).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"

# Query parameter names that carry a secret: token, key, secret, password, auth,
# signature, credential, alone or after a prefix (private_token, X-Amz-Signature).
_SECRET_NAME = (
    r"(?:[A-Za-z0-9]+[_-])*"
    r"(?:token|key|secret|password|passwd|pwd|auth|sig|signature|credentials?)"
)
_SECRET_PARAM = re.compile(rf"(?i){_SECRET_NAME}")
_QUERY_SECRET = re.compile(rf"(?i)([?&;]{_SECRET_NAME}=)[^&#\s'\"]+")

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
    text = _QUERY_SECRET.sub(rf"\g<1>{MASK}", text)
    return _TOKENS.sub(MASK, text)


def strip_credentials(url: str) -> str:
    """The URL without `user:password@` and without secret query parameters, to store and show.

    Other query parameters are kept as they were written.
    """
    if "@" not in url and "?" not in url:  # nothing to strip; skips parsing for the common case
        return url
    try:
        return _strip(url)
    except ValueError:  # not a URL urlsplit can read (`http://[x`): mask what looks secret
        return redact(url)


def _strip(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        parts = parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host)
    if parts.query:
        kept = [item for item in parts.query.split("&") if not _is_secret(item)]
        parts = parts._replace(query="&".join(kept))
    return urlunsplit(parts)


def query_secret(url: str) -> str | None:
    """The value of the URL's first secret query parameter (`?private_token=…`), if any."""
    query = urlsplit(url).query
    for item in query.split("&") if query else ():
        value = item.partition("=")[2]
        if _is_secret(item) and value:
            return unquote(value)
    return None


def _is_secret(item: str) -> bool:
    return bool(_SECRET_PARAM.fullmatch(unquote(item.partition("=")[0])))
