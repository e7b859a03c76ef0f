"""Health of the app's components."""

from __future__ import annotations

import duckdb

from app.config import Settings
from app.models.common import HealthComponents, HealthResponse
from app.services.duckdb_store import DuckDBStore
from app.services.sync_status import STATUS_PREFIX, STATUS_TABLES


def llm_mode(settings: Settings) -> str:
    """``configured`` when an LLM key is set, else ``offline``."""
    return "configured" if (settings.openai_api_key or settings.anthropic_api_key) else "offline"


def graph_mode(settings: Settings) -> str:
    """``configured`` for an external FalkorDB host, else ``embedded``-to-be / unconfigured."""
    return "configured" if settings.graph_db_host else "unconfigured"


async def check_health(settings: Settings, store: DuckDBStore) -> HealthResponse:
    """Probe DuckDB for real; report graph and LLM configuration and each synced table's state (§1.2)."""
    sync: dict[str, str] = {}
    try:
        duck_ok = await store.probe()
        datasets = await store.count_datasets() if duck_ok else 0
        for table in STATUS_TABLES if duck_ok else ():
            status = await store.kv_get(STATUS_PREFIX + table)
            sync[table] = str(status.get("state") or "not_synced") if isinstance(status, dict) else "not_synced"
    except (duckdb.Error, RuntimeError):
        duck_ok, datasets = False, 0
    return HealthResponse(
        status="healthy" if duck_ok else "unhealthy",
        components=HealthComponents(
            api="up",
            data_processor="up",
            duckdb="up" if duck_ok else "down",
            graph=graph_mode(settings),
            llm=llm_mode(settings),
        ),
        datasets=datasets,
        sync=sync,
    )
