"""Typed git operations on top of the runner. Callers never build argv themselves.

One function per git operation the code runs; each says what it returns and raises.
Every runner error can come out of any of them: GitNotInstalled, GitTimeout (the
process group killed), and GitCommandNotAllowed for a subcommand outside the runner's
allowlist. Reads of a mirror run in the runner's sandbox when there is one (the runner
decides from the subcommand). `tests/unit/test_git_layer.py` fails when a module
outside `repodepot.git` hands the runner an argv of its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from repodepot.git import diskrefs
from repodepot.git.errors import RevisionNotFound
from repodepot.git.runner import Credentials, GitRunner, StderrSink
from repodepot.types import Sha

if TYPE_CHECKING:
    import subprocess  # noqa: TID251 - a type only: the runner starts the process

_SHA = re.compile(r"[0-9a-f]{40}")


async def clone_bare(
    runner: GitRunner,
    url: str,
    dest: Path,
    *,
    credentials: Credentials | None = None,
    on_progress: StderrSink | None = None,
    mirror: bool = False,
    timeout: float | None = None,
    config: Sequence[tuple[str, str]] = (),
    node_secret: str | None = None,
) -> None:
    """Clone `url` into the new bare repository `dest` (HEAD follows the remote's default).

    `config` reaches git through the environment (the outbound pins among it);
    `node_secret` authenticates a clone from another storage node's internal URL.
    Raises GitCommandError (with credentials redacted) when the clone fails.
    """
    mode = "--mirror" if mirror else "--bare"
    await runner.run(
        ["clone", mode, "--progress", "--", url, str(dest)],
        credentials=credentials,
        on_stderr=on_progress,
        timeout=timeout,
        config=config,
        node_secret=node_secret,
    )


async def fetch(
    runner: GitRunner,
    repo: Path,
    url: str,
    refspecs: Sequence[str],
    *,
    credentials: Credentials | None = None,
    on_progress: StderrSink | None = None,
    timeout: float | None = None,
    config: Sequence[tuple[str, str]] = (),
    trace2: Path | None = None,
    local_source: bool = False,
    follow_tags: bool = True,
    node_secret: str | None = None,
) -> None:
    """Fetch `refspecs` from `url` into `repo`, pruned and atomic: every ref moves or none.

    `follow_tags=False` brings no tag the refspecs do not name (`--no-tags`).

    `config` reaches git through the environment (the outbound pins among it); `trace2`
    is a file for git's trace2 events (`GIT_TRACE2_EVENT`); `local_source` lets `url` be
    the path of another mirror on this node; `node_secret` authenticates a fetch from
    another storage node's internal URL. Raises GitCommandError (with credentials
    redacted) when the fetch fails.
    """
    await runner.run(
        [
            "fetch",
            "--prune",
            "--atomic",
            "--progress",
            "--no-write-fetch-head",
            *([] if follow_tags else ["--no-tags"]),
            "--",
            url,
            *refspecs,
        ],
        git_dir=repo,
        credentials=credentials,
        on_stderr=on_progress,
        timeout=timeout,
        config=config,
        trace2=trace2,
        local_source=local_source,
        node_secret=node_secret,
    )


async def init_bare(runner: GitRunner, dest: Path, *, alternate: Path | None = None) -> None:
    """A new empty bare repository at `dest`, borrowing `alternate`'s objects if given.

    `alternate` is another repository's git dir: its objects are read as if they were
    `dest`'s own (`objects/info/alternates`), so a fetch stores only what is new to both.
    Raises GitCommandError.
    """
    await runner.run(["init", "--quiet", "--bare", "--", str(dest)], cwd=dest.parent)
    if alternate is not None:
        (dest / "objects" / "info" / "alternates").write_text(f"{alternate / 'objects'}\n")


async def rev_parse(runner: GitRunner, repo: Path, rev: str) -> Sha:
    """The commit `rev` names in `repo`; raises RevisionNotFound."""
    if rev.startswith("-"):
        raise RevisionNotFound(f"{rev!r} is not a revision")
    result = await runner.run(
        ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{rev}^{{commit}}"],
        git_dir=repo,
        check=False,
    )
    sha = result.stdout.decode().strip()
    if result.returncode != 0 or not _SHA.fullmatch(sha):
        raise RevisionNotFound(f"no commit {rev!r} in this repository")
    return Sha(sha)


async def head_branch(runner: GitRunner, repo: Path) -> str | None:
    """The branch HEAD points to (`main`), or None when HEAD is detached."""
    result = await runner.run(
        ["symbolic-ref", "--quiet", "--short", "HEAD"], git_dir=repo, check=False
    )
    name = result.stdout.decode().strip()
    return name if result.returncode == 0 and name else None


async def is_empty(runner: GitRunner, repo: Path) -> bool:
    """Whether `repo` has no refs at all."""
    result = await runner.run(["for-each-ref", "--count=1", "--format=%(refname)"], git_dir=repo)
    return not result.stdout.strip()


async def refs_digest(runner: GitRunner, repo: Path) -> str:
    """A digest of every ref and the object it points to: equal digests, equal refs.

    The sha256 of `for-each-ref --format='%(objectname) %(refname)'`'s output, built from
    the ref files when they can be read in-process (the same bytes), else from git's:
    digests stored by either way compare equal.
    """
    listed = _refs_from_files(repo, "refs/")
    if listed is not None:
        output = b"".join(b"%s %s\n" % (sha.encode(), name) for name, sha in listed)
        return hashlib.sha256(output).hexdigest()
    result = await runner.run(["for-each-ref", "--format=%(objectname) %(refname)"], git_dir=repo)
    return hashlib.sha256(result.stdout).hexdigest()


def _refs_from_files(repo: Path, prefix: str) -> list[tuple[bytes, str]] | None:
    """The refs under `prefix` as for-each-ref lists them, read from the files; None: ask git.

    Outside the runner's sandbox, so `diskrefs` reads only plain files, never through a
    symlink, and bounded; cheap enough for the event loop (no process started).
    """
    try:
        return diskrefs.listed(os.fspath(repo), prefix)
    except (OSError, diskrefs.Unreadable):
        return None


async def is_connected(runner: GitRunner, repo: Path) -> bool:
    """Whether every ref's history is present (`fsck --connectivity-only`)."""
    result = await runner.run(
        ["fsck", "--connectivity-only", "--no-progress"], git_dir=repo, check=False
    )
    return result.returncode == 0


async def maintain(runner: GitRunner, repo: Path) -> None:
    """Pack loose objects, repack incrementally, write the commit-graph with Bloom filters.

    Raises GitCommandError when a step fails.
    """
    await runner.run(
        ["maintenance", "run", "--task=loose-objects", "--task=incremental-repack", "--quiet"],
        git_dir=repo,
    )
    await write_commit_graph(runner, repo)


async def write_commit_graph(runner: GitRunner, repo: Path) -> None:
    """Add the commits new since the last write to the commit-graph, as a new layer.

    Generation numbers and Bloom filters; git merges small layers as the chain grows.
    Cheap after a fetch: only the new commits are written. Raises GitCommandError.
    """
    await runner.run(
        ["commit-graph", "write", "--reachable", "--split", "--changed-paths", "--no-progress"],
        git_dir=repo,
    )


# Reading trees and refs -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class TreeEntry:
    """One line of `git ls-tree -l`: mode, type, object id, size and full path."""

    mode: str
    kind: str
    """`blob`, `tree` or `commit` (a submodule)."""
    sha: str
    size: int | None
    """The blob's size; None for a tree or a submodule (git prints `-`)."""
    path: str
    """Relative to the repository's root, undecodable bytes kept as surrogates."""


class Tag(NamedTuple):
    """A tag: its name without `refs/tags/` and the commit it points to, peeled."""

    name: str
    commit: str


async def ls_tree_names(runner: GitRunner, repo: Path, rev: str) -> list[str]:
    """The path of every file in the tree of `rev`, recursively (`ls-tree -r --name-only`).

    Empty when `rev` names no tree (the HEAD of an empty repository).
    """
    result = await runner.run(
        ["ls-tree", "-r", "-z", "--name-only", "--full-tree", rev], git_dir=repo, check=False
    )
    return [name for name in result.stdout.decode(errors="replace").split("\0") if name]


async def ls_tree_entries(runner: GitRunner, repo: Path, commit: str, path: str) -> list[TreeEntry]:
    """Every entry under `path` ("" for all) in the tree of `commit`, recursively, with sizes.

    Raises GitCommandError when `commit` is not in `repo`.
    """
    listing = await runner.run(
        ["ls-tree", "-r", "-l", "-z", "--full-tree", commit, "--", path or "."], git_dir=repo
    )
    return parse_ls_tree(listing.stdout)


def parse_ls_tree(output: bytes) -> list[TreeEntry]:
    """The entries of `git ls-tree -l -z` output."""
    entries = []
    for record in output.split(b"\0"):
        if not record:
            continue
        meta, _, raw_path = record.partition(b"\t")
        mode, kind, sha, size = meta.split()
        entries.append(
            TreeEntry(
                mode=mode.decode(),
                kind=kind.decode(),
                sha=sha.decode(),
                size=None if size == b"-" else int(size),
                path=raw_path.decode("utf-8", errors="surrogateescape"),
            )
        )
    return entries


async def tag_names(runner: GitRunner, repo: Path) -> list[str]:
    """The name of every tag, without `refs/tags/`, in ref order; raises GitCommandError.

    Read from the ref files when they can be (see `refs_digest`), else asked of git;
    the same lines either way.
    """
    listed = _refs_from_files(repo, "refs/tags/")
    if listed is not None:
        output = b"".join(name.removeprefix(b"refs/tags/") + b"\n" for name, _ in listed)
    else:
        result = await runner.run(
            ["for-each-ref", "--format=%(refname:lstrip=2)", "refs/tags/"], git_dir=repo
        )
        output = result.stdout
    return output.decode(errors="replace").splitlines()


async def tags(
    runner: GitRunner, repo: Path, *, points_at: str | None = None, merged: str | None = None
) -> list[Tag]:
    """Every tag with the commit it points to, in ref order; raises GitCommandError.

    Only the tags pointing at the commit `points_at`, or reachable from `merged`, if given.
    """
    filters = []
    if points_at is not None:
        filters.append(f"--points-at={points_at}")
    if merged is not None:
        filters.append(f"--merged={merged}")
    result = await runner.run(
        [
            "for-each-ref",
            "--format=%(refname:lstrip=2)%00%(objectname)%00%(*objectname)",
            *filters,
            "refs/tags/",
        ],
        git_dir=repo,
    )
    listed = []
    for line in result.stdout.decode(errors="replace").splitlines():
        name, sha, peeled = line.split("\0")
        listed.append(Tag(name, peeled or sha))
    return listed


async def is_ancestor(runner: GitRunner, repo: Path, ancestor: str, commit: str) -> bool:
    """Whether `ancestor` is `commit` or in its history; False when either is unknown."""
    result = await runner.run(
        ["merge-base", "--is-ancestor", ancestor, commit], git_dir=repo, check=False
    )
    return result.returncode == 0


# Object readers -----------------------------------------------------------------------------


async def cat_file_batch(runner: GitRunner, repo: Path) -> asyncio.subprocess.Process:
    """A started `git cat-file --batch` in `repo`, piped, for long-lived object reads.

    Ask it over stdin, end it with `GitRunner.stop()`.
    """
    return await runner.start(["cat-file", "--batch"], git_dir=repo)


def cat_file_batch_blocking(runner: GitRunner, repo: Path) -> subprocess.Popen[bytes]:
    """A started `git cat-file --batch` in `repo` for code in a worker thread (blocking pipes).

    It dies with us; end it with `GitRunner.kill_group()`.
    """
    return runner.popen(["cat-file", "--batch"], git_dir=repo)


# Streamed commands ----------------------------------------------------------------------------


def upload_pack_advertise(
    runner: GitRunner, repo: Path, *, protocol: str | None
) -> AsyncGenerator[bytes, None]:
    """`git upload-pack --advertise-refs` for smart HTTP: the ref advertisement, streamed.

    `protocol` is the client's `Git-Protocol` header. Git starts on the first read; a
    failure raises GitCommandError once its output is read.
    """
    return runner.stream(
        ["upload-pack", "--strict", "--stateless-rpc", "--advertise-refs", "."],
        git_dir=repo,
        protocol=protocol,
    )


def upload_pack(
    runner: GitRunner, repo: Path, request: AsyncIterator[bytes], *, protocol: str | None
) -> AsyncGenerator[bytes, None]:
    """`git upload-pack --stateless-rpc` fed `request` (a client's negotiation): its answer.

    The pack is streamed as git writes it. A request git refuses raises GitCommandError
    once its output (usually none) is read.
    """
    return runner.stream(
        ["upload-pack", "--strict", "--stateless-rpc", "."],
        git_dir=repo,
        stdin=request,
        protocol=protocol,
    )


def exec_checked(
    runner: GitRunner, repo: Path, checked: Sequence[str], *, timeout: float, max_memory: int
) -> AsyncGenerator[bytes, None]:
    """The output of `git CHECKED...` in `repo`, streamed, its heap capped at `max_memory`.

    `checked` must come from `gitserver.allowlist.check_exec`: the one argv this layer
    does not build, checked option by option before it gets here. A non-zero exit raises
    GitCommandError after the output.
    """
    return runner.stream(
        checked,
        git_dir=repo,
        timeout=timeout,
        max_memory=max_memory,
        # `log --decorate` names no ref of branch status's hidden namespace.
        config=(("log.excludeDecoration", "refs/upstream/*"),),
    )


# Branches and ahead/behind ------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class RefHead:
    """A ref and its commit: sha, committer time, author and subject."""

    ref: str
    """The full name (`refs/heads/main`)."""
    sha: Sha
    committed_at: datetime
    author_name: str
    subject: str


async def ref_heads(runner: GitRunner, repo: Path, *prefixes: str) -> list[RefHead]:
    """Every ref under `prefixes` (`refs/heads/`) with its commit, by name.

    Refs that point at something other than a commit are left out. Raises GitCommandError.
    """
    result = await runner.run(
        [
            "for-each-ref",
            "--format=%(refname)%00%(objectname)%00%(objecttype)%00%(committerdate:unix)"
            "%00%(authorname)%00%(contents:subject)",
            "--",
            *prefixes,
        ],
        git_dir=repo,
    )
    heads = []
    for line in result.stdout.decode(errors="replace").splitlines():
        ref, sha, kind, when, author, subject = line.split("\0")
        if kind != "commit":
            continue
        heads.append(
            RefHead(
                ref=ref,
                sha=Sha(sha),
                committed_at=datetime.fromtimestamp(int(when or 0), UTC),
                author_name=author,
                subject=subject,
            )
        )
    return heads


class AheadBehind(NamedTuple):
    """Commits on a branch not on its base (`ahead`), and on the base not on it (`behind`)."""

    ahead: int
    behind: int


_TRACK = re.compile(r"\[(?:ahead (\d+))?(?:, )?(?:behind (\d+))?\]")


@dataclass(frozen=True, slots=True)
class Tracked:
    """What one `track` walk found: each branch's counts, and every ref's commit as seen."""

    counts: dict[str, AheadBehind | None]
    seen: dict[str, Sha]
    """The commit of each branch and base when git counted: the counts are for these."""


async def track_counts(
    runner: GitRunner, repo: Path, pairs: Sequence[tuple[str, str]]
) -> dict[str, AheadBehind | None]:
    """Ahead/behind of each branch against its base (`track`'s counts)."""
    return (await track(runner, repo, pairs)).counts


async def track(runner: GitRunner, repo: Path, pairs: Sequence[tuple[str, str]]) -> Tracked:
    """Ahead/behind of each branch against its base, in one `for-each-ref` walk.

    `pairs` are (`refs/heads/X`, base ref): each branch is given its base as upstream
    for this command only (`branch.X.remote=.`, `branch.X.merge=BASE`, through the
    environment, no file written), and `%(upstream:track)` counts both sides with the
    commit-graph's generation numbers. The same run lists the bases, so the commits the
    counts are for come with them (`Tracked.seen`). Where git used another upstream than
    the one given (the repository's own config wins; a branch named `HEAD`), that pair
    is counted alone with `rev-list`, between the commits seen. A branch whose base is
    missing is None; one whose ref is missing is left out. Raises GitCommandError.
    """
    if not pairs:
        return Tracked({}, {})
    config: list[tuple[str, str]] = []
    for ref, base in pairs:
        branch = ref.removeprefix("refs/heads/")
        config += [(f"branch.{branch}.remote", "."), (f"branch.{branch}.merge", base)]
    bases = dict(pairs)
    listed = set(bases) | set(bases.values())
    result = await runner.run(
        [
            "for-each-ref",
            "--format=%(refname)%00%(objectname)%00%(upstream)%00%(upstream:track)",
            "--",
            *sorted(listed),
        ],
        git_dir=repo,
        config=config,
    )
    counts: dict[str, AheadBehind | None] = {}
    seen: dict[str, Sha] = {}
    others: list[str] = []
    for line in result.stdout.decode(errors="replace").splitlines():
        ref, sha, upstream, track = line.split("\0")
        if ref not in listed:
            continue  # a ref below a wanted one (`refs/heads/a/b` under `refs/heads/a`)
        seen[ref] = Sha(sha)
        if ref not in bases:
            continue  # a base only
        if upstream != bases[ref]:
            # git took another base: the repository's own `branch.X.merge` (multi-valued,
            # the first wins), or `branch.HEAD.*` read as the current branch's.
            others.append(ref)
            continue
        if track == "[gone]":
            counts[ref] = None
            continue
        found = _TRACK.fullmatch(track) if track else None
        if track and found is None:
            raise ValueError(f"unexpected %(upstream:track) output {track!r}")
        ahead = int(found[1] or 0) if found else 0
        behind = int(found[2] or 0) if found else 0
        counts[ref] = AheadBehind(ahead, behind)
    for ref in others:
        base_sha = seen.get(bases[ref])
        counts[ref] = (
            None if base_sha is None else await rev_list_counts(runner, repo, seen[ref], base_sha)
        )
    return Tracked(counts, seen)


async def rev_list_counts(runner: GitRunner, repo: Path, branch: str, base: str) -> AheadBehind:
    """Ahead/behind of `branch` against `base` (`rev-list --left-right --count`): one walk.

    Raises GitCommandError when either is not a commit of `repo`.
    """
    result = await runner.run(
        ["rev-list", "--left-right", "--count", f"{branch}...{base}", "--"], git_dir=repo
    )
    ahead, behind = result.stdout.split()
    return AheadBehind(int(ahead), int(behind))


async def ls_remote_heads(
    runner: GitRunner,
    url: str,
    patterns: Sequence[str] = (),
    *,
    credentials: Credentials | None = None,
    timeout: float | None = None,
    config: Sequence[tuple[str, str]] = (),
    local_source: bool = False,
    node_secret: str | None = None,
) -> dict[str, Sha]:
    """The branches of `url` (without `refs/heads/`) and their commits.

    `patterns` (`main`, `release/*`) narrow the listing on the server (protocol v2
    ref prefixes) and again here; `node_secret` authenticates a listing of another
    storage node's mirror. Raises GitCommandError when the remote fails.
    """
    result = await runner.run(
        ["ls-remote", "--heads", "--", url, *(f"refs/heads/{p}" for p in patterns)],
        credentials=credentials,
        timeout=timeout,
        config=config,
        local_source=local_source,
        node_secret=node_secret,
    )
    heads: dict[str, Sha] = {}
    for line in result.stdout.decode(errors="replace").splitlines():
        sha, _, ref = line.partition("\t")
        if ref.startswith("refs/heads/") and _SHA.fullmatch(sha):
            heads[ref.removeprefix("refs/heads/")] = Sha(sha)
    return heads


async def delete_refs(runner: GitRunner, repo: Path, refs: Sequence[str]) -> None:
    """Delete `refs` (full names) in one transaction; raises GitCommandError."""
    await set_refs(runner, repo, {ref: None for ref in refs})


async def set_refs(runner: GitRunner, repo: Path, refs: dict[str, str | None]) -> None:
    """Point each ref at its commit, or delete it (None), in one transaction.

    Raises GitCommandError (a commit `repo` cannot read among them).
    """
    if not refs:
        return
    lines = "".join(
        f"delete {ref}\n" if sha is None else f"update {ref} {sha}\n" for ref, sha in refs.items()
    )
    await runner.run(["update-ref", "--stdin"], git_dir=repo, stdin=lines.encode())
