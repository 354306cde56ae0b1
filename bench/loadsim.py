"""The moving parts of `bench load`: simulated users, clones, a failing upstream, /proc.

- `Users`: N users, each with its own token and httpx client, asking for a random mix
  of pages with a think time between requests, recording latency and status per kind;
- `clones`: a bounded number of `git clone --bare` over smart HTTP, spread over the run;
- `FlakyUpstream`: a TCP relay to the loopback git server that can refuse connections
  (its socket closed) or stall them (accepted, never answered) and come back;
- `ProcWatch`: the server process's RSS and CPU from /proc, sampled through the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.postgres import free_port
from tests.support.repogen import HERMETIC

TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Record:
    """Latencies (s) and statuses (a code, `timeout` or `error`) per kind of request."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, kind: str, seconds: float, status: str) -> None:
        self.latencies.setdefault(kind, []).append(seconds)
        self.statuses.setdefault(kind, Counter())[status] += 1

    def all_latencies(self, *, without: tuple[str, ...] = ()) -> list[float]:
        """Every sample of every kind but `without`."""
        return [
            s for kind, samples in self.latencies.items() if kind not in without for s in samples
        ]

    def count(self, wanted: Callable[[str], bool]) -> int:
        """Requests whose status `wanted` accepts, over every kind."""
        return sum(n for c in self.statuses.values() for status, n in c.items() if wanted(status))


# A kind of request and how it is chosen: its weight and the path it asks for.
Pick = Callable[[random.Random], str]


@dataclass(frozen=True, kw_only=True, slots=True)
class Kind:
    name: str
    weight: float
    path: Pick


async def users(
    base: str,
    tokens: list[str],
    kinds: list[Kind],
    *,
    think: float,
    measure_from: float,
    until: float,
    record: Record,
) -> None:
    """One user per token until `until` (monotonic); requests after `measure_from` count.

    Each user waits 0.5 to 1.5 times `think` seconds between requests and starts at a random
    point of its first think time, as users arrive over time and not in one burst.
    """
    weights = [kind.weight for kind in kinds]

    async def user(index: int, token: str) -> None:
        rng = random.Random(index)
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as http:
            await asyncio.sleep(think * rng.uniform(0.0, 1.0))
            while time.monotonic() < until:
                kind = rng.choices(kinds, weights)[0]
                path = kind.path(rng)
                started = time.monotonic()
                try:
                    status = str((await http.get(path)).status_code)
                except httpx.TimeoutException:
                    status = "timeout"
                except httpx.TransportError as exc:
                    status = f"error {type(exc).__name__}"
                if started >= measure_from:
                    record.add(kind.name, time.monotonic() - started, status)
                await asyncio.sleep(think * rng.uniform(0.5, 1.5))

    await asyncio.gather(*(user(index, token) for index, token in enumerate(tokens)))


async def clones(
    urls: Callable[[random.Random], str], *, every: float, most: int, until: float, record: Record
) -> None:
    """`git clone --bare` of a random URL every `every` seconds, at most `most` of them."""
    rng = random.Random(99)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **HERMETIC, "GIT_TERMINAL_PROMPT": "0"}
    with tempfile.TemporaryDirectory(prefix="repodepot-clones-") as scratch:
        for index in range(most):
            await asyncio.sleep(every)
            if time.monotonic() >= until:
                return
            dest = Path(scratch) / f"{index}.git"
            started = time.monotonic()
            process = await asyncio.create_subprocess_exec(
                "git", "clone", "--bare", "-q", urls(rng), str(dest), env=env,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, stderr = await process.communicate()
            status = "200" if process.returncode == 0 else f"git {process.returncode}"
            record.add("clone (git clone --bare)", time.monotonic() - started, status)
            if process.returncode:
                print(f"clone failed: {stderr.decode(errors='replace')[-500:]}", flush=True)
            shutil.rmtree(dest, ignore_errors=True)


class FlakyUpstream:
    """127.0.0.1:`port` relayed to the git server at `target`; it can go down and back.

    `refuse()` closes the listening socket (connection refused), `stall()` listens
    again but holds every connection without a byte, `restore()` relays again and
    drops the stalled connections.
    """

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = free_port()
        self.mode = "up"
        self._server: asyncio.Server | None = None
        self._release = asyncio.Event()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    def refuse(self) -> None:
        self.mode = "refused"
        if self._server is not None:
            self._server.close()
            self._server = None

    async def stall(self) -> None:
        self.mode = "stalled"
        self._release = asyncio.Event()
        await self.start()

    def restore(self) -> None:
        self.mode = "up"
        self._release.set()

    def close(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.mode != "up":
                await self._release.wait()
                return
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.target
            )
            try:
                await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
            finally:
                upstream_writer.close()
        except OSError:
            pass
        finally:
            writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()


def _status_kib(pid: int, key: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{parent}/task").iterdir():
                children = (task / "children").read_text().split()
                found.extend(int(c) for c in children)
                todo.extend(int(c) for c in children)
    return found


def _cpu_seconds(pid: int) -> float:
    """The process's user and system time, with that of its children it waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / TICKS  # utime stime cutime cstime


def _machine_busy() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


class ProcWatch:
    """Samples the server's RSS (alone and with its git children) while running."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_tree_kib = 0
        self.rss_kib: list[int] = []
        self._task: asyncio.Task[None] | None = None
        self._cpu = 0.0
        self._busy = (0, 0)
        self._started = 0.0
        self.cpu_cores = 0.0  # the server's CPU over the watch, in cores
        self.machine_busy = 0.0  # the machine's, as a share of all cores
        self.peak_kib = 0  # the server process's peak RSS since it started (VmHWM)

    def __enter__(self) -> ProcWatch:
        self._cpu, self._busy, self._started = (
            _cpu_seconds(self.pid), _machine_busy(), time.monotonic(),
        )  # fmt: skip
        self._task = asyncio.get_running_loop().create_task(self._sample())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        wall = time.monotonic() - self._started
        self.cpu_cores = (_cpu_seconds(self.pid) - self._cpu) / wall
        busy, total = _machine_busy()
        self.machine_busy = (busy - self._busy[0]) / max(1, total - self._busy[1])
        self.peak_kib = _status_kib(self.pid, "VmHWM")

    async def _sample(self) -> None:
        while True:
            own = _status_kib(self.pid, "VmRSS")
            self.rss_kib.append(own)
            tree = own + sum(_status_kib(child, "VmRSS") for child in _descendants(self.pid))
            self.peak_tree_kib = max(self.peak_tree_kib, tree)
            await asyncio.sleep(0.5)
