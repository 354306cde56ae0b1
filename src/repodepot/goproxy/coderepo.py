"""A module's versions, resolved as cmd/go's `modfetch/coderepo.go` resolves them.

Versions are the tags (`dir/vX.Y.Z` for a module in `dir`); v2+ tags of a root module
without a go.mod are `+incompatible`; an untagged commit gets a pseudo-version after the
highest tag it descends from. A query is a version, a pseudo-version, a branch, a tag or
a commit hash. A tag version, once served, is pinned to its commit (`pins`), so a moved
tag never changes what a version is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from repodepot.exceptions import NotFound
from repodepot.git import commands
from repodepot.git.commands import Tag
from repodepot.git.errors import RevisionNotFound
from repodepot.git.revisions import is_ref_name
from repodepot.git.runner import GitRunner
from repodepot.gitserver.catfile import CommitInfo
from repodepot.gitserver.reads import Reads
from repodepot.goproxy import modzip
from repodepot.goproxy.pins import Pins
from repodepot.goproxy.records import Module, ModuleUnservable, VersionInfo, module_path_of
from repodepot.goproxy.tags import MAX_REPOS, TagLister
from repodepot.goproxy.versions import (
    INCOMPATIBLE,
    BadPath,
    BadVersion,
    canonical,
    is_pseudo,
    is_tag_version,
    latest_version,
    major,
    parse_pseudo,
    path_major_ok,
    pseudo_time,
    pseudo_version,
    sort_key,
    sort_versions,
    split_major,
)

_HEX = re.compile(r"[0-9a-f]{4,40}")


@dataclass(frozen=True, kw_only=True, slots=True)
class TaggedVersions:
    """A module's tag versions, before the go.mod checks that decide the incompatible ones."""

    compatible: list[str]
    """Versions whose major matches the module path's, sorted."""
    incompatible: list[str]
    """v2+ versions at the root of an unsuffixed path (`+incompatible` candidates), sorted."""
    commits: dict[str, str]
    """Each version's commit."""


def tagged_versions(tags: Sequence[tuple[str, str]], module: Module) -> TaggedVersions:
    """The module's versions among (tag name, commit) pairs: its prefix, canonical, not pseudo."""
    compatible, incompatible = [], []
    commits = {}
    prefix = module.tag_prefix
    for name, sha in tags:
        if not name.startswith(prefix):
            continue
        version = name[len(prefix) :]
        if not is_tag_version(version):
            continue
        commits[version] = sha
        if path_major_ok(version, module.path_major):
            compatible.append(version)
        elif not module.code_dir and not module.path_major:
            incompatible.append(version)  # v2+ at the root of an unsuffixed path
    return TaggedVersions(
        compatible=sort_versions(compatible),
        incompatible=sort_versions(incompatible),
        commits=commits,
    )


def declares(go_mod: bytes | None, path_major: str) -> bool:
    """Whether a go.mod declares a module path with the major suffix `path_major` ("" for none)."""
    declared = module_path_of(go_mod or b"")
    if declared is None:
        return False
    try:
        return split_major(declared)[1] == path_major
    except BadPath:
        return False


class CodeRepo:
    """The versions of the modules in the mirrors, and what each version query names."""

    def __init__(self, *, git: GitRunner, reads: Reads, pins: Pins) -> None:
        self._git = git
        self._reads = reads
        self._objects = reads.objects
        self._pins = pins
        self._tag_lister = TagLister(git)
        self._listed: dict[tuple[Path, str], tuple[list[Tag], list[str]]] = {}

    # Listing -------------------------------------------------------------------------------

    async def versions(self, module: Module) -> list[str]:
        """What `@v/list` answers: coderepo's Versions, `+incompatible` ones included.

        Kept per module while the mirror's tags are the same listing.
        """
        raw = await self._tag_lister.tags(module.git_dir)
        key = (module.git_dir, module.path)
        memo = self._listed.get(key)
        if memo is not None and memo[0] is raw:
            return memo[1]
        tagged = tagged_versions(raw, module)
        listed = tagged.compatible + await self._incompatible(module, tagged)
        self._listed[key] = (raw, listed)
        if len(self._listed) > 4 * MAX_REPOS:
            self._listed.pop(next(iter(self._listed)))
        return listed

    async def _incompatible(self, module: Module, tagged: TaggedVersions) -> list[str]:
        """coderepo.appendIncompatibleVersions: v2+ tags of a module without a go.mod."""
        candidates, found, commits = tagged.incompatible, tagged.compatible, tagged.commits
        if not candidates or module.path_major:
            return []
        if found and await self._has_go_mod(module, commits[found[-1]]):
            return []  # the latest v0/v1 has a go.mod: the author means the v0/v1 line
        listed: list[str] = []
        last_major, major_has_go_mod = "", False
        for index, version in enumerate(candidates):
            if major(version) != last_major:
                last_major = major(version)
                latest = [v for v in candidates[index:] if major(v) == last_major][-1]
                major_has_go_mod = await self._has_go_mod(module, commits[latest])
            if not major_has_go_mod:
                listed.append(version + INCOMPATIBLE)
        return listed

    async def latest(self, module: Module) -> VersionInfo:
        """`@latest`: the highest release, else pre-release, else the default branch's head."""
        pick = latest_version(await self.versions(module))
        if pick is not None:
            return await self.info(module, pick)
        head = await self.commit(module, "HEAD")
        if head is None:
            raise NotFound(f"module {module.path}: the repository has no default branch")
        return await self._stat_commit(module, head, ref=None)

    # Resolving a version -------------------------------------------------------------------

    async def info(self, module: Module, query: str) -> VersionInfo:
        """`.info` of a version, a pseudo-version, a tag, a branch or a commit hash.

        A version the mirror lacks is fetched once (shared with concurrent askers, and
        throttled per repository with EnsureRevision's fetches) before the answer is
        NotFound.
        """
        found = await self._stat(module, query)
        if found is None and await self._reads.fetch_unless_recent(
            module.repository_id, module.repo_name
        ):
            found = await self._stat(module, query)
        if found is None:
            raise NotFound(f"{module.path}@{query}: unknown revision {query}")
        return found

    async def commit(self, module: Module, rev: str) -> CommitInfo | None:
        """The commit `rev` names in the module's mirror, or None."""
        try:
            return await self._objects.commit(module.git_dir, rev)
        except RevisionNotFound:
            return None

    async def go_mod_at(self, module: Module, commit: str, directory: str) -> bytes | None:
        """The go.mod in `directory` at `commit`, or None; ModuleUnservable when too large."""
        path = f"{directory}/go.mod" if directory else "go.mod"
        found = await self._objects.read(module.git_dir, f"{commit}:{path}", modzip.MAX_GO_MOD)
        if found is None or found.kind != "blob":
            return None
        if found.data is None:
            raise ModuleUnservable(f"{module.path}: {path} is over {modzip.MAX_GO_MOD} bytes")
        return found.data

    async def _stat(self, module: Module, query: str) -> VersionInfo | None:
        if canonical(query) == query:
            if not path_major_ok(query, module.path_major):
                wanted = module.path_major[1:] if module.path_major else "v0 or v1"
                raise NotFound(
                    f"{module.path}@{query}: invalid version: should be {wanted}, "
                    f"not {major(query)}"
                )
            if is_pseudo(query):
                return await self._stat_pseudo(module, query)
            return await self._stat_tag(module, query)
        return await self._stat_rev(module, query)

    async def _stat_tag(self, module: Module, version: str) -> VersionInfo | None:
        name = f"{module.tag_prefix}{version.removesuffix(INCOMPATIBLE)}"
        ref = f"refs/tags/{name}"
        pinned = await self._pins.get(module, version)
        # From the tag listing kept while the refs hold: no git question per request.
        sha = await self._tag_lister.commit_of(module.git_dir, name)
        if pinned is not None:
            if sha is not None and sha != pinned.commit:
                await self._pins.report_move(module, version, pinned, sha)
            return pinned.info(version)
        current = None if sha is None else await self.commit(module, sha)
        if current is None:
            return None
        return await self._pins.save(module, await self._at(module, current, version, ref))

    async def _stat_pseudo(self, module: Module, version: str) -> VersionInfo | None:
        """A pseudo-version, validated as coderepo's validatePseudoVersion does."""
        try:
            pseudo = parse_pseudo(version)
        except BadVersion as error:
            raise NotFound(f"{module.path}@{version}: {error}") from None
        if len(pseudo.rev) != 12 or not _HEX.fullmatch(pseudo.rev):
            raise NotFound(f"{module.path}@{version}: the revision must be 12 hex digits")
        commit = await self.commit(module, pseudo.rev)
        if commit is None:
            return None
        if pseudo_time(commit.commit_time) != pseudo.stamp:
            raise NotFound(
                f"{module.path}@{version}: invalid pseudo-version: does not match the "
                f"commit's time (expected {pseudo_time(commit.commit_time)})"
            )
        if pseudo.base:
            base = pseudo.base.removesuffix(INCOMPATIBLE)
            tag = f"{module.tag_prefix}{base}"
            here = [v for v, _ in await self._tags(module, points_at=commit.sha)]
            if base in here:
                raise NotFound(f"{module.path}@{version}: tag {tag} is on this commit: use {base}")
            tagged = await self.commit(module, f"refs/tags/{tag}")
            if tagged is None or not await self._is_ancestor(module, tagged.sha, commit.sha):
                raise NotFound(
                    f"{module.path}@{version}: invalid pseudo-version: revision "
                    f"{pseudo.rev} is not a descendant of preceding tag {tag}"
                )
        elif not module.path_major and major(version) == "v1":
            raise NotFound(
                f"{module.path}@{version}: major version without preceding tag must be v0"
            )
        return await self._at(module, commit, version, None)

    async def _stat_rev(self, module: Module, rev: str) -> VersionInfo | None:
        """A branch, a tag or a commit hash: its version if tagged, else a pseudo-version."""
        if not is_ref_name(rev):
            raise NotFound(f"{module.path}@{rev}: not a revision")
        for ref in (f"refs/heads/{rev}", f"refs/tags/{rev}"):
            commit = await self.commit(module, ref)
            if commit is not None:
                return await self._stat_commit(module, commit, ref=ref)
        if _HEX.fullmatch(rev) and (commit := await self.commit(module, rev)) is not None:
            return await self._stat_commit(module, commit, ref=None)
        return None

    async def _stat_commit(
        self, module: Module, commit: CommitInfo, *, ref: str | None
    ) -> VersionInfo:
        tagged = [
            v
            for v, _ in await self._tags(module, points_at=commit.sha)
            if is_tag_version(v) and path_major_ok(v, module.path_major)
        ]
        if tagged:
            found = await self._stat_tag(module, sort_versions(tagged)[-1])
            assert found is not None
            return found
        return await self._at(module, commit, await self._pseudo_for(module, commit), ref)

    async def _at(
        self, module: Module, commit: CommitInfo, version: str, ref: str | None
    ) -> VersionInfo:
        """`version` at `commit`, where the module's directory is found (else NotFound)."""
        subdir = await self._find_dir(module, commit.sha, version)
        return VersionInfo(
            version=version,
            commit=commit.sha,
            commit_time=commit.commit_time,
            ref=ref,
            subdir=subdir,
        )

    async def _pseudo_for(self, module: Module, commit: CommitInfo) -> str:
        """The pseudo-version of an untagged commit, after the highest tag it descends from."""
        bases = []
        may_be_incompatible: bool | None = None
        for version, _ in await self._tags(module, merged=commit.sha):
            if not is_tag_version(version):
                continue
            if path_major_ok(version, module.path_major):
                bases.append(version)
            elif not module.code_dir and not module.path_major and major(version) != "v1":
                if may_be_incompatible is None:
                    may_be_incompatible = not await self._has_go_mod(module, commit.sha)
                if may_be_incompatible:
                    bases.append(version + INCOMPATIBLE)
        base = max(bases, key=sort_key, default="")
        return pseudo_version(module.path_major, base, commit.commit_time, commit.sha)

    async def _find_dir(self, module: Module, commit: str, version: str) -> str:
        """The module's directory at `commit`, after coderepo's findDir; else NotFound."""
        code_dir, path_major = module.code_dir, module.path_major
        if path_major:
            subdir = f"{code_dir}/{path_major[1:]}".lstrip("/")
            if declares(await self.go_mod_at(module, commit, subdir), path_major):
                return subdir
            if declares(await self.go_mod_at(module, commit, code_dir), path_major):
                return code_dir
            raise NotFound(
                f"{module.path}@{version}: no go.mod declaring a {path_major} module path "
                f"in {subdir}/ or {code_dir or 'the root'} at this version"
            )
        go_mod = await self.go_mod_at(module, commit, code_dir)
        if go_mod is None:
            if code_dir:
                raise NotFound(f"{module.path}@{version}: no {code_dir}/go.mod: not a module")
            return ""  # a module from before modules: its go.mod is made up
        if version.endswith(INCOMPATIBLE):
            raise NotFound(
                f"{module.path}@{version}: +incompatible is not allowed: "
                "the module has a go.mod at this version"
            )
        if not declares(go_mod, path_major):
            declared = module_path_of(go_mod)
            raise NotFound(f"{module.path}@{version}: its go.mod declares {declared}")
        return code_dir

    # Mirror reads --------------------------------------------------------------------------

    async def _tags(
        self, module: Module, *, points_at: str | None = None, merged: str | None = None
    ) -> list[tuple[str, str]]:
        """(version part of the tag, commit) for the module's tags, filtered as git does."""
        prefix = module.tag_prefix
        listed = await self._tag_lister.tags(module.git_dir, points_at=points_at, merged=merged)
        return [(name[len(prefix) :], sha) for name, sha in listed if name.startswith(prefix)]

    async def _has_go_mod(self, module: Module, rev: str) -> bool:
        found = await self._objects.read(module.git_dir, f"{rev}:go.mod", 0)
        return found is not None and found.kind == "blob"

    async def _is_ancestor(self, module: Module, ancestor: str, commit: str) -> bool:
        return await commands.is_ancestor(self._git, module.git_dir, ancestor, commit)
