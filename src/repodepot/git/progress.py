"""Parse `git clone --progress` stderr into typed events.

git separates updates with a carriage return and ends a phase with a newline; lines from the
server start with `remote: `. Feed raw bytes as they arrive: a record cut
between two chunks is kept until its end shows up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RECORD = re.compile(
    r"^(?P<remote>remote: )?"
    r"(?P<phase>Enumerating objects|Counting objects|Compressing objects|Receiving objects"
    r"|Resolving deltas|Checking connectivity|Checking objects|Updating files)"
    r":\s+(?:(?P<percent>\d+)%\s+\((?P<current>\d+)/(?P<total>\d+)\)|(?P<count>\d+))"
    r"(?:,\s+(?P<bytes>[\d.]+ [KMGT]?i?B)(?:\s+\|\s+(?P<rate>[\d.]+ [KMGT]?i?B/s))?)?"
    r"(?P<done>,\s+done\.)?"
)
_UNITS = {
    "B": 1,
    "KiB": 1 << 10,
    "MiB": 1 << 20,
    "GiB": 1 << 30,
    "TiB": 1 << 40,
    "kB": 1000,
    "KB": 1000,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
}
_SPLIT = re.compile(rb"[\r\n]")


@dataclass(frozen=True, kw_only=True, slots=True)
class PhaseProgress:
    """One progress record: `Receiving objects:  40% (10472/26179), 11.36 MiB | 62.54 MiB/s`."""

    phase: str
    remote: bool
    percent: int | None
    current: int
    total: int | None
    bytes: int | None = None
    rate: float | None = None
    done: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class Message:
    """A line that is not a progress record (`Cloning into…`, `remote: Total…`, server notes)."""

    text: str
    remote: bool


ProgressEvent = PhaseProgress | Message


def parse_size(text: str) -> int:
    """`11.36 MiB` → 11911823; raises ValueError for anything else."""
    number, _, unit = text.strip().partition(" ")
    unit = unit.removesuffix("/s")
    if unit not in _UNITS:
        raise ValueError(f"unknown unit in {text!r}")
    return int(float(number) * _UNITS[unit])


def parse_record(record: str) -> ProgressEvent | None:
    """Parse one record (a line without its CR or LF); None for an empty one."""
    text = record.strip()
    if not text:
        return None
    match = _RECORD.match(text)
    if match is None:
        remote = text.startswith("remote: ")
        return Message(
            text=text.removeprefix("remote: ").strip() if remote else text, remote=remote
        )
    count = match["count"]
    return PhaseProgress(
        phase=match["phase"],
        remote=match["remote"] is not None,
        percent=int(match["percent"]) if match["percent"] else None,
        current=int(match["current"] or count or 0),
        total=int(match["total"]) if match["total"] else None,
        bytes=parse_size(match["bytes"]) if match["bytes"] else None,
        rate=float(parse_size(match["rate"])) if match["rate"] else None,
        done=match["done"] is not None,
    )


class ProgressParser:
    """Incremental parser: `feed(chunk)` returns the events completed by that chunk."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, chunk: bytes) -> list[ProgressEvent]:
        """Parse the complete records in `pending + chunk`; keep the unfinished tail."""
        pieces = _SPLIT.split(self._pending + chunk)
        self._pending = pieces.pop()
        return [
            event
            for piece in pieces
            if (event := parse_record(piece.decode("utf-8", "replace"))) is not None
        ]

    def close(self) -> list[ProgressEvent]:
        """Parse whatever is left once the stream has ended."""
        tail, self._pending = self._pending, b""
        event = parse_record(tail.decode("utf-8", "replace"))
        return [event] if event is not None else []
