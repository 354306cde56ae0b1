"""Module path → repository: the readable repository with the longest matching import root.

The rest of the path after the root is the module's directory, with the go command's
major-version rule: a `/vN` suffix is split off here, and `coderepo` decides whether it
names the directory `vN/` or a `module …/vN` go.mod in place. The repositories come from
their owner, `Repositories`; only the mirror's place on disk is looked up here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from repodepot.accounts import Principal, operator
from repodepot.db.models import Visibility
from repodepot.exceptions import NotFound
from repodepot.goproxy.records import Module
from repodepot.goproxy.versions import BadPath, check_module_path, split_major
from repodepot.repositories import RepositoryRecord
from repodepot.storage import Storage


class GoRoots(Protocol):
    """Where the repositories come from: `Repositories`, their table's owner."""

    async def by_go_roots(self, principal: Principal, roots: list[str]) -> list[RepositoryRecord]:
        """The live repositories `principal` may read whose Go import root is one of `roots`."""
        ...


class Resolver:
    """Finds the repository, and the directory in it, that serves a module path."""

    def __init__(self, *, repositories: GoRoots, storage: Storage) -> None:
        self._repositories = repositories
        self._storage = storage

    async def resolve(self, principal: Principal, path: str) -> Module:
        """The module `path` in the repository with the longest matching import root.

        Repositories `principal` may not read take no part: a private root answers
        exactly as no root (the same status and words, also where a shorter public root
        would otherwise serve the path). Raises NotFound when `path` is not a module
        path, when no readable repository's root matches, or when it is not cloned yet.
        """
        return self.module(await self.repository(principal, path), path)

    async def repository(self, principal: Principal, path: str) -> RepositoryRecord:
        """The readable repository that serves module `path`, from the database alone.

        What `resolve` decides before it looks at the disk: a web process asks this,
        then reads the mirror here (`module`) or on the storage node that holds it
        (`resolve_in`). Raises NotFound as `resolve` does, but for a missing mirror.
        """
        prefix, _ = _split(path)
        repo = longest_root(
            await self._repositories.by_go_roots(principal, root_candidates(prefix))
        )
        if repo is None:
            raise NotFound(f"no repository here serves module {path}")
        return repo

    async def resolve_in(self, path: str, repository_id: int) -> Module:
        """The module `path` in repository `repository_id`, whoever may read it.

        For a storage node asked by a web process, which decided the caller's access
        and the repository (`repository`): no access is checked here. Raises NotFound
        when that repository's import root cannot serve `path` (it changed meanwhile,
        or the repository is gone), or when its mirror is not on this disk.
        """
        prefix, _ = _split(path)
        candidates = await self._repositories.by_go_roots(operator(), root_candidates(prefix))
        repo = next((repo for repo in candidates if repo.id == repository_id), None)
        if repo is None:
            raise NotFound(f"no repository here serves module {path}")
        return self.module(repo, path)

    def module(self, repo: RepositoryRecord, path: str) -> Module:
        """Module `path` in `repo`, which `repository` chose for it; NotFound before its clone."""
        prefix, path_major = _split(path)
        root = repo.go_import_root or ""
        git_dir = self._storage.path(repo.id)
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


def _split(path: str) -> tuple[str, str]:
    """`path` without its major-version suffix, and that suffix; NotFound if not a module path."""
    try:
        check_module_path(path)
        return split_major(path)
    except BadPath as error:
        raise NotFound(str(error)) from None


def root_candidates(prefix: str) -> list[str]:
    """Every import root that could serve `prefix`: its leading elements, shortest first."""
    elements = prefix.split("/")
    return ["/".join(elements[:n]) for n in range(1, len(elements) + 1)]


def longest_root(repositories: Sequence[RepositoryRecord]) -> RepositoryRecord | None:
    """The repository whose import root is longest (the most specific), or None if none."""
    if not repositories:
        return None
    return max(repositories, key=lambda repo: len(repo.go_import_root or ""))
