"""`/api/scheduler`: the update queue at a glance (admins), and whether background work waits."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from repodepot.web.bodies import JsonRoute
from repodepot.web.deps import AdminDep, ServicesDep
from repodepot.web.errors import ERROR_RESPONSES
from repodepot.web.schemas import SchedulerOut

router = APIRouter(route_class=JsonRoute, tags=["scheduler"], responses=ERROR_RESPONSES)


class BackpressureOut(BaseModel):
    """The backpressure gate: whether new background work (fetches, maintenance) waits."""

    paused: bool = Field(description="No new background work starts (running work goes on)")
    reasons: list[str] = Field(description="The signals above their limits: load, p99")
    message: str | None = Field(description="Why, in words; null while open")
    load: float | None = Field(description="One-minute load average (null: signal off)")
    load_limit: float = Field(description="Its limit (0: off)")
    p99: float | None = Field(
        description="p99 of the last 30 s of requests, seconds (null: off or too few)"
    )
    p99_limit: float = Field(description="Its limit, seconds (0: off)")


class SchedulerStatusOut(SchedulerOut):
    """The update queue at a glance, with the backpressure gate."""

    backpressure: BackpressureOut


@router.get("/api/scheduler", summary="Update queue status")
async def scheduler_status(caller: AdminDep, svc: ServicesDep) -> SchedulerStatusOut:
    """The queue and whether background work is held back.

    Mirrors, queued and due updates, running ones, failing mirrors, the next due time,
    and whether the backpressure gate holds new background work back (and why).
    """
    status = SchedulerOut.model_validate(await svc.gitserver.status())
    state = svc.gate.state()
    gate = BackpressureOut(
        paused=state.closed,
        reasons=list(state.closed_by),
        message=state.message,
        load=state.load,
        load_limit=state.load_limit,
        p99=state.p99,
        p99_limit=state.p99_limit,
    )
    return SchedulerStatusOut(**status.model_dump(), backpressure=gate)
