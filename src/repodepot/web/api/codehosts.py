"""`/api/codehosts`: code host connections, their syncs and held deletions (admins)."""

from __future__ import annotations

from fastapi import APIRouter, Response

from repodepot.web.bodies import JsonRoute
from repodepot.web.deps import AdminDep, PageDep, ServicesDep
from repodepot.web.errors import ERROR_RESPONSES
from repodepot.web.params import RecordId
from repodepot.web.schemas import (
    CodeHostIn,
    CodeHostOut,
    CodeHostPatch,
    DeletionsConfirmed,
    PageOut,
    SyncOut,
    SyncRequested,
)

router = APIRouter(route_class=JsonRoute, tags=["code hosts"], responses=ERROR_RESPONSES)


@router.post("/api/codehosts", status_code=201, summary="Add a code host connection")
async def create_codehost(body: CodeHostIn, caller: AdminDep, svc: ServicesDep) -> CodeHostOut:
    """Validate and save the connection; the first sync starts right away."""
    record = await svc.codehosts.create(caller, kind=body.kind, name=body.name, config=body.config)
    return CodeHostOut.model_validate(record)


@router.get("/api/codehosts", summary="List code host connections")
async def list_codehosts(caller: AdminDep, svc: ServicesDep) -> list[CodeHostOut]:
    """Every connection with its last sync, repository count and held deletions."""
    return [CodeHostOut.model_validate(record) for record in await svc.codehosts.list(caller)]


@router.get("/api/codehosts/{host_id}", summary="Show a code host connection")
async def get_codehost(host_id: RecordId, caller: AdminDep, svc: ServicesDep) -> CodeHostOut:
    """One connection."""
    return CodeHostOut.model_validate(await svc.codehosts.get(caller, host_id))


@router.patch("/api/codehosts/{host_id}", summary="Change a code host connection")
async def update_codehost(
    host_id: RecordId, body: CodeHostPatch, caller: AdminDep, svc: ServicesDep
) -> CodeHostOut:
    """Rename it, or replace its config (the token is kept unless `config.token` is given)."""
    record = await svc.codehosts.update(caller, host_id, name=body.name, config=body.config)
    return CodeHostOut.model_validate(record)


@router.delete("/api/codehosts/{host_id}", status_code=204, summary="Remove a connection")
async def delete_codehost(host_id: RecordId, caller: AdminDep, svc: ServicesDep) -> Response:
    """Remove it; repositories no other connection yields are soft-deleted."""
    await svc.codehosts.remove(caller, host_id)
    return Response(status_code=204)


@router.post("/api/codehosts/{host_id}/sync", status_code=202, summary="Sync now")
async def sync_codehost(host_id: RecordId, caller: AdminDep, svc: ServicesDep) -> SyncRequested:
    """Make the connection due now; poll it until `last_sync.started_at >= requested_at`."""
    return SyncRequested(requested_at=await svc.codehosts.request_sync(caller, host_id))


@router.get("/api/codehosts/{host_id}/syncs", summary="Sync history")
async def list_syncs(
    host_id: RecordId, caller: AdminDep, svc: ServicesDep, paging: PageDep
) -> PageOut[SyncOut]:
    """The connection's syncs, newest first."""
    page = await svc.codehosts.history(caller, host_id, page=paging.page, per_page=paging.per_page)
    return PageOut[SyncOut].model_validate(page, from_attributes=True)


@router.post("/api/codehosts/{host_id}/held-deletions/confirm", summary="Confirm held deletions")
async def confirm_deletions(
    host_id: RecordId, caller: AdminDep, svc: ServicesDep
) -> DeletionsConfirmed:
    """Soft-delete the repositories purge protection held back at the last sync."""
    return DeletionsConfirmed(deleted=await svc.codehosts.confirm_deletions(caller, host_id))
