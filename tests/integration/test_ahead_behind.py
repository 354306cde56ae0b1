"""Ahead/behind of every branch against real git: each answer is `rev-list --left-right --count`.

One repository holds every shape the branches page meets: a branch merged into main and
continued, criss-cross merges, an orphan, an octopus, equal branches, ancestors either
way, and names with `/`, `+`, `.`, capitals, and `a` beside `a-b`. Counted with and
without a commit-graph, in one process and split over two.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from repodepot.branches.counts import Counter, Pair, PairCache
from repodepot.git import commands
from repodepot.git.commands import AheadBehind
from repodepot.git.runner import GitRunner
from repodepot.settings import process_path
from tests.support.histories import History

MAIN = "refs/heads/main"
HIDDEN = "refs/upstream/main"


class Spawned:
    """The git subcommands a runner ran, through its `observer` hook."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    def __call__(self, subcommand: str, outcome: str, seconds: float) -> None:
        if outcome != "started":
            self.commands.append(subcommand)


@pytest.fixture
def spawned() -> Spawned:
    return Spawned()


@pytest.fixture
def runner(tmp_path: Path, spawned: Spawned) -> GitRunner:
    return GitRunner(runtime_dir=tmp_path / "run", path=process_path(), observer=spawned)


def shaped(path: Path) -> History:
    """Every branch shape; `refs/upstream/main` (the hidden namespace) sits on `cross/y`."""
    h = History(path)
    m = h.line("main", 4)
    feature = h.line("feature", 2, m[1])
    merged = h.commit("merge feature", m[3], feature[1])
    x1, y1 = h.commit("x 1", m[2]), h.commit("y 1", m[2])
    x2, y2 = h.commit("x 2 merges y", x1, y1), h.commit("y 2 merges x", y1, x1)
    x3, y3 = h.commit("x 3", x2), h.commit("y 3", y2)
    main = h.commit("main tip", h.commit("merge cross/x", merged, x2))
    orphan = h.line("orphan", 3)
    octopus = h.commit(
        "octopus",
        h.commit("arm 1", m[0]),
        h.commit("arm 2", m[3]),
        h.commit("arm 3", orphan[0]),
    )
    branches = {
        "main": main,
        "feature/merged": h.commit("feature goes on", feature[1]),
        "cross/x": x3,
        "cross/y": y3,
        "orphan": orphan[-1],
        "equal": main,
        "behind-only": m[2],
        "ahead-only": h.line("ahead", 2, main)[-1],
        "fix+1": h.commit("fix", m[3]),
        "v1.2": h.commit("release", feature[0]),
        "user/feature.x": h.commit("dotted", merged),
        "Feature/Upper": x1,
        "a": h.commit("short", m[0]),
        "a-b": h.line("longer", 2, main)[-1],
        "octopus": h.commit("after octopus", octopus),
    }
    for name, sha in branches.items():
        h.branch(name, sha)
    h.branch(HIDDEN, y3)
    return h


def expected(h: History, base: str) -> dict[str, AheadBehind]:
    return {ref: AheadBehind(*h.rev_list_counts(ref, base)) for ref in h.heads() if ref != base}


def pairs_against(h: History, base: str) -> list[Pair]:
    heads = h.heads()
    base_sha = h.git("rev-parse", base)
    return [Pair(ref, sha, base, base_sha) for ref, sha in heads.items() if ref != base]


@pytest.fixture(params=[False, True], ids=["no-commit-graph", "commit-graph"])
async def repo(request: pytest.FixtureRequest, tmp_path: Path, runner: GitRunner) -> History:
    h = shaped(tmp_path / "shapes.git")
    graph = h.path / "objects" / "info" / "commit-graphs" / "commit-graph-chain"
    if request.param:
        await commands.write_commit_graph(runner, h.path)
        assert graph.is_file()
    else:
        assert not graph.exists()
    return h


def test_the_shapes_are_what_their_names_say(tmp_path: Path) -> None:
    # Guards the fixture itself: were a shape to collapse, the comparisons would prove less.
    h = shaped(tmp_path / "shapes.git")
    counts = expected(h, MAIN)
    assert counts["refs/heads/equal"] == (0, 0)
    assert counts["refs/heads/behind-only"].ahead == 0 < counts["refs/heads/behind-only"].behind
    assert counts["refs/heads/ahead-only"] == (2, 0)
    assert counts["refs/heads/orphan"] == (3, int(h.git("rev-list", "--count", MAIN)))
    x, y = h.heads()["refs/heads/cross/x"], h.heads()["refs/heads/cross/y"]
    assert len(h.git("merge-base", "--all", x, y).split()) == 2  # criss-cross: two bases
    assert len(h.git("rev-list", "--min-parents=3", "refs/heads/octopus").split()) == 1


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("base", [MAIN, HIDDEN])
async def test_counter_answers_every_branch_as_rev_list_does(
    repo: History, runner: GitRunner, spawned: Spawned, processes: int, base: str
) -> None:
    counter = Counter(runner, processes=processes)
    pairs = pairs_against(repo, base)
    assert len(pairs) >= 14  # every branch but the base
    before = len(spawned.commands)

    assert await counter.counts(repo.path, pairs) == expected(repo, base)
    # One batch: the git processes do not grow with the branches (the split, and one
    # listing that checks no ref moved meanwhile).
    assert len(spawned.commands) - before <= processes + 1


@pytest.mark.parametrize("base", [MAIN, HIDDEN])
async def test_track_counts_and_rev_list_counts_agree_with_plain_git(
    repo: History, runner: GitRunner, base: str
) -> None:
    want = expected(repo, base)

    tracked = await commands.track_counts(runner, repo.path, [(ref, base) for ref in want])
    assert tracked == want
    for ref, counts in want.items():
        assert await commands.rev_list_counts(runner, repo.path, ref, base) == counts


async def test_every_branch_against_every_other_is_counted_as_rev_list_does(
    runner: GitRunner, tmp_path: Path
) -> None:
    # Each ref as the base of all the others: track_counts with mixed bases in one call.
    h = shaped(tmp_path / "shapes.git")
    refs = sorted(h.heads())
    for shift in range(1, len(refs)):
        pairs = [(ref, refs[(i + shift) % len(refs)]) for i, ref in enumerate(refs)]
        want = {ref: AheadBehind(*h.rev_list_counts(ref, base)) for ref, base in pairs}
        assert await commands.track_counts(runner, h.path, pairs) == want


async def test_an_empty_repository_has_no_pairs_and_no_error(
    runner: GitRunner, spawned: Spawned, tmp_path: Path
) -> None:
    empty = History(tmp_path / "empty.git").path
    counter = Counter(runner, processes=2)

    assert await commands.ref_heads(runner, empty, "refs/heads/") == []
    assert await commands.track_counts(runner, empty, []) == {}
    before = len(spawned.commands)
    assert await counter.counts(empty, []) == {}
    assert len(spawned.commands) == before  # nothing to count: no git at all
    # Pairs read before the repository was emptied: their refs are gone, so no answer.
    sha, other = "1" * 40, "2" * 40
    assert await counter.counts(empty, [Pair("refs/heads/x", sha, MAIN, other)]) == {}
    assert len(counter.cache) == 0


async def test_a_pair_whose_side_is_gone_has_no_answer(runner: GitRunner, tmp_path: Path) -> None:
    h = shaped(tmp_path / "shapes.git")
    heads = h.heads()
    main, feature = heads[MAIN], heads["refs/heads/feature/merged"]
    counter = Counter(runner, processes=1)
    pairs = [
        Pair("refs/heads/feature/merged", feature, "refs/upstream/gone", main),
        Pair("refs/heads/gone", feature, MAIN, main),
        Pair("refs/heads/cross/x", heads["refs/heads/cross/x"], MAIN, main),
    ]

    answers = await counter.counts(h.path, pairs)

    assert answers == {"refs/heads/cross/x": AheadBehind(*h.rev_list_counts("cross/x", MAIN))}
    tracked = await commands.track_counts(
        runner, h.path, [("refs/heads/feature/merged", "refs/upstream/gone")]
    )
    assert tracked == {"refs/heads/feature/merged": None}


async def test_a_second_call_is_answered_from_the_cache_without_git(
    runner: GitRunner, spawned: Spawned, tmp_path: Path
) -> None:
    h = shaped(tmp_path / "shapes.git")
    counter = Counter(runner, processes=2)
    pairs = pairs_against(h, MAIN)
    first = await counter.counts(h.path, pairs)
    hits, ran = counter.cache.hits, len(spawned.commands)

    assert await counter.counts(h.path, pairs) == first
    # Every pair but `equal` (same commit both sides: 0/0 without a lookup) is a hit.
    assert counter.cache.hits == hits + len([p for p in pairs if p.sha != p.base_sha])
    assert len(spawned.commands) == ran


async def test_equal_commits_are_zero_without_git(
    runner: GitRunner, spawned: Spawned, tmp_path: Path
) -> None:
    h = shaped(tmp_path / "shapes.git")
    main = h.heads()[MAIN]
    counter = Counter(runner)

    assert await counter.counts(h.path, [Pair("refs/heads/equal", main, MAIN, main)]) == {
        "refs/heads/equal": AheadBehind(0, 0)
    }
    assert spawned.commands == []


async def test_a_ref_that_moved_after_listing_is_answered_but_not_cached(
    runner: GitRunner, spawned: Spawned, tmp_path: Path
) -> None:
    h = shaped(tmp_path / "shapes.git")
    heads = h.heads()
    main, listed = heads[MAIN], heads["refs/heads/fix+1"]
    # The branch moves on after the caller listed it: its pair names the old commit.
    h.branch("fix+1", h.commit("moved meanwhile", listed))
    counter = Counter(runner, processes=1)
    stale = Pair("refs/heads/fix+1", listed, MAIN, main)

    answers = await counter.counts(h.path, [stale])

    # Answered as the branch is now (git counts refs, not the SHA the caller read) ...
    assert answers == {"refs/heads/fix+1": AheadBehind(*h.rev_list_counts("fix+1", MAIN))}
    assert answers["refs/heads/fix+1"] != AheadBehind(*h.rev_list_counts(listed, main))
    # ... and that answer is not kept under the old commit's pair.
    assert len(counter.cache) == 0
    ran = len(spawned.commands)
    await counter.counts(h.path, [stale])
    assert len(spawned.commands) > ran


async def test_the_cache_forgets_the_least_recently_used_past_its_size(
    runner: GitRunner, tmp_path: Path
) -> None:
    h = shaped(tmp_path / "shapes.git")
    pairs = pairs_against(h, MAIN)[:3]
    counter = Counter(runner, cache_size=2, processes=1)

    await counter.counts(h.path, pairs)

    assert len(counter.cache) == 2
    kept = [p for p in pairs if counter.cached(p.sha, p.base_sha) is not None]
    assert len(kept) == 2


def test_pair_cache_keeps_the_recently_used_and_counts_hits() -> None:
    cache = PairCache(2)
    one, two, three = AheadBehind(1, 0), AheadBehind(2, 0), AheadBehind(3, 0)
    cache.put("a", "base", one)
    cache.put("b", "base", two)
    assert cache.get("a", "base") == one  # a is now the most recently used
    cache.put("c", "base", three)

    assert cache.get("b", "base") is None
    assert cache.get("a", "base") == one
    assert cache.get("c", "base") == three
    assert len(cache) == 2
    assert (cache.hits, cache.misses) == (3, 1)
    assert cache.hit_rate == 0.75


async def test_a_repository_s_own_branch_config_does_not_change_the_answer(
    runner: GitRunner, tmp_path: Path
) -> None:
    h = shaped(tmp_path / "shapes.git")
    h.git("config", "branch.cross/x.remote", "origin")
    h.git("config", "branch.cross/x.merge", "refs/heads/orphan")
    want = AheadBehind(*h.rev_list_counts("cross/x", MAIN))

    tracked = await commands.track_counts(runner, h.path, [("refs/heads/cross/x", MAIN)])

    assert tracked == {"refs/heads/cross/x": want}


async def test_a_branch_named_head_is_counted_like_any_other(
    runner: GitRunner, tmp_path: Path
) -> None:
    h = shaped(tmp_path / "shapes.git")
    h.branch("HEAD", h.heads()["refs/heads/cross/x"])
    want = AheadBehind(*h.rev_list_counts("refs/heads/HEAD", MAIN))
    assert want != (0, 0)

    tracked = await commands.track_counts(runner, h.path, [("refs/heads/HEAD", MAIN)])

    assert tracked == {"refs/heads/HEAD": want}
