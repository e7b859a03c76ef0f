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


def _input(
    body: Any, dataset_id: str | None, source: ea.Source, metrics: list[str] | None
) -> tuple[ea.AnalyticsInput, list[str] | None]:
    raw = body.model_dump() if isinstance(body, AnalyticsBody) else body
    return ea.build_input(raw, dataset_id=dataset_id, source=source, query_metrics=metrics)


@router.post("/summary", response_model=SummaryResponse)
async def summary(
    store: StoreDep, body: BodyArg = None, dataset_id: DatasetArg = None, source: SourceArg = "auto"
) -> SummaryResponse:
    """Mean, sample std, min, max, count and passing rate per metric."""
    inp, _ = _input(body, dataset_id, source, None)
    return SummaryResponse(**await ea.summary(store, inp))


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
    inp, _ = _input(body, dataset_id, source, None)
    return DistributionResponse(**await ea.distribution(store, inp, metric=metric, bins=bins))


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
    inp, chosen = _input(body, dataset_id, source, metrics)
    return ComparisonResponse(**await ea.comparison(store, inp, group_by=group_by, metrics=chosen))


@router.post("/correlation", response_model=CorrelationResponse)
async def correlation(
    store: StoreDep,
    body: BodyArg = None,
    metrics: MetricsArg = None,
    dataset_id: DatasetArg = None,
    source: SourceArg = "auto",
) -> CorrelationResponse:
    """Pearson correlation matrix (pairwise-complete)."""
    inp, chosen = _input(body, dataset_id, source, metrics)
    return CorrelationResponse(**await ea.correlation(store, inp, metrics=chosen))


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
    inp, chosen = _input(body, dataset_id, source, metrics)
    return RadarResponse(**await ea.radar(store, inp, metrics=chosen, group_by=group_by))


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
    inp, _ = _input(body, dataset_id, source, None)
    return ScatterResponse(**await ea.scatter(store, inp, x_metric=x_metric, y_metric=y_metric, color_by=color_by))
