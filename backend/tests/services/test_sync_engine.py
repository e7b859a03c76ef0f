"""Sync engine against the real PostgreSQL (``pg``) and real DuckDB files."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import duckdb
import pytest

from app.config import Settings
from app.errors import Invalid
from app.services import human_signals_service as hs
from app.services.background import BackgroundTasks
from app.services.duckdb_store import DuckDBStore
from app.services.human_signals_service import CASES_SYNC_KV, RAW_SYNC_KV
from app.services.leader_lock import LeaderLock
from app.services.sync_asyncpg_reader import numeric_duck_type
from app.services.sync_engine import (
    WATERMARK_PREFIX,
    SyncEngine,
    due_datasets,
    seconds_until_next,
)
from app.services.sync_queries import incremental_query, scrub_sync_error, wrap_query
from app.services.sync_targets import TARGETS, column_renames, metadata_parts
from app.services.table_metadata import compute_table_metadata_sync
from tests.conftest import PgSchema, fetch_dicts, response_rows
from tests.sync_helpers import (
    TYPED_COLUMNS,
    configure,
    create_source,
    create_typed_source,
    joined_count,
    slow_results_query,
    terminate_sync_backend,
)

MAP = {"metric": "metric_name", "score": "metric_score"}
READERS = ["postgres_extension", "asyncpg"]


class Env:
    """A store + engine on the settings' DuckDB file."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = DuckDBStore(settings.duckdb_path, query_concurrency=4)
        self.engine = SyncEngine(settings, self.store, BackgroundTasks())

    async def __aenter__(self) -> Env:
        await self.store.open()
        await self.engine.startup()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.engine.shutdown()
        await self.store.close()

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return (await self.store.fetch(sql)).rows

    async def count(self, table: str = "monitoring_data") -> int:
        return int((await self.rows(f'SELECT count(*) FROM "{table}"'))[0][0])

    async def sync_types(self, rows: int, reader: str) -> dict[str, str]:
        """Sync monitoring with ``reader`` (it must land ``rows`` rows); the stored dataset side's column types."""
        res = await self.engine.sync_dataset("monitoring")
        assert res.status == "ready" and res.rows == rows and res.reader == reader, res.error
        return {c["name"]: c["type"] for c in await self.store.describe("monitoring_dataset")}


@pytest.fixture
def source(pg: PgSchema) -> PgSchema:
    create_source(pg, n_cases=20, metrics=3)
    return pg


@pytest.fixture
async def env(make_settings: Callable[..., Settings], source: PgSchema) -> AsyncIterator[Env]:
    settings = configure(make_settings, source, columns=MAP, incremental_column="seq")
    async with Env(settings) as e:
        yield e


# ---------------------------------------------------------------------- full sync
async def test_metadata_parts_split_the_join_view_without_changing_it(env: Env) -> None:
    res = await env.engine.sync_dataset("monitoring")
    assert res.status == "ready", res.error
    target = TARGETS["monitoring"]

    def _compute(cur: duckdb.DuckDBPyConnection) -> tuple[int, dict[str, Any], dict[str, Any], Any]:
        parts = metadata_parts(cur, target, part_rows=6)
        assert parts is not None
        per_part = [cur.execute(f"SELECT count(*) FROM {p}").fetchone() for p in parts]
        split = compute_table_metadata_sync(cur, target.view, parts)
        whole = compute_table_metadata_sync(cur, target.view)
        return len(parts), split, whole, (per_part, metadata_parts(cur, target, part_rows=20))

    n_parts, split, whole, (per_part, single) = await env.store.run_read(_compute)
    assert n_parts == 4 and single is None  # ceil(20 dataset rows / 6); 20 rows fit one part
    assert sum(c[0] for c in per_part) == res.rows == 60  # the parts are disjoint and cover the view
    assert split["row_count"] == whole["row_count"] == 60
    for key in ("filter_values", "time_range", "columns"):
        assert split[key] == whole[key]
    got, want = split["summary_stats"], whole["summary_stats"]
    assert got["total_records"] == want["total_records"] == 60
    assert got["avg_score"] == pytest.approx(want["avg_score"], rel=1e-12)
    assert got["pass_rate"] == pytest.approx(want["pass_rate"], rel=1e-12)


@pytest.mark.parametrize("reader", READERS)
async def test_full_sync_keeps_types_and_builds_the_join_view(
    make_settings: Callable[..., Settings], source: PgSchema, reader: str
) -> None:
    source.execute(
        "INSERT INTO ds VALUES ('tz1', 'offset row', '2024-03-01 12:30:00+02', '{\"k\": [1, null]}', true, '', 999)"
    )
    source.execute("INSERT INTO rs VALUES ('tz1', 'm1', 0.25, '2024-03-01 12:30:00+02', 9991, NULL)")
    source.execute("INSERT INTO rs VALUES ('orphan', 'm1', 0.5, '2024-03-01 12:30:00+00', 9992, 'prod')")
    settings = configure(make_settings, source, columns=MAP, duckdb={"sync_reader": reader})
    async with Env(settings) as e:
        res = await e.engine.sync_dataset("monitoring")
        assert res.status == "ready", res.error
        assert res.reader == reader and res.sync_type == "full" and not res.truncated
        # inner join: the orphan result vanishes; count equals PostgreSQL's own join count
        assert res.rows == joined_count(source) == 20 * 3 + 1
        assert await e.count() == res.rows

        types = {c["name"]: c["type"] for c in await e.store.describe("monitoring_data")}
        assert types["timestamp"] == "TIMESTAMP"  # timestamptz → plain UTC TIMESTAMP
        assert types["flagged"] == "BOOLEAN"
        assert types["metric_score"] == "DOUBLE"
        # dataset columns colliding with results columns are prefixed; dataset_id is not repeated
        assert "dataset_timestamp" in types and "dataset_seq" in types
        assert list(types).count("dataset_id") == 1

        row = (
            await fetch_dicts(
                e.store,
                "SELECT timestamp, dataset_timestamp, meta, flagged, note, query FROM monitoring_data "
                "WHERE dataset_id = 'tz1'",
            )
        )[0]
        assert row["dataset_timestamp"] == dt.datetime(2024, 3, 1, 10, 30)  # +02 → UTC
        assert json.loads(row["meta"]) == {"k": [1, None]}  # JSON text, not a Python repr
        assert row["flagged"] is True
        assert row["note"] == ""  # empty string stays empty ...
        nulls = await e.rows("SELECT count(*) FROM monitoring_dataset WHERE note IS NULL")
        assert nulls[0][0] == len([g for g in range(1, 21) if g % 3 == 0])  # ... and NULL stays NULL

        info = await e.store.get_dataset("sync_monitoring")
        assert (info.kind, info.source, info.table_name, info.row_count) == (
            "monitoring",
            "sync",
            "monitoring_data",
            res.rows,
        )
        latest = await e.store.resolve_dataset("monitoring", None)
        assert latest.dataset_id == "sync_monitoring"

        meta = await e.store.get_metadata("monitoring_data")
        assert meta["row_count"] == res.rows
        assert meta["filter_values"]["environment"] == ["prod", "staging"]
        scores = [r[0] for r in source.fetch("SELECT score FROM rs JOIN ds ON rs.dataset_id = ds.record_id")]
        assert meta["summary_stats"]["avg_score"] == pytest.approx(sum(scores) / len(scores))
        assert meta["summary_stats"]["pass_rate"] == pytest.approx(100.0 * sum(s >= 0.5 for s in scores) / len(scores))
        status = await e.engine.get_status("monitoring_data")
        assert status["state"] == "ready" and status["rows"] == res.rows and status["sync_type"] == "full"


async def test_asyncpg_reader_lands_the_extensions_types_and_values(
    make_settings: Callable[..., Settings], pg: PgSchema
) -> None:
    create_typed_source(pg, n_rows=250)
    settings = make_settings()
    for reader in READERS:  # the same source through both readers, 100-row chunks on the asyncpg path
        settings = configure(make_settings, pg, duckdb={"sync_reader": reader, "sync_chunk_size": 100})
        async with Env(settings) as e:
            res = await e.engine.sync_dataset("monitoring", force_full=True)
            assert res.status == "ready" and res.reader == reader and res.rows == 250, res.error
            copy = f'CREATE TABLE "by_{reader}" AS SELECT * FROM monitoring_dataset'
            await e.store.run_write(lambda cur, sql=copy: cur.execute(sql))

    async with Env(settings) as e:
        ext, apg = "by_postgres_extension", "by_asyncpg"
        want = [("dataset_id", "VARCHAR"), *((name, duck) for name, (_, duck) in TYPED_COLUMNS.items())]
        assert [(c["name"], c["type"]) for c in await e.store.describe(ext)] == want
        assert [(c["name"], c["type"]) for c in await e.store.describe(apg)] == want

        names = [name for name, _ in want]
        # Unconstrained numeric → DOUBLE is compared separately: the extension's conversion can be off
        # by an ulp or two, the asyncpg reader's is PostgreSQL's own (correctly rounded) float8.
        inexact = ["c_num", "c_num_wide"]
        exact = [name for name in names if name not in inexact]
        # every other value, as DuckDB's own text (keeps infinities, interval months, BLOB bytes apart) ...
        text_sql = "SELECT " + ", ".join(f'"{c}"::VARCHAR' for c in exact) + " FROM {} ORDER BY dataset_id"
        apg_text = await e.rows(text_sql.format(apg))
        assert len(apg_text) == 250
        assert apg_text == await e.rows(text_sql.format(ext))
        # ... and as Python values
        value_sql = "SELECT " + ", ".join(f'"{c}"' for c in exact) + " FROM {} ORDER BY dataset_id"
        apg_values = await e.rows(value_sql.format(apg))
        assert apg_values == await e.rows(value_sql.format(ext))
        # ... numeric → DOUBLE: exactly PostgreSQL's own float8 of each value; the extension's within 1e-15
        apg_floats = await e.rows(f"SELECT c_num, c_num_wide FROM {apg} ORDER BY dataset_id")
        pg_floats = pg.fetch("SELECT c_num::float8, c_num_wide::float8 FROM ds ORDER BY dataset_id")
        assert apg_floats == [tuple(r) for r in pg_floats]
        assert apg_floats[:3] == [(0.1, 1.2345678901234568e29), (100.5, 0.0), (None, None)]
        ext_floats = await e.rows(f"SELECT c_num, c_num_wide FROM {ext} ORDER BY dataset_id")
        for apg_row, ext_row in zip(apg_floats, ext_floats, strict=True):
            assert [v is None for v in apg_row] == [v is None for v in ext_row]
            assert [v for v in apg_row if v is not None] == pytest.approx(
                [v for v in ext_row if v is not None], rel=1e-15
            )

        r001, r002, r003 = (dict(zip(exact, row, strict=True)) for row in apg_text[:3])
        assert r001 == {
            "dataset_id": "r001",
            "c_bytea": "\\xDE\\xAD\\xBE\\xEF",
            "c_interval": "1 day 02:03:04.5",
            "c_int_arr": "[1, NULL, 3]",
            "c_text_arr": "[a, NULL, b c]",
            "c_uuid": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "c_num_12_4": "12345678.1234",
            "c_tstz": "infinity",
            "c_ts": "-infinity",
            "c_date": "infinity",
            "c_bigint_arr": "[9223372036854775807, -1]",
            "c_float_arr": "[1.5, NULL, -0.25]",
            "c_bool_arr": "[true, false, NULL]",
            "c_num_arr": "[1.25, NULL]",
            "c_uuid_arr": "[a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11]",
            "c_tstz_arr": "['2023-12-31 22:00:00+00', infinity, -infinity]",
            "c_date_arr": "[2024-02-29, -infinity]",
            "c_interval_arr": "[1 month 2 days, NULL]",
            "c_jsonb": '{"k": [1, null]}',
            "c_time": "12:34:56.789",
            "c_timetz": "12:34:56+02",
            "c_char": "ab",
            "c_money": "12.50",
            "c_mood": "happy",
            "c_inet": "10.0.0.1/32",
            "c_bytea_arr": '{"\\\\xde",NULL}',
        }
        assert r002 == {
            "dataset_id": "r002",
            "c_bytea": "",
            "c_interval": "-3 months -2 days 01:00:00",
            "c_int_arr": "[]",
            "c_text_arr": "[]",
            "c_uuid": "00000000-0000-0000-0000-000000000000",
            "c_num_12_4": "-0.0001",
            "c_tstz": "-infinity",
            "c_ts": "infinity",
            "c_date": "-infinity",
            "c_bigint_arr": "[]",
            "c_float_arr": "[]",
            "c_bool_arr": "[]",
            "c_num_arr": "[]",
            "c_uuid_arr": "[]",
            "c_tstz_arr": "[]",
            "c_date_arr": "[]",
            "c_interval_arr": "[]",
            "c_jsonb": "[]",
            "c_time": "24:00:00",
            "c_timetz": "00:00:00-05:30",
            "c_char": "",
            "c_money": "-0.01",
            "c_mood": "sad",
            "c_inet": "::1/128",
            "c_bytea_arr": "{}",
        }
        assert r003 == {name: ("r003" if name == "dataset_id" else None) for name in exact}  # NULL stays NULL
        first = dict(zip(exact, apg_values[0], strict=True))
        assert first["c_bytea"] == b"\xde\xad\xbe\xef"  # bytes, not the text of a Python repr (DB-39)
        assert first["c_uuid"] == uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
        assert first["c_num_12_4"] == decimal.Decimal("12345678.1234")
        assert first["c_int_arr"] == [1, None, 3] and first["c_text_arr"] == ["a", None, "b c"]
        # generated rows: values PostgreSQL computed itself, read back through the asyncpg reader
        src = pg.fetch(
            "SELECT dataset_id, c_num_12_4, c_ts, c_date, c_tstz AT TIME ZONE 'UTC', c_int_arr, c_bytea, c_uuid "
            "FROM ds WHERE dataset_id >= 'r004' ORDER BY dataset_id"
        )
        got = await e.rows(
            f"SELECT dataset_id, c_num_12_4, c_ts, c_date, c_tstz, c_int_arr, c_bytea, c_uuid FROM {apg} "
            "WHERE dataset_id >= 'r004' ORDER BY dataset_id"
        )
        assert got == [tuple(r) for r in src] and len(got) == 247


@pytest.mark.parametrize("reader", READERS)
async def test_both_readers_keep_numeric_nan_and_infinity(
    make_settings: Callable[..., Settings], pg: PgSchema, reader: str
) -> None:
    """The extension read numeric NaN/±Infinity as 0: numeric columns now travel as float8 (DOUBLE)
    or with NaN as NULL (DECIMAL), the same values as the asyncpg reader lands."""
    pg.execute("CREATE TABLE ds (dataset_id text, n numeric, n_12_4 numeric(12,4), f float8)")
    pg.execute(
        "INSERT INTO ds VALUES ('a', 'NaN', 'NaN', 'NaN'), ('b', 'Infinity', 1.5, 'Infinity'), "
        "('c', '-Infinity', NULL, '-Infinity'), ('d', 2.25, -2.25, 2.25)"
    )
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_score float8)")
    pg.execute("INSERT INTO rs SELECT dataset_id, 'm1', 0.5 FROM ds")
    settings = configure(make_settings, pg, duckdb={"sync_reader": reader})
    async with Env(settings) as e:
        types = await e.sync_types(4, reader)
        assert (types["n"], types["n_12_4"], types["f"]) == ("DOUBLE", "DECIMAL(12,4)", "DOUBLE")
        rows = await e.rows("SELECT n::VARCHAR, n_12_4, f::VARCHAR FROM monitoring_dataset ORDER BY dataset_id")
        assert rows == [
            ("nan", None, "nan"),  # DECIMAL has no NaN: NULL rather than a made-up number
            ("inf", decimal.Decimal("1.5000"), "inf"),
            ("-inf", None, "-inf"),
            ("2.25", decimal.Decimal("-2.2500"), "2.25"),
        ]


@pytest.mark.parametrize("reader", READERS)
async def test_both_readers_land_numerics_beyond_double_range(
    make_settings: Callable[..., Settings], pg: PgSchema, reader: str
) -> None:
    """A numeric past float8's range (1e400, or 1e-400 below its smallest step) failed an extension
    sync ("out of range for type double precision"); both readers now land what DuckDB's DOUBLE
    makes of the number: ±inf for overflow, 0 for underflow, the nearest double otherwise."""
    pg.execute("CREATE DOMAIN amount AS numeric")
    pg.execute("CREATE TABLE ds (dataset_id text, n numeric, d amount, arr numeric[], f float8)")
    pg.execute(
        "INSERT INTO ds VALUES ('a', 1e400, -1e400, '{1e400,-1e-400,2.5,NaN}', 1.5), "
        "('b', -1e-400, 1e-400, '{}', -0.25), ('c', 0.1, 123456789.123456789, NULL, NULL), "
        "('d', 1.7976931348623157e308, 4.9e-324, '{-1e400}', 2)"
    )
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_score numeric)")
    pg.execute("INSERT INTO rs VALUES ('a', 'm1', 1e500), ('b', 'm1', 0.5), ('c', 'm1', NULL), ('d', 'm1', -1e-500)")
    async with Env(configure(make_settings, pg, duckdb={"sync_reader": reader})) as e:
        types = await e.sync_types(4, reader)
        assert [types[c] for c in ("n", "d", "arr", "f")] == ["DOUBLE", "DOUBLE", "DOUBLE[]", "DOUBLE"]
        rows = await e.rows("SELECT dataset_id, n, d, arr, f FROM monitoring_dataset ORDER BY dataset_id")
        inf = float("inf")
        assert [(*r[:3], None if r[3] is None else [str(x) for x in r[3]], r[4]) for r in rows] == [
            ("a", inf, -inf, ["inf", "-0.0", "2.5", "nan"], 1.5),
            ("b", -0.0, 0.0, [], -0.25),
            ("c", 0.1, 123456789.12345679, None, None),
            ("d", 1.7976931348623157e308, 5e-324, ["-inf"], 2.0),
        ]
        scores = await e.rows("SELECT dataset_id, metric_score FROM monitoring_results ORDER BY dataset_id")
        assert scores == [("a", inf), ("b", 0.5), ("c", None), ("d", -0.0)]


@pytest.mark.parametrize("reader", READERS)
async def test_both_readers_land_numerics_with_a_scale_outside_their_precision(
    make_settings: Callable[..., Settings], pg: PgSchema, reader: str
) -> None:
    """PostgreSQL 15 allows numeric(5,-2) (rounded to hundreds) and numeric(3,5); DuckDB's DECIMAL has
    neither. The extension described them as DECIMAL(5,254) and DECIMAL(3,5) and the sync failed at the
    source; both readers now land them as DOUBLE, as the asyncpg reader always did."""
    pg.execute("CREATE TABLE ds (dataset_id text, hundreds numeric(5,-2), tiny numeric(3,5), arr numeric(4,-1)[])")
    pg.execute(
        "INSERT INTO ds VALUES ('a', 12345, 0.00123, '{1234,NULL,-55}'), ('b', -99949, -0.00999, NULL), "
        "('c', NULL, NULL, '{}')"
    )
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_score float8)")
    pg.execute("INSERT INTO rs SELECT dataset_id, 'm1', 0.5 FROM ds")
    async with Env(configure(make_settings, pg, duckdb={"sync_reader": reader})) as e:
        types = await e.sync_types(3, reader)
        assert [types[c] for c in ("hundreds", "tiny")] == ["DOUBLE", "DOUBLE"]
        rows = await e.rows("SELECT dataset_id, hundreds, tiny FROM monitoring_dataset ORDER BY dataset_id")
        # PostgreSQL rounded on insert: 12345 → 12300, -99949 → -99900 (scale -2); 0.00123 kept (scale 5)
        assert rows == [("a", 12300.0, 0.00123), ("b", -99900.0, -0.00999), ("c", None, None)]
        arr = await e.rows("SELECT arr::VARCHAR FROM monitoring_dataset ORDER BY dataset_id")
        assert (types["arr"], [r[0] for r in arr]) == ("DOUBLE[]", ["[1230.0, NULL, -60.0]", None, "[]"])


@pytest.mark.parametrize("reader", READERS)
async def test_both_readers_keep_nan_and_infinity_inside_numeric_arrays(
    make_settings: Callable[..., Settings], pg: PgSchema, reader: str
) -> None:
    """The extension read NaN and ±Infinity elements of numeric arrays as 0 (a plausible value, not
    what the asyncpg reader or PostgreSQL says); they now land as the scalars do."""
    pg.execute("CREATE DOMAIN money82 AS numeric(8,2)")
    pg.execute("CREATE TABLE ds (dataset_id text, n numeric[], n_10_2 numeric(10,2)[], m money82[], f float8[])")
    pg.execute(
        "INSERT INTO ds VALUES "
        "('a', '{1.5,NaN,NULL,Infinity,-Infinity}', '{1.25,NaN,NULL}', '{NaN,2.5}', '{NaN,Infinity}'), "
        "('b', '{}', '{}', '{}', '{}'), ('c', NULL, NULL, NULL, NULL)"
    )
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_score float8)")
    pg.execute("INSERT INTO rs SELECT dataset_id, 'm1', 0.5 FROM ds")
    async with Env(configure(make_settings, pg, duckdb={"sync_reader": reader})) as e:
        types = await e.sync_types(3, reader)
        assert [types[c] for c in ("n", "n_10_2", "m", "f")] == [
            "DOUBLE[]",
            "DECIMAL(10,2)[]",
            "VARCHAR",  # an array of a domain: PostgreSQL's text, in both readers
            "DOUBLE[]",
        ]
        rows = await e.rows(
            "SELECT n::VARCHAR, n_10_2::VARCHAR, m::VARCHAR, f::VARCHAR FROM monitoring_dataset ORDER BY 1"
        )
        assert rows == [
            ("[1.5, nan, NULL, inf, -inf]", "[1.25, NULL, NULL]", "{NaN,2.50}", "[nan, inf]"),
            ("[]", "[]", "{}", "[]"),
            (None, None, None, None),
        ]


def test_numeric_duck_type_follows_the_extensions_decimal_rule() -> None:
    def typmod(precision: int, scale: int) -> int:  # PostgreSQL's encoding of numeric(p,s)
        return ((precision << 16) | (scale & 0x7FF)) + 4

    assert numeric_duck_type(-1) == "DOUBLE"  # unconstrained numeric
    assert numeric_duck_type(typmod(12, 4)) == "DECIMAL(12,4)"
    assert numeric_duck_type(typmod(38, 0)) == "DECIMAL(38,0)"
    assert numeric_duck_type(typmod(1, 1)) == "DECIMAL(1,1)"
    assert numeric_duck_type(typmod(39, 2)) == "DOUBLE"  # wider than DuckDB's DECIMAL
    # PostgreSQL 15 scales outside 0..p: DOUBLE (the extension makes DECIMAL(5,254) and DECIMAL(3,5))
    assert numeric_duck_type(typmod(5, -2)) == "DOUBLE"
    assert numeric_duck_type(typmod(3, 5)) == "DOUBLE"


async def test_asyncpg_reader_without_typmods_lands_numeric_as_double(
    make_settings: Callable[..., Settings], pg: PgSchema, caplog: pytest.LogCaptureFixture
) -> None:
    """A source refusing the describing temporary view (a read-only role, as on a standby): numeric → DOUBLE."""
    role = f"axis_ro_{uuid.uuid4().hex[:10]}"
    pg.execute("CREATE DOMAIN money82 AS numeric(8,2)")
    pg.execute("CREATE TABLE ds (dataset_id text, amount numeric(12,4), price money82, id uuid, seen timestamptz)")
    pg.execute(
        "INSERT INTO ds VALUES ('a', 1.5, 2.25, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '-infinity'), "
        "('b', NULL, NULL, NULL, '2024-01-01 00:00:00+02')"
    )
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_score float8)")
    pg.execute("INSERT INTO rs SELECT dataset_id, 'm1', 0.5 FROM ds")
    pg.execute(f"CREATE ROLE {role} LOGIN")
    pg.execute(f"ALTER ROLE {role} SET default_transaction_read_only = on")  # no CREATE, not even TEMP
    pg.execute(f'GRANT USAGE ON SCHEMA "{pg.schema}" TO {role}')
    pg.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA "{pg.schema}" TO {role}')
    try:
        url = f"postgresql://{role}@{pg.host}:{pg.port}/test"
        settings = configure(make_settings, pg, url=url, duckdb={"sync_reader": "asyncpg"})
        with caplog.at_level(logging.WARNING):
            async with Env(settings) as e:
                res = await e.engine.sync_dataset("monitoring")
                assert res.status == "ready" and res.rows == 2, res.error
                refused = [r for r in caplog.records if "Cannot describe the sync query's column types" in r.message]
                assert len(refused) == 2 and "read-only transaction" in refused[0].message  # both queries
                types = {c["name"]: c["type"] for c in await e.store.describe("monitoring_dataset")}
                # the wire describes a domain column by its base type, so the domain's numeric(8,2) is unknown too
                assert types == {
                    "dataset_id": "VARCHAR",
                    "amount": "DOUBLE",
                    "price": "DOUBLE",
                    "id": "UUID",
                    "seen": "TIMESTAMP",
                }
                rows = await e.rows(
                    "SELECT amount, price, id, seen::VARCHAR FROM monitoring_dataset ORDER BY dataset_id"
                )
                assert rows == [
                    (1.5, 2.25, uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), "-infinity"),
                    (None, None, None, "2023-12-31 22:00:00"),
                ]
    finally:
        pg.execute(f'REVOKE ALL ON ALL TABLES IN SCHEMA "{pg.schema}" FROM {role}')
        pg.execute(f'REVOKE ALL ON SCHEMA "{pg.schema}" FROM {role}')
        pg.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("reader", READERS)
async def test_multidimensional_array_fails_the_sync_in_both_readers(
    make_settings: Callable[..., Settings], pg: PgSchema, reader: str
) -> None:
    pg.execute("CREATE TABLE ds (dataset_id text, grid int[])")
    pg.execute("INSERT INTO ds VALUES ('a', '{1,2}'), ('b', '{{1,2},{3,4}}')")
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_score float8)")
    pg.execute("INSERT INTO rs SELECT dataset_id, 'm1', 0.5 FROM ds")
    settings = configure(make_settings, pg, duckdb={"sync_reader": reader})
    async with Env(settings) as e:
        res = await e.engine.sync_dataset("monitoring")
        assert res.status == "error" and res.error
        want = "dimensions" if reader == "postgres_extension" else "Column 'grid' does not fit INTEGER[]"
        assert want in res.error
        assert not await e.store.table_exists("monitoring_data")


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(
    ("column", "pg_cast", "first_wm", "next_wm"),
    [
        ("amount", "numeric", "3.7035", "12.3450"),
        ("seen", "timestamptz", "2024-01-01 01:00:00", "2024-01-01 08:00:00"),
    ],
)
async def test_typed_watermarks_are_the_same_for_both_readers(
    make_settings: Callable[..., Settings],
    pg: PgSchema,
    reader: str,
    column: str,
    pg_cast: str,
    first_wm: str,
    next_wm: str,
) -> None:
    pg.execute("CREATE TABLE ds (dataset_id text, amount numeric(12,4), seen timestamptz)")
    pg.execute(
        "CREATE TABLE rs (dataset_id text, metric_name text, metric_score float8, amount numeric(12,4), "
        "seen timestamptz)"
    )
    rows_sql = (
        "SELECT 'c' || g, g * 1.2345, timestamptz '2024-01-01 00:00:00+02' + g * interval '1 hour' "
        "FROM generate_series({}, {}) g"
    )
    pg.execute("INSERT INTO ds " + rows_sql.format(1, 3))
    pg.execute("INSERT INTO rs SELECT dataset_id, 'm1', 0.5, amount, seen FROM ds")
    settings = configure(make_settings, pg, incremental_column=column, duckdb={"sync_reader": reader})
    async with Env(settings) as e:
        first = await e.engine.sync_dataset("monitoring")
        assert first.status == "ready" and first.sync_type == "full" and first.rows == 3, first.error
        target = TARGETS["monitoring"]
        assert await e.engine.watermarks(target) == (
            {"monitoring_dataset": first_wm, "monitoring_results": first_wm},
            None,
        )
        stored = await e.store.kv_get(WATERMARK_PREFIX + "monitoring_results")
        assert stored == {"value": first_wm, "pg_cast": pg_cast, "column": column, "stored_column": column}

        pg.execute("INSERT INTO ds " + rows_sql.format(10, 10))
        pg.execute("INSERT INTO rs SELECT dataset_id, 'm1', 0.7, amount, seen FROM ds WHERE dataset_id = 'c10'")
        again = await e.engine.sync_dataset("monitoring")
        assert again.status == "ready" and again.sync_type == "incremental", again.error
        assert again.rows == 4 and again.incremental_rows == 1
        assert await e.engine.watermarks(target) == (
            {"monitoring_dataset": next_wm, "monitoring_results": next_wm},
            None,
        )


async def test_empty_source_gives_empty_typed_tables(make_settings: Callable[..., Settings], pg: PgSchema) -> None:
    pg.execute("CREATE TABLE ds (dataset_id text, created_at timestamptz, n int)")
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_score float8)")
    settings = configure(make_settings, pg)
    async with Env(settings) as e:
        res = await e.engine.sync_dataset("monitoring")
        assert res.status == "ready" and res.rows == 0
        types = {c["name"]: c["type"] for c in await e.store.describe("monitoring_data")}
        assert types == {
            "dataset_id": "VARCHAR",
            "metric_name": "VARCHAR",
            "metric_score": "DOUBLE",
            "timestamp": "TIMESTAMP",
            "n": "INTEGER",
        }


async def test_interval_latency_is_read_in_milliseconds(make_settings: Callable[..., Settings], pg: PgSchema) -> None:
    pg.execute("CREATE TABLE ds (dataset_id text, latency interval)")
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_score float8)")
    pg.execute("INSERT INTO ds VALUES ('a', '00:00:01.5'), ('b', '00:00:00.25'), ('c', NULL), ('d', '2 seconds')")
    pg.execute("INSERT INTO rs SELECT dataset_id, 'm', 0.5 FROM ds")
    settings = configure(make_settings, pg)
    async with Env(settings) as e:
        assert (await e.engine.sync_dataset("monitoring")).rows == 4
        stats = (await e.store.get_metadata("monitoring_data"))["summary_stats"]
        assert stats["p50_latency"] == pytest.approx(1500.0)  # median of 250, 1500, 2000 ms
        from app.services import monitoring_analytics as ma
        from app.services.monitoring_table import MonitoringFilters

        kpis = (await ma.summary(e.store, settings.monitoring_db, MonitoringFilters(time_end="2100-01-01"))).kpis
        assert kpis.p50_latency == pytest.approx(1500.0) and kpis.p99_latency == pytest.approx(1990.0)


async def test_max_sync_rows_truncates_and_flags(make_settings: Callable[..., Settings], source: PgSchema) -> None:
    settings = configure(make_settings, source, columns=MAP, duckdb={"max_sync_rows": 25})
    async with Env(settings) as e:
        res = await e.engine.sync_dataset("monitoring")
        assert res.status == "ready" and res.truncated
        assert await e.count("monitoring_results") == 25
        assert await e.count("monitoring_dataset") == 20
        assert (await e.engine.get_status("monitoring_data"))["truncated"] is True


async def test_a_truncated_read_turns_incremental_off_until_the_source_fits(
    make_settings: Callable[..., Settings], source: PgSchema
) -> None:
    """Newest 25 of 60 results kept: an incremental read from their largest seq would never fetch
    the 35 older rows, so syncs stay full and flagged truncated (they went incremental and lost the flag)."""
    settings = configure(
        make_settings,
        source,
        columns=MAP,
        incremental_column="seq",
        results_query=f'SELECT * FROM "{source.schema}".rs ORDER BY seq DESC',
        duckdb={"max_sync_rows": 25},
    )
    async with Env(settings) as e:
        first = await e.engine.sync_dataset("monitoring")
        assert first.truncated and first.sync_type == "full"
        _, disabled = await e.engine.watermarks(TARGETS["monitoring"])
        assert disabled is not None and "max_sync_rows (25)" in disabled
        source.execute("INSERT INTO rs VALUES ('c0001', 'm9', 0.9, now(), 9999, 'prod')")
        second = await e.engine.sync_dataset("monitoring")
        assert second.sync_type == "full" and second.truncated and await e.count("monitoring_results") == 25
        assert (await e.engine.get_status("monitoring_data"))["truncated"] is True
        source.execute("DELETE FROM rs WHERE seq < 150")  # 19 rows left (cases 15-20 and the new one): fits
        fits = await e.engine.sync_dataset("monitoring")
        assert fits.sync_type == "full" and not fits.truncated and await e.count("monitoring_results") == 19
        assert (await e.engine.watermarks(TARGETS["monitoring"]))[1] is None
        assert (await e.engine.sync_dataset("monitoring")).sync_type == "incremental"


@pytest.mark.parametrize("reader", READERS)
async def test_incremental_syncs_never_grow_a_table_past_max_sync_rows(
    make_settings: Callable[..., Settings], source: PgSchema, reader: str
) -> None:
    """60 results fit a cap of 70; 30 new ones arrived incrementally and the table held 90 rows,
    unflagged, where a full sync of the same source keeps 70 and says truncated."""
    settings = configure(
        make_settings,
        source,
        columns=MAP,
        incremental_column="seq",
        duckdb={"max_sync_rows": 70, "sync_reader": reader},
    )
    async with Env(settings) as e:
        first = await e.engine.sync_dataset("monitoring")
        assert first.sync_type == "full" and not first.truncated and await e.count("monitoring_results") == 60
        source.execute(
            "INSERT INTO rs SELECT dataset_id, 'n' || seq, 0.5, now(), 1000 + seq, 'prod' FROM rs WHERE metric = 'm1'"
        )
        assert int(source.fetch("SELECT count(*) FROM rs")[0][0]) == 80
        second = await e.engine.sync_dataset("monitoring")
        assert second.status == "ready" and second.sync_type == "full" and second.truncated, second
        assert await e.count("monitoring_results") == 70 and second.rows == await e.count() == 70
        assert (await e.engine.get_status("monitoring_data"))["truncated"] is True
        _, disabled = await e.engine.watermarks(TARGETS["monitoring"])
        assert disabled is not None and "max_sync_rows (70)" in disabled


async def test_missing_dataset_id_is_an_error_and_nothing_is_swapped(
    make_settings: Callable[..., Settings], source: PgSchema
) -> None:
    settings = configure(make_settings, source, columns=MAP, dataset_query=f'SELECT query FROM "{source.schema}".ds')
    async with Env(settings) as e:
        res = await e.engine.sync_dataset("monitoring")
        assert res.status == "error" and "dataset_id" in (res.error or "")
        assert not await e.store.table_exists("monitoring_data")
        assert not await e.store.table_exists("monitoring_dataset__staging")


# ---------------------------------------------------------------------- incremental
async def test_incremental_appends_new_rows_and_upserts_updates(env: Env, source: PgSchema) -> None:
    first = await env.engine.sync_dataset("monitoring")
    assert first.sync_type == "full" and first.rows == 60
    wms, disabled = await env.engine.watermarks(TARGETS["monitoring"])
    assert wms == {"monitoring_dataset": "20", "monitoring_results": "203"} and disabled is None

    # new case 21 with 3 results; an updated re-emitted result row (higher seq) for case 1/m1
    source.execute("INSERT INTO ds VALUES ('c0021', 'question 21', '2024-02-01 00:00:00+00', '{}', false, 'x', 21)")
    source.execute(
        "INSERT INTO rs SELECT 'c0021', 'm' || m, 0.9, '2024-02-01 00:00:00+00', 210 + m, 'prod' "
        "FROM generate_series(1, 3) m"
    )
    source.execute("UPDATE rs SET score = 0.123, seq = 500 WHERE dataset_id = 'c0001' AND metric = 'm1'")
    # rows changed without moving past the watermarks are not read again (only new rows arrive)
    source.execute("UPDATE rs SET score = 0.777 WHERE dataset_id = 'c0002' AND metric = 'm2'")
    source.execute("UPDATE ds SET query = 'edited in place' WHERE record_id = 'c0003'")

    res = await env.engine.sync_dataset("monitoring")
    assert res.status == "ready" and res.sync_type == "incremental", res
    assert res.rows == joined_count(source) == 63
    assert res.incremental_rows == 3
    unread = await env.rows(
        "SELECT (SELECT metric_score FROM monitoring_data WHERE dataset_id = 'c0002' AND metric_name = 'm2'), "
        "(SELECT DISTINCT query FROM monitoring_data WHERE dataset_id = 'c0003')"
    )
    assert unread == [(pytest.approx((2 * 7 + 2) % 10 / 10.0), "question 3")]
    dup = await env.rows(
        "SELECT count(*), max(metric_score) FROM monitoring_data WHERE dataset_id = 'c0001' AND metric_name = 'm1'"
    )
    assert dup == [(1, pytest.approx(0.123))]
    # typed comparison: seq 500 > 213 numerically although '500' < '99' would hold as strings
    wms, _ = await env.engine.watermarks(TARGETS["monitoring"])
    assert wms == {"monitoring_dataset": "21", "monitoring_results": "500"}

    again = await env.engine.sync_dataset("monitoring")
    assert again.sync_type == "incremental" and again.rows == 63 and again.incremental_rows == 0


@pytest.mark.parametrize("reader", READERS)
async def test_a_query_ending_in_a_semicolon_and_a_comment_syncs(
    make_settings: Callable[..., Settings], source: PgSchema, reader: str
) -> None:
    """``SELECT ...; -- note`` (as saved from psql) kept its semicolon inside the subquery: syntax error."""
    s = source.schema
    settings = configure(
        make_settings,
        source,
        columns=MAP,
        incremental_column="seq",
        dataset_query=f'SELECT * FROM "{s}".ds; -- one row per case',
        results_query=f'-- results\nSELECT * FROM "{s}".rs\n;\n/* end; */\n',
        duckdb={"sync_reader": reader},
    )
    async with Env(settings) as e:
        first = await e.engine.sync_dataset("monitoring")
        assert first.status == "ready" and first.rows == joined_count(source) == 60, first.error
        source.execute("INSERT INTO rs VALUES ('c0001', 'm9', 0.9, now(), 900, 'prod')")
        again = await e.engine.sync_dataset("monitoring")
        assert again.sync_type == "incremental" and again.rows == joined_count(source) == 61, again.error


@pytest.mark.parametrize("reader", READERS)
async def test_incremental_sync_on_a_numeric_column_beyond_double_range(
    make_settings: Callable[..., Settings], pg: PgSchema, reader: str
) -> None:
    """The watermark of an unconstrained numeric column (DOUBLE in the store) was compared as float8 at
    the source: a row holding 1e400 or 1e-400 failed PostgreSQL's cast, so every incremental sync
    failed and fell back to a full rebuild. Rows that land as -inf are re-read, as float8 -infinity is."""
    pg.execute("CREATE TABLE ds (dataset_id text, n numeric)")
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_score float8, n numeric)")
    pg.execute("INSERT INTO ds VALUES ('a', 1.5), ('b', 1e400), ('c', 1e-400), ('d', NULL)")
    pg.execute("INSERT INTO rs SELECT dataset_id, 'm1', 0.5, n FROM ds")
    settings = configure(make_settings, pg, incremental_column="n", duckdb={"sync_reader": reader})
    async with Env(settings) as e:
        first = await e.engine.sync_dataset("monitoring")
        assert first.status == "ready" and first.sync_type == "full" and first.rows == 4, first.error
        target = TARGETS["monitoring"]
        assert await e.engine.watermarks(target) == ({"monitoring_dataset": "1.5", "monitoring_results": "1.5"}, None)
        pg.execute("INSERT INTO ds VALUES ('e', 2.5), ('f', -1e400), ('g', 1.25)")  # g: below the watermark
        pg.execute("INSERT INTO rs SELECT dataset_id, 'm1', 0.7, n FROM ds WHERE dataset_id IN ('e', 'f', 'g')")
        again = await e.engine.sync_dataset("monitoring")
        assert again.status == "ready" and again.sync_type == "incremental", again.error
        assert await e.engine.watermarks(target) == ({"monitoring_dataset": "2.5", "monitoring_results": "2.5"}, None)
        inf = float("inf")
        assert await e.rows("SELECT dataset_id, n FROM monitoring_dataset ORDER BY dataset_id") == [
            ("a", 1.5),
            ("b", inf),
            ("c", 0.0),
            ("d", None),
            ("e", 2.5),
            ("f", -inf),
        ]


def test_wrap_query_drops_trailing_semicolons_and_comments() -> None:
    assert wrap_query("SELECT 1 ; -- note") == "SELECT 1"
    assert wrap_query("SELECT 1; /* a; */ ;\n-- b\n") == "SELECT 1"
    assert wrap_query("SELECT ';' AS x, $$;$$ AS y;") == "SELECT ';' AS x, $$;$$ AS y"
    assert wrap_query("SELECT 1 -- c") == "SELECT 1"
    assert wrap_query("SELECT 'unterminated;") == "SELECT 'unterminated"  # PostgreSQL reports it


def test_incremental_query_uses_typed_literals() -> None:
    ts = incremental_query("SELECT * FROM t;", "created_at", {"value": "2024-01-01 10:00:00", "pg_cast": "timestamptz"})
    assert ts.endswith(
        """WHERE _axis_inc."created_at" >= '2024-01-01 10:00:00+00'::timestamptz OR _axis_inc."created_at" IS NULL"""
        """ OR _axis_inc."created_at" = '-infinity'::timestamptz"""
    )
    assert "SELECT * FROM t\n" in ts  # trailing semicolon removed
    txt = incremental_query("SELECT 1", 'we"ird', {"value": "it's", "pg_cast": "text"})
    assert txt.endswith("""WHERE _axis_inc."we""ird" COLLATE "C" >= 'it''s'::text OR _axis_inc."we""ird" IS NULL""")


async def test_reset_watermark_and_full_flag_force_full(env: Env) -> None:
    await env.engine.sync_dataset("monitoring")
    assert (await env.engine.sync_dataset("monitoring")).sync_type == "incremental"
    assert (await env.engine.sync_dataset("monitoring", force_full=True)).sync_type == "full"
    assert await env.engine.reset_watermark("monitoring") is True
    assert await env.engine.watermarks(TARGETS["monitoring"]) == (
        {"monitoring_dataset": None, "monitoring_results": None},
        None,
    )
    assert (await env.engine.sync_dataset("monitoring")).sync_type == "full"
    assert await env.engine.reset_watermark("kpi") is False


async def test_schema_drift_falls_back_to_full_rebuild(env: Env, source: PgSchema) -> None:
    await env.engine.sync_dataset("monitoring")
    source.execute("ALTER TABLE rs ADD COLUMN extra text")
    source.execute("INSERT INTO rs VALUES ('c0002', 'm9', 0.7, now(), 999, 'prod', 'new')")
    res = await env.engine.sync_dataset("monitoring")
    assert res.status == "ready" and res.sync_type == "full"
    assert res.rows == joined_count(source) == 61
    cols = [c["name"] for c in await env.store.describe("monitoring_data")]
    assert "extra" in cols
    got = await env.rows("SELECT extra FROM monitoring_data WHERE metric_name = 'm9'")
    assert got == [("new",)]
    # watermarks were rebuilt by the full sync, so the next one is incremental again
    assert (await env.engine.sync_dataset("monitoring")).sync_type == "incremental"


async def test_incremental_never_merges_rows_of_a_non_unique_key(
    make_settings: Callable[..., Settings], source: PgSchema
) -> None:
    """Results without metric_name (key = dataset_id only) repeat their key: incremental stays off."""
    settings = configure(make_settings, source, incremental_column="seq")  # no MAP: 'metric' stays as is
    async with Env(settings) as e:
        first = await e.engine.sync_dataset("monitoring")
        assert first.sync_type == "full" and first.rows == joined_count(source) == 60
        wms, disabled = await e.engine.watermarks(TARGETS["monitoring"])
        assert wms["monitoring_results"] is None and "monitoring_results" in (disabled or "")
        assert wms["monitoring_dataset"] == "20"  # the dataset side's key is unique
        again = await e.engine.sync_dataset("monitoring")  # no source change: nothing may be lost
        assert again.sync_type == "full" and again.rows == 60 and await e.count("monitoring_results") == 60
        report = (await e.engine.status_report())["monitoring_data"]
        assert "upsert key (dataset_id)" in report["incremental_disabled"]


async def test_incremental_with_unique_key_but_new_duplicates_falls_back_to_full(env: Env, source: PgSchema) -> None:
    """A second run of (case, metric) arrives: merging it would drop a row, so the sync runs in full."""
    await env.engine.sync_dataset("monitoring")
    source.execute(
        "INSERT INTO rs VALUES ('c0001', 'm1', 0.3, now(), 600, 'prod'), ('c0001', 'm1', 0.4, now(), 601, 'prod')"
    )
    res = await env.engine.sync_dataset("monitoring")
    assert res.sync_type == "full" and res.rows == joined_count(source) == 62
    _, disabled = await env.engine.watermarks(TARGETS["monitoring"])
    assert disabled is not None and "dataset_id, metric_name" in disabled


async def test_incremental_reads_null_and_infinite_watermark_rows(
    make_settings: Callable[..., Settings], source: PgSchema
) -> None:
    """Rows whose incremental column is NULL or ±infinity are not lost by the watermark."""
    source.execute("ALTER TABLE ds ADD COLUMN updated_at timestamptz")
    source.execute("ALTER TABLE rs ADD COLUMN updated_at timestamptz")
    source.execute("UPDATE ds SET updated_at = created_at")
    source.execute("UPDATE rs SET updated_at = created_at")
    source.execute("UPDATE ds SET updated_at = 'infinity' WHERE record_id = 'c0001'")
    settings = configure(make_settings, source, columns=MAP, incremental_column="updated_at")
    async with Env(settings) as e:
        assert (await e.engine.sync_dataset("monitoring")).rows == 60
        wms, _ = await e.engine.watermarks(TARGETS["monitoring"])
        assert wms["monitoring_dataset"] == "2024-01-01 00:20:00"  # the largest finite value, not 'infinity'
        source.execute("INSERT INTO ds VALUES ('c0100', 'late', now(), '{}', false, 'x', 100, '2025-01-01')")
        source.execute("INSERT INTO ds VALUES ('c0101', 'no time', now(), '{}', false, 'x', 101, NULL)")
        source.execute("INSERT INTO ds VALUES ('c0102', 'before all', now(), '{}', false, 'x', 102, '-infinity')")
        source.execute(
            "INSERT INTO rs SELECT c, 'm1', 0.5, now(), 1000, 'prod', u FROM (VALUES "
            "('c0100', timestamptz '2025-01-01'), ('c0101', NULL), ('c0102', timestamptz '2025-01-02')) v(c, u)"
        )
        res = await e.engine.sync_dataset("monitoring")
        assert res.sync_type == "incremental" and res.rows == joined_count(source) == 63
        got = await e.rows("SELECT dataset_id FROM monitoring_data WHERE dataset_id >= 'c0100' ORDER BY 1")
        assert got == [("c0100",), ("c0101",), ("c0102",)]
        again = await e.engine.sync_dataset("monitoring")  # NULL / -infinity rows re-read and upserted
        assert again.sync_type == "incremental" and again.rows == 63


# ---------------------------------------------------------------------- faults
@pytest.mark.parametrize("reader", READERS)
async def test_backend_terminated_mid_read_keeps_previous_table(
    make_settings: Callable[..., Settings], source: PgSchema, reader: str
) -> None:
    settings = configure(
        make_settings,
        source,
        columns=MAP,
        results_query=slow_results_query(source),
        duckdb={"sync_reader": reader},
    )
    async with Env(settings) as e:
        assert (await e.engine.sync_dataset("monitoring")).rows == 60
        source.execute("INSERT INTO rs VALUES ('c0003', 'm7', 0.1, now(), 777, 'prod')")
        source.execute("UPDATE ctl SET slow = true")
        task = asyncio.create_task(e.engine.sync_dataset("monitoring", force_full=True))
        assert await terminate_sync_backend(source) >= 1
        res = await task
        assert res.status == "error" and res.error
        status = await e.engine.get_status("monitoring_data")
        assert status["state"] == "error" and status["error"] == res.error
        assert status["rows"] == 60
        assert await e.count() == 60  # the previous table is still served
        tables = await e.rows("SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '%staging%'")
        assert tables == []
        source.execute("UPDATE ctl SET slow = false")
        ok = await e.engine.sync_dataset("monitoring")
        assert ok.status == "ready" and ok.rows == 61
        assert (await e.engine.get_status("monitoring_data"))["error"] is None


async def test_connection_errors_never_leak_the_password(
    make_settings: Callable[..., Settings], source: PgSchema
) -> None:
    url = "postgresql://postgres:Sup3rSecretPw@127.0.0.1:1/test"
    settings = configure(make_settings, source, url=url)
    async with Env(settings) as e:
        res = await e.engine.sync_dataset("monitoring")
        assert res.status == "error" and res.error
        assert "Sup3rSecretPw" not in res.error
        status = await e.engine.get_status("monitoring_data")
        assert "Sup3rSecretPw" not in json.dumps(status)


def test_scrub_error_removes_conninfo_and_url_passwords() -> None:
    text = "failed at \"host=x password='a b\\'c' user=u\" and postgresql://u:pw1@h/db"
    out = scrub_sync_error(text, ["pw1"])
    assert "a b" not in out and "pw1" not in out and "password=***" in out


async def test_readers_never_see_partial_data_during_swap(env: Env, source: PgSchema) -> None:
    await env.engine.sync_dataset("monitoring")
    source.execute(
        "INSERT INTO rs SELECT 'c' || lpad(g::text, 4, '0'), 'x' || k, 0.5, now(), 100000 + g * 100 + k, 'prod' "
        "FROM generate_series(1, 20) g, generate_series(1, 200) k"
    )
    new_total = joined_count(source)
    counts: list[int] = []
    done = asyncio.Event()

    async def reader() -> None:
        while not done.is_set():
            counts.append(int((await env.store.fetch("SELECT count(*) FROM monitoring_data")).rows[0][0]))

    readers = [asyncio.create_task(reader()) for _ in range(3)]
    for _ in range(3):
        res = await env.engine.sync_dataset("monitoring", force_full=True)
        assert res.status == "ready", res.error
    done.set()
    await asyncio.gather(*readers)
    assert set(counts) <= {60, new_total}
    assert new_total in counts and len(counts) > 3


# ---------------------------------------------------------------------- restart
async def test_status_and_registry_survive_restart(env: Env, make_settings: Callable[..., Settings]) -> None:
    res = await env.engine.sync_dataset("monitoring")
    await env.store.close()
    env.engine.shutdown()
    async with Env(env.settings) as e2:
        status = await e2.engine.get_status("monitoring_data")
        assert status["state"] == "ready" and status["rows"] == res.rows and status["sync_id"] == res.sync_id
        assert (await e2.store.get_dataset("sync_monitoring")).row_count == res.rows
        assert (await e2.store.get_metadata("monitoring_data"))["row_count"] == res.rows
        # a status left at "syncing" by a crash is settled from the file at the next boot
        await e2.store.kv_set("sync_status:monitoring_data", {**status, "state": "syncing"})
    async with Env(env.settings) as e3:
        status = await e3.engine.get_status("monitoring_data")
        assert status["state"] == "ready" and status["rows"] == res.rows
        assert "interrupted" in status["error"]
    await env.store.open()  # the fixture closes it again


# ---------------------------------------------------------------------- leader, eligibility, scheduler
def test_leader_lock_is_exclusive(tmp_path: Path) -> None:
    first, second = LeaderLock(tmp_path / "db.lock"), LeaderLock(tmp_path / "db.lock")
    assert first.try_acquire() and first.held
    assert not second.try_acquire()
    first.release()
    assert second.try_acquire()
    second.release()
    assert first.unavailable is None and second.unavailable is None


def test_a_lock_file_that_cannot_be_created_means_no_sync_not_a_crash(tmp_path: Path) -> None:
    """A read-only data directory without the lock file: the process serves the store and does not sync."""
    (tmp_path / "not_a_dir").write_text("x")
    lock = LeaderLock(tmp_path / "not_a_dir" / "db.lock")
    assert not lock.try_acquire() and not lock.held
    assert lock.unavailable is not None and "db.lock cannot be created" in lock.unavailable
    lock.release()  # nothing held: a no-op


async def test_second_sync_of_a_running_dataset_is_skipped(
    make_settings: Callable[..., Settings], source: PgSchema
) -> None:
    settings = configure(make_settings, source, columns=MAP, results_query=slow_results_query(source))
    async with Env(settings) as e:
        source.execute("UPDATE ctl SET slow = true")
        task = asyncio.create_task(e.engine.sync_dataset("monitoring"))
        await asyncio.sleep(0)
        assert list(e.engine.running()) == ["monitoring"]
        second = await e.engine.sync_dataset("monitoring")
        assert second.status == "skipped"
        await terminate_sync_backend(source)
        assert (await task).status == "error"
        assert e.engine.running() == {}


def test_eligibility_rules(make_settings: Callable[..., Settings], pg: PgSchema) -> None:
    settings = configure(make_settings, pg, store="eval", auto_load=True)
    engine = SyncEngine(settings, DuckDBStore(settings.duckdb_path), BackgroundTasks())
    assert engine.eligible("manual") == ["eval"]
    assert engine.eligible("startup") == ["eval"]  # DB-6: eval syncs at startup when auto_load
    assert "disabled" in (engine.ineligible_reason("monitoring") or "")
    settings2 = configure(make_settings, pg, store="eval", auto_load=False, results_query="")
    engine2 = SyncEngine(settings2, DuckDBStore(settings2.duckdb_path), BackgroundTasks())
    assert "results_query" in (engine2.ineligible_reason("eval") or "")
    assert engine2.eligible("startup") == []
    settings3 = configure(make_settings, pg, store="eval", url=pg.dsn.replace("postgresql://", "mysql://"))
    engine3 = SyncEngine(settings3, DuckDBStore(settings3.duckdb_path), BackgroundTasks())
    assert engine3.ineligible_reason("eval") == (
        "The database settings are invalid and were ignored (eval_db.yaml key 'eval_db': url: the URL must "
        "start with postgresql:// or postgres:// (only PostgreSQL is supported)). Fix them and restart."
    )


def test_scheduler_due_computation() -> None:
    intervals = {"monitoring": 60.0, "eval": 300.0}
    last = {"monitoring": 0.0, "eval": 0.0}
    assert due_datasets(last, intervals, 59.0) == []
    assert due_datasets(last, intervals, 60.0) == ["monitoring"]
    assert due_datasets(last, intervals, 300.0) == ["eval", "monitoring"]
    assert seconds_until_next(last, intervals, 10.0) == 50.0
    assert seconds_until_next({}, {}, 10.0) == 60.0


async def test_scheduler_task_cancels_cleanly(make_settings: Callable[..., Settings], source: PgSchema) -> None:
    settings = configure(make_settings, source, columns=MAP, refresh_interval_minutes=1)
    async with Env(settings) as e:
        assert e.engine.scheduled_intervals() == {"monitoring": 60.0}
        task = asyncio.create_task(e.engine.run_scheduler())
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not await e.store.table_exists("monitoring_data")  # first run waits a full interval


def test_column_renames_custom_map_aliases_and_collision_guard() -> None:
    mon = TARGETS["monitoring"]
    assert column_renames(["id", "Latency MS", "metric"], mon, {"metric": "metric_name"}) == {
        "id": "dataset_id",
        "Latency MS": "latency",
        "metric": "metric_name",
    }
    # id → dataset_id is skipped because dataset_id already exists; so is a second source for one target
    assert column_renames(["dataset_id", "id", "latency_ms", "response_time"], mon, {}) == {
        "dataset_id": "dataset_id",
        "id": "id",
        "latency_ms": "latency",
        "response_time": "response_time",
    }
    hs = TARGETS["human_signals"]
    assert column_renames(["Metric Name", "source-name"], hs, {}) == {
        "Metric Name": "metric_name",
        "source-name": "source_name",
    }
    ev = TARGETS["eval"]
    assert column_renames(["question", "score", "Record ID"], ev, {}) == {
        "question": "query",
        "score": "metric_score",
        "Record ID": "dataset_id",
    }
    # the custom map's targets are reserved first: event_time -> timestamp wins over the alias
    # created_at -> timestamp whatever the column order (created_at took it when it came first)
    for cols in (["dataset_id", "created_at", "event_time"], ["dataset_id", "event_time", "created_at"]):
        got = column_renames(cols, mon, {"event_time": "timestamp"})
        assert got["event_time"] == "timestamp" and got["created_at"] == "created_at", cols
    with pytest.raises(Invalid, match="sends both 'a' and 'b' to 'x'"):
        column_renames(["dataset_id", "a", "b"], mon, {"a": "x", "b": "x"})
    with pytest.raises(Invalid, match="a column the query already returns"):
        column_renames(["dataset_id", "a", "x"], mon, {"a": "x"})
    # a target that differs from a canonical name only in case takes the canonical spelling
    assert column_renames(
        ["dataset_id", "score", "metric"], mon, {"score": "Metric_Score", "metric": "METRIC_NAME"}
    ) == {
        "dataset_id": "dataset_id",
        "score": "metric_score",
        "metric": "metric_name",
    }
    assert column_renames(["dataset_id", "x", "y"], hs, {"x": "Source_Name", "y": "My Col"}) == {
        "dataset_id": "dataset_id",
        "x": "source_name",
        "y": "My Col",
    }
    assert column_renames(["dataset_id", "x"], mon, {"x": "My_Col"})["x"] == "My_Col"  # not a canonical name
    assert column_renames(["dataset_id", "a", "b"], mon, {"a": "b", "b": "a"}) == {
        "dataset_id": "dataset_id",
        "a": "b",
        "b": "a",
    }


async def test_human_signals_raw_rows_and_cases_change_together(
    make_settings: Callable[..., Settings], pg: PgSchema
) -> None:
    """Readers during syncs that alternate two source versions see raw rows and cases of one version."""
    pg.execute("CREATE TABLE ctl (v int)")
    pg.execute("INSERT INTO ctl VALUES (1)")
    pg.execute("CREATE TABLE ds (dataset_id text, source_name text, ver int)")
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_category text, signals jsonb, ver int)")
    for ver, n in ((1, 3), (2, 6)):
        pg.execute(f"INSERT INTO ds SELECT 'case-{ver}-' || g, 'Atlas', {ver} FROM generate_series(1, {n}) g")
        pg.execute(
            f"INSERT INTO rs SELECT 'case-{ver}-' || g, 'm' || m, 'classification', "
            f"jsonb_build_object('ok', g % 2 = 0), {ver} FROM generate_series(1, {n}) g, generate_series(1, 2) m"
        )
    s = pg.schema
    settings = configure(
        make_settings,
        pg,
        store="human_signals",
        dataset_query=f'SELECT * FROM "{s}".ds WHERE ver = (SELECT v FROM "{s}".ctl)',
        results_query=f'SELECT * FROM "{s}".rs WHERE ver = (SELECT v FROM "{s}".ctl)',
    )
    async with Env(settings) as e:
        assert (await e.engine.sync_dataset("human_signals")).status == "ready"
        pairs: set[tuple[int, int]] = set()
        responses: set[tuple[int, int, frozenset[str]]] = set()
        done = asyncio.Event()

        async def reader() -> None:
            while not done.is_set():
                pair = await e.store.run_read(
                    lambda cur: cur.execute(
                        "SELECT (SELECT count(*) FROM human_signals_raw), (SELECT count(*) FROM human_signals_cases)"
                    ).fetchone(),
                    snapshot=True,
                )
                pairs.add((int(pair[0]), int(pair[1])))
                res = await hs.list_cases(e.store, settings, 1, 500)
                cases = response_rows(res)
                versions = frozenset(str(c["Case_ID"]).split("-")[1] for c in cases)
                responses.add((res.row_count, len(cases), versions))

        readers = [asyncio.create_task(reader()) for _ in range(3)]
        for ver in (2, 1, 2, 1):
            pg.execute(f"UPDATE ctl SET v = {ver}")
            assert (await e.engine.sync_dataset("human_signals", force_full=True)).status == "ready"
        done.set()
        await asyncio.gather(*readers)
    assert pairs <= {(6, 3), (12, 6)} and len(pairs) == 2
    assert responses <= {(3, 3, frozenset({"1"})), (6, 6, frozenset({"2"}))} and len(responses) == 2


async def test_human_signals_sync_runs_the_real_derived_build(
    make_settings: Callable[..., Settings], pg: PgSchema
) -> None:
    pg.execute("CREATE TABLE ds (dataset_id text, source_name text, conversation jsonb)")
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_category text, signals jsonb)")
    pg.execute(
        "INSERT INTO ds SELECT 'case-' || g, 'Atlas', "
        "jsonb_build_object('messages', jsonb_build_array(jsonb_build_object('role', 'user', "
        "'content', 'New support case: T-' || g))) FROM generate_series(1, 4) g"
    )
    pg.execute(
        "INSERT INTO rs SELECT 'case-' || g, 'escalation_type', 'classification', "
        "jsonb_build_object('is_escalated', g % 2 = 0, 'escalation_type', 'team_mention') "
        "FROM generate_series(1, 4) g"
    )
    settings = configure(make_settings, pg, store="human_signals")
    async with Env(settings) as e:  # default builders: app.services.human_signals_service
        res = await e.engine.sync_dataset("human_signals")
        assert res.status == "ready" and res.rows == 4
        assert await e.store.kv_get(CASES_SYNC_KV) == await e.store.kv_get(RAW_SYNC_KV) == res.sync_id
        assert await e.count("human_signals_cases") == 4
        status = await e.engine.get_status("human_signals_cases")
        assert status["state"] == "ready" and status["rows"] == 4
        assert await e.engine.repair_derived() is True and await e.count("human_signals_cases") == 4


async def test_scheduler_syncs_due_datasets_incrementally(
    make_settings: Callable[..., Settings], source: PgSchema
) -> None:
    settings = configure(make_settings, source, columns=MAP, refresh_interval_minutes=1, incremental_column="seq")
    async with Env(settings) as e:
        ticks = iter(range(0, 10**9, 120))  # every clock reading is two minutes later

        def clock() -> float:
            return float(next(ticks))

        task = asyncio.create_task(e.engine.run_scheduler(clock=clock))
        try:
            for _ in range(600):
                status = await e.engine.get_status("monitoring_data")
                if status["state"] == "ready" and status.get("sync_type") == "incremental":
                    break
                await asyncio.sleep(0.05)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert status["state"] == "ready" and status["reason"] == "scheduled"
        assert status["sync_type"] == "incremental" and status["rows"] == 60


async def test_a_long_scheduled_sync_does_not_hold_back_the_other_datasets(
    make_settings: Callable[..., Settings], source: PgSchema
) -> None:
    """Scheduled syncs ran due datasets as one batch and waited for all of them before checking again,
    so a slow monitoring sync held back every other dataset. Each now runs on its own: the quick eval
    dataset syncs again and again while the monitoring read sleeps at the source."""
    s = source.schema
    source.execute("UPDATE ctl SET slow = true")  # the monitoring results read sleeps 60 s
    eval_results = f'SELECT dataset_id, metric AS metric_name, score AS metric_score FROM "{s}".rs'
    eval_dataset = f'SELECT record_id AS dataset_id, query FROM "{s}".ds'
    configure(make_settings, source, store="eval", refresh_interval_minutes=1, dataset_query=eval_dataset,
              results_query=eval_results)  # fmt: skip
    settings = configure(
        make_settings, source, columns=MAP, refresh_interval_minutes=1, results_query=slow_results_query(source)
    )
    async with Env(settings) as e:
        assert e.engine.scheduled_intervals() == {"eval": 60.0, "monitoring": 60.0}
        ticks = iter(range(0, 10**9, 120))  # every clock reading is two minutes later: always due

        def clock() -> float:
            return float(next(ticks))

        finished: set[str] = set()  # distinct end times of eval syncs
        task = asyncio.create_task(e.engine.run_scheduler(clock=clock))
        try:
            for _ in range(1200):
                status = await e.engine.get_status("eval_data")
                if status["state"] == "ready" and status["last_sync"]:
                    finished.add(status["last_sync"])
                if len(finished) >= 3:
                    break
                await asyncio.sleep(0.02)
            monitoring = await e.engine.get_status("monitoring_data")
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert len(finished) >= 3, "the eval dataset was not synced again while monitoring's sync ran"
        assert monitoring["state"] == "syncing"  # asleep at the source all along
        assert status["reason"] == "scheduled" and status["rows"] == 60
        assert await e.count("eval_data") == 60


async def test_dataset_id_type_mismatch_still_joins(make_settings: Callable[..., Settings], pg: PgSchema) -> None:
    pg.execute("CREATE TABLE ds (dataset_id int, label text)")
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_score float8)")
    pg.execute("INSERT INTO ds VALUES (1, 'one'), (2, 'two')")
    pg.execute("INSERT INTO rs VALUES ('1', 'm', 0.5), ('2', 'm', 0.7), ('3', 'm', 0.9)")
    settings = configure(make_settings, pg)
    async with Env(settings) as e:
        res = await e.engine.sync_dataset("monitoring")
        assert res.status == "ready" and res.rows == 2
        assert await e.rows("SELECT label FROM monitoring_data ORDER BY label") == [("one",), ("two",)]


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(("d_type", "r_type"), [("numeric", "text"), ("float8", "int"), ("numeric(10,2)", "int")])
async def test_numeric_ids_join_by_number(
    make_settings: Callable[..., Settings], pg: PgSchema, reader: str, d_type: str, r_type: str
) -> None:
    """NUMERIC/float8 ids land as DOUBLE (or DECIMAL): their text ('1.0', '1.00') never met '1', so the
    view joined nothing; they now compare as numbers (text read with TRY_CAST)."""
    pg.execute(f"CREATE TABLE ds (dataset_id {d_type}, label text)")
    pg.execute(f"CREATE TABLE rs (dataset_id {r_type}, metric_name text, metric_score float8)")
    pg.execute("INSERT INTO ds VALUES (1, 'one'), (2, 'two')")
    pg.execute("INSERT INTO rs VALUES ('1', 'm', 0.5), ('2', 'm', 0.7), ('3', 'm', 0.9)")
    async with Env(configure(make_settings, pg, duckdb={"sync_reader": reader})) as e:
        res = await e.engine.sync_dataset("monitoring")
        joined = pg.fetch("SELECT count(*) FROM rs JOIN ds ON rs.dataset_id::numeric = ds.dataset_id::numeric")
        assert res.status == "ready" and res.rows == joined[0][0] == 2  # as PostgreSQL joins them by value
        assert await e.rows("SELECT label FROM monitoring_data ORDER BY label") == [("one",), ("two",)]


@pytest.mark.parametrize("reader", READERS)
async def test_a_real_incremental_column_rereads_rows_equal_to_the_watermark(
    make_settings: Callable[..., Settings], pg: PgSchema, reader: str
) -> None:
    """A real (float4) watermark compares as a real: 1.4::float8 is above real 1.4, so a new row with
    the same value was never read."""
    pg.execute("CREATE TABLE ds (dataset_id text, k real)")
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_score float8, k real)")
    pg.execute("INSERT INTO ds VALUES ('a', 1.4)")
    pg.execute("INSERT INTO rs VALUES ('a', 'm', 0.5, 1.4)")
    settings = configure(make_settings, pg, incremental_column="k", duckdb={"sync_reader": reader})
    async with Env(settings) as e:
        assert (await e.engine.sync_dataset("monitoring")).rows == 1
        pg.execute("INSERT INTO ds VALUES ('b', 1.4)")
        pg.execute("INSERT INTO rs VALUES ('b', 'm', 0.7, 1.4)")
        again = await e.engine.sync_dataset("monitoring")
        assert again.sync_type == "incremental" and again.rows == 2


@pytest.mark.parametrize(
    ("column", "why"),
    [
        ("timestamp", "'timestamp' is not a column the results query returns (the query calls it 'created_at')"),
        ("SEQ", "'SEQ' is not a column the results query returns (the query calls it 'seq')"),
        ("environment", "'environment' is not a column the dataset query returns"),
        ("flagged", "'flagged' of the results query has type BOOLEAN, which has no watermark order"),
    ],
)
async def test_an_incremental_column_that_gives_no_watermark_says_why(
    make_settings: Callable[..., Settings], source: PgSchema, column: str, why: str
) -> None:
    """Every sync ran in full, silently (no watermark, no incremental_disabled), when the column was
    the stored name of a renamed column, another case, missing from one query or of an unordered type."""
    source.execute("ALTER TABLE rs ADD COLUMN flagged bool DEFAULT true")
    async with Env(configure(make_settings, source, columns=MAP, incremental_column=column)) as e:
        assert (await e.engine.sync_dataset("monitoring")).rows == 60
        report = (await e.engine.status_report())["monitoring_data"]
        assert report["incremental_disabled"] == f"incremental sync is off: incremental_column {why}"
        assert report["watermarks"]["monitoring_dataset"] is None
        again = await e.engine.sync_dataset("monitoring")
        assert again.status == "ready" and again.sync_type == "full" and again.rows == 60


async def test_a_changed_incremental_column_starts_with_a_full_sync(
    make_settings: Callable[..., Settings], source: PgSchema
) -> None:
    """The stored watermark belongs to its column: another incremental_column means a full sync
    (it filtered ``version >= 203``, the old column's largest value)."""
    source.execute("ALTER TABLE rs ADD COLUMN version int")
    source.execute("UPDATE rs SET version = 1")
    source.execute("ALTER TABLE ds ADD COLUMN version int")
    source.execute("UPDATE ds SET version = 1")
    async with Env(configure(make_settings, source, columns=MAP, incremental_column="seq")) as e:
        assert (await e.engine.sync_dataset("monitoring")).rows == 60
    source.execute("INSERT INTO rs SELECT dataset_id, 'm9', 0.5, created_at, 1, environment, 2 FROM rs LIMIT 1")
    async with Env(configure(make_settings, source, columns=MAP, incremental_column="version")) as e:
        res = await e.engine.sync_dataset("monitoring")
        assert res.sync_type == "full" and res.rows == 61
        assert (await e.engine.sync_dataset("monitoring")).sync_type == "incremental"


async def test_a_second_instance_does_not_settle_the_leaders_statuses(
    make_settings: Callable[..., Settings], source: PgSchema
) -> None:
    """Only the leader settles a status left at ``syncing``: another instance on the same file would
    mark the leader's running sync as interrupted."""
    settings = configure(make_settings, source, columns=MAP)
    async with Env(settings) as leader:
        await leader.store.kv_set("sync_status:monitoring_data", {"state": "syncing", "rows": 0})
        other = SyncEngine(settings, leader.store, BackgroundTasks())
        await other.startup()
        assert not other.leader.held
        assert (await leader.engine.get_status("monitoring_data"))["state"] == "syncing"


async def test_partitioned_read_keeps_null_partition_keys(
    make_settings: Callable[..., Settings], source: PgSchema
) -> None:
    source.execute(
        "INSERT INTO rs VALUES ('c0001', 'm8', 0.3, now(), 801, NULL), ('c0002', 'm8', 0.4, now(), 802, NULL)"
    )
    settings = configure(make_settings, source, columns=MAP, partition_column="environment", duckdb={"sync_workers": 3})
    async with Env(settings) as e:
        res = await e.engine.sync_dataset("monitoring")
        assert res.status == "ready" and res.rows == joined_count(source) == 62
        got = await e.rows("SELECT environment, count(*) FROM monitoring_results GROUP BY 1 ORDER BY 1 NULLS LAST")
        want = source.fetch("SELECT environment, count(*) FROM rs GROUP BY 1 ORDER BY 1 NULLS LAST")
        assert got == [tuple(r) for r in want]
        assert [c["type"] for c in await e.store.describe("monitoring_results")] == [
            "VARCHAR",
            "VARCHAR",
            "DOUBLE",
            "TIMESTAMP",
            "INTEGER",
            "VARCHAR",
        ]

    capped = configure(
        make_settings,
        source,
        columns=MAP,
        partition_column="environment",
        duckdb={"sync_workers": 2, "max_sync_rows": 25},
    )
    async with Env(capped) as e2:
        res = await e2.engine.sync_dataset("monitoring", force_full=True)
        assert res.truncated and await e2.count("monitoring_results") == 25


async def test_monitoring_custom_map_target_that_is_an_alias_keys_the_join(
    make_settings: Callable[..., Settings], source: PgSchema
) -> None:
    """§8.1 step 3: custom map, then the alias table. ``{record_id: id}`` names the dataset side's key
    ``dataset_id``, so the view joins (it failed: "must return a dataset_id column"), as an upload with
    the same map does; the eval target keeps §4.4's rule (the custom name as written)."""
    mon, ev = TARGETS["monitoring"], TARGETS["eval"]
    assert column_renames(["conv", "lat"], mon, {"conv": "Record ID", "lat": "latency_ms"}) == {
        "conv": "dataset_id",
        "lat": "latency",
    }
    assert column_renames(["conv"], ev, {"conv": "id"}) == {"conv": "id"}
    settings = configure(make_settings, source, columns={**MAP, "record_id": "id"})
    async with Env(settings) as e:
        res = await e.engine.sync_dataset("monitoring")
        assert res.status == "ready", res.error
        assert res.rows == joined_count(source) == 60
        rows = await e.rows("SELECT count(*) FROM monitoring_data WHERE query IS NULL")
        assert rows == [(0,)]  # every result row carries its record's query


@pytest.mark.parametrize("reader", READERS)
async def test_a_text_watermark_compares_in_byte_order_whatever_the_collation(
    make_settings: Callable[..., Settings], pg: PgSchema, reader: str
) -> None:
    """DuckDB's max takes the watermark in byte order; under an ICU collation 'a' sorts below 'B', so
    a new row 'a' (above 'B' in byte order) was never read by ``k >= 'B'``."""
    pg.execute('CREATE TABLE ds (dataset_id text, k text COLLATE "und-x-icu")')
    pg.execute('CREATE TABLE rs (dataset_id text, metric_name text, metric_score float8, k text COLLATE "und-x-icu")')
    pg.execute("INSERT INTO ds VALUES ('r1', 'A'), ('r2', 'B')")
    pg.execute("INSERT INTO rs VALUES ('r1', 'm', 0.5, 'A'), ('r2', 'm', 0.7, 'B')")
    settings = configure(make_settings, pg, incremental_column="k", duckdb={"sync_reader": reader})
    async with Env(settings) as e:
        assert (await e.engine.sync_dataset("monitoring")).rows == 2
        pg.execute("INSERT INTO ds VALUES ('r3', 'a')")
        pg.execute("INSERT INTO rs VALUES ('r3', 'm', 0.9, 'a')")
        assert pg.fetch("SELECT 'a' < 'B' COLLATE \"und-x-icu\"")[0][0] is True  # the collation disagrees
        again = await e.engine.sync_dataset("monitoring")
        assert again.sync_type == "incremental" and again.rows == 3
        assert await e.rows("SELECT dataset_id FROM monitoring_data ORDER BY dataset_id") == [
            ("r1",),
            ("r2",),
            ("r3",),
        ]


@pytest.mark.parametrize("reader", READERS)
async def test_a_failing_source_query_is_reported_in_postgresql_words(
    make_settings: Callable[..., Settings], source: PgSchema, reader: str
) -> None:
    """The status error of a query PostgreSQL refuses is its message, not DuckDB's wrapper around it.

    With the postgres extension it read 'Binder Error: Failed to prepare query "SELECT * FROM (…) AS
    _axis_q LIMIT 2000001": ERROR: … LINE 1: DESCRIBE SELECT * FROM postgres_query(?, ?)'.
    """
    settings = configure(
        make_settings,
        source,
        columns=MAP,
        results_query=f'SELECT * FROM "{source.schema}".no_such_table',
        duckdb={"sync_reader": reader},
    )
    async with Env(settings) as e:
        res = await e.engine.sync_dataset("monitoring")
        assert res.status == "error"
        assert res.error == f'relation "{source.schema}.no_such_table" does not exist'

        status = await e.engine.get_status("monitoring_data")
        assert status["state"] == "error" and status["error"] == res.error
