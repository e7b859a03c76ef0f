"""Evaluation metric statistics (spec §5) as parameterised DuckDB SQL.

Rows come from a stored ``eval`` dataset (``dataset_id`` or the latest) or from inline records
registered as a temporary Arrow relation; both go through the same SQL. Long-format data
(``metric_name`` + ``metric_score``) is read as (metric, value) pairs directly and pivoted by
``metric_name`` per record for correlation and scatter; wide data is unpivoted the other way.
Every statistic is one query with one GROUP BY (DB-16).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import duckdb
import numpy as np

from app.config.constants import Columns, Thresholds
from app.errors import Invalid
from app.models.analytics import (
    AnalyticsBody,
    ComparisonResponse,
    CorrelationResponse,
    DistributionResponse,
    RadarResponse,
    ScatterResponse,
    SummaryResponse,
)
from app.services.data_processor import (
    EXTRA_METRIC_NAMES,
    EXTRA_RECORD_COUNT,
    EXTRA_RECORD_KEYS,
    column_types,
    is_numeric_type,
    long_metric_names,
    record_keys_sync,
    records_to_arrow,
)
from app.services.duckdb_store import ORDINAL, DuckDBStore, quote_ident
from app.services.sql_stats import (
    check_correlation_size,
    finite_double,
    mean_sql,
    pair_correlations,
    pearson,
    retry_scaled,
    scaled_values_sql,
    std_sql,
)

Source = Literal["auto", "body", "store"]
# A request body: a raw list of rows, the ``{data, metrics, dataset_id}`` object, or nothing.
RequestBody = list[dict[str, Any]] | AnalyticsBody | None

INLINE_RELATION = "__axis_analytics_rows"
SCATTER_POINT_CAP = 20_000
DISTRIBUTION_VALUE_CAP = 10_000
MAX_BINS = 200


# ------------------------------------------------------------------------------------ inputs
def parse_metrics(*values: Any) -> list[str] | None:
    """Merge ``metrics`` given as repeated params, CSV, a JSON array string or a list (DB-15).

    Every value is split on commas unless it is a JSON array, the form for names with commas. No
    name in any form (``[]``, empty, absent) means "not given": the endpoint's default metrics.
    """
    out: list[str] = []

    def _add(item: Any) -> None:
        if item is None:
            return
        if isinstance(item, (list, tuple)):
            for sub in item:
                _add(sub)
            return
        text = str(item).strip()
        if not text:
            return
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as exc:
                raise Invalid(f"metrics is not a valid JSON array: {exc.msg}") from None
            except RecursionError:
                raise Invalid("metrics is not a valid JSON array: it is nested too deeply") from None
            if not isinstance(parsed, list):
                raise Invalid("metrics JSON must be an array of names")
            for p in parsed:
                if str(p).strip() and str(p).strip() not in out:
                    out.append(str(p).strip())
            return
        for part in text.split(","):
            name = part.strip()
            if name and name not in out:
                out.append(name)

    for v in values:
        _add(v)
    return out or None


@dataclass
class AnalyticsInput:
    """Normalised request: inline rows (maybe empty), dataset id, source choice."""

    rows: list[dict[str, Any]]
    dataset_id: str | None = None
    source: Source = "auto"


def parse_body(body: Any) -> tuple[list[dict[str, Any]], list[str] | None, str | None]:
    """Body as a raw list of rows or ``{data, metrics, dataset_id}``; returns (rows, metrics, dataset_id)."""
    if body is None:
        return [], None, None
    if isinstance(body, list):
        return _rows(body), None, None
    if isinstance(body, dict):
        rows = _rows(body.get("data") or [])
        metrics = parse_metrics(body.get("metrics"))
        ds = body.get("dataset_id")
        return rows, metrics, str(ds) if ds else None
    raise Invalid("Body must be a list of rows or an object with 'data'")


def build_input(
    body: RequestBody, *, dataset_id: str | None, source: Source, query_metrics: list[str] | None
) -> tuple[AnalyticsInput, list[str] | None]:
    """Request → (input, metrics): query metrics and body metrics merged; query dataset_id wins."""
    rows, body_metrics, body_ds = parse_body(body.model_dump() if isinstance(body, AnalyticsBody) else body)
    metrics = parse_metrics(query_metrics, body_metrics)
    return AnalyticsInput(rows=rows, dataset_id=dataset_id or body_ds, source=source), metrics


def _rows(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise Invalid("'data' must be a list of JSON objects")
    return value


# ------------------------------------------------------------------------------------ relation
@dataclass
class Relation:
    """A readable relation and what its columns mean."""

    name: str
    types: dict[str, str]
    long: bool
    cached_metrics: list[str] | None = None
    cached_records: int | None = None
    cached_keys: list[str] | None = None

    def has(self, column: str) -> bool:
        """True when the column exists (exact name)."""
        return column in self.types

    @property
    def q(self) -> str:
        """Quoted relation name."""
        return quote_ident(self.name)

    def record_keys(self, cur: duckdb.DuckDBPyConnection) -> list[str]:
        """Columns identifying one record of long data (cached at load time for stored data)."""
        if self.cached_keys is None or not all(k in self.types for k in self.cached_keys):
            self.cached_keys, self.cached_records = record_keys_sync(cur, self.name, self.types)
        return self.cached_keys

    def wide_metric_columns(self) -> list[str]:
        """Numeric, non-index columns of wide data."""
        return [
            c for c, t in self.types.items() if is_numeric_type(t) and c not in Columns.INDEX_COLUMNS and c != ORDINAL
        ]


def _relation(cur: duckdb.DuckDBPyConnection, name: str, extra: dict[str, Any] | None = None) -> Relation:
    types = column_types(cur, name)
    extra = extra or {}
    metrics = extra.get(EXTRA_METRIC_NAMES)
    records = extra.get(EXTRA_RECORD_COUNT)
    keys = extra.get(EXTRA_RECORD_KEYS)
    return Relation(
        name=name,
        types=types,
        long={"metric_name", "metric_score"} <= set(types),
        cached_metrics=list(metrics) if isinstance(metrics, list) else None,
        cached_records=int(records) if isinstance(records, int) else None,
        cached_keys=[str(k) for k in keys] if isinstance(keys, list) else None,
    )


async def run_on_source(
    store: DuckDBStore, inp: AnalyticsInput, fn: Callable[[duckdb.DuckDBPyConnection, Relation], dict[str, Any]]
) -> dict[str, Any]:
    """Run ``fn(cursor, relation)`` over inline rows or the stored dataset, in a worker thread.

    The result gains ``dataset_id``: the stored dataset analysed, None for inline rows.
    """
    use_body = inp.source == "body" or (inp.source == "auto" and bool(inp.rows) and not inp.dataset_id)
    if use_body:
        rows = inp.rows
        if not rows:
            raise Invalid("source=body needs rows in the request body")
        if not any(rows):
            raise Invalid("No rows to analyse: send a non-empty list of row objects, or use source=store")

        def _inline(cur: duckdb.DuckDBPyConnection) -> dict[str, Any]:
            cur.register(INLINE_RELATION, records_to_arrow(rows, ordinal=False))
            try:
                return fn(cur, _relation(cur, INLINE_RELATION))
            finally:
                cur.unregister(INLINE_RELATION)

        return {**await store.run_read(_inline), "dataset_id": None}
    info = await store.resolve_dataset("eval", inp.dataset_id)

    def _stored(cur: duckdb.DuckDBPyConnection) -> dict[str, Any]:
        # Metric names and record count cached at load time (same values the live SQL computes).
        return fn(cur, _relation(cur, info.table_name, info.extra))

    return {**await store.run_read(_stored), "dataset_id": info.dataset_id}


# ------------------------------------------------------------------------------------ SQL builders
def available_metrics(cur: duckdb.DuckDBPyConnection, rel: Relation) -> list[str]:
    """Metric names: numeric wide columns, or metric_name values with at least one numeric score."""
    if not rel.long:
        return rel.wide_metric_columns()
    if rel.cached_metrics is None:
        rel.cached_metrics = long_metric_names(cur, rel.name)
    return rel.cached_metrics


def record_count(cur: duckdb.DuckDBPyConnection, rel: Relation) -> int:
    """Number of records: rows of wide data, distinct record keys of long data."""
    if rel.cached_records is not None:
        return rel.cached_records
    if rel.long:
        rel.cached_keys, records = record_keys_sync(cur, rel.name, rel.types)
    else:
        row = cur.execute(f"SELECT count(*) FROM {rel.q}").fetchone()
        records = int(row[0]) if row else 0
    rel.cached_records = records
    return records


VAL = "__axis_v"
METRIC = "__axis_m"
_METRIC_PREFIX = "__axis_p"
_UNPIVOT_NAME = "__axis_un"
_UNPIVOT_VALUE = "__axis_uv"


def extra_alias(i: int) -> str:
    """Name of the i-th ``extra`` column in :func:`values_sql` output."""
    return f"__axis_e{i}"


def metric_alias(i: int) -> str:
    """Name of the i-th metric column in :func:`wide_sql` output.

    Positional, because metric names are data: ``Acc`` and ``acc`` are one identifier to DuckDB,
    and a metric may be named like a key column.
    """
    return f"{_METRIC_PREFIX}{i}"


def values_sql(rel: Relation, metrics: Sequence[str], extra: Sequence[str] = ()) -> tuple[str, list[Any]]:
    """SELECT __axis_e<i> (extra columns), __axis_m (metric name), __axis_v (finite value or NULL).

    One row per (record, metric). Internal aliases cannot collide with user column names.
    """
    extra_q = "".join(f"{quote_ident(c)} AS {extra_alias(i)}, " for i, c in enumerate(extra))
    if rel.long:
        marks = ", ".join("?" for _ in metrics)
        sql = (
            f"SELECT {extra_q}CAST(metric_name AS VARCHAR) AS {METRIC}, "
            f"{finite_double('metric_score', try_cast=True)} AS {VAL} FROM {rel.q} "
            f"WHERE CAST(metric_name AS VARCHAR) IN ({marks})"
        )
        return sql, list(metrics)
    # Wide data: one UNPIVOT over plain casts, the finite check applied once to the value column.
    # (A UNION ALL of one SELECT per metric, or a finite check per column, makes DuckDB's planner
    # quadratic in the number of columns: 3,000 inline columns took minutes and 11 GB.)
    if not metrics:
        return f"SELECT {extra_q}NULL::VARCHAR AS {METRIC}, NULL::DOUBLE AS {VAL} FROM {rel.q} WHERE false", []
    inner = ", ".join(
        [
            *(f"{quote_ident(c)} AS {extra_alias(i)}" for i, c in enumerate(extra)),
            *(f"CAST({quote_ident(m)} AS DOUBLE) AS {metric_alias(i)}" for i, m in enumerate(metrics)),
        ]
    )
    on = ", ".join(metric_alias(i) for i in range(len(metrics)))
    extras = "".join(f"{extra_alias(i)}, " for i in range(len(extra)))
    index = f"CAST(substr({_UNPIVOT_NAME}, {len(_METRIC_PREFIX) + 1}) AS INTEGER) + 1"
    sql = (
        f"SELECT {extras}list_extract(CAST(? AS VARCHAR[]), {index}) AS {METRIC}, "
        f"CASE WHEN isfinite({_UNPIVOT_VALUE}) THEN {_UNPIVOT_VALUE} END AS {VAL} "
        f"FROM (SELECT {inner} FROM {rel.q}) UNPIVOT INCLUDE NULLS ({_UNPIVOT_VALUE} FOR {_UNPIVOT_NAME} IN ({on}))"
    )
    return sql, [list(metrics)]


def wide_sql(
    cur: duckdb.DuckDBPyConnection, rel: Relation, metrics: Sequence[str], extra: Sequence[str] = ()
) -> tuple[str, list[Any]]:
    """One row per record: extra column i as ``__axis_e<i>``, metric i as DOUBLE ``__axis_p<i>`` (finite or NULL).

    Long data is pivoted by metric_name over the record keys; without keys all rows are one record.
    Only internal aliases are selected, so no user column name can shadow them.
    """
    if not rel.long:
        cols = [
            *(f"{quote_ident(c)} AS {extra_alias(i)}" for i, c in enumerate(extra)),
            *(f"{finite_double(quote_ident(m))} AS {metric_alias(i)}" for i, m in enumerate(metrics)),
        ]
        return f"SELECT {', '.join(cols)} FROM {rel.q}", []
    keys = rel.record_keys(cur)
    select = [
        f"{quote_ident(c) if c in keys else f'any_value({quote_ident(c)})'} AS {extra_alias(i)}"
        for i, c in enumerate(extra)
    ]
    params: list[Any] = []
    score = finite_double("metric_score", try_cast=True)
    for i, m in enumerate(metrics):
        select.append(f"avg({score}) FILTER (WHERE CAST(metric_name AS VARCHAR) = ?) AS {metric_alias(i)}")
        params.append(m)
    group = f" GROUP BY {', '.join(quote_ident(k) for k in keys)}" if keys else ""
    return f"SELECT {', '.join(select)} FROM {rel.q}{group}", params


def _choices(names: Iterable[str], limit: int = 20) -> str:
    """``names`` for an error message: the first ``limit`` of them, quoted."""
    names = list(names)
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return (shown + f" and {len(names) - limit} more" if len(names) > limit else shown) or "none"


def _check_column(rel: Relation, column: str, label: str) -> None:
    if not rel.has(column):
        raise Invalid(f"{label} '{column}' not found; columns: {_choices(rel.types)}")


def _resolve_metrics(cur: duckdb.DuckDBPyConnection, rel: Relation, requested: list[str] | None) -> list[str]:
    """Requested metrics that exist and are numeric (order kept), or every available metric."""
    if requested is None:
        return available_metrics(cur, rel)
    if rel.long:
        available = set(available_metrics(cur, rel))
        return [m for m in requested if m in available]
    return [m for m in requested if m in rel.types and is_numeric_type(rel.types[m])]


def _require_metric(cur: duckdb.DuckDBPyConnection, rel: Relation, name: str, label: str) -> None:
    """400 unless ``name`` is a metric with numeric values (the message lists the metrics there are)."""
    if rel.long:
        available = available_metrics(cur, rel)
        if name not in available:
            raise Invalid(f"{label} '{name}' not found; metrics: {_choices(available)}")
        return
    if name not in rel.types or not is_numeric_type(rel.types[name]):
        numeric = [c for c, t in rel.types.items() if is_numeric_type(t)]
        problem = "not found" if name not in rel.types else "is not numeric"
        raise Invalid(f"{label} '{name}' {problem}; numeric columns: {_choices(numeric)}")


def _f(value: Any) -> float | None:
    return None if value is None else float(value)


# ------------------------------------------------------------------------------------ endpoints
async def summary(
    store: DuckDBStore, body: RequestBody = None, *, dataset_id: str | None = None, source: Source = "auto"
) -> SummaryResponse:
    """Per metric: mean, sample std (0 when n<2), min, max, count, passing_rate (≥ 0.5); total_records."""
    inp, _ = build_input(body, dataset_id=dataset_id, source=source, query_metrics=None)

    def _fn(cur: duckdb.DuckDBPyConnection, rel: Relation) -> dict[str, Any]:
        metrics = available_metrics(cur, rel)
        total = record_count(cur, rel)
        if not metrics:
            return {"summary": [], "total_records": total}
        vals, params = values_sql(rel, metrics)

        def _run(scaled: bool) -> list[Any]:
            src = scaled_values_sql(vals, VAL, METRIC) if scaled else vals
            return cur.execute(
                f"SELECT {METRIC}, {mean_sql(VAL, scaled)}, coalesce({std_sql(VAL, scaled)}, 0), min({VAL}), "
                f"max({VAL}), count({VAL}), "
                f"avg(CASE WHEN {VAL} >= ? THEN 1.0 ELSE 0.0 END) FILTER (WHERE {VAL} IS NOT NULL) "
                f"FROM ({src}) GROUP BY {METRIC} HAVING count({VAL}) > 0",
                [Thresholds.PASSING_RATE, *params],
            ).fetchall()

        by_name = {r[0]: r for r in retry_scaled(_run)}
        out = []
        for m in metrics:
            r = by_name.get(m)
            if r is None:
                continue
            out.append(
                {
                    "metric_name": m,
                    "mean": _f(r[1]),
                    "std": _f(r[2]) if int(r[5]) >= 2 else 0.0,
                    "min": _f(r[3]),
                    "max": _f(r[4]),
                    "count": int(r[5]),
                    "passing_rate": _f(r[6]),
                }
            )
        return {"summary": out, "total_records": total}

    return SummaryResponse(**await run_on_source(store, inp, _fn))


# Widest bin range, relative to |v|, that still separates 201 edges around a huge constant value.
_MIN_RELATIVE_WIDTH = 2.0**-40


def histogram_edges(lo: float | None, hi: float | None, bins: int) -> list[float]:
    """Equal-width edges: ``bins + 1`` values; min == max → [v−0.5, v+0.5]; no data → [0, 1].

    When v is so large that v ± 0.5 rounds back to v, the range widens to v·(1 ± 2⁻⁴¹) so
    the bins keep a width; when hi − lo overflows, the step is computed from halves.
    """
    if lo is None or hi is None:
        lo, hi = 0.0, 1.0
    elif lo == hi:
        half = max(0.5, abs(lo) * _MIN_RELATIVE_WIDTH / 2)
        lo, hi = lo - half, hi + half
    if math.isfinite(hi - lo):
        return [float(x) for x in np.linspace(lo, hi, bins + 1)]
    half_step = (hi / 2 - lo / 2) / bins  # halves: i · step may overflow too
    return [*((lo / 2 + i * half_step) * 2 for i in range(bins)), hi]


async def distribution(
    store: DuckDBStore,
    body: RequestBody = None,
    *,
    metric: str,
    bins: int = 20,
    dataset_id: str | None = None,
    source: Source = "auto",
) -> DistributionResponse:
    """Values (capped), histogram (last bin right-closed) and mean/median/std/q25/q75 of one metric."""
    inp, _ = build_input(body, dataset_id=dataset_id, source=source, query_metrics=None)
    if not 1 <= bins <= MAX_BINS:
        raise Invalid(f"bins must be between 1 and {MAX_BINS}")

    def _fn(cur: duckdb.DuckDBPyConnection, rel: Relation) -> dict[str, Any]:
        _require_metric(cur, rel, metric, "Metric")
        vals, params = values_sql(rel, [metric])

        def _run(scaled: bool) -> Any:
            src = scaled_values_sql(vals, VAL, METRIC) if scaled else vals
            return cur.execute(
                f"SELECT count({VAL}), {mean_sql(VAL, scaled)}, quantile_cont({VAL}, 0.5), {std_sql(VAL, scaled)}, "
                f"quantile_cont({VAL}, 0.25), quantile_cont({VAL}, 0.75), min({VAL}), max({VAL}) FROM ({src})",
                params,
            ).fetchone()

        stats = retry_scaled(_run)
        assert stats is not None
        n = int(stats[0])
        edges = histogram_edges(_f(stats[6]), _f(stats[7]), bins)
        counts = [0] * bins
        if n:
            lo, hi = edges[0], edges[-1]
            # numpy.histogram's rule: index by scaling, then correct against the exact edges
            # (halves keep (v − lo) finite when the range spans most of the double range).
            half = 0.5 if not math.isfinite(hi - lo) else 1.0
            norm = bins / (hi * half - lo * half)
            hist = cur.execute(
                f"WITH b AS (SELECT {VAL} AS v, "
                f"least(greatest(CAST(floor(({VAL} * ? - ? * ?) * ?) AS BIGINT), 0), ?) AS i "
                f"FROM ({vals}) WHERE {VAL} IS NOT NULL), "
                "e AS (SELECT ?::DOUBLE[] AS edges) "
                "SELECT CASE WHEN v < edges[i + 1] THEN i - 1 "
                "WHEN i < ? AND v >= edges[i + 2] THEN i + 1 ELSE i END AS bin, count(*) "
                "FROM b, e GROUP BY bin",
                [half, lo, half, norm, bins - 1, *params, edges, bins - 1],
            ).fetchall()
            for b, c in hist:
                counts[min(max(int(b), 0), bins - 1)] += int(c)
        values_rows = cur.execute(
            f"SELECT {VAL} FROM ({vals}) WHERE {VAL} IS NOT NULL LIMIT ?", [*params, DISTRIBUTION_VALUE_CAP]
        ).fetchall()
        values = [float(r[0]) for r in values_rows]
        std = _f(stats[3]) if n >= 2 else 0.0
        return {
            "metric": metric,
            "values": values,
            "values_total": n,
            "values_truncated": n > len(values),
            "histogram": {"counts": counts, "bin_edges": edges},
            "stats": {
                "mean": _f(stats[1]) or 0.0,
                "median": _f(stats[2]) or 0.0,
                "std": std or 0.0,
                "q25": _f(stats[4]) or 0.0,
                "q75": _f(stats[5]) or 0.0,
            },
        }

    return DistributionResponse(**await run_on_source(store, inp, _fn))


GROUP_LABEL = "group"


async def comparison(
    store: DuckDBStore,
    body: RequestBody = None,
    *,
    group_by: str,
    metrics: list[str] | None = None,
    dataset_id: str | None = None,
    source: Source = "auto",
) -> ComparisonResponse:
    """Per group × metric mean / sample std / count in one GROUP BY; null groups dropped.

    Each entry is ``{"group": label, <metric>: stats}``, so a metric named ``group`` cannot be
    shown: asked for explicitly it is a 400, by default it is left out. ``metrics`` (query form)
    is merged with the body's.
    """
    inp, metrics = build_input(body, dataset_id=dataset_id, source=source, query_metrics=metrics)

    def _fn(cur: duckdb.DuckDBPyConnection, rel: Relation) -> dict[str, Any]:
        _check_column(rel, group_by, "Column")
        if metrics is not None and GROUP_LABEL in metrics:
            raise Invalid(
                f"A metric named '{GROUP_LABEL}' cannot be compared: each comparison entry uses that key for "
                "its group label. Leave it out of 'metrics' or rename it"
            )
        resolved = _resolve_metrics(cur, rel, metrics)
        chosen = [m for m in resolved if m != GROUP_LABEL]
        if not chosen:
            clash = f" (the metric '{GROUP_LABEL}' is left out: its name is the group label's key)" if resolved else ""
            raise Invalid(f"No numeric metrics to compare{clash}")
        vals, params = values_sql(rel, chosen, extra=[group_by])
        g = extra_alias(0)

        def _run(scaled: bool) -> list[Any]:
            src = scaled_values_sql(vals, VAL, METRIC) if scaled else vals
            return cur.execute(
                f"SELECT CAST({g} AS VARCHAR) AS __axis_grp, {METRIC}, {mean_sql(VAL, scaled)}, "
                f"coalesce({std_sql(VAL, scaled)}, 0), count({VAL}) FROM ({src}) WHERE {g} IS NOT NULL "
                f"GROUP BY __axis_grp, {METRIC} ORDER BY __axis_grp, {METRIC}",
                params,
            ).fetchall()

        groups: dict[str, dict[str, Any]] = {}
        for grp, m, mean, std, count in retry_scaled(_run):
            entry = groups.setdefault(grp, {GROUP_LABEL: grp})
            if int(count) > 0:
                entry[m] = {"mean": _f(mean), "std": _f(std) if int(count) >= 2 else 0.0, "count": int(count)}
        return {"comparison": list(groups.values()), "metrics": chosen, "groups": list(groups)}

    return ComparisonResponse(**await run_on_source(store, inp, _fn))


async def correlation(
    store: DuckDBStore,
    body: RequestBody = None,
    *,
    metrics: list[str] | None = None,
    dataset_id: str | None = None,
    source: Source = "auto",
) -> CorrelationResponse:
    """Pearson r for every metric pair over pairwise-complete records (DuckDB corr); NaN → null."""
    inp, metrics = build_input(body, dataset_id=dataset_id, source=source, query_metrics=metrics)

    def _fn(cur: duckdb.DuckDBPyConnection, rel: Relation) -> dict[str, Any]:
        chosen = _resolve_metrics(cur, rel, metrics)
        if len(chosen) < 2:
            raise Invalid("Need at least 2 metrics for correlation")
        check_correlation_size(len(chosen))
        wide, params = wide_sql(cur, rel, chosen)
        pairs = [(i, j) for i in range(len(chosen)) for j in range(i, len(chosen))]

        cols = [metric_alias(i) for i in range(len(chosen))]
        row = pair_correlations(cur, f"({wide})", cols, pairs, params)
        matrix: dict[str, dict[str, float | None]] = {m: {} for m in chosen}
        for (i, j), r in zip(pairs, row, strict=True):
            a, b = chosen[i], chosen[j]
            matrix[a][b] = matrix[b][a] = pearson(r, i == j)
        return {"correlation": matrix, "metrics": chosen}

    return CorrelationResponse(**await run_on_source(store, inp, _fn))


async def radar(
    store: DuckDBStore,
    body: RequestBody = None,
    *,
    metrics: list[str] | None = None,
    group_by: str | None = None,
    dataset_id: str | None = None,
    source: Source = "auto",
) -> RadarResponse:
    """AVG per metric per group (or one 'Overall' trace), null → 0.0; one GROUP BY.

    A ``group_by`` column that does not exist gives the 'Overall' trace (spec §5); rows whose group
    value is null are left out, as in comparison.
    """
    inp, metrics = build_input(body, dataset_id=dataset_id, source=source, query_metrics=metrics)

    def _fn(cur: duckdb.DuckDBPyConnection, rel: Relation) -> dict[str, Any]:
        chosen = _resolve_metrics(cur, rel, metrics)
        if len(chosen) < 3:
            raise Invalid("Need at least 3 metrics for radar chart")
        if group_by and rel.has(group_by):
            vals, params = values_sql(rel, chosen, extra=[group_by])
            grp_expr = f"CAST({extra_alias(0)} AS VARCHAR)"
            where = f"WHERE {extra_alias(0)} IS NOT NULL"
        else:
            vals, params = values_sql(rel, chosen)
            grp_expr, where = "'Overall'", ""

        def _run(scaled: bool) -> list[Any]:
            src = scaled_values_sql(vals, VAL, METRIC) if scaled else vals
            return cur.execute(
                f"SELECT {grp_expr} AS __axis_grp, {METRIC}, {mean_sql(VAL, scaled)} FROM ({src}) {where} "
                f"GROUP BY __axis_grp, {METRIC} ORDER BY __axis_grp",
                params,
            ).fetchall()

        rows = retry_scaled(_run)
        traces: dict[str, dict[str, float]] = {}
        for grp, m, mean in rows:
            traces.setdefault(grp, {})[m] = 0.0 if mean is None else float(mean)
        return {
            "metrics": chosen,
            "traces": [{"name": name, "values": [vals_.get(m, 0.0) for m in chosen]} for name, vals_ in traces.items()],
        }

    return RadarResponse(**await run_on_source(store, inp, _fn))


async def scatter(
    store: DuckDBStore,
    body: RequestBody = None,
    *,
    x_metric: str,
    y_metric: str,
    color_by: str | None = None,
    dataset_id: str | None = None,
    source: Source = "auto",
) -> ScatterResponse:
    """x/y pairs with both values present (capped at 20k, reported), optional color and ids."""
    inp, _ = build_input(body, dataset_id=dataset_id, source=source, query_metrics=None)

    def _fn(cur: duckdb.DuckDBPyConnection, rel: Relation) -> dict[str, Any]:
        _require_metric(cur, rel, x_metric, "X metric")
        _require_metric(cur, rel, y_metric, "Y metric")
        color = color_by if color_by and rel.has(color_by) else None
        extra = list(dict.fromkeys(c for c in (color, Columns.DATASET_ID) if c and rel.has(c)))
        metrics = list(dict.fromkeys([x_metric, y_metric]))
        wide, params = wide_sql(cur, rel, metrics, extra=extra)
        x, y = metric_alias(0), metric_alias(metrics.index(y_metric))
        base = f"SELECT * FROM ({wide}) WHERE {x} IS NOT NULL AND {y} IS NOT NULL"
        total_row = cur.execute(f"SELECT count(*) FROM ({base})", params).fetchone()
        total = int(total_row[0]) if total_row else 0
        sel = [x, y]
        if color:
            sel.append(f"CAST({extra_alias(extra.index(color))} AS VARCHAR)")
        has_ids = rel.has(Columns.DATASET_ID)
        if has_ids:
            ids = extra_alias(extra.index(Columns.DATASET_ID))
            sel.append(f"CAST({ids} AS VARCHAR)")
        order = f" ORDER BY {ids}" if has_ids else ""
        if total > SCATTER_POINT_CAP:
            sql = (
                f"SELECT {', '.join(sel)} FROM ({base}) USING SAMPLE reservoir({SCATTER_POINT_CAP} ROWS) "
                "REPEATABLE (42)"
            )
        else:
            sql = f"SELECT {', '.join(sel)} FROM ({base}){order}"
        rows = cur.execute(sql, params).fetchall()
        out: dict[str, Any] = {
            "x": [float(r[0]) for r in rows],
            "y": [float(r[1]) for r in rows],
            "x_metric": x_metric,
            "y_metric": y_metric,
            "total_points": total,
            "truncated": total > len(rows),
            "point_cap": SCATTER_POINT_CAP,
        }
        pos = 2
        if color:
            out["color"] = [r[pos] for r in rows]
            out["color_by"] = color
            pos += 1
        if has_ids:
            out["ids"] = [r[pos] for r in rows]
        return out

    return ScatterResponse(**await run_on_source(store, inp, _fn))
