"""Commits read through one long-lived `git cat-file --batch` per mirror.

Starting a git process per request costs more than everything else EnsureRevision
does: under load the event loop waits for each fork. A mirror read often keeps one
`cat-file --batch` open and asks it over a pipe (a few tens of microseconds).

Freshness: git resolves refs from disk on every request (loose refs are re-read,
packed-refs re-checked by stat) and rescans packs when an object is missing, so a
fetch is seen at once. A "missing" answer is still asked again of a fresh process
before it counts, a process older than `MAX_AGE` is replaced (it may hold packs
that a repack deleted), one idle for `IDLE` is ended, and at most `MAX_OPEN` run.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from repodepot.git.errors import RevisionNotFound
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
    """One `git cat-file --batch` and the lock that keeps its questions in order."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lock = asyncio.Lock()
        self.started = self.used = time.monotonic()

    async def ask(self, name: bytes, limit: int) -> GitObject | None:
        """The object `name` names, or None when git says it is missing."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None
        assert stdout is not None
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


class CommitReader:
    """Commits by revision, from the mirrors' long-lived `cat-file --batch` processes."""

    def __init__(self, git: GitRunner) -> None:
        self._git = git
        self._open: OrderedDict[Path, _Batch] = OrderedDict()

    async def commit(self, repo: Path, rev: str) -> CommitInfo:
        """The commit `rev` names in `repo`; raises RevisionNotFound."""
        if not rev or rev.startswith("-") or ".." in rev or any(c < " " for c in rev):
            raise RevisionNotFound(f"{rev!r} is not a revision")
        found = await self.read(repo, f"{rev}^{{commit}}", MAX_COMMIT_BYTES)
        if found is None or found.kind != "commit" or found.data is None:
            raise RevisionNotFound(f"no commit {rev!r} in this repository")
        return _parse(found.sha, found.data)

    async def read(self, repo: Path, name: str, limit: int) -> GitObject | None:
        """The object `name` (`REV:PATH`, `REV^{tree}`, a sha) in `repo`, or None if missing.

        Its data is read only up to `limit` bytes (else `data` is None). A "missing"
        from a process that may predate a fetch is asked again of a fresh one.
        """
        question = name.encode()
        for fresh in (False, True):
            batch = await self._batch(repo, fresh=fresh)
            try:
                async with batch.lock:
                    answer = await asyncio.wait_for(batch.ask(question, limit), ANSWER_TIMEOUT)
            except (EOFError, OSError, ValueError, TimeoutError, asyncio.IncompleteReadError):
                await self._end(repo, batch)
                continue
            if answer is not None:
                return answer
            if batch.started > time.monotonic() - 1.0:
                break  # a process started a moment ago said missing: it is
        return None

    async def _batch(self, repo: Path, *, fresh: bool) -> _Batch:
        at = time.monotonic()
        for path, stale in list(self._open.items()):
            if at - stale.used > IDLE or at - stale.started > MAX_AGE:
                await self._end(path, stale)
        batch = self._open.get(repo)
        if batch is not None and (fresh or batch.process.returncode is not None):
            await self._end(repo, batch)
            batch = None
        if batch is None:
            while len(self._open) >= MAX_OPEN:
                oldest, victim = next(iter(self._open.items()))
                await self._end(oldest, victim)
            process = await self._git.start(["cat-file", "--batch"], git_dir=repo)
            batch = self._open[repo] = _Batch(process)
        self._open.move_to_end(repo)
        return batch

    async def _end(self, repo: Path, batch: _Batch) -> None:
        if self._open.get(repo) is batch:
            del self._open[repo]
        with contextlib.suppress(Exception):
            await GitRunner.stop(batch.process)

    async def close(self) -> None:
        """End every process."""
        for repo, batch in list(self._open.items()):
            await self._end(repo, batch)


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
