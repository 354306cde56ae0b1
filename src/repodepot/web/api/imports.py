"""`/api/imports`: import an external repository, watch it live over SSE, cancel it."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from repodepot.db.models import ImportStatus
from repodepot.events import Event
from repodepot.imports.service import event_order
from repodepot.web.bodies import JsonRoute
from repodepot.web.deps import PageDep, PrincipalDep, ServicesDep
from repodepot.web.errors import ERROR_RESPONSES, error_responses
from repodepot.web.params import RecordId
from repodepot.web.schemas import ImportCreate, ImportJobOut, PageOut

router = APIRouter(route_class=JsonRoute, tags=["imports"], responses=ERROR_RESPONSES)

KEEPALIVE_SECONDS = 15.0


def job_out(event: Event) -> ImportJobOut:
    """The API shape of a job event."""
    repository = event["target"] if event.get("status") == "success" else None
    return ImportJobOut.model_validate({**event, "repository": repository})


@router.post(
    "/api/imports",
    status_code=202,
    summary="Import a repository",
    responses=error_responses(409, 429),
)
async def create_import(body: ImportCreate, caller: PrincipalDep, svc: ServicesDep) -> ImportJobOut:
    """Queue an import of `url` into `owner/slug`; watch it at `/api/imports/{id}/events`."""
    job = await svc.imports.submit(
        caller,
        url=body.url,
        owner=body.owner,
        slug=body.slug,
        token=body.token,
        username=body.username,
        visibility=body.visibility,
    )
    return job_out(job)


@router.get("/api/imports", summary="List imports")
async def list_imports(
    caller: PrincipalDep,
    svc: ServicesDep,
    paging: PageDep,
    status: Annotated[ImportStatus | None, Query(description="Only jobs in this state")] = None,
) -> PageOut[ImportJobOut]:
    """Your imports (admins: everyone's), newest first."""
    page = await svc.imports.list_jobs(
        caller, status=status, page=paging.page, per_page=paging.per_page
    )
    return PageOut[ImportJobOut](
        items=[job_out(item) for item in page.items],
        total=page.total,
        page=page.page,
        per_page=page.per_page,
    )


@router.get("/api/imports/{job_id}", summary="Show an import")
async def get_import(job_id: RecordId, caller: PrincipalDep, svc: ServicesDep) -> ImportJobOut:
    """One import as it stands now (pending ones with their queue position)."""
    return job_out(await svc.imports.get(caller, job_id))


@router.post(
    "/api/imports/{job_id}/cancel", summary="Cancel an import", responses=error_responses(409)
)
async def cancel_import(job_id: RecordId, caller: PrincipalDep, svc: ServicesDep) -> ImportJobOut:
    """Stop a pending or running import; cancelling twice is harmless, a finished one is 409."""
    return job_out(await svc.imports.cancel(caller, job_id))


@router.get(
    "/api/imports/{job_id}/events",
    summary="Watch an import (SSE)",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "`progress` events, then one `done` event",
        }
    },
)
async def import_events(
    job_id: RecordId,
    caller: PrincipalDep,
    svc: ServicesDep,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    """Server-sent events: the current state at once, then every change, then `done`.

    Each event's data is the whole job, so a client that reconnects (with
    `Last-Event-ID`) or misses one loses nothing.
    """
    current, changes = await svc.imports.watch(caller, job_id, keepalive=KEEPALIVE_SECONDS)
    return StreamingResponse(
        _stream(current, changes, last_event_id),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def event_id(event: Event) -> str:
    """The SSE id of an event: status rank and sequence number."""
    rank, seq = event_order(event)
    return f"{rank}-{seq}"


def _frame(event: Event) -> str:
    finished = ImportStatus(event["status"]).finished
    data = json.dumps(job_out(event).model_dump(mode="json"), separators=(",", ":"))
    return f"id: {event_id(event)}\nevent: {'done' if finished else 'progress'}\ndata: {data}\n\n"


async def _stream(
    current: Event, changes: AsyncGenerator[Event | None, None], last_event_id: str | None
) -> AsyncIterator[str]:
    try:
        yield "retry: 2000\n\n"
        if last_event_id != event_id(current) or ImportStatus(current["status"]).finished:
            yield _frame(current)
        async for event in changes:
            yield ": keep-alive\n\n" if event is None else _frame(event)
    finally:
        await changes.aclose()
