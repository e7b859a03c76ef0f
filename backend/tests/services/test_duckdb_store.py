"""DuckDB store: limiter, cursors off the event loop, registry with staging + swap, metadata, KV."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import anyio
import duckdb
import numpy as np
import pytest

from app.config import Settings
from app.errors import Invalid, NotFound
from app.services.csv_ingest import ingest_csv_file
from app.services.duckdb_store import (
    DuckDBStore,
    StoreLocked,
    assert_off_event_loop,
    head_rows_sql,
    quote_ident,
    utc_instant_sql,
    utc_timestamp_sql,
)
from app.services.table_metadata import compute_table_metadata_sync
from tests.conftest import register_synced
from tests.services.test_csv_ingest import LOOSE_ZONES


def test_quote_ident_escapes_and_rejects() -> None:
    assert quote_ident("order") == '"order"'
    assert quote_ident('a"b') == '"a""b"'
    assert quote_ident("naïve col") == '"naïve col"'
    for bad in ("", "a\x00b"):
        with pytest.raises(Invalid):
            quote_ident(bad)


def test_utc_instant_equals_timezone_utc_and_python() -> None:
    """The epoch-arithmetic conversion gives the values of timezone('UTC', x) and of Python's astimezone."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'America/New_York'")  # the session zone must not matter
    con.execute("CREATE TABLE e (ts TIMESTAMPTZ)")
    edge = [
        "infinity",
        "-infinity",
        "0001-01-01 00:00:00+00",
        "1969-12-31 23:59:59.999999+00",
        "2024-03-10 02:30:00-08",
        "1900-05-05 12:00:00.123456+03",
        "9999-12-31 23:59:59.999999+05",
    ]
    con.executemany("INSERT INTO e VALUES (?)", [[v] for v in edge] + [[None]])
    rng = np.random.default_rng(7)
    micros = rng.integers(-60_000_000_000_000_000, 250_000_000_000_000_000, 2000)
    con.executemany("INSERT INTO e VALUES (make_timestamptz(?))", [[int(m)] for m in micros])
    expr = utc_instant_sql("ts")
    differing = con.execute(f"SELECT count(*) FROM e WHERE timezone('UTC', ts) IS DISTINCT FROM {expr}").fetchone()
    assert differing == (0,)
    in_python_range = "isfinite(ts) AND epoch_us(ts) BETWEEN -62135596800000000 AND 253402300799999999"
    rows = con.execute(f"SELECT {expr}, epoch_us(ts) FROM e WHERE {in_python_range}").fetchall()
    assert len(rows) > 1000
    epoch = dt.datetime(1970, 1, 1)
    assert [r[0] for r in rows] == [epoch + dt.timedelta(microseconds=r[1]) for r in rows]
    assert con.execute(f"SELECT {expr} IS NULL FROM e WHERE ts IS NULL").fetchall() == [(True,)]
    assert con.execute(f"SELECT typeof({expr}) FROM e LIMIT 1").fetchone() == ("TIMESTAMP",)
    con.execute("CREATE TABLE t (s VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?)", [["2024-05-01T10:00:00+02:00"], ["2024-05-01 10:00:00"], ["junk"]])
    text = con.execute(f"SELECT {utc_timestamp_sql('s', 'VARCHAR')} FROM t").fetchall()
    assert text == [(dt.datetime(2024, 5, 1, 8),), (dt.datetime(2024, 5, 1, 10),), (None,)]


async def test_text_with_a_loose_zone_reads_as_the_utc_instant_other_text_as_before(store: DuckDBStore) -> None:
    """A zone after a blank or a lowercase ``z`` was NULL (DuckDB's cast rejects it); every other text as before."""
    others = [
        ("2024-01-01T10:00:00Z", dt.datetime(2024, 1, 1, 10)),
        ("2024-01-01 10:00:00+02:00", dt.datetime(2024, 1, 1, 8)),
        ("2024-01-01 10:00:00 Europe/Paris", dt.datetime(2024, 1, 1, 9)),
        ("2024-01-01 10:00:00 utc", dt.datetime(2024, 1, 1, 10)),
        ("2024-01-01 10:00:00", dt.datetime(2024, 1, 1, 10)),  # zoneless: UTC
        ("1704103200", dt.datetime(2024, 1, 1, 10)),  # Unix seconds
        ("infinity", dt.datetime.max),
        ("not a date", None),
        ("10:00:00 +02:00", None),  # a time of day without a date
        ("2024-01-01 10:00:00  +02:00", None),  # two blanks
        (None, None),
    ]
    cases = LOOSE_ZONES + others

    def build(cur: duckdb.DuckDBPyConnection, staging: str) -> None:
        cur.execute(f"CREATE TABLE {quote_ident(staging)} (i INTEGER, s VARCHAR)")
        cur.executemany(f"INSERT INTO {quote_ident(staging)} VALUES (?, ?)", [[i, t] for i, (t, _) in enumerate(cases)])

    info = await store.land_dataset(kind="monitoring", source="text", build=build)
    instant = utc_timestamp_sql("s", "VARCHAR")
    got = await store.fetch(f"SELECT {instant} FROM {quote_ident(info.table_name)} ORDER BY i")
    assert [r[0] for r in got.rows] == [instant for _, instant in cases]


def test_store_sessions_run_in_utc_whatever_the_machine_zone(tmp_path: Path) -> None:
    """In a process whose zone is New York, the store's cursors still convert TIMESTAMPTZ in UTC."""
    script = f"""
import asyncio, json
from pathlib import Path
from app.services.duckdb_store import DuckDBStore

async def main() -> None:
    store = DuckDBStore(Path({str(tmp_path / "tz.duckdb")!r}))
    await store.open()
    res = await store.fetch(
        "SELECT current_setting('TimeZone'), CAST(CAST(TIMESTAMPTZ '2026-01-01 12:00:00+02' AS TIMESTAMP) AS VARCHAR), "
        "CAST(CAST('2026-01-01 10:00:00' AS TIMESTAMPTZ) AS VARCHAR)"
    )
    await store.close()
    print(json.dumps(list(res.rows[0])))

asyncio.run(main())
"""
    env = {**os.environ, "TZ": "America/New_York"}
    probe = "import duckdb; print(duckdb.sql(\"SELECT current_setting('TimeZone')\").fetchone()[0])"
    machine = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert machine.stdout.strip() == "America/New_York"  # the zone a plain DuckDB connection gets here
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["UTC", "2026-01-01 10:00:00", "2026-01-01 10:00:00+00"]


async def test_assert_off_event_loop_raises_on_the_loop() -> None:
    with pytest.raises(RuntimeError):
        assert_off_event_loop()
    await anyio.to_thread.run_sync(assert_off_event_loop)  # fine in a worker thread


async def test_reads_run_in_worker_threads_under_the_limiter(store: DuckDBStore) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    def _read(cur: duckdb.DuckDBPyConnection) -> int:
        seen.append(threading.get_ident())
        row = cur.execute("SELECT 41 + 1").fetchone()
        return int(row[0]) if row else 0

    assert await store.run_read(_read) == 42
    assert seen and seen[0] != loop_thread

    # with every token borrowed, a read waits; releasing them lets it finish
    limiter = store.limiter
    borrowers = [object() for _ in range(int(limiter.total_tokens))]
    for b in borrowers:
        await limiter.acquire_on_behalf_of(b)
    task = asyncio.create_task(store.fetch("SELECT 1"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not task.done()
    assert limiter.borrowed_tokens == limiter.total_tokens
    for b in borrowers:
        limiter.release_on_behalf_of(b)
    assert (await task).rows == [(1,)]


# About 100 s of work on two cores (300 M rows take 1 s): it only ends early when interrupted.
SLOW_SQL = "SELECT count(*) FROM range(30000000000) a WHERE a.range % 7 = 3"


async def test_cancelling_a_read_interrupts_its_duckdb_query(store: DuckDBStore) -> None:
    """A cancelled caller stops the query (interrupted, not left running) and frees its limiter slot."""
    outcome: list[BaseException] = []
    entered = threading.Event()

    def _slow(cur: duckdb.DuckDBPyConnection) -> Any:
        entered.set()
        try:
            return cur.execute(SLOW_SQL).fetchall()
        except BaseException as exc:
            outcome.append(exc)
            raise

    task = asyncio.create_task(store.run_read(_slow))
    assert await anyio.to_thread.run_sync(entered.wait, 10.0)
    await asyncio.sleep(0.2)
    t0 = asyncio.get_running_loop().time()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.get_running_loop().time() - t0 < 5.0
    # the worker thread has finished, with DuckDB's interrupt (not the query's result)
    assert len(outcome) == 1 and isinstance(outcome[0], duckdb.InterruptException)
    assert store.limiter.borrowed_tokens == 0
    assert (await store.fetch("SELECT 6 * 7")).rows == [(42,)]


async def test_a_read_that_goes_on_after_an_interrupt_is_interrupted_again(store: DuckDBStore) -> None:
    """A read that swallows one interrupt and runs another statement is stopped too."""
    outcome: list[str] = []
    entered = threading.Event()

    def _stubborn(cur: duckdb.DuckDBPyConnection) -> Any:
        entered.set()
        try:
            cur.execute(SLOW_SQL).fetchall()
        except duckdb.InterruptException:
            outcome.append("first interrupted")
        try:
            return cur.execute(SLOW_SQL).fetchall()
        except duckdb.InterruptException:
            outcome.append("second interrupted")
            raise

    task = asyncio.create_task(store.run_read(_stubborn))
    assert await anyio.to_thread.run_sync(entered.wait, 10.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert outcome == ["first interrupted", "second interrupted"]


async def test_a_read_cancelled_while_queued_never_runs(store: DuckDBStore) -> None:
    ran: list[bool] = []
    limiter = store.limiter
    borrowers = [object() for _ in range(int(limiter.total_tokens))]
    for b in borrowers:
        await limiter.acquire_on_behalf_of(b)
    task = asyncio.create_task(store.run_read(lambda cur: ran.append(True)))
    for _ in range(20):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for b in borrowers:
        limiter.release_on_behalf_of(b)
    await asyncio.sleep(0.2)
    assert ran == [] and limiter.borrowed_tokens == 0


@pytest.mark.parametrize("how", ["task.cancel", "anyio scope"])
async def test_a_cancelled_write_finishes_under_the_lock_before_the_cancel(store: DuckDBStore, how: str) -> None:
    """A direct Task.cancel() (uvicorn past its graceful-shutdown bound) got through while the worker was
    still writing: the write lock was released under it, so another write or close() could run meanwhile."""
    entered, events = threading.Event(), []

    def _write(cur: duckdb.DuckDBPyConnection) -> None:
        entered.set()
        cur.execute("CREATE TABLE w AS SELECT range AS v FROM range(60000000) WHERE range % 7 = 3")
        events.append("write done")

    async def _other_write() -> None:
        await store.execute_write("CREATE TABLE later AS SELECT count(*) AS n FROM w")  # sees the whole table
        events.append("next write")

    if how == "task.cancel":
        task = asyncio.create_task(store.run_write(_write))
        assert await anyio.to_thread.run_sync(entered.wait, 10.0)
        follower = asyncio.create_task(_other_write())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        events.append("cancel raised")
        await follower
    else:
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.run_write, _write)
            assert await anyio.to_thread.run_sync(entered.wait, 10.0)
            tg.cancel_scope.cancel()
        events.append("cancel raised")
        await _other_write()
    assert events[0] == "write done" and sorted(events[1:]) == ["cancel raised", "next write"]
    assert (await store.fetch("SELECT n FROM later")).rows == [(len(range(3, 60000000, 7)),)]


async def test_a_cancelled_write_that_fails_logs_its_error_once_not_as_never_retrieved(
    store: DuckDBStore, caplog: pytest.LogCaptureFixture
) -> None:
    """A write that failed after its caller was cancelled (Task.cancel()) left its error unretrieved: asyncio logged
    "Task exception was never retrieved" with a traceback when the worker's task was collected."""
    import gc

    entered, go = threading.Event(), threading.Event()

    def _failing(cur: duckdb.DuckDBPyConnection) -> None:
        entered.set()
        go.wait(10.0)
        cur.execute("SELECT CAST('not a number' AS INTEGER)")

    task = asyncio.create_task(store.run_write(_failing))
    assert await anyio.to_thread.run_sync(entered.wait, 10.0)
    task.cancel()
    await asyncio.sleep(0)  # the cancellation is delivered while the worker still runs
    go.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    del task
    gc.collect()
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text
    assert "A write whose caller was cancelled failed" in caplog.text and "not a number" in caplog.text
    assert (await store.fetch("SELECT 42")).rows == [(42,)]


async def test_land_dataset_swaps_atomically_and_failed_builds_leave_nothing(store: DuckDBStore) -> None:
    def build(cur: duckdb.DuckDBPyConnection, staging: str) -> None:
        cur.execute(f"CREATE TABLE {quote_ident(staging)} AS SELECT range AS v FROM range(10)")

    info = await store.land_dataset(kind="eval", source="upload:a.csv", build=build, format="wide")
    assert info.row_count == 10 and info.columns == [{"name": "v", "type": "BIGINT"}]
    assert (await store.get_dataset(info.dataset_id)).table_name == info.table_name

    def bad(cur: duckdb.DuckDBPyConnection, staging: str) -> None:
        cur.execute(f"CREATE TABLE {quote_ident(staging)} AS SELECT 1 AS v")
        raise ValueError("parse failed")

    with pytest.raises(ValueError):
        await store.land_dataset(kind="eval", source="upload:b.csv", build=bad, table_name=info.table_name)
    # previous table intact, no staging left behind, registry unchanged
    assert (await store.fetch(f"SELECT count(*) FROM {quote_ident(info.table_name)}")).rows == [(10,)]
    leftovers = await store.fetch("SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '%staging%'")
    assert leftovers.rows == []
    assert len(await store.list_datasets("eval")) == 1

    with pytest.raises(Invalid):
        await store.land_dataset(kind="bogus", source="x", build=build)


async def test_registry_resolves_latest_and_checks_kind(store: DuckDBStore) -> None:
    with pytest.raises(NotFound):
        await store.resolve_dataset("monitoring", None)

    def build(cur: duckdb.DuckDBPyConnection, staging: str) -> None:
        cur.execute(f"CREATE TABLE {quote_ident(staging)} AS SELECT 1 AS x")

    first = await store.land_dataset(kind="monitoring", source="upload:1.csv", build=build)
    second = await store.land_dataset(kind="monitoring", source="example:monitoring", build=build)
    other = await store.land_dataset(kind="eval", source="upload:e.csv", build=build)
    assert (await store.resolve_dataset("monitoring", None)).dataset_id == second.dataset_id
    assert (await store.resolve_dataset("monitoring", first.dataset_id)).dataset_id == first.dataset_id
    with pytest.raises(Invalid):
        await store.resolve_dataset("monitoring", other.dataset_id)
    with pytest.raises(NotFound):
        await store.get_dataset("nope")

    await register_synced(store, "monitoring", "monitoring_data")
    assert (await store.resolve_dataset("monitoring", None)).dataset_id == "sync_monitoring"
    assert await store.is_visible_table(first.table_name)
    assert not await store.is_visible_table("_store_kv")
    await store.delete_dataset(first.dataset_id)
    assert not await store.table_exists(first.table_name)


async def test_registry_lookups_are_cached_until_the_next_write(store: DuckDBStore) -> None:
    def build(cur: duckdb.DuckDBPyConnection, staging: str) -> None:
        cur.execute(f"CREATE TABLE {quote_ident(staging)} AS SELECT 1 AS x")

    first = await store.land_dataset(kind="monitoring", source="upload:1.csv", build=build)
    assert (await store.resolve_dataset("monitoring", None)).dataset_id == first.dataset_id
    reads = store.read_count
    cached = await store.resolve_dataset("monitoring", None)
    by_id = await store.resolve_dataset("monitoring", first.dataset_id)
    by_id_again = await store.get_dataset(first.dataset_id)
    assert store.read_count == reads + 1  # only the by-id lookup's first call queried DuckDB
    assert cached.dataset_id == by_id.dataset_id == by_id_again.dataset_id == first.dataset_id
    # Callers get copies: mutating one does not change what the next caller sees.
    cached.format = "mutated"
    cached.extra["x"] = 1
    again = await store.resolve_dataset("monitoring", None)
    assert again.format != "mutated" and "x" not in again.extra

    # Any write retires the cache: a registry UPDATE, a newer dataset, a delete.
    await store.run_write(
        lambda cur: cur.execute("UPDATE datasets SET format = 'tree_format' WHERE dataset_id = ?", [first.dataset_id])
    )
    assert (await store.get_dataset(first.dataset_id)).format == "tree_format"
    second = await store.land_dataset(kind="monitoring", source="upload:2.csv", build=build)
    assert (await store.resolve_dataset("monitoring", None)).dataset_id == second.dataset_id
    await store.delete_dataset(second.dataset_id)
    assert (await store.resolve_dataset("monitoring", None)).dataset_id == first.dataset_id
    with pytest.raises(NotFound):
        await store.get_dataset(second.dataset_id)


async def test_metadata_and_kv_persist_across_reopen(settings: Settings) -> None:
    st = DuckDBStore(settings.duckdb_path)
    await st.open()
    await st.set_metadata("monitoring_data", {"row_count": 3, "columns": []})
    await st.kv_set("_watermark_x", {"value": "5", "pg_cast": "bigint"})
    await st.kv_set("other", [1, 2])
    assert await st.kv_get("_watermark_x") == {"value": "5", "pg_cast": "bigint"}
    await st.close()
    assert not await st.probe()  # closed

    st2 = DuckDBStore(settings.duckdb_path)
    await st2.open()
    try:
        assert st2.get_cached_metadata("monitoring_data") == {"row_count": 3, "columns": []}  # loaded at open
        assert await st2.kv_get("other") == [1, 2]
        # metadata and KV live in separate tables (DB-43)
        assert (await st2.fetch("SELECT count(*) FROM _store_metadata WHERE table_name = 'other'")).rows == [(0,)]
        await st2.run_write(lambda cur: DuckDBStore.kv_delete_sync(cur, "other"))
        assert await st2.kv_get("other") is None
    finally:
        await st2.close()


async def test_compute_metadata_try_casts_text_scores(store: DuckDBStore) -> None:
    rng = np.random.default_rng(7)
    scores = [round(float(x), 3) for x in rng.random(40)]
    latency = [float(x) for x in rng.integers(100, 900, 40)]

    def build(cur: duckdb.DuckDBPyConnection) -> None:
        cur.execute(
            "CREATE TABLE m (metric_score VARCHAR, latency_ms DOUBLE, metric_category VARCHAR, "
            "environment VARCHAR, timestamp TIMESTAMP)"
        )
        rows: list[tuple[Any, ...]] = [
            (str(s), lat, "SCORE" if i % 4 else None, "prod" if i % 2 else "dev", f"2024-01-{i % 28 + 1:02d} 00:00:00")
            for i, (s, lat) in enumerate(zip(scores, latency, strict=True))
        ]
        rows.append(("positive", 100.0, "CLASSIFICATION", "prod", "2024-02-01 00:00:00"))
        cur.executemany("INSERT INTO m VALUES (?, ?, ?, ?, ?)", rows)

    await store.run_write(build)
    meta = await store.run_read(lambda cur: compute_table_metadata_sync(cur, "m"))
    assert meta["row_count"] == 41
    assert meta["filter_values"]["environment"] == ["dev", "prod"]
    assert meta["filter_values"]["metric_category"] == ["CLASSIFICATION", "SCORE"]
    assert meta["time_range"] == {"min": "2024-01-01 00:00:00", "max": "2024-02-01 00:00:00"}
    stats = meta["summary_stats"]
    assert stats["total_records"] == 40  # the text score is skipped, not an error (DB-30)
    assert stats["avg_score"] == pytest.approx(statistics.mean(scores))
    assert stats["pass_rate"] == pytest.approx(100 * sum(s >= 0.5 for s in scores) / 40)
    # latency of the scored rows only (the text-scored row's 100 is left out), as monitoring /summary
    assert stats["p95_latency"] == pytest.approx(float(np.quantile(latency, 0.95)))
    assert meta["summary_stats_by_category"]["CLASSIFICATION"]["total_records"] == 0
    assert meta["summary_stats_by_category"]["SCORE"]["total_records"] == 40


async def test_ingest_pool_narrows_duckdb_threads_for_the_block_only(settings: Settings, tmp_path: Path) -> None:
    store = DuckDBStore(settings.duckdb_path, threads=4, ingest_threads=1)
    await store.open()
    try:

        def threads(cur: duckdb.DuckDBPyConnection) -> int:
            row = cur.execute("SELECT current_setting('threads')").fetchone()
            return int(row[0]) if row else -1

        def inside(cur: duckdb.DuckDBPyConnection) -> tuple[int, int]:
            with store.ingest_pool(cur):
                seen = threads(cur), threads(store._connection().cursor())  # database-wide
            return seen[0], seen[1]

        assert await store.run_write(inside) == (1, 1)
        assert await store.run_read(threads) == 4

        def failing(cur: duckdb.DuckDBPyConnection) -> None:
            with store.ingest_pool(cur):
                raise RuntimeError("parse failed")

        with pytest.raises(RuntimeError):
            await store.run_write(failing)
        assert await store.run_read(threads) == 4  # restored on failure too

        # a real CSV upload parses inside the narrowed pool and leaves it as it was
        csv = tmp_path / "u.csv"
        csv.write_text("metric_name,metric_score\n" + "".join(f"m{i % 3},{i / 100}\n" for i in range(100)))
        res = await ingest_csv_file(store, csv, kind="eval", source="upload:u.csv")
        assert res.dataset.row_count == 100 and await store.run_read(threads) == 4
        store.ingest_threads = None
        assert await store.run_write(inside) == (4, 4)  # None: the pool is left alone
    finally:
        await store.close()


async def test_run_staging_is_off_loop_and_interruptible(store: DuckDBStore) -> None:
    assert await store.run_staging(lambda cur: threading.get_ident()) != threading.get_ident()
    started = threading.Event()

    def slow(cur: duckdb.DuckDBPyConnection) -> Any:
        started.set()
        return cur.execute("SELECT count(*) FROM range(10000000000) a").fetchall()

    task = asyncio.create_task(store.run_staging(slow))
    assert await anyio.to_thread.run_sync(started.wait, 30)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await store.fetch("SELECT 1")).rows == [(1,)]


async def test_head_rows_keep_insertion_order_after_parallel_load_and_deletes(
    store: DuckDBStore, tmp_path: Any
) -> None:
    # A multi-row-group table written by DuckDB's parallel CSV reader, then rows deleted: pages
    # from head_rows_sql equal the same pages under an explicit ORDER BY rowid.
    csv_path = tmp_path / "rows.csv"
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT i AS n, (i * 7919) % 1000 AS k, 'row ' || i AS label FROM range(400000) t(i)) "
        f"TO '{csv_path}' (HEADER)"
    )
    con.close()

    def _build(cur: duckdb.DuckDBPyConnection) -> list[bool]:
        cur.execute(f"CREATE TABLE ordered AS SELECT * FROM read_csv('{csv_path}', buffer_size = 1048576)")
        cur.execute("DELETE FROM ordered WHERE k < 100")
        same = []
        for limit, offset in [(5, 0), (50000, 0), (1000, 123456), (70000, 300000)]:
            head = cur.execute(head_rows_sql("ordered"), [limit, offset]).fetchall()
            ref = cur.execute("SELECT * FROM ordered ORDER BY rowid LIMIT ? OFFSET ?", [limit, offset]).fetchall()
            same.append(head == ref and len(head) == min(limit, 360000 - offset))
        return same

    assert await store.run_write(_build) == [True, True, True, True]


async def test_cancelled_staging_work_is_interrupted_without_a_stray_error(
    store: DuckDBStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Cancelling run_staging interrupts the query; its InterruptException is retrieved, never logged."""
    import gc

    started = threading.Event()

    def _long(cur: duckdb.DuckDBPyConnection) -> Any:
        started.set()
        return cur.execute("SELECT count(*) FROM range(100000000000) t(a) WHERE a % 7 = 3").fetchone()

    task = asyncio.create_task(store.run_staging(_long))
    await asyncio.to_thread(started.wait, 10)
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    gc.collect()
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text
    assert (await store.fetch("SELECT 42")).rows == [(42,)]  # the store keeps serving


def test_a_store_held_by_another_process_is_named_with_its_pid(tmp_path: Path) -> None:
    path = tmp_path / "held.duckdb"
    code = f"import duckdb, sys, time; c = duckdb.connect({str(path)!r}); print('ready', flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLocked) as err:
            DuckDBStore(path).open_sync()
        assert str(err.value) == (
            f"The store {path} is open in another process (PID {holder.pid}): run one AXIS server per store file, "
            "or give this one another AXIS_HOME or duckdb.path"
        )
    finally:
        holder.kill()
        holder.wait(30)


async def test_tables_a_killed_load_left_are_dropped_at_open(tmp_path: Path) -> None:
    path = tmp_path / "orphans.duckdb"
    store = DuckDBStore(path)
    await store.open()

    def build(cur: duckdb.DuckDBPyConnection, staging: str) -> None:
        cur.execute(f"CREATE TABLE {quote_ident(staging)} AS SELECT 1 AS x")

    kept = await store.land_dataset(kind="eval", source="test", build=build)
    left = [
        "ds_eval_0123456789ab_staging",  # an upload's staging table
        "monitoring_dataset__staging",  # a sync's
        "ds_human_signals_0123456789ab_cases",  # cases built before a swap that never came
        "ds_human_signals_0123456789ab_staging__norm",
        f"{kept.table_name}_staging__typed",
        "ds_monitoring_0123456789ab__records",  # derived from a dataset that is gone
    ]
    for table in left:
        await store.run_write(lambda cur, t=table: cur.execute(f"CREATE TABLE {quote_ident(t)} (x INT)"))
    await store.run_write(lambda cur: cur.execute("CREATE TABLE monitoring_dataset (x INT)"))  # a sync's live table
    left.append("ds_monitoring_0123456789ab_staging__raw")  # a database import's scratch view
    await store.run_write(lambda cur: cur.execute(f"CREATE VIEW {quote_ident(left[-1])} AS SELECT 1 AS x"))
    await store.close()
    again = DuckDBStore(path)
    await again.open()
    try:
        names = {r[0] for r in (await again.fetch("SELECT table_name FROM duckdb_tables()")).rows}
        names |= {r[0] for r in (await again.fetch("SELECT view_name FROM duckdb_views() WHERE NOT internal")).rows}
        assert not names & set(left)
        assert {kept.table_name, "monitoring_dataset"} <= names
        assert (await again.fetch(f"SELECT x FROM {quote_ident(kept.table_name)}")).rows == [(1,)]
    finally:
        await again.close()
