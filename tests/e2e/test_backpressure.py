"""The backpressure gate: no new background work while the foreground suffers, and says so."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
import pytest

from repodepot.backpressure import MAX_HOLD, Gate
from repodepot.gitserver.schedule import QueueReason
from repodepot.gitserver.updater import UpdateLoop
from repodepot.metrics import Metrics
from repodepot.services import Services
from repodepot.settings import Settings
from tests.support.eventually import eventually
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate, git
from tests.support.seed import connected_mirror


class Load:
    """An injected one-minute load average a test turns up and down."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self) -> float:
        return self.value


def test_the_gate_closes_above_the_load_limit_and_opens_below() -> None:
    load = Load(3.1)
    gate = Gate(load=load, p99=lambda: None, load_limit=2, p99_limit=0.5)

    state = gate.state()
    assert state.closed and state.closed_by == ("load",)
    assert state.message == "Background work paused: load 3.1 above 2"
    load.value = 1.5
    assert gate.open() and gate.state().message is None
    off = Gate(load=Load(50.0), p99=lambda: None, load_limit=0, p99_limit=0.5)
    assert off.open()  # 0 turns the signal off


def test_a_gate_closed_for_good_still_lets_one_start_through_every_max_hold() -> None:
    now = [0.0]
    gate = Gate(load=Load(9.0), p99=lambda: None, load_limit=2, p99_limit=0, clock=lambda: now[0])
    assert not gate.open()
    now[0] = MAX_HOLD - 1
    assert not gate.open()
    now[0] = MAX_HOLD
    assert gate.open()  # one start, then held again
    assert not gate.open()
    now[0] = 2 * MAX_HOLD
    assert gate.open()


def test_the_gate_closes_while_the_last_requests_are_slow() -> None:
    metrics = Metrics()
    gate = Gate(load=Load(0.0), p99=metrics.recent_p99, load_limit=2, p99_limit=0.5)
    for _ in range(100):
        metrics.observe_request("GET", "/api/repos/{name}", 200, 0.01)
    assert gate.open()
    for _ in range(5):  # 5 of 105 slow: the p99 is slow
        metrics.observe_request("GET", "/api/repos/{name}", 200, 0.9)
    state = gate.state()
    assert state.closed_by == ("p99",)
    assert state.message is not None and "request p99 0.9" in state.message
    # A clone or an SSE stream lasts as long as the client: not the server's latency.
    streams = Metrics()
    for _ in range(100):
        streams.observe_request("POST", "/git/{name}/git-upload-pack", 200, 30.0)
        streams.observe_request("GET", "/api/imports/{job_id}/events", 200, 60.0)
    assert streams.recent_p99() is None


def advance(upstream: Path) -> str:
    base = ["-c", "user.name=Up", "-c", "user.email=up@example.com", "--git-dir", str(upstream)]
    tree = git(*base, "rev-parse", "main^{tree}").strip()
    commit = git(*base, "commit-tree", tree, "-p", "main", "-m", "pushed").strip()
    git(*base, "update-ref", "refs/heads/main", commit)
    return commit


def paused(metrics: Metrics, loop: str) -> float:
    value = metrics.registry.get_sample_value("repodepot_backpressure_paused_total", {"loop": loop})
    return value or 0.0


async def test_the_update_loop_starts_no_fetch_while_the_gate_is_closed(
    services: Services, git_root: Path, git_server: GitHttpServer
) -> None:
    upstream = generate(git_root / "busy.git", Spec(commits=3))
    record = await connected_mirror(services, git_server.url("busy.git"), "127.0.0.1/busy")
    mirror = services.storage.path(record.id)
    commit = advance(upstream)
    await services.gitserver.enqueue_existing(record.id, QueueReason.webhook)

    load = Load(9.0)  # the foreground is suffering
    gate = Gate(load=load, p99=lambda: None, load_limit=2, p99_limit=0, metrics=services.metrics)
    loop = UpdateLoop.from_services(services, gate=gate)
    services.gitserver.on_enqueued = loop.wake
    task = asyncio.create_task(loop.run())
    try:
        # It looked at the due fetch twice and held it back both times: nothing started.
        await eventually(lambda: paused(services.metrics, "update") >= 2)
        assert commit not in git("--git-dir", str(mirror), "for-each-ref")
        state = await services.gitserver.state(record.id)
        assert state is not None and state.queued == "webhook"

        load.value = 0.5  # the foreground recovered
        await eventually(
            lambda: commit in git("--git-dir", str(mirror), "for-each-ref"), timeout=30
        )
    finally:
        await loop.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The load signal is the test machine's: off, so only the requests' p99 decides.
    return settings.model_copy(update={"backpressure_load": 0, "backpressure_p99": 0.5})


async def test_the_scheduler_page_its_api_and_metrics_say_background_work_is_paused(
    client: httpx.AsyncClient, app_services: Services, admin_headers: dict[str, str]
) -> None:
    before = (await client.get("/api/scheduler", headers=admin_headers)).json()
    assert before["backpressure"]["paused"] is False
    for _ in range(30):  # the last 30 s of requests were slow
        app_services.metrics.observe_request("GET", "/api/repos/{name}", 200, 2.0)

    status = (await client.get("/api/scheduler", headers=admin_headers)).json()
    gate = status["backpressure"]
    assert (gate["paused"], gate["reasons"], gate["p99_limit"]) == (True, ["p99"], 0.5)
    assert gate["message"].startswith("Background work paused: request p99 2.")
    page = await client.get("/scheduler", headers=admin_headers)
    assert "Background work paused: request p99 2." in page.text
    metrics = (await client.get("/metrics")).text
    assert 'repodepot_backpressure_closed{reason="p99"} 1.0' in metrics
    assert 'repodepot_backpressure_closed{reason="load"} 0.0' in metrics
