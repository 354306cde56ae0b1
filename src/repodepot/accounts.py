"""Users, API tokens and who may do what.

Tokens are `rdp_` followed by 43 random URL-safe characters; only their SHA-256
is stored, so a database dump gives no one a way in.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from repodepot.caches import IDENTITY, Caches, Lookup
from repodepot.db.base import AnyRow, Sessions, uncached
from repodepot.db.models import ApiToken, LoginSession, Role, User
from repodepot.exceptions import (
    AlreadyExists,
    ConfigurationError,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    PermissionDenied,
)
from repodepot.pagination import Page, paginate

logger = logging.getLogger(__name__)
TOKEN_PREFIX = "rdp_"
USER_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")
MIN_ADMIN_TOKEN_LENGTH = 20
# Writing last_used_at on every request would make each read a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_TOKENS = cast(Table, ApiToken.__table__)
# A token's last use, written unless the one on record is within LAST_USED_RESOLUTION.
_LAST_USE = (
    update(_TOKENS)
    .where(
        _TOKENS.c.id == bindparam("token_id"),
        or_(_TOKENS.c.last_used_at.is_(None), _TOKENS.c.last_used_at < bindparam("before")),
    )
    .values(last_used_at=bindparam("at"))
)


@dataclass(frozen=True, kw_only=True, slots=True)
class UserRecord:
    """A user as the rest of the code sees it."""

    id: int
    name: str
    role: Role
    created_at: datetime
    disabled: bool

    @classmethod
    def from_row(cls, user: User | AnyRow) -> UserRecord:
        """Build from a `users` row (an object or Core columns)."""
        return cls(
            id=user.id,
            name=user.name,
            role=user.role,
            created_at=user.created_at,
            disabled=user.disabled_at is not None,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenRecord:
    """A token's metadata; the token itself is never kept."""

    id: int
    user_name: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def from_row(cls, token: ApiToken, user_name: str) -> TokenRecord:
        """Build from an `api_tokens` row and its user's name."""
        return cls(
            id=token.id,
            user_name=user_name,
            name=token.name,
            prefix=token.prefix,
            created_at=token.created_at,
            last_used_at=token.last_used_at,
            revoked_at=token.revoked_at,
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class Principal:
    """Who is making a request, and with which token."""

    user: UserRecord
    token_id: int

    @property
    def is_admin(self) -> bool:
        """Admins may do everything."""
        return self.user.role is Role.admin

    @property
    def is_anonymous(self) -> bool:
        """Nobody signed in: a request without a token or a login (`ANONYMOUS`)."""
        return self.user.id == ANONYMOUS_ID

    def require_admin(self) -> None:
        """Raise PermissionDenied unless an admin is asking."""
        if not self.is_admin:
            raise PermissionDenied("only admins may do this")


ANONYMOUS_ID = -1
# Who asks without a token or a login: may read public repositories only.
ANONYMOUS = Principal(
    user=UserRecord(
        id=ANONYMOUS_ID,
        name="(anonymous)",
        role=Role.member,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        disabled=False,
    ),
    token_id=0,
)


def operator() -> Principal:
    """The person at this machine's shell (the CLI): an admin without a token."""
    user = UserRecord(
        id=0, name="(operator)", role=Role.admin, created_at=datetime.now(UTC), disabled=False
    )
    return Principal(user=user, token_id=0)


def new_token() -> str:
    """A fresh random API token."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The stored form of a token: hex SHA-256 (tokens are random, so no salt or stretching)."""
    return hashlib.sha256(token.encode()).hexdigest()


def validate_user_name(name: str) -> str:
    """Return the name, or raise InvalidInput naming the `name` field."""
    if not USER_NAME.fullmatch(name):
        raise InvalidInput(
            "user names are 1-64 lowercase letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit",
            field="name",
        )
    return name


@dataclass(slots=True)
class _Holder:
    """A found token's principal, kept in memory, and when it was last recorded as used."""

    principal: Principal
    last_used_at: datetime | None


# Who holds a live token (`key`: its hash), with when it was last used: a hot read
# (`Sessions.read`, every API request before its cache holds it), built once.
_HOLDER = (
    select(
        ApiToken.id.label("token_id"),
        ApiToken.last_used_at,
        *(User.id, User.name, User.role, User.created_at, User.disabled_at),
    )
    .join(User)
    .where(
        ApiToken.token_hash == bindparam("key"),
        ApiToken.revoked_at.is_(None),
        User.disabled_at.is_(None),
    )
)


class Accounts:
    """Users and tokens, over a session factory.

    Who holds a token, and whose a login session is, are kept in memory (`caches`):
    dropped here when this module revokes or ends one, and from other processes'
    changes within a second (repodepot.caches).
    """

    def __init__(self, sessions: Sessions, *, caches: Caches | None = None) -> None:
        self._sessions = sessions
        self._caches = caches or Caches(ttl=0)
        self._tokens: Lookup[str, _Holder] = self._caches.lookup(IDENTITY, "tokens")
        self._uses: dict[int, datetime] = {}
        self._flushing: asyncio.Task[None] | None = None
        self._logins: Lookup[str, tuple[Principal, datetime]] = self._caches.lookup(
            IDENTITY, "sessions"
        )

    async def create_user(self, name: str, role: Role = Role.member) -> UserRecord:
        """Create a user; raises InvalidInput for a bad name, AlreadyExists for a taken one."""
        validate_user_name(name)
        async with self._sessions.begin() as session:
            user = User(name=name, role=role)
            session.add(user)
            try:
                await session.flush()
            except IntegrityError:
                raise AlreadyExists(f"user {name!r} already exists", field="name") from None
            await session.refresh(user)
            return UserRecord.from_row(user)

    async def get_user(self, name: str) -> UserRecord:
        """The user called `name`; raises NotFound."""
        async with self._sessions() as session:
            user = await session.scalar(select(User).where(User.name == name))
            if user is None:
                raise NotFound(f"no user named {name!r}")
            return UserRecord.from_row(user)

    async def list_users(self, *, page: int = 1, per_page: int = 30) -> Page[UserRecord]:
        """Users by name."""
        async with self._sessions() as session:
            statement = select(User).order_by(User.name)
            return await paginate(
                session,
                statement,
                page=page,
                per_page=per_page,
                convert=lambda row: UserRecord.from_row(row[0]),
            )

    async def create_token(
        self, user_name: str, name: str = "default", *, token: str | None = None
    ) -> tuple[TokenRecord, str]:
        """Create a token for `user_name`; returns its record and the token, shown once.

        Raises NotFound for an unknown user and InvalidInput for an empty name.
        """
        name = name.strip()
        if not name or len(name) > 100:
            raise InvalidInput("a token name is 1-100 characters", field="name")
        secret = token or new_token()
        async with self._sessions.begin() as session:
            user = await session.scalar(select(User).where(User.name == user_name))
            if user is None:
                raise NotFound(f"no user named {user_name!r}", field="user")
            row = ApiToken(
                user_id=user.id,
                name=name,
                token_hash=hash_token(secret),
                prefix=secret[: len(TOKEN_PREFIX) + 4],
            )
            session.add(row)
            await session.flush()
            await session.refresh(row)
            return TokenRecord.from_row(row, user.name), secret

    async def list_tokens(
        self, *, user_name: str | None = None, page: int = 1, per_page: int = 30
    ) -> Page[TokenRecord]:
        """Tokens, newest first, of one user or of everyone."""
        statement = select(ApiToken, User.name).join(User).order_by(ApiToken.id.desc())
        if user_name is not None:
            statement = statement.where(User.name == user_name)
        async with self._sessions() as session:
            return await paginate(
                session,
                statement,
                page=page,
                per_page=per_page,
                convert=lambda row: TokenRecord.from_row(*row),
            )

    async def revoke_token(self, token_id: int, *, by: Principal | None = None) -> TokenRecord:
        """Revoke a token (idempotent); `by` may revoke only its own unless admin (None: CLI)."""
        async with self._sessions.begin() as session:
            row = (
                await session.execute(
                    select(ApiToken, User.name).join(User).where(ApiToken.id == token_id)
                )
            ).one_or_none()
            if row is None or (by is not None and not by.is_admin and row[0].user_id != by.user.id):
                raise NotFound(f"no token with id {token_id}")
            token = row[0]
            if token.revoked_at is None:
                token.revoked_at = datetime.now(UTC)
            record = TokenRecord.from_row(token, row[1])
        self._caches.changed([IDENTITY])
        return record

    async def authenticate(self, token: str) -> Principal:
        """The principal holding `token`; raises NotAuthenticated for unknown or revoked tokens.

        A read: the database is asked only when the token is not in memory, and written
        only to record its use, at most once a minute (LAST_USED_RESOLUTION).
        """
        if not token.startswith(TOKEN_PREFIX) and len(token) < MIN_ADMIN_TOKEN_LENGTH:
            raise NotAuthenticated("the API token is not valid")
        key = hash_token(token)
        await self._caches.refresh()
        holder = await self._tokens.load(key, lambda: self._holder(key))
        if holder is None:
            raise NotAuthenticated("the API token is not valid")
        now = datetime.now(UTC)
        if holder.last_used_at is None or holder.last_used_at < now - LAST_USED_RESOLUTION:
            holder.last_used_at = now
            self._uses[holder.principal.token_id] = now
            if self._flushing is None or self._flushing.done():
                # Written beside the request, never in its way: a busy database (SQLite's
                # one writer) must not fail or slow a read for a bookkeeping write.
                self._flushing = asyncio.create_task(self._flush(), name="token-uses")
        return holder.principal

    async def _holder(self, key: str) -> _Holder | None:
        row = await self._sessions.read(
            lambda connection: connection.execute(_HOLDER, {"key": key}).one_or_none()
        )
        if row is None:
            return None
        principal = Principal(user=UserRecord.from_row(row), token_id=row.token_id)
        return _Holder(principal, row.last_used_at)

    async def flush_uses(self) -> None:
        """Write the tokens' last uses recorded in memory (after a flush under way ends).

        A failure (a database busy past its timeout) is logged and the uses are kept for
        the next flush.
        """
        running = self._flushing
        if running is not None and running is not asyncio.current_task():
            await asyncio.shield(running)
        await self._flush()

    async def _flush(self) -> None:
        while self._uses:
            uses, self._uses = self._uses, {}
            try:
                async with self._sessions.begin() as session:
                    # One statement for all (executemany): a statement each was a round
                    # trip each with SQLite's write lock held, seconds on a busy server.
                    connection = await session.connection()
                    await connection.execute(
                        _LAST_USE,
                        [
                            {"token_id": token_id, "at": at, "before": at - LAST_USED_RESOLUTION}
                            for token_id, at in uses.items()
                        ],
                    )
                    uncached(session)  # a use, not a change of who holds the token
            except Exception:
                logger.warning(
                    "tokens' last use not written; kept for the next flush",
                    exc_info=True,
                    extra={"action": "tokens.last_used", "count": len(uses)},
                )
                self._uses = {**uses, **self._uses}
                return

    async def open_session(self, caller: Principal, *, lifetime: timedelta) -> str:
        """Start a login session for `caller`; returns the id its cookie carries, shown once.

        Only the id's SHA-256 is stored. The user's ended sessions are deleted here, so the
        table holds the live ones and no more than a login's worth of dead ones.
        """
        session_id = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        async with self._sessions.begin() as session:
            await session.execute(
                delete(LoginSession).where(
                    LoginSession.user_id == caller.user.id,
                    (LoginSession.expires_at < now) | LoginSession.revoked_at.is_not(None),
                )
            )
            session.add(
                LoginSession(
                    id=hash_token(session_id),
                    user_id=caller.user.id,
                    token_id=caller.token_id,
                    expires_at=now + lifetime,
                )
            )
        return session_id

    async def check_session(self, session_id: str) -> Principal:
        """The principal of a live login session; else NotAuthenticated.

        A session ends when it is logged out, when it expires, when the token it was opened
        with is revoked and when its user is disabled. One read by primary key.
        """
        key = hash_token(session_id)
        await self._caches.refresh()
        kept = self._logins.get(key)
        if kept is not None and kept[1] > datetime.now(UTC):
            return kept[0]
        generation = self._logins.generation
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(User, LoginSession.token_id, LoginSession.expires_at)
                    .join(LoginSession, LoginSession.user_id == User.id)
                    .join(ApiToken, ApiToken.id == LoginSession.token_id)
                    .where(
                        LoginSession.id == key,
                        LoginSession.revoked_at.is_(None),
                        LoginSession.expires_at > datetime.now(UTC),
                        ApiToken.revoked_at.is_(None),
                        User.disabled_at.is_(None),
                    )
                )
            ).one_or_none()
        if row is None:
            raise NotAuthenticated("your session has ended; log in again")
        user, token_id, expires_at = row
        principal = Principal(user=UserRecord.from_row(user), token_id=token_id)
        self._logins.put(key, (principal, expires_at), generation)
        return principal

    async def close_session(self, session_id: str) -> None:
        """Log a session out: its cookie no longer authenticates anyone (idempotent)."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(LoginSession)
                .where(LoginSession.id == hash_token(session_id), LoginSession.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
        self._caches.changed([IDENTITY])

    async def bootstrap_admin(self, admin_token: str | None) -> str | None:
        """On an empty database, create the `admin` user.

        Its token is `admin_token` when given (returns None), else a new one, returned to be
        shown once. Does nothing when any user exists.
        """
        if admin_token is not None and len(admin_token) < MIN_ADMIN_TOKEN_LENGTH:
            raise ConfigurationError(
                f"REPODEPOT_ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_LENGTH} characters",
                field="REPODEPOT_ADMIN_TOKEN",
            )
        async with self._sessions() as session:
            if await session.scalar(select(func.count()).select_from(User)):
                return None
        try:
            await self.create_user("admin", Role.admin)
        except AlreadyExists:
            return None  # another process bootstrapped first
        _, token = await self.create_token("admin", "bootstrap", token=admin_token)
        return None if admin_token else token
