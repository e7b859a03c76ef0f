"""``/api/store`` over the real app, the real PostgreSQL and a real DuckDB file."""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import httpx
import numpy as np
import psycopg
import pytest

from app.config import Settings
from app.services.duckdb_store import DuckDBStore, quote_ident
from app.services.leader_lock import LeaderLock
from app.services.sync_status import STATUS_PREFIX, blank_status
from tests.conftest import PgSchema, register_synced
from tests.services.test_csv_ingest import LOOSE_ZONES
from tests.sync_helpers import configure, create_source, joined_count, slow_results_query, terminate_sync_backend

MAP = {"metric": "metric_name", "score": "metric_score"}


async def wait_state(client: httpx.AsyncClient, table: str, states: set[str], wait_s: float = 60.0) -> dict[str, Any]:
    """Poll ``/status`` until ``table`` reaches one of ``states``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while loop.time() < deadline:
        body = (await client.get("/api/store/status")).json()
        st: dict[str, Any] = body["datasets"][table]
        if st["state"] in states and not body["running"]:
            return st
        await asyncio.sleep(0.05)
    raise AssertionError(f"{table} never reached {states}")


@pytest.fixture
def source(pg: PgSchema) -> PgSchema:
    create_source(pg, n_cases=20, metrics=3)
    return pg


async def test_sync_then_data_metadata_status_datasets(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], Any], source: PgSchema
) -> None:
    settings = configure(make_settings, source, columns=MAP, incremental_column="seq")
    async with make_client(settings) as client:
        resp = await client.post("/api/store/sync/monitoring")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["success"] and body["datasets"] == ["monitoring"] and len(body["sync_id"]) == 32
        assert body["message"] == "Sync started for monitoring (incremental where available)"
        st = await wait_state(client, "monitoring_data", {"ready", "error"})
        assert st["state"] == "ready" and st["rows"] == joined_count(source) == 60
        assert st["sync_id"] == body["sync_id"] and st["incremental_column"] == "seq"
        health = (await client.get("/health")).json()
        assert health["sync"]["monitoring_data"] == "ready" and health["sync"]["eval_data"] == "not_synced"
        # instants are UTC with an explicit "Z" (browsers read offset-less ISO text as local time)
        assert st["last_sync"].endswith("Z") and st["last_incremental"] is None
        synced_at = dt.datetime.fromisoformat(st["last_sync"])
        assert synced_at.utcoffset() == dt.timedelta(0)
        assert abs(dt.datetime.now(dt.UTC) - synced_at) < dt.timedelta(minutes=5)
        assert st["watermarks"] == {"monitoring_dataset": "20", "monitoring_results": "203"}

        # pagination: every page together equals PostgreSQL's ordered list
        expected = [
            r[0] for r in source.fetch("SELECT rs.seq FROM rs JOIN ds ON rs.dataset_id = ds.record_id ORDER BY 1")
        ]
        seen: list[int] = []
        page = 1
        while True:
            r = (
                await client.get(f"/api/store/data/monitoring?page={page}&page_size=7&sort_by=seq&sort_dir=asc")
            ).json()
            assert r["total"] == len(expected) and r["page_size"] == 7 and r["dataset_id"] == "sync_monitoring"
            if not r["data"]:
                break
            seen += [row["seq"] for row in r["data"]]
            page += 1
        assert seen == expected

        prod = (await client.get("/api/store/data/monitoring", params={"environment": "prod"})).json()
        assert (
            prod["total"]
            == source.fetch(
                "SELECT count(*) FROM rs JOIN ds ON rs.dataset_id = ds.record_id WHERE environment = 'prod'"
            )[0][0]
        )
        found = (await client.get("/api/store/data/monitoring", params={"search": "QUESTION 1"})).json()
        assert (
            found["total"]
            == source.fetch(
                "SELECT count(*) FROM rs JOIN ds ON rs.dataset_id = ds.record_id WHERE ds.query ILIKE '%question 1%'"
            )[0][0]
            == 33
        )
        proj = (
            await client.get("/api/store/data/monitoring", params={"columns": "metric_name,nope", "sort_by": "seq"})
        ).json()
        assert set(proj["data"][0]) == {"metric_name", "seq"}
        # Names match case-insensitively, as in DuckDB: SEQ sorts by seq, Metric_Name projects metric_name.
        upper = (
            await client.get(
                "/api/store/data/monitoring",
                params={"columns": "Metric_Name", "sort_by": "SEQ", "sort_dir": "asc", "page_size": 500},
            )
        ).json()
        assert [row["seq"] for row in upper["data"]] == expected and set(upper["data"][0]) == {"metric_name", "seq"}
        default = (await client.get("/api/store/data/monitoring", params={"page_size": 500})).json()
        stamps = [row["timestamp"] for row in default["data"]]
        assert stamps == sorted(stamps, reverse=True)  # default order: timestamp desc

        meta = (await client.get("/api/store/metadata/monitoring")).json()
        assert meta["dataset"] == "monitoring" and meta["metadata"]["row_count"] == 60
        assert meta["metadata"]["filter_values"]["metric_name"] == ["m1", "m2", "m3"]
        assert (await client.get("/api/store/metadata/human_signals")).json()["metadata"] == {}
        assert (await client.get("/api/store/metadata/bogus")).status_code == 404

        ds = (await client.get("/api/store/datasets")).json()
        assert [d["dataset_id"] for d in ds["datasets"]] == ["sync_monitoring"] and ds["total"] == 1
        assert ds["datasets"][0]["row_count"] == 60 and ds["datasets"][0]["source"] == "sync"
        loaded_at = ds["datasets"][0]["loaded_at"]
        assert loaded_at.endswith("Z")
        assert abs(dt.datetime.fromisoformat(loaded_at) - synced_at) < dt.timedelta(minutes=1)

        # all-datasets trigger; the second run is incremental
        resp = await client.post("/api/store/sync")
        assert resp.status_code == 200 and resp.json()["datasets"] == ["monitoring"]
        st = await wait_state(client, "monitoring_data", {"ready", "error"})
        assert st["sync_type"] == "incremental" and st["sync_id"] == resp.json()["sync_id"]
        assert st["last_incremental"] == st["last_sync"] and st["last_sync"].endswith("Z")

        reset = (await client.post("/api/store/sync/monitoring/reset-watermark")).json()
        assert reset == {
            "success": True,
            "message": "Watermarks cleared for monitoring. Next sync will do a full rebuild.",
        }
        st = (await client.get("/api/store/status")).json()["datasets"]["monitoring_data"]
        assert st["watermarks"] == {"monitoring_dataset": None, "monitoring_results": None}
        await client.post("/api/store/sync/monitoring", params={"full": "true"})
        st = await wait_state(client, "monitoring_data", {"ready", "error"})
        assert st["sync_type"] == "full"


async def test_sync_validation_errors(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], Any], source: PgSchema
) -> None:
    settings = configure(make_settings, source, columns=MAP)
    async with make_client(settings) as client:
        assert (await client.post("/api/store/sync/nope")).status_code == 404
        r = await client.post("/api/store/sync/eval")
        assert r.status_code == 400 and "eval" in r.json()["detail"]
        assert (await client.post("/api/store/sync/kpi")).status_code == 400
        assert (await client.post("/api/store/sync/nope/reset-watermark")).status_code == 404
        kpi = (await client.post("/api/store/sync/kpi/reset-watermark")).json()
        assert kpi == {"success": False, "message": "No split tables found for kpi"}
        status = (await client.get("/api/store/status")).json()
        assert status["enabled"] and status["leader"]
        assert set(status["datasets"]) == {
            "monitoring_data",
            "human_signals_raw",
            "human_signals_cases",
            "eval_data",
            "kpi_data",
        }
        assert all(d["state"] == "not_synced" for d in status["datasets"].values())


async def test_sync_all_with_nothing_configured_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/store/sync")
    assert r.status_code == 400
    # no table yet: data is an empty page, not an error
    r = await client.get("/api/store/data/eval")
    assert r.status_code == 200 and r.json()["data"] == [] and r.json()["total"] == 0


async def test_synced_summary_stats_agree_with_monitoring_summary(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], Any], source: PgSchema
) -> None:
    """Metadata summary_stats of a sync use /summary's definition (§9.2): NaN/inf scores are missing,
    and each case's latency counts once (it repeats on the case's 3 metric rows after the JOIN, DB-31)."""
    source.execute("ALTER TABLE ds ADD COLUMN latency float8")
    source.execute("UPDATE ds SET latency = seq * 10")
    source.execute("UPDATE rs SET score = 'NaN' WHERE dataset_id = 'c0001'")
    source.execute("UPDATE rs SET score = 'Infinity' WHERE dataset_id = 'c0002'")
    scored = [g for g in range(3, 21)]  # cases whose three scores are finite
    scores = [(g * 7 + m) % 10 / 10.0 for g in scored for m in (1, 2, 3)]
    q50, q95, q99 = np.quantile([g * 10.0 for g in scored], [0.5, 0.95, 0.99])
    expected = {
        "total_records": 54,
        "avg_score": pytest.approx(statistics.mean(scores)),
        "pass_rate": pytest.approx(100.0 * sum(x >= 0.5 for x in scores) / 54),
        "p50_latency": pytest.approx(q50),
        "p95_latency": pytest.approx(q95),
        "p99_latency": pytest.approx(q99),
    }
    async with make_client(configure(make_settings, source, columns=MAP)) as client:
        await client.post("/api/store/sync/monitoring")
        await wait_state(client, "monitoring_data", {"ready"})
        meta = (await client.get("/api/store/metadata/monitoring")).json()["metadata"]
        assert meta["summary_stats"] == expected
        kpis = (await client.get("/api/monitoring/analytics/summary")).json()["kpis"]
        assert kpis == expected
        # asking /summary (which caches its answer) leaves the metadata as it was
        assert (await client.get("/api/store/metadata/monitoring")).json()["metadata"]["summary_stats"] == expected


async def test_data_pages_during_full_syncs_that_change_columns_see_one_load(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], Any], source: PgSchema
) -> None:
    """A page, its columns and its total come from one load while syncs swap tables whose columns
    differ (was: a 500 when the swap landed between the page's DESCRIBE and its SELECT)."""
    async with make_client(configure(make_settings, source, columns=MAP)) as client:
        await client.post("/api/store/sync/monitoring")
        await wait_state(client, "monitoring_data", {"ready"})
        seen: list[tuple[int, bool]] = []
        failures: list[str] = []
        done = asyncio.Event()

        async def reader() -> None:
            while not done.is_set():
                r = await client.get("/api/store/data/monitoring", params={"page_size": 5})
                if r.status_code != 200:
                    failures.append(r.text)
                    continue
                body = r.json()
                seen.append((body["total"], all("zz_extra" in row for row in body["data"])))

        readers = [asyncio.create_task(reader()) for _ in range(3)]
        for i in range(6):
            if i % 2 == 0:  # load B: one more column and 20 more rows
                source.execute("ALTER TABLE rs ADD COLUMN zz_extra int DEFAULT 1")
                source.execute(
                    "INSERT INTO rs SELECT dataset_id, 'm9', 0.5, created_at, seq + 5000, environment, 2 FROM rs"
                )
            else:  # back to load A
                source.execute("DELETE FROM rs WHERE metric = 'm9'")
                source.execute("ALTER TABLE rs DROP COLUMN zz_extra")
            r = await client.post("/api/store/sync/monitoring", params={"full": "true"})
            assert r.status_code == 200, r.text
            st = await wait_state(client, "monitoring_data", {"ready"})  # waits until no sync runs
            assert st["sync_id"] == r.json()["sync_id"] and st["rows"] == (120 if i % 2 == 0 else 60)
        done.set()
        await asyncio.gather(*readers)
        assert failures == []
        assert set(seen) <= {(60, False), (120, True)} and len(seen) > 6


async def test_shutdown_during_a_sync_cancels_the_source_query(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], Any], source: PgSchema
) -> None:
    """Shutting down while the source query runs cancels it at PostgreSQL (the extension only sees
    DuckDB's interrupt when PostgreSQL answers: shutdown used to wait for the query), checkpoints
    cleanly, and the next start serves the last complete data."""
    settings = configure(make_settings, source, columns=MAP, results_query=slow_results_query(source))
    sleeping = (
        "SELECT count(*) FROM pg_stat_activity WHERE starts_with(application_name, 'axis_sync_monitoring_') "
        f"AND state = 'active' AND query LIKE '%pg_sleep%' AND strpos(query, '{source.schema}') > 0"
    )
    wrapper = make_client(settings)
    client = await wrapper.__aenter__()
    await client.post("/api/store/sync/monitoring")
    await wait_state(client, "monitoring_data", {"ready"})
    source.execute("UPDATE ctl SET slow = true")
    assert (await client.post("/api/store/sync/monitoring", params={"full": "true"})).json()["datasets"] == [
        "monitoring"
    ]
    for _ in range(600):  # generous: a loaded machine can take seconds to start the read
        if source.fetch(sleeping)[0][0]:
            break
        await asyncio.sleep(0.05)
    assert source.fetch(sleeping)[0][0] >= 1
    # another session carrying a sync-like name (say another AXIS process's sync) is not ours to cancel
    outcome: dict[str, str] = {}

    def other_sync() -> None:
        try:
            with psycopg.connect(source.dsn, application_name="axis_sync_monitoring", autocommit=True) as conn:
                conn.execute("SELECT pg_sleep(30)")
            outcome["other"] = "finished"
        except psycopg.Error as exc:
            outcome["other"] = type(exc).__name__

    other = threading.Thread(target=other_sync)
    other.start()
    others = "SELECT pid FROM pg_stat_activity WHERE application_name = 'axis_sync_monitoring' AND state = 'active'"
    for _ in range(600):
        if source.fetch(others):
            break
        await asyncio.sleep(0.05)
    assert len(source.fetch(others)) == 1
    await wrapper.__aexit__(None, None, None)  # no exception: the checkpoint at close succeeded
    assert source.fetch(sleeping)[0][0] == 0  # the 60 s source query was cancelled, not waited for
    assert len(source.fetch(others)) == 1 and "other" not in outcome  # the other session still sleeps
    source.execute(f"SELECT pg_terminate_backend({source.fetch(others)[0][0]})")
    await asyncio.to_thread(other.join)
    assert outcome["other"] in ("OperationalError", "AdminShutdown")  # ended by our terminate, not a cancel
    async with make_client(settings) as again:
        assert (await again.get("/api/store/data/monitoring")).json()["total"] == 60
        st = (await again.get("/api/store/status")).json()["datasets"]["monitoring_data"]
        assert st["state"] == "ready" and "interrupted" in st["error"]


async def test_second_request_while_running_is_409_and_failure_keeps_old_data(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], Any], source: PgSchema
) -> None:
    settings = configure(make_settings, source, columns=MAP, results_query=slow_results_query(source))
    async with make_client(settings) as client:
        await client.post("/api/store/sync/monitoring")
        await wait_state(client, "monitoring_data", {"ready"})
        source.execute("UPDATE ctl SET slow = true")
        assert (await client.post("/api/store/sync/monitoring", params={"full": "true"})).json()["datasets"] == [
            "monitoring"
        ]
        r = await client.post("/api/store/sync/monitoring")
        assert r.status_code == 409 and r.json()["detail"] == "Sync already running for monitoring_data"
        assert (await client.post("/api/store/sync")).status_code == 409
        # a reset now would be written over by the running sync's watermarks: refused
        r = await client.post("/api/store/sync/monitoring/reset-watermark")
        assert r.status_code == 409 and "running" in r.json()["detail"]
        await terminate_sync_backend(source)
        st = await wait_state(client, "monitoring_data", {"error"})
        assert st["error"] and st["rows"] == 60
        assert (await client.get("/api/store/data/monitoring")).json()["total"] == 60
        source.execute("UPDATE ctl SET slow = false")
        assert (await client.post("/api/store/sync/monitoring")).json()["datasets"] == ["monitoring"]
        st = await wait_state(client, "monitoring_data", {"ready"})
        assert st["error"] is None


SPECIAL = ["100% sure", "a_b", "ab", "O'Reilly", "naïve ☃ 日本", "'; DROP TABLE x; --", 'say "hi"', None]


async def _land_special(store: DuckDBStore) -> str:
    def build(cur: duckdb.DuckDBPyConnection, staging: str) -> None:
        cur.execute(
            f"CREATE TABLE {quote_ident(staging)} (dataset_id VARCHAR, query VARCHAR, environment VARCHAR, "
            'metric_category VARCHAR, metric_score DOUBLE, timestamp TIMESTAMP, "order" INTEGER)'
        )
        rows = [
            (
                f"r{i}",
                q,
                "prod" if i % 2 else "dev",
                [None, "SCORE", "CLASSIFICATION"][i % 3],
                i / 10,
                dt.datetime(2024, 1, 1 + i),
                len(SPECIAL) - i,
            )
            for i, q in enumerate(SPECIAL)
        ]
        cur.executemany(f"INSERT INTO {quote_ident(staging)} VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        cur.execute("CREATE TABLE IF NOT EXISTS x (v INTEGER)")

    info = await store.land_dataset(kind="monitoring", source="upload:special.csv", build=build)
    return info.dataset_id


async def test_data_filters_are_bound_and_search_is_escaped(app_client: tuple[Any, httpx.AsyncClient]) -> None:
    app, client = app_client
    ds_id = await _land_special(app.state.store)

    async def get(**params: Any) -> dict[str, Any]:
        r = await client.get("/api/store/data/monitoring", params=params)
        body: dict[str, Any] = r.json()
        assert r.status_code == 200 and body["page_size"] == 50, r.text
        assert body["total"] >= len(body["data"])
        return body

    def queries(body: dict[str, Any]) -> list[str | None]:
        return sorted(row["query"] for row in body["data"] if row["query"] is not None)

    everything = await get()
    assert everything["total"] == len(SPECIAL) and everything["dataset_id"] == ds_id
    assert queries(await get(search="%")) == ["100% sure"]
    assert queries(await get(search="_")) == ["a_b"]
    assert queries(await get(search="'")) == sorted(["O'Reilly", "'; DROP TABLE x; --"])
    assert queries(await get(search="'; DROP TABLE x; --")) == ["'; DROP TABLE x; --"]
    assert queries(await get(search="☃ 日")) == ["naïve ☃ 日本"]
    assert queries(await get(search='"hi"')) == ['say "hi"']
    assert (await get(environment="' OR 1=1 --"))["total"] == 0
    # a filter on a column the table does not have is ignored, not interpolated
    assert (await get(metric_name="x'); DROP TABLE x; --"))["total"] == len(SPECIAL)
    assert (await app.state.store.fetch("SELECT count(*) FROM x")).rows == [(0,)]

    # sort: allow-listed column names only, even awkward ones; anything else is ignored
    by_order = await get(sort_by="order", sort_dir="asc")
    assert [row["order"] for row in by_order["data"]] == sorted(row["order"] for row in everything["data"])
    injected = await get(sort_by="dataset_id; DROP TABLE x", sort_dir="asc")
    assert injected["data"] == everything["data"]  # fell back to timestamp desc
    assert [row["timestamp"] for row in everything["data"]] == sorted(
        (row["timestamp"] for row in everything["data"]), reverse=True
    )
    assert (await client.get("/api/store/data/monitoring", params={"sort_dir": "sideways"})).status_code == 422
    assert (await client.get("/api/store/data/monitoring", params={"page": 0})).status_code == 422
    assert (await client.get("/api/store/data/monitoring", params={"page_size": 501})).status_code == 422
    assert (await client.get("/api/store/data/monitoring", params={"time_start": "yesterday"})).status_code == 400
    r = await client.get("/api/store/data/monitoring", params={"time_start": "0001-01-01T00:00:00+14:00"})
    assert r.status_code == 400 and "time_start" in r.json()["detail"]

    # SCORE matches SCORE or NULL; time bounds are inclusive
    score = await get(metric_category="score")
    expected_score = [i for i in range(len(SPECIAL)) if i % 3 in (0, 1)]
    assert sorted(row["dataset_id"] for row in score["data"]) == sorted(f"r{i}" for i in expected_score)
    window = await get(time_start="2024-01-02T00:00:00Z", time_end="2024-01-04T00:00:00")
    assert sorted(row["dataset_id"] for row in window["data"]) == ["r1", "r2", "r3"]

    # dataset_id selects a registry entry; a kind mismatch is 400; unknown ids are 404
    assert (await get(dataset_id=ds_id))["total"] == len(SPECIAL)
    assert (await client.get(f"/api/store/data/{ds_id}")).json()["total"] == len(SPECIAL)
    assert (await client.get("/api/store/data/eval", params={"dataset_id": ds_id})).status_code == 400
    assert (await client.get("/api/store/data/monitoring", params={"dataset_id": "nope"})).status_code == 404
    assert (await client.get("/api/store/data/nope")).status_code == 404
    meta = (await client.get("/api/store/metadata/monitoring", params={"dataset_id": ds_id})).json()
    assert meta["metadata"]["row_count"] == len(SPECIAL)
    assert meta["metadata"]["summary_stats"]["avg_score"] == pytest.approx(
        sum(i / 10 for i in range(len(SPECIAL))) / len(SPECIAL)
    )


async def test_data_reads_go_through_the_limiter(app_client: tuple[Any, httpx.AsyncClient]) -> None:
    app, client = app_client
    await _land_special(app.state.store)
    limiter = app.state.store.limiter
    borrowers = [object() for _ in range(int(limiter.total_tokens))]
    for b in borrowers:
        await limiter.acquire_on_behalf_of(b)
    before = app.state.store.read_count
    task = asyncio.create_task(client.get("/api/store/data/monitoring"))
    for _ in range(50):
        await asyncio.sleep(0)
    assert not task.done()
    for b in borrowers:
        limiter.release_on_behalf_of(b)
    assert (await task).json()["total"] == len(SPECIAL)
    assert app.state.store.read_count > before


async def test_status_and_registry_survive_app_restart(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], Any], source: PgSchema
) -> None:
    settings = configure(make_settings, source, columns=MAP)
    async with make_client(settings) as client:
        sync_id = (await client.post("/api/store/sync/monitoring")).json()["sync_id"]
        await wait_state(client, "monitoring_data", {"ready"})
    async with make_client(settings) as client:
        st = (await client.get("/api/store/status")).json()["datasets"]["monitoring_data"]
        assert st["state"] == "ready" and st["rows"] == 60 and st["sync_id"] == sync_id
        ds = (await client.get("/api/store/datasets", params={"kind": "monitoring"})).json()
        assert [d["dataset_id"] for d in ds["datasets"]] == ["sync_monitoring"]
        assert (await client.get("/api/store/data/monitoring")).json()["total"] == 60


async def test_startup_sync_runs_for_auto_load_sources_including_eval(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], Any], source: PgSchema
) -> None:
    settings = configure(make_settings, source, store="eval", auto_load=True)
    async with make_client(settings) as client:
        st = await wait_state(client, "eval_data", {"ready", "error"})
        assert st["state"] == "ready" and st["rows"] == 60 and st["reason"] == "startup"
        cols = (await client.get("/api/store/metadata/eval")).json()["metadata"]["columns"]
        names = {c["column_name"] for c in cols}
        assert {"dataset_id", "metric_name", "metric_score", "query"} <= names  # eval aliases applied


async def test_non_leader_does_not_sync(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], Any], source: PgSchema
) -> None:
    settings = configure(make_settings, source, columns=MAP, auto_load=True)
    other = LeaderLock(Path(str(settings.duckdb_path) + ".lock"))
    assert other.try_acquire()
    try:
        async with make_client(settings) as client:
            status = (await client.get("/api/store/status")).json()
            assert status["leader"] is False
            assert status["datasets"]["monitoring_data"]["state"] == "not_synced"  # no startup sync either
            r = await client.post("/api/store/sync/monitoring")
            assert r.status_code == 409 and "lock" in r.json()["detail"]
            after = (await client.get("/api/store/status")).json()
            assert after["running"] == {} and after["datasets"]["monitoring_data"]["state"] == "not_synced"
    finally:
        other.release()


async def test_human_signals_paths_serve_cases_and_raw_rows(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], Any], pg: PgSchema
) -> None:
    pg.execute("CREATE TABLE ds (dataset_id text, source_name text)")
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_category text, signals jsonb)")
    pg.execute("INSERT INTO ds SELECT 'case-' || g, 'Atlas' FROM generate_series(1, 3) g")
    pg.execute(
        "INSERT INTO rs SELECT 'case-' || g, 'm' || m, 'classification', jsonb_build_object('is_ok', g = m) "
        "FROM generate_series(1, 3) g, generate_series(1, 2) m"
    )
    settings = configure(make_settings, pg, store="human_signals")
    async with make_client(settings) as client:
        assert (await client.post("/api/store/sync/human_signals")).json()["datasets"] == ["human_signals"]
        await wait_state(client, "human_signals_raw", {"ready"})
        st = await wait_state(client, "human_signals_cases", {"ready", "error", "not_synced"})
        assert st["state"] == "ready" and st["rows"] == 3
        cases = (await client.get("/api/store/data/human_signals")).json()
        assert cases["total"] == 3 and cases["dataset_id"] == "sync_human_signals"
        # JSON cells are served as values, the same as /api/human-signals/cases serves them
        by_id = {c["Case_ID"]: c for c in cases["data"]}
        assert by_id["case-1"]["Full_Conversation"] == [] and isinstance(by_id["case-1"]["is_ok"], bool)
        same = (await client.get("/api/human-signals/cases")).json()["data"]
        assert same == [by_id[c["Case_ID"]] for c in same]
        raw = (await client.get("/api/store/data/human_signals_raw")).json()
        assert raw["total"] == 6
        meta = (await client.get("/api/store/metadata/human_signals")).json()["metadata"]
        assert meta["row_count"] == 3


def _v2_cases(pg: PgSchema, first: int, last: int) -> None:
    """V2 human-signals rows for cases ``first..last`` (two metrics each) in ``ds``/``rs``."""
    pg.execute(f"INSERT INTO ds SELECT 'case-' || g, 'Atlas' FROM generate_series({first}, {last}) g")
    pg.execute(
        "INSERT INTO rs SELECT 'case-' || g, 'm' || m, 'classification', jsonb_build_object('is_ok', g % 2 = 0) "
        f"FROM generate_series({first}, {last}) g, generate_series(1, 2) m"
    )


async def test_crash_between_raw_and_cases_stages_is_repaired_at_the_next_boot(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], Any], pg: PgSchema
) -> None:
    """The raw sync committed, the process died before the cases build: the next boot rebuilds the cases."""
    pg.execute("CREATE TABLE ds (dataset_id text, source_name text)")
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_category text, signals jsonb)")
    _v2_cases(pg, 1, 3)
    settings = configure(make_settings, pg, store="human_signals")

    async def sync(client: httpx.AsyncClient) -> str:
        await wait_state(client, "human_signals_cases", {"ready", "not_synced"})  # the boot's rebuild (409 meanwhile)
        started = await client.post("/api/store/sync/human_signals", params={"full": "true"})
        assert started.status_code == 200 and started.json()["datasets"] == ["human_signals"], started.text
        raw = await wait_state(client, "human_signals_raw", {"ready"})
        assert (await wait_state(client, "human_signals_cases", {"ready", "error"}))["state"] == "ready"
        return str(raw["sync_id"])

    async def case_ids(client: httpx.AsyncClient) -> list[str]:
        body = (await client.get("/api/human-signals/cases", params={"page_size": 100})).json()
        return sorted(c["Case_ID"] for c in body["data"])

    async with make_client(settings) as client:
        first_sync = await sync(client)
        assert await case_ids(client) == ["case-1", "case-2", "case-3"]
    store = DuckDBStore(settings.duckdb_path)
    await store.open()
    await store.run_write(lambda cur: cur.execute("CREATE TABLE cases_at_first_sync AS FROM human_signals_cases"))
    await store.close()

    _v2_cases(pg, 4, 5)
    async with make_client(settings) as client:
        second_sync = await sync(client)
        assert await case_ids(client) == [f"case-{i}" for i in range(1, 6)]
    # The state a crash between the stages leaves: raw rows and their sync id from the second sync,
    # the cases table, its sync id and a "syncing" status from the first.
    store = DuckDBStore(settings.duckdb_path)
    await store.open()

    def roll_back_cases(cur: duckdb.DuckDBPyConnection) -> None:
        cur.execute("CREATE OR REPLACE TABLE human_signals_cases AS FROM cases_at_first_sync")
        cur.execute("DROP TABLE cases_at_first_sync")

    await store.run_write(roll_back_cases)
    await store.kv_set("human_signals_cases_sync_id", first_sync)
    status = await store.kv_get(STATUS_PREFIX + "human_signals_cases")
    await store.kv_set(STATUS_PREFIX + "human_signals_cases", {**status, "state": "syncing", "sync_id": second_sync})
    assert await store.kv_get("human_signals_raw_sync_id") == second_sync
    assert (await store.fetch("SELECT count(*) FROM human_signals_cases")).rows == [(3,)]
    await store.close()

    async with make_client(settings) as client:  # the lifespan's background task repairs
        st = await wait_state(client, "human_signals_cases", {"ready", "error"})
        assert st["state"] == "ready" and st["rows"] == 5 and st["sync_id"] == second_sync
        assert await case_ids(client) == [f"case-{i}" for i in range(1, 6)]
    store = DuckDBStore(settings.duckdb_path)
    await store.open()
    assert await store.kv_get("human_signals_cases_sync_id") == second_sync
    await store.close()


async def test_a_sync_without_v2_signals_does_not_hide_uploaded_cases(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], Any], pg: PgSchema
) -> None:
    """First a V2 sync builds cases; then the source loses its signals: the stale cases go, the upload shows."""
    pg.execute("CREATE TABLE ds (dataset_id text, source_name text)")
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, signals jsonb)")
    pg.execute("INSERT INTO ds VALUES ('s1', 'Atlas')")
    pg.execute("""INSERT INTO rs VALUES ('s1', 'm', '{"ok": true}')""")
    settings = configure(make_settings, pg, store="human_signals")
    async with make_client(settings) as client:
        upload = 'metric_name,dataset_id,signals\nm,u1,"{""ok"": false}"\nm,u2,"{""ok"": true}"\n'
        res = await client.post("/api/human-signals/upload", files={"file": ("hs.csv", upload, "text/csv")})
        assert res.status_code == 200, res.text
        await client.post("/api/store/sync/human_signals")
        assert (await wait_state(client, "human_signals_cases", {"ready", "error"}))["state"] == "ready"
        assert [c["Case_ID"] for c in (await client.get("/api/human-signals/cases")).json()["data"]] == ["s1"]
        pg.execute("ALTER TABLE rs DROP COLUMN signals")
        await client.post("/api/store/sync/human_signals", params={"full": "true"})
        await wait_state(client, "human_signals_raw", {"ready"})
        st = await wait_state(client, "human_signals_cases", {"not_synced", "error"})
        assert "not V2" in (st["error"] or "") and st["rows"] == 0
        cases = (await client.get("/api/human-signals/cases")).json()
        assert [c["Case_ID"] for c in cases["data"]] == ["u1", "u2"] and cases["dataset_id"] == res.json()["dataset_id"]
        schema = (await client.get("/api/human-signals/metric-schema")).json()
        assert schema["dataset_id"] == res.json()["dataset_id"]


async def test_scheduler_is_a_lifespan_task_cancelled_on_shutdown(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], Any], source: PgSchema
) -> None:
    settings = configure(make_settings, source, columns=MAP, refresh_interval_minutes=5)
    wrapper = make_client(settings)
    async with wrapper as client:
        assert (await client.get("/api/store/status")).json()["datasets"]["monitoring_data"][
            "refresh_interval_minutes"
        ] == 5
        task = wrapper.app.state.tasks.get("sync-background")
        assert task is not None and not task.done()
    assert task.cancelled()
    assert not wrapper.app.state.sync_engine.leader.held


async def test_synced_bytea_numeric_interval_and_infinite_timestamps_serialise_cleanly(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], Any], pg: PgSchema
) -> None:
    """PostgreSQL bytea / numeric / interval / ±infinity values, synced into the store, served as clean JSON."""
    pg.execute(
        """CREATE TABLE ds (dataset_id text, payload bytea, ratio numeric(10, 4), took interval,
                            "timestamp" timestamp, seen_tz timestamptz, seen_on date, seq int)"""
    )
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_score float8)")
    pg.execute(
        """INSERT INTO ds VALUES
           ('c1', '\\xff00fe'::bytea, 0.8125, interval '1.5 seconds', 'infinity', 'infinity', 'infinity', 1),
           ('c2', convert_to('café', 'UTF8'), 2.5, interval '1 day 2 hours', '-infinity', '-infinity', '-infinity', 2),
           ('c3', NULL, NULL, NULL, '2024-05-01 10:00:00', '2024-05-01 10:00:00+02', '2024-05-01', 3)"""
    )
    pg.execute("INSERT INTO rs SELECT dataset_id, 'm1', 0.5 FROM ds")
    settings = configure(make_settings, pg)
    async with make_client(settings) as client:
        await client.post("/api/store/sync/monitoring")
        st = await wait_state(client, "monitoring_data", {"ready", "error"})
        assert st["state"] == "ready" and st["rows"] == 3, st
        r = await client.get("/api/store/data/monitoring", params={"sort_by": "seq", "sort_dir": "asc"})
        assert r.status_code == 200, r.text
        rows = {row["seq"]: row for row in r.json()["data"]}
        assert rows[1]["payload"] == "\ufffd\x00\ufffd"  # invalid UTF-8 → U+FFFD, never a 500
        assert rows[2]["payload"] == "café"
        assert rows[1]["ratio"] == 0.8125 and rows[2]["ratio"] == 2.5  # numbers, not "0.8125"
        assert rows[1]["took"] == 1.5 and rows[2]["took"] == 26 * 3600.0  # seconds, not "PT1.5S"
        assert [rows[i]["timestamp"] for i in (1, 2, 3)] == ["infinity", "-infinity", "2024-05-01T10:00:00"]
        assert [rows[i]["seen_tz"] for i in (1, 2, 3)] == ["infinity", "-infinity", "2024-05-01T08:00:00"]
        assert [rows[i]["seen_on"] for i in (1, 2, 3)] == ["infinity", "-infinity", "2024-05-01"]
        assert rows[3]["payload"] is None and rows[3]["ratio"] is None and rows[3]["took"] is None
        # the metadata endpoint of the same dataset spells the infinities the same way
        meta = (await client.get("/api/store/metadata/monitoring")).json()["metadata"]
        assert meta["time_range"] == {"min": "-infinity", "max": "infinity"}
        types = {c["column_name"]: c["column_type"] for c in meta["columns"]}
        assert (types["payload"], types["ratio"], types["took"]) == ("BLOB", "DECIMAL(10,4)", "INTERVAL")
        assert (types["timestamp"], types["seen_tz"], types["seen_on"]) == ("TIMESTAMP", "TIMESTAMP", "DATE")


async def test_status_and_registry_times_written_without_offset_are_served_as_utc(
    app_client: tuple[Any, httpx.AsyncClient],
) -> None:
    """A store written before offsets were emitted (naive UTC text / TIMESTAMP) still reads back, now with "Z"."""
    app, client = app_client
    store: DuckDBStore = app.state.store
    await store.kv_set(
        STATUS_PREFIX + "monitoring_data",
        {
            **blank_status(),
            "state": "ready",
            "rows": 3,
            "last_sync": "2026-11-28T17:05:29.538624",
            "last_incremental": "2026-11-28T17:00:00",
            "sync_type": "incremental",
        },
    )
    await store.kv_set(
        STATUS_PREFIX + "eval_data",
        {**blank_status(), "state": "ready", "last_sync": "2026-11-28T18:05:29.538624+01:00"},
    )
    await register_synced(
        store, "monitoring", "monitoring_data", row_count=3, loaded_at=dt.datetime(2026, 11, 28, 17, 5, 29, 538624)
    )
    status = (await client.get("/api/store/status")).json()["datasets"]
    assert status["monitoring_data"]["last_sync"] == "2026-11-28T17:05:29.538624Z"
    assert status["monitoring_data"]["last_incremental"] == "2026-11-28T17:00:00Z"
    assert status["eval_data"]["last_sync"] == "2026-11-28T17:05:29.538624Z"  # converted to UTC
    assert status["kpi_data"]["last_sync"] is None
    listed = (await client.get("/api/store/datasets")).json()["datasets"]
    assert [(d["dataset_id"], d["loaded_at"]) for d in listed] == [("sync_monitoring", "2026-11-28T17:05:29.538624Z")]
    # the stored values keep their format: the registry column is still a naive UTC TIMESTAMP
    stored = await store.fetch("SELECT loaded_at, typeof(loaded_at) FROM datasets")
    assert stored.rows == [(dt.datetime(2026, 11, 28, 17, 5, 29, 538624), "TIMESTAMP")]


async def test_a_table_dropped_between_resolve_and_read_is_a_409_not_a_500(
    app_client: tuple[Any, httpx.AsyncClient],
) -> None:
    """The state a concurrent delete leaves mid-request: the registry row read, the table gone."""
    app, client = app_client
    up = await client.get("/api/monitoring/example/monitoring_long")
    info = await app.state.store.get_dataset(up.json()["dataset_id"])
    await app.state.store.run_write(lambda cur: cur.execute(f"DROP TABLE {quote_ident(info.table_name)}"))
    for path in ("trends", "metric-breakdown", "analysis-insights"):
        r = await client.get(f"/api/monitoring/analytics/{path}", params={"dataset_id": info.dataset_id})
        assert r.status_code == 409, (path, r.text)
        assert r.json()["detail"] == (
            "The dataset changed while this request read it (deleted, or replaced by another load); "
            "send the request again"
        )


async def test_time_bounds_read_a_text_timestamp_as_monitoring_analytics_does(
    app_client: tuple[Any, httpx.AsyncClient],
) -> None:
    """A text ``timestamp`` with offsets and Unix times: the data page and analytics select the same rows."""
    app, client = app_client
    # instants (UTC): a 2024-01-01T23:00, b 2024-01-02T00:00, c 2024-01-03T00:00, d 2024-01-02T10:00
    stamps = {
        "a": "2024-01-02T01:00:00+02:00",
        "b": "1704153600",
        "c": "2024-01-03 00:00:00",
        "d": "2024-01-02T05:00:00-05:00",
    }

    def build(cur: duckdb.DuckDBPyConnection, staging: str) -> None:
        cur.execute(
            f"CREATE TABLE {quote_ident(staging)} (dataset_id VARCHAR, metric_name VARCHAR, metric_score DOUBLE, "
            "timestamp VARCHAR)"
        )
        cur.executemany(
            f"INSERT INTO {quote_ident(staging)} VALUES (?, 'm', 0.5, ?)", [[k, v] for k, v in stamps.items()]
        )

    info = await app.state.store.land_dataset(kind="monitoring", source="upload:text_ts.csv", build=build)
    window = {"time_start": "2024-01-02T00:00:00Z", "time_end": "2024-01-02T12:00:00Z", "dataset_id": info.dataset_id}
    page = (await client.get("/api/store/data/monitoring", params=window)).json()
    assert sorted(row["dataset_id"] for row in page["data"]) == ["b", "d"] and page["total"] == 2
    summary = (await client.get("/api/monitoring/analytics/summary", params=window)).json()
    assert summary["kpis"]["total_records"] == 2


async def test_time_bounds_read_zones_after_a_blank_or_a_lowercase_z(app_client: tuple[Any, httpx.AsyncClient]) -> None:
    """``… 10:00:00 +02:00``, ``…z`` and ``… Z`` were NULL to the time filters (stored text) or kept as text
    (an upload): a window skipped them. UTC instants: 08:00, 09:00, 10:00, 11:00, 12:00:00.25, 13:00."""
    app, client = app_client
    window = {"time_start": "2024-01-01T09:00:00Z", "time_end": "2024-01-01T12:00:00Z"}

    def build(cur: duckdb.DuckDBPyConnection, staging: str) -> None:
        cur.execute(
            f"CREATE TABLE {quote_ident(staging)} (dataset_id VARCHAR, metric_name VARCHAR, metric_score DOUBLE, "
            "timestamp VARCHAR)"
        )
        cur.executemany(
            f"INSERT INTO {quote_ident(staging)} VALUES (?, 'm', 0.5, ?)",
            [[f"r{i}", text] for i, (text, _) in enumerate(LOOSE_ZONES)],
        )

    info = await app.state.store.land_dataset(kind="monitoring", source="sync:text_ts", build=build)
    params = {**window, "dataset_id": info.dataset_id}
    page = (await client.get("/api/store/data/monitoring", params=params)).json()
    assert sorted(row["dataset_id"] for row in page["data"]) == ["r1", "r2", "r3"] and page["total"] == 3
    summary = (await client.get("/api/monitoring/analytics/summary", params=params)).json()
    assert summary["kpis"]["total_records"] == 3
    meta = (await client.get("/api/store/metadata/monitoring", params={"dataset_id": info.dataset_id})).json()
    assert meta["metadata"]["time_range"] == {"min": "2024-01-01 08:00:00", "max": "2024-01-01 13:00:00"}

    lines = "".join(f"r{i},m,0.5,{text}\n" for i, (text, _) in enumerate(LOOSE_ZONES))
    up = await client.post(
        "/api/data/upload",
        files={"file": ("e.csv", "dataset_id,metric_name,metric_score,timestamp\n" + lines, "text/csv")},
    )
    assert up.status_code == 200, up.text
    assert [row["timestamp"] for row in up.json()["data"]] == [instant.isoformat() for _, instant in LOOSE_ZONES]
    page = (await client.get("/api/store/data/eval", params=window)).json()
    assert sorted(row["dataset_id"] for row in page["data"]) == ["r1", "r2", "r3"] and page["total"] == 3


async def test_time_bounds_and_time_range_of_a_synced_text_timestamp(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], Any], pg: PgSchema
) -> None:
    """A synced ``timestamp`` column holding text was compared with TRY_CAST: an offset was ignored
    (10:00+05:00 counted as 10:00 UTC) and a zone name or Unix time was NULL, so the window lost or
    gained rows that ``/api/monitoring/analytics`` (which reads them as UTC instants) counts."""
    pg.execute("CREATE TABLE ds (dataset_id text)")
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_score float8, created_at text)")
    stamps = [
        "2024-01-01T10:00:00+05:00",  # 05:00 UTC: before the window
        "2024-01-01T07:30:00+01:00",  # 06:30 UTC: inside
        "2024-01-01 09:00:00 Europe/Berlin",  # 08:00 UTC: inside
        "1704099600",  # 2024-01-01 09:00 UTC: inside
        "2024-01-01T06:00:00Z",  # inside
        "2024-01-01T12:00:00-03:00",  # 15:00 UTC: after
    ]
    for i, stamp in enumerate(stamps):
        pg.execute("INSERT INTO ds VALUES (%s)", [f"r{i}"])
        pg.execute("INSERT INTO rs VALUES (%s, 'm', 0.5, %s)", [f"r{i}", stamp])
    window = {"time_start": "2024-01-01T06:00:00Z", "time_end": "2024-01-01T09:00:00Z"}
    settings = configure(make_settings, pg)
    async with make_client(settings) as client:
        started = await client.post("/api/store/sync/monitoring")
        assert started.status_code == 200 and started.json()["datasets"] == ["monitoring"], started.text
        assert (await wait_state(client, "monitoring_data", {"ready", "error"}))["state"] == "ready"
        meta = (await client.get("/api/store/metadata/monitoring")).json()["metadata"]
        assert {c["column_name"]: c["column_type"] for c in meta["columns"]}["timestamp"] == "VARCHAR"
        # the range of the instants (it was the text's: min '1704099600', max '2024-01-01T12:00:00-03:00')
        assert meta["time_range"] == {"min": "2024-01-01 05:00:00", "max": "2024-01-01 15:00:00"}
        body = (await client.get("/api/store/data/monitoring", params=window)).json()
        assert sorted(r["dataset_id"] for r in body["data"]) == ["r1", "r2", "r3", "r4"]
        assert body["total"] == 4
        kpis = (await client.get("/api/monitoring/analytics/summary", params=window)).json()["kpis"]
        assert kpis["total_records"] == body["total"]


async def test_no_sync_starts_while_the_duckdb_master_switch_is_off(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], Any], source: PgSchema
) -> None:
    """``duckdb.enabled: false`` stopped the startup sync and the scheduler, but a POST still synced
    (and /status said ``enabled: false`` next to a ready table)."""
    settings = configure(make_settings, source, columns=MAP, duckdb={"enabled": False})
    async with make_client(settings) as client:
        for path in ("/api/store/sync/monitoring", "/api/store/sync"):
            resp = await client.post(path)
            assert resp.status_code == 400 and "duckdb.enabled" in resp.json()["detail"], resp.text
        body = (await client.get("/api/store/status")).json()
        assert body["enabled"] is False and body["running"] == {}
        assert body["datasets"]["monitoring_data"]["state"] == "not_synced"


async def test_a_columns_map_target_in_another_case_feeds_the_analytics(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], Any], source: PgSchema
) -> None:
    """``columns: {score: Metric_Score, metric: METRIC_NAME}`` stored those spellings; metadata and
    monitoring analytics look for metric_score / metric_name and reported no scores at all."""
    settings = configure(make_settings, source, columns={"metric": "METRIC_NAME", "score": "Metric_Score"})
    async with make_client(settings) as client:
        started = await client.post("/api/store/sync/monitoring")
        assert started.status_code == 200 and started.json()["datasets"] == ["monitoring"], started.text
        assert (await wait_state(client, "monitoring_data", {"ready", "error"}))["state"] == "ready"
        scores = [float(r[0]) for r in source.fetch("SELECT score FROM rs JOIN ds ON rs.dataset_id = ds.record_id")]
        meta = (await client.get("/api/store/metadata/monitoring")).json()["metadata"]
        names = [c["column_name"] for c in meta["columns"]]
        assert "metric_score" in names and "metric_name" in names
        assert meta["summary_stats"]["total_records"] == len(scores) == 60
        assert meta["summary_stats"]["avg_score"] == pytest.approx(sum(scores) / len(scores))
        assert meta["filter_values"]["metric_name"] == ["m1", "m2", "m3"]
        kpis = (await client.get("/api/monitoring/analytics/summary")).json()["kpis"]
        assert kpis["total_records"] == 60 and kpis["avg_score"] == pytest.approx(sum(scores) / len(scores))
