"""A repository's modules, from its go.mod files at HEAD and its tag names."""

from __future__ import annotations

from repodepot.goproxy.listing import module_paths

ROOT = "example.com/acme/lib"


def test_go_mod_declarations_under_the_root_name_the_module() -> None:
    paths = module_paths(
        [("", ROOT), ("v2", f"{ROOT}/v2"), ("sub/tool", f"{ROOT}/sub/tool")], [], ROOT
    )
    assert paths == {ROOT: "", f"{ROOT}/v2": "v2", f"{ROOT}/sub/tool": "sub/tool"}


def test_a_declaration_outside_the_root_or_none_counts_as_the_directory() -> None:
    paths = module_paths([("", "github.com/upstream/lib"), ("tools", None)], [], ROOT)
    assert paths == {ROOT: "", f"{ROOT}/tools": "tools"}


def test_tags_add_modules_by_prefix_and_major() -> None:
    paths = module_paths(
        [("", ROOT)],
        ["v1.0.0", "cmd/x/v0.1.0", "cmd/x/v2.0.0", "release-1", "old/v1.2", "v3.0.0"],
        ROOT,
    )
    assert paths == {
        ROOT: "",
        f"{ROOT}/cmd/x": "cmd/x",
        f"{ROOT}/cmd/x/v2": "cmd/x",
    }  # v3.0.0 at the root names no new module: no go.mod declares {ROOT}/v3


def test_v2_tags_of_a_root_module_without_go_mod_are_its_incompatible_versions() -> None:
    assert module_paths([], ["v2.0.0", "v3.1.0"], ROOT) == {ROOT: ""}


def test_the_first_finding_of_a_path_wins() -> None:
    paths = module_paths(
        [("a", f"{ROOT}/shared"), ("b", f"{ROOT}/shared")], ["shared/v1.0.0"], ROOT
    )
    assert paths == {f"{ROOT}/shared": "a"}
