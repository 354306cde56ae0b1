"""Typed reads of a repository's history: the log of a ref and the tags with their dates.

Like `commands`, every function builds its argv here and runs read-only subcommands, so
that with a sandbox they run in it. Fields travel NUL-separated: no name, e-mail or
subject can break the parsing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from repodepot.git.errors import GitCommandError, RevisionNotFound
from repodepot.git.runner import GitRunner
from repodepot.types import Sha

_LOG_FORMAT = "%H%x00%an%x00%ae%x00%cI%x00%s"
_LOG_FIELDS = 5
_TAG_FORMAT = (
    "%(refname:lstrip=2)%00%(objecttype)%00%(objectname)%00%(*objecttype)%00%(*objectname)"
    "%00%(creatordate:iso-strict)%00%(contents:subject)%00"
)
_TAG_FIELDS = 7
# What git says when the revision, or the branch HEAD names, has no commit.
_NO_REVISION = (
    "bad revision",
    "bad object",  # a full commit id the repository lacks
    "unknown revision",
    "does not have any commits",
    "ambiguous",
)


@dataclass(frozen=True, kw_only=True, slots=True)
class LogEntry:
    """One commit of a log: who wrote it, when it was committed, its subject line."""

    sha: Sha
    author_name: str
    author_email: str
    committed_at: datetime
    """The committer date, with its offset (aware)."""
    subject: str
    """The first paragraph of the message on one line, as `%s` prints it."""


@dataclass(frozen=True, kw_only=True, slots=True)
class DatedTag:
    """A tag, the commit it names (peeled through every tag object) and when it was made."""

    name: str
    """Without `refs/tags/`."""
    commit: Sha
    tagged_at: datetime | None
    """The tagger's date for an annotated tag, the commit's date for a lightweight one."""
    subject: str
    """The annotation's first line for an annotated tag, the commit's subject otherwise."""


async def log(runner: GitRunner, repo: Path, ref: str, *, limit: int) -> list[LogEntry]:
    """The newest `limit` commits reachable from `ref`, newest first (`git log`).

    Raises RevisionNotFound when `ref` starts with `-`, names nothing, or names the unborn
    branch of an empty repository; GitCommandError for any other failure of git.
    """
    if ref.startswith("-"):
        raise RevisionNotFound(f"{ref!r} is not a revision")
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    result = await runner.run(
        [
            "log",
            f"--max-count={limit}",
            "-z",
            f"--format={_LOG_FORMAT}",
            "--end-of-options",
            ref,
            "--",
        ],
        git_dir=repo,
        check=False,
    )
    if result.returncode != 0:
        if any(sign in result.stderr for sign in _NO_REVISION):
            raise RevisionNotFound(f"no commit {ref!r} in this repository")
        raise GitCommandError(result.args, result.returncode, result.stderr)
    return parse_log(result.stdout)


def parse_log(output: bytes) -> list[LogEntry]:
    """The commits of `git log -z --format=%H%x00%an%x00%ae%x00%cI%x00%s` output."""
    fields = output.decode(errors="replace").split("\0")
    return [
        LogEntry(
            sha=Sha(sha),
            author_name=name,
            author_email=email,
            committed_at=datetime.fromisoformat(when),
            subject=subject,
        )
        for sha, name, email, when, subject in _records(fields, _LOG_FIELDS)
    ]


async def dated_tags(runner: GitRunner, repo: Path) -> list[DatedTag]:
    """Every tag that names a commit, newest first (ties by name); raises GitCommandError.

    Tags of trees or blobs are left out. A tag of a tag is followed to its commit (one
    `cat-file` for all of them: `%(*objectname)` peels one level only).
    """
    result = await runner.run(
        [
            "for-each-ref",
            "--sort=refname",
            "--sort=-creatordate",  # the last key sorts first
            f"--format={_TAG_FORMAT}",
            "refs/tags/",
        ],
        git_dir=repo,
    )
    rows = _records(result.stdout.decode(errors="replace").split("\0"), _TAG_FIELDS)
    nested = [row[0] for row in rows if row[3] == "tag"]
    peeled = await _peel_to_commits(runner, repo, nested) if nested else {}
    tags = []
    for name, kind, sha, inner_kind, inner_sha, when, subject in rows:
        if kind == "commit":
            commit: str | None = sha
        elif inner_kind == "commit":
            commit = inner_sha
        else:
            commit = peeled.get(name)
        if commit is None:
            continue
        tagged_at = datetime.fromisoformat(when) if when else None
        tags.append(DatedTag(name=name, commit=Sha(commit), tagged_at=tagged_at, subject=subject))
    return tags


async def _peel_to_commits(runner: GitRunner, repo: Path, names: list[str]) -> dict[str, str]:
    """The commit each tag in `names` ends at; a tag ending elsewhere is left out."""
    asked = "".join(f"refs/tags/{name}^{{commit}}\n" for name in names).encode()
    result = await runner.run(
        ["cat-file", "--batch-check=%(objectname) %(objecttype)"],
        git_dir=repo,
        stdin=asked,
    )
    peeled = {}
    for name, line in zip(names, result.stdout.decode().splitlines(), strict=True):
        sha, _, kind = line.partition(" ")
        if kind == "commit":
            peeled[name] = sha
    return peeled


def _records(fields: list[str], width: int) -> list[tuple[str, ...]]:
    """NUL-terminated fields, `width` to a record; for-each-ref adds a newline between."""
    if fields and not fields[-1].strip("\n"):
        fields = fields[:-1]
    if len(fields) % width:
        raise ValueError(f"{len(fields)} fields do not make records of {width}")
    records = []
    for start in range(0, len(fields), width):
        record = fields[start : start + width]
        record[0] = record[0].removeprefix("\n")
        records.append(tuple(record))
    return records
