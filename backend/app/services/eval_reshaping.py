"""Inline eval records reshaped for the frontend: tree→wide conversion and prepare-analytics (§4.5, §4.6).

The records are registered as a temporary Arrow relation and reshaped with SQL, as stored data is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb

from app.errors import Invalid
from app.models.data import ConvertTreeResponse, MetricMapping, PrepareAnalyticsResponse
from app.services.data_processor import (
    EVAL_RUNNER,
    LONG_FORMATS,
    SIMPLE_JUDGMENT,
    WIDE_INDEX_COLUMNS,
    WideTable,
    column_types,
    fetch_rows,
    is_numeric_type,
    records_to_arrow,
)
from app.services.duckdb_store import ORDINAL, DuckDBStore, quote_ident

INLINE_RELATION = "__axis_inline_rows"


def tree_to_wide_sql(
    cur: duckdb.DuckDBPyConnection,
    relation: str,
    *,
    metric_type: str | None = None,
    include_conversation: bool = False,
) -> WideTable:
    """§4.5 pivot in SQL: one row per index tuple (NULLs kept), one column per metric_name.

    ``relation`` must have an ``__axis_ord`` row-order column. The cell is the first non-null
    metric_score in row order. A latency column (any case) with max > 1 is dropped with
    ``PERFORMANCE``.
    """
    types = column_types(cur, relation)
    if not {"metric_name", "metric_score"} <= set(types):
        raise Invalid("Tree data needs 'metric_name' and 'metric_score' columns")
    where, params = "", []
    if metric_type is not None:
        if "metric_type" not in types:
            raise Invalid("metric_type filter given but the data has no 'metric_type' column")
        where, params = "WHERE CAST(metric_type AS VARCHAR) = ?", [metric_type]
    dm = "data_metadata"
    dm_expr = f"coalesce(CAST({quote_ident(dm)} AS VARCHAR), '{{}}')" if dm in types else "'{}'"
    index_candidates = list(WIDE_INDEX_COLUMNS) + (["conversation"] if include_conversation else [])
    index = [c for c in index_candidates if c in types or c == dm]
    if len(index) < 2:
        return WideTable(data=[], columns=[])
    base_cols = ", ".join(f"{dm_expr} AS {quote_ident(dm)}" if c == dm else quote_ident(c) for c in index)
    base = (
        f"SELECT {base_cols}, CAST(metric_name AS VARCHAR) AS __m, "
        f"TRY_CAST(metric_score AS DOUBLE) AS __v, {ORDINAL} AS __o FROM {quote_ident(relation)} {where}"
    )
    metrics = [
        r[0]
        for r in cur.execute(
            f"SELECT __m FROM ({base}) WHERE __m IS NOT NULL GROUP BY __m ORDER BY min(__o)", params
        ).fetchall()
    ]
    index_q = ", ".join(quote_ident(c) for c in index)
    aggs, agg_params = [], []
    # Metric names are data: SQL aliases are positional (DuckDB folds case, 'Acc' = 'acc') and the
    # output keys are the names themselves, '<name>_metric' when an index column has that name.
    index_lower = {c.lower() for c in index}
    outputs: dict[str, str] = {}
    for i, m in enumerate(metrics):
        out = m if m.lower() not in index_lower else f"{m}_metric"
        base_out, n = out, 2
        while out in outputs.values() or out.lower() in index_lower:
            out, n = f"{base_out}_{n}", n + 1
        outputs[f"__axis_w{i}"] = out
        aggs.append(f"arg_min(__v, __o) FILTER (WHERE __m = ? AND __v IS NOT NULL) AS __axis_w{i}")
        agg_params.append(m)
    select = ", ".join([index_q, *aggs])
    sql = f"SELECT {select} FROM ({base}) GROUP BY {index_q} ORDER BY min(__o)"
    table = fetch_rows(cur, sql, [*agg_params, *params])
    table = WideTable(
        data=[{outputs.get(k, k): v for k, v in r.items()} for r in table.data],
        columns=[outputs.get(c, c) for c in table.columns],
    )
    latency = next((c for c in table.columns if c.lower() == "latency"), None)
    if latency is not None:
        values = [r[latency] for r in table.data if isinstance(r[latency], (int, float))]
        if values and max(values) > 1:
            drop = {latency, "PERFORMANCE"}
            table = WideTable(
                data=[{k: v for k, v in r.items() if k not in drop} for r in table.data],
                columns=[c for c in table.columns if c not in drop],
            )
    return table


async def _with_inline(store: DuckDBStore, records: Sequence[dict[str, Any]], fn: Any) -> Any:
    """Run ``fn(cursor, relation)`` over records registered as a temporary Arrow relation."""

    def _work(cur: duckdb.DuckDBPyConnection) -> Any:
        arrow = records_to_arrow(records)
        cur.register(INLINE_RELATION, arrow)
        try:
            return fn(cur, INLINE_RELATION)
        finally:
            cur.unregister(INLINE_RELATION)

    return await store.run_read(_work)


def _strip_ordinal(table: WideTable) -> WideTable:
    if ORDINAL not in table.columns:
        return table
    return WideTable(
        data=[{k: v for k, v in r.items() if k != ORDINAL} for r in table.data],
        columns=[c for c in table.columns if c != ORDINAL],
    )


async def convert_tree(
    store: DuckDBStore,
    records: Sequence[dict[str, Any]],
    *,
    metric_type: str | None = None,
    include_conversation: bool = False,
) -> ConvertTreeResponse:
    """POST /convert-tree: tree records → wide rows (§4.5)."""
    if not records:
        return ConvertTreeResponse(data=[], columns=[])

    def _fn(cur: duckdb.DuckDBPyConnection, rel: str) -> WideTable:
        return tree_to_wide_sql(cur, rel, metric_type=metric_type, include_conversation=include_conversation)

    result: WideTable = await _with_inline(store, records, _fn)
    return ConvertTreeResponse(data=result.data, columns=result.columns)


_NON_METRIC = (
    "dataset_id",
    "evaluation_name",
    "query",
    "actual_output",
    "expected_output",
    "evaluation_metadata",
    "data_metadata",
)


async def prepare_analytics(
    store: DuckDBStore,
    records: Sequence[dict[str, Any]],
    *,
    format_type: str,
    metric_type: str | None = None,
) -> PrepareAnalyticsResponse:
    """POST /prepare-analytics (§4.6): mapping, tree→wide for long formats, metric columns."""
    if not records:
        return PrepareAnalyticsResponse(data=[], columns=[], metric_columns=[], mapping=MetricMapping())

    def _fn(cur: duckdb.DuckDBPyConnection, rel: str) -> PrepareAnalyticsResponse:
        types = column_types(cur, rel)
        # An eval-runner export without metric rows (run_id, dataset_id, passed, score columns) is
        # wide: its numeric columns are the metrics, as the upload that reported the format keeps it.
        long = format_type in LONG_FORMATS and (
            format_type != EVAL_RUNNER or {"metric_name", "metric_score"} <= set(types)
        )
        mapping: dict[str, list[str]] = {"metrics": [], "components": []}
        if "metric_type" in types and "metric_name" in types:
            rows = cur.execute(
                f"SELECT CAST(metric_type AS VARCHAR), CAST(metric_name AS VARCHAR) FROM {quote_ident(rel)} "
                "WHERE metric_name IS NOT NULL AND metric_type IN ('metric', 'component') "
                f"GROUP BY 1, 2 ORDER BY min({ORDINAL})"
            ).fetchall()
            mapping["metrics"] = [name for kind, name in rows if kind == "metric"]
            mapping["components"] = [name for kind, name in rows if kind == "component"]
        if format_type == SIMPLE_JUDGMENT:
            table = _strip_ordinal(fetch_rows(cur, f"SELECT * FROM {quote_ident(rel)} ORDER BY {ORDINAL}"))
            return PrepareAnalyticsResponse(
                data=table.data, columns=table.columns, metric_columns=["judgment"], mapping=MetricMapping(**mapping)
            )
        if long:
            table = tree_to_wide_sql(cur, rel, metric_type=metric_type)
            if not table.data:
                return PrepareAnalyticsResponse(
                    data=[], columns=[], metric_columns=[], mapping=MetricMapping(**mapping)
                )
            # Every pivoted column but the index is a metric (DOUBLE cells), whatever type an input
            # column of the same name (a metric named 'critique' or 'parent') had.
            metric_columns = [c for c in table.columns if c not in _NON_METRIC]
        else:
            table = _strip_ordinal(fetch_rows(cur, f"SELECT * FROM {quote_ident(rel)} ORDER BY {ORDINAL}"))
            excluded = {*_NON_METRIC, "critique"}
            metric_columns = [c for c, t in types.items() if c != ORDINAL and is_numeric_type(t) and c not in excluded]
        return PrepareAnalyticsResponse(
            data=table.data, columns=table.columns, metric_columns=metric_columns, mapping=MetricMapping(**mapping)
        )

    result: PrepareAnalyticsResponse = await _with_inline(store, records, _fn)
    return result
