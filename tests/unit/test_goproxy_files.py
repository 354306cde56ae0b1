"""Cache keys and ETags of a version's files: they change exactly when the bytes may."""

from __future__ import annotations

from pathlib import Path

from repodepot.goproxy.files import ZIP_FORMAT, cache_path, zip_etag
from repodepot.goproxy.records import VersionInfo

A, B = "a" * 40, "b" * 40


def version(name: str, commit: str, *, subdir: str = "", ref: str | None = None) -> VersionInfo:
    return VersionInfo(version=name, commit=commit, commit_time=0, ref=ref, subdir=subdir)


def test_cache_path_is_keyed_by_module_version_commit_and_format() -> None:
    cache = Path("/cache")
    found = version("v1.0.0-RC", A)
    path = cache_path(cache, "example.com/Acme/lib", found, ".zip")
    assert path.parent.parent.parent == cache
    assert path.name == f"v1.0.0-!r!c-{A}-{ZIP_FORMAT}.zip"  # case-encoded like the go command
    assert cache_path(cache, "example.com/Acme/lib", found, ".mod") == path.with_suffix(".mod")
    others = {
        cache_path(cache, "example.com/acme/lib", found, ".zip"),
        cache_path(cache, "example.com/Acme/lib", version("v1.0.0-RC", B), ".zip"),
        cache_path(cache, "example.com/Acme/lib", version("v1.0.1", A), ".zip"),
    }
    assert path not in others
    assert len(others) == 3


def test_etag_depends_on_the_commit_not_on_how_the_version_was_reached() -> None:
    tag = zip_etag("example.com/lib", version("v1.0.0", A, ref="refs/tags/v1.0.0"))
    assert tag.startswith('"') and tag.endswith('"') and len(tag) == 34
    assert tag == zip_etag("example.com/lib", version("v1.0.0", A, subdir="", ref=None))
    assert tag != zip_etag("example.com/lib", version("v1.0.0", B))
    assert tag != zip_etag("example.com/lib/v2", version("v1.0.0", A))
