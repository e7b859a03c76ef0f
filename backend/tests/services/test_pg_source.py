"""``pg_source.fetched_rows_to_arrow``: the Arrow form of asyncpg rows that eval/monitoring db-imports land."""

from __future__ import annotations

import datetime as dt
import decimal
import math
from collections.abc import Callable

import duckdb
import pyarrow as pa

from app.config import Settings
from app.services.pg_source import fetch_table, fetched_rows_to_arrow
from tests.conftest import PgSchema


def test_numerics_are_correctly_rounded_doubles() -> None:
    """NUMERIC values land as the nearest double (Arrow's decimal cast gave 0.7000000000000001 for 0.700)."""
    texts = ["0.700", "1.000", "2.675", "-0.3"]
    table = fetched_rows_to_arrow(["score"], [(decimal.Decimal(t),) for t in texts] + [(None,)])
    assert table.schema.field("score").type == pa.float64()
    assert table.column("score").to_pylist() == [0.7, 1.0, 2.675, -0.3, None]
    with_nan = fetched_rows_to_arrow(["score"], [(decimal.Decimal("0.1"),), (decimal.Decimal("NaN"),)])
    got = with_nan.column("score").to_pylist()
    assert got[0] == 0.1 and math.isnan(got[1])


def test_aware_timestamps_become_naive_utc_and_odd_values_text() -> None:
    moment = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    table = fetched_rows_to_arrow(["t", "mixed"], [(moment, 1), (None, "x")])
    assert table.column("t").to_pylist() == [dt.datetime(2025, 1, 2, 1, 4, 5), None]
    assert table.column("mixed").to_pylist() == ["1", "x"]


def test_intervals_become_durations() -> None:
    """An interval column lands as a DuckDB INTERVAL (as the sync lands it), not as Python's text."""
    table = fetched_rows_to_arrow(["latency"], [(dt.timedelta(seconds=1.5),), (None,)])
    assert table.schema.field("latency").type == pa.duration("us")
    assert table.column("latency").to_pylist() == [dt.timedelta(seconds=1.5), None]


async def test_fetched_intervals_keep_months_and_days(pg: PgSchema, make_settings: Callable[..., Settings]) -> None:
    """One-shot imports read intervals as (months, days, µs), so the stored INTERVAL equals PostgreSQL's
    (the driver's timedelta made a year 365 days); DuckDB's epoch of it is PostgreSQL's extract(epoch)."""
    pg.execute("CREATE TABLE spans (id int, iv interval, ivs interval[])")
    pg.execute(
        "INSERT INTO spans VALUES (1, '1 year 2 mons 3 days 04:05:06.789', ARRAY['1 year'::interval, NULL]), "
        "(2, '-1 days +02:00:00', NULL), (3, NULL, NULL)"
    )
    cfg = make_settings().human_signals_db.model_copy(
        update={"host": pg.host, "port": pg.port, "database": pg.database, "username": pg.user, "ssl_mode": "disable"}
    )
    table, note = await fetch_table(cfg, pg.schema, "spans", application_name="axis-test-import")
    assert note == ""  # every row read
    assert table.column("iv").to_pylist() == [
        pa.MonthDayNano([14, 3, 14_706_789_000_000]),
        pa.MonthDayNano([0, -1, 7_200_000_000_000]),
        None,
    ]
    con = duckdb.connect()
    con.register("spans", table)
    got = con.execute("SELECT id, epoch(iv), epoch(ivs[1]) FROM spans ORDER BY id").fetchall()
    want = pg.fetch(
        "SELECT id, extract(epoch FROM iv)::float8, extract(epoch FROM ivs[1])::float8 FROM spans ORDER BY id"
    )
    assert got == want
