"""Where a fetch's time went, from git's trace2 events and the progress it printed (pure).

`GIT_TRACE2_EVENT` makes git (and its children) write one JSON object per event. For
a fetch, the regions `fetch/remote_refs` (the ref listing round trip), `fetch/fetch_refs`
(negotiation, the server's packing, the transfer and `index-pack`) and
`fetch/consume_refs` (the connectivity check and the ref update) split the time, and
the progress line `Receiving objects: 100% (…), done.` marks when the last byte came in:

- network: the ref listing, plus `fetch_refs` up to the end of the transfer;
- pack: the rest of `fetch_refs` (index-pack resolving deltas and writing the index);
- refs: `consume_refs`.

The database's share is measured by the caller. Every event carries a wall-clock `time`,
so the progress line's arrival (our clock) lines up with git's events.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class FetchTimings:
    """A fetch's duration split into its parts, milliseconds."""

    network: float
    pack: float
    refs: float
    total: float

    def as_dict(self, db: float) -> dict[str, int]:
        """The parts and the database's share `db`, whole milliseconds."""
        return {
            "network": round(self.network),
            "pack": round(self.pack),
            "refs": round(self.refs),
            "db": round(db),
        }


def _when(event: dict[str, object]) -> datetime | None:
    raw = event.get("time")
    if not isinstance(raw, str):
        return None
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


def decompose(lines: Iterable[str], received_at: datetime | None) -> FetchTimings:
    """The split of the fetch whose trace2 events are `lines`.

    `received_at` is when the progress said the transfer was done (None when no pack
    came: nothing new, or too small to report). Events of child processes are ignored
    except through the top-level regions that wait for them.
    """
    top: str | None = None
    regions: dict[str, tuple[datetime | None, float]] = {}
    starts: dict[str, datetime | None] = {}
    total = 0.0
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        sid = event.get("sid")
        if not isinstance(sid, str):
            continue
        if top is None and event.get("event") == "version":
            top = sid
        if sid != top:
            continue
        kind = event.get("event")
        label = f"{event.get('category')}/{event.get('label')}"
        if kind == "region_enter":
            starts[label] = _when(event)
        elif kind == "region_leave":
            regions[label] = (starts.get(label), float(event.get("t_rel") or 0.0) * 1000)
        elif kind == "exit":
            total = float(event.get("t_abs") or 0.0) * 1000
    listing = regions.get("fetch/remote_refs", (None, 0.0))[1]
    started, fetching = regions.get("fetch/fetch_refs", (None, 0.0))
    refs = regions.get("fetch/consume_refs", (None, 0.0))[1]
    transfer = fetching
    if received_at is not None and started is not None:
        transfer = min(fetching, max(0.0, (received_at - started).total_seconds() * 1000))
    return FetchTimings(
        network=listing + transfer, pack=fetching - transfer, refs=refs, total=total
    )


RECEIVED = (b"Receiving objects: 100%", b"Unpacking objects: 100%")


def marks_received(chunk: bytes) -> bool:
    """Whether a progress chunk says the pack has arrived in full."""
    return any(mark in chunk for mark in RECEIVED) and b"done" in chunk
