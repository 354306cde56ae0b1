"""What every background loop shares: who it is, how it runs, how it keeps its leases.

- `new_worker_id()`: `host:pid:nonce`, the owner name written into leases and jobs, so
  that anyone on the same host can tell whether the owner still lives (`died_here`).
- `BackgroundLoop`: `run()` calls `step()` when woken or when its interval (with
  jitter) has passed, until `stop()`; a step that raises is logged and the loop goes on.
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
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

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


class BackgroundLoop:
    """A loop that does `step()` when woken or every `interval` seconds, until stopped."""

    name = "loop"

    def __init__(self, *, interval: float, jitter: float = 0.0) -> None:
        self.interval = interval
        self.jitter = jitter
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

    async def step(self) -> None:
        """One round of the loop's work."""
        raise NotImplementedError

    async def stopped(self) -> None:
        """Once, when `stop()` is called: give back what is held."""

    async def run(self) -> None:
        """`starting()`, then `step()` when woken or when the interval passes, until stopped."""
        await self._guarded(self.starting)
        while not self._stopping.is_set():
            self._wake.clear()  # before the step: a wake during it brings the next one
            await self._guarded(self.step)
            if self._stopping.is_set():
                break
            pause = self.interval * self._random.uniform(1 - self.jitter, 1 + self.jitter)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._wake.wait()

    async def stop(self) -> None:
        """End after the current step; `stopped()` gives back what is held."""
        self._stopping.set()
        self._wake.set()
        await self.stopped()

    async def _guarded(self, work: Callable[[], Awaitable[None]]) -> None:
        # A database hiccup or a bug in one round must not end the loop: logged, and the
        # next round tries again.
        try:
            await work()
        except Exception:
            logger.exception(
                "%s round failed", self.name, extra={"action": f"{self.name}.round_failed"}
            )


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
