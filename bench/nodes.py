"""Storage nodes (issue 16): what rendezvous placement moves when the nodes change, and its cost.

100,000 repositories (ids 1..100,000, as the database hands them out) are placed by
`repodepot.nodes.placement` over 10 nodes of weight 1, then 11: the share that moves
must be at most 1/11 + 1%, and hash-mod-N's (`id % N`, as Sourcegraph places gitserver
repositories) is printed beside it for the same change. Then one of 11 nodes is removed,
and a node of weight 2 joins 10 of weight 1 (its share should be 2/12). The cost of one
`owner()` over 11 nodes is timed call by call, and a whole placement by the wall clock;
so is the move plan (`nodes.moves.decide`) over every repository when the eleventh node
joins: its first pass (every owner ranked) and the later ones while moves are in flight
(owners kept); the leader skips the pass while the nodes stay as it left them.

`REPODEPOT_BENCH_QUICK=1`: 10,000 repositories.
"""

from __future__ import annotations

import os
import time

from bench.common import percentile
from repodepot.gitserver.service import Holding
from repodepot.nodes.moves import Owners, decide
from repodepot.nodes.placement import Candidate, owner, plan_moves

QUICK = os.environ.get("REPODEPOT_BENCH_QUICK") == "1"
REPOS = 10_000 if QUICK else 100_000
TIMED = 10_000  # single owner() calls timed one by one
IDS = range(1, REPOS + 1)


def _nodes(count: int) -> list[Candidate]:
    return [Candidate(name=f"gitserver-{i}", weight=1.0) for i in range(1, count + 1)]


def _place(candidates: list[Candidate]) -> dict[int, str]:
    return {repository_id: owner(repository_id, candidates) for repository_id in IDS}


def _mod_moved(before: int, after: int) -> float:
    return sum(1 for i in IDS if i % before != i % after) / REPOS


def _call_times(candidates: list[Candidate]) -> list[float]:
    taken = []
    for repository_id in range(1, TIMED + 1):
        started = time.perf_counter_ns()
        owner(repository_id, candidates)
        taken.append((time.perf_counter_ns() - started) / 1000)
    return taken


def _plan_pass(on_ten: dict[int, str], eleven: list[Candidate]) -> tuple[list[float], int]:
    """Wall seconds of passes of the move plan as the eleventh node joins, and its moves.

    The first pass ranks every repository; the three after it, over the same nodes (moves
    in flight), find the owners kept (`Owners`), as the leader's later passes do.
    """
    holdings = [
        Holding(repository_id=key, node=node, move_to=None, cloned=True, leased=False)
        for key, node in on_ten.items()
    ]
    alive = {candidate.name for candidate in eleven}
    owners = Owners()
    passes, planned = [], 0
    for _ in range(4):
        started = time.perf_counter()
        decisions = decide(holdings, eleven, alive, limit=len(holdings), owner_of=owners.of(eleven))
        passes.append(time.perf_counter() - started)
        planned = sum(map(len, decisions.start.values()))
    return passes, planned


async def run() -> list[str]:
    ten, eleven = _nodes(10), _nodes(11)
    started = time.perf_counter()
    on_ten = _place(ten)
    wall = time.perf_counter() - started
    added = plan_moves(on_ten, eleven)
    on_eleven = _place(eleven)
    removed = plan_moves(on_eleven, [c for c in eleven if c.name != "gitserver-4"])
    heavy = [*ten, Candidate(name="heavy", weight=2.0)]
    heavy_share = sum(1 for name in _place(heavy).values() if name == "heavy") / REPOS
    bar = 1 / 11 + 0.01
    added_share = len(added) / REPOS
    only_new = set(added.values()) == {"gitserver-11"}
    only_own = all(on_eleven[i] == "gitserver-4" for i in removed)
    passes, planned = _plan_pass(on_ten, eleven)
    taken = _call_times(eleven)
    cost = " / ".join(f"{percentile(taken, q):.1f}" for q in (50, 95, 99))
    return [
        f"{REPOS:,} repositories (ids 1..{REPOS:,}); rendezvous placement (BLAKE2b, weighted "
        "logarithmic score) against hash-mod-N (`id % N`) for the same change.",
        "",
        "| change | rendezvous: share moved | hash-mod-N: share moved | expected | target |",
        "|---|---|---|---|---|",
        f"| 10 → 11 nodes | {added_share:.2%} ({'all' if only_new else 'NOT all'} to the new node) "
        f"| {_mod_moved(10, 11):.2%} | 1/11 = {1 / 11:.2%} "
        f"| {'met' if added_share <= bar else 'MISSED'} (≤ 1/11 + 1% = {bar:.2%}) |",
        f"| 11 → 10 nodes (one removed) | {len(removed) / REPOS:.2%} "
        f"({'only' if only_own else 'NOT only'} the removed node's) | {_mod_moved(11, 10):.2%} "
        f"| 1/11 = {1 / 11:.2%} | |",
        f"| a node of weight 2 joins 10 of weight 1 | its share {heavy_share:.2%} | | "
        f"2/12 = {2 / 12:.2%} | |",
        "",
        "| cost | figure |",
        "|---|---|",
        f"| one `owner()` over 11 nodes, p50 / p95 / p99 µs ({TIMED:,} calls) | {cost} |",
        f"| placing all {REPOS:,} repositories over 10 nodes, wall s | {wall:.2f} |",
        f"| the move plan's first pass as node 11 joins ({planned:,} moves planned), wall s "
        f"| {passes[0]:.2f} |",
        f"| a later pass over the same nodes (owners kept), wall s, p50 of 3 "
        f"| {percentile(passes[1:], 50):.2f} |",
    ]
