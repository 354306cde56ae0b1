"""HTML pages: log in with a token, the repository list and each repository."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from repodepot.accounts import Principal, UserRecord
from repodepot.db.models import Visibility
from repodepot.exceptions import NotAuthenticated
from repodepot.gitserver.schedule import QueueReason
from repodepot.pagination import MAX_PAGE
from repodepot.services import Services
from repodepot.web import repo_tabs
from repodepot.web.api.repos import repository_with_mirror
from repodepot.web.csrf import require_same_origin
from repodepot.web.deps import (
    SESSION_ID,
    AdminDep,
    PageDep,
    ReaderDep,
    ServicesDep,
)

router = APIRouter(include_in_schema=False)


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """Render `template` with `context`."""
    templates = request.app.state.templates
    return templates.TemplateResponse(  # type: ignore[no-any-return]
        request, template, context, status_code=status_code
    )


def _safe_next(target: str | None) -> str:
    # Only local paths: never an open redirect to another site.
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or urlsplit(target).netloc
    ):
        return "/repos"
    return target


@router.get("/", response_class=HTMLResponse)
async def home() -> Response:
    """The repository list is the home page."""
    return RedirectResponse("/repos", status_code=303)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str | None = None) -> Response:
    """A form to paste an API token into."""
    return render(request, "login.html", next=_safe_next(next), error=None, user=None)


@router.post("/login", response_class=HTMLResponse)
async def login(
    request: Request,
    svc: ServicesDep,
    token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/repos",
) -> Response:
    """Check the token and open a session; the cookie carries the session's id.

    The form must carry the token of the page it came from, as every change does: another
    site must not log the browser in as someone else.
    """
    await require_same_origin(request)
    try:
        caller = await svc.accounts.authenticate(token.strip())
    except NotAuthenticated:
        return render(
            request,
            "login.html",
            status_code=401,
            next=_safe_next(next),
            error="That token is not valid. Check it was copied whole.",
            user=None,
        )
    previous = request.session.get(SESSION_ID)
    if isinstance(previous, str):  # logging in again, perhaps as someone else, ends that one
        await svc.accounts.close_session(previous)
    lifetime = timedelta(seconds=svc.settings.session_max_age)
    session_id = await svc.accounts.open_session(caller, lifetime=lifetime)
    request.session.clear()  # and with it the page's token: a new one comes with the session
    request.session[SESSION_ID] = session_id
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout", response_class=HTMLResponse)
async def logout(request: Request, svc: ServicesDep) -> Response:
    """End the session on the server, so a copy of the cookie stops working too."""
    await require_same_origin(request)
    session_id = request.session.get(SESSION_ID)
    if isinstance(session_id, str):
        await svc.accounts.close_session(session_id)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


def shown_user(caller: Principal) -> UserRecord | None:
    """Who the page says is signed in: nobody for ANONYMOUS (the page offers to log in)."""
    return None if caller.is_anonymous else caller.user


@router.get("/repos", response_class=HTMLResponse)
async def repo_list(
    request: Request, caller: ReaderDep, svc: ServicesDep, paging: PageDep
) -> Response:
    """The repositories the caller may read (without a login: the public ones)."""
    page = await svc.repositories.list(caller, page=paging.page, per_page=paging.per_page)
    last = max(1, -(-page.total // page.per_page))
    return render(request, "repos.html", user=shown_user(caller), page=page, last=last)


@router.get("/repos/{name:path}", response_class=HTMLResponse)
async def repo_page(
    request: Request,
    name: str,
    caller: ReaderDep,
    svc: ServicesDep,
    tab: repo_tabs.Tab = "overview",
    q: Annotated[str | None, Query(max_length=200)] = None,
    sort: Literal["updated", "name"] = "updated",
    state: Literal["active", "stale", ""] = "",
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
) -> Response:
    """One repository: its overview (clone, commits, tags, mirror), branches or upstream."""
    filters = repo_tabs.BranchFilters(q=q, sort=sort, state=state or None, page=page)
    return await show_repo(request, caller, svc, name, tab=tab, filters=filters)


async def show_repo(
    request: Request,
    caller: Principal,
    svc: Services,
    name: str,
    *,
    tab: repo_tabs.Tab,
    filters: repo_tabs.BranchFilters | None = None,
    status_code: int = 200,
    **extra: Any,
) -> Response:
    """Render the repository page on `tab`; `extra` reaches the template (a form's error)."""
    repo, mirror = await repository_with_mirror(svc, caller, name)
    may_change = caller.is_admin or repo.owner == caller.user.name
    context: dict[str, Any] = {}
    if tab == "overview":
        proxy_url = f"{str(request.base_url).rstrip('/')}/goproxy"
        context, modules = await asyncio.gather(  # side by side: each may start git
            repo_tabs.overview(svc, repo, base_url=str(request.base_url)),
            svc.goproxy.modules_to_get(caller, repo, proxy_url),
        )
        context.update(
            modules=modules,
            proxy_url=proxy_url,
            # Whether it has a fetch credential, and who may read it, are for those who
            # may change them.
            has_credential=may_change and await svc.repositories.has_credential(repo.id),
            grants=await svc.access.grants_on(repo.id) if may_change else None,
        )
    elif tab == "branches":
        filters = filters or repo_tabs.BranchFilters()
        context = await repo_tabs.branches(svc, caller, repo, filters)
    else:
        context = await repo_tabs.upstream(svc, caller, repo)
    return render(
        request,
        "repo.html",
        status_code=status_code,
        user=shown_user(caller),
        repo=repo,
        mirror=mirror,
        tab=tab,
        tabs=repo_tabs.TABS,
        ago=repo_tabs.ago,
        badge=repo_tabs.badge,
        may_set_credential=may_change,
        private=repo.visibility != Visibility.public,
        notice=request.query_params.get("notice"),
        **context,
        **extra,
    )


@router.post("/repos/{name:path}/update", response_class=HTMLResponse)
async def update_now(name: str, caller: AdminDep, svc: ServicesDep) -> Response:
    """An admin's "Update now": queue the fetch and come back to the page."""
    repo = await svc.repositories.get(caller, name)
    await svc.gitserver.enqueue_existing(repo.id, QueueReason.admin)
    return RedirectResponse(f"/repos/{repo.name}", status_code=303)
