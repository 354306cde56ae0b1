"""Moves between storage nodes: where a mirror is going, where it came from, and when.

`gitserver_repos.move_to` names the node a mirror is being copied to (NULL: no move);
the copy's owner is still `shard` until one UPDATE flips it. `moved_from` names the node
that held the mirror before its last move or relocation, and `placed_at` says when
`shard` last changed: the old node removes its copy once that is older than the grace
period. Rows from before have neither.

`storage_nodes.drained` keeps an admin's drain through a node's death: a drained node that
comes back is `draining` again, not `active`.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("gitserver_repos") as batch:
        batch.add_column(sa.Column("move_to", sa.String(64), nullable=True))
        batch.add_column(sa.Column("moved_from", sa.String(64), nullable=True))
        batch.add_column(sa.Column("placed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("storage_nodes") as batch:
        batch.add_column(
            sa.Column("drained", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    op.execute("UPDATE storage_nodes SET drained = true WHERE state = 'draining'")
    # The moves in flight: the planner counts them and each node claims its own.
    op.create_index(
        "ix_gitserver_repos_moves",
        "gitserver_repos",
        ["move_to"],
        postgresql_where=sa.text("move_to IS NOT NULL"),
        sqlite_where=sa.text("move_to IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_gitserver_repos_moves", table_name="gitserver_repos")
    with op.batch_alter_table("storage_nodes") as batch:
        batch.drop_column("drained")
    with op.batch_alter_table("gitserver_repos") as batch:
        batch.drop_column("placed_at")
        batch.drop_column("moved_from")
        batch.drop_column("move_to")
