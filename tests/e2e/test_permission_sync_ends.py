"""Permission sync's races and ends: what a linked account's grants must never outlive.

An account unlinked while its sync waits on a slow host gets no grant back when that
sync ends (the account's row is written first, in the grants' transaction, and only the
account the sync read is written). A `codehost` grant is kept by its connection: deleting
the connection takes it away even where another connection yields the same repository.
Found by attacking the access model (issue 15).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from repodepot.services import Services
from repodepot.settings import Settings
from tests.e2e.test_permission_sync import connect
from tests.support.eventually import eventually
from tests.support.fakehosts import FakeHost
from tests.support.members import member, user_id


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"codehost_requests_per_second": 1000.0, "sync_poll_interval": 0.1}
    )


async def test_unlinking_while_a_permission_sync_runs_leaves_no_grant(
    client: httpx.AsyncClient, admin_headers: dict[str, str], app_services: Services
) -> None:
    dev = await member(client, admin_headers, "dev")
    with FakeHost("github") as host:
        lib = host.add("acme", "lib", private=True)
        host_id = await connect(client, admin_headers, host, "company")
        token = host.user("dev")
        host.allow(token, lib.id)
        host.latency = 1.0  # the host is slow to answer the listing
        linked = await client.put(
            f"/api/user/codehost-accounts/{host_id}", json={"token": token}, headers=dev
        )
        assert linked.status_code == 200, linked.text
        running = asyncio.ensure_future(
            app_services.permsync.sync_account(await user_id(app_services, "dev"), host_id)
        )

        def asked() -> None:
            assert any(token in str(headers) for _, headers in host.seen)

        await eventually(asked, timeout=10)
        # The user unlinks while the host has not answered yet.
        gone = await client.delete(f"/api/user/codehost-accounts/{host_id}", headers=dev)
        assert gone.status_code == 204, gone.text
        assert (await client.get("/api/repos/acme/lib", headers=dev)).status_code == 404
        await running  # the sync that was under way ends
        # The account is gone; so must be what it granted.
        assert (await client.get("/api/user/codehost-accounts", headers=dev)).json() == []
        answer = await client.get("/api/repos/acme/lib", headers=dev)
        assert answer.status_code == 404, "an unlinked account's grant came back"


async def test_a_codehost_grant_ends_with_the_connection_that_kept_it(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    dev = await member(client, admin_headers, "dev")
    with FakeHost("github") as host:
        lib = host.add("acme", "lib", private=True)
        old = await connect(client, admin_headers, host, "company")
        await connect(client, admin_headers, host, "company-new")  # the one that replaces it
        listed = (await client.get("/api/repos", headers=admin_headers)).json()["items"]
        assert [item["name"] for item in listed] == ["acme/lib"]  # one repository, two links
        assert (await client.get("/api/repos/acme/lib", headers=dev)).status_code == 404
        token = host.user("dev")
        host.allow(token, lib.id)
        linked = await client.put(
            f"/api/user/codehost-accounts/{old}", json={"token": token}, headers=dev
        )
        assert linked.status_code == 200, linked.text

        async def reads() -> None:
            assert (await client.get("/api/repos/acme/lib", headers=dev)).status_code == 200

        await eventually(reads, timeout=30)

        # The admin removes the old connection; the host takes dev's access back.
        removed = await client.delete(f"/api/codehosts/{old}", headers=admin_headers)
        assert removed.status_code in (200, 204), removed.text
        host.disallow(token, lib.id)
        assert (await client.get("/api/user/codehost-accounts", headers=dev)).json() == []
        answer = await client.get("/api/repos/acme/lib", headers=dev)
        assert answer.status_code == 404, "a grant nothing keeps in step any more still opens it"


async def test_the_pages_kept_for_conditional_requests_are_bounded_by_account(
    app_services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Memory does not grow with the number of linked accounts: the least recent go."""
    monkeypatch.setattr("repodepot.permsync.CACHED_ACCOUNTS", 2)
    sync = app_services.permsync
    first = sync._pages_of((1, 1))
    sync._pages_of((2, 1))
    assert sync._pages_of((1, 1)) is first  # used again: now the most recent
    sync._pages_of((3, 1))
    assert set(sync._caches) == {(1, 1), (3, 1)}
