"""The git runner against plain git, measured in the same run: p50/p95/p99 and ratios."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.common import percentile, plain_git
from repodepot.git import commands
from repodepot.git.runner import GitRunner
from repodepot.settings import process_path
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate


def row(name: str, samples: list[float], baseline: list[float]) -> str:
    p = [percentile(samples, q) * 1000 for q in (50, 95, 99)]
    b = [percentile(baseline, q) * 1000 for q in (50, 95, 99)]
    ratio = statistics.median(samples) / statistics.median(baseline)
    return (
        f"| {name} | {len(samples)} | {p[0]:.1f} / {p[1]:.1f} / {p[2]:.1f} | "
        f"{b[0]:.1f} / {b[1]:.1f} / {b[2]:.1f} | {ratio:.2f}x |"
    )


async def once(work: Callable[[int], Awaitable[None]], index: int) -> float:
    started = time.perf_counter()
    await work(index)
    return time.perf_counter() - started


async def timed(runs: int, work: Callable[[int], Awaitable[None]]) -> list[float]:
    return [await once(work, index) for index in range(runs)]


async def run() -> list[str]:
    scratch = Path(tempfile.mkdtemp(prefix="repodepot-bench-"))
    try:
        served = scratch / "served"
        repo = generate(
            served / "bench.git", Spec(commits=20_000, branches=20, tags=20, blob_bytes=256)
        )
        plain_git("-C", str(repo), "repack", "-adbq")
        runner = GitRunner(
            runtime_dir=scratch / "run", path=process_path(), allowed_schemes=["http"]
        )
        out = scratch / "out"
        out.mkdir()
        lines = [
            "| case | runs | repodepot p50 / p95 / p99 ms | plain git p50 / p95 / p99 ms "
            "| ratio (p50) |",
            "|---|---|---|---|---|",
        ]
        with GitHttpServer(served) as server:
            url = server.url("bench.git")

            async def ours(i: int) -> None:
                await commands.clone_bare(runner, url, out / f"ours-{i}.git")

            async def theirs(i: int) -> None:
                await asyncio.to_thread(
                    plain_git,
                    "clone",
                    "--bare",
                    "--progress",
                    "-q",
                    url,
                    str(out / f"plain-{i}.git"),
                )

            await ours(-1)  # warm the page cache
            clone_runs = 9
            ours_samples: list[float] = []
            plain_samples: list[float] = []
            for i in range(clone_runs):  # interleaved, so drift hits both alike
                ours_samples.append(await once(ours, i))
                plain_samples.append(await once(theirs, i))
            lines.append(
                row("clone --bare, 20k commits over smart HTTP", ours_samples, plain_samples)
            )

        async def rev_ours(_: int) -> None:
            await commands.rev_parse(runner, repo, "main")

        async def rev_plain(_: int) -> None:
            await asyncio.to_thread(
                plain_git, f"--git-dir={repo}", "rev-parse", "--verify", "main^{commit}"
            )

        lines.append(
            row(
                "rev-parse (process start-up overhead)",
                await timed(200, rev_ours),
                await timed(200, rev_plain),
            )
        )
        return lines
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
