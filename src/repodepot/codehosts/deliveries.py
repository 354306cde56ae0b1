"""The webhook deliveries seen lately, so that a replayed one is answered without queueing.

A delivery is known by its id (`X-GitHub-Delivery`, `X-Gitlab-Event-UUID`,
`X-Gitea-Delivery`) and by the digest of its payload: the id is outside what the
signature covers, so a replay under a new id is still the same signed payload.

Kept in memory, per process: the last `size` deliveries of each kind, each for `ttl`
seconds. Several web processes each keep their own, so a replay sent to another one is
queued again there; a queued update is all it costs.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

SIZE = 10_000
TTL = 24 * 3600.0


class Deliveries:
    """Which deliveries arrived lately, by kind of code host."""

    def __init__(
        self,
        *,
        size: int = SIZE,
        ttl: float = TTL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._size = size
        self._ttl = ttl
        self._clock = clock
        self._seen: dict[str, OrderedDict[str, float]] = {}

    def first_time(self, kind: str, keys: Sequence[str]) -> bool:
        """Record a delivery by its `keys`; False when one of them was already recorded."""
        seen = self._seen.setdefault(kind, OrderedDict())
        moment = self._clock()
        while seen and next(iter(seen.values())) <= moment:
            seen.popitem(last=False)  # in arrival order, so expired ones come first
        if any(key in seen for key in keys):
            return False
        for key in keys:
            seen[key] = moment + self._ttl
        while len(seen) > 2 * self._size:  # two keys a delivery: its id and its digest
            seen.popitem(last=False)
        return True

    def forget(self, kind: str, keys: Sequence[str]) -> None:
        """Drop a delivery's keys: it failed before it was handled and may come again."""
        seen = self._seen.get(kind, OrderedDict())
        for key in keys:
            seen.pop(key, None)
