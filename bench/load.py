"""The seed's load plan (issue 14, item 6): 100 users, 1,000 repositories, fetches at peak.

For each database (PostgreSQL, then SQLite) one `repodepot serve` process holds 1,000
tiny mirrors of repositories on the loopback git server (a share with tracked
upstreams, a few Go modules) and one mirror of 1,000,000 commits. 100 simulated users
(each with a token, a think time) read repository pages, branch lists, sync status,
EnsureRevision and the Go proxy, and a few clones run, for a fixed time, three times
(PHASES): with no background work (the server without `updater`, `gitserver`), with the
update loop fetching as shipped (the backpressure gate holds it while the foreground
suffers), and at full rate (the gate off), while new commits land upstream; in the
last, one upstream goes down (connection refused, then stalled) and comes back. Then:
did that upstream's mirrors and tracked upstream get fetched again, and does every
mirror pass `git fsck --connectivity-only`.

`REPODEPOT_BENCH_QUICK=1` runs it small (a smoke run of about two minutes).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench import branches
from bench.clones import SERVER_ENV
from bench.common import ADMIN, bench_settings, percentile
from bench.http import serving
from bench.loadsim import FlakyUpstream, Kind, ProcWatch, Record, clones, users
from bench.syncstatus import _advance
from bench.upstream import Upstream
from repodepot.accounts import operator
from repodepot.db.models import Visibility
from repodepot.services import Services
from tests.support.postgres import PostgresCluster
from tests.support.repogen import HERMETIC, Spec, generate, git
from tests.support.seed import seed_mirror
from tests.support.servers import ServeProcess

QUICK = os.environ.get("REPODEPOT_BENCH_QUICK") == "1"
REPOS = 60 if QUICK else 1_000
TRACKED = 5 if QUICK else 50  # repositories with a tracked upstream
MODULES = 5 if QUICK else 20  # repositories with a Go import root
FLAKY = 3  # mirrors whose source is the failing upstream (one of them also tracks it)
USERS = 20 if QUICK else 100
THINK = float(os.environ.get("REPODEPOT_BENCH_THINK", "1"))  # mean s between requests
WARMUP = 3.0 if QUICK else 5.0
DURATION = 12.0 if QUICK else 30.0  # measured seconds per phase
BIG_COMMITS = 20_000 if QUICK else 1_000_000
BIG_SHARE = 0.03  # of requests naming a repository, those for the big one
CLONE_EVERY, CLONES = 4.0, 12
CHURN_EVERY = 0.5  # seconds between two new upstream commits
SEED_CONCURRENCY = 4  # mirrors written at once while seeding
REFETCH_WAIT = 90.0 if QUICK else 150.0  # after the run, how long the came-back upstream may take
TINY = Spec(commits=30, files=10, tags=3, branches=2)
VERSION = "v1.2.0"
BACKGROUND = {"REPODEPOT_UPDATE_MIN_INTERVAL": "1", "REPODEPOT_UPSTREAM_INTERVAL": "60"}
# The same users against: no background work (the server without `updater`, `gitserver`);
# background fetching as shipped (the backpressure gate holds it while the foreground
# suffers); background fetching at full rate (the gate off).
PHASES = {
    "off": {"REPODEPOT_ROLES": "web,worker"},
    "on": BACKGROUND,
    "full rate": BACKGROUND
    | {"REPODEPOT_BACKPRESSURE_LOAD": "0", "REPODEPOT_BACKPRESSURE_P99": "0"},
}
OUTAGE_PHASE = "full rate"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
P99_DEGRADATION_MS, RSS_MIB = 20.0, 300.0


@dataclass(frozen=True, kw_only=True, slots=True)
class World:
    """What the users ask for: names, commits present, modules, clone URLs."""

    names: list[str]
    tracked: list[str]
    modules: list[str]
    flaky: list[str]
    tiny_sha: str
    big_sha: str


@dataclass(frozen=True, kw_only=True, slots=True)
class Phase:
    """One phase's requests, the server's figures, and the background work it did."""

    record: Record
    watch: ProcWatch
    log_errors: list[str]
    fetches: int  # ref advertisements the upstream server gave: fetches started
    gate: Counter[str]


def _name(index: int) -> str:
    return f"load/r{index:04d}"


def _kinds(world: World) -> list[Kind]:
    def repo(rng: random.Random) -> tuple[str, str]:
        if rng.random() < BIG_SHARE:
            return "load/big", world.big_sha
        return rng.choice(world.names), world.tiny_sha

    def module(rng: random.Random) -> str:
        return f"/goproxy/{rng.choice(world.modules)}/@v/"

    return [
        Kind(name="repository page (HTML)", weight=15, path=lambda r: f"/repos/{repo(r)[0]}"),
        Kind(name="`/api/repos/{name}`", weight=20, path=lambda r: f"/api/repos/{repo(r)[0]}"),
        Kind(name="branch list", weight=10, path=lambda r: f"/api/repos/{repo(r)[0]}/branches"),
        Kind(
            name="sync status (repository)",
            weight=10,
            path=lambda r: f"/api/repos/{r.choice(world.tracked)}/sync-status",
        ),
        Kind(name="sync status (org-wide)", weight=5, path=lambda r: "/api/sync-status"),
        Kind(
            name="EnsureRevision (present)",
            weight=15,
            path=lambda r: "/api/repos/{}/commits/{}".format(*repo(r)),
        ),
        Kind(name="Go proxy list", weight=8, path=lambda r: module(r) + "list"),
        Kind(name="Go proxy info", weight=8, path=lambda r: module(r) + f"{VERSION}.info"),
        Kind(name="Go proxy zip", weight=4, path=lambda r: module(r) + f"{VERSION}.zip"),
    ]


def _make_served(served: Path) -> tuple[str, str]:
    """The tiny upstreams, their tracked upstreams and the big one; main's SHAs."""
    template = generate(served / "template.git", TINY)
    for index in range(REPOS):
        shutil.copytree(template, served / "r" / f"{index:04d}.git")
    for index in range(TRACKED):
        upstream = served / "up" / f"{index:04d}.git"
        shutil.copytree(template, upstream)
        _advance(upstream, "main", "upstream only")
    branches.build(served / "big.git", BIG_COMMITS)
    tiny = git("--git-dir", str(template), "rev-parse", "main").strip()
    big = git("--git-dir", str(served / "big.git"), "rev-parse", "main").strip()
    return tiny, big


async def _seed(
    data: Path,
    database_url: str | None,
    served: Path,
    base: str,
    flaky_base: str,
    shas: tuple[str, str],
) -> tuple[list[str], World]:
    """Users with tokens, the mirrors (due at once), upstreams, Go roots; what users ask."""
    services = await Services.open(bench_settings(data, database_url))
    gate = asyncio.Semaphore(SEED_CONCURRENCY)

    async def mirror(index: int) -> None:
        async with gate:
            origin = flaky_base if index < FLAKY else base
            await seed_mirror(
                services,
                _name(index),
                source=served / "r" / f"{index:04d}.git",
                visibility=Visibility.public,
                source_url=f"{origin}/r/{index:04d}.git",
            )

    try:
        await services.accounts.bootstrap_admin(ADMIN)  # as serve does on an empty database
        tokens = []
        for index in range(USERS):
            user = f"user{index:03d}"
            await services.accounts.create_user(user)
            tokens.append((await services.accounts.create_token(user))[1])
        await asyncio.gather(*(mirror(index) for index in range(REPOS)))
        await seed_mirror(
            services,
            "load/big",
            source=served / "big.git",
            visibility=Visibility.public,
            source_url=f"{base}/big.git",
        )
        modules = [f"example.com/load/m{index:03d}" for index in range(MODULES)]
        for index, module in enumerate(modules):
            await services.repositories.set_go_import_root(
                operator(), _name(REPOS - 1 - index), module
            )
        tracked = [_name(index) for index in range(TRACKED)]
        for index, name in enumerate(tracked):
            origin = flaky_base if index == 0 else base
            await services.branches.set_upstream(
                operator(), name, url=f"{origin}/up/{index:04d}.git", branches=["main"], interval=60
            )
    finally:
        await services.close()
    world = World(
        names=[_name(index) for index in range(REPOS)],
        tracked=tracked,
        modules=modules,
        flaky=[_name(index) for index in range(FLAKY)],
        tiny_sha=shas[0],
        big_sha=shas[1],
    )
    return tokens, world


async def _churn(served: Path, until: float) -> int:
    """A new commit on a random upstream every CHURN_EVERY seconds: fetches do real work."""
    rng, made = random.Random(5), 0
    while time.monotonic() < until:
        kind, count = rng.choice([("r", REPOS), ("up", TRACKED)])
        repo = served / kind / f"{rng.randrange(count):04d}.git"
        await asyncio.to_thread(_advance, repo, "main", f"load {made}")
        made += 1
        await asyncio.sleep(CHURN_EVERY)
    return made


def _watched(world: World) -> dict[str, str]:
    """The failing upstream's mirrors and tracked upstream, with where the API shows them."""
    paths = {f"mirror {name}": f"/api/repos/{name}" for name in world.flaky}
    paths[f"upstream of {world.tracked[0]}"] = f"/api/repos/{world.tracked[0]}/sync-status"
    return paths


async def _states(http: httpx.AsyncClient, world: World) -> dict[str, dict[str, object]]:
    """Each watched mirror's or upstream's state as the API shows it."""
    states = {}
    for label, path in _watched(world).items():
        body = (await http.get(path)).json()
        states[label] = body.get("mirror") or body.get("upstream") or {}
    return states


async def _ask(http: httpx.AsyncClient, world: World) -> None:
    """Ask for the watched fetches now (as a webhook or a user would): they meet the outage."""
    for name in world.flaky:
        await http.post(f"/api/repos/{name}/update")
    await http.post(f"/api/repos/{world.tracked[0]}/upstream/fetch")


async def _outage(
    flaky: FlakyUpstream, base: str, world: World, started: float
) -> tuple[datetime, dict[str, object]]:
    """Refused from a quarter of the run, stalled from half, back at three quarters.

    The watched fetches are asked for as each part begins. Returns when it came back,
    and the last error each watched fetch showed just before.
    """
    async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=30) as http:
        await asyncio.sleep(max(0.0, started + DURATION * 0.25 - time.monotonic()))
        flaky.refuse()
        await _ask(http, world)
        await asyncio.sleep(max(0.0, started + DURATION * 0.5 - time.monotonic()))
        await flaky.stall()
        await _ask(http, world)
        await asyncio.sleep(max(0.0, started + DURATION * 0.75 - time.monotonic()))
        errors = {k: v.get("last_error") for k, v in (await _states(http, world)).items()}
    flaky.restore()
    return datetime.now(UTC), errors


async def _gate(base: str, until: float) -> Counter[str]:
    """What the backpressure gate said every 2 s: `open` or the signals that closed it."""
    said: Counter[str] = Counter()
    async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=30) as http:
        while time.monotonic() < until:
            gate = (await http.get("/api/scheduler")).json().get("backpressure", {})
            said["+".join(gate.get("reasons", [])) or "open"] += 1
            await asyncio.sleep(2.0)
    return said


async def _phase(
    server: ServeProcess, remote: Upstream, tokens: list[str], world: World, served: Path
) -> Phase:
    """The users, the clones and the churn for WARMUP + DURATION seconds."""
    record = Record()
    measure_from = time.monotonic() + WARMUP
    until = measure_from + DURATION
    asked = len(remote.requests)
    with ProcWatch(server.process.pid) as watch:
        *_, gate = await asyncio.gather(
            users(
                server.url, tokens, _kinds(world),
                think=THINK, measure_from=measure_from, until=until, record=record,
            ),
            clones(
                lambda rng: f"{server.url}/git/{rng.choice(world.names)}",
                every=CLONE_EVERY, most=CLONES, until=until, record=record,
            ),
            _churn(served, until),
            _gate(server.url, until),
        )  # fmt: skip
    fetches = sum(1 for method, path, _ in remote.requests[asked:] if "info/refs" in path)
    return Phase(
        record=record, watch=watch, log_errors=_log_errors(server.log), fetches=fetches, gate=gate
    )


def _log_errors(log: Path) -> list[str]:
    """Each logged error with its frames in repodepot and its exception, at most 20 lines."""
    found: list[str] = []
    lines = log.read_text(errors="replace").splitlines()
    for index, line in enumerate(lines):
        if " ERROR " in line:
            found.append(line)
        elif line.startswith('  File "') and "/repodepot/" in line:
            found.append("  " + line.strip())  # where in repodepot it was raised
        elif (
            index
            and lines[index - 1].startswith(" ")
            and not line.startswith((" ", "Trace", "During handling", "The above exception"))
        ):
            found.append("  " + line)  # the last line of a traceback: the exception
    return list(dict.fromkeys(found))[:20]


async def _refetched(base: str, world: World, back: datetime) -> dict[str, float | None]:
    """Seconds after `back` until each watched fetch succeeded again (None: not in time)."""
    found: dict[str, float | None] = dict.fromkeys(_watched(world))
    deadline = time.monotonic() + REFETCH_WAIT
    async with httpx.AsyncClient(base_url=base, headers=AUTH, timeout=30) as http:
        while None in found.values() and time.monotonic() < deadline:
            for label, state in (await _states(http, world)).items():
                at = state.get("last_fetched_at")
                if found[label] is None and at and datetime.fromisoformat(str(at)) > back:
                    found[label] = (datetime.now(UTC) - back).total_seconds()
            await asyncio.sleep(2.0)
    return found


def _fsck(data: Path) -> tuple[int, list[str]]:
    """`git fsck --connectivity-only` over every mirror; how many, and those that failed."""
    mirrors = sorted((data / "repos").glob("*/*/*.git"))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **HERMETIC}

    def check(path: Path) -> str | None:
        done = subprocess.run(
            ["git", "--git-dir", str(path), "fsck", "--connectivity-only"],
            env=env, capture_output=True, text=True,
        )  # fmt: skip
        return None if done.returncode == 0 else f"{path.name}: {done.stderr[-300:]}"

    with ThreadPoolExecutor(2) as pool:
        failed = [f for f in pool.map(check, mirrors) if f]
    return len(mirrors), failed


@asynccontextmanager
async def _database(kind: str) -> AsyncIterator[str | None]:
    if kind == "sqlite":
        yield None
        return
    cluster = PostgresCluster()
    await asyncio.to_thread(cluster.start)
    try:
        yield cluster.url()
    finally:
        await asyncio.to_thread(cluster.stop)


@dataclass(frozen=True, kw_only=True, slots=True)
class Outcome:
    """One database's run: both phases, the outage and what held after it."""

    database: str
    phases: dict[str, Phase]
    outage_errors: dict[str, object]
    refetched: dict[str, float | None]
    mirrors: int
    fsck_failed: list[str]
    seconds: dict[str, float]


async def _one(
    database: str, root: Path, served: Path, remote: Upstream, shas: tuple[str, str]
) -> Outcome:
    """Seed, run each of PHASES, check what held after the outage."""
    base = f"http://127.0.0.1:{remote.port}"
    flaky = FlakyUpstream(remote.port)
    await flaky.start()
    seconds: dict[str, float] = {}
    clock = time.monotonic()
    try:
        async with _database(database) as url:
            data = root / database / "data"
            tokens, world = await _seed(
                data, url, served, base, f"http://127.0.0.1:{flaky.port}", shas
            )
            seconds["seed"], clock = time.monotonic() - clock, time.monotonic()
            env = SERVER_ENV | ({"REPODEPOT_DATABASE_URL": url} if url else {})
            phases = {}
            for name, extra in PHASES.items():
                async with serving(data, env | extra) as server:
                    outage = None
                    if name == OUTAGE_PHASE:
                        outage = asyncio.create_task(
                            _outage(flaky, server.url, world, time.monotonic() + WARMUP)
                        )
                    phases[name] = await _phase(server, remote, tokens, world, served)
                    seconds[name], clock = time.monotonic() - clock, time.monotonic()
                    if outage is not None:
                        back, outage_errors = await outage
                        refetched = await _refetched(server.url, world, back)
                        seconds["refetch wait"], clock = time.monotonic() - clock, time.monotonic()
            mirrors, failed = await asyncio.to_thread(_fsck, data)
            seconds["fsck"] = time.monotonic() - clock
    finally:
        flaky.close()
    return Outcome(
        database=database,
        phases=phases,
        outage_errors=outage_errors,
        refetched=refetched,
        mirrors=mirrors,
        fsck_failed=failed,
        seconds=seconds,
    )


async def run() -> list[str]:
    """Both databases under the same load; each one's table."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="repodepot-bench-") as scratch:
        root = Path(scratch)
        served = root / "served"
        shas = await asyncio.to_thread(_make_served, served)
        made = time.monotonic() - started
        with Upstream(served, root / "upstream-requests.log") as remote:
            outcomes = [
                await _one(database, root, served, remote, shas)
                for database in ("postgresql", "sqlite")
            ]
    return _report(outcomes, made, time.monotonic() - started)


def _ms(samples: list[float]) -> str:
    if not samples:
        return "-"
    return f"{len(samples):,}: " + " / ".join(
        f"{percentile(samples, q) * 1000:.1f}" for q in (50, 95, 99)
    )


def _answers(*records: Record, kind: str) -> str:
    return " → ".join(
        ", ".join(f"{n:,} {status}" for status, n in sorted(r.statuses.get(kind, {}).items()))
        or "-"
        for r in records
    )


def _said(gate: Counter[str]) -> str:
    total = sum(gate.values())
    return "(" + ", ".join(f"{said} {n}/{total}" for said, n in gate.most_common()) + ")"


def _section(outcome: Outcome) -> list[str]:
    phases = outcome.phases
    records = [phase.record for phase in phases.values()]
    kinds = dict.fromkeys(kind for record in records for kind in record.latencies)
    lines = [
        f"#### {outcome.database}",
        "",
        "| request | "
        + " | ".join(f"background {name}: n: p50 / p95 / p99 ms" for name in phases)
        + " | answers (" + " → ".join(phases) + ") |",
        "|---|" + "---|" * (len(phases) + 1),
    ]  # fmt: skip
    for kind in kinds:
        cells = " | ".join(_ms(record.latencies.get(kind, [])) for record in records)
        lines.append(f"| {kind} | {cells} | {_answers(*records, kind=kind)} |")
    clone = ("clone (git clone --bare)",)
    cells = " | ".join(_ms(record.all_latencies(without=clone)) for record in records)
    lines.append(f"| **every request but clones** | {cells} | |")
    p99 = {
        name: percentile(phase.record.all_latencies(without=clone) or [0.0], 99) * 1000
        for name, phase in phases.items()
    }
    fives = {name: p.record.count(lambda s: s.startswith("5")) for name, p in phases.items()}
    other = {
        name: p.record.count(lambda s: not s.startswith(("2", "3"))) for name, p in phases.items()
    }
    peak = max(phase.watch.peak_kib for phase in phases.values()) / 1024

    def each(values: dict[str, str]) -> str:
        return ", ".join(f"{value} {name}" for name, value in values.items())

    lines += [
        "",
        f"- **5xx: {each({k: str(v) for k, v in fives.items()})}**: "
        f"{'met' if sum(fives.values()) == 0 else 'MISSED'} (0); any answer not 2xx/3xx: "
        f"{each({k: str(v) for k, v in other.items()})}.",
        *(
            f"- **Foreground p99, background {name} against off: {p99['off']:.1f} → "
            f"{p99[name]:.1f} ms ({p99[name] - p99['off']:+.1f} ms)**: "
            f"{'met' if p99[name] - p99['off'] < P99_DEGRADATION_MS else 'MISSED'} "
            f"(< {P99_DEGRADATION_MS:g} ms)."
            for name in p99
            if name != "off"
        ),
        "- Background work: "
        + each({k: f"{p.fetches} fetches started" for k, p in phases.items()})
        + "; the backpressure gate, asked every 2 s: "
        + each({k: _said(p.gate) for k, p in phases.items() if p.gate})
        + ".",
        f"- **Server RSS peak (VmHWM) {peak:.0f} MiB**: "
        f"{'met' if peak < RSS_MIB else 'MISSED'} (< {RSS_MIB:g} MiB); with its git "
        "children, sampled every 0.5 s: "
        + each({k: f"{p.watch.peak_tree_kib / 1024:.0f} MiB" for k, p in phases.items()})
        + ".",
        "- CPU of the server process and the git children it waited for, in cores: "
        + each({k: f"{p.watch.cpu_cores:.2f}" for k, p in phases.items()})
        + "; the whole machine busy (users, git server, others' work included): "
        + each({k: f"{p.watch.machine_busy:.0%}" for k, p in phases.items()})
        + ".",
        f"- The failing upstream (background {OUTAGE_PHASE}), as the API showed it just "
        "before it came back: "
        + "; ".join(f"{k}: {v or 'no error'}" for k, v in outcome.outage_errors.items())
        + ". **Fetched again after it came back**: "
        + "; ".join(
            f"{k}: {f'NOT within {REFETCH_WAIT:.0f} s' if v is None else f'{v:.0f} s'}"
            for k, v in outcome.refetched.items()
        )
        + ".",
        f"- **`git fsck --connectivity-only`: {outcome.mirrors - len(outcome.fsck_failed)} of "
        f"{outcome.mirrors} mirrors pass**" + "".join(f"; {f}" for f in outcome.fsck_failed[:5]),
        "- Seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in outcome.seconds.items()) + ".",
    ]
    for name, phase in phases.items():
        if phase.log_errors:
            lines += ["", f"Server log errors (background {name}):", "```", *phase.log_errors]
            lines.append("```")
    return lines


def _report(outcomes: list[Outcome], made: float, total: float) -> list[str]:
    lines = [
        f"{REPOS:,} tiny mirrors ({TRACKED} tracking an upstream, {MODULES} Go modules) and "
        f"one of {BIG_COMMITS:,} commits ({BIG_SHARE:.0%} of requests naming a repository), "
        f"served by one `repodepot serve` per database; {USERS} users, each with a token, "
        f"{THINK:g} s ± 50% between requests, {DURATION:g} s measured after {WARMUP:g} s; "
        f"a clone every {CLONE_EVERY:g} s (at most {CLONES}); a new upstream commit every "
        f"{CHURN_EVERY:g} s. Three phases, each on a fresh server process: background "
        "off (the server without `updater`, `gitserver`); on (every mirror due at start, "
        "`REPODEPOT_UPDATE_MIN_INTERVAL=1`, upstreams every 60 s, the backpressure gate as "
        "shipped); full rate (the same with the gate off), during which the upstream of "
        f"{FLAKY} mirrors (one also tracked) refuses connections from 25% of the run, "
        "stalls them from 50% and comes back at 75%; their fetches are asked for (update "
        "now, fetch now) as each part begins.",
        "",
    ]
    for outcome in outcomes:
        lines += [*_section(outcome), ""]
    lines.append(
        f"Generating the served repositories took {made:.0f} s (the {BIG_COMMITS:,}-commit "
        f"one by fast-import, not cached); the whole section {total:.0f} s."
    )
    return lines
