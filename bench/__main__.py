"""`make bench`: every benchmark, each against its baseline in the same run, as Markdown tables.

`python -m bench [runner] [imports] [clones] [memory] [sync]` runs only the sections named.
Everything talks to 127.0.0.1: the test suite's loopback smart-HTTP git server.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable

from bench import clones, imports, runner, sync

SECTIONS: dict[str, tuple[str, Callable[[], Awaitable[list[str]]]]] = {
    "runner": ("git runner overhead", runner.run),
    "imports": ("import: database statements and progress latency (~60 s imports)", imports.run),
    "clones": ("import: clone wall time", clones.clone_times),
    "memory": ("import: server memory on a 520 MiB repository", clones.peak_rss),
    "sync": ("code host sync: 20,000 repositories from a fake GitHub", sync.run),
}


async def main(names: list[str]) -> None:
    for name in names or list(SECTIONS):
        title, run = SECTIONS[name]
        print(f"\n### {title}\n", flush=True)
        print("\n".join(await run()), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
