"""Deterministic generator for the bundled example datasets (spec data-plane §11).

Every dataset is built from a ``random.Random`` seeded with ``"<seed>:<dataset>"``; there is no
wall-clock time and no ``uuid4``, so the same seed always yields byte-identical CSV files.
Run ``python -m app.services.example_data --out sample_data`` from ``backend/`` to regenerate
``backend/sample_data/``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import random
import string
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from app.services.example_data_corpus import (
    ALIGN_ITEMS,
    ANNOTATION_ITEMS,
    ANNOTATION_JUDGMENTS,
    DEFLECTING_ANSWERS,
    EVAL_RUNNER_ITEMS,
    HITL_CASES,
    LONG_ANALYSIS_ISSUES,
    LONG_ANALYSIS_OK,
    LONG_SCORE_EXPLANATIONS,
    MODEL_EXPLANATIONS,
    MODEL_ITEMS,
    MONITORING_FAILURES,
    MONITORING_HEALTHY_EXPLANATIONS,
    SUPPORT_QA,
)

DEFAULT_SEED: Final = 20240611

Cell = str | int | float | bool | None
Row = dict[str, Cell]


def _rng(seed: int, dataset: str) -> random.Random:
    """An independent, reproducible random stream per dataset."""
    return random.Random(f"{seed}:{dataset}")


def _json(value: Any) -> str:
    """JSON text for a CSV cell (UTF-8 kept as is)."""
    return json.dumps(value, ensure_ascii=False)


def _iso_z(ts: dt.datetime) -> str:
    """ISO-8601 UTC with a ``Z`` suffix, second precision."""
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _clamp(value: float, lo: float, hi: float) -> float:
    return max(lo, min(hi, value))


# ---------------------------------------------------------------------------------------------
# Tree-format model evaluations (example_model.csv, example_model_comparison.csv)
# ---------------------------------------------------------------------------------------------
MODEL_COLUMNS: Final = (
    "dataset_id",
    "evaluation_name",
    "query",
    "actual_output",
    "expected_output",
    "metric_name",
    "metric_score",
    "metric_type",
    "parent",
    "weight",
    "explanation",
    "evaluation_metadata",
    "data_metadata",
)
MODEL_ROOT_METRIC: Final = "answer_quality"
# component -> (weight, score offset relative to the evaluation's mean)
MODEL_COMPONENTS: Final[dict[str, tuple[float, float]]] = {
    "faithfulness": (0.4, 0.03),
    "answer_relevance": (0.3, 0.06),
    "completeness": (0.3, -0.05),
}
# evaluation_name -> (mean component score, evaluation_metadata)
MODEL_EVALUATIONS: Final[dict[str, tuple[float, dict[str, Any]]]] = {
    "baseline_v1": (0.57, {"model": "gpt-4o-mini", "prompt_version": "v1", "temperature": 0.7}),
    "prompt_tuned_v2": (0.69, {"model": "gpt-4o-mini", "prompt_version": "v2", "temperature": 0.2}),
    "rag_v3": (0.82, {"model": "gpt-4o", "prompt_version": "v3-rag", "temperature": 0.2}),
}
_DIFFICULTY_SHIFT: Final = {"easy": 0.06, "medium": 0.0, "hard": -0.08}


def _band(score: float) -> int:
    return 0 if score < 0.5 else 1 if score < 0.75 else 2


def model_comparison_rows(seed: int = DEFAULT_SEED) -> list[Row]:
    """Tree-format rows: the same 16 items for 3 evaluations with shifted score distributions."""
    rng = _rng(seed, "model")
    item_shift = [_DIFFICULTY_SHIFT[item["difficulty"]] + rng.uniform(-0.08, 0.08) for item in MODEL_ITEMS]
    rows: list[Row] = []
    for evaluation, (mean, eval_meta) in MODEL_EVALUATIONS.items():
        for index, item in enumerate(MODEL_ITEMS):
            components = {
                name: round(_clamp(mean + item_shift[index] + offset + rng.gauss(0.0, 0.07), 0.05, 1.0), 2)
                for name, (_, offset) in MODEL_COMPONENTS.items()
            }
            root = round(sum(MODEL_COMPONENTS[name][0] * score for name, score in components.items()), 3)
            base: Row = {
                "dataset_id": f"item_{index + 1:03d}",
                "evaluation_name": evaluation,
                "query": item["query"],
                "actual_output": item["strong"] if root >= 0.6 else item["weak"],
                "expected_output": item["expected"],
                "evaluation_metadata": _json(eval_meta),
                "data_metadata": _json({"category": item["category"], "difficulty": item["difficulty"]}),
            }
            rows.append(
                base
                | {
                    "metric_name": MODEL_ROOT_METRIC,
                    "metric_score": root,
                    "metric_type": "metric",
                    "parent": None,
                    "weight": 1.0,
                    "explanation": MODEL_EXPLANATIONS[MODEL_ROOT_METRIC][_band(root)],
                }
            )
            for name, score in components.items():
                rows.append(
                    base
                    | {
                        "metric_name": name,
                        "metric_score": score,
                        "metric_type": "component",
                        "parent": MODEL_ROOT_METRIC,
                        "weight": MODEL_COMPONENTS[name][0],
                        "explanation": MODEL_EXPLANATIONS[name][_band(score)],
                    }
                )
    return rows


def model_rows(seed: int = DEFAULT_SEED) -> list[Row]:
    """Tree-format rows for one evaluation (the baseline of the comparison set)."""
    first = next(iter(MODEL_EVALUATIONS))
    return [row for row in model_comparison_rows(seed) if row["evaluation_name"] == first]


# ---------------------------------------------------------------------------------------------
# Annotation and calibration samples
# ---------------------------------------------------------------------------------------------
ANNOTATION_COLUMNS: Final = (
    "dataset_id",
    "query",
    "actual_output",
    "expected_output",
    "evaluation_name",
    "judgment",
    "critique",
    "user_tags",
)


def annotation_rows(seed: int = DEFAULT_SEED) -> list[Row]:
    """§11.3: 10 markdown answers, 4 of them judged (accept ×2, reject, 4), tags on 3."""
    del seed  # fully hand-written content
    judged = {index: (judgment, critique, tags) for index, judgment, critique, tags in ANNOTATION_JUDGMENTS}
    rows: list[Row] = []
    for index, item in enumerate(ANNOTATION_ITEMS):
        judgment, critique, tags = judged.get(index, (None, None, None))
        rows.append(
            {
                "dataset_id": f"ann_{index + 1:03d}",
                "query": item["query"],
                "actual_output": item["answer"],
                "expected_output": item["rubric"],
                "evaluation_name": "Baseline Model",
                "judgment": judgment,
                "critique": critique,
                "user_tags": _json(tags) if tags is not None else None,
            }
        )
    return rows


ALIGN_COLUMNS: Final = ("dataset_id", "query", "actual_output", "expected_output", "evaluation_name")


def align_rows(seed: int = DEFAULT_SEED) -> list[Row]:
    """§11.4: 5 unlabeled outputs of mixed quality (the 4th rambles)."""
    del seed
    return [
        {
            "dataset_id": f"align_{index + 1:03d}",
            "query": item["query"],
            "actual_output": item["answer"],
            "expected_output": item["expected"],
            "evaluation_name": "align_sample",
        }
        for index, item in enumerate(ALIGN_ITEMS)
    ]


EVAL_RUNNER_COLUMNS: Final = ("dataset_id", "query", "actual_output", "expected_output", "retrieved_content")


def eval_runner_rows(seed: int = DEFAULT_SEED) -> list[Row]:
    """§11.5: 10 retrieval-QA rows with one passage each (properly quoted)."""
    del seed
    return [
        {
            "dataset_id": f"q{index + 1:03d}",
            "query": item["query"],
            "actual_output": item["answer"],
            "expected_output": item["expected"],
            "retrieved_content": item["passage"],
        }
        for index, item in enumerate(EVAL_RUNNER_ITEMS)
    ]


# ---------------------------------------------------------------------------------------------
# Wide monitoring sample (§11.1)
# ---------------------------------------------------------------------------------------------
MONITORING_COLUMNS: Final = (
    "dataset_id",
    "trace_id",
    "timestamp",
    "query",
    "actual_output",
    "evaluation_name",
    "source_name",
    "environment",
    "latency_ms",
    "relevance_score",
    "coherence_score",
    "accuracy_score",
    "explanation",
    "signals",
    "error",
)
MONITORING_DAY1: Final = dt.datetime(2025, 6, 2)
# (block start, source_name, environment); 10 rows each at a 5-minute cadence.
MONITORING_BLOCKS: Final = (
    (MONITORING_DAY1 + dt.timedelta(hours=10), "Atlas", "prod"),
    (MONITORING_DAY1 + dt.timedelta(hours=11), "Nova", "prod"),
    (MONITORING_DAY1 + dt.timedelta(hours=12), "Atlas", "staging"),
    (MONITORING_DAY1 + dt.timedelta(hours=13), "Nova", "prod"),
    (MONITORING_DAY1 + dt.timedelta(days=1, hours=9), "Atlas", "prod"),
)
MONITORING_LATENCY_MIN: Final = 145
MONITORING_LATENCY_MAX: Final = 567
_HEALTHY_LATENCY_CAP: Final = 377


def _unique_trace_ids(rng: random.Random, count: int) -> list[str]:
    alphabet = string.ascii_lowercase + string.digits
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < count:
        candidate = "trace-" + "".join(rng.choice(alphabet) for _ in range(8))
        if candidate not in seen:
            seen.add(candidate)
            out.append(candidate)
    return out


def _failure_signals(failure: dict[str, Any]) -> dict[str, Any]:
    statements = failure["statements"]
    overall: list[dict[str, Any]] = [
        {"name": "total_statements", "value": len(statements)},
        {"name": "relevant_statements", "value": sum(1 for s in statements if s[2] == "YES")},
    ]
    if failure["compliance_score"] is not None:
        overall.append({"name": "compliance_score", "value": failure["compliance_score"]})
    signals: dict[str, Any] = {"overall": overall}
    for number, (title, statement, verdict, reason) in enumerate(statements, start=1):
        signals[f"statement_{number} ({title})"] = [
            {"name": "verdict", "value": verdict},
            {"name": "statement", "value": statement},
            {"name": "reason", "value": reason},
        ]
    return signals


def monitoring_rows(seed: int = DEFAULT_SEED) -> list[Row]:
    """§11.1: 50 wide rows, 2 agents × 2 environments, 3 failing rows with low scores and high latency."""
    rng = _rng(seed, "monitoring")
    total = 10 * len(MONITORING_BLOCKS)
    failing_blocks = sorted(rng.sample(range(len(MONITORING_BLOCKS)), len(MONITORING_FAILURES)))
    failing = {block * 10 + rng.randrange(10): n for n, block in enumerate(failing_blocks)}
    healthy_qa = iter(rng.sample(SUPPORT_QA, total - len(failing)))
    trace_ids = _unique_trace_ids(rng, total)

    latencies = [
        rng.randint(378, MONITORING_LATENCY_MAX)
        if i in failing
        else round(
            _clamp(MONITORING_LATENCY_MIN + rng.gammavariate(2.0, 66.0), MONITORING_LATENCY_MIN, _HEALTHY_LATENCY_CAP)
        )
        for i in range(total)
    ]
    # Pin the documented extremes: the fastest healthy row and the slowest failing row.
    healthy_idx = [i for i in range(total) if i not in failing]
    latencies[min(healthy_idx, key=lambda i: latencies[i])] = MONITORING_LATENCY_MIN
    latencies[max(failing, key=lambda i: latencies[i])] = MONITORING_LATENCY_MAX

    rows: list[Row] = []
    for i in range(total):
        start, source_name, environment = MONITORING_BLOCKS[i // 10]
        latency = latencies[i]
        if i in failing:
            failure = MONITORING_FAILURES[failing[i]]
            query, answer = failure["query"], failure["answer"]
            relevance = round(rng.uniform(0.36, 0.48), 2)
            coherence = round(rng.uniform(0.34, 0.50), 2)
            accuracy = round(rng.uniform(0.32, 0.44), 2)
            explanation = f"The score is {relevance:.2f} because {failure['because']}."
            signals = _json(_failure_signals(failure))
        else:
            query, answer = next(healthy_qa)
            slowness = (latency - MONITORING_LATENCY_MIN) / (_HEALTHY_LATENCY_CAP - MONITORING_LATENCY_MIN)
            relevance = round(_clamp(0.96 - 0.07 * slowness + rng.gauss(0.0, 0.01), 0.86, 0.97), 2)
            coherence = round(_clamp(relevance + rng.uniform(-0.02, 0.02), 0.85, 0.97), 2)
            accuracy = round(max(0.82, min(relevance, coherence) - rng.uniform(0.02, 0.05)), 2)
            explanation = rng.choice(MONITORING_HEALTHY_EXPLANATIONS)
            signals = "{}"
        rows.append(
            {
                "dataset_id": f"mon-{i + 1:03d}",
                "trace_id": trace_ids[i],
                "timestamp": _iso_z(start + dt.timedelta(minutes=5 * (i % 10))),
                "query": query,
                "actual_output": answer,
                "evaluation_name": "customer_support",
                "source_name": source_name,
                "environment": environment,
                "latency_ms": latency,
                "relevance_score": relevance,
                "coherence_score": coherence,
                "accuracy_score": accuracy,
                "explanation": explanation,
                "signals": signals,
                "error": None,
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------
# Long monitoring sample: one row per (record, metric)
# ---------------------------------------------------------------------------------------------
MONITORING_LONG_COLUMNS: Final = (
    "dataset_id",
    "timestamp",
    "source_name",
    "source_component",
    "source_type",
    "environment",
    "model_name",
    "evaluation_name",
    "query",
    "actual_output",
    "latency",
    "metric_name",
    "metric_category",
    "metric_score",
    "explanation",
    "signals",
)
LONG_RECORDS: Final = 60
LONG_START: Final = dt.datetime(2025, 5, 5)  # a Monday; records span three ISO weeks
LONG_SPAN: Final = dt.timedelta(days=21)
LONG_SCORE_METRICS: Final = ("relevance", "faithfulness", "helpfulness")
LONG_CLASSIFICATION_METRIC: Final = "resolution_status"
LONG_ANALYSIS_METRIC: Final = "conversation_analysis"
LONG_FAILING_RECORDS: Final = 8
LONG_AGENTS: Final = {"Atlas": "gpt-4o-mini", "Nova": "claude-3-5-haiku-20241022"}


def monitoring_long_rows(seed: int = DEFAULT_SEED) -> list[Row]:
    """Long-format monitoring: 60 records × 5 metrics (3 SCORE, 1 CLASSIFICATION, 1 ANALYSIS) over 3 weeks."""
    rng = _rng(seed, "monitoring_long")
    qa = rng.sample(SUPPORT_QA, LONG_RECORDS)
    failing = set(rng.sample(range(LONG_RECORDS), LONG_FAILING_RECORDS))
    step = LONG_SPAN / LONG_RECORDS
    rows: list[Row] = []
    for i in range(LONG_RECORDS):
        offset = dt.timedelta(seconds=rng.randrange(int(step.total_seconds() * 0.8)))
        timestamp = _iso_z(LONG_START + step * i + offset)
        source_name = rng.choice(tuple(LONG_AGENTS))
        bad = i in failing
        query, answer = qa[i]
        if bad:
            answer = rng.choice(DEFLECTING_ANSWERS)
            latency = rng.randint(900, 2400)
        else:
            latency = round(_clamp(220 + rng.gammavariate(2.0, 120.0), 220, 1800))
        base: Row = {
            "dataset_id": f"rec-{i + 1:03d}",
            "timestamp": timestamp,
            "source_name": source_name,
            "source_component": rng.choice(("chat_widget", "email_triage")),
            "source_type": "agent",
            "environment": "staging" if rng.random() < 0.2 else "prod",
            "model_name": LONG_AGENTS[source_name],
            "evaluation_name": "support_online_eval",
            "query": query,
            "actual_output": answer,
            "latency": latency,
        }
        for metric in LONG_SCORE_METRICS:
            score = rng.uniform(0.15, 0.55) if bad else _clamp(rng.gauss(0.88, 0.06), 0.6, 1.0)
            rows.append(
                base
                | {
                    "metric_name": metric,
                    "metric_category": "SCORE",
                    "metric_score": round(score, 2),
                    "explanation": LONG_SCORE_EXPLANATIONS[metric][0 if score < 0.6 else 1],
                    "signals": None,
                }
            )
        if bad:
            label = rng.choice(("unresolved", "escalated"))
        else:
            label = "resolved" if rng.random() < 0.85 else "partially_resolved"
        rows.append(
            base
            | {
                "metric_name": LONG_CLASSIFICATION_METRIC,
                "metric_category": "CLASSIFICATION",
                "metric_score": None,
                "explanation": label,
                "signals": None,
            }
        )
        if bad:
            root_cause, action, text = rng.choice(LONG_ANALYSIS_ISSUES)
            analysis: dict[str, Any] = {
                "issues": [root_cause],
                "root_cause": root_cause,
                "suggested_action": action,
                "severity": "high" if label == "escalated" else "medium",
            }
        else:
            text = rng.choice(LONG_ANALYSIS_OK)
            analysis = {"issues": [], "root_cause": None, "suggested_action": None, "severity": "none"}
        rows.append(
            base
            | {
                "metric_name": LONG_ANALYSIS_METRIC,
                "metric_category": "ANALYSIS",
                "metric_score": None,
                "explanation": text,
                "signals": _json(analysis),
            }
        )
    return rows


# ---------------------------------------------------------------------------------------------
# Human-signals V2 sample (§11.2)
# ---------------------------------------------------------------------------------------------
HITL_COLUMNS: Final = (
    "metric_name",
    "parent",
    "metric_score",
    "metric_type",
    "weight",
    "passed",
    "cost_estimate",
    "explanation",
    "source",
    "dataset_id",
    "judgment",
    "critique",
    "conversation_extraction_strategy",
    "acceptance_criteria",
    "additional_input",
    "dataset_metadata",
    "user_tags",
    "actual_output",
    "retrieved_content",
    "latency",
    "trace",
    "trace_id",
    "observation_id",
    "additional_output",
    "actual_ranking",
    "expected_ranking",
    "tools_called",
    "expected_tools",
    "document_text",
    "expected_reference",
    "actual_reference",
    "conversation",
    "query",
    "expected_output",
    "conversation_stats",
    "agent_trajectory",
    "has_errors",
    "metric_id",
    "threshold",
    "signals",
    "metric_metadata",
    "version",
    "timestamp",
    "model_name",
    "llm_provider",
    "metric_category",
    "run_id",
    "evaluation_name",
    "evaluation_metadata",
)
HITL_DATE: Final = dt.date(2025, 6, 12)
HITL_TIMESTAMP: Final = "2025-06-12 18:05:00"
HITL_MODEL: Final = "claude-sonnet-4-20250514"
HITL_SCORE_METRICS: Final = frozenset({"learnings_count", "feature_requests_count"})
# metric -> (signal key holding the headline label, metric_metadata group, evaluator name)
HITL_METRICS: Final[dict[str, tuple[str, str, str]]] = {
    "escalation_type": ("escalation_type", "objective", "escalation_detector"),
    "intervention_type": ("intervention_type", "objective", "intervention_analyzer"),
    "resolution_status": ("final_status", "objective", "resolution_tracker"),
    "failed_step": ("failed_step", "objective", "failure_localizer"),
    "attribution_confidence": ("confidence", "objective", "outcome_attribution"),
    "learnings_count": ("count", "feedback", "learnings_extractor"),
    "feature_requests_count": ("count", "feedback", "feature_request_extractor"),
    "has_actionable_feedback": ("has_actionable_feedback", "feedback", "feedback_classifier"),
    "priority_level": ("priority", "feedback", "priority_classifier"),
    "sentiment_category": ("sentiment", "feedback", "sentiment_classifier"),
    "frustration_cause": ("cause", "feedback", "frustration_analyzer"),
    "acceptance_status": ("status", "feedback", "acceptance_classifier"),
    "override_type": ("override", "feedback", "override_detector"),
}


def _headline(value: Any) -> str:
    if isinstance(value, bool):
        return "actionable" if value else "not_actionable"
    return str(value)


def hitl_rows(seed: int = DEFAULT_SEED) -> list[Row]:
    """§11.2: 3 support cases × 13 signal metrics in the eval-runner export schema (49 columns)."""
    rng = _rng(seed, "hitl")
    run_id = f"evaluation_{uuid.UUID(int=rng.getrandbits(128), version=4)}"
    tickets = [f"SUP-{n}" for n in rng.sample(range(1000, 10000), len(HITL_CASES))]
    base_ts = int(dt.datetime(2025, 6, 12, 9, 0, tzinfo=dt.UTC).timestamp())
    empty = dict.fromkeys(HITL_COLUMNS)
    rows: list[Row] = []
    for number, (case, ticket) in enumerate(zip(HITL_CASES, tickets, strict=True), start=1):
        dataset_id = f"cs-{HITL_DATE:%Y%m%d}-{number:03d}"
        messages = [
            {
                "role": role,
                "content": content.format(ticket=ticket) if index == 0 else content,
                "metadata": None,
                "tool_calls": None,
                "llm_events": None,
                "topic": None,
            }
            for index, (role, content) in enumerate(case["messages"])
        ]
        ai_count = sum(1 for m in messages if m["role"] == "assistant")
        user_count = len(messages) - ai_count
        if user_count != case["user_message_count"]:
            raise ValueError(f"HITL case {number}: user message count mismatch")
        thread_id = f"{base_ts + rng.randrange(28_800)}.{rng.randrange(1_000_000):06d}"
        dataset_metadata = {
            "ticket_url": f"https://support.example.com/tickets/{ticket}",
            "channel_id": case["channel_id"],
            "thread_id": thread_id,
        }
        additional_input = dataset_metadata | {"reply_count": len(messages), "sender": "Atlas"}
        stats = {
            "turn_count": case["turn_count"],
            "user_message_count": user_count,
            "ai_message_count": ai_count,
            "tool_call_count": 0,
        }
        case_values: Row = {
            "cost_estimate": round(rng.uniform(0.002, 0.004), 5),
            "source": "atlas",
            "dataset_id": dataset_id,
            "conversation_extraction_strategy": "last",
            "additional_input": _json(additional_input),
            "dataset_metadata": _json(dataset_metadata),
            "user_tags": "[]",
            "actual_output": messages[-1]["content"],
            "conversation": _json({"messages": messages}),
            "query": next(m["content"] for m in reversed(messages) if m["role"] == "user"),
            "conversation_stats": _json(stats),
            "has_errors": False,
            "threshold": 0.5,
            "timestamp": HITL_TIMESTAMP,
            "model_name": HITL_MODEL,
            "llm_provider": "anthropic",
            "run_id": run_id,
            "evaluation_name": "support_quality_v1",
            "evaluation_metadata": "{}",
            "metric_type": "metric",
        }
        for metric, (label_key, group, evaluator) in HITL_METRICS.items():
            signals: dict[str, Any] = case["signals"][metric]
            is_score = metric in HITL_SCORE_METRICS
            label = _headline(signals[label_key])
            rows.append(
                empty
                | case_values
                | {
                    "metric_name": metric,
                    "metric_score": signals["count"] if is_score else None,
                    "explanation": label,
                    "metric_id": f"metric-{dataset_id}-{metric}",
                    "signals": _json(signals),
                    "metric_metadata": _json({"group": group, "source_metric": evaluator} | signals),
                    "metric_category": "score" if is_score else "classification",
                }
            )
    return rows


# ---------------------------------------------------------------------------------------------
# Registry and writer
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExampleDataset:
    """One bundled CSV: its file name, column order, row builder and quoting style."""

    filename: str
    columns: tuple[str, ...]
    build: Callable[[int], list[Row]]
    quote_all: bool = False


EXAMPLE_DATASETS: Final[dict[str, ExampleDataset]] = {
    "example_model": ExampleDataset("example_model.csv", MODEL_COLUMNS, model_rows),
    "example_model_comparison": ExampleDataset("example_model_comparison.csv", MODEL_COLUMNS, model_comparison_rows),
    "annotation_sample": ExampleDataset("annotation_sample.csv", ANNOTATION_COLUMNS, annotation_rows),
    "align_sample": ExampleDataset("align_sample.csv", ALIGN_COLUMNS, align_rows, quote_all=True),
    "monitoring_sample": ExampleDataset("monitoring_sample.csv", MONITORING_COLUMNS, monitoring_rows),
    "monitoring_long_sample": ExampleDataset(
        "monitoring_long_sample.csv", MONITORING_LONG_COLUMNS, monitoring_long_rows
    ),
    "hitl_sample": ExampleDataset("hitl_sample.csv", HITL_COLUMNS, hitl_rows),
    "eval_runner_sample": ExampleDataset("eval_runner_sample.csv", EVAL_RUNNER_COLUMNS, eval_runner_rows),
}


def format_cell(value: Cell) -> str:
    """CSV text of one cell: None → empty, bools as True/False, numbers via repr."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def write_csv(path: Path, columns: Sequence[str], rows: Sequence[Row], *, quote_all: bool = False) -> Path:
    """Write rows as RFC-4180 UTF-8 CSV (``\\n`` line endings); every row must have exactly ``columns``."""
    expected = set(columns)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n", quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL)
        writer.writerow(columns)
        for number, row in enumerate(rows, start=1):
            if set(row) != expected:
                raise ValueError(f"{path.name} row {number}: columns {sorted(set(row) ^ expected)} mismatch")
            writer.writerow([format_cell(row[column]) for column in columns])
    return path


def generate_dataset(name: str, out_dir: Path, seed: int = DEFAULT_SEED) -> Path:
    """Write one named example dataset into ``out_dir`` and return its path."""
    spec = EXAMPLE_DATASETS[name]
    return write_csv(out_dir / spec.filename, spec.columns, spec.build(seed), quote_all=spec.quote_all)


def generate_all(out_dir: Path, seed: int = DEFAULT_SEED) -> dict[str, Path]:
    """Write every example dataset into ``out_dir`` (created if needed); returns name → path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return {name: generate_dataset(name, out_dir, seed) for name in EXAMPLE_DATASETS}


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: ``python -m app.services.example_data --out sample_data [--seed N]``."""
    parser = argparse.ArgumentParser(description="Generate the AXIS example datasets.")
    parser.add_argument("--out", type=Path, default=Path("sample_data"), help="output directory")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed")
    args = parser.parse_args(argv)
    for name, path in generate_all(args.out, args.seed).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
