"""Request dependencies: the services, the caller, the page parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from repodepot.accounts import ANONYMOUS, Principal
from repodepot.exceptions import NotAuthenticated
from repodepot.pagination import DEFAULT_PER_PAGE, MAX_PAGE, MAX_PER_PAGE
from repodepot.services import Services
from repodepot.web.csrf import require_same_origin

SESSION_ID = "sid"


def services(request: Request) -> Services:
    """The application's services, opened by the lifespan."""
    return request.app.state.services  # type: ignore[no-any-return]


async def _services(request: Request) -> Services:
    # A coroutine: FastAPI runs a plain function dependency in a worker thread, a
    # thread hop on every request.
    return services(request)


ServicesDep = Annotated[Services, Depends(_services)]


async def principal(request: Request, svc: ServicesDep) -> Principal:
    """Who is asking: `Authorization: Bearer TOKEN`, else the login session cookie.

    Raises NotAuthenticated (401) when neither identifies a valid token, and
    CrossSiteRequest (403) for a change made with the cookie that no page of ours sent.
    """
    caller = await _identify(request, svc)
    request.state.user = caller.user  # error pages show who is logged in
    return caller


async def _identify(request: Request, svc: Services) -> Principal:
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("use 'Authorization: Bearer <token>'")
        return await svc.accounts.authenticate(token.strip())
    session_id = request.session.get(SESSION_ID)
    if not isinstance(session_id, str):
        raise NotAuthenticated("a valid API token is required")
    await require_same_origin(request)  # a browser adds the cookie to other sites' requests too
    try:
        return await svc.accounts.check_session(session_id)
    except NotAuthenticated:
        del request.session[SESSION_ID]
        raise


PrincipalDep = Annotated[Principal, Depends(principal)]


async def reader(request: Request, svc: ServicesDep) -> Principal:
    """Who is reading: as `principal`, but ANONYMOUS when the request names nobody.

    For reads that public repositories answer without a token (`repositories.visible_to`
    decides what ANONYMOUS sees). A token or login that does not check out is still 401,
    never a quiet fall back to anonymous.
    """
    if request.headers.get("authorization") is None and SESSION_ID not in request.session:
        return ANONYMOUS
    return await principal(request, svc)


ReaderDep = Annotated[Principal, Depends(reader)]


async def admin(caller: PrincipalDep) -> Principal:
    """The caller, who must be an admin (403 otherwise)."""
    caller.require_admin()
    return caller


AdminDep = Annotated[Principal, Depends(admin)]


@dataclass(frozen=True, slots=True)
class PageParams:
    """`page` (1-based) and `per_page` (at most 100)."""

    page: int
    per_page: int


async def page_params(
    page: Annotated[int, Query(ge=1, le=MAX_PAGE, description="1-based page number")] = 1,
    per_page: Annotated[int, Query(ge=1, le=MAX_PER_PAGE, description="Items per page")] = (
        DEFAULT_PER_PAGE
    ),
) -> PageParams:
    """Pagination query parameters."""
    return PageParams(page=page, per_page=per_page)


PageDep = Annotated[PageParams, Depends(page_params)]
