"""Background git yields to the foreground: nice 19, the idle I/O class, a bounded count."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from repodepot.accounts import operator
from repodepot.git.runner import GitRunner, background
from repodepot.gitserver.updater import UpdateLoop
from repodepot.services import Services
from repodepot.settings import Settings, process_path
from tests.support import procs
from tests.support.eventually import eventually
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"  # what is pinned here is git's


@pytest.fixture
def stalling(git_root: Path) -> Iterator[GitHttpServer]:
    """A git server that stops answering in the middle of every fetch: git waits there."""
    with GitHttpServer(git_root, fault="stall", fault_after=0) as server:
        yield server


@contextlib.asynccontextmanager
async def running(work: asyncio.Task[object]) -> AsyncIterator[None]:
    try:
        yield
    finally:
        work.cancel()  # kills git's process group
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await work


async def fetching_from(url: str) -> list[int]:
    """The git processes fetching from `url` (git itself and its remote helper), once both run."""

    def both() -> list[int]:
        pids = procs.with_argument(url)
        assert len(pids) >= 2, pids
        return pids

    return await eventually(both)


async def test_background_git_runs_at_nice_19_in_the_idle_io_class(
    tmp_path: Path, git_root: Path, stalling: GitHttpServer
) -> None:
    generate(git_root / "busy.git", Spec(commits=3))
    runner = GitRunner(runtime_dir=tmp_path / "run", path=process_path(), allowed_schemes=["http"])
    url = stalling.url("busy.git")

    with background():
        fetch = asyncio.create_task(runner.run(["clone", "--mirror", url, str(tmp_path / "bg")]))
    async with running(fetch):
        pids = await fetching_from(url)
        assert [procs.niceness(pid) for pid in pids] == [19] * len(pids)
        assert [procs.io_class(pid) for pid in pids] == ["idle"] * len(pids)

    # The same command outside the block (an import's clone) keeps the server's priority.
    foreground = asyncio.create_task(runner.run(["clone", "--mirror", url, str(tmp_path / "fg")]))
    async with running(foreground):
        pids = await fetching_from(url)
        assert [procs.niceness(pid) for pid in pids] == [0] * len(pids)
        assert "idle" not in [procs.io_class(pid) for pid in pids]


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"max_concurrent_clones": 4, "background_concurrency": 1})


async def test_the_update_loop_clones_in_the_background_one_at_a_time(
    services: Services, git_root: Path, stalling: GitHttpServer
) -> None:
    # Two new mirrors are due and four clones may run, but background work is one at a time.
    for name in ("one", "two"):
        generate(git_root / f"{name}.git", Spec(commits=3))
    config = {"repos": [stalling.url(f"{name}.git") for name in ("one", "two")]}
    host = await services.codehosts.create(operator(), kind="other", name="up", config=config)
    await services.codehosts.syncer.sync(host.id)
    loop = UpdateLoop.from_services(services)
    urls = [stalling.url(f"{name}.git") for name in ("one", "two")]

    async with running(asyncio.create_task(loop.run())):
        pids = await eventually(lambda: [pid for url in urls for pid in procs.with_argument(url)])
        status = await services.gitserver.status()
        assert (status.running, status.queued) == (1, 1)  # the other one waits its turn
        assert {procs.niceness(pid) for pid in pids} == {19}
        assert {procs.io_class(pid) for pid in pids} == {"idle"}
        await loop.stop()
