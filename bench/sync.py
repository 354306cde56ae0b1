"""Code host sync benchmark: a fake GitHub with 20,000 repositories, on SQLite and PostgreSQL.

The fake runs in its own process and answers every API call after LATENCY seconds.

The first sync inserts every repository; a re-sync where nothing changed must write
nothing to `repositories` and take under 10% of the first. A third case renames 1%
of the repositories, so a re-sync with real work is in the table too. The baseline is
the first sync of the same run; the API's pages are served by the same fake both times.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event

from bench.common import bench_settings, percentile
from repodepot.accounts import operator
from repodepot.services import Services
from tests.support.postgres import PostgresCluster

REPOS = 20_000
RESYNCS = 7
# Every API answer, 200 or 304, takes this long: a host across a network. GitHub builds
# the whole page before comparing ETags, so a 304 saves quota and transfer, not time.
LATENCY = 0.025


class Statements:
    """Every statement the syncer sends, as (verb, table)."""

    def __init__(self, engine: Any) -> None:
        self.seen: list[tuple[str, str]] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        words = " ".join(statement.split()).split()
        verb = words[0].upper()
        if verb == "SELECT":
            table = words[words.index("FROM") + 1] if "FROM" in words else "?"
        elif verb == "INSERT":
            table = words[2]
        elif verb == "UPDATE":
            table = words[1]
        elif verb == "DELETE":
            table = words[2]
        else:
            table = ""
        self.seen.append((verb, table))

    def take(self) -> list[tuple[str, str]]:
        seen, self.seen = self.seen, []
        return seen


def repo_writes(seen: list[tuple[str, str]]) -> int:
    return sum(
        1 for verb, table in seen if verb != "SELECT" and table in ("repositories", "repo_sources")
    )


class Host:
    """A fake GitHub in its own process, as a real host is: it does not share our CPU time."""

    def __init__(self, count: int, latency: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fakehosts", "github", str(count), str(latency)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.url, self.token = self.process.stdout.readline().split()

    def rename(self, *, undo: bool = False) -> None:
        query = {
            "every": str(REPOS // 200),
            "suffix": "-renamed",
            **({"undo": "1"} if undo else {}),
        }
        httpx.post(f"{self.url}/_fake/rename", params=query).raise_for_status()

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


async def one_database(host: Host, scratch: Path, url: str | None) -> dict[str, Any]:
    settings = bench_settings(scratch, url, codehost_requests_per_second=1000.0)
    services = await Services.open(settings)
    try:
        counter = Statements(services.worker_engine)
        record = await services.codehosts.create(
            operator(),
            kind="github",
            name="bench",
            config={"url": host.url, "token": host.token, "repositoryQuery": ["affiliated"]},
        )
        syncer = services.codehosts.syncer
        counter.take()
        started = time.perf_counter()
        first = await syncer.sync(record.id)
        first_s = time.perf_counter() - started
        first_statements = counter.take()
        assert first.added == REPOS, first
        resyncs: list[float] = []
        resync_statements: list[tuple[str, str]] = []
        for _ in range(RESYNCS):
            started = time.perf_counter()
            again = await syncer.sync(record.id)
            resyncs.append(time.perf_counter() - started)
            resync_statements = counter.take()
            assert again.unchanged == REPOS, again
            assert again.not_modified == again.api_calls, again
        host.rename()
        started = time.perf_counter()
        renamed = await syncer.sync(record.id)
        renamed_s = time.perf_counter() - started
        renamed_statements = counter.take()
        assert renamed.modified == 200, renamed
        host.rename(undo=True)  # back, for the next database
        return {
            "first": (first_s, first_statements, first.api_calls),
            "resync": (resyncs, resync_statements, again.api_calls, again.not_modified),
            "renamed": (renamed_s, renamed_statements),
        }
    finally:
        await services.close()


async def run() -> list[str]:
    results: dict[str, dict[str, Any]] = {}
    host = Host(REPOS, LATENCY)
    with tempfile.TemporaryDirectory() as scratch:
        cluster = PostgresCluster()
        cluster.start()
        try:
            import asyncpg

            conn = await asyncpg.connect(host="127.0.0.1", port=cluster.port, user="postgres")
            await conn.execute("CREATE DATABASE bench_sync")
            await conn.close()
            results["sqlite"] = await one_database(host, Path(scratch) / "sqlite", None)
            results["postgresql"] = await one_database(
                host, Path(scratch) / "pg", cluster.url("bench_sync")
            )
        finally:
            cluster.stop()
            host.stop()
    lines = [
        "| database | first sync s | its statements | re-sync p50 / p95 / p99 s | "
        "re-sync / first | re-sync statements (writes to repos) | 1% renamed s | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        first_s, first_statements, first_calls = result["first"]
        resyncs, resync_statements, calls, not_modified = result["resync"]
        renamed_s, _ = result["renamed"]
        p = [percentile(resyncs, q) for q in (50, 95, 99)]
        ratio = p[1] / first_s
        writes = repo_writes(resync_statements)
        ok = writes == 0 and ratio < 0.10
        lines.append(
            f"| {name} | {first_s:.2f} ({first_calls} API calls) | {len(first_statements)} | "
            f"{p[0]:.3f} / {p[1]:.3f} / {p[2]:.3f} ({calls} calls, {not_modified} answered 304) | "
            f"{ratio:.1%} | {len(resync_statements)} ({writes}) | {renamed_s:.2f} | "
            f"{'met' if ok else 'MISSED'} (no write, < 10%) |"
        )
    detail = {
        name: sorted({f"{verb} {table}" for verb, table in result["resync"][1]})
        for name, result in results.items()
    }
    lines.append(f"\nA no-change re-sync's statements: {detail}.")
    return lines
