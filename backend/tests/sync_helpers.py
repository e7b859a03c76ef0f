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
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND state = 'active' AND query ILIKE %s "
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
