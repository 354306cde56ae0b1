"""What starting one git process costs the event loop, on asyncio's loop and on uvloop.

`repodepot serve` runs on asyncio's own loop (issue 14). Each side runs in a fresh
Python process holding a server-sized heap (HEAP_MIB of small objects, as a busy
server's RSS), and starts `git --version` STARTS times, one after another, through
`asyncio.create_subprocess_exec` as the git runner does; the time is that of the start
call (the loop is blocked for most of it), and, separately, the largest stall a 1 ms
ticker saw on the loop while processes start 20 at a time. uvloop is the baseline:
it was the server's loop before.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from bench.common import percentile

HEAP_MIB = 200
STARTS = 300
_CHILD = r"""
import asyncio, json, sys, time
heap = [bytearray(900) for _ in range({objects})]  # what a busy server holds
starts, stalls = [], []

async def start() -> None:
    began = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        "git", "--version", stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )
    starts.append(time.perf_counter() - began)
    await process.communicate()

async def ticker(done: asyncio.Event) -> None:
    while not done.is_set():
        began = time.perf_counter()
        await asyncio.sleep(0.001)
        stalls.append(time.perf_counter() - began - 0.001)

async def main() -> None:
    for _ in range({starts}):
        await start()
    done = asyncio.Event()
    tick = asyncio.create_task(ticker(done))
    for _ in range({starts} // 20):
        await asyncio.gather(*(start() for _ in range(20)))
    done.set()
    await tick

if sys.argv[1] == "uvloop":
    import uvloop
    uvloop.run(main())
else:
    asyncio.run(main())
rss = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) // 1024
print(json.dumps({{"starts": starts[:{starts}], "stalls": stalls, "rss": rss}}))
"""


async def run() -> list[str]:
    script = _CHILD.format(objects=HEAP_MIB * 1024 * 1024 // 1000, starts=STARTS)
    results = {}
    for loop in ("uvloop", "asyncio"):
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, loop,
            stdout=asyncio.subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(Path.cwd())},
        )  # fmt: skip
        out, _ = await process.communicate()
        results[loop] = json.loads(out)
    rows = [
        "| event loop | RSS MiB | start p50 / p95 / p99 ms | largest loop stall, 20 at once, ms |",
        "|---|---|---|---|",
    ]
    for loop, found in results.items():
        starts = found["starts"]
        cells = " / ".join(f"{percentile(starts, q) * 1000:.2f}" for q in (50, 95, 99))
        rows.append(f"| {loop} | {found['rss']} | {cells} | {max(found['stalls']) * 1000:.1f} |")
    ratio = percentile(results["uvloop"]["starts"], 50) / percentile(
        results["asyncio"]["starts"], 50
    )
    return [
        *rows,
        "",
        f"{STARTS} starts of `git --version` each, one at a time, in a process holding "
        f"{HEAP_MIB} MiB of small objects. asyncio's loop (the server's) starts a process "
        f"{ratio:.0f}x faster at the p50 than uvloop (the baseline, the server's loop "
        "before): it uses vfork, uvloop forks and copies the page tables.",
    ]
