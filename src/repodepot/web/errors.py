"""Map every error to `{"error": {"code", "message", "field"?}}` or an HTML page, in one place."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY

from repodepot import exceptions as exc
from repodepot.git.errors import GitError
from repodepot.logs import request_id
from repodepot.web.bodies import BodyTooLarge, MalformedBody, UnsupportedEncoding
from repodepot.web.schemas import ErrorResponse

logger = logging.getLogger(__name__)

STATUS: dict[type[exc.RepodepotError], int] = {
    exc.InvalidInput: 422,
    MalformedBody: 400,
    BodyTooLarge: 413,
    UnsupportedEncoding: 415,
    exc.NotAuthenticated: 401,
    exc.PermissionDenied: 403,
    exc.NotFound: 404,
    exc.AlreadyExists: 409,
    exc.DatabaseUnavailable: 503,
    exc.Unavailable: 503,
    exc.TooManyRequests: 429,
    GitError: 502,
}

JSON_PREFIXES = ("/api/", "/webhooks/", "/healthz", "/readyz", "/metrics", "/openapi.json")
PLAIN_PREFIXES = ("/git/", "/internal/")  # git (and a forwarding web process) read text


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries with the error schema for each status code."""
    return {
        code: {"model": ErrorResponse, "description": HTTPStatus(code).phrase} for code in codes
    }


ERROR_RESPONSES = error_responses(401, 403, 404, 413, 422)
"""The error answers every API route may give (413: a body past `request_max_bytes`)."""


def status_of(error: exc.RepodepotError) -> int:
    """The HTTP status for a domain error (500 for unmapped ones)."""
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def wants_json(request: Request) -> bool:
    """API routes answer JSON; pages answer HTML."""
    return request.url.path.startswith(JSON_PREFIXES)


def error_body(code: str, message: str, field: str | None = None) -> dict[str, Any]:
    """The JSON error envelope."""
    detail: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        detail["field"] = field
    return {"error": detail}


def _answer(
    request: Request,
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    if status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="repodepot"'}
    if wants_json(request):
        return JSONResponse(error_body(code, message, field), status_code=status, headers=headers)
    if request.url.path.startswith(PLAIN_PREFIXES):
        return PlainTextResponse(message + "\n", status_code=status, headers=headers)
    if status == 401:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    templates = request.scope["app"].state.templates
    return templates.TemplateResponse(  # type: ignore[no-any-return]
        request,
        "error.html",
        {"status": status, "message": message, "user": getattr(request.state, "user", None)},
        status_code=status,
    )


async def refused(request: Request, error: Exception) -> Response:
    """A domain error's answer outside any route (the middleware's refusals)."""
    return await _domain_error(request, error)


async def _domain_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, exc.RepodepotError)
    status = status_of(error)
    if status >= 500:
        logger.error("request failed: %s", error.message, extra={"action": "http.error"})
    headers = None
    if isinstance(error, exc.TooManyRequests | exc.Unavailable):
        headers = {"Retry-After": str(error.retry_after)}
    return _answer(request, status, error.code, error.message, error.field, headers)


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    first = error.errors()[0]
    if first.get("type") == "json_invalid":  # its location is a byte offset, not a field
        reason = first.get("ctx", {}).get("error", "")
        return _answer(request, 422, "invalid", f"the body is not valid JSON: {reason}")
    location = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path")]
    field = ".".join(location) or None
    message = f"{field}: {first['msg']}" if field else str(first["msg"])
    return _answer(request, 422, "invalid", message, field)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, StarletteHTTPException)
    phrase = HTTPStatus(error.status_code).phrase
    code = phrase.lower().replace(" ", "_")
    message = error.detail if isinstance(error.detail, str) else phrase
    if error.status_code == 413:  # the byte count of FastAPI's max_body_size: as BodyTooLarge
        too_large = BodyTooLarge(request.scope.get(MAX_BODY_SIZE_SCOPE_KEY, 0))
        code, message = too_large.code, too_large.message
    return _answer(request, error.status_code, code, message)


async def unexpected(request: Request, error: Exception) -> Response:
    """Log an unhandled error with its traceback; answer 500 without one."""
    logger.exception("unhandled error", extra={"action": "http.unhandled"}, exc_info=error)
    message = f"internal error; quote request id {request_id.get()} to your administrator"
    return _answer(request, 500, "internal", message)


def install(app: FastAPI) -> None:
    """Register the handlers on `app`."""
    app.add_exception_handler(exc.RepodepotError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
