"""What migrations need of the application's logic, frozen as it was when they were written.

Migrations never import application code: a later change to a helper must not change
what an old migration did. Each function names the version it copies.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import urlsplit

_MODULE_ELEM_CHARS = re.compile(r"[A-Za-z0-9._~-]+")
_FIRST_ELEM = re.compile(r"[a-z0-9.-]+")
_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{n}" for p in ("COM", "LPT") for n in range(1, 10)}


def default_root(source_url: str | None) -> str | None:
    """`repodepot.goproxy.versions.default_root` as of 0005: `github.com/owner/name`."""
    if not source_url:
        return None
    parts = urlsplit(source_url)
    host = (parts.hostname or "").lower()
    root = f"{host}{parts.path.rstrip('/').removesuffix('.git')}"
    return root if _is_module_path(root) else None


def _is_module_path(path: str) -> bool:
    # module.CheckPath, as `check_module_path` did at 0005.
    if not path or path.startswith("/") or path.endswith("/") or "//" in path:
        return False
    elements = path.split("/")
    first = elements[0]
    if "." not in first or first.startswith("-") or not _FIRST_ELEM.fullmatch(first):
        return False
    for element in elements:
        if element.strip(".") == "" or element.endswith(".") or element.startswith("."):
            return False
        if not _MODULE_ELEM_CHARS.fullmatch(element):
            return False
        if element.split(".", 1)[0].upper() in _RESERVED:
            return False
    major = re.search(r"/v([0-9]+)$", path)
    return major is None or not (major[1] in ("0", "1") or major[1].startswith("0"))


def mirror_relpath(repository_id: int) -> str:
    """`repodepot.storage.mirror_relpath` as of 0007: `ab/cd/{id}.git`."""
    digest = hashlib.sha256(str(repository_id).encode()).hexdigest()
    return f"{digest[:2]}/{digest[2:4]}/{repository_id}.git"
