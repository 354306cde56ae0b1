"""Module zips: which files the go command puts in one, and writing it from git objects.

`select_files` is golang.org/x/mod/zip's `checkFiles` over a `git ls-tree` listing: files of
nested modules, vendored packages, symlinks and other non-regular files are left out;
an invalid path, a case-insensitive collision, more than 500 MiB, or a go.mod or LICENSE
over 16 MiB refuse the whole module, before a byte is written. `.gitattributes` do not
apply (the go command turns export-ignore and export-subst off for its `git archive`).

`write_zip` streams the selected blobs out of one `git cat-file --batch` into a zip
whose bytes depend only on the file set: sorted, fixed times and modes, deflated.
"""

from __future__ import annotations

import re
import threading
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from repodepot.goproxy.versions import BadPath, check_file_path

if TYPE_CHECKING:
    from repodepot.git.commands import TreeEntry

MAX_ZIP_FILE = 500 << 20
MAX_GO_MOD = 16 << 20
MAX_LICENSE = 16 << 20
REGULAR = ("100644", "100755", "100664")
SYMLINK = "120000"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_GO_LINE = re.compile(rb"^\s*go\s+\"?v?([0-9]+)(?:\.([0-9]+))?", re.MULTILINE)


class ZipRefused(Exception):
    """The module cannot be zipped: the go command would refuse it too."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A blob of the tree, at its path relative to the module's root."""

    path: str
    mode: str
    sha: str
    size: int


def module_blobs(entries: Iterable[TreeEntry], subdir: str) -> list[Entry]:
    """The blobs among `entries` (a recursive listing) under `subdir`, paths relative to it."""
    prefix = f"{subdir}/" if subdir else ""
    return [
        Entry(entry.path[len(prefix) :], entry.mode, entry.sha, entry.size)
        for entry in entries
        # submodules (commit) never reach a module zip
        if entry.kind == "blob" and entry.size is not None and entry.path.startswith(prefix)
    ]


def go_lang(go_mod: bytes | None) -> tuple[int, int]:
    """The `go` directive of a go.mod as (major, minor); (0, 0) when there is none."""
    match = _GO_LINE.search(go_mod or b"")
    if match is None:
        return (0, 0)
    return (int(match[1]), int(match[2] or 0))


def is_vendored(name: str, lang: tuple[int, int]) -> bool:
    """zip.isVendoredPackage, with the go 1.24 fix applied only from `go 1.24` on."""
    if lang >= (1, 24) and name == "vendor/modules.txt":
        return True
    if name.startswith("vendor/"):
        start = len("vendor/")
    elif (at := name.find("/vendor/")) >= 0:
        # Before go 1.24 the offset was counted from the start (golang.org/issue/37397):
        # kept for those modules, so that their checksums do not change.
        start = at + len("/vendor/") if lang >= (1, 24) else len("/vendor/")
    else:
        return False
    return "/" in name[start:]


def _fold(path: str) -> str:
    return path.casefold()


class _Collisions:
    """zip's collisionChecker: case-insensitive duplicates and file/directory clashes."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, bool]] = {}

    def check(self, path: str, is_dir: bool) -> None:
        while True:
            key = _fold(path)
            other = self._seen.get(key)
            if other is None:
                self._seen[key] = (path, is_dir)
            elif other[0] != path:
                raise ZipRefused(f"case-insensitive file name collision: {other[0]!r} and {path!r}")
            elif other[1] != is_dir:
                raise ZipRefused(f"entry {path!r} is both a file and a directory")
            elif not is_dir:
                raise ZipRefused(f"multiple entries for file {path!r}")
            else:
                return  # this directory and its parents were checked before
            parent = path.rpartition("/")[0]
            if not parent:
                return
            path, is_dir = parent, True


def select_files(entries: Iterable[Entry], go_mod: bytes | None) -> list[Entry]:
    """The files of the module zip, sorted; raises ZipRefused naming the first problem.

    `entries` are relative to the module's root; `go_mod` is its go.mod (for the vendor
    rule, which follows its `go` line).
    """
    entries = list(entries)
    lang = go_lang(go_mod)
    nested = {
        entry.path.rpartition("/")[0] + "/"
        for entry in entries
        if entry.mode in REGULAR and entry.path.rpartition("/")[2].lower() == "go.mod"
    }
    nested.discard("/")
    collisions = _Collisions()
    selected: list[Entry] = []
    left = MAX_ZIP_FILE
    for entry in sorted(entries, key=lambda e: e.path.encode("utf-8", "surrogateescape")):
        path = entry.path
        if is_vendored(path, lang) or _in_nested(path, nested) or path == ".hg_archival.txt":
            continue
        try:
            check_file_path(path)
        except BadPath as error:
            raise ZipRefused(str(error)) from None
        if path.lower() == "go.mod" and path != "go.mod":
            raise ZipRefused(f"{path!r}: go.mod files must have lowercase names")
        collisions.check(path, False)
        if entry.mode not in REGULAR:
            continue  # symlinks (golang.org/issue/27093)
        left -= entry.size
        if left < 0:
            raise ZipRefused(f"module source tree too large (max size is {MAX_ZIP_FILE} bytes)")
        if path == "go.mod" and entry.size > MAX_GO_MOD:
            raise ZipRefused(f"go.mod file too large (max size is {MAX_GO_MOD} bytes)")
        if path == "LICENSE" and entry.size > MAX_LICENSE:
            raise ZipRefused(f"LICENSE file too large (max size is {MAX_LICENSE} bytes)")
        selected.append(entry)
    return selected


def _in_nested(path: str, nested: set[str]) -> bool:
    at = path.rfind("/")
    while at > 0:
        if path[: at + 1] in nested:
            return True
        at = path.rfind("/", 0, at)
    return False


class BlobSource(Protocol):
    """A started `git cat-file --batch`."""

    stdin: IO[bytes] | None
    stdout: IO[bytes] | None


def write_zip(
    out: Any, prefix: str, files: list[Entry], cat_file: BlobSource, *, level: int = 6
) -> None:
    """Write the zip of `files` (blobs read from `cat_file`) to `out`, entries `prefix+path`.

    Blocking: run it in a thread. A writer thread feeds the object ids, so git never
    waits for us to ask. Raises ZipRefused when a blob is not what the listing said.
    """
    stdin, stdout = cat_file.stdin, cat_file.stdout
    assert stdin is not None
    assert stdout is not None

    def ask() -> None:
        try:
            for entry in files:
                stdin.write(f"{entry.sha}\n".encode())
            stdin.close()
        except OSError:
            pass  # git died; the reader sees it

    feeder = threading.Thread(target=ask, name="modzip-feed", daemon=True)
    feeder.start()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for entry in files:
            header = stdout.readline().split()
            if len(header) != 3 or header[1] != b"blob" or int(header[2]) != entry.size:
                raise ZipRefused(f"git did not give the blob of {entry.path!r}")
            info = zipfile.ZipInfo(prefix + entry.path, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            with zf.open(info, "w") as member:
                left = entry.size
                while left:
                    chunk = stdout.read(min(left, 1 << 20))
                    if not chunk:
                        raise ZipRefused(f"git stopped in the middle of {entry.path!r}")
                    member.write(chunk)
                    left -= len(chunk)
            stdout.read(1)  # the newline after each object
    feeder.join()


class Tee:
    """A write-only, non-seekable file that copies into a cache file and hands on chunks.

    zipfile asks `tell()` and then writes data descriptors, since it cannot seek back.
    """

    def __init__(self, cache: Path, deliver: Callable[[bytes], None], chunk: int = 1 << 18):
        self._file = cache.open("wb")
        self._deliver = deliver
        self._chunk = chunk
        self._buffer = bytearray()
        self._position = 0

    def write(self, data: bytes) -> int:
        """Write to the cache file and buffer for the reader."""
        self._file.write(data)
        self._buffer += data
        self._position += len(data)
        if len(self._buffer) >= self._chunk:
            self.flush()
        return len(data)

    def tell(self) -> int:
        """How many bytes were written."""
        return self._position

    def flush(self) -> None:
        """Hand the buffered bytes on."""
        if self._buffer:
            self._deliver(bytes(self._buffer))
            self._buffer.clear()

    def close(self) -> None:
        """Hand on the rest and close the cache file."""
        self.flush()
        self._file.close()
