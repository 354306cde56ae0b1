"""A module zip written in a worker thread and streamed to the client as it grows."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from repodepot.git import commands
from repodepot.git.runner import GitRunner
from repodepot.goproxy import modzip

logger = logging.getLogger(__name__)


class _Stopped(Exception):
    """The reader went away (the client disconnected)."""


async def stream_zip(
    git: GitRunner,
    git_dir: Path,
    prefix: str,
    files: list[modzip.Entry],
    *,
    temporary: Path,
    target: Path,
) -> AsyncIterator[bytes]:
    """The zip's bytes as a thread writes them; renamed from `temporary` to `target` once whole.

    The writer waits when the reader is behind (16 chunks of 256 KiB), and stops when the
    reader goes away (the client disconnected): memory does not grow with the module.
    """
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=16)
    stopped = threading.Event()

    def deliver(item: bytes | BaseException | None) -> None:
        while not stopped.is_set():
            try:
                chunks.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        raise _Stopped

    def produce() -> None:
        process = commands.cat_file_batch_blocking(git, git_dir)
        try:
            tee = modzip.Tee(temporary, deliver)
            try:
                modzip.write_zip(tee, prefix, files, process)
            finally:
                tee.close()
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(temporary, target)
            deliver(None)
        except BaseException as error:  # handed to the reader
            temporary.unlink(missing_ok=True)
            if not isinstance(error, _Stopped) and not stopped.is_set():
                logger.exception("module zip failed", extra={"action": "goproxy.zip_failed"})
                deliver(error)
        finally:
            GitRunner.kill_group(process)

    threading.Thread(target=produce, name="modzip", daemon=True).start()
    try:
        while True:
            item = await asyncio.to_thread(chunks.get)
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stopped.set()
