"""HTML pages of code host connections (admins): the list with an add form, and each one."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from repodepot.exceptions import InvalidInput, RepodepotError
from repodepot.web.deps import AdminDep, ServicesDep
from repodepot.web.errors import status_of
from repodepot.web.pages import render
from repodepot.web.params import RecordId

router = APIRouter(include_in_schema=False)
KINDS = ("github", "gitlab", "gitea", "other")
EMPTY_FORM = {"kind": "github", "name": "", "url": "", "query": "", "extra": ""}


@router.get("/codehosts", response_class=HTMLResponse)
async def codehosts_page(request: Request, caller: AdminDep, svc: ServicesDep) -> Response:
    """Every connection with its last sync, and the form to add one."""
    records = await svc.codehosts.list(caller)
    return render(
        request,
        "codehosts.html",
        user=caller.user,
        hosts=records,
        kinds=KINDS,
        form=EMPTY_FORM,
        error=None,
    )


def _config(kind: str, url: str, query: str, token: str, extra: str) -> dict[str, Any]:
    """The form's fields as a config: `extra` is JSON merged under the simple fields."""
    config: dict[str, Any] = {}
    if extra.strip():
        try:
            config = json.loads(extra)
        except ValueError as error:
            raise InvalidInput(f"advanced config is not JSON: {error}", field="extra") from None
        if not isinstance(config, dict):
            raise InvalidInput("advanced config must be a JSON object", field="extra")
    if url.strip():
        config["url"] = url.strip()
    lines = [line.strip() for line in query.splitlines() if line.strip()]
    if lines:
        key = {"gitlab": "projectQuery", "other": "repos"}.get(kind, "repositoryQuery")
        config[key] = lines
    if token.strip():
        config["token"] = token.strip()
    return config


@router.post("/codehosts", response_class=HTMLResponse)
async def add_codehost(
    request: Request,
    caller: AdminDep,
    svc: ServicesDep,
    kind: Annotated[str, Form()] = "github",
    name: Annotated[str, Form()] = "",
    url: Annotated[str, Form()] = "",
    query: Annotated[str, Form()] = "",
    token: Annotated[str, Form()] = "",
    extra: Annotated[str, Form()] = "",
) -> Response:
    """Add the connection and go to its page; on bad input show the form again."""
    try:
        config = _config(kind, url, query, token, extra)
        record = await svc.codehosts.create(caller, kind=kind, name=name, config=config)
    except RepodepotError as error:
        form = {"kind": kind, "name": name, "url": url, "query": query, "extra": extra}
        return render(
            request,
            "codehosts.html",
            status_code=status_of(error),
            user=caller.user,
            hosts=await svc.codehosts.list(caller),
            kinds=KINDS,
            form=form,
            error=error,
        )
    return RedirectResponse(f"/codehosts/{record.id}", status_code=303)


@router.get("/codehosts/{host_id}", response_class=HTMLResponse)
async def codehost_page(
    request: Request, host_id: RecordId, caller: AdminDep, svc: ServicesDep
) -> Response:
    """One connection: its config, last syncs and held deletions."""
    record = await svc.codehosts.get(caller, host_id)
    history = await svc.codehosts.history(caller, host_id, per_page=20)
    return render(
        request,
        "codehost.html",
        user=caller.user,
        host=record,
        syncs=history.items,
        config=json.dumps(record.config, indent=2),
        notice=request.query_params.get("notice"),
    )


@router.post("/codehosts/{host_id}/sync", response_class=HTMLResponse)
async def sync_codehost(host_id: RecordId, caller: AdminDep, svc: ServicesDep) -> Response:
    """Ask for a sync now; the page shows it once it has run."""
    await svc.codehosts.request_sync(caller, host_id)
    return RedirectResponse(f"/codehosts/{host_id}?notice=sync-requested", status_code=303)


@router.post("/codehosts/{host_id}/confirm-deletions", response_class=HTMLResponse)
async def confirm_deletions(host_id: RecordId, caller: AdminDep, svc: ServicesDep) -> Response:
    """Carry out the held deletions."""
    await svc.codehosts.confirm_deletions(caller, host_id)
    return RedirectResponse(f"/codehosts/{host_id}?notice=deletions-confirmed", status_code=303)


@router.post("/codehosts/{host_id}/remove", response_class=HTMLResponse)
async def remove_codehost(host_id: RecordId, caller: AdminDep, svc: ServicesDep) -> Response:
    """Remove the connection."""
    await svc.codehosts.remove(caller, host_id)
    return RedirectResponse("/codehosts", status_code=303)


@router.get("/scheduler", response_class=HTMLResponse)
async def scheduler_page(request: Request, caller: AdminDep, svc: ServicesDep) -> Response:
    """The update queue: counts, and the next mirrors in the order they are taken."""
    return render(
        request,
        "scheduler.html",
        user=caller.user,
        status=await svc.gitserver.status(),
        queue=await svc.gitserver.queue(100),
        backpressure=svc.gate.state(),
    )
