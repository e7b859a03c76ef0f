"""Display config for the human-signals dashboard (spec §7.5), from a metric schema + YAML overrides."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app.config.yaml_loader import read_yaml_section

COLOR_PALETTE = (
    "#8B9F4F",
    "#D4AF37",
    "#B8C5D3",
    "#A4B86C",
    "#6B7A3A",
    "#F39C12",
    "#E74C3C",
    "#7F8C8D",
    "#34495E",
    "#B8C78A",
)
OVERRIDE_KEYS = ("kpi_strip", "chart_sections", "filters", "table_columns")
SOURCE_LABELS = {
    "source_name": "Source",
    "source_component": "Component",
    "source_type": "Source Type",
    "environment": "Environment",
}
TIME_WORDS = ("time", "duration", "latency", "elapsed", "wait", "ttq", "tat")


def label(key: str) -> str:
    """``is_escalated`` → ``Is Escalated``."""
    return key.replace("_", " ").title()


def _bool_icon(key: str) -> str:
    for word, icon in (
        ("complian", "shield-check"),
        ("intervention", "target"),
        ("escalat", "alert-triangle"),
        ("actionable", "check-circle"),
        ("override", "rotate-ccw"),
    ):
        if word in key:
            return icon
    return "target"


def _number_icon(key: str) -> str:
    if any(w in key for w in TIME_WORDS):
        return "clock"
    for words, icon in (
        (("cost", "price", "revenue"), "dollar-sign"),
        (("count", "total"), "bar-chart-3"),
        (("rate", "ratio"), "percent"),
        (("efficiency", "performance"), "activity"),
    ):
        if any(w in key for w in words):
            return icon
    return "hash"


def load_signals_metrics_yaml(path: Path, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The ``signals_metrics`` section, ``${VAR}`` expanded from ``environ`` ({} when absent or unreadable)."""
    return read_yaml_section(path, "signals_metrics", environ) or {}


def build_display_config(
    metric_schema: dict[str, Any], visible_kpis: list[str] | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """kpi_strip, chart_sections, filters, table_columns and color_maps for a metric schema."""
    metrics: dict[str, Any] = metric_schema.get("metrics") or {}
    kpis: list[dict[str, Any]] = []
    classification: list[dict[str, Any]] = []
    insights: list[dict[str, Any]] = []
    filters: list[dict[str, Any]] = []
    table_columns: list[dict[str, Any]] = [{"key": "Case_ID", "label": "Case ID", "sortable": True}]
    color_maps: dict[str, dict[str, str]] = {}
    source_fields = list(metric_schema.get("source_fields") or [])
    for fld in source_fields:
        filters.append({"type": "source", "field": fld, "label": SOURCE_LABELS.get(fld, label(fld))})
    if "source_name" in source_fields:
        table_columns.append({"key": "source_name", "label": "Source", "sortable": True})
    table_columns.append({"key": "Business", "label": "Business", "sortable": True})
    for metric, spec in metrics.items():
        types: dict[str, str] = spec.get("signal_types") or {}
        values: dict[str, list[str]] = spec.get("values") or {}
        table_added = False
        for key in spec.get("signals") or []:
            typ = types.get(key)
            vals = values.get(key) or []
            if typ == "boolean" and key.startswith(("is_", "has_")):
                kpis.append(
                    {
                        "metric": metric,
                        "signal": key,
                        "label": label(key),
                        "format": "percent",
                        "icon": _bool_icon(key),
                        "highlight": "complian" in key,
                    }
                )
            elif typ == "number" and not key.endswith("_score"):
                fmt = "duration" if any(w in key for w in TIME_WORDS) else "number"
                kpis.append(
                    {
                        "metric": metric,
                        "signal": key,
                        "label": label(key),
                        "aggregation": "median",
                        "format": fmt,
                        "icon": _number_icon(key),
                    }
                )
            if typ == "string":
                if key == "suggested_action":
                    insights.append(
                        {"metric": metric, "signal": key, "type": "text_list", "title": f"Top {label(key)}s"}
                    )
                elif 2 <= len(vals) <= 20:
                    classification.append(
                        {"metric": metric, "signal": key, "type": "bar", "title": f"{label(metric)}: {label(key)}"}
                    )
                if 2 <= len(vals) <= 20:  # filters take every such string signal, suggested_action too (§7.5)
                    filters.append(
                        {"type": "metric", "metric": metric, "signal": key, "label": label(key), "options": vals}
                    )
                if vals:
                    col = f"{metric}__{key}"
                    color_maps[col] = {v: COLOR_PALETTE[i % len(COLOR_PALETTE)] for i, v in enumerate(sorted(vals))}
                    if not table_added:
                        table_columns.append({"key": col, "label": label(key), "sortable": True})
                        table_added = True
            elif typ == "array":
                if key in ("requests", "learnings"):
                    insights.append(
                        {"metric": metric, "signal": key, "type": "text_list", "title": f"Top {label(key)}"}
                    )
                elif key == "categories":
                    insights.append(
                        {"metric": metric, "signal": key, "type": "ranked_list", "title": f"{label(key)} Breakdown"}
                    )
    kpis.append({"aggregate": "avg_message_count", "label": "Avg Messages", "icon": "message-square"})
    kpis.append({"aggregate": "total_cases", "label": "Total Cases", "icon": "database"})
    if visible_kpis:
        allowed = set(visible_kpis)
        kpis = [k for k in kpis if k.get("signal", k.get("aggregate")) in allowed]
    table_columns += [
        {"key": "Message_Count", "label": "Messages", "sortable": True},
        {"key": "Timestamp", "label": "Timestamp", "sortable": True},
    ]
    sections: list[dict[str, Any]] = []
    if classification:
        first = {**classification[0], "type": "stacked_bar"}
        sections.append({"title": "Outcome Distribution", "layout": "full", "charts": [first]})
        rest = classification[1:]
        if len(rest) >= 2:
            sections.append({"title": "Root Cause Analysis", "layout": "grid_2", "charts": rest[:2]})
        elif len(rest) == 1:
            sections.append({"title": "Breakdown", "layout": "full", "charts": rest})
        if len(rest) > 2:
            sections.append({"title": "Additional Metrics", "layout": "grid_2", "charts": rest[2:4]})
    if insights:
        sections.append({"title": "Insights", "layout": "full" if len(insights) == 1 else "grid_2", "charts": insights})
    config: dict[str, Any] = {
        "kpi_strip": kpis,
        "chart_sections": sections,
        "filters": filters,
        "table_columns": table_columns,
        "color_maps": color_maps,
    }
    for key in OVERRIDE_KEYS:
        if overrides and key in overrides and isinstance(overrides[key], list):
            config[key] = overrides[key]
    yaml_colors = (overrides or {}).get("color_maps")
    if isinstance(yaml_colors, dict):
        for col, mapping in yaml_colors.items():
            if isinstance(mapping, dict):
                config["color_maps"][col] = {**config["color_maps"].get(col, {}), **mapping}
    return config
