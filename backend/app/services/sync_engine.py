"""PostgreSQL → DuckDB sync engine (spec §10.2–10.10, decision 3).

Each configured source (monitoring, human_signals, eval) is a *split* dataset: a dataset query and
a results query, read concurrently into ``<name>_dataset`` / ``<name>_results`` and joined by the
view ``<name>_data`` (``human_signals_raw`` for human signals).

Read path (measured by ``bench/sync_bench.py``): DuckDB's postgres extension streams the query's
binary COPY straight into a staging table (types kept: timestamptz → UTC TIMESTAMP, jsonb → JSON
text, bool, NULL vs ''). Fallback: a chunked asyncpg cursor that appends bounded Arrow batches.
Full syncs build staging tables and swap them in one transaction; incremental syncs re-read rows at
or above typed watermarks and upsert them on a key. Status, watermarks and sync ids live in the
store's KV table, so they survive restarts.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import fcntl
import functools
import importlib
import importlib.util
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import duckdb

from app.config import DBImportConfig, Settings
from app.config.db_configs import ConnectionParams
from app.errors import Conflict, Invalid, NotFound
from app.log_redaction import scrub_secrets
from app.services.background import BackgroundTasks
from app.services.connection_store import connect_source
from app.services.duckdb_store import (
    DatasetInfo,
    DuckDBStore,
    bound_ingest_buffers,
    compute_table_metadata_sync,
    quote_ident,
    reserved_column_renames,
    utc_instant_sql,
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


def _alias_table(groups: dict[str, list[str]], identities: list[str]) -> dict[str, str]:
    table = {name: name for name in identities}
    for canonical, aliases in groups.items():
        table[canonical] = canonical
        for alias in aliases:
            table[alias] = canonical
    return table


# §8.2 monitoring aliases (normalised key → canonical).
MONITORING_ALIASES = _alias_table(
    {
        "dataset_id": ["id", "record_id"],
        "timestamp": ["time", "created_at", "dataset_created_at"],
        "model_name": ["model", "agent_name", "agent"],
        "latency": ["latency_ms", "response_time"],
        "has_errors": ["error"],
        "query": ["input", "prompt", "user_input"],
        "actual_output": ["output", "response", "model_output", "completion"],
        "evaluation_name": ["evaluationname", "eval_name", "experiment", "experiment_name"],
        "environment": ["env", "stage"],
    },
    [
        "metric_id",
        "run_id",
        "llm_provider",
        "expected_output",
        "metric_name",
        "metric_score",
        "metric_type",
        "parent",
        "weight",
        "passed",
        "threshold",
        "signals",
        "explanation",
        "critique",
        "metric_category",
        "source_type",
        "source_name",
        "source_component",
        "trace_id",
        "observation_id",
        "eval_mode",
        "cost_estimate",
        "version",
    ],
)

# §4.4 eval aliases.
EVAL_ALIASES = _alias_table(
    {
        "dataset_id": ["id", "record_id", "eval_id"],
        "query": ["input", "prompt", "question"],
        "actual_output": ["output", "response", "completion", "answer"],
        "expected_output": ["expected", "ground_truth", "reference"],
        "evaluation_name": ["experiment", "run_name", "experiment_name"],
        "metric_name": ["metric"],
        "metric_score": ["score", "metric_value", "value"],
    },
    [],
)


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
    "eval": SyncTarget("eval", "eval", "eval_data", EVAL_ALIASES),
}
ALL_SYNC_NAMES = ("monitoring", "human_signals", "eval", "kpi")
METADATA_PART_ROWS = 250_000  # dataset rows per metadata join part (see metadata_parts)


# ---------------------------------------------------------------------- pure helpers
def normalise_key(name: str) -> str:
    """Lowercase, trim, spaces/hyphens → ``_`` (the alias lookup key)."""
    return name.strip().lower().replace(" ", "_").replace("-", "_")


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
            new = normalise_key(col) or col
        else:
            new = target.aliases.get(normalise_key(col), col)
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
    return utc_now().isoformat()


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


# asyncpg type name → DuckDB type name on the source side (used for watermarks).
_ASYNCPG_SOURCE_TYPES: dict[str, str] = {
    "bool": "BOOLEAN",
    "int2": "SMALLINT",
    "int4": "INTEGER",
    "int8": "BIGINT",
    "float4": "FLOAT",
    "float8": "DOUBLE",
    "numeric": "DOUBLE",
    "text": "VARCHAR",
    "varchar": "VARCHAR",
    "bpchar": "VARCHAR",
    "name": "VARCHAR",
    "json": "VARCHAR",
    "jsonb": "VARCHAR",
    "uuid": "VARCHAR",
    "timestamptz": "TIMESTAMP WITH TIME ZONE",
    "timestamp": "TIMESTAMP",
    "date": "DATE",
}


def _arrow_type(pg_type: str) -> pa.DataType:
    """Arrow type of an asyncpg column (pyarrow is imported only by this fallback path)."""
    import pyarrow as pa

    types = {
        "bool": pa.bool_(),
        "int2": pa.int16(),
        "int4": pa.int32(),
        "int8": pa.int64(),
        "float4": pa.float32(),
        "float8": pa.float64(),
        "numeric": pa.float64(),
        "timestamptz": pa.timestamp("us", tz="UTC"),
        "timestamp": pa.timestamp("us"),
        "date": pa.date32(),
    }
    return types.get(pg_type, pa.string())


def _to_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str)
    return str(value)


def rows_to_arrow(rows: list[Any], names: list[str], pg_types: list[str]) -> pa.Table:
    """One fetched chunk as an Arrow table with explicit, source-derived types."""
    import pyarrow as pa

    arrays = []
    for i, pg_type in enumerate(pg_types):
        values = [r[i] for r in rows]
        arrow_type = _arrow_type(pg_type)
        if pg_type == "numeric":
            values = [float(v) if isinstance(v, decimal.Decimal) else v for v in values]
        elif pg_type == "uuid" or pg_type not in _ASYNCPG_SOURCE_TYPES:
            values = [_to_text(v) for v in values]
        arrays.append(pa.array(values, type=arrow_type))
    return pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(names))])


def append_arrow_chunk(
    cur: duckdb.DuckDBPyConnection,
    staging: str,
    chunk: pa.Table,
    columns: list[tuple[str, str]],
    renames: dict[str, str],
    create: bool,
) -> None:
    """Create (first chunk) or append to ``staging`` from an Arrow chunk."""
    positional = [(f"c{i}", typ) for i, (_, typ) in enumerate(columns)]
    pos_renames = {f"c{i}": renames[name] for i, (name, _) in enumerate(columns)}
    view = f"_axis_chunk_{uuid.uuid4().hex[:8]}"
    bound_ingest_buffers(cur)
    cur.register(view, chunk)
    try:
        select = f"SELECT {_projection(positional, pos_renames)} FROM {quote_ident(view)}"
        if create:
            cur.execute(f"CREATE TABLE {quote_ident(staging)} AS {select}")
        else:
            cur.execute(f"INSERT INTO {quote_ident(staging)} {select}")
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
            raise NotFound(f"Unknown dataset: {name}")
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
        """Fallback reader: server-side cursor, ``sync_chunk_size`` rows per bounded Arrow batch."""
        duck = self.settings.duckdb
        chunk = duck.sync_chunk_size
        max_rows = duck.max_sync_rows
        conn = await connect_source(
            params, application_name=app_name, statement_timeout_ms=timeout_ms, connect_timeout=30
        )
        try:
            async with conn.transaction(readonly=True):
                stmt = await conn.prepare(limit_query(query, max_rows + 1))
                attrs = stmt.get_attributes()
                names = [a.name for a in attrs]
                pg_types = [a.type.name for a in attrs]
                columns = [(n, _ASYNCPG_SOURCE_TYPES.get(t, "VARCHAR")) for n, t in zip(names, pg_types, strict=True)]
                renames = column_renames(names, target, custom)
                await self.store.run_staging(lambda cur: cur.execute(f"DROP TABLE IF EXISTS {quote_ident(staging)}"))
                cursor = await stmt.cursor()
                first = True
                while True:
                    batch = await cursor.fetch(chunk)

                    def _append(cur: duckdb.DuckDBPyConnection, rows: list[Any] = batch, create: bool = first) -> None:
                        append_arrow_chunk(cur, staging, rows_to_arrow(rows, names, pg_types), columns, renames, create)

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
            source_types={renames[n]: t for n, t in columns},
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
                    DuckDBStore.kv_set_sync(cur, key, {"value": None, "disabled": (
                        f"incremental sync is off: rows of {table} repeat the upsert key ({', '.join(keys)}); "
                        "return a unique id column from the query to enable it"
                    )})
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
        if built is None and not await self.store.table_exists(CASES_TABLE):
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
    """A status dict with datetimes as ISO text."""
    return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in status.items()}
