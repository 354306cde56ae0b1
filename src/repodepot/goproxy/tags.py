"""A mirror's tags, listed once and kept while its refs do not change.

`@v/list` is asked often and a listing of thousands of tags costs a git process (20 to 40 ms
with loose refs). The refs' state is read from the file system instead
(`git.refstate`: packed-refs and every directory under `refs/tags/`); a listing taken
less than a second after the last change is not kept.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path

from repodepot.git import commands
from repodepot.git.commands import Tag
from repodepot.git.refstate import SETTLED, refs_state
from repodepot.git.runner import GitRunner

MAX_REPOS = 256


class TagLister:
    """Every tag of a mirror with its commit, from a cache while the refs are unchanged."""

    def __init__(self, git: GitRunner) -> None:
        self._git = git
        self._cache: OrderedDict[Path, tuple[tuple[int, ...], list[Tag]]] = OrderedDict()
        self._by_name: dict[Path, tuple[list[Tag], dict[str, str]]] = {}

    async def tags(
        self, git_dir: Path, *, points_at: str | None = None, merged: str | None = None
    ) -> list[Tag]:
        """Every tag: (name without `refs/tags/`, peeled commit).

        `points_at` and `merged` filter as `commands.tags` does; such a listing is not kept.
        """
        if points_at is not None or merged is not None:
            return await commands.tags(self._git, git_dir, points_at=points_at, merged=merged)
        state, newest = refs_state(git_dir, ("refs/tags",))
        cached = self._cache.get(git_dir)
        if cached is not None and cached[0] == state:
            self._cache.move_to_end(git_dir)
            return cached[1]
        listed = await commands.tags(self._git, git_dir)
        if time.time() - newest > SETTLED:
            self._cache[git_dir] = (state, listed)
            self._cache.move_to_end(git_dir)
            while len(self._cache) > MAX_REPOS:
                self._cache.popitem(last=False)
        return listed

    async def commit_of(self, git_dir: Path, name: str) -> str | None:
        """The commit tag `name` (without `refs/tags/`) points to, peeled; None if none."""
        listed = await self.tags(git_dir)
        indexed = self._by_name.get(git_dir)
        if indexed is None or indexed[0] is not listed:
            indexed = (listed, {tag.name: tag.commit for tag in listed})
            if git_dir in self._cache:  # indexed as long as the listing is kept
                self._by_name[git_dir] = indexed
        for gone in [path for path in self._by_name if path not in self._cache]:
            del self._by_name[gone]
        return indexed[1].get(name)
