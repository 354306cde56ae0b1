"""The Go module proxy: a large module's zip against `git archive`, and list/info latency."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from bench.clones import _serve
from bench.common import bench_settings, percentile, plain_git, repo_size
from repodepot.accounts import operator
from repodepot.db.models import Visibility
from repodepot.services import Services
from tests.support.repogen import HERMETIC, Spec
from tests.support.seed import seed_mirror

# 20,000 files of 10.5 KB (210 MB) at the last tag; 2,000 tags for list and info.
SPEC = Spec(commits=20_000, files=20_000, blob_bytes=10_500, tags=2_000)
ROOT = "example.com/bench/large"
LAST = f"v1.{SPEC.tags - 1}.0"
RUNS = 5
REQUESTS = 300


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def _git_archive(mirror: Path) -> tuple[float, int]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **HERMETIC}
    started = time.perf_counter()
    result = subprocess.run(
        ["git", "--git-dir", str(mirror), "archive", "--format=zip", LAST],
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started, len(result.stdout)


async def _download(http: httpx.AsyncClient, url: str) -> tuple[float, int]:
    started = time.perf_counter()
    size = 0
    async with http.stream("GET", url) as response:
        assert response.status_code == 200, await response.aread()
        async for chunk in response.aiter_raw():
            size += len(chunk)
    return time.perf_counter() - started, size


async def _setup(data: Path) -> Path:
    services = await Services.open(bench_settings(data))
    record = await seed_mirror(services, "bench/large", spec=SPEC, visibility=Visibility.public)
    mirror = services.storage.path(record.id)
    plain_git("--git-dir", str(mirror), "repack", "-adq")
    await services.repositories.set_go_import_root(operator(), "bench/large", ROOT)
    await services.close()
    return mirror


async def run() -> list[str]:
    """Zip wall time and memory against git archive; list and info latency with 2,000 tags."""
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "data"
        mirror = await _setup(data)
        cache = data / "cache" / "goproxy"
        times: dict[str, list[float]] = {"git archive --format=zip": [], "repodepot": []}
        sizes: dict[str, int] = {}
        cached: list[float] = []
        latency: dict[str, list[float]] = {"@v/list": [], ".info": [], "git for-each-ref": []}
        async with _serve(data) as server, httpx.AsyncClient(timeout=600) as http:
            base = f"{server.url}/goproxy/{ROOT}/@v"
            idle = _kib(server.process.pid, "VmRSS")
            for _ in range(RUNS):
                shutil.rmtree(cache, ignore_errors=True)
                seconds, sizes["repodepot"] = await _download(http, f"{base}/{LAST}.zip")
                times["repodepot"].append(seconds)
                seconds, sizes["git archive --format=zip"] = await asyncio.to_thread(
                    _git_archive, mirror
                )
                times["git archive --format=zip"].append(seconds)
            peak = _kib(server.process.pid, "VmHWM")
            for _ in range(RUNS):
                cached.append((await _download(http, f"{base}/{LAST}.zip"))[0])
            rng = random.Random(1)
            versions = [f"v1.{rng.randrange(SPEC.tags)}.0" for _ in range(REQUESTS)]
            for version in versions:
                for kind, url in (("@v/list", f"{base}/list"), (".info", f"{base}/{version}.info")):
                    started = time.perf_counter()
                    answer = await http.get(url)
                    latency[kind].append(time.perf_counter() - started)
                    assert answer.status_code == 200, answer.text
                started = time.perf_counter()
                await asyncio.to_thread(
                    plain_git, "--git-dir", str(mirror), "for-each-ref", "refs/tags/"
                )
                latency["git for-each-ref"].append(time.perf_counter() - started)
            listed = len((await http.get(f"{base}/list")).text.split())
        size = repo_size(mirror)
    return _table(times, sizes, cached, latency, idle, peak, size, listed)


def _table(
    times: dict[str, list[float]],
    sizes: dict[str, int],
    cached: list[float],
    latency: dict[str, list[float]],
    idle: int,
    peak: int,
    size: int,
    listed: int,
) -> list[str]:
    base = percentile(times["git archive --format=zip"], 50)
    lines = [
        f"Module: {SPEC.files:,} files, {SPEC.files * SPEC.blob_bytes / 1e6:.0f} MB uncompressed "
        f"at {LAST} (mirror {size / 2**20:.0f} MiB); {RUNS} runs each, interleaved, the cache "
        "emptied before each repodepot run; repodepot over HTTP to its own process.",
        "",
        "| zip | p50 s | p95 s | p99 s | zip MB | ratio | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, samples in times.items():
        ratio = percentile(samples, 50) / base
        target = (
            "" if name != "repodepot" else ("met (≤ 1.3)" if ratio <= 1.3 else "MISSED (≤ 1.3)")
        )
        lines.append(
            f"| {name} | {percentile(samples, 50):.2f} | {percentile(samples, 95):.2f} | "
            f"{percentile(samples, 99):.2f} | {sizes[name] / 1e6:.1f} | {ratio:.2f}x | {target} |"
        )
    lines.append(
        f"| repodepot, from the cache | {percentile(cached, 50):.2f} | "
        f"{percentile(cached, 95):.2f} | {percentile(cached, 99):.2f} | "
        f"{sizes['repodepot'] / 1e6:.1f} | {percentile(cached, 50) / base:.2f}x | |"
    )
    growth = (peak - idle) / 1024
    verdict = "met (< 50 MB)" if growth < 50 else "MISSED (< 50 MB)"
    lines += [
        "",
        f"Server memory: {idle / 1024:.0f} MiB before the zips, peak {peak / 1024:.0f} MiB: "
        f"growth {growth:.1f} MiB, {verdict}.",
        "",
        f"{REQUESTS} requests of each, sequential, random versions of {listed:,} listed.",
        "",
        "| request | p50 ms | p95 ms | p99 ms | target |",
        "|---|---|---|---|---|",
    ]
    for name, samples in latency.items():
        p99 = percentile(samples, 99) * 1000
        target = (
            "baseline (a process, no HTTP)"
            if name.startswith("git")
            else ("met (p99 < 50)" if p99 < 50 else "MISSED (p99 < 50)")
        )
        lines.append(
            f"| {name} | {percentile(samples, 50) * 1000:.1f} | "
            f"{percentile(samples, 95) * 1000:.1f} | {p99:.1f} | {target} |"
        )
    return lines
