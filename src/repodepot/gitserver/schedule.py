"""When a mirror is updated next, and why, in words: pure functions of its history.

- After a successful update: half the time since its refs last changed, clamped to
  [min, max], with ±10% jitter so repositories cloned together drift apart.
- After a failure: min * 2^(failures-1), capped at max; after N failures in a row the
  mirror is `failing` and retried only at max, until something asks for it. A host that
  could not be reached (a `network` or `timeout` failure) is tried again at most
  min * 2^TRANSIENT_DOUBLINGS later: an outage of a few minutes must not leave its
  mirrors hours behind once the host is back, and a refused connection costs nothing.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import datetime

from repodepot.gitserver.failures import FailureKind

JITTER = 0.1


class QueueReason(enum.StrEnum):
    """Why a mirror is in the queue; `new` goes first (priority 0), the others next (1)."""

    new = "new"
    webhook = "webhook"
    visit = "visit"
    admin = "admin"

    @property
    def priority(self) -> int:
        """The queue's order: lower first."""
        return 0 if self is QueueReason.new else 1

    @property
    def resumes(self) -> bool:
        """Whether it also lifts a mirror's `failing` (a person or the host asked)."""
        return self in (QueueReason.webhook, QueueReason.admin)


class ScheduleReason(enum.StrEnum):
    """Why the next update is when it is."""

    new = "new"
    last_change = "last change"
    backoff = "backoff"
    failing = "failing"


@dataclass(frozen=True, slots=True)
class Next:
    """The next update: how long from now, and the reason shown to people."""

    interval: float
    reason: ScheduleReason


def after_success(
    now: datetime, last_changed: datetime | None, *, minimum: float, maximum: float
) -> Next:
    """Half the age of the last change, clamped, jittered."""
    if last_changed is None:
        return Next(_jitter(minimum, minimum, maximum), ScheduleReason.new)
    age = max(0.0, (now - last_changed).total_seconds())
    return Next(_jitter(age / 2, minimum, maximum), ScheduleReason.last_change)


TRANSIENT = frozenset({FailureKind.network, FailureKind.timeout})  # a host out of reach
TRANSIENT_DOUBLINGS = 4  # their backoff stops growing at 16 x the minimum


def after_failure(
    failures: int, *, minimum: float, maximum: float, limit: int, kind: str | None = None
) -> Next:
    """Exponential backoff with a cap (a lower one for TRANSIENT kinds); `failing` from `limit`."""
    if failures >= limit:
        return Next(maximum, ScheduleReason.failing)
    doublings = failures - 1
    if kind in TRANSIENT:
        doublings = min(doublings, TRANSIENT_DOUBLINGS)
    return Next(_jitter(minimum * 2**doublings, minimum, maximum), ScheduleReason.backoff)


def _jitter(seconds: float, minimum: float, maximum: float) -> float:
    clamped = min(max(seconds, minimum), maximum)
    return min(max(clamped * random.uniform(1 - JITTER, 1 + JITTER), minimum), maximum)


def duration(seconds: float) -> str:
    """`45 s`, `12 min`, `3.5 h`, `2 d`."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h".replace(".0 h", " h")
    return f"{seconds / 86400:.0f} d"


def explain(
    *,
    now: datetime,
    next_update_at: datetime,
    reason: str,
    queued_reason: str | None,
    last_changed_at: datetime | None,
    failures: int,
    failure_kind: str | None,
) -> str:
    """The schedule in one sentence, for the repository's page and API entry."""
    if queued_reason is not None:
        asked = {
            QueueReason.new: "newly discovered: cloning as soon as a worker is free",
            QueueReason.webhook: "a push webhook arrived: updating as soon as a worker is free",
            QueueReason.visit: "someone opened it and the mirror was stale: updating soon",
            QueueReason.admin: "an admin asked for an update: updating as soon as a worker is free",
        }
        known = queued_reason in QueueReason.__members__.values()
        return asked[QueueReason(queued_reason)] if known else f"queued ({queued_reason})"
    wait = max(0.0, (next_update_at - now).total_seconds())
    when = f"next update in {duration(wait)} ({next_update_at:%Y-%m-%d %H:%M} UTC)"
    if reason == ScheduleReason.last_change and last_changed_at is not None:
        age = duration(max(0.0, (now - last_changed_at).total_seconds()))
        return f"{when}, because its refs last changed {age} ago"
    if reason == ScheduleReason.backoff:
        return f"{when}, backing off after {failures} failed updates ({failure_kind or 'other'})"
    if reason == ScheduleReason.failing:
        return (
            f"{when}: failing after {failures} failed updates ({failure_kind or 'other'}); "
            "retried at the longest interval until a webhook or an admin's update"
        )
    return when
