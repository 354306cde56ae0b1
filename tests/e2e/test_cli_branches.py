"""`repodepot branches`, `upstream` and `sync-status` as an operator runs them.

Each command runs as a process on the data directory's database; the repositories are
real mirrors, the upstream a loopback git server; every count is compared with
`git rev-list --left-right --count` on the same two commits.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from repodepot.db.models import Visibility
from repodepot.services import Services
from repodepot.settings import Settings
from tests.e2e.conftest import cli
from tests.support.branchstatus import advance, pair_counts, rev_list, upstream_of
from tests.support.githttp import GitHttpServer
from tests.support.history_repo import T0, build, commit, run_git
from tests.support.repogen import git
from tests.support.seed import seed_mirror

TOKEN = "ghp_cli-upstream-secret-0123456789abcdef"
ENV = {"REPODEPOT_ALLOWED_SCHEMES": "http", "REPODEPOT_OUTBOUND_ALLOWLIST": "127.0.0.1"}
NEW_COMMANDS = [
    ["branches"],
    ["upstream"],
    ["upstream", "set"],
    ["upstream", "show"],
    ["upstream", "remove"],
    ["upstream", "fetch"],
    ["sync-status"],
]


def run(*args: str, data: Path, check: bool = True, input: str | None = None) -> str:
    result = cli(*args, "--data-dir", str(data), env=ENV, check=check, input=input)
    return result.stdout if check else result.stdout + result.stderr


async def seed(data: Path, name: str, source: Path) -> Path:
    """Seed repository `name` mirrored from `source`; returns its mirror."""
    settings = Settings(data_dir=data, allowed_schemes=["http"], outbound_allowlist=["127.0.0.1"])
    svc = await Services.open(settings)
    try:
        record = await seed_mirror(svc, name, source=source, visibility=Visibility.private)
        return svc.storage.path(record.id)
    finally:
        await svc.close()


@pytest.fixture
def private_server(git_root: Path) -> Iterator[GitHttpServer]:
    with GitHttpServer(git_root, auth=("bot", TOKEN)) as server:
        yield server


@pytest.mark.parametrize("command", NEW_COMMANDS, ids=" ".join)
def test_every_branch_status_command_has_complete_help(command: list[str]) -> None:
    text = cli(*command, "--help").stdout
    assert "Usage: repodepot" in text
    description = text.split("\n\n")[1].strip()
    assert description and not description.startswith("Options")
    for option in re.findall(r"^\s+(--[a-z-]+)", text, flags=re.M):
        line = next(line for line in text.splitlines() if line.strip().startswith(option))
        assert len(line.strip()) > len(option) + 2, f"{option} has no help"


async def test_branches_shows_each_branch_against_the_default_as_rev_list_counts(
    tmp_path: Path,
) -> None:
    work = build(tmp_path / "work")
    run_git(work, "checkout", "-q", "-b", "topic/a", "main~6")
    commit(work, "topic a", when=T0 + 900_000)
    run_git(work, "checkout", "-q", "--orphan", "orphan")
    commit(work, "unrelated", when=T0 + 910_000)
    run_git(work, "checkout", "-q", "main")
    run_git(work, "branch", "equal", "main")
    data = tmp_path / "data"
    mirror = await seed(data, "acme/app", work)

    listed = json.loads(run("branches", "acme/app", "--json", data=data))
    heads = git_heads(mirror)
    assert listed[0]["name"] == "main" and listed[0]["is_default"]
    assert {b["name"] for b in listed} == set(heads)
    for branch in listed:
        ahead, behind = rev_list(mirror, f"refs/heads/{branch['name']}", "refs/heads/main")
        assert (branch["ahead"], branch["behind"]) == (ahead, behind), branch["name"]
        assert branch["commit"]["sha"] == heads[branch["name"]]
    assert (listed[1]["name"], listed[1]["ahead"]) == ("orphan", 1)  # newest after the default

    by_name = json.loads(run("branches", "acme/app", "--sort", "name", "--json", data=data))
    assert [b["name"] for b in by_name] == ["main", *sorted(set(heads) - {"main"})]
    only = json.loads(run("branches", "acme/app", "--q", "TOPIC", "--json", data=data))
    assert [b["name"] for b in only] == ["topic/a"]
    active = json.loads(run("branches", "acme/app", "--state", "active", "--json", data=data))
    assert [b["name"] for b in active] == ["main"]  # the default always; the rest are old

    table = run("branches", "acme/app", data=data)
    row = next(line for line in table.splitlines() if "topic/a" in line)
    ahead, behind = rev_list(mirror, "refs/heads/topic/a", "refs/heads/main")
    assert re.search(rf"topic/a\s+\S\s+{ahead}\s+\S\s+{behind}\s", row), row
    assert "main (default)" in table and "topic a" in table and "Zoë Ångström" in table
    bad = run("branches", "acme/app", "--sort", "size", data=data, check=False)
    assert "size" in bad and "Traceback" not in bad
    assert "acme/none" in run("branches", "acme/none", data=data, check=False)


def git_heads(repo: Path) -> dict[str, str]:
    out = git(
        "--git-dir",
        str(repo),
        "for-each-ref",
        "--format=%(refname:lstrip=2) %(objectname)",
        "refs/heads/",
    )
    return dict(line.split() for line in out.splitlines())


async def test_an_operator_tracks_a_private_upstream_fetches_it_and_reads_its_status(
    tmp_path: Path, git_root: Path, private_server: GitHttpServer
) -> None:
    work = build(tmp_path / "work")
    run_git(work, "branch", "release/1", "main~2")
    data = tmp_path / "data"
    mirror = await seed(data, "acme/fork", work)
    bare = git_root / "up.git"
    upstream_of(work, bare)
    advance(work, "main", 3, "upstream main")
    run_git(work, "push", "-q", "origin", "main")
    advance(work, "release/1", 1, "upstream release", start=10)
    run_git(work, "push", "-q", "origin", "release/1", "release/1:release/2")
    url = private_server.url("up.git")

    refused = run("upstream", "set", "acme/fork", "--url", "file:///etc", data=data, check=False)
    assert "error:" in refused and "file" in refused and "Traceback" not in refused
    said = run(
        "upstream",
        "set",
        "acme/fork",
        "--url",
        url,
        "--branch",
        "main",
        "--branch",
        "release/*",
        "--username",
        "bot",
        "--token-stdin",
        data=data,
        input=TOKEN + "\n",
    )
    assert f"upstream {url} (with a token), tracking main, release/*" in said
    shown = json.loads(run("upstream", "show", "acme/fork", "--json", data=data))
    assert (shown["url"], shown["has_token"], shown["branches"]) == (
        url,
        True,
        ["main", "release/*"],
    )
    assert shown["last_fetched_at"] is None

    fetched = run("upstream", "fetch", "acme/fork", "--wait", data=data)
    assert re.search(
        r"acme/fork: fetched, branches moved, \d+ ms "
        r"\(network \d+ ms, pack \d+ ms, refs \d+ ms, db \d+ ms\)",
        fetched,
    ), fetched
    assert any(status == 200 for _, path, status in private_server.requests if "up.git" in path)

    status = json.loads(run("sync-status", "acme/fork", "--json", data=data))
    assert status["upstream"]["last_error"] is None
    pairs = {(b["branch"], b["upstream_branch"]): b for b in status["branches"]}
    assert set(pairs) == {("main", "main"), ("release/1", "release/1"), ("release/2", "release/2")}
    scratch = tmp_path / "scratch.git"
    for branch in ("main", "release/1"):
        got = pairs[(branch, branch)]
        assert (got["ahead"], got["behind"]) == pair_counts(scratch, mirror, branch, bare, branch)
    assert pairs[("main", "main")]["behind"] == 3 and pairs[("main", "main")]["needs_pull"]
    assert pairs[("release/2", "release/2")]["missing"]

    table = run("sync-status", "acme/fork", data=data)
    assert re.search(r"main\s+\S\s+main\s+\S\s+behind 3", table), table
    assert "missing here" in table
    behind = json.loads(run("sync-status", "--needs-pull", "--json", data=data))
    assert sorted((r["repository"], r["branch"]) for r in behind) == [
        ("acme/fork", "main"),
        ("acme/fork", "release/1"),
    ]
    assert json.loads(run("sync-status", "--diverged", "--json", data=data)) == []
    assert "no tracked branch matches" in run("sync-status", "--needs-push", data=data)
    again = run("upstream", "fetch", "acme/fork", "--wait", data=data)
    assert "fetched, nothing moved" in again
    assert "upstream fetch queued" in run("upstream", "fetch", "acme/fork", data=data)
    assert "last fetch:" in run("upstream", "show", "acme/fork", data=data)

    # The token went in through stdin: nothing shows it, the database keeps it sealed.
    outputs = [shown, status, behind, again, table, said, fetched]
    assert TOKEN not in json.dumps(outputs, default=str)
    with sqlite3.connect(data / "repodepot.db") as db:
        dumped = "\n".join(db.iterdump())
    assert TOKEN not in dumped and "up.git" in dumped

    assert "upstream removed" in run("upstream", "remove", "acme/fork", data=data)
    gone = run("upstream", "show", "acme/fork", data=data, check=False)
    assert "error: 'acme/fork' has no upstream" in gone
    assert "no upstream" in run("sync-status", "acme/fork", data=data)


async def test_fetch_wait_reports_an_unreachable_upstream_and_keeps_the_counts(
    tmp_path: Path, git_root: Path
) -> None:
    work = build(tmp_path / "work")
    data = tmp_path / "data"
    await seed(data, "acme/fork", work)
    upstream_of(work, git_root / "up.git")
    advance(work, "main", 2, "upstream")
    run_git(work, "push", "-q", "origin", "main")
    with GitHttpServer(git_root) as server:
        url = server.url("up.git")
        run("upstream", "set", "acme/fork", "--url", url, data=data)
        run("upstream", "fetch", "acme/fork", "--wait", data=data)
    before = json.loads(run("sync-status", "acme/fork", "--json", data=data))["branches"]
    assert [(b["branch"], b["behind"], b["stale"]) for b in before] == [("main", 2, False)]

    failed = cli(
        "upstream", "fetch", "acme/fork", "--wait", "--data-dir", str(data), env=ENV, check=False
    )
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "error: acme/fork: upstream fetch failed (" in failed.stderr
    after = json.loads(run("sync-status", "acme/fork", "--json", data=data))
    assert after["upstream"]["error_kind"] and after["upstream"]["last_error"]
    assert [(b["branch"], b["behind"], b["stale"]) for b in after["branches"]] == [
        ("main", 2, True)
    ]
    assert "behind 2 (stale)" in run("sync-status", "acme/fork", data=data)
    assert "failed:" in run("upstream", "show", "acme/fork", data=data)
