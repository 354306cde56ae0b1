"""The Go module proxy, answered from the mirrors (the GOPROXY protocol's five requests).

A module path maps to the repository with the longest matching Go import root; the rest
is the module's directory, with the go command's major-version rules (a `/vN` path is
either the directory `vN/` or a `module …/vN` go.mod in place). Versions are the tags
(`dir/vX.Y.Z` for a module in `dir`), as `cmd/go/internal/modfetch/coderepo.go` lists and
resolves them, pseudo-versions included. A tag version, once served, is pinned to its
commit in `go_versions`, so a moved tag never changes what a version is.

Zips are built from git objects while they stream (`modzip`), and cached on disk by
(module, version, commit) once complete.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from pathlib import Path

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from repodepot.accounts import Principal
from repodepot.db.models import Repository, Visibility
from repodepot.exceptions import NotFound
from repodepot.git.errors import RevisionNotFound
from repodepot.git.revisions import is_ref_name
from repodepot.git.runner import GitRunner
from repodepot.gitserver.catfile import CommitInfo
from repodepot.gitserver.reads import Reads
from repodepot.goproxy import modzip
from repodepot.goproxy.pins import Pins
from repodepot.goproxy.records import (
    Module,
    ModuleSummary,
    ModuleUnservable,
    VersionGone,
    VersionInfo,
    ZipAnswer,
    go_get_line,
    module_path_of,
)
from repodepot.goproxy.tags import MAX_REPOS, TagLister
from repodepot.goproxy.versions import (
    INCOMPATIBLE,
    BadPath,
    BadVersion,
    canonical,
    check_module_path,
    escape,
    is_pseudo,
    is_tag_version,
    major,
    parse,
    parse_pseudo,
    path_major_ok,
    pseudo_time,
    pseudo_version,
    sort_key,
    sort_versions,
    split_major,
)
from repodepot.goproxy.zipstream import stream_zip
from repodepot.repositories import RepositoryRecord, visible_to
from repodepot.storage import Storage

logger = logging.getLogger(__name__)

ZIP_FORMAT = "1"  # part of the cache key and ETag: bump when the writer's bytes change
_MODULE_LINE = re.compile(rb"^\s*module\s+(?:\"([^\"]+)\"|`([^`]+)`|(\S+))", re.MULTILINE)
_HEX = re.compile(r"[0-9a-f]{4,40}")


class GoProxy:
    """Answers the GOPROXY protocol from the repositories on this node."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        git: GitRunner,
        storage: Storage,
        reads: Reads,
    ) -> None:
        self._sessions = sessions
        self._git = git
        self._storage = storage
        self._reads = reads
        self._objects = reads.objects
        self._cache = storage.cache_dir / "goproxy"
        self._pins = Pins(sessions)
        self._tag_lister = TagLister(git)
        self._listed: dict[tuple[Path, str], tuple[list[tuple[str, str]], list[str]]] = {}

    # Module paths ----------------------------------------------------------------------

    async def resolve(self, principal: Principal, path: str) -> Module:
        """The module `path` in the repository with the longest matching import root.

        Repositories `principal` may not read take no part: a private root answers
        exactly as no root (the same status and words, also where a shorter public root
        would otherwise serve the path). Raises NotFound when no readable repository's
        root matches, or when it is not cloned yet.
        """
        try:
            check_module_path(path)
            prefix, path_major = split_major(path)
        except BadPath as error:
            raise NotFound(str(error)) from None
        elements = prefix.split("/")
        candidates = ["/".join(elements[:n]) for n in range(1, len(elements) + 1)]
        root_of = Repository.go_import_root
        statement = select(Repository).where(
            Repository.deleted_at.is_(None),
            visible_to(principal),
            or_(
                root_of.in_(candidates),
                root_of.is_(None) & Repository.go_default_root.in_(candidates),
            ),
        )
        async with self._sessions() as session:
            rows = (await session.execute(statement)).scalars().all()
        if not rows:
            raise NotFound(f"no repository here serves module {path}")
        repo = max(rows, key=lambda r: len(r.go_import_root or r.go_default_root or ""))
        root = repo.go_import_root or repo.go_default_root or ""
        git_dir = self._storage.path(repo.name)
        if not git_dir.is_dir():
            raise NotFound(f"module {path}: repository {repo.name!r} is not cloned yet")
        return Module(
            path=path,
            repository_id=repo.id,
            repo_name=repo.name,
            root=root,
            code_dir=prefix[len(root) + 1 :],
            path_major=path_major,
            git_dir=git_dir,
            source_url=repo.source_url,
            public=repo.visibility == Visibility.public,
        )

    # Versions --------------------------------------------------------------------------

    async def _tags(self, module: Module, *filters: str) -> list[tuple[str, str]]:
        """(version part of the tag, commit) for the module's tags, after git `filters`."""
        prefix = module.tag_prefix
        return [
            (name[len(prefix) :], sha)
            for name, sha in await self._tag_lister.tags(module.git_dir, *filters)
            if name.startswith(prefix)
        ]

    async def _has_go_mod(self, module: Module, rev: str) -> bool:
        found = await self._objects.read(module.git_dir, f"{rev}:go.mod", 0)
        return found is not None and found.kind == "blob"

    async def versions(self, module: Module) -> list[str]:
        """What `@v/list` answers: coderepo's Versions, `+incompatible` ones included.

        Kept per module while the mirror's tags are the same listing.
        """
        raw = await self._tag_lister.tags(module.git_dir)
        key = (module.git_dir, module.path)
        memo = self._listed.get(key)
        if memo is not None and memo[0] is raw:
            return memo[1]
        found, incompatible = [], []
        commits = {}
        prefix = module.tag_prefix
        for name, sha in raw:
            if not name.startswith(prefix):
                continue
            version = name[len(prefix) :]
            if not is_tag_version(version):
                continue
            commits[version] = sha
            if path_major_ok(version, module.path_major):
                found.append(version)
            elif not module.code_dir and not module.path_major:
                incompatible.append(version)  # v2+ at the root of an unsuffixed path
        found = sort_versions(found)
        listed = found + await self._incompatible(
            module, found, sort_versions(incompatible), commits
        )
        self._listed[key] = (raw, listed)
        if len(self._listed) > 4 * MAX_REPOS:
            self._listed.pop(next(iter(self._listed)))
        return listed

    async def _incompatible(
        self, module: Module, found: list[str], candidates: list[str], commits: dict[str, str]
    ) -> list[str]:
        """coderepo.appendIncompatibleVersions: v2+ tags of a module without a go.mod."""
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
        pick = _latest(await self.versions(module))
        if pick is not None:
            return await self.info(module, pick)
        head = await self._commit(module, "HEAD")
        if head is None:
            raise NotFound(f"module {module.path}: the repository has no default branch")
        return await self._stat_commit(module, head, ref=None)

    # Resolving a version ---------------------------------------------------------------

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

    async def _commit(self, module: Module, rev: str) -> CommitInfo | None:
        try:
            return await self._objects.commit(module.git_dir, rev)
        except RevisionNotFound:
            return None

    async def _stat_tag(self, module: Module, version: str) -> VersionInfo | None:
        ref = f"refs/tags/{module.tag_prefix}{version.removesuffix(INCOMPATIBLE)}"
        pinned = await self._pins.get(module, version)
        current = await self._commit(module, ref)
        if pinned is not None:
            if current is not None and current.sha != pinned.commit:
                await self._pins.report_move(module, version, pinned, current.sha)
            return pinned.info(version)
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
        commit = await self._commit(module, pseudo.rev)
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
            here = [v for v, _ in await self._tags(module, f"--points-at={commit.sha}")]
            if base in here:
                raise NotFound(f"{module.path}@{version}: tag {tag} is on this commit: use {base}")
            tagged = await self._commit(module, f"refs/tags/{tag}")
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
            commit = await self._commit(module, ref)
            if commit is not None:
                return await self._stat_commit(module, commit, ref=ref)
        if _HEX.fullmatch(rev) and (commit := await self._commit(module, rev)) is not None:
            return await self._stat_commit(module, commit, ref=None)
        return None

    async def _stat_commit(
        self, module: Module, commit: CommitInfo, *, ref: str | None
    ) -> VersionInfo:
        tagged = [
            v
            for v, _ in await self._tags(module, f"--points-at={commit.sha}")
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
        for version, _ in await self._tags(module, f"--merged={commit.sha}"):
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

    async def _is_ancestor(self, module: Module, ancestor: str, commit: str) -> bool:
        result = await self._git.run(
            ["merge-base", "--is-ancestor", ancestor, commit], git_dir=module.git_dir, check=False
        )
        return result.returncode == 0

    async def _go_mod_at(self, module: Module, commit: str, directory: str) -> bytes | None:
        path = f"{directory}/go.mod" if directory else "go.mod"
        found = await self._objects.read(module.git_dir, f"{commit}:{path}", modzip.MAX_GO_MOD)
        if found is None or found.kind != "blob":
            return None
        if found.data is None:
            raise ModuleUnservable(f"{module.path}: {path} is over {modzip.MAX_GO_MOD} bytes")
        return found.data

    async def _find_dir(self, module: Module, commit: str, version: str) -> str:
        """The module's directory at `commit`, after coderepo's findDir; else NotFound."""
        code_dir, path_major = module.code_dir, module.path_major

        def declares(go_mod: bytes | None) -> bool:
            declared = module_path_of(go_mod or b"")
            if declared is None:
                return False
            try:
                return split_major(declared)[1] == path_major
            except BadPath:
                return False

        if path_major:
            subdir = f"{code_dir}/{path_major[1:]}".lstrip("/")
            go_mod = await self._go_mod_at(module, commit, subdir)
            if declares(go_mod):
                return subdir
            go_mod = await self._go_mod_at(module, commit, code_dir)
            if declares(go_mod):
                return code_dir
            raise NotFound(
                f"{module.path}@{version}: no go.mod declaring a {path_major} module path "
                f"in {subdir}/ or {code_dir or 'the root'} at this version"
            )
        go_mod = await self._go_mod_at(module, commit, code_dir)
        if go_mod is None:
            if code_dir:
                raise NotFound(f"{module.path}@{version}: no {code_dir}/go.mod: not a module")
            return ""  # a module from before modules: its go.mod is made up
        if version.endswith(INCOMPATIBLE):
            raise NotFound(
                f"{module.path}@{version}: +incompatible is not allowed: "
                "the module has a go.mod at this version"
            )
        if not declares(go_mod):
            declared = module_path_of(go_mod)
            raise NotFound(f"{module.path}@{version}: its go.mod declares {declared}")
        return code_dir

    # go.mod and zip ----------------------------------------------------------------------

    def _cache_path(self, module: Module, found: VersionInfo, suffix: str) -> Path:
        digest = hashlib.sha256(module.path.encode()).hexdigest()
        name = f"{escape(found.version)}-{found.commit}-{ZIP_FORMAT}{suffix}"
        return self._cache / digest[:2] / digest / name

    async def go_mod(self, module: Module, version: str) -> bytes:
        """`.mod`: the go.mod at that version byte for byte, else `module PATH` and a newline."""
        found = await self.info(module, version)
        cached = self._cache_path(module, found, ".mod")
        if cached.is_file():
            return cached.read_bytes()
        await self._require_commit(module, found)
        data = await self._go_mod_at(module, found.commit, found.subdir)
        if data is None:
            data = f"module {module.path}\n".encode()
        _write_atomically(cached, data)
        return data

    async def _require_commit(self, module: Module, found: VersionInfo) -> None:
        """VersionGone when the commit a version was first served from is no longer here."""
        if await self._commit(module, found.commit) is None:
            raise VersionGone(
                f"{module.path}@{found.version}: its tag moved and commit {found.commit[:12]}, "
                "which it was first served from, is gone"
            )

    def etag(self, module: Module, found: VersionInfo) -> str:
        """The zip's ETag: its bytes depend on nothing else than this."""
        key = f"{module.path}@{found.version}@{found.commit}@{ZIP_FORMAT}"
        return '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'

    async def zip(self, module: Module, version: str) -> ZipAnswer:
        """`.zip`: the cached file, or a stream that writes it.

        Everything that would refuse the zip is checked before the first byte; raises
        ModuleUnservable naming it, or VersionGone.
        """
        found = await self.info(module, version)
        cached = self._cache_path(module, found, ".zip")
        etag = self.etag(module, found)
        if cached.is_file():
            return ZipAnswer(etag=etag, path=cached, stream=None)
        await self._require_commit(module, found)
        files = await self._files(module, found)
        prefix = f"{module.path}@{found.version}/"
        temporary = self._storage.workdir(f"goproxy-{uuid.uuid4().hex}.zip")
        stream = stream_zip(
            self._git, module.git_dir, prefix, files, temporary=temporary, target=cached
        )
        return ZipAnswer(etag=etag, path=None, stream=stream)

    async def _files(self, module: Module, found: VersionInfo) -> list[modzip.Entry]:
        listing = await self._git.run(
            ["ls-tree", "-r", "-l", "-z", "--full-tree", found.commit, "--", found.subdir or "."],
            git_dir=module.git_dir,
        )
        entries = modzip.parse_ls_tree(listing.stdout, found.subdir)
        if found.subdir and not any(entry.path == "LICENSE" for entry in entries):
            # The go command adds the repository's LICENSE to a module in a subdirectory.
            license_ = await self._objects.read(
                module.git_dir, f"{found.commit}:LICENSE", modzip.MAX_LICENSE
            )
            if license_ is not None and license_.kind == "blob" and license_.data is not None:
                entries.append(modzip.Entry("LICENSE", "100644", license_.sha, license_.size))
        go_mod = await self._go_mod_at(module, found.commit, found.subdir)
        try:
            return modzip.select_files(entries, go_mod)
        except modzip.ZipRefused as error:
            raise ModuleUnservable(f"{module.path}@{found.version}: {error}") from None

    # Modules of a repository -------------------------------------------------------------

    async def modules(self, principal: Principal, repo: RepositoryRecord) -> list[ModuleSummary]:
        """The Go modules found in `repo`: go.mod files at HEAD and tag prefixes."""
        root = repo.go_import_root
        git_dir = self._storage.path(repo.name)
        if root is None or not git_dir.is_dir():
            return []
        paths = await self._module_paths(git_dir, root)
        moved = await self._pins.moved(repo.id)
        summaries = []
        for path in sorted(paths):
            try:
                module = await self.resolve(principal, path)
            except NotFound:
                continue
            if module.repository_id != repo.id:
                continue  # a longer root elsewhere serves it
            listed = await self.versions(module)
            summaries.append(
                ModuleSummary(
                    path=path,
                    subdir=paths[path],
                    versions=listed,
                    latest=_latest(listed),
                    moved=sorted(moved.get(path, [])),
                )
            )
        return summaries

    async def modules_to_get(
        self, principal: Principal, repo: RepositoryRecord, proxy_url: str
    ) -> list[tuple[ModuleSummary, str]]:
        """Each module of `repo` with the `go get` line that fetches it through `proxy_url`."""
        private = repo.visibility != Visibility.public
        root = repo.go_import_root or ""
        return [
            (module, go_get_line(proxy_url, module, root, private=private))
            for module in await self.modules(principal, repo)
        ]

    async def _module_paths(self, git_dir: Path, root: str) -> dict[str, str]:
        """Module path → directory, from go.mod files at HEAD and from tag prefixes."""
        paths: dict[str, str] = {}
        listing = await self._git.run(
            ["ls-tree", "-r", "-z", "--name-only", "--full-tree", "HEAD"],
            git_dir=git_dir,
            check=False,
        )
        for name in listing.stdout.decode(errors="replace").split("\0"):
            if name != "go.mod" and not name.endswith("/go.mod"):
                continue
            directory = name.removesuffix("go.mod").rstrip("/")
            found = await self._objects.read(git_dir, f"HEAD:{name}", modzip.MAX_GO_MOD)
            declared = module_path_of(found.data or b"") if found else None
            guess = f"{root}/{directory}".rstrip("/")
            if declared is not None and (declared == root or declared.startswith(f"{root}/")):
                paths.setdefault(declared, directory)
            else:
                paths.setdefault(guess, directory)
        tags = await self._git.run(
            ["for-each-ref", "--format=%(refname:lstrip=2)", "refs/tags/"], git_dir=git_dir
        )
        for tag in tags.stdout.decode(errors="replace").splitlines():
            directory, _, version = tag.rpartition("/")
            if not is_tag_version(version):
                continue
            base = f"{root}/{directory}".rstrip("/")
            suffix = major(version)
            path = base if suffix in ("v0", "v1") else f"{base}/{suffix}"
            if not directory and suffix not in ("v0", "v1") and path not in paths:
                path = base  # v2+ tags of a root module without go.mod: +incompatible
            paths.setdefault(path, directory)
        return paths


def _latest(versions: list[str]) -> str | None:
    """The highest release of a sorted list, else its highest pre-release."""
    releases = [v for v in versions if (parsed := parse(v)) is not None and not parsed.pre]
    pool = releases or versions
    return pool[-1] if pool else None


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
    temporary.write_bytes(data)
    os.replace(temporary, path)
