"""Many git processes at once, on the event loop and in worker threads, as the server runs them.

The server runs on asyncio's own loop (`repodepot serve`): uvloop started each git
process with a fork() of the whole server on the loop's thread, and feeding its pipes
from `subprocess.Popen` instead closed descriptors other threads were using (a module
zip's reader failed with EBADF, then the server aborted). These run the runner's three
ways of starting git side by side with the blocking readers module zips use, with what
can go wrong around a process's exit: many at once, input git does not read, early
close, timeouts, cancels, and nothing left unreaped.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from repodepot.git.errors import GitCommandError, GitTimeout
from repodepot.git.runner import GitRunner
from repodepot.git.sandbox import Sandbox
from repodepot.settings import process_path
from tests.support.repogen import Spec, generate, git


def _runner(tmp_path: Path, *, sandboxed: bool = False, marker: str = "") -> GitRunner:
    return GitRunner(
        runtime_dir=tmp_path / "run",
        path=f"/nonexistent-{marker}:{process_path()}" if marker else process_path(),
        sandbox=Sandbox.locate("/usr/bin") if sandboxed else None,
    )


def _children() -> list[int]:
    """This process's children, reaped or not (a zombie is still listed)."""
    found = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        found += [int(pid) for pid in (task / "children").read_text().split()]
    return found


def _with_env(marker: str) -> list[int]:
    """Live processes whose environment holds `marker` (bwrap, its init and git)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/environ").read_bytes():
                found.append(int(pid))
        except OSError:
            continue
    return found


def _on_loop(scenario: Callable[[], Coroutine[Any, Any, None]], loop: str = "asyncio") -> None:
    before = set(_children())
    if loop == "uvloop":
        uvloop.run(scenario())
    else:
        asyncio.run(scenario())
    assert set(_children()) - before == set()  # every git it started was reaped


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return generate(tmp_path / "r.git", Spec(commits=20, files=5, tags=2))


def test_many_processes_at_once_each_answer_their_own(tmp_path: Path, repo: Path) -> None:
    runner = _runner(tmp_path)
    tags = git("for-each-ref", "--format=%(refname)", "refs/tags", cwd=repo).split()
    expected = {tag: git("rev-parse", tag, cwd=repo).strip() for tag in tags}
    asked = [tags[i % len(tags)] for i in range(60)]

    async def scenario() -> None:
        results = await asyncio.gather(
            *(runner.run(["rev-parse", tag], git_dir=repo) for tag in asked)
        )
        for tag, result in zip(asked, results, strict=True):
            assert result.returncode == 0
            assert result.stdout.decode().strip() == expected[tag]

    _on_loop(scenario)


def test_input_output_and_exit_codes(tmp_path: Path, repo: Path) -> None:
    runner = _runner(tmp_path)
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    asked = 20_000  # more than a pipe holds, each way

    async def scenario() -> None:
        checked = await runner.run(
            ["cat-file", "--batch-check"], git_dir=repo, stdin=b"HEAD\n" * asked
        )
        assert (
            checked.stdout.decode().splitlines()
            == [checked.stdout.decode().splitlines()[0]] * asked
        )
        assert checked.stdout.decode().split()[0] == head
        missing = await runner.run(["rev-parse", "--verify", "nope"], git_dir=repo, check=False)
        assert missing.returncode == 128 and missing.stdout == b""
        with pytest.raises(GitCommandError):
            await runner.run(["rev-parse", "--verify", "nope"], git_dir=repo)

    _on_loop(scenario)


def test_a_stream_read_to_the_end_and_one_left_early(tmp_path: Path, repo: Path) -> None:
    runner = _runner(tmp_path)
    expected = git("log", "--format=%H %s", cwd=repo).encode()

    async def scenario() -> None:
        chunks = [c async for c in runner.stream(["log", "--format=%H %s"], git_dir=repo)]
        assert b"".join(chunks) == expected
        left = runner.stream(["log", "--format=%H %s"], git_dir=repo)
        assert await anext(left)
        await asyncio.wait_for(left.aclose(), timeout=10)
        with pytest.raises(GitCommandError):
            async for _ in runner.stream(["cat-file", "-p", "0" * 40], git_dir=repo):
                pass

    _on_loop(scenario)


def test_a_long_lived_reader_answers_then_stops(tmp_path: Path, repo: Path) -> None:
    runner = _runner(tmp_path)
    head = git("rev-parse", "HEAD", cwd=repo).strip()

    async def scenario() -> None:
        process = await runner.start(["cat-file", "--batch-check"], git_dir=repo)
        assert process.stdin is not None and process.stdout is not None
        for _ in range(3):
            process.stdin.write(b"HEAD\n")
            await process.stdin.drain()
            assert (await process.stdout.readline()).decode().split()[:2] == [head, "commit"]
        await runner.stop(process)
        assert process.returncode is not None

    _on_loop(scenario)


def test_timeouts_and_cancels_leave_no_process(tmp_path: Path, repo: Path) -> None:
    marker = uuid.uuid4().hex
    runner = _runner(tmp_path, sandboxed=True, marker=marker)

    async def never_ends() -> AsyncIterator[bytes]:
        yield b"HEAD\n"
        await asyncio.sleep(3600)

    async def scenario() -> None:
        output = runner.stream(
            ["cat-file", "--batch"], git_dir=repo, stdin=never_ends(), timeout=1.0
        )
        with pytest.raises(GitTimeout):
            async for _ in output:
                pass
        assert _with_env(marker) == []
        waiting = asyncio.create_task(_cat_forever(runner, repo, never_ends()))
        while not _with_env(marker):
            await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert _with_env(marker) == []

    _on_loop(scenario)


async def _cat_forever(runner: GitRunner, repo: Path, stdin: AsyncIterator[bytes]) -> None:
    async for _ in runner.stream(["cat-file", "--batch"], git_dir=repo, stdin=stdin):
        pass


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_input_git_does_not_read_is_dropped_and_git_answers(
    tmp_path: Path, repo: Path, loop: str
) -> None:
    # uvloop raised RuntimeError ("the handler is closed") writing to the stdin of a git
    # that had exited; asyncio's loop a broken pipe. Git's own answer is what counts.
    runner = _runner(tmp_path)
    head = git("rev-parse", "HEAD", cwd=repo).strip()

    async def scenario() -> None:
        for _ in range(20):
            result = await runner.run(["rev-parse", "HEAD"], git_dir=repo, stdin=b"x" * 300_000)
            assert result.stdout.decode().strip() == head
            streamed = runner.stream(["rev-parse", "HEAD"], git_dir=repo, stdin=_lots())
            assert b"".join([c async for c in streamed]).decode().strip() == head

    _on_loop(scenario, loop)


async def _lots() -> AsyncIterator[bytes]:
    for _ in range(50):
        yield b"x" * 65536


def test_loop_processes_beside_blocking_readers_in_threads(tmp_path: Path, repo: Path) -> None:
    # A module zip reads a `popen()` cat-file in a worker thread while the loop starts
    # and ends other git processes: no descriptor of one may be closed by the other.
    runner = _runner(tmp_path)
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    stop, failures, read = threading.Event(), [], [0]

    def zip_reader() -> None:
        while not stop.is_set():
            process = runner.popen(["cat-file", "--batch"], git_dir=repo)
            try:
                assert process.stdin is not None and process.stdout is not None
                for _ in range(20):
                    process.stdin.write(b"HEAD\n")
                    process.stdin.flush()
                    header = process.stdout.readline().split()
                    assert header[0].decode() == head
                    process.stdout.read(int(header[2]) + 1)
                read[0] += 1
            except Exception as error:
                failures.append(repr(error))
            finally:
                GitRunner.kill_group(process)

    async def scenario() -> None:
        async def one(index: int) -> None:
            if index % 3 == 0:
                process = await runner.start(["cat-file", "--batch-check"], git_dir=repo)
                assert process.stdin is not None and process.stdout is not None
                process.stdin.write(b"HEAD\n")
                await process.stdin.drain()
                assert (await process.stdout.readline()).decode().startswith(head)
                await runner.stop(process)
            elif index % 3 == 1:
                result = await runner.run(["rev-parse", "HEAD"], git_dir=repo)
                assert result.stdout.decode().strip() == head
            else:
                lines = runner.stream(["log", "--format=%H"], git_dir=repo)
                assert (await anext(lines)).decode().startswith(head)
                await lines.aclose()

        gate = asyncio.Semaphore(20)

        async def bounded(index: int) -> None:
            async with gate:
                await one(index)

        await asyncio.gather(*(bounded(index) for index in range(600)))

    before = set(_children())
    threads = [threading.Thread(target=zip_reader) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        asyncio.run(scenario())
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == [] and read[0] > 0
    assert set(_children()) - before == set()
