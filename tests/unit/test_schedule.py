"""When a mirror is updated next, and the sentence its page shows: pure functions, no database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from repodepot.gitserver.schedule import (
    Next,
    ScheduleReason,
    after_failure,
    after_success,
    duration,
    explain,
)

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
MINIMUM, MAXIMUM, LIMIT = 45.0, 8 * HOUR, 10  # the settings' defaults
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
UNIFORM = "repodepot.gitserver.schedule.random.uniform"  # where the jitter's factor comes from


@pytest.fixture
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Jitter's factor fixed at 1: intervals exact."""
    monkeypatch.setattr(UNIFORM, lambda low, high: 1.0)


def _after_success(last_changed: datetime | None) -> Next:
    return after_success(NOW, last_changed, minimum=MINIMUM, maximum=MAXIMUM)


def _after_failure(failures: int) -> Next:
    return after_failure(failures, minimum=MINIMUM, maximum=MAXIMUM, limit=LIMIT)


@pytest.mark.usefixtures("no_jitter")
@pytest.mark.parametrize(
    ("age", "interval"),
    [
        (10 * MINUTE, 5 * MINUTE),  # half the age of the last change
        (2 * HOUR, HOUR),
        (6 * HOUR, 3 * HOUR),
        (30.0, MINIMUM),  # changed moments ago: not more often than the minimum
        (0.0, MINIMUM),
        (40 * DAY, MAXIMUM),  # dormant: not less often than the maximum
    ],
)
def test_the_interval_grows_with_the_age_of_the_last_change(age: float, interval: float) -> None:
    following = _after_success(NOW - timedelta(seconds=age))
    assert following == Next(interval, ScheduleReason.last_change)


@pytest.mark.usefixtures("no_jitter")
def test_a_mirror_without_a_change_yet_comes_back_at_the_minimum() -> None:
    assert _after_success(None) == Next(MINIMUM, ScheduleReason.new)


@pytest.mark.usefixtures("no_jitter")
def test_a_last_change_in_the_future_a_skewed_clock_counts_as_now() -> None:
    assert _after_success(NOW + timedelta(hours=3)).interval == MINIMUM


def test_jitter_spreads_by_a_tenth_and_never_leaves_the_bounds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for factor, middle, edge_low, edge_high in (
        (0.9, 0.9 * HOUR, MINIMUM, 0.9 * MAXIMUM),
        (1.1, 1.1 * HOUR, 1.1 * MINIMUM, MAXIMUM),
    ):
        monkeypatch.setattr(UNIFORM, lambda low, high, f=factor: f)
        assert _after_success(NOW - timedelta(hours=2)).interval == pytest.approx(middle)
        assert _after_success(NOW).interval == pytest.approx(edge_low)
        assert _after_success(NOW - timedelta(days=40)).interval == pytest.approx(edge_high)


def test_jitter_is_real_so_mirrors_cloned_together_drift_apart() -> None:
    intervals = {_after_success(NOW - timedelta(hours=2)).interval for _ in range(50)}
    assert len(intervals) > 1
    assert all(0.9 * HOUR <= interval <= 1.1 * HOUR for interval in intervals)


@pytest.mark.usefixtures("no_jitter")
@pytest.mark.parametrize(
    ("failures", "interval"),
    [
        (1, MINIMUM),
        (2, 2 * MINIMUM),
        (3, 4 * MINIMUM),
        (6, 32 * MINIMUM),
        (LIMIT - 1, 256 * MINIMUM),
    ],
)
def test_failures_back_off_doubling(failures: int, interval: float) -> None:
    assert _after_failure(failures) == Next(interval, ScheduleReason.backoff)


@pytest.mark.usefixtures("no_jitter")
def test_backing_off_never_waits_longer_than_the_maximum() -> None:
    # 2^11 x 45 s is 25 h: with a higher limit, the backoff stops growing at 8 h.
    following = after_failure(12, minimum=MINIMUM, maximum=MAXIMUM, limit=20)
    assert following == Next(MAXIMUM, ScheduleReason.backoff)


@pytest.mark.parametrize("failures", [LIMIT, LIMIT + 1, 100])
def test_from_the_limit_on_a_mirror_is_failing_and_retried_at_the_maximum(failures: int) -> None:
    # Exactly the maximum, without jitter: failing mirrors do not creep back sooner.
    for _ in range(20):
        assert _after_failure(failures) == Next(MAXIMUM, ScheduleReason.failing)


@pytest.mark.usefixtures("no_jitter")
@pytest.mark.parametrize("kind", ["network", "timeout"])
def test_a_host_out_of_reach_is_tried_again_within_sixteen_minimums(kind: str) -> None:
    # An outage of minutes must not leave its mirrors hours behind once the host is back.
    intervals = [
        after_failure(n, minimum=MINIMUM, maximum=MAXIMUM, limit=LIMIT, kind=kind).interval
        for n in range(1, LIMIT)
    ]
    assert intervals == [MINIMUM * 2 ** min(n - 1, 4) for n in range(1, LIMIT)]
    assert after_failure(LIMIT, minimum=MINIMUM, maximum=MAXIMUM, limit=LIMIT, kind=kind) == Next(
        MAXIMUM, ScheduleReason.failing
    )
    other = after_failure(LIMIT - 1, minimum=MINIMUM, maximum=MAXIMUM, limit=LIMIT, kind="auth")
    assert other.interval == 256 * MINIMUM  # a refused credential keeps backing off


def test_one_below_the_limit_still_backs_off() -> None:
    assert _after_failure(LIMIT - 1).reason == "backoff"


def _explain(
    *,
    next_update_at: datetime = NOW + timedelta(minutes=30),
    reason: str = "last change",
    queued_reason: str | None = None,
    last_changed_at: datetime | None = NOW - timedelta(hours=2),
    failures: int = 0,
    failure_kind: str | None = None,
) -> str:
    return explain(
        now=NOW,
        next_update_at=next_update_at,
        reason=reason,
        queued_reason=queued_reason,
        last_changed_at=last_changed_at,
        failures=failures,
        failure_kind=failure_kind,
    )


@pytest.mark.parametrize(
    ("queued", "sentence"),
    [
        ("new", "newly discovered: cloning as soon as a worker is free"),
        ("webhook", "a push webhook arrived: updating as soon as a worker is free"),
        ("visit", "someone opened it and the mirror was stale: updating soon"),
        ("admin", "an admin asked for an update: updating as soon as a worker is free"),
    ],
)
def test_a_queued_mirror_says_who_asked(queued: str, sentence: str) -> None:
    # Whatever its schedule says: being asked for comes first.
    assert _explain(queued_reason=queued, reason="failing", failures=12) == sentence


def test_a_scheduled_mirror_says_when_and_why() -> None:
    assert _explain() == (
        "next update in 30 min (2026-11-30 12:30 UTC), because its refs last changed 2 h ago"
    )


def test_a_backing_off_mirror_says_how_many_failures_and_of_what_kind() -> None:
    said = _explain(reason="backoff", failures=3, failure_kind="network")
    assert said == (
        "next update in 30 min (2026-11-30 12:30 UTC), backing off after 3 failed updates (network)"
    )
    assert _explain(reason="backoff", failures=1).endswith("after 1 failed updates (other)")


def test_a_failing_mirror_says_what_brings_it_back() -> None:
    said = _explain(
        reason="failing",
        failures=10,
        failure_kind="auth",
        next_update_at=NOW + timedelta(hours=8),
    )
    assert said == (
        "next update in 8 h (2026-11-30 20:00 UTC): failing after 10 failed updates (auth); "
        "retried at the longest interval until a webhook or an admin's update"
    )


def test_a_new_or_overdue_mirror_says_only_when() -> None:
    assert _explain(reason="new", last_changed_at=None) == (
        "next update in 30 min (2026-11-30 12:30 UTC)"
    )
    overdue = _explain(reason="new", next_update_at=NOW - timedelta(minutes=5))
    assert overdue == "next update in 0 s (2026-11-30 11:55 UTC)"


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (0, "0 s"),
        (45, "45 s"),
        (89, "89 s"),
        (90, "2 min"),
        (12 * MINUTE, "12 min"),
        (89 * MINUTE, "89 min"),
        (90 * MINUTE, "1.5 h"),
        (2 * HOUR, "2 h"),
        (3.5 * HOUR, "3.5 h"),
        (47 * HOUR, "47 h"),
        (48 * HOUR, "2 d"),
        (10 * DAY, "10 d"),
    ],
)
def test_durations_read_in_the_unit_a_person_would_use(seconds: float, words: str) -> None:
    assert duration(seconds) == words


def test_a_queue_reason_of_a_newer_version_is_shown_as_it_is() -> None:
    assert _explain(queued_reason="rebalance") == "queued (rebalance)"
