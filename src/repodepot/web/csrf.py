"""Cross-site request forgery: a change made with the session cookie must come from our pages.

Two checks, both required. The browser's word on where the request comes from
(`Sec-Fetch-Site`, `Origin`): another site's page is refused; a client that sends neither
is left to the second check. And a synchronizer token, kept in the signed session and sent
back by every form (`csrf_token`) and every script (`X-CSRF-Token`), which another site
cannot read. SameSite=Lax alone lets same-site subdomains and older browsers through.

Bearer-token calls carry no cookie a browser would add by itself, so they are not checked.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

from starlette.requests import Request

from repodepot.exceptions import PermissionDenied

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SESSION_KEY = "csrf"
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
_RELOAD = "reload the page and try again"


class CrossSiteRequest(PermissionDenied):
    """The request did not come from a repodepot page; reload the page and try again."""

    code = "csrf"


def csrf_token(request: Request) -> str:
    """The session's token, made on first use: the login form has one before anyone logs in."""
    token = request.session.get(_SESSION_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[_SESSION_KEY] = token
    return token


def template_context(request: Request) -> dict[str, str]:
    """`csrf_token` for every template; pages rendered outside the session get none."""
    if "session" not in request.scope:
        return {"csrf_token": ""}
    return {"csrf_token": csrf_token(request)}


async def require_same_origin(request: Request) -> None:
    """Return if `request` is safe or proves it comes from our pages; raise CrossSiteRequest."""
    if request.method in SAFE_METHODS:
        return
    _check_fetch_metadata(request)
    expected = request.session.get(_SESSION_KEY)
    sent = await _sent_token(request)
    if not isinstance(expected, str) or not sent:
        raise CrossSiteRequest(f"the request carries no security token; {_RELOAD}")
    if not secrets.compare_digest(expected.encode(), sent.encode()):
        raise CrossSiteRequest(
            f"the security token is out of date (a login or logout since the page loaded?); "
            f"{_RELOAD}"
        )


def _check_fetch_metadata(request: Request) -> None:
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        raise CrossSiteRequest(f"your browser says this request came from a {site} page")
    origin = request.headers.get("origin")
    if origin is not None and not _is_this_site(origin, request):
        raise CrossSiteRequest(f"this request came from a page of {origin[:200]!r}, not this site")


def _is_this_site(origin: str, request: Request) -> bool:
    parts = urlsplit(origin)
    host = request.headers.get("host", "")
    if parts.scheme not in ("http", "https") or not host or parts.netloc.lower() != host.lower():
        return False  # includes "null": a sandboxed frame, a file, a redirect across sites
    # Behind a proxy that is not trusted the scheme here is unknown (http), so only a plain
    # http page posting to what we know is https is refused.
    return not (parts.scheme == "http" and request.url.scheme == "https")


async def _sent_token(request: Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type not in _FORM_TYPES:
        return ""
    value = (await request.form()).get(CSRF_FIELD)
    return value if isinstance(value, str) else ""
