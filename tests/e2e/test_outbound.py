"""The outbound policy seen from outside: imports through the API against loopback servers.

127.0.0.1 is allowlisted in the tests' settings; 127.0.0.2 (also loopback) is not, and
plays the internal address an attacker wants repodepot to reach.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from repodepot.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.e2e.imports_helpers import events, leftovers
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate
from tests.support.servers import LiveApp

Start = Callable[[Settings], Awaitable[LiveApp]]
TOKEN = "glpat-ImportSecret0123456789xyz"
INTERNAL = "127.0.0.2"


class Redirector:
    """An allowlisted host that answers every request with a redirect to `target`."""

    def __init__(self, target: str, status: int = 302) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers
        redirector = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _redirect(self) -> None:
                redirector.seen.append((self.command, self.path, dict(self.headers.items())))
                self.send_response(status)
                self.send_header("Location", target + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _redirect

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Redirector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture
def internal(tmp_path: Path) -> Iterator[GitHttpServer]:
    """A git server on the internal address, holding a repository, with basic auth."""
    generate(tmp_path / "internal" / "secret.git", Spec(commits=3))
    with GitHttpServer(tmp_path / "internal", host=INTERNAL, auth=("alice", TOKEN)) as server:
        yield server


def _carried_token(headers: dict[str, str]) -> bool:
    basic = base64.b64encode(f"alice:{TOKEN}".encode()).decode()
    return any(TOKEN in value or basic in value for value in headers.values())


@pytest.mark.parametrize("status", [301, 302, 307])
async def test_an_allowlisted_host_redirecting_a_clone_elsewhere_fails_and_the_target_sees_nothing(
    settings: Settings,
    live_server: Start,
    http: httpx.AsyncClient,
    internal: GitHttpServer,
    status: int,
) -> None:
    with Redirector(f"http://{INTERNAL}:{internal.port}", status) as redirector:
        live = await live_server(settings)
        answer = await http.post(
            f"{live.url}/api/imports",
            json={
                "url": f"{redirector.url}/secret.git",
                "owner": "acme",
                "slug": "stolen",
                "username": "alice",
                "token": TOKEN,
            },
        )
        assert answer.status_code == 202, answer.text
        final = (await events(http, live.url, answer.json()["id"]))[-1]

    assert final["status"] == "failed"
    assert "redirect, which imports do not follow" in final["error"], final["error"]
    assert TOKEN not in final["error"]
    assert internal.requests == []  # git never connected to the redirect's target
    assert redirector.seen  # the first host was asked...
    assert not any(_carried_token(headers) for *_, headers in redirector.seen)  # ...tokenless
    assert leftovers(settings.data_dir) == []


@pytest.mark.parametrize("url", ["http://[127.0.0.1]/x.git", "http://[::1", "http://[zz]/x"])
async def test_brackets_in_an_import_url_are_422_naming_the_url(
    client: httpx.AsyncClient, admin_headers: dict[str, str], url: str
) -> None:
    body = {"url": url, "owner": "acme", "slug": "w"}
    answer = await client.post("/api/imports", json=body, headers=admin_headers)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["field"] == "url" and "invalid host or port" in error["message"], error


async def test_an_internal_address_behind_a_name_is_refused(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    # Formerly let through: the guard asked is_private, and 100.64.0.0/10 is not private.
    body = {"url": "http://100.100.100.200/latest/meta-data.git", "owner": "acme", "slug": "w"}
    answer = await client.post("/api/imports", json=body, headers=admin_headers)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == "url"
    assert "not a public address" in answer.json()["error"]["message"]


async def test_a_token_in_the_query_string_is_used_and_never_stored(
    tmp_path: Path, settings: Settings, live_server: Start, http: httpx.AsyncClient
) -> None:
    generate(tmp_path / "served" / "src.git", Spec(commits=3))
    with GitHttpServer(tmp_path / "served", auth=("x-access-token", TOKEN)) as remote:
        live = await live_server(settings)
        url = f"{remote.url('src.git')}?private_token={TOKEN}"
        answer = await http.post(
            f"{live.url}/api/imports", json={"url": url, "owner": "acme", "slug": "app"}
        )
        assert answer.status_code == 202, answer.text
        job = answer.json()
        assert job["url"] == remote.url("src.git")
        final = (await events(http, live.url, job["id"]))[-1]

    assert final["status"] == "success", final
    repo = (await http.get(f"{live.url}/api/repos/acme/app")).json()
    assert repo["source_url"] == remote.url("src.git")
    async with live.services.engine.connect() as conn:
        dump = ""
        for table in ("import_jobs", "import_secrets", "audit_log", "repositories"):
            dump += repr((await conn.execute(text(f"SELECT * FROM {table}"))).all())
    assert TOKEN not in dump
