"""`/nodes`: the storage nodes for admins: state, repositories, disk, heartbeat and moves.

Each node's row has the forms that change it (drain, activate, weight, remove), posted to
`/nodes/{name}/...`; the registry makes the change and the page, reloaded, says what it
set in motion. A change the registry refuses shows the page again with its status and
the reason beside the node.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from repodepot.accounts import Principal
from repodepot.clock import now
from repodepot.db.models import NodeState
from repodepot.exceptions import AlreadyExists, InvalidInput, NotFound, RepodepotError
from repodepot.nodes.registry import NodeRecord, validate_node_name
from repodepot.services import Services
from repodepot.settings import NODE_NAME
from repodepot.web.deps import AdminDep, ServicesDep
from repodepot.web.errors import status_of
from repodepot.web.pages import render

router = APIRouter(include_in_schema=False)
MOVES_SHOWN = 100
REFUSED = (InvalidInput, NotFound, AlreadyExists)
"""What a node's form may be refused with (NodeConflict is an AlreadyExists): shown beside it."""


@router.get("/nodes", response_class=HTMLResponse)
async def nodes_page(
    request: Request,
    caller: AdminDep,
    svc: ServicesDep,
    notice: str | None = None,
    node: str | None = None,
) -> Response:
    """Every storage node with what it holds, its forms, and the moves in flight (admins).

    `notice` and `node`: the change just made to that node, said in words.
    """
    return await _page(request, caller, svc, notice=(notice, node))


@router.post("/nodes/{name}/drain", response_class=HTMLResponse)
async def drain_node(request: Request, name: str, caller: AdminDep, svc: ServicesDep) -> Response:
    """Drain node `name`: it takes no new repository and its own move to the others."""
    return await _change(request, caller, svc, name, "draining", svc.nodes.drain)


@router.post("/nodes/{name}/activate", response_class=HTMLResponse)
async def activate_node(
    request: Request, name: str, caller: AdminDep, svc: ServicesDep
) -> Response:
    """Make draining node `name` active: it takes repositories again."""
    return await _change(request, caller, svc, name, "active", svc.nodes.activate)


@router.post("/nodes/{name}/weight", response_class=HTMLResponse)
async def weigh_node(
    request: Request,
    name: str,
    caller: AdminDep,
    svc: ServicesDep,
    weight: Annotated[str, Form()] = "",
) -> Response:
    """Set node `name`'s weight: its share of repositories against the other nodes'."""

    async def weigh(who: Principal, node: str) -> object:
        return await svc.nodes.set_weight(who, node, _number(weight))

    return await _change(request, caller, svc, name, "weight", weigh)


@router.post("/nodes/{name}/remove", response_class=HTMLResponse)
async def remove_node(request: Request, name: str, caller: AdminDep, svc: ServicesDep) -> Response:
    """Forget node `name`: one that owns no repository, or a dead one."""
    return await _change(request, caller, svc, name, "removed", svc.nodes.remove)


async def _change(
    request: Request,
    caller: Principal,
    svc: Services,
    name: str,
    notice: str,
    act: Callable[[Principal, str], Awaitable[object]],
) -> Response:
    """`act` on node `name` and go back to the page saying so; refused: the page, with why."""
    try:
        await act(caller, validate_node_name(name))
    except REFUSED as error:
        return await _page(request, caller, svc, refused=(name, error))
    return _changed(notice, name)


def _number(text: str) -> float:
    """The form's weight as a number; whether it is a usable one is the registry's to say."""
    try:
        return float(text.strip())
    except ValueError:
        raise InvalidInput(
            f"a weight is a number above 0, such as 1 or 2.5, not {text[:40]!r}", field="weight"
        ) from None


def _changed(notice: str, name: str) -> Response:
    # The name went through validate_node_name: nothing in it needs quoting in a URL.
    return RedirectResponse(f"/nodes?notice={notice}&node={name}", status_code=303)


async def _page(
    request: Request,
    caller: Principal,
    svc: Services,
    *,
    notice: tuple[str | None, str | None] = (None, None),
    refused: tuple[str, RepodepotError] | None = None,
) -> Response:
    nodes = await svc.nodes.listing(caller)
    moves = await svc.gitserver.moves(MOVES_SHOWN)
    names = await svc.repositories.names_by_id(caller, [move.repository_id for move in moves])
    at = now()
    error_node, error = refused if refused is not None else (None, None)
    return render(
        request,
        "nodes.html",
        status_code=200 if error is None else status_of(error),
        user=caller.user,
        nodes=nodes,
        ago={node.name: max(0, int((at - node.heartbeat_at).total_seconds())) for node in nodes},
        dead_after=svc.settings.node_dead_after,
        notice=_notice(*notice, nodes=nodes, at_once=svc.settings.node_moves),
        error=error,
        error_node=error_node if any(node.name == error_node for node in nodes) else None,
        moves=moves,
        moves_shown=MOVES_SHOWN,
        names=names,
        at_once=svc.settings.node_moves,
    )


def _notice(
    notice: str | None, name: str | None, *, nodes: list[NodeRecord], at_once: int
) -> str | None:
    """What the change `notice` to node `name` set in motion, or None if it is not so now.

    Said from the nodes as they are: a notice that no longer holds (the node was changed
    again since, or the link was made up) is not shown.
    """
    node = next((node for node in nodes if node.name == name), None)
    if notice == "removed" and name is not None and node is None and NODE_NAME.fullmatch(name):
        return (
            f"{name} was removed. If its process still runs, it registers again at its "
            "next heartbeat."
        )
    if node is None:
        return None
    others = [other for other in nodes if other.state is NodeState.active and other.name != name]
    pace = f"{at_once} at a time"
    if notice == "draining" and node.state is NodeState.draining:
        return _drained(node, bool(others), pace)
    if notice == "active" and node.state is NodeState.active:
        return (
            f"{node.name} is active again: the repositories whose first choice it is "
            f"move back to it, {pace}."
        )
    if notice == "weight":
        return (
            f"{node.name}'s weight is {node.weight:g}: the repositories whose first choice "
            f"changed with it move, {pace}."
        )
    return None


def _drained(node: NodeRecord, others: bool, pace: str) -> str:
    count = node.repositories
    if not count:
        return f"{node.name} is draining and owns no repository: it can be removed."
    owned = f"its {count:,} repositories" if count > 1 else "its one repository"
    s = "" if count > 1 else "s"
    if not others:
        return (
            f"{node.name} is draining, but no other node is active: {owned} stay{s} until one is."
        )
    return f"{node.name} is draining: {owned} move{s} to the other nodes, {pace}."
