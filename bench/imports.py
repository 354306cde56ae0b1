"""Import benchmarks: database statements per import, and progress latency to SSE clients."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event

from bench.common import ADMIN, bench_settings, percentile, repo_size
from repodepot.imports.progress import ProgressCell
from repodepot.imports.worker import ImportWorker
from tests.support.githttp import GitHttpServer
from tests.support.postgres import PostgresCluster
from tests.support.repogen import Spec, generate
from tests.support.servers import live_app

AUTH = {"Authorization": f"Bearer {ADMIN}"}
SOURCE = Spec(commits=20_000, branches=10, tags=10, blob_bytes=512)


class StatementCounter:
    """Counts every statement sent to the database, by kind."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.on = False

    def attach(self, engine: Any) -> None:
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if self.on:
            self.counts[classify(statement)] = self.counts.get(classify(statement), 0) + 1


def classify(statement: str) -> str:
    """Which part of the system a statement serves: auth, start-up, progress or import."""
    text = " ".join(statement.split())
    verb = text.split(" ", 1)[0].upper()
    if "api_tokens" in text:
        return "auth"
    if verb == "SELECT" and "import_jobs.heartbeat_at FROM import_jobs" in text:
        return "startup"  # the worker's look for dead workers' jobs, once per start
    if verb == "UPDATE" and "heartbeat_at=" in text and "status=" not in text:
        return "progress"
    return f"import {verb}"


async def _viewer(
    http: httpx.AsyncClient, url: str, ready: asyncio.Event, received: dict[int, float] | None
) -> None:
    async with http.stream("GET", url, headers=AUTH) as answer:
        ready.set()
        async for line in answer.aiter_lines():
            if line.startswith("data:"):
                job = json.loads(line[5:])
                if received is not None:
                    received.setdefault(job["seq"], time.monotonic())
                if job["status"] in ("success", "failed", "cancelled"):
                    return


async def one_import(
    served: Path, database_url: str | None, viewers: int, seconds: float
) -> dict[str, Any]:
    """Import the source once with `viewers` SSE clients; count statements, time pushes."""
    source = served / "src.git"
    published: dict[int, float] = {}
    original_bump = ProgressCell.bump

    def timed_bump(cell: ProgressCell) -> None:  # when git's record reached the cell
        published.setdefault(cell.seq + 1, time.monotonic())
        original_bump(cell)

    ProgressCell.bump = timed_bump  # type: ignore[method-assign,assignment]
    try:
        with (
            tempfile.TemporaryDirectory() as scratch,
            GitHttpServer(served, throttle=int(repo_size(source) / seconds)) as remote,
        ):
            settings = bench_settings(Path(scratch) / "data", database_url, roles=["web"])
            async with (
                live_app(settings) as live,
                httpx.AsyncClient(timeout=None) as http,
            ):
                base, svc = live.url, live.services
                counter = StatementCounter()
                counter.attach(svc.engine)
                counter.attach(svc.worker_engine)
                counter.on = True
                job = (
                    await http.post(
                        f"{base}/api/imports",
                        headers=AUTH,
                        json={"url": remote.url("src.git"), "owner": "bench", "slug": "src"},
                    )
                ).json()
                counter.on = False  # the viewers connect: counted apart, below
                url = f"{base}/api/imports/{job['id']}/events"
                received: dict[int, float] = {}
                readies = [asyncio.Event() for _ in range(max(viewers, 1))]
                tasks = [
                    asyncio.create_task(
                        _viewer(http, url, readies[i], received if i == 0 else None)
                    )
                    for i in range(max(viewers, 1))
                ]
                for ready in readies:
                    await ready.wait()
                await asyncio.sleep(0.5)  # every viewer has read its snapshot
                counter.on = True
                started = time.monotonic()
                worker = ImportWorker.from_services(svc)
                running = asyncio.create_task(worker.run())
                await asyncio.gather(*tasks)
                elapsed = time.monotonic() - started
                counter.on = False
                await worker.stop()
                running.cancel()
                final = (await http.get(f"{base}/api/imports/{job['id']}", headers=AUTH)).json()
    finally:
        ProgressCell.bump = original_bump  # type: ignore[method-assign]
    # Each change's latency: until the first event carrying it (or a newer state) arrived.
    arrivals = sorted(received.items())
    latencies = []
    for seq, at in published.items():
        later = [when for got, when in arrivals if got >= seq]
        if later:
            latencies.append((min(later) - at) * 1000)
    return {
        "status": final["status"],
        "seconds": elapsed,
        "counts": counter.counts,
        "latencies": latencies,
        "published": len(published),
    }


async def run(seconds: float = 60.0) -> list[str]:
    """Both tables, on SQLite and on PostgreSQL."""
    with tempfile.TemporaryDirectory() as scratch:
        served = Path(scratch) / "served"
        generate(served / "src.git", SOURCE)
        cluster = PostgresCluster()
        cluster.start()
        try:
            import asyncpg

            conn = await asyncpg.connect(host="127.0.0.1", port=cluster.port, user="postgres")
            results = {}
            for engine_name in ("sqlite", "postgresql"):
                for viewers in (0, 50):
                    url = None
                    if engine_name == "postgresql":
                        name = f"bench_{viewers}"
                        await conn.execute(f"CREATE DATABASE {name}")
                        url = cluster.url(name)
                    results[engine_name, viewers] = await one_import(served, url, viewers, seconds)
            await conn.close()
        finally:
            cluster.stop()
    lines = [
        "| database | SSE viewers | import s | progress writes | other import statements "
        "| auth | worker start-up | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (engine_name, viewers), result in results.items():
        assert result["status"] == "success", result
        counts = result["counts"]
        progress = counts.get("progress", 0)
        others = sum(n for kind, n in counts.items() if kind.startswith("import"))
        budget = int(result["seconds"]) + 1
        ok = progress <= budget and others <= 10
        lines.append(
            f"| {engine_name} | {viewers} | {result['seconds']:.1f} | {progress} "
            f"({progress / result['seconds']:.2f}/s) | {others} | "
            f"{counts.get('auth', 0)} | {counts.get('startup', 0)} | "
            f"{'met' if ok else 'MISSED'} (≤ {budget} + ≤ 10) |"
        )
    lines += [
        "",
        "| database | SSE viewers | progress events | latency p50 / p95 / p99 ms | "
        "target p99 < 300 ms |",
        "|---|---|---|---|---|",
    ]
    for (engine_name, viewers), result in results.items():
        samples = result["latencies"]
        p = [percentile(samples, q) for q in (50, 95, 99)]
        lines.append(
            f"| {engine_name} | {viewers} | {len(samples)} | "
            f"{p[0]:.2f} / {p[1]:.2f} / {p[2]:.2f} | "
            f"{'met' if p[2] < 300 else 'MISSED'} |"
        )
    detail = {f"{k[0]}/{k[1]}": v["counts"] for k, v in results.items()}
    lines.append(
        f"\nEvery statement from the POST to the end, by kind: {json.dumps(detail)}. "
        "The viewers connect while the job waits (SELECTs of their token, the job and its "
        "queue position, not counted here); after that nothing they do reaches the database."
    )
    return lines
