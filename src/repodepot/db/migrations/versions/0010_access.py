"""Access: the `internal` visibility, groups, grants, users' code host accounts.

`repositories.visibility` and `import_jobs.visibility` accept `internal`. Loosening a
CHECK constraint on SQLite without rebuilding the table (which would drop its triggers
and, with foreign keys on, cascade the drop to every row that references it) is the
procedure SQLite documents for it (https://www.sqlite.org/lang_altertable.html,
"Making Other Kinds Of Table Schema Changes"): the table's SQL in `sqlite_schema` is
edited in place and the schema version bumped, in one transaction; every existing row
satisfies the looser constraint. PostgreSQL drops and adds the constraint.

Lists page through live repositories by name (`ix_repositories_live_by_name`).

Groups, their members and the grants tell other processes' access caches of a change
as 0009's tables do (group `access`); so do `repo_sources`, which say which repositories
a connection-wide grant covers.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

OLD_CHECK = "CHECK (visibility IN ('private', 'public'))"
NEW_CHECK = "CHECK (visibility IN ('private', 'internal', 'public'))"
VISIBLE = ("repositories", "import_jobs")
# (table, the trigger's event), all in group `access` (see 0009).
WATCHED = tuple(
    (table, event)
    for table in ("groups", "group_members", "repository_grants", "repo_sources")
    for event in ("INSERT", "UPDATE", "DELETE")
)


def _when(name: str, *, nullable: bool = True) -> sa.Column[object]:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if not nullable else None,
    )


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


def upgrade() -> None:
    _set_check(OLD_CHECK, NEW_CHECK)
    op.create_table(
        "groups",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False),
        _when("created_at", nullable=False),
        sa.UniqueConstraint("name", name="uq_groups_name"),
    )
    op.create_table(
        "group_members",
        sa.Column(
            "group_id",
            sa.Integer(),
            sa.ForeignKey("groups.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        _when("created_at", nullable=False),
    )
    op.create_index("ix_group_members_user_id", "group_members", ["user_id"])
    op.create_table(
        "repository_grants",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "repository_id",
            sa.Integer(),
            sa.ForeignKey("repositories.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column(
            "code_host_id",
            sa.Integer(),
            sa.ForeignKey("code_hosts.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.Column(
            "user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column(
            "group_id", sa.Integer(), sa.ForeignKey("groups.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column("role", _enum("grant_role", "read"), nullable=False),
        sa.Column("source", _enum("grant_source", "manual", "codehost"), nullable=False),
        _when("created_at", nullable=False),
        sa.Column(
            "created_by",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column(
            "kept_by",
            sa.Integer(),
            sa.ForeignKey("code_hosts.id", ondelete="CASCADE"),
            nullable=True,
        ),
        sa.CheckConstraint("(user_id IS NULL) <> (group_id IS NULL)", name="one_grantee"),
        sa.CheckConstraint(
            "(source = 'codehost') = (kept_by IS NOT NULL AND user_id IS NOT NULL)",
            name="kept_by_its_connection",
        ),
        sa.CheckConstraint("(repository_id IS NULL) <> (code_host_id IS NULL)", name="one_target"),
        sa.CheckConstraint(
            "code_host_id IS NULL OR group_id IS NOT NULL", name="connection_to_group"
        ),
    )
    for name, columns, where in (
        (
            "uq_repository_grants_user",
            ["repository_id", "user_id"],
            "repository_id IS NOT NULL AND user_id IS NOT NULL AND source = 'manual'",
        ),
        (
            "uq_repository_grants_kept",
            ["kept_by", "user_id", "repository_id"],
            "kept_by IS NOT NULL",
        ),
        (
            "uq_repository_grants_group",
            ["repository_id", "group_id", "source"],
            "repository_id IS NOT NULL AND group_id IS NOT NULL",
        ),
        (
            "uq_repository_grants_code_host",
            ["code_host_id", "group_id"],
            "code_host_id IS NOT NULL",
        ),
    ):
        op.create_index(
            name,
            "repository_grants",
            columns,
            unique=True,
            sqlite_where=sa.text(where),
            postgresql_where=sa.text(where),
        )
    op.create_index(
        "ix_repository_grants_user_id", "repository_grants", ["user_id", "repository_id"]
    )
    op.create_index(
        "ix_repository_grants_group_id", "repository_grants", ["group_id", "repository_id"]
    )
    op.create_index("ix_repositories_live_by_name", "repositories", ["deleted_at", "name"])
    op.create_table(
        "code_host_accounts",
        sa.Column(
            "user_id",
            sa.Integer(),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "code_host_id",
            sa.Integer(),
            sa.ForeignKey("code_hosts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("sealed_token", sa.Text(), nullable=False),
        _when("linked_at", nullable=False),
        _when("next_sync_at", nullable=False),
        _when("last_sync_at"),
        sa.Column("last_status", sa.String(16), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        _when("rejected_since"),
        sa.Column("readable", sa.Integer(), server_default="0", nullable=False),
    )
    op.create_index("ix_code_host_accounts_code_host_id", "code_host_accounts", ["code_host_id"])
    op.create_index("ix_code_host_accounts_next_sync_at", "code_host_accounts", ["next_sync_at"])
    _watch()


def downgrade() -> None:
    _unwatch()
    op.drop_table("code_host_accounts")
    op.drop_table("repository_grants")
    op.drop_table("group_members")
    op.drop_table("groups")
    op.drop_index("ix_repositories_live_by_name", "repositories")
    op.execute("UPDATE repositories SET visibility = 'private' WHERE visibility = 'internal'")
    op.execute("UPDATE import_jobs SET visibility = 'private' WHERE visibility = 'internal'")
    _set_check(NEW_CHECK, OLD_CHECK)


def _set_check(old: str, new: str) -> None:
    if op.get_context().dialect.name == "postgresql":
        values = new[new.index("(") :]
        for table in VISIBLE:
            op.execute(f"ALTER TABLE {table} DROP CONSTRAINT ck_{table}_visibility")
            op.execute(f"ALTER TABLE {table} ADD CONSTRAINT ck_{table}_visibility CHECK {values}")
        return
    connection = op.get_bind()
    version = connection.exec_driver_sql("PRAGMA schema_version").scalar_one()
    connection.exec_driver_sql("PRAGMA writable_schema=ON")
    for table in VISIBLE:
        sql = connection.exec_driver_sql(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).scalar_one()
        if old not in sql:
            raise RuntimeError(f"{table}'s visibility constraint is not {old!r}")
        connection.exec_driver_sql(
            "UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
            (sql.replace(old, new), table),
        )
    connection.exec_driver_sql(f"PRAGMA schema_version={version + 1}")
    connection.exec_driver_sql("PRAGMA writable_schema=OFF")


def _watch() -> None:
    op.execute("INSERT INTO cache_epochs (name, epoch) VALUES ('access', 0)")
    if op.get_context().dialect.name == "postgresql":
        for table, event in WATCHED:
            op.execute(
                f"CREATE TRIGGER {table}_cache_{event.lower()} AFTER {event} ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION repodepot_notify_cache('access')"
            )
        return
    for table, event in WATCHED:
        op.execute(
            f"CREATE TRIGGER {table}_cache_{event.lower()} AFTER {event} ON {table} FOR EACH ROW "
            "BEGIN UPDATE cache_epochs SET epoch = epoch + 1 WHERE name = 'access'; END"
        )


def _unwatch() -> None:
    postgres = op.get_context().dialect.name == "postgresql"
    for table, event in WATCHED:
        op.execute(
            f"DROP TRIGGER {table}_cache_{event.lower()}" + (f" ON {table}" if postgres else "")
        )
    op.execute("DELETE FROM cache_epochs WHERE name = 'access'")
