"""Batching for statements with many parameters: one helper, no domain knowledge."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

# Ids or names per statement: under SQLite's and PostgreSQL's parameter limits.
BATCH = 500
T = TypeVar("T")


def chunks(items: Sequence[T], size: int = BATCH) -> Iterator[Sequence[T]]:
    """`items` in slices of at most `size` (statement parameter limits)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
