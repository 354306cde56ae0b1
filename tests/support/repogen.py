"""Generate repositories fast with `git fast-import`: N commits, M branches, tags, file sizes."""

from __future__ import annotations

import os
import random
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

T0 = 1_700_000_000
HERMETIC = {"GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "LC_ALL": "C"}


def git(*args: str, cwd: Path | None = None) -> str:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **HERMETIC}
    result = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)
    return result.stdout.decode()


@dataclass(frozen=True, kw_only=True)
class Spec:
    commits: int = 10
    branches: int = 0
    branch_commits: int = 2
    tags: int = 0
    files: int = 100
    blob_bytes: int = 64
    seed: int = 1
    default_branch: str = "main"
    binary: bool = False  # incompressible random blobs instead of hex text


def _stream(spec: Spec) -> Iterator[bytes]:
    rng = random.Random(spec.seed)
    ident = b"Gen <gen@example.com>"

    def commit(ref: str, mark: int, parent: int | None, when: int, message: str) -> Iterator[bytes]:
        path = f"dir{mark % 100:02d}/file{mark % spec.files:04d}.txt"
        if spec.binary:
            content = rng.randbytes(spec.blob_bytes)
        else:
            content = rng.randbytes(spec.blob_bytes).hex()[: spec.blob_bytes].encode() + b"\n"
        msg = message.encode()
        yield b"commit %s\nmark :%d\n" % (ref.encode(), mark)
        yield b"author %s %d +0000\ncommitter %s %d +0000\n" % (ident, when, ident, when)
        yield b"data %d\n%s\n" % (len(msg), msg)
        if parent is not None:
            yield b"from :%d\n" % parent
        yield b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(content), content)

    main = f"refs/heads/{spec.default_branch}"
    for i in range(1, spec.commits + 1):
        yield from commit(main, i, i - 1 if i > 1 else None, T0 + 60 * i, f"commit {i}")
    mark = spec.commits
    for b in range(spec.branches):
        base = rng.randint(1, spec.commits)
        parent = base
        for j in range(spec.branch_commits):
            mark += 1
            yield from commit(
                f"refs/heads/branch-{b}",
                mark,
                parent,
                T0 + 60 * (base + j) + 30,
                f"branch {b} commit {j}",
            )
            parent = mark
    for t in range(spec.tags):
        target = max(1, spec.commits * (t + 1) // spec.tags)
        yield b"reset refs/tags/v1.%d.0\nfrom :%d\n\n" % (t, target)
    yield b"done\n"


def generate(path: Path, spec: Spec | None = None) -> Path:
    """Create the bare repository `path` as `spec` says; returns `path`."""
    spec = spec or Spec()
    git("init", "-q", "--bare", f"--initial-branch={spec.default_branch}", str(path))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **HERMETIC}
    process = subprocess.Popen(
        ["git", "fast-import", "--done", "--quiet"], cwd=path, env=env, stdin=subprocess.PIPE
    )
    assert process.stdin is not None
    buffer = bytearray()
    for piece in _stream(spec):
        buffer += piece
        if len(buffer) > 1 << 20:
            process.stdin.write(buffer)
            buffer.clear()
    process.stdin.write(buffer)
    process.stdin.close()
    if process.wait() != 0:
        raise RuntimeError(f"git fast-import failed for {path}")
    return path
