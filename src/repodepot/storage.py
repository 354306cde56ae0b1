"""The disk layout: `{data}/repos/{name}.git`, built in `{data}/tmp/` and renamed into place.

A rename within one file system is atomic, so a reader sees either no
repository or a whole one, never a half-written clone.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from repodepot.exceptions import AlreadyExists, InvalidInput
from repodepot.types import RepoName

logger = logging.getLogger(__name__)

_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
MAX_NAME = 255
MAX_SEGMENTS = 24  # a host, GitLab's nested groups (up to 20) and a name


def validate_repo_name(name: str) -> RepoName:
    """Return `name` as a RepoName, or raise InvalidInput naming the `name` field.

    A name is 1 to 4 `/`-separated segments of letters, digits, `.`, `_` and `-`,
    none starting with `.` or `-` or ending in `.git` or `.lock`.
    """
    segments = name.split("/")
    bad = (
        not name
        or len(name) > MAX_NAME
        or len(segments) > MAX_SEGMENTS
        or any(
            not _SEGMENT.fullmatch(s) or s.endswith((".git", ".lock")) or ".." in s
            for s in segments
        )
    )
    if bad:
        raise InvalidInput(
            f"{name!r} is not a valid repository name: use 1-{MAX_SEGMENTS} '/'-separated parts "
            "of letters, digits, '.', '_' and '-', not starting with '.' or '-' "
            "nor ending in '.git'",
            field="name",
        )
    return RepoName(name)


class Storage:
    """Where repositories live on this node, and the locks that keep writers apart."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.repos_dir = data_dir / "repos"
        self.tmp_dir = data_dir / "tmp"
        self.runtime_dir = data_dir / "run"
        self.cache_dir = data_dir / "cache"
        self._locks: dict[str, asyncio.Lock] = {}

    def prepare(self) -> list[Path]:
        """Create the layout and remove temporary directories orphaned by a crash.

        Work in `tmp/` is named `{pid}-…` after the process doing it; entries of processes
        that are gone (or not named so) are removed, so several processes can share the
        disk. Returns the removed paths. Call at start-up.
        """
        for directory in (self.repos_dir, self.tmp_dir, self.runtime_dir, self.cache_dir):
            directory.mkdir(parents=True, exist_ok=True)
        orphans = sorted(entry for entry in self.tmp_dir.iterdir() if not _owner_alive(entry))
        for orphan in orphans:
            _remove(orphan)
            logger.info(
                "removed orphaned temporary directory",
                extra={"action": "storage.orphan_removed", "path": str(orphan)},
            )
        return orphans

    def path(self, name: str) -> Path:
        """Where repository `name` lives (validated; raises InvalidInput)."""
        return self.repos_dir / f"{validate_repo_name(name)}.git"

    def exists(self, name: str) -> bool:
        """Whether repository `name` is on disk."""
        return self.path(name).is_dir()

    def lock(self, name: str) -> asyncio.Lock:
        """The lock that serialises clone, fetch and maintenance of one repository."""
        return self._locks.setdefault(validate_repo_name(name), asyncio.Lock())

    def workdir(self, label: str) -> Path:
        """The temporary directory this process uses for the work called `label`."""
        return self.tmp_dir / f"{os.getpid()}-{label}"

    @asynccontextmanager
    async def staging(self, name: str, *, label: str | None = None) -> AsyncIterator[Path]:
        """Yield a path in `tmp/` to build repository `name` in; rename it into place on success.

        The yielded path does not exist yet (what `git clone` wants). On any error,
        or if nothing was created, the temporary directory is removed and nothing
        appears under `repos/`. Raises AlreadyExists if `name` is already on disk.
        """
        final = self.path(name)
        if final.exists():
            raise AlreadyExists(f"repository {name!r} already exists on disk", field="name")
        workdir = self.workdir(label or uuid.uuid4().hex)
        _remove(workdir)  # a previous attempt's leftovers
        workdir.mkdir(parents=True)
        staged = workdir / "repo.git"
        try:
            yield staged
            if not staged.is_dir():
                raise FileNotFoundError(f"nothing was created for {name!r}")
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(staged, final)  # atomic; fails if final appeared meanwhile
            except OSError as exc:
                raise AlreadyExists(
                    f"repository {name!r} already exists on disk", field="name"
                ) from exc
        finally:
            _remove(workdir)

    def remove(self, name: str) -> None:
        """Delete repository `name` from disk: renamed into tmp first, so it vanishes at once."""
        final = self.path(name)
        if final.exists():
            doomed = self.workdir(f"{uuid.uuid4().hex}.deleted")
            os.rename(final, doomed)
            _remove(doomed)

    def size(self, name: str) -> int:
        """Bytes used on disk by repository `name`."""
        total = 0
        for root, _dirs, files in os.walk(self.path(name)):
            for file in files:
                try:
                    total += os.lstat(os.path.join(root, file)).st_size
                except FileNotFoundError:
                    continue  # git removed it meanwhile (a repack)
        return total


def _owner_alive(entry: Path) -> bool:
    pid, _, _ = entry.name.partition("-")
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
