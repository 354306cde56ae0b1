"""Rendezvous placement: which node owns a repository, and what moves when the nodes change."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repodepot.exceptions import InvalidInput
from repodepot.nodes.placement import Candidate, NoNodes, owner, plan_moves, rank

IDS = range(1, 20_001)


def nodes(count: int, weight: float = 1.0) -> list[Candidate]:
    return [Candidate(name=f"gitserver-{i}", weight=weight) for i in range(1, count + 1)]


def owners(candidates: list[Candidate]) -> dict[int, str]:
    return {repository_id: owner(repository_id, candidates) for repository_id in IDS}


def shares(placed: dict[int, str]) -> dict[str, float]:
    return {name: count / len(placed) for name, count in Counter(placed.values()).items()}


repository_ids = st.integers(min_value=1, max_value=2**63 - 1)
weights = st.floats(min_value=0.01, max_value=100.0)
clusters = st.dictionaries(st.text(min_size=1, max_size=12), weights, min_size=2, max_size=8).map(
    lambda found: [Candidate(name=name, weight=w) for name, w in found.items()]
)


# Every process agrees -------------------------------------------------------------------------

THREE = nodes(3)
WEIGHTED = [Candidate(name="a", weight=1.0), Candidate(name="b", weight=2.5)]


@pytest.mark.parametrize(
    ("repository_id", "candidates", "expected"),
    [
        # Computed once: a change of hash, of the key's layout or of the score fails here,
        # and so would Python's per-process salted hash().
        (1, THREE, ["gitserver-3", "gitserver-2", "gitserver-1"]),
        (2, THREE, ["gitserver-3", "gitserver-1", "gitserver-2"]),
        (3, THREE, ["gitserver-1", "gitserver-2", "gitserver-3"]),
        (42, THREE, ["gitserver-3", "gitserver-1", "gitserver-2"]),
        (1000, THREE, ["gitserver-1", "gitserver-2", "gitserver-3"]),
        (123456789, THREE, ["gitserver-3", "gitserver-2", "gitserver-1"]),
        (7, WEIGHTED, ["a", "b"]),
        (99, WEIGHTED, ["b", "a"]),
    ],
)
def test_placement_is_fixed_by_the_repository_id_and_the_nodes(
    repository_id: int, candidates: list[Candidate], expected: list[str]
) -> None:
    assert rank(repository_id, candidates) == expected
    assert owner(repository_id, candidates) == expected[0]


@given(repository_id=repository_ids, candidates=clusters, seed=st.integers())
def test_rank_lists_every_node_once_owner_first_whatever_their_order(
    repository_id: int, candidates: list[Candidate], seed: int
) -> None:
    ranked = rank(repository_id, candidates)
    assert sorted(ranked) == sorted(c.name for c in candidates)
    assert ranked[0] == owner(repository_id, candidates)
    shuffled = list(candidates)
    random.Random(seed).shuffle(shuffled)
    assert rank(repository_id, shuffled) == ranked


def test_equal_nodes_get_equal_shares() -> None:
    placed = shares(owners(nodes(10)))
    assert len(placed) == 10
    for share in placed.values():  # 2,000 expected each; the binomial sd is 0.0021
        assert share == pytest.approx(0.1, abs=0.01)


# Adding a node --------------------------------------------------------------------------------


@given(repository_id=repository_ids, candidates=clusters)
def test_a_new_node_takes_repositories_only_for_itself(
    repository_id: int, candidates: list[Candidate]
) -> None:
    *before, added = candidates
    assert owner(repository_id, candidates) in {owner(repository_id, before), added.name}


def test_an_eleventh_node_takes_about_one_eleventh_and_nothing_else_moves() -> None:
    before = owners(nodes(10))
    eleven = nodes(11)
    moves = plan_moves(before, eleven)
    assert set(moves.values()) == {"gitserver-11"}
    assert len(moves) / len(IDS) == pytest.approx(1 / 11, abs=0.01)
    after = owners(eleven)
    assert {i for i in IDS if after[i] != before[i]} == set(moves)


# Removing a node ------------------------------------------------------------------------------


@given(repository_id=repository_ids, candidates=clusters, lost=st.integers(0, 7))
def test_a_lost_node_s_repositories_go_to_their_second_choice_and_no_other_moves(
    repository_id: int, candidates: list[Candidate], lost: int
) -> None:
    gone = candidates[lost % len(candidates)]
    remaining = [c for c in candidates if c is not gone]
    ranked = rank(repository_id, candidates)
    expected = ranked[1] if ranked[0] == gone.name else ranked[0]
    assert owner(repository_id, remaining) == expected
    assert rank(repository_id, remaining) == [n for n in ranked if n != gone.name]


def test_removing_one_of_eleven_moves_only_its_own_repositories() -> None:
    before = owners(nodes(11))
    remaining = [c for c in nodes(11) if c.name != "gitserver-4"]
    moves = plan_moves(before, remaining)
    assert set(moves) == {i for i in IDS if before[i] == "gitserver-4"}
    assert all(moves[i] == rank(i, nodes(11))[1] for i in moves)
    assert len(moves) / len(IDS) == pytest.approx(1 / 11, abs=0.01)


# Weights --------------------------------------------------------------------------------------


def test_a_node_of_weight_two_gets_twice_the_share_of_a_node_of_weight_one() -> None:
    heavy = Candidate(name="heavy", weight=2.0)
    placed = shares(owners([*nodes(10), heavy]))
    # Expected 2/12 = 0.1667 (binomial sd 0.0026) against 1/12 = 0.0833 for each other node.
    assert placed["heavy"] == pytest.approx(2 / 12, abs=0.01)
    light = [share for name, share in placed.items() if name != "heavy"]
    assert placed["heavy"] / (sum(light) / len(light)) == pytest.approx(2.0, rel=0.1)


@given(repository_id=repository_ids, candidates=clusters, factor=st.floats(0.1, 10.0))
def test_a_weight_change_moves_repositories_only_to_or_from_that_node(
    repository_id: int, candidates: list[Candidate], factor: float
) -> None:
    changed, *others = candidates
    reweighted = [Candidate(name=changed.name, weight=changed.weight * factor), *others]
    before, after = owner(repository_id, candidates), owner(repository_id, reweighted)
    if before != after:
        # Heavier, it only takes repositories; lighter, it only gives them away.
        assert (after if factor > 1 else before) == changed.name


def test_plan_moves_leaves_out_repositories_already_on_their_owner() -> None:
    placed = {i: owner(i, THREE) for i in range(1, 101)}
    assert plan_moves(placed, THREE) == {}
    misplaced = {**placed, 5: "gitserver-9"}
    assert plan_moves(misplaced, THREE) == {5: owner(5, THREE)}


# Errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call", [lambda: rank(1, []), lambda: owner(1, []), lambda: plan_moves({1: "a"}, [])]
)
def test_no_node_is_a_typed_error(call: Callable[[], object]) -> None:
    with pytest.raises(NoNodes, match="no active storage node") as raised:
        call()
    assert raised.value.code == "no_storage_nodes"


@pytest.mark.parametrize("weight", [0.0, -1.0, math.nan, math.inf, -math.inf])
def test_a_weight_must_be_a_finite_number_above_zero(weight: float) -> None:
    with pytest.raises(InvalidInput, match="'gitserver-1' has weight") as raised:
        Candidate(name="gitserver-1", weight=weight)
    assert raised.value.field == "weight"


def test_a_node_needs_a_name() -> None:
    with pytest.raises(InvalidInput, match="name must not be empty") as raised:
        Candidate(name="", weight=1.0)
    assert raised.value.field == "name"


def test_a_node_listed_twice_is_refused() -> None:
    twice = [*THREE, Candidate(name="gitserver-2", weight=3.0)]
    for call in (rank, owner):
        with pytest.raises(InvalidInput, match="'gitserver-2' is listed twice"):
            call(1, twice)
    with pytest.raises(InvalidInput, match="listed twice"):
        plan_moves({1: "gitserver-1"}, twice)
