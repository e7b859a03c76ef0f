"""Human-signals processing in DuckDB: detection, expansion, schema, cases, sync-engine hook."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from app.config import Settings
from app.errors import Invalid, NotFound
from app.services import human_signals_service as hs
from app.services.duckdb_store import DuckDBStore, quote_ident
from app.services.human_signals_build import build_signals_tables_sync
from tests.conftest import register_synced, response_rows

CONV_A = json.dumps(
    {
        "messages": [
            {"role": "assistant", "content": "New support case: TICK-1\nDetails here"},
            {"role": "user", "content": "hi"},
        ]
    }
)
CONV_B = json.dumps({"messages": [{"role": "assistant", "content": "\n   \n" + "x" * 100 + "\nmore"}]})
LONG_LINE = "x" * 80


def v2_frame() -> pd.DataFrame:
    """Two cases × three metrics, with the awkward cases the spec names."""
    rows = [
        # case 10 ---------------------------------------------------------------
        {
            "Metric Name": "escalation",
            "Dataset-ID": 10,
            "Signals": json.dumps(
                {"is_escalated": True, "reason": "billing", "reasoning": "r1", "details": '{"team": "billing"}'}
            ),
            "source": "atlas",
            "Metric Category": " Classification ",
            "conversation": CONV_A,
            "conversation_stats": json.dumps({"turn_count": 4, "user_message_count": 9}),
            "additional_input": json.dumps({"message_url": "https://slack/x", "sender": "Bot"}),
            "timestamp": "2025-01-01 10:00:00",
        },
        {
            "Metric Name": "quality",
            "Dataset-ID": 10,
            "Signals": json.dumps(
                {
                    "overall": {"checks": [{"name": "total", "value": 5}, {"name": "relevant", "score": 2}]},
                    "reasoning": "r2",
                }
            ),
            "source": "atlas",
            "Metric Category": "score",
            "conversation": CONV_A,
            "conversation_stats": "{}",
            "additional_input": None,
            "timestamp": "2025-01-01 10:00:00",
        },
        {
            "Metric Name": "sentiment",
            "Dataset-ID": 10,
            "Signals": "{'sentiment': 'happy', 'needs_followup': 'no'}",
            "source": "atlas",
            "Metric Category": None,
            "conversation": CONV_A,
            "conversation_stats": None,
            "additional_input": None,
            "timestamp": "2025-01-01 10:00:00",
        },
        # case 2 ----------------------------------------------------------------
        {
            "Metric Name": "escalation",
            "Dataset-ID": 2,
            "Signals": json.dumps({"is_escalated": False, "reason": "none", "reasoning": None}),
            "source": "nova",
            "Metric Category": "classification",
            "conversation": CONV_B,
            "conversation_stats": json.dumps({"user_message_count": 2, "ai_message_count": 3}),
            "additional_input": "[1, 2]",
            "timestamp": "2025-01-02 11:00:00",
        },
        {
            "Metric Name": "sentiment",
            "Dataset-ID": 2,
            "Signals": json.dumps({"sentiment": "sad", "reasoning": "r3"}),
            "source": "nova",
            "Metric Category": "classification",
            "conversation": CONV_B,
            "conversation_stats": "not json",
            "additional_input": None,
            "timestamp": "2025-01-02 11:00:00",
        },
        {
            "Metric Name": "escalation",
            "Dataset-ID": 3,
            "Signals": json.dumps({"is_escalated": True}),
            "source": "nova",
            "Metric Category": "classification",
            "conversation": None,
            "conversation_stats": None,
            "additional_input": None,
            "timestamp": "2025-01-03 11:00:00",
        },
        {
            "Metric Name": "  ",
            "Dataset-ID": 3,
            "Signals": json.dumps({"ignored": 1}),
            "source": "nova",
            "Metric Category": None,
            "conversation": None,
            "conversation_stats": None,
            "additional_input": None,
            "timestamp": "2025-01-03 11:00:00",
        },
    ]
    return pd.DataFrame(rows)


async def build(store: DuckDBStore, df: pd.DataFrame, visible: list[str] | None = None) -> tuple[Any, list[Any]]:
    def run(cur: Any) -> tuple[Any, list[Any]]:
        cur.register("src_df", df)
        cur.execute("CREATE OR REPLACE TABLE raw AS SELECT * FROM src_df")
        cur.unregister("src_df")
        built = build_signals_tables_sync(cur, "raw", "cases", visible or [])
        return built, list(hs.cases_page_sync(cur, "cases", 100)[1])

    return await store.run_write(run)


async def test_schema_expansion_and_types(store: DuckDBStore) -> None:
    built, _ = await build(store, v2_frame())
    schema = built.metric_schema
    assert list(schema["metrics"]) == ["escalation", "quality", "sentiment"]  # sorted, blank skipped
    esc = schema["metrics"]["escalation"]
    # "reasoning" is in 3 of 3 metrics (> 50 %) → common metadata, removed from every metric.
    assert esc["signals"] == ["is_escalated", "reason", "details"]
    assert esc["category"] == "classification"
    assert esc["signal_types"] == {"is_escalated": "boolean", "reason": "string", "details": "object"}
    assert esc["values"] == {"reason": ["billing", "none"]}
    q = schema["metrics"]["quality"]
    assert q["category"] == "score"
    assert q["signals"] == ["total", "relevant"]  # category dict flattened to name → value/score
    assert q["signal_types"] == {"total": "number", "relevant": "number"}
    sent = schema["metrics"]["sentiment"]
    assert sent["category"] == "classification"  # null category → classification
    assert sent["signals"] == ["sentiment", "needs_followup"]  # the Python-literal cell was parsed
    assert sent["values"]["sentiment"] == ["happy", "sad"]
    assert schema["source_fields"] == ["source_name"] and schema["has_timestamp"] is True


async def test_majority_type_wins(store: DuckDBStore) -> None:
    df = pd.DataFrame(
        {
            "metric_name": ["m", "m", "m", "other"],
            "dataset_id": ["a", "b", "c", "a"],
            "source_name": ["s"] * 4,
            "signals": [
                json.dumps({"flag": "yes"}),
                json.dumps({"flag": True}),
                json.dumps({"flag": False}),
                json.dumps({"x": None}),
            ],
        }
    )
    built, _ = await build(store, df)
    assert built.metric_schema["metrics"]["m"]["signal_types"] == {"flag": "boolean"}  # DB-22: 2 of 3
    assert built.metric_schema["metrics"]["other"]["signal_types"] == {"x": "unknown"}


async def test_duplicate_keys_and_array_signals(store: DuckDBStore) -> None:
    df = pd.DataFrame(
        {
            "metric_name": ["dup", "lst"],
            "dataset_id": ["a", "a"],
            "signals": ['{"k": "x", "b": 1, "k": "y"}', "[7, 'z']"],  # a Python-literal list
        }
    )
    built, cases = await build(store, df)
    metrics = built.metric_schema["metrics"]
    assert metrics["dup"]["signals"] == ["k", "b"]  # first-occurrence order
    assert metrics["lst"]["signals"] == ["0", "1"]  # a list is keyed by index
    assert metrics["lst"]["signal_types"] == {"0": "number", "1": "string"}
    assert cases[0]["dup__k"] == "y"  # the last duplicate wins
    assert cases[0]["lst__0"] == 7 and cases[0]["lst__1"] == "z"
    # a JSON list with true/null, which Python's literal parser refuses
    built, cases = await build(
        store, pd.DataFrame({"metric_name": ["jl"], "dataset_id": ["a"], "signals": ["[1, true, null]"]})
    )
    assert built.metric_schema["metrics"]["jl"]["signal_types"] == {"0": "number", "1": "boolean", "2": "unknown"}
    assert (cases[0]["jl__0"], cases[0]["jl__1"], cases[0]["jl__2"]) == (1, True, None)


async def test_business_label_ignores_cr_and_tabs_and_reads_any_script(store: DuckDBStore) -> None:
    """§7.4's "New <word> case: <label>" with a Unicode word; CRLF text and tab-only lines are blank."""
    firsts = {
        "a": "New support case: TICK-1\r\nmore",
        "b": "New café case: Ünïcödé\nx",
        "c": "\t\r\n  first real line\r\nsecond",
    }
    df = pd.DataFrame(
        {
            "metric_name": ["m"] * 3,
            "dataset_id": list(firsts),
            "signals": ['{"ok": true}'] * 3,
            "conversation": [json.dumps({"messages": [{"role": "user", "content": t}]}) for t in firsts.values()],
        }
    )
    _, cases = await build(store, df)
    assert [c["Business"] for c in cases] == ["TICK-1", "Ünïcödé", "first real line"]


async def test_many_signal_keys_pivot_to_the_same_values(store: DuckDBStore) -> None:
    """Past WIDE_PIVOT_COLUMNS the pivot gathers maps; values must equal the per-column rule."""
    keys = [f"k{i}" for i in range(150)]
    rows = []
    for case in ("c1", "c2", "c3"):
        for rep in range(2):  # the later row of a (case, metric) wins for a signal
            sig = {k: f"{case}-{k}-{rep}" for k in keys} | {"n": rep * 10, "shared": None if rep == 0 else case}
            rows.append({"metric_name": "m", "dataset_id": case, "signals": json.dumps(sig)})
        rows.append({"metric_name": "other", "dataset_id": case, "signals": json.dumps({"shared": "o", "x": [1]})})
    _, cases = await build(store, pd.DataFrame(rows))
    assert [c["Case_ID"] for c in cases] == ["c1", "c2", "c3"]
    for c in cases:
        cid = c["Case_ID"]
        assert all(c[f"m__{k}"] == f"{cid}-{k}-1" for k in keys)
        assert c["m__n"] == 10 and c["shared"] == cid  # promoted: first non-null value in row order
        assert json.loads(c["other__x"]) == [1]


async def test_signal_names_equal_ignoring_case_get_numbered_in_cases_and_schema(store: DuckDBStore) -> None:
    df = pd.DataFrame(
        {
            "metric_name": ["m", "a", "a__b"],
            "dataset_id": ["c1", "c1", "c1"],
            "signals": [json.dumps({"Mood": "up", "mood": "down"}), json.dumps({"b__c": 1}), json.dumps({"c": 2})],
        }
    )
    built, cases = await build(store, df)
    metrics = built.metric_schema["metrics"]
    assert metrics["m"]["signals"] == ["Mood", "mood_2"] and set(metrics["m"]["signal_types"]) == {"Mood", "mood_2"}
    assert metrics["a__b"]["signals"] == ["c_2"]
    case = cases[0]
    for metric, spec in metrics.items():  # <metric>__<signal> names each column, with its own value
        assert all(f"{metric}__{sig}" in case for sig in spec["signals"])
    assert (case["m__Mood"], case["m__mood_2"], case["a__b__c"], case["a__b__c_2"]) == ("up", "down", 1, 2)


async def test_cases(store: DuckDBStore) -> None:
    built, cases = await build(store, v2_frame())
    assert built.case_count == 3
    assert [c["Case_ID"] for c in cases] == ["2", "3", "10"]  # ascending (numeric) id order
    c2, c3, c10 = cases
    assert c10["source_name"] == "atlas"
    assert c10["Slack_URL"] == "https://slack/x" and c10["Agent_Name"] == "Bot"
    assert c10["Business"] == "TICK-1"
    assert c10["Message_Count"] == 4
    assert c10["Timestamp"] == "2025-01-01 10:00:00"
    assert c10["Full_Conversation"][1] == {"role": "user", "content": "hi"}
    assert c10["escalation__is_escalated"] is True
    assert json.loads(c10["escalation__details"]) == {"team": "billing"}  # JSON string value parsed, stored as text
    assert c10["quality__total"] == 5 and c10["quality__relevant"] == 2
    assert c10["sentiment__needs_followup"] == "no"
    assert c10["reasoning"] == "r1"  # common metadata promoted: first non-null in row order
    assert "escalation__reasoning" not in c10
    assert c2["Business"] == LONG_LINE  # first non-blank line, truncated to 80
    assert c2["Message_Count"] == 5  # user + ai when no turn_count
    assert c2["Slack_URL"] is None and c2["Agent_Name"] == "nova"
    assert json.loads(c2["additional_input"]) == [1, 2]
    assert c2["reasoning"] == "r3"  # null reasoning skipped
    assert c3["Business"] == "Unknown" and c3["Message_Count"] == 0 and c3["Full_Conversation"] == []
    assert "sentiment__sentiment" not in c3


async def test_visible_metrics(store: DuckDBStore) -> None:
    built, cases = await build(store, v2_frame(), visible=["sentiment"])
    assert list(built.metric_schema["metrics"]) == ["sentiment"]
    assert not any(k.startswith("escalation__") for c in cases for k in c)


@pytest.mark.parametrize("extra_keys", [0, 80])  # 80 keys: past WIDE_PIVOT_COLUMNS, the map pivot
async def test_hidden_metrics_promote_no_common_keys(store: DuckDBStore, extra_keys: int) -> None:
    """§7.4: rows of metrics outside visible_metrics are skipped, so they promote no common key either."""
    wide = {f"k{i}": i for i in range(extra_keys)}
    rows = [
        # "reasoning" is in 3 of 3 metrics (> 50 %): common metadata, promoted at case level
        {"metric_name": "hidden", "dataset_id": "a", "signals": json.dumps({"reasoning": "from-hidden", "h": 1})},
        {"metric_name": "m1", "dataset_id": "a", "signals": json.dumps({"reasoning": None, "x": 1} | wide)},
        {"metric_name": "m2", "dataset_id": "a", "signals": json.dumps({"reasoning": "from-m2", "y": 2})},
        {"metric_name": "hidden", "dataset_id": "b", "signals": json.dumps({"reasoning": "only-hidden", "h": 3})},
        {"metric_name": "m1", "dataset_id": "b", "signals": json.dumps({"x": 4})},
    ]
    built, cases = await build(store, pd.DataFrame(rows), visible=["m1", "m2"])
    assert list(built.metric_schema["metrics"]) == ["m1", "m2"]
    a, b = cases
    # first non-null value among the visible metrics' rows, in row order: m1's is null, m2's wins
    assert (a["Case_ID"], a["reasoning"], a["m1__x"], a["m2__y"]) == ("a", "from-m2", 1, 2)
    assert b["Case_ID"] == "b" and b.get("reasoning") is None and b["m1__x"] == 4
    assert not any(k.startswith("hidden__") or k == "h" for c in cases for k in c)


async def test_missing_signals_is_400(store: DuckDBStore) -> None:
    df = pd.DataFrame({"metric_name": ["m"], "dataset_id": ["a"], "source": ["s"]})
    with pytest.raises(Invalid, match="Required columns: metric_name, dataset_id, signals"):
        await build(store, df)


async def test_example_hitl(store: DuckDBStore, settings: Settings) -> None:
    res = await hs.load_human_signals_example(store, settings, "hitl")
    assert res.format == "hitl_feedback" and res.row_count == 3 and res.message == "Processed 3 cases"
    assert [c["Business"] for c in response_rows(res)] == ["SUP-1204", "SUP-5893", "SUP-8087"]
    assert [c["Message_Count"] for c in response_rows(res)] == [5, 4, 5]
    schema = res.metric_schema
    assert schema is not None and len(schema["metrics"]) == 13
    assert "reasoning" in schema["metrics"]["priority_level"]["signals"]  # 5/13 metrics: not common
    kpis = [(k.get("signal"), k.get("format")) for k in (res.display_config or {})["kpi_strip"]]
    for sig in (
        "is_escalated",
        "has_intervention",
        "is_compliant",
        "is_resolved",
        "is_stalemate",
        "has_actionable_feedback",
    ):
        assert (sig, "percent") in kpis
    assert ("time_to_resolution_seconds", "duration") in kpis and ("escalation_turn_index", "number") in kpis
    info = await store.get_dataset(str(res.dataset_id))
    assert info.kind == "human_signals" and info.source == "example:hitl"
    assert info.extra["cases_table"] == f"ds_{info.dataset_id}_cases"
    page = await hs.list_cases(store, settings, page=2, page_size=2)
    assert page.row_count == 3 and [c["Case_ID"] for c in response_rows(page)] == [response_rows(res)[2]["Case_ID"]]
    sch = await hs.metric_schema(store, settings)
    assert sch.metric_schema == schema
    with pytest.raises(NotFound):
        await hs.load_human_signals_example(store, settings, "v1")


async def test_sync_hook_builds_fixed_tables(store: DuckDBStore, settings: Settings) -> None:
    df = v2_frame()

    def make_raw(cur: Any) -> None:
        cur.register("src_df", df)
        cur.execute("CREATE OR REPLACE TABLE human_signals_raw AS SELECT * FROM src_df")
        cur.unregister("src_df")

    await store.run_write(make_raw)
    schema = await hs.build_human_signals_derived(store, settings, "human_signals_raw", "sync-1")
    assert schema is not None and list(schema["metrics"]) == ["escalation", "quality", "sentiment"]
    assert await store.kv_get(hs.SCHEMA_KV) == schema
    assert await store.kv_get(hs.CASES_SYNC_KV) == "sync-1"
    rows = await store.fetch(f'SELECT "Case_ID" FROM {quote_ident(hs.SYNC_CASES_TABLE)} ORDER BY rowid')
    assert [r[0] for r in rows.rows] == ["2", "3", "10"]
    meta = await store.get_metadata(hs.SYNC_CASES_TABLE)
    assert meta["row_count"] == 3
    # a synced dataset registered by the sync engine serves /cases from the fixed tables
    await register_synced(
        store,
        "human_signals",
        "human_signals_raw",
        row_count=len(df),
        columns=await store.describe("human_signals_raw"),
    )
    page = await hs.list_cases(store, settings, 1, 50)
    assert page.row_count == 3 and page.metric_schema == schema and page.source == "duckdb"


async def test_sync_hook_skips_non_v2(store: DuckDBStore, settings: Settings) -> None:
    await store.execute_write("CREATE TABLE human_signals_raw AS SELECT 1 AS x")
    assert await hs.build_human_signals_derived(store, settings, "human_signals_raw", "s") is None
    assert not await store.table_exists(hs.SYNC_CASES_TABLE)


async def test_db_import_from_postgres(
    store: DuckDBStore, pg: Any, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    pg.execute("CREATE TABLE hs (dataset_id text, metric_name text, signals jsonb, source text)")
    pg.execute("""INSERT INTO hs VALUES ('a', 'm1', '{"is_ok": true}', 's1'), ('a', 'm2', '{"label": "x"}', 's1'),
                  ('b', 'm1', '{"is_ok": false}', 's2')""")
    (tmp_path / "custom" / "config" / "human_signals_db.yaml").write_text(
        f"human_signals_db:\n  host: {pg.host}\n  port: {pg.port}\n  database: {pg.database}\n"
        f"  username: {pg.user}\n  ssl_mode: disable\n  schema: {pg.schema}\n  table: hs\n"
    )
    res = await hs.import_human_signals_from_db(store, make_settings())
    assert res.source == "database" and res.row_count == 2
    assert [c["m1__is_ok"] for c in response_rows(res)] == [True, False]
    assert res.metric_schema is not None and res.metric_schema["metrics"]["m1"]["signal_types"] == {"is_ok": "boolean"}


async def test_db_import_joins_integer_and_text_ids(
    store: DuckDBStore, pg: Any, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """Split queries whose dataset_id types differ (int vs text) are joined by text (was a 500)."""
    pg.execute("CREATE TABLE ds (dataset_id int, conversation text)")
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, signals jsonb, source_name text)")
    pg.execute("INSERT INTO ds VALUES (1, 'hello')")
    pg.execute(
        """INSERT INTO rs VALUES ('1', 'm1', '{"is_ok": true}', 's1'), ('abc', 'm1', '{"is_ok": false}', 's1')"""
    )
    (tmp_path / "custom" / "config" / "human_signals_db.yaml").write_text(
        f"human_signals_db:\n  host: {pg.host}\n  port: {pg.port}\n  database: {pg.database}\n"
        f"  username: {pg.user}\n  ssl_mode: disable\n"
        f'  dataset_query: "SELECT * FROM {pg.schema}.ds"\n  results_query: "SELECT * FROM {pg.schema}.rs"\n'
    )
    res = await hs.import_human_signals_from_db(store, make_settings())
    assert res.row_count == 2
    assert sorted((str(c["Case_ID"]), c["m1__is_ok"]) for c in response_rows(res)) == [("1", True), ("abc", False)]
