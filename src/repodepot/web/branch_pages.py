"""Branch status pages: the Upstream tab's forms and the org-wide "Behind upstream" page.

The Branches and Upstream tabs themselves are the repository page's (`pages.repo_page`);
these are the forms they post to, each checked against cross-site requests like every
page form, and the list of tracked branches across repositories.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from repodepot.exceptions import InvalidInput
from repodepot.web import repo_tabs
from repodepot.web.deps import PageDep, PrincipalDep, ServicesDep
from repodepot.web.pages import render, show_repo

router = APIRouter(include_in_schema=False)
ORG_PER_PAGE = 50
_SEPARATORS = re.compile(r"[\s,]+")


@router.post("/repos/{name:path}/upstream/fetch", response_class=HTMLResponse)
async def fetch_upstream(name: str, caller: PrincipalDep, svc: ServicesDep) -> Response:
    """Fetch now: queue the upstream's fetch and come back to the Upstream tab."""
    await svc.branches.fetch_now(caller, name)
    return RedirectResponse(f"/repos/{name}?tab=upstream&notice=fetch-requested", status_code=303)


@router.post("/repos/{name:path}/upstream/remove", response_class=HTMLResponse)
async def remove_upstream(name: str, caller: PrincipalDep, svc: ServicesDep) -> Response:
    """Stop tracking the upstream (its owner or an admin)."""
    await svc.branches.remove_upstream(caller, name)
    return RedirectResponse(f"/repos/{name}?tab=upstream", status_code=303)


@router.post("/repos/{name:path}/upstream", response_class=HTMLResponse)
async def set_upstream(
    request: Request,
    name: str,
    caller: PrincipalDep,
    svc: ServicesDep,
    url: Annotated[str, Form(max_length=2048)] = "",
    repository: Annotated[str, Form(max_length=255)] = "",
    token: Annotated[str, Form(max_length=4096)] = "",
    branches: Annotated[str, Form(max_length=4096)] = "",
) -> Response:
    """Set the upstream from the form; a refused one shows the tab again with the reason.

    The token is never sent back into the form.
    """
    tracked = [spec for spec in _SEPARATORS.split(branches) if spec]
    try:
        await svc.branches.set_upstream(
            caller,
            name,
            url=url.strip() or None,
            repository=repository.strip() or None,
            token=token.strip() or None,
            branches=tracked or None,
        )
    except InvalidInput as error:
        form = {"url": url, "repository": repository, "branches": branches}
        return await show_repo(
            request,
            caller,
            svc,
            name,
            tab="upstream",
            status_code=422,
            upstream_error=error.message,
            form=form,
        )
    return RedirectResponse(f"/repos/{name}?tab=upstream", status_code=303)


@router.get("/sync-status", response_class=HTMLResponse)
async def sync_status_page(
    request: Request,
    caller: PrincipalDep,
    svc: ServicesDep,
    paging: PageDep,
    needs_pull: bool = False,
    needs_push: bool = False,
    diverged: bool = False,
) -> Response:
    """Tracked branches of every repository the caller may read, filtered and paged."""
    page = await svc.branches.org_status(
        caller,
        needs_pull=needs_pull or None,
        needs_push=needs_push or None,
        diverged=diverged or None,
        page=paging.page,
        per_page=min(paging.per_page, ORG_PER_PAGE),
    )
    chosen = {"needs_pull": needs_pull, "needs_push": needs_push, "diverged": diverged}
    query = "&".join(f"{key}=true" for key, on in chosen.items() if on)
    return render(
        request,
        "sync_status.html",
        user=caller.user,
        page=page,
        last=max(1, -(-page.total // page.per_page)),
        chosen=chosen,
        query=query,
        ago=repo_tabs.ago,
        badge=repo_tabs.badge,
    )
