"""A mirror's tags, listed once and kept while its refs do not change.

`@v/list` is asked often and a listing of thousands of tags costs a git process (20 to 40 ms
with loose refs). The refs' state is read from the file system instead
(`git.refstate`: packed-refs and every directory under `refs/tags/`); a listing taken
less than a second after the last change is not kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from repodepot.git import commands
from repodepot.git.commands import Tag
from repodepot.git.refstate import KeptByRefs
from repodepot.git.runner import GitRunner

MAX_REPOS = 256


@dataclass(frozen=True, slots=True)
class _Listing:
    """A mirror's tags, and the commit of each by name."""

    tags: list[Tag]
    commits: dict[str, str]


class TagLister:
    """Every tag of a mirror with its commit, from a cache while the refs are unchanged."""

    def __init__(self, git: GitRunner) -> None:
        self._git = git
        self._kept: KeptByRefs[_Listing] = KeptByRefs(("refs/tags",), size=MAX_REPOS)

    async def tags(
        self, git_dir: Path, *, points_at: str | None = None, merged: str | None = None
    ) -> list[Tag]:
        """Every tag: (name without `refs/tags/`, peeled commit).

        `points_at` and `merged` filter as `commands.tags` does; such a listing is not kept.
        """
        if points_at is not None or merged is not None:
            return await commands.tags(self._git, git_dir, points_at=points_at, merged=merged)
        return (await self._listing(git_dir)).tags

    async def commit_of(self, git_dir: Path, name: str) -> str | None:
        """The commit tag `name` (without `refs/tags/`) points to, peeled; None if none."""
        return (await self._listing(git_dir)).commits.get(name)

    async def _listing(self, git_dir: Path) -> _Listing:
        async def read() -> _Listing:
            listed = await commands.tags(self._git, git_dir)
            return _Listing(listed, {tag.name: tag.commit for tag in listed})

        return await self._kept.get(git_dir, None, read)
