"""The durations of the last 30 s of requests, for the backpressure gate's p99.

Per-second histograms over fixed, geometric bounds (1 ms to about 2 min, 10% apart):
memory stays the same at 10 or 10,000 requests a second, a sample costs a bisect, and a
quantile is read within 10% of the true value. A leaf: it imports nothing of repodepot.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Callable

BOUNDS = tuple(0.001 * 1.1**step for step in range(124))  # 1 ms … ~130 s
MIN_SAMPLES = 20
"""Fewer requests than this in the window tell nothing about the foreground: no p99."""


class RecentDurations:
    """Durations seen in the last `seconds`, as one small histogram per second."""

    def __init__(self, seconds: int = 30, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._slots: deque[tuple[int, list[int]]] = deque()

    def add(self, duration: float) -> None:
        """Count one request that took `duration` seconds."""
        second = int(self._clock())
        if not self._slots or self._slots[-1][0] != second:
            self._slots.append((second, [0] * (len(BOUNDS) + 1)))
            self._expire(second)
        self._slots[-1][1][bisect.bisect_left(BOUNDS, duration)] += 1

    def quantile(self, q: float) -> float | None:
        """The `q` quantile of the window's durations (a bucket's upper bound), seconds.

        None with fewer than MIN_SAMPLES requests in the window.
        """
        self._expire(int(self._clock()))
        merged = [sum(counts) for counts in zip(*(slot for _, slot in self._slots), strict=True)]
        total = sum(merged)
        if total < MIN_SAMPLES:
            return None
        rank, seen = math.ceil(q * total), 0
        for index, count in enumerate(merged):
            seen += count
            if seen >= rank:
                return BOUNDS[min(index, len(BOUNDS) - 1)]
        return BOUNDS[-1]

    def _expire(self, second: int) -> None:
        while self._slots and self._slots[0][0] <= second - self.seconds:
            self._slots.popleft()
