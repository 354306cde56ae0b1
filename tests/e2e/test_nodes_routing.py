"""Storage nodes' routing: new mirrors placed on their node, reads forwarded to it.

The first test places mirrors in one process (both engines); the second runs two
gitserver processes and one web process on PostgreSQL, and clones and asks EnsureRevision
through the web one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from repodepot.accounts import operator
from repodepot.db.models import Visibility
from repodepot.gitserver.schedule import QueueReason
from repodepot.gitserver.service import Placement, enqueue_in
from repodepot.nodes.placement import Candidate, owner
from repodepot.services import Services
from repodepot.settings import Settings
from repodepot.storage import Storage
from tests.e2e.conftest import Server
from tests.e2e.test_bodies import GIB, _gzip_bomb, _zeros
from tests.e2e.test_bodies import _streamed as _aiter
from tests.support.cluster import INTERNAL, SECRET_KEY, TOKEN, all_active
from tests.support.cluster import clone_mirror as _clone
from tests.support.cluster import node_env as _env
from tests.support.cluster import refs_of as _refs
from tests.support.cluster import start_node as _node
from tests.support.eventually import eventually
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate, git

NODES = ("gs-a", "gs-b")
REPOSITORIES = 10
UPLOAD_PACK = "service=git-upload-pack"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def _seed(database_url: str, tmp_path: Path, sources: GitHttpServer) -> dict[str, int]:
    """The repositories, public, each with its source; enqueued as new (placed then)."""
    settings = Settings(
        data_dir=tmp_path / "seeder", database_url=database_url, secret_key=SECRET_KEY
    )
    services = await Services.open(settings)
    try:
        ids = {}
        for index in range(REPOSITORIES):
            record = await services.repositories.create(
                name=f"acme/r{index}",
                owner_id=None,
                visibility=Visibility.public,
                source_url=sources.url(f"r{index}.git"),
            )
            ids[record.name] = record.id
        await services.gitserver.enqueue(ids.values(), QueueReason.new)
    finally:
        await services.close()
    return ids


async def test_new_mirrors_go_to_their_rendezvous_node_and_stay_there(services: Services) -> None:
    ids = [
        (await services.repositories.create(name=f"acme/p{i}", owner_id=None)).id for i in range(12)
    ]
    await services.nodes.register("gs-a", "http://127.0.0.1:8101", None)
    await services.nodes.register("gs-b", "http://127.0.0.1:8102", None)
    candidates = [Candidate(name=name, weight=1.0) for name in NODES]

    assert await services.gitserver.enqueue(ids[:8], QueueReason.new) == 8
    placed = {key: (await services.gitserver.state(key)) for key in ids[:8]}
    assert {key: state.node for key, state in placed.items() if state is not None} == {
        key: owner(key, candidates) for key in ids[:8]
    }
    assert {owner(key, candidates) for key in ids[:8]} == set(NODES)

    # Rows are never placed again here: another set of nodes only queues them.
    elsewhere = Placement(nodes=(Candidate(name="gs-c", weight=1.0),), fallback="local")
    async with services.sessions.begin() as session:
        assert await enqueue_in(session, ids, QueueReason.admin, shard=elsewhere) == 12
    nodes_now = {key: getattr(await services.gitserver.state(key), "node", None) for key in ids}
    assert {nodes_now[key] for key in ids[8:]} == {"gs-c"}
    assert all(nodes_now[key] == owner(key, candidates) for key in ids[:8])

    # No active node (none registered yet): this process's node, as before nodes.
    alone = Placement(nodes=(), fallback=services.settings.node_name)
    assert {alone.node_of(key) for key in ids} == {"local"}


async def test_a_code_host_sync_places_its_new_mirrors_on_their_nodes(services: Services) -> None:
    await services.nodes.register("gs-a", "http://127.0.0.1:8101", None)
    await services.nodes.register("gs-b", "http://127.0.0.1:8102", None)
    candidates = [Candidate(name=name, weight=1.0) for name in NODES]
    config = {"repos": [f"http://127.0.0.1:9/acme/s{index}.git" for index in range(12)]}
    host = await services.codehosts.create(operator(), kind="other", name="up", config=config)
    await services.codehosts.syncer.sync(host.id)

    listed = await services.repositories.list(operator(), per_page=100)
    assert len(listed.items) == 12
    nodes_of = {
        repo.id: getattr(await services.gitserver.state(repo.id), "node", None)
        for repo in listed.items
    }
    assert nodes_of == {key: owner(key, candidates) for key in nodes_of}
    assert set(nodes_of.values()) == set(NODES)


async def test_mirrors_live_on_their_rendezvous_node_and_clones_go_through_web(
    tmp_path: Path, postgres_url: str, serve: type[Server], http: httpx.AsyncClient
) -> None:
    served = tmp_path / "served"
    for index in range(REPOSITORIES):
        generate(served / f"r{index}.git", Spec(commits=3 + index, branches=1, tags=1, seed=index))
    env = _env(postgres_url)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with GitHttpServer(served) as sources:
        web = serve(tmp_path / "web", {**env, "REPODEPOT_ROLES": "web,updater"})
        nodes = {name: _node(serve, tmp_path / name, name, env) for name in NODES}

        await all_active(http, web.url, NODES)
        ids = await _seed(postgres_url, tmp_path, sources)

        async def all_cloned() -> dict[str, dict[str, Any]]:
            found = {}
            for name in ids:
                entry = (await http.get(f"{web.url}/api/repos/{name}")).json()
                assert entry["mirror"]["clone_status"] == "cloned", entry
                found[name] = entry["mirror"]
            return found

        mirrors = await eventually(all_cloned, timeout=45, interval=0.3)

        # Placement: each mirror on its rendezvous owner, both nodes used, each copy on
        # exactly its node's disk.
        candidates = [Candidate(name=name, weight=1.0) for name in NODES]
        expected = {name: owner(key, candidates) for name, key in ids.items()}
        assert {name: mirror["node"] for name, mirror in mirrors.items()} == expected
        assert set(expected.values()) == set(NODES)
        for name, key in ids.items():
            holders = [n for n in NODES if Storage(tmp_path / n).path(key).is_dir()]
            assert holders == [expected[name]], name
            assert not Storage(tmp_path / "web").path(key).exists()

        # Every clone goes through the web process, which holds no mirror: forwarded.
        for index, name in enumerate(ids):
            protocol = ("-c", f"protocol.version={index % 3}")  # v0, v1 and v2 alike
            copy = tmp_path / "clones" / f"r{index}.git"
            cloned = _clone(f"{web.url}/git/{name}", copy, *protocol)
            assert cloned.returncode == 0, cloned.stderr
            assert _refs(copy) == _refs(served / f"r{index}.git")

        # EnsureRevision through the web process, for two repositories on each node.
        for node_name in NODES:
            for name in [n for n in ids if expected[n] == node_name][:2]:
                source = served / f"{name.removeprefix('acme/')}.git"
                sha = _refs(source).split()[0]
                answer = await http.get(f"{web.url}/api/repos/{name}/commits/{sha}")
                assert answer.status_code == 200, answer.text
                assert answer.json()["sha"] == sha
                subject = git("log", "-1", "--format=%s", sha, cwd=source).strip()
                assert answer.json()["subject"] == subject
        first = next(iter(ids))
        unknown = await http.get(f"{web.url}/api/repos/{first}/commits/{'0' * 39}1")
        assert unknown.status_code == 404, unknown.text
        assert f"in {first!r}, even after a fetch" in unknown.json()["error"]["message"]
        invalid = await http.get(f"{web.url}/api/repos/{first}/commits/--upload-pack=x")
        assert invalid.status_code == 422, invalid.text
        assert invalid.json()["error"]["field"] == "rev"

        # Bodies are bounded as for a local mirror: the web process counts what arrives,
        # the node what it inflates; both answer 413, the node's relayed.
        pack_url = f"{web.url}/git/{first}/git-upload-pack"
        pack_type = {"Content-Type": "application/x-git-upload-pack-request"}
        plain = await http.post(pack_url, content=_zeros(GIB), headers=pack_type)
        assert plain.status_code == 413, plain.text
        gzipped = {**pack_type, "Content-Encoding": "gzip"}
        bomb = await http.post(pack_url, content=_aiter(_gzip_bomb(GIB)), headers=gzipped)
        assert bomb.status_code == 413, bomb.text
        assert "once inflated" in bomb.text

        # The internal API answers only to the internal secret, the same for any id.
        node = nodes[NODES[0]]
        known = next(key for name, key in ids.items() if expected[name] == NODES[0])
        for key in (known, 999_999):
            urls = (
                f"{node.url}/internal/repos/{key}/info/refs?{UPLOAD_PACK}",
                f"{node.url}/internal/repos/{key}/commits/HEAD",
            )
            for url in urls:
                for headers in ({}, {"Authorization": "Bearer " + "z" * 48}, auth):
                    refused = await http.get(url, headers=headers)
                    assert refused.status_code == 403
                    assert refused.text == (
                        "internal calls need 'Authorization: Bearer <REPODEPOT_INTERNAL_SECRET>'\n"
                    )
            posted = await http.post(
                f"{node.url}/internal/repos/{key}/git-upload-pack", content=b"0000"
            )
            assert posted.status_code == 403
        inside = {"Authorization": f"Bearer {INTERNAL}"}
        url = f"{node.url}/internal/repos/{known}/info/refs?{UPLOAD_PACK}"
        assert (await http.get(url, headers=inside)).status_code == 200
        missing = f"{node.url}/internal/repos/999999/info/refs?{UPLOAD_PACK}"
        assert (await http.get(missing, headers=inside)).status_code == 404

        # A node killed: its repositories answer 503 with Retry-After through web until it
        # is marked dead; the other node's still clone.
        lost, kept = NODES
        nodes[lost].process.kill()
        nodes[lost].process.wait()
        victim = next(name for name in ids if expected[name] == lost)
        survivor = next(name for name in ids if expected[name] == kept)

        async def unavailable() -> None:
            answer = await http.get(f"{web.url}/git/{victim}/info/refs?{UPLOAD_PACK}")
            assert answer.status_code == 503, answer.text
            assert int(answer.headers["retry-after"]) > 0
            assert f"storage node '{lost}'" in answer.text
            ensured = await http.get(f"{web.url}/api/repos/{victim}/commits/HEAD")
            assert ensured.status_code == 503, ensured.text
            assert int(ensured.headers["retry-after"]) > 0

        await unavailable()
        failed = _clone(f"{web.url}/git/{victim}", tmp_path / "clones" / "lost.git")
        assert failed.returncode != 0
        assert "503" in failed.stderr, failed.stderr
        assert not (tmp_path / "clones" / "lost.git").exists()

        async def marked_dead() -> None:
            listed = (await http.get(f"{web.url}/api/nodes", headers=auth)).json()
            assert {n["name"]: n["state"] for n in listed}[lost] == "dead"

        await eventually(marked_dead, timeout=20, interval=0.2)
        again = _clone(f"{web.url}/git/{survivor}", tmp_path / "clones" / "kept.git")
        assert again.returncode == 0, again.stderr

        # Once dead, its repositories go to the other node, cloned from their source: 503
        # until then, then read as before (tests/e2e/test_nodes_cluster.py: the whole story).
        async def back() -> None:
            answer = await http.get(f"{web.url}/git/{victim}/info/refs?{UPLOAD_PACK}")
            assert answer.status_code in (200, 503), answer.text
            assert answer.status_code == 200, answer.text

        await eventually(back, timeout=45, interval=0.3)
        recovered = _clone(f"{web.url}/git/{victim}", tmp_path / "clones" / "recovered.git")
        assert recovered.returncode == 0, recovered.stderr
        index = int(victim.removeprefix("acme/r"))
        assert _refs(tmp_path / "clones" / "recovered.git") == _refs(served / f"r{index}.git")
