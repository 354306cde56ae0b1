"""Reading the mirrors: EnsureRevision and an allowlisted, read-only `git` for tools.

EnsureRevision answers from the mirror; when the commit is not there it fetches
once (concurrent requests for one repository share that fetch) and answers again.

`exec` runs one of a few read-only subcommands with arguments checked against the
options that write files, run programs, read files outside the repository or talk
to other repositories.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from repodepot.exceptions import InvalidInput, NotFound, RepodepotError
from repodepot.git.errors import GitError, RevisionNotFound
from repodepot.git.runner import GitRunner
from repodepot.gitserver import mirror
from repodepot.gitserver.catfile import CommitReader
from repodepot.gitserver.service import Gitserver
from repodepot.settings import Settings
from repodepot.storage import Storage

EXEC_SUBCOMMANDS = frozenset(
    {
        "log",
        "show",
        "rev-parse",
        "rev-list",
        "ls-tree",
        "cat-file",
        "diff",
        "blame",
        "grep",
        "for-each-ref",
        "archive",
    }
)
# Options that write files, run programs, read other files or reach other repositories.
REFUSED_PREFIXES = (
    "--output",  # log/diff --output=FILE
    "--exec",  # archive --exec=PROGRAM
    "--upload-pack",
    "--receive-pack",
    "--remote",  # archive --remote=URL
    "--git-dir",
    "--work-tree",
    "--namespace",
    "--config",
    "--super-prefix",
    "--contents",  # blame --contents FILE
    "--ignore-revs-file",  # blame reads FILE
    "--no-index",  # diff two files anywhere on disk
    "--open-files-in-pager",  # grep -O runs a pager
    "--ext-diff",  # runs a diff program
    "--textconv",  # runs a filter program
    "--filters",  # cat-file --filters runs filter programs
    "--file",  # grep --file=FILE
    "--exclude-from",
)
REFUSED_SHORT = {
    "grep": ("-O", "-f"),  # -O[pager], -f FILE
    "archive": ("-o",),  # -o FILE
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_exec(args: list[str]) -> list[str]:
    """`args` if they are a read-only command; else InvalidInput naming the bad argument."""
    if not args:
        raise InvalidInput("give a git subcommand and its arguments", field="args")
    subcommand = args[0]
    if subcommand not in EXEC_SUBCOMMANDS:
        allowed = ", ".join(sorted(EXEC_SUBCOMMANDS))
        raise InvalidInput(
            f"git {subcommand!r} is not allowed; use one of {allowed}", field="args.0"
        )
    for index, arg in enumerate(args[1:], start=1):
        if _CONTROL.search(arg):
            raise InvalidInput(f"args[{index}] has a control character", field=f"args.{index}")
        if (
            arg == "-c"
            or arg.startswith(REFUSED_PREFIXES)
            or arg.startswith(REFUSED_SHORT.get(subcommand, ()))
        ):
            raise InvalidInput(
                f"args[{index}] {arg!r} is not allowed: it could write files, run programs "
                "or read outside the repository",
                field=f"args.{index}",
            )
        if arg == "--end-of-options" or arg == "--":
            break  # what follows is not an option (revisions, paths)
    return args


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
        self, git: GitRunner, storage: Storage, gitserver: Gitserver, settings: Settings
    ) -> None:
        self._git = git
        self._storage = storage
        self._gitserver = gitserver
        self._settings = settings
        self._fetches: dict[int, asyncio.Task[None]] = {}
        self._commits = CommitReader(git)

    @property
    def objects(self) -> CommitReader:
        """The long-lived object readers, shared with other readers of the mirrors."""
        return self._commits

    async def close(self) -> None:
        """End the long-lived readers."""
        await self._commits.close()

    async def ensure_revision(self, repository_id: int, name: str, rev: str) -> Commit:
        """The commit `rev` names, fetching once if the mirror lacks it; NotFound if none."""
        path = self._storage.path(name)
        if not path.is_dir():
            raise NotFound(f"{name!r} is not cloned yet")
        fetched = False
        try:
            info = await self._commits.commit(path, rev)
        except RevisionNotFound:
            await self.fetch_once(repository_id, name)
            fetched = True
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

    async def fetch_once(self, repository_id: int, name: str) -> None:
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
        async with self._storage.lock(name):
            await mirror.fetch(
                self._git, self._storage.path(name), upstream, settings=self._settings
            )

    def exec(self, name: str, args: list[str]) -> AsyncGenerator[bytes, None]:
        """The output of `git ARGS` in the mirror, streamed; checked with `check_exec`."""
        path = self._storage.path(name)
        if not path.is_dir():
            raise NotFound(f"{name!r} is not cloned yet")
        checked = check_exec(args)
        return self._git.stream(checked, git_dir=path, timeout=self._settings.exec_timeout)
