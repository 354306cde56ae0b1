"""Code host connections: add, change, remove, ask for a sync, read the history. Admins only."""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from repodepot import audit, repositories
from repodepot.accounts import Principal
from repodepot.batches import chunks
from repodepot.clock import now
from repodepot.codehosts import store
from repodepot.codehosts.config import (
    AnyConfig,
    HostConfig,
    dump_config,
    parse_config,
    split_secrets,
)
from repodepot.codehosts.deliveries import Deliveries
from repodepot.codehosts.syncer import Syncer
from repodepot.db.models import CodeHost, CodeHostKind, CodeHostSync, SyncStatus
from repodepot.exceptions import AlreadyExists, InvalidInput, NotFound
from repodepot.gitserver.service import resume_failing_in
from repodepot.pagination import Page, paginate
from repodepot.repositories import synced
from repodepot.secrets import SecretBox, SecretUnreadable
from repodepot.settings import Settings

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}")
HELD_SHOWN = 100


@dataclass(frozen=True, kw_only=True, slots=True)
class SyncRecord:
    """One sync of a connection."""

    id: int
    started_at: datetime
    finished_at: datetime
    status: SyncStatus
    yielded: int
    added: int
    modified: int
    deleted: int
    unchanged: int
    held: int
    skipped: int
    api_calls: int
    not_modified: int
    duration_ms: int
    error: str | None
    warnings: list[str]

    @classmethod
    def from_row(cls, row: CodeHostSync) -> SyncRecord:
        """Build from a `code_host_syncs` row."""
        values = {name: getattr(row, name) for name in cls.__dataclass_fields__}
        values["warnings"] = json.loads(row.warnings)
        return cls(**values)


@dataclass(frozen=True, kw_only=True, slots=True)
class CodeHostRecord:
    """A connection as the API shows it: the token only as set / not set."""

    id: int
    kind: CodeHostKind
    name: str
    config: dict[str, Any]
    token_set: bool
    webhook_secret_set: bool
    created_at: datetime
    updated_at: datetime
    next_sync_at: datetime
    syncing: bool
    last_sync_at: datetime | None
    last_status: SyncStatus | None
    last_error: str | None
    repo_count: int
    held_deletions: int
    held_repositories: list[str]
    last_sync: SyncRecord | None


class CodeHosts:
    """The connections and their sync history; every method wants an admin."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        box: SecretBox,
        settings: Settings,
        syncer: Syncer,
    ) -> None:
        self._sessions = sessions
        self._box = box
        self._settings = settings
        self.syncer = syncer
        self.on_sync_requested: Callable[[], None] | None = None
        self.deliveries = Deliveries()  # webhook deliveries seen lately: replays are not queued

    def _validate(self, kind: str, raw: Any) -> tuple[CodeHostKind, AnyConfig, dict[str, str]]:
        try:
            checked_kind = CodeHostKind(kind)
        except ValueError:
            kinds = ", ".join(member.value for member in CodeHostKind)
            raise InvalidInput(f"kind {kind!r} is not one of {kinds}", field="kind") from None
        if not isinstance(raw, dict):
            raise InvalidInput("config must be an object", field="config")
        config, _ = parse_config(checked_kind, raw)
        _, secrets = split_secrets(raw)
        url = getattr(config, "url", None)
        scheme = url.split("://", 1)[0] if url else None
        if scheme is not None and scheme not in self._settings.allowed_schemes:
            raise InvalidInput(
                f"config.url: {scheme} is not in REPODEPOT_ALLOWED_SCHEMES "
                f"({', '.join(self._settings.allowed_schemes)})",
                field="config.url",
            )
        return checked_kind, config, secrets

    def _seal(self, row: CodeHost, secrets: dict[str, str]) -> None:
        if "token" in secrets:
            row.sealed_token = self._box.seal(secrets["token"])
        if "webhookSecret" in secrets:
            row.sealed_webhook_secret = self._box.seal(secrets["webhookSecret"])

    @staticmethod
    def _check_name(name: str) -> str:
        if not _NAME.fullmatch(name):
            raise InvalidInput(
                f"{name!r} is not a valid connection name: 1-100 letters, digits, "
                "spaces, '.', '_' or '-', starting with a letter or digit",
                field="name",
            )
        return name

    async def create(
        self, caller: Principal, *, kind: str, name: str, config: Any
    ) -> CodeHostRecord:
        """Add a connection; it syncs as soon as the updater sees it."""
        caller.require_admin()
        checked_kind, checked, secrets = self._validate(kind, config)
        row = CodeHost(
            kind=checked_kind,
            name=self._check_name(name),
            config=json.dumps(dump_config(checked), sort_keys=True),
            next_sync_at=now(),
        )
        self._seal(row, secrets)
        async with self._sessions.begin() as session:
            session.add(row)
            try:
                await session.flush()
            except IntegrityError:
                raise AlreadyExists(f"a connection named {name!r} exists", field="name") from None
            await audit.record(
                session, caller.user.id, "codehost.create", name, {"kind": checked_kind.value}
            )
        self._wake()
        return await self.get(caller, row.id)

    async def update(
        self, caller: Principal, host_id: int, *, name: str | None, config: Any | None
    ) -> CodeHostRecord:
        """Rename, or replace the config (the token is kept unless a new one is given)."""
        caller.require_admin()
        async with self._sessions.begin() as session:
            row = await self._row(session, host_id)
            changed: list[str] = []
            if name is not None and name != row.name:
                row.name = self._check_name(name)
                changed.append("name")
            if config is not None:
                _, checked, secrets = self._validate(row.kind.value, config)
                row.config = json.dumps(dump_config(checked), sort_keys=True)
                changed.append("config")
                self._seal(row, secrets)
                changed.extend(sorted(secrets))
                if "token" in secrets:  # new credentials: failing mirrors try again now
                    for batch in chunks(await store.linked(session, host_id)):
                        await resume_failing_in(session, batch)
                row.next_sync_at = now()
            row.updated_at = now()
            try:
                await session.flush()
            except IntegrityError:
                raise AlreadyExists(f"a connection named {name!r} exists", field="name") from None
            await audit.record(
                session, caller.user.id, "codehost.update", row.name, {"changed": changed}
            )
        if config is not None:
            self._wake()
        return await self.get(caller, host_id)

    async def remove(self, caller: Principal, host_id: int) -> int:
        """Delete the connection; repositories only it yielded are soft-deleted (count returned)."""
        caller.require_admin()
        async with self._sessions.begin() as session:
            row = await self._row(session, host_id)
            linked = await store.linked(session, host_id)
            deleted = await store.release(session, host_id, linked, now())
            await session.delete(row)
            await audit.record(
                session, caller.user.id, "codehost.remove", row.name, {"deleted": deleted}
            )
        return deleted

    async def webhook_secrets(self, kind: CodeHostKind) -> list[tuple[int, str, str]]:
        """(id, identity host, secret) of each connection of `kind` with a webhook secret."""
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(CodeHost.id, CodeHost.config, CodeHost.sealed_webhook_secret).where(
                        CodeHost.kind == kind, CodeHost.sealed_webhook_secret.is_not(None)
                    )
                )
            ).all()
        found = []
        for host_id, raw, sealed in rows:
            try:
                config, _ = parse_config(kind, json.loads(raw))
                secret = self._box.open(sealed or "")
            except (InvalidInput, SecretUnreadable):
                continue
            host = config.identity_host if isinstance(config, HostConfig) else ""
            found.append((host_id, host, secret))
        return found

    async def request_sync(self, caller: Principal, host_id: int) -> datetime:
        """Make the connection due now; returns the time asked, for waiting on the result."""
        caller.require_admin()
        asked = now()
        async with self._sessions.begin() as session:
            await self._row(session, host_id)
            await session.execute(
                update(CodeHost).where(CodeHost.id == host_id).values(next_sync_at=asked)
            )
        self._wake()
        return asked

    async def confirm_deletions(self, caller: Principal, host_id: int) -> int:
        """Carry out the deletions the last sync held; returns how many were deleted."""
        caller.require_admin()
        async with self._sessions() as session:
            row = await self._row(session, host_id)
            held = len(json.loads(row.held_deletions or "[]"))
        if not held:
            raise InvalidInput(f"connection {row.name!r} has no held deletions")
        deleted = await self.syncer.apply_held(host_id)
        async with self._sessions.begin() as session:
            await audit.record(
                session,
                caller.user.id,
                "codehost.confirm_deletions",
                row.name,
                {"held": held, "deleted": deleted},
            )
        return deleted

    async def list(self, caller: Principal) -> list[CodeHostRecord]:
        """Every connection, by name."""
        caller.require_admin()
        async with self._sessions() as session:
            rows = (await session.scalars(select(CodeHost).order_by(CodeHost.name))).all()
            return [await self._record(session, row) for row in rows]

    async def linkable(self) -> builtins.list[tuple[int, str, CodeHostKind]]:
        """Each connection a user may link their own account on (it has an API), by name.

        Their ids, names and kinds only: what a signed-in user needs to pick one.
        """
        async with self._sessions() as session:
            rows = await session.execute(
                select(CodeHost.id, CodeHost.name, CodeHost.kind)
                .where(CodeHost.kind != CodeHostKind.other)
                .order_by(CodeHost.name)
            )
            return [(row.id, row.name, row.kind) for row in rows]

    async def get(self, caller: Principal, host_id: int) -> CodeHostRecord:
        """One connection with its last sync."""
        caller.require_admin()
        async with self._sessions() as session:
            return await self._record(session, await self._row(session, host_id))

    async def find(self, caller: Principal, id_or_name: str) -> CodeHostRecord:
        """A connection by id or by name."""
        caller.require_admin()
        async with self._sessions() as session:
            if id_or_name.isdigit():
                row = await session.get(CodeHost, int(id_or_name))
            else:
                row = await session.scalar(select(CodeHost).where(CodeHost.name == id_or_name))
            if row is None:
                raise NotFound(f"no code host connection {id_or_name!r}")
            return await self._record(session, row)

    async def history(
        self, caller: Principal, host_id: int, *, page: int = 1, per_page: int = 30
    ) -> Page[SyncRecord]:
        """The connection's syncs, newest first."""
        caller.require_admin()
        async with self._sessions() as session:
            await self._row(session, host_id)
            statement = (
                select(CodeHostSync)
                .where(CodeHostSync.code_host_id == host_id)
                .order_by(CodeHostSync.id.desc())
            )
            return await paginate(
                session,
                statement,
                page=page,
                per_page=per_page,
                convert=lambda row: SyncRecord.from_row(row[0]),
            )

    async def _row(self, session: AsyncSession, host_id: int) -> CodeHost:
        row = await session.get(CodeHost, host_id)
        if row is None:
            raise NotFound(f"no code host connection {host_id}")
        return row

    async def _record(self, session: AsyncSession, row: CodeHost) -> CodeHostRecord:
        # The last sync first: each read sees the latest commit (no transaction), so a
        # sync that commits in between shows with the count after it, never the count
        # before it beside a sync that says it ran.
        last = await session.scalar(
            select(CodeHostSync)
            .where(CodeHostSync.code_host_id == row.id)
            .order_by(CodeHostSync.id.desc())
            .limit(1)
        )
        count = await synced.count_live_among(session, store.linked_ids(row.id))
        held: list[int] = json.loads(row.held_deletions or "[]")
        shown = await repositories.names_of(session, held[:HELD_SHOWN]) if held else {}
        config = json.loads(row.config)
        return CodeHostRecord(
            id=row.id,
            kind=row.kind,
            name=row.name,
            config=config,
            token_set=row.sealed_token is not None,
            webhook_secret_set=row.sealed_webhook_secret is not None,
            created_at=row.created_at,
            updated_at=row.updated_at,
            next_sync_at=row.next_sync_at,
            syncing=row.lease_until is not None and row.lease_until > now(),
            last_sync_at=row.last_sync_at,
            last_status=row.last_status,
            last_error=row.last_error,
            repo_count=count,
            held_deletions=len(held),
            held_repositories=sorted(shown.values()),
            last_sync=SyncRecord.from_row(last) if last is not None else None,
        )

    def _wake(self) -> None:
        if self.on_sync_requested is not None:
            self.on_sync_requested()
