"""A cluster: one web process and storage nodes on PostgreSQL, through a node's loss,
a new node and a drain, with reads through the web process all along.

The issue's Done-when, as one story: 60 repositories synced from a fake GitHub land on
three gitserver processes, each on exactly one; a clone and an EnsureRevision of each
work through the web process; `kill -9` of a node makes its repositories readable again
on the others (503 meanwhile, never a 500 or another commit); the node comes back and
takes back its own; a fourth node takes at most 30% of them while a reader loops and never
fails; `repodepot nodes drain` empties a node, the reader still looping; an import lands
on its worker's node and moves to its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from repodepot.nodes.placement import Candidate, owner
from repodepot.storage import Storage
from tests.e2e.conftest import Server, cli
from tests.support.cluster import TOKEN, all_active
from tests.support.cluster import clone_mirror as _clone
from tests.support.cluster import node_env as _env
from tests.support.cluster import refs_of as _refs
from tests.support.cluster import start_node as _node
from tests.support.eventually import eventually
from tests.support.fakehosts import FakeHost
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate

pytestmark = pytest.mark.timeout(600)
COUNT = 60
FIRST = ("gs-a", "gs-b", "gs-c")
FOURTH = "gs-d"
WORKER = "gs-c"  # the one node that also imports
UPLOAD_PACK = "service=git-upload-pack"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Fast enough for a test: a node is dead 4 s after its last beat, the plan runs every
# half second, four moves at a time, and an old node keeps a moved copy for 5 s.
CLUSTER = {
    "REPODEPOT_NODE_MOVES": "4",
    "REPODEPOT_NODE_MOVE_GRACE": "5",
    "REPODEPOT_MAX_CONCURRENT_CLONES": "8",
}


@dataclass
class Reader:
    """Reads every repository through the web process in a loop; keeps what went wrong."""

    web: str
    heads: dict[str, str]  # repository name: its default branch's commit
    clones: Path
    reads: int = 0
    failures: list[str] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    async def loop(self, http: httpx.AsyncClient, stop: asyncio.Event) -> None:
        names = sorted(self.heads)
        turn = 0
        while not stop.is_set():
            name = names[turn % len(names)]
            await self.read(http, name, clone=turn % 15 == 0)
            turn += 1

    async def read(self, http: httpx.AsyncClient, name: str, *, clone: bool) -> None:
        sha = self.heads[name]
        ensured = await http.get(f"{self.web}/api/repos/{name}/commits/{sha}")
        self._check(name, "EnsureRevision", ensured, lambda a: a.json()["sha"] == sha)
        advertised = await http.get(f"{self.web}/git/{name}/info/refs?{UPLOAD_PACK}")
        self._check(name, "info/refs", advertised, lambda a: sha.encode() in a.content)
        if clone:
            into = self.clones / f"{name.replace('/', '_')}-{self.reads}.git"
            done = await asyncio.to_thread(_clone, f"{self.web}/git/{name}", into)
            self.reads += 1
            if done.returncode != 0:
                self.failures.append(f"clone of {name}: {done.stderr.strip()}")

    def _check(self, name: str, what: str, answer: httpx.Response, right: Any) -> None:
        self.reads += 1
        self.statuses[answer.status_code] += 1
        if answer.status_code != 200 or not right(answer):
            self.failures.append(f"{what} of {name}: {answer.status_code} {answer.text[:200]}")


@contextlib.asynccontextmanager
async def reading(reader: Reader, http: httpx.AsyncClient) -> AsyncIterator[Reader]:
    stop = asyncio.Event()
    task = asyncio.create_task(reader.loop(http, stop))
    try:
        yield reader
    finally:
        stop.set()
        await task


async def _json(http: httpx.AsyncClient, url: str) -> Any:
    answer = await http.get(url, headers=AUTH)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def test_a_cluster_keeps_every_repository_readable_through_loss_growth_and_drain(
    tmp_path: Path, postgres_url: str, serve: type[Server]
) -> None:
    served = tmp_path / "served"
    env = _env(postgres_url, **CLUSTER)
    async with httpx.AsyncClient(timeout=60) as http:
        with (
            GitHttpServer(served) as git_server,
            FakeHost("github", clone_base=git_server.url("")) as github,
        ):
            for repo in github.add_many(COUNT, "acme", "repo"):
                generate(
                    served / "acme" / f"{repo.name}.git",
                    Spec(commits=2 + repo.id % 5, files=5, seed=repo.id),
                )
            web = serve(tmp_path / "web", {**env, "REPODEPOT_ROLES": "web,updater"})
            nodes = {name: _start(serve, tmp_path, name, env) for name in FIRST}
            await all_active(http, web.url, FIRST)

            # 1. Sync 60 repositories; each lands on its rendezvous node, and only there.
            created = await http.post(
                f"{web.url}/api/codehosts",
                json={
                    "kind": "github",
                    "name": "gh",
                    "config": {
                        "url": github.url,
                        "token": github.token,
                        "repositoryQuery": ["affiliated"],
                        "repositoryPathPattern": "{nameWithOwner}",
                    },
                },
                headers=AUTH,
            )
            assert created.status_code == 201, created.text
            synced = await http.post(
                f"{web.url}/api/codehosts/{created.json()['id']}/sync", headers=AUTH
            )
            assert synced.status_code == 202, synced.text
            ids = await eventually(lambda: _all_cloned(http, web.url), timeout=120, interval=0.5)
            assert len(ids) == COUNT
            three = [Candidate(name=name, weight=1.0) for name in FIRST]
            await _each_on_its_owner(http, web.url, tmp_path, ids, three)
            heads = {name: _head(served, name) for name in ids}
            for index, name in enumerate(sorted(ids)):
                copy = tmp_path / "clones" / f"first-{index}.git"
                cloned = _clone(f"{web.url}/git/{name}", copy)
                assert cloned.returncode == 0, cloned.stderr
                assert _refs(copy) == _refs(served / f"{name}.git")
                ensured = await http.get(f"{web.url}/api/repos/{name}/commits/{heads[name]}")
                assert ensured.status_code == 200, ensured.text
                assert ensured.json()["sha"] == heads[name]

            # 2. kill -9 of a node: its repositories answer 503 (never a 500, never another
            # commit), then read again from their next choice, cloned from the code host.
            lost = "gs-c"
            on_lost = sorted(name for name, key in ids.items() if owner(key, three) == lost)
            assert on_lost
            nodes[lost].process.kill()
            nodes[lost].process.wait()
            survivors = [node for node in three if node.name != lost]
            seen: Counter[int] = Counter()

            async def readable_again() -> None:
                for name in on_lost:
                    answer = await http.get(f"{web.url}/api/repos/{name}/commits/{heads[name]}")
                    seen[answer.status_code] += 1
                    if answer.status_code == 503:
                        assert int(answer.headers["retry-after"]) > 0
                    assert answer.status_code in (200, 503), answer.text
                    assert answer.status_code == 200, answer.text
                    assert answer.json()["sha"] == heads[name]

            await eventually(readable_again, timeout=90, interval=0.3)
            assert seen[503] > 0  # it was unavailable meanwhile, and said so
            assert set(seen) <= {200, 503}
            await _each_on_its_owner(http, web.url, tmp_path, ids, survivors, gone={lost})
            for name in on_lost:
                copy = tmp_path / "clones" / f"again-{name.replace('/', '_')}.git"
                cloned = _clone(f"{web.url}/git/{name}", copy)
                assert cloned.returncode == 0, cloned.stderr
                assert _refs(copy) == _refs(served / f"{name}.git")

            # 3. The node comes back (same disk): it takes its own repositories back by
            # copy, and what it held of the rest is dropped once the grace has passed.
            nodes[lost] = _start(serve, tmp_path, lost, env)
            await all_active(http, web.url, FIRST)
            await eventually(
                lambda: _each_on_its_owner(http, web.url, tmp_path, ids, three),
                timeout=90,
                interval=0.5,
            )

            # 4. A fourth node: at most 30% of the repositories move, by copy, and a reader
            # looping over all of them all along never fails.
            reader = Reader(web=web.url, heads=heads, clones=tmp_path / "reader")
            before = {
                name: mirror["node"] for name, mirror in (await _mirrors(http, web.url)).items()
            }
            four = [*three, Candidate(name=FOURTH, weight=1.0)]
            async with reading(reader, http):
                nodes[FOURTH] = _start(serve, tmp_path, FOURTH, env)
                await eventually(
                    lambda: _each_on_its_owner(http, web.url, tmp_path, ids, four),
                    timeout=120,
                    interval=0.5,
                )
                await _moves_done(http, web.url)
            after = {
                name: mirror["node"] for name, mirror in (await _mirrors(http, web.url)).items()
            }
            moved = [name for name in ids if before[name] != after[name]]
            assert moved and {after[name] for name in moved} == {FOURTH}
            assert len(moved) <= 0.3 * COUNT, moved
            assert reader.failures == [], reader.failures[:5]
            assert reader.reads > COUNT

            # 5. `repodepot nodes drain` empties a node; the reader still never fails.
            drained = "gs-a"
            rest = [node for node in four if node.name != drained]
            cli_env = {**env, "REPODEPOT_DATA_DIR": str(tmp_path / "cli")}
            reader = Reader(web=web.url, heads=heads, clones=tmp_path / "reader-drain")
            async with reading(reader, http):
                out = cli("nodes", "drain", drained, env=cli_env)
                assert "draining" in out.stdout, out.stdout

                async def empty() -> None:
                    listed = json.loads(cli("nodes", "list", "--json", env=cli_env).stdout)
                    counts = {node["name"]: node["repositories"] for node in listed}
                    assert counts[drained] == 0, counts
                    assert sum(counts.values()) == COUNT

                await eventually(empty, timeout=120, interval=1.0)
                await eventually(
                    lambda: _each_on_its_owner(http, web.url, tmp_path, ids, rest, gone={drained}),
                    timeout=60,
                    interval=0.5,
                )
            assert reader.failures == [], reader.failures[:5]

            def dropped() -> None:  # once the grace has passed, its copies go
                assert not list(Storage(tmp_path / drained).mirror_ids())

            await eventually(dropped, timeout=30, interval=0.5)

            # 6. An import is cloned by the worker of its node, then moves to its owner.
            source = git_server.url("acme/repo-00000.git")
            job = await http.post(
                f"{web.url}/api/imports",
                json={"owner": "acme", "slug": "imported", "url": source, "visibility": "public"},
                headers=AUTH,
            )
            assert job.status_code == 202, job.text

            async def imported() -> int:
                done = await _json(http, f"{web.url}/api/imports/{job.json()['id']}")
                assert done["status"] == "success", done
                return int((await _json(http, f"{web.url}/api/repos/acme/imported"))["id"])

            key = await eventually(imported, timeout=60, interval=0.3)
            home = owner(key, rest)

            async def settled() -> dict[str, Any]:
                mirror = (await _json(http, f"{web.url}/api/repos/acme/imported"))["mirror"]
                assert (mirror["node"], mirror["clone_status"]) == (home, "cloned"), mirror
                holders = [n for n in (*FIRST, FOURTH) if Storage(tmp_path / n).path(key).is_dir()]
                assert holders == [home], holders
                return dict(mirror)

            mirror = await eventually(settled, timeout=60, interval=0.3)
            assert mirror["moved_from"] == (WORKER if home != WORKER else None)
            copy = tmp_path / "clones" / "imported.git"
            cloned = _clone(f"{web.url}/git/acme/imported", copy)
            assert cloned.returncode == 0, cloned.stderr
            assert _refs(copy) == _refs(served / "acme" / "repo-00000.git")


def _start(serve: type[Server], root: Path, name: str, env: dict[str, str]) -> Server:
    roles = "gitserver,worker" if name == WORKER else "gitserver"
    return _node(serve, root / name, name, env, roles=roles)


def _head(served: Path, name: str) -> str:
    refs = _refs(served / f"{name}.git").splitlines()
    return next(line.split()[0] for line in refs if line.endswith(" refs/heads/main"))


async def _entries(http: httpx.AsyncClient, web: str) -> dict[str, dict[str, Any]]:
    """Every repository's API entry, with its mirror, by name."""
    listed = await _json(http, f"{web}/api/repos?per_page=100")
    assert listed["total"] == COUNT, listed["total"]
    names = [item["name"] for item in listed["items"]]
    return {name: await _json(http, f"{web}/api/repos/{name}") for name in names}


async def _mirrors(http: httpx.AsyncClient, web: str) -> dict[str, dict[str, Any]]:
    return {name: entry["mirror"] or {} for name, entry in (await _entries(http, web)).items()}


async def _all_cloned(http: httpx.AsyncClient, web: str) -> dict[str, int]:
    entries = await _entries(http, web)
    for entry in entries.values():
        assert (entry["mirror"] or {}).get("clone_status") == "cloned", entry
    return {name: entry["id"] for name, entry in entries.items()}


async def _each_on_its_owner(
    http: httpx.AsyncClient,
    web: str,
    root: Path,
    ids: dict[str, int],
    nodes: list[Candidate],
    *,
    gone: set[str] = frozenset(),  # type: ignore[assignment]
) -> None:
    """Every mirror is cloned on its owner among `nodes`, on that node's disk and no other."""
    mirrors = await _mirrors(http, web)
    disks = {name: Storage(root / name) for name in (*FIRST, FOURTH)}
    for name, key in ids.items():
        want = owner(key, nodes)
        assert mirrors[name]["node"] == want, (name, mirrors[name])
        assert mirrors[name]["clone_status"] == "cloned", (name, mirrors[name])
        holders = [node for node, disk in disks.items() if disk.path(key).is_dir()]
        # A lost node's disk is not looked at: it keeps what it had until it comes back.
        assert [node for node in holders if node not in gone] == [want], (name, holders)


async def _moves_done(http: httpx.AsyncClient, web: str) -> None:
    async def none_left() -> None:
        assert all(mirror.get("move_to") is None for mirror in (await _mirrors(http, web)).values())

    await eventually(none_left, timeout=60, interval=0.5)
