"""Exec and the Go proxy through a web process that holds no mirror: run on their node.

One web process and two gitserver-only nodes on PostgreSQL, started once for all the
phases (one test): what the web process answers equals what the node answers for its
own disk (its public URL) and plain git on the source; the go command downloads through
the web process the zips the node serves; the internal routes want the secret; a node
killed makes its repositories' execs and modules 503 with Retry-After, never 500.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from repodepot.accounts import operator
from repodepot.db.models import Visibility
from repodepot.gitserver.schedule import QueueReason
from repodepot.nodes.placement import Candidate, owner
from repodepot.services import Services
from repodepot.settings import Settings
from repodepot.storage import Storage
from tests.e2e.conftest import Server
from tests.e2e.test_nodes_routing import NODES
from tests.support.cluster import INTERNAL, SECRET_KEY, TOKEN, all_active
from tests.support.cluster import node_env as _env
from tests.support.cluster import start_node as _node
from tests.support.eventually import eventually
from tests.support.githttp import GitHttpServer
from tests.support.gomods import Go, WorkTree
from tests.support.repogen import git

T0 = 1_700_000_000
MODULES = 4  # acme/mod0..3, example.com/acme/modN; the last one private
CAP = 150  # exec_max_bytes: a listing of three refs is cut, a log of two commits is not
AUTH = {"Authorization": f"Bearer {TOKEN}"}
INSIDE = {"Authorization": f"Bearer {INTERNAL}"}
WRONG_SECRET = "internal calls need 'Authorization: Bearer <REPODEPOT_INTERNAL_SECRET>'\n"


def _sources(root: Path, served: Path) -> dict[str, WorkTree]:
    """The source repositories, each a module (bare copies under `served`)."""
    works = {}
    for index in range(MODULES):
        work = WorkTree(root / f"mod{index}")
        path = f"example.com/acme/mod{index}"
        body = f"package mod{index}\n\nfunc N() int {{ return {index} }}\n"
        work.commit("first", T0, {"go.mod": f"module {path}\n\ngo 1.19\n", "mod.go": body})
        work.tag("v1.0.0")
        work.commit("second", T0 + 60 * (index + 1), {"more.go": f"package mod{index}\n"})
        work.tag("v1.1.0")
        works[f"acme/mod{index}"] = work
    for name, work in works.items():
        work.git("clone", "--quiet", "--bare", ".", str(served / f"{name.split('/')[1]}.git"))
    return works


async def _seed(database_url: str, tmp_path: Path, sources: GitHttpServer) -> dict[str, int]:
    settings = Settings(
        data_dir=tmp_path / "seeder", database_url=database_url, secret_key=SECRET_KEY
    )
    services = await Services.open(settings)
    try:
        ids = {}
        for index in range(MODULES):
            short = f"mod{index}"
            record = await services.repositories.create(
                name=f"acme/{short}",
                owner_id=None,
                visibility=Visibility.private if index == MODULES - 1 else Visibility.public,
                source_url=sources.url(f"{short}.git"),
            )
            root = f"example.com/acme/{short}"
            await services.repositories.set_go_import_root(operator(), record.name, root)
            ids[record.name] = record.id
        await services.gitserver.enqueue(ids.values(), QueueReason.new)
    finally:
        await services.close()
    return ids


def _same(forwarded: httpx.Response, local: httpx.Response) -> None:
    """The web process's answer is the node's own, as a client sees it."""
    assert forwarded.status_code == local.status_code, (forwarded.text, local.text)
    for header in ("content-type", "x-repodepot-output-cap", "etag", "retry-after"):
        assert forwarded.headers.get(header) == local.headers.get(header), header
    assert forwarded.content == local.content


async def test_exec_and_the_go_proxy_are_answered_by_the_node_holding_the_mirror(
    tmp_path: Path, postgres_url: str, serve: type[Server]
) -> None:
    served = tmp_path / "served"
    served.mkdir()
    works = _sources(tmp_path / "work", served)
    env = _env(postgres_url, REPODEPOT_EXEC_MAX_BYTES=str(CAP))
    async with httpx.AsyncClient(timeout=60) as http:
        with GitHttpServer(served) as sources:
            web = serve(tmp_path / "web", {**env, "REPODEPOT_ROLES": "web,updater"})
            nodes = {name: _node(serve, tmp_path / name, name, env) for name in NODES}

            await all_active(http, web.url, NODES)
            ids = await _seed(postgres_url, tmp_path, sources)

            async def all_cloned() -> None:
                for name in ids:
                    entry = (await http.get(f"{web.url}/api/repos/{name}", headers=AUTH)).json()
                    assert entry["mirror"]["clone_status"] == "cloned", entry

            await eventually(all_cloned, timeout=45, interval=0.3)

        candidates = [Candidate(name=name, weight=1.0) for name in NODES]
        holder = {name: owner(key, candidates) for name, key in ids.items()}
        assert {holder[f"acme/mod{index}"] for index in range(MODULES)} == set(NODES)
        web_disk = Storage(tmp_path / "web")
        assert not any(web_disk.path(key).exists() for key in ids.values())  # all forwarded

        async def execs(name: str, args: list[str]) -> tuple[httpx.Response, httpx.Response]:
            """The exec through the web process, and on the holding node's own public URL."""
            body = {"args": args}
            url = f"/api/repos/{name}/exec"
            forwarded = await http.post(web.url + url, json=body, headers=AUTH)
            local = await http.post(nodes[holder[name]].url + url, json=body, headers=AUTH)
            return forwarded, local

        # Exec: the node's output, byte for byte, on either node, cut at the cap (the
        # header says where); git's refusal alike.
        lengths: set[bool] = set()
        for index in range(MODULES):
            name = f"acme/mod{index}"
            for args in (
                ["for-each-ref", "--format=%(objectname) %(refname)", "refs/heads", "refs/tags"],
                ["log", "--format=%H %ct %s", "main"],
            ):
                forwarded, local = await execs(name, args)
                _same(forwarded, local)
                assert forwarded.status_code == 200
                output = git(*args, cwd=works[name].path).encode()
                assert forwarded.content == output[:CAP]
                lengths.add(len(output) > CAP)
                assert forwarded.headers["x-repodepot-output-cap"] == str(CAP)
            failed, local = await execs(name, ["log", "no-such-branch"])
            _same(failed, local)
            assert failed.status_code == 422
            assert failed.json()["error"]["field"] == "args"
        assert lengths == {True, False}  # some cut, some whole

        # A refused argument is refused by web itself: 422 naming it.
        refused, local = await execs("acme/mod0", ["log", "--output=/tmp/x"])
        _same(refused, local)
        assert refused.status_code == 422
        assert refused.json()["error"]["field"] == "args.1"

        # The Go proxy: the go command downloads through web what each node serves.
        go = Go(tmp_path / "go", f"{web.url}/goproxy")
        public = [f"example.com/acme/mod{index}" for index in range(MODULES - 1)]
        answers = await asyncio.to_thread(
            go.download, *[f"{path}@v1.0.0" for path in public], f"{public[0]}@latest"
        )
        assert [(a["Path"], a["Version"], a.get("Error")) for a in answers] == [
            *[(path, "v1.0.0", None) for path in public],
            (public[0], "v1.1.0", None),
        ]
        for found in answers:
            name = f"acme/{found['Path'].rsplit('/', 1)[1]}"
            rest = f"{found['Path']}/@v/{found['Version']}.zip"
            node_url = nodes[holder[name]].url
            direct = await http.get(
                f"{node_url}/internal/goproxy/{ids[name]}/{rest}", headers=INSIDE
            )
            assert direct.status_code == 200
            assert Path(found["Zip"]).read_bytes() == direct.content
            go_mod = works[name].show(found["Version"], "go.mod")
            assert Path(found["GoMod"]).read_bytes() == go_mod

        async def proxied(name: str, rest: str, **headers: str) -> httpx.Response:
            forwarded = await http.get(f"{web.url}/goproxy/{rest}", headers=headers)
            local = await http.get(f"{nodes[holder[name]].url}/goproxy/{rest}", headers=headers)
            _same(forwarded, local)
            return forwarded

        mod0 = "example.com/acme/mod0"
        assert (await proxied("acme/mod0", f"{mod0}/@v/list")).text == "v1.0.0\nv1.1.0\n"
        info = await proxied("acme/mod0", f"{mod0}/@v/v1.0.0.info")
        assert info.json()["Version"] == "v1.0.0"
        zipped = await proxied("acme/mod0", f"{mod0}/@v/v1.0.0.zip")
        etag = zipped.headers["etag"]
        assert zipped.headers["cache-control"].startswith("public, ")
        again = await proxied("acme/mod0", f"{mod0}/@v/v1.0.0.zip", **{"If-None-Match": etag})
        assert again.status_code == 304
        gone = await proxied("acme/mod0", f"{mod0}/@v/v9.0.0.info")
        assert gone.status_code == 404
        # A private module: the caller's access is decided by web, as for a local one.
        private = f"example.com/acme/mod{MODULES - 1}"
        name = f"acme/mod{MODULES - 1}"
        hidden = await proxied(name, f"{private}/@v/list")
        assert hidden.status_code == 404
        assert hidden.text == f"no repository here serves module {private}\n"
        shown = await proxied(name, f"{private}/@v/list", **AUTH)
        assert (shown.status_code, shown.text) == (200, "v1.0.0\nv1.1.0\n")
        assert shown.headers["content-type"].startswith("text/plain")

        # The new internal routes answer only to the secret, whatever the id.
        node = nodes[holder["acme/mod0"]]
        for key in (ids["acme/mod0"], 999_999):
            for headers in ({}, {"Authorization": "Bearer " + "z" * 48}, AUTH):
                listed = await http.get(
                    f"{node.url}/internal/goproxy/{key}/{mod0}/@v/list", headers=headers
                )
                ran = await http.post(
                    f"{node.url}/internal/repos/{key}/exec",
                    json={"args": ["rev-parse", "HEAD"], "user_id": 1, "max_bytes": 10},
                    headers=headers,
                )
                for refused in (listed, ran):
                    assert (refused.status_code, refused.text) == (403, WRONG_SECRET)
        # With it, a node serves a module only from the repository that serves its path.
        other = next(key for name, key in ids.items() if name != "acme/mod0")
        mismatched = f"{node.url}/internal/goproxy/{other}/{mod0}/@v/list"
        answered = await http.get(mismatched, headers=INSIDE)
        assert (answered.status_code, answered.text) == (
            404,
            f"no repository here serves module {mod0}\n",
        )

        # A node killed: its execs and modules answer 503 with Retry-After through web,
        # before and after it is marked dead (then cloned again elsewhere from their
        # source, which is down now); a refused argument needs no node.
        lost = holder["acme/mod0"]
        nodes[lost].process.kill()
        nodes[lost].process.wait()
        await _unavailable(http, web.url, lost)

        async def marked_dead() -> None:
            listed = (await http.get(f"{web.url}/api/nodes", headers=AUTH)).json()
            assert {n["name"]: n["state"] for n in listed}[lost] == "dead"

        await eventually(marked_dead, timeout=20, interval=0.2)
        await _unavailable(http, web.url, lost)
        kept = next(path for path in public if holder[f"acme/{path.rsplit('/', 1)[1]}"] != lost)
        still = await http.get(f"{web.url}/goproxy/{kept}/@v/list")
        assert (still.status_code, still.text) == (200, "v1.0.0\nv1.1.0\n")


async def _unavailable(http: httpx.AsyncClient, web: str, lost: str) -> None:
    ran = await http.post(
        f"{web}/api/repos/acme/mod0/exec", json={"args": ["rev-parse", "HEAD"]}, headers=AUTH
    )
    assert ran.status_code == 503, ran.text
    assert int(ran.headers["retry-after"]) > 0
    assert ran.json()["error"]["code"] == "node_unavailable"
    assert f"node '{lost}'" in ran.json()["error"]["message"]
    for what in ("@v/list", "@v/v1.0.0.info", "@v/v1.0.0.zip", "@latest"):
        listed = await http.get(f"{web}/goproxy/example.com/acme/mod0/{what}")
        assert listed.status_code == 503, listed.text
        assert int(listed.headers["retry-after"]) > 0
        assert listed.headers["content-type"].startswith("text/plain")
        assert f"node '{lost}'" in listed.text
    refused = await http.post(
        f"{web}/api/repos/acme/mod0/exec", json={"args": ["log", "-O", "x"]}, headers=AUTH
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["field"] == "args.1"
