"""Branch status: a repository's upstream and each tracked branch's counts against it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _when(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column[object]:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if now else None,
    )


def upgrade() -> None:
    op.create_table(
        "upstream_syncs",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("upstream_repository_id", sa.Integer(), nullable=True),
        sa.Column("branches", sa.Text(), nullable=False),
        sa.Column("automatic", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("dismissed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("generation", sa.Integer(), server_default="0", nullable=False),
        sa.Column("username", sa.Text(), nullable=True),
        sa.Column("sealed_token", sa.Text(), nullable=True),
        sa.Column("token_origin", sa.String(300), nullable=True),
        sa.Column("interval_seconds", sa.Float(), server_default="900", nullable=False),
        _when("created_at", nullable=False, now=True),
        _when("updated_at", nullable=False, now=True),
        _when("next_fetch_at", nullable=False, now=True),
        sa.Column("requested", sa.Boolean(), server_default=sa.false(), nullable=False),
        _when("last_fetched_at"),
        _when("last_attempt_at"),
        _when("last_changed_at"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("error_kind", sa.String(16), nullable=True),
        sa.Column("failures", sa.Integer(), server_default="0", nullable=False),
        sa.Column("network_ms", sa.Integer(), nullable=True),
        sa.Column("pack_ms", sa.Integer(), nullable=True),
        sa.Column("refs_ms", sa.Integer(), nullable=True),
        sa.Column("db_ms", sa.Integer(), nullable=True),
        sa.Column("lease_owner", sa.String(200), nullable=True),
        _when("lease_until"),
        sa.PrimaryKeyConstraint("repository_id", name="pk_upstream_syncs"),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name="fk_upstream_syncs_repository_id_repositories",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["upstream_repository_id"],
            ["repositories.id"],
            name="fk_upstream_syncs_upstream_repository_id_repositories",
            ondelete="SET NULL",
        ),
    )
    op.create_index(
        "ix_upstream_syncs_upstream_repository_id", "upstream_syncs", ["upstream_repository_id"]
    )
    op.create_index("ix_upstream_syncs_next_fetch_at", "upstream_syncs", ["next_fetch_at"])
    op.create_table(
        "branch_sync_status",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("branch", sa.String(255), nullable=False),
        sa.Column("upstream_branch", sa.String(255), nullable=False),
        sa.Column("local_sha", sa.String(40), nullable=True),
        sa.Column("upstream_sha", sa.String(40), nullable=True),
        sa.Column("ahead", sa.Integer(), nullable=True),
        sa.Column("behind", sa.Integer(), nullable=True),
        sa.Column("needs_pull", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("needs_push", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("diverged", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("missing", sa.Boolean(), server_default=sa.false(), nullable=False),
        _when("computed_at", nullable=False),
        _when("deleted_at"),
        sa.PrimaryKeyConstraint("id", name="pk_branch_sync_status"),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["upstream_syncs.repository_id"],
            name="fk_branch_sync_status_repository_id_upstream_syncs",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "repository_id", "branch", "upstream_branch", name="uq_branch_sync_status_branch"
        ),
    )
    op.create_index(
        "ix_branch_sync_status_deleted",
        "branch_sync_status",
        ["deleted_at"],
        sqlite_where=sa.text("deleted_at IS NOT NULL"),
        postgresql_where=sa.text("deleted_at IS NOT NULL"),
    )
    op.create_index(
        "ix_branch_sync_status_needs_pull",
        "branch_sync_status",
        ["repository_id", "branch"],
        sqlite_where=sa.text("needs_pull = 1 AND deleted_at IS NULL"),
        postgresql_where=sa.text("needs_pull = true AND deleted_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("branch_sync_status")
    op.drop_table("upstream_syncs")
