"""``/api/monitoring``: monitoring upload, examples, db-config and db-import (spec §8)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.deps import SettingsDep, StoreDep
from app.models.monitoring import MonitoringDBConfigResponse, MonitoringUploadResponse
from app.routers.uploads import MULTIPART_FILE, read_upload_file
from app.serialization import RawJSONResponse
from app.services import monitoring_service

router = APIRouter(prefix="/api/monitoring", tags=["monitoring"])


@router.post("/upload", response_model=MonitoringUploadResponse, openapi_extra=MULTIPART_FILE)
async def upload(request: Request, settings: SettingsDep, store: StoreDep) -> RawJSONResponse:
    """Upload a monitoring CSV (wide or long); stored as the latest monitoring dataset."""
    file = await read_upload_file(request, max_bytes=settings.max_upload_bytes)
    res = await monitoring_service.upload_monitoring(store, settings, file, settings.spool_dir)
    return RawJSONResponse(res.render_json())


@router.get("/example/{dataset_name}", response_model=MonitoringUploadResponse)
async def example(settings: SettingsDep, store: StoreDep, dataset_name: str) -> RawJSONResponse:
    """Load a bundled monitoring sample."""
    res = await monitoring_service.load_monitoring_example(store, settings, dataset_name)
    return RawJSONResponse(res.render_json())


@router.get("/db-config", response_model=MonitoringDBConfigResponse)
async def db_config(settings: SettingsDep) -> MonitoringDBConfigResponse:
    """Monitoring database configuration, thresholds and anomaly-detection settings."""
    return monitoring_service.monitoring_db_config(settings)


@router.post("/db-import", response_model=MonitoringUploadResponse)
async def db_import(settings: SettingsDep, store: StoreDep) -> RawJSONResponse:
    """Import monitoring rows from the configured PostgreSQL database into the store."""
    res = await monitoring_service.import_monitoring_from_db(store, settings)
    return RawJSONResponse(res.render_json())
