"""HTTP throughput with `wrk -t2 -c20 -d10s --latency`, each endpoint against `/healthz`.

One `repodepot serve` process on SQLite, one public repository imported through the API
from the loopback git server (tagged, with a Go import root), a member's API token, and
`wrk` against each endpoint in turn in the same run: the issue's table, read against its
targets as ratios to `/healthz`'s rate (the stack's ceiling on this machine).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.clones import SERVER_ENV
from bench.common import ADMIN
from tests.e2e.imports_helpers import events
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate, git
from tests.support.servers import ServeProcess

AUTH = {"Authorization": f"Bearer {ADMIN}"}
SPEC = Spec(commits=500, files=50, tags=20, branches=5)
NAME = "bench/mod"
MODULE = "example.com/bench/mod"
VERSION = f"v1.{SPEC.tags - 1}.0"
WRK = ["-t2", "-c20", "-d10s", "--latency"]
# The measurement of info/refs before: 64 requests/s against 3,524 for /healthz.
REFS_BEFORE = 64 / 3524
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}


@dataclass(frozen=True, kw_only=True, slots=True)
class Run:
    """What wrk printed for one endpoint: rate, latency percentiles (ms), errors."""

    rate: float
    latency: dict[int, float]
    timeouts: int
    socket_errors: int
    non_2xx: int

    @property
    def errors(self) -> int:
        """Every request that did not get a 2xx or 3xx answer in time."""
        return self.timeouts + self.socket_errors + self.non_2xx


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * UNITS[unit]


def parse(output: str) -> Run:
    """Read `wrk --latency`'s report."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rate is None:
        raise RuntimeError(f"wrk printed no rate:\n{output}")
    latency = {
        int(pct): _ms(value)
        for pct, value in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", output, re.MULTILINE)
    }
    if sorted(latency) != [50, 75, 90, 99]:
        raise RuntimeError(f"wrk printed no latency distribution:\n{output}")
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    counts = [int(n) for n in sockets.groups()] if sockets else [0, 0, 0, 0]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return Run(
        rate=float(rate.group(1)),
        latency=latency,
        timeouts=counts[3],
        socket_errors=sum(counts[:3]),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
    )


def wrk(url: str, token: str | None) -> Run:
    """One wrk run against `url`, with the token as a bearer when given."""
    header = ["-H", f"Authorization: Bearer {token}"] if token else []
    done = subprocess.run(
        ["wrk", *WRK, *header, url], check=True, capture_output=True, text=True, timeout=60
    )
    return parse(done.stdout)


async def _setup(http: httpx.AsyncClient, base: str, source_url: str) -> str:
    """Import the repository, name its Go module, and make a member's token; the token."""
    answer = await http.post(f"{base}/api/users", headers=AUTH, json={"name": "bench-user"})
    assert answer.status_code == 201, answer.text
    answer = await http.post(f"{base}/api/tokens", headers=AUTH, json={"user": "bench-user"})
    assert answer.status_code == 201, answer.text
    token = str(answer.json()["token"])
    job = await http.post(
        f"{base}/api/imports",
        headers=AUTH,
        json={"url": source_url, "owner": "bench", "slug": "mod", "visibility": "public"},
    )
    assert job.status_code == 202, job.text
    final = (await events(http, base, job.json()["id"], headers=AUTH, timeout=120))[-1]
    assert final["status"] == "success", final
    answer = await http.patch(
        f"{base}/api/repos/{NAME}", headers=AUTH, json={"go_import_root": MODULE}
    )
    assert answer.status_code == 200, answer.text
    return token


@asynccontextmanager
async def serving(data: Path, env: dict[str, str]) -> AsyncIterator[ServeProcess]:
    """`repodepot serve` in its own process for the block; its log's tail on failure."""
    server = await asyncio.to_thread(ServeProcess, data, env)
    try:
        yield server
    except BaseException:
        print(server.log.read_text()[-6000:], flush=True)
        raise
    finally:
        server.stop()


async def run() -> list[str]:
    """Each endpoint's wrk run, with its ratio to `/healthz` and the issue's target."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed: run `scripts/bootstrap test`")
    with tempfile.TemporaryDirectory(prefix="repodepot-bench-") as scratch:
        root = Path(scratch)
        source = generate(root / "served" / "mod.git", SPEC)
        sha = git("--git-dir", str(source), "rev-parse", "main").strip()
        with GitHttpServer(root / "served") as remote:
            async with (
                serving(root / "data", SERVER_ENV) as server,
                httpx.AsyncClient(timeout=60) as http,
            ):
                token = await _setup(http, server.url, remote.url("mod.git"))
                rows = await _measure(server.url, token, sha)
    return _table(rows)


async def _measure(base: str, token: str, sha: str) -> dict[str, tuple[Run, str]]:
    targets: list[tuple[str, str, str | None, str]] = [
        ("`/healthz` (the ceiling)", "/healthz", None, ""),
        ("`GET /api/repos/{name}`", f"/api/repos/{NAME}", token, "repo"),
        ("`GET /api/repos/{name}/commits/{sha}` (present)", f"/api/repos/{NAME}/commits/{sha}",
         token, "30"),
        ("`GET /goproxy/{module}/@v/list`", f"/goproxy/{MODULE}/@v/list", None, "30"),
        ("`GET /goproxy/{module}/@v/{v}.info`", f"/goproxy/{MODULE}/@v/{VERSION}.info", None,
         "30"),
        ("`GET /git/{name}/info/refs?service=git-upload-pack`",
         f"/git/{NAME}/info/refs?service=git-upload-pack", None, "refs"),
    ]  # fmt: skip
    rows = {}
    for label, path, bearer, target in targets:
        rows[label] = (await asyncio.to_thread(wrk, base + path, bearer), target)
    return rows


def _verdict(run: Run, ratio: float, target: str) -> str:
    if target == "repo":
        met = ratio >= 0.40 and run.latency[99] < 50
        return f"{'met' if met else 'MISSED'} (≥ 40%, p99 < 50 ms)"
    if target == "30":
        return f"{'met' if ratio >= 0.30 else 'MISSED'} (≥ 30%)"
    if target == "refs":
        wanted = 4 * REFS_BEFORE
        return f"{'met' if ratio >= wanted else 'MISSED'} (≥ {wanted:.1%}: 4x 64/3,524)"
    return ""


def _table(rows: dict[str, tuple[Run, str]]) -> list[str]:
    lines = [
        f"`wrk {' '.join(WRK)}` against one `repodepot serve` (SQLite) on the same 2 cores; "
        f"one public repository ({SPEC.commits} commits, {SPEC.tags} tags) imported from the "
        "loopback git server; `/api/` requests with a member's token, the Go proxy and "
        "info/refs without one (as the go command and git ask for public ones). Errors: "
        "timeouts, socket errors and non-2xx answers.",
        "",
        "| endpoint | requests/s | p50 ms | p99 ms | errors | of `/healthz` | target |",
        "|---|---|---|---|---|---|---|",
    ]
    ceiling = next(iter(rows.values()))[0].rate
    for label, (run, target) in rows.items():
        ratio = run.rate / ceiling
        lines.append(
            f"| {label} | {run.rate:,.0f} | {run.latency[50]:.1f} | {run.latency[99]:.1f} | "
            f"{run.errors} | {ratio:.1%} | {_verdict(run, ratio, target)} |"
        )
    return lines
