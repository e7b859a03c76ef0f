"""Interactive PostgreSQL browser (spec §6): connection handles, browsing and safe queries.

Identifiers are checked, looked up and quoted by :mod:`app.services.database_session`; every value
is a bound parameter. Browsing and queries run inside ``BEGIN READ ONLY`` with ``SET LOCAL``
timeouts and are always rolled back. Imports into DuckDB are :mod:`app.services.database_import`.

User SQL passes the tokenizer gate in :mod:`app.services.sql_safety`. That gate and the read-only
transaction are defence in depth; the real boundary is the PostgreSQL role: connect with a role
that can only ``SELECT`` what users may see. With a ``tables`` allow-list, the gate's list of names
used as functions is also checked against the catalogue: a function of a schema other than
``pg_catalog`` on the pinned ``search_path`` is refused (422), because it could read any table.

``/query`` and ``/preview`` results are bounded twice: by ``limit`` rows and by
``DB_QUERY_MAX_RESULT_MB``. The size is measured in SQL (the text form of each row) on the limited
rows before any value is sent, so an over-size result is refused (413) without being read into
Python. Values PostgreSQL can hold but Python cannot decode (dates and timestamps outside years
1–9999) answer 400 with a hint to cast the column to text. Values the driver would decode into its
own objects (points, bit strings, rows, ranges, composites, …) are served as PostgreSQL's text
(:mod:`app.services.pg_text`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import anyio

from app.config import Settings
from app.config.db_configs import SSL_MODES, DBImportConfig, parse_dsn
from app.errors import Invalid, PayloadTooLarge
from app.models.database import (
    CloseResponse,
    ColumnInfo,
    ConnectRequest,
    ConnectResponse,
    DatabaseDefaults,
    DistinctValuesRequest,
    DistinctValuesResponse,
    FilterOut,
    HandleStatsResponse,
    PreviewRequest,
    QueryRequest,
    RowsResponse,
    SchemaResponse,
    TableInfo,
    TableRef,
    TablesResponse,
)
from app.serialization import decode_json_cell
from app.services.connection_store import ConnectionStore, Credentials
from app.services.database_session import (
    PgTable,
    Session,
    check_function_owners,
    check_request_columns,
    checked_query,
    decoding_errors,
    open_session,
    projection_sql,
    require_column,
    resolve_pg_table,
    store_config,
    where_sql,
)
from app.services.duckdb_store import quote_ident
from app.services.pg_text import text_reads
from app.services.sql_safety import table_allowed

MASKED_PASSWORD = "********"
SAMPLE_ROWS = 5
# Sample values longer than this (as PostgreSQL text) are left out of /schema samples, so a table of
# large documents or blobs does not send them over the wire or into the response.
SAMPLE_VALUE_MAX_BYTES = 8192


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


def saved_password_target(cfg: DBImportConfig, req: ConnectRequest) -> tuple[str, str]:
    """(password, ssl_mode) for ``********``: the store's saved password, only for the server it is saved for.

    Sending it wherever a request points would hand it to any server that asks (a client could name
    its own host): host, port, database and user must be the configured ones (400 otherwise).
    """
    password = _configured_password(cfg)
    if not password:
        raise Invalid("No password is configured for this store; enter the password.")
    target = cfg.connection_params() if cfg.is_configured else None
    same = target is not None and (
        (req.host.strip().lower(), req.port, req.database, req.username)
        == (target.host.strip().lower(), target.port, target.database, target.username)
    )
    if not same or target is None:
        raise Invalid(
            "The saved password is only used for the configured server (its host, port, database and user); "
            "enter the password to connect to another one."
        )
    ssl_mode = max(req.ssl_mode, target.ssl_mode, key=SSL_MODES.index)  # never weaker than the configured mode
    return password, ssl_mode


async def connect(conns: ConnectionStore, settings: Settings, store_key: str, req: ConnectRequest) -> ConnectResponse:
    """``POST /connect``: test the credentials and return a handle."""
    cfg = store_config(settings, store_key)
    password: str | None = req.password.get_secret_value()
    ssl_mode: str = req.ssl_mode
    if password == MASKED_PASSWORD:
        password, ssl_mode = saved_password_target(cfg, req)
    creds = Credentials(
        host=req.host,
        port=req.port,
        database=req.database,
        username=req.username,
        password=password or None,
        ssl_mode=ssl_mode,
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


def json_value(value: Any) -> Any:
    """Ref value serialisation: JSON scalars, lists and dicts pass; anything else becomes ``str``."""
    if value is None or isinstance(value, (str, int, float, bool, list, dict)):
        return value
    return str(value)


JSON_TYPES = frozenset({"json", "jsonb"})


def json_columns(attributes: Sequence[Any]) -> set[int]:
    """Positions of result columns of type json/jsonb (or arrays of them; domains report their base type)."""
    return {i for i, a in enumerate(attributes) if str(getattr(a.type, "name", "")).removesuffix("[]") in JSON_TYPES}


def _rows(names: Sequence[str], values: Sequence[Sequence[Any]], json_cols: set[int]) -> list[dict[str, Any]]:
    return [
        {
            k: json_value(decode_json_cell(v) if i in json_cols else v)
            for i, (k, v) in enumerate(zip(names, row, strict=True))
        }
        for row in values
    ]


def _sized_sql(inner: str, first_param: int, reads: dict[int, str] | None = None, names: Sequence[str] = ()) -> str:
    """``inner`` limited to ``$first_param`` rows, sent only when their text size fits ``$first_param+1``.

    Columns: row count, total bytes, ordinal, then the query's own columns. When the rows are over
    the budget the query returns one row whose values are NULL, so nothing big crosses the wire.
    ``reads``: how to read some of the columns (position → format string, ``{}`` = the column;
    :func:`~app.services.pg_text.text_reads`); they are then selected by ``names`` (unique).
    """
    limit, budget = f"${first_param}", f"${first_param + 1}"
    # The bare alias stands for the whole row unless a result column has its name: a per-call name.
    row = f"_axis_l_{uuid.uuid4().hex[:12]}"
    columns = "(r._axis_row).*"
    if reads:
        columns = ", ".join(
            f"{reads.get(i, '{}').format(f'(r._axis_row).{quote_ident(name)}')} AS {quote_ident(name)}"
            for i, name in enumerate(names)
        )
    return (
        "WITH _axis_r AS MATERIALIZED (\n"
        f"  SELECT {row} AS _axis_row, row_number() OVER () AS _axis_n\n"
        f"  FROM (SELECT * FROM (\n{inner}\n) AS _axis_q LIMIT {limit}) AS {row}\n"
        "), _axis_size AS (\n"
        "  SELECT count(*) AS _axis_rows, coalesce(sum(octet_length(_axis_row::text)), 0) AS _axis_bytes FROM _axis_r\n"
        ")\n"
        f"SELECT s._axis_rows, s._axis_bytes, r._axis_n, {columns}\n"
        f"FROM _axis_size AS s LEFT JOIN _axis_r AS r ON s._axis_bytes <= {budget}\n"
        "ORDER BY r._axis_n"
    )


def _megabytes(nbytes: int) -> str:
    """Bytes as MB for a message: one decimal, or two significant digits below 0.1 MB."""
    mb = nbytes / 1024 / 1024
    return f"{mb:.1f}" if mb >= 0.1 else f"{mb:.2g}"


async def _fetch_sized(
    s: Session, inner: str, params: Sequence[Any], limit: int, max_mb: float
) -> tuple[list[str], list[tuple[Any, ...]], set[int]]:
    """At most ``limit`` rows of ``inner``, their column names and the positions of json columns;
    over ``max_mb`` MB of text → 413."""
    budget = int(max_mb * 1024 * 1024)
    with decoding_errors():
        stmt = await s.conn.prepare(_sized_sql(inner, len(params) + 1))
        attributes = stmt.get_attributes()[3:]
        names = [a.name for a in attributes]
        # Ranges, multiranges and composites (asyncpg's own objects) are read as PostgreSQL's text. By
        # name: a result with duplicate names is refused by /query, and a read by name would be ambiguous.
        reads = await text_reads(s.conn, [a.type for a in attributes])
        if reads and len(set(names)) == len(names):
            stmt = await s.conn.prepare(_sized_sql(inner, len(params) + 1, reads, names))
            attributes = stmt.get_attributes()[3:]
        records = await stmt.fetch(*params, limit, budget)
    head = records[0]
    if head[1] > budget:
        raise PayloadTooLarge(
            f"The query result is too large: {head[0]} rows hold about {_megabytes(head[1])} MB of data "
            f"(limit {max_mb:g} MB, DB_QUERY_MAX_RESULT_MB). Select fewer or narrower columns, or lower the limit."
        )
    json_cols = json_columns(attributes)
    if head[2] is None:
        return names, [], json_cols
    return names, [tuple(rec)[3:] for rec in records], json_cols


# ------------------------------------------------------------------------------ browsing
async def list_tables(conns: ConnectionStore, settings: Settings, handle_id: str) -> TablesResponse:
    """``GET /{handle}/tables``: tables and views outside the system schemas, with row estimates."""
    async with open_session(conns, settings, handle_id, settings.db_statement_timeout_seconds) as s:
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


def _samples_sql(t: PgTable, reads: dict[int, str] | None = None) -> str:
    """The first rows of ``t``, each value NULL when longer than ``SAMPLE_VALUE_MAX_BYTES`` as text;
    ``reads``: how to read some columns (position → format string, ``{}`` = the column)."""
    short = ", ".join(
        f"CASE WHEN octet_length(CAST({quote_ident(c.name)} AS text)) <= {SAMPLE_VALUE_MAX_BYTES} "
        f"THEN {(reads or {}).get(i, '{}').format(quote_ident(c.name))} END"
        for i, c in enumerate(t.columns)
    )
    return f"SELECT {short} FROM {t.sql} LIMIT {SAMPLE_ROWS}"


async def table_schema(
    conns: ConnectionStore, settings: Settings, handle_id: str, schema: str, table: str
) -> SchemaResponse:
    """``GET /{handle}/schema``: columns (ordinal order, type, nullability) and sample values.

    Samples are the non-NULL values of the first rows, without values longer than
    ``SAMPLE_VALUE_MAX_BYTES`` as text (those are dropped in PostgreSQL, before they are sent).
    """
    async with open_session(conns, settings, handle_id, settings.db_statement_timeout_seconds) as s:
        t = await resolve_pg_table(s, TableRef(schema_name=schema, name=table), loc=("query", "table"))
        samples: dict[str, list[Any]] = {c.name: [] for c in t.columns}
        if t.columns:
            with decoding_errors():
                stmt = await s.conn.prepare(_samples_sql(t))
                reads = await text_reads(s.conn, [a.type for a in stmt.get_attributes()])
                if reads:  # ranges, multiranges and composites as PostgreSQL's text
                    stmt = await s.conn.prepare(_samples_sql(t, reads))
                rows = await stmt.fetch()
            json_cols = json_columns(stmt.get_attributes())
            for rec in rows:
                for i, col in enumerate(t.columns):
                    if rec[i] is not None:
                        samples[col.name].append(json_value(decode_json_cell(rec[i]) if i in json_cols else rec[i]))
    return SchemaResponse(
        columns=[ColumnInfo(name=c.name, data_type=c.data_type, nullable=c.nullable) for c in t.columns],
        sample_values=samples,
    )


async def distinct_values(
    conns: ConnectionStore, settings: Settings, handle_id: str, req: DistinctValuesRequest
) -> DistinctValuesResponse:
    """``POST /{handle}/distinct-values``: distinct non-null values as text, sorted, bounded by ``limit``
    and by ``DB_QUERY_MAX_RESULT_MB`` (413)."""
    async with open_session(conns, settings, handle_id, settings.db_statement_timeout_seconds) as s:
        t = await resolve_pg_table(s, req.table)
        col = quote_ident(require_column(t, req.column).name)
        inner = f"SELECT DISTINCT {col}::text AS v FROM {t.sql} WHERE {col} IS NOT NULL ORDER BY 1"
        _names, rows, _json = await _fetch_sized(s, inner, [], req.limit, settings.db_query_max_result_mb)
    return DistinctValuesResponse(values=[r[0] for r in rows])


async def preview(conns: ConnectionStore, settings: Settings, handle_id: str, req: PreviewRequest) -> RowsResponse:
    """``POST /{handle}/preview``: mapped/filtered rows, bounded by ``limit``."""
    async with open_session(conns, settings, handle_id, settings.db_statement_timeout_seconds) as s:
        t = await resolve_pg_table(s, req.table)
        check_request_columns(t, req.mappings, req.filters)
        select = projection_sql(t, req.mappings)
        where, params = where_sql(t, req.filters, 1)
        names, values, json_cols = await _fetch_sized(
            s, f"SELECT {select} FROM {t.sql}{where}", params, req.limit, settings.db_query_max_result_mb
        )
    data = await anyio.to_thread.run_sync(_rows, names, values, json_cols)  # up to the MB cap: off the loop
    return RowsResponse(data=data, row_count=len(data))


async def run_query(conns: ConnectionStore, settings: Settings, handle_id: str, req: QueryRequest) -> RowsResponse:
    """``POST /{handle}/query``: one validated SELECT, wrapped with a bound LIMIT, read-only, timed, size-capped.

    Result columns must have distinct names (400 otherwise): rows are JSON objects keyed by name.
    """
    handle = await conns.lookup(handle_id)
    allowed = list(store_config(settings, handle.store).tables)
    safe = await checked_query(req.query, allowed)
    async with open_session(conns, settings, handle_id, settings.db_query_timeout_seconds) as s:
        await check_function_owners(s, safe)
        names, values, json_cols = await _fetch_sized(s, safe.sql, [], req.limit, settings.db_query_max_result_mb)
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:
        raise Invalid(f"Duplicate column names in the result: {', '.join(dups)}. Give each column a unique alias.")
    data = await anyio.to_thread.run_sync(_rows, names, values, json_cols)  # up to the MB cap: off the loop
    return RowsResponse(data=data, row_count=len(data))
