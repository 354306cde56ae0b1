"""Whether the database may have changed, told without a query: for loops that sleep.

On SQLite every commit, by any process, writes the `-wal` file (or, outside WAL, the
database file): their sizes and modification times change. An idle loop looks at them
(two `stat` calls) instead of asking the database, and asks only when they moved. On
PostgreSQL there are no files to look at: the loops are woken by notifications instead
(LISTEN/NOTIFY through the event relay), and `changed()` is always false.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url

Signature = tuple[tuple[int, int] | None, ...]


class DatabaseWatch:
    """`changed()`: whether the database's files moved since the last call."""

    def __init__(self, url: str) -> None:
        database = make_url(url).database if url.startswith("sqlite") else None
        self._files: tuple[Path, ...] = ()
        if database and database != ":memory:":
            path = Path(database)
            self._files = (path, path.with_name(path.name + "-wal"))
        self._always = url.startswith("sqlite") and not self._files  # a database with no file
        self._last: Signature | None = None

    def changed(self) -> bool:
        """True when a commit may have happened since the last call (the first call: True)."""
        if self._always:
            return True
        if not self._files:
            return False
        signature = tuple(_stat(path) for path in self._files)
        moved = signature != self._last
        self._last = signature
        return moved


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except FileNotFoundError:
        return None
    return status.st_mtime_ns, status.st_size
