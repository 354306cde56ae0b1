"""/docs: Swagger UI from the `fastapi-offline` package, served here, not from a CDN.

FastAPI's own page loads its script from a CDN and starts it with an inline script; the
Content-Security-Policy allows neither, so this page loads both from our origin. (The
`swagger-ui-bundle` package ships Swagger UI 4, which refuses our OpenAPI 3.1 document.)
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from repodepot.web.pages import render

ASSETS_PATH = "/static/swagger"
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))

router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
async def api_docs(request: Request) -> Response:
    """The interactive API reference."""
    return render(
        request,
        "docs.html",
        title=request.app.title,
        assets=ASSETS_PATH,
        openapi_url=request.app.openapi_url,
    )
