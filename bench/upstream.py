"""The load test's code host: the loopback git server in a process of its own, at nice 19.

In the test suite the smart-HTTP git server is a thread of the test process. Under the
load plan it serves every background fetch, and in the process of the 100 simulated
users its relaying held their interpreter lock: the users' clocks then measured the
code host's work as the server's. A code host is another machine; here it is another
process at the lowest CPU priority, so that what it costs the two cores is not counted
against repodepot's foreground. Each request it answers is appended to a file as
`METHOD PATH STATUS`, for the bench to count fetches.

`python -m bench.upstream ROOT LOG` prints the port, then serves until killed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from tests.support.githttp import GitHttpServer


class Upstream:
    """`GitHttpServer(root)` in a child process at nice 19: `port` and `requests`."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root = root
        self.log = log
        self.port = 0
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> Upstream:
        self.log.write_text("")
        self._process = subprocess.Popen(
            [
                "nice",
                "-n",
                "19",
                sys.executable,
                "-m",
                "bench.upstream",
                str(self.root),
                str(self.log),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        )
        assert self._process.stdout is not None
        self.port = int(self._process.stdout.readline())
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """Every request answered so far, oldest first."""
        found = []
        for line in self.log.read_text().splitlines():
            method, path, status = line.split(" ")
            found.append((method, path, int(status)))
        return found


def main(root: str, log: str) -> None:
    with GitHttpServer(Path(root)) as server, open(log, "a") as out:
        print(server.port, flush=True)
        written = 0
        while True:
            time.sleep(0.2)
            for method, path, status in server.requests[written:]:
                out.write(f"{method} {path} {status}\n")
                written += 1
            out.flush()


if __name__ == "__main__":
    main(*sys.argv[1:])
