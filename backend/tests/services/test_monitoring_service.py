"""Monitoring ingestion: SQL processing, alias collision guard, examples and real PostgreSQL imports."""

from __future__ import annotations

import csv
import datetime as dt
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.config import Settings
from app.errors import Invalid, NotFound
from app.services import monitoring_service as ms
from app.services.column_aliases import MONITORING_ALIASES
from app.services.duckdb_store import DuckDBStore, quote_ident, utc_now
from tests.conftest import PgSchema, fetch_dicts, response_rows


def test_plan_renames_collision_guard() -> None:
    # id and record_id both alias dataset_id: only the first gets it (DB-23).
    assert ms.plan_renames(["id", "record_id", "Latency-MS"], None, MONITORING_ALIASES) == {
        "id": "dataset_id",
        "record_id": "record_id",
        "Latency-MS": "latency",
    }
    # A target that already exists as an original column is never produced twice.
    assert ms.plan_renames(["model", "model_name"], None, MONITORING_ALIASES) == {
        "model": "model",
        "model_name": "model_name",
    }
    # The custom map (exact names) wins over the alias table; score/metric are not aliased.
    assert ms.plan_renames(["Agent", "score"], {"Agent": "source_name"}, MONITORING_ALIASES) == {
        "Agent": "source_name",
        "score": "score",
    }
    # ...whatever the column order: 'time' (an alias of timestamp) comes first but the custom map
    # claims timestamp for ts_custom; a custom target that is an alias becomes the canonical name.
    assert ms.plan_renames(
        ["time", "ts_custom", "AgentX"], {"ts_custom": "timestamp", "AgentX": "model"}, MONITORING_ALIASES
    ) == {"time": "time", "ts_custom": "timestamp", "AgentX": "model_name"}
    # Case-insensitive guard: 'Latency' exists, so 'latency_ms' is not renamed onto it.
    assert ms.plan_renames(["Latency", "latency_ms"], None, MONITORING_ALIASES)["latency_ms"] == "latency_ms"


async def _process(store: DuckDBStore, sql: str, custom: dict[str, str] | None = None) -> tuple[Any, list[Any]]:
    def run(cur: Any) -> tuple[Any, list[Any]]:
        cur.execute(f"CREATE OR REPLACE TABLE src AS {sql}")
        res = ms.process_monitoring_sync(cur, "src", "out", custom, now=dt.datetime(2025, 1, 2, 3, 4, 5))
        desc = cur.execute("DESCRIBE out").fetchall()
        return res, [desc, cur.execute("SELECT * FROM out ORDER BY 1").fetchall()]

    return await store.run_write(run)


async def test_a_custom_map_to_an_id_alias_names_the_record_id(store: DuckDBStore) -> None:
    """``columns: {conv: id}`` (or ``Record ID``) maps conv on to dataset_id, as the rename plan says (was a 400)."""
    for target in ("id", "Record ID", "dataset_id"):
        _res, (desc, rows) = await _process(
            store, "SELECT * FROM (VALUES ('a', 0.5), ('b', 0.7)) t(conv, relevance_score)", {"conv": target}
        )
        assert [d[0] for d in desc][:2] == ["dataset_id", "relevance_score"], target
        assert [r[:2] for r in rows] == [("a", 0.5), ("b", 0.7)]
    with pytest.raises(Invalid, match="Required column: dataset_id"):
        await _process(store, "SELECT * FROM (VALUES ('a', 0.5)) t(conv, relevance_score)")


async def test_timestamp_text_with_zone_names_is_read_per_row(store: DuckDBStore) -> None:
    """Zone names convert their own row (they were unreadable); the next zoneless row stays UTC."""
    _res, (_desc, rows) = await _process(
        store,
        "SELECT * FROM (VALUES ('a', '2024-01-02 10:00:00 America/New_York', 0.5), "
        "('b', '2024-01-02 10:00:00', 0.6), ('c', '2024-01-02T10:00:00+02:00', 0.7)) t(dataset_id, timestamp, a_score)",
    )
    assert [r[1] for r in rows] == [
        dt.datetime(2024, 1, 2, 15, 0),
        dt.datetime(2024, 1, 2, 10, 0),
        dt.datetime(2024, 1, 2, 8, 0),
    ]


async def test_process_wide_coerces_and_adds_utc_timestamp(store: DuckDBStore) -> None:
    res, (desc, rows) = await _process(
        store,
        "SELECT * FROM (VALUES ('a', '120', '0.9', 'x'), ('b', 'slow', 'bad', 'y')) "
        't(ID, "Response Time", relevance_score, env)',
    )
    assert res.format == "monitoring" and res.message == "Processed 2 monitoring records"
    assert res.metric_columns == ["relevance_score"]
    types = {r[0]: r[1] for r in desc}
    assert types == {
        "dataset_id": "VARCHAR",
        "latency": "DOUBLE",
        "relevance_score": "DOUBLE",
        "environment": "VARCHAR",
        "timestamp": "TIMESTAMP",
    }
    assert rows == [
        ("a", 120.0, 0.9, "x", dt.datetime(2025, 1, 2, 3, 4, 5)),
        ("b", None, None, "y", dt.datetime(2025, 1, 2, 3, 4, 5)),
    ]


async def test_process_long_keeps_text_scores_and_normalises_offsets(store: DuckDBStore) -> None:
    res, (desc, rows) = await _process(
        store,
        "SELECT * FROM (VALUES ('a', '2025-01-01T10:00:00+02:00', 'm', '0.5'), "
        "('b', '2025-01-01 10:00:00', 'c', 'positive')) t(record_id, created_at, metric_name, metric_score)",
    )
    assert res.metric_columns == ["metric_score"]
    types = {r[0]: r[1] for r in desc}
    assert types["timestamp"] == "TIMESTAMP" and types["metric_score"] == "VARCHAR"
    assert rows[0][1] == dt.datetime(2025, 1, 1, 8, 0) and rows[1][1] == dt.datetime(2025, 1, 1, 10, 0)
    assert rows[1][3] == "positive"


async def test_process_rejects_non_monitoring_and_empty(store: DuckDBStore) -> None:
    with pytest.raises(Invalid, match="Required column: dataset_id"):
        await _process(store, "SELECT 1 AS foo")
    with pytest.raises(Invalid, match="Empty dataset"):
        await _process(store, "SELECT 'a' AS dataset_id WHERE false")


async def test_example_loads_and_caches_summary(store: DuckDBStore, settings: Settings) -> None:
    res = await ms.load_monitoring_example(store, settings, "monitoring")
    assert res.row_count == 50 and res.format == "monitoring"
    assert set(res.metric_columns) == {"relevance_score", "coherence_score", "accuracy_score"}
    assert "latency" in res.columns and "has_errors" in res.columns and "latency_ms" not in res.columns
    info = await store.get_dataset(res.dataset_id)
    assert info.source == "example:monitoring" and info.kind == "monitoring"
    ts_type = info.column_type("timestamp")
    assert ts_type == "TIMESTAMP"
    long = await ms.load_monitoring_example(store, settings, "monitoring_long")
    assert long.metric_columns == ["metric_score"]
    meta = await store.get_metadata((await store.get_dataset(long.dataset_id)).table_name)
    rows = list(csv.DictReader((settings.axis_sample_dir / "monitoring_long_sample.csv").open(encoding="utf-8")))
    score_rows = [float(r["metric_score"]) for r in rows if r["metric_category"] == "SCORE"]
    cached = meta["monitoring_summary"]["by_category"]["SCORE"]
    assert cached["total_records"] == len(score_rows) == 180
    assert cached["avg_score"] == pytest.approx(statistics.mean(score_rows))
    with pytest.raises(NotFound, match="Available"):
        await ms.load_monitoring_example(store, settings, "nope")


def _write_yaml(settings_dir: Path, body: str) -> None:
    (settings_dir / "monitoring_db.yaml").write_text(body)


def _write_split_queries(tmp_path: Path, pg: PgSchema, results_suffix: str = "") -> None:
    """monitoring_db.yaml reading the test schema's ``ds`` and ``rs`` tables as split queries."""
    _write_yaml(
        tmp_path / "custom" / "config",
        f"""monitoring_db:
  host: {pg.host}
  port: {pg.port}
  database: {pg.database}
  username: {pg.user}
  ssl_mode: disable
  dataset_query: "SELECT * FROM {pg.schema}.ds"
  results_query: "SELECT * FROM {pg.schema}.rs{results_suffix}"
""",
    )


async def test_db_import_split_queries(
    store: DuckDBStore, pg: PgSchema, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    pg.execute("CREATE TABLE ds (dataset_id text, query text, created_at timestamptz, environment text)")
    pg.execute(
        "CREATE TABLE rs (dataset_id text, metric_name text, metric_score double precision, "
        "environment text, latency_ms int, id uuid)"
    )
    pg.execute("INSERT INTO ds VALUES ('a','q1','2025-01-01 10:00+02','prod'), ('b','q2','2025-01-02 00:00Z','dev')")
    pg.execute(
        "INSERT INTO rs VALUES ('a','m1',0.9,'r-env',100, gen_random_uuid()), ('a','m2',0.4,'r-env',100, "
        "gen_random_uuid()), ('b','m1',0.7,'r-env',50, gen_random_uuid()), ('c','m1',0.1,'x',10, NULL)"
    )
    _write_split_queries(tmp_path, pg, " ORDER BY dataset_id, metric_name")
    settings = make_settings()
    res = await ms.import_monitoring_from_db(store, settings)
    assert res.source == "database" and res.row_count == 4
    assert res.message == "Imported 4 records from database query"
    info = await store.get_dataset(res.dataset_id)
    assert info.source == "database"
    rows = await fetch_dicts(
        store,
        f"SELECT dataset_id, query, environment, dataset_environment, timestamp, latency "
        f"FROM {quote_ident(info.table_name)} ORDER BY dataset_id, metric_name",
    )
    # LEFT join keeps the result without a dataset row; results win on collisions.
    assert [r["dataset_id"] for r in rows] == ["a", "a", "b", "c"]
    assert rows[0]["environment"] == "r-env" and rows[0]["dataset_environment"] == "prod"
    assert rows[0]["timestamp"] == dt.datetime(2025, 1, 1, 8, 0) and rows[3]["timestamp"] is None
    assert rows[2]["latency"] == 50.0
    # `id` is not renamed to dataset_id because dataset_id already exists.
    assert "id" in info.column_names


async def test_db_import_joins_a_dataset_side_keyed_by_an_alias_like_the_sync(
    store: DuckDBStore, pg: PgSchema, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """``record_id`` is the record key of the dataset side (§8.2 alias), as in the sync's view."""
    pg.execute("CREATE TABLE ds (record_id text, query text)")
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_score float8)")
    pg.execute("INSERT INTO ds VALUES ('a', 'q-a'), ('b', 'q-b')")
    pg.execute("INSERT INTO rs VALUES ('a', 'm1', 0.9), ('b', 'm1', 0.7), ('b', 'm2', 0.5)")
    _write_split_queries(tmp_path, pg)
    res = await ms.import_monitoring_from_db(store, make_settings())
    info = await store.get_dataset(res.dataset_id)
    rows = await store.fetch(f"SELECT dataset_id, metric_name, query FROM {quote_ident(info.table_name)} ORDER BY 1, 2")
    assert rows.rows == [("a", "m1", "q-a"), ("b", "m1", "q-b"), ("b", "m2", "q-b")]


async def test_db_import_joins_the_sides_on_a_custom_map_target_that_is_an_id_alias(
    store: DuckDBStore, pg: PgSchema, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """``columns: {conv: id}`` makes conv the record id (§8.1 step 3: custom map, then the alias table) on
    both sides, so the dataset side joins: its environment and latency reach the stored rows."""
    pg.execute("CREATE TABLE ds (conv text, env text, lat int)")
    pg.execute("CREATE TABLE rs (conv text, metric_name text, metric_score float8)")
    pg.execute("INSERT INTO ds VALUES ('a', 'prod', 100), ('b', 'dev', 300)")
    pg.execute("INSERT INTO rs VALUES ('a', 'm', 0.9), ('b', 'm', 0.1), ('b', 'n', 0.6)")
    _write_split_queries(tmp_path, pg)
    cfg = tmp_path / "custom" / "config" / "monitoring_db.yaml"
    for target in ("id", "Record ID", "dataset_id"):
        cfg.write_text(cfg.read_text().split("  columns:")[0] + f"  columns:\n    conv: '{target}'\n    lat: latency\n")
        res = await ms.import_monitoring_from_db(store, make_settings())
        info = await store.get_dataset(res.dataset_id)
        rows = await store.fetch(
            f"SELECT dataset_id, metric_name, environment, latency FROM {quote_ident(info.table_name)} ORDER BY 1, 2"
        )
        assert rows.rows == [("a", "m", "prod", 100.0), ("b", "m", "dev", 300.0), ("b", "n", "dev", 300.0)], target


async def test_db_import_joins_integer_and_text_ids_and_reads_interval_latency(
    store: DuckDBStore, pg: PgSchema, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """dataset_id int on the dataset side, text on the results side ('abc' cannot be an int): joined by
    text (was a 500); a PostgreSQL interval latency lands in ms (was NULL)."""
    pg.execute("CREATE TABLE ds (dataset_id int, query text)")
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_score float8, latency interval)")
    pg.execute("INSERT INTO ds VALUES (1, 'q1'), (2, 'q2')")
    pg.execute(
        "INSERT INTO rs VALUES ('1', 'm', 0.5, interval '1.5 seconds'), ('2', 'm', 0.7, interval '250 milliseconds'), "
        "('abc', 'm', 0.1, NULL)"
    )
    _write_split_queries(tmp_path, pg, " ORDER BY dataset_id")
    res = await ms.import_monitoring_from_db(store, make_settings())
    assert res.row_count == 3
    info = await store.get_dataset(res.dataset_id)
    rows = await store.fetch(f"SELECT dataset_id, query, latency FROM {quote_ident(info.table_name)} ORDER BY 1")
    assert rows.rows == [("1", "q1", 1500.0), ("2", "q2", 250.0), ("abc", None, None)]


async def test_db_import_joins_numeric_ids_to_text_ids(
    store: DuckDBStore, pg: PgSchema, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """NUMERIC ids (they land as DOUBLE) against text ids join by number, not by '1.0' = '1' text."""
    pg.execute("CREATE TABLE ds (dataset_id numeric(10,0), query text)")
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_score float8)")
    pg.execute("INSERT INTO ds VALUES (1, 'q1'), (2, 'q2')")
    pg.execute("INSERT INTO rs VALUES ('1', 'm', 0.5), ('2', 'm', 0.7), ('x', 'm', 0.1)")
    _write_split_queries(tmp_path, pg)
    res = await ms.import_monitoring_from_db(store, make_settings())
    info = await store.get_dataset(res.dataset_id)
    rows = await store.fetch(f"SELECT dataset_id, query FROM {quote_ident(info.table_name)} ORDER BY 1")
    assert rows.rows == [("1", "q1"), ("2", "q2"), ("x", None)]


async def test_db_import_legacy_table_and_errors(
    store: DuckDBStore, pg: PgSchema, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    pg.execute("CREATE TABLE mon (record_id int, relevance_score text)")
    pg.execute("INSERT INTO mon VALUES (1, '0.5'), (2, 'n/a')")
    cfg_dir = tmp_path / "custom" / "config"
    base = f"monitoring_db:\n  host: {pg.host}\n  port: {pg.port}\n  database: {pg.database}\n  username: {pg.user}\n"
    _write_yaml(cfg_dir, base + f"  schema: {pg.schema}\n  table: mon\n")
    before = utc_now()
    res = await ms.import_monitoring_from_db(store, make_settings())
    assert res.message == "Imported 2 records from mon" and res.metric_columns == ["relevance_score"]
    assert [r["relevance_score"] for r in response_rows(res)] == [0.5, None]
    assert res.data == []  # the rows arrive rendered by the store (RowsPayload.with_rows)
    assert all(dt.datetime.fromisoformat(r["timestamp"]) >= before for r in response_rows(res))
    _write_yaml(cfg_dir, base + f"  schema: {pg.schema}\n  table: mon\n  row_limit: 1\n")
    res = await ms.import_monitoring_from_db(store, make_settings())
    assert res.message == (
        f"Imported 1 records from mon; the table {pg.schema}.mon returned more than row_limit (1) rows: "
        "raise row_limit to import them all"
    )
    _write_yaml(cfg_dir, base)
    with pytest.raises(Invalid, match="No queries configured"):
        await ms.import_monitoring_from_db(store, make_settings())
    bad_query = "  dataset_query: SELECT 1 AS dataset_id\n  results_query: SELECT * FROM nope_missing\n"
    _write_yaml(cfg_dir, base + bad_query)
    with pytest.raises(Invalid) as err:
        await ms.import_monitoring_from_db(store, make_settings())
    assert err.value.message == 'Import failed in results_query: relation "nope_missing" does not exist'
    _write_yaml(cfg_dir, "monitoring_db:\n  host: 127.0.0.1\n  port: 1\n  database: x\n  table: t\n")
    with pytest.raises(Invalid, match="Could not connect"):
        await ms.import_monitoring_from_db(store, make_settings())
    with pytest.raises(Invalid, match="not configured"):
        await ms.import_monitoring_from_db(store, make_settings(axis_custom_dir=tmp_path / "none"))


async def test_process_upper_cases_metric_category(store: DuckDBStore) -> None:
    res, (_, rows) = await _process(
        store,
        "SELECT * FROM (VALUES ('a', ' score ', 0.5), ('b', 'Classification', NULL), ('c', '', 0.1)) "
        "t(dataset_id, metric_category, relevance_score)",
    )
    assert [r[1] for r in rows] == ["SCORE", "CLASSIFICATION", None]
    assert res.extra == {"metric_columns": ["relevance_score"], "category_normalised": True}


async def test_long_format_is_stored_by_category_metric_newest_first(store: DuckDBStore) -> None:
    def run(cur: Any) -> list[Any]:
        cur.execute(
            "CREATE OR REPLACE TABLE src AS SELECT * FROM (VALUES "
            "('r1', 'score', 'relevance', 0.5, TIMESTAMP '2026-01-01 10:00'), "
            "('r2', 'Analysis', 'notes', NULL, TIMESTAMP '2026-01-03 10:00'), "
            "('r3', 'SCORE', 'relevance', 0.7, TIMESTAMP '2026-01-02 10:00'), "
            "('r4', 'analysis', 'notes', NULL, TIMESTAMP '2026-01-05 10:00'), "
            "('r5', 'SCORE', 'faithfulness', 0.9, TIMESTAMP '2026-01-04 10:00')"
            ") t(dataset_id, metric_category, metric_name, metric_score, timestamp)"
        )
        ms.process_monitoring_sync(cur, "src", "out")
        # Stored (insertion) order, not a query order.
        return [r[0] for r in cur.execute("SELECT dataset_id FROM out LIMIT 10").fetchall()]

    assert await store.run_write(run) == ["r4", "r2", "r5", "r3", "r1"]
