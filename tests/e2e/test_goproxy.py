"""The Go module proxy through the real go command: download, list, latest and build.

Every zip's Sum, as the go command computes it, is compared with an h1: hash the test
computes itself over the files the go command's rules select (listed here by hand).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from repodepot.accounts import operator
from repodepot.db.models import Visibility
from repodepot.services import Services
from repodepot.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.e2e.conftest import cli
from tests.support.githttp import GitHttpServer
from tests.support.gomods import Go, Symlink, WorkTree, go_mod_sum, self_signed, zip_sum
from tests.support.repogen import git
from tests.support.seed import seed_mirror
from tests.support.servers import LiveApp

Start = Callable[..., Awaitable[LiveApp]]
T0 = 1_700_000_000
LIB = "example.com/acme/lib"
GO_MOD_LIB = f"module {LIB}\n\ngo 1.19\n"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"roles": ["web"]})


def lib_repo(root: Path) -> WorkTree:
    """A root module with tags, nested modules, a /v2 subdirectory and every exclusion."""
    work = WorkTree(root / "lib")
    work.commit(
        "v1.0.0",
        T0,
        {
            "go.mod": GO_MOD_LIB,
            "LICENSE": "MIT License (lib)\n",
            "lib.go": 'package lib\n\nfunc Hello() string { return "hello v1.0.0" }\n',
            "link.go": Symlink("lib.go"),
            ".gitattributes": "secret.txt export-ignore\nversion.go export-subst\n",
            "secret.txt": "kept although export-ignore\n",
            "version.go": 'package lib\n\nconst Commit = "$Format:%H$"\n',
            "vendor/modules.txt": "# example.org/dep v1.0.0\n",
            "vendor/example.org/dep/dep.go": "package dep\n",
            "internal/vendor/v.go": "package vendor\n",
            "docs/readme.txt": "docs\n",
            "sub/tool/go.mod": f"module {LIB}/sub/tool\n\ngo 1.19\n",
            "sub/tool/tool.go": 'package tool\n\nfunc Name() string { return "tool" }\n',
            "v2/go.mod": f"module {LIB}/v2\n\ngo 1.19\n",
            "v2/lib.go": 'package lib\n\nfunc Hello() string { return "hello v2" }\n',
            "modern/go.mod": f"module {LIB}/modern\n\ngo 1.24\n",
            "modern/pkg/vendor/v.go": "package vendor\n",
            "modern/vendor/modules.txt": "# nothing\n",
        },
    )
    for tag in ("v1.0.0", "sub/tool/v0.3.0", "v2.0.0", "modern/v0.1.0"):
        work.tag(tag)
    lib_v110 = 'package lib\n\nfunc Hello() string { return "hello v1.1.0" }\n'
    work.commit("v1.1.0", T0 + 3600, {"lib.go": lib_v110})
    work.tag("v1.1.0", annotated=True)
    work.commit("rc", T0 + 7200, {"docs/rc.txt": "rc\n"})
    work.tag("v1.2.0-rc.1")
    work.commit("untagged", T0 + 10_800, {"newmod/go.mod": f"module {LIB}/newmod\n"})
    return work


def major_repo(root: Path) -> WorkTree:
    """A major branch: `module …/v3` at the root, after a v1."""
    work = WorkTree(root / "major")
    path = "example.com/acme/major"
    work.commit("v1", T0, {"go.mod": f"module {path}\n", "major.go": "package major\n"})
    work.tag("v1.0.0")
    v3 = "package major\n\nfunc V() int { return 3 }\n"
    work.commit("v3", T0 + 60, {"go.mod": f"module {path}/v3\n\ngo 1.19\n", "major.go": v3})
    work.tag("v3.0.0")
    work.commit("v3.1", T0 + 120, {"more.go": "package major\n"})
    work.tag("v3.1.0")
    return work


def legacy_repo(root: Path) -> WorkTree:
    """From before modules: v2 tags without go.mod are +incompatible; a v3 with one is not."""
    work = WorkTree(root / "legacy")
    body = 'package legacy\n\nfunc V() string {{ return "{}" }}\n'
    for index, tag in enumerate(("v1.0.0", "v2.0.0", "v2.1.0")):
        work.commit(tag, T0 + index, {"legacy.go": body.format(tag)})
        work.tag(tag)
    path = "example.com/acme/legacy/v3"
    work.commit("v3", T0 + 10, {"go.mod": f"module {path}\n"})
    work.tag("v3.0.0")
    return work


def widget_repo(root: Path) -> WorkTree:
    work = WorkTree(root / "widget")
    widget = 'package widget\n\nfunc Name() string { return "widget" }\n'
    work.commit(
        "w",
        T0,
        {"go.mod": "module example.com/Acme/Widget\n\ngo 1.19\n", "widget.go": widget},
    )
    work.tag("v0.1.0")
    return work


def broken_repo(root: Path) -> WorkTree:
    """Versions the go command would refuse to zip."""
    work = WorkTree(root / "broken")
    path = "example.com/acme/broken"
    work.commit("collide", T0, {"go.mod": f"module {path}\n", "README": "a\n", "readme": "b\n"})
    work.tag("v1.0.0")
    big = b"Licensed under many words.\n" * (17 * 1024 * 1024 // 27 + 1)
    work.commit("big", T0 + 1, {"readme": None, "LICENSE": big})
    work.tag("v1.1.0")
    work.commit("bad name", T0 + 2, {"LICENSE": "ok\n", "bad:name.go": "package x\n"})
    work.tag("v1.2.0")
    return work


async def publish(
    services: Services, work: WorkTree, name: str, root: str, visibility: Visibility
) -> Path:
    """Repository `name`, a mirror of `work` serving Go modules under `root`; its mirror."""
    record = await seed_mirror(services, name, source=work.path, visibility=visibility)
    await services.repositories.set_go_import_root(operator(), name, root)
    return services.storage.path(record.id)


def files_of(work: WorkTree, rev: str, paths: list[str], subdir: str = "") -> dict[str, bytes]:
    """The files at `rev` under `subdir`, read with git, by their path relative to it."""
    prefix = f"{subdir}/" if subdir else ""
    found = {}
    for path in paths:
        # A module in a directory has no LICENSE of its own here: it gets the root's.
        source = "LICENSE" if path == "LICENSE" and subdir else prefix + path
        found[path] = work.show(rev, source)
    return found


def pseudo(base: str, work: WorkTree, rev: str, form: str) -> str:
    sha = work.git("rev-parse", rev).strip()
    when = int(work.git("log", "-1", "--format=%ct", rev).strip())
    stamp = datetime.fromtimestamp(when, UTC).strftime("%Y%m%d%H%M%S")
    if form == "none":
        return f"{base}-{stamp}-{sha[:12]}"
    return f"{base}.0.{stamp}-{sha[:12]}" if form == "pre" else f"{base}-0.{stamp}-{sha[:12]}"


LIB_FILES = [
    ".gitattributes",
    "LICENSE",
    "docs/readme.txt",
    "go.mod",
    "lib.go",
    "secret.txt",
    "vendor/modules.txt",
    "version.go",
]


async def test_go_downloads_lists_and_builds_through_the_proxy(
    tmp_path: Path, settings: Settings, live_server: Start
) -> None:
    cert, private_key = self_signed(tmp_path / "tls")
    live = await live_server(settings, tls=(cert, private_key))
    svc = live.services
    proxy = f"{live.url}/goproxy"
    repos = tmp_path / "repos"
    lib, major, legacy, widget = (
        lib_repo(repos),
        major_repo(repos),
        legacy_repo(repos),
        widget_repo(repos),
    )
    await publish(svc, lib, "acme/lib", LIB, Visibility.public)
    await publish(svc, major, "acme/major", "example.com/acme/major", Visibility.public)
    await publish(svc, legacy, "acme/legacy", "example.com/acme/legacy", Visibility.public)
    await publish(svc, widget, "acme/widget", "example.com/Acme/Widget", Visibility.private)
    # The go command sends .netrc credentials over https only: this server is https.
    netrc = f"machine 127.0.0.1 login token password {ADMIN_TOKEN}\n"
    go = Go(tmp_path / "go", proxy, netrc=netrc, ca=cert)

    def download(*targets: str) -> dict[str, dict[str, Any]]:
        answers = go.download(*targets)
        return {f"{a['Path']}@{a.get('Version', a.get('Query', ''))}": a for a in answers}

    lib_head = pseudo("v1.2.0-rc.1", lib, "main", "pre")
    tool_head = pseudo("v0.3.1", lib, "main", "release")
    new_head = pseudo("v0.0.0", lib, "main", "none")
    expected = {
        f"{LIB}@v1.0.0": files_of(lib, "v1.0.0", LIB_FILES),
        f"{LIB}@v1.1.0": files_of(lib, "v1.1.0", LIB_FILES),
        f"{LIB}@{lib_head}": files_of(lib, "main", [*LIB_FILES, "docs/rc.txt"]),
        f"{LIB}/sub/tool@v0.3.0": files_of(
            lib, "v1.0.0", ["LICENSE", "go.mod", "tool.go"], "sub/tool"
        ),
        f"{LIB}/sub/tool@{tool_head}": files_of(
            lib, "main", ["LICENSE", "go.mod", "tool.go"], "sub/tool"
        ),
        f"{LIB}/newmod@{new_head}": files_of(lib, "main", ["LICENSE", "go.mod"], "newmod"),
        f"{LIB}/v2@v2.0.0": files_of(lib, "v2.0.0", ["LICENSE", "go.mod", "lib.go"], "v2"),
        f"{LIB}/modern@v0.1.0": files_of(
            lib, "v1.0.0", ["LICENSE", "go.mod", "pkg/vendor/v.go"], "modern"
        ),
        "example.com/acme/major/v3@v3.1.0": files_of(
            major, "v3.1.0", ["go.mod", "major.go", "more.go"]
        ),
        "example.com/acme/legacy@v2.1.0+incompatible": files_of(legacy, "v2.1.0", ["legacy.go"]),
        "example.com/Acme/Widget@v0.1.0": files_of(widget, "v0.1.0", ["go.mod", "widget.go"]),
    }
    targets = [
        f"{LIB}@v1.0.0",
        f"{LIB}@v1.1.0",
        f"{LIB}@main",
        f"{LIB}/sub/tool@v0.3.0",
        f"{LIB}/sub/tool@main",
        f"{LIB}/newmod@main",
        f"{LIB}/v2@v2.0.0",
        f"{LIB}/modern@v0.1.0",
        "example.com/acme/major/v3@v3.1.0",
        "example.com/acme/legacy@v2.1.0+incompatible",
        "example.com/Acme/Widget@v0.1.0",
    ]
    answers = await asyncio.to_thread(download, *targets)

    assert sorted(answers) == sorted(expected), answers
    for key, files in expected.items():
        answer = answers[key]
        assert "Error" not in answer, answer
        module, version = key.split("@")
        assert answer["Sum"] == zip_sum(module, version, files), key
        mod_text = Path(answer["GoMod"]).read_bytes()
        assert answer["GoModSum"] == go_mod_sum(mod_text)
        if "go.mod" in files:
            assert mod_text == files["go.mod"], key
    legacy_mod = Path(answers["example.com/acme/legacy@v2.1.0+incompatible"]["GoMod"])
    assert legacy_mod.read_text() == "module example.com/acme/legacy\n"
    assert answers[f"{LIB}@{lib_head}"]["GoModSum"] == go_mod_sum(GO_MOD_LIB.encode())

    async def versions(module: str) -> list[str]:
        listed = await asyncio.to_thread(go.run, "list", "-m", "-versions", module)
        assert listed.returncode == 0, listed.stderr
        return listed.stdout.split()[1:]

    assert await versions(LIB) == ["v1.0.0", "v1.1.0", "v1.2.0-rc.1"]
    assert await versions(f"{LIB}/sub/tool") == ["v0.3.0"]
    assert await versions(f"{LIB}/v2") == ["v2.0.0"]
    assert await versions("example.com/acme/major") == ["v1.0.0"]
    assert await versions("example.com/acme/major/v3") == ["v3.0.0", "v3.1.0"]
    assert await versions("example.com/acme/legacy") == [
        "v1.0.0",
        "v2.0.0+incompatible",
        "v2.1.0+incompatible",
    ]
    latest = await asyncio.to_thread(go.run, "list", "-m", "-json", f"{LIB}@latest")
    assert latest.returncode == 0, latest.stderr
    assert '"Version": "v1.1.0"' in latest.stdout
    newest = await asyncio.to_thread(go.run, "list", "-m", "-json", f"{LIB}/newmod@latest")
    assert f'"Version": "{new_head}"' in newest.stdout, newest.stderr

    app = tmp_path / "app"
    app.mkdir()
    (app / "go.mod").write_text(
        "module example.com/app\n\ngo 1.19\n\nrequire (\n"
        f"\t{LIB} v1.1.0\n\t{LIB}/v2 v2.0.0\n\t{LIB}/sub/tool v0.3.0\n"
        "\texample.com/acme/major/v3 v3.1.0\n"
        "\texample.com/acme/legacy v2.1.0+incompatible\n"
        "\texample.com/Acme/Widget v0.1.0\n)\n"
    )
    (app / "main.go").write_text(
        'package main\n\nimport (\n\t"fmt"\n\n'
        f'\tlib "{LIB}"\n\tlibv2 "{LIB}/v2"\n\t"{LIB}/sub/tool"\n'
        '\t"example.com/acme/major/v3"\n\t"example.com/acme/legacy"\n'
        '\t"example.com/Acme/Widget"\n)\n\n'
        "func main() {\n\tfmt.Println(lib.Hello(), libv2.Hello(), tool.Name(), major.V(), "
        "legacy.V(), widget.Name())\n}\n"
    )
    built = await asyncio.to_thread(go.run, "build", "-o", "app", ".", cwd=app)
    assert built.returncode == 0, built.stderr
    ran = await asyncio.create_subprocess_exec(str(app / "app"), stdout=asyncio.subprocess.PIPE)
    output, _ = await ran.communicate()
    assert output.decode() == "hello v1.1.0 hello v2 tool 3 v2.1.0 widget\n"
    sums = (app / "go.sum").read_text()
    legacy_files = expected["example.com/acme/legacy@v2.1.0+incompatible"]
    assert zip_sum("example.com/acme/legacy", "v2.1.0+incompatible", legacy_files) in sums

    # Without a token the private module is not there; the public one still is.
    anonymous = Go(tmp_path / "anonymous", proxy, ca=cert)
    refused = await asyncio.to_thread(anonymous.download, "example.com/Acme/Widget@v0.1.0")
    assert "404" in refused[0]["Error"]
    public = await asyncio.to_thread(anonymous.download, f"{LIB}@v1.1.0")
    assert public[0]["Sum"] == answers[f"{LIB}@v1.1.0"]["Sum"]


async def test_protocol_answers_errors_and_caching(
    tmp_path: Path, settings: Settings, live_server: Start
) -> None:
    live = await live_server(settings)
    svc = live.services
    lib = lib_repo(tmp_path / "repos")
    broken = broken_repo(tmp_path / "repos")
    mirror = await publish(svc, lib, "acme/lib", LIB, Visibility.public)
    await publish(svc, broken, "acme/broken", "example.com/acme/broken", Visibility.public)
    base = f"{live.url}/goproxy"
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        info = await http.get(f"/{LIB}/@v/v1.1.0.info")
        assert info.status_code == 200
        commit = lib.git("rev-parse", "v1.1.0^{commit}").strip()
        assert info.json() == {
            "Version": "v1.1.0",
            "Time": "2023-11-14T23:13:20Z",
            "Origin": {"VCS": "git", "Hash": commit, "Ref": "refs/tags/v1.1.0"},
        }
        by_branch = await http.get(f"/{LIB}/@v/main.info")
        assert by_branch.json()["Version"] == pseudo("v1.2.0-rc.1", lib, "main", "pre")
        by_hash = await http.get(f"/{LIB}/@v/{commit[:12]}.info")
        assert by_hash.json()["Version"] == "v1.1.0"
        sub = await http.get(f"/{LIB}/sub/tool/@v/v0.3.0.info")
        assert sub.json()["Origin"]["Subdir"] == "sub/tool"

        assert (await http.get(f"/{LIB}/@v/v9.9.9.info")).status_code == 404
        wrong_major = await http.get(f"/{LIB}/@v/v2.0.0.info")
        assert wrong_major.status_code == 404 and "v0 or v1" in wrong_major.text
        bad_time = pseudo("v1.2.0-rc.1", lib, "main", "pre").replace("2023", "2022")
        assert "time" in (await http.get(f"/{LIB}/@v/{bad_time}.info")).text
        assert (await http.get(f"/{LIB}/nothing/@v/list")).text == ""
        assert (await http.get(f"/{LIB}/nothing/@latest")).status_code == 404
        assert (await http.get("/example.com/nobody/@v/list")).status_code == 404
        assert (await http.get("/example.com/Raw/@v/list")).status_code == 404  # not escaped
        assert (await http.get("/sumdb/sum.golang.org/supported")).status_code == 404
        mod = await http.get(f"/{LIB}/@v/v1.0.0.mod")
        assert mod.content == GO_MOD_LIB.encode()

        first = await http.get(f"/{LIB}/@v/v1.0.0.zip")
        assert first.status_code == 200
        assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
        etag = first.headers["etag"]
        again = await http.get(f"/{LIB}/@v/v1.0.0.zip")
        assert again.content == first.content and again.headers["etag"] == etag
        assert "content-length" in again.headers  # from the cache file
        not_modified = await http.get(f"/{LIB}/@v/v1.0.0.zip", headers={"If-None-Match": etag})
        assert not_modified.status_code == 304

        # A tag that moves after it was served keeps its first content, and says so.
        await asyncio.to_thread(
            git, "--git-dir", str(mirror), "tag", "-f", "v1.0.0", "v1.1.0^{commit}"
        )
        moved = await http.get(f"/{LIB}/@v/v1.0.0.info")
        assert moved.json()["Origin"]["Hash"] == lib.git("rev-parse", "v1.0.0").strip()
        assert (await http.get(f"/{LIB}/@v/v1.0.0.zip")).content == first.content
        modules = await svc.goproxy.modules(
            operator(), await svc.repositories.get(operator(), "acme/lib")
        )
        assert {m.path: m.moved for m in modules}[LIB] == ["v1.0.0"]

        for version, reason in (
            ("v1.0.0", "case-insensitive file name collision"),
            ("v1.1.0", "LICENSE file too large"),
            ("v1.2.0", "invalid char ':'"),
        ):
            refused = await http.get(f"/example.com/acme/broken/@v/{version}.zip")
            assert refused.status_code == 422, version
            assert reason in refused.text, refused.text
    found = {
        m.path: m
        for m in await svc.goproxy.modules(
            operator(), await svc.repositories.get(operator(), "acme/lib")
        )
    }
    assert set(found) == {
        LIB,
        f"{LIB}/sub/tool",
        f"{LIB}/v2",
        f"{LIB}/modern",
        f"{LIB}/newmod",
    }
    assert found[LIB].versions == ["v1.0.0", "v1.1.0", "v1.2.0-rc.1"]
    assert found[LIB].latest == "v1.1.0"


async def test_import_roots_api_page_and_a_fetch_for_an_unknown_version(
    tmp_path: Path,
    client: httpx.AsyncClient,
    app_services: Services,
    admin_headers: dict[str, str],
    git_root: Path,
    git_server: GitHttpServer,
) -> None:
    upstream = widget_repo(git_root)
    await asyncio.to_thread(
        git, "clone", "--bare", "--quiet", str(upstream.path), str(git_root / "widget.git")
    )
    await seed_mirror(
        app_services,
        "acme/widget",
        source=git_root / "widget.git",
        visibility=Visibility.public,
        source_url=git_server.url("widget.git"),
    )
    shown = (await client.get("/api/repos/acme/widget", headers=admin_headers)).json()
    assert (shown["go_import_root"], shown["go_import_root_custom"]) == ("127.0.0.1/widget", False)

    bad = await client.patch(
        "/api/repos/acme/widget", json={"go_import_root": "no-dot/x"}, headers=admin_headers
    )
    assert bad.status_code == 422 and "go_import_root" in bad.text
    await app_services.accounts.create_user("bob")
    _, bob = await app_services.accounts.create_token("bob", "t")
    member = await client.patch(
        "/api/repos/acme/widget",
        json={"go_import_root": "example.com/Acme/Widget"},
        headers={"Authorization": f"Bearer {bob}"},
    )
    assert member.status_code == 403
    patched = await client.patch(
        "/api/repos/acme/widget",
        json={"go_import_root": "example.com/Acme/Widget"},
        headers=admin_headers,
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["go_import_root"], patched.json()["go_import_root_custom"]) == (
        "example.com/Acme/Widget",
        True,
    )

    listed = await client.get("/goproxy/example.com/!acme/!widget/@v/list")
    assert listed.text == "v0.1.0\n"
    # A version pushed upstream after the mirror's last fetch: one fetch, then the answer.
    await asyncio.to_thread(upstream.commit, "v0.2.0", T0 + 99, {"more.go": "package widget\n"})
    await asyncio.to_thread(upstream.tag, "v0.2.0")
    await asyncio.to_thread(
        upstream.git, "push", "--quiet", str(git_root / "widget.git"), "main", "v0.2.0"
    )
    before = len(git_server.requests)
    answers = await asyncio.gather(
        *(client.get("/goproxy/example.com/!acme/!widget/@v/v0.2.0.info") for _ in range(5))
    )
    assert {answer.status_code for answer in answers} == {200}
    fetches = [r for r in git_server.requests[before:] if "info/refs" in r[1]]
    assert len(fetches) == 1
    assert (
        await client.get("/goproxy/example.com/!acme/!widget/@v/v9.0.0.info")
    ).status_code == 404

    modules = await client.get("/api/repos/acme/widget/go-modules", headers=admin_headers)
    assert modules.json() == [
        {
            "path": "example.com/Acme/Widget",
            "subdir": "",
            "versions": ["v0.1.0", "v0.2.0"],
            "latest": "v0.2.0",
            "moved": [],
            "go_get": "GOPROXY=http://testserver/goproxy go get example.com/Acme/Widget@v0.2.0",
        }
    ]
    page = await client.get("/repos/acme/widget", headers=admin_headers)
    assert "GOPROXY=http://testserver/goproxy go get example.com/Acme/Widget@v0.2.0" in page.text
    assert "v0.1.0, v0.2.0" in page.text
    reset = await client.patch(
        "/api/repos/acme/widget", json={"go_import_root": None}, headers=admin_headers
    )
    assert reset.json()["go_import_root"] == "127.0.0.1/widget"


def test_cli_sets_the_import_root_and_lists_modules(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"REPODEPOT_DATA_DIR": str(data)}
    cli("db", "upgrade", env=env)
    work = widget_repo(tmp_path / "repos")

    async def register() -> None:
        svc = await Services.open(Settings(data_dir=data))
        try:
            await seed_mirror(svc, "acme/widget", source=work.path)
        finally:
            await svc.close()

    asyncio.run(register())
    none = cli("goproxy", "list", "acme/widget", env=env).stdout
    assert "no Go modules (import root none)" in none
    bad = cli("repos", "set", "acme/widget", "--go-import-root", "Widget", env=env, check=False)
    assert bad.returncode == 1 and "malformed module path" in bad.stderr
    cli("repos", "set", "acme/widget", "--go-import-root", "example.com/Acme/Widget", env=env)
    listed = cli("goproxy", "list", "acme/widget", "--proxy-url", "https://rd/goproxy", env=env)
    assert "example.com/Acme/Widget" in listed.stdout and "versions: v0.1.0" in listed.stdout
    line = "GOPROXY=https://rd/goproxy GONOSUMDB=example.com/Acme/Widget go get"
    assert f"{line} example.com/Acme/Widget@v0.1.0" in listed.stdout


async def test_a_version_whose_first_commit_is_gone_answers_410_for_its_zip(
    tmp_path: Path, settings: Settings, live_server: Start
) -> None:
    live = await live_server(settings)
    work = WorkTree(tmp_path / "gone")
    path = "example.com/acme/gone"
    work.commit("base", T0, {"go.mod": f"module {path}\n", "a.go": "package gone\n"})
    work.git("checkout", "-q", "-b", "side")
    first = work.commit("side", T0 + 1, {"b.go": "package gone\n"})
    work.tag("v0.1.0")
    work.git("checkout", "-q", "main")
    mirror = await publish(live.services, work, "acme/gone", path, Visibility.public)
    legacy = legacy_repo(tmp_path / "repos")
    await publish(
        live.services, legacy, "acme/legacy", "example.com/acme/legacy", Visibility.public
    )
    async with httpx.AsyncClient(base_url=f"{live.url}/goproxy", timeout=60) as http:
        mod = await http.get(f"/{path}/@v/v0.1.0.mod")
        assert mod.content == f"module {path}\n".encode()

        for args in (
            ["tag", "-f", "v0.1.0", "main"],
            ["branch", "-D", "side"],
            ["reflog", "expire", "--expire=now", "--all"],
            ["gc", "-q", "--prune=now"],
        ):
            await asyncio.to_thread(git, "--git-dir", str(mirror), *args)

        info = await http.get(f"/{path}/@v/v0.1.0.info")
        assert info.json()["Origin"]["Hash"] == first
        assert (await http.get(f"/{path}/@v/v0.1.0.mod")).content == mod.content
        gone = await http.get(f"/{path}/@v/v0.1.0.zip")
        assert gone.status_code == 410
        assert f"commit {first[:12]}, which it was first served from, is gone" in gone.text

        # +incompatible only for a v2+ without go.mod; a suffix-less path takes no v3.
        legacy_base = "/example.com/acme/legacy/@v"
        v3 = await http.get(f"{legacy_base}/v3.0.0+incompatible.info")
        assert v3.status_code == 404 and "+incompatible is not allowed" in v3.text
        v2 = await http.get(f"{legacy_base}/v2.0.0+incompatible.info")
        assert v2.json()["Version"] == "v2.0.0+incompatible"
        plain = await http.get(f"{legacy_base}/v2.0.0.info")
        assert plain.status_code == 404 and "should be v0 or v1" in plain.text
        escaped = await http.get(f"{legacy_base}/v2.1.0%2Bincompatible.mod")
        assert escaped.text == "module example.com/acme/legacy\n"
