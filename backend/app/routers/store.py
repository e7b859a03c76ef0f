"""``/api/store``: sync triggers, sync status, metadata, paginated data and the dataset registry (§10.11)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.deps import SettingsDep, StoreDep, SyncEngineDep
from app.models.common import MAX_PAGE, MessageResponse
from app.models.store import (
    DataPageResponse,
    DatasetListResponse,
    MetadataResponse,
    ResetWatermarkResponse,
    StoreStatusResponse,
    SyncStartedResponse,
)
from app.services import store_service as svc
from app.services.duckdb_store import DatasetKind
from app.services.store_service import DataQuery

router = APIRouter(prefix="/api/store", tags=["store"])


@router.post("/sync", response_model=SyncStartedResponse)
async def sync_all(engine: SyncEngineDep, full: bool = False) -> SyncStartedResponse:
    """Start a background sync of every eligible dataset (409 while one runs)."""
    return svc.start_sync(engine, None, full)


@router.post("/sync/{dataset}", response_model=SyncStartedResponse)
async def sync_dataset(engine: SyncEngineDep, dataset: str, full: bool = False) -> SyncStartedResponse:
    """Start a background sync of one dataset (400 ineligible, 404 unknown, 409 running)."""
    return svc.start_sync(engine, dataset, full)


@router.post("/sync/{dataset}/reset-watermark", response_model=ResetWatermarkResponse)
async def reset_watermark(engine: SyncEngineDep, dataset: str) -> ResetWatermarkResponse:
    """Clear the dataset's watermarks so the next sync rebuilds in full."""
    return await svc.reset_watermark(engine, dataset)


@router.get("/status", response_model=StoreStatusResponse)
async def status(engine: SyncEngineDep, settings: SettingsDep) -> StoreStatusResponse:
    """Persisted sync status of every store table."""
    return await svc.store_status(engine, settings)


@router.get("/datasets", response_model=DatasetListResponse)
async def datasets(
    store: StoreDep,
    kind: Annotated[DatasetKind | None, Query(description="Only datasets of this kind")] = None,
) -> DatasetListResponse:
    """Every stored dataset (uploads, imports, syncs, eval runs, examples), newest first; 422 for an unknown kind."""
    return await svc.list_datasets(store, kind)


@router.delete("/datasets/{dataset_id}", response_model=MessageResponse)
async def delete_dataset(store: StoreDep, dataset_id: str) -> MessageResponse:
    """Delete an uploaded, imported or example dataset and its derived tables."""
    return await svc.delete_dataset(store, dataset_id)


@router.get("/metadata/{dataset}", response_model=MetadataResponse)
async def metadata(store: StoreDep, dataset: str, dataset_id: str | None = None) -> MetadataResponse:
    """Row count, columns, filter values, time range and score summary of a dataset."""
    return await svc.dataset_metadata(store, dataset, dataset_id)


@router.get("/data/{dataset}", response_model=DataPageResponse)
async def data(
    store: StoreDep,
    settings: SettingsDep,
    dataset: str,
    dataset_id: str | None = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
    sort_by: str | None = None,
    sort_dir: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
    columns: str | None = None,
    environment: str | None = None,
    source_name: str | None = None,
    source_component: str | None = None,
    source_type: str | None = None,
    metric_name: str | None = None,
    metric_category: str | None = None,
    time_start: str | None = None,
    time_end: str | None = None,
    search: str | None = None,
    cursor: Annotated[
        str | None,
        Query(max_length=4096, description="next_cursor of the previous page (same filters, sort and columns)"),
    ] = None,
) -> DataPageResponse:
    """One page of rows: equality filters, time bounds, escaped search, allow-listed sort, projection.

    ``cursor`` (a previous page's ``next_cursor``) reads the next page by keyset instead of OFFSET;
    ``page`` is then ignored.
    """
    query = DataQuery(
        cursor=cursor,
        page=page,
        page_size=page_size,
        sort_by=sort_by,
        sort_dir=sort_dir,
        columns=columns,
        environment=environment,
        source_name=source_name,
        source_component=source_component,
        source_type=source_type,
        metric_name=metric_name,
        metric_category=metric_category,
        time_start=time_start,
        time_end=time_end,
        search=search,
    )
    return await svc.dataset_rows(store, dataset, dataset_id, query, settings.duckdb.page_offset_rows)
