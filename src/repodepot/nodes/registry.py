"""The storage nodes' registry: the owner of `storage_nodes`.

A gitserver process registers its node as it starts and beats every
`node_heartbeat_interval` (`nodes.heartbeat`); a node whose heartbeat is older than
`node_dead_after` is marked dead by whichever process looks first (one conditional
UPDATE, so several processes never mark one node twice). Admins drain a node (it is
placed no new repository, and its own move to the others: `nodes.moves`), make it
active again, weigh it, and remove it once it owns nothing or is dead; those changes are
audited. How many repositories a
node owns is `gitserver_repos`' to say (`Gitserver.counts_by_node`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from repodepot import audit
from repodepot.accounts import Principal
from repodepot.clock import now
from repodepot.db.base import Sessions
from repodepot.db.models import NodeState, StorageNode
from repodepot.exceptions import AlreadyExists, InvalidInput, NotFound
from repodepot.gitserver.service import Gitserver, mirrors_on_in
from repodepot.nodes.placement import Candidate
from repodepot.settings import NODE_NAME, NODE_NAME_RULE, Settings

logger = logging.getLogger(__name__)


class NodeConflict(AlreadyExists):
    """The storage node's state does not allow this."""

    code = "node_conflict"


@dataclass(frozen=True, kw_only=True, slots=True)
class NodeRecord:
    """A storage node as `repodepot nodes list` and `GET /api/nodes` show it."""

    name: str
    url: str | None
    state: NodeState
    weight: float
    repositories: int
    free_bytes: int | None
    heartbeat_at: datetime
    registered_at: datetime


def validate_node_name(name: str) -> str:
    """The name, or InvalidInput naming the `name` field."""
    if not NODE_NAME.fullmatch(name):
        raise InvalidInput(f"{name!r} is not a node name: {NODE_NAME_RULE}", field="name")
    return name


class NodeRegistry:
    """Who the storage nodes are, whether they live, and how much each should hold."""

    def __init__(self, sessions: Sessions, *, gitserver: Gitserver, settings: Settings) -> None:
        self._sessions = sessions
        self._gitserver = gitserver
        self._settings = settings

    # What the nodes' own processes do ----------------------------------------------------

    async def register(self, name: str, url: str | None, free_bytes: int | None) -> NodeState:
        """Add node `name`, or refresh its row as its process starts again; its state after.

        Its URL, free space and heartbeat are set. A dead node that comes back is active
        again; a draining one stays draining (an admin drained it, not the process).
        Raises InvalidInput for a malformed name.
        """
        validate_node_name(name)
        at = now()
        values = {"name": name, "url": url, "free_bytes": free_bytes, "heartbeat_at": at}
        async with self._sessions.begin() as session:
            insert = _upsert(session)(StorageNode).values(registered_at=at, **values)
            revived = _revived()
            statement = insert.on_conflict_do_update(
                index_elements=["name"],
                set_={
                    "url": insert.excluded.url,
                    "free_bytes": insert.excluded.free_bytes,
                    "heartbeat_at": insert.excluded.heartbeat_at,
                    "state": revived,
                },
            ).returning(StorageNode.state)
            now_in = NodeState((await session.execute(statement)).scalar_one())
        logger.info(
            "storage node %s registered (%s)",
            name,
            now_in.value,
            extra={"action": "nodes.register", "node": name, "url": url, "state": now_in.value},
        )
        return now_in

    async def heartbeat(self, name: str, free_bytes: int | None) -> bool:
        """Node `name` is alive with `free_bytes` free; True when it was dead until now.

        A dead node that beats again is active, or draining if an admin drained it (as
        when it registers). Raises NotFound
        when the node has no row (removed while its process ran: it registers again).
        """
        async with self._sessions.begin() as session:
            state = await session.scalar(
                update(StorageNode)
                .where(StorageNode.name == name)
                .values(heartbeat_at=now(), free_bytes=free_bytes)
                .returning(StorageNode.state)
            )
            if state is None:
                raise NotFound(f"no storage node named {name!r}")
            if state is NodeState.dead:  # rare: a second statement only then
                await session.execute(
                    update(StorageNode).where(StorageNode.name == name).values(state=_revived())
                )
        return state is NodeState.dead

    async def mark_dead(self, at: datetime) -> list[str]:
        """Mark dead the nodes not dead yet whose heartbeat is older than `node_dead_after`.

        Returns the names this call marked, by name: with several processes marking at
        once, each node is returned by one of them. Writes nothing (no transaction) when
        no node is overdue.
        """
        overdue = and_(
            StorageNode.state != NodeState.dead,
            StorageNode.heartbeat_at < at - timedelta(seconds=self._settings.node_dead_after),
        )
        async with self._sessions() as session:
            if (await session.scalar(select(StorageNode.name).where(overdue).limit(1))) is None:
                return []
        async with self._sessions.begin() as session:
            # The condition again: a node that beat, or another process that marked it,
            # since the look above keeps it out.
            marked = await session.scalars(
                update(StorageNode)
                .where(overdue)
                .values(state=NodeState.dead)
                .returning(StorageNode.name)
            )
            names = sorted(marked)
        for name in names:
            logger.warning(
                "storage node %s is dead: no heartbeat for %g s",
                name,
                self._settings.node_dead_after,
                extra={"action": "nodes.dead", "node": name},
            )
        return names

    # What placement asks ----------------------------------------------------------------

    async def active(self) -> list[Candidate]:
        """The nodes that may take repositories (state `active`), by name, with weights."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(StorageNode.name, StorageNode.weight)
                .where(StorageNode.state == NodeState.active)
                .order_by(StorageNode.name)
            )
            return [Candidate(name=name, weight=weight) for name, weight in rows]

    # What admins do ---------------------------------------------------------------------

    async def listing(self, caller: Principal) -> list[NodeRecord]:
        """Every node by name, with how many repositories it owns (admins).

        Raises PermissionDenied for anyone else.
        """
        caller.require_admin()
        async with self._sessions() as session:
            rows = list(await session.scalars(select(StorageNode).order_by(StorageNode.name)))
        counts = await self._gitserver.counts_by_node()
        return [_record(row, counts.get(row.name, 0)) for row in rows]

    async def addresses(self) -> list[NodeRecord]:
        """Every node by name with its URL and state, for this process to forward reads.

        No caller: the process asks for itself. `repositories` is 0 (not counted: that is
        the admins' listing's).
        """
        async with self._sessions() as session:
            rows = list(await session.scalars(select(StorageNode).order_by(StorageNode.name)))
        return [_record(row, 0) for row in rows]

    async def drain(self, caller: Principal, name: str) -> NodeRecord:
        """Node `name` is placed no new repository, and its own move away (admins).

        Draining twice changes nothing. Raises NotFound for an unknown node, NodeConflict
        for a dead one, PermissionDenied.
        """
        return await self._set_state(caller, name, NodeState.draining, "node.drain")

    async def activate(self, caller: Principal, name: str) -> NodeRecord:
        """A draining node `name` takes repositories again (admins); an active one stays.

        Raises NotFound for an unknown node, NodeConflict for a dead one (it is active
        again when its process beats), PermissionDenied.
        """
        return await self._set_state(caller, name, NodeState.active, "node.activate")

    async def set_weight(self, caller: Principal, name: str, weight: float) -> NodeRecord:
        """Node `name`'s share of repositories, relative to the others' weights (admins).

        Raises InvalidInput unless the weight is a finite number above 0, NotFound for an
        unknown node, PermissionDenied.
        """
        caller.require_admin()
        if not (math.isfinite(weight) and weight > 0):
            raise InvalidInput(
                f"a weight is a finite number above 0, not {weight!r}", field="weight"
            )
        async with self._sessions.begin() as session:
            row = await _node(session, name)
            if row.weight != weight:
                await audit.record(
                    session,
                    caller.user.id,
                    "node.weight",
                    name,
                    {"weight": weight, "was": row.weight},
                )
                await session.execute(
                    update(StorageNode).where(StorageNode.name == name).values(weight=weight)
                )
            return await _fresh(session, name)

    async def remove(self, caller: Principal, name: str) -> None:
        """Forget node `name` (admins): one that owns no repository, or a dead one.

        A node whose process still runs registers again at its next heartbeat. Raises
        NotFound for an unknown node, NodeConflict while a live node owns repositories
        (drain it first), PermissionDenied.
        """
        caller.require_admin()
        async with self._sessions.begin() as session:
            row = await _node(session, name)
            owned = await mirrors_on_in(session, name)
            if owned and row.state is not NodeState.dead:
                raise NodeConflict(
                    f"storage node {name!r} still owns {owned} "
                    f"{'repository' if owned == 1 else 'repositories'}: drain it first "
                    f"(`repodepot nodes drain {name}`), then remove it once it owns none"
                )
            await session.execute(delete(StorageNode).where(StorageNode.name == name))
            details = {"state": row.state.value, "repositories": owned}
            await audit.record(session, caller.user.id, "node.remove", name, details)

    async def _set_state(
        self, caller: Principal, name: str, state: NodeState, action: str
    ) -> NodeRecord:
        caller.require_admin()
        async with self._sessions.begin() as session:
            row = await _node(session, name)
            if row.state is NodeState.dead:
                raise NodeConflict(
                    f"storage node {name!r} is dead: its repositories go to the other nodes "
                    "already, and it is active again when its process beats; remove it with "
                    f"`repodepot nodes remove {name}` if it is gone for good"
                )
            was = row.state
            if was is not state:
                await session.execute(
                    update(StorageNode)
                    .where(StorageNode.name == name)
                    .values(state=state, drained=state is NodeState.draining)
                )
                await audit.record(session, caller.user.id, action, name, {"was": was.value})
            return await _fresh(session, name)


def _revived() -> Any:
    """A node's state as it comes back: a dead one is active, or draining if drained."""
    state = StorageNode.__table__.c.state
    back = case((StorageNode.drained, NodeState.draining.value), else_=NodeState.active.value)
    return case((state == NodeState.dead.value, back), else_=state)


def _upsert(session: AsyncSession) -> Any:
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


async def _node(session: AsyncSession, name: str) -> StorageNode:
    row = await session.scalar(select(StorageNode).where(StorageNode.name == name))
    if row is None:
        raise NotFound(f"no storage node named {name!r}")
    return row


async def _fresh(session: AsyncSession, name: str) -> NodeRecord:
    """The node as it is now in `session`'s transaction, with its repositories."""
    statement = select(*StorageNode.__table__.c).where(StorageNode.name == name)
    row = (await session.execute(statement)).one()
    return _record(row, await mirrors_on_in(session, name))


def _record(row: Any, repositories: int) -> NodeRecord:
    return NodeRecord(
        name=row.name,
        url=row.url,
        state=NodeState(row.state),
        weight=row.weight,
        repositories=repositories,
        free_bytes=row.free_bytes,
        heartbeat_at=row.heartbeat_at,
        registered_at=row.registered_at,
    )
