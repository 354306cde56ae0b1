"""A repository page's git answers (log, dated tags) are kept while the mirror's refs are
unchanged, and a change to a branch, HEAD or a tag shows at once."""

from __future__ import annotations

import os
import time
from collections import Counter
from pathlib import Path
from typing import cast

from repodepot.git.refstate import SETTLED
from repodepot.git.runner import GitRunner
from repodepot.gitserver.history import History
from repodepot.gitserver.reads import Reads
from repodepot.settings import process_path
from tests.support.histories import History as Layout


class OneMirror:
    """Reads as History uses it: the mirror directory of a repository."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mirror_dir(self, repository_id: int, name: str) -> Path:
        return self.path


def settle(repo: Path) -> None:
    """Date the refs' last change back past SETTLED, standing in for a second's wait."""
    past = time.time() - SETTLED - 5
    paths = [repo / name for name in ("packed-refs", "HEAD") if (repo / name).exists()]
    paths += [Path(directory) for directory, _, _ in os.walk(repo / "refs")]
    for path in paths:
        os.utime(path, (past, past))


def history(tmp_path: Path, repo: Path, started: Counter[str]) -> History:
    def observe(command: str, outcome: str, _seconds: float) -> None:
        if outcome != "started":
            started[command] += 1

    runner = GitRunner(runtime_dir=tmp_path / "run", path=process_path(), observer=observe)
    # Git's answers are what is kept here; the in-process reader would start none.
    return History(git=runner, reads=cast(Reads, OneMirror(repo)), in_process=False)


def laid_out(tmp_path: Path) -> Layout:
    """main with three commits and two tags, and a branch `side` off its first commit."""
    layout = Layout(tmp_path / "r.git")
    made = layout.line("main", 3)
    layout.branch("main", made[-1])
    layout.branch("side", layout.commit("side", made[0]))
    layout.git("tag", "v1.0.0", made[0])
    layout.git("tag", "-a", "-m", "annotated", "v1.1.0", made[1])
    return layout


def fetched(layout: Layout, branch: str) -> str:
    """A new commit on `branch`, as a fetch brings it; its sha."""
    sha = layout.commit("fetched later", layout.git("rev-parse", branch))
    layout.branch(branch, sha)
    return sha


def settled(tmp_path: Path) -> tuple[Layout, History, Counter[str]]:
    """The laid-out mirror, settled; History over it; the git commands it started."""
    layout = laid_out(tmp_path)
    started: Counter[str] = Counter()
    reads = history(tmp_path, layout.path, started)
    settle(layout.path)
    return layout, reads, started


async def test_the_log_is_asked_of_git_once_while_the_refs_stay_and_again_when_they_move(
    tmp_path: Path,
) -> None:
    layout, reads, started = settled(tmp_path)

    first = await reads.commits(1, "r", None, 20)
    assert [await reads.commits(1, "r", None, 20) for _ in range(5)] == [first] * 5
    assert started["log"] == 1

    newest = fetched(layout, "main")  # a branch moved
    assert (await reads.commits(1, "r", None, 20))[0].sha == newest
    assert (await reads.commits(1, "r", None, 20))[0].sha == newest  # changed just now: asked
    assert started["log"] == 3

    layout.git("symbolic-ref", "HEAD", "refs/heads/side")  # HEAD moved
    assert (await reads.commits(1, "r", None, 20))[0].sha == layout.git("rev-parse", "side")

    settle(layout.path)
    layout.git("pack-refs", "--all")  # the same refs, packed
    assert (await reads.commits(1, "r", "main", 20))[0].sha == newest


async def test_a_new_or_moved_tag_shows_at_once_and_a_branch_moving_keeps_the_tags(
    tmp_path: Path,
) -> None:
    layout, reads, started = settled(tmp_path)

    before = await reads.tags(1, "r")
    assert [tag.name for tag in before] == ["v1.1.0", "v1.0.0"]
    fetched(layout, "main")
    assert await reads.tags(1, "r") == before  # only refs/heads changed
    assert started["for-each-ref"] == 1

    layout.git("tag", "v9.0.0", "main")
    assert "v9.0.0" in [tag.name for tag in await reads.tags(1, "r")]
    settle(layout.path)
    layout.git("tag", "-d", "v9.0.0")
    assert "v9.0.0" not in [tag.name for tag in await reads.tags(1, "r")]
