"""A repository's Go modules, for its page and `goproxy list`.

The modules are found in the go.mod files at HEAD and in the tag prefixes (`dir/vX.Y.Z`),
each then resolved as the go command would ask for it: a module that a longer import root
elsewhere serves is not this repository's.
"""

from __future__ import annotations

from pathlib import Path

from repodepot.accounts import Principal
from repodepot.db.models import Visibility
from repodepot.exceptions import NotFound
from repodepot.git import commands
from repodepot.git.refstate import KeptByRefs
from repodepot.git.runner import GitRunner
from repodepot.gitserver.catfile import CommitReader
from repodepot.goproxy import modzip
from repodepot.goproxy.coderepo import CodeRepo
from repodepot.goproxy.pins import Pins
from repodepot.goproxy.records import ModuleSummary, go_get_line, module_path_of
from repodepot.goproxy.resolve import Resolver
from repodepot.goproxy.versions import is_tag_version, latest_version, major
from repodepot.repositories import RepositoryRecord
from repodepot.storage import Storage


def module_paths(
    go_mods: list[tuple[str, str | None]], tags: list[str], root: str
) -> dict[str, str]:
    """Module path → directory, from go.mod files and tag names, under import root `root`.

    `go_mods` holds (directory, the module path its go.mod declares or None), in listing
    order; a go.mod that declares a path outside `root` counts as the path its directory
    gives. The first finding of a path wins.
    """
    paths: dict[str, str] = {}
    for directory, declared in go_mods:
        if declared is not None and (declared == root or declared.startswith(f"{root}/")):
            paths.setdefault(declared, directory)
        else:
            paths.setdefault(f"{root}/{directory}".rstrip("/"), directory)
    for tag in tags:
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


class Listing:
    """The modules of a repository, with their versions and the `go get` line for each."""

    def __init__(
        self,
        *,
        git: GitRunner,
        objects: CommitReader,
        storage: Storage,
        resolver: Resolver,
        code: CodeRepo,
        pins: Pins,
    ) -> None:
        self._git = git
        self._objects = objects
        self._storage = storage
        self._resolver = resolver
        self._code = code
        self._pins = pins
        # The go.mod files at HEAD and the tag names: a repository page asks on every view.
        self._paths: KeptByRefs[dict[str, str]] = KeptByRefs(("refs",), files=("HEAD",), size=256)

    async def modules(self, principal: Principal, repo: RepositoryRecord) -> list[ModuleSummary]:
        """The Go modules found in `repo`: go.mod files at HEAD and tag prefixes."""
        root = repo.go_import_root
        git_dir = self._storage.path(repo.id)
        if root is None or not git_dir.is_dir():
            return []
        paths = await self._paths.get(git_dir, root, lambda: self._module_paths(git_dir, root))
        moved = await self._pins.moved(repo.id)
        summaries = []
        for path in sorted(paths):
            try:
                module = await self._resolver.resolve(principal, path)
            except NotFound:
                continue
            if module.repository_id != repo.id:
                continue  # a longer root elsewhere serves it
            listed = await self._code.versions(module)
            summaries.append(
                ModuleSummary(
                    path=path,
                    subdir=paths[path],
                    versions=listed,
                    latest=latest_version(listed),
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
        go_mods: list[tuple[str, str | None]] = []
        for name in await commands.ls_tree_names(self._git, git_dir, "HEAD"):
            if name != "go.mod" and not name.endswith("/go.mod"):
                continue
            found = await self._objects.read(git_dir, f"HEAD:{name}", modzip.MAX_GO_MOD)
            declared = module_path_of(found.data or b"") if found else None
            go_mods.append((name.removesuffix("go.mod").rstrip("/"), declared))
        tags = await commands.tag_names(self._git, git_dir)
        return module_paths(go_mods, tags, root)
