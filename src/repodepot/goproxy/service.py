"""The Go module proxy, answered from the mirrors (the GOPROXY protocol's five requests).

`GoProxy` is what the web layer and the CLI use; it is built from four parts, in the
order a request goes through them:
- `resolve`: module path → the repository with the longest matching Go import root, and
  the module's directory in it;
- `coderepo`: the module's versions and what a version query names, as
  `cmd/go/internal/modfetch/coderepo.go` resolves them (tags, pseudo-versions,
  `+incompatible`), with each served tag version pinned to its commit (`pins`);
- `files`: a version's go.mod and zip, cached on disk by (module, version, commit);
- `listing`: a repository's modules, for its page and `goproxy list`.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from repodepot.accounts import Principal
from repodepot.git.runner import GitRunner
from repodepot.gitserver.reads import Reads
from repodepot.goproxy.coderepo import CodeRepo
from repodepot.goproxy.files import Files, zip_etag
from repodepot.goproxy.listing import Listing
from repodepot.goproxy.pins import Pins
from repodepot.goproxy.records import Module, ModuleSummary, VersionInfo, ZipAnswer
from repodepot.goproxy.resolve import Resolver
from repodepot.repositories import Repositories, RepositoryRecord
from repodepot.storage import Storage


class GoProxy:
    """Answers the GOPROXY protocol from the repositories on this node."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        repositories: Repositories,
        git: GitRunner,
        storage: Storage,
        reads: Reads,
    ) -> None:
        pins = Pins(sessions)
        self._resolver = Resolver(repositories=repositories, storage=storage)
        self._code = CodeRepo(git=git, reads=reads, pins=pins)
        self._files = Files(git=git, objects=reads.objects, storage=storage, code=self._code)
        self._listing = Listing(
            git=git,
            objects=reads.objects,
            storage=storage,
            resolver=self._resolver,
            code=self._code,
            pins=pins,
        )

    async def resolve(self, principal: Principal, path: str) -> Module:
        """The module `path` in the readable repository with the longest matching import root.

        Raises NotFound when none matches (a private root answers as no root) or when
        its mirror is not cloned yet.
        """
        return await self._resolver.resolve(principal, path)

    async def repository(self, principal: Principal, path: str) -> RepositoryRecord:
        """The readable repository that serves module `path`, from the database alone.

        Raises NotFound as `resolve` does, but for a mirror not cloned yet: where the
        mirror is (this disk or another node's) is the caller's next question.
        """
        return await self._resolver.repository(principal, path)

    def module(self, repo: RepositoryRecord, path: str) -> Module:
        """Module `path` in `repo` (from `repository`); NotFound when not on this disk."""
        return self._resolver.module(repo, path)

    async def resolve_in(self, path: str, repository_id: int) -> Module:
        """Module `path` in repository `repository_id`, without an access check.

        A storage node's answer to a web process that chose the repository for its
        caller (`repository`). Raises NotFound when that repository does not serve
        `path` or its mirror is not on this disk.
        """
        return await self._resolver.resolve_in(path, repository_id)

    async def versions(self, module: Module) -> list[str]:
        """What `@v/list` answers: the tag versions, `+incompatible` ones included."""
        return await self._code.versions(module)

    async def latest(self, module: Module) -> VersionInfo:
        """`@latest`: the highest release, else pre-release, else the default branch's head."""
        return await self._code.latest(module)

    async def info(self, module: Module, query: str) -> VersionInfo:
        """`.info` of a version, a pseudo-version, a tag, a branch or a commit hash.

        The mirror is fetched once for a version it lacks; raises NotFound after that.
        """
        return await self._code.info(module, query)

    async def go_mod(self, module: Module, version: str) -> bytes:
        """`.mod`: the go.mod at that version byte for byte, else `module PATH` and a newline."""
        return await self._files.go_mod(module, version)

    def etag(self, module: Module, found: VersionInfo) -> str:
        """The zip's ETag: its bytes depend on nothing else than this."""
        return zip_etag(module.path, found)

    async def zip(self, module: Module, version: str) -> ZipAnswer:
        """`.zip`: the cached file, or a stream that writes it.

        Raises ModuleUnservable or VersionGone before the first byte.
        """
        return await self._files.zip(module, version)

    async def modules(self, principal: Principal, repo: RepositoryRecord) -> list[ModuleSummary]:
        """The Go modules found in `repo`: go.mod files at HEAD and tag prefixes."""
        return await self._listing.modules(principal, repo)

    async def modules_to_get(
        self, principal: Principal, repo: RepositoryRecord, proxy_url: str
    ) -> list[tuple[ModuleSummary, str]]:
        """Each module of `repo` with the `go get` line that fetches it through `proxy_url`."""
        return await self._listing.modules_to_get(principal, repo, proxy_url)
