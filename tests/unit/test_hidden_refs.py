"""Branch status's `refs/upstream/` is never reachable by a revision a user names."""

from __future__ import annotations

import pytest

from repodepot.exceptions import InvalidInput
from repodepot.git.revisions import is_plain_revision, names_hidden
from repodepot.gitserver.allowlist import check_exec


@pytest.mark.parametrize(
    "rev",
    [
        "upstream/main",
        "refs/upstream/main",
        "upstream/main~2",
        "upstream/release/1^{commit}",
        "main..upstream/main",
        "main...refs/upstream/main",
        "^upstream/main",
        "upstream",
    ],
)
def test_revisions_reaching_the_hidden_namespace_are_refused(rev: str) -> None:
    assert names_hidden(rev)
    assert not is_plain_revision(rev)
    with pytest.raises(InvalidInput, match="outside refs/upstream/"):
        check_exec(["log", rev])


@pytest.mark.parametrize(
    "rev",
    ["main", "refs/heads/upstream/x", "feature/upstreamed", "v1.0", "0123abcd", "my-upstream/x"],
)
def test_other_revisions_pass(rev: str) -> None:
    assert not names_hidden(rev)
    assert is_plain_revision(rev)
    assert check_exec(["log", rev])[-1] == rev


def test_all_excludes_the_hidden_namespace() -> None:
    checked = check_exec(["log", "--all", "--oneline"])
    assert checked.index("--exclude=refs/upstream/*") == checked.index("--all") - 1
    checked = check_exec(["rev-parse", "--all"])
    assert checked.index("--exclude=refs/upstream/*") == checked.index("--all") - 1


def test_for_each_ref_without_a_pattern_lists_only_visible_namespaces() -> None:
    checked = check_exec(["for-each-ref"])
    assert "refs/heads/" in checked and "refs/tags/" in checked
    assert not any("upstream" in arg for arg in checked)
    with pytest.raises(InvalidInput):
        check_exec(["for-each-ref", "refs/upstream/"])
    with pytest.raises(InvalidInput):
        check_exec(["for-each-ref", "--points-at", "upstream/main"])
