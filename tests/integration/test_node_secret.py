"""git with the internal secret (a move's copy, an upstream on another node): the secret
goes to the node as a header, never in argv or an error, and never follows a redirect."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from repodepot.git import commands
from repodepot.git.errors import GitCommandError
from repodepot.git.runner import GitRunner
from repodepot.settings import process_path
from tests.support.githttp import GitHttpServer
from tests.support.repogen import Spec, generate

SECRET = "internal-secret-" + "s" * 32


class Recorder:
    """A web server that records each request's Authorization header and answers `answer`."""

    def __init__(self, address: str, answer: tuple[int, dict[str, str]]) -> None:
        self.seen: list[tuple[str, str | None]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.seen.append((self.path, self.headers.get("Authorization")))
                status, headers = answer
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((address, 0), Handler)
        self.url = f"http://{address}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def https_only(tmp_path: Path) -> GitRunner:
    # As in production: user URLs may be https only; a node's URL is http on the inside.
    return GitRunner(runtime_dir=tmp_path / "run", path=process_path(), allowed_schemes=("https",))


@pytest.fixture
def elsewhere() -> Iterator[Recorder]:
    recorder = Recorder("127.0.0.2", (404, {}))
    yield recorder
    recorder.close()


async def test_the_secret_reaches_the_node_as_a_header_and_never_argv_or_errors(
    https_only: GitRunner, tmp_path: Path
) -> None:
    node = Recorder("127.0.0.1", (403, {}))
    try:
        with pytest.raises(GitCommandError) as refused:
            await commands.ls_remote_heads(
                https_only, f"{node.url}/internal/repos/7", [], node_secret=SECRET
            )
    finally:
        node.close()
    assert node.seen and all(auth == f"Bearer {SECRET}" for _, auth in node.seen)
    assert SECRET not in str(refused.value)
    assert all(SECRET not in arg for arg in refused.value.args[0])


async def test_without_the_secret_http_stays_refused_for_an_https_only_runner(
    https_only: GitRunner,
) -> None:
    node = Recorder("127.0.0.1", (403, {}))
    try:
        with pytest.raises(GitCommandError) as refused:
            await commands.ls_remote_heads(https_only, f"{node.url}/repo.git")
    finally:
        node.close()
    assert node.seen == []  # git never connected: the scheme is not allowed
    assert "transport 'http' not allowed" in str(refused.value)


async def test_a_redirect_is_not_followed_with_the_secret(
    https_only: GitRunner, elsewhere: Recorder
) -> None:
    node = Recorder("127.0.0.1", (302, {"Location": f"{elsewhere.url}/stolen"}))
    try:
        with pytest.raises(GitCommandError):
            await commands.ls_remote_heads(
                https_only, f"{node.url}/internal/repos/7", [], node_secret=SECRET
            )
    finally:
        node.close()
    assert node.seen
    assert elsewhere.seen == []


async def test_a_clone_with_the_secret_copies_the_repository(
    https_only: GitRunner, tmp_path: Path
) -> None:
    generate(tmp_path / "served" / "r.git", Spec(commits=3, tags=1))
    with GitHttpServer(tmp_path / "served") as server:
        await commands.clone_bare(
            https_only, server.url("r.git"), tmp_path / "copy.git", mirror=True, node_secret=SECRET
        )
    digest = await commands.refs_digest(https_only, tmp_path / "copy.git")
    assert digest == await commands.refs_digest(https_only, tmp_path / "served" / "r.git")
