"""Which files go into a module zip: golang.org/x/mod/zip's rules over a git listing."""

from __future__ import annotations

import pytest

from repodepot.git.commands import parse_ls_tree
from repodepot.goproxy.modzip import (
    MAX_ZIP_FILE,
    Entry,
    ZipRefused,
    go_lang,
    is_vendored,
    module_blobs,
    select_files,
)


def entries(*paths: str, mode: str = "100644", size: int = 1) -> list[Entry]:
    return [Entry(path, mode, "0" * 40, size) for path in paths]


def test_nested_modules_symlinks_and_hg_archival_are_left_out() -> None:
    listing = [
        *entries("go.mod", "a.go", "sub/go.mod", "sub/b.go", "sub/deep/c.go", "x/GO.MOD"),
        *entries("x/y.go", ".hg_archival.txt", "z/z.go"),
        *entries("link.go", mode="120000"),
        *entries("z/go.mod", mode="120000"),  # a symlinked go.mod is not a module
    ]
    assert [e.path for e in select_files(listing, b"module m\n")] == ["a.go", "go.mod", "z/z.go"]


@pytest.mark.parametrize(
    ("go_line", "kept"),
    [
        ("go 1.19", ["a/vendor.go", "go.mod", "vendor/modules.txt"]),
        ("go 1.24", ["a/vendor.go", "go.mod", "pkg/vendor/v.go"]),
    ],
)
def test_the_vendor_rule_follows_the_go_line(go_line: str, kept: list[str]) -> None:
    listing = entries(
        "go.mod", "vendor/modules.txt", "vendor/x.org/y/y.go", "pkg/vendor/v.go", "a/vendor.go"
    )
    go_mod = f"module m\n\n{go_line}\n".encode()
    assert [e.path for e in select_files(listing, go_mod)] == kept


def test_vendor_edge_cases() -> None:
    assert go_lang(b"module m\ngo 1.21.3\n") == (1, 21)
    assert go_lang(None) == (0, 0)
    assert not is_vendored("vendor/modules.txt", (1, 19))
    assert is_vendored("vendor/modules.txt", (1, 24))
    assert is_vendored("internal/vendor/v.go", (1, 19))  # golang.org/issue/37397, kept
    assert not is_vendored("internal/vendor/v.go", (1, 24))


@pytest.mark.parametrize(
    ("listing", "reason"),
    [
        (entries("README", "readme"), "case-insensitive file name collision"),
        (entries("Docs/a", "docs/b"), "case-insensitive file name collision"),
        (entries("a", "a/b"), "both a file and a directory"),
        (entries("bad:name"), "invalid char"),
        (entries("Go.mod"), "lowercase"),
        (entries("LICENSE", size=16 << 20 | 1), "LICENSE file too large"),
        (entries("go.mod", size=16 << 20 | 1), "go.mod file too large"),
        (entries(*(f"f{i}" for i in range(6)), size=MAX_ZIP_FILE // 5), "too large"),
    ],
)
def test_what_refuses_a_module(listing: list[Entry], reason: str) -> None:
    with pytest.raises(ZipRefused, match=reason):
        select_files(listing, None)


def test_a_module_of_exactly_the_limit_is_fine_and_symlinks_do_not_count() -> None:
    listing = [*entries("a", "b", size=MAX_ZIP_FILE // 2), *entries("c", mode="120000", size=9)]
    assert [e.path for e in select_files(listing, None)] == ["a", "b"]


def test_ls_tree_parsing_keeps_blobs_under_the_directory() -> None:
    output = (
        b"100644 blob " + b"a" * 40 + b"      12\tsub/a.go\0"
        b"160000 commit " + b"b" * 40 + b"       -\tsub/module\0"
        b"120000 blob " + b"c" * 40 + b"       5\tsub/link\0"
        b"100644 blob " + b"d" * 40 + b"       3\tsubway/x\0"
    )
    assert module_blobs(parse_ls_tree(output), "sub") == [
        Entry("a.go", "100644", "a" * 40, 12),
        Entry("link", "120000", "c" * 40, 5),
    ]
