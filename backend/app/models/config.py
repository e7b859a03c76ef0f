"""Config router schemas (spec §3)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from app.config.theme import Branding, Palette
from app.models.common import SuccessResponse


class BrandingOut(Branding):
    """Branding as served: empty footer_name → app_name, empty footer_icon → null."""

    footer_icon: str | None = ""  # type: ignore[assignment]


class ThemeResponse(SuccessResponse):
    """``GET /api/config/theme``."""

    model_config = ConfigDict(populate_by_name=True)

    active: str
    active_palette: Palette = Field(serialization_alias="activePalette")
    palettes: dict[str, Palette]
    branding: BrandingOut


class KpiVisibility(BaseModel):
    """KPI visibility lists (the KPI dashboard is out of scope: always empty)."""

    visible_kpis: list[str] = Field(default_factory=list)
    visible_kpis_per_source: dict[str, list[str]] = Field(default_factory=dict)


class MonitoringVisibility(BaseModel):
    """Monitoring metrics shown (empty = all)."""

    visible_metrics: list[str]


class HumanSignalsVisibility(BaseModel):
    """Human-signals metrics and KPIs shown (empty = all)."""

    visible_metrics: list[str]
    visible_kpis: list[str]


class VisibilityResponse(SuccessResponse):
    """``GET /api/config/visibility``."""

    kpi: KpiVisibility
    monitoring: MonitoringVisibility
    human_signals: HumanSignalsVisibility


class FeaturesResponse(SuccessResponse):
    """``GET /api/config/features``."""

    eval_runner_enabled: bool
    copilot_enabled: bool


class AgentInfo(BaseModel):
    """One agent persona from agents.yaml."""

    name: str
    label: str | None = None
    role: str | None = None
    avatar: str | None = None
    description: str | None = None
    biography: str | None = None
    active: bool = True
    trace_names: list[str] = Field(default_factory=list)


class AgentsResponse(SuccessResponse):
    """``GET /api/config/agents``."""

    agents: list[AgentInfo]
