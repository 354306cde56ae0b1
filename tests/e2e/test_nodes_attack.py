"""The storage nodes' internal surface attacked from outside, as brief X lists it.

A web process (roles `web`, the internal secret set) forwards the reads of mirrors placed
on node `evil`: a small `http.server` that records what it is sent and answers whatever
the test makes it answer (hostile headers, malformed JSON, endless bodies). A gitserver
process in the same test (roles `gitserver`, the in-process app) takes hostile ids,
revisions and bodies on its internal routes. Both run on both engines; the one hole that
reads a private mirror is shown again against a real gitserver process on PostgreSQL
(`tests/support/cluster.py`). What a user relies on: no read past who may read, no
request anywhere but a registered node's internal route for the repository asked about,
no node header or secret reaching a client or a log, no 500, nothing unbounded in memory.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from repodepot.accounts import operator
from repodepot.db.models import Visibility
from repodepot.gitserver.schedule import QueueReason
from repodepot.services import Services
from repodepot.settings import Settings
from repodepot.web.app import create_app
from tests.conftest import ADMIN_TOKEN
from tests.e2e.conftest import Server
from tests.support.cluster import SECRET_KEY, TOKEN, node_env, start_node
from tests.support.eventually import eventually
from tests.support.githttp import GitHttpServer
from tests.support.members import member
from tests.support.repogen import Spec, generate, git

INTERNAL = "internal-secret-" + "s" * 40
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
INSIDE = {"Authorization": f"Bearer {INTERNAL}"}
PUBLIC_ROOT = "example.com/acme/pub"
PRIVATE_ROOT = "example.com/acme/priv"
UPLOAD_PACK = "service=git-upload-pack"
EXEC_CAP = 1000
SIGNATURE = "x-repodepot-node"  # a node signs its internal answers with its name
CLIMB = 3 + len(PUBLIC_ROOT.split("/"))
"""`..`s from /internal/goproxy/{id}/{module}/@v/ up to /internal/."""
JSON_READS = ("/commits/HEAD", "/branches", "/commits", "/tags")

Answer = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Seen:
    """One request the fake node got."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FakeNode:
    """A "storage node" that records what it is sent and answers with `answer`."""

    url: str
    seen: list[Seen] = field(default_factory=list)
    answer: Answer | None = None

    def paths(self) -> list[str]:
        return [request.path for request in self.seen]


def _fake_node() -> tuple[FakeNode, ThreadingHTTPServer]:
    node = FakeNode(url="")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _any(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length:
                self.rfile.read(length)
            headers = {key.lower(): value for key, value in self.headers.items()}
            node.seen.append(Seen(self.command, self.path, headers))
            if node.answer is None:
                _send(self, 404, b"no mirror here\n")
            else:
                node.answer(self)

        do_GET = do_POST = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    node.url = f"http://127.0.0.1:{server.server_address[1]}"
    return node, server


def _send(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    headers: dict[str, str] | None = None,
) -> None:
    handler.send_response(status)
    for key, value in (headers or {"content-type": "text/plain"}).items():
        handler.send_header(key, value)
    handler.send_header(SIGNATURE, "evil")
    handler.send_header("content-length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _endless(status: int, content_type: str) -> Answer:
    """An answer without a length that never ends (until the reader goes away)."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("content-type", content_type)
        handler.send_header("connection", "close")
        handler.send_header(SIGNATURE, "evil")
        handler.end_headers()
        chunk = b"A" * 65536
        try:
            for _ in range(20_000):  # 1.3 GB at most: far past every cap
                handler.wfile.write(chunk)
        except OSError:
            return

    return answer


@pytest.fixture
def evil() -> Iterator[FakeNode]:
    node, server = _fake_node()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield node
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    """A web process of a cluster: no mirror of its own, every read forwarded."""
    return Settings(
        data_dir=tmp_path / "web",
        database_url=database_url,
        secret_key="test-secret-key-" + "x" * 32,
        admin_token=ADMIN_TOKEN,
        internal_secret=INTERNAL,
        roles=["web"],
        node_name="web-1",
        exec_max_bytes=EXEC_CAP,
    )


@dataclass(frozen=True)
class Repos:
    public: int
    private: int


async def _seed(svc: Services, node: FakeNode) -> Repos:
    """acme/pub (public) and acme/priv (private), each a Go module, placed on `evil`."""
    await svc.nodes.register("evil", node.url, None)
    ids = {}
    for short, visibility, root in (
        ("pub", Visibility.public, PUBLIC_ROOT),
        ("priv", Visibility.private, PRIVATE_ROOT),
    ):
        record = await svc.repositories.create(
            name=f"acme/{short}",
            owner_id=None,
            visibility=visibility,
            source_url=f"http://127.0.0.1:9/{short}.git",
        )
        await svc.repositories.set_go_import_root(operator(), record.name, root)
        ids[short] = record.id
    await svc.gitserver.enqueue(ids.values(), QueueReason.new)
    for key in ids.values():
        state = await svc.gitserver.state(key)
        assert state is not None and state.node == "evil"
    return Repos(public=ids["pub"], private=ids["priv"])


@pytest.fixture
async def repos(app_services: Services, evil: FakeNode) -> Repos:
    return await _seed(app_services, evil)


def _forwarded_reads(name: str, module: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every read a web process forwards, for repository `name` serving Go `module`."""
    return [
        ("GET", f"/git/{name}/info/refs?{UPLOAD_PACK}", None),
        ("GET", f"/api/repos/{name}/commits/HEAD", None),
        ("POST", f"/api/repos/{name}/exec", {"args": ["log", "-1"]}),
        ("GET", f"/goproxy/{module}/@v/list", None),
        ("GET", f"/goproxy/{module}/@v/v1.0.0.zip", None),
        ("GET", f"/api/repos/{name}/branches", None),
        ("GET", f"/api/repos/{name}/commits", None),
        ("GET", f"/api/repos/{name}/tags", None),
    ]


async def _call(
    client: httpx.AsyncClient, method: str, url: str, body: dict[str, Any] | None, **kw: Any
) -> httpx.Response:
    return await client.request(method, url, json=body, **kw)


# (a) and (b): who may read ----------------------------------------------------------------


async def test_a_private_repository_is_never_forwarded_for_a_caller_who_may_not_read_it(
    client: httpx.AsyncClient, repos: Repos, evil: FakeNode
) -> None:
    mallory = await member(client, ADMIN, "mallory")
    for headers in ({}, mallory, {"Authorization": f"Bearer {INTERNAL}"}):
        for method, url, body in _forwarded_reads("acme/priv", PRIVATE_ROOT):
            answer = await _call(client, method, url, body, headers=headers)
            assert answer.status_code in (401, 404), (url, answer.status_code, answer.text)
    assert evil.seen == []


async def test_every_forward_goes_to_the_repositorys_own_internal_route_with_the_secret(
    client: httpx.AsyncClient, repos: Repos, evil: FakeNode
) -> None:
    mallory = await member(client, ADMIN, "mallory")
    for method, url, body in _forwarded_reads("acme/pub", PUBLIC_ROOT):
        await _call(client, method, url, body, headers=mallory)
    assert len(evil.seen) == 8
    for seen in evil.seen:
        assert seen.path.startswith(
            (f"/internal/repos/{repos.public}/", f"/internal/goproxy/{repos.public}/")
        ), seen.path
        assert seen.headers["authorization"] == f"Bearer {INTERNAL}"
        # The member's own token never leaves the web process.
        assert mallory["Authorization"] not in json.dumps(seen.headers)


# (c): a caller-controlled path must stay inside the repository it was authorized for -----


async def test_a_goproxy_version_cannot_climb_to_another_repositorys_internal_route(
    client: httpx.AsyncClient, repos: Repos, evil: FakeNode
) -> None:
    leaked: dict[str, Any] = {"sha": "f" * 40, "author_name": "Private", "author_email": "p@x"}
    leaked |= {"authored_at": "2026-01-01T00:00:00+00:00", "subject": "secret plans"}
    leaked |= {"fetched": False}

    def commit(handler: BaseHTTPRequestHandler) -> None:
        _send(handler, 200, json.dumps(leaked).encode(), {"content-type": "application/json"})

    evil.answer = commit
    up = "/".join(["%2e%2e"] * CLIMB)
    climb = f"/goproxy/{PUBLIC_ROOT}/@v/{up}/repos/{repos.private}/commits/main.info"
    answer = await client.get(climb)  # anyone: acme/pub is public
    assert "secret plans" not in answer.text
    assert answer.status_code == 404, answer.text
    for seen in evil.seen:
        assert seen.path.startswith(f"/internal/goproxy/{repos.public}/"), seen.path


# Hostile node answers ----------------------------------------------------------------------


def _hostile_headers(status: int, body: bytes, content_type: str = "text/plain") -> Answer:
    def answer(handler: BaseHTTPRequestHandler) -> None:
        headers = {
            "content-type": content_type,
            "set-cookie": "session=stolen; Path=/",
            "location": "http://attacker.example/",
            "x-evil": "1",
            "www-authenticate": 'Basic realm="node"',
        }
        _send(handler, status, body, headers)

    return answer


@pytest.mark.parametrize("status", [200, 302, 401, 500])
async def test_a_nodes_headers_never_reach_the_client_and_its_failures_are_503(
    client: httpx.AsyncClient, repos: Repos, evil: FakeNode, status: int
) -> None:
    mallory = await member(client, ADMIN, "mallory")
    evil.answer = _hostile_headers(status, b"<script>not what was asked</script>")
    for method, url, body in _forwarded_reads("acme/pub", PUBLIC_ROOT):
        answer = await _call(client, method, url, body, headers=mallory)
        for header in ("set-cookie", "location", "x-evil", "www-authenticate", SIGNATURE):
            assert header not in answer.headers, (url, header)
        expected = 200 if status == 200 and not url.endswith(JSON_READS) else 503
        assert answer.status_code == expected, (url, answer.status_code, answer.text)
        if expected == 503:
            assert int(answer.headers["retry-after"]) > 0
            assert "storage node 'evil'" in answer.text


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'{"sha": 1}',
        b"null",
        b'{"items": [{"sha": null}]}',
        b'{"items": 5, "total": true, "page": "1", "per_page": []}',
        b"\xff\xfe not utf-8",
    ],
    ids=["list", "wrong-kind", "null", "null-item", "wrong-kinds", "not-utf8"],
)
async def test_a_malformed_json_answer_is_503_never_500(
    client: httpx.AsyncClient, repos: Repos, evil: FakeNode, body: bytes
) -> None:
    evil.answer = _hostile_headers(200, body, "application/json")
    for suffix in JSON_READS:
        answer = await client.get(f"/api/repos/acme/pub{suffix}")
        assert answer.status_code == 503, (suffix, answer.status_code, answer.text)
        assert "storage node 'evil'" in answer.json()["error"]["message"]


async def test_malformed_refusals_are_503_never_500(
    client: httpx.AsyncClient, repos: Repos, evil: FakeNode
) -> None:
    mallory = await member(client, ADMIN, "mallory")
    exec_url, exec_body = "/api/repos/acme/pub/exec", {"args": ["log", "-1"]}
    for body in (b'{"error": "no"}', b"{}", b"not json", b"[1]"):
        evil.answer = _hostile_headers(422, body, "application/json")
        answer = await client.post(exec_url, json=exec_body, headers=mallory)
        assert answer.status_code == 503, (body[:20], answer.status_code, answer.text)
        for suffix in JSON_READS:
            answer = await client.get(f"/api/repos/acme/pub{suffix}")
            assert answer.status_code in (422, 503), (suffix, answer.status_code, answer.text)
    evil.answer = _hostile_headers(429, b"busy\n")
    answer = await client.post(exec_url, json=exec_body, headers=mallory)
    assert answer.status_code == 429
    assert answer.headers["retry-after"] == "1"  # the node said none


DEEP = b"[" * 60_000  # nested past json's recursion limit, within every answer's cap


async def test_a_deeply_nested_json_answer_is_503_never_500(
    client: httpx.AsyncClient, repos: Repos, evil: FakeNode
) -> None:
    mallory = await member(client, ADMIN, "mallory")
    statuses = {}
    for status in (200, 422):
        evil.answer = _hostile_headers(status, DEEP, "application/json")
        for suffix in JSON_READS:
            answer = await client.get(f"/api/repos/acme/pub{suffix}")
            statuses[(status, suffix)] = answer.status_code
    exec_body = {"args": ["log", "-1"]}
    answer = await client.post("/api/repos/acme/pub/exec", json=exec_body, headers=mallory)
    statuses[(422, "/exec")] = answer.status_code
    assert 500 not in statuses.values(), statuses


@pytest.mark.parametrize("suffix", JSON_READS)
async def test_an_endless_json_answer_is_cut_at_the_cap_and_is_503(
    client: httpx.AsyncClient, repos: Repos, evil: FakeNode, suffix: str
) -> None:
    evil.answer = _endless(200, "application/json")
    answer = await client.get(f"/api/repos/acme/pub{suffix}")
    assert answer.status_code == 503, answer.text
    assert "storage node 'evil'" in answer.json()["error"]["message"]


async def test_an_exec_answer_past_its_cap_is_cut_at_the_cap(
    client: httpx.AsyncClient, repos: Repos, evil: FakeNode
) -> None:
    mallory = await member(client, ADMIN, "mallory")
    body = b"B" * (EXEC_CAP * 50)
    evil.answer = _hostile_headers(200, body, "application/octet-stream")
    answer = await client.post("/api/repos/acme/pub/exec", json={"args": ["log"]}, headers=mallory)
    assert answer.status_code == 200
    assert len(answer.content) <= EXEC_CAP


async def test_the_secret_reaches_no_log_and_no_client_when_a_node_fails(
    client: httpx.AsyncClient, repos: Repos, evil: FakeNode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mallory = await member(client, ADMIN, "mallory")

    def cut(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", "1000")
        handler.send_header(SIGNATURE, "evil")
        handler.end_headers()
        handler.wfile.write(b'{"sha": ')
        handler.close_connection = True  # before the 1000 bytes it promised

    answers = [
        _hostile_headers(403, INTERNAL.encode()),  # a node that echoes what it was sent
        _hostile_headers(500, b"boom"),
        cut,
    ]
    bodies = []
    for evil.answer in answers:
        for method, url, body in _forwarded_reads("acme/pub", PUBLIC_ROOT):
            if evil.answer is cut and not url.endswith(JSON_READS):
                continue  # a relayed answer cut short ends the HTTP exchange unfinished
            answer = await _call(client, method, url, body, headers=mallory)
            assert answer.status_code != 500, (url, answer.text)
            bodies.append(answer.text + json.dumps(dict(answer.headers)))
    assert INTERNAL not in "".join(bodies)
    logged = caplog.text + "".join(repr(record.__dict__) for record in caplog.records)
    assert INTERNAL not in logged


# Hostile input at the web process: refused before any call to the node ------------------


async def test_hostile_revisions_are_422_before_the_node_is_called(
    client: httpx.AsyncClient, repos: Repos, evil: FakeNode
) -> None:
    revs = ["%2e%2e", "HEAD..main", "--upload-pack=x", "-", "a%00b", "a%0ab", "main:go.mod"]
    revs += [":%2Ffix", "HEAD@%7B1%7D", "x" * 300, "refs%2Fupstream%2Fmain", "%2e"]
    for rev in revs:
        answer = await client.get(f"/api/repos/acme/pub/commits/{rev}")
        assert answer.status_code in (404, 422), (rev, answer.status_code, answer.text)
    for ref in ("--all", "HEAD..main", "a\x00b", "a\nb", "--output=/tmp/x"):
        answer = await client.get("/api/repos/acme/pub/commits", params={"ref": ref})
        assert answer.status_code == 422, (ref, answer.status_code, answer.text)
    for params in ({"page": "1e3"}, {"per_page": "-1"}, {"sort": "--x"}, {"state": "x"}):
        answer = await client.get("/api/repos/acme/pub/branches", params=params)
        assert answer.status_code == 422, (params, answer.status_code, answer.text)
    assert evil.seen == []


async def test_exec_arguments_that_are_options_are_422_before_the_node_is_called(
    client: httpx.AsyncClient, repos: Repos, evil: FakeNode
) -> None:
    mallory = await member(client, ADMIN, "mallory")
    for args in (
        ["--exec-path=/tmp"],
        ["-c", "core.pager=sh"],
        ["log", "--output=/tmp/x"],
        ["grep", "--no-index", "x"],
        ["archive", "--remote=http://127.0.0.1:9/x", "HEAD"],
        ["upload-pack", "."],
        ["--git-dir=/", "log"],
        ["log", "--ext-diff"],
        [],
    ):
        answer = await client.post("/api/repos/acme/pub/exec", json={"args": args}, headers=mallory)
        assert answer.status_code == 422, (args, answer.status_code, answer.text)
    assert evil.seen == []


async def test_hostile_goproxy_paths_stay_inside_the_module_or_are_404(
    client: httpx.AsyncClient, repos: Repos, evil: FakeNode
) -> None:
    paths = [
        f"{PUBLIC_ROOT}/%2e%2e/priv/@v/list",
        f"{PUBLIC_ROOT}/@v/%2e%2e/list",
        "example.com/Acme/pub/@v/list",
        "example.com/!acme/pub/@v/list",
        "example.com/!%41cme/pub/@v/list",
        f"{PUBLIC_ROOT}/@v/v1.0.0%00.info",
        f"{PUBLIC_ROOT}/@v/V1.0.0.info",
        f"{PUBLIC_ROOT}/@v/..info",
        "%2e%2e/%2e%2e/internal/repos/1/tags/@v/list",
    ]
    for path in paths:
        answer = await client.get(f"/goproxy/{path}")
        assert answer.status_code in (404, 410, 422), (path, answer.status_code, answer.text)
    for seen in evil.seen:
        assert seen.path.startswith(f"/internal/goproxy/{repos.public}/{PUBLIC_ROOT}/@v/"), seen


# The node's internal routes, asked directly ----------------------------------------------


@pytest.fixture
async def node_client(settings: Settings, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A gitserver-only process (the in-process app) on the same database."""
    node_settings = settings.model_copy(
        update={"data_dir": tmp_path / "node", "roles": ["gitserver"], "node_name": "gs-1"}
    )
    application: FastAPI = create_app(node_settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://node") as http:
            yield http


HOSTILE_IDS = ["-1", "1e3", "%EF%BC%90%EF%BC%91", "9" * 20, "%2e%2e", "1%00", "1%0a", " 1"]


def _internal_urls(key: str) -> list[tuple[str, str]]:
    return [
        ("GET", f"/internal/repos/{key}/info/refs?{UPLOAD_PACK}"),
        ("POST", f"/internal/repos/{key}/git-upload-pack"),
        ("GET", f"/internal/repos/{key}/commits/HEAD"),
        ("POST", f"/internal/repos/{key}/exec"),
        ("GET", f"/internal/goproxy/{key}/{PUBLIC_ROOT}/@v/list"),
        ("GET", f"/internal/repos/{key}/branches"),
        ("GET", f"/internal/repos/{key}/log"),
        ("GET", f"/internal/repos/{key}/tags"),
    ]


async def test_hostile_ids_are_403_without_the_secret_and_never_500_with_it(
    node_client: httpx.AsyncClient,
) -> None:
    wrong = [{}, {"Authorization": f"Bearer {INTERNAL[:-1]}"}, {"Authorization": INTERNAL}]
    wrong += [{"Authorization": f"Basic {INTERNAL}"}, {"Authorization": f"Bearer {INTERNAL}x"}]
    for raw in (b"Bearer \xff\xfe", b"Bearer " + INTERNAL.encode() + b"\xe9", b"\xff"):
        answer = await node_client.get("/internal/repos/1/tags", headers=[(b"authorization", raw)])
        assert answer.status_code == 403, (raw, answer.status_code)
    for key in [*HOSTILE_IDS, "1"]:
        for method, url in _internal_urls(key):
            for headers in wrong:
                refused = await node_client.request(method, url, headers=headers)
                assert refused.status_code == 403, (url, headers, refused.text)
                assert INTERNAL not in refused.text
            body = json.dumps({"args": ["log"], "user_id": 1, "max_bytes": 10})
            inside = await node_client.request(
                method,
                url,
                headers={**INSIDE, "content-type": "application/json"},
                content=body if url.endswith("/exec") else b"",
            )
            assert inside.status_code in (404, 415), (url, inside.status_code, inside.text)
            assert INTERNAL not in inside.text


async def test_hostile_internal_input_is_refused_in_words_never_500(
    node_client: httpx.AsyncClient,
) -> None:
    for rev in ("%2e%2e", "a..b", "--upload-pack=x", "a%00b", "a%0ab", "main:go.mod"):
        answer = await node_client.get(f"/internal/repos/1/commits/{rev}", headers=INSIDE)
        assert answer.status_code in (404, 422), (rev, answer.status_code, answer.text)
    for params in ({"page": "1e3"}, {"per_page": "-1"}, {"sort": "--x"}, {"page": "9" * 30}):
        answer = await node_client.get("/internal/repos/1/branches", params=params, headers=INSIDE)
        assert answer.status_code == 422, (params, answer.status_code, answer.text)
    for body in (b"not json", b"{}", b'{"args": ["log"], "user_id": 1, "max_bytes": 0}', DEEP):
        answer = await node_client.post("/internal/repos/1/exec", content=body, headers=INSIDE)
        assert answer.status_code == 400, (body[:20], answer.status_code, answer.text)
    for rest in (f"{PUBLIC_ROOT}/@v/..%2f..%2fx.info", f"{PUBLIC_ROOT}/%2e%2e/@v/list"):
        answer = await node_client.get(f"/internal/goproxy/1/{rest}", headers=INSIDE)
        assert answer.status_code == 404, (rest, answer.status_code, answer.text)


async def test_a_huge_body_to_an_internal_route_is_refused_without_being_held(
    node_client: httpx.AsyncClient,
) -> None:
    async def huge() -> AsyncIterator[bytes]:
        for _ in range(64):  # 64 MiB
            yield b"x" * (1 << 20)

    for url in ("/internal/repos/1/exec", "/internal/repos/1/git-upload-pack"):
        refused = await node_client.post(url, content=huge())
        assert refused.status_code in (403, 413), (url, refused.status_code)
        headers = {**INSIDE, "content-type": "application/x-git-upload-pack-request"}
        too_big = await node_client.post(url, content=huge(), headers=headers)
        # The exec body is bounded; a pack request is streamed, so no mirror is 404 unread.
        allowed = (404, 413) if url.endswith("git-upload-pack") else (413,)
        assert too_big.status_code in allowed, (url, too_big.status_code, too_big.text)


async def test_members_see_no_node_and_change_none(
    client: httpx.AsyncClient, repos: Repos, evil: FakeNode
) -> None:
    mallory = await member(client, ADMIN, "mallory")
    for headers in ({}, mallory, INSIDE):
        listed = await client.get("/api/nodes", headers=headers)
        assert listed.status_code in (401, 403), listed.text
        assert evil.url not in listed.text
        page = await client.get("/nodes", headers=headers)
        assert evil.url not in page.text
        for action in ("drain", "remove", "weight"):
            changed = await client.post(
                f"/nodes/evil/{action}", data={"weight": "100"}, headers=headers
            )
            assert changed.status_code in (303, 401, 403), (action, changed.status_code)
            if changed.status_code == 303:  # a page: to the login form, nothing changed
                assert changed.headers["location"].startswith("/login"), changed.headers
    nodes = await client.get("/api/nodes", headers=ADMIN)
    assert [(node["name"], node["state"]) for node in nodes.json()] == [("evil", "active")]


def _name_reads(name: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [read for read in _forwarded_reads(name, PUBLIC_ROOT) if "/goproxy/" not in read[1]]


async def test_hostile_names_are_never_500_nor_forwarded(
    client: httpx.AsyncClient, repos: Repos, evil: FakeNode
) -> None:
    for name in ("%2e%2e", "acme%2F%2e%2e%2Fpriv", "acme/pub%0a", "acme/pub%20", "-", "1"):
        for method, url, body in _name_reads(name):
            answer = await _call(client, method, url, body)
            assert answer.status_code in (401, 404, 422), (url, answer.status_code, answer.text)
    assert evil.seen == []


async def test_a_name_with_a_nul_is_404_never_500(
    client: httpx.AsyncClient,
    repos: Repos,
    evil: FakeNode,
) -> None:
    statuses = {}
    for method, url, body in _name_reads("acme/pub%00"):
        statuses[url] = (await _call(client, method, url, body)).status_code
    assert set(statuses.values()) <= {401, 404, 422}, statuses
    assert evil.seen == []


# The same climb against a real gitserver process, holding a real private mirror ---------


async def _seed_real(database_url: str, tmp_path: Path, sources: GitHttpServer) -> Repos:
    settings = Settings(
        data_dir=tmp_path / "seeder", database_url=database_url, secret_key=SECRET_KEY
    )
    svc = await Services.open(settings)
    try:
        ids = {}
        for short, visibility in (("pub", Visibility.public), ("priv", Visibility.private)):
            record = await svc.repositories.create(
                name=f"acme/{short}",
                owner_id=None,
                visibility=visibility,
                source_url=sources.url(f"{short}.git"),
            )
            root = PUBLIC_ROOT if short == "pub" else PRIVATE_ROOT
            await svc.repositories.set_go_import_root(operator(), record.name, root)
            ids[short] = record.id
        await svc.gitserver.enqueue(ids.values(), QueueReason.new)
    finally:
        await svc.close()
    return Repos(public=ids["pub"], private=ids["priv"])


async def test_a_goproxy_climb_reads_nothing_of_a_private_mirror_on_a_real_node(
    tmp_path: Path, postgres_url: str, serve: type[Server]
) -> None:
    served = tmp_path / "served"
    generate(served / "pub.git", Spec(commits=2, seed=1))
    generate(served / "priv.git", Spec(commits=3, seed=2))
    # A branch whose name happens to end as a GOPROXY request does.
    git("branch", "plans.zip", "main", cwd=served / "priv.git")
    secret_sha = git("rev-parse", "plans.zip", cwd=served / "priv.git").strip()
    env = node_env(postgres_url)
    admin = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(timeout=30) as http:
        with GitHttpServer(served) as sources:
            web = serve(tmp_path / "web", {**env, "REPODEPOT_ROLES": "web"})
            start_node(serve, tmp_path / "gs-a", "gs-a", env)

            async def active() -> None:
                listed = (await http.get(f"{web.url}/api/nodes", headers=admin)).json()
                assert [(n["name"], n["state"]) for n in listed] == [("gs-a", "active")]

            await eventually(active, timeout=30, interval=0.2)
            repos = await _seed_real(postgres_url, tmp_path, sources)

            async def cloned() -> None:
                for name in ("acme/pub", "acme/priv"):
                    entry = (await http.get(f"{web.url}/api/repos/{name}", headers=admin)).json()
                    assert entry["mirror"]["clone_status"] == "cloned", entry

            await eventually(cloned, timeout=45, interval=0.3)

        # Anyone may read acme/pub's module; nobody but the admin acme/priv.
        private = await http.get(f"{web.url}/api/repos/acme/priv/commits/plans.zip")
        assert private.status_code == 404
        up = "/".join(["%2e%2e"] * CLIMB)
        climb = f"/goproxy/{PUBLIC_ROOT}/@v/{up}/repos/{repos.private}/commits/plans.zip"
        answer = await http.get(web.url + climb)
        assert secret_sha not in answer.text
        assert answer.status_code == 404, answer.text
