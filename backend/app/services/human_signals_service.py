"""Human signals (spec §7): uploads, imports, examples, case pages and the sync's derived stage.

The derived build (V2 detection, signal expansion, metric schema, case aggregation) is
:mod:`app.services.human_signals_build`, all DuckDB SQL. Uploads and examples store the raw rows as
a ``human_signals`` dataset and the cases as a second table named in the registry entry's
``extra``; the sync engine calls :func:`build_human_signals_derived` to rebuild
``human_signals_cases`` from ``human_signals_raw``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import duckdb
import pyarrow as pa

from app.config import Settings
from app.errors import Invalid, NotFound
from app.models.human_signals import CaseListResponse, HumanSignalsDBConfigResponse, MetricSchemaResponse
from app.serialization import RenderedRows
from app.services.csv_ingest import (
    CsvIngestResult,
    CsvLoadResult,
    CsvTransform,
    UploadLike,
    ingest_csv_file,
    ingest_csv_upload,
)
from app.services.duckdb_store import (
    DatasetInfo,
    DuckDBStore,
    new_dataset_id,
    quote_ident,
)
from app.services.human_signals_build import (
    SignalsBuild,
    build_signals_tables_sync,
    normalise_name,
    signal_columns,
)
from app.services.json_rows import render_rows_sync
from app.services.monitoring_service import source_db_status
from app.services.pg_source import create_joined_table_sync, fetch_split_queries, fetch_table
from app.services.signals_display_config import build_display_config, load_signals_metrics_yaml
from app.services.sync_targets import TARGETS
from app.services.table_metadata import compute_table_metadata_sync

logger = logging.getLogger(__name__)

KIND = "human_signals"
FORMAT = "hitl_feedback"
EXAMPLES = {"hitl": "hitl_sample.csv"}
RAW_VIEW = "human_signals_raw"
SYNC_CASES_TABLE = "human_signals_cases"
SCHEMA_KV = "human_signals_metric_schema"
RAW_SYNC_KV = "human_signals_raw_sync_id"
CASES_SYNC_KV = "human_signals_cases_sync_id"


# --------------------------------------------------------------------------- reading cases
def cases_page_sync(
    cur: duckdb.DuckDBPyConnection, table: str, limit: int, offset: int = 0
) -> tuple[list[str], RenderedRows]:
    """Columns and one page of cases rendered as JSON (JSON columns as values, NULL ones left out)."""
    columns = [c["name"] for c in DuckDBStore.describe_sync(cur, table)]
    return columns, render_rows_sync(cur, table, limit, offset, decode_json=True)


async def _display_config(settings: Settings, schema: dict[str, Any]) -> dict[str, Any]:
    path: Path = settings.yaml_path("signals_metrics.yaml")
    overrides = await anyio.to_thread.run_sync(load_signals_metrics_yaml, path, settings.yaml_environ)
    return build_display_config(schema, list(settings.human_signals_db.visible_kpis), overrides)


async def _case_response(
    store: DuckDBStore,
    settings: Settings,
    info: DatasetInfo,
    cases_table: str,
    schema: dict[str, Any],
    *,
    message: str,
    source: str | None,
    limit: int,
    offset: int = 0,
    page: int | None = None,
) -> CaseListResponse:

    def _read(cur: duckdb.DuckDBPyConnection) -> tuple[int, list[str], RenderedRows, Any]:
        row = cur.execute(f"SELECT count(*) FROM {quote_ident(cases_table)}").fetchone()
        columns, cases = cases_page_sync(cur, cases_table, limit, offset)
        # a sync's cases and their schema change together (one transaction): read both from one state
        stored = DuckDBStore.kv_get_sync(cur, SCHEMA_KV) if cases_table == SYNC_CASES_TABLE else None
        return int(row[0]) if row else 0, columns, cases, stored

    total, columns, cases, stored = await store.run_read(_read, snapshot=True)
    if isinstance(stored, str):
        stored = json.loads(stored)
    if isinstance(stored, dict):
        schema = stored
    return CaseListResponse(
        row_count=total,
        columns=columns,
        data=[],
        message=message.format(n=total),
        metric_schema=schema,
        display_config=await _display_config(settings, schema),
        source=source,
        dataset_id=info.dataset_id,
        data_truncated=page is None and total > cases.size,
        page=page,
        page_size=limit if page is not None else None,
    ).with_rows(cases)


# --------------------------------------------------------------------------- loading
def _normalise_in_place(cur: duckdb.DuckDBPyConnection, staging: str) -> None:
    """Rename staging columns to their normalised names and add ``source_name`` from ``source``.

    The column :func:`signal_columns` picked for a name takes it; another spelling of it keeps its own.
    """
    names = [c["name"] for c in DuckDBStore.describe_sync(cur, staging)]
    mapping = signal_columns(names)
    seen: set[str] = set()
    sel = []
    for col in names:
        key = normalise_name(col)
        new = key if mapping.get(key) == col else col
        seen.add(new)
        sel.append(f"{quote_ident(col)} AS {quote_ident(new)}")
    if "source_name" not in seen and "source_name" in mapping:
        sel.append(f"{quote_ident(mapping['source_name'])} AS source_name")
    tmp = f"{staging}__norm"
    cur.execute(f"CREATE OR REPLACE TABLE {quote_ident(tmp)} AS SELECT {', '.join(sel)} FROM {quote_ident(staging)}")
    cur.execute(f"DROP TABLE {quote_ident(staging)}")
    cur.execute(f"ALTER TABLE {quote_ident(tmp)} RENAME TO {quote_ident(staging)}")


def _csv_transform(cases_table: str, visible: Sequence[str]) -> Any:
    def transform(cur: duckdb.DuckDBPyConnection, staging: str, load: CsvLoadResult) -> CsvTransform:
        _normalise_in_place(cur, staging)
        try:
            built = build_signals_tables_sync(cur, staging, cases_table, visible)
            if built.case_count == 0:
                raise Invalid("Empty dataset: no row has a dataset_id, so there are no cases to show")
        except BaseException:
            cur.execute(f"DROP TABLE IF EXISTS {quote_ident(cases_table)}")
            raise
        return CsvTransform(
            format=FORMAT,
            message=f"Processed {built.case_count} cases",
            extra={"cases_table": cases_table, "metric_schema": built.metric_schema},
        )

    return transform


async def _finish(store: DuckDBStore, info: DatasetInfo) -> None:
    cases = str(info.extra.get("cases_table") or "")
    if cases:
        meta = await store.run_read(lambda cur: compute_table_metadata_sync(cur, cases))
        await store.set_metadata(cases, meta)


async def upload_human_signals(
    store: DuckDBStore, settings: Settings, upload: UploadLike, spool_dir: Path
) -> CaseListResponse:
    """Parse a V2 human-signals CSV, store raw rows + cases, answer with cases, schema and display config."""
    ds_id = new_dataset_id(KIND)
    cases_table = f"ds_{ds_id}_cases"
    res = await ingest_csv_upload(
        store,
        upload,
        kind=KIND,
        max_bytes=settings.max_upload_bytes,
        spool_dir=spool_dir,
        transform=_csv_transform(cases_table, settings.human_signals_db.visible_metrics),
        dataset_id=ds_id,
    )
    return await _loaded_response(store, settings, res, cases_table, source="upload")


async def _loaded_response(
    store: DuckDBStore, settings: Settings, res: CsvIngestResult, cases_table: str, *, source: str
) -> CaseListResponse:
    """Metadata of a freshly loaded CSV dataset's cases, then the Ref upload response."""
    await _finish(store, res.dataset)
    return await _case_response(
        store,
        settings,
        res.dataset,
        cases_table,
        res.transform.extra["metric_schema"],
        message="Processed {n} cases",
        source=source,
        limit=settings.upload_response_row_cap,
    )


async def load_human_signals_example(store: DuckDBStore, settings: Settings, name: str) -> CaseListResponse:
    """Load the bundled ``hitl`` sample as a human-signals dataset."""
    file = EXAMPLES.get(name)
    if file is None:
        raise NotFound(f"Dataset not found. Available: {sorted(EXAMPLES)}")
    path = settings.axis_sample_dir / file
    if not path.is_file():
        raise NotFound(f"Example file for '{name}' is missing")
    ds_id = new_dataset_id(KIND)
    cases_table = f"ds_{ds_id}_cases"
    res = await ingest_csv_file(
        store,
        path,
        kind=KIND,
        source=f"example:{name}",
        dataset_id=ds_id,
        transform=_csv_transform(cases_table, settings.human_signals_db.visible_metrics),
    )
    return await _loaded_response(store, settings, res, cases_table, source="example")


async def land_arrow_signals(
    store: DuckDBStore, settings: Settings, results: pa.Table, dataset: pa.Table | None, source: str
) -> DatasetInfo:
    """Land imported rows (optionally joined with their dataset rows) as raw rows + cases."""
    ds_id = new_dataset_id(KIND)
    cases_table = f"ds_{ds_id}_cases"
    holder: dict[str, SignalsBuild] = {}
    visible = settings.human_signals_db.visible_metrics

    def build(cur: duckdb.DuckDBPyConnection, staging: str) -> None:
        create_joined_table_sync(cur, f"CREATE TABLE {quote_ident(staging)}", dataset, results)
        _normalise_in_place(cur, staging)
        try:
            holder["b"] = build_signals_tables_sync(cur, staging, cases_table, visible)
        except BaseException:
            cur.execute(f"DROP TABLE IF EXISTS {quote_ident(cases_table)}")
            raise

    def after_swap(cur: duckdb.DuckDBPyConnection, info: DatasetInfo) -> None:
        info.extra = {**info.extra, "cases_table": cases_table, "metric_schema": holder["b"].metric_schema}
        DuckDBStore.register_dataset_sync(cur, info)

    info = await store.land_dataset(
        kind=KIND, source=source, build=build, dataset_id=ds_id, format=FORMAT, after_swap=after_swap
    )
    await _finish(store, info)
    return info


def human_signals_db_config(settings: Settings) -> HumanSignalsDBConfigResponse:
    """``GET /api/human-signals/db-config``."""
    cfg = settings.human_signals_db
    return HumanSignalsDBConfigResponse(**source_db_status(cfg))


async def import_human_signals_from_db(store: DuckDBStore, settings: Settings) -> CaseListResponse:
    """``POST /api/human-signals/db-import``: serve synced cases, else a one-shot import, else the table."""
    cfg = settings.human_signals_db
    if not cfg.is_configured:
        raise Invalid(
            cfg.config_error
            or "Database not configured. Set human_signals_db in human_signals_db.yaml or HUMAN_SIGNALS_DB_* env vars."
        )
    latest = await store.latest_dataset(KIND)
    if cfg.has_query and latest is not None and latest.source == "sync":
        table, schema = await _cases_of(store, latest)
        return await _case_response(
            store,
            settings,
            latest,
            table,
            schema,
            message="Loaded {n} cases from database",
            source="duckdb",
            limit=settings.upload_response_row_cap,
        )
    if cfg.has_query:
        dataset, results, note = await fetch_split_queries(
            cfg, TARGETS["human_signals"], application_name="axis-human-signals-import"
        )
        if results.num_rows == 0:
            raise Invalid("Results query returned no data. Check results_query.")
        info = await land_arrow_signals(store, settings, results, dataset, "database")
    elif cfg.table:
        table_rows, note = await fetch_table(
            cfg, cfg.schema_name or "public", cfg.table, application_name="axis-human-signals-import"
        )
        if table_rows.num_rows == 0:
            raise Invalid(f"Table {cfg.table} returned no data")
        info = await land_arrow_signals(store, settings, table_rows, None, "database")
    else:
        raise Invalid("No queries configured. Set dataset_query and results_query (or table) in human_signals_db.")
    return await _case_response(
        store,
        settings,
        info,
        str(info.extra["cases_table"]),
        info.extra["metric_schema"],
        message="Imported {n} cases from database" + note.replace("{", "{{").replace("}", "}}"),
        source="database",
        limit=settings.upload_response_row_cap,
    )


async def _cases_of(store: DuckDBStore, info: DatasetInfo) -> tuple[str, dict[str, Any]]:
    """Cases table and metric schema of a human-signals dataset (sync datasets use the fixed names)."""
    table = info.extra.get("cases_table")
    schema = info.extra.get("metric_schema")
    if not table and info.table_name == RAW_VIEW:
        table = SYNC_CASES_TABLE
        schema = await store.kv_get(SCHEMA_KV)
        if isinstance(schema, str):
            schema = json.loads(schema)
    if not table or not await store.table_exists(str(table)):
        raise NotFound("No human signals data available. Upload a file, load the example or run a sync first.")
    return str(table), schema if isinstance(schema, dict) else {
        "metrics": {},
        "source_fields": [],
        "has_timestamp": False,
    }


async def _resolve_cases(store: DuckDBStore, dataset_id: str | None) -> tuple[DatasetInfo, str, dict[str, Any]]:
    """The named dataset's cases, or those of the newest dataset that has cases.

    A sync whose rows were not V2 signals data registers its raw rows but builds no cases; it must
    not hide an uploaded dataset that has them.
    """
    if dataset_id:
        info = await store.resolve_dataset(KIND, dataset_id)
        return (info, *await _cases_of(store, info))
    for info in await store.list_datasets(KIND):
        if info.status != "ready":
            continue
        try:
            return (info, *await _cases_of(store, info))
        except NotFound:
            continue
    raise NotFound("No human signals data available. Upload a file, load the example or run a sync first.")


async def list_cases(
    store: DuckDBStore, settings: Settings, page: int, page_size: int, dataset_id: str | None = None
) -> CaseListResponse:
    """One page of cases (ascending case id) of the chosen or latest human-signals dataset with cases."""
    if page < 1 or not 1 <= page_size <= 500:
        raise Invalid("page must be >= 1 and page_size between 1 and 500")
    info, table, schema = await _resolve_cases(store, dataset_id)
    return await _case_response(
        store,
        settings,
        info,
        table,
        schema,
        message="{n} cases available",
        source="duckdb",
        limit=page_size,
        offset=(page - 1) * page_size,
        page=page,
    )


async def metric_schema(store: DuckDBStore, settings: Settings, dataset_id: str | None = None) -> MetricSchemaResponse:
    """Metric schema and display config of the chosen or latest human-signals dataset with cases."""
    try:
        info, _, schema = await _resolve_cases(store, dataset_id)
    except NotFound:
        if dataset_id:
            raise
        raise NotFound("No metric schema stored. Upload a file, load the example or run a sync first.") from None
    return MetricSchemaResponse(
        metric_schema=schema, display_config=await _display_config(settings, schema), dataset_id=info.dataset_id
    )


# --------------------------------------------------------------------------- sync-engine hook (§10.9)
def swap_in_cases_sync(
    cur: duckdb.DuckDBPyConnection, settings: Settings, raw_table: str, sync_id: str
) -> SignalsBuild | None:
    """Inside the caller's transaction: rebuild ``human_signals_cases`` and its KV entries from ``raw_table``.

    The sync calls it in the transaction that swaps the raw rows in, so readers see the raw rows
    and their cases change together. Rows that are not V2 signals data remove the cases table and
    its sync id (cases of an earlier sync must not pass for this one's) and return None.
    """
    staging = f"{SYNC_CASES_TABLE}__staging"
    try:
        built = build_signals_tables_sync(cur, raw_table, staging, settings.human_signals_db.visible_metrics)
    except Invalid as exc:
        cur.execute(f"DROP TABLE IF EXISTS {quote_ident(staging)}")
        cur.execute(f"DROP TABLE IF EXISTS {quote_ident(SYNC_CASES_TABLE)}")
        DuckDBStore.kv_delete_sync(cur, CASES_SYNC_KV)
        logger.warning("No human-signals cases built: %s", exc.message)
        return None
    cur.execute(f"DROP TABLE IF EXISTS {quote_ident(SYNC_CASES_TABLE)}")
    cur.execute(f"ALTER TABLE {quote_ident(staging)} RENAME TO {quote_ident(SYNC_CASES_TABLE)}")
    DuckDBStore.kv_set_sync(cur, SCHEMA_KV, built.metric_schema)
    DuckDBStore.kv_set_sync(cur, CASES_SYNC_KV, sync_id)
    DuckDBStore.set_metadata_sync(cur, SYNC_CASES_TABLE, compute_table_metadata_sync(cur, SYNC_CASES_TABLE))
    logger.info("Built %s: %d cases (sync %s)", SYNC_CASES_TABLE, built.case_count, sync_id)
    return built


async def build_human_signals_derived(
    store: DuckDBStore, settings: Settings, raw_table: str, sync_id: str
) -> dict[str, Any] | None:
    """Rebuild ``human_signals_cases`` from the stored raw rows in a transaction of its own (the boot repair).

    Returns the metric schema, or None when the raw data is not V2 signals data.
    """

    def _run(cur: duckdb.DuckDBPyConnection) -> SignalsBuild | None:
        cur.execute("BEGIN TRANSACTION")
        try:
            built = swap_in_cases_sync(cur, settings, raw_table, sync_id)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return built

    built = await store.run_write(_run)
    store.cache_metadata(SYNC_CASES_TABLE, None)
    return built.metric_schema if built is not None else None
