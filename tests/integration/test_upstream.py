"""Upstream tracking against real git: a fork's mirror and its upstream over loopback HTTP."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from repodepot.accounts import operator
from repodepot.branches import store
from repodepot.clock import now
from repodepot.db.models import BranchSyncStatus, Repository
from repodepot.exceptions import InvalidInput
from repodepot.nodes import internal_reads
from repodepot.services import Services
from tests.support.githttp import GitHttpServer
from tests.support.seed import seed_mirror

OWNER = "test-upstream"


def run(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


def commit(work: Path, message: str) -> str:
    (work / "file.txt").write_text(message)
    run("add", "file.txt", cwd=work)
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message, cwd=work)
    return run("rev-parse", "HEAD", cwd=work)


def counts(repo: Path, left: str, right: str) -> tuple[int, int]:
    ahead, behind = run(
        "--git-dir", str(repo), "rev-list", "--left-right", "--count", f"{left}...{right}"
    ).split()
    return int(ahead), int(behind)


@pytest.fixture
def upstream(git_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A served bare repository `up.git` with `master` and `release/1`, and a work tree."""
    work = tmp_path / "work"
    run("init", "-q", "-b", "master", str(work))
    for i in range(3):
        commit(work, f"base {i}")
    run("branch", "release/1", cwd=work)
    bare = git_root / "up.git"
    run("clone", "-q", "--bare", str(work), str(bare))
    run("remote", "add", "origin", str(bare), cwd=work)
    return bare, work


async def test_a_mapped_and_globbed_upstream_is_counted_like_rev_list(
    services: Services, git_server: GitHttpServer, upstream: tuple[Path, Path], tmp_path: Path
) -> None:
    bare, work = upstream
    fork = await seed_mirror(services, "acme/fork", source=bare)
    mirror = services.storage.path(fork.id)
    # The fork moves on: one commit of its own on main (cloned from master).
    fork_work = tmp_path / "fork"
    run("clone", "-q", str(mirror), str(fork_work))
    commit(fork_work, "fork only")
    run("push", "-q", "origin", "HEAD:refs/heads/master", cwd=fork_work)
    # Upstream moves on: two commits on master, one on release/1 and a new release/2.
    commit(work, "up 1")
    commit(work, "up 2")
    run("push", "-q", "origin", "master", cwd=work)
    run("checkout", "-q", "release/1", cwd=work)
    commit(work, "rel 1")
    run("push", "-q", "origin", "release/1", "release/1:release/2", cwd=work)
    run("tag", "v9", cwd=work)  # a tag in the tracked history: not fetched
    run("push", "-q", "origin", "v9", cwd=work)

    await services.branches.set_upstream(
        operator(), "acme/fork", url=git_server.url("up.git"), branches=["master", "release/*"]
    )
    assert await services.branches.claim("test", 5) == [(fork.id, "127.0.0.1")]  # asked for at once
    outcome = await services.branches.refresh("test", fork.id)
    assert outcome.error is None, outcome.error
    status = await services.branches.sync_status(operator(), "acme/fork")
    rows = {(b.branch, b.upstream_branch): b for b in status.branches}
    assert set(rows) == {
        ("master", "master"),
        ("release/1", "release/1"),
        ("release/2", "release/2"),
    }
    master = rows[("master", "master")]
    copy = services.storage.upstream_path(fork.id)
    assert (
        (master.ahead, master.behind)
        == counts(copy, "refs/heads/master", "refs/upstream/master")
        == (1, 2)
    )
    assert master.diverged and master.needs_pull and master.needs_push
    assert rows[("release/1", "release/1")].behind == 1
    assert (
        rows[("release/2", "release/2")].missing
        and rows[("release/2", "release/2")].local_sha is None
    )
    # Nothing of the upstream is in the mirror: no ref, not even its objects (protocol
    # v2's upload-pack would hand out any object it has by id).
    assert run("--git-dir", str(mirror), "for-each-ref", "refs/upstream/") == ""
    assert run("--git-dir", str(copy), "for-each-ref", "refs/tags/") == ""
    assert master.upstream_sha is not None
    missing = subprocess.run(
        ["git", "--git-dir", str(mirror), "cat-file", "-e", master.upstream_sha], check=False
    )
    assert missing.returncode != 0
    # Hidden from clients: the branch listing shows only refs/heads.
    listed = await internal_reads.branch_page(services, operator(), "acme/fork")
    assert {b.name for b in listed.items} == {"master", "release/1"}
    assert status.upstream is not None and status.upstream.last_fetch_ms is not None


async def test_set_upstream_refuses_bad_specs(
    services: Services, upstream: tuple[Path, Path], git_server: GitHttpServer
) -> None:
    bare, _ = upstream
    await seed_mirror(services, "acme/fork", source=bare)
    with pytest.raises(InvalidInput) as refused:
        await services.branches.set_upstream(
            operator(), "acme/fork", url=git_server.url("up.git"), branches=["a:*"]
        )
    assert refused.value.field == "branches"


async def test_a_pair_gone_on_both_sides_keeps_its_row_until_the_janitor_prunes_it(
    services: Services, git_server: GitHttpServer, upstream: tuple[Path, Path]
) -> None:
    bare, work = upstream
    fork = await seed_mirror(services, "acme/fork", source=bare)
    await services.branches.set_upstream(
        operator(), "acme/fork", url=git_server.url("up.git"), branches=["release/*"]
    )
    await services.branches.claim("test", 1)
    assert (await services.branches.refresh("test", fork.id)).error is None
    # release/1 goes on both sides: upstream, and in the mirror.
    run("push", "-q", "origin", ":release/1", cwd=work)
    mirror = services.storage.path(fork.id)
    run("--git-dir", str(mirror), "update-ref", "-d", "refs/heads/release/1")
    async with services.sessions.begin() as session:
        await store.request(session, fork.id, now(), min_gap=0)
    await services.branches.claim("test", 1)
    assert (await services.branches.refresh("test", fork.id)).error is None
    assert (await services.branches.sync_status(operator(), "acme/fork")).branches == []
    async with services.sessions() as session:
        kept = (await session.scalars(select(BranchSyncStatus))).all()
    assert [(row.branch, row.deleted_at is not None) for row in kept] == [("release/1", True)]
    # Within the retention the janitor keeps it; past it, the row goes.
    assert await services.branches.prune_deleted() == 0
    async with services.sessions.begin() as session:
        await session.execute(
            update(BranchSyncStatus).values(deleted_at=now() - timedelta(days=31))
        )
    assert await services.branches.prune_deleted() == 1


async def test_the_org_wide_behind_question_reads_the_partial_index(services: Services) -> None:
    """SQLite's plan for `needs_pull` uses the index that holds only rows behind."""
    if services.engine.dialect.name != "sqlite":
        async with services.engine.connect() as connection:
            plan = await connection.execute(
                text(
                    "EXPLAIN SELECT id FROM branch_sync_status "
                    "WHERE needs_pull = true AND deleted_at IS NULL AND repository_id IN (1, 2)"
                )
            )
            assert plan.all()  # PostgreSQL plans it (its choice depends on the table's size)
        return
    query = store.org_query(select(Repository.id), needs_pull=True, needs_push=None, diverged=None)
    compiled = query.compile(services.engine.sync_engine, compile_kwargs={"literal_binds": True})
    async with services.engine.connect() as connection:
        plan = await connection.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))
        said = " ".join(str(row[-1]) for row in plan.all())
    assert "ix_branch_sync_status_needs_pull" in said, said


async def test_a_glob_matching_more_than_the_limit_fails_the_fetch_saying_so(
    services: Services, git_server: GitHttpServer, upstream: tuple[Path, Path]
) -> None:
    bare, _ = upstream
    fork = await seed_mirror(services, "acme/fork", source=bare)
    head = run("--git-dir", str(bare), "rev-parse", "master")
    lines = "".join(f"create refs/heads/many/{i} {head}\n" for i in range(1001))
    subprocess.run(
        ["git", "--git-dir", str(bare), "update-ref", "--stdin"], input=lines, text=True, check=True
    )
    await services.branches.set_upstream(
        operator(), "acme/fork", url=git_server.url("up.git"), branches=["many/*"]
    )
    await services.branches.claim("test", 1)
    outcome = await services.branches.refresh("test", fork.id)
    assert (
        outcome.error is not None and "1001 upstream branches, more than 1000" in outcome.error[1]
    )
    copy = services.storage.upstream_path(fork.id)
    assert run("--git-dir", str(copy), "for-each-ref", "refs/upstream/") == ""  # nothing fetched
