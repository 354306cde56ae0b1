"""What the Go proxy's layers hand each other: a resolved module, a version, errors."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from repodepot.exceptions import RepodepotError

_MODULE_LINE = re.compile(rb"^\s*module\s+(?:\"([^\"]+)\"|`([^`]+)`|(\S+))", re.MULTILINE)


class VersionGone(RepodepotError):
    """The version was served before, but its content is no longer here."""

    code = "gone"


class ModuleUnservable(RepodepotError):
    """The go command would refuse this module's zip."""

    code = "unservable"


@dataclass(frozen=True, kw_only=True, slots=True)
class Module:
    """A module path resolved to a repository: where its tags and files are."""

    path: str
    repository_id: int
    repo_name: str
    root: str
    code_dir: str
    path_major: str
    git_dir: Path
    source_url: str | None
    public: bool

    @property
    def tag_prefix(self) -> str:
        """What its tags start with: `dir/` for a module in `dir`, else nothing."""
        return f"{self.code_dir}/" if self.code_dir else ""


@dataclass(frozen=True, kw_only=True, slots=True)
class VersionInfo:
    """What `.info` answers, and where the version's files are."""

    version: str
    commit: str
    commit_time: int
    ref: str | None
    subdir: str

    @property
    def time(self) -> str:
        """The commit time as Go's JSON writes a UTC time."""
        return datetime.fromtimestamp(self.commit_time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def to_json(self, origin_url: str | None) -> dict[str, Any]:
        """The `.info` body: Version, Time and the Origin the go command records."""
        origin: dict[str, str] = {"VCS": "git", "Hash": self.commit}
        if origin_url:
            origin["URL"] = origin_url
        if self.subdir:
            origin["Subdir"] = self.subdir
        if self.ref:
            origin["Ref"] = self.ref
        return {"Version": self.version, "Time": self.time, "Origin": origin}


@dataclass(frozen=True, kw_only=True, slots=True)
class ZipAnswer:
    """A zip to send: a finished file, or a stream that becomes one."""

    etag: str
    path: Path | None
    stream: AsyncIterator[bytes] | None


@dataclass(frozen=True, kw_only=True, slots=True)
class ModuleSummary:
    """A module found in a repository, for its page and `goproxy list`."""

    path: str
    subdir: str
    versions: list[str]
    latest: str | None
    moved: list[str]


def module_path_of(go_mod: bytes) -> str | None:
    """The path a go.mod declares, or None."""
    match = _MODULE_LINE.search(go_mod)
    if match is None:
        return None
    return next(group for group in match.groups() if group).decode(errors="replace")


def go_get_line(proxy_url: str, summary: ModuleSummary, root: str, *, private: bool) -> str:
    """The command that fetches the module through this proxy, for pages and the CLI.

    The checksum database cannot know a private module, so GONOSUMDB names its root.
    """
    target = f"{summary.path}@{summary.latest or 'latest'}"
    nosumdb = f" GONOSUMDB={root}" if private else ""
    return f"GOPROXY={proxy_url}{nosumdb} go get {target}"
