"""What git 2.39.5 writes on stderr when a clone fails, captured verbatim (LC_ALL=C).

Each was produced by `git clone --bare URL DEST` against a loopback server: the test smart-HTTP
server (`githttp.py`, with auth, or its drop fault), a bare HTTP server answering a fixed
status (with `-c http.followRedirects=false`, as the outbound policy sets), a socket that
resets or a closed port, a tmpfs too small for the pack, a source with an object deleted,
and a fake ssh that runs upload-pack locally. Paths and ports are the ones of that run.
"""

from __future__ import annotations

from repodepot.git.errors import GitCommandError

CLONING = "Cloning into bare repository '/tmp/tmpru_l4f4y/a'...\n"

AUTH_REJECTED = CLONING + "fatal: Authentication failed for 'http://127.0.0.1:42265/r.git/'\n"
AUTH_MISSING = (
    CLONING
    + "fatal: could not read Username for 'http://127.0.0.1:42265': terminal prompts disabled\n"
)
HTTP_403 = (
    CLONING + "fatal: unable to access 'http://127.0.0.1:33193/403/x.git/': "
    "The requested URL returned error: 403\n"
)
# git http-backend's 404, and a plain server's 404, both read so.
NOT_FOUND = CLONING + "fatal: repository 'http://127.0.0.1:36651/missing.git/' not found\n"
SSH_NOT_A_REPOSITORY = (
    CLONING + "fatal: '/nope.git' does not appear to be a git repository\n"
    "fatal: Could not read from remote repository.\n\n"
    "Please make sure you have the correct access rights\nand the repository exists.\n"
)
CONNECTION_REFUSED = (
    CLONING + "fatal: unable to access 'http://127.0.0.1:9/x.git/': "
    "Failed to connect to 127.0.0.1 port 9 after 0 ms: Couldn't connect to server\n"
)
UNRESOLVABLE = (
    CLONING + "fatal: unable to access 'http://nonexistent.invalid/x.git/': "
    "Could not resolve host: nonexistent.invalid\n"
)
CONNECTION_RESET = (
    CLONING + "fatal: unable to access 'http://127.0.0.1:40463/x.git/': "
    "Recv failure: Connection reset by peer\n"
)
# A fetch whose connection was accepted and closed unanswered (the load test's upstream
# released from a stall), as `repodepot serve`'s log showed it.
EMPTY_REPLY = (
    "fatal: unable to access 'http://127.0.0.1:57159/r/0000.git/': Empty reply from server\n"
)
DROPPED_MID_PACK = (
    CLONING + "error: RPC failed; curl 18 transfer closed with outstanding read data remaining\n"
    "fatal: early EOF\n"
    "fatal: fetch-pack: invalid index-pack output\n"
)
DROPPED_IN_REF_LISTING = (
    CLONING + "error: RPC failed; curl 18 transfer closed with outstanding read data remaining\n"
    "fatal: expected flush after ref listing\n"
)
HTTP_500 = (
    CLONING + "fatal: unable to access 'http://127.0.0.1:33193/500/x.git/': "
    "The requested URL returned error: 500\n"
)
HTTP_502 = (
    CLONING + "fatal: unable to access 'http://127.0.0.1:33193/502/x.git/': "
    "The requested URL returned error: 502\n"
)
REDIRECT_301 = (
    CLONING + "fatal: unable to access 'http://127.0.0.1:33193/301/x.git/': "
    "The requested URL returned error: 301\n"
)
REDIRECT_302 = (
    CLONING + "fatal: unable to access 'http://127.0.0.1:42275/302/x.git/': "
    "The requested URL returned error: 302\n"
)
DISK_FULL = (
    CLONING + "fatal: write error: No space left on device\n"
    "fatal: fetch-pack: invalid index-pack output\n"
)
# The source's own repository is missing an object: upload-pack says so through the sideband.
SOURCE_CORRUPT = (
    CLONING + "remote: fatal: bad tree object feb875b8dfe735fc3a814075fab246bb7d5559b6        \n"
    "remote: aborting due to possible repository corruption on the remote side.\x00\n"
    "fatal: early EOF\n"
    "fatal: fetch-pack: invalid index-pack output\n"
)
# `git --git-dir=DIR fetch` where DIR is no longer a repository (its files were lost).
MIRROR_NOT_A_REPOSITORY = "fatal: not a git repository: '/tmp/tmpru_l4f4y/plain'\n"
# protocol.allow refused the URL's scheme.
TRANSPORT_REFUSED = CLONING + "fatal: transport 'http' not allowed\n"
# With --progress, the drop fault 300 kB into the pack; shortened (most per-percent progress
# lines cut). Git separates a phase's updates with "\r" (text-mode capture showed them as "\n").
PROGRESS_THEN_DROPPED = (
    CLONING + "remote: Enumerating objects: 12000, done.        \n"
    "remote: Counting objects: 100% (12000/12000), done.        \n"
    "remote: Compressing objects: 100% (6058/6058), done.        \n"
    "Receiving objects:  12% (1440/12000)\r"
    "Receiving objects:  13% (1560/12000)\r"
    "error: RPC failed; curl 18 transfer closed with outstanding read data remaining\n"
    "error: 703 bytes of body are still expected\n"
    "fetch-pack: unexpected disconnect while reading sideband packet\n"
    "fatal: early EOF\n"
    "fatal: fetch-pack: invalid index-pack output\n"
)


def clone_failed(stderr: str) -> GitCommandError:
    """The error the runner raises for a clone that exited 128 with this stderr."""
    return GitCommandError(
        ["clone", "--bare", "--", "http://127.0.0.1:42265/r.git", "/tmp/x.git"], 128, stderr
    )
