"""Upload + eval analytics benchmark (issue 4), measured in one run.

1. Generates a long-format eval CSV (default 1,000,000 rows: 250k items × 4 metrics, with query,
   output and explanation text) with DuckDB ``COPY``.
2. Times, each in a fresh child process (so peak RSS is its own):
   (a) our upload path end-to-end through the service function
       ``data_processor.upload_eval_csv`` (spool, UTF-8 check, DuckDB ``read_csv``, format
       detection, §4.3 normalisation in SQL, landing in the store, fetching the capped response
       rows);
   (b) ``pandas.read_csv`` + the same format detection on the DataFrame's columns.
   Prints both, the ratio b/a and the peak RSS of (a) against the file size.
3. Starts the real server (uvicorn, one worker) on a scratch home, uploads the file over HTTP,
   then measures p50 of ``POST /api/analytics/summary`` and ``/comparison?group_by=evaluation_name``
   over HTTP against the same aggregate SQL run directly in DuckDB on the stored table, and prints
   the ratios.

    cd backend && ../.venv/bin/python bench/upload_bench.py            # 1,000,000 rows
    cd backend && ../.venv/bin/python bench/upload_bench.py --rows 200000 --repeat 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import httpx

BACKEND = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BACKEND))


def generate_csv(path: Path, rows: int) -> None:
    """Long-format eval CSV (tree columns) written by DuckDB."""
    items = rows // 4
    con = duckdb.connect()
    con.execute(
        f"""
        COPY (
            SELECT 'item_' || lpad(CAST(i AS VARCHAR), 7, '0') AS dataset_id,
                   ['baseline_v1', 'prompt_tuned_v2', 'rag_v3'][1 + i % 3] AS evaluation_name,
                   'How do I reset my password? #' || i AS query,
                   'Open settings and follow the reset link. #' || i AS actual_output,
                   ['answer_quality', 'faithfulness', 'answer_relevance', 'completeness'][m + 1] AS metric_name,
                   round(((i * 7919 + m * 104729) % 1000) / 1000.0, 3) AS metric_score,
                   CASE WHEN m = 0 THEN 'metric' ELSE 'component' END AS metric_type,
                   CASE WHEN m = 0 THEN NULL ELSE 'answer_quality' END AS parent,
                   CASE WHEN m = 0 THEN 1.0 ELSE 0.3 END AS weight,
                   'Rationale ' || i || '/' || m AS explanation
            FROM range({items}) t(i), range(4) u(m)
            ORDER BY i, m
        ) TO '{path}' (HEADER, DELIMITER ',')
        """
    )
    con.close()


# ------------------------------------------------------------------------------ child processes
def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM; unlike ru_maxrss it is not inherited across fork+exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_ours(csv_path: str, home: str, memory_limit: str = "") -> dict[str, Any]:
    """(a) The service function, end to end, on a fresh DuckDB file."""
    from app.config import Settings
    from app.services import csv_ingest, data_processor
    from app.services.duckdb_store import DuckDBStore

    settings = Settings(_env_file=None, axis_home=Path(home), axis_custom_dir=Path(home) / "custom")  # type: ignore[call-arg]

    class FileUpload:
        def __init__(self, path: str) -> None:
            self.filename = Path(path).name
            self._fh = open(path, "rb")  # noqa: SIM115

        async def read(self, size: int = -1) -> bytes:
            return await asyncio.to_thread(self._fh.read, size)

    async def run() -> dict[str, Any]:
        cfg = settings.duckdb
        store = DuckDBStore(
            settings.duckdb_path,
            query_concurrency=cfg.query_concurrency,
            memory_limit=memory_limit or cfg.memory_limit,
            threads=cfg.threads,
            ingest_threads=cfg.ingest_threads,
        )
        await store.open()
        # Warm-up: a running server has written to its store before; the first write to a fresh
        # DuckDB file costs ~1 s of one-off setup that is not part of an upload.
        warm = Path(home) / "warm.csv"
        warm.write_text("metric_name,metric_score\nacc,0.5\n")
        await csv_ingest.ingest_csv_file(
            store, warm, kind="eval", source="warm-up", transform=data_processor.eval_csv_transform
        )
        t0 = time.perf_counter()
        ingested = await csv_ingest.ingest_csv_upload(
            store,
            FileUpload(csv_path),
            kind="eval",
            max_bytes=settings.max_upload_mb * 1024 * 1024,
            spool_dir=settings.data_dir / "spool",
            transform=data_processor.eval_csv_transform,
        )
        seconds = time.perf_counter() - t0
        ingest_rss = peak_rss_mb()
        t1 = time.perf_counter()
        res = await data_processor.load_result(
            store, ingested.dataset, ingested.transform, settings.upload_response_row_cap
        )
        response_seconds = time.perf_counter() - t1
        await store.close()
        return {
            "seconds": seconds,
            "response_seconds": response_seconds,
            "ingest_rss_mb": ingest_rss,
            "rows": res.row_count,
            "format": res.format,
            "data_rows": min(res.row_count, settings.upload_response_row_cap),
        }

    out = asyncio.run(run())
    out["maxrss_mb"] = peak_rss_mb()
    return out


def child_pandas(csv_path: str) -> dict[str, Any]:
    """(b) pandas.read_csv + the same detection on the DataFrame."""
    import pandas as pd

    from app.services.data_processor import detect_data_format

    t0 = time.perf_counter()
    df = pd.read_csv(csv_path)
    fmt = detect_data_format(df.columns)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rows": len(df), "format": fmt, "maxrss_mb": peak_rss_mb()}


def baseline_rss() -> dict[str, Any]:
    """RSS of a child that only imports what (a) imports (interpreter + libraries)."""
    import app.services.data_processor  # noqa: F401

    return {"maxrss_mb": peak_rss_mb()}


def run_child(kind: str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, *args], capture_output=True, text=True, check=True, cwd=BACKEND
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------------------ HTTP analytics
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def p50(samples: list[float]) -> float:
    return statistics.median(samples)


def http_analytics(csv_path: Path, home: Path, repeat: int) -> dict[str, Any]:
    """Serve the app with uvicorn (one worker, in a thread of this process), upload over HTTP, then
    time each analytics request and the same aggregate SQL on the same DuckDB database, interleaved
    so both see the same machine load."""
    import threading

    import uvicorn

    from app.config import Settings
    from app.config.constants import Thresholds
    from app.main import create_app
    from app.services.eval_analytics import METRIC, VAL, Relation, extra_alias, values_sql

    settings = Settings(_env_file=None, axis_home=home, axis_custom_dir=home / "custom")  # type: ignore[call-arg]
    app = create_app(settings)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", workers=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    out: dict[str, Any] = {}
    try:
        while not server.started:
            time.sleep(0.05)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            t0 = time.perf_counter()
            with csv_path.open("rb") as fh:
                r = client.post("/api/data/upload", files={"file": (csv_path.name, fh, "text/csv")})
            out["http_upload_s"] = time.perf_counter() - t0
            r.raise_for_status()
            table = "ds_" + r.json()["dataset_id"]
            cur = app.state.store._connection().cursor()
            types = {row[0]: row[1] for row in cur.execute(f'DESCRIBE "{table}"').fetchall()}
            rel = Relation(name=table, types=types, long=True)
            summary_body = client.post("/api/analytics/summary").json()
            metrics = [m["metric_name"] for m in summary_body["summary"]]
            vals, params = values_sql(rel, metrics)
            cvals, cparams = values_sql(rel, metrics, extra=["evaluation_name"])
            m, v, g = METRIC, VAL, extra_alias(0)
            cases = {
                "summary": (
                    "/api/analytics/summary",
                    {},
                    f"SELECT {m}, avg({v}), coalesce(stddev_samp({v}), 0), min({v}), max({v}), count({v}), "
                    f"avg(CASE WHEN {v} >= ? THEN 1.0 ELSE 0.0 END) FILTER (WHERE {v} IS NOT NULL) "
                    f"FROM ({vals}) GROUP BY {m} HAVING count({v}) > 0",
                    [Thresholds.PASSING_RATE, *params],
                ),
                "comparison": (
                    "/api/analytics/comparison",
                    {"group_by": "evaluation_name"},
                    f"SELECT CAST({g} AS VARCHAR) AS grp, {m}, avg({v}), coalesce(stddev_samp({v}), 0), "
                    f"count({v}) FROM ({cvals}) WHERE {g} IS NOT NULL GROUP BY grp, {m} ORDER BY grp, {m}",
                    cparams,
                ),
            }
            for name, (path, qp, sql, sql_params) in cases.items():
                client.post(path, params=qp).raise_for_status()  # warm-up
                cur.execute(sql, sql_params).fetchall()
                http_s, raw_s = [], []
                for _ in range(repeat):
                    t0 = time.perf_counter()
                    client.post(path, params=qp).raise_for_status()
                    http_s.append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    cur.execute(sql, sql_params).fetchall()
                    raw_s.append(time.perf_counter() - t0)
                out[f"{name}_http_p50_ms"] = p50(http_s) * 1000
                out[f"{name}_duckdb_p50_ms"] = p50(raw_s) * 1000
            cur.close()
    finally:
        server.should_exit = True
        thread.join(timeout=60)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--child", nargs="+")
    parser.add_argument("--memory-limit", default="", help="DuckDB memory_limit for (a), e.g. 256MB")
    args = parser.parse_args()
    if args.child:
        kind, *rest = args.child
        result = {"ours": lambda: child_ours(*rest), "pandas": lambda: child_pandas(*rest), "baseline": baseline_rss}[
            kind
        ]()
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory(prefix="axis_upload_bench_") as tmp:
        tmpdir = Path(tmp)
        csv_path = tmpdir / "eval_long.csv"
        t0 = time.perf_counter()
        generate_csv(csv_path, args.rows)
        size_mb = csv_path.stat().st_size / 1024 / 1024
        print(f"generated {args.rows:,} long-format rows, {size_mb:.1f} MB in {time.perf_counter() - t0:.1f}s")

        base = run_child("baseline")
        ours = run_child("ours", str(csv_path), str(tmpdir / "home_a"), args.memory_limit)
        pand = run_child("pandas", str(csv_path))
        print(
            f"(a) ours   spool+parse+detect+normalise+land: {ours['seconds']:.2f}s  rows={ours['rows']:,} "
            f"format={ours['format']}  peak RSS after landing {ours['ingest_rss_mb']:.0f} MB"
        )
        print(
            f"    + fetching the {ours['data_rows']:,} capped response rows (upload_eval_csv total): "
            f"{ours['response_seconds']:.2f}s -> {ours['seconds'] + ours['response_seconds']:.2f}s, "
            f"peak RSS {ours['maxrss_mb']:.0f} MB"
        )
        print(
            f"(b) pandas read_csv+detect: {pand['seconds']:.2f}s  rows={pand['rows']:,} format={pand['format']}  "
            f"peak RSS {pand['maxrss_mb']:.0f} MB"
        )
        print(f"    speed-up b/a = {pand['seconds'] / ours['seconds']:.2f}x (target >= 3x)")
        added = ours["maxrss_mb"] - base["maxrss_mb"]
        print(
            f"    our peak RSS / file size = {ours['maxrss_mb'] / size_mb:.2f} (target <= 2); "
            f"interpreter+imports alone {base['maxrss_mb']:.0f} MB, so the upload itself adds "
            f"{added:.0f} MB = {added / size_mb:.2f} x file size"
        )

        res = http_analytics(csv_path, tmpdir / "home_http", args.repeat)
        print(f"HTTP upload of the same file through uvicorn: {res['http_upload_s']:.2f}s")
        for name in ("summary", "comparison"):
            h, d = res[f"{name}_http_p50_ms"], res[f"{name}_duckdb_p50_ms"]
            print(
                f"/api/analytics/{name}: HTTP p50 {h:.1f} ms vs raw DuckDB {d:.1f} ms -> ratio {h / d:.2f} "
                "(target <= 1.5)"
            )


if __name__ == "__main__":
    main()
