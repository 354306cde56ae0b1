"""Log an httpx client in as a browser does: the form's CSRF token, then the session cookie."""

from __future__ import annotations

import base64
import json
import re

import httpx

_TOKEN_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
COOKIE = "repodepot_session"


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    match = _TOKEN_FIELD.search(html)
    assert match is not None, "the page has no form with a csrf_token"
    return match.group(1)


def same_origin(client: httpx.AsyncClient) -> dict[str, str]:
    """The headers a browser sends with a form posted from one of the client's pages."""
    return {"Origin": str(client.base_url).rstrip("/"), "Sec-Fetch-Site": "same-origin"}


async def log_in(client: httpx.AsyncClient, api_token: str) -> str:
    """Log in through the login form; returns the CSRF token of the new session's pages."""
    form = await client.get("/login")
    answer = await client.post(
        "/login",
        data={"token": api_token, "next": "/repos", "csrf_token": csrf_of(form.text)},
        headers=same_origin(client),
    )
    assert answer.status_code == 303, answer.text
    page = await client.get("/imports/new")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


def session_data(cookie: str) -> dict[str, object]:
    """What the signed session cookie holds (itsdangerous: base64 payload, timestamp, MAC)."""
    payload = cookie.split(".", 1)[0]
    data: dict[str, object] = json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))
    return data
