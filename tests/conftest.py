from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import os
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from repodepot.services import Services
from repodepot.settings import Settings
from repodepot.web.app import create_app
from tests.support.githttp import GitHttpServer
from tests.support.postgres import PostgresCluster
from tests.support.servers import LiveApp, live_app

ADMIN_TOKEN = "rdp_test-admin-token-0123456789abcdef"
# The backpressure gate holds background fetches while the machine's load is above its
# core count: on a shared CI machine running this suite that is most of the time, and
# tests waiting for a clone would wait for the machine. Off for every Settings the suite
# builds and every server process it starts; the gate's own tests set their limits.
GATE_OFF = {"REPODEPOT_BACKPRESSURE_LOAD": "0", "REPODEPOT_BACKPRESSURE_P99": "0"}
TEMPLATE_DB = "repodepot_template"
_counter = itertools.count()


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Settings read REPODEPOT_*; whatever the developer's shell has must not leak in.
    for key in list(os.environ):
        if key.startswith("REPODEPOT_"):
            monkeypatch.delenv(key)
    for key, value in GATE_OFF.items():
        monkeypatch.setenv(key, value)


LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


def _literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every test talks to 127.0.0.1: a lookup of a name (example.com in seeded data, say)
    # fails here at once, as it would on a machine without DNS. Address literals need
    # no lookup and pass.
    resolve = socket.getaddrinfo

    def loopback_only(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in LOOPBACK_NAMES and not _literal(name):
            raise socket.gaierror(socket.EAI_NONAME, f"tests resolve loopback only, not {name}")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    cluster = PostgresCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def run_in_thread(work: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine to completion on its own loop, even from inside a running loop."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            asyncio.run(work)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


async def _pg_execute(cluster: PostgresCluster, sql: str) -> None:
    conn = await asyncpg.connect(host="127.0.0.1", port=cluster.port, user="postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres_template(postgres: PostgresCluster) -> str:
    """A database migrated once; each test gets a copy (CREATE DATABASE ... TEMPLATE)."""
    from repodepot.db import migrate
    from repodepot.db.base import create_engine

    async def build() -> None:
        await _pg_execute(postgres, f"CREATE DATABASE {TEMPLATE_DB}")
        engine = create_engine(postgres.url(TEMPLATE_DB))
        await migrate.upgrade(engine)
        await engine.dispose()

    run_in_thread(build())
    return TEMPLATE_DB


def new_postgres_database(request: pytest.FixtureRequest) -> str:
    """A fresh, migrated PostgreSQL database (a copy of the template)."""
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    template: str = request.getfixturevalue("postgres_template")
    name = f"test_{os.getpid()}_{next(_counter)}"
    run_in_thread(_pg_execute(cluster, f"CREATE DATABASE {name} TEMPLATE {template}"))
    return cluster.url(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database test runs twice: on SQLite and on PostgreSQL 15."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    return new_postgres_database(request)


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> str:
    """For what only PostgreSQL does (several processes on one database)."""
    return new_postgres_database(request)


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        secret_key="test-secret-key-" + "x" * 32,
        admin_token=ADMIN_TOKEN,
        allowed_schemes=["http", "https"],
        outbound_allowlist=["127.0.0.1"],  # the loopback git server
    )


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    svc = await Services.open(settings)
    try:
        yield svc
    finally:
        await svc.close()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def app_services(app: FastAPI) -> Services:
    svc: Services = app.state.services
    return svc


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def git_root(tmp_path: Path) -> Path:
    root = tmp_path / "served"
    root.mkdir()
    return root


@pytest.fixture
def git_server(git_root: Path) -> Iterator[GitHttpServer]:
    with GitHttpServer(git_root) as server:
        yield server


@pytest.fixture
async def live_server() -> AsyncIterator[Callable[..., Awaitable[LiveApp]]]:
    """Start the app for some settings on a real uvicorn; stopped after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(settings: Settings, tls: tuple[Path, Path] | None = None) -> LiveApp:
            return await stack.enter_async_context(live_app(settings, tls))

        yield start
