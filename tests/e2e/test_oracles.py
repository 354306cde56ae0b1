"""No existence oracles: what a caller may not read answers exactly as what is not there.

A private Go module answers as a missing one for every GOPROXY request, anonymously and
to a member who may not read it; a member sees every repository and import job that
holds a name in their own namespace, so an import's 409 never names something the same
member gets 404 for.
"""

from __future__ import annotations

import asyncio
from base64 import b64encode
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from repodepot.accounts import operator
from repodepot.db.models import Visibility
from repodepot.services import Services
from repodepot.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.e2e.imports_helpers import events, make_source
from tests.support.githttp import GitHttpServer
from tests.support.gomods import WorkTree
from tests.support.repogen import Spec, git
from tests.support.seed import seed_mirror
from tests.support.servers import LiveApp

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
Start = Callable[..., Awaitable[LiveApp]]

T0 = 1_700_000_000
PUBLIC_ROOT = "example.com/acme"
# Under the public root (which would serve it as its directory `secret`), and alone.
PRIVATE_PATHS = ("example.com/acme/secret", "example.org/hidden")
REQUESTS = ("@v/list", "@v/v1.0.0.info", "@v/v1.0.0.mod", "@v/v1.0.0.zip", "@latest")


def _module(root: Path, name: str, path: str) -> WorkTree:
    work = WorkTree(root / name)
    work.commit("v1", T0, {"go.mod": f"module {path}\n", "x.go": "package x\n"})
    work.tag("v1.0.0")
    return work


async def _publish(
    svc: Services, work: WorkTree, name: str, root: str, *, owner_id: int | None, public: bool
) -> None:
    visibility = Visibility.public if public else Visibility.private
    await seed_mirror(svc, name, source=work.path, owner_id=owner_id, visibility=visibility)
    await svc.repositories.set_go_import_root(operator(), name, root)


async def _answers(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> dict[str, tuple[int, bytes]]:
    answers = {}
    for path in PRIVATE_PATHS:
        for request in REQUESTS:
            answer = await client.get(f"/goproxy/{path}/{request}", headers=headers)
            answers[f"{path}/{request}"] = (answer.status_code, answer.content)
    return answers


async def test_a_private_go_module_answers_exactly_as_a_missing_one(
    tmp_path: Path,
    client: httpx.AsyncClient,
    app_services: Services,
    admin_headers: dict[str, str],
) -> None:
    svc = app_services
    works = tmp_path / "works"
    public = _module(works, "acme", PUBLIC_ROOT)
    await _publish(svc, public, "acme/site", PUBLIC_ROOT, owner_id=None, public=True)
    carol = await svc.accounts.create_user("carol")
    await svc.accounts.create_user("bob")
    _, bob_token = await svc.accounts.create_token("bob", "t")
    callers = {
        "anonymous": {},
        "member": {"Authorization": f"Bearer {bob_token}"},
        # The go command sends the token as a .netrc password.
        "member (basic)": {
            "Authorization": "Basic " + b64encode(f"bob:{bob_token}".encode()).decode()
        },
    }
    missing = {who: await _answers(client, headers) for who, headers in callers.items()}
    assert missing["anonymous"]["example.com/acme/secret/@v/list"] == (200, b"")

    for index, path in enumerate(PRIVATE_PATHS):
        work = _module(works, f"secret{index}", path)
        await _publish(svc, work, f"carol/s{index}", path, owner_id=carol.id, public=False)
    for who, headers in callers.items():
        assert await _answers(client, headers) == missing[who], who

    # Those who may read it get the module: the requests above did reach it.
    _, carol_token = await svc.accounts.create_token("carol", "t")
    for headers in (admin_headers, {"Authorization": f"Bearer {carol_token}"}):
        for path in PRIVATE_PATHS:
            listed = await client.get(f"/goproxy/{path}/@v/list", headers=headers)
            assert (listed.status_code, listed.text) == (200, "v1.0.0\n")


async def test_a_member_sees_whatever_holds_a_name_in_their_namespace(
    tmp_path: Path, settings: Settings, live_server: Start, git_root: Path
) -> None:
    make_source(git_root, spec=Spec(commits=3))
    web_only = await live_server(settings.model_copy(update={"roles": ["web"]}))
    with GitHttpServer(git_root) as remote:
        async with httpx.AsyncClient(base_url=web_only.url, headers=AUTH, timeout=30) as admin:
            await admin.post("/api/users", json={"name": "bob"})
            bob_token = (await admin.post("/api/tokens", json={"user": "bob"})).json()["token"]
            bob = {"Authorization": f"Bearer {bob_token}"}
            body = {"url": remote.url("src.git"), "owner": "bob", "slug": "secret"}
            queued = await admin.post("/api/imports", json={**body, "visibility": "private"})
            assert queued.status_code == 202, queued.text
            job = queued.json()["id"]

            # An admin's import into bob's name: bob's own import of it is 409, so bob sees it.
            again = await admin.post("/api/imports", json=body, headers=bob)
            assert again.status_code == 409 and "already queued" in again.json()["error"]["message"]
            assert (await admin.get(f"/api/imports/{job}", headers=bob)).status_code == 200
            listed = (await admin.get("/api/imports", headers=bob)).json()["items"]
            assert [item["id"] for item in listed] == [job]

            worker = await live_server(settings)  # the same database, now with a worker
            assert (await events(admin, worker.url, job))[-1]["status"] == "success"
            again = await admin.post("/api/imports", json=body, headers=bob)
            assert again.status_code == 409 and "already exists" in again.json()["error"]["message"]
            repo = await admin.get("/api/repos/bob/secret", headers=bob)
            assert repo.status_code == 200 and repo.json()["owner"] == "bob"
            clone = tmp_path / "clone"
            url = f"{worker.url}/git/bob/secret.git".replace("://", f"://bob:{bob_token}@")
            await asyncio.to_thread(git, "clone", "--quiet", url, str(clone))
            assert (clone / ".git").is_dir()
