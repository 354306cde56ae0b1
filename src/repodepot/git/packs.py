"""A mirror's commits read in-process from its pack and loose object files, as git stores them.

No process: the one hot question, "the commit with this full id", answered from the
repository's files (packs through their v2 `.idx`, deltas resolved, then loose objects),
so a lookup on a repository with no `cat-file` running costs a few stats and reads
instead of a sandboxed git. `snapshot(...).read` gives any object by full id, unpeeled,
for the walks of `git.walk` (a log, the dated tags). Anything else is git's.

An answer is only ever a body whose SHA-1 (`<kind> <len> NUL <body>`) is the id asked for,
so corrupt or hostile files cannot produce a wrong one. None means "ask git", never
"missing": it is what this reader says for an unknown id, an object it cannot read and
a repository it does not understand (alternates, an `[extensions]` or `[include]` in
`config`, such as sha256 or partial clones, a `.promisor` pack, replace refs, which git
would apply). Everything read is bounded by `limit` and a delta chain's depth.

Pure but for reading the repository's files: `.idx` files are mapped read-only, `.pack`
files read with `pread` on kept descriptors, both kept per repository (least recently
used first, closed past `max_repos` repositories or `max_packs` packs) while the
repository's `objects/pack`, `refs`, `packed-refs`, `config` and `objects/info` stat the
same; a change lists them again.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import re
import struct
import zlib
from collections import OrderedDict
from itertools import pairwise
from pathlib import Path

MAX_REPOS = 256
MAX_PACKS = 512
"""Packs kept open across repositories, at most (each holds two descriptors)."""
MAX_DEPTH = 64
"""Deltas resolved for one object at most (git's `--depth` defaults to 50)."""
MAX_PEEL = 8

_COMMIT, _TREE, _BLOB, _TAG, _OFS_DELTA, _REF_DELTA = 1, 2, 3, 4, 6, 7
_KINDS = {b"commit": _COMMIT, b"tree": _TREE, b"blob": _BLOB, b"tag": _TAG}
_NAMES = {kind: name for name, kind in _KINDS.items()}
_COMMIT_OR_TAG = frozenset((_COMMIT, _TAG))
_ANY = frozenset(_NAMES)
_IDX_MAGIC = b"\377tOc\0\0\0\2"
_NAMES_AT = 8 + 256 * 4
_FANOUT = struct.Struct(">256I")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_TRAILER = 40  # the pack's checksum and the index's own
_FIRST_READ = 4096
_STEP = 1 << 16
_SHA = re.compile(r"[0-9a-f]{40}")
_TAG_HEAD = re.compile(rb"object ([0-9a-f]{40})\ntype (commit|tag)\n")
_NOT_UNDERSTOOD = re.compile(rb"^[ \t]*\[[ \t]*(extensions|include)", re.MULTILINE | re.IGNORECASE)
# What parsing hostile or vanishing files can raise; each means "ask git".
_UNREADABLE = (OSError, ValueError, IndexError, struct.error, zlib.error, OverflowError)

Stamp = tuple[int, int, int] | None


class _Pack:
    """One pack: its `.idx` mapped, its `.pack` open; raises ValueError/OSError if unusable."""

    def __init__(self, idx: str, pack: str) -> None:
        self.fd = os.open(pack, os.O_RDONLY | os.O_CLOEXEC)
        try:
            self.size = os.fstat(self.fd).st_size
            with open(idx, "rb") as file:
                self.idx = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
            self._check()
        except BaseException:
            self.close()
            raise

    def _check(self) -> None:
        if self.idx[:8] != _IDX_MAGIC:
            raise ValueError("not a version 2 pack index")
        self.fanout = _FANOUT.unpack_from(self.idx, 8)
        self.count = count = self.fanout[255]
        self.offsets_at = _NAMES_AT + 24 * count
        self.large_at = self.offsets_at + 4 * count
        self.large = (len(self.idx) - _TRAILER - self.large_at) // 8
        if self.large < 0 or any(a > b for a, b in pairwise(self.fanout)):
            raise ValueError("malformed pack index")
        head = os.pread(self.fd, 12, 0)
        if head[:4] != b"PACK" or head[4:8] not in (b"\0\0\0\2", b"\0\0\0\3"):
            raise ValueError("not a pack")
        if _U32.unpack_from(head, 8)[0] != count:
            raise ValueError("the pack and its index disagree")

    def find(self, name: bytes) -> int | None:
        """The offset of object `name` (20 bytes) in the pack, or None."""
        first = name[0]
        lo = self.fanout[first - 1] if first else 0
        hi = self.fanout[first]
        idx = self.idx
        while lo < hi:
            mid = (lo + hi) // 2
            at = _NAMES_AT + 20 * mid
            found = idx[at : at + 20]
            if found < name:
                lo = mid + 1
            elif found > name:
                hi = mid
            else:
                return self._offset(mid)
        return None

    def _offset(self, index: int) -> int:
        offset: int = _U32.unpack_from(self.idx, self.offsets_at + 4 * index)[0]
        if offset & 0x80000000:
            large = offset & 0x7FFFFFFF
            if large >= self.large:
                raise ValueError("a large offset past the table")
            offset = _U64.unpack_from(self.idx, self.large_at + 8 * large)[0]
        if not 12 <= offset < self.size - 20:
            raise ValueError("an offset outside the pack")
        return offset

    def read(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes at `offset`, never into the trailing checksum."""
        return os.pread(self.fd, max(0, min(size, self.size - 20 - offset)), offset)

    def close(self) -> None:
        """Unmap the index and close the pack."""
        with contextlib.suppress(AttributeError, BufferError):
            self.idx.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)


class _Repo:
    """What is kept open for one repository, valid while its files stat as `stamps`."""

    def __init__(
        self, root: str, stamps: tuple[Stamp, ...], kept: dict[str, _Pack], max_packs: int
    ) -> None:
        self.root = root
        self.stamps = stamps
        self.packs: dict[str, _Pack] = {}
        self.understood = _understood(root)
        if self.understood:
            self._open_packs(kept, max_packs)

    def _open_packs(self, kept: dict[str, _Pack], max_packs: int) -> None:
        directory = f"{self.root}/objects/pack"
        names = sorted(os.listdir(directory)) if os.path.isdir(directory) else []
        if any(name.endswith(".promisor") for name in names):
            self.understood = False  # a partial clone: git may fetch what is missing
            return
        indexes = [name for name in names if name.endswith(".idx")]
        if len(indexes) > max_packs:
            self.understood = False  # not worth the descriptors: git's, until a repack
            return
        for name in indexes:
            stem = f"{directory}/{name[:-4]}"
            pack = kept.pop(name, None)
            if pack is None:
                with contextlib.suppress(*_UNREADABLE):
                    pack = _Pack(f"{stem}.idx", f"{stem}.pack")
            if pack is not None:
                self.packs[name] = pack

    def close(self) -> None:
        """Close every pack."""
        for pack in self.packs.values():
            pack.close()
        self.packs.clear()


class ObjectStore:
    """Objects by full id from bare repositories' object files; one per user, synchronous.

    Not thread-safe (one event loop uses it). `close()` releases every kept file.
    """

    def __init__(self, *, max_repos: int = MAX_REPOS, max_packs: int = MAX_PACKS) -> None:
        self._max_repos = max_repos
        self._max_packs = max_packs
        self._repos: OrderedDict[Path, _Repo] = OrderedDict()  # least recently used first
        self._packs = 0  # open across `_repos`

    def read_commit(self, repo: Path, sha: str, limit: int) -> tuple[str, bytes] | None:
        """The commit `sha` (40 lowercase hex) in bare repository `repo`: (its id, its body).

        An annotated tag's id gives the commit it points to (through at most MAX_PEEL
        tags). None when this reader cannot answer (see the module docstring): ask git.
        Never raises for what the repository's files hold; bodies over `limit` are None.
        """
        if not _SHA.fullmatch(sha):
            return None
        try:
            state = self._state(repo)
            for _ in range(MAX_PEEL):
                found = _object(state, sha, limit) if state.understood else None
                if found is None:
                    return None
                kind, body = found
                if kind == _COMMIT:
                    return sha, body
                tagged = _TAG_HEAD.match(body)
                if tagged is None:
                    return None
                sha = tagged[1].decode()
        except _UNREADABLE:
            return None
        return None

    def snapshot(self, repo: Path) -> Objects | None:
        """`repo`'s objects as its files are now, for many reads in a row without a stat each.

        None when this reader does not read `repo` as git would. Use it at once (no
        await in between): the store may close what it holds at its next call.
        """
        try:
            state = self._state(repo)
        except _UNREADABLE:
            return None
        return Objects(state) if state.understood else None

    def close(self) -> None:
        """Close every kept index and pack."""
        while self._repos:
            self._repos.popitem()[1].close()
        self._packs = 0

    def _state(self, repo: Path) -> _Repo:
        root = os.fspath(repo)
        stamps = _stamps(root)
        state = self._repos.get(repo)
        if state is not None and state.stamps == stamps:
            self._repos.move_to_end(repo)
            return state
        kept = state.packs if state is not None else {}
        self._packs -= len(kept)
        try:
            fresh = _Repo(root, stamps, kept, self._max_packs)
        finally:
            for pack in kept.values():  # those still listed moved to `fresh`
                pack.close()
            self._repos.pop(repo, None)
        self._repos[repo] = fresh
        self._packs += len(fresh.packs)
        while len(self._repos) > self._max_repos or self._packs > self._max_packs:
            evicted = self._repos.popitem(last=False)[1]  # `fresh` is last and fits alone
            self._packs -= len(evicted.packs)
            evicted.close()
        return fresh


class Objects:
    """One repository's objects as `ObjectStore.snapshot` found its files."""

    def __init__(self, state: _Repo) -> None:
        self._state = state

    def read(self, sha: str, limit: int) -> tuple[str, bytes] | None:
        """The object `sha` (40 lowercase hex): (its kind, its body), or None: ask git.

        The kind is git's name (`commit`, `tree`, `blob`, `tag`); tags are not peeled.
        Never raises for what the files hold; bodies over `limit` are None.
        """
        if not _SHA.fullmatch(sha):
            return None
        try:
            found = _object(self._state, sha, limit, _ANY)
        except _UNREADABLE:
            return None
        return (_NAMES[found[0]].decode(), found[1]) if found is not None else None


def _stamp(path: str) -> Stamp:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _stamps(root: str) -> tuple[Stamp, ...]:
    """What a fetch, repack, new ref or config change touches: a change lists packs again."""
    return tuple(
        _stamp(f"{root}/{name}")
        for name in ("objects/pack", "refs", "packed-refs", "config", "objects/info")
    )


def _understood(root: str) -> bool:
    """Whether git would read this repository's objects as this reader does."""
    if os.path.lexists(f"{root}/objects/info/alternates"):
        return False
    if os.path.lexists(f"{root}/refs/replace"):
        return False  # git answers with the replacement
    with contextlib.suppress(FileNotFoundError), open(f"{root}/config", "rb") as file:
        if _NOT_UNDERSTOOD.search(file.read()):
            return False
    with contextlib.suppress(FileNotFoundError), open(f"{root}/packed-refs", "rb") as file:
        if os.fstat(file.fileno()).st_size == 0:
            return True
        with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as refs:
            return refs.find(b" refs/replace/") < 0
    return True


def _object(
    state: _Repo, sha: str, limit: int, kinds: frozenset[int] = _COMMIT_OR_TAG
) -> tuple[int, bytes] | None:
    """An object of `kinds` whose content hashes to `sha`, from a pack or loose; else None."""
    name = bytes.fromhex(sha)
    for pack in state.packs.values():
        offset = pack.find(name)
        if offset is None:
            continue
        with contextlib.suppress(*_UNREADABLE):
            found = _unpack(pack, offset, limit, kinds)
            if found is not None and _hashes_to(name, *found):
                return found
    with contextlib.suppress(*_UNREADABLE):
        found = _loose(f"{state.root}/objects/{sha[:2]}/{sha[2:]}", limit, kinds)
        if found is not None and _hashes_to(name, *found):
            return found
    return None


def _hashes_to(name: bytes, kind: int, body: bytes) -> bool:
    digest = hashlib.sha1(b"%s %d\0" % (_NAMES[kind], len(body)))  # git names objects by SHA-1
    digest.update(body)
    return digest.digest() == name


def _unpack(
    pack: _Pack, offset: int, limit: int, kinds: frozenset[int]
) -> tuple[int, bytes] | None:
    """The object at `offset`, its deltas applied; None for a kind not in `kinds` or too much.

    The chain's headers are walked first: nothing is inflated unless its base is of
    `kinds`, and the declared sizes to inflate sum to at most 4 * `limit`.
    """
    deltas: list[tuple[int, int, bytes]] = []  # (offset, size, bytes read) nearest first
    for _ in range(MAX_DEPTH + 1):
        head = pack.read(offset, _FIRST_READ)
        kind, size, at = _entry_header(head)
        if kind == _OFS_DELTA:
            distance, at = _base_distance(head, at)
            base: int | None = offset - distance if 0 < distance <= offset - 12 else None
        elif kind == _REF_DELTA:
            at += 20
            base = pack.find(head[at - 20 : at]) if len(head) >= at else None
        else:
            break
        if base is None:
            return None
        deltas.append((offset + at, size, head[at:]))
        offset = base
    else:
        return None  # too deep, or a chain through itself
    if kind not in kinds or size > limit:
        return None
    if size + sum(delta[1] for delta in deltas) > 4 * limit:
        return None
    data = _inflate(pack, offset + at, head[at:], size)
    for start, delta_size, first in reversed(deltas):
        if data is None:
            return None
        delta = _inflate(pack, start, first, delta_size)
        data = _patch(data, delta, limit) if delta is not None else None
    return (kind, data) if data is not None else None


def _entry_header(head: bytes) -> tuple[int, int, int]:
    """(type, declared size, bytes used) of a pack entry's header."""
    byte = head[0]
    kind, size, shift, at = (byte >> 4) & 7, byte & 15, 4, 1
    while byte & 0x80:
        byte = head[at]
        size |= (byte & 0x7F) << shift
        shift, at = shift + 7, at + 1
        if shift > 70:
            raise ValueError("a size past 64 bits")
    return kind, size, at


def _base_distance(head: bytes, at: int) -> tuple[int, int]:
    """An OFS_DELTA's distance back to its base, git's way (each continuation adds one)."""
    byte = head[at]
    distance, at = byte & 0x7F, at + 1
    while byte & 0x80:
        byte = head[at]
        distance = ((distance + 1) << 7) | (byte & 0x7F)
        at += 1
        if distance > 1 << 64:
            raise ValueError("a distance past 64 bits")
    return distance, at


def _inflate(pack: _Pack, offset: int, first: bytes, size: int) -> bytes | None:
    """Exactly `size` bytes from the zlib stream at `offset` (`first` already read), or None.

    Reads at most 2 * `size` + 4 KiB of input: more means padding no git writes.
    """
    inflate = zlib.decompressobj()
    parts: list[bytes] = []
    produced, data, at = 0, first, offset + len(first)
    budget = 2 * size + _FIRST_READ - len(first)
    while not inflate.eof:
        if not data:
            if budget <= 0:
                return None
            data = pack.read(at, min(_STEP, budget))
            if not data:
                return None
            at, budget = at + len(data), budget - len(data)
        piece = inflate.decompress(data, size + 1 - produced)
        data = inflate.unconsumed_tail
        produced += len(piece)
        if produced > size:
            return None
        parts.append(piece)
    return b"".join(parts) if produced == size else None


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        shift, at = shift + 7, at + 1
        if not byte & 0x80:
            return value, at
        if shift > 63:
            raise ValueError("a delta size past 64 bits")


def _patch(base: bytes, delta: bytes, limit: int) -> bytes | None:
    """`base` with git's delta applied (copy and insert instructions), or None if malformed."""
    source_size, at = _varint(delta, 0)
    target_size, at = _varint(delta, at)
    if source_size != len(base) or target_size > limit:
        return None
    out = bytearray()
    end = len(delta)
    while at < end:
        op = delta[at]
        at += 1
        if op & 0x80:  # copy from base: offset and size bytes as the low bits say
            start = length = 0
            for bit in range(7):
                if op & (1 << bit):
                    value = delta[at] << (8 * (bit if bit < 4 else bit - 4))
                    if bit < 4:
                        start |= value
                    else:
                        length |= value
                    at += 1
            length = length or 0x10000
            if start + length > len(base):
                return None
            out += base[start : start + length]
        elif op:  # insert the next `op` bytes
            if at + op > end:
                return None
            out += delta[at : at + op]
            at += op
        else:
            return None  # reserved
        if len(out) > target_size:
            return None
    return bytes(out) if len(out) == target_size else None


def _loose(path: str, limit: int, kinds: frozenset[int]) -> tuple[int, bytes] | None:
    """A loose object of `kinds` (zlib of `<kind> <size> NUL <body>`), or None."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        stored = os.fstat(fd).st_size
        if stored > 2 * limit + _FIRST_READ:
            return None
        data = os.pread(fd, stored, 0)
    finally:
        os.close(fd)
    inflate = zlib.decompressobj()
    head = inflate.decompress(data, 32)
    space, nul = head.find(b" "), head.find(b"\0")
    kind = _KINDS.get(head[:space])
    if (
        kind is None
        or kind not in kinds
        or not 0 < space < nul
        or not head[space + 1 : nul].isdigit()
    ):
        return None
    size = int(head[space + 1 : nul])
    if size > limit:
        return None
    body = head[nul + 1 :] + inflate.decompress(inflate.unconsumed_tail, size + 1)
    if len(body) != size or not inflate.eof:
        return None
    return kind, body
