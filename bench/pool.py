"""Benchmark 1 of the seed: a commit lookup, cold against hot, as EnsureRevision does it.

On generated repositories of 500, 10,000 and 100,000 commits, 1, 10 and 50 concurrent
clients look up random commits of the history by id (`CommitReader.commit`, as
EnsureRevision and the Go proxy's tag versions do), through the bwrap sandbox as
deployed. Two readers are measured, each hot and cold:

- the lookup as shipped: the commit is read in-process from the mirror's packs
  (`git.packs`), the reader pool asked only for what that does not answer;
- the reader pool alone (`in_process=False`), the long-lived `cat-file --batch`
  processes every other question (a branch, a tag, a short id, `REV:PATH`) goes to.

Hot: the repository was read before (its indexes are mapped, its reader is running).
Cold: never: each cold lookup names the repository by a path of its own (a symlink), so
every one misses, as a mirror read for the first time does; what it opened stays, and
is closed as the bounds say. Baseline, in the same run: a process per lookup,
`git log -1 --format=... SHA` through the same runner.

Targets (issue 14): hot p99 < 5 ms; cold p99 < 50 ms on the 10,000-commit repository.
The clients ask again as soon as answered (a closed loop), all of one repository. The
pool's one reader has their questions in its pipe at once (pipelined, answered in
order): at 50 clients a lookup's latency is about 50 / lookups per second. The pool's
cold lookups at 10 and 50 clients start as many sandboxed processes at once as there
are clients, which 2 cores cannot do within 50 ms: that is why a commit by id no longer
starts one.
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
    """One repository: its shas and the ways to look one up."""

    def __init__(self, runner: GitRunner, repo: Path, scratch: Path) -> None:
        self.runner = runner
        self.repo = repo
        self.scratch = scratch
        listed = git("--git-dir", str(repo), "rev-list", "main").split()
        self.shas = random.Random(1).choices(listed, k=HOT_LOOKUPS)
        self.readers = {
            "shipped": (CommitReader(runner), CommitReader(runner)),
            "pool": (
                CommitReader(runner, in_process=False),
                CommitReader(runner, in_process=False),
            ),
        }
        self._aliases = 0

    def hot(self, kind: str) -> Lookup:
        reader = self.readers[kind][0]
        return lambda sha: reader.commit(self.repo, sha)

    def cold(self, kind: str) -> Lookup:
        reader = self.readers[kind][1]
        return lambda sha: reader.commit(self._alias(), sha)

    async def per_process(self, sha: str) -> object:
        return await self.runner.run(["log", "-1", FORMAT, sha], git_dir=self.repo)

    def _alias(self) -> Path:
        """A path to the repository never read before: a miss, as a new mirror is."""
        self._aliases += 1
        alias = self.scratch / f"{self.repo.stem}-{self._aliases}.git"
        alias.symlink_to(self.repo)
        return alias

    def reader_rss(self) -> int:
        return sum(tree_resident_bytes(pooled.pid) for pooled in self.readers["pool"][0].readers())

    async def close(self) -> None:
        for pair in self.readers.values():
            for reader in pair:
                await reader.close()


async def _size(runner: GitRunner, scratch: Path, commits: int) -> list[str]:
    started = time.perf_counter()
    repo = await asyncio.to_thread(generate, scratch / f"r{commits}.git", Spec(commits=commits))
    built = time.perf_counter() - started
    case = _Case(runner, repo, scratch)
    rows: list[str] = []
    try:
        for kind in case.readers:
            await case.hot(kind)(case.shas[0])  # hot: read once before
        for clients in CLIENTS:
            measured: dict[str, tuple[list[float], list[float], float]] = {}
            for kind in case.readers:
                started = time.perf_counter()
                hot = await _clients(clients, case.shas, case.hot(kind))
                rate = len(hot) / (time.perf_counter() - started)
                cold = await _clients(clients, case.shas[:COLD_LOOKUPS], case.cold(kind))
                measured[kind] = (hot, cold, rate)
            plain = await _clients(clients, case.shas[:COLD_LOOKUPS], case.per_process)
            base = percentile(plain, 50)
            (hot, cold, _), (pool_hot, pool_cold, pool_rate) = measured.values()
            targets = [f"hot {_target(hot, HOT_P99_MS)}"]
            if commits == 10_000:
                targets.append(f"cold {_target(cold, COLD_P99_MS)}")
            targets.append(f"pool hot {_target(pool_hot, HOT_P99_MS)}")
            rows.append(
                f"| {commits:,} | {clients} | {_ms(hot)} | {_ms(cold)} | {_ms(pool_hot)} "
                f"| {pool_rate:,.0f} | {_ms(pool_cold)} | {_ms(plain)} "
                f"| {percentile(hot, 50) / base:.3f}x | {percentile(cold, 50) / base:.3f}x "
                f"| {'; '.join(targets)} |"
            )
        rss = case.reader_rss() / (1 << 20)
    finally:
        await case.close()
    rows.append(
        f"| {commits:,} | (generated in {built:.1f} s; the pool's hot reader's RSS after "
        f"{HOT_LOOKUPS * len(CLIENTS):,} lookups: {rss:.1f} MiB) | | | | | | | | | |"
    )
    return rows


async def run() -> list[str]:
    with tempfile.TemporaryDirectory(prefix="repodepot-bench-") as scratch:
        root = Path(scratch)
        runner = GitRunner(
            runtime_dir=root / "run", path=process_path(), sandbox=Sandbox.locate(process_path())
        )
        lines = [
            f"Random commits of each history by id; per repository and client count, for the "
            f"lookup as shipped (in-process first) and for the reader pool alone, "
            f"{HOT_LOOKUPS:,} hot lookups and {COLD_LOOKUPS} cold, and {COLD_LOOKUPS} with a "
            "process each, through the bwrap sandbox. Ratios are p50 against a process per "
            "lookup.",
            "",
            "| commits | clients | hot p50 / p95 / p99 ms | cold p50 / p95 / p99 ms "
            "| pool hot p50 / p95 / p99 ms | pool hot lookups/s "
            "| pool cold (a reader started) p50 / p95 / p99 ms "
            "| process per lookup p50 / p95 / p99 ms | hot / process | cold / process "
            "| target |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for commits in SIZES:
            lines += await _size(runner, root, commits)
        return lines
