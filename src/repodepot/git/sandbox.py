"""The bubblewrap sandbox that git runs in when a user's input reaches it.

Inside, the process sees the system's binaries and libraries read-only and one
mirror, read-only, at `/repo`: no data dir, no secret key, no other mirror, no
`/tmp` of the server, no `/etc`, no `/proc`. It has its own (empty) network,
PID, IPC and UTS namespaces, no capabilities, and dies with its parent. The
mirror's path on the server is never inside, so nothing git prints can name it.

This module only builds the command line; `repodepot.git.runner` starts it.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from repodepot.exceptions import ConfigurationError

INSIDE = "/repo"
"""Where the mirror is inside the sandbox: git runs with `--git-dir=/repo` in `/repo`."""

# What git needs of the system: its binary, its helpers (/usr/lib/git-core), shared
# libraries and a shell for the few programs git starts itself (pack-objects is git).
SYSTEM_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")


def _system_binds(root: Path) -> list[str]:
    # Merged-/usr systems have /bin -> usr/bin: a symlink costs less than a second mount.
    binds: list[str] = []
    for name in SYSTEM_DIRS:
        path = root / name
        if path.is_symlink():
            binds += ["--symlink", str(path.readlink()), f"/{name}"]
        elif path.is_dir():
            binds += ["--ro-bind", str(path), f"/{name}"]
    return binds


@dataclass(frozen=True, slots=True)
class Sandbox:
    """A bubblewrap command line that confines one command to one repository."""

    bwrap: str
    system: tuple[str, ...]

    @classmethod
    def locate(cls, path: str) -> Sandbox:
        """The sandbox of this machine's `bwrap` (looked up on `path`).

        Raises ConfigurationError when bwrap is not installed.
        """
        found = shutil.which("bwrap", path=path)
        if found is None:
            raise ConfigurationError(
                "git_sandbox is 'bwrap' but bwrap was not found on PATH: install bubblewrap "
                "(Debian: apt-get install bubblewrap) or set REPODEPOT_GIT_SANDBOX=none"
            )
        return cls(bwrap=found, system=tuple(_system_binds(Path("/"))))

    def wrap(
        self, repo: Path, command: Sequence[str], *, borrowed: Sequence[Path] = ()
    ) -> list[str]:
        """`command` run inside the sandbox, with `repo` read-only at `/repo` as its cwd.

        `command` names the repository as `/repo` (`INSIDE`), never by its own path.
        `borrowed` are object directories `repo` reads through its alternates (branch
        status's upstream copies, never a mirror a user reads): bound read-only where
        the alternates file says they are.
        """
        borrows = [arg for path in borrowed for arg in ("--ro-bind", str(path), str(path))]
        return [
            self.bwrap,
            "--unshare-all",  # network, PID, IPC, UTS, user, cgroup namespaces
            "--die-with-parent",
            "--cap-drop",
            "ALL",
            *self.system,
            "--dev",
            "/dev",  # git opens /dev/null
            "--ro-bind",
            str(repo.absolute()),
            INSIDE,
            *borrows,
            "--chdir",
            INSIDE,
            "--setenv",
            "HOME",
            "/nonexistent",  # no per-user git files: nothing outside the binds exists
            "--",
            *command,
        ]
