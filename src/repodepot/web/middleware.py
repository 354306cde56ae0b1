"""Request ids, access logs and request metrics, as one pure ASGI middleware; a NUL refused."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from repodepot.exceptions import InvalidInput
from repodepot.logs import request_id
from repodepot.metrics import Metrics

logger = logging.getLogger("repodepot.access")

_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
INTERNAL = "/internal/"


def _nul(scope: Scope) -> InvalidInput | None:
    """The refusal of a NUL in the path or a query parameter (naming it); None without one.

    No name, revision or parameter has one, and PostgreSQL refuses a NUL in text: refused
    before any route could pass it to the database or git. Internal routes answer 403 to
    anything without the internal secret first, so they check their own.
    """
    path: str = scope["path"]
    if path.startswith(INTERNAL):
        return None
    if "\x00" in path:
        return InvalidInput("a NUL is not allowed in a URL's path")
    if b"%00" not in scope["query_string"]:
        return None
    query = scope["query_string"].decode("latin-1")
    field = next((key for key, value in parse_qsl(query) if "\x00" in key + value), None)
    return InvalidInput(f"a NUL is not allowed in {field or 'the query'!r}", field=field)


class RequestContext:
    """Give every request an id (kept from `X-Request-ID` when sane), log and measure it."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        on_error: Callable[[Request, Exception], Awaitable[Response]],
        on_refused: Callable[[Request, Exception], Awaitable[Response]],
        node: str | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.on_error = on_error
        self.on_refused = on_refused
        # A storage node signs its internal answers with its name (`nodes.forward` checks
        # it): an answer from another process at that URL is never taken for the node's.
        self.node = (b"x-repodepot-node", node.encode()) if node is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Wrap one HTTP request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _SAFE_ID.fullmatch(incoming) else uuid.uuid4().hex
        signed = self.node is not None and scope["path"].startswith(INTERNAL)
        token = request_id.set(rid)
        started = time.monotonic()
        status = 500
        started_response = False

        async def send_with_id(message: Message) -> None:
            nonlocal status
            nonlocal started_response
            if message["type"] == "http.response.start":
                status, started_response = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
                if signed and self.node is not None:
                    message["headers"].append(self.node)
            await send(message)

        try:
            if (refusal := _nul(scope)) is not None:
                response = await self.on_refused(Request(scope), refusal)
                await response(scope, receive, send_with_id)
                return
            await self.app(scope, receive, send_with_id)
        except Exception as error:
            # Answered here, inside Starlette's ServerErrorMiddleware, so it is logged once.
            if started_response:
                raise
            response = await self.on_error(Request(scope), error)
            await response(scope, receive, send_with_id)
        finally:
            seconds = time.monotonic() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe_request(scope["method"], route, status, seconds)
            logger.info(
                "%s %s %s",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "action": "http.request",
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(seconds * 1000, 1),
                },
            )
            request_id.reset(token)
