"""What one sync did and cost: the record the syncer returns and the history keeps."""

from __future__ import annotations

from dataclasses import dataclass, field

from repodepot.db.models import SyncStatus


@dataclass(slots=True)
class SyncOutcome:
    """What one sync did and cost."""

    status: SyncStatus = SyncStatus.success
    yielded: int = 0
    added: int = 0
    modified: int = 0
    deleted: int = 0
    unchanged: int = 0
    held: int = 0
    skipped: int = 0
    api_calls: int = 0
    not_modified: int = 0
    duration_ms: int = 0
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    held_ids: list[int] = field(default_factory=list)
    applied_digest: str | None = None  # set when this sync applied a complete listing
