"""Shapes shared by several routers."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from app.serialization import clean_row

# One result row (column → value). In JSON mode it is serialised through the app's JSON cleaner, so
# DuckDB / PostgreSQL values (Decimal, INTERVAL, BLOB, ±infinity timestamps, NaN) follow the same
# rules in every response model instead of pydantic's defaults (Decimal → "0.8125", timedelta →
# "PT1.5S", invalid UTF-8 bytes → UnicodeDecodeError). Python-mode dumps keep the raw values.
Row = Annotated[dict[str, Any], PlainSerializer(clean_row, return_type=dict[str, Any], when_used="json")]

# Highest accepted ``page`` of paginated endpoints: page * page_size must stay inside DuckDB's BIGINT OFFSET.
MAX_PAGE = 1_000_000_000


class SuccessResponse(BaseModel):
    """Base of every flat success body."""

    model_config = ConfigDict(extra="forbid")

    success: bool = True


class MessageResponse(SuccessResponse):
    """``{success, message}``."""

    message: str


class ErrorResponse(BaseModel):
    """``{"detail": "..."}`` as built by the error handler."""

    detail: str


class HealthComponents(BaseModel):
    """Per-component health."""

    api: str
    data_processor: str
    duckdb: str
    graph: str
    llm: str


class HealthResponse(BaseModel):
    """``GET /health``."""

    status: str
    components: HealthComponents
    datasets: int
    sync: dict[str, str] = Field(default_factory=dict)  # synced table → not_synced | syncing | ready | error


class RootResponse(BaseModel):
    """``GET /``."""

    status: str
    service: str
    version: str
