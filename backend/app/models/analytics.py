"""Evaluation analytics schemas (spec §5)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from app.models.common import Row, SuccessResponse


class AnalyticsBody(BaseModel):
    """Object body form: ``{data, metrics, dataset_id}`` (a raw list of rows is accepted too)."""

    data: list[Row] = Field(default_factory=list)
    metrics: list[str] | str | None = None
    dataset_id: str | None = None


class MetricSummary(BaseModel):
    """One metric's summary statistics."""

    metric_name: str
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    count: int
    passing_rate: float | None = Field(description="Fraction (0–1) of the values ≥ 0.5")


DATASET_ID_DOC = "The stored eval dataset analysed; null when inline rows were analysed"


class SummaryResponse(SuccessResponse):
    """``POST /summary``."""

    summary: list[MetricSummary]
    total_records: int
    dataset_id: str | None = Field(default=None, description=DATASET_ID_DOC)


class Histogram(BaseModel):
    """Equal-width histogram."""

    counts: list[int]
    bin_edges: list[float]


class DistributionStats(BaseModel):
    """Location and spread of one metric."""

    mean: float
    median: float
    std: float
    q25: float
    q75: float


class DistributionResponse(SuccessResponse):
    """``POST /distribution``; ``values`` is capped (``values_truncated``)."""

    metric: str
    values: list[float]
    values_total: int
    values_truncated: bool
    histogram: Histogram
    stats: DistributionStats
    dataset_id: str | None = Field(default=None, description=DATASET_ID_DOC)


class ComparisonResponse(SuccessResponse):
    """``POST /comparison``: ``[{group, <metric>: {mean, std, count}}]``."""

    comparison: list[dict[str, Any]]
    metrics: list[str]
    groups: list[str]
    dataset_id: str | None = Field(default=None, description=DATASET_ID_DOC)


class CorrelationResponse(SuccessResponse):
    """``POST /correlation``: Pearson matrix, null where undefined."""

    correlation: dict[str, dict[str, float | None]]
    metrics: list[str]
    dataset_id: str | None = Field(default=None, description=DATASET_ID_DOC)


class RadarTrace(BaseModel):
    """One radar polygon."""

    name: str
    values: list[float]


class RadarResponse(SuccessResponse):
    """``POST /radar``."""

    metrics: list[str]
    traces: list[RadarTrace]
    dataset_id: str | None = Field(default=None, description=DATASET_ID_DOC)


class ScatterResponse(SuccessResponse):
    """``POST /scatter``: null pairs dropped, at most ``point_cap`` points (``truncated``)."""

    x: list[float]
    y: list[float]
    x_metric: str
    y_metric: str
    color: list[str | None] | None = None
    color_by: str | None = None
    ids: list[str | None] | None = None
    total_points: int
    truncated: bool
    point_cap: int
    dataset_id: str | None = Field(default=None, description=DATASET_ID_DOC)
