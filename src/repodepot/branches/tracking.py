"""Which branches an upstream tracks: names, globs and `local:upstream` mappings (pure).

A spec is `main` (local `main` against upstream `main`), `main:master` (local `main`
against upstream `master`) or a glob with one `*` on each side (`release/*`,
`rel/*:release/*`): every branch either side has that matches. The fetch asks the
upstream only for the branches the specs name (the seed's incremental fetch), into
`refs/upstream/NAME`, a namespace of the mirror that clients never see.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from repodepot.exceptions import InvalidInput

NAMESPACE = "refs/upstream/"
MAX_SPECS = 50
MAX_TRACKED = 1000  # upstream branches one upstream's specs may match (rows, refs, walks)
MAX_NAME = 200
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]*")


@dataclass(frozen=True, slots=True)
class Spec:
    """One tracked entry: a local branch (or glob) against an upstream branch (or glob)."""

    local: str
    upstream: str

    @property
    def is_glob(self) -> bool:
        """Whether this spec is a glob (`release/*`)."""
        return "*" in self.local

    def __str__(self) -> str:
        return self.local if self.local == self.upstream else f"{self.local}:{self.upstream}"

    def upstream_for(self, local: str) -> str | None:
        """The upstream branch local branch `local` is compared with, if this spec covers it."""
        star = _glob_match(self.local, local)
        return None if star is None else self.upstream.replace("*", star)

    def local_for(self, upstream: str) -> str | None:
        """The local branch that upstream branch `upstream` is compared with, if covered."""
        star = _glob_match(self.upstream, upstream)
        return None if star is None else self.local.replace("*", star)


def _glob_match(pattern: str, name: str) -> str | None:
    """What `*` stands for when `name` matches `pattern` ("" for a plain name), else None."""
    if "*" not in pattern:
        return "" if pattern == name else None
    head, _, tail = pattern.partition("*")
    if len(name) <= len(head) + len(tail) or not name.startswith(head) or not name.endswith(tail):
        return None
    return name[len(head) : len(name) - len(tail)]


def _check_name(name: str, spec: str) -> None:
    """A branch name or glob git accepts, from a positive list of characters."""
    parts = name.split("/")
    ok = (
        0 < len(name) <= MAX_NAME
        and name.count("*") <= 1
        and all(_PART.fullmatch(part.replace("*", "x")) or part == "*" for part in parts)
        and not any(part.endswith((".lock", ".")) or ".." in part for part in parts)
        and name != "HEAD"  # git check-ref-format --branch refuses it
    )
    if not ok:
        raise InvalidInput(
            f"branches: {spec!r} is not a branch name, a glob with one '*', or LOCAL:UPSTREAM "
            "of such names ('/'-separated parts of letters, digits, '.', '_', '+', '-')",
            field="branches",
        )


def parse(specs: Iterable[str]) -> list[Spec]:
    """The specs, checked; InvalidInput naming `branches` for the first one that is wrong."""
    if isinstance(specs, str):
        raise InvalidInput("branches must be a list of strings", field="branches")
    parsed: list[Spec] = []
    for raw in specs:
        if not isinstance(raw, str):
            raise InvalidInput("branches: every entry must be a string", field="branches")
        local, sep, upstream = raw.partition(":")
        upstream = upstream if sep else local
        _check_name(local, raw)
        _check_name(upstream, raw)
        if local.count("*") != upstream.count("*"):
            raise InvalidInput(f"branches: {raw!r} has a '*' on one side only", field="branches")
        spec = Spec(local, upstream)
        if spec not in parsed:
            parsed.append(spec)
    if not parsed:
        raise InvalidInput("branches: name at least one branch", field="branches")
    if len(parsed) > MAX_SPECS:
        raise InvalidInput(f"branches: at most {MAX_SPECS} entries", field="branches")
    return parsed


def upstream_wanted(specs: Sequence[Spec], upstream_heads: Iterable[str]) -> list[str]:
    """The upstream branches (of those it has) that the specs ask for, sorted."""
    return sorted(
        {name for name in upstream_heads if any(s.local_for(name) is not None for s in specs)}
    )


def refspec(upstream_branch: str) -> str:
    """The fetch refspec that brings one upstream branch into the hidden namespace."""
    return f"+refs/heads/{upstream_branch}:{NAMESPACE}{upstream_branch}"


def pairs(
    specs: Sequence[Spec], local_heads: Iterable[str], upstream_heads: Iterable[str]
) -> list[tuple[str, str]]:
    """Every (local branch, upstream branch) the specs track, present on either side.

    A plain spec is always a pair (`missing` shows when a side lacks it); a glob pairs
    every branch either side has that matches it. The first spec covering a local
    branch wins. Sorted by local branch.
    """
    found: dict[str, str] = {}
    locals_ = list(local_heads)
    uppers = list(upstream_heads)
    for spec in specs:
        if not spec.is_glob:
            found.setdefault(spec.local, spec.upstream)
            continue
        for name in locals_:
            other = spec.upstream_for(name)
            if other is not None:
                found.setdefault(name, other)
        for name in uppers:
            mine = spec.local_for(name)
            if mine is not None:
                found.setdefault(mine, name)
    return sorted(found.items())
