"""Rows rendered as JSON by DuckDB (json_rows) against the Python serializer and hand-written values."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import random
import struct
import time
from typing import Any

import duckdb
import numpy as np
import pytest

from app.models.data import UploadResponse
from app.serialization import RenderedRows
from app.services.duckdb_store import DuckDBStore
from app.services.json_rows import cell_json_sql, load_json_cell, preview_and_rows_sync, render_rows_sync
from tests.robustness import strict_json

COLUMNS = (
    "s VARCHAR, i BIGINT, h HUGEINT, d DOUBLE, f FLOAT, b BOOLEAN, dd DATE, ts TIMESTAMP, tz TIMESTAMPTZ, "
    'dc DECIMAL(18,6), u UBIGINT, "we""ird ké\\y" INTEGER'
)


def _array(rows: RenderedRows) -> bytes:
    """The rendered rows as the one JSON array a response body carries."""
    return b"".join(rows.array_pieces())


def _python_rows(cur: duckdb.DuckDBPyConnection, table: str) -> list[dict[str, Any]]:
    """The reference: DuckDB's Python values through the app's clean_json rules (the Row serializer)."""
    cur.execute(f"SELECT * FROM {table}")
    names = [d[0] for d in cur.description or []]
    return list(RenderedRows.of([dict(zip(names, row, strict=True)) for row in cur.fetchall()]))


def _random_rows(n: int) -> list[tuple[Any, ...]]:
    rng = random.Random(7)
    specials = [0.1, -0.0, 1e-7, 123456789.125, float("nan"), float("inf"), 5e-324, 1.7976931348623157e308, None]
    rows = []
    for k in range(n):
        d = struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] if k % 3 else rng.choice(specials)
        f = float(np.float32(d)) if d is not None and (not math.isfinite(d) or abs(d) < 3e38) else None
        micro = rng.choice([0, 500000, 1, 999999, rng.randrange(10**6)])
        ts = dt.datetime(
            rng.randrange(1, 10000), rng.randrange(1, 13), rng.randrange(1, 29),
            rng.randrange(24), rng.randrange(60), rng.randrange(60), micro,
        )  # fmt: skip
        chars = [rng.randrange(0, 0x80), rng.randrange(0x80, 0x2FFF), 0x1F600, ord('"'), ord("\\")]
        text = "".join(chr(rng.choice(chars)) for _ in range(rng.randrange(8))) if k % 5 else None
        rows.append((
            text, rng.randrange(-(2**63), 2**63), rng.randrange(-(2**100), 2**100), d, f,
            rng.choice([True, False, None]), ts.date(), ts, ts.replace(tzinfo=dt.UTC),
            round(rng.uniform(-1e11, 1e11), 6), rng.randrange(2**64), rng.randrange(-100, 100),
        ))  # fmt: skip
    return rows


async def test_duckdb_rendering_equals_the_python_serializer(store: DuckDBStore) -> None:
    def build(cur: duckdb.DuckDBPyConnection) -> None:
        cur.execute(f"CREATE TABLE t ({COLUMNS})")
        cur.executemany("INSERT INTO t VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", _random_rows(2000))
        cur.execute(
            "INSERT INTO t (dd, ts, tz) VALUES ('infinity', 'infinity', 'infinity'), "
            "('-infinity', '-infinity', '-infinity'), "
            "('9999-12-31', '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59.999999+00'), "
            "('0001-01-01', '0001-01-01 00:00:00', '0001-01-01 00:00:00+00')"
        )

    await store.run_write(build)
    fast = await store.run_read(lambda cur: render_rows_sync(cur, "t", 10_000))
    slow = await store.run_read(lambda cur: _python_rows(cur, "t"))
    assert fast.size == 2004 and len(slow) == 2004
    rows = json.loads(_array(fast))  # valid JSON: no NaN / Infinity tokens
    assert rows == slow
    assert list(rows[0]) == ["s", "i", "h", "d", "f", "b", "dd", "ts", "tz", "dc", "u", 'we"ird ké\\y']
    assert rows[-4:] == [
        {**dict.fromkeys(rows[0], None), "dd": "infinity", "ts": "infinity", "tz": "infinity"},
        {**dict.fromkeys(rows[0], None), "dd": "-infinity", "ts": "-infinity", "tz": "-infinity"},
        {**dict.fromkeys(rows[0], None), "dd": "infinity", "ts": "infinity", "tz": "infinity"},
        {**dict.fromkeys(rows[0], None), "dd": "-infinity", "ts": "-infinity", "tz": "-infinity"},
    ]
    # The first rows are the `specials` (k % 3 == 0): NaN and ±inf became null, not NaN tokens.
    assert b"NaN" not in _array(fast) and b"Infinity" not in _array(fast)


async def test_hand_written_cells(store: DuckDBStore) -> None:
    def build(cur: duckdb.DuckDBPyConnection) -> None:
        cur.execute("CREATE TABLE t (ts TIMESTAMP, tz TIMESTAMPTZ, d DOUBLE, s VARCHAR, n DECIMAL(4,2))")
        cur.execute(
            "INSERT INTO t VALUES ('2024-03-01 11:00:00', '2024-03-01 12:00:00.5+01', 'nan', 'a\"b\n', 1.25), "
            "('2024-03-01 11:00:00.000001', NULL, 3, '', NULL)"
        )

    await store.run_write(build)
    rendered = await store.run_read(lambda cur: render_rows_sync(cur, "t", 1))
    assert rendered.size == 1 and _array(rendered).startswith(b"[{") and _array(rendered).endswith(b"}]")
    assert list(rendered) == [
        {"ts": "2024-03-01T11:00:00", "tz": "2024-03-01T11:00:00.500000Z", "d": None, "s": 'a"b\n', "n": 1.25}
    ]
    preview, rows = await store.run_read(lambda cur: preview_and_rows_sync(cur, "t", 1, 5))
    assert rows[1] == {"ts": "2024-03-01T11:00:00.000001", "tz": None, "d": 3.0, "s": "", "n": None}
    assert preview == [
        {
            "ts": dt.datetime(2024, 3, 1, 11),
            "tz": dt.datetime(2024, 3, 1, 11, 0, 0, 500000, tzinfo=dt.UTC),
            "d": preview[0]["d"],
            "s": 'a"b\n',
            "n": preview[0]["n"],
        }
    ] and math.isnan(preview[0]["d"])
    empty = await store.run_read(lambda cur: render_rows_sync(cur, "t", 0))
    assert _array(empty) == b"[]" and list(empty) == []


async def test_other_types_and_out_of_range_years_take_the_python_path(store: DuckDBStore) -> None:
    assert cell_json_sql('"x"', "BLOB") is None

    def build(cur: duckdb.DuckDBPyConnection) -> None:
        cur.execute("CREATE TABLE o (b BLOB, iv INTERVAL, l INTEGER[], j JSON, s VARCHAR)")
        cur.execute("INSERT INTO o VALUES ('\\xFF\\x41'::BLOB, INTERVAL 90 SECOND, [1, NULL], '{\"k\": 1}', 'x')")
        cur.execute("CREATE TABLE y (d DATE, s VARCHAR)")
        cur.execute("INSERT INTO y VALUES ('2024-01-01', 'a'), ('10000-01-01', 'b')")

    await store.run_write(build)
    other = await store.run_read(lambda cur: render_rows_sync(cur, "o", 10))
    assert list(other) == [{"b": "\ufffdA", "iv": 90.0, "l": [1, None], "j": '{"k": 1}', "s": "x"}]
    # A date Python's datetime cannot hold: the head goes through the Python path, where the DuckDB
    # client hands such values over as text.
    dated = await store.run_read(lambda cur: render_rows_sync(cur, "y", 2))
    assert list(dated) == [{"d": "2024-01-01", "s": "a"}, {"d": "10000-01-01", "s": "b"}]


def test_response_splices_rendered_rows() -> None:
    rows = RenderedRows.of([{"a": 1, "t": dt.datetime(2024, 1, 2, tzinfo=dt.UTC)}, {"a": float("nan"), "t": None}])
    body = UploadResponse(
        format="flat_format",
        row_count=3,
        columns=["a", "t"],
        message="ok",
        data=[],
        dataset_id="x",
        data_truncated=True,
    ).with_rows(rows)
    parsed = json.loads(body.render_json())
    assert parsed["data"] == [{"a": 1, "t": "2024-01-02T00:00:00Z"}, {"a": None, "t": None}]
    assert parsed["data_truncated"] is True and parsed["dataset_id"] == "x" and parsed["success"] is True
    assert list(rows) == parsed["data"] and body.data == []
    plain = UploadResponse(format="f", row_count=0, columns=[], message="", data=[{"a": 2}], dataset_id="y")
    assert json.loads(plain.render_json())["data"] == [{"a": 2}] and plain.data == [{"a": 2}]


async def test_decoded_json_cells_windows_and_offsets(store: DuckDBStore) -> None:
    """decode_json: JSON cells become values, NULL ones drop their key; a window holding NaN goes to Python."""
    n = 20_000

    def build(cur: duckdb.DuckDBPyConnection) -> None:
        cur.execute(
            "CREATE TABLE c AS SELECT i, CASE WHEN i % 4 = 0 THEN NULL ELSE json_object('k', i, 's', 'é\"' || i) END "
            "AS j, CASE WHEN i = 17000 THEN '{\"v\": NaN}'::JSON WHEN i = 17001 THEN '[1e400]'::JSON "
            "ELSE to_json([i, i + 0.5]) END AS arr, CAST(i AS VARCHAR) AS t FROM range(?) r(i)",
            [n],
        )

    await store.run_write(build)

    def expected(i: int) -> dict[str, Any]:
        row: dict[str, Any] = {"i": i}
        if i % 4:
            row["j"] = {"k": i, "s": f'é"{i}'}
        row["arr"] = {17000: {"v": None}, 17001: [None]}.get(i, [i, i + 0.5])
        row["t"] = str(i)
        return row

    for offset, limit in ((0, n), (8190, 5), (16_383, 3_000), (19_998, 50)):
        rendered = await store.run_read(
            lambda cur, o=offset, k=limit: render_rows_sync(cur, "c", k, o, decode_json=True)
        )
        want = [expected(i) for i in range(offset, min(offset + limit, n))]
        assert rendered.size == len(want) and json.loads(_array(rendered)) == want
    # Without decode_json a JSON cell is its text, as the DuckDB client returns it.
    plain = await store.run_read(lambda cur: render_rows_sync(cur, "c", 2, 0))
    assert list(plain) == [{"i": 0, "j": None, "arr": "[0.0,0.5]", "t": "0"}, {**plain[1], "arr": "[1.0,1.5]"}]
    assert json.loads(plain[1]["j"]) == {"k": 1, "s": 'é"1'}


async def test_decimals_of_every_shape_are_json_numbers_like_float_decimal(store: DuckDBStore) -> None:
    """DECIMAL(p, p) (DuckDB writes '.5') and DECIMAL(p, 0) (no fraction) parse as float(Decimal) does."""
    cases = {
        "a": ("0.5", "DECIMAL(16,16)"), "b": ("-0.5", "DECIMAL(38,38)"), "c": ("0", "DECIMAL(20,20)"),
        "d": ("9007199254740993", "DECIMAL(19,0)"), "e": ("42", "DECIMAL(20,0)"), "f": ("-3", "DECIMAL(5,0)"),
        "g": ("0.001", "DECIMAL(3,3)"), "h": ("123456789012345678.123", "DECIMAL(38,3)"), "i": ("1.25", "DECIMAL(4,2)"),
    }  # fmt: skip
    select = ", ".join(f"CAST('{v}' AS {t}) AS {k}" for k, (v, t) in cases.items())
    await store.run_write(lambda cur: cur.execute(f"CREATE TABLE d AS SELECT {select}"))
    rendered = await store.run_read(lambda cur: render_rows_sync(cur, "d", 10))
    row = strict_json(_array(rendered))[0]
    assert row == {k: float(decimal.Decimal(v)) for k, (v, _) in cases.items()}
    assert all(type(x) is float for x in row.values())  # as the Python path writes them (9007199254740992.0)
    # A DECIMAL list is not a DECIMAL: it goes to Python (DuckDB would write [.5]).
    await store.run_write(lambda cur: cur.execute("CREATE TABLE dl AS SELECT [0.5::DECIMAL(20,20)] AS l"))
    assert strict_json(_array(await store.run_read(lambda cur: render_rows_sync(cur, "dl", 1)))) == [{"l": [0.5]}]


def test_python_rendering_writes_keys_and_surrogates_like_the_row_serializer() -> None:
    rows = [{"rc": {True: 1, None: 2, 3: dt.date(2024, 1, 2)}, "s": "\ud800x"}]
    assert list(RenderedRows.of(rows)) == [{"rc": {"True": 1, "None": 2, "3": "2024-01-02"}, "s": "\ud800x"}]
    assert _array(RenderedRows.of(rows)).isascii()  # the lone surrogate is escaped, the body stays valid UTF-8


async def test_json_cells_with_lowercase_non_finite_tokens_and_huge_numbers(store: DuckDBStore) -> None:
    """DuckDB's JSON accepts nan/inf/INFINITY and 400-digit numbers and keeps them as written; the page
    stays standard JSON with those values as null, like the Python reading."""
    cells = [
        '{"score": nan, "ok": 1}', '{"score": -inf, "ok": 2}', '{"v": [INFINITY, Inf, 1]}',
        '{"score": ' + "9" * 400 + '.5, "ok": 3}', '{"note": "information about nan and inf", "ok": 4}',
    ]  # fmt: skip

    def build(cur: duckdb.DuckDBPyConnection) -> None:
        cur.execute("CREATE TABLE c (i INTEGER, j JSON)")
        cur.executemany("INSERT INTO c VALUES (?, CAST(? AS JSON))", list(enumerate(cells)))

    await store.run_write(build)
    page = await store.run_read(lambda cur: render_rows_sync(cur, "c", 10, decode_json=True))
    assert strict_json(_array(page)) == [
        {"i": 0, "j": {"score": None, "ok": 1}},
        {"i": 1, "j": {"score": None, "ok": 2}},
        {"i": 2, "j": {"v": [None, None, 1]}},
        {"i": 3, "j": {"score": None, "ok": 3}},
        {"i": 4, "j": {"note": "information about nan and inf", "ok": 4}},
    ]
    assert load_json_cell('{"s": "nan", "x": -INF}') == {"s": "nan", "x": -math.inf}
    assert load_json_cell("{not json") == "{not json"


async def test_intervals_are_postgresql_epoch_seconds_on_every_path(store: DuckDBStore) -> None:
    """INTERVAL → seconds as PostgreSQL's extract(epoch) (a year is 365.25 days, a month 30), in SQL and in
    Python rendering alike; DuckDB's timedelta would make a year 360 days and overflow past ~2.7 M years."""

    def build(cur: duckdb.DuckDBPyConnection) -> None:
        cur.execute("CREATE TABLE iv (i INTEGER, v INTERVAL)")
        cur.execute(
            "INSERT INTO iv VALUES (1, INTERVAL '1 year 2 months 3 days 04:05:06.789'), (2, INTERVAL '-1 month'), "
            "(3, INTERVAL '178000000 years'), (4, NULL)"
        )
        cur.execute("CREATE TABLE ivb AS SELECT *, '\\xFF'::BLOB AS b FROM iv")  # a BLOB: the Python path

    await store.run_write(build)
    year = 365.25 * 86400
    expected = [
        {"i": 1, "v": year + 2 * 30 * 86400 + 3 * 86400 + 4 * 3600 + 5 * 60 + 6.789},
        {"i": 2, "v": -30 * 86400.0},
        {"i": 3, "v": 178_000_000 * year},
        {"i": 4, "v": None},
    ]
    sql_rows = list(await store.run_read(lambda cur: render_rows_sync(cur, "iv", 10)))
    py_rows = [
        {k: r[k] for k in ("i", "v")} for r in await store.run_read(lambda cur: render_rows_sync(cur, "ivb", 10))
    ]
    preview, _ = await store.run_read(lambda cur: preview_and_rows_sync(cur, "iv", 10, 10))
    for rows in (sql_rows, py_rows, preview):
        assert [r["i"] for r in rows] == [1, 2, 3, 4] and rows[3]["v"] is None
        assert [r["v"] for r in rows[:3]] == [pytest.approx(e["v"], rel=1e-15) for e in expected[:3]]


async def test_wide_tables_render_in_column_groups_with_the_same_rows(store: DuckDBStore) -> None:
    """A table wider than one render group (200 cells) is rendered group by group and joined per row.

    One projection of 5,000 cells took DuckDB ~10 s to plan per window (a 3-row upload: 22 s); the
    rows, key order, NULL-keyed JSON cells and windows must stay exactly those of the Python serializer.
    """
    narrow = ["s", "i", "h", "d", "f", "b", "dd", "ts", "tz", "dc", "u", "w"]
    names = [f"c{k}_{name}" for k in range(20) for name in narrow]  # 240 columns: two groups
    base = _random_rows(2500)

    narrow_columns = COLUMNS.replace('"we""ird ké\\y" INTEGER', "w INTEGER")
    select = ", ".join(f"{n.split('_')[1]} AS {n}" for n in names)

    def build(cur: duckdb.DuckDBPyConnection) -> None:
        cur.execute(f"CREATE TABLE t ({narrow_columns})")
        cur.executemany(f"INSERT INTO t VALUES ({', '.join('?' * len(narrow))})", base)
        cur.execute(f"CREATE TABLE wide AS SELECT {select} FROM t")
        cur.execute(
            "CREATE TABLE wide_json AS SELECT *, "
            "CASE WHEN c0_i % 2 = 0 THEN NULL ELSE '{\"k\": 1}'::JSON END AS j FROM wide"
        )

    await store.run_write(build)
    fast = await store.run_read(lambda cur: render_rows_sync(cur, "wide", 10_000))
    slow = await store.run_read(lambda cur: _python_rows(cur, "wide"))
    assert fast.size == len(slow) == 2500
    rows = json.loads(_array(fast))
    assert rows == slow and list(rows[0]) == names
    # an offset window of a wide table, and decoded JSON cells (a NULL one leaves its key out)
    part = await store.run_read(lambda cur: render_rows_sync(cur, "wide_json", 7, 2041, decode_json=True))
    got = json.loads(_array(part))
    assert [r["c0_i"] for r in got] == [row[1] for row in base[2041:2048]]
    for r, row in zip(got, base[2041:2048], strict=True):
        assert ("j" in r) == (row[1] % 2 == 1) and r.get("j", {"k": 1}) == {"k": 1}
        assert list(r)[: len(names)] == names

    # 3,000 DECIMAL columns, two rows: planned in groups (one projection of them all took ~16 s)
    def build_very_wide(cur: duckdb.DuckDBPyConnection) -> None:
        cols = ", ".join(f"CAST(r + {i} / 8 AS DECIMAL(18,3)) AS v{i}" for i in range(3000))
        cur.execute(f"CREATE TABLE very_wide AS SELECT {cols} FROM range(2) t(r)")

    await store.run_write(build_very_wide)
    started = time.monotonic()
    very = await store.run_read(lambda cur: render_rows_sync(cur, "very_wide", 10))
    assert time.monotonic() - started < 8
    assert json.loads(_array(very)) == [{f"v{i}": round(r + i / 8, 3) for i in range(3000)} for r in range(2)]
