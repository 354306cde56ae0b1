"""`/api/repos`: the repositories you may read."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from repodepot.accounts import Principal
from repodepot.exceptions import NotFound
from repodepot.gitserver.allowlist import check_exec
from repodepot.gitserver.schedule import QueueReason
from repodepot.gitserver.service import MirrorState
from repodepot.nodes import internal_reads
from repodepot.nodes.forward import node_of
from repodepot.repositories import RepositoryRecord
from repodepot.services import Services
from repodepot.storage import MAX_NAME, validate_repo_name
from repodepot.web.bodies import JsonRoute
from repodepot.web.deps import AdminDep, PageDep, PrincipalDep, ReaderDep, ServicesDep
from repodepot.web.errors import ERROR_RESPONSES, error_responses
from repodepot.web.execs import exec_output
from repodepot.web.schemas import (
    CommitLogOut,
    CommitOut,
    CredentialIn,
    CredentialSet,
    ExecIn,
    GoModuleOut,
    RepositoryDetail,
    RepositoryOut,
    RepositoryPageOut,
    RepositoryPatch,
    TagsOut,
    UpdateRequested,
)

router = APIRouter(route_class=JsonRoute, tags=["repositories"], responses=ERROR_RESPONSES)


@router.get("/api/repos", summary="List repositories")
async def list_repos(
    caller: ReaderDep,
    svc: ServicesDep,
    paging: PageDep,
    deleted: Annotated[
        bool, Query(description="List soft-deleted repositories instead of live ones")
    ] = False,
    after: Annotated[
        str | None,
        Query(
            max_length=MAX_NAME,
            description="Continue after this repository name (the last page's `next_after`); "
            "`page` then counts from there",
        ),
    ] = None,
) -> RepositoryPageOut:
    """The repositories you may read, by name.

    Public ones (also without a token), internal ones, your own, those granted to you or
    to a group of yours, and (admins) all. To walk a long listing, follow `next_after`:
    each page is then as quick as the first.
    """
    page = await svc.repositories.list(
        caller,
        page=paging.page,
        per_page=paging.per_page,
        deleted=deleted,
        after=None if after is None else validate_repo_name(after, field="after"),
    )
    out = RepositoryPageOut.model_validate(page, from_attributes=True)
    out.next_after = page.items[-1].name if page.more else None
    return out


@router.get("/api/repos/{name:path}/commits", summary="Recent commits of a ref")
async def list_commits(
    name: str,
    caller: ReaderDep,
    svc: ServicesDep,
    ref: Annotated[
        str | None, Query(description="A branch, tag or commit; the default branch if omitted")
    ] = None,
    per_page: Annotated[int, Query(ge=1, le=100, description="How many commits")] = 20,
) -> CommitLogOut:
    """The newest commits reachable from `ref`, newest first, read from the mirror.

    An empty repository answers no commits; 404 before the first clone or for a ref that
    names nothing, 422 for a ref that is not a plain revision or names `refs/upstream/`.
    """
    repo = await svc.repositories.get(caller, name)
    commits = await internal_reads.commits(svc, repo, ref, per_page)
    return CommitLogOut.model_validate({"items": commits, "ref": ref or repo.default_branch})


@router.get("/api/repos/{name:path}/tags", summary="Tags with their dates")
async def list_tags(name: str, caller: ReaderDep, svc: ServicesDep) -> TagsOut:
    """Every tag of a commit, newest first; 404 before the first clone."""
    repo = await svc.repositories.get(caller, name)
    return TagsOut.model_validate({"items": await internal_reads.tags(svc, repo)})


@router.get("/api/repos/{name:path}/commits/{rev:path}", summary="EnsureRevision")
async def get_commit(name: str, rev: str, caller: ReaderDep, svc: ServicesDep) -> CommitOut:
    """The commit `rev` names in the mirror.

    When it is missing: one fetch (shared by concurrent requests for the repository),
    then the commit or 404. A mirror on another storage node is read there (503 with
    Retry-After while that node cannot answer).
    """
    repo = await svc.repositories.get(caller, name)
    node = await node_of(svc, repo.id)
    if node is None:
        commit = await svc.reads.ensure_revision(repo.id, repo.name, rev)
    else:
        commit = await svc.forwarder.ensure_revision(node, repo.id, repo.name, rev)
    return CommitOut.model_validate(commit)


@router.post(
    "/api/repos/{name:path}/exec",
    summary="Run a read-only git command",
    responses=error_responses(429, 503),
)
async def exec_git(name: str, body: ExecIn, caller: PrincipalDep, svc: ServicesDep) -> Response:
    """Run `git ARGS` in the mirror and stream its output (`application/octet-stream`).

    Allowed: log, show, rev-parse, rev-list, ls-tree, cat-file, diff, blame, grep,
    for-each-ref, archive; options that write files, run programs or reach outside the
    repository are refused with 422 naming the argument. Output past `exec_max_bytes`
    is cut (the `X-Repodepot-Output-Cap` header says where); a command that fails before
    writing anything answers 422 with git's message. A mirror on another storage node
    runs it there (503 with Retry-After while that node cannot answer).
    """
    repo = await svc.repositories.get(caller, name)
    # Refused the same wherever the mirror is, and whether or not its node can answer.
    check_exec(body.args)
    cap = svc.settings.exec_max_bytes
    node = await node_of(svc, repo.id)
    if node is not None:
        return await svc.forwarder.exec(
            node, repo.id, repo.name, body.args, user_id=caller.user.id, max_bytes=cap
        )
    return await exec_output(
        svc.reads, repo.id, repo.name, body.args, user_id=caller.user.id, cap=cap
    )


@router.post("/api/repos/{name:path}/update", status_code=202, summary="Update now")
async def update_repo(name: str, caller: AdminDep, svc: ServicesDep) -> UpdateRequested:
    """Queue the mirror's fetch at high priority; also resumes a failing mirror."""
    repo = await svc.repositories.get(caller, name)
    queued = await svc.gitserver.enqueue_existing(repo.id, QueueReason.admin)
    if not queued:
        raise NotFound(f"{name!r} has no mirror yet: it is cloned once the updater sees it")
    return UpdateRequested(queued=True)


@router.put(
    "/api/repos/{name:path}/credential",
    summary="Set a repository's fetch credential",
    responses=error_responses(403),
)
async def put_credential(
    name: str, body: CredentialIn, caller: PrincipalDep, svc: ServicesDep
) -> CredentialSet:
    """Keep a token for fetching this repository from its source (its owner or an admin).

    It replaces the one it had (an import's token is kept this way), is sealed at rest,
    never shown again, and sent only to the origin of the source URL. A changed
    credential queues an update, so that a mirror failing for want of it recovers at
    once; setting the same one again changes nothing.
    """
    repo, changed = await svc.repositories.set_credential(
        caller, name, username=body.username, token=body.token
    )
    if changed:  # a failing mirror tries the new one at once; the same one again queues nothing
        await svc.gitserver.enqueue_existing(repo.id, QueueReason.admin)
    return CredentialSet()


@router.delete(
    "/api/repos/{name:path}/credential",
    status_code=204,
    summary="Remove a repository's fetch credential",
    responses=error_responses(403),
)
async def delete_credential(name: str, caller: PrincipalDep, svc: ServicesDep) -> Response:
    """Forget the repository's fetch credential; 404 when it has none."""
    if not await svc.repositories.remove_credential(caller, name):
        raise NotFound(f"{name!r} has no fetch credential")
    return Response(status_code=204)


@router.get("/api/repos/{name:path}/go-modules", summary="The Go modules in a repository")
async def go_modules(
    name: str, request: Request, caller: ReaderDep, svc: ServicesDep
) -> list[GoModuleOut]:
    """Modules found from go.mod files at the default branch and from version tags."""
    repo = await svc.repositories.get(caller, name)
    proxy_url = f"{str(request.base_url).rstrip('/')}/goproxy"
    return [
        GoModuleOut(**asdict(module), go_get=line)
        for module, line in await svc.goproxy.modules_to_get(caller, repo, proxy_url)
    ]


@router.patch("/api/repos/{name:path}", summary="Change a repository's settings")
async def patch_repo(
    name: str, body: RepositoryPatch, caller: AdminDep, svc: ServicesDep
) -> RepositoryOut:
    """Set its Go import root (admins); `null` goes back to the one its source URL implies."""
    repo = await svc.repositories.set_go_import_root(caller, name, body.go_import_root)
    return RepositoryOut.model_validate(repo)


@router.get("/api/repos/{name:path}", summary="Show a repository")
async def get_repo(name: str, caller: ReaderDep, svc: ServicesDep) -> RepositoryDetail:
    """One repository with its mirror; 404 also when it is private and not yours.

    Opening it queues an update when the mirror is older than `update_on_visit_after`.
    """
    repo, mirror = await repository_with_mirror(svc, caller, name)
    # One size: the repository's, which its mirror's clones, fetches and repacks write.
    shown = None if mirror is None else {**shallow(mirror), "size_bytes": repo.size_bytes}
    return RepositoryDetail.model_validate(
        {**RepositoryOut.model_validate(repo).model_dump(), "mirror": shown}
    )


def shallow(record: Any) -> dict[str, Any]:
    """A dataclass of plain values as a dict (`asdict` deep-copies each value, here for nothing)."""
    return {field.name: getattr(record, field.name) for field in fields(record)}


async def repository_with_mirror(
    svc: Services, caller: Principal, name: str
) -> tuple[RepositoryRecord, MirrorState | None]:
    """The repository and its mirror; a stale mirror is queued for an update (a visit).

    A read: a mirror due a visit's update is queued beside it (`Gitserver.visit`).
    """
    repo = await svc.repositories.get(caller, name)
    state = await svc.gitserver.state(repo.id)
    svc.gitserver.visit(state, repo.id)
    changed = state.last_changed_at if state is not None else None
    if changed is not None and changed > repo.updated_at:
        # A clone or fetch may have committed after the repository row was read (or
        # kept): one read after that change, so both show one moment.
        repo = await svc.repositories.get(caller, name, read_after=changed)
    return repo, state
