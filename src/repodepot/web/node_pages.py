"""`/nodes`: the storage nodes for admins: state, repositories, free disk, last heartbeat."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from repodepot.clock import now
from repodepot.web.deps import AdminDep, ServicesDep
from repodepot.web.pages import render

router = APIRouter(include_in_schema=False)


@router.get("/nodes", response_class=HTMLResponse)
async def nodes_page(request: Request, caller: AdminDep, svc: ServicesDep) -> Response:
    """Every storage node with what it holds and when it last beat (admins)."""
    nodes = await svc.nodes.listing(caller)
    at = now()
    return render(
        request,
        "nodes.html",
        user=caller.user,
        nodes=nodes,
        ago={node.name: max(0, int((at - node.heartbeat_at).total_seconds())) for node in nodes},
        dead_after=svc.settings.node_dead_after,
    )
