"""A version's files: its go.mod and its zip, cached on disk by (module, version, commit).

Zips are built from git objects while they stream (`modzip`, `zipstream`) and land in the
cache once complete; a go.mod is cached as soon as it is read. Both keys include the
commit and `ZIP_FORMAT`, so a cached file never outlives what it was built from.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

from repodepot.git import commands
from repodepot.git.runner import GitRunner
from repodepot.gitserver.catfile import CommitReader
from repodepot.goproxy import modzip
from repodepot.goproxy.coderepo import CodeRepo
from repodepot.goproxy.records import Module, ModuleUnservable, VersionGone, VersionInfo, ZipAnswer
from repodepot.goproxy.versions import escape
from repodepot.goproxy.zipstream import stream_zip
from repodepot.storage import Storage

ZIP_FORMAT = "1"  # part of the cache key and ETag: bump when the writer's bytes change


def cache_path(cache: Path, module_path: str, found: VersionInfo, suffix: str) -> Path:
    """Where the file `suffix` (`.mod`, `.zip`) of a version is cached under `cache`."""
    digest = hashlib.sha256(module_path.encode()).hexdigest()
    name = f"{escape(found.version)}-{found.commit}-{ZIP_FORMAT}{suffix}"
    return cache / digest[:2] / digest / name


def zip_etag(module_path: str, found: VersionInfo) -> str:
    """The zip's ETag: its bytes depend on nothing else than the module, version and commit."""
    key = f"{module_path}@{found.version}@{found.commit}@{ZIP_FORMAT}"
    return '"' + hashlib.sha256(key.encode()).hexdigest()[:32] + '"'


class Files:
    """The `.mod` and `.zip` answers, from the cache or from the mirror."""

    def __init__(
        self, *, git: GitRunner, objects: CommitReader, storage: Storage, code: CodeRepo
    ) -> None:
        self._git = git
        self._objects = objects
        self._storage = storage
        self._code = code
        self._cache = storage.cache_dir / "goproxy"

    async def go_mod(self, module: Module, version: str) -> bytes:
        """`.mod`: the go.mod at that version byte for byte, else `module PATH` and a newline."""
        found = await self._code.info(module, version)
        cached = cache_path(self._cache, module.path, found, ".mod")
        if cached.is_file():
            return cached.read_bytes()
        await self._require_commit(module, found)
        data = await self._code.go_mod_at(module, found.commit, found.subdir)
        if data is None:
            data = f"module {module.path}\n".encode()
        _write_atomically(cached, data)
        return data

    async def zip(self, module: Module, version: str) -> ZipAnswer:
        """`.zip`: the cached file, or a stream that writes it.

        Everything that would refuse the zip is checked before the first byte; raises
        ModuleUnservable naming it, or VersionGone.
        """
        found = await self._code.info(module, version)
        cached = cache_path(self._cache, module.path, found, ".zip")
        etag = zip_etag(module.path, found)
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

    async def _require_commit(self, module: Module, found: VersionInfo) -> None:
        """VersionGone when the commit a version was first served from is no longer here."""
        if await self._code.commit(module, found.commit) is None:
            raise VersionGone(
                f"{module.path}@{found.version}: its tag moved and commit {found.commit[:12]}, "
                "which it was first served from, is gone"
            )

    async def _files(self, module: Module, found: VersionInfo) -> list[modzip.Entry]:
        listing = await commands.ls_tree_entries(
            self._git, module.git_dir, found.commit, found.subdir
        )
        entries = modzip.module_blobs(listing, found.subdir)
        if found.subdir and not any(entry.path == "LICENSE" for entry in entries):
            # The go command adds the repository's LICENSE to a module in a subdirectory.
            license_ = await self._objects.read(
                module.git_dir, f"{found.commit}:LICENSE", modzip.MAX_LICENSE
            )
            if license_ is not None and license_.kind == "blob" and license_.data is not None:
                entries.append(modzip.Entry("LICENSE", "100644", license_.sha, license_.size))
        go_mod = await self._code.go_mod_at(module, found.commit, found.subdir)
        try:
            return modzip.select_files(entries, go_mod)
        except modzip.ZipRefused as error:
            raise ModuleUnservable(f"{module.path}@{found.version}: {error}") from None


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
    temporary.write_bytes(data)
    os.replace(temporary, path)
