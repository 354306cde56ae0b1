"""A developer opens a repository in headless Chromium: clone command, commits, tags, branches.

And the platform team's view: the Upstream tab of a fork (set through its form, fetched
from the loopback git server) and the org-wide Behind upstream page. Every number shown
is checked against plain git on the same repositories; every page runs under the CSP.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from playwright.async_api import Browser, Locator, Page, expect

from repodepot.db.models import Visibility
from repodepot.services import Services
from repodepot.settings import Settings
from tests.e2e.conftest import Server
from tests.e2e.test_browser import csp_violations
from tests.support.eventually import eventually
from tests.support.githttp import GitHttpServer
from tests.support.history_repo import build, commit, run_git
from tests.support.repogen import HERMETIC, Spec, git
from tests.support.seed import seed_mirror

pytestmark = pytest.mark.browser

ADMIN = "rdp_repo-page-admin-token-0123456789"
DAY = 86400


async def _seed(data_dir: Path, *mirrors: tuple[str, Path | None, Visibility]) -> None:
    """Create the admin and each (name, source) mirror; a None source: an empty mirror."""
    svc = await Services.open(Settings(data_dir=data_dir, admin_token=ADMIN))
    try:
        await svc.accounts.bootstrap_admin(ADMIN)
        for name, source, visibility in mirrors:
            spec = Spec(commits=0) if source is None else None
            await seed_mirror(svc, name, source=source, spec=spec, visibility=visibility)
        await svc.repositories.create(name="acme/later", owner_id=None)
    finally:
        await svc.close()


async def _log_in(browser: Browser, server: Server, target: str) -> Page:
    context = await browser.new_context(permissions=["clipboard-read", "clipboard-write"])
    page = await context.new_page()
    await page.goto(f"{server.url}/login?next={target}")
    await page.fill("#token", ADMIN)
    await page.click("#login")
    await expect(page).to_have_url(server.url + target)
    return page


def counts(repo: Path, left: str, right: str) -> tuple[int, int]:
    """(behind, ahead) of `right` against `left`, as `git rev-list --left-right --count` says."""
    out = git("-C", str(repo), "rev-list", "--left-right", "--count", f"{left}...{right}")
    behind, ahead = out.split()
    return int(behind), int(ahead)


async def test_the_overview_shows_the_clone_command_commits_and_tags(
    tmp_path: Path, serve: type[Server], browser: Browser
) -> None:
    work = build(tmp_path / "work")
    await _seed(
        tmp_path / "data",
        ("acme/app", work, Visibility.private),
        ("acme/empty", None, Visibility.public),
    )
    server = serve(tmp_path / "data", {"REPODEPOT_ROLES": "web"})
    page = await _log_in(browser, server, "/repos/acme/app")
    violations = csp_violations(page)
    await page.reload()

    command = f"git clone {server.url}/git/acme/app"
    await expect(page.locator("#clone-command")).to_have_value(command)
    await expect(page.locator("#clone-hint")).to_contain_text("API token as the password")
    await page.click("#copy-clone")
    await expect(page.locator("#copy-clone")).to_have_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == command
    # The command works as shown, with the hint's token as the password.
    cloned = tmp_path / "cloned"
    url = command.split()[-1].replace("http://", f"http://admin:{ADMIN}@")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **HERMETIC, "GIT_TERMINAL_PROMPT": "0"}
    subprocess.run(["git", "clone", "-q", url, str(cloned)], env=env, check=True, timeout=60)
    assert git("-C", str(cloned), "rev-parse", "HEAD") == git("-C", str(work), "rev-parse", "main")

    logged = git("-C", str(work), "log", "-20", "--format=%h%x1f%H%x1f%an%x1f%s", "main")
    expected = [line.split("\x1f") for line in logged.splitlines()]
    rows = page.locator("#commits tbody tr")
    await expect(rows).to_have_count(20)
    shown = await rows.evaluate_all(
        "rows => rows.map(row => [...row.cells].map(cell => cell.textContent.trim())"
        ".concat([row.cells[0].querySelector('code').title]))"
    )
    assert [[r[0], r[4], r[1], r[3]] for r in shown] == [
        [full[:10], full, author, subject] for _, full, author, subject in expected
    ]
    tags = git(
        "-C",
        str(work),
        "for-each-ref",
        "--sort=-creatordate",
        "--format=%(refname:lstrip=2) %(creatordate:format:%Y-%m-%d %H:%M)",
        "refs/tags/v*",
    )
    tag_rows = await page.locator("#tags tbody tr").evaluate_all(
        "rows => rows.map(row => row.cells[0].textContent + ' ' + row.cells[1].textContent)"
    )
    assert tag_rows == tags.splitlines()  # the tag of a tree is not listed

    await page.goto(server.url + "/repos/acme/empty")
    await expect(page.locator("#no-history")).to_contain_text("empty: it has no commits yet")
    await expect(page.locator("#clone-hint")).to_have_count(0)  # public: no token needed
    await page.goto(server.url + "/repos/acme/later")
    await expect(page.locator("#no-history")).to_contain_text("Not cloned yet")
    assert violations == []


def _branchy(work: Path) -> dict[str, str]:
    """Branches with known shapes against main; returns each one's role."""
    recent = int(time.time()) - 2 * DAY - 3600
    run_git(work, "checkout", "-q", "-b", "old-fix", "main~10", when=recent)
    commit(work, "an old fix", when=int(time.time()) - 200 * DAY)
    run_git(work, "checkout", "-q", "-b", "topic/recent", "main~3", when=recent)
    for i in range(2):
        commit(work, f"recent work {i}", when=recent + i)
    run_git(work, "branch", "merged", "main~5", when=recent)
    run_git(work, "checkout", "-q", "--orphan", "orphan", when=recent)
    commit(work, "unrelated history", when=recent)
    run_git(work, "checkout", "-q", "main", when=recent)
    commit(work, "main moves on", when=recent + 100)
    return {"feature": "stale", "old-fix": "stale", "topic/recent": "active", "merged": "stale"}


async def test_the_branches_tab_shows_ahead_and_behind_as_git_counts_them(
    tmp_path: Path, serve: type[Server], browser: Browser
) -> None:
    work = build(tmp_path / "work")
    _branchy(work)
    await _seed(tmp_path / "data", ("acme/app", work, Visibility.public))
    server = serve(tmp_path / "data", {"REPODEPOT_ROLES": "web"})
    page = await _log_in(browser, server, "/repos/acme/app")
    violations = csp_violations(page)

    await page.click("#tab-branches")
    await expect(page).to_have_url(server.url + "/repos/acme/app?tab=branches")
    rows = page.locator("#branches tbody tr")
    branches = git("-C", str(work), "for-each-ref", "--format=%(refname:short)", "refs/heads/")
    await expect(rows).to_have_count(len(branches.split()))
    await expect(rows.first).to_have_attribute("data-branch", "main")
    await expect(rows.first.locator(".badge.default")).to_have_text("default")
    for name in branches.split():
        if name == "main":
            continue
        row = page.locator(f'#branches tr[data-branch="{name}"]')
        behind, ahead = counts(work, "main", name)
        await expect(row.locator(".behind-count")).to_have_text(str(behind))
        await expect(row.locator(".ahead-count")).to_have_text(str(ahead))
        await expect(row.locator("progress.behind")).to_have_attribute("value", str(behind))
        await expect(row.locator("progress.ahead")).to_have_attribute("value", str(ahead))
    orphan = page.locator('#branches tr[data-branch="orphan"]')
    await expect(orphan.locator(".behind-count")).to_have_text(
        str(counts(work, "main", "orphan")[0])
    )
    await expect(page.locator('#branches tr[data-branch="topic/recent"]')).to_contain_text(
        "2 days ago"
    )

    # Filters: a GET form, so each view has its own address.
    await page.select_option("#branch-state", "stale")
    await page.click("#branch-filter")
    await expect(page).to_have_url(
        server.url + "/repos/acme/app?tab=branches&q=&state=stale&sort=updated"
    )
    stale = await rows.evaluate_all("rows => rows.map(row => row.dataset.branch)")
    assert stale == ["main", "old-fix", "feature", "merged"]  # default first, then newest
    await page.select_option("#branch-state", "")
    await page.fill("#branch-q", "REC")
    await page.select_option("#branch-sort", "name")
    await page.click("#branch-filter")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_have_attribute("data-branch", "topic/recent")
    await page.fill("#branch-q", "nothing-like-it")
    await page.click("#branch-filter")
    await expect(page.locator("#no-branches")).to_contain_text("No branch matches")
    assert violations == []


async def test_the_upstream_tab_sets_fetches_and_shows_each_tracked_branch(
    tmp_path: Path,
    serve: type[Server],
    browser: Browser,
    git_root: Path,
    git_server: GitHttpServer,
) -> None:
    work = build(tmp_path / "work")
    run_git(work, "branch", "gone", "main~1")
    await _seed(tmp_path / "data", ("acme/fork", work, Visibility.private))
    # The upstream: main two commits further, `topic` is the fork's `feature` rewritten
    # (diverged), `gone` exists only in the fork (missing upstream).
    upstream = tmp_path / "upstream-work"
    git("clone", "-q", str(work), str(upstream))
    run_git(upstream, "checkout", "-q", "main")
    for i in range(2):
        commit(upstream, f"upstream {i}", when=int(time.time()) - DAY + i)
    run_git(upstream, "checkout", "-q", "-b", "topic", "origin/feature~1")
    commit(upstream, "rewritten", when=int(time.time()) - DAY)
    git("clone", "-q", "--bare", str(upstream), str(git_root / "up.git"))

    env = {
        "REPODEPOT_ROLES": "web,updater,gitserver",
        "REPODEPOT_ALLOWED_SCHEMES": "http",
        "REPODEPOT_OUTBOUND_ALLOWLIST": "127.0.0.1",
    }
    server = serve(tmp_path / "data", env)
    page = await _log_in(browser, server, "/repos/acme/fork?tab=upstream")
    violations = csp_violations(page)
    await page.reload()
    await expect(page.locator("#no-upstream")).to_contain_text("No upstream")

    await page.fill("#upstream-url", "ftp://127.0.0.1/nope.git")
    await page.click("#set-upstream")
    await expect(page.locator("#upstream-error")).to_contain_text("ftp")
    await expect(page.locator("#upstream-url")).to_have_value("ftp://127.0.0.1/nope.git")

    await page.fill("#upstream-url", git_server.url("up.git"))
    await page.fill("#upstream-token", "rdp_upstream-secret-000000000000")
    await page.fill("#upstream-tracked", "main, feature:topic gone")
    await page.click("#set-upstream")
    await expect(page).to_have_url(server.url + "/repos/acme/fork?tab=upstream")
    await expect(page.locator("#upstream-source")).to_contain_text(git_server.url("up.git"))
    await expect(page.locator("#upstream-branches")).to_have_text("main, feature:topic, gone")
    await page.click("#fetch-now")
    await expect(page.locator("#notice")).to_contain_text("Fetch requested")

    async def fetched() -> None:
        await page.reload()
        await expect(page.locator("#tracked tbody tr")).to_have_count(3, timeout=1000)

    await eventually(fetched, timeout=60, interval=0.5)
    assert "rdp_upstream-secret" not in await page.content()
    mirror = _mirror_of(tmp_path / "data")
    up = git_root / "up.git"
    git("--git-dir", str(up), "fetch", "-q", str(mirror), "+refs/heads/*:refs/fork/*")
    main_behind, main_ahead = counts(up, "refs/fork/main", "refs/heads/main")
    topic_behind, topic_ahead = counts(up, "refs/fork/feature", "refs/heads/topic")
    assert (main_behind, main_ahead, topic_behind, topic_ahead) == (0, 2, 1, 1)

    def row(branch: str) -> Locator:
        return page.locator(f'#tracked tr[data-branch="{branch}"]')

    # Counts are the fork's: behind = upstream commits it lacks, ahead = its own.
    await expect(row("main").locator(".badge.sync")).to_have_text(f"behind {main_ahead}")
    await expect(row("main").locator(".behind-count")).to_have_text(str(main_ahead))
    await expect(row("main").locator(".ahead-count")).to_have_text(str(main_behind))
    await expect(row("feature").locator(".badge.sync")).to_have_text(
        f"diverged (ahead {topic_behind}, behind {topic_ahead})"
    )
    await expect(row("feature")).to_contain_text("topic")
    await expect(row("gone").locator(".badge.sync")).to_have_text("missing upstream")
    await expect(page.locator("#last-fetch")).to_contain_text("network")  # its time, split
    await expect(page.locator("#next-fetch")).to_contain_text("every 15 min")

    await page.click("#nav-sync-status")
    await expect(page).to_have_url(server.url + "/sync-status")
    await expect(page.locator("#sync-rows tbody tr")).to_have_count(3)
    await page.check("#filter-needs-pull")
    await page.click("#sync-filter")
    await expect(page).to_have_url(server.url + "/sync-status?needs_pull=true")
    needing = page.locator("#sync-rows tbody tr")
    branches = await needing.evaluate_all("rows => rows.map(row => row.cells[1].textContent)")
    assert sorted(branches) == ["feature", "main"]
    await expect(needing.first.locator("td").first).to_have_text("acme/fork")
    assert violations == []


def _mirror_of(data_dir: Path) -> Path:
    """The one mirror under `data_dir` (the test seeds one repository with commits)."""
    found = [path for path in (data_dir / "repos").glob("*/*/*.git")]
    assert len(found) == 1, found
    return found[0]
