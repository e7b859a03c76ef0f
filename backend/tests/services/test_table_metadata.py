"""§10.7 metadata: summary_stats equal an independent quantile_cont computation exactly.

The sync's metadata runs over the JOIN view of its two internal tables, so the join must count:
orphan results rows (no dataset row), duplicate dataset ids (a results row counted once per match),
NULL / tied / ±inf / NaN latencies and scores and per-category groups. The definition is monitoring
``/summary``'s (§9.2): finite scores only; latency over scored rows, once per record (``dataset_id``,
its largest latency) in long data (DB-31), finite only.
"""

from __future__ import annotations

import json
import random
from typing import Any

import duckdb
import pytest

from app.services.duckdb_store import bound_ingest_buffers
from app.services.table_metadata import compute_table_metadata_sync

CATEGORY = "coalesce(upper(CAST(metric_category AS VARCHAR)), 'SCORE')"
SCORE = "(CASE WHEN isfinite(TRY_CAST(metric_score AS DOUBLE)) THEN TRY_CAST(metric_score AS DOUBLE) END)"
LATENCY = "(CASE WHEN isfinite(TRY_CAST(latency AS DOUBLE)) THEN TRY_CAST(latency AS DOUBLE) END)"
SCORES = f"count({SCORE}), avg({SCORE}), 100.0 * count(*) FILTER (WHERE {SCORE} >= 0.5) / nullif(count({SCORE}), 0)"
QUANTILES = "coalesce(quantile_cont(lat, [0.5, 0.95, 0.99]), [0.0, 0.0, 0.0])"


def _summary(row: tuple[Any, ...], lat: Any) -> dict[str, Any]:
    lat = lat or [0.0, 0.0, 0.0]
    return {
        "total_records": int(row[0] or 0),
        "avg_score": float(row[1]) if row[1] is not None else 0.0,
        "pass_rate": float(row[2]) if row[2] is not None else 0.0,
        "p50_latency": float(lat[0] or 0.0),
        "p95_latency": float(lat[1] or 0.0),
        "p99_latency": float(lat[2] or 0.0),
    }


def _reference(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, Any]:
    """Scores per row; latency of each record (dataset_id) once, its largest, over scored rows."""
    records = (
        f"SELECT {{c}} max({LATENCY}) AS lat FROM {table} WHERE {SCORE} IS NOT NULL AND dataset_id IS NOT NULL "
        "GROUP BY {g} dataset_id"
    )
    overall = con.execute(f"SELECT {SCORES} FROM {table}").fetchone()
    lat = con.execute(f"SELECT {QUANTILES} FROM ({records.format(c='', g='')})").fetchone()
    assert overall is not None and lat is not None
    by_cat = con.execute(f"SELECT {CATEGORY} AS c, {SCORES} FROM {table} GROUP BY ALL ORDER BY c").fetchall()
    lat_cat = dict(
        con.execute(
            f"SELECT c, quantile_cont(lat, [0.5, 0.95, 0.99]) "
            f"FROM ({records.format(c=f'{CATEGORY} AS c,', g='c,')}) WHERE lat IS NOT NULL GROUP BY c"
        ).fetchall()
    )
    return {
        "summary_stats": _summary(overall, lat[0]),
        "summary_stats_by_category": {r[0]: _summary(r[1:], lat_cat.get(r[0])) for r in by_cat},
    }


def _latency(rnd: random.Random, kind: str) -> float | None:
    if rnd.random() < 0.1:
        return None
    if kind == "ties":
        return rnd.choice([1.5, 2.25, 1e9, -3.0, 0.1])
    if kind == "extreme":
        return rnd.choice([rnd.random() * 1e3, 1e-300, 1.7e308, float("inf"), float("-inf"), float("nan"), -0.0])
    return rnd.random() * 1000


def _build(con: duckdb.DuckDBPyConnection, seed: int, n: int, kind: str) -> None:
    rnd = random.Random(seed)
    con.execute("CREATE OR REPLACE TABLE d (dataset_id VARCHAR, latency DOUBLE, environment VARCHAR)")
    con.execute(
        "CREATE OR REPLACE TABLE r (dataset_id VARCHAR, metric_name VARCHAR, metric_score VARCHAR, "
        'metric_category VARCHAR, "timestamp" TIMESTAMP)'
    )
    dataset = [
        [f"k{rnd.randint(0, max(1, n // 2))}", _latency(rnd, kind), rnd.choice(["prod", None])] for _ in range(n)
    ]
    results = [
        [
            f"k{rnd.randint(0, n)}",  # keys above n // 2 are orphans
            rnd.choice(["a", "b"]),
            rnd.choice([str(rnd.random()), "YES", None, *(["NaN", "-Infinity"] if kind == "extreme" else [])]),
            rnd.choice(["score", "classification", None]),
            f"2024-01-0{rnd.randint(1, 9)} 00:00:00",
        ]
        for _ in range(3 * n)
    ]
    con.executemany("INSERT INTO d VALUES (?, ?, ?)", dataset)
    con.executemany("INSERT INTO r VALUES (?, ?, ?, ?, ?)", results)
    con.execute(
        "CREATE OR REPLACE VIEW v AS SELECT r.*, d.latency, d.environment FROM r JOIN d ON r.dataset_id = d.dataset_id"
    )


@pytest.mark.parametrize("kind", ["spread", "ties", "extreme"])
def test_view_metadata_latency_quantiles_equal_quantile_cont(kind: str) -> None:
    con = duckdb.connect()
    for seed in range(25):
        _build(con, seed, random.Random(seed).choice([1, 2, 3, 7, 40, 400]), kind)
        joined = con.execute("SELECT count(*) FROM v").fetchone()
        orphans = con.execute("SELECT count(*) FROM r ANTI JOIN d USING (dataset_id)").fetchone()
        dupes = con.execute("SELECT count(*) - count(DISTINCT dataset_id) FROM d").fetchone()
        assert joined and orphans and dupes is not None
        for table in ("v", "d", "r"):
            meta = compute_table_metadata_sync(con.cursor(), table)
            if table == "d":  # no metric_score: no summary at all
                assert "summary_stats" not in meta
                continue
            ref = _reference(con, table) if table == "v" else None
            if ref is not None:
                got = {k: meta[k] for k in ref}
                # json: -0.0 / 0.0 and every other float compared by its repr
                assert json.dumps(got, sort_keys=True) == json.dumps(ref, sort_keys=True), (seed, kind)
            assert meta["row_count"] == (joined[0] if table == "v" else 3 * len(con.execute("FROM d").fetchall()))


def _without_averages(meta: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(meta))
    for stats in [out.get("summary_stats"), *out.get("summary_stats_by_category", {}).values()]:
        if stats:
            stats.pop("avg_score")
            stats.pop("pass_rate")
    return out


@pytest.mark.parametrize("kind", ["spread", "ties", "extreme"])
def test_metadata_over_parts_equals_the_whole_view(kind: str) -> None:
    """The join split by dataset rowid (the sync's large-dataset path) gives the whole view's metadata."""
    con = duckdb.connect()
    for seed in range(6):
        _build(con, seed, random.Random(seed).choice([1, 7, 40, 400]), kind)
        whole = compute_table_metadata_sync(con.cursor(), "v")
        for n in (2, 7):
            parts = [
                "(SELECT r.*, d.latency, d.environment FROM r JOIN d ON r.dataset_id = d.dataset_id "
                f"WHERE hash(d.dataset_id) % {n} = {k}) AS p"
                for k in range(n)
            ]
            split = compute_table_metadata_sync(con.cursor(), "v", parts)
            # counts, value lists, time range and latency quantiles exactly
            assert json.dumps(_without_averages(split), sort_keys=True) == json.dumps(
                _without_averages(whole), sort_keys=True
            ), (seed, kind, n)
            pairs = [(split["summary_stats"], whole["summary_stats"])] + [
                (split["summary_stats_by_category"][c], s) for c, s in whole["summary_stats_by_category"].items()
            ]
            for got, want in pairs:
                assert got["avg_score"] == pytest.approx(want["avg_score"], rel=1e-12, abs=1e-15)
                assert got["pass_rate"] == pytest.approx(want["pass_rate"], rel=1e-12)
        temp = con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone()
        assert temp == (0,)  # the parts' scratch tables are dropped


def test_view_metadata_counts_join_multiplicity() -> None:
    """Duplicate dataset ids repeat results rows; orphan results rows are not counted."""
    con = duckdb.connect()
    con.execute("CREATE TABLE d AS SELECT * FROM (VALUES ('a', 10.0), ('a', 30.0), ('b', 20.0)) t(dataset_id, latency)")
    con.execute(
        "CREATE TABLE r AS SELECT * FROM (VALUES ('a', '0.9', 'SCORE'), ('b', '0.1', 'SCORE'), "
        "('zzz', '1.0', 'SCORE')) t(dataset_id, metric_score, metric_category)"
    )
    con.execute("CREATE VIEW v AS SELECT r.*, d.latency FROM r JOIN d USING (dataset_id)")
    meta = compute_table_metadata_sync(con.cursor(), "v")
    assert meta["row_count"] == 3  # a×2 + b, the orphan 'zzz' dropped
    stats = meta["summary_stats"]
    assert stats["total_records"] == 3
    assert stats["avg_score"] == pytest.approx((0.9 + 0.9 + 0.1) / 3)
    assert (stats["p50_latency"], stats["p95_latency"]) == (20.0, pytest.approx(29.0))
    assert meta["summary_stats_by_category"]["SCORE"] == stats


def test_metadata_means_whose_sums_overflow_agree_over_parts() -> None:
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE t AS SELECT * FROM (VALUES ('a', 1.7e308, 'SCORE'), ('b', 1.7e308, 'SCORE'), "
        "('c', 1.0, 'SCORE'), ('d', 1.0, 'SCORE')) v(dataset_id, metric_score, metric_category)"
    )
    parts = [f"(SELECT * FROM t WHERE dataset_id {op} 'b') AS _p" for op in ("<=", ">")]
    whole = compute_table_metadata_sync(con.cursor(), "t")
    split = compute_table_metadata_sync(con.cursor(), "t", parts)
    for meta in (whole, split):
        assert meta["summary_stats"]["avg_score"] == pytest.approx(1.7e308 / 2)
        assert meta["summary_stats_by_category"]["SCORE"]["avg_score"] == pytest.approx(1.7e308 / 2)


def test_ingest_buffer_bound_is_session_only() -> None:
    con = duckdb.connect()
    staging, other = con.cursor(), con.cursor()
    bound_ingest_buffers(staging)
    setting = "SELECT current_setting('write_buffer_row_group_count')"
    assert staging.execute(setting).fetchone() == (1,)
    assert other.execute(setting).fetchone() != (1,)
