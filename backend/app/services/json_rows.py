"""Rows of a stored table rendered as JSON text inside DuckDB (the ``data`` of upload and case responses).

Upload, example and import responses echo up to ``UPLOAD_RESPONSE_ROW_CAP`` rows (default 50,000).
As Python dicts those rows cost ~2 KB each (105 MB for 50 k rows of a 10-column eval file, 1.5 GB
for 50 k human-signals cases) before they are serialised; rendered by DuckDB they cost their JSON
text. Rows are rendered in windows of about ``WINDOW_BYTES`` of JSON. Each cell is written by the
rules of :mod:`app.serialization` (``clean_json``, the ``Row`` serializer), so a client parses the
same values from either path: NaN/±Inf → ``null``; FLOAT widened to DOUBLE; DECIMAL as its exact
digits with a fraction (parsed like ``float(Decimal)``); DATE as ``YYYY-MM-DD``; TIMESTAMP as
ISO-8601 with a ``T`` and six fraction digits only when the microseconds are not zero; TIMESTAMPTZ
the same in UTC with ``Z``; the ±infinity values (and the client's sentinels
9999-12-31 23:59:59.999999 / 0001-01-01 00:00 / DATE 9999-12-31 / 0001-01-01) as ``"infinity"`` /
``"-infinity"``; JSON cells as their text in a JSON string, or with ``decode_json`` as JSON values,
a NULL one leaving its key out (the human-signals cases); INTERVAL as seconds (PostgreSQL's
``extract(epoch …)``: a year is 365.25 days). A window holding a column of any other
type (BLOB, lists, …), a date outside years 1–9999 or, with ``decode_json``, JSON text
that may hold NaN/Infinity or an out-of-range number is rendered by the Python serializer instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Sequence
from typing import Any

import duckdb

from app.serialization import RenderedRows
from app.services.duckdb_store import INTEGER_TYPES, DuckDBStore, head_rows_sql, quote_ident

# Rows are rendered by one query per window (DuckDB's working memory is that of one window) and
# fetched (joined into one bytes part) FETCH_ROWS at a time. The first window has FIRST_WINDOW_ROWS
# rows; later ones are sized to hold about WINDOW_BYTES of JSON (at most MAX_WINDOW_ROWS rows).
FIRST_WINDOW_ROWS = 2048
MAX_WINDOW_ROWS = 16_384
WINDOW_BYTES = 8 << 20
FETCH_ROWS = 1024
# Rows of the ``preview`` of upload, example and import responses.
PREVIEW_ROWS = 10
RENDER_GROUP_COLUMNS = 200

_DECIMAL = re.compile(r"DECIMAL\(\d+,\d+\)")
# JSON text that may hold a non-finite token or a number beyond DOUBLE (an RE2 pattern for DuckDB).
_JSON_SUSPECT = r"(?i)(\bnan\b|\binf(inity)?\b|[0-9][eE][+]?[0-9]{3}|[0-9]{309})"
# A JSON string literal, or a bare non-finite token (which Python's json only reads as NaN/Infinity).
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[-+]?(?i:nan|inf(?:inity)?)\b')
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


def seconds_sql(col: str) -> str:
    """An INTERVAL as seconds, PostgreSQL's ``extract(epoch …)``: a month is 30 days, a year 365.25.

    DuckDB's Python client turns an INTERVAL into a ``timedelta`` that counts a year as 360 days (and
    overflows past ~2.7 million years), so intervals are converted in SQL wherever rows are read.
    """
    return f"epoch({col})"


def interval_select_sql(table: str, described: Sequence[dict[str, str]]) -> str:
    """``SELECT * FROM table`` with INTERVAL columns as seconds (``*`` when there are none)."""
    if not any(c["type"].upper() == "INTERVAL" for c in described):
        return f"SELECT * FROM {quote_ident(table)}"
    cols = [
        f"{seconds_sql(quote_ident(c['name']))} AS {quote_ident(c['name'])}"
        if c["type"].upper() == "INTERVAL"
        else quote_ident(c["name"])
        for c in described
    ]
    return f"SELECT {', '.join(cols)} FROM {quote_ident(table)}"


def cell_json_sql(col: str, type_name: str, *, decode_json: bool = False) -> str | None:
    """SQL for the JSON text of one cell of ``col`` (a quoted column), or None if Python must render it.

    With ``decode_json`` a JSON cell is its own text (NULL when NULL: the caller leaves the key out).
    """
    t = type_name.upper()
    if t == "JSON":
        return (
            f"CAST({col} AS VARCHAR)" if decode_json else f"coalesce(to_json(CAST({col} AS VARCHAR))::VARCHAR, 'null')"
        )
    if t in _PLAIN_TYPES:
        return f"coalesce(to_json({col})::VARCHAR, 'null')"
    if _DECIMAL.fullmatch(t):
        # The exact digits as a JSON number with a fraction, parsed like Python's float(Decimal): DuckDB
        # writes DECIMAL(p, p) without the leading zero (".5") and DECIMAL(p, 0) without a fraction.
        text = f"CAST({col} AS VARCHAR)"
        fraction = f"CASE WHEN contains({text}, '.') THEN '' ELSE '.0' END"
        return f"coalesce(regexp_replace({text}, '^(-?)[.]', '\\10.') || {fraction}, 'null')"
    if t in ("DOUBLE", "FLOAT"):
        return f"CASE WHEN isfinite({col}) THEN to_json(CAST({col} AS DOUBLE))::VARCHAR ELSE 'null' END"
    if t == "INTERVAL":
        return f"coalesce(to_json({seconds_sql(col)})::VARCHAR, 'null')"
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


def _python_check_sql(columns: Sequence[tuple[str, str]], decode_json: bool) -> str | None:
    """A predicate true for a row whose cells DuckDB must not render (None when no row can be such)."""
    checks = []
    for col, typ in columns:
        if typ in ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE"):
            checks.append(f"({col} IS NOT NULL AND isfinite({col}) AND year({col}) NOT BETWEEN 1 AND 9999)")
        elif typ == "JSON" and decode_json:
            # DuckDB's JSON keeps NaN/inf tokens (any case) and overflowing numbers as written: Python
            # reads them (as null) where JSON clients could not.
            checks.append(f"regexp_matches(CAST({col} AS VARCHAR), '{_JSON_SUSPECT}')")
    return " OR ".join(checks) or None


def render_rows_sync(
    cur: duckdb.DuckDBPyConnection, table: str, limit: int, offset: int = 0, *, decode_json: bool = False
) -> RenderedRows:
    """Rows ``offset`` … ``offset + limit - 1`` of ``table`` in stored order, rendered as JSON by DuckDB.

    A window falls back to the Python serializer when :func:`cell_json_sql` cannot render a column
    or :func:`_python_check_sql` flags one of its rows.
    """
    described = DuckDBStore.describe_sync(cur, table)
    page = head_rows_sql(table)
    columns = [(quote_ident(c["name"]), c["type"].upper()) for c in described]
    cells = [cell_json_sql(col, typ, decode_json=decode_json) for col, typ in columns]
    keys = [json.dumps(c["name"], ensure_ascii=False) + ":" for c in described]
    # One projection of at most RENDER_GROUP_COLUMNS cells per query: DuckDB's planner is quadratic in
    # the expressions of one projection (5,000 columns: ~10 s to plan each window, 3 rows or 50 k).
    # Only a table's scans give every group its rows in the same (stored) order; a view renders whole.
    width = RENDER_GROUP_COLUMNS if DuckDBStore.is_table_sync(cur, table) else max(len(cells), 1)
    groups = [
        (
            f"concat_ws(',', {', '.join(f'? || {cell}' for cell in cells[i : i + width])})",
            keys[i : i + width],
            # the group's own columns only: binding all of a 5,000-column table per group costs too
            f"SELECT {', '.join(col for col, _ in columns[i : i + width])} FROM {quote_ident(table)} LIMIT ? OFFSET ?",
        )
        for i in range(0, len(cells), width)
    ]
    check = _python_check_sql(columns, decode_json)
    json_columns = {c["name"] for c in described if c["type"].upper() == "JSON"} if decode_json else set()
    parts: list[bytes] = []
    size = rendered = 0
    window = FIRST_WINDOW_ROWS
    while size < limit:
        n = min(window, limit - size)
        start = offset + size
        in_sql = all(cells)
        if in_sql and check is not None:
            cur.execute(f"SELECT count(*) FROM ({page}) WHERE {check}", [n, start])
            flagged = cur.fetchone()
            in_sql = not (flagged and flagged[0])
        count = 0
        if in_sql and len(groups) == 1:
            body, group_keys, _ = groups[0]
            cur.execute(f"SELECT '{{' || {body} || '}}' AS j FROM ({page})", [*group_keys, n, start])
            while batch := cur.fetchmany(FETCH_ROWS):
                parts.append(",".join(row[0] for row in batch).encode())
                rendered += len(parts[-1])
                count += len(batch)
        elif in_sql:
            # Each group's fragments of the window's rows (same stored order), joined per row here.
            fragments: list[list[str]] = []
            for body, group_keys, group_page in groups:
                cur.execute(f"SELECT {body} AS j FROM ({group_page})", [*group_keys, n, start])
                fragments.append([row[0] for row in cur.fetchall()])
            lines = ["{" + ",".join(f for f in row if f) + "}" for row in zip(*fragments, strict=True)]
            for i in range(0, len(lines), FETCH_ROWS):
                parts.append(",".join(lines[i : i + FETCH_ROWS]).encode())
                rendered += len(parts[-1])
            count = len(lines)
        else:
            rows = RenderedRows.of(python_rows_sync(cur, table, n, start, json_columns))
            parts.extend(rows.parts)
            rendered += sum(map(len, rows.parts))
            count = rows.size
        size += count
        if count < n:
            break
        # Size the next window to about WINDOW_BYTES of JSON from the rows' average width so far.
        window = max(FETCH_ROWS, min(MAX_WINDOW_ROWS, WINDOW_BYTES * size // max(rendered, 1)))
    return RenderedRows(parts, size)


def python_rows_sync(
    cur: duckdb.DuckDBPyConnection, table: str, limit: int, offset: int = 0, json_columns: Collection[str] = ()
) -> list[dict[str, Any]]:
    """A page of rows as Python values (INTERVAL as seconds); cells of ``json_columns`` decoded, NULL ones left out."""
    select = interval_select_sql(table, DuckDBStore.describe_sync(cur, table))
    cur.execute(f"{select} LIMIT ? OFFSET ?", [limit, offset])
    names = [d[0] for d in cur.description or []]
    out = []
    for values in cur.fetchall():
        row: dict[str, Any] = {}
        for name, value in zip(names, values, strict=True):
            if name in json_columns:
                if value is None:
                    continue
                value = load_json_cell(value)
            row[name] = value
        out.append(row)
    return out


def load_json_cell(text: str) -> Any:
    """A JSON cell as Python: bare nan/inf tokens of any case (DuckDB accepts them) read as NaN/±inf.

    Text Python still cannot read is returned as the string itself.
    """
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        pass

    def _token(match: re.Match[str]) -> str:
        word = match.group(0)
        if word.startswith('"'):
            return word
        if word.lstrip("+-").lower() == "nan":
            return "NaN"
        return "-Infinity" if word.startswith("-") else "Infinity"

    try:
        return json.loads(_JSON_TOKEN.sub(_token, text))
    except (ValueError, RecursionError):
        return text


def preview_and_rows_sync(
    cur: duckdb.DuckDBPyConnection, table: str, preview: int, cap: int
) -> tuple[list[dict[str, Any]], RenderedRows]:
    """The first ``preview`` rows as Python values and the first ``cap`` rows rendered as JSON."""
    return python_rows_sync(cur, table, preview), render_rows_sync(cur, table, cap)
