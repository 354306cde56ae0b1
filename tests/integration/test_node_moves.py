"""Moves' statements on both engines: the plan applied, a move claimed, flipped or failed,
copies that left a node dropped, and the cluster's one leader.

The copies themselves (git between real processes) are in tests/e2e/test_nodes_cluster.py.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

from pydantic import SecretStr
from sqlalchemy import update

from repodepot.clock import now
from repodepot.db.leader import Leadership
from repodepot.db.models import CloneStatus, GitserverRepo
from repodepot.gitserver.janitor import ORPHAN_MIN_AGE, Janitor
from repodepot.gitserver.schedule import QueueReason
from repodepot.gitserver.service import Gitserver, Move
from repodepot.nodes.forward import Forwarder
from repodepot.nodes.moves import Decisions, MoveLoop, decide
from repodepot.nodes.placement import Candidate, owner
from repodepot.services import Services
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate
from tests.support.seed import seed_mirror

A, B, C = "gs-a", "gs-b", "gs-c"


async def _on(services: Services, key: int, node: str, **values: object) -> None:
    async with services.sessions.begin() as session:
        await session.execute(
            update(GitserverRepo)
            .where(GitserverRepo.repository_id == key)
            .values(shard=node, **values)
        )


async def _register(services: Services, *names: str) -> None:
    for name in names:
        await services.nodes.register(name, f"http://127.0.0.1:81{len(name)}", None)


async def _plan(
    services: Services, active: list[str], alive: set[str], limit: int = 10
) -> Decisions:
    return await services.gitserver.replan(
        lambda holdings: decide(holdings, _cands(*active), alive, limit=limit)
    )


def _as_node(services: Services, node: str, **settings: object) -> Gitserver:
    """The gitserver service as node `node`'s process sees it (the same database)."""
    gitserver = services.gitserver
    gitserver._settings = services.settings.model_copy(update={"node_name": node, **settings})
    return gitserver


async def test_a_lost_node_s_mirrors_are_relocated_and_read_as_unavailable_until_cloned(
    services: Services,
) -> None:
    repos = [
        await seed_mirror(
            services, f"acme/lost{index}", source_url=f"http://127.0.0.1:9/lost{index}.git"
        )
        for index in range(6)
    ]
    for repo in repos:
        await _on(services, repo.id, C, lease_owner="x", lease_until=now() + timedelta(minutes=1))

    plan = await _plan(services, [A, B], {A, B})

    assert sorted(key for ids in plan.relocate.values() for key in ids) == [r.id for r in repos]
    for repo in repos:
        state = await services.gitserver.state(repo.id)
        assert state is not None
        want = owner(repo.id, [Candidate(name=A, weight=1.0), Candidate(name=B, weight=1.0)])
        assert (state.node, state.moved_from, state.clone_status) == (
            want,
            C,
            CloneStatus.not_cloned,
        )
        assert state.relocating and state.queued == "new"
    # The new node's updater claims them at once, as new clones (the dead lease is gone).
    due = [key for key in (r.id for r in repos) if owner(key, _cands(A, B)) == A]
    claimed = await _as_node(services, A).claim("updater-a", 10, {}, 10)
    assert sorted(d.repository_id for d in claimed) == sorted(due)
    # A second pass changes nothing.
    assert (await _plan(services, [A, B], {A, B})).relocate == {}


def _cands(*names: str) -> list[Candidate]:
    return [Candidate(name=name, weight=1.0) for name in names]


async def test_a_move_is_claimed_by_its_target_flipped_in_one_update_and_dropped_later(
    services: Services,
) -> None:
    await _register(services, A, B)
    repo = await seed_mirror(services, "acme/moving", source_url="http://127.0.0.1:9/m.git")
    await _on(services, repo.id, A)
    gitserver = services.gitserver

    plan = await _plan(services, [B], {A, B})  # A drains
    assert plan.start == {(A, B): [repo.id]}
    state = await gitserver.state(repo.id)
    assert state is not None and (state.node, state.move_to) == (A, B)  # reads stay on A

    gitserver = _as_node(services, B)
    [move] = await gitserver.claim_moves("mover-b", 4)
    assert move == Move(repository_id=repo.id, source=A)
    assert await gitserver.claim_moves("mover-b", 4) == []  # leased: once
    assert await _as_node(services, A).claim("updater-a", 4, {}, 4) == []  # A keeps off it
    gitserver = _as_node(services, B)
    # A move planned elsewhere, or taken by another mover, does not flip.
    assert not await gitserver.moved("someone-else", move, digest="d")
    assert await gitserver.moved("mover-b", move, digest="digest-b")
    state = await gitserver.state(repo.id)
    assert state is not None
    assert (state.node, state.move_to, state.moved_from) == (B, None, A)
    assert not state.relocating
    assert not await gitserver.moved("mover-b", move, digest="again")  # flipped once

    # A keeps its copy for the grace period, then drops it.
    gitserver = _as_node(services, A, node_move_grace=3600.0)
    loop = MoveLoop(
        gitserver=gitserver,
        registry=services.nodes,
        forwarder=services.forwarder,
        leader=services.leader,
        git=services.git,
        storage=services.storage,
        settings=gitserver._settings,
    )
    assert services.storage.exists(repo.id)
    assert await loop.drop_moved_away() == 0
    assert services.storage.exists(repo.id)
    await _on(services, repo.id, B, placed_at=now() - timedelta(hours=2))
    assert await loop.drop_moved_away() == 1
    assert not services.storage.exists(repo.id)


async def test_a_failed_copy_waits_before_it_is_tried_again_and_the_old_node_may_update(
    services: Services,
) -> None:
    repo = await seed_mirror(services, "acme/retry")
    await _on(services, repo.id, A, move_to=B)
    gitserver = _as_node(services, B)
    [move] = await gitserver.claim_moves("mover-b", 4)
    await gitserver.move_failed("mover-b", move, retry_in=3600)
    assert await gitserver.claim_moves("mover-b", 4) == []
    await gitserver.move_failed("mover-b", move, retry_in=-1)  # not the holder: no change
    assert await gitserver.claim_moves("mover-b", 4) == []
    await _on(services, repo.id, A, lease_until=now() - timedelta(seconds=1))
    assert [m.repository_id for m in await gitserver.claim_moves("mover-b", 4)] == [repo.id]


async def test_a_move_that_is_no_longer_wanted_is_cancelled_and_uncloned_rows_placed_again(
    services: Services,
) -> None:
    moving = await seed_mirror(services, "acme/cancel")
    fresh = await services.repositories.create(name="acme/fresh", owner_id=None)
    await services.gitserver.enqueue([fresh.id], QueueReason.new)
    target = owner(moving.id, _cands(A, B))
    other = B if target == A else A
    await _on(services, moving.id, C, move_to=other)
    await _on(services, fresh.id, C)

    plan = await _plan(services, [A, B], {A, B, C})

    assert plan.cancel == [moving.id]
    assert plan.replace == {(C, owner(fresh.id, _cands(A, B))): [fresh.id]}
    state = await services.gitserver.state(moving.id)
    assert state is not None and state.move_to is None and state.node == C
    placed = await services.gitserver.state(fresh.id)
    assert placed is not None and placed.node == owner(fresh.id, _cands(A, B))
    assert not placed.relocating  # never cloned anywhere: "not cloned yet", as any new one


async def test_the_janitor_drops_a_returning_node_s_copies_of_mirrors_that_left_it(
    services: Services,
) -> None:
    kept = await seed_mirror(services, "acme/kept")
    gone = await seed_mirror(services, "acme/gone")
    recent = await seed_mirror(services, "acme/recent")
    here = services.settings.node_name
    await _on(services, kept.id, here)
    await _on(services, gone.id, B, placed_at=now() - timedelta(hours=2))
    await _on(services, recent.id, B, placed_at=now())
    janitor = Janitor.from_services(services)
    old = time.time() - 2 * ORPHAN_MIN_AGE
    for repo in (kept, gone, recent):
        os.utime(services.storage.path(repo.id), (old, old))

    assert await janitor.remove_orphans() == 1

    assert services.storage.exists(kept.id) and services.storage.exists(recent.id)
    assert not services.storage.exists(gone.id)


async def test_one_process_leads_the_cluster_until_it_stops(services: Services) -> None:
    first = Leadership(services.worker_engine, "test.lead")
    second = Leadership(services.worker_engine, "test.lead")
    other = Leadership(services.worker_engine, "test.other")
    try:
        on_sqlite = services.settings.sqlalchemy_url.startswith("sqlite")
        assert await first.held()
        assert await second.held() is on_sqlite  # SQLite: one process, always leads
        assert await first.held()  # kept
        assert await other.held()  # another name, another lock
        await first.close()
        assert await second.held()
    finally:
        for lead in (first, second, other):
            await lead.close()


async def test_the_plan_skips_its_pass_while_the_nodes_stay_as_it_left_them(
    services: Services,
) -> None:
    await _register(services, A)
    repo = await seed_mirror(services, "acme/settled")
    await _on(services, repo.id, A)
    loop = MoveLoop.from_services(services)
    first = await loop.plan()
    assert first is not None and first.empty
    assert await loop.plan() is None  # nothing changed: no read of every row

    await _register(services, B)  # the nodes changed: a pass
    joined = await loop.plan()
    assert joined is not None
    moving = owner(repo.id, _cands(A, B)) == B
    assert joined.start == ({(A, B): [repo.id]} if moving else {})
    again = await loop.plan()
    # A move in flight keeps the passes coming (more may start as it ends).
    assert (again is not None) is moving
    forced = await loop.plan(force=True)
    assert forced is not None


async def test_a_copy_from_a_url_that_is_not_the_old_node_fails_and_places_nothing(
    services: Services, tmp_path: Path
) -> None:
    # Another process answers at the old node's URL (a wrong REPODEPOT_NODE_URL) and serves
    # a repository at the path git asks: git would copy it, so the node's signature on its
    # advertisement is asked for first.
    repo = await seed_mirror(services, "acme/impostor")
    impostor = tmp_path / "impostor"
    generate(impostor / "internal" / "repos" / str(repo.id), Spec(commits=2, seed=99))
    with GitHttpServer(impostor) as server:
        await services.nodes.register(A, server.url("").rstrip("/"), None)
        await _on(services, repo.id, A, move_to=B)
        services.storage.remove(repo.id)  # this process plays B: nothing of it on disk
        gitserver = _as_node(services, B, internal_secret=SecretStr("internal-" + "s" * 32))
        forwarder = Forwarder.from_settings(gitserver._settings, services.nodes.addresses)
        loop = MoveLoop(
            gitserver=gitserver,
            registry=services.nodes,
            forwarder=forwarder,
            leader=services.leader,
            git=services.git,
            storage=services.storage,
            settings=gitserver._settings,
        )
        try:
            assert await loop.copy_claimed() == 1
            assert await loop.copies_done() == [False]
        finally:
            await forwarder.close()
    assert not services.storage.exists(repo.id)
    state = await gitserver.state(repo.id)
    assert state is not None and (state.node, state.move_to) == (A, B)  # planned still
    assert await gitserver.claim_moves("mover-b", 4) == []  # tried again later
