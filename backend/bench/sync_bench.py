"""Sync benchmark: PostgreSQL → DuckDB read paths, measured in one run (decision 3).

Generates ``traces`` (N rows) and ``metric_results`` (4·N rows) with generate_series, then measures
  (a) ``COPY (…) TO STDOUT`` of both tables into /dev/null (the wire limit),
  (b) the project's sync of both tables into a fresh DuckDB file (``SyncEngine.sync_dataset``, full
      rebuild incl. swap, JOIN view and metadata), in a child process so its peak RSS is its own,
  (c) the earlier CSV round-trip: ``COPY … TO STDOUT (CSV, HEADER)`` into files, then ``read_csv``.
Prints wall seconds, rows/s, peak RSS of (b) and the ratios b/a and c/b.

    cd backend && ../.venv/bin/python bench/sync_bench.py --n 250000
    cd backend && ../.venv/bin/python bench/sync_bench.py --n 1000000 --reader asyncpg
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import psycopg
import yaml

BACKEND = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BACKEND))

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def generate(dsn: str, schema: str, n: int) -> None:
    """(Re)create the two source tables with realistic column types."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(
            f"""CREATE TABLE "{schema}".traces AS
            SELECT 'trace-' || g AS dataset_id,
                   'How do I reset my password? #' || g AS query,
                   'Open settings, choose security and follow the reset link sent to you. ' || g AS actual_output,
                   timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS created_at,
                   jsonb_build_object('channel', 'web', 'turns', g % 7,
                                      'tags', jsonb_build_array('a', 'b')) AS metadata,
                   CASE WHEN g % 5 = 0 THEN 'staging' ELSE 'prod' END AS environment,
                   (g % 900) + 100.5 AS latency,
                   g % 50 = 0 AS has_errors
            FROM generate_series(1, {n}) g"""
        )
        conn.execute(
            f"""CREATE TABLE "{schema}".metric_results AS
            SELECT (g * 4 + m)::bigint AS id,
                   'trace-' || g AS dataset_id,
                   (ARRAY['relevance', 'coherence', 'accuracy', 'tone'])[m + 1] AS metric_name,
                   ((g * 7 + m) % 100) / 100.0::float8 AS metric_score,
                   CASE WHEN m = 3 THEN NULL ELSE 'The answer addresses the question. ' || m END AS explanation,
                   jsonb_build_object('verdict', CASE WHEN (g + m) % 3 = 0 THEN 'NO' ELSE 'YES' END) AS signals,
                   timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS created_at,
                   ((g * 7 + m) % 100) >= 50 AS passed
            FROM generate_series(1, {n}) g, generate_series(0, 3) m"""
        )
        conn.execute(f'ANALYZE "{schema}".traces')
        conn.execute(f'ANALYZE "{schema}".metric_results')


def copy_to_devnull(dsn: str, schema: str) -> float:
    """(a) Wire limit: COPY both tables to STDOUT and discard."""
    start = time.perf_counter()
    with psycopg.connect(dsn) as conn, open(os.devnull, "wb") as sink:
        for table in ("traces", "metric_results"):
            with conn.cursor().copy(f'COPY (SELECT * FROM "{schema}".{table}) TO STDOUT') as copy:
                for data in copy:
                    sink.write(data)
    return time.perf_counter() - start


def csv_round_trip(dsn: str, schema: str, workdir: Path) -> float:
    """(c) The earlier path: COPY to CSV files, then DuckDB read_csv into a fresh file."""
    start = time.perf_counter()
    files = {}
    with psycopg.connect(dsn) as conn:
        for table in ("traces", "metric_results"):
            path = workdir / f"{table}.csv"
            with (
                open(path, "wb") as fh,
                conn.cursor().copy(f'COPY (SELECT * FROM "{schema}".{table}) TO STDOUT (FORMAT CSV, HEADER)') as copy,
            ):
                for data in copy:
                    fh.write(data)
            files[table] = path
    con = duckdb.connect(str(workdir / "csv.duckdb"))
    for table, path in files.items():
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_csv('{path}', header = true)")
    con.execute("CHECKPOINT")
    con.close()
    return time.perf_counter() - start


def project_sync_child(
    dsn: str, schema: str, reader: str, workdir: Path, memory_limit: str | None, workers: int
) -> dict[str, float | int | str]:
    """(b) Runs in a child process: the project's sync into a fresh DuckDB file."""
    from app.config import Settings
    from app.services.background import BackgroundTasks
    from app.services.duckdb_store import DuckDBStore
    from app.services.sync_engine import SyncEngine

    custom = workdir / "custom"
    (custom / "config").mkdir(parents=True, exist_ok=True)
    cfg = {
        "enabled": True,
        "url": dsn,
        "dataset_query": f'SELECT * FROM "{schema}".traces',
        "results_query": f'SELECT * FROM "{schema}".metric_results',
    }
    if workers > 1:
        cfg["partition_column"] = "dataset_id"
    (custom / "config" / "monitoring_db.yaml").write_text(yaml.safe_dump({"monitoring_db": cfg}))
    duck: dict[str, object] = {"sync_reader": reader, "max_sync_rows": 100_000_000, "sync_workers": workers}
    if memory_limit:
        duck["memory_limit"] = memory_limit
    (custom / "config" / "duckdb.yaml").write_text(yaml.safe_dump({"duckdb": duck}))
    settings = Settings(_env_file=None, axis_custom_dir=custom, axis_home=workdir / "home")  # type: ignore[call-arg]

    async def run() -> dict[str, float | int | str]:
        store = DuckDBStore(settings.duckdb_path, memory_limit=settings.duckdb.memory_limit)
        await store.open()
        engine = SyncEngine(settings, store, BackgroundTasks())
        # Warm the process like a running server: the DuckDB client imports its parameter-binding
        # dependencies on the first parameterised query (~0.3 s, once per process).
        await store.kv_get("bench_warmup")
        start = time.perf_counter()
        res = await engine.sync_dataset("monitoring")
        wall = time.perf_counter() - start
        if res.status != "ready":
            raise SystemExit(f"sync failed: {res.error}")
        phases = (await engine.get_status("monitoring_data")).get("phases") or {}
        counts = await store.fetch(
            "SELECT (SELECT count(*) FROM monitoring_dataset), (SELECT count(*) FROM monitoring_results)"
        )
        await store.close()
        return {
            "wall": wall,
            "rows": int(counts.rows[0][0]) + int(counts.rows[0][1]),
            "reader": res.reader or "",
            "read_s": float(phases.get("read", 0.0)),
            "swap_s": float(phases.get("swap", 0.0)),
        }

    out = asyncio.run(run())
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> None:
    """Parse args, generate data, run (a), (b), (c) and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default=DEFAULT_DSN)
    parser.add_argument("--n", type=int, default=250_000, help="traces rows; metric_results gets 4·N")
    parser.add_argument("--schema", default="axis_sync_bench")
    parser.add_argument("--reader", default="auto", choices=["auto", "postgres_extension", "asyncpg"])
    parser.add_argument("--memory-limit", default=None, help="DuckDB memory_limit for (b), e.g. 256MB")
    parser.add_argument(
        "--workers", type=int, default=1, help="sync_workers for (b): hash-partitioned streams on dataset_id"
    )
    parser.add_argument("--keep", action="store_true", help="keep the generated schema")
    parser.add_argument("--skip-generate", action="store_true", help="reuse a schema kept by --keep")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        print(
            json.dumps(
                project_sync_child(
                    args.dsn, args.schema, args.reader, Path(args.child), args.memory_limit, args.workers
                )
            )
        )
        return

    total_rows = args.n * 5
    print(f"Generating traces={args.n:,} metric_results={4 * args.n:,} in schema {args.schema} ...", flush=True)
    t = time.perf_counter()
    if not args.skip_generate:
        generate(args.dsn, args.schema, args.n)
    print(f"  generated in {time.perf_counter() - t:.1f}s")
    try:
        with tempfile.TemporaryDirectory(prefix="axis_sync_bench_") as tmp:
            work = Path(tmp)
            copy_to_devnull(args.dsn, args.schema)  # warm the PostgreSQL cache once
            a = copy_to_devnull(args.dsn, args.schema)
            child = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--dsn",
                    args.dsn,
                    "--schema",
                    args.schema,
                    "--reader",
                    args.reader,
                    "--child",
                    str(work / "b"),
                    *(["--memory-limit", args.memory_limit] if args.memory_limit else []),
                    "--workers",
                    str(args.workers),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            b_res = json.loads(child.stdout.strip().splitlines()[-1])
            b = float(b_res["wall"])
            (work / "c").mkdir()
            c = csv_round_trip(args.dsn, args.schema, work / "c")
    finally:
        if not args.keep:
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE')

    assert int(b_res["rows"]) == total_rows, b_res
    print(f"\nN={args.n:,}  rows={total_rows:,}  (cpu cores: {os.cpu_count()})")
    print(f"{'path':<58}{'wall s':>9}{'rows/s':>14}")
    for label, secs in (
        ("(a) COPY TO STDOUT → /dev/null", a),
        (f"(b) project sync [{b_res['reader']}, {args.workers} stream(s)/table]", b),
        ("(c) CSV file round-trip (COPY CSV + read_csv)", c),
    ):
        print(f"{label:<58}{secs:>9.2f}{total_rows / secs:>14,.0f}")
    print(
        f"    of which read into staging {float(b_res['read_s']):.2f}s, "
        f"swap + view + metadata {float(b_res['swap_s']):.2f}s"
    )
    print(f"\npeak RSS of (b): {float(b_res['peak_rss_mb']):.0f} MB")
    print(f"b/a = {b / a:.2f}   (target ≤ 1.6)")
    print(f"c/b = {c / b:.2f}   (target ≥ 2.0)")


if __name__ == "__main__":
    main()
