"""`git clone` from repodepot's smart HTTP: same refs as the source, visibility, no push."""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from repodepot.db.models import Visibility
from repodepot.services import Services
from repodepot.settings import Settings
from tests.conftest import ADMIN_TOKEN
from tests.support.repogen import HERMETIC, Spec, git
from tests.support.seed import seed_mirror
from tests.support.servers import LiveApp

Start = Callable[[Settings], Awaitable[LiveApp]]


async def run_git(
    *args: str, token: str | None = None, protocol: str = "2"
) -> subprocess.CompletedProcess[str]:
    """The git command line, with the token in the environment (never in argv), in a
    thread: the server answering it runs in this event loop."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_TERMINAL_PROMPT": "0", **HERMETIC}
    config = [("protocol.version", protocol)]
    if token:
        config.append(("http.extraHeader", f"Authorization: Bearer {token}"))
    env["GIT_CONFIG_COUNT"] = str(len(config))
    for index, (key, value) in enumerate(config):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return await asyncio.to_thread(
        subprocess.run, ["git", *args], env=env, text=True, capture_output=True, timeout=120
    )


def refs(path: Path) -> str:
    return git("--git-dir", str(path), "for-each-ref", "--format=%(objectname) %(refname)")


async def mirror(services: Services, name: str, visibility: Visibility) -> Path:
    spec = Spec(commits=30, branches=3, tags=2, files=20)
    record = await seed_mirror(services, name, spec=spec, visibility=visibility)
    return services.storage.path(record.id)


@pytest.mark.parametrize("protocol", ["0", "2"])
async def test_clone_gives_the_mirror_s_refs_and_objects(
    tmp_path: Path, settings: Settings, live_server: Start, protocol: str
) -> None:
    live = await live_server(settings)
    source = await mirror(live.services, "acme/open", Visibility.public)

    cloned = await run_git(
        "clone",
        "--mirror",
        f"{live.url}/git/acme/open.git",
        str(tmp_path / "c.git"),
        protocol=protocol,
    )

    assert cloned.returncode == 0, cloned.stderr
    assert refs(tmp_path / "c.git") == refs(source)
    assert git("--git-dir", str(tmp_path / "c.git"), "fsck", "--no-progress") == ""
    fetched = await run_git(
        "--git-dir", str(tmp_path / "c.git"), "fetch", "origin", protocol=protocol
    )
    assert fetched.returncode == 0, fetched.stderr


async def test_private_mirrors_need_a_token_and_pushes_are_refused(
    tmp_path: Path, settings: Settings, live_server: Start
) -> None:
    live = await live_server(settings)
    source = await mirror(live.services, "acme/closed", Visibility.private)
    url = f"{live.url}/git/acme/closed"

    anonymous = await run_git("clone", url, str(tmp_path / "anon"))
    assert anonymous.returncode != 0
    assert "could not read Username" in anonymous.stderr or "401" in anonymous.stderr

    await live.services.accounts.create_user("bob")
    _, bob = await live.services.accounts.create_token("bob", "t")
    stranger = await run_git("clone", url, str(tmp_path / "bob"), token=bob)
    assert stranger.returncode != 0 and "not found" in stranger.stderr

    allowed = await run_git("clone", "--bare", url, str(tmp_path / "ok.git"), token=ADMIN_TOKEN)
    assert allowed.returncode == 0, allowed.stderr
    assert refs(tmp_path / "ok.git") == refs(source)

    work = tmp_path / "work"
    assert (await run_git("clone", url, str(work), token=ADMIN_TOKEN)).returncode == 0
    (work / "new.txt").write_text("x")
    git("add", "new.txt", cwd=work)
    git("-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qm", "x", cwd=work)
    pushed = await run_git(
        "-C", str(work), "push", "origin", "HEAD:refs/heads/pushed", token=ADMIN_TOKEN
    )
    assert pushed.returncode != 0
    assert "read-only" in pushed.stderr or "403" in pushed.stderr
    assert "refs/heads/pushed" not in refs(source)


def settle(path: Path) -> None:
    """Date the mirror's refs a minute back, as if its last fetch were that long ago."""
    old = os.stat(path).st_mtime - 60
    for name in ("HEAD", "config", "packed-refs"):
        if (path / name).exists():
            os.utime(path / name, (old, old))
    for directory, _dirs, _files in os.walk(path / "refs"):
        os.utime(directory, (old, old))


@pytest.mark.parametrize("protocol", ["0", "2"])
async def test_the_ref_advertisement_is_kept_while_the_refs_hold_and_follows_them(
    tmp_path: Path, settings: Settings, live_server: Start, protocol: str
) -> None:
    live = await live_server(settings)
    source = await mirror(live.services, "acme/open", Visibility.public)
    url = f"{live.url}/git/acme/open.git"
    settle(source)
    adverts = live.services.reads.adverts

    first = await run_git("ls-remote", url, protocol=protocol)
    second = await run_git("ls-remote", url, protocol=protocol)

    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout
    assert "refs/heads/main" in first.stdout
    assert (adverts.misses, adverts.hits) == (1, 1)

    # A fetch moves a branch and adds one: the next advertisement shows both.
    main = git("--git-dir", str(source), "rev-parse", "refs/heads/main").strip()
    parent = git("--git-dir", str(source), "rev-parse", "refs/heads/main~1").strip()
    git("--git-dir", str(source), "update-ref", "refs/heads/main", parent)
    git("--git-dir", str(source), "update-ref", "refs/heads/fresh", main)

    after = await run_git("ls-remote", url, protocol=protocol)

    assert after.returncode == 0, after.stderr
    assert f"{parent}\trefs/heads/main" in after.stdout
    assert f"{main}\trefs/heads/fresh" in after.stdout
    assert adverts.misses == 2
    cloned = await run_git("clone", "--mirror", url, str(tmp_path / "c.git"), protocol=protocol)
    assert cloned.returncode == 0, cloned.stderr
    assert refs(tmp_path / "c.git") == refs(source)
