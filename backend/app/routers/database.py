"""``/api/database``: PostgreSQL connection handles, schema browsing, safe queries and imports.

Queries are gated by a SQL tokenizer and run in read-only transactions, but the real security
boundary is the PostgreSQL role: connect with a least-privilege role that can only SELECT the
tables users may see.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import ConnectBody, ConnectionsDep, SettingsDep, StoreDep
from app.models.database import (
    CloseResponse,
    ConnectRequest,
    ConnectResponse,
    DatabaseDefaults,
    DatabaseImportResponse,
    DistinctValuesRequest,
    DistinctValuesResponse,
    HandleStatsResponse,
    PreviewRequest,
    QueryImportRequest,
    QueryRequest,
    RowsResponse,
    SchemaResponse,
    StoreKey,
    TableImportRequest,
    TablesResponse,
)
from app.serialization import RawJSONResponse
from app.services import database_import, database_service

router = APIRouter(prefix="/api/database", tags=["database"])


StoreQuery = Annotated[str, Query(description="Config store: data, monitoring or human_signals")]


@router.get("/defaults", response_model=DatabaseDefaults)
async def defaults(settings: SettingsDep, store: StoreQuery = "data") -> DatabaseDefaults:
    """Configured connection defaults of a store (never the password or URL)."""
    return database_service.get_defaults(settings, store)


@router.get("/stats", response_model=HandleStatsResponse)
async def stats(conns: ConnectionsDep) -> HandleStatsResponse:
    """Open handles and the cap."""
    return await database_service.handle_stats(conns)


@router.post(
    "/connect",
    response_model=ConnectResponse,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": ConnectRequest.model_json_schema()}},
        }
    },
)
async def connect(
    body: ConnectBody, settings: SettingsDep, conns: ConnectionsDep, store: StoreQuery = "data"
) -> ConnectResponse:
    """Test a connection and return a handle valid for the configured TTL (absolute)."""
    return await database_service.connect(conns, settings, store, body)


@router.get("/{handle}/tables", response_model=TablesResponse)
async def tables(handle: str, settings: SettingsDep, conns: ConnectionsDep) -> TablesResponse:
    """Tables and views with planner row estimates."""
    return await database_service.list_tables(conns, settings, handle)


@router.get("/{handle}/schema", response_model=SchemaResponse)
async def schema(
    handle: str,
    settings: SettingsDep,
    conns: ConnectionsDep,
    table: Annotated[str, Query()],
    schema: Annotated[str, Query()] = "public",
    schema_name: Annotated[str | None, Query()] = None,
) -> SchemaResponse:
    """Columns and sample values of one table."""
    return await database_service.table_schema(conns, settings, handle, schema_name or schema, table)


@router.post("/{handle}/distinct-values", response_model=DistinctValuesResponse)
async def distinct_values(
    handle: str, body: DistinctValuesRequest, settings: SettingsDep, conns: ConnectionsDep
) -> DistinctValuesResponse:
    """Distinct non-null values of a column (bounded)."""
    return await database_service.distinct_values(conns, settings, handle, body)


@router.post("/{handle}/preview", response_model=RowsResponse)
async def preview(handle: str, body: PreviewRequest, settings: SettingsDep, conns: ConnectionsDep) -> RowsResponse:
    """A few mapped and filtered rows of a table."""
    return await database_service.preview(conns, settings, handle, body)


@router.post("/{handle}/query", response_model=RowsResponse)
async def query(handle: str, body: QueryRequest, settings: SettingsDep, conns: ConnectionsDep) -> RowsResponse:
    """Run one read-only SELECT (tokenizer-checked, bound LIMIT, timeout → 408, result over the size cap → 413)."""
    return await database_service.run_query(conns, settings, handle, body)


@router.post("/{handle}/query-import", response_model=DatabaseImportResponse)
async def query_import(
    handle: str,
    body: QueryImportRequest,
    settings: SettingsDep,
    conns: ConnectionsDep,
    store: StoreDep,
    target: Annotated[StoreKey | None, Query(alias="store")] = None,
) -> RawJSONResponse:
    """Import a read-only SELECT into the DuckDB store (``store`` picks the rename map, DB-20)."""
    res = await database_import.query_import(conns, store, settings, handle, body, target)
    return RawJSONResponse(res.render_json())


@router.post("/{handle}/import", response_model=DatabaseImportResponse)
async def table_import(
    handle: str,
    body: TableImportRequest,
    settings: SettingsDep,
    conns: ConnectionsDep,
    store: StoreDep,
    target: Annotated[StoreKey | None, Query(alias="store")] = None,
) -> RawJSONResponse:
    """Import a table (with mappings and filters) into the DuckDB store."""
    res = await database_import.table_import(conns, store, settings, handle, body, target)
    return RawJSONResponse(res.render_json())


@router.delete("/{handle}", response_model=CloseResponse)
async def close(handle: str, conns: ConnectionsDep) -> CloseResponse:
    """Close a handle (200 either way)."""
    return await database_service.close_connection(conns, handle)
