"""Evaluation data: format detection, §4.3 processing, uploads and examples.

Every load (upload, example, database import) lands in the DuckDB store as an ``eval`` dataset;
processing (§4.3) runs as SQL on the staging table, so a failure leaves the previous dataset
served. Inline reshaping is :mod:`app.services.eval_reshaping`, the database import
:mod:`app.services.eval_db_import`.
"""

from __future__ import annotations

import ast
import datetime as dt
import decimal
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import duckdb
import pyarrow as pa

from app.errors import Invalid, NotFound
from app.models.data import DetectFormatResponse, ExampleResponse, UploadResponse
from app.serialization import RenderedRows
from app.services.column_aliases import EVAL_ALIASES, normalise_column_key
from app.services.csv_ingest import (
    PANDAS_NA_VALUES,
    CsvLoadResult,
    CsvTransform,
    UploadLike,
    count_csv_rows,
    first_non_numeric_value,
    ingest_csv_file,
    ingest_csv_upload,
    spool_upload,
)
from app.services.duckdb_store import ORDINAL, DatasetInfo, DuckDBStore, head_rows_sql, quote_ident, quote_literal
from app.services.json_rows import PREVIEW_ROWS, preview_and_rows_sync

EVAL_RUNNER = "eval_runner"
TREE_FORMAT = "tree_format"
FLAT_FORMAT = "flat_format"
SIMPLE_JUDGMENT = "simple_judgment"
FRESH_ANNOTATION = "fresh_annotation"
UNKNOWN_FORMAT = "unknown"

# §4.2, first match wins.
FORMAT_RULES: tuple[tuple[str, frozenset[str]], ...] = (
    (EVAL_RUNNER, frozenset({"run_id", "dataset_id", "passed"})),
    (TREE_FORMAT, frozenset({"metric_name", "parent", "metric_type", "metric_score"})),
    (FLAT_FORMAT, frozenset({"metric_name", "metric_score"})),
    (SIMPLE_JUDGMENT, frozenset({"judgment"})),
    (FRESH_ANNOTATION, frozenset({"dataset_id", "evaluation_name", "query", "actual_output"})),
)

# Formats whose rows are long (one row per metric) and pivot to wide for analytics.
LONG_FORMATS = frozenset({TREE_FORMAT, FLAT_FORMAT, EVAL_RUNNER})

BACK_COMPAT_RENAMES = {"experiment_name": "evaluation_name", "experiment_metadata": "evaluation_metadata"}

TREE_DEFAULTS: tuple[tuple[str, str], ...] = (
    ("dataset_id", "test_case_1"),
    ("evaluation_name", "Experiment 1"),
    ("query", ""),
    ("actual_output", ""),
    ("expected_output", ""),
    ("evaluation_metadata", "{}"),
    ("critique", ""),
)

WIDE_INDEX_COLUMNS = ("dataset_id", "evaluation_name", "query", "actual_output", "evaluation_metadata", "data_metadata")


EXAMPLE_FILES: dict[str, str] = {
    "model": "example_model.csv",
    "comparison": "example_model_comparison.csv",
    "annotation": "annotation_sample.csv",
    "align": "align_sample.csv",
}

# Columns that identify one evaluated record in long data (the analytics pivot key).
RECORD_KEYS = ("dataset_id", "evaluation_name", "run_id")
# Also part of a record's identity when they differ within one RECORD_KEYS tuple (spec §4.5's index).
OUTPUT_KEYS = ("query", "actual_output")
# Per-metric columns of long data: they vary per metric row, never describe a record.
PER_METRIC_COLUMNS = frozenset(
    {
        "metric_name",
        "metric_score",
        "metric_type",
        "metric_category",
        "metric_id",
        "parent",
        "weight",
        "passed",
        "threshold",
        "explanation",
        "signals",
        "critique",
        "metric_metadata",
        "judgment",
        "cost_estimate",
        ORDINAL,
    }
)
# Registry extras cached at load time for long data (analytics read them instead of rescanning).
EXTRA_METRIC_NAMES = "metric_names"
EXTRA_RECORD_COUNT = "record_count"
EXTRA_RECORD_KEYS = "record_keys"


# ------------------------------------------------------------------------------------ results
@dataclass
class WideTable:
    """Rows and column names of a reshaped table."""

    data: list[dict[str, Any]]
    columns: list[str]


# ------------------------------------------------------------------------------------ detection
def detect_data_format(columns: Iterable[str]) -> str:
    """§4.2 detection by exact column names, first matching rule wins; else ``unknown``."""
    present = set(columns)
    for name, required in FORMAT_RULES:
        if required <= present:
            return name
    return UNKNOWN_FORMAT


def eval_alias_renames(columns: Sequence[str], custom_map: dict[str, str] | None = None) -> dict[str, str]:
    """§4.4 renames {source: target}: custom map (exact name) first, then aliases, with collision guard.

    A rename is skipped when its target already exists as a column or was claimed by an earlier
    rename, so renaming never creates duplicate columns (DB-23). Names compare case-insensitively
    (as DuckDB binds them): ``input`` is not renamed to ``query`` when ``Query`` exists, while a
    custom ``Score: score`` (a change of case only) is applied.
    """
    custom_map = custom_map or {}
    taken = Counter(c.lower() for c in columns)
    renames: dict[str, str] = {}

    def _claim(col: str, target: str | None) -> None:
        if not target or target == col or col in renames:
            return
        own = 1 if target.lower() == col.lower() else 0  # a case-only rename frees its own name
        if taken[target.lower()] > own:
            return
        renames[col] = target
        taken[col.lower()] -= 1
        taken[target.lower()] += 1

    for col in columns:
        _claim(col, custom_map.get(col))
    for col in columns:
        _claim(col, EVAL_ALIASES.get(normalise_column_key(col)))
    return renames


# ------------------------------------------------------------------------------------ arrow
def _arrow_column(values: list[Any]) -> pa.Array:
    """One Arrow column from JSON-ish values: bool, int64, float64, timestamp or string (JSON for objects)."""
    kinds = set()
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if isinstance(v, bool):
            kinds.add("bool")
        elif isinstance(v, int):
            kinds.add("int")
        elif isinstance(v, (float, decimal.Decimal)):
            kinds.add("float")
        elif isinstance(v, dt.datetime):
            kinds.add("ts")
        elif isinstance(v, str):
            kinds.add("str")
        else:
            kinds.add("obj")
    clean = [None if (isinstance(v, float) and math.isnan(v)) else v for v in values]
    if not kinds:  # all null: text, as the CSV reader types an empty column (so no valueless metric)
        return pa.array([None] * len(values), type=pa.string())
    if kinds == {"bool"}:
        return pa.array(clean, type=pa.bool_())
    if kinds == {"int"} and all(v is None or -(2**63) <= v < 2**63 for v in clean):
        return pa.array(clean, type=pa.int64())
    if kinds == {"int"} and all(v is None or abs(v) < 10**38 for v in clean):
        # wider than int64 (a 20-digit id): exact, as the CSV reader's HUGEINT keeps it
        return pa.array([None if v is None else decimal.Decimal(v) for v in clean], type=pa.decimal128(38, 0))
    if kinds <= {"int", "float"}:
        return pa.array([None if v is None else float(v) for v in clean], type=pa.float64())
    if kinds == {"ts"}:
        out = [None if v is None else (v.astimezone(dt.UTC).replace(tzinfo=None) if v.tzinfo else v) for v in clean]
        return pa.array(out, type=pa.timestamp("us"))
    return pa.array([None if v is None else _text(v) for v in clean], type=pa.string())


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return str(value)


def records_to_arrow(rows: Sequence[dict[str, Any]], *, ordinal: bool = True) -> pa.Table:
    """Record dicts → Arrow table (columns in first-seen order; JSON objects stored as JSON text).

    With ``ordinal`` a ``__axis_ord`` column keeps the row order. Column names that differ only
    by case are rejected (DuckDB identifiers are case-insensitive).
    """
    names: dict[str, None] = {}
    for row in rows:
        if not isinstance(row, dict):
            raise Invalid("Each record must be a JSON object")
        for key in row:
            names.setdefault(str(key), None)
    lowered: dict[str, str] = {}
    for name in names:
        if not name or "\x00" in name:
            raise Invalid("Column names must be non-empty and must not contain NUL characters")
        if name.lower() in lowered:
            raise Invalid(f"Duplicate column name '{name}' (also '{lowered[name.lower()]}'); names must be unique")
        lowered[name.lower()] = name
    if ordinal and ORDINAL.lower() in lowered:
        raise Invalid(f"Column name '{ORDINAL}' is reserved")
    arrays = {name: _arrow_column([row.get(name) for row in rows]) for name in names}
    if ordinal:
        arrays[ORDINAL] = pa.array(range(len(rows)), type=pa.int64())
    return pa.table(arrays)


def fetch_rows(cur: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] | None = None) -> WideTable:
    """Run a query; rows as dicts and the column names."""
    cur.execute(sql, params or [])
    cols = [d[0] for d in cur.description] if cur.description else []
    return WideTable(data=[dict(zip(cols, r, strict=True)) for r in cur.fetchall()], columns=cols)


def column_types(cur: duckdb.DuckDBPyConnection, relation: str) -> dict[str, str]:
    """Column name → DuckDB type of a table/view (case preserved)."""
    return {c["name"]: c["type"] for c in DuckDBStore.describe_sync(cur, relation)}


def is_numeric_type(type_name: str) -> bool:
    """True for DuckDB integer/float/decimal types (not BOOLEAN)."""
    t = type_name.upper()
    return any(k in t for k in ("INT", "DOUBLE", "FLOAT", "DECIMAL", "REAL", "NUMERIC")) and "INTERVAL" not in t


# ------------------------------------------------------------------------------------ processing
def _add_column(cur: duckdb.DuckDBPyConnection, table: str, name: str, default: str | None) -> None:
    q = quote_ident(table)
    if default is None:
        cur.execute(f"ALTER TABLE {q} ADD COLUMN {quote_ident(name)} VARCHAR")
    else:
        cur.execute(f"ALTER TABLE {q} ADD COLUMN {quote_ident(name)} VARCHAR DEFAULT {quote_literal(default)}")


def _ensure_varchar(cur: duckdb.DuckDBPyConnection, table: str, name: str, types: dict[str, str]) -> None:
    if types.get(name, "VARCHAR") != "VARCHAR":
        cur.execute(f"ALTER TABLE {quote_ident(table)} ALTER COLUMN {quote_ident(name)} TYPE VARCHAR")
        types[name] = "VARCHAR"


# Spellings of a missing score (pandas' list; CSV uploads read them as NULL already, database imports
# and posted rows may carry them as text).
MISSING_SCORE_TOKENS = tuple(v for v in PANDAS_NA_VALUES if v)


def _require_numeric_scores(cur: duckdb.DuckDBPyConnection, table: str, types: dict[str, str]) -> None:
    """metric_score must hold numbers (blank or a :data:`MISSING_SCORE_TOKENS` spelling allowed); stored as DOUBLE."""
    col = "metric_score"
    typ = types[col]
    if typ == "DOUBLE":
        return
    if typ == "VARCHAR":
        cur.execute(
            f"UPDATE {quote_ident(table)} SET metric_score = NULL WHERE trim(metric_score) IN "
            f"({', '.join('?' for _ in MISSING_SCORE_TOKENS)})",
            list(MISSING_SCORE_TOKENS),
        )
    if not is_numeric_type(typ):
        bad = first_non_numeric_value(cur, table, col)
        if bad is not None:
            row, value = bad
            raise Invalid(f"Column 'metric_score' must be numeric: data row {row} has the value {value[:80]!r}")
    cur.execute(f"ALTER TABLE {quote_ident(table)} ALTER COLUMN {quote_ident(col)} TYPE DOUBLE")
    types[col] = "DOUBLE"


def _fill_tree_columns(cur: duckdb.DuckDBPyConnection, table: str, types: dict[str, str]) -> None:
    """§4.3 step 2: parent blanks → NULL, default columns, data_metadata and retrieved_content."""
    q = quote_ident(table)
    _require_numeric_scores(cur, table, types)
    _ensure_varchar(cur, table, "parent", types)
    cur.execute(f"UPDATE {q} SET parent = NULL WHERE parent IS NOT NULL AND trim(parent) = ''")
    lower = {c.lower() for c in types}
    for name, default in TREE_DEFAULTS:
        if name.lower() not in lower:
            _add_column(cur, table, name, default)
            types[name] = "VARCHAR"
    if "data_metadata" not in lower:
        _add_column(cur, table, "data_metadata", "{}")
        types["data_metadata"] = "VARCHAR"
    else:
        _ensure_varchar(cur, table, "data_metadata", types)
        cur.execute(f"UPDATE {q} SET data_metadata = '{{}}' WHERE data_metadata IS NULL")
    if "retrieved_content" in types:
        _ensure_varchar(cur, table, "retrieved_content", types)
        cur.execute(f"UPDATE {q} SET retrieved_content = '[]' WHERE retrieved_content IS NULL")


# Columns §4.3 reads, adds or renames to. Detection matches names exactly (§4.2); afterwards a
# column that differs from one of these only in case is that column to DuckDB's SQL, so it is
# given the canonical spelling instead of failing on a second, case-folded twin.
CANONICAL_COLUMNS = frozenset(
    {
        *(name for name, _ in TREE_DEFAULTS),
        "data_metadata",
        "retrieved_content",
        "metric_name",
        "metric_score",
        "metric_type",
        "parent",
        "weight",
        "judgment",
        "run_id",
        "passed",
    }
)


def _canonical_case(cur: duckdb.DuckDBPyConnection, table: str, types: dict[str, str]) -> dict[str, str]:
    """Rename case variants of :data:`CANONICAL_COLUMNS` (``Query`` → ``query``); returns the new types."""
    by_lower = {c.lower(): c for c in CANONICAL_COLUMNS}
    renamed = False
    for col in types:
        canon = by_lower.get(col.lower())
        if canon is not None and canon != col:
            cur.execute(f"ALTER TABLE {quote_ident(table)} RENAME COLUMN {quote_ident(col)} TO {quote_ident(canon)}")
            renamed = True
    return column_types(cur, table) if renamed else types


def _flat_to_tree(cur: duckdb.DuckDBPyConnection, table: str, types: dict[str, str]) -> None:
    """§4.3 step 3: flat rows get metric_type 'metric', parent NULL, weight NULL."""
    if "metric_type" not in types:
        _add_column(cur, table, "metric_type", "metric")
        types["metric_type"] = "VARCHAR"
    if "parent" not in types:
        _add_column(cur, table, "parent", None)
        types["parent"] = "VARCHAR"
    if "weight" not in types:
        cur.execute(f"ALTER TABLE {quote_ident(table)} ADD COLUMN weight DOUBLE")
        types["weight"] = "DOUBLE"


def long_metric_names(cur: duckdb.DuckDBPyConnection, relation: str) -> list[str]:
    """metric_name values that have at least one numeric metric_score, sorted."""
    rows = cur.execute(
        f"SELECT CAST(metric_name AS VARCHAR) AS m FROM {quote_ident(relation)} "
        "WHERE metric_name IS NOT NULL AND TRY_CAST(metric_score AS DOUBLE) IS NOT NULL "
        "GROUP BY m ORDER BY m"
    ).fetchall()
    return [r[0] for r in rows]


def record_keys_sync(cur: duckdb.DuckDBPyConnection, relation: str, columns: Iterable[str]) -> tuple[list[str], int]:
    """Columns identifying one record of long data, and the number of records.

    The :data:`RECORD_KEYS` present (with :data:`OUTPUT_KEYS` when one key tuple has rows with
    different queries or outputs: two records, as in the spec's pivot index, not one average),
    else every column that is not per-metric; empty when the rows carry nothing but metric
    columns, and then all rows form one record. A ``dataset_id`` or ``evaluation_name`` holding
    nothing but its §4.3 fill value (``test_case_1``, ``Experiment 1``) identifies no record and is
    left out, so the rows an upload returns (filled) and the stored dataset they came from give
    the same records.
    """
    cols = list(columns)
    rel = quote_ident(relation)
    fill = [(k, v) for k, v in TREE_DEFAULTS if k in RECORD_KEYS and k in cols]
    filled: set[str] = set()
    if fill:
        checks = ", ".join(f"bool_and(CAST({quote_ident(k)} AS VARCHAR) IS NOT DISTINCT FROM ?)" for k, _ in fill)
        row = cur.execute(f"SELECT {checks} FROM {rel}", [v for _, v in fill]).fetchone()
        filled = {k for (k, _), only in zip(fill, row or (), strict=False) if only}
    keys = [k for k in RECORD_KEYS if k in cols and k not in filled]
    outputs = [c for c in OUTPUT_KEYS if c in cols]
    if not keys:
        keys = [c for c in cols if c not in PER_METRIC_COLUMNS and c not in filled]
    elif outputs:
        # Grouped by a hash of the key (8 bytes a record, not its text): a collision can only add the
        # outputs to keys under which they do not vary, which groups the records the same way.
        # Rows with a blank query or output do not count: such a metric row is not another record.
        present = " AND ".join(f"{quote_ident(c)} IS NOT NULL" for c in outputs)
        out = f"CASE WHEN {present} THEN hash({', '.join(quote_ident(c) for c in outputs)}) END"
        grouped = ", ".join(quote_ident(k) for k in keys)
        row = cur.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {rel} GROUP BY hash({grouped}) "
            f"HAVING min({out}) <> max({out}) LIMIT 1)"
        ).fetchone()
        if row and row[0]:
            keys += outputs
    return keys, _count_records(cur, rel, keys)


def _count_records(cur: duckdb.DuckDBPyConnection, rel: str, keys: Sequence[str]) -> int:
    """Distinct record-key tuples of long data (1 for non-empty data without keys)."""
    if not keys:
        row = cur.execute(f"SELECT count(*) > 0 FROM (SELECT 1 FROM {rel} LIMIT 1)").fetchone()
        return int(bool(row and row[0]))
    cols = ", ".join(quote_ident(k) for k in keys)
    row = cur.execute(f"SELECT count(*) FROM (SELECT DISTINCT {cols} FROM {rel})").fetchone()
    return int(row[0]) if row else 0


def _long_extra(cur: duckdb.DuckDBPyConnection, table: str) -> dict[str, Any]:
    """Metric names, record keys and record count of processed long data (cached in the registry)."""
    keys, records = record_keys_sync(cur, table, column_types(cur, table))
    return {EXTRA_METRIC_NAMES: long_metric_names(cur, table), EXTRA_RECORD_KEYS: keys, EXTRA_RECORD_COUNT: records}


def _tree_message(cur: duckdb.DuckDBPyConnection, table: str, label: str) -> str:
    q = quote_ident(table)
    count = cur.execute(f"SELECT count(*) FROM {q}").fetchone()
    roots = cur.execute(
        f"SELECT CAST(metric_name AS VARCHAR) FROM {q} WHERE parent IS NULL AND metric_name IS NOT NULL "
        "GROUP BY 1 ORDER BY min(rowid) LIMIT 20"
    ).fetchall()
    n = int(count[0]) if count else 0
    return f"{label} with {n} nodes, root: {', '.join(r[0] for r in roots)}"


def process_eval_table(cur: duckdb.DuckDBPyConnection, table: str) -> CsvTransform:
    """§4.3 processing in SQL on ``table`` (in place); returns the format and message.

    eval_runner exports are processed (long ones as tree rows, DB-9), flat data is reported as
    ``flat_format``, undetectable data → Invalid.
    """
    types = column_types(cur, table)
    for old, new in BACK_COMPAT_RENAMES.items():
        if old in types and new.lower() not in {c.lower() for c in types}:
            cur.execute(f"ALTER TABLE {quote_ident(table)} RENAME COLUMN {quote_ident(old)} TO {quote_ident(new)}")
            types[new] = types.pop(old)
    fmt = detect_data_format(types)
    found = list(types)  # as the file spells them (the message below names these)
    types = _canonical_case(cur, table, types)
    q = quote_ident(table)
    if fmt == EVAL_RUNNER:
        if {"metric_name", "metric_score"} <= set(types):
            _flat_to_tree(cur, table, types)
            _fill_tree_columns(cur, table, types)
            return CsvTransform(
                format=EVAL_RUNNER,
                message=_tree_message(cur, table, "Eval runner export (tree)"),
                extra=_long_extra(cur, table),
            )
        count = cur.execute(f"SELECT count(*) FROM {q}").fetchone()
        n = int(count[0]) if count else 0
        return CsvTransform(format=EVAL_RUNNER, message=f"Eval runner export with {n} rows")
    if fmt == TREE_FORMAT:
        _fill_tree_columns(cur, table, types)
        return CsvTransform(
            format=TREE_FORMAT,
            message=_tree_message(cur, table, "Tree format"),
            extra=_long_extra(cur, table),
        )
    if fmt == FLAT_FORMAT:
        _flat_to_tree(cur, table, types)
        _fill_tree_columns(cur, table, types)
        return CsvTransform(
            format=FLAT_FORMAT,
            message=_tree_message(cur, table, "Flat format (as tree)"),
            extra=_long_extra(cur, table),
        )
    count = cur.execute(f"SELECT count(*) FROM {q}").fetchone()
    n = int(count[0]) if count else 0
    lower = {c.lower() for c in types}
    if fmt == SIMPLE_JUDGMENT:
        if "critique" not in lower:
            _add_column(cur, table, "critique", "")
        return CsvTransform(format=SIMPLE_JUDGMENT, message=f"Simple judgment format with {n} evaluations")
    if fmt == FRESH_ANNOTATION:
        if "critique" not in lower:
            _add_column(cur, table, "critique", "")
        if "evaluation_metadata" not in lower:
            _add_column(cur, table, "evaluation_metadata", "{}")
        return CsvTransform(format=FRESH_ANNOTATION, message=f"Fresh annotation for {n} model outputs")
    raise Invalid(
        "Could not detect valid data format. Please check the sample formats: an eval CSV needs "
        "metric_name and metric_score (one row per metric; add parent and metric_type for a metric tree), "
        "or run_id, dataset_id and passed (an eval-runner export), or a judgment column, or dataset_id, "
        "evaluation_name, query and actual_output (outputs to annotate). "
        f"Columns found: {', '.join(found[:30])}{_delimiter_hint(found)}"
        + (". Column names are case-sensitive." if found != list(types) else "")
    )


def _delimiter_hint(columns: list[str]) -> str:
    """A hint when the only column name holds another separator (a ';'- or tab-separated file)."""
    if len(columns) != 1:
        return ""
    for sep, label in ((";", "semicolons"), ("\t", "tabs"), ("|", "pipes")):
        if sep in columns[0]:
            return f". The header looks separated by {label}: save the file with commas as separators"
    return ""


def eval_csv_transform(cur: duckdb.DuckDBPyConnection, table: str, load: CsvLoadResult) -> CsvTransform:
    """``csv_ingest`` transform hook: §4.3 processing of a freshly parsed eval CSV."""
    return process_eval_table(cur, table)


def parse_literal_list(value: Any) -> Any:
    """§4.3 retrieved_content cell: JSON or Python literal when it parses, else the raw string; null → []."""
    if value is None:
        return []
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return []
    try:
        return _encodable(json.loads(text), value)
    except (ValueError, RecursionError):  # too deeply nested for Python's decoder: try the literal
        pass
    try:
        return _encodable(ast.literal_eval(text), value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return value


def _encodable(parsed: Any, raw: str) -> Any:
    """``parsed`` unless it holds text UTF-8 cannot encode (a lone surrogate escape such as "\\ud800"): then ``raw``."""
    try:
        json.dumps(parsed, ensure_ascii=False, default=str, skipkeys=True).encode("utf-8")
    except (UnicodeEncodeError, ValueError, TypeError, RecursionError):
        return raw
    return parsed


async def _response_rows(
    store: DuckDBStore, info: DatasetInfo, report: CsvTransform, row_cap: int
) -> tuple[list[dict[str, Any]], RenderedRows]:
    """The preview and the capped ``data`` rows (rendered as JSON by DuckDB) of a stored dataset."""
    parse_lists = report.format in LONG_FORMATS and "retrieved_content" in info.column_names

    def _fetch(cur: duckdb.DuckDBPyConnection) -> tuple[list[dict[str, Any]], RenderedRows]:
        if parse_lists:
            # §4.3 list cells are parsed in Python (JSON or Python literals), so these rows are too.
            table = fetch_rows(cur, head_rows_sql(info.table_name), [max(row_cap, PREVIEW_ROWS), 0])
            for row in table.data:
                row["retrieved_content"] = parse_literal_list(row["retrieved_content"])
            return table.data[:PREVIEW_ROWS], RenderedRows.of(table.data[:row_cap])
        return preview_and_rows_sync(cur, info.table_name, PREVIEW_ROWS, row_cap)

    return await store.run_read(_fetch)


async def load_result(store: DuckDBStore, info: DatasetInfo, report: CsvTransform, row_cap: int) -> UploadResponse:
    """The Ref upload response of a stored eval dataset: preview and the capped ``data`` rows."""
    preview, data = await _response_rows(store, info, report, row_cap)
    return UploadResponse(
        format=report.format or info.format or UNKNOWN_FORMAT,
        row_count=info.row_count,
        columns=info.column_names,
        preview=preview,
        message=report.message or "",
        data=[],
        dataset_id=info.dataset_id,
        data_truncated=info.row_count > data.size,
    ).with_rows(data)


async def upload_eval_csv(
    store: DuckDBStore, upload: UploadLike, *, max_bytes: int, spool_dir: Path, row_cap: int
) -> UploadResponse:
    """POST /upload: spool, parse, process (§4.3) and land an eval CSV; Ref response payload."""
    res = await ingest_csv_upload(
        store, upload, kind="eval", max_bytes=max_bytes, spool_dir=spool_dir, transform=eval_csv_transform
    )
    return await load_result(store, res.dataset, res.transform, row_cap)


async def detect_upload_format(
    store: DuckDBStore, upload: UploadLike, *, max_bytes: int, spool_dir: Path
) -> DetectFormatResponse:
    """POST /detect-format: raw detection on the parsed file (nothing is stored)."""
    spooled = await spool_upload(upload, max_bytes=max_bytes, spool_dir=spool_dir)

    def _detect(cur: duckdb.DuckDBPyConnection) -> DetectFormatResponse:
        header, row_count = count_csv_rows(cur, spooled.path)
        return DetectFormatResponse(format=detect_data_format(header), columns=header, row_count=row_count)

    try:
        return await store.run_read(_detect)
    finally:
        await anyio.to_thread.run_sync(spooled.remove)


def example_path(sample_dir: Path, name: str) -> Path:
    """Sample file of an example name; unknown name or missing file → NotFound."""
    if name not in EXAMPLE_FILES:
        raise NotFound(f"Dataset not found. Available: {sorted(EXAMPLE_FILES)}")
    path = sample_dir / EXAMPLE_FILES[name]
    if not path.is_file():
        raise NotFound(f"Example dataset '{name}' is not available (missing {EXAMPLE_FILES[name]})")
    return path


async def load_example(store: DuckDBStore, name: str, *, sample_dir: Path, row_cap: int) -> ExampleResponse:
    """GET /example/{name}: load a sample CSV through the upload path, source ``example:<name>``."""
    path = example_path(sample_dir, name)
    res = await ingest_csv_file(store, path, kind="eval", source=f"example:{name}", transform=eval_csv_transform)
    info, report = res.dataset, res.transform
    _, data = await _response_rows(store, info, report, row_cap)
    return ExampleResponse(
        format=report.format or info.format or UNKNOWN_FORMAT,
        row_count=info.row_count,
        columns=info.column_names,
        data=[],
        message=report.message or "",
        dataset_id=info.dataset_id,
        data_truncated=info.row_count > data.size,
    ).with_rows(data)
