"""Groups and grants: who, besides a repository's owner and admins, may read a private one.

The owner of `groups`, `group_members` and `repository_grants`. A grant gives `read`
on one repository to a user or a group, or on every repository of a code host
connection to a group (`repo_sources` says which those are: the one table read here
that `codehosts.store` owns, inside `granted_ids`). Whether a caller may read a
repository is decided in one place, `repositories` (`visible_to` for queries,
`Repositories.may_read` for a row already loaded); both ask this module for the
grants: `granted_ids` as a subquery, `Access.granted` as a set kept in memory per
user and dropped the moment any grant, membership or connection link changes
(`caches.ACCESS`, across processes by 0010's triggers).

Groups, memberships and connection-wide grants are an admin's; a repository's own
grants are also its owner's to give. Every change is audited.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, delete, func, insert, select, union
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from repodepot import audit
from repodepot.accounts import USER_NAME, Principal
from repodepot.caches import ACCESS, Caches, Lookup
from repodepot.db.base import Sessions
from repodepot.db.models import (
    GrantRole,
    GrantSource,
    Group,
    GroupMember,
    RepositoryGrant,
    RepoSource,
    User,
)
from repodepot.exceptions import AlreadyExists, InvalidInput, NotFound

GROUP_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")


def validate_group_name(name: str) -> str:
    """The name, or InvalidInput naming the `name` field."""
    if not GROUP_NAME.fullmatch(name):
        raise InvalidInput(
            "group names are 1-64 lowercase letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit",
            field="name",
        )
    return name


def granted_ids(user_id: int) -> Select[int]:
    """The ids of the repositories granted to `user_id`.

    To them, to a group of theirs, or through a connection-wide grant to a group of
    theirs (any role: all are `read`).
    """
    groups = select(GroupMember.group_id).where(GroupMember.user_id == user_id)
    g = RepositoryGrant
    # One branch per index: an OR of the user's and the groups' grants in one branch made
    # PostgreSQL scan every grant (`python -m bench access`).
    to_user = select(g.repository_id.label("id")).where(
        g.user_id == user_id, g.repository_id.is_not(None)
    )
    to_groups = select(g.repository_id.label("id")).where(
        g.group_id.in_(groups), g.repository_id.is_not(None)
    )
    by_connection = (
        select(RepoSource.repository_id.label("id"))
        .join(g, g.code_host_id == RepoSource.code_host_id)
        .where(g.group_id.in_(groups))
    )
    return select(union(to_user, to_groups, by_connection).subquery().c.id)


@dataclass(frozen=True, kw_only=True, slots=True)
class GroupRecord:
    """A group and its members' names."""

    id: int
    name: str
    members: list[str]
    created_at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class GrantRecord:
    """A grant as the API shows it: on what, to whom, from where."""

    id: int
    repository_id: int | None
    code_host_id: int | None
    user: str | None
    group: str | None
    role: GrantRole
    source: GrantSource
    created_at: datetime


class Access:
    """Groups, members and grants; the grants a user holds, kept in memory."""

    def __init__(self, sessions: Sessions, *, caches: Caches | None = None) -> None:
        self._sessions = sessions
        self._caches = caches or Caches(ttl=0)
        self._granted: Lookup[int, frozenset[int]] = self._caches.lookup(ACCESS, "grants")

    async def granted(self, principal: Principal) -> frozenset[int]:
        """The repositories granted to `principal` (see `granted_ids`), from memory."""
        await self._caches.refresh()
        user_id = principal.user.id

        async def read() -> frozenset[int]:
            statement = granted_ids(user_id)
            ids = await self._sessions.read(lambda c: c.execute(statement).scalars().all())
            return frozenset(ids)

        return await self._granted.load(user_id, read) or frozenset()

    # Groups -------------------------------------------------------------------------------

    async def create_group(self, caller: Principal, name: str) -> GroupRecord:
        """A new, empty group (admins); AlreadyExists for a taken name."""
        caller.require_admin()
        validate_group_name(name)
        try:
            async with self._sessions.begin() as session:
                await session.execute(insert(Group).values(name=name))
                await audit.record(session, caller.user.id, "group.create", name, {})
        except IntegrityError:
            raise AlreadyExists(f"a group named {name!r} already exists") from None
        return await self.group(caller, name)

    async def group(self, caller: Principal, name: str) -> GroupRecord:
        """One group with its members (admins); NotFound."""
        caller.require_admin()
        async with self._sessions() as session:
            found = await session.scalar(select(Group).where(Group.name == name))
            if found is None:
                raise NotFound(f"no group named {name!r}")
            members = await _member_names(session, found.id)
        return GroupRecord(
            id=found.id, name=found.name, members=members, created_at=found.created_at
        )

    async def groups(self, caller: Principal) -> list[GroupRecord]:
        """Every group with its members, by name (admins)."""
        caller.require_admin()
        async with self._sessions() as session:
            rows = (
                await session.execute(
                    select(Group, User.name)
                    .outerjoin(GroupMember, GroupMember.group_id == Group.id)
                    .outerjoin(User, User.id == GroupMember.user_id)
                    .order_by(Group.name, User.name)
                )
            ).all()
        found: dict[int, GroupRecord] = {}
        for group, member in rows:
            record = found.setdefault(
                group.id,
                GroupRecord(id=group.id, name=group.name, members=[], created_at=group.created_at),
            )
            if member is not None:
                record.members.append(member)
        return list(found.values())

    async def add_member(self, caller: Principal, group: str, user: str) -> GroupRecord:
        """Put `user` in `group` (admins); NotFound for either; adding twice changes nothing."""
        caller.require_admin()
        async with self._sessions.begin() as session:
            group_id = await _group_id(session, group)
            user_id = await _user_id(session, user)
            present = await session.scalar(
                select(func.count())
                .select_from(GroupMember)
                .where(GroupMember.group_id == group_id, GroupMember.user_id == user_id)
            )
            if not present:
                await session.execute(
                    insert(GroupMember).values(group_id=group_id, user_id=user_id)
                )
                await audit.record(session, caller.user.id, "group.add", group, {"user": user})
        return await self.group(caller, group)

    async def remove_member(self, caller: Principal, group: str, user: str) -> None:
        """Take `user` out of `group` (admins); NotFound if they are not in it."""
        caller.require_admin()
        async with self._sessions.begin() as session:
            group_id = await _group_id(session, group)
            user_id = await _user_id(session, user)
            gone = await session.execute(
                delete(GroupMember).where(
                    GroupMember.group_id == group_id, GroupMember.user_id == user_id
                )
            )
            if not gone.rowcount:  # type: ignore[attr-defined]
                raise NotFound(f"{user!r} is not in group {group!r}")
            await audit.record(session, caller.user.id, "group.remove", group, {"user": user})

    # Grants -------------------------------------------------------------------------------

    async def grants_on(self, repository_id: int) -> list[GrantRecord]:
        """The grants on one repository, oldest first (the caller checked who may see them)."""
        async with self._sessions() as session:
            return await _grants(session, RepositoryGrant.repository_id == repository_id)

    async def grant(
        self,
        caller: Principal,
        *,
        repository: tuple[int, str] | None = None,
        code_host_id: int | None = None,
        user: str | None = None,
        group: str | None = None,
        role: GrantRole = GrantRole.read,
    ) -> GrantRecord:
        """Give `role` on a repository (its id and name) or a connection to a user or group.

        The caller checked that they may (`Repositories.require_manager`, or an admin for
        a connection, which it also checked exists). InvalidInput unless exactly one
        grantee is named, and for a connection-wide grant to a user; NotFound for an
        unknown user or group; AlreadyExists for a grant that is there already.
        """
        if (user is None) == (group is None):
            raise InvalidInput("name either a user or a group", field="user")
        if code_host_id is not None and group is None:
            raise InvalidInput("a connection-wide grant goes to a group", field="group")
        target = repository[1] if repository is not None else f"code host {code_host_id}"
        async with self._sessions.begin() as session:
            user_id = await _user_id(session, user) if user is not None else None
            group_id = await _group_id(session, group) if group is not None else None
            try:
                async with session.begin_nested():
                    grant_id = (
                        await session.execute(
                            insert(RepositoryGrant)
                            .values(
                                repository_id=repository[0] if repository else None,
                                code_host_id=code_host_id,
                                user_id=user_id,
                                group_id=group_id,
                                role=role,
                                source=GrantSource.manual,
                                created_by=caller.user.id or None,
                            )
                            .returning(RepositoryGrant.id)
                        )
                    ).scalar_one()
            except IntegrityError:
                whom = f"user {user!r}" if user is not None else f"group {group!r}"
                raise AlreadyExists(f"{whom} already has a grant on {target}") from None
            await audit.record(
                session,
                caller.user.id,
                "grant.add",
                target,
                {"user": user, "group": group, "role": role.value},
            )
            (found,) = await _grants(session, RepositoryGrant.id == grant_id)
        return found

    async def keep_codehost_grants(
        self, session: AsyncSession, user_id: int, code_host_id: int, repository_ids: Iterable[int]
    ) -> tuple[int, int]:
        """Make the `codehost` grants `code_host_id` keeps for `user_id` `repository_ids`.

        In `session`. What permission sync keeps: a grant for each repository the host's
        listing named, none for the rest. Writes only the difference (none when nothing changed);
        returns how many were added and removed. Manual grants, and those another
        connection keeps, are left alone; deleting the connection deletes its grants.
        """
        g = RepositoryGrant
        mine = (g.user_id == user_id, g.kept_by == code_host_id)
        held = set(await session.scalars(select(g.repository_id).where(*mine)))
        wanted = set(repository_ids)
        added, removed = wanted - held, held - wanted
        if removed:
            await session.execute(delete(g).where(*mine, g.repository_id.in_(sorted(removed))))
        if added:
            await session.execute(
                insert(g),
                [
                    {
                        "repository_id": repository_id,
                        "user_id": user_id,
                        "role": GrantRole.read,
                        "source": GrantSource.codehost,
                        "kept_by": code_host_id,
                    }
                    for repository_id in sorted(added)
                ],
            )
        return len(added), len(removed)

    async def revoke(self, caller: Principal, repository: tuple[int, str], grant_id: int) -> None:
        """Remove one grant of a repository (the caller checked they may); NotFound."""
        async with self._sessions.begin() as session:
            gone = await session.execute(
                delete(RepositoryGrant).where(
                    RepositoryGrant.id == grant_id,
                    RepositoryGrant.repository_id == repository[0],
                )
            )
            if not gone.rowcount:  # type: ignore[attr-defined]
                raise NotFound(f"no grant {grant_id} on {repository[1]!r}")
            await audit.record(
                session, caller.user.id, "grant.remove", repository[1], {"grant": grant_id}
            )


async def _grants(session: AsyncSession, condition: object) -> list[GrantRecord]:
    g = RepositoryGrant
    rows = (
        await session.execute(
            select(g, User.name, Group.name)
            .outerjoin(User, User.id == g.user_id)
            .outerjoin(Group, Group.id == g.group_id)
            .where(condition)  # type: ignore[arg-type]
            .order_by(g.id)
        )
    ).all()
    return [
        GrantRecord(
            id=grant.id,
            repository_id=grant.repository_id,
            code_host_id=grant.code_host_id,
            user=user,
            group=group,
            role=grant.role,
            source=grant.source,
            created_at=grant.created_at,
        )
        for grant, user, group in rows
    ]


async def _group_id(session: AsyncSession, name: str) -> int:
    # A name no group can have is not asked for (PostgreSQL refuses a NUL in text: a 500).
    found = None
    if GROUP_NAME.fullmatch(name):
        found = await session.scalar(select(Group.id).where(Group.name == name))
    if found is None:
        raise NotFound(f"no group named {name!r}")
    return found


async def _user_id(session: AsyncSession, name: str) -> int:
    found = None
    if USER_NAME.fullmatch(name):
        found = await session.scalar(select(User.id).where(User.name == name))
    if found is None:
        raise NotFound(f"no user named {name!r}")
    return found


async def _member_names(session: AsyncSession, group_id: int) -> list[str]:
    names = await session.scalars(
        select(User.name)
        .join(GroupMember, GroupMember.user_id == User.id)
        .where(GroupMember.group_id == group_id)
        .order_by(User.name)
    )
    return list(names)
