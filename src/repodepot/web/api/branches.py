"""Branch status: a repository's branches, its upstream, and who is behind it.

Registered before `/api/repos/{name}` so that `…/branches`, `…/upstream` and
`…/sync-status` are not read as parts of a repository's name.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from repodepot.nodes import internal_reads
from repodepot.web.bodies import JsonRoute
from repodepot.web.deps import PageDep, PrincipalDep, ReaderDep, ServicesDep
from repodepot.web.errors import ERROR_RESPONSES, error_responses
from repodepot.web.schemas import PageOut

router = APIRouter(route_class=JsonRoute, tags=["branches"], responses=ERROR_RESPONSES)


class _Record(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class BranchCommitOut(_Record):
    """A branch's head commit."""

    sha: str
    committed_at: datetime
    author_name: str
    subject: str


class BranchOut(_Record):
    """A branch and its counts against the default branch."""

    name: str
    is_default: bool
    commit: BranchCommitOut
    ahead: int = Field(description="Commits on the branch that the default branch lacks")
    behind: int = Field(description="Commits on the default branch that the branch lacks")


class UpstreamIn(BaseModel):
    """A repository's upstream: a URL or another repository here, and what to track."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=2048, examples=["https://github.com/golang/go.git"])
    repository: str | None = Field(None, max_length=255, examples=["upstream/go"])
    token: str | None = Field(
        None,
        min_length=1,
        max_length=4096,
        description="Sealed, never shown again, sent only to the URL's origin",
    )
    username: str | None = Field(None, max_length=200)
    branches: list[str] | None = Field(
        None,
        max_length=50,
        examples=[["main", "release/*", "main:master"]],
        description="Names, globs, or LOCAL:UPSTREAM; default: the default branch",
    )
    interval: float | None = Field(
        None, description="Seconds between fetches (at least 60; default 900)"
    )


class UpstreamOut(_Record):
    """A repository's upstream as configured and last fetched (never its credential)."""

    url: str | None
    repository: str | None
    branches: list[str]
    has_token: bool
    automatic: bool
    interval_seconds: float
    last_fetched_at: datetime | None
    next_fetch_at: datetime
    last_error: str | None
    error_kind: str | None
    failing: bool
    last_fetch_ms: dict[str, int] | None = Field(
        description="The last fetch's time by part: network, pack, refs, db"
    )


class TrackedOut(_Record):
    """One tracked branch against its upstream branch."""

    branch: str
    upstream_branch: str
    local_sha: str | None
    upstream_sha: str | None
    ahead: int | None
    behind: int | None
    needs_pull: bool
    needs_push: bool
    diverged: bool
    missing: bool
    computed_at: datetime
    stale: bool = Field(description="The last fetch failed: the counts are from before it")


class SyncStatusOut(_Record):
    """A repository's upstream (null: none) and its tracked branches."""

    upstream: UpstreamOut | None
    branches: list[TrackedOut]


class OrgTrackedOut(TrackedOut):
    """A tracked branch of some repository."""

    repository: str


class FetchQueued(BaseModel):
    """The upstream fetch is queued."""

    queued: bool = True


@router.get("/api/repos/{name:path}/branches", summary="A repository's branches")
async def list_branches(
    name: str,
    caller: ReaderDep,
    svc: ServicesDep,
    paging: PageDep,
    q: Annotated[str | None, Query(max_length=200, description="Part of the name")] = None,
    sort: Annotated[Literal["updated", "name"], Query()] = "updated",
    state: Annotated[
        Literal["active", "stale"] | None,
        Query(description="stale: last commit over 90 days ago"),
    ] = None,
) -> PageOut[BranchOut]:
    """Every branch with its head commit and ahead/behind against the default branch.

    The default branch comes first. Counts for all branches of a page are computed at
    once and kept by commit pair, so a branch that did not move costs nothing. A mirror
    on another storage node is read there (503 with Retry-After while it cannot answer).
    """
    page = await internal_reads.branch_page(
        svc, caller, name, q=q, sort=sort, state=state, page=paging.page, per_page=paging.per_page
    )
    return PageOut[BranchOut].model_validate(page, from_attributes=True)


@router.put(
    "/api/repos/{name:path}/upstream",
    summary="Set a repository's upstream",
    responses=error_responses(403),
)
async def put_upstream(
    name: str, body: UpstreamIn, caller: PrincipalDep, svc: ServicesDep
) -> UpstreamOut:
    """Track an upstream (its owner or an admin): `url` or `repository`, and `branches`.

    The URL is checked by the outbound policy now and at every fetch; a token is sealed
    and sent only to its origin. A fetch is queued at once.
    """
    info = await svc.branches.set_upstream(
        caller,
        name,
        url=body.url,
        repository=body.repository,
        token=body.token,
        username=body.username,
        branches=body.branches,
        interval=body.interval,
    )
    return UpstreamOut.model_validate(info)


@router.get("/api/repos/{name:path}/upstream", summary="Show a repository's upstream")
async def get_upstream(name: str, caller: ReaderDep, svc: ServicesDep) -> UpstreamOut:
    """The upstream and its last fetch; 404 when the repository has none."""
    return UpstreamOut.model_validate(await svc.branches.upstream(caller, name))


@router.delete(
    "/api/repos/{name:path}/upstream",
    status_code=204,
    summary="Remove a repository's upstream",
    responses=error_responses(403),
)
async def delete_upstream(name: str, caller: PrincipalDep, svc: ServicesDep) -> Response:
    """Stop tracking the upstream: its hidden refs and tracked rows go too."""
    await svc.branches.remove_upstream(caller, name)
    return Response(status_code=204)


@router.post(
    "/api/repos/{name:path}/upstream/fetch", status_code=202, summary="Fetch the upstream now"
)
async def fetch_upstream(name: str, caller: PrincipalDep, svc: ServicesDep) -> FetchQueued:
    """Queue a fetch of the upstream ahead of its schedule."""
    await svc.branches.fetch_now(caller, name)
    return FetchQueued()


@router.get("/api/repos/{name:path}/sync-status", summary="Branches against the upstream")
async def sync_status(name: str, caller: ReaderDep, svc: ServicesDep) -> SyncStatusOut:
    """The upstream and each tracked branch's counts, as of the last fetch (no git runs)."""
    # Rows, not the mirror: answered here whichever storage node holds it.
    return SyncStatusOut.model_validate(await svc.branches.sync_status(caller, name))


@router.get("/api/sync-status", summary="Tracked branches across repositories")
async def org_sync_status(
    caller: ReaderDep,
    svc: ServicesDep,
    paging: PageDep,
    needs_pull: Annotated[bool | None, Query(description="Behind their upstream")] = None,
    needs_push: Annotated[bool | None, Query(description="Ahead of their upstream")] = None,
    diverged: Annotated[bool | None, Query(description="Both")] = None,
) -> PageOut[OrgTrackedOut]:
    """Tracked branches of every repository you may read, by repository and branch."""
    page = await svc.branches.org_status(
        caller,
        needs_pull=needs_pull,
        needs_push=needs_push,
        diverged=diverged,
        page=paging.page,
        per_page=paging.per_page,
    )
    return PageOut[OrgTrackedOut](
        items=[
            OrgTrackedOut.model_validate({**_fields(row.tracked), "repository": row.repository})
            for row in page.items
        ],
        total=page.total,
        page=page.page,
        per_page=page.per_page,
    )


def _fields(tracked: object) -> dict[str, object]:
    return TrackedOut.model_validate(tracked).model_dump()
