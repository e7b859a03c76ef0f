"""``/api/human-signals``: V2 human-signals upload, example, db-config, db-import, cases, schema (§7.6)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from app.deps import SettingsDep, StoreDep
from app.models.common import MAX_PAGE
from app.models.human_signals import CaseListResponse, HumanSignalsDBConfigResponse, MetricSchemaResponse
from app.routers.uploads import MULTIPART_FILE, read_upload_file
from app.serialization import RawJSONResponse
from app.services import human_signals_service

router = APIRouter(prefix="/api/human-signals", tags=["human-signals"])


@router.post("/upload", response_model=CaseListResponse, openapi_extra=MULTIPART_FILE)
async def upload(request: Request, settings: SettingsDep, store: StoreDep) -> RawJSONResponse:
    """Upload a V2 human-signals CSV; stored as the latest human-signals dataset."""
    file = await read_upload_file(request, max_bytes=settings.max_upload_bytes)
    res = await human_signals_service.upload_human_signals(store, settings, file, settings.spool_dir)
    return RawJSONResponse(res.render_json())


@router.get("/example/{dataset_name}", response_model=CaseListResponse)
async def example(settings: SettingsDep, store: StoreDep, dataset_name: str) -> RawJSONResponse:
    """Load the bundled ``hitl`` sample."""
    res = await human_signals_service.load_human_signals_example(store, settings, dataset_name)
    return RawJSONResponse(res.render_json())


@router.get("/db-config", response_model=HumanSignalsDBConfigResponse)
async def db_config(settings: SettingsDep) -> HumanSignalsDBConfigResponse:
    """Human-signals database configuration (no secrets)."""
    return human_signals_service.human_signals_db_config(settings)


@router.post("/db-import", response_model=CaseListResponse)
async def db_import(settings: SettingsDep, store: StoreDep) -> RawJSONResponse:
    """Serve synced cases or import human signals from the configured database."""
    res = await human_signals_service.import_human_signals_from_db(store, settings)
    return RawJSONResponse(res.render_json())


@router.get("/cases", response_model=CaseListResponse)
async def cases(
    settings: SettingsDep,
    store: StoreDep,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
    dataset_id: str | None = None,
) -> RawJSONResponse:
    """One page of cases of the chosen (default: latest) human-signals dataset."""
    res = await human_signals_service.list_cases(store, settings, page, page_size, dataset_id)
    return RawJSONResponse(res.render_json())


@router.get("/metric-schema", response_model=MetricSchemaResponse)
async def metric_schema(settings: SettingsDep, store: StoreDep, dataset_id: str | None = None) -> MetricSchemaResponse:
    """Metric schema and display config of the chosen (default: latest) human-signals dataset."""
    return await human_signals_service.metric_schema(store, settings, dataset_id)
