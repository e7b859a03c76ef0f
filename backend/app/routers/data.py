"""``/api/data``: evaluation data upload, detection, reshaping, examples and database import."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request

from app.deps import SettingsDep, StoreDep
from app.models.data import (
    ConvertTreeResponse,
    DetectFormatResponse,
    EvalDBConfigResponse,
    ExampleResponse,
    PrepareAnalyticsResponse,
    UploadResponse,
)
from app.routers.uploads import MULTIPART_FILE, read_upload_file
from app.serialization import RawJSONResponse
from app.services import data_processor, eval_reshaping
from app.services import eval_db_import as eval_db

router = APIRouter(prefix="/api/data", tags=["data"])

Records = Annotated[list[dict[str, Any]], Body()]


@router.post("/upload", response_model=UploadResponse, openapi_extra=MULTIPART_FILE)
async def upload(request: Request, settings: SettingsDep, store: StoreDep) -> RawJSONResponse:
    """Upload an evaluation CSV; it is processed and stored as the latest eval dataset."""
    max_bytes = settings.max_upload_bytes
    file = await read_upload_file(request, max_bytes=max_bytes)
    res = await data_processor.upload_eval_csv(
        store,
        file,
        max_bytes=max_bytes,
        spool_dir=settings.spool_dir,
        row_cap=settings.upload_response_row_cap,
    )
    return RawJSONResponse(res.render_json())


@router.post("/detect-format", response_model=DetectFormatResponse, openapi_extra=MULTIPART_FILE)
async def detect_format(request: Request, settings: SettingsDep, store: StoreDep) -> DetectFormatResponse:
    """Detect the format of a CSV without storing it."""
    max_bytes = settings.max_upload_bytes
    file = await read_upload_file(request, max_bytes=max_bytes)
    return await data_processor.detect_upload_format(store, file, max_bytes=max_bytes, spool_dir=settings.spool_dir)


@router.post("/convert-tree", response_model=ConvertTreeResponse)
async def convert_tree(
    store: StoreDep,
    records: Records,
    metric_type: Annotated[str | None, Query()] = None,
    include_conversation: Annotated[bool, Query()] = False,
) -> ConvertTreeResponse:
    """Pivot tree rows to one wide row per item."""
    return await eval_reshaping.convert_tree(
        store, records, metric_type=metric_type, include_conversation=include_conversation
    )


@router.post("/prepare-analytics", response_model=PrepareAnalyticsResponse)
async def prepare_analytics(
    store: StoreDep,
    records: Records,
    format_type: Annotated[str, Query()],
    metric_type: Annotated[str | None, Query()] = None,
) -> PrepareAnalyticsResponse:
    """Wide rows, metric columns and the metric/component mapping for the analytics views."""
    return await eval_reshaping.prepare_analytics(store, records, format_type=format_type, metric_type=metric_type)


@router.get("/example/{dataset_name}", response_model=ExampleResponse)
async def example(settings: SettingsDep, store: StoreDep, dataset_name: str) -> RawJSONResponse:
    """Load one of the bundled example datasets (model, comparison, annotation, align)."""
    res = await data_processor.load_example(
        store, dataset_name, sample_dir=settings.axis_sample_dir, row_cap=settings.upload_response_row_cap
    )
    return RawJSONResponse(res.render_json())


@router.get("/eval-db-config", response_model=EvalDBConfigResponse)
async def eval_db_config(settings: SettingsDep) -> EvalDBConfigResponse:
    """Whether the evaluation database is configured (no secrets)."""
    return eval_db.eval_db_status(settings.eval_db)


@router.post("/eval-db-import", response_model=UploadResponse)
async def eval_db_import(settings: SettingsDep, store: StoreDep) -> RawJSONResponse:
    """Import evaluation data with the configured split queries and store it."""
    res = await eval_db.import_eval_db(store, settings.eval_db, row_cap=settings.upload_response_row_cap)
    return RawJSONResponse(res.render_json())
