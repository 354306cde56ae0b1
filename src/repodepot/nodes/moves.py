"""Moves between storage nodes: the plan (once per cluster) and each node's copies.

Every mirror belongs on its rendezvous owner among the active nodes (`placement.owner`).
When the nodes change (one joins, drains, dies, comes back, is weighed again), the plan
(`decide`, pure) says what each mirror not on its owner needs:

- its node is **lost** (dead, or not registered any more): `relocate` gives it to its owner,
  which clones it from its upstream first thing; reads answer 503 until it is cloned
  (`MirrorState.relocating`);
- it is **not cloned yet** on a live node and nothing runs on it: `replace` gives it to its
  owner, which clones it as it would have;
- it is **cloned** on a live node (active or draining): a **move** copies it. The owner
  claims the row's lease (so the old node does not fetch meanwhile), clones it from the
  old node's internal smart HTTP, catches up with a fetch, renames it into place, then one
  UPDATE flips the row to itself (`Gitserver.moved`). Reads go to the old node until that
  UPDATE, and to the new one after; the old node keeps its copy for `node_move_grace` for
  the reads sent to it just before, then drops it (`MoveLoop.drop_moved_away`).

At most `node_moves` moves are in flight at once, cluster-wide: a rebalance or a drain
copies that many repositories at a time. The plan runs in the process that holds the
cluster's lock (`db.leader`); each gitserver process copies the moves that come to it and
drops what left it. Only on PostgreSQL: a SQLite deployment is one process, one node.

The branch status's upstream copies (`upstreams/`) do not move: the new node fetches its
own at the next upstream fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from repodepot.clock import now
from repodepot.db.leader import Leadership
from repodepot.db.models import NodeState
from repodepot.exceptions import RepodepotError
from repodepot.git import commands
from repodepot.git.errors import GitError
from repodepot.git.runner import GitRunner, background
from repodepot.gitserver import mirror
from repodepot.gitserver.service import LEASE, Gitserver, Holding, Move
from repodepot.loops import BackgroundLoop, new_worker_id, renewing
from repodepot.nodes.forward import Forwarder, internal_name, request_headers
from repodepot.nodes.placement import Candidate, owner
from repodepot.nodes.registry import NodeRecord, NodeRegistry
from repodepot.settings import Settings
from repodepot.storage import Storage

if TYPE_CHECKING:
    from repodepot.services import Services

logger = logging.getLogger(__name__)
RETRY = 30.0
"""Seconds before a failed copy is tried again (its old node may be restarting)."""
DROP_WINDOW = timedelta(days=1)
"""How far back a node looks for mirrors that left it (older ones: the janitor's walk)."""
DROP_BATCH = 500
FULL_PASS = 120.0
"""Seconds between two passes of the plan while the nodes do not change and nothing moves.

A pass reads every mirror row and ranks each over the nodes (2 s for 100,000 rows over 11
nodes, `python -m bench nodes`; later passes over the same nodes rank only new rows,
`Owners`): it runs when the nodes change and while moves are in flight, and otherwise
this often, for the rows placed meanwhile on a node that is not
their owner (an import lands on its worker's node; a placement read a few seconds stale).
"""


Pairs = dict[tuple[str, str], list[int]]


@dataclass(kw_only=True)
class Decisions:
    """What a pass of the plan changes, by (from node, to node), each list by id."""

    relocate: Pairs = field(default_factory=lambda: defaultdict(list))
    replace: Pairs = field(default_factory=lambda: defaultdict(list))
    start: Pairs = field(default_factory=lambda: defaultdict(list))
    cancel: list[int] = field(default_factory=list)
    in_flight: int = 0

    @property
    def empty(self) -> bool:
        """True when the pass changes nothing."""
        return not (self.relocate or self.replace or self.start or self.cancel)


class Owners:
    """Each repository's owner among one set of active nodes, computed once per repository.

    A pass of the plan asks for every repository's owner; while the active nodes stay the
    same, the answers do, so only repositories new since the last pass cost a ranking.
    """

    def __init__(self) -> None:
        self._nodes: tuple[Candidate, ...] = ()
        self._owners: dict[int, str] = {}

    def of(self, active: list[Candidate]) -> Callable[[int], str]:
        """The owner of a repository id among `active` (kept while `active` is the same)."""
        nodes = tuple(active)
        if nodes != self._nodes:
            self._nodes, self._owners = nodes, {}
        owners = self._owners

        def find(repository_id: int) -> str:
            found = owners.get(repository_id)
            if found is None:
                found = owners[repository_id] = owner(repository_id, nodes)
            return found

        return find


def decide(
    holdings: list[Holding],
    active: list[Candidate],
    alive: set[str],
    *,
    limit: int,
    owner_of: Callable[[int], str] | None = None,
) -> Decisions:
    """What each mirror not on its owner among `active` needs (see the module docstring).

    `alive` names the nodes that are not dead (active or draining); a node outside it is
    lost. New moves start while fewer than `limit` are in flight, the rest wait for a
    later pass. With no active node nothing changes: there is nowhere to go. `owner_of`
    answers `placement.owner(id, active)`, from a cache (`Owners`) when given.
    """
    decisions = Decisions()
    if not active:
        return decisions
    find = owner_of or (lambda key: owner(key, active))
    targets = {candidate.name for candidate in active}
    waiting: list[tuple[Holding, str]] = []
    for held in holdings:
        want = find(held.repository_id)
        if held.move_to is not None:
            if held.node not in alive:
                decisions.relocate[held.node, want].append(held.repository_id)
            elif held.move_to != want or held.move_to not in targets:
                if not held.leased:  # a copy under way finishes; the next pass moves it on
                    decisions.cancel.append(held.repository_id)
            else:
                decisions.in_flight += 1
            continue
        if held.node == want:
            continue
        if held.node not in alive:
            decisions.relocate[held.node, want].append(held.repository_id)
        elif not held.cloned:
            if not held.leased:
                decisions.replace[held.node, want].append(held.repository_id)
        else:
            waiting.append((held, want))
    room = max(0, limit - decisions.in_flight)
    for held, want in waiting[:room]:
        decisions.start[held.node, want].append(held.repository_id)
    decisions.in_flight += min(room, len(waiting))
    return decisions


class MoveLoop(BackgroundLoop):
    """A gitserver's moves: the plan when it leads, its own copies, and its drops."""

    name = "nodes.moves"

    def __init__(
        self,
        *,
        gitserver: Gitserver,
        registry: NodeRegistry,
        forwarder: Forwarder,
        leader: Leadership,
        git: GitRunner,
        storage: Storage,
        settings: Settings,
    ) -> None:
        super().__init__(interval=settings.node_heartbeat_interval)
        self._gitserver = gitserver
        self._registry = registry
        self._forwarder = forwarder
        self._leader = leader
        self._git = git
        self._storage = storage
        self._settings = settings
        self._owner = new_worker_id()
        # The nodes as the last pass saw them, when it left nothing to do, and when it ran.
        self._settled: tuple[tuple[str, str, float], ...] | None = None
        self._planned_at = 0.0
        self._copies: dict[int, tuple[Move, asyncio.Task[bool]]] = {}
        self._owners = Owners()

    @classmethod
    def from_services(cls, services: Services) -> MoveLoop:
        """The moves loop of this process's node."""
        return cls(
            gitserver=services.gitserver,
            registry=services.nodes,
            forwarder=services.forwarder,
            leader=services.leader,
            git=services.git,
            storage=services.storage,
            settings=services.settings,
        )

    async def step(self) -> float | None:
        """Plan (when this process leads), copy what comes here, drop what left."""
        if await self._leader.held():
            await self.plan()
        await self.copy_claimed()
        await self.drop_moved_away()
        return None

    async def plan(self, *, force: bool = False) -> Decisions | None:
        """One pass of the plan over every mirror row; what it changed (None: skipped).

        Skipped while the nodes are as the last pass left them with nothing to do, for up
        to FULL_PASS seconds; `force` runs it anyway.
        """
        nodes = await self._registry.addresses()
        seen = tuple((node.name, node.state.value, node.weight) for node in nodes)
        at = time.monotonic()
        if not force and seen == self._settled and at - self._planned_at < FULL_PASS:
            return None
        self._planned_at = at
        active = _active(nodes)
        owner_of = self._owners.of(active)
        decisions = await self._gitserver.replan(
            lambda holdings: decide(
                holdings,
                active,
                _alive(nodes),
                limit=self._settings.node_moves,
                owner_of=owner_of,
            )
        )
        if not decisions.empty:
            logger.info(
                "moves planned: %d relocated, %d placed again, %d moves started, "
                "%d cancelled, %d in flight",
                sum(map(len, decisions.relocate.values())),
                sum(map(len, decisions.replace.values())),
                sum(map(len, decisions.start.values())),
                len(decisions.cancel),
                decisions.in_flight,
                extra={"action": "nodes.plan"},
            )
        self._settled = seen if decisions.empty and not decisions.in_flight else None
        return decisions

    async def copy_claimed(self) -> int:
        """Start copying the moves planned to this node, `node_moves` at once; how many started.

        The copies run beside the loop's rounds (a large repository copies for minutes;
        the plan and the drops go on meanwhile); each one ending wakes the loop.
        """
        free = self._settings.node_moves - len(self._copies)
        if free <= 0:
            return 0
        claimed = await self._gitserver.claim_moves(self._owner, free)
        for move in claimed:
            key = move.repository_id
            task = asyncio.create_task(self._copy_logged(move), name=f"move-{key}")
            self._copies[key] = (move, task)
            task.add_done_callback(functools.partial(self._copied, key))
        return len(claimed)

    def _copied(self, key: int, _task: asyncio.Task[bool]) -> None:
        self._copies.pop(key, None)
        self.wake()

    async def copies_done(self) -> list[bool]:
        """Wait for the copies under way; whether each flipped (tests, a clean stop)."""
        return list(await asyncio.gather(*(task for _, task in list(self._copies.values()))))

    async def stopped(self) -> None:
        """Cancel the copies under way and give their moves back at once."""
        running = list(self._copies.values())
        for _, task in running:
            task.cancel()
        for move, task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(Exception):
                await self._gitserver.move_failed(self._owner, move, retry_in=0)

    async def _copy_logged(self, move: Move) -> bool:
        try:
            return await self.copy(move)
        except Exception:  # recorded nowhere else: logged; its lease expires and it retries
            logger.exception(
                "copy of repository %d crashed",
                move.repository_id,
                extra={"action": "nodes.move_failed", "repository_id": move.repository_id},
            )
            return False

    async def copy(self, move: Move) -> bool:
        """Copy one mirror from its old node and flip it here; True when it flipped."""
        key = move.repository_id
        try:
            async with renewing(
                lambda: self._gitserver.renew(self._owner, key), LEASE.total_seconds() / 3
            ):
                with background(self._settings.background_nice):
                    digest = await self._copy(move)
                flipped = await self._gitserver.moved(self._owner, move, digest=digest)
        except (GitError, RepodepotError) as error:
            logger.warning(
                "copy of repository %d from storage node %s failed: %s",
                key,
                move.source,
                error.message,
                extra={"action": "nodes.move_failed", "repository_id": key, "node": move.source},
            )
            await self._gitserver.move_failed(self._owner, move, retry_in=RETRY)
            return False
        if not flipped:  # the plan changed while it copied: this copy is nobody's
            async with self._storage.lock(key):
                holder = (await self._gitserver.holders([key])).get(key)
                if holder is None or holder.node != self._settings.node_name:
                    self._storage.remove(key)
            return False
        logger.info(
            "repository %d moved here from storage node %s",
            key,
            move.source,
            extra={"action": "nodes.moved", "repository_id": key, "node": move.source},
        )
        return True

    async def _copy(self, move: Move) -> str:
        """Clone from the old node, catch up with a fetch, place it; the refs' digest."""
        key = move.repository_id
        name = internal_name(key)
        base = await self._forwarder.url(move.source, name)
        url = f"{base}/internal/repos/{key}"
        # git sees no headers: the node's signature on its advertisement is checked first
        # (NodeUnavailable from another process at that URL), so a wrong URL fails the
        # copy instead of copying what another process holds.
        path = f"/internal/repos/{key}/info/refs?service=git-upload-pack"
        await (
            await self._forwarder.open(
                move.source, "GET", path, request_headers(), name=name, passed=frozenset({200})
            )
        ).aclose()
        secret = self._forwarder.secret
        git, settings = self._git, self._settings
        async with self._storage.lock(key):
            if self._storage.exists(key):
                # A copy left from when this node held it before (it died, or the mirror
                # moved away and back): older than the mirror, never merged with.
                self._storage.remove(key)
            async with self._storage.staging(key, label=f"move-{key}") as staged:
                await commands.clone_bare(
                    git, url, staged, mirror=True, timeout=settings.git_timeout, node_secret=secret
                )
                await commands.fetch(
                    git,
                    staged,
                    url,
                    [*mirror.REFSPECS, *settings.fetch_extra_refspecs],
                    timeout=settings.git_timeout,
                    node_secret=secret,
                )
            return await commands.refs_digest(git, self._storage.path(key))

    async def drop_moved_away(self) -> int:
        """Remove this node's copies of mirrors that moved away over the grace period ago."""
        at = now()
        before = at - timedelta(seconds=self._settings.node_move_grace)
        gone = await self._gitserver.moved_away(before, since=at - DROP_WINDOW, limit=DROP_BATCH)
        dropped = 0
        for key in gone:
            if self.stopping:
                break
            if not self._storage.exists(key):
                continue
            async with self._storage.lock(key):
                holder = (await self._gitserver.holders([key])).get(key)
                if holder is not None and self._settings.node_name in (
                    holder.node,
                    holder.move_to,
                ):
                    continue  # it came back meanwhile
                self._storage.remove(key)
            dropped += 1
            logger.info(
                "dropped the copy of repository %d: it is on storage node %s now",
                key,
                holder.node if holder is not None else "none",
                extra={"action": "nodes.dropped", "repository_id": key},
            )
        return dropped


def _active(nodes: list[NodeRecord]) -> list[Candidate]:
    return [
        Candidate(name=node.name, weight=node.weight)
        for node in nodes
        if node.state is NodeState.active
    ]


def _alive(nodes: list[NodeRecord]) -> set[str]:
    return {node.name for node in nodes if node.state is not NodeState.dead}
