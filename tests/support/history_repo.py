"""A small repository with known authors, dates, odd subjects and every kind of tag.

The history pages and APIs are compared against plain git on it: lightweight and
annotated tags, a tag of a tag, a tag of a tree (not a commit: left out), subjects with
tabs, non-ASCII letters and what looks like a format placeholder.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.repogen import HERMETIC

T0 = 1_700_000_000
AUTHORS = ("Ada Lovelace <ada@example.com>", "Zoë Ångström <zoe@example.com>")


def run_git(repo: Path, *args: str, when: int = T0, author: str = AUTHORS[0]) -> str:
    """`git ARGS` in `repo` with a fixed identity and date."""
    name, _, email = author.partition(" <")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        **HERMETIC,
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email.rstrip(">"),
        "GIT_COMMITTER_NAME": "Committer",
        "GIT_COMMITTER_EMAIL": "committer@example.com",
        "GIT_AUTHOR_DATE": f"{when} +0200",
        "GIT_COMMITTER_DATE": f"{when} +0100",
    }
    result = subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    )
    return result.stdout


def commit(repo: Path, subject: str, *, when: int, author: str = AUTHORS[0]) -> str:
    """Commit a change with `subject`; returns its sha."""
    (repo / "file.txt").write_text(f"{subject}\n{when}\n")
    run_git(repo, "add", "file.txt", when=when, author=author)
    run_git(repo, "commit", "-q", "-m", subject, when=when, author=author)
    return run_git(repo, "rev-parse", "HEAD").strip()


def build(repo: Path, *, commits: int = 25) -> Path:
    """A work tree at `repo` with `commits` commits on main, a feature branch and tags."""
    repo.mkdir(parents=True)
    run_git(repo, "init", "-q", "--initial-branch=main")
    for i in range(1, commits + 1):
        subject = {
            22: "tab\there, %s and %x00 stay text",
            23: "Ünïcødé subject ✓",
        }.get(i, f"commit {i}")
        commit(repo, subject, when=T0 + 3600 * i, author=AUTHORS[i % 2])
        if i == 5:
            run_git(repo, "tag", "v0.1.0", when=T0 + 3600 * i)  # lightweight
        if i == 10:
            run_git(
                repo, "tag", "-a", "v0.2.0", "-m", "Second release\n\nWith notes", when=T0 + 40_000
            )
        if i == 12:
            run_git(
                repo, "tag", "-a", "v0.2.0-signed", "-m", "Re-tagged", "v0.2.0", when=T0 + 50_000
            )
    run_git(repo, "tag", "tree-tag", "HEAD^{tree}", when=T0 + 90_000)
    run_git(repo, "checkout", "-q", "-b", "feature", "HEAD~4")
    commit(repo, "feature work", when=T0 + 3600 * (commits + 5), author=AUTHORS[1])
    run_git(repo, "checkout", "-q", "main")
    return repo
