"""Benchmark 1 of the seed: a commit lookup through the reader pool, cold against hot.

On generated repositories of 500, 10,000 and 100,000 commits, 1, 10 and 50 concurrent
clients look up random commits of the history (`CommitReader.commit`, as
EnsureRevision does), through the bwrap sandbox as deployed:

- hot: the pool holds a live reader for the repository;
- cold: it holds none, so the lookup starts one. Each cold lookup names the
  repository by a path of its own (a symlink), so every one misses in one shared pool
  while the readers it started stay and are evicted as the pool's budget says;
- baseline, in the same run: a process per lookup, `git log -1 --format=... SHA`
  through the same runner.

Targets (issue 14): hot p99 < 5 ms; cold p99 < 50 ms on the 10,000-commit repository.
The clients ask again as soon as answered (a closed loop), all of one repository, whose
one reader has their questions in its pipe at once (pipelined, answered in order): at
50 clients a lookup's latency is about 50 / lookups per second, the pipe's length over
the reader's rate, and the rate grows with the clients as the round trips overlap.
Cold lookups at 10 and 50 clients start readers of different repositories side by
side, as many sandboxed processes at once as there are clients.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from bench.branches import _ms, _target
from bench.common import percentile
from repodepot.git.runner import GitRunner
from repodepot.git.sandbox import Sandbox
from repodepot.gitserver.catfile import CommitReader
from repodepot.procfs import tree_resident_bytes
from repodepot.settings import process_path
from tests.support.repogen import Spec, generate, git

SIZES = (500, 10_000, 100_000)
CLIENTS = (1, 10, 50)
HOT_LOOKUPS = 2000
COLD_LOOKUPS = 300
HOT_P99_MS = 5.0
COLD_P99_MS = 50.0
FORMAT = "--format=%H%x00%an%x00%ae%x00%aI%x00%s"

Lookup = Callable[[str], Awaitable[object]]


async def _clients(clients: int, shas: list[str], lookup: Lookup) -> list[float]:
    """`clients` concurrent loops sharing the lookups of `shas`; each lookup's seconds."""
    pending: Iterator[str] = iter(shas)
    samples: list[float] = []

    async def client() -> None:
        for sha in pending:
            started = time.perf_counter()
            await lookup(sha)
            samples.append(time.perf_counter() - started)

    await asyncio.gather(*(client() for _ in range(clients)))
    return samples


class _Case:
    """One repository: its shas and the three ways to look one up."""

    def __init__(self, runner: GitRunner, repo: Path, scratch: Path) -> None:
        self.runner = runner
        self.repo = repo
        self.scratch = scratch
        listed = git("--git-dir", str(repo), "rev-list", "main").split()
        self.shas = random.Random(1).choices(listed, k=HOT_LOOKUPS)
        self.hot = CommitReader(runner)
        self.cold = CommitReader(runner)
        self._aliases = 0

    async def hot_lookup(self, sha: str) -> object:
        return await self.hot.commit(self.repo, sha)

    async def cold_lookup(self, sha: str) -> object:
        return await self.cold.commit(self._alias(), sha)

    async def per_process(self, sha: str) -> object:
        return await self.runner.run(["log", "-1", FORMAT, sha], git_dir=self.repo)

    def _alias(self) -> Path:
        """A path to the repository the pool has never seen: a miss, as a new mirror is."""
        self._aliases += 1
        alias = self.scratch / f"{self.repo.stem}-{self._aliases}.git"
        alias.symlink_to(self.repo)
        return alias

    def reader_rss(self) -> int:
        return sum(tree_resident_bytes(pooled.pid) for pooled in self.hot.readers())

    async def close(self) -> None:
        await self.hot.close()
        await self.cold.close()


async def _size(runner: GitRunner, scratch: Path, commits: int) -> list[str]:
    started = time.perf_counter()
    repo = await asyncio.to_thread(generate, scratch / f"r{commits}.git", Spec(commits=commits))
    built = time.perf_counter() - started
    case = _Case(runner, repo, scratch)
    rows: list[str] = []
    try:
        await case.hot_lookup(case.shas[0])  # the hot reader, started
        for clients in CLIENTS:
            started = time.perf_counter()
            hot = await _clients(clients, case.shas, case.hot_lookup)
            rate = len(hot) / (time.perf_counter() - started)
            cold = await _clients(clients, case.shas[:COLD_LOOKUPS], case.cold_lookup)
            plain = await _clients(clients, case.shas[:COLD_LOOKUPS], case.per_process)
            base = percentile(plain, 50)
            targets = [_target(hot, HOT_P99_MS)]
            if commits == 10_000:
                targets.append(f"cold {_target(cold, COLD_P99_MS)}")
            rows.append(
                f"| {commits:,} | {clients} | {_ms(hot)} | {rate:,.0f} | {_ms(cold)} "
                f"| {_ms(plain)} "
                f"| {percentile(hot, 50) / base:.3f}x | {percentile(cold, 50) / base:.2f}x "
                f"| hot {'; '.join(targets)} |"
            )
        rss = case.reader_rss() / (1 << 20)
    finally:
        await case.close()
    rows.append(
        f"| {commits:,} | (generated in {built:.1f} s; a hot reader's RSS after "
        f"{HOT_LOOKUPS * len(CLIENTS):,} lookups: {rss:.1f} MiB) | | | | | | | |"
    )
    return rows


async def run() -> list[str]:
    with tempfile.TemporaryDirectory(prefix="repodepot-bench-") as scratch:
        root = Path(scratch)
        runner = GitRunner(
            runtime_dir=root / "run", path=process_path(), sandbox=Sandbox.locate(process_path())
        )
        lines = [
            f"Random commits of each history; per repository and client count {HOT_LOOKUPS:,} "
            f"hot lookups, {COLD_LOOKUPS} cold and {COLD_LOOKUPS} with a process each, through "
            "the bwrap sandbox. Ratios are p50 against a process per lookup.",
            "",
            "| commits | clients | hot p50 / p95 / p99 ms | hot lookups/s "
            "| cold p50 / p95 / p99 ms "
            "| process per lookup p50 / p95 / p99 ms | hot / process | cold / process "
            "| target |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for commits in SIZES:
            lines += await _size(runner, root, commits)
        return lines
