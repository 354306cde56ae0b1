"""Browser-facing walls as ASGI middleware: security headers, trusted proxies, session cookie."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.datastructures import MutableHeaders
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from repodepot.outbound import IPNetwork

SESSION_COOKIE = "repodepot_session"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",  # no inline script or style, nothing from another origin
        "img-src 'self' data:",  # Swagger UI's stylesheet draws its icons as data: URIs
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    )
)
SECURITY_HEADERS = (
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
)


class SecurityHeaders:
    """Add CSP, X-Frame-Options, X-Content-Type-Options and Referrer-Policy to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap one request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


class TrustedProxies:
    """Take the scheme from `X-Forwarded-Proto` when, and only when, a trusted proxy sent it.

    Anyone can send the header; only the reverse proxies in `trusted` (CIDR networks) are
    believed. With none configured the header is ignored.
    """

    def __init__(self, app: ASGIApp, *, trusted: Sequence[str]) -> None:
        self.app = app
        self.networks: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in trusted
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Rewrite the scheme of a request a trusted proxy forwarded."""
        if scope["type"] == "http" and self.networks and self._trusted(scope.get("client")):
            proto = _forwarded_proto(scope["headers"])
            if proto in ("http", "https"):
                scope = {**scope, "scheme": proto}
        await self.app(scope, receive, send)

    def _trusted(self, client: tuple[str, int] | None) -> bool:
        if client is None:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return False  # a unix socket's path
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)


def _forwarded_proto(headers: list[tuple[bytes, bytes]]) -> str:
    values = [value for name, value in headers if name == b"x-forwarded-proto"]
    if not values:
        return ""
    # A chain of proxies appends: the last entry is the one our trusted neighbour wrote.
    return values[-1].decode("latin-1").rsplit(",", 1)[-1].strip().lower()


class SessionCookie:
    """Starlette's signed session cookie, marked Secure for requests that came over https.

    `https_only` marks it Secure always. Otherwise a request's scheme decides: https when
    served over TLS directly or forwarded by a trusted proxy (`TrustedProxies`, outside).
    """

    def __init__(self, app: ASGIApp, *, secret_key: str, max_age: int, https_only: bool) -> None:
        def cookie(secure: bool) -> SessionMiddleware:
            return SessionMiddleware(
                app,
                secret_key=secret_key,
                session_cookie=SESSION_COOKIE,
                max_age=max_age,
                same_site="lax",
                https_only=secure,
            )

        self.secure = cookie(True)
        self.plain = self.secure if https_only else cookie(False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hand the request to the cookie writer its scheme calls for."""
        secure = scope["type"] == "http" and scope.get("scheme") == "https"
        await (self.secure if secure else self.plain)(scope, receive, send)
