"""The in-process commit reader on repositories git wrote: every answer is `git cat-file`'s.

Packed, deltified, loose, several packs, a repack under a reader, annotated tags, and
the repositories it leaves to git (replace refs, alternates, sha256, partial clones).
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from repodepot.git.packs import ObjectStore
from tests.support.repogen import HERMETIC, Spec, generate, git

LIMIT = 16 << 20
IDENTITY = ("-c", "user.name=T", "-c", "user.email=t@example.com")
PARAGRAPH = "This change reworks the reader so that it no longer starts a process per lookup."


def gitdir(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **HERMETIC}
    result = subprocess.run(
        ["git", *IDENTITY, "--git-dir", str(repo), *args],
        env=env,
        input=stdin,
        check=True,
        capture_output=True,
    )
    return result.stdout.decode()


def objects(repo: Path) -> dict[str, tuple[str, bytes]]:
    """Every object git finds in `repo`: id -> (kind, body), as `cat-file --batch` says."""
    out = subprocess.run(
        ["git", "--git-dir", str(repo), "cat-file", "--batch-all-objects", "--batch"],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **HERMETIC},
        check=True,
        capture_output=True,
    ).stdout
    found: dict[str, tuple[str, bytes]] = {}
    at = 0
    while at < len(out):
        end = out.index(b"\n", at)
        sha, kind, size = out[at:end].decode().split()
        found[sha] = (kind, out[end + 1 : end + 1 + int(size)])
        at = end + 2 + int(size)
    return found


def assert_reads_as_git(store: ObjectStore, repo: Path) -> dict[str, tuple[str, bytes]]:
    """Every commit reads as git reads it, and no tree or blob reads at all."""
    found = objects(repo)
    for sha, (kind, body) in found.items():
        if kind == "commit":
            assert store.read_commit(repo, sha, LIMIT) == (sha, body), sha
        elif kind in ("tree", "blob"):
            assert store.read_commit(repo, sha, LIMIT) is None, sha
    assert any(kind == "commit" for kind, _ in found.values())
    return found


def commit(repo: Path, message: str, parent: str) -> str:
    """A new loose commit on `parent`'s tree."""
    tree = gitdir(repo, "rev-parse", f"{parent}^{{tree}}").strip()
    return gitdir(repo, "commit-tree", tree, "-p", parent, "-m", message).strip()


def packs(repo: Path) -> set[str]:
    return {name for name in os.listdir(repo / "objects" / "pack") if name.endswith(".pack")}


def similar_history(path: Path, commits: int) -> Path:
    """Long messages, each the last's with one line changed: git stores chains of deltas.

    A commit differs from the k-th before it in up to k lines, so its nearest neighbour
    makes the smallest delta.
    """
    git("init", "-q", "--bare", "--initial-branch=main", str(path))
    head = commit_root(path)
    rng = random.Random(1)
    lines = [rng.randbytes(24).hex() for _ in range(60)]
    for i in range(commits):
        lines[rng.randrange(len(lines))] = rng.randbytes(24).hex()
        head = commit(path, f"Change {i}\n\n{PARAGRAPH}\n" + "\n".join(lines), head)
    gitdir(path, "update-ref", "refs/heads/main", head)
    return path


def commit_root(repo: Path) -> str:
    blob = gitdir(repo, "hash-object", "-w", "--stdin", stdin=b"hello\n").strip()
    tree = gitdir(repo, "mktree", stdin=f"100644 blob {blob}\thello.txt\n".encode()).strip()
    return gitdir(repo, "commit-tree", tree, "-m", "root").strip()


def open_files(under: Path) -> list[str]:
    """What this process holds open or mapped under `under`, as /proc names it."""
    held = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own descriptor
            held.append(os.readlink(f"/proc/self/fd/{fd}"))
    held += [
        line.split(maxsplit=5)[-1] for line in Path("/proc/self/maps").read_text().splitlines()
    ]
    return [path for path in held if path.startswith(str(under))]


@pytest.fixture
def store() -> Iterator[ObjectStore]:
    objects = ObjectStore()
    yield objects
    objects.close()


def test_packed_commits_read_as_git_reads_them(tmp_path: Path, store: ObjectStore) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=300, branches=3, tags=2))
    gitdir(repo, "repack", "-adq")
    assert len(packs(repo)) == 1
    assert_reads_as_git(store, repo)
    assert store.read_commit(repo, "f" * 40, LIMIT) is None


def test_deltified_commits_read_as_git_reads_them(tmp_path: Path, store: ObjectStore) -> None:
    repo = similar_history(tmp_path / "r.git", 120)
    gitdir(repo, "repack", "-adfq", "--depth=50", "--window=250")
    (idx,) = (repo / "objects" / "pack").glob("*.idx")
    listed = [line.split() for line in gitdir(repo, "verify-pack", "-v", str(idx)).splitlines()]
    depths = [int(row[5]) for row in listed if len(row) == 7 and row[1] == "commit"]
    assert len(depths) > 50  # most commits are deltas...
    assert max(depths) > 10  # ...of deltas
    assert_reads_as_git(store, repo)


def test_loose_commits_and_several_packs(tmp_path: Path, store: ObjectStore) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=50))
    gitdir(repo, "repack", "-adq")
    head = gitdir(repo, "rev-parse", "main").strip()
    second = commit(repo, "packed apart", head)
    gitdir(repo, "update-ref", "refs/heads/main", second)
    gitdir(repo, "repack", "-dq")  # the new objects into a second pack
    third = commit(repo, "loose", second)
    gitdir(repo, "update-ref", "refs/heads/main", third)
    assert len(packs(repo)) == 2
    assert (repo / "objects" / third[:2] / third[2:]).is_file()
    assert_reads_as_git(store, repo)
    bounded = ObjectStore(max_packs=1)  # more packs than it may keep open: git's
    assert bounded.read_commit(repo, second, LIMIT) is None
    bounded.close()


def test_a_repack_under_a_reader_deletes_its_pack(tmp_path: Path, store: ObjectStore) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=50))
    head = gitdir(repo, "rev-parse", "main").strip()
    assert store.read_commit(repo, head, LIMIT) is not None
    before = packs(repo)
    newer = commit(repo, "after the first read", head)
    gitdir(repo, "update-ref", "refs/heads/main", newer)
    gitdir(repo, "repack", "-adfq")
    assert not before & packs(repo)
    assert_reads_as_git(store, repo)
    assert not [path for path in open_files(repo) if path.endswith(" (deleted)")]


def test_annotated_tags_peel_to_their_commit(tmp_path: Path, store: ObjectStore) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=5))
    head = gitdir(repo, "rev-parse", "main").strip()
    gitdir(repo, "tag", "-a", "-m", "inner", "v1", "main~2")
    gitdir(repo, "tag", "-a", "-m", "outer", "v1-again", "v1")
    gitdir(repo, "tag", "-a", "-m", "a tree", "tree", "main^{tree}")
    inner, outer, tree = (
        gitdir(repo, "rev-parse", f"refs/tags/{t}").strip() for t in ("v1", "v1-again", "tree")
    )
    target = gitdir(repo, "rev-parse", "main~2").strip()
    body = gitdir(repo, "cat-file", "commit", target).encode()
    assert store.read_commit(repo, inner, LIMIT) == (target, body)  # loose tags
    assert store.read_commit(repo, outer, LIMIT) == (target, body)
    assert store.read_commit(repo, tree, LIMIT) is None
    gitdir(repo, "repack", "-adq")
    assert store.read_commit(repo, outer, LIMIT) == (target, body)  # packed
    assert store.read_commit(repo, head, LIMIT) is not None


def test_replaced_commits_are_left_to_git(tmp_path: Path, store: ObjectStore) -> None:
    repo = generate(tmp_path / "r.git", Spec(commits=5))
    head = gitdir(repo, "rev-parse", "main").strip()
    gitdir(repo, "repack", "-adq")
    assert store.read_commit(repo, head, LIMIT) is not None
    other = gitdir(repo, "rev-parse", "main~1").strip()
    gitdir(repo, "replace", head, other)  # git now answers for `head` with another body
    assert gitdir(repo, "cat-file", "commit", head) == gitdir(repo, "cat-file", "commit", other)
    assert store.read_commit(repo, head, LIMIT) is None
    gitdir(repo, "pack-refs", "--all")  # the replace ref now only in packed-refs
    assert not list((repo / "refs").rglob(head))
    for loose_dir in sorted((repo / "refs" / "replace").glob("**"), reverse=True):
        loose_dir.rmdir()
    assert store.read_commit(repo, head, LIMIT) is None


def test_repositories_it_does_not_understand_are_left_to_git(
    tmp_path: Path, store: ObjectStore
) -> None:
    source = generate(tmp_path / "source.git", Spec(commits=3))
    head = gitdir(source, "rev-parse", "main").strip()
    borrower = generate(tmp_path / "borrower.git", Spec(commits=3))
    (borrower / "objects" / "info" / "alternates").write_text(f"{source / 'objects'}\n")
    assert gitdir(borrower, "rev-parse", "main").strip() == head  # the same history, its own copy
    assert store.read_commit(source, head, LIMIT) is not None
    assert store.read_commit(borrower, head, LIMIT) is None

    partial = generate(tmp_path / "partial.git", Spec(commits=3))
    gitdir(partial, "repack", "-adq")
    (pack,) = packs(partial)
    (partial / "objects" / "pack" / pack.replace(".pack", ".promisor")).write_text("")
    assert store.read_commit(partial, head, LIMIT) is None

    sha256 = tmp_path / "sha256.git"
    git("init", "-q", "--bare", "--object-format=sha256", str(sha256))
    root = commit_root(sha256)
    gitdir(sha256, "update-ref", "refs/heads/main", root)
    gitdir(sha256, "repack", "-adq")
    assert len(root) == 64
    assert store.read_commit(sha256, root[:40], LIMIT) is None


def test_flipped_bytes_of_a_real_pack_never_give_another_body(tmp_path: Path) -> None:
    repo = similar_history(tmp_path / "r.git", 8)
    gitdir(repo, "repack", "-adfq", "--depth=50", "--window=250")
    commits = {sha: body for sha, (kind, body) in objects(repo).items() if kind == "commit"}
    (pack,) = (repo / "objects" / "pack").glob("*.pack")
    original = pack.read_bytes()
    for at in range(12, len(original) - 20, 7):
        pack.write_bytes(original[:at] + bytes([original[at] ^ 0x55]) + original[at + 1 :])
        store = ObjectStore()
        try:
            for sha, body in commits.items():
                assert store.read_commit(repo, sha, LIMIT) in (None, (sha, body))
        finally:
            store.close()


@pytest.mark.parametrize("bound", [{"max_repos": 2}, {"max_packs": 2}])
def test_only_the_most_recently_used_repositories_stay_open(
    tmp_path: Path, bound: dict[str, int]
) -> None:
    repos = [generate(tmp_path / f"r{i}.git", Spec(commits=3)) for i in range(3)]
    for repo in repos:
        gitdir(repo, "repack", "-adq")
    store = ObjectStore(**bound)

    def open_packs() -> set[str]:
        return {link for link in open_files(tmp_path) if link.endswith(".pack")}

    for repo in repos:
        assert store.read_commit(repo, gitdir(repo, "rev-parse", "main").strip(), LIMIT)
    assert {Path(link).parent.parent.parent for link in open_packs()} == set(repos[1:])
    store.close()
    assert not open_packs()
