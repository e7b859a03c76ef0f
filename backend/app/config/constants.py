"""Shared constants mirrored in the frontend (spec data-plane §2.6). Keep strings identical."""

from __future__ import annotations

from typing import ClassVar


class Columns:
    """Canonical column names."""

    DATASET_ID = "dataset_id"
    METRIC_ID = "metric_id"
    RUN_ID = "run_id"
    EXPERIMENT_NAME = "evaluation_name"
    QUERY = "query"
    ACTUAL_OUTPUT = "actual_output"
    EXPECTED_OUTPUT = "expected_output"
    CONVERSATION = "conversation"
    RETRIEVED_CONTENT = "retrieved_content"
    ADDITIONAL_INPUT = "additional_input"
    ACCEPTANCE_CRITERIA = "acceptance_criteria"
    DOCUMENT_TEXT = "document_text"
    ACTUAL_REFERENCE = "actual_reference"
    EXPECTED_REFERENCE = "expected_reference"
    METRIC_NAME = "metric_name"
    METRIC_SCORE = "metric_score"
    METRIC_TYPE = "metric_type"
    METRIC_CATEGORY = "metric_category"
    WEIGHT = "weight"
    PARENT = "parent"
    JUDGMENT = "judgment"
    PASSED = "passed"
    THRESHOLD = "threshold"
    EXPLANATION = "explanation"
    SIGNALS = "signals"
    CRITIQUE = "critique"
    ADDITIONAL_OUTPUT = "additional_output"
    TRACE = "trace"
    TRACE_ID = "trace_id"
    OBSERVATION_ID = "observation_id"
    LATENCY = "Latency"
    COST_ESTIMATE = "cost_estimate"
    SOURCE = "source"
    METADATA = "data_metadata"
    EXPERIMENT_METADATA = "evaluation_metadata"
    DATASET_METADATA = "dataset_metadata"
    METRIC_METADATA = "metric_metadata"
    USER_TAGS = "user_tags"
    MODEL_NAME = "model_name"
    LLM_PROVIDER = "llm_provider"
    HAS_ERRORS = "has_errors"
    VERSION = "version"
    TIMESTAMP = "timestamp"

    ITEMS_PER_PAGE = 3
    CONTENT_TRUNC_LENGTH = 200
    SPANS_PER_PAGE = 10
    DROP_LATENCY = True
    ADD_DEFAULT_PRODUCT = True

    INDEX_COLUMNS: ClassVar[list[str]] = [
        "dataset_id",
        "query",
        "actual_output",
        "evaluation_name",
        "evaluation_metadata",
    ]
    AGG_METRICS: ClassVar[list[str]] = ["mean", "std", "count"]


class Thresholds:
    """Score thresholds used by pass-rate and colouring rules."""

    PASSING_RATE = 0.5
    GREEN_THRESHOLD = 0.7
    RED_THRESHOLD = 0.3


class Colors:
    """Colour palette and chart colours."""

    PALETTE: ClassVar[dict[str, str]] = {
        "primary": "#8B9F4F",
        "primary_light": "#A4B86C",
        "primary_dark": "#6B7A3A",
        "primary_soft": "#B8C78A",
        "primary_pale": "#D4E0B8",
        "accent_gold": "#D4AF37",
        "accent_silver": "#B8C5D3",
        "text_primary": "#2C3E50",
        "text_secondary": "#34495E",
        "text_muted": "#7F8C8D",
        "success": "#27AE60",
        "warning": "#F39C12",
        "error": "#E74C3C",
    }
    CHART_COLORS: ClassVar[list[str]] = [
        "#8B9F4F",
        "#A4B86C",
        "#6B7A3A",
        "#B8C78A",
        "#D4AF37",
        "#B8C5D3",
        "#D4E0B8",
        "#1f77b4",
        "#ff7f0e",
        "#2ca02c",
    ]

    @classmethod
    def get(cls, name: str) -> str:
        """Return a palette colour by name; unknown names raise ValueError."""
        try:
            return cls.PALETTE[name]
        except KeyError:
            raise ValueError(f"Unknown palette colour: {name}") from None
