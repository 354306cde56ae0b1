"""`/api/scheduler`: the update queue at a glance (admins)."""

from __future__ import annotations

from fastapi import APIRouter

from repodepot.web.bodies import JsonRoute
from repodepot.web.deps import AdminDep, ServicesDep
from repodepot.web.errors import ERROR_RESPONSES
from repodepot.web.schemas import SchedulerOut

router = APIRouter(route_class=JsonRoute, tags=["scheduler"], responses=ERROR_RESPONSES)


@router.get("/api/scheduler", summary="Update queue status")
async def scheduler_status(caller: AdminDep, svc: ServicesDep) -> SchedulerOut:
    """Mirrors, queued and due updates, running ones, failing mirrors, the next due time."""
    return SchedulerOut.model_validate(await svc.gitserver.status())
