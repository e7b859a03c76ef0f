"""Monitoring analytics benchmark (issue 5).

1. Generates a long-format monitoring dataset (default 1,000,000 metric rows = 200k records ×
   5 metrics: 3 SCORE, 1 CLASSIFICATION, 1 ANALYSIS) with DuckDB and writes it as CSV.
2. Starts the real server (uvicorn, one worker) on a scratch home and uploads the CSV through
   ``POST /api/monitoring/upload`` so it lands in the store as the latest monitoring dataset.
3. For each of the nine ``/api/monitoring/analytics`` endpoints: p50 of 20 HTTP calls made by
   4 concurrent clients, against the same aggregate run as raw SQL (20 runs, 4 concurrent) in
   DuckDB over the same rows (a separate DuckDB file loaded from the same CSV) and in PostgreSQL
   (a scratch schema on the local server, dropped afterwards). Prints the ratios.

4. Human signals: builds the cases table + metric schema for ``--hitl-cases`` cases (default
   100,000 = 1.3 M signal rows: the bundled hitl sample replicated with fresh case ids) with
   ``human_signals_build.build_signals_tables_sync`` and prints the time.

Targets: HTTP p50 ≤ 1.5 × raw DuckDB, and ≥ 10 × faster than PostgreSQL.

    cd backend && ../.venv/bin/python bench/monitoring_bench.py
    cd backend && ../.venv/bin/python bench/monitoring_bench.py --records 20000 --calls 8
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psycopg

BACKEND = Path(__file__).resolve().parents[1]
PG_DSN = os.environ.get("AXIS_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
METRICS = [
    ("relevance", "SCORE"),
    ("faithfulness", "SCORE"),
    ("helpfulness", "SCORE"),
    ("sentiment", "CLASSIFICATION"),
    ("conversation_analysis", "ANALYSIS"),
]


def generate(con: duckdb.DuckDBPyConnection, records: int) -> None:
    """Deterministic long-format rows in table ``mon``."""
    values = ", ".join(f"({j}, '{m}', '{c}')" for j, (m, c) in enumerate(METRICS))
    con.execute(
        f"""
        CREATE OR REPLACE TABLE mon AS
        WITH rec AS (
            SELECT i, 'rec-' || lpad(CAST(i AS VARCHAR), 7, '0') AS dataset_id,
                   TIMESTAMP '2025-01-06 00:00:00' + to_seconds((i * 37) % (90 * 86400)) AS ts,
                   ['Atlas', 'Nova', 'Orion', 'Vega'][1 + i % 4] AS source_name,
                   ['prod', 'staging'][1 + (i // 7) % 2] AS environment,
                   ['email_triage', 'chat', 'voice'][1 + i % 3] AS source_component,
                   ['agent', 'workflow'][1 + i % 2] AS source_type,
                   ['gpt-4o', 'claude', 'llama'][1 + (i // 3) % 3] AS model_name,
                   CAST(100 + (i * 7919) % 900 AS DOUBLE) AS latency
            FROM range({records}) t(i)
        ), m AS (SELECT * FROM (VALUES {values}) v(j, metric_name, metric_category))
        SELECT dataset_id, ts AS timestamp, source_name, environment, source_component, source_type, model_name,
               'question ' || i AS query, 'answer ' || i AS actual_output, latency, metric_name, metric_category,
               CASE WHEN metric_category = 'SCORE' THEN round(((i * 104729 + j * 7919) % 1000) / 1000.0, 3) END
                   AS metric_score,
               CASE metric_category WHEN 'CLASSIFICATION'
                    THEN ['positive', 'neutral', 'negative', 'frustrated'][1 + (i * 31 + j) % 4]
                    WHEN 'ANALYSIS' THEN 'analysis of record ' || i ELSE 'ok' END AS explanation,
               CASE WHEN metric_category = 'ANALYSIS' THEN '{{"topic": "t' || (i % 10) || '"}}' END AS signals
        FROM rec, m ORDER BY dataset_id, j
        """
    )


# Raw SQL per endpoint (the aggregate the endpoint answers), DuckDB and PostgreSQL dialects.
SCORE = "(upper(metric_category) = 'SCORE' OR metric_category IS NULL)"
DUCK: dict[str, str | tuple[str, ...]] = {
    "summary": f"""WITH s AS (SELECT metric_score AS s, latency, dataset_id FROM mon
                   WHERE {SCORE} AND metric_score IS NOT NULL)
        SELECT (SELECT count(*) FROM s), (SELECT avg(s) FROM s), (SELECT 100.0 * count(*) FILTER (WHERE s >= 0.5)
                / count(*) FROM s),
               (SELECT quantile_cont(l, [0.5, 0.95, 0.99]) FROM (SELECT max(latency) l FROM s GROUP BY dataset_id))""",
    "trends": f"""SELECT date_trunc('day', timestamp) b, metric_name, avg(metric_score),
               quantile_cont(metric_score, [0.5, 0.95, 0.99]), count(metric_score) FROM mon
        WHERE {SCORE} AND metric_score IS NOT NULL GROUP BY b, metric_name ORDER BY b, metric_name""",
    "metric-breakdown": f"""SELECT metric_name, source_name, 100.0 * count(*) FILTER (WHERE metric_score >= 0.5)
               / count(*), avg(metric_score), count(*) FROM mon WHERE {SCORE} AND metric_score IS NOT NULL
        GROUP BY GROUPING SETS ((metric_name), (metric_name, source_name))""",
    "latency-distribution": (
        """WITH r AS (SELECT max(latency) v FROM mon GROUP BY dataset_id),
        b AS (SELECT min(v) lo, max(v) hi, quantile_cont(v, [0.5, 0.95, 0.99]) q FROM r)
        SELECT least(greatest(CAST(floor((v - lo) / (hi - lo) * 20) AS BIGINT) + 1, 1), 20) k, count(*),
               any_value(q) FROM r, b GROUP BY k""",
        """WITH r AS (SELECT environment g, max(latency) v FROM mon GROUP BY environment, dataset_id),
        gp AS (SELECT g, quantile_cont(v, [0.5, 0.95, 0.99]) q FROM r GROUP BY g)
        SELECT g, least(greatest(CAST(floor((v - 100) / (999 - 100) * 20) AS BIGINT) + 1, 1), 20) k, count(*),
               any_value(gp.q) FROM r JOIN gp USING (g) GROUP BY g, k""",
    ),
    "class-distribution": f"""SELECT g, n, a, sd, s[1], s[n], (s[(n + 1) // 2] + s[(n + 2) // 2]) / 2.0,
               CASE WHEN n <= 2000 THEN s
                    ELSE list_select(s, list_concat(range(1, n, CAST(ceil((n - 1) / 1999) AS BIGINT)), [n])) END
        FROM (SELECT source_name g, count(metric_score) n, avg(metric_score) a, stddev_samp(metric_score) sd,
                     list(metric_score ORDER BY metric_score) s
              FROM mon WHERE {SCORE} AND metric_name = 'relevance' AND metric_score IS NOT NULL GROUP BY g)""",
    "correlation": f"""SELECT corr(a, b), corr(a, c), corr(b, c) FROM (
        SELECT avg(metric_score) FILTER (WHERE metric_name = 'relevance') a,
               avg(metric_score) FILTER (WHERE metric_name = 'faithfulness') b,
               avg(metric_score) FILTER (WHERE metric_name = 'helpfulness') c
        FROM mon WHERE {SCORE} GROUP BY dataset_id)""",
    "classification-breakdown": """SELECT metric_name, explanation, count(*) n FROM mon
        WHERE upper(metric_category) = 'CLASSIFICATION' AND explanation IS NOT NULL
        GROUP BY metric_name, explanation ORDER BY metric_name, n DESC""",
    "classification-trends": """SELECT date_trunc('day', timestamp) b, explanation, count(*) FROM mon
        WHERE upper(metric_category) = 'CLASSIFICATION' AND metric_name = 'sentiment' GROUP BY b, explanation
        ORDER BY b""",
    "analysis-insights": (
        """SELECT dataset_id, timestamp, metric_name, query, actual_output, signals, explanation,
               environment, source_name, source_component FROM mon
        WHERE upper(metric_category) = 'ANALYSIS' ORDER BY timestamp DESC NULLS LAST, dataset_id LIMIT 20""",
        """SELECT count(*), list(DISTINCT metric_name ORDER BY metric_name) FROM mon
        WHERE upper(metric_category) = 'ANALYSIS'""",
    ),
}
PG: dict[str, str | tuple[str, ...]] = {
    "summary": f"""WITH s AS (SELECT metric_score AS s, latency, dataset_id FROM mon
                   WHERE {SCORE} AND metric_score IS NOT NULL)
        SELECT (SELECT count(*) FROM s), (SELECT avg(s) FROM s), (SELECT 100.0 * count(*) FILTER (WHERE s >= 0.5)
                / count(*) FROM s),
               (SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY l)
                FROM (SELECT max(latency) l FROM s GROUP BY dataset_id) x)""",
    "trends": f"""SELECT date_trunc('day', timestamp) b, metric_name, avg(metric_score),
               percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY metric_score), count(metric_score)
        FROM mon WHERE {SCORE} AND metric_score IS NOT NULL GROUP BY b, metric_name ORDER BY b, metric_name""",
    "metric-breakdown": DUCK["metric-breakdown"],
    "latency-distribution": (
        """WITH r AS (SELECT max(latency) v FROM mon GROUP BY dataset_id),
        b AS (SELECT min(v) lo, max(v) hi, percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY v) q FROM r)
        SELECT least(greatest(CAST(floor((v - lo) / (hi - lo) * 20) AS BIGINT) + 1, 1), 20) k, count(*),
               min(q) FROM r, b GROUP BY k""",
        """WITH r AS (SELECT environment g, max(latency) v FROM mon GROUP BY environment, dataset_id),
        gp AS (SELECT g, percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY v) q FROM r GROUP BY g)
        SELECT g, least(greatest(CAST(floor((v - 100) / (999 - 100) * 20) AS BIGINT) + 1, 1), 20) k, count(*),
               min(gp.q) FROM r JOIN gp USING (g) GROUP BY g, k""",
    ),
    "class-distribution": f"""SELECT g, n, a, sd, s[1], s[n], (s[(n + 1) / 2] + s[(n + 2) / 2]) / 2.0,
               CASE WHEN n <= 2000 THEN s ELSE (SELECT array_agg(s[i] ORDER BY i) FROM (
                    SELECT generate_series(1, n - 1, CAST(ceil((n - 1) / 1999.0) AS int)) i UNION ALL SELECT n) x)
               END
        FROM (SELECT source_name g, count(metric_score) n, avg(metric_score) a, stddev_samp(metric_score) sd,
                     array_agg(metric_score ORDER BY metric_score) s
              FROM mon WHERE {SCORE} AND metric_name = 'relevance' AND metric_score IS NOT NULL GROUP BY g) q""",
    "correlation": f"""SELECT corr(a, b), corr(a, c), corr(b, c) FROM (
        SELECT avg(metric_score) FILTER (WHERE metric_name = 'relevance') a,
               avg(metric_score) FILTER (WHERE metric_name = 'faithfulness') b,
               avg(metric_score) FILTER (WHERE metric_name = 'helpfulness') c
        FROM mon WHERE {SCORE} GROUP BY dataset_id) x""",
    "classification-breakdown": DUCK["classification-breakdown"],
    "classification-trends": DUCK["classification-trends"],
    "analysis-insights": (
        DUCK["analysis-insights"][0],
        """SELECT count(*), array_agg(DISTINCT metric_name ORDER BY metric_name) FROM mon
        WHERE upper(metric_category) = 'ANALYSIS'""",
    ),
}
HTTP: dict[str, dict[str, Any]] = {
    "summary": {"metric_category": "SCORE"},
    "trends": {"granularity": "daily"},
    "metric-breakdown": {"group_by": "source_name"},
    "latency-distribution": {"bins": 20, "group_by": "environment"},
    "class-distribution": {"metric": "relevance", "group_by": "source_name"},
    "correlation": {"metrics": "relevance,faithfulness,helpfulness"},
    "classification-breakdown": {},
    "classification-trends": {"metric_name": "sentiment"},
    "analysis-insights": {"limit": 20},
}


def p50(fn_factory: Callable[[], Callable[[], Any]], calls: int, workers: int) -> float:
    """p50 latency (ms) of ``calls`` calls spread over ``workers`` threads (one resource per thread)."""
    per_worker = [calls // workers + (1 if i < calls % workers else 0) for i in range(workers)]

    def run(n: int) -> list[float]:
        fn = fn_factory()
        fn()  # warm-up (connection, caches)
        out = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            out.append((time.perf_counter() - t) * 1000)
        return out

    with ThreadPoolExecutor(workers) as pool:
        samples = [x for chunk in pool.map(run, per_worker) for x in chunk]
    return statistics.median(samples)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(home: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "AXIS_HOME": str(home),
        "AXIS_CUSTOM_DIR": str(home / "custom"),
        "MAX_UPLOAD_MB": "4000",
        "UPLOAD_RESPONSE_ROW_CAP": "10",
        "DEBUG": "false",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:create_app",
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--workers",
            "1",
        ],
        cwd=BACKEND,
        env=env,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start")


def load_postgres(csv_path: Path, schema: str) -> None:
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        conn.execute(f'SET search_path TO "{schema}"')
        conn.execute(
            """CREATE TABLE mon (dataset_id text, timestamp timestamp, source_name text, environment text,
               source_component text, source_type text, model_name text, query text, actual_output text,
               latency double precision, metric_name text, metric_category text, metric_score double precision,
               explanation text, signals text)"""
        )
        with (
            conn.cursor() as cur,
            cur.copy("COPY mon FROM STDIN WITH (FORMAT csv, HEADER true)") as cp,
            csv_path.open("rb") as fh,
        ):
            while chunk := fh.read(1 << 20):
                cp.write(chunk)
        conn.execute("ANALYZE mon")


def bench_hitl(cases: int, workdir: Path) -> None:
    """Time the SQL case aggregation for ``cases`` cases (13 metric rows each)."""
    sys.path.insert(0, str(BACKEND))
    from app.services.human_signals_build import build_signals_tables_sync
    from app.services.human_signals_service import cases_page_sync

    con = duckdb.connect(str(workdir / "hitl.duckdb"))
    sample = BACKEND / "sample_data" / "hitl_sample.csv"
    con.execute(f"CREATE TABLE s AS SELECT * FROM read_csv('{sample}')")
    reps = max(1, cases // 3)
    con.execute(
        f"CREATE TABLE raw AS SELECT * REPLACE (dataset_id || '-' || i AS dataset_id) FROM s, range({reps}) r(i)"
    )
    rows = con.execute("SELECT count(*) FROM raw").fetchone()[0]  # type: ignore[index]
    t = time.perf_counter()
    built = build_signals_tables_sync(con.cursor(), "raw", "cases")
    print(
        f"\nhuman signals: {built.case_count:,} cases from {rows:,} rows "
        f"({len(built.metric_schema['metrics'])} metrics, {len(built.columns)} columns) "
        f"built in {time.perf_counter() - t:.1f}s"
    )
    # The case list an upload response carries (UPLOAD_RESPONSE_ROW_CAP, 50 k by default), as JSON.
    t = time.perf_counter()
    _, page = cases_page_sync(con.cursor(), "cases", 50_000)
    print(
        f"  first {page.size:,} cases rendered as JSON by DuckDB: {sum(map(len, page.parts)) / 2**20:.0f} MB "
        f"in {time.perf_counter() - t:.1f}s"
    )
    con.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=200_000, help="records (× 5 metric rows each)")
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--hitl-cases", type=int, default=100_000, help="human-signals cases to build (0 = skip)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="axis-monbench-") as tmp:
        tmpdir = Path(tmp)
        csv_path = tmpdir / "monitoring_long.csv"
        raw = duckdb.connect(str(tmpdir / "raw.duckdb"))
        t = time.perf_counter()
        generate(raw, args.records)
        raw.execute(f"COPY mon TO '{csv_path}' (HEADER, DELIMITER ',')")
        rows = raw.execute("SELECT count(*) FROM mon").fetchone()[0]  # type: ignore[index]
        # The raw DuckDB side reads the same CSV the server ingests.
        raw.execute(f"CREATE OR REPLACE TABLE mon AS SELECT * FROM read_csv('{csv_path}')")
        print(
            f"generated {rows:,} metric rows ({csv_path.stat().st_size / 1e6:.0f} MB CSV) "
            f"in {time.perf_counter() - t:.1f}s"
        )

        home = tmpdir / "home"
        (home / "custom" / "config").mkdir(parents=True)
        port = free_port()
        server = start_server(home, port)
        schema = f"axis_monbench_{uuid.uuid4().hex[:8]}"
        try:
            base = f"http://127.0.0.1:{port}/api/monitoring"
            t = time.perf_counter()
            with csv_path.open("rb") as fh:
                res = httpx.post(f"{base}/upload", files={"file": ("monitoring_long.csv", fh, "text/csv")}, timeout=600)
            res.raise_for_status()
            print(f"upload over HTTP: {res.json()['row_count']:,} rows in {time.perf_counter() - t:.1f}s")
            if not args.skip_pg:
                t = time.perf_counter()
                load_postgres(csv_path, schema)
                print(f"PostgreSQL load (COPY + ANALYZE): {time.perf_counter() - t:.1f}s")

            def http_fn(name: str) -> Callable[[], Callable[[], Any]]:
                def factory() -> Callable[[], Any]:
                    client = httpx.Client(base_url=f"{base}/analytics", timeout=120)

                    def call() -> None:
                        r = client.get(f"/{name}", params=HTTP[name])
                        r.raise_for_status()

                    return call

                return factory

            def duck_fn(name: str) -> Callable[[], Callable[[], Any]]:
                def factory() -> Callable[[], Any]:
                    cur = raw.cursor()
                    sqls = DUCK[name] if isinstance(DUCK[name], tuple) else (DUCK[name],)
                    return lambda: [cur.execute(q).fetchall() for q in sqls]

                return factory

            def pg_fn(name: str) -> Callable[[], Callable[[], Any]]:
                def factory() -> Callable[[], Any]:
                    conn = psycopg.connect(PG_DSN, autocommit=True)
                    conn.execute(f'SET search_path TO "{schema}"')
                    sqls = PG[name] if isinstance(PG[name], tuple) else (PG[name],)
                    return lambda: [conn.execute(q).fetchall() for q in sqls]

                return factory

            print(f"\np50 of {args.calls} calls, {args.concurrency} concurrent ({rows:,} rows)")
            print(f"{'endpoint':26} {'HTTP ms':>9} {'DuckDB ms':>10} {'PG ms':>9} {'HTTP/Duck':>10} {'PG/HTTP':>8}")
            for name in HTTP:
                h = p50(http_fn(name), args.calls, args.concurrency)
                d = p50(duck_fn(name), args.calls, args.concurrency)
                pgv = p50(pg_fn(name), args.calls, args.concurrency) if not args.skip_pg else float("nan")
                print(f"{name:26} {h:9.1f} {d:10.1f} {pgv:9.1f} {h / d:10.2f} {pgv / h:8.1f}", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=30)
            raw.close()
            if not args.skip_pg:
                with psycopg.connect(PG_DSN, autocommit=True) as conn:
                    conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        if args.hitl_cases > 0:
            bench_hitl(args.hitl_cases, tmpdir)


if __name__ == "__main__":
    main()
