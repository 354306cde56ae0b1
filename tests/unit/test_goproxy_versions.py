"""Versions, pseudo-versions and paths as golang.org/x/mod reads them."""

from __future__ import annotations

import pytest

from repodepot.goproxy.versions import (
    BadPath,
    BadVersion,
    canonical,
    check_file_path,
    check_module_path,
    compare,
    default_root,
    escape,
    is_pseudo,
    parse_pseudo,
    path_major_ok,
    pseudo_version,
    sort_versions,
    split_major,
    unescape,
)


def test_ordering_follows_semver() -> None:
    versions = ["v1.0.0", "v1.0.0-rc.1", "v1.0.0-beta.11", "v1.0.0-beta.2", "v0.9.0", "v1.10.0"]
    assert sort_versions(versions) == [
        "v0.9.0",
        "v1.0.0-beta.2",
        "v1.0.0-beta.11",
        "v1.0.0-rc.1",
        "v1.0.0",
        "v1.10.0",
    ]
    assert compare("v1.0.0-alpha", "v1.0.0-alpha.1") < 0
    assert compare("v1.0.0-1", "v1.0.0-alpha") < 0  # numeric identifiers sort first
    assert compare("bad", "v0.0.1") < 0


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("v1", "v1.0.0"),
        ("v1.2", "v1.2.0"),
        ("v1.2.3+meta", "v1.2.3"),
        ("v2.0.0+incompatible", "v2.0.0+incompatible"),
        ("v1.2.3-rc.01", ""),
        ("1.2.3", ""),
        ("v01.2.3", ""),
        ("v1.2-pre", ""),
    ],
)
def test_canonical(version: str, expected: str) -> None:
    assert canonical(version) == expected


def test_pseudo_versions_in_their_three_forms() -> None:
    sha = "5dd12d0cfe7f" + "0" * 28
    # pkg/errors' commit, committed 2020-12-14 17:45:52 +1100, after v0.9.1.
    epoch = 1607928352
    assert pseudo_version("", "v0.9.1", epoch, sha) == "v0.9.2-0.20201214064552-5dd12d0cfe7f"
    assert pseudo_version("", "v1.2.0-rc.1", epoch, sha) == (
        "v1.2.0-rc.1.0.20201214064552-5dd12d0cfe7f"
    )
    assert pseudo_version("/v3", "", epoch, sha) == "v3.0.0-20201214064552-5dd12d0cfe7f"
    assert pseudo_version("", "v2.1.0+incompatible", epoch, sha) == (
        "v2.1.1-0.20201214064552-5dd12d0cfe7f+incompatible"
    )
    for version, base in (
        ("v0.9.2-0.20201214064552-5dd12d0cfe7f", "v0.9.1"),
        ("v1.2.0-rc.1.0.20201214064552-5dd12d0cfe7f", "v1.2.0-rc.1"),
        ("v3.0.0-20201214064552-5dd12d0cfe7f", ""),
    ):
        assert is_pseudo(version)
        parsed = parse_pseudo(version)
        assert (parsed.base, parsed.stamp, parsed.rev) == (base, "20201214064552", sha[:12])
    assert not is_pseudo("v1.2.3")
    with pytest.raises(BadVersion):
        parse_pseudo("v1.2.3")


def test_major_suffixes() -> None:
    assert split_major("example.com/a/v2") == ("example.com/a", "/v2")
    assert split_major("example.com/a") == ("example.com/a", "")
    with pytest.raises(BadPath):
        split_major("example.com/a/v1")
    assert path_major_ok("v1.5.0", "") and path_major_ok("v0.1.0", "")
    assert not path_major_ok("v2.0.0", "") and path_major_ok("v2.0.0", "/v2")
    assert path_major_ok("v2.0.0+incompatible", "")
    assert not path_major_ok("v2.0.0+incompatible", "/v2")


def test_case_encoding_round_trips_and_refuses_raw_capitals() -> None:
    assert escape("github.com/Azure/go-autorest") == "github.com/!azure/go-autorest"
    assert unescape("github.com/!azure/go-autorest") == "github.com/Azure/go-autorest"
    assert unescape("v1.0.0-!r!c") == "v1.0.0-RC"
    for bad in ("github.com/Azure/x", "a/!", "a/!1", "é.com/x"):
        with pytest.raises(BadPath):
            unescape(bad)


def test_module_and_file_paths() -> None:
    check_module_path("example.com/Acme/Widget")
    for bad in ("Example.com/x", "localhost/x", "example.com//x", "example.com/.x", "-a.com/x"):
        with pytest.raises(BadPath):
            check_module_path(bad)
    check_file_path("docs/.hidden/ok file(1).txt")
    check_file_path("naïve/ünïcode.go")
    for bad in ("a//b", "a/", "bad:name.go", "con.txt", "x/COM1", "a/..", "tab\there"):
        with pytest.raises(BadPath):
            check_file_path(bad)


def test_default_roots_follow_the_source_url() -> None:
    assert default_root("https://github.com/Owner/Repo.git") == "github.com/Owner/Repo"
    assert default_root("https://GitLab.example.com/g/sub/p") == "gitlab.example.com/g/sub/p"
    assert default_root("http://127.0.0.1:9999/app.git") == "127.0.0.1/app"
    assert default_root("https://localhost/x.git") is None  # no dot: not a module path
    assert default_root(None) is None
