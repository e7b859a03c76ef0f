"""PostgreSQL-side text of a sync: query wrappers, typed watermark filters, literals and conninfo."""

from __future__ import annotations

import re
import sys
from typing import Any

import duckdb

from app.config.db_configs import ConnectionParams
from app.errors import ServiceError
from app.log_redaction import scrub_secrets
from app.services.duckdb_store import quote_ident, quote_literal
from app.services.sql_safety import tokenize


def wrap_query(query: str) -> str:
    """The configured query as a subquery body: trailing semicolons, comments and blanks removed.

    ``SELECT ... ; -- note`` is a whole statement to ``psql``, but inside ``(...)`` its semicolon is a
    syntax error: everything after the last token that is not a comment, a blank or a ``;`` goes.
    """
    try:
        tokens = tokenize(query)
    except ServiceError:  # unterminated literal or comment: PostgreSQL reports it with the query
        tokens = []
    end = len(tokens)
    while end and (tokens[end - 1].kind in ("space", "comment") or tokens[end - 1].text == ";"):
        end -= 1
    if tokens:
        return query[: tokens[end - 1].end] if end else ""
    body = query.strip()
    while body.endswith(";"):
        body = body[:-1].rstrip()
    return body


def limit_query(query: str, limit: int) -> str:
    """``SELECT * FROM (<query>) LIMIT n`` for the PostgreSQL side."""
    return f"SELECT * FROM (\n{wrap_query(query)}\n) AS _axis_q LIMIT {int(limit)}"


_PG_CASTS = {
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "TIMESTAMP": "timestamp",
    "DATE": "date",
    "TINYINT": "bigint",
    "SMALLINT": "bigint",
    "INTEGER": "bigint",
    "BIGINT": "bigint",
    "HUGEINT": "numeric",
    "UTINYINT": "bigint",
    "USMALLINT": "bigint",
    "UINTEGER": "bigint",
    "UBIGINT": "numeric",
    "FLOAT": "float4",  # a real: its watermark compares as a real (1.4 is not 1.4::float8)
    "DOUBLE": "float8",
    "VARCHAR": "text",
    "UUID": "uuid",
}


def pg_cast_for(source_type: str) -> str | None:
    """PostgreSQL type a watermark literal is cast to, or None when not comparable."""
    if source_type.startswith("DECIMAL"):
        return "numeric"
    return _PG_CASTS.get(source_type)


# Casts whose values can be ±infinity: the watermark is the largest finite value.
INFINITE_CASTS = frozenset({"timestamptz", "timestamp", "date", "float8", "float4"})


# The lowest finite double: a DOUBLE column's values below it are -inf in the store.
LOWEST_DOUBLE = repr(-sys.float_info.max)


def incremental_query(query: str, column: str, watermark: dict[str, Any]) -> str:
    """Wrap a query to re-read rows at or above a typed watermark (``>=``; upsert dedupes).

    Rows whose column is NULL (or −infinity) have no place in that order and are re-read every time.
    A DOUBLE column is float8 or an unconstrained numeric at the source (DuckDB describes both so):
    its watermark is a numeric literal, which PostgreSQL compares as float8 with the one and as
    numeric with the other (a float8 literal casts that column to float8, which fails the read for
    a 1e400 or 1e-400); values below the lowest double are −infinity or land as it.
    """
    cast = watermark["pg_cast"]
    value = str(watermark["value"])
    if cast == "timestamptz":
        value = value + "+00"
    col = f"_axis_inc.{quote_ident(column)}"
    literal = f"{quote_literal(value)}::{cast}"
    below = f" OR {col} = '-infinity'::{cast}" if cast in INFINITE_CASTS else ""
    if cast == "float8":
        literal = f"{quote_literal(value)}::numeric"
        below = f" OR {col} < {quote_literal(LOWEST_DOUBLE)}::numeric"
    # Text compares in byte order, as DuckDB's max took the watermark (the column's own collation
    # could put a value above the watermark in byte order below it, and that row would never be read).
    compared = f'{col} COLLATE "C"' if cast == "text" else col
    return f"SELECT * FROM (\n{wrap_query(query)}\n) AS _axis_inc WHERE {compared} >= {literal} OR {col} IS NULL{below}"


def libpq_conninfo(params: ConnectionParams, *, application_name: str, timeout_ms: int) -> str:
    """A libpq key=value connection string (values quoted)."""

    def q(value: str) -> str:
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    parts = {
        "host": params.host,
        "port": str(params.port),
        "dbname": params.database,
        "user": params.username,
        "sslmode": params.ssl_mode,
        "application_name": application_name,
        "connect_timeout": "30",
        "options": f"-c statement_timeout={int(timeout_ms)}",
    }
    if params.password is not None:
        parts["password"] = params.password.get_secret_value()
    return " ".join(f"{k}={q(v)}" for k, v in parts.items() if v != "")


_CONNINFO_PASSWORD = re.compile(r"password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


# A PostgreSQL error as libpq words it ("ERROR:  relation … does not exist"), inside a DuckDB error.
_PG_ERROR = re.compile(r"\bERROR:\s+([^\n]+)")


def source_error_text(exc: BaseException) -> str:
    """The text of a sync failure; a PostgreSQL error that DuckDB's postgres extension wraps is unwrapped.

    The extension reports 'Binder Error: Failed to prepare query "SELECT * FROM (…) AS _axis_q LIMIT
    2000001": ERROR:  relation "x" does not exist … LINE 1: DESCRIBE SELECT * FROM postgres_query(?, ?)':
    the app's own SQL around PostgreSQL's message, which is what the asyncpg reader reports alone.
    """
    text = str(exc)
    if isinstance(exc, duckdb.Error):
        found = _PG_ERROR.search(text)
        if found:
            return found.group(1).strip()
    return text


def scrub_sync_error(message: str, secrets: list[str]) -> str:
    """An error text safe for logs and status: no DSN or conninfo passwords, no known secrets."""
    cleaned = _CONNINFO_PASSWORD.sub("password=***", message)
    return scrub_secrets(cleaned, secrets)


def partition_queries(query: str, column: str, workers: int, limit: int) -> list[str]:
    """Split a query into ``workers`` hash partitions of ``column``; NULL keys go to partition 0 (DB-35).

    Hashing the text form works for any column type, needs no bounds query and never drops a row.
    """
    base = wrap_query(query)
    col = f"_axis_p.{quote_ident(column)}"
    out = []
    for i in range(workers):
        cond = f"mod(abs(hashtext(CAST({col} AS text))::bigint), {int(workers)}) = {i}"
        if i == 0:
            cond = f"({cond} OR {col} IS NULL)"
        out.append(f"SELECT * FROM (\n{base}\n) AS _axis_p WHERE {cond} LIMIT {int(limit)}")
    return out
