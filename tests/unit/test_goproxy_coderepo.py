"""The pure parts of version resolution: a module's tag versions, go.mod checks, @latest."""

from __future__ import annotations

from pathlib import Path

import pytest

from repodepot.goproxy.coderepo import declares, tagged_versions
from repodepot.goproxy.records import Module
from repodepot.goproxy.versions import latest_version

SHA = {n: f"{n}" * 40 for n in "abcdefgh"}


def module(path: str, root: str, *, code_dir: str = "", path_major: str = "") -> Module:
    return Module(
        path=path,
        repository_id=1,
        repo_name="acme/lib",
        root=root,
        code_dir=code_dir,
        path_major=path_major,
        git_dir=Path("/nonexistent"),
        source_url=None,
        public=True,
    )


TAGS = [
    ("v1.0.0", SHA["a"]),
    ("v1.10.0", SHA["b"]),
    ("v1.2.0-rc.1", SHA["c"]),
    ("v2.0.0", SHA["d"]),
    ("v1.2", SHA["e"]),  # not canonical: not a version
    ("v0.0.0-20240101000000-abcdefabcdef", SHA["f"]),  # a pseudo-version is never a tag version
    ("sub/tool/v0.3.0", SHA["g"]),
    ("release-1", SHA["h"]),
]


def test_root_module_keeps_v2_tags_as_incompatible_candidates() -> None:
    tagged = tagged_versions(TAGS, module("example.com/acme/lib", "example.com/acme/lib"))
    assert tagged.compatible == ["v1.0.0", "v1.2.0-rc.1", "v1.10.0"]
    assert tagged.incompatible == ["v2.0.0"]
    assert tagged.commits == {
        "v1.0.0": SHA["a"],
        "v1.10.0": SHA["b"],
        "v1.2.0-rc.1": SHA["c"],
        "v2.0.0": SHA["d"],
    }


def test_major_suffixed_module_lists_only_its_major() -> None:
    tagged = tagged_versions(
        TAGS, module("example.com/acme/lib/v2", "example.com/acme/lib", path_major="/v2")
    )
    assert (tagged.compatible, tagged.incompatible) == (["v2.0.0"], [])


def test_module_in_a_directory_takes_the_tags_under_its_prefix() -> None:
    tagged = tagged_versions(
        TAGS, module("example.com/acme/lib/sub/tool", "example.com/acme/lib", code_dir="sub/tool")
    )
    assert (tagged.compatible, tagged.incompatible) == (["v0.3.0"], [])
    assert tagged.commits == {"v0.3.0": SHA["g"]}


@pytest.mark.parametrize(
    ("go_mod", "path_major", "expected"),
    [
        (b"module example.com/lib\n", "", True),
        (b"module example.com/lib/v2\n", "", False),
        (b"module example.com/lib/v2\n", "/v2", True),
        (b'// comment\nmodule "example.com/lib/v3"\n', "/v3", True),
        (b"module example.com/lib\n", "/v2", False),
        (b"module example.com/lib/v1\n", "", False),  # /v1 is no module path
        (b"go 1.21\n", "", False),
        (None, "", False),
    ],
)
def test_declares_matches_the_major_suffix(
    go_mod: bytes | None, path_major: str, expected: bool
) -> None:
    assert declares(go_mod, path_major) is expected


@pytest.mark.parametrize(
    ("versions", "expected"),
    [
        (["v1.0.0", "v1.1.0", "v1.2.0-rc.1"], "v1.1.0"),
        (["v1.0.0-alpha", "v1.0.0-beta"], "v1.0.0-beta"),
        (["v1.0.0", "v2.0.0+incompatible"], "v2.0.0+incompatible"),
        ([], None),
    ],
)
def test_latest_prefers_a_release_over_a_higher_pre_release(
    versions: list[str], expected: str | None
) -> None:
    assert latest_version(versions) == expected
