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
from collections.abc import Iterable
from pathlib import Path

SETTLED = 1.0


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
