"""Which git commands and options `exec` runs: a positive list, matched on full spellings.

git accepts unambiguous abbreviations of long options (`--no-ind` is `--no-index`,
`--open-f=CMD` is `--open-files-in-pager=CMD`) and bundled short options (`-if FILE`
is `-i -f FILE`), so a list of refused spellings always misses one. Here every
argument must be an option listed for its subcommand, spelled exactly, with a value
of the listed shape; a revision, which never starts with `-` or `/` nor climbs with
`..`; or, after `--`, a path inside the repository. The command git gets is rebuilt
from what was checked: options, `--end-of-options` where this git understands it,
revisions, then `--` and the paths.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from repodepot.exceptions import InvalidInput
from repodepot.git.revisions import names_hidden

MAX_ARGS = 64
MAX_ARG_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Value:
    """The value an option takes: its shape, and the forms git reads it in.

    `separate`: `--opt VALUE` and `-x VALUE` as well as `--opt=VALUE` and `-xVALUE` (only
    for options whose value git requires, so it always takes the next argument).
    `optional`: the option may come alone; a value only attached. `leading_dash`: a
    separate value may start with `-` (git's `-e -x` is the pattern `-x`).
    """

    pattern: re.Pattern[str]
    what: str
    separate: bool = False
    optional: bool = False
    leading_dash: bool = False

    def alone(self) -> Value:
        """The same value, optional."""
        return Value(self.pattern, self.what, optional=True)

    def next_arg(self, *, leading_dash: bool = False) -> Value:
        """The same value, also accepted as the next argument."""
        return Value(self.pattern, self.what, separate=True, leading_dash=leading_dash)


def _value(pattern: str, what: str) -> Value:
    return Value(re.compile(pattern, re.ASCII | re.DOTALL), what)


HIDDEN_NAMESPACE = "refs/upstream/"
# What `for-each-ref` lists when given no pattern: the namespaces a mirror holds, not
# the hidden one.
VISIBLE_REFS = ("refs/heads/", "refs/tags/", "refs/notes/", "refs/pull/", "refs/merge-requests/")

Options = Mapping[str, Value | None]
"""Allowed options by exact spelling; None for a flag."""

_INSIDE = r"(?!(?:.*/)?\.\.(?:/|$))"  # no `..` path component
NUMBER = _value(r"\d{1,9}", "a number")
TEXT = _value(r".*", "text")
# Nothing that reaches branch status's hidden refs (`git.revisions.names_hidden`).
_VISIBLE = r"(?!(?:.*[.^!@{])?(?:refs/)?upstream(?:/|$))"
REVISION = _value(_INSIDE + _VISIBLE + r"[^-/].*", "a revision outside refs/upstream/")
PATH = _value(_INSIDE + r"[^-/:].*", "a path inside the repository")
# Formats that start no program (`%G`: gpg; `%(describe)`: git describe per commit) and
# print no server path (`%(worktreepath)`); a date's strftime conversions take no width
# and an atom no five-digit number, so git never fills a billion columns in memory.
LOG_FORMAT = _value(r"(?!.*%G)(?!.*%\(describe).*", "a format without %G or %(describe)")
REF_FORMAT = _value(
    r"(?!.*%\((?:worktreepath|describe))(?!.*%\([^)]*\d{5}).*",
    "a format without %(worktreepath), %(describe) or widths of five digits",
)
DATE = _value(
    r"(?:relative|local|default|iso|iso8601|iso-strict|iso8601-strict|rfc|rfc2822|short|raw"
    r"|human|unix)(?:-local)?|format(?:-local)?:(?:[^%]|%[-_0^#]?[A-Za-z%])*",
    "a date style, or format:STRFTIME without widths",
)
ARCHIVE_FORMAT = _value(r"tar|tar\.gz|tgz|zip", "tar, tar.gz, tgz or zip")
PREFIX = _value(_INSIDE + r"[\w.+@-][\w.+@/-]*", "a relative directory name")
STAT = _value(r"\d{1,9}(,\d{1,9}){0,2}", "WIDTH[,NAME-WIDTH[,COUNT]]")
SCORE = _value(r"\d{1,9}%?", "a similarity score")
DIFF_FILTER = _value(r"[ACDMRTUXBacdmrtuxb*]{1,20}", "diff-filter letters")
ALGORITHM = _value(r"myers|default|minimal|patience|histogram", "a diff algorithm")
WORD_DIFF = _value(r"color|plain|porcelain|none", "color, plain, porcelain or none")
DECORATE = _value(r"short|full|auto|no", "short, full, auto or no")
NO_WALK = _value(r"sorted|unsorted", "sorted or unsorted")
ABBREV_REF = _value(r"strict|loose", "strict or loose")
SORT_KEY = _value(r"-?[\w:().*=,-]{1,200}", "a sort key")
LINE_RANGE = _value(
    r"(?=.)(\d{1,9}|/[^/]{1,200}/|:[^,]{1,200})?(,([+-]?\d{1,9}|/[^/]{1,200}/))?", "a line range"
)


def _flags(names: str) -> dict[str, Value | None]:
    """Options that take no value, from a space-separated list."""
    return dict.fromkeys(names.split())


REVISION_WALK: Options = {
    **_flags(
        "--all --first-parent --merges --no-merges --reverse --date-order "
        "--topo-order --author-date-order --full-history --simplify-by-decoration "
        "--simplify-merges --ancestry-path --left-right --cherry-pick --cherry-mark "
        "--cherry --left-only --right-only --boundary --parents --children --not -i "
        "--regexp-ignore-case -E --extended-regexp -F --fixed-strings --all-match "
        "--invert-grep --remove-empty --abbrev-commit --no-abbrev-commit --oneline "
        "--no-decorate --relative-date --do-walk --no-color -z"
    ),
    "-n": NUMBER.next_arg(),
    "--max-count": NUMBER,
    "--skip": NUMBER,
    "--min-parents": NUMBER,
    "--max-parents": NUMBER,
    "--since": TEXT,
    "--after": TEXT,
    "--until": TEXT,
    "--before": TEXT,
    "--author": TEXT,
    "--committer": TEXT,
    "--grep": TEXT,
    "--format": LOG_FORMAT,
    "--pretty": LOG_FORMAT.alone(),
    "--date": DATE,
    "--abbrev": NUMBER.alone(),
    "--decorate": DECORATE.alone(),
    "--branches": REVISION.alone(),
    "--tags": REVISION.alone(),
    "--remotes": REVISION.alone(),
    "--no-walk": NO_WALK.alone(),
}

DIFF_OUTPUT: Options = {
    **_flags(
        "-p -u --patch -s --no-patch --raw --numstat --shortstat --summary "
        "--name-only --name-status --patch-with-stat --patch-with-raw --cc -w "
        "--ignore-all-space -b --ignore-space-change --ignore-space-at-eol "
        "--ignore-blank-lines --ignore-cr-at-eol --find-copies-harder --no-renames -R "
        "-D --irreversible-delete --pickaxe-all --pickaxe-regex --full-index --binary "
        "--no-prefix --histogram --patience --minimal --no-ext-diff --no-textconv "
        "--check -a --text --no-color -z"
    ),
    "--stat": STAT.alone(),
    "-U": NUMBER.alone(),
    "--unified": NUMBER.alone(),
    "-M": SCORE.alone(),
    "--find-renames": SCORE.alone(),
    "-C": SCORE.alone(),
    "--find-copies": SCORE.alone(),
    "--diff-filter": DIFF_FILTER,
    "-S": TEXT,
    "-G": TEXT,
    "--diff-algorithm": ALGORITHM,
    "--word-diff": WORD_DIFF.alone(),
    "--relative": PATH.alone(),
    "--abbrev": NUMBER.alone(),
}


@dataclass(frozen=True, slots=True)
class Command:
    """A subcommand exec allows: its options and how git wants its arguments.

    `end_of_options`: git 2.39 understands `--end-of-options` here (blame, grep and
    rev-parse do not: there a revision that is not an option is the only guard).
    `paths`: takes paths after `--`; `dashdash`: git wants that `--` (archive does not);
    `always_dashdash`: always end with `--` (diff: two arguments that are not
    revisions would otherwise make it compare files anywhere on disk, as --no-index).
    `counts`: `-NUMBER` limits the count (log, rev-list). `grep`: the first argument
    is the pattern unless `-e` gives one, and with no revision it searches HEAD.
    """

    options: Options
    end_of_options: bool = True
    paths: bool = True
    dashdash: bool = True
    always_dashdash: bool = False
    counts: bool = False
    grep: bool = False


COMMANDS: Mapping[str, Command] = {
    "log": Command(
        options={
            **REVISION_WALK,
            **DIFF_OUTPUT,
            **_flags("--graph --follow --source --use-mailmap --log-size"),
            "--no-notes": None,
        },
        counts=True,
    ),
    "show": Command(
        options={
            **DIFF_OUTPUT,
            **_flags(
                "--oneline --abbrev-commit --no-abbrev-commit --no-decorate "
                "--relative-date --no-notes"
            ),
            "--format": LOG_FORMAT,
            "--pretty": LOG_FORMAT.alone(),
            "--date": DATE,
            "--decorate": DECORATE.alone(),
        }
    ),
    "rev-list": Command(
        options={**REVISION_WALK, **_flags("--count --objects --timestamp")},
        counts=True,
    ),
    "rev-parse": Command(
        options={
            **_flags(
                "--verify -q --quiet --symbolic --symbolic-full-name --revs-only "
                "--all --is-bare-repository --is-shallow-repository"
            ),
            "--short": NUMBER.alone(),
            "--abbrev-ref": ABBREV_REF.alone(),
            "--branches": REVISION.alone(),
            "--tags": REVISION.alone(),
        },
        end_of_options=False,
        paths=False,
    ),
    "ls-tree": Command(
        options={
            **_flags(
                "-r -d -t -l --long -z --name-only --name-status --object-only "
                "--full-name --full-tree"
            ),
            "--abbrev": NUMBER.alone(),
            "--format": TEXT.next_arg(),
        }
    ),
    "cat-file": Command(options=_flags("-p -t -s -e"), paths=False),
    "diff": Command(
        options={**DIFF_OUTPUT, "--merge-base": None},
        always_dashdash=True,
    ),
    "blame": Command(
        options={
            **_flags(
                "-l -t -s -e --show-email -w -p --porcelain --line-porcelain "
                "--incremental --root --show-stats -n --show-number --show-name "
                "--reverse --first-parent --minimal --color-lines --color-by-age"
            ),
            "-L": LINE_RANGE.next_arg(),
            "-M": NUMBER.alone(),
            "-C": NUMBER.alone(),
            "--abbrev": NUMBER.alone(),
            "--date": DATE,
            "--ignore-rev": REVISION,
        },
        end_of_options=False,
    ),
    "grep": Command(
        options={
            **_flags(
                "-n --line-number -c --count -i --ignore-case -I -w --word-regexp -v "
                "--invert-match -l --files-with-matches --name-only -L "
                "--files-without-match -H --no-filename --full-name -E "
                "--extended-regexp -G --basic-regexp -F --fixed-strings -P "
                "--perl-regexp --and --or --not --all-match -o --only-matching "
                "--column --heading --break -p --show-function -W --function-context "
                "-z --null -q --quiet -a --text --no-textconv"
            ),
            "-e": TEXT.next_arg(leading_dash=True),
            "-A": NUMBER.next_arg(),
            "-B": NUMBER.next_arg(),
            "-C": NUMBER.next_arg(),
            "--after-context": NUMBER,
            "--before-context": NUMBER,
            "--context": NUMBER,
            "--max-depth": NUMBER.next_arg(),
            "-m": NUMBER,
            "--max-count": NUMBER,
        },
        end_of_options=False,
        grep=True,
    ),
    "for-each-ref": Command(
        options={
            **_flags("--ignore-case --shell --perl --python --tcl"),
            "--format": REF_FORMAT.next_arg(),
            "--sort": SORT_KEY,
            "--count": NUMBER.next_arg(),
            "--points-at": REVISION.next_arg(),
            "--merged": REVISION.alone(),
            "--no-merged": REVISION.alone(),
            "--contains": REVISION.alone(),
            "--no-contains": REVISION.alone(),
        },
        paths=False,
    ),
    "archive": Command(
        options={
            **dict.fromkeys(f"-{level}" for level in range(10)),
            "--format": ARCHIVE_FORMAT.next_arg(),
            "--prefix": PREFIX.next_arg(),
        },
        dashdash=False,
    ),
}

# Options that read or write the server's files, run programs or reach other
# repositories, by subcommand or any: named (with their abbreviations) in refusals.
DANGEROUS = {
    "--no-index": "compares any files on the server",
    "--open-files-in-pager": "runs a program",
    "--output": "writes a file",
    "--exec": "runs a program",
    "--ext-diff": "runs a program",
    "--textconv": "runs a program",
    "--filters": "runs a program",
    "--add-file": "reads a server file",
    "--add-virtual-file": "writes archive entries from argv",
    "--ignore-revs-file": "reads a server file",
    "--contents": "reads a server file",
    "--file": "reads a server file",
    "--exclude-from": "reads a server file",
    "--remote": "reaches another repository",
    "--upload-pack": "runs a program",
    "--receive-pack": "runs a program",
    "--git-dir": "names another repository or prints a server path",
    "--work-tree": "names a server directory",
    "--absolute-git-dir": "prints a server path",
    "--git-common-dir": "prints a server path",
    "--git-path": "prints a server path",
    "--show-toplevel": "prints a server path",
    "--resolve-git-dir": "prints a server path",
    "--config-env": "changes git's configuration",
    "--untracked": "reads a work tree",
    "--help": "starts a help viewer",
    "-h": "shows help, which exec does not",
    "-f": "reads a file of patterns (grep)",
    "-o": "writes a file (archive)",
    "-O": "runs a program (grep)",
    "-S": "reads a file of revisions (blame)",
    "-c": "sets git's configuration (for combined diffs, use --cc)",
}
_COUNT = re.compile(r"-[0-9]{1,9}")


def check_exec(args: list[str]) -> list[str]:
    """The command git should run for `args`, rebuilt from its checked parts.

    Raises InvalidInput naming the argument (`args.N`) and why it is refused.
    """
    if not args:
        raise InvalidInput("give a git subcommand and its arguments", field="args")
    if len(args) > MAX_ARGS:
        raise InvalidInput(f"at most {MAX_ARGS} arguments, not {len(args)}", field="args")
    for index, arg in enumerate(args):
        try:
            size = len(arg.encode())
        except UnicodeEncodeError:
            raise _refused(index, arg[:40], "is not valid Unicode text") from None
        if size > MAX_ARG_BYTES:
            raise _refused(index, arg[:40] + "...", f"is longer than {MAX_ARG_BYTES} bytes")
        if any(char < " " or char == "\x7f" for char in arg):
            raise _refused(index, arg, "has a control character")
    command = COMMANDS.get(args[0])
    if command is None:
        allowed = ", ".join(sorted(COMMANDS))
        raise InvalidInput(f"git {args[0]!r} is not allowed; use one of {allowed}", field="args.0")
    return _Arguments(args, command).rebuild()


class _Arguments:
    """The arguments of one command, sorted into options, revisions and paths."""

    def __init__(self, args: list[str], command: Command) -> None:
        self.args = args
        self.command = command
        self.options: list[str] = []
        self.positional: list[int] = []
        self.paths: list[str] = []
        self.pattern_given = False
        index = 1
        while index < len(args):
            arg = args[index]
            if arg == "--":
                self._paths(index + 1)
                break
            if arg == "--end-of-options":
                index += 1  # ours goes where git needs it
            elif arg.startswith("-") and arg != "-":
                index = self._option(index)
            else:
                self.positional.append(index)
                index += 1

    def rebuild(self) -> list[str]:
        """The checked command, in the order git reads it."""
        command = self.command
        positional = self.positional
        pattern: list[str] = []
        if command.grep and not self.pattern_given:
            if not positional:
                raise InvalidInput("git grep needs a pattern: give it with -e", field="args")
            pattern = [self.args[positional[0]]]  # any text that is not an option
            positional = positional[1:]
        revisions = [self._revision(index) for index in positional]
        if command.grep and not revisions:
            revisions = ["HEAD"]  # a mirror has no work tree: search the default branch
        if self.args[0] == "for-each-ref" and not revisions:
            revisions = list(VISIBLE_REFS)  # every ref but the hidden namespace
        built = [self.args[0], *self.options]
        if command.end_of_options:
            built.append("--end-of-options")
        built.extend([*pattern, *revisions])
        if self.paths or command.always_dashdash:
            built.extend(["--", *self.paths] if command.dashdash else self.paths)
        return built

    def _paths(self, start: int) -> None:
        if not self.command.paths:
            raise _refused(start - 1, "--", f"git {self.args[0]} takes no paths")
        for index in range(start, len(self.args)):
            path = self.args[index]
            if not PATH.pattern.fullmatch(path):
                raise _refused(index, path, "is not a path inside the repository " + _why(path))
            self.paths.append(path)

    def _revision(self, index: int) -> str:
        arg = self.args[index]
        if not REVISION.pattern.fullmatch(arg):
            raise _refused(index, arg, "is not a revision " + _why(arg))
        return arg

    def _option(self, index: int) -> int:
        arg = self.args[index]
        options = self.command.options
        if arg.startswith("--"):
            name, equals, attached = arg.partition("=")
            if name not in options:
                raise _refused(index, arg, _unknown(self.args[0], name))
            value = attached if equals else None
        elif self.command.counts and _COUNT.fullmatch(arg):
            self.options.append(arg)  # -5: the last five
            return index + 1
        else:
            name, rest = arg[:2], arg[2:]
            if name not in options:
                raise _refused(index, arg, _unknown(self.args[0], name))
            value = rest or None
            if rest and options[name] is None:
                raise _refused(
                    index, arg, f"bundles short options: {name} takes no value; give each alone"
                )
        spec = options[name]
        if name == "-e":
            self.pattern_given = True
        if name == "--all":
            # Every ref but branch status's hidden ones (git's --exclude applies to the
            # --all after it).
            self.options.append(f"--exclude={HIDDEN_NAMESPACE}*")
        if spec is None:
            if value is not None:
                raise _refused(index, arg, f"{name} takes no value")
            self.options.append(arg)
            return index + 1
        if value is None and not spec.optional:
            if not spec.separate:
                raise _refused(index, arg, f"{name} needs its value attached: {name}=VALUE")
            if index + 1 >= len(self.args):
                raise _refused(index, arg, f"{name} needs a value ({spec.what})")
            value = self.args[index + 1]
            if value.startswith("-") and not spec.leading_dash:
                raise _refused(index + 1, value, f"is not {spec.what} for {name}")
            self._value(index + 1, name, value, spec)
            self.options.extend([arg, value])
            return index + 2
        if value is not None:
            self._value(index, name, value, spec)
        self.options.append(arg)
        return index + 1

    def _value(self, index: int, name: str, value: str, spec: Value) -> None:
        if not spec.pattern.fullmatch(value):
            why = f"{value!r} is not {spec.what} for {name}"
            if names_hidden(value):
                why += " (it reaches refs/upstream/, branch status's refs, which are not readable)"
            raise _refused(index, self.args[index], why)


def _unknown(subcommand: str, name: str) -> str:
    if name in DANGEROUS:
        return f"is refused: it {DANGEROUS[name]}"
    feared = [option for option in DANGEROUS if name.startswith("--") and option.startswith(name)]
    if feared:
        return "abbreviates " + " or ".join(
            f"{option}, which {DANGEROUS[option]}" for option in feared
        )
    return (
        f"is not an option exec allows for git {subcommand}; options must be spelled in full "
        "and one per argument"
    )


def _why(arg: str) -> str:
    if arg.startswith("-"):
        return "(it starts with '-'; options come before it)"
    if arg.startswith("/"):
        return "(it starts with '/')"
    if arg.startswith(":"):
        return "(pathspec magic is not allowed)"
    if not arg:
        return "(it is empty)"
    if names_hidden(arg):
        return "outside refs/upstream/ (branch status's refs are not readable)"
    return "(it names a parent directory with '..')"


def _refused(index: int, arg: str, why: str) -> InvalidInput:
    return InvalidInput(f"args[{index}] {arg!r} {why}", field=f"args.{index}")
