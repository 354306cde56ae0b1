"""A fetch's time split into network, pack and refs, from git's trace2 events.

One real fetch over the loopback smart-HTTP server (and a second that brings nothing)
gives a real event file; hand-written events cover what a real file rarely shows.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from repodepot.branches import trace2, tracking
from repodepot.branches.trace2 import FetchTimings
from repodepot.git import commands
from repodepot.git.runner import GitRunner
from repodepot.settings import process_path
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate, git

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TOP = "20260101T000000.000000Z-Habc-P00000001"


class Progress:
    """The sink a fetch's stderr goes to: notes when the pack had fully arrived."""

    def __init__(self) -> None:
        self.received_at: datetime | None = None
        self.chunks: list[bytes] = []

    def __call__(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        if self.received_at is None and trace2.marks_received(chunk):
            self.received_at = datetime.now(UTC)


async def traced_fetch(
    runner: GitRunner, mirror: Path, url: str, trace: Path
) -> tuple[FetchTimings, Progress]:
    progress = Progress()
    await commands.fetch(
        runner, mirror, url, [tracking.refspec("main")], trace2=trace, on_progress=progress
    )
    timings = trace2.decompose(trace.read_text().splitlines(), progress.received_at)
    return timings, progress


async def test_a_real_fetch_splits_into_parts_within_its_total(
    git_server: GitHttpServer, git_root: Path, tmp_path: Path
) -> None:
    generate(git_root / "up.git", Spec(commits=300, files=60, blob_bytes=4000, binary=True))
    mirror = tmp_path / "mirror.git"
    git("init", "-q", "--bare", str(mirror))
    runner = GitRunner(runtime_dir=tmp_path / "run", path=process_path(), allowed_schemes=["http"])
    url = git_server.url("up.git")

    first, progress = await traced_fetch(runner, mirror, url, tmp_path / "first.json")

    assert progress.received_at is not None, b"".join(progress.chunks)
    parts = first.network + first.pack + first.refs
    assert first.network > 0 and first.pack >= 0 and first.refs > 0
    assert 0 < parts <= first.total
    assert (
        git("--git-dir", str(mirror), "rev-parse", "refs/upstream/main").strip()
        == git("--git-dir", str(git_root / "up.git"), "rev-parse", "main").strip()
    )

    again, progress = await traced_fetch(runner, mirror, url, tmp_path / "again.json")

    assert progress.received_at is None  # nothing new: no pack came
    assert again.pack == 0
    assert again.network > 0  # the ref listing still went over the wire
    assert 0 < again.network + again.pack + again.refs <= again.total


def event(kind: str, at: float, *, sid: str = TOP, **fields: object) -> str:
    when = (T0 + timedelta(seconds=at)).isoformat().replace("+00:00", "Z")
    return json.dumps({"event": kind, "sid": sid, "time": when, **fields})


def region(label: str, start: float, seconds: float, *, sid: str = TOP) -> list[str]:
    return [
        event("region_enter", start, sid=sid, category="fetch", label=label, nesting=1),
        event(
            "region_leave",
            start + seconds,
            sid=sid,
            category="fetch",
            label=label,
            nesting=1,
            t_rel=seconds,
        ),
    ]


def fetch_events(*, sid: str = TOP) -> list[str]:
    """A fetch: 0.1 s listing, 1 s fetching (from t=0.2), 0.05 s updating refs, 1.4 s total."""
    return [
        event("version", 0.0, sid=sid, evt="3", exe="2.39.5"),
        *region("remote_refs", 0.05, 0.1, sid=sid),
        *region("fetch_refs", 0.2, 1.0, sid=sid),
        *region("consume_refs", 1.25, 0.05, sid=sid),
        event("exit", 1.4, sid=sid, t_abs=1.4, code=0),
    ]


def test_the_pack_arriving_splits_fetch_refs_into_network_and_pack() -> None:
    timings = trace2.decompose(fetch_events(), T0 + timedelta(seconds=0.8))

    assert timings.network == pytest.approx(100 + 600)
    assert timings.pack == pytest.approx(400)
    assert timings.refs == pytest.approx(50)
    assert timings.total == pytest.approx(1400)


def test_without_a_pack_all_of_fetch_refs_is_network() -> None:
    timings = trace2.decompose(fetch_events(), None)

    assert timings.network == pytest.approx(1100)
    assert timings.pack == 0


@pytest.mark.parametrize(
    ("received", "network", "pack"),
    [(0.1, 100, 1000), (5.0, 1100, 0)],
    ids=["before-fetch-refs", "after-fetch-refs"],
)
def test_a_progress_time_outside_fetch_refs_is_clamped_to_it(
    received: float, network: float, pack: float
) -> None:
    timings = trace2.decompose(fetch_events(), T0 + timedelta(seconds=received))

    assert timings.network == pytest.approx(network)
    assert timings.pack == pytest.approx(pack)


def test_without_a_version_event_nothing_is_attributed() -> None:
    lines = [line for line in fetch_events() if '"version"' not in line]

    assert trace2.decompose(lines, T0) == FetchTimings(network=0, pack=0, refs=0, total=0)


def test_garbage_lines_are_skipped() -> None:
    lines = fetch_events()
    noisy = [
        "",
        "not json",
        '{"event": "region_leave", "sid"',  # cut short
        '{"event": "region_leave", "sid": 7}',  # a sid that is no string
        "\x00\xff",
        *lines[:3],
        '{"event": "exit"',
        *lines[3:],
    ]

    assert trace2.decompose(noisy, None) == trace2.decompose(lines, None)


@pytest.mark.parametrize("line", ["[]", "3", "null", '"text"'])
def test_json_that_is_not_an_object_is_skipped(line: str) -> None:
    lines = fetch_events()

    assert trace2.decompose([line, *lines], None) == trace2.decompose(lines, None)


def test_missing_regions_count_as_nothing() -> None:
    lines = [event("version", 0), *region("remote_refs", 0.0, 0.2), event("exit", 0.3, t_abs=0.3)]

    timings = trace2.decompose(lines, T0)

    assert timings.network == pytest.approx(200)
    assert (timings.pack, timings.refs) == (0, 0)
    assert timings.total == pytest.approx(300)


def test_children_regions_do_not_count_only_the_top_process() -> None:
    child = f"{TOP}/P00000002"
    lines = fetch_events()
    # A child (a submodule's fetch, say) with regions of the same names, interleaved.
    lines[3:3] = [event("version", 0.3, sid=child), *region("fetch_refs", 0.3, 9.0, sid=child)]

    assert trace2.decompose(lines, None) == trace2.decompose(fetch_events(), None)


def test_timings_as_dict_are_whole_milliseconds_with_the_database() -> None:
    timings = FetchTimings(network=10.4, pack=2.6, refs=0.5, total=20.0)

    assert timings.as_dict(db=3.49) == {"network": 10, "pack": 3, "refs": 0, "db": 3}


@pytest.mark.parametrize(
    ("chunk", "received"),
    [
        (b"Receiving objects: 100% (310/310), 1.20 MiB | 3.00 MiB/s, done.\n", True),
        (b"Unpacking objects: 100% (3/3), 230 bytes | 230.00 KiB/s, done.\n", True),
        (b"Receiving objects:  47% (146/310), 600.00 KiB | 1.00 MiB/s\r", False),
        (b"Resolving deltas: 100% (12/12), done.\n", False),
        (b"remote: Counting objects: 100% (310/310), done.\n", False),
    ],
)
def test_marks_received_only_on_the_finished_transfer(chunk: bytes, received: bool) -> None:
    assert trace2.marks_received(chunk) is received
