"""Sources: what a connection yields, listed through each host's own API.

A `Source` is an async stream of `SourceRepo`s. Each kind maps its host's JSON to
the same fields; the host's own id is the repository's identity across renames.

The host's JSON is not trusted to have the documented shape: an item that is not an
object, or lacks a field we key on (id, name, clone URL) or has one of the wrong type
or over its column's length, fails the listing (MalformedAnswer naming the page and
the item) rather than the syncer; a description is cut to MAX_DESCRIPTION characters.

A fork names its parent (`parent_external_id`, the host's id of the repository it was
forked from) where the host's listing says it: GitLab's `forked_from_project` and
Gitea's `parent` are in every listing. GitHub's list endpoints carry `fork` but no
`parent` (only "Get a repository" has it), so a GitHub source given a `ParentMemory`
asks `GET /repos/{owner}/{repo}` for each listed fork it has not resolved before: at
most one extra call per fork, through the same paced, conditional client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol
from urllib.parse import quote, urlsplit

from typing_extensions import override

from repodepot.codehosts.config import (
    AnyConfig,
    Exclude,
    GiteaConfig,
    GitHubConfig,
    GitLabConfig,
    OtherConfig,
    QueryConfig,
)
from repodepot.codehosts.http import ApiNotFound, CodeHostError, HostApi, MalformedItem
from repodepot.outbound import Origin, origin

MAX_DESCRIPTION = 2000  # characters; GitHub allows 350, GitLab 2000
MAX_FIELD = 255  # the columns of external ids and branch names
MAX_URL = 2048

# A connection's forks and what the host said their parent is (None: it named none), by
# external id; kept by the syncer across syncs, so that a fork is asked about once.
ParentMemory = dict[str, str | None]


@dataclass(frozen=True, slots=True)
class SourceRepo:
    """One repository as a code host describes it."""

    external_id: str
    name_with_owner: str
    clone_url: str
    description: str = ""
    fork: bool = False
    archived: bool = False
    private: bool = True
    internal: bool = False  # GitLab's and GitHub Enterprise's `internal`, Gitea's `internal`
    default_branch: str | None = None
    parent_external_id: str | None = None  # a fork's parent, when the host says which


class Source(Protocol):
    """Lists the repositories a connection yields; successive listings may differ."""

    warnings: list[str]

    def list_repos(self) -> AsyncIterator[SourceRepo]:
        """Every repository, once each, excluded ones left out."""
        ...


def excluded(repo: SourceRepo, rules: list[Exclude]) -> bool:
    """Whether any exclusion rule matches `repo`."""
    for rule in rules:
        if rule.name is not None and rule.name.lower() == repo.name_with_owner.lower():
            return True
        if rule.search(repo.name_with_owner):  # RE2: linear time, whatever the pattern
            return True
        if (rule.forks and repo.fork) or (rule.archived and repo.archived):
            return True
    return False


class _ApiSource:
    """Shared by the API kinds: deduplication, exclusions, skipped explicit repositories."""

    def __init__(self, api: HostApi, exclude: list[Exclude]) -> None:
        self.api = api
        self.warnings: list[str] = []
        self._exclude = exclude

    def listings(self) -> list[tuple[str, Callable[[Any], list[SourceRepo]]]]:
        raise NotImplementedError

    def explicit(self) -> list[str]:
        raise NotImplementedError

    def convert(self, item: Any) -> SourceRepo:
        raise NotImplementedError

    async def list_repos(self) -> AsyncIterator[SourceRepo]:
        seen: set[str] = set()
        for path, convert in self.listings():
            async for page in self.api.pages(path, convert):
                for repo in page:
                    if repo.external_id not in seen and not excluded(repo, self._exclude):
                        seen.add(repo.external_id)
                        yield await self.completed(repo)
        for path in self.explicit():
            try:
                repo = await self.api.get(path, self.convert)
            except ApiNotFound:
                self.warnings.append(f"{path} was not found on the host; skipped")
                continue
            if repo.external_id not in seen and not excluded(repo, self._exclude):
                seen.add(repo.external_id)
                yield await self.completed(repo)

    async def completed(self, repo: SourceRepo) -> SourceRepo:
        """`repo` with what its listing left out and the kind asks for separately."""
        return repo

    def _items(self, body: Any) -> list[SourceRepo]:
        if not isinstance(body, list):
            raise MalformedItem(f"a JSON {_kind(body)} where a list of repositories goes")
        found = []
        for index, item in enumerate(body, 1):
            try:
                found.append(self.convert(item))
            except MalformedItem as error:
                raise MalformedItem(f"item {index}: {error}") from None
        return found


class _QuerySource(_ApiSource):
    """GitHub and Gitea: the same queries, over each one's paths."""

    affiliated: ClassVar[str]
    public: ClassVar[str]
    public_key: ClassVar[str | None]  # the list's key when the answer wraps it
    search: ClassVar[str]  # with {query}
    search_key: ClassVar[str]
    org: ClassVar[str]  # with {org}

    def __init__(self, config: QueryConfig, api: HostApi) -> None:
        super().__init__(api, config.exclude)
        self.config = config

    @override
    def listings(self) -> list[tuple[str, Callable[[Any], list[SourceRepo]]]]:
        found: list[tuple[str, Callable[[Any], list[SourceRepo]]]] = []
        orgs = list(self.config.orgs)
        for query in self.config.repositoryQuery:
            if query == "none":
                continue
            if query == "affiliated":
                found.append((self.affiliated, self._items))
            elif query == "public":
                found.append((self.public, self._unwrap(self.public_key)))
            elif query.startswith("org:"):
                orgs.append(query[4:])
            else:
                path = self.search.format(query=quote(query))
                found.append((path, self._unwrap(self.search_key)))
        found.extend((self.org.format(org=quote(org)), self._items) for org in orgs)
        return found

    @override
    def explicit(self) -> list[str]:
        return [f"repos/{name}" for name in self.config.repos]

    def _unwrap(self, key: str | None) -> Callable[[Any], list[SourceRepo]]:
        if key is None:
            return self._items

        def unwrap(body: Any) -> list[SourceRepo]:
            if not isinstance(body, dict) or key not in body:
                raise MalformedItem(f"no {key!r} where the list of repositories goes")
            return self._items(body[key])

        return unwrap


class GitHubSource(_QuerySource):
    """GitHub REST API v3: /user/repos, /orgs/{org}/repos, /repositories, /search/repositories."""

    affiliated = "user/repos?affiliation=owner,collaborator,organization_member&per_page=100"
    public = "repositories"
    public_key = None
    search = "search/repositories?q={query}&per_page=100"
    search_key = "items"
    org = "orgs/{org}/repos?type=all&per_page=100"

    def __init__(
        self, config: QueryConfig, api: HostApi, parents: ParentMemory | None = None
    ) -> None:
        """`parents`: the forks resolved by earlier syncs; None: forks' parents are not asked."""
        super().__init__(config, api)
        self._parents = parents
        self._asking = parents is not None

    @staticmethod
    def api_url(config: GitHubConfig) -> str:
        """api.github.com for github.com, `{url}/api/v3` for GitHub Enterprise."""
        if config.host in ("github.com", "www.github.com"):
            return "https://api.github.com"
        return f"{config.url}/api/v3"

    @override
    def convert(self, item: Any) -> SourceRepo:
        item = _object(item)
        return SourceRepo(
            external_id=_identity(item, "node_id", "id"),
            name_with_owner=_text(item, "full_name"),
            clone_url=_text(item, "clone_url", MAX_URL),
            description=_description(item),
            fork=bool(item.get("fork")),
            archived=bool(item.get("archived")),
            private=bool(item.get("private")) or item.get("visibility") == "internal",
            internal=item.get("visibility") == "internal",
            default_branch=_optional(item, "default_branch"),
            parent_external_id=_parent(item, "parent", "node_id", "id"),
        )

    @override
    async def completed(self, repo: SourceRepo) -> SourceRepo:
        """A listed fork with its parent: remembered, or asked of "Get a repository" once."""
        if not repo.fork or repo.parent_external_id is not None or self._parents is None:
            return repo
        if repo.external_id not in self._parents:
            if not self._asking:
                return repo
            try:
                whole = await self.api.get(f"repos/{quote(repo.name_with_owner)}", self.convert)
            except ApiNotFound:  # gone since the listing; the next sync asks again
                return repo
            except CodeHostError as error:  # the listing stands; the next sync asks again
                self._asking = False
                self.warnings.append(
                    f"the parents of forks were not resolved ({error.message}); "
                    "the next sync asks again"
                )
                return repo
            self._parents[repo.external_id] = whole.parent_external_id
        return replace(repo, parent_external_id=self._parents[repo.external_id])


class GitLabSource(_ApiSource):
    """GitLab REST API v4: projects?…, groups/{id}/projects, projects/{id}."""

    def __init__(self, config: GitLabConfig, api: HostApi) -> None:
        super().__init__(api, config.exclude)
        self.config = config

    @staticmethod
    def api_url(config: GitLabConfig) -> str:
        """`{url}/api/v4`."""
        return f"{config.url}/api/v4"

    @override
    def listings(self) -> list[tuple[str, Callable[[Any], list[SourceRepo]]]]:
        found: list[tuple[str, Callable[[Any], list[SourceRepo]]]] = []
        for query in self.config.projectQuery:
            if query == "none":
                continue
            path = f"projects{query}" if query.startswith("?") else query
            found.append((_with_param(path, "per_page=100"), self._items))
        for group in self.config.groups:
            path = f"groups/{quote(group, safe='')}/projects?include_subgroups=true&per_page=100"
            found.append((path, self._items))
        return found

    @override
    def explicit(self) -> list[str]:
        return [f"projects/{quote(path, safe='')}" for path in self.config.projects]

    @override
    def convert(self, item: Any) -> SourceRepo:
        item = _object(item)
        return SourceRepo(
            external_id=_identity(item, "id"),
            name_with_owner=_text(item, "path_with_namespace"),
            clone_url=_text(item, "http_url_to_repo", MAX_URL),
            description=_description(item),
            fork="forked_from_project" in item,
            archived=bool(item.get("archived")),
            private=item.get("visibility", "private") != "public",
            internal=item.get("visibility") == "internal",
            default_branch=_optional(item, "default_branch"),
            parent_external_id=_parent(item, "forked_from_project", "id"),
        )


class GiteaSource(_QuerySource):
    """Gitea/Forgejo API v1: user/repos, orgs/{org}/repos, repos/search, repos/{owner}/{name}."""

    affiliated = "user/repos?limit=50"
    public = "repos/search?limit=50"
    public_key = "data"
    search = "repos/search?q={query}&limit=50"
    search_key = "data"
    org = "orgs/{org}/repos?limit=50"

    @staticmethod
    def api_url(config: GiteaConfig) -> str:
        """`{url}/api/v1`."""
        return f"{config.url}/api/v1"

    @override
    def convert(self, item: Any) -> SourceRepo:
        item = _object(item)
        return SourceRepo(
            external_id=_identity(item, "id"),
            name_with_owner=_text(item, "full_name"),
            clone_url=_text(item, "clone_url", MAX_URL),
            description=_description(item),
            fork=bool(item.get("fork")),
            archived=bool(item.get("archived")),
            private=bool(item.get("private")) or bool(item.get("internal")),
            internal=bool(item.get("internal")) and not item.get("private"),
            default_branch=_optional(item, "default_branch") or None,
            parent_external_id=_parent(item, "parent", "id"),
        )


class OtherSource:
    """A fixed list of clone URLs: the normalized URL is the identity."""

    def __init__(self, config: OtherConfig) -> None:
        self.config = config
        self.warnings: list[str] = []

    async def list_repos(self) -> AsyncIterator[SourceRepo]:
        """Each configured URL once, excluded ones left out."""
        seen: set[str] = set()
        for entry in self.config.repos:
            url = entry if "://" in entry else f"{self.config.url}/{entry.strip('/')}"
            parts = urlsplit(url)
            path = parts.path.strip("/").removesuffix(".git")
            identity = f"{parts.scheme}://{parts.netloc.lower()}/{path}"
            repo = SourceRepo(
                external_id=identity, name_with_owner=path, clone_url=url, private=True
            )
            if identity not in seen and not excluded(repo, self.config.exclude):
                seen.add(identity)
                yield repo


def _object(item: Any) -> Mapping[str, Any]:
    if not isinstance(item, dict):
        raise MalformedItem(f"a JSON {_kind(item)} where a repository object goes")
    return item


def _kind(value: Any) -> str:
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")


def _text(item: Mapping[str, Any], key: str, longest: int = MAX_FIELD) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value:
        raise MalformedItem(f"a repository without a {key} (text)")
    if len(value) > longest:
        raise MalformedItem(f"a repository whose {key} is longer than {longest} characters")
    return value


def _optional(item: Mapping[str, Any], key: str) -> str | None:
    return None if item.get(key) is None else _text(item, key)


def _identity(item: Mapping[str, Any], *keys: str) -> str:
    """The first of `keys` that holds a number or text: the host's id for the repository."""
    for key in keys:
        value = item.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and value:
            if len(value) > MAX_FIELD:
                raise MalformedItem(f"a repository whose {key} is longer than {MAX_FIELD}")
            return value
    raise MalformedItem(f"a repository without an id ({' or '.join(keys)})")


def _parent(item: Mapping[str, Any], key: str, *ids: str) -> str | None:
    """The host's id of the repository `item[key]` describes; None when there is none."""
    value = item.get(key)
    if value is None:
        return None
    try:
        return _identity(_object(value), *ids)
    except MalformedItem as error:
        raise MalformedItem(f"{key}: {error}") from None


def _description(item: Mapping[str, Any]) -> str:
    value = item.get("description")
    if value is not None and not isinstance(value, str):
        raise MalformedItem("a repository whose description is not text")
    return (value or "")[:MAX_DESCRIPTION]


def _with_param(path: str, param: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}{param}"


def api_settings(config: AnyConfig, token: str | None) -> tuple[str, dict[str, str]]:
    """The API base URL and authentication headers for an API kind."""
    if isinstance(config, GitHubConfig):
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return GitHubSource.api_url(config), headers
    if isinstance(config, GitLabConfig):
        return GitLabSource.api_url(config), {"PRIVATE-TOKEN": token} if token else {}
    if isinstance(config, GiteaConfig):
        return GiteaSource.api_url(config), {"Authorization": f"token {token}"} if token else {}
    raise TypeError(f"{type(config).__name__} has no API")


def clone_origins(config: AnyConfig) -> frozenset[Origin]:
    """Where a connection's token may go with a clone or fetch.

    github.com clones from https://github.com (its API is api.github.com); GitHub
    Enterprise, GitLab and Gitea from the configured url's origin; an `other`
    connection from the origins its admin listed. A `clone_url` a host's API names
    elsewhere gets no token.
    """
    if isinstance(config, OtherConfig):
        urls = [entry for entry in config.repos if "://" in entry]
        return frozenset(origin(url) for url in [*urls, *([config.url] if config.url else [])])
    if isinstance(config, GitHubConfig) and config.host in ("github.com", "www.github.com"):
        return frozenset({Origin("https", "github.com", 443)})
    return frozenset({origin(config.url)})


def make_source(
    config: AnyConfig, api: HostApi | None, parents: ParentMemory | None = None
) -> Source:
    """The source for a connection's configuration.

    `parents`: forks resolved before, which a GitHub source reads and adds to; None:
    a GitHub source makes no call for a fork's parent.
    """
    if isinstance(config, OtherConfig):
        return OtherSource(config)
    assert api is not None
    if isinstance(config, GitHubConfig):
        return GitHubSource(config, api, parents)
    if isinstance(config, GitLabConfig):
        return GitLabSource(config, api)
    return GiteaSource(config, api)


def render_name(pattern: str, host: str, repo: SourceRepo) -> str:
    """The repository's name here, from the connection's `repositoryPathPattern`."""
    owner, _, name = repo.name_with_owner.rpartition("/")
    return pattern.format(
        host=host,
        nameWithOwner=repo.name_with_owner,
        pathWithNamespace=repo.name_with_owner,
        owner=owner,
        name=name,
    ).strip("/")
