"""Storage nodes from the command line and the API; a gitserver-only process registering."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from repodepot.db.models import Visibility
from repodepot.gitserver.schedule import QueueReason
from repodepot.gitserver.service import enqueue_in
from repodepot.services import Services
from repodepot.settings import Settings
from tests.e2e.conftest import Server, cli
from tests.e2e.test_cli import test_every_command_has_complete_help as complete_help
from tests.support.eventually import eventually
from tests.support.members import member
from tests.support.seed import seed_mirror

SECRET = "test-secret-key-" + "x" * 32
ENV = {"REPODEPOT_SECRET_KEY": SECRET}
KEYS = ["name", "url", "state", "repositories", "free_bytes", "heartbeat_at"]


def seeded(data: Path) -> None:
    """Nodes `gs-1` (two repositories, 4 GiB free), `gs-2` (one) and `spare` (none)."""

    async def work() -> None:
        services = await Services.open(Settings(data_dir=data, secret_key=SECRET))
        try:
            await services.nodes.register("gs-1", "http://127.0.0.1:8101", 4 << 30)
            await services.nodes.register("gs-2", "http://127.0.0.1:8102", None)
            await services.nodes.register("spare", None, None)
            for node, count in (("gs-1", 2), ("gs-2", 1)):
                ids = [
                    (
                        await services.repositories.create(
                            name=f"{node}/r{index}",
                            owner_id=None,
                            source_url=f"https://git.example.com/{node}/{index}.git",
                        )
                    ).id
                    for index in range(count)
                ]
                async with services.sessions.begin() as session:
                    await enqueue_in(session, ids, QueueReason.new, shard=node)
        finally:
            await services.close()

    asyncio.run(work())


def listed(at: tuple[str, ...]) -> list[dict[str, object]]:
    found: list[dict[str, object]] = json.loads(cli("nodes", "list", "--json", *at, env=ENV).stdout)
    return found


SUBCOMMANDS = ("list", "drain", "activate", "remove", "weight")


@pytest.mark.parametrize(
    "command", [["nodes"], *(["nodes", sub] for sub in SUBCOMMANDS)], ids=lambda c: " ".join(c)
)
def test_every_nodes_command_has_complete_help(command: list[str]) -> None:
    complete_help(command)


def test_nodes_are_listed_drained_weighed_and_removed(tmp_path: Path) -> None:
    data = tmp_path / "data"
    at = ("--data-dir", str(data))
    seeded(data)

    nodes = listed(at)
    assert [list(node) for node in nodes] == [KEYS] * 3  # exactly these keys, in this order
    assert [
        (n["name"], n["url"], n["state"], n["repositories"], n["free_bytes"]) for n in nodes
    ] == [
        ("gs-1", "http://127.0.0.1:8101", "active", 2, 4 << 30),
        ("gs-2", "http://127.0.0.1:8102", "active", 1, None),
        ("spare", None, "active", 0, None),
    ]
    assert all(str(node["heartbeat_at"]).endswith("+00:00") for node in nodes)
    table = cli("nodes", "list", *at, env=ENV).stdout
    assert "repositories" in table and "4.0 GiB" in table and "http://127.0.0.1:8102" in table

    refused = cli("nodes", "remove", "gs-1", *at, env=ENV, check=False)
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        "error: storage node 'gs-1' still owns 2 repositories: drain it first"
    )
    drained = cli("nodes", "drain", "gs-1", *at, env=ENV).stdout
    assert "node 'gs-1' is draining; it owns 2 repositories" in drained
    assert cli("nodes", "weight", "gs-2", "2.5", *at, env=ENV).stdout.strip() == (
        "node 'gs-2' has weight 2.5"
    )
    assert "node 'spare' removed" in cli("nodes", "remove", "spare", *at, env=ENV).stdout
    assert [(n["name"], n["state"]) for n in listed(at)] == [
        ("gs-1", "draining"),
        ("gs-2", "active"),
    ]
    assert "node 'gs-1' is active" in cli("nodes", "activate", "gs-1", *at, env=ENV).stdout

    ghost = cli("nodes", "drain", "ghost", *at, env=ENV, check=False)
    assert ghost.returncode == 1 and ghost.stderr.strip() == "error: no storage node named 'ghost'"
    zero = cli("nodes", "weight", "gs-2", "0", *at, env=ENV, check=False)
    assert zero.returncode == 1
    assert zero.stderr.strip() == "error: a weight is a finite number above 0, not 0.0"
    for result in (refused, ghost, zero):
        assert "Traceback" not in result.stderr


def test_serve_checks_the_roles_it_is_given(tmp_path: Path) -> None:
    at = ("--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0")
    unknown = cli("serve", "--roles", "web,storage", *at, check=False)
    assert unknown.returncode == 1 and "REPODEPOT_ROLES" in unknown.stderr
    assert "not storage" in unknown.stderr
    alone = cli("serve", "--roles", "gitserver", *at, check=False)
    assert alone.returncode == 1
    assert "REPODEPOT_NODE_URL: Value error, a gitserver process without the web role" in (
        alone.stderr
    )
    assert "gitserver (this node's" in cli("serve", "--help").stdout


async def test_a_gitserver_only_process_registers_its_node(
    tmp_path: Path, serve: type[Server]
) -> None:
    data = tmp_path / "data"
    serve(
        data,
        {
            "REPODEPOT_ROLES": "gitserver",
            "REPODEPOT_SHARD": "gs-old-name",  # the old variable still names the node
            "REPODEPOT_NODE_URL": "http://127.0.0.1:8109",
            "REPODEPOT_SECRET_KEY": SECRET,
        },
    )
    at = ("--data-dir", str(data))

    def registered() -> list[dict[str, object]]:
        nodes = listed(at)
        assert [(n["name"], n["url"], n["state"]) for n in nodes] == [
            ("gs-old-name", "http://127.0.0.1:8109", "active")
        ]
        return nodes

    (node,) = await eventually(registered, timeout=60, interval=0.5)
    assert isinstance(node["free_bytes"], int) and node["free_bytes"] > 0


async def test_the_api_lists_the_nodes_for_admins_and_names_each_mirrors_node(
    app_services: Services, client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    await seed_mirror(app_services, "acme/one", visibility=Visibility.public)

    async def nodes() -> list[dict[str, object]]:
        answer = await client.get("/api/nodes", headers=admin_headers)
        assert answer.status_code == 200, answer.text
        found: list[dict[str, object]] = answer.json()
        # This process's node, registered by its heartbeat as the app started.
        assert [(n["name"], n["url"], n["state"], n["repositories"]) for n in found] == [
            ("local", None, "active", 1)
        ]
        return found

    (node,) = await eventually(nodes, timeout=30)
    assert list(node) == KEYS
    assert isinstance(node["free_bytes"], int) and node["free_bytes"] > 0
    dev = await member(client, admin_headers, "dev")
    assert (await client.get("/api/nodes", headers=dev)).status_code == 403
    assert (await client.get("/api/nodes")).status_code == 401

    mirror = (await client.get("/api/repos/acme/one")).json()["mirror"]
    assert (mirror["node"], mirror["shard"]) == ("local", "local")
    schema = (await client.get("/openapi.json")).json()["components"]["schemas"]["MirrorOut"]
    assert schema["properties"]["shard"]["deprecated"] is True
