"""Which revisions a user may name where git resolves them for us: a positive shape.

git's revision syntax reaches far past "a commit": `HEAD^{/REGEX}` and `:/REGEX` search
every commit message with a backtracking regex (seconds of CPU and a gigabyte of
memory for one request), `REV:PATH` names blobs, `@{DATE}` reads reflogs, `A..B` is a
range. EnsureRevision and the Go proxy take only a plain revision: a ref name as
`git check-ref-format --allow-onelevel` accepts it (branch and tag names, `refs/...`,
`HEAD`, a full or abbreviated commit id), followed by `~N`, `^N` or `^{commit}`.

`refs/upstream/` is branch status's namespace, never a client's: a revision that
would reach it (`refs/upstream/main`, or `upstream/main`, which git reads as
`refs/upstream/main` first) is refused everywhere a user names one. A branch named
`upstream/x` is still reachable as `refs/heads/upstream/x`.
"""

from __future__ import annotations

import re

from repodepot.exceptions import InvalidInput

MAX_REVISION = 256
"""The longest revision accepted (refs are rarely past 100 characters)."""

# check-ref-format: no control character, space, ~ ^ : ? * [ or \, no "..", no "@{",
# no empty component.
_REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]|\.\.|@\{|//")
# A ref name starting a revision or following a range or operator that would resolve in
# the hidden namespace.
HIDDEN_NAMESPACE = "refs/upstream/"
_HIDDEN = re.compile(r"(?:^|[.^!@{])(?:refs/)?upstream(?:/|$)")
_SUFFIXES = re.compile(r"(?:~[0-9]{0,9}|\^[0-9]{0,9}|\^\{commit\})*")

PLAIN_REVISION = (
    "a commit id, or a branch, tag or ref name, optionally followed by ~N, ^N or "
    f"^{{commit}}, at most {MAX_REVISION} characters, not under refs/upstream/"
)
"""What `is_plain_revision` accepts, for error messages."""


def is_ref_name(name: str) -> bool:
    """Whether `name` is a ref name git accepts, and not one git could read as an option.

    These are `git check-ref-format --allow-onelevel`'s rules, checked here without
    starting git; a leading `-` is refused too, as `--branch` does.
    """
    if not 0 < len(name) <= MAX_REVISION or name == "@":
        return False
    if name.startswith(("-", "/")) or name.endswith(("/", ".")) or _REF_FORBIDDEN.search(name):
        return False
    return not any(part.startswith(".") or part.endswith(".lock") for part in name.split("/"))


def names_hidden(rev: str) -> bool:
    """Whether `rev` could name a ref in the hidden `refs/upstream/` namespace."""
    return _HIDDEN.search(rev) is not None


def is_plain_revision(rev: str) -> bool:
    """Whether `rev` is a ref name or commit id with only `~N`, `^N`, `^{commit}` after it.

    Never one that reaches the hidden namespace (`names_hidden`).
    """
    if len(rev) > MAX_REVISION or names_hidden(rev):
        return False
    cut = min((at for at in (rev.find("~"), rev.find("^")) if at >= 0), default=len(rev))
    return is_ref_name(rev[:cut]) and _SUFFIXES.fullmatch(rev[cut:]) is not None


def check_plain_revision(rev: str) -> str:
    """`rev` when `is_plain_revision`; else InvalidInput naming the field `rev`."""
    if not is_plain_revision(rev):
        shown = rev if len(rev) <= 80 else rev[:80] + "..."
        raise InvalidInput(f"{shown!r} is not {PLAIN_REVISION}", field="rev")
    return rev
