"""Permission sync: a user's `codehost` grants follow what their own token reads on the host.

The owner of `code_host_accounts`. A user links their account on a connection by
giving a personal token for its host (sealed; only ever shown as set). Each account is
synced every `permissions_sync_interval` (±10%) and at once when linked or asked:
`codehosts.permissions.readable_by` lists what the token can read, the listed external
ids are mapped to the live repositories here that the connection yields, and
`Access.keep_codehost_grants` makes the user's `codehost` grants on that connection's
repositories exactly those, in the transaction that records the account's outcome (no
grant written when nothing changed; another connection's grants are left alone).

A token the host refuses is recorded as `rejected` with the host's message: its grants
are kept for `permissions_rejected_grace` after the first refusal, then removed (a new
token brings them back). Any other failure is recorded as `failed` and keeps the grants.

`PermissionSyncLoop` syncs due accounts. There is no lease column: an account is
claimed by moving its `next_sync_at` a lease ahead with an UPDATE that only matches a
due row (so two processes never sync one account at once), renewed while it runs.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, and_, case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from repodepot import audit
from repodepot.access import Access
from repodepot.accounts import Principal
from repodepot.clock import now
from repodepot.codehosts import store
from repodepot.codehosts.http import ApiLimits, CachedPage, CodeHostError
from repodepot.codehosts.permissions import TokenRejected, readable_by
from repodepot.codehosts.planner import Connection
from repodepot.db.base import Sessions
from repodepot.db.models import CodeHost, CodeHostAccount, CodeHostKind, User
from repodepot.exceptions import InvalidInput, NotFound
from repodepot.loops import BackgroundLoop, cancel_all, renewing, until_due
from repodepot.outbound import Policy
from repodepot.repositories import synced
from repodepot.secrets import SecretBox, SecretUnreadable
from repodepot.settings import Settings

if TYPE_CHECKING:
    from repodepot.services import Services

logger = logging.getLogger(__name__)

MAX_TOKEN = 1000
# Accounts whose last listing is kept for conditional requests (a listing holds up to
# `max_repos_per_site` repositories); the others list again in full.
CACHED_ACCOUNTS = 2_000
LEASE = timedelta(seconds=60)
IDLE_CEILING = 60.0
"""Seconds an idle permission sync loop sleeps at most without a look at the table."""

Key = tuple[int, int]  # (user id, connection id)


@dataclass(frozen=True, kw_only=True, slots=True)
class AccountRecord:
    """A linked account as the API shows it: the token only as set."""

    user: str
    code_host_id: int
    code_host: str
    kind: str
    has_token: bool
    linked_at: datetime
    next_sync_at: datetime
    last_sync_at: datetime | None
    last_status: str | None
    last_error: str | None
    rejected_since: datetime | None
    readable: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Outcome:
    """What one permission sync of an account found and changed."""

    status: str
    readable: int = 0
    added: int = 0
    removed: int = 0
    error: str | None = None


class PermissionSync:
    """Linked accounts and the `codehost` grants their tokens' listings keep."""

    def __init__(
        self,
        *,
        sessions: Sessions,
        worker_sessions: Sessions,
        access: Access,
        box: SecretBox,
        settings: Settings,
        site_slots: asyncio.Semaphore | None = None,
    ) -> None:
        self._sessions = sessions
        self._worker_sessions = worker_sessions
        self._access = access
        self._box = box
        self._settings = settings
        self._slots = site_slots or asyncio.Semaphore(settings.codehost_max_concurrent_requests)
        self._policy = Policy.from_settings(settings)
        self._limits = ApiLimits.from_settings(settings)
        # Each account's last pages, for conditional requests; the least recently synced
        # accounts' go first past CACHED_ACCOUNTS (pages hold a whole listing each).
        self._caches: OrderedDict[Key, dict[str, CachedPage]] = OrderedDict()
        self._random = random.Random()
        self.on_sync_requested: Callable[[], None] | None = None

    # What users do --------------------------------------------------------------------------

    async def link(self, caller: Principal, code_host_id: int, token: str) -> AccountRecord:
        """Link (or re-link) the caller's account on a connection with their own token.

        The token is sealed; the account is due at once and the sync loop woken, so the
        request does not wait for the host. Audited, without the token. InvalidInput for
        an empty or over-long token and for an `other` connection; NotFound for an
        unknown connection.
        """
        token = token.strip()
        if not token:
            raise InvalidInput("the token is empty", field="token")
        if len(token) > MAX_TOKEN:
            raise InvalidInput(f"the token is longer than {MAX_TOKEN} characters", field="token")
        key = (caller.user.id, code_host_id)
        async with self._sessions.begin() as session:
            host = await _linkable(session, code_host_id)
            at = now()
            values = {"sealed_token": self._box.seal(token), "linked_at": at, "next_sync_at": at}
            row = await session.get(CodeHostAccount, key)
            if row is None:
                session.add(CodeHostAccount(user_id=key[0], code_host_id=key[1], **values))
            else:
                await session.execute(update(CodeHostAccount).where(_is(key)).values(**values))
            await audit.record(
                session,
                caller.user.id,
                "codehost_account.link",
                host.name,
                {"code_host_id": host.id},
            )
        self._caches.pop(key, None)  # another token's pages are not this one's
        self._wake()
        return await self._one(key)

    async def accounts(self, caller: Principal) -> list[AccountRecord]:
        """The caller's linked accounts, by connection name."""
        return await self._records(CodeHostAccount.user_id == caller.user.id)

    async def all_accounts(self, caller: Principal) -> list[AccountRecord]:
        """Every user's linked accounts with their last sync (admins)."""
        caller.require_admin()
        return await self._records(None)

    async def unlink(self, caller: Principal, code_host_id: int) -> None:
        """Remove the caller's account on a connection and the grants it kept; NotFound."""
        key = (caller.user.id, code_host_id)
        async with self._sessions.begin() as session:
            gone = await session.execute(delete(CodeHostAccount).where(_is(key)))
            if not gone.rowcount:  # type: ignore[attr-defined]
                raise NotFound(f"no linked account on code host connection {code_host_id}")
            await self._access.keep_codehost_grants(session, key[0], code_host_id, ())
            name = await session.scalar(select(CodeHost.name).where(CodeHost.id == code_host_id))
            await audit.record(
                session,
                caller.user.id,
                "codehost_account.unlink",
                name or str(code_host_id),
                {"code_host_id": code_host_id},
            )
        self._caches.pop(key, None)

    async def request_sync(self, caller: Principal, code_host_id: int) -> datetime:
        """Make the caller's account due now; the time asked, for waiting on the result."""
        asked = now()
        key = (caller.user.id, code_host_id)
        async with self._sessions.begin() as session:
            moved = await session.execute(
                update(CodeHostAccount).where(_is(key)).values(next_sync_at=asked)
            )
            if not moved.rowcount:  # type: ignore[attr-defined]
                raise NotFound(f"no linked account on code host connection {code_host_id}")
        self._wake()
        return asked

    # The sync ---------------------------------------------------------------------------------

    async def sync_account(self, user_id: int, code_host_id: int) -> Outcome | None:
        """List what the account's token reads and keep its grants; records the outcome.

        None when the account is gone. A refused token keeps the grants for the grace
        period, then removes them; other failures keep them. Never raises for the host.
        """
        key = (user_id, code_host_id)
        started = now()
        async with self._worker_sessions() as session:
            row = await session.get(CodeHostAccount, key)
            if row is None:
                return None
            rejected_since, linked_at = row.rejected_since, row.linked_at
            try:
                connection = await store.load(session, code_host_id, self._box)
                token = self._box.open(row.sealed_token)
            except (InvalidInput, SecretUnreadable) as error:
                failed = Outcome(status="failed", error=error.message)
                return await self._record(key, started, failed)
        try:
            readable = await readable_by(
                connection,
                token,
                policy=self._policy,
                limits=self._limits,
                site_slots=self._slots,
                cache=self._pages_of(key),
                most=self._settings.max_repos_per_site,
            )
        except TokenRejected as error:
            return await self._rejected(
                key, connection, started, (rejected_since, linked_at), error.message
            )
        except (CodeHostError, InvalidInput) as error:
            return await self._record(key, started, Outcome(status="failed", error=error.message))
        except Exception:  # a bug still ends in a recorded sync, and the grants stay
            logger.exception("permission sync crashed", extra=_extra(key, "permissions.sync"))
            outcome = Outcome(status="failed", error="an unexpected error: see the server log")
            return await self._record(key, started, outcome)
        return await self._keep(key, connection, started, linked_at, readable.external_ids)

    async def _keep(
        self,
        key: Key,
        connection: Connection,
        started: datetime,
        linked_at: datetime,
        external_ids: frozenset[str],
    ) -> Outcome | None:
        """Write the listing's grants; None if the account is no longer the one read.

        Unlinked (or linked anew) while the host answered: its row is written first, in
        the same transaction, and only the account this sync read gets grants.
        """
        kind, host = connection.identity
        async with self._worker_sessions.begin() as session:
            found = await synced.live_ids_of(
                session, kind=kind, host=host, external_ids=sorted(external_ids)
            )
            # Only the listed ones are asked for: not every repository of the connection.
            wanted = await store.linked_among(session, connection.id, list(found.values()))
            outcome = Outcome(status="success", readable=len(wanted))
            if not await self._write_outcome(session, key, started, outcome, linked_at=linked_at):
                return None
            added, removed = await self._access.keep_codehost_grants(
                session, key[0], connection.id, wanted
            )
            outcome = Outcome(status="success", readable=len(wanted), added=added, removed=removed)
        _log(key, outcome)
        return outcome

    async def _rejected(
        self,
        key: Key,
        connection: Connection,
        started: datetime,
        read: tuple[datetime | None, datetime],
        message: str,
    ) -> Outcome | None:
        """Record the refusal; past the grace, remove the grants.

        Only for the account this sync read, as `_keep` (None otherwise).
        """
        since, linked_at = read[0] or started, read[1]
        grace = timedelta(seconds=self._settings.permissions_rejected_grace)
        async with self._worker_sessions.begin() as session:
            outcome = Outcome(status="rejected", error=message)
            written = await self._write_outcome(
                session,
                key,
                started,
                outcome,
                rejected_since=since,
                due_by=since + grace,
                linked_at=linked_at,
            )
            if not written:
                return None
            if started >= since + grace:  # the grace is over: the token's grants stop
                _, removed = await self._access.keep_codehost_grants(
                    session, key[0], connection.id, ()
                )
                outcome = Outcome(status="rejected", removed=removed, error=message)
        _log(key, outcome)
        return outcome

    async def _record(self, key: Key, started: datetime, outcome: Outcome) -> Outcome:
        async with self._worker_sessions.begin() as session:
            await self._write_outcome(session, key, started, outcome)
        _log(key, outcome)
        return outcome

    async def _write_outcome(
        self,
        session: AsyncSession,
        key: Key,
        started: datetime,
        outcome: Outcome,
        *,
        rejected_since: datetime | None = None,
        due_by: datetime | None = None,
        linked_at: datetime | None = None,
    ) -> bool:
        """The account's bookkeeping; a "sync now" asked while it ran stays due.

        Whether the account is still there (and, with `linked_at`, still the one linked
        then): the row this writes is also what a concurrent unlink waits for.

        The next sync is an interval away (±10%), or at `due_by` if that comes first
        and has not passed (a refused token's grants end on time).
        """
        at = now()
        spread = self._random.uniform(0.9, 1.1)
        following = at + timedelta(seconds=self._settings.permissions_sync_interval * spread)
        if due_by is not None and at < due_by < following:
            following = due_by
        column = CodeHostAccount.next_sync_at
        asked_meanwhile = and_(column >= started, column <= at)
        values: dict[str, object] = {
            "last_sync_at": started,
            "last_status": outcome.status,
            "last_error": outcome.error,
            "rejected_since": rejected_since,
            "next_sync_at": case((asked_meanwhile, column), else_=following),
        }
        if outcome.status == "success":
            values["readable"] = outcome.readable
        elif outcome.status == "failed":
            del values["rejected_since"]  # a failure says nothing about the token
        still = [_is(key)]
        if linked_at is not None:
            still.append(CodeHostAccount.linked_at == linked_at)
        written = await session.execute(update(CodeHostAccount).where(*still).values(**values))
        return bool(written.rowcount)  # type: ignore[attr-defined]

    # The loop's side --------------------------------------------------------------------------

    async def claim_due(self, limit: int, skip: set[Key]) -> list[Key]:
        """Claim up to `limit` due accounts not in `skip`: each moved a lease ahead."""
        at = now()
        async with self._worker_sessions() as session:
            due = (
                await session.execute(
                    select(CodeHostAccount.user_id, CodeHostAccount.code_host_id)
                    .where(CodeHostAccount.next_sync_at <= at)
                    .order_by(CodeHostAccount.next_sync_at)
                    .limit(limit + len(skip))
                )
            ).all()
        claimed: list[Key] = []
        for user_id, code_host_id in due:
            key = (user_id, code_host_id)
            if key in skip or len(claimed) >= limit:
                continue
            async with self._worker_sessions.begin() as session:
                won = await session.execute(
                    update(CodeHostAccount)
                    .where(_is(key), CodeHostAccount.next_sync_at <= at)
                    .values(next_sync_at=at + LEASE)
                )
            if won.rowcount:  # type: ignore[attr-defined]
                claimed.append(key)
        return claimed

    async def sync_claimed(self, key: Key) -> Outcome | None:
        """Sync a claimed account, keeping its claim while the host is listed."""
        async with renewing(lambda: self._renew(key), LEASE.total_seconds() / 3):
            return await self.sync_account(*key)

    async def next_due(self) -> datetime | None:
        """When the next account is due (a claimed one: when its claim ends); None: none."""
        async with self._worker_sessions() as session:
            return await session.scalar(select(func.min(CodeHostAccount.next_sync_at)))

    async def _renew(self, key: Key) -> None:
        at = now()
        async with self._worker_sessions.begin() as session:
            await session.execute(
                update(CodeHostAccount)
                .where(_is(key), CodeHostAccount.next_sync_at > at)  # not asked again meanwhile
                .values(next_sync_at=at + LEASE)
            )

    # Reading ----------------------------------------------------------------------------------

    async def _one(self, key: Key) -> AccountRecord:
        (found,) = await self._records(_is(key))
        return found

    async def _records(self, condition: ColumnElement[bool] | None) -> list[AccountRecord]:
        a = CodeHostAccount
        statement = (
            select(a, User.name, CodeHost.name, CodeHost.kind)
            .join(User, User.id == a.user_id)
            .join(CodeHost, CodeHost.id == a.code_host_id)
            .order_by(User.name, CodeHost.name)
        )
        if condition is not None:
            statement = statement.where(condition)
        async with self._sessions() as session:
            rows = (await session.execute(statement)).all()
        return [
            AccountRecord(
                user=user,
                code_host_id=row.code_host_id,
                code_host=host,
                kind=kind.value,
                has_token=bool(row.sealed_token),
                linked_at=row.linked_at,
                next_sync_at=row.next_sync_at,
                last_sync_at=row.last_sync_at,
                last_status=row.last_status,
                last_error=row.last_error,
                rejected_since=row.rejected_since,
                readable=row.readable,
            )
            for row, user, host, kind in rows
        ]

    def _pages_of(self, key: Key) -> dict[str, CachedPage]:
        """The account's cached pages, now the most recently used; the oldest dropped."""
        pages = self._caches.pop(key, None)
        if pages is None:
            pages = {}
        self._caches[key] = pages
        while len(self._caches) > CACHED_ACCOUNTS:
            self._caches.popitem(last=False)
        return pages

    def _wake(self) -> None:
        if self.on_sync_requested is not None:
            self.on_sync_requested()


class PermissionSyncLoop(BackgroundLoop):
    """Syncs each due linked account, a few at a time; `wake()` it after a link or a request."""

    name = "permissions.sync"

    def __init__(
        self,
        permsync: PermissionSync,
        *,
        poll_interval: float,
        concurrency: int = 4,
        changed: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(interval=poll_interval, ceiling=IDLE_CEILING, changed=changed)
        self._permsync = permsync
        self._concurrency = concurrency
        self._running: dict[Key, asyncio.Task[None]] = {}  # the in-process guard

    @classmethod
    def from_services(
        cls, services: Services, *, changed: Callable[[], bool] | None = None
    ) -> PermissionSyncLoop:
        """A loop over an opened set of services."""
        return cls(
            services.permsync, poll_interval=services.settings.sync_poll_interval, changed=changed
        )

    async def step(self) -> float | None:
        """Claim due accounts and sync them; seconds until the next is due."""
        free = self._concurrency - len(self._running)
        if free > 0:
            for key in await self._permsync.claim_due(free, set(self._running)):
                task = asyncio.create_task(self._sync(key), name=f"permissions-sync-{key}")
                self._running[key] = task
        at = await self._permsync.next_due()
        return until_due(at, busy=bool(self._running), interval=self.interval)

    async def stopped(self) -> None:
        """Cancel running syncs (their claims expire, so they run again)."""
        await cancel_all(self._running.values())

    async def _sync(self, key: Key) -> None:
        try:
            await self._permsync.sync_claimed(key)
        except Exception:  # recorded nowhere else: log it; the claim's expiry retries it
            logger.exception("permission sync crashed", extra=_extra(key, "permissions.sync"))
        finally:
            self._running.pop(key, None)
            self.wake()


async def _linkable(session: AsyncSession, code_host_id: int) -> CodeHost:
    """The connection an account may be linked on; NotFound, InvalidInput for `other`."""
    host = await session.get(CodeHost, code_host_id)
    if host is None:
        raise NotFound(f"no code host connection with id {code_host_id}")
    if host.kind is CodeHostKind.other:
        raise InvalidInput(
            f"connection {host.name!r} is an `other` connection, which has no API: "
            "it has no account to link",
            field="connection",
        )
    return host


def _is(key: Key) -> ColumnElement[bool]:
    return and_(CodeHostAccount.user_id == key[0], CodeHostAccount.code_host_id == key[1])


def _extra(key: Key, action: str) -> dict[str, object]:
    return {"action": action, "user_id": key[0], "code_host_id": key[1]}


def _log(key: Key, outcome: Outcome) -> None:
    logger.info(
        "permission sync of user %d on connection %d: %s, %d readable, +%d -%d",
        key[0],
        key[1],
        outcome.status,
        outcome.readable,
        outcome.added,
        outcome.removed,
        extra={**_extra(key, "permissions.sync"), "status": outcome.status},
    )
