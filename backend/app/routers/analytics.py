"""``/api/analytics``: evaluation metric statistics over the stored dataset or inline rows."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query

from app.deps import StoreDep
from app.models.analytics import (
    AnalyticsBody,
    ComparisonResponse,
    CorrelationResponse,
    DistributionResponse,
    RadarResponse,
    ScatterResponse,
    SummaryResponse,
)
from app.services import eval_analytics as ea

router = APIRouter(prefix="/api/analytics", tags=["analytics"])

BodyArg = Annotated[list[dict[str, Any]] | AnalyticsBody | None, Body()]
DatasetArg = Annotated[str | None, Query(description="Stored eval dataset; default the latest")]
SourceArg = Annotated[ea.Source, Query(description="auto: inline rows when given, else the store")]
MetricsArg = Annotated[list[str] | None, Query(description="Repeated, comma-separated or a JSON array")]


@router.post("/summary", response_model=SummaryResponse)
async def summary(
    store: StoreDep, body: BodyArg = None, dataset_id: DatasetArg = None, source: SourceArg = "auto"
) -> SummaryResponse:
    """Mean, sample std, min, max, count and passing rate per metric."""
    return await ea.summary(store, body, dataset_id=dataset_id, source=source)


@router.post("/distribution", response_model=DistributionResponse)
async def distribution(
    store: StoreDep,
    metric: Annotated[str, Query()],
    body: BodyArg = None,
    bins: Annotated[int, Query(ge=1, le=ea.MAX_BINS)] = 20,
    dataset_id: DatasetArg = None,
    source: SourceArg = "auto",
) -> DistributionResponse:
    """Histogram, quantiles and (capped) values of one metric."""
    return await ea.distribution(store, body, metric=metric, bins=bins, dataset_id=dataset_id, source=source)


@router.post("/comparison", response_model=ComparisonResponse)
async def comparison(
    store: StoreDep,
    group_by: Annotated[str, Query()],
    body: BodyArg = None,
    metrics: MetricsArg = None,
    dataset_id: DatasetArg = None,
    source: SourceArg = "auto",
) -> ComparisonResponse:
    """Per-group mean, std and count of each metric."""
    return await ea.comparison(store, body, group_by=group_by, metrics=metrics, dataset_id=dataset_id, source=source)


@router.post("/correlation", response_model=CorrelationResponse)
async def correlation(
    store: StoreDep,
    body: BodyArg = None,
    metrics: MetricsArg = None,
    dataset_id: DatasetArg = None,
    source: SourceArg = "auto",
) -> CorrelationResponse:
    """Pearson correlation matrix (pairwise-complete)."""
    return await ea.correlation(store, body, metrics=metrics, dataset_id=dataset_id, source=source)


@router.post("/radar", response_model=RadarResponse)
async def radar(
    store: StoreDep,
    body: BodyArg = None,
    metrics: MetricsArg = None,
    group_by: Annotated[str | None, Query()] = None,
    dataset_id: DatasetArg = None,
    source: SourceArg = "auto",
) -> RadarResponse:
    """Average of each metric per group (or overall)."""
    return await ea.radar(store, body, metrics=metrics, group_by=group_by, dataset_id=dataset_id, source=source)


@router.post("/scatter", response_model=ScatterResponse, response_model_exclude_none=True)
async def scatter(
    store: StoreDep,
    x_metric: Annotated[str, Query()],
    y_metric: Annotated[str, Query()],
    body: BodyArg = None,
    color_by: Annotated[str | None, Query()] = None,
    dataset_id: DatasetArg = None,
    source: SourceArg = "auto",
) -> ScatterResponse:
    """x/y points of two metrics, optional colour and ids."""
    return await ea.scatter(
        store, body, x_metric=x_metric, y_metric=y_metric, color_by=color_by, dataset_id=dataset_id, source=source
    )
