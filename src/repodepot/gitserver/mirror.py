"""A mirror on disk: clone it, fetch it, and tell whether its refs changed.

- Clone: `git clone --mirror` into `tmp/`, renamed into place (never half-visible).
- Fetch: `git fetch --prune --atomic` of heads and tags by URL, so a mirror made by
  an import (`clone --bare`) and one made here are updated alike, and either every
  ref moves or none does.
- Change: a digest of `for-each-ref` before and after.
- Stalls: no fixed timeout; a clone or fetch with no progress output for
  `stall_timeout` seconds is killed (its process group) and reported as a timeout.
- Outbound: every clone and fetch, whether its URL came from a user (an import) or from
  a code host's API, is checked by the outbound policy and pinned to the addresses
  checked, with redirects off (`repodepot.outbound`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from repodepot.git import commands
from repodepot.git.errors import GitTimeout
from repodepot.git.runner import NO_TIMEOUT, Credentials, GitRunner, StderrSink
from repodepot.git.urls import parse_source
from repodepot.outbound import Policy
from repodepot.repositories import MirrorFacts
from repodepot.settings import Settings
from repodepot.storage import Storage

REFSPECS = ("+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*")


class GitStalled(GitTimeout):
    """A clone or fetch printed no progress for the stall timeout and was killed."""

    def __init__(self, what: str, seconds: float) -> None:
        super().__init__([what], seconds)
        self.message = f"git {what} made no progress for {seconds:g} s and was killed"
        self.args = (self.message,)


@dataclass(frozen=True, kw_only=True, slots=True)
class Upstream:
    """Where a mirror comes from, and the credentials its origin gets (None: none)."""

    url: str
    credentials: Credentials | None = None
    # Whose they are: the repository's own ("repository") or its code host
    # connection's ("connection"); what to replace when the host refuses them.
    credential_of: str | None = None


async def facts(git: GitRunner, path: Path) -> MirrorFacts:
    """The mirror's default branch (its HEAD), emptiness and size on disk."""
    return MirrorFacts(
        default_branch=await commands.head_branch(git, path),
        is_empty=await commands.is_empty(git, path),
        size_bytes=await asyncio.to_thread(Storage.size_of, path),
    )


async def _pin(upstream: Upstream, settings: Settings) -> list[tuple[str, str]]:
    # Resolved again at every fetch: a later DNS answer pointing inside is refused,
    # and git connects only to the addresses checked here.
    source = parse_source(upstream.url, settings.allowed_schemes)
    return await Policy.from_settings(settings).git_config(source.url)


async def clone(
    git: GitRunner, storage: Storage, repository_id: int, upstream: Upstream, *, settings: Settings
) -> None:
    """A new mirror of `upstream` for repository `repository_id`.

    Raises InvalidInput (the outbound policy refused the URL) or GitError.
    """
    config = await _pin(upstream, settings)
    async with storage.staging(repository_id, label=f"mirror-{repository_id}") as staged:
        await _watched(
            lambda sink: commands.clone_bare(
                git,
                upstream.url,
                staged,
                credentials=upstream.credentials,
                on_progress=sink,
                mirror=True,
                timeout=NO_TIMEOUT,
                config=config,
            ),
            settings.update_stall_timeout,
            "clone",
        )


async def fetch(git: GitRunner, path: Path, upstream: Upstream, *, settings: Settings) -> None:
    """Bring the mirror at `path` up to date: heads, tags and the extra refspecs, pruned.

    Raises InvalidInput (the outbound policy refused the URL) or GitError.
    """
    config = await _pin(upstream, settings)
    await _watched(
        lambda sink: commands.fetch(
            git,
            path,
            upstream.url,
            [*REFSPECS, *settings.fetch_extra_refspecs],
            credentials=upstream.credentials,
            on_progress=sink,
            timeout=NO_TIMEOUT,
            config=config,
        ),
        settings.update_stall_timeout,
        "fetch",
    )


async def _watched(
    start: Callable[[StderrSink], Awaitable[object]], stall_timeout: float, what: str
) -> None:
    """Run the git call; kill it when its progress output stops for `stall_timeout`."""
    last = time.monotonic()

    def seen(_chunk: bytes) -> None:
        nonlocal last
        last = time.monotonic()

    task = asyncio.ensure_future(start(seen))
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=min(1.0, stall_timeout))
            if done:
                task.result()
                return
            if time.monotonic() - last > stall_timeout:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise GitStalled(what, stall_timeout)
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
