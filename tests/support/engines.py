"""Every engine a `Services` sends statements through, for counting them."""

from __future__ import annotations

from sqlalchemy import Engine

from repodepot.db.base import direct_read_engine, read_engine, write_engine
from repodepot.services import Services


def app_engines(services: Services) -> list[Engine]:
    """The request and worker engines, each with its SQLite pools (reads, writes, direct)."""
    found = {
        id(each): each
        for engine in (services.engine, services.worker_engine)
        for each in (
            engine.sync_engine,
            read_engine(engine).sync_engine,
            write_engine(engine).sync_engine,
            direct_read_engine(engine),
        )
        if each is not None
    }
    return list(found.values())
