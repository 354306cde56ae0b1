"""What each tab of a repository's page shows: overview, branches, upstream.

The route (`pages.repo_page`) picks the tab; these gather its facts from the services.
A mirror not cloned yet, or an empty one, gives a sentence to show, never an error page;
so does one on a storage node that cannot answer now. A mirror on another node is read
there (`nodes.internal_reads`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from repodepot.accounts import Principal
from repodepot.branches.service import BranchPage, TrackedBranch
from repodepot.clock import now
from repodepot.exceptions import NotFound, Unavailable
from repodepot.nodes import internal_reads
from repodepot.repositories import RepositoryRecord
from repodepot.services import Services

Tab = Literal["overview", "branches", "upstream"]
TABS: tuple[tuple[Tab, str], ...] = (
    ("overview", "Overview"),
    ("branches", "Branches"),
    ("upstream", "Upstream"),
)
RECENT_COMMITS = 20
SHOWN_TAGS = 50
BRANCHES_PER_PAGE = 30
UNAVAILABLE = "Its storage node cannot answer now: try again shortly."

_UNITS = (("year", 365 * 86400), ("month", 30 * 86400), ("day", 86400), ("hour", 3600))


def ago(moment: datetime | None, at: datetime | None = None) -> str:
    """`moment` as people say it: "just now", "5 minutes ago", "in 3 hours", "never"."""
    if moment is None:
        return "never"
    seconds = ((at or now()) - moment).total_seconds()
    span = abs(seconds)
    if span < 60:
        return "just now"
    count, unit = int(span // 60), "minute"
    for name, size in _UNITS:
        if span >= size:
            count, unit = int(span // size), name
            break
    said = f"{count} {unit}{'' if count == 1 else 's'}"
    return f"{said} ago" if seconds > 0 else f"in {said}"


async def overview(svc: Services, repo: RepositoryRecord, *, base_url: str) -> dict[str, Any]:
    """The clone command, the default branch's newest commits and the tags with dates.

    `history_note` replaces both lists when the mirror is missing or empty.
    """
    context: dict[str, Any] = {
        "clone_url": f"{base_url.rstrip('/')}/git/{repo.name}",
        "commits": [],
        "tags": [],
        "tag_count": 0,
        "history_note": None,
    }
    try:  # side by side: each may be a git process, or a call to the mirror's node
        commits, tags = await asyncio.gather(
            internal_reads.commits(svc, repo, None, RECENT_COMMITS),
            internal_reads.tags(svc, repo),
        )
    except NotFound:
        context["history_note"] = "Not cloned yet: its commits and tags show once it is."
        return context
    except Unavailable:
        context["history_note"] = UNAVAILABLE
        return context
    if not commits:
        context["history_note"] = "This repository is empty: it has no commits yet."
    context.update(commits=commits, tags=tags[:SHOWN_TAGS], tag_count=len(tags))
    return context


@dataclass(frozen=True, kw_only=True, slots=True)
class BranchFilters:
    """The Branches tab's GET form: search, sort, state, page."""

    q: str | None = None
    sort: Literal["updated", "name"] = "updated"
    state: Literal["active", "stale"] | None = None
    page: int = 1


async def branches(
    svc: Services, caller: Principal, repo: RepositoryRecord, filters: BranchFilters
) -> dict[str, Any]:
    """A page of branches with ahead/behind against the default branch, and its bar scale."""
    try:
        page = await internal_reads.branch_page(
            svc,
            caller,
            repo.name,
            q=filters.q or None,
            sort=filters.sort,
            state=filters.state,
            page=filters.page,
            per_page=BRANCHES_PER_PAGE,
        )
    except NotFound:
        return {"branch_page": None, "filters": filters, "scale": 1, "last_page": 1}
    except Unavailable:
        return {
            "branch_page": None,
            "filters": filters,
            "scale": 1,
            "last_page": 1,
            "branches_note": UNAVAILABLE,
        }
    return {
        "branch_page": page,
        "filters": filters,
        "scale": bar_scale(page),
        "last_page": max(1, -(-page.total // page.per_page)),
    }


def bar_scale(page: BranchPage) -> int:
    """The count a full half-bar stands for: the largest ahead or behind shown (at least 1)."""
    return max([1, *(max(item.ahead, item.behind) for item in page.items)])


async def upstream(svc: Services, caller: Principal, repo: RepositoryRecord) -> dict[str, Any]:
    """The upstream and its tracked branches, and whether `caller` may change it."""
    status = await svc.branches.sync_status(caller, repo.name)
    return {
        "upstream": status.upstream,
        "tracked": status.branches,
        "may_set_upstream": caller.is_admin or repo.owner == caller.user.name,
    }


def badge(tracked: TrackedBranch) -> tuple[str, str]:
    """A tracked branch's state as (css class, words): missing, diverged, behind, ahead, ok."""
    if tracked.missing:
        side = "upstream" if tracked.upstream_sha is None else "here"
        return "missing", f"missing {side}"
    if tracked.diverged:
        return "diverged", f"diverged (ahead {tracked.ahead}, behind {tracked.behind})"
    if tracked.needs_pull:
        return "behind", f"behind {tracked.behind}"
    if tracked.needs_push:
        return "ahead", f"ahead {tracked.ahead}"
    return "ok", "up to date"
