"""``/api/database`` over HTTP with the real app lifespan, PostgreSQL server and DuckDB store."""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.config import Settings
from app.services.duckdb_store import DuckDBStore
from tests.conftest import PgSchema
from tests.robustness import strict_json

PASSWORD = "Sup3r-" + uuid.uuid4().hex


def body(pg: PgSchema, **over: Any) -> dict[str, Any]:
    values = {"host": pg.host, "port": pg.port, "database": pg.database, "username": pg.user,
              "password": PASSWORD, "ssl_mode": "disable"}  # fmt: skip
    values.update(over)
    return values


def backends(pg: PgSchema, app_name: str) -> int:
    rows = pg.fetch("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (app_name,))
    return int(rows[0][0])


async def wait_backends(pg: PgSchema, app_name: str, expected: int) -> int:
    count = backends(pg, app_name)
    for _ in range(100):
        if count == expected:
            break
        await asyncio.sleep(0.05)
        count = backends(pg, app_name)
    return count


async def test_handle_lifecycle(pg: PgSchema, make_settings: Callable[..., Settings], make_client: Any) -> None:
    pg.execute("CREATE TABLE t (id int, name text); INSERT INTO t VALUES (1, 'a'), (2, 'b'); ANALYZE t")
    app_name = f"axis-r-{uuid.uuid4().hex[:8]}"
    settings = make_settings(db_application_name=app_name)
    async with make_client(settings) as client:
        r = await client.post("/api/database/connect", json=body(pg))
        assert r.status_code == 200, r.text
        payload = r.json()
        assert set(payload) == {"success", "handle", "message", "version"}
        assert payload["message"] == "Connection successful" and payload["version"].startswith("PostgreSQL")
        handle = payload["handle"]
        r = await client.get(f"/api/database/{handle}/tables")
        mine = [t for t in r.json()["tables"] if t["schema_name"] == pg.schema]
        assert mine == [{"schema_name": pg.schema, "name": "t", "row_count_estimate": 2}]
        r = await client.get(f"/api/database/{handle}/schema", params={"schema_name": pg.schema, "table": "t"})
        assert r.json()["columns"] == [
            {"name": "id", "data_type": "integer", "nullable": True},
            {"name": "name", "data_type": "text", "nullable": True},
        ]
        assert (await client.get("/api/database/stats")).json() == {
            "success": True, "active_handles": 1, "max_handles": 100,
        }  # fmt: skip
        assert await wait_backends(pg, app_name, 1) == 1
        r = await client.delete(f"/api/database/{handle}")
        assert r.json() == {"success": True, "message": "Connection closed"}
        r = await client.delete(f"/api/database/{handle}")
        assert r.status_code == 200 and r.json() == {"success": False, "message": "Handle not found or already expired"}
        r = await client.get(f"/api/database/{handle}/tables")
        assert r.status_code == 401
        assert r.json() == {"detail": "Connection handle has expired or is invalid. Please reconnect."}
        assert await wait_backends(pg, app_name, 0) == 0
        # A handle left open is closed with its pool at shutdown.
        r = await client.post("/api/database/connect", json=body(pg))
        assert await wait_backends(pg, app_name, 1) == 1
    assert await wait_backends(pg, app_name, 0) == 0


async def test_expiry_by_sweeper(pg: PgSchema, make_settings: Callable[..., Settings], make_client: Any) -> None:
    app_name = f"axis-r-{uuid.uuid4().hex[:8]}"
    settings = make_settings(db_application_name=app_name, db_handle_ttl_seconds=1, db_handle_sweep_seconds=0.1)
    pg.execute("CREATE TABLE sweep_probe (x int)")
    async with make_client(settings) as client:
        handle = (await client.post("/api/database/connect", json=body(pg))).json()["handle"]
        tables = await client.get(f"/api/database/{handle}/tables")
        mine = [t["name"] for t in tables.json()["tables"] if t["schema_name"] == pg.schema]
        assert tables.status_code == 200 and mine == ["sweep_probe"]
        assert await wait_backends(pg, app_name, 1) == 1
        await asyncio.sleep(1.1)
        # No request in between: the lifespan's sweeper closes the pool by itself.
        assert await wait_backends(pg, app_name, 0) == 0
        r = await client.post(f"/api/database/{handle}/query", json={"query": "SELECT 1"})
        assert r.status_code == 401
        assert "expired" in r.json()["detail"]


async def test_101st_handle_is_429(pg: PgSchema, settings: Settings, make_client: Any) -> None:
    async with make_client(settings) as client:
        handles = []
        for _ in range(100):
            r = await client.post("/api/database/connect", json=body(pg))
            assert r.status_code == 200, r.text
            handles.append(r.json()["handle"])
        assert len(set(handles)) == 100
        r = await client.post("/api/database/connect", json=body(pg))
        assert r.status_code == 429
        assert "Too many open database connections" in r.json()["detail"]
        assert (await client.get("/api/database/stats")).json()["active_handles"] == 100
        await client.delete(f"/api/database/{handles[0]}")
        again = await client.post("/api/database/connect", json=body(pg))
        assert again.status_code == 200 and again.json()["handle"] not in handles[1:]
        assert (await client.get("/api/database/stats")).json()["active_handles"] == 100


@pytest.mark.parametrize(
    ("over", "status"),
    [
        ({}, 200),  # the local server trusts loopback, so any password connects
        ({"host": "127.0.0.1", "port": 1}, 400),  # closed loopback port
        ({"username": "no_such_role_" + uuid.uuid4().hex[:6]}, 400),
        ({"database": "no_such_db_" + uuid.uuid4().hex[:6]}, 400),
        ({"ssl_mode": "bogus"}, 422),
        ({"host": ""}, 422),
        ({"host": "   "}, 422),
        ({"port": 0}, 422),
        ({"port": 70000}, 422),
        ({"host": None}, 422),
    ],
)
async def test_password_never_in_responses(pg: PgSchema, client: Any, over: dict[str, Any], status: int) -> None:
    payload = body(pg, **over)
    payload = {k: v for k, v in payload.items() if v is not None}
    r = await client.post("/api/database/connect", json=payload)
    assert r.status_code == status, r.text
    assert PASSWORD not in r.text
    if status == 400:
        assert any(w in r.json()["detail"] for w in ("Could not connect", "Authentication failed", "does not exist"))
    r = await client.post("/api/database/connect", content=b'{"password": "' + PASSWORD.encode() + b'", bad')
    assert r.status_code == 422 and PASSWORD not in r.text


async def test_defaults_without_password(
    make_settings: Callable[..., Settings], tmp_path: Path, make_client: Any
) -> None:
    (tmp_path / "custom" / "config" / "human_signals_db.yaml").write_text(
        f"human_signals_db:\n  host: db.internal\n  database: hs\n  username: reader\n  password: {PASSWORD}\n"
        "  table: signals\n  ssl_mode: require\n",
        encoding="utf-8",
    )
    async with make_client(make_settings()) as client:
        r = await client.get("/api/database/defaults", params={"store": "human_signals"})
        d = r.json()
        assert r.status_code == 200 and PASSWORD not in r.text
        assert (d["host"], d["database"], d["username"], d["has_password"], d["ssl_mode"], d["table"], d["url"]) == (
            "db.internal", "hs", "reader", True, "require", "signals", None,
        )  # fmt: skip
        assert (await client.get("/api/database/defaults")).json()["has_defaults"] is False
        assert (await client.get("/api/database/defaults", params={"store": "kpi"})).status_code == 400


async def test_ssl_modes_over_http(pg: PgSchema, client: Any) -> None:
    with psycopg.connect(pg.dsn) as conn:
        row = conn.execute("SHOW ssl").fetchone()
    tls = bool(row and row[0] == "on")
    for mode in ("disable", "prefer"):
        r = await client.post("/api/database/connect", json=body(pg, ssl_mode=mode))
        assert r.status_code == 200, r.text
    for mode in ("require", "verify-ca", "verify-full"):
        r = await client.post("/api/database/connect", json=body(pg, ssl_mode=mode))
        if tls:
            assert r.status_code in (200, 400)
        else:
            assert r.status_code == 400
            assert "does not accept TLS" in r.json()["detail"]
    # The Ref default ssl_mode is "require".
    defaults = {k: v for k, v in body(pg).items() if k != "ssl_mode"}
    r = await client.post("/api/database/connect", json=defaults)
    assert r.status_code == (200 if tls else 400)


async def test_query_endpoint(pg: PgSchema, make_settings: Callable[..., Settings], make_client: Any) -> None:
    pg.execute("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 20) g")
    settings = make_settings(db_query_timeout_seconds=1)
    async with make_client(settings) as client:
        handle = (await client.post("/api/database/connect", json=body(pg))).json()["handle"]
        url = f"/api/database/{handle}/query"
        r = await client.post(url, json={"query": f'SELECT id FROM "{pg.schema}".t ORDER BY id LIMIT 5', "limit": 3})
        assert r.json() == {"success": True, "data": [{"id": 1}, {"id": 2}, {"id": 3}], "row_count": 3}
        r = await client.post(url, json={"query": f'SELECT id FROM "{pg.schema}".t ORDER BY id'})
        assert r.json()["row_count"] == 10  # default limit
        refused = (
            f'DELETE FROM "{pg.schema}".t',
            f'SELECT 1; DROP TABLE "{pg.schema}".t',
            "",
            "SELECT 1 FOR UPDATE",
            "SELECT 'a\x00'",  # was a 502 "lost the connection"
            "(" * 8000 + "SELECT 1" + ")" * 8000,  # was 9.6 s of a blocked event loop
        )
        for bad in refused:
            r = await client.post(url, json={"query": bad})
            assert r.status_code == 422, (bad, r.text)
            assert r.json()["detail"][0]["msg"]  # FastAPI's 422 list form
        r = await client.post(url, json={"query": "SELECT pg_sleep(10)"})
        assert r.status_code == 408
        assert (await client.post(url, json={"query": "SELECT 1", "limit": 101})).status_code == 422
        assert pg.fetch("SELECT count(*) FROM t") == [(20,)]


async def test_body_validation_limits(pg: PgSchema, client: Any) -> None:
    pg.execute("CREATE TABLE t (id int)")
    handle = (await client.post("/api/database/connect", json=body(pg))).json()["handle"]
    table = {"schema_name": pg.schema, "name": "t"}
    r = await client.post(f"/api/database/{handle}/preview", json={"table": table, "limit": 101})
    assert r.status_code == 422
    r = await client.post(
        f"/api/database/{handle}/distinct-values", json={"table": table, "column": "id", "limit": 1001}
    )
    assert r.status_code == 422
    r = await client.post(
        f"/api/database/{handle}/preview",
        json={
            "table": table,
            "mappings": [{"source": "nope", "target": "x"}, {"source": "id", "target": "y"}],
            "filters": [{"column": "nope2", "value": "1"}, {"column": "nope", "value": "2"}],
        },
    )
    assert r.status_code == 400 and r.json()["detail"] == f"Invalid columns for table '{pg.schema}.t': nope, nope2"
    injected = {"schema_name": pg.schema, "name": 't"; DROP'}
    r = await client.post(f"/api/database/{handle}/preview", json={"table": injected})
    assert r.status_code == 400
    r = await client.get(f"/api/database/{handle}/schema", params={"schema": pg.schema, "table": "missing"})
    assert r.status_code == 404
    r = await client.post(f"/api/database/{handle}/query-import", json={"handle": "other", "query": "SELECT 1"})
    assert r.status_code == 400 and "does not match" in r.json()["detail"]
    r = await client.post(
        f"/api/database/{handle}/import", json={"handle": handle, "table": table}, params={"store": "x"}
    )
    assert r.status_code == 422


# ------------------------------------------------------------------------------ 100k import
METRICS = ("accuracy", "relevance", "faithfulness", "toxicity")
N = 100_000


def expected_score(g: int) -> float:
    return ((g * 7919) % 1000) / 1000.0


async def test_import_100k_rows_exact_types_and_analytics(
    pg: PgSchema, make_client: Any, make_settings: Callable[..., Settings]
) -> None:
    wrapper = make_client(make_settings(upload_response_row_cap=2000))
    async with wrapper as client:
        await _import_100k(pg, client, wrapper.app.state.store)


async def _import_100k(pg: PgSchema, client: Any, store: DuckDBStore) -> None:
    pg.execute(
        f"""
        CREATE TABLE big AS SELECT
          'case_' || ((g - 1) % 25000) AS dataset_id,
          (ARRAY['accuracy', 'relevance', 'faithfulness', 'toxicity'])[(g - 1) / 25000 + 1] AS metric_name,
          ((g * 7919) % 1000) / 1000.0::float8 AS metric_score,
          g::int4 AS n,
          g::int8 * 3000000000 AS big_n,
          (g % 1000)::int2 AS small_n,
          (g % 3 = 0) AS flag,
          (g / 8.0)::numeric(12,3) AS amount,
          TIMESTAMPTZ '2024-01-01 00:00:00+00' + g * INTERVAL '1 minute' AS ts,
          DATE '2024-01-01' + (g % 365) AS day,
          jsonb_build_object('g', g) AS payload,
          md5(g::text)::uuid AS uid,
          CASE WHEN g % 10 = 0 THEN NULL ELSE 'note ' || g END AS note
        FROM generate_series(1, {N}) g
        """
    )
    handle = (await client.post("/api/database/connect", json=body(pg))).json()["handle"]
    r = await client.post(
        f"/api/database/{handle}/import",
        json={"handle": handle, "table": {"schema_name": pg.schema, "name": "big"}, "limit": N},
    )
    assert r.status_code == 200, r.text[:500]
    res = r.json()
    assert res["row_count"] == N and res["duplicates_removed"] == 0
    assert res["kind"] == "eval" and res["format"] == "flat_format"
    assert len(res["preview"]) == 10 and res["data_truncated"] is True and len(res["data"]) == 2000
    assert res["data"][:10] == res["preview"]
    dataset_id = res["dataset_id"]

    # The registry entry and the exact DuckDB types.
    datasets = (await client.get("/api/store/datasets")).json()["datasets"]
    entry = next(d for d in datasets if d["dataset_id"] == dataset_id)
    assert entry["row_count"] == N and entry["source"] == "database" and entry["kind"] == "eval"
    info = await store.get_dataset(dataset_id)
    types = {c["name"]: c["type"] for c in info.columns}
    assert {k: types[k] for k in (
        "dataset_id", "metric_name", "metric_score", "n", "big_n", "small_n", "flag", "amount", "ts", "day",
        "payload", "uid", "note")} == {
        "dataset_id": "VARCHAR", "metric_name": "VARCHAR", "metric_score": "DOUBLE", "n": "INTEGER",
        "big_n": "BIGINT", "small_n": "SMALLINT", "flag": "BOOLEAN", "amount": "DECIMAL(12,3)", "ts": "TIMESTAMP",
        "day": "DATE", "payload": "JSON", "uid": "UUID", "note": "VARCHAR",
    }  # fmt: skip
    t = info.table_name
    agg = await store.fetch(
        f"SELECT count(*), sum(n), sum(big_n), sum(small_n), count(*) FILTER (flag), sum(amount), min(ts), max(ts), "
        f"count(note), count(DISTINCT uid), sum(CAST(payload->>'g' AS BIGINT)) FROM \"{t}\""
    )
    count, sum_n, sum_big, sum_small, flags, sum_amount, min_ts, max_ts, notes, uids, sum_payload = agg.rows[0]
    gs = range(1, N + 1)
    assert count == N
    assert sum_n == sum(gs) == sum_payload
    assert sum_big == sum(g * 3_000_000_000 for g in gs)
    assert sum_small == sum(g % 1000 for g in gs)
    assert flags == sum(1 for g in gs if g % 3 == 0)
    assert float(sum_amount) == pytest.approx(sum(round(g / 8, 3) for g in gs))
    assert (min_ts.isoformat(), max_ts.isoformat()) == ("2024-01-01T00:01:00", "2024-03-10T10:40:00")
    assert notes == N - N // 10 and uids == N
    # Stable order: rows land sorted by the id key (dataset_id, metric_name).
    first = await store.fetch(f'SELECT dataset_id, metric_name, n FROM "{t}" ORDER BY rowid LIMIT 2')
    assert first.rows == [("case_0", "accuracy", 1), ("case_0", "faithfulness", 50001)]

    # The dataset is served by the eval analytics endpoints.
    r = await client.post("/api/analytics/summary", params={"dataset_id": dataset_id})
    assert r.status_code == 200, r.text[:300]
    summary = {m["metric_name"]: m for m in r.json()["summary"]}
    assert set(summary) == set(METRICS)
    for idx, metric in enumerate(METRICS):
        values = [expected_score(g) for g in range(idx * 25000 + 1, (idx + 1) * 25000 + 1)]
        assert summary[metric]["count"] == 25000
        assert summary[metric]["mean"] == pytest.approx(statistics.fmean(values))
        assert summary[metric]["std"] == pytest.approx(statistics.stdev(values))
        assert summary[metric]["passing_rate"] == pytest.approx(sum(v >= 0.5 for v in values) / len(values))


async def test_query_import_monitoring_is_served_by_monitoring_analytics(
    pg: PgSchema, app_client: tuple[Any, Any]
) -> None:
    app, client = app_client
    pg.execute(
        """
        CREATE TABLE mon AS SELECT 'r' || g AS record_id, TIMESTAMPTZ '2024-05-01 00:00:00+00' + g * INTERVAL '1 hour'
          AS created_at, (g * 10)::float8 AS latency_ms, (g % 10) / 10.0::float8 AS relevance_score,
          CASE WHEN g % 2 = 0 THEN 'prod' ELSE 'dev' END AS env
        FROM generate_series(1, 200) g
        """
    )
    r = await client.post("/api/database/connect", json=body(pg), params={"store": "monitoring"})
    handle = r.json()["handle"]
    r = await client.post(
        f"/api/database/{handle}/query-import",
        json={"handle": handle, "query": f'SELECT * FROM "{pg.schema}".mon WHERE latency_ms > 0'},
    )
    assert r.status_code == 200, r.text[:400]
    res = r.json()
    assert res["kind"] == "monitoring" and res["row_count"] == 200
    assert {"dataset_id", "timestamp", "latency", "relevance_score", "environment"} <= set(res["columns"])
    r = await client.get("/api/monitoring/analytics/summary", params={"dataset_id": res["dataset_id"]})
    assert r.status_code == 200, r.text[:300]
    kpis = r.json()["kpis"]
    scores = [(g % 10) / 10.0 for g in range(1, 201)]
    latencies = [g * 10.0 for g in range(1, 201)]
    assert kpis["total_records"] == 200
    assert kpis["avg_score"] == pytest.approx(statistics.fmean(scores))
    assert kpis["pass_rate"] == pytest.approx(100 * sum(v >= 0.5 for v in scores) / len(scores))
    assert kpis["p50_latency"] == pytest.approx(statistics.median(latencies))
    # the registry keeps what processing found, as for a CSV upload of the same rows
    info = await app.state.store.get_dataset(res["dataset_id"])
    assert info.extra["metric_columns"] == ["relevance_score"] and info.extra["category_normalised"] is False


async def test_password_never_logged(pg: PgSchema, client: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for over in (
        {},
        {"host": "127.0.0.1", "port": 1},
        {"username": "nobody_axis"},
        {"database": "nodb_axis"},
        {"ssl_mode": "require"},
    ):
        r = await client.post("/api/database/connect", json=body(pg, **over))
        assert r.status_code in (200, 400)
    handle = (await client.post("/api/database/connect", json=body(pg))).json()["handle"]
    await client.post(f"/api/database/{handle}/query", json={"query": "SELECT 1/0"})
    await client.delete(f"/api/database/{handle}")
    assert caplog.records, "expected the browser to log handle activity"
    assert "Opened database handle" in caplog.text
    assert PASSWORD not in caplog.text


# ------------------------------------------------------------------------------ SQL gate over HTTP
def allow_only(tmp_path: Path, *tables: str) -> None:
    (tmp_path / "custom" / "config" / "eval_db.yaml").write_text(
        "eval_db:\n  tables: [" + ", ".join(f"'{t}'" for t in tables) + "]\n", encoding="utf-8"
    )


async def post_both(client: Any, handle: str, sql: str) -> list[Any]:
    """The same SQL through ``/query`` and ``/query-import`` (both share the gate)."""
    return [
        await client.post(f"/api/database/{handle}/query", json={"query": sql}),
        await client.post(f"/api/database/{handle}/query-import", json={"handle": handle, "query": sql}),
    ]


async def test_attribute_notation_cannot_call_banned_functions(pg: PgSchema, client: Any) -> None:
    victim = psycopg.connect(pg.dsn, autocommit=True, application_name="axis-victim")
    try:
        pid = victim.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
        handle = (await client.post("/api/database/connect", json=body(pg))).json()["handle"]
        for sql, name in [
            (f"SELECT ({pid}).pg_terminate_backend", "pg_terminate_backend"),
            (f'SELECT ({pid}::int)."pg_cancel_backend"', "pg_cancel_backend"),
            ("SELECT ('/etc/hostname'::text).pg_read_file", "pg_read_file"),
            ("SELECT ('.'::text).pg_ls_dir", "pg_ls_dir"),
            ("SELECT ((42)::bigint).pg_advisory_lock", "pg_advisory_lock"),
            ("SELECT (('SELECT to_tsvector(''simple'', 1::text)'::text).ts_stat).word", "ts_stat"),
        ]:
            for r in await post_both(client, handle, sql):
                assert r.status_code == 422, (sql, r.text)
                assert r.json()["detail"][0]["msg"].startswith(f"Function '{name}' is not allowed"), r.text
        assert victim.execute("SELECT 1").fetchone() == (1,)  # the victim session is alive
    finally:
        victim.close()


async def test_unbalanced_parentheses_cannot_escape_the_wrapper(
    pg: PgSchema, tmp_path: Path, make_settings: Callable[..., Settings], make_client: Any
) -> None:
    pg.execute(
        "CREATE TABLE pub (id int); INSERT INTO pub VALUES (1);"
        "CREATE TABLE secret (id int, pw text); INSERT INTO secret VALUES (1, 'TOPSECRET')"
    )
    allow_only(tmp_path, f"{pg.schema}.pub")
    async with make_client(make_settings()) as client:
        handle = (await client.post("/api/database/connect", json=body(pg))).json()["handle"]
        s = pg.schema
        for sql in (
            f'SELECT 1) AS a, "{s}".secret, (SELECT 2',
            f'SELECT 1 AS x FROM "{s}".pub) AS a CROSS JOIN "{s}".secret CROSS JOIN (SELECT 2 AS y',
            f'SELECT id FROM "{s}".pub WHERE (id = 1',
        ):
            for r in await post_both(client, handle, sql):
                assert r.status_code == 422, (sql, r.text)
                assert r.json()["detail"][0]["msg"].startswith("Unbalanced parentheses")
                assert "TOPSECRET" not in r.text
        r = await client.post(f"/api/database/{handle}/query", json={"query": f'SELECT (id) FROM "{s}".pub'})
        assert r.json()["data"] == [{"id": 1}]


async def test_allow_list_refuses_user_functions_in_from(
    pg: PgSchema, tmp_path: Path, make_settings: Callable[..., Settings], make_client: Any
) -> None:
    s = pg.schema
    pg.execute(f"""
        CREATE TABLE pub (id int); INSERT INTO pub VALUES (1);
        CREATE TABLE secret (id int, pw text); INSERT INTO secret VALUES (1, 'TOPSECRET');
        CREATE FUNCTION leak() RETURNS SETOF secret LANGUAGE sql AS $$ SELECT * FROM "{s}".secret $$
    """)  # fmt: skip
    allow_only(tmp_path, f"{s}.pub")
    async with make_client(make_settings()) as client:
        handle = (await client.post("/api/database/connect", json=body(pg))).json()["handle"]
        for sql in (
            f'SELECT * FROM "{s}".leak()',
            f'SELECT * FROM ROWS FROM ("{s}".leak())',
            f'SELECT * FROM "{s}".pub p LEFT JOIN LATERAL "{s}".leak() l ON true',
            f'SELECT ("{s}".leak()).pw',
        ):
            for r in await post_both(client, handle, sql):
                assert r.status_code == 422, (sql, r.text)
                assert r.json()["detail"][0]["msg"] == (
                    f"Function '{s}.leak' is not allowed: with a tables allow-list configured, only built-in "
                    "(pg_catalog) functions may be called"
                )
                assert "TOPSECRET" not in r.text
        r = await client.post(
            f"/api/database/{handle}/query",
            json={"query": f'SELECT p.id, g FROM "{s}".pub p, generate_series(1, 2) g ORDER BY g'},
        )
        assert r.json()["data"] == [{"id": 1, "g": 1}, {"id": 1, "g": 2}]


# ------------------------------------------------------------------------------ resource bounds over HTTP
async def test_query_result_over_the_size_cap_is_413(
    pg: PgSchema, make_settings: Callable[..., Settings], make_client: Any
) -> None:
    async with make_client(make_settings(db_query_max_result_mb=2)) as client:
        handle = (await client.post("/api/database/connect", json=body(pg))).json()["handle"]
        url = f"/api/database/{handle}/query"
        big = "SELECT repeat('x', 1000000) AS big FROM generate_series(1, 4)"
        r = await client.post(url, json={"query": big, "limit": 100})
        assert r.status_code == 413
        assert r.json() == {
            "detail": "The query result is too large: 4 rows hold about 3.8 MB of data (limit 2 MB, "
            "DB_QUERY_MAX_RESULT_MB). Select fewer or narrower columns, or lower the limit."
        }
        r = await client.post(url, json={"query": big, "limit": 1})
        assert r.status_code == 200 and r.json()["row_count"] == 1 and len(r.json()["data"][0]["big"]) == 1000000
        # distinct values obey the same cap (they had none: a 38 MB answer under a 5 MB cap)
        pg.execute(
            "CREATE TABLE docs AS SELECT g AS id, repeat(chr(64 + g), 1000000) AS doc FROM generate_series(1, 4) g"
        )
        table = {"schema_name": pg.schema, "name": "docs"}
        dv = f"/api/database/{handle}/distinct-values"
        r = await client.post(dv, json={"table": table, "column": "doc", "limit": 100})
        assert r.status_code == 413 and "4 rows hold about 3.8 MB" in r.json()["detail"]
        r = await client.post(dv, json={"table": table, "column": "doc", "limit": 1})
        assert r.status_code == 200 and r.json()["values"] == ["A" * 1000000]
        # a result column named like the size check's row alias is just a column (was a 400 / wrong columns)
        r = await client.post(url, json={"query": "SELECT 1 AS _axis_l, 2 AS b"})
        assert r.json()["data"] == [{"_axis_l": 1, "b": 2}]


async def test_one_handle_cannot_starve_another(
    pg: PgSchema, make_settings: Callable[..., Settings], make_client: Any
) -> None:
    settings = make_settings(db_connect_timeout_seconds=1, db_pool_max_size=4, db_handle_max_concurrent=2)
    async with make_client(settings) as client:
        greedy = (await client.post("/api/database/connect", json=body(pg))).json()["handle"]
        victim = (await client.post("/api/database/connect", json=body(pg))).json()["handle"]  # same pool
        slow = [asyncio.create_task(client.post(f"/api/database/{greedy}/query",
                                                json={"query": f"SELECT pg_sleep(2) AS s, {i} AS i"}))
                for i in range(3)]  # fmt: skip
        await asyncio.sleep(0.3)
        r = await client.get(f"/api/database/{victim}/tables")
        # served while the greedy handle's two queries still sleep (ordering, not a time bound)
        assert r.status_code == 200 and sum(not t.done() for t in slow) >= 2
        statuses = sorted(t.status_code for t in await asyncio.gather(*slow))
        assert statuses == [200, 200, 429]
        refused = next(t for t in slow if t.result().status_code == 429).result()
        assert refused.json() == {
            "detail": "This connection handle is already running 2 requests at once (the "
            "per-handle limit); wait for one to finish and try again."
        }


async def test_out_of_range_dates_are_400_over_http(pg: PgSchema, client: Any) -> None:
    handle = (await client.post("/api/database/connect", json=body(pg))).json()["handle"]
    for sql in ("SELECT '20000-01-01'::timestamp AS t", "SELECT '20000-01-01'::date AS d"):
        for r in await post_both(client, handle, sql):
            assert r.status_code == 400, r.text
            assert "dates and timestamps must lie between the years 1 and 9999" in r.json()["detail"]
    r = await client.post(f"/api/database/{handle}/query", json={"query": "SELECT DATE '2024-02-29' AS d"})
    assert r.json()["data"] == [{"d": "2024-02-29"}]


async def test_table_import_of_numeric_precision_edges_is_standard_json(pg: PgSchema, client: Any) -> None:
    """numeric(p, p) and numeric(p, 0) with p ≥ 16 (DuckDB writes '.5' and bare integers) stay valid JSON floats."""
    pg.execute(
        "CREATE TABLE nums (id int, p numeric(20,20), big numeric(19,0)); "
        "INSERT INTO nums VALUES (1, 0.5, 9007199254740993), (2, 0, 42)"
    )
    handle = (await client.post("/api/database/connect", json=body(pg))).json()["handle"]
    r = await client.post(
        f"/api/database/{handle}/import", json={"handle": handle, "table": {"schema_name": pg.schema, "name": "nums"}}
    )
    assert r.status_code == 200, r.text
    res = strict_json(r.content)
    expected = [{"id": 1, "p": 0.5, "big": 9007199254740992.0}, {"id": 2, "p": 0.0, "big": 42.0}]
    assert res["data"] == res["preview"] == expected
    assert all(type(row["big"]) is float for row in res["data"] + res["preview"])


async def test_columns_the_driver_cannot_decode_are_400_not_a_lost_connection(pg: PgSchema, client: Any) -> None:
    """A composite column with a money field cannot be decoded by the driver: a 400 with a hint, not a 502."""
    pg.execute(
        "CREATE TYPE price AS (amount money, note text); CREATE TABLE priced (id int, p price); "
        "INSERT INTO priced VALUES (1, ROW('12.50', 'a')::price)"
    )
    handle = (await client.post("/api/database/connect", json=body(pg))).json()["handle"]
    table = {"schema_name": pg.schema, "name": "priced"}
    responses = [
        await client.get(f"/api/database/{handle}/schema", params={"schema": pg.schema, "table": "priced"}),
        await client.post(f"/api/database/{handle}/preview", json={"table": table}),
        await client.post(f"/api/database/{handle}/import", json={"handle": handle, "table": table}),
        *await post_both(client, handle, f'SELECT id, p FROM "{pg.schema}".priced'),
    ]
    for r in responses:
        assert r.status_code == 400, r.text
        assert "cast to text" in r.json()["detail"]
    # the handle and its connection still work, and the hint does
    r = await client.post(
        f"/api/database/{handle}/query", json={"query": f'SELECT id, p::text AS p FROM "{pg.schema}".priced'}
    )
    assert r.status_code == 200 and r.json()["data"] == [{"id": 1, "p": "($12.50,a)"}]


async def test_json_columns_are_json_values_in_query_preview_and_schema(pg: PgSchema, client: Any) -> None:
    """§6.2's Ref rule: lists and dicts pass through, so json/jsonb cells arrive as the JSON they hold, not as text."""
    doc = {"messages": [{"role": "user", "content": "hi"}], "n": 1.5, "ok": True}
    pg.execute("CREATE DOMAIN jdoc AS jsonb")
    pg.execute("CREATE TABLE docs (id int, j json, jb jsonb, ja jsonb[], d jdoc, t text)")
    pg.execute(
        "INSERT INTO docs VALUES (1, %s, %s, ARRAY[%s::jsonb, '[1, 2]'::jsonb, NULL], %s, %s)",
        (json.dumps(doc), json.dumps(doc), json.dumps(doc), '"str"', json.dumps(doc)),
    )
    expected = {"id": 1, "j": doc, "jb": doc, "ja": [doc, [1, 2], None], "d": "str", "t": json.dumps(doc)}
    handle = (await client.post("/api/database/connect", json=body(pg))).json()["handle"]
    r = await client.post(f"/api/database/{handle}/query", json={"query": f'SELECT * FROM "{pg.schema}".docs'})
    assert r.status_code == 200 and r.json()["data"] == [expected], r.text
    r = await client.post(f"/api/database/{handle}/preview", json={"table": {"schema_name": pg.schema, "name": "docs"}})
    assert r.status_code == 200 and r.json()["data"] == [expected], r.text
    r = await client.get(f"/api/database/{handle}/schema", params={"schema": pg.schema, "table": "docs"})
    assert r.status_code == 200 and r.json()["sample_values"] == {k: [v] for k, v in expected.items()}, r.text


async def test_import_of_zero_columns_is_a_clear_400(pg: PgSchema, client: Any) -> None:
    pg.execute("CREATE TABLE nocols (); INSERT INTO nocols DEFAULT VALUES")
    handle = (await client.post("/api/database/connect", json=body(pg))).json()["handle"]
    for r in (
        await client.post(
            f"/api/database/{handle}/query-import",
            json={"handle": handle, "query": f'SELECT FROM "{pg.schema}".nocols'},
        ),
        await client.post(
            f"/api/database/{handle}/import",
            json={"handle": handle, "table": {"schema_name": pg.schema, "name": "nocols"}},
        ),
    ):
        assert r.status_code == 400, r.text
        assert r.json()["detail"].startswith("The query returns no columns"), r.text
    assert (await client.get("/api/store/datasets")).json()["datasets"] == []


async def test_imported_intervals_keep_years_and_months(pg: PgSchema, client: Any) -> None:
    """An imported interval equals PostgreSQL's: its seconds are PostgreSQL's own extract(epoch)
    (a year is 365.25 days there, and in the sync's INTERVAL; the driver's timedelta made it 365)."""
    values = [
        "1 year 2 mons 3 days 04:05:06.789", "-1 mon", "-1 days +02:00:00", "1 day -00:00:01",
        "-1 years -2 mons +3 days -04:05:06.5", "178000000 years", "00:00:00.000001", None,
    ]  # fmt: skip
    pg.execute("CREATE TABLE spans (id int, iv interval)")
    for i, v in enumerate(values):
        pg.execute("INSERT INTO spans VALUES (%s, %s::interval)", (i, v))
    epochs = {
        i: None if e is None else float(e)
        for i, e in pg.fetch("SELECT id, extract(epoch FROM iv) FROM spans ORDER BY id")
    }
    handle = (await client.post("/api/database/connect", json=body(pg))).json()["handle"]
    for path, payload in (
        ("query-import", {"query": f'SELECT id, iv FROM "{pg.schema}".spans ORDER BY id'}),
        ("import", {"table": {"schema_name": pg.schema, "name": "spans"}}),
    ):
        r = await client.post(f"/api/database/{handle}/{path}", json={"handle": handle, **payload})
        assert r.status_code == 200, r.text
        got = {row["id"]: row["iv"] for row in r.json()["data"]}
        assert got.keys() == epochs.keys() and got[7] is None is epochs[7]
        assert {i: got[i] for i in range(7)} == pytest.approx({i: epochs[i] for i in range(7)}, rel=1e-15, abs=1e-9)
        # the stored dataset serves the same seconds
        page = (await client.get(f"/api/store/data/{r.json()['dataset_id']}", params={"page_size": 50})).json()
        assert {row["id"]: row["iv"] for row in page["data"]} == got


# Columns of types asyncpg decodes into its own objects: name → (type, value of row 1; row 2 is NULL).
PG_TEXT_COLUMNS = {
    "pt": ("point", "point(1.5, -2)"),
    "bx": ("box", "box(point(0, 0), point(1, 2))"),
    "ci": ("circle", "circle(point(0, 0), 2.5)"),
    "pa": ("path", "'[(0,0),(1,1),(2,0)]'::path"),
    "pg": ("polygon", "'((0,0),(1,1),(1,0))'::polygon"),
    "ln": ("line", "line(point(0, 0), point(1, 1))"),
    "ls": ("lseg", "lseg(point(0, 0), point(1, 1))"),
    "b4": ("bit(4)", "B'1010'"),
    "vb": ("varbit", "B'101'"),
    "ir": ("int4range", "int4range(1, 5)"),
    "nr": ("numrange", "numrange(1.50, 2.0000001, '[]')"),
    "dr": ("daterange", "daterange('2024-01-01', '2024-02-01')"),
    "tr": ("tstzrange", "tstzrange('2024-01-01 10:00:00.5+02', '2024-01-02 00:00+00')"),
    "er": ("int4range", "'empty'::int4range"),
    "lo": ("numrange", "numrange(NULL, 3)"),
    "hi": ("daterange", "daterange('2024-01-01', NULL)"),
    "mr": ("int4multirange", "'{[1,3),[5,7)}'::int4multirange"),
    "tg": ("tag", "ROW('a, \"b\" c', NULL, true, int4range(1, 3))::tag"),
    "sp": ("span", "int4range(2, 4)::span"),
    "ch": ('"char"', "'x'"),
    "apt": ("point[]", "ARRAY[point(1, 2), NULL, point(3, 4)]"),
    "air": ("int4range[]", "ARRAY[int4range(1, 5), 'empty', NULL]"),
    "atg": ("tag[]", "ARRAY[ROW('p q', 1, false, NULL)::tag]"),
    "asp": ("span[]", "ARRAY[int4range(1, 2)::span]"),
}


def create_pg_text_table(pg: PgSchema) -> list[dict[str, Any]]:
    """Table ``shapes`` (k, then :data:`PG_TEXT_COLUMNS`), two rows; returns PostgreSQL's own text of
    each value (``::text``; arrays as lists of their elements' ``::text``), NULL as None."""
    pg.execute("CREATE TYPE tag AS (label text, n int, ok bool, r int4range); CREATE DOMAIN span AS int4range")
    cols = ", ".join(f"{c} {t}" for c, (t, _) in PG_TEXT_COLUMNS.items())
    values = ", ".join(v for _, v in PG_TEXT_COLUMNS.values())
    pg.execute(f"CREATE TABLE shapes (k int, {cols}); INSERT INTO shapes (k, {', '.join(PG_TEXT_COLUMNS)}) "
               f"VALUES (1, {values}); INSERT INTO shapes (k) VALUES (2)")  # fmt: skip
    texts = ", ".join(f"{c}::text[]" if t.endswith("[]") else f"{c}::text" for c, (t, _) in PG_TEXT_COLUMNS.items())
    rows = pg.fetch(f"SELECT k, {texts} FROM shapes ORDER BY k")
    return [dict(zip(["k", *PG_TEXT_COLUMNS], row, strict=True)) for row in rows]


async def test_driver_objects_are_postgres_text_in_the_browser(pg: PgSchema, client: Any) -> None:
    """Points, bit strings, ranges, multiranges, rows and composites (and arrays of them) are served as
    PostgreSQL's own text, not as the driver's Python objects (``asyncpg.pgproto.types.Point(...)``)."""
    expected = create_pg_text_table(pg)
    assert expected[0]["pt"] == "(1.5,-2)" and expected[0]["er"] == "empty" and expected[0]["lo"] == "(,3)"
    assert expected[0]["tg"] == '("a, ""b"" c",,t,"[1,3)")' and expected[0]["mr"] == "{[1,3),[5,7)}"
    assert expected[1] == {"k": 2, **dict.fromkeys(PG_TEXT_COLUMNS)}
    handle = (await client.post("/api/database/connect", json=body(pg))).json()["handle"]
    r = await client.post(
        f"/api/database/{handle}/query", json={"query": f'SELECT * FROM "{pg.schema}".shapes ORDER BY k'}
    )
    assert r.status_code == 200 and r.json()["data"] == expected, r.text
    table = {"schema_name": pg.schema, "name": "shapes"}
    r = await client.post(f"/api/database/{handle}/preview", json={"table": table})
    assert r.status_code == 200 and sorted(r.json()["data"], key=lambda row: row["k"]) == expected, r.text
    r = await client.post(
        f"/api/database/{handle}/preview",
        json={"table": table, "mappings": [{"source": "ir", "target": "range"}, {"source": "tg", "target": "tag"}],
              "filters": [{"column": "k", "value": 1}]},
    )  # fmt: skip
    assert r.status_code == 200 and r.json()["data"] == [{"range": "[1,5)", "tag": expected[0]["tg"]}], r.text
    r = await client.get(f"/api/database/{handle}/schema", params={"schema": pg.schema, "table": "shapes"})
    assert r.status_code == 200, r.text
    assert r.json()["sample_values"] == {**{k: [v] for k, v in expected[0].items()}, "k": [1, 2]}
    # anonymous rows (nested ones too) and system types, as PostgreSQL writes them
    sql = (
        "SELECT ROW(1, 'a b', NULL::int) AS rw, ROW(2, ROW('x', B'1')) AS nested, ARRAY[ROW(1, 'c')] AS rows, "
        f"'0/16B6C50'::pg_lsn AS lsn, ctid AS tid FROM \"{pg.schema}\".shapes WHERE k = 1"
    )
    want = pg.fetch(
        sql.replace(" AS rows", "::text[] AS rows").replace(" AS ", "::text AS ").replace("::text[]::text", "::text[]")
    )
    r = await client.post(f"/api/database/{handle}/query", json={"query": sql})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == [dict(zip(["rw", "nested", "rows", "lsn", "tid"], want[0], strict=True))]
    assert r.json()["data"][0]["rw"] == '(1,"a b",)'


async def test_driver_objects_are_postgres_text_in_imports(pg: PgSchema, client: Any) -> None:
    """Imports store PostgreSQL's text for the same values (arrays as the JSON list of their elements' text).
    A timestamptz range is PostgreSQL's text in the session's TimeZone (the server's, as ``::text`` here)."""
    expected = create_pg_text_table(pg)
    stored = [{k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()} for row in expected]
    assert stored[0]["apt"] == '["(1,2)", null, "(3,4)"]'
    handle = (await client.post("/api/database/connect", json=body(pg))).json()["handle"]
    for path, payload in (
        ("query-import", {"query": f'SELECT * FROM "{pg.schema}".shapes ORDER BY k'}),
        ("import", {"table": {"schema_name": pg.schema, "name": "shapes"}}),
    ):
        r = await client.post(f"/api/database/{handle}/{path}", json={"handle": handle, **payload})
        assert r.status_code == 200, r.text
        assert r.json()["data"] == stored, path
        page = (await client.get(f"/api/store/data/{r.json()['dataset_id']}", params={"page_size": 50})).json()
        assert page["data"] == stored, path


async def test_other_types_keep_their_json_form(pg: PgSchema, client: Any) -> None:
    """The text codecs leave the other types as they were: numbers, timestamps, intervals, uuid, bytea, inet, json."""
    sql = (
        "SELECT 1.50::numeric AS num, 2.5::float8 AS f, TIMESTAMPTZ '2024-01-01 10:00:00.5+02' AS ts, "
        "TIMESTAMP '2024-01-01 10:00' AS t, DATE '2024-02-29' AS d, INTERVAL '1 day 02:00' AS iv, "
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, '\\x6869'::bytea AS by, '10.0.0.1/24'::inet AS ip, "
        "'{\"a\": [1]}'::jsonb AS j, ARRAY[1, 2] AS ints, ARRAY['x', NULL] AS texts, true AS ok"
    )
    handle = (await client.post("/api/database/connect", json=body(pg))).json()["handle"]
    r = await client.post(f"/api/database/{handle}/query", json={"query": sql})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == [
        {"num": "1.50", "f": 2.5, "ts": "2024-01-01 08:00:00.500000+00:00", "t": "2024-01-01 10:00:00",
         "d": "2024-02-29", "iv": "1 day, 2:00:00", "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "by": "b'hi'",
         "ip": "10.0.0.1/24", "j": {"a": [1]}, "ints": [1, 2], "texts": ["x", None], "ok": True}
    ]  # fmt: skip
