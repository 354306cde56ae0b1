"""Request ids, access logs and request metrics, as one pure ASGI middleware."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from repodepot.logs import request_id
from repodepot.metrics import Metrics

logger = logging.getLogger("repodepot.access")

_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{8,64}")
INTERNAL = "/internal/"


class RequestContext:
    """Give every request an id (kept from `X-Request-ID` when sane), log and measure it."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics,
        on_error: Callable[[Request, Exception], Awaitable[Response]],
        node: str | None = None,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.on_error = on_error
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
