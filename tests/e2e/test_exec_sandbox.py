"""exec's two walls: the allowlist refuses the issue's attacks, and the sandbox holds without it."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx
import pytest

from repodepot.accounts import operator
from repodepot.db.models import Visibility
from repodepot.exceptions import ConfigurationError, TooManyRequests
from repodepot.git.errors import GitCommandError
from repodepot.git.runner import GitRunner
from repodepot.services import Services
from repodepot.settings import Settings, process_path
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate, git
from tests.support.seed import seed_mirror

NAME = "acme/app"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The key is written to data/secret_key, as on a real server: the file the issue read.
    return settings.model_copy(update={"secret_key": None, "roles": ["web"]})


@pytest.fixture
async def mirror(app_services: Services, git_root: Path, git_server: GitHttpServer) -> Path:
    source = generate(git_root / "app.git", Spec(commits=5, files=3))
    record = await seed_mirror(
        app_services,
        NAME,
        source=source,
        visibility=Visibility.public,
        source_url=git_server.url("app.git"),
    )
    return app_services.storage.path(record.id)


def _a_file(mirror: Path) -> str:
    return git("--git-dir", str(mirror), "ls-tree", "-r", "--name-only", "HEAD").split()[0]


@pytest.fixture
def secret(app_services: Services) -> tuple[Path, str]:
    path = app_services.settings.data_dir / "secret_key"
    return path, path.read_text().strip()


async def test_the_issue_attacks_are_refused_and_touch_nothing(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    mirror: Path,
    secret: tuple[Path, str],
) -> None:
    key_path, key = secret
    marker = Path(f"/tmp/repodepot-pwned-{uuid.uuid4().hex}")
    relative = os.path.relpath(key_path, mirror)  # ../../../secret_key, from the mirror
    attacks = [
        ["grep", "--no-ind", f"--open-f=touch {marker}", "-e", "x", "--", "."],
        ["archive", f"--add-file={key_path}", "HEAD"],
        ["archive", f"--add-file={relative}", "HEAD"],
        ["blame", f"--ignore-revs-f={key_path}", "HEAD", "--", _a_file(mirror)],
        ["grep", "--no-ind", "-e", ".", "--", str(key_path)],
        ["grep", f"-if{key_path}", "HEAD"],
        ["diff", str(key_path), "/etc/hostname"],
        ["rev-parse", "--absolute-git-dir"],
        ["log", "--grep=" + "x" * (512 << 10)],  # past what exec() takes: a 500 before
    ]
    for args in attacks:
        answer = await client.post(
            f"/api/repos/{NAME}/exec", json={"args": args}, headers=admin_headers
        )
        assert answer.status_code == 422, (args[:2], answer.text[:300])
        assert answer.json()["error"]["field"].startswith("args.")
        assert key not in answer.text
        assert str(mirror) not in answer.text
    assert not marker.exists()

    # What a server path would have shown is the sandbox's own name for the mirror.
    where = await client.post(
        f"/api/repos/{NAME}/exec",
        json={"args": ["rev-parse", "--is-bare-repository"]},
        headers=admin_headers,
    )
    assert where.text.strip() == "true"


async def test_the_sandbox_holds_when_the_allowlist_does_not(
    app_services: Services, mirror: Path, secret: tuple[Path, str]
) -> None:
    # The runner is called directly, as if check_exec had let these through.
    key_path, key = secret
    unsandboxed = GitRunner(runtime_dir=mirror.parent / "run", path=process_path())
    reads = [
        ["grep", "--no-index", "-e", ".", "--", key_path.name],  # from the data dir
        ["archive", "--format=tar", f"--add-file={key_path}", "HEAD"],
        ["diff", "--no-index", str(key_path), "/dev/null"],
    ]
    for args in reads:
        cwd = key_path.parent  # the server's cwd, as in the issue (git_dir's by default)
        plain = await unsandboxed.run(args, git_dir=mirror, cwd=cwd, check=False)
        assert key.encode() in plain.stdout, args  # each is a real read of the key
        boxed = await app_services.git.run(args, git_dir=mirror, cwd=cwd, check=False)
        assert key.encode() not in boxed.stdout, args
        assert key not in boxed.stderr
        assert boxed.returncode != 0


async def test_a_program_git_starts_in_the_sandbox_sees_only_the_mirror(
    app_services: Services,
    mirror: Path,
    secret: tuple[Path, str],
    git_server: GitHttpServer,
) -> None:
    # The worst hole: the allowlist lets through an option that runs a program. Here a
    # smudge filter (what cat-file --filters runs) is a shell script kept in the mirror.
    key_path, key = secret
    marker = Path(f"/tmp/repodepot-pwned-{uuid.uuid4().hex}")
    blob = f"HEAD:{_a_file(mirror)}"
    port = git_server.url("app.git").split(":")[2].split("/")[0]
    (mirror / "attack.sh").write_text(
        "cat > /dev/null\n"
        "echo RAN\n"
        f"cat {key_path} && echo READ-SECRET\n"
        f"touch {marker} && echo WROTE-TMP\n"
        "echo x > written && echo WROTE-MIRROR\n"
        f"(exec 3<>/dev/tcp/127.0.0.1/{port}) && echo REACHED-NETWORK\n"
        "exit 0\n"
    )
    (mirror / "info" / "attributes").write_text("* filter=attack\n")
    # A path relative to the mirror: git runs in it, in the sandbox and out.
    config = [("filter.attack.smudge", "/bin/bash attack.sh"), ("filter.attack.required", "true")]

    boxed = await app_services.git.run(
        ["cat-file", "--filters", blob], git_dir=mirror, config=config, check=False
    )
    out = boxed.stdout.decode()
    assert "RAN" in out, boxed.stderr
    assert key not in out
    for escaped in ("READ-SECRET", "WROTE-TMP", "WROTE-MIRROR", "REACHED-NETWORK"):
        assert escaped not in out, out
    assert not marker.exists()
    assert not (mirror / "written").exists()
    assert git_server.requests == []

    # The same program outside the sandbox reaches all of it.
    unsandboxed = GitRunner(runtime_dir=mirror.parent / "run", path=process_path())
    try:
        plain = await unsandboxed.run(
            ["cat-file", "--filters", blob], git_dir=mirror, config=config, check=False
        )
        assert "READ-SECRET" in plain.stdout.decode()
        assert "REACHED-NETWORK" in plain.stdout.decode()
    finally:
        marker.unlink(missing_ok=True)


async def test_start_up_fails_clearly_without_a_working_bwrap(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to("/usr/bin/git")
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(ConfigurationError, match="bwrap was not found"):
        await Services.open(settings)

    # Installed but refused (no user namespaces, say): found at start-up, not per read.
    (bin_dir / "bwrap").write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to creating new namespace' >&2\nexit 1\n"
    )
    (bin_dir / "bwrap").chmod(0o755)
    with pytest.raises(ConfigurationError, match="No permissions to creating new namespace"):
        await Services.open(settings)

    unboxed = await Services.open(settings.model_copy(update={"git_sandbox": "none"}))
    try:
        assert unboxed.git.sandbox is None
    finally:
        await unboxed.close()


async def test_exec_s_heap_is_capped_when_a_width_gets_past_the_allowlist(
    app_services: Services, mirror: Path
) -> None:
    # A strftime width of a billion columns made one request's git take 2.8 GB. Called
    # past the allowlist (which now refuses the width), the heap cap still stops it.
    cap = app_services.settings.exec_max_memory
    assert cap <= 1 << 30
    output = app_services.git.stream(
        ["log", "-1", "--date=format:%999999999Y", "--format=%ad%ad"],
        git_dir=mirror,
        max_memory=cap,
    )
    with pytest.raises(GitCommandError) as failed:
        async for _ in output:
            pass
    assert "Out of memory" in failed.value.stderr


@pytest.fixture
def big_blob(mirror: Path, tmp_path: Path) -> str:
    # A blob larger than a pipe holds: an exec reading it stays open until it is read.
    work = tmp_path / "work"
    git("clone", "--quiet", str(mirror), str(work))
    (work / "big.bin").write_bytes(os.urandom(4 << 20))
    git("add", "big.bin", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "big", cwd=work)
    sha = git("rev-parse", "HEAD:big.bin", cwd=work).strip()
    git("push", "--quiet", str(mirror), "HEAD:refs/heads/big", cwd=work)
    return sha


async def test_execs_at_once_are_bounded_per_user_and_in_all(
    app_services: Services, big_blob: str
) -> None:
    settings = app_services.settings
    reads = app_services.reads
    per_user, in_all = settings.exec_max_per_user, settings.exec_max_concurrent
    assert per_user < in_all
    key = (await app_services.repositories.get(operator(), NAME)).id
    held = []

    async def start(user_id: int) -> None:
        output = reads.exec(key, NAME, ["cat-file", "-p", big_blob], user_id=user_id)
        assert await anext(output)  # running, its output waiting in the pipe
        held.append(output)

    try:
        for _ in range(per_user):
            await start(user_id=1)
        with pytest.raises(TooManyRequests) as busy:
            await start(user_id=1)
        assert f"at most {per_user} per user" in busy.value.message
        assert busy.value.retry_after >= 1
        user = 2
        while len(held) < in_all:  # others still get theirs, up to the site's bound
            await start(user_id=user)
            user += 1
        with pytest.raises(TooManyRequests):
            await start(user_id=user)
        await held.pop(0).aclose()  # one of user 1's ends: a place is free again
        await start(user_id=1)
    finally:
        for output in held:
            await output.aclose()


async def test_a_busy_exec_answers_429_with_retry_after(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    app_services: Services,
    big_blob: str,
) -> None:
    reads = app_services.reads
    key = (await app_services.repositories.get(operator(), NAME)).id
    held = [reads.exec(key, NAME, ["cat-file", "-p", big_blob], user_id=1) for _ in range(2)]
    try:
        for output in held:
            await anext(output)
        answer = await client.post(
            f"/api/repos/{NAME}/exec", json={"args": ["rev-parse", "HEAD"]}, headers=admin_headers
        )
        assert answer.status_code == 429, answer.text
        assert answer.json()["error"]["code"] == "too_many_requests"
        assert int(answer.headers["retry-after"]) >= 1
    finally:
        for output in held:
            await output.aclose()
    answer = await client.post(
        f"/api/repos/{NAME}/exec", json={"args": ["rev-parse", "HEAD"]}, headers=admin_headers
    )
    assert answer.status_code == 200
