"""A mirror's tags, listed once and kept while its refs do not change.

`@v/list` is asked often and a listing of thousands of tags costs a git process (20 to 40 ms
with loose refs). The refs' state is read from the file system instead: packed-refs'
identity and the modification time of every directory under `refs/tags/` (a ref update
renames a lock file into its directory, so that directory's time changes). A listing
taken less than a second after the last change is not kept, as git's "racy" index
rule: a second change within the file system's clock tick would not show.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from pathlib import Path

from repodepot.git import commands
from repodepot.git.commands import Tag
from repodepot.git.runner import GitRunner

MAX_REPOS = 256
SETTLED = 1.0


def refs_state(git_dir: Path) -> tuple[tuple[int, ...], float]:
    """A signature of the tag refs, and the time of their latest change."""
    parts: list[int] = []
    newest = 0.0
    try:
        packed = os.stat(git_dir / "packed-refs")
        parts += [packed.st_ino, packed.st_size, packed.st_mtime_ns]
        newest = packed.st_mtime
    except FileNotFoundError:
        parts.append(-1)
    stack = [str(git_dir / "refs" / "tags")]
    while stack:
        directory = stack.pop()
        try:
            status = os.stat(directory)
            with os.scandir(directory) as entries:
                stack.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            continue
        parts += [status.st_ino, status.st_mtime_ns]
        newest = max(newest, status.st_mtime)
    return tuple(parts), newest


class TagLister:
    """Every tag of a mirror with its commit, from a cache while the refs are unchanged."""

    def __init__(self, git: GitRunner) -> None:
        self._git = git
        self._cache: OrderedDict[Path, tuple[tuple[int, ...], list[Tag]]] = OrderedDict()

    async def tags(
        self, git_dir: Path, *, points_at: str | None = None, merged: str | None = None
    ) -> list[Tag]:
        """Every tag: (name without `refs/tags/`, peeled commit).

        `points_at` and `merged` filter as `commands.tags` does; such a listing is not kept.
        """
        if points_at is not None or merged is not None:
            return await commands.tags(self._git, git_dir, points_at=points_at, merged=merged)
        state, newest = refs_state(git_dir)
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
