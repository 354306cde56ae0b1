"""The storage nodes' registry and heartbeat, on both databases."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event, select

from repodepot import composition
from repodepot.accounts import Principal, operator
from repodepot.db import migrate
from repodepot.db.base import READS, create_engine, session_factory
from repodepot.db.models import AuditEntry
from repodepot.exceptions import InvalidInput, NotFound, PermissionDenied
from repodepot.gitserver.schedule import QueueReason
from repodepot.gitserver.service import enqueue_in
from repodepot.nodes.heartbeat import NodeHeartbeat
from repodepot.nodes.placement import Candidate
from repodepot.nodes.registry import NodeConflict, NodeRecord, NodeRegistry
from repodepot.services import Services
from repodepot.settings import Settings
from tests.support.engines import app_engines
from tests.support.eventually import eventually
from tests.support.loops import running

ADMIN = operator()


async def nodes(services: Services) -> dict[str, NodeRecord]:
    return {node.name: node for node in await services.nodes.listing(ADMIN)}


async def owned_by(services: Services, node: str, count: int) -> None:
    """`count` repositories whose mirrors `node` owns."""
    ids = []
    for index in range(count):
        repo = await services.repositories.create(
            name=f"{node}/repo-{index}",
            owner_id=None,
            source_url=f"https://git.example.com/{node}/{index}.git",
        )
        ids.append(repo.id)
    async with services.sessions.begin() as session:
        await enqueue_in(session, ids, QueueReason.new, shard=node)


async def audited(services: Services) -> list[tuple[str, str, dict[str, Any]]]:
    async with services.sessions() as session:
        entries = (await session.scalars(select(AuditEntry).order_by(AuditEntry.id))).all()
    return [
        (entry.action, entry.target, json.loads(entry.details))
        for entry in entries
        if entry.action.startswith("node.")
    ]


async def test_registered_nodes_are_listed_with_the_repositories_they_own(
    services: Services,
) -> None:
    assert await services.nodes.register("gs-1", "http://127.0.0.1:8101", 5 << 30) == "active"
    assert await services.nodes.register("gs-2", None, None) == "active"
    await owned_by(services, "gs-1", 3)
    await owned_by(services, "gs-2", 1)

    listed = await nodes(services)
    assert list(listed) == ["gs-1", "gs-2"]
    first = listed["gs-1"]
    assert (first.url, first.state, first.weight) == ("http://127.0.0.1:8101", "active", 1.0)
    assert (first.repositories, first.free_bytes) == (3, 5 << 30)
    assert first.heartbeat_at.tzinfo is not None
    assert (listed["gs-2"].repositories, listed["gs-2"].free_bytes) == (1, None)
    assert await services.gitserver.counts_by_node() == {"gs-1": 3, "gs-2": 1}
    assert await services.nodes.active() == [
        Candidate(name="gs-1", weight=1.0),
        Candidate(name="gs-2", weight=1.0),
    ]


async def test_registering_again_refreshes_the_row_and_revives_only_a_dead_node(
    services: Services,
) -> None:
    registry = services.nodes
    await registry.register("gs-1", "http://127.0.0.1:8101", 100)
    before = (await nodes(services))["gs-1"]
    await registry.register("gs-1", "http://127.0.0.1:9101", 200)
    after = (await nodes(services))["gs-1"]
    assert (after.url, after.free_bytes) == ("http://127.0.0.1:9101", 200)
    assert after.registered_at == before.registered_at
    assert after.heartbeat_at > before.heartbeat_at

    await registry.drain(ADMIN, "gs-1")
    assert await registry.register("gs-1", None, 1) == "draining"  # an admin's word stays

    await registry.register("gs-2", None, 1)
    assert await registry.mark_dead(after.heartbeat_at + timedelta(hours=1)) == ["gs-1", "gs-2"]
    assert await registry.register("gs-2", None, 1) == "active"
    # Dead, beating again: back, and still draining, as the admin left it.
    assert await registry.heartbeat("gs-1", 1) is True
    assert {name: node.state for name, node in (await nodes(services)).items()} == {
        "gs-1": "draining",
        "gs-2": "active",
    }
    assert await registry.heartbeat("gs-1", 1) is False
    await registry.activate(ADMIN, "gs-1")
    await registry.mark_dead(after.heartbeat_at + timedelta(hours=2))
    assert await registry.register("gs-1", None, 1) == "active"  # activated since: active


@pytest.mark.parametrize("name", ["", "Gs-1", "-gs", "gs-", "gs 1", "a" * 65, "gs/1"])
async def test_a_malformed_name_is_refused(services: Services, name: str) -> None:
    with pytest.raises(InvalidInput, match="is not a node name") as info:
        await services.nodes.register(name, None, None)
    assert info.value.field == "name"


async def test_an_unknown_node_is_not_found_by_name(services: Services) -> None:
    registry = services.nodes
    with pytest.raises(NotFound, match="no storage node named 'ghost'"):
        await registry.heartbeat("ghost", 1)
    for change in (
        registry.drain(ADMIN, "ghost"),
        registry.activate(ADMIN, "ghost"),
        registry.remove(ADMIN, "ghost"),
        registry.set_weight(ADMIN, "ghost", 2.0),
    ):
        with pytest.raises(NotFound, match="no storage node named 'ghost'"):
            await change


async def test_mark_dead_marks_each_overdue_node_once(services: Services) -> None:
    registry = services.nodes
    await registry.register("old", None, None)
    await registry.register("draining", None, None)
    await registry.drain(ADMIN, "draining")
    await registry.register("fresh", None, None)
    fresh = (await nodes(services))["fresh"].heartbeat_at
    dead_after = timedelta(seconds=services.settings.node_dead_after)

    assert await registry.mark_dead(fresh + dead_after) == ["draining", "old"]
    assert await registry.mark_dead(fresh + dead_after) == []  # marked already
    states = {name: node.state for name, node in (await nodes(services)).items()}
    assert states == {"draining": "dead", "fresh": "active", "old": "dead"}
    assert await registry.active() == [Candidate(name="fresh", weight=1.0)]


async def test_two_processes_marking_at_once_mark_each_node_once(
    services: Services, settings: Settings
) -> None:
    for name in ("a", "b", "c"):
        await services.nodes.register(name, None, None)
    engine = create_engine(settings.sqlalchemy_url)
    try:
        elsewhere = NodeRegistry(
            session_factory(engine), gitserver=services.gitserver, settings=settings
        )
        later = (await nodes(services))["c"].heartbeat_at + timedelta(hours=1)
        here, there = await asyncio.gather(
            services.nodes.mark_dead(later), elsewhere.mark_dead(later)
        )
    finally:
        await engine.dispose()
    assert sorted(here + there) == ["a", "b", "c"]


async def test_mark_dead_writes_nothing_while_every_node_beats(services: Services) -> None:
    await services.nodes.register("gs-1", None, None)
    with transactions(services) as began:
        assert await services.nodes.mark_dead((await nodes(services))["gs-1"].heartbeat_at) == []
    assert began == []


async def test_a_node_owning_repositories_is_removed_only_once_drained_and_empty_or_dead(
    services: Services,
) -> None:
    registry = services.nodes
    await registry.register("gs-1", None, None)
    await owned_by(services, "gs-1", 2)
    with pytest.raises(NodeConflict, match="'gs-1' still owns 2 repositories: drain it first"):
        await registry.remove(ADMIN, "gs-1")
    drained = await registry.drain(ADMIN, "gs-1")
    assert (drained.state, drained.repositories) == ("draining", 2)
    assert (await registry.drain(ADMIN, "gs-1")).state == "draining"  # twice: no change
    with pytest.raises(NodeConflict, match="drain it first"):
        await registry.remove(ADMIN, "gs-1")  # draining, not yet empty

    await registry.register("empty", None, None)
    await registry.remove(ADMIN, "empty")
    later = (await nodes(services))["gs-1"].heartbeat_at + timedelta(hours=1)
    assert await registry.mark_dead(later) == ["gs-1"]
    await registry.remove(ADMIN, "gs-1")  # dead: its repositories go elsewhere anyway
    assert await nodes(services) == {}
    assert await audited(services) == [
        ("node.drain", "gs-1", {"was": "active"}),
        ("node.remove", "empty", {"repositories": 0, "state": "active"}),
        ("node.remove", "gs-1", {"repositories": 2, "state": "dead"}),
    ]


async def test_drain_and_activate_move_between_active_and_draining_but_not_from_dead(
    services: Services,
) -> None:
    registry = services.nodes
    await registry.register("gs-1", None, None)
    await registry.drain(ADMIN, "gs-1")
    assert await registry.active() == []
    assert (await registry.activate(ADMIN, "gs-1")).state == "active"
    assert await registry.active() == [Candidate(name="gs-1", weight=1.0)]

    later = (await nodes(services))["gs-1"].heartbeat_at + timedelta(hours=1)
    await registry.mark_dead(later)
    for change in (registry.drain(ADMIN, "gs-1"), registry.activate(ADMIN, "gs-1")):
        with pytest.raises(NodeConflict, match="'gs-1' is dead"):
            await change
    assert [action for action, _, _ in await audited(services)] == ["node.drain", "node.activate"]


async def test_weights_are_finite_and_positive_and_audited(services: Services) -> None:
    registry = services.nodes
    await registry.register("gs-1", None, None)
    await registry.register("gs-2", None, None)
    assert (await registry.set_weight(ADMIN, "gs-2", 2.5)).weight == 2.5
    assert await registry.active() == [
        Candidate(name="gs-1", weight=1.0),
        Candidate(name="gs-2", weight=2.5),
    ]
    for weight in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(InvalidInput, match="a weight is a finite number above 0") as info:
            await registry.set_weight(ADMIN, "gs-1", weight)
        assert info.value.field == "weight"
    await registry.set_weight(ADMIN, "gs-2", 2.5)  # the same: nothing to audit
    assert await audited(services) == [("node.weight", "gs-2", {"was": 1.0, "weight": 2.5})]


async def test_only_admins_see_or_change_nodes(services: Services) -> None:
    await services.nodes.register("gs-1", None, None)
    member = Principal(user=await services.accounts.create_user("dev"), token_id=0)
    for call in (
        services.nodes.listing(member),
        services.nodes.drain(member, "gs-1"),
        services.nodes.activate(member, "gs-1"),
        services.nodes.remove(member, "gs-1"),
        services.nodes.set_weight(member, "gs-1", 3.0),
    ):
        with pytest.raises(PermissionDenied):
            await call
    assert (await nodes(services))["gs-1"].state == "active"


async def test_upgrading_makes_a_node_of_every_name_mirrors_carry(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await migrate.upgrade(engine)
        await migrate.downgrade(engine, "0010")
        async with engine.begin() as connection:
            for key in (1, 2, 3):
                await connection.execute(
                    sa.text(
                        "INSERT INTO repositories (id, name, visibility) "
                        "VALUES (:id, :name, 'private')"
                    ),
                    {"id": key, "name": f"acme/r{key}"},
                )
            await connection.execute(
                sa.text(
                    "INSERT INTO gitserver_repos (repository_id, shard) "
                    "VALUES (1, 'local'), (2, 'gs-2'), (3, 'local')"
                )
            )
        await migrate.upgrade(engine)
        async with engine.connect() as connection:
            rows = await connection.execute(
                sa.text(
                    "SELECT name, url, state, weight, heartbeat_at IS NOT NULL "
                    "FROM storage_nodes ORDER BY name"
                )
            )
            found = [tuple(row) for row in rows]
    finally:
        await engine.dispose()
    assert found == [("gs-2", None, "active", 1.0, True), ("local", None, "active", 1.0, True)]


# The heartbeat ---------------------------------------------------------------------------


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Short enough that a silent node dies within the test, without long sleeps.
    return settings.model_copy(update={"node_dead_after": 0.6, "node_heartbeat_interval": 0.05})


@contextlib.contextmanager
def transactions(services: Services) -> Iterator[list[str]]:
    """The write transactions the services' engines begin while the block runs."""
    began: list[str] = []

    def begin(connection: Any) -> None:
        if not connection.get_execution_options().get(READS):
            began.append("BEGIN")

    engines = app_engines(services)
    for engine in engines:
        event.listen(engine, "begin", begin)
    try:
        yield began
    finally:
        for engine in engines:
            event.remove(engine, "begin", begin)


def heartbeat(services: Services, node: str = "alive") -> NodeHeartbeat:
    return NodeHeartbeat(
        services.nodes,
        node=node,
        url="http://127.0.0.1:8101",
        data_dir=services.settings.data_dir,
        interval=services.settings.node_heartbeat_interval,
    )


async def test_the_heartbeat_registers_its_node_and_marks_a_silent_one_dead(
    services: Services,
) -> None:
    await services.nodes.register("silent", None, None)  # and never beats again
    loop = heartbeat(services)
    async with running(loop):

        async def states() -> dict[str, str]:
            found = {name: node.state.value for name, node in (await nodes(services)).items()}
            assert found == {"alive": "active", "silent": "dead"}
            return found

        await eventually(states, timeout=30)
        first = (await nodes(services))["alive"].heartbeat_at
        await eventually(lambda: _beat_after(services, "alive", first), timeout=30)
    alive = (await nodes(services))["alive"]
    assert alive.url == "http://127.0.0.1:8101"
    assert alive.free_bytes is not None and alive.free_bytes > 0
    assert await services.nodes.active() == [Candidate(name="alive", weight=1.0)]


async def _beat_after(services: Services, node: str, before: Any) -> bool:
    return bool((await nodes(services))[node].heartbeat_at > before)


async def test_a_heartbeat_writes_only_its_own_beat_while_every_node_beats(
    services: Services,
) -> None:
    loop = heartbeat(services)
    rounds: list[int] = []
    step = loop.step

    async def counted() -> float | None:
        try:
            return await step()
        finally:
            rounds.append(1)

    loop.step = counted  # type: ignore[method-assign]
    async with running(loop):
        await eventually(lambda: len(rounds) >= 1, timeout=30)  # registered
        with transactions(services) as began:
            seen = len(rounds)
            await eventually(lambda: len(rounds) >= seen + 3, timeout=30)
            done = len(rounds) - seen
            written = len(began)
    # One write transaction per round, its beat (give or take the rounds under way as the
    # count started and ended): marking dead wrote nothing, no node being overdue.
    assert done - 1 <= written <= done + 1


async def test_one_sqlite_process_registers_its_node_and_writes_no_beats(
    services: Services,
) -> None:
    # The default deployment: nobody else could notice its silence, and each write
    # would wake the process's other idle loops to look at the database files.
    loop = NodeHeartbeat.from_services(services)
    sqlite = services.settings.sqlalchemy_url.startswith("sqlite")
    async with running(loop):
        await eventually(lambda: _listed(services, services.settings.node_name), timeout=30)
        with transactions(services) as began:
            await asyncio.sleep(services.settings.node_heartbeat_interval * 10)
            written = len(began)
    assert (written == 0) if sqlite else (written >= 3), written


async def test_a_node_removed_while_its_process_runs_registers_again(
    services: Services,
) -> None:
    loop = heartbeat(services)
    async with running(loop):
        await eventually(lambda: _listed(services, "alive"), timeout=30)
        await services.nodes.remove(ADMIN, "alive")
        await eventually(lambda: _listed(services, "alive"), timeout=30)


async def _listed(services: Services, node: str) -> bool:
    return node in await nodes(services)


async def test_a_heartbeat_reports_the_data_dirs_free_space(
    services: Services, tmp_path: Path
) -> None:
    def beating(data_dir: Path) -> NodeHeartbeat:
        return NodeHeartbeat(services.nodes, node="n", url=None, data_dir=data_dir, interval=1.0)

    assert (await beating(tmp_path).free_bytes() or 0) > 0
    assert await beating(tmp_path / "missing").free_bytes() is None  # unknown, not a failure


# Roles ------------------------------------------------------------------------------------


async def started(settings: Settings, roles: list[str]) -> set[str]:
    """The names of the loops `composition.start` runs for `roles`."""
    update = {"roles": roles, "node_url": "http://127.0.0.1:8101"}
    services = await Services.open(settings.model_copy(update=update))
    try:
        background = composition.start(services)
        try:
            return {task.get_name() for _, task in background.running}
        finally:
            await background.stop()
    finally:
        await services.close()


async def test_the_updater_runs_the_cluster_singletons_and_the_gitserver_the_nodes_loops(
    settings: Settings,
) -> None:
    on_sqlite = settings.sqlalchemy_url.startswith("sqlite")
    singletons = {"sync-loop", "permission-sync-loop"} | (
        {"sqlite-maintenance"} if on_sqlite else set()
    )
    # Moves exist only between the processes of a PostgreSQL cluster.
    per_node = {"node-heartbeat", "update-loop", "upstream-loop", "janitor"} | (
        set() if on_sqlite else {"node-moves"}
    )
    assert await started(settings, ["updater"]) == singletons
    assert await started(settings, ["gitserver"]) == per_node
    assert await started(settings, ["web"]) == set()
    assert await started(settings, ["web", "worker", "updater", "gitserver"]) == (
        {"import-worker"} | singletons | per_node
    )
