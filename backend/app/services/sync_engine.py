"""PostgreSQL → DuckDB sync engine (spec §10.2–10.10, decision 3).

Each configured source (monitoring, human_signals, eval) is a *split* dataset: a dataset query and
a results query, read concurrently into ``<name>_dataset`` / ``<name>_results`` and joined by the
view ``<name>_data`` (``human_signals_raw`` for human signals).

Read path (measured by ``bench/sync_bench.py``): DuckDB's postgres extension streams the query's
binary COPY straight into a staging table (types kept: timestamptz → UTC TIMESTAMP, jsonb → JSON
text, bool, NULL vs ''). Fallback: a chunked asyncpg cursor that appends bounded Arrow batches and
lands the same DuckDB types and values (bytea, interval, arrays, uuid, numeric(p,s), ±infinity).
Full syncs build staging tables and swap them in one transaction; incremental syncs re-read rows at
or above typed watermarks and upsert them on a key. Status, watermarks and sync ids live in the
store's KV table, so they survive restarts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import functools
import importlib
import importlib.util
import logging
import operator
import os
import re
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import asyncpg
import duckdb

from app.config import DBImportConfig, Settings
from app.config.db_configs import ConnectionParams
from app.errors import Conflict, Invalid, NotFound
from app.log_redaction import scrub_secrets
from app.services.background import BackgroundTasks
from app.services.column_aliases import (
    EVAL_ALIASES,
    MONITORING_ALIASES,
    normalise_column_key,
    with_canonical_names,
)
from app.services.connection_store import connect_source
from app.services.duckdb_store import (
    DatasetInfo,
    DuckDBStore,
    bound_ingest_buffers,
    compute_table_metadata_sync,
    quote_ident,
    reserved_column_renames,
    utc_instant_sql,
    utc_iso,
    utc_iso_text,
    utc_now,
)

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

STATUS_PREFIX = "sync_status:"
WATERMARK_PREFIX = "_watermark_"
RAW_SYNC_ID_KEY = "human_signals_raw_sync_id"
CASES_SYNC_ID_KEY = "human_signals_cases_sync_id"
CASES_TABLE = "human_signals_cases"
STATUS_TABLES = ("monitoring_data", "human_signals_raw", "human_signals_cases", "eval_data", "kpi_data")
STAGING_SUFFIX = "__staging"
SYNC_BACKGROUND_TASK = "sync-background"

DerivedBuilder = Callable[[DuckDBStore, Settings, str, str], Awaitable[Any]]


@dataclass(frozen=True)
class SyncTarget:
    """One split dataset: its config key, registry kind, internal tables and API view."""

    name: str
    kind: str
    view: str
    aliases: dict[str, str] | None  # None: every name is just normalised

    @property
    def dataset_table(self) -> str:
        """Internal table of the dataset query."""
        return f"{self.name}_dataset"

    @property
    def results_table(self) -> str:
        """Internal table of the results query."""
        return f"{self.name}_results"

    @property
    def dataset_id(self) -> str:
        """Fixed registry id of the synced dataset."""
        return f"sync_{self.name}"

    @property
    def tables(self) -> tuple[str, str]:
        """(dataset table, results table)."""
        return (self.dataset_table, self.results_table)


TARGETS: dict[str, SyncTarget] = {
    "monitoring": SyncTarget("monitoring", "monitoring", "monitoring_data", MONITORING_ALIASES),
    "human_signals": SyncTarget("human_signals", "human_signals", "human_signals_raw", None),
    "eval": SyncTarget("eval", "eval", "eval_data", with_canonical_names(EVAL_ALIASES)),
}
ALL_SYNC_NAMES = ("monitoring", "human_signals", "eval", "kpi")
METADATA_PART_ROWS = 250_000  # dataset rows per metadata join part (see metadata_parts)


# ---------------------------------------------------------------------- pure helpers
def column_renames(columns: list[str], target: SyncTarget, custom: dict[str, str]) -> dict[str, str]:
    """Source → stored column names: custom map (exact) first, then the alias table (DB-26).

    A rename whose target already exists as a source column, or was already produced, is
    skipped, so the stored table never has duplicate names (collision guard). Names compare
    case-insensitively, as DuckDB's identifiers do; a ``rowid`` column becomes ``source_rowid``.
    """
    existing = {c.lower() for c in columns}
    used: set[str] = set()
    out: dict[str, str] = {}
    for col in columns:
        if custom.get(col):
            new = custom[col]
        elif target.aliases is None:
            new = normalise_column_key(col) or col
        else:
            new = target.aliases.get(normalise_column_key(col), col)
        if new.lower() != col.lower() and (new.lower() in existing or new.lower() in used):
            new = col
        new = reserved_column_renames([new]).get(new, new)
        base, i = new, 2
        while new.lower() in used:
            new, i = f"{base}_{i}", i + 1
        used.add(new.lower())
        out[col] = new
    return out


def result_keys(columns: list[str], side: str) -> list[str]:
    """Upsert key of an internal table (DB-41): dataset_id, plus metric_name, run_id and id for results.

    An incremental sync treats a re-read row whose key is already stored as an update of it, so
    the key must identify rows: a full sync checks that (:func:`duplicate_key_sync`) and turns
    incremental syncs off while it does not.
    """
    if side == "dataset":
        return ["dataset_id"]
    return [c for c in ("dataset_id", "metric_name", "run_id", "id") if c in columns]


def duplicate_key_sync(cur: duckdb.DuckDBPyConnection, table: str, keys: list[str]) -> bool:
    """True when some key tuple (NULLs equal) is on more than one row of ``table``."""
    cols = ", ".join(quote_ident(k) for k in keys)
    row = cur.execute(f"SELECT 1 FROM {quote_ident(table)} GROUP BY {cols} HAVING count(*) > 1 LIMIT 1").fetchone()
    return row is not None


def wrap_query(query: str) -> str:
    """The configured query as a subquery body (trailing semicolons removed, comments safe)."""
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
    "FLOAT": "float8",
    "DOUBLE": "float8",
    "VARCHAR": "text",
    "UUID": "uuid",
}


def pg_cast_for(source_type: str) -> str | None:
    """PostgreSQL type a watermark literal is cast to, or None when not comparable."""
    if source_type.startswith("DECIMAL"):
        return "numeric"
    return _PG_CASTS.get(source_type)


def pg_literal(text: str) -> str:
    """A PostgreSQL string literal."""
    return "'" + text.replace("'", "''") + "'"


# Casts whose values can be ±infinity: the watermark is the largest finite value.
INFINITE_CASTS = frozenset({"timestamptz", "timestamp", "date", "float8"})


def incremental_query(query: str, column: str, watermark: dict[str, Any]) -> str:
    """Wrap a query to re-read rows at or above a typed watermark (``>=``; upsert dedupes).

    Rows whose column is NULL (or −infinity) have no place in that order and are re-read every time.
    """
    cast = watermark["pg_cast"]
    value = str(watermark["value"])
    if cast == "timestamptz":
        value = value + "+00"
    col = f"_axis_inc.{quote_ident(column)}"
    below = f" OR {col} = '-infinity'::{cast}" if cast in INFINITE_CASTS else ""
    return (
        f"SELECT * FROM (\n{wrap_query(query)}\n) AS _axis_inc "
        f"WHERE {col} >= {pg_literal(value)}::{cast} OR {col} IS NULL{below}"
    )


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


def scrub_error(message: str, secrets: list[str]) -> str:
    """An error text safe for logs and status: no DSN or conninfo passwords, no known secrets."""
    cleaned = _CONNINFO_PASSWORD.sub("password=***", message)
    return scrub_secrets(cleaned, secrets)


def root_error(exc: BaseException) -> BaseException:
    """The first leaf exception of (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def view_target(view: str) -> SyncTarget | None:
    """The split sync target whose JOIN view is ``view`` (None for any other table)."""
    return next((t for t in TARGETS.values() if t.view == view), None)


def joined_select_sql(
    cur: duckdb.DuckDBPyConnection,
    target: SyncTarget,
    keys: tuple[str, str] | None = None,
    dataset_part: tuple[int, int] | None = None,
) -> str:
    """The SELECT behind a split target's view: results JOIN dataset on ``dataset_id``.

    Results columns first, then dataset columns (a name taken by the results side is prefixed
    ``dataset_``; ``dataset_id`` appears once). With ``keys``, two more columns of those names hold
    the results and dataset rowids: together a unique row key (keyset pagination). With
    ``dataset_part = (k, n)`` only the dataset rows with ``rowid % n = k`` join (part k of n).
    """
    r_desc = DuckDBStore.describe_sync(cur, target.results_table)
    d_desc = DuckDBStore.describe_sync(cur, target.dataset_table)
    r_cols = sorted(c["name"] for c in r_desc)
    d_cols = sorted(c["name"] for c in d_desc if c["name"] != "dataset_id")
    r_type = next(c["type"] for c in r_desc if c["name"] == "dataset_id")
    d_type = next(c["type"] for c in d_desc if c["name"] == "dataset_id")
    on = (
        "r.dataset_id = d.dataset_id"
        if r_type == d_type
        else "CAST(r.dataset_id AS VARCHAR) = CAST(d.dataset_id AS VARCHAR)"
    )
    taken = {c.lower() for c in r_cols}  # DuckDB identifiers are case-insensitive
    select = [f"r.{quote_ident(c)}" for c in r_cols]
    for c in d_cols:
        out = f"dataset_{c}" if c.lower() in taken else c
        base, i = out, 2
        while out.lower() in taken:
            out, i = f"{base}_{i}", i + 1
        taken.add(out.lower())
        select.append(f"d.{quote_ident(c)} AS {quote_ident(out)}")
    if keys:
        select += [f"r.rowid AS {quote_ident(keys[0])}", f"d.rowid AS {quote_ident(keys[1])}"]
    part = f" WHERE d.rowid % {int(dataset_part[1])} = {int(dataset_part[0])}" if dataset_part else ""
    return (
        f"SELECT {', '.join(select)} "
        f"FROM {quote_ident(target.results_table)} AS r JOIN {quote_ident(target.dataset_table)} AS d "
        f"ON {on}{part}"
    )


def metadata_parts(
    cur: duckdb.DuckDBPyConnection, target: SyncTarget, part_rows: int = METADATA_PART_ROWS
) -> list[str] | None:
    """The JOIN view split into parts of at most ``part_rows`` dataset rows (None: one part).

    The metadata scans join the two tables; per part, the join's hash table holds one part of the
    dataset side, so a large sync's metadata step needs no more memory than a small one's.
    """
    row = cur.execute(f"SELECT count(*) FROM {quote_ident(target.dataset_table)}").fetchone()
    n = -(-int(row[0] if row else 0) // part_rows)
    if n <= 1:
        return None
    return [f"({joined_select_sql(cur, target, dataset_part=(k, n))}) AS _axis_part" for k in range(n)]


def due_datasets(last_run: dict[str, float], intervals: dict[str, float], now: float) -> list[str]:
    """Scheduled datasets whose interval has elapsed since their last run (§10.8)."""
    return sorted(n for n, every in intervals.items() if now - last_run.get(n, now) >= every)


def seconds_until_next(last_run: dict[str, float], intervals: dict[str, float], now: float) -> float:
    """Seconds until the soonest next due time (60 s when nothing is scheduled)."""
    if not intervals:
        return 60.0
    return max(0.0, min(last_run.get(n, now) + every - now for n, every in intervals.items()))


def _now_iso() -> str:
    return utc_iso()


# Status fields holding an instant (ISO-8601 UTC text with ``Z``; statuses written before the offset
# was stored hold naive UTC text and are read back with the ``Z``).
STATUS_TIME_FIELDS = ("last_sync", "last_incremental", "failed_at")


def blank_status() -> dict[str, Any]:
    """The status of a dataset that never synced (§10.10)."""
    return {
        "state": "not_synced",
        "rows": 0,
        "last_sync": None,
        "error": None,
        "truncated": False,
        "sync_type": None,
        "last_incremental": None,
        "incremental_rows": 0,
        "sync_id": None,
        "reader": None,
    }


# ---------------------------------------------------------------------- leader lock
class LeaderLock:
    """Non-blocking exclusive ``fcntl.flock`` on ``<db_path>.lock``: only its holder syncs (DB-42)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    @property
    def held(self) -> bool:
        """True while this process holds the lock."""
        return self._fh is not None

    def try_acquire(self) -> bool:
        """Take the lock if free; False when another process (or handle) holds it."""
        if self._fh is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = self.path.open("a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return True

    def release(self) -> None:
        """Release the lock (idempotent)."""
        if self._fh is None:
            return
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        finally:
            self._fh.close()
            self._fh = None


# ---------------------------------------------------------------------- readers
@dataclass
class LoadResult:
    """What one source query put into its staging table."""

    table: str
    rows: int
    truncated: bool
    renames: dict[str, str]
    source_types: dict[str, str]  # stored column → type on the source side
    reader: str


def postgres_extension_file(data_dir: Path) -> Path | None:
    """The postgres extension from the ``duckdb-extension-postgres`` wheel, copied where LOAD finds it."""
    spec = importlib.util.find_spec("duckdb_extension_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    version = duckdb.__version__
    src = Path(next(iter(spec.submodule_search_locations))) / "extensions" / f"v{version}" / "postgres.duckdb_extension"
    if not src.exists():
        return None
    dst = data_dir / "extensions" / f"v{version}" / "postgres_scanner.duckdb_extension"
    if not dst.exists() or dst.stat().st_size != src.stat().st_size:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_suffix(f".{uuid.uuid4().hex[:6]}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    return dst


def _projection(columns: list[tuple[str, str]], renames: dict[str, str]) -> str:
    parts = []
    for name, typ in columns:
        src = quote_ident(name)
        expr = utc_instant_sql(src) if typ == "TIMESTAMP WITH TIME ZONE" else src
        parts.append(f"{expr} AS {quote_ident(renames.get(name, name))}")
    return ", ".join(parts)


def _trim_to_cap(cur: duckdb.DuckDBPyConnection, staging: str, max_rows: int) -> tuple[int, bool]:
    row = cur.execute(f"SELECT count(*) FROM {quote_ident(staging)}").fetchone()
    n = int(row[0]) if row else 0
    if n <= max_rows:
        return n, False
    st = quote_ident(staging)
    cur.execute(f"DELETE FROM {st} WHERE rowid IN (SELECT rowid FROM {st} ORDER BY rowid DESC LIMIT ?)", [n - max_rows])
    return max_rows, True


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


@dataclass
class ExtensionPlan:
    """Source columns, stored names and the PostgreSQL queries (one per stream) of one table."""

    columns: list[tuple[str, str]]
    renames: dict[str, str]
    queries: list[str]


def plan_extension_load(
    cur: duckdb.DuckDBPyConnection,
    alias: str,
    query: str,
    target: SyncTarget,
    custom: dict[str, str],
    max_rows: int,
    partition_column: str | None = None,
    workers: int = 1,
) -> ExtensionPlan:
    """Describe the source query and decide its streams (partitioned when configured and present)."""
    limited = limit_query(query, max_rows + 1)
    try:
        described = cur.execute("DESCRIBE SELECT * FROM postgres_query(?, ?)", [alias, limited]).fetchall()
    except duckdb.BinderException as exc:
        if "duplicate column name" not in str(exc):
            raise
        raise Invalid(
            "The query returns two columns whose names differ only in case; DuckDB column names are "
            f"case-insensitive, so give one of them another alias in the query ({str(exc).splitlines()[0]})"
        ) from None
    columns = [(str(r[0]), str(r[1])) for r in described]
    renames = column_renames([c for c, _ in columns], target, custom)
    queries = [limited]
    if partition_column and workers > 1 and partition_column in {c for c, _ in columns}:
        queries = partition_queries(query, partition_column, workers, max_rows + 1)
    return ExtensionPlan(columns=columns, renames=renames, queries=queries)


def create_staging_from_plan(
    cur: duckdb.DuckDBPyConnection, alias: str, staging: str, plan: ExtensionPlan, stream: int | None
) -> None:
    """Create ``staging``: filled from one stream (CTAS), or empty with the final types (``stream=None``)."""
    bound_ingest_buffers(cur)
    cur.execute(f"DROP TABLE IF EXISTS {quote_ident(staging)}")
    select = f"SELECT {_projection(plan.columns, plan.renames)} FROM postgres_query(?, ?)"
    if stream is not None:
        cur.execute(f"CREATE TABLE {quote_ident(staging)} AS {select}", [alias, plan.queries[stream]])
        return
    typed = cur.execute(f"DESCRIBE {select}", [alias, plan.queries[0]]).fetchall()
    cols = ", ".join(f"{quote_ident(str(r[0]))} {r[1]}" for r in typed)
    cur.execute(f"CREATE TABLE {quote_ident(staging)} ({cols})")


def insert_stream(cur: duckdb.DuckDBPyConnection, alias: str, staging: str, plan: ExtensionPlan, stream: int) -> None:
    """Append one partition stream to ``staging`` (streams run concurrently on their own cursors)."""
    bound_ingest_buffers(cur)
    cur.execute(
        f"INSERT INTO {quote_ident(staging)} SELECT {_projection(plan.columns, plan.renames)} "
        "FROM postgres_query(?, ?)",
        [alias, plan.queries[stream]],
    )


def load_with_extension(
    cur: duckdb.DuckDBPyConnection,
    alias: str,
    query: str,
    staging: str,
    target: SyncTarget,
    custom: dict[str, str],
    max_rows: int,
) -> LoadResult:
    """Stream one PostgreSQL query into ``staging`` through the attached database ``alias``."""
    plan = plan_extension_load(cur, alias, query, target, custom, max_rows)
    create_staging_from_plan(cur, alias, staging, plan, 0)
    rows, truncated = _trim_to_cap(cur, staging, max_rows)
    return extension_result(staging, plan, rows, truncated)


def extension_result(staging: str, plan: ExtensionPlan, rows: int, truncated: bool) -> LoadResult:
    """The LoadResult of an extension load."""
    return LoadResult(
        table=staging,
        rows=rows,
        truncated=truncated,
        renames=plan.renames,
        source_types={plan.renames[c]: t for c, t in plan.columns},
        reader="postgres_extension",
    )


# ---------------------------------------------------------------------- asyncpg fallback reader
# The fallback lands what the postgres extension lands (one set of type rules, decision 3). Each
# result column is described from the PostgreSQL catalog (domains resolved to their base type,
# numeric precision and scale from a rolled-back temporary view, since asyncpg does not expose a
# result's typmods), travels the wire in a form asyncpg decodes without building Python objects
# where it can (epoch ticks for timestamps and dates, PostgreSQL's own text for numeric and uuid),
# and becomes its DuckDB type in SQL while each bounded Arrow batch is appended.

DECIMAL_MAX_WIDTH = 38  # widest DuckDB DECIMAL; wider (or unconstrained) numeric lands as DOUBLE

# PostgreSQL timestamps travel as microseconds since 2000-01-01, dates as days since then;
# ±infinity are the extreme int64 / int32 values.
_PG_TICKS_TO_TIMESTAMP = (
    "CASE {0} WHEN 9223372036854775807 THEN TIMESTAMP 'infinity' "
    "WHEN -9223372036854775808 THEN TIMESTAMP '-infinity' ELSE make_timestamp({0} + 946684800000000) END"
)
_PG_TICKS_TO_TIMESTAMPTZ = (
    "CASE {0} WHEN 9223372036854775807 THEN TIMESTAMPTZ 'infinity' "
    "WHEN -9223372036854775808 THEN TIMESTAMPTZ '-infinity' ELSE make_timestamptz({0} + 946684800000000) END"
)
_PG_DAYS_TO_DATE = (
    "CASE {0} WHEN 2147483647 THEN DATE 'infinity' WHEN -2147483648 THEN DATE '-infinity' "
    "ELSE CAST(DATE '2000-01-01' + {0} AS DATE) END"
)


@dataclass(frozen=True)
class _WireKind:
    """How one PostgreSQL base type travels on the asyncpg path and what DuckDB type it lands as."""

    duck: str  # the DuckDB type the postgres extension reports for it
    arrow: str  # Arrow type of the wire values (a key of ``_wire_arrow_type``)
    text: bool = False  # PostgreSQL sends ``::text`` and DuckDB casts it to ``duck``
    convert: str = "{0}"  # DuckDB expression over one wire value ({0}) when it is not a cast
    element_convert: str = ""  # the same inside a list (default: ``convert``)
    in_lists: bool = True  # 1-D arrays land as ``duck[]`` (else as PostgreSQL's array text)
    codec: str = ""  # asyncpg "tuple" codec to install for the type ("ticks" or "interval")


_VARCHAR_WIRE = _WireKind("VARCHAR", "string")
_WIRE_KINDS: dict[str, _WireKind] = {
    "bool": _WireKind("BOOLEAN", "bool"),
    "int2": _WireKind("SMALLINT", "int16"),
    "int4": _WireKind("INTEGER", "int32"),
    "int8": _WireKind("BIGINT", "int64"),
    "float4": _WireKind("FLOAT", "float32"),
    "float8": _WireKind("DOUBLE", "float64"),
    "text": _VARCHAR_WIRE,
    "varchar": _VARCHAR_WIRE,
    "json": _VARCHAR_WIRE,
    "jsonb": _VARCHAR_WIRE,
    "name": _WireKind("VARCHAR", "string", in_lists=False),
    "bpchar": _WireKind("VARCHAR", "string", text=True),  # ::text drops the padding, as the extension does
    "uuid": _WireKind("UUID", "string", text=True),
    "timetz": _WireKind("TIME WITH TIME ZONE", "string", text=True),
    "bytea": _WireKind("BLOB", "binary", in_lists=False),
    "interval": _WireKind("INTERVAL", "interval", codec="interval"),
    "time": _WireKind("TIME", "time_us", codec="ticks"),
    "date": _WireKind("DATE", "int32", convert=_PG_DAYS_TO_DATE, codec="ticks"),
    "timestamp": _WireKind("TIMESTAMP", "int64", convert=_PG_TICKS_TO_TIMESTAMP, codec="ticks"),
    # a scalar timestamptz lands as a plain UTC TIMESTAMP (as the extension path's projection does),
    # a timestamptz[] as TIMESTAMP WITH TIME ZONE[]
    "timestamptz": _WireKind(
        "TIMESTAMP WITH TIME ZONE",
        "int64",
        convert=_PG_TICKS_TO_TIMESTAMP,
        element_convert=_PG_TICKS_TO_TIMESTAMPTZ,
        codec="ticks",
    ),
}


def numeric_duck_type(typmod: int) -> str:
    """The DuckDB type the extension gives ``numeric`` with this typmod: DECIMAL(p,s) or DOUBLE."""
    if typmod < 4:  # -1: unconstrained
        return "DOUBLE"
    precision = ((typmod - 4) >> 16) & 0xFFFF
    scale = (typmod - 4) & 0x7FF
    if scale & 0x400:  # PostgreSQL 15 allows a negative scale (11-bit two's complement)
        scale -= 0x800
    if not 1 <= precision <= DECIMAL_MAX_WIDTH or not 0 <= scale <= precision:
        return "DOUBLE"
    return f"DECIMAL({precision},{scale})"


def _wire_kind(type_name: str, typmod: int) -> _WireKind | None:
    if type_name == "numeric":
        return _WireKind(numeric_duck_type(typmod), "string", text=True)
    return _WIRE_KINDS.get(type_name)


def _text_cast(kind: _WireKind, suffix: str) -> str:
    """DuckDB cast of PostgreSQL's text to ``kind.duck`` (+ ``[]``). NaN fits no DECIMAL: it lands as
    NULL (TRY_CAST) rather than the extension's 0; a DOUBLE keeps NaN and ±Infinity."""
    cast = "TRY_CAST" if kind.duck.startswith("DECIMAL") else "CAST"
    return f"{cast}({{0}} AS {kind.duck}{suffix})"


@dataclass(frozen=True)
class PgResultType:
    """One result column as the PostgreSQL catalog describes it (domains resolved)."""

    base: str  # pg_catalog base type name ('' for anything else: enums, composites, ranges, ...)
    typmod: int
    element: str = ""  # element type name of a 1-D pg_catalog array (``base`` is then '')


@dataclass(frozen=True)
class AsyncpgColumn:
    """How one result column is read: PostgreSQL select expression, Arrow wire type, DuckDB expression."""

    source_type: str  # the DuckDB type the extension reports (``LoadResult.source_types``, watermarks)
    wire_sql: str  # PostgreSQL select-list expression ({0} = the column)
    arrow: str  # Arrow wire type key
    is_list: bool
    load_sql: str  # DuckDB expression over the Arrow column ({0}) that gives the stored value
    codec: str  # asyncpg codec the column needs ("", "ticks" or "interval")


def asyncpg_column(result: PgResultType) -> AsyncpgColumn:
    """The read plan of one column: the extension's DuckDB type; PostgreSQL text for anything else."""
    if result.element:
        kind = _wire_kind(result.element, result.typmod)
        if kind is not None and kind.in_lists:
            if kind.text:
                return AsyncpgColumn(f"{kind.duck}[]", "{0}::text[]", kind.arrow, True, _text_cast(kind, "[]"), "")
            element = kind.element_convert or kind.convert
            load = "{0}" if element == "{0}" else f"list_transform({{0}}, lambda _e: {element.format('_e')})"
            return AsyncpgColumn(f"{kind.duck}[]", "{0}", kind.arrow, True, load, kind.codec)
    elif result.base:
        kind = _wire_kind(result.base, result.typmod)
        if kind is not None:
            if kind.text:
                return AsyncpgColumn(kind.duck, "{0}::text", kind.arrow, False, _text_cast(kind, ""), "")
            return AsyncpgColumn(kind.duck, "{0}", kind.arrow, False, kind.convert, kind.codec)
    return AsyncpgColumn("VARCHAR", "{0}::text", "string", False, "{0}", "")


_TYPE_CATALOG_SQL = """
SELECT t.oid, n.nspname::text, t.typname::text, t.typtype::text, t.typcategory::text, t.typelem, t.typbasetype,
       t.typtypmod
FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
WHERE t.oid = ANY($1::oid[])
"""


async def describe_result_types(conn: Any, columns: list[tuple[int, int]]) -> list[PgResultType]:
    """Resolve (type oid, typmod) pairs through ``pg_type``: domains to their base, arrays to their element."""
    types: dict[int, Any] = {}
    pending = {oid for oid, _ in columns}
    while pending:
        rows = await conn.fetch(_TYPE_CATALOG_SQL, sorted(pending))
        types.update({int(r["oid"]): r for r in rows})
        refs = {int(r["typbasetype"]) for r in rows if r["typtype"] == "d"}
        refs |= {int(r["typelem"]) for r in rows if r["typelem"]}
        pending = refs - types.keys() - {0}
    out = []
    for oid, mod in columns:
        row, typmod = types.get(oid), mod
        for _ in range(32):  # a domain over a domain over ... (the wire itself sends the base type)
            if row is None or row["typtype"] != "d":
                break
            typmod = typmod if typmod >= 0 else int(row["typtypmod"])
            row = types.get(int(row["typbasetype"]))
        if row is None or row["nspname"] != "pg_catalog" or row["typtype"] != "b":
            out.append(PgResultType(base="", typmod=typmod))
            continue
        name = str(row["typname"])
        elem = types.get(int(row["typelem"])) if row["typelem"] else None
        is_array = row["typcategory"] == "A" and elem is not None and name == "_" + str(elem["typname"])
        if is_array and elem is not None and elem["nspname"] == "pg_catalog" and elem["typtype"] == "b":
            out.append(PgResultType(base="", typmod=typmod, element=str(elem["typname"])))
        elif is_array:
            out.append(PgResultType(base="", typmod=typmod))
        else:
            out.append(PgResultType(base=name, typmod=typmod))
    return out


async def describe_typmods(conn: Any, query: str, count: int) -> list[tuple[int, int]] | None:
    """(type oid, typmod) of each result column, from a temporary view over ``query`` that is rolled back.

    None when the source refuses the view (a read-only standby, no TEMP privilege): numeric columns
    then land as DOUBLE, as an unconstrained numeric does.
    """
    view = f"_axis_describe_{uuid.uuid4().hex[:12]}"
    names = ", ".join(quote_ident(f"c{i}") for i in range(count))
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(f"CREATE TEMPORARY VIEW {quote_ident(view)} ({names}) AS {query}")
        rows = await conn.fetch(
            "SELECT atttypid, atttypmod FROM pg_catalog.pg_attribute "
            "WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            f"pg_temp.{view}",
        )
    except asyncpg.PostgresError as exc:
        logger.warning("Cannot describe the sync query's column types (%s); numeric columns land as DOUBLE", exc)
        return None
    finally:
        await tx.rollback()
    return [(int(r["atttypid"]), int(r["atttypmod"])) for r in rows] if len(rows) == count else None


def _interval_month_day_nano(value: tuple[int, int, int]) -> tuple[int, int, int]:
    """asyncpg's interval tuple (months, days, microseconds) as Arrow's month_day_nano."""
    return (value[0], value[1], value[2] * 1000)


def _encode_unused(value: Any) -> Any:
    return value  # the sync read binds no parameters of these types


async def install_wire_codecs(conn: Any, kinds: set[str]) -> None:
    """Have asyncpg decode timestamps, dates and times to their PostgreSQL ticks (±infinity kept)
    and intervals to (months, days, nanoseconds), for the types this read uses."""
    ticks = operator.itemgetter(0)
    for name, kind in _WIRE_KINDS.items():
        if kind.codec and kind.codec in kinds:
            decoder = ticks if kind.codec == "ticks" else _interval_month_day_nano
            await conn.set_type_codec(
                name, schema="pg_catalog", encoder=_encode_unused, decoder=decoder, format="tuple"
            )


def asyncpg_read_query(limited: str, columns: list[AsyncpgColumn]) -> str:
    """The query the cursor runs: each column in its wire form, over the (limited) configured query."""
    names = ", ".join(quote_ident(f"c{i}") for i in range(len(columns)))
    select = ", ".join(col.wire_sql.format(f"_axis_w.{quote_ident(f'c{i}')}") for i, col in enumerate(columns))
    return f"SELECT {select} FROM (\n{limited}\n) AS _axis_w ({names})"


def _wire_arrow_type(key: str, is_list: bool) -> pa.DataType:
    """Arrow type of a wire column (pyarrow is imported only by this fallback path)."""
    import pyarrow as pa

    types = {
        "bool": pa.bool_(),
        "int16": pa.int16(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "float32": pa.float32(),
        "float64": pa.float64(),
        "string": pa.string(),
        "binary": pa.binary(),
        "time_us": pa.time64("us"),
        "interval": pa.month_day_nano_interval(),
    }
    return pa.list_(types[key]) if is_list else types[key]


def rows_to_arrow(rows: list[Any], names: list[str], columns: list[AsyncpgColumn]) -> pa.Table:
    """One fetched chunk as an Arrow table of the columns' wire types (columns named c0, c1, ...)."""
    import pyarrow as pa

    values: list[Any] = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    arrays = []
    for name, col, col_values in zip(names, columns, values, strict=True):
        try:
            arrays.append(pa.array(col_values, type=_wire_arrow_type(col.arrow, col.is_list)))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            hint = " (a multi-dimensional array?)" if col.is_list else ""
            raise Invalid(f"Column {name!r} does not fit {col.source_type}{hint}: {exc}") from exc
    return pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(columns))])


def asyncpg_load_select(names: list[str], columns: list[AsyncpgColumn], renames: dict[str, str]) -> str:
    """The DuckDB select list that turns a wire chunk into stored columns (renamed per §10.4)."""
    return ", ".join(
        f"{col.load_sql.format(quote_ident(f'c{i}'))} AS {quote_ident(renames[name])}"
        for i, (name, col) in enumerate(zip(names, columns, strict=True))
    )


def append_arrow_chunk(
    cur: duckdb.DuckDBPyConnection, staging: str, chunk: pa.Table, select: str, create: bool
) -> None:
    """Create (first chunk) or append to ``staging`` from an Arrow chunk through ``select``."""
    view = f"_axis_chunk_{uuid.uuid4().hex[:8]}"
    bound_ingest_buffers(cur)
    cur.register(view, chunk)
    try:
        sql = f"SELECT {select} FROM {quote_ident(view)}"
        if create:
            cur.execute(f"CREATE TABLE {quote_ident(staging)} AS {sql}")
        else:
            cur.execute(f"INSERT INTO {quote_ident(staging)} {sql}")
    finally:
        cur.unregister(view)


# ---------------------------------------------------------------------- results
@dataclass
class SyncResult:
    """Outcome of one dataset sync."""

    dataset: str
    status: str  # ready | error | skipped
    sync_id: str
    rows: int = 0
    sync_type: str | None = None
    truncated: bool = False
    error: str | None = None
    reader: str | None = None
    incremental_rows: int = 0


@dataclass
class _Outcome:
    sync_type: str
    truncated: bool
    reader: str
    rows_before: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)


class SchemaDrift(Exception):
    """The incremental read's columns differ from the live table, or its rows repeat an upsert key."""


# ---------------------------------------------------------------------- engine
class SyncEngine:
    """Runs syncs, keeps their persisted status, owns the leader lock and the scheduler."""

    def __init__(
        self,
        settings: Settings,
        store: DuckDBStore,
        tasks: BackgroundTasks,
        *,
        derived_builders: dict[str, DerivedBuilder] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.tasks = tasks
        self.derived_builders = derived_builders
        self.leader = LeaderLock(Path(str(settings.duckdb_path) + ".lock"))
        self._running: dict[str, str] = {}
        self._secrets = settings.secret_values()

    # ------------------------------------------------------------------ config
    def target(self, name: str) -> SyncTarget:
        """The split target of a dataset name; unknown → NotFound; kpi → Invalid."""
        if name == "kpi":
            raise Invalid("The kpi dataset is not configured for sync")
        if name not in TARGETS:
            raise NotFound(f"Unknown dataset '{name}'; synced datasets are {', '.join(sorted(TARGETS))}")
        return TARGETS[name]

    def config(self, name: str) -> DBImportConfig:
        """The database config of a dataset."""
        return self.settings.db_config(name)

    def ineligible_reason(self, name: str, reason: str = "manual") -> str | None:
        """Why a dataset cannot sync now (None when eligible, §10.6)."""
        cfg = self.config(name)
        if cfg.config_error is not None:
            return cfg.config_error
        if not cfg.enabled:
            return f"{name} sync is disabled (enabled: false)"
        if not cfg.is_configured:
            return f"{name} database is not configured (url, or host and database)"
        if not cfg.has_query:
            return f"{name} needs both dataset_query and results_query"
        if reason == "startup" and not cfg.should_auto_load:
            return f"{name} is not set to load at startup (auto_load)"
        return None

    def eligible(self, reason: str = "manual") -> list[str]:
        """Dataset names eligible for a sync of this reason."""
        return [n for n in TARGETS if self.ineligible_reason(n, reason) is None]

    def running(self) -> dict[str, str]:
        """Datasets syncing in this process → sync id."""
        return dict(self._running)

    # ------------------------------------------------------------------ status
    async def get_status(self, table: str) -> dict[str, Any]:
        """Persisted status of an API table (``blank_status`` when never synced)."""
        stored = await self.store.kv_get(STATUS_PREFIX + table)
        status = blank_status()
        if isinstance(stored, dict):
            status.update(stored)
        for name in STATUS_TIME_FIELDS:
            if isinstance(status.get(name), str):
                status[name] = utc_iso_text(status[name])
        return status

    async def _set_status(self, table: str, status: dict[str, Any]) -> None:
        await self.store.kv_set(STATUS_PREFIX + table, status)

    async def watermarks(self, target: SyncTarget) -> tuple[dict[str, Any], str | None]:
        """Stored watermark values per internal table (None when absent), and why incremental is off."""
        out: dict[str, Any] = {}
        disabled: str | None = None
        for table in target.tables:
            wm = await self.store.kv_get(WATERMARK_PREFIX + table)
            out[table] = wm.get("value") if isinstance(wm, dict) else None
            if isinstance(wm, dict) and wm.get("disabled"):
                disabled = str(wm["disabled"])
        return out, disabled

    async def status_report(self) -> dict[str, dict[str, Any]]:
        """Status of every API table, with refresh interval, incremental column and watermarks."""
        report: dict[str, dict[str, Any]] = {}
        by_view = {t.view: t for t in TARGETS.values()}
        for table in STATUS_TABLES:
            status = await self.get_status(table)
            target = by_view.get(table)
            if target is not None:
                cfg = self.config(target.name)
                status["refresh_interval_minutes"] = cfg.refresh_interval_minutes
                status["incremental_column"] = cfg.incremental_column
                if cfg.incremental_column:
                    status["watermarks"], status["incremental_disabled"] = await self.watermarks(target)
            report[table] = status
        return report

    async def restore_statuses(self) -> None:
        """At boot: a status left at ``syncing`` by a crash is settled from what the file holds (DB-45)."""
        for table in STATUS_TABLES:
            stored = await self.store.kv_get(STATUS_PREFIX + table)
            exists = await self.store.table_exists(table)
            if stored is None and not exists:
                continue
            status = blank_status()
            if isinstance(stored, dict):
                status.update(stored)
            if stored is not None and status["state"] != "syncing":
                continue
            if exists:
                res = await self.store.fetch(f"SELECT count(*) FROM {quote_ident(table)}")
                status["rows"] = int(res.rows[0][0])
                status["state"] = "ready"
                if stored is not None:
                    status["error"] = "The previous sync was interrupted by a restart; serving the last complete data"
            else:
                status["state"] = "error"
                status["error"] = "The sync was interrupted by a restart"
            await self._set_status(table, status)

    # ------------------------------------------------------------------ lifecycle
    async def startup(self) -> None:
        """Restore persisted statuses and try to become the sync leader."""
        await self.restore_statuses()
        if self.leader.try_acquire():
            logger.info("This process is the sync leader (%s)", self.leader.path)
        else:
            logger.info("Another process holds %s; this process will not sync", self.leader.path)

    async def run_background(self) -> None:
        """Lifespan task (leader only): repair derived tables, startup sync (when configured), scheduler."""
        if not self.leader.held:
            return
        try:
            await self.repair_derived()
        except Exception as exc:
            logger.error("Derived-table repair failed: %s", self._scrub(str(exc)))
        if self.settings.duckdb.sync_mode == "startup":
            names = self.eligible("startup")
            for name in TARGETS:
                if name not in names:
                    logger.info("Startup sync skips %s: %s", name, self.ineligible_reason(name, "startup"))
            if names:
                await self.sync_all(reason="startup", names=names)
        await self.run_scheduler()

    def shutdown(self) -> None:
        """Release the leader lock."""
        self.leader.release()

    # ------------------------------------------------------------------ triggers
    def start_sync(self, name: str | None, *, full: bool) -> tuple[str, list[str]]:
        """Validate and start a background sync of one dataset (or all eligible); return (sync_id, names).

        Ineligible → Invalid (400); one already running → Conflict (409); not the leader → Conflict.
        """
        if name is not None:
            self.target(name)
            why = self.ineligible_reason(name)
            if why is not None:
                raise Invalid(f"Cannot sync {name}: {why}")
            names = [name]
        else:
            names = self.eligible()
            if not names:
                raise Invalid("No dataset is configured for sync (enabled, connection and both split queries)")
        busy = [TARGETS[n].view for n in (self._running if name is None else names) if n in self._running]
        if busy:
            raise Conflict(f"Sync already running for {busy[0]}")
        if not self.leader.held and not self.leader.try_acquire():
            raise Conflict("Another AXIS process owns the sync lock; sync there")
        sync_id = uuid.uuid4().hex
        for n in names:
            self._running[n] = sync_id

        async def _job() -> list[SyncResult]:
            try:
                return await self.sync_all(reason="manual", names=names, force_full=full, sync_id=sync_id, claimed=True)
            finally:  # also when cancelled before a dataset started
                for n in names:
                    if self._running.get(n) == sync_id:
                        self._running.pop(n, None)

        try:
            self.tasks.start(f"sync:{sync_id}", _job())
        except Exception:
            for n in names:
                self._running.pop(n, None)
            raise
        return sync_id, names

    async def sync_all(
        self,
        *,
        reason: str = "manual",
        names: list[str] | None = None,
        force_full: bool = False,
        sync_id: str | None = None,
        claimed: bool = False,
    ) -> list[SyncResult]:
        """Sync the given (default: all eligible) datasets concurrently; errors become results."""
        names = names if names is not None else self.eligible(reason)
        sid = sync_id or uuid.uuid4().hex
        coros = [
            self.sync_dataset(n, force_full=force_full, reason=reason, sync_id=sid, claimed=claimed) for n in names
        ]
        results = await asyncio.gather(*coros, return_exceptions=True)
        out: list[SyncResult] = []
        for n, res in zip(names, results, strict=True):
            if isinstance(res, SyncResult):
                out.append(res)
            elif isinstance(res, Exception):
                out.append(SyncResult(dataset=n, status="error", sync_id=sid, error=self._scrub(str(res))))
            else:
                raise res
        return out

    async def sync_dataset(
        self,
        name: str,
        *,
        force_full: bool = False,
        reason: str = "manual",
        sync_id: str | None = None,
        claimed: bool = False,
    ) -> SyncResult:
        """Sync one split dataset (full or incremental, §10.5); never raises for sync failures."""
        target = self.target(name)
        sid = sync_id or uuid.uuid4().hex
        if not claimed:
            if name in self._running:
                return SyncResult(dataset=name, status="skipped", sync_id=sid, error="Sync already running")
            self._running[name] = sid
        try:
            return await self._sync_claimed(target, force_full=force_full, reason=reason, sync_id=sid)
        finally:
            self._running.pop(name, None)

    async def reset_watermark(self, name: str) -> bool:
        """Clear both watermarks of a split dataset (next sync is full); False for kpi."""
        if name == "kpi":
            return False
        target = self.target(name)
        await self._clear_watermarks(target)
        return True

    # ------------------------------------------------------------------ orchestration
    def _scrub(self, text: str) -> str:
        return scrub_error(text, self._secrets)

    async def _clear_watermarks(self, target: SyncTarget) -> None:
        def _clear(cur: duckdb.DuckDBPyConnection) -> None:
            for table in target.tables:
                DuckDBStore.kv_delete_sync(cur, WATERMARK_PREFIX + table)

        await self.store.run_write(_clear)

    async def _incremental_plan(self, target: SyncTarget, force_full: bool) -> tuple[dict[str, Any] | None, str]:
        cfg = self.config(target.name)
        if force_full:
            return None, "full sync requested"
        if not cfg.incremental_column:
            return None, "no incremental_column configured"
        for table in (*target.tables, target.view):
            if not await self.store.table_exists(table):
                return None, f"{table} does not exist yet"
        wms: dict[str, Any] = {}
        for table in target.tables:
            wm = await self.store.kv_get(WATERMARK_PREFIX + table)
            if isinstance(wm, dict) and wm.get("disabled"):
                return None, str(wm["disabled"])
            if not isinstance(wm, dict) or wm.get("value") is None:
                return None, f"no watermark stored for {table}"
            wms[table] = wm
        return wms, "watermarks present"

    async def _sync_claimed(self, target: SyncTarget, *, force_full: bool, reason: str, sync_id: str) -> SyncResult:
        previous = await self.get_status(target.view)
        await self._set_status(
            target.view, {**previous, "state": "syncing", "error": None, "sync_id": sync_id, "started_at": _now_iso()}
        )
        started = time.perf_counter()
        try:
            wms, why = await self._incremental_plan(target, force_full)
            outcome: _Outcome | None = None
            if wms is not None:
                try:
                    outcome = await self._sync_incremental(target, wms, sync_id)
                except Exception as exc:
                    logger.warning(
                        "Incremental sync of %s failed (%s); clearing watermarks and rebuilding in full",
                        target.name,
                        self._scrub(str(root_error(exc))),
                    )
                    await self._clear_watermarks(target)
                    outcome = None
            else:
                logger.info("Full sync of %s (%s)", target.name, why)
            if outcome is None:
                outcome = await self._sync_full(target, sync_id)
        except asyncio.CancelledError:
            await asyncio.shield(self._drop_staging(target))
            raise
        except Exception as exc:
            message = self._scrub(str(root_error(exc))) or type(root_error(exc)).__name__
            logger.error("Sync of %s failed: %s", target.name, message)
            await self._drop_staging(target)
            rows = await self._count(target.view)
            status = {
                **previous,
                "state": "error",
                "error": message,
                "rows": rows,
                "sync_id": sync_id,
                "failed_at": _now_iso(),
            }
            await self._set_status(target.view, status)
            return SyncResult(dataset=target.name, status="error", sync_id=sync_id, rows=rows, error=message)

        rows = int(outcome.metadata.get("row_count", 0))
        now = _now_iso()
        status = {
            **blank_status(),
            "state": "ready",
            "rows": rows,
            "last_sync": now,
            "truncated": outcome.truncated,
            "sync_type": outcome.sync_type,
            "last_incremental": now if outcome.sync_type == "incremental" else previous.get("last_incremental"),
            "incremental_rows": max(rows - outcome.rows_before, 0) if outcome.sync_type == "incremental" else 0,
            "sync_id": sync_id,
            "reader": outcome.reader,
            "seconds": round(time.perf_counter() - started, 3),
            "phases": outcome.phases,
            "reason": reason,
        }
        await self._set_status(target.view, status)
        logger.info(
            "Synced %s: %d rows (%s, %s) in %.2fs",
            target.name,
            rows,
            outcome.sync_type,
            outcome.reader,
            status["seconds"],
        )
        if target.name == "human_signals":
            await self._run_derived(target, sync_id)
        return SyncResult(
            dataset=target.name,
            status="ready",
            sync_id=sync_id,
            rows=rows,
            sync_type=outcome.sync_type,
            truncated=outcome.truncated,
            reader=outcome.reader,
            incremental_rows=status["incremental_rows"],
        )

    async def _count(self, table: str) -> int:
        if not await self.store.table_exists(table):
            return 0
        res = await self.store.fetch(f"SELECT count(*) FROM {quote_ident(table)}")
        return int(res.rows[0][0])

    async def _drop_staging(self, target: SyncTarget) -> None:
        def _drop(cur: duckdb.DuckDBPyConnection) -> None:
            for table in target.tables:
                cur.execute(f"DROP TABLE IF EXISTS {quote_ident(table + STAGING_SUFFIX)}")

        try:
            await self.store.run_write(_drop)
        except Exception as exc:
            logger.warning("Could not drop staging tables of %s: %s", target.name, exc)

    # ------------------------------------------------------------------ read phase
    async def _read_pair(self, target: SyncTarget, queries: dict[str, str]) -> dict[str, LoadResult]:
        """Read both queries concurrently into their staging tables."""
        cfg = self.config(target.name)
        duck = self.settings.duckdb
        params = cfg.connection_params()
        timeout_ms = int(cfg.sync_timeout) * 1000
        app_name = f"axis_sync_{target.name}"
        custom = dict(cfg.column_rename_map)
        results: dict[str, LoadResult] = {}
        extension = await self._extension_path() if duck.sync_reader != "asyncpg" else None
        if extension is None and duck.sync_reader == "postgres_extension":
            raise RuntimeError("The DuckDB postgres extension is not available (install duckdb-extension-postgres)")

        if extension is not None:
            alias = f"axis_pg_{uuid.uuid4().hex[:10]}"
            conninfo = libpq_conninfo(params, application_name=app_name, timeout_ms=timeout_ms)
            attach_sql = f"ATTACH {pg_literal(conninfo)} AS {quote_ident(alias)} (TYPE postgres, READ_ONLY)"
            await self.store.run_staging(lambda cur: cur.execute(attach_sql))
            try:

                async def _one(table: str, query: str) -> None:
                    staging = table + STAGING_SUFFIX
                    plan = await self.store.run_staging(
                        lambda cur: plan_extension_load(
                            cur,
                            alias,
                            query,
                            target,
                            custom,
                            duck.max_sync_rows,
                            cfg.partition_column,
                            duck.sync_workers,
                        )
                    )
                    if len(plan.queries) == 1:
                        await self.store.run_staging(lambda cur: create_staging_from_plan(cur, alias, staging, plan, 0))
                    else:
                        await self.store.run_staging(
                            lambda cur: create_staging_from_plan(cur, alias, staging, plan, None)
                        )

                        def _insert(cur: duckdb.DuckDBPyConnection, stream: int) -> None:
                            insert_stream(cur, alias, staging, plan, stream)

                        async with asyncio.TaskGroup() as parts:
                            for i in range(len(plan.queries)):
                                parts.create_task(self.store.run_staging(functools.partial(_insert, stream=i)))
                    rows, truncated = await self.store.run_staging(
                        lambda cur: _trim_to_cap(cur, staging, duck.max_sync_rows)
                    )
                    results[table] = extension_result(staging, plan, rows, truncated)

                async with asyncio.TaskGroup() as tg:
                    for table, query in queries.items():
                        tg.create_task(_one(table, query))
            finally:
                await asyncio.shield(
                    self.store.run_staging(lambda cur: cur.execute(f"DETACH DATABASE IF EXISTS {quote_ident(alias)}"))
                )
        else:

            async def _one_pg(table: str, query: str) -> None:
                results[table] = await self._load_with_asyncpg(
                    params, app_name, timeout_ms, query, table + STAGING_SUFFIX, target, custom
                )

            async with asyncio.TaskGroup() as tg:
                for table, query in queries.items():
                    tg.create_task(_one_pg(table, query))
        for table, res in results.items():
            if "dataset_id" not in res.renames.values():
                raise Invalid(f"The query for {table} must return a dataset_id column (after column mapping)")
        return results

    async def _extension_path(self) -> Path | None:
        """Copy (if needed) and LOAD the postgres extension; None when it cannot be loaded."""
        try:
            path = await asyncio.to_thread(postgres_extension_file, self.settings.data_dir)
            if path is None:
                logger.warning("duckdb-extension-postgres is not installed; using the asyncpg reader")
                return None
            load_sql = "LOAD " + pg_literal(str(path))
            await self.store.run_staging(lambda cur: cur.execute(load_sql))
            return path
        except (OSError, duckdb.Error) as exc:
            logger.warning("DuckDB postgres extension unavailable (%s); using the asyncpg reader", exc)
            return None

    async def _load_with_asyncpg(
        self,
        params: ConnectionParams,
        app_name: str,
        timeout_ms: int,
        query: str,
        staging: str,
        target: SyncTarget,
        custom: dict[str, str],
    ) -> LoadResult:
        """Fallback reader: server-side cursor, ``sync_chunk_size`` rows per bounded Arrow batch.

        Lands the same DuckDB types and values as the extension reader (see ``asyncpg_column``).
        """
        duck = self.settings.duckdb
        chunk = duck.sync_chunk_size
        max_rows = duck.max_sync_rows
        limited = limit_query(query, max_rows + 1)
        conn = await connect_source(
            params, application_name=app_name, statement_timeout_ms=timeout_ms, connect_timeout=30
        )
        try:
            attrs = (await conn.prepare(limited)).get_attributes()
            names = [a.name for a in attrs]
            if not names:
                raise Invalid(f"The query for {staging.removesuffix(STAGING_SUFFIX)} returns no columns")
            typmods = await describe_typmods(conn, limited, len(names))
            if typmods is None:  # types without typmods: numeric lands as DOUBLE
                typmods = [(int(a.type.oid), -1) for a in attrs]
            async with conn.transaction(readonly=True):
                columns = [asyncpg_column(t) for t in await describe_result_types(conn, typmods)]
                await install_wire_codecs(conn, {c.codec for c in columns})
                renames = column_renames(names, target, custom)
                select = asyncpg_load_select(names, columns, renames)
                stmt = await conn.prepare(asyncpg_read_query(limited, columns))
                await self.store.run_staging(lambda cur: cur.execute(f"DROP TABLE IF EXISTS {quote_ident(staging)}"))
                cursor = await stmt.cursor()
                first = True
                while True:
                    batch = await cursor.fetch(chunk)

                    def _append(cur: duckdb.DuckDBPyConnection, rows: list[Any] = batch, create: bool = first) -> None:
                        append_arrow_chunk(cur, staging, rows_to_arrow(rows, names, columns), select, create)

                    if first or batch:
                        await self.store.run_staging(_append)
                    first = False
                    if len(batch) < chunk:
                        break
            rows, truncated = await self.store.run_staging(lambda cur: _trim_to_cap(cur, staging, max_rows))
        finally:
            await conn.close()
        return LoadResult(
            table=staging,
            rows=rows,
            truncated=truncated,
            renames=renames,
            source_types={renames[n]: c.source_type for n, c in zip(names, columns, strict=True)},
            reader="asyncpg",
        )

    # ------------------------------------------------------------------ write phase
    def _update_watermarks_sync(
        self, cur: duckdb.DuckDBPyConnection, target: SyncTarget, loads: dict[str, LoadResult], *, check_keys: bool
    ) -> None:
        """Store each table's watermark (its largest finite incremental value).

        With ``check_keys`` (full syncs) a table whose upsert key repeats gets a ``disabled``
        marker instead: incremental syncs would merge its rows, so they stay full until it is unique.
        """
        column = self.config(target.name).incremental_column
        for side, table in (("dataset", target.dataset_table), ("results", target.results_table)):
            key = WATERMARK_PREFIX + table
            load = loads[table]
            stored = load.renames.get(column) if column else None
            cast = pg_cast_for(load.source_types.get(stored, "")) if stored else None
            if column and check_keys:
                keys = result_keys(list(load.renames.values()), side)
                if duplicate_key_sync(cur, table, keys):
                    DuckDBStore.kv_set_sync(
                        cur,
                        key,
                        {
                            "value": None,
                            "disabled": (
                                f"incremental sync is off: rows of {table} repeat the upsert key ({', '.join(keys)}); "
                                "return a unique id column from the query to enable it"
                            ),
                        },
                    )
                    continue
            value = None
            if stored and cast:
                col = quote_ident(stored)
                finite = f" FILTER (WHERE isfinite({col}))" if cast in INFINITE_CASTS else ""
                row = cur.execute(f"SELECT CAST(max({col}){finite} AS VARCHAR) FROM {quote_ident(table)}").fetchone()
                value = row[0] if row else None
            if column and stored and cast and value is not None:
                DuckDBStore.kv_set_sync(
                    cur, key, {"value": value, "pg_cast": cast, "column": column, "stored_column": stored}
                )
            else:
                DuckDBStore.kv_delete_sync(cur, key)

    def _register_sync(
        self, cur: duckdb.DuckDBPyConnection, target: SyncTarget, sync_id: str, truncated: bool
    ) -> dict[str, Any]:
        """Inside the swap transaction: metadata, registry row and (human signals) the raw sync id."""
        meta = compute_table_metadata_sync(cur, target.view, metadata_parts(cur, target))
        DuckDBStore.set_metadata_sync(cur, target.view, meta)
        DuckDBStore.register_dataset_sync(
            cur,
            DatasetInfo(
                dataset_id=target.dataset_id,
                kind=target.kind,
                source="sync",
                table_name=target.view,
                row_count=int(meta["row_count"]),
                columns=DuckDBStore.describe_sync(cur, target.view),
                loaded_at=utc_now(),
                status="ready",
                format="sync",
                extra={"sync_id": sync_id, "truncated": truncated, "tables": list(target.tables)},
            ),
        )
        if target.name == "human_signals":
            DuckDBStore.kv_set_sync(cur, RAW_SYNC_ID_KEY, sync_id)
        return meta

    async def _sync_full(self, target: SyncTarget, sync_id: str) -> _Outcome:
        started = time.perf_counter()
        cfg = self.config(target.name)
        queries = {target.dataset_table: cfg.dataset_query or "", target.results_table: cfg.results_query or ""}
        loads = await self._read_pair(target, queries)
        truncated = any(load.truncated for load in loads.values())

        def _swap(cur: duckdb.DuckDBPyConnection) -> dict[str, Any]:
            cur.execute("BEGIN TRANSACTION")
            try:
                for table in target.tables:
                    cur.execute(f"DROP TABLE IF EXISTS {quote_ident(table)}")
                    cur.execute(f"ALTER TABLE {quote_ident(table + STAGING_SUFFIX)} RENAME TO {quote_ident(table)}")
                if DuckDBStore.is_table_sync(cur, target.view):  # a table (not a view) left under the view's name
                    cur.execute(f"DROP TABLE {quote_ident(target.view)}")
                cur.execute(f"CREATE OR REPLACE VIEW {quote_ident(target.view)} AS {joined_select_sql(cur, target)}")
                self._update_watermarks_sync(cur, target, loads, check_keys=True)
                meta = self._register_sync(cur, target, sync_id, truncated)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            return meta

        read_s = time.perf_counter() - started
        meta = await self.store.run_write(_swap)
        self.store.cache_metadata(target.view, meta)
        reader = next(iter(loads.values())).reader
        phases = {"read": round(read_s, 3), "swap": round(time.perf_counter() - started - read_s, 3)}
        return _Outcome(sync_type="full", truncated=truncated, reader=reader, metadata=meta, phases=phases)

    async def _sync_incremental(self, target: SyncTarget, wms: dict[str, Any], sync_id: str) -> _Outcome:
        cfg = self.config(target.name)
        column = cfg.incremental_column or ""
        rows_before = await self._count(target.view)
        queries = {
            target.dataset_table: incremental_query(cfg.dataset_query or "", column, wms[target.dataset_table]),
            target.results_table: incremental_query(cfg.results_query or "", column, wms[target.results_table]),
        }
        loads = await self._read_pair(target, queries)
        truncated = any(load.truncated for load in loads.values())

        def _apply(cur: duckdb.DuckDBPyConnection) -> dict[str, Any]:
            for table in target.tables:
                live = [(c["name"], c["type"]) for c in DuckDBStore.describe_sync(cur, table)]
                new = [(c["name"], c["type"]) for c in DuckDBStore.describe_sync(cur, table + STAGING_SUFFIX)]
                if live != new:
                    raise SchemaDrift(f"columns of {table} changed at the source")
            cur.execute("BEGIN TRANSACTION")
            try:
                for side, table in (("dataset", target.dataset_table), ("results", target.results_table)):
                    staging = quote_ident(table + STAGING_SUFFIX)
                    live_t = quote_ident(table)
                    names = [c["name"] for c in DuckDBStore.describe_sync(cur, table)]
                    keys = result_keys(names, side)
                    if duplicate_key_sync(cur, table + STAGING_SUFFIX, keys):
                        raise SchemaDrift(f"new rows of {table} repeat the upsert key ({', '.join(keys)})")
                    order = quote_ident(loads[table].renames.get(column, column))
                    part = ", ".join(quote_ident(k) for k in keys)
                    match = " AND ".join(
                        f"{live_t}.{quote_ident(k)} IS NOT DISTINCT FROM s.{quote_ident(k)}" for k in keys
                    )
                    cur.execute(f"DELETE FROM {live_t} USING {staging} AS s WHERE {match}")
                    cur.execute(
                        f"INSERT INTO {live_t} BY NAME SELECT * FROM {staging} "
                        f"QUALIFY row_number() OVER (PARTITION BY {part} ORDER BY {order} DESC NULLS LAST) = 1"
                    )
                    cur.execute(f"DROP TABLE {staging}")
                self._update_watermarks_sync(cur, target, loads, check_keys=False)
                meta = self._register_sync(cur, target, sync_id, truncated)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            return meta

        meta = await self.store.run_write(_apply)
        self.store.cache_metadata(target.view, meta)
        reader = next(iter(loads.values())).reader
        return _Outcome(
            sync_type="incremental", truncated=truncated, reader=reader, rows_before=rows_before, metadata=meta
        )

    # ------------------------------------------------------------------ derived (§10.9)
    def _derived_builder(self, name: str) -> DerivedBuilder | None:
        if self.derived_builders is not None:
            return self.derived_builders.get(name)
        if name != "human_signals":
            return None
        try:
            module = importlib.import_module("app.services.human_signals_service")
        except ImportError:
            return None
        builder = getattr(module, "build_human_signals_derived", None)
        return builder if callable(builder) else None

    async def _run_derived(self, target: SyncTarget, sync_id: str) -> None:
        builder = self._derived_builder(target.name)
        if builder is None:
            logger.info("No derived-table builder for %s", target.name)
            return
        raw_id = await self.store.kv_get(RAW_SYNC_ID_KEY) or sync_id
        previous = await self.get_status(CASES_TABLE)
        await self._set_status(CASES_TABLE, {**previous, "state": "syncing", "sync_id": raw_id})
        try:
            built = await builder(self.store, self.settings, target.view, raw_id)
        except Exception as exc:
            message = self._scrub(str(exc))
            logger.error("Derived build of %s failed: %s", CASES_TABLE, message)
            await self._set_status(CASES_TABLE, {**previous, "state": "error", "error": message, "sync_id": raw_id})
            return
        if built is None:  # not V2: cases built from an earlier sync would be served as this one's
            await self.store.run_write(lambda cur: cur.execute(f"DROP TABLE IF EXISTS {quote_ident(CASES_TABLE)}"))
            await self.store.kv_delete(CASES_SYNC_ID_KEY)
            await self._set_status(
                CASES_TABLE,
                {
                    **blank_status(),
                    "error": "The synced rows are not V2 human-signals data; no cases were built",
                    "sync_id": raw_id,
                },
            )
            return
        await self.store.kv_set(CASES_SYNC_ID_KEY, raw_id)
        rows = await self._count(CASES_TABLE)
        await self._set_status(
            CASES_TABLE,
            {
                **blank_status(),
                "state": "ready",
                "rows": rows,
                "last_sync": _now_iso(),
                "sync_type": "derived",
                "sync_id": raw_id,
            },
        )

    async def repair_derived(self) -> bool:
        """Rebuild the human-signals derived table from the stored raw rows (every boot, §1.1 3c); True if run.

        Every boot, not only when its sync id lags the raw one (a crash between the stages), so
        changes to the aggregation take effect without a new sync.
        """
        raw_id = await self.store.kv_get(RAW_SYNC_ID_KEY)
        if raw_id is None or not await self.store.table_exists(TARGETS["human_signals"].view):
            return False
        if self._derived_builder("human_signals") is None:
            return False
        cases_id = await self.store.kv_get(CASES_SYNC_ID_KEY)
        logger.info("Rebuilding %s from raw sync %s (cases were built from %s)", CASES_TABLE, raw_id, cases_id)
        await self._run_derived(TARGETS["human_signals"], str(raw_id))
        return True

    # ------------------------------------------------------------------ scheduler (§10.8)
    def scheduled_intervals(self) -> dict[str, float]:
        """Seconds between periodic syncs for each eligible dataset with a refresh interval."""
        out: dict[str, float] = {}
        for name in self.eligible():
            minutes = self.config(name).refresh_interval_minutes
            if minutes > 0:
                out[name] = minutes * 60.0
        return out

    async def run_scheduler(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        """Periodic incremental syncs; the first run waits one interval; cancellation exits quietly."""
        intervals = self.scheduled_intervals()
        if not intervals:
            return
        start = clock()
        last_run = {n: start for n in intervals}
        logger.info("Sync scheduler: %s", {n: f"{s / 60:.0f} min" for n, s in intervals.items()})
        try:
            while True:
                await asyncio.sleep(max(1.0, min(seconds_until_next(last_run, intervals, clock()), 60.0)))
                due = due_datasets(last_run, intervals, clock())
                if not due:
                    continue
                results = await self.sync_all(reason="scheduled", names=due)
                for res in results:
                    last_run[res.dataset] = clock()
                    if res.status == "error":
                        logger.warning("Scheduled sync of %s failed: %s", res.dataset, res.error)
        except asyncio.CancelledError:
            logger.info("Sync scheduler stopped")
            raise


def json_safe_status(status: dict[str, Any]) -> dict[str, Any]:
    """A status dict with datetimes as ISO-8601 UTC text (``Z``; naive datetimes are UTC)."""
    return {k: (utc_iso(v) if isinstance(v, dt.datetime) else v) for k, v in status.items()}
