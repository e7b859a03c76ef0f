"""Display-config generation (spec §7.5) and signals_metrics.yaml overrides."""

from __future__ import annotations

from pathlib import Path

from app.services.signals_display_config import COLOR_PALETTE, build_display_config, load_signals_metrics_yaml

SCHEMA = {
    "metrics": {
        "esc": {
            "category": "classification",
            "signals": ["is_escalated", "type", "wait_time", "overall_score", "requests", "suggested_action"],
            "signal_types": {
                "is_escalated": "boolean",
                "type": "string",
                "wait_time": "number",
                "overall_score": "number",
                "requests": "array",
                "suggested_action": "string",
            },
            "values": {"type": ["b", "a", "c"], "suggested_action": ["x"]},
        },
        "comp": {
            "category": "classification",
            "signals": ["is_compliant", "level", "cost", "categories"],
            "signal_types": {"is_compliant": "boolean", "level": "string", "cost": "number", "categories": "array"},
            "values": {"level": ["hi", "lo"]},
        },
    },
    "source_fields": ["source_name", "environment"],
    "has_timestamp": True,
}


def test_generated_config() -> None:
    cfg = build_display_config(SCHEMA)
    kpis = cfg["kpi_strip"]
    assert kpis[0] == {
        "metric": "esc",
        "signal": "is_escalated",
        "label": "Is Escalated",
        "format": "percent",
        "icon": "alert-triangle",
        "highlight": False,
    }
    assert kpis[1] == {
        "metric": "esc",
        "signal": "wait_time",
        "label": "Wait Time",
        "aggregation": "median",
        "format": "duration",
        "icon": "clock",
    }
    assert {
        "metric": "comp",
        "signal": "is_compliant",
        "label": "Is Compliant",
        "format": "percent",
        "icon": "shield-check",
        "highlight": True,
    } in kpis
    assert any(k.get("signal") == "cost" and k["icon"] == "dollar-sign" and k["format"] == "number" for k in kpis)
    assert not any(k.get("signal") == "overall_score" for k in kpis)  # *_score numbers are not KPIs
    assert [k.get("aggregate") for k in kpis[-2:]] == ["avg_message_count", "total_cases"]
    sections = cfg["chart_sections"]
    assert sections[0]["title"] == "Outcome Distribution" and sections[0]["charts"][0]["type"] == "stacked_bar"
    assert sections[1]["title"] == "Breakdown" and sections[1]["charts"][0]["signal"] == "level"
    insights = sections[2]
    assert insights["title"] == "Insights" and insights["layout"] == "grid_2"
    assert [(c["signal"], c["type"]) for c in insights["charts"]] == [
        ("requests", "text_list"),
        ("suggested_action", "text_list"),
        ("categories", "ranked_list"),
    ]
    filters = cfg["filters"]
    assert filters[:2] == [
        {"type": "source", "field": "source_name", "label": "Source"},
        {"type": "source", "field": "environment", "label": "Environment"},
    ]
    assert {"type": "metric", "metric": "esc", "signal": "type", "label": "Type", "options": ["b", "a", "c"]} in filters
    assert [c["key"] for c in cfg["table_columns"]] == [
        "Case_ID",
        "source_name",
        "Business",
        "esc__type",
        "comp__level",
        "Message_Count",
        "Timestamp",
    ]
    assert cfg["color_maps"]["esc__type"] == {"a": COLOR_PALETTE[0], "b": COLOR_PALETTE[1], "c": COLOR_PALETTE[2]}


def test_visible_kpis_and_yaml_overrides(tmp_path: Path) -> None:
    cfg = build_display_config(SCHEMA, visible_kpis=["is_compliant", "total_cases"])
    assert [k.get("signal", k.get("aggregate")) for k in cfg["kpi_strip"]] == ["is_compliant", "total_cases"]
    path = tmp_path / "signals_metrics.yaml"
    path.write_text(
        "signals_metrics:\n  chart_sections: []\n  source_filters: [x]\n  color_maps:\n    esc__type: {a: '#000000'}\n"
    )
    overrides = load_signals_metrics_yaml(path)
    cfg = build_display_config(SCHEMA, overrides=overrides)
    assert cfg["chart_sections"] == []  # replaced wholesale
    assert cfg["color_maps"]["esc__type"] == {"a": "#000000", "b": COLOR_PALETTE[1], "c": COLOR_PALETTE[2]}
    assert "source_filters" not in cfg
    path.write_text(": not yaml : [")
    assert load_signals_metrics_yaml(path) == {}
    assert load_signals_metrics_yaml(tmp_path / "missing.yaml") == {}


def test_suggested_action_with_a_few_values_is_a_filter_but_not_a_chart() -> None:
    """§7.5: chart_sections send suggested_action to Insights only, but filters take every string signal
    with 2–20 values."""
    schema = {
        "metrics": {
            "m": {
                "category": "classification",
                "signals": ["suggested_action"],
                "signal_types": {"suggested_action": "string"},
                "values": {"suggested_action": ["escalate", "refund", "retry"]},
            }
        },
        "source_fields": [],
        "has_timestamp": False,
    }
    cfg = build_display_config(schema)
    assert cfg["filters"] == [
        {
            "type": "metric",
            "metric": "m",
            "signal": "suggested_action",
            "label": "Suggested Action",
            "options": ["escalate", "refund", "retry"],
        }
    ]
    assert cfg["chart_sections"] == [
        {
            "title": "Insights",
            "layout": "full",
            "charts": [
                {"metric": "m", "signal": "suggested_action", "type": "text_list", "title": "Top Suggested Actions"}
            ],
        }
    ]
