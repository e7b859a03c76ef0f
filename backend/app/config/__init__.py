"""Configuration: settings, YAML configs, theme and shared constants."""

from app.config.constants import Colors, Columns, Thresholds
from app.config.db_configs import (
    DBImportConfig,
    DuckDBConfig,
    EvalDBConfig,
    HumanSignalsDBConfig,
    MonitoringDBConfig,
)
from app.config.settings import BACKEND_DIR, ROOT_DIR, Settings, load_settings
from app.config.theme import Branding, Palette, ThemeConfig

__all__ = [
    "BACKEND_DIR",
    "ROOT_DIR",
    "Branding",
    "Colors",
    "Columns",
    "DBImportConfig",
    "DuckDBConfig",
    "EvalDBConfig",
    "HumanSignalsDBConfig",
    "MonitoringDBConfig",
    "Palette",
    "Settings",
    "ThemeConfig",
    "Thresholds",
    "load_settings",
]
