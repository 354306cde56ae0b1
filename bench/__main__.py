"""`make bench`: every benchmark, each against its baseline in the same run, as Markdown tables.

`python -m bench [SECTION ...]`, sections as in SECTIONS, runs only the sections named.
Everything talks to 127.0.0.1: the test suite's loopback smart-HTTP git server.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

from bench import (
    access,
    branches,
    clones,
    gitserver,
    goproxy,
    http,
    imports,
    load,
    noderouting,
    nodes,
    pool,
    runner,
    sandbox,
    spawn,
    sqlite,
    sync,
)

SECTIONS: dict[str, tuple[str, Callable[[], Awaitable[list[str]]]]] = {
    "runner": ("git runner overhead", runner.run),
    "sandbox": ("git runner: the bwrap sandbox's cost per read", sandbox.run),
    "imports": ("import: database statements and progress latency (~60 s imports)", imports.run),
    "clones": ("import: clone wall time", clones.clone_times),
    "memory": ("import: server memory on a 520 MiB repository", clones.peak_rss),
    "sync": ("code host sync: 20,000 repositories from a fake GitHub", sync.run),
    "scheduler": ("update scheduler: 100,000 mirrors in the queue", gitserver.scheduler),
    "sweep": ("update scheduler: a sweep of 1,000 unchanged mirrors", gitserver.sweep),
    "ensure": ("gitserver: EnsureRevision of a present commit", gitserver.ensure),
    "smarthttp": ("gitserver: smart-HTTP clone of a large mirror", gitserver.smarthttp),
    "goproxy": (
        "Go module proxy: a 210 MB module's zip; list and info with 2,000 tags",
        goproxy.run,
    ),
    "branches": (
        "branch status: ahead/behind, a fetch's parts, sync-status under load",
        branches.run,
    ),
    "spawn": ("the event loop: what starting a git process costs it", spawn.run),
    "http": ("HTTP throughput: wrk against each endpoint and /healthz", http.run),
    "pool": ("reader pool: a commit lookup cold against hot (seed benchmark 1)", pool.run),
    "sqlite": (
        "SQLite: reads during a steady write load, WAL against DELETE (seed benchmark 4)",
        sqlite.run,
    ),
    "load": (
        "load test: 100 users, 1,000 repositories, background fetches, a failing upstream",
        load.run,
    ),
    "access": (
        "access: 20,000 repositories, 200,000 grants; a permission sync of 1,000 accounts",
        access.run,
    ),
    "nodes": (
        "storage nodes: rendezvous placement of 100,000 repositories, 10 → 11 nodes",
        nodes.run,
    ),
    "noderouting": (
        "storage nodes: reads through a web process against directly from its node, and moves",
        noderouting.run,
    ),
}


async def main(names: list[str]) -> None:
    for name in names or list(SECTIONS):
        title, run = SECTIONS[name]
        print(f"\n### {title}\n", flush=True)
        print("\n".join(await run()), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
