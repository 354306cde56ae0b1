"""A Go version's pin: the commit it was first served from, written once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlalchemy import event

from repodepot.db.base import write_engine
from repodepot.db.models import Visibility
from repodepot.goproxy.pins import Pins
from repodepot.goproxy.records import Module, VersionInfo
from repodepot.services import Services


async def test_concurrent_first_requests_of_a_version_write_its_pin_once(
    services: Services,
) -> None:
    repo = await services.repositories.create(
        name="acme/lib", visibility=Visibility.public, owner_id=None
    )
    module = Module(
        path="example.com/lib", repository_id=repo.id, repo_name=repo.name, root="example.com/lib",
        code_dir="", path_major="", git_dir=Path("/nonexistent"), source_url=None, public=True,
    )  # fmt: skip
    found = VersionInfo(version="v1.0.0", commit="a" * 40, commit_time=1, ref=None, subdir="")
    pins = Pins(services.sessions)
    inserts: list[str] = []

    def seen(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        if sql.lstrip().upper().startswith("INSERT"):
            inserts.append(sql)

    event.listen(write_engine(services.engine).sync_engine, "before_cursor_execute", seen)
    try:
        answers = await asyncio.gather(*(pins.save(module, found) for _ in range(20)))
    finally:
        event.remove(write_engine(services.engine).sync_engine, "before_cursor_execute", seen)
    assert answers == [found] * 20
    assert len(inserts) == 1  # one write, not twenty waiting for the lock to insert one row
    pinned = await pins.get(module, "v1.0.0")
    assert pinned is not None and pinned.commit == "a" * 40
    assert await Pins(services.sessions).get(module, "v1.0.0") == pinned  # from the table
