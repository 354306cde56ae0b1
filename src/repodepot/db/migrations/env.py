"""Alembic environment: always driven from `repodepot.db.migrate` with a live connection."""

from __future__ import annotations

from alembic import context

from repodepot.db import models  # noqa: F401  (registers the tables on Base.metadata)
from repodepot.db.base import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite can only ALTER through table copies
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
