"""The in-process commit reader on packs and loose objects written here byte by byte.

Hostile files (flipped bytes, truncations, deltas through themselves, absurd sizes)
never raise and never give a body other than the one git stores under that id.
"""

from __future__ import annotations

import hashlib
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repodepot.git.packs import MAX_DEPTH, ObjectStore

COMMIT, TAG, OFS_DELTA, REF_DELTA = 1, 4, 6, 7
LIMIT = 1 << 20


def commit_body(message: bytes, parent: str | None = None) -> bytes:
    lines = [b"tree " + b"4b825dc642cb6eb9a060e54bf8d69288fbee4904"]
    if parent:
        lines.append(b"parent " + parent.encode())
    lines += [
        b"author A U Thor <a@example.com> 1700000000 +0000",
        b"committer A U Thor <a@example.com> 1700000000 +0000",
    ]
    return b"\n".join(lines) + b"\n\n" + message + b"\n"


def object_id(kind: bytes, body: bytes) -> str:
    return hashlib.sha1(b"%s %d\0" % (kind, len(body)) + body).hexdigest()


def entry_header(kind: int, size: int) -> bytes:
    out = bytearray([(kind << 4) | (size & 15)])
    size >>= 4
    while size:
        out[-1] |= 0x80
        out.append(size & 0x7F)
        size >>= 7
    return bytes(out)


def base_distance(distance: int) -> bytes:
    out = [distance & 0x7F]
    distance >>= 7
    while distance:
        distance -= 1
        out.insert(0, 0x80 | (distance & 0x7F))
        distance >>= 7
    return bytes(out)


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append(value & 0x7F)
        value >>= 7
        if not value:
            return bytes(out)
        out[-1] |= 0x80


def copy(offset: int, length: int) -> bytes:
    """A delta's copy instruction; a length of 0x10000 is written as none."""
    op, args = 0x80, bytearray()
    for i in range(4):
        if (offset >> (8 * i)) & 0xFF:
            op |= 1 << i
            args.append((offset >> (8 * i)) & 0xFF)
    if length != 0x10000:
        for i in range(3):
            if (length >> (8 * i)) & 0xFF:
                op |= 0x10 << i
                args.append((length >> (8 * i)) & 0xFF)
    return bytes([op]) + bytes(args)


def insert(data: bytes) -> bytes:
    return b"".join(
        bytes([len(data[i : i + 127])]) + data[i : i + 127] for i in range(0, len(data), 127)
    )


def delta(source: bytes, target: bytes, ops: bytes) -> bytes:
    return varint(len(source)) + varint(len(target)) + ops


@dataclass
class Pack:
    """A pack being written: entries at their offsets, each named as the test says."""

    entries: list[tuple[bytes, int, int]] = field(default_factory=list)  # (name, offset, crc)
    data: bytearray = field(default_factory=lambda: bytearray(b"PACK\0\0\0\2\0\0\0\0"))
    large: set[bytes] = field(default_factory=set)  # names indexed through the 8-byte table

    def add(self, name: str, kind: int, payload: bytes, *, size: int | None = None) -> int:
        return self.raw(name, entry_header(kind, len(payload) if size is None else size), payload)

    def raw(self, name: str, header: bytes, payload: bytes, prefix: bytes = b"") -> int:
        offset = len(self.data)
        stored = header + prefix + zlib.compress(payload)
        self.data += stored
        self.entries.append((bytes.fromhex(name), offset, zlib.crc32(stored)))
        return offset

    def ofs_delta(self, name: str, base: int, payload: bytes) -> int:
        offset = len(self.data)
        return self.raw(
            name, entry_header(OFS_DELTA, len(payload)), payload, base_distance(offset - base)
        )

    def ref_delta(self, name: str, base: str, payload: bytes) -> int:
        return self.raw(name, entry_header(REF_DELTA, len(payload)), payload, bytes.fromhex(base))

    def files(self) -> tuple[bytes, bytes]:
        pack = bytearray(self.data)
        pack[8:12] = struct.pack(">I", len(self.entries))
        pack += hashlib.sha1(pack).digest()
        ordered = sorted(self.entries)
        fanout = [sum(1 for name, _, _ in ordered if name[0] <= i) for i in range(256)]
        offsets, large = bytearray(), bytearray()
        for name, offset, _ in ordered:
            if name in self.large:
                offsets += struct.pack(">I", 0x80000000 | len(large) // 8)
                large += struct.pack(">Q", offset)
            else:
                offsets += struct.pack(">I", offset)
        idx = bytearray(b"\377tOc\0\0\0\2" + struct.pack(">256I", *fanout))
        idx += b"".join(name for name, _, _ in ordered)
        idx += b"".join(struct.pack(">I", crc) for _, _, crc in ordered) + offsets + large
        idx += pack[-20:]
        idx += hashlib.sha1(idx).digest()
        return bytes(idx), bytes(pack)


def bare(root: Path) -> Path:
    (root / "objects" / "pack").mkdir(parents=True)
    (root / "refs" / "heads").mkdir(parents=True)
    (root / "HEAD").write_bytes(b"ref: refs/heads/main\n")
    (root / "config").write_bytes(b"[core]\n\trepositoryformatversion = 0\n\tbare = true\n")
    return root


def write_pack(repo: Path, idx: bytes, pack: bytes, stem: str = "pack-1") -> None:
    (repo / "objects" / "pack" / f"{stem}.pack").write_bytes(pack)
    (repo / "objects" / "pack" / f"{stem}.idx").write_bytes(idx)


def loose(kind: bytes, body: bytes, *, size: int | None = None) -> bytes:
    return zlib.compress(b"%s %d\0" % (kind, len(body) if size is None else size) + body)


def write_loose(repo: Path, sha: str, data: bytes) -> None:
    (repo / "objects" / sha[:2]).mkdir(exist_ok=True)
    (repo / "objects" / sha[:2] / sha[2:]).write_bytes(data)


@pytest.fixture
def store() -> Iterator[ObjectStore]:
    objects = ObjectStore()
    yield objects
    objects.close()


# A pack with a plain commit, a commit as an OFS_DELTA on it, another as a REF_DELTA on
# that one (a chain of two), a large-offset entry, and an annotated tag of the last.
BASE = commit_body(b"first\n\n" + b"a long shared paragraph of text. " * 20)
SECOND = commit_body(
    b"second\n\n" + b"a long shared paragraph of text. " * 20, object_id(b"commit", BASE)
)
THIRD = SECOND.replace(b"second", b"third!")
BASE_ID, SECOND_ID, THIRD_ID = (object_id(b"commit", body) for body in (BASE, SECOND, THIRD))
TAG_BODY = (
    f"object {THIRD_ID}\ntype commit\ntag v1\ntagger T <t@example.com> 1700000000 +0000\n\nv1\n"
).encode()
TAG_ID = object_id(b"tag", TAG_BODY)
SPLIT = SECOND.index(b"second")
EXPECTED = {BASE_ID: BASE, SECOND_ID: SECOND, THIRD_ID: THIRD}


def sample_pack() -> Pack:
    pack = Pack()
    base = pack.add(BASE_ID, COMMIT, BASE)
    tail = len(SECOND) - SPLIT - 6  # what follows "second", as it follows "first"
    ops = insert(SECOND[: SPLIT + 6]) + copy(BASE.index(b"first") + 5, tail)
    pack.ofs_delta(SECOND_ID, base, delta(BASE, SECOND, ops))
    ops = copy(0, SPLIT) + insert(b"third!") + copy(SPLIT + 6, len(SECOND) - SPLIT - 6)
    pack.ref_delta(THIRD_ID, SECOND_ID, delta(SECOND, THIRD, ops))
    pack.add(TAG_ID, TAG, TAG_BODY)
    pack.large.add(bytes.fromhex(TAG_ID))
    return pack


SAMPLE_IDX, SAMPLE_PACK = sample_pack().files()


def test_commits_stored_whole_and_as_delta_chains_read_back(
    tmp_path: Path, store: ObjectStore
) -> None:
    repo = bare(tmp_path / "r.git")
    write_pack(repo, SAMPLE_IDX, SAMPLE_PACK)
    for sha, body in EXPECTED.items():
        assert store.read_commit(repo, sha, LIMIT) == (sha, body)
    assert store.read_commit(repo, TAG_ID, LIMIT) == (THIRD_ID, THIRD)  # through the 8-byte table
    assert store.read_commit(repo, "0" * 40, LIMIT) is None
    assert store.read_commit(repo, BASE_ID.upper(), LIMIT) is None  # only full lowercase ids


def test_a_copy_of_0x10000_bytes_is_written_without_a_size(
    tmp_path: Path, store: ObjectStore
) -> None:
    big = commit_body(bytes(range(256)) * 300)
    bigger = big[:0x10000] + b"and more\n"
    pack = Pack()
    base = pack.add(object_id(b"commit", big), COMMIT, big)
    pack.ofs_delta(
        object_id(b"commit", bigger),
        base,
        delta(big, bigger, copy(0, 0x10000) + insert(b"and more\n")),
    )
    repo = bare(tmp_path / "r.git")
    write_pack(repo, *pack.files())
    assert store.read_commit(repo, object_id(b"commit", bigger), LIMIT) == (
        object_id(b"commit", bigger),
        bigger,
    )


def test_bodies_over_the_limit_are_left_to_git(tmp_path: Path, store: ObjectStore) -> None:
    repo = bare(tmp_path / "r.git")
    write_pack(repo, SAMPLE_IDX, SAMPLE_PACK)
    assert store.read_commit(repo, BASE_ID, len(BASE)) == (BASE_ID, BASE)
    assert store.read_commit(repo, BASE_ID, len(BASE) - 1) is None
    assert store.read_commit(repo, THIRD_ID, len(THIRD) - 1) is None


def test_loose_commits_and_tags(tmp_path: Path, store: ObjectStore) -> None:
    repo = bare(tmp_path / "r.git")
    write_loose(repo, BASE_ID, loose(b"commit", BASE))
    tag = TAG_BODY.replace(THIRD_ID.encode(), BASE_ID.encode())
    write_loose(repo, object_id(b"tag", tag), loose(b"tag", tag))
    assert store.read_commit(repo, BASE_ID, LIMIT) == (BASE_ID, BASE)
    assert store.read_commit(repo, object_id(b"tag", tag), LIMIT) == (BASE_ID, BASE)


def test_a_body_stored_under_another_id_is_not_an_answer(
    tmp_path: Path, store: ObjectStore
) -> None:
    repo = bare(tmp_path / "r.git")
    pack = Pack()
    pack.add(SECOND_ID, COMMIT, BASE)  # the index names it SECOND_ID, the data is BASE
    write_pack(repo, *pack.files())
    write_loose(repo, THIRD_ID, loose(b"commit", BASE))
    assert store.read_commit(repo, SECOND_ID, LIMIT) is None
    assert store.read_commit(repo, THIRD_ID, LIMIT) is None


def test_trees_blobs_and_tags_of_trees_are_not_commits(tmp_path: Path, store: ObjectStore) -> None:
    repo = bare(tmp_path / "r.git")
    blob = b"hello\n"
    tag = TAG_BODY.replace(b"type commit", b"type tree")
    pack = Pack()
    pack.add(object_id(b"blob", blob), 3, blob)
    pack.add(object_id(b"tag", tag), TAG, tag)
    write_pack(repo, *pack.files())
    assert store.read_commit(repo, object_id(b"blob", blob), LIMIT) is None
    assert store.read_commit(repo, object_id(b"tag", tag), LIMIT) is None


def test_a_delta_on_itself_and_a_chain_past_the_depth(tmp_path: Path, store: ObjectStore) -> None:
    repo = bare(tmp_path / "r.git")
    pack = Pack()
    pack.ref_delta(SECOND_ID, SECOND_ID, delta(SECOND, SECOND, insert(SECOND)))
    offset = pack.add(BASE_ID, COMMIT, BASE)
    bodies = [BASE]
    for depth in range(1, MAX_DEPTH + 2):
        body = BASE + b"%d\n" % depth
        offset = pack.ofs_delta(
            object_id(b"commit", body),
            offset,
            delta(bodies[-1], body, copy(0, len(BASE)) + insert(b"%d\n" % depth)),
        )
        bodies.append(body)
    write_pack(repo, *pack.files())
    assert store.read_commit(repo, SECOND_ID, LIMIT) is None
    deepest = object_id(b"commit", bodies[MAX_DEPTH])
    assert store.read_commit(repo, deepest, LIMIT) == (deepest, bodies[MAX_DEPTH])
    assert store.read_commit(repo, object_id(b"commit", bodies[MAX_DEPTH + 1]), LIMIT) is None


def test_declared_sizes_of_2_to_the_60_are_refused_unread(
    tmp_path: Path, store: ObjectStore
) -> None:
    repo = bare(tmp_path / "r.git")
    huge = 1 << 60
    pack = Pack()
    pack.add(BASE_ID, COMMIT, BASE, size=huge)
    base = pack.add(SECOND_ID, COMMIT, SECOND)
    pack.ofs_delta(THIRD_ID, base, varint(len(SECOND)) + varint(huge) + insert(THIRD))
    write_pack(repo, *pack.files())
    tag = TAG_BODY.replace(THIRD_ID.encode(), BASE_ID.encode())
    write_loose(repo, object_id(b"tag", tag), loose(b"tag", tag, size=huge))
    for sha in (BASE_ID, THIRD_ID, object_id(b"tag", tag)):
        assert store.read_commit(repo, sha, huge) is None


def test_a_loose_object_with_more_or_less_than_it_declares(
    tmp_path: Path, store: ObjectStore
) -> None:
    repo = bare(tmp_path / "r.git")
    write_loose(repo, BASE_ID, loose(b"commit", BASE, size=len(BASE) - 1))
    write_loose(repo, SECOND_ID, loose(b"commit", SECOND, size=len(SECOND) + 1))
    write_loose(repo, THIRD_ID, zlib.compress(b"commit %d\0" % len(THIRD) + THIRD)[:-6])
    for sha in (BASE_ID, SECOND_ID, THIRD_ID):
        assert store.read_commit(repo, sha, LIMIT) is None


def test_a_pack_disagreeing_with_its_index_is_skipped_for_loose(
    tmp_path: Path, store: ObjectStore
) -> None:
    repo = bare(tmp_path / "r.git")
    write_pack(repo, SAMPLE_IDX, SAMPLE_PACK[:8] + struct.pack(">I", 99) + SAMPLE_PACK[12:])
    write_loose(repo, BASE_ID, loose(b"commit", BASE))
    assert store.read_commit(repo, BASE_ID, LIMIT) == (BASE_ID, BASE)
    assert store.read_commit(repo, SECOND_ID, LIMIT) is None


def check_store_survives(idx: bytes, pack: bytes, loose_base: bytes) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        repo = bare(Path(scratch) / "r.git")
        write_pack(repo, idx, pack)
        write_loose(repo, BASE_ID, loose_base)
        objects = ObjectStore()
        try:
            for sha, body in EXPECTED.items():
                assert store_answer(objects, repo, sha) in (None, (sha, body))
            assert store_answer(objects, repo, TAG_ID) in (None, (THIRD_ID, THIRD))
        finally:
            objects.close()


def store_answer(objects: ObjectStore, repo: Path, sha: str) -> tuple[str, bytes] | None:
    return objects.read_commit(repo, sha, LIMIT)


LOOSE_BASE = loose(b"commit", BASE)
FILES = {"idx": SAMPLE_IDX, "pack": SAMPLE_PACK, "loose": LOOSE_BASE}


def mutated(which: str, data: bytes, at: int, value: int, cut: bool) -> dict[str, bytes]:
    files = dict(FILES)
    at %= len(data)
    files[which] = data[:at] if cut else data[:at] + bytes([value]) + data[at + 1 :]
    return files


@settings(
    max_examples=400, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck)
)
@given(
    which=st.sampled_from(sorted(FILES)),
    at=st.integers(min_value=0, max_value=1 << 16),
    value=st.integers(min_value=0, max_value=255),
    cut=st.booleans(),
)
def test_flipped_or_truncated_files_give_the_right_body_or_none(
    which: str, at: int, value: int, cut: bool
) -> None:
    files = mutated(which, FILES[which], at, value, cut)
    check_store_survives(files["idx"], files["pack"], files["loose"])


def test_every_single_byte_of_the_pack_flipped(tmp_path: Path) -> None:
    for at in range(12, len(SAMPLE_PACK) - 20):
        flipped = SAMPLE_PACK[:at] + bytes([SAMPLE_PACK[at] ^ 0xFF]) + SAMPLE_PACK[at + 1 :]
        check_store_survives(SAMPLE_IDX, flipped, b"")
