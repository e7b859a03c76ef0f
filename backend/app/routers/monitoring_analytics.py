"""``/api/monitoring/analytics``: the nine monitoring analytics endpoints (spec §9)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.deps import SettingsDep, StoreDep
from app.models.common import MAX_PAGE
from app.models.monitoring import (
    AnalysisInsightsResponse,
    ClassDistributionResponse,
    ClassificationBreakdownResponse,
    ClassificationTrendsResponse,
    CorrelationResponse,
    Granularity,
    LatencyDistributionResponse,
    MetricBreakdownResponse,
    SummaryResponse,
    TrendsResponse,
)
from app.services import monitoring_analytics as svc
from app.services.monitoring_table import MonitoringFilters

router = APIRouter(prefix="/api/monitoring/analytics", tags=["monitoring-analytics"])


# The common filter set of every endpoint: the dataclass fields are the query parameters (``metrics`` a CSV).
FiltersDep = Annotated[MonitoringFilters, Depends()]


@router.get("/summary", response_model=SummaryResponse)
async def summary(settings: SettingsDep, store: StoreDep, f: FiltersDep) -> SummaryResponse:
    """Record count, mean score, pass rate (percent) and latency percentiles."""
    return await svc.summary(store, settings.monitoring_db, f)


@router.get("/trends", response_model=TrendsResponse)
async def trends(
    settings: SettingsDep, store: StoreDep, f: FiltersDep, granularity: Granularity = "daily"
) -> TrendsResponse:
    """Per-bucket statistics of every metric."""
    return await svc.trends(store, settings.monitoring_db, f, granularity)


@router.get("/metric-breakdown", response_model=MetricBreakdownResponse)
async def metric_breakdown(
    settings: SettingsDep,
    store: StoreDep,
    f: FiltersDep,
    threshold: Annotated[float | None, Query(allow_inf_nan=False, description="Pass threshold (finite)")] = None,
    group_by: str | None = None,
) -> MetricBreakdownResponse:
    """Pass rate, mean and count per metric (threshold defaults to the configured pass value)."""
    return await svc.metric_breakdown(store, settings.monitoring_db, f, threshold, group_by)


@router.get("/latency-distribution", response_model=LatencyDistributionResponse)
async def latency_distribution(
    settings: SettingsDep,
    store: StoreDep,
    f: FiltersDep,
    bins: Annotated[int, Query(ge=5, le=100)] = 20,
    group_by: str | None = None,
) -> LatencyDistributionResponse:
    """Latency histogram and percentiles, optionally per group."""
    return await svc.latency_distribution(store, settings.monitoring_db, f, bins, group_by)


@router.get("/class-distribution", response_model=ClassDistributionResponse)
async def class_distribution(
    settings: SettingsDep, store: StoreDep, f: FiltersDep, metric: str, group_by: str
) -> ClassDistributionResponse:
    """Values and statistics of one metric per group."""
    return await svc.class_distribution(store, settings.monitoring_db, f, metric, group_by)


@router.get("/correlation", response_model=CorrelationResponse)
async def correlation(settings: SettingsDep, store: StoreDep, f: FiltersDep) -> CorrelationResponse:
    """Pearson correlation matrix of the metrics named in ``metrics``."""
    return await svc.correlation(store, settings.monitoring_db, f, f.metrics or "")


@router.get("/classification-breakdown", response_model=ClassificationBreakdownResponse)
async def classification_breakdown(
    settings: SettingsDep,
    store: StoreDep,
    f: FiltersDep,
    group_by: str | None = None,
    category_source: str = "explanation",
) -> ClassificationBreakdownResponse:
    """Label counts and percentages of classification metrics (``group_by`` accepted, unused)."""
    return await svc.classification_breakdown(store, settings.monitoring_db, f, category_source)


@router.get("/classification-trends", response_model=ClassificationTrendsResponse)
async def classification_trends(
    settings: SettingsDep,
    store: StoreDep,
    f: FiltersDep,
    metric_name: str,
    granularity: Granularity = "daily",
    category_source: str = "explanation",
) -> ClassificationTrendsResponse:
    """Label counts of one classification metric over time."""
    return await svc.classification_trends(store, settings.monitoring_db, f, metric_name, granularity, category_source)


@router.get("/analysis-insights", response_model=AnalysisInsightsResponse)
async def analysis_insights(
    settings: SettingsDep,
    store: StoreDep,
    f: FiltersDep,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> AnalysisInsightsResponse:
    """Paged analysis records, newest first."""
    return await svc.analysis_insights(store, settings.monitoring_db, f, page, limit)
