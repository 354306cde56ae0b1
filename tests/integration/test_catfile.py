"""Commits read through a long-lived `git cat-file --batch`: the same answers as `git log`."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from repodepot.git.errors import RevisionNotFound
from repodepot.git.runner import GitRunner
from repodepot.gitserver.catfile import CommitReader
from repodepot.metrics import Metrics
from repodepot.settings import process_path
from tests.integration.test_updater import advance
from tests.support.repogen import Spec, generate, git

FORMAT = "--format=%H%x00%an%x00%ae%x00%aI%x00%s"


def _runner(tmp_path: Path) -> GitRunner:
    return GitRunner(runtime_dir=tmp_path / "run", path=process_path(), allowed_schemes=("http",))


def logged(repo: Path, rev: str) -> tuple[str, ...]:
    return tuple(git("--git-dir", str(repo), "log", "-1", FORMAT, rev).rstrip("\n").split("\0"))


# A commit by full id is read in-process first (`git.packs`); everything else, and any
# commit when that is off, from the pool's `cat-file --batch`: both must answer as git.
BOTH_WAYS = pytest.mark.parametrize("in_process", [True, False], ids=["in-process", "pool"])


@BOTH_WAYS
async def test_answers_equal_git_log_and_refuse_what_is_not_a_commit(
    tmp_path: Path, in_process: bool
) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=5, tags=2, branches=2))
    reader = CommitReader(_runner(tmp_path), in_process=in_process)
    try:
        head = git("--git-dir", str(repo), "rev-parse", "main").strip()
        for rev in ("main", head, head[:10], "HEAD", "main~2", "v1.0.0"):
            info = await reader.commit(repo, rev)
            expected = logged(repo, rev)
            got = (info.sha, info.author_name, info.author_email, info.authored_at, info.subject)
            assert got == expected, rev

        tree = git("--git-dir", str(repo), "rev-parse", "main^{tree}").strip()
        # Message searches, paths, ranges and reflogs are not asked of git at all.
        refused = ("main^{/.}", ":/.", "HEAD^{/(a*)*\\1x}", "HEAD:dir00", "main@{0}", "x" * 300)
        for rev in (
            *refused,
            "nope",
            "--output=/tmp/x",
            "HEAD~10",
            "main~1..main",
            tree,
            "a\nmain",
            "",
        ):
            with pytest.raises(RevisionNotFound):
                await reader.commit(repo, rev)
    finally:
        await reader.close()


@BOTH_WAYS
async def test_a_multi_line_subject_and_a_time_zone_read_as_git_shows_them(
    tmp_path: Path, in_process: bool
) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=2))
    base = ["--git-dir", str(repo)]
    tree = git(*base, "rev-parse", "main^{tree}").strip()
    message = "first line\nsecond line  \n\nbody text\n"
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Zoë Example",
        "GIT_AUTHOR_EMAIL": "zoe@example.com",
        "GIT_AUTHOR_DATE": "2021-03-04T05:06:07-0930",
        "GIT_COMMITTER_NAME": "C",
        "GIT_COMMITTER_EMAIL": "c@example.com",
    }
    sha = subprocess.run(
        ["git", *base, "commit-tree", tree, "-p", "main"],
        input=message,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    reader = CommitReader(_runner(tmp_path), in_process=in_process)
    try:
        info = await reader.commit(repo, sha)
    finally:
        await reader.close()
    assert (info.sha, info.author_name, info.author_email, info.authored_at, info.subject) == (
        logged(repo, sha)
    )


async def test_a_moved_branch_is_seen_by_the_open_process(tmp_path: Path) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=3))
    reader = CommitReader(_runner(tmp_path), in_process=False)
    try:
        before = await reader.commit(repo, "main")
        new = advance(repo, "after the process started")
        git("--git-dir", str(repo), "pack-refs", "--all")  # packed-refs rewritten too
        newer = advance(repo, "and once more")
        after, by_sha = await asyncio.gather(reader.commit(repo, "main"), reader.commit(repo, new))
    finally:
        await reader.close()
    assert before.sha != after.sha
    assert (after.sha, after.subject) == (newer, "and once more")
    assert by_sha.subject == "after the process started"


async def test_a_repack_replaces_the_reader_that_may_hold_deleted_packs(tmp_path: Path) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=5))
    reader = CommitReader(_runner(tmp_path), in_process=False)
    try:
        head = git("--git-dir", str(repo), "rev-parse", "main").strip()
        await reader.commit(repo, head)
        await reader.commit(repo, "main~1")
        [before] = reader.readers()

        git("--git-dir", str(repo), "repack", "-a", "-d", "-q")
        info = await reader.commit(repo, head)

        [after] = reader.readers()
        assert info.sha == head
        assert after.pid != before.pid
    finally:
        await reader.close()


async def test_a_commit_by_full_id_starts_no_process_and_a_fetched_one_is_seen(
    tmp_path: Path,
) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=5, tags=1))
    metrics = Metrics()
    reader = CommitReader(_runner(tmp_path), observer=metrics)
    try:
        for rev in git("--git-dir", str(repo), "rev-list", "main").split():
            assert (await reader.commit(repo, rev)).sha == rev
        assert reader.readers() == []  # no cat-file started

        newest = advance(repo, "fetched later")  # a loose object, after the packs
        assert (await reader.commit(repo, newest)).sha == newest
        assert reader.readers() == []
        assert (await reader.commit(repo, "main")).sha == newest  # a name: asked of git
        assert len(reader.readers()) == 1
        with pytest.raises(RevisionNotFound):  # an id it cannot find: git has the last word
            await reader.commit(repo, "0" * 40)
    finally:
        await reader.close()
    reads = metrics.render().decode()
    assert 'repodepot_commit_reads_total{by="in-process"} 6.0' in reads
    assert 'repodepot_commit_reads_total{by="git"} 2.0' in reads
