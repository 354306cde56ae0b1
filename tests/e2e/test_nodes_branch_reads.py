"""Branch lists, history and upstream fetches with mirrors on two storage nodes.

One web process and two gitserver-only nodes on PostgreSQL: the web process answers a
repository's branches, commits and tags (API and page) by asking the node that holds its
mirror, each node fetches only the upstreams of its own mirrors, and a node killed makes
those reads 503 with Retry-After. The first test checks `upstream fetch --wait`'s lease
on both engines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from repodepot.accounts import operator
from repodepot.exceptions import Unavailable
from repodepot.gitserver.schedule import QueueReason
from repodepot.gitserver.service import Placement, enqueue_in
from repodepot.nodes.placement import Candidate, owner
from repodepot.services import Services
from tests.e2e.conftest import Server
from tests.e2e.test_nodes_routing import NODES, _seed, http
from tests.support.cluster import INTERNAL, TOKEN, all_active
from tests.support.cluster import node_env as _env
from tests.support.cluster import start_node as _node
from tests.support.eventually import eventually
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate, git

__all__ = ["http"]  # the fixture, shared with the routing tests
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_a_fetch_now_is_leased_only_on_the_node_holding_the_mirror(
    services: Services,
) -> None:
    fork = await services.repositories.create(name="acme/fork", owner_id=None)
    parent = await services.repositories.create(name="acme/parent", owner_id=None)
    elsewhere = Placement(nodes=(Candidate(name="gs-far", weight=1.0),), fallback="gs-far")
    async with services.sessions.begin() as session:
        await enqueue_in(session, [fork.id, parent.id], QueueReason.new, shard=elsewhere)
    await services.branches.set_upstream(operator(), fork.name, repository=parent.name)

    with pytest.raises(Unavailable, match="on storage node 'gs-far', not on this one"):
        await services.branches.claim_one("test-fetcher", fork.id)
    assert await services.branches.claim("test-fetcher", 5) == []
    assert await services.branches.next_due("test-fetcher") is None


async def _json(http: httpx.AsyncClient, url: str, status: int = 200) -> Any:
    answer = await http.get(url, headers=AUTH)
    assert answer.status_code == status, (url, answer.text)
    return answer.json()


async def test_branches_history_and_upstreams_are_read_on_the_node_holding_the_mirror(
    tmp_path: Path, postgres_url: str, serve: type[Server], http: httpx.AsyncClient
) -> None:
    served = tmp_path / "served"
    for index in range(10):
        spec = Spec(commits=3 + index, branches=2, tags=2, seed=index)
        generate(served / f"r{index}.git", spec)
    env = _env(postgres_url)
    with GitHttpServer(served) as sources:
        web = serve(tmp_path / "web", {**env, "REPODEPOT_ROLES": "web,updater"})
        nodes = {name: _node(serve, tmp_path / name, name, env) for name in NODES}

        await all_active(http, web.url, NODES)
        ids = await _seed(postgres_url, tmp_path, sources)

        async def all_cloned() -> None:
            for name in ids:
                entry = await _json(http, f"{web.url}/api/repos/{name}")
                assert entry["mirror"]["clone_status"] == "cloned", entry

        await eventually(all_cloned, timeout=45, interval=0.3)
        candidates = [Candidate(name=name, weight=1.0) for name in NODES]
        on = {name: owner(key, candidates) for name, key in ids.items()}

        # Through the web process, which holds no mirror: what the node answers itself,
        # and what git says of the source.
        for node_name in NODES:
            name = next(n for n in ids if on[n] == node_name)
            source = served / f"{name.removeprefix('acme/')}.git"
            node = nodes[node_name]
            tag = git("tag", "--list", cwd=source).split()[0]
            for path in ("branches?sort=name", "commits?per_page=5", "tags", f"commits?ref={tag}"):
                forwarded = await _json(http, f"{web.url}/api/repos/{name}/{path}")
                direct = await _json(http, f"{node.url}/api/repos/{name}/{path}")
                assert forwarded == direct, path
            branches = await _json(http, f"{web.url}/api/repos/{name}/branches?sort=name")
            expected = git(
                "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads", cwd=source
            ).split("\n")
            assert sorted(f"{b['name']} {b['commit']['sha']}" for b in branches["items"]) == sorted(
                line for line in expected if line
            )
            log = await _json(http, f"{web.url}/api/repos/{name}/commits?per_page=3")
            shas = git("log", "-3", "--format=%H", "HEAD", cwd=source).split()
            assert [entry["sha"] for entry in log["items"]] == shas
            tags = await _json(http, f"{web.url}/api/repos/{name}/tags")
            names = git("tag", "--list", cwd=source).split()
            assert sorted(tag["name"] for tag in tags["items"]) == sorted(names)
            page = await http.get(f"{web.url}/repos/{name}", headers=AUTH)
            assert page.status_code == 200
            assert shas[0][:10] in page.text
            tab = await http.get(f"{web.url}/repos/{name}?tab=branches", headers=AUTH)
            assert branches["items"][0]["commit"]["subject"] in tab.text

        # Errors in a local read's words, naming the repository.
        first = next(n for n in ids if on[n] == NODES[0])
        missing = await _json(http, f"{web.url}/api/repos/{first}/commits?ref=nope", 404)
        assert missing["error"]["message"] == f"no branch, tag or commit 'nope' in {first!r}"
        refused = await _json(http, f"{web.url}/api/repos/{first}/commits?ref=upstream/x", 422)
        assert refused["error"]["field"] == "ref"

        # A fork tracking a parent on its own node, and one tracking a parent on the other
        # node: each fetched by its own node only (the other's loop never leases it), the
        # second from the other node's internal smart HTTP, their counts shown through web.
        fork, parent = [n for n in ids if on[n] == NODES[1]][:2]
        far_fork = next(n for n in ids if on[n] == NODES[0] and n != first)
        for mine, theirs in ((fork, parent), (far_fork, parent)):
            put = await http.put(
                f"{web.url}/api/repos/{mine}/upstream", json={"repository": theirs}, headers=AUTH
            )
            assert put.status_code == 200, put.text

        def counted(name: str) -> Any:
            async def check() -> dict[str, Any]:
                status = await _json(http, f"{web.url}/api/repos/{name}/sync-status")
                assert status["upstream"]["last_error"] is None, status
                assert status["branches"] and status["branches"][0]["ahead"] is not None, status
                return dict(status["branches"][0])

            return check

        # Setting an upstream through web wakes the node's loop (NOTIFY): well within its
        # 60 s idle ceiling.
        for name in (fork, far_fork):
            pair = await eventually(counted(name), timeout=20, interval=0.3)
            ours, upstream = (served / f"{n.removeprefix('acme/')}.git" for n in (name, parent))
            # Unrelated histories: every commit of each side is the other's missing one.
            assert pair["ahead"] == int(git("rev-list", "--count", "HEAD", cwd=ours))
            assert pair["behind"] == int(git("rev-list", "--count", "HEAD", cwd=upstream))
            assert pair["upstream_sha"] == git("rev-parse", "HEAD", cwd=upstream).strip()

        # The internal routes answer only to the internal secret.
        node = nodes[NODES[0]]
        key = ids[first]
        for path in ("branches", "log", "tags"):
            url = f"{node.url}/internal/repos/{key}/{path}"
            for headers in ({}, {"Authorization": "Bearer " + "z" * 48}, AUTH):
                assert (await http.get(url, headers=headers)).status_code == 403
            inside = await http.get(url, headers={"Authorization": f"Bearer {INTERNAL}"})
            assert inside.status_code == 200, inside.text

        # A node killed: its repositories' reads answer 503 with Retry-After, the page a
        # sentence; the other node's still answer.
        nodes[NODES[0]].process.kill()
        nodes[NODES[0]].process.wait()
        for path in ("branches", "commits", "tags"):
            answer = await http.get(f"{web.url}/api/repos/{first}/{path}", headers=AUTH)
            assert answer.status_code == 503, (path, answer.text)
            assert int(answer.headers["retry-after"]) > 0
            assert f"storage node {NODES[0]!r}" in answer.json()["error"]["message"]
        page = await http.get(f"{web.url}/repos/{first}", headers=AUTH)
        assert page.status_code == 200
        assert "Its storage node cannot answer now" in page.text
        kept = await http.get(f"{web.url}/api/repos/{fork}/branches", headers=AUTH)
        assert kept.status_code == 200, kept.text
