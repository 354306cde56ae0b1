"""Tracked-branch specs: what `PUT …/upstream` accepts in `branches`, and what it fetches.

Names are branch names without `refs/heads/` (a name that spells `refs/heads/x` is the
branch of that literal name); a glob has one `*` on each side; `LOCAL:UPSTREAM` maps.
Whatever is accepted may only ever be fetched into the hidden `refs/upstream/`.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repodepot.branches import tracking
from repodepot.branches.tracking import Spec
from repodepot.exceptions import InvalidInput

# Parts of names `parse` accepts, and names built from them (plain, globbed, mapped).
PART = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_+-]{0,6}(\.[A-Za-z0-9_+-]{1,4})?", fullmatch=True)
NAME = st.lists(PART, min_size=1, max_size=4).map("/".join)


@st.composite
def globs(draw: st.DrawFn) -> str:
    """A name with one part, or part of one, replaced by `*`."""
    parts = draw(st.lists(PART, min_size=1, max_size=4))
    index = draw(st.integers(0, len(parts) - 1))
    part = parts[index]
    cut = draw(st.integers(0, len(part)))
    parts[index] = draw(st.sampled_from(["*", part[:cut] + "*" + part[cut:]]))
    return "/".join(parts)


@st.composite
def raw_specs(draw: st.DrawFn) -> str:
    """One `branches` entry: a name, a glob, or a mapping of two of the same kind."""
    kind = draw(st.sampled_from([NAME, globs()]))
    local = draw(kind)
    return local if draw(st.booleans()) else f"{local}:{draw(kind)}"


def refused(specs: list[object]) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        tracking.parse(specs)  # type: ignore[arg-type]
    assert caught.value.field == "branches"
    return caught.value


@pytest.mark.parametrize(
    ("raw", "spec"),
    [
        ("main", Spec("main", "main")),
        ("release/*", Spec("release/*", "release/*")),
        ("main:master", Spec("main", "master")),
        ("rel/*:release/*", Spec("rel/*", "release/*")),
        ("v1.2", Spec("v1.2", "v1.2")),
        ("fix+1/A_b-c", Spec("fix+1/A_b-c", "fix+1/A_b-c")),
        ("rel-*", Spec("rel-*", "rel-*")),
        ("*", Spec("*", "*")),
        ("x" * tracking.MAX_NAME, Spec("x" * tracking.MAX_NAME, "x" * tracking.MAX_NAME)),
        # A branch literally named `refs/heads/x` (git allows it): not the branch `x`.
        ("refs/heads/x", Spec("refs/heads/x", "refs/heads/x")),
    ],
)
def test_accepted_specs(raw: str, spec: Spec) -> None:
    assert tracking.parse([raw]) == [spec]
    assert str(spec) == (spec.local if spec.local == spec.upstream else raw)


def test_a_literal_refs_heads_name_is_fetched_under_its_own_name() -> None:
    (spec,) = tracking.parse(["refs/heads/x"])
    assert tracking.refspec(spec.upstream) == "+refs/heads/refs/heads/x:refs/upstream/refs/heads/x"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        " ",
        "main ",
        "ma in",
        "ma\tin",
        "ma\nin",
        "ma\x00in",
        "ma\x7fin",
        "main:*",
        "*:main",
        "release/**",
        "a*/b*",
        "*:*/*",
        "a..b",
        "a/../b",
        "-main",
        "a/-b",
        ".hidden",
        "a/.b",
        "a.",
        "a.lock",
        "a/b.lock/c",
        "/a",
        "a/",
        "a//b",
        ":main",
        "main:",
        "main:master:x",
        "a@{1}",
        "a~1",
        "a^",
        "a?",
        "a[b]",
        "a\\b",
        "é",
        "x" * (tracking.MAX_NAME + 1),
        "main:" + "x" * (tracking.MAX_NAME + 1),
    ],
)
def test_refused_specs_name_the_field_and_the_entry(raw: str) -> None:
    error = refused(["main", raw])
    assert error.message.startswith("branches: ")
    assert repr(raw) in error.message  # the entry that is wrong, not the first one


@pytest.mark.parametrize("entry", [1, None, b"main", ["main"], {"main": "master"}])
def test_an_entry_that_is_not_a_string_is_refused(entry: object) -> None:
    assert "string" in refused(["main", entry]).message


def test_an_empty_list_is_refused() -> None:
    assert "at least one" in refused([]).message


def test_at_most_fifty_distinct_entries() -> None:
    fifty = [f"b{i}" for i in range(tracking.MAX_SPECS)]
    assert len(tracking.parse(fifty)) == tracking.MAX_SPECS
    assert str(tracking.MAX_SPECS) in refused([*fifty, "one-more"]).message
    # Repeats are one entry: the same spec twice tracks nothing more.
    assert tracking.parse(["main"] * 60) == [Spec("main", "main")]


def test_upstream_for_and_local_for_map_a_glob_both_ways() -> None:
    spec = Spec("rel/*", "release/*")
    assert spec.upstream_for("rel/1.0") == "release/1.0"
    assert spec.upstream_for("rel/a/b") == "release/a/b"  # `*` spans `/`, as in git refspecs
    assert spec.upstream_for("release/1.0") is None
    assert spec.upstream_for("rel/") is None  # `*` stands for at least one character
    assert spec.local_for("release/1.0") == "rel/1.0"
    assert spec.local_for("rel/1.0") is None
    plain = Spec("main", "master")
    assert (plain.upstream_for("main"), plain.upstream_for("master")) == ("master", None)
    assert (plain.local_for("master"), plain.local_for("main")) == ("main", None)


def test_pairs_of_a_glob_take_branches_either_side_has() -> None:
    specs = tracking.parse(["release/*", "main"])
    local = ["main", "release/1", "release/2", "topic"]
    upstream = ["main", "release/2", "release/3", "other"]

    assert tracking.pairs(specs, local, upstream) == [
        ("main", "main"),
        ("release/1", "release/1"),  # local only: missing upstream
        ("release/2", "release/2"),
        ("release/3", "release/3"),  # upstream only: missing locally
    ]


def test_pairs_of_a_mapping_and_a_plain_name_present_nowhere() -> None:
    specs = tracking.parse(["main:master", "rel/*:release/*", "gone"])
    local = ["main", "rel/1", "master"]
    upstream = ["master", "release/1", "release/2", "rel/9"]

    assert tracking.pairs(specs, local, upstream) == [
        ("gone", "gone"),  # a plain spec is always a pair: `missing` shows it
        ("main", "master"),
        ("rel/1", "release/1"),
        ("rel/2", "release/2"),
    ]


@pytest.mark.parametrize(
    ("specs", "paired"),
    [
        (["main:master", "main"], ("main", "master")),
        (["main", "main:master"], ("main", "main")),
        (["release/*", "release/1:legacy"], ("release/1", "release/1")),
        (["release/1:legacy", "release/*"], ("release/1", "legacy")),
    ],
)
def test_the_first_spec_covering_a_local_branch_wins(
    specs: list[str], paired: tuple[str, str]
) -> None:
    found = dict(tracking.pairs(tracking.parse(specs), ["main", "release/1"], ["release/1"]))
    assert (paired[0], found[paired[0]]) == paired


def test_upstream_wanted_asks_only_for_tracked_upstream_branches() -> None:
    specs = tracking.parse(["main:master", "rel/*:release/*"])
    heads = ["main", "master", "release/1", "release/2", "rel/3", "other"]

    assert tracking.upstream_wanted(specs, heads) == ["master", "release/1", "release/2"]
    assert tracking.upstream_wanted(specs, []) == []


def test_refspec_fetches_one_upstream_branch_into_the_hidden_namespace() -> None:
    assert tracking.refspec("release/1") == "+refs/heads/release/1:refs/upstream/release/1"


def _assert_hidden(refspec: str) -> None:
    assert refspec.startswith("+refs/heads/")
    assert refspec.count(":") == 1
    assert ".." not in refspec
    assert "*" not in refspec  # a glob is expanded before any fetch
    assert not set(refspec) & set(string.whitespace)
    source, destination = refspec[1:].split(":")
    assert destination.startswith(tracking.NAMESPACE)
    assert destination.removeprefix(tracking.NAMESPACE) == source.removeprefix("refs/heads/")


@given(raw=raw_specs(), star=NAME)
def test_every_refspec_from_an_accepted_spec_stays_in_the_hidden_namespace(
    raw: str, star: str
) -> None:
    try:
        specs = tracking.parse([raw])
    except InvalidInput:
        return  # `..` across a glob's parts, a trailing `.`: refused, nothing to fetch
    (spec,) = specs
    # What the upstream might have: the plain name, or the glob with `*` filled in.
    wanted = tracking.upstream_wanted(specs, [spec.upstream.replace("*", star)])
    assert len(wanted) == 1
    _assert_hidden(tracking.refspec(wanted[0]))


@given(raw=st.text(alphabet="ab/.*:+-_ \t@{}^~?[\\\x00\x7f", min_size=0, max_size=14))
def test_anything_parse_accepts_fetches_only_into_the_hidden_namespace(raw: str) -> None:
    field = "branches"
    try:
        specs = tracking.parse([raw])
    except InvalidInput as error:
        field, specs = error.field or "", []
    assert field == "branches"
    for spec in specs:
        assert spec.local.count("*") == spec.upstream.count("*") <= 1
        _assert_hidden(tracking.refspec(spec.upstream.replace("*", "x")))


def test_a_bare_string_and_head_are_refused() -> None:
    with pytest.raises(InvalidInput) as refused:
        tracking.parse("main")  # a str is an Iterable[str]: refused, not read as m, a, i, n
    assert refused.value.field == "branches"
    with pytest.raises(InvalidInput, match="HEAD"):
        tracking.parse(["HEAD"])
    with pytest.raises(InvalidInput, match="HEAD"):
        tracking.parse(["main:HEAD"])
