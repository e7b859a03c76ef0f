"""One-shot reads from a configured PostgreSQL source (eval, monitoring and human-signals imports).

Each import opens one direct connection, runs its split queries (or the legacy table read) inside
a read-only transaction with a server-side statement timeout, and returns Arrow tables. The
results are joined to their dataset rows by :func:`joined_split_sql` (one rule for every store).
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg
import duckdb
import pyarrow as pa

from app.config.db_configs import DBImportConfig
from app.errors import Invalid, ServiceError, Timeout, Upstream
from app.services.connection_store import connect_source, scrub_error
from app.services.duckdb_store import quote_ident
from app.services.pg_text import install_text_codecs, text_reads
from app.services.sync_queries import wrap_query
from app.services.sync_targets import KeyKind, SyncTarget, column_renames, key_join_sql

T = TypeVar("T")

ROW_ORDER = "__axis_row"


def source_secrets(cfg: DBImportConfig) -> list[str]:
    """Every secret a source config holds (password, URL, the password inside the URL)."""
    out: list[str] = []
    if cfg.password is not None:
        out.append(cfg.password.get_secret_value())
    if cfg.url is not None:
        out.append(cfg.url.get_secret_value())
        params = cfg.connection_params()
        if params.password is not None:
            out.append(params.password.get_secret_value())
    return out


def _timeout_error(cfg: DBImportConfig) -> Timeout:
    return Timeout(f"Query timeout exceeded ({cfg.query_timeout}s). Simplify the query or raise query_timeout.")


# SQLSTATE classes of errors in the configured query text or in what it reads (syntax, unknown
# table or column, permission, bad cast or other data error, unsupported feature, a write in the
# read-only transaction): configuration problems the user fixes (400). Other failures of the source
# server (resources, shutdown, internal errors, a lost connection) are 502, as in the database
# browser: 500 stays reserved for our own unexpected errors.
_QUERY_PROBLEM_CLASSES = frozenset({"0A", "21", "22", "25", "3F", "42"})


class _QueryFailed(Exception):
    """A PostgreSQL error raised while running the named query."""

    def __init__(self, label: str, error: Exception) -> None:
        super().__init__(label)
        self.label = label
        self.error = error


def _query_error(failed: _QueryFailed, secrets: list[str]) -> ServiceError:
    message = f"Import failed in {failed.label}: {scrub_error(str(failed.error), secrets)}"
    sqlstate = getattr(failed.error, "sqlstate", None) or ""
    if sqlstate[:2] in _QUERY_PROBLEM_CLASSES:
        return Invalid(message)
    return Upstream(message)


async def _with_connection(cfg: DBImportConfig, application_name: str, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``fn(conn)`` in a read-only transaction; map timeouts (408), connect (400) and query errors.

    A query error names the query that failed ("Import failed in results_query: …"): 400 when the
    query is the problem, else 502.
    """
    p = cfg.connection_params()
    secrets = source_secrets(cfg)
    try:
        conn = await connect_source(
            p,
            application_name=application_name,
            statement_timeout_ms=cfg.query_timeout * 1000,
            connect_timeout=min(cfg.query_timeout, 30),
            command_timeout=cfg.query_timeout + 5,
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
        raise Invalid(f"Could not connect to the database: {scrub_error(str(exc), secrets)}") from None
    try:
        # Intervals as their (months, days, microseconds): the default timedelta makes a year 365 days
        # and a month 30, where PostgreSQL (and the sync's INTERVAL) keep them.
        await conn.set_type_codec(
            "interval", schema="pg_catalog", encoder=_encode_unused, decoder=_month_day_nano, format="tuple"
        )
        await install_text_codecs(conn)  # PostgreSQL's text for points, bit strings, rows, …
        async with conn.transaction(readonly=True):
            return await fn(conn)
    except (asyncpg.QueryCanceledError, TimeoutError):
        raise _timeout_error(cfg) from None
    except _QueryFailed as failed:
        raise _query_error(failed, secrets) from None
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise Upstream(f"Import failed: {scrub_error(str(exc), secrets)}") from None
    finally:
        await conn.close()


def _month_day_nano(value: tuple[int, int, int]) -> pa.MonthDayNano:
    """asyncpg's interval tuple (months, days, microseconds) as an Arrow month_day_nano value."""
    return pa.MonthDayNano([value[0], value[1], value[2] * 1000])


def _encode_unused(value: Any) -> Any:
    return value  # imports bind no interval parameters


def _arrow_value(v: Any) -> Any:
    if isinstance(v, bytes | memoryview):
        return bytes(v).decode("utf-8", errors="replace")
    if isinstance(v, uuid.UUID):
        return str(v)
    return v  # an interval (MonthDayNano, or a timedelta → Arrow duration) lands as a DuckDB INTERVAL, as in the sync


def utc_naive(v: dt.datetime) -> dt.datetime:
    """An asyncpg timestamp as naive UTC; its ±infinity sentinels (naive datetime.max/min) stay as they are."""
    if v.tzinfo is None:
        return v
    try:
        return v.astimezone(dt.UTC).replace(tzinfo=None)
    except (OverflowError, ValueError):
        return v.replace(tzinfo=None)


def fetched_rows_to_arrow(columns: list[str], rows: Sequence[Sequence[Any]]) -> pa.Table:
    """asyncpg rows as an Arrow table; aware timestamps become naive UTC, numerics DOUBLE, intervals
    month_day_nano (the import connection's codec; a bare timedelta a duration), untypable values text.

    Not :func:`app.services.data_processor.records_to_arrow`, which takes record dicts."""
    arrays = []
    for i, _ in enumerate(columns):
        values = [_arrow_value(r[i]) for r in rows]
        if any(isinstance(v, dt.datetime) and v.tzinfo is not None for v in values):
            values = [utc_naive(v) if isinstance(v, dt.datetime) else v for v in values]
        if any(isinstance(v, decimal.Decimal) for v in values):  # correctly rounded (Arrow's cast is not)
            values = [float(v) if isinstance(v, decimal.Decimal) else v for v in values]
        try:
            array = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            array = pa.array([None if v is None else str(v) for v in values], type=pa.string())
        arrays.append(array)
    return pa.table(arrays, names=columns)


def check_column_names(columns: Sequence[str], label: str) -> None:
    """Refuse two columns whose names are equal ignoring case, naming both and the query (400).

    DuckDB compares column names case-insensitively: ``X`` and ``x`` would bind to one column and
    the store would rename the other, so values could land under the wrong name.
    """
    seen: dict[str, str] = {}
    for name in columns:
        first = seen.get(name.lower())
        if first is None:
            seen[name.lower()] = name
            continue
        if first == name:
            raise Invalid(f'The {label} returns two columns named "{name}". Give each column its own name (AS).')
        raise Invalid(
            f'The {label} returns columns "{first}" and "{name}", whose names differ only in case. Column '
            "names are compared case-insensitively; give one of them another name (AS)."
        )


async def _fetch_arrow(conn: Any, sql: str, label: str, row_limit: int, cut: list[str]) -> pa.Table:
    """Run ``sql`` (``LIMIT $1``) for at most ``row_limit`` rows as an Arrow table; a PostgreSQL error is
    re-raised naming ``label``, and ``label`` is appended to ``cut`` when rows were left unread."""
    try:
        stmt = await conn.prepare(sql)
        attributes = stmt.get_attributes()
        columns = [a.name for a in attributes]
        check_column_names(columns, label)
        # Ranges, multiranges and composites (asyncpg's own objects) are read as PostgreSQL's text.
        reads = await text_reads(conn, [a.type for a in attributes])
        if reads:
            select = ", ".join(
                f"{reads.get(i, '{}').format(f'_axis_t.{quote_ident(c)}')} AS {quote_ident(c)}"
                for i, c in enumerate(columns)
            )
            stmt = await conn.prepare(f"SELECT {select} FROM (\n{sql}\n) AS _axis_t")
        rows = await stmt.fetch(row_limit + 1)
    except asyncpg.QueryCanceledError:
        raise
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise _QueryFailed(label, exc) from exc
    if len(rows) > row_limit:
        rows = rows[:row_limit]
        cut.append(label)
    return fetched_rows_to_arrow(columns, rows)


def row_limit_note(cut: list[str], row_limit: int) -> str:
    """A message suffix naming the reads stopped at ``row_limit`` (empty when none was)."""
    if not cut:
        return ""
    reads = " and the ".join(cut)
    return f"; the {reads} returned more than row_limit ({row_limit:,}) rows: raise row_limit to import them all"


def _limited(query: str) -> str:
    return f"SELECT * FROM (\n{wrap_query(query)}\n) AS subq LIMIT $1"


async def fetch_split_queries(
    cfg: DBImportConfig, target: SyncTarget, *, application_name: str
) -> tuple[pa.Table, pa.Table, str]:
    """Run the dataset and results queries (each ``LIMIT row_limit``); returns (dataset, results, note).

    ``note`` names the queries that had more rows than ``row_limit`` (:func:`row_limit_note`).

    Each side's column names are normalised as a sync of ``target`` stores them (the custom
    ``columns`` map, then the alias table: :func:`~app.services.sync_targets.column_renames`), so an
    import joins the two sides on the same key as the sync's view. Trailing semicolons are dropped
    (each query runs as a subquery). Errors name the query that failed.
    """

    cut: list[str] = []

    async def _both(conn: Any) -> tuple[pa.Table, pa.Table]:
        ds = await _fetch_arrow(conn, _limited(cfg.dataset_query or ""), "dataset_query", cfg.row_limit, cut)
        rs = await _fetch_arrow(conn, _limited(cfg.results_query or ""), "results_query", cfg.row_limit, cut)
        return ds, rs

    dataset, results = await _with_connection(cfg, application_name, _both)
    return (
        _normalised(dataset, target, cfg.column_rename_map),
        _normalised(results, target, cfg.column_rename_map),
        row_limit_note(cut, cfg.row_limit),
    )


def _normalised(table: pa.Table, target: SyncTarget, custom: dict[str, str]) -> pa.Table:
    renames = column_renames(table.column_names, target, custom)
    return table.rename_columns([renames.get(c, c) for c in table.column_names])


async def fetch_table(cfg: DBImportConfig, schema: str, table: str, *, application_name: str) -> tuple[pa.Table, str]:
    """Legacy path: ``SELECT * FROM schema.table LIMIT row_limit``; returns (rows, :func:`row_limit_note`)."""
    sql = f"SELECT * FROM {quote_ident(schema)}.{quote_ident(table)} LIMIT $1"
    label = f"table {schema}.{table}"
    cut: list[str] = []
    rows = await _with_connection(
        cfg, application_name, lambda conn: _fetch_arrow(conn, sql, label, cfg.row_limit, cut)
    )
    return rows, row_limit_note(cut, cfg.row_limit)


def split_key_condition(dataset: pa.Table | None, results: pa.Table) -> str:
    """The ON condition that joins results ``r`` to dataset rows ``d`` by ``dataset_id``
    (the sync view's rule, :func:`~app.services.sync_targets.key_join_sql`; NUMERIC ids land as DOUBLE)."""

    def key_type(table: pa.Table) -> pa.DataType | None:
        return next((f.type for f in table.schema if f.name.lower() == "dataset_id"), None)

    def kind(t: pa.DataType) -> KeyKind:
        if pa.types.is_integer(t):
            return "int"
        if pa.types.is_floating(t) or pa.types.is_decimal(t):
            return "frac"
        return "text" if pa.types.is_string(t) or pa.types.is_large_string(t) else "other"

    d_type = key_type(dataset) if dataset is not None else None
    r_type = key_type(results)
    if d_type is None or r_type is None or d_type == r_type:
        return "r.dataset_id = d.dataset_id"
    return key_join_sql(kind(r_type), kind(d_type))


def joined_split_sql(
    dataset_cols: Sequence[str], results_cols: Sequence[str], *, on: str = "r.dataset_id = d.dataset_id"
) -> str:
    """SELECT over registered ``_ds``/``_rs``: results LEFT JOIN dataset on dataset_id, in results order.

    Results win on shared names; a dataset column whose name the results also have is kept as
    ``dataset_<name>`` (as in the sync view) and every other dataset column keeps its own name, so
    legitimate ``*_dataset`` columns survive (DB-13). A ``dataset_<name>`` that is already taken (by
    a results column or a dataset column of that name) is left out. Names compare case-insensitively,
    as DuckDB binds them. Without dataset_id on both sides: results only. Each side's names must be
    unique ignoring case (:func:`check_column_names`). ``on``: the join condition
    (:func:`split_key_condition`).
    """
    taken = {c.lower() for c in results_cols}
    parts = [f"r.{quote_ident(c)}" for c in results_cols]
    ordered = f"(SELECT *, row_number() OVER () AS {ROW_ORDER} FROM _rs)"
    if "dataset_id" not in taken or "dataset_id" not in {c.lower() for c in dataset_cols}:
        return f"SELECT {', '.join(parts)} FROM {ordered} r ORDER BY r.{ROW_ORDER}"
    own = [c for c in dataset_cols if c.lower() not in taken]
    taken |= {c.lower() for c in own}
    for c in dataset_cols:
        if c.lower() == "dataset_id":
            continue
        if c in own:
            parts.append(f"d.{quote_ident(c)}")
            continue
        alias = f"dataset_{c}"
        if alias.lower() in taken:
            continue
        taken.add(alias.lower())
        parts.append(f"d.{quote_ident(c)} AS {quote_ident(alias)}")
    return f"SELECT {', '.join(parts)} FROM {ordered} r LEFT JOIN _ds d ON {on} ORDER BY r.{ROW_ORDER}"


def create_joined_table_sync(
    cur: duckdb.DuckDBPyConnection, create: str, dataset: pa.Table | None, results: pa.Table
) -> None:
    """``<create> AS`` :func:`joined_split_sql` over the two fetched sides (registered for this statement only).

    ``create`` is the statement head with the quoted target, e.g. ``CREATE TABLE "x"``.
    """
    cur.register("_rs", results)
    if dataset is not None:
        cur.register("_ds", dataset)
    try:
        sql = joined_split_sql(
            dataset.column_names if dataset is not None else [],
            results.column_names,
            on=split_key_condition(dataset, results),
        )
        cur.execute(f"{create} AS {sql}")
    finally:
        cur.unregister("_rs")
        if dataset is not None:
            cur.unregister("_ds")
