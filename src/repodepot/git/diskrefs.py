"""A repository's refs read from its files as git's files backend stores them, without git.

Loose refs are files under `refs/` holding an id; `packed-refs` lists the rest, a loose
ref winning over a packed one of the same name. Only what git itself writes into a bare
mirror is understood: a symbolic ref other than HEAD, a symlink, a name git would reject,
a file that is not one id on one line, all mean None, "ask git". A repository whose refs
git reads otherwise (reftable, replace refs, shallow, grafts) is the caller's to refuse
(`packs.ObjectStore.snapshot` and `walk`).
"""

from __future__ import annotations

import os
import re
import stat

MAX_PACKED_BYTES = 16 << 20
"""A `packed-refs` larger than this is left to git (a read runs on the event loop)."""
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
        fd = os.open(f"{root}/packed-refs", _OPEN)
    except FileNotFoundError:
        return {}
    try:
        size = os.fstat(fd).st_size
        if size > MAX_PACKED_BYTES:
            raise Unreadable("packed-refs is too large to read here")
        data = os.pread(fd, size, 0)
    finally:
        os.close(fd)
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
            refs[_loose_name(name, mode)] = _loose_id(entry.path)
            if len(refs) > most:
                raise Unreadable(f"more than {most} refs under {prefix}")
    return refs


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
