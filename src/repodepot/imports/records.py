"""An import job as the worker and the service hand it to each other: a frozen record.

The broker and the API carry jobs as JSON-able events (`as_event`); inside the import
code a job is this record, built from its row or from an event, never a loose dict.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime
from typing import Any

from repodepot.db.models import ImportStatus, Visibility
from repodepot.events import Event


@dataclass(frozen=True, kw_only=True, slots=True)
class ImportJobRecord:
    """One import job, every column of its row."""

    id: int
    url: str
    owner: str
    slug: str
    target: str
    visibility: Visibility
    requested_by: int | None
    has_secret: bool
    status: ImportStatus
    phase: str
    percent: float
    received_objects: int
    total_objects: int
    received_bytes: int
    resolved_deltas: int
    total_deltas: int
    throughput: float
    eta_seconds: float | None
    error: str | None
    attempt: int
    worker_id: str | None
    seq: int
    heartbeat_at: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    repository_id: int | None

    @classmethod
    def from_row(cls, row: object) -> ImportJobRecord:
        """The record of an `import_jobs` row, its columns read by name.

        Only `imports.service`, the table's owner, has such rows to give.
        """
        return cls(**{field.name: getattr(row, field.name) for field in fields(cls)})

    @classmethod
    def from_event(cls, event: Event) -> ImportJobRecord:
        """The record of an event `as_event` made (or a NOTIFY of the row)."""
        values: dict[str, Any] = {}
        for field in fields(cls):
            value = event.get(field.name)
            if field.name in _TIMES and isinstance(value, str):
                value = datetime.fromisoformat(value)
            values[field.name] = value
        values["status"] = ImportStatus(values["status"])
        values["visibility"] = Visibility(values["visibility"])
        return cls(**values)

    def with_values(self, values: dict[str, Any]) -> ImportJobRecord:
        """A copy with some columns changed (those of `values` that are columns)."""
        return replace(self, **{key: value for key, value in values.items() if key in _NAMES})

    def as_event(self) -> Event:
        """The JSON-able event every layer passes around (datetimes in ISO 8601)."""
        return {key: _jsonable(value) for key, value in asdict(self).items()}

    def ms_since_start(self, now: datetime) -> int | None:
        """Milliseconds from the job's start to `now` (None if it never started)."""
        if self.started_at is None:
            return None
        return int((now - self.started_at).total_seconds() * 1000)


_NAMES = frozenset(field.name for field in fields(ImportJobRecord))
_TIMES = frozenset(("heartbeat_at", "created_at", "started_at", "finished_at"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return value
