"""Branch status benchmarks, each against its baseline in the same run.

- ahead/behind: 10 diverged branches of a generated 100,000-commit repository (the
  note's shape: `bK` forks 2,000·K commits back with 500·K commits of its own), then
  of a 1,000,000-commit one: ten `rev-list --left-right --count` without a commit-graph
  (the seed's "before") against the commit-graph, one `for-each-ref %(upstream:track)`,
  the chosen `Counter` cold and warm, and libgit2 (pygit2) with a pooled repository;
- fetch: a fetch of N new commits through a throttled loopback link, split into
  network / pack / refs by git's trace2 events (`bench/fetchsplit.py`);
- sync-status: `GET /api/repos/{name}/sync-status` under 100 concurrent clients over
  1,000 tracked repositories (`bench/syncstatus.py`).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pygit2

from bench import fetchsplit, syncstatus
from bench.common import percentile, plain_git
from repodepot.branches.counts import Counter, Pair
from repodepot.git import commands
from repodepot.git.runner import GitRunner
from repodepot.git.sandbox import Sandbox
from repodepot.settings import process_path
from tests.support.repogen import HERMETIC

BRANCHES = 10
RUNS = 30
COLD_P99_MS = 40.0
WARM_P99_MS = 2.0
T0 = 1_600_000_000
IDENT = b"Bench <bench@example.com>"
CORES = os.cpu_count() or 1
WARM = "**Counter, warm** (every pair cached)"
WARM_REPEATS = 20


def _commit(ref: bytes, mark: int, when: int, parent: int | None) -> bytes:
    body = b"%d\n" % mark
    return b"".join(
        (
            b"commit %s\nmark :%d\ncommitter %s %d +0000\ndata 0\n" % (ref, mark, IDENT, when),
            b"from :%d\n" % parent if parent else b"",
            b"M 100644 inline f\ndata %d\n%s\n" % (len(body), body),
        )
    )


def history(commits: int) -> Iterator[bytes]:
    """A fast-import stream, in big pieces: `commits` on main, `bK` diverged from it.

    `bK` forks 2,000·K commits before main's tip and has 500·K commits of its own, one
    small file changed per commit. Few large writes: a write per commit is 10x slower.
    """
    piece: list[bytes] = []
    for mark in range(1, commits + 1):  # consecutive commits on a ref chain by themselves
        piece.append(_commit(b"refs/heads/main", mark, T0 + 60 * mark, None))
        if len(piece) == 20_000:
            yield b"".join(piece)
            piece.clear()
    mark = commits
    for k in range(1, BRANCHES + 1):
        fork = commits - 2000 * k
        parent = fork
        for j in range(500 * k):
            mark += 1
            when = T0 + 60 * fork + 30 + 60 * j
            piece.append(_commit(b"refs/heads/b%d" % k, mark, when, parent))
            parent = mark
    piece.append(b"done\n")
    yield b"".join(piece)


def build(path: Path, commits: int) -> float:
    """Create the bare repository `path` (see `history`); returns the seconds it took."""
    started = time.perf_counter()
    plain_git("init", "-q", "--bare", "--initial-branch=main", str(path))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **HERMETIC}
    process = subprocess.Popen(
        ["git", "fast-import", "--done", "--quiet"], cwd=path, env=env, stdin=subprocess.PIPE
    )
    assert process.stdin is not None
    for piece in history(commits):
        process.stdin.write(piece)
    process.stdin.close()
    if process.wait() != 0:
        raise RuntimeError(f"git fast-import failed for {path}")
    return time.perf_counter() - started


def _git_out(*args: str) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **HERMETIC}
    done = subprocess.run(["git", *args], env=env, check=True, capture_output=True, text=True)
    return done.stdout


def _pairs(repo: Path) -> list[Pair]:
    shas = dict(
        line.split()[::-1]
        for line in _git_out("--git-dir", str(repo), "show-ref", "--heads").splitlines()
    )
    main = shas["refs/heads/main"]
    return [
        Pair(f"refs/heads/b{k}", shas[f"refs/heads/b{k}"], "refs/heads/main", main)
        for k in range(1, BRANCHES + 1)
    ]


Method = Callable[[], Awaitable[object]]


class Methods:
    """Each way of counting the 10 pairs, one batch per call."""

    def __init__(self, repo: Path, scratch: Path) -> None:
        self.repo = repo
        self.pairs = _pairs(repo)
        self.boxed = GitRunner(
            runtime_dir=scratch / "boxed",
            path=process_path(),
            sandbox=Sandbox.locate(process_path()),
        )
        self.plain = GitRunner(runtime_dir=scratch / "plain", path=process_path())
        self.pooled = pygit2.Repository(str(repo))
        self.threads = ThreadPoolExecutor(2)
        self.warm = Counter(self.boxed, processes=CORES)

    def close(self) -> None:
        self.threads.shutdown()
        self.pooled.free()

    async def rev_lists(self, *config: str) -> None:
        for pair in self.pairs:
            await asyncio.to_thread(
                plain_git,
                *config,
                "--git-dir",
                str(self.repo),
                "rev-list",
                "--left-right",
                "--count",
                f"{pair.ref}...{pair.base}",
            )

    async def without_graph(self) -> None:
        await self.rev_lists("-c", "core.commitGraph=false")

    async def with_graph(self) -> None:
        await self.rev_lists()

    async def one_for_each_ref(self) -> None:
        await Counter(self.boxed, processes=1).counts(self.repo, self.pairs)

    async def counter_cold(self) -> None:
        await Counter(self.boxed, processes=CORES).counts(self.repo, self.pairs)

    async def counter_cold_unboxed(self) -> None:
        await Counter(self.plain, processes=CORES).counts(self.repo, self.pairs)

    async def walks_alone(self) -> None:
        """The Counter's for-each-ref walks without its re-read of the refs afterwards."""
        groups = [self.pairs[i::CORES] for i in range(CORES)]
        await asyncio.gather(
            *(
                commands.track_counts(self.boxed, self.repo, [(p.ref, p.base) for p in group])
                for group in groups
            )
        )

    async def counter_warm(self) -> None:
        await self.warm.counts(self.repo, self.pairs)

    def _libgit2(self, repository: pygit2.Repository, pair: Pair) -> tuple[int, int]:
        return repository.ahead_behind(pair.sha, pair.base_sha)

    async def pygit2_pooled(self) -> None:
        for pair in self.pairs:
            self._libgit2(self.pooled, pair)

    async def pygit2_threads(self) -> None:
        list(self.threads.map(lambda pair: self._libgit2(self.pooled, pair), self.pairs))

    async def pygit2_opened(self) -> None:
        repository = pygit2.Repository(str(self.repo))
        for pair in self.pairs:
            self._libgit2(repository, pair)
        repository.free()

    async def check(self) -> None:
        """Every method agrees with `git rev-list --left-right --count` (else AssertionError)."""
        truth = {
            pair.ref: await commands.rev_list_counts(self.plain, self.repo, pair.ref, pair.base)
            for pair in self.pairs
        }
        counted = await Counter(self.boxed, processes=CORES).counts(self.repo, self.pairs)
        assert counted == truth, (counted, truth)
        for pair in self.pairs:
            assert self._libgit2(self.pooled, pair) == tuple(truth[pair.ref]), pair


def _ms(samples: list[float]) -> str:
    shown = [percentile(samples, q) * 1000 for q in (50, 95, 99)]
    return " / ".join(f"{ms:.1f}" if ms >= 10 else f"{ms:.3f}" for ms in shown)


def _target(samples: list[float], limit_ms: float) -> str:
    met = percentile(samples, 99) * 1000 < limit_ms
    return f"{'met' if met else 'MISSED'} (p99 < {limit_ms:g} ms)"


async def _rounds(
    rows: dict[str, Method], runs: int, repeats: dict[str, int]
) -> dict[str, list[float]]:
    """`runs` rounds of every method, interleaved, so drift hits them alike.

    A method named in `repeats` runs that many times a round: microseconds each, its
    p99 needs more samples than 30 to not be the one round the scheduler hiccuped.
    """
    samples: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(runs):
        for name, method in rows.items():
            for _ in range(repeats.get(name, 1)):
                started = time.perf_counter()
                await method()
                samples[name].append(time.perf_counter() - started)
    return samples


async def ahead_behind(commits: int, runs: int = RUNS) -> list[str]:
    """The table for a generated repository of `commits` commits on main."""
    with tempfile.TemporaryDirectory(prefix="repodepot-bench-") as scratch:
        root = Path(scratch)
        repo = root / "history.git"
        built = await asyncio.to_thread(build, repo, commits)
        started = time.perf_counter()
        plain_git("--git-dir", str(repo), "commit-graph", "write", "--reachable", "--changed-paths")
        graph = time.perf_counter() - started
        methods = Methods(repo, root)
        try:
            await methods.check()
            await methods.warm.counts(repo, methods.pairs)
            await methods.pygit2_pooled()  # the pool's first use reads the objects in
            rows: dict[str, Method] = {
                "10 `rev-list --left-right --count`, no commit-graph (baseline)": (
                    methods.without_graph
                ),
                "10 `rev-list --left-right --count`, commit-graph": methods.with_graph,
                "one `for-each-ref %(upstream:track)` (Counter, 1 process)": (
                    methods.one_for_each_ref
                ),
                f"**Counter, {CORES} processes, cold** (chosen; bwrap sandbox)": (
                    methods.counter_cold
                ),
                f"Counter, {CORES} processes, cold, no sandbox": methods.counter_cold_unboxed,
                f"its {CORES} `for-each-ref` walks alone (no re-read of the refs)": (
                    methods.walks_alone
                ),
                "pygit2 `ahead_behind`, pooled repository": methods.pygit2_pooled,
                "pygit2 `ahead_behind`, pooled repository, 2 threads": methods.pygit2_threads,
                "pygit2 `ahead_behind`, repository opened per batch": methods.pygit2_opened,
                WARM: methods.counter_warm,
            }
            samples = await _rounds(rows, runs, {WARM: WARM_REPEATS})
        finally:
            methods.close()
    base = percentile(next(iter(samples.values())), 50)
    lines = [
        f"{commits:,} commits on main, generated in {built:.1f} s (fast-import); commit-graph "
        f"with Bloom filters written in {graph:.1f} s. Ten pairs `main...bK`, `bK` forked "
        "2,000·K commits back with 500·K own (b10: ahead 5,000, behind 20,000); "
        f"{runs} batches of the ten per method, interleaved ({runs * WARM_REPEATS} warm).",
        "",
        "| method (one batch of 10 pairs) | p50 / p95 / p99 ms | ratio (p50) | target |",
        "|---|---|---|---|",
    ]
    for name, taken in samples.items():
        target = ""
        if "cold** (chosen" in name:
            target = _target(taken, COLD_P99_MS)
        elif "warm**" in name:
            target = _target(taken, WARM_P99_MS)
        ratio = percentile(taken, 50) / base
        lines.append(f"| {name} | {_ms(taken)} | {ratio:.3f}x | {target} |")
    return lines


async def run() -> list[str]:
    lines = ["#### ahead/behind of 10 branches", "", *await ahead_behind(100_000)]
    lines += ["", *await ahead_behind(1_000_000)]
    lines += ["", "#### a fetch of N new commits, by part", "", *await fetchsplit.run()]
    lines += ["", "#### sync-status under load", "", *await syncstatus.run()]
    return lines
