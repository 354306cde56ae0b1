"""The import worker: claims jobs, clones with progress, survives cancels, stalls and crashes."""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repodepot.events import Broker
from repodepot.exceptions import AlreadyExists, InvalidInput
from repodepot.git import commands
from repodepot.git.errors import GitError
from repodepot.git.runner import NO_TIMEOUT, Credentials, GitRunner
from repodepot.git.urls import parse_source
from repodepot.gitserver import mirror
from repodepot.imports.errors import explain
from repodepot.imports.progress import ProgressCell
from repodepot.imports.records import ImportJobRecord
from repodepot.imports.service import QUEUED_TOPIC, Imports, topic
from repodepot.loops import BackgroundLoop, died_here, new_worker_id
from repodepot.outbound import Policy
from repodepot.repositories import MirrorFacts
from repodepot.settings import Settings
from repodepot.storage import Storage

if TYPE_CHECKING:
    from repodepot.services import Services

logger = logging.getLogger(__name__)

RESCAN_SECONDS = 60.0  # look for dead workers, and jobs queued by a process we hear nothing from


class Aborted(Exception):
    """The clone was stopped on purpose: cancelled, stalled or shut down."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(eq=False)
class _Run:
    job: ImportJobRecord
    cell: ProgressCell
    clone: asyncio.Task[None] | None = None
    abort_reason: str | None = None
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    def abort(self, reason: str) -> None:
        if self.abort_reason is None:
            self.abort_reason = reason
            if self.clone is not None:
                self.clone.cancel()  # the runner kills git's process group


class ImportWorker(BackgroundLoop):
    """Runs up to `import_concurrency` imports at once; `run()` until `stop()`."""

    name = "imports"

    def __init__(
        self,
        *,
        imports: Imports,
        storage: Storage,
        git: GitRunner,
        broker: Broker,
        settings: Settings,
        worker_id: str | None = None,
    ) -> None:
        super().__init__(interval=RESCAN_SECONDS)
        self.imports = imports
        self.storage = storage
        self.git = git
        self.broker = broker
        self.settings = settings
        self.worker_id = worker_id or new_worker_id()
        self._runs: dict[int, _Run] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_scan = -RESCAN_SECONDS
        self._maybe_queued = True
        self._queued_events = 0

    @classmethod
    def from_services(cls, services: Services) -> ImportWorker:
        """A worker over an opened set of services."""
        return cls(
            imports=services.imports,
            storage=services.storage,
            git=services.git,
            broker=services.broker,
            settings=services.settings,
        )

    async def run(self) -> None:
        """Recover abandoned jobs, then claim and run jobs until stopped."""
        logger.info(
            "import worker started",
            extra={"action": "imports.worker_started", "worker_id": self.worker_id},
        )
        with self.broker.subscribe(QUEUED_TOPIC) as queued:
            listener = asyncio.create_task(self._listen(queued))
            try:
                await super().run()
            finally:
                listener.cancel()

    async def stopped(self) -> None:
        """Interrupt running imports, which go back to the queue."""
        for run in list(self._runs.values()):
            run.abort("shutdown")
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _listen(self, queued: Any) -> None:
        while True:
            await queued.get()
            self._queued_events += 1
            self._maybe_queued = True
            self.wake()

    async def step(self) -> None:
        """Now and then recover dead workers' jobs; claim jobs for the free slots."""
        if time.monotonic() - self._last_scan >= RESCAN_SECONDS:
            self._last_scan = time.monotonic()
            self._maybe_queued = True  # jobs of processes we hear nothing from
            await self._guard(self.recover())
        free = self.settings.import_concurrency - len(self._tasks)
        if free > 0 and self._maybe_queued:
            # One UPDATE claims for every free slot; a short answer means the queue is
            # empty, so freed slots do not ask again until a job is queued.
            heard = self._queued_events
            claimed = await self._guard(self.imports.claim(self.worker_id, free)) or []
            if len(claimed) < free and self._queued_events == heard:
                self._maybe_queued = False  # empty, and nothing was queued meanwhile
            for job, credential in claimed:
                task = asyncio.create_task(self._execute(job, credential))
                self._tasks.add(task)
                task.add_done_callback(self._finished)

    async def _guard(self, work: Any) -> Any:
        # A database hiccup must not end the worker; the next round tries again.
        try:
            return await work
        except Exception:
            logger.exception("import worker round failed", extra={"action": "imports.round_failed"})
            await asyncio.sleep(1)
            return None

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self.wake()

    async def recover(self) -> None:
        """Requeue jobs whose worker died (at most 3 attempts in all, then fail them)."""
        stale = datetime.now(UTC) - timedelta(seconds=max(30.0, 6 * self.settings.import_heartbeat))
        dead = [
            job_id
            for job_id, worker_id, heartbeat in await self.imports.running_jobs()
            if worker_id != self.worker_id and _is_dead(worker_id, heartbeat, stale)
        ]
        if dead:
            self.storage.prepare()  # removes the dead processes' temporary directories
        for job_id in dead:
            event = await self.imports.requeue(job_id)
            if event is not None:
                self.broker.publish(topic(job_id), event)
                logger.warning(
                    "recovered an interrupted import",
                    extra={
                        "action": "imports.recovered",
                        "job_id": job_id,
                        "status": event["status"],
                    },
                )
                self._wake.set()

    async def _execute(self, job: ImportJobRecord, credential: tuple[str, str] | None) -> None:
        job_id = job.id
        event = job.as_event()
        self.broker.publish(topic(job_id), event)
        run = _Run(
            job=job,
            cell=ProgressCell(event, lambda change: self.broker.publish(topic(job_id), change)),
        )
        self._runs[job_id] = run
        run.tasks = [
            asyncio.create_task(self._write_loop(run)),
            asyncio.create_task(self._watch_cancel(run)),
        ]
        logger.info(
            "import started",
            extra={"action": "imports.started", "job_id": job_id, "attempt": job.attempt},
        )
        try:
            await self._import(run, credential)
        except Exception:
            logger.exception(
                "import crashed", extra={"action": "imports.crashed", "job_id": job_id}
            )
            await self._fail(
                run,
                "repodepot hit an internal error; the administrator has the details in the log.",
            )
        finally:
            run.cell.close()
            for task in run.tasks:
                task.cancel()
            await asyncio.gather(*run.tasks, return_exceptions=True)
            del self._runs[job_id]

    async def _import(self, run: _Run, credential: tuple[str, str] | None) -> None:
        job = run.job
        try:
            source = parse_source(job.url, self.settings.allowed_schemes)
            # Checked again here, and git held to the addresses checked, redirects off:
            # the submit's lookup may be stale, and a 302 must not take the token along.
            pins = await Policy.from_settings(self.settings).git_config(source.url)
            credentials = (
                Credentials(username=credential[0], password=credential[1]) if credential else None
            )
            async with self.storage.building(label=f"import-{job.id}") as staged:
                run.clone = asyncio.create_task(
                    commands.clone_bare(
                        self.git,
                        source.url,
                        staged,
                        credentials=credentials,
                        on_progress=run.cell.feed,
                        timeout=NO_TIMEOUT,
                        config=pins,
                    )
                )
                try:
                    await run.clone
                except asyncio.CancelledError:
                    if run.abort_reason is None:
                        raise
                    raise Aborted(run.abort_reason) from None
                run.cell.set(
                    phase="finalizing",
                    percent=max(run.cell.fields["percent"], 99.0),
                    eta_seconds=None,
                )
                await self._succeed(run, await mirror.facts(self.git, staged), credential, staged)
        except Aborted as aborted:
            await self._aborted(run, aborted.reason)
            return
        except (GitError, InvalidInput, AlreadyExists, OSError) as error:
            await self._fail(run, _explain(error))
            return

    async def _succeed(
        self, run: _Run, facts: MirrorFacts, credential: tuple[str, str] | None, staged: Path
    ) -> None:
        """Create the repository, place the clone under its id, end the job: at once."""
        target = run.job.target
        final = await self.imports.finish_success(
            run.job,
            seq=run.cell.seq + 1,
            facts=facts,
            credential=credential,
            fields=run.cell.fields,
            place=lambda repository_id: self.storage.place(staged, repository_id, fresh_id=True),
            unplace=self.storage.remove,
        )
        if final is None:  # cancelled while finishing: nothing was created
            return
        self.broker.publish(topic(run.job.id), final)
        logger.info(
            "import succeeded",
            extra={"action": "imports.succeeded", "job_id": run.job.id, "target": target},
        )

    async def _fail(self, run: _Run, error: str) -> None:
        final = await self.imports.finish_failure(
            run.job, seq=run.cell.seq + 1, error=error, fields=run.cell.fields
        )
        if final is not None:
            self.broker.publish(topic(run.job.id), final)
            logger.info(
                "import failed",
                extra={"action": "imports.failed", "job_id": run.job.id, "error": error},
            )

    async def _aborted(self, run: _Run, reason: str) -> None:
        if reason == "stalled":
            seconds = self.settings.import_stall_timeout
            await self._fail(
                run,
                f"No progress for {seconds:g} seconds: the source stalled and "
                "the transfer was stopped.",
            )
        elif reason == "shutdown":
            event = await self.imports.requeue(run.job.id, worker_id=self.worker_id)
            if event is not None:
                self.broker.publish(topic(run.job.id), event)
        # "cancelled": the canceller already wrote and published the final state.

    async def _write_loop(self, run: _Run) -> None:
        """Flush the cell at most once a second; heartbeat; notice cancels and stalls."""
        job_id, cell = run.job.id, run.cell
        flushed, last_write = cell.seq, time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            if now - cell.last_activity > self.settings.import_stall_timeout:
                run.abort("stalled")
                return
            if cell.seq != flushed:
                seq = cell.seq
                alive = await self.imports.write_progress(job_id, {**cell.fields, "seq": seq})
                flushed, last_write = seq, now
            elif now - last_write >= self.settings.import_heartbeat:
                alive = await self.imports.write_progress(job_id, {})
                last_write = now
            else:
                continue
            if not alive:
                run.abort("cancelled")
                return

    async def _watch_cancel(self, run: _Run) -> None:
        with self.imports.cancels(run.job.id) as subscription:
            while True:
                event = await subscription.get()
                if event is not None and event.get("status") == "cancelled":
                    run.abort("cancelled")
                    return


def _explain(error: Exception) -> str:
    if isinstance(error, GitError):
        return explain(error)
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return "The server ran out of disk space during the import."
    if isinstance(error, InvalidInput | AlreadyExists):
        return error.message
    return f"The import failed: {error}"


def _is_dead(worker_id: str | None, heartbeat: datetime | None, stale: datetime) -> bool:
    return died_here(worker_id) or heartbeat is None or heartbeat < stale
