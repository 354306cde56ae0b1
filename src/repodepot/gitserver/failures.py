"""Why a clone or fetch failed, as a kind people and alerts can act on."""

from __future__ import annotations

from enum import StrEnum

from repodepot.git.errors import GitCommandError, GitError, GitNotInstalled, GitTimeout


class FailureKind(StrEnum):
    """The kinds of update failure."""

    auth = "auth"
    not_found = "not_found"
    network = "network"
    timeout = "timeout"
    corrupt = "corrupt"
    disk_full = "disk_full"
    other = "other"


# (substring of git's stderr, kind), first match wins.
_SIGNS = (
    ("No space left on device", FailureKind.disk_full),
    ("Authentication failed", FailureKind.auth),
    ("could not read Username", FailureKind.auth),
    ("could not read Password", FailureKind.auth),
    ("returned error: 401", FailureKind.auth),
    ("returned error: 403", FailureKind.auth),
    ("returned error: 404", FailureKind.not_found),
    ("not found", FailureKind.not_found),
    ("does not appear to be a git repository", FailureKind.not_found),
    ("bad object", FailureKind.corrupt),
    ("bad tree object", FailureKind.corrupt),
    ("unresolved deltas left after unpacking", FailureKind.corrupt),
    ("unpack-objects failed", FailureKind.corrupt),
    ("corrupt", FailureKind.corrupt),
    ("unable to read", FailureKind.corrupt),
    ("loose object", FailureKind.corrupt),
    ("did not send all necessary objects", FailureKind.corrupt),
    ("not a git repository", FailureKind.corrupt),
    ("Could not resolve host", FailureKind.network),
    ("Failed to connect", FailureKind.network),
    ("Connection refused", FailureKind.network),
    ("Connection reset", FailureKind.network),
    ("early EOF", FailureKind.network),
    ("unexpected disconnect", FailureKind.network),
    ("remote end hung up", FailureKind.network),
    ("transfer closed", FailureKind.network),
    ("Empty reply from server", FailureKind.network),  # curl: the connection closed unanswered
    ("RPC failed", FailureKind.network),
    ("returned error: 5", FailureKind.network),
)


def classify(error: GitError) -> FailureKind:
    """The kind of a git failure (its text is already redacted)."""
    if isinstance(error, GitTimeout):
        return FailureKind.timeout
    if isinstance(error, GitNotInstalled):
        return FailureKind.other  # not the repository's fault, whatever its words say
    text = error.stderr if isinstance(error, GitCommandError) else error.message
    for needle, kind in _SIGNS:
        if needle in text:
            return kind
    return FailureKind.other


def message(error: GitError) -> str:
    """Git's last `fatal:`/`error:` lines (redacted), or the error's message."""
    text = error.stderr if isinstance(error, GitCommandError) else ""
    lines = [
        line.strip()
        for line in text.replace("\r", "\n").splitlines()
        if line.strip().removeprefix("remote:").strip().startswith(("fatal:", "error:"))
    ]
    return "\n".join(lines[-3:]) or error.message


def credential_advice(name: str, *, credential_of: str | None) -> str:
    """What to do after the host refused a fetch of `name` for want of a good credential.

    `credential_of`: whose credential was sent, the repository's own, its code host
    connection's, or None.
    """
    how = (
        f"`repodepot repos credential set {name}` (the token on stdin) or "
        f"PUT /api/repos/{name}/credential, as its owner or an admin"
    )
    if credential_of == "connection":
        return (
            "credential rejected: the host refused its code host connection's token; an "
            "admin replaces it in the connection (PATCH /api/codehosts/{id}), or sets this "
            f"repository's own with {how}"
        )
    if credential_of is not None:
        return f"credential rejected: the host refused the stored credential; replace it with {how}"
    return f"credential needed: the host asks for one and none is stored; set one with {how}"
