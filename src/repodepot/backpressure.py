"""The backpressure gate: whether background work may start now.

Closed while the foreground suffers: the one-minute load average is above
`backpressure_load`, or the p99 of the last 30 s of requests is above
`backpressure_p99` seconds (either limit 0 turns its signal off). The loops ask before
they start a fetch or a maintenance; work already running is never stopped. The
signals are callables, so a test (or another process's figures) can drive them.
Under pressure that does not end, one start still goes through every MAX_HOLD seconds.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from repodepot.metrics import Metrics
from repodepot.settings import Settings

RECHECK = 1.0
"""Seconds a loop waits before asking a closed gate again."""
MAX_HOLD = 300.0
"""Seconds the gate holds background work at most: then one start goes through, so a
machine that stays busy still gets its mirrors updated, slowly, instead of never."""


@dataclass(frozen=True, kw_only=True, slots=True)
class GateState:
    """What the gate says now, with the figures it decided from."""

    load: float | None
    load_limit: float
    p99: float | None
    p99_limit: float
    closed_by: tuple[str, ...]
    """The signals above their limits: `load`, `p99`; empty when open."""

    @property
    def closed(self) -> bool:
        """Whether new background work waits."""
        return bool(self.closed_by)

    @property
    def message(self) -> str | None:
        """Why background work waits, for people; None when it does not."""
        reasons = []
        if "load" in self.closed_by:
            reasons.append(f"load {self.load:.1f} above {self.load_limit:g}")
        if "p99" in self.closed_by:
            reasons.append(f"request p99 {self.p99:.2f} s above {self.p99_limit:g} s")
        return f"Background work paused: {'; '.join(reasons)}" if reasons else None


class Gate:
    """Says whether background work may start; counts the starts it put off."""

    def __init__(
        self,
        *,
        load: Callable[[], float],
        p99: Callable[[], float | None],
        load_limit: float,
        p99_limit: float,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load
        self._p99 = p99
        self.load_limit = load_limit
        self.p99_limit = p99_limit
        self._metrics = metrics
        self._clock = clock
        self._held_since: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings, metrics: Metrics) -> Gate:
        """The gate of this process: the machine's load, this process's requests."""
        return cls(
            load=_load_average,
            p99=metrics.recent_p99,
            load_limit=settings.backpressure_load,
            p99_limit=settings.backpressure_p99,
            metrics=metrics,
        )

    def state(self) -> GateState:
        """Read the signals (only those turned on) and decide."""
        load = self._load() if self.load_limit else None
        p99 = self._p99() if self.p99_limit else None
        closed_by = tuple(
            reason
            for reason, value, limit in (
                ("load", load, self.load_limit),
                ("p99", p99, self.p99_limit),
            )
            if value is not None and value > limit
        )
        return GateState(
            load=load,
            load_limit=self.load_limit,
            p99=p99,
            p99_limit=self.p99_limit,
            closed_by=closed_by,
        )

    def open(self) -> bool:
        """Whether background work may start now (after MAX_HOLD closed: once, yes)."""
        if not self.state().closed:
            self._held_since = None
            return True
        at = self._clock()
        if self._held_since is None:
            self._held_since = at
        elif at - self._held_since >= MAX_HOLD:
            self._held_since = at
            return True
        return False

    def paused(self, loop: str) -> None:
        """Count a start `loop` put off because the gate was closed."""
        if self._metrics is not None:
            self._metrics.backpressure_paused.labels(loop).inc()

    def export(self) -> None:
        """Show the gate in `/metrics` (`repodepot_backpressure_closed`), read when scraped."""
        if self._metrics is None:
            return
        for reason in ("load", "p99"):
            gauge = self._metrics.backpressure_closed.labels(reason)
            gauge.set_function(functools.partial(self._closed_by, reason))

    def _closed_by(self, reason: str) -> float:
        return float(reason in self.state().closed_by)


def _load_average() -> float:
    return os.getloadavg()[0]
