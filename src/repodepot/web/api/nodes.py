"""`/api/nodes`: the storage nodes, their state, repositories, disk and heartbeat (admins)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from repodepot.db.models import NodeState
from repodepot.web.bodies import JsonRoute
from repodepot.web.deps import AdminDep, ServicesDep
from repodepot.web.errors import ERROR_RESPONSES

router = APIRouter(route_class=JsonRoute, tags=["nodes"], responses=ERROR_RESPONSES)


class NodeOut(BaseModel):
    """A storage node, as `repodepot nodes list --json` prints it."""

    model_config = ConfigDict(from_attributes=True)

    name: str = Field(examples=["gitserver-1"])
    url: str | None = Field(description="Its internal base URL (null in a single process)")
    state: NodeState = Field(description="active, draining or dead")
    repositories: int = Field(description="The mirrors it owns")
    free_bytes: int | None = Field(description="Free space of its data dir's file system")
    heartbeat_at: datetime


@router.get("/api/nodes", summary="List storage nodes")
async def list_nodes(caller: AdminDep, svc: ServicesDep) -> list[NodeOut]:
    """Every storage node by name: state, repositories owned, free disk, last heartbeat."""
    return [NodeOut.model_validate(node) for node in await svc.nodes.listing(caller)]
