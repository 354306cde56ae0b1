"""Hand-shaped commit graphs built with real git plumbing: merges, criss-cross, orphans.

`repogen` makes long linear histories fast; this makes small graphs of a chosen shape
(`commit-tree` with any parents, fixed dates so the SHAs are the same on every run).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.repogen import HERMETIC, T0

IDENTITY = {
    "GIT_AUTHOR_NAME": "Hist",
    "GIT_AUTHOR_EMAIL": "hist@example.com",
    "GIT_COMMITTER_NAME": "Hist",
    "GIT_COMMITTER_EMAIL": "hist@example.com",
}


class History:
    """A bare repository at `path` whose commits and branches a test lays out one by one."""

    def __init__(self, path: Path, *, default_branch: str = "main") -> None:
        self.path = path
        self._clock = T0
        self.git("init", "-q", "--bare", f"--initial-branch={default_branch}", str(path))

    def git(self, *args: str, data: bytes = b"") -> str:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **HERMETIC, **IDENTITY}
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = f"{self._clock} +0000"
        result = subprocess.run(
            ["git", f"--git-dir={self.path}", *args],
            input=data,
            env=env,
            check=True,
            capture_output=True,
        )
        return result.stdout.decode().strip()

    def commit(self, message: str, *parents: str) -> str:
        """A new commit with `parents` (none: a root) whose tree holds one file, `message`."""
        self._clock += 60
        blob = self.git("hash-object", "-w", "--stdin", data=message.encode())
        tree = self.git("mktree", data=f"100644 blob {blob}\tfile.txt\n".encode())
        args = [arg for parent in parents for arg in ("-p", parent)]
        return self.git("commit-tree", tree, *args, data=f"{message}\n".encode())

    def line(self, name: str, count: int, *parents: str) -> list[str]:
        """`count` commits in a row, the first on `parents`; returns them oldest first."""
        made: list[str] = []
        for index in range(count):
            made.append(self.commit(f"{name} {index}", *(made[-1:] or parents)))
        return made

    def branch(self, name: str, sha: str) -> None:
        """Point `refs/heads/NAME` (or a full `refs/...` name) at `sha`."""
        ref = name if name.startswith("refs/") else f"refs/heads/{name}"
        self.git("update-ref", ref, sha)

    def heads(self) -> dict[str, str]:
        """Every branch (full ref) and its commit."""
        listing = self.git("for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/")
        return dict(line.split(" ") for line in listing.splitlines())

    def rev_list_counts(self, branch: str, base: str) -> tuple[int, int]:
        """What plain `git rev-list --left-right --count BRANCH...BASE` says."""
        listing = self.git("rev-list", "--left-right", "--count", f"{branch}...{base}")
        ahead, behind = listing.split()
        return int(ahead), int(behind)
