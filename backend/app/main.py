"""App factory and lifespan."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from app.config import Settings, load_settings
from app.errors import register_error_handlers
from app.log_redaction import install_secret_filter
from app.models.common import HealthResponse, RootResponse
from app.request_cancellation import CancelOnDisconnect
from app.request_limits import RequestBodyLimit
from app.route_paths import route_path
from app.routers import ALL_ROUTERS
from app.serialization import CleanJSONResponse
from app.services.background import BackgroundTasks
from app.services.connection_store import ConnectionStore
from app.services.csv_ingest import sweep_orphan_spool_files
from app.services.database_service import build_connection_store
from app.services.duckdb_store import DuckDBStore, StoreLocked
from app.services.example_loader import LOAD_EXAMPLES_TASK, load_examples_if_empty
from app.services.health_service import check_health
from app.services.sync_engine import SYNC_BACKGROUND_TASK, SyncEngine

logger = logging.getLogger(__name__)

VERSION = "0.1.0"
DB_HANDLE_SWEEPER_TASK = "db_handle_sweeper"

OPENAPI_TAGS = [
    {"name": "config", "description": "Theme, visibility, features, agents, assets"},
    {"name": "data", "description": "Evaluation data ingestion"},
    {"name": "analytics", "description": "Evaluation metric statistics"},
    {"name": "ai", "description": "AI copilot"},
    {"name": "align", "description": "LLM-judge calibration"},
    {"name": "reports", "description": "Reports and issue extraction"},
    {"name": "database", "description": "PostgreSQL browser and imports"},
    {"name": "human-signals", "description": "Human-in-the-loop signals"},
    {"name": "monitoring", "description": "Production monitoring ingestion"},
    {"name": "monitoring-analytics", "description": "Monitoring analytics"},
    {"name": "eval-runner", "description": "Batch evaluation runner"},
    {"name": "memory", "description": "Rules memory"},
    {"name": "memory-graph", "description": "Knowledge graph"},
    {"name": "store", "description": "DuckDB store and sync engine"},
]


def build_store(settings: Settings) -> DuckDBStore:
    """The DuckDB store for these settings."""
    cfg = settings.duckdb
    return DuckDBStore(
        settings.duckdb_path,
        query_concurrency=cfg.query_concurrency,
        memory_limit=cfg.memory_limit,
        threads=cfg.threads,
        ingest_threads=cfg.ingest_threads,
    )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the store, start background work, and close everything on shutdown."""
    settings: Settings = app.state.settings
    store: DuckDBStore = app.state.store
    tasks: BackgroundTasks = app.state.tasks
    engine: SyncEngine = app.state.sync_engine
    db_connections: ConnectionStore = app.state.db_connections
    logger.info("AXIS starting")
    try:
        await store.open()
    except StoreLocked as exc:
        logger.error("%s", exc)
        raise
    swept = await anyio.to_thread.run_sync(sweep_orphan_spool_files, settings.spool_dir)
    if swept:
        logger.warning("Removed %d upload spool files left by a stopped server: %s", len(swept), ", ".join(swept))
    logger.info(
        "Store %s (%d datasets); configuration from %s",
        store.path,
        await store.count_datasets(),
        settings.config_dir,
    )
    if settings.duckdb.enabled:
        # Restore persisted sync status, take the leader lock, then repair/sync/schedule in the background.
        await engine.startup()
        tasks.start(SYNC_BACKGROUND_TASK, engine.run_background())
    tasks.start(DB_HANDLE_SWEEPER_TASK, db_connections.run_sweeper(settings.db_handle_sweep_seconds))
    if settings.axis_load_examples:
        tasks.start(LOAD_EXAMPLES_TASK, load_examples_if_empty(store, settings, engine.startup_sync_kinds()))
    try:
        yield
    finally:
        await db_connections.close_all()  # stops the sweeper and closes every Postgres pool
        background = tasks.get(SYNC_BACKGROUND_TASK)
        if background is not None:
            background.cancel()
        await tasks.cancel_all(grace_seconds=5.0)
        engine.shutdown()
        await store.close()
        logger.info("AXIS stopped")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the FastAPI app: settings, store, routers, middleware and error handling."""
    settings = settings or load_settings()
    install_secret_filter(settings.secret_values())
    app = FastAPI(
        title="AXIS API",
        version=VERSION,
        description="Agent X-Ray Interface & Statistics: AI evaluation and monitoring analytics.",
        lifespan=lifespan,
        default_response_class=CleanJSONResponse,
        openapi_tags=OPENAPI_TAGS,
    )
    app.state.settings = settings
    app.state.store = build_store(settings)
    app.state.tasks = BackgroundTasks()
    app.state.sync_engine = SyncEngine(settings, app.state.store, app.state.tasks)
    app.state.db_connections = build_connection_store(settings)

    register_error_handlers(app)
    if settings.axis_api_token is not None and settings.axis_api_token.get_secret_value():
        _install_token_guard(app, settings.axis_api_token.get_secret_value())
    # Bodies other than file uploads (JSON rows) are parsed whole: the upload cap bounds them too.
    app.add_middleware(RequestBodyLimit, max_bytes=settings.max_upload_bytes)
    # Outside the body cap (it alone reads the server's receive after the body): read-only routes
    # stop their queries when the client goes away.
    app.add_middleware(CancelOnDisconnect)
    # CORS is added last so it is the outermost middleware (401s carry CORS headers too).
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.cors_origins,
        allow_credentials=True,
        allow_methods=["*"],
        allow_headers=["*"],
    )

    for router in ALL_ROUTERS:
        app.include_router(router)

    @app.get("/", response_model=RootResponse, tags=["health"])
    async def root() -> RootResponse:
        """Service identity."""
        return RootResponse(status="healthy", service="AXIS API", version=VERSION)

    @app.get("/health", response_model=HealthResponse, tags=["health"])
    async def health(request: Request) -> Response:
        """Component health with a real DuckDB probe."""
        report = await check_health(request.app.state.settings, request.app.state.store)
        return CleanJSONResponse(report.model_dump(), status_code=200 if report.status == "healthy" else 503)

    # HEAD for uptime probes (FastAPI adds it to no GET route by itself); the same status, no body.
    app.add_api_route("/", root, methods=["HEAD"], include_in_schema=False)
    app.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)
    return app


def _install_token_guard(app: FastAPI, token: str) -> None:
    """Require ``Authorization: Bearer <token>`` on every ``/api/*`` route (decision 8)."""
    expected = token.encode()

    @app.middleware("http")
    async def token_guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if route_path(request.scope).startswith("/api/") and request.method != "OPTIONS":
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            # the scheme is case-insensitive (RFC 9110); the token is compared in constant time
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
                return JSONResponse(
                    {"detail": "Missing or invalid API token. Send 'Authorization: Bearer <token>'."},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return await call_next(request)

    # Declare it in the OpenAPI, so /docs offers "Authorize" and sends the header with "Try it out".
    build_openapi = app.openapi

    def openapi_with_bearer() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build_openapi()
            schema.setdefault("components", {}).setdefault("securitySchemes", {})["apiToken"] = {
                "type": "http",
                "scheme": "bearer",
                "description": "AXIS_API_TOKEN",
            }
            for path, operations in schema.get("paths", {}).items():
                if path.startswith("/api/"):
                    for operation in operations.values():
                        operation["security"] = [{"apiToken": []}]
        return app.openapi_schema or {}

    app.openapi = openapi_with_bearer  # type: ignore[method-assign]
