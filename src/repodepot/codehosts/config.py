"""Each kind of connection's configuration, validated on save with errors that name the field.

The token is not part of the stored configuration: it is sealed on its own and never
returned (`token_set` says whether there is one).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

import re2
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from repodepot.db.models import CodeHostKind
from repodepot.exceptions import InvalidInput

_OWNER_NAME = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
_PATH = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+")
_ORG = re.compile(r"[A-Za-z0-9_.-]+")
_GROUP = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")


def _whole(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    """A check that a str matches `pattern` whole, no part of it only dots (API paths).

    (pydantic's `Field(pattern=...)` searches: an unanchored pattern let
    `https://evil.example/a/b` through, and `..` parts climb the API's paths.)
    """

    def check(value: str) -> str:
        if not pattern.fullmatch(value) or any(not part.strip(".") for part in value.split("/")):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return check


OwnerName = Annotated[str, AfterValidator(_whole(_OWNER_NAME, "owner/name"))]
OrgName = Annotated[str, AfterValidator(_whole(_ORG, "an organization name"))]
ProjectPath = Annotated[str, AfterValidator(_whole(_PATH, "group/name"))]
GroupPath = Annotated[str, AfterValidator(_whole(_GROUP, "a group path"))]


PLACEHOLDERS = frozenset({"host", "nameWithOwner", "pathWithNamespace", "owner", "name"})
_BRACED = re.compile(r"\{([^{}]*)\}")
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is the admin's 422, not a log line


# The `privateVisibility` a connection gives its host's private repositories here.
PrivateVisibility = Literal["private", "internal"]


class Exclude(BaseModel):
    """One exclusion rule: by exact name, by regular expression, all forks or all archived.

    Patterns are RE2 expressions (`google-re2`), matched in time linear in the name, so
    no pattern can stall the event loop; what RE2 cannot compile (backreferences,
    lookaround, huge repetitions) is refused on save.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    pattern: str | None = None
    forks: bool = False
    archived: bool = False

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compile_pattern(value)
        return value

    def search(self, name: str) -> bool:
        """Whether the rule's pattern matches somewhere in `name` (False without one)."""
        return self.pattern is not None and compile_pattern(self.pattern).search(name) is not None

    @model_validator(mode="after")
    def _one_rule(self) -> Exclude:
        if self.name is None and self.pattern is None and not self.forks and not self.archived:
            raise ValueError("give one of name, pattern, forks: true or archived: true")
        return self


class HostConfig(BaseModel):
    """What every kind has: the host's URL, exclusions and the naming pattern."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    default_pattern: ClassVar[str] = "{host}/{nameWithOwner}"

    url: str
    exclude: list[Exclude] = Field(default_factory=list)
    repositoryPathPattern: str = ""
    # What the host's private repositories are here: `internal` opens them to every
    # signed-in user (a company's own code host); its internal ones are internal anyway.
    privateVisibility: PrivateVisibility = "private"

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return check_base_url(value)

    @field_validator("repositoryPathPattern")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        return check_pattern(value)

    @property
    def pattern(self) -> str:
        """The naming pattern in force."""
        return self.repositoryPathPattern or self.default_pattern

    @property
    def host(self) -> str:
        """The host name (without port) that `{host}` stands for."""
        return (urlsplit(self.url).hostname or "").lower()

    @property
    def identity_host(self) -> str:
        """Host and port: with the kind, the namespace of the host's repository ids."""
        return urlsplit(self.url).netloc.lower()


class QueryConfig(HostConfig):
    """What GitHub and Gitea share: queries, organizations and explicit repositories."""

    repositoryQuery: list[str] = Field(default_factory=list)
    repos: list[OwnerName] = Field(default_factory=list)
    orgs: list[OrgName] = Field(default_factory=list)

    @field_validator("repositoryQuery")
    @classmethod
    def _queries(cls, value: list[str]) -> list[str]:
        for query in value:
            if not query.strip():
                raise ValueError("a query is affiliated, public, none, org:NAME or a search query")
            if query.startswith("org:") and not _ORG.fullmatch(query[4:]):
                raise ValueError(f"{query!r} does not name an organization")
        return value


class GitHubConfig(QueryConfig):
    """github.com or GitHub Enterprise (API at `{url}/api/v3`)."""


class GitLabConfig(HostConfig):
    """GitLab.com or self-managed GitLab (API at `{url}/api/v4`)."""

    default_pattern: ClassVar[str] = "{host}/{pathWithNamespace}"

    projectQuery: list[str] = Field(default_factory=list)
    projects: list[ProjectPath] = Field(default_factory=list)
    groups: list[GroupPath] = Field(default_factory=list)

    @field_validator("projectQuery")
    @classmethod
    def _queries(cls, value: list[str]) -> list[str]:
        for query in value:
            if query != "none" and not (query.startswith("?") or re.match(r"^[a-z]", query)):
                raise ValueError(
                    f"{query!r}: use none, ?QUERY (for projects?QUERY) or an API path "
                    "such as groups/NAME/projects?include_subgroups=true"
                )
            if "://" in query or query.startswith("/"):
                raise ValueError(f"{query!r}: give a path relative to the API, not a URL")
        return value


class GiteaConfig(QueryConfig):
    """Gitea or Forgejo (API at `{url}/api/v1`)."""


class OtherConfig(BaseModel):
    """A plain list of clone URLs, absolute or relative to `url`; no API."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    default_pattern: ClassVar[str] = "{host}/{nameWithOwner}"

    url: str | None = None
    repos: list[str] = Field(min_length=1)
    exclude: list[Exclude] = Field(default_factory=list)
    repositoryPathPattern: str = ""
    privateVisibility: PrivateVisibility = "private"  # every repository listed is private

    @field_validator("repositoryPathPattern")
    @classmethod
    def _known_placeholders(cls, value: str) -> str:
        return check_pattern(value)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return check_base_url(value) if value is not None else None

    @model_validator(mode="after")
    def _urls(self) -> OtherConfig:
        for index, repo in enumerate(self.repos):
            if "://" in repo:
                check_base_url(repo)
            elif self.url is None:
                raise ValueError(f"repos[{index}] {repo!r} is relative but no url is given")
            elif not repo.strip("/") or ".." in repo.split("/"):
                raise ValueError(f"repos[{index}] {repo!r} is not a repository path")
        return self

    @property
    def pattern(self) -> str:
        """The naming pattern in force."""
        return self.repositoryPathPattern or self.default_pattern


AnyConfig = GitHubConfig | GitLabConfig | GiteaConfig | OtherConfig
CONFIGS: dict[CodeHostKind, type[AnyConfig]] = {
    CodeHostKind.github: GitHubConfig,
    CodeHostKind.gitlab: GitLabConfig,
    CodeHostKind.gitea: GiteaConfig,
    CodeHostKind.other: OtherConfig,
}


@functools.lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> Any:  # re2._Regexp: google-re2 ships no types
    """An exclude pattern compiled by RE2; ValueError saying why RE2 refuses it."""
    try:
        return re2.compile(pattern, options=_RE2_OPTIONS)
    except re2.error as error:
        reason = error.args[0].decode(errors="replace") if error.args else "refused"
        raise ValueError(
            f"not a regular expression RE2 accepts ({reason}); patterns are matched by RE2, "
            "without backreferences or lookaround"
        ) from None


def check_pattern(value: str) -> str:
    """A `repositoryPathPattern` of plain placeholders and text ("" means the default).

    `str.format` would also take format specs (`{name:>3000000}` pads to 3 MB),
    conversions (`{name!r}`), attributes and indexes: each placeholder must be exactly
    one of PLACEHOLDERS between braces, and no other brace may appear.
    """
    if not value:
        return value
    for inside in _BRACED.findall(value):
        if inside not in PLACEHOLDERS:
            plain = ", ".join(f"{{{name}}}" for name in sorted(PLACEHOLDERS))
            raise ValueError(
                f"unknown placeholder {{{inside}}}; use {plain} as they are, without "
                "format specs, conversions, attributes or indexes"
            )
    if "{" in _BRACED.sub("", value) or "}" in _BRACED.sub("", value):
        raise ValueError("a brace that is not around a placeholder: names cannot have braces")
    return value


def check_base_url(value: str) -> str:
    """An http(s) URL with a host and no credentials, query or fragment; trailing `/` dropped."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL with a host")
    if parts.username or parts.password:
        raise ValueError("put the token in the token field, not in the URL")
    if parts.query or parts.fragment:
        raise ValueError("the URL must not have a query or fragment")
    return value.strip().rstrip("/")


SECRETS = ("token", "webhookSecret")


def split_secrets(raw: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The config without its secrets (`token`, `webhookSecret`), and those secrets."""
    values = dict(raw)
    secrets: dict[str, str] = {}
    for name in SECRETS:
        secret = values.pop(name, None)
        if secret is None:
            continue
        if not isinstance(secret, str) or not secret.strip():
            raise InvalidInput(f"config.{name} must be a non-empty string", field=f"config.{name}")
        secrets[name] = secret.strip()
    return values, secrets


def parse_config(kind: CodeHostKind, raw: dict[str, Any]) -> tuple[AnyConfig, str | None]:
    """Validate `raw` for `kind`; return the config and the token it carried, if any.

    Secrets are not part of the config. Raises InvalidInput naming the first bad field
    as `config.<path>`.
    """
    values, secrets = split_secrets(raw)
    token = secrets.get("token")
    try:
        config = CONFIGS[kind].model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        field = f"config.{where}" if where else "config"
        raise InvalidInput(f"{field}: {message}", field=field) from None
    return config, token


def dump_config(config: AnyConfig) -> dict[str, Any]:
    """The stored form: only what was set, without defaults."""
    return config.model_dump(mode="json", exclude_defaults=True)
