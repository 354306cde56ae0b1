"""Cache changes: what tells every process that identity or repository rows changed.

PostgreSQL: a statement trigger per table sends a NOTIFY (topic `cache`, the group's
name) that each process's event relay hands to its caches. SQLite has no NOTIFY: row
triggers bump the group's counter in `cache_epochs`, which each process compares at
most once a second (repodepot.caches).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# (table, the trigger's event, group); an UPDATE OF lists the columns that matter.
WATCHED = (
    ("users", "UPDATE", "identity"),
    ("users", "DELETE", "identity"),
    ("api_tokens", "UPDATE OF revoked_at, user_id", "identity"),
    ("api_tokens", "DELETE", "identity"),
    ("sessions", "UPDATE OF revoked_at, expires_at, user_id, token_id", "identity"),
    ("sessions", "DELETE", "identity"),
    ("repositories", "INSERT", "repositories"),
    ("repositories", "UPDATE", "repositories"),
    ("repositories", "DELETE", "repositories"),
)

NOTIFY_FUNCTION = """
CREATE FUNCTION repodepot_notify_cache() RETURNS trigger AS $$
BEGIN
  PERFORM pg_notify('repodepot_events',
                    json_build_object('topic', 'cache', 'data', TG_ARGV[0])::text);
  RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""


def _name(table: str, event: str) -> str:
    return f"{table}_cache_{event.split()[0].lower()}"


def upgrade() -> None:
    op.create_table(
        "cache_epochs",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("epoch", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_cache_epochs"),
    )
    op.execute("INSERT INTO cache_epochs (name, epoch) VALUES ('identity', 0), ('repositories', 0)")
    if op.get_context().dialect.name == "postgresql":
        op.execute(NOTIFY_FUNCTION)
        for table, event, group in WATCHED:
            op.execute(
                f"CREATE TRIGGER {_name(table, event)} AFTER {event} ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION repodepot_notify_cache('{group}')"
            )
        return
    for table, event, group in WATCHED:
        op.execute(
            f"CREATE TRIGGER {_name(table, event)} AFTER {event} ON {table} FOR EACH ROW "
            f"BEGIN UPDATE cache_epochs SET epoch = epoch + 1 WHERE name = '{group}'; END"
        )


def downgrade() -> None:
    postgres = op.get_context().dialect.name == "postgresql"
    for table, event, _group in WATCHED:
        op.execute(f"DROP TRIGGER {_name(table, event)}" + (f" ON {table}" if postgres else ""))
    if postgres:
        op.execute("DROP FUNCTION repodepot_notify_cache()")
    op.drop_table("cache_epochs")
