"""Rows of a stored table rendered as a JSON array inside DuckDB (the capped ``data`` of upload responses).

Upload, example and import responses echo up to ``UPLOAD_RESPONSE_ROW_CAP`` rows (default 50,000).
As Python dicts those rows cost ~1.6 KB each (80 MB for 50 k rows of a 10-column eval file) before
they are serialised; rendered by DuckDB they cost their JSON text (~0.4 KB a row). Each cell is
written by the rules of :mod:`app.serialization` (``clean_json``, the ``Row`` serializer), so a client parses the
same values from either path: NaN/±Inf → ``null``; FLOAT widened to DOUBLE; DECIMAL as its exact
number; DATE as ``YYYY-MM-DD``; TIMESTAMP as ISO-8601 with a ``T`` and six fraction digits only when
the microseconds are not zero; TIMESTAMPTZ the same in UTC with ``Z``; the ±infinity values (and
the client's sentinels 9999-12-31 23:59:59.999999 / 0001-01-01 00:00 / DATE 9999-12-31 /
0001-01-01) as ``"infinity"`` / ``"-infinity"``. Columns of any other type (BLOB, INTERVAL, lists,
JSON, …) and timestamps outside years 1–9999 are rendered by the Python serializer instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import duckdb

from app.serialization import RenderedRows
from app.services.duckdb_store import INTEGER_TYPES, DuckDBStore, head_rows_sql, quote_ident

# Rows rendered per query (and joined into one bytes part): ~3 MB of Python strings at a time.
WINDOW_ROWS = 8192

# Types whose to_json text is already what the Python serializer writes.
_PLAIN_TYPES = INTEGER_TYPES | {"VARCHAR", "BOOLEAN"}


def _timestamp_sql(col: str, *, utc: bool) -> str:
    """ISO-8601 text of a TIMESTAMP / TIMESTAMPTZ column as Python's ``isoformat`` writes it."""
    suffix = "Z" if utc else ""
    text = (
        f"CASE WHEN microsecond({col}) % 1000000 = 0 THEN strftime({col}, '%Y-%m-%dT%H:%M:%S{suffix}') "
        f"ELSE strftime({col}, '%Y-%m-%dT%H:%M:%S.%f{suffix}') END"
    )
    # The client's sentinels: ±infinity and the finite extremes it cannot tell apart from them.
    return (
        f"CASE WHEN {col} IS NULL THEN 'null' "
        f"WHEN {col} = 'infinity' OR {col} = TIMESTAMP '9999-12-31 23:59:59.999999' THEN '\"infinity\"' "
        f"WHEN {col} = '-infinity' OR {col} = TIMESTAMP '0001-01-01 00:00:00' THEN '\"-infinity\"' "
        f"ELSE to_json({text})::VARCHAR END"
    )


def cell_json_sql(col: str, type_name: str) -> str | None:
    """SQL for the JSON text of one cell of ``col`` (a quoted column), or None if Python must render it."""
    t = type_name.upper()
    if t in _PLAIN_TYPES or t.startswith("DECIMAL"):
        return f"coalesce(to_json({col})::VARCHAR, 'null')"
    if t in ("DOUBLE", "FLOAT"):
        return f"CASE WHEN isfinite({col}) THEN to_json(CAST({col} AS DOUBLE))::VARCHAR ELSE 'null' END"
    if t == "DATE":
        return (
            f"CASE WHEN {col} IS NULL THEN 'null' "
            f"WHEN {col} = 'infinity' OR {col} = DATE '9999-12-31' THEN '\"infinity\"' "
            f"WHEN {col} = '-infinity' OR {col} = DATE '0001-01-01' THEN '\"-infinity\"' "
            f"ELSE to_json(strftime({col}, '%Y-%m-%d'))::VARCHAR END"
        )
    if t == "TIMESTAMP":
        return _timestamp_sql(col, utc=False)
    if t == "TIMESTAMP WITH TIME ZONE":
        # The store's session zone is UTC (DuckDBStore.open), so the wall clock is the UTC clock.
        return _timestamp_sql(f"CAST({col} AS TIMESTAMP)", utc=True)
    return None


def _in_year_range_sql(cols: Sequence[str]) -> str:
    """A predicate true when every date/timestamp column is NULL, infinite or in years 1–9999."""
    checks = [f"({c} IS NULL OR NOT isfinite({c}) OR year({c}) BETWEEN 1 AND 9999)" for c in cols]
    return " AND ".join(checks) or "true"


def render_head_rows_sync(cur: duckdb.DuckDBPyConnection, table: str, limit: int) -> RenderedRows:
    """The first ``limit`` rows of ``table`` in stored order as a JSON array rendered by DuckDB.

    Falls back to the Python serializer when a column has a type :func:`cell_json_sql` does not
    render, or a date/timestamp lies outside years 1–9999 (Python's ``datetime`` range).
    """
    described = DuckDBStore.describe_sync(cur, table)
    head = head_rows_sql(table)
    parts: list[str] = []
    keys: list[str] = []
    dated: list[str] = []
    for column in described:
        col = quote_ident(column["name"])
        cell = cell_json_sql(col, column["type"])
        if cell is None:
            return _python_rows(cur, head, limit)
        if column["type"].upper() in ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE"):
            dated.append(col)
        keys.append(json.dumps(column["name"], ensure_ascii=False) + ":")
        parts.append(f"? || {cell}")
    if dated:
        cur.execute(f"SELECT count(*) FROM ({head}) WHERE NOT ({_in_year_range_sql(dated)})", [limit, 0])
        row = cur.fetchone()
        if row is not None and row[0]:
            return _python_rows(cur, head, limit)
    body = f"'{{' || concat_ws(',', {', '.join(parts)}) || '}}'"
    chunks: list[bytes] = []
    size = 0
    # One query per window: DuckDB's working memory stays that of WINDOW_ROWS rows (-20 MB at 50 k).
    for offset in range(0, limit, WINDOW_ROWS):
        cur.execute(f"SELECT {body} AS j FROM ({head})", [*keys, min(WINDOW_ROWS, limit - offset), offset])
        batch = [row[0] for row in cur.fetchall()]
        if batch:
            chunks.append(",".join(batch).encode())
            size += len(batch)
        if len(batch) < WINDOW_ROWS:
            break
    return RenderedRows(chunks, size)


def _python_rows(cur: duckdb.DuckDBPyConnection, head: str, limit: int) -> RenderedRows:
    cur.execute(head, [limit, 0])
    names = [d[0] for d in cur.description or []]
    return RenderedRows.of([dict(zip(names, row, strict=True)) for row in cur.fetchall()])


def preview_and_rows_sync(
    cur: duckdb.DuckDBPyConnection, table: str, preview: int, cap: int
) -> tuple[list[dict[str, Any]], RenderedRows]:
    """The first ``preview`` rows as Python dicts and the first ``cap`` rows rendered as JSON."""
    cur.execute(head_rows_sql(table), [preview, 0])
    names = [d[0] for d in cur.description or []]
    head = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    return head, render_head_rows_sync(cur, table, cap)
