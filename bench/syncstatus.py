"""`GET /api/repos/{name}/sync-status` under 100 concurrent clients, upstreams fetched meanwhile.

1,000 repositories with an upstream and 10 tracked pairs each are written through the
branch status store (sync-status answers from the table: no git, no network), plus a
few real mirrors whose real upstreams (the loopback `git http-backend` server) the
served process fetches in the background while the clients read: every second one
upstream branch moves and its fetch is asked for. The baseline is `/healthz` under the
same clients in the same run. The pair cache's hit rate is measured on the same code in
this process, over refreshes that each move one upstream branch of ten.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import httpx

from bench.clones import SERVER_ENV
from bench.common import ADMIN, bench_settings, percentile, plain_git
from bench.gitserver import plain_git_out
from repodepot.accounts import operator
from repodepot.branches import store
from repodepot.branches.store import PairRow
from repodepot.clock import now
from repodepot.db.models import Visibility
from repodepot.services import Services
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec
from tests.support.seed import seed_mirror
from tests.support.servers import ServeProcess

AUTH = {"Authorization": f"Bearer {ADMIN}"}
REPOS = 1_000
PAIRS = 10
REAL = 3
ROUNDS = 5
CLIENTS = 100
REQUESTS = 4_000
P95_MS, P99_MS = 100.0, 200.0
REAL_SPEC = Spec(commits=2_000, branches=PAIRS - 1, branch_commits=5, files=50)
TRACKED = ["main", "branch-*"]
SERVE_ENV = {**SERVER_ENV, "REPODEPOT_ENSURE_FETCH_INTERVAL": "0"}


def _advance(upstream: Path, branch: str, note: str) -> None:
    """One new commit on `branch` of the served upstream (its tree unchanged)."""
    sha = plain_git_out(
        "--git-dir",
        str(upstream),
        "-c",
        "user.name=Bench",
        "-c",
        "user.email=bench@example.com",
        "commit-tree",
        f"refs/heads/{branch}^{{tree}}",
        "-p",
        f"refs/heads/{branch}",
        "-m",
        note,
    )
    plain_git("--git-dir", str(upstream), "update-ref", f"refs/heads/{branch}", sha)


async def _seed_rows(services: Services) -> list[str]:
    """REPOS repositories with an upstream, PAIRS pairs each, fetched an hour ago."""
    rng = random.Random(7)
    names = [f"bench/tracked{index:04d}" for index in range(REPOS)]
    ids = [
        (
            await services.repositories.create(
                name=name, owner_id=None, visibility=Visibility.public
            )
        ).id
        for name in names
    ]
    at = now() - timedelta(hours=1)
    async with services.sessions.begin() as session:
        for index, repository_id in enumerate(ids):
            branches = ["main", *(f"release/{k}" for k in range(PAIRS - 1))]
            await store.put(
                session,
                repository_id,
                url=f"http://127.0.0.1:9/upstream/{index}.git",
                upstream_repository_id=None,
                branches=["main", "release/*"],
                interval_seconds=900.0,
                credential=None,
                keep_credential=False,
                automatic=False,
                at=at,
            )
            pairs = [
                PairRow(
                    branch=branch,
                    upstream_branch=branch,
                    local_sha=rng.randbytes(20).hex(),
                    upstream_sha=rng.randbytes(20).hex(),
                    ahead=rng.choice((0, 0, 3, 40)),
                    behind=rng.choice((0, 1, 25, 900)),
                )
                for branch in branches
            ]
            await store.record_pairs(session, repository_id, pairs, at)
        # Fetched, next due in a day: the served process's loop leaves them alone.
        claimed = await store.claim(session, "bench", REPOS, now(), busy={}, per_host=REPOS)
        for repository_id, _ in claimed:
            await store.finish(
                session,
                repository_id,
                "bench",
                at=at,
                next_at=at + timedelta(days=1),
                changed=True,
                error=None,
                fetch_ms={"network": 310, "pack": 40, "refs": 12, "db": 3},
                min_gap=60.0,
            )
    return names


async def _seed_real(services: Services, served: Path, url: Callable[[str], str]) -> list[str]:
    """REAL mirrors whose upstreams differ on every tracked branch; refreshed ROUNDS times.

    Returns their names. The refreshes run here, on the served code, to read the pair
    cache's hit rate: each moves one upstream branch, so 9 of 10 pairs are known.
    """
    names = []
    for index in range(REAL):
        record = await seed_mirror(
            services, f"bench/real{index}", spec=REAL_SPEC, visibility=Visibility.public
        )
        upstream = served / f"up{index}.git"
        plain_git("clone", "--mirror", "-q", str(services.storage.path(record.id)), str(upstream))
        for branch in ["main", *(f"branch-{k}" for k in range(PAIRS - 1))]:
            _advance(upstream, branch, "upstream only")
        await services.branches.set_upstream(
            operator(), record.name, url=url(f"up{index}.git"), branches=TRACKED, interval=60
        )
        names.append(record.name)
    for round_ in range(ROUNDS + 1):
        if round_:
            for index, name in enumerate(names):
                _advance(served / f"up{index}.git", f"branch-{round_ % (PAIRS - 1)}", "moved")
                await services.branches.fetch_now(operator(), name)
        for repository_id, _ in await services.branches.claim("bench", REAL):
            await services.branches.refresh("bench", repository_id)
    return names


async def _load(
    http: httpx.AsyncClient, urls: Callable[[random.Random], str]
) -> tuple[list[float], float]:
    """REQUESTS GETs by CLIENTS clients at once; their latencies and the rate."""
    samples: list[float] = []
    remaining = REQUESTS

    async def client(seed: int) -> None:
        nonlocal remaining
        rng = random.Random(seed)
        while remaining > 0:
            remaining -= 1
            url = urls(rng)
            started = time.perf_counter()
            answer = await http.get(url, headers=AUTH)
            samples.append(time.perf_counter() - started)
            if answer.status_code != 200:
                raise AssertionError(f"{url}: {answer.status_code} {answer.text}")

    started = time.perf_counter()
    await asyncio.gather(*(client(seed) for seed in range(CLIENTS)))
    return samples, REQUESTS / (time.perf_counter() - started)


async def _churn(
    http: httpx.AsyncClient, base: str, served: Path, names: list[str], asked: list[int]
) -> None:
    """Every second, move an upstream branch of a real mirror and ask for its fetch."""
    turn = 0
    while True:
        index = turn % len(names)
        await asyncio.to_thread(
            _advance, served / f"up{index}.git", f"branch-{turn % (PAIRS - 1)}", "moved"
        )
        answer = await http.post(f"{base}/api/repos/{names[index]}/upstream/fetch", headers=AUTH)
        assert answer.status_code == 202, answer.text
        asked.append(turn)
        turn += 1
        await asyncio.sleep(1.0)


@asynccontextmanager
async def _serve(data: Path) -> AsyncIterator[ServeProcess]:
    server = await asyncio.to_thread(ServeProcess, data, SERVE_ENV)
    try:
        yield server
    finally:
        server.stop()


async def run() -> list[str]:
    with tempfile.TemporaryDirectory(prefix="repodepot-bench-") as scratch:
        root = Path(scratch)
        data, served = root / "data", root / "served"
        served.mkdir()
        with GitHttpServer(served) as upstream:
            # Every 'fetch now' runs (by default at most one per 30 s per repository).
            services = await Services.open(bench_settings(data, ensure_fetch_interval=0.0))
            try:
                tracked = await _seed_rows(services)
                real = await _seed_real(services, served, upstream.url)
                cache = services.branches.counter.cache
                hits, misses = cache.hits, cache.misses
            finally:
                await services.close()
            async with (
                _serve(data) as server,
                httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=CLIENTS)) as http,
            ):
                names = tracked + real
                health = await _load(http, lambda _: f"{server.url}/healthz")
                asked: list[int] = []
                churn = asyncio.create_task(_churn(http, server.url, served, real, asked))
                status = await _load(
                    http, lambda rng: f"{server.url}/api/repos/{rng.choice(names)}/sync-status"
                )
                churn.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await churn
                fetched = await _fetched(http, server.url, real)
    return _table(health, status, len(asked), fetched, hits, misses)


async def _fetched(http: httpx.AsyncClient, base: str, real: list[str]) -> list[str]:
    """Each real mirror's last fetch time and split, as sync-status shows it."""
    shown = []
    for name in real:
        upstream = (await http.get(f"{base}/api/repos/{name}/sync-status", headers=AUTH)).json()
        shown.append(
            f"{name}: last fetched {upstream['upstream']['last_fetched_at']}, "
            f"{upstream['upstream']['last_fetch_ms']} ms"
        )
    return shown


def _ms(samples: list[float]) -> str:
    return " / ".join(f"{percentile(samples, q) * 1000:.1f}" for q in (50, 95, 99))


def _table(
    health: tuple[list[float], float],
    status: tuple[list[float], float],
    asked: int,
    fetched: list[str],
    hits: int,
    misses: int,
) -> list[str]:
    samples = status[0]
    met = percentile(samples, 95) * 1000 < P95_MS and percentile(samples, 99) * 1000 < P99_MS
    ratio = percentile(samples, 50) / percentile(health[0], 50)
    return [
        f"{REPOS:,} repositories with an upstream and {PAIRS} tracked pairs each, plus {REAL} "
        f"real mirrors fetching their real upstreams; {REQUESTS:,} requests per row by "
        f"{CLIENTS} concurrent clients (httpx) against `repodepot serve` in its own process "
        "(SQLite), random repositories.",
        "",
        "| request | p50 / p95 / p99 ms | requests/s | ratio (p50) | target |",
        "|---|---|---|---|---|",
        f"| `GET /healthz` (baseline) | {_ms(health[0])} | {health[1]:.0f} | 1.00x | |",
        f"| `GET /api/repos/{{name}}/sync-status` | {_ms(samples)} | {status[1]:.0f} | "
        f"{ratio:.2f}x | {'met' if met else 'MISSED'} (p95 < {P95_MS:g}, p99 < {P99_MS:g} ms) |",
        "",
        f"During the sync-status row, {asked} upstream fetches were asked for (one a second, "
        "each after moving an upstream branch): " + "; ".join(fetched) + ".",
        "",
        f"Pair cache over {ROUNDS + 1} refreshes of {REAL} real mirrors (the first cold, each "
        f"later one after one upstream branch of {PAIRS} moved): {hits} hits, {misses} misses, "
        f"hit rate {hits / max(1, hits + misses):.0%} (a steady refresh: "
        f"{(PAIRS - 1) / PAIRS:.0%}). sync-status itself reads only the table.",
    ]
