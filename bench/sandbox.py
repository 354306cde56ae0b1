"""What the bubblewrap sandbox costs a git read: the same runner with and without it."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.common import plain_git
from bench.runner import row
from repodepot.git.runner import GitRunner
from repodepot.git.sandbox import Sandbox
from repodepot.gitserver.catfile import CommitReader
from repodepot.settings import process_path
from tests.support.repogen import Spec, generate

RUNS = 200

Work = Callable[[GitRunner], Awaitable[object]]


async def _pair(
    runs: int, plain: GitRunner, boxed: GitRunner, work: Work
) -> tuple[list[float], ...]:
    # Interleaved, so drift (page cache, other load) hits both alike.
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(runs):
        for runner, into in ((boxed, samples[0]), (plain, samples[1])):
            started = time.perf_counter()
            await work(runner)
            into.append(time.perf_counter() - started)
    return samples


async def run() -> list[str]:
    scratch = Path(tempfile.mkdtemp(prefix="repodepot-bench-"))
    try:
        repo = generate(scratch / "bench.git", Spec(commits=20_000, files=200, blob_bytes=256))
        plain_git("-C", str(repo), "repack", "-adq")
        plain = GitRunner(runtime_dir=scratch / "plain", path=process_path())
        sha = (await plain.run(["rev-parse", "HEAD"], git_dir=repo)).stdout.decode().strip()
        boxed = GitRunner(
            runtime_dir=scratch / "boxed",
            path=process_path(),
            sandbox=Sandbox.locate(process_path()),
        )
        warm = {runner: CommitReader(runner) for runner in (plain, boxed)}

        async def rev_parse(runner: GitRunner) -> object:
            return await runner.run(["rev-parse", "HEAD"], git_dir=repo)

        async def log_one(runner: GitRunner) -> object:
            return await runner.run(["log", "-1", "--format=%H %s"], git_dir=repo)

        async def reader_start(runner: GitRunner) -> object:
            # An EnsureRevision miss: a reader that has not started yet (or was retired).
            reader = CommitReader(runner)
            try:
                return await reader.commit(repo, sha)
            finally:
                await reader.close()

        async def reader_warm(runner: GitRunner) -> object:
            return await warm[runner].commit(repo, sha)

        cases: list[tuple[str, int, Work]] = [
            ("exec-like: `rev-parse HEAD`", RUNS, rev_parse),
            ("exec-like: `log -1`", RUNS, log_one),
            ("EnsureRevision miss: a new `cat-file --batch` reader", RUNS, reader_start),
            ("EnsureRevision hit: the long-lived reader", RUNS * 10, reader_warm),
        ]
        lines = [
            "| case | runs | bwrap p50 / p95 / p99 ms | plain p50 / p95 / p99 ms | ratio (p50) |",
            "|---|---|---|---|---|",
        ]
        for name, runs, work in cases:
            await work(boxed)  # warm the page cache
            await work(plain)
            sandboxed, unsandboxed = await _pair(runs, plain, boxed, work)
            lines.append(row(name, sandboxed, unsandboxed))
        for reader in warm.values():
            await reader.close()
        return lines
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
