"""Commits read through one long-lived `git cat-file --batch` per mirror.

Starting a git process per request costs more than everything else EnsureRevision
does: under load the event loop waits for each fork. A mirror read often keeps one
`cat-file --batch` open and asks it over a pipe (a few tens of microseconds).

Freshness: git resolves refs from disk on every request (loose refs are re-read,
packed-refs re-checked by stat) and rescans packs when an object is missing, so a
fetch is seen at once. A "missing" answer is still asked again of a newer process
before it counts, a process older than `MAX_AGE` is replaced (it may hold packs
that a repack deleted), one idle for `IDLE` is ended, and at most `MAX_OPEN` run.
A replaced process takes no new questions and ends once those already waiting for
it are answered: concurrent askers never share its pipes, nor lose their answer.

Only plain revisions reach `commit()` (`git.revisions`): git's message searches
(`^{/REGEX}`, `:/REGEX`) would run a backtracking regex over every commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from repodepot.git import commands
from repodepot.git.errors import RevisionNotFound
from repodepot.git.revisions import MAX_REVISION, is_plain_revision
from repodepot.git.runner import GitRunner

MAX_OPEN = 64
MAX_AGE = 60.0
IDLE = 30.0
MAX_COMMIT_BYTES = 16 << 20
ANSWER_TIMEOUT = 10.0
_SHA = re.compile(rb"[0-9a-f]{40}")
_PERSON = re.compile(rb"(?P<name>.*?) ?<(?P<email>[^>]*)> (?P<when>-?\d+) (?P<tz>[+-]\d{4})")


@dataclass(frozen=True, slots=True)
class CommitInfo:
    """A commit's id, author and subject, as `git log --format=%H %an %ae %aI %s` shows them.

    `commit_time` is the committer's time (`%ct`), which Go's pseudo-versions use.
    """

    sha: str
    author_name: str
    author_email: str
    authored_at: str
    subject: str
    commit_time: int


@dataclass(frozen=True, slots=True)
class GitObject:
    """An object as `cat-file --batch` answers it; `data` is None when it was over the limit."""

    sha: str
    kind: str
    size: int
    data: bytes | None


class _Batch:
    """One `git cat-file --batch` and the lock that keeps its questions in order.

    Its pipes are used only under `lock`, ending it included: asyncio refuses a second
    reader of a stream, and a question half answered would shift every later answer.
    """

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lock = asyncio.Lock()
        self.started = self.used = time.monotonic()
        self.ended = False

    async def ask(self, name: bytes, limit: int) -> GitObject | None:
        """The object `name` names, or None when git says it is missing."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None
        assert stdout is not None
        if self.ended:
            raise EOFError("git cat-file was ended")
        self.used = time.monotonic()
        stdin.write(name + b"\n")
        await stdin.drain()
        header = (await stdout.readline()).rstrip(b"\n").split(b" ")
        if header[-1] in (b"missing", b"ambiguous"):  # "<name> missing"
            return None
        if len(header) != 3:  # the process died
            raise EOFError("git cat-file stopped answering")
        sha, kind, size = header[0], header[1], int(header[2])
        if not _SHA.fullmatch(sha):
            raise EOFError("git cat-file answered something unexpected")
        if size > limit:
            left = size + 1
            while left:  # skip it, keeping the process in step
                left -= len(await stdout.readexactly(min(left, 1 << 16)))
            return GitObject(sha.decode(), kind.decode(), size, None)
        body = (await stdout.readexactly(size + 1))[:-1]
        return GitObject(sha.decode(), kind.decode(), size, body)

    async def end(self) -> None:
        """Kill and reap the process; the caller holds `lock`."""
        self.ended = True
        with contextlib.suppress(Exception):
            await GitRunner.stop(self.process)


class CommitReader:
    """Commits by revision, from the mirrors' long-lived `cat-file --batch` processes."""

    def __init__(self, git: GitRunner) -> None:
        self._git = git
        self._open: OrderedDict[Path, _Batch] = OrderedDict()
        self._starting = asyncio.Lock()
        self._ending: set[asyncio.Task[None]] = set()

    async def commit(self, repo: Path, rev: str) -> CommitInfo:
        """The commit `rev` names in `repo`; raises RevisionNotFound.

        Only a plain revision is asked (`revisions.is_plain_revision`): anything else,
        a message search `^{/REGEX}` or `:/REGEX` first, is not found without asking git.
        """
        if not is_plain_revision(rev):
            raise RevisionNotFound(f"{rev[:MAX_REVISION]!r} is not a plain revision")
        found = await self.read(repo, f"{rev}^{{commit}}", MAX_COMMIT_BYTES)
        if found is None or found.kind != "commit" or found.data is None:
            raise RevisionNotFound(f"no commit {rev!r} in this repository")
        return _parse(found.sha, found.data)

    async def read(self, repo: Path, name: str, limit: int) -> GitObject | None:
        """The object `name` (`REV:PATH`, `REV^{tree}`, a sha) in `repo`, or None if missing.

        Its data is read only up to `limit` bytes (else `data` is None). A "missing"
        from a process that may predate a fetch is asked again of a newer one, which
        concurrent askers share; a process that fails is ended and another asked.
        """
        question = name.encode()
        started_after = -math.inf
        for _ in range(2):
            batch = await self._batch(repo, started_after=started_after)
            async with batch.lock:
                try:
                    answer = await asyncio.wait_for(batch.ask(question, limit), ANSWER_TIMEOUT)
                except (EOFError, OSError, ValueError, TimeoutError, asyncio.IncompleteReadError):
                    self._forget(repo, batch)
                    await batch.end()
                    continue
                except asyncio.CancelledError:
                    batch.ended = True  # half answered: no later question may read the rest
                    self._retire(repo, batch)
                    raise
            if answer is not None:
                return answer
            if batch.started > time.monotonic() - 1.0:
                break  # a process started a moment ago said missing: it is
            started_after = batch.started
        return None

    async def _batch(self, repo: Path, *, started_after: float) -> _Batch:
        """The open process for `repo`, else a new one; one started after `started_after`."""
        self._end_stale()
        batch = self._usable(repo, started_after)
        if batch is None:
            async with self._starting:  # two starts for one repository would leak one
                batch = self._usable(repo, started_after)
                if batch is None:
                    while len(self._open) >= MAX_OPEN:
                        self._retire(*next(iter(self._open.items())))
                    process = await commands.cat_file_batch(self._git, repo)
                    batch = self._open[repo] = _Batch(process)
        self._open.move_to_end(repo)
        return batch

    def _usable(self, repo: Path, started_after: float) -> _Batch | None:
        batch = self._open.get(repo)
        if batch is None:
            return None
        if batch.ended or batch.process.returncode is not None or batch.started <= started_after:
            self._retire(repo, batch)
            return None
        return batch

    def _end_stale(self) -> None:
        at = time.monotonic()
        for path, batch in list(self._open.items()):
            if at - batch.used > IDLE or at - batch.started > MAX_AGE:
                self._retire(path, batch)

    def _forget(self, repo: Path, batch: _Batch) -> None:
        if self._open.get(repo) is batch:
            del self._open[repo]

    def _retire(self, repo: Path, batch: _Batch) -> None:
        """No new questions for `batch`; it ends once the ones already waiting are answered."""
        self._forget(repo, batch)
        task = asyncio.create_task(self._end_when_free(batch))
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    @staticmethod
    async def _end_when_free(batch: _Batch) -> None:
        async with batch.lock:
            await batch.end()

    async def close(self) -> None:
        """End every process."""
        for repo, batch in list(self._open.items()):
            self._retire(repo, batch)
        while self._ending:
            await asyncio.gather(*self._ending)


def _parse(sha: str, body: bytes) -> CommitInfo:
    headers, _, message = body.partition(b"\n\n")
    author = committer = b""
    for line in headers.split(b"\n"):
        if line.startswith(b"author ") and not author:
            author = line[len(b"author ") :]
        elif line.startswith(b"committer ") and not committer:
            committer = line[len(b"committer ") :]
    committed = _PERSON.fullmatch(committer)
    match = _PERSON.fullmatch(author)
    name, email, when = "", "", ""
    if match:
        name = match["name"].decode(errors="replace")
        email = match["email"].decode(errors="replace")
        tz = match["tz"].decode()
        offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5])) * (-1 if tz[0] == "-" else 1)
        stamp = datetime.fromtimestamp(int(match["when"]), UTC).astimezone(timezone(offset))
        when = stamp.isoformat()
    # git's %s: the first paragraph of the message, its lines joined by spaces.
    paragraph = message.lstrip(b"\n").split(b"\n\n", 1)[0]
    subject = b" ".join(line.strip() for line in paragraph.split(b"\n") if line.strip())
    commit_time = int(committed["when"]) if committed else 0
    return CommitInfo(sha, name, email, when, subject.decode(errors="replace"), commit_time)
