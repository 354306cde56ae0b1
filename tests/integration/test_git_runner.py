"""The git runner against a real git over the loopback smart-HTTP server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from repodepot.git import commands
from repodepot.git.errors import GitCommandError, GitCommandNotAllowed, GitTimeout
from repodepot.git.runner import Credentials, GitRunner
from repodepot.git.sandbox import Sandbox
from repodepot.settings import process_path
from tests.support.eventually import eventually
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate, git

PASSWORD = "s3cret-Pa55word-xyz"


def _runner(tmp_path: Path, schemes: tuple[str, ...] = ("http",), **kwargs: Any) -> GitRunner:
    kwargs.setdefault("path", process_path())
    return GitRunner(runtime_dir=tmp_path / "run", allowed_schemes=schemes, **kwargs)


def _proc_files(name: str) -> Iterator[tuple[int, bytes]]:
    """(pid, the contents of /proc/PID/NAME) of every live process that lets us read it."""
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            with contextlib.suppress(OSError):
                yield int(pid), Path(f"/proc/{pid}/{name}").read_bytes()


def _processes_mentioning(needle: str) -> list[str]:
    """Command lines of live processes containing `needle` (what `ps` shows everyone)."""
    lines = (cmdline.replace(b"\0", b" ").decode() for _, cmdline in _proc_files("cmdline"))
    return [line for line in lines if needle in line]


async def test_clone_bare_over_smart_http(
    tmp_path: Path, git_root: Path, git_server: GitHttpServer
) -> None:
    generate(git_root / "small.git", Spec(commits=30, branches=2, tags=3))
    dest = tmp_path / "out.git"
    calls: list[tuple[str, str, float]] = []
    runner = _runner(tmp_path, observer=lambda *call: calls.append(call))
    await commands.clone_bare(runner, git_server.url("small.git"), dest)
    assert git("rev-list", "--count", "main", cwd=dest).strip() == "30"
    assert git("tag", cwd=dest).split() == ["v1.0.0", "v1.1.0", "v1.2.0"]
    assert await commands.head_branch(runner, dest) == "main"
    assert not await commands.is_empty(runner, dest)
    sha = await commands.rev_parse(runner, dest, "v1.1.0")
    assert sha == git("rev-parse", "v1.1.0^{commit}", cwd=dest).strip()
    assert calls[0][:2] == ("clone", "ok")


async def test_credentials_go_through_askpass_never_argv(tmp_path: Path, git_root: Path) -> None:
    generate(git_root / "big.git", Spec(commits=3000, blob_bytes=512))
    with GitHttpServer(git_root, auth=("alice", PASSWORD), throttle=400_000) as server:
        runner = _runner(tmp_path)
        clone = asyncio.create_task(
            commands.clone_bare(
                runner,
                server.url("big.git"),
                tmp_path / "out.git",
                credentials=Credentials(username="alice", password=PASSWORD),
            )
        )
        seen_git = False
        while not clone.done():
            seen_git = seen_git or bool(_processes_mentioning("big.git"))
            assert not _processes_mentioning(PASSWORD)
            await asyncio.sleep(0.05)  # the sampling rate of the clone's processes, not a wait
        await clone
        assert seen_git, "the clone finished before its processes could be inspected"
        assert (tmp_path / "out.git" / "HEAD").exists()


async def test_wrong_credentials_fail_with_a_redacted_message(
    tmp_path: Path, git_root: Path
) -> None:
    generate(git_root / "r.git", Spec(commits=2))
    with GitHttpServer(git_root, auth=("alice", PASSWORD)) as server:
        runner = _runner(tmp_path)
        url = server.url("r.git", userinfo=f"alice:{PASSWORD}x")
        with pytest.raises(GitCommandError) as info:
            await commands.clone_bare(
                runner,
                url,
                tmp_path / "out.git",
                credentials=Credentials(username="alice", password=PASSWORD + "x"),
            )
        text = f"{info.value} {info.value.stderr} {info.value.args_}"
        assert "Authentication failed" in text
        assert PASSWORD not in text
        assert "***@127.0.0.1" in text
        with pytest.raises(GitCommandError, match="could not read Username"):
            await commands.clone_bare(runner, server.url("r.git"), tmp_path / "anon.git")


async def test_protocols_outside_the_allowed_schemes_are_refused(
    tmp_path: Path, git_root: Path, git_server: GitHttpServer
) -> None:
    generate(git_root / "r.git", Spec(commits=2))
    runner = _runner(tmp_path, schemes=("https",))
    with pytest.raises(GitCommandError, match="transport 'http' not allowed"):
        await commands.clone_bare(runner, git_server.url("r.git"), tmp_path / "a.git")
    with pytest.raises(GitCommandError, match="transport 'file' not allowed"):
        await commands.clone_bare(runner, f"file://{git_root / 'r.git'}", tmp_path / "b.git")
    with pytest.raises(GitCommandError, match="not allowed"):
        await commands.clone_bare(runner, "ext::sh -c touch% /tmp/pwned", tmp_path / "c.git")


async def test_a_timeout_kills_the_whole_process_tree(tmp_path: Path, git_root: Path) -> None:
    generate(git_root / "slow.git", Spec(commits=3000, blob_bytes=512))
    with GitHttpServer(git_root, throttle=100_000) as server:
        runner = _runner(tmp_path)
        dest = tmp_path / "timeout-target.git"
        with pytest.raises(GitTimeout):
            await commands.clone_bare(runner, server.url("slow.git"), dest, timeout=1.0)
        # Killed at its timeout, not waited for: the throttled clone needs about 20 s, so it
        # wrote no refs and would still be running when eventually() gives up.
        assert not (dest / "packed-refs").exists() and not (dest / "refs/heads/main").exists()
        await eventually(lambda: _processes_mentioning("timeout-target.git") == [])


async def test_cancelling_kills_the_whole_process_tree(tmp_path: Path, git_root: Path) -> None:
    generate(git_root / "slow.git", Spec(commits=3000, blob_bytes=512))
    with GitHttpServer(git_root, throttle=100_000) as server:
        runner = _runner(tmp_path)
        dest = tmp_path / "cancel-target.git"
        task = asyncio.create_task(commands.clone_bare(runner, server.url("slow.git"), dest))
        await eventually(lambda: _processes_mentioning("git-remote-http"))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await eventually(lambda: _processes_mentioning("cancel-target.git") == [])


async def test_progress_arrives_on_stderr_as_it_happens(tmp_path: Path, git_root: Path) -> None:
    generate(git_root / "p.git", Spec(commits=2000, blob_bytes=256))
    with GitHttpServer(git_root, throttle=1_000_000) as server:
        chunks: list[bytes] = []
        await commands.clone_bare(
            _runner(tmp_path), server.url("p.git"), tmp_path / "o.git", on_progress=chunks.append
        )
    text = b"".join(chunks)
    assert b"Receiving objects: 100%" in text
    assert b"\r" in text  # carriage-return separated updates, as git writes them
    assert len(chunks) > 1


async def test_the_environment_is_scrubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        '[user]\n\tname = Leaked\n[url "http://evil/"]\n\tinsteadOf = https://\n'
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_DIR", "/nonexistent")
    runner = _runner(tmp_path)
    result = await runner.run(["config", "--list", "--show-origin"])
    listing = result.stdout.decode()
    assert "Leaked" not in listing and "insteadof" not in listing.lower()
    assert "gc.auto=0" in listing
    env = runner.env()
    assert env["GIT_TERMINAL_PROMPT"] == "0" and env["GIT_CONFIG_NOSYSTEM"] == "1"
    assert "GIT_ASKPASS" not in env and "GIT_DIR" not in env
    with_creds = runner.env(Credentials(username="u", password="p"))
    assert Path(with_creds["GIT_ASKPASS"]).stat().st_mode & 0o777 == 0o700


async def test_only_allowlisted_subcommands_run(tmp_path: Path) -> None:
    runner = _runner(tmp_path)
    for argv in (["daemon"], ["-c", "core.pager=sh", "log"], ["--exec-path=/tmp", "log"], []):
        with pytest.raises(GitCommandNotAllowed):
            await runner.run(argv)


async def test_missing_revision_raises_revision_not_found(tmp_path: Path) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=2))
    runner = _runner(tmp_path)
    from repodepot.git.errors import RevisionNotFound

    for rev in ("nope", "--output=/tmp/x", "HEAD~10"):
        with pytest.raises(RevisionNotFound):
            await commands.rev_parse(runner, repo, rev)


async def test_git_dies_with_its_parent(tmp_path: Path, git_root: Path) -> None:
    generate(git_root / "slow.git", Spec(commits=3000, blob_bytes=512))
    script = tmp_path / "parent.py"
    script.write_text(
        "import asyncio, sys\n"
        "sys.path.insert(0, 'src')\n"
        "from pathlib import Path\n"
        "from repodepot.git.runner import GitRunner\n"
        "from repodepot.settings import process_path\n"
        "r = GitRunner(runtime_dir=Path(sys.argv[1]), path=process_path(), "
        "allowed_schemes=['http'])\n"
        "asyncio.run(r.run(['clone', '--bare', sys.argv[2], sys.argv[3]]))\n"
    )
    import subprocess
    import sys

    # A stalled server: git waits silently, so no broken pipe would kill it.
    with GitHttpServer(git_root, fault="stall", fault_after=0) as server:
        dest = tmp_path / "orphan-target.git"
        parent = subprocess.Popen(
            [sys.executable, str(script), str(tmp_path / "run"), server.url("slow.git"), str(dest)]
        )
        await eventually(server.faulted.is_set)  # git now waits on the stalled pack
        assert _processes_mentioning("orphan-target.git")
        parent.kill()  # SIGKILL: no chance to clean up
        parent.wait()
        await eventually(lambda: _processes_mentioning("orphan-target.git") == [])


async def test_a_missing_git_binary_is_reported(tmp_path: Path) -> None:
    from repodepot.git.errors import GitNotInstalled

    runner = _runner(tmp_path, binary="git-does-not-exist")
    # Started directly, and (a network command) through setpriv.
    for argv in (["version"], ["ls-remote", "http://127.0.0.1:9/x.git"]):
        with pytest.raises(GitNotInstalled, match="git-does-not-exist was not found"):
            await runner.run(argv)


def _processes_with_env(needle: str) -> list[int]:
    """Live processes whose environment contains `needle` (sandboxed ones included)."""
    return [pid for pid, environ in _proc_files("environ") if needle.encode() in environ]


def _sandboxed_runner(tmp_path: Path, marker: str) -> GitRunner:
    # The marker rides in PATH: bwrap and the git inside it inherit it.
    return _runner(
        tmp_path, path=f"/nonexistent-{marker}:{process_path()}", sandbox=Sandbox.locate("/usr/bin")
    )


async def test_a_sandboxed_read_runs_in_the_mirror_alone(tmp_path: Path) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=3))
    runner = _sandboxed_runner(tmp_path, uuid.uuid4().hex)
    where = await runner.run(["rev-parse", "--absolute-git-dir"], git_dir=repo)
    assert where.stdout.decode().strip() == "/repo"  # no server path to print
    log = await runner.run(["log", "--format=%s"], git_dir=repo)
    assert log.stdout.decode() == git("log", "--format=%s", cwd=repo)


async def test_a_sandboxed_read_killed_by_timeout_leaves_no_process(tmp_path: Path) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=3))
    marker = uuid.uuid4().hex
    runner = _sandboxed_runner(tmp_path, marker)

    async def never_ends() -> AsyncIterator[bytes]:
        yield b"HEAD\n"
        await asyncio.sleep(3600)  # the scenario: a client that never ends its input

    output = runner.stream(["cat-file", "--batch"], git_dir=repo, stdin=never_ends(), timeout=1.0)
    with pytest.raises(GitTimeout):
        async for _ in output:
            assert _processes_with_env(marker)  # bwrap, its init and git, while it runs
    await eventually(lambda: _processes_with_env(marker) == [])


@pytest.mark.parametrize("sandboxed", [True, False], ids=["sandbox", "plain"])
async def test_streams_left_mid_output_end_at_once(tmp_path: Path, sandboxed: bool) -> None:
    # Clients that go away mid-clone leave git's output unread in a paused pipe; asyncio's
    # wait() returned only once that pipe closed, so closing the stream hung forever.
    repo = generate(tmp_path / "r.git", Spec(commits=1, files=1, blob_bytes=4 << 20, binary=True))
    marker = uuid.uuid4().hex
    runner = _sandboxed_runner(tmp_path, marker)
    if not sandboxed:
        runner.sandbox = None
    blob = (
        (await runner.run(["rev-parse", "HEAD:dir01/file0000.txt"], git_dir=repo))
        .stdout.decode()
        .strip()
    )
    outputs = [runner.stream(["cat-file", "-p", blob], git_dir=repo) for _ in range(6)]
    for output in outputs:
        assert await anext(output)  # the rest waits in the pipe
    for output in outputs:
        await asyncio.wait_for(output.aclose(), timeout=10)
    assert _processes_with_env(marker) == []


async def test_a_sandboxed_reader_dies_with_its_parent(tmp_path: Path) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=3))
    marker = uuid.uuid4().hex
    script = tmp_path / "parent.py"
    script.write_text(
        "import asyncio, sys\n"
        "sys.path.insert(0, 'src')\n"
        "from pathlib import Path\n"
        "from repodepot.git.runner import GitRunner\n"
        "from repodepot.git.sandbox import Sandbox\n"
        "r = GitRunner(runtime_dir=Path(sys.argv[1]), path=sys.argv[3], "
        "sandbox=Sandbox.locate('/usr/bin'))\n"
        "async def main():\n"
        "    await r.start(['cat-file', '--batch'], git_dir=Path(sys.argv[2]))\n"
        "    print('started', flush=True)\n"
        "    await asyncio.sleep(3600)\n"
        "asyncio.run(main())\n"
    )
    import subprocess
    import sys

    path = f"/nonexistent-{marker}:{process_path()}"
    parent = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "run"), str(repo), path],
        stdout=subprocess.PIPE,
    )
    assert parent.stdout is not None
    assert parent.stdout.readline() == b"started\n"
    assert _processes_with_env(marker)
    parent.kill()  # SIGKILL: no chance to stop its reader
    parent.wait()
    parent.stdout.close()
    await eventually(lambda: _processes_with_env(marker) == [])
