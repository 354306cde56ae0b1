"""The `repodepot` command: serve, and administer the database on this machine.

Administrative commands (`users`, `tokens`, `repos`, `codehosts`, `nodes`, `db`) work on the
database named by the settings directly, so they work before the server is up.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from repodepot import __version__
from repodepot.access import GrantRecord
from repodepot.accounts import operator
from repodepot.branches.loop import ClusterSources
from repodepot.branches.service import (
    MAX_PER_PAGE,
    BranchInfo,
    FetchOutcome,
    OrgRow,
    TrackedBranch,
    UpstreamInfo,
)
from repodepot.client import Client
from repodepot.codehosts.outcome import SyncOutcome
from repodepot.db import migrate
from repodepot.db.base import create_engine
from repodepot.db.models import Role, Visibility
from repodepot.exceptions import RepodepotError
from repodepot.gitserver.schedule import QueueReason
from repodepot.goproxy.records import ModuleSummary
from repodepot.logs import configure_logging
from repodepot.loops import new_worker_id
from repodepot.nodes import internal_reads
from repodepot.nodes.registry import NodeRecord
from repodepot.repositories import RepositoryRecord
from repodepot.services import Services
from repodepot.settings import Settings, load_settings

T = TypeVar("T")

out = Console()
err = Console(stderr=True)

app = typer.Typer(
    name="repodepot",
    help="Keep an organisation's git repositories close: mirror, import, serve.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
users_app = typer.Typer(help="Users and their roles.", no_args_is_help=True)
tokens_app = typer.Typer(help="API tokens (shown once, stored hashed).", no_args_is_help=True)
repos_app = typer.Typer(help="Repositories.", no_args_is_help=True)
goproxy_app = typer.Typer(help="The Go module proxy.", no_args_is_help=True)
scheduler_app = typer.Typer(
    help="The update scheduler: mirrors and their queue.", no_args_is_help=True
)
credential_app = typer.Typer(
    help="A repository's own fetch credential (sealed; never shown again).",
    no_args_is_help=True,
)
repos_app.add_typer(credential_app, name="credential")
upstream_app = typer.Typer(
    help="A repository's upstream: the branches it tracks, fetched and compared.",
    no_args_is_help=True,
)
codehosts_app = typer.Typer(
    help="Code host connections: where repositories are discovered.", no_args_is_help=True
)
groups_app = typer.Typer(help="Groups of users, that grants are given to.", no_args_is_help=True)
nodes_app = typer.Typer(
    help="Storage nodes: the gitserver processes that hold the mirrors.", no_args_is_help=True
)
grants_app = typer.Typer(
    help="Who besides its owner and admins may read a private repository.",
    no_args_is_help=True,
)
for sub, name in (
    (db_app, "db"),
    (users_app, "users"),
    (groups_app, "groups"),
    (grants_app, "grants"),
    (tokens_app, "tokens"),
    (repos_app, "repos"),
    (goproxy_app, "goproxy"),
    (codehosts_app, "codehosts"),
    (scheduler_app, "scheduler"),
    (nodes_app, "nodes"),
    (upstream_app, "upstream"),
):
    app.add_typer(sub, name=name)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="TOML file of settings (keys as REPODEPOT_* without the prefix).",
        dir_okay=False,
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Data directory [env REPODEPOT_DATA_DIR; default ./repodepot-data].",
        file_okay=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
FETCH_PARTS = ("network", "pack", "refs", "db")


class BranchSort(StrEnum):
    """How `branches` orders the list."""

    updated = "updated"
    name = "name"


class BranchState(StrEnum):
    """Which branches `branches` lists."""

    active = "active"
    stale = "stale"


def _settings(ctx: typer.Context, **overrides: Any) -> Settings:
    return load_settings(ctx.obj.get("config"), **overrides)


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run `work`; print a RepodepotError and its causes, then exit 1."""
    try:
        return asyncio.run(work)
    except RepodepotError as error:
        _fail(error)


def _fail(error: BaseException) -> NoReturn:
    err.print(f"[bold red]error:[/] {error}", highlight=False)
    cause = _cause(error)
    while cause is not None:
        err.print(f"  caused by: {cause}", highlight=False)
        cause = _cause(cause)
    raise typer.Exit(1)


def _cause(error: BaseException) -> BaseException | None:
    # `raise ... from None` means the context is not part of the story.
    return error.__cause__ or (None if error.__suppress_context__ else error.__context__)


async def _with_services(settings: Settings, work: Callable[[Services], Awaitable[T]]) -> T:
    services = await Services.open(settings)
    try:
        return await work(services)
    finally:
        await services.close()


def _print_json(value: Any) -> None:
    out.print_json(json.dumps(value, default=str))


@app.callback()
def root(
    ctx: typer.Context,
    config: ConfigOpt = None,
    log_format: Annotated[
        str | None, typer.Option(help="Log format: text or json [env REPODEPOT_LOG_FORMAT].")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="debug, info, warning or error [env REPODEPOT_LOG_LEVEL].")
    ] = None,
) -> None:
    """Keep an organisation's git repositories close: mirror, import, serve."""
    ctx.obj = {"config": config, "log_format": log_format, "log_level": log_level}


@app.command()
def version() -> None:
    """Print repodepot's version."""
    out.print(__version__)


@app.command()
def serve(
    ctx: typer.Context,
    data_dir: DataDirOpt = None,
    listen: Annotated[
        str | None,
        typer.Option(help="HOST:PORT to listen on [env REPODEPOT_LISTEN; default 127.0.0.1:8080]."),
    ] = None,
    roles: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated: web (API, pages, git reads), worker (imports), updater "
            "(code host and permission syncs, once per cluster), gitserver (this node's "
            "mirrors and heartbeat) [env REPODEPOT_ROLES; default all four].",
        ),
    ] = None,
) -> None:
    """Run the server: API, pages and the background roles asked for (all by default)."""
    import uvicorn

    from repodepot.web.app import create_app, settle_heap

    try:
        settings = _settings(
            ctx,
            data_dir=data_dir,
            listen=listen,
            roles=roles,
            log_format=ctx.obj["log_format"],
            log_level=ctx.obj["log_level"],
        )
    except RepodepotError as error:
        _fail(error)
    configure_logging(log_format=settings.log_format, level=settings.log_level)
    err.print(
        f"repodepot {__version__} on http://{settings.listen} "
        f"(roles {','.join(settings.roles)}; node {settings.node_name}; "
        f"data in {settings.data_dir.resolve()})",
        highlight=False,
    )
    app = create_app(settings)
    settle_heap()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        # asyncio's own loop, not uvloop: uvloop starts every git process with fork(),
        # which copies the server's page tables on the event loop's thread (p50 16 ms at
        # 200 MiB, against 1.5 ms for asyncio's vfork: `python -m bench spawn`); under the
        # load plan that was a third of the loop's time and a p50 of 900 ms. Feeding
        # uvloop's pipes from `subprocess.Popen` instead closed other threads'
        # descriptors under load.
        loop="asyncio",
        log_config=None,
        proxy_headers=False,
        server_header=False,
    )


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, data_dir: DataDirOpt = None) -> None:
    """Apply every pending migration (serve does this at start-up too)."""
    settings = _cli_settings(ctx, data_dir)

    async def work() -> tuple[str | None, str | None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(settings.sqlalchemy_url)
        try:
            before = await migrate.current_revision(engine)
            await migrate.upgrade(engine, data_dir=settings.data_dir)
            return before, await migrate.current_revision(engine)
        finally:
            await engine.dispose()

    before, after = _run(work())
    out.print(f"database at revision {after} (was {before or 'empty'})")


def _cli_settings(ctx: typer.Context, data_dir: Path | None) -> Settings:
    try:
        settings = _settings(ctx, data_dir=data_dir)
    except RepodepotError as error:
        _fail(error)
    configure_logging(log_format=settings.log_format, level="warning")
    return settings


@users_app.command("create")
def users_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Lowercase login name.")],
    role: Annotated[Role, typer.Option(help="admin or member.")] = Role.member,
    data_dir: DataDirOpt = None,
) -> None:
    """Create a user and print their first API token (shown once)."""
    settings = _cli_settings(ctx, data_dir)

    async def work(svc: Services) -> str:
        await svc.accounts.create_user(name, role)
        _, token = await svc.accounts.create_token(name, "initial")
        return token

    token = _run(_with_services(settings, work))
    out.print(f"created {role.value} {name!r}; their API token (shown once):")
    out.print(token, highlight=False)


@users_app.command("list")
def users_list(ctx: typer.Context, data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """List users."""
    settings = _cli_settings(ctx, data_dir)
    page = _run(_with_services(settings, lambda svc: svc.accounts.list_users(per_page=10_000)))
    if as_json:
        _print_json([asdict(user) for user in page.items])
        return
    table = Table("id", "name", "role", "created", "disabled")
    for user in page.items:
        table.add_row(
            str(user.id),
            user.name,
            user.role.value,
            f"{user.created_at:%Y-%m-%d %H:%M}",
            "yes" if user.disabled else "",
        )
    out.print(table)


@groups_app.command("create")
def groups_create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Lowercase group name.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Create an empty group."""
    settings = _cli_settings(ctx, data_dir)
    _run(_with_services(settings, lambda svc: svc.access.create_group(operator(), name)))
    out.print(f"created group {name!r}")


@groups_app.command("list")
def groups_list(ctx: typer.Context, data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """List groups with their members."""
    settings = _cli_settings(ctx, data_dir)
    groups = _run(_with_services(settings, lambda svc: svc.access.groups(operator())))
    if as_json:
        _print_json([asdict(group) for group in groups])
        return
    table = Table("name", "members")
    for group in groups:
        table.add_row(group.name, ", ".join(group.members))
    out.print(table)


@groups_app.command("add")
def groups_add(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(help="The group.")],
    user: Annotated[str, typer.Argument(help="The user to put in it.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Put a user in a group: the group's grants open to them at once."""
    settings = _cli_settings(ctx, data_dir)
    _run(_with_services(settings, lambda svc: svc.access.add_member(operator(), group, user)))
    out.print(f"{user!r} is in group {group!r}")


@groups_app.command("remove")
def groups_remove(
    ctx: typer.Context,
    group: Annotated[str, typer.Argument(help="The group.")],
    user: Annotated[str, typer.Argument(help="The user to take out of it.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Take a user out of a group: what its grants opened to them closes at once."""
    settings = _cli_settings(ctx, data_dir)
    _run(_with_services(settings, lambda svc: svc.access.remove_member(operator(), group, user)))
    out.print(f"{user!r} is no longer in group {group!r}")


@grants_app.command("list")
def grants_list(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The repository's name.")],
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The repository's grants: to whom, from where (manual, or a code host's sync)."""
    settings = _cli_settings(ctx, data_dir)

    async def work(svc: Services) -> list[GrantRecord]:
        repo = await svc.repositories.get(operator(), name)
        return await svc.access.grants_on(repo.id)

    grants = _run(_with_services(settings, work))
    if as_json:
        _print_json([asdict(grant) for grant in grants])
        return
    table = Table("id", "user", "group", "role", "source", "since")
    for grant in grants:
        table.add_row(
            str(grant.id),
            grant.user or "",
            grant.group or "",
            grant.role.value,
            grant.source.value,
            f"{grant.created_at:%Y-%m-%d %H:%M}",
        )
    out.print(table)


@grants_app.command("add")
def grants_add(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The repository's name.")],
    user: Annotated[str | None, typer.Option(help="Grant to this user.")] = None,
    group: Annotated[str | None, typer.Option(help="Grant to this group.")] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Let a user or a group (name one) read the repository."""
    settings = _cli_settings(ctx, data_dir)

    async def work(svc: Services) -> GrantRecord:
        repo = await svc.repositories.get(operator(), name)
        return await svc.access.grant(
            operator(), repository=(repo.id, repo.name), user=user, group=group
        )

    grant = _run(_with_services(settings, work))
    out.print(f"{name}: grant {grant.id} lets {_grantee(grant)} read it")


@grants_app.command("remove")
def grants_remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The repository's name.")],
    grant_id: Annotated[int, typer.Argument(help="The grant's id (`grants list`).")],
    data_dir: DataDirOpt = None,
) -> None:
    """Take a grant back: it closes at once."""
    settings = _cli_settings(ctx, data_dir)

    async def work(svc: Services) -> None:
        repo = await svc.repositories.get(operator(), name)
        await svc.access.revoke(operator(), (repo.id, repo.name), grant_id)

    _run(_with_services(settings, work))
    out.print(f"{name}: grant {grant_id} removed")


def _grantee(grant: GrantRecord) -> str:
    return f"user {grant.user!r}" if grant.user is not None else f"group {grant.group!r}"


@tokens_app.command("create")
def tokens_create(
    ctx: typer.Context,
    user: Annotated[str, typer.Option("--user", "-u", help="Whose token.")],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "cli",
    data_dir: DataDirOpt = None,
) -> None:
    """Create an API token and print it (shown once)."""
    settings = _cli_settings(ctx, data_dir)
    record, token = _run(
        _with_services(settings, lambda svc: svc.accounts.create_token(user, name))
    )
    err.print(f"token {record.id} {name!r} for {user!r} (shown once):", highlight=False)
    out.print(token, highlight=False)


@tokens_app.command("list")
def tokens_list(
    ctx: typer.Context,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Only this user's.")] = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List tokens (never the tokens themselves)."""
    settings = _cli_settings(ctx, data_dir)
    page = _run(
        _with_services(
            settings, lambda svc: svc.accounts.list_tokens(user_name=user, per_page=10_000)
        )
    )
    if as_json:
        _print_json([asdict(token) for token in page.items])
        return
    table = Table("id", "user", "name", "prefix", "created", "last used", "revoked")
    for token in page.items:
        table.add_row(
            str(token.id),
            token.user_name,
            token.name,
            token.prefix + "…",
            f"{token.created_at:%Y-%m-%d %H:%M}",
            f"{token.last_used_at:%Y-%m-%d %H:%M}" if token.last_used_at else "never",
            f"{token.revoked_at:%Y-%m-%d %H:%M}" if token.revoked_at else "",
        )
    out.print(table)


@tokens_app.command("revoke")
def tokens_revoke(
    ctx: typer.Context,
    token_id: Annotated[int, typer.Argument(help="The token's id (see tokens list).")],
    data_dir: DataDirOpt = None,
) -> None:
    """Revoke a token at once; sessions logged in with it end too."""
    settings = _cli_settings(ctx, data_dir)
    record = _run(_with_services(settings, lambda svc: svc.accounts.revoke_token(token_id)))
    out.print(f"revoked token {record.id} {record.name!r} of {record.user_name!r}")


@repos_app.command("list")
def repos_list(ctx: typer.Context, data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """List every repository (as an admin sees them)."""
    settings = _cli_settings(ctx, data_dir)

    page = _run(
        _with_services(settings, lambda svc: svc.repositories.list(operator(), per_page=10_000))
    )
    if as_json:
        _print_json([asdict(repo) for repo in page.items])
        return
    table = Table("id", "name", "owner", "visibility", "default branch", "size")
    for repo in page.items:
        table.add_row(
            str(repo.id),
            repo.name,
            repo.owner or "",
            repo.visibility.value,
            repo.default_branch or "",
            f"{repo.size_bytes:,}",
        )
    out.print(table)


ConnectionArg = Annotated[str, typer.Argument(help="The connection's id or name.")]


def _read_config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
        value = json.loads(text)
    except (OSError, ValueError) as error:
        _fail(RepodepotError(f"--config {path}: {error}", field="--config"))
    if not isinstance(value, dict):
        _fail(RepodepotError(f"--config {path}: a JSON object is expected", field="--config"))
    return value


@codehosts_app.command("add")
def codehosts_add(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(help="github, gitlab, gitea or other.")],
    name: Annotated[str, typer.Argument(help="A name for the connection.")],
    url: Annotated[str | None, typer.Option(help="The host's URL (config.url).")] = None,
    query: Annotated[
        list[str] | None,
        typer.Option(
            "--query",
            help="Repeatable: repositoryQuery (github, gitea) or projectQuery (gitlab).",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config-file", help="JSON config (see README); '-' reads stdin."),
    ] = None,
    token_stdin: Annotated[
        bool, typer.Option("--token-stdin", help="Read the API token from stdin (never argv).")
    ] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Add a connection; the running server syncs it within seconds."""
    settings = _cli_settings(ctx, data_dir)
    values = _read_config(config)
    if url is not None:
        values["url"] = url
    if query:
        values["projectQuery" if kind == "gitlab" else "repositoryQuery"] = query
    if token_stdin:
        values["token"] = sys.stdin.readline().strip()
    record = _run(
        _with_services(
            settings,
            lambda svc: svc.codehosts.create(operator(), kind=kind, name=name, config=values),
        )
    )
    token = "with a token" if record.token_set else "without a token"
    out.print(f"added {record.kind.value} connection {record.id} {record.name!r} ({token})")


@codehosts_app.command("grant")
def codehosts_grant(
    ctx: typer.Context,
    host_id: Annotated[int, typer.Argument(help="The connection's id (`codehosts list`).")],
    group: Annotated[str, typer.Option(help="The group that may read its repositories.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Let a group read every repository the connection yields, now and later."""
    settings = _cli_settings(ctx, data_dir)

    async def work(svc: Services) -> GrantRecord:
        await svc.codehosts.get(operator(), host_id)
        return await svc.access.grant(operator(), code_host_id=host_id, group=group)

    grant = _run(_with_services(settings, work))
    out.print(f"code host {host_id}: grant {grant.id} lets {_grantee(grant)} read its repositories")


@codehosts_app.command("list")
def codehosts_list(
    ctx: typer.Context, data_dir: DataDirOpt = None, as_json: JsonOpt = False
) -> None:
    """List connections with their last sync."""
    settings = _cli_settings(ctx, data_dir)
    records = _run(_with_services(settings, lambda svc: svc.codehosts.list(operator())))
    if as_json:
        _print_json([asdict(record) for record in records])
        return
    table = Table("id", "name", "kind", "url", "repos", "last sync", "status", "held", "error")
    for record in records:
        table.add_row(
            str(record.id),
            record.name,
            record.kind.value,
            str(record.config.get("url", "")),
            str(record.repo_count),
            f"{record.last_sync_at:%Y-%m-%d %H:%M:%S}" if record.last_sync_at else "never",
            record.last_status.value if record.last_status else "",
            str(record.held_deletions or ""),
            record.last_error or "",
        )
    out.print(table)


@codehosts_app.command("sync")
def codehosts_sync(
    ctx: typer.Context, connection: ConnectionArg, data_dir: DataDirOpt = None
) -> None:
    """Sync a connection here and now, and print what changed."""
    settings = _cli_settings(ctx, data_dir)

    async def work(svc: Services) -> SyncOutcome:
        record = await svc.codehosts.find(operator(), connection)
        return await svc.codehosts.syncer.sync_now(record.id)

    outcome = _run(_with_services(settings, work))
    out.print(
        f"{outcome.status.value}: {outcome.yielded} listed, {outcome.added} added, "
        f"{outcome.modified} modified, {outcome.deleted} deleted, {outcome.unchanged} unchanged, "
        f"{outcome.held} held; {outcome.api_calls} API calls in {outcome.duration_ms} ms",
        highlight=False,
    )
    for warning in outcome.warnings:
        err.print(f"warning: {warning}", highlight=False)
    if outcome.error:
        _fail(RepodepotError(outcome.error))


@codehosts_app.command("confirm-deletions")
def codehosts_confirm(
    ctx: typer.Context, connection: ConnectionArg, data_dir: DataDirOpt = None
) -> None:
    """Carry out the deletions purge protection held at the last sync."""
    settings = _cli_settings(ctx, data_dir)

    async def work(svc: Services) -> int:
        record = await svc.codehosts.find(operator(), connection)
        return await svc.codehosts.confirm_deletions(operator(), record.id)

    out.print(f"deleted {_run(_with_services(settings, work))} repositories")


@codehosts_app.command("remove")
def codehosts_remove(
    ctx: typer.Context, connection: ConnectionArg, data_dir: DataDirOpt = None
) -> None:
    """Remove a connection; repositories only it yielded are soft-deleted."""
    settings = _cli_settings(ctx, data_dir)

    async def work(svc: Services) -> tuple[str, int]:
        record = await svc.codehosts.find(operator(), connection)
        return record.name, await svc.codehosts.remove(operator(), record.id)

    name, deleted = _run(_with_services(settings, work))
    out.print(f"removed {name!r}; {deleted} repositories only it yielded were soft-deleted")


@scheduler_app.command("status")
def scheduler_status(
    ctx: typer.Context, data_dir: DataDirOpt = None, as_json: JsonOpt = False
) -> None:
    """Mirrors, queued and due updates, running ones, failing mirrors."""
    settings = _cli_settings(ctx, data_dir)
    status = _run(_with_services(settings, lambda svc: svc.gitserver.status()))
    if as_json:
        _print_json(asdict(status))
        return
    table = Table("mirrors", "cloned", "queued", "due", "running", "failing", "next due")
    table.add_row(
        str(status.mirrors),
        str(status.cloned),
        str(status.queued),
        str(status.due),
        str(status.running),
        str(status.failing),
        f"{status.next_due_at:%Y-%m-%d %H:%M:%S}" if status.next_due_at else "—",
    )
    out.print(table)


@nodes_app.command("list")
def nodes_list(ctx: typer.Context, data_dir: DataDirOpt = None, as_json: JsonOpt = False) -> None:
    """The storage nodes: state, repositories, free disk, last heartbeat."""
    settings = _cli_settings(ctx, data_dir)
    nodes = _run(_with_services(settings, lambda svc: svc.nodes.listing(operator())))
    if as_json:
        _print_json([_node_json(node) for node in nodes])
        return
    table = Table("name", "state", "weight", "repositories", "free", "heartbeat", "url")
    for node in nodes:
        table.add_row(
            node.name,
            node.state.value,
            f"{node.weight:g}",
            str(node.repositories),
            "?" if node.free_bytes is None else f"{node.free_bytes / (1 << 30):.1f} GiB",
            f"{node.heartbeat_at:%Y-%m-%d %H:%M:%S}",
            node.url or "",
        )
    out.print(table)


def _node_json(node: NodeRecord) -> dict[str, Any]:
    # The contract of `nodes list --json` (and GET /api/nodes): exactly these keys.
    return {
        "name": node.name,
        "url": node.url,
        "state": node.state.value,
        "repositories": node.repositories,
        "free_bytes": node.free_bytes,
        "heartbeat_at": node.heartbeat_at.isoformat(),
    }


NodeArg = Annotated[str, typer.Argument(help="The node's name (REPODEPOT_NODE_NAME).")]


@nodes_app.command("drain")
def nodes_drain(ctx: typer.Context, name: NodeArg, data_dir: DataDirOpt = None) -> None:
    """Mark a node draining: it is placed no new repository, and its own move to the others."""
    settings = _cli_settings(ctx, data_dir)
    node = _run(_with_services(settings, lambda svc: svc.nodes.drain(operator(), name)))
    out.print(f"node {name!r} is draining; it owns {node.repositories} repositories")


@nodes_app.command("activate")
def nodes_activate(ctx: typer.Context, name: NodeArg, data_dir: DataDirOpt = None) -> None:
    """Let a draining node take repositories again."""
    settings = _cli_settings(ctx, data_dir)
    _run(_with_services(settings, lambda svc: svc.nodes.activate(operator(), name)))
    out.print(f"node {name!r} is active")


@nodes_app.command("remove")
def nodes_remove(ctx: typer.Context, name: NodeArg, data_dir: DataDirOpt = None) -> None:
    """Forget a node that owns no repository (drain it first), or a dead one."""
    settings = _cli_settings(ctx, data_dir)
    _run(_with_services(settings, lambda svc: svc.nodes.remove(operator(), name)))
    out.print(f"node {name!r} removed")


@nodes_app.command("weight")
def nodes_weight(
    ctx: typer.Context,
    name: NodeArg,
    weight: Annotated[
        float, typer.Argument(help="Its share of repositories relative to the others' (> 0).")
    ],
    data_dir: DataDirOpt = None,
) -> None:
    """Set a node's weight: a node of weight 2 owns twice the repositories of one of 1."""
    settings = _cli_settings(ctx, data_dir)
    node = _run(
        _with_services(settings, lambda svc: svc.nodes.set_weight(operator(), name, weight))
    )
    out.print(f"node {name!r} has weight {node.weight:g}")


@repos_app.command("update")
def repos_update(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The repository's name.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Queue a mirror's update at high priority (also resumes a failing mirror)."""
    settings = _cli_settings(ctx, data_dir)

    async def work(svc: Services) -> bool:
        repo = await svc.repositories.get(operator(), name)
        return await svc.gitserver.enqueue_existing(repo.id, QueueReason.admin)

    if not _run(_with_services(settings, work)):
        _fail(RepodepotError(f"{name!r} has no mirror yet: the updater clones it first"))
    out.print(f"queued an update of {name!r}")


@repos_app.command("set")
def repos_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The repository's name.")],
    go_import_root: Annotated[
        str | None,
        typer.Option(
            "--go-import-root",
            help="Serve Go modules under this path from it; 'default' for its source URL's.",
        ),
    ] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Change a repository's settings (its Go import root)."""
    if go_import_root is None:
        _fail(RepodepotError("nothing to set: give --go-import-root", field="--go-import-root"))
    settings = _cli_settings(ctx, data_dir)
    root = None if go_import_root == "default" else go_import_root
    repo = _run(
        _with_services(
            settings, lambda svc: svc.repositories.set_go_import_root(operator(), name, root)
        )
    )
    out.print(f"{repo.name}: Go import root {repo.go_import_root or '(none)'}")


@credential_app.command("set")
def credential_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The repository's name.")],
    username: Annotated[
        str | None,
        typer.Option(help="The user name sent with the token (default x-access-token)."),
    ] = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Keep the token read from standard input as the repository's fetch credential.

    It replaces any credential it had (an import's included), is sealed at rest and is
    sent only to the origin of the repository's source URL. The next fetch uses it.
    """
    token = sys.stdin.readline().strip()
    settings = _cli_settings(ctx, data_dir)

    async def work(svc: Services) -> tuple[RepositoryRecord, bool]:
        repo, changed = await svc.repositories.set_credential(
            operator(), name, username=username, token=token
        )
        if changed:
            await svc.gitserver.enqueue_existing(repo.id, QueueReason.admin)
        return repo, changed

    repo, changed = _run(_with_services(settings, work))
    said = "fetch credential set; an update is queued" if changed else "that credential is kept"
    out.print(f"{repo.name}: {said}")


@credential_app.command("remove")
def credential_remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The repository's name.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Forget the repository's fetch credential: later fetches go without one."""
    settings = _cli_settings(ctx, data_dir)
    removed = _run(
        _with_services(settings, lambda svc: svc.repositories.remove_credential(operator(), name))
    )
    out.print(f"{name}: fetch credential removed" if removed else f"{name}: had no credential")


@goproxy_app.command("list")
def goproxy_list(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The repository's name.")],
    proxy_url: Annotated[
        str,
        typer.Option("--proxy-url", help="This server's /goproxy URL, for the go get lines."),
    ] = "http://127.0.0.1:8080/goproxy",
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the Go modules in a repository, their versions and how to fetch them."""
    settings = _cli_settings(ctx, data_dir)

    async def work(svc: Services) -> tuple[RepositoryRecord, list[tuple[ModuleSummary, str]]]:
        repo = await svc.repositories.get(operator(), name)
        return repo, await svc.goproxy.modules_to_get(operator(), repo, proxy_url)

    repo, modules = _run(_with_services(settings, work))
    if as_json:
        _print_json([{**asdict(module), "go_get": line} for module, line in modules])
        return
    if not modules:
        out.print(f"{repo.name}: no Go modules (import root {repo.go_import_root or 'none'})")
        return
    for module, line in modules:
        out.print(f"[bold]{module.path}[/]  ({module.subdir or 'root'})", highlight=False)
        out.print(f"  versions: {' '.join(module.versions) or '(untagged)'}", highlight=False)
        if module.moved:
            out.print(f"  moved tags (first content kept): {' '.join(module.moved)}")
        out.print(f"  {line}", highlight=False, soft_wrap=True)


# Branch status -------------------------------------------------------------------------------


def _when(at: datetime | None) -> str:
    return f"{at:%Y-%m-%d %H:%M}" if at else "never"


@app.command("branches")
def branches_list(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The repository's name.")],
    q: Annotated[str | None, typer.Option("--q", help="Only branches whose name has this.")] = None,
    sort: Annotated[
        BranchSort, typer.Option(help="updated (newest first) or name.")
    ] = BranchSort.updated,
    state: Annotated[
        BranchState | None,
        typer.Option(help="active, or stale (last commit over 90 days ago)."),
    ] = None,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List a repository's branches with ahead/behind against its default branch."""
    settings = _cli_settings(ctx, data_dir)

    async def work(svc: Services) -> list[BranchInfo]:
        found: list[BranchInfo] = []
        page = 1
        while True:
            listed = await internal_reads.branch_page(
                svc,
                operator(),
                name,
                q=q,
                sort=sort.value,
                state=state.value if state else None,
                page=page,
                per_page=MAX_PER_PAGE,
            )
            found += listed.items
            if page * listed.per_page >= listed.total:
                return found
            page += 1

    branches = _run(_with_services(settings, work))
    if as_json:
        _print_json([asdict(branch) for branch in branches])
        return
    if not branches:
        out.print(f"{name}: no branches" + (" match" if q or state else ""), highlight=False)
        return
    table = Table("branch", "ahead", "behind", "updated", "author", "subject")
    for branch in branches:
        table.add_row(
            f"{branch.name} (default)" if branch.is_default else branch.name,
            "" if branch.is_default else str(branch.ahead),
            "" if branch.is_default else str(branch.behind),
            _when(branch.commit.committed_at),
            branch.commit.author_name,
            branch.commit.subject,
        )
    out.print(table)


@upstream_app.command("set")
def upstream_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The repository's name.")],
    url: Annotated[str | None, typer.Option(help="The upstream's git URL.")] = None,
    repository: Annotated[
        str | None, typer.Option(help="Or another repository here, by name.")
    ] = None,
    branch: Annotated[
        list[str] | None,
        typer.Option(
            "--branch",
            help="Repeatable: a branch, a glob (release/*) or LOCAL:UPSTREAM (main:master); "
            "default: the default branch.",
        ),
    ] = None,
    interval: Annotated[
        float | None, typer.Option(help="Seconds between fetches (at least 60).")
    ] = None,
    username: Annotated[str | None, typer.Option(help="The user name sent with the token.")] = None,
    token_stdin: Annotated[
        bool, typer.Option("--token-stdin", help="Read the upstream's token from stdin.")
    ] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Track an upstream: its branches are fetched in the background and compared.

    The token (read from standard input, never an option) is sealed and sent only to
    the URL's origin.
    """
    token = sys.stdin.readline().strip() if token_stdin else None
    settings = _cli_settings(ctx, data_dir)
    info = _run(
        _with_services(
            settings,
            lambda svc: svc.branches.set_upstream(
                operator(),
                name,
                url=url,
                repository=repository,
                token=token or None,
                username=username,
                branches=branch or None,
                interval=interval,
            ),
        )
    )
    out.print(
        f"{name}: upstream {_source(info)}, tracking {', '.join(info.branches)}; "
        "the running server fetches it within seconds",
        highlight=False,
    )


def _source(info: UpstreamInfo) -> str:
    if info.repository is not None:
        return f"repository {info.repository}"
    token = " (with a token)" if info.has_token else ""
    return f"{info.url}{token}"


@upstream_app.command("show")
def upstream_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The repository's name.")],
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a repository's upstream, its tracked branches and its last fetch."""
    settings = _cli_settings(ctx, data_dir)
    info = _run(_with_services(settings, lambda svc: svc.branches.upstream(operator(), name)))
    if as_json:
        _print_json(asdict(info))
        return
    for label, value in (
        ("upstream", _source(info)),
        ("branches", ", ".join(info.branches)),
        ("set", "automatically (fork parent)" if info.automatic else "by hand"),
        ("interval", f"{info.interval_seconds:g} s"),
        ("last fetch", _when(info.last_fetched_at) + _split(info.last_fetch_ms)),
        ("next fetch", _when(info.next_fetch_at)),
    ):
        out.print(f"{label + ':':<12} {value}", highlight=False)
    if info.last_error:
        state = "failing" if info.failing else "failed"
        out.print(f"{state + ':':<12} {info.error_kind}: {info.last_error}", highlight=False)


def _split(fetch_ms: dict[str, int] | None) -> str:
    if not fetch_ms:
        return ""
    parts = ", ".join(f"{part} {fetch_ms.get(part, 0)} ms" for part in FETCH_PARTS)
    return f" ({parts})"


@upstream_app.command("remove")
def upstream_remove(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The repository's name.")],
    data_dir: DataDirOpt = None,
) -> None:
    """Stop tracking the upstream; its fetched branches and their status go too."""
    settings = _cli_settings(ctx, data_dir)
    _run(_with_services(settings, lambda svc: svc.branches.remove_upstream(operator(), name)))
    out.print(f"{name}: upstream removed", highlight=False)


@upstream_app.command("fetch")
def upstream_fetch(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The repository's name.")],
    wait: Annotated[
        bool,
        typer.Option("--wait", help="Fetch here and now, and print the outcome and its time."),
    ] = False,
    data_dir: DataDirOpt = None,
) -> None:
    """Queue a fetch of the upstream for the running server (or, with --wait, fetch it)."""
    settings = _cli_settings(ctx, data_dir)
    if not wait:
        _run(_with_services(settings, lambda svc: svc.branches.fetch_now(operator(), name)))
        out.print(f"{name}: upstream fetch queued", highlight=False)
        return

    async def work(svc: Services) -> FetchOutcome:
        await svc.branches.upstream(operator(), name)  # NotFound when it has none
        repo = await svc.repositories.get(operator(), name)
        owner = new_worker_id()
        if not await svc.branches.claim_one(owner, repo.id):
            raise RepodepotError(f"{name!r}: a fetch of its upstream is running; try again soon")
        return await svc.branches.refresh(owner, repo.id, nodes=ClusterSources(svc))

    outcome = _run(_with_services(settings, work))
    if outcome.error is not None:
        kind, said = outcome.error
        _fail(RepodepotError(f"{name}: upstream fetch failed ({kind}): {said}"))
    moved = "branches moved" if outcome.changed else "nothing moved"
    total = sum((outcome.fetch_ms or {}).values())
    out.print(f"{name}: fetched, {moved}, {total} ms{_split(outcome.fetch_ms)}", highlight=False)


@app.command("sync-status")
def sync_status(
    ctx: typer.Context,
    name: Annotated[
        str | None, typer.Argument(help="One repository; without it, every repository.")
    ] = None,
    needs_pull: Annotated[
        bool, typer.Option("--needs-pull", help="Only branches behind their upstream.")
    ] = False,
    needs_push: Annotated[
        bool, typer.Option("--needs-push", help="Only branches ahead of their upstream.")
    ] = False,
    diverged: Annotated[bool, typer.Option("--diverged", help="Only both.")] = False,
    data_dir: DataDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Tracked branches against their upstream: one repository's, or across all."""
    settings = _cli_settings(ctx, data_dir)
    wanted = {"needs_pull": needs_pull, "needs_push": needs_push, "diverged": diverged}
    filters = {key: True for key, on in wanted.items() if on}
    if name is not None:
        status = _run(
            _with_services(settings, lambda svc: svc.branches.sync_status(operator(), name))
        )
        rows = [
            ("", tracked)
            for tracked in status.branches
            if all(getattr(tracked, key) for key in filters)
        ]
        if as_json:
            _print_json(
                {
                    "upstream": asdict(status.upstream) if status.upstream else None,
                    "branches": [asdict(tracked) for _, tracked in rows],
                }
            )
            return
        if status.upstream is None:
            out.print(f"{name}: no upstream", highlight=False)
            return
        info = status.upstream
        out.print(
            f"{name}: upstream {_source(info)}, fetched {_when(info.last_fetched_at)}"
            + (
                f"; last fetch failed ({info.error_kind}): {info.last_error}"
                if info.last_error
                else ""
            ),
            highlight=False,
        )
    else:

        async def every(svc: Services) -> list[OrgRow]:
            found: list[OrgRow] = []
            page = 1
            while True:
                listed = await svc.branches.org_status(
                    operator(), page=page, per_page=MAX_PER_PAGE, **filters
                )
                found += listed.items
                if page * listed.per_page >= listed.total:
                    return found
                page += 1

        org = _run(_with_services(settings, every))
        rows = [(row.repository, row.tracked) for row in org]
        if as_json:
            _print_json([{"repository": repo, **asdict(tracked)} for repo, tracked in rows])
            return
    if not rows:
        out.print("no tracked branch matches" if filters else "no tracked branches")
        return
    table = Table(
        *(["repository"] if name is None else []),
        "branch",
        "upstream branch",
        "state",
        "ahead",
        "behind",
        "computed",
    )
    for repo, tracked in rows:
        table.add_row(
            *([repo] if name is None else []),
            tracked.branch,
            tracked.upstream_branch,
            _pair_state(tracked),
            "" if tracked.ahead is None else str(tracked.ahead),
            "" if tracked.behind is None else str(tracked.behind),
            _when(tracked.computed_at),
        )
    out.print(table)


def _pair_state(tracked: TrackedBranch) -> str:
    if tracked.missing:
        said = "missing upstream" if tracked.upstream_sha is None else "missing here"
    elif tracked.diverged:
        said = "diverged"
    elif tracked.needs_pull:
        said = f"behind {tracked.behind}"
    elif tracked.needs_push:
        said = f"ahead {tracked.ahead}"
    else:
        said = "up to date"
    return f"{said} (stale)" if tracked.stale else said


ServerOpt = Annotated[
    str,
    typer.Option(
        "--server", envvar="REPODEPOT_SERVER", help="The running server [env REPODEPOT_SERVER]."
    ),
]
ApiTokenOpt = Annotated[
    str | None,
    typer.Option(
        "--api-token",
        envvar="REPODEPOT_TOKEN",
        show_default=False,
        help="Your API token [env REPODEPOT_TOKEN].",
    ),
]


@app.command("import")
def import_repository(
    url: Annotated[str, typer.Argument(help="The repository to import (https://…).")],
    owner: Annotated[str, typer.Option(help="Owner part of the new repository's name.")],
    slug: Annotated[str, typer.Option(help="Name part of the new repository's name.")],
    token_stdin: Annotated[
        bool,
        typer.Option(
            "--token-stdin",
            help="Read the source's access token from standard input. It is kept (sealed) "
            "as the repository's fetch credential, so later updates can fetch.",
        ),
    ] = False,
    visibility: Annotated[Visibility, typer.Option(help="private, internal or public.")] = (
        Visibility.private
    ),
    server: ServerOpt = "http://127.0.0.1:8080",
    api_token: ApiTokenOpt = None,
) -> None:
    """Import a repository on the running server and follow its progress to the end."""
    source_token = sys.stdin.readline().strip() if token_stdin else None
    try:
        with Client(server, api_token) as client:
            job = client.call(
                "POST",
                "/api/imports",
                json={
                    "url": url,
                    "owner": owner,
                    "slug": slug,
                    "token": source_token,
                    "visibility": visibility.value,
                },
            )
            final = _follow(client, job)
    except RepodepotError as error:
        _fail(error)
    if final["status"] != "success":
        err.print(
            f"[bold red]import {final['status']}:[/] {final.get('error') or ''}", highlight=False
        )
        raise typer.Exit(1)
    out.print(
        f"imported {final['repository']} ({final['received_objects']} objects, "
        f"{final['received_bytes']:,} bytes)",
        highlight=False,
    )


def _follow(client: Client, job: dict[str, Any]) -> dict[str, Any]:
    """Draw the job's progress from its event stream; return the final state."""
    columns = (
        TextColumn("{task.fields[phase]:<12}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[objects]}"),
        TextColumn("{task.fields[speed]}"),
        TimeRemainingColumn(),
    )
    last_id: str | None = None
    with Progress(*columns, console=err, transient=False) as progress:
        bar = progress.add_task(job["target"], total=100, phase=job["phase"], objects="", speed="")
        try:
            for _ in range(10):  # reconnect where the stream left off, a few times
                try:
                    for event_id, _name, state in client.events(
                        f"/api/imports/{job['id']}/events", last_id
                    ):
                        last_id, job = event_id, state
                        progress.update(bar, completed=state["percent"], **_columns(state))
                        if state["status"] in ("success", "failed", "cancelled"):
                            return job
                except httpx.TransportError:
                    continue  # the stream broke: resume from the last event
        except KeyboardInterrupt:
            client.call("POST", f"/api/imports/{job['id']}/cancel")
            err.print("cancelled")
            raise typer.Exit(130) from None
    return client.call("GET", f"/api/imports/{job['id']}")  # type: ignore[no-any-return]


def _columns(state: dict[str, Any]) -> dict[str, Any]:
    speed = state["throughput"]
    return {
        "phase": state["phase"],
        "objects": f"{state['received_objects']}/{state['total_objects'] or '?'}",
        "speed": f"{speed / 1048576:.1f} MiB/s" if speed else "",
    }


def main() -> None:
    """Entry point of the `repodepot` script."""
    app(prog_name="repodepot")
