"""Evaluation data ingestion schemas (spec §4)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from app.models.common import CONFIG_ERROR_DOC, Row, RowsPayload, SuccessResponse


class UploadResponse(RowsPayload):
    """Upload / eval-db-import body: the Ref shape plus ``dataset_id`` and ``data_truncated``."""

    format: str
    row_count: int
    columns: list[str]
    preview: list[Row] = Field(default_factory=list)
    message: str
    data: list[Row]
    dataset_id: str
    data_truncated: bool = False


class ExampleResponse(RowsPayload):
    """``GET /example/{name}``: like an upload, without ``preview``."""

    format: str
    row_count: int
    columns: list[str]
    data: list[Row]
    message: str
    dataset_id: str
    data_truncated: bool = False


class DetectFormatResponse(SuccessResponse):
    """``POST /detect-format``: raw detection before processing."""

    format: str
    columns: list[str]
    row_count: int


class ConvertTreeResponse(SuccessResponse):
    """``POST /convert-tree``."""

    data: list[Row]
    columns: list[str]


class MetricMapping(BaseModel):
    """Metric vs component names of tree data."""

    metrics: list[str] = Field(default_factory=list)
    components: list[str] = Field(default_factory=list)


class PrepareAnalyticsResponse(SuccessResponse):
    """``POST /prepare-analytics``."""

    data: list[Row]
    columns: list[str]
    metric_columns: list[str]
    mapping: MetricMapping


class EvalDBConfigResponse(SuccessResponse):
    """``GET /eval-db-config``."""

    configured: bool
    auto_load: bool
    has_query: bool
    row_limit: int
    query_timeout: int
    config_error: str | None = Field(default=None, description=CONFIG_ERROR_DOC)
