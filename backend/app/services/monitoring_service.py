"""Monitoring ingestion (spec §8): upload, examples, db-config and db-import, all landing in DuckDB.

``process_monitoring`` is one SQL projection over the loaded relation: column renames through
the custom map and the alias table (§8.2) with a collision guard (DB-23), a UTC ``TIMESTAMP``
column (the load time when the file has none), and try-cast numeric coercion of ``latency`` and
``*_score`` columns. PostgreSQL imports read through asyncpg (split queries joined in DuckDB, or
the legacy single-table path) and land through the same projection.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from app.config import Settings
from app.config.db_configs import HumanSignalsDBConfig, MonitoringDBConfig
from app.errors import Invalid, NotFound
from app.models.monitoring import (
    ConnectionInfo,
    MonitoringDBConfigResponse,
    MonitoringUploadResponse,
    ThresholdsOut,
    ThresholdValues,
)
from app.serialization import RenderedRows
from app.services.column_aliases import MONITORING_ALIASES, normalise_column_key
from app.services.csv_ingest import CsvLoadResult, CsvTransform, UploadLike, ingest_csv_file, ingest_csv_upload
from app.services.duckdb_store import (
    DatasetInfo,
    DuckDBStore,
    cleanup_quietly,
    quote_ident,
    utc_now,
    utc_timestamp_sql,
)
from app.services.json_rows import PREVIEW_ROWS, preview_and_rows_sync
from app.services.monitoring_analytics import records_table, refresh_summary_cache
from app.services.monitoring_table import MonitoringTable
from app.services.pg_source import create_joined_table_sync, fetch_split_queries, fetch_table
from app.services.sync_targets import TARGETS
from app.services.table_metadata import category_sql, compute_table_metadata_sync, latency_number_sql

KIND = "monitoring"
FORMAT = "monitoring"
EXAMPLES = {"monitoring": "monitoring_sample.csv", "monitoring_long": "monitoring_long_sample.csv"}

ID_KEYS = ("dataset_id", "id", "record_id")


def plan_renames(
    columns: Sequence[str], custom_map: Mapping[str, str] | None, aliases: Mapping[str, str]
) -> dict[str, str]:
    """Original → new name for each column: the custom map (exact names) first, then the aliases.

    The custom renames claim their targets before any alias does, whatever the column order, and
    a custom target that is itself an alias becomes the canonical name (``model`` → ``model_name``).
    A rename is skipped when its target is already an original column or already claimed, so two
    sources never produce duplicate columns (DB-23). Names compare case-insensitively, as DuckDB's do.
    """
    originals = {c.lower() for c in columns}
    taken: set[str] = set()
    planned: dict[str, str] = {}

    def _claim(col: str, target: str) -> None:
        if target.lower() != col.lower() and (target.lower() in originals or target.lower() in taken):
            target = col
        planned[col] = target
        taken.add(target.lower())

    custom = custom_map or {}
    for col in columns:
        if custom.get(col):
            _claim(col, aliases.get(normalise_column_key(custom[col]), custom[col]))
    for col in columns:
        if col not in planned:
            _claim(col, aliases.get(normalise_column_key(col)) or col)
    return {col: planned[col] for col in columns}


@dataclass
class ProcessedMonitoring:
    """What ``process_monitoring_sync`` built."""

    format: str
    message: str
    metric_columns: list[str]
    row_count: int
    columns: list[str] = field(default_factory=list)

    @property
    def extra(self) -> dict[str, Any]:
        """Registry extras: metric columns, and whether metric_category was upper-cased at load."""
        return {"metric_columns": self.metric_columns, "category_normalised": "metric_category" in self.columns}


def process_monitoring_sync(
    cur: duckdb.DuckDBPyConnection,
    source: str,
    target: str,
    custom_map: Mapping[str, str] | None = None,
    now: dt.datetime | None = None,
) -> ProcessedMonitoring:
    """Build ``target`` from relation ``source`` with the §8.1 processing in one SQL projection."""
    cols = DuckDBStore.describe_sync(cur, source)
    count_row = cur.execute(f"SELECT count(*) FROM {quote_ident(source)}").fetchone()
    n = int(count_row[0]) if count_row else 0
    if n == 0:
        raise Invalid("Empty dataset")
    names = [c["name"] for c in cols]
    types = {c["name"]: c["type"] for c in cols}
    renames = plan_renames(names, custom_map, MONITORING_ALIASES)
    final = list(renames.values())
    # a record id under any spelling, alias or custom-map target (``conv: id`` ends as dataset_id too)
    if "dataset_id" not in final and not any(normalise_column_key(c) in ID_KEYS for c in names):
        raise Invalid("Data does not appear to be monitoring format. Required column: dataset_id")
    is_long = "metric_name" in final and "metric_score" in final
    select: list[str] = []
    params: list[Any] = []
    for col, new in renames.items():
        q = quote_ident(col)
        alias = quote_ident(new)
        if new == "timestamp":
            select.append(f"{utc_timestamp_sql(quote_ident(col), types[col])} AS {alias}")
        elif new == "metric_score" and is_long:
            # Classification rows may carry text labels here: coerce only when every value is numeric.
            bad = cur.execute(
                f"SELECT count(*) FROM {quote_ident(source)} WHERE {q} IS NOT NULL AND TRY_CAST({q} AS DOUBLE) IS NULL"
            ).fetchone()
            select.append(f"TRY_CAST({q} AS DOUBLE) AS {alias}" if not (bad and bad[0]) else f"{q} AS {alias}")
        elif new == "metric_category":
            # Upper-cased once here so category filters are plain equality (pushed into the scan).
            select.append(f"{category_sql(q)} AS {alias}")
        elif (new == "latency" or new.endswith("_score")) and types[col].upper().startswith("INTERVAL"):
            select.append(f"{latency_number_sql(q, types[col])} AS {alias}")  # a PostgreSQL interval: ms
        elif new == "latency" or new.endswith("_score"):
            select.append(f"TRY_CAST({q} AS DOUBLE) AS {alias}")
        else:
            select.append(f"{q} AS {alias}")
    if "timestamp" not in final:
        select.append("CAST(? AS TIMESTAMP) AS timestamp")
        params.append(now or utc_now())
        final.append("timestamp")
    # Long format is stored clustered by (category, metric, newest first): category/metric filters
    # then skip whole row groups through DuckDB's min/max zone maps, and a newest-first top-N (the
    # analysis-insights page) meets its rows first, so its dynamic filter skips the rest.
    order = ""
    if is_long:
        keys = [quote_ident(k) for k in ("metric_category", "metric_name") if k in final]
        keys.append(f"{quote_ident('timestamp')} DESC")
        order = " ORDER BY " + ", ".join(keys)
    cur.execute(f"DROP TABLE IF EXISTS {quote_ident(target)}")
    cur.execute(
        f"CREATE TABLE {quote_ident(target)} AS SELECT * FROM (SELECT {', '.join(select)} FROM "
        f"{quote_ident(source)}){order}",
        params,
    )
    metric_columns = ["metric_score"] if is_long else [c for c in final if c.endswith("_score") and c != "metric_score"]
    message = f"Processed {n} monitoring records"
    ts_source = next((col for col, new in renames.items() if new == "timestamp"), None)
    if ts_source is not None:
        message += _unreadable_timestamps(cur, source, target, ts_source, types[ts_source])
    return ProcessedMonitoring(FORMAT, message, metric_columns, n, final)


def _unreadable_timestamps(
    cur: duckdb.DuckDBPyConnection, source: str, target: str, column: str, type_name: str
) -> str:
    """A message suffix when source timestamps could not be read (they are stored empty), else ''."""
    row = cur.execute(
        f"SELECT (SELECT count(*) FROM {quote_ident(target)} WHERE timestamp IS NULL) - "
        f"(SELECT count(*) FROM {quote_ident(source)} WHERE {quote_ident(column)} IS NULL)"
    ).fetchone()
    lost = int(row[0]) if row else 0
    if lost <= 0:
        return ""
    q = quote_ident(column)
    sample = cur.execute(
        f"SELECT CAST({q} AS VARCHAR) FROM {quote_ident(source)} "
        f"WHERE {q} IS NOT NULL AND {utc_timestamp_sql(q, type_name)} IS NULL LIMIT 1"
    ).fetchone()
    example = f", e.g. {str(sample[0])[:40]!r}" if sample else ""
    return (
        f"; {lost} timestamp value(s) could not be read as a date and time{example} "
        "(they are stored empty: time filters and trends skip those rows)"
    )


def _reshape_in_place(
    cur: duckdb.DuckDBPyConnection, staging: str, custom_map: Mapping[str, str] | None
) -> ProcessedMonitoring:
    tmp = f"{staging}__mon"
    try:
        result = process_monitoring_sync(cur, staging, tmp, custom_map)
        cur.execute(f"DROP TABLE {quote_ident(staging)}")
        cur.execute(f"ALTER TABLE {quote_ident(tmp)} RENAME TO {quote_ident(staging)}")
    except BaseException:
        cur.execute(f"DROP TABLE IF EXISTS {quote_ident(tmp)}")
        raise
    return result


def _csv_transform(custom_map: Mapping[str, str] | None) -> Any:
    def transform(cur: duckdb.DuckDBPyConnection, staging: str, load: CsvLoadResult) -> CsvTransform:
        res = _reshape_in_place(cur, staging, custom_map)
        return CsvTransform(format=res.format, message=res.message, extra=res.extra)

    return transform


async def finish_monitoring_load(store: DuckDBStore, info: DatasetInfo) -> None:
    """Store table metadata, the per-category summary cache (DB-29) and the per-record table."""
    meta = await store.run_read(lambda cur: compute_table_metadata_sync(cur, info.table_name))
    await store.set_metadata(info.table_name, meta)
    await refresh_summary_cache(store, info)
    await records_table(store, MonitoringTable.of(info))


def _response_rows_sync(
    cur: duckdb.DuckDBPyConnection, table: str, row_cap: int
) -> tuple[list[dict[str, Any]], RenderedRows]:
    """Preview and capped rows of a stored monitoring table, ``metric_score`` as numbers (§8.1 step 5).

    Long data whose classification rows carry text labels keeps ``metric_score`` as text in the
    store (classification analytics read the labels); the response rows carry the numbers, and
    null for a label, as the Ref coerces them.
    """
    types = {c["name"]: c["type"] for c in DuckDBStore.describe_sync(cur, table)}
    if types.get("metric_score") != "VARCHAR":
        return preview_and_rows_sync(cur, table, PREVIEW_ROWS, row_cap)
    view = f"_axis_numeric_{uuid.uuid4().hex[:12]}"
    cur.execute(
        f"CREATE TEMP VIEW {quote_ident(view)} AS SELECT * REPLACE (TRY_CAST(metric_score AS DOUBLE) AS metric_score) "
        f"FROM {quote_ident(table)}"
    )
    try:
        return preview_and_rows_sync(cur, view, PREVIEW_ROWS, row_cap)
    finally:
        cleanup_quietly(cur, f"DROP VIEW IF EXISTS {quote_ident(view)}")


async def _response(
    store: DuckDBStore,
    info: DatasetInfo,
    *,
    message: str,
    metric_columns: list[str],
    row_cap: int,
    source: str | None = None,
) -> MonitoringUploadResponse:
    preview, rows = await store.run_read(lambda cur: _response_rows_sync(cur, info.table_name, row_cap))
    return MonitoringUploadResponse(
        row_count=info.row_count,
        columns=info.column_names,
        metric_columns=metric_columns,
        data=[],
        preview=preview,
        message=message,
        dataset_id=info.dataset_id,
        data_truncated=info.row_count > rows.size,
        source=source,
    ).with_rows(rows)


async def upload_monitoring(
    store: DuckDBStore, settings: Settings, upload: UploadLike, spool_dir: Path
) -> MonitoringUploadResponse:
    """Parse an uploaded monitoring CSV, process it and store it as the latest monitoring dataset."""
    cfg = settings.monitoring_db
    res = await ingest_csv_upload(
        store,
        upload,
        kind=KIND,
        max_bytes=settings.max_upload_bytes,
        spool_dir=spool_dir,
        transform=_csv_transform(cfg.column_rename_map),
    )
    await finish_monitoring_load(store, res.dataset)
    return await _response(
        store,
        res.dataset,
        message=res.transform.message or "",
        metric_columns=list(res.transform.extra.get("metric_columns", [])),
        row_cap=settings.upload_response_row_cap,
    )


async def load_monitoring_example(store: DuckDBStore, settings: Settings, name: str) -> MonitoringUploadResponse:
    """Load a bundled sample (``monitoring`` wide, ``monitoring_long`` long) as a monitoring dataset."""
    file = EXAMPLES.get(name)
    if file is None:
        raise NotFound(f"Dataset not found. Available: {sorted(EXAMPLES)}")
    path = settings.axis_sample_dir / file
    if not path.is_file():
        raise NotFound(f"Example file for '{name}' is missing")
    res = await ingest_csv_file(store, path, kind=KIND, source=f"example:{name}", transform=_csv_transform(None))
    await finish_monitoring_load(store, res.dataset)
    return await _response(
        store,
        res.dataset,
        message=res.transform.message or "",
        metric_columns=list(res.transform.extra.get("metric_columns", [])),
        row_cap=settings.upload_response_row_cap,
    )


# --------------------------------------------------------------------------- db-config
def connection_info(cfg: MonitoringDBConfig | HumanSignalsDBConfig) -> ConnectionInfo | None:
    """Non-secret connection summary (None when not configured)."""
    if not cfg.is_configured:
        return None
    params = cfg.connection_params()
    return ConnectionInfo(
        host=params.host,
        port=params.port,
        database=params.database,
        schema_name=cfg.schema_name,
        table=cfg.table,
        ssl_mode=params.ssl_mode,
        has_url=cfg.url is not None,
    )


def source_db_status(cfg: MonitoringDBConfig | HumanSignalsDBConfig) -> dict[str, Any]:
    """The db-config fields shared by monitoring and human signals (no secrets)."""
    return {
        "configured": cfg.is_configured,
        "auto_connect": cfg.auto_connect and cfg.is_configured,
        "auto_load": cfg.should_auto_load,
        "has_query": cfg.has_query,
        "row_limit": cfg.row_limit,
        "query_timeout": cfg.query_timeout,
        "connection": connection_info(cfg),
        "config_error": cfg.config_error,
    }


def monitoring_db_config(settings: Settings) -> MonitoringDBConfigResponse:
    """``GET /api/monitoring/db-config``: what is configured, thresholds and anomaly settings."""
    cfg = settings.monitoring_db
    th = cfg.thresholds
    return MonitoringDBConfigResponse(
        **source_db_status(cfg),
        thresholds=ThresholdsOut(
            default=ThresholdValues(good=th.default.good, pass_=th.default.pass_),
            per_source={k: ThresholdValues(good=v.good, pass_=v.pass_) for k, v in th.per_source.items()},
        ),
        anomaly_detection=cfg.anomaly_detection.model_dump(),
    )


# --------------------------------------------------------------------------- PostgreSQL import
async def land_arrow_monitoring(
    store: DuckDBStore, cfg: MonitoringDBConfig, results: pa.Table, dataset: pa.Table | None, source: str
) -> tuple[DatasetInfo, ProcessedMonitoring]:
    """Land imported rows (optionally joined with their dataset rows) as a processed monitoring dataset."""
    holder: dict[str, ProcessedMonitoring] = {}

    def build(cur: duckdb.DuckDBPyConnection, staging: str) -> None:
        raw = f"{staging}__raw"
        try:
            create_joined_table_sync(cur, f"CREATE OR REPLACE TEMP TABLE {quote_ident(raw)}", dataset, results)
            holder["p"] = process_monitoring_sync(cur, raw, staging, cfg.column_rename_map)
        finally:
            cur.execute(f"DROP TABLE IF EXISTS {quote_ident(raw)}")

    def after_swap(cur: duckdb.DuckDBPyConnection, info: DatasetInfo) -> None:
        info.extra = {**info.extra, **holder["p"].extra}
        DuckDBStore.register_dataset_sync(cur, info)

    info = await store.land_dataset(kind=KIND, source=source, build=build, format=FORMAT, after_swap=after_swap)
    return info, holder["p"]


async def import_monitoring_from_db(store: DuckDBStore, settings: Settings) -> MonitoringUploadResponse:
    """``POST /api/monitoring/db-import``: split queries, else the configured table, into the store."""
    cfg = settings.monitoring_db
    if not cfg.is_configured:
        raise Invalid(
            cfg.config_error
            or "Database not configured. Set monitoring_db in monitoring_db.yaml or MONITORING_DB_* env vars."
        )
    if cfg.has_query:
        dataset, results, note = await fetch_split_queries(
            cfg, TARGETS["monitoring"], application_name="axis-monitoring-import"
        )
        if results.num_rows == 0:
            raise Invalid("Results query returned no data. Check results_query.")
        info, processed = await land_arrow_monitoring(store, cfg, results, dataset, "database")
        message = f"Imported {processed.row_count} records from database query{note}"
    elif cfg.table:
        table, note = await fetch_table(
            cfg, cfg.schema_name or "public", cfg.table, application_name="axis-monitoring-import"
        )
        if table.num_rows == 0:
            raise Invalid(f"Table {cfg.table} returned no data")
        info, processed = await land_arrow_monitoring(store, cfg, table, None, "database")
        message = f"Imported {processed.row_count} records from {cfg.table}{note}"
    else:
        raise Invalid("No queries configured. Set dataset_query and results_query (or table) in monitoring_db.")
    await finish_monitoring_load(store, info)
    return await _response(
        store,
        info,
        message=message,
        metric_columns=processed.metric_columns,
        row_cap=settings.upload_response_row_cap,
        source="database",
    )
