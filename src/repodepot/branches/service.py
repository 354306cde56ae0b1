"""Branch status: what the API, pages and CLI ask, and the upstream fetch the loop runs.

- Branches: every `refs/heads/*` of a mirror with its head commit and ahead/behind
  against the repository's default branch, computed for all branches at once
  (`counts.Counter`) and cached by SHA pair.
- Upstream: another git URL (checked and pinned by the outbound policy at every
  fetch; its credential sealed and sent only to its origin) or another repodepot
  repository; the tracked branches (`tracking`) are fetched into `refs/upstream/…` of
  the repository's upstream copy (`Storage.upstream_path`): a bare repository beside
  the mirror that borrows the mirror's objects and holds only what the upstream adds.
  Nothing that serves the mirror reaches it: protocol v2's upload-pack hands out any
  object it has by id, hidden refs or not, so the upstream's objects (fetched with
  the owner's token, perhaps) must not be in the mirror at all. Each tracked pair's
  commits and counts are kept in `branch_sync_status` (`store`), so reads answer from
  the table.
- The fetch lists the upstream's tracked branches first (one round trip) and fetches
  only those that moved; nothing moved, nothing fetched. It shares the mirror's lock.
  Only the storage node holding the mirror fetches its upstream (`claim`); an upstream
  repository on another node is fetched from that node's internal smart HTTP
  (`NodeSources`, with the internal secret).

Branch lists read this node's disk (`branch_page`); a web process asks the node holding
the mirror instead (`nodes.internal_reads`). Sync status reads only the tables, so any
process answers it and nothing is forwarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Literal, Protocol

from sqlalchemy import Connection

from repodepot import audit, events, repositories
from repodepot.accounts import Principal
from repodepot.branches import store, trace2, tracking
from repodepot.branches.counts import Counter, Pair
from repodepot.branches.store import PairRow, Sealed, StatusRow, UpstreamRecord
from repodepot.clock import now
from repodepot.db.base import Sessions, in_transaction, is_sqlite
from repodepot.exceptions import InvalidInput, NotFound, RepodepotError, Unavailable
from repodepot.git import commands
from repodepot.git.commands import AheadBehind, RefHead
from repodepot.git.errors import GitError
from repodepot.git.refstate import KeptByRefs
from repodepot.git.runner import NO_TIMEOUT, Credentials, GitRunner
from repodepot.git.urls import parse_source
from repodepot.gitserver import schedule
from repodepot.gitserver.failures import FailureKind, classify, message
from repodepot.outbound import Policy, origin
from repodepot.repositories import Repositories
from repodepot.repositories.credentials import check as check_credential
from repodepot.secrets import SecretBox, SecretUnreadable
from repodepot.settings import Settings
from repodepot.storage import Storage

logger = logging.getLogger(__name__)
REQUESTED = "branches:requested"
"""The event topic of an asked-for upstream fetch (PostgreSQL NOTIFY, for nodes elsewhere)."""

STALE_AFTER = timedelta(days=90)
MAX_PER_PAGE = 100
RETRY_NOT_CLONED = 60.0


@dataclass(frozen=True, kw_only=True, slots=True)
class CommitInfo:
    """A branch's head commit."""

    sha: str
    committed_at: datetime
    author_name: str
    subject: str


@dataclass(frozen=True, kw_only=True, slots=True)
class BranchInfo:
    """A branch with its head and its counts against the default branch."""

    name: str
    is_default: bool
    commit: CommitInfo
    ahead: int
    behind: int


@dataclass(frozen=True, kw_only=True, slots=True)
class BranchPage:
    """One page of a repository's branches."""

    items: list[BranchInfo]
    total: int
    page: int
    per_page: int


@dataclass(frozen=True, kw_only=True, slots=True)
class UpstreamInfo:
    """A repository's upstream as shown: never its credential, only whether one is set."""

    url: str | None
    repository: str | None
    branches: list[str]
    has_token: bool
    automatic: bool
    interval_seconds: float
    last_fetched_at: datetime | None
    next_fetch_at: datetime
    last_error: str | None
    error_kind: str | None
    failing: bool
    last_fetch_ms: dict[str, int] | None


@dataclass(frozen=True, kw_only=True, slots=True)
class TrackedBranch(StatusRow):
    """A tracked pair as stored, and whether its counts are from before a failed fetch."""

    stale: bool
    """The last fetch of the upstream failed: these counts are from before it."""

    @classmethod
    def of(cls, row: StatusRow, *, stale: bool) -> TrackedBranch:
        """The stored row, marked stale or not."""
        return cls(**{f.name: getattr(row, f.name) for f in fields(StatusRow)}, stale=stale)


@dataclass(frozen=True, kw_only=True, slots=True)
class SyncStatus:
    """A repository's upstream and its tracked pairs."""

    upstream: UpstreamInfo | None
    branches: list[TrackedBranch]


@dataclass(frozen=True, kw_only=True, slots=True)
class OrgRow:
    """A tracked pair of some repository, for the org-wide list."""

    repository: str
    tracked: TrackedBranch


@dataclass(frozen=True, kw_only=True, slots=True)
class OrgPage:
    """One page of the org-wide list."""

    items: list[OrgRow]
    total: int
    page: int
    per_page: int


@dataclass(frozen=True, kw_only=True, slots=True)
class FetchOutcome:
    """What one upstream fetch did, for which configuration (`generation`)."""

    generation: int
    changed: bool
    error: tuple[str, str] | None
    fetch_ms: dict[str, int] | None
    pairs: list[PairRow] | None = None
    """The tracked pairs as counted after the fetch (None when it failed)."""


Sort = Literal["updated", "name"]
State = Literal["active", "stale"]


def _check_page(page: int, per_page: int) -> None:
    if page < 1:
        raise InvalidInput("page must be 1 or more", field="page")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise InvalidInput(f"per_page must be between 1 and {MAX_PER_PAGE}", field="per_page")


@dataclass(frozen=True, kw_only=True, slots=True)
class NodeSource:
    """Where to fetch a repository on another storage node from, and the secret it needs."""

    url: str
    secret: str


class NodeSources(Protocol):
    """Where the repositories whose mirrors are on other storage nodes are fetched from."""

    async def source(self, repository_id: int) -> NodeSource | None:
        """The node's internal smart HTTP of the repository; None when it is on this disk.

        Raises Unavailable when its node cannot be reached now, or its copy is being made.
        """
        ...


def check_filters(q: str | None, page: int, per_page: int) -> None:
    """InvalidInput (naming the field) for a branch list's filters out of range."""
    _check_page(page, per_page)
    if q is not None and len(q) > 200:
        raise InvalidInput("q must be at most 200 characters", field="q")


class Branches:
    """Branches against the default branch; upstreams, their fetches and sync status."""

    def __init__(
        self,
        *,
        sessions: Sessions,
        repositories: Repositories,
        git: GitRunner,
        storage: Storage,
        box: SecretBox,
        settings: Settings,
        counter: Counter | None = None,
    ) -> None:
        self._sessions = sessions
        self._repositories = repositories
        self._git = git
        self._storage = storage
        self._box = box
        self._settings = settings
        self.counter = counter or Counter(git, cache_size=settings.branch_pair_cache_size)
        self._wake: Callable[[], None] = lambda: None
        # A mirror's branches, kept while its refs are unchanged: the Branches tab and API.
        self._heads: KeptByRefs[list[RefHead]] = KeptByRefs(("refs/heads",), size=256)

    def on_request(self, wake: Callable[[], None]) -> None:
        """Call `wake` when a fetch is asked for (the loop's wake-up)."""
        self._wake = wake

    async def _requested(self) -> None:
        """A fetch was asked for: wake this process's loop, and on PostgreSQL the others'.

        The upstream's node may be another process (its mirror's): it listens for
        REQUESTED (`composition`), else it would see the request at its next idle look.
        """
        self._wake()
        if not is_sqlite(self._settings.sqlalchemy_url):
            async with self._sessions.begin() as session:
                await events.notify_in(session, REQUESTED, {})

    # Branches ----------------------------------------------------------------------------------

    async def branch_page(
        self,
        repository_id: int,
        name: str,
        default: str | None,
        *,
        q: str | None = None,
        sort: Sort = "updated",
        state: State | None = None,
        page: int = 1,
        per_page: int = 30,
    ) -> BranchPage:
        """The repository's branches, filtered, sorted and paged, each with its counts.

        Of a repository already authorized, from the mirror on this disk (a web process
        asks through `nodes.internal_reads.branch_page`, which forwards when the mirror is
        on another node).

        `name` names it in errors; `default` is its default branch. NotFound before its
        first clone; InvalidInput for filters out of range.
        """
        check_filters(q, page, per_page)
        path = self._storage.path(repository_id)
        if not path.is_dir():
            raise NotFound(f"{name!r} is not cloned yet; try again shortly")
        heads = await self._heads.get(
            path, None, lambda: commands.ref_heads(self._git, path, "refs/heads/")
        )
        cutoff = now() - STALE_AFTER
        chosen = [
            head
            for head in heads
            if (not q or q.lower() in head.ref.removeprefix("refs/heads/").lower())
            and (
                state is None
                or (state == "stale") == (head.committed_at < cutoff)
                or head.ref == f"refs/heads/{default}"
            )
        ]
        if sort == "name":
            chosen.sort(key=lambda head: head.ref)
        else:
            chosen.sort(key=lambda head: head.committed_at, reverse=True)
        # The default branch first, as GitHub's branches page shows it.
        chosen.sort(key=lambda head: head.ref != f"refs/heads/{default}")
        shown = chosen[(page - 1) * per_page : page * per_page]
        base = next((h for h in heads if h.ref == f"refs/heads/{default}"), None)
        counts = {}
        if base is not None:
            counts = await self.counter.counts(
                path,
                [Pair(h.ref, h.sha, base.ref, base.sha) for h in shown if h.ref != base.ref],
            )
        items = []
        for head in shown:
            found = counts.get(head.ref)
            items.append(
                BranchInfo(
                    name=head.ref.removeprefix("refs/heads/"),
                    is_default=base is not None and head.ref == base.ref,
                    commit=CommitInfo(
                        sha=head.sha,
                        committed_at=head.committed_at,
                        author_name=head.author_name,
                        subject=head.subject,
                    ),
                    ahead=found.ahead if found else 0,
                    behind=found.behind if found else 0,
                )
            )
        return BranchPage(items=items, total=len(chosen), page=page, per_page=per_page)

    # Upstream configuration --------------------------------------------------------------------

    async def upstream(self, principal: Principal, name: str) -> UpstreamInfo:
        """The repository's upstream; NotFound when it has none."""
        status = await self.sync_status(principal, name)
        if status.upstream is None:
            raise NotFound(f"{name!r} has no upstream")
        return status.upstream

    async def set_upstream(
        self,
        principal: Principal,
        name: str,
        *,
        url: str | None = None,
        repository: str | None = None,
        token: str | None = None,
        username: str | None = None,
        branches: Sequence[str] | None = None,
        interval: float | None = None,
    ) -> UpstreamInfo:
        """Set the repository's upstream (its owner or an admin); audited; fetched soon.

        Exactly one of `url` (checked by the outbound policy now and at every fetch) and
        `repository` (another repository `principal` may read). `token` is sealed and
        sent only to the URL's origin; without one, a token kept for the same origin
        stays. `branches` default to the default branch. InvalidInput names the field.
        """
        repo = await self._repositories.owned(principal, name)
        if (url is None) == (repository is None):
            raise InvalidInput("give exactly one of url and repository", field="url")
        specs = tracking.parse(
            branches if branches is not None else [repo.default_branch or "main"]
        )
        minimum = self._settings.upstream_interval
        seconds = minimum if interval is None else float(interval)
        if not 60 <= seconds <= 7 * 24 * 3600:
            raise InvalidInput("interval must be between 60 and 604800 seconds", field="interval")
        upstream_id = None
        clean_url = None
        credential = None
        keep = False
        if repository is not None:
            if token is not None:
                raise InvalidInput(
                    "a repository upstream needs no token: it is read here", field="token"
                )
            other = await self._repositories.get(principal, repository)
            if other.id == repo.id:
                raise InvalidInput("a repository cannot be its own upstream", field="repository")
            upstream_id = other.id
        else:
            assert url is not None
            source = parse_source(url, self._settings.allowed_schemes)
            await Policy.from_settings(self._settings).git_config(source.url)
            clean_url = source.url
            given = token if token is not None else source.password
            if given is not None:
                user, secret = check_credential(username or source.username, given)
                credential = Sealed(
                    username=user,
                    sealed_token=self._box.seal(secret),
                    origin=str(origin(source.url)),
                )
            keep = True
        async with self._sessions.begin() as session:
            if credential is None and keep:
                kept = await store.sealed(session, repo.id)
                keep = (
                    kept is not None
                    and clean_url is not None
                    and (kept.origin == str(origin(clean_url)))
                )
            await store.put(
                session,
                repo.id,
                url=clean_url,
                upstream_repository_id=upstream_id,
                branches=[str(spec) for spec in specs],
                interval_seconds=seconds,
                credential=credential,
                keep_credential=keep,
                automatic=False,
                at=now(),
            )
            await audit.record(
                session,
                principal.user.id,
                "repository.upstream_set",
                repo.name,
                {
                    "url": clean_url,
                    "repository": repository,
                    "branches": [str(spec) for spec in specs],
                    "token": credential is not None,
                },
            )
        await self._requested()
        return await self.upstream(principal, name)

    async def remove_upstream(self, principal: Principal, name: str) -> None:
        """Forget the upstream, its pairs and its hidden refs; NotFound when none; audited."""
        repo = await self._repositories.owned(principal, name)
        async with self._sessions.begin() as session:
            if not await store.remove(session, repo.id, now()):
                raise NotFound(f"{name!r} has no upstream")
            await audit.record(
                session, principal.user.id, "repository.upstream_removed", repo.name, {}
            )
        async with self._storage.lock(repo.id):
            self._storage.remove_upstream(repo.id)

    async def track_parents(self, parents: dict[int, int]) -> int:
        """Give each fork (key) its parent (value), a repository here, as upstream.

        For code host syncs: a fork whose parent repodepot also mirrors tracks the
        parent's default branch, unless someone set its upstream by hand (kept), removed
        the automatic one (remembered), or the setting `upstream_from_fork_parent` is
        off. One query for the forks' rows; writes only what changes. Returns how many
        were set or changed.
        """
        if not self._settings.upstream_from_fork_parent or not parents:
            return 0
        changed = 0
        async with self._sessions.begin() as session:
            kept = await store.kept_of(session, list(parents))
            # Not one set by hand, nor one someone removed; not one already tracking it.
            open_to_us = {
                fork
                for fork, parent in parents.items()
                if (row := kept.get(fork)) is None
                or (row.automatic and not row.dismissed and row.upstream_repository_id != parent)
            }
            found = await repositories.sources_of(
                session, sorted(open_to_us | {parents[fork] for fork in open_to_us})
            )
            for fork in sorted(open_to_us):
                parent = found.get(parents[fork])
                if parent is None or parent.deleted or fork == parent.id:
                    continue
                mine = found.get(fork)
                local = (mine and mine.default_branch) or parent.default_branch or "main"
                theirs = parent.default_branch or local
                await store.put(
                    session,
                    fork,
                    url=None,
                    upstream_repository_id=parent.id,
                    branches=[local if local == theirs else f"{local}:{theirs}"],
                    interval_seconds=self._settings.upstream_interval,
                    credential=None,
                    keep_credential=False,
                    automatic=True,
                    at=now(),
                )
                changed += 1
        if changed:
            await self._requested()
        return changed

    async def fetch_now(self, principal: Principal, name: str) -> None:
        """Ask for a fetch of the upstream now (anyone who may read the repository).

        At most one per `ensure_fetch_interval` (30 s) whoever asks: asked sooner, it
        runs that long after the last one.
        """
        repo = await self._repositories.get(principal, name)
        async with self._sessions.begin() as session:
            gap = self._settings.ensure_fetch_interval
            if not await store.request(session, repo.id, now(), min_gap=gap):
                raise NotFound(f"{name!r} has no upstream")
        await self._requested()

    # Reading the status ------------------------------------------------------------------------

    async def sync_status(self, principal: Principal, name: str) -> SyncStatus:
        """The upstream and each tracked pair, from the table (no git, no network).

        Never forwarded to a storage node: the pairs are rows any process reads.
        """
        repo = await self._repositories.get(principal, name)

        def read(
            connection: Connection,
        ) -> tuple[UpstreamRecord, list[StatusRow], str | None] | None:
            record = store.get(connection, repo.id)
            if record is None:
                return None
            upstream_name = None
            if (theirs := record.upstream_repository_id) is not None:
                names = repositories.readable_names_of(connection, principal, [theirs])
                upstream_name = names.get(theirs)
            return record, store.rows(connection, repo.id), upstream_name

        found = await self._sessions.read(read)
        if found is None:
            return SyncStatus(upstream=None, branches=[])
        record, rows, upstream_name = found
        # An upstream repository the caller may not read is neither named nor its commits
        # shown: only the counts against it.
        hidden = record.upstream_repository_id is not None and upstream_name is None
        stale = record.last_error is not None
        return SyncStatus(
            upstream=self._info(record, upstream_name),
            branches=[_shown(TrackedBranch.of(row, stale=stale), hidden) for row in rows],
        )

    def _info(self, record: UpstreamRecord, upstream_name: str | None) -> UpstreamInfo:
        return UpstreamInfo(
            url=record.url,
            repository=upstream_name,
            branches=record.branches,
            has_token=record.has_token,
            automatic=record.automatic,
            interval_seconds=record.interval_seconds,
            last_fetched_at=record.last_fetched_at,
            next_fetch_at=record.next_fetch_at,
            last_error=record.last_error,
            error_kind=record.error_kind,
            failing=record.failures >= self._settings.update_failures_before_failing,
            last_fetch_ms=record.fetch_ms,
        )

    async def org_status(
        self,
        principal: Principal,
        *,
        needs_pull: bool | None = None,
        needs_push: bool | None = None,
        diverged: bool | None = None,
        page: int = 1,
        per_page: int = 50,
    ) -> OrgPage:
        """Tracked pairs across every repository `principal` may read, matching the filters."""
        _check_page(page, per_page)
        query = store.org_query(
            repositories.readable(principal),
            needs_pull=needs_pull,
            needs_push=needs_push,
            diverged=diverged,
        )
        async with self._sessions() as session:
            rows, total = await store.org_page(session, query, page=page, per_page=per_page)
            ids = sorted({row.repository_id for row in rows})
            names = await repositories.names_of(session, ids)
            failing = await store.failing_of(session, ids)
            theirs = {
                repository_id: kept.upstream_repository_id
                for repository_id, kept in (await store.kept_of(session, ids)).items()
                if kept.upstream_repository_id is not None
            }
            readable = await in_transaction(
                session,
                partial(
                    repositories.readable_names_of,
                    principal=principal,
                    ids=sorted(set(theirs.values())),
                ),
            )
        hidden = {mine for mine, other in theirs.items() if other not in readable}
        return OrgPage(
            items=[
                OrgRow(
                    repository=names[row.repository_id],
                    tracked=_shown(
                        TrackedBranch.of(row, stale=row.repository_id in failing),
                        row.repository_id in hidden,
                    ),
                )
                for row in rows
            ],
            total=total,
            page=page,
            per_page=per_page,
        )

    # The fetch (the loop's work) ---------------------------------------------------------------

    async def claim(
        self, owner: str, slots: int, busy: dict[str, int] | None = None
    ) -> list[tuple[int, str]]:
        """Lease up to `slots` due upstream fetches: (repository id, host) pairs.

        Only those whose mirror is on this storage node (`node_name`): the fetch writes
        beside it. At most `max_clones_per_host` at once against one host, counting
        `busy` (the caller's running fetches by host).
        """
        async with self._sessions.begin() as session:
            return await store.claim(
                session,
                owner,
                slots,
                now(),
                busy=busy or {},
                per_host=self._settings.max_clones_per_host,
                node=self._settings.node_name,
            )

    async def next_due(self, owner: str) -> datetime | None:
        """When `owner` could next claim an upstream fetch on this node (None: none)."""
        async with self._sessions() as session:
            return await store.next_due(session, now(), owner, self._settings.node_name)

    async def claim_one(self, owner: str, repository_id: int) -> bool:
        """Lease one repository's upstream fetch now, due or not (`upstream fetch --wait`).

        False when a fetcher holds it. Raises Unavailable, naming the node that holds
        the mirror, when that is not this one (`node_name`): the fetch writes beside it.
        """
        node = self._settings.node_name
        async with self._sessions.begin() as session:
            if await store.claim_one(session, owner, repository_id, now(), node):
                return True
            holder = await store.mirror_node(session, repository_id)
        if holder is None:
            raise Unavailable("the repository has no mirror yet: fetch its upstream once it has")
        if holder != node:
            raise Unavailable(
                f"the repository's mirror is on storage node {holder!r}, not on this one "
                f"({node!r}): fetch its upstream there"
            )
        return False

    async def renew(self, owner: str, repository_id: int) -> None:
        """Keep a fetch's lease alive."""
        async with self._sessions.begin() as session:
            await store.renew(session, owner, repository_id, now())

    async def release_dead_leases(self) -> int:
        """Free leases of fetchers on this host that died."""
        async with self._sessions.begin() as session:
            return await store.release_dead(session, now())

    async def prune_deleted(self) -> int:
        """Remove pairs gone for longer than the retention."""
        before = now() - timedelta(seconds=self._settings.branch_deleted_retention)
        async with self._sessions.begin() as session:
            return await store.prune_deleted(session, before)

    async def request_dependents(self, repository_id: int) -> None:
        """Ask for a fetch of every upstream that is repository `repository_id` (it moved)."""
        async with self._sessions.begin() as session:
            asked = await store.request_dependents(session, repository_id, now())
        if asked:
            await self._requested()

    async def refresh(
        self, owner: str, repository_id: int, *, nodes: NodeSources | None = None
    ) -> FetchOutcome:
        """Fetch the upstream's moved tracked branches, recompute the pairs, record it all.

        `nodes` says where an upstream repository on another storage node is fetched
        from; without it, only one on this disk is.
        """
        started = time.monotonic()
        outcome = await self._fetch_and_count(repository_id, nodes)
        at = now()
        db_started = time.monotonic()
        # The pairs and the fetch's outcome commit together: no reader sees counts from a
        # fetch that is not recorded yet.
        async with self._sessions.begin() as session:
            record = await in_transaction(session, partial(store.get, repository_id=repository_id))
            if record is None:
                return outcome  # removed meanwhile
            if outcome.pairs is not None:
                await store.record_pairs(
                    session, repository_id, outcome.pairs, at, generation=outcome.generation
                )
            if outcome.error is None:
                nxt = schedule.after_success(
                    at,
                    at if outcome.changed else record.last_changed_at,
                    minimum=record.interval_seconds,
                    maximum=max(record.interval_seconds, self._settings.upstream_max_interval),
                ).interval
            elif outcome.error[0] == "not_cloned":
                nxt = RETRY_NOT_CLONED
            else:
                nxt = schedule.after_failure(
                    record.failures + 1,
                    minimum=min(60.0, record.interval_seconds),
                    maximum=max(record.interval_seconds, self._settings.upstream_max_interval),
                    limit=self._settings.update_failures_before_failing,
                    kind=outcome.error[0],
                ).interval
            fetch_ms = None
            if outcome.fetch_ms is not None:
                fetch_ms = outcome.fetch_ms | {"db": round((time.monotonic() - db_started) * 1000)}
            await store.finish(
                session,
                repository_id,
                owner,
                at=at,
                next_at=at + timedelta(seconds=nxt),
                changed=outcome.changed,
                error=outcome.error,
                fetch_ms=fetch_ms,
                min_gap=self._settings.ensure_fetch_interval,
                generation=outcome.generation,
            )
        logger.info(
            "upstream fetch of repository %d: %s",
            repository_id,
            "failed" if outcome.error else ("changed" if outcome.changed else "unchanged"),
            extra={
                "action": "upstream.fetch",
                "repository_id": repository_id,
                "duration_ms": round((time.monotonic() - started) * 1000),
            },
        )
        return outcome

    async def recount(self, repository_id: int) -> None:
        """Recompute the pairs after the mirror's own branches moved (no upstream fetch)."""
        record = await self._sessions.read(partial(store.get, repository_id=repository_id))
        path = self._storage.path(repository_id)
        copy = self._storage.upstream_path(repository_id)
        if record is None or not path.is_dir() or not copy.is_dir():
            return  # nothing fetched yet: the first fetch counts
        specs = tracking.parse(record.branches)
        async with self._storage.lock(repository_id):
            pairs = await self._count(repository_id, path, copy, specs)
        async with self._sessions.begin() as session:
            await store.record_pairs(
                session, repository_id, pairs, now(), generation=record.generation
            )

    async def _fetch_and_count(self, repository_id: int, nodes: NodeSources | None) -> FetchOutcome:
        async with self._sessions() as session:
            record = await in_transaction(session, partial(store.get, repository_id=repository_id))
            sealed = await store.sealed(session, repository_id)
            found = await repositories.sources_of(
                session,
                [repository_id]
                + (
                    [record.upstream_repository_id]
                    if record and record.upstream_repository_id
                    else []
                ),
            )
        if record is None:
            return FetchOutcome(generation=-1, changed=False, error=None, fetch_ms=None)
        mine = found.get(repository_id)
        path = self._storage.path(repository_id)
        if mine is None or mine.deleted:
            return FetchOutcome(
                generation=record.generation,
                changed=False,
                error=("other", "the repository was deleted"),
                fetch_ms=None,
            )
        if not path.is_dir():
            return FetchOutcome(
                generation=record.generation,
                changed=False,
                error=("not_cloned", f"{mine.name!r} is not cloned yet; fetching once it is"),
                fetch_ms=None,
            )
        try:
            specs = tracking.parse(record.branches)
            source = await self._source(record, sealed, found, nodes)
            async with self._storage.lock(repository_id):
                copy = await self._upstream_copy(repository_id, path)
                changed, timings = await self._fetch(copy, specs, source)
                try:
                    pairs = await self._count(repository_id, path, copy, specs)
                except GitError as error:
                    # Ours, not the network's: a copy that lost objects it borrowed (the
                    # mirror was cloned again). Start it afresh at the next fetch.
                    self._storage.remove_upstream(repository_id)
                    return FetchOutcome(
                        generation=record.generation,
                        changed=False,
                        error=(
                            "corrupt",
                            f"the upstream copy was unreadable, fetched afresh "
                            f"next time: {message(error)}",
                        ),
                        fetch_ms=None,
                    )
        except GitError as error:
            kind = classify(error)
            if kind is FailureKind.corrupt:
                self._storage.remove_upstream(repository_id)
            return FetchOutcome(
                generation=record.generation,
                changed=False,
                error=(kind.value, message(error)),
                fetch_ms=None,
            )
        # The outbound policy, a deleted upstream repository, its storage node down.
        except RepodepotError as error:
            return FetchOutcome(
                generation=record.generation,
                changed=False,
                error=("other", error.message),
                fetch_ms=None,
            )
        return FetchOutcome(
            generation=record.generation,
            changed=changed,
            error=None,
            fetch_ms=timings | {"db": 0},
            pairs=pairs,
        )

    async def _source(
        self,
        record: UpstreamRecord,
        sealed: Sealed | None,
        found: dict[int, repositories.Source],
        nodes: NodeSources | None,
    ) -> _Source:
        """Where to fetch from: a URL and what it needs (pins, credential, node secret)."""
        if record.url is None:
            other = found.get(record.upstream_repository_id or -1)
            if other is None or other.deleted:
                raise NotFound("the upstream repository was deleted; set another upstream")
            elsewhere = None if nodes is None else await nodes.source(other.id)
            if elsewhere is not None:
                return _Source(url=elsewhere.url, node_secret=elsewhere.secret)
            path = self._storage.path(other.id)
            if not path.is_dir():
                # Not named: readers of this repository may not read that one.
                raise NotFound("the upstream repository is not cloned yet")
            return _Source(url=str(path), local=True)
        source = parse_source(record.url, self._settings.allowed_schemes)
        config = await Policy.from_settings(self._settings).git_config(source.url)
        credentials = None
        if sealed is not None and sealed.origin == str(origin(source.url)):
            with contextlib.suppress(SecretUnreadable):
                credentials = Credentials(
                    username=sealed.username, password=self._box.open(sealed.sealed_token)
                )
        return _Source(url=source.url, credentials=credentials, config=config)

    async def _fetch(
        self, path: Path, specs: list[tracking.Spec], source: _Source
    ) -> tuple[bool, dict[str, int]]:
        """List the upstream's tracked branches, fetch those that moved, drop those gone.

        Returns whether an upstream ref moved, and the time by part (trace2).
        """
        repo = path
        listing_started = time.monotonic()
        patterns = sorted({spec.upstream for spec in specs})
        heads = await commands.ls_remote_heads(
            self._git,
            source.url,
            patterns,
            credentials=source.credentials,
            timeout=self._settings.update_stall_timeout,
            config=source.config,
            local_source=source.local,
            node_secret=source.node_secret,
        )
        listing_ms = (time.monotonic() - listing_started) * 1000
        wanted = tracking.upstream_wanted(specs, heads)
        if len(wanted) > tracking.MAX_TRACKED:
            raise InvalidInput(
                f"the tracked branches match {len(wanted)} upstream branches, more than "
                f"{tracking.MAX_TRACKED}: name fewer, or narrower globs",
                field="branches",
            )
        have = {
            head.ref.removeprefix(tracking.NAMESPACE): head.sha
            for head in await commands.ref_heads(self._git, repo, tracking.NAMESPACE)
        }
        moved = [name for name in wanted if have.get(name) != heads[name]]
        gone = [f"{tracking.NAMESPACE}{name}" for name in have if name not in wanted]
        timings = {"network": round(listing_ms), "pack": 0, "refs": 0}
        if moved:
            trace = self._storage.tmp_dir / f"{os.getpid()}-trace2-{uuid.uuid4().hex}.json"
            received: list[datetime] = []

            def progress(chunk: bytes) -> None:
                if not received and trace2.marks_received(chunk):
                    received.append(datetime.now(UTC))

            try:
                await commands.fetch(
                    self._git,
                    repo,
                    source.url,
                    [tracking.refspec(name) for name in moved],
                    credentials=source.credentials,
                    on_progress=progress,
                    timeout=NO_TIMEOUT if source.local else self._settings.update_stall_timeout * 4,
                    config=source.config,
                    trace2=trace,
                    local_source=source.local,
                    follow_tags=False,  # the tracked branches only
                    node_secret=source.node_secret,
                )
                lines = await asyncio.to_thread(_read_lines, trace)
            finally:
                trace.unlink(missing_ok=True)
            split = trace2.decompose(lines, received[0] if received else None)
            timings = {
                "network": round(listing_ms + split.network),
                "pack": round(split.pack),
                "refs": round(split.refs),
            }
        await commands.delete_refs(self._git, repo, gone)
        # No commit-graph of its own: git falls back to the mirror's (the first object
        # directory with one), which covers every local commit; the few upstream-only
        # commits are read from their objects.
        return bool(moved or gone), timings

    async def _warm(self, repository_id: int) -> None:
        """Teach the pair cache what the table knows (after a restart, nothing is lost)."""
        known = await self._sessions.read(partial(store.known_pairs, repository_id=repository_id))
        for row in known:
            if row.local_sha and row.upstream_sha and row.ahead is not None:
                self.counter.remember(
                    row.local_sha, row.upstream_sha, AheadBehind(row.ahead, row.behind or 0)
                )

    async def _upstream_copy(self, repository_id: int, mirror: Path) -> Path:
        """The repository's upstream copy, created (empty, borrowing the mirror's objects)."""
        copy = self._storage.upstream_path(repository_id)
        if not copy.is_dir():
            async with self._storage.building(label=f"upstream-{repository_id}") as staged:
                await commands.init_bare(self._git, staged, alternate=mirror)
                self._storage.place_upstream(staged, repository_id)
        return copy

    async def _count(
        self, repository_id: int, mirror: Path, copy: Path, specs: list[tracking.Spec]
    ) -> list[PairRow]:
        """Every tracked pair with its commits and counts (in the copy: it has both sides).

        The mirror's branches are copied into the copy's `refs/heads/` first (their
        objects are the mirror's, borrowed), so one walk there sees both. Call under the
        mirror's lock.
        """
        local = {
            head.ref.removeprefix("refs/heads/"): head.sha
            for head in await commands.ref_heads(self._git, mirror, "refs/heads/")
        }
        upper = {
            head.ref.removeprefix(tracking.NAMESPACE): head.sha
            for head in await commands.ref_heads(self._git, copy, tracking.NAMESPACE)
        }
        pairs = tracking.pairs(specs, local, upper)
        tracked = {mine for mine, _ in pairs if mine in local}
        copied = {
            head.ref: head.sha for head in await commands.ref_heads(self._git, copy, "refs/heads/")
        }
        wanted = {f"refs/heads/{mine}": local[mine] for mine in tracked}
        await commands.set_refs(
            self._git,
            copy,
            {ref: sha for ref, sha in wanted.items() if copied.get(ref) != sha}
            | {ref: None for ref in copied if ref not in wanted},
        )
        repo = copy
        await self._warm(repository_id)
        complete = [
            Pair(f"refs/heads/{mine}", local[mine], f"{tracking.NAMESPACE}{theirs}", upper[theirs])
            for mine, theirs in pairs
            if mine in local and theirs in upper
        ]
        counts = await self.counter.counts(repo, complete)
        rows = []
        for mine, theirs in pairs:
            found = counts.get(f"refs/heads/{mine}")
            rows.append(
                PairRow(
                    branch=mine,
                    upstream_branch=theirs,
                    local_sha=local.get(mine),
                    upstream_sha=upper.get(theirs),
                    ahead=found.ahead if found else None,
                    behind=found.behind if found else None,
                )
            )
        return rows


@dataclass(frozen=True, kw_only=True, slots=True)
class _Source:
    """Where a fetch reads: a URL, a mirror's path on this disk (`local`) or another node's."""

    url: str
    credentials: Credentials | None = None
    config: Sequence[tuple[str, str]] = ()
    local: bool = False
    node_secret: str | None = None


def _shown(tracked: TrackedBranch, hidden: bool) -> TrackedBranch:
    """The pair as a caller who may not read the upstream repository sees it."""
    return replace(tracked, upstream_sha=None) if hidden else tracked


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return []
