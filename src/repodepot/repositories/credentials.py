"""The owner of `repository_credentials`: a repository's own fetch credential.

An import's token becomes its repository's credential when the import ends, so a
private import keeps fetching; `PUT /api/repos/{name}/credential` replaces it and
`DELETE` removes it (its owner or an admin). It is sealed at rest, never shown again,
and sent only to the origin it was given for: a source URL that moved elsewhere is
fetched without it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from repodepot.db.models import RepositoryCredential
from repodepot.exceptions import InvalidInput
from repodepot.git.runner import Credentials
from repodepot.outbound import origin
from repodepot.secrets import SecretBox, SecretUnreadable

DEFAULT_USERNAME = "x-access-token"  # GitHub's; GitLab and Gitea accept any name with a token
MAX_TOKEN = 4096


def check(username: str | None, token: str) -> tuple[str, str]:
    """The (username, token) to keep; InvalidInput naming the field that is wrong."""
    if not token or len(token) > MAX_TOKEN or not token.isprintable() or token.strip() != token:
        raise InvalidInput(
            f"token must be 1-{MAX_TOKEN} printable characters without surrounding spaces",
            field="token",
        )
    name = username or DEFAULT_USERNAME
    if len(name) > 200 or not name.isprintable() or ":" in name:
        raise InvalidInput(
            "username must be up to 200 printable characters without ':'", field="username"
        )
    return name, token


async def put_in(
    session: AsyncSession,
    box: SecretBox,
    repository_id: int,
    *,
    url: str,
    username: str,
    token: str,
) -> bool:
    """Keep (or replace) the repository's credential, for the origin of `url`.

    Returns False, writing nothing, when the same credential is already kept there.
    """
    where = str(origin(url))
    kept = await session.get(RepositoryCredential, repository_id)
    if kept is not None:
        try:
            same = (kept.username, kept.origin, box.open(kept.sealed_token)) == (
                username,
                where,
                token,
            )
        except SecretUnreadable:
            same = False
        if same:
            return False
        await session.delete(kept)
        await session.flush()
    session.add(
        RepositoryCredential(
            repository_id=repository_id,
            username=username,
            sealed_token=box.seal(token),
            origin=where,
            updated_at=datetime.now(UTC),
        )
    )
    await session.flush()
    return True


async def remove_in(session: AsyncSession, repository_id: int) -> bool:
    """Forget the repository's credential; False when it had none."""
    result = await session.execute(
        delete(RepositoryCredential).where(RepositoryCredential.repository_id == repository_id)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def has_credential(session: AsyncSession, repository_id: int) -> bool:
    """Whether the repository has a credential of its own."""
    found = await session.scalar(
        select(RepositoryCredential.repository_id).where(
            RepositoryCredential.repository_id == repository_id
        )
    )
    return found is not None


async def for_fetch(
    session: AsyncSession, box: SecretBox, urls: dict[int, str]
) -> dict[int, Credentials]:
    """The credential of each repository whose URL is still on its credential's origin."""
    if not urls:
        return {}
    rows = await session.execute(
        select(RepositoryCredential).where(RepositoryCredential.repository_id.in_(list(urls)))
    )
    found: dict[int, Credentials] = {}
    for row in rows.scalars():
        try:
            same = str(origin(urls[row.repository_id])) == row.origin
            token = box.open(row.sealed_token) if same else None
        except (InvalidInput, SecretUnreadable):
            continue
        if token is not None:
            found[row.repository_id] = Credentials(username=row.username, password=token)
    return found
