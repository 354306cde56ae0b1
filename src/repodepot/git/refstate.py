"""What a repository's refs look like on disk, without git: a signature that changes with them.

A ref update writes a lock file and renames it into place, so the directory holding the
ref gets a new modification time; `git pack-refs` replaces `packed-refs` (a new inode);
a new HEAD target rewrites `HEAD`. Comparing `(inode, mtime)` of those is a few `stat`
calls where listing the refs costs a git process. A state read less than SETTLED seconds
after its newest change is not to be trusted with a cache (git's "racy" index rule: a
second change within one file system clock tick would not show).
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

SETTLED = 1.0
T = TypeVar("T")


def refs_state(
    git_dir: Path, roots: Iterable[str], *, files: Iterable[str] = ()
) -> tuple[tuple[int, ...], float]:
    """A signature of the refs under `roots` (and of `files`), and the time of their last change.

    `packed-refs` is always part of it; `roots` are directories like `refs/tags`, walked
    whole; `files` are single files like `HEAD`.
    """
    parts: list[int] = []
    newest = 0.0
    for name in ("packed-refs", *files):
        try:
            status = os.stat(git_dir / name)
        except FileNotFoundError:
            parts.append(-1)
            continue
        parts += [status.st_ino, status.st_size, status.st_mtime_ns]
        newest = max(newest, status.st_mtime)
    stack = [str(git_dir / root) for root in roots]
    while stack:
        directory = stack.pop()
        try:
            status = os.stat(directory)
            with os.scandir(directory) as entries:
                stack.extend(e.path for e in entries if e.is_dir(follow_symlinks=False))
        except FileNotFoundError:
            parts.append(-1)
            continue
        parts += [status.st_ino, status.st_mtime_ns]
        newest = max(newest, status.st_mtime)
    return tuple(parts), newest


class KeptByRefs(Generic[T]):
    """Answers that come from a repository's refs, kept while the refs' signature holds.

    An answer that depends on nothing but refs and immutable objects (a branch's log, the
    tags with their dates, the go.mod files at HEAD) is the same until a ref under `roots`
    (or one of `files`) changes on disk; `refs_state` tells that with a few `stat` calls
    where asking again costs a git process. Kept per (repository, key) for at most `size`
    answers, least recently used dropped first; an answer read less than SETTLED seconds
    after the refs' last change is given but not kept. Concurrent misses each ask.
    """

    def __init__(self, roots: tuple[str, ...], *, files: tuple[str, ...] = (), size: int) -> None:
        self._roots = roots
        self._files = files
        self._size = size
        self._kept: OrderedDict[tuple[Path, Hashable], tuple[tuple[int, ...], T]] = OrderedDict()

    async def get(self, git_dir: Path, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        """The kept answer for `key` in `git_dir` while its refs are unchanged, else `read()`."""
        state, newest = refs_state(git_dir, self._roots, files=self._files)
        where = (git_dir, key)
        kept = self._kept.get(where)
        if kept is not None and kept[0] == state:
            self._kept.move_to_end(where)
            return kept[1]
        answer = await read()
        if time.time() - newest > SETTLED:
            self._kept[where] = (state, answer)
            self._kept.move_to_end(where)
            while len(self._kept) > self._size:
                self._kept.popitem(last=False)
        return answer
