"""A repository's recent commits and its tags, read from the mirror, for the API and the page.

HEAD's log and the tags are read in-process from the mirror's files first (`git.walk`,
no process: a page's first view of a mirror otherwise starts two or three sandboxed
gits); whatever that reader leaves, and every ref a user names, is asked of git.

The ref a user names is a plain revision (`git.revisions`) and never one in the upstream
namespace of branch status (`refs/upstream/…`): clients never see those refs, and git
would read `upstream/main` as `refs/upstream/main`.
"""

from __future__ import annotations

from pathlib import Path

from repodepot.exceptions import InvalidInput, NotFound
from repodepot.git import history, walk
from repodepot.git.errors import RevisionNotFound
from repodepot.git.history import DatedTag, LogEntry
from repodepot.git.packs import ObjectStore
from repodepot.git.refstate import KeptByRefs
from repodepot.git.revisions import PLAIN_REVISION, is_plain_revision, names_hidden
from repodepot.git.runner import GitRunner
from repodepot.gitserver.reads import Reads

MAX_PER_PAGE = 100
KEPT = 512  # answers per kind, over all mirrors


class History:
    """The log of a ref and the dated tags of a repository's mirror.

    Both are kept while the mirror's refs are unchanged (`KeptByRefs`): a repository page
    asks for them on every view. `in_process=False` asks git every time it reads.
    `close()` releases the files the in-process reader keeps open.
    """

    def __init__(self, *, git: GitRunner, reads: Reads, in_process: bool = True) -> None:
        self._git = git
        self._reads = reads
        self._objects = ObjectStore() if in_process else None
        self._logs: KeptByRefs[list[LogEntry]] = KeptByRefs(("refs",), files=("HEAD",), size=KEPT)
        self._tags: KeptByRefs[list[DatedTag]] = KeptByRefs(("refs/tags",), size=KEPT)

    async def commits(
        self, repository_id: int, name: str, ref: str | None, per_page: int
    ) -> list[LogEntry]:
        """The newest `per_page` commits of `ref` (None: the mirror's HEAD), newest first.

        An empty repository (HEAD on a branch without commits) answers no commits.
        Raises InvalidInput (field `ref`) for anything but a plain revision outside the
        upstream namespace, InvalidInput (field `per_page`) outside 1 to 100, NotFound
        before the first clone or when `ref` names no commit.
        """
        check_request(ref, per_page)
        path = self._reads.mirror_dir(repository_id, name)
        rev = ref or "HEAD"
        try:
            return await self._logs.get(
                path,
                (rev, per_page),
                lambda: (
                    self._head(path, per_page)
                    if ref is None
                    else history.log(self._git, path, rev, limit=per_page)
                ),
            )
        except RevisionNotFound:
            if ref is None:
                return []
            raise NotFound(f"no branch, tag or commit {ref!r} in {name!r}") from None

    async def tags(self, repository_id: int, name: str) -> list[DatedTag]:
        """Every tag of a commit with its date, newest first; NotFound before the first clone."""
        path = self._reads.mirror_dir(repository_id, name)
        return await self._tags.get(path, None, lambda: self._dated_tags(path))

    def close(self) -> None:
        """Close the files kept open for in-process reads."""
        if self._objects is not None:
            self._objects.close()

    async def _head(self, path: Path, limit: int) -> list[LogEntry]:
        """HEAD's log, in-process when the mirror's files allow, else from git."""
        if self._objects is not None:
            entries = walk.log_head(self._objects, path, limit)
            if entries is not None:
                return entries
        return await history.log(self._git, path, "HEAD", limit=limit)

    async def _dated_tags(self, path: Path) -> list[DatedTag]:
        """The dated tags, in-process when the mirror's files allow, else from git."""
        if self._objects is not None:
            tags = walk.dated_tags(self._objects, path)
            if tags is not None:
                return tags
        return await history.dated_tags(self._git, path)


def check_request(ref: str | None, per_page: int) -> None:
    """InvalidInput (field `per_page` or `ref`) for a log `History.commits` refuses."""
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise InvalidInput(
            f"per_page must be between 1 and {MAX_PER_PAGE}, not {per_page}",
            field="per_page",
        )
    if ref is not None:
        _check_ref(ref)


def _check_ref(ref: str) -> None:
    """InvalidInput (field `ref`) unless `ref` is a plain revision clients may name."""
    shown = ref if len(ref) <= 80 else ref[:80] + "..."
    if names_hidden(ref):
        raise InvalidInput(
            f"{shown!r} names the upstream namespace, which clients cannot read; "
            "a branch whose name starts with upstream/ is refs/heads/upstream/...",
            field="ref",
        )
    if not is_plain_revision(ref):
        raise InvalidInput(f"{shown!r} is not {PLAIN_REVISION}", field="ref")
