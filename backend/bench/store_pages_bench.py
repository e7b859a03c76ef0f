"""Deep pages of ``GET /api/store/data/{dataset}``: OFFSET pages against keyset (cursor) pages.

Generates the sync benchmark's PostgreSQL tables (N traces, 4·N metric results), syncs them into a
fresh DuckDB store with the project's sync (the ``monitoring_data`` JOIN view), then, for a few
page depths, times the OFFSET page through the service function and the page that follows it read
with the returned ``next_cursor``; prints milliseconds and the process's peak RSS after each depth.

    cd backend && ../.venv/bin/python bench/store_pages_bench.py --n 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import psycopg
import sync_bench

from app.services.duckdb_store import DuckDBStore
from app.services.store_service import DataQuery, dataset_rows


def peak_rss_mb() -> float:
    """This process's peak RSS so far (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def measure(store_path: Path, pages: list[int], sort_by: str | None, page_size: int) -> None:
    """Offset page vs the cursor page after it, per depth."""
    store = DuckDBStore(store_path)
    await store.open()
    await store.fetch("SELECT count(*) FROM monitoring_data")  # warm the buffer pool
    print(f"sort_by={sort_by or 'timestamp (default)'}  page_size={page_size}")
    print(f"{'page':>8}{'OFFSET ms':>12}{'next by cursor ms':>20}{'peak RSS MB':>14}")
    for page in pages:
        t = time.perf_counter()
        query = DataQuery(page=page, page_size=page_size, sort_by=sort_by)
        first = await dataset_rows(store, "monitoring", None, query)
        offset_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        nxt = await dataset_rows(
            store, "monitoring", None, DataQuery(page_size=page_size, sort_by=sort_by, cursor=first.next_cursor)
        )
        cursor_ms = (time.perf_counter() - t) * 1000
        assert nxt.page == page + 1 and len(nxt.data) == page_size
        print(f"{page:>8}{offset_ms:>12.0f}{cursor_ms:>20.0f}{peak_rss_mb():>14.0f}")
    await store.close()


def main() -> None:
    """Generate, sync once, then measure."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default=sync_bench.DEFAULT_DSN)
    parser.add_argument("--n", type=int, default=1_000_000, help="traces rows; metric_results gets 4·N")
    parser.add_argument("--schema", default="axis_pages_bench")
    parser.add_argument("--skip-generate", action="store_true", help="reuse a schema kept by --keep")
    parser.add_argument("--keep", action="store_true", help="keep the generated schema")
    parser.add_argument("--page-size", type=int, default=50)
    parser.add_argument("--sort-by", default=None)
    args = parser.parse_args()
    if not args.skip_generate:
        sync_bench.generate(args.dsn, args.schema, args.n)
    try:
        with tempfile.TemporaryDirectory(prefix="axis_pages_bench_") as tmp:
            work = Path(tmp)
            sync_bench.project_sync_child(args.dsn, args.schema, "auto", work, None, 1)
            store_path = next(work.glob("home/**/*.duckdb"))
            last = 4 * args.n // args.page_size - 2
            pages = [1, 2, 200, 2000, 20000, last]
            asyncio.run(measure(store_path, [p for p in pages if p <= last], args.sort_by, args.page_size))
    finally:
        if not args.keep:
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{args.schema}" CASCADE')


if __name__ == "__main__":
    main()
