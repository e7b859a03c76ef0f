"""Monitoring ingestion (spec §8) and monitoring analytics (spec §9) schemas."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.models.common import CONFIG_ERROR_DOC, Row, RowsPayload, SuccessResponse

Granularity = Literal["hourly", "daily", "weekly"]


# --------------------------------------------------------------------------- ingestion
class MonitoringUploadResponse(RowsPayload):
    """Upload / example / db-import body: the Ref shape plus ``dataset_id``."""

    format: str = "monitoring"
    row_count: int
    columns: list[str]
    metric_columns: list[str]
    data: list[Row]
    preview: list[Row] = Field(default_factory=list)
    message: str
    dataset_id: str
    data_truncated: bool = False
    source: str | None = None


class ConnectionInfo(BaseModel):
    """Non-secret connection summary of a configured database."""

    host: str | None
    port: int
    database: str | None
    schema_name: str | None = Field(default=None, serialization_alias="schema")
    table: str | None
    ssl_mode: str
    has_url: bool

    model_config = ConfigDict(populate_by_name=True)


class ThresholdValues(BaseModel):
    """good / pass thresholds."""

    good: float
    pass_: float = Field(serialization_alias="pass")

    model_config = ConfigDict(populate_by_name=True)


class ThresholdsOut(BaseModel):
    """Configured thresholds: default and per source."""

    default: ThresholdValues
    per_source: dict[str, ThresholdValues]


class SourceDBConfigResponse(SuccessResponse):
    """What a monitoring or human-signals database config holds (no secrets)."""

    configured: bool
    auto_connect: bool
    auto_load: bool
    has_query: bool
    row_limit: int
    query_timeout: int
    connection: ConnectionInfo | None
    config_error: str | None = Field(default=None, description=CONFIG_ERROR_DOC)


class MonitoringDBConfigResponse(SourceDBConfigResponse):
    """``GET /api/monitoring/db-config``."""

    thresholds: ThresholdsOut
    anomaly_detection: dict[str, Any]


# --------------------------------------------------------------------------- analytics
class SummaryKpis(BaseModel):
    """KPIs of ``/summary``; pass_rate is a percentage (0–100)."""

    total_records: int = 0
    avg_score: float | None = 0.0
    pass_rate: float | None = Field(default=0.0, description="Percent (0–100) of scores ≥ 0.5")
    p50_latency: float | None = 0.0
    p95_latency: float | None = 0.0
    p99_latency: float | None = 0.0


class SummaryResponse(SuccessResponse):
    """``GET /summary``."""

    kpis: SummaryKpis
    dataset_id: str
    threshold: float
    cached: bool = False


class TrendPoint(BaseModel):
    """One (bucket, metric) point of ``/trends``."""

    timestamp: str
    metric: str
    avg: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    count: int


class TrendsResponse(SuccessResponse):
    """``GET /trends``."""

    data: list[TrendPoint]
    metrics: list[str]
    granularity: str
    dataset_id: str


class GroupStats(BaseModel):
    """Per-group pass rate (percent), mean and count."""

    pass_rate: float | None = Field(description="Percent (0–100) of scores ≥ the threshold")
    avg: float | None
    count: int


class MetricBreakdownItem(BaseModel):
    """One metric of ``/metric-breakdown``."""

    name: str
    pass_rate: float | None = Field(description="Percent (0–100) of scores ≥ the threshold")
    avg: float | None
    count: int
    by_group: dict[str, GroupStats] | None = None


class MetricBreakdownResponse(SuccessResponse):
    """``GET /metric-breakdown``."""

    metrics: list[MetricBreakdownItem]
    threshold: float
    dataset_id: str


class Percentiles(BaseModel):
    """p50 / p95 / p99."""

    p50: float | None = 0.0
    p95: float | None = 0.0
    p99: float | None = 0.0


class Histogram(BaseModel):
    """Bin counts and bins+1 edges."""

    counts: list[int]
    edges: list[float]


class GroupHistogram(BaseModel):
    """A group's counts over the overall edges and its own percentiles."""

    counts: list[int]
    percentiles: Percentiles


class LatencyDistributionResponse(SuccessResponse):
    """``GET /latency-distribution``."""

    histogram: Histogram
    percentiles: Percentiles
    by_group: dict[str, GroupHistogram] | None = None
    dataset_id: str


class DistributionStats(BaseModel):
    """Summary statistics of one group's values."""

    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    median: float | None
    count: int


class ClassDistributionGroup(BaseModel):
    """One group of ``/class-distribution``; ``values`` is capped (quantile sketch when truncated)."""

    group: str
    values: list[float]
    values_truncated: bool = False
    stats: DistributionStats


class ClassDistributionResponse(SuccessResponse):
    """``GET /class-distribution``."""

    data: list[ClassDistributionGroup]
    metric: str
    group_by: str
    dataset_id: str


class CorrelationResponse(SuccessResponse):
    """``GET /correlation``."""

    matrix: list[list[float]]
    metrics: list[str]
    dataset_id: str | None = None


class CategoryCount(BaseModel):
    """One category value with its count and percentage (one decimal)."""

    value: str
    count: int
    percentage: float


class ClassificationMetric(BaseModel):
    """Category counts of one metric."""

    metric_name: str
    categories: list[CategoryCount]
    total_count: int


class ClassificationBreakdownResponse(SuccessResponse):
    """``GET /classification-breakdown``."""

    metrics: list[ClassificationMetric]
    dataset_id: str


class ClassificationTrendPoint(BaseModel):
    """Category counts in one time bucket."""

    timestamp: str
    categories: dict[str, int]


class ClassificationTrendsResponse(SuccessResponse):
    """``GET /classification-trends``."""

    data: list[ClassificationTrendPoint]
    metric_name: str
    granularity: str
    unique_categories: list[str]
    dataset_id: str


class SourceInfo(BaseModel):
    """Where an analysis record came from."""

    environment: str | None = None
    source_name: str | None = None
    source_component: str | None = None


class AnalysisRecord(BaseModel):
    """One ANALYSIS row."""

    dataset_id: str | None
    timestamp: str | None
    metric_name: str | None
    query: str | None
    actual_output: str | None
    signals: Any = None
    explanation: str | None
    source_info: SourceInfo


class AnalysisInsightsResponse(SuccessResponse):
    """``GET /analysis-insights``."""

    records: list[AnalysisRecord]
    total_count: int
    page: int
    limit: int
    metric_names: list[str]
    dataset_id: str
