"""Typed git operations on top of the runner. Callers never build argv themselves."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path

from repodepot.git.errors import RevisionNotFound
from repodepot.git.runner import Credentials, GitRunner, StderrSink
from repodepot.types import Sha

_SHA = re.compile(r"[0-9a-f]{40}")


async def clone_bare(
    runner: GitRunner,
    url: str,
    dest: Path,
    *,
    credentials: Credentials | None = None,
    on_progress: StderrSink | None = None,
    mirror: bool = False,
    timeout: float | None = None,
    config: Sequence[tuple[str, str]] = (),
) -> None:
    """Clone `url` into the new bare repository `dest` (HEAD follows the remote's default).

    `config` reaches git through the environment (the outbound pins among it).
    Raises GitCommandError (with credentials redacted) when the clone fails.
    """
    mode = "--mirror" if mirror else "--bare"
    await runner.run(
        ["clone", mode, "--progress", "--", url, str(dest)],
        credentials=credentials,
        on_stderr=on_progress,
        timeout=timeout,
        config=config,
    )


async def fetch(
    runner: GitRunner,
    repo: Path,
    url: str,
    refspecs: Sequence[str],
    *,
    credentials: Credentials | None = None,
    on_progress: StderrSink | None = None,
    timeout: float | None = None,
    config: Sequence[tuple[str, str]] = (),
) -> None:
    """Fetch `refspecs` from `url` into `repo`, pruned and atomic: every ref moves or none.

    `config` reaches git through the environment (the outbound pins among it).
    Raises GitCommandError (with credentials redacted) when the fetch fails.
    """
    await runner.run(
        [
            "fetch",
            "--prune",
            "--atomic",
            "--progress",
            "--no-write-fetch-head",
            "--",
            url,
            *refspecs,
        ],
        git_dir=repo,
        credentials=credentials,
        on_stderr=on_progress,
        timeout=timeout,
        config=config,
    )


async def rev_parse(runner: GitRunner, repo: Path, rev: str) -> Sha:
    """The commit `rev` names in `repo`; raises RevisionNotFound."""
    if rev.startswith("-"):
        raise RevisionNotFound(f"{rev!r} is not a revision")
    result = await runner.run(
        ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
        git_dir=repo,
        check=False,
    )
    sha = result.stdout.decode().strip()
    if result.returncode != 0 or not _SHA.fullmatch(sha):
        raise RevisionNotFound(f"no commit {rev!r} in this repository")
    return Sha(sha)


async def head_branch(runner: GitRunner, repo: Path) -> str | None:
    """The branch HEAD points to (`main`), or None when HEAD is detached."""
    result = await runner.run(
        ["symbolic-ref", "--quiet", "--short", "HEAD"], git_dir=repo, check=False
    )
    name = result.stdout.decode().strip()
    return name if result.returncode == 0 and name else None


async def is_empty(runner: GitRunner, repo: Path) -> bool:
    """Whether `repo` has no refs at all."""
    result = await runner.run(["for-each-ref", "--count=1", "--format=%(refname)"], git_dir=repo)
    return not result.stdout.strip()


async def refs_digest(runner: GitRunner, repo: Path) -> str:
    """A digest of every ref and the object it points to: equal digests, equal refs."""
    result = await runner.run(["for-each-ref", "--format=%(objectname) %(refname)"], git_dir=repo)
    return hashlib.sha256(result.stdout).hexdigest()


async def is_connected(runner: GitRunner, repo: Path) -> bool:
    """Whether every ref's history is present (`fsck --connectivity-only`)."""
    result = await runner.run(
        ["fsck", "--connectivity-only", "--no-progress"], git_dir=repo, check=False
    )
    return result.returncode == 0


async def maintain(runner: GitRunner, repo: Path) -> None:
    """Pack loose objects, repack incrementally, write the commit-graph with Bloom filters.

    Raises GitCommandError when a step fails.
    """
    await runner.run(
        ["maintenance", "run", "--task=loose-objects", "--task=incremental-repack", "--quiet"],
        git_dir=repo,
    )
    await runner.run(
        ["commit-graph", "write", "--reachable", "--changed-paths", "--no-progress"],
        git_dir=repo,
    )
