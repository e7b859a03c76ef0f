"""Theme, visibility, features, agents and branding assets (spec §3)."""

from __future__ import annotations

import logging
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from pydantic import ValidationError

from app.config import Settings
from app.config.yaml_loader import read_yaml_list_section
from app.errors import NotFound
from app.models.config import (
    AgentInfo,
    AgentsResponse,
    BrandingOut,
    FeaturesResponse,
    HumanSignalsVisibility,
    KpiVisibility,
    MonitoringVisibility,
    ThemeResponse,
    VisibilityResponse,
)

logger = logging.getLogger(__name__)

ASSET_DIRS = {"branding": "branding", "agents": "agents"}
ASSET_CACHE = {"branding": "public, max-age=31536000, immutable", "agents": "public, max-age=86400"}


def get_theme(settings: Settings) -> ThemeResponse:
    """Active palette, all palettes and branding."""
    theme = settings.theme
    branding = theme.branding.model_dump()
    branding["footer_name"] = branding["footer_name"] or branding["app_name"]
    branding["footer_icon"] = branding["footer_icon"] or None
    return ThemeResponse(
        active=theme.active,
        active_palette=theme.active_palette,
        palettes=theme.palettes,
        branding=BrandingOut.model_validate(branding),
    )


def get_visibility(settings: Settings) -> VisibilityResponse:
    """Which metrics and KPIs the dashboard shows (empty list = all)."""
    return VisibilityResponse(
        kpi=KpiVisibility(),
        monitoring=MonitoringVisibility(visible_metrics=settings.monitoring_db.visible_metrics),
        human_signals=HumanSignalsVisibility(
            visible_metrics=settings.human_signals_db.visible_metrics,
            visible_kpis=settings.human_signals_db.visible_kpis,
        ),
    )


def get_features(settings: Settings) -> FeaturesResponse:
    """Feature flags."""
    return FeaturesResponse(
        eval_runner_enabled=settings.eval_db.eval_runner_enabled, copilot_enabled=settings.copilot_enabled
    )


def get_agents(settings: Settings) -> AgentsResponse:
    """Agent personas from agents.yaml: a list or a name→fields mapping ([] when absent or malformed)."""
    path = settings.yaml_path("agents.yaml")
    section = read_yaml_list_section(path, "agents", settings.yaml_environ)
    agents: list[AgentInfo] = []
    for index, item in enumerate(section):
        try:
            agents.append(AgentInfo.model_validate(item))
        except ValidationError:
            logger.warning("Ignoring agent #%d in %s: invalid fields", index, path)
    return AgentsResponse(agents=agents)


@dataclass
class AssetFile:
    """A resolved asset: its path, MIME type and cache header."""

    path: Path
    media_type: str
    cache_control: str


def resolve_asset(settings: Settings, asset_type: str, filename: str) -> AssetFile:
    """Resolve an asset inside its base folder; anything outside or missing → NotFound."""
    if asset_type not in ASSET_DIRS:
        raise NotFound("Asset not found")
    name = unquote(filename)
    if not name or "\x00" in name or name.startswith(("/", "\\")) or Path(name).is_absolute():
        raise NotFound("Asset not found")
    base = (settings.axis_custom_dir / ASSET_DIRS[asset_type]).resolve()
    candidate = (base / name).resolve()
    if not candidate.is_relative_to(base) or not candidate.is_file():
        raise NotFound("Asset not found")
    media_type = mimetypes.guess_type(candidate.name)[0] or "application/octet-stream"
    return AssetFile(path=candidate, media_type=media_type, cache_control=ASSET_CACHE[asset_type])


__all__ = [
    "AssetFile",
    "get_agents",
    "get_features",
    "get_theme",
    "get_visibility",
    "resolve_asset",
]
