"""`/healthz`, `/readyz` and `/metrics`: for load balancers and Prometheus, no token needed."""

from __future__ import annotations

import tempfile

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from repodepot.web.bodies import JsonRoute
from repodepot.web.deps import ServicesDep
from repodepot.web.schemas import Health

router = APIRouter(route_class=JsonRoute, tags=["operations"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> Health:
    """The process is up and answering."""
    return Health(status="ok")


@router.get("/readyz", summary="Readiness", responses={503: {"model": Health}})
async def readyz(svc: ServicesDep) -> JSONResponse:
    """The database answers and the data dir is writable; 503 naming the failed check otherwise."""
    checks = {
        "database": "ok" if await svc.database_ready() else "unreachable",
        "data_dir": "ok" if _writable(svc) else "not writable",
    }
    ready = all(value == "ok" for value in checks.values())
    body = Health(status="ready" if ready else "not ready", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


def _writable(svc: ServicesDep) -> bool:
    try:
        with tempfile.NamedTemporaryFile(dir=svc.storage.tmp_dir, prefix=".readyz-"):
            return True
    except OSError:
        return False


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(svc: ServicesDep) -> Response:
    """Request counts and latencies, git command counts and durations."""
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE_LATEST)
