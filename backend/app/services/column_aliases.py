"""Column alias tables (spec §4.4 eval, §8.2 monitoring) and their lookup key, in one place.

Uploads, database imports and syncs rename source columns through these tables; each maps a
normalised name (:func:`normalise_column_key`) to its canonical column.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def normalise_column_key(name: str) -> str:
    """Lookup key of a column name: lowercase, trimmed, spaces and hyphens → ``_``."""
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _alias_table(groups: Mapping[str, Iterable[str]], identities: Iterable[str] = ()) -> dict[str, str]:
    table = {name: name for name in identities}
    for canonical, aliases in groups.items():
        table.update(dict.fromkeys(aliases, canonical))
    return table


def with_canonical_names(aliases: Mapping[str, str]) -> dict[str, str]:
    """``aliases`` plus each canonical name mapped to itself (``Query`` → ``query`` in a sync)."""
    return {**{c: c for c in aliases.values()}, **aliases}


# §8.2: canonical name ← aliases; the identity names are kept as they are (never aliased away).
MONITORING_ALIASES: dict[str, str] = with_canonical_names(
    _alias_table(
        {
            "dataset_id": ("id", "record_id"),
            "timestamp": ("time", "created_at", "dataset_created_at"),
            "model_name": ("model", "agent_name", "agent"),
            "latency": ("latency_ms", "response_time"),
            "has_errors": ("error",),
            "query": ("input", "prompt", "user_input"),
            "actual_output": ("output", "response", "model_output", "completion"),
            "evaluation_name": ("evaluationname", "eval_name", "experiment", "experiment_name"),
            "environment": ("env", "stage"),
        },
        (
            "metric_id",
            "run_id",
            "llm_provider",
            "expected_output",
            "metric_name",
            "metric_score",
            "metric_type",
            "parent",
            "weight",
            "passed",
            "threshold",
            "signals",
            "explanation",
            "critique",
            "metric_category",
            "source_type",
            "source_name",
            "source_component",
            "trace_id",
            "observation_id",
            "eval_mode",
            "cost_estimate",
            "version",
        ),
    )
)

# §4.4 (database imports and the eval sync; not CSV uploads): aliases only.
EVAL_ALIASES: dict[str, str] = _alias_table(
    {
        "dataset_id": ("id", "record_id", "eval_id"),
        "query": ("input", "prompt", "question"),
        "actual_output": ("output", "response", "completion", "answer"),
        "expected_output": ("expected", "ground_truth", "reference"),
        "evaluation_name": ("experiment", "run_name", "experiment_name"),
        "metric_name": ("metric",),
        "metric_score": ("score", "metric_value", "value"),
    }
)
