"""The worker's claiming logic, with a fake job store (no database, no git)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from repodepot.events import Broker
from repodepot.imports.service import QUEUED_TOPIC
from repodepot.imports.worker import ImportWorker
from repodepot.settings import Settings
from tests.support.eventually import eventually


def _worker(imports: Any, broker: Broker, tmp_path: Path) -> ImportWorker:
    nothing: Any = None  # claiming never reaches storage or git
    return ImportWorker(
        imports=imports,
        storage=nothing,
        git=nothing,
        broker=broker,
        settings=Settings(data_dir=tmp_path),
    )


class RacingImports:
    """Its first claim finds nothing, but a job is queued while that claim is in flight."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.claims: list[int] = []

    async def running_jobs(self) -> list[Any]:
        return []

    async def claim(self, worker_id: str, limit: int = 1) -> list[Any]:
        self.claims.append(limit)
        if len(self.claims) == 1:
            self.broker.publish(QUEUED_TOPIC, {"id": 1, "status": "pending", "seq": 0})
            await asyncio.sleep(0)  # the listener runs while the claim "executes"
        return []


async def test_a_job_queued_during_an_empty_claim_is_claimed_at_once(tmp_path: Path) -> None:
    broker = Broker()
    imports = RacingImports(broker)
    worker = _worker(imports, broker, tmp_path)
    running = asyncio.create_task(worker.run())
    # Not left waiting for the 60 s rescan (eventually() gives up after 10 s).
    await eventually(lambda: len(imports.claims) >= 2)
    await worker.stop()
    running.cancel()


async def test_an_empty_queue_costs_no_further_claims(tmp_path: Path) -> None:
    broker = Broker()
    claims: list[int] = []

    class Empty(RacingImports):
        async def claim(self, worker_id: str, limit: int = 1) -> list[Any]:
            claims.append(limit)
            return []

    worker = _worker(Empty(broker), broker, tmp_path)
    running = asyncio.create_task(worker.run())
    await eventually(lambda: claims == [2])  # at start
    worker._wake.set()  # e.g. a slot freed: no reason to believe a job waits
    # The round clears the wake before it decides to claim, and a claim is recorded as soon
    # as it is called: once the wake is clear, that round's decision is in `claims`.
    await eventually(lambda: not worker._wake.is_set())
    assert claims == [2]  # not after the wake
    broker.publish(QUEUED_TOPIC, {"id": 2, "status": "pending", "seq": 0})
    await eventually(lambda: claims == [2, 2])  # after the queued event
    await worker.stop()
    running.cancel()
