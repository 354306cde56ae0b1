"""`/api/tokens`: create, list and revoke API tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from repodepot.web.bodies import JsonRoute
from repodepot.web.deps import PageDep, PrincipalDep, ServicesDep
from repodepot.web.errors import ERROR_RESPONSES
from repodepot.web.params import RecordId
from repodepot.web.schemas import PageOut, TokenCreate, TokenCreated, TokenOut

router = APIRouter(route_class=JsonRoute, tags=["tokens"], responses=ERROR_RESPONSES)


@router.post("/api/tokens", status_code=201, summary="Create a token")
async def create_token(body: TokenCreate, caller: PrincipalDep, svc: ServicesDep) -> TokenCreated:
    """Create a token for yourself, or (admins) for `user`. The token is in this answer only."""
    user = body.user or caller.user.name
    if user != caller.user.name:
        caller.require_admin()
    record, secret = await svc.accounts.create_token(user, body.name)
    return TokenCreated.model_validate(
        {**TokenOut.model_validate(record).model_dump(), "token": secret}
    )


@router.get("/api/tokens", summary="List tokens")
async def list_tokens(
    caller: PrincipalDep,
    svc: ServicesDep,
    paging: PageDep,
    user: Annotated[
        str | None, Query(description="Admins: this user's tokens; '*' for all")
    ] = None,
) -> PageOut[TokenOut]:
    """Your tokens, newest first; admins may ask for another user's or everyone's."""
    if user is not None and user != caller.user.name:
        caller.require_admin()
    wanted = None if user == "*" else (user or caller.user.name)
    page = await svc.accounts.list_tokens(
        user_name=wanted, page=paging.page, per_page=paging.per_page
    )
    return PageOut[TokenOut].model_validate(page, from_attributes=True)


@router.delete("/api/tokens/{token_id}", summary="Revoke a token")
async def revoke_token(token_id: RecordId, caller: PrincipalDep, svc: ServicesDep) -> TokenOut:
    """Revoke one of your tokens (admins: anyone's). Revoking twice is harmless."""
    return TokenOut.model_validate(await svc.accounts.revoke_token(token_id, by=caller))
