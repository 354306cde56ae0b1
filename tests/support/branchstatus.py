"""What plain git says of branch status, for tests to compare answers with.

Counts come from `git rev-list --left-right --count` in a scratch repository that
fetched both sides, so no answer is checked against a repository the code under test
built itself.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.history_repo import T0, commit, run_git
from tests.support.repogen import git


def rev_list(repo: Path, left: str, right: str) -> tuple[int, int]:
    """(commits only in `left`, commits only in `right`) in the bare repository `repo`."""
    only_left, only_right = git(
        "--git-dir", str(repo), "rev-list", "--left-right", "--count", f"{left}...{right}"
    ).split()
    return int(only_left), int(only_right)


def pair_counts(
    scratch: Path, local: Path, branch: str, upstream: Path, upstream_branch: str
) -> tuple[int, int]:
    """(ahead, behind) of `local`'s `branch` against `upstream`'s `upstream_branch`."""
    if not scratch.exists():
        git("init", "-q", "--bare", str(scratch))
    git("--git-dir", str(scratch), "fetch", "-q", str(local), "+refs/heads/*:refs/local/*")
    git("--git-dir", str(scratch), "fetch", "-q", str(upstream), "+refs/heads/*:refs/up/*")
    return rev_list(scratch, f"refs/local/{branch}", f"refs/up/{upstream_branch}")


def upstream_of(work: Path, bare: Path) -> None:
    """Make `bare` a served copy of the work tree `work` (`origin` of `work`)."""
    git("clone", "-q", "--bare", str(work), str(bare))
    run_git(work, "remote", "add", "origin", str(bare))


def advance(work: Path, branch: str, count: int, label: str, *, start: int = 0) -> str:
    """Check out `branch` in `work` and add `count` commits; returns the new head."""
    run_git(work, "checkout", "-q", branch)
    head = ""
    for i in range(count):
        head = commit(work, f"{label} {i}", when=T0 + 500_000 + start + i)
    return head
