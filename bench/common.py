"""Shared pieces of the benchmarks: percentiles, plain git, settings, repository size."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from repodepot.settings import Settings
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


def repo_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
