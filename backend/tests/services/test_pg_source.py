"""``pg_source.records_to_arrow``: the Arrow form of asyncpg rows that eval/monitoring db-imports land."""

from __future__ import annotations

import datetime as dt
import decimal
import math

import pyarrow as pa

from app.services.pg_source import records_to_arrow


def test_numerics_are_correctly_rounded_doubles() -> None:
    """NUMERIC values land as the nearest double (Arrow's decimal cast gave 0.7000000000000001 for 0.700)."""
    texts = ["0.700", "1.000", "2.675", "-0.3"]
    table = records_to_arrow(["score"], [(decimal.Decimal(t),) for t in texts] + [(None,)])
    assert table.schema.field("score").type == pa.float64()
    assert table.column("score").to_pylist() == [0.7, 1.0, 2.675, -0.3, None]
    with_nan = records_to_arrow(["score"], [(decimal.Decimal("0.1"),), (decimal.Decimal("NaN"),)])
    got = with_nan.column("score").to_pylist()
    assert got[0] == 0.1 and math.isnan(got[1])


def test_aware_timestamps_become_naive_utc_and_odd_values_text() -> None:
    moment = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    table = records_to_arrow(["t", "mixed"], [(moment, 1), (None, "x")])
    assert table.column("t").to_pylist() == [dt.datetime(2025, 1, 2, 1, 4, 5), None]
    assert table.column("mixed").to_pylist() == ["1", "x"]


def test_intervals_become_durations() -> None:
    """An interval column lands as a DuckDB INTERVAL (as the sync lands it), not as Python's text."""
    table = records_to_arrow(["latency"], [(dt.timedelta(seconds=1.5),), (None,)])
    assert table.schema.field("latency").type == pa.duration("us")
    assert table.column("latency").to_pylist() == [dt.timedelta(seconds=1.5), None]
