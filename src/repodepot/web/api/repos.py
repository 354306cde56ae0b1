"""`/api/repos`: the repositories you may read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from repodepot.web.deps import PageDep, PrincipalDep, ServicesDep
from repodepot.web.errors import ERROR_RESPONSES
from repodepot.web.schemas import PageOut, RepositoryOut

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


@router.get("/api/repos/{name:path}", summary="Show a repository")
async def get_repo(name: str, caller: PrincipalDep, svc: ServicesDep) -> RepositoryOut:
    """One repository; 404 also when it is private and not yours."""
    return RepositoryOut.model_validate(await svc.repositories.get(caller, name))
