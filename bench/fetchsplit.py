"""Where an upstream fetch's time goes: network, pack processing, ref update.

A served repository of 10,000 files grows by N commits (two files changed in each); a
copy of the mirror without them fetches them through `bench.throttle` (a 50 ms round
trip, 50 Mbit/s: a code host across a continent) from the test suite's loopback
`git http-backend` server, with `commands.fetch(..., trace2=, on_progress=)` as the
upstream fetcher runs it, and `trace2.decompose` splits the time. The baseline is
plain `git fetch` of the same refspec through the same link, interleaved.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from bench.common import percentile, plain_git, repo_size
from bench.throttle import Throttle
from repodepot.branches import trace2
from repodepot.branches.trace2 import FetchTimings
from repodepot.git import commands
from repodepot.git.runner import GitRunner
from repodepot.settings import process_path
from tests.support.githttp import GitHttpServer
from tests.support.repogen import HERMETIC

FILES = 10_000
NEW = (100, 1_000, 10_000)
RUNS = 5
RTT = 0.050
RATE = 50e6 / 8  # bytes a second
THROTTLED = "50 ms, 50 Mbit/s"
IDENT = b"Bench <bench@example.com>"
T0 = 1_600_000_000


def _blob(rng: random.Random) -> bytes:
    return rng.randbytes(200).hex().encode() + b"\n"


def _stream() -> Iterator[bytes]:
    """One commit of FILES files on main, then max(NEW) commits on `line`; `nN` refs."""
    rng = random.Random(13)
    files = [b"d%03d/f%02d.txt" % (i // 100, i % 100) for i in range(FILES)]
    tree = b"".join(
        b"M 100644 inline %s\ndata %d\n%s\n" % (path, len(blob), blob)
        for path, blob in ((path, _blob(rng)) for path in files)
    )
    yield b"commit refs/heads/main\nmark :1\ncommitter %s %d +0000\ndata 4\nbase\n" % (IDENT, T0)
    yield tree
    piece: list[bytes] = []
    for mark in range(2, max(NEW) + 2):
        piece.append(
            b"commit refs/heads/line\nmark :%d\ncommitter %s %d +0000\ndata 6\nchange\n"
            % (mark, IDENT, T0 + 60 * mark)
        )
        if mark == 2:
            piece.append(b"from :1\n")
        for path in rng.sample(files, 2):
            blob = _blob(rng)
            piece.append(b"M 100644 inline %s\ndata %d\n%s\n" % (path, len(blob), blob))
    piece += [b"reset refs/heads/n%d\nfrom :%d\n\n" % (n, n + 1) for n in NEW]
    piece.append(b"done\n")
    yield b"".join(piece)


def _served(path: Path) -> Path:
    plain_git("init", "-q", "--bare", "--initial-branch=main", str(path))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **HERMETIC}
    process = subprocess.Popen(
        ["git", "fast-import", "--done", "--quiet"], cwd=path, env=env, stdin=subprocess.PIPE
    )
    assert process.stdin is not None
    for piece in _stream():
        process.stdin.write(piece)
    process.stdin.close()
    assert process.wait() == 0
    plain_git("--git-dir", str(path), "repack", "-adq")
    return path


class Sample:
    """One fetch by repodepot's runner: wall time and trace2's split."""

    def __init__(self, wall: float, split: FetchTimings, events: list[str]) -> None:
        self.wall = wall
        self.split = split
        self.events = events


async def _ours(runner: GitRunner, repo: Path, url: str, n: int, trace: Path) -> Sample:
    received: list[datetime] = []

    def progress(chunk: bytes) -> None:
        if not received and trace2.marks_received(chunk):
            received.append(datetime.now(UTC))

    started = time.perf_counter()
    await commands.fetch(
        runner,
        repo,
        url,
        [f"+refs/heads/n{n}:refs/upstream/main"],
        on_progress=progress,
        trace2=trace,
    )
    wall = time.perf_counter() - started
    events = trace.read_text().splitlines()
    return Sample(wall, trace2.decompose(events, received[0] if received else None), events)


async def _plain(repo: Path, url: str, n: int) -> float:
    started = time.perf_counter()
    await asyncio.to_thread(
        plain_git,
        "--git-dir",
        str(repo),
        "fetch",
        "-q",
        "--no-write-fetch-head",
        url,
        f"+refs/heads/n{n}:refs/upstream/main",
    )
    return time.perf_counter() - started


def _regions(events: list[str]) -> str:
    """The top process's region_leave events and exit, as `label t_rel` (for the report)."""
    shown = []
    top = None
    for line in events:
        event = json.loads(line)
        top = top or event.get("sid")
        if event.get("sid") != top:
            continue
        if event.get("event") == "region_leave":
            shown.append(f"{event['category']}/{event['label']} {event['t_rel']:.3f}")
        elif event.get("event") == "exit":
            shown.append(f"exit {event['t_abs']:.3f}")
    return ", ".join(shown)


async def run() -> list[str]:
    with tempfile.TemporaryDirectory(prefix="repodepot-bench-") as scratch:
        root = Path(scratch)
        served = await asyncio.to_thread(_served, root / "served" / "up.git")
        base = root / "base.git"
        plain_git("init", "-q", "--bare", "--initial-branch=main", str(base))
        plain_git("--git-dir", str(base), "fetch", "-q", str(served), "main:main")
        runner = GitRunner(runtime_dir=root / "run", path=process_path(), allowed_schemes=["http"])
        results: dict[tuple[str, int], tuple[list[Sample], list[float]]] = {}
        with GitHttpServer(served.parent) as server:
            async with Throttle(server.port, rtt=RTT, rate=RATE) as link:
                for name, port in ((THROTTLED, link.port), ("loopback", server.port)):
                    url = f"http://127.0.0.1:{port}/up.git"
                    for n in NEW:
                        results[name, n] = await _runs(runner, root, base, url, n)
        sizes = {n: _pack_size(root, base, served, n) for n in NEW}
    return _table(results, sizes)


async def _runs(
    runner: GitRunner, root: Path, base: Path, url: str, n: int
) -> tuple[list[Sample], list[float]]:
    """RUNS fetches of `nN` into fresh copies of `base`, ours and plain git interleaved."""
    ours: list[Sample] = []
    theirs: list[float] = []
    for index in range(RUNS):
        mine, plain = root / "ours.git", root / "plain.git"
        shutil.copytree(base, mine)
        shutil.copytree(base, plain)
        trace = root / f"trace-{n}-{index}.json"
        ours.append(await _ours(runner, mine, url, n, trace))
        theirs.append(await _plain(plain, url, n))
        shutil.rmtree(mine)
        shutil.rmtree(plain)
        trace.unlink()
    return ours, theirs


def _pack_size(root: Path, base: Path, served: Path, n: int) -> int:
    """Bytes a fetch of `nN` adds to the mirror (the pack as received, plus its index)."""
    copy = root / "size.git"
    shutil.copytree(base, copy)
    plain_git("--git-dir", str(copy), "fetch", "-q", str(served), f"+refs/heads/n{n}:refs/n")
    added = repo_size(copy / "objects") - repo_size(base / "objects")
    shutil.rmtree(copy)
    return added


def _table(
    results: dict[tuple[str, int], tuple[list[Sample], list[float]]], sizes: dict[int, int]
) -> list[str]:
    lines = [
        f"A mirror of {FILES:,} files fetches N new commits (2 files changed in each) from "
        f"`git http-backend`, through a proxy adding {RTT * 1000:.0f} ms of round trip and "
        f"capping {RATE * 8 / 1e6:.0f} Mbit/s each way ({THROTTLED}), and straight over "
        f"loopback; {RUNS} runs of each, interleaved with plain `git fetch`. The parts come "
        "from git's trace2 events (`trace2.decompose`), p50 over the runs.",
        "",
        "| link | N | pack | plain `git fetch` p50 s (baseline) | repodepot fetch p50 / p95 / "
        "p99 s | ratio | network | pack | refs | parts / trace2 total |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (name, n), (samples, theirs) in results.items():
        walls = [s.wall for s in samples]
        parts = {
            part: percentile([getattr(s.split, part) for s in samples], 50)
            for part in ("network", "pack", "refs", "total")
        }
        summed = [(s.split.network + s.split.pack + s.split.refs) / s.split.total for s in samples]
        share = {
            part: f"{parts[part]:.0f} ms ({parts[part] / parts['total']:.0%})"
            for part in ("network", "pack", "refs")
        }
        base = percentile(theirs, 50)
        lines.append(
            f"| {name} | {n:,} | {sizes[n] / 2**20:.1f} MiB | {base:.2f} | "
            + " / ".join(f"{percentile(walls, q):.2f}" for q in (50, 95, 99))
            + f" | {percentile(walls, 50) / base:.2f}x | {share['network']} | {share['pack']} | "
            f"{share['refs']} | {min(summed):.0%} to {max(summed):.0%} |"
        )
    last = results[THROTTLED, max(NEW)][0][-1]
    lines += ["", f"trace2 regions of the last N={max(NEW):,} fetch (s): {_regions(last.events)}."]
    return lines
