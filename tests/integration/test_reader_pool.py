"""The long-lived readers' pool: bounded by memory, idle readers ended, none killed mid-answer."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from repodepot.git.runner import GitRunner
from repodepot.git.sandbox import Sandbox
from repodepot.gitserver.catfile import CommitReader
from repodepot.metrics import Metrics
from repodepot.procfs import tree_resident_bytes
from repodepot.settings import process_path
from tests.support.eventually import eventually
from tests.support.repogen import Spec, generate, git

MIB = 1 << 20


def _runner(tmp_path: Path, sandbox: Sandbox | None = None) -> GitRunner:
    return GitRunner(runtime_dir=tmp_path / "run", path=process_path(), sandbox=sandbox)


def _mirrors(tmp_path: Path, *names: str) -> list[Path]:
    return [generate(tmp_path / f"{name}.git", Spec(commits=3)) for name in names]


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def _one_mib(pid: int) -> int:
    return MIB


async def test_past_the_budget_the_least_recently_used_reader_ends(tmp_path: Path) -> None:
    a, b, c = _mirrors(tmp_path, "a", "b", "c")
    metrics = Metrics()
    reader = CommitReader(
        _runner(tmp_path),
        budget_bytes=2 * MIB,
        measure=_one_mib,
        measure_every=0,
        observer=metrics,
        in_process=False,
    )
    try:
        for repo in (a, b, a):  # b is now the least recently used
            await reader.commit(repo, "main")
        pids = {pooled.repo: pooled.pid for pooled in reader.readers()}
        info = await reader.commit(c, "main")
        assert info.sha == git("--git-dir", str(c), "rev-parse", "main").strip()

        assert [pooled.repo for pooled in reader.readers()] == [a, c]
        await eventually(lambda: not _alive(pids[b]))
        assert _alive(pids[a])
        assert _sample(metrics, "repodepot_reader_pool_misses_total") == 3
        assert _sample(metrics, "repodepot_reader_pool_hits_total") == 1
        evictions = "repodepot_reader_pool_evictions_total"
        assert _sample(metrics, evictions, reason="budget") == 1
        assert _sample(metrics, "repodepot_reader_pool_readers") == 2
        assert _sample(metrics, "repodepot_reader_pool_resident_bytes") == 2 * MIB
        assert (await reader.commit(a, "main")).sha  # still there: a hit
        assert _sample(metrics, "repodepot_reader_pool_hits_total") == 2
    finally:
        await reader.close()


async def test_a_reader_idle_past_the_ttl_ends_with_no_further_request(tmp_path: Path) -> None:
    (a,) = _mirrors(tmp_path, "a")
    metrics = Metrics()
    reader = CommitReader(_runner(tmp_path), idle_ttl=0.3, observer=metrics, in_process=False)
    try:
        await reader.commit(a, "main")
        (pooled,) = reader.readers()
        await eventually(lambda: not _alive(pooled.pid))
        assert reader.readers() == []
        assert _sample(metrics, "repodepot_reader_pool_evictions_total", reason="idle") == 1
        assert _sample(metrics, "repodepot_reader_pool_readers") == 0
        await reader.commit(a, "main")  # asked again: a new reader
        assert _sample(metrics, "repodepot_reader_pool_misses_total") == 2
    finally:
        await reader.close()


async def test_a_reader_evicted_while_answering_finishes_its_answer(tmp_path: Path) -> None:
    a, b = _mirrors(tmp_path, "a", "b")
    content = b"0123456789abcdef" * (2 * MIB)  # 32 MiB: read in many pieces
    (tmp_path / "big").write_bytes(content)
    blob = git("--git-dir", str(a), "hash-object", "-w", str(tmp_path / "big")).strip()
    metrics = Metrics()
    reader = CommitReader(
        _runner(tmp_path),
        budget_bytes=MIB,
        measure=_one_mib,
        measure_every=0,
        observer=metrics,
        in_process=False,
    )
    try:
        big = asyncio.create_task(reader.read(a, blob, 64 * MIB))
        await eventually(lambda: [p.answering for p in reader.readers()] == [True], interval=0)
        (answering,) = reader.readers()

        await reader.commit(b, "main")  # over the budget: a, the least recently used, goes
        assert [pooled.repo for pooled in reader.readers()] == [b]
        assert _sample(metrics, "repodepot_reader_pool_evictions_total", reason="budget") == 1
        if not big.done():
            assert _alive(answering.pid)  # retired, not killed

        got = await big
        assert got is not None
        assert got.data == content
        # Answered by the first process: a reader killed mid-answer would have been retried.
        assert _sample(metrics, "repodepot_reader_pool_misses_total") == 2
        await eventually(lambda: not _alive(answering.pid))
    finally:
        await reader.close()


async def test_resident_memory_is_read_from_proc_for_the_whole_process_tree(
    tmp_path: Path,
) -> None:
    (a,) = _mirrors(tmp_path, "a")
    assert tree_resident_bytes(os.getpid()) > 0
    sandboxed = _runner(tmp_path, Sandbox.locate("/usr/bin"))
    reader = CommitReader(sandboxed, measure_every=0, in_process=False)
    try:
        await reader.commit(a, "main")
        await reader.commit(a, "main~1")  # measured on this lookup, after git answered
        (pooled,) = reader.readers()
        # The direct child is bubblewrap; git runs below it and counts too.
        own = int(Path(f"/proc/{pooled.pid}/statm").read_text().split()[1]) * os.sysconf(
            "SC_PAGE_SIZE"
        )
        assert pooled.resident_bytes > own > 0
    finally:
        await reader.close()
    await eventually(lambda: not _alive(pooled.pid))
    assert tree_resident_bytes(pooled.pid) == 0
