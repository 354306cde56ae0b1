"""Concurrent askers of one `cat-file --batch`: questions pipelined, each answer its own."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from repodepot.git import commands
from repodepot.git.errors import RevisionNotFound
from repodepot.git.runner import GitRunner
from repodepot.gitserver import _batch, catfile
from repodepot.gitserver.catfile import CommitInfo, CommitReader
from repodepot.metrics import Metrics
from repodepot.settings import process_path
from tests.support.eventually import eventually
from tests.support.repogen import Spec, generate, git


def _runner(tmp_path: Path) -> GitRunner:
    return GitRunner(runtime_dir=tmp_path / "run", path=process_path())


def _shas(repo: Path) -> list[str]:
    return git("--git-dir", str(repo), "rev-list", "main").split()


def _pool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, commits: int
) -> tuple[Path, list[str], _Starts, CommitReader]:
    """A repository of `commits`, its shas, the starts counted, and a pool (no in-process)."""
    repo = generate(tmp_path / "r.git", Spec(commits=commits))
    return (
        repo,
        _shas(repo),
        _Starts(monkeypatch),
        CommitReader(_runner(tmp_path), in_process=False),
    )


class _Starts:
    """Every `cat-file --batch` the pool starts, and every write of questions to them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pids: list[int] = []
        self.writes: list[bytes] = []
        real = commands.cat_file_batch

        async def start(runner: GitRunner, repo: Path) -> asyncio.subprocess.Process:
            process = await real(runner, repo)
            self.pids.append(process.pid)
            assert process.stdin is not None
            write = process.stdin.write

            def recorded(data: bytes) -> None:
                self.writes.append(data)
                write(data)

            monkeypatch.setattr(process.stdin, "write", recorded)
            return process

        monkeypatch.setattr(commands, "cat_file_batch", start)

    @property
    def questions(self) -> int:
        """How many questions were written, to every process."""
        return sum(data.count(b"\n") for data in self.writes)


@contextmanager
def _stopped(pid: int) -> Iterator[None]:
    """git (its process group) stopped: questions reach the pipe, no answer comes back."""
    os.killpg(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with suppress(ProcessLookupError):  # killed meanwhile
            os.killpg(pid, signal.SIGCONT)


async def _close(reader: CommitReader, tasks: list[asyncio.Task[CommitInfo]]) -> None:
    """End the reader, and the lookups a failed assertion left waiting."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await reader.close()


async def test_concurrent_askers_share_one_process_and_each_gets_its_own_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=60))
    shas = _shas(repo)
    subjects = git("--git-dir", str(repo), "log", "--format=%s", "main").splitlines()
    big = b"x" * 100_000
    (tmp_path / "big").write_bytes(big)
    blob = git("--git-dir", str(repo), "hash-object", "-w", str(tmp_path / "big")).strip()
    starts = _Starts(monkeypatch)
    reader = CommitReader(_runner(tmp_path), in_process=False)
    # Missing names come first: a "missing" from a process over a second old is asked
    # again of a new one, and this test counts processes.
    missing = {1: "nope", 4: f"{shas[0]}:no-such-file", 6: "refs/heads/gone"}
    oversized, whole = 9, 10
    try:

        async def ask(index: int) -> None:
            if index in missing:
                assert await reader.read(repo, missing[index], 1 << 20) is None
            elif index == oversized:
                found = await reader.read(repo, blob, 1024)
                assert found is not None
                assert (found.sha, found.kind, found.size, found.data) == (
                    blob,
                    "blob",
                    len(big),
                    None,
                )
            elif index == whole:
                found = await reader.read(repo, blob, len(big))
                assert found is not None
                assert found.data == big
            else:
                info = await reader.commit(repo, shas[index % len(shas)])
                assert (info.sha, info.subject) == (
                    shas[index % len(shas)],
                    subjects[index % len(shas)],
                )

        await asyncio.gather(*(ask(index) for index in range(200)))

        assert len(starts.pids) == 1
        assert [pooled.pid for pooled in reader.readers()] == starts.pids
        assert starts.questions == 200  # each asked once: no retry, no second process
        # Questions went out together, before the answers to the first ones came back.
        assert max(data.count(b"\n") for data in starts.writes) > 1
        with pytest.raises(RevisionNotFound):
            await reader.commit(repo, "nope")
    finally:
        await reader.close()


async def test_past_the_pending_bound_askers_wait_for_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, shas, starts, reader = _pool(tmp_path, monkeypatch, 12)
    monkeypatch.setattr(_batch, "MAX_PENDING", 5)
    lookups: list[asyncio.Task[CommitInfo]] = []
    try:
        await reader.commit(repo, "main")
        (pooled,) = reader.readers()
        with _stopped(pooled.pid):
            lookups += [asyncio.create_task(reader.commit(repo, sha)) for sha in shas]
            await eventually(lambda: starts.questions == 1 + 5)
        found = await asyncio.gather(*lookups)
        assert [info.sha for info in found] == shas
        assert starts.questions == 1 + len(shas)
        assert starts.pids == [pooled.pid]
    finally:
        await _close(reader, lookups)


async def test_a_cancelled_asker_shifts_no_answer_and_keeps_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, shas, starts, reader = _pool(tmp_path, monkeypatch, 20)
    lookups: list[asyncio.Task[CommitInfo]] = []
    try:
        await reader.commit(repo, "main")
        (pooled,) = reader.readers()
        with _stopped(pooled.pid):
            lookups += [asyncio.create_task(reader.commit(repo, sha)) for sha in shas]
            # All of them in the pipe, none answered: then one in the middle goes away.
            await eventually(lambda: starts.questions == 1 + len(shas))
            lookups[7].cancel()
        found = await asyncio.gather(*lookups, return_exceptions=True)

        assert lookups[7].cancelled()
        for index, sha in enumerate(shas):
            if index != 7:
                assert getattr(found[index], "sha", None) == sha, index
        # The cancelled asker's answer was read and dropped: the next one is its own.
        assert (await reader.commit(repo, shas[3])).sha == shas[3]
        assert (await reader.commit(repo, shas[7])).sha == shas[7]
        assert [p.pid for p in reader.readers()] == starts.pids == [pooled.pid]
    finally:
        await _close(reader, lookups)


async def test_a_reader_killed_mid_batch_answers_every_asker_from_a_new_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, shas, starts, reader = _pool(tmp_path, monkeypatch, 30)
    lookups: list[asyncio.Task[CommitInfo]] = []
    try:
        await reader.commit(repo, "main")
        (pooled,) = reader.readers()
        with _stopped(pooled.pid):
            lookups += [asyncio.create_task(reader.commit(repo, sha)) for sha in shas]
            await eventually(lambda: starts.questions == 1 + len(shas))
            os.killpg(pooled.pid, signal.SIGKILL)  # with every question pending

        found = await asyncio.gather(*lookups)
        assert [info.sha for info in found] == shas
        assert len(starts.pids) == 2  # one new process, shared by all who asked again
        assert [p.pid for p in reader.readers()] == starts.pids[1:]
    finally:
        await _close(reader, lookups)


async def test_a_reader_that_stops_answering_is_replaced_and_its_askers_answered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, shas, starts, reader = _pool(tmp_path, monkeypatch, 5)
    monkeypatch.setattr(_batch, "ANSWER_TIMEOUT", 0.2)
    lookups: list[asyncio.Task[CommitInfo]] = []
    try:
        await reader.commit(repo, "main")
        (pooled,) = reader.readers()
        with _stopped(pooled.pid):  # it never answers: killed past the timeout
            lookups += [asyncio.create_task(reader.commit(repo, sha)) for sha in shas]
            await eventually(lambda: len(starts.pids) == 2)
        found = await asyncio.gather(*lookups)
        assert [info.sha for info in found] == shas
        assert [p.pid for p in reader.readers()] == starts.pids[1:]
        await eventually(lambda: not Path(f"/proc/{pooled.pid}").exists())
    finally:
        await _close(reader, lookups)


async def test_readers_of_different_repositories_start_without_waiting_for_each_other(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = (generate(tmp_path / f"{name}.git", Spec(commits=3)) for name in "ab")
    real = commands.cat_file_batch
    started: list[Path] = []
    a_starting, a_may_start = asyncio.Event(), asyncio.Event()

    async def start(runner: GitRunner, repo: Path) -> asyncio.subprocess.Process:
        started.append(repo)
        if repo == a:
            a_starting.set()
            await a_may_start.wait()
        return await real(runner, repo)

    monkeypatch.setattr(commands, "cat_file_batch", start)
    reader = CommitReader(_runner(tmp_path), in_process=False)
    lookups: list[asyncio.Task[CommitInfo]] = []
    try:
        lookups += [asyncio.create_task(reader.commit(a, rev)) for rev in ("main", "main~1")]
        await a_starting.wait()
        of_b = asyncio.create_task(reader.commit(b, "main"))
        lookups.append(of_b)
        # A guard, not a measure: on a shared start lock b would wait for ever.
        done, _ = await asyncio.wait(lookups, timeout=10, return_when="FIRST_COMPLETED")
        assert done == {of_b}
        assert of_b.result().sha == git("--git-dir", str(b), "rev-parse", "main").strip()

        a_may_start.set()
        found = await asyncio.gather(*lookups)
        assert [info.sha for info in found] == [*_shas(a)[:2], of_b.result().sha]
        assert started == [a, b]  # a's two lookups shared one start
        assert {pooled.repo for pooled in reader.readers()} == {a, b}
    finally:
        a_may_start.set()
        await _close(reader, lookups)


async def test_readers_started_together_stay_within_max_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repos = [generate(tmp_path / f"{name}.git", Spec(commits=2)) for name in "abcd"]
    monkeypatch.setattr(catfile, "MAX_OPEN", 2)
    metrics = Metrics()
    reader = CommitReader(_runner(tmp_path), observer=metrics, in_process=False)
    try:
        found = await asyncio.gather(*(reader.commit(repo, "main") for repo in repos))
        assert [info.sha for info in found] == [_shas(repo)[0] for repo in repos]
        # Each answered by its own reader, though most were retired before it asked.
        assert 1 <= len(reader.readers()) <= 2
        evictions = metrics.registry.get_sample_value(
            "repodepot_reader_pool_evictions_total", {"reason": "count"}
        )
        assert evictions == len(repos) - len(reader.readers())
    finally:
        await reader.close()


async def test_an_asker_gone_while_its_reader_starts_does_not_keep_it_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=2))
    real = commands.cat_file_batch
    starting, may_start = asyncio.Event(), asyncio.Event()

    async def start(runner: GitRunner, repo: Path) -> asyncio.subprocess.Process:
        starting.set()
        await may_start.wait()
        return await real(runner, repo)

    monkeypatch.setattr(commands, "cat_file_batch", start)
    reader = CommitReader(_runner(tmp_path), in_process=False)
    lookups = [asyncio.create_task(reader.commit(repo, rev)) for rev in ("main", "main~1")]
    try:
        await starting.wait()
        lookups[0].cancel()
        may_start.set()
        assert (await lookups[1]).sha == _shas(repo)[1]
        (pooled,) = reader.readers()
    finally:
        may_start.set()
        # A guard, not a measure: a reader held for an asker that never asks never ends.
        await asyncio.wait_for(_close(reader, lookups), 10)
    assert not Path(f"/proc/{pooled.pid}").exists()
