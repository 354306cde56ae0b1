"""The test fixtures other tests rely on do what they promise."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate, git


def test_generator_makes_large_repositories(tmp_path: Path) -> None:
    repo = generate(
        tmp_path / "big.git", Spec(commits=100_000, branches=3, branch_commits=5, tags=4)
    )
    assert git("rev-list", "--count", "main", cwd=repo).strip() == "100000"
    assert git("rev-list", "--count", "--all", cwd=repo).strip() == "100015"
    branches = git("for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=repo).split()
    assert branches == ["branch-0", "branch-1", "branch-2", "main"]
    assert len(git("tag", cwd=repo).split()) == 4


def test_generator_blob_sizes(tmp_path: Path) -> None:
    repo = generate(tmp_path / "fat.git", Spec(commits=5, blob_bytes=4096, files=5))
    sizes = git("ls-tree", "-r", "-l", "main", cwd=repo).split("\n")
    assert all(line.split()[3] == "4097" for line in sizes if line)


def test_server_requires_basic_auth_when_configured(tmp_path: Path) -> None:
    generate(tmp_path / "r.git", Spec(commits=3))
    with GitHttpServer(tmp_path, auth=("alice", "pw")) as server:
        refs = server.url("r.git") + "/info/refs?service=git-upload-pack"
        assert httpx.get(refs).status_code == 401
        answer = httpx.get(refs, auth=("alice", "pw"))
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/x-git-upload-pack-advertisement"
        git(
            "clone",
            "-q",
            "--bare",
            server.url("r.git", userinfo="alice:pw"),
            str(tmp_path / "out.git"),
        )
    assert git("rev-list", "--count", "main", cwd=tmp_path / "out.git").strip() == "3"


def test_throttle_makes_a_clone_take_seconds(tmp_path: Path) -> None:
    generate(tmp_path / "served" / "t.git", Spec(commits=2000, blob_bytes=1024))
    size = sum(f.stat().st_size for f in (tmp_path / "served" / "t.git").rglob("*") if f.is_file())
    with GitHttpServer(tmp_path / "served", throttle=size // 2) as server:
        started = time.monotonic()
        git("clone", "-q", "--bare", server.url("t.git"), str(tmp_path / "out.git"))
        elapsed = time.monotonic() - started
    # About half the repository's size per second: the pack alone needs well over a second.
    assert elapsed > 1.0, elapsed


def test_push_is_refused_unless_enabled(tmp_path: Path) -> None:
    generate(tmp_path / "served" / "r.git", Spec(commits=2))
    work = tmp_path / "work.git"
    generate(work, Spec(commits=3, seed=9))
    with GitHttpServer(tmp_path / "served") as server:
        with pytest.raises(subprocess.CalledProcessError) as refused:
            git("push", server.url("r.git"), "main:refs/heads/other", cwd=work)
        assert b"403" in refused.value.stderr
    assert "other" not in git("branch", cwd=tmp_path / "served" / "r.git")
    with GitHttpServer(tmp_path / "served", allow_push=True) as server:
        git("push", server.url("r.git"), "main:refs/heads/other", cwd=work)
    assert "other" in git("branch", cwd=tmp_path / "served" / "r.git")
