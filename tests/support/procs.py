"""Processes as the kernel sees them: which run a command line, at which priorities."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def with_argument(argument: str) -> list[int]:
    """The pids of live processes whose command line holds `argument`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argument.encode() in argv and int(entry.name) != os.getpid():
            found.append(int(entry.name))
    return found


def niceness(pid: int) -> int:
    """Field 19 of /proc/PID/stat (after the command name, which may hold spaces)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rpartition(")")[2].split()[16])


def io_class(pid: int) -> str:
    """What `ionice -p PID` says: `idle`, `none: prio 0`, `best-effort: prio 4`..."""
    result = subprocess.run(["ionice", "-p", str(pid)], capture_output=True, text=True, check=True)
    return result.stdout.strip()
