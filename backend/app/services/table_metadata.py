"""Table metadata (§10.7): row count, columns, filter values, time range, score and latency summaries."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

import duckdb

from app.services.duckdb_store import DuckDBStore, cleanup_quietly, quote_ident, utc_timestamp_sql
from app.services.sql_stats import TOP, finite_double, plain_avg_sql, retry_mean

METADATA_FILTER_FIELDS = (
    "environment",
    "source_name",
    "source_component",
    "source_type",
    "metric_name",
    "metric_category",
    "kpi_name",
    "kpi_category",
)
LATENCY_COLUMNS = ("latency", "latency_ms", "response_time", "duration", "duration_ms")
FILTER_VALUES_CAP = 200


LATENCY_QUANTILES = (0.5, 0.95, 0.99)
_NO_LATENCY = [0.0, 0.0, 0.0]


def _summary_select(x: str, mean: Callable[[str], str] = plain_avg_sql) -> str:
    """Score count, average and pass rate (% of scores >= 0.5) in one scan (``x``: the finite score or NULL)."""
    return f"count({x}), {mean(x)}, 100.0 * count(*) FILTER (WHERE {x} >= 0.5) / nullif(count({x}), 0)"


def _summary_parts(x: str) -> str:
    """Per-part score aggregates that add up: count, sum, sum / 2^1023 and passing count (``sc, ss, sz, sp``)."""
    return f"count({x}) AS sc, sum({x}) AS ss, sum({x} / {TOP}) AS sz, count(*) FILTER (WHERE {x} >= 0.5) AS sp"


# The summary of _summary_select from summed parts (the average to float rounding; when the sum
# leaves the double range, from the scaled sums, as avg_sql does).
_SUMMARY_COMBINED = (
    f"sum(sc), coalesce(CASE WHEN isfinite(sum(ss)) THEN sum(ss) / nullif(sum(sc), 0) END, "
    f"sum(sz) / nullif(sum(sc), 0) * {TOP}), 100.0 * sum(sp) / nullif(sum(sc), 0)"
)


def _over_parts(
    cur: duckdb.DuckDBPyConnection,
    sources: Sequence[str],
    partial: Callable[[str], str],
    combine: Callable[[str], str],
) -> list[Any]:
    """Run ``partial(source)`` for each source (one statement each) into a temp table, then ``combine(table)``.

    One statement per part keeps one part's join hash table in memory at a time (a UNION ALL of
    the parts builds them all at once).
    """
    tmp = quote_ident(f"_axis_parts_{uuid.uuid4().hex[:12]}")
    cur.execute(f"CREATE TEMP TABLE {tmp} AS {partial(sources[0])}")
    try:
        for src in sources[1:]:
            cur.execute(f"INSERT INTO {tmp} {partial(src)}")
        return cur.execute(combine(tmp)).fetchall()
    finally:
        cleanup_quietly(cur, f"DROP TABLE IF EXISTS {tmp}")


def category_sql(column: str) -> str:
    """``metric_category`` as every monitoring statistic compares it: trimmed, upper-cased, blank → NULL
    (NULL is the default SCORE bucket, §9.1). Uploads and imports store it so; synced views are read so."""
    return f"nullif(upper(trim(CAST({column} AS VARCHAR))), '')"


def latency_number_sql(column: str, type_name: str) -> str:
    """A latency column as DOUBLE: an INTERVAL in milliseconds, numbers (or numeric text) finite or NULL."""
    if type_name.upper().startswith("INTERVAL"):
        return f"(epoch({column}) * 1000)"
    return finite_double(column, try_cast=True)


def latency_quantiles_sync(
    cur: duckdb.DuckDBPyConnection,
    sources: Sequence[str],
    latency: str,
    category: str | None,
    *,
    where: str = "TRUE",
    record_key: str | None = None,
) -> tuple[list[float], dict[str, list[float]]]:
    """Exact ``quantile_cont(latency, [0.5, 0.95, 0.99])`` overall and per category (``latency``: a DOUBLE expression).

    ``sources`` are FROM clauses whose disjoint union is the relation (usually one table or view).
    ``quantile_cont`` keeps every input value in memory (8+ bytes per row of a joined view, not
    spillable). Here the values are first counted per distinct value (a hash aggregate, spillable;
    with several sources, summed across them), then each quantile is read off the running counts
    with DuckDB's own rule: position ``rn = (n - 1) * q``, ``lo``/``hi`` the values at
    ``floor(rn)``/``ceil(rn)``, result ``lo * (1 - d) + hi * d`` with ``d = rn - floor(rn)`` — the
    same double arithmetic, so the same numbers (tests compare both on random data, incl. ties,
    ±inf and a joined view). ``category`` is the SQL expression of the category (None: overall
    only). Groups without a non-NULL latency are absent (callers use ``[0, 0, 0]``). Only rows
    matching ``where`` count; with a ``record_key`` each record counts once, with its largest
    latency (long data repeats a record's latency on every metric row, DB-31), so a record must not
    span two ``sources``.
    """
    grouping = "grouping(c) AS overall, c" if category else "1 AS overall, NULL AS c"
    sets = "GROUPING SETS ((v), (c, v))" if category else "v"
    record_sets = "GROUPING SETS ((k), (c, k))" if category else "k"
    picks = []
    for q in LATENCY_QUANTILES:
        rn = f"(CAST(total - 1 AS DOUBLE) * CAST({q!r} AS DOUBLE))"
        lo = f"min(v) FILTER (WHERE cum > floor({rn}))"
        hi = f"min(v) FILTER (WHERE cum > ceil({rn}))"
        picks.append(
            f"CASE WHEN floor({rn}) = ceil({rn}) THEN {lo} "
            f"ELSE {lo} * (1.0 - ({rn} - floor({rn}))) + {hi} * ({rn} - floor({rn})) END"
        )

    def histogram(src: str) -> str:
        if record_key is None:
            return (
                f"SELECT {grouping}, v, count(*) AS n "
                f"FROM (SELECT {category or 'NULL'} AS c, {latency} AS v FROM {src} WHERE {where}) "
                f"WHERE v IS NOT NULL GROUP BY {sets}"
            )
        records = (
            f"SELECT {grouping}, max(v) AS v "
            f"FROM (SELECT {category or 'NULL'} AS c, {record_key} AS k, {latency} AS v FROM {src} WHERE {where}) "
            f"WHERE k IS NOT NULL GROUP BY {record_sets}"
        )
        return f"SELECT overall, c, v, count(*) AS n FROM ({records}) WHERE v IS NOT NULL GROUP BY overall, c, v"

    def quantiles(h: str) -> str:
        return f"""
            WITH h AS ({h}), r AS (
                SELECT overall, c, v,
                       sum(n) OVER (PARTITION BY overall, c ORDER BY v ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
                           AS cum,
                       sum(n) OVER (PARTITION BY overall, c) AS total
                FROM h
            )
            SELECT overall, c, [{", ".join(picks)}] FROM r GROUP BY overall, c, total"""

    if len(sources) == 1:
        rows = cur.execute(quantiles(histogram(sources[0]))).fetchall()
    else:
        rows = _over_parts(
            cur, sources, histogram, lambda t: quantiles(f"SELECT overall, c, v, sum(n) AS n FROM {t} GROUP BY ALL")
        )
    overall = list(_NO_LATENCY)
    by_cat: dict[str, list[float]] = {}
    for is_overall, c, values in rows:
        if is_overall:
            overall = list(values)
        elif category is not None:
            by_cat[c] = list(values)
    return overall, by_cat


def _summary_dict(row: Sequence[Any], lat: Sequence[Any] | None) -> dict[str, Any]:
    lat = lat or _NO_LATENCY
    return {
        "total_records": int(row[0] or 0),
        "avg_score": float(row[1]) if row[1] is not None else 0.0,
        "pass_rate": float(row[2]) if row[2] is not None else 0.0,
        "p50_latency": float(lat[0] or 0.0),
        "p95_latency": float(lat[1] or 0.0),
        "p99_latency": float(lat[2] or 0.0),
    }


def compute_table_metadata_sync(
    cur: duckdb.DuckDBPyConnection, table: str, parts: Sequence[str] | None = None
) -> dict[str, Any]:
    """Row count, columns, filter values, time range and score summary of a table or view (§10.7).

    Scores are TRY_CAST so text scores (classification rows) never fail the computation (DB-30),
    and NaN/±inf count as missing, as in monitoring ``/summary`` (the same definition, §9.2); so
    does the latency, taken over scored rows once per record (``dataset_id``) in long data (DB-31).
    With a ``metric_category`` column the summary is also given per category (DB-29).
    ``parts``: FROM clauses whose disjoint union is ``table`` (the sync splits its JOIN view by
    dataset rows, so each statement builds the join's hash table over one part only). Parts give
    the same counts, value lists, time range and latency quantiles (a record's rows must lie in
    one part); the average score is summed per part, so it can differ in the last bits.
    """
    t = quote_ident(table)
    sources = list(parts) if parts else [t]
    cols = DuckDBStore.describe_sync(cur, table)
    names = [c["name"] for c in cols]
    types = {c["name"]: c["type"] for c in cols}
    fields = [f for f in METADATA_FILTER_FIELDS if f in names]
    has_time = "timestamp" in names
    # the instants of the column (text with offsets or zone names, Unix time), as the time filters read it
    instant = utc_timestamp_sql('"timestamp"', types["timestamp"]) if has_time else ""
    has_score = "metric_score" in names
    latency = next((c for c in LATENCY_COLUMNS if c in names), None)
    category = (
        f"coalesce({category_sql(quote_ident('metric_category'))}, 'SCORE')" if "metric_category" in names else None
    )
    score = finite_double('"metric_score"', try_cast=True)
    summary_parts = _summary_parts(score)
    record_key = '"dataset_id"' if "dataset_id" in names and "metric_name" in names else None
    distinct = [
        f"list(DISTINCT {v} ORDER BY {v}) FILTER (WHERE {v} IS NOT NULL)[1:{FILTER_VALUES_CAP}]"
        for v in (f"CAST({quote_ident(fld)} AS VARCHAR)" for fld in fields)
    ]
    if len(sources) == 1:
        # One scan for count, filter values, time range and the score summary.
        select = ["count(*)", *distinct]
        if has_time:
            select += [f"CAST(min({instant}) AS VARCHAR)", f"CAST(max({instant}) AS VARCHAR)"]

        def _scan(mean: Callable[[str], str]) -> tuple[Any, ...]:
            cols = [*select, _summary_select(score, mean)] if has_score else select
            return tuple(cur.execute(f"SELECT {', '.join(cols)} FROM {t}").fetchone() or ())

        row = retry_mean(_scan)
    else:
        partial = ["count(*) AS n", *(f"{d} AS l{i}" for i, d in enumerate(distinct))]
        combined = ["sum(n)"] + [
            f"list_sort(list_distinct(flatten(list(l{i}) FILTER (WHERE l{i} IS NOT NULL))))[1:{FILTER_VALUES_CAP}]"
            for i in range(len(fields))
        ]
        if has_time:
            partial += [f"min({instant}) AS tmin", f"max({instant}) AS tmax"]
            combined += ["CAST(min(tmin) AS VARCHAR)", "CAST(max(tmax) AS VARCHAR)"]
        if has_score:
            partial.append(summary_parts)
            combined.append(_SUMMARY_COMBINED)
        rows = _over_parts(
            cur,
            sources,
            lambda src: f"SELECT {', '.join(partial)} FROM {src}",
            lambda tmp: f"SELECT {', '.join(combined)} FROM {tmp}",
        )
        row = rows[0] if rows else ()
    meta: dict[str, Any] = {
        "row_count": int(row[0] or 0) if row else 0,
        "columns": [{"column_name": c["name"], "column_type": c["type"]} for c in cols],
        "filter_values": {fld: list(row[1 + i] or []) for i, fld in enumerate(fields)},
        "time_range": None,
    }
    pos = 1 + len(fields)
    if has_time:
        meta["time_range"] = {"min": row[pos], "max": row[pos + 1]}
        pos += 2
    if has_score:
        lat_all, lat_by_cat = (
            latency_quantiles_sync(
                cur,
                sources,
                latency_number_sql(quote_ident(latency), types[latency]),
                category,
                where=f"{score} IS NOT NULL",
                record_key=record_key,
            )
            if latency
            else (None, {})
        )
        meta["summary_stats"] = _summary_dict(row[pos : pos + 3], lat_all)
        if category is not None:
            if len(sources) == 1:
                by_cat = retry_mean(
                    lambda mean: cur.execute(
                        f"SELECT {category} AS c, {_summary_select(score, mean)} FROM {t} GROUP BY ALL ORDER BY c"
                    ).fetchall()
                )
            else:
                by_cat = _over_parts(
                    cur,
                    sources,
                    lambda src: f"SELECT {category} AS c, {summary_parts} FROM {src} GROUP BY ALL",
                    lambda tmp: f"SELECT c, {_SUMMARY_COMBINED} FROM {tmp} GROUP BY c ORDER BY c",
                )
            meta["summary_stats_by_category"] = {r[0]: _summary_dict(r[1:], lat_by_cat.get(r[0])) for r in by_cat}
    return meta
