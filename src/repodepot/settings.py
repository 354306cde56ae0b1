"""All configuration, read in one place: `REPODEPOT_*` variables and an optional TOML file.

Precedence, highest first: command-line overrides, environment, the TOML file
given with `--config`, defaults. Nothing else in repodepot reads the environment.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from repodepot.exceptions import ConfigurationError

ENV_PREFIX = "REPODEPOT_"
ROLES = frozenset({"web", "worker", "updater", "gitserver"})
NODE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?")
NODE_NAME_RULE = (
    "a node name is 1-64 lowercase letters, digits, '.', '_' or '-', "
    "starting and ending with a letter or digit"
)
INTERNAL_SECRET_MIN = 32
SUPPORTED_SCHEMES = frozenset({"https", "http", "ssh", "git"})
_HOSTNAME = re.compile(r"(?=.{1,253}\Z)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?)+")

CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """repodepot's configuration; see README "Configuration" for each variable."""

    # validate_by_name: `node_name` has aliases (its environment names), and overrides,
    # the TOML file and model_copy still give it by name.
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, validate_by_name=True
    )

    data_dir: Path = Field(
        Path("./repodepot-data"),
        description="Where repositories, the SQLite database and the secret key live.",
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default a SQLite file in the data dir."
    )
    listen: str = Field("127.0.0.1:8080", description="HOST:PORT the server listens on.")
    admin_token: SecretStr | None = Field(
        None, description="Token of the admin created on first start."
    )
    secret_key: SecretStr | None = Field(
        None,
        description="Signs sessions and encrypts secrets; generated into the data dir if unset.",
    )
    allowed_schemes: CommaList = Field(
        ["https"], description="URL schemes git may use for outbound fetches."
    )
    outbound_allowlist: CommaList = Field(
        [], description="Hosts or CIDR networks reachable although loopback or private."
    )
    roles: CommaList = Field(
        ["web", "worker", "updater", "gitserver"],
        description="What this process runs: web (API, pages, git reads), worker (imports), "
        "updater (once per cluster: code host and permission syncs), gitserver (this node's "
        "mirrors: updates, upstream fetches, the janitor, its heartbeat).",
    )
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    git_binary: str = "git"
    git_timeout: float = Field(
        600.0, gt=0, description="Default timeout of one git command, seconds."
    )
    session_max_age: int = Field(
        14 * 24 * 3600, gt=0, description="Lifetime of a login session, seconds."
    )
    session_https_only: bool = Field(False, description="Mark the session cookie Secure.")
    db_pool_size: int = Field(10, ge=1, le=200)
    worker_db_pool_size: int = Field(
        4, ge=1, le=50, description="Connections kept for workers' writes."
    )
    import_concurrency: int = Field(
        2, ge=1, le=64, description="Imports running at once per worker."
    )
    import_queue_max: int = Field(100, ge=1, description="Pending imports before new ones get 429.")
    import_stall_timeout: float = Field(
        300.0, gt=0, description="Seconds without progress before an import fails."
    )
    import_heartbeat: float = Field(
        5.0, gt=0, description="Seconds between a running import's heartbeats."
    )
    sync_interval: float = Field(
        300.0, gt=0, description="Seconds between two syncs of one code host connection."
    )
    sync_poll_interval: float = Field(
        2.0, gt=0, description="Seconds between the syncer's checks for due connections."
    )
    permissions_sync_interval: float = Field(
        3600.0, gt=0, description="Seconds between two permission syncs of a linked account."
    )
    permissions_rejected_grace: float = Field(
        86400.0,
        ge=0,
        description="Seconds a linked account's grants outlive the host's refusal of its token.",
    )
    codehost_requests_per_second: float = Field(
        10.0, gt=0, description="API requests per second to one code host connection, at most."
    )
    codehost_max_concurrent_requests: int = Field(
        8, ge=1, le=256, description="Code host API calls in flight at once, site-wide."
    )
    codehost_request_timeout: float = Field(
        30.0, gt=0, description="Seconds one code host API call may take, its body included."
    )
    codehost_max_response_bytes: int = Field(
        32 << 20, ge=1024, description="Bytes of one code host API answer, at most (inflated)."
    )
    codehost_retries: int = Field(
        5, ge=0, le=20, description="Retries of a 5xx or connection error before a sync fails."
    )
    codehost_retry_base: float = Field(
        1.0, gt=0, description="First backoff of a retried API call, seconds; doubled each time."
    )
    codehost_max_rate_limit_wait: float = Field(
        900.0,
        ge=0,
        description="Longest wait for a code host's rate limit to reset before a sync fails.",
    )
    sync_purge_threshold_percent: float = Field(
        5.0,
        ge=0,
        le=100,
        description="Deletions above this share of a connection's repositories are held.",
    )
    sync_purge_threshold_min: int = Field(
        20, ge=0, description="Deletions up to this many are never held."
    )
    max_repos_per_site: int = Field(
        20000, ge=1, description="Repositories from code host connections, at most (all)."
    )
    max_concurrent_clones: int = Field(
        default_factory=lambda: max(2, os.cpu_count() or 2),
        ge=1,
        le=256,
        description="Clones and fetches running at once (default: the CPU count, at least 2).",
    )
    max_clones_per_host: int = Field(
        2, ge=1, le=256, description="Clones and fetches running at once against one host."
    )
    update_min_interval: float = Field(
        45.0, gt=0, description="Shortest time between two updates of a mirror, seconds."
    )
    update_max_interval: float = Field(
        8 * 3600.0, gt=0, description="Longest time between two updates of a mirror, seconds."
    )
    update_failures_before_failing: int = Field(
        10, ge=1, description="Consecutive failures after which a mirror is marked failing."
    )
    update_stall_timeout: float = Field(
        300.0, gt=0, description="Seconds without git progress before a clone or fetch is killed."
    )
    update_poll_interval: float = Field(
        1.0, gt=0, description="Seconds between the updater's looks for due mirrors."
    )
    # REPODEPOT_SHARD is the setting's old name: a deployment that set it keeps its node.
    node_name: str = Field(
        "local",
        validation_alias=AliasChoices(f"{ENV_PREFIX}NODE_NAME", f"{ENV_PREFIX}SHARD"),
        description="This storage node's name: the owner of the mirrors in its data dir "
        "(gitserver_repos.shard), its row in storage_nodes (REPODEPOT_SHARD: the old name).",
    )
    node_url: str | None = Field(
        None,
        validate_default=True,
        description="This gitserver process's internal base URL, http(s)://HOST:PORT, that "
        "other processes reach it at; optional when the process also has the web role.",
    )
    internal_secret: SecretStr | None = Field(
        None,
        description=f"Carried by the internal calls between processes, at least "
        f"{INTERNAL_SECRET_MIN} characters; the same in every process of a cluster.",
    )
    node_dead_after: float = Field(
        60.0, gt=0, description="Seconds without a heartbeat after which a node is dead."
    )
    node_heartbeat_interval: float = Field(
        10.0,
        gt=0,
        description="Seconds between a gitserver's heartbeats: under half of node_dead_after.",
    )
    node_moves: int = Field(
        4,
        ge=1,
        le=64,
        description="Moves of mirrors between storage nodes in flight at once, cluster-wide "
        "(each copies one repository from its old node): the rate of a rebalance or a drain.",
    )
    node_move_grace: float = Field(
        600.0,
        ge=0,
        description="Seconds a node keeps a mirror's copy after it moved to another node, for "
        "the reads that were sent to it before the move.",
    )
    janitor_interval: float = Field(
        600.0, gt=0, description="Seconds between two passes of the janitor."
    )
    maintenance_interval: float = Field(
        24 * 3600.0, gt=0, description="Seconds between two `git maintenance` runs of a mirror."
    )
    deleted_grace: float = Field(
        7 * 24 * 3600.0,
        ge=0,
        description="Seconds a soft-deleted repository's mirror is kept before removal.",
    )
    disk_min_free_percent: float = Field(
        5.0, ge=0, le=100, description="Below this share of free disk, new clones wait."
    )
    exec_timeout: float = Field(
        30.0, gt=0, description="Seconds an exec (a tool's read-only git command) may run."
    )
    exec_max_bytes: int = Field(
        64 << 20, ge=1, description="Output of one exec, at most; longer output is cut."
    )
    exec_max_memory: int = Field(
        1 << 30,
        ge=16 << 20,
        description="Heap one exec's git may allocate (RLIMIT_DATA), bytes; past it git fails.",
    )
    exec_max_concurrent: int = Field(
        8, ge=1, le=1024, description="Execs running at once in this process (429 past it)."
    )
    exec_max_per_user: int = Field(
        2, ge=1, le=1024, description="Execs one user may run at once (429 past it)."
    )
    fetch_extra_refspecs: CommaList = Field(
        [],
        description="Refspecs fetched besides heads and tags, e.g. +refs/pull/*:refs/pull/*.",
    )
    update_on_visit_after: float = Field(
        300.0,
        gt=0,
        description="Opening a repository whose mirror is older than this queues an update, s.",
    )

    upstream_interval: float = Field(
        900.0,
        ge=60,
        description="Default time between two fetches of a repository's upstream, seconds "
        "(the shortest: a quiet upstream is fetched less often, up to upstream_max_interval).",
    )
    upstream_max_interval: float = Field(
        6 * 3600.0, gt=0, description="Longest time between two fetches of an upstream, seconds."
    )
    upstream_max_concurrent: int = Field(
        default_factory=lambda: max(1, (os.cpu_count() or 2) - 1),
        ge=1,
        le=256,
        description="Upstream fetches running at once (default: the CPU count less one).",
    )
    upstream_from_fork_parent: bool = Field(
        True,
        description="A code host fork whose parent is mirrored here tracks that parent.",
    )
    branch_pair_cache_size: int = Field(
        200_000,
        ge=0,
        description="Ahead/behind answers kept in memory, by commit pair (about 200 B each).",
    )
    branch_deleted_retention: float = Field(
        30 * 24 * 3600.0,
        ge=0,
        description="Seconds a tracked branch gone on both sides keeps its row.",
    )

    background_concurrency: int = Field(
        default_factory=lambda: max(1, (os.cpu_count() or 2) - 1),
        ge=1,
        le=256,
        description="Background git (mirror and upstream fetches, maintenance) running at once, "
        "within max_concurrent_clones and upstream_max_concurrent (default: CPU count less one).",
    )
    background_nice: bool = Field(
        True,
        description="Run background git with nice 19 and the idle I/O class (ionice -c3).",
    )
    backpressure_load: float = Field(
        default_factory=lambda: float(os.cpu_count() or 1),
        ge=0,
        description="Start no new background work while the one-minute load average is above "
        "this (default: the CPU count; 0 turns the load signal off).",
    )
    backpressure_p99: float = Field(
        0.5,
        ge=0,
        description="Start no new background work while the p99 of the last 30 s of requests "
        "is above this many seconds (0 turns the latency signal off).",
    )
    reader_pool_budget_mib: int = Field(
        256,
        ge=1,
        le=65536,
        description="Memory the long-lived per-repository git readers may use together, MiB "
        "(their resident set, measured); the least recently used is ended past it.",
    )
    reader_idle_ttl: float = Field(
        300.0, gt=0, description="Seconds a long-lived git reader may sit idle before it ends."
    )
    sqlite_optimize_interval: float = Field(
        3600.0, gt=0, description="Seconds between two `PRAGMA optimize` runs on SQLite."
    )
    identity_cache_ttl: float = Field(
        30.0,
        ge=0,
        description="Seconds a token's or repository's lookup is kept in memory; changes made "
        "through repodepot invalidate it at once (0 turns the caches off).",
    )

    git_sandbox: Literal["bwrap", "none"] = Field(
        "bwrap",
        description="Run git commands a user's input reaches inside bubblewrap (bwrap) or not.",
    )
    ensure_fetch_interval: float = Field(
        30.0,
        ge=0,
        description="Seconds between two fetches of one repository for unknown revisions.",
    )
    import_queue_per_user: int = Field(
        10, ge=1, description="Pending and running imports of one member, at most."
    )
    request_max_bytes: int = Field(
        1 << 20, ge=1024, description="Largest JSON or form request body, bytes (413 past it)."
    )
    trusted_proxies: CommaList = Field(
        [],
        description="CIDR networks of reverse proxies whose X-Forwarded-Proto is believed.",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Overrides beat the environment, which beats the TOML file."""
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @field_validator(
        "allowed_schemes",
        "outbound_allowlist",
        "roles",
        "fetch_extra_refspecs",
        "trusted_proxies",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("allowed_schemes")
    @classmethod
    def _known_schemes(cls, value: list[str]) -> list[str]:
        schemes = [scheme.lower() for scheme in value]
        unknown = sorted(set(schemes) - SUPPORTED_SCHEMES)
        if unknown:
            raise ValueError(
                f"unsupported scheme {', '.join(unknown)}; "
                f"choose from {', '.join(sorted(SUPPORTED_SCHEMES))}"
            )
        return schemes

    @field_validator("fetch_extra_refspecs")
    @classmethod
    def _refspecs(cls, value: list[str]) -> list[str]:
        for refspec in value:
            if not re.fullmatch(r"\+?refs/[A-Za-z0-9_./*-]+:refs/[A-Za-z0-9_./*-]+", refspec):
                raise ValueError(f"{refspec!r} is not a refspec like +refs/pull/*:refs/pull/*")
            if refspec.partition(":")[2].startswith(("refs/upstream/", "refs/upstream*", "refs/*")):
                raise ValueError(
                    f"{refspec!r} would write into refs/upstream/, which branch status keeps"
                )
        return value

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - ROLES)
        if unknown or not value:
            raise ValueError(
                f"roles are some of {', '.join(sorted(ROLES))}, not {', '.join(unknown) or 'none'}"
            )
        return value

    @field_validator("node_name")
    @classmethod
    def _node_name(cls, value: str) -> str:
        if not NODE_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is not a node name (REPODEPOT_NODE_NAME, or its old name "
                f"REPODEPOT_SHARD): {NODE_NAME_RULE}"
            )
        return value

    @field_validator("node_url")
    @classmethod
    def _node_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        roles = info.data.get("roles") or []
        if value is None:
            if "gitserver" in roles and "web" not in roles:
                raise ValueError(
                    "a gitserver process without the web role needs its internal address "
                    "(http://HOST:PORT), where the web processes reach it"
                )
            return None
        return internal_url(value)

    @field_validator("internal_secret")
    @classmethod
    def _secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < INTERNAL_SECRET_MIN:
            raise ValueError(f"must be at least {INTERNAL_SECRET_MIN} characters long")
        return value

    @field_validator("node_heartbeat_interval")
    @classmethod
    def _beats_before_death(cls, value: float, info: ValidationInfo) -> float:
        # At least two beats within node_dead_after: one may be late or lost (a slow
        # database, a pause) without a live node being taken for dead.
        dead_after = info.data.get("node_dead_after")
        if dead_after is not None and value >= dead_after / 2:
            raise ValueError(
                f"{value:g} s must be less than half of REPODEPOT_NODE_DEAD_AFTER "
                f"({dead_after:g} s), so that one late heartbeat does not make a node dead"
            )
        return value

    @field_validator("outbound_allowlist")
    @classmethod
    def _hosts_or_networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not _is_network(entry) and not _HOSTNAME.fullmatch(entry):
                raise ValueError(f"{entry!r} is neither a host name nor a CIDR network")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            if not _is_network(entry):
                raise ValueError(f"{entry!r} is not an address or CIDR network")
        return value

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        split_listen(value)
        return value

    @property
    def host(self) -> str:
        """The host part of `listen`."""
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        """The port part of `listen`."""
        return split_listen(self.listen)[1]

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL, defaulting to a SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'repodepot.db').resolve()}"


def split_listen(value: str) -> tuple[str, int]:
    """Split `HOST:PORT` (`[::1]:8080` for IPv6); raises ValueError naming the problem."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not HOST:PORT")
    return host, int(port)


def internal_url(value: str) -> str:
    """`http(s)://HOST[:PORT]` without a trailing slash; raises ValueError naming the problem.

    No path, query, fragment or user info: internal calls add their own paths, and a
    credential in the URL would end up in logs.
    """
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        raise ValueError(f"{value!r} is not a URL like http://10.0.0.5:8081") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{value!r} carries user info; internal calls use the internal secret")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{value!r} has a path, query or fragment; give only scheme, host, port")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    return True


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from overrides, environment and TOML file.

    Overrides that are None are ignored, so CLI options can be passed through as they are.
    Raises ConfigurationError naming the variable when a value is invalid.
    """
    given = {key: value for key, value in overrides.items() if value is not None}
    cls = Settings
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigurationError(f"config file {config_file} does not exist", field="--config")

        class FromFile(Settings):
            model_config = SettingsConfigDict(**{**Settings.model_config, "toml_file": config_file})

        cls = FromFile
    try:
        return cls(**given)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = _variable(error["loc"])
        raise ConfigurationError(f"{name}: {error['msg']}", field=name) from None


def _variable(loc: tuple[int | str, ...]) -> str:
    """The environment variable a validation error's location names ("settings": several)."""
    if not loc:
        return "settings"
    name = str(loc[0]).upper()
    # A field with aliases is reported by its first alias: the variable's full name already.
    return name if name.startswith(ENV_PREFIX) else ENV_PREFIX + name


def ensure_secret_key(settings: Settings) -> str:
    """Return the secret key, generating it into `{data_dir}/secret_key` on first start."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value()
    path = settings.data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    os.replace(tmp, path)  # never a half-written key
    return key


def process_path() -> str:
    """The PATH that child processes get (the rest of their environment is built, not inherited)."""
    return os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")  # noqa: TID251
