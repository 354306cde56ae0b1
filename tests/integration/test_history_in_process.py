"""HEAD's log and the dated tags read in-process answer exactly what git answers.

Each repository is built with real git (fast-import for chosen dates, offsets and
messages; plumbing for odd objects) and compared with `git.history` run through a
GitRunner: the same entries, the same order, the same offsets. What the reader leaves
to git (shallow, replace refs, a missing object, a hostile HEAD) answers None, and
`History` then answers what git does.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from repodepot.git import history, walk
from repodepot.git.history import DatedTag, LogEntry
from repodepot.git.packs import ObjectStore
from repodepot.git.runner import GitRunner
from repodepot.gitserver.history import History
from repodepot.gitserver.reads import Reads
from repodepot.settings import process_path
from tests.support.repogen import HERMETIC

T0 = 1_700_000_000
IDENTITY = {
    "GIT_AUTHOR_NAME": "Tagger",
    "GIT_AUTHOR_EMAIL": "tagger@example.com",
    "GIT_COMMITTER_NAME": "Tagger",
    "GIT_COMMITTER_EMAIL": "tagger@example.com",
    "GIT_COMMITTER_DATE": f"{T0 + 500_000} +0530",
}


@dataclass(kw_only=True)
class Commit:
    mark: int
    message: bytes = b"a commit\n"
    parents: tuple[int, ...] = ()
    when: int = T0
    tz: str = "+0000"
    author: str = "Ada Lovelace <ada@example.com>"
    committer: str = "Committer <committer@example.com>"


@dataclass
class Repo:
    """A bare repository built by fast-import and plumbing; marks name its commits."""

    path: Path
    shas: dict[int, str] = field(default_factory=dict)

    def git(self, *args: str, data: bytes = b"", env: dict[str, str] | None = None) -> str:
        full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **HERMETIC, **IDENTITY}
        result = subprocess.run(
            ["git", f"--git-dir={self.path}", *args],
            input=data,
            env=full | (env or {}),
            check=True,
            capture_output=True,
        )
        return result.stdout.decode().strip()

    def commits(self, commits: list[Commit], branch: str = "main") -> None:
        """Import `commits` (parents before children) onto `branch`; its tip is the last."""
        stream = b"".join(_fast_import(commit, branch) for commit in commits)
        marks = self.path.parent / f"{self.path.name}.marks"
        self.git(
            "fast-import",
            "--quiet",
            "--done",
            f"--import-marks-if-exists={marks}",
            f"--export-marks={marks}",
            data=stream + b"done\n",
        )
        for line in marks.read_text().splitlines():
            mark, sha = line.split()
            self.shas[int(mark.lstrip(":"))] = sha

    def tag(self, name: str, target: str, message: str | None = None) -> None:
        """A lightweight tag (no message) or an annotated one of `target`."""
        if message is None:
            self.git("update-ref", f"refs/tags/{name}", target)
        else:
            self.git("tag", "-a", "-m", message, name, target)

    def object(self, kind: str, body: bytes) -> str:
        """An object written as is (no checks), such as a tag without a tagger."""
        return self.git("hash-object", "-t", kind, "-w", "--literally", "--stdin", data=body)


def _fast_import(commit: Commit, branch: str) -> bytes:
    message = commit.message
    lines = [
        f"commit refs/heads/{branch}",
        f"mark :{commit.mark}",
        f"author {commit.author} {commit.when} {commit.tz}",
        f"committer {commit.committer} {commit.when} {commit.tz}",
    ]
    head = "\n".join(lines).encode() + b"\ndata %d\n%s\n" % (len(message), message)
    parents = [f"from :{commit.parents[0]}"] if commit.parents else []
    parents += [f"merge :{mark}" for mark in commit.parents[1:]]
    if not commit.parents:
        head = b"reset refs/heads/%s\n" % branch.encode() + head
    change = f"M 100644 inline f{commit.mark}\ndata 2\n{commit.mark % 10}\n"
    return head + "".join(f"{line}\n" for line in parents).encode() + change.encode() + b"\n"


@pytest.fixture
def runner(tmp_path: Path) -> GitRunner:
    return GitRunner(runtime_dir=tmp_path / "run", path=process_path())


@pytest.fixture
def store() -> Iterator[ObjectStore]:
    objects = ObjectStore()
    yield objects
    objects.close()


def new_repo(path: Path) -> Repo:
    path.mkdir(parents=True)
    repo = Repo(path)
    repo.git("init", "-q", "--bare", "--initial-branch=main", str(path))
    return repo


def shown(entries: list[LogEntry] | list[DatedTag] | None) -> list[tuple[str, ...]] | None:
    """Every field as text: datetimes compare by instant, their offsets must match too."""
    if entries is None:
        return None
    rows: list[tuple[str, ...]] = []
    for entry in entries:
        if isinstance(entry, LogEntry):
            rows.append(
                (
                    entry.sha,
                    entry.author_name,
                    entry.author_email,
                    entry.committed_at.isoformat(),
                    entry.subject,
                )
            )
        else:
            when = entry.tagged_at.isoformat() if entry.tagged_at else ""
            rows.append((entry.name, entry.commit, when, entry.subject))
    return rows


async def assert_log_as_git(
    store: ObjectStore, runner: GitRunner, repo: Path, limit: int = 50
) -> list[LogEntry]:
    expected = await history.log(runner, repo, "HEAD", limit=limit)
    found = walk.log_head(store, repo, limit)
    assert shown(found) == shown(expected)
    assert found is not None
    return found


async def assert_tags_as_git(store: ObjectStore, runner: GitRunner, repo: Path) -> list[DatedTag]:
    expected = await history.dated_tags(runner, repo)
    found = walk.dated_tags(store, repo)
    assert shown(found) == shown(expected)
    assert found is not None
    return found


MESSAGES = [
    b"plain subject",
    b"two lines\nof one paragraph\n\nand a body",
    b"crlf subject\r\nwith a second line\r\n\r\nbody\r\n",
    b"\n\n  \nstarts with blank lines\n",
    b"trailing spaces   \n\tand a tab-led line \t\n\nbody",
    b"  leading spaces kept\n \nafter a blank-looking line",
    "Ünïcødé ✓ subject".encode(),
    b"",
    b"ends without a newline",
]


def crafted(path: Path) -> Repo:
    """Merges, equal timestamps, a parent newer than its child, odd offsets and messages."""
    repo = new_repo(path)
    commits = [
        Commit(mark=1, when=T0, message=MESSAGES[0]),
        Commit(mark=2, parents=(1,), when=T0 + 100, message=MESSAGES[1], tz="-0730"),
        Commit(mark=3, parents=(1,), when=T0 + 100, message=MESSAGES[2], tz="+1345"),
        Commit(mark=4, parents=(2,), when=T0 + 100, message=MESSAGES[3]),
        Commit(mark=5, parents=(3,), when=T0 + 9_000, message=MESSAGES[4]),  # skewed
        Commit(mark=6, parents=(4, 5), when=T0 + 200, message=MESSAGES[5], tz="-0000"),
        Commit(
            mark=7,
            parents=(6,),
            when=T0 + 200,
            message=MESSAGES[6],
            author="Zoë Ångström <zoë@exämple.com>",
        ),
        Commit(mark=8, parents=(7, 2, 3), when=T0 + 150, message=MESSAGES[7]),
        Commit(mark=9, parents=(8,), when=T0 + 300, message=MESSAGES[8], tz="+0045"),
    ]
    repo.commits(commits)
    return repo


async def test_the_log_of_head_is_git_logs_through_merges_ties_and_clock_skew(
    tmp_path: Path, store: ObjectStore, runner: GitRunner
) -> None:
    repo = crafted(tmp_path / "r.git")

    entries = await assert_log_as_git(store, runner, repo.path)
    assert len(entries) == 9
    for limit in range(1, 10):
        await assert_log_as_git(store, runner, repo.path, limit)


async def test_commit_headers_git_adds_are_skipped_and_subjects_read_as_git_reads_them(
    tmp_path: Path, store: ObjectStore, runner: GitRunner
) -> None:
    repo = crafted(tmp_path / "r.git")
    tree = repo.git("rev-parse", "main^{tree}")
    tip = repo.shas[9]
    signature = b"gpgsig -----BEGIN PGP SIGNATURE-----\n \n abc\n -----END PGP SIGNATURE-----\n"
    body = (
        b"tree %s\nparent %s\nauthor A <a@example.com> %d +0100\n"
        b"committer C <c@example.com> %d +0100\nencoding UTF-8\n%s\n\n"
        b"signed and encoded\r\n-----BEGIN PGP SIGNATURE-----\n"
        % (tree.encode(), tip.encode(), T0 + 400, T0 + 400, signature.rstrip(b"\n"))
    )
    repo.git("update-ref", "refs/heads/main", repo.object("commit", body))

    entries = await assert_log_as_git(store, runner, repo.path)
    assert entries[0].subject == "signed and encoded -----BEGIN PGP SIGNATURE-----"


async def test_every_kind_of_tag_is_dated_and_peeled_as_git_does(
    tmp_path: Path, store: ObjectStore, runner: GitRunner
) -> None:
    repo = crafted(tmp_path / "r.git")
    sha = repo.shas
    repo.tag("light", sha[2])
    repo.tag("light-crlf", sha[3])
    repo.tag("v1.0", sha[4], "Release 1.0\n\nWith notes")
    repo.tag("nested", "v1.0", "A tag of a tag")
    repo.tag("deeper/nested-twice", "nested", "Twice over")
    repo.tag("tree", repo.git("rev-parse", "main^{tree}"))
    repo.tag("annotated-tree", repo.git("rev-parse", "main^{tree}"), "a tree")
    repo.tag("blob", repo.git("rev-parse", "main:f1"))
    repo.tag("tie-b", sha[5], "same date")
    repo.tag("tie-a", sha[6], "same date")
    signed = (
        b"object %s\ntype commit\ntag signed\ntagger T <t@example.com> %d -0200\n\n"
        b"Signed release  \r\nsecond line\n-----BEGIN PGP SIGNATURE-----\n\nabc\n"
        b"-----END PGP SIGNATURE-----\n" % (sha[7].encode(), T0 + 1)
    )
    repo.tag("signed", repo.object("tag", signed))
    ssh = b"object %s\ntype commit\ntag ssh\ntagger T <t@example.com> %d +0000\n\n" % (
        sha[8].encode(),
        T0 + 1,
    )
    ssh += b"\n\nssh signed\r\n\r\nbody\n-----BEGIN SSH SIGNATURE-----\nxyz\n"
    repo.tag("ssh", repo.object("tag", ssh))

    tags = await assert_tags_as_git(store, runner, repo.path)
    names = [tag.name for tag in tags]
    assert "tree" not in names and "blob" not in names and "annotated-tree" not in names
    assert {"nested", "deeper/nested-twice", "signed", "ssh", "light"} <= set(names)


async def test_loose_and_packed_tags_mix_and_a_loose_one_wins_over_its_packed_name(
    tmp_path: Path, store: ObjectStore, runner: GitRunner
) -> None:
    repo = crafted(tmp_path / "r.git")
    repo.tag("packed", repo.shas[2])
    repo.tag("moved", repo.shas[3], "first place")
    repo.git("pack-refs", "--all")
    repo.tag("loose", repo.shas[4])
    repo.git("update-ref", "refs/tags/moved", repo.shas[5])  # loose now, still packed too

    tags = await assert_tags_as_git(store, runner, repo.path)
    assert {tag.name: tag.commit for tag in tags}["moved"] == repo.shas[5]
    assert "packed" in (repo.path / "packed-refs").read_text()
    assert (await assert_log_as_git(store, runner, repo.path))[0].sha == repo.shas[9]


async def test_a_detached_head_a_packed_branch_and_packs_with_loose_objects(
    tmp_path: Path, store: ObjectStore, runner: GitRunner
) -> None:
    repo = crafted(tmp_path / "r.git")
    repo.git("repack", "-a", "-d", "-q")
    repo.git("pack-refs", "--all")
    repo.commits([Commit(mark=10, parents=(9,), when=T0 + 400, message=b"loose on top")])
    assert (repo.path / "objects" / repo.shas[10][:2]).is_dir()  # loose, beside the pack

    assert (await assert_log_as_git(store, runner, repo.path))[0].sha == repo.shas[10]
    (repo.path / "HEAD").write_text(repo.shas[6] + "\n")
    assert (await assert_log_as_git(store, runner, repo.path))[0].sha == repo.shas[6]


async def test_an_empty_repository_has_no_tags_and_leaves_its_unborn_head_to_git(
    tmp_path: Path, store: ObjectStore, runner: GitRunner
) -> None:
    repo = new_repo(tmp_path / "r.git")

    assert walk.log_head(store, repo.path, 20) is None
    assert walk.dated_tags(store, repo.path) == [] == await history.dated_tags(runner, repo.path)


@st.composite
def dags(draw: st.DrawFn) -> list[Commit]:
    """A random small history: each commit on one to three earlier ones, dates in any order."""
    count = draw(st.integers(min_value=1, max_value=25))
    commits = []
    for mark in range(1, count + 1):
        earlier = list(range(1, mark))
        parents = (
            draw(st.lists(st.sampled_from(earlier), max_size=3, unique=True)) if earlier else []
        )
        if earlier and not parents:
            parents = [mark - 1]  # one history: the tip reaches most of it
        when = T0 + draw(st.integers(min_value=0, max_value=6)) * 60  # many ties
        tz = draw(st.sampled_from(["+0000", "-0500", "+0930"]))
        message = draw(st.sampled_from(MESSAGES))
        commits.append(Commit(mark=mark, parents=tuple(parents), when=when, tz=tz, message=message))
    return commits


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(commits=dags(), limit=st.integers(min_value=1, max_value=30))
def test_random_histories_log_in_git_logs_order(
    tmp_path_factory: pytest.TempPathFactory, commits: list[Commit], limit: int
) -> None:
    base = tmp_path_factory.mktemp("dag")
    repo = new_repo(base / "r.git")
    repo.commits(commits)
    runner = GitRunner(runtime_dir=base / "run", path=process_path())
    objects = ObjectStore()
    try:
        asyncio.run(assert_log_as_git(objects, runner, repo.path, limit))
    finally:
        objects.close()


def fall_back_shallow(repo: Repo) -> None:
    (repo.path / "shallow").write_text(repo.shas[6] + "\n")


def fall_back_replaced(repo: Repo) -> None:
    repo.git("replace", repo.shas[8], repo.shas[7])


def fall_back_missing_object(repo: Repo) -> None:
    sha = repo.shas[5]
    (repo.path / "objects" / sha[:2] / sha[2:]).unlink()


def fall_back_hostile_head(repo: Repo) -> None:
    (repo.path / "HEAD").write_text("ref: ../../etc/passwd\n")


def fall_back_dotted_head(repo: Repo) -> None:
    (repo.path / "HEAD").write_text("ref: refs/heads/../../x\n")


def fall_back_foreign_encoding(repo: Repo) -> None:
    tree = repo.git("rev-parse", "main^{tree}")
    body = (
        b"tree %s\nparent %s\nauthor A <a@example.com> %d +0000\n"
        b"committer A <a@example.com> %d +0000\nencoding ISO-8859-1\n\nd\xe9j\xe0 vu\n"
        % (tree.encode(), repo.shas[9].encode(), T0, T0)
    )
    repo.git("update-ref", "refs/heads/main", repo.object("commit", body))


FALLBACKS = [
    fall_back_shallow,
    fall_back_replaced,
    fall_back_missing_object,
    fall_back_hostile_head,
    fall_back_dotted_head,
    fall_back_foreign_encoding,
]


class OneMirror:
    def __init__(self, path: Path) -> None:
        self.path = path

    def mirror_dir(self, repository_id: int, name: str) -> Path:
        return self.path


@pytest.mark.parametrize("spoil", FALLBACKS, ids=lambda spoil: spoil.__name__)
async def test_what_the_reader_leaves_to_git_is_none_and_history_answers_as_git(
    tmp_path: Path, store: ObjectStore, runner: GitRunner, spoil: Callable[[Repo], None]
) -> None:
    repo = crafted(tmp_path / "r.git")  # every object loose: one can be deleted
    repo.tag("v1", repo.shas[9], "tagged")
    spoil(repo)

    assert walk.log_head(store, repo.path, 20) is None
    answers = []
    for in_process in (True, False):
        pages = History(git=runner, reads=cast(Reads, OneMirror(repo.path)), in_process=in_process)
        try:
            answers.append(shown(await pages.commits(1, "r", None, 20)))
        except Exception as error:  # git refuses: so must History
            answers.append([(type(error).__name__,)])
        finally:
            pages.close()
    assert answers[0] == answers[1]


async def test_tags_git_must_read_are_none(
    tmp_path: Path, store: ObjectStore, runner: GitRunner
) -> None:
    repo = crafted(tmp_path / "r.git")
    untagged = b"object %s\ntype commit\ntag bare\n\nno tagger\n" % repo.shas[9].encode()
    repo.tag("bare", repo.object("tag", untagged))
    assert walk.dated_tags(store, repo.path) is None

    repo.git("tag", "-d", "bare")
    repo.tag("gone", repo.shas[5])
    fall_back_missing_object(repo)
    assert walk.dated_tags(store, repo.path) is None

    repo.git("tag", "-d", "gone")
    assert walk.dated_tags(store, repo.path) == []
    (repo.path / "refs" / "tags" / "odd").write_text("ref: refs/heads/main\n")
    assert walk.dated_tags(store, repo.path) is None


async def test_history_starts_no_git_for_heads_log_and_tags_but_asks_git_for_a_named_ref(
    tmp_path: Path,
) -> None:
    repo = crafted(tmp_path / "r.git")
    repo.tag("v1", repo.shas[4], "tagged")
    started: Counter[str] = Counter()

    def observe(command: str, outcome: str, _seconds: float) -> None:
        if outcome != "started":
            started[command] += 1

    runner = GitRunner(runtime_dir=tmp_path / "run", path=process_path(), observer=observe)
    pages = History(git=runner, reads=cast(Reads, OneMirror(repo.path)))
    try:
        log = await pages.commits(1, "r", None, 20)
        tags = await pages.tags(1, "r")
        assert started == Counter()
        assert shown(log) == shown(await history.log(runner, repo.path, "HEAD", limit=20))
        assert shown(tags) == shown(await history.dated_tags(runner, repo.path))
        started.clear()
        assert (await pages.commits(1, "r", "v1", 20))[0].sha == repo.shas[4]
        assert started["log"] == 1
    finally:
        pages.close()
