"""Mirrors keyed by the repository's id; fetch credentials kept; one size per repository.

- Each mirror moves from `repos/{name}.git` to `repos/ab/cd/{id}.git` (when the data dir
  is known: `repodepot db upgrade` and `serve` pass it). Each move is one rename; a
  mirror already in place is left alone, so running this again after a crash finishes
  the job. A mirror under a name a deleted repository gave up is removed instead (it
  holds the deleted repository's objects) and its new holder is cloned afresh.
- `repository_credentials`: a repository's own fetch credential (an import's token
  outlives the import), sealed like every other secret.
- The mirror's size moves to `repositories.size_bytes`, the only one left; imported
  repositories get the Go import root their source URL implies; cloned mirrors that
  never told their repository its default branch and emptiness tell it now.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import sqlalchemy as sa
from alembic import op

from repodepot.db.migrations.frozen import default_root, mirror_relpath

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

logger = logging.getLogger(__name__)

repos = sa.table(
    "repositories",
    sa.column("id", sa.Integer()),
    sa.column("name", sa.String()),
    sa.column("source_url", sa.Text()),
    sa.column("go_default_root", sa.String()),
    sa.column("default_branch", sa.String()),
    sa.column("size_bytes", sa.BigInteger()),
    sa.column("is_empty", sa.Boolean()),
)
mirrors = sa.table(
    "gitserver_repos",
    sa.column("repository_id", sa.Integer()),
    sa.column("clone_status", sa.String()),
    sa.column("size_bytes", sa.BigInteger()),
    sa.column("refs_digest", sa.String()),
    sa.column("queued_priority", sa.Integer()),
    sa.column("queued_reason", sa.String()),
)


def upgrade() -> None:
    op.create_table(
        "repository_credentials",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("sealed_token", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(300), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("repository_id", name="pk_repository_credentials"),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name="fk_repository_credentials_repository_id_repositories",
            ondelete="CASCADE",
        ),
    )
    connection = op.get_bind()
    sizes = connection.execute(
        sa.select(mirrors.c.repository_id, mirrors.c.size_bytes).where(
            mirrors.c.clone_status == "cloned"
        )
    ).all()
    for repository_id, size in sizes:
        connection.execute(
            repos.update().where(repos.c.id == repository_id).values(size_bytes=size)
        )
    with op.batch_alter_table("gitserver_repos") as batch:
        batch.drop_column("size_bytes")
    rows = connection.execute(
        sa.select(repos.c.id, repos.c.name, repos.c.source_url, repos.c.go_default_root)
    ).all()
    for row in rows:
        root = default_root(row.source_url)
        if row.go_default_root is None and root is not None:
            connection.execute(
                repos.update().where(repos.c.id == row.id).values(go_default_root=root)
            )
    config = op.get_context().config
    data_dir = config.attributes.get("data_dir") if config is not None else None
    if data_dir is None:
        return  # a schema-only upgrade (tests); `serve` and `db upgrade` always give one
    cloned = {repository_id for repository_id, _ in sizes}
    # A name a deleted repository gave up (its row renamed `~deleted-{id}/{name}`) went
    # on to a new repository that fetched into the same directory: it holds the deleted
    # one's objects too. It is not handed on; the holder is cloned afresh.
    given_up = {row.name.split("/", 1)[1] for row in rows if row.name.startswith("~deleted-")}
    for row in rows:
        if row.name in given_up:
            _discard(Path(data_dir) / "repos", row.name)
            connection.execute(
                mirrors.update()
                .where(mirrors.c.repository_id == row.id)
                .values(
                    clone_status="not_cloned",
                    refs_digest=None,
                    queued_priority=0,
                    queued_reason="new",
                )
            )
            continue
        moved = _move(Path(data_dir) / "repos", row.id, row.name)
        if moved is not None and row.id in cloned:
            branch, empty = _head(moved)
            connection.execute(
                repos.update()
                .where(repos.c.id == row.id)
                .values(default_branch=branch, is_empty=empty)
            )


def _legacy(repos_dir: Path, name: str) -> Path | None:
    """Where a mirror of `name` was kept before 0007, if it is a real directory there."""
    old = repos_dir / f"{name}.git"
    if ".." in name or name.startswith("/") or not old.is_dir() or old.is_symlink():
        return None
    return old


def _discard(repos_dir: Path, name: str) -> None:
    old = _legacy(repos_dir, name)
    if old is not None:
        shutil.rmtree(old)
        logger.warning("removed the mirror of %s: it held a deleted repository's objects", name)


def _move(repos_dir: Path, repository_id: int, name: str) -> Path | None:
    """Move the mirror of `name` to its id's place; returns where it is now, if anywhere."""
    final = repos_dir / mirror_relpath(repository_id)
    if final.is_dir():
        return final
    old = _legacy(repos_dir, name)
    if old is None:
        return None
    final.parent.mkdir(parents=True, exist_ok=True)
    os.rename(old, final)
    logger.info("moved the mirror of %s to %s", name, final)
    parent = old.parent
    while parent != repos_dir:  # the owner directories left empty
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent
    return final


def _head(git_dir: Path) -> tuple[str | None, bool]:
    """(default branch, whether it has no refs), read from git's files (no process)."""
    try:
        head = (git_dir / "HEAD").read_text().strip()
    except OSError:
        head = ""
    branch = head.removeprefix("ref: refs/heads/") if head.startswith("ref: refs/heads/") else None
    packed = git_dir / "packed-refs"
    try:
        listed = any(
            line and not line.startswith(("#", "^")) for line in packed.read_text().splitlines()
        )
    except OSError:
        listed = False
    loose = any(files for _root, _dirs, files in os.walk(git_dir / "refs"))
    return branch, not (listed or loose)


def downgrade() -> None:
    op.drop_table("repository_credentials")
    with op.batch_alter_table("gitserver_repos") as batch:
        batch.add_column(sa.Column("size_bytes", sa.BigInteger(), server_default="0"))
