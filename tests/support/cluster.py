"""A cluster of real processes for the storage node tests: one PostgreSQL, web and
gitserver processes (`repodepot serve`), each with its own data dir and loopback port.

`node_env` is what every process of such a cluster shares (fast heartbeats: a killed
node is dead 4 s after its last beat); `start_node` starts a gitserver process whose
internal URL (its own port) is known before it starts; `all_active` waits until the
registry says the named nodes are active. `clone_mirror` and `refs_of` run plain git.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.support import servers
from tests.support.eventually import eventually
from tests.support.postgres import free_port
from tests.support.repogen import HERMETIC, git

if TYPE_CHECKING:
    from tests.e2e.conftest import Server

TOKEN = "rdp_routing-admin-token-0123456789"
SECRET_KEY = "test-secret-key-" + "x" * 32
INTERNAL = "internal-secret-" + "y" * 32


def node_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment every process of a test cluster shares, with `extra` on top."""
    return {
        "REPODEPOT_DATABASE_URL": database_url,
        "REPODEPOT_ADMIN_TOKEN": TOKEN,
        "REPODEPOT_SECRET_KEY": SECRET_KEY,
        "REPODEPOT_INTERNAL_SECRET": INTERNAL,
        "REPODEPOT_ALLOWED_SCHEMES": "http",
        "REPODEPOT_OUTBOUND_ALLOWLIST": "127.0.0.1",
        "REPODEPOT_UPDATE_POLL_INTERVAL": "0.2",
        # A killed node is dead after 4 s; a live one beats eight times meanwhile.
        "REPODEPOT_NODE_DEAD_AFTER": "4",
        "REPODEPOT_NODE_HEARTBEAT_INTERVAL": "0.5",
        **extra,
    }


def start_node(
    serve: type[Server], data: Path, name: str, env: dict[str, str], roles: str = "gitserver"
) -> Server:
    """A gitserver process (only, by default) named `name`, serving `data`."""
    port = free_port()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(servers, "free_port", lambda: port)
        node = serve(
            data,
            {
                **env,
                "REPODEPOT_ROLES": roles,
                "REPODEPOT_NODE_NAME": name,
                "REPODEPOT_NODE_URL": f"http://127.0.0.1:{port}",
            },
        )
    assert node.port == port
    return node


async def all_active(http: httpx.AsyncClient, web: str, names: tuple[str, ...]) -> None:
    """Wait until the registry, asked through `web`, lists each of `names` as active."""

    async def active() -> None:
        answer = await http.get(f"{web}/api/nodes", headers={"Authorization": f"Bearer {TOKEN}"})
        assert answer.status_code == 200, answer.text
        states = {node["name"]: node["state"] for node in answer.json()}
        assert all(states.get(name) == "active" for name in names), states

    await eventually(active, timeout=30, interval=0.2)


def refs_of(repository: Path) -> str:
    """The heads and tags of a bare repository with their commits, as for-each-ref lists them."""
    return git(
        "for-each-ref",
        "--format=%(objectname) %(refname)",
        "refs/heads",
        "refs/tags",
        cwd=repository,
    )


def clone_mirror(url: str, into: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """`git [OPTIONS] clone --mirror URL INTO` as a user runs it, never prompting."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_TERMINAL_PROMPT": "0", **HERMETIC}
    return subprocess.run(
        ["git", *options, "clone", "--mirror", "--quiet", url, str(into)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
