"""Code host tokens handed out for fetches: the code host module's credentials, its rule.

A repository yielded by several connections is fetched with the token of the lowest-id
one; a token goes only to its connection's clone origin(s), so a clone URL elsewhere
(whatever the host's API said) gets no token.
"""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from repodepot.codehosts.config import parse_config
from repodepot.codehosts.sources import clone_origins
from repodepot.db.models import CodeHost, CodeHostKind, RepoSource
from repodepot.exceptions import InvalidInput
from repodepot.git.runner import Credentials
from repodepot.outbound import Origin, origin
from repodepot.secrets import SecretBox, SecretUnreadable

# The user name each host wants next to a token over HTTPS.
TOKEN_USER = {
    CodeHostKind.github: "x-access-token",
    CodeHostKind.gitlab: "oauth2",
    CodeHostKind.gitea: "token",
    CodeHostKind.other: "token",
}


def _origins(kind: CodeHostKind, raw_config: str) -> frozenset[Origin]:
    """A connection's clone origins, where its token may go (none if its config is bad)."""
    try:
        config, _ = parse_config(kind, json.loads(raw_config))
    except (InvalidInput, ValueError):
        return frozenset()
    return clone_origins(config)


def _origin_of(url: str) -> Origin | None:
    try:
        return origin(url)
    except (InvalidInput, ValueError):
        return None


async def for_fetch(
    session: AsyncSession, box: SecretBox, urls: dict[int, str]
) -> dict[int, Credentials]:
    """The token of the lowest-id connection yielding each repository, where it may go."""
    if not urls:
        return {}
    rows = await session.execute(
        select(
            RepoSource.repository_id,
            CodeHost.id,
            CodeHost.kind,
            CodeHost.config,
            CodeHost.sealed_token,
        )
        .join(CodeHost, CodeHost.id == RepoSource.code_host_id)
        .where(RepoSource.repository_id.in_(list(urls)), CodeHost.sealed_token.is_not(None))
        .order_by(RepoSource.code_host_id)
    )
    # A batch has many repositories of few connections: each config parsed, each
    # token opened, once.
    origins: dict[int, frozenset[Origin]] = {}
    opened: dict[int, Credentials | None] = {}
    tokens: dict[int, Credentials] = {}
    for repository_id, host_id, kind, config, sealed in rows:
        if repository_id in tokens or sealed is None:
            continue
        if host_id not in origins:
            origins[host_id] = _origins(kind, config)
        if _origin_of(urls[repository_id]) not in origins[host_id]:
            continue
        if host_id not in opened:
            try:
                token = box.open(sealed)
                opened[host_id] = Credentials(username=TOKEN_USER[kind], password=token)
            except SecretUnreadable:
                opened[host_id] = None
        if (credentials := opened[host_id]) is not None:
            tokens[repository_id] = credentials
    return tokens
