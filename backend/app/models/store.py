"""Request/response shapes of ``/api/store`` (spec §10.10–10.11)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from app.models.common import MessageResponse, Row, SuccessResponse


class SyncStartedResponse(MessageResponse):
    """``POST /sync`` and ``POST /sync/{dataset}``: the background job's id and the datasets it syncs."""

    sync_id: str
    datasets: list[str]


class ResetWatermarkResponse(BaseModel):
    """``POST /sync/{dataset}/reset-watermark`` (``success`` is false for kpi)."""

    success: bool
    message: str


class DatasetSyncStatus(BaseModel):
    """Persisted sync status of one API table (§10.10)."""

    model_config = ConfigDict(extra="ignore")

    state: str
    rows: int = 0
    last_sync: str | None = None
    error: str | None = None
    truncated: bool = False
    sync_type: str | None = None
    last_incremental: str | None = None
    incremental_rows: int = 0
    sync_id: str | None = None
    reader: str | None = None
    reason: str | None = None
    seconds: float | None = None
    phases: dict[str, float] | None = None
    refresh_interval_minutes: int | None = None
    incremental_column: str | None = None
    watermarks: dict[str, Any] | None = None
    incremental_disabled: str | None = None  # why syncs stay full although incremental_column is set


class StoreStatusResponse(SuccessResponse):
    """``GET /status``."""

    enabled: bool
    leader: bool
    running: dict[str, str]
    datasets: dict[str, DatasetSyncStatus]


class MetadataResponse(SuccessResponse):
    """``GET /metadata/{dataset}``."""

    dataset: str
    metadata: dict[str, Any]


class DataPageResponse(SuccessResponse):
    """``GET /data/{dataset}``: one page of rows and the filtered total."""

    data: list[Row]
    total: int
    page: int
    page_size: int
    dataset_id: str | None = None
    next_cursor: str | None = None  # pass as ``cursor`` for the next page (keyset); None on the last page


class DatasetEntry(BaseModel):
    """One row of the dataset registry."""

    dataset_id: str
    kind: str
    source: str
    table_name: str
    row_count: int
    columns: list[dict[str, str]]
    loaded_at: str
    status: str
    format: str | None = None


class DatasetListResponse(SuccessResponse):
    """``GET /datasets``."""

    datasets: list[DatasetEntry]
    total: int
