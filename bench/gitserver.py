"""Update scheduler and gitserver benchmarks, each against its baseline in the same run.

- scheduler: 100,000 mirrors in the durable queue (SQLite): enqueue (a webhook's
  UPDATE) and dequeue (a claim of 8) latency, and the process's memory; baseline: an
  in-memory heap queue (Sourcegraph's updateQueue shape) over the same entries.
- sweep: 1,000 small mirrors refreshed when nothing changed upstream, through the
  updater (8 at a time); baseline: a plain sequential `git fetch` loop over copies.
- ensure: EnsureRevision of a present commit under 20 concurrent clients over HTTP;
  baseline: `git rev-parse --verify` as a subprocess per request, 20 at a time.
- smarthttp: `git clone --mirror` of a large mirror through repodepot's /git/ against
  `git http-backend` serving the same repository directly.
"""

from __future__ import annotations

import asyncio
import heapq
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import insert, update

from bench.clones import SERVER_ENV, _serve
from bench.common import ADMIN, bench_settings, percentile, plain_git, repo_size
from repodepot.accounts import operator
from repodepot.clock import now
from repodepot.db.models import GitserverRepo, Repository, Visibility
from repodepot.gitserver.schedule import QueueReason
from repodepot.gitserver.updater import UpdateLoop
from repodepot.services import Services
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate
from tests.support.seed import seed_mirror

AUTH = {"Authorization": f"Bearer {ADMIN}"}
QUEUE_SIZE = 100_000
SWEEP = 1_000
CLIENTS = 20
REQUESTS = 2_000
LARGE = Spec(commits=40_000, blob_bytes=4096, files=4000, branches=10, tags=10)


def _ms(samples: list[float]) -> str:
    return " / ".join(f"{percentile(samples, q) * 1000:.2f}" for q in (50, 95, 99))


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def scheduler() -> list[str]:
    """Enqueue and dequeue latency with 100,000 mirrors queued; memory."""
    with tempfile.TemporaryDirectory() as scratch:
        services = await Services.open(bench_settings(Path(scratch)))
        try:
            rss_before = _rss_mib()
            rows = [
                {
                    "name": f"bench/r{index:06d}",
                    "visibility": Visibility.public,
                    "source_url": f"http://127.0.0.1:9/r{index}.git",
                }
                for index in range(QUEUE_SIZE)
            ]
            async with services.sessions.begin() as session:
                for start in range(0, QUEUE_SIZE, 5000):
                    await session.execute(insert(Repository), rows[start : start + 5000])
            started = time.perf_counter()
            await services.gitserver.discover()
            discover_s = time.perf_counter() - started
            async with services.sessions.begin() as session:  # all scheduled, none queued
                await session.execute(update(GitserverRepo).values(queued_priority=None))
            ids = list(range(1, QUEUE_SIZE + 1))
            enqueue: list[float] = []
            for repository_id in ids[:: QUEUE_SIZE // 500]:
                started = time.perf_counter()
                await services.gitserver.enqueue_existing(repository_id, QueueReason.webhook)
                enqueue.append(time.perf_counter() - started)
            dequeue: list[float] = []
            for _ in range(200):
                started = time.perf_counter()
                claimed = await services.gitserver.claim("bench", 8, {}, 8)
                dequeue.append(time.perf_counter() - started)
                for due in claimed:
                    await services.gitserver.release(due)
                async with services.sessions.begin() as session:  # served: leave the queue
                    await session.execute(
                        update(GitserverRepo)
                        .where(GitserverRepo.repository_id.in_([d.repository_id for d in claimed]))
                        .values(queued_priority=None, next_update_at=now().replace(year=2100))
                    )
            rss_after = _rss_mib()
        finally:
            await services.close()
    heap: list[tuple[int, float, int]] = []
    heap_push: list[float] = []
    for repository_id in ids:
        started = time.perf_counter()
        heapq.heappush(heap, (2, float(repository_id), repository_id))
        heap_push.append(time.perf_counter() - started)
    heap_pop: list[float] = []
    for _ in range(1000):
        started = time.perf_counter()
        heapq.heappop(heap)
        heap_pop.append(time.perf_counter() - started)
    return [
        f"{QUEUE_SIZE:,} mirrors in `gitserver_repos` (SQLite); the first look for new "
        f"repositories queued them all in {discover_s:.2f} s (one INSERT … SELECT).",
        "",
        "| operation | repodepot p50 / p95 / p99 ms | in-memory heap p50 / p95 / p99 ms |",
        "|---|---|---|",
        f"| enqueue (a webhook) | {_ms(enqueue)} | {_ms(heap_push)} |",
        f"| dequeue (claim 8, lease) | {_ms(dequeue)} | {_ms(heap_pop)} |",
        "",
        f"Process peak RSS {rss_after:.0f} MiB (before the rows: {rss_before:.0f} MiB): the "
        "queue lives in the database, so memory does not grow with the number of mirrors; "
        "durable, it survives a restart, which the in-memory heap does not.",
    ]


async def sweep() -> list[str]:
    """1,000 unchanged mirrors refreshed by the updater vs a sequential `git fetch` loop."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        template = generate(root / "template.git", Spec(commits=5, files=5))
        served = root / "served"
        for index in range(SWEEP):
            shutil.copytree(template, served / f"r{index:04d}.git")
        with GitHttpServer(served) as remote:
            settings = bench_settings(root / "data", max_concurrent_clones=8, max_clones_per_host=8)
            services = await Services.open(settings)
            try:
                config = {"repos": [remote.url(f"r{index:04d}.git") for index in range(SWEEP)]}
                host = await services.codehosts.create(
                    operator(), kind="other", name="sweep", config=config
                )
                await services.codehosts.syncer.sync(host.id)
                loop = UpdateLoop.from_services(services)
                await services.gitserver.discover()
                await _drain(services, loop)  # the first clones
                status = await services.gitserver.status()
                assert status.cloned == SWEEP, status
                async with services.sessions.begin() as session:
                    await session.execute(update(GitserverRepo).values(next_update_at=now()))
                cpu = os.times()
                started = time.perf_counter()
                await _drain(services, loop)
                ours = time.perf_counter() - started
                after = os.times()
                ours_cpu = (after.user - cpu.user) + (after.children_user - cpu.children_user)
                ours_cpu += (after.system - cpu.system) + (
                    after.children_system - cpu.children_system
                )
            finally:
                await services.close()
            copies = root / "copies"
            for index in range(SWEEP):
                plain_git(
                    "clone",
                    "--mirror",
                    "-q",
                    remote.url(f"r{index:04d}.git"),
                    str(copies / f"{index}.git"),
                )
            cpu = os.times()
            started = time.perf_counter()
            for index in range(SWEEP):
                plain_git("--git-dir", str(copies / f"{index}.git"), "fetch", "--prune", "-q")
            plain = time.perf_counter() - started
            after = os.times()
            plain_cpu = (after.children_user - cpu.children_user) + (
                after.children_system - cpu.children_system
            )
    return [
        f"{SWEEP:,} mirrors of small repositories, nothing changed upstream, all due at once.",
        "",
        "| sweep | wall s | CPU s (ours + git) | per mirror ms | ratio to plain git |",
        "|---|---|---|---|---|",
        f"| repodepot updater (8 at a time) | {ours:.1f} | {ours_cpu:.1f} | "
        f"{ours / SWEEP * 1000:.1f} | {ours / plain:.2f}x |",
        f"| sequential `git fetch` loop | {plain:.1f} | {plain_cpu:.1f} | "
        f"{plain / SWEEP * 1000:.1f} | 1.00x |",
    ]


async def _drain(services: Services, loop: UpdateLoop) -> None:
    """Run the updater's claims until nothing is due (8 updates in flight)."""
    running: set[asyncio.Task[None]] = set()
    while True:
        claimed = await services.gitserver.claim("bench", 8 - len(running), {}, 8)
        for due in claimed:
            running.add(asyncio.create_task(loop.update(due)))
        if not running:
            return
        done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()


async def ensure() -> list[str]:
    """EnsureRevision of a present commit, 20 clients, against a rev-parse subprocess."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        data = root / "data"
        services = await Services.open(bench_settings(data))
        spec = Spec(commits=2000, files=50)
        record = await seed_mirror(services, "bench/app", spec=spec, visibility=Visibility.public)
        mirror = services.storage.path(record.id)
        await services.close()
        sha = plain_git_out("--git-dir", str(mirror), "rev-parse", "main")
        async with _serve(data) as server, httpx.AsyncClient(timeout=30) as http:
            url = f"{server.url}/api/repos/bench/app/commits/{sha}"
            try:
                ours = await _concurrently(lambda: _get(http, url))
            except AssertionError:
                print(server.log.read_text()[-6000:])
                raise
        plain = await _concurrently(lambda: _rev_parse(mirror, sha))
    return [
        f"{REQUESTS:,} requests, {CLIENTS} at a time, for a commit the mirror has.",
        "",
        "| client | p50 / p95 / p99 ms | requests/s |",
        "|---|---|---|",
        f"| repodepot `GET /api/repos/…/commits/{{sha}}` | {_ms(ours[0])} | {ours[1]:.0f} |",
        f"| `git rev-parse --verify` subprocess | {_ms(plain[0])} | {plain[1]:.0f} |",
    ]


def plain_git_out(*args: str) -> str:
    import subprocess

    from tests.support.repogen import HERMETIC

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **HERMETIC}
    return subprocess.run(
        ["git", *args], env=env, check=True, capture_output=True, text=True
    ).stdout.strip()


async def _get(http: httpx.AsyncClient, url: str) -> None:
    answer = await http.get(url, headers=AUTH)
    if answer.status_code != 200:
        raise AssertionError(answer.text)


async def _rev_parse(mirror: Path, sha: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "git",
        "--git-dir",
        str(mirror),
        "rev-parse",
        "--verify",
        "--quiet",
        f"{sha}^{{commit}}",
        stdout=asyncio.subprocess.DEVNULL,
    )
    assert await process.wait() == 0


async def _concurrently(call: object) -> tuple[list[float], float]:
    samples: list[float] = []
    remaining = REQUESTS

    async def client() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = time.perf_counter()
            await call()  # type: ignore[operator]
            samples.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return samples, REQUESTS / (time.perf_counter() - started)


async def smarthttp() -> list[str]:
    """Clone a large mirror through repodepot and through git http-backend; 3 runs each."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        data = root / "data"
        services = await Services.open(bench_settings(data))
        record = await seed_mirror(
            services, "bench/large", spec=LARGE, visibility=Visibility.public
        )
        mirror = services.storage.path(record.id)
        plain_git("--git-dir", str(mirror), "repack", "-adbq")
        await services.close()
        size = repo_size(mirror)
        times: dict[str, list[float]] = {"git http-backend": [], "repodepot": []}
        with GitHttpServer(mirror.parent) as direct:
            async with _serve(data) as server:
                for run in range(3):
                    for client, url in (
                        ("git http-backend", direct.url(mirror.name)),
                        ("repodepot", f"{server.url}/git/bench/large"),
                    ):
                        dest = root / f"clone-{run}-{client.split()[0]}.git"
                        started = time.perf_counter()
                        await asyncio.to_thread(
                            plain_git, "clone", "--mirror", "-q", url, str(dest)
                        )
                        times[client].append(time.perf_counter() - started)
                        shutil.rmtree(dest)
    base = sorted(times["git http-backend"])[1]
    lines = [
        f"Mirror: {size / 2**20:.1f} MiB on disk ({LARGE.commits:,} commits); `git clone --mirror` "
        "over 127.0.0.1, median of 3, interleaved.",
        "",
        "| server | median s | runs s | ratio | target |",
        "|---|---|---|---|---|",
    ]
    for client, samples in times.items():
        median = sorted(samples)[1]
        ratio = median / base
        target = (
            "" if client != "repodepot" else ("met (≤ 1.1)" if ratio <= 1.1 else "MISSED (≤ 1.1)")
        )
        runs = " ".join(f"{sample:.2f}" for sample in samples)
        lines.append(f"| {client} | {median:.2f} | {runs} | {ratio:.2f}x | {target} |")
    return lines


__all__ = ["SERVER_ENV", "ensure", "scheduler", "smarthttp", "sweep"]
