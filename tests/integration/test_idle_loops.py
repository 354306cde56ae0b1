"""Idle loops sleep until their next due time or a wake-up: they do not poll the database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from repodepot import composition
from repodepot.db.base import create_engine, session_factory
from repodepot.db.watch import DatabaseWatch
from repodepot.gitserver.schedule import QueueReason
from repodepot.gitserver.service import Gitserver
from repodepot.gitserver.updater import UpdateLoop
from repodepot.secrets import SecretBox
from repodepot.services import Services
from repodepot.settings import Settings, ensure_secret_key
from tests.support.eventually import eventually
from tests.support.githttp import GitHttpServer
from tests.support.loops import running
from tests.support.repogen import Spec, generate, git
from tests.support.seed import connected_mirror


@contextlib.contextmanager
def counting(*engines: AsyncEngine) -> Iterator[list[str]]:
    """The statements the engines send while the block runs."""
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])  # (conn, cursor, statement, parameters, context, executemany)

    for engine in engines:
        event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine.sync_engine, "before_cursor_execute", record)


async def cloned_mirror(services: Services, server: GitHttpServer, root: Path) -> int:
    """One repository, mirrored and fresh: nothing is due for a while."""
    generate(root / "quiet.git", Spec(commits=3))
    return (await connected_mirror(services, server.url("quiet.git"), "127.0.0.1/quiet")).id


def watch_steps(loop: UpdateLoop) -> asyncio.Event:
    """Set once the loop's first round is over (it is idle from then on)."""
    stepped = asyncio.Event()
    step = loop.step

    async def watched() -> float | None:
        try:
            return await step()
        finally:
            stepped.set()

    loop.step = watched  # type: ignore[method-assign]
    return stepped


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The old loop looked every 0.4 s here (2.5 times a second, as measured in issue 14).
    return settings.model_copy(update={"update_poll_interval": 0.4})


async def test_an_idle_update_loop_sends_almost_no_statements(
    services: Services, git_root: Path, git_server: GitHttpServer
) -> None:
    await cloned_mirror(services, git_server, git_root)
    loop = UpdateLoop.from_services(
        services, changed=DatabaseWatch(services.settings.sqlalchemy_url).changed
    )
    stepped = watch_steps(loop)
    async with running(loop):
        await asyncio.wait_for(stepped.wait(), 30)
        with counting(services.engine, services.worker_engine) as statements:
            await asyncio.sleep(3)  # idle: what it sends meanwhile is counted, not timed

    assert len(statements) <= 2, statements


async def test_an_enqueue_in_another_process_wakes_the_updater_through_postgresql(
    tmp_path: Path, postgres_url: str, git_root: Path, git_server: GitHttpServer
) -> None:
    upstream = git_root / "quiet.git"
    # The updater looks at the queue once an hour by itself: only a wake-up brings the fetch.
    slow = Settings(
        data_dir=tmp_path / "data",
        database_url=postgres_url,
        secret_key="test-secret-key-" + "x" * 32,
        allowed_schemes=["http"],
        outbound_allowlist=["127.0.0.1"],
        roles=["updater", "gitserver"],  # gitserver: the mirrors' updates
        node_url="http://127.0.0.1:8081",  # its internal address, never called here
        update_poll_interval=3600.0,
        backpressure_load=0,  # a busy test machine must not hold the fetch back
        backpressure_p99=0,
    )
    services = await Services.open(slow)
    background = None
    try:
        repository_id = await cloned_mirror(services, git_server, git_root)
        background = composition.start(services)
        (updates,) = [loop for loop, _ in background.running if isinstance(loop, UpdateLoop)]
        stepped = watch_steps(updates)  # before its task first runs
        await asyncio.wait_for(stepped.wait(), 30)
        base = ["-c", "user.name=Up", "-c", "user.email=up@example.com", "--git-dir", str(upstream)]
        tree = git(*base, "rev-parse", "main^{tree}").strip()
        commit = git(*base, "commit-tree", tree, "-p", "main", "-m", "pushed").strip()
        git(*base, "update-ref", "refs/heads/main", commit)

        # Another process (a web server, the CLI): its own engine, no hook to the loop.
        engine = create_engine(slow.sqlalchemy_url)
        box = SecretBox(ensure_secret_key(slow))
        elsewhere = Gitserver(session_factory(engine), box=box, settings=slow)
        try:
            assert await elsewhere.enqueue_existing(repository_id, QueueReason.webhook)
        finally:
            await engine.dispose()

        mirror = services.storage.path(repository_id)
        await eventually(
            lambda: commit in git("--git-dir", str(mirror), "for-each-ref"), timeout=30
        )
    finally:
        if background is not None:
            await background.stop()
        await services.close()
