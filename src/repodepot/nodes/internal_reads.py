"""Branch lists and history of a mirror on another storage node, as JSON both ways.

A web process answers a repository's branch list (`GET /api/repos/{name}/branches`, the
Branches tab), its recent commits and dated tags (`…/commits`, `…/tags`, the Overview
tab) through `branch_page`, `commits` and `tags` here: once the caller may read the
repository, each reads this disk when the mirror is here (`forward.node_of`), or asks
the node holding it and parses its JSON into the same records. A gitserver process
answers those questions on its internal API (mounted only with the gitserver role):

- `GET /internal/repos/{id}/branches?default=&q=&sort=&state=&page=&per_page=`
- `GET /internal/repos/{id}/log?ref=&per_page=`
- `GET /internal/repos/{id}/tags`

each 403 without the internal secret before anything else (`internal.refusal`); errors
are the app's, as plain text (404 not cloned or no such ref, 422 bad input), and reach
the caller in the words a local read gives, naming the repository by its name. The
filters are checked here before any call, as the node would. An answer past
`MAX_ANSWER` or not of the expected shape is NodeUnavailable (503), as is a node down.
Sync status needs none of this: it reads only the tables.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response

from repodepot import jsonbound
from repodepot.accounts import Principal
from repodepot.branches.service import (
    BranchInfo,
    BranchPage,
    CommitInfo,
    Sort,
    State,
    check_filters,
)
from repodepot.exceptions import InvalidInput, NotFound
from repodepot.git.history import DatedTag, LogEntry
from repodepot.gitserver.history import check_request
from repodepot.nodes.forward import (
    Malformed,
    cannot_answer,
    fields_of,
    internal_name,
    node_of,
    request_headers,
)
from repodepot.nodes.internal import admitted
from repodepot.repositories import RepositoryRecord
from repodepot.types import Sha
from repodepot.web.deps import services

if TYPE_CHECKING:
    from repodepot.services import Services

router = APIRouter(prefix="/internal", include_in_schema=False)
MAX_ANSWER = 8 << 20
"""The most of a node's answer read: every tag of a large repository, with long subjects."""
_ANSWERED = frozenset({200, 404, 422})
_SORTS: dict[str, Sort] = {"updated": "updated", "name": "name"}
_STATES: dict[str, State] = {"active": "active", "stale": "stale"}
T = TypeVar("T")


# The web process's side ---------------------------------------------------------------------


async def branch_page(
    svc: Services,
    caller: Principal,
    name: str,
    *,
    q: str | None = None,
    sort: Sort = "updated",
    state: State | None = None,
    page: int = 1,
    per_page: int = 30,
) -> BranchPage:
    """The branches of repository `name` as `caller` may read them, read where its mirror is.

    From this disk (`Branches.branch_page`) or the node holding the mirror.

    Raises what it raises (InvalidInput, NotFound naming `name`), and NodeUnavailable
    when the node cannot answer.
    """
    check_filters(q, page, per_page)
    repo = await svc.repositories.get(caller, name)
    node = await node_of(svc, repo.id)
    if node is None:
        return await svc.branches.branch_page(
            repo.id,
            repo.name,
            repo.default_branch,
            q=q,
            sort=sort,
            state=state,
            page=page,
            per_page=per_page,
        )
    query = {
        "default": repo.default_branch,
        "q": q,
        "sort": sort,
        "state": state,
        "page": page,
        "per_page": per_page,
    }
    found = await _ask(svc, node, repo, "branches", query)
    return _parsed(found, _branch_page, node, repo.name)


async def commits(
    svc: Services, repo: RepositoryRecord, ref: str | None, per_page: int
) -> list[LogEntry]:
    """`History.commits` of an authorized repository, read on the node holding the mirror.

    Raises what it raises, and NodeUnavailable when the node cannot answer.
    """
    check_request(ref, per_page)
    node = await node_of(svc, repo.id)
    if node is None:
        return await svc.history.commits(repo.id, repo.name, ref, per_page)
    found = await _ask(svc, node, repo, "log", {"ref": ref, "per_page": per_page})
    return _parsed(found, lambda body: _items(body, _log_entry), node, repo.name)


async def tags(svc: Services, repo: RepositoryRecord) -> list[DatedTag]:
    """`History.tags` of an authorized repository, read on the node holding the mirror.

    Raises NotFound before its first clone, NodeUnavailable when the node cannot answer.
    """
    node = await node_of(svc, repo.id)
    if node is None:
        return await svc.history.tags(repo.id, repo.name)
    found = await _ask(svc, node, repo, "tags", {})
    return _parsed(found, lambda body: _items(body, _dated_tag), node, repo.name)


async def _ask(
    svc: Services, node: str, repo: RepositoryRecord, what: str, query: dict[str, Any]
) -> Any:
    """The node's JSON answer about `repo`; its 404 and 422 raised in a local read's words."""
    given = {key: value for key, value in query.items() if value is not None}
    path = f"/internal/repos/{repo.id}/{what}" + (f"?{urlencode(given)}" if given else "")
    headers = request_headers()
    headers["accept"] = "application/json"
    forwarder = svc.forwarder
    upstream = await forwarder.open(node, "GET", path, headers, name=repo.name, passed=_ANSWERED)
    body = await forwarder.read_small(upstream, node, repo.name, limit=MAX_ANSWER)
    if upstream.status_code == 200:
        try:
            return jsonbound.loads(body)
        except ValueError:
            raise cannot_answer(repo.name, node) from None
    message = body.decode(errors="replace").strip()
    message = message.replace(repr(internal_name(repo.id)), repr(repo.name))
    if upstream.status_code == 422:  # checked here first: only a node's own refusal
        raise InvalidInput(message, field="ref" if what == "log" else None)
    raise NotFound(message)


def _parsed(found: Any, parse: Callable[[Any], T], node: str, name: str) -> T:
    try:
        return parse(found)
    except (ValueError, TypeError):  # Malformed among them
        raise cannot_answer(name, node) from None


def _items(found: Any, parse: Callable[[Any], T]) -> list[T]:
    items = fields_of(found, {"items": list})["items"]
    return [parse(item) for item in items]


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise Malformed
    return moment


def _branch_page(found: Any) -> BranchPage:
    page = fields_of(found, {"total": int, "page": int, "per_page": int})
    return BranchPage(items=_items(found, _branch), **page)


def _branch(found: Any) -> BranchInfo:
    branch = fields_of(found, {"name": str, "is_default": bool, "ahead": int, "behind": int})
    commit = fields_of(
        found.get("commit"),
        {"sha": str, "committed_at": str, "author_name": str, "subject": str},
    )
    commit["committed_at"] = _moment(commit["committed_at"])
    return BranchInfo(commit=CommitInfo(**commit), **branch)


def _log_entry(found: Any) -> LogEntry:
    entry = fields_of(
        found,
        {"sha": str, "author_name": str, "author_email": str, "committed_at": str, "subject": str},
    )
    entry["sha"] = Sha(entry["sha"])
    entry["committed_at"] = _moment(entry["committed_at"])
    return LogEntry(**entry)


def _dated_tag(found: Any) -> DatedTag:
    tag = fields_of(
        found, {"name": str, "commit": str, "tagged_at": (str, type(None)), "subject": str}
    )
    tag["commit"] = Sha(tag["commit"])
    tag["tagged_at"] = None if tag["tagged_at"] is None else _moment(tag["tagged_at"])
    return DatedTag(**tag)


# The storage node's side --------------------------------------------------------------------


def _number(text: str | None, field: str, default: int) -> int:
    """A query's whole number; InvalidInput naming `field` when it is not one."""
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 9):
        raise InvalidInput(f"{field} must be a whole number", field=field)
    return int(text)


def _json(found: Any) -> Response:
    # Dates as ISO 8601 with their offsets: `datetime.fromisoformat` reads them back.
    body = json.dumps(found, default=datetime.isoformat, ensure_ascii=False)
    return Response(body.encode(), media_type="application/json")


@router.get("/repos/{repository_id}/branches")
async def node_branches(
    request: Request,
    repository_id: str,
    default: str | None = None,
    q: str | None = None,
    sort: str = "updated",
    state: str | None = None,
    page: str | None = None,
    per_page: str | None = None,
) -> Response:
    """A page of the branches of a mirror on this node, with their counts."""
    key = admitted(request, repository_id)
    if isinstance(key, Response):
        return key
    if sort not in _SORTS:
        raise InvalidInput("sort must be updated or name", field="sort")
    if state is not None and state not in _STATES:
        raise InvalidInput("state must be active or stale", field="state")
    found = await services(request).branches.branch_page(
        key,
        internal_name(key),
        default,
        q=q,
        sort=_SORTS[sort],
        state=None if state is None else _STATES[state],
        page=_number(page, "page", 1),
        per_page=_number(per_page, "per_page", 30),
    )
    return _json(asdict(found))


@router.get("/repos/{repository_id}/log")
async def node_log(
    request: Request, repository_id: str, ref: str | None = None, per_page: str | None = None
) -> Response:
    """The newest commits of `ref` (HEAD without one) in a mirror on this node."""
    key = admitted(request, repository_id)
    if isinstance(key, Response):
        return key
    history = services(request).history
    entries = await history.commits(key, internal_name(key), ref, _number(per_page, "per_page", 20))
    return _json({"items": [asdict(entry) for entry in entries]})


@router.get("/repos/{repository_id}/tags")
async def node_tags(request: Request, repository_id: str) -> Response:
    """Every tag of a mirror on this node with its date, newest first."""
    key = admitted(request, repository_id)
    if isinstance(key, Response):
        return key
    found = await services(request).history.tags(key, internal_name(key))
    return _json({"items": [asdict(tag) for tag in found]})
