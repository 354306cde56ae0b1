"""Typed git failures. Every text in them has been through `redact`."""

from __future__ import annotations

from collections.abc import Sequence

from repodepot.exceptions import RepodepotError


class GitError(RepodepotError):
    """A git operation failed."""

    code = "git_error"


class GitNotInstalled(GitError):
    """The git binary could not be started."""

    code = "git_not_installed"


class GitCommandNotAllowed(GitError):
    """Running this git command is not allowed."""

    code = "git_command_not_allowed"


class GitCommandError(GitError):
    """A git command exited with an error."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str) -> None:
        self.args_ = list(args)
        self.returncode = returncode
        self.stderr = stderr
        detail = _last_fatal(stderr)
        super().__init__(f"git {args[0]} failed (exit {returncode}): {detail}")


class GitTimeout(GitError):
    """A git command ran out of time and was killed."""

    code = "git_timeout"

    def __init__(self, args: Sequence[str], seconds: float) -> None:
        self.args_ = list(args)
        self.seconds = seconds
        super().__init__(f"git {args[0]} was killed after {seconds:g} s")


class GitOutputTooLarge(GitError):
    """A git command wrote more than the output cap."""

    code = "git_output_too_large"


class RevisionNotFound(GitError):
    """The revision does not exist in the repository."""

    code = "revision_not_found"


def _last_fatal(stderr: str) -> str:
    lines = [line.strip() for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(("fatal:", "error:")):
            return line
    return lines[-1] if lines else "no message"
