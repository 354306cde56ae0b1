"""Strict input: whatever a client sends, the answer is a 4xx in the API's error shape, never 500.

Ids past 63 bits in every path, huge pages on every list, deeply nested JSON to every
JSON endpoint, webhook payloads of the wrong shape and replayed deliveries, garbage to
upload-pack.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import logging
import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from sqlalchemy import update

from repodepot.db.models import GitserverRepo, Repository, Visibility
from repodepot.services import Services
from repodepot.settings import Settings
from tests.support.repogen import Spec
from tests.support.seed import seed_mirror

SECRET = "webhook-secret-0123"
TOO_BIG = [2**63, 2**64, 10**30]
DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"roles": ["web"]})  # nothing takes a queued update


def assert_error(answer: httpx.Response, *statuses: int) -> dict[str, Any]:
    """The answer is one of `statuses` with the API's error envelope; returns the error."""
    assert answer.status_code in statuses, (answer.status_code, answer.text[:300])
    error: dict[str, Any] = answer.json()["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str)
    return error


def _api_routes(app: FastAPI) -> list[APIRoute]:
    # FastAPI 0.16x keeps included routers whole; their routes are the original router's.
    found: list[Any] = []
    for route in app.routes:
        router = getattr(route, "original_router", None)
        found += router.routes if router is not None else [route]
    return [route for route in found if isinstance(route, APIRoute)]


def _id_routes(app: FastAPI) -> list[tuple[str, str]]:
    return sorted(
        (method, route.path)
        for route in _api_routes(app)
        if re.search(r"\{\w+_id\}", route.path)
        for method in route.methods or ()
    )


async def test_ids_past_63_bits_are_422_on_every_route_with_an_id(
    app: FastAPI, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    routes = _id_routes(app)
    assert len(routes) >= 14, routes  # imports, tokens, code hosts; their pages too
    for method, template in routes:
        for number in TOO_BIG:
            path = re.sub(r"\{\w+_id\}", str(number), template)
            answer = await client.request(method, path, headers=admin_headers)
            if path.startswith("/api/"):
                error = assert_error(answer, 422)
                assert "9223372036854775807" in error["message"], (method, path)
            else:  # an HTML page
                assert answer.status_code == 422, (method, path, answer.status_code)


async def test_pages_past_a_million_are_422_on_every_list(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    document = (await client.get("/openapi.json")).json()
    lists = [
        path
        for path, operations in document["paths"].items()
        if any(p["name"] == "page" for p in operations.get("get", {}).get("parameters", []))
    ]
    assert len(lists) >= 5, lists
    for template in [*lists, "/repos", "/imports"]:
        path = re.sub(r"\{\w+\}", "1", template)
        for page in (2**63 - 1, 10**6 + 1):
            answer = await client.get(path, params={"page": page}, headers=admin_headers)
            if path.startswith("/api/"):
                assert assert_error(answer, 422)["field"] == "page", path
            else:
                assert answer.status_code == 422, (path, answer.status_code)


async def _json_endpoints(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    """(method, path) of every operation that takes a JSON body, ids and names set to 1."""
    document = (await client.get("/openapi.json")).json()
    return [
        (method, re.sub(r"\{\w+(:path)?\}", "1", path))
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
    ]


async def test_json_nested_past_64_levels_is_422_on_every_json_endpoint(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    endpoints = await _json_endpoints(client)
    assert len(endpoints) >= 6, endpoints
    # 65 levels: the object, its config, 63 arrays; Python's parser alone would take it.
    shallow = json.dumps({"kind": "github", "name": "x", "config": {"a": 0}})
    just_too_deep = shallow.replace("0", "[" * 63 + "]" * 63)
    headers = {**admin_headers, "Content-Type": "application/json"}
    for method, path in endpoints:
        for body in (DEEP, just_too_deep.encode()):
            answer = await client.request(method.upper(), path, content=body, headers=headers)
            error = assert_error(answer, 422)
            assert "nested deeper than 64 levels" in error["message"], (method, path)


async def test_a_content_length_past_the_cap_is_413_on_every_api_route_which_does_nothing(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    document = (await client.get("/openapi.json")).json()
    operations = [
        (method.upper(), re.sub(r"\{\w+(:path)?\}", "1", path))
        for path, items in document["paths"].items()
        if path.startswith("/api/")
        for method in items
    ]
    assert len(operations) >= 25, operations
    await _webhook_hosts(client, admin_headers)  # code host 1, whose sync one may ask for
    host = (await client.get("/api/codehosts/1", headers=admin_headers)).json()
    headers = {**admin_headers, "Content-Type": "application/json", "Content-Length": "2097152"}
    for method, path in operations:
        answer = await client.request(method, path, content=b"{}", headers=headers)
        assert answer.status_code == 413, (method, path, answer.status_code)
    after = await client.get("/api/codehosts/1", headers=admin_headers)
    assert after.status_code == 200  # `DELETE /api/codehosts/1` did not run
    assert after.json()["next_sync_at"] == host["next_sync_at"]  # nor `POST .../sync`


async def _webhook_hosts(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    for kind in ("github", "gitlab", "gitea"):
        config = {"url": "http://127.0.0.1:9", "webhookSecret": SECRET}
        created = await client.post(
            "/api/codehosts",
            json={"kind": kind, "name": kind, "config": config},
            headers=admin_headers,
        )
        assert created.status_code == 201, created.text


def _signed(kind: str, body: bytes, delivery: str | None = None) -> dict[str, str]:
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    headers = {
        "github": {"X-Hub-Signature-256": f"sha256={digest}", "X-GitHub-Event": "push"},
        "gitlab": {"X-Gitlab-Token": SECRET, "X-Gitlab-Event": "Push Hook"},
        "gitea": {"X-Gitea-Signature": digest, "X-Gitea-Event": "push"},
    }[kind]
    if delivery is not None:
        name = {"github": "X-GitHub-Delivery", "gitlab": "X-Gitlab-Event-UUID"}
        headers[name.get(kind, "X-Gitea-Delivery")] = delivery
    return {**headers, "Content-Type": "application/json"}


WRONG_SHAPES = {
    "github": [
        {"repository": "acme/app"},
        {"repository": [1, 2]},
        {"repository": {"id": {"nested": 1}}},
        {"repository": None},
        {"ref": "refs/heads/main"},
    ],
    "gitea": [{"repository": "acme/app"}, {"repository": {"id": "seven"}}, {"repository": 7}],
    "gitlab": [{"project": 5}, {"project": "acme/app"}, {"project": {"id": []}}, {"ref": "x"}],
}


@pytest.mark.parametrize("kind", ["github", "gitlab", "gitea"])
async def test_signed_webhooks_of_the_wrong_shape_are_400(
    client: httpx.AsyncClient, admin_headers: dict[str, str], kind: str
) -> None:
    await _webhook_hosts(client, admin_headers)
    for payload in [*WRONG_SHAPES[kind], [], "text", 7]:
        body = json.dumps(payload).encode()
        answer = await client.post(f"/webhooks/{kind}", content=body, headers=_signed(kind, body))
        assert_error(answer, 400)
    for body in (DEEP, b"{not json"):
        answer = await client.post(f"/webhooks/{kind}", content=body, headers=_signed(kind, body))
        assert "not JSON" in assert_error(answer, 400)["message"]


async def test_a_replayed_delivery_is_answered_but_not_queued(
    client: httpx.AsyncClient, admin_headers: dict[str, str], app_services: Services
) -> None:
    await _webhook_hosts(client, admin_headers)
    repo = await app_services.repositories.create(
        name="acme/app", owner_id=None, source_url="http://127.0.0.1:9/acme/app.git"
    )
    async with app_services.sessions.begin() as session:
        await session.execute(
            update(Repository)
            .where(Repository.id == repo.id)
            .values(external_kind="github", external_host="127.0.0.1:9", external_id="R_app")
        )
    assert await app_services.gitserver.discover() == 1
    body = json.dumps({"after": "a" * 40, "repository": {"id": 1, "node_id": "R_app"}}).encode()

    first = await client.post(
        "/webhooks/github", content=body, headers=_signed("github", body, "d-1")
    )
    assert (first.status_code, first.json()) == (202, {"queued": True})
    # The update is taken, as the updater would: a replay would put it back in the queue.
    async with app_services.sessions.begin() as session:
        await session.execute(
            update(GitserverRepo)
            .where(GitserverRepo.repository_id == repo.id)
            .values(queued_priority=None, queued_reason=None)
        )

    for delivery in ("d-1", "d-2", None):  # the same id; the same signed payload, new id
        again = await client.post(
            "/webhooks/github", content=body, headers=_signed("github", body, delivery)
        )
        assert again.status_code == 202
        assert again.json() == {"queued": False, "reason": "this delivery was already received"}
    state = await app_services.gitserver.state(repo.id)
    assert state is not None and state.queued is None

    newer = json.dumps({"after": "b" * 40, "repository": {"id": 1, "node_id": "R_app"}}).encode()
    fresh = await client.post(
        "/webhooks/github", content=newer, headers=_signed("github", newer, "d-3")
    )
    assert (fresh.status_code, fresh.json()) == (202, {"queued": True})


@pytest.mark.parametrize("kind", ["github", "gitlab", "gitea"])
async def test_a_signature_header_that_is_not_ascii_is_401(
    client: httpx.AsyncClient, admin_headers: dict[str, str], kind: str
) -> None:
    # hmac.compare_digest refuses str with non-ASCII characters: anyone got a 500.
    await _webhook_hosts(client, admin_headers)
    body = b'{"repository": {"id": 1}, "project": {"id": 1}}'
    header = {
        "github": "X-Hub-Signature-256",
        "gitlab": "X-Gitlab-Token",
        "gitea": "X-Gitea-Signature",
    }[kind]
    for value in ("sha256=\xff\xfe", "\xe9", SECRET + "\xe9"):
        raw = {**_signed(kind, body), header: value}
        headers = {key.encode(): text.encode("latin-1") for key, text in raw.items()}
        answer = await client.post(f"/webhooks/{kind}", content=body, headers=headers)
        assert assert_error(answer, 401)["code"] == "bad_signature", (kind, value)


async def test_webhook_errors_are_json(client: httpx.AsyncClient) -> None:
    assert assert_error(await client.post("/webhooks/nowhere"), 404)["code"] == "not_found"
    assert assert_error(await client.get("/webhooks/github"), 405)["code"] == "method_not_allowed"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_garbage_to_upload_pack_is_400_with_git_s_words_and_no_traceback(
    client: httpx.AsyncClient, app_services: Services, caplog: pytest.LogCaptureFixture
) -> None:
    await seed_mirror(app_services, "acme/open", spec=Spec(commits=3), visibility=Visibility.public)
    url = "/git/acme/open.git/git-upload-pack"
    kind = {"Content-Type": "application/x-git-upload-pack-request"}
    caplog.set_level(logging.INFO)

    for protocol in ("version=2", None):
        headers = {**kind, **({"Git-Protocol": protocol} if protocol else {})}
        garbage = await client.post(url, content=b"garbage\x00\xff" * 100, headers=headers)
        assert garbage.status_code == 400
        assert "protocol error" in garbage.text
    not_gzip = await client.post(
        url, content=b"plain", headers={**kind, "Content-Encoding": "gzip"}
    )
    assert (not_gzip.status_code, "not valid gzip" in not_gzip.text) == (400, True)
    packed = gzip.compress(b"0000")
    for broken in (packed[:-3], packed + b"trailing"):
        cut = await client.post(url, content=broken, headers={**kind, "Content-Encoding": "gzip"})
        assert cut.status_code == 400, cut.text
    brotli = await client.post(url, content=b"x", headers={**kind, "Content-Encoding": "br"})
    assert (brotli.status_code, "not supported" in brotli.text) == (415, True)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_a_body_that_is_not_utf8_is_422_on_every_json_endpoint(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    # The fuzzer's find: invalid UTF-8 made FastAPI answer an undocumented 400.
    endpoints = await _json_endpoints(client)
    headers = {**admin_headers, "Content-Type": "application/json"}
    for method, path in endpoints:
        answer = await client.request(method.upper(), path, content=b"\xd8_\x97uU", headers=headers)
        error = assert_error(answer, 422)
        assert "not UTF-8" in error["message"], (method, path, error)
