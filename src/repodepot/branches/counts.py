"""Ahead/behind of many branches at once, keyed by SHA pair, an LRU in front.

The answer for a pair of commits never changes, so nothing is ever invalidated: a
fetch that moves a ref makes new pairs, and only those are computed (the seed's
"invalidation storm" cannot happen). Misses are computed together: each branch is
given its base as upstream for one `git for-each-ref --format=%(upstream:track)`
(through the environment; git 2.39 has no `%(ahead-behind:)`), which walks with the
commit-graph's generation numbers, split over as many processes as there are cores.
`python -m bench branches` measures this against one `rev-list --left-right --count`
per pair, one unsplit `for-each-ref` and libgit2 (pygit2) with a pooled repository.
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from repodepot.git import commands
from repodepot.git.commands import AheadBehind
from repodepot.git.runner import GitRunner


@dataclass(frozen=True, slots=True)
class Pair:
    """A branch (`refs/heads/X` at `sha`) against its base (a full ref at `base_sha`)."""

    ref: str
    sha: str
    base: str
    base_sha: str


class PairCache:
    """The last `size` answers, by (branch sha, base sha); counts its hits and misses."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[tuple[str, str], AheadBehind] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, sha: str, base_sha: str) -> AheadBehind | None:
        """The cached answer, marked as recently used; counted as a hit or a miss."""
        key = (sha, base_sha)
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return found

    def put(self, sha: str, base_sha: str, counts: AheadBehind) -> None:
        """Keep an answer, forgetting the least recently used past `size`."""
        self._entries[(sha, base_sha)] = counts
        self._entries.move_to_end((sha, base_sha))
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    @property
    def hit_rate(self) -> float:
        """Hits over lookups since start (0 before the first)."""
        asked = self.hits + self.misses
        return self.hits / asked if asked else 0.0


class Counter:
    """Computes ahead/behind for a repository's pairs, cached by SHA pair."""

    def __init__(
        self, git: GitRunner, *, cache_size: int = 200_000, processes: int | None = None
    ) -> None:
        self._git = git
        self.cache = PairCache(cache_size)
        self.processes = processes or max(1, os.cpu_count() or 1)

    def cached(self, sha: str, base_sha: str) -> AheadBehind | None:
        """The answer for a pair if it is known (equal commits are 0/0)."""
        if sha == base_sha:
            return AheadBehind(0, 0)
        return self.cache.get(sha, base_sha)

    def remember(self, sha: str, base_sha: str, counts: AheadBehind) -> None:
        """Keep an answer learnt elsewhere (the table's rows after a restart)."""
        self.cache.put(sha, base_sha, counts)

    async def counts(self, repo: Path, pairs: Sequence[Pair]) -> dict[str, AheadBehind]:
        """The counts of every pair, by branch ref (a pair whose side is gone: absent).

        A ref that moved meanwhile is counted at its new commit and not cached. Each ref
        may appear once. Raises GitCommandError when git fails.
        """
        answers: dict[str, AheadBehind] = {}
        misses: list[Pair] = []
        for pair in pairs:
            found = self.cached(pair.sha, pair.base_sha)
            if found is None:
                misses.append(pair)
            else:
                answers[pair.ref] = found
        if not misses:
            return answers
        # Round-robin over processes, largest first by name order is as good as any:
        # the walk's length is unknown until it is done.
        groups = [misses[i :: self.processes] for i in range(min(self.processes, len(misses)))]
        results = await asyncio.gather(
            *(commands.track(self._git, repo, [(p.ref, p.base) for p in group]) for group in groups)
        )
        for group, result in zip(groups, results, strict=True):
            for pair in group:
                counts = result.counts.get(pair.ref)
                if counts is None:
                    continue  # the branch or its base is gone
                answers[pair.ref] = counts
                # Counted for the commits git saw: cached only if they are the ones the
                # caller read (a ref that moved meanwhile is answered, not remembered).
                seen = result.seen
                if seen.get(pair.ref) == pair.sha and seen.get(pair.base) == pair.base_sha:
                    self.cache.put(pair.sha, pair.base_sha, counts)
        return answers
