"""An import job crosses the broker as an event and comes back the same record."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from repodepot.db.models import ImportStatus, Visibility
from repodepot.imports.records import ImportJobRecord
from repodepot.imports.service import event_order

STARTED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _record(**changes: object) -> ImportJobRecord:
    values: dict[str, object] = {
        "id": 7,
        "url": "https://example.com/acme/app.git",
        "owner": "acme",
        "slug": "app",
        "target": "acme/app",
        "visibility": Visibility.private,
        "requested_by": 3,
        "has_secret": True,
        "status": ImportStatus.running,
        "phase": "receiving",
        "percent": 41.5,
        "received_objects": 10,
        "total_objects": 20,
        "received_bytes": 1024,
        "resolved_deltas": 0,
        "total_deltas": 5,
        "throughput": 512.0,
        "eta_seconds": 2.0,
        "error": None,
        "attempt": 1,
        "worker_id": "host:1:abcd",
        "seq": 4,
        "heartbeat_at": STARTED,
        "created_at": STARTED,
        "started_at": STARTED,
        "finished_at": None,
        "duration_ms": None,
        "repository_id": None,
        **changes,
    }
    return ImportJobRecord(**values)  # type: ignore[arg-type]


def test_a_record_survives_the_trip_through_json() -> None:
    record = _record()
    event = json.loads(json.dumps(record.as_event()))  # as NOTIFY carries it
    assert event["status"] == "running" and event["started_at"] == STARTED.isoformat()
    assert ImportJobRecord.from_event(event) == record


def test_records_are_frozen_and_changed_by_copy() -> None:
    record = _record()
    with pytest.raises(AttributeError):
        record.seq = 5  # type: ignore[misc]
    done = record.with_values({"status": ImportStatus.success, "seq": 9, "not_a_column": 1})
    assert (done.status, done.seq, record.seq) == (ImportStatus.success, 9, 4)


def test_the_time_since_start() -> None:
    assert _record().ms_since_start(STARTED.replace(second=3)) == 3000
    assert _record(started_at=None).ms_since_start(STARTED) is None


def test_an_end_outranks_any_progress_of_the_same_job() -> None:
    progress = _record(seq=40).as_event()
    cancelled = _record(status=ImportStatus.cancelled, seq=5).as_event()
    assert event_order(cancelled) > event_order(progress)
