"""A connection handle's read-only PostgreSQL session and the identifier and table helpers that the
database browser (``database_service``) and database imports (``database_import``) share.

Every identifier that reaches PostgreSQL SQL is first checked for shape (no quotes, semicolons,
control or format characters, NFKC-normalised, ≤ 63 bytes), then looked up in the catalogue, and
only then double-quoted; every value is a bound parameter. Sessions run inside ``BEGIN READ ONLY``
with ``SET LOCAL`` timeouts and are always rolled back.
"""

from __future__ import annotations

import unicodedata
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import anyio
import asyncpg

from app.config import Settings
from app.config.db_configs import DBImportConfig
from app.errors import Invalid, NotFound, ServiceError, Timeout, Unprocessable, Upstream
from app.models.database import (
    ColumnFilter,
    ColumnMapping,
    TableRef,
)
from app.services.connection_store import ConnectionHandle, ConnectionStore, Credentials, scrub_error
from app.services.duckdb_store import ORDINAL, quote_ident
from app.services.sql_safety import SafeQuery, table_allowed, validate_select

MAX_IDENTIFIER_BYTES = 63


def store_config(settings: Settings, store_key: str) -> DBImportConfig:
    """The import config of a store key (data/monitoring/human_signals); unknown → 400."""
    try:
        return settings.db_config(store_key)
    except ValueError as exc:
        raise Invalid(str(exc)) from None


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


# ------------------------------------------------------------------------------ execution helpers
@dataclass
class Session:
    """An open read-only session: the pooled connection, its handle and the store's tables allow-list."""

    conn: asyncpg.Connection
    handle: ConnectionHandle
    allowed_tables: list[str]


def timeout_error(timeout_s: int) -> Timeout:
    """The 408 of a query that ran past ``timeout_s`` seconds."""
    return Timeout(f"Query timeout exceeded ({timeout_s}s). Simplify the query or add filters.")


def translate_error(exc: BaseException, creds: Credentials, timeout_s: int) -> ServiceError:
    """A driver error as a domain error (408, 400 or 502), the password scrubbed from its text."""
    secrets = [creds.password]
    if isinstance(exc, asyncpg.QueryCanceledError):
        return timeout_error(timeout_s)
    if isinstance(exc, asyncpg.ReadOnlySQLTransactionError):
        return Invalid(f"Refused: queries run read-only ({scrub_error(str(exc), secrets)})")
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return Invalid(f"Permission denied: {scrub_error(str(exc), secrets)}")
    if isinstance(exc, asyncpg.exceptions.UnsupportedClientFeatureError):
        # A result column the driver cannot decode (a composite type with a money or tsquery field):
        # the query's shape, not a lost connection, and the connection stays usable.
        return Invalid(
            f"The result holds a column whose type cannot be read ({scrub_error(str(exc), secrets)[:200]}). "
            "Select that column cast to text in a query instead, for example col::text."
        )
    if isinstance(exc, (asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError)):
        # Backend terminated (pg_terminate_backend, shutdown) or connection lost mid-query: not the query's fault.
        return Upstream("Lost the connection to the database; reconnect and try again.")
    if isinstance(exc, asyncpg.PostgresError):
        return Invalid(f"Query failed: {scrub_error(str(exc), secrets)}")
    return Upstream("Lost the connection to the database; reconnect and try again.")


@asynccontextmanager
async def open_session(
    conns: ConnectionStore, settings: Settings, handle_id: str, timeout_s: int, *, pin_search_path: bool = True
) -> AsyncIterator[Session]:
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
            yield Session(conn=conn, handle=handle, allowed_tables=allowed)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            raise translate_error(exc, handle.credentials, timeout_s) from None
        finally:
            if started:
                # Shielded (bounded): a request stopped by a cancel scope (its client went away, see
                # app/request_cancellation.py) is cancelled at every await, so its ROLLBACK would be cut
                # off and the pool would take the connection back inside the transaction.
                lost = False
                with anyio.move_on_after(conns.connect_timeout, shield=True) as rollback:
                    try:
                        await tr.rollback()
                    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                        lost = True
                if lost or rollback.cancelled_caught:  # lost, or no answer to the ROLLBACK in time
                    # A connection lost mid-query is already detached from the pool; terminating it again
                    # raises InterfaceError, which must not replace the error being reported.
                    with suppress(asyncpg.InterfaceError):
                        conn.terminate()


@contextmanager
def decoding_errors() -> Iterator[None]:
    """Values asyncpg cannot turn into Python objects (a year outside 1..9999) → 400, not 500."""
    try:
        yield
    except (OverflowError, ValueError) as exc:
        raise Invalid(
            f"The result holds a value that cannot be read ({str(exc)[:120]}): dates and timestamps must lie "
            "between the years 1 and 9999. Cast such columns to text in the query, for example col::text."
        ) from None


async def check_function_owners(s: Session, safe: SafeQuery) -> None:
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


@dataclass
class PgColumn:
    """One column of a catalogue-resolved table."""

    name: str
    data_type: str
    nullable: bool
    typname: str


@dataclass
class PgTable:
    """A table found in the catalogue, with its columns in ordinal order."""

    schema: str
    name: str
    columns: list[PgColumn]

    @property
    def sql(self) -> str:
        """``"schema"."table"``, quoted."""
        return f"{quote_ident(self.schema)}.{quote_ident(self.name)}"

    def column(self, name: str) -> PgColumn | None:
        """The column of that exact name, or None."""
        return next((c for c in self.columns if c.name == name), None)


async def resolve_pg_table(s: Session, ref: TableRef, loc: tuple[str, ...] = ("body", "table")) -> PgTable:
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
    columns = [PgColumn(r[0], r[1], bool(r[2]), r[3]) for r in rows if r[0] is not None]
    return PgTable(schema=schema, name=name, columns=columns)


def require_column(table: PgTable, name: Any, what: str = "column") -> PgColumn:
    """The named column of ``table`` (shape-checked; 400 when it does not exist)."""
    check_identifier(name, what)
    col = table.column(name)
    if col is None:
        raise Invalid(f"Column '{name}' does not exist in table '{table.schema}.{table.name}'")
    return col


def check_columns(table: PgTable, names: Sequence[Any]) -> None:
    """Every name is a well-formed column of ``table`` (one 400 listing all the missing ones)."""
    for name in names:
        check_identifier(name, "column")
    missing = list(dict.fromkeys(n for n in names if table.column(n) is None))
    if missing:
        raise Invalid(f"Invalid columns for table '{table.schema}.{table.name}': {', '.join(map(str, missing))}")


def check_request_columns(
    table: PgTable, mappings: list[ColumnMapping] | None, filters: list[ColumnFilter] | None
) -> None:
    """Every mapped source and filter column exists (400 listing all the missing ones)."""
    check_columns(table, [m.source for m in mappings or []] + [f.column for f in filters or []])


def projection_sql(table: PgTable, mappings: list[ColumnMapping] | None) -> str:
    """``"src" AS "target"`` for each mapping (validated), else every column."""
    if not mappings:
        return ", ".join(quote_ident(c.name) for c in table.columns) or "*"
    check_columns(table, [m.source for m in mappings])
    targets: set[str] = set()
    parts = []
    for m in mappings:
        check_identifier(m.target, "target column")
        if m.target.lower() in targets or m.target == ORDINAL:
            raise Invalid(f"Duplicate or reserved target column '{m.target}'")
        targets.add(m.target.lower())
        parts.append(f"{quote_ident(m.source)} AS {quote_ident(m.target)}")
    return ", ".join(parts)


def where_sql(table: PgTable, filters: list[ColumnFilter] | None, first_param: int) -> tuple[str, list[Any]]:
    """AND of text equalities (NULL value → IS NULL), values bound from ``$first_param``."""
    if not filters:
        return "", []
    check_columns(table, [f.column for f in filters])
    clauses, params = [], []
    for f in filters:
        if f.value is None:
            clauses.append(f"{quote_ident(f.column)} IS NULL")
            continue
        params.append(str(f.value).lower() if isinstance(f.value, bool) else str(f.value))
        clauses.append(f"{quote_ident(f.column)}::text = ${first_param + len(params) - 1}")
    return " WHERE " + " AND ".join(clauses), params


async def checked_query(sql: str, allowed_tables: list[str]) -> SafeQuery:
    """``validate_select`` in a worker thread (a long query takes milliseconds to check; 422 on refusal)."""
    return await anyio.to_thread.run_sync(validate_select, sql, allowed_tables or None)
