"""The `repositories` table and who may see which repository."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from repodepot.accounts import Principal
from repodepot.db.models import Repository, User, Visibility
from repodepot.exceptions import AlreadyExists, InvalidInput, NotFound
from repodepot.git.redact import strip_credentials
from repodepot.goproxy.versions import BadPath, check_module_path, default_root
from repodepot.pagination import Page, paginate
from repodepot.storage import validate_repo_name


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
    def from_row(cls, repo: Repository, owner: str | None) -> RepositoryRecord:
        """Build from a `repositories` row and its owner's name."""
        return cls(
            id=repo.id,
            name=repo.name,
            owner=owner,
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
    """The condition on `repositories` rows that `principal` may read."""
    if principal.is_admin:
        return true()
    return (Repository.visibility == Visibility.public) | (Repository.owner_id == principal.user.id)


def _with_owner() -> Select[Repository, str]:
    return select(Repository, User.name).outerjoin(User, Repository.owner_id == User.id)


class Repositories:
    """Repository rows, filtered by what the asking principal may see."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def list(
        self,
        principal: Principal,
        *,
        page: int = 1,
        per_page: int = 30,
        deleted: bool = False,
    ) -> Page[RepositoryRecord]:
        """The repositories `principal` may read, by name; soft-deleted ones when `deleted`."""
        state = Repository.deleted_at.is_not(None) if deleted else Repository.deleted_at.is_(None)
        statement = _with_owner().where(visible_to(principal), state).order_by(Repository.name)
        async with self._sessions() as session:
            return await paginate(
                session,
                statement,
                page=page,
                per_page=per_page,
                convert=lambda row: RepositoryRecord.from_row(*row),
            )

    async def get(self, principal: Principal, name: str) -> RepositoryRecord:
        """Repository `name`; raises NotFound also when it exists but `principal` may not see it."""
        statement = _with_owner().where(
            Repository.name == name, Repository.deleted_at.is_(None), visible_to(principal)
        )
        async with self._sessions() as session:
            row = (await session.execute(statement)).one_or_none()
        if row is None:
            raise NotFound(f"no repository named {name!r}")
        return RepositoryRecord.from_row(row[0], row[1])

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
        default_branch: str | None = None,
        description: str = "",
        size_bytes: int = 0,
        is_empty: bool = True,
    ) -> RepositoryRecord:
        """Insert a repository row (the repository is already on disk).

        The source URL is stored without credentials. Raises InvalidInput for a bad
        name, AlreadyExists for a taken one.
        """
        validate_repo_name(name)
        row = Repository(
            name=name,
            owner_id=owner_id,
            visibility=visibility,
            description=description,
            source_url=strip_credentials(source_url) if source_url else None,
            go_default_root=default_root(source_url),
            default_branch=default_branch,
            size_bytes=size_bytes,
            is_empty=is_empty,
        )
        async with self._sessions.begin() as session:
            session.add(row)
            try:
                await session.flush()
            except IntegrityError:
                raise AlreadyExists(f"repository {name!r} already exists", field="name") from None
            await session.refresh(row)
            owner = await session.scalar(select(User.name).where(User.id == owner_id))
        return RepositoryRecord.from_row(row, owner)
