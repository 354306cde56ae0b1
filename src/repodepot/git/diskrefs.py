"""A repository's refs read from its files as git's files backend stores them, without git.

Loose refs are files under `refs/` holding an id; `packed-refs` lists the rest, a loose
ref winning over a packed one of the same name. Only what git itself writes into a bare
mirror is understood: a symbolic ref other than HEAD, a symlink, a name git would reject,
a file that is not one id on one line, all mean None, "ask git". A repository whose refs
git reads otherwise (reftable, replace refs, shallow, grafts) is the caller's to refuse
(`packs.ObjectStore.snapshot` and `walk`), except for `listed`, which refuses what would
change a plain listing of names and ids (reftable, config includes, a linked worktree).
"""

from __future__ import annotations

import os
import re
import stat

MAX_PACKED_BYTES = 16 << 20
"""A `packed-refs` larger than this is left to git (a read runs on the event loop)."""
MAX_REFS = 100_000
"""More refs than this under one prefix are left to git by `listed`."""
_REF_BYTES = 256
_ID = re.compile(rb"([0-9a-f]{40})\n?")
_PACKED = re.compile(rb"([0-9a-f]{40}) (refs/[^\n]+)")
_PEELED = re.compile(rb"\^[0-9a-f]{40}")
# A positive list of what may appear in a ref name: letters, digits, a few marks and any
# non-ASCII byte; git's other rules (no `..`, no component starting with `.` or ending
# with `.lock`) are checked in `valid_name`.
_NAME = re.compile(rb"[A-Za-z0-9._+,=@#%&!'();<>|$\x80-\xff/-]+")
_HEAD = re.compile(rb"ref: (refs/heads/[^\n]+)\n?")
_OPEN = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
# Config sections that may change how refs are stored (`extensions.refStorage`) or pull in
# another file this reader does not follow.
_CONFIG_NOT_UNDERSTOOD = re.compile(
    rb"^[ \t]*\[[ \t]*(extensions|include)", re.MULTILINE | re.IGNORECASE
)
_CONFIG_BYTES = 1 << 20


class Unreadable(Exception):
    """The refs hold something this reader does not read as git would: ask git."""


def valid_name(name: bytes) -> bool:
    """Whether `name` (such as `refs/tags/v1.0`) is a ref name git accepts, from a strict subset."""
    if not _NAME.fullmatch(name) or b".." in name or name.endswith((b".", b"/")):
        return False
    parts = name.split(b"/")
    return all(part and not part.startswith(b".") and not part.endswith(b".lock") for part in parts)


def head(root: str) -> str | None:
    """The commit id HEAD names (a branch's, or a detached id), or None: ask git.

    None as well for an unborn branch (an empty repository), which git answers itself.
    """
    try:
        content = _small_file(f"{root}/HEAD")
        detached = _ID.fullmatch(content)
        if detached:
            return detached[1].decode()
        branch = _HEAD.fullmatch(content)
        if branch is None or not valid_name(branch[1]):
            return None
        return ref(root, branch[1])
    except (OSError, Unreadable):
        return None


def listed(root: str, prefix: str, most: int = MAX_REFS) -> list[tuple[bytes, str]]:
    """Every ref under `prefix` (`refs/`, `refs/tags/`) as `git for-each-ref` lists (name, id).

    Loose refs and `packed-refs`, a loose ref winning, sorted by name as bytes (git's
    default order). Replace refs are listed as they are, as for-each-ref lists them.
    Raises Unreadable or OSError for whatever git may read otherwise: reftable or an
    include in the config, a symbolic ref, a symlink, a name git would reject, a file
    that is not one id, more than `most` refs.
    """
    if not prefix.startswith("refs/") or not prefix.endswith("/"):
        raise ValueError(f"prefix {prefix!r} is not a directory under refs/")
    _check_storage(root)
    wanted = os.fsencode(prefix)
    refs = {name: sha for name, sha in packed(root).items() if name.startswith(wanted)}
    refs |= loose_under(root, prefix.rstrip("/"), most)  # loose wins
    if len(refs) > most:
        raise Unreadable(f"more than {most} refs under {prefix}")
    return sorted(refs.items())


def _check_storage(root: str) -> None:
    """Unreadable unless the refs are git's files backend in this very directory."""
    if os.path.lexists(f"{root}/commondir"):
        raise Unreadable("a linked worktree's refs live elsewhere")
    try:
        config = _bounded_file(f"{root}/config", _CONFIG_BYTES)
    except FileNotFoundError:
        return
    if _CONFIG_NOT_UNDERSTOOD.search(config):
        raise Unreadable("the config has extensions or includes")


def ref(root: str, name: bytes) -> str | None:
    """The id of ref `name` (`refs/...`): its loose file, else `packed-refs`; None if neither.

    Raises Unreadable or OSError for what git may read otherwise.
    """
    loose = _loose(f"{root}/{os.fsdecode(name)}")
    if loose is not None:
        return loose
    return packed(root).get(name)


def packed(root: str) -> dict[bytes, str]:
    """Every ref in `packed-refs` (name -> id), peel lines skipped; Unreadable if odd."""
    try:
        data = _bounded_file(f"{root}/packed-refs", MAX_PACKED_BYTES)
    except FileNotFoundError:
        return {}
    refs: dict[bytes, str] = {}
    for line in data.splitlines():
        if line.startswith(b"#") or _PEELED.fullmatch(line):
            continue
        found = _PACKED.fullmatch(line)
        if found is None or not valid_name(found[2]):
            raise Unreadable("a line of packed-refs this reader does not parse")
        refs[found[2]] = found[1].decode()
    return refs


def loose_under(root: str, prefix: str, most: int) -> dict[bytes, str]:
    """Every loose ref under directory `prefix` (`refs/tags`), name -> id, at most `most`.

    Names starting with `.` or ending with `.lock` are skipped, as git skips them (lock
    files, editors' litter). Raises Unreadable for anything else git may read otherwise.
    """
    _no_symlink_to(root, prefix)
    refs: dict[bytes, str] = {}
    stack = [prefix]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(f"{root}/{directory}") as listing:
                entries = list(listing)
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or entry.name.endswith(".lock"):
                continue
            name = f"{directory}/{entry.name}"
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode):
                stack.append(name)
                continue
            checked = _loose_name(name, mode)  # before the read: a symlink is refused
            refs[checked] = _loose_id(entry.path)
            if len(refs) > most:
                raise Unreadable(f"more than {most} refs under {prefix}")
    return refs


def _no_symlink_to(root: str, directory: str) -> None:
    """Unreadable if a component of `directory` is a symlink: git would not descend into it."""
    path = root
    for part in directory.split("/"):
        path = f"{path}/{part}"
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISLNK(mode):
            raise Unreadable(f"{directory!r} goes through a symlink")


def _loose_name(name: str, mode: int) -> bytes:
    encoded = os.fsencode(name)
    if not stat.S_ISREG(mode) or not valid_name(encoded):
        raise Unreadable(f"{name!r} is not a plain ref file")
    return encoded


def _loose_id(path: str) -> str:
    found = _loose(path)
    if found is None:
        raise Unreadable(f"{path!r} vanished while read")
    return found


def _loose(path: str) -> str | None:
    """The id in loose ref file `path`, None if there is none; Unreadable if not an id."""
    try:
        content = _small_file(path)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    found = _ID.fullmatch(content)
    if found is None:
        raise Unreadable(f"{path!r} does not hold one id")  # a symbolic ref, or damage
    return found[1].decode()


def _small_file(path: str) -> bytes:
    """The first bytes of `path`, never through a symlink (OSError: ELOOP)."""
    fd = os.open(path, _OPEN)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(path)
        return os.read(fd, _REF_BYTES)
    finally:
        os.close(fd)


def _bounded_file(path: str, most: int) -> bytes:
    """All of regular file `path`, never through a symlink; Unreadable past `most` bytes."""
    fd = os.open(path, _OPEN)
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode) or status.st_size > most:
            raise Unreadable(f"{path!r} is not a regular file of at most {most} bytes")
        return os.pread(fd, status.st_size, 0)
    finally:
        os.close(fd)
