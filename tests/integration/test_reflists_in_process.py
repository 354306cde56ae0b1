"""`tag_names` and `refs_digest` read from the ref files answer exactly what git answers.

Each repository is built with real git (loose refs, `pack-refs --all`, a loose ref
overriding a packed one, annotated tags with peel lines, notes, replace refs) and the
answers are compared with `git for-each-ref` run directly. The in-process path is proven
by a runner that cannot start git; what the reader leaves to git (a symbolic ref, a
symlink, garbage, a name git rejects, a config it does not read) makes `diskrefs.listed`
refuse, and the commands then answer what git answers.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repodepot.git import commands, diskrefs
from repodepot.git.errors import GitCommandError, GitNotInstalled
from repodepot.git.runner import GitRunner
from repodepot.settings import process_path
from tests.support.repogen import HERMETIC, Spec, generate

IDENTITY = {
    "GIT_AUTHOR_NAME": "Ref Lister",
    "GIT_AUTHOR_EMAIL": "refs@example.com",
    "GIT_COMMITTER_NAME": "Ref Lister",
    "GIT_COMMITTER_EMAIL": "refs@example.com",
    "GIT_COMMITTER_DATE": "1700000000 +0000",
    "GIT_AUTHOR_DATE": "1700000000 +0000",
}


def git(repo: Path, *args: str, data: bytes = b"") -> bytes:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **HERMETIC, **IDENTITY}
    result = subprocess.run(
        ["git", f"--git-dir={repo}", *args], input=data, env=env, check=True, capture_output=True
    )
    return result.stdout


def expected_tags(repo: Path) -> list[str]:
    output = git(repo, "for-each-ref", "--format=%(refname:lstrip=2)", "refs/tags/")
    return output.decode(errors="replace").splitlines()


def expected_digest(repo: Path) -> str:
    output = git(repo, "for-each-ref", "--format=%(objectname) %(refname)")
    return hashlib.sha256(output).hexdigest()


@pytest.fixture
def runner(tmp_path: Path) -> GitRunner:
    return GitRunner(runtime_dir=tmp_path / "run", path=process_path())


@pytest.fixture
def no_git(tmp_path: Path) -> GitRunner:
    """A runner whose git does not exist: an answer from it was read from the files."""
    return GitRunner(
        runtime_dir=tmp_path / "run-no-git", path=process_path(), binary="/nonexistent/git"
    )


async def assert_read_as_git(repo: Path, no_git: GitRunner) -> None:
    diskrefs.listed(os.fspath(repo), "refs/")  # the reader answers: no fallback hides a bug
    assert await commands.tag_names(no_git, repo) == expected_tags(repo)
    assert await commands.refs_digest(no_git, repo) == expected_digest(repo)


def repository(path: Path) -> Path:
    """Four commits on main, a branch, and tags whose names sort differently by component."""
    generate(path, Spec(commits=4, branches=1, tags=2))
    for name in ("v1-rc", "v1/x", "v1.0", "a/b/c", "Zeta", "über/ünïcode", "ß"):
        git(path, "update-ref", f"refs/tags/{name}", "main~1")
    git(path, "tag", "-a", "-m", "annotated", "annotated/v2", "main")
    git(path, "tag", "-a", "-m", "of a tag", "nested", "annotated/v2")
    git(path, "update-ref", "refs/upstream/heads/main", "main")
    git(path, "update-ref", "refs/upstream/tags/v0", "main~2")
    git(path, "notes", "add", "-m", "a note", "main")
    return path


async def test_loose_refs_list_as_git_lists_them(tmp_path: Path, no_git: GitRunner) -> None:
    repo = repository(tmp_path / "r.git")
    await assert_read_as_git(repo, no_git)


async def test_packed_refs_with_peel_lines_list_as_git_lists_them(
    tmp_path: Path, no_git: GitRunner
) -> None:
    repo = repository(tmp_path / "r.git")
    git(repo, "pack-refs", "--all")
    assert b"\n^" in (repo / "packed-refs").read_bytes()  # annotated tags' peel lines
    assert not any((repo / "refs/tags").rglob("*.*"))
    await assert_read_as_git(repo, no_git)


async def test_a_loose_ref_overrides_a_packed_one_of_the_same_name(
    tmp_path: Path, no_git: GitRunner
) -> None:
    repo = repository(tmp_path / "r.git")
    git(repo, "pack-refs", "--all")
    packed_before = (repo / "packed-refs").read_bytes()
    moved = git(repo, "rev-parse", "main~3").decode().strip()
    (repo / "refs/tags/v1.0").write_text(f"{moved}\n")  # a loose file over the packed one
    git(repo, "update-ref", "refs/tags/new/loose", "main")
    assert (repo / "packed-refs").read_bytes() == packed_before
    await assert_read_as_git(repo, no_git)
    assert (b"refs/tags/v1.0", moved) in diskrefs.listed(os.fspath(repo), "refs/tags/")


async def test_replace_refs_are_listed_raw(tmp_path: Path, no_git: GitRunner) -> None:
    repo = repository(tmp_path / "r.git")
    old, new = (git(repo, "rev-parse", rev).decode().strip() for rev in ("main~1", "main~2"))
    git(repo, "replace", old, new)
    await assert_read_as_git(repo, no_git)


async def test_an_empty_repository_has_no_refs(tmp_path: Path, no_git: GitRunner) -> None:
    repo = tmp_path / "empty.git"
    git(repo, "init", "-q", "--bare", str(repo))
    assert await commands.tag_names(no_git, repo) == []
    assert await commands.refs_digest(no_git, repo) == hashlib.sha256(b"").hexdigest()
    await assert_read_as_git(repo, no_git)


async def test_many_refs_half_packed(tmp_path: Path, no_git: GitRunner) -> None:
    repo = tmp_path / "many.git"
    generate(repo, Spec(commits=3))
    lines = "".join(f"create refs/tags/t{n % 97}/{n}\x20main~{n % 3}\n" for n in range(1500))
    git(repo, "update-ref", "--stdin", data=lines.encode())
    git(repo, "pack-refs", "--all")
    lines = "".join(f"create refs/heads/b{n}\x20main\n" for n in range(1500))
    git(repo, "update-ref", "--stdin", data=lines.encode())
    await assert_read_as_git(repo, no_git)


async def test_a_digest_is_equal_whichever_way_it_was_computed(
    tmp_path: Path, runner: GitRunner, no_git: GitRunner
) -> None:
    repo = repository(tmp_path / "r.git")
    from_files = await commands.refs_digest(no_git, repo)
    (repo / "refs/heads/alias").write_text("ref: refs/heads/main\n")  # git answers now
    with pytest.raises(diskrefs.Unreadable):
        diskrefs.listed(os.fspath(repo), "refs/")
    with_alias = await commands.refs_digest(runner, repo)
    assert with_alias == expected_digest(repo)
    (repo / "refs/heads/alias").unlink()
    assert await commands.refs_digest(runner, repo) == from_files


_COMPONENT = st.sampled_from(["a", "a-b", "a.b", "b", "v1", "v1.0", "Z", "é", "x_y", "1"])
_NAMES = st.lists(
    st.tuples(
        st.sampled_from(["refs/tags/", "refs/heads/", "refs/notes/", "refs/upstream/tags/"]),
        st.lists(_COMPONENT, min_size=1, max_size=3),
    ).map(lambda pair: pair[0] + "/".join(pair[1])),
    min_size=0,
    max_size=12,
    unique=True,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(names=_NAMES, data=st.data())
async def test_random_ref_sets_list_as_git_lists_them(
    tmp_path: Path, no_git: GitRunner, names: list[str], data: st.DataObject
) -> None:
    repo = tmp_path / "random.git"
    shutil.rmtree(repo, ignore_errors=True)
    generate(repo, Spec(commits=3))
    # A name that is both a ref and a directory of refs cannot exist in git's files.
    kept = [name for name in names if not any(o.startswith(f"{name}/") for o in names)]
    targets = [f"main~{data.draw(st.integers(0, 2))}" for _ in kept]
    git(repo, "update-ref", "--stdin", data=_updates(kept, targets))
    if data.draw(st.booleans()):
        git(repo, "pack-refs", "--all")
        loose = [name for name in kept if data.draw(st.booleans())]
        git(repo, "update-ref", "--stdin", data=_updates(loose, ["main"] * len(loose)))
    await assert_read_as_git(repo, no_git)


def _updates(names: list[str], targets: list[str]) -> bytes:
    return "".join(f"update {n} {t}\n" for n, t in zip(names, targets, strict=True)).encode()


def _symbolic(repo: Path) -> None:
    git(repo, "symbolic-ref", "refs/heads/alias", "refs/heads/main")


def _symlink(repo: Path) -> None:
    os.symlink("main", repo / "refs/heads/link")


def _symlinked_directory(repo: Path) -> None:
    shutil.move(repo / "refs/tags", repo / "elsewhere")
    os.symlink("../elsewhere", repo / "refs/tags")


def _garbage(repo: Path) -> None:
    (repo / "refs/tags/garbage").write_bytes(b"not an id\n")


def _hostile_name(repo: Path) -> None:
    sha = git(repo, "rev-parse", "main").decode().strip()
    (repo / "refs/tags/with space").write_text(f"{sha}\n")
    (repo / "refs/tags/x..y").write_text(f"{sha}\n")


def _trailing_spaces(repo: Path) -> None:
    sha = git(repo, "rev-parse", "main").decode().strip()
    (repo / "refs/tags/spaced").write_text(f"{sha}   \n")


def _config_include(repo: Path) -> None:
    (repo / "extra.config").write_text("[core]\n\tbare = true\n")
    git(repo, "config", "include.path", "extra.config")


def _packed_garbage(repo: Path) -> None:
    git(repo, "pack-refs", "--all")
    with (repo / "packed-refs").open("a") as packed:
        packed.write("not a packed line\n")


@pytest.mark.parametrize(
    "damage",
    [
        _symbolic,
        _symlink,
        _symlinked_directory,
        _garbage,
        _hostile_name,
        _trailing_spaces,
        _config_include,
    ],
)
async def test_what_the_reader_refuses_is_answered_by_git(
    tmp_path: Path, runner: GitRunner, damage: object
) -> None:
    repo = repository(tmp_path / "r.git")
    assert callable(damage)
    damage(repo)
    with pytest.raises(diskrefs.Unreadable):
        diskrefs.listed(os.fspath(repo), "refs/")
    assert await commands.tag_names(runner, repo) == expected_tags(repo)
    assert await commands.refs_digest(runner, repo) == expected_digest(repo)


async def test_a_packed_refs_git_rejects_fails_as_git_fails(
    tmp_path: Path, runner: GitRunner
) -> None:
    repo = repository(tmp_path / "r.git")
    _packed_garbage(repo)
    with pytest.raises(diskrefs.Unreadable):
        diskrefs.listed(os.fspath(repo), "refs/")
    with pytest.raises(GitCommandError, match="unexpected line"):
        await commands.tag_names(runner, repo)
    with pytest.raises(GitCommandError, match="unexpected line"):
        await commands.refs_digest(runner, repo)


async def test_a_refused_read_asks_git(tmp_path: Path, no_git: GitRunner) -> None:
    repo = repository(tmp_path / "r.git")
    _garbage(repo)
    with pytest.raises(GitNotInstalled):
        await commands.tag_names(no_git, repo)
    with pytest.raises(GitNotInstalled):
        await commands.refs_digest(no_git, repo)
