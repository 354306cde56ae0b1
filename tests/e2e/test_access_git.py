"""Who may clone and `go get` what, through a real server: git and the go command decide.

The access matrix's world (tests/support/accessworld.py) behind a real uvicorn: each
caller clones each level's repository with git over smart HTTP (the token in the
environment, never in argv); what it may read clones, the rest fails as a repository
that does not exist (anonymous: asked for credentials). The go command, with the
caller's token in `.netrc` (it sends it over https only), downloads the private module
`acme/closed` serves when it may read it; the others get 404.
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
from tests.e2e.test_goproxy import widget_repo
from tests.e2e.test_smarthttp import refs, run_git
from tests.support.accessworld import CLOSED, INNER, OPEN, READS, callers, hosted_repository
from tests.support.githttp import GitHttpServer
from tests.support.gomods import Go, self_signed
from tests.support.history_repo import T0
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


async def test_each_caller_downloads_the_private_module_it_may_read_with_netrc(
    tmp_path: Path, settings: Settings, live_server: Start, git_server: GitHttpServer
) -> None:
    cert, key = self_signed(tmp_path / "tls")
    live = await live_server(settings, tls=(cert, key))
    services = live.services
    module = "example.com/acme/closed"
    work = widget_repo(tmp_path / "repos")
    work.commit("module", T0 + 1, {"go.mod": f"module {module}\n\ngo 1.19\n"})
    work.tag("v0.2.0")
    context = ssl.create_default_context(cafile=str(cert))
    async with httpx.AsyncClient(base_url=live.url, timeout=60, verify=context) as client:
        host_id, _ = await hosted_repository(services, git_server)
        found = await callers(client, ADMIN, services, host_id, closed_source=work.path)
    await services.repositories.set_go_import_root(operator(), CLOSED, module)
    proxy = f"{live.url}/goproxy"

    for who, headers in found.items():
        netrc = None
        if headers:  # the go command sends .netrc credentials over https only
            netrc = f"machine 127.0.0.1 login token password {token_of(headers)}\n"
        go = Go(tmp_path / who.replace(" ", "-"), proxy, netrc=netrc, ca=cert)
        (answer,) = await asyncio.to_thread(go.download, f"{module}@v0.2.0")
        if CLOSED in READS[who]:
            assert "Error" not in answer and answer["Version"] == "v0.2.0", (who, answer)
        else:
            assert "404" in answer["Error"], (who, answer)
