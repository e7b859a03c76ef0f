"""One router per file; ``ALL_ROUTERS`` is the mount order used by ``create_app``."""

from fastapi import APIRouter

from app.routers import (
    ai,
    align,
    analytics,
    config,
    data,
    database,
    eval_runner,
    human_signals,
    memory,
    memory_graph,
    monitoring,
    monitoring_analytics,
    reports,
    store,
)

# monitoring_analytics before monitoring so the longer prefix is matched first.
ALL_ROUTERS: list[APIRouter] = [
    config.router,
    data.router,
    analytics.router,
    ai.router,
    align.router,
    reports.router,
    database.router,
    human_signals.router,
    monitoring_analytics.router,
    monitoring.router,
    eval_runner.router,
    memory_graph.router,
    memory.router,
    store.router,
]
