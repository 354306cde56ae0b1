"""The access walls, attacked as an outsider would: with no token, a member's, an owner's.

`acme/closed` is a private repository (a Go module too) owned by `owner`; `acme/absent`
does not exist, and its name is as long as the hidden one's, so that two answers can be
compared byte for byte once each name is swapped for a placeholder. For every surface
(API, pages, smart HTTP, the Go proxy) and every odd spelling of a name (a `.git`
suffix, a trailing slash, `%2F`, upper case, `!`-escaped module paths, HEAD), a caller
who may not read `acme/closed` gets exactly the answer a missing name gets: status,
words and headers. Then the walls around who may read: credentials that do not check
out are never a quiet fall back to anonymous, grants and group members taken back close
every surface at once (and within a second in another process), an owner's rights end
at their own repository, and an upstream the caller may not read is not named.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from repodepot.accounts import operator
from repodepot.db.models import User, Visibility
from repodepot.services import Services
from tests.conftest import ADMIN_TOKEN
from tests.e2e.test_access_codehosts import synced
from tests.e2e.test_branch_status import wait_fetch
from tests.e2e.test_goproxy import widget_repo
from tests.support.eventually import eventually
from tests.support.fakehosts import FakeHost
from tests.support.members import member, user_id
from tests.support.seed import seed_mirror
from tests.support.websession import COOKIE, log_in, same_origin

HIDDEN, ABSENT = "acme/closed", "acme/absent"
MODULE, NO_MODULE = "example.com/Acme/Widget", "example.com/Acme/Wodget"
ESCAPED = {MODULE: "example.com/!acme/!widget", NO_MODULE: "example.com/!acme/!wodget"}
MINE = "reader/mine"  # the reader's own public repository
UPLOAD = {"Content-Type": "application/x-git-upload-pack-request"}
# What differs between any two answers, whatever they answer.
VOLATILE = {"date", "x-request-id", "server-timing"}
CSRF = re.compile(r'(?<=name="csrf-token" content=")[^"]+|(?<=name="csrf_token" value=")[^"]+')
Headers = dict[str, str]


@dataclass
class World:
    """The callers' headers, the hidden repository's HEAD, and the id of a grant on it."""

    owner: Headers
    reader: Headers
    granted: Headers
    reader_token: str
    granted_token: str
    head: str
    grant_id: int


def basic(token: str, user: str = "git") -> Headers:
    """What git sends with a token from a credential helper or `.netrc`."""
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()}


def token_of(headers: Headers) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


@pytest.fixture
async def world(
    tmp_path: Path,
    client: httpx.AsyncClient,
    admin_headers: Headers,
    app_services: Services,
) -> World:
    owner = await member(client, admin_headers, "owner")
    reader = await member(client, admin_headers, "reader")
    granted = await member(client, admin_headers, "granted")
    work = widget_repo(tmp_path / "work")
    await seed_mirror(
        app_services,
        HIDDEN,
        source=work.path,
        visibility=Visibility.private,
        owner_id=await user_id(app_services, "owner"),
    )
    await app_services.repositories.set_go_import_root(operator(), HIDDEN, MODULE)
    await seed_mirror(
        app_services,
        MINE,
        visibility=Visibility.public,
        owner_id=await user_id(app_services, "reader"),
    )
    await seed_mirror(app_services, "acme/inner", visibility=Visibility.internal)
    assert (
        await client.post("/api/groups", json={"name": "readers"}, headers=admin_headers)
    ).status_code == 201
    joined = await client.post(
        "/api/groups/readers/members", json={"user": "granted"}, headers=admin_headers
    )
    assert joined.status_code == 200, joined.text
    given = await client.post(
        f"/api/repos/{HIDDEN}/grants", json={"group": "readers"}, headers=owner
    )
    assert given.status_code == 201, given.text
    return World(
        owner=owner,
        reader=reader,
        granted=granted,
        reader_token=token_of(reader),
        granted_token=token_of(granted),
        head=work.git("rev-parse", "HEAD").strip(),
        grant_id=given.json()["id"],
    )


# Telling "hidden" from "missing" -------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One request, with `{name}` where a repository's name (or module path) goes."""

    method: str
    path: str
    body: dict[str, object] | None = None
    headers: tuple[tuple[str, str], ...] = ()
    read: bool = False  # an admin reads the hidden one: proof the probe reaches it

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


API = [
    Probe("GET", "/api/repos/{name}", read=True),
    Probe("HEAD", "/api/repos/{name}"),
    Probe("GET", "/api/repos/{name}/"),
    Probe("GET", "/api/repos/{name}.git"),
    Probe("GET", "/api/repos/{escaped}", read=True),
    Probe("GET", "/api/repos/{upper}"),
    Probe("GET", "/api/repos/x/../{name}"),
    Probe("GET", "/api/repos/{name}/commits", read=True),
    Probe("GET", "/api/repos/{name}/commits/HEAD", read=True),
    Probe("GET", "/api/repos/{name}/commits/main", read=True),
    Probe("GET", "/api/repos/{name}/tags", read=True),
    Probe("GET", "/api/repos/{name}/branches", read=True),
    Probe("GET", "/api/repos/{name}/sync-status", read=True),
    Probe("GET", "/api/repos/{name}/upstream"),
    Probe("GET", "/api/repos/{name}/go-modules", read=True),
    Probe("GET", "/api/repos/{name}/grants", read=True),
    Probe("POST", "/api/repos/{name}/exec", {"args": ["rev-parse", "HEAD"]}, read=True),
    Probe("POST", "/api/repos/{name}/grants", {"user": "reader"}),
    Probe("POST", "/api/repos/{name}/grants", {"group": "readers"}),
    Probe("DELETE", "/api/repos/{name}/grants/1"),
    Probe("PUT", "/api/repos/{name}/upstream", {"url": "http://127.0.0.1:9/x.git"}),
    Probe("PUT", "/api/repos/{name}/upstream", {"repository": MINE}),
    Probe("DELETE", "/api/repos/{name}/upstream"),
    Probe("POST", "/api/repos/{name}/upstream/fetch"),
    Probe("PUT", "/api/repos/{name}/credential", {"token": "t0k3n-value"}),
    Probe("DELETE", "/api/repos/{name}/credential"),
    Probe("POST", "/api/repos/{name}/update"),
    Probe("PATCH", "/api/repos/{name}", {"go_import_root": "example.com/x"}),
]
PAGES = [
    Probe("GET", "/repos/{name}", read=True),
    Probe("GET", "/repos/{name}?tab=branches", read=True),
    Probe("GET", "/repos/{name}?tab=upstream", read=True),
    Probe("GET", "/repos/{name}/"),
    Probe("GET", "/repos/{name}.git"),
    Probe("GET", "/repos/{escaped}", read=True),
    Probe("POST", "/repos/{name}/grants", {"kind": "user", "grantee": "reader"}),
    Probe("POST", "/repos/{name}/grants/1/remove"),
    Probe("POST", "/repos/{name}/update"),
]
GIT = [
    Probe("GET", "/git/{name}/info/refs?service=git-upload-pack", read=True),
    Probe("HEAD", "/git/{name}/info/refs?service=git-upload-pack"),
    Probe("GET", "/git/{name}.git/info/refs?service=git-upload-pack", read=True),
    Probe("GET", "/git/{name}/.git/info/refs?service=git-upload-pack"),
    Probe("GET", "/git/{escaped}/info/refs?service=git-upload-pack", read=True),
    Probe("GET", "/git/{upper}/info/refs?service=git-upload-pack"),
    Probe("GET", "/git/{name}/info/refs?service=git-receive-pack"),
    Probe("GET", "/git/{name}/info/refs"),
    Probe("GET", "/git/{name}/HEAD"),
    Probe("POST", "/git/{name}/git-upload-pack", headers=tuple(UPLOAD.items())),
    Probe("POST", "/git/{name}.git/git-upload-pack", headers=tuple(UPLOAD.items())),
    Probe("POST", "/git/{name}/git-receive-pack"),
]
GO = [
    Probe("GET", "/goproxy/{module}/@v/list", read=True),
    Probe("GET", "/goproxy/{module}/@v/v0.1.0.info", read=True),
    Probe("GET", "/goproxy/{module}/@v/v0.1.0.mod", read=True),
    Probe("GET", "/goproxy/{module}/@v/v0.1.0.zip", read=True),
    Probe("GET", "/goproxy/{module}/@v/main.info", read=True),
    Probe("GET", "/goproxy/{module}/@latest", read=True),
    Probe("HEAD", "/goproxy/{module}/@latest"),
    Probe("GET", "/goproxy/{module}/sub/@v/list"),
    Probe("GET", "/goproxy/{module}/v2/@v/list"),
    Probe("GET", "/goproxy/{lower}/@v/list"),
    Probe("GET", "/goproxy/{unescaped}/@v/list"),
]


def _fill(probe: Probe, name: str, module: str) -> str:
    return probe.path.format(
        name=name,
        escaped=name.replace("/", "%2F"),
        upper=name.upper(),
        module=ESCAPED[module],
        lower=module.lower(),
        unescaped=module,
    )


async def _send(
    client: httpx.AsyncClient, probe: Probe, path: str, caller: Headers
) -> httpx.Response:
    client.cookies.clear()  # each request as a new client's: no session from the last one
    headers = {**dict(probe.headers), **caller}
    if probe.body is None:
        return await client.request(probe.method, path, headers=headers)
    if path.startswith("/api/"):
        return await client.request(probe.method, path, json=probe.body, headers=headers)
    return await client.request(probe.method, path, data=probe.body, headers=headers)


def _shown(answer: httpx.Response, name: str, module: str) -> tuple[int, str, dict[str, str]]:
    """The answer with the name it was asked for, in each spelling, as a placeholder."""

    def plain(text: str) -> str:
        for spelling in (
            ESCAPED[module],
            module.lower(),
            module,
            name.replace("/", "%2F"),
            name.upper(),
            name,
        ):
            text = text.replace(spelling, "{NAME}")
        return CSRF.sub("csrf", text)

    headers = {key: plain(value) for key, value in answer.headers.items() if key not in VOLATILE}
    if "set-cookie" in headers:  # a new session's random CSRF token: only its attributes
        cookie, _, attributes = headers["set-cookie"].partition(";")
        headers["set-cookie"] = f"{cookie.partition('=')[0]}=...;{attributes}"
    return answer.status_code, plain(answer.text), headers


async def _compare(
    client: httpx.AsyncClient, probes: list[Probe], callers: dict[str, Headers]
) -> None:
    for probe in probes:
        for who, caller in callers.items():
            hidden = await _send(client, probe, _fill(probe, HIDDEN, MODULE), caller)
            absent = await _send(client, probe, _fill(probe, ABSENT, NO_MODULE), caller)
            assert hidden.status_code >= 300, (who, str(probe), hidden.text)
            assert _shown(hidden, HIDDEN, MODULE) == _shown(absent, ABSENT, NO_MODULE), (
                who,
                str(probe),
            )


async def _admin_reads(client: httpx.AsyncClient, probes: list[Probe]) -> None:
    """Each `read` probe answers the admin for the hidden one: it exists, and is reached."""
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    for probe in probes:
        if probe.read:
            answer = await _send(client, probe, _fill(probe, HIDDEN, MODULE), admin)
            assert answer.status_code == 200, (str(probe), answer.text)


async def test_the_api_answers_a_hidden_repository_as_a_missing_one(
    client: httpx.AsyncClient, world: World
) -> None:
    await _admin_reads(client, API)
    # A member who owns a repository of their own is no closer to another's.
    await _compare(client, API, {"anonymous": {}, "member": world.reader})


async def test_the_pages_answer_a_hidden_repository_as_a_missing_one(
    client: httpx.AsyncClient, world: World
) -> None:
    await _admin_reads(client, PAGES)
    await _compare(client, PAGES, {"anonymous": {}, "member": world.reader})


async def test_smart_http_answers_a_hidden_repository_as_a_missing_one(
    client: httpx.AsyncClient, world: World
) -> None:
    await _admin_reads(client, GIT)
    await _compare(
        client,
        GIT,
        {
            "anonymous": {},
            "member, bearer": world.reader,
            "member, basic": basic(world.reader_token),
            "member, token as user name": basic("", user=world.reader_token),
        },
    )


async def test_the_go_proxy_answers_a_hidden_module_as_a_missing_one(
    client: httpx.AsyncClient, world: World
) -> None:
    await _admin_reads(client, GO)
    await _compare(
        client,
        GO,
        {
            "anonymous": {},
            "member, bearer": world.reader,
            "member, basic": basic(world.reader_token),
        },
    )


# Credentials that do not check out -------------------------------------------------------

BAD = {
    "unknown bearer": {"Authorization": "Bearer not-a-token"},
    "empty bearer": {"Authorization": "Bearer "},
    "basic, wrong password": basic("not-a-token"),
    "basic, empty password and user": basic("", user=""),
    "garbage": {"Authorization": "Token abc"},
}


def _asks_to_authenticate(surface: str, answer: httpx.Response) -> None:
    if surface == "page":
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
        return
    assert answer.status_code == 401, (surface, answer.text)
    if surface == "api":
        assert answer.headers["www-authenticate"] == 'Bearer realm="repodepot"'
    if surface == "git":
        assert answer.headers["www-authenticate"] == 'Basic realm="repodepot"'


SURFACES = {
    "api": "/api/repos/{name}",
    "page": "/repos/{name}",
    "git": "/git/{name}/info/refs?service=git-upload-pack",
    "go": "/goproxy/{module}/@v/list",
}


def _urls(name: str, module: str) -> dict[str, str]:
    return {
        surface: path.format(name=name, module=ESCAPED.get(module, module))
        for surface, path in SURFACES.items()
    }


async def _answers(
    client: httpx.AsyncClient, name: str, module: str, caller: Headers
) -> dict[str, httpx.Response]:
    return {
        surface: await client.get(url, headers=caller)
        for surface, url in _urls(name, module).items()
    }


async def test_credentials_that_do_not_check_out_are_never_read_as_anonymous(
    client: httpx.AsyncClient, world: World
) -> None:
    # Even a public repository, which anonymous reads, refuses a bad credential: a typo in
    # a token must not quietly become "nobody", nor a way to probe which tokens are good.
    for who, caller in BAD.items():
        for name, module in ((MINE, MODULE), (HIDDEN, MODULE), (ABSENT, NO_MODULE)):
            for surface, answer in (await _answers(client, name, module, caller)).items():
                _asks_to_authenticate(surface, answer)
                assert "acme" not in answer.text.replace(name, ""), (who, surface)
    assert (await client.get(f"/api/repos/{MINE}")).status_code == 200


async def test_a_revoked_token_and_a_disabled_user_are_refused_at_once(
    client: httpx.AsyncClient, app_services: Services, world: World
) -> None:
    # Warm every cache with good reads first: what is kept must not outlive the change.
    for surface, answer in (await _everywhere(client, world.granted)).items():
        assert answer.status_code == 200, (surface, answer.text)
    (token,) = (await client.get("/api/tokens", headers=world.granted)).json()["items"]
    revoked = await client.delete(f"/api/tokens/{token['id']}", headers=world.granted)
    assert revoked.status_code == 200, revoked.text
    for surface, answer in (await _everywhere(client, world.granted)).items():
        _asks_to_authenticate(surface.partition(" ")[0], answer)

    for surface, answer in (await _everywhere(client, world.owner)).items():
        assert answer.status_code == 200, (surface, answer.text)
    async with app_services.sessions.begin() as session:
        await session.execute(
            update(User).where(User.name == "owner").values(disabled_at=datetime.now(UTC))
        )
    for surface, answer in (await _everywhere(client, world.owner)).items():
        _asks_to_authenticate(surface.partition(" ")[0], answer)


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


async def test_a_login_cookie_kept_after_logout_reads_nothing(
    app: FastAPI, browser: httpx.AsyncClient, world: World
) -> None:
    csrf = await log_in(browser, token_of(world.owner))
    assert (await browser.get(f"/repos/{HIDDEN}")).status_code == 200
    stolen = browser.cookies[COOKIE]
    out = await browser.post("/logout", data={"csrf_token": csrf}, headers=same_origin(browser))
    assert out.status_code == 303

    transport = httpx.ASGITransport(app=app)
    for first in ("page", "api"):
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", cookies={COOKIE: stolen}
        ) as thief:
            if first == "page":
                page = await thief.get(f"/repos/{HIDDEN}")
                assert page.status_code == 303 and page.headers["location"].startswith("/login")
            else:
                assert (await thief.get(f"/api/repos/{HIDDEN}")).status_code == 401
            # Once refused, the browser is anonymous again: public repositories only.
            assert (await thief.get(f"/api/repos/{HIDDEN}")).status_code == 404
            public = await thief.get("/api/repos")
            assert [item["name"] for item in public.json()["items"]] == [MINE]


# Who may change who reads ----------------------------------------------------------------


async def _grants(client: httpx.AsyncClient, name: str) -> list[dict[str, object]]:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    answer = await client.get(f"/api/repos/{name}/grants", headers=admin)
    assert answer.status_code == 200, answer.text
    grants: list[dict[str, object]] = answer.json()
    return grants


async def test_an_owner_s_rights_end_at_their_own_repository(
    client: httpx.AsyncClient, admin_headers: Headers, world: World
) -> None:
    before = await _grants(client, HIDDEN)
    # A grant of acme/closed, taken back through the reader's own repository.
    taken = await client.delete(f"/api/repos/{MINE}/grants/{world.grant_id}", headers=world.reader)
    assert taken.status_code == 404, taken.text
    assert taken.json()["error"]["message"] == f"no grant {world.grant_id} on {MINE!r}"
    page = await client.post(f"/repos/{MINE}/grants/{world.grant_id}/remove", headers=world.reader)
    assert page.status_code == 404, page.text
    assert await _grants(client, HIDDEN) == before
    assert (await client.get(f"/api/repos/{HIDDEN}", headers=world.granted)).status_code == 200

    # Reading a repository is not owning it: an internal one, and one granted.
    for name, caller in (("acme/inner", world.reader), (HIDDEN, world.granted)):
        for body in ({"user": "reader"}, {"user": "granted"}, {"group": "readers"}):
            given = await client.post(f"/api/repos/{name}/grants", json=body, headers=caller)
            assert given.status_code == 403, (name, body, given.text)
        listed = await client.get(f"/api/repos/{name}/grants", headers=caller)
        assert listed.status_code == 403 and "readers" not in listed.text
    assert await _grants(client, HIDDEN) == before
    assert await _grants(client, "acme/inner") == []

    # Groups and connections are an admin's, also to a repository's owner.
    changes: list[tuple[str, str, dict[str, str] | None]] = [
        ("POST", "/api/groups", {"name": "mine"}),
        ("POST", "/api/groups/readers/members", {"user": "reader"}),
        ("DELETE", "/api/groups/readers/members/granted", None),
        ("POST", "/api/codehosts/1/grants", {"group": "readers"}),
        ("GET", "/api/codehost-accounts", None),
    ]
    for method, path, change in changes:
        answer = await client.request(method, path, json=change, headers=world.owner)
        assert answer.status_code == 403, (path, answer.text)
    groups = (await client.get("/api/groups", headers=admin_headers)).json()
    assert [(group["name"], group["members"]) for group in groups] == [("readers", ["granted"])]


@pytest.mark.parametrize(
    "body",
    [
        {"user": "READER"},
        {"user": "reader "},
        {"user": " reader"},
        {"user": "r\u0435ader"},  # a Cyrillic e
        {"user": "\uff52eader"},  # a fullwidth r
        {"group": "Readers"},
        {"group": "readers\u200b"},
        {"group": "nobody"},
        {"user": "nobody"},
    ],
)
async def test_a_grantee_is_named_exactly_or_not_at_all(
    client: httpx.AsyncClient, world: World, body: dict[str, str]
) -> None:
    before = await _grants(client, HIDDEN)
    given = await client.post(f"/api/repos/{HIDDEN}/grants", json=body, headers=world.owner)
    assert given.status_code in (404, 422), given.text
    assert await _grants(client, HIDDEN) == before
    assert (await client.get(f"/api/repos/{HIDDEN}", headers=world.reader)).status_code == 404


async def test_an_account_is_linked_only_for_oneself(
    client: httpx.AsyncClient, world: World
) -> None:
    for body in ({"token": "t", "user": "owner"}, {"token": "t", "user_id": 1}):
        answer = await client.put("/api/user/codehost-accounts/1", json=body, headers=world.reader)
        assert answer.status_code == 422, answer.text
    assert (await client.get("/api/codehost-accounts", headers=world.reader)).status_code == 403
    own = await client.get("/api/user/codehost-accounts", headers=world.reader)
    assert own.status_code == 200 and own.json() == []


# The caches --------------------------------------------------------------------------------


async def _everywhere(client: httpx.AsyncClient, caller: Headers) -> dict[str, httpx.Response]:
    """The hidden repository on each surface with the caller's token, also for git and go
    as the basic-auth password (as `.netrc` and credential helpers send it)."""
    found = await _answers(client, HIDDEN, MODULE, caller)
    for surface in ("git", "go"):
        url = _urls(HIDDEN, MODULE)[surface]
        found[f"{surface} basic"] = await client.get(url, headers=basic(token_of(caller)))
    return found


async def _read_everywhere(client: httpx.AsyncClient, caller: Headers) -> set[int]:
    """The statuses of the hidden repository on every surface."""
    return {answer.status_code for answer in (await _everywhere(client, caller)).values()}


async def test_taking_access_back_closes_every_surface_at_once(
    client: httpx.AsyncClient, admin_headers: Headers, world: World
) -> None:
    granted = world.granted
    assert await _read_everywhere(client, granted) == {200}

    out = await client.delete("/api/groups/readers/members/granted", headers=admin_headers)
    assert out.status_code == 204
    assert await _read_everywhere(client, granted) == {404}

    given = await client.post(
        f"/api/repos/{HIDDEN}/grants", json={"user": "granted"}, headers=world.owner
    )
    assert given.status_code == 201
    assert await _read_everywhere(client, granted) == {200}
    gone = await client.delete(
        f"/api/repos/{HIDDEN}/grants/{given.json()['id']}", headers=world.owner
    )
    assert gone.status_code == 204
    assert await _read_everywhere(client, granted) == {404}


async def test_access_taken_back_in_another_process_closes_here_too(
    client: httpx.AsyncClient, services: Services, world: World
) -> None:
    # `services` is a second process's view of the same database (the CLI, another server).
    granted = world.granted
    assert await _read_everywhere(client, granted) == {200}

    await services.access.remove_member(operator(), "readers", "granted")

    async def closed() -> None:
        assert await _read_everywhere(client, granted) == {404}

    await eventually(closed, timeout=10)


# An upstream the caller may not read ------------------------------------------------------


async def test_an_upstream_the_reader_may_not_read_is_not_named_anywhere(
    client: httpx.AsyncClient, admin_headers: Headers, world: World
) -> None:
    # The reader owns MINE but cannot point it at the hidden repository: the same 404.
    hidden = await client.put(
        f"/api/repos/{MINE}/upstream", json={"repository": HIDDEN}, headers=world.reader
    )
    absent = await client.put(
        f"/api/repos/{MINE}/upstream", json={"repository": ABSENT}, headers=world.reader
    )
    assert hidden.status_code == absent.status_code == 404
    assert hidden.text.replace(HIDDEN, "?") == absent.text.replace(ABSENT, "?")

    # An admin does; the counts against it show, nothing of what it is.
    put = await client.put(
        f"/api/repos/{MINE}/upstream",
        json={"repository": HIDDEN, "branches": ["main"]},
        headers=admin_headers,
    )
    assert put.status_code == 200, put.text
    seen = await wait_fetch(client, MINE, admin_headers, lambda status: status["branches"] or None)
    assert seen["upstream"]["repository"] == HIDDEN
    assert seen["branches"][0]["upstream_sha"] == world.head

    for who, caller in (("anonymous", {}), ("member", world.reader)):
        status = (await client.get(f"/api/repos/{MINE}/sync-status", headers=caller)).json()
        assert status["upstream"]["repository"] is None, who
        assert [row["upstream_sha"] for row in status["branches"]] == [None], who
        upstream = await client.get(f"/api/repos/{MINE}/upstream", headers=caller)
        assert upstream.status_code == 200 and upstream.json()["repository"] is None
        everywhere = await client.get("/api/sync-status", headers=caller)
        assert [row["upstream_sha"] for row in everywhere.json()["items"]] == [None], who
        for tab in ("overview", "branches", "upstream"):
            page = await client.get(f"/repos/{MINE}?tab={tab}", headers=caller)
            assert page.status_code == 200, (who, tab)
            assert HIDDEN not in page.text and world.head not in page.text, (who, tab)
            assert world.head[:7] not in page.text, (who, tab)
        for answer in (
            await client.get(f"/api/repos/{MINE}/branches", headers=caller),
            await client.get(f"/api/repos/{MINE}", headers=caller),
            await client.get("/api/repos", headers=caller),
            upstream,
        ):
            assert HIDDEN not in answer.text and world.head not in answer.text, who


# A repository closed on the host, or by its connection -------------------------------------


async def test_a_repository_closed_on_the_host_or_by_its_connection_closes_at_once(
    client: httpx.AsyncClient, admin_headers: Headers
) -> None:
    dev = await member(client, admin_headers, "dev")
    with FakeHost("github") as host:
        lib = host.add("acme", "lib")
        config = {
            "url": host.url,
            "token": host.token,
            "repositoryPathPattern": "{nameWithOwner}",
            "repositoryQuery": ["affiliated"],
            "privateVisibility": "internal",
        }
        created = await client.post(
            "/api/codehosts",
            json={"kind": "github", "name": "company", "config": config},
            headers=admin_headers,
        )
        assert created.status_code == 201, created.text
        host_id = created.json()["id"]
        assert await synced(client, admin_headers, host_id) == {"acme/lib": "public"}

        async def reads() -> dict[str, int]:
            return {
                who: (await client.get("/api/repos/acme/lib", headers=caller)).status_code
                for who, caller in (("anonymous", {}), ("member", dev))
            }

        async def lists() -> dict[str, list[str]]:
            return {
                who: [
                    item["name"]
                    for item in (await client.get("/api/repos", headers=caller)).json()["items"]
                ]
                for who, caller in (("anonymous", {}), ("member", dev))
            }

        # Every lookup warm with "public" first.
        assert await reads() == {"anonymous": 200, "member": 200}
        assert await lists() == {"anonymous": ["acme/lib"], "member": ["acme/lib"]}
        assert (await client.get("/repos/acme/lib")).status_code == 200

        lib.private = True  # made private on the host: the connection makes it internal
        host.repos.version += 1
        assert await synced(client, admin_headers, host_id) == {"acme/lib": "internal"}
        assert await reads() == {"anonymous": 404, "member": 200}
        assert await lists() == {"anonymous": [], "member": ["acme/lib"]}
        assert (await client.get("/repos/acme/lib")).status_code == 404

        # The admin closes the connection's private repositories to those granted.
        closed = {key: value for key, value in config.items() if key != "token"}
        patched = await client.patch(
            f"/api/codehosts/{host_id}",
            json={"config": {**closed, "privateVisibility": "private"}},
            headers=admin_headers,
        )
        assert patched.status_code == 200, patched.text
        assert await synced(client, admin_headers, host_id) == {"acme/lib": "private"}
        assert await reads() == {"anonymous": 404, "member": 404}
        assert await lists() == {"anonymous": [], "member": []}
        assert (await client.get("/repos/acme/lib", headers=dev)).status_code == 404
