"""The latest-value cell between git's stderr and everyone who wants to know the progress."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from repodepot.events import Event
from repodepot.git.progress import PhaseProgress, ProgressParser

PROGRESS_FIELDS = (
    "phase",
    "percent",
    "received_objects",
    "total_objects",
    "received_bytes",
    "resolved_deltas",
    "total_deltas",
    "throughput",
    "eta_seconds",
)
"""The columns of `import_jobs` that the cell owns while a job runs."""

PUBLISH_INTERVAL = 0.05  # seconds between two published progress states, at most 20 a second

# git's phase → (our phase name, where it starts in the overall bar, how much of the bar it has)
PHASES = {
    "Enumerating objects": ("enumerating", 0.0, 1.0),
    "Counting objects": ("counting", 1.0, 2.0),
    "Compressing objects": ("compressing", 3.0, 2.0),
    "Receiving objects": ("receiving", 5.0, 80.0),
    "Resolving deltas": ("resolving", 85.0, 13.0),
    "Checking connectivity": ("checking", 98.0, 1.5),
    "Checking objects": ("checking", 98.0, 1.5),
    "Updating files": ("checking", 98.0, 1.5),
}


class ProgressCell:
    """Holds one job's newest progress; every change bumps `seq` and calls `on_change`.

    `feed` is called with raw stderr chunks at whatever rate git writes; the
    database sees this cell at most once a second (the worker's writer).
    """

    def __init__(
        self,
        job: Event,
        on_change: Callable[[Event], None],
        clock: Callable[[], float] = time.monotonic,
        min_interval: float = PUBLISH_INTERVAL,
    ) -> None:
        self.job = dict(job)
        self.seq: int = job["seq"]
        self._on_change = on_change
        self._clock = clock
        self._parser = ProgressParser()
        self.last_activity = clock()
        self._receiving_since: float | None = None
        self._min_interval = min_interval
        self._published_at = -min_interval
        self._timer: asyncio.TimerHandle | None = None
        self.fields: dict[str, Any] = {key: job[key] for key in PROGRESS_FIELDS}

    def feed(self, chunk: bytes) -> None:
        """Apply what a stderr chunk says; publish once if anything changed."""
        self.last_activity = self._clock()
        before = dict(self.fields)
        for event in self._parser.feed(chunk):
            if isinstance(event, PhaseProgress) and event.phase in PHASES:
                self._apply(event)
        if self.fields != before:
            self.bump()

    def set(self, **fields: Any) -> None:
        """Change fields by hand (e.g. `phase="finalizing"`) and publish at once."""
        self.fields.update(fields)
        self.seq += 1
        self.flush()

    def bump(self) -> None:
        """Count a change; publish it now, or within `min_interval` if one just went out.

        git can print hundreds of records a second; coalescing keeps the CPU for git
        while every subscriber still sees the newest state within `min_interval`.
        """
        self.seq += 1
        wait = self._published_at + self._min_interval - self._clock()
        if wait <= 0:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(wait, self.flush)

    def flush(self) -> None:
        """Publish the newest state now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._published_at = self._clock()
        self._on_change(self.snapshot())

    def close(self) -> None:
        """Drop a pending publish (the job has ended; its final state is published elsewhere)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def snapshot(self) -> Event:
        """The job as it stands now."""
        return {**self.job, **self.fields, "seq": self.seq}

    def _apply(self, event: PhaseProgress) -> None:
        name, start, span = PHASES[event.phase]
        fields = self.fields
        fields["phase"] = name
        if event.percent is not None:
            fields["percent"] = max(fields["percent"], round(start + span * event.percent / 100, 1))
        if name == "receiving":
            self._receiving(event)
        elif name == "resolving":
            fields["resolved_deltas"] = event.current
            fields["total_deltas"] = event.total or event.current
            fields["eta_seconds"] = None
        elif name in ("enumerating", "counting") and event.total is None:
            fields["total_objects"] = max(fields["total_objects"], event.current)

    def _receiving(self, event: PhaseProgress) -> None:
        now = self._clock()
        fields = self.fields
        if self._receiving_since is None:
            self._receiving_since = now
        fields["received_objects"] = event.current
        fields["total_objects"] = event.total or event.current
        if event.bytes is not None:
            fields["received_bytes"] = event.bytes
        elapsed = now - self._receiving_since
        if event.rate is not None:
            fields["throughput"] = event.rate
        elif elapsed > 0.5:
            fields["throughput"] = round(fields["received_bytes"] / elapsed, 1)
        if event.done or not event.current or elapsed < 1:
            fields["eta_seconds"] = None if event.done else fields["eta_seconds"]
            return
        remaining = (fields["total_objects"] - event.current) / event.current * elapsed
        fields["eta_seconds"] = round(remaining, 1)
