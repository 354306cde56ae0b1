"""Leases of processes that died on this host are freed at once, not after they expire."""

from __future__ import annotations

import socket
import subprocess

from repodepot.accounts import operator
from repodepot.gitserver.schedule import QueueReason
from repodepot.loops import died_here, new_worker_id
from repodepot.services import Services
from repodepot.settings import Settings


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_died_here_tells_a_dead_local_process_from_the_rest() -> None:
    host = socket.gethostname()
    assert died_here(f"{host}:{_dead_pid()}:0000")
    assert not died_here(new_worker_id())  # this very process
    assert not died_here(f"elsewhere.example:{_dead_pid()}:0000")  # only its lease expiry says
    assert not died_here("not-a-worker-id")
    assert not died_here(None)


async def test_a_dead_updater_s_mirrors_are_freed_and_claimed_again(
    services: Services, settings: Settings
) -> None:
    repos = []
    for name in ("acme/one", "acme/two", "acme/three"):
        repos.append(
            await services.repositories.create(
                name=name, owner_id=None, source_url=f"http://127.0.0.1:9/{name}.git"
            )
        )
    await services.gitserver.enqueue([repo.id for repo in repos], QueueReason.new)
    dead = f"{socket.gethostname()}:{_dead_pid()}:dead"
    remote = f"other-host.example:{_dead_pid()}:away"
    taken_dead = await services.gitserver.claim(dead, 2, {}, 10)
    taken_remote = await services.gitserver.claim(remote, 1, {}, 10)
    assert len(taken_dead) == 2 and len(taken_remote) == 1
    assert await services.gitserver.claim(new_worker_id(), 3, {}, 10) == []  # all leased

    freed = await services.gitserver.release_dead_leases()

    assert freed == 2
    again = await services.gitserver.claim(new_worker_id(), 3, {}, 10)
    assert {due.repository_id for due in again} == {due.repository_id for due in taken_dead}


async def test_a_dead_syncer_s_connection_is_freed_and_synced_again(services: Services) -> None:
    host = await services.codehosts.create(
        operator(), kind="other", name="up", config={"repos": ["http://127.0.0.1:9/a.git"]}
    )
    syncer = services.codehosts.syncer
    dead = f"{socket.gethostname()}:{_dead_pid()}:dead"
    assert await syncer.claim(host.id, dead, due_only=False)
    assert not await syncer.claim(host.id, new_worker_id(), due_only=False)  # leased

    assert await syncer.release_dead_leases() == 1

    assert await syncer.claim(host.id, new_worker_id(), due_only=False)
