"""The plan of one sync: the rows of a connection and its listing in, the changes out. Pure.

- identity is the host's own id (kind, host, external id): a rename changes the row,
  a repository listed again after deletion gets its old row (and id) back, and two
  connections to one host share one row, linked to both;
- a repository's name follows the pattern of the lowest-id connection that yields it;
- an invalid name, a name listed twice, or a clone URL off the connection's clone
  origins (a host's API does not choose what we clone) skips the repository, with a
  warning;
- only a complete listing deletes: a row no connection yields any more is soft-deleted,
  unless there are more such rows than the purge threshold, then they are all held;
- a name held by a soft-deleted row, or by a row this sync renames or deletes, is freed
  first; a name held by any other repository is a conflict, skipped with a warning.

`draft` makes the plan; the names it wants (`Plan.wanted`) are looked up by the caller,
and `resolve` settles them; `over_limit` says whether the result would have too many
repositories. None of them reads or writes anything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from urllib.parse import urlsplit

from repodepot.codehosts.config import AnyConfig, OtherConfig
from repodepot.codehosts.sources import SourceRepo, clone_origins, render_name
from repodepot.db.models import CodeHostKind, Visibility
from repodepot.exceptions import InvalidInput
from repodepot.git.redact import strip_credentials
from repodepot.goproxy.versions import default_root
from repodepot.outbound import Origin, origin
from repodepot.repositories.synced import Change, Fields, Holder, NewRow, SyncedRow
from repodepot.storage import validate_repo_name


@dataclass(frozen=True, slots=True)
class Connection:
    """What a sync needs to know about a connection."""

    id: int
    kind: CodeHostKind
    name: str
    config: AnyConfig
    token: str | None
    applied_digest: str | None = None
    applied_at: datetime | None = None

    @property
    def identity(self) -> tuple[str, str]:
        """(kind, host): the namespace in which the host's repository ids are unique."""
        if isinstance(self.config, OtherConfig):
            return (self.kind.value, "")
        return (self.kind.value, self.config.identity_host)

    def name_for(self, repo: SourceRepo) -> str:
        """The repository's name here under this connection's pattern."""
        if isinstance(self.config, OtherConfig):
            host = (urlsplit(repo.clone_url).hostname or "").lower()
        else:
            host = self.config.host
        return render_name(self.config.pattern, host, repo)

    @property
    def fingerprint(self) -> str:
        """Changes when the config or token does: cached pages are per fingerprint."""
        text = json.dumps(self.config.model_dump(mode="json"), sort_keys=True) + (self.token or "")
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class Snapshot:
    """What the database holds for one connection's sync."""

    rows: Sequence[SyncedRow]  # the host's rows and the ones linked to the connection
    links: Mapping[int, Mapping[int, str]]  # repository id -> {connection id: clone URL}
    peers: Mapping[int, Connection]  # the lower-id connections linked to those rows


@dataclass(frozen=True, kw_only=True, slots=True)
class Purge:
    """Purge protection: deletions beyond max(minimum, percent of the live rows) are held."""

    minimum: int
    percent: float


@dataclass(frozen=True, slots=True)
class Link:
    """A repository's link to the syncing connection, with the clone URL it gives."""

    repository_id: int
    clone_url: str


@dataclass(slots=True)
class Plan:
    """What a sync changes; `renames` come first (temporary or final names)."""

    inserts: list[NewRow] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    restores: list[int] = field(default_factory=list)  # soft-deleted rows `changes` restore
    renames: dict[int, str] = field(default_factory=dict)
    deletes: list[int] = field(default_factory=list)
    held: list[int] = field(default_factory=list)
    new_links: list[Link] = field(default_factory=list)
    moved_links: list[Link] = field(default_factory=list)
    unlinks: list[int] = field(default_factory=list)
    unchanged: int = 0
    skipped: int = 0
    warnings: list[str] = field(default_factory=list)
    # name -> the row id, or the external id of a new row, that takes it
    claims: dict[str, int | str] = field(default_factory=dict)
    names: dict[int, str] = field(default_factory=dict)  # the rows' current names

    @property
    def added(self) -> int:
        """Repositories that become live: inserted or restored."""
        return len(self.inserts) + len(self.restores)

    @property
    def modified(self) -> int:
        """Live repositories whose fields change."""
        return len(self.changes) - len(self.restores)

    @property
    def growth(self) -> int:
        """How many more live repositories there are after the plan."""
        return self.added - len(self.deletes)

    @property
    def wanted(self) -> list[str]:
        """The names this plan hands to a row that does not have them yet."""
        return [
            name
            for name, claimant in self.claims.items()
            if isinstance(claimant, str) or self.names[claimant] != name
        ]

    def skip(self, warning: str) -> None:
        """Leave a listed repository out, saying why."""
        self.skipped += 1
        self.warnings.append(warning)


def draft(
    connection: Connection,
    snapshot: Snapshot,
    listed: Mapping[str, SourceRepo],
    *,
    complete: bool,
    purge: Purge,
) -> Plan:
    """The plan for `listed` (by external id); deletes only when the listing is `complete`."""
    kind, host = connection.identity
    by_external = {
        row.external_id: row
        for row in snapshot.rows
        if row.external_kind == kind and row.external_host == host
    }
    origins = (
        None if isinstance(connection.config, OtherConfig) else clone_origins(connection.config)
    )
    plan = Plan(names={row.id: row.fields.name for row in snapshot.rows})
    for external_id, repo in listed.items():
        row = by_external.get(external_id)
        sources = snapshot.links.get(row.id, {}) if row is not None else {}
        primary = min([*sources, connection.id])
        name = snapshot.peers.get(primary, connection).name_for(repo)
        unfit = _unfit(repo, name, origins)
        if unfit is not None:
            plan.skip(unfit)
            continue
        if name in plan.claims:
            plan.skip(f"{repo.name_with_owner}: name {name!r} is yielded twice")
            continue
        url = strip_credentials(repo.clone_url)
        fields = _fields(repo, name, url, connection.config.privateVisibility)
        if row is None:
            plan.claims[name] = external_id
            plan.inserts.append(
                NewRow(
                    external_kind=kind, external_host=host, external_id=external_id, fields=fields
                )
            )
        else:
            plan.claims[name] = row.id
            _match(plan, connection.id, row, sources, fields, url)
    by_id = {row.id: row for row in snapshot.rows}
    if complete:
        _plan_deletions(plan, connection, snapshot, by_id, listed)
    _hold(plan, connection, snapshot, by_id, purge)
    return plan


def resolve(plan: Plan, holders: Sequence[Holder]) -> None:
    """Free the names `plan` hands out, or skip the repositories that cannot have them.

    `holders` are the repositories that have one of `plan.wanted`. A name held by a
    soft-deleted row is taken from it (the row keeps its id under `~deleted-{id}/…`);
    a name held by a row this sync renames or deletes is freed first; a name held by
    any other live repository is a conflict: a new repository is not inserted, a
    renamed one keeps its current name.
    """
    renamed = {change.id for change in plan.changes if change.fields.name != plan.names[change.id]}
    leaving = set(plan.deletes)
    conflicts: set[int | str] = set()
    for holder in holders:
        if holder.id in renamed:
            plan.renames.setdefault(holder.id, f"~renaming-{holder.id}")
        elif holder.id in leaving or holder.deleted:
            plan.renames[holder.id] = f"~deleted-{holder.id}/{holder.name}"[:255]
        else:
            conflicts.add(plan.claims[holder.name])
            plan.warnings.append(f"name {holder.name!r} is taken by another repository")
    _keep_names(plan, conflicts)
    if not conflicts:
        return
    plan.skipped += len(conflicts)
    plan.inserts = [new for new in plan.inserts if new.external_id not in conflicts]
    for index, change in enumerate(plan.changes):
        if change.id in conflicts:  # keep its current name, take the rest
            kept = replace(change.fields, name=plan.names[change.id])
            plan.changes[index] = replace(change, fields=kept)
            plan.renames.pop(change.id, None)


def _keep_names(plan: Plan, conflicts: set[int | str]) -> None:
    """A row that keeps its name still holds it: whoever claimed that name is a conflict too.

    (A swap with an outside holder: the host renames b to a, a taken by an import, and
    lists a new b; b keeps its name, so the new b cannot have it.)
    """
    pending = [claimant for claimant in conflicts if isinstance(claimant, int)]
    while pending:
        name = plan.names[pending.pop()]
        claimant = plan.claims.get(name)
        if claimant is None or claimant in conflicts:
            continue
        conflicts.add(claimant)
        plan.warnings.append(f"name {name!r} is kept by a repository whose new name is taken")
        if isinstance(claimant, int):
            pending.append(claimant)


def over_limit(plan: Plan, live: int, limit: int) -> str | None:
    """Why `plan` may not be applied with `live` repositories on the site, if it may not."""
    if plan.growth <= 0 or live + plan.growth <= limit:
        return None
    return (
        f"this sync would make {live + plan.growth} repositories, more than "
        f"max_repos_per_site ({limit}); nothing was changed. Raise "
        "REPODEPOT_MAX_REPOS_PER_SITE or narrow the connection's query"
    )


def listing_digest(connection: Connection, listed: Mapping[str, SourceRepo]) -> str:
    """A digest of what a listing would write: the connection's config and every repository."""
    digest = hashlib.sha256(connection.fingerprint.encode())
    for external_id in sorted(listed):
        digest.update(repr(listed[external_id]).encode())
    return digest.hexdigest()


def _unfit(repo: SourceRepo, name: str, origins: frozenset[Origin] | None) -> str | None:
    try:
        validate_repo_name(name)
        where = origin(repo.clone_url)  # the outbound policy guards it when fetched
    except InvalidInput as error:
        why = f"{name!r} is not a valid name" if error.field != "url" else error.message
        return f"{repo.name_with_owner}: {why}"
    if origins is not None and where not in origins:
        ours = ", ".join(sorted(str(each) for each in origins))
        return (
            f"{repo.name_with_owner}: its clone URL is on {where}, not on the connection's "
            f"origin ({ours}); skipped: a host's API does not choose what repodepot clones"
        )
    return None


def visibility_of(repo: SourceRepo, private_visibility: str) -> Visibility:
    """What a listed repository is here: the host's level, its private ones as configured."""
    if not repo.private:
        return Visibility.public
    if repo.internal:
        return Visibility.internal
    return Visibility(private_visibility)


def _fields(repo: SourceRepo, name: str, url: str, private_visibility: str) -> Fields:
    return Fields(
        name=name,
        description=repo.description,
        visibility=visibility_of(repo, private_visibility),
        fork=repo.fork,
        archived=repo.archived,
        source_url=url,
        go_default_root=default_root(url),
    )


def _match(
    plan: Plan,
    connection_id: int,
    row: SyncedRow,
    sources: Mapping[int, str],
    fields: Fields,
    clone_url: str,
) -> None:
    """A listed repository that has a row: restore, change or leave it, and link it."""
    if row.deleted_at is not None:
        plan.restores.append(row.id)
        plan.changes.append(Change(id=row.id, fields=fields))
    elif row.fields != fields:
        plan.changes.append(Change(id=row.id, fields=fields))
    else:
        plan.unchanged += 1
    if connection_id not in sources:
        plan.new_links.append(Link(row.id, clone_url))
    elif sources[connection_id] != clone_url:
        plan.moved_links.append(Link(row.id, clone_url))


def _plan_deletions(
    plan: Plan,
    connection: Connection,
    snapshot: Snapshot,
    by_id: Mapping[int, SyncedRow],
    listed: Mapping[str, SourceRepo],
) -> None:
    """Unlink what the connection no longer lists; delete what nothing else yields.

    Rows linked under another host (the connection's URL changed) match nothing and
    so end up unlinked.
    """
    kind, host = connection.identity
    for repository_id, sources in snapshot.links.items():
        if connection.id not in sources:
            continue
        row = by_id[repository_id]
        if row.external_kind == kind and row.external_host == host and row.external_id in listed:
            continue
        plan.unlinks.append(repository_id)
        if len(sources) == 1 and row.deleted_at is None:
            plan.deletes.append(repository_id)


def _hold(
    plan: Plan,
    connection: Connection,
    snapshot: Snapshot,
    by_id: Mapping[int, SyncedRow],
    purge: Purge,
) -> None:
    """Purge protection: too many deletions are held (and nothing is unlinked)."""
    live = sum(
        1
        for repository_id, sources in snapshot.links.items()
        if connection.id in sources and by_id[repository_id].deleted_at is None
    )
    threshold = max(purge.minimum, live * purge.percent / 100)
    if len(plan.deletes) <= threshold:
        return
    plan.held, plan.deletes, plan.unlinks = plan.deletes, [], []
    plan.warnings.append(
        f"{len(plan.held)} of {live} repositories would be deleted, more than the "
        f"threshold of {threshold:.0f}: held until an admin confirms"
    )
