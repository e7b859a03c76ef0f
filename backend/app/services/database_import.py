"""Database imports into the DuckDB store (spec §6.2 ``query-import`` / ``import``, §6.4).

Imports read through ONE server-side cursor, stream Arrow batches into a DuckDB scratch table, dedupe
on the id key (first row wins; rows with a NULL key are kept), apply the rename map of the targeted
store (DB-20) and land a dataset whose kind follows the detected format (eval, monitoring or
human_signals) through ``store.land_dataset``. The order is the query's own when its outermost
query has an ``ORDER BY`` (so ``ORDER BY created DESC`` with a limit imports the latest rows);
otherwise it is made stable with ``ORDER BY`` the id key, then every other orderable column. The
whole read (connection, query, every fetch) runs under one deadline, ``DB_IMPORT_TIMEOUT_SECONDS``;
when it passes, the server-side query is cancelled and the request answers 408.
"""

from __future__ import annotations

import asyncio
import decimal
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import asyncpg
import duckdb
import pyarrow as pa

from app.config import Settings
from app.errors import Invalid
from app.models.database import (
    DatabaseImportResponse,
    QueryImportRequest,
    TableImportRequest,
)
from app.services import data_processor, human_signals_service, monitoring_service
from app.services.column_aliases import MONITORING_ALIASES, normalise_column_key
from app.services.connection_store import ConnectionStore
from app.services.database_session import (
    PgTable,
    Session,
    check_function_owners,
    check_request_columns,
    checked_query,
    decoding_errors,
    open_session,
    projection_sql,
    resolve_pg_table,
    store_config,
    timeout_error,
    where_sql,
)
from app.services.duckdb_store import DB_IMPORT_SCRATCH_PREFIX, ORDINAL, DatasetInfo, DuckDBStore, quote_ident
from app.services.json_rows import PREVIEW_ROWS, preview_and_rows_sync
from app.services.pg_source import utc_naive
from app.services.pg_text import text_reads

CANONICAL_COLUMNS = ("query", "dataset_id", "metric_name", "metric_score", "actual_output", "evaluation_name")
# PostgreSQL types without a btree ordering (none of their own, none through a binary-compatible
# type; from pg_opclass of PostgreSQL 15): never part of an import's stable ORDER BY.
UNORDERABLE_TYPES = frozenset(
    {
        "json", "jsonpath", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle", "xid", "cid",
        "void", "aclitem", "refcursor", "gtsvector", "txid_snapshot", "pg_snapshot", "pg_node_tree", "pg_ndistinct",
        "pg_dependencies", "pg_mcv_list", "pg_brin_bloom_summary", "pg_brin_minmax_multi_summary",
    }
)  # fmt: skip
HUMAN_SIGNALS_REQUIRED = ("metric_name", "dataset_id", "signals")
MONITORING_TIME_KEYS = ("timestamp", "time", "created_at", "dataset_created_at")
MONITORING_LATENCY_KEYS = ("latency", "latency_ms", "response_time")
STORE_KINDS = {"data": "eval", "eval": "eval", "monitoring": "monitoring", "human_signals": "human_signals"}


# ------------------------------------------------------------------------------ import: arrow
@dataclass
class _ArrowColumn:
    name: str
    arrow_type: pa.DataType
    convert: Callable[[Any], Any] | None = None
    duck_cast: str | None = None
    orderable: bool = True
    read_sql: str | None = None  # how the import reads the column ({} = the column), when not as itself


# An interval read as its three fields (months, days, microseconds): the driver's timedelta folds a year
# into 365 days and a month into 30, so '1 year' would land 6 hours short of PostgreSQL's (and the
# sync's) 365.25-day year. The fields keep the value exact, as DuckDB's INTERVAL holds the same three.
INTERVAL_PARTS_SQL = (
    "CASE WHEN {0} IS NULL THEN NULL ELSE ARRAY["
    "(extract(year FROM {0}) * 12 + extract(month FROM {0}))::bigint, extract(day FROM {0})::bigint, "
    "((extract(hour FROM {0}) * 3600 + extract(minute FROM {0}) * 60) * 1000000 "
    "+ extract(microseconds FROM {0}))::bigint] END"
)


def _month_day_nano(parts: Sequence[int]) -> tuple[int, int, int]:
    """(months, days, microseconds) as Arrow's month_day_nano."""
    return (int(parts[0]), int(parts[1]), int(parts[2]) * 1000)


def _decimal_text(v: Any) -> str | None:
    """Exact text of a finite numeric (NaN/±Infinity → NULL)."""
    d = v if isinstance(v, decimal.Decimal) else decimal.Decimal(str(v))
    return format(d, "f") if d.is_finite() else None


NUMERIC_FROM_DATA = "NUMERIC_FROM_DATA"


def _finite_decimal(v: decimal.Decimal) -> decimal.Decimal | None:
    return v if v.is_finite() else None


_NUMERIC_RE = re.compile(r"numeric\((\d+),(\d+)\)")

_SCALARS: dict[str, tuple[pa.DataType, Callable[[Any], Any] | None, str | None]] = {
    "bool": (pa.bool_(), None, None),
    "int2": (pa.int16(), None, None),
    "int4": (pa.int32(), None, None),
    "int8": (pa.int64(), None, None),
    "oid": (pa.int64(), None, None),
    "float4": (pa.float32(), None, None),
    "float8": (pa.float64(), None, None),
    "text": (pa.string(), None, None),
    "varchar": (pa.string(), None, None),
    "bpchar": (pa.string(), None, None),
    "name": (pa.string(), None, None),
    "char": (pa.string(), str, None),
    "citext": (pa.string(), str, None),
    "uuid": (pa.string(), str, "UUID"),
    "json": (pa.string(), None, "JSON"),
    "jsonb": (pa.string(), None, "JSON"),
    "date": (pa.date32(), None, None),
    "timestamp": (pa.timestamp("us"), None, None),
    "timestamptz": (pa.timestamp("us"), utc_naive, None),
    "time": (pa.time64("us"), None, None),
    "interval": (pa.duration("us"), None, None),
    "bytea": (pa.binary(), bytes, None),
}


def _json_text(v: Any) -> str:
    return json.dumps(v, default=str)


def _arrow_column(name: str, pg_type: Any, declared: str | None, text_read: str | None = None) -> _ArrowColumn:
    """Arrow type (and value conversion) for a PostgreSQL result column.

    ``text_read``: the column is read as PostgreSQL's text (a range, multirange or composite, or an
    array of them: :func:`~app.services.pg_text.text_reads`), so it lands as that text (an array as
    the JSON list of its elements' text, like other arrays).
    """
    typname = str(getattr(pg_type, "name", ""))
    kind = str(getattr(pg_type, "kind", "scalar"))
    orderable = typname not in UNORDERABLE_TYPES and kind != "composite"
    if text_read is not None:
        if kind == "array":
            return _ArrowColumn(name, pa.string(), _json_text, None, False, text_read)
        return _ArrowColumn(name, pa.string(), None, None, orderable, text_read)
    if typname == "numeric":
        m = _NUMERIC_RE.fullmatch((declared or "").replace(" ", ""))
        if m and int(m.group(1)) <= 38:
            return _ArrowColumn(name, pa.decimal128(int(m.group(1)), int(m.group(2))), _finite_decimal)
        # Unknown precision/scale (query results): carry exact text, type it from the data when landing.
        return _ArrowColumn(name, pa.string(), _decimal_text, NUMERIC_FROM_DATA)
    if typname == "interval" and kind == "scalar":
        return _ArrowColumn(name, pa.month_day_nano_interval(), _month_day_nano, None, orderable, INTERVAL_PARTS_SQL)
    if typname in _SCALARS:
        arrow_type, convert, cast = _SCALARS[typname]
        return _ArrowColumn(name, arrow_type, convert, cast, orderable)
    if kind == "array" and typname.startswith("_") and typname[1:] in _SCALARS:
        elem_type, elem_convert, _ = _SCALARS[typname[1:]]
        if elem_convert is None:
            return _ArrowColumn(name, pa.list_(elem_type), None, None, False)
        conv = elem_convert
        return _ArrowColumn(
            name, pa.list_(elem_type), lambda v: [None if x is None else conv(x) for x in v], None, False
        )
    if kind == "array":
        return _ArrowColumn(name, pa.string(), _json_text, None, False)
    return _ArrowColumn(name, pa.string(), str, None, orderable)


def _record_batch(records: Sequence[asyncpg.Record], cols: list[_ArrowColumn], start: int) -> pa.Table:
    arrays = []
    transposed = list(zip(*records, strict=True)) if records else [() for _ in cols]
    for i, col in enumerate(cols):
        values: Sequence[Any] = transposed[i]
        if col.convert is not None:
            conv = col.convert
            values = [None if v is None else conv(v) for v in values]
        try:
            arrays.append(pa.array(values, type=col.arrow_type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError) as exc:
            raise Invalid(
                f"Column '{col.name}' holds values that cannot be imported as {col.arrow_type}: "
                f"{str(exc)[:120]}. Cast it to text in the query."
            ) from None
    arrays.append(pa.array(range(start, start + len(records)), type=pa.int64()))
    return pa.Table.from_arrays(arrays, names=[c.name for c in cols] + [ORDINAL])


# ------------------------------------------------------------------------------ import: plan
@dataclass
class ImportPlan:
    """Kind, renames and dedupe key for one import, computed from the column names."""

    kind: str
    renames: dict[str, str]
    key: list[str] = field(default_factory=list)
    eval_format: str | None = None


def detect_kind(columns: Sequence[str], preferred: str) -> ImportPlan:
    """Pick the dataset kind from column names (preferring the targeted store's kind)."""
    norm = {normalise_column_key(c) for c in columns}
    candidates: dict[str, ImportPlan] = {}
    if set(HUMAN_SIGNALS_REQUIRED) <= norm:
        hs = {
            c: normalise_column_key(c)
            for c in columns
            if normalise_column_key(c) in HUMAN_SIGNALS_REQUIRED and normalise_column_key(c) != c
        }
        taken = set(columns)
        hs = {k: v for k, v in hs.items() if v not in taken}
        candidates["human_signals"] = ImportPlan("human_signals", hs)
    eval_renames = data_processor.eval_alias_renames(list(columns))
    renamed = [eval_renames.get(c, c) for c in columns]
    renamed = [data_processor.BACK_COMPAT_RENAMES.get(c, c) for c in renamed]
    eval_fmt = data_processor.detect_data_format(renamed)
    if eval_fmt != data_processor.UNKNOWN_FORMAT:
        candidates["eval"] = ImportPlan("eval", eval_renames, eval_format=eval_fmt)
    has_id = any(k in norm for k in monitoring_service.ID_KEYS)
    has_signal = any(k in norm for k in (*MONITORING_TIME_KEYS, *MONITORING_LATENCY_KEYS)) or any(
        k.endswith("_score") for k in norm
    )
    if has_id and has_signal:
        mon = monitoring_service.plan_renames(list(columns), None, MONITORING_ALIASES)
        candidates["monitoring"] = ImportPlan("monitoring", {k: v for k, v in mon.items() if k != v})
    if preferred in candidates:
        plan = candidates[preferred]
    else:
        plan = next(
            (candidates[k] for k in ("human_signals", "eval", "monitoring") if k in candidates),
            ImportPlan("eval", {}, eval_format=None),
        )
    final = [plan.renames.get(c, c) for c in columns]
    inverse = {plan.renames.get(c, c): c for c in columns}
    id_col = "dataset_id" if "dataset_id" in final else ("id" if "id" in final else None)
    if id_col is not None:
        plan.key = [inverse[id_col]] + ([inverse["metric_name"]] if "metric_name" in final else [])
    return plan


def apply_rename_map(columns: Sequence[str], rename_map: dict[str, str]) -> dict[str, str]:
    """Exact-name renames of the targeted store's ``columns`` map; targets that collide are skipped."""
    taken = set(columns)
    out: dict[str, str] = {}
    for col in columns:
        target = rename_map.get(col)
        if target and target != col and target not in taken:
            out[col] = target
            taken.discard(col)
            taken.add(target)
    return out


# ------------------------------------------------------------------------------ import: run
@dataclass
class _Source:
    """What an import reads: SQL, its bound values, declared column types, whether it sets its own order."""

    sql: str
    params: list[Any]
    declared: dict[str, str]
    ordered: bool = False


async def query_import(
    conns: ConnectionStore,
    store: DuckDBStore,
    settings: Settings,
    handle_id: str,
    req: QueryImportRequest,
    store_key: str | None,
) -> DatabaseImportResponse:
    """``POST /{handle}/query-import``: a validated SELECT streamed into a stored dataset."""
    if req.handle != handle_id:
        raise Invalid("Handle in the request body does not match the handle in the path")
    handle = await conns.lookup(handle_id)
    allowed = list(store_config(settings, handle.store).tables)
    safe = await checked_query(req.query, allowed)

    async def _source(s: Session) -> _Source:
        await check_function_owners(s, safe)
        return _Source(safe.sql, [], {}, ordered=safe.ordered)

    return await _import(conns, store, settings, handle_id, store_key, req.limit, req.dedupe_on_id, source_sql=_source)


async def table_import(
    conns: ConnectionStore,
    store: DuckDBStore,
    settings: Settings,
    handle_id: str,
    req: TableImportRequest,
    store_key: str | None,
) -> DatabaseImportResponse:
    """``POST /{handle}/import``: a table (mapped, filtered) streamed into a stored dataset."""
    if req.handle != handle_id:
        raise Invalid("Handle in the request body does not match the handle in the path")
    resolved: dict[str, PgTable] = {}

    async def _source(s: Session) -> _Source:
        t = await resolve_pg_table(s, req.table)
        resolved["t"] = t
        check_request_columns(t, req.mappings, req.filters)
        select = projection_sql(t, req.mappings)
        where, params = where_sql(t, req.filters, 1)  # the LIMIT is bound after the filter values
        declared = {c.name: c.data_type for c in t.columns}
        if req.mappings:
            declared = {m.target: declared[m.source] for m in req.mappings}
        return _Source(f"SELECT {select} FROM {t.sql}{where}", params, declared)

    return await _import(conns, store, settings, handle_id, store_key, req.limit, req.dedupe_on_id, source_sql=_source)


async def _import(
    conns: ConnectionStore,
    store: DuckDBStore,
    settings: Settings,
    handle_id: str,
    store_key: str | None,
    limit: int,
    dedupe: bool,
    source_sql: Callable[[Session], Awaitable[_Source]],
) -> DatabaseImportResponse:
    if limit > settings.db_import_max_rows:
        raise Invalid(f"limit must be at most {settings.db_import_max_rows}")
    handle = await conns.lookup(handle_id)
    target_store = store_key or handle.store
    cfg = store_config(settings, target_store)
    preferred = STORE_KINDS.get(target_store, "eval")
    scratch = f"{DB_IMPORT_SCRATCH_PREFIX}{uuid.uuid4().hex[:12]}"
    created: list[bool] = []
    timeout_s = settings.db_import_timeout_seconds
    try:
        try:
            # One deadline for the whole read: statement_timeout alone restarts with every FETCH.
            async with asyncio.timeout(timeout_s), open_session(conns, settings, handle_id, timeout_s) as s:
                src = await source_sql(s)
                limit_param = f"${len(src.params) + 1}"
                probe = await s.conn.prepare(f"SELECT * FROM (\n{src.sql}\n) AS _axis_src LIMIT {limit_param}")
                attrs = probe.get_attributes()
                names = [a.name for a in attrs]
                _check_result_names(names)
                reads = await text_reads(s.conn, [a.type for a in attrs])
                cols = [
                    _arrow_column(a.name, a.type, src.declared.get(a.name), reads.get(i)) for i, a in enumerate(attrs)
                ]
                custom = apply_rename_map(names, cfg.column_rename_map)
                mapped = [custom.get(n, n) for n in names]
                plan = detect_kind(mapped, preferred)
                order_sql = "" if src.ordered else _stable_order(mapped, cols, plan.key if dedupe else [])
                stmt = await s.conn.prepare(
                    f"SELECT {_read_list(cols)} FROM (\n{src.sql}\n) AS _axis_src{order_sql} LIMIT {limit_param}"
                )
                read = await _stream(
                    stmt, [*src.params, limit], cols, store, scratch, settings.db_import_batch_rows, created
                )
        except TimeoutError:
            raise timeout_error(timeout_s) from None
        if read == 0:
            return DatabaseImportResponse(
                format="database_import",
                row_count=0,
                columns=[],
                preview=[],
                data=[],
                message="No data found matching the specified criteria",
                dataset_id=None,
            )
        return await _land(store, settings, scratch, cols, custom, plan, dedupe, read, target_store)
    finally:
        if created:
            await store.execute_write(f"DROP TABLE IF EXISTS {quote_ident(scratch)}")


def _read_list(cols: list[_ArrowColumn]) -> str:
    """The select list of the read: ``*`` unless a column is read through its ``read_sql``."""
    if not any(c.read_sql for c in cols):
        return "*"
    parts = []
    for c in cols:
        ref = f"_axis_src.{quote_ident(c.name)}"
        parts.append(f"{c.read_sql.format(ref)} AS {quote_ident(c.name)}" if c.read_sql else ref)
    return ", ".join(parts)


def _stable_order(mapped: list[str], cols: list[_ArrowColumn], key: list[str]) -> str:
    """``ORDER BY`` the id key, then every other orderable column (by position); "" when none.

    A key column of a type without an ordering (a json id) is left out like any other such column.
    """
    key_positions = [mapped.index(k) + 1 for k in key if cols[mapped.index(k)].orderable]
    order = key_positions + [i + 1 for i, c in enumerate(cols) if c.orderable and i + 1 not in key_positions]
    return f" ORDER BY {', '.join(map(str, order))}" if order else ""


async def _numeric_types(store: DuckDBStore, scratch: str, names: list[str]) -> dict[str, str]:
    """``DECIMAL(p,s)`` wide enough for every value of each numeric text column (DOUBLE beyond 38 digits)."""
    if not names:
        return {}
    parts = []
    for name in names:
        q = quote_ident(name)
        digits = f"ltrim(split_part({q}, '.', 1), '-')"
        parts.append(f"max(length(split_part({q}, '.', 2))), max(length({digits}))")
    row = (await store.fetch(f"SELECT {', '.join(parts)} FROM {quote_ident(scratch)}")).rows[0]
    out: dict[str, str] = {}
    for i, name in enumerate(names):
        scale, whole = int(row[2 * i] or 0), max(int(row[2 * i + 1] or 1), 1)
        precision = whole + scale
        out[name] = f"DECIMAL({max(precision, 1)},{scale})" if precision <= 38 else "DOUBLE"
    return out


async def _land_signals(
    store: DuckDBStore,
    settings: Settings,
    scratch: str,
    cols: list[_ArrowColumn],
    custom: dict[str, str],
    qualify: str,
) -> DatasetInfo:
    """Human-signals rows go through the human-signals loader (raw rows + cases + metric schema)."""
    select = ", ".join(f"{quote_ident(c.name)} AS {quote_ident(custom.get(c.name, c.name))}" for c in cols)
    sql = f"SELECT {select} FROM {quote_ident(scratch)}{qualify} ORDER BY {ORDINAL}"
    table: pa.Table = await store.run_read(lambda cur: cur.execute(sql).fetch_arrow_table())
    return await human_signals_service.land_arrow_signals(store, settings, table, None, "database")


def _check_result_names(names: list[str]) -> None:
    if not names:
        raise Invalid("The query returns no columns (SELECT FROM …, or a table without columns); select at least one.")
    seen: dict[str, str] = {}
    dups = []
    for n in names:
        if n.lower() in seen:
            dups.append(n)
        seen[n.lower()] = n
    if dups:
        raise Invalid(f"Duplicate column names in the result: {', '.join(dups)}. Give each column a unique alias.")
    if ORDINAL in names:
        raise Invalid(f"Column name '{ORDINAL}' is reserved")


async def _stream(
    stmt: Any,
    args: list[Any],
    cols: list[_ArrowColumn],
    store: DuckDBStore,
    scratch: str,
    batch_rows: int,
    created: list[bool],
) -> int:
    """Read ``stmt`` through one server-side cursor into DuckDB table ``scratch``; returns rows read.

    ``created`` gets an entry once the scratch table exists (so the caller can drop it).
    """
    cursor = await stmt.cursor(*args)
    total = 0
    while True:
        with decoding_errors():
            records = await cursor.fetch(batch_rows)
        if not records:
            break
        batch = await anyio.to_thread.run_sync(_record_batch, records, cols, total)  # CPU work off the event loop
        first = not created

        def _append(cur: duckdb.DuckDBPyConnection, batch: pa.Table = batch, first: bool = first) -> None:
            cur.register("_axis_batch", batch)
            try:
                verb = f"CREATE TABLE {quote_ident(scratch)} AS" if first else f"INSERT INTO {quote_ident(scratch)}"
                cur.execute(f"{verb} SELECT * FROM _axis_batch")
            finally:
                cur.unregister("_axis_batch")

        await store.run_write(_append)
        created.append(True)
        total += len(records)
    return total


async def _land(
    store: DuckDBStore,
    settings: Settings,
    scratch: str,
    cols: list[_ArrowColumn],
    custom: dict[str, str],
    plan: ImportPlan,
    dedupe: bool,
    read: int,
    target_store: str,
) -> DatabaseImportResponse:
    casts = await _numeric_types(store, scratch, [c.name for c in cols if c.duck_cast == NUMERIC_FROM_DATA])
    select = []
    for c in cols:
        out = quote_ident(custom.get(c.name, c.name))
        src = quote_ident(c.name)
        cast = casts.get(c.name) if c.duck_cast == NUMERIC_FROM_DATA else c.duck_cast
        select.append(f"TRY_CAST({src} AS {cast}) AS {out}" if cast else f"{src} AS {out}")
    qualify = ""
    if dedupe and plan.key:
        src_keys = [quote_ident(next(c.name for c in cols if custom.get(c.name, c.name) == k)) for k in plan.key]
        any_null = " OR ".join(f"{k} IS NULL" for k in src_keys)
        qualify = (
            f" QUALIFY ({any_null}) OR row_number() OVER (PARTITION BY {', '.join(src_keys)} ORDER BY {ORDINAL}) = 1"
        )
    holder: dict[str, Any] = {}

    def _raw(cur: duckdb.DuckDBPyConnection, target: str) -> None:
        cur.execute(
            f"CREATE VIEW {quote_ident(target)} AS SELECT {', '.join(select)} FROM {quote_ident(scratch)}"
            f"{qualify} ORDER BY {ORDINAL}"
        )

    def _renamed(cur: duckdb.DuckDBPyConnection, source: str, target: str, renames: dict[str, str]) -> None:
        names = [c["name"] for c in DuckDBStore.describe_sync(cur, source)]
        proj = ", ".join(f"{quote_ident(n)} AS {quote_ident(renames.get(n, n))}" for n in names)
        cur.execute(f"CREATE TABLE {quote_ident(target)} AS SELECT {proj} FROM {quote_ident(source)}")

    def build(cur: duckdb.DuckDBPyConnection, staging: str) -> None:
        raw = f"{staging}__raw"
        cur.execute(f"DROP VIEW IF EXISTS {quote_ident(raw)}")
        _raw(cur, raw)
        try:
            if plan.kind == "monitoring":
                res = monitoring_service.process_monitoring_sync(cur, raw, staging, None)
                holder.update(format=res.format, message=res.message, extra=res.extra)
            else:
                _renamed(cur, raw, staging, plan.renames)
                try:
                    report = data_processor.process_eval_table(cur, staging)
                    holder.update(format=report.format, message=report.message)
                except Invalid:
                    cur.execute(f"DROP TABLE IF EXISTS {quote_ident(staging)}")
                    _renamed(cur, raw, staging, {})
                    holder.update(format="database_import", message="")
        finally:
            cur.execute(f"DROP VIEW IF EXISTS {quote_ident(raw)}")

    def after(cur: duckdb.DuckDBPyConnection, info: DatasetInfo) -> None:
        info.format = holder["format"]
        info.extra = {**info.extra, **holder.get("extra", {})}
        DuckDBStore.set_dataset_format_sync(cur, info)

    try:
        if plan.kind == "human_signals":
            info = await _land_signals(store, settings, scratch, cols, custom, qualify)
            holder.update(format=info.format or human_signals_service.FORMAT, message="")
        else:
            info = await store.land_dataset(
                kind=plan.kind,
                source="database",
                build=build,
                extra={"target_store": target_store, "rows_read": read},
                after_swap=after,
            )
    except duckdb.Error as exc:
        raise Invalid(f"Import failed: {str(exc).splitlines()[0][:300]}") from None
    if plan.kind == "monitoring":
        await monitoring_service.finish_monitoring_load(store, info)
    preview, data = await store.run_read(
        lambda cur: preview_and_rows_sync(cur, info.table_name, PREVIEW_ROWS, settings.upload_response_row_cap)
    )
    removed = read - info.row_count
    message = f"Imported {info.row_count} rows from database as a dataset of kind '{plan.kind}'"
    if removed:
        message += f" ({removed} duplicate rows removed)"
    message += "." + (f" {holder['message']}" if holder.get("message") else "")
    if not any(c in info.column_names for c in CANONICAL_COLUMNS):
        message += (
            " Warning: no canonical columns (query, dataset_id, metric_name, metric_score, actual_output, "
            "evaluation_name) detected; map your columns to use the analytics views."
        )
    return DatabaseImportResponse(
        format=info.format or "database_import",
        row_count=info.row_count,
        columns=info.column_names,
        preview=preview,
        message=message,
        data=[],
        dataset_id=info.dataset_id,
        data_truncated=info.row_count > data.size,
        kind=info.kind,
        duplicates_removed=removed,
    ).with_rows(data)
