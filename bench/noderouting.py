"""Storage nodes (issue 16): what a web process's forwarding costs a clone, against the node.

One PostgreSQL, one gitserver-only process (node `gs-1`) and one web process with no
mirror, each `repodepot serve` in its own process. A generated repository (a
`Spec(commits=20_000)`, served by `git http-backend` on 127.0.0.1) is placed on the node
and cloned there. Then, interleaved, `git clone --mirror` of it through the web process
(forwarded to the node's internal API, streamed both ways) and directly from the node's
own public URL, `ROUNDS` times each; `GET …/info/refs` (the advertisement, the smallest
forwarded stream) and EnsureRevision of a present commit (`GET /api/repos/{name}/commits/
{sha}`, forwarded as JSON) `REQUESTS` times each way: p50 / p95 / p99, the ratio and the
p99 that forwarding adds, against the target: a clone through web at most 1.1x the direct
one (p50).

`REPODEPOT_BENCH_QUICK=1`: 5,000 commits, fewer rounds.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
from pathlib import Path
from unittest import mock

import httpx

from bench.access import _database
from bench.common import percentile
from repodepot.db.models import Visibility
from repodepot.gitserver.schedule import QueueReason
from repodepot.services import Services
from repodepot.settings import Settings
from tests.support import servers
from tests.support.githttp import GitHttpServer
from tests.support.postgres import PostgresCluster, free_port
from tests.support.repogen import HERMETIC, Spec, generate

QUICK = os.environ.get("REPODEPOT_BENCH_QUICK") == "1"
SPEC = Spec(commits=5_000 if QUICK else 20_000, branches=4, tags=4)
ROUNDS = 5 if QUICK else 15  # clones each way
REQUESTS = 100 if QUICK else 400  # advertisements each way
TARGET = 1.1
NAME = "acme/big"
ADVERT = f"/git/{NAME}/info/refs?service=git-upload-pack"
COMMITS = f"/api/repos/{NAME}/commits"
ADMIN = "rdp_bench-nodes-admin-token-0123456789"
ENV = {
    "REPODEPOT_ADMIN_TOKEN": ADMIN,
    "REPODEPOT_SECRET_KEY": "bench-secret-key-" + "k" * 32,
    "REPODEPOT_INTERNAL_SECRET": "bench-internal-" + "s" * 32,
    "REPODEPOT_ALLOWED_SCHEMES": "http",
    "REPODEPOT_OUTBOUND_ALLOWLIST": "127.0.0.1",
    "REPODEPOT_LOG_LEVEL": "warning",
    "REPODEPOT_UPDATE_POLL_INTERVAL": "0.2",
}


async def run() -> list[str]:
    """The clone and advertisement timings through web and direct, and their table."""
    with tempfile.TemporaryDirectory(prefix="repodepot-bench-nodes-") as scratch:
        root = Path(scratch)
        generate(root / "served" / "big.git", SPEC)
        cluster = PostgresCluster()
        await asyncio.to_thread(cluster.start)
        try:
            url = await _database(cluster, cluster.url(), "bench_nodes")
            assert url is not None
            env = {**ENV, "REPODEPOT_DATABASE_URL": url}
            with GitHttpServer(root / "served") as sources:
                node, web = await asyncio.to_thread(_start, root, env)
                try:
                    await _seed(root, env, sources.url("big.git"))
                    await _cloned(web.url)
                    clones = await asyncio.to_thread(_clones, root, web.url, node.url)
                    head = _head(root / "served" / "big.git")
                    adverts = await _requests(web.url, node.url, ADVERT, None)
                    ensures = await _requests(web.url, node.url, f"{COMMITS}/{head}", ADMIN)
                finally:
                    web.stop()
                    node.stop()
        finally:
            await asyncio.to_thread(cluster.stop)
    return _table(clones, adverts, ensures)


def _start(root: Path, env: dict[str, str]) -> tuple[servers.ServeProcess, servers.ServeProcess]:
    port = free_port()  # the node's URL is in its own settings: known before it starts
    node_env = {
        **env,
        "REPODEPOT_ROLES": "gitserver",
        "REPODEPOT_NODE_NAME": "gs-1",
        "REPODEPOT_NODE_URL": f"http://127.0.0.1:{port}",
    }
    with mock.patch.object(servers, "free_port", return_value=port):
        node = servers.ServeProcess(root / "gs-1", node_env)
    web = servers.ServeProcess(root / "web", {**env, "REPODEPOT_ROLES": "web,updater"})
    return node, web


async def _seed(root: Path, env: dict[str, str], source: str) -> None:
    """The repository, public, queued as new: placed on the one active node."""
    settings = Settings(
        data_dir=root / "seeder",
        database_url=env["REPODEPOT_DATABASE_URL"],
        secret_key=env["REPODEPOT_SECRET_KEY"],
    )
    services = await Services.open(settings)
    try:
        deadline = time.monotonic() + 30
        while not await services.nodes.active():  # the node's first heartbeat
            assert time.monotonic() < deadline, "the node never registered"
            await asyncio.sleep(0.2)
        record = await services.repositories.create(
            name=NAME, owner_id=None, visibility=Visibility.public, source_url=source
        )
        await services.gitserver.enqueue([record.id], QueueReason.new)
    finally:
        await services.close()


async def _cloned(web: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        deadline = time.monotonic() + 300
        while True:
            mirror = (await http.get(f"{web}/api/repos/{NAME}")).json()["mirror"]
            if mirror["clone_status"] == "cloned":
                assert mirror["node"] == "gs-1", mirror
                return
            assert time.monotonic() < deadline, mirror
            await asyncio.sleep(0.5)


def _clones(root: Path, web: str, node: str) -> dict[str, list[float]]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_TERMINAL_PROMPT": "0", **HERMETIC}
    taken: dict[str, list[float]] = {"through web": [], "direct from the node": []}
    for index in range(ROUNDS):
        for label, base in (("through web", web), ("direct from the node", node)):
            into = root / "clones" / f"{index}-{label.split()[0]}.git"
            started = time.perf_counter()
            subprocess.run(
                ["git", "clone", "--mirror", "--quiet", f"{base}/git/{NAME}", str(into)],
                env=env,
                check=True,
                capture_output=True,
                timeout=300,
            )
            taken[label].append(time.perf_counter() - started)
            subprocess.run(["rm", "-rf", str(into)], check=True)
    return taken


def _head(repository: Path) -> str:
    found = subprocess.run(
        ["git", "--git-dir", str(repository), "rev-parse", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    )
    return found.stdout.strip()


async def _requests(web: str, node: str, path: str, token: str | None) -> dict[str, list[float]]:
    """`path` asked `REQUESTS` times of each, interleaved, one at a time."""
    taken: dict[str, list[float]] = {"through web": [], "direct from the node": []}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx.AsyncClient(timeout=30, headers=headers) as http:
        for _ in range(REQUESTS):
            for label, base in (("through web", web), ("direct from the node", node)):
                started = time.perf_counter()
                answer = await http.get(base + path)
                taken[label].append(time.perf_counter() - started)
                assert answer.status_code == 200, answer.text
    return taken


def _table(
    clones: dict[str, list[float]],
    adverts: dict[str, list[float]],
    ensures: dict[str, list[float]],
) -> list[str]:
    lines = [
        f"A {SPEC.commits:,}-commit repository on node `gs-1` (its own `repodepot serve "
        "--roles gitserver`, on PostgreSQL); a web process without mirrors forwards to it. "
        f"{ROUNDS} `git clone --mirror`, {REQUESTS} `GET …/info/refs` and {REQUESTS} "
        "EnsureRevision (a present commit) each way, interleaved.",
        "",
        "| request | way | p50 / p95 / p99 ms | p50 against direct | target |",
        "|---|---|---|---|---|",
    ]
    measured = (
        ("`git clone --mirror`", clones),
        ("`GET …/info/refs`", adverts),
        ("EnsureRevision", ensures),
    )
    for what, samples in measured:
        direct = percentile(samples["direct from the node"], 50)
        for way, taken in samples.items():
            p = [percentile(taken, q) * 1000 for q in (50, 95, 99)]
            ratio = p[0] / (direct * 1000)
            target = ""
            if what.startswith("`git clone") and way == "through web":
                target = f"{'met' if ratio <= TARGET else 'MISSED'} (<= {TARGET:g}x)"
            lines.append(
                f"| {what} | {way} | {p[0]:.1f} / {p[1]:.1f} / {p[2]:.1f} | {ratio:.2f}x "
                f"| {target} |"
            )
        added = percentile(samples["through web"], 99) - percentile(
            samples["direct from the node"], 99
        )
        lines.append(f"| {what} | added at the p99 | {added * 1000:+.1f} ms | | |")
    lines += ["", "Exec, the Go proxy and branch reads are not forwarded yet."]
    return lines
