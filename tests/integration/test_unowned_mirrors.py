"""A directory a mirror never finished (a crash's leftover) is never fetched into or merged."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from repodepot.accounts import operator
from repodepot.exceptions import AlreadyExists
from repodepot.services import Services
from repodepot.storage import Storage
from tests.integration.test_updater import mirror_all, run_due
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate, git


async def test_a_leftover_at_a_new_repository_s_place_is_replaced_by_a_clean_clone(
    services: Services, git_root: Path, git_server: GitHttpServer
) -> None:
    generate(git_root / "app.git", Spec(commits=3))
    # SQLite hands a rolled-back id out again: an import that crashed between placing its
    # clone and committing its row left a mirror where the next repository will live.
    leftover = services.storage.path(1)
    generate(leftover, Spec(commits=2, seed=9))
    secret = git("--git-dir", str(leftover), "rev-parse", "main").strip()

    await mirror_all(services, git_server, "app")
    record = await services.repositories.get(operator(), "127.0.0.1/app")
    assert services.storage.path(record.id) == leftover  # the new repository got id 1

    assert len(await run_due(services)) == 1

    head = git("--git-dir", str(git_root / "app.git"), "rev-parse", "main").strip()
    assert git("--git-dir", str(leftover), "rev-parse", "main").strip() == head
    assert not _has_object(leftover, secret)  # cloned afresh, not fetched into the leftover


def _has_object(repo: Path, sha: str) -> bool:
    found = subprocess.run(["git", "--git-dir", str(repo), "cat-file", "-e", sha], check=False)
    return found.returncode == 0


def test_placing_under_a_fresh_id_removes_what_was_left_there(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data")
    storage.prepare()
    generate(storage.path(5), Spec(commits=1, seed=3))
    staged = tmp_path / "staged.git"
    generate(staged, Spec(commits=2))

    with pytest.raises(AlreadyExists):
        storage.place(staged, 5)  # an id already someone's: never replaced
    storage.place(staged, 5, fresh_id=True)

    assert git("--git-dir", str(storage.path(5)), "rev-list", "--count", "main").strip() == "2"
