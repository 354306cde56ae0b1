"""Fake GitHub, GitLab and Gitea REST APIs on 127.0.0.1, following their public documentation.

Only what repository listing uses, answered the way each host documents it:

- GitHub (REST v3, under `/api/v3` as GitHub Enterprise serves it): `GET /user/repos`,
  `/orgs/{org}/repos`, `/repos/{owner}/{repo}`, `/search/repositories` (`{"items": …}`);
  list items say `fork` but carry no `parent`: only "Get a repository" has the
  fork's `parent` and `source` (the root of its network), as full repositories;
  `per_page` up to 100, `page`; `Link` with `rel="next"`/`"last"`; `x-ratelimit-limit`,
  `-remaining`, `-used`, `-reset` (UTC epoch seconds), `-resource` on every answer; over
  the limit: 403 `{"message": "API rate limit exceeded …"}` with remaining 0; a
  secondary limit: 403 with `retry-after`; `ETag` and 304 for a matching
  `If-None-Match` (which does not count against the limit); 401 `Bad credentials`.
- GitLab (REST v4): `GET /projects`, `/groups/{id}/projects`, `/projects/{id}` (ids or
  URL-encoded paths); a fork has `forked_from_project` (its parent) in lists too;
  `per_page` up to 100; `Link`, `x-next-page`, `x-page`, `x-per-page`, `x-prev-page`,
  `x-total`, `x-total-pages`; `PRIVATE-TOKEN` or Bearer;
  429 with `retry-after` and `ratelimit-*` headers; 401 `{"message": "401 Unauthorized"}`.
- Gitea (API v1): `GET /user/repos`, `/orgs/{org}/repos`, `/repos/search`
  (`{"ok": true, "data": …}`), `/repos/{owner}/{repo}`; `parent` is the fork's parent
  repository (null for others) in lists and single answers alike; `limit` up to 50, `page`;
  `Link` and `x-total-count`; `Authorization: token …`; 401.

Users with their own tokens (permission sync): `user(name)` returns a new user's token,
`allow(token, *ids, level=30, affiliation="collaborator")` / `disallow` set what it
may read, `revoke(token)` makes the host answer it 401 as above. To a user's token,
GitHub's `/user/repos` lists the allowed repositories whose affiliation is in
`affiliation` (owner, collaborator, organization_member; all three by default), never
a public one without an allowance; GitLab's `/projects` with `min_access_level` lists
those allowed at that level or above (Guest 10, Reporter 20, Developer 30), without it
also the public ones; Gitea's `/user/repos` the allowed ones; other lists, the allowed
and the public ones. The connection's own token still sees everything.

Faults are queued per host: `fail_next(status)`, `rate_limit_next(reset_in)`,
`secondary_limit_next(retry_after)`, `redirect_next(location)`. A host listens on any
loopback `address` (127.0.0.2 plays "another host"), records every request's headers
(`seen`), and can put its next-page links on another origin (`link_base`).

Hostile answers, for a host that is itself the attacker, are queued the same way:
`huge_next(size)` (a page of `size` bytes, streamed; `sent` counts what went out),
`drip_next(interval)` (one byte every `interval` seconds), `raw_next(body)` (a page
that is not what the API documents). `endless` makes every page link to the next,
each with new repositories (or the same ones again, with `endless="same"`); a
repository's `clone_url` may name any URL.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

Kind = Literal["github", "gitlab", "gitea"]
PREFIX = {"github": "/api/v3", "gitlab": "/api/v4", "gitea": "/api/v1"}
MAX_PAGE = {"github": 100, "gitlab": 100, "gitea": 50}
DEFAULT_PAGE = {"github": 30, "gitlab": 20, "gitea": 30}
# A connection's config keys that list every repository its token is affiliated with.
LISTING: dict[Kind, dict[str, list[str]]] = {
    "github": {"repositoryQuery": ["affiliated"]},
    "gitlab": {"projectQuery": ["?membership=true"]},
    "gitea": {"repositoryQuery": ["affiliated"]},
}


@dataclass
class FakeRepo:
    """A repository on the fake host; `id` is the host's own and survives renames."""

    id: int
    owner: str
    name: str
    private: bool = False
    internal: bool = False  # every signed-in user of the host may read it
    fork: bool = False
    archived: bool = False
    description: str = ""
    default_branch: str = "main"
    clone_url: str | None = None  # else the host's clone base
    parent: int | None = None  # the id of the repository this one is a fork of

    def __post_init__(self) -> None:
        self.fork = self.fork or self.parent is not None

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class _Repos(dict[int, FakeRepo]):
    """The host's repositories; every change bumps `version`, which keys the page cache."""

    version = 0

    def __setitem__(self, key: int, value: FakeRepo) -> None:
        self.version += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: int) -> None:
        self.version += 1
        super().__delitem__(key)

    def clear(self) -> None:
        self.version += 1
        super().clear()


@dataclass
class _Allowance:
    """What a user may do on a repository: GitLab's access level, GitHub's affiliation."""

    level: int = 30
    affiliation: str = "collaborator"


@dataclass
class _Fault:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


class FakeHost:
    """One fake code host of `kind`, with `repos` by id, served on a free port."""

    def __init__(
        self,
        kind: Kind,
        *,
        token: str = "fake-token-0123",
        rate_limit: int = 5000,
        latency: float = 0.0,
        clone_base: str | None = None,
        address: str = "127.0.0.1",
    ):
        """`latency`: seconds added to every API answer, 200 and 304 alike (a remote host).

        `clone_base`: the git server behind this host (a loopback `GitHttpServer`): as
        GitHub Enterprise, GitLab and Gitea serve API and clones on one origin, clone
        URLs are on this fake's url and every request outside the API is passed to it.
        `address`: the loopback address to listen on.
        """
        self.kind = kind
        self.latency = latency
        self.token = token
        self.repos = _Repos()
        # By (token, path): users' listings differ.
        self._pages: dict[tuple[str, str], tuple[int, tuple[int, dict[str, str], Any], str]] = {}
        self.users: dict[str, dict[int, _Allowance]] = {}  # token: allowances by repo id
        self.rate_limit = rate_limit
        self.used = 0
        self.reset_at = int(time.time()) + 3600
        self.requests: list[tuple[str, int]] = []
        self.seen: list[tuple[str, dict[str, str]]] = []  # (path, headers) of every request
        self._faults: deque[_Fault] = deque()
        self._hostile: deque[Callable[[BaseHTTPRequestHandler], None]] = deque()
        self.sent = 0  # bytes of hostile bodies that went out
        self.endless: Literal["new", "same"] | None = None
        self._lock = threading.Lock()
        self._next_id = 1000
        self._server = ThreadingHTTPServer((address, 0), _handler(self))
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://{address}:{self.port}"
        self.backend = clone_base.rstrip("/") if clone_base else None
        self.clone_base = self.url
        self.link_base = self.url  # where `Link` and next-page URLs point
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHost:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # The host's state.
    def add(self, owner: str, name: str, **fields: Any) -> FakeRepo:
        with self._lock:
            self._next_id += 1
            repo = FakeRepo(self._next_id, owner, name, **fields)
            self.repos[repo.id] = repo
        return repo

    def add_many(self, count: int, owner: str = "acme", prefix: str = "repo") -> list[FakeRepo]:
        return [self.add(owner, f"{prefix}-{index:05d}") for index in range(count)]

    def rename(self, repo_id: int, name: str, owner: str | None = None) -> None:
        repo = self.repos[repo_id]
        repo.name = name
        repo.owner = owner or repo.owner
        self.repos.version += 1

    def delete(self, repo_id: int) -> None:
        del self.repos[repo_id]

    # Users with their own tokens; every change bumps `repos.version`, as the host's ETags do.
    def user(self, name: str) -> str:
        """A new user on the host, reading nothing yet; returns their token."""
        token = f"user-{name}-{secrets.token_hex(8)}"
        with self._lock:
            self.users[token] = {}
        return token

    def allow(
        self, token: str, *repo_ids: int, level: int = 30, affiliation: str = "collaborator"
    ) -> None:
        with self._lock:
            for repo_id in repo_ids:
                self.users[token][repo_id] = _Allowance(level, affiliation)
            self.repos.version += 1

    def disallow(self, token: str, *repo_ids: int) -> None:
        with self._lock:
            for repo_id in repo_ids:
                self.users[token].pop(repo_id, None)
            self.repos.version += 1

    def revoke(self, token: str) -> None:
        """The token stops working: the host answers it 401."""
        with self._lock:
            del self.users[token]

    # Faults, answered before anything else, in order.
    def fail_next(self, status: int = 500, times: int = 1) -> None:
        for _ in range(times):
            self._faults.append(_Fault(status, body={"message": "Server Error"}))

    def rate_limit_next(self, reset_in: float = 1.0) -> None:
        """A primary rate limit: 403 with remaining 0 and a reset time."""
        reset = math.ceil(time.time() + reset_in)
        if self.kind == "gitlab":
            headers = {"retry-after": str(math.ceil(reset_in)), "ratelimit-remaining": "0"}
            headers["ratelimit-reset"] = str(reset)
            self._faults.append(_Fault(429, headers, {"message": "Retry later"}))
            return
        headers = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)}
        message = "API rate limit exceeded for user ID 1."
        self._faults.append(_Fault(403, headers, {"message": message}))

    def redirect_next(self, location: str, status: int = 302) -> None:
        """A redirect to `location` (after the token was checked)."""
        self._faults.append(_Fault(status, {"location": location}))

    # Hostile answers: written whole by the host, before anything else, in order.
    def huge_next(self, size: int, *, gzipped: bool = False) -> None:
        """A 200 whose body is a JSON array of `size` bytes, streamed without a length.

        Gzipped, it is a bomb: a few kilobytes that inflate to `size`.
        """
        step = 1 << 16
        filler = b'"' + b"x" * (step - 2) + b'",'

        def body() -> Any:
            yield b"["
            for _ in range(size // step):
                yield filler
            yield b"0]"

        def answer(handler: BaseHTTPRequestHandler) -> None:
            headers = {"content-type": "application/json"}
            chunks = body()
            if gzipped:
                headers["content-encoding"] = "gzip"
                chunks = iter([gzip.compress(b"".join(body()), 9)])
            self._stream(handler, headers, chunks)

        self._hostile.append(answer)

    def drip_next(self, interval: float, size: int = 100) -> None:
        """A 200, chunked, one byte of `size` every `interval` seconds."""

        def answer(handler: BaseHTTPRequestHandler) -> None:
            def body() -> Any:
                for _ in range(size):
                    yield b" "
                    time.sleep(interval)

            self._stream(handler, {"content-type": "application/json"}, body())

        self._hostile.append(answer)

    def raw_next(self, body: bytes) -> None:
        """A 200 with `body` as it is."""
        self._hostile.append(
            lambda handler: self._stream(handler, {"content-type": "application/json"}, [body])
        )

    def _stream(self, handler: BaseHTTPRequestHandler, headers: dict[str, str], body: Any) -> None:
        """Send `body`'s chunks chunked, counting `sent`, until the client hangs up."""
        handler.send_response(200)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("transfer-encoding", "chunked")
        handler.end_headers()
        try:
            for chunk in body:
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                handler.wfile.flush()
                with self._lock:
                    self.sent += len(chunk)
            handler.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client stopped reading: what a bounded client does
            handler.close_connection = True

    def saw_token(self) -> bool:
        """Whether any request carried this host's token, in any header."""
        return any(self.token in value for _, headers in self.seen for value in headers.values())

    def secondary_limit_next(self, retry_after: int = 1) -> None:
        """GitHub's secondary rate limit: 403 with `retry-after`."""
        message = "You have exceeded a secondary rate limit. Please wait a few minutes."
        self._faults.append(_Fault(403, {"retry-after": str(retry_after)}, {"message": message}))

    def count(self, path_prefix: str, status: int | None = None) -> int:
        return sum(
            1
            for path, code in self.requests
            if path.startswith(path_prefix) and (status is None or code == status)
        )

    # Serialization, per the hosts' documented fields.
    def as_json(self, repo: FakeRepo, *, single: bool = False) -> dict[str, Any]:
        """`repo` as a list item; `single`: as the one-repository endpoint answers it."""
        parent = self.repos.get(repo.parent) if repo.parent is not None else None
        if self.kind == "github":
            body = self._github_json(repo)
            if single and parent is not None:
                source = parent
                while source.parent is not None and source.parent in self.repos:
                    source = self.repos[source.parent]
                body["parent"] = self._github_json(parent)
                body["source"] = self._github_json(source)
            return body
        if self.kind == "gitlab":
            return self._gitlab_json(repo, parent)
        return self._gitea_json(repo, parent)

    def _github_json(self, repo: FakeRepo) -> dict[str, Any]:
        return {
            "id": repo.id,
            "node_id": f"R_kgDO{repo.id:08d}",
            "name": repo.name,
            "full_name": repo.full_name,
            "owner": {"login": repo.owner, "id": 1, "type": "Organization"},
            # GitHub Enterprise's internal repositories are `private` with visibility internal.
            "private": repo.private or repo.internal,
            "visibility": _visibility(repo),
            "html_url": f"{self.url}/{repo.full_name}",
            "clone_url": repo.clone_url or f"{self.clone_base}/{repo.full_name}.git",
            "description": repo.description or None,
            "fork": repo.fork,
            "archived": repo.archived,
            "default_branch": repo.default_branch,
        }

    def _gitlab_json(self, repo: FakeRepo, parent: FakeRepo | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": repo.id,
            "name": repo.name,
            "path": repo.name,
            "path_with_namespace": repo.full_name,
            "namespace": {"full_path": repo.owner},
            "http_url_to_repo": repo.clone_url or f"{self.clone_base}/{repo.full_name}.git",
            "web_url": f"{self.url}/{repo.full_name}",
            "description": repo.description or None,
            "visibility": _visibility(repo),
            "archived": repo.archived,
            "default_branch": repo.default_branch,
        }
        if parent is not None:
            body["forked_from_project"] = self._gitlab_json(parent, None)
        elif repo.fork:  # forked from a project that is not on this fake
            body["forked_from_project"] = {"id": 1}
        return body

    def _gitea_json(self, repo: FakeRepo, parent: FakeRepo | None) -> dict[str, Any]:
        return {
            "id": repo.id,
            "name": repo.name,
            "full_name": repo.full_name,
            "owner": {"login": repo.owner},
            "private": repo.private,
            "internal": repo.internal,
            "clone_url": repo.clone_url or f"{self.clone_base}/{repo.full_name}.git",
            "html_url": f"{self.url}/{repo.full_name}",
            "description": repo.description,
            "fork": repo.fork,
            "parent": None if parent is None else self._gitea_json(parent, None),
            "archived": repo.archived,
            "default_branch": repo.default_branch,
        }


def _visibility(repo: FakeRepo) -> str:
    """GitHub's and GitLab's `visibility`: internal, private or public."""
    return "internal" if repo.internal else "private" if repo.private else "public"


def _handler(host: FakeHost) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # else keep-alive answers wait on delayed ACKs

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            """`/_fake/rename?every=N&suffix=S` (and `&undo=1`): change a served host's state."""
            if self._proxied():
                return
            parts = urlsplit(self.path)
            query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
            if parts.path != "/_fake/rename":
                self.send_error(404)
                return
            suffix, every = query["suffix"], int(query["every"])
            for repo in list(host.repos.values())[::every]:
                name = repo.name.removesuffix(suffix) if query.get("undo") else repo.name + suffix
                host.rename(repo.id, name)
            self.send_response(204)
            self.send_header("content-length", "0")
            self.end_headers()

        def _proxied(self) -> bool:
            """Pass a git request to the git server behind the host; whether it was one."""
            if host.backend is None or self.path.startswith((PREFIX[host.kind], "/_fake/")):
                return False
            length = int(self.headers.get("content-length") or 0)
            chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
            body = self._dechunked() if chunked else self.rfile.read(length)
            target = urlsplit(host.backend)
            headers = {
                name: value
                for name, value in self.headers.items()
                if name.lower() not in ("host", "content-length", "transfer-encoding")
            }
            upstream = http.client.HTTPConnection(target.netloc, timeout=60)
            try:
                upstream.request(self.command, target.path + self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                payload = answer.read()
            finally:
                upstream.close()
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return True

        def _dechunked(self) -> bytes:
            body = bytearray()
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            self.rfile.readline()
            return bytes(body)

        def do_GET(self) -> None:
            if self._proxied():
                return
            parts = urlsplit(self.path)
            query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
            with host._lock:
                host.seen.append((self.path, dict(self.headers.items())))
                hostile = host._hostile.popleft() if host._hostile else None
            if hostile is not None:
                with host._lock:
                    host.requests.append((parts.path, 200))
                hostile(self)
                return
            status, headers, body = self._answer(parts.path, query)
            if host.latency:
                time.sleep(host.latency)
            payload = b"" if body is None else json.dumps(body).encode()
            with host._lock:
                host.requests.append((parts.path, status))
            self.send_response(status)
            headers.setdefault("content-type", "application/json; charset=utf-8")
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def _authorized(self) -> bool:
            token = self._token()
            return token == host.token or token in host.users

        def _token(self) -> str:
            given = self.headers.get("authorization", "")
            if host.kind == "gitlab":
                token = self.headers.get("private-token") or given.removeprefix("Bearer ")
            elif host.kind == "gitea":
                token = given.removeprefix("token ")
            else:
                token = given.removeprefix("Bearer ").removeprefix("token ")
            return token

        def _answer(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
            prefix = PREFIX[host.kind]
            if not path.startswith(prefix + "/"):
                return 404, {}, {"message": "Not Found"}
            if not self._authorized():
                message = {"github": "Bad credentials", "gitlab": "401 Unauthorized"}
                return 401, {}, {"message": message.get(host.kind, "invalid token")}
            if host._faults:
                fault = host._faults.popleft()
                return fault.status, dict(fault.headers), fault.body
            # A real host answers a 304 without building the page; so does this one.
            key = (self._token(), self.path)
            cached = host._pages.get(key)
            if cached is not None and cached[0] == host.repos.version:
                _, (status, headers, body), etag = cached
                headers = dict(headers)
            else:
                found = self._route(path[len(prefix) :], query, host.users.get(key[0]))
                if found is None:
                    return 404, {}, {"message": "Not Found"}
                status, headers, body = found
                etag = '"' + hashlib.sha256(json.dumps(body).encode()).hexdigest()[:32] + '"'
                host._pages[key] = (host.repos.version, (status, dict(headers), body), etag)
            headers["etag"] = etag
            if self.headers.get("if-none-match") == etag:
                # GitHub: a 304 with authorization does not count against the limit.
                return 304, {**headers, **self._quota(spend=False)}, None
            return status, {**headers, **self._quota(spend=True)}, body

        def _quota(self, *, spend: bool) -> dict[str, str]:
            if spend:
                host.used += 1
            remaining = max(0, host.rate_limit - host.used)
            if host.kind == "github":
                return {
                    "x-ratelimit-limit": str(host.rate_limit),
                    "x-ratelimit-remaining": str(remaining),
                    "x-ratelimit-used": str(host.used),
                    "x-ratelimit-reset": str(host.reset_at),
                    "x-ratelimit-resource": "core",
                }
            if host.kind == "gitlab":
                return {
                    "ratelimit-limit": str(host.rate_limit),
                    "ratelimit-remaining": str(remaining),
                    "ratelimit-reset": str(host.reset_at),
                }
            return {}

        def _route(
            self, route: str, query: dict[str, str], user: dict[int, _Allowance] | None
        ) -> tuple[int, dict[str, str], Any] | None:
            """`user`: the allowances of a user's token; None for the connection's own."""
            segments = [unquote(part) for part in route.strip("/").split("/")]
            repos = sorted(host.repos.values(), key=lambda repo: repo.id)
            if user is not None:
                mine = ["projects"] if host.kind == "gitlab" else ["user", "repos"]
                if segments == mine and (host.kind != "gitlab" or "min_access_level" in query):
                    return self._page(self._own(repos, user, query), query)
                repos = [r for r in repos if r.id in user or not r.private]
            if host.kind == "github":
                if segments == ["user", "repos"]:
                    return self._page(repos, query)
                if segments[:1] == ["orgs"] and segments[2:] == ["repos"]:
                    return self._page([r for r in repos if r.owner == segments[1]], query)
                if segments == ["repositories"]:  # all public repositories (paged by Link)
                    return self._page([r for r in repos if not r.private], query)
                if segments == ["search", "repositories"]:
                    term = query.get("q", "")
                    matching = [r for r in repos if term in r.full_name]
                    return self._page(matching, query, wrap="items", total=len(matching))
                if segments[:1] == ["repos"] and len(segments) == 3:
                    return self._one(repos, f"{segments[1]}/{segments[2]}")
            if host.kind == "gitlab":
                if segments == ["projects"]:
                    return self._page(repos, query)
                if segments[:1] == ["groups"] and segments[2:] == ["projects"]:
                    group = segments[1]
                    inside = [
                        r for r in repos if r.owner == group or r.owner.startswith(group + "/")
                    ]
                    return self._page(inside, query)
                if segments[:1] == ["projects"] and len(segments) == 2:
                    key = segments[1]
                    if key.isdigit():
                        repo = host.repos.get(int(key))
                        return (200, {}, host.as_json(repo, single=True)) if repo else None
                    return self._one(repos, key)
            if host.kind == "gitea":
                if segments == ["user", "repos"]:
                    return self._page(repos, query)
                if segments[:1] == ["orgs"] and segments[2:] == ["repos"]:
                    return self._page([r for r in repos if r.owner == segments[1]], query)
                if segments == ["repos", "search"]:
                    term = query.get("q", "")
                    matching = [r for r in repos if term in r.full_name]
                    return self._page(matching, query, wrap="data", total=len(matching))
                if segments[:1] == ["repos"] and len(segments) == 3:
                    return self._one(repos, f"{segments[1]}/{segments[2]}")
            return None

        def _own(
            self, repos: list[FakeRepo], user: dict[int, _Allowance], query: dict[str, str]
        ) -> list[FakeRepo]:
            """What a user's own listing holds: GitHub by affiliation, GitLab by level."""
            affiliations = query.get("affiliation", "owner,collaborator,organization_member")
            least = int(query.get("min_access_level", "0"))
            return [
                repo
                for repo in repos
                if repo.id in user
                and user[repo.id].level >= least
                and (host.kind != "github" or user[repo.id].affiliation in affiliations.split(","))
            ]

        def _one(
            self, repos: list[FakeRepo], full_name: str
        ) -> tuple[int, dict[str, str], Any] | None:
            for repo in repos:
                if repo.full_name.lower() == full_name.lower():
                    return 200, {}, host.as_json(repo, single=True)
            return None

        def _page(
            self,
            repos: list[FakeRepo],
            query: dict[str, str],
            *,
            wrap: str | None = None,
            total: int = 0,
        ) -> tuple[int, dict[str, str], Any]:
            size_key = "limit" if host.kind == "gitea" else "per_page"
            size = min(int(query.get(size_key, DEFAULT_PAGE[host.kind])), MAX_PAGE[host.kind])
            page = max(1, int(query.get("page", "1")))
            pages = max(1, math.ceil(len(repos) / size))
            items = [host.as_json(r) for r in repos[(page - 1) * size : page * size]]
            if host.endless is not None:  # always one more page
                pages = page + 1
                first = 1 if host.endless == "same" else page * size
                invented = [
                    FakeRepo(first + n, "endless", f"repo-{first + n}") for n in range(size)
                ]
                items = [host.as_json(r) for r in invented]
            headers: dict[str, str] = {}
            base = f"{host.link_base}{urlsplit(self.path).path}"

            def link(number: int) -> str:
                return base + "?" + urlencode({**query, "page": str(number)})

            rels = []
            if page < pages:
                rels.append(f'<{link(page + 1)}>; rel="next"')
                rels.append(f'<{link(pages)}>; rel="last"')
            if page > 1:
                rels.append(f'<{link(1)}>; rel="first"')
                rels.append(f'<{link(page - 1)}>; rel="prev"')
            if rels:
                headers["link"] = ", ".join(rels)
            if host.kind == "gitlab":
                headers.update(
                    {
                        "x-page": str(page),
                        "x-per-page": str(size),
                        "x-next-page": str(page + 1) if page < pages else "",
                        "x-prev-page": str(page - 1) if page > 1 else "",
                        "x-total": str(len(repos)),
                        "x-total-pages": str(pages),
                    }
                )
            if host.kind == "gitea":
                headers["x-total-count"] = str(len(repos))
            if wrap == "items":
                return (
                    200,
                    headers,
                    {"total_count": total, "incomplete_results": False, "items": items},
                )
            if wrap == "data":
                return 200, headers, {"ok": True, "data": items}
            return 200, headers, items

    return Handler


def main() -> None:
    """`python -m tests.support.fakehosts KIND COUNT [LATENCY]`: a fake host in its own process.

    Prints the URL and token on one line once listening; the benchmarks use it so that
    the host does not share the syncer's interpreter (and its GIL).
    """
    import sys

    kind, count = sys.argv[1], int(sys.argv[2])
    latency = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    host = FakeHost(kind, latency=latency)  # type: ignore[arg-type]
    host.add_many(count)
    with host:
        print(host.url, host.token, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
