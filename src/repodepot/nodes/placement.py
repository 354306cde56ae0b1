"""Which storage node owns a repository: weighted rendezvous hashing of its stable id.

Each (repository, node) pair gets a score from a stable hash; the node with the highest
score owns the repository, the next one takes it if the owner is lost, and so on. Adding
a node moves only the repositories it now scores highest on (about 1/N of them, all to
it); removing one moves only its own, each to its second choice; changing a node's weight
moves repositories only to or from that node. Hash-mod-N, which Sourcegraph uses for its
gitserver replicas, moves almost every repository when N changes.

The score is the logarithmic method for weighted rendezvous hashing: with `u` uniform in
(0, 1) from the hash, `score = -weight / ln(u)`, so a node's share is its weight over the
sum of the weights (Schindelhauer and Schomaker, "Weighted distributed hash tables", SPAA
2005, as the Wikipedia article "Rendezvous hashing" gives it under weighted variants).

Pure: no I/O. The hash is BLAKE2b, never Python's `hash()`, which is salted per process:
every process of a cluster must reach the same answer.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from repodepot.exceptions import InvalidInput, Unavailable

# A float holds 53 bits, so `(h + 0.5) / 2**64` for a 64-bit h can round to 1.0, whose
# log is 0. The top 52 bits plus one half are exact, and u stays strictly inside (0, 1).
_BITS = 52
_SPAN = float(2**_BITS)


class NoNodes(Unavailable):
    """No storage node can take the repository: none is active."""

    code = "no_storage_nodes"


@dataclass(frozen=True, kw_only=True, slots=True)
class Candidate:
    """A storage node that may own repositories; its share is proportional to its weight.

    Raises InvalidInput when the name is empty or the weight is not a finite number above 0.
    """

    name: str
    weight: float

    def __post_init__(self) -> None:
        if not self.name:
            raise InvalidInput("a storage node's name must not be empty", field="name")
        if not (math.isfinite(self.weight) and self.weight > 0):
            raise InvalidInput(
                f"storage node {self.name!r} has weight {self.weight!r}: "
                "a weight must be a finite number above 0",
                field="weight",
            )


def _score(repository_id: int, candidate: Candidate) -> float:
    digest = hashlib.blake2b(f"{repository_id}\x00{candidate.name}".encode(), digest_size=8)
    u = ((int.from_bytes(digest.digest(), "big") >> (64 - _BITS)) + 0.5) / _SPAN
    return -candidate.weight / math.log(u)


def rank(repository_id: int, candidates: Iterable[Candidate]) -> list[str]:
    """The candidates' names for the repository, best first.

    The first is the owner, the second takes the repository if the owner is lost, and so
    on. Equal scores are ordered by name. The candidates' order does not matter. Raises
    NoNodes when there is no candidate, InvalidInput when two have the same name.
    """
    nodes = _checked(candidates)
    return [n.name for n in sorted(nodes, key=lambda n: _order(repository_id, n))]


def owner(repository_id: int, candidates: Iterable[Candidate]) -> str:
    """The name of the candidate that owns the repository: `rank(...)[0]`, in O(N).

    Raises NoNodes when there is no candidate, InvalidInput when two have the same name.
    """
    return _best(repository_id, _checked(candidates))


def plan_moves(assignments: Mapping[int, str], candidates: Iterable[Candidate]) -> dict[int, str]:
    """The repositories whose owner differs from where they are now, and their new owner.

    `assignments` maps each repository id to the node that holds it now (the stored
    assignment). Repositories already on their owner are left out. Raises NoNodes when
    there is no candidate, InvalidInput when two have the same name.
    """
    nodes = _checked(candidates)
    moves = {}
    for repository_id, current in assignments.items():
        best = _best(repository_id, nodes)
        if best != current:
            moves[repository_id] = best
    return moves


def _order(repository_id: int, node: Candidate) -> tuple[float, str]:
    return (-_score(repository_id, node), node.name)  # the highest score first, then by name


def _best(repository_id: int, nodes: list[Candidate]) -> str:
    return min(nodes, key=lambda n: _order(repository_id, n)).name


def _checked(candidates: Iterable[Candidate]) -> list[Candidate]:
    nodes = list(candidates)
    if not nodes:
        raise NoNodes("no active storage node: a repository cannot be placed")
    seen: set[str] = set()
    for node in nodes:
        if node.name in seen:
            raise InvalidInput(f"storage node {node.name!r} is listed twice", field="name")
        seen.add(node.name)
    return nodes
