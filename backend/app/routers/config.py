"""``/api/config``: theme, visibility, features, agents and branding assets."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.deps import SettingsDep
from app.models.config import AgentsResponse, FeaturesResponse, ThemeResponse, VisibilityResponse
from app.services import config_service

router = APIRouter(prefix="/api/config", tags=["config"])


@router.get("/theme", response_model=ThemeResponse, response_model_by_alias=True)
async def theme(settings: SettingsDep) -> ThemeResponse:
    """Active palette, palettes and branding."""
    return config_service.get_theme(settings)


@router.get("/visibility", response_model=VisibilityResponse)
async def visibility(settings: SettingsDep) -> VisibilityResponse:
    """Visible metrics and KPIs."""
    return config_service.get_visibility(settings)


@router.get("/features", response_model=FeaturesResponse)
async def features(settings: SettingsDep) -> FeaturesResponse:
    """Feature flags."""
    return config_service.get_features(settings)


@router.get("/agents", response_model=AgentsResponse)
async def agents(settings: SettingsDep) -> AgentsResponse:
    """Agent personas."""
    return config_service.get_agents(settings)


@router.get("/assets/{asset_type}/{filename:path}", response_class=FileResponse)
async def asset(asset_type: str, filename: str, settings: SettingsDep) -> FileResponse:
    """A branding or agent image; anything outside the asset folders answers 404."""
    found = config_service.resolve_asset(settings, asset_type, filename)
    return FileResponse(found.path, media_type=found.media_type, headers={"Cache-Control": found.cache_control})
