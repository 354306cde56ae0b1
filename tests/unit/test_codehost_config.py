"""Connection configs are checked on save, and every error names its field."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from repodepot.codehosts.config import GitHubConfig, compile_pattern, dump_config, parse_config
from repodepot.codehosts.http import Pacer, next_link
from repodepot.codehosts.sources import SourceRepo, excluded, render_name
from repodepot.db.models import CodeHostKind
from repodepot.exceptions import InvalidInput


@pytest.mark.parametrize(
    ("kind", "config", "field", "words"),
    [
        (CodeHostKind.github, {}, "config.url", "Field required"),
        (CodeHostKind.github, {"url": "ftp://x"}, "config.url", "not an http(s) URL"),
        (
            CodeHostKind.github,
            {"url": "https://u:p@github.com"},
            "config.url",
            "token field",
        ),
        (
            CodeHostKind.github,
            {"url": "https://github.com", "repositoryQuery": ["org:bad name"]},
            "config.repositoryQuery",
            "does not name an organization",
        ),
        (
            CodeHostKind.github,
            {"url": "https://github.com", "repos": ["no-slash"]},
            "config.repos.0",
            "'no-slash' is not owner/name",
        ),
        (
            CodeHostKind.github,
            {"url": "https://github.com", "exclude": [{}]},
            "config.exclude.0",
            "give one of",
        ),
        (
            CodeHostKind.github,
            {"url": "https://github.com", "exclude": [{"pattern": "("}]},
            "config.exclude.0.pattern",
            "not a regular expression",
        ),
        (
            CodeHostKind.github,
            {"url": "https://github.com", "repositoryPathPattern": "{host}/{nope}"},
            "config.repositoryPathPattern",
            "unknown placeholder {nope}",
        ),
        (CodeHostKind.github, {"url": "https://github.com", "tokn": "x"}, "config.tokn", "Extra"),
        (CodeHostKind.github, {"url": "https://github.com", "token": ""}, "config.token", "token"),
        (
            CodeHostKind.gitlab,
            {"url": "https://gitlab.com", "projectQuery": ["https://evil/x"]},
            "config.projectQuery",
            "not a URL",
        ),
        (CodeHostKind.other, {"repos": []}, "config.repos", "at least 1"),
        (CodeHostKind.other, {"repos": ["a/b"]}, "config", "relative but no url"),
    ],
)
def test_bad_configs_name_the_field(
    kind: CodeHostKind, config: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_config(kind, config)
    assert info.value.field == field
    assert words in info.value.message


def test_the_token_is_split_off_and_never_stored_with_the_config() -> None:
    config, token = parse_config(
        CodeHostKind.github,
        {"url": "https://ghe.example.com/", "token": " ghp_secret ", "orgs": ["acme"]},
    )
    assert token == "ghp_secret"
    assert dump_config(config) == {"url": "https://ghe.example.com", "orgs": ["acme"]}
    assert isinstance(config, GitHubConfig) and config.identity_host == "ghe.example.com"


def test_names_follow_the_pattern() -> None:
    repo = SourceRepo(external_id="1", name_with_owner="group/sub/project", clone_url="x")
    assert (
        render_name("{host}/{nameWithOwner}", "gitlab.com", repo) == "gitlab.com/group/sub/project"
    )
    assert render_name("{owner}--{name}", "h", repo) == "group/sub--project"


def test_exclusions_match_name_pattern_forks_and_archived() -> None:
    repo = SourceRepo(external_id="1", name_with_owner="Acme/Tool", clone_url="x", fork=True)
    config, _ = parse_config(
        CodeHostKind.github,
        {"url": "https://github.com", "exclude": [{"name": "acme/tool"}]},
    )
    assert excluded(repo, config.exclude)  # names compare case-insensitively, like the hosts
    assert excluded(
        repo,
        parse_config(
            CodeHostKind.github, {"url": "https://github.com", "exclude": [{"forks": True}]}
        )[0].exclude,
    )
    assert not excluded(
        repo,
        parse_config(
            CodeHostKind.github,
            {"url": "https://github.com", "exclude": [{"archived": True}, {"pattern": "^other/"}]},
        )[0].exclude,
    )


PATH_PATTERNS = [
    ("{host}/{name:>3000000}", "{name:>3000000}"),  # a 3 MB name
    ("{host}/{name!r}", "{name!r}"),
    ("{name.__class__}", "{name.__class__}"),
    ("{owner}/{name[0]}", "{name[0]}"),
    ("{host}/{}", "{}"),
    ("{0}", "{0}"),
    ("{name:{host}}", "brace that is not around a placeholder"),
    ("{owner}/{{name}}", "brace that is not around a placeholder"),
    ("x}/{name}", "brace that is not around a placeholder"),
]


@pytest.mark.parametrize(("pattern", "words"), PATH_PATTERNS)
def test_path_patterns_are_plain_placeholders_only(pattern: str, words: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_config(
            CodeHostKind.github, {"url": "https://github.com", "repositoryPathPattern": pattern}
        )
    assert info.value.field == "config.repositoryPathPattern"
    assert words in info.value.message, info.value.message


@pytest.mark.parametrize(
    "pattern", [r"(?=lookahead)", r"(a)\1", "(?<!x)y", "a{1001}", "((a{100}){100}){100}"]
)
def test_exclude_patterns_re2_cannot_compile_are_refused(pattern: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_config(
            CodeHostKind.github, {"url": "https://github.com", "exclude": [{"pattern": pattern}]}
        )
    assert info.value.field == "config.exclude.0.pattern"
    assert "RE2" in info.value.message, info.value.message


def test_a_catastrophic_exclude_pattern_runs_in_linear_time() -> None:
    # (a+)+$ against a run of a's and a '!' backtracks exponentially in Python's re.
    config, _ = parse_config(
        CodeHostKind.github, {"url": "https://github.com", "exclude": [{"pattern": "(a+)+$"}]}
    )
    assert type(compile_pattern("(a+)+$")).__module__.startswith("re2")
    evil = SourceRepo(external_id="1", name_with_owner="a" * 100_000 + "!", clone_url="x")
    assert not excluded(evil, config.exclude)
    plain = SourceRepo(external_id="2", name_with_owner="acme/aaa", clone_url="x")
    assert excluded(plain, config.exclude)


def test_next_link_reads_the_rel_next_of_a_link_header() -> None:
    header = (
        '<https://api.github.com/user/repos?page=3>; rel="next", '
        '<https://api.github.com/user/repos?page=5>; rel="last"'
    )
    assert next_link({"link": header}) == "https://api.github.com/user/repos?page=3"
    assert next_link({"link": '<https://x/?page=1>; rel="prev"'}) is None
    assert next_link({}) is None


async def test_the_pacer_spaces_requests_to_the_rate() -> None:
    pacer = Pacer(rate=50.0)
    started = time.monotonic()
    await asyncio.gather(*(pacer.wait() for _ in range(11)))
    assert time.monotonic() - started >= 10 / 50 - 0.01


@pytest.mark.parametrize(
    ("kind", "key", "value"),
    [
        (CodeHostKind.github, "repos", "https://evil.example/a/b"),
        (CodeHostKind.github, "repos", "a/b/../../user?x="),
        (CodeHostKind.github, "repos", "../.."),
        (CodeHostKind.github, "repos", "acme/app\n"),
        (CodeHostKind.github, "orgs", "x?y=1"),
        (CodeHostKind.github, "orgs", ".."),
        (CodeHostKind.gitea, "repos", "a/b c"),
        (CodeHostKind.gitlab, "projects", "group/../../admin"),
        (CodeHostKind.gitlab, "projects", "g/p?private_token=x"),
        (CodeHostKind.gitlab, "groups", "a/../b"),
        (CodeHostKind.gitlab, "groups", "https://evil.example/g"),
    ],
)
def test_names_that_go_into_api_paths_match_whole(kind: CodeHostKind, key: str, value: str) -> None:
    # pydantic's Field(pattern=) searches: unanchored, these reached the API with the token.
    with pytest.raises(InvalidInput) as refused:
        parse_config(kind, {"url": "https://git.example.com", key: [value]})
    assert key in (refused.value.field or ""), refused.value.field


@pytest.mark.parametrize(
    ("kind", "key", "value"),
    [
        (CodeHostKind.github, "repos", "acme/.github"),
        (CodeHostKind.github, "orgs", "acme-inc"),
        (CodeHostKind.gitlab, "projects", "group/sub/project.js"),
        (CodeHostKind.gitlab, "groups", "group/sub"),
    ],
)
def test_real_names_still_pass(kind: CodeHostKind, key: str, value: str) -> None:
    config, _ = parse_config(kind, {"url": "https://git.example.com", key: [value]})
    assert getattr(config, key) == [value]
