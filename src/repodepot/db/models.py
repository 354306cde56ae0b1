"""The tables. Every change here needs a migration in `db/migrations/versions/`."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Enum,
    ForeignKey,
    Index,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from repodepot.db.base import Base


class Role(enum.StrEnum):
    """What a user may do: admins everything, members their own things and public ones."""

    admin = "admin"
    member = "member"


class Visibility(enum.StrEnum):
    """Who may read a repository (`repositories.visible_to` decides it).

    `public`: anyone, also without a token; `internal`: every signed-in user;
    `private`: its owner, admins and those granted it (`repository_grants`).
    """

    private = "private"
    internal = "internal"
    public = "public"


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    # Stored as a checked VARCHAR, identical on SQLite and PostgreSQL.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [member.value for member in members],
    )


class User(Base):
    """A person or robot with API tokens."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    disabled_at: Mapped[datetime | None]


class ApiToken(Base):
    """An API token: only its SHA-256 is stored; the token itself is shown once."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class LoginSession(Base):
    """A browser's login, named by the SHA-256 of the random id its cookie carries.

    Logging out sets `revoked_at`, so a copied cookie stops working at once; revoking the
    token behind it ends it too (the lookup joins `api_tokens`).
    """

    __tablename__ = "sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_id: Mapped[int] = mapped_column(
        ForeignKey("api_tokens.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class Repository(Base):
    """A repository; its mirror is on disk at `{data}/repos/ab/cd/{id}.git` (`storage.py`)."""

    __tablename__ = "repositories"

    __table_args__ = (
        # A host's own id: how a renamed or re-added repository keeps its id here.
        Index(
            "uq_repositories_external",
            "external_kind",
            "external_host",
            "external_id",
            unique=True,
        ),
        # Lists page through live repositories by name: without it SQLite sorted every
        # live row on every page (`python -m bench access`).
        Index("ix_repositories_live_by_name", "deleted_at", "name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    visibility: Mapped[Visibility] = mapped_column(_enum(Visibility, "visibility"))
    description: Mapped[str] = mapped_column(Text, server_default="")
    source_url: Mapped[str | None] = mapped_column(Text)
    default_branch: Mapped[str | None] = mapped_column(String(255))
    size_bytes: Mapped[int] = mapped_column(BigInteger, server_default="0")
    is_empty: Mapped[bool] = mapped_column(server_default=true())
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # Set when no code host connection yields it any more; the row (and its id) stays.
    deleted_at: Mapped[datetime | None] = mapped_column(index=True)
    external_kind: Mapped[str | None] = mapped_column(String(16))
    external_host: Mapped[str | None] = mapped_column(String(255))
    external_id: Mapped[str | None] = mapped_column(String(255))
    fork: Mapped[bool] = mapped_column(server_default=false())
    archived: Mapped[bool] = mapped_column(server_default=false())
    # Go module paths under the root map to this repository; an admin's root wins over the
    # default one, which follows the source URL (`github.com/owner/name`).
    go_import_root: Mapped[str | None] = mapped_column(String(500), index=True)
    go_default_root: Mapped[str | None] = mapped_column(String(500), index=True)


class ImportStatus(enum.StrEnum):
    """Where an import job is: pending → running → success | failed | cancelled."""

    pending = "pending"
    running = "running"
    success = "success"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        """Whether the job has ended."""
        return self in (ImportStatus.success, ImportStatus.failed, ImportStatus.cancelled)


class ImportJob(Base):
    """A durable import job; progress columns are written at most once a second."""

    __tablename__ = "import_jobs"

    __table_args__ = (
        Index(
            "uq_import_jobs_live_target",
            "target",
            unique=True,
            sqlite_where=text("status IN ('pending', 'running')"),
            postgresql_where=text("status IN ('pending', 'running')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text)  # never with credentials
    owner: Mapped[str] = mapped_column(String(100))
    slug: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(201))
    visibility: Mapped[Visibility] = mapped_column(_enum(Visibility, "visibility"))
    requested_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    has_secret: Mapped[bool] = mapped_column(server_default=false())
    status: Mapped[ImportStatus] = mapped_column(_enum(ImportStatus, "import_status"), index=True)
    phase: Mapped[str] = mapped_column(String(40), server_default="queued")
    percent: Mapped[float] = mapped_column(server_default="0")
    received_objects: Mapped[int] = mapped_column(BigInteger, server_default="0")
    total_objects: Mapped[int] = mapped_column(BigInteger, server_default="0")
    received_bytes: Mapped[int] = mapped_column(BigInteger, server_default="0")
    resolved_deltas: Mapped[int] = mapped_column(BigInteger, server_default="0")
    total_deltas: Mapped[int] = mapped_column(BigInteger, server_default="0")
    throughput: Mapped[float] = mapped_column(server_default="0")
    eta_seconds: Mapped[float | None]
    error: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(server_default="0")
    worker_id: Mapped[str | None] = mapped_column(String(200))
    seq: Mapped[int] = mapped_column(BigInteger, server_default="0")
    heartbeat_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    repository_id: Mapped[int | None] = mapped_column(
        ForeignKey("repositories.id", ondelete="SET NULL")
    )


class ImportSecret(Base):
    """An import's credential, encrypted; kept by its repository when the job succeeds.

    At the end of the job it becomes the repository's `RepositoryCredential`, or is
    deleted (failure, cancel).
    """

    __tablename__ = "import_secrets"

    job_id: Mapped[int] = mapped_column(
        ForeignKey("import_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    username: Mapped[str] = mapped_column(Text)
    sealed_token: Mapped[str] = mapped_column(Text)


class RepositoryCredential(Base):
    """A repository's own fetch credential, sealed; sent only to `origin`.

    An import's token becomes one, so a private import keeps fetching; an owner or an
    admin replaces or removes it. It wins over a code host connection's token.
    """

    __tablename__ = "repository_credentials"

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    username: Mapped[str] = mapped_column(Text)
    sealed_token: Mapped[str] = mapped_column(Text)
    # scheme://host:port of the source URL it was given for: a changed URL gets no token.
    origin: Mapped[str] = mapped_column(String(300))
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())


class AuditEntry(Base):
    """Who did what to which target, and when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(255))
    details: Mapped[str] = mapped_column(Text, server_default="{}")


class CodeHostKind(enum.StrEnum):
    """The kinds of code host a connection can list repositories from."""

    github = "github"
    gitlab = "gitlab"
    gitea = "gitea"
    other = "other"


class SyncStatus(enum.StrEnum):
    """How a sync ended: applied, failed, applied without its held deletions, over the limit."""

    success = "success"
    failed = "failed"
    held = "held"
    over_limit = "over_limit"


class CodeHost(Base):
    """A code host connection: what to list, how, and how its last sync went."""

    __tablename__ = "code_hosts"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[CodeHostKind] = mapped_column(_enum(CodeHostKind, "code_host_kind"))
    name: Mapped[str] = mapped_column(String(100), unique=True)
    config: Mapped[str] = mapped_column(Text)  # JSON without the token
    sealed_token: Mapped[str | None] = mapped_column(Text)  # SecretBox-encrypted
    sealed_webhook_secret: Mapped[str | None] = mapped_column(Text)  # SecretBox-encrypted
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    next_sync_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None]
    last_sync_at: Mapped[datetime | None]
    last_status: Mapped[SyncStatus | None] = mapped_column(_enum(SyncStatus, "sync_status"))
    last_error: Mapped[str | None] = mapped_column(Text)
    held_deletions: Mapped[str | None] = mapped_column(Text)  # JSON list of repository ids
    # The digest of the last listing applied in full, and when: an identical listing
    # within FULL_DIFF_EVERY skips the diff against the table.
    applied_digest: Mapped[str | None] = mapped_column(String(64))
    applied_at: Mapped[datetime | None]


class CodeHostSync(Base):
    """One sync of a connection: what it changed, what it cost."""

    __tablename__ = "code_host_syncs"

    id: Mapped[int] = mapped_column(primary_key=True)
    code_host_id: Mapped[int] = mapped_column(
        ForeignKey("code_hosts.id", ondelete="CASCADE"), index=True
    )
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime]
    status: Mapped[SyncStatus] = mapped_column(_enum(SyncStatus, "sync_status"))
    yielded: Mapped[int] = mapped_column(server_default="0")
    added: Mapped[int] = mapped_column(server_default="0")
    modified: Mapped[int] = mapped_column(server_default="0")
    deleted: Mapped[int] = mapped_column(server_default="0")
    unchanged: Mapped[int] = mapped_column(server_default="0")
    held: Mapped[int] = mapped_column(server_default="0")
    skipped: Mapped[int] = mapped_column(server_default="0")
    api_calls: Mapped[int] = mapped_column(server_default="0")
    not_modified: Mapped[int] = mapped_column(server_default="0")
    duration_ms: Mapped[int] = mapped_column(BigInteger, server_default="0")
    error: Mapped[str | None] = mapped_column(Text)
    warnings: Mapped[str] = mapped_column(Text, server_default="[]")


class RepoSource(Base):
    """Which connections yield a repository, and the clone URL each gives."""

    __tablename__ = "repo_sources"

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    code_host_id: Mapped[int] = mapped_column(
        ForeignKey("code_hosts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    clone_url: Mapped[str] = mapped_column(Text)


class CloneStatus(enum.StrEnum):
    """Where a repository's mirror is: not_cloned → cloning → cloned | failed."""

    not_cloned = "not_cloned"
    cloning = "cloning"
    cloned = "cloned"
    failed = "failed"


class GitserverRepo(Base):
    """A repository's mirror on a storage node, and its update schedule (durable)."""

    __tablename__ = "gitserver_repos"

    # The queue's two walks: queued by priority, then due by time (NULL priority).
    __table_args__ = (
        Index("ix_gitserver_repos_queue", "queued_priority", "next_update_at"),
        Index(
            "ix_gitserver_repos_moves",
            "move_to",
            postgresql_where=text("move_to IS NOT NULL"),
            sqlite_where=text("move_to IS NOT NULL"),
        ),
    )

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    # The owning storage node's name (`storage_nodes.name`, no foreign key: a mirror's row
    # outlives its node's removal until it is placed again). Named before nodes existed.
    shard: Mapped[str] = mapped_column(String(64), server_default="local")
    clone_status: Mapped[CloneStatus] = mapped_column(
        _enum(CloneStatus, "clone_status"), server_default="not_cloned"
    )
    last_fetched_at: Mapped[datetime | None]
    last_changed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    failure_kind: Mapped[str | None] = mapped_column(String(16))
    refs_digest: Mapped[str | None] = mapped_column(String(64))
    maintained_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # The schedule: when next, why, and the queue entry (one per repository).
    interval_seconds: Mapped[float] = mapped_column(server_default="0")
    next_update_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
    schedule_reason: Mapped[str] = mapped_column(String(32), server_default="new")
    failures: Mapped[int] = mapped_column(server_default="0")
    failing: Mapped[bool] = mapped_column(server_default=false())
    queued_priority: Mapped[int | None]  # 0 new, 1 asked for
    queued_reason: Mapped[str | None] = mapped_column(String(16))
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None]
    # A move (`nodes.moves`): the node the mirror is being copied to, the node it was on
    # before its last move or relocation, and when `shard` last changed.
    move_to: Mapped[str | None] = mapped_column(String(64))
    moved_from: Mapped[str | None] = mapped_column(String(64))
    placed_at: Mapped[datetime | None]


class GoVersion(Base):
    """A module version the Go proxy has served, pinned to its first commit for good.

    A tag that later moves keeps serving this commit (go.sum and the checksum database
    pin the first bytes); the move is recorded in `moved_to`.
    """

    __tablename__ = "go_versions"

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    module: Mapped[str] = mapped_column(String(500), primary_key=True)
    version: Mapped[str] = mapped_column(String(255), primary_key=True)
    commit: Mapped[str] = mapped_column(String(40))
    commit_time: Mapped[int] = mapped_column(BigInteger)
    ref: Mapped[str] = mapped_column(String(500))
    subdir: Mapped[str] = mapped_column(String(500))
    first_served_at: Mapped[datetime]
    moved_to: Mapped[str | None] = mapped_column(String(40))
    moved_at: Mapped[datetime | None]


class UpstreamSync(Base):
    """A repository's upstream: where, which branches, its credential and fetch schedule.

    The upstream is a URL (checked by the outbound policy at every fetch) or another
    repodepot repository. Its tracked branches are fetched into `refs/upstream/…` of
    the mirror, which clients never see.
    """

    __tablename__ = "upstream_syncs"

    repository_id: Mapped[int] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True
    )
    url: Mapped[str | None] = mapped_column(Text)  # without credentials
    upstream_repository_id: Mapped[int | None] = mapped_column(
        ForeignKey("repositories.id", ondelete="SET NULL"), index=True
    )
    branches: Mapped[str] = mapped_column(Text)  # JSON list of specs: "main", "rel/*", "a:b"
    automatic: Mapped[bool] = mapped_column(server_default=false())  # a fork's parent
    # An automatic upstream someone removed: kept so that syncs do not set it again.
    dismissed: Mapped[bool] = mapped_column(server_default=false())
    # Moves on each change of the configuration: a fetch records its outcome only if the
    # upstream it fetched is still the one configured.
    generation: Mapped[int] = mapped_column(server_default="0")
    username: Mapped[str | None] = mapped_column(Text)
    sealed_token: Mapped[str | None] = mapped_column(Text)  # SecretBox-encrypted
    token_origin: Mapped[str | None] = mapped_column(String(300))  # the only origin it goes to
    interval_seconds: Mapped[float] = mapped_column(server_default="900")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(server_default=func.now())
    next_fetch_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
    requested: Mapped[bool] = mapped_column(server_default=false())  # "fetch now"
    last_fetched_at: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]  # the last fetch's end, failed or not
    last_changed_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    error_kind: Mapped[str | None] = mapped_column(String(16))
    failures: Mapped[int] = mapped_column(server_default="0")
    # The last fetch's duration by part, milliseconds (trace2 regions; db measured here).
    network_ms: Mapped[int | None]
    pack_ms: Mapped[int | None]
    refs_ms: Mapped[int | None]
    db_ms: Mapped[int | None]
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[datetime | None]


class BranchSyncStatus(Base):
    """One tracked branch of a repository against its upstream branch, as last computed.

    Both commits and the counts between them: a pair's counts never change, so a row is
    recomputed only when one of its commits moves. A branch gone on both sides keeps its
    row, marked deleted, for 30 days (the janitor prunes it then).
    """

    __tablename__ = "branch_sync_status"
    __table_args__ = (
        UniqueConstraint(
            "repository_id", "branch", "upstream_branch", name="uq_branch_sync_status_branch"
        ),
        # The org-wide "behind upstream" question reads only these rows.
        Index(
            "ix_branch_sync_status_needs_pull",
            "repository_id",
            "branch",
            sqlite_where=text("needs_pull = 1 AND deleted_at IS NULL"),
            postgresql_where=text("needs_pull = true AND deleted_at IS NULL"),
        ),
        # The janitor's prune reads only the few rows marked deleted.
        Index(
            "ix_branch_sync_status_deleted",
            "deleted_at",
            sqlite_where=text("deleted_at IS NOT NULL"),
            postgresql_where=text("deleted_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # Tied to the upstream, not only the repository: no pair outlives its upstream, even
    # one a fetch in flight writes as the upstream is removed.
    repository_id: Mapped[int] = mapped_column(
        ForeignKey("upstream_syncs.repository_id", ondelete="CASCADE")
    )
    branch: Mapped[str] = mapped_column(String(255))
    upstream_branch: Mapped[str] = mapped_column(String(255))
    local_sha: Mapped[str | None] = mapped_column(String(40))
    upstream_sha: Mapped[str | None] = mapped_column(String(40))
    ahead: Mapped[int | None]
    behind: Mapped[int | None]
    needs_pull: Mapped[bool] = mapped_column(server_default=false())
    needs_push: Mapped[bool] = mapped_column(server_default=false())
    diverged: Mapped[bool] = mapped_column(server_default=false())
    missing: Mapped[bool] = mapped_column(server_default=false())
    computed_at: Mapped[datetime]
    deleted_at: Mapped[datetime | None]


class CacheEpoch(Base):
    """A group of cached tables and how often its rows changed (bumped by triggers, SQLite).

    Migration 0009's triggers write it; `repodepot.caches` reads it to learn, within a
    second, that another process changed identity or repository rows.
    """

    __tablename__ = "cache_epochs"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    epoch: Mapped[int] = mapped_column(BigInteger, server_default="0")


class Group(Base):
    """A named set of users that grants are given to (`access` owns it)."""

    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class GroupMember(Base):
    """A user in a group."""

    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class GrantRole(enum.StrEnum):
    """What a grant allows: reading (the only role so far)."""

    read = "read"


class GrantSource(enum.StrEnum):
    """Where a grant comes from: given here, or listed by a code host's permission sync."""

    manual = "manual"
    codehost = "codehost"


MANUAL_USER_GRANT = "repository_id IS NOT NULL AND user_id IS NOT NULL AND source = 'manual'"


class RepositoryGrant(Base):
    """`role` on one repository to a user or a group, or on every repository of a connection.

    Exactly one of `user_id`/`group_id`, exactly one of `repository_id`/`code_host_id`,
    and a connection-wide grant goes to a group. A `codehost` grant names the connection
    whose permission sync keeps it (`kept_by`): it goes with that connection, and one
    connection's sync never touches another's. The partial unique indexes keep one
    manual grant per (repository, grantee) and one `codehost` grant per connection.
    """

    __tablename__ = "repository_grants"
    __table_args__ = (
        Index(
            "uq_repository_grants_user",
            "repository_id",
            "user_id",
            unique=True,
            sqlite_where=text(MANUAL_USER_GRANT),
            postgresql_where=text(MANUAL_USER_GRANT),
        ),
        Index(
            "uq_repository_grants_kept",
            "kept_by",
            "user_id",
            "repository_id",
            unique=True,
            sqlite_where=text("kept_by IS NOT NULL"),
            postgresql_where=text("kept_by IS NOT NULL"),
        ),
        Index(
            "uq_repository_grants_group",
            "repository_id",
            "group_id",
            "source",
            unique=True,
            sqlite_where=text("repository_id IS NOT NULL AND group_id IS NOT NULL"),
            postgresql_where=text("repository_id IS NOT NULL AND group_id IS NOT NULL"),
        ),
        Index(
            "uq_repository_grants_code_host",
            "code_host_id",
            "group_id",
            unique=True,
            sqlite_where=text("code_host_id IS NOT NULL"),
            postgresql_where=text("code_host_id IS NOT NULL"),
        ),
        Index("ix_repository_grants_user_id", "user_id", "repository_id"),
        Index("ix_repository_grants_group_id", "group_id", "repository_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    repository_id: Mapped[int | None] = mapped_column(
        ForeignKey("repositories.id", ondelete="CASCADE")
    )
    code_host_id: Mapped[int | None] = mapped_column(
        ForeignKey("code_hosts.id", ondelete="CASCADE")
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    group_id: Mapped[int | None] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"))
    role: Mapped[GrantRole] = mapped_column(_enum(GrantRole, "grant_role"))
    source: Mapped[GrantSource] = mapped_column(_enum(GrantSource, "grant_source"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    kept_by: Mapped[int | None] = mapped_column(ForeignKey("code_hosts.id", ondelete="CASCADE"))


class CodeHostAccount(Base):
    """A user's own account on a connection's host: the token permission sync lists with.

    `rejected_since`: when the host first refused the token (its `codehost` grants stop
    after the grace period); cleared by a sync that succeeds.
    """

    __tablename__ = "code_host_accounts"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    code_host_id: Mapped[int] = mapped_column(
        ForeignKey("code_hosts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    sealed_token: Mapped[str] = mapped_column(Text)  # SecretBox-encrypted
    linked_at: Mapped[datetime] = mapped_column(server_default=func.now())
    next_sync_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)
    last_sync_at: Mapped[datetime | None]
    last_status: Mapped[str | None] = mapped_column(String(16))
    last_error: Mapped[str | None] = mapped_column(Text)
    rejected_since: Mapped[datetime | None]
    readable: Mapped[int] = mapped_column(server_default="0")  # repositories granted last


class NodeState(enum.StrEnum):
    """Where a storage node is: active, draining or dead.

    `active` takes repositories, `draining` gives its own away (an admin's word), `dead`
    missed its heartbeats for `node_dead_after` (its repositories go elsewhere).
    """

    active = "active"
    draining = "draining"
    dead = "dead"


class StorageNode(Base):
    """A gitserver process with its own data dir: where mirrors live (`nodes.registry`).

    Registered by the process as it starts; its heartbeat (with the data dir's free
    space) every `node_heartbeat_interval`. `weight` scales its share of repositories.
    """

    __tablename__ = "storage_nodes"
    __table_args__ = (CheckConstraint("weight > 0", name="weight_positive"),)

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str | None] = mapped_column(String(300))  # internal base URL, if given
    state: Mapped[NodeState] = mapped_column(
        _enum(NodeState, "node_state"), server_default="active"
    )
    weight: Mapped[float] = mapped_column(server_default="1")
    heartbeat_at: Mapped[datetime] = mapped_column(server_default=func.now())
    free_bytes: Mapped[int | None] = mapped_column(BigInteger)  # its data dir's file system
    registered_at: Mapped[datetime] = mapped_column(server_default=func.now())
    # An admin drained it: it is `draining` again, not `active`, when it comes back from dead.
    drained: Mapped[bool] = mapped_column(server_default=false())
