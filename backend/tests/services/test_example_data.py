"""Example-data generator: byte-for-byte determinism and the §11 rules of every bundled CSV."""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest

from app.services import example_data
from app.services.example_data import generate_all, main, write_csv

SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data"

# file name -> (rows, columns) from the task brief and spec §11.
EXPECTED_SHAPES = {
    "example_model.csv": (None, 13),
    "example_model_comparison.csv": (None, 13),
    "annotation_sample.csv": (10, 8),
    "align_sample.csv": (5, 5),
    "monitoring_sample.csv": (50, 15),
    "monitoring_long_sample.csv": (300, 16),
    "hitl_sample.csv": (39, 49),
    "eval_runner_sample.csv": (10, 5),
}

HITL_HEADER = [
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
]
HITL_ALWAYS_EMPTY = [
    "parent",
    "weight",
    "passed",
    "judgment",
    "critique",
    "acceptance_criteria",
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
    "expected_output",
    "agent_trajectory",
    "version",
]


def read_sample(name: str) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a checked-in sample file, parsed with the csv module."""
    with (SAMPLE_DIR / name).open(encoding="utf-8", newline="") as handle:
        records = list(csv.reader(handle, strict=True))
    header, body = records[0], records[1:]
    assert all(len(record) == len(header) for record in body), f"{name}: ragged rows"
    return header, [dict(zip(header, record, strict=True)) for record in body]


@pytest.fixture(scope="module")
def duck(tmp_path_factory: pytest.TempPathFactory) -> Any:
    con = duckdb.connect(str(tmp_path_factory.mktemp("duck") / "samples.duckdb"))
    yield con
    con.close()


def strict_read(con: Any, name: str, select: str = "*") -> tuple[list[str], list[tuple[Any, ...]]]:
    cur = con.execute(
        f"SELECT {select} FROM read_csv(?, header = true, delim = ',', quote = '\"', escape = '\"', "
        "strict_mode = true)",
        [str(SAMPLE_DIR / name)],
    )
    rows = cur.fetchall()
    return [d[0] for d in cur.description], rows


# ---------------------------------------------------------------------------------------------
# Determinism and the writer
# ---------------------------------------------------------------------------------------------
def test_regenerated_files_equal_checked_in_bytes(tmp_path: Path) -> None:
    written = generate_all(tmp_path / "out")
    assert {path.name for path in written.values()} == set(EXPECTED_SHAPES)
    assert {p.name for p in SAMPLE_DIR.glob("*.csv")} >= set(EXPECTED_SHAPES)
    for path in written.values():
        assert path.read_bytes() == (SAMPLE_DIR / path.name).read_bytes(), path.name


def test_seed_changes_random_content_but_not_shape(tmp_path: Path) -> None:
    a = generate_all(tmp_path / "a", seed=1)
    b = generate_all(tmp_path / "b", seed=1)
    c = generate_all(tmp_path / "c", seed=2)
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes()
    assert a["monitoring_sample"].read_bytes() != c["monitoring_sample"].read_bytes()
    assert a["hitl_sample"].read_bytes() != c["hitl_sample"].read_bytes()
    for name in a:
        rows_a = list(csv.reader(a[name].open(encoding="utf-8", newline="")))
        rows_c = list(csv.reader(c[name].open(encoding="utf-8", newline="")))
        assert (len(rows_a), rows_a[0]) == (len(rows_c), rows_c[0])


def test_cli_writes_every_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path / "cli")]) == 0
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == sorted(EXPECTED_SHAPES)
    assert "hitl_sample" in capsys.readouterr().out


def test_write_csv_quotes_and_rejects_wrong_columns(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "x.csv",
        ["a", "b", "c", "d"],
        [{"a": 'say "hi", then\nleave', "b": None, "c": False, "d": 0.5}],
    )
    assert path.read_bytes() == b'a,b,c,d\n"say ""hi"", then\nleave",,False,0.5\n'
    with pytest.raises(ValueError, match="mismatch"):
        write_csv(tmp_path / "y.csv", ["a"], [{"a": 1, "extra": 2}])


# ---------------------------------------------------------------------------------------------
# Every file: strict parsing with the csv module and DuckDB
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(EXPECTED_SHAPES))
def test_file_parses_strictly_with_csv_and_duckdb(name: str, duck: Any) -> None:
    raw = (SAMPLE_DIR / name).read_bytes()
    raw.decode("utf-8")  # valid UTF-8
    assert b"\r" not in raw and not raw.startswith(b"\xef\xbb\xbf")
    header, rows = read_sample(name)
    expected_rows, expected_cols = EXPECTED_SHAPES[name]
    assert len(header) == expected_cols == len(set(header))
    if expected_rows is not None:
        assert len(rows) == expected_rows
    duck_cols, duck_rows = strict_read(duck, name)
    assert duck_cols == header
    assert len(duck_rows) == len(rows)


# ---------------------------------------------------------------------------------------------
# §11.1 wide monitoring
# ---------------------------------------------------------------------------------------------
def test_monitoring_wide_rules(duck: Any) -> None:
    header, rows = read_sample("monitoring_sample.csv")
    assert header == [
        "dataset_id", "trace_id", "timestamp", "query", "actual_output", "evaluation_name", "source_name",
        "environment", "latency_ms", "relevance_score", "coherence_score", "accuracy_score", "explanation",
        "signals", "error",
    ]  # fmt: skip
    assert [r["dataset_id"] for r in rows] == [f"mon-{i:03d}" for i in range(1, 51)]
    assert len({r["trace_id"] for r in rows}) == 50
    assert all(re.fullmatch(r"trace-[a-z0-9]{8}", r["trace_id"]) for r in rows)
    assert len({r["query"] for r in rows}) == 50
    assert {r["evaluation_name"] for r in rows} == {"customer_support"}
    assert all(r["error"] == "" for r in rows)
    assert Counter(r["environment"] for r in rows) == {"prod": 40, "staging": 10}
    blocks = [(r["source_name"], r["environment"]) for r in rows[::10]]
    assert blocks == [("Atlas", "prod"), ("Nova", "prod"), ("Atlas", "staging"), ("Nova", "prod"), ("Atlas", "prod")]
    assert all(len({(r["source_name"], r["environment"]) for r in rows[b : b + 10]}) == 1 for b in range(0, 50, 10))

    times = [r["timestamp"] for r in rows]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:00Z", t) for t in times)
    assert [t[11:16] for t in times[:10]] == [f"10:{m:02d}" for m in range(0, 50, 5)]
    assert [t[11:16] for t in times[40:]] == [f"09:{m:02d}" for m in range(0, 50, 5)]
    assert times == sorted(times)
    _, span = strict_read(duck, "monitoring_sample.csv", "date_diff('minute', min(timestamp), max(timestamp))")
    assert 23 * 60 <= span[0][0] <= 24 * 60

    latency = [int(r["latency_ms"]) for r in rows]
    assert min(latency) >= 145 and max(latency) <= 567
    assert 260 <= statistics.mean(latency) <= 290
    scores = np.array([[float(r[c]) for c in ("relevance_score", "coherence_score", "accuracy_score")] for r in rows])
    assert all(re.fullmatch(r"0\.\d{1,2}", r["relevance_score"]) for r in rows)
    failing = [i for i, r in enumerate(rows) if r["signals"] != "{}"]
    assert len(failing) == 3
    assert set(failing) == {i for i in range(50) if (scores[i] < 0.6).any()}
    for i in failing:
        assert ((scores[i] >= 0.32) & (scores[i] <= 0.52)).all()
        assert 378 <= latency[i] <= 567
        assert rows[i]["explanation"].startswith(f"The score is {rows[i]['relevance_score']:0<4} because ")
        signals = json.loads(rows[i]["signals"])
        overall = {item["name"]: item["value"] for item in signals["overall"]}
        assert 4 <= overall["total_statements"] <= 6 and overall["relevant_statements"] == 2
        statements = {k: v for k, v in signals.items() if k != "overall"}
        assert all(re.fullmatch(r"statement_\d+ \(.+\)", k) for k in statements)
        assert len(statements) == overall["total_statements"]
        verdicts = [next(x["value"] for x in v if x["name"] == "verdict") for v in statements.values()]
        assert verdicts.count("YES") == 2 and set(verdicts) == {"YES", "NO"}
        assert all({x["name"] for x in v} == {"verdict", "statement", "reason"} for v in statements.values())
    healthy = np.delete(scores, failing, axis=0)
    assert healthy.min() >= 0.82 and healthy.max() <= 0.97
    assert (healthy[:, 2] < healthy[:, 0]).all() and (healthy[:, 2] < healthy[:, 1]).all()
    assert abs(healthy[:, 0] - healthy[:, 1]).max() <= 0.05
    # Slow rows score lower.
    assert np.corrcoef(latency, scores[:, 0])[0, 1] < -0.5


# ---------------------------------------------------------------------------------------------
# Long monitoring
# ---------------------------------------------------------------------------------------------
def test_monitoring_long_rules(duck: Any) -> None:
    header, rows = read_sample("monitoring_long_sample.csv")
    for column in ("dataset_id", "timestamp", "source_name", "source_component", "source_type", "environment",
                   "model_name", "evaluation_name", "query", "actual_output", "latency", "metric_name",
                   "metric_category", "metric_score", "explanation", "signals"):  # fmt: skip
        assert column in header
    by_record: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_record[row["dataset_id"]].append(row)
    assert len(by_record) == 60
    assert all(len(group) == 5 for group in by_record.values())
    for group in by_record.values():
        # record-level fields (latency included) repeat on every metric row
        for column in ("timestamp", "latency", "source_name", "environment", "query", "actual_output"):
            assert len({r[column] for r in group}) == 1
        assert Counter(r["metric_category"] for r in group) == {"SCORE": 3, "CLASSIFICATION": 1, "ANALYSIS": 1}
    assert {r["source_name"] for r in rows} == {"Atlas", "Nova"}
    assert {r["environment"] for r in rows} == {"prod", "staging"}

    labels = set()
    for row in rows:
        category = row["metric_category"]
        if category == "SCORE":
            assert 0.0 <= float(row["metric_score"]) <= 1.0 and row["explanation"]
        elif category == "CLASSIFICATION":
            assert row["metric_score"] == ""
            labels.add(row["explanation"])
        else:
            assert category == "ANALYSIS" and row["metric_score"] == "" and row["explanation"]
            signals = json.loads(row["signals"])
            assert isinstance(signals, dict) and "suggested_action" in signals
    assert 2 <= len(labels) <= 6 and "resolved" in labels
    score_values = [float(r["metric_score"]) for r in rows if r["metric_category"] == "SCORE"]
    assert min(score_values) < 0.5 < max(score_values)
    assert all(r["signals"] == "" for r in rows if r["metric_category"] != "ANALYSIS")
    assert any("\n" in r["explanation"] for r in rows if r["metric_category"] == "ANALYSIS")

    times = sorted({r["timestamp"] for r in rows})
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t) for t in times)
    _, result = strict_read(
        duck,
        "monitoring_long_sample.csv",
        "count(DISTINCT date_trunc('week', timestamp::TIMESTAMP)), "
        "date_diff('day', min(timestamp), max(timestamp)), count(DISTINCT latency)",
    )
    weeks, span_days, distinct_latency = result[0]
    assert weeks >= 3 and span_days >= 14 and distinct_latency > 30


# ---------------------------------------------------------------------------------------------
# §11.2 human signals V2
# ---------------------------------------------------------------------------------------------
def test_hitl_rules() -> None:
    header, rows = read_sample("hitl_sample.csv")
    assert header == HITL_HEADER
    assert "source_name" not in header and {r["source"] for r in rows} == {"atlas"}
    for column in HITL_ALWAYS_EMPTY:
        assert all(r[column] == "" for r in rows), column
    metric_names = sorted({r["metric_name"] for r in rows})
    assert len(metric_names) == 13
    case_ids = sorted({r["dataset_id"] for r in rows})
    assert len(case_ids) == 3 and all(re.fullmatch(r"cs-\d{8}-00[1-3]", c) for c in case_ids)
    assert Counter(r["dataset_id"] for r in rows) == dict.fromkeys(case_ids, 13)

    constants = {
        "metric_type": "metric", "conversation_extraction_strategy": "last", "user_tags": "[]",
        "has_errors": "False", "threshold": "0.5", "llm_provider": "anthropic",
        "evaluation_name": "support_quality_v1", "evaluation_metadata": "{}",
    }  # fmt: skip
    for column, value in constants.items():
        assert {r[column] for r in rows} == {value}, column
    assert len({r["timestamp"] for r in rows}) == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", rows[0]["timestamp"])
    assert {r["model_name"] for r in rows} == {rows[0]["model_name"]} and rows[0]["model_name"].startswith("claude")
    assert len({r["run_id"] for r in rows}) == 1
    assert re.fullmatch(
        r"evaluation_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", rows[0]["run_id"]
    )

    message_counts, businesses = [], []
    for case_id in case_ids:
        case_rows = [r for r in rows if r["dataset_id"] == case_id]
        for column in ("cost_estimate", "additional_input", "dataset_metadata", "actual_output", "query",
                       "conversation", "conversation_stats"):  # fmt: skip
            assert len({r[column] for r in case_rows}) == 1, column
        first = case_rows[0]
        assert 0.002 <= float(first["cost_estimate"]) <= 0.004
        messages = json.loads(first["conversation"])["messages"]
        assert 6 <= len(messages) <= 7
        assert all(set(m) == {"role", "content", "metadata", "tool_calls", "llm_events", "topic"} for m in messages)
        assert all(m["metadata"] is m["tool_calls"] is m["llm_events"] is m["topic"] is None for m in messages)
        assert messages[0]["content"].startswith("New support case: ")
        match = re.match(r"New \w+ case: (.+)", messages[0]["content"])
        assert match is not None and "\n" in messages[0]["content"]
        businesses.append(match.group(1))
        stats = json.loads(first["conversation_stats"])
        roles = Counter(m["role"] for m in messages)
        assert stats["ai_message_count"] == roles["assistant"] == 4
        assert stats["user_message_count"] == roles["user"] in (2, 3)
        assert stats["tool_call_count"] == 0 and stats["turn_count"] in (4, 5)
        message_counts.append(stats["turn_count"])
        assert messages[-1]["role"] == "assistant" and first["actual_output"] == messages[-1]["content"]
        assert first["query"] == [m["content"] for m in messages if m["role"] == "user"][-1]
        additional = json.loads(first["additional_input"])
        assert additional["sender"] == "Atlas" and additional["reply_count"] == len(messages)
        assert additional["channel_id"] in {"support-billing", "support-technical", "support-accounts"}
        assert additional["ticket_url"].endswith(match.group(1))
        assert json.loads(first["dataset_metadata"]) == {
            k: v for k, v in additional.items() if k not in ("reply_count", "sender")
        }
        assert {r["metric_id"] for r in case_rows} == {f"metric-{case_id}-{r['metric_name']}" for r in case_rows}
    assert message_counts == [5, 4, 5]
    assert len(set(businesses)) == 3 and all(re.fullmatch(r"[A-Z]+-\d+", b) for b in businesses)

    keys_per_metric: dict[str, set[str]] = defaultdict(set)
    first_values: dict[str, Any] = {}
    for row in rows:
        signals = json.loads(row["signals"])
        assert isinstance(signals, dict) and signals
        keys_per_metric[row["metric_name"]].update(signals)
        for key, value in signals.items():
            if value is not None:
                first_values.setdefault(key, value)
        metadata = json.loads(row["metric_metadata"])
        assert metadata["group"] in ("objective", "feedback") and metadata["source_metric"]
        assert {k: metadata[k] for k in signals} == signals
        if row["metric_name"] in ("learnings_count", "feature_requests_count"):
            assert row["metric_category"] == "score"
            assert (
                int(row["metric_score"])
                == signals["count"]
                == int(row["explanation"])
                == len(signals["learnings" if row["metric_name"] == "learnings_count" else "requests"])
            )
            assert 0 <= signals["count"] <= 2
        else:
            assert row["metric_category"] == "classification" and row["metric_score"] == ""
            assert row["explanation"] and row["explanation"] in {str(v) for v in signals.values()} | {
                "actionable",
                "not_actionable",
            }
    assert sum("reasoning" in keys for keys in keys_per_metric.values()) == 5
    key_frequency = Counter(k for keys in keys_per_metric.values() for k in keys)
    assert max(key_frequency.values()) <= 13 // 2  # no common-metadata keys (> 50 % of metrics)

    kpi_booleans = {k for k, v in first_values.items() if isinstance(v, bool) and k.startswith(("is_", "has_"))}
    assert kpi_booleans == {
        "is_escalated", "has_intervention", "is_compliant", "is_resolved", "is_stalemate", "has_actionable_feedback"
    }  # fmt: skip
    numeric = {
        k for k, v in first_values.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and not k.endswith("_score")
    }  # fmt: skip
    assert numeric == {"escalation_turn_index", "time_to_resolution_seconds", "count"}
    for string_signal, vocabulary in (
        ("escalation_type", {"none", "team_mention"}),
        ("sentiment", {"frustrated", "positive", "concerned"}),
        ("priority", {"high", "normal"}),
        ("status", {"accepted", "rejected"}),
    ):
        observed = {json.loads(r["signals"]).get(string_signal) for r in rows} - {None}
        assert observed == vocabulary, string_signal


# ---------------------------------------------------------------------------------------------
# §11.3 annotation, §11.4 align, §11.5 eval runner
# ---------------------------------------------------------------------------------------------
def test_annotation_rules() -> None:
    header, rows = read_sample("annotation_sample.csv")
    assert header == [
        "dataset_id", "query", "actual_output", "expected_output", "evaluation_name", "judgment", "critique",
        "user_tags",
    ]  # fmt: skip
    # Detection order §4.2: no eval_runner / tree / flat columns, has judgment -> simple_judgment.
    assert "judgment" in header and not {"run_id", "passed", "metric_name", "metric_score"} & set(header)
    assert [r["dataset_id"] for r in rows] == [f"ann_{i:03d}" for i in range(1, 11)]
    assert {r["evaluation_name"] for r in rows} == {"Baseline Model"}
    judged = [r for r in rows if r["judgment"] != ""]
    assert len(judged) == 4
    assert sorted(r["judgment"] for r in judged) == ["4", "accept", "accept", "reject"]
    assert [r["dataset_id"] for r in rows if r["critique"]] == [r["dataset_id"] for r in judged]
    tags = [json.loads(r["user_tags"]) for r in rows if r["user_tags"]]
    assert sorted(map(tuple, tags)) == [("Excellent",), ("Incomplete",), ("Incomplete", "Factual Error")]
    answers = [r["actual_output"] for r in rows]
    assert all(200 <= len(a) <= 750 for a in answers), [len(a) for a in answers]
    assert all("\n" in a and a.lstrip().startswith("#") for a in answers)
    assert any("```" in a for a in answers)
    assert any(re.search(r"^\|.*\|$", a, re.M) and "|---" in a for a in answers)
    assert any(re.search(r"^- ", a, re.M) for a in answers) and any(re.search(r"^1\. ", a, re.M) for a in answers)
    assert all(r["expected_output"] and "\n" not in r["expected_output"] for r in rows)


def test_align_rules() -> None:
    header, rows = read_sample("align_sample.csv")
    assert header == ["dataset_id", "query", "actual_output", "expected_output", "evaluation_name"]
    assert [r["dataset_id"] for r in rows] == [f"align_{i:03d}" for i in range(1, 6)]
    assert {r["evaluation_name"] for r in rows} == {"align_sample"}
    # fresh_annotation: no judgment / metric columns
    assert not {"judgment", "metric_name", "metric_score", "run_id"} & set(header)
    # every cell (header included) is quoted
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL).writerows(
        [header, *[list(r.values()) for r in rows]]
    )
    assert (SAMPLE_DIR / "align_sample.csv").read_text(encoding="utf-8") == buffer.getvalue()
    lengths = [len(r["actual_output"]) for r in rows]
    assert lengths.index(max(lengths)) == 3  # the 4th answer rambles
    assert all(len(r["expected_output"]) < 50 for r in rows)


def test_eval_runner_rules() -> None:
    header, rows = read_sample("eval_runner_sample.csv")
    assert header == ["dataset_id", "query", "actual_output", "expected_output", "retrieved_content"]
    assert [r["dataset_id"] for r in rows] == [f"q{i:03d}" for i in range(1, 11)]
    assert all(r["retrieved_content"] and "\n" not in r["retrieved_content"] for r in rows)
    assert sum("," in r["retrieved_content"] for r in rows) >= 3


# ---------------------------------------------------------------------------------------------
# Model / model comparison (tree format)
# ---------------------------------------------------------------------------------------------
def _check_tree(rows: list[dict[str, str]]) -> None:
    groups: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        groups[(row["evaluation_name"], row["dataset_id"])].append(row)
    for group in groups.values():
        roots = [r for r in group if r["metric_type"] == "metric"]
        components = [r for r in group if r["metric_type"] == "component"]
        assert len(roots) == 1 and roots[0]["parent"] == "" and 2 <= len(components) <= 4
        assert len(roots) + len(components) == len(group)
        assert {r["parent"] for r in components} == {roots[0]["metric_name"]}
        weights = [float(r["weight"]) for r in components]
        assert abs(sum(weights) - 1.0) < 1e-9
        weighted = sum(w * float(r["metric_score"]) for w, r in zip(weights, components, strict=True))
        assert abs(float(roots[0]["metric_score"]) - weighted) <= 0.0005
        for column in ("query", "actual_output", "expected_output", "evaluation_metadata", "data_metadata"):
            assert len({r[column] for r in group}) == 1
        assert all(r["explanation"] for r in group)
        assert all(0.0 <= float(r["metric_score"]) <= 1.0 for r in group)
        json.loads(group[0]["evaluation_metadata"])
        assert set(json.loads(group[0]["data_metadata"])) == {"category", "difficulty"}


def test_model_tree_rules() -> None:
    header, rows = read_sample("example_model.csv")
    assert {"metric_name", "parent", "metric_type", "metric_score"} <= set(header)  # tree_format rule §4.2
    assert len({r["evaluation_name"] for r in rows}) == 1
    ids = {r["dataset_id"] for r in rows}
    assert 12 <= len(ids) <= 20
    _check_tree(rows)
    roots = [float(r["metric_score"]) for r in rows if r["metric_type"] == "metric"]
    assert min(roots) < 0.5 < max(roots)  # a failing tail for pass-rate views


def test_model_comparison_rules() -> None:
    _, rows = read_sample("example_model_comparison.csv")
    _, model = read_sample("example_model.csv")
    evaluations = list(dict.fromkeys(r["evaluation_name"] for r in rows))
    assert len(evaluations) == 3
    _check_tree(rows)
    items = {e: {(r["dataset_id"], r["query"]) for r in rows if r["evaluation_name"] == e} for e in evaluations}
    assert items[evaluations[0]] == items[evaluations[1]] == items[evaluations[2]]
    assert 12 <= len(items[evaluations[0]]) <= 20
    means = [
        statistics.mean(
            float(r["metric_score"]) for r in rows if r["evaluation_name"] == e and r["metric_type"] == "metric"
        )
        for e in evaluations
    ]
    assert means == sorted(means) and means[2] - means[0] > 0.1
    assert [r for r in rows if r["evaluation_name"] == model[0]["evaluation_name"]] == model


def test_row_builders_match_files() -> None:
    for name, spec in example_data.EXAMPLE_DATASETS.items():
        built = spec.build(example_data.DEFAULT_SEED)
        header, rows = read_sample(spec.filename)
        assert list(spec.columns) == header, name
        assert len(built) == len(rows), name
        assert [example_data.format_cell(v) for v in built[0].values()] == [rows[0][c] for c in built[0]]
