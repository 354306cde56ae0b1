"""HTML pages: log in with a token, the repository list and each repository."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from repodepot.db.models import Visibility
from repodepot.exceptions import NotAuthenticated
from repodepot.gitserver.schedule import QueueReason
from repodepot.web.api.repos import repository_with_mirror
from repodepot.web.csrf import require_same_origin
from repodepot.web.deps import SESSION_ID, AdminDep, PageDep, PrincipalDep, ServicesDep

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


@router.get("/repos", response_class=HTMLResponse)
async def repo_list(
    request: Request, caller: PrincipalDep, svc: ServicesDep, paging: PageDep
) -> Response:
    """The repositories the caller may read."""
    page = await svc.repositories.list(caller, page=paging.page, per_page=paging.per_page)
    last = max(1, -(-page.total // page.per_page))
    return render(request, "repos.html", user=caller.user, page=page, last=last)


@router.get("/repos/{name:path}", response_class=HTMLResponse)
async def repo_page(
    request: Request, name: str, caller: PrincipalDep, svc: ServicesDep
) -> Response:
    """One repository, its mirror and the Go modules in it."""
    repo, mirror = await repository_with_mirror(svc, caller, name)
    proxy_url = f"{str(request.base_url).rstrip('/')}/goproxy"
    modules = await svc.goproxy.modules_to_get(caller, repo, proxy_url)
    return render(
        request,
        "repo.html",
        # Whether it has a fetch credential is for those who may change it.
        has_credential=(caller.is_admin or repo.owner == caller.user.name)
        and await svc.repositories.has_credential(repo.id),
        may_set_credential=caller.is_admin or repo.owner == caller.user.name,
        user=caller.user,
        repo=repo,
        mirror=mirror,
        modules=modules,
        proxy_url=proxy_url,
        private=repo.visibility != Visibility.public,
    )


@router.post("/repos/{name:path}/update", response_class=HTMLResponse)
async def update_now(name: str, caller: AdminDep, svc: ServicesDep) -> Response:
    """An admin's "Update now": queue the fetch and come back to the page."""
    repo = await svc.repositories.get(caller, name)
    await svc.gitserver.enqueue_existing(repo.id, QueueReason.admin)
    return RedirectResponse(f"/repos/{repo.name}", status_code=303)
