"""The one place that starts git.

Every command runs in its own process group (a timeout or a cancel kills the
whole tree, remote helpers included), with an environment built from nothing:
no user or system config, no terminal prompts, only the configured protocols,
credentials through an askpass helper and environment variables, never argv.
Everything that leaves this module (errors, logs) goes through `redact`.

With a `Sandbox`, every read-only subcommand given a `git_dir` (the ones a user's
input reaches: exec, EnsureRevision's readers, the Go proxy's reads, upload-pack)
runs inside bubblewrap, which sees only the system's binaries and that repository,
read-only, at `/repo`. Commands that write or talk to the network (clone, fetch,
maintenance) run outside it. Without a sandbox, git still runs in the repository.

Inside a `background()` block (a loop's fetch or maintenance, and the tasks it starts),
the git it runs yields to the foreground: `nice -n 19` and the idle I/O class
(`ionice -c 3`), wrapped around the whole command line (the sandbox included).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repodepot.exceptions import ConfigurationError
from repodepot.git.errors import (
    GitCommandError,
    GitCommandNotAllowed,
    GitError,
    GitNotInstalled,
    GitOutputTooLarge,
    GitTimeout,
)
from repodepot.git.redact import redact
from repodepot.git.sandbox import INSIDE, Sandbox

logger = logging.getLogger(__name__)

ALLOWED_SUBCOMMANDS = frozenset(
    {
        "archive",
        "blame",
        "cat-file",
        "clone",
        "commit-graph",
        "config",
        "count-objects",
        "diff",
        "fetch",
        "for-each-ref",
        "fsck",
        "gc",
        "grep",
        "http-backend",
        "init",
        "log",
        "ls-remote",
        "maintenance",
        "ls-tree",
        "merge-base",
        "pack-refs",
        "repack",
        "rev-list",
        "rev-parse",
        "show",
        "show-ref",
        "symbolic-ref",
        "update-ref",
        "upload-pack",
        "version",
    }
)

# Commands that only read the repository they are given: with a sandbox, these run in it.
SANDBOXED = frozenset(
    {
        "archive",
        "blame",
        "cat-file",
        "diff",
        "for-each-ref",
        "grep",
        "log",
        "ls-tree",
        "merge-base",
        "rev-list",
        "rev-parse",
        "show",
        "show-ref",
        "upload-pack",
    }
)

# Commands that can run for minutes: tied to our life with setpriv --pdeathsig, which costs an
# exec (~1.5 ms) that short reads need not pay.
LONG_RUNNING = frozenset(
    {
        "clone",
        "fetch",
        "fsck",
        "ls-remote",
        "maintenance",
        "gc",
        "repack",
        "commit-graph",
        "upload-pack",
        "archive",
    }
)

# Settings every git we start gets, passed as GIT_CONFIG_* variables (not argv).
BASE_CONFIG = (
    ("gc.auto", "0"),  # maintenance is scheduled by us, never inline
    ("maintenance.auto", "false"),
    ("credential.helper", ""),  # never store credentials
    ("core.hooksPath", "/dev/null"),
    # The upstream namespace of branch status (`refs/upstream/…`) is ours, never a client's:
    # upload-pack advertises nothing under it, over protocol v0 and v2.
    ("uploadpack.hideRefs", "refs/upstream"),
)

ASKPASS = """#!/bin/sh
# repodepot: answers git's credential prompts from the environment, never argv.
case "$1" in
  Username*) printf '%s\\n' "$REPODEPOT_ASKPASS_USERNAME" ;;
  *) printf '%s\\n' "$REPODEPOT_ASKPASS_PASSWORD" ;;
esac
"""

NO_TIMEOUT = float("inf")
"""A `timeout` for work its caller watches instead (a stall timeout), never the clock."""

# Whether the running task's git is background work: set by `background()`, read by `_argv`.
# A context variable reaches the git run through the layers between a loop and the runner
# (mirror, commands, branch status) without widening their signatures, and tasks started
# inside the block inherit it.
_background: ContextVar[bool] = ContextVar("repodepot_git_background", default=False)


@contextlib.contextmanager
def background(enabled: bool = True) -> Iterator[None]:
    """Within this block, `run` and `stream` start git with `nice 19` and the idle I/O class.

    Tasks created inside the block inherit it. `enabled=False` (setting
    `background_nice` off) leaves priorities alone. The long-lived readers of `start()`
    and `popen()` never are: a pool may hand them to the foreground later.
    """
    token = _background.set(enabled)
    try:
        yield
    finally:
        _background.reset(token)


StderrSink = Callable[[bytes], None]
Observer = Callable[[str, str, float], None]
"""Called with (subcommand, outcome, seconds) after every command, for metrics."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Credentials:
    """A user name and password or token for an HTTP remote."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class GitResult:
    """What a finished git command left behind."""

    args: list[str]
    returncode: int
    stdout: bytes
    stderr: str
    seconds: float


class GitRunner:
    """Runs git subcommands; see the module docstring for the guarantees."""

    def __init__(
        self,
        *,
        runtime_dir: Path,
        path: str,
        binary: str = "git",
        allowed_schemes: Iterable[str] = ("https",),
        timeout: float = 600.0,
        stdout_cap: int = 64 << 20,
        stderr_cap: int = 64 << 10,
        observer: Observer | None = None,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.binary = binary
        self.sandbox = sandbox
        self.timeout = timeout
        self.stdout_cap = stdout_cap
        self.stderr_cap = stderr_cap
        self._observer = observer
        self._home = runtime_dir / "home"
        self._home.mkdir(parents=True, exist_ok=True)
        self._askpass = runtime_dir / "git-askpass"
        self._askpass.write_text(ASKPASS)
        self._askpass.chmod(0o700)
        self._base_env = self._build_env(path, tuple(allowed_schemes))
        # git runs in its own session (so a kill reaches its children); this makes it die
        # with us as well, instead of running on as an orphan after a crash.
        setpriv = shutil.which("setpriv", path=path)
        self._launcher = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
        self._prlimit = shutil.which("prlimit", path=path)  # util-linux, like setpriv
        self._lowered = _lowering(path)

    def _build_env(self, path: str, schemes: tuple[str, ...]) -> dict[str, str]:
        env = {
            "PATH": path,
            "HOME": str(self._home),
            "LC_ALL": "C",
            "LANG": "C",
            "TZ": "UTC",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": "/dev/null",
            "GIT_ALLOW_PROTOCOL": ":".join(schemes),
            "GIT_PROTOCOL_FROM_USER": "0",
            "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
            "GIT_CONFIG_COUNT": str(len(BASE_CONFIG)),
        }
        for index, (key, value) in enumerate(BASE_CONFIG):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        return env

    def env(
        self, credentials: Credentials | None = None, config: Sequence[tuple[str, str]] = ()
    ) -> dict[str, str]:
        """The environment of one git process, with `config` added to the base settings."""
        env = dict(self._base_env)
        for index, (key, value) in enumerate(config, start=len(BASE_CONFIG)):
            env[f"GIT_CONFIG_KEY_{index}"] = key
            env[f"GIT_CONFIG_VALUE_{index}"] = value
        env["GIT_CONFIG_COUNT"] = str(len(BASE_CONFIG) + len(config))
        if credentials is not None:
            env["GIT_ASKPASS"] = str(self._askpass)
            env["REPODEPOT_ASKPASS_USERNAME"] = credentials.username
            env["REPODEPOT_ASKPASS_PASSWORD"] = credentials.password
        return env

    async def verify_sandbox(self) -> None:
        """Start `git version` in the sandbox once, at start-up.

        Raises ConfigurationError when it cannot run there (bwrap refused by the kernel
        or the container, git outside the system directories the sandbox shows), rather
        than failing every read later. Does nothing without a sandbox.
        """
        if self.sandbox is None:
            return
        argv = self.sandbox.wrap(self._home, [self.binary, "--no-pager", "version"])
        try:
            result = await self._spawn(argv, ["version"], None, self.env(), 30.0, None, None, [])
        except GitError as error:
            raise _unsandboxable(error.message) from error
        if result.returncode != 0 or not result.stdout.startswith(b"git version"):
            raise _unsandboxable(result.stderr.strip() or f"exit {result.returncode}")

    def _argv(
        self,
        args: Sequence[str],
        git_dir: Path | None,
        *,
        die_with_us: bool = False,
        max_memory: int | None = None,
        lowered: bool = False,
    ) -> list[str]:
        """`git [--git-dir=DIR] ARGS`, sandboxed or under the death-signal launcher.

        The subcommand comes first and must be allowlisted, so no global option
        (`-c`, `--exec-path`) can be slipped in. In the sandbox the repository is
        `/repo` and bubblewrap's `--die-with-parent` replaces the launcher.
        `max_memory` caps git's heap (RLIMIT_DATA, through `prlimit`): a format width
        or an alignment of a billion columns then fails in git, not in the machine.
        `lowered` (background work) puts `nice`/`ionice` in front of it all: bwrap and
        every child git starts inherit the priorities.
        """
        if not args or args[0] not in ALLOWED_SUBCOMMANDS:
            raise GitCommandNotAllowed(f"git {args[0] if args else '(nothing)'} is not allowed")
        limit: list[str] = []
        if max_memory:
            if self._prlimit is None:
                raise GitNotInstalled("prlimit (util-linux) was not found on PATH")
            limit = [self._prlimit, f"--data={max_memory}", "--"]
        if self.sandbox is not None and git_dir is not None and args[0] in SANDBOXED:
            command = [*limit, self.binary, "--no-pager", f"--git-dir={INSIDE}", *args]
            priority = self._lowered if lowered else []
            return [*priority, *self.sandbox.wrap(git_dir, command, borrowed=_alternates(git_dir))]
        die_with_us = die_with_us or args[0] in LONG_RUNNING
        launcher = self._launcher if die_with_us else []
        priority = self._lowered if lowered else []
        argv = [*launcher, *priority, *limit, self.binary, "--no-pager"]
        if git_dir is not None:
            argv.append(f"--git-dir={git_dir}")
        argv.extend(args)
        return argv

    async def run(
        self,
        args: Sequence[str],
        *,
        git_dir: Path | None = None,
        cwd: Path | None = None,
        credentials: Credentials | None = None,
        timeout: float | None = None,
        stdin: bytes | None = None,
        on_stderr: StderrSink | None = None,
        check: bool = True,
        config: Sequence[tuple[str, str]] = (),
        trace2: Path | None = None,
        local_source: bool = False,
        node_secret: str | None = None,
    ) -> GitResult:
        """Run `git [--git-dir=DIR] ARGS...` and wait for it.

        `config` adds settings through the environment (`GIT_CONFIG_KEY_n`), not argv.
        `node_secret` is the internal secret for a clone or fetch from another storage
        node's internal smart HTTP (a move's copy): sent as an `Authorization` header set
        through the environment, never argv, masked in errors; `http` and `https` are
        allowed for this command only (a node's URL is an admin's setting).
        `trace2` is a file git (and its children) append trace2 events to, as JSON lines.
        `local_source` allows the `file` protocol for this command only: a fetch from
        another mirror on this node, whose path the caller built (never a user's URL).

        `on_stderr` gets stderr chunks as they arrive (progress). Raises GitCommandNotAllowed
        for a subcommand outside the allowlist, GitNotInstalled, GitTimeout (the process group
        is killed), GitOutputTooLarge past `stdout_cap`, and GitCommandError on a non-zero
        exit when `check` is true. Cancelling the caller kills the process group too.
        Inside `background()`, git runs with lowered CPU and I/O priorities.
        """
        argv = self._argv(args, git_dir, lowered=_background.get())
        cwd = cwd if cwd is not None else _directory(git_dir)
        secrets = [credentials.password, credentials.username] if credentials else []
        if node_secret is not None:
            secrets.append(node_secret)
            # Never followed elsewhere: a redirect would carry the header with it.
            config = [
                *config,
                ("http.followRedirects", "false"),
                ("http.extraHeader", f"Authorization: Bearer {node_secret}"),
            ]
        shown = [redact(arg, secrets) for arg in args]
        limit = self.timeout if timeout is None else timeout
        started = time.monotonic()
        outcome = "error"
        try:
            env = self.env(credentials, config)
            if trace2 is not None:
                env["GIT_TRACE2_EVENT"] = str(trace2)
            if local_source:
                env["GIT_ALLOW_PROTOCOL"] += ":file"
            if node_secret is not None:
                env["GIT_ALLOW_PROTOCOL"] += ":http:https"
            result = await self._spawn(argv, shown, cwd, env, limit, stdin, on_stderr, secrets)
            outcome = "ok" if result.returncode == 0 else "failed"
        except GitTimeout:
            outcome = "timeout"
            raise
        except asyncio.CancelledError:
            outcome = "cancelled"
            raise
        finally:
            seconds = time.monotonic() - started
            if self._observer is not None:
                self._observer(args[0], outcome, seconds)
            logger.debug(
                "git %s",
                args[0],
                extra={
                    "action": "git",
                    "argv": shown,
                    "outcome": outcome,
                    "duration_ms": round(seconds * 1000, 1),
                },
            )
        if check and result.returncode != 0:
            raise GitCommandError(shown, result.returncode, result.stderr)
        return result

    async def stream(
        self,
        args: Sequence[str],
        *,
        git_dir: Path | None = None,
        stdin: AsyncIterator[bytes] | None = None,
        protocol: str | None = None,
        timeout: float | None = None,
        max_memory: int | None = None,
        config: Sequence[tuple[str, str]] = (),
    ) -> AsyncGenerator[bytes, None]:
        """Run `git ARGS...`, feeding `stdin` and yielding stdout as it comes (smart HTTP).

        `protocol` is the client's `Git-Protocol` (e.g. `version=2`), passed as GIT_PROTOCOL.
        Closing the iterator early (a client went away), a timeout or a cancel kills the
        process group. A non-zero exit raises GitCommandError after the output.
        `max_memory` caps git's heap, bytes (see `_argv`).
        """
        argv = self._argv(args, git_dir, max_memory=max_memory, lowered=_background.get())
        env = self.env(config=config)
        if protocol:
            env["GIT_PROTOCOL"] = protocol
        limit = self.timeout if timeout is None else timeout
        started = time.monotonic()
        outcome = "error"
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=_directory(git_dir),
                env=env,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except FileNotFoundError:
            raise GitNotInstalled(f"{self.binary} was not found on PATH") from None
        assert process.stdout is not None
        feeder = asyncio.create_task(_feed(process, stdin)) if stdin is not None else None
        errors = asyncio.create_task(_read_stderr(process, self.stderr_cap, None))
        try:
            async with asyncio.timeout(None if limit == NO_TIMEOUT else limit):
                while chunk := await process.stdout.read(1 << 16):
                    yield chunk
                returncode = await process.wait()
            outcome = "ok" if returncode == 0 else "failed"
        except TimeoutError:
            outcome = "timeout"
            raise GitTimeout(list(args), limit) from None
        finally:
            killed = process.returncode is None
            if killed:
                _kill_group(process.pid)
                await asyncio.shield(_reap(process))
            if feeder is not None and not feeder.done():
                feeder.cancel()
            if killed:
                errors.cancel()
            stderr = b""
            with contextlib.suppress(asyncio.CancelledError, Exception):
                stderr = await errors
            if self._observer is not None:
                self._observer(args[0], outcome, time.monotonic() - started)
        if returncode != 0:
            raise GitCommandError(
                list(args), returncode, redact(stderr.decode(errors="replace"), [])
            )

    async def start(self, args: Sequence[str], *, git_dir: Path) -> asyncio.subprocess.Process:
        """Start a long-lived `git ARGS...` with piped stdin and stdout (`cat-file --batch`).

        The caller talks to it and ends it with `stop()`; it is in its own process group.
        """
        argv, options = self._piped(args, git_dir, die_with_us=False)
        try:
            process = await asyncio.create_subprocess_exec(*argv, **options)
        except FileNotFoundError:
            raise GitNotInstalled(f"{self.binary} was not found on PATH") from None
        self._started(args)
        return process

    def popen(self, args: Sequence[str], *, git_dir: Path) -> subprocess.Popen[bytes]:
        """A blocking `git ARGS...` with piped stdin and stdout, for code in a worker thread.

        It runs in its own process group, dies with us, and is ended with `kill_group()`.
        """
        argv, options = self._piped(args, git_dir, die_with_us=True)
        try:
            process = subprocess.Popen(argv, **options)  # noqa: S603 - argv from _argv, no shell
        except FileNotFoundError:
            raise GitNotInstalled(f"{self.binary} was not found on PATH") from None
        self._started(args)
        return process

    def _piped(
        self, args: Sequence[str], git_dir: Path, *, die_with_us: bool
    ) -> tuple[list[str], dict[str, Any]]:
        """The argv and process options of a git talked to over stdin and stdout."""
        argv = self._argv(args, git_dir, die_with_us=die_with_us)
        options = {
            "cwd": _directory(git_dir),
            "env": self.env(),
            "stdin": subprocess.PIPE,
            "stdout": subprocess.PIPE,
            "stderr": subprocess.DEVNULL,
            "start_new_session": True,
        }
        return argv, options

    def _started(self, args: Sequence[str]) -> None:
        if self._observer is not None:
            self._observer(args[0], "started", 0.0)

    @staticmethod
    def kill_group(process: subprocess.Popen[bytes]) -> None:
        """End a process from `popen()` (its whole group) and reap it."""
        if process.poll() is None:
            _kill_group(process.pid)
        process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    @staticmethod
    async def stop(process: asyncio.subprocess.Process) -> None:
        """End a process from `start()` (its whole group) and reap it."""
        if process.returncode is None:
            _kill_group(process.pid)
        await _reap(process)

    async def _spawn(
        self,
        argv: list[str],
        shown: list[str],
        cwd: Path | None,
        env: dict[str, str],
        limit: float,
        stdin: bytes | None,
        on_stderr: StderrSink | None,
        secrets: list[str],
    ) -> GitResult:
        started = time.monotonic()
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=env,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,  # its own process group, killed as one
            )
        except FileNotFoundError:
            raise GitNotInstalled(f"{self.binary} was not found on PATH") from None
        try:
            async with asyncio.timeout(None if limit == NO_TIMEOUT else limit):
                stdout, stderr = await asyncio.gather(
                    self._read_stdout(process, stdin),
                    _read_stderr(process, self.stderr_cap, on_stderr),
                )
                returncode = await process.wait()
        except TimeoutError:
            raise GitTimeout(shown, limit) from None
        finally:
            if process.returncode is None:
                _kill_group(process.pid)
                await asyncio.shield(_reap(process))
        if (returncode == 127 and b"failed to execute" in stderr) or (
            returncode == 1 and stderr.startswith(b"bwrap: execvp")
        ):
            raise GitNotInstalled(f"{self.binary} was not found on PATH")
        return GitResult(
            args=shown,
            returncode=returncode,
            stdout=stdout,
            stderr=redact(stderr.decode(errors="replace"), secrets),
            seconds=time.monotonic() - started,
        )

    async def _read_stdout(self, process: asyncio.subprocess.Process, stdin: bytes | None) -> bytes:
        assert process.stdout is not None
        if stdin is not None:
            await _feed(process, _once(stdin))
        chunks: list[bytes] = []
        size = 0
        while chunk := await process.stdout.read(1 << 16):
            size += len(chunk)
            if size > self.stdout_cap:
                raise GitOutputTooLarge(f"git wrote more than {self.stdout_cap} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


async def _read_stderr(
    process: asyncio.subprocess.Process, cap: int, sink: StderrSink | None
) -> bytes:
    # Keep only the tail: the error message is at the end, progress noise at the start.
    assert process.stderr is not None
    tail = bytearray()
    while chunk := await process.stderr.read(1 << 14):
        if sink is not None:
            sink(chunk)
        tail += chunk
        if len(tail) > cap:
            del tail[: len(tail) - cap]
    return bytes(tail)


async def _feed(process: asyncio.subprocess.Process, chunks: AsyncIterator[bytes]) -> None:
    """Write `chunks` to git's stdin, then close it; a git that stops reading ends it.

    Git that exits without reading all its input says why in its exit code and stderr,
    so the write's error is dropped: a broken pipe on asyncio's loop, and on uvloop a
    pipe whose transport closed already (writing to it raises RuntimeError).
    """
    stdin = process.stdin
    assert stdin is not None
    try:
        async for chunk in chunks:
            if stdin.is_closing():
                return  # git stopped reading: its answer tells why
            stdin.write(chunk)
            await stdin.drain()
    except (BrokenPipeError, ConnectionResetError):
        return
    finally:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stdin.close()


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _alternates(git_dir: Path) -> list[Path]:
    """The object directories `git_dir` borrows from (`objects/info/alternates`), if any.

    Only repodepot writes that file (branch status's upstream copies borrow their
    mirror's objects); a mirror has none.
    """
    try:
        listed = (git_dir / "objects" / "info" / "alternates").read_text()
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [Path(line) for line in listed.splitlines() if line.startswith("/")]


def _lowering(path: str) -> list[str]:
    """`nice -n 19 ionice -t -c 3 --`: the prefix of background git, from what is installed.

    Both exec the next program in the same process (its pid, its process group), so the
    launcher's death signal and a kill of the group still reach git. `-t`: a kernel or
    container refusing the idle class does not stop the fetch. Missing tools are logged
    once, here, at start-up.
    """
    nice, ionice = shutil.which("nice", path=path), shutil.which("ionice", path=path)
    if nice is None or ionice is None:
        logger.warning(
            "background git keeps normal priority: %s not found on PATH",
            " and ".join(name for name, found in (("nice", nice), ("ionice", ionice)) if not found),
            extra={"action": "git.priority"},
        )
    prefix = [nice, "-n", "19"] if nice else []
    return prefix + ([ionice, "-t", "-c", "3", "--"] if ionice else [])


def _unsandboxable(detail: str) -> ConfigurationError:
    return ConfigurationError(
        f"git cannot run in the bwrap sandbox ({detail}); bwrap needs user namespaces "
        "when not run as root. Fix that or set REPODEPOT_GIT_SANDBOX=none (see README)"
    )


def _directory(git_dir: Path | None) -> Path | None:
    # Git runs in its repository, so no relative path an option might take (an allowlist's
    # hole) resolves against the server's own directory. A missing one fails in git.
    return git_dir if git_dir is not None and git_dir.is_dir() else None


async def _reap(process: asyncio.subprocess.Process) -> None:
    """Wait for a killed process, reading what is left of its stdout.

    asyncio's `wait()` returns only once every pipe has closed, and a pipe whose
    reader stopped reading (a client that went away mid-clone) is paused: its end of
    file is never seen. Reading it to the end unpauses it; the data is dropped.
    """
    if process.stdout is not None:
        with contextlib.suppress(Exception):
            while await process.stdout.read(1 << 16):
                pass
    with contextlib.suppress(ProcessLookupError):
        await process.wait()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
