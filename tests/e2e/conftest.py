from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from tests.conftest import GATE_OFF
from tests.support.servers import ServeProcess


def cli(
    *args: str, env: dict[str, str] | None = None, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m repodepot ARGS` as a user would."""
    full_env = {key: value for key, value in os.environ.items() if not key.startswith("REPODEPOT_")}
    full_env.update(GATE_OFF)
    full_env.update(env or {})
    full_env["COLUMNS"] = "200"
    result = subprocess.run(
        [sys.executable, "-m", "repodepot", *args],
        env=full_env,
        text=True,
        capture_output=True,
        timeout=120,
        input=input,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"repodepot {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result


class Server(ServeProcess):
    """`repodepot serve` as the suite runs it: the backpressure gate off (tests/conftest.py)."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        super().__init__(data_dir, {**GATE_OFF, **env})


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium driven by Playwright (never a downloaded browser)."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
def serve() -> Iterator[type[Server]]:
    started: list[Server] = []

    class Tracked(Server):
        def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
            super().__init__(data_dir, env)
            started.append(self)

    yield Tracked
    for server in started:
        server.stop()
