"""The disk layout: `{data}/repos/ab/cd/{id}.git`, built in `{data}/tmp/` and renamed into place.

A mirror is named by its repository's stable id, never by its name: a rename is a row
update, and a name given up by a deleted repository never leads to that repository's
objects. `ab/cd` are the first four hex digits of the SHA-256 of the id, so no
directory holds more than a few hundred entries however many repositories there are.

A rename within one file system is atomic, so a reader sees either no
repository or a whole one, never a half-written clone.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

from repodepot.exceptions import AlreadyExists, InvalidInput
from repodepot.types import RepoName

logger = logging.getLogger(__name__)

_SEGMENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
MAX_NAME = 255
MAX_SEGMENTS = 24  # a host, GitLab's nested groups (up to 20) and a name


def validate_repo_name(name: str, *, field: str = "name") -> RepoName:
    """Return `name` as a RepoName, or raise InvalidInput naming `field`.

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
            field=field,
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
        # Branch status's copies of upstreams: `upstreams/ab/cd/{id}.git`, borrowing the
        # mirror's objects (alternates) and holding only what the upstream adds. Never served.
        self.upstreams_dir = data_dir / "upstreams"
        self._locks: dict[int, asyncio.Lock] = {}

    def prepare(self) -> list[Path]:
        """Create the layout and remove temporary directories orphaned by a crash.

        Work in `tmp/` is named `{pid}-…` after the process doing it; entries of processes
        that are gone (or not named so) are removed, so several processes can share the
        disk. Returns the removed paths. Call at start-up.
        """
        for directory in (
            self.repos_dir,
            self.tmp_dir,
            self.runtime_dir,
            self.cache_dir,
            self.upstreams_dir,
        ):
            directory.mkdir(parents=True, exist_ok=True)
        orphans = sorted(entry for entry in self.tmp_dir.iterdir() if not _owner_alive(entry))
        for orphan in orphans:
            _remove(orphan)
            logger.info(
                "removed orphaned temporary directory",
                extra={"action": "storage.orphan_removed", "path": str(orphan)},
            )
        return orphans

    def path(self, repository_id: int) -> Path:
        """Where the mirror of repository `repository_id` lives."""
        return self.repos_dir / mirror_relpath(repository_id)

    def upstream_path(self, repository_id: int) -> Path:
        """Where branch status keeps repository `repository_id`'s upstream branches.

        A bare repository whose `objects/info/alternates` names the mirror's objects, so it
        stores only the commits the upstream has and the mirror lacks. It is outside
        `repos/`: nothing that serves a mirror (smart HTTP, the Go proxy, exec,
        EnsureRevision) can reach its refs or its objects.
        """
        return self.upstreams_dir / mirror_relpath(repository_id)

    def place_upstream(self, staged: Path, repository_id: int) -> Path:
        """Rename a built upstream copy into place, atomically, replacing none."""
        final = self.upstream_path(repository_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staged, final)
        except OSError as exc:
            raise AlreadyExists(
                f"the upstream copy of repository {repository_id} already exists on disk"
            ) from exc
        return final

    def remove_upstream(self, repository_id: int) -> None:
        """Delete the upstream copy, if any: renamed into tmp first, so it vanishes at once."""
        _vanish(self.upstream_path(repository_id), self.workdir(f"{uuid.uuid4().hex}.deleted"))

    def exists(self, repository_id: int) -> bool:
        """Whether the mirror of repository `repository_id` is on disk."""
        return self.path(repository_id).is_dir()

    def mirror_ids(self) -> Iterator[int]:
        """The repository ids of every mirror on disk, in no particular order."""
        for first in _subdirs(self.repos_dir):
            for second in _subdirs(first):
                for entry in second.iterdir():
                    key = entry.name.removesuffix(".git")
                    real = entry.is_dir() and not entry.is_symlink()
                    if entry.name.endswith(".git") and key.isdigit() and real:
                        yield int(key)

    def lock(self, repository_id: int) -> asyncio.Lock:
        """The lock that serialises clone, fetch and maintenance of one mirror."""
        return self._locks.setdefault(repository_id, asyncio.Lock())

    def workdir(self, label: str) -> Path:
        """The temporary directory this process uses for the work called `label`."""
        return self.tmp_dir / f"{os.getpid()}-{label}"

    @asynccontextmanager
    async def staging(self, repository_id: int, *, label: str | None = None) -> AsyncIterator[Path]:
        """Yield a path in `tmp/` to build a mirror in; rename it into place on success.

        The yielded path does not exist yet (what `git clone` wants). On any error,
        or if nothing was created, the temporary directory is removed and nothing
        appears under `repos/`. Raises AlreadyExists if the mirror is already on disk.
        """
        async with self.building(label=label) as staged:
            yield staged
            self.place(staged, repository_id)

    @asynccontextmanager
    async def building(self, *, label: str | None = None) -> AsyncIterator[Path]:
        """Yield a path in `tmp/` (not created yet) that is removed afterwards, whatever happens.

        For work whose repository id is known only at the end (an import): build here,
        then `place` it before the block ends.
        """
        workdir = self.workdir(label or uuid.uuid4().hex)
        _remove(workdir)  # a previous attempt's leftovers
        workdir.mkdir(parents=True)
        try:
            yield workdir / "repo.git"
        finally:
            _remove(workdir)

    def place(self, staged: Path, repository_id: int, *, fresh_id: bool = False) -> Path:
        """Rename a built mirror into place, atomically; AlreadyExists if one is there.

        `fresh_id`: the id was handed out in the caller's own uncommitted transaction, so
        nothing can own what is at its place (a crash's leftover, a rolled-back id given
        again by SQLite): it is removed first, never merged with.
        """
        if not staged.is_dir():
            raise FileNotFoundError(f"nothing was built for repository {repository_id}")
        final = self.path(repository_id)
        if fresh_id and final.exists():
            logger.warning(
                "removing %s, left by an earlier attempt that never committed",
                final,
                extra={"action": "storage.leftover_removed", "path": str(final)},
            )
            self.remove(repository_id)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staged, final)  # atomic; fails if final appeared meanwhile
        except OSError as exc:
            raise AlreadyExists(
                f"the mirror of repository {repository_id} already exists on disk", field="name"
            ) from exc
        return final

    def remove(self, repository_id: int) -> None:
        """Delete a mirror (and its upstream copy, which borrows its objects) from disk.

        Renamed into tmp first, so it vanishes at once.
        """
        self.remove_upstream(repository_id)
        _vanish(self.path(repository_id), self.workdir(f"{uuid.uuid4().hex}.deleted"))

    def size(self, repository_id: int) -> int:
        """Bytes used on disk by a mirror."""
        return self.size_of(self.path(repository_id))

    @staticmethod
    def size_of(directory: Path) -> int:
        """Bytes used on disk by the files under `directory`."""
        total = 0
        for root, _dirs, files in os.walk(directory):
            for file in files:
                try:
                    total += os.lstat(os.path.join(root, file)).st_size
                except FileNotFoundError:
                    continue  # git removed it meanwhile (a repack)
        return total


def mirror_relpath(repository_id: int) -> str:
    """`ab/cd/{id}.git`: a mirror's place under `repos/`, from its repository's id alone."""
    if repository_id <= 0:
        raise ValueError(f"repository ids are positive, not {repository_id}")
    digest = hashlib.sha256(str(repository_id).encode()).hexdigest()
    return f"{digest[:2]}/{digest[2:4]}/{repository_id}.git"


def _subdirs(directory: Path) -> list[Path]:
    try:
        return [
            entry
            for entry in directory.iterdir()
            if len(entry.name) == 2 and entry.is_dir() and not entry.is_symlink()
        ]
    except FileNotFoundError:
        return []


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


def _vanish(final: Path, doomed: Path) -> None:
    if final.exists():
        os.rename(final, doomed)
        _remove(doomed)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
