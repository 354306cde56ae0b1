"""The sync planner without a database: rows and a listing in, a plan out.

`Table` below is an in-memory `repositories` + `repo_sources` that applies a plan the
way the store does (renames, changes, inserts, deletions, links), and refuses a name
two rows would share after any single row's write, as the unique index does. The
property test runs hypothesis' host changes through the planner against it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as examples
from hypothesis import strategies as st

from repodepot.codehosts import planner
from repodepot.codehosts.config import parse_config
from repodepot.codehosts.planner import Connection, Plan, Purge, Snapshot
from repodepot.codehosts.sources import SourceRepo
from repodepot.db.models import CodeHostKind, Visibility
from repodepot.repositories.synced import Fields, Holder, SyncedRow

URL = "https://git.example.com"
HOST = "git.example.com"
AT = datetime(2026, 1, 1, tzinfo=UTC)
QUIET = Purge(minimum=10_000, percent=0.0)
STRICT = Purge(minimum=2, percent=10.0)


def connection(host_id: int, **config: Any) -> Connection:
    parsed, _ = parse_config(
        CodeHostKind.github, {"url": URL, "repositoryQuery": ["affiliated"], **config}
    )
    return Connection(
        id=host_id, kind=CodeHostKind.github, name=f"c{host_id}", config=parsed, token=None
    )


def listed(*repos: SourceRepo) -> dict[str, SourceRepo]:
    return {repo.external_id: repo for repo in repos}


def source(key: int, full_name: str, **extra: Any) -> SourceRepo:
    values: dict[str, Any] = {
        "external_id": f"R{key}",
        "name_with_owner": full_name,
        "clone_url": f"{URL}/{full_name}.git",
        "private": False,
        **extra,
    }
    return SourceRepo(**values)


@dataclass
class Table:
    """`repositories` and `repo_sources` in memory, changed only by plans."""

    rows: dict[int, SyncedRow] = field(default_factory=dict)
    links: dict[int, dict[int, str]] = field(default_factory=dict)
    connections: dict[int, Connection] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def imported(self, name: str) -> int:
        """A repository no connection yields (an import) holding `name`."""
        key = next(self.ids)
        fields = Fields(
            name=name,
            description="",
            visibility=Visibility.private,
            fork=False,
            archived=False,
            source_url=None,
            go_default_root=None,
        )
        self._put(
            SyncedRow(
                id=key,
                external_kind=None,
                external_host=None,
                external_id=None,
                deleted_at=None,
                fields=fields,
            )
        )
        return key

    def snapshot(self, conn: Connection) -> Snapshot:
        kind, host = conn.identity
        rows = [
            row
            for row in self.rows.values()
            if (row.external_kind, row.external_host) == (kind, host)
            or conn.id in self.links.get(row.id, {})
        ]
        links = {row.id: dict(self.links[row.id]) for row in rows if self.links.get(row.id)}
        lower = {key for sources in links.values() for key in sources if key < conn.id}
        return Snapshot(rows=rows, links=links, peers={key: self.connections[key] for key in lower})

    def holders(self, names: list[str]) -> list[Holder]:
        wanted = set(names)
        return [
            Holder(id=row.id, name=row.fields.name, deleted=row.deleted_at is not None)
            for row in self.rows.values()
            if row.fields.name in wanted
        ]

    def write(self, conn: Connection, plan: Plan) -> None:
        for key, name in plan.renames.items():
            self._put(replace(self.rows[key], fields=replace(self.rows[key].fields, name=name)))
        for change in plan.changes:
            self._put(replace(self.rows[change.id], fields=change.fields, deleted_at=None))
        for new in plan.inserts:
            key = next(self.ids)
            self._put(
                SyncedRow(
                    id=key,
                    external_kind=new.external_kind,
                    external_host=new.external_host,
                    external_id=new.external_id,
                    deleted_at=None,
                    fields=new.fields,
                )
            )
            self.links.setdefault(key, {})[conn.id] = new.fields.source_url or ""
        for key in plan.deletes:
            self._put(replace(self.rows[key], deleted_at=AT))
        for link in [*plan.new_links, *plan.moved_links]:
            self.links.setdefault(link.repository_id, {})[conn.id] = link.clone_url
        for key in plan.unlinks:
            self.links[key].pop(conn.id)

    def sync(self, conn: Connection, listing: Mapping[str, SourceRepo], purge: Purge) -> Plan:
        """What `Syncer._apply` does, with this table as the store."""
        self.connections[conn.id] = conn
        plan = planner.draft(conn, self.snapshot(conn), listing, complete=True, purge=purge)
        if plan.wanted:
            planner.resolve(plan, self.holders(plan.wanted))
        self.write(conn, plan)
        return plan

    def live(self) -> dict[str, tuple[int, str]]:
        return {
            str(row.external_id): (row.id, row.fields.name)
            for row in self.rows.values()
            if row.deleted_at is None and row.external_id is not None
        }

    def _put(self, row: SyncedRow) -> None:
        others = {other.fields.name for key, other in self.rows.items() if key != row.id}
        assert row.fields.name not in others, f"two rows named {row.fields.name!r}"
        self.rows[row.id] = row


@pytest.fixture
def table() -> Table:
    return Table()


def test_a_rename_changes_the_row_and_a_return_restores_it(table: Table) -> None:
    conn = connection(1)
    table.sync(conn, listed(source(1, "acme/app"), source(2, "acme/lib")), QUIET)
    before = table.live()

    renamed = table.sync(conn, listed(source(1, "other/app")), QUIET)

    assert (renamed.added, renamed.modified, len(renamed.deletes)) == (0, 1, 1)
    assert table.live() == {"R1": (before["R1"][0], f"{HOST}/other/app")}

    back = table.sync(conn, listed(source(1, "other/app"), source(2, "acme/lib")), QUIET)

    assert back.restores == [before["R2"][0]] and back.inserts == []
    assert table.live()["R2"] == before["R2"]


def test_the_host_default_branch_is_not_a_change(table: Table) -> None:
    conn = connection(1)
    table.sync(conn, listed(source(1, "acme/app", default_branch="main")), QUIET)

    again = table.sync(conn, listed(source(1, "acme/app", default_branch="develop")), QUIET)

    assert (again.changes, again.unchanged) == ([], 1)


def test_invalid_names_and_clone_urls_elsewhere_are_skipped_with_a_warning(
    table: Table,
) -> None:
    elsewhere = source(2, "acme/inside", clone_url="https://internal.example.net/x.git")
    plan = table.sync(
        connection(1), listed(source(1, "acme/.hidden"), elsewhere, source(3, "acme/ok")), QUIET
    )

    assert [new.fields.name for new in plan.inserts] == [f"{HOST}/acme/ok"]
    assert plan.skipped == 2
    assert f"acme/.hidden: '{HOST}/acme/.hidden' is not a valid name" in plan.warnings
    assert any(
        warning.startswith("acme/inside: its clone URL is on https://internal.example.net")
        for warning in plan.warnings
    )


def test_an_incomplete_listing_deletes_nothing(table: Table) -> None:
    conn = connection(1)
    table.sync(conn, listed(source(1, "acme/app"), source(2, "acme/lib")), QUIET)
    snapshot = table.snapshot(conn)

    plan = planner.draft(conn, snapshot, listed(source(1, "acme/app")), complete=False, purge=QUIET)

    assert (plan.deletes, plan.unlinks, plan.held) == ([], [], [])


def test_deletions_over_the_threshold_are_held_and_nothing_is_unlinked(table: Table) -> None:
    conn = connection(1)
    table.sync(conn, listed(*(source(key, f"acme/r{key}") for key in range(10))), QUIET)
    ids = {external: key for external, (key, _) in table.live().items()}

    plan = table.sync(conn, listed(*(source(key, f"acme/r{key}") for key in range(7))), STRICT)

    assert plan.held == [ids["R7"], ids["R8"], ids["R9"]]
    assert (plan.deletes, plan.unlinks) == ([], [])
    assert "3 of 10 repositories would be deleted, more than the threshold of 2" in plan.warnings[0]
    assert len(table.live()) == 10


def test_a_name_taken_by_an_import_is_a_conflict_and_a_deleted_holder_gives_it_up(
    table: Table,
) -> None:
    conn = connection(1)
    table.imported(f"{HOST}/acme/taken")
    table.sync(conn, listed(source(1, "acme/old"), source(2, "acme/app")), QUIET)
    old_id = table.live()["R1"][0]
    table.sync(conn, listed(source(2, "acme/app")), QUIET)  # acme/old is soft-deleted

    plan = table.sync(
        conn, listed(source(2, "acme/taken"), source(3, "acme/taken"), source(4, "acme/old")), QUIET
    )

    assert f"name '{HOST}/acme/taken' is taken by another repository" in plan.warnings
    assert plan.skipped == 2  # R2 keeps its name; R3 is yielded with a name already claimed
    assert table.live()["R2"][1] == f"{HOST}/acme/app"
    assert plan.renames == {old_id: f"~deleted-{old_id}/{HOST}/acme/old"}
    assert table.live()["R4"][1] == f"{HOST}/acme/old"


def test_a_repository_that_keeps_its_name_keeps_it_from_a_new_one_too(table: Table) -> None:
    conn = connection(1)
    table.imported(f"{HOST}/acme/a")
    table.sync(conn, listed(source(1, "acme/b")), QUIET)
    kept = table.live()["R1"][0]

    # The host renames b to a (an import has that name) and lists a new b: b stays b.
    plan = table.sync(conn, listed(source(1, "acme/a"), source(2, "acme/b")), QUIET)

    assert table.live() == {"R1": (kept, f"{HOST}/acme/b")}
    assert plan.skipped == 2
    assert f"name '{HOST}/acme/b' is kept by a repository whose new name is taken" in (
        plan.warnings
    )


def test_a_shared_repository_is_named_by_the_lower_connection(table: Table) -> None:
    everything = connection(1)
    team = connection(2, repositoryPathPattern="team/{name}")
    table.sync(everything, listed(source(1, "team/app")), QUIET)

    plan = table.sync(team, listed(source(1, "team/app"), source(2, "team/lib")), QUIET)

    assert plan.unchanged == 1 and [link.repository_id for link in plan.new_links] == [
        table.live()["R1"][0]
    ]
    assert {name for _, name in table.live().values()} == {f"{HOST}/team/app", "team/lib"}


@pytest.mark.parametrize(
    ("live", "expected"), [(100, None), (118, None), (119, "would make 121 repositories")]
)
def test_over_limit_counts_what_the_plan_adds_to_the_live_repositories(
    table: Table, live: int, expected: str | None
) -> None:
    plan = planner.draft(
        connection(1),
        table.snapshot(connection(1)),
        listed(source(1, "acme/a"), source(2, "acme/b")),
        complete=True,
        purge=QUIET,
    )

    refused = planner.over_limit(plan, live, 120)

    if expected is None:
        assert refused is None
    else:
        assert refused is not None and expected in refused and "(120)" in refused


# The property: whatever the host does, the live rows become what the connections yield,
# and a repository keeps its id for as long as the host keeps its own.
NAMES = ["a", "b", "c", "d", "e"]
OWNERS = ["team", "else"]
change = st.tuples(
    st.sampled_from(["add", "delete", "rename", "move"]),
    st.integers(min_value=0, max_value=20),
    st.sampled_from(NAMES),
    st.sampled_from(OWNERS),
)
step = st.tuples(st.lists(change, min_size=1, max_size=4), st.booleans())


def changed(plan: Plan) -> bool:
    return bool(
        plan.inserts or plan.changes or plan.renames or plan.deletes or plan.new_links
    ) or bool(plan.moved_links or plan.unlinks)


def apply_change(
    host: dict[int, tuple[str, str]],
    fresh: Iterator[int],
    kind: str,
    pick: int,
    name: str,
    owner: str,
) -> None:
    """One change to the host (id -> (owner, name)), skipped when two would share a name."""
    taken = set(host.values())
    if kind == "add":
        if (owner, name) not in taken:
            host[next(fresh)] = (owner, name)
        return
    if not host:
        return
    target = sorted(host)[pick % len(host)]
    current_owner, current_name = host[target]
    if kind == "delete":
        del host[target]
    elif kind == "rename" and (current_owner, name) not in taken:
        host[target] = (current_owner, name)
    elif kind == "move" and (owner, current_name) not in taken:
        host[target] = (owner, current_name)


@given(steps=st.lists(step, min_size=1, max_size=8))
@examples(max_examples=300, deadline=None)
def test_rows_equal_the_union_of_what_connections_yield_with_stable_ids(
    steps: list[Any],
) -> None:
    table = Table()
    everything, team = connection(1), connection(2, orgs=["team"])
    host: dict[int, tuple[str, str]] = {}
    fresh = itertools.count(1)
    first_ids: dict[str, int] = {}
    for changes, team_first in steps:
        for each in changes:
            apply_change(host, fresh, *each)
        repos = [source(key, f"{owner}/{name}") for key, (owner, name) in host.items()]
        listings = {
            everything.id: listed(*repos),
            team.id: listed(*(repo for repo in repos if repo.name_with_owner.startswith("team/"))),
        }
        # One connection may skip a name a repository the other one no longer yields still
        # has, until the other has synced: the scheduled syncs settle it, in a round or two.
        order = [team, everything] if team_first else [everything, team]
        for _ in range(3):
            plans = [table.sync(conn, listings[conn.id], QUIET) for conn in order]
            if not any(changed(plan) for plan in plans):
                break
        else:
            pytest.fail("three rounds of syncs did not settle")

        live = table.live()
        assert {external: name for external, (_, name) in live.items()} == {
            f"R{key}": f"{HOST}/{owner}/{name}" for key, (owner, name) in host.items()
        }
        for external, (key, _) in live.items():
            assert first_ids.setdefault(external, key) == key, "an id changed"
