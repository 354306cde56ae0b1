"""What every background loop shares: who it is, how it runs, how it keeps its leases.

- `new_worker_id()`: `host:pid:nonce`, the owner name written into leases and jobs, so
  that anyone on the same host can tell whether the owner still lives (`died_here`).
- `BackgroundLoop`: `run()` calls `step()` when woken or when its interval (with
  jitter) has passed, until `stop()`; a step that raises is logged and the loop goes on.
  A loop given `changed` (a look that costs no query) sleeps instead until woken, until
  the due time its step returned, or until `ceiling`, stepping early when `changed()`.
- `renewing()`: a lease renewed in the background while a block runs.

A leaf: it imports nothing of repodepot's domain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import datetime

from repodepot.clock import now

logger = logging.getLogger(__name__)


def new_worker_id() -> str:
    """`host:pid:nonce`: enough for recovery to tell whether the worker still lives."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def died_here(worker_id: str | None) -> bool:
    """Whether `worker_id` names a process on this host that is gone (a crash, `kill -9`).

    False for other hosts' workers and for ids not made by `new_worker_id`: only a lease
    expiry can tell about those.
    """
    host, _, rest = (worker_id or "").partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # someone else's live process
    return False


def until_due(at: datetime | None, *, busy: bool, interval: float) -> float | None:
    """What a loop's `step` returns for `at`, the next due item's time (None: none).

    An item due but not started (no free slot, or its claim lost a race) is looked at
    again when a running one ends (`busy`), else after `interval`.
    """
    if at is None:
        return None
    due_in = (at - now()).total_seconds()
    if due_in <= 0:
        return None if busy else interval
    return due_in


async def cancel_all(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel the tasks and wait for each to end (a loop's `stopped`)."""
    running = list(tasks)
    for task in running:
        task.cancel()
    for task in running:
        with contextlib.suppress(asyncio.CancelledError):
            await task


class BackgroundLoop:
    """A loop that does `step()` when woken or every `interval` seconds, until stopped.

    With `changed`, an idle loop does not poll: after a step it sleeps until woken, until
    the seconds the step returned (its next known due time) or `ceiling` have passed, and
    every `interval` in between it only asks `changed()` (whether what it reads may have
    moved, e.g. the SQLite files; false when wake-ups arrive by themselves), stepping
    early when that says so.
    """

    name = "loop"

    def __init__(
        self,
        *,
        interval: float,
        jitter: float = 0.0,
        ceiling: float | None = None,
        changed: Callable[[], bool] | None = None,
    ) -> None:
        self.interval = interval
        self.jitter = jitter
        self.ceiling = interval if ceiling is None or changed is None else max(ceiling, interval)
        self._changed = changed
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        # Its own generator: the jitter must not draw from (or disturb) the global one.
        self._random = random.Random()

    @property
    def stopping(self) -> bool:
        """Whether `stop()` was called: long steps check it between items."""
        return self._stopping.is_set()

    def wake(self) -> None:
        """Step now (or as soon as the running step ends)."""
        self._wake.set()

    async def starting(self) -> None:
        """Once, before the first step (recovery after a crash goes here)."""

    async def step(self) -> float | None:
        """One round of the loop's work; the seconds until its next known due time, or None."""
        raise NotImplementedError

    async def stopped(self) -> None:
        """Once, when `stop()` is called: give back what is held."""

    async def run(self) -> None:
        """`starting()`, then `step()` when woken or when the interval passes, until stopped."""
        await self._guarded(self.starting)
        while not self._stopping.is_set():
            self._wake.clear()  # before the step: a wake during it brings the next one
            if self._changed is not None:
                self._changed()  # what the step reads is the baseline of the next look
            due_in = await self._guarded(self.step, failed=self.interval)
            if self._stopping.is_set():
                break
            await self._idle(due_in)

    async def _idle(self, due_in: float | None) -> None:
        """Wait until woken, until `due_in` seconds, the ceiling, or a change is seen."""
        spread = self._random.uniform(1 - self.jitter, 1 + self.jitter)
        until = time.monotonic() + self.ceiling * spread
        if due_in is not None:
            until = min(until, time.monotonic() + max(due_in, 0.0))
        while (left := until - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, self.interval * spread)):
                    await self._wake.wait()
                    return
            if self._changed is not None and self._changed():
                return

    async def stop(self) -> None:
        """End after the current step; `stopped()` gives back what is held."""
        self._stopping.set()
        self._wake.set()
        await self.stopped()

    async def _guarded(
        self, work: Callable[[], Awaitable[float | None]], failed: float | None = None
    ) -> float | None:
        # A database hiccup or a bug in one round must not end the loop: logged, and the
        # next round tries again (after `failed` seconds).
        try:
            return await work()
        except Exception:
            logger.exception(
                "%s round failed", self.name, extra={"action": f"{self.name}.round_failed"}
            )
            return failed


@asynccontextmanager
async def renewing(renew: Callable[[], Awaitable[object]], every: float) -> AsyncIterator[None]:
    """Call `renew()` every `every` seconds while the block runs (a lease kept alive)."""

    async def keep() -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await renew()
            except Exception:  # a missed renewal is retried; the lease outlives a few
                logger.warning("lease renewal failed", exc_info=True, extra={"action": "lease"})

    task = asyncio.create_task(keep())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
