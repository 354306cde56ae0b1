"""Import failures, and git's stderr turned into words a person understands."""

from __future__ import annotations

from repodepot.exceptions import AlreadyExists, TooManyRequests
from repodepot.git.errors import GitCommandError, GitError


class QueueFull(TooManyRequests):
    """Too many imports are waiting; try again shortly."""

    code = "queue_full"

    @classmethod
    def waiting(cls, waiting: int, *, retry_after: int) -> QueueFull:
        """The whole queue is full: `waiting` imports wait."""
        return cls(
            f"{waiting} imports are already waiting; try again in {retry_after} s",
            retry_after=retry_after,
        )


class QuotaFull(QueueFull):
    """The member has as many imports pending or running as one member may have."""

    code = "import_quota"

    @classmethod
    def of(cls, quota: int, *, retry_after: int) -> QuotaFull:
        """The member already has `quota` imports pending or running."""
        return cls(
            f"you already have {quota} imports pending or running, the most one member may "
            "have (import_queue_per_user); wait for one to finish or cancel one",
            retry_after=retry_after,
        )


class JobFinished(AlreadyExists):
    """The import has already finished."""

    code = "job_finished"


# (substring of git's stderr, what to tell the person), first match wins.
_EXPLANATIONS = (
    ("No space left on device", "The server ran out of disk space during the import."),
    (
        "Authentication failed",
        "The source refused the credentials: check the token and that it may read this repository.",
    ),
    ("could not read Username", "The source requires credentials: give a token with the import."),
    (
        "The requested URL returned error: 403",
        "The source refused access (HTTP 403): check the token's permissions.",
    ),
    (
        "The requested URL returned error: 404",
        "The repository was not found at this URL (or the token cannot see it).",
    ),
    ("not found", "The repository was not found at this URL (or the token cannot see it)."),
    ("does not appear to be a git repository", "The URL does not point to a git repository."),
    (
        "corruption on the remote side",
        "The source repository is corrupt (its own server says so): it cannot be imported "
        "until it is repaired there.",
    ),
    ("Could not resolve host", "The source host name could not be resolved."),
    ("Failed to connect", "Could not connect to the source host."),
    ("Connection refused", "Could not connect to the source host."),
    ("early EOF", "The connection to the source was lost during the transfer."),
    ("unexpected disconnect", "The connection to the source was lost during the transfer."),
    ("remote end hung up", "The connection to the source was lost during the transfer."),
    ("transfer closed", "The connection to the source was lost during the transfer."),
    ("RPC failed", "The connection to the source was lost during the transfer."),
    ("Connection reset", "The connection to the source was lost during the transfer."),
    (
        "returned error: 30",  # http.followRedirects=false: curl reports the 30x itself
        "The source answered with a redirect, which imports do not follow: use the "
        "repository's final URL.",
    ),
    (
        "redirect",
        "The source answered with a redirect, which imports do not follow: use the "
        "repository's final URL.",
    ),
)


def explain(error: GitError) -> str:
    """A sentence for the job page, from a git failure (already redacted)."""
    text = error.stderr if isinstance(error, GitCommandError) else error.message
    for needle, sentence in _EXPLANATIONS:
        if needle in text:
            return sentence
    if error.message.startswith("git clone failed"):
        return error.message  # already says what failed
    return f"git clone failed: {error.message}"
