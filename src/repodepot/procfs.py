"""What Linux's /proc says about the processes we started: their resident memory."""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_resident_bytes(pid: int) -> int:
    """The resident set of `pid` and all its descendants, in bytes; 0 once it has ended.

    A sandboxed git is bubblewrap's grandchild: the tree, not the direct child, is
    what it costs. Pages shared between processes (libraries, a mapped pack) count
    in each, as `ps`'s RSS does. A process that ends while it is read counts 0.
    """
    total = 0
    pending, seen = [pid], set[int]()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        total += _resident(current)
        pending.extend(_children(current))
    return total


def _resident(pid: int) -> int:
    try:  # statm: size resident shared text lib data dt, in pages
        return int((PROC / str(pid) / "statm").read_text().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _children(pid: int) -> list[int]:
    children: list[int] = []
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return children
    for task in tasks:
        try:
            children.extend(int(child) for child in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return children
