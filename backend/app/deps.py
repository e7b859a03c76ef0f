"""Typed FastAPI dependencies: settings, store, sync engine and database-browser handles come from ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
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
