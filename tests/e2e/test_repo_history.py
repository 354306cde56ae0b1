"""`/api/repos/{name}/commits` and `/tags`: what plain git says of the mirror, to its readers."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from repodepot.db.models import Visibility
from repodepot.services import Services
from repodepot.settings import Settings
from tests.support.history_repo import build
from tests.support.repogen import Spec, git
from tests.support.seed import seed_mirror


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    # What these tests pin does not depend on the database (test_branch_status.py runs
    # the same service on both): SQLite only, to keep the suite's time in hand.
    return f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"


NAME = "acme/app"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"roles": ["web"]})  # nothing fetches


@pytest.fixture
async def mirror(app_services: Services, tmp_path: Path) -> Path:
    source = build(tmp_path / "work")
    record = await seed_mirror(app_services, NAME, source=source, visibility=Visibility.private)
    return app_services.storage.path(record.id)


def git_log(repo: Path, ref: str, count: int) -> list[dict[str, Any]]:
    out = git(
        "--git-dir", str(repo), "log", f"-{count}", "-z", "--format=%H%x1f%an%x1f%cI%x1f%s", ref
    )
    entries = []
    for record in out.split("\0"):
        if record:
            sha, author, when, subject = record.split("\x1f")
            entries.append(
                {"sha": sha, "author_name": author, "committed_at": when, "subject": subject}
            )
    return entries


def git_tags(repo: Path) -> list[dict[str, Any]]:
    out = git(
        "--git-dir",
        str(repo),
        "for-each-ref",
        "--sort=-creatordate",
        "--format=%(refname:lstrip=2)%1f%(creatordate:iso-strict)%1f%(contents:subject)",
        "refs/tags/",
    )
    tags = []
    for line in out.splitlines():
        name, when, subject = line.split("\x1f")
        kind = git("--git-dir", str(repo), "cat-file", "-t", f"refs/tags/{name}^{{}}").strip()
        if kind != "commit":
            continue
        commit = git("--git-dir", str(repo), "rev-parse", f"refs/tags/{name}^{{commit}}").strip()
        tags.append({"name": name, "commit": commit, "tagged_at": when, "subject": subject})
    return tags


def as_datetimes(items: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    return [{**item, key: datetime.fromisoformat(item[key])} for item in items]


async def test_commits_are_what_git_log_says(
    client: httpx.AsyncClient, admin_headers: dict[str, str], mirror: Path
) -> None:
    default = await client.get(f"/api/repos/{NAME}/commits", headers=admin_headers)
    assert default.status_code == 200, default.text
    assert default.json()["ref"] == "main"
    items = default.json()["items"]
    assert len(items) == 20  # 25 on main: the default page is the newest 20
    assert as_datetimes(items, "committed_at") == as_datetimes(
        git_log(mirror, "main", 20), "committed_at"
    )
    assert any("%x00" in item["subject"] and "\t" in item["subject"] for item in items)
    assert {item["author_name"] for item in items} == {"Ada Lovelace", "Zoë Ångström"}

    feature_sha = git("--git-dir", str(mirror), "rev-parse", "feature").strip()
    for ref, count in (("feature", 3), ("v0.2.0", 100), ("v0.2.0-signed~2", 5), (feature_sha, 1)):
        answer = await client.get(
            f"/api/repos/{NAME}/commits",
            params={"ref": ref, "per_page": count},
            headers=admin_headers,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["ref"] == ref
        assert as_datetimes(answer.json()["items"], "committed_at") == as_datetimes(
            git_log(mirror, ref, count), "committed_at"
        )


async def test_tags_are_what_git_for_each_ref_says(
    client: httpx.AsyncClient, admin_headers: dict[str, str], mirror: Path
) -> None:
    answer = await client.get(f"/api/repos/{NAME}/tags", headers=admin_headers)

    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert as_datetimes(items, "tagged_at") == as_datetimes(git_tags(mirror), "tagged_at")
    # The tag of a tree is left out, the tag of a tag names the commit beneath both.
    names = [item["name"] for item in items]
    assert names == ["v0.2.0-signed", "v0.2.0", "v0.1.0"]
    signed, annotated, lightweight = items
    assert signed["commit"] == annotated["commit"] == git_log(mirror, "main~15", 1)[0]["sha"]
    assert (annotated["subject"], lightweight["subject"]) == ("Second release", "commit 5")


async def test_a_ref_is_a_plain_revision_outside_the_upstream_namespace(
    client: httpx.AsyncClient, admin_headers: dict[str, str], mirror: Path
) -> None:
    head = git("--git-dir", str(mirror), "rev-parse", "main~3").strip()
    git("--git-dir", str(mirror), "update-ref", "refs/upstream/main", head)

    async def commits(**params: Any) -> httpx.Response:
        return await client.get(f"/api/repos/{NAME}/commits", params=params, headers=admin_headers)

    for ref in ("upstream/main", "refs/upstream/main", "upstream/main~1", "--all", "HEAD^{/x}"):
        refused = await commits(ref=ref)
        assert refused.status_code == 422, (ref, refused.text)
        assert refused.json()["error"]["field"] == "ref"
    assert "upstream namespace" in (await commits(ref="upstream/main")).json()["error"]["message"]
    for per_page in (0, 101):
        bounded = await commits(per_page=per_page)
        assert bounded.status_code == 422
        assert bounded.json()["error"]["field"] == "per_page"
    missing = await commits(ref="no-such-branch")
    assert missing.status_code == 404
    assert "no-such-branch" in missing.json()["error"]["message"]


async def test_another_member_cannot_see_a_private_repository_s_history(
    client: httpx.AsyncClient, app_services: Services, admin_headers: dict[str, str], mirror: Path
) -> None:
    await app_services.accounts.create_user("bob")
    _, bob = await app_services.accounts.create_token("bob", "t")
    as_bob = {"Authorization": f"Bearer {bob}"}

    for path in ("commits", "tags"):
        hidden = await client.get(f"/api/repos/{NAME}/{path}", headers=as_bob)
        assert hidden.status_code == 404
        assert "no repository named" in hidden.json()["error"]["message"]
        shown = await client.get(f"/api/repos/{NAME}/{path}", headers=admin_headers)
        assert shown.status_code == 200


async def test_an_empty_repository_has_no_history_and_an_uncloned_one_says_so(
    client: httpx.AsyncClient, app_services: Services, admin_headers: dict[str, str]
) -> None:
    await seed_mirror(
        app_services, "acme/empty", spec=Spec(commits=0), visibility=Visibility.public
    )
    await app_services.repositories.create(name="acme/later", owner_id=None)

    commits, tags = await asyncio.gather(
        client.get("/api/repos/acme/empty/commits", headers=admin_headers),
        client.get("/api/repos/acme/empty/tags", headers=admin_headers),
    )
    assert (commits.status_code, commits.json()["items"]) == (200, [])
    assert (tags.status_code, tags.json()["items"]) == (200, [])
    later = await client.get("/api/repos/acme/later/commits", headers=admin_headers)
    assert later.status_code == 404
    assert "not cloned yet" in later.json()["error"]["message"]
