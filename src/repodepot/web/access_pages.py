"""Access pages: a repository's grants (the overview's "Who may read it") and the groups.

A repository's grants are its owner's and admins' to give and take back; the groups
page is an admin's. Each form is checked against cross-site requests like every page
form, and a refused one shows its page again with the reason.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Literal

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from repodepot.accounts import Principal
from repodepot.exceptions import AlreadyExists, InvalidInput, NotFound, RepodepotError
from repodepot.services import Services
from repodepot.web.deps import AdminDep, PrincipalDep, ServicesDep
from repodepot.web.errors import status_of
from repodepot.web.pages import render, show_repo
from repodepot.web.params import RecordId

router = APIRouter(include_in_schema=False)


@router.post("/repos/{name:path}/grants", response_class=HTMLResponse)
async def add_grant(
    request: Request,
    name: str,
    caller: PrincipalDep,
    svc: ServicesDep,
    kind: Annotated[Literal["user", "group"], Form()] = "user",
    grantee: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Let a user or a group read the repository (its owner or an admin)."""
    repo = await svc.repositories.owned(caller, name)
    named = grantee.strip()
    try:
        await svc.access.grant(
            caller,
            repository=(repo.id, repo.name),
            user=named if kind == "user" else None,
            group=named if kind == "group" else None,
        )
    except (InvalidInput, NotFound, AlreadyExists) as error:
        return await show_repo(
            request,
            caller,
            svc,
            name,
            tab="overview",
            status_code=status_of(error),
            grants_error=error.message,
        )
    return RedirectResponse(f"/repos/{repo.name}#access", status_code=303)


@router.post("/repos/{name:path}/grants/{grant_id}/remove", response_class=HTMLResponse)
async def remove_grant(
    name: str, grant_id: RecordId, caller: PrincipalDep, svc: ServicesDep
) -> Response:
    """Take a grant back (its owner or an admin)."""
    repo = await svc.repositories.owned(caller, name)
    await svc.access.revoke(caller, (repo.id, repo.name), grant_id)
    return RedirectResponse(f"/repos/{repo.name}#access", status_code=303)


@router.get("/groups", response_class=HTMLResponse)
async def groups_page(request: Request, caller: AdminDep, svc: ServicesDep) -> Response:
    """Every group with its members, and the forms that change them (admins)."""
    return await _groups(request, caller, svc)


@router.post("/groups", response_class=HTMLResponse)
async def create_group(
    request: Request,
    caller: AdminDep,
    svc: ServicesDep,
    name: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Create a group."""
    return await _change(request, caller, svc, svc.access.create_group(caller, name.strip()))


@router.post("/groups/{group}/members", response_class=HTMLResponse)
async def add_member(
    request: Request,
    group: str,
    caller: AdminDep,
    svc: ServicesDep,
    user: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """Put a user in the group."""
    return await _change(request, caller, svc, svc.access.add_member(caller, group, user.strip()))


@router.post("/groups/{group}/members/{user}/remove", response_class=HTMLResponse)
async def remove_member(
    request: Request, group: str, user: str, caller: AdminDep, svc: ServicesDep
) -> Response:
    """Take a user out of the group."""
    return await _change(request, caller, svc, svc.access.remove_member(caller, group, user))


async def _change(
    request: Request, caller: Principal, svc: Services, change: Awaitable[object]
) -> Response:
    try:
        await change
    except RepodepotError as error:
        return await _groups(request, caller, svc, error=error)
    return RedirectResponse("/groups", status_code=303)


async def _groups(
    request: Request, caller: Principal, svc: Services, *, error: RepodepotError | None = None
) -> Response:
    groups = await svc.access.groups(caller)
    return render(
        request,
        "groups.html",
        status_code=200 if error is None else status_of(error),
        user=caller.user,
        groups=groups,
        error=error.message if error is not None else None,
    )


@router.get("/account", response_class=HTMLResponse)
async def account_page(request: Request, caller: PrincipalDep, svc: ServicesDep) -> Response:
    """Your code host accounts: link one with your own token, see its last permission sync."""
    return await _account(request, caller, svc)


@router.post("/account/codehosts/{code_host_id}", response_class=HTMLResponse)
async def link_account(
    request: Request,
    code_host_id: RecordId,
    caller: PrincipalDep,
    svc: ServicesDep,
    token: Annotated[str, Form(max_length=4096)] = "",
) -> Response:
    """Link (or replace) your account on a connection; the token is never sent back."""
    try:
        await svc.permsync.link(caller, code_host_id, token)
    except RepodepotError as error:
        return await _account(request, caller, svc, error=error)
    return RedirectResponse("/account", status_code=303)


@router.post("/account/codehosts/{code_host_id}/sync", response_class=HTMLResponse)
async def sync_account(code_host_id: RecordId, caller: PrincipalDep, svc: ServicesDep) -> Response:
    """Ask for your account's permission sync now."""
    await svc.permsync.request_sync(caller, code_host_id)
    return RedirectResponse("/account", status_code=303)


@router.post("/account/codehosts/{code_host_id}/remove", response_class=HTMLResponse)
async def unlink_account(
    code_host_id: RecordId, caller: PrincipalDep, svc: ServicesDep
) -> Response:
    """Unlink your account: the grants it gave you end at once."""
    await svc.permsync.unlink(caller, code_host_id)
    return RedirectResponse("/account", status_code=303)


@router.get("/codehost-accounts", response_class=HTMLResponse)
async def all_accounts_page(request: Request, caller: AdminDep, svc: ServicesDep) -> Response:
    """Every user's linked accounts with their last permission sync (admins)."""
    return render(
        request,
        "codehost_accounts.html",
        user=caller.user,
        accounts=await svc.permsync.all_accounts(caller),
    )


async def _account(
    request: Request, caller: Principal, svc: Services, *, error: RepodepotError | None = None
) -> Response:
    accounts = await svc.permsync.accounts(caller)
    linked = {account.code_host_id for account in accounts}
    return render(
        request,
        "account.html",
        status_code=200 if error is None else status_of(error),
        user=caller.user,
        accounts=accounts,
        connections=[each for each in await svc.codehosts.linkable() if each[0] not in linked],
        error=error.message if error is not None else None,
    )
