"""`/api/user`, `/api/users`: who you are, and (admins) everyone."""

from __future__ import annotations

from fastapi import APIRouter

from repodepot.exceptions import NotFound
from repodepot.web.bodies import JsonRoute
from repodepot.web.deps import AdminDep, PageDep, PrincipalDep, ServicesDep
from repodepot.web.errors import ERROR_RESPONSES, error_responses
from repodepot.web.schemas import PageOut, UserCreate, UserOut

router = APIRouter(route_class=JsonRoute, tags=["users"], responses=ERROR_RESPONSES)


@router.get("/api/user", summary="The calling user")
async def whoami(caller: PrincipalDep) -> UserOut:
    """The user the token belongs to."""
    return UserOut.model_validate(caller.user)


@router.get("/api/users", summary="List users (admin)")
async def list_users(_: AdminDep, svc: ServicesDep, paging: PageDep) -> PageOut[UserOut]:
    """All users, by name."""
    page = await svc.accounts.list_users(page=paging.page, per_page=paging.per_page)
    return PageOut[UserOut].model_validate(page, from_attributes=True)


@router.post(
    "/api/users", status_code=201, summary="Create a user (admin)", responses=error_responses(409)
)
async def create_user(body: UserCreate, _: AdminDep, svc: ServicesDep) -> UserOut:
    """Create a user; give them a token with `POST /api/tokens {"user": NAME}`."""
    return UserOut.model_validate(await svc.accounts.create_user(body.name, body.role))


@router.get("/api/users/{name}", summary="Show a user")
async def get_user(name: str, caller: PrincipalDep, svc: ServicesDep) -> UserOut:
    """A user: admins see anyone, members only themselves."""
    if not caller.is_admin and caller.user.name != name:
        raise NotFound(f"no user named {name!r}")
    return UserOut.model_validate(await svc.accounts.get_user(name))
