"""HTML pages of imports: the form, the live job page, the list."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from repodepot.db.models import Visibility
from repodepot.exceptions import RepodepotError
from repodepot.pagination import Page
from repodepot.web.api.imports import job_out
from repodepot.web.deps import PageDep, PrincipalDep, ServicesDep
from repodepot.web.errors import status_of
from repodepot.web.pages import render
from repodepot.web.params import RecordId

router = APIRouter(include_in_schema=False)


@router.get("/imports", response_class=HTMLResponse)
async def imports_page(
    request: Request, caller: PrincipalDep, svc: ServicesDep, paging: PageDep
) -> Response:
    """The caller's imports (admins: everyone's)."""
    page = await svc.imports.list_jobs(caller, page=paging.page, per_page=paging.per_page)
    jobs = Page(
        items=[job_out(item) for item in page.items],
        total=page.total,
        page=page.page,
        per_page=page.per_page,
    )
    return render(request, "imports.html", user=caller.user, page=jobs)


@router.get("/imports/new", response_class=HTMLResponse)
async def import_form(request: Request, caller: PrincipalDep) -> Response:
    """The "Import repository" form."""
    form = {"url": "", "owner": caller.user.name, "slug": "", "visibility": "private"}
    return render(request, "import_new.html", user=caller.user, form=form, error=None)


@router.post("/imports/new", response_class=HTMLResponse)
async def submit_import(
    request: Request,
    caller: PrincipalDep,
    svc: ServicesDep,
    url: Annotated[str, Form()] = "",
    owner: Annotated[str, Form()] = "",
    slug: Annotated[str, Form()] = "",
    token: Annotated[str, Form()] = "",
    visibility: Annotated[Visibility, Form()] = Visibility.private,
) -> Response:
    """Queue the import and go to its page; on bad input, show the form again with the error."""
    try:
        job = await svc.imports.submit(
            caller, url=url, owner=owner, slug=slug, token=token or None, visibility=visibility
        )
    except RepodepotError as error:
        form = {"url": url, "owner": owner, "slug": slug, "visibility": visibility.value}
        return render(
            request,
            "import_new.html",
            status_code=status_of(error),
            user=caller.user,
            form=form,
            error=error,
        )
    return RedirectResponse(f"/imports/{job['id']}", status_code=303)


@router.get("/imports/{job_id}", response_class=HTMLResponse)
async def job_page(
    request: Request, job_id: RecordId, caller: PrincipalDep, svc: ServicesDep
) -> Response:
    """One import, live: the page subscribes to the job's events."""
    job = job_out(await svc.imports.get(caller, job_id))
    return render(request, "import_job.html", user=caller.user, job=job)


@router.post("/imports/{job_id}/cancel", response_class=HTMLResponse)
async def cancel(job_id: RecordId, caller: PrincipalDep, svc: ServicesDep) -> Response:
    """Cancel from the job page, then show it again."""
    await svc.imports.cancel(caller, job_id)
    return RedirectResponse(f"/imports/{job_id}", status_code=303)
