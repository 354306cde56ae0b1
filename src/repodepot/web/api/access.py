"""`/api/groups` and grants: who, besides its owner and admins, may read a private repository.

Groups and connection-wide grants are an admin's; a repository's grants are also its
owner's to list, give and take back. What a grant opens is decided in one place
(`repositories.visible_to`); these routes only change and show the grants.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from repodepot.access import GrantRecord
from repodepot.web.bodies import JsonRoute
from repodepot.web.deps import AdminDep, PrincipalDep, ServicesDep
from repodepot.web.errors import ERROR_RESPONSES, error_responses
from repodepot.web.params import RecordId
from repodepot.web.schemas import ConnectionGrantIn, GrantIn, GrantOut, GroupIn, GroupOut, MemberIn

router = APIRouter(route_class=JsonRoute, tags=["access"], responses=ERROR_RESPONSES)


@router.post(
    "/api/groups", status_code=201, summary="Create a group", responses=error_responses(409)
)
async def create_group(body: GroupIn, caller: AdminDep, svc: ServicesDep) -> GroupOut:
    """A new, empty group of users (admins)."""
    return GroupOut.model_validate(await svc.access.create_group(caller, body.name))


@router.get("/api/groups", summary="List groups")
async def list_groups(caller: AdminDep, svc: ServicesDep) -> list[GroupOut]:
    """Every group with its members, by name (admins)."""
    return [GroupOut.model_validate(group) for group in await svc.access.groups(caller)]


@router.post("/api/groups/{group}/members", summary="Add a member to a group")
async def add_member(group: str, body: MemberIn, caller: AdminDep, svc: ServicesDep) -> GroupOut:
    """Put a user in the group (admins); adding one who is in it already changes nothing."""
    return GroupOut.model_validate(await svc.access.add_member(caller, group, body.user))


@router.delete("/api/groups/{group}/members/{user}", status_code=204, summary="Remove a member")
async def remove_member(group: str, user: str, caller: AdminDep, svc: ServicesDep) -> Response:
    """Take a user out of the group (admins); what the group's grants opened closes at once."""
    await svc.access.remove_member(caller, group, user)
    return Response(status_code=204)


@router.get(
    "/api/repos/{name:path}/grants",
    summary="A repository's grants",
    tags=["repositories"],
    responses=error_responses(403),
)
async def list_grants(name: str, caller: PrincipalDep, svc: ServicesDep) -> list[GrantOut]:
    """Who besides its owner and admins may read it (its owner or an admin)."""
    repo = await svc.repositories.owned(caller, name)
    return [_out(grant, repo.name) for grant in await svc.access.grants_on(repo.id)]


@router.post(
    "/api/repos/{name:path}/grants",
    status_code=201,
    summary="Grant read access to a repository",
    tags=["repositories"],
    responses=error_responses(403, 409),
)
async def add_grant(name: str, body: GrantIn, caller: PrincipalDep, svc: ServicesDep) -> GrantOut:
    """`read` to a user or a group (name exactly one); its owner or an admin. Audited."""
    repo = await svc.repositories.owned(caller, name)
    grant = await svc.access.grant(
        caller, repository=(repo.id, repo.name), user=body.user, group=body.group, role=body.role
    )
    return _out(grant, repo.name)


@router.delete(
    "/api/repos/{name:path}/grants/{grant_id}",
    status_code=204,
    summary="Take back a grant",
    tags=["repositories"],
    responses=error_responses(403),
)
async def remove_grant(
    name: str, grant_id: RecordId, caller: PrincipalDep, svc: ServicesDep
) -> Response:
    """Remove one grant of the repository (its owner or an admin). Audited."""
    repo = await svc.repositories.owned(caller, name)
    await svc.access.revoke(caller, (repo.id, repo.name), grant_id)
    return Response(status_code=204)


@router.post(
    "/api/codehosts/{host_id}/grants",
    status_code=201,
    summary="Grant read access to every repository of a connection",
    tags=["code hosts"],
    responses=error_responses(409),
)
async def add_connection_grant(
    host_id: RecordId, body: ConnectionGrantIn, caller: AdminDep, svc: ServicesDep
) -> GrantOut:
    """`read` on each repository the connection yields, now and later, to a group (admins)."""
    await svc.codehosts.get(caller, host_id)  # 404 for a connection that is not there
    grant = await svc.access.grant(caller, code_host_id=host_id, group=body.group, role=body.role)
    return _out(grant, None)


def _out(grant: GrantRecord, repository: str | None) -> GrantOut:
    return GrantOut(
        id=grant.id,
        repository=repository,
        code_host_id=grant.code_host_id,
        user=grant.user,
        group=grant.group,
        role=grant.role,
        source=grant.source,
        created_at=grant.created_at,
    )
