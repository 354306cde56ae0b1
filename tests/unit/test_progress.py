"""The progress parser on real `git clone --progress` output captured from the test server."""

from __future__ import annotations

from pathlib import Path

import pytest

from repodepot.git.progress import Message, PhaseProgress, ProgressParser, parse_record, parse_size

DATA = Path(__file__).parent.parent / "data"


def _parse_in_chunks(raw: bytes, size: int) -> list[PhaseProgress | Message]:
    parser = ProgressParser()
    events = []
    for start in range(0, len(raw), size):
        events += parser.feed(raw[start : start + size])
    return events + parser.close()


@pytest.mark.parametrize("chunk", [1, 7, 4096, 1 << 20])
def test_real_output_parses_the_same_whatever_the_chunking(chunk: int) -> None:
    raw = (DATA / "progress-plain.txt").read_bytes()
    events = _parse_in_chunks(raw, chunk)
    assert events == _parse_in_chunks(raw, 1 << 20)
    phases = [e.phase for e in events if isinstance(e, PhaseProgress)]
    assert phases[0] == "Enumerating objects"
    assert {
        "Counting objects",
        "Compressing objects",
        "Receiving objects",
        "Resolving deltas",
    } <= set(phases)
    receiving = [
        e for e in events if isinstance(e, PhaseProgress) and e.phase == "Receiving objects"
    ]
    assert receiving[-1].done and receiving[-1].percent == 100
    assert receiving[-1].current == receiving[-1].total == 12040
    assert receiving[-1].bytes is not None and receiving[-1].bytes > 1 << 20
    assert all(
        e.remote
        for e in events
        if isinstance(e, PhaseProgress) and e.phase in {"Counting objects", "Compressing objects"}
    )
    currents = [e.current for e in receiving]
    assert currents == sorted(currents)
    messages = [e for e in events if isinstance(e, Message)]
    assert messages[0].text.startswith("Cloning into bare repository")
    assert any(m.remote and m.text.startswith("Total 12040") for m in messages)


def test_bitmap_output_has_no_counting_phase() -> None:
    events = _parse_in_chunks((DATA / "progress-bitmap.txt").read_bytes(), 512)
    phases = {e.phase for e in events if isinstance(e, PhaseProgress)}
    assert "Receiving objects" in phases and "Resolving deltas" in phases
    assert "Counting objects" not in phases


def test_records_with_rates() -> None:
    event = parse_record("Receiving objects:  44% (184888/420200), 18.85 MiB | 37.69 MiB/s")
    assert event == PhaseProgress(
        phase="Receiving objects",
        remote=False,
        percent=44,
        current=184888,
        total=420200,
        bytes=int(18.85 * (1 << 20)),
        rate=float(int(37.69 * (1 << 20))),
    )
    done = parse_record("Receiving objects: 100% (26179/26179), 11.36 MiB | 62.54 MiB/s, done.")
    assert isinstance(done, PhaseProgress) and done.done
    counted = parse_record("remote: Enumerating objects: 26179, done.        ")
    assert isinstance(counted, PhaseProgress)
    assert (counted.current, counted.total, counted.remote, counted.done) == (
        26179,
        None,
        True,
        True,
    )


def test_unknown_lines_and_remote_messages_are_messages() -> None:
    parser = ProgressParser()
    events = parser.feed(
        b"remote: Welcome to the mirror!        \n"
        b"warning: redirecting to https://x/\r\nReceiving obj"
    )
    assert events == [
        Message(text="Welcome to the mirror!", remote=True),
        Message(text="warning: redirecting to https://x/", remote=False),
    ]
    events = parser.feed(b"ects:  50% (1/2)\r")
    assert isinstance(events[0], PhaseProgress) and events[0].percent == 50


def test_sizes() -> None:
    assert parse_size("1.00 KiB") == 1024
    assert parse_size("2 MiB/s") == 2 << 20
    assert parse_size("512 bytes".replace("bytes", "B")) == 512
    with pytest.raises(ValueError, match="unknown unit"):
        parse_size("3 parsecs")
