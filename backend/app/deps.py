"""Typed FastAPI dependencies: settings, store, sync engine and database-browser handles come from ``app.state``.

Also the request bodies that need their own parsing (the database connect body).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from app.config import Settings
from app.models.database import ConnectRequest
from app.services.connection_store import ConnectionStore
from app.services.duckdb_store import DuckDBStore
from app.services.sync_engine import SyncEngine


def get_settings(request: Request) -> Settings:
    """The app's Settings instance."""
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> DuckDBStore:
    """The app's DuckDB store."""
    store: DuckDBStore = request.app.state.store
    return store


def get_connections(request: Request) -> ConnectionStore:
    """The app's database-browser connection handles."""
    conns: ConnectionStore = request.app.state.db_connections
    return conns


def get_sync_engine(request: Request) -> SyncEngine:
    """The app's PostgreSQL sync engine."""
    engine: SyncEngine = request.app.state.sync_engine
    return engine


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[DuckDBStore, Depends(get_store)]
SyncEngineDep = Annotated[SyncEngine, Depends(get_sync_engine)]
ConnectionsDep = Annotated[ConnectionStore, Depends(get_connections)]


async def parse_connect_request(request: Request) -> ConnectRequest:
    """The database connect body; validation errors never echo the submitted values (the password)."""
    try:
        raw: Any = json.loads(await request.body() or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise RequestValidationError([{"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error"}]) from None
    try:
        return ConnectRequest.model_validate(raw)
    except ValidationError as exc:
        errors = [
            {"type": e["type"], "loc": ["body", *e["loc"]], "msg": e["msg"]} for e in exc.errors(include_input=False)
        ]
        raise RequestValidationError(errors) from None


ConnectBody = Annotated[ConnectRequest, Depends(parse_connect_request)]
