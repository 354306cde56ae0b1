"""Every answer carries the browser security headers; /docs needs no other origin; the session
cookie is Secure behind a trusted TLS proxy, and only a trusted one."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from repodepot.settings import Settings
from repodepot.web.app import create_app

PROXY = "10.20.0.7"


@pytest.mark.parametrize(
    ("path", "bearer", "status"),
    [
        ("/login", False, 200),  # a page
        ("/repos", False, 200),  # the public repositories, without a login
        ("/imports", False, 303),  # a redirect to log in
        ("/repos/acme/missing", True, 404),  # an HTML error page
        ("/api/user", True, 200),  # the API
        ("/api/repos/acme/missing", True, 404),  # a JSON error
        ("/api/user", False, 401),
        ("/static/style.css", False, 200),
        ("/openapi.json", False, 200),
        ("/docs", False, 200),
        ("/goproxy/example.com/x/@v/list", False, None),  # not for browsers, headers all the same
        ("/git/acme/missing.git/info/refs?service=git-upload-pack", False, None),
    ],
)
async def test_every_answer_carries_the_security_headers(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    path: str,
    bearer: bool,
    status: int | None,
) -> None:
    answer = await client.get(path, headers=admin_headers if bearer else {})

    assert status is None or answer.status_code == status, answer.text
    csp = answer.headers["content-security-policy"]
    parts = (part.strip().partition(" ") for part in csp.split(";"))
    directives = {name: value for name, _, value in parts}
    assert directives["default-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["base-uri"] == "'none'"
    assert directives["form-action"] == "'self'"
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "script-src" not in directives  # scripts fall back to default-src 'self'
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "same-origin"


async def test_docs_load_every_asset_from_this_server(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")

    assert page.status_code == 200
    references = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    assert references, page.text
    for reference in references:
        assert reference.startswith("/") and not reference.startswith("//"), reference
        asset = await client.get(reference)
        assert asset.status_code == 200 and asset.content, reference
    assert "<script>" not in page.text  # no inline script: every <script> has a src
    assert "cdn" not in page.text.lower()
    assert (await client.get("/redoc")).status_code == 404


@pytest.fixture
async def proxied_app(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FastAPI]:
    data = tmp_path_factory.mktemp("proxied")
    settings = Settings(
        data_dir=data,
        database_url=f"sqlite+aiosqlite:///{data / 'test.db'}",
        secret_key="test-secret-key-" + "x" * 32,
        trusted_proxies=["10.20.0.0/16"],
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


async def _login_cookie(app: FastAPI, peer: str, headers: dict[str, str]) -> str:
    """The Set-Cookie of the login page (its pre-login session) for a request from `peer`."""
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://repodepot") as http:
        answer = await http.get("/login", headers=headers)
    assert answer.status_code == 200
    return answer.headers["set-cookie"].lower()


async def test_a_trusted_proxy_s_https_makes_the_cookie_secure(proxied_app: FastAPI) -> None:
    cookie = await _login_cookie(proxied_app, PROXY, {"X-Forwarded-Proto": "https"})

    assert "; secure" in cookie
    assert "httponly" in cookie and "samesite=lax" in cookie


@pytest.mark.parametrize(
    ("peer", "headers"),
    [
        pytest.param("192.0.2.9", {"X-Forwarded-Proto": "https"}, id="untrusted-peer"),
        pytest.param("127.0.0.1", {"X-Forwarded-Proto": "https"}, id="loopback-not-listed"),
        pytest.param(PROXY, {}, id="trusted-peer-plain-http"),
        pytest.param(PROXY, {"X-Forwarded-Proto": "https, http"}, id="proxy-wrote-http"),
    ],
)
async def test_x_forwarded_proto_is_believed_from_trusted_proxies_only(
    proxied_app: FastAPI, peer: str, headers: dict[str, str]
) -> None:
    cookie = await _login_cookie(proxied_app, peer, headers)

    assert "secure" not in cookie
    assert "httponly" in cookie


async def test_session_https_only_marks_the_cookie_secure_everywhere(
    settings: Settings,
) -> None:
    app = create_app(settings.model_copy(update={"session_https_only": True}))
    async with app.router.lifespan_context(app):
        cookie = await _login_cookie(app, "192.0.2.9", {})

    assert "; secure" in cookie
