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
from dataclasses import replace
from datetime import timedelta
from functools import partial
from pathlib import Path

import httpx

from bench.clones import SERVER_ENV
from bench.common import ADMIN, bench_settings, percentile, plain_git
from bench.gitserver import plain_git_out
from repodepot.accounts import operator
from repodepot.branches import store
from repodepot.branches.store import PairRow
from repodepot.clock import now
from repodepot.db.base import in_transaction
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
SEQUENTIAL = 500
PAUSED = 2_000
PAUSE = 1.0  # seconds a user reads the page before the next request
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
            record = await in_transaction(session, partial(store.get, repository_id=repository_id))
            assert record is not None
            await store.record_pairs(
                session, repository_id, pairs, at, generation=record.generation
            )
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
                generation=1,  # each upstream was set once above
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
            services,
            f"bench/real{index}",
            spec=replace(REAL_SPEC, seed=index + 1),  # distinct commits: the cache is by SHA
            visibility=Visibility.public,
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
        # One host serves every upstream: claims stop at max_clones_per_host at once.
        while claimed := await services.branches.claim("bench", REAL):
            for repository_id, _ in claimed:
                await services.branches.refresh("bench", repository_id)
    return names


class Connection:
    """One keep-alive HTTP/1.1 connection, as light as a client can be.

    httpx spends about a millisecond of CPU a request; with 100 clients on the 2 cores
    the server also runs on, that would be measured as the server's latency.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        """Connect to 127.0.0.1:`port`."""
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def get(self, path: str) -> tuple[int, bytes]:
        """The status and body of `GET path` with the admin token."""
        self._writer.write(
            f"GET {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {ADMIN}\r\n\r\n".encode()
        )
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        body = await self._reader.readexactly(int(fields["content-length"]))
        return int(lines[0].split()[1]), body

    def close(self) -> None:
        """Close the connection."""
        self._writer.close()


async def _load(
    port: int,
    paths: Callable[[random.Random], str],
    *,
    clients: int,
    requests: int = REQUESTS,
    pause: float = 0.0,
) -> tuple[list[float], float]:
    """`requests` GETs by `clients` clients at once; their latencies and the rate.

    Each client waits between 0.5 and 1.5 times `pause` seconds between its requests.
    """
    samples: list[float] = []
    remaining = requests

    async def client(seed: int) -> None:
        nonlocal remaining
        rng = random.Random(seed)
        connection = await Connection.open(port)
        if pause:  # users arrive over a pause, not all in the same millisecond
            await asyncio.sleep(pause * rng.uniform(0.0, 1.0))
        try:
            while remaining > 0:
                remaining -= 1
                path = paths(rng)
                started = time.perf_counter()
                status, body = await connection.get(path)
                samples.append(time.perf_counter() - started)
                if status != 200:
                    raise AssertionError(f"{path}: {status} {body[:300]!r}")
                if pause:
                    await asyncio.sleep(pause * rng.uniform(0.5, 1.5))
        finally:
            connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(seed) for seed in range(clients)))
    return samples, requests / (time.perf_counter() - started)


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
    except Exception:
        print(server.log.read_text()[-6000:])
        raise
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
                httpx.AsyncClient(timeout=60) as http,
            ):
                names = tracked + real

                def health(_: random.Random) -> str:
                    return "/healthz"

                def status(rng: random.Random) -> str:
                    return f"/api/repos/{rng.choice(names)}/sync-status"

                def repo(rng: random.Random) -> str:
                    return f"/api/repos/{rng.choice(names)}"

                await _load(server.port, health, clients=CLIENTS, requests=2 * CLIENTS)  # warm
                rows = {
                    "`GET /healthz`, 1 client (baseline)": await _load(
                        server.port, health, clients=1, requests=SEQUENTIAL
                    ),
                    "`GET /api/user` (the token's check alone), 1 client": await _load(
                        server.port, lambda _: "/api/user", clients=1, requests=SEQUENTIAL
                    ),
                    "`GET /api/repos/{name}` (check, one repository read), 1 client": (
                        await _load(server.port, repo, clients=1, requests=SEQUENTIAL)
                    ),
                    "`GET /api/repos/{name}/sync-status`, 1 client": await _load(
                        server.port, status, clients=1, requests=SEQUENTIAL
                    ),
                    f"`GET /healthz`, {CLIENTS} clients (baseline)": await _load(
                        server.port, health, clients=CLIENTS
                    ),
                }
                quiet = (
                    f"`GET /api/repos/{{name}}/sync-status`, {CLIENTS} clients, pausing, no fetch"
                )
                rows[quiet] = await _load(
                    server.port, status, clients=CLIENTS, requests=PAUSED, pause=PAUSE
                )
                asked: list[int] = []
                churn = asyncio.create_task(_churn(http, server.url, served, real, asked))
                busy = f"**`GET /api/repos/{{name}}/sync-status`, {CLIENTS} clients**"
                rows[busy] = await _load(server.port, status, clients=CLIENTS)
                paused = f"**`GET /api/repos/{{name}}/sync-status`, {CLIENTS} clients, pausing**"
                rows[paused] = await _load(
                    server.port, status, clients=CLIENTS, requests=PAUSED, pause=PAUSE
                )
                churn.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await churn
                fetched = await _fetched(http, server.url, real)
    return _table(rows, len(asked), fetched, hits, misses)


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
    rows: dict[str, tuple[list[float], float]],
    asked: int,
    fetched: list[str],
    hits: int,
    misses: int,
) -> list[str]:
    lines = [
        f"{REPOS:,} repositories with an upstream and {PAIRS} tracked pairs each, plus {REAL} "
        f"real mirrors fetching their real upstreams; `repodepot serve` (SQLite) in its own "
        f"process; clients on keep-alive connections, random repositories, no pause between "
        f"requests unless said (pausing: {PAUSE:g} s ± 50%, users reading the page); "
        f"{SEQUENTIAL} requests for 1 client, {REQUESTS:,} for {CLIENTS} ({PAUSED:,} pausing).",
        "",
        "| request | p50 / p95 / p99 ms | requests/s | ratio (p50) | target |",
        "|---|---|---|---|---|",
    ]
    base: dict[int, float] = {}
    for name, (samples, rate) in rows.items():
        clients = 1 if ", 1 client" in name else CLIENTS
        base.setdefault(clients, percentile(samples, 50))
        target = ""
        if name.startswith("**"):
            met = (
                percentile(samples, 95) * 1000 < P95_MS and percentile(samples, 99) * 1000 < P99_MS
            )
            target = f"{'met' if met else 'MISSED'} (p95 < {P95_MS:g}, p99 < {P99_MS:g} ms)"
        ratio = percentile(samples, 50) / base[clients]
        lines.append(f"| {name} | {_ms(samples)} | {rate:.0f} | {ratio:.2f}x | {target} |")
    return [
        *lines,
        "",
        f"During the bold rows, {asked} upstream fetches were asked for "
        "(one a second, each after moving an upstream branch): " + "; ".join(fetched) + ".",
        "",
        f"Pair cache over {ROUNDS + 1} refreshes of {REAL} real mirrors (the first cold, each "
        f"later one after one upstream branch of {PAIRS} moved): {hits} hits, {misses} misses, "
        f"hit rate {hits / max(1, hits + misses):.0%} (a steady refresh: "
        f"{(PAIRS - 1) / PAIRS:.0%}). sync-status itself reads only the table.",
    ]
