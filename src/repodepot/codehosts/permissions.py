"""Permission sync's client: which of a host's repositories a user's own token can read.

A user links their account on a connection with a personal token for that host; the
permission sync keeps their `codehost` grants equal to what `readable_by` lists:

- GitHub / GitHub Enterprise: `GET /user/repos?affiliation=owner,collaborator,
  organization_member` (what the user owns, collaborates on or reaches through an
  organization; public repositories the user merely sees are not listed);
- GitLab: `GET /projects?min_access_level=10&simple=true` (Guest and above);
- Gitea: `GET /user/repos`.

Each repository is named by the same external id the connection's syncs store for it
(the source's own `convert`), and every page goes through the connection's `HostApi`:
paced, conditional, rate-limit aware, bounded, same-origin only. No database here.

The user's token is sent in the host's headers only: no error, log line or repr holds it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from repodepot.codehosts.config import GiteaConfig, GitHubConfig, GitLabConfig, OtherConfig
from repodepot.codehosts.http import (
    ApiLimits,
    ApiStats,
    BadCredentials,
    CachedPage,
    HostApi,
    ListingTooLong,
)
from repodepot.codehosts.planner import Connection
from repodepot.codehosts.sources import GiteaSource, GitHubSource, GitLabSource, api_settings
from repodepot.exceptions import InvalidInput
from repodepot.outbound import Policy

# GitLab's access levels: 10 Guest, 20 Reporter, 30 Developer; Guest can read.
GITLAB_READABLE = "projects?min_access_level=10&per_page=100&simple=true"


class TokenRejected(BadCredentials):
    """The code host refused the token of a linked account."""

    code = "code_host_token_rejected"


@dataclass(frozen=True, kw_only=True, slots=True)
class Readable:
    """The repositories one user's token can read, by the host's id, and what listing cost."""

    external_ids: frozenset[str]
    stats: ApiStats


async def readable_by(
    connection: Connection,
    user_token: str,
    *,
    policy: Policy,
    limits: ApiLimits,
    site_slots: asyncio.Semaphore,
    cache: dict[str, CachedPage],
    most: int,
) -> Readable:
    """The repositories of `connection`'s host that `user_token` can read, every page walked.

    `cache`: the pages of this same user's last listing on this connection (one dict per
    connection and user), so that an unchanged listing costs conditional requests only.

    Raises InvalidInput for an `other` connection (no API, so no account to link) or an
    empty token; TokenRejected when the host refuses the token (401, or 403 without
    rate-limit signs); ListingTooLong past `most` repositories (the listing is stopped there, never
    used in part); the other CodeHostErrors of `HostApi` for network failures, 5xx after
    retries and rate limits longer than we wait.
    """
    what = f"{connection.kind.value} connection {connection.name!r}"
    if isinstance(connection.config, OtherConfig):
        raise InvalidInput(
            f"{what} is an `other` connection, which has no API: an `other` connection "
            "has no account to link",
            field="connection",
        )
    if not user_token.strip():
        raise InvalidInput(f"{what}: the linked account's token is empty", field="token")
    base_url, headers = api_settings(connection.config, user_token)
    api = HostApi(
        base_url=base_url,
        headers=headers,
        policy=policy,
        limits=replace(limits, max_items=most),
        site_slots=site_slots,
        cache=cache,
        what=what,
    )
    try:
        return Readable(external_ids=await _walk(connection, api), stats=api.stats)
    except BadCredentials as error:
        answer = error.answer.replace(user_token, "…")  # a host may echo what it was sent
        raise TokenRejected(
            f"{what} refused the token of a linked account ({answer}): link the account "
            "again with a valid token that can read its repositories",
            answer=answer,
        ) from None
    except ListingTooLong:
        raise ListingTooLong(
            f"{what} listed more than {most} repositories for a linked account's token: "
            "the listing was stopped there and is not used"
        ) from None
    finally:
        await api.aclose()


async def _walk(connection: Connection, api: HostApi) -> frozenset[str]:
    """The external ids of every page of the connection kind's listing for the token."""
    config = connection.config
    source: GitHubSource | GitLabSource | GiteaSource
    if isinstance(config, GitHubConfig):
        source, path = GitHubSource(config, api), GitHubSource.affiliated
    elif isinstance(config, GitLabConfig):
        source, path = GitLabSource(config, api), GITLAB_READABLE
    elif isinstance(config, GiteaConfig):
        source, path = GiteaSource(config, api), GiteaSource.affiliated
    else:
        raise AssertionError(f"{type(config).__name__} has no API")
    found: set[str] = set()
    # `_items` is the sources' own page reader: the same checks and the same ids as a sync.
    async for page in api.pages(path, source._items):
        found.update(repo.external_id for repo in page)
    return frozenset(found)
