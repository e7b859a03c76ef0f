"""Shapes shared by several routers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

Row = dict[str, Any]

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


class RootResponse(BaseModel):
    """``GET /``."""

    status: str
    service: str
    version: str
