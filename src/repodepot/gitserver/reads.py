"""Reading the mirrors: EnsureRevision, smart HTTP's upload-pack and a read-only `git`.

EnsureRevision answers from the mirror; when the commit is not there it fetches
(concurrent requests for one repository share that fetch) and answers again. Those
fetches start at most once per `ensure_fetch_interval` per repository, whoever asks
(the Go proxy's fetches for unknown versions go through the same throttle): a stream
of made-up revisions costs one fetch, then 404s from what is there. It takes plain
revisions only (`git.revisions`), refused before any fetch.

`exec` runs one of a few read-only subcommands with the options, revisions and paths
`allowlist.check_exec` lets through, inside the runner's sandbox when there is one,
with its heap capped (`exec_max_memory`) and at most `exec_max_concurrent` at once in
this process, `exec_max_per_user` per user: past either, 429.

`advertise_refs` and `upload_pack` are the two halves of a smart HTTP fetch
(`web/smarthttp.py` speaks HTTP, these run git in the mirror).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from repodepot.exceptions import NotFound, RepodepotError, TooManyRequests
from repodepot.git import commands
from repodepot.git.errors import GitError, RevisionNotFound
from repodepot.git.revisions import check_plain_revision
from repodepot.git.runner import GitRunner
from repodepot.gitserver import mirror
from repodepot.gitserver.adverts import Advertisements
from repodepot.gitserver.allowlist import check_exec
from repodepot.gitserver.catfile import CommitReader, PoolObserver
from repodepot.gitserver.service import Gitserver
from repodepot.settings import Settings
from repodepot.storage import Storage


@dataclass(frozen=True, kw_only=True, slots=True)
class Commit:
    """A commit as EnsureRevision answers it."""

    sha: str
    author_name: str
    author_email: str
    authored_at: str
    subject: str
    fetched: bool


class Reads:
    """EnsureRevision and exec over the mirrors on this node."""

    def __init__(
        self,
        git: GitRunner,
        storage: Storage,
        gitserver: Gitserver,
        settings: Settings,
        *,
        pool_observer: PoolObserver | None = None,
    ) -> None:
        self._git = git
        self._storage = storage
        self._gitserver = gitserver
        self._settings = settings
        self._fetches: dict[int, asyncio.Task[None]] = {}
        self._fetched_at: dict[int, float] = {}
        self._execs_by_user: dict[int, int] = {}  # running execs; none: no entry
        self._adverts = Advertisements(git)
        self._commits = CommitReader(
            git,
            budget_bytes=settings.reader_pool_budget_mib << 20,
            idle_ttl=settings.reader_idle_ttl,
            observer=pool_observer,
        )

    @property
    def adverts(self) -> Advertisements:
        """The ref advertisements kept for smart HTTP."""
        return self._adverts

    @property
    def objects(self) -> CommitReader:
        """The long-lived object readers, shared with other readers of the mirrors."""
        return self._commits

    async def close(self) -> None:
        """End the long-lived readers."""
        await self._commits.close()

    async def ensure_revision(self, repository_id: int, name: str, rev: str) -> Commit:
        """The commit `rev` names; NotFound if none.

        When the mirror lacks it, fetch first, unless a fetch for an unknown revision of
        this repository started less than `ensure_fetch_interval` seconds ago. Raises
        InvalidInput (field `rev`) for anything but a plain revision, without a fetch.
        """
        check_plain_revision(rev)
        path = self.mirror_dir(repository_id, name)
        fetched = False
        try:
            info = await self._commits.commit(path, rev)
        except RevisionNotFound:
            # Throttled or not, look again: a fetch may have ended since the first look.
            fetched = await self.fetch_unless_recent(repository_id, name)
            try:
                info = await self._commits.commit(path, rev)
            except RevisionNotFound:
                raise NotFound(f"no commit {rev!r} in {name!r}, even after a fetch") from None
        return Commit(
            sha=info.sha,
            author_name=info.author_name,
            author_email=info.author_email,
            authored_at=info.authored_at,
            subject=info.subject,
            fetched=fetched,
        )

    def mirror_dir(self, repository_id: int, name: str) -> Path:
        """The repository's mirror on disk; NotFound (naming `name`) before its first clone."""
        path = self._storage.path(repository_id)
        if not path.is_dir():
            raise NotFound(f"{name!r} is not cloned yet; try again shortly")
        return path

    async def fetch_unless_recent(self, repository_id: int, name: str) -> bool:
        """Fetch (or join the running fetch) unless one started within the interval.

        The one way a user's request fetches a mirror (EnsureRevision, the Go proxy).
        True when this caller waited for a fetch; the interval counts from a fetch's start.
        """
        if repository_id not in self._fetches:
            now = asyncio.get_running_loop().time()
            last = self._fetched_at.get(repository_id)
            if last is not None and now - last < self._settings.ensure_fetch_interval:
                return False
            self._fetched_at[repository_id] = now
        await self._fetch_once(repository_id, name)
        return True

    async def _fetch_once(self, repository_id: int, name: str) -> None:
        """Fetch the mirror: one fetch per repository at a time, later askers wait for it.

        A failed or refused fetch is not raised: the caller looks again and answers
        "not found"; the scheduler records why its own fetches fail.
        """
        task = self._fetches.get(repository_id)
        if task is None:
            task = asyncio.create_task(self._fetch(repository_id, name))
            self._fetches[repository_id] = task
            task.add_done_callback(lambda _: self._fetches.pop(repository_id, None))
        with contextlib.suppress(GitError, RepodepotError):
            await asyncio.shield(task)

    async def _fetch(self, repository_id: int, name: str) -> None:
        upstream = await self._gitserver.source(repository_id)
        if upstream is None:
            return
        path = self._storage.path(repository_id)
        async with self._storage.lock(repository_id):
            before = await commands.refs_digest(self._git, path)
            await mirror.fetch(self._git, path, upstream, settings=self._settings)
            after = await commands.refs_digest(self._git, path)
            moved = await mirror.facts(self._git, path) if after != before else None
        await self._gitserver.fetched(repository_id, digest=after, facts=moved)

    @property
    def spool_dir(self) -> Path:
        """Where a client's upload-pack request may wait on disk before git reads it."""
        return self._storage.tmp_dir

    def advertise_refs(
        self, repository_id: int, name: str, protocol: str | None
    ) -> AsyncGenerator[bytes, None]:
        """The mirror's ref advertisement for smart HTTP, as `git upload-pack` writes it.

        `protocol` is the client's `Git-Protocol`. Kept while the refs are unchanged
        (`adverts`). Raises NotFound (naming `name`) before
        the first clone; the stream raises GitCommandError when git fails.
        """
        return self._adverts.advertise(self.mirror_dir(repository_id, name), protocol)

    def upload_pack(
        self, repository_id: int, name: str, request: AsyncIterator[bytes], protocol: str | None
    ) -> AsyncGenerator[bytes, None]:
        """`git upload-pack`'s answer to a client's negotiation `request`: the pack, streamed.

        Raises NotFound (naming `name`) before the first clone; the stream raises
        GitCommandError when git refuses the request or fails.
        """
        path = self.mirror_dir(repository_id, name)
        return commands.upload_pack(self._git, path, request, protocol=protocol)

    def exec(
        self, repository_id: int, name: str, args: list[str], *, user_id: int
    ) -> AsyncGenerator[bytes, None]:
        """The output of `git ARGS` in the mirror, streamed.

        Raises InvalidInput naming the argument `check_exec` refuses, NotFound before
        the first clone; git runs in the mirror (in the sandbox: the mirror alone). The
        stream raises TooManyRequests when it starts past this process's or `user_id`'s
        share of execs at once.
        """
        path = self.mirror_dir(repository_id, name)
        checked = check_exec(args)
        settings = self._settings
        output = commands.exec_checked(
            self._git,
            path,
            checked,
            timeout=settings.exec_timeout,
            max_memory=settings.exec_max_memory,
        )
        return self._counted(output, user_id)

    async def _counted(
        self, output: AsyncGenerator[bytes, None], user_id: int
    ) -> AsyncGenerator[bytes, None]:
        """`output`, counted against the site-wide and per-user share while it runs."""
        settings = self._settings
        mine = self._execs_by_user.get(user_id, 0)
        running = sum(self._execs_by_user.values())
        if running >= settings.exec_max_concurrent or mine >= settings.exec_max_per_user:
            await output.aclose()
            raise TooManyRequests(
                f"too many git commands at once (at most {settings.exec_max_per_user} per "
                f"user, {settings.exec_max_concurrent} in all); try again shortly",
                retry_after=max(1, round(settings.exec_timeout / 10)),
            )
        self._execs_by_user[user_id] = mine + 1
        try:
            async for chunk in output:
                yield chunk
        finally:
            left = self._execs_by_user.pop(user_id) - 1
            if left:
                self._execs_by_user[user_id] = left
            await output.aclose()
