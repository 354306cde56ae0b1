from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from repodepot.exceptions import AlreadyExists, InvalidInput
from repodepot.storage import Storage, validate_repo_name


@pytest.mark.parametrize("name", ["a", "acme/widgets", "github.com/acme/widgets", "x/y_z.v2-1"])
def test_valid_names(name: str) -> None:
    assert validate_repo_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/abs",
        "a//b",
        "../etc",
        "a/../b",
        ".hidden",
        "-opt",
        "a/b.git",
        "a/.git",
        "a/b.lock",
        "a b",
        "/".join("a" * 25),
        "x" * 256,
        "a\\b",
        "a/b/",
    ],
)
def test_invalid_names_are_refused_with_the_field(name: str) -> None:
    with pytest.raises(InvalidInput) as info:
        validate_repo_name(name)
    assert info.value.field == "name"


def _storage(tmp_path: Path) -> Storage:
    storage = Storage(tmp_path / "data")
    storage.prepare()
    return storage


async def test_staging_renames_into_place_only_on_success(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    async with storage.staging("acme/widgets") as staged:
        staged.mkdir()
        (staged / "HEAD").write_text("ref: refs/heads/main\n")
        assert not storage.exists("acme/widgets")  # invisible until finished
    assert (storage.path("acme/widgets") / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert storage.path("acme/widgets") == tmp_path / "data/repos/acme/widgets.git"
    assert list(storage.tmp_dir.iterdir()) == []


async def test_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    with pytest.raises(RuntimeError):
        async with storage.staging("acme/broken") as staged:
            staged.mkdir()
            (staged / "partial").write_bytes(b"x" * 100)
            raise RuntimeError("clone died")
    assert not storage.exists("acme/broken")
    assert list(storage.tmp_dir.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        async with storage.staging("acme/nothing"):
            pass
    assert not storage.exists("acme/nothing")


async def test_an_existing_repository_is_never_overwritten(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    async with storage.staging("a/b") as staged:
        staged.mkdir()
    with pytest.raises(AlreadyExists):
        async with storage.staging("a/b") as staged:
            pass


def test_orphaned_temporary_directories_are_removed_at_start(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    orphan = storage.tmp_dir / "deadbeef" / "repo.git"
    orphan.mkdir(parents=True)
    (storage.tmp_dir / "stray-file").write_text("x")
    dead = subprocess.Popen(["true"])
    dead.wait()
    (storage.tmp_dir / f"{dead.pid}-import-7").mkdir()
    live = storage.workdir("import-8")  # this process's work in progress: kept
    live.mkdir()
    removed = Storage(tmp_path / "data").prepare()
    assert len(removed) == 3
    assert list(storage.tmp_dir.iterdir()) == [live]


async def test_remove_and_size(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    async with storage.staging("a/b") as staged:
        staged.mkdir()
        (staged / "blob").write_bytes(b"x" * 1000)
    assert storage.size("a/b") == 1000
    storage.remove("a/b")
    assert not storage.exists("a/b")


def test_one_lock_per_repository(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    assert storage.lock("a/b") is storage.lock("a/b")
    assert storage.lock("a/b") is not storage.lock("a/c")
