"""Shared pieces of the benchmarks: percentiles, table rows, a live server, a source repo."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from repodepot.services import Services
from repodepot.settings import Settings
from repodepot.web.app import create_app
from tests.support.postgres import free_port
from tests.support.repogen import HERMETIC

ADMIN = "rdp_bench-admin-token-0123456789"


def percentile(samples: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def plain_git(*args: str) -> None:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **HERMETIC}
    subprocess.run(["git", *args], env=env, check=True, capture_output=True)


def bench_settings(data: Path, database_url: str | None = None, **extra: Any) -> Settings:
    return Settings(
        data_dir=data,
        database_url=database_url,
        admin_token=ADMIN,
        allowed_schemes=["http"],
        outbound_allowlist=["127.0.0.1"],
        **extra,
    )


@asynccontextmanager
async def live_app(settings: Settings) -> AsyncIterator[tuple[str, FastAPI, Services]]:
    """The app on a real uvicorn on 127.0.0.1."""
    port = free_port()
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None))
    task = asyncio.create_task(server.serve())
    while not server.started:  # uvicorn offers no event to wait on
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app, app.state.services
    finally:
        server.should_exit = True
        await task


def repo_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
