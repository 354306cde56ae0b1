"""The syncer: one sync of one connection makes `repositories` equal to what it yields.

A sync lists the connection's source, plans the difference against the rows of that
host (`planner`, pure) and applies it (`store`) in a single transaction, then records it:

- new repositories are inserted and their mirrors queued, changed ones updated, and
  rows no connection yields any more are soft-deleted (`deleted_at`), all in batched
  statements; a listing with no change writes nothing to `repositories`;
- a failed listing applies what it got and deletes nothing; any failure, expected or
  not, ends in a recorded sync with its message (and the lease released);
- `max_repos_per_site`: a sync that would exceed it changes nothing, and a listing
  longer than it is stopped there (a host can list without end) and applies nothing.

After the write and before the record (so a sync shown as finished has its forks
tracking), each listed fork whose parent is a live repository here, from the
same host, is handed with it to `on_fork_parents` (the composition root sets it to
the branch status service, which makes the parent the fork's upstream): one query
for the ids, whatever the number of forks. The parents GitHub needs a call each for
are remembered per connection (`ParentMemory`), so a fork costs one call per process.

A sync runs under the connection's lease (a row in `code_hosts`), so one sync of a
connection runs at a time across processes; `loop.SyncLoop` starts them.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from repodepot.clock import now
from repodepot.codehosts import planner, store
from repodepot.codehosts.config import OtherConfig
from repodepot.codehosts.http import ApiLimits, CachedPage, CodeHostError, HostApi, ListingTooLong
from repodepot.codehosts.outcome import SyncOutcome
from repodepot.codehosts.planner import Connection, listing_digest
from repodepot.codehosts.sources import ParentMemory, SourceRepo, api_settings, make_source
from repodepot.db.models import SyncStatus
from repodepot.exceptions import AlreadyExists, InvalidInput
from repodepot.gitserver.service import Placement
from repodepot.loops import new_worker_id, renewing
from repodepot.outbound import Policy
from repodepot.repositories import synced
from repodepot.secrets import SecretBox, SecretUnreadable
from repodepot.settings import Settings

logger = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
# However unchanged a listing, the table is diffed against it at least this often.
FULL_DIFF_EVERY = timedelta(hours=1)

# Told {fork repository id: parent repository id} after each sync that listed forks.
ForkParents = Callable[[dict[int, int]], Awaitable[object]]


class Syncer:
    """Lists a connection's source and applies the difference to `repositories`."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        box: SecretBox,
        settings: Settings,
        site_slots: asyncio.Semaphore | None = None,
    ) -> None:
        self._sessions = sessions
        self._box = box
        self._settings = settings
        self._slots = site_slots or asyncio.Semaphore(settings.codehost_max_concurrent_requests)
        self._caches: dict[str, dict[str, CachedPage]] = {}
        self._parents: dict[int, ParentMemory] = {}  # by connection id
        self.on_fork_parents: ForkParents | None = None
        # Where new mirror rows go (the composition of Services sets it to the gitserver's
        # rendezvous placement over the active nodes); unset, this process's node.
        self.placement: Callable[[], Awaitable[Placement]] | None = None
        self._purge = planner.Purge(
            minimum=settings.sync_purge_threshold_min,
            percent=settings.sync_purge_threshold_percent,
        )
        self._limits = ApiLimits.from_settings(settings)

    async def load(self, host_id: int) -> Connection:
        """The connection with its token opened; raises InvalidInput if its config is stale."""
        async with self._sessions() as session:
            return await store.load(session, host_id, self._box)

    async def sync(self, host_id: int) -> SyncOutcome:
        """List the connection and apply; always records the sync, even a failed one."""
        started = now()
        clock = time.monotonic()
        outcome = SyncOutcome()
        listed: dict[str, SourceRepo] = {}
        connection = None
        try:
            connection = await self.load(host_id)
            listed = await self._list(connection, outcome)
        except ListingTooLong as error:
            outcome.status, outcome.error = SyncStatus.over_limit, error.message
        except (CodeHostError, SecretUnreadable, InvalidInput) as error:
            outcome.status, outcome.error = SyncStatus.failed, error.message
        except Exception as error:  # a bug must still end in a recorded sync, not a held lease
            logger.exception("code host listing crashed", extra={"action": "codehost.sync"})
            outcome.status, outcome.error = SyncStatus.failed, _unexpected(error)
        outcome.yielded = len(listed)
        try:
            if connection is not None:
                # Where new mirrors go, read before the write transaction begins: on SQLite
                # it holds the one writer, and the read needs a connection of its own.
                where = (
                    self._settings.node_name if self.placement is None else await self.placement()
                )
                async with self._sessions.begin() as session:
                    await self._apply(session, connection, listed, outcome, where)
                # Before the record: a sync shown as finished has its forks tracking too.
                await self._fork_parents(connection, listed)
            outcome.duration_ms = int((time.monotonic() - clock) * 1000)
            async with self._sessions.begin() as session:
                await self._record(session, host_id, started, outcome)
        except Exception as error:
            outcome = SyncOutcome(
                status=SyncStatus.failed,
                yielded=outcome.yielded,
                api_calls=outcome.api_calls,
                not_modified=outcome.not_modified,
                error=_failed_write(error),
            )
            async with self._sessions.begin() as session:
                await self._record(session, host_id, started, outcome)
        _log(host_id, outcome)
        return outcome

    async def _fork_parents(self, connection: Connection, listed: dict[str, SourceRepo]) -> None:
        """Tell `on_fork_parents` which listed forks have their parent here (both live)."""
        named = {
            repo.external_id: repo.parent_external_id
            for repo in listed.values()
            if repo.parent_external_id is not None
        }
        if not named or self.on_fork_parents is None:
            return
        if not self._settings.upstream_from_fork_parent:
            return
        kind, host = connection.identity
        try:
            async with self._sessions() as session:
                ids = await synced.live_ids_of(
                    session, kind=kind, host=host, external_ids=[*named, *named.values()]
                )
            parents = {
                ids[fork]: ids[parent]
                for fork, parent in named.items()
                if fork in ids and parent in ids
            }
            if parents:
                await self.on_fork_parents(parents)
        except Exception:  # the sync is recorded; the next one tells them again
            logger.exception(
                "forks' parents were not tracked",
                extra={"action": "codehost.fork_parents", "code_host_id": connection.id},
            )

    async def _list(self, connection: Connection, outcome: SyncOutcome) -> dict[str, SourceRepo]:
        listed: dict[str, SourceRepo] = {}
        api = None
        if not isinstance(connection.config, OtherConfig):
            base_url, headers = api_settings(connection.config, connection.token)
            api = HostApi(
                base_url=base_url,
                headers=headers,
                policy=Policy.from_settings(self._settings),
                limits=self._limits,
                site_slots=self._slots,
                cache=self._caches.setdefault(connection.fingerprint, {}),
                what=f"{connection.kind.value} connection {connection.name!r}",
            )
        parents = self._parents.setdefault(connection.id, {})
        wanted = self._settings.upstream_from_fork_parent
        source = make_source(connection.config, api, parents if wanted else None)
        limit = self._settings.max_repos_per_site
        try:
            async for repo in source.list_repos():
                listed.setdefault(repo.external_id, repo)
                if len(listed) > limit:
                    raise ListingTooLong(
                        f"{connection.kind.value} connection {connection.name!r} listed more "
                        f"than max_repos_per_site ({limit}) repositories; nothing was changed. "
                        "Raise REPODEPOT_MAX_REPOS_PER_SITE or narrow the connection's query"
                    )
        except ListingTooLong:
            raise
        except CodeHostError as error:
            outcome.status, outcome.error = SyncStatus.failed, error.message
        else:  # a complete listing: forget the forks it no longer has
            self._parents[connection.id] = {
                key: parent for key, parent in parents.items() if key in listed
            }
        finally:
            outcome.warnings.extend(source.warnings)
            if api is not None:
                outcome.api_calls = api.stats.calls
                outcome.not_modified = api.stats.not_modified
                await api.aclose()
        return listed

    async def _apply(
        self,
        session: AsyncSession,
        connection: Connection,
        listed: dict[str, SourceRepo],
        outcome: SyncOutcome,
        where: str | Placement,
    ) -> None:
        """Plan and write (new mirrors go `where`), unless the listing was applied lately."""
        digest = listing_digest(connection, listed)
        if self._unchanged(connection, digest, outcome):
            outcome.unchanged = len(listed)
            return
        snapshot = await store.snapshot(session, connection)
        plan = planner.draft(
            connection, snapshot, listed, complete=outcome.error is None, purge=self._purge
        )
        if plan.wanted:
            planner.resolve(plan, await synced.holders_of(session, plan.wanted))
        outcome.unchanged += plan.unchanged
        outcome.skipped += plan.skipped
        outcome.warnings.extend(plan.warnings)
        if plan.added and plan.growth > 0:
            limit = self._settings.max_repos_per_site
            refused = planner.over_limit(plan, await synced.count_live(session), limit)
            if refused is not None:
                outcome.status, outcome.error = SyncStatus.over_limit, refused
                return
        await store.write(session, connection, plan, at=now(), shard=where)
        outcome.added, outcome.modified, outcome.deleted = (
            plan.added,
            plan.modified,
            len(plan.deletes),
        )
        outcome.held, outcome.held_ids = len(plan.held), plan.held
        if plan.held and outcome.status is SyncStatus.success:
            outcome.status = SyncStatus.held
        if outcome.status is SyncStatus.success and not outcome.skipped:
            outcome.applied_digest = digest

    @staticmethod
    def _unchanged(connection: Connection, digest: str, outcome: SyncOutcome) -> bool:
        """Whether this complete listing is the one the last full sync applied, recently."""
        return (
            outcome.error is None
            and connection.applied_digest == digest
            and connection.applied_at is not None
            and now() - connection.applied_at < FULL_DIFF_EVERY
        )

    async def _record(
        self, session: AsyncSession, host_id: int, started: datetime, outcome: SyncOutcome
    ) -> None:
        interval = self._settings.sync_interval * random.uniform(0.9, 1.1)
        await store.record(
            session,
            host_id,
            outcome,
            started=started,
            finished=now(),
            next_in=timedelta(seconds=interval),
        )

    async def claim(self, host_id: int, owner: str, *, due_only: bool) -> bool:
        """Take the connection's sync lease (free or expired); `due_only`: only if it is due."""
        async with self._sessions.begin() as session:
            return await store.claim(
                session, host_id, owner, at=now(), lease=LEASE, due_only=due_only
            )

    async def sync_now(self, host_id: int) -> SyncOutcome:
        """Sync here and now (the CLI); AlreadyExists if a sync of it is running elsewhere."""
        owner = new_worker_id()
        if not await self.claim(host_id, owner, due_only=False):
            raise AlreadyExists(f"a sync of code host connection {host_id} is running; try later")
        return await self.run_leased(host_id, owner)

    async def run_leased(self, host_id: int, owner: str) -> SyncOutcome:
        """Sync a claimed connection, renewing the lease until the sync records its release."""
        async with renewing(lambda: self._renew(host_id, owner), LEASE.total_seconds() / 3):
            return await self.sync(host_id)

    async def _renew(self, host_id: int, owner: str) -> None:
        async with self._sessions.begin() as session:
            await store.renew(session, host_id, owner, until=now() + LEASE)

    async def release_dead_leases(self) -> int:
        """Free the sync leases of processes that died on this host; returns how many."""
        async with self._sessions.begin() as session:
            return await store.release_dead(session, now())

    async def apply_held(self, host_id: int) -> int:
        """Carry out the deletions a sync held; returns how many repositories were deleted."""
        async with self._sessions.begin() as session:
            return await store.apply_held(session, host_id, now())


def _failed_write(error: Exception) -> str:
    """The recorded message of a sync whose write failed; nothing of it was committed."""
    if isinstance(error, IntegrityError):
        # A name taken between our read and write (an import, another connection).
        logger.warning(
            "code host sync conflicted: %s", error.orig, extra={"action": "codehost.sync"}
        )
        return (
            "another change to the repositories conflicted with this sync; "
            "nothing was changed and the next sync retries"
        )
    # Recorded all the same, so that the history says the sync failed.
    logger.exception("code host sync crashed", extra={"action": "codehost.sync"})
    return _unexpected(error)


def _unexpected(error: Exception) -> str:
    return (
        f"the sync failed unexpectedly ({type(error).__name__}); nothing more was "
        "changed and the next sync retries. The server log has the details"
    )


def _log(host_id: int, outcome: SyncOutcome) -> None:
    log = logger.warning if outcome.error else logger.info
    log(
        "code host sync %s: +%d ~%d -%d =%d held %d in %d ms, %d API calls (%d not modified)%s",
        outcome.status.value,
        outcome.added,
        outcome.modified,
        outcome.deleted,
        outcome.unchanged,
        outcome.held,
        outcome.duration_ms,
        outcome.api_calls,
        outcome.not_modified,
        f": {outcome.error}" if outcome.error else "",
        extra={"action": "codehost.sync", "code_host_id": host_id},
    )
