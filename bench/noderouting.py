"""Storage nodes (issue 16): what a web process's forwarding costs each read, and a move.

One PostgreSQL, one gitserver-only process (node `gs-1`) and one web process with no
mirror, each `repodepot serve` in its own process. A generated repository (a
`Spec(commits=20_000)`, its tags v1.0.0 to v1.3.0 on commits without a go.mod, and a
go.mod commit on top of its default branch tagged `v1.4.0`, so it is module
`example.com/big` (its Go import root); served by `git http-backend` on 127.0.0.1) is
placed on the node and cloned there. Then, interleaved, each read through the web
process (forwarded to the node's internal API, streamed both ways) and directly from
the node's own public URL. The node serves the public routes too and answers them from
its disk with the same access check, so the difference is what forwarding adds: the web
process's routing (the mirror's row and the node's address, both cached) and a second
loopback HTTP hop, not a different code path at the node.

- `git clone --mirror`, `ROUNDS` times each way;
- `REQUESTS` times each way, one at a time, with the admin token: `GET …/info/refs` (the
  advertisement, the smallest forwarded stream), EnsureRevision of a present commit
  (`GET /api/repos/{name}/commits/{sha}`, forwarded as JSON), exec (`POST /api/repos/
  {name}/exec`, `git log -1 --format=%H`, relayed as it streams, its output checked),
  the branch list (`GET /api/repos/{name}/branches`, forwarded as JSON), and the Go
  proxy's `@v/v1.4.0.info` and `@v/list`.

Each: p50 / p95 / p99, the p50 against the direct one's, and the p99 that forwarding adds,
against the target: a clone through web at most 1.1x the direct one (p50).

Then moves. Every process runs with `REPODEPOT_NODE_MOVES=1`, a heartbeat (and so a
pass of the move loop) every 0.5 s and `REPODEPOT_NODE_DEAD_AFTER=5`. A second
gitserver-only node `gs-2` joins (its own data dir and URL); once the repository is on
its rendezvous owner among the two (gs-2 when it is the first choice: that move is not
timed), `MOVES` times: the node without it is activated and the one with it drained
(`NodeRegistry.activate`, `drain`, through a `Services` on the same database), timed
until its mirror row names the other node in `move_to` (planned), until the row names
it the owner (flipped), both read from the database, and until `GET /api/repos/{name}`
says so (`mirror.node`, `move_to` null; the web process keeps a mirror row up to 1 s).
A move is the new node's clone from the old node's internal smart HTTP, a catch-up
fetch and one UPDATE, so the API's time and the copy's (flipped - planned, which also
holds the new node's wait for its next pass, up to 0.5 s) are printed against the
direct clone's p50: near 1x for the copy of a large repository, the fixed waits (the
plan's pass, the claim, the cache) weigh more on a small one. Meanwhile a reader loops
EnsureRevision through the web process: how many reads ran and how many failed (the
target: none).

`REPODEPOT_BENCH_QUICK=1`: 5,000 commits, fewer rounds and requests.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import httpx

from bench.access import _database
from bench.common import percentile
from repodepot.accounts import operator
from repodepot.db.models import Visibility
from repodepot.gitserver.schedule import QueueReason
from repodepot.nodes.placement import owner
from repodepot.services import Services
from repodepot.settings import Settings
from tests.support import servers
from tests.support.githttp import GitHttpServer
from tests.support.postgres import PostgresCluster, free_port
from tests.support.repogen import HERMETIC, Spec, generate

QUICK = os.environ.get("REPODEPOT_BENCH_QUICK") == "1"
SPEC = Spec(commits=5_000 if QUICK else 20_000, branches=4, tags=4)
ROUNDS = 5 if QUICK else 15  # clones each way
REQUESTS = 100 if QUICK else 400  # each other read, each way
MOVES = 3
TARGET = 1.1
NAME = "acme/big"
MODULE = "example.com/big"
VERSION = "v1.4.0"  # the generated tags are v1.0.0 to v1.3.0, on commits without a go.mod
ADVERT = f"/git/{NAME}/info/refs?service=git-upload-pack"
COMMITS = f"/api/repos/{NAME}/commits"
ADMIN = "rdp_bench-nodes-admin-token-0123456789"
ENV = {
    "REPODEPOT_ADMIN_TOKEN": ADMIN,
    "REPODEPOT_SECRET_KEY": "bench-secret-key-" + "k" * 32,
    "REPODEPOT_INTERNAL_SECRET": "bench-internal-" + "s" * 32,
    "REPODEPOT_ALLOWED_SCHEMES": "http",
    "REPODEPOT_OUTBOUND_ALLOWLIST": "127.0.0.1",
    "REPODEPOT_LOG_LEVEL": "warning",
    "REPODEPOT_UPDATE_POLL_INTERVAL": "0.2",
    "REPODEPOT_NODE_MOVES": "1",
    "REPODEPOT_NODE_HEARTBEAT_INTERVAL": "0.5",
    "REPODEPOT_NODE_DEAD_AFTER": "5",
}
WAYS = ("through web", "direct from the node")

Samples = dict[str, list[float]]


@dataclass(frozen=True, kw_only=True, slots=True)
class Read:
    """One kind of read, asked of the web process and of the node alike."""

    what: str
    path: str
    body: dict[str, Any] | None = None  # POSTed when given
    expect: str | None = None  # the answer's text, stripped, when it is known


@dataclass(frozen=True, kw_only=True, slots=True)
class Moved:
    """One timed move: from where to where, how long, and the reader's count meanwhile."""

    source: str
    target: str
    planned: float  # seconds from the drain until the row named `target` in `move_to`
    flipped: float  # until the row named `target` its owner: reads go there from then
    said: float  # until the API (`GET /api/repos/{name}`) said so too
    reads: int
    failed: int


async def run() -> list[str]:
    """The reads through web and direct, then the moves, and their tables."""
    with tempfile.TemporaryDirectory(prefix="repodepot-bench-nodes-") as scratch:
        root = Path(scratch)
        served = generate(root / "served" / "big.git", SPEC)
        _go_module(served)
        cluster = PostgresCluster()
        await asyncio.to_thread(cluster.start)
        try:
            url = await _database(cluster, cluster.url(), "bench_nodes")
            assert url is not None
            env = {**ENV, "REPODEPOT_DATABASE_URL": url}
            with GitHttpServer(root / "served") as sources:
                return await _measure(root, env, sources.url("big.git"), _head(served))
        finally:
            await asyncio.to_thread(cluster.stop)


async def _measure(root: Path, env: dict[str, str], source: str, head: str) -> list[str]:
    node = await asyncio.to_thread(_node, root, env, "gs-1")
    web = await asyncio.to_thread(
        servers.ServeProcess, root / "web", {**env, "REPODEPOT_ROLES": "web,updater"}
    )
    try:
        key = await _seed(root, env, source)
        await _cloned(web.url)
        clones = await asyncio.to_thread(_clones, root, web.url, node.url)
        reads = {read.what: await _requests(web.url, node.url, read) for read in _reads(head)}
        moves = await _moves(root, env, web.url, key, head)
    finally:
        web.stop()
        node.stop()
    return [*_table(clones, reads), "", *_moves_table(moves, clones)]


def _reads(head: str) -> list[Read]:
    goproxy = f"/goproxy/{MODULE}/@v"
    return [
        Read(what="`GET …/info/refs`", path=ADVERT),
        Read(what="EnsureRevision", path=f"{COMMITS}/{head}"),
        Read(
            what="exec `git log -1`",
            path=f"/api/repos/{NAME}/exec",
            body={"args": ["log", "-1", "--format=%H"]},
            expect=head,
        ),
        Read(what="branch list", path=f"/api/repos/{NAME}/branches"),
        Read(what=f"Go proxy `{VERSION}.info`", path=f"{goproxy}/{VERSION}.info"),
        Read(what="Go proxy `@v/list`", path=f"{goproxy}/list"),
    ]


def _go_module(repository: Path) -> None:
    """A commit adding `go.mod` on top of the default branch, tagged VERSION."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **HERMETIC,
        "GIT_AUTHOR_NAME": "Gen",
        "GIT_AUTHOR_EMAIL": "gen@example.com",
        "GIT_COMMITTER_NAME": "Gen",
        "GIT_COMMITTER_EMAIL": "gen@example.com",
        "GIT_AUTHOR_DATE": "@1800000000 +0000",
        "GIT_COMMITTER_DATE": "@1800000000 +0000",
    }

    def git(*args: str, given: str | None = None) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=repository,
            env=env,
            input=given,
            check=True,
            capture_output=True,
            text=True,
        )
        return done.stdout.strip()

    blob = git("hash-object", "-w", "--stdin", given=f"module {MODULE}\n\ngo 1.21\n")
    tree = git("mktree", given=git("ls-tree", "HEAD") + f"\n100644 blob {blob}\tgo.mod\n")
    commit = git("commit-tree", tree, "-p", "HEAD", "-m", "go.mod")
    git("update-ref", f"refs/heads/{SPEC.default_branch}", commit)
    git("tag", VERSION, commit)


def _node(root: Path, env: dict[str, str], name: str) -> servers.ServeProcess:
    """Gitserver-only node `name`, serving its own data dir."""
    port = free_port()  # the node's URL is in its own settings: known before it starts
    node_env = {
        **env,
        "REPODEPOT_ROLES": "gitserver",
        "REPODEPOT_NODE_NAME": name,
        "REPODEPOT_NODE_URL": f"http://127.0.0.1:{port}",
    }
    with mock.patch.object(servers, "free_port", return_value=port):
        return servers.ServeProcess(root / name, node_env)


def _settings(root: Path, env: dict[str, str]) -> Settings:
    return Settings(
        data_dir=root / "operator",
        database_url=env["REPODEPOT_DATABASE_URL"],
        secret_key=env["REPODEPOT_SECRET_KEY"],
    )


async def _seed(root: Path, env: dict[str, str], source: str) -> int:
    """The repository, public, Go module root MODULE, queued as new; its id.

    Placed on the one active node.
    """
    services = await Services.open(_settings(root, env))
    try:
        await _until(services.nodes.active, "the node never registered")
        record = await services.repositories.create(
            name=NAME, owner_id=None, visibility=Visibility.public, source_url=source
        )
        await services.repositories.set_go_import_root(operator(), NAME, MODULE)
        await services.gitserver.enqueue([record.id], QueueReason.new)
    finally:
        await services.close()
    return record.id


async def _until(check: Callable[[], Awaitable[object]], failure: str) -> None:
    deadline = time.monotonic() + 30
    while not await check():
        assert time.monotonic() < deadline, failure
        await asyncio.sleep(0.2)


async def _cloned(web: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        deadline = time.monotonic() + 300
        while True:
            mirror = (await http.get(f"{web}/api/repos/{NAME}")).json()["mirror"]
            if mirror["clone_status"] == "cloned":
                assert mirror["node"] == "gs-1", mirror
                return
            assert time.monotonic() < deadline, mirror
            await asyncio.sleep(0.5)


def _clones(root: Path, web: str, node: str) -> Samples:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_TERMINAL_PROMPT": "0", **HERMETIC}
    taken: Samples = {way: [] for way in WAYS}
    for index in range(ROUNDS):
        for label, base in zip(WAYS, (web, node), strict=True):
            into = root / "clones" / f"{index}-{label.split()[0]}.git"
            started = time.perf_counter()
            subprocess.run(
                ["git", "clone", "--mirror", "--quiet", f"{base}/git/{NAME}", str(into)],
                env=env,
                check=True,
                capture_output=True,
                timeout=300,
            )
            taken[label].append(time.perf_counter() - started)
            subprocess.run(["rm", "-rf", str(into)], check=True)
    return taken


def _head(repository: Path) -> str:
    found = subprocess.run(
        ["git", "--git-dir", str(repository), "rev-parse", "HEAD"],
        check=True,
        capture_output=True,
        text=True,
    )
    return found.stdout.strip()


async def _requests(web: str, node: str, read: Read) -> Samples:
    """`read` asked `REQUESTS` times of each, interleaved, one at a time (admin token)."""
    taken: Samples = {way: [] for way in WAYS}
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        for _ in range(REQUESTS):
            for label, base in zip(WAYS, (web, node), strict=True):
                started = time.perf_counter()
                if read.body is None:
                    answer = await http.get(base + read.path)
                else:
                    answer = await http.post(base + read.path, json=read.body)
                taken[label].append(time.perf_counter() - started)
                assert answer.status_code == 200, (read.path, answer.text)
                assert read.expect is None or answer.text.strip() == read.expect, answer.text
    return taken


async def _moves(root: Path, env: dict[str, str], web: str, key: int, head: str) -> list[Moved]:
    """`gs-2` joins; MOVES drains of the node holding the repository, each timed."""
    second = await asyncio.to_thread(_node, root, env, "gs-2")
    services = await Services.open(_settings(root, env))
    try:
        await _until(lambda: _count_is(services, 2), "gs-2 never registered")
        # Joining moves it to gs-2 when gs-2 is its first choice: that move is not timed.
        holder = owner(key, await services.nodes.active())
        await _on(web, holder)
        moves = []
        for _ in range(MOVES):
            other = "gs-2" if holder == "gs-1" else "gs-1"
            moves.append(await _move(services, web, key, head, holder, other))
            holder = other
        return moves
    finally:
        await services.close()
        second.stop()


async def _count_is(services: Services, count: int) -> bool:
    return len(await services.nodes.active()) == count


async def _move(
    services: Services, web: str, key: int, head: str, source: str, target: str
) -> Moved:
    """Activate `target`, drain `source`: when the row, then the API, name `target`; reads."""
    moved = asyncio.Event()
    reader = asyncio.create_task(_reader(web, f"{COMMITS}/{head}", moved))
    started = time.perf_counter()
    try:
        await services.nodes.activate(operator(), target)
        await services.nodes.drain(operator(), source)
        planned, flipped = await _row(services, key, target)
        await _on(web, target)
        said = time.perf_counter() - started
    finally:
        moved.set()  # the reader stops too when the move fails
        reads, failed = await reader
    return Moved(
        source=source,
        target=target,
        planned=planned - started,
        flipped=flipped - started,
        said=said,
        reads=reads,
        failed=failed,
    )


async def _row(services: Services, key: int, node: str) -> tuple[float, float]:
    """When the mirror row named `node` in `move_to`, and when it named it its owner.

    Read from the database on each look (`Gitserver.holders`, not cached), every 20 ms.
    A move too quick to be seen planned counts as planned when it flipped.
    """
    planned = None
    deadline = time.monotonic() + 600
    while True:
        row = (await services.gitserver.holders([key]))[key]
        at = time.perf_counter()
        if row.move_to == node and planned is None:
            planned = at
        if row.node == node and row.move_to is None:
            return (at if planned is None else planned), at
        assert time.monotonic() < deadline, row
        await asyncio.sleep(0.02)


async def _on(web: str, node: str) -> None:
    """Until the API says `node` holds the mirror and no move is under way."""
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        deadline = time.monotonic() + 600
        while True:
            mirror = (await http.get(f"{web}/api/repos/{NAME}")).json()["mirror"]
            if mirror["node"] == node and mirror["move_to"] is None:
                return
            assert time.monotonic() < deadline, mirror
            await asyncio.sleep(0.02)


async def _reader(web: str, path: str, done: asyncio.Event) -> tuple[int, int]:
    """EnsureRevision through web until `done`, one at a time: (reads, failed reads)."""
    reads = failed = 0
    async with httpx.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
        while not done.is_set():
            try:
                ok = (await http.get(web + path)).status_code == 200
            except httpx.HTTPError:
                ok = False
            reads += 1
            failed += not ok
    return reads, failed


def _table(clones: Samples, reads: dict[str, Samples]) -> list[str]:
    lines = [
        f"A {SPEC.commits:,}-commit repository on node `gs-1` (its own `repodepot serve "
        "--roles gitserver`, on PostgreSQL); a web process without mirrors forwards to it. "
        f"{ROUNDS} `git clone --mirror` and {REQUESTS} of each other read each way, "
        "interleaved; direct is the node's own public URL.",
        "",
        "| request | way | p50 / p95 / p99 ms | p50 against direct | target |",
        "|---|---|---|---|---|",
    ]
    for what, samples in {"`git clone --mirror`": clones, **reads}.items():
        direct = percentile(samples["direct from the node"], 50)
        for way, taken in samples.items():
            p = [percentile(taken, q) * 1000 for q in (50, 95, 99)]
            ratio = p[0] / (direct * 1000)
            target = ""
            if what.startswith("`git clone") and way == "through web":
                target = f"{'met' if ratio <= TARGET else 'MISSED'} (<= {TARGET:g}x)"
            lines.append(
                f"| {what} | {way} | {p[0]:.1f} / {p[1]:.1f} / {p[2]:.1f} | {ratio:.2f}x "
                f"| {target} |"
            )
        added = percentile(samples["through web"], 99) - percentile(
            samples["direct from the node"], 99
        )
        lines.append(f"| {what} | added at the p99 | {added * 1000:+.1f} ms | | |")
    return lines


def _moves_table(moves: list[Moved], clones: Samples) -> list[str]:
    clone = percentile(clones["direct from the node"], 50)
    lines = [
        f"{MOVES} moves of the repository between `gs-1` and `gs-2` (`REPODEPOT_NODE_MOVES=1`, "
        "heartbeat 0.5 s), each timed from activating the other node and draining the "
        "holder: until its mirror row names the other node in `move_to` (planned), until "
        "the row names it its owner (flipped: the copy, the catch-up fetch and the UPDATE "
        "done), and until `GET /api/repos/{name}` says so (the web process keeps a mirror "
        f"row up to 1 s). Against the direct clone's p50 ({clone * 1000:.0f} ms); a reader "
        "loops EnsureRevision through web all along.",
        "",
        "| move | planned / flipped / API says, s | API says against a direct clone "
        "| copy (flipped - planned) against it | reads meanwhile | failed | target |",
        "|---|---|---|---|---|---|---|",
    ]
    for moved in moves:
        verdict = "met" if moved.failed == 0 else "MISSED"
        lines.append(
            f"| {moved.source} → {moved.target} "
            f"| {moved.planned:.2f} / {moved.flipped:.2f} / {moved.said:.2f} "
            f"| {moved.said / clone:.2f}x | {(moved.flipped - moved.planned) / clone:.2f}x "
            f"| {moved.reads} | {moved.failed} | {verdict} (0 failed reads) |"
        )
    if moves and moves[0].source == "gs-2":
        lines += [
            "",
            "Of the two nodes, gs-2 is the repository's first choice (rendezvous hashing), so "
            "it moved there when gs-2 joined (not timed); the timed moves start from there.",
        ]
    return lines
