"""The owner of `repositories` (and, in `credentials`, `repository_credentials`).

Every row of a repository is created, renamed, soft-deleted and updated here, for imports
and code host syncs alike; other modules call these functions, often with their own
session so that a change here commits with theirs (the mirror's state and what it says
of its repository, an import's end and its repository). Who may see which repository is
decided here too (`visible_to`).
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Exists,
    Select,
    bindparam,
    func,
    insert,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from repodepot import access, audit
from repodepot.access import Access
from repodepot.accounts import Principal
from repodepot.caches import ACCESS, REPOSITORIES, Caches, Lookup
from repodepot.clock import now
from repodepot.db.base import AnyRow, Sessions
from repodepot.db.models import Repository, User, Visibility
from repodepot.exceptions import AlreadyExists, InvalidInput, NotFound, PermissionDenied
from repodepot.git.redact import strip_credentials
from repodepot.goproxy.versions import BadPath, check_module_path, default_root
from repodepot.pagination import Page, paginate
from repodepot.repositories import credentials
from repodepot.secrets import SecretBox
from repodepot.storage import MAX_NAME, validate_repo_name
from repodepot.types import RepoName


@dataclass(frozen=True, kw_only=True, slots=True)
class RepositoryRecord:
    """A repository as the rest of the code sees it."""

    id: int
    name: str
    owner: str | None
    visibility: Visibility
    description: str
    source_url: str | None
    default_branch: str | None
    size_bytes: int
    is_empty: bool
    created_at: datetime
    updated_at: datetime
    fork: bool
    archived: bool
    code_host_kind: str | None
    deleted_at: datetime | None
    go_import_root: str | None
    go_import_root_custom: bool

    @classmethod
    def from_row(cls, repo: AnyRow) -> RepositoryRecord:
        """Build from a row of `_KEPT` (the columns it needs and its owner's name)."""
        return cls(
            id=repo.id,
            name=repo.name,
            owner=repo.owner,
            visibility=repo.visibility,
            description=repo.description,
            source_url=repo.source_url,
            default_branch=repo.default_branch,
            size_bytes=repo.size_bytes,
            is_empty=repo.is_empty,
            created_at=repo.created_at,
            updated_at=repo.updated_at,
            fork=repo.fork,
            archived=repo.archived,
            code_host_kind=repo.external_kind,
            deleted_at=repo.deleted_at,
            go_import_root=repo.go_import_root or repo.go_default_root,
            go_import_root_custom=repo.go_import_root is not None,
        )


def visible_to(principal: Principal) -> ColumnElement[bool]:
    """The condition on `repositories` rows that `principal` may read: the one query.

    Admins: every row. Nobody signed in: `public` ones. A user: `public` and `internal`
    ones, their own, and those granted to them, to a group of theirs, or through a
    connection-wide grant to a group of theirs (`access.granted_ids`).
    """
    if principal.is_admin:
        return true()
    if principal.is_anonymous:
        return Repository.visibility == Visibility.public
    user_id = principal.user.id
    return (
        Repository.visibility.in_((Visibility.public, Visibility.internal))
        | (Repository.owner_id == user_id)
        | Repository.id.in_(access.granted_ids(user_id))
    )


def _listing_key(principal: Principal) -> int | str:
    """Whose listing `visible_to(principal)` is: one for admins, one for nobody, a user's."""
    if principal.is_admin:
        return "admins"
    return "anonymous" if principal.is_anonymous else principal.user.id


def readable_without_grants(
    principal: Principal, visibility: Visibility, owner_id: int | None
) -> bool:
    """`visible_to` for one row already loaded, as far as it goes without the grants."""
    if principal.is_admin or visibility is Visibility.public:
        return True
    if principal.is_anonymous:
        return False
    return visibility is Visibility.internal or (
        owner_id is not None and owner_id == principal.user.id
    )


@dataclass(frozen=True, slots=True)
class _Kept:
    """A live repository kept in memory: its record, its owner's id, when it was read."""

    record: RepositoryRecord
    owner_id: int | None
    read_at: datetime

    @classmethod
    def of(cls, row: AnyRow, read_at: datetime) -> _Kept:
        """From a row of `_KEPT`."""
        return cls(RepositoryRecord.from_row(row), row.owner_id, read_at)


def readable(principal: Principal) -> Select[int]:
    """The ids of the live repositories `principal` may read, for a caller's `IN (...)`."""
    return select(Repository.id).where(Repository.deleted_at.is_(None), visible_to(principal))


# A repository as a record and its access check need it: Core rows of those columns and
# the owner's name, built once (the hot reads run it through `Sessions.read`; building
# ORM objects cost more than the query).
_r = Repository
_KEPT = select(
    *(_r.id, _r.name, _r.owner_id, _r.visibility, _r.description, _r.source_url),
    *(_r.default_branch, _r.size_bytes, _r.is_empty, _r.created_at, _r.updated_at),
    *(_r.fork, _r.archived, _r.external_kind, _r.deleted_at),
    *(_r.go_import_root, _r.go_default_root),
    User.name.label("owner"),
).outerjoin(User, _r.owner_id == User.id)
_BY_NAME = _KEPT.where(Repository.name == bindparam("name"), Repository.deleted_at.is_(None))


class Repositories:
    """Repository rows, filtered by what the asking principal may see."""

    def __init__(
        self,
        sessions: Sessions,
        *,
        box: SecretBox | None = None,
        caches: Caches | None = None,
        access: Access | None = None,
    ) -> None:
        self._sessions = sessions
        self._box = box
        self._caches = caches or Caches(ttl=0)
        self.access = access or Access(sessions, caches=self._caches)
        # Live repositories by name, with their owner's id; dropped on any change to
        # `repositories` (repodepot.caches).
        self._by_name: Lookup[str, _Kept] = self._caches.lookup(REPOSITORIES, "repositories")
        self._by_roots: Lookup[tuple[str, ...], list[_Kept]] = self._caches.lookup(
            REPOSITORIES, "go roots"
        )
        # How many a caller may list (admins, nobody signed in, or a user's id; deleted or
        # not): counting every readable row on every page was most of a member's page
        # (`bench access`: page 1's p99 39.5 ms on SQLite with it, 17.0 without). Dropped
        # on any change to `repositories` or to grants, groups and links (access).
        self._totals: Lookup[tuple[int | str, bool], int] = self._caches.lookup(
            (REPOSITORIES, ACCESS), "listing totals", size=2_000
        )

    async def list(
        self,
        principal: Principal,
        *,
        page: int = 1,
        per_page: int = 30,
        deleted: bool = False,
        after: RepoName | None = None,
    ) -> Page[RepositoryRecord]:
        """The repositories `principal` may read, by name; soft-deleted ones when `deleted`.

        `after` continues the listing after that name (an index range, however deep); `page`
        then counts from there. `total` is always the whole listing's.
        """
        state = Repository.deleted_at.is_not(None) if deleted else Repository.deleted_at.is_(None)
        statement = _KEPT.where(visible_to(principal), state).order_by(Repository.name)
        await self._caches.refresh()
        key = (_listing_key(principal), deleted)
        generation = self._totals.generation
        async with self._sessions() as session:
            found = await paginate(
                session,
                statement,
                page=page,
                per_page=per_page,
                convert=lambda row: RepositoryRecord.from_row(row),
                rows=None if after is None else statement.where(Repository.name > after),
                total=self._totals.get(key),
            )
        self._totals.put(key, found.total, generation)
        return found

    async def get(
        self, principal: Principal, name: str, *, read_after: datetime | None = None
    ) -> RepositoryRecord:
        """Repository `name`; raises NotFound also when it exists but `principal` may not see it.

        From memory when it was read lately (and, with `read_after`, read after that
        moment) and nothing in `repositories` changed since.
        """
        if not _askable(name):  # no repository has one; PostgreSQL refuses a NUL outright
            raise NotFound(f"no repository named {name!r}")
        await self._caches.refresh()
        found = await self._by_name.load(name, lambda: self._load(name))
        if found is not None and read_after is not None and found.read_at < read_after:
            found = await self._load(name)
        if found is None or not await self.may_read(principal, found):
            raise NotFound(f"no repository named {name!r}")
        return found.record

    async def may_read(self, principal: Principal, found: _Kept) -> bool:
        """`visible_to` for one row already loaded: the one decision, for every surface."""
        record = found.record
        if readable_without_grants(principal, record.visibility, found.owner_id):
            return True
        if principal.is_anonymous:
            return False
        return record.id in await self.access.granted(principal)

    async def _load(self, name: str) -> _Kept | None:
        generation = self._by_name.generation
        read_at = now()
        row = await self._sessions.read(
            lambda connection: connection.execute(_BY_NAME, {"name": name}).one_or_none()
        )
        if row is None:
            return None
        found = _Kept.of(row, read_at)
        self._by_name.put(name, found, generation)  # also when read for `read_after`
        return found

    async def by_go_roots(
        self, principal: Principal, roots: Sequence[str]
    ) -> builtins.list[RepositoryRecord]:
        """The live repositories `principal` may read whose Go import root is one of `roots`.

        From memory, as `get`: every Go proxy request asks this first.
        """
        await self._caches.refresh()

        async def read() -> list[_Kept]:
            root_of = Repository.go_import_root
            statement = _KEPT.where(
                Repository.deleted_at.is_(None),
                or_(
                    root_of.in_(roots),
                    root_of.is_(None) & Repository.go_default_root.in_(roots),
                ),
            )
            read_at = now()
            rows = await self._sessions.read(lambda connection: connection.execute(statement).all())
            return [_Kept.of(row, read_at) for row in rows]

        found = await self._by_roots.load(tuple(roots), read) or []
        return [kept.record for kept in found if await self.may_read(principal, kept)]

    async def set_go_import_root(
        self, principal: Principal, name: str, root: str | None
    ) -> RepositoryRecord:
        """Set (or with None, reset to the default) the repository's Go import root.

        Raises InvalidInput for a root that is not a module path, AlreadyExists when
        another repository has it, NotFound as `get` does.
        """
        if root is not None:
            try:
                check_module_path(root)
            except BadPath as error:
                raise InvalidInput(str(error), field="go_import_root") from None
        repo = await self.get(principal, name)
        async with self._sessions.begin() as session:
            if root is not None:
                taken = await session.scalar(
                    select(Repository.name).where(
                        Repository.id != repo.id,
                        Repository.deleted_at.is_(None),
                        (Repository.go_import_root == root)
                        | (
                            Repository.go_import_root.is_(None)
                            & (Repository.go_default_root == root)
                        ),
                    )
                )
                if taken is not None:
                    raise AlreadyExists(
                        f"{taken!r} already has the Go import root {root!r}", field="go_import_root"
                    )
            await session.execute(
                update(Repository).where(Repository.id == repo.id).values(go_import_root=root)
            )
        return await self.get(principal, name)

    async def create(
        self,
        *,
        name: str,
        owner_id: int | None,
        visibility: Visibility = Visibility.private,
        source_url: str | None = None,
        description: str = "",
    ) -> RepositoryRecord:
        """Insert a repository row.

        Raises InvalidInput for a bad name, AlreadyExists for a taken one.
        """
        async with self._sessions.begin() as session:
            repository_id = await insert_in(
                session,
                name=name,
                owner_id=owner_id,
                visibility=visibility,
                source_url=source_url,
                description=description,
            )
            row = (await session.execute(_KEPT.where(Repository.id == repository_id))).one()
        return RepositoryRecord.from_row(row)

    async def set_credential(
        self, caller: Principal, name: str, *, username: str | None, token: str
    ) -> tuple[RepositoryRecord, bool]:
        """Keep `token` as the repository's fetch credential, replacing any; audited.

        Returns the repository and whether the credential changed (the same one again
        writes nothing). Its owner or an admin only (PermissionDenied); NotFound as
        `get`; InvalidInput for a repository with nothing to fetch from, or a bad token
        or username.
        """
        repo = await self.owned(caller, name)
        if repo.source_url is None:
            raise InvalidInput(f"{name!r} has no source to fetch from", field="name")
        username, token = credentials.check(username, token)
        assert self._box is not None, "Repositories was built without a SecretBox"
        async with self._sessions.begin() as session:
            changed = await credentials.put_in(
                session,
                self._box,
                repo.id,
                url=repo.source_url,
                username=username,
                token=token,
            )
            if changed:
                await audit.record(
                    session, caller.user.id, "repository.credential_set", repo.name, {}
                )
        return repo, changed

    async def remove_credential(self, caller: Principal, name: str) -> bool:
        """Forget the repository's fetch credential (audited); False when it had none."""
        repo = await self.owned(caller, name)
        async with self._sessions.begin() as session:
            removed = await credentials.remove_in(session, repo.id)
            if removed:
                await audit.record(
                    session, caller.user.id, "repository.credential_removed", repo.name, {}
                )
        return removed

    async def has_credential(self, repository_id: int) -> bool:
        """Whether the repository has a fetch credential of its own (never what it is)."""
        async with self._sessions() as session:
            return await credentials.has_credential(session, repository_id)

    async def owned(self, caller: Principal, name: str) -> RepositoryRecord:
        """Repository `name` if `caller` owns it or is an admin; PermissionDenied if not.

        NotFound as `get` when `caller` may not even read it.
        """
        repo = await self.get(caller, name)
        if not caller.is_admin and repo.owner != caller.user.name:
            raise PermissionDenied(f"only the owner of {name!r} or an admin may change that")
        return repo

    async def find_external(self, kind: str, host: str, external_id: str) -> int | None:
        """The live repository a host knows as `external_id`, if any."""
        async with self._sessions() as session:
            found: int | None = await session.scalar(
                select(Repository.id).where(
                    Repository.external_kind == kind,
                    Repository.external_host == host,
                    Repository.external_id == external_id,
                    Repository.deleted_at.is_(None),
                )
            )
        return found

    async def deleted_before(self, before: datetime, *, after: int, limit: int) -> dict[int, str]:
        """Repositories soft-deleted before `before` (id → name), ids above `after` ascending."""
        async with self._sessions() as session:
            rows = await session.execute(
                select(Repository.id, Repository.name)
                .where(
                    Repository.id > after,
                    Repository.deleted_at.is_not(None),
                    Repository.deleted_at < before,
                )
                .order_by(Repository.id)
                .limit(limit)
            )
            return {row.id: row.name for row in rows}

    async def names_by_id(self, principal: Principal, ids: Sequence[int]) -> dict[int, str]:
        """The names of those of `ids` that `principal` may read, by id (live ones only).

        Soft-deleted repositories, and ones `principal` may not read, are left out.
        """
        wanted = builtins.list(ids)
        return await self._sessions.read(
            lambda connection: readable_names_of(connection, principal, wanted)
        )

    async def still_deleted(self, repository_id: int) -> bool:
        """Whether the repository is soft-deleted now (a sync may restore it any time)."""
        async with self._sessions() as session:
            deleted_at = await session.scalar(
                select(Repository.deleted_at).where(Repository.id == repository_id)
            )
        return deleted_at is not None


@dataclass(frozen=True, kw_only=True, slots=True)
class MirrorFacts:
    """What a clone or fetch that changed refs found in the mirror, for its repository."""

    default_branch: str | None
    is_empty: bool
    size_bytes: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Source:
    """What a mirror needs of its repository: where to fetch, and whether to at all."""

    id: int
    name: str
    source_url: str | None
    host: str | None  # the code host's, for per-host limits; None: the URL's
    deleted: bool
    default_branch: str | None = None


def named(name: str) -> Exists:
    """Whether any repository, live or soft-deleted, has `name`, as a condition.

    For a caller's own SELECT, so that its question and theirs take one round trip.
    """
    return select(Repository.id).where(Repository.name == name).exists()


async def insert_in(
    session: AsyncSession,
    *,
    name: str,
    owner_id: int | None = None,
    owner_name: str | None = None,
    visibility: Visibility,
    source_url: str | None,
    description: str = "",
    facts: MirrorFacts | None = None,
) -> int:
    """Insert a repository in `session`'s transaction; returns its id.

    The owner is `owner_name`'s user when there is one, else `owner_id`. The source URL
    is stored without credentials, and gives the default Go import root. `facts`: what
    its mirror, already cloned, holds. Raises InvalidInput for a bad name, AlreadyExists
    for a taken one (live or soft-deleted).
    """
    known = (
        {}
        if facts is None
        else {
            "default_branch": facts.default_branch,
            "is_empty": facts.is_empty,
            "size_bytes": facts.size_bytes,
        }
    )
    validate_repo_name(name)
    owner: Any = owner_id
    if owner_name is not None:
        named = select(User.id).where(User.name == owner_name).scalar_subquery()
        owner = func.coalesce(named, owner_id)
    url = strip_credentials(source_url) if source_url else None
    try:  # the caller's transaction fails with it: nothing of theirs commits either
        created: int = (
            await session.execute(
                insert(Repository)
                .values(
                    name=name,
                    owner_id=owner,
                    visibility=visibility,
                    description=description,
                    source_url=url,
                    go_default_root=default_root(url),
                    **known,
                )
                .returning(Repository.id)
            )
        ).scalar_one()
    except IntegrityError:
        raise AlreadyExists(f"repository {name!r} already exists", field="name") from None
    return created


async def record_mirror(
    session: AsyncSession, repository_id: int, facts: MirrorFacts, *, changed_at: datetime
) -> None:
    """What a clone or fetch found in the mirror: the one truth the page and API show."""
    await session.execute(
        update(Repository)
        .where(Repository.id == repository_id)
        .values(
            default_branch=facts.default_branch,
            is_empty=facts.is_empty,
            size_bytes=facts.size_bytes,
            updated_at=changed_at,
        )
    )


async def record_size(session: AsyncSession, repository_id: int, size_bytes: int) -> None:
    """The mirror's size after maintenance (a repack shrinks it)."""
    await session.execute(
        update(Repository).where(Repository.id == repository_id).values(size_bytes=size_bytes)
    )


async def sources_of(session: AsyncSession, ids: list[int]) -> dict[int, Source]:
    """Where each of the repositories `ids` fetches from."""
    rows = await session.execute(
        select(
            Repository.id,
            Repository.name,
            Repository.source_url,
            Repository.external_host,
            Repository.deleted_at,
            Repository.default_branch,
        ).where(Repository.id.in_(ids))
    )
    return {
        row.id: Source(
            id=row.id,
            name=row.name,
            source_url=row.source_url,
            host=row.external_host,
            deleted=row.deleted_at is not None,
            default_branch=row.default_branch,
        )
        for row in rows
    }


async def live_with_source(session: AsyncSession, *, after: int, limit: int) -> list[int]:
    """Ids of live repositories with a source URL, above `after`, ascending (a walk)."""
    rows = await session.scalars(
        select(Repository.id)
        .where(
            Repository.id > after,
            Repository.deleted_at.is_(None),
            Repository.source_url.is_not(None),
        )
        .order_by(Repository.id)
        .limit(limit)
    )
    return list(rows)


def readable_names_of(
    connection: Connection, principal: Principal, ids: list[int]
) -> dict[int, str]:
    """The names of those of `ids` that `principal` may read (live ones only).

    A reader for `Sessions.read`.
    """
    if not ids:
        return {}
    rows = connection.execute(
        select(Repository.id, Repository.name).where(
            Repository.id.in_(ids), Repository.deleted_at.is_(None), visible_to(principal)
        )
    )
    return {row.id: row.name for row in rows}


async def names_of(session: AsyncSession, ids: list[int]) -> dict[int, str]:
    """Each repository's name, by id."""
    rows = await session.execute(
        select(Repository.id, Repository.name).where(Repository.id.in_(ids))
    )
    return {row.id: row.name for row in rows}


def _askable(name: str) -> bool:
    """Whether `name` could be a repository's: not too long, no control character."""
    return len(name) <= MAX_NAME and not any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in name)
