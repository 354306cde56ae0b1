"""The application factory: `create_app(settings)` wires routes, middleware and the lifespan."""

from __future__ import annotations

import gc
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from repodepot import __version__, composition
from repodepot.metrics import Metrics
from repodepot.nodes import internal, internal_reads
from repodepot.services import Services
from repodepot.settings import Settings, ensure_secret_key
from repodepot.web import (
    access_pages,
    apidocs,
    branch_pages,
    codehost_pages,
    csrf,
    errors,
    goproxy,
    import_pages,
    node_pages,
    smarthttp,
    webhooks,
)
from repodepot.web.api import (
    access,
    branches,
    codehost_accounts,
    codehosts,
    health,
    imports,
    nodes,
    repos,
    scheduler,
    tokens,
    users,
)
from repodepot.web.middleware import RequestContext
from repodepot.web.pages import router as pages
from repodepot.web.security import SecurityHeaders, SessionCookie, TrustedProxies

HERE = Path(__file__).parent


def announce_admin_token(token: str) -> None:
    """Show the bootstrap admin token once, on the console and never in a log record."""
    sys.stderr.write(
        "\n  repodepot created the user 'admin'. Its API token is shown this once:\n\n"
        f"      {token}\n\n"
        "  Log in at /login with it, or use it as 'Authorization: Bearer <token>'.\n\n"
    )
    sys.stderr.flush()


def settle_heap() -> None:
    """Keep what start-up made out of the garbage collector's way for the process's life.

    Modules, routes, the ORM's mappers and the settings live as long as the server, yet
    every full collection walks all of them, in the middle of requests. After one
    collection they are frozen (`gc.freeze`): later collections see only what requests
    and loops make. `repodepot serve` calls it once the app is built (not the lifespan:
    tests build many apps in one process).
    """
    gc.collect()
    gc.freeze()


def create_app(settings: Settings) -> FastAPI:
    """Build the web application for `settings`; the lifespan opens the services."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await Services.open(settings, metrics=metrics)
        admin_token = settings.admin_token.get_secret_value() if settings.admin_token else None
        created = await services.accounts.bootstrap_admin(admin_token)
        if created is not None:
            announce_admin_token(created)
        app.state.services = services
        background = composition.start(services)
        try:
            yield
        finally:
            await background.stop()
            await services.close()

    app = FastAPI(
        title="repodepot",
        version=__version__,
        description="Mirrors, imports, branch status, smart HTTP and a Go module proxy. "
        "Authenticate with `Authorization: Bearer <token>`.",
        lifespan=lifespan,
        docs_url=None,  # apidocs serves /docs without a CDN or inline script
        redoc_url=None,
        max_body_size=settings.request_max_bytes,  # 413 past it; bodies.py has the rest
    )
    app.state.templates = Jinja2Templates(
        directory=HERE / "templates", context_processors=[csrf.template_context]
    )
    errors.install(app)
    # A request is matched against the routes in this order, one by one (twice for the
    # router that holds it): the most asked come first, after the liveness probe. Only
    # overlapping paths constrain it, as noted; the other routers' paths are disjoint.
    routers = (
        health.router,
        goproxy.router,
        smarthttp.router,
        branches.router,  # before repos: `…/branches` is not part of a repository's name
        access.router,  # before repos: `…/grants` neither
        codehost_accounts.router,
        repos.router,
        users.router,
        tokens.router,
        imports.router,
        codehosts.router,
        scheduler.router,
        nodes.router,
        webhooks.router,
        import_pages.router,
        codehost_pages.router,
        branch_pages.router,  # before pages: `…/upstream` is not part of a repository's name
        access_pages.router,
        node_pages.router,
        apidocs.router,
        pages,
    )
    for router in routers:
        app.include_router(router)
    if "gitserver" in settings.roles:  # the node's own reads, for the web processes
        app.include_router(internal.router)
        app.include_router(internal_reads.router)
    app.mount(apidocs.ASSETS_PATH, StaticFiles(directory=apidocs.ASSETS_DIR), name="swagger")
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_middleware(
        SessionCookie,  # signed with the secret key; HttpOnly; SameSite=Lax; CSRF: web/csrf.py
        secret_key=ensure_secret_key(settings),
        max_age=settings.session_max_age,
        https_only=settings.session_https_only,
    )
    app.add_middleware(
        RequestContext,
        metrics=metrics,
        on_error=errors.unexpected,
        on_refused=errors.refused,
        node=settings.node_name if "gitserver" in settings.roles else None,
    )
    # Outermost: the scheme is known before the cookie is written; every answer has the headers.
    app.add_middleware(TrustedProxies, trusted=settings.trusted_proxies)
    app.add_middleware(SecurityHeaders)
    return app
