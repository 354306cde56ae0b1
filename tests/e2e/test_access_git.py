"""Who may clone and `go get` what, through a real server: git and the go command decide.

The access matrix's world (tests/support/accessworld.py) behind a real uvicorn: each
caller clones each level's repository with git over smart HTTP (the token in the
environment, never in argv); what it may read clones, the rest fails as a repository
that does not exist (anonymous: asked for credentials). The go command, with the
caller's token in `.netrc` (it sends it over https only), downloads a private module
a group was granted; a member without the grant, and nobody without a token, get 404.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from repodepot.accounts import operator
from repodepot.db.models import Visibility
from repodepot.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.e2e.test_goproxy import publish, widget_repo
from tests.e2e.test_smarthttp import refs, run_git
from tests.support.accessworld import CLOSED, INNER, OPEN, READS, callers, hosted_repository
from tests.support.githttp import GitHttpServer
from tests.support.gomods import Go, self_signed
from tests.support.members import member
from tests.support.seed import seed_mirror
from tests.support.servers import LiveApp

Start = Callable[..., Awaitable[LiveApp]]
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def token_of(headers: dict[str, str]) -> str | None:
    return headers["Authorization"].removeprefix("Bearer ") if headers else None


async def test_each_caller_clones_what_it_may_read_and_nothing_else(
    tmp_path: Path, settings: Settings, live_server: Start, git_server: GitHttpServer
) -> None:
    live = await live_server(settings)
    services = live.services
    await seed_mirror(services, OPEN, visibility=Visibility.public)
    await seed_mirror(services, INNER, visibility=Visibility.internal)
    async with httpx.AsyncClient(base_url=live.url, timeout=60) as client:
        host_id, _ = await hosted_repository(services, git_server)
        found = await callers(client, ADMIN, services, host_id)

    for who, headers in found.items():
        for name in (OPEN, INNER, CLOSED):
            target = tmp_path / who.replace(" ", "-") / f"{name.replace('/', '-')}.git"
            cloned = await run_git(
                "clone", "--bare", f"{live.url}/git/{name}", str(target), token=token_of(headers)
            )
            if name in READS[who]:
                assert cloned.returncode == 0, (who, name, cloned.stderr)
                mirror = services.storage.path(
                    (await services.repositories.get(operator(), name)).id
                )
                assert refs(target) == refs(mirror)
                continue
            assert cloned.returncode != 0, (who, name)
            if who == "anonymous":
                assert "could not read Username" in cloned.stderr or "401" in cloned.stderr
            else:
                assert "not found" in cloned.stderr, (who, name, cloned.stderr)


async def test_a_granted_group_downloads_a_private_module_with_netrc(
    tmp_path: Path, settings: Settings, live_server: Start
) -> None:
    cert, key = self_signed(tmp_path / "tls")
    live = await live_server(settings, tls=(cert, key))
    module = "example.com/Acme/Widget"
    await publish(
        live.services, widget_repo(tmp_path / "repos"), "acme/widget", module, Visibility.private
    )
    async with httpx.AsyncClient(
        base_url=live.url, timeout=60, verify=ssl.create_default_context(cafile=str(cert))
    ) as client:
        granted = await member(client, ADMIN, "granted")
        other = await member(client, ADMIN, "other")
        assert (
            await client.post("/api/groups", json={"name": "go"}, headers=ADMIN)
        ).status_code == 201
        joined = await client.post(
            "/api/groups/go/members", json={"user": "granted"}, headers=ADMIN
        )
        assert joined.status_code == 200, joined.text
        given = await client.post(
            "/api/repos/acme/widget/grants", json={"group": "go"}, headers=ADMIN
        )
        assert given.status_code == 201, given.text

    proxy = f"{live.url}/goproxy"

    def go_as(name: str, headers: dict[str, str] | None) -> Go:
        netrc = None
        if headers:
            netrc = f"machine 127.0.0.1 login token password {token_of(headers)}\n"
        return Go(tmp_path / name, proxy, netrc=netrc, ca=cert)

    (answer,) = await asyncio.to_thread(go_as("granted", granted).download, f"{module}@v0.1.0")
    assert "Error" not in answer and answer["Version"] == "v0.1.0", answer
    for name, headers in (("other", other), ("anonymous", None)):
        (refused,) = await asyncio.to_thread(go_as(name, headers).download, f"{module}@v0.1.0")
        assert "404" in refused["Error"], (name, refused)
