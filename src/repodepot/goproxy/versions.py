"""Go's semantic versions, pseudo-versions and module paths, as the go command reads them.

Pure functions after golang.org/x/mod: `semver` (parse, canonical form, ordering),
`module` (path checks, `!`-case-encoding, major-version suffixes) and `module/pseudo.go`.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

_NUM = r"0|[1-9][0-9]*"
_IDENT = r"[0-9A-Za-z-]+"
_SEMVER = re.compile(
    rf"v(?P<major>{_NUM})(?:\.(?P<minor>{_NUM})(?:\.(?P<patch>{_NUM})"
    rf"(?:-(?P<pre>{_IDENT}(?:\.{_IDENT})*))?(?:\+(?P<build>{_IDENT}(?:\.{_IDENT})*))?)?)?"
)
_PSEUDO = re.compile(
    r"v[0-9]+\.(0\.0-|\d+\.\d+-([^+]*\.)?0\.)\d{14}-[A-Za-z0-9]+(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?"
)
INCOMPATIBLE = "+incompatible"
_MODULE_ELEM_CHARS = re.compile(r"[A-Za-z0-9._~-]+")
_FIRST_ELEM = re.compile(r"[a-z0-9.-]+")
_FILE_PUNCT = set("!#$%&()+,-.=@[]^_{}~ ")
_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{n}" for p in ("COM", "LPT") for n in range(1, 10)}


class BadVersion(ValueError):
    """Not a version the go command accepts here."""


class BadPath(ValueError):
    """Not a module path or file path the go command accepts."""


@dataclass(frozen=True, slots=True)
class Semver:
    """A parsed `vMAJOR.MINOR.PATCH[-PRE][+BUILD]`, shorthand (`v1`, `v1.2`) filled with zeros."""

    major: str
    minor: str
    patch: str
    pre: str
    build: str
    short: bool

    @property
    def canonical(self) -> str:
        """`vX.Y.Z[-PRE]`: what semver.Canonical gives (build metadata dropped)."""
        return f"v{self.major}.{self.minor}.{self.patch}" + (f"-{self.pre}" if self.pre else "")


def parse(version: str) -> Semver | None:
    """The version's parts, or None when it is not valid semver (in Go's sense)."""
    match = _SEMVER.fullmatch(version)
    if match is None:
        return None
    minor, patch = match["minor"], match["patch"]
    pre = match["pre"] or ""
    if pre and any(p.isdigit() and len(p) > 1 and p[0] == "0" for p in pre.split(".")):
        return None  # numeric pre-release identifiers have no leading zeros
    return Semver(
        match["major"], minor or "0", patch or "0", pre, match["build"] or "", patch is None
    )


def canonical(version: str) -> str:
    """module.CanonicalVersion: semver's canonical form, keeping `+incompatible`; "" if invalid."""
    parsed = parse(version)
    if parsed is None:
        return ""
    return parsed.canonical + (INCOMPATIBLE if parsed.build == "incompatible" else "")


def is_tag_version(version: str) -> bool:
    """Whether a tag's version part names a module version: canonical, not a pseudo-version."""
    parsed = parse(version)
    return parsed is not None and parsed.canonical == version and not is_pseudo(version)


def major(version: str) -> str:
    """`vN` of a valid version."""
    parsed = parse(version)
    return f"v{parsed.major}" if parsed else ""


def is_pseudo(version: str) -> bool:
    """module.IsPseudoVersion."""
    return (
        version.count("-") >= 2 and bool(_PSEUDO.fullmatch(version)) and parse(version) is not None
    )


def _cmp_num(a: str, b: str) -> int:
    return (len(a) > len(b)) - (len(a) < len(b)) or (a > b) - (a < b)


def _cmp_pre(a: str, b: str) -> int:
    if a == b:
        return 0
    if not a:
        return 1  # a release sorts after every pre-release
    if not b:
        return -1
    xs, ys = a.split("."), b.split(".")
    for x, y in zip(xs, ys, strict=False):
        if x == y:
            continue
        xn, yn = x.isdigit(), y.isdigit()
        if xn and yn:
            return _cmp_num(x, y)
        if xn != yn:
            return -1 if xn else 1
        return -1 if x < y else 1
    return (len(xs) > len(ys)) - (len(xs) < len(ys))


def compare(a: str, b: str) -> int:
    """semver.Compare: -1, 0 or 1; an invalid version sorts before every valid one."""
    pa, pb = parse(a), parse(b)
    if pa is None or pb is None:
        return (pb is None) - (pa is None) if (pa is None) != (pb is None) else 0
    for x, y in ((pa.major, pb.major), (pa.minor, pb.minor), (pa.patch, pb.patch)):
        if c := _cmp_num(x, y):
            return c
    return _cmp_pre(pa.pre, pb.pre)


def sort_key(version: str) -> tuple[Any, ...]:
    """A key that orders versions as `compare` does (invalid ones first), ties by the string."""
    parsed = parse(version)
    if parsed is None:
        return (0, version)
    pre: tuple[Any, ...] = (1,)  # a release sorts after every pre-release
    if parsed.pre:
        pre = (0, *((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parsed.pre.split(".")))
    return (1, int(parsed.major), int(parsed.minor), int(parsed.patch), pre, version)


def sort_versions(versions: list[str]) -> list[str]:
    """semver.Sort: ascending, ties broken by the string."""
    return sorted(versions, key=sort_key)


def latest_version(versions: list[str]) -> str | None:
    """The highest release of a sorted list, else its highest pre-release (None if empty)."""
    releases = [v for v in versions if (parsed := parse(v)) is not None and not parsed.pre]
    pool = releases or versions
    return pool[-1] if pool else None


# Module paths --------------------------------------------------------------------------


def split_major(path: str) -> tuple[str, str]:
    """(prefix, `/vN` suffix or "") after module.SplitPathVersion (gopkg.in excepted)."""
    match = re.search(r"/v([0-9]+)$", path)
    if match is None:
        return path, ""
    number = match[1]
    if number in ("0", "1") or number.startswith("0"):
        raise BadPath(f"{path}: invalid major version suffix /v{number}")
    return path[: match.start()], match[0]


def path_major_ok(version: str, path_major: str) -> bool:
    """module.CheckPathMajor: the version's major matches the path's suffix."""
    if version.endswith(INCOMPATIBLE):
        return path_major == ""  # +incompatible only without a suffix
    found = major(version)
    return found in ("v0", "v1") if path_major == "" else found == path_major[1:]


def check_module_path(path: str) -> None:
    """module.CheckPath; raises BadPath naming what is wrong."""
    if not path or path.startswith("/") or path.endswith("/") or "//" in path:
        raise BadPath(f"malformed module path {path!r}")
    elements = path.split("/")
    first = elements[0]
    if "." not in first or first.startswith("-") or not _FIRST_ELEM.fullmatch(first):
        raise BadPath(f"malformed module path {path!r}: the first element must be a domain name")
    for element in elements:
        _check_element(path, element, file=False)
    split_major(path)


def _check_element(path: str, element: str, *, file: bool) -> None:
    if element.strip(".") == "" or element.endswith("."):
        raise BadPath(f"malformed path {path!r}: invalid element {element!r}")
    if not file:
        if element.startswith(".") or not _MODULE_ELEM_CHARS.fullmatch(element):
            raise BadPath(f"malformed module path {path!r}: invalid element {element!r}")
    else:
        for char in element:
            letter = char.isascii() or not unicodedata.category(char).startswith("L")
            if not (char.isascii() and char.isalnum()) and char not in _FILE_PUNCT and letter:
                raise BadPath(f"invalid file path {path!r}: invalid char {char!r}")
    short = element.split(".", 1)[0]
    if short.upper() in _RESERVED:
        raise BadPath(f"invalid path {path!r}: {element!r} is a reserved name on Windows")


def check_file_path(path: str) -> None:
    """module.CheckFilePath for a path inside a module zip; raises BadPath."""
    if not path or path.startswith("/") or path.endswith("/") or "//" in path:
        raise BadPath(f"invalid file path {path!r}")
    for element in path.split("/"):
        _check_element(path, element, file=True)


def escape(text: str) -> str:
    """module.EscapePath/EscapeVersion: each capital letter becomes `!` and its lowercase."""
    return re.sub(r"[A-Z]", lambda m: "!" + m[0].lower(), text)


def unescape(text: str) -> str:
    """The inverse of `escape`; raises BadPath on a raw capital, a bad `!` or non-ASCII."""
    if not text.isascii() or re.search(r"[A-Z]|![^a-z]|!$", text):
        raise BadPath(f"invalid escaped path or version {text!r}")
    return re.sub(r"!([a-z])", lambda m: m[1].upper(), text)


# Pseudo-versions -----------------------------------------------------------------------


def pseudo_time(epoch: int) -> str:
    """The yyyymmddhhmmss of a commit time, in UTC."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y%m%d%H%M%S")


def pseudo_version(path_major: str, base: str, epoch: int, sha: str) -> str:
    """module.PseudoVersion for a commit whose nearest tag is `base` ("" for none)."""
    stamp = f"{pseudo_time(epoch)}-{sha[:12]}"
    incompatible = INCOMPATIBLE if base.endswith(INCOMPATIBLE) else ""
    base = base.removesuffix(INCOMPATIBLE)
    if not base:
        number = path_major[2:] if path_major else "0"
        return f"v{number}.0.0-{stamp}"
    parsed = parse(base)
    assert parsed is not None
    if parsed.pre:
        return f"{parsed.canonical}.0.{stamp}{incompatible}"
    patch = str(int(parsed.patch) + 1)
    return f"v{parsed.major}.{parsed.minor}.{patch}-0.{stamp}{incompatible}"


@dataclass(frozen=True, slots=True)
class Pseudo:
    """A pseudo-version taken apart: its base version ("" for vX.0.0-), time and short hash."""

    base: str
    stamp: str
    rev: str


def parse_pseudo(version: str) -> Pseudo:
    """The parts of a pseudo-version (module.PseudoVersionBase/Time/Rev); raises BadVersion."""
    if not is_pseudo(version):
        raise BadVersion(f"{version} is not a pseudo-version")
    plain = version.removesuffix(INCOMPATIBLE)
    parsed = parse(plain)
    assert parsed is not None
    head, _, rev = parsed.pre.rpartition("-")
    stamp = head[-14:]
    if re.match(r"^v[0-9]+\.0\.0-\d{14}-", plain):
        return Pseudo("", stamp, rev)
    release = f"v{parsed.major}.{parsed.minor}.{parsed.patch}"
    before = head[: -len(stamp)].removesuffix(".").removesuffix("0").removesuffix(".")
    if before:  # vX.Y.Z-pre.0.stamp-rev: the base is vX.Y.Z-pre
        base = f"{release}-{before}"
    else:  # vX.Y.(Z+1)-0.stamp-rev: the base is vX.Y.Z
        if parsed.patch == "0":
            raise BadVersion(f"{version}: invalid pseudo-version (patch 0 after a release)")
        base = f"v{parsed.major}.{parsed.minor}.{int(parsed.patch) - 1}"
    return Pseudo(base, stamp, rev)


def default_root(source_url: str | None) -> str | None:
    """The Go import root a source URL implies (`github.com/owner/name`), if it is one."""
    if not source_url:
        return None
    parts = urlsplit(source_url)
    host = (parts.hostname or "").lower()
    root = f"{host}{parts.path.rstrip('/').removesuffix('.git')}"
    try:
        check_module_path(root)
    except BadPath:
        return None
    return root
