"""Go import roots of repositories; the versions the Go module proxy has served (pins).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from repodepot.db.migrations.frozen import default_root

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("repositories", sa.Column("go_import_root", sa.String(500), nullable=True))
    op.add_column("repositories", sa.Column("go_default_root", sa.String(500), nullable=True))
    op.create_index("ix_repositories_go_import_root", "repositories", ["go_import_root"])
    op.create_index("ix_repositories_go_default_root", "repositories", ["go_default_root"])
    repos = sa.table(
        "repositories",
        sa.column("id", sa.Integer()),
        sa.column("source_url", sa.Text()),
        sa.column("go_default_root", sa.String()),
    )
    connection = op.get_bind()
    rows = connection.execute(sa.select(repos.c.id, repos.c.source_url)).all()
    for row in rows:
        root = default_root(row.source_url)
        if root is not None:
            connection.execute(
                repos.update().where(repos.c.id == row.id).values(go_default_root=root)
            )
    op.create_table(
        "go_versions",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("module", sa.String(500), nullable=False),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("commit", sa.String(40), nullable=False),
        sa.Column("commit_time", sa.BigInteger(), nullable=False),
        sa.Column("ref", sa.String(500), nullable=False),
        sa.Column("subdir", sa.String(500), nullable=False),
        sa.Column("first_served_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("moved_to", sa.String(40), nullable=True),
        sa.Column("moved_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("repository_id", "module", "version", name="pk_go_versions"),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name="fk_go_versions_repository_id_repositories",
            ondelete="CASCADE",
        ),
    )


def downgrade() -> None:
    op.drop_table("go_versions")
    op.drop_index("ix_repositories_go_default_root", "repositories")
    op.drop_index("ix_repositories_go_import_root", "repositories")
    op.drop_column("repositories", "go_default_root")
    op.drop_column("repositories", "go_import_root")
