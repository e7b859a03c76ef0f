"""Logic behind ``/api/store``: sync triggers, status, metadata, paginated data and the dataset list."""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import duckdb

from app.config import Settings
from app.errors import Invalid, NotFound
from app.models.common import MessageResponse
from app.models.store import (
    DataPageResponse,
    DatasetEntry,
    DatasetListResponse,
    DatasetSyncStatus,
    MetadataResponse,
    ResetWatermarkResponse,
    StoreStatusResponse,
    SyncStartedResponse,
)
from app.services.duckdb_store import DuckDBStore, quote_ident, utc_iso, utc_timestamp_sql
from app.services.monitoring_analytics import RECORDS_KEY, SUMMARY_CACHE_KEY
from app.services.monitoring_table import parse_time_bound
from app.services.store_paging import (
    HIDDEN,
    PageCursor,
    PageQuery,
    cursor_sortable,
    decode_cursor,
    encode_cursor,
    keyed_relation,
    read_page,
)
from app.services.sync_engine import SyncEngine
from app.services.sync_targets import TARGETS
from app.services.table_metadata import category_sql, compute_table_metadata_sync

# Path names of §10.1 → API table, and the registry kind whose latest dataset they default to.
DATASET_TABLES = {
    "monitoring": "monitoring_data",
    "human_signals": "human_signals_cases",
    "human_signals_raw": "human_signals_raw",
    "eval": "eval_data",
    "kpi": "kpi_data",
}
PATH_KINDS = {
    "monitoring": "monitoring",
    "human_signals": "human_signals",
    "human_signals_raw": "human_signals",
    "eval": "eval",
}
EQUALITY_FILTERS = ("environment", "source_name", "source_component", "source_type", "metric_name")
SEARCH_COLUMNS = ("query", "trace_id", "actual_output", "dataset_query", "dataset_actual_output")


@dataclass
class DataQuery:
    """Parameters of ``GET /data/{dataset}`` (already range-checked by the router)."""

    page: int = 1
    page_size: int = 50
    sort_by: str | None = None
    sort_dir: str = "desc"
    columns: str | None = None
    environment: str | None = None
    source_name: str | None = None
    source_component: str | None = None
    source_type: str | None = None
    metric_name: str | None = None
    metric_category: str | None = None
    time_start: str | None = None
    time_end: str | None = None
    search: str | None = None
    cursor: str | None = None


# ---------------------------------------------------------------------- sync
def start_sync(engine: SyncEngine, dataset: str | None, full: bool) -> SyncStartedResponse:
    """Validate and start a background sync; 400 ineligible, 404 unknown, 409 running."""
    sync_id, names = engine.start_sync(dataset, full=full)
    mode = "full rebuild" if full else "incremental where available"
    message = f"Sync started in background ({mode})" if dataset is None else f"Sync started for {dataset} ({mode})"
    return SyncStartedResponse(message=message, sync_id=sync_id, datasets=names)


async def reset_watermark(engine: SyncEngine, dataset: str) -> ResetWatermarkResponse:
    """Clear a split dataset's watermarks so the next sync is full."""
    if dataset not in TARGETS and dataset != "kpi":
        raise NotFound(f"Unknown dataset '{dataset}'; synced datasets are {', '.join(sorted(TARGETS))}")
    if not await engine.reset_watermark(dataset):
        return ResetWatermarkResponse(success=False, message=f"No split tables found for {dataset}")
    return ResetWatermarkResponse(
        success=True, message=f"Watermarks cleared for {dataset}. Next sync will do a full rebuild."
    )


async def store_status(engine: SyncEngine, settings: Settings) -> StoreStatusResponse:
    """Persisted status of every API table plus sync configuration hints.

    ``running`` is read before the statuses, so an empty ``running`` means every status shown is settled.
    """
    running = engine.running()
    report = await engine.status_report()
    return StoreStatusResponse(
        enabled=settings.duckdb.enabled,
        leader=engine.leader.held,
        running=running,
        datasets={name: DatasetSyncStatus.model_validate(st) for name, st in report.items()},
    )


# ---------------------------------------------------------------------- datasets
async def resolve_api_table(store: DuckDBStore, dataset: str, dataset_id: str | None) -> tuple[str, str | None]:
    """API table (and registry id) for a path name and optional ``dataset_id``.

    ``dataset_id`` names a registry entry (its kind must match the path's kind); without it the
    path's kind resolves to its latest dataset, else the fixed table of §10.1. ``human_signals``
    serves a dataset's cases table. A path that is itself a registry id is accepted too.
    """
    if dataset in DATASET_TABLES:
        kind = PATH_KINDS.get(dataset)
        info = None
        if dataset_id:
            info = await store.get_dataset(dataset_id)
            if kind is not None and info.kind != kind:
                raise Invalid(f"Dataset '{dataset_id}' is of kind '{info.kind}', not '{kind}'")
        elif kind is not None:
            info = await store.latest_dataset(kind)
        if info is None:
            return DATASET_TABLES[dataset], None
        if dataset == "human_signals":
            cases = info.extra.get("cases_table")
            if not cases and info.table_name == DATASET_TABLES["human_signals_raw"]:
                cases = DATASET_TABLES["human_signals"]
            return str(cases or DATASET_TABLES["human_signals"]), info.dataset_id
        return info.table_name, info.dataset_id
    unknown = (
        f"Unknown dataset '{dataset}': use one of {', '.join(sorted(DATASET_TABLES))} "
        "or a dataset_id listed by /api/store/datasets"
    )
    if dataset_id and dataset_id != dataset:
        raise NotFound(unknown)
    try:
        info = await store.get_dataset(dataset)
    except NotFound:
        raise NotFound(unknown) from None
    return info.table_name, info.dataset_id


async def dataset_metadata(store: DuckDBStore, dataset: str, dataset_id: str | None) -> MetadataResponse:
    """Cached metadata of a dataset's table; computed on demand when none is stored ({} if no table)."""
    table, _ = await resolve_api_table(store, dataset, dataset_id)
    meta = await store.get_metadata(table)
    if not meta and await store.table_exists(table):
        meta = await store.run_read(lambda cur: compute_table_metadata_sync(cur, table))
    # The analytics caches kept beside it (summary, per-record table) are not metadata of §10.7.
    public = {k: v for k, v in meta.items() if k not in (SUMMARY_CACHE_KEY, RECORDS_KEY)}
    return MetadataResponse(dataset=dataset, metadata=public)


async def delete_dataset(store: DuckDBStore, dataset_id: str) -> MessageResponse:
    """Delete an uploaded, imported or example dataset with its derived tables (404 unknown, 400 synced)."""
    info = await store.delete_dataset(dataset_id)
    return MessageResponse(message=f"Deleted {info.kind} dataset {dataset_id} ({info.row_count} rows)")


async def list_datasets(store: DuckDBStore, kind: str | None) -> DatasetListResponse:
    """The dataset registry, newest first."""
    infos = await store.list_datasets(kind)
    entries = [
        DatasetEntry(
            dataset_id=i.dataset_id,
            kind=i.kind,
            source=i.source,
            table_name=i.table_name,
            row_count=i.row_count,
            columns=i.columns,
            loaded_at=utc_iso(i.loaded_at),
            status=i.status,
            format=i.format,
        )
        for i in infos
    ]
    return DatasetListResponse(datasets=entries, total=len(entries))


# ---------------------------------------------------------------------- data
def escape_like(term: str) -> str:
    """Escape ``\\``, ``%`` and ``_`` for ``ILIKE … ESCAPE '\\'`` (DB-47)."""
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def build_where(types: dict[str, str], q: DataQuery) -> tuple[list[str], list[Any]]:
    """AND-ed conditions over existing columns (name → DuckDB type) only; every value is a bound parameter.

    Time bounds compare the ``timestamp`` column read as monitoring analytics reads it
    (``utc_timestamp_sql``: offsets converted to UTC, Unix times, zoned text), so the same filter
    selects the same rows here and in ``/api/monitoring/analytics``.
    """
    names = list(types)
    parts: list[str] = []
    params: list[Any] = []
    for fld in EQUALITY_FILTERS:
        value = getattr(q, fld)
        if value is not None and value != "" and fld in names:
            parts.append(f"CAST({quote_ident(fld)} AS VARCHAR) = ?")
            params.append(value)
    if q.metric_category and "metric_category" in names:
        cat = q.metric_category.strip().upper()
        expr = category_sql(quote_ident("metric_category"))  # as the monitoring analytics compare it
        if cat == "SCORE":
            parts.append(f"({expr} = ? OR {expr} IS NULL)")
        else:
            parts.append(f"{expr} = ?")
        params.append(cat)
    if "timestamp" in types:
        ts = utc_timestamp_sql(quote_ident("timestamp"), types["timestamp"])
        if q.time_start:
            parts.append(f"{ts} >= ?")
            params.append(parse_time_bound(q.time_start, "time_start"))
        if q.time_end:
            parts.append(f"{ts} <= ?")
            params.append(parse_time_bound(q.time_end, "time_end"))
    if q.search:
        cols = [c for c in SEARCH_COLUMNS if c in names]
        if cols:
            pattern = f"%{escape_like(q.search)}%"
            ors = [f"CAST({quote_ident(c)} AS VARCHAR) ILIKE ? ESCAPE '\\'" for c in cols]
            parts.append("(" + " OR ".join(ors) + ")")
            params.extend([pattern] * len(cols))
    return parts, params


async def dataset_rows(
    store: DuckDBStore, dataset: str, dataset_id: str | None, q: DataQuery, offset_rows: int = 5000
) -> DataPageResponse:
    """One page of a dataset's rows with filters, allow-listed sort, projection and the filtered total.

    Rows are ordered by the sort column (NULLS LAST) then a unique row key. A full page returns
    ``next_cursor``; passing it back reads the next page by keyset instead of OFFSET (see
    ``store_paging``). A cursor is bound to its query (filters, sort, projection) and to the
    dataset's load: after a reload it is refused with a 400.
    """
    table, ds_id = await resolve_api_table(store, dataset, dataset_id)
    if q.sort_dir not in ("asc", "desc"):
        raise Invalid("sort_dir must be asc or desc")
    after = decode_cursor(q.cursor) if q.cursor else None

    def _page(cur: duckdb.DuckDBPyConnection) -> tuple[list[dict[str, Any]], int, str | None, int] | None:
        # One snapshot (run_read's transaction): the registry row, the table's columns and its rows
        # all belong to the same load, even while a sync swaps in a new one.
        info = DuckDBStore.get_dataset_sync(cur, ds_id) if ds_id else None
        same_table = info is not None and info.table_name == table
        loaded = (info.loaded_at.isoformat(), info.extra.get("sync_id")) if info else None
        if not DuckDBStore.table_exists_sync(cur, table):
            return None
        described = DuckDBStore.describe_sync(cur, table)
        names = [c["name"] for c in described]
        conds, params = build_where({c["name"]: c["type"] for c in described}, q)
        # Column names are matched case-insensitively, as DuckDB does (it refuses case variants in a table).
        by_lower = {n.lower(): n for n in names}
        sort_by = by_lower.get(q.sort_by.lower()) if q.sort_by else None
        sort_col = sort_by or ("timestamp" if "timestamp" in names else None)
        descending = sort_by is None or q.sort_dir == "desc"
        wanted = [by_lower.get(c.strip().lower()) for c in (q.columns or "").split(",")]
        projected = [c for c in dict.fromkeys(wanted) if c]
        if projected and sort_col and sort_col not in projected:
            projected.append(sort_col)
        query = PageQuery(
            columns=projected or names,
            where=conds,
            params=params,
            sort_col=sort_col,
            sort_type=next((c["type"] for c in described if c["name"] == sort_col), None),
            descending=descending,
            page_size=q.page_size,
            interval_columns=frozenset(c["name"] for c in described if c["type"].upper() == "INTERVAL"),
        )
        if conds or not same_table or info is None:
            where = f" WHERE {' AND '.join(conds)}" if conds else ""
            total_row = cur.execute(f"SELECT count(*) FROM {quote_ident(table)}{where}", params).fetchone()
            total = int(total_row[0]) if total_row else 0
        else:
            total = info.row_count  # written in the same transaction as the table (exact)
        rel = keyed_relation(cur, table) if not HIDDEN & set(names) else None
        # The row key still breaks ties of a sort whose type cannot carry a cursor (STRUCT, ENUM, …).
        by_cursor = rel is not None and cursor_sortable(query.sort_type)
        fingerprint = _fingerprint(table, loaded, conds, params, sort_col, descending, query.columns)
        page, offset = q.page, (q.page - 1) * q.page_size
        if after is not None:
            if not by_cursor:
                what = f"Dataset '{dataset}'" if rel is None else f"Sorted by {sort_col}, dataset '{dataset}'"
                raise Invalid(f"{what} cannot be read by cursor; use page instead")
            if after.fingerprint != fingerprint:
                raise Invalid(
                    "This cursor belongs to a different query (filters, sort or columns) or to data that "
                    "has been reloaded since; start again without a cursor"
                )
            page, offset = after.page, 0
        rows, last_keys, last_sort = read_page(cur, rel, quote_ident(table), query, offset, after, offset_rows)
        json_cols = [c["name"] for c in described if c["type"] == "JSON" and c["name"] in query.columns]
        if json_cols:
            _decode_json_values(rows, json_cols)
        next_cursor = None
        if last_keys is not None and by_cursor:
            start = after.pos if after is not None else offset
            next_cursor = encode_cursor(PageCursor(fingerprint, page + 1, start + q.page_size, last_keys, last_sort))
        return rows, total, next_cursor, page

    result = await store.run_read(_page, snapshot=True)
    if result is None:
        return DataPageResponse(data=[], total=0, page=q.page, page_size=q.page_size, dataset_id=ds_id)
    rows, total, next_cursor, page = result
    return DataPageResponse(
        data=rows, total=total, page=page, page_size=q.page_size, dataset_id=ds_id, next_cursor=next_cursor
    )


def _decode_json_values(rows: list[dict[str, Any]], columns: list[str]) -> None:
    """JSON-typed cells arrive as their JSON text; serve the values (as /api/human-signals/cases does)."""
    for row in rows:
        for col in columns:
            value = row.get(col)
            if isinstance(value, str):
                with contextlib.suppress(ValueError, RecursionError):  # not JSON (or too deep): keep the text
                    row[col] = json.loads(value)


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:24]
