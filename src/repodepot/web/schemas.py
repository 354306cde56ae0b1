"""The API's request and response bodies, as they appear in the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

from repodepot.db.models import (
    CloneStatus,
    CodeHostKind,
    GrantRole,
    GrantSource,
    Role,
    SyncStatus,
    Visibility,
)

T = TypeVar("T")


class ErrorDetail(BaseModel):
    """What went wrong, for programs (`code`, `field`) and for people (`message`)."""

    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["no repository named 'acme/widgets'"])
    field: str | None = Field(None, examples=["name"])


class ErrorResponse(BaseModel):
    """The body of every 4xx and 5xx answer."""

    error: ErrorDetail


class PageOut(BaseModel, Generic[T]):
    """One page of a listing."""

    items: list[T]
    total: int
    page: int
    per_page: int


class RepositoryPageOut(PageOut["RepositoryOut"]):
    """One page of repositories, and where the next one starts."""

    next_after: str | None = Field(
        None,
        description="Pass as `after` for the next page (an index range however deep); "
        "null on the last page",
        examples=["acme/widgets"],
    )


class _Record(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class UserOut(_Record):
    """A user."""

    id: int
    name: str
    role: Role
    created_at: datetime
    disabled: bool


class UserCreate(BaseModel):
    """A new user."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, examples=["alice"])
    role: Role = Role.member


class TokenOut(_Record):
    """A token's metadata (never the token itself)."""

    id: int
    user_name: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreate(BaseModel):
    """A new token, for yourself or (admins) for `user`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("default", min_length=1, max_length=100, examples=["laptop"])
    user: str | None = Field(None, examples=["alice"])


class TokenCreated(TokenOut):
    """A new token: `token` is shown this once and never again."""

    token: str


class RepositoryOut(_Record):
    """A repository."""

    id: int
    name: str
    owner: str | None
    visibility: Visibility
    description: str
    source_url: str | None
    default_branch: str | None
    size_bytes: int
    is_empty: bool
    created_at: datetime
    updated_at: datetime
    fork: bool
    archived: bool
    code_host_kind: str | None = Field(
        description="github, gitlab, gitea or other when a code host connection yields it"
    )
    deleted_at: datetime | None = Field(
        description="When no connection yielded it any more (soft-deleted; the id stays)"
    )
    go_import_root: str | None = Field(
        description="Go module paths under this root are served from this repository"
    )
    go_import_root_custom: bool = Field(
        description="True when set by an admin; else it follows the source URL"
    )


class RepositoryPatch(BaseModel):
    """What can be changed on a repository."""

    model_config = ConfigDict(extra="forbid")

    go_import_root: str | None = Field(
        description="A module path prefix (example.com/team/lib); null resets the default"
    )


class CredentialIn(BaseModel):
    """A repository's fetch credential: sealed at rest, sent only to its source's origin."""

    model_config = ConfigDict(extra="forbid")

    username: str | None = Field(
        default=None, max_length=200, description="Sent with the token; x-access-token if unset"
    )
    token: str = Field(min_length=1, max_length=4096, description="Never shown again")


class CredentialSet(BaseModel):
    """The credential is kept; the mirror's next update uses it (queued now)."""

    credential_set: bool = True


class Health(BaseModel):
    """Liveness or readiness, with the result of each check."""

    status: str
    checks: dict[str, str] = {}


class ImportCreate(BaseModel):
    """An import request.

    A token may also come as the URL's userinfo. Either way it is kept encrypted, and
    after a successful import it stays as the repository's fetch credential (sent only
    to the source's origin) so that the mirror keeps updating; it is never shown.
    """

    model_config = ConfigDict(extra="forbid")

    url: str = Field(examples=["https://github.com/pallets/flask.git"])
    owner: str = Field(examples=["alice"])
    slug: str = Field(examples=["flask"])
    token: str | None = Field(
        None,
        max_length=4096,
        description="Personal access token for the source; kept as the repository's "
        "fetch credential",
    )
    username: str | None = Field(
        None, max_length=200, description="User name to send with the token."
    )
    visibility: Visibility = Visibility.private


class ImportJobOut(BaseModel):
    """An import job and how far it is."""

    id: int
    url: str
    owner: str
    slug: str
    target: str
    visibility: Visibility
    status: str = Field(examples=["running"])
    phase: str = Field(examples=["receiving"])
    percent: float
    received_objects: int
    total_objects: int
    received_bytes: int
    resolved_deltas: int
    total_deltas: int
    throughput: float = Field(description="Bytes per second while receiving.")
    eta_seconds: float | None
    error: str | None
    attempt: int
    seq: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    duration_ms: int | None
    queue_position: int | None = Field(None, description="1 = next to start; pending jobs only.")
    repository: str | None = Field(None, description="The imported repository, on success.")


class CodeHostIn(BaseModel):
    """A new code host connection. `config.token` is encrypted and never shown again."""

    kind: str = Field(examples=["github"], description="github, gitlab, gitea or other")
    name: str = Field(examples=["github.com"])
    config: dict[str, Any] = Field(
        examples=[
            {
                "url": "https://github.com",
                "token": "ghp_…",
                "repositoryQuery": ["affiliated"],
                "exclude": [{"forks": True}],
            }
        ]
    )


class CodeHostPatch(BaseModel):
    """A change: rename, or replace the config (without `token` the token is kept)."""

    name: str | None = None
    config: dict[str, Any] | None = None


class SyncOut(_Record):
    """One sync of a connection: what it changed and what it cost."""

    id: int
    started_at: datetime
    finished_at: datetime
    status: SyncStatus
    yielded: int = Field(description="Repositories the host listed, after exclusions")
    added: int
    modified: int
    deleted: int
    unchanged: int
    held: int = Field(description="Deletions held by purge protection")
    skipped: int = Field(description="Repositories left out: invalid or taken names")
    api_calls: int
    not_modified: int = Field(description="API calls answered 304 from the ETag")
    duration_ms: int
    error: str | None
    warnings: list[str]


class CodeHostOut(_Record):
    """A code host connection; the token shows only as `token_set`."""

    id: int
    kind: CodeHostKind
    name: str
    config: dict[str, Any]
    token_set: bool
    webhook_secret_set: bool = Field(description="Whether `config.webhookSecret` was given")
    created_at: datetime
    updated_at: datetime
    next_sync_at: datetime
    syncing: bool
    last_sync_at: datetime | None
    last_status: SyncStatus | None
    last_error: str | None
    repo_count: int
    held_deletions: int = Field(description="Deletions waiting for an admin's confirmation")
    held_repositories: list[str] = Field(description="Up to 100 of them, by name")
    last_sync: SyncOut | None


class SyncRequested(BaseModel):
    """A sync was asked for; it has run once `last_sync.started_at` is at or after this."""

    requested_at: datetime


class DeletionsConfirmed(BaseModel):
    """The held deletions were carried out."""

    deleted: int


class MirrorOut(_Record):
    """A repository's mirror on its storage node, and its update schedule in words."""

    clone_status: CloneStatus
    node: str = Field(description="The storage node that owns the mirror", examples=["local"])
    shard: str = Field(
        description="Deprecated: the same as `node`, by its name before storage nodes",
        json_schema_extra={"deprecated": True},
    )
    last_fetched_at: datetime | None
    last_changed_at: datetime | None
    last_error: str | None
    failure_kind: str | None = Field(
        description="auth, not_found, network, timeout, corrupt, disk_full or other"
    )
    size_bytes: int
    next_update_at: datetime
    interval_seconds: float
    failures: int
    failing: bool
    queued: str | None = Field(description="Why it is queued: new, webhook, visit or admin")
    schedule: str = Field(
        examples=["next update in 12 min, because its refs last changed 25 min ago"]
    )
    move_to: str | None = Field(
        None,
        description="The storage node the mirror is being copied to; reads stay on `node` "
        "until the copy is whole",
    )
    moved_from: str | None = Field(
        None, description="The storage node that held the mirror before its last move"
    )


class RepositoryDetail(RepositoryOut):
    """A repository with its mirror (null before the updater has seen it)."""

    mirror: MirrorOut | None


class UpdateRequested(BaseModel):
    """The update is queued at high priority."""

    queued: bool


class SchedulerOut(_Record):
    """The update queue at a glance."""

    mirrors: int
    queued: int = Field(description="Asked for: new, webhook, visit, admin")
    due: int = Field(description="Scheduled and due now")
    running: int
    failing: int
    cloned: int
    next_due_at: datetime | None


class CommitOut(_Record):
    """A commit found by EnsureRevision."""

    sha: str
    author_name: str
    author_email: str
    authored_at: str
    subject: str
    fetched: bool = Field(description="Whether the mirror had to fetch to find it")


class LogEntryOut(_Record):
    """A commit of a branch's history."""

    sha: str
    author_name: str
    committed_at: datetime
    subject: str


class CommitLogOut(BaseModel):
    """The newest commits of a ref, newest first."""

    items: list[LogEntryOut]
    ref: str | None = Field(
        description="The ref asked for; without one, the default branch (null when HEAD is "
        "detached)"
    )


class TagOut(_Record):
    """A tag, the commit it names and when it was made."""

    name: str
    commit: str
    tagged_at: datetime | None = Field(
        description="The tagger's date (annotated tags) or the commit's date (lightweight)"
    )
    subject: str


class TagsOut(BaseModel):
    """A repository's tags of commits, newest first."""

    items: list[TagOut]


class ExecIn(BaseModel):
    """A read-only git command: the subcommand first, then its arguments."""

    args: list[str] = Field(examples=[["log", "--oneline", "-5", "main"]], max_length=200)


class GoModuleOut(BaseModel):
    """A Go module found in a repository, served by `/goproxy`."""

    path: str
    subdir: str = Field(description="Its directory in the repository; empty at the root")
    versions: list[str] = Field(description="What `@v/list` answers, oldest first")
    latest: str | None
    moved: list[str] = Field(description="Versions whose tags moved after they were served")
    go_get: str = Field(description="A command that fetches it through this proxy")


class PushedRepository(BaseModel):
    """A delivery's `repository` (GitHub, Gitea)."""

    id: int
    node_id: str | None = Field(None, max_length=200)


class GitHubPush(BaseModel):
    """A GitHub push: the repository by `repository.node_id`, else `repository.id`."""

    repository: PushedRepository

    @property
    def external_id(self) -> str:
        """How the code host knows the repository (`repositories.external_id`)."""
        return self.repository.node_id or str(self.repository.id)


class GiteaPush(BaseModel):
    """A Gitea or Forgejo push: the repository by `repository.id`."""

    repository: PushedRepository

    @property
    def external_id(self) -> str:
        """How the code host knows the repository (`repositories.external_id`)."""
        return str(self.repository.id)


class PushedProject(BaseModel):
    """A GitLab delivery's `project`."""

    id: int


class GitLabPush(BaseModel):
    """A GitLab push or tag push: the project by `project.id`, else `project_id`."""

    project: PushedProject | None = None
    project_id: int | None = None

    @model_validator(mode="after")
    def _names_a_project(self) -> GitLabPush:
        if self.project is None and self.project_id is None:
            raise ValueError("project.id or project_id is required")
        return self

    @property
    def external_id(self) -> str:
        """How the code host knows the repository (`repositories.external_id`)."""
        return str(self.project.id if self.project is not None else self.project_id)


PushPayload = GitHubPush | GiteaPush | GitLabPush
"""A push delivery's payload, whichever the host: `external_id` names the repository."""


class GroupIn(BaseModel):
    """A new group of users, that grants can be given to."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(examples=["platform"], max_length=64)


class GroupOut(_Record):
    """A group and its members' names."""

    id: int
    name: str
    members: list[str]
    created_at: datetime


class MemberIn(BaseModel):
    """A user to put in a group."""

    model_config = ConfigDict(extra="forbid")

    user: str = Field(examples=["alice"], max_length=64)


class GrantIn(BaseModel):
    """`read` on a repository to a user or a group (name exactly one)."""

    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(default=None, examples=["alice"], max_length=64)
    group: str | None = Field(default=None, examples=["platform"], max_length=64)
    role: GrantRole = GrantRole.read


class ConnectionGrantIn(BaseModel):
    """`read` on every repository of a code host connection, to a group."""

    model_config = ConfigDict(extra="forbid")

    group: str = Field(examples=["platform"], max_length=64)
    role: GrantRole = GrantRole.read


class GrantOut(_Record):
    """A grant: on one repository or a connection's, to a user or a group, from where."""

    id: int
    repository: str | None = Field(description="The repository's name; null for a connection's")
    code_host_id: int | None
    user: str | None
    group: str | None
    role: GrantRole
    source: GrantSource = Field(description="manual, or codehost: kept by permission sync")
    created_at: datetime
