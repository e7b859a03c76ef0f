"""Interactive PostgreSQL browser (spec §6): connect, browse, safe queries and imports into DuckDB.

Every identifier that reaches PostgreSQL SQL is first checked for shape (no quotes, semicolons,
control or format characters, NFKC-normalised, ≤ 63 bytes), then looked up in the catalogue, and
only then double-quoted; every value is a bound parameter. Browsing and queries run inside
``BEGIN READ ONLY`` with ``SET LOCAL`` timeouts and are always rolled back.

User SQL passes the tokenizer gate in :mod:`app.services.sql_safety`. That gate and the read-only
transaction are defence in depth; the real boundary is the PostgreSQL role: connect with a role
that can only ``SELECT`` what users may see. With a ``tables`` allow-list, the gate's list of names
used as functions is also checked against the catalogue: a function of a schema other than
``pg_catalog`` on the pinned ``search_path`` is refused (422), because it could read any table.

``/query`` and ``/preview`` results are bounded twice: by ``limit`` rows and by
``DB_QUERY_MAX_RESULT_MB``. The size is measured in SQL (the text form of each row) on the limited
rows before any value is sent, so an over-size result is refused (413) without being read into
Python. Values PostgreSQL can hold but Python cannot decode (dates and timestamps outside years
1–9999) answer 400 with a hint to cast the column to text.

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
import logging
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import anyio
import asyncpg
import duckdb
import pyarrow as pa

from app.config import Settings
from app.config.db_configs import DBImportConfig, parse_dsn
from app.errors import Invalid, NotFound, PayloadTooLarge, ServiceError, Timeout, Unprocessable, Upstream
from app.models.database import (
    CloseResponse,
    ColumnFilter,
    ColumnInfo,
    ColumnMapping,
    ConnectRequest,
    ConnectResponse,
    DatabaseDefaults,
    DatabaseImportResponse,
    DistinctValuesRequest,
    DistinctValuesResponse,
    FilterOut,
    HandleStatsResponse,
    PreviewRequest,
    QueryImportRequest,
    QueryRequest,
    RowsResponse,
    SchemaResponse,
    TableImportRequest,
    TableInfo,
    TableRef,
    TablesResponse,
)
from app.services import data_processor, human_signals_service, monitoring_service
from app.services.column_aliases import MONITORING_ALIASES, normalise_column_key
from app.services.connection_store import ConnectionHandle, ConnectionStore, Credentials, scrub_error
from app.services.duckdb_store import DatasetInfo, DuckDBStore, quote_ident
from app.services.json_rows import preview_and_rows_sync
from app.services.pg_source import utc_naive
from app.services.sql_safety import SafeQuery, table_allowed, validate_select

logger = logging.getLogger(__name__)

MASKED_PASSWORD = "********"
PREVIEW_ROWS = 10
SAMPLE_ROWS = 5
# Sample values longer than this (as PostgreSQL text) are left out of /schema samples, so a table of
# large documents or blobs does not send them over the wire or into the response.
SAMPLE_VALUE_MAX_BYTES = 8192
ORDINAL = "__axis_ord"
MAX_IDENTIFIER_BYTES = 63
CANONICAL_COLUMNS = ("query", "dataset_id", "metric_name", "metric_score", "actual_output", "evaluation_name")
# PostgreSQL types without a default btree ordering: never part of an import's stable ORDER BY.
UNORDERABLE_TYPES = frozenset(
    {"json", "xml", "point", "line", "lseg", "box", "path", "polygon", "circle", "xid", "cid", "void", "aclitem"}
)
HUMAN_SIGNALS_REQUIRED = ("metric_name", "dataset_id", "signals")
MONITORING_TIME_KEYS = ("timestamp", "time", "created_at", "dataset_created_at")
MONITORING_LATENCY_KEYS = ("latency", "latency_ms", "response_time")
STORE_KINDS = {"data": "eval", "eval": "eval", "monitoring": "monitoring", "human_signals": "human_signals"}


def build_connection_store(settings: Settings) -> ConnectionStore:
    """The app's connection store, configured from settings."""
    return ConnectionStore(
        ttl_seconds=settings.db_handle_ttl_seconds,
        max_handles=settings.db_max_handles,
        connect_timeout=settings.db_connect_timeout_seconds,
        statement_timeout_seconds=settings.db_statement_timeout_seconds,
        pool_max_size=settings.db_pool_max_size,
        max_concurrent_per_handle=settings.db_handle_max_concurrent,
        application_name=settings.db_application_name,
    )


# ------------------------------------------------------------------------------ config + handles
def store_config(settings: Settings, store_key: str) -> DBImportConfig:
    """The import config of a store key (data/monitoring/human_signals); unknown → 400."""
    try:
        return settings.db_config(store_key)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


def get_defaults(settings: Settings, store_key: str) -> DatabaseDefaults:
    """``GET /defaults``: the store's configured connection without password or URL."""
    cfg = store_config(settings, store_key)
    params = cfg.connection_params() if cfg.is_configured else None
    return DatabaseDefaults(
        host=params.host if params else cfg.host,
        port=params.port if params else cfg.port,
        database=(params.database or None) if params else cfg.database,
        username=(params.username or None) if params else cfg.username,
        has_password=bool(params and params.password is not None and params.password.get_secret_value()),
        ssl_mode=params.ssl_mode if params else cfg.ssl_mode,
        table=getattr(cfg, "table", None),
        has_defaults=cfg.is_configured,
        tables=list(cfg.tables),
        filters=[FilterOut(column=f.column, label=f.label) for f in cfg.filters],
        column_rename_map=dict(cfg.column_rename_map),
        query=cfg.dataset_query,
        query_timeout=cfg.query_timeout,
        row_limit=cfg.row_limit,
    )


def _configured_password(cfg: DBImportConfig) -> str | None:
    if cfg.password is not None and cfg.password.get_secret_value():
        return cfg.password.get_secret_value()
    if cfg.url is not None:
        return parse_dsn(cfg.url.get_secret_value()).password
    return None


async def connect(conns: ConnectionStore, settings: Settings, store_key: str, req: ConnectRequest) -> ConnectResponse:
    """``POST /connect``: test the credentials and return a handle."""
    cfg = store_config(settings, store_key)
    password: str | None = req.password.get_secret_value()
    if password == MASKED_PASSWORD:
        password = _configured_password(cfg)
        if not password:
            raise Invalid("No password is configured for this store; enter the password.")
    creds = Credentials(
        host=req.host,
        port=req.port,
        database=req.database,
        username=req.username,
        password=password or None,
        ssl_mode=req.ssl_mode,
    )
    handle, version = await conns.open_handle(creds, "data" if store_key == "eval" else store_key)
    return ConnectResponse(handle=handle.handle, message="Connection successful", version=version)


async def close_connection(conns: ConnectionStore, handle_id: str) -> CloseResponse:
    """``DELETE /{handle}``."""
    if await conns.close_handle(handle_id):
        return CloseResponse(success=True, message="Connection closed")
    return CloseResponse(success=False, message="Handle not found or already expired")


async def handle_stats(conns: ConnectionStore) -> HandleStatsResponse:
    """``GET /stats``."""
    active, cap = await conns.stats()
    return HandleStatsResponse(active_handles=active, max_handles=cap)


# ------------------------------------------------------------------------------ identifiers + values
def check_identifier(name: Any, what: str) -> str:
    """Shape check for a user-supplied identifier (400 on failure); existence is checked separately."""
    if not isinstance(name, str) or not name or not name.strip():
        raise Invalid(f"Invalid {what} name: it must not be empty")
    bad = [c for c in name if c in '";\\' or unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Zl", "Zp")]
    if bad or name != name.strip():
        raise Invalid(
            f"Invalid {what} name {name[:80]!r}: quotes, semicolons, control characters and "
            "surrounding spaces are not allowed"
        )
    if unicodedata.normalize("NFKC", name) != name:
        raise Invalid(f"Invalid {what} name {name[:80]!r}: it contains look-alike (non-normalised) characters")
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise Invalid(f"Invalid {what} name: longer than {MAX_IDENTIFIER_BYTES} bytes")
    return name


def pg_ident(name: str) -> str:
    """Double-quote a PostgreSQL identifier (after it was validated against the catalogue)."""
    return '"' + name.replace('"', '""') + '"'


def json_value(value: Any) -> Any:
    """Ref value serialisation: JSON scalars, lists and dicts pass; anything else becomes ``str``."""
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    return str(value)


def _rows(names: Sequence[str], values: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
    return [{k: json_value(v) for k, v in zip(names, row, strict=True)} for row in values]


# ------------------------------------------------------------------------------ execution helpers
@dataclass
class _Session:
    conn: asyncpg.Connection
    handle: ConnectionHandle
    allowed_tables: list[str]


def _timeout(timeout_s: int) -> Timeout:
    return Timeout(f"Query timeout exceeded ({timeout_s}s). Simplify the query or add filters.")


def _translate(exc: BaseException, creds: Credentials, timeout_s: int) -> ServiceError:
    secrets = [creds.password]
    if isinstance(exc, asyncpg.QueryCanceledError):
        return _timeout(timeout_s)
    if isinstance(exc, asyncpg.ReadOnlySQLTransactionError):
        return Invalid(f"Refused: queries run read-only ({scrub_error(str(exc), secrets)})")
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return Invalid(f"Permission denied: {scrub_error(str(exc), secrets)}")
    if isinstance(exc, (asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError)):
        # Backend terminated (pg_terminate_backend, shutdown) or connection lost mid-query: not the query's fault.
        return Upstream("Lost the connection to the database; reconnect and try again.")
    if isinstance(exc, asyncpg.PostgresError):
        return Invalid(f"Query failed: {scrub_error(str(exc), secrets)}")
    return Upstream("Lost the connection to the database; reconnect and try again.")


@asynccontextmanager
async def _session(
    conns: ConnectionStore, settings: Settings, handle_id: str, timeout_s: int, *, pin_search_path: bool = True
) -> AsyncIterator[_Session]:
    """A pooled connection in a READ ONLY transaction with local timeouts; always rolled back."""
    async with conns.connection(handle_id) as (conn, handle):
        allowed = list(store_config(settings, handle.store).tables)
        tr = conn.transaction(readonly=True)
        started = False
        try:
            await tr.start()
            started = True
            await conn.execute(
                "SELECT set_config('statement_timeout', $1, true), "
                "set_config('standard_conforming_strings', 'on', true)",
                str(timeout_s * 1000),
            )
            if allowed and pin_search_path:
                await conn.execute("SELECT set_config('search_path', 'public, pg_catalog', true)")
            yield _Session(conn=conn, handle=handle, allowed_tables=allowed)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise _translate(exc, handle.credentials, timeout_s) from None
        finally:
            if started:
                try:
                    await tr.rollback()
                except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                    # A connection lost mid-query is already detached from the pool; terminating it again
                    # raises InterfaceError, which must not replace the error being reported.
                    with suppress(asyncpg.InterfaceError):
                        conn.terminate()


@contextmanager
def _decoding() -> Iterator[None]:
    """Values asyncpg cannot turn into Python objects (a year outside 1..9999) → 400, not 500."""
    try:
        yield
    except (OverflowError, ValueError) as exc:
        raise Invalid(
            f"The result holds a value that cannot be read ({str(exc)[:120]}): dates and timestamps must lie "
            "between the years 1 and 9999. Cast such columns to text in the query, for example col::text."
        ) from None


async def _check_function_owners(s: _Session, safe: SafeQuery) -> None:
    """With an allow-list: refuse names that resolve to a function outside ``pg_catalog`` (422)."""
    if not s.allowed_tables or not safe.function_names:
        return
    rows = await s.conn.fetch(
        """
        SELECT DISTINCT n.nspname, p.proname
        FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE p.proname = ANY($1::text[]) AND n.nspname <> 'pg_catalog'
          AND n.nspname = ANY(pg_catalog.current_schemas(false))
        ORDER BY 1, 2
        """,
        sorted(safe.function_names),
    )
    if rows:
        names = ", ".join(f"{r[0]}.{r[1]}" for r in rows)
        raise Unprocessable(
            f"Function {names} is not allowed: with a tables allow-list configured, only built-in (pg_catalog) "
            "functions may be called (a user-defined function can read tables outside the allow-list)"
        )


def _sized_sql(inner: str, first_param: int) -> str:
    """``inner`` limited to ``$first_param`` rows, sent only when their text size fits ``$first_param+1``.

    Columns: row count, total bytes, ordinal, then the query's own columns. When the rows are over
    the budget the query returns one row whose values are NULL, so nothing big crosses the wire.
    """
    limit, budget = f"${first_param}", f"${first_param + 1}"
    return (
        "WITH _axis_r AS MATERIALIZED (\n"
        "  SELECT _axis_l AS _axis_row, row_number() OVER () AS _axis_n\n"
        f"  FROM (SELECT * FROM (\n{inner}\n) AS _axis_q LIMIT {limit}) AS _axis_l\n"
        "), _axis_size AS (\n"
        "  SELECT count(*) AS _axis_rows, coalesce(sum(octet_length(_axis_row::text)), 0) AS _axis_bytes FROM _axis_r\n"
        ")\n"
        "SELECT s._axis_rows, s._axis_bytes, r._axis_n, (r._axis_row).*\n"
        f"FROM _axis_size AS s LEFT JOIN _axis_r AS r ON s._axis_bytes <= {budget}\n"
        "ORDER BY r._axis_n"
    )


def _megabytes(nbytes: int) -> str:
    """Bytes as MB for a message: one decimal, or two significant digits below 0.1 MB."""
    mb = nbytes / 1024 / 1024
    return f"{mb:.1f}" if mb >= 0.1 else f"{mb:.2g}"


async def _fetch_sized(
    s: _Session, inner: str, params: Sequence[Any], limit: int, max_mb: float
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """At most ``limit`` rows of ``inner`` and their column names; over ``max_mb`` MB of text → 413."""
    budget = int(max_mb * 1024 * 1024)
    with _decoding():
        records = await s.conn.fetch(_sized_sql(inner, len(params) + 1), *params, limit, budget)
    head = records[0]
    names = list(head.keys())[3:]
    if head[1] > budget:
        raise PayloadTooLarge(
            f"The query result is too large: {head[0]} rows hold about {_megabytes(head[1])} MB of data "
            f"(limit {max_mb:g} MB, DB_QUERY_MAX_RESULT_MB). Select fewer or narrower columns, or lower the limit."
        )
    if head[2] is None:
        return names, []
    return names, [tuple(rec)[3:] for rec in records]


@dataclass
class _Column:
    name: str
    data_type: str
    nullable: bool
    typname: str


@dataclass
class _Table:
    schema: str
    name: str
    columns: list[_Column]

    @property
    def sql(self) -> str:
        return f"{pg_ident(self.schema)}.{pg_ident(self.name)}"

    def column(self, name: str) -> _Column | None:
        return next((c for c in self.columns if c.name == name), None)


async def _resolve_table(s: _Session, ref: TableRef, loc: tuple[str, ...] = ("body", "table")) -> _Table:
    """The table's columns; refused (422 at ``loc``) outside the allow-list, 404 when it does not exist."""
    schema = check_identifier(ref.schema_name, "schema")
    name = check_identifier(ref.name, "table")
    if s.allowed_tables and not table_allowed(schema, name, s.allowed_tables):
        raise Unprocessable(f"Table '{schema}.{name}' is not in the configured tables allow-list", loc=loc)
    rows = await s.conn.fetch(
        """
        SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, t.typname
        FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
        LEFT JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
        WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
        ORDER BY a.attnum
        """,
        schema,
        name,
    )
    if not rows:
        raise NotFound(f"Table '{schema}.{name}' not found")
    columns = [_Column(r[0], r[1], bool(r[2]), r[3]) for r in rows if r[0] is not None]
    return _Table(schema=schema, name=name, columns=columns)


def _require_column(table: _Table, name: Any, what: str = "column") -> _Column:
    check_identifier(name, what)
    col = table.column(name)
    if col is None:
        raise Invalid(f"Column '{name}' does not exist in table '{table.schema}.{table.name}'")
    return col


def _check_columns(table: _Table, names: Sequence[Any]) -> None:
    for name in names:
        check_identifier(name, "column")
    missing = [n for n in names if table.column(n) is None]
    if missing:
        raise Invalid(f"Invalid columns for table '{table.schema}.{table.name}': {', '.join(map(str, missing))}")


def _projection(table: _Table, mappings: list[ColumnMapping] | None) -> str:
    """``"src" AS "target"`` for each mapping (validated), else every column."""
    if not mappings:
        return ", ".join(pg_ident(c.name) for c in table.columns) or "*"
    _check_columns(table, [m.source for m in mappings])
    targets: set[str] = set()
    parts = []
    for m in mappings:
        check_identifier(m.target, "target column")
        if m.target.lower() in targets or m.target == ORDINAL:
            raise Invalid(f"Duplicate or reserved target column '{m.target}'")
        targets.add(m.target.lower())
        parts.append(f"{pg_ident(m.source)} AS {pg_ident(m.target)}")
    return ", ".join(parts)


def _where(table: _Table, filters: list[ColumnFilter] | None, first_param: int) -> tuple[str, list[Any]]:
    """AND of text equalities (NULL value → IS NULL), values bound from ``$first_param``."""
    if not filters:
        return "", []
    _check_columns(table, [f.column for f in filters])
    clauses, params = [], []
    for f in filters:
        if f.value is None:
            clauses.append(f"{pg_ident(f.column)} IS NULL")
            continue
        params.append(str(f.value).lower() if isinstance(f.value, bool) else str(f.value))
        clauses.append(f"{pg_ident(f.column)}::text = ${first_param + len(params) - 1}")
    return " WHERE " + " AND ".join(clauses), params


# ------------------------------------------------------------------------------ browsing
async def list_tables(conns: ConnectionStore, settings: Settings, handle_id: str) -> TablesResponse:
    """``GET /{handle}/tables``: tables and views outside the system schemas, with row estimates."""
    async with _session(conns, settings, handle_id, settings.db_statement_timeout_seconds) as s:
        rows = await s.conn.fetch(
            """
            SELECT n.nspname, c.relname, GREATEST(c.reltuples, 0)::bigint
            FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
            WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
              AND n.nspname NOT IN ('pg_catalog', 'information_schema')
              AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
            ORDER BY n.nspname, c.relname
            """
        )
    tables = [TableInfo(schema_name=r[0], name=r[1], row_count_estimate=int(r[2])) for r in rows]
    if s.allowed_tables:
        tables = [t for t in tables if table_allowed(t.schema_name, t.name, s.allowed_tables)]
    return TablesResponse(tables=tables)


async def table_schema(
    conns: ConnectionStore, settings: Settings, handle_id: str, schema: str, table: str
) -> SchemaResponse:
    """``GET /{handle}/schema``: columns (ordinal order, type, nullability) and sample values.

    Samples are the non-NULL values of the first rows, without values longer than
    ``SAMPLE_VALUE_MAX_BYTES`` as text (those are dropped in PostgreSQL, before they are sent).
    """
    async with _session(conns, settings, handle_id, settings.db_statement_timeout_seconds) as s:
        t = await _resolve_table(s, TableRef(schema_name=schema, name=table), loc=("query", "table"))
        samples: dict[str, list[Any]] = {c.name: [] for c in t.columns}
        if t.columns:
            short = ", ".join(
                f"CASE WHEN octet_length(CAST({pg_ident(c.name)} AS text)) <= {SAMPLE_VALUE_MAX_BYTES} "
                f"THEN {pg_ident(c.name)} END"
                for c in t.columns
            )
            with _decoding():
                rows = await s.conn.fetch(f"SELECT {short} FROM {t.sql} LIMIT {SAMPLE_ROWS}")
            for rec in rows:
                for i, col in enumerate(t.columns):
                    if rec[i] is not None:
                        samples[col.name].append(json_value(rec[i]))
    return SchemaResponse(
        columns=[ColumnInfo(name=c.name, data_type=c.data_type, nullable=c.nullable) for c in t.columns],
        sample_values=samples,
    )


async def distinct_values(
    conns: ConnectionStore, settings: Settings, handle_id: str, req: DistinctValuesRequest
) -> DistinctValuesResponse:
    """``POST /{handle}/distinct-values``: distinct non-null values as text, sorted, bounded."""
    async with _session(conns, settings, handle_id, settings.db_statement_timeout_seconds) as s:
        t = await _resolve_table(s, req.table)
        col = pg_ident(_require_column(t, req.column).name)
        rows = await s.conn.fetch(
            f"SELECT DISTINCT {col}::text AS v FROM {t.sql} WHERE {col} IS NOT NULL ORDER BY 1 LIMIT $1",
            req.limit,
        )
    return DistinctValuesResponse(values=[r[0] for r in rows])


async def preview(conns: ConnectionStore, settings: Settings, handle_id: str, req: PreviewRequest) -> RowsResponse:
    """``POST /{handle}/preview``: mapped/filtered rows, bounded by ``limit``."""
    async with _session(conns, settings, handle_id, settings.db_statement_timeout_seconds) as s:
        t = await _resolve_table(s, req.table)
        select = _projection(t, req.mappings)
        where, params = _where(t, req.filters, 1)
        names, values = await _fetch_sized(
            s, f"SELECT {select} FROM {t.sql}{where}", params, req.limit, settings.db_query_max_result_mb
        )
    data = _rows(names, values)
    return RowsResponse(data=data, row_count=len(data))


async def run_query(conns: ConnectionStore, settings: Settings, handle_id: str, req: QueryRequest) -> RowsResponse:
    """``POST /{handle}/query``: one validated SELECT, wrapped with a bound LIMIT, read-only, timed, size-capped.

    Result columns must have distinct names (400 otherwise): rows are JSON objects keyed by name.
    """
    handle = await conns.lookup(handle_id)
    allowed = list(store_config(settings, handle.store).tables)
    safe = validate_select(req.query, allowed or None)
    async with _session(conns, settings, handle_id, settings.db_query_timeout_seconds) as s:
        await _check_function_owners(s, safe)
        names, values = await _fetch_sized(s, safe.sql, [], req.limit, settings.db_query_max_result_mb)
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise Invalid(f"Duplicate column names in the result: {', '.join(dups)}. Give each column a unique alias.")
    data = _rows(names, values)
    return RowsResponse(data=data, row_count=len(data))


# ------------------------------------------------------------------------------ import: arrow
@dataclass
class _ArrowColumn:
    name: str
    arrow_type: pa.DataType
    convert: Callable[[Any], Any] | None = None
    duck_cast: str | None = None
    orderable: bool = True


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


def _arrow_column(name: str, pg_type: Any, declared: str | None) -> _ArrowColumn:
    """Arrow type (and value conversion) for a PostgreSQL result column."""
    typname = str(getattr(pg_type, "name", ""))
    kind = str(getattr(pg_type, "kind", "scalar"))
    orderable = typname not in UNORDERABLE_TYPES and kind != "composite"
    if typname == "numeric":
        m = _NUMERIC_RE.fullmatch((declared or "").replace(" ", ""))
        if m and int(m.group(1)) <= 38:
            return _ArrowColumn(name, pa.decimal128(int(m.group(1)), int(m.group(2))), _finite_decimal)
        # Unknown precision/scale (query results): carry exact text, type it from the data when landing.
        return _ArrowColumn(name, pa.string(), _decimal_text, NUMERIC_FROM_DATA)
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
    if kind in ("array", "composite"):
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
    safe = validate_select(req.query, allowed or None)

    async def _source(s: _Session) -> _Source:
        await _check_function_owners(s, safe)
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
    resolved: dict[str, _Table] = {}

    async def _source(s: _Session) -> _Source:
        t = await _resolve_table(s, req.table)
        resolved["t"] = t
        select = _projection(t, req.mappings)
        where, params = _where(t, req.filters, 1)  # the LIMIT is bound after the filter values
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
    source_sql: Callable[[_Session], Awaitable[_Source]],
) -> DatabaseImportResponse:
    if limit > settings.db_import_max_rows:
        raise Invalid(f"limit must be at most {settings.db_import_max_rows}")
    handle = await conns.lookup(handle_id)
    target_store = store_key or handle.store
    cfg = store_config(settings, target_store)
    preferred = STORE_KINDS.get(target_store, "eval")
    scratch = f"_axis_dbimport_{uuid.uuid4().hex[:12]}"
    created: list[bool] = []
    timeout_s = settings.db_import_timeout_seconds
    try:
        try:
            # One deadline for the whole read: statement_timeout alone restarts with every FETCH.
            async with asyncio.timeout(timeout_s), _session(conns, settings, handle_id, timeout_s) as s:
                src = await source_sql(s)
                limit_param = f"${len(src.params) + 1}"
                probe = await s.conn.prepare(f"SELECT * FROM (\n{src.sql}\n) AS _axis_src LIMIT {limit_param}")
                attrs = probe.get_attributes()
                names = [a.name for a in attrs]
                _check_result_names(names)
                cols = [_arrow_column(a.name, a.type, src.declared.get(a.name)) for a in attrs]
                custom = apply_rename_map(names, cfg.column_rename_map)
                mapped = [custom.get(n, n) for n in names]
                plan = detect_kind(mapped, preferred)
                order_sql = "" if src.ordered else _stable_order(mapped, cols, plan.key if dedupe else [])
                stmt = await s.conn.prepare(
                    f"SELECT * FROM (\n{src.sql}\n) AS _axis_src{order_sql} LIMIT {limit_param}"
                )
                read = await _stream(
                    s.conn, stmt, [*src.params, limit], cols, store, scratch, settings.db_import_batch_rows, created
                )
        except TimeoutError:
            raise _timeout(timeout_s) from None
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


def _stable_order(mapped: list[str], cols: list[_ArrowColumn], key: list[str]) -> str:
    """``ORDER BY`` the id key, then every other orderable column (by position); "" when none."""
    key_positions = [mapped.index(k) + 1 for k in key]
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
    conn: asyncpg.Connection,
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
        with _decoding():
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
                holder.update(format=res.format, message=res.message)
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
        cur.execute("UPDATE datasets SET format = ? WHERE dataset_id = ?", [info.format, info.dataset_id])

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
        await monitoring_service.finish_monitoring_load(store, settings.monitoring_db, info)
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


__all__ = [
    "build_connection_store",
    "check_identifier",
    "close_connection",
    "connect",
    "detect_kind",
    "distinct_values",
    "get_defaults",
    "handle_stats",
    "list_tables",
    "preview",
    "query_import",
    "run_query",
    "table_import",
    "table_schema",
]
