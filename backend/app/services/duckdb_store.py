"""The single owner of the embedded DuckDB analytics store.

Reads run in worker threads through one shared ``anyio.CapacityLimiter``, each on its own
cursor; writes are serialised by one async lock. Every stored dataset is recorded in the
``datasets`` registry. Identifiers reach SQL only through :func:`quote_ident`.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

import anyio
import duckdb

from app.errors import Invalid, NotFound, Unavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The fixed set of registry kinds (a typed query parameter of GET /api/store/datasets).
DatasetKind = Literal["eval", "monitoring", "human_signals"]
DATASET_KINDS: tuple[str, ...] = get_args(DatasetKind)

# Tables reachable from endpoints besides the dataset tables named in the registry.
ALLOWED_TABLES = frozenset({"monitoring_data", "human_signals_raw", "human_signals_cases", "eval_data", "kpi_data"})

REGISTRY_TABLE = "datasets"
# DuckDB's integer column types (as DESCRIBE names them).
INTEGER_TYPES = frozenset(
    ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT")
)
METADATA_TABLE = "_store_metadata"
KV_TABLE = "_store_kv"
REGISTRY_CACHE_ENTRIES = 256


def quote_ident(name: str) -> str:
    """Double-quote one SQL identifier, escaping embedded quotes (DB-48)."""
    if not isinstance(name, str) or name == "" or "\x00" in name:
        raise Invalid("Invalid identifier")
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    """Single-quote one SQL string literal (DuckDB, and PostgreSQL with standard_conforming_strings).

    Only where a value cannot be a bound parameter: read_csv options, ``SET``/``LOAD``/``ATTACH``
    arguments and the watermark in a sync's PostgreSQL query text.
    """
    return "'" + text.replace("'", "''") + "'"


# DuckDB's row-number pseudo-column: a stored column of that name (any case) would shadow it, and
# paging, caps and CSV error reports address rows by it.
RESERVED_COLUMN = "rowid"
# The row-order column added to inline records and database-import scratch tables (never stored).
ORDINAL = "__axis_ord"


def reserved_column_renames(names: Iterable[str]) -> dict[str, str]:
    """``{name: new}`` for columns named ``rowid`` (any case): ``source_rowid`` (numbered when taken)."""
    names = list(names)
    taken = {n.lower() for n in names}
    out: dict[str, str] = {}
    for name in names:
        if name.lower() != RESERVED_COLUMN:
            continue
        new, i = f"source_{name}", 2
        while new.lower() in taken:
            new, i = f"source_{name}_{i}", i + 1
        taken.add(new.lower())
        out[name] = new
    return out


def free_reserved_columns_sync(cur: duckdb.DuckDBPyConnection, table: str) -> None:
    """Rename a ``rowid`` column of ``table`` so DuckDB's row number stays addressable."""
    names = [str(r[0]) for r in cur.execute(f"DESCRIBE {quote_ident(table)}").fetchall()]
    for old, new in reserved_column_renames(names).items():
        cur.execute(f"ALTER TABLE {quote_ident(table)} RENAME COLUMN {quote_ident(old)} TO {quote_ident(new)}")


# Row groups a bulk insert buffers before compressing and flushing them (DuckDB default 5). One is
# enough for a single streamed table (a sync read, a CSV parse) and cuts its peak memory by ~1/3
# without costing time (bench/README.md).
STAGING_ROW_GROUP_BUFFER = 1


def bound_ingest_buffers(cur: duckdb.DuckDBPyConnection) -> None:
    """Limit the bulk-insert row-group buffer of this (private, short-lived) cursor only."""
    cur.execute(f"SET SESSION write_buffer_row_group_count = {STAGING_ROW_GROUP_BUFFER}")


def head_rows_sql(table: str) -> str:
    """``SELECT * FROM table LIMIT ? OFFSET ?``: a page of rows in stored (insertion = rowid) order.

    Scans keep insertion order (DuckDB's ``preserve_insertion_order``, on by default and never
    changed here) and LIMIT/OFFSET take the first rows of that order. ``ORDER BY rowid`` gives the
    same rows but first reads every column of every row (at 1 M rows: +350 MB and 0.5 s for a
    50 k-row page).
    """
    return f"SELECT * FROM {quote_ident(table)} LIMIT ? OFFSET ?"


def utc_instant_sql(expr: str) -> str:
    """A TIMESTAMPTZ SQL expression (a column reference) as a naive UTC TIMESTAMP.

    The same values as ``timezone('UTC', expr)`` (infinities and NULL included), computed from the
    epoch microseconds instead of through the ICU calendar: about 10 × faster per row, which is
    most of the cost of landing a timestamptz column.
    """
    return f"(CASE WHEN isfinite({expr}) THEN make_timestamp(epoch_us({expr})) ELSE timezone('UTC', {expr}) END)"


# Regex parts of timestamp text: a time of day (``10:00``, ``10:00:00``, ``10:00:00.123``), a UTC offset
# (``+02``, ``+0200``, ``-05:00``) and a zone *name* (UTC, PST, Europe/Berlin: two letters in a row).
_TIME_OF_DAY_RE = "[0-9]:[0-9]{2}(?::[0-9]{2}(?:\\.[0-9]+)?)?"
_UTC_OFFSET_RE = "[+-][0-9]{2}(?::?[0-9]{2})?"
_ZONE_NAME_RE = "[A-Za-z]{2,}"
# ``Z`` or an offset right after the time: DuckDB's TIMESTAMPTZ cast reads it (matched on the trimmed text).
_CAST_READY_ZONE_RE = f"{_TIME_OF_DAY_RE}(?:Z|{_UTC_OFFSET_RE})$"
# The zone after the time spelled in a way the cast rejects: a lowercase ``z``, or one blank before ``Z`` or an
# offset (``2024-01-01 10:00:00 +02:00``, as Ruby's ``Time#to_s`` and ``date`` write). Group 1 is the time of
# day, group 2 the zone with its blank.
_LOOSE_ZONE_RE = f"({_TIME_OF_DAY_RE})( ?z| Z| {_UTC_OFFSET_RE})\\s*$"


def named_or_loose_zone_sql(text: str) -> str:
    """True for text with a zone name, or a zone after its time that only :func:`zone_respelled_sql` makes castable.

    One regex pass: a check over every value costs no more than the zone-name check alone.
    """
    return f"regexp_matches({text}, {quote_literal(f'{_ZONE_NAME_RE}|{_LOOSE_ZONE_RE}')})"


def zoned_text_sql(text: str) -> str:
    """True for timestamp text that carries its zone: a UTC offset or ``Z`` after the time (also spelled
    ``… +02:00``, ``…z``, ``… Z``), or a zone name.

    Only such text may go through DuckDB's TIMESTAMPTZ cast: after a zone *name* in the same vector,
    the ICU cast reads zoneless values in that zone, so those are cast to TIMESTAMP (taken as UTC).
    """
    return f"(regexp_matches(trim({text}), {quote_literal(_CAST_READY_ZONE_RE)}) OR {named_or_loose_zone_sql(text)})"


def zone_respelled_sql(text: str) -> str:
    """``text`` with the zone after its time respelled the way DuckDB's casts read it; any other text as it is.

    ``…10:00:00 +02:00`` → ``…10:00:00+02:00``, ``…10:00:00z`` and ``…10:00:00 Z`` → ``…10:00:00Z``
    (trailing blanks dropped); only that trailing part changes. The cast answers NULL for those
    spellings, and slowly (about 0.3 ms a value: 5 minutes for a million), so they are recognised
    by a regex before any cast; other text costs that one regex match.
    """
    loose = quote_literal(_LOOSE_ZONE_RE)
    return (
        f"(CASE WHEN regexp_matches({text}, {loose}) THEN regexp_replace({text}, {loose}, '\\1') "
        f"|| upper(trim(regexp_extract({text}, {loose}, 2))) ELSE {text} END)"
    )


def zoned_text_utc_cases_sql(text: str, *, strict: bool = False) -> str:
    """``WHEN … THEN …`` branches of a CASE: text with its zone (:func:`zoned_text_sql`) as a naive UTC TIMESTAMP.

    A zone the cast reads goes straight to it (one regex, as before); a zone name or a loose spelling
    through :func:`zone_respelled_sql`. NULL when the cast fails; ``strict``: the cast's error.
    """
    cast = "CAST" if strict else "TRY_CAST"
    return (
        f"WHEN regexp_matches(trim({text}), {quote_literal(_CAST_READY_ZONE_RE)}) "
        f"THEN timezone('UTC', {cast}({text} AS TIMESTAMPTZ)) "
        f"WHEN {named_or_loose_zone_sql(text)} "
        f"THEN timezone('UTC', {cast}({zone_respelled_sql(text)} AS TIMESTAMPTZ)) "
    )


def epoch_timestamp_sql(number: str) -> str:
    """A DOUBLE expression of Unix time as a TIMESTAMP: seconds, or milliseconds from 1e11 on; NULL out of range."""
    return (
        f"try(make_timestamp(CAST(CASE WHEN abs({number}) >= 1e11 THEN {number} * 1000 "
        f"ELSE {number} * 1000000 END AS BIGINT)))"
    )


def utc_timestamp_sql(column: str, type_name: str) -> str:
    """The quoted ``column`` of DuckDB type ``type_name`` as a naive UTC TIMESTAMP expression.

    TIMESTAMP as is, TIMESTAMPTZ converted to UTC, DATE / other TIMESTAMP precisions cast, numbers
    read as Unix time (:func:`epoch_timestamp_sql`); text is parsed with TRY_CAST (an offset, ``Z``
    or a zone name → converted to UTC, :func:`zoned_text_utc_cases_sql`; none → taken as UTC; 9–13
    digits → Unix time), so an unparseable value is NULL.
    """
    t = type_name.upper()
    if t == "TIMESTAMP":
        return column
    if t.startswith("TIMESTAMP WITH TIME ZONE") or t == "TIMESTAMPTZ":
        return utc_instant_sql(column)
    if t.startswith("TIMESTAMP") or t == "DATE":
        return f"CAST({column} AS TIMESTAMP)"
    if t.startswith(("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "DECIMAL")):
        return epoch_timestamp_sql(f"CAST({column} AS DOUBLE)")
    text = f"CAST({column} AS VARCHAR)"
    return (
        f"(CASE {zoned_text_utc_cases_sql(text)}"
        f"WHEN regexp_full_match(trim({text}), '[0-9]{{9,13}}(\\.[0-9]+)?') "
        f"THEN {epoch_timestamp_sql(f'CAST(trim({text}) AS DOUBLE)')} "
        f"ELSE TRY_CAST({text} AS TIMESTAMP) END)"
    )


def utc_now() -> dt.datetime:
    """Naive UTC timestamp (the store keeps plain UTC TIMESTAMPs)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def utc_iso(moment: dt.datetime | None = None) -> str:
    """ISO-8601 UTC text with a ``Z`` suffix, as the API shows instants (now by default).

    A naive ``moment`` is UTC (what :func:`utc_now` and the store's TIMESTAMP columns hold); an
    aware one is converted to UTC first.
    """
    if moment is None:
        moment = utc_now()
    elif moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.isoformat() + "Z"


def utc_iso_text(text: str) -> str:
    """Stored timestamp text as :func:`utc_iso` text; naive text (stores written before offsets were) is UTC.

    Text that is not an ISO-8601 timestamp (or cannot be moved to UTC) is returned unchanged.
    """
    try:
        return utc_iso(dt.datetime.fromisoformat(text))
    except (ValueError, OverflowError):
        return text


def assert_off_event_loop() -> None:
    """Raise if called on a thread that runs an asyncio event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError("DuckDB call attempted on the event loop thread")


@dataclass
class QueryResult:
    """Column names and row tuples of one query."""

    columns: list[str]
    rows: list[tuple[Any, ...]]


@dataclass
class DatasetInfo:
    """One entry of the dataset registry."""

    dataset_id: str
    kind: str
    source: str
    table_name: str
    row_count: int
    columns: list[dict[str, str]]
    loaded_at: dt.datetime
    status: str = "ready"
    format: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def column_names(self) -> list[str]:
        """Column names in table order."""
        return [c["name"] for c in self.columns]

    def column_type(self, name: str) -> str | None:
        """DuckDB type of a column, or None when absent."""
        for col in self.columns:
            if col["name"] == name:
                return col["type"]
        return None


def new_dataset_id(kind: str) -> str:
    """A fresh, URL-safe dataset id such as ``eval_3f9a1c2b7d4e``."""
    return f"{kind}_{uuid.uuid4().hex[:12]}"


_STORAGE_WRITE_MARKERS = ("Could not write file", "Failed to commit", "No space left on device")


def is_storage_write_failure(exc: BaseException) -> bool:
    """True for DuckDB errors caused by the data directory refusing writes (read-only, immutable, full)."""
    return isinstance(exc, (duckdb.IOException, duckdb.TransactionException)) and any(
        marker in str(exc) for marker in _STORAGE_WRITE_MARKERS
    )


def cleanup_quietly(cur: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Run a cleanup statement; its own failure (e.g. no active transaction) must not mask the first error."""
    try:
        cur.execute(sql)
    except duckdb.Error as exc:
        logger.warning("Cleanup statement failed (%s): %s", sql.split()[0], str(exc).splitlines()[0][:200])


# Tables that exist only while a load builds (a stop in between leaves them): staging tables of
# uploads, imports and syncs, and the scratch tables of their processing steps.
_TRANSIENT_TABLE = re.compile(r".*(_staging|__staging|__norm|__typed|__mon|__raw|__joined)")
# The scratch table a database-browser import streams its rows into before it lands them.
DB_IMPORT_SCRATCH_PREFIX = "_axis_dbimport_"


def sweep_orphan_tables_sync(cur: duckdb.DuckDBPyConnection) -> list[str]:
    """At open, before any load runs: drop build tables and unregistered ``ds_*`` tables; return their names.

    A process killed while a load builds leaves its staging table (and, for human signals, the
    cases table built before the swap) behind; no registry row refers to them and no load would
    ever drop them.
    """
    tables = [str(r[0]) for r in cur.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()]
    referenced: set[str] = set()
    for table_name, extra_json in cur.execute(f"SELECT table_name, extra_json FROM {REGISTRY_TABLE}").fetchall():
        referenced |= {str(table_name), f"{table_name}__records"}
        cases = json.loads(extra_json or "{}").get("cases_table")
        if isinstance(cases, str):
            referenced.add(cases)
    orphans = sorted(
        t
        for t in tables
        if t not in referenced and (_TRANSIENT_TABLE.fullmatch(t) or t.startswith(("ds_", DB_IMPORT_SCRATCH_PREFIX)))
    )
    for table in orphans:
        cur.execute(f"DROP TABLE IF EXISTS {quote_ident(table)}")
    views = cur.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal AND NOT temporary").fetchall()
    scratch = sorted(str(r[0]) for r in views if _TRANSIENT_TABLE.fullmatch(str(r[0])))  # a killed import's __raw
    for view in scratch:
        cur.execute(f"DROP VIEW IF EXISTS {quote_ident(view)}")
    return orphans + scratch


async def _interrupt_until_done(cur: duckdb.DuckDBPyConnection, task: asyncio.Future[Any], *, queued: bool) -> None:
    """Stop a cancelled read on ``cur``: cancel it while ``queued`` for the limiter, else interrupt it.

    The worker checks the cancel flag after marking itself started, so a queued read that gets a
    thread anyway never touches the cursor. A started one is interrupted every 50 ms until it
    finishes (at most 30 s): a read made of several statements may catch one interrupt and go on.
    """
    if queued:
        task.cancel()
    deadline = time.monotonic() + 30.0
    while not task.done() and time.monotonic() < deadline:
        cur.interrupt()
        await asyncio.wait([task], timeout=0.05)
    if task.done():
        _retrieve(task)
    else:  # still winding down: its error is retrieved when it ends
        task.add_done_callback(_retrieve)


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a cancelled read's outcome retrieved: its interrupt error is expected (no stray asyncio log)."""
    if not task.cancelled():
        task.exception()


async def _finish_then_cancel(task: asyncio.Future[T]) -> T:
    """``task``'s result; a cancellation that arrives meanwhile is raised only once ``task`` has finished.

    The wait is shielded from anyio cancel scopes (which would re-deliver their cancellation at every
    await) and repeated after a direct ``Task.cancel()``. Cancelled, a failure of ``task`` is logged (no
    caller is left to get it, and asyncio would report it as never retrieved).
    """
    cancelled = False
    while not task.done():
        try:
            with anyio.CancelScope(shield=True):
                await asyncio.wait([task])
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        error = None if task.cancelled() else task.exception()
        if error is not None:
            logger.warning("A write whose caller was cancelled failed: %s", error)
        raise asyncio.CancelledError
    return task.result()


class StoreLocked(RuntimeError):
    """The DuckDB file is held by another process (one read-write process per file, decision 4)."""


class DuckDBStore:
    """Owns the DuckDB file: connection, read limiter, write lock, registry, metadata, KV."""

    def __init__(
        self,
        path: Path,
        *,
        query_concurrency: int = 8,
        memory_limit: str | None = None,
        threads: int | None = None,
        ingest_threads: int | None = None,
    ) -> None:
        self.path = path
        self.query_concurrency = query_concurrency
        self.memory_limit = memory_limit
        self.threads = threads
        self.ingest_threads = ingest_threads
        self._con: duckdb.DuckDBPyConnection | None = None
        self._limiter = anyio.CapacityLimiter(query_concurrency)
        self._write_lock = asyncio.Lock()
        self._metadata_cache: dict[str, dict[str, Any]] = {}
        self._cache_lock = threading.Lock()
        # Registry lookups cached per write generation: every run_write bumps it (all registry
        # writes go through run_write), so a cached entry never outlives a write.
        self._write_generation = 0
        self._registry_cache: dict[tuple[str, str], tuple[int, DatasetInfo | None]] = {}
        self.read_count = 0

    # ------------------------------------------------------------------ lifecycle
    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """The shared limiter every DuckDB read goes through."""
        return self._limiter

    def open_sync(self) -> None:
        """Open the file and create the internal tables (call from a worker thread)."""
        assert_off_event_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {}
        if self.memory_limit:
            config["memory_limit"] = self.memory_limit
        if self.threads:
            config["threads"] = self.threads
        try:
            con = duckdb.connect(str(self.path), config=config)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise
            holder = re.search(r"PID (\d+)", str(exc))
            by = f" (PID {holder.group(1)})" if holder else ""
            raise StoreLocked(
                f"The store {self.path} is open in another process{by}: run one AXIS server per store file, "
                "or give this one another AXIS_HOME or duckdb.path"
            ) from None
        # The store keeps naive UTC timestamps; TIMESTAMPTZ <-> TIMESTAMP casts and naive text read
        # as TIMESTAMPTZ follow the session zone, so it is UTC whatever the machine's zone is.
        try:
            con.execute("SET GLOBAL TimeZone = 'UTC'")
        except duckdb.Error as exc:  # only without DuckDB's ICU extension, which every wheel bundles
            logger.warning("DuckDB session zone left at the machine's zone: %s", exc)
        con.execute(
            f"""
            CREATE TABLE IF NOT EXISTS {REGISTRY_TABLE} (
                dataset_id VARCHAR PRIMARY KEY,
                kind VARCHAR NOT NULL,
                source VARCHAR NOT NULL,
                table_name VARCHAR NOT NULL,
                row_count BIGINT NOT NULL,
                columns_json VARCHAR NOT NULL,
                loaded_at TIMESTAMP NOT NULL,
                status VARCHAR NOT NULL,
                format VARCHAR,
                extra_json VARCHAR NOT NULL DEFAULT '{{}}'
            )
            """
        )
        con.execute(
            f"""CREATE TABLE IF NOT EXISTS {METADATA_TABLE} (
                table_name VARCHAR PRIMARY KEY, metadata_json VARCHAR NOT NULL,
                updated_at TIMESTAMP DEFAULT now())"""
        )
        con.execute(
            f"""CREATE TABLE IF NOT EXISTS {KV_TABLE} (
                key VARCHAR PRIMARY KEY, value_json VARCHAR NOT NULL,
                updated_at TIMESTAMP DEFAULT now())"""
        )
        swept = sweep_orphan_tables_sync(con)
        if swept:
            logger.warning("Dropped %d tables left by loads a stop interrupted: %s", len(swept), ", ".join(swept))
        rows = con.execute(f"SELECT table_name, metadata_json FROM {METADATA_TABLE}").fetchall()
        with self._cache_lock:
            self._metadata_cache = {name: json.loads(meta) for name, meta in rows}
        self._con = con

    async def open(self) -> None:
        """Open the store without blocking the event loop."""
        await anyio.to_thread.run_sync(self.open_sync)

    async def close(self) -> None:
        """Checkpoint and close the file (DB-4)."""
        async with self._write_lock:
            con = self._con
            if con is None:
                return

            def _close() -> None:
                assert_off_event_loop()
                try:
                    try:
                        con.execute("CHECKPOINT")
                    except duckdb.TransactionException:
                        # a cancelled staging read still winding down holds a transaction: abort it
                        con.execute("FORCE CHECKPOINT")
                except duckdb.Error as exc:  # the WAL keeps every commit; it is replayed at the next open
                    logger.warning("Checkpoint at close failed (%s); the next start replays the WAL", exc)
                finally:
                    con.close()

            self._con = None
            self._registry_cache.clear()
            await anyio.to_thread.run_sync(_close)

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise RuntimeError("DuckDB store is not open")
        return self._con

    # ------------------------------------------------------------------ primitives
    async def run_read(self, fn: Callable[[duckdb.DuckDBPyConnection], T], *, snapshot: bool = False) -> T:
        """Run ``fn(cursor)`` in a worker thread under the read limiter, on its own cursor.

        With ``snapshot`` ``fn`` runs in one transaction, so all its statements see one state of the
        store: a sync or upload that swaps tables meanwhile is seen entirely or not at all (catalog
        included). Such an ``fn`` must not go on after a failed statement (the transaction is then
        aborted), so it is for reads that do not retry.

        Cancelling the caller (a client that went away, a shutdown) stops the read: one still
        waiting for the limiter never starts, a running one has its DuckDB query interrupted, and
        the caller's cancellation is raised once the worker thread has let go of the cursor.
        """
        con = self._connection()
        cur = con.cursor()
        started, cancelled = threading.Event(), threading.Event()

        def _work() -> T:
            assert_off_event_loop()
            started.set()  # each side sets its flag before reading the other's (see the except below)
            if cancelled.is_set():
                raise duckdb.InterruptException("read cancelled before it started")
            if not snapshot:
                return fn(cur)
            cur.execute("BEGIN TRANSACTION")
            try:
                result = fn(cur)
            except BaseException:
                cleanup_quietly(cur, "ROLLBACK")
                raise
            cur.execute("COMMIT")
            return result

        self.read_count += 1
        task = asyncio.ensure_future(anyio.to_thread.run_sync(_work, limiter=self._limiter))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled.set()
            with anyio.CancelScope(shield=True):
                await _interrupt_until_done(cur, task, queued=not started.is_set())
            raise
        finally:
            if task.done():
                cur.close()
            else:  # still winding down after the 30 s bound: close once the thread lets go
                task.add_done_callback(lambda _t: cur.close())

    async def run_write(self, fn: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
        """Run ``fn(cursor)`` in a worker thread while holding the single write lock.

        A write is never cut off: cancelling the caller (e.g. a shutdown past its grace period, which
        cancels request tasks directly) takes effect once the worker has finished, so the lock is
        held until then and no other write, nor :meth:`close`, runs under it.
        """
        async with self._write_lock:
            con = self._connection()

            def _work() -> T:
                assert_off_event_loop()
                cur = con.cursor()
                try:
                    return fn(cur)
                except (duckdb.IOException, duckdb.TransactionException) as exc:
                    if is_storage_write_failure(exc):
                        raise Unavailable(
                            "The data store cannot write to its data directory (read-only or full); "
                            "previously stored data is unchanged"
                        ) from exc
                    raise
                finally:
                    cur.close()

            task = asyncio.ensure_future(anyio.to_thread.run_sync(_work))
            try:
                return await _finish_then_cancel(task)
            finally:
                self._write_generation += 1

    @contextmanager
    def ingest_pool(self, cur: duckdb.DuckDBPyConnection) -> Iterator[None]:
        """Inside :meth:`run_write`: DuckDB's thread pool at ``ingest_threads`` for the block, then restored.

        DuckDB's parallel CSV reader keeps insertion order by buffering whole row groups per
        thread: for a 168 MB file the parse adds +227 MB with two threads and +88 MB with one
        (1.2 s vs 1.6 s). ``threads`` is database-wide, so concurrent reads also run on their own
        thread only for those seconds; the write lock keeps two writers from interleaving the
        change. None (or a pool already that small) leaves the pool alone.
        """
        assert_off_event_loop()
        row = cur.execute("SELECT current_setting('threads')").fetchone()
        before = int(row[0]) if row else 0
        if not self.ingest_threads or before <= self.ingest_threads:
            yield
            return
        cur.execute(f"SET threads = {int(self.ingest_threads)}")
        try:
            yield
        finally:
            try:
                cur.execute(f"SET threads = {before}")
            except duckdb.Error as exc:  # the pool keeps working, only narrower
                logger.warning("Could not restore DuckDB threads to %d: %s", before, exc)

    async def fetch(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> QueryResult:
        """Run a read query with bound parameters; return columns and rows."""

        def _q(cur: duckdb.DuckDBPyConnection) -> QueryResult:
            cur.execute(sql, params)
            cols = [d[0] for d in cur.description] if cur.description else []
            return QueryResult(cols, cur.fetchall())

        return await self.run_read(_q)

    async def run_staging(
        self,
        fn: Callable[[duckdb.DuckDBPyConnection], T],
        *,
        on_cancel: Callable[[], Awaitable[Any]] | None = None,
    ) -> T:
        """Run ``fn(cursor)`` in a worker thread WITHOUT the write lock, for private staging work.

        Only for building tables no reader can see (``*__staging``); the visible swap must go
        through :meth:`run_write`. Cancelling the caller interrupts the running DuckDB query and
        awaits ``on_cancel`` (at most 10 s; e.g. cancel the source query a scan is waiting on).
        """
        con = self._connection()
        cur = con.cursor()

        def _work() -> T:
            assert_off_event_loop()
            return fn(cur)

        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(None, _work)
        try:
            return await asyncio.shield(fut)
        except asyncio.CancelledError:
            cur.interrupt()
            if on_cancel is not None:
                try:
                    await asyncio.wait_for(on_cancel(), timeout=10)
                except Exception as exc:  # the wait below still bounds the shutdown
                    logger.warning("Could not cancel the source query of a cancelled staging read: %s", exc)
            await _interrupt_until_done(cur, fut, queued=False)
            raise
        finally:
            if fut.done():
                cur.close()
            else:
                fut.add_done_callback(lambda _f: cur.close())

    async def execute_write(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> None:
        """Run one write statement under the write lock."""

        def _w(cur: duckdb.DuckDBPyConnection) -> None:
            cur.execute(sql, params)

        await self.run_write(_w)

    # ------------------------------------------------------------------ tables
    @staticmethod
    def is_table_sync(cur: duckdb.DuckDBPyConnection, name: str) -> bool:
        """True when a table (not a view) with this name exists (main schema)."""
        row = cur.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? AND schema_name = 'main'", [name]
        ).fetchone()
        return bool(row and row[0])

    @staticmethod
    def table_exists_sync(cur: duckdb.DuckDBPyConnection, name: str) -> bool:
        """True when a table or view with this name exists (main schema)."""
        if DuckDBStore.is_table_sync(cur, name):
            return True
        row = cur.execute(
            "SELECT count(*) FROM duckdb_views() WHERE view_name = ? AND schema_name = 'main' AND NOT internal",
            [name],
        ).fetchone()
        return bool(row and row[0])

    async def table_exists(self, name: str) -> bool:
        """True when a table or view exists."""
        if self._con is None:
            return False
        return await self.run_read(lambda cur: self.table_exists_sync(cur, name))

    async def is_visible_table(self, name: str) -> bool:
        """Allow-list check: the fixed API tables plus every table in the registry."""
        if name in ALLOWED_TABLES:
            return True
        res = await self.fetch(f"SELECT 1 FROM {REGISTRY_TABLE} WHERE table_name = ? LIMIT 1", [name])
        return bool(res.rows)

    @staticmethod
    def describe_sync(cur: duckdb.DuckDBPyConnection, name: str) -> list[dict[str, str]]:
        """Columns and DuckDB types of a table or view."""
        cur.execute(f"DESCRIBE SELECT * FROM {quote_ident(name)}")
        return [{"name": r[0], "type": r[1]} for r in cur.fetchall()]

    async def describe(self, name: str) -> list[dict[str, str]]:
        """Columns and types of a table or view."""
        return await self.run_read(lambda cur: self.describe_sync(cur, name))

    # ------------------------------------------------------------------ registry
    @staticmethod
    def _row_to_info(row: Sequence[Any]) -> DatasetInfo:
        return DatasetInfo(
            dataset_id=row[0],
            kind=row[1],
            source=row[2],
            table_name=row[3],
            row_count=int(row[4]),
            columns=json.loads(row[5]),
            loaded_at=row[6],
            status=row[7],
            format=row[8],
            extra=json.loads(row[9] or "{}"),
        )

    _REGISTRY_COLS = (
        "dataset_id, kind, source, table_name, row_count, columns_json, loaded_at, status, format, extra_json"
    )

    async def list_datasets(self, kind: str | None = None) -> list[DatasetInfo]:
        """Every registered dataset, newest first, optionally of one kind."""
        sql = f"SELECT {self._REGISTRY_COLS} FROM {REGISTRY_TABLE}"
        params: list[Any] = []
        if kind is not None:
            sql += " WHERE kind = ?"
            params.append(kind)
        sql += " ORDER BY loaded_at DESC, dataset_id"
        res = await self.fetch(sql, params)
        return [self._row_to_info(r) for r in res.rows]

    async def count_datasets(self) -> int:
        """How many datasets the registry holds."""
        res = await self.fetch(f"SELECT count(*) FROM {REGISTRY_TABLE}")
        return int(res.rows[0][0])

    async def _registry_lookup(self, key: tuple[str, str], sql: str, params: list[Any]) -> DatasetInfo | None:
        """One registry row through the per-write-generation cache (a copy; callers may mutate it)."""
        generation = self._write_generation
        hit = self._registry_cache.get(key)
        if hit is not None and hit[0] == generation:
            return copy.deepcopy(hit[1])
        res = await self.fetch(sql, params)
        info = self._row_to_info(res.rows[0]) if res.rows else None
        # Tagged with the generation seen before the query: a write that lands meanwhile retires it.
        if len(self._registry_cache) >= REGISTRY_CACHE_ENTRIES:
            self._registry_cache.clear()
        self._registry_cache[key] = (generation, info)
        return copy.deepcopy(info)

    @classmethod
    def get_dataset_sync(cls, cur: duckdb.DuckDBPyConnection, dataset_id: str) -> DatasetInfo | None:
        """One registry entry read on ``cur`` (inside a read's snapshot), or None."""
        row = cur.execute(
            f"SELECT {cls._REGISTRY_COLS} FROM {REGISTRY_TABLE} WHERE dataset_id = ?", [dataset_id]
        ).fetchone()
        return cls._row_to_info(row) if row else None

    async def get_dataset(self, dataset_id: str) -> DatasetInfo:
        """One registry entry; unknown id → NotFound."""
        info = await self._registry_lookup(
            ("id", dataset_id), f"SELECT {self._REGISTRY_COLS} FROM {REGISTRY_TABLE} WHERE dataset_id = ?", [dataset_id]
        )
        if info is None:
            raise NotFound(f"Dataset '{dataset_id}' not found")
        return info

    async def latest_dataset(self, kind: str) -> DatasetInfo | None:
        """The most recently loaded ready dataset of a kind."""
        return await self._registry_lookup(
            ("latest", kind),
            f"SELECT {self._REGISTRY_COLS} FROM {REGISTRY_TABLE} WHERE kind = ? AND status = 'ready' "
            "ORDER BY loaded_at DESC LIMIT 1",
            [kind],
        )

    async def resolve_dataset(self, kind: str, dataset_id: str | None) -> DatasetInfo:
        """The dataset named by id (must be of ``kind``), or the latest of ``kind``."""
        if dataset_id:
            info = await self.get_dataset(dataset_id)
            if info.kind != kind:
                raise Invalid(f"Dataset '{dataset_id}' is of kind '{info.kind}', not '{kind}'")
            return info
        latest = await self.latest_dataset(kind)
        if latest is None:
            label = kind.replace("_", " ")
            raise NotFound(f"No {label} data loaded yet. Upload a file, load an example or run a sync first.")
        return latest

    @staticmethod
    def register_dataset_sync(cur: duckdb.DuckDBPyConnection, info: DatasetInfo) -> None:
        """Insert or replace one registry row inside a write (e.g. in the sync's swap transaction)."""
        cur.execute(
            f"INSERT OR REPLACE INTO {REGISTRY_TABLE} ({DuckDBStore._REGISTRY_COLS}) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                info.dataset_id,
                info.kind,
                info.source,
                info.table_name,
                info.row_count,
                json.dumps(info.columns),
                info.loaded_at,
                info.status,
                info.format,
                json.dumps(info.extra),
            ],
        )

    @staticmethod
    def set_dataset_format_sync(cur: duckdb.DuckDBPyConnection, info: DatasetInfo) -> None:
        """Write ``info.format`` and ``info.extra`` to its registry row inside a write (``after_swap`` hooks)."""
        cur.execute(
            f"UPDATE {REGISTRY_TABLE} SET format = ?, extra_json = ? WHERE dataset_id = ?",
            [info.format, json.dumps(info.extra, default=str), info.dataset_id],
        )

    async def land_dataset(
        self,
        *,
        kind: str,
        source: str,
        build: Callable[[duckdb.DuckDBPyConnection, str], None],
        dataset_id: str | None = None,
        table_name: str | None = None,
        format: str | None = None,
        extra: dict[str, Any] | None = None,
        after_swap: Callable[[duckdb.DuckDBPyConnection, DatasetInfo], None] | None = None,
    ) -> DatasetInfo:
        """Build a dataset in a staging table and swap it in atomically with its registry row.

        ``build(cursor, staging_table)`` must create ``staging_table``. If it raises, the staging
        table is dropped and nothing visible changes. ``after_swap`` runs inside the same
        transaction (for derived tables that must match the dataset).
        """
        if kind not in DATASET_KINDS:
            raise Invalid(f"Unknown dataset kind '{kind}'")
        ds_id = dataset_id or new_dataset_id(kind)
        live = table_name or f"ds_{ds_id}"
        staging = f"{live}_staging"

        def _land(cur: duckdb.DuckDBPyConnection) -> DatasetInfo:
            cur.execute(f"DROP TABLE IF EXISTS {quote_ident(staging)}")
            try:
                build(cur, staging)
                free_reserved_columns_sync(cur, staging)
                columns = self.describe_sync(cur, staging)
                count_row = cur.execute(f"SELECT count(*) FROM {quote_ident(staging)}").fetchone()
                row_count = int(count_row[0]) if count_row else 0
            except BaseException:
                cleanup_quietly(cur, f"DROP TABLE IF EXISTS {quote_ident(staging)}")
                raise
            info = DatasetInfo(
                dataset_id=ds_id,
                kind=kind,
                source=source,
                table_name=live,
                row_count=row_count,
                columns=columns,
                loaded_at=utc_now(),
                status="ready",
                format=format,
                extra=extra or {},
            )
            cur.execute("BEGIN TRANSACTION")
            try:
                cur.execute(f"DROP TABLE IF EXISTS {quote_ident(live)}")
                cur.execute(f"ALTER TABLE {quote_ident(staging)} RENAME TO {quote_ident(live)}")
                self.register_dataset_sync(cur, info)
                if after_swap is not None:
                    after_swap(cur, info)
                cur.execute("COMMIT")
            except BaseException:
                cleanup_quietly(cur, "ROLLBACK")
                cleanup_quietly(cur, f"DROP TABLE IF EXISTS {quote_ident(staging)}")
                raise
            return info

        info = await self.run_write(_land)
        logger.info("Stored %s dataset %s (%d rows) from %s", kind, info.dataset_id, info.row_count, source)
        return info

    async def delete_dataset(self, dataset_id: str) -> DatasetInfo:
        """Drop an uploaded/imported dataset: its table, derived tables, metadata and registry row.

        Synced datasets (views over the sync tables) are owned by the sync engine → Invalid.
        """
        info = await self.get_dataset(dataset_id)
        if info.table_name in ALLOWED_TABLES:
            raise Invalid(f"Dataset '{dataset_id}' comes from a sync; it is replaced by the next sync, not deleted")
        tables = [info.table_name, f"{info.table_name}__records"]
        cases = info.extra.get("cases_table")
        if isinstance(cases, str) and cases not in ALLOWED_TABLES:
            tables.append(cases)

        def _drop(cur: duckdb.DuckDBPyConnection) -> None:
            cur.execute("BEGIN TRANSACTION")
            try:
                # Checked again under the write lock: concurrent deletes of one id all passed the
                # lookup above, and each answered "Deleted" though only the first removed anything.
                found = cur.execute(f"SELECT count(*) FROM {REGISTRY_TABLE} WHERE dataset_id = ?", [dataset_id])
                row = found.fetchone()
                if not row or not row[0]:
                    raise NotFound(f"Dataset '{dataset_id}' not found")
                for table in tables:
                    cur.execute(f"DROP TABLE IF EXISTS {quote_ident(table)}")
                    cur.execute(f"DELETE FROM {METADATA_TABLE} WHERE table_name = ?", [table])
                cur.execute(f"DELETE FROM {REGISTRY_TABLE} WHERE dataset_id = ?", [dataset_id])
                cur.execute("COMMIT")
            except BaseException:
                cleanup_quietly(cur, "ROLLBACK")
                raise

        await self.run_write(_drop)
        for table in tables:
            self.cache_metadata(table, None)
        logger.info("Deleted %s dataset %s", info.kind, dataset_id)
        return info

    # ------------------------------------------------------------------ metadata + KV
    def get_cached_metadata(self, table: str) -> dict[str, Any]:
        """Hot-cache metadata of a table ({} when none)."""
        with self._cache_lock:
            return dict(self._metadata_cache.get(table, {}))

    async def get_metadata(self, table: str) -> dict[str, Any]:
        """Metadata of a table: hot cache, then the persisted row, else {}."""
        cached = self.get_cached_metadata(table)
        if cached:
            return cached
        res = await self.fetch(f"SELECT metadata_json FROM {METADATA_TABLE} WHERE table_name = ?", [table])
        if not res.rows:
            return {}
        meta: dict[str, Any] = json.loads(res.rows[0][0])
        with self._cache_lock:
            self._metadata_cache[table] = meta
        return dict(meta)

    @staticmethod
    def set_metadata_sync(cur: duckdb.DuckDBPyConnection, table: str, metadata: dict[str, Any]) -> None:
        """Upsert a metadata row inside a write (the caller refreshes the cache)."""
        cur.execute(
            f"INSERT OR REPLACE INTO {METADATA_TABLE} (table_name, metadata_json, updated_at) VALUES (?, ?, now())",
            [table, json.dumps(metadata, default=str)],
        )

    async def set_metadata(self, table: str, metadata: dict[str, Any]) -> None:
        """Persist metadata for a table and update the hot cache."""
        await self.run_write(lambda cur: self.set_metadata_sync(cur, table, metadata))
        self.cache_metadata(table, metadata)

    @classmethod
    def update_metadata_sync(
        cls, cur: duckdb.DuckDBPyConnection, table: str, updates: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Inside a write: set some keys of a table's stored metadata; the new metadata (the caller
        refreshes the cache), or None for a table that no longer exists (nothing is written)."""
        row = cur.execute(f"SELECT metadata_json FROM {METADATA_TABLE} WHERE table_name = ?", [table]).fetchone()
        if row is None and not cls.table_exists_sync(cur, table):
            return None
        meta: dict[str, Any] = {**(json.loads(row[0]) if row else {}), **updates}
        cls.set_metadata_sync(cur, table, meta)
        return meta

    async def update_metadata(self, table: str, updates: dict[str, Any]) -> None:
        """Set some keys of a table's stored metadata, read and written under the write lock.

        A read-modify-write outside the lock could put back the metadata a concurrent sync or load
        had just replaced. Nothing is written for a table that no longer exists (deleted meanwhile).
        """
        meta = await self.run_write(lambda cur: self.update_metadata_sync(cur, table, updates))
        if meta is not None:
            self.cache_metadata(table, meta)

    def cache_metadata(self, table: str, metadata: dict[str, Any] | None) -> None:
        """Put (or with None, drop) a table's metadata in the hot cache."""
        with self._cache_lock:
            if metadata is None:
                self._metadata_cache.pop(table, None)
            else:
                self._metadata_cache[table] = json.loads(json.dumps(metadata, default=str))

    @staticmethod
    def kv_get_sync(cur: duckdb.DuckDBPyConnection, key: str) -> Any:
        """Value stored under a KV key (inside a worker-thread callable), or None."""
        row = cur.execute(f"SELECT value_json FROM {KV_TABLE} WHERE key = ?", [key]).fetchone()
        return json.loads(row[0]) if row else None

    @staticmethod
    def kv_delete_sync(cur: duckdb.DuckDBPyConnection, key: str) -> None:
        """Remove a KV key inside a write."""
        cur.execute(f"DELETE FROM {KV_TABLE} WHERE key = ?", [key])

    async def kv_get(self, key: str) -> Any:
        """Value stored under a KV key, or None."""
        res = await self.fetch(f"SELECT value_json FROM {KV_TABLE} WHERE key = ?", [key])
        return json.loads(res.rows[0][0]) if res.rows else None

    @staticmethod
    def kv_set_sync(cur: duckdb.DuckDBPyConnection, key: str, value: Any) -> None:
        """Upsert a KV value inside a write."""
        cur.execute(
            f"INSERT OR REPLACE INTO {KV_TABLE} (key, value_json, updated_at) VALUES (?, ?, now())",
            [key, json.dumps(value, default=str)],
        )

    async def kv_set(self, key: str, value: Any) -> None:
        """Store a JSON-encodable value under a KV key."""
        await self.run_write(lambda cur: self.kv_set_sync(cur, key, value))

    # ------------------------------------------------------------------ health
    async def probe(self) -> bool:
        """True when DuckDB answers a trivial query."""
        if self._con is None:
            return False
        res = await self.fetch("SELECT 42")
        return res.rows == [(42,)]
