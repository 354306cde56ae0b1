"""Clone wall time against plain git and pygit2, and the server's peak memory on a big import."""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from bench.common import ADMIN, plain_git, repo_size
from tests.e2e.imports_helpers import events
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate
from tests.support.servers import ServeProcess

AUTH = {"Authorization": f"Bearer {ADMIN}"}
RUNS = 5
SPEC = Spec(commits=40_000, blob_bytes=4096, files=4000, branches=10, tags=10)


async def _repodepot(http: httpx.AsyncClient, base: str, url: str, slug: str) -> float:
    started = time.perf_counter()
    job = (
        await http.post(
            f"{base}/api/imports", headers=AUTH, json={"url": url, "owner": "bench", "slug": slug}
        )
    ).json()
    final = (await events(http, base, job["id"], headers=AUTH, timeout=600))[-1]
    assert final["status"] == "success", final
    return time.perf_counter() - started


def _pygit2(url: str, dest: Path) -> float:
    import pygit2

    started = time.perf_counter()
    pygit2.clone_repository(url, str(dest), bare=True)
    return time.perf_counter() - started


def _git(url: str, dest: Path) -> float:
    started = time.perf_counter()
    plain_git("clone", "--bare", "--progress", "-q", url, str(dest))
    return time.perf_counter() - started


SERVER_ENV = {
    "REPODEPOT_ADMIN_TOKEN": ADMIN,
    "REPODEPOT_ALLOWED_SCHEMES": "http",
    "REPODEPOT_OUTBOUND_ALLOWLIST": "127.0.0.1",
    "REPODEPOT_LOG_LEVEL": "warning",
}


@asynccontextmanager
async def _serve(data: Path) -> AsyncIterator[ServeProcess]:
    # As deployed: its own process, so it shares no event loop or GIL with the git server.
    server = await asyncio.to_thread(ServeProcess, data, SERVER_ENV)
    try:
        yield server
    finally:
        server.stop()


async def clone_times() -> list[str]:
    """Median of 5 clones of the same repository by each client, interleaved."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        source = generate(root / "served/src.git", SPEC)
        plain_git("-C", str(source), "repack", "-adbq")
        size = repo_size(source)
        times: dict[str, list[float]] = {"git": [], "repodepot": [], "pygit2": []}
        with GitHttpServer(root / "served") as remote:
            url = remote.url("src.git")
            async with (
                _serve(root / "data") as server,
                httpx.AsyncClient(timeout=None) as http,
            ):
                await asyncio.to_thread(_git, url, root / "warm.git")
                for run in range(RUNS):
                    times["git"].append(await asyncio.to_thread(_git, url, root / f"g{run}.git"))
                    times["repodepot"].append(await _repodepot(http, server.url, url, f"r{run}"))
                    times["pygit2"].append(
                        await asyncio.to_thread(_pygit2, url, root / f"p{run}.git")
                    )
    base_median = statistics.median(times["git"])
    lines = [
        f"Repository: {size / 2**20:.1f} MiB on disk, {SPEC.commits:,} commits of one "
        f"{SPEC.blob_bytes} B file each, served by git http-backend on 127.0.0.1; repodepot "
        "is timed from POST /api/imports to the SSE 'done' event.",
        "",
        "| client | median of 5 s | runs s | ratio to git |",
        "|---|---|---|---|",
    ]
    for name, samples in times.items():
        lines.append(
            f"| {name} | {statistics.median(samples):.2f} | "
            f"{' '.join(f'{s:.2f}' for s in samples)} | "
            f"{statistics.median(samples) / base_median:.2f}x |"
        )
    return lines


def _rss_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


async def peak_rss(megabytes: int = 520) -> list[str]:
    """Import a repository of `megabytes` MiB into `repodepot serve`; report its peak RSS."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        source = generate(
            root / "served/big.git",
            Spec(commits=megabytes, files=megabytes, blob_bytes=1 << 20, binary=True),
        )
        size = repo_size(source)
        async with (
            _serve(root / "data") as server,
            httpx.AsyncClient(timeout=None) as http,
        ):
            idle = _rss_kib(server.process.pid, "VmRSS")
            with GitHttpServer(root / "served") as remote:
                elapsed = await _repodepot(http, server.url, remote.url("big.git"), "big")
            peak = _rss_kib(server.process.pid, "VmHWM")
        imported = repo_size(root / "data/repos/bench/big.git")
        shutil.rmtree(root / "data", ignore_errors=True)
    return [
        "| repository | import s | server RSS idle | server peak RSS (VmHWM) | target |",
        "|---|---|---|---|---|",
        f"| {size / 2**20:.0f} MiB ({imported / 2**20:.0f} MiB imported) | {elapsed:.1f} | "
        f"{idle / 1024:.0f} MiB | {peak / 1024:.0f} MiB | "
        f"{'met' if peak < 200 * 1024 else 'MISSED'} (< 200 MiB) |",
    ]
