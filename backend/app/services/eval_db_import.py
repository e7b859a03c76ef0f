"""``eval-db-config`` and ``eval-db-import`` (§4.8): split queries from the configured evaluation database,
LEFT-joined, renamed by the alias table, processed as an upload (§4.3) and landed as an ``eval`` dataset.
"""

from __future__ import annotations

import duckdb

from app.config.db_configs import EvalDBConfig
from app.errors import Invalid, ServiceError
from app.models.data import EvalDBConfigResponse, UploadResponse
from app.services.connection_store import scrub_error
from app.services.csv_ingest import (
    CsvTransform,
)
from app.services.data_processor import (
    column_types,
    eval_alias_renames,
    load_result,
    process_eval_table,
)
from app.services.duckdb_store import DatasetInfo, DuckDBStore, quote_ident
from app.services.pg_source import create_joined_table_sync, fetch_split_queries, source_secrets
from app.services.sync_targets import TARGETS


def eval_db_status(cfg: EvalDBConfig) -> EvalDBConfigResponse:
    """GET /eval-db-config payload."""
    return EvalDBConfigResponse(
        configured=cfg.is_configured,
        auto_load=cfg.auto_load and cfg.is_configured,
        has_query=cfg.has_query,
        row_limit=cfg.row_limit,
        query_timeout=cfg.query_timeout,
        config_error=cfg.config_error,
    )


async def import_eval_db(store: DuckDBStore, cfg: EvalDBConfig, *, row_cap: int) -> UploadResponse:
    """POST /eval-db-import (§4.8): split queries → LEFT join → aliases → §4.3 → stored dataset."""
    if not cfg.is_configured:
        raise Invalid(
            cfg.config_error or "Database not configured. Set eval_db in eval_db.yaml or the EVAL_DB_* variables."
        )
    if not cfg.has_query:
        raise Invalid("No SQL queries configured. Set eval_db.dataset_query and eval_db.results_query.")
    dataset, results, note = await fetch_split_queries(cfg, TARGETS["eval"], application_name="axis-eval-import")
    if results.num_rows == 0:
        raise Invalid("Results query returned no data. Check eval_db.results_query.")

    def _build(cur: duckdb.DuckDBPyConnection, staging: str) -> None:
        joined = f"{staging}__joined"
        create_joined_table_sync(cur, f"CREATE TABLE {quote_ident(joined)}", dataset, results)
        try:
            cols = list(column_types(cur, joined))
            renames = eval_alias_renames(cols, cfg.column_rename_map)
            select = ", ".join(f"{quote_ident(c)} AS {quote_ident(renames.get(c, c))}" for c in cols)
            cur.execute(f"CREATE TABLE {quote_ident(staging)} AS SELECT {select} FROM {quote_ident(joined)}")
        finally:
            cur.execute(f"DROP TABLE IF EXISTS {quote_ident(joined)}")
        count = cur.execute(f"SELECT count(*) FROM {quote_ident(staging)}").fetchone()
        if not count or not count[0]:
            raise Invalid("The joined evaluation data is empty")
        holder["report"] = process_eval_table(cur, staging)

    holder: dict[str, CsvTransform] = {}

    def _after(cur: duckdb.DuckDBPyConnection, info: DatasetInfo) -> None:
        info.format = holder["report"].format
        info.extra = {**info.extra, **holder["report"].extra}
        DuckDBStore.set_dataset_format_sync(cur, info)

    try:
        info = await store.land_dataset(kind="eval", source="database", build=_build, after_swap=_after)
    except ServiceError:
        raise
    except duckdb.Error as exc:
        raise Invalid(f"Import failed: {scrub_error(str(exc).splitlines()[0], source_secrets(cfg))}") from None
    report = holder["report"]
    n = info.row_count
    return await load_result(
        store, info, CsvTransform(format=report.format, message=f"Imported {n} records from database{note}"), row_cap
    )
