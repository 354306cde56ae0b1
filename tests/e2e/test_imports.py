"""Importing a repository through the API, against the loopback git server, on both databases."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from repodepot.logs import JsonFormatter
from repodepot.settings import Settings
from repodepot.storage import Storage
from tests.conftest import ADMIN_TOKEN
from tests.e2e.imports_helpers import (
    assert_faithful_copy,
    events,
    leftovers,
    make_source,
    mirrors,
    refs,
)
from tests.integration.test_git_runner import _processes_mentioning
from tests.integration.test_updater import advance
from tests.support.eventually import eventually
from tests.support.githttp import GitHttpServer
from tests.support.gomods import WorkTree
from tests.support.repogen import T0, Spec, git
from tests.support.servers import LiveApp

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
Start = Callable[[Settings], Awaitable[LiveApp]]
SOURCE_TOKEN = "glpat-SourceSecret0123456789xyz"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(headers=AUTH, timeout=30) as client:
        yield client


async def _submit(http: httpx.AsyncClient, base: str, **body: Any) -> dict[str, Any]:
    answer = await http.post(
        f"{base}/api/imports", json={"owner": "acme", "slug": "widgets", **body}
    )
    assert answer.status_code == 202, answer.text
    return answer.json()  # type: ignore[no-any-return]


async def test_import_streams_progress_and_lands_a_faithful_copy(
    tmp_path: Path, settings: Settings, live_server: Start, http: httpx.AsyncClient
) -> None:
    source = make_source(tmp_path / "served")
    size = sum(f.stat().st_size for f in source.rglob("*") if f.is_file())
    with GitHttpServer(tmp_path / "served", throttle=size // 3) as remote:
        live = await live_server(settings)
        job = await _submit(http, live.url, url=remote.url("src.git"), visibility="public")
        assert job["status"] == "pending" and job["target"] == "acme/widgets"
        seen = await events(http, live.url, job["id"])

    final = seen[-1]
    assert final["status"] == "success", final
    assert final["percent"] == 100 and final["phase"] == "done"
    assert final["repository"] == "acme/widgets" and final["attempt"] == 1
    assert final["received_objects"] == final["total_objects"] > 9000
    receiving = [e["percent"] for e in seen if e["phase"] == "receiving"]
    assert len(set(receiving)) >= 3, seen  # the bar moved while the transfer ran
    assert receiving == sorted(receiving)
    assert any(e["throughput"] > 0 for e in seen)
    repo = (await http.get(f"{live.url}/api/repos/acme/widgets")).json()
    assert mirrors(settings.data_dir) == [Storage(settings.data_dir).path(repo["id"])]
    assert_faithful_copy(Storage(settings.data_dir).path(repo["id"]), source)
    assert repo["default_branch"] == "main" and repo["visibility"] == "public"
    assert repo["source_url"] == remote.url("src.git") and repo["size_bytes"] > 0
    again = await http.get(f"{live.url}/api/imports/{job['id']}")
    assert again.json()["status"] == "success" and again.json()["duration_ms"] > 0
    async with live.services.engine.connect() as conn:
        audit = (await conn.execute(text("SELECT action, target FROM audit_log"))).all()
    assert [tuple(row) for row in audit] == [("repository.imported", "acme/widgets")]


async def test_the_token_never_leaks(
    tmp_path: Path,
    settings: Settings,
    live_server: Start,
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    database_url: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    source = make_source(tmp_path / "served")
    size = sum(f.stat().st_size for f in source.rglob("*") if f.is_file())
    with GitHttpServer(
        tmp_path / "served", auth=("alice", SOURCE_TOKEN), throttle=size // 2
    ) as remote:
        live = await live_server(settings)
        # The token arrives as the URL's userinfo: it must be stripped and used.
        url = remote.url("src.git", userinfo=f"alice:{SOURCE_TOKEN}")
        job = await _submit(http, live.url, url=url)
        assert SOURCE_TOKEN not in json.dumps(job)
        ps_seen = False
        async with asyncio.timeout(60):
            while True:
                state = (await http.get(f"{live.url}/api/imports/{job['id']}")).json()
                assert SOURCE_TOKEN not in json.dumps(state)
                if _processes_mentioning("git-remote-http"):
                    ps_seen = True
                    assert _processes_mentioning(SOURCE_TOKEN) == []
                if state["status"] in ("success", "failed"):
                    break
                await asyncio.sleep(0.1)
        assert state["status"] == "success", state
        assert ps_seen
        async with live.services.engine.connect() as conn:
            secrets_left = await conn.scalar(text("SELECT count(*) FROM import_secrets"))
            kept = (
                await conn.execute(
                    text("SELECT username, sealed_token FROM repository_credentials")
                )
            ).all()
            dump = ""
            tables = ("import_jobs", "import_secrets", "audit_log", "repositories")
            for table in (*tables, "repository_credentials"):
                dump += repr((await conn.execute(text(f"SELECT * FROM {table}"))).all())
    assert secrets_left == 0  # the job's copy is gone when it ends...
    # ...and the token lives on, sealed, as the repository's fetch credential.
    assert [row.username for row in kept] == ["alice"]
    assert live.services.imports._box.open(kept[0].sealed_token) == SOURCE_TOKEN
    assert "alice:" not in dump and SOURCE_TOKEN not in dump
    if database_url.startswith("sqlite"):
        raw = b"".join(p.read_bytes() for p in tmp_path.glob("test.db*"))
        assert SOURCE_TOKEN.encode() not in raw
    logs = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert SOURCE_TOKEN not in logs
    assert any(r.__dict__.get("action") == "git" for r in caplog.records)  # git was logged


async def test_the_token_is_kept_encrypted_while_the_job_waits(
    tmp_path: Path, settings: Settings, live_server: Start, http: httpx.AsyncClient
) -> None:
    live = await live_server(settings.model_copy(update={"roles": ["web"]}))  # no worker
    job = await _submit(http, live.url, url="http://127.0.0.1:9/x.git", token=SOURCE_TOKEN)
    async with live.services.engine.connect() as conn:
        sealed = await conn.scalar(text("SELECT sealed_token FROM import_secrets"))
    assert sealed and SOURCE_TOKEN not in sealed
    assert live.services.imports._box.open(sealed) == SOURCE_TOKEN
    cancelled = await http.post(f"{live.url}/api/imports/{job['id']}/cancel")
    assert cancelled.json()["status"] == "cancelled"
    async with live.services.engine.connect() as conn:
        assert await conn.scalar(text("SELECT count(*) FROM import_secrets")) == 0


BAD_INPUT = [
    ({"url": "ftp://127.0.0.1/x.git"}, "url", "scheme 'ftp' is not allowed"),
    ({"url": "ssh://git@127.0.0.1/x.git"}, "url", "scheme 'ssh' is not allowed"),
    ({"url": "file:///etc"}, "url", "file:// URLs are not allowed"),
    ({"url": "/srv/repo.git"}, "url", "local paths"),
    ({"url": "ext::sh -c id"}, "url", "control characters"),
    ({"url": "fd::17"}, "url", "transport helpers"),
    ({"url": "-u/tmp/x"}, "url", "must not start with '-'"),
    ({"url": "http://10.0.0.8/x.git"}, "url", "private or link-local"),
    ({"url": "http://169.254.169.254/latest"}, "url", "private or link-local"),
    ({"slug": "-rf"}, "slug", "not starting with '-'"),
    ({"slug": "a..b"}, "slug", "without '..'"),
    ({"owner": "a/b"}, "owner", "letters, digits"),
    ({"owner": "x" * 101}, "owner", "1-100"),
    ({"visibility": "secret"}, "visibility", "'private', 'internal' or 'public'"),
]


@pytest.mark.parametrize(
    ("change", "field", "message"), BAD_INPUT, ids=[f"{c[1]}:{c[2]}" for c in BAD_INPUT]
)
async def test_bad_input_is_422_naming_the_field(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    change: dict[str, str],
    field: str,
    message: str,
) -> None:
    body = {"url": "http://127.0.0.1:9/x.git", "owner": "acme", "slug": "w", **change}
    answer = await client.post("/api/imports", json=body, headers=admin_headers)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["field"] == field and message in error["message"], error


async def test_loopback_is_refused_unless_allowlisted(
    tmp_path: Path, settings: Settings, live_server: Start, http: httpx.AsyncClient
) -> None:
    live = await live_server(settings.model_copy(update={"outbound_allowlist": []}))
    answer = await http.post(
        f"{live.url}/api/imports",
        json={"url": "http://127.0.0.1:9/x.git", "owner": "acme", "slug": "w"},
    )
    assert answer.status_code == 422
    assert "REPODEPOT_OUTBOUND_ALLOWLIST" in answer.json()["error"]["message"]


async def test_conflicts_are_409(
    tmp_path: Path, settings: Settings, live_server: Start, http: httpx.AsyncClient
) -> None:
    live = await live_server(settings.model_copy(update={"roles": ["web"]}))
    await live.services.repositories.create(name="acme/taken", owner_id=None)
    taken = await http.post(
        f"{live.url}/api/imports",
        json={"url": "http://127.0.0.1:9/x.git", "owner": "acme", "slug": "taken"},
    )
    assert taken.status_code == 409 and taken.json()["error"]["field"] == "slug"
    await _submit(http, live.url, url="http://127.0.0.1:9/x.git", slug="busy")
    busy = await http.post(
        f"{live.url}/api/imports",
        json={"url": "http://127.0.0.1:9/y.git", "owner": "acme", "slug": "busy"},
    )
    assert busy.status_code == 409
    assert "already queued or running" in busy.json()["error"]["message"]


async def test_members_import_into_their_own_name(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    await client.post("/api/users", json={"name": "bob"}, headers=admin_headers)
    token = (await client.post("/api/tokens", json={"user": "bob"}, headers=admin_headers)).json()[
        "token"
    ]
    bob = {"Authorization": f"Bearer {token}"}
    body = {"url": "http://127.0.0.1:9/x.git", "slug": "w"}
    assert (
        await client.post("/api/imports", json={**body, "owner": "acme"}, headers=bob)
    ).status_code == 403
    mine = await client.post("/api/imports", json={**body, "owner": "bob"}, headers=bob)
    assert mine.status_code == 202
    assert (
        await client.get(f"/api/imports/{mine.json()['id']}", headers=admin_headers)
    ).status_code == 200
    listed = (await client.get("/api/imports", headers=bob)).json()
    assert [item["target"] for item in listed["items"]] == ["bob/w"]


async def test_a_full_queue_answers_429_and_pending_jobs_know_their_place(
    settings: Settings, live_server: Start, http: httpx.AsyncClient
) -> None:
    live = await live_server(settings.model_copy(update={"roles": ["web"], "import_queue_max": 2}))
    first = await _submit(http, live.url, url="http://127.0.0.1:9/a.git", slug="a")
    second = await _submit(http, live.url, url="http://127.0.0.1:9/b.git", slug="b")
    assert (first["queue_position"], second["queue_position"]) == (1, 2)
    full = await http.post(
        f"{live.url}/api/imports",
        json={"url": "http://127.0.0.1:9/c.git", "owner": "acme", "slug": "c"},
    )
    assert full.status_code == 429
    assert full.headers["retry-after"] == "30"
    assert full.json()["error"]["code"] == "queue_full"
    await http.post(f"{live.url}/api/imports/{first['id']}/cancel")
    moved = (await http.get(f"{live.url}/api/imports/{second['id']}")).json()
    assert moved["queue_position"] == 1
    pending = (await http.get(f"{live.url}/api/imports?status=pending")).json()
    assert [item["slug"] for item in pending["items"]] == ["b"]


async def test_one_member_cannot_fill_the_queue(
    settings: Settings, live_server: Start, http: httpx.AsyncClient
) -> None:
    live = await live_server(settings.model_copy(update={"roles": ["web"]}))
    members = {}
    for name in ("bob", "carol"):
        await http.post(f"{live.url}/api/users", json={"name": name})
        token = (await http.post(f"{live.url}/api/tokens", json={"user": name})).json()["token"]
        members[name] = {"Authorization": f"Bearer {token}"}

    async def submit(who: str, slug: str) -> httpx.Response:
        body = {"url": f"http://127.0.0.1:9/{slug}.git", "owner": who, "slug": slug}
        return await http.post(f"{live.url}/api/imports", json=body, headers=members[who])

    first = [await submit("bob", f"r{n}") for n in range(settings.import_queue_per_user)]
    assert {answer.status_code for answer in first} == {202}
    over = await submit("bob", "one-more")
    assert over.status_code == 429 and over.headers["retry-after"] == "30"
    error = over.json()["error"]
    assert error["code"] == "import_quota" and "import_queue_per_user" in error["message"]
    assert f"{settings.import_queue_per_user} imports" in error["message"]
    assert (await submit("carol", "mine")).status_code == 202  # the queue is not full
    await http.post(f"{live.url}/api/imports/{first[0].json()['id']}/cancel")
    assert (await submit("bob", "one-more")).status_code == 202  # a slot came free
    # Admins are trusted with bulk imports: only the global bound applies to them.
    for n in range(settings.import_queue_per_user + 1):
        await _submit(http, live.url, url="http://127.0.0.1:9/x.git", slug=f"bulk{n}")


async def test_cancel_mid_clone_kills_git_and_leaves_nothing(
    tmp_path: Path, settings: Settings, live_server: Start, http: httpx.AsyncClient
) -> None:
    make_source(tmp_path / "served")
    with GitHttpServer(tmp_path / "served", throttle=300_000) as remote:
        live = await live_server(settings)
        job = await _submit(http, live.url, url=remote.url("src.git"))
        await events(http, live.url, job["id"], until={"running"})
        while not _processes_mentioning("git-remote-http"):
            await asyncio.sleep(0.05)
        cancelled = await http.post(f"{live.url}/api/imports/{job['id']}/cancel")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        for _ in range(50):
            if not _processes_mentioning(f"import-{job['id']}"):
                break
            await asyncio.sleep(0.1)
        assert _processes_mentioning(f"import-{job['id']}") == []
        for _ in range(50):
            if not leftovers(settings.data_dir):
                break
            await asyncio.sleep(0.1)
        assert leftovers(settings.data_dir) == []
        again = await http.post(f"{live.url}/api/imports/{job['id']}/cancel")
        assert again.status_code == 200 and again.json()["status"] == "cancelled"
        final = await events(http, live.url, job["id"])
        assert final[-1]["status"] == "cancelled"
    # The job had no token; its cancel is audited all the same, once.
    async with live.services.engine.connect() as conn:
        audit = (await conn.execute(text("SELECT action, target FROM audit_log"))).all()
    assert [tuple(row) for row in audit] == [("import.cancelled", f"import:{job['id']}")]


async def test_cancelling_a_finished_import_is_409(
    tmp_path: Path, settings: Settings, live_server: Start, http: httpx.AsyncClient
) -> None:
    make_source(tmp_path / "served", spec=Spec(commits=5))
    with GitHttpServer(tmp_path / "served") as remote:
        live = await live_server(settings)
        job = await _submit(http, live.url, url=remote.url("src.git"))
        assert (await events(http, live.url, job["id"]))[-1]["status"] == "success"
    answer = await http.post(f"{live.url}/api/imports/{job['id']}/cancel")
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "job_finished"


FAILURES: list[tuple[str, dict[str, Any], str]] = [
    ("wrong credentials", {"auth": ("alice", "right-token-123")}, "refused the credentials"),
    ("not found", {}, "not found"),
    (
        "connection dropped",
        {"fault": "drop", "fault_after": 300_000},
        "connection to the source was lost",
    ),
    ("stalled", {"fault": "stall", "fault_after": 300_000}, "No progress for 2 seconds"),
]


@pytest.mark.parametrize(("case", "server", "message"), FAILURES, ids=[f[0] for f in FAILURES])
async def test_failures_end_the_job_with_words_and_leave_nothing(
    tmp_path: Path,
    settings: Settings,
    live_server: Start,
    http: httpx.AsyncClient,
    case: str,
    server: dict[str, Any],
    message: str,
) -> None:
    make_source(tmp_path / "served")
    with GitHttpServer(tmp_path / "served", throttle=2_000_000, **server) as remote:
        live = await live_server(settings.model_copy(update={"import_stall_timeout": 2.0}))
        path = "missing.git" if case == "not found" else "src.git"
        body: dict[str, Any] = {"url": remote.url(path)}
        if case == "wrong credentials":
            body["token"] = "wrong-token-456"
        job = await _submit(http, live.url, **body)
        final = (await events(http, live.url, job["id"]))[-1]
    assert final["status"] == "failed"
    assert message in final["error"], final["error"]
    assert "wrong-token-456" not in final["error"]
    assert leftovers(settings.data_dir) == []
    assert (await http.get(f"{live.url}/api/repos/acme/widgets")).status_code == 404


async def test_a_full_disk_fails_the_import_cleanly(
    tmp_path: Path, settings: Settings, live_server: Start, http: httpx.AsyncClient
) -> None:
    make_source(tmp_path / "served")
    data = settings.data_dir
    data.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(data)], check=True)
    try:
        with GitHttpServer(tmp_path / "served") as remote:
            live = await live_server(settings)
            job = await _submit(http, live.url, url=remote.url("src.git"))
            final = (await events(http, live.url, job["id"]))[-1]
        assert final["status"] == "failed"
        assert "ran out of disk space" in final["error"], final["error"]
        assert leftovers(data) == []
    finally:
        for _ in range(20):
            if subprocess.run(["umount", str(data)], capture_output=True).returncode == 0:
                break
            await asyncio.sleep(0.2)
        else:
            subprocess.run(["umount", "-l", str(data)], check=False)


async def test_jobs_interrupted_three_times_fail(settings: Settings, live_server: Start) -> None:
    live = await live_server(settings.model_copy(update={"roles": ["web"]}))
    svc = live.services
    gone = subprocess.Popen(["true"])
    gone.wait()
    async with svc.engine.begin() as conn:
        for attempt, slug in ((1, "once"), (3, "thrice")):
            await conn.execute(
                text(
                    "INSERT INTO import_jobs (url, owner, slug, target, visibility, status,"
                    " attempt, worker_id) VALUES ('http://127.0.0.1:9/x.git', 'acme', :slug,"
                    " :target, 'private', 'running', :attempt, :worker)"
                ),
                {
                    "slug": slug,
                    "target": f"acme/{slug}",
                    "attempt": attempt,
                    "worker": f"{os.uname().nodename}:{gone.pid}:dead",
                },
            )
    from repodepot.imports.worker import ImportWorker

    worker = ImportWorker.from_services(svc)
    await worker.recover()
    async with svc.engine.connect() as conn:
        result = await conn.execute(text("SELECT slug, status FROM import_jobs"))
        rows: dict[str, str] = {row[0]: row[1] for row in result}
        error = await conn.scalar(text("SELECT error FROM import_jobs WHERE slug = 'thrice'"))
    assert rows == {"once": "pending", "thrice": "failed"}
    assert "interrupted 3 times" in error


async def test_a_private_import_is_a_go_module_at_its_root_and_keeps_fetching_with_its_token(
    tmp_path: Path, settings: Settings, live_server: Start, http: httpx.AsyncClient
) -> None:
    work = WorkTree(tmp_path / "work")
    work.commit("v1", T0, {"go.mod": "module 127.0.0.1/src\n", "x.go": "package x\n"})
    work.tag("v1.0.0")
    source = tmp_path / "served" / "src.git"
    git("clone", "--bare", "--quiet", str(work.path), str(source))
    with GitHttpServer(tmp_path / "served", auth=("alice", SOURCE_TOKEN)) as remote:
        live = await live_server(settings)
        job = await _submit(
            http, live.url, url=remote.url("src.git"), username="alice", token=SOURCE_TOKEN
        )
        final = (await events(http, live.url, job["id"]))[-1]
        assert final["status"] == "success", final
        repo = (await http.get(f"{live.url}/api/repos/acme/widgets")).json()

        # The import's source URL gives its Go import root: no PATCH needed.
        assert (repo["go_import_root"], repo["go_import_root_custom"]) == ("127.0.0.1/src", False)
        listed = await http.get(f"{live.url}/goproxy/127.0.0.1/src/@v/list")
        assert (listed.status_code, listed.text) == (200, "v1.0.0\n")

        # The token outlived the import: the next fetch of the private source succeeds.
        commit = advance(source, "after the import")
        queued = await http.post(f"{live.url}/api/repos/acme/widgets/update")
        assert queued.status_code == 202, queued.text
        mirror = Storage(settings.data_dir).path(repo["id"])
        await eventually(lambda: commit in refs(mirror), timeout=30)
    detail = (await http.get(f"{live.url}/api/repos/acme/widgets")).json()
    assert detail["mirror"]["last_error"] is None, detail["mirror"]
