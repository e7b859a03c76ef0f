"""Human-signals schemas (spec §7.6)."""

from __future__ import annotations

from typing import Any

from app.models.common import Row, RowsPayload, SuccessResponse
from app.models.monitoring import SourceDBConfigResponse


class CaseListResponse(RowsPayload):
    """The common case-list body of upload, example, db-import and cases."""

    format: str = "hitl_feedback"
    row_count: int
    columns: list[str]
    data: list[Row]
    message: str
    metric_schema: dict[str, Any] | None = None
    display_config: dict[str, Any] | None = None
    source: str | None = None
    dataset_id: str | None = None
    data_truncated: bool = False
    page: int | None = None
    page_size: int | None = None


class HumanSignalsDBConfigResponse(SourceDBConfigResponse):
    """``GET /api/human-signals/db-config``."""


class MetricSchemaResponse(SuccessResponse):
    """``GET /api/human-signals/metric-schema``."""

    metric_schema: dict[str, Any]
    display_config: dict[str, Any]
    dataset_id: str | None = None
