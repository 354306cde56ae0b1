"""repodepot's server for tests and benchmarks: as a process, or in-process on a real uvicorn."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import uvicorn

from repodepot.services import Services
from repodepot.settings import Settings
from repodepot.web.app import create_app
from tests.support.postgres import free_port


class ServeProcess:
    """`python -m repodepot serve` on a free port, ready when constructed; `stop()` it."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data_dir.parent / f"serve-{self.port}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("REPODEPOT_")}
        full_env.update(env)
        self._log = self.log.open("w")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "repodepot",
                "serve",
                "--data-dir",
                str(data_dir),
                "--listen",
                f"127.0.0.1:{self.port}",
            ],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited early:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"serve did not become ready:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


class LiveApp:
    """The app served by a real uvicorn on 127.0.0.1 (SSE needs a real HTTP stream)."""

    def __init__(self, url: str, services: Services) -> None:
        self.url = url
        self.services = services


@asynccontextmanager
async def live_app(
    settings: Settings, tls: tuple[Path, Path] | None = None
) -> AsyncIterator[LiveApp]:
    """Run the app for `settings` in this event loop until the block ends.

    With `tls` (certificate, key) it serves https.
    """
    port = free_port()
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    if tls is not None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            lifespan="on",
            ssl_certfile=str(tls[0]),
            ssl_keyfile=str(tls[1]),
        )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # uvicorn offers no event to wait on
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
        scheme = "https" if tls else "http"
        yield LiveApp(f"{scheme}://127.0.0.1:{port}", app.state.services)
    finally:
        server.should_exit = True
        await task
