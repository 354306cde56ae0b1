"""Storage nodes: the gitserver processes that hold mirrors, their state and heartbeat.

`storage_nodes` has one row per node, by name (`REPODEPOT_NODE_NAME`, formerly
`REPODEPOT_SHARD`): its internal URL, `active|draining|dead`, its weight (CHECK > 0),
its last heartbeat and free disk. `gitserver_repos.shard` keeps the owning node's name.

Every name a mirror row already carries becomes a node, active and heartbeating as of
the upgrade: its repositories have an owner the registry knows, and a name no process
answers to any more is marked dead once `node_dead_after` passes without a heartbeat.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _when(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def upgrade() -> None:
    op.create_table(
        "storage_nodes",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("url", sa.String(300), nullable=True),
        sa.Column(
            "state",
            sa.Enum(
                "active",
                "draining",
                "dead",
                name="node_state",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            server_default="active",
            nullable=False,
        ),
        sa.Column("weight", sa.Float(), server_default="1", nullable=False),
        _when("heartbeat_at"),
        sa.Column("free_bytes", sa.BigInteger(), nullable=True),
        _when("registered_at"),
        sa.CheckConstraint("weight > 0", name="weight_positive"),
    )
    op.execute("INSERT INTO storage_nodes (name) SELECT DISTINCT shard FROM gitserver_repos")


def downgrade() -> None:
    op.drop_table("storage_nodes")
