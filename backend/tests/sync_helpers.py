"""Shared helpers for the sync-engine and store-router tests: YAML configs and PostgreSQL sources."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
import yaml

from app.config import Settings
from tests.conftest import PgSchema


def configure(
    make_settings: Callable[..., Settings],
    pg: PgSchema,
    *,
    store: str = "monitoring",
    duckdb: dict[str, Any] | None = None,
    url: str | None = None,
    **fields: Any,
) -> Settings:
    """Write ``<store>_db.yaml`` (+ ``duckdb.yaml``) pointing at the test schema; return fresh Settings."""
    base = make_settings()
    cfg: dict[str, Any] = {
        "enabled": True,
        "url": url or pg.dsn,
        "dataset_query": f'SELECT * FROM "{pg.schema}".ds',
        "results_query": f'SELECT * FROM "{pg.schema}".rs',
    }
    cfg.update(fields)
    (base.config_dir / f"{store}_db.yaml").write_text(yaml.safe_dump({f"{store}_db": cfg}))
    if duckdb is not None:
        (base.config_dir / "duckdb.yaml").write_text(yaml.safe_dump({"duckdb": duckdb}))
    return make_settings()


def create_source(pg: PgSchema, n_cases: int = 20, metrics: int = 3) -> None:
    """``ds`` (one row per case) and ``rs`` (``metrics`` rows per case) with a control table for slow reads."""
    pg.execute(
        """CREATE TABLE ds (record_id text, query text, created_at timestamptz, meta jsonb,
                            flagged bool, note text, seq int)"""
    )
    pg.execute(
        """CREATE TABLE rs (dataset_id text, metric text, score float8, created_at timestamptz, seq int,
                            environment text)"""
    )
    pg.execute(
        f"""INSERT INTO ds SELECT 'c' || lpad(g::text, 4, '0'), 'question ' || g,
                  timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute',
                  jsonb_build_object('g', g, 'tags', jsonb_build_array('a', 'b')),
                  g % 2 = 0, CASE WHEN g % 3 = 0 THEN NULL WHEN g % 3 = 1 THEN '' ELSE 'x' END, g
           FROM generate_series(1, {int(n_cases)}) g"""
    )
    pg.execute(
        f"""INSERT INTO rs SELECT 'c' || lpad(g::text, 4, '0'), 'm' || m, (g * 7 + m) % 10 / 10.0,
                  timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute', g * 10 + m,
                  CASE WHEN g % 2 = 0 THEN 'prod' ELSE 'staging' END
           FROM generate_series(1, {int(n_cases)}) g, generate_series(1, {int(metrics)}) m"""
    )
    pg.execute("CREATE TABLE ctl (slow bool)")
    pg.execute("INSERT INTO ctl VALUES (false)")


def slow_results_query(pg: PgSchema) -> str:
    """A results query that sleeps 60 s while ``ctl.slow`` is true (for the fault drills)."""
    s = pg.schema
    return (
        f'SELECT r.* FROM "{s}".rs r, '
        f'(SELECT pg_sleep(CASE WHEN (SELECT slow FROM "{s}".ctl) THEN 60 ELSE 0 END)) AS _s'
    )


def joined_count(pg: PgSchema) -> int:
    """Inner-join row count computed by PostgreSQL itself."""
    return int(pg.fetch("SELECT count(*) FROM rs JOIN ds ON rs.dataset_id = ds.record_id")[0][0])


async def terminate_sync_backend(pg: PgSchema, app_name: str = "axis_sync_monitoring", wait_s: float = 30.0) -> int:
    """Wait for the sync's sleeping backend to appear in pg_stat_activity and terminate it."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while asyncio.get_running_loop().time() < deadline:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE starts_with(application_name, %s) AND state = 'active' "
                "AND query ILIKE %s "
                "AND strpos(query, %s) > 0 "  # only this test's schema: parallel test runs share the server
                "AND wait_event = 'PgSleep'",  # executing the read (asleep), not preparing it
                [app_name, "%pg_sleep%", pg.schema],
            ).fetchall()
            if rows:
                for (pid,) in rows:
                    conn.execute("SELECT pg_terminate_backend(%s)", [pid])
                return len(rows)
        await asyncio.sleep(0.05)
    raise AssertionError("the sync's PostgreSQL backend never appeared")


# Source types the two sync readers must land identically (column → PostgreSQL type), and the DuckDB
# type each lands as (the postgres extension's mapping; timestamptz becomes a UTC TIMESTAMP).
TYPED_COLUMNS: dict[str, tuple[str, str]] = {
    "c_bytea": ("bytea", "BLOB"),
    "c_interval": ("interval", "INTERVAL"),
    "c_int_arr": ("int[]", "INTEGER[]"),
    "c_text_arr": ("text[]", "VARCHAR[]"),
    "c_uuid": ("uuid", "UUID"),
    "c_num_12_4": ("numeric(12,4)", "DECIMAL(12,4)"),
    "c_num": ("numeric", "DOUBLE"),
    "c_tstz": ("timestamptz", "TIMESTAMP"),
    "c_ts": ("timestamp", "TIMESTAMP"),
    "c_date": ("date", "DATE"),
    "c_bigint_arr": ("int8[]", "BIGINT[]"),
    "c_float_arr": ("float8[]", "DOUBLE[]"),
    "c_bool_arr": ("bool[]", "BOOLEAN[]"),
    "c_num_arr": ("numeric(10,2)[]", "DECIMAL(10,2)[]"),
    "c_uuid_arr": ("uuid[]", "UUID[]"),
    "c_tstz_arr": ("timestamptz[]", "TIMESTAMP WITH TIME ZONE[]"),
    "c_date_arr": ("date[]", "DATE[]"),
    "c_interval_arr": ("interval[]", "INTERVAL[]"),
    "c_jsonb": ("jsonb", "VARCHAR"),
    "c_time": ("time", "TIME"),
    "c_timetz": ("timetz", "TIME WITH TIME ZONE"),
    "c_char": ("char(4)", "VARCHAR"),
    "c_num_wide": ("numeric(50,2)", "DOUBLE"),
    "c_money": ("money82", "DECIMAL(8,2)"),
    "c_mood": ("mood", "VARCHAR"),
    "c_inet": ("inet", "VARCHAR"),
    "c_bytea_arr": ("bytea[]", "VARCHAR"),
}


def create_typed_source(pg: PgSchema, n_rows: int = 250) -> None:
    """``ds`` with one column of each ``TYPED_COLUMNS`` type and ``rs`` with one result per ds row.

    r001 and r002 hold hand-picked edge values (±infinity, empty arrays and bytea, months in
    intervals, NULL array elements); r003 is NULL in every typed column; the rest are generated so
    that reads span several chunks and cross the Unix and PostgreSQL epochs.
    """
    pg.execute("CREATE TYPE mood AS ENUM ('sad', 'happy')")
    pg.execute("CREATE DOMAIN money82 AS numeric(8,2)")
    cols = ", ".join(f"{name} {pg_type}" for name, (pg_type, _) in TYPED_COLUMNS.items())
    pg.execute(f"CREATE TABLE ds (dataset_id text, {cols})")
    pg.execute(
        r"""INSERT INTO ds VALUES
        ('r001', '\xdeadbeef', '1 day 02:03:04.5', '{1,NULL,3}', '{"a",NULL,"b c"}',
         'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 12345678.1234, 0.1, 'infinity', '-infinity', 'infinity',
         '{9223372036854775807,-1}', '{1.5,NULL,-0.25}', '{t,f,NULL}', '{1.25,NULL}',
         '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', '{"2024-01-01 00:00:00+02",infinity,-infinity}',
         '{2024-02-29,-infinity}', '{"1 mon 2 days",NULL}', '{"k": [1, null]}', '12:34:56.789', '12:34:56+02',
         'ab', 123456789012345678901234567890.12, 12.5, 'happy', '10.0.0.1', '{"\\xde",NULL}'),
        ('r002', '\x', '-3 mons -2 days 01:00:00', '{}', '{}', '00000000-0000-0000-0000-000000000000', -0.0001,
         100.5, '-infinity', 'infinity', '-infinity', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '{}', '[]',
         '24:00:00', '00:00:00-05:30', '', 0, -0.01, 'sad', '::1', '{}')"""
    )
    pg.execute("INSERT INTO ds (dataset_id) VALUES ('r003')")
    pg.execute(
        f"""INSERT INTO ds SELECT 'r' || lpad(g::text, 3, '0'),
              CASE WHEN g % 7 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END,
              make_interval(months => g % 13, days => g % 31 - 15, secs => g * 1.5),
              CASE WHEN g % 6 = 0 THEN NULL ELSE ARRAY(SELECT k * g FROM generate_series(1, g % 4) k) END,
              ARRAY['t' || g, NULL, ''],
              md5(g::text)::uuid,
              (g * 1.2345 - 100)::numeric(12,4),
              CASE WHEN g % 9 = 0 THEN NULL ELSE g::numeric / 7 END,
              timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour 0.000123 sec',
              timestamp '1969-12-31 23:00:00' + g * interval '17 min 0.5 sec',
              date '1999-12-25' + g * 3,
              ARRAY[g::int8 * 1000000000000],
              ARRAY[g / 3.0::float8, NULL],
              ARRAY[g % 2 = 0],
              ARRAY[(g / 3.0)::numeric(10,2)],
              ARRAY[md5('u' || g)::uuid],
              ARRAY[timestamptz '2000-01-01 00:00:00+00' - g * interval '1 day 1 sec'],
              ARRAY[date '2000-01-01' - g],
              ARRAY[g * interval '1 min 1 us'],
              jsonb_build_object('g', g, 'even', g % 2 = 0),
              time '00:00' + g * interval '1 min 0.000001 sec',
              timetz '00:00:00+01' + g * interval '1 min',
              CASE WHEN g % 3 = 0 THEN 'x' ELSE 'yy' END,
              g * 1000000.01,
              CASE WHEN g % 5 = 0 THEN NULL ELSE g / 4.0 END,
              CASE WHEN g % 2 = 0 THEN 'happy' ELSE 'sad' END::mood,
              ('10.0.' || g % 256 || '.1')::inet,
              ARRAY[decode(lpad(to_hex(g % 256), 2, '0'), 'hex')]
           FROM generate_series(4, {int(n_rows)}) g"""
    )
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_score float8)")
    pg.execute("INSERT INTO rs SELECT dataset_id, 'm1', 0.5 FROM ds")
