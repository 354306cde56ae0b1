"""The typed git operations against real repositories: the answers git itself gives."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

import pytest

from repodepot.git import commands
from repodepot.git.commands import Tag, TreeEntry
from repodepot.git.errors import GitCommandError
from repodepot.git.runner import GitRunner
from repodepot.settings import process_path
from tests.support.repogen import HERMETIC, Spec, generate, git

IDENTITY = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
}


@pytest.fixture
def runner(tmp_path: Path) -> GitRunner:
    return GitRunner(runtime_dir=tmp_path / "run", path=process_path())


def _in(repo: Path, *args: str) -> str:
    return git("--git-dir", str(repo), *args).strip()


def _commit_with_submodule(repo: Path) -> str:
    """A commit on `main` whose tree holds `sub/a.txt`, `sub/mod` (a submodule) and `top`."""
    blob = _fed(repo, b"", "hash-object", "-w", "--stdin")
    head = _in(repo, "rev-parse", "main")
    sub = _fed(repo, f"100644 blob {blob}\ta.txt\n160000 commit {head}\tmod\n".encode(), "mktree")
    root = _fed(repo, f"040000 tree {sub}\tsub\n100755 blob {blob}\ttop\n".encode(), "mktree")
    commit = _fed(repo, b"with a submodule\n", "commit-tree", root, "-p", head)
    _in(repo, "update-ref", "refs/heads/main", commit)
    return commit


def _fed(repo: Path, data: bytes, *args: str) -> str:
    result = subprocess.run(
        ["git", "--git-dir", str(repo), *args],
        input=data,
        env={"PATH": process_path(), **HERMETIC, **IDENTITY},
        check=True,
        capture_output=True,
    )
    return result.stdout.decode().strip()


async def test_ls_tree_names_lists_every_file_and_nothing_for_an_empty_repository(
    runner: GitRunner, tmp_path: Path
) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=6, files=4))
    expected = _in(repo, "ls-tree", "-r", "--name-only", "HEAD").splitlines()
    assert await commands.ls_tree_names(runner, repo, "HEAD") == expected
    assert len(expected) == 6

    empty = tmp_path / "empty.git"
    git("init", "-q", "--bare", str(empty))
    assert await commands.ls_tree_names(runner, empty, "HEAD") == []


async def test_ls_tree_entries_give_sizes_of_blobs_and_none_for_a_submodule(
    runner: GitRunner, tmp_path: Path
) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=2, files=2))
    commit = _commit_with_submodule(repo)
    empty = "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    head = _in(repo, "rev-parse", "main~1")

    assert await commands.ls_tree_entries(runner, repo, commit, "sub") == [
        TreeEntry(mode="100644", kind="blob", sha=empty, size=0, path="sub/a.txt"),
        TreeEntry(mode="160000", kind="commit", sha=head, size=None, path="sub/mod"),
    ]
    whole = await commands.ls_tree_entries(runner, repo, commit, "")
    assert [entry.path for entry in whole] == ["sub/a.txt", "sub/mod", "top"]
    with pytest.raises(GitCommandError):
        await commands.ls_tree_entries(runner, repo, "0" * 40, "")


async def test_tags_are_peeled_and_filtered_by_the_commit_they_point_at_or_reach(
    runner: GitRunner, tmp_path: Path
) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=4, tags=2))  # v1.0.0 at 2, v1.1.0 at 4
    first, last = _in(repo, "rev-parse", "main~2"), _in(repo, "rev-parse", "main")
    _fed(repo, b"", "tag", "-a", "-m", "annotated", "v2.0.0", first)

    assert await commands.tags(runner, repo) == [
        Tag("v1.0.0", first),
        Tag("v1.1.0", last),
        Tag("v2.0.0", first),  # the commit, not the tag object
    ]
    assert await commands.tag_names(runner, repo) == ["v1.0.0", "v1.1.0", "v2.0.0"]
    at_first = await commands.tags(runner, repo, points_at=first)
    assert [tag.name for tag in at_first] == ["v1.0.0", "v2.0.0"]
    below = await commands.tags(runner, repo, merged=_in(repo, "rev-parse", "main~1"))
    assert [tag.name for tag in below] == ["v1.0.0", "v2.0.0"]


async def test_is_ancestor_follows_history_and_is_false_for_an_unknown_commit(
    runner: GitRunner, tmp_path: Path
) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=3))
    old, new = _in(repo, "rev-parse", "main~2"), _in(repo, "rev-parse", "main")
    assert await commands.is_ancestor(runner, repo, old, new)
    assert await commands.is_ancestor(runner, repo, new, new)
    assert not await commands.is_ancestor(runner, repo, new, old)
    assert not await commands.is_ancestor(runner, repo, "1" * 40, new)


async def test_cat_file_batch_answers_objects_over_its_pipes(
    runner: GitRunner, tmp_path: Path
) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=1))
    head = _in(repo, "rev-parse", "main")
    process = await commands.cat_file_batch(runner, repo)
    try:
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.write(b"main\n")
        await process.stdin.drain()
        sha, kind, _ = (await process.stdout.readline()).split()
        assert (sha.decode(), kind) == (head, b"commit")
    finally:
        await GitRunner.stop(process)

    blocking = commands.cat_file_batch_blocking(runner, repo)
    try:
        assert blocking.stdin is not None
        assert blocking.stdout is not None
        blocking.stdin.write(b"main^{tree}\n")
        blocking.stdin.flush()
        assert blocking.stdout.readline().split()[1] == b"tree"
    finally:
        GitRunner.kill_group(blocking)


async def _collect(output: AsyncGenerator[bytes, None]) -> bytes:
    return b"".join([chunk async for chunk in output])


async def test_upload_pack_advertises_refs_in_either_protocol_and_answers_a_want(
    runner: GitRunner, tmp_path: Path
) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=2))
    head = _in(repo, "rev-parse", "main")

    v0 = await _collect(commands.upload_pack_advertise(runner, repo, protocol=None))
    assert f"{head} refs/heads/main".encode() in v0
    v2 = await _collect(commands.upload_pack_advertise(runner, repo, protocol="version=2"))
    assert v2.startswith(b"000eversion 2\n")

    async def negotiation() -> AsyncIterator[bytes]:
        want = f"want {head} ofs-delta\n".encode()
        yield f"{len(want) + 4:04x}".encode() + want + b"0000"
        yield b"0009done\n"

    answer = await _collect(commands.upload_pack(runner, repo, negotiation(), protocol=None))
    assert answer.startswith(b"0008NAK\n")
    assert b"PACK" in answer

    async def garbage() -> AsyncIterator[bytes]:
        yield b"not a pkt-line"

    with pytest.raises(GitCommandError):
        await _collect(commands.upload_pack(runner, repo, garbage(), protocol=None))


async def test_exec_checked_streams_the_output_and_raises_on_failure(
    runner: GitRunner, tmp_path: Path
) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=3))
    output = commands.exec_checked(
        runner, repo, ["rev-list", "main"], timeout=30.0, max_memory=1 << 30
    )
    assert (await _collect(output)).decode() == _in(repo, "rev-list", "main") + "\n"
    failing = commands.exec_checked(
        runner, repo, ["rev-list", "no-such-branch"], timeout=30.0, max_memory=1 << 30
    )
    with pytest.raises(GitCommandError):
        await _collect(failing)
