"""Monitoring analytics (spec §9): parameterised DuckDB SQL over a stored monitoring dataset.

Every endpoint resolves its dataset and WHERE clause through :mod:`app.services.monitoring_table`
and answers with single GROUP BY queries.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable, Sequence
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from app.config.constants import Thresholds
from app.config.db_configs import MonitoringDBConfig
from app.errors import Invalid
from app.models.monitoring import (
    AnalysisInsightsResponse,
    AnalysisRecord,
    CategoryCount,
    ClassDistributionGroup,
    ClassDistributionResponse,
    ClassificationBreakdownResponse,
    ClassificationMetric,
    ClassificationTrendPoint,
    ClassificationTrendsResponse,
    CorrelationResponse,
    DistributionStats,
    GroupHistogram,
    GroupStats,
    Histogram,
    LatencyDistributionResponse,
    MetricBreakdownItem,
    MetricBreakdownResponse,
    Percentiles,
    SourceInfo,
    SummaryKpis,
    SummaryResponse,
    TrendPoint,
    TrendsResponse,
)
from app.serialization import decode_json_cell
from app.services.duckdb_store import (
    DatasetInfo,
    DuckDBStore,
    quote_ident,
)
from app.services.monitoring_table import (
    GROUP_BY_ALLOWED,
    MonitoringFilters,
    MonitoringTable,
    Where,
    add_metric_name_filters,
    build_where,
    check_group_by,
    resolve_monitoring_table,
    unpivot_source,
    wide_metrics,
)
from app.services.sql_stats import (
    check_correlation_size,
    mean_sql,
    pair_correlations,
    pearson,
    retry_mean,
    retry_scaled,
    scaled_values_sql,
    std_sql,
)
from app.services.store_paging import keyed_relation

GRANULARITY_UNITS = {"hourly": "hour", "daily": "day", "weekly": "week"}
MAX_RAW_VALUES = 2000
SUMMARY_CACHE_KEY = "monitoring_summary"


def _f(v: Any) -> float | None:
    """A DB number as a finite float or None."""
    if v is None:
        return None
    x = float(v)
    return x if math.isfinite(x) else None


def _pcts(q: Sequence[Any] | None) -> Percentiles:
    if not q:
        return Percentiles()
    return Percentiles(p50=_f(q[0]) or 0.0, p95=_f(q[1]) or 0.0, p99=_f(q[2]) or 0.0)


def _iso(v: Any) -> str:
    return v.isoformat() if isinstance(v, dt.datetime | dt.date) else str(v)


# --------------------------------------------------------------------------- summary
def _scored_source(t: MonitoringTable, where: Where, wide_cols: list[str]) -> str | None:
    """A derived table (c, s, lat, k): category, numeric score, latency, record key.

    Long format: one row per metric row (record key = dataset_id, so latency counts once per
    record, DB-31; rows without a dataset_id belong to no record and have no record latency, as in
    the per-record table). Wide format: the ``*_score`` columns unpivoted (one key per row), each
    row's category from its ``metric_category`` column as in long format (SCORE when absent).
    """
    lat = t.latency_column
    lat_expr = t.num(lat) if lat else "NULL::DOUBLE"
    cat = f"coalesce({t.category()}, 'SCORE')" if t.has("metric_category") else "'SCORE'"
    if t.is_long:
        key = quote_ident("dataset_id") if t.has("dataset_id") else "row_number() OVER ()"
        return (
            f"(SELECT {cat} AS c, {t.num('metric_score')} AS s, {lat_expr} AS lat, {key} AS k "
            f"FROM {t.sql} {where.sql()})"
        )
    if not wide_cols:
        return None
    extra = [("c", cat), ("lat", lat_expr), ("k", "row_number() OVER ()")]
    return unpivot_source(t, wide_cols, extra, where)


async def _fetch_means(
    store: DuckDBStore, sql: Callable[[Callable[[str], str]], str], params: Sequence[Any]
) -> list[tuple[Any, ...]]:
    """Rows of ``sql(mean)``: DuckDB's ``avg`` first, the overflow-safe mean when a sum overflowed."""

    def _run(cur: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
        return retry_mean(lambda mean: cur.execute(sql(mean), list(params)).fetchall())

    return await store.run_read(_run)


def summary_by_category_sync(cur: duckdb.DuckDBPyConnection, t: MonitoringTable, threshold: float) -> dict[str, Any]:
    """Per-category summary KPIs over the whole dataset (SCORE = SCORE or NULL), one GROUP BY."""
    src = _scored_source(t, Where(), t.score_columns)
    if src is None:
        return {}

    def sql(mean: Callable[[str], str]) -> str:
        return f"""
            WITH scored AS (SELECT c, s, lat, k FROM {src} WHERE s IS NOT NULL),
            agg AS (SELECT c, count(*) AS n, {mean("s")} AS a, count(*) FILTER (WHERE s >= ?) AS p
                    FROM scored GROUP BY c),
            rec AS (SELECT c, max(lat) AS lat FROM scored WHERE k IS NOT NULL GROUP BY c, k),
            l AS (SELECT c, quantile_cont(lat, [0.5, 0.95, 0.99]) AS q FROM rec WHERE lat IS NOT NULL GROUP BY c)
            SELECT agg.c, agg.n, agg.a, agg.p, l.q FROM agg LEFT JOIN l USING (c)
        """

    out: dict[str, Any] = {}
    for c, n, a, p, q in retry_mean(lambda mean: cur.execute(sql(mean), [threshold]).fetchall()):
        out[c] = _kpis(n, a, p, q).model_dump()
    return out


def _kpis(n: Any, a: Any, p: Any, q: Sequence[Any] | None) -> SummaryKpis:
    n = int(n or 0)
    if n == 0:
        return SummaryKpis()
    pct = _pcts(q)
    return SummaryKpis(
        total_records=n,
        avg_score=_f(a),
        pass_rate=100.0 * float(p or 0) / n,
        p50_latency=pct.p50,
        p95_latency=pct.p95,
        p99_latency=pct.p99,
    )


# --------------------------------------------------------------------------- per-record table
RECORDS_KEY = "monitoring_records"
RECORD_COLUMNS = ("environment", "source_name", "source_component", "source_type", "evaluation_name", "model_name")
MAX_PIVOT_METRICS = 100


def build_records_sync(cur: duckdb.DuckDBPyConnection, t: MonitoringTable, target: str) -> dict[str, Any]:
    """One row per record (long format): record-level columns, latency once, SCORE metrics pivoted.

    Built once per load so latency and correlation read 1 row per record instead of re-grouping
    every metric row on each request.
    """
    score_cat = f"coalesce({t.category()}, 'SCORE') = 'SCORE'" if t.has("metric_category") else "TRUE"
    names = [
        r[0]
        for r in cur.execute(
            f"SELECT DISTINCT {t.text('metric_name')} AS m FROM {t.sql} WHERE {score_cat} "
            f"AND {t.num('metric_score')} IS NOT NULL AND {quote_ident('metric_name')} IS NOT NULL ORDER BY m LIMIT ?",
            [MAX_PIVOT_METRICS],
        ).fetchall()
    ]
    select = [f"{quote_ident('dataset_id')} AS dataset_id"]
    if t.ts:
        select.append(f'min({t.ts}) AS "timestamp"')
    select += [f"any_value({t.text(c)}) AS {quote_ident(c)}" for c in RECORD_COLUMNS if t.has(c)]
    lat = t.latency_column
    select.append(f"max({t.num(lat)}) AS latency" if lat else "NULL::DOUBLE AS latency")
    select += [
        f"avg({t.num('metric_score')}) FILTER (WHERE {t.text('metric_name')} = ? AND {score_cat}) AS c{i}"
        for i in range(len(names))
    ]
    cur.execute(
        f"CREATE OR REPLACE TABLE {quote_ident(target)} AS SELECT {', '.join(select)} FROM {t.sql} "
        f"WHERE {quote_ident('dataset_id')} IS NOT NULL GROUP BY {quote_ident('dataset_id')}",
        names,
    )
    columns = DuckDBStore.describe_sync(cur, target)
    return {
        "table": target,
        "loaded_at": t.info.loaded_at.isoformat(),
        "metrics": {n: f"c{i}" for i, n in enumerate(names)},
        "columns": columns,
    }


async def records_table(store: DuckDBStore, t: MonitoringTable) -> tuple[MonitoringTable, dict[str, str]] | None:
    """The dataset's per-record table (built on first use after each load), or None for wide data."""
    if not (t.is_long and t.has("dataset_id")):
        return None
    meta = await store.get_metadata(t.info.table_name)
    entry = meta.get(RECORDS_KEY) or {}
    if entry.get("loaded_at") != t.info.loaded_at.isoformat():
        target = f"{t.info.table_name}__records"

        def _build(cur: duckdb.DuckDBPyConnection) -> tuple[dict[str, Any], dict[str, Any] | None]:
            # Built and recorded in one write: a request cancelled meanwhile (its client went away)
            # cannot leave a table built but unrecorded, which the next request would build again.
            built = build_records_sync(cur, t, target)
            return built, DuckDBStore.update_metadata_sync(cur, t.info.table_name, {RECORDS_KEY: built})

        entry, recorded = await store.run_write(_build)
        if recorded is not None:
            store.cache_metadata(t.info.table_name, recorded)
    info = dataclasses.replace(t.info, table_name=entry["table"], columns=entry["columns"])
    return MonitoringTable.of(info), dict(entry["metrics"])


SUMMARY_PASS_THRESHOLD = Thresholds.PASSING_RATE  # §9.2: /summary and summary_stats use a fixed 0.5


def _record_level(f: MonitoringFilters, config: MonitoringDBConfig, *, allow_metrics: bool = False) -> bool:
    """True when the filters only touch record-level columns, so the per-record table answers exactly.

    Not with a time window: a record's rows can carry different timestamps, and the window selects
    rows (the per-record table keeps one timestamp per record).
    """
    return (
        not f.metric_name
        and not f.time_start
        and not f.time_end
        and not config.visible_metrics
        and (allow_metrics or not f.metrics)
        and (f.metric_category or "SCORE").strip().upper() == "SCORE"
        and (allow_metrics or not f.metric_category)
    )


async def refresh_summary_cache(store: DuckDBStore, info: DatasetInfo) -> dict[str, Any]:
    """Compute per-category summary stats for a dataset and store them in its metadata (DB-29)."""
    t = MonitoringTable.of(info)
    threshold = SUMMARY_PASS_THRESHOLD
    stats = await store.run_read(lambda cur: summary_by_category_sync(cur, t, threshold))
    entry = {"loaded_at": info.loaded_at.isoformat(), "threshold": threshold, "by_category": stats}
    await store.update_metadata(info.table_name, {SUMMARY_CACHE_KEY: entry})
    return entry


async def summary(store: DuckDBStore, config: MonitoringDBConfig, f: MonitoringFilters) -> SummaryResponse:
    """KPIs: record count, mean score, pass rate (percent, scores ≥ 0.5) and latency percentiles (per record).

    The pass threshold is fixed (§9.2); configured thresholds apply to the metric breakdown only (DB-28).
    """
    t = await resolve_monitoring_table(store, f.dataset_id)
    threshold = SUMMARY_PASS_THRESHOLD
    category = (f.metric_category or "SCORE").strip().upper()
    fast = not f.has_row_filters() and not config.visible_metrics
    if fast:
        meta = await store.get_metadata(t.info.table_name)
        entry: dict[str, Any] = meta.get(SUMMARY_CACHE_KEY) or {}
        fresh = entry.get("loaded_at") == t.info.loaded_at.isoformat()
        if not (fresh and entry.get("threshold") == threshold):
            entry = await refresh_summary_cache(store, t.info)
        stats = entry["by_category"].get(category)
        kpis = SummaryKpis(**stats) if stats else SummaryKpis()
        return SummaryResponse(kpis=kpis, dataset_id=t.info.dataset_id, threshold=threshold, cached=True)
    where = build_where(t, f, config, default_category="SCORE")
    src = _scored_source(t, where, wide_metrics(t, f))
    if src is None:
        return SummaryResponse(kpis=SummaryKpis(), dataset_id=t.info.dataset_id, threshold=threshold)

    def sql(mean: Callable[[str], str]) -> str:
        return f"""
            WITH scored AS (SELECT s, lat, k FROM {src} WHERE s IS NOT NULL),
            agg AS (SELECT count(*) AS n, {mean("s")} AS a, count(*) FILTER (WHERE s >= ?) AS p FROM scored),
            l AS (SELECT quantile_cont(lat, [0.5, 0.95, 0.99]) AS q
                  FROM (SELECT max(lat) AS lat FROM scored WHERE k IS NOT NULL GROUP BY k) WHERE lat IS NOT NULL)
            SELECT agg.n, agg.a, agg.p, l.q FROM agg, l
        """

    row = (await _fetch_means(store, sql, [*where.params, threshold]))[0]
    return SummaryResponse(kpis=_kpis(*row), dataset_id=t.info.dataset_id, threshold=threshold)


# --------------------------------------------------------------------------- trends
async def trends(
    store: DuckDBStore, config: MonitoringDBConfig, f: MonitoringFilters, granularity: str = "daily"
) -> TrendsResponse:
    """Per-bucket, per-metric mean, percentiles and count (weeks start Monday)."""
    unit = GRANULARITY_UNITS.get(granularity)
    if unit is None:
        raise Invalid("granularity must be one of hourly, daily, weekly")
    t = await resolve_monitoring_table(store, f.dataset_id)
    ts = t.ts
    empty = TrendsResponse(data=[], metrics=[], granularity=granularity, dataset_id=t.info.dataset_id)
    if ts is None:
        return empty
    where = build_where(t, f, config, default_category="SCORE")
    if t.is_long:
        src = (
            f"(SELECT {ts} AS _ts, {t.text('metric_name')} AS metric, {t.num('metric_score')} AS s "
            f"FROM {t.sql} {where.sql()})"
        )
    else:
        cols = wide_metrics(t, f)
        if not cols:
            return empty
        src = unpivot_source(t, cols, [("_ts", ts)], where)

    def sql(mean: Callable[[str], str]) -> str:
        return f"""
            SELECT date_trunc('{unit}', _ts) AS b, metric, {mean("s")}, quantile_cont(s, [0.5, 0.95, 0.99]), count(s)
            FROM {src} WHERE s IS NOT NULL AND isfinite(_ts) AND metric IS NOT NULL
            GROUP BY b, metric ORDER BY b, metric
        """

    rows = await _fetch_means(store, sql, where.params)
    data = [
        TrendPoint(timestamp=_iso(b), metric=m, avg=_f(a), p50=_f(q[0]), p95=_f(q[1]), p99=_f(q[2]), count=int(n))
        for b, m, a, q, n in rows
    ]
    return TrendsResponse(
        data=data, metrics=sorted({p.metric for p in data}), granularity=granularity, dataset_id=t.info.dataset_id
    )


# --------------------------------------------------------------------------- metric breakdown
async def metric_breakdown(
    store: DuckDBStore,
    config: MonitoringDBConfig,
    f: MonitoringFilters,
    threshold: float | None = None,
    group_by: str | None = None,
) -> MetricBreakdownResponse:
    """Per-metric pass rate (percent), mean and count; optional per-group split in the same query."""
    t = await resolve_monitoring_table(store, f.dataset_id)
    grp = check_group_by(t, group_by)
    thr = threshold if threshold is not None else config.thresholds.pass_threshold(f.source_name)
    where = build_where(t, f, config, default_category="SCORE")
    g_expr = t.text(grp) if grp else "NULL::VARCHAR"
    if t.is_long:
        src = (
            f"(SELECT {t.text('metric_name')} AS metric, {t.num('metric_score')} AS s, {g_expr} AS g "
            f"FROM {t.sql} {where.sql()})"
        )
    else:
        cols = wide_metrics(t, f)
        if not cols:
            return MetricBreakdownResponse(metrics=[], threshold=thr, dataset_id=t.info.dataset_id)
        src = unpivot_source(t, cols, [("g", g_expr)], where)
    sets = "GROUPING SETS ((metric), (metric, g))" if grp else "metric"
    grouping = "GROUPING(g)" if grp else "1"

    def sql(mean: Callable[[str], str]) -> str:
        return f"""
            SELECT metric, {"g" if grp else "NULL"} AS g, {grouping} AS only_metric,
                   100.0 * count(*) FILTER (WHERE s >= ?) / count(*), {mean("s")}, count(*)
            FROM {src} WHERE s IS NOT NULL AND metric IS NOT NULL
            GROUP BY {sets} ORDER BY metric, g NULLS FIRST
        """

    rows = await _fetch_means(store, sql, [thr, *where.params])
    items: dict[str, MetricBreakdownItem] = {}
    groups: list[tuple[str, str, GroupStats]] = []
    for metric, g, only_metric, rate, avg, n in rows:
        if only_metric:
            items[metric] = MetricBreakdownItem(
                name=metric, pass_rate=_f(rate), avg=_f(avg), count=int(n), by_group={} if grp else None
            )
        elif g is not None:
            groups.append((metric, g, GroupStats(pass_rate=_f(rate), avg=_f(avg), count=int(n))))
    for metric, g, stats in groups:
        bg = items[metric].by_group
        if bg is not None:
            bg[g] = stats
    return MetricBreakdownResponse(metrics=list(items.values()), threshold=thr, dataset_id=t.info.dataset_id)


# --------------------------------------------------------------------------- latency
def histogram_edges(lo: float, hi: float, bins: int) -> list[float]:
    """§9.3 edges ``lo + i·(hi − lo)/bins``; when ``hi − lo`` leaves the double range, the same edges
    from halved values (an exact scaling), so they stay finite."""
    span = hi - lo
    if math.isfinite(span):
        width = span / bins
        return [lo + i * width for i in range(bins + 1)]
    half = (hi / 2 - lo / 2) / bins
    return [2 * (lo / 2 + i * half) for i in range(bins + 1)]


async def latency_distribution(
    store: DuckDBStore, config: MonitoringDBConfig, f: MonitoringFilters, bins: int = 20, group_by: str | None = None
) -> LatencyDistributionResponse:
    """Histogram (max value in the last bin) and percentiles of per-record latency (DB-31)."""
    if not 5 <= bins <= 100:
        raise Invalid("bins must be between 5 and 100")
    t = await resolve_monitoring_table(store, f.dataset_id)
    grp = check_group_by(t, group_by)
    lat = t.latency_column
    empty = LatencyDistributionResponse(
        histogram=Histogram(counts=[], edges=[]), percentiles=Percentiles(), dataset_id=t.info.dataset_id
    )
    if lat is None:
        return empty
    dedupe = t.is_long and t.has("dataset_id")
    if dedupe and _record_level(f, config) and (grp is None or grp in RECORD_COLUMNS):
        rec = await records_table(store, t)
        if rec is not None:
            t, dedupe, lat = rec[0], False, "latency"
    where = build_where(t, f, config)
    g_expr = t.text(grp) if grp else "NULL::VARCHAR"
    key = quote_ident("dataset_id") if dedupe else "NULL"
    base = f"SELECT {key} AS k, {g_expr} AS g, {t.num(lat)} AS v FROM {t.sql} {where.sql()}"
    # Latency once per record in long format (DB-31); wide rows are records already.
    r_all = (
        "SELECT max(v) AS v FROM base WHERE v IS NOT NULL AND k IS NOT NULL GROUP BY k"
        if dedupe
        else "SELECT v FROM base WHERE v IS NOT NULL"
    )
    r_grp = (
        "SELECT g, max(v) AS v FROM base WHERE v IS NOT NULL AND g IS NOT NULL AND k IS NOT NULL GROUP BY g, k"
        if dedupe
        else "SELECT g, v FROM base WHERE v IS NOT NULL AND g IS NOT NULL"
    )
    # §9.3: clamp(floor((v − lo)/(hi − lo)·bins) + 1, 1, bins). A span below one ulp (a constant latency
    # past 2^53, where lo + 1 == lo) puts every value in bin 1; a span past the double range (hi − lo
    # = inf) is taken over halved values, an exact scaling, so no NaN reaches the BIGINT cast.
    ratio = (
        "CASE WHEN hi <= lo THEN 0.0 WHEN isfinite(hi - lo) THEN (v - lo) / (hi - lo) "
        "ELSE (v / 2 - lo / 2) / (hi / 2 - lo / 2) END"
    )
    bucket = f"LEAST(GREATEST(CAST(floor({ratio} * ?) AS BIGINT) + 1, 1), ?)"
    sql_all = f"""
        WITH base AS ({base}), r AS MATERIALIZED ({r_all}),
        b AS (SELECT min(v) AS lo, CASE WHEN max(v) = min(v) THEN min(v) + 1 ELSE max(v) END AS hi,
                     count(v) AS n, quantile_cont(v, [0.5, 0.95, 0.99]) AS q FROM r)
        SELECT {bucket} AS bk, count(*), any_value(lo), any_value(hi), any_value(q) FROM r, b GROUP BY bk"""
    sql_grp = f"""
        WITH base AS ({base}), r AS MATERIALIZED ({r_grp}), b AS (SELECT ?::DOUBLE AS lo, ?::DOUBLE AS hi),
        gp AS (SELECT g, quantile_cont(v, [0.5, 0.95, 0.99]) AS q FROM r GROUP BY g)
        SELECT g, {bucket} AS bk, count(*), any_value(gp.q) FROM r JOIN gp USING (g), b GROUP BY g, bk ORDER BY g"""
    params = where.params

    def _run(cur: duckdb.DuckDBPyConnection) -> tuple[Any, list[Any], list[Any], list[Any]]:
        hist = cur.execute(sql_all, [*params, bins, bins]).fetchall()
        if not hist:
            return None, [], [], []
        lo, hi, q = float(hist[0][2]), float(hist[0][3]), hist[0][4]
        ghist: list[Any] = []
        if grp:
            ghist = cur.execute(sql_grp, [*params, lo, hi, bins, bins]).fetchall()
        gpct = list({g: (g, gq) for g, _, _, gq in ghist}.values())
        return (lo, hi, 1, q), [(bk, n) for bk, n, *_ in hist], [(g, bk, n) for g, bk, n, _ in ghist], gpct

    stats, hist, ghist, gpct = await store.run_read(_run)
    if not stats or not stats[2]:
        return empty
    lo, hi = float(stats[0]), float(stats[1])
    counts = [0] * bins
    for b, n in hist:
        counts[int(b) - 1] = int(n)
    by_group: dict[str, GroupHistogram] | None = None
    if grp:
        by_group = {g: GroupHistogram(counts=[0] * bins, percentiles=_pcts(q)) for g, q in gpct}
        for g, b, n in ghist:
            by_group[g].counts[int(b) - 1] = int(n)
    return LatencyDistributionResponse(
        histogram=Histogram(counts=counts, edges=histogram_edges(lo, hi, bins)),
        percentiles=_pcts(stats[3]),
        by_group=by_group,
        dataset_id=t.info.dataset_id,
    )


# --------------------------------------------------------------------------- class distribution
def _middle(a: float, b: float) -> float:
    """The median of the two middle values: one of them when equal (an odd count), else their mean
    rounded once; halved first only when the sum overflows (halving a subnormal would round it)."""
    a, b = float(a), float(b)  # Python floats: an overflowing sum is inf without a numpy warning
    if a == b:
        return a
    total = a + b
    return total / 2.0 if math.isfinite(total) else a / 2.0 + b / 2.0


def _sorted_group_values(groups: pa.Table) -> list[tuple[str, int, Any, Any, float, float, float, list[float]]]:
    """Per group (g, n, mean, std, min, max, median, values-or-sketch) from ``g, n, a, sd, s`` rows.

    ``s`` holds the group's values unsorted; they are sorted once (NaN last, as DuckDB orders
    them). The median is DuckDB's ``(s[(n+1)//2] + s[(n+2)//2]) / 2`` (1-based, :func:`_middle`) and the sketch keeps
    positions ``1, 1+k, 1+2k, …`` and ``n`` with ``k = ceil((n-1)/(cap-1))``.
    """
    lists = groups.column("s").combine_chunks()
    offsets = lists.offsets.to_numpy()
    flat = lists.values.to_numpy(zero_copy_only=False)
    out = []
    rows = zip(*(groups.column(c).to_pylist() for c in ("g", "n", "a", "sd")), strict=True)
    for i, (g, n, a, sd) in enumerate(rows):
        values = np.sort(flat[offsets[i] : offsets[i + 1]])
        median = _middle(values[(n + 1) // 2 - 1], values[(n + 2) // 2 - 1])
        if n <= MAX_RAW_VALUES:
            sketch = values
        else:
            step = math.ceil((n - 1) / (MAX_RAW_VALUES - 1))
            sketch = values[np.append(np.arange(0, n - 1, step), n - 1)]
        out.append((str(g), int(n), a, sd, float(values[0]), float(values[-1]), float(median), sketch.tolist()))
    return out


async def class_distribution(
    store: DuckDBStore, config: MonitoringDBConfig, f: MonitoringFilters, metric: str, group_by: str
) -> ClassDistributionResponse:
    """Per-group values (capped) and stats of one numeric column, or of one metric in long format."""
    t = await resolve_monitoring_table(store, f.dataset_id)
    if group_by not in GROUP_BY_ALLOWED:
        raise Invalid(f"Invalid group_by: {group_by}. Allowed: {', '.join(GROUP_BY_ALLOWED)}")
    if not t.has(group_by):
        raise Invalid(f"Missing group_by column: {group_by}")
    if t.has(metric):
        value_expr = t.num(metric)
        where = build_where(t, f, config, default_category="SCORE" if metric == "metric_score" else None)
    elif t.is_long:
        value_expr = t.num("metric_score")
        where = build_where(t, f, config, default_category="SCORE")
        where.add(f"{t.text('metric_name')} = ?", metric)
    else:
        raise Invalid(f"Missing metric column: {metric}")
    # DuckDB filters, groups and aggregates; each group's values come back as one Arrow list and are
    # sorted with numpy (DuckDB's list sort cost 2-3 x the whole query). min, max and median come
    # from the sorted values; values are all of them up to the cap, else an evenly spaced sorted
    # sketch that keeps min and max (DB-32).
    values = f"SELECT {t.text(group_by)} AS g, {value_expr} AS v FROM {t.sql} {where.sql()}"
    if metric == t.latency_column and t.is_long and t.has("dataset_id"):
        # Latency once per record (its largest), as /latency-distribution counts it (DB-31).
        values = (
            f"SELECT g, max(v) AS v FROM (SELECT {t.text(group_by)} AS g, {value_expr} AS v, "
            f"{quote_ident('dataset_id')} AS k FROM {t.sql} {where.sql()}) WHERE k IS NOT NULL GROUP BY g, k"
        )

    def _sql(scaled: bool) -> str:
        src = scaled_values_sql(values, "v", "g") if scaled else values
        return f"""
            SELECT g, count(v) AS n, {mean_sql("v", scaled)} AS a, coalesce({std_sql("v", scaled)}, 0) AS sd,
                   list(v) AS s
            FROM ({src}) WHERE v IS NOT NULL AND g IS NOT NULL GROUP BY g ORDER BY g
        """

    groups = await store.run_read(
        lambda cur: retry_scaled(
            lambda scaled: _sorted_group_values(cur.execute(_sql(scaled), where.params).to_arrow_table())
        )
    )
    if not groups and not t.has(metric):  # long data: is it a metric name at all?
        known = await store.fetch(f"SELECT 1 FROM {t.sql} WHERE {t.text('metric_name')} = ? LIMIT 1", [metric])
        if not known.rows:
            raise Invalid(f"Missing metric column: {metric} (neither a column nor a metric_name value)")
    data = [
        ClassDistributionGroup(
            group=g,
            values=sketch,
            values_truncated=n > MAX_RAW_VALUES,
            stats=DistributionStats(mean=_f(a), std=_f(sd), min=_f(mn), max=_f(mx), median=_f(md), count=n),
        )
        for g, n, a, sd, mn, mx, md, sketch in groups
    ]
    return ClassDistributionResponse(data=data, metric=metric, group_by=group_by, dataset_id=t.info.dataset_id)


# --------------------------------------------------------------------------- correlation
async def correlation(
    store: DuckDBStore, config: MonitoringDBConfig, f: MonitoringFilters, metrics: str
) -> CorrelationResponse:
    """Pairwise-complete Pearson matrix over columns, or over metric names pivoted per record."""
    names = list(dict.fromkeys(m.strip() for m in metrics.split(",") if m.strip()))
    t = await resolve_monitoring_table(store, f.dataset_id)
    if len(names) < 2:
        return CorrelationResponse(matrix=[], metrics=[], dataset_id=t.info.dataset_id)
    cols = [n for n in names if t.has(n)]
    where = build_where(t, f, config, apply_metric_name=False)
    if len(cols) >= 2:
        valid = cols
        src = f"(SELECT {', '.join(f'{t.num(c)} AS c{i}' for i, c in enumerate(valid))} FROM {t.sql} {where.sql()})"
        params: list[Any] = list(where.params)
    elif t.is_long and t.has("dataset_id"):
        rec = await records_table(store, t) if _record_level(f, config, allow_metrics=True) else None
        complete = rec is not None and (len(rec[1]) < MAX_PIVOT_METRICS or all(n in rec[1] for n in names))
        if rec is not None and complete:
            rt, mapping = rec
            # A name is valid when it is a metric_name value (as on the row path below); the per-record
            # table pivots only SCORE metrics with numbers, so the others are all-NULL columns.
            missing = [n for n in names if n not in mapping]
            have = await _metric_names_present(store, t, missing) if missing else set()
            valid = [n for n in names if n in mapping or n in have]
            columns = [quote_ident(mapping[n]) if n in mapping else "NULL::DOUBLE" for n in valid]
            rwhere = build_where(rt, f, config, apply_metric_name=False)
            src = f"(SELECT {', '.join(f'{c} AS c{i}' for i, c in enumerate(columns))} FROM {rt.sql} {rwhere.sql()})"
            return await _corr(store, t, valid, src, rwhere.params)
        where = build_where(t, f, config, default_category="SCORE", apply_metric_name=False)
        have = await _metric_names_present(store, t, names)
        valid = [n for n in names if n in have]
        if len(valid) < 2:
            return CorrelationResponse(matrix=[], metrics=[], dataset_id=t.info.dataset_id)
        pivots = ", ".join(f"avg(s) FILTER (WHERE m = ?) AS c{i}" for i in range(len(valid)))
        src = (
            f"(SELECT {pivots} FROM (SELECT {quote_ident('dataset_id')} AS k, {t.text('metric_name')} AS m, "
            f"{t.num('metric_score')} AS s FROM {t.sql} {where.sql()}) WHERE k IS NOT NULL GROUP BY k)"
        )
        params = [*valid, *where.params]
    else:
        return CorrelationResponse(matrix=[], metrics=[], dataset_id=t.info.dataset_id)
    return await _corr(store, t, valid, src, params)


async def _metric_names_present(store: DuckDBStore, t: MonitoringTable, names: list[str]) -> set[str]:
    """Which of ``names`` are metric_name values of the dataset (any category, any score)."""
    present = await store.fetch(
        f"SELECT DISTINCT {t.text('metric_name')} FROM {t.sql} WHERE list_contains(?, {t.text('metric_name')})",
        [names],
    )
    return {r[0] for r in present.rows}


async def _corr(
    store: DuckDBStore, t: MonitoringTable, valid: list[str], src: str, params: list[Any]
) -> CorrelationResponse:
    """Pearson matrix (undefined → 0.0) of the columns c0..ck-1 of ``src``."""
    if len(valid) < 2:
        return CorrelationResponse(matrix=[], metrics=[], dataset_id=t.info.dataset_id)
    check_correlation_size(len(valid))
    k = len(valid)
    pairs = [(i, j) for i in range(k) for j in range(i, k)]
    cols = [f"c{i}" for i in range(k)]
    row = await store.run_read(lambda cur: pair_correlations(cur, src, cols, pairs, params))
    matrix = [[0.0] * k for _ in range(k)]
    for (i, j), r in zip(pairs, row, strict=True):
        v = pearson(r, i == j)
        matrix[i][j] = matrix[j][i] = v if v is not None else 0.0
    return CorrelationResponse(matrix=matrix, metrics=valid, dataset_id=t.info.dataset_id)


# --------------------------------------------------------------------------- classification
def _category_column(t: MonitoringTable, category_source: str) -> str | None:
    for name in (category_source, "actual_output", "metric_score"):
        if name and t.has(name):
            return name
    return None


async def classification_breakdown(
    store: DuckDBStore,
    config: MonitoringDBConfig,
    f: MonitoringFilters,
    category_source: str = "explanation",
) -> ClassificationBreakdownResponse:
    """Per-metric counts and percentages of CLASSIFICATION labels, one GROUP BY."""
    t = await resolve_monitoring_table(store, f.dataset_id)
    cat = _category_column(t, category_source)
    if cat is None or not t.has("metric_name"):
        return ClassificationBreakdownResponse(metrics=[], dataset_id=t.info.dataset_id)
    where = build_where(t, f, config, category="CLASSIFICATION")
    sql = f"""
        SELECT m, v, count(*) AS n FROM (
            SELECT {t.text("metric_name")} AS m, {t.text(cat)} AS v FROM {t.sql} {where.sql()}
        ) WHERE v IS NOT NULL AND m IS NOT NULL GROUP BY m, v ORDER BY m, n DESC, v
    """
    rows = (await store.fetch(sql, where.params)).rows
    grouped: dict[str, list[tuple[str, int]]] = {}
    for m, v, n in rows:
        grouped.setdefault(m, []).append((v, int(n)))
    out = []
    for m, cats in grouped.items():
        total = sum(n for _, n in cats)
        if total == 0:
            continue
        out.append(
            ClassificationMetric(
                metric_name=m,
                categories=[CategoryCount(value=v, count=n, percentage=round(100.0 * n / total, 1)) for v, n in cats],
                total_count=total,
            )
        )
    return ClassificationBreakdownResponse(metrics=out, dataset_id=t.info.dataset_id)


async def classification_trends(
    store: DuckDBStore,
    config: MonitoringDBConfig,
    f: MonitoringFilters,
    metric_name: str,
    granularity: str = "daily",
    category_source: str = "explanation",
) -> ClassificationTrendsResponse:
    """Counts of each CLASSIFICATION label of one metric per time bucket."""
    unit = GRANULARITY_UNITS.get(granularity)
    if unit is None:
        raise Invalid("granularity must be one of hourly, daily, weekly")
    t = await resolve_monitoring_table(store, f.dataset_id)
    cat = _category_column(t, category_source)
    ts = t.ts
    empty = ClassificationTrendsResponse(
        data=[], metric_name=metric_name, granularity=granularity, unique_categories=[], dataset_id=t.info.dataset_id
    )
    if cat is None or ts is None or not t.has("metric_name"):
        return empty
    scoped = dataclasses.replace(f, metric_name=metric_name)
    where = build_where(t, scoped, config, category="CLASSIFICATION")
    sql = f"""
        SELECT date_trunc('{unit}', _ts) AS b, v, count(*) FROM (
            SELECT {ts} AS _ts, {t.text(cat)} AS v FROM {t.sql} {where.sql()}
        ) WHERE isfinite(_ts) AND v IS NOT NULL GROUP BY b, v ORDER BY b, v
    """
    rows = (await store.fetch(sql, where.params)).rows
    buckets: dict[str, dict[str, int]] = {}
    for b, v, n in rows:
        buckets.setdefault(_iso(b), {})[v] = int(n)
    return ClassificationTrendsResponse(
        data=[ClassificationTrendPoint(timestamp=b, categories=c) for b, c in buckets.items()],
        metric_name=metric_name,
        granularity=granularity,
        unique_categories=sorted({v for _, v, _ in rows}),
        dataset_id=t.info.dataset_id,
    )


# --------------------------------------------------------------------------- analysis insights
ANALYSIS_TEXT_FIELDS = (
    "dataset_id",
    "metric_name",
    "query",
    "actual_output",
    "explanation",
    "environment",
    "source_name",
    "source_component",
)


def _text_or_none(v: Any) -> str | None:
    return str(v) if v else None


async def analysis_insights(
    store: DuckDBStore, config: MonitoringDBConfig, f: MonitoringFilters, page: int = 1, limit: int = 20
) -> AnalysisInsightsResponse:
    """Paged ANALYSIS rows (newest first, only the needed columns) with the metric names available."""
    if page < 1:
        raise Invalid("page must be >= 1")
    if not 1 <= limit <= 100:
        raise Invalid("limit must be between 1 and 100")
    t = await resolve_monitoring_table(store, f.dataset_id)
    where = build_where(t, f, config, category="ANALYSIS")
    names_where = build_where(t, f, config, category="ANALYSIS", apply_metric_name=False)
    projected = [c for c in ANALYSIS_TEXT_FIELDS if t.has(c)]
    select = [f"{t.text(c)} AS {quote_ident(c)}" for c in projected]
    ts = t.ts
    select.append(f"{ts} AS _ts" if ts else "NULL::TIMESTAMP AS _ts")
    # ±infinity as the stored rows render it (Python's datetime would show 9999-12-31T23:59:59.999999)
    select.append(
        f"CASE WHEN NOT isfinite({ts}) THEN CAST({ts} AS VARCHAR) END AS _ts_inf" if ts else "NULL AS _ts_inf"
    )
    if t.has("signals"):
        select.append(f"{t.text('signals')} AS signals")
    # A total order, so pages never overlap or skip rows: the rows of one record share dataset_id and
    # timestamp, so the metric name and then the row key (table rowid; both rowids of a synced view) break ties.
    order = ["_ts DESC NULLS LAST"] + [quote_ident(c) for c in ("dataset_id", "metric_name") if t.has(c)]
    # LIMIT/OFFSET are validated ints written into the SQL, and page 1 has no OFFSET: a bound or zero
    # OFFSET kept DuckDB off its late-materialising top-N plan (~1.7 x the cost on the first page).
    offset = (page - 1) * limit
    page_sql = f"LIMIT {int(limit)}" + (f" OFFSET {int(offset)}" if offset else "")
    # Total (all filters) and the metric names available (metric-name filters excluded) in one scan.
    mw = Where()
    add_metric_name_filters(mw, t, f, config)
    m_expr = t.text("metric_name") if t.has("metric_name") else "NULL::VARCHAR"
    hit = " AND ".join(mw.clauses) if mw.clauses else "TRUE"
    # One hash GROUP BY per metric name (a handful of groups) instead of a DISTINCT list aggregate.
    sql_agg = (
        f"SELECT m, count(*) FILTER (WHERE hit) "
        f"FROM (SELECT {m_expr} AS m, coalesce({hit}, false) AS hit FROM {t.sql} {names_where.sql()}) "
        f"GROUP BY m"
    )

    def _run(cur: duckdb.DuckDBPyConnection) -> tuple[list[dict[str, Any]], int, list[str]]:
        keyed = keyed_relation(cur, t.info.table_name)
        source, keys = (keyed.from_sql, list(keyed.keys)) if keyed else (t.sql, [])
        cur.execute(
            f"SELECT {', '.join(select)} FROM {source} {where.sql()} ORDER BY {', '.join(order + keys)} {page_sql}",
            where.params,
        )
        cols = [d[0] for d in cur.description]
        rows = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
        agg = cur.execute(sql_agg, [*mw.params, *names_where.params]).fetchall()
        total = sum(int(n or 0) for _, n in agg)
        return rows, total, sorted(m for m, _ in agg if m is not None)

    rows, total, names = await store.run_read(_run)
    records = [
        AnalysisRecord(
            dataset_id=_text_or_none(r.get("dataset_id")),
            timestamp=r.get("_ts_inf") or (_iso(r["_ts"]) if r.get("_ts") is not None else None),
            metric_name=_text_or_none(r.get("metric_name")),
            query=_text_or_none(r.get("query")),
            actual_output=_text_or_none(r.get("actual_output")),
            signals=decode_json_cell(r.get("signals")),
            explanation=_text_or_none(r.get("explanation")),
            source_info=SourceInfo(
                environment=_text_or_none(r.get("environment")),
                source_name=_text_or_none(r.get("source_name")),
                source_component=_text_or_none(r.get("source_component")),
            ),
        )
        for r in rows
    ]
    return AnalysisInsightsResponse(
        records=records, total_count=total, page=page, limit=limit, metric_names=names, dataset_id=t.info.dataset_id
    )
