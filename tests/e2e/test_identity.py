"""A repository is its id: renames, reused names, kept credentials, one truth on its page.

Each test drives the running app (its sync, update and import loops) against a fake code
host or the loopback git server, and checks what a user sees through the API and pages.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from repodepot.services import Services
from repodepot.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.integration.test_updater import advance
from tests.support.eventually import eventually
from tests.support.fakehosts import FakeHost
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate, git

PRIVATE_TOKEN = "glpat-KeptForLaterFetches0123"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "update_poll_interval": 0.1,
            "sync_poll_interval": 0.1,
            "codehost_requests_per_second": 1000.0,
            # No scheduled fetch during a test: what moves a mirror is what the test does.
            "update_min_interval": 3600.0,
            "update_on_visit_after": 3600.0,
        }
    )


@pytest.fixture
def github(git_root: Path, git_server: GitHttpServer) -> Iterator[FakeHost]:
    # The mirror's HEAD says `trunk`; the host's API says `main`: the page must show trunk.
    generate(git_root / "acme" / "app.git", Spec(commits=5, default_branch="trunk"))
    with FakeHost("github", clone_base=git_server.url("")) as host:
        host.add("acme", "app")
        yield host


async def _connect(client: httpx.AsyncClient, headers: dict[str, str], host: FakeHost) -> int:
    config = {"url": host.url, "token": host.token, "repositoryQuery": ["affiliated"]}
    created = await client.post(
        "/api/codehosts", json={"kind": "github", "name": "gh", "config": config}, headers=headers
    )
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


async def _cloned(client: httpx.AsyncClient, headers: dict[str, str], name: str) -> dict[str, Any]:
    async def check() -> dict[str, Any]:
        answer = await client.get(f"/api/repos/{name}", headers=headers)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        assert (body["mirror"] or {}).get("clone_status") == "cloned", body
        return body

    return await eventually(check, timeout=30)


async def _sync(client: httpx.AsyncClient, headers: dict[str, str], host_id: int) -> None:
    before = (await client.get(f"/api/codehosts/{host_id}", headers=headers)).json()
    answer = await client.post(f"/api/codehosts/{host_id}/sync", headers=headers)
    assert answer.status_code == 202, answer.text

    async def synced() -> None:
        now = (await client.get(f"/api/codehosts/{host_id}", headers=headers)).json()
        assert now["last_sync_at"] != before["last_sync_at"] and not now["syncing"], now

    await eventually(synced, timeout=30)


async def test_a_synced_repository_shows_what_its_mirror_holds(
    client: httpx.AsyncClient, admin_headers: dict[str, str], github: FakeHost
) -> None:
    await _connect(client, admin_headers, github)

    body = await _cloned(client, admin_headers, "127.0.0.1/acme/app")

    assert body["default_branch"] == "trunk"  # the mirror's HEAD, not the API's "main"
    assert body["is_empty"] is False
    assert body["size_bytes"] > 0 and body["mirror"]["size_bytes"] == body["size_bytes"]
    page = await client.get("/repos/127.0.0.1/acme/app", headers=admin_headers)
    facts = page.text.split('id="facts"')[1].split("</dl>")[0]
    assert "trunk" in facts and "has commits" in facts and "0 Bytes" not in facts
    assert page.text.count("Size on disk") == 1  # one size, the repository's


async def test_a_rename_upstream_keeps_the_mirror_and_answers_at_once_under_the_new_name(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    app_services: Services,
    git_root: Path,
    github: FakeHost,
) -> None:
    host_id = await _connect(client, admin_headers, github)
    before = await _cloned(client, admin_headers, "127.0.0.1/acme/app")
    mirror = app_services.storage.path(before["id"])
    head = git("--git-dir", str(git_root / "acme" / "app.git"), "rev-parse", "trunk").strip()
    fetched_at = before["mirror"]["last_fetched_at"]

    github.rename(next(iter(github.repos)), "renamed")
    await _sync(client, admin_headers, host_id)

    commit = await client.get(
        f"/api/repos/127.0.0.1/acme/renamed/commits/{head}", headers=admin_headers
    )
    assert commit.status_code == 200, commit.text
    assert commit.json()["sha"] == head and commit.json()["fetched"] is False
    after = (await client.get("/api/repos/127.0.0.1/acme/renamed", headers=admin_headers)).json()
    assert after["id"] == before["id"] and after["mirror"]["last_fetched_at"] == fetched_at
    assert app_services.storage.path(after["id"]) == mirror and mirror.is_dir()
    assert list(app_services.storage.mirror_ids()) == [before["id"]]  # no second clone
    old = await client.get("/api/repos/127.0.0.1/acme/app", headers=admin_headers)
    assert old.status_code == 404


async def test_a_deleted_repository_s_commits_stay_gone_when_another_takes_its_name(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    app_services: Services,
    git_root: Path,
    github: FakeHost,
) -> None:
    upstream = git_root / "acme" / "app.git"
    host_id = await _connect(client, admin_headers, github)
    first = await _cloned(client, admin_headers, "127.0.0.1/acme/app")
    secret = git("--git-dir", str(upstream), "rev-parse", "trunk").strip()

    github.delete(next(iter(github.repos)))
    await _sync(client, admin_headers, host_id)
    shutil.rmtree(upstream)  # a different project now answers at the same place
    generate(upstream, Spec(commits=3, seed=7, default_branch="trunk"))
    other = git("--git-dir", str(upstream), "rev-parse", "trunk").strip()
    github.add("acme", "app")
    await _sync(client, admin_headers, host_id)

    async def second_cloned() -> dict[str, Any]:
        body = await _cloned(client, admin_headers, "127.0.0.1/acme/app")
        assert body["id"] != first["id"], body
        return body

    second = await eventually(second_cloned, timeout=30)
    name = "127.0.0.1/acme/app"
    found = await client.get(f"/api/repos/{name}/commits/{other}", headers=admin_headers)
    assert found.status_code == 200, found.text
    leaked = await client.get(f"/api/repos/{name}/commits/{secret}", headers=admin_headers)
    assert leaked.status_code == 404, leaked.text
    shown = await client.post(
        f"/api/repos/{name}/exec", json={"args": ["cat-file", "-t", secret]}, headers=admin_headers
    )
    assert shown.status_code == 422 and "commit" not in shown.text
    assert app_services.storage.path(second["id"]) != app_services.storage.path(first["id"])


@pytest.fixture
def private_upstream(git_root: Path) -> Iterator[tuple[Path, GitHttpServer]]:
    source = generate(git_root / "private.git", Spec(commits=4))
    with GitHttpServer(git_root, auth=("x-access-token", PRIVATE_TOKEN)) as server:
        yield source, server


async def _import(
    client: httpx.AsyncClient, headers: dict[str, str], **body: Any
) -> dict[str, Any]:
    answer = await client.post("/api/imports", json={"owner": "acme", **body}, headers=headers)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["id"]

    async def done() -> dict[str, Any]:
        job: dict[str, Any] = (await client.get(f"/api/imports/{job_id}", headers=headers)).json()
        assert job["status"] == "success", job
        return job

    return await eventually(done, timeout=30)


async def test_a_private_import_keeps_fetching_with_its_token_and_says_when_it_is_rejected(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    app_services: Services,
    private_upstream: tuple[Path, GitHttpServer],
) -> None:
    source, server = private_upstream
    await _import(
        client, admin_headers, url=server.url("private.git"), slug="private", token=PRIVATE_TOKEN
    )
    pushed = advance(source, "after the import ended")

    before = (await client.get("/api/repos/acme/private", headers=admin_headers)).json()
    commit = await client.get(f"/api/repos/acme/private/commits/{pushed}", headers=admin_headers)

    assert commit.status_code == 200, commit.text
    assert commit.json()["fetched"] is True
    # That fetch is recorded like the updater's: the page's "last changed" moved.
    after = (await client.get("/api/repos/acme/private", headers=admin_headers)).json()
    assert after["mirror"]["last_changed_at"] > before["mirror"]["last_changed_at"]

    wrong = await client.put(
        "/api/repos/acme/private/credential",
        json={"token": "glpat-WrongWrongWrong0000"},
        headers=admin_headers,
    )
    assert wrong.status_code == 200 and PRIVATE_TOKEN not in wrong.text

    async def rejected() -> dict[str, Any]:
        body: dict[str, Any] = (
            await client.get("/api/repos/acme/private", headers=admin_headers)
        ).json()
        assert body["mirror"]["failure_kind"] == "auth", body
        return body

    failed = await eventually(rejected, timeout=30)
    assert failed["mirror"]["last_error"].startswith("credential rejected")
    assert "PUT /api/repos/acme/private/credential" in failed["mirror"]["last_error"]
    assert "glpat-Wrong" not in str(failed)

    fixed = await client.put(
        "/api/repos/acme/private/credential", json={"token": PRIVATE_TOKEN}, headers=admin_headers
    )
    assert fixed.status_code == 200

    async def recovered() -> None:
        body = (await client.get("/api/repos/acme/private", headers=admin_headers)).json()
        assert body["mirror"]["failure_kind"] is None and body["mirror"]["failures"] == 0, body

    await eventually(recovered, timeout=30)
    same = await client.put(
        "/api/repos/acme/private/credential", json={"token": PRIVATE_TOKEN}, headers=admin_headers
    )
    assert same.status_code == 200
    async with app_services.engine.connect() as connection:
        sets = await connection.scalar(
            text("SELECT count(*) FROM audit_log WHERE action = 'repository.credential_set'")
        )
    assert sets == 2  # the same credential again changed nothing, queued nothing
    gone = await client.delete("/api/repos/acme/private/credential", headers=admin_headers)
    again = await client.delete("/api/repos/acme/private/credential", headers=admin_headers)
    assert (gone.status_code, again.status_code) == (204, 404)


async def test_only_the_owner_or_an_admin_sets_a_credential(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    app_services: Services,
    git_root: Path,
    git_server: GitHttpServer,
) -> None:
    generate(git_root / "shared.git", Spec(commits=2))
    await _import(
        client, admin_headers, url=git_server.url("shared.git"), slug="shared", visibility="public"
    )
    await app_services.accounts.create_user("mallory")
    _, token = await app_services.accounts.create_token("mallory", "t")
    member = {"Authorization": f"Bearer {token}"}

    answer = await client.put(
        "/api/repos/acme/shared/credential", json={"token": "stolen-0123"}, headers=member
    )

    assert answer.status_code == 403, answer.text
    seen = await client.get("/repos/acme/shared", headers=member)
    assert seen.status_code == 200 and 'id="credential"' not in seen.text  # not theirs to know
    shown = await client.get("/repos/acme/shared", headers=admin_headers)
    assert 'id="credential"' in shown.text
    removed = await client.delete("/api/repos/acme/shared/credential", headers=member)
    assert removed.status_code == 403
    blank = await client.put(
        "/api/repos/acme/shared/credential", json={"token": ""}, headers=admin_headers
    )
    assert blank.status_code == 422 and "token" in blank.text


async def test_an_imported_repository_s_go_module_is_served_at_its_default_root(
    client: httpx.AsyncClient, admin_headers: dict[str, str], git_root: Path
) -> None:
    generate(git_root / "lib.git", Spec(commits=3, tags=1))
    with GitHttpServer(git_root) as server:
        await _import(client, admin_headers, url=server.url("lib.git"), slug="lib")

    repo = (await client.get("/api/repos/acme/lib", headers=admin_headers)).json()
    assert repo["go_import_root"] == "127.0.0.1/lib"
    listed = await client.get("/goproxy/127.0.0.1/lib/@v/list", headers=admin_headers)
    assert listed.status_code == 200, listed.text
    assert listed.text.split() == ["v1.0.0"]
    latest = await client.get("/goproxy/127.0.0.1/lib/@latest", headers=admin_headers)
    assert latest.status_code == 200 and latest.json()["Version"] == "v1.0.0", latest.text


async def test_cancelling_an_import_without_a_token_is_audited(
    tmp_path: Path, settings: Settings, live_server: Any, git_server: GitHttpServer
) -> None:
    # No worker: the job stays pending, and the cancel is the only thing that happens.
    live = await live_server(settings.model_copy(update={"roles": ["web"]}))
    async with httpx.AsyncClient(
        base_url=live.url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    ) as http:
        submitted = await http.post(
            "/api/imports",
            json={"url": git_server.url("none.git"), "owner": "acme", "slug": "quiet"},
        )
        assert submitted.status_code == 202, submitted.text
        job = submitted.json()
        cancelled = await http.post(f"/api/imports/{job['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    async with live.services.engine.connect() as connection:
        rows = (await connection.execute(text("SELECT action, target FROM audit_log"))).all()
    assert [tuple(row) for row in rows] == [("import.cancelled", f"import:{job['id']}")]


async def test_an_import_s_token_is_held_to_what_a_kept_credential_may_be(
    client: httpx.AsyncClient, admin_headers: dict[str, str], git_server: GitHttpServer
) -> None:
    for body, field in (
        ({"token": "line\nbreak"}, "token"),
        ({"token": "x" * 5000}, "token"),
        ({"token": "fine-0123", "username": "a:b"}, "username"),
    ):
        answer = await client.post(
            "/api/imports",
            json={"url": git_server.url("x.git"), "owner": "acme", "slug": "x", **body},
            headers=admin_headers,
        )
        assert answer.status_code == 422, answer.text
        assert field in answer.text and "line" not in answer.text
