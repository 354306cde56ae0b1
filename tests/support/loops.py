"""A background loop run for the length of a block, then stopped as the app stops it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from repodepot.loops import BackgroundLoop


@contextlib.asynccontextmanager
async def running(loop: BackgroundLoop) -> AsyncIterator[None]:
    """Run `loop` while the block runs; then `stop()` it and end its task."""
    task = asyncio.create_task(loop.run())
    try:
        yield
    finally:
        await loop.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
