"""`/api/user/codehost-accounts`: a user links their own account on a code host connection.

A linked account's token (sealed, never shown: only `has_token`) lists what the user
can read on the host; permission sync keeps their `codehost` grants equal to it
(`permsync`). Members see and change their own accounts; admins see everyone's.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from repodepot.permsync import MAX_TOKEN, AccountRecord
from repodepot.web.bodies import JsonRoute
from repodepot.web.deps import AdminDep, PrincipalDep, ServicesDep
from repodepot.web.errors import ERROR_RESPONSES, error_responses
from repodepot.web.params import RecordId

router = APIRouter(route_class=JsonRoute, tags=["access"], responses=ERROR_RESPONSES)


class AccountIn(BaseModel):
    """The caller's own personal token for the connection's host."""

    model_config = ConfigDict(extra="forbid")

    # SecretStr: never in a repr, a log line or an echo of the body.
    token: SecretStr = Field(description=f"At most {MAX_TOKEN} characters; stored sealed.")


class AccountOut(BaseModel):
    """A linked account and its last permission sync; the token only as set."""

    model_config = ConfigDict(from_attributes=True)

    user: str
    code_host_id: int
    code_host: str = Field(description="The connection's name.")
    kind: str
    has_token: bool
    linked_at: datetime
    next_sync_at: datetime
    last_sync_at: datetime | None = Field(description="When the last permission sync started.")
    last_status: str | None = Field(description="`success`, `rejected` or `failed`.")
    last_error: str | None
    rejected_since: datetime | None = Field(
        description="When the host first refused the token: its grants stop after the grace."
    )
    readable: int = Field(description="Repositories here the token could read at the last sync.")


class AccountSyncRequested(BaseModel):
    """A permission sync was asked for; it has run once `last_sync_at` is at or after this."""

    requested_at: datetime


@router.put(
    "/api/user/codehost-accounts/{host_id}",
    summary="Link your account on a code host connection",
    responses=error_responses(404),
)
async def link_account(
    host_id: RecordId, body: AccountIn, caller: PrincipalDep, svc: ServicesDep
) -> AccountOut:
    """Store your token (sealed) and sync your grants from the host right away. Audited."""
    record = await svc.permsync.link(caller, host_id, body.token.get_secret_value())
    return _out(record)


@router.get("/api/user/codehost-accounts", summary="Your linked code host accounts")
async def my_accounts(caller: PrincipalDep, svc: ServicesDep) -> list[AccountOut]:
    """Your accounts with their last permission sync."""
    return [_out(record) for record in await svc.permsync.accounts(caller)]


@router.delete(
    "/api/user/codehost-accounts/{host_id}",
    status_code=204,
    summary="Unlink your account",
    responses=error_responses(404),
)
async def unlink_account(host_id: RecordId, caller: PrincipalDep, svc: ServicesDep) -> Response:
    """Forget the token; the grants it kept on the connection's repositories go at once."""
    await svc.permsync.unlink(caller, host_id)
    return Response(status_code=204)


@router.post(
    "/api/user/codehost-accounts/{host_id}/sync",
    status_code=202,
    summary="Sync your permissions now",
    responses=error_responses(404),
)
async def sync_account(
    host_id: RecordId, caller: PrincipalDep, svc: ServicesDep
) -> AccountSyncRequested:
    """Make your account due now; poll it until `last_sync_at >= requested_at`."""
    return AccountSyncRequested(requested_at=await svc.permsync.request_sync(caller, host_id))


@router.get(
    "/api/codehost-accounts",
    summary="Every user's linked accounts",
    tags=["code hosts"],
    responses=error_responses(403),
)
async def all_accounts(caller: AdminDep, svc: ServicesDep) -> list[AccountOut]:
    """Each user's linked accounts with their last permission sync (admins)."""
    return [_out(record) for record in await svc.permsync.all_accounts(caller)]


def _out(record: AccountRecord) -> AccountOut:
    return AccountOut.model_validate(record)
