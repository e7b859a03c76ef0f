"""Typed FastAPI dependencies: settings, store and background tasks come from ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.config import Settings
from app.services.background import BackgroundTasks
from app.services.duckdb_store import DuckDBStore


def get_settings(request: Request) -> Settings:
    """The app's Settings instance."""
    settings: Settings = request.app.state.settings
    return settings


def get_store(request: Request) -> DuckDBStore:
    """The app's DuckDB store."""
    store: DuckDBStore = request.app.state.store
    return store


def get_tasks(request: Request) -> BackgroundTasks:
    """The lifespan-owned background tasks."""
    tasks: BackgroundTasks = request.app.state.tasks
    return tasks


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[DuckDBStore, Depends(get_store)]
TasksDep = Annotated[BackgroundTasks, Depends(get_tasks)]
