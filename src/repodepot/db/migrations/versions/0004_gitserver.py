"""Mirrors on storage nodes, their durable update schedule; code hosts' webhook secrets.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _ts(name: str, **kwargs: object) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), **kwargs)  # type: ignore[arg-type]


def upgrade() -> None:
    op.add_column("code_hosts", sa.Column("sealed_webhook_secret", sa.Text(), nullable=True))
    op.create_table(
        "gitserver_repos",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("shard", sa.String(64), server_default="local", nullable=False),
        sa.Column(
            "clone_status",
            sa.Enum(
                "not_cloned",
                "cloning",
                "cloned",
                "failed",
                name="clone_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            server_default="not_cloned",
            nullable=False,
        ),
        _ts("last_fetched_at", nullable=True),
        _ts("last_changed_at", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("failure_kind", sa.String(16), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("refs_digest", sa.String(64), nullable=True),
        _ts("maintained_at", nullable=True),
        _ts("updated_at", server_default=sa.func.now(), nullable=False),
        sa.Column("interval_seconds", sa.Float(), server_default="0", nullable=False),
        _ts("next_update_at", server_default=sa.func.now(), nullable=False),
        sa.Column("schedule_reason", sa.String(32), server_default="new", nullable=False),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failing", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("queued_priority", sa.Integer(), nullable=True),
        sa.Column("queued_reason", sa.String(16), nullable=True),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        _ts("lease_until", nullable=True),
        sa.PrimaryKeyConstraint("repository_id", name="pk_gitserver_repos"),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name="fk_gitserver_repos_repository_id_repositories",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_gitserver_repos_next_update_at", "gitserver_repos", ["next_update_at"])
    op.create_index(
        "ix_gitserver_repos_queue", "gitserver_repos", ["queued_priority", "next_update_at"]
    )


def downgrade() -> None:
    op.drop_table("gitserver_repos")
    op.drop_column("code_hosts", "sealed_webhook_secret")
