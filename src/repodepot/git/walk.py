"""A repository page's two answers read in-process: HEAD's newest commits and the dated tags.

Each is exactly what `git.history` gets from git (`log`, `dated_tags`), built from the
mirror's files through `packs.ObjectStore` and `diskrefs`, so a page's first view of a
mirror starts no sandboxed process. None means "ask git", never "nothing": it is the
answer for a repository git reads otherwise (shallow, grafts, replace refs, reftable,
alternates), any object this reader cannot read or parse strictly, a commit whose message
git would re-encode, a tag without a tagger, and anything past the bounds (bodies over
BODY_BYTES, more than MAX_TAGS tags). Pure but for reading the repository's files.
"""

from __future__ import annotations

import bisect
import functools
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from repodepot.git import diskrefs
from repodepot.git.history import DatedTag, LogEntry
from repodepot.git.packs import MAX_PEEL, Objects, ObjectStore
from repodepot.types import Sha

BODY_BYTES = 1 << 20
"""Objects read in-process up to this size (as `gitserver.catfile.IN_PROCESS_BYTES`)."""
MAX_TAGS = 1_000
"""More tags than this are left to git: reading them would hold the event loop too long."""

_TREE = re.compile(rb"tree [0-9a-f]{40}")
_PARENT = re.compile(rb"parent ([0-9a-f]{40})")
# `NAME <EMAIL> SECONDS ±HHMM` as git writes it; anything looser is git's to interpret.
_IDENT = re.compile(
    rb"(?P<name>[^<>\n]*[^<>\s]|) ?<(?P<email>[^<>\n]*)> (?P<when>\d+) (?P<tz>[+-]\d{4})"
)
_TAG_OBJECT = re.compile(rb"object ([0-9a-f]{40})\ntype (commit|tree|blob|tag)\n")
_UTF8 = (b"utf-8", b"utf8")
# git's isspace: no vertical tab or form feed.
_SPACE = b" \t\n\r"
# Lines that start a signature git strips from a tag's or commit's contents (gpg-interface.c).
_SIGNATURES = (
    b"-----BEGIN PGP SIGNATURE-----",
    b"-----BEGIN PGP MESSAGE-----",
    b"-----BEGIN SIGNED MESSAGE-----",
    b"-----BEGIN SSH SIGNATURE-----",
)


@dataclass(frozen=True, slots=True)
class _Ident:
    name: bytes
    email: bytes
    when: datetime
    seconds: int


@dataclass(frozen=True, slots=True)
class _Commit:
    sha: str
    parents: tuple[str, ...]
    author: _Ident
    committer: _Ident
    message: bytes
    body: bytes


def log_head(store: ObjectStore, repo: Path, limit: int) -> list[LogEntry] | None:
    """What `history.log(runner, repo, "HEAD", limit=limit)` answers, or None: ask git."""
    objects = _plain(store, repo)
    start = diskrefs.head(os.fspath(repo)) if objects is not None else None
    if objects is None or start is None:
        return None
    first = _read_commit(objects, start)
    if first is None or _reencoded(first):
        return None
    return _walk(objects, first, limit)


def dated_tags(store: ObjectStore, repo: Path) -> list[DatedTag] | None:
    """What `history.dated_tags(runner, repo)` answers, or None: ask git."""
    root = os.fspath(repo)
    objects = _plain(store, repo)
    if objects is None:
        return None
    try:
        refs = diskrefs.listed(root, "refs/tags/", most=MAX_TAGS)
    except (OSError, diskrefs.Unreadable):
        return None
    dated: list[tuple[int, bytes, DatedTag]] = []
    for name, sha in refs:
        found = _dated_tag(objects, name, sha)
        if found is None:
            return None
        if found is not _LEFT_OUT:
            dated.append((-found[0], name, found[1]))
    dated.sort(key=lambda row: row[:2])  # newest first, then by full ref name, as bytes
    return [tag for _, _, tag in dated]


def _plain(store: ObjectStore, repo: Path) -> Objects | None:
    """The repository's objects if git walks its history from them alone, as this does."""
    if any(os.path.lexists(f"{repo}/{name}") for name in ("shallow", "info/grafts")):
        return None
    return store.snapshot(repo)


def _walk(objects: Objects, first: _Commit, limit: int) -> list[LogEntry] | None:
    """The order of git log by default: pop the newest, queue its unseen parents by committer date.

    The queue is git's `commit_list_insert_by_date`: a parent goes after every queued
    commit at least as new, so ties keep the order they were queued in. Like git, the
    parents of every commit shown are read, the last one's included.
    """
    queue = [first]
    seen = {first.sha}
    entries: list[LogEntry] = []
    while queue and len(entries) < limit:
        commit = queue.pop(0)
        entries.append(_entry(commit))
        for parent in commit.parents:
            if parent in seen:
                continue
            seen.add(parent)
            read = _read_commit(objects, parent)
            if read is None or _reencoded(read):
                return None
            bisect.insort(queue, read, key=lambda queued: -queued.committer.seconds)
    return entries


def _entry(commit: _Commit) -> LogEntry:
    return LogEntry(
        sha=Sha(commit.sha),
        author_name=commit.author.name.decode(errors="replace"),
        author_email=commit.author.email.decode(errors="replace"),
        committed_at=commit.committer.when,
        subject=_log_subject(commit.message).decode(errors="replace"),
    )


_LEFT_OUT: tuple[int, DatedTag] = (0, DatedTag(name="", commit=Sha(""), tagged_at=None, subject=""))
"""A tag of a tree or blob, which `history.dated_tags` leaves out."""


def _dated_tag(objects: Objects, ref: bytes, sha: str) -> tuple[int, DatedTag] | None:
    """(seconds, the tag) for ref `ref` at `sha`; _LEFT_OUT past a tree or blob; None: ask git."""
    found = objects.read(sha, BODY_BYTES)
    if found is None:
        return None
    kind, body = found
    if kind in ("tree", "blob"):
        return _LEFT_OUT
    if b"\0" in body:
        return None  # where git's C strings end
    name = ref.removeprefix(b"refs/tags/").decode(errors="replace")
    subject = _contents_subject(body).decode(errors="replace")
    if kind == "commit":
        commit = _parse_commit(sha, body)
        if commit is None:
            return None
        date = commit.committer
        return date.seconds, DatedTag(
            name=name, commit=Sha(sha), tagged_at=date.when, subject=subject
        )
    tagger = _tagger(body)
    peeled = _peel(objects, body)
    if tagger is None or peeled is None:
        return None
    if not peeled:
        return _LEFT_OUT
    tag = DatedTag(name=name, commit=Sha(peeled), tagged_at=tagger.when, subject=subject)
    return tagger.seconds, tag


def _peel(objects: Objects, body: bytes) -> str | None:
    """The commit a tag object ends at, "" when it ends at a tree or blob; None: ask git.

    The commit itself is not read: its id is all a dated tag needs.
    """
    for _ in range(MAX_PEEL):
        head = _TAG_OBJECT.match(body)
        if head is None:
            return None
        target, kind = head[1].decode(), head[2]
        if kind == b"commit":
            return target
        if kind != b"tag":
            return ""
        found = objects.read(target, BODY_BYTES)
        if found is None or found[0] != "tag":
            return None
        body = found[1]
    return None


def _tagger(body: bytes) -> _Ident | None:
    headers = body.split(b"\n\n", 1)[0]
    for line in headers.split(b"\n"):
        if line.startswith(b"tagger "):
            return _ident(line[len(b"tagger ") :])
    return None


def _read_commit(objects: Objects, sha: str) -> _Commit | None:
    found = objects.read(sha, BODY_BYTES)
    if found is None or found[0] != "commit":
        return None
    return _parse_commit(sha, found[1])


def _parse_commit(sha: str, body: bytes) -> _Commit | None:
    """A commit laid out as git writes it (tree, parents, author, committer first), or None.

    git reads a commit's date for ordering only from a committer line right after the
    author line; any other layout, or a NUL (where git's C strings end), is git's.
    """
    if b"\0" in body:
        return None
    headers, _, message = body.partition(b"\n\n")
    lines = headers.split(b"\n")
    if not _TREE.fullmatch(lines[0]):
        return None
    at = 1
    parents: list[str] = []
    while at < len(lines) and (parent := _PARENT.fullmatch(lines[at])):
        parents.append(parent[1].decode())
        at += 1
    people = lines[at : at + 2]
    if len(people) != 2 or not people[0].startswith(b"author "):
        return None
    if not people[1].startswith(b"committer "):
        return None
    author = _ident(people[0][len(b"author ") :])
    committer = _ident(people[1][len(b"committer ") :])
    if author is None or committer is None:
        return None
    return _Commit(sha, tuple(parents), author, committer, message, body)


def _reencoded(commit: _Commit) -> bool:
    """Whether git log would re-encode this commit's message (an `encoding` other than UTF-8)."""
    headers = commit.body.split(b"\n\n", 1)[0]
    for line in headers.split(b"\n"):
        if line.startswith(b"encoding "):
            return line[len(b"encoding ") :].lower() not in _UTF8
    return False


def _ident(value: bytes) -> _Ident | None:
    found = _IDENT.fullmatch(value)
    if found is None:
        return None
    seconds = int(found["when"])
    try:
        when = datetime.fromtimestamp(seconds, _zone(found["tz"]))
    except (ValueError, OverflowError, OSError):
        return None
    return _Ident(found["name"], found["email"], when, seconds)


@functools.lru_cache(maxsize=64)
def _zone(tz: bytes) -> timezone:
    """`+0200` as a time zone; ValueError for what `datetime` cannot hold (git prints it)."""
    hours, minutes = int(tz[1:3]), int(tz[3:5])
    if minutes >= 60:
        raise ValueError(f"{tz!r} is not an offset")  # git would print `+00:75`
    offset = timedelta(hours=hours, minutes=minutes)
    return timezone(-offset if tz[:1] == b"-" else offset)


def _log_subject(message: bytes) -> bytes:
    """The `%s` of git log: blank lines skipped, then the first paragraph on one line.

    A line is blank when only spaces are left; each line loses its trailing spaces
    (CR included) and keeps its leading ones (pretty.c: `format_subject`).
    """
    kept: list[bytes] = []
    for line in message.split(b"\n"):
        line = line.rstrip(_SPACE)
        if line:
            kept.append(line)
        elif kept:
            break
    return b" ".join(kept)


def _contents_subject(body: bytes) -> bytes:
    """The `%(contents:subject)` of for-each-ref for an object's `body` (ref-filter.c).

    Not `%s` (`find_subpos`): the message starts after the empty lines that follow the
    headers; the subject runs to the first empty line (LF LF, else CR LF CR LF) or the
    signature, whichever is first; a CR before a LF goes and each LF becomes a space.
    """
    at = 0
    while at < len(body) and body[at] != ord("\n"):  # the headers
        end = body.find(b"\n", at)
        at = len(body) if end < 0 else end + 1
    while at < len(body) and body[at] == ord("\n"):
        at += 1
    message = body[at:]
    signed = _signature_start(message)
    end = message.find(b"\n\n")
    if end < 0:
        end = message.find(b"\r\n\r\n")
    subject = message[: min(end, signed) if end >= 0 else signed].rstrip(b"\r\n")
    return subject.replace(b"\r\n", b"\n").replace(b"\n", b" ")


def _signature_start(message: bytes) -> int:
    """Where the last line that opens a signature starts, or the end (`parse_signed_buffer`)."""
    start = len(message)
    at = 0
    while at < len(message):
        if message.startswith(_SIGNATURES, at):
            start = at
        end = message.find(b"\n", at)
        at = len(message) if end < 0 else end + 1
    return start
