"""Shared steps of the import tests."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from repodepot.storage import Storage
from tests.support.repogen import Spec, generate, git

FINISHED = {"success", "failed", "cancelled"}
SOURCE = Spec(commits=3000, branches=3, tags=3, blob_bytes=1024)


def make_source(root: Path, name: str = "src.git", spec: Spec = SOURCE) -> Path:
    return generate(root / name, spec)


async def events(
    http: httpx.AsyncClient,
    base: str,
    job_id: int,
    *,
    until: set[str] = FINISHED,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Read the job's SSE stream until its status is in `until`; return every event."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        async with http.stream(
            "GET", f"{base}/api/imports/{job_id}/events", headers=headers
        ) as answer:
            assert answer.status_code == 200, await answer.aread()
            assert answer.headers["content-type"].startswith("text/event-stream")
            data: list[str] = []
            async for line in answer.aiter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    seen.append(json.loads("".join(data)))
                    data = []
                    if seen[-1]["status"] in until:
                        return seen
    return seen


def refs(repo: Path) -> str:
    return git("for-each-ref", "--format=%(objectname) %(refname)", cwd=repo)


def assert_faithful_copy(copy: Path, source: Path) -> None:
    assert refs(copy) == refs(source)
    git("fsck", "--full", "--strict", cwd=copy)
    assert git("symbolic-ref", "HEAD", cwd=copy).strip() == "refs/heads/main"


def mirrors(data_dir: Path) -> list[Path]:
    """Every mirror on disk, wherever its repository's id put it."""
    storage = Storage(data_dir)
    return [storage.path(key) for key in sorted(storage.mirror_ids())]


def leftovers(data_dir: Path) -> list[Path]:
    """Anything an import left behind in a data dir that had no repository before it:
    a mirror, or temporary work."""
    return [p for p in (data_dir / "tmp").iterdir() if "import" in p.name] + mirrors(data_dir)
