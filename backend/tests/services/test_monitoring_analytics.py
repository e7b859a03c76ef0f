"""Monitoring analytics over real DuckDB tables, checked against independent numpy/python math."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import math
import statistics
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import numpy as np
import pandas as pd
import pytest

from app.config import Settings
from app.config.db_configs import MonitoringDBConfig
from app.errors import Invalid, NotFound, Unavailable
from app.services import monitoring_analytics as ma
from app.services.duckdb_store import DatasetInfo, DuckDBStore, quote_ident, utc_now
from app.services.monitoring_table import MonitoringFilters
from app.services.sync_status import STATUS_PREFIX
from app.services.table_metadata import compute_table_metadata_sync

RNG = np.random.default_rng(7)
N = 60
BASE = dt.datetime(2025, 3, 1, 9, 0)  # a Saturday: weekly buckets must start on Monday


def long_frame() -> pd.DataFrame:
    """60 records × (2 SCORE + 1 CLASSIFICATION + 1 ANALYSIS) rows; metric_score is text."""
    rows: list[dict[str, Any]] = []
    for i in range(N):
        ts = BASE + dt.timedelta(hours=9 * i)
        src = "A" if i % 3 else "B"
        env = "prod" if i % 4 else "staging"
        lat = float(100 + (i * 37) % 500)
        rel = round(float(RNG.uniform(0.2, 1.0)), 3)
        acc = round(float(RNG.uniform(0.1, 1.0)), 3)
        common = {
            "dataset_id": f"r{i:03d}",
            "timestamp": ts,
            "source_name": src,
            "environment": env,
            "latency": lat,
            "query": f"q{i}",
            "actual_output": f"a{i}",
        }
        rows.append(
            {
                **common,
                "metric_name": "relevance",
                "metric_category": "SCORE",
                "metric_score": str(rel),
                "explanation": "ok",
                "signals": None,
            }
        )
        rows.append(
            {
                **common,
                "metric_name": "accuracy",
                "metric_category": None,
                "metric_score": str(acc),
                "explanation": "ok",
                "signals": None,
            }
        )
        rows.append(
            {
                **common,
                "metric_name": "tone",
                "metric_category": "classification",
                "metric_score": "n/a",
                "explanation": ["friendly", "neutral", "rude"][i % 3 if i % 5 else 0],
                "signals": None,
            }
        )
        rows.append(
            {
                **common,
                "metric_name": "summary",
                "metric_category": "ANALYSIS",
                "metric_score": None,
                "explanation": f"analysis {i}",
                "signals": json.dumps({"topic": f"t{i % 4}"}),
            }
        )
    return pd.DataFrame(rows)


async def land_frame(store: DuckDBStore, df: pd.DataFrame, source: str = "test") -> DatasetInfo:
    def build(cur: Any, staging: str) -> None:
        cur.register("src_df", df)
        cur.execute(f"CREATE TABLE {quote_ident(staging)} AS SELECT * FROM src_df")
        cur.unregister("src_df")

    return await store.land_dataset(kind="monitoring", source=source, build=build)


@pytest.fixture
def config(make_settings: Callable[..., Settings], tmp_path: Any) -> MonitoringDBConfig:
    (tmp_path / "custom" / "config").mkdir(parents=True, exist_ok=True)
    (tmp_path / "custom" / "config" / "monitoring_db.yaml").write_text(
        "monitoring_db:\n  thresholds:\n    default: {good: 0.8, pass: 0.6}\n    per_source:\n      B: {pass: 0.75}\n"
    )
    return make_settings().monitoring_db


@pytest.fixture
async def long_ds(store: DuckDBStore) -> tuple[DatasetInfo, pd.DataFrame]:
    df = long_frame()
    return await land_frame(store, df), df


def score_rows(df: pd.DataFrame) -> pd.DataFrame:
    cat = df["metric_category"].fillna("SCORE").str.upper()
    out = df[cat == "SCORE"].copy()
    out["s"] = pd.to_numeric(out["metric_score"], errors="coerce")
    return out[out["s"].notna()]


async def test_no_dataset_is_404_or_503_while_syncing(store: DuckDBStore, config: MonitoringDBConfig) -> None:
    with pytest.raises(NotFound):
        await ma.summary(store, config, MonitoringFilters())
    await store.kv_set(STATUS_PREFIX + "monitoring_data", {"state": "syncing"})
    with pytest.raises(Unavailable, match="syncing"):
        await ma.trends(store, config, MonitoringFilters())


async def test_summary_matches_numpy_and_fast_path_agrees(
    store: DuckDBStore, config: MonitoringDBConfig, long_ds: tuple[DatasetInfo, pd.DataFrame]
) -> None:
    info, df = long_ds
    sc = score_rows(df)
    lat = sc.groupby("dataset_id")["latency"].max().to_numpy()  # one latency per record (DB-31)
    fast = await ma.summary(store, config, MonitoringFilters(metric_category="SCORE"))
    assert fast.cached is True
    assert fast.threshold == 0.5  # fixed (§9.2), although the configured pass threshold is 0.6
    k = fast.kpis
    assert k.total_records == len(sc) == 2 * N
    assert k.avg_score == pytest.approx(sc["s"].mean())
    assert k.pass_rate == pytest.approx(100.0 * (sc["s"] >= 0.5).mean())
    assert k.p50_latency == pytest.approx(np.percentile(lat, 50))
    assert k.p95_latency == pytest.approx(np.percentile(lat, 95))
    assert k.p99_latency == pytest.approx(np.percentile(lat, 99))
    # The same numbers through the filtered SQL path (a filter that keeps everything).
    slow = await ma.summary(store, config, MonitoringFilters(time_start="2000-01-01T00:00:00Z"))
    assert slow.cached is False
    assert slow.kpis.model_dump() == pytest.approx(k.model_dump())
    # The cache lives in the store metadata of the dataset table.
    meta = await store.get_metadata(info.table_name)
    assert meta[ma.SUMMARY_CACHE_KEY]["by_category"]["SCORE"]["total_records"] == 2 * N


async def test_summary_cache_leaves_the_table_metadata_alone(
    store: DuckDBStore, long_ds: tuple[DatasetInfo, pd.DataFrame]
) -> None:
    """The /summary cache is one metadata key, merged under the write lock: it never replaces the
    table's own summary_stats (all categories) nor metadata another load wrote meanwhile."""
    info, _ = long_ds
    newer = {"row_count": 999, "summary_stats": {"total_records": 7}, "filter_values": {"metric_name": ["m9"]}}
    await store.set_metadata(info.table_name, newer)  # a later load/sync replaced the metadata
    entry = await ma.refresh_summary_cache(store, info)
    meta = await store.get_metadata(info.table_name)
    assert {k: meta[k] for k in newer} == newer and meta[ma.SUMMARY_CACHE_KEY] == entry
    persisted = await store.fetch("SELECT metadata_json FROM _store_metadata WHERE table_name = ?", [info.table_name])
    assert json.loads(persisted.rows[0][0]) == meta
    # a table deleted meanwhile gets no metadata row back
    await store.delete_dataset(info.dataset_id)
    await store.update_metadata(info.table_name, {ma.SUMMARY_CACHE_KEY: entry})
    gone = await store.fetch("SELECT count(*) FROM _store_metadata WHERE table_name = ?", [info.table_name])
    assert gone.rows == [(0,)] and await store.get_metadata(info.table_name) == {}


async def test_summary_per_source_threshold_and_filters(
    store: DuckDBStore, config: MonitoringDBConfig, long_ds: tuple[DatasetInfo, pd.DataFrame]
) -> None:
    _, df = long_ds
    sc = score_rows(df)
    b = sc[sc["source_name"] == "B"]
    res = await ma.summary(store, config, MonitoringFilters(source_name="B", environment=None))
    assert res.threshold == 0.5  # §9.2: fixed; B's configured pass 0.75 applies to the breakdown only
    assert res.kpis.total_records == len(b)
    assert res.kpis.pass_rate == pytest.approx(100.0 * (b["s"] >= 0.5).mean())
    assert 100.0 * (b["s"] >= 0.5).mean() != pytest.approx(100.0 * (b["s"] >= 0.75).mean())
    breakdown = await ma.metric_breakdown(store, config, MonitoringFilters(source_name="B"), threshold=None)
    rel = b[b["metric_name"] == "relevance"]
    got = {m.name: m for m in breakdown.metrics}["relevance"]
    assert got.pass_rate == pytest.approx(100.0 * (rel["s"] >= 0.75).mean())
    # Injection-looking values are plain values: no rows, no error.
    res = await ma.summary(store, config, MonitoringFilters(source_name="A' OR '1'='1"))
    assert res.kpis.total_records == 0 and res.kpis.pass_rate == 0.0
    res = await ma.summary(store, config, MonitoringFilters(source_name="%"))
    assert res.kpis.total_records == 0
    # A filter on a column the table lacks is ignored.
    res = await ma.summary(store, config, MonitoringFilters(source_component="x", time_end="2100-01-01"))
    assert res.kpis.total_records == len(sc)
    with pytest.raises(Invalid):
        await ma.summary(store, config, MonitoringFilters(time_start="yesterday; DROP TABLE datasets"))


async def test_trends_weekly_buckets_start_monday(
    store: DuckDBStore, config: MonitoringDBConfig, long_ds: tuple[DatasetInfo, pd.DataFrame]
) -> None:
    _, df = long_ds
    sc = score_rows(df)
    res = await ma.trends(store, config, MonitoringFilters(), "weekly")
    assert res.metrics == ["accuracy", "relevance"]
    sc = sc.assign(week=sc["timestamp"].apply(lambda t: (t - dt.timedelta(days=t.weekday())).date()))
    expected = {}
    for (week, metric), grp in sc.groupby(["week", "metric_name"]):
        v = grp["s"].to_numpy()
        expected[(dt.datetime.combine(week, dt.time()).isoformat(), metric)] = (
            v.mean(),
            np.percentile(v, 50),
            np.percentile(v, 95),
            len(v),
        )
    got = {(p.timestamp, p.metric): (p.avg, p.p50, p.p95, p.count) for p in res.data}
    assert set(got) == set(expected)
    for key, exp in expected.items():
        assert dt.datetime.fromisoformat(key[0]).weekday() == 0
        assert got[key] == pytest.approx(exp)
    hourly = await ma.trends(store, config, MonitoringFilters(metrics="relevance"), "hourly")
    assert {p.metric for p in hourly.data} == {"relevance"}
    assert sum(p.count for p in hourly.data) == N
    with pytest.raises(Invalid):
        await ma.trends(store, config, MonitoringFilters(), "monthly")


async def test_metric_breakdown_group_by_in_one_query(
    store: DuckDBStore, config: MonitoringDBConfig, long_ds: tuple[DatasetInfo, pd.DataFrame]
) -> None:
    _, df = long_ds
    sc = score_rows(df)
    res = await ma.metric_breakdown(store, config, MonitoringFilters(), threshold=0.55, group_by="source_name")
    assert [m.name for m in res.metrics] == ["accuracy", "relevance"]
    for m in res.metrics:
        sub = sc[sc["metric_name"] == m.name]
        assert m.count == len(sub)
        assert m.avg == pytest.approx(sub["s"].mean())
        assert m.pass_rate == pytest.approx(100.0 * (sub["s"] >= 0.55).mean())
        assert m.by_group is not None and set(m.by_group) == {"A", "B"}
        for g, stats in m.by_group.items():
            gs = sub[sub["source_name"] == g]
            assert stats.count == len(gs)
            assert stats.pass_rate == pytest.approx(100.0 * (gs["s"] >= 0.55).mean())
    prod = await ma.metric_breakdown(store, config, MonitoringFilters(environment="prod"), threshold=0.55)
    for m in prod.metrics:
        sub = sc[(sc["metric_name"] == m.name) & (sc["environment"] == "prod")]
        assert (m.count, m.pass_rate) == (len(sub), pytest.approx(100.0 * (sub["s"] >= 0.55).mean()))
    default = await ma.metric_breakdown(store, config, MonitoringFilters())
    assert default.threshold == 0.6 and default.metrics[0].by_group is None
    with pytest.raises(Invalid, match="Invalid group_by"):
        await ma.metric_breakdown(store, config, MonitoringFilters(), group_by="query")
    with pytest.raises(Invalid, match="Invalid group_by"):
        await ma.metric_breakdown(store, config, MonitoringFilters(), group_by='source_name"; DROP TABLE datasets; --')


def spec_histogram(values: np.ndarray, bins: int) -> tuple[list[int], list[float]]:
    lo, hi = float(values.min()), float(values.max())
    if hi == lo:
        hi = lo + 1
    counts = [0] * bins
    for v in values:
        b = min(max(int(np.floor((v - lo) / (hi - lo) * bins)) + 1, 1), bins)
        counts[b - 1] += 1
    return counts, [lo + i * (hi - lo) / bins for i in range(bins + 1)]


async def test_latency_distribution_dedupes_records_and_includes_max(
    store: DuckDBStore, config: MonitoringDBConfig, long_ds: tuple[DatasetInfo, pd.DataFrame]
) -> None:
    _, df = long_ds
    per_record = df.groupby("dataset_id")["latency"].max()
    res = await ma.latency_distribution(store, config, MonitoringFilters(), bins=7, group_by="environment")
    counts, edges = spec_histogram(per_record.to_numpy(), 7)
    assert res.histogram.counts == counts
    assert res.histogram.edges == pytest.approx(edges)
    np_counts, np_edges = np.histogram(per_record.to_numpy(), bins=7)
    assert res.histogram.counts == np_counts.tolist() and res.histogram.edges == pytest.approx(np_edges)
    assert sum(counts) == N  # not 4 × N: latency counted once per record
    assert res.percentiles.p95 == pytest.approx(np.percentile(per_record, 95))
    assert res.by_group is not None
    for env, grp in df.groupby("environment"):
        rec = grp.groupby("dataset_id")["latency"].max().to_numpy()
        g = res.by_group[env]
        assert sum(g.counts) == len(rec)
        assert g.percentiles.p50 == pytest.approx(np.percentile(rec, 50))
        # by_group uses the overall edges
        assert g.counts == np.histogram(rec, bins=np.array(edges))[0].tolist()
    # The per-record table (fast path) and the row-level path (metric filter given) agree.
    rows_path = await ma.latency_distribution(
        store, config, MonitoringFilters(metric_category="SCORE"), bins=7, group_by="environment"
    )
    assert rows_path.model_dump() == res.model_dump()
    meta = await store.get_metadata(long_ds[0].table_name)
    assert meta[ma.RECORDS_KEY]["table"] == f"{long_ds[0].table_name}__records"
    prod = await ma.latency_distribution(store, config, MonitoringFilters(environment="prod", time_end="2025-03-10"))
    sub = df[(df["environment"] == "prod") & (df["timestamp"] <= dt.datetime(2025, 3, 10))]
    assert sum(prod.histogram.counts) == sub["dataset_id"].nunique()
    with pytest.raises(Invalid):
        await ma.latency_distribution(store, config, MonitoringFilters(), bins=3)


async def test_a_request_cancelled_while_the_record_table_builds_still_records_it(
    store: DuckDBStore, config: MonitoringDBConfig, long_ds: tuple[DatasetInfo, pd.DataFrame]
) -> None:
    """A client that goes away cancels GET /api/monitoring/analytics/* (app/request_cancellation.py) by an
    anyio cancel scope, as here. The lazily built per-record table was written (a write is not cut off)
    but its metadata entry was not: every later request built it again under the write lock, for good
    when its clients give up sooner than a build takes."""
    info, df = long_ds
    entered, release = threading.Event(), threading.Event()

    def gate(x: float) -> float:  # holds the build (a DuckDB UDF over the latency column) until released
        entered.set()
        release.wait(30)
        return x

    await store.run_write(lambda cur: cur.create_function("axis_test_gate", gate, ["DOUBLE"], "DOUBLE"))
    view = "ds_gated"
    gated_latency = "SELECT * REPLACE (axis_test_gate(latency) AS latency)"
    await store.execute_write(f"CREATE VIEW {view} AS {gated_latency} FROM {quote_ident(info.table_name)}")
    gated = dataclasses.replace(info, dataset_id="gated", table_name=view, loaded_at=utc_now())
    await store.run_write(lambda cur: DuckDBStore.register_dataset_sync(cur, gated))
    scope = anyio.CancelScope()

    async def request() -> None:
        with scope:
            await ma.latency_distribution(store, config, MonitoringFilters(dataset_id="gated"))

    task = asyncio.create_task(request())
    try:
        assert await anyio.to_thread.run_sync(entered.wait, 30)  # the per-record table is being built
        scope.cancel()
    finally:
        release.set()
    await task
    assert scope.cancelled_caught
    records = f"{view}__records"
    assert await store.table_exists(records)
    entry = (await store.get_metadata(view)).get(ma.RECORDS_KEY) or {}
    assert entry.get("table") == records and entry.get("loaded_at") == gated.loaded_at.isoformat()
    res = await ma.latency_distribution(store, config, MonitoringFilters(dataset_id="gated"))
    assert sum(res.histogram.counts) == df["dataset_id"].nunique()


async def test_latency_distribution_constant_and_absent(store: DuckDBStore, config: MonitoringDBConfig) -> None:
    df = pd.DataFrame({"dataset_id": ["a", "b"], "latency": [5.0, 5.0], "x_score": [0.1, 0.2]})
    await land_frame(store, df)
    res = await ma.latency_distribution(store, config, MonitoringFilters(), bins=5)
    assert res.histogram.edges == pytest.approx([5.0, 5.2, 5.4, 5.6, 5.8, 6.0])
    assert res.histogram.counts == [2, 0, 0, 0, 0]
    await land_frame(store, pd.DataFrame({"dataset_id": ["a"], "x_score": [0.5]}))
    res = await ma.latency_distribution(store, config, MonitoringFilters(), bins=5)
    assert res.histogram.counts == [] and res.percentiles.p50 == 0.0


async def test_class_distribution_stats(
    store: DuckDBStore, config: MonitoringDBConfig, long_ds: tuple[DatasetInfo, pd.DataFrame]
) -> None:
    _, df = long_ds
    sc = score_rows(df)
    res = await ma.class_distribution(store, config, MonitoringFilters(), metric="relevance", group_by="source_name")
    assert [d.group for d in res.data] == ["A", "B"]
    for d in res.data:
        v = sc[(sc["metric_name"] == "relevance") & (sc["source_name"] == d.group)]["s"].tolist()
        assert sorted(d.values) == pytest.approx(sorted(v))
        assert d.stats.count == len(v)
        assert d.stats.mean == pytest.approx(statistics.mean(v))
        assert d.stats.std == pytest.approx(statistics.stdev(v))
        assert d.stats.median == pytest.approx(statistics.median(v))
        assert (d.stats.min, d.stats.max) == (min(v), max(v))
    with pytest.raises(Invalid, match="Missing group_by column"):
        await ma.class_distribution(store, config, MonitoringFilters(), metric="relevance", group_by="model_name")
    with pytest.raises(Invalid, match="Invalid group_by"):
        await ma.class_distribution(store, config, MonitoringFilters(), metric="relevance", group_by="x")


async def test_class_distribution_caps_raw_values(store: DuckDBStore, config: MonitoringDBConfig) -> None:
    n = ma.MAX_RAW_VALUES + 500
    rng = np.random.default_rng(7)
    vals = np.floor(rng.uniform(-300, 700, n)) / 7  # unsorted, with ties and negatives
    small = np.array([3.5, -1.0, 3.5, 2.0])
    await land_frame(
        store,
        pd.DataFrame(
            {
                "dataset_id": [str(i) for i in range(n + len(small))],
                "environment": ["p"] * n + ["q"] * len(small),
                "latency": np.concatenate([vals, small]),
            }
        ),
    )
    res = await ma.class_distribution(store, config, MonitoringFilters(), metric="latency", group_by="environment")
    grp, few = res.data
    # Sketch: sorted positions 1, 1+k, 1+2k, ... and n (1-based), k = ceil((n-1)/(cap-1)) = 2 here.
    ordered = np.sort(vals)
    k = math.ceil((n - 1) / (ma.MAX_RAW_VALUES - 1))
    assert k == 2
    expected = [float(x) for x in ordered[[*range(0, n - 1, k), n - 1]]]
    assert grp.values_truncated and grp.values == expected and len(expected) == 1251
    assert (grp.stats.min, grp.stats.max) == (float(ordered[0]), float(ordered[-1]))
    assert grp.stats.count == n and grp.stats.median == float(np.median(vals))
    assert grp.stats.mean == pytest.approx(float(np.mean(vals)))
    assert grp.stats.std == pytest.approx(float(np.std(vals, ddof=1)))
    # At or under the cap every value comes back, sorted; the median of an even count averages two.
    assert few.group == "q" and not few.values_truncated and few.values == [-1.0, 2.0, 3.5, 3.5]
    assert (few.stats.median, few.stats.count) == (2.75, 4)


async def test_correlation_long_pivots_per_record(
    store: DuckDBStore, config: MonitoringDBConfig, long_ds: tuple[DatasetInfo, pd.DataFrame]
) -> None:
    _, df = long_ds
    sc = score_rows(df)
    wide = sc.pivot(index="dataset_id", columns="metric_name", values="s")
    r = np.corrcoef(wide["relevance"], wide["accuracy"])[0, 1]
    res = await ma.correlation(store, config, MonitoringFilters(), "relevance,accuracy,missing")
    assert res.metrics == ["relevance", "accuracy"]
    assert res.matrix[0][1] == pytest.approx(r) and res.matrix[1][0] == pytest.approx(r)
    assert res.matrix[0][0] == pytest.approx(1.0)
    # Row-level path (explicit category) gives the same matrix as the per-record pivot.
    rows_path = await ma.correlation(store, config, MonitoringFilters(metric_name="relevance"), "relevance,accuracy")
    assert rows_path.matrix[0][1] == pytest.approx(res.matrix[0][1]) and rows_path.matrix[0][0] == pytest.approx(1.0)
    src_a = await ma.correlation(store, config, MonitoringFilters(source_name="A"), "relevance,accuracy")
    wa = score_rows(df[df["source_name"] == "A"]).pivot(index="dataset_id", columns="metric_name", values="s")
    assert src_a.matrix[0][1] == pytest.approx(np.corrcoef(wa["relevance"], wa["accuracy"])[0, 1])
    one = await ma.correlation(store, config, MonitoringFilters(), "relevance")
    assert one.matrix == [] and one.metrics == []


async def test_correlation_leaves_out_rows_without_a_record_on_every_path(
    store: DuckDBStore, config: MonitoringDBConfig
) -> None:
    """Rows with no dataset_id are no record: not pooled into one, with or without a row-level filter."""
    ids = ["a", "a", "b", "b", "c", "c", None, None]
    metric = ["m1", "m2"] * 4
    scores = [0.1, 0.2, 0.5, 0.4, 0.9, 0.95, 0.9, 0.0]
    ts = [dt.datetime(2025, 1, 1 + i) for i in range(8)]
    await land_frame(
        store, pd.DataFrame({"dataset_id": ids, "metric_name": metric, "metric_score": scores, "timestamp": ts})
    )
    r = float(np.corrcoef([0.1, 0.5, 0.9], [0.2, 0.4, 0.95])[0, 1])
    for f in (MonitoringFilters(), MonitoringFilters(time_start="2000-01-01T00:00:00Z")):
        res = await ma.correlation(store, config, f, "m1,m2")
        assert res.metrics == ["m1", "m2"] and res.matrix[0][1] == pytest.approx(r), f


async def test_correlation_wide_pairwise_complete(store: DuckDBStore, config: MonitoringDBConfig) -> None:
    a = [0.1, 0.4, 0.35, 0.8, None, 0.9]
    b = [0.2, 0.5, 0.3, 0.7, 0.6, None]
    c = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    await land_frame(store, pd.DataFrame({"dataset_id": list("abcdef"), "a_score": a, "b_score": b, "c_score": c}))
    res = await ma.correlation(store, config, MonitoringFilters(), "a_score,b_score,c_score")
    complete = [(x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None]
    r = np.corrcoef([p[0] for p in complete], [p[1] for p in complete])[0, 1]
    assert res.matrix[0][1] == pytest.approx(r)
    assert res.matrix[0][2] == 0.0 and res.matrix[2][2] == 0.0  # undefined (constant) → 0.0


async def test_classification_breakdown_and_trends(
    store: DuckDBStore, config: MonitoringDBConfig, long_ds: tuple[DatasetInfo, pd.DataFrame]
) -> None:
    _, df = long_ds
    tone = df[df["metric_name"] == "tone"]
    counts = Counter(tone["explanation"])
    res = await ma.classification_breakdown(store, config, MonitoringFilters(metric_category="SCORE"))
    (m,) = res.metrics  # category forced to CLASSIFICATION whatever the client sends
    assert m.metric_name == "tone" and m.total_count == N
    assert [(c.value, c.count) for c in m.categories] == sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    for c in m.categories:
        assert c.percentage == round(100 * counts[c.value] / N, 1)
    tr = await ma.classification_trends(store, config, MonitoringFilters(), "tone", "daily")
    assert tr.unique_categories == sorted(counts)
    expected: dict[str, Counter[str]] = {}
    for _, row in tone.iterrows():
        day = dt.datetime.combine(row["timestamp"].date(), dt.time()).isoformat()
        expected.setdefault(day, Counter())[row["explanation"]] += 1
    assert {p.timestamp: dict(p.categories) for p in tr.data} == {k: dict(v) for k, v in expected.items()}
    assert [p.timestamp for p in tr.data] == sorted(expected)
    # An unknown category_source falls back to actual_output.
    alt = await ma.classification_breakdown(store, config, MonitoringFilters(), category_source="nope")
    assert alt.metrics[0].categories[0].count == 1


async def test_analysis_insights_pagination(
    store: DuckDBStore, config: MonitoringDBConfig, long_ds: tuple[DatasetInfo, pd.DataFrame]
) -> None:
    _, df = long_ds
    an = df[df["metric_name"] == "summary"].sort_values("timestamp", ascending=False)
    res = await ma.analysis_insights(store, config, MonitoringFilters(), page=2, limit=7)
    assert res.total_count == N and res.page == 2 and res.limit == 7
    assert [r.dataset_id for r in res.records] == an["dataset_id"].tolist()[7:14]
    first = res.records[0]
    assert first.signals == json.loads(an.iloc[7]["signals"])
    assert first.source_info.source_name == an.iloc[7]["source_name"]
    assert first.timestamp == an.iloc[7]["timestamp"].isoformat()
    assert res.metric_names == ["summary"]
    none = await ma.analysis_insights(store, config, MonitoringFilters(metric_name="nope"))
    assert none.total_count == 0 and none.records == [] and none.metric_names == ["summary"]
    last = await ma.analysis_insights(store, config, MonitoringFilters(), page=9, limit=7)
    assert len(last.records) == N - 8 * 7
    with pytest.raises(Invalid):
        await ma.analysis_insights(store, config, MonitoringFilters(), page=0)


async def test_analysis_insights_pages_cover_tied_rows_exactly_once(
    store: DuckDBStore, config: MonitoringDBConfig
) -> None:
    """10 records × 3 ANALYSIS metrics at one timestamp: dataset_id alone does not order them."""
    rows = [
        {
            "dataset_id": f"r{i}",
            "timestamp": BASE,
            "metric_name": f"an{m}",
            "metric_category": "ANALYSIS",
            "metric_score": None,
            "explanation": f"{i}/{m}",
        }
        for i in range(10)
        for m in (3, 1, 2)
    ]
    await land_frame(store, pd.DataFrame(rows))
    seen = []
    for page in range(1, 9):
        res = await ma.analysis_insights(store, config, MonitoringFilters(), page=page, limit=4)
        seen += [(r.dataset_id, r.metric_name) for r in res.records]
    assert seen == sorted((f"r{i}", f"an{m}") for i in range(10) for m in (1, 2, 3))


async def test_analysis_insights_first_page_matches_sorted_rows(
    store: DuckDBStore, config: MonitoringDBConfig, long_ds: tuple[DatasetInfo, pd.DataFrame]
) -> None:
    # Page 1 runs without an OFFSET clause (late-materialising top-N); later pages with one.
    _, df = long_ds
    an = df[df["metric_name"] == "summary"].sort_values("timestamp", ascending=False)
    first = await ma.analysis_insights(store, config, MonitoringFilters(), page=1, limit=7)
    second = await ma.analysis_insights(store, config, MonitoringFilters(), page=2, limit=7)
    assert [r.dataset_id for r in first.records] == an["dataset_id"].tolist()[:7]
    assert [r.dataset_id for r in second.records] == an["dataset_id"].tolist()[7:14]
    assert first.total_count == second.total_count == N and first.metric_names == ["summary"]


async def test_wide_format_trends_and_breakdown(store: DuckDBStore, config: MonitoringDBConfig) -> None:
    ts = [BASE + dt.timedelta(hours=h) for h in (0, 1, 25, 26)]
    df = pd.DataFrame(
        {
            "dataset_id": list("abcd"),
            "timestamp": ts,
            "relevance_score": [0.9, 0.4, 0.7, None],
            "coherence_score": [0.5, 0.6, 0.2, 0.8],
            "latency_ms": [100, 200, 300, 400],
            "environment": ["prod", "prod", "dev", "dev"],
        }
    )
    info = await land_frame(store, df)
    tr = await ma.trends(store, config, MonitoringFilters(dataset_id=info.dataset_id), "daily")
    assert tr.metrics == ["coherence_score", "relevance_score"]
    got = {(p.timestamp[:10], p.metric): (p.avg, p.count) for p in tr.data}
    assert got[("2025-03-01", "relevance_score")] == pytest.approx((0.65, 2))
    assert got[("2025-03-02", "relevance_score")] == pytest.approx((0.7, 1))
    bd = await ma.metric_breakdown(store, config, MonitoringFilters(), threshold=0.5, group_by="environment")
    rel = next(m for m in bd.metrics if m.name == "relevance_score")
    assert rel.count == 3 and rel.pass_rate == pytest.approx(200 / 3)
    assert rel.by_group is not None and rel.by_group["dev"].count == 1
    vals = [0.9, 0.4, 0.7, 0.5, 0.6, 0.2, 0.8]  # every non-null *_score value
    for f in (MonitoringFilters(), MonitoringFilters(time_start="2000-01-01")):
        summ = await ma.summary(store, config, f)
        assert summ.kpis.total_records == 7 and summ.kpis.avg_score == pytest.approx(statistics.mean(vals))
        assert summ.kpis.pass_rate == pytest.approx(100 * sum(v >= 0.5 for v in vals) / 7)
        assert summ.kpis.p50_latency == pytest.approx(250.0)
    dev = await ma.summary(store, config, MonitoringFilters(environment="dev"))
    assert dev.kpis.total_records == 3 and dev.kpis.p50_latency == pytest.approx(350.0)
    lat = await ma.latency_distribution(store, config, MonitoringFilters(), bins=5)
    assert sum(lat.histogram.counts) == 4  # wide: one row per record, latency_ms recognised


async def test_latest_dataset_is_default(store: DuckDBStore, config: MonitoringDBConfig) -> None:
    first = await land_frame(store, pd.DataFrame({"dataset_id": ["a"], "metric_name": ["m"], "metric_score": [0.2]}))
    await land_frame(
        store, pd.DataFrame({"dataset_id": ["a", "b"], "metric_name": ["m", "m"], "metric_score": [0.9, 0.7]})
    )
    latest = await ma.summary(store, config, MonitoringFilters())
    assert latest.kpis.total_records == 2 and latest.kpis.avg_score == pytest.approx(0.8)
    old = await ma.summary(store, config, MonitoringFilters(dataset_id=first.dataset_id))
    assert old.kpis.total_records == 1 and old.kpis.avg_score == pytest.approx(0.2)


async def test_non_finite_and_huge_values(store: DuckDBStore, config: MonitoringDBConfig) -> None:
    """NaN/±inf count as missing; sums of squares beyond the double range do not fail."""
    a = [0.1, float("nan"), 0.35, 0.8, float("inf"), 0.9]
    b = [0.2, 0.5, 0.3, float("-inf"), 0.6, 0.4]
    huge = [1e200, -1e200, 1e200, -1e200, 1e200, -1e200]
    await land_frame(
        store,
        pd.DataFrame(
            {"dataset_id": list("abcdef"), "source_name": list("XXXYYY"), "a_score": a, "b_score": b, "h_score": huge}
        ),
    )
    res = await ma.correlation(store, config, MonitoringFilters(), "a_score,b_score,h_score")
    complete = [(x, y) for x, y in zip(a, b, strict=True) if np.isfinite(x) and np.isfinite(y)]
    assert res.matrix[0][1] == pytest.approx(np.corrcoef(*zip(*complete, strict=True))[0, 1])
    pairs_h = [(x, h / 1e200) for x, h in zip(a, huge, strict=True) if np.isfinite(x)]  # r is scale-invariant
    assert res.matrix[0][2] == pytest.approx(np.corrcoef(*zip(*pairs_h, strict=True))[0, 1])
    dist = await ma.class_distribution(store, config, MonitoringFilters(), metric="a_score", group_by="source_name")
    by = {g.group: g for g in dist.data}
    assert by["X"].stats.count == 2 and by["X"].stats.mean == pytest.approx(statistics.mean([0.1, 0.35]))
    assert by["Y"].stats.std == pytest.approx(statistics.stdev([0.8, 0.9]))
    dist = await ma.class_distribution(store, config, MonitoringFilters(), metric="h_score", group_by="source_name")
    assert {g.group: g.stats.std for g in dist.data} == {
        "X": pytest.approx(statistics.stdev(huge[:3])),
        "Y": pytest.approx(statistics.stdev(huge[3:])),
    }


async def test_values_near_the_double_limit_keep_their_statistics(
    store: DuckDBStore, config: MonitoringDBConfig
) -> None:
    """Scaling is capped at 2^1023 and the median adds halves, so 1e308-sized values stay finite."""
    a = [1e308, 1.7e308, -1e308, 1.5e308]
    b = [0.1, 0.9, 0.4, 0.8]
    await land_frame(
        store,
        pd.DataFrame({"dataset_id": list("wxyz"), "environment": ["p", "p", "d", "d"], "a_score": a, "b_score": b}),
    )
    res = await ma.class_distribution(store, config, MonitoringFilters(), metric="a_score", group_by="environment")
    by = {g.group: g.stats for g in res.data}
    assert by["p"].median == pytest.approx(1.35e308) and by["p"].mean == pytest.approx(1.35e308)
    assert by["d"].mean == pytest.approx(0.25e308)
    assert by["p"].std == pytest.approx(statistics.stdev([1.0, 1.7]) * 1e308)
    assert by["d"].median == pytest.approx(0.25e308)
    corr = await ma.correlation(store, config, MonitoringFilters(), "a_score,b_score")
    scaled = [v / 1e308 for v in a]
    assert corr.matrix[0][1] == pytest.approx(float(np.corrcoef(scaled, b)[0, 1]))
    assert corr.matrix[0][0] == 1.0 and corr.matrix[1][1] == 1.0


async def test_score_means_whose_sums_overflow_stay_finite(store: DuckDBStore, config: MonitoringDBConfig) -> None:
    scores = [1e308, 1e308, 0.5]
    mean = 1e308 / 3 * 2 + 0.5 / 3
    ts = [dt.datetime(2025, 1, 1, 10), dt.datetime(2025, 1, 1, 11), dt.datetime(2025, 1, 1, 12)]
    info = await land_frame(
        store,
        pd.DataFrame({"dataset_id": list("abc"), "metric_name": ["m"] * 3, "metric_score": scores, "timestamp": ts}),
    )
    meta = await store.run_read(lambda cur: compute_table_metadata_sync(cur, info.table_name))
    assert meta["summary_stats"]["avg_score"] == pytest.approx(mean)
    for f in (MonitoringFilters(), MonitoringFilters(time_start="2000-01-01T00:00:00Z")):
        kpis = (await ma.summary(store, config, f)).kpis
        assert kpis.avg_score == pytest.approx(mean) and kpis.total_records == 3, f
    trends = await ma.trends(store, config, MonitoringFilters(), granularity="daily")
    assert [p.avg for p in trends.data] == [pytest.approx(mean)]
    breakdown = await ma.metric_breakdown(store, config, MonitoringFilters())
    assert [m.avg for m in breakdown.metrics] == [pytest.approx(mean)]


async def test_rows_without_a_record_id_have_no_record_latency_in_every_path(
    store: DuckDBStore, config: MonitoringDBConfig
) -> None:
    """Summary (cached and filtered) and latency-distribution agree: id-less rows are no record."""
    rows = [{"dataset_id": None, "latency": lat, "metric_name": "m", "metric_score": 0.5} for lat in (10.0, 20.0, 30.0)]
    rows += [
        {"dataset_id": "x", "latency": 40.0, "metric_name": "m", "metric_score": 0.7},
        {"dataset_id": "y", "latency": 60.0, "metric_name": "m", "metric_score": 0.9},
    ]
    await land_frame(store, pd.DataFrame(rows))
    cached = await ma.summary(store, config, MonitoringFilters())
    filtered = await ma.summary(store, config, MonitoringFilters(time_end="2100-01-01"))
    dist = await ma.latency_distribution(store, config, MonitoringFilters(), bins=5)
    assert cached.cached and not filtered.cached
    assert cached.kpis.p50_latency == filtered.kpis.p50_latency == dist.percentiles.p50 == 50.0  # of [40, 60]
    assert cached.kpis.total_records == 5  # every scored row still counts for the score KPIs
