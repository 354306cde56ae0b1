"""The time: one function, so every module agrees on UTC and timezone-aware values."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """The current time, UTC, timezone-aware."""
    return datetime.now(UTC)
