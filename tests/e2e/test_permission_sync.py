"""Permission sync, on SQLite and PostgreSQL: a member's `codehost` grants follow their token.

A fake GitHub, GitLab or Gitea has three private repositories, `acme/one`, `acme/two`
and `acme/three`, synced by a connection. Member `dev` links their own token on it,
allowed `one` and `two` by the host: after the account's permission sync, `dev` reads
exactly those. What the host takes back goes at the next sync; a token the host refuses
keeps its grants through the grace period only. The token is never in an answer, a
log line or the database in clear.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text, update

from repodepot.db.models import CodeHostAccount
from repodepot.services import Services
from repodepot.settings import Settings
from tests.e2e.test_codehosts import wait_for_sync
from tests.e2e.test_reads_never_write import counted
from tests.support.eventually import eventually
from tests.support.fakehosts import LISTING, FakeHost
from tests.support.members import member

Json = dict[str, Any]
Headers = dict[str, str]
ONE, TWO, THREE = "acme/one", "acme/two", "acme/three"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "codehost_requests_per_second": 1000.0,
            "sync_poll_interval": 0.1,
            "permissions_rejected_grace": 3600.0,  # its end is reached by ageing the refusal
        }
    )


@pytest.fixture(params=["github", "gitlab", "gitea"])
def host(request: pytest.FixtureRequest) -> Iterator[FakeHost]:
    with FakeHost(request.param) as fake:
        yield fake


def private_repositories(host: FakeHost, *names: str) -> dict[str, int]:
    """The host's id of each new private repository, by its full name."""
    return {
        name: host.add(*name.split("/"), private=True).id for name in names or (ONE, TWO, THREE)
    }


async def connect(client: httpx.AsyncClient, admin: Headers, host: FakeHost, name: str) -> int:
    """A connection of `host`, synced once."""
    config = {
        "url": host.url,
        "token": host.token,
        "repositoryPathPattern": "{nameWithOwner}",
        **LISTING[host.kind],
    }
    created = await client.post(
        "/api/codehosts", json={"kind": host.kind, "name": name, "config": config}, headers=admin
    )
    assert created.status_code == 201, created.text
    host_id: int = created.json()["id"]
    asked = await client.post(f"/api/codehosts/{host_id}/sync", headers=admin)
    synced = await wait_for_sync(client, admin, host_id, asked.json()["requested_at"])
    assert synced["last_sync"]["status"] == "success", synced["last_sync"]
    return host_id


async def accounts(client: httpx.AsyncClient, headers: Headers) -> list[Json]:
    answer = await client.get("/api/user/codehost-accounts", headers=headers)
    assert answer.status_code == 200, answer.text
    found: list[Json] = answer.json()
    return found


async def synced_since(
    client: httpx.AsyncClient, headers: Headers, host_id: int, since: str
) -> Json:
    """The account on `host_id` once a permission sync started at or after `since` ran."""
    asked = datetime.fromisoformat(since)

    async def done() -> Json:
        (account,) = [a for a in await accounts(client, headers) if a["code_host_id"] == host_id]
        last = account["last_sync_at"]
        assert last and datetime.fromisoformat(last) >= asked, account
        return account

    found: Json = await eventually(done, timeout=20, interval=0.05)
    return found


async def link(client: httpx.AsyncClient, headers: Headers, host_id: int, token: str) -> Json:
    """Link the account and wait for its first permission sync."""
    linked = await client.put(
        f"/api/user/codehost-accounts/{host_id}", json={"token": token}, headers=headers
    )
    assert linked.status_code == 200, linked.text
    assert token not in linked.text
    assert linked.json()["has_token"] is True
    return await synced_since(client, headers, host_id, linked.json()["linked_at"])


async def sync_now(client: httpx.AsyncClient, headers: Headers, host_id: int) -> Json:
    asked = await client.post(f"/api/user/codehost-accounts/{host_id}/sync", headers=headers)
    assert asked.status_code == 202, asked.text
    return await synced_since(client, headers, host_id, asked.json()["requested_at"])


async def reads(client: httpx.AsyncClient, headers: Headers, *names: str) -> set[str]:
    """Which of `names` the caller reads: its entry (200, else 404) and the listing agree."""
    listed = await client.get("/api/repos", params={"per_page": 100}, headers=headers)
    assert listed.status_code == 200, listed.text
    found = {item["name"] for item in listed.json()["items"]} & set(names)
    for name in names:
        entry = await client.get(f"/api/repos/{name}", headers=headers)
        assert entry.status_code == (200 if name in found else 404), (name, entry.text)
    return found


async def sealed_rows(services: Services) -> str:
    """Everything the accounts' table and the audit log hold, as text."""
    async with services.sessions() as session:
        rows = [
            *(await session.execute(text("SELECT * FROM code_host_accounts"))).all(),
            *(await session.execute(text("SELECT * FROM audit_log"))).all(),
        ]
    return repr(rows)


async def test_a_member_reads_what_their_token_reads_until_the_host_says_otherwise(
    client: httpx.AsyncClient,
    admin_headers: Headers,
    app_services: Services,
    host: FakeHost,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    ids = private_repositories(host)
    host_id = await connect(client, admin_headers, host, "company")
    dev = await member(client, admin_headers, "dev")
    assert await reads(client, dev, ONE, TWO, THREE) == set()  # private: nobody granted
    token = host.user("dev")
    host.allow(token, ids[ONE], ids[TWO])

    account = await link(client, dev, host_id, token)

    assert (account["last_status"], account["readable"]) == ("success", 2), account
    assert (account["code_host"], account["has_token"]) == ("company", True)
    assert await reads(client, dev, ONE, TWO, THREE) == {ONE, TWO}

    # Nothing changed on the host: the next sync writes no grant.
    with counted(app_services) as statements:
        again = await sync_now(client, dev, host_id)
    assert again["last_status"] == "success", again
    assert [sql for sql in statements.writes if "repository_grants" in sql] == []

    # Taken back on the host: gone here at the next sync.
    host.disallow(token, ids[TWO])
    assert (await sync_now(client, dev, host_id))["readable"] == 1
    assert await reads(client, dev, ONE, TWO, THREE) == {ONE}

    # The host refuses the token: the grants stay through the grace period...
    host.revoke(token)
    refused = await sync_now(client, dev, host_id)
    assert refused["last_status"] == "rejected", refused
    assert "refused the token" in refused["last_error"], refused
    assert refused["rejected_since"] is not None
    assert await reads(client, dev, ONE, TWO, THREE) == {ONE}
    # ...and stop at the first sync after it (the refusal aged past the grace).
    async with app_services.sessions.begin() as session:
        await session.execute(
            update(CodeHostAccount)
            .where(CodeHostAccount.code_host_id == host_id)
            .values(
                rejected_since=datetime.fromisoformat(refused["rejected_since"])
                - timedelta(hours=2)
            )
        )
    after = await sync_now(client, dev, host_id)
    assert after["last_status"] == "rejected", after
    assert await reads(client, dev, ONE, TWO, THREE) == set()

    # A new token brings them back.
    renewed = host.user("dev")
    host.allow(renewed, ids[ONE], ids[THREE])
    back = await link(client, dev, host_id, renewed)
    assert (back["last_status"], back["rejected_since"], back["last_error"]) == (
        "success",
        None,
        None,
    )
    assert await reads(client, dev, ONE, TWO, THREE) == {ONE, THREE}

    # Neither token in any answer, log line or row in clear.
    seen = [
        (await client.get("/api/user/codehost-accounts", headers=dev)).text,
        (await client.get("/api/codehost-accounts", headers=admin_headers)).text,
        caplog.text,
        *(repr(record.__dict__) for record in caplog.records),
        await sealed_rows(app_services),
    ]
    for secret in (token, renewed):
        assert not [where for where in seen if secret in where]
    async with app_services.sessions() as session:
        sealed = await session.scalar(select(CodeHostAccount.sealed_token))
    assert sealed and app_services.permsync._box.open(sealed) == renewed


async def test_two_linked_connections_keep_each_other_s_grants(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    with FakeHost("github") as first, FakeHost("gitea") as second:
        on_first = private_repositories(first, ONE)
        on_second = private_repositories(second, "team/other")
        first_id = await connect(client, admin_headers, first, "first")
        second_id = await connect(client, admin_headers, second, "second")
        dev = await member(client, admin_headers, "dev")
        first_token, second_token = first.user("dev"), second.user("dev")
        first.allow(first_token, *on_first.values())
        second.allow(second_token, *on_second.values())

        await link(client, dev, first_id, first_token)
        await link(client, dev, second_id, second_token)
        assert await reads(client, dev, ONE, "team/other") == {ONE, "team/other"}

        await sync_now(client, dev, first_id)  # lists only the first host's
        assert await reads(client, dev, ONE, "team/other") == {ONE, "team/other"}
        first.disallow(first_token, on_first[ONE])
        await sync_now(client, dev, first_id)
        assert await reads(client, dev, ONE, "team/other") == {"team/other"}

        # Unlinking the second takes its grants, and only those of its repositories.
        first.allow(first_token, on_first[ONE])
        await sync_now(client, dev, first_id)
        unlinked = await client.delete(f"/api/user/codehost-accounts/{second_id}", headers=dev)
        assert unlinked.status_code == 204, unlinked.text
        assert await reads(client, dev, ONE, "team/other") == {ONE}
        assert [a["code_host_id"] for a in await accounts(client, dev)] == [first_id]


async def test_accounts_are_their_owner_s_and_admins_see_each_last_sync(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    with FakeHost("gitlab") as host:
        ids = private_repositories(host, ONE)
        host_id = await connect(client, admin_headers, host, "company")
        dev = await member(client, admin_headers, "dev")
        eve = await member(client, admin_headers, "eve")
        token = host.user("dev")
        host.allow(token, *ids.values())
        await link(client, dev, host_id, token)

        assert await accounts(client, eve) == []
        assert await reads(client, eve, ONE) == set()
        theirs = await client.post(f"/api/user/codehost-accounts/{host_id}/sync", headers=eve)
        assert theirs.status_code == 404, theirs.text  # eve's own account: there is none
        assert (await client.get("/api/codehost-accounts", headers=eve)).status_code == 403
        listed = (await client.get("/api/codehost-accounts", headers=admin_headers)).json()
        assert [(a["user"], a["code_host"], a["last_status"], a["readable"]) for a in listed] == [
            ("dev", "company", "success", 1)
        ]


async def test_bad_links_are_refused_with_a_clear_error(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    dev = await member(client, admin_headers, "dev")
    other = await client.post(
        "/api/codehosts",
        json={
            "kind": "other",
            "name": "plain",
            "config": {"repos": ["http://127.0.0.1:9/plain.git"]},
        },
        headers=admin_headers,
    )
    assert other.status_code == 201, other.text

    async def refused(host_id: int, token: str) -> tuple[int, Json]:
        answer = await client.put(
            f"/api/user/codehost-accounts/{host_id}", json={"token": token}, headers=dev
        )
        assert token.strip() == "" or token not in answer.text
        return answer.status_code, answer.json()["error"]

    status, error = await refused(other.json()["id"], "a-token-for-nothing")
    assert (status, error["field"]) == (422, "connection"), error
    assert "`other` connection" in error["message"]
    status, error = await refused(99999, "a-token-for-nothing")
    assert status == 404, error
    status, error = await refused(other.json()["id"], "   ")
    assert (status, error["field"]) == (422, "token"), error
    status, error = await refused(other.json()["id"], "x" * 1001)
    assert (status, error["field"]) == (422, "token"), error
    assert await accounts(client, dev) == []
    anonymous = await client.put(
        f"/api/user/codehost-accounts/{other.json()['id']}", json={"token": "t" * 20}
    )
    assert anonymous.status_code == 401
