"""Code host connections, their sync history, repository sources and identity columns.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

SYNC_STATUSES = ("success", "failed", "held", "over_limit")


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


def _ts(name: str, **kwargs: object) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), **kwargs)  # type: ignore[arg-type]


def _count(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.Integer(), server_default="0", nullable=False)


def upgrade() -> None:
    # Plain ADD COLUMNs: SQLite needs no table rebuild, so no foreign key fires.
    op.add_column("repositories", _ts("deleted_at", nullable=True))
    op.add_column("repositories", sa.Column("external_kind", sa.String(16), nullable=True))
    op.add_column("repositories", sa.Column("external_host", sa.String(255), nullable=True))
    op.add_column("repositories", sa.Column("external_id", sa.String(255), nullable=True))
    op.add_column(
        "repositories", sa.Column("fork", sa.Boolean(), server_default=sa.false(), nullable=False)
    )
    op.add_column(
        "repositories",
        sa.Column("archived", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    op.create_index("ix_repositories_deleted_at", "repositories", ["deleted_at"])
    op.create_index(
        "uq_repositories_external",
        "repositories",
        ["external_kind", "external_host", "external_id"],
        unique=True,
    )
    op.create_table(
        "code_hosts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "kind", _enum("code_host_kind", "github", "gitlab", "gitea", "other"), nullable=False
        ),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("sealed_token", sa.Text(), nullable=True),
        _ts("created_at", server_default=sa.func.now(), nullable=False),
        _ts("updated_at", server_default=sa.func.now(), nullable=False),
        _ts("next_sync_at", server_default=sa.func.now(), nullable=False),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        _ts("lease_until", nullable=True),
        _ts("last_sync_at", nullable=True),
        sa.Column("last_status", _enum("sync_status", *SYNC_STATUSES), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("held_deletions", sa.Text(), nullable=True),
        sa.Column("applied_digest", sa.String(64), nullable=True),
        _ts("applied_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_code_hosts"),
        sa.UniqueConstraint("name", name="uq_code_hosts_name"),
    )
    op.create_index("ix_code_hosts_next_sync_at", "code_hosts", ["next_sync_at"])
    op.create_table(
        "code_host_syncs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code_host_id", sa.Integer(), nullable=False),
        _ts("started_at", nullable=False),
        _ts("finished_at", nullable=False),
        sa.Column("status", _enum("sync_status", *SYNC_STATUSES), nullable=False),
        *(
            _count(name)
            for name in (
                "yielded",
                "added",
                "modified",
                "deleted",
                "unchanged",
                "held",
                "skipped",
                "api_calls",
                "not_modified",
            )
        ),
        sa.Column("duration_ms", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("warnings", sa.Text(), server_default="[]", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_code_host_syncs"),
        sa.ForeignKeyConstraint(
            ["code_host_id"],
            ["code_hosts.id"],
            name="fk_code_host_syncs_code_host_id_code_hosts",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_code_host_syncs_code_host_id", "code_host_syncs", ["code_host_id"])
    op.create_table(
        "repo_sources",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("code_host_id", sa.Integer(), nullable=False),
        sa.Column("clone_url", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("repository_id", "code_host_id", name="pk_repo_sources"),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name="fk_repo_sources_repository_id_repositories",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["code_host_id"],
            ["code_hosts.id"],
            name="fk_repo_sources_code_host_id_code_hosts",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_repo_sources_code_host_id", "repo_sources", ["code_host_id"])


def downgrade() -> None:
    op.drop_table("repo_sources")
    op.drop_table("code_host_syncs")
    op.drop_table("code_hosts")
    op.drop_index("uq_repositories_external", "repositories")
    op.drop_index("ix_repositories_deleted_at", "repositories")
    for column in ("archived", "fork", "external_id", "external_host", "external_kind"):
        op.drop_column("repositories", column)
    op.drop_column("repositories", "deleted_at")
