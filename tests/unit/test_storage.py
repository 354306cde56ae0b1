from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from repodepot.exceptions import AlreadyExists, InvalidInput
from repodepot.storage import Storage, mirror_relpath, validate_repo_name


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


def test_a_mirror_lives_under_its_id_sharded_by_its_hash(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "data")
    digest = hashlib.sha256(b"12345").hexdigest()
    expected = tmp_path / "data" / "repos" / digest[:2] / digest[2:4] / "12345.git"
    assert storage.path(12345) == expected
    assert mirror_relpath(12345) == f"{digest[:2]}/{digest[2:4]}/12345.git"
    assert storage.path(1) != storage.path(2)
    for bad in (0, -3):
        with pytest.raises(ValueError, match="positive"):
            storage.path(bad)


async def test_staging_renames_into_place_only_on_success(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    async with storage.staging(7) as staged:
        staged.mkdir()
        (staged / "HEAD").write_text("ref: refs/heads/main\n")
        assert not storage.exists(7)  # invisible until finished
    assert (storage.path(7) / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert storage.exists(7) and not storage.exists(8)
    assert list(storage.tmp_dir.iterdir()) == []


async def test_a_failed_build_leaves_nothing(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    with pytest.raises(RuntimeError):
        async with storage.staging(3) as staged:
            staged.mkdir()
            (staged / "partial").write_bytes(b"x" * 100)
            raise RuntimeError("clone died")
    assert not storage.exists(3)
    assert list(storage.tmp_dir.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        async with storage.staging(4):
            pass
    assert not storage.exists(4)


async def test_an_existing_repository_is_never_overwritten(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    async with storage.staging(5) as staged:
        staged.mkdir()
        (staged / "first").write_text("kept")
    with pytest.raises(AlreadyExists):
        async with storage.staging(5) as staged:
            staged.mkdir()
    assert (storage.path(5) / "first").read_text() == "kept"
    assert list(storage.tmp_dir.iterdir()) == []


async def test_building_then_placing_under_an_id_known_only_at_the_end(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    async with storage.building(label="import-1") as staged:
        assert not staged.exists()  # what git clone wants
        staged.mkdir()
        (staged / "HEAD").write_text("ref: refs/heads/main\n")
        placed = storage.place(staged, 42)
        assert not staged.exists()
    assert placed == storage.path(42)
    assert (placed / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert list(storage.tmp_dir.iterdir()) == []

    async with storage.building() as staged:
        staged.mkdir()
        with pytest.raises(AlreadyExists):
            storage.place(staged, 42)
        with pytest.raises(FileNotFoundError):
            storage.place(staged.parent / "nothing.git", 43)
    assert not storage.exists(43)
    assert list(storage.tmp_dir.iterdir()) == []  # the unplaced build is gone too


async def test_a_build_that_fails_leaves_nothing_in_tmp(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    with pytest.raises(RuntimeError):
        async with storage.building(label="import-2") as staged:
            staged.mkdir()
            (staged / "partial").write_bytes(b"x" * 100)
            raise RuntimeError("clone died")
    assert list(storage.tmp_dir.iterdir()) == []
    assert list(storage.mirror_ids()) == []


async def test_mirror_ids_lists_the_mirrors_on_disk_and_nothing_else(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    for key in (1, 2, 12345):
        async with storage.staging(key) as staged:
            staged.mkdir()
    shard = storage.path(1).parent
    (shard / "notes.git").mkdir()  # not an id
    (shard / "9.git.lock").mkdir()  # not a mirror
    (shard / "10.git").write_text("a file, not a mirror")
    (storage.repos_dir / "acme" / "old.git").mkdir(parents=True)  # the layout by name
    assert sorted(storage.mirror_ids()) == [1, 2, 12345]
    storage.remove(2)
    assert sorted(storage.mirror_ids()) == [1, 12345]


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
    async with storage.staging(9) as staged:
        staged.mkdir()
        (staged / "blob").write_bytes(b"x" * 1000)
    assert storage.size(9) == 1000
    storage.remove(9)
    assert not storage.exists(9)
    assert list(storage.tmp_dir.iterdir()) == []


def test_one_lock_per_repository(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    assert storage.lock(1) is storage.lock(1)
    assert storage.lock(1) is not storage.lock(2)
