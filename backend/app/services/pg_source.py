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
import pyarrow as pa

from app.config.db_configs import DBImportConfig
from app.errors import Invalid, Timeout, Upstream
from app.services.connection_store import connect_source, scrub_error
from app.services.duckdb_store import quote_ident

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


async def _with_connection(cfg: DBImportConfig, application_name: str, fn: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``fn(conn)`` in a read-only transaction; map timeouts (408), connect (400) and query (502) errors."""
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
        async with conn.transaction(readonly=True):
            return await fn(conn)
    except (asyncpg.QueryCanceledError, TimeoutError):
        raise _timeout_error(cfg) from None
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise Upstream(f"Import failed: {scrub_error(str(exc), secrets)}") from None
    finally:
        await conn.close()


def _arrow_value(v: Any) -> Any:
    if isinstance(v, bytes | memoryview):
        return bytes(v).decode("utf-8", errors="replace")
    if isinstance(v, uuid.UUID | dt.timedelta):
        return str(v)
    return v


def records_to_arrow(columns: list[str], rows: Sequence[Sequence[Any]]) -> pa.Table:
    """asyncpg rows as an Arrow table; aware timestamps become naive UTC, untypable values text."""
    arrays = []
    for i, _ in enumerate(columns):
        values = [_arrow_value(r[i]) for r in rows]
        if any(isinstance(v, dt.datetime) and v.tzinfo is not None for v in values):
            values = [v.astimezone(dt.UTC).replace(tzinfo=None) if isinstance(v, dt.datetime) else v for v in values]
        try:
            array = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError):
            array = pa.array([None if v is None else str(v) for v in values], type=pa.string())
        if any(isinstance(v, decimal.Decimal) for v in values):
            array = array.cast(pa.float64())
        arrays.append(array)
    return pa.table(arrays, names=columns)


async def _fetch_arrow(conn: Any, sql: str, *args: Any) -> pa.Table:
    stmt = await conn.prepare(sql)
    columns = [a.name for a in stmt.get_attributes()]
    rows = await stmt.fetch(*args)
    return records_to_arrow(columns, rows)


async def fetch_split_queries(cfg: DBImportConfig, *, application_name: str) -> tuple[pa.Table, pa.Table]:
    """Run the dataset and results queries (each ``LIMIT row_limit``); returns (dataset, results)."""

    async def _both(conn: Any) -> tuple[pa.Table, pa.Table]:
        ds = await _fetch_arrow(conn, f"SELECT * FROM ({cfg.dataset_query}) AS subq LIMIT $1", cfg.row_limit)
        rs = await _fetch_arrow(conn, f"SELECT * FROM ({cfg.results_query}) AS subq LIMIT $1", cfg.row_limit)
        return ds, rs

    return await _with_connection(cfg, application_name, _both)


async def fetch_table(cfg: DBImportConfig, schema: str, table: str, *, application_name: str) -> pa.Table:
    """Legacy path: ``SELECT * FROM schema.table LIMIT row_limit``."""
    sql = f"SELECT * FROM {quote_ident(schema)}.{quote_ident(table)} LIMIT $1"
    return await _with_connection(cfg, application_name, lambda conn: _fetch_arrow(conn, sql, cfg.row_limit))


def joined_split_sql(dataset_cols: Sequence[str], results_cols: Sequence[str]) -> str:
    """SELECT over registered ``_ds``/``_rs``: results LEFT JOIN dataset on dataset_id, in results order.

    Results win on shared names; a dataset column whose name the results also have is kept as
    ``dataset_<name>`` (as in the sync view) and every other dataset column keeps its own name, so
    legitimate ``*_dataset`` columns survive (DB-13). Without dataset_id on both sides: results only.
    """
    rs = set(results_cols)
    parts = [f"r.{quote_ident(c)}" for c in results_cols]
    ordered = f"(SELECT *, row_number() OVER () AS {ROW_ORDER} FROM _rs)"
    if "dataset_id" not in rs or "dataset_id" not in dataset_cols:
        return f"SELECT {', '.join(parts)} FROM {ordered} r ORDER BY r.{ROW_ORDER}"
    for c in dataset_cols:
        if c == "dataset_id":
            continue
        alias = c if c not in rs else f"dataset_{c}"
        if alias in rs:
            continue
        parts.append(f"d.{quote_ident(c)} AS {quote_ident(alias)}")
    return (
        f"SELECT {', '.join(parts)} FROM {ordered} r LEFT JOIN _ds d ON r.dataset_id = d.dataset_id "
        f"ORDER BY r.{ROW_ORDER}"
    )
