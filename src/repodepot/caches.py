"""Lookups kept in memory in front of the database, dropped the moment their rows change.

Who may call, and which repository a name is, are asked on every request and change
rarely; asking the database each time was most of a request's cost. Each `Lookup`
keeps answers by key, for at most `ttl` seconds and `size` entries (least recently
used first out), and is dropped whole when its tables change:

- in this process at once, when a write transaction that touched their tables
  commits (`committed`, which `db.base.Sessions` calls), or when an owner module
  says so (`changed`);
- from other processes (the CLI, other server processes) by the database: on
  PostgreSQL a statement trigger on the tables sends a NOTIFY that the event relay
  hands to `changed` (milliseconds); on SQLite row triggers bump a counter in
  `cache_epochs`, which a lookup compares at most once a second (`refresh`), so a
  change made elsewhere is seen within one second either way.

A lookup that read the database while a change landed does not keep what it read:
`put` takes the generation seen before the read and stores nothing if it moved.
Only answers that were found are kept; an unknown token or name asks again.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Generic, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from repodepot.db.models import CacheEpoch

K = TypeVar("K")
V = TypeVar("V")

# The names the triggers of migrations 0009 and 0010 use: one per group of tables.
IDENTITY = "identity"  # users, api_tokens, login_sessions
REPOSITORIES = "repositories"
ACCESS = "access"  # groups, group_members, repository_grants, repo_sources
NAMES = (IDENTITY, REPOSITORIES, ACCESS)
# The event topic of migration 0009's NOTIFYs (PostgreSQL); the data is the group.
TOPIC = "cache"
# In this process only (no trigger): what a short ttl keeps close enough elsewhere.
MIRRORS = "mirrors"
TABLES = {
    "users": IDENTITY,
    "api_tokens": IDENTITY,
    "sessions": IDENTITY,
    "repositories": REPOSITORIES,
    "groups": ACCESS,
    "group_members": ACCESS,
    "repository_grants": ACCESS,
    "repo_sources": ACCESS,
    "gitserver_repos": MIRRORS,
}
EPOCH_CHECK = 1.0


class Lookup(Generic[K, V]):
    """Answers by key, each for at most `ttl` seconds, at most `size` of them."""

    def __init__(self, name: str, *, ttl: float, size: int = 10_000) -> None:
        self.name = name
        self.ttl = ttl
        self.size = size
        self.generation = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._reading: dict[K, asyncio.Future[V | None]] = {}

    def get(self, key: K) -> V | None:
        """The kept answer for `key`, or None (counted as a miss)."""
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    async def load(self, key: K, read: Callable[[], Awaitable[V | None]]) -> V | None:
        """The kept answer, else `read()`'s, kept; concurrent misses of a key share one read.

        When an answer expires under load, every request asking at that moment would read
        the database at once (a herd that stalled requests for 0.2 s); one reads, the
        others wait for it.
        """
        found = self.get(key)
        if found is not None:
            return found
        pending = self._reading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._read(key, read))
            self._reading[key] = pending
            pending.add_done_callback(lambda done: self._forget_read(key, done))
        return await asyncio.shield(pending)

    def _forget_read(self, key: K, done: asyncio.Future[V | None]) -> None:
        if self._reading.get(key) is done:
            del self._reading[key]

    async def _read(self, key: K, read: Callable[[], Awaitable[V | None]]) -> V | None:
        generation = self.generation
        value = await read()
        if value is not None:
            self.put(key, value, generation)
        return value

    def put(self, key: K, value: V, generation: int) -> None:
        """Keep `value`, read when the generation was `generation`; not if it moved since."""
        if self.ttl <= 0 or generation != self.generation:
            return
        self._entries[key] = (time.monotonic() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget everything; reads already under way keep nothing."""
        self.generation += 1
        self._entries.clear()
        self._reading.clear()  # a read begun before the change is not joined after it

    def __len__(self) -> int:
        return len(self._entries)


class Caches:
    """The process's lookups by group, and how changes from elsewhere reach them."""

    def __init__(self, *, ttl: float) -> None:
        self.ttl = ttl
        self._groups: dict[str, list[Lookup[object, object]]] = {
            name: [] for name in (*NAMES, MIRRORS)
        }
        self._epochs: dict[str, int] | None = None
        self._checked = 0.0
        self.read_epochs: Callable[[], Awaitable[dict[str, int]]] | None = None

    def lookup(
        self,
        group: str | tuple[str, ...],
        name: str,
        *,
        size: int = 10_000,
        ttl: float | None = None,
    ) -> Lookup[K, V]:
        """A new lookup dropped whenever a `group`'s tables change; `ttl` at most the caches'."""
        kept = self.ttl if ttl is None else min(ttl, self.ttl)
        found: Lookup[K, V] = Lookup(name, ttl=kept, size=size)
        for each in (group,) if isinstance(group, str) else group:
            self._groups[each].append(found)  # type: ignore[arg-type]
        return found

    def changed(self, groups: Iterable[str]) -> None:
        """Rows of these groups changed: drop what their lookups keep."""
        for group in groups:
            for found in self._groups.get(group, ()):
                found.clear()

    def committed(self, tables: set[str]) -> None:
        """A write transaction in this process committed, touching `tables`."""
        self.changed({TABLES[table] for table in tables if table in TABLES})

    async def refresh(self) -> None:
        """On SQLite: compare the change counters, at most once a second, and drop the moved.

        Called before a lookup is consulted; a no-op where changes arrive as NOTIFYs.
        """
        if self.read_epochs is None or time.monotonic() - self._checked < EPOCH_CHECK:
            return
        self._checked = time.monotonic()
        epochs = await self.read_epochs()
        if self._epochs is not None:
            self.changed(name for name in NAMES if epochs.get(name) != self._epochs.get(name))
        self._epochs = epochs

    def watch_epochs(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """SQLite: learn of other processes' changes from `cache_epochs` (see `refresh`)."""

        async def read() -> dict[str, int]:
            async with sessions() as session:
                rows = await session.execute(select(CacheEpoch.name, CacheEpoch.epoch))
                return {name: epoch for name, epoch in rows}

        self.read_epochs = read

    def stats(self) -> dict[str, tuple[int, int, int]]:
        """Lookup name → (hits, misses, entries), for metrics."""
        return {
            found.name: (found.hits, found.misses, len(found))
            for lookups in self._groups.values()
            for found in lookups
        }
