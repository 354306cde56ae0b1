"""Push webhooks: a push upstream and its webhook are mirrored within seconds; bad proof is 401."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from repodepot.accounts import operator
from repodepot.exceptions import NotFound
from repodepot.services import Services
from repodepot.settings import Settings
from tests.integration.test_updater import advance, refs
from tests.support.eventually import eventually
from tests.support.fakehosts import FakeHost
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate

SECRET = "webhook-secret-0123"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "update_poll_interval": 0.1,
            "sync_poll_interval": 0.1,
            "codehost_requests_per_second": 1000.0,
        }
    )


@pytest.fixture
def github(git_root: Path, git_server: GitHttpServer) -> Iterator[FakeHost]:
    generate(git_root / "acme" / "app.git", Spec(commits=5))
    with FakeHost("github", clone_base=git_server.url("")) as host:
        host.add("acme", "app")
        yield host


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {
        "X-Hub-Signature-256": f"sha256={digest}",
        "X-GitHub-Event": "push",
        "Content-Type": "application/json",
    }


async def wait(check: Any, seconds: float = 20) -> None:
    await eventually(check, timeout=seconds, interval=0.05)


async def test_a_push_and_its_webhook_are_mirrored_within_seconds(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    app_services: Services,
    git_root: Path,
    github: FakeHost,
) -> None:
    config = {
        "url": github.url,
        "token": github.token,
        "webhookSecret": SECRET,
        "repositoryQuery": ["affiliated"],
    }
    created = await client.post(
        "/api/codehosts",
        json={"kind": "github", "name": "gh", "config": config},
        headers=admin_headers,
    )
    assert created.json()["webhook_secret_set"] is True
    name = "127.0.0.1/acme/app"

    async def cloned() -> bool:
        try:
            record = await app_services.repositories.get(operator(), name)
        except NotFound:
            return False
        mirror = app_services.storage.path(record.id)
        return mirror.is_dir() and refs(mirror) == refs(git_root / "acme" / "app.git")

    await wait(cloned)
    mirror = app_services.storage.path((await app_services.repositories.get(operator(), name)).id)

    commit = advance(git_root / "acme" / "app.git")
    payload = json.dumps(
        {
            "ref": "refs/heads/main",
            "after": commit,
            "repository": {
                "id": 1,
                "node_id": f"R_kgDO{next(iter(github.repos)):08d}",
                "full_name": "acme/app",
            },
        }
    ).encode()
    started = time.monotonic()
    answer = await client.post("/webhooks/github", content=payload, headers=signed(payload))

    assert (answer.status_code, answer.json()) == (202, {"queued": True})

    async def mirrored() -> bool:
        return commit in refs(mirror)

    await wait(mirrored, seconds=10)
    assert time.monotonic() - started < 10


async def test_bad_signatures_unknown_repositories_and_other_events(
    client: httpx.AsyncClient, admin_headers: dict[str, str], github: FakeHost
) -> None:
    config = {"url": github.url, "webhookSecret": SECRET, "repositoryQuery": ["none"]}
    await client.post(
        "/api/codehosts",
        json={"kind": "github", "name": "gh", "config": config},
        headers=admin_headers,
    )
    body = json.dumps({"repository": {"id": 5, "node_id": "R_unknown"}}).encode()

    forged = await client.post("/webhooks/github", content=body, headers=signed(body, "wrong"))
    assert forged.status_code == 401
    unsigned = await client.post("/webhooks/github", content=body)
    assert unsigned.status_code == 401
    unknown = await client.post("/webhooks/github", content=body, headers=signed(body))
    assert (unknown.status_code, unknown.json()["queued"]) == (202, False)
    ping = await client.post(
        "/webhooks/github", content=body, headers={**signed(body), "X-GitHub-Event": "ping"}
    )
    assert (ping.status_code, ping.json()["queued"]) == (202, False)


@pytest.mark.parametrize("kind", ["gitlab", "gitea"])
async def test_gitlab_token_and_gitea_signature(
    client: httpx.AsyncClient, admin_headers: dict[str, str], kind: str
) -> None:
    config = {"url": "http://127.0.0.1:9", "webhookSecret": SECRET}
    created = await client.post(
        "/api/codehosts", json={"kind": kind, "name": kind, "config": config}, headers=admin_headers
    )
    assert created.status_code == 201
    body = json.dumps({"project": {"id": 7}, "repository": {"id": 7}}).encode()
    if kind == "gitlab":
        good = {"X-Gitlab-Token": SECRET, "X-Gitlab-Event": "Push Hook"}
        bad = {"X-Gitlab-Token": "nope", "X-Gitlab-Event": "Push Hook"}
    else:
        digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        good = {"X-Gitea-Signature": digest, "X-Gitea-Event": "push"}
        bad = {"X-Gitea-Signature": "0" * 64, "X-Gitea-Event": "push"}

    assert (await client.post(f"/webhooks/{kind}", content=body, headers=bad)).status_code == 401
    accepted = await client.post(f"/webhooks/{kind}", content=body, headers=good)
    assert (accepted.status_code, accepted.json()["queued"]) == (202, False)
