"""One `git cat-file --batch`, asked many questions at once.

git answers a batch's questions in order, so no question waits for another's answer:
askers queue theirs (at most `MAX_PENDING` per process; past it they wait), one writer
task writes everything queued since its last write in one `write()`, and one reader
task reads the answers in the same order and hands each to its asker. An answer is
always read in full, whether or not its asker still waits (a cancelled asker's is
dropped), so answers never shift. A process that dies, answers something unexpected
or takes `ANSWER_TIMEOUT` over one answer is killed, and every question still pending
fails with EOFError: its asker asks again of another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections import deque
from dataclasses import dataclass

from repodepot.git.runner import GitRunner

MAX_PENDING = 1000
ANSWER_TIMEOUT = 10.0
_SKIP_CHUNK = 1 << 16
_SHA = re.compile(rb"[0-9a-f]{40}")
# What a failing or misbehaving process raises while its answers are read or written.
_BROKEN = (
    EOFError,
    OSError,
    ValueError,
    asyncio.IncompleteReadError,
    asyncio.LimitOverrunError,
)


@dataclass(frozen=True, slots=True)
class GitObject:
    """An object as `cat-file --batch` answers it; `data` is None when it was over the limit."""

    sha: str
    kind: str
    size: int
    data: bytes | None


class Batch:
    """A started `git cat-file --batch`, its questions pipelined (see the module docstring).

    `started` and `used` are `time.monotonic()` stamps, `packs` the identity of the pack
    directory when it started and `resident` its process tree's last measured RSS; the
    pool keeps them. `held` counts the askers it was started for: it does not end before
    each has asked (`ask(held=True)`) or gone (`release()`).
    """

    def __init__(
        self, process: asyncio.subprocess.Process, packs: tuple[int, int], *, held: int = 0
    ) -> None:
        assert process.stdin is not None
        assert process.stdout is not None
        self.process = process
        self.packs = packs
        self.started = self.used = time.monotonic()
        self.ended = False
        self.resident = 0
        self._stdin = process.stdin
        self._stdout = process.stdout
        # In the order asked, which is the order written and answered.
        self._pending: deque[tuple[int, asyncio.Future[GitObject | None]]] = deque()
        self._unwritten: list[bytes] = []
        self._asked = asyncio.Event()  # set: questions wait to be written
        self._busy = asyncio.Event()  # set: answers wait to be read
        # Askers it was started for, who ask next: it is not ended before they do.
        self._held = held
        self._idle = asyncio.Event()  # set: none pending nor held
        if not held:
            self._idle.set()
        self._room = asyncio.Event()  # set: fewer than MAX_PENDING pending
        self._room.set()
        # One timer watches for a stall, not one per answer: an answer's clock starts
        # when the one before it was read (or, the first, when it was asked).
        self._loop = asyncio.get_running_loop()
        self._progress = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._stalled = False
        self._tasks = (
            asyncio.create_task(self._write_questions()),
            asyncio.create_task(self._read_answers()),
        )

    @property
    def answering(self) -> bool:
        """Whether questions are pending (asked and not yet answered)."""
        return bool(self._pending)

    async def ask(self, name: bytes, limit: int, *, held: bool = False) -> GitObject | None:
        """The object `name` names (its data up to `limit` bytes), None when git says missing.

        `name` holds no newline; `held`: it was held for this asker (`release()`s it).
        Raises EOFError when the process failed or was ended before answering: ask another.
        """
        try:
            while len(self._pending) >= MAX_PENDING and not self.ended:
                self._room.clear()
                await self._room.wait()
        finally:
            if held:
                self.release()
        if self.ended:
            raise EOFError("git cat-file was ended")
        answer: asyncio.Future[GitObject | None] = self._loop.create_future()
        if not self._pending:
            self._progress = self._loop.time()
            if self._watchdog is None:
                self._watchdog = self._loop.call_at(self._progress + ANSWER_TIMEOUT, self._watch)
        self._pending.append((limit, answer))
        self._unwritten.append(name)
        self._asked.set()
        self._busy.set()
        self._idle.clear()
        self.used = time.monotonic()
        return await answer

    def release(self) -> None:
        """One asker it was held for will not ask (or now has)."""
        self._held -= 1
        if not self._held and not self._pending:
            self._idle.set()

    async def end_when_answered(self) -> None:
        """End the process once the questions pending are answered and none is held."""
        while (self._pending or self._held) and not self.ended:
            await self._idle.wait()
        await self.end()

    async def end(self) -> None:
        """Kill and reap the process; questions still pending fail with EOFError."""
        self._stop("git cat-file was ended")
        others = [task for task in self._tasks if task is not asyncio.current_task()]
        await asyncio.gather(*others, return_exceptions=True)
        with contextlib.suppress(Exception):
            await GitRunner.stop(self.process)

    def _stop(self, reason: str) -> None:
        """Take no more questions, fail the pending ones and cancel the tasks, once.

        The first to stop cancels both tasks but itself: a task that failed ends the
        process, and the other, cancelled, never waits for it in turn.
        """
        if self.ended:
            return
        self.ended = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        for task in self._tasks:
            if task is not asyncio.current_task():
                task.cancel()
        while self._pending:
            _, answer = self._pending.popleft()
            if not answer.done():
                answer.set_exception(EOFError(reason))
        self._unwritten.clear()
        self._idle.set()
        self._room.set()  # the askers waiting for room see it ended

    async def _write_questions(self) -> None:
        try:
            while True:
                await self._asked.wait()
                self._asked.clear()
                self._unwritten.append(b"")  # the last question's newline
                questions = b"\n".join(self._unwritten)
                self._unwritten.clear()
                self._stdin.write(questions)
                await self._stdin.drain()
        except _BROKEN:
            pass  # the process failed: ended below
        finally:
            if not self.ended:  # whatever stopped this task, none may wait for ever
                await self.end()

    async def _read_answers(self) -> None:
        pending = self._pending
        try:
            while True:
                if not pending:
                    self._busy.clear()
                    if not self._held:
                        self._idle.set()
                    await self._busy.wait()
                    continue
                found = await self._answer(pending[0][0])
                self._progress = self._loop.time()
                _, answer = pending.popleft()
                self._room.set()
                if not answer.done():  # else its asker was cancelled: dropped
                    answer.set_result(found)
        except _BROKEN:
            pass  # the process failed: ended below
        except asyncio.CancelledError:
            if not self._stalled:  # else the watchdog's: ended below
                raise
        finally:
            if not self.ended:  # whatever stopped this task, none may wait for ever
                await self.end()

    def _watch(self) -> None:
        """End a process that answered nothing for `ANSWER_TIMEOUT` while questions waited."""
        self._watchdog = None
        if not self._pending or self.ended:
            return
        due = self._progress + ANSWER_TIMEOUT
        if self._loop.time() < due:
            self._watchdog = self._loop.call_at(due, self._watch)
            return
        self._stalled = True
        self._tasks[1].cancel()  # the reader, which ends it

    async def _answer(self, limit: int) -> GitObject | None:
        """The next answer, read whole: "<name> missing", or a header and size + 1 bytes."""
        header = (await self._stdout.readuntil(b"\n"))[:-1].split(b" ")
        if header[-1] in (b"missing", b"ambiguous"):
            return None
        if len(header) != 3 or not _SHA.fullmatch(header[0]):
            raise EOFError("git cat-file answered something unexpected")
        sha, kind, size = header[0].decode(), header[1].decode(), int(header[2])
        if size > limit:
            left = size + 1
            while left:  # skip it, keeping the process in step
                left -= len(await self._stdout.readexactly(min(left, _SKIP_CHUNK)))
            return GitObject(sha, kind, size, None)
        body = await self._stdout.readexactly(size + 1)
        return GitObject(sha, kind, size, body[:-1])
