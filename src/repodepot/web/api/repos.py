"""`/api/repos`: the repositories you may read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from repodepot.accounts import Principal
from repodepot.exceptions import NotFound
from repodepot.gitserver.service import MirrorState
from repodepot.repositories import RepositoryRecord
from repodepot.services import Services
from repodepot.web.deps import AdminDep, PageDep, PrincipalDep, ServicesDep
from repodepot.web.errors import ERROR_RESPONSES
from repodepot.web.schemas import PageOut, RepositoryDetail, RepositoryOut, UpdateRequested

router = APIRouter(tags=["repositories"], responses=ERROR_RESPONSES)


@router.get("/api/repos", summary="List repositories")
async def list_repos(
    caller: PrincipalDep,
    svc: ServicesDep,
    paging: PageDep,
    deleted: Annotated[
        bool, Query(description="List soft-deleted repositories instead of live ones")
    ] = False,
) -> PageOut[RepositoryOut]:
    """Public repositories, your own, and (admins) all, by name."""
    page = await svc.repositories.list(
        caller, page=paging.page, per_page=paging.per_page, deleted=deleted
    )
    return PageOut[RepositoryOut].model_validate(page, from_attributes=True)


@router.post("/api/repos/{name:path}/update", status_code=202, summary="Update now")
async def update_repo(name: str, caller: AdminDep, svc: ServicesDep) -> UpdateRequested:
    """Queue the mirror's fetch at high priority; also resumes a failing mirror."""
    repo = await svc.repositories.get(caller, name)
    queued = await svc.gitserver.enqueue(repo.id, "admin")
    if not queued:
        raise NotFound(f"{name!r} has no mirror yet: it is cloned once the updater sees it")
    return UpdateRequested(queued=True)


@router.get("/api/repos/{name:path}", summary="Show a repository")
async def get_repo(name: str, caller: PrincipalDep, svc: ServicesDep) -> RepositoryDetail:
    """One repository with its mirror; 404 also when it is private and not yours.

    Opening it queues an update when the mirror is older than `update_on_visit_after`.
    """
    repo, mirror = await repository_with_mirror(svc, caller, name)
    return RepositoryDetail.model_validate(
        {**RepositoryOut.model_validate(repo).model_dump(), "mirror": mirror}
    )


async def repository_with_mirror(
    svc: Services, caller: Principal, name: str
) -> tuple[RepositoryRecord, MirrorState | None]:
    """The repository and its mirror; a stale mirror is queued for an update (a visit)."""
    repo = await svc.repositories.get(caller, name)
    await svc.gitserver.enqueue_stale(repo.id, svc.settings.update_on_visit_after)
    return repo, await svc.gitserver.state(repo.id)
