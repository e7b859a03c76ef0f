"""PostgreSQL → DuckDB sync engine (spec §10.2–10.10, decision 3).

Each configured source (monitoring, human_signals, eval) is a *split* dataset: a dataset query and
a results query, read concurrently into ``<name>_dataset`` / ``<name>_results`` and joined by the
view ``<name>_data`` (``human_signals_raw`` for human signals).

Read path (measured by ``bench/sync_bench.py``): DuckDB's postgres extension streams the query's
binary COPY straight into a staging table (``sync_extension_reader``); fallback: a chunked asyncpg
cursor landing the same types and values (``sync_asyncpg_reader``). Targets, staging tables, upsert
keys and the JOIN view are in ``sync_targets``, PostgreSQL-side query text in ``sync_queries``.
Full syncs build staging tables and swap them in one transaction; incremental syncs re-read rows at
or above typed watermarks and upsert them on a key. Status, watermarks and sync ids live in the
store's KV table, so they survive restarts.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from app.config import DBImportConfig, Settings
from app.errors import Conflict, Invalid, NotFound, Unavailable
from app.services.background import BackgroundTasks
from app.services.connection_store import cancel_source_queries
from app.services.duckdb_store import (
    DatasetInfo,
    DuckDBStore,
    quote_ident,
    quote_literal,
    utc_iso,
    utc_iso_text,
    utc_now,
)
from app.services.human_signals_service import (
    CASES_SYNC_KV,
    RAW_SYNC_KV,
    SYNC_CASES_TABLE,
    build_human_signals_derived,
    swap_in_cases_sync,
)
from app.services.leader_lock import LeaderLock
from app.services.sync_asyncpg_reader import load_with_asyncpg
from app.services.sync_extension_reader import postgres_extension_file, read_with_extension
from app.services.sync_queries import (
    INFINITE_CASTS,
    incremental_query,
    libpq_conninfo,
    pg_cast_for,
    scrub_sync_error,
    source_error_text,
)
from app.services.sync_status import STATUS_PREFIX, STATUS_TABLES, STATUS_TIME_FIELDS, blank_status
from app.services.sync_targets import (
    STAGING_SUFFIX,
    TARGETS,
    LoadResult,
    SyncTarget,
    duplicate_key_sync,
    joined_select_sql,
    metadata_parts,
    result_keys,
)
from app.services.table_metadata import compute_table_metadata_sync

logger = logging.getLogger(__name__)

WATERMARK_PREFIX = "_watermark_"
SYNC_BACKGROUND_TASK = "sync-background"


def root_error(exc: BaseException) -> BaseException:
    """The first leaf exception of (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def due_datasets(last_run: dict[str, float], intervals: dict[str, float], now: float) -> list[str]:
    """Scheduled datasets whose interval has elapsed since their last run (§10.8)."""
    return sorted(n for n, every in intervals.items() if now - last_run.get(n, now) >= every)


def seconds_until_next(last_run: dict[str, float], intervals: dict[str, float], now: float) -> float:
    """Seconds until the soonest next due time (60 s when nothing is scheduled)."""
    if not intervals:
        return 60.0
    return max(0.0, min(last_run.get(n, now) + every - now for n, every in intervals.items()))


def incremental_column_problem(column: str, side: str, load: LoadResult) -> str | None:
    """Why ``column`` cannot give a watermark for one side's read (None when it can).

    A name the query does not return (a typo, another case, the stored name of a renamed column) or
    a type without an order PostgreSQL and DuckDB share would leave incremental syncs off silently.
    """
    stored = load.renames.get(column)
    if stored is None:
        hint = next((src for src, new in load.renames.items() if new == column), None)
        hint = hint or next((src for src in load.renames if src.lower() == column.lower()), None)
        named = f" (the query calls it '{hint}')" if hint else ""
        return f"incremental_column '{column}' is not a column the {side} query returns{named}"
    type_name = load.source_types.get(stored, "")
    if pg_cast_for(type_name) is None:
        typ = type_name or "unknown"
        return f"incremental_column '{column}' of the {side} query has type {typ}, which has no watermark order"
    return None


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
    cases_built: bool | None = None  # human signals: cases built with the raw rows (False: not V2 data)


class SchemaDrift(Exception):
    """The incremental read's columns differ from the live table, or its rows repeat an upsert key."""


class OverSyncCap(Exception):
    """An incremental sync would grow a table past ``max_sync_rows`` (the full sync caps and flags it)."""


# ---------------------------------------------------------------------- engine
class SyncEngine:
    """Runs syncs, keeps their persisted status, owns the leader lock and the scheduler."""

    def __init__(
        self,
        settings: Settings,
        store: DuckDBStore,
        tasks: BackgroundTasks,
    ) -> None:
        self.settings = settings
        self.store = store
        self.tasks = tasks
        self.leader = LeaderLock(Path(str(settings.duckdb_path) + ".lock"))
        self._running: dict[str, str] = {}
        self._boot_repair: str | None = None  # raw sync id of the derived rebuild claimed at startup
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

    def startup_sync_kinds(self) -> set[str]:
        """Dataset kinds the startup sync will load (empty unless ``sync_mode`` is ``startup``)."""
        if not self.settings.duckdb.enabled or self.settings.duckdb.sync_mode != "startup":
            return set()
        return {TARGETS[n].kind for n in self.eligible("startup")}

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
        """Try to become the sync leader; the leader settles statuses a crash left at ``syncing``.

        A non-leader must not: the leader may be syncing right now.
        """
        if self.leader.try_acquire():
            logger.info("This process is the sync leader (%s)", self.leader.path)
            await self.restore_statuses()
            # Claimed before the app serves, so /status shows the rebuild as running from the start.
            self._boot_repair = await self._claim_repair()
        elif self.leader.unavailable is not None:
            logger.warning("This process will not sync: %s", self.leader.unavailable)
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

        Ineligible → Invalid (400); one already running → Conflict (409); not the leader → Conflict (no lock
        file can be made, a read-only data directory → Unavailable).
        With ``duckdb.enabled: false`` (the master switch, §2.4) nothing syncs: Invalid.
        """
        if not self.settings.duckdb.enabled:
            raise Invalid("Syncing is switched off (duckdb.enabled: false in duckdb.yaml)")
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
            if self.leader.unavailable is not None:
                raise Unavailable(f"This process cannot sync: {self.leader.unavailable}")
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
                out.append(
                    SyncResult(dataset=n, status="error", sync_id=sid, error=self._scrub(source_error_text(res)))
                )
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
        """Clear both watermarks of a split dataset (next sync is full); False for kpi.

        Refused (409) while the dataset syncs: the running sync would write its watermarks back.
        """
        if name == "kpi":
            return False
        target = self.target(name)
        if name in self._running:
            raise Conflict(f"A sync of {name} is running; reset the watermark after it has finished")
        await self._clear_watermarks(target)
        return True

    # ------------------------------------------------------------------ orchestration
    def _scrub(self, text: str) -> str:
        return scrub_sync_error(text, self._secrets)

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
            if wm.get("column") != cfg.incremental_column:
                return None, f"incremental_column changed ({wm.get('column')} -> {cfg.incremental_column})"
            wms[table] = wm
        return wms, "watermarks present"

    async def _sync_claimed(self, target: SyncTarget, *, force_full: bool, reason: str, sync_id: str) -> SyncResult:
        previous = await self.get_status(target.view)
        await self._set_status(
            target.view, {**previous, "state": "syncing", "error": None, "sync_id": sync_id, "started_at": utc_iso()}
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
                        self._scrub(source_error_text(root_error(exc))),
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
            message = self._scrub(source_error_text(root_error(exc))) or type(root_error(exc)).__name__
            logger.error("Sync of %s failed: %s", target.name, message)
            await self._drop_staging(target)
            rows = await self._count(target.view)
            status = {
                **previous,
                "state": "error",
                "error": message,
                "rows": rows,
                "sync_id": sync_id,
                "failed_at": utc_iso(),
            }
            await self._set_status(target.view, status)
            return SyncResult(dataset=target.name, status="error", sync_id=sync_id, rows=rows, error=message)

        rows = int(outcome.metadata.get("row_count", 0))
        now = utc_iso()
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
            "Synced %s: %d rows (%s, %s) in %.2fs%s",
            target.name,
            rows,
            outcome.sync_type,
            outcome.reader,
            status["seconds"],
            f"; truncated at max_sync_rows ({self.settings.duckdb.max_sync_rows})" if outcome.truncated else "",
        )
        if outcome.cases_built is not None:
            await self._record_cases_status(outcome.cases_built, sync_id)
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
        """Read both queries concurrently into their staging tables (extension, else asyncpg)."""
        cfg = self.config(target.name)
        duck = self.settings.duckdb
        params = cfg.connection_params()
        timeout_ms = int(cfg.sync_timeout) * 1000
        # One name per read, so a cancellation reaches this read's sessions only (not another process's sync).
        app_name = f"axis_sync_{target.name}_{uuid.uuid4().hex[:12]}"
        custom = dict(cfg.column_rename_map)
        extension = await self._extension_path() if duck.sync_reader != "asyncpg" else None
        if extension is None and duck.sync_reader == "postgres_extension":
            raise RuntimeError("The DuckDB postgres extension is not available (install duckdb-extension-postgres)")

        if extension is not None:
            conninfo = libpq_conninfo(params, application_name=app_name, timeout_ms=timeout_ms)
            results = await read_with_extension(
                self.store,
                conninfo,
                queries,
                target,
                custom,
                max_rows=duck.max_sync_rows,
                partition_column=cfg.partition_column,
                workers=duck.sync_workers,
                on_cancel=lambda: cancel_source_queries(params, app_name),
            )
        else:
            results = {}

            async def _one(table: str, query: str) -> None:
                results[table] = await load_with_asyncpg(
                    self.store,
                    params,
                    query,
                    table + STAGING_SUFFIX,
                    target,
                    custom,
                    application_name=app_name,
                    timeout_ms=timeout_ms,
                    chunk_rows=duck.sync_chunk_size,
                    max_rows=duck.max_sync_rows,
                )

            async with asyncio.TaskGroup() as tg:
                for table, query in queries.items():
                    tg.create_task(_one(table, query))
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
            load_sql = "LOAD " + quote_literal(str(path))
            await self.store.run_staging(lambda cur: cur.execute(load_sql))
            return path
        except (OSError, duckdb.Error) as exc:
            logger.warning("DuckDB postgres extension unavailable (%s); using the asyncpg reader", exc)
            return None

    # ------------------------------------------------------------------ write phase
    def _update_watermarks_sync(
        self, cur: duckdb.DuckDBPyConnection, target: SyncTarget, loads: dict[str, LoadResult], *, check_keys: bool
    ) -> None:
        """Store each table's watermark (its largest finite incremental value).

        With ``check_keys`` (full syncs) a table whose upsert key repeats gets a ``disabled``
        marker instead: incremental syncs would merge its rows, so they stay full until it is unique.
        So does every table after a read cut at ``max_sync_rows``: an incremental read starts at the
        largest value kept, so the rows beyond the cap would never arrive; syncs stay full (and
        flagged ``truncated``) until the source fits.
        """
        column = self.config(target.name).incremental_column
        cut = [t for t, load in loads.items() if load.truncated]
        for side, table in (("dataset", target.dataset_table), ("results", target.results_table)):
            key = WATERMARK_PREFIX + table
            load = loads[table]
            stored = load.renames.get(column) if column else None
            cast = pg_cast_for(load.source_types.get(stored, "")) if stored else None
            if column and cut:
                cap = self.settings.duckdb.max_sync_rows
                DuckDBStore.kv_set_sync(
                    cur,
                    key,
                    {
                        "value": None,
                        "disabled": (
                            f"incremental sync is off: the read of {', '.join(cut)} stopped at max_sync_rows ({cap}), "
                            "and an incremental read would never fetch the rows beyond it"
                        ),
                    },
                )
                continue
            problem = incremental_column_problem(column, side, load) if column else None
            if problem is not None:
                DuckDBStore.kv_set_sync(cur, key, {"value": None, "disabled": f"incremental sync is off: {problem}"})
                continue
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
    ) -> tuple[dict[str, Any], bool | None]:
        """Inside the swap transaction: metadata, registry row and (human signals) the raw sync id and the
        cases built from the new rows, so readers see raw rows and cases change together (§10.9).

        Returns the metadata and, for human signals, whether cases were built (False: not V2 data).
        """
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
        if target.name != "human_signals":
            return meta, None
        DuckDBStore.kv_set_sync(cur, RAW_SYNC_KV, sync_id)
        return meta, swap_in_cases_sync(cur, self.settings, target.view, sync_id) is not None

    async def _sync_full(self, target: SyncTarget, sync_id: str) -> _Outcome:
        started = time.perf_counter()
        cfg = self.config(target.name)
        queries = {target.dataset_table: cfg.dataset_query or "", target.results_table: cfg.results_query or ""}
        loads = await self._read_pair(target, queries)
        truncated = any(load.truncated for load in loads.values())

        def _swap(cur: duckdb.DuckDBPyConnection) -> tuple[dict[str, Any], bool | None]:
            cur.execute("BEGIN TRANSACTION")
            try:
                for table in target.tables:
                    cur.execute(f"DROP TABLE IF EXISTS {quote_ident(table)}")
                    cur.execute(f"ALTER TABLE {quote_ident(table + STAGING_SUFFIX)} RENAME TO {quote_ident(table)}")
                if DuckDBStore.is_table_sync(cur, target.view):  # a table (not a view) left under the view's name
                    cur.execute(f"DROP TABLE {quote_ident(target.view)}")
                cur.execute(f"CREATE OR REPLACE VIEW {quote_ident(target.view)} AS {joined_select_sql(cur, target)}")
                self._update_watermarks_sync(cur, target, loads, check_keys=True)
                registered = self._register_sync(cur, target, sync_id, truncated)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            return registered

        read_s = time.perf_counter() - started
        meta, cases_built = await self.store.run_write(_swap)
        self._cache_after_swap(target, meta)
        reader = next(iter(loads.values())).reader
        phases = {"read": round(read_s, 3), "swap": round(time.perf_counter() - started - read_s, 3)}
        return _Outcome(
            sync_type="full", truncated=truncated, reader=reader, metadata=meta, phases=phases, cases_built=cases_built
        )

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
        cap = self.settings.duckdb.max_sync_rows

        def _apply(cur: duckdb.DuckDBPyConnection) -> tuple[dict[str, Any], bool | None]:
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
                    held = cur.execute(f"SELECT count(*) FROM {live_t}").fetchone()
                    if held and int(held[0]) > cap:
                        raise OverSyncCap(
                            f"{table} would hold {int(held[0])} rows, more than max_sync_rows ({cap}); "
                            "a full sync keeps the first rows and flags the dataset truncated"
                        )
                self._update_watermarks_sync(cur, target, loads, check_keys=False)
                registered = self._register_sync(cur, target, sync_id, truncated)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            return registered

        meta, cases_built = await self.store.run_write(_apply)
        self._cache_after_swap(target, meta)
        reader = next(iter(loads.values())).reader
        return _Outcome(
            sync_type="incremental",
            truncated=truncated,
            reader=reader,
            rows_before=rows_before,
            metadata=meta,
            cases_built=cases_built,
        )

    def _cache_after_swap(self, target: SyncTarget, meta: dict[str, Any]) -> None:
        self.store.cache_metadata(target.view, meta)
        if target.name == "human_signals":
            self.store.cache_metadata(SYNC_CASES_TABLE, None)  # re-read from the row the swap wrote

    # ------------------------------------------------------------------ derived (§10.9)
    async def _run_derived(self, raw_id: str) -> None:
        """Rebuild ``human_signals_cases`` from the stored raw rows (the boot repair) and record its status."""
        previous = await self.get_status(SYNC_CASES_TABLE)
        await self._set_status(SYNC_CASES_TABLE, {**previous, "state": "syncing", "sync_id": raw_id})
        try:
            schema = await build_human_signals_derived(self.store, self.settings, TARGETS["human_signals"].view, raw_id)
        except Exception as exc:
            message = self._scrub(str(exc))
            logger.error("Derived build of %s failed: %s", SYNC_CASES_TABLE, message)
            await self._set_status(
                SYNC_CASES_TABLE, {**previous, "state": "error", "error": message, "sync_id": raw_id}
            )
            return
        await self._record_cases_status(schema is not None, raw_id)

    async def _record_cases_status(self, built: bool, raw_id: str) -> None:
        """Status of ``human_signals_cases`` after a build from raw sync ``raw_id`` (not V2 data: none built)."""
        if not built:
            await self._set_status(
                SYNC_CASES_TABLE,
                {
                    **blank_status(),
                    "error": "The synced rows are not V2 human-signals data; no cases were built",
                    "sync_id": raw_id,
                },
            )
            return
        await self._set_status(
            SYNC_CASES_TABLE,
            {
                **blank_status(),
                "state": "ready",
                "rows": await self._count(SYNC_CASES_TABLE),
                "last_sync": utc_iso(),
                "sync_type": "derived",
                "sync_id": raw_id,
            },
        )

    async def _claim_repair(self) -> str | None:
        """Claim ``human_signals`` for a rebuild of the stored raw rows (None: nothing to rebuild, or a sync runs)."""
        raw_id = await self.store.kv_get(RAW_SYNC_KV)
        if raw_id is None or "human_signals" in self._running:
            return None
        if not await self.store.table_exists(TARGETS["human_signals"].view):
            return None
        self._running["human_signals"] = str(raw_id)
        return str(raw_id)

    async def repair_derived(self) -> bool:
        """Rebuild the human-signals derived table from the stored raw rows (every boot, §1.1 3c); True if run.

        Every boot, not only when its sync id lags the raw one (a crash between the stages), so
        changes to the aggregation take effect without a new sync. While it runs, ``human_signals``
        counts as syncing (a sync request gets 409).
        """
        raw_id, self._boot_repair = self._boot_repair or await self._claim_repair(), None
        if raw_id is None:
            return False
        try:
            cases_id = await self.store.kv_get(CASES_SYNC_KV)
            logger.info("Rebuilding %s from raw sync %s (cases were built from %s)", SYNC_CASES_TABLE, raw_id, cases_id)
            await self._run_derived(raw_id)
        finally:
            if self._running.get("human_signals") == raw_id:
                self._running.pop("human_signals", None)
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
        """Periodic incremental syncs; the first run waits one interval; cancellation exits quietly.

        Each due dataset's sync runs as its own task, so a long sync of one dataset does not hold
        back the others: their due times are still checked (and their syncs started) meanwhile.
        A dataset's next interval counts from the end of its last sync.
        """
        intervals = self.scheduled_intervals()
        if not intervals:
            return
        start = clock()
        last_run = {n: start for n in intervals}
        running: dict[str, asyncio.Task[list[SyncResult]]] = {}
        logger.info("Sync scheduler: %s", {n: f"{s / 60:.0f} min" for n, s in intervals.items()})
        try:
            while True:
                idle = {n: every for n, every in intervals.items() if n not in running}
                wait = max(1.0, min(seconds_until_next(last_run, idle, clock()), 60.0))
                if running:
                    await asyncio.wait(running.values(), timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                else:
                    await asyncio.sleep(wait)
                for name, task in list(running.items()):
                    if task.done():
                        del running[name]
                        last_run[name] = clock()
                        for res in [] if task.cancelled() else task.result():
                            if res.status == "error":
                                logger.warning("Scheduled sync of %s failed: %s", res.dataset, res.error)
                idle = {n: every for n, every in intervals.items() if n not in running}
                for name in due_datasets(last_run, idle, clock()):
                    running[name] = asyncio.create_task(self.sync_all(reason="scheduled", names=[name]))
        except asyncio.CancelledError:
            for task in running.values():
                task.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)
            logger.info("Sync scheduler stopped")
            raise
