"""The REST API through the ASGI app, on both databases: auth, permissions, pages of results."""

from __future__ import annotations

import httpx
import pytest

from repodepot.db.models import Visibility
from repodepot.services import Services
from tests.conftest import ADMIN_TOKEN
from tests.support.members import member
from tests.support.repogen import Spec
from tests.support.seed import seed_mirror


@pytest.fixture
async def repos(
    app_services: Services, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> dict[str, dict[str, str]]:
    """alice owns a private and a public repository; bob owns nothing."""
    alice = await member(client, admin_headers, "alice")
    bob = await member(client, admin_headers, "bob")
    alice_id = (await app_services.accounts.get_user("alice")).id
    await app_services.repositories.create(
        name="alice/secret", owner_id=alice_id, source_url="https://alice:hunter2@example.com/s.git"
    )
    await seed_mirror(
        app_services,
        "alice/open",
        spec=Spec(commits=1),
        owner_id=alice_id,
        visibility=Visibility.public,
    )
    return {"alice": alice, "bob": bob}


async def test_a_nul_in_a_path_or_query_is_422_before_any_route(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    # PostgreSQL refuses a NUL in text: a name with one was a 500 on /api/users/{name}.
    for url in (
        "/api/users/ad%00min",
        "/api/repos/acme/x%00/commits/HEAD",
        "/git/acme/x%00/info/refs?service=git-upload-pack",
        "/api/repos?after=a%00b",
        "/goproxy/example.com/m/@v/v1%00.info",
    ):
        answer = await client.get(url, headers=admin_headers)
        assert answer.status_code == 422, (url, answer.text)
        assert "a NUL is not allowed in " in answer.text  # in each route family's form
    assert (await client.get("/api/users/ad%00min")).json()["error"]["code"] == "invalid"


async def test_missing_and_unknown_tokens_get_401(client: httpx.AsyncClient) -> None:
    # Reads of public repositories need no token (an empty list here); the rest does.
    assert (await client.get("/api/repos")).json()["items"] == []
    missing = await client.get("/api/user")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "unauthenticated"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    unknown = await client.get(
        "/api/repos", headers={"Authorization": "Bearer rdp_nope" + "x" * 40}
    )
    assert unknown.status_code == 401
    wrong_scheme = await client.get("/api/repos", headers={"Authorization": "Basic abc"})
    assert wrong_scheme.status_code == 401


async def test_members_get_403_on_admin_endpoints(
    client: httpx.AsyncClient, repos: dict[str, dict[str, str]]
) -> None:
    answer = await client.get("/api/users", headers=repos["bob"])
    assert answer.status_code == 403
    assert answer.json() == {"error": {"code": "forbidden", "message": "only admins may do this"}}
    answer = await client.post("/api/users", json={"name": "eve"}, headers=repos["bob"])
    assert answer.status_code == 403


async def test_private_repositories_are_404_to_others(
    client: httpx.AsyncClient, repos: dict[str, dict[str, str]], admin_headers: dict[str, str]
) -> None:
    assert (await client.get("/api/repos/alice/secret", headers=repos["bob"])).status_code == 404
    assert (await client.get("/api/repos/alice/open", headers=repos["bob"])).status_code == 200
    own = await client.get("/api/repos/alice/secret", headers=repos["alice"])
    assert own.status_code == 200
    assert own.json()["source_url"] == "https://example.com/s.git"  # credentials never stored
    assert own.json()["owner"] == "alice"
    assert (await client.get("/api/repos/alice/secret", headers=admin_headers)).status_code == 200

    def names(answer: httpx.Response) -> list[str]:
        return [item["name"] for item in answer.json()["items"]]

    assert names(await client.get("/api/repos", headers=repos["bob"])) == ["alice/open"]
    assert names(await client.get("/api/repos", headers=repos["alice"])) == [
        "alice/open",
        "alice/secret",
    ]
    assert names(await client.get("/api/repos", headers=admin_headers)) == [
        "alice/open",
        "alice/secret",
    ]


async def test_lists_are_paged(
    client: httpx.AsyncClient, app_services: Services, admin_headers: dict[str, str]
) -> None:
    for index in range(5):
        await app_services.repositories.create(name=f"org/r{index}", owner_id=None)
    answer = await client.get("/api/repos?page=2&per_page=2", headers=admin_headers)
    body = answer.json()
    assert (body["total"], body["page"], body["per_page"]) == (5, 2, 2)
    assert [item["name"] for item in body["items"]] == ["org/r2", "org/r3"]
    too_many = await client.get("/api/repos?per_page=101", headers=admin_headers)
    assert too_many.status_code == 422
    assert too_many.json()["error"]["field"] == "per_page"
    zero = await client.get("/api/repos?page=0", headers=admin_headers)
    assert zero.json()["error"]["field"] == "page"


async def test_a_long_listing_is_walked_by_name_past_what_the_caller_may_not_read(
    client: httpx.AsyncClient, app_services: Services, repos: dict[str, dict[str, str]]
) -> None:
    alice_id = (await app_services.accounts.get_user("alice")).id
    for index in range(7):  # alice's private ones sit between the ones bob may read
        await app_services.repositories.create(
            name=f"org/r{index}",
            owner_id=alice_id,
            visibility=Visibility.internal if index % 2 == 0 else Visibility.private,
        )

    async def walk(headers: dict[str, str]) -> list[list[str]]:
        pages: list[list[str]] = []
        after: str | None = None
        while True:
            query = {"per_page": "2"} | ({"after": after} if after else {})
            body = (await client.get("/api/repos", params=query, headers=headers)).json()
            pages.append([item["name"] for item in body["items"]])
            after = body["next_after"]
            if after is None:
                return pages

    # bob: alice/open and the four internal ones, in name order, each once, then the end
    # (no empty page after a full last one).
    assert await walk(repos["bob"]) == [
        ["alice/open", "org/r0"],
        ["org/r2", "org/r4"],
        ["org/r6"],
    ]
    assert [name for page in await walk(repos["alice"]) for name in page] == [
        "alice/open",
        "alice/secret",
        *(f"org/r{index}" for index in range(7)),
    ]
    # Continuing after a name bob may not read tells him nothing he could not list.
    hidden = await client.get(
        "/api/repos", params={"after": "org/r1", "per_page": "1"}, headers=repos["bob"]
    )
    body = hidden.json()
    assert ([item["name"] for item in body["items"]], body["total"]) == (["org/r2"], 5)
    assert body["next_after"] == "org/r2"
    # `page` counts on from `after`.
    later = await client.get(
        "/api/repos",
        params={"after": "alice/open", "page": "2", "per_page": "2"},
        headers=repos["bob"],
    )
    assert [item["name"] for item in later.json()["items"]] == ["org/r4", "org/r6"]
    # The count a caller's listing keeps follows a new repository and a grant at once.
    await app_services.repositories.create(
        name="org/r8", owner_id=alice_id, visibility=Visibility.internal
    )
    granted = await client.post(
        "/api/repos/org/r1/grants", json={"user": "bob", "role": "read"}, headers=repos["alice"]
    )
    assert granted.status_code == 201, granted.text
    body = (await client.get("/api/repos", params={"after": "org/r0"}, headers=repos["bob"])).json()
    assert body["total"] == 7
    assert [item["name"] for item in body["items"]] == [
        "org/r1",
        "org/r2",
        "org/r4",
        "org/r6",
        "org/r8",
    ]
    for bad in ("org/\x00r1", "../etc", "a" * 256, "org//r1"):
        refused = await client.get("/api/repos", params={"after": bad}, headers=repos["bob"])
        assert refused.status_code in (400, 422), (bad, refused.text)
        assert refused.json()["error"]["field"] == "after", bad


async def test_token_lifecycle_over_the_api(
    client: httpx.AsyncClient, repos: dict[str, dict[str, str]]
) -> None:
    created = await client.post("/api/tokens", json={"name": "ci"}, headers=repos["alice"])
    assert created.status_code == 201
    token = created.json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/user", headers=headers)).json()["name"] == "alice"

    listed = (await client.get("/api/tokens", headers=repos["alice"])).json()
    assert {item["name"] for item in listed["items"]} == {"t", "ci"}
    assert all("token" not in item for item in listed["items"])

    # bob may neither see nor revoke alice's token, nor mint one for her
    assert (
        await client.delete(f"/api/tokens/{created.json()['id']}", headers=repos["bob"])
    ).status_code == 404
    assert (await client.get("/api/tokens?user=alice", headers=repos["bob"])).status_code == 403
    assert (
        await client.post("/api/tokens", json={"user": "alice"}, headers=repos["bob"])
    ).status_code == 403

    revoked = await client.delete(f"/api/tokens/{created.json()['id']}", headers=headers)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert (await client.get("/api/user", headers=headers)).status_code == 401


async def test_admin_user_management(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    answer = await client.post(
        "/api/users", json={"name": "ops", "role": "admin"}, headers=admin_headers
    )
    assert answer.status_code == 201 and answer.json()["role"] == "admin"
    again = await client.post("/api/users", json={"name": "ops"}, headers=admin_headers)
    assert again.status_code == 409 and again.json()["error"]["field"] == "name"
    bad = await client.post("/api/users", json={"name": "Not Valid"}, headers=admin_headers)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "name"
    role = await client.post(
        "/api/users", json={"name": "x", "role": "root"}, headers=admin_headers
    )
    assert role.status_code == 422 and role.json()["error"]["field"] == "role"
    listed = (await client.get("/api/users", headers=admin_headers)).json()
    assert [user["name"] for user in listed["items"]] == ["admin", "ops"]
    assert (await client.get("/api/users/ghost", headers=admin_headers)).status_code == 404


async def test_request_ids_health_and_metrics(
    client: httpx.AsyncClient, admin_headers: dict[str, str], app_services: Services
) -> None:
    answer = await client.get("/healthz", headers={"X-Request-ID": "abcdef123456"})
    assert answer.status_code == 200 and answer.headers["x-request-id"] == "abcdef123456"
    generated = await client.get("/healthz", headers={"X-Request-ID": "bad id\n"})
    assert len(generated.headers["x-request-id"]) == 32
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "data_dir": "ok"}
    await client.get("/api/repos", headers=admin_headers)
    await client.get("/api/repos", headers=admin_headers)  # the token, from memory this time
    await app_services.git.run(["version"])  # the app's runner reports to the app's metrics
    metrics = (await client.get("/metrics")).text
    tokens = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in metrics.splitlines()
        if line.startswith("repodepot_cache_") and '{cache="tokens"}' in line
    }
    assert tokens['repodepot_cache_hits_total{cache="tokens"}'] >= 1
    assert tokens['repodepot_cache_misses_total{cache="tokens"}'] >= 1
    assert tokens['repodepot_cache_entries{cache="tokens"}'] >= 1
    assert (
        'repodepot_http_requests_total{method="GET",route="/api/repos",status="200"} 2.0' in metrics
    )
    assert 'repodepot_git_commands_total{outcome="ok",subcommand="version"} 1.0' in metrics
    assert 'repodepot_git_command_duration_seconds_count{subcommand="version"} 1.0' in metrics


async def test_openapi_documents_every_api_route_with_error_schemas(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "ErrorResponse" in spec["components"]["schemas"]
    expected = {
        ("/api/repos", "get"),
        ("/api/repos/{name}", "get"),
        ("/api/users", "get"),
        ("/api/users", "post"),
        ("/api/users/{name}", "get"),
        ("/api/user", "get"),
        ("/api/tokens", "get"),
        ("/api/tokens", "post"),
        ("/api/tokens/{token_id}", "delete"),
    }
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}
    assert expected <= documented
    for path, method in expected:
        responses = spec["paths"][path][method]["responses"]
        assert responses["401"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/ErrorResponse"
        ), (path, method)


async def test_an_unexpected_error_is_json_without_a_traceback(
    client: httpx.AsyncClient,
    app_services: Services,
    admin_headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(app_services.repositories, "list", broken)
    answer = await client.get("/api/repos", headers=admin_headers)
    assert answer.status_code == 500
    body = answer.json()
    assert body["error"]["code"] == "internal"
    assert answer.headers["x-request-id"] in body["error"]["message"]
    assert "secret internals" not in answer.text and "Traceback" not in answer.text


async def test_bootstrap_admin_token_from_settings_works(client: httpx.AsyncClient) -> None:
    answer = await client.get("/api/user", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert answer.json()["role"] == "admin"
