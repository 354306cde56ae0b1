"""Commits read through a pool of long-lived `git cat-file --batch`, one per mirror.

Starting a git process per request costs more than everything else EnsureRevision
does: under load the event loop waits for each fork. A mirror read often keeps one
`cat-file --batch` open and asks it over a pipe (a few tens of microseconds). Its
concurrent askers do not take turns: their questions are pipelined, many in the pipe
at once, and the answers handed back in order (`_batch.Batch`). Readers of different
mirrors start side by side; concurrent starts for one mirror share one process.

The pool is bounded by memory, not by a count: the readers' resident sets (their
process trees, measured from /proc at most every `measure_every` seconds, when a
reader is asked for) may sum to `budget_bytes`; past it the least recently used are
ended. A reader idle for `idle_ttl` is ended by a timer, with no request needed.
Hits, misses, evictions by reason and the pool's size go to a `PoolObserver`.

Freshness: git resolves refs from disk on every request (loose refs are re-read,
packed-refs re-checked by stat) and rescans packs when an object is missing, so a
fetch is seen at once. A "missing" answer is still asked again of a newer process
before it counts, and a process is replaced once the mirror's `objects/pack` directory
changed since it started (a repack or gc wrote a pack and may have deleted the packs
it holds open; a stat per question) or once it is `MAX_AGE` old. A reader leaving the
pool, for whatever reason, ends once the questions already pending are answered: none
is killed mid-answer, and an asker that went away has its answer read and dropped, so
no answer shifts. A process that dies or stalls fails its pending questions, which are
asked again of a new one.

A commit asked for by its full id is first read in-process from the mirror's packs and
loose objects (`git.packs.ObjectStore`, no process at all: about 0.1 ms for a mirror
never read before, where starting a sandboxed reader costs 5 to 15 ms of CPU); whatever
that reader does not answer, a missing commit included, is asked of the pool as before.

Only plain revisions reach `commit()` (`git.revisions`): git's message searches
(`^{/REGEX}`, `:/REGEX`) would run a backtracking regex over every commit.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Protocol

from repodepot.git import commands
from repodepot.git.errors import RevisionNotFound
from repodepot.git.packs import ObjectStore
from repodepot.git.revisions import MAX_REVISION, is_plain_revision
from repodepot.git.runner import GitRunner
from repodepot.gitserver._batch import Batch, GitObject
from repodepot.procfs import tree_resident_bytes

BUDGET = 256 << 20
IDLE_TTL = 300.0
MEASURE_EVERY = 1.0
MAX_AGE = 3600.0
# Not the bound (memory is): a backstop on pipes and child processes, should a burst
# of new repositories start more readers than one measure apart can see.
MAX_OPEN = 512
MAX_COMMIT_BYTES = 16 << 20
# Read in-process up to this size: a read runs on the event loop, so a larger commit (and
# its delta chain, at most 4x) is left to git.
IN_PROCESS_BYTES = 1 << 20
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


class PoolObserver(Protocol):
    """Told of the reader pool's lookups, evictions and size (`metrics.Metrics` is one)."""

    def reader_pool_lookup(self, *, hit: bool) -> None:
        """A reader was asked for: a hit found one running, a miss started one."""

    def reader_pool_eviction(self, reason: str) -> None:
        """A reader left the pool: `budget`, `idle`, `age` or `count` (`MAX_OPEN`)."""

    def reader_pool_size(self, *, readers: int, resident_bytes: int) -> None:
        """The pool now holds `readers`, last measured at `resident_bytes` together."""

    def commit_read(self, *, in_process: bool) -> None:
        """A commit asked for: read in-process (a full id in the packs), or of the pool."""


class _Unobserved:
    def reader_pool_lookup(self, *, hit: bool) -> None:
        pass

    def reader_pool_eviction(self, reason: str) -> None:
        pass

    def reader_pool_size(self, *, readers: int, resident_bytes: int) -> None:
        pass

    def commit_read(self, *, in_process: bool) -> None:
        pass


@dataclass(frozen=True, kw_only=True, slots=True)
class PooledReader:
    """A reader in the pool, as `CommitReader.readers()` lists it."""

    repo: Path
    pid: int
    resident_bytes: int  # as last measured; 0 until then
    answering: bool


class _Start:
    """A reader starting for one repository, and how many askers wait for it."""

    def __init__(self, task: asyncio.Task[Batch]) -> None:
        self.task = task
        self.waiting = 0


class CommitReader:
    """Commits by revision, from the mirrors' long-lived `cat-file --batch` processes.

    `measure(pid)` is a process tree's resident bytes (from /proc by default).
    """

    def __init__(
        self,
        git: GitRunner,
        *,
        budget_bytes: int = BUDGET,
        idle_ttl: float = IDLE_TTL,
        measure: Callable[[int], int] = tree_resident_bytes,
        measure_every: float = MEASURE_EVERY,
        observer: PoolObserver | None = None,
        in_process: bool = True,
    ) -> None:
        self._git = git
        self._objects = ObjectStore() if in_process else None
        self._budget = budget_bytes
        self._idle_ttl = idle_ttl
        self._measure = measure
        self._measure_every = measure_every
        self._observer: PoolObserver = observer or _Unobserved()
        self._open: OrderedDict[Path, Batch] = OrderedDict()  # least recently used first
        self._starting: dict[Path, _Start] = {}
        self._ending: set[asyncio.Task[None]] = set()
        self._measured_at = -math.inf
        self._sweeper: asyncio.TimerHandle | None = None

    async def commit(self, repo: Path, rev: str) -> CommitInfo:
        """The commit `rev` names in `repo`; raises RevisionNotFound.

        Only a plain revision is asked (`revisions.is_plain_revision`): anything else,
        a message search `^{/REGEX}` or `:/REGEX` first, is not found without asking git.
        """
        if not is_plain_revision(rev):
            raise RevisionNotFound(f"{rev[:MAX_REVISION]!r} is not a plain revision")
        if self._objects is not None:
            read = self._objects.read_commit(repo, rev, IN_PROCESS_BYTES)
            self._observer.commit_read(in_process=read is not None)
            if read is not None:
                return _parse(*read)
        found = await self.read(repo, f"{rev}^{{commit}}", MAX_COMMIT_BYTES)
        if found is None or found.kind != "commit" or found.data is None:
            raise RevisionNotFound(f"no commit {rev!r} in this repository")
        return _parse(found.sha, found.data)

    async def read(self, repo: Path, name: str, limit: int) -> GitObject | None:
        """The object `name` (`REV:PATH`, `REV^{tree}`, a sha) in `repo`, or None if missing.

        Its data is read only up to `limit` bytes (else `data` is None). A "missing"
        from a process that may predate a fetch is asked again of a newer one, which
        concurrent askers share; a process that fails is ended and another asked. A
        name with a newline, two questions to git, is missing without asking.
        """
        question = name.encode()
        if b"\n" in question:  # two answers: every later one would shift
            return None
        started_after = -math.inf
        for _ in range(2):
            batch, started = await self._batch(repo, started_after=started_after)
            try:
                answer = await batch.ask(question, limit, held=started)
            except EOFError:  # it failed (and ended) or was ended: ask a new one
                self._forget(repo, batch)
                continue
            if answer is not None:
                return answer
            if batch.started > time.monotonic() - 1.0:
                break  # a process started a moment ago said missing: it is
            started_after = batch.started
        return None

    def readers(self) -> list[PooledReader]:
        """The readers in the pool, least recently used first."""
        return [
            PooledReader(
                repo=repo,
                pid=batch.process.pid,
                resident_bytes=batch.resident,
                answering=batch.answering,
            )
            for repo, batch in self._open.items()
        ]

    async def _batch(self, repo: Path, *, started_after: float) -> tuple[Batch, bool]:
        """The open process for `repo`, else a new one; one started after `started_after`.

        True with a new one: it was held for the caller, who must ask it next. Only this
        repository's reader is checked for age here: the others are ended when due by the
        sweep's timer, so a lookup costs the same with 1 or 500 readers.
        """
        batch = self._usable(repo, started_after)
        hit = batch is not None
        if batch is None:
            batch = await self._start(repo)
        if self._open.get(repo) is batch:  # else retired while starting: it still answers
            self._open.move_to_end(repo)
        batch.used = time.monotonic()
        self._observer.reader_pool_lookup(hit=hit)
        self._keep_in_budget(keep=repo)
        self._sweep_later()
        return batch, not hit

    async def _start(self, repo: Path) -> Batch:
        """A new reader for `repo`, once its last was retired or never was.

        Concurrent starts for one repository share one process (a second would leak);
        other repositories' start beside it. It is newer than any reader `repo` had, and
        held for each caller until it asks (`Batch.ask(held=True)`): retired meanwhile,
        by other starts past MAX_OPEN or the budget, it still answers them.
        """
        start = self._starting.get(repo)
        if start is None:
            self._make_room()
            start = self._starting[repo] = _Start(asyncio.create_task(self._spawn(repo)))
            start.task.add_done_callback(lambda _: self._starting.pop(repo, None))
        start.waiting += 1
        try:
            # Shielded: an asker that goes away leaves the start to the others, and the pool.
            return await asyncio.shield(start.task)
        except asyncio.CancelledError:
            if not start.task.done():
                start.waiting -= 1
            elif not start.task.cancelled() and start.task.exception() is None:
                start.task.result().release()  # held for this asker, who will not ask
            raise

    async def _spawn(self, repo: Path) -> Batch:
        packs = _packs(repo)
        process = await commands.cat_file_batch(self._git, repo)
        self._make_room()  # others may have started meanwhile
        batch = self._open[repo] = Batch(process, packs, held=self._starting[repo].waiting)
        return batch

    def _make_room(self) -> None:
        """Retire the least recently used while the readers open and starting reach MAX_OPEN."""
        while self._open and len(self._open) + len(self._starting) >= MAX_OPEN:
            self._retire(*next(iter(self._open.items())), reason="count")

    def _usable(self, repo: Path, started_after: float) -> Batch | None:
        batch = self._open.get(repo)
        if batch is None:
            return None
        if batch.ended or batch.process.returncode is not None:
            self._retire(repo, batch)
            return None
        if (
            batch.started <= started_after
            or time.monotonic() - batch.started >= MAX_AGE
            or _packs(repo) != batch.packs
        ):
            self._retire(repo, batch, reason="age")
            return None
        return batch

    def _keep_in_budget(self, *, keep: Path) -> None:
        """Past the budget, retire the least recently used readers until under it.

        The readers are measured at most every `measure_every`, and `keep`, the one
        just asked for, stays even alone over the budget.
        """
        at = time.monotonic()
        if at - self._measured_at < self._measure_every:
            return
        self._measured_at = at
        for batch in self._open.values():
            batch.resident = self._measure(batch.process.pid)
        total = sum(batch.resident for batch in self._open.values())
        for repo, batch in list(self._open.items()):
            if total <= self._budget:
                break
            if repo != keep:
                self._retire(repo, batch, reason="budget")
                total -= batch.resident
        self._report()

    def _end_stale(self) -> None:
        at = time.monotonic()
        for repo, batch in list(self._open.items()):
            if at - batch.started >= MAX_AGE:
                self._retire(repo, batch, reason="age")
            elif at - batch.used >= self._idle_ttl:
                self._retire(repo, batch, reason="idle")

    def _sweep_later(self) -> None:
        """End idle and old readers when they are due, even if no request comes."""
        if self._sweeper is not None or not self._open:
            return
        due = min(
            min(batch.started + MAX_AGE, batch.used + self._idle_ttl)
            for batch in self._open.values()
        )
        delay = max(0.0, due - time.monotonic()) + 0.01  # timers may fire a hair early
        self._sweeper = asyncio.get_running_loop().call_later(delay, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        self._end_stale()
        self._report()
        self._sweep_later()

    def _report(self) -> None:
        resident = sum(batch.resident for batch in self._open.values())
        self._observer.reader_pool_size(readers=len(self._open), resident_bytes=resident)

    def _forget(self, repo: Path, batch: Batch) -> bool:
        if self._open.get(repo) is batch:
            del self._open[repo]
            return True
        return False

    def _retire(self, repo: Path, batch: Batch, reason: str | None = None) -> None:
        """No new questions for `batch`; it ends once the ones already waiting are answered.

        `reason` counts it as an eviction (a reader that failed or ended is not one).
        """
        if self._forget(repo, batch) and reason is not None:
            self._observer.reader_pool_eviction(reason)
        task = asyncio.create_task(batch.end_when_answered())
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    async def close(self) -> None:
        """End every process."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        await asyncio.gather(*(s.task for s in self._starting.values()), return_exceptions=True)
        for repo, batch in list(self._open.items()):
            self._retire(repo, batch)
        self._report()
        while self._ending:
            await asyncio.gather(*self._ending)
        if self._objects is not None:
            self._objects.close()


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
        when = datetime.fromtimestamp(int(match["when"]), _zone(match["tz"])).isoformat()
    # git's %s: the first paragraph of the message, its lines joined by spaces.
    paragraph = message.lstrip(b"\n").split(b"\n\n", 1)[0]
    subject = b" ".join(line.strip() for line in paragraph.split(b"\n") if line.strip())
    commit_time = int(committed["when"]) if committed else 0
    return CommitInfo(sha, name, email, when, subject.decode(errors="replace"), commit_time)


@functools.lru_cache(maxsize=64)
def _zone(tz: bytes) -> timezone:
    """`+0200` as a time zone (cached: a lookup's costliest part was building it)."""
    offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[3:5]))
    return timezone(-offset if tz[:1] == b"-" else offset)


def _packs(repo: Path) -> tuple[int, int]:
    """The pack directory's identity and last change: a repack or gc moves it."""
    try:
        status = os.stat(f"{repo}/objects/pack")  # a stat per question: no Path built
    except OSError:
        return (-1, -1)
    return (status.st_ino, status.st_mtime_ns)
