"""Upgrading to mirrors keyed by id moves each mirror and tells its repository what it holds."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from repodepot.db import migrate
from repodepot.db.base import create_engine
from repodepot.storage import Storage
from tests.support.repogen import Spec, generate, git


async def test_the_name_keyed_mirrors_of_0006_move_to_their_ids(
    tmp_path: Path, database_url: str
) -> None:
    data = tmp_path / "data"
    engine = create_engine(database_url)
    try:
        await migrate.upgrade(engine)
        await migrate.downgrade(engine, "0006")
        async with engine.begin() as connection:
            for key, name, url in (
                (11, "127.0.0.1/acme/app", "https://git.example.com/acme/app.git"),
                (12, "alice/empty", "https://git.example.com/alice/empty.git"),
                (13, "~deleted-13/acme/gone", None),
                (14, "~deleted-14/alice/reused", None),
                (15, "alice/reused", "https://git.example.com/alice/reused.git"),
            ):
                await connection.execute(
                    sa.text(
                        "INSERT INTO repositories (id, name, visibility, source_url, is_empty) "
                        "VALUES (:id, :name, 'private', :url, true)"
                    ),
                    {"id": key, "name": name, "url": url},
                )
            await connection.execute(
                sa.text(
                    "INSERT INTO gitserver_repos (repository_id, clone_status, size_bytes) "
                    "VALUES (11, 'cloned', 4242), (12, 'cloned', 99), (15, 'cloned', 7)"
                )
            )
        old = data / "repos" / "127.0.0.1" / "acme" / "app.git"
        generate(old, Spec(commits=3, default_branch="trunk"))
        head = git("--git-dir", str(old), "rev-parse", "trunk").strip()
        git(
            "init",
            "-q",
            "--bare",
            "--initial-branch=main",
            str(data / "repos" / "alice" / "empty.git"),
        )
        # 15 took the name 14 gave up, and fetched into 14's mirror: it holds 14's objects.
        generate(data / "repos" / "alice" / "reused.git", Spec(commits=2))

        await migrate.upgrade(engine, data_dir=data)
        await migrate.upgrade(engine, data_dir=data)  # again: nothing left to move

        storage = Storage(data)
        assert not old.exists() and not (data / "repos" / "127.0.0.1").exists()
        moved = storage.path(11)
        assert git("--git-dir", str(moved), "rev-parse", "trunk").strip() == head
        assert storage.path(12).is_dir() and sorted(storage.mirror_ids()) == [11, 12]
        assert not (data / "repos" / "alice" / "reused.git").exists()  # not handed on
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    sa.text(
                        "SELECT id, default_branch, is_empty, size_bytes, go_default_root "
                        "FROM repositories ORDER BY id"
                    )
                )
            ).all()
        assert [tuple(row) for row in rows] == [
            (11, "trunk", False, 4242, "git.example.com/acme/app"),
            (12, "main", True, 99, "git.example.com/alice/empty"),
            (13, None, True, 0, None),
            (14, None, True, 0, None),
            (15, None, True, 7, "git.example.com/alice/reused"),
        ]
        async with engine.connect() as connection:
            queued = (
                await connection.execute(
                    sa.text(
                        "SELECT clone_status, queued_priority, queued_reason "
                        "FROM gitserver_repos WHERE repository_id = 15"
                    )
                )
            ).one()
        assert tuple(queued) == ("not_cloned", 0, "new")  # cloned afresh, first
    finally:
        await engine.dispose()
