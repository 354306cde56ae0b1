"""Module path → repository: the longest readable root, the mirror found by repository id."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from repodepot.accounts import Principal, operator
from repodepot.db.models import Visibility
from repodepot.exceptions import NotFound
from repodepot.goproxy.resolve import Resolver, longest_root, root_candidates
from repodepot.repositories import RepositoryRecord
from repodepot.storage import Storage

T = datetime(2026, 1, 1, tzinfo=UTC)


def record(
    repository_id: int, name: str, root: str | None, *, public: bool = True
) -> RepositoryRecord:
    return RepositoryRecord(
        id=repository_id,
        name=name,
        owner=None,
        visibility=Visibility.public if public else Visibility.private,
        description="",
        source_url=f"https://example.com/{name}",
        default_branch="main",
        size_bytes=0,
        is_empty=False,
        created_at=T,
        updated_at=T,
        fork=False,
        archived=False,
        code_host_kind=None,
        deleted_at=None,
        go_import_root=root,
        go_import_root_custom=False,
    )


class FakeRoots:
    """Repositories.by_go_roots over a list, recording the roots asked for."""

    def __init__(self, *records: RepositoryRecord) -> None:
        self.records = records
        self.asked: list[list[str]] = []

    async def by_go_roots(self, principal: Principal, roots: list[str]) -> list[RepositoryRecord]:
        self.asked.append(roots)
        return [r for r in self.records if r.go_import_root in roots]


def test_root_candidates_are_every_leading_part() -> None:
    assert root_candidates("example.com/acme/lib/sub") == [
        "example.com",
        "example.com/acme",
        "example.com/acme/lib",
        "example.com/acme/lib/sub",
    ]


def test_longest_root_is_the_most_specific() -> None:
    short = record(1, "acme", "example.com/acme")
    long = record(2, "acme/lib", "example.com/acme/lib")
    assert longest_root([short, long]) == long
    assert longest_root([long, short]) == long
    assert longest_root([]) is None


async def test_resolve_finds_the_mirror_by_id_and_the_directory_under_the_root(
    tmp_path: Path,
) -> None:
    storage = Storage(tmp_path)
    lib = record(42, "acme/lib", "example.com/acme/lib")
    storage.path(42).mkdir(parents=True)
    roots = FakeRoots(record(7, "acme", "example.com/acme"), lib)
    resolver = Resolver(repositories=roots, storage=storage)

    module = await resolver.resolve(operator(), "example.com/acme/lib/sub/tool/v2")

    assert roots.asked == [root_candidates("example.com/acme/lib/sub/tool")]
    assert module.repository_id == 42
    assert module.repo_name == "acme/lib"
    assert module.git_dir == storage.path(42)
    assert (module.root, module.code_dir, module.path_major) == (
        "example.com/acme/lib",
        "sub/tool",
        "/v2",
    )
    assert module.tag_prefix == "sub/tool/"
    assert module.source_url == "https://example.com/acme/lib"
    assert module.public


async def test_a_mirror_under_the_name_alone_is_not_cloned(tmp_path: Path) -> None:
    storage = Storage(tmp_path)
    (storage.repos_dir / "acme/lib.git").mkdir(parents=True)  # the layout before ids
    resolver = Resolver(
        repositories=FakeRoots(record(42, "acme/lib", "example.com/acme/lib", public=False)),
        storage=storage,
    )
    with pytest.raises(NotFound, match="'acme/lib' is not cloned yet"):
        await resolver.resolve(operator(), "example.com/acme/lib")


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("example.org/other", "no repository here serves module example.org/other"),
        ("example.com/acme/lib/v1", "invalid major version suffix /v1"),
        ("example.com/a b", "malformed module path 'example.com/a b': invalid element 'a b'"),
    ],
)
async def test_unserved_or_malformed_paths_are_not_found(
    tmp_path: Path, path: str, words: str
) -> None:
    resolver = Resolver(
        repositories=FakeRoots(record(1, "acme/lib", "example.com/acme/lib")),
        storage=Storage(tmp_path),
    )
    with pytest.raises(NotFound, match=re.escape(words)):
        await resolver.resolve(operator(), path)


async def test_the_web_side_chooses_the_repository_from_the_database_alone(
    tmp_path: Path,
) -> None:
    # Nothing on this disk: the mirror is on another storage node.
    resolver = Resolver(
        repositories=FakeRoots(
            record(7, "acme", "example.com/acme"), record(42, "acme/lib", "example.com/acme/lib")
        ),
        storage=Storage(tmp_path),
    )
    chosen = await resolver.repository(operator(), "example.com/acme/lib/sub")
    assert chosen.id == 42
    with pytest.raises(NotFound, match=re.escape("no repository here serves module example.org/x")):
        await resolver.repository(operator(), "example.org/x")


async def test_a_node_serves_the_module_only_from_the_repository_the_web_side_chose(
    tmp_path: Path,
) -> None:
    storage = Storage(tmp_path)
    for key in (7, 42, 9):
        storage.path(key).mkdir(parents=True)
    private = record(42, "acme/lib", "example.com/acme/lib", public=False)
    roots = FakeRoots(
        record(7, "acme", "example.com/acme"), private, record(9, "x", "example.org/x")
    )
    resolver = Resolver(repositories=roots, storage=storage)

    # The web side decided access: a private repository resolves here without a caller.
    module = await resolver.resolve_in("example.com/acme/lib/sub", 42)
    assert (module.repository_id, module.code_dir, module.public) == (42, "sub", False)
    # The shorter root's repository serves the path too, when it is the one chosen.
    assert (await resolver.resolve_in("example.com/acme/lib/sub", 7)).repository_id == 7
    # A repository whose root does not serve the path, or none: not found, never another.
    for other in (9, 999):
        with pytest.raises(NotFound, match="no repository here serves module"):
            await resolver.resolve_in("example.com/acme/lib/sub", other)
    storage.path(42).rmdir()
    with pytest.raises(NotFound, match="'acme/lib' is not cloned yet"):
        await resolver.resolve_in("example.com/acme/lib/sub", 42)
