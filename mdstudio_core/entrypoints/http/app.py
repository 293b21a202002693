"""The ASGI application: the routers over the same services as the CLI. Every rule (roles,
four-eyes, tenants, staleness) lives in the domain and the services and is enforced there once;
this package only turns HTTP into calls and domain errors into RFC 9457 problems.

The services block on the store: routes run them in the app's worker threads (`auth.call`),
as many as the engine has connections.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI
from sqlalchemy import Engine

from mdstudio_core import bootstrap
from mdstudio_core.config import Settings
from mdstudio_core.entrypoints.http import console, docs, problems
from mdstudio_core.entrypoints.http.metrics import RequestMetrics
from mdstudio_core.entrypoints.http.middleware import BodyLimit
from mdstudio_core.entrypoints.http.previews import PreviewSlots
from mdstudio_core.entrypoints.http.routers import (
    approvals,
    catalog,
    change_sets,
    events,
    health,
    incidents,
    notifications,
    previews,
)
from mdstudio_core.entrypoints.logs import scrub_log_records

# Connections per process, and as many worker threads: 20 keep PostgreSQL's default 100
# connections enough for a few server processes and the tools beside them.
POOL_SIZE = 10
POOL_OVERFLOW = 10


def create_app(settings: Settings | None = None, engine: Engine | None = None) -> FastAPI:
    """The application. `settings` default to the environment's; without `engine`, one is made
    for the settings' store (and disposed of at shutdown)."""
    settings = settings or bootstrap.read_settings()
    scrub_log_records(settings)
    owns_engine = engine is None
    store = engine or bootstrap.store_engine(
        settings, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW
    )

    # Threads start on demand and end with the app (an ASGI app can outlive its lifespan in
    # tests, so nothing shuts them down early).
    executor = ThreadPoolExecutor(POOL_SIZE + POOL_OVERFLOW, thread_name_prefix="mdstudio")

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if owns_engine:
            store.dispose()

    app = FastAPI(
        title="mdstudio",
        version="1.0",
        description=(
            "Metadata Studio: a governed metadata catalog. Every change is an approval request "
            "that a second person with the required role decides. Authenticate with "
            "`Authorization: Bearer <token>` (`mdstudio tokens create`). Errors are RFC 9457 "
            "problems (`application/problem+json`) naming the offending `field`."
        ),
        lifespan=lifespan,
        # FastAPI's own pages load their programs from a CDN: ours (`docs`) only when asked.
        docs_url=None,
        redoc_url=None,
    )
    app.state.engine = store
    app.state.settings = settings
    app.state.warehouse_engines = bootstrap.warehouse_engines(settings)
    app.state.executor = executor
    # Previews wait on warehouses: never on the threads above (see `previews`).
    app.state.previews = PreviewSlots(
        settings.preview_concurrency, settings.preview_timeout_seconds
    )
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        path_limits={"/change-sets": settings.max_change_set_bytes},
    )
    app.add_middleware(RequestMetrics)
    problems.install_error_handlers(app)
    for router in (
        approvals.router,
        catalog.router,
        change_sets.router,
        events.router,
        health.router,
        incidents.router,
        notifications.router,
        previews.router,
    ):
        app.include_router(router)
    console.install(app)  # the steward console, under /ui/
    if settings.api_docs:
        docs.install(app)  # /docs and /redoc
    app.openapi = problems.openapi(app)  # type: ignore[method-assign]
    return app
