from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from repodepot.imports.progress import ProgressCell
from tests.support.eventually import eventually

DATA = Path(__file__).parent.parent / "data"
JOB: dict[str, Any] = {
    "id": 7,
    "status": "running",
    "seq": 3,
    "phase": "starting",
    "percent": 0.0,
    "received_objects": 0,
    "total_objects": 0,
    "received_bytes": 0,
    "resolved_deltas": 0,
    "total_deltas": 0,
    "throughput": 0.0,
    "eta_seconds": None,
}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_real_output_drives_a_monotonic_bar_to_the_end() -> None:
    published: list[dict[str, Any]] = []
    clock = Clock()
    cell = ProgressCell(JOB, published.append, clock=clock, min_interval=0)
    raw = (DATA / "progress-plain.txt").read_bytes()
    for start in range(0, len(raw), 300):
        clock.now += 0.2  # git prints about five records a second
        cell.feed(raw[start : start + 300])
    percents = [event["percent"] for event in published]
    assert percents == sorted(percents)
    assert 98 <= percents[-1] < 100  # 100 is for the finished repository
    assert [event["seq"] for event in published] == list(range(4, 4 + len(published)))
    last = published[-1]
    assert last["received_objects"] == last["total_objects"] == 12040
    assert last["resolved_deltas"] == last["total_deltas"] > 0
    assert last["received_bytes"] > 1 << 20 and last["throughput"] > 0
    assert any(event["eta_seconds"] for event in published)
    assert last["id"] == 7 and last["status"] == "running"


def test_nothing_is_published_when_nothing_changed() -> None:
    published: list[dict[str, Any]] = []
    cell = ProgressCell(JOB, published.append, min_interval=0)
    cell.feed(b"Receiving objects:  10% (1/10)\r")
    cell.feed(b"Receiving objects:  10% (1/10)\r")
    cell.feed(b"remote: some chatter\n")
    assert len(published) == 1
    assert published[0]["percent"] == 13.0  # 5 + 80 * 10%


def test_eta_comes_from_the_object_rate() -> None:
    clock = Clock()
    cell = ProgressCell(JOB, lambda event: None, clock=clock)
    cell.feed(b"Receiving objects:  10% (100/1000)\r")
    clock.now += 10
    cell.feed(b"Receiving objects:  20% (200/1000), 1.00 MiB | 100.00 KiB/s\r")
    assert cell.fields["eta_seconds"] == 40.0  # 800 objects at 20 per second
    assert cell.fields["throughput"] == 102400.0


def test_activity_is_recorded_for_the_stall_timeout() -> None:
    clock = Clock()
    cell = ProgressCell(JOB, lambda event: None, clock=clock)
    clock.now = 250.0
    cell.feed(b"remote: still here\n")
    assert cell.last_activity == 250.0


async def test_bursts_are_coalesced_but_the_newest_state_always_goes_out() -> None:
    published: list[dict[str, Any]] = []
    cell = ProgressCell(JOB, published.append, min_interval=0.05)
    for current in range(1, 101):  # a burst: 100 records at once
        cell.feed(b"Receiving objects:  %d%% (%d/100)\r" % (current, current))
    assert len(published) == 1  # the first went out at once, the rest wait
    await eventually(lambda: len(published) == 2)  # one more, once the interval passed
    assert published[-1]["received_objects"] == 100 and published[-1]["seq"] == cell.seq
    cell.set(phase="finalizing")  # status-like changes are never delayed
    assert published[-1]["phase"] == "finalizing"
    cell.feed(b"Resolving deltas:  50% (1/2)\r")
    cell.close()  # the job ended: nothing stale goes out later
    await asyncio.sleep(0.1)  # twice the interval: an absence, which no wait can ask for
    assert published[-1]["phase"] == "finalizing"
