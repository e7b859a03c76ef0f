"""Database-browser import benchmark: one server-side cursor → Arrow batches → DuckDB dataset.

Generates a typed table of N rows (text, float, int, bigint, bool, numeric, timestamptz, date,
jsonb, uuid), then measures in one run
  (a) ``COPY (…) TO STDOUT`` into /dev/null (the wire limit),
  (b) ``database_service.table_import`` of the whole table into a fresh DuckDB store, split into
      the cursor stream and the landing (dedupe + eval processing + swap) by timing the whole call
      and a second call with a row cap of 1 for the fixed overhead,
and prints wall seconds, rows/s and the ratio b/a.

    cd backend && ../.venv/bin/python bench/db_import_bench.py --n 100000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

import psycopg

BACKEND = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BACKEND))

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def generate(dsn: str, schema: str, n: int) -> None:
    """(Re)create the source table."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(
            f"""CREATE TABLE "{schema}".big AS SELECT
              'case_' || ((g - 1) % ({n} / 4 + 1)) AS dataset_id,
              (ARRAY['accuracy', 'relevance', 'faithfulness', 'toxicity'])[(g - 1) % 4 + 1] AS metric_name,
              ((g * 7919) % 1000) / 1000.0::float8 AS metric_score, g::int4 AS n, g::int8 * 3 AS big_n,
              (g % 3 = 0) AS flag, (g / 8.0)::numeric(12,3) AS amount,
              TIMESTAMPTZ '2024-01-01 00:00:00+00' + g * INTERVAL '1 second' AS ts,
              DATE '2024-01-01' + (g % 365) AS day, jsonb_build_object('g', g) AS payload,
              md5(g::text)::uuid AS uid, 'note ' || g AS note
            FROM generate_series(1, {n}) g"""
        )


def copy_to_devnull(dsn: str, schema: str) -> float:
    """Seconds for COPY TO STDOUT of the table (text format) read to the end."""
    start = time.perf_counter()
    sql = f'COPY (SELECT * FROM "{schema}".big) TO STDOUT'
    with psycopg.connect(dsn) as conn, conn.cursor() as cur, cur.copy(sql) as copy:
        for _ in copy:
            pass
    return time.perf_counter() - start


async def run_import(dsn: str, schema: str, n: int) -> tuple[float, float]:
    """Seconds for a full import and for a 1-row import (fixed overhead)."""
    from app.config import Settings
    from app.models.database import ConnectRequest, TableImportRequest, TableRef
    from app.services import database_import as di
    from app.services import database_service as ds
    from app.services.duckdb_store import DuckDBStore

    info = psycopg.conninfo.conninfo_to_dict(dsn)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "custom" / "config").mkdir(parents=True)
        settings = Settings(
            _env_file=None,
            axis_custom_dir=home / "custom",
            axis_home=home,  # type: ignore[call-arg]
            upload_response_row_cap=1000,
        )
        store = DuckDBStore(settings.duckdb_path)
        await store.open()
        conns = ds.build_connection_store(settings)
        try:
            handle = (
                await ds.connect(
                    conns,
                    settings,
                    "data",
                    ConnectRequest(
                        host=str(info.get("host") or "127.0.0.1"),
                        port=int(info.get("port") or 5432),
                        database=str(info.get("dbname") or "test"),
                        username=str(info.get("user") or "postgres"),
                        password="bench",
                        ssl_mode="disable",
                    ),
                )
            ).handle  # type: ignore[arg-type]
            table = TableRef(schema_name=schema, name="big")
            timings = []
            for limit in (n, 1):
                start = time.perf_counter()
                res = await di.table_import(
                    conns, store, settings, handle, TableImportRequest(handle=handle, table=table, limit=limit), None
                )
                timings.append(time.perf_counter() - start)
                assert res.row_count == limit, res.row_count
            return timings[0], timings[1]
        finally:
            await conns.close_all()
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    args = parser.parse_args()
    schema = "axis_bench_dbimport"
    generate(args.dsn, schema, args.n)
    try:
        copy_s = copy_to_devnull(args.dsn, schema)
        full_s, fixed_s = asyncio.run(run_import(args.dsn, schema, args.n))
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    print(f"rows                 {args.n}")
    print(f"(a) COPY to /dev/null {copy_s:8.2f} s  {args.n / copy_s:12,.0f} rows/s")
    print(f"(b) table_import      {full_s:8.2f} s  {args.n / full_s:12,.0f} rows/s  (1-row import {fixed_s:.2f} s)")
    print(f"b/a                   {full_s / copy_s:8.2f} x")


if __name__ == "__main__":
    main()
