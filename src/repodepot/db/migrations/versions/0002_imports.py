"""Import jobs, their encrypted secrets, the audit log; NOTIFY on job changes (PostgreSQL).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

LIVE = "status IN ('pending', 'running')"

# Every change to a job reaches other processes without a statement from the app:
# the trigger sends the row itself (error text cut so the payload stays under 8000 bytes).
NOTIFY_FUNCTION = """
CREATE FUNCTION repodepot_notify_import() RETURNS trigger AS $$
DECLARE
  row jsonb := to_jsonb(NEW);
BEGIN
  IF NEW.error IS NOT NULL THEN
    row := jsonb_set(row, '{error}', to_jsonb(left(NEW.error, 2000)));
  END IF;
  PERFORM pg_notify('repodepot_events',
                    json_build_object('topic', 'import:' || NEW.id, 'data', row)::text);
  IF TG_OP = 'INSERT' THEN
    PERFORM pg_notify('repodepot_events',
                      json_build_object('topic', 'imports:queued', 'data', row)::text);
  END IF;
  RETURN NULL;
END;
$$ LANGUAGE plpgsql
"""
NOTIFY_TRIGGER = """
CREATE TRIGGER import_jobs_notify AFTER INSERT OR UPDATE ON import_jobs
FOR EACH ROW EXECUTE FUNCTION repodepot_notify_import()
"""


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


def _ts(name: str, **kwargs: object) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), **kwargs)  # type: ignore[arg-type]


def upgrade() -> None:
    op.create_table(
        "import_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("slug", sa.String(100), nullable=False),
        sa.Column("target", sa.String(201), nullable=False),
        sa.Column("visibility", _enum("visibility", "private", "public"), nullable=False),
        sa.Column("requested_by", sa.Integer(), nullable=True),
        sa.Column("has_secret", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column(
            "status",
            _enum("import_status", "pending", "running", "success", "failed", "cancelled"),
            nullable=False,
        ),
        sa.Column("phase", sa.String(40), server_default="queued", nullable=False),
        sa.Column("percent", sa.Float(), server_default="0", nullable=False),
        sa.Column("received_objects", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("total_objects", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("received_bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("resolved_deltas", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("total_deltas", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("throughput", sa.Float(), server_default="0", nullable=False),
        sa.Column("eta_seconds", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), server_default="0", nullable=False),
        sa.Column("worker_id", sa.String(200), nullable=True),
        sa.Column("seq", sa.BigInteger(), server_default="0", nullable=False),
        _ts("heartbeat_at", nullable=True),
        _ts("created_at", server_default=sa.func.now(), nullable=False),
        _ts("started_at", nullable=True),
        _ts("finished_at", nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("repository_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_import_jobs"),
        sa.ForeignKeyConstraint(
            ["requested_by"],
            ["users.id"],
            name="fk_import_jobs_requested_by_users",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name="fk_import_jobs_repository_id_repositories",
            ondelete="SET NULL",
        ),
    )
    op.create_index("ix_import_jobs_status", "import_jobs", ["status"])
    # One live job per target: the database, not a race-prone check, says 409.
    op.create_index(
        "uq_import_jobs_live_target",
        "import_jobs",
        ["target"],
        unique=True,
        sqlite_where=sa.text(LIVE),
        postgresql_where=sa.text(LIVE),
    )
    op.create_table(
        "import_secrets",
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("username", sa.Text(), nullable=False),
        sa.Column("sealed_token", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("job_id", name="pk_import_secrets"),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["import_jobs.id"],
            name="fk_import_secrets_job_id_import_jobs",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        _ts("at", server_default=sa.func.now(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("target", sa.String(255), nullable=False),
        sa.Column("details", sa.Text(), server_default="{}", nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
        sa.ForeignKeyConstraint(
            ["actor_id"], ["users.id"], name="fk_audit_log_actor_id_users", ondelete="SET NULL"
        ),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    if op.get_context().dialect.name == "postgresql":
        op.execute(NOTIFY_FUNCTION)
        op.execute(NOTIFY_TRIGGER)


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("DROP TRIGGER import_jobs_notify ON import_jobs")
        op.execute("DROP FUNCTION repodepot_notify_import()")
    op.drop_table("audit_log")
    op.drop_table("import_secrets")
    op.drop_table("import_jobs")
