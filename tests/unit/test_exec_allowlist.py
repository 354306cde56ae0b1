"""exec's allowlist: full spellings only, no bundles, no file names, real revisions."""

from __future__ import annotations

import pytest

from repodepot.exceptions import InvalidInput
from repodepot.gitserver.allowlist import MAX_ARG_BYTES, MAX_ARGS, VISIBLE_REFS, check_exec

# (arguments, the argument the refusal names). git reads every long option below as the
# dangerous one it abbreviates, and every bundle as the short options it is made of.
REFUSED = [
    # Abbreviations of options that read or compare server files.
    (["grep", "--no-ind", "-e", "x", "--", "."], "args.1"),
    (["grep", "--no-inde", "-e", "x"], "args.1"),
    (["grep", "--no-index", "-e", "x"], "args.1"),
    (["diff", "--no-i", "a", "b"], "args.1"),
    (["diff", "--no-index", "/etc/passwd", "/etc/hosts"], "args.1"),
    (["archive", "--add-f=data/secret_key", "HEAD"], "args.1"),
    (["archive", "--add-file=data/secret_key", "HEAD"], "args.1"),
    (["archive", "--add-fi", "data/secret_key", "HEAD"], "args.1"),
    (["archive", "--add-virtual-file=x:y", "HEAD"], "args.1"),
    (["blame", "--ignore-revs-f=data/secret_key", "HEAD", "--", "f"], "args.1"),
    (["blame", "--ignore-revs-file", "data/secret_key", "HEAD", "--", "f"], "args.1"),
    (["blame", "--cont=data/secret_key", "HEAD", "--", "f"], "args.1"),
    (["blame", "--contents", "/etc/passwd", "HEAD", "--", "f"], "args.1"),
    (["grep", "--fil=data/secret_key", "HEAD"], "args.1"),
    (["grep", "--file=/etc/passwd", "HEAD"], "args.1"),
    (["grep", "--exclude-f=x", "-e", "x"], "args.1"),
    (["grep", "--untr", "-e", "x"], "args.1"),
    # Abbreviations of options that run programs or write files.
    (["grep", "--open-f=touch /tmp/PWNED", "-e", "x"], "args.1"),
    (["grep", "--open-files-in=sh", "-e", "x"], "args.1"),
    (["grep", "--open-files-in-pager", "-e", "x"], "args.1"),
    (["log", "--ou=f"], "args.1"),
    (["log", "--outp=f"], "args.1"),
    (["diff", "--output", "/tmp/x", "HEAD", "HEAD~1"], "args.1"),
    (["archive", "--ex=sh", "HEAD"], "args.1"),
    (["archive", "--exe=sh", "HEAD"], "args.1"),
    (["archive", "--exec=/bin/sh", "HEAD"], "args.1"),
    (["archive", "--rem=http://127.0.0.1/x", "HEAD"], "args.1"),
    (["archive", "--remote=http://127.0.0.1/x", "HEAD"], "args.1"),
    (["log", "--upl=sh"], "args.1"),
    (["log", "--upload-pack=sh"], "args.1"),
    (["log", "--ext-d", "-p"], "args.1"),
    (["show", "--textc", "HEAD:f"], "args.1"),
    (["cat-file", "--filters", "HEAD:f"], "args.1"),
    (["cat-file", "--filt", "HEAD:f"], "args.1"),
    (["cat-file", "--textconv", "HEAD:f"], "args.1"),
    (["cat-file", "--path=f", "HEAD"], "args.1"),
    (["log", "--config-env=core.pager=X"], "args.1"),
    # Short options that name files or run programs, alone and bundled.
    (["grep", "-f", "/etc/passwd", "HEAD"], "args.1"),
    (["grep", "-f/etc/passwd", "HEAD"], "args.1"),
    (["grep", "-if/etc/hostname", "HEAD"], "args.1"),
    (["grep", "-nf", "/etc/hostname", "HEAD"], "args.1"),
    (["grep", "-Of", "-e", "x"], "args.1"),
    (["grep", "-O", "-e", "x"], "args.1"),
    (["grep", "-Ocat", "-e", "x"], "args.1"),
    (["grep", "-in", "-e", "x"], "args.1"),
    (["archive", "-o", "/tmp/x.tar", "HEAD"], "args.1"),
    (["archive", "-o/tmp/x.tar", "HEAD"], "args.1"),
    (["archive", "-9o/tmp/x.tar", "HEAD"], "args.1"),
    (["blame", "-S", "data/secret_key", "HEAD", "--", "f"], "args.1"),
    (["blame", "-Sdata/secret_key", "HEAD", "--", "f"], "args.1"),
    (["log", "-c", "core.pager=sh"], "args.1"),
    (["log", "-pc"], "args.1"),
    # Help, and options that print or name server paths.
    (["log", "--help"], "args.1"),
    (["log", "--he"], "args.1"),
    (["grep", "-h", "-e", "x"], "args.1"),
    (["rev-parse", "-h"], "args.1"),
    (["rev-parse", "--absolute-git-dir"], "args.1"),
    (["rev-parse", "--git-dir"], "args.1"),
    (["rev-parse", "--git-common-dir"], "args.1"),
    (["rev-parse", "--show-toplevel"], "args.1"),
    (["rev-parse", "--git-path", "config"], "args.1"),
    (["rev-parse", "--resolve-git-dir", "/etc"], "args.1"),
    (["rev-parse", "--abs"], "args.1"),
    (["log", "--git-dir=/etc"], "args.1"),
    (["log", "--work-tree=/"], "args.1"),
    # Values of the wrong shape, values where none is taken, missing values.
    (["archive", "--format=tar.xz", "HEAD"], "args.1"),
    (["archive", "--format", "../../x", "HEAD"], "args.2"),
    (["archive", "--prefix=../", "HEAD"], "args.1"),
    (["archive", "--prefix=/abs/", "HEAD"], "args.1"),
    (["log", "-n", "--output=/tmp/x"], "args.2"),
    (["log", "-n", "five"], "args.2"),
    (["log", "-nfive"], "args.1"),
    (["log", "-n"], "args.1"),
    (["log", "--oneline=yes"], "args.1"),
    (["log", "--format"], "args.1"),
    (["blame", "-L", "--contents", "HEAD", "--", "f"], "args.2"),
    (["for-each-ref", "--points-at", "--help"], "args.2"),
    (["grep", "-A", "-f", "-e", "x"], "args.2"),
    # Revisions and paths that are not inside the repository.
    (["diff", "/etc/passwd", "/etc/hosts"], "args.1"),
    (["diff", "../../data/secret_key", "HEAD"], "args.1"),
    (["show", "/etc/passwd"], "args.1"),
    (["log", "-"], "args.1"),
    (["grep", "-e", "x", "HEAD", "--", "../secret_key"], "args.5"),
    (["grep", "-e", "x", "HEAD", "--", "/etc/passwd"], "args.5"),
    (["grep", "-e", "x", "HEAD", "--", "a/../../b"], "args.5"),
    (["grep", "-e", "x", "HEAD", "--", ":(top)x"], "args.5"),
    (["grep", "-e", "x", "HEAD", "--", ""], "args.5"),
    (["ls-tree", "HEAD", "--", "d/.."], "args.3"),
    (["cat-file", "-p", "HEAD", "--", "f"], "args.3"),
    (["rev-parse", "HEAD", "--", "f"], "args.2"),
    (["log", "HEAD\n--output=/tmp/x"], "args.1"),
    (["log", "HEAD\x00"], "args.1"),
    # Widths git fills in memory before writing a byte (a billion columns: gigabytes),
    # programs a format starts, a server path a format prints.
    (["log", "-n", "1", "--date=format:%999999999Y", "--format=%ad%ad"], "args.3"),
    (["show", "--date=format:%_99999d", "HEAD"], "args.1"),
    (["blame", "--date=format:%99999Y", "HEAD", "--", "f"], "args.1"),
    (["log", "--date=frobnicate"], "args.1"),
    (["for-each-ref", "--format=%(align:999999999)%(refname)%(end)"], "args.1"),
    (["for-each-ref", "--format", "%(align:width=123456)%(refname)%(end)"], "args.2"),
    (["for-each-ref", "--format=%(worktreepath)"], "args.1"),
    (["for-each-ref", "--format=%(describe)"], "args.1"),
    (["log", "--format=%G?"], "args.1"),
    (["log", "--pretty=format:%GS"], "args.1"),
    (["show", "--format=%(describe:tags)", "HEAD"], "args.1"),
    # Not a subcommand exec runs, or nothing at all.
    (["push", "origin"], "args.0"),
    (["config", "core.hooksPath", "/tmp"], "args.0"),
    (["-c", "core.pager=sh", "log"], "args.0"),
    (["--git-dir=/etc", "log"], "args.0"),
    ([], "args"),
    (["grep"], "args"),
]


@pytest.mark.parametrize(("args", "field"), REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_refused_arguments_name_the_argument_and_why(args: list[str], field: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_exec(args)
    assert refused.value.field == field
    if field != "args":
        index = int(field.removeprefix("args."))
        assert f"args[{index}]" in refused.value.message or index == 0


def test_there_are_sixty_refusals_at_least() -> None:
    assert len(REFUSED) >= 60


@pytest.mark.parametrize(
    ("arg", "words"),
    [
        ("--no-ind", "abbreviates --no-index"),
        ("--open-f=touch /tmp/PWNED", "abbreviates --open-files-in-pager"),
        ("-if/etc/hostname", "bundles short options"),
        ("--help", "help"),
        ("--bogus", "spelled in full"),
    ],
)
def test_refusals_say_why(arg: str, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        check_exec(["grep", arg, "-e", "x"])


# What users run, and the command git gets: options, --end-of-options where git 2.39
# reads it, revisions, then the paths.
ALLOWED = [
    (["log", "-n", "5", "--format=%H"], ["log", "-n", "5", "--format=%H", "--end-of-options"]),
    (["log", "--oneline", "-5"], ["log", "--oneline", "-5", "--end-of-options"]),
    (["log", "-n5", "main"], ["log", "-n5", "--end-of-options", "main"]),
    (
        ["log", "main~3..main", "--stat", "--", "src/a.py"],
        ["log", "--stat", "--end-of-options", "main~3..main", "--", "src/a.py"],
    ),
    (["grep", "-n", "-e", "TODO"], ["grep", "-n", "-e", "TODO", "HEAD"]),
    (["grep", "-n", "-e", "TODO", "HEAD"], ["grep", "-n", "-e", "TODO", "HEAD"]),
    (["grep", "-c", "-e", "x", "HEAD"], ["grep", "-c", "-e", "x", "HEAD"]),
    (["grep", "-e", "-x", "HEAD"], ["grep", "-e", "-x", "HEAD"]),
    (["grep", "-i", "TODO", "main"], ["grep", "-i", "TODO", "main"]),
    (
        ["grep", "-C", "2", "-e", "x", "--", "src"],
        ["grep", "-C", "2", "-e", "x", "HEAD", "--", "src"],
    ),
    (
        ["blame", "-L", "1,10", "HEAD", "--", "file"],
        ["blame", "-L", "1,10", "HEAD", "--", "file"],
    ),
    (["blame", "-L1,+5", "HEAD", "--", "f"], ["blame", "-L1,+5", "HEAD", "--", "f"]),
    (["archive", "--format=tar", "HEAD"], ["archive", "--format=tar", "--end-of-options", "HEAD"]),
    (
        ["archive", "--format", "zip", "-9", "--prefix=app/", "HEAD", "--", "src"],
        ["archive", "--format", "zip", "-9", "--prefix=app/", "--end-of-options", "HEAD", "src"],
    ),
    (
        ["diff", "A", "B", "--", "path"],
        ["diff", "--end-of-options", "A", "B", "--", "path"],
    ),
    (["diff", "--stat", "A", "B"], ["diff", "--stat", "--end-of-options", "A", "B", "--"]),
    (["show", "HEAD:file"], ["show", "--end-of-options", "HEAD:file"]),
    (
        ["show", "-s", "--format=%an", "v1.0"],
        ["show", "-s", "--format=%an", "--end-of-options", "v1.0"],
    ),
    (["rev-parse", "HEAD"], ["rev-parse", "HEAD"]),
    (["rev-parse", "--short=8", "HEAD"], ["rev-parse", "--short=8", "HEAD"]),
    (["rev-parse", "--abbrev-ref", "HEAD"], ["rev-parse", "--abbrev-ref", "HEAD"]),
    (["ls-tree", "-r", "HEAD"], ["ls-tree", "-r", "--end-of-options", "HEAD"]),
    (["ls-tree", "HEAD", "--", "d"], ["ls-tree", "--end-of-options", "HEAD", "--", "d"]),
    (["cat-file", "-p", "abc123"], ["cat-file", "-p", "--end-of-options", "abc123"]),
    (["cat-file", "blob", "HEAD:f"], ["cat-file", "--end-of-options", "blob", "HEAD:f"]),
    (
        ["for-each-ref", "--format=%(refname)"],
        ["for-each-ref", "--format=%(refname)", "--end-of-options", *VISIBLE_REFS],
    ),
    (
        ["for-each-ref", "--sort=-committerdate", "--count", "3", "refs/tags"],
        ["for-each-ref", "--sort=-committerdate", "--count", "3", "--end-of-options", "refs/tags"],
    ),
    (["rev-list", "--count", "HEAD"], ["rev-list", "--count", "--end-of-options", "HEAD"]),
    (["log", "--end-of-options", "HEAD"], ["log", "--end-of-options", "HEAD"]),
    (["log", "--date=iso-strict"], ["log", "--date=iso-strict", "--end-of-options"]),
    (
        ["log", "--date=format:%Y-%m-%d %H:%M", "--format=%ad %s"],
        ["log", "--date=format:%Y-%m-%d %H:%M", "--format=%ad %s", "--end-of-options"],
    ),
    (
        ["for-each-ref", "--format=%(align:40)%(refname:short)%(end) %(objectname:short)"],
        [
            "for-each-ref",
            "--format=%(align:40)%(refname:short)%(end) %(objectname:short)",
            "--end-of-options",
            *VISIBLE_REFS,
        ],
    ),
]


@pytest.mark.parametrize(("args", "built"), ALLOWED, ids=[" ".join(a) for a, _ in ALLOWED])
def test_what_users_run_is_allowed(args: list[str], built: list[str]) -> None:
    assert check_exec(args) == built


def test_the_argument_list_is_bounded() -> None:
    check_exec(["log", *["--oneline"] * (MAX_ARGS - 1)])
    with pytest.raises(InvalidInput, match=f"at most {MAX_ARGS} arguments") as many:
        check_exec(["log", *["--oneline"] * MAX_ARGS])
    assert many.value.field == "args"

    check_exec(["log", "--format=" + "x" * (MAX_ARG_BYTES - len("--format="))])
    with pytest.raises(InvalidInput, match="longer than") as long:
        check_exec(["log", "-n", "1", "--grep=" + "x" * (5 << 20)])
    assert long.value.field == "args.3"
    assert len(long.value.message) < 200  # the argument is not echoed whole

    with pytest.raises(InvalidInput, match="not valid Unicode") as surrogate:
        check_exec(["grep", "-e", "\ud800", "HEAD"])
    assert surrogate.value.field == "args.2"
