"""The move plan (`nodes.moves.decide`): what each mirror not on its owner needs."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from repodepot.gitserver.service import Holding
from repodepot.nodes.moves import decide
from repodepot.nodes.placement import Candidate, owner

THREE = [Candidate(name=name, weight=1.0) for name in ("gs-a", "gs-b", "gs-c")]
FOUR = [*THREE, Candidate(name="gs-d", weight=1.0)]


def _held(
    key: int,
    node: str,
    *,
    move_to: str | None = None,
    cloned: bool = True,
    leased: bool = False,
) -> Holding:
    return Holding(repository_id=key, node=node, move_to=move_to, cloned=cloned, leased=leased)


def _on_owners(ids: range, nodes: list[Candidate]) -> list[Holding]:
    return [_held(key, owner(key, nodes)) for key in ids]


def test_mirrors_on_their_owners_need_nothing() -> None:
    decisions = decide(_on_owners(range(1, 200), THREE), THREE, {"gs-a", "gs-b", "gs-c"}, limit=4)
    assert decisions.empty
    assert decisions.in_flight == 0


def test_a_new_node_takes_only_its_first_choices_a_few_at_a_time() -> None:
    holdings = _on_owners(range(1, 401), THREE)
    alive = {"gs-a", "gs-b", "gs-c", "gs-d"}
    everything = decide(holdings, FOUR, alive, limit=1000)
    moving = [key for ids in everything.start.values() for key in ids]
    assert {to for _, to in everything.start} == {"gs-d"}
    assert sorted(moving) == [key for key in range(1, 401) if owner(key, FOUR) == "gs-d"]
    assert 0.2 < len(moving) / 400 < 0.3  # about a quarter

    limited = decide(holdings, FOUR, alive, limit=4)
    assert sum(map(len, limited.start.values())) == 4
    assert limited.in_flight == 4
    assert not (limited.relocate or limited.replace or limited.cancel)


def test_moves_in_flight_count_against_the_limit() -> None:
    holdings = _on_owners(range(1, 401), THREE)
    to_d = [held for held in holdings if owner(held.repository_id, FOUR) == "gs-d"]
    flying = {held.repository_id for held in to_d[:3]}
    holdings = [
        _held(held.repository_id, held.node, move_to="gs-d")
        if held.repository_id in flying
        else held
        for held in holdings
    ]
    decisions = decide(holdings, FOUR, {"gs-a", "gs-b", "gs-c", "gs-d"}, limit=4)
    assert decisions.in_flight == 4
    started = [key for ids in decisions.start.values() for key in ids]
    assert len(started) == 1 and started[0] not in flying


def test_a_drained_node_gives_every_mirror_away_by_copy() -> None:
    holdings = _on_owners(range(1, 301), THREE)
    active = [node for node in THREE if node.name != "gs-b"]  # gs-b drains: alive, not active
    decisions = decide(holdings, active, {"gs-a", "gs-b", "gs-c"}, limit=1000)
    moving = sorted(key for ids in decisions.start.values() for key in ids)
    assert moving == [held.repository_id for held in holdings if held.node == "gs-b"]
    assert {was for was, _ in decisions.start} == {"gs-b"}
    assert all(to == owner(key, active) for (_, to), ids in decisions.start.items() for key in ids)
    assert not decisions.relocate


def test_a_lost_node_s_mirrors_are_relocated_to_their_next_choice_all_at_once() -> None:
    holdings = _on_owners(range(1, 301), THREE)
    active = [node for node in THREE if node.name != "gs-c"]
    decisions = decide(holdings, active, {"gs-a", "gs-b"}, limit=1)
    relocated = sorted(key for ids in decisions.relocate.values() for key in ids)
    assert relocated == [held.repository_id for held in holdings if held.node == "gs-c"]
    assert {lost for lost, _ in decisions.relocate} == {"gs-c"}
    for (_, to), ids in decisions.relocate.items():
        assert all(owner(key, THREE) == "gs-c" and owner(key, active) == to for key in ids)
    assert not decisions.start  # not rate-limited: there is nothing to copy from


def test_a_node_removed_from_the_registry_is_lost_too() -> None:
    holdings = [_held(7, "gone"), _held(8, "gone", move_to="gs-a")]
    decisions = decide(holdings, THREE, {"gs-a", "gs-b", "gs-c"}, limit=4)
    assert sorted(key for ids in decisions.relocate.values() for key in ids) == [7, 8]


def test_uncloned_mirrors_are_placed_again_unless_a_clone_runs() -> None:
    wrong = next(key for key in range(1, 100) if owner(key, THREE) != "gs-a")
    other = next(key for key in range(wrong + 1, 200) if owner(key, THREE) != "gs-a")
    holdings = [_held(wrong, "gs-a", cloned=False), _held(other, "gs-a", cloned=False, leased=True)]
    decisions = decide(holdings, THREE, {"gs-a", "gs-b", "gs-c"}, limit=4)
    assert decisions.replace == {("gs-a", owner(wrong, THREE)): [wrong]}
    assert not decisions.start


def test_a_move_whose_target_changed_is_cancelled_unless_it_is_copying() -> None:
    key = next(key for key in range(1, 100) if owner(key, THREE) == "gs-a")
    wrong = "gs-b"
    idle = decide([_held(key, "gs-c", move_to=wrong)], THREE, {"gs-a", "gs-b", "gs-c"}, limit=4)
    assert idle.cancel == [key]
    busy = decide(
        [_held(key, "gs-c", move_to=wrong, leased=True)], THREE, {"gs-a", "gs-b", "gs-c"}, limit=4
    )
    assert busy.empty


def test_no_active_node_changes_nothing() -> None:
    assert decide([_held(1, "gone")], [], set(), limit=4).empty


@settings(max_examples=60, deadline=None)
@given(
    ids=st.lists(st.integers(1, 10**9), min_size=1, max_size=60, unique=True),
    lost=st.sampled_from(["gs-a", "gs-b", "gs-c"]),
)
def test_after_the_plan_every_mirror_is_headed_to_its_owner(ids: list[int], lost: str) -> None:
    holdings = _on_owners(range(0), THREE) + [_held(key, owner(key, THREE)) for key in ids]
    active = [node for node in FOUR if node.name != lost]
    decisions = decide(holdings, active, {node.name for node in active}, limit=10**6)
    headed = {held.repository_id: held.node for held in holdings}
    for pairs in (decisions.relocate, decisions.start):
        for (was, to), keys in pairs.items():
            for key in keys:
                assert headed[key] == was
                headed[key] = to
    assert headed == {key: owner(key, active) for key in ids}
