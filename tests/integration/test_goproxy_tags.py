"""The tag listing behind `@v/list` is kept only while the refs stay as they were."""

from __future__ import annotations

import os
import time
from pathlib import Path

from repodepot.git.refstate import SETTLED
from repodepot.git.runner import GitRunner
from repodepot.goproxy.tags import TagLister
from repodepot.settings import process_path
from tests.support.repogen import Spec, generate, git


def _settle(repo: Path) -> None:
    """Date the tag refs' last change back past SETTLED, as if that much time had passed.

    The lister reads when the refs last changed from packed-refs and the directories under
    refs/tags; moving those times back stands in for waiting, without sleeping.
    """
    past = time.time() - SETTLED - 5
    paths = [repo / "packed-refs"] if (repo / "packed-refs").exists() else []
    for directory, _, _ in os.walk(repo / "refs" / "tags"):
        paths.append(Path(directory))
    for path in paths:
        os.utime(path, (past, past))


async def test_a_kept_listing_is_dropped_when_a_tag_is_added_moved_or_packed(
    tmp_path: Path,
) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=5, tags=2))
    lister = TagLister(GitRunner(runtime_dir=tmp_path / "run", path=process_path()))
    fresh = await lister.tags(repo)
    assert [name for name, _ in fresh] == ["v1.0.0", "v1.1.0"]
    assert await lister.tags(repo) is not fresh  # changed a moment ago: not kept yet

    _settle(repo)
    kept = await lister.tags(repo)
    assert await lister.tags(repo) is kept

    head = git("--git-dir", str(repo), "rev-parse", "main~1").strip()
    for change in (
        ["tag", "v2.0.0", head],
        ["tag", "-f", "v1.0.0", head],
        ["tag", "sub/dir/v0.1.0", head],
        ["pack-refs", "--all"],
    ):
        git("--git-dir", str(repo), *change)
        listed = await lister.tags(repo)
        assert listed is not kept, change
        _settle(repo)
        kept = await lister.tags(repo)
        assert await lister.tags(repo) is kept, change
    assert dict(kept) == {
        "v1.0.0": head,
        "v1.1.0": git("--git-dir", str(repo), "rev-parse", "v1.1.0").strip(),
        "v2.0.0": head,
        "sub/dir/v0.1.0": head,
    }
