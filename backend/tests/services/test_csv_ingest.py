"""CSV ingestion: spooling with a size cap, encoding checks, strict RFC-4180 parsing, landing."""

from __future__ import annotations

import datetime as dt
import io
import math
import os
import subprocess
import threading
import uuid
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest
from starlette.datastructures import UploadFile

from app.errors import Invalid, PayloadTooLarge
from app.services.csv_ingest import (
    CsvLoadResult,
    CsvTransform,
    _line_ending_note,
    check_csv_filename,
    count_csv_rows,
    create_table_from_csv,
    first_non_numeric_value,
    ingest_csv_file,
    ingest_csv_upload,
    spool_upload,
    sweep_orphan_spool_files,
)
from app.services.duckdb_store import DuckDBStore


class StreamedUpload:
    """An upload whose bytes are generated lazily (never held in memory at once)."""

    def __init__(self, filename: str | None, total_bytes: int, line: bytes = b"a,b,c\n") -> None:
        self.filename = filename
        self.remaining = total_bytes
        self.line = line
        self.bytes_served = 0

    async def read(self, size: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        n = self.remaining if size < 0 else min(size, self.remaining)
        reps = n // len(self.line) + 1
        chunk = (self.line * reps)[:n]
        self.remaining -= n
        self.bytes_served += n
        return chunk


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def _load(tmp_path: Path, data: bytes, **kw: bool) -> tuple[duckdb.DuckDBPyConnection, CsvLoadResult]:
    con = duckdb.connect()
    res = create_table_from_csv(con, _write(tmp_path, "f.csv", data), "t", **kw)
    return con, res


# ------------------------------------------------------------------ names + spooling
@pytest.mark.parametrize("name", ["data.csv", "DATA.CSV", "x.Csv", "dir/sub/e.csv", "C:\\u\\e.CSV"])
def test_filename_accepts_csv_case_insensitively(name: str) -> None:
    assert check_csv_filename(name).lower().endswith(".csv")
    assert "/" not in check_csv_filename(name) and "\\" not in check_csv_filename(name)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (None, "No file provided"),
        ("", "No file provided"),
        ("a.xlsx", "Only CSV files are supported"),
        ("a.csv.exe", "Only CSV files are supported"),
    ],
)
def test_filename_rejects(name: str | None, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        check_csv_filename(name)


async def test_spool_writes_exact_bytes_and_removes(tmp_path: Path) -> None:
    payload = b"a,b\n" + b"1,2\n" * 100_000
    up = UploadFile(io.BytesIO(payload), filename="Upload.CSV")
    spooled = await spool_upload(up, max_bytes=10 * 1024 * 1024, spool_dir=tmp_path / "spool", chunk_size=4096)
    with spooled:
        assert spooled.filename == "Upload.CSV"
        assert spooled.size_bytes == len(payload)
        assert spooled.path.read_bytes() == payload
    assert not spooled.path.exists()


async def test_spool_stops_at_cap_without_reading_everything(tmp_path: Path) -> None:
    # A 250 MB upload generated lazily; the cap (1 MB) stops reading right after it is crossed.
    up = StreamedUpload("big.csv", 250 * 1024 * 1024)
    spool = tmp_path / "spool"
    with pytest.raises(PayloadTooLarge, match="larger than the upload limit of 1 MB"):
        await spool_upload(up, max_bytes=1024 * 1024, spool_dir=spool, chunk_size=64 * 1024)
    assert up.bytes_served <= 1024 * 1024 + 64 * 1024
    assert list(spool.iterdir()) == []


async def test_spool_rejects_name_before_reading(tmp_path: Path) -> None:
    up = StreamedUpload("notes.txt", 1000)
    with pytest.raises(Invalid, match="Only CSV"):
        await spool_upload(up, max_bytes=10_000, spool_dir=tmp_path)
    assert up.bytes_served == 0


# ------------------------------------------------------------------ encoding
def test_bom_is_stripped_from_first_header(tmp_path: Path) -> None:
    con, res = _load(tmp_path, b"\xef\xbb\xbfmetric_name,metric_score\nacc,0.5\n")
    assert res.has_bom is True
    assert res.header == ["metric_name", "metric_score"]
    assert con.execute("SELECT metric_name, metric_score FROM t").fetchall() == [("acc", 0.5)]


def test_latin1_bytes_name_offset_and_line(tmp_path: Path) -> None:
    data = "a,b\n1,ok\n2,café\n".encode("latin-1")
    with pytest.raises(Invalid) as err:
        _load(tmp_path, data)
    msg = err.value.message
    assert "not valid UTF-8" in msg
    bad_offset = data.index(b"\xe9")
    assert f"byte offset {bad_offset}" in msg
    assert "line 3" in msg
    assert "0xE9" in msg


def test_encoding_check_failing_after_the_block_ended_is_raised_not_awaited_forever(tmp_path: Path) -> None:
    """The block (the parse) may end before the check fails; the check then stops and its error is raised."""
    from app.services.csv_ingest import _encoding_check_alongside

    path = _write(tmp_path, "late.csv", b"id,text\n" + b"1,ok\n" * 200_000 + b"2,caf\xe9\n")
    cur = duckdb.connect().cursor()
    finished = threading.Event()

    def _run() -> None:
        with pytest.raises(Invalid, match="not valid UTF-8"), _encoding_check_alongside(cur, path):
            pass  # a parse that finished at once
        finished.set()

    worker = threading.Thread(target=_run, daemon=True)
    worker.start()
    assert finished.wait(30), "the encoding check kept waiting for a block that had ended"
    assert cur.execute("SELECT 42").fetchone() == (42,)


@pytest.mark.parametrize("bad", [b"caf\xe9", b"nul\x00byte"])
def test_encoding_error_wins_over_the_parse_running_alongside(tmp_path: Path, bad: bytes) -> None:
    """The check runs while DuckDB parses; its message (byte offset, line) is the one reported."""
    rows = b"".join(b"%d,row %d\n" % (i, i) for i in range(60_000))
    data = b"id,text\n" + rows + b"60000," + bad + b"\n"
    offset = data.index(b"\x00") if b"\x00" in bad else data.index(b"\xe9")
    path = _write(tmp_path, "bad.csv", data)
    con = duckdb.connect()
    for run in (lambda cur: create_table_from_csv(cur, path, "t"), lambda cur: count_csv_rows(cur, path)):
        cur = con.cursor()
        with pytest.raises(Invalid) as err:
            run(cur)
        assert f"byte offset {offset} (line 60002)" in err.value.message
        assert cur.execute("SELECT 42").fetchone() == (42,)  # no interrupt left behind
    assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchone() == (0,)


def test_utf16_is_named(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="UTF-16"):
        _load(tmp_path, "a,b\n1,2\n".encode("utf-16"))


@pytest.mark.parametrize("data", [b"", b"\n\n  \r\n", b"\xef\xbb\xbf"])
def test_empty_file(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(Invalid, match="Empty CSV file"):
        _load(tmp_path, data)


def test_binary_file_renamed_csv(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4
    with pytest.raises(Invalid, match="binary"):
        _load(tmp_path, png)


def test_binary_without_nul_is_invalid_utf8(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="not valid UTF-8"):
        _load(tmp_path, bytes(range(1, 256)) * 3)


# ------------------------------------------------------------------ structure
def test_header_only(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="header row but no data rows"):
        _load(tmp_path, b"a,b,c\n")


def test_header_only_allowed_when_asked(tmp_path: Path) -> None:
    _con, res = _load(tmp_path, b"a,b,c\n", allow_empty=True)
    assert res.row_count == 0 and res.column_names == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("data", "line", "expected", "found"),
    [
        (b"a,b,c\n1,2,3\n4,5,6,7\n", 3, 3, 4),
        (b"a,b\nx,1\nx,1,5,6,7,8\n", 3, 2, 6),  # DuckDB itself reports 3: it stops at the first extra field
        (b'a,b\nx,1\n"q,r",1,"s,t",9\n', 3, 2, 4),
        (b"a,b,c,d\n1,m,0.5,a\n   \n2,m,0.6,b\n", 3, 4, 1),
        (b"a,b,c\n1,2,3\n4,5,6\n7,8\n", 4, 3, 2),
    ],
)
def test_ragged_rows_name_line(tmp_path: Path, data: bytes, line: int, expected: int, found: int) -> None:
    with pytest.raises(Invalid) as err:
        _load(tmp_path, data)
    assert f"on line {line}" in err.value.message
    assert f"expected {expected} columns, found {found}" in err.value.message
    assert "Expected Number" not in err.value.message  # the snippet is the file's line, not DuckDB's text


@pytest.mark.parametrize(
    "data",
    [
        b"a,b\n1,2\n3,4\n",
        b'\xef\xbb\xbfa,b\n1,"x\ny, ""z"""\n2,\n',
        b"a,b\r\n1,2\r\n",
        b"a,b\n",
        b"a,b,c\n1,2,3\n4,5,6,7\n",
        b'a,b\n1,"open\n2,3\n',
        b"a,b\n\xe9t\xe9,1\n",
        b"a,a\n1,2\n",
        b"",
    ],
)
def test_count_csv_rows_checks_like_the_loader_without_storing(tmp_path: Path, data: bytes) -> None:
    """Same header, row count and error message as create_table_from_csv; nothing is created."""
    path = _write(tmp_path, "f.csv", data)
    con = duckdb.connect()
    want: tuple[list[str], int] | str
    try:
        loaded = _load(tmp_path, data, allow_empty=True)[1]
        want = (loaded.header, loaded.row_count)
    except Invalid as exc:
        want = exc.message
    try:
        got: tuple[list[str], int] | str = count_csv_rows(con, path)
    except Invalid as exc:
        got = exc.message
    assert got == want
    assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchone() == (0,)


def test_mixed_line_endings_are_named(tmp_path: Path) -> None:
    data = b"dataset_id,metric_name,metric_score,x\n1,m,0.5,a\r\n2,m,0.6,b\n3,m,0.7,c\n"
    with pytest.raises(Invalid) as err:
        _load(tmp_path, data)
    assert err.value.message.endswith(
        "; the file ends its lines in more than one way (CRLF, LF): save it with one kind of line ending"
    )
    # CRLF inside a quoted cell of an LF file parses (and is not called a mix)
    con, _ = _load(tmp_path, b'a,b\n1,"x\r\ny"\n2,z\n')
    assert con.execute("SELECT b FROM t ORDER BY rowid").fetchall() == [("x\r\ny",), ("z",)]


def test_a_bad_row_after_the_inference_sample_is_a_clear_400(tmp_path: Path) -> None:
    """Every column text in the first rows: the full read happens in the CREATE, and its error is the file's."""
    with pytest.raises(Invalid) as err:
        _load(tmp_path, b"query,actual_output\n" + b"hello,world\n" * 20_000 + b"x,y,z\n")
    assert err.value.message == "CSV parsing error on line 20002: expected 2 columns, found 3 (line starts: 'x,y,z')"


def test_line_endings_split_across_reads_are_one_kind(tmp_path: Path) -> None:
    """A CRLF file whose first 4 MiB read ends right after a CRLF is not called a mix."""
    path = _write(tmp_path, "crlf.csv", b"123456\r\n" * (2 * (1 << 22) // 8 + 3))
    assert _line_ending_note(path) == ""
    mixed = _write(tmp_path, "mixed.csv", b"123456\r\n" * ((1 << 22) // 8) + b"1\n2\r3\n")
    assert _line_ending_note(mixed).startswith("; the file ends its lines in more than one way (CRLF, LF, CR)")


def test_unterminated_quote(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="on line 2: a quoted value is never closed"):
        _load(tmp_path, b'a,b\n1,"open\n2,3\n')


def test_a_quoted_cell_beyond_the_buffer_names_the_line_limit_too(tmp_path: Path) -> None:
    """A valid 5 MB quoted cell outgrows DuckDB's buffer, which reports it as an unterminated quote."""
    data = b'id,text\n1,"' + b"x" * 5_000_000 + b'"\n2,short\n'
    with pytest.raises(Invalid) as err:
        _load(tmp_path, data)
    assert "a line is longer than the parser allows (2 MB)" in err.value.message


def test_long_lines_parse_across_buffers_up_to_the_line_limit(tmp_path: Path) -> None:
    # Cells much larger than a parser buffer's share, and a line just under the 2 MB limit.
    big = "x" * 1_900_000
    rows = [f"{i},{('y' * (300_000 + i))}" for i in range(12)]
    data = ("id,text\n" + "\n".join(rows) + f"\n99,{big}\n").encode()
    con, res = _load(tmp_path, data)
    assert res.row_count == 13
    got = con.execute("SELECT id, length(text) FROM t ORDER BY rowid").fetchall()
    assert got == [(i, 300_000 + i) for i in range(12)] + [(99, 1_900_000)]


def test_line_over_the_limit_is_named(tmp_path: Path) -> None:
    data = b"id,text\n1,short\n2," + b"z" * 3_000_000 + b"\n"
    with pytest.raises(Invalid) as err:
        _load(tmp_path, data)
    assert "on line 3" in err.value.message
    assert "a line is longer than the parser allows (2 MB)" in err.value.message


@pytest.mark.parametrize("header", [b"a,b,a", b"Score,x,score"])
def test_duplicate_columns(tmp_path: Path, header: bytes) -> None:
    with pytest.raises(Invalid) as err:
        _load(tmp_path, header + b"\n1,2,3\n")
    assert "Duplicate column name" in err.value.message
    assert "columns 1 and 3" in err.value.message


def test_rfc4180_multiline_and_doubled_quotes(tmp_path: Path) -> None:
    data = b'id,text,json\n1,"line one\nline two, with comma","{""k"": [1, 2]}"\n2,plain,"{}"\n'
    con, res = _load(tmp_path, data)
    assert res.row_count == 2
    rows = con.execute("SELECT id, text, json FROM t ORDER BY id").fetchall()
    assert rows == [(1, "line one\nline two, with comma", '{"k": [1, 2]}'), (2, "plain", "{}")]


def test_crlf_and_blank_header_name(tmp_path: Path) -> None:
    con, res = _load(tmp_path, b",a,b\r\n0,x,1.5\r\n1,y,2\r\n")
    assert res.column_names == ["column1", "a", "b"]
    assert con.execute("SELECT a, b FROM t ORDER BY column1").fetchall() == [("x", 1.5), ("y", 2.0)]


def test_types_and_utc_timestamps(tmp_path: Path) -> None:
    data = b"n,x,ok,ts,label\n1,0.5,true,2026-01-01T10:00:00Z,a\n2,1.5,false,2026-01-01T12:30:00+02:00,b\n"
    con, res = _load(tmp_path, data)
    types = {c["name"]: c["type"] for c in res.columns}
    assert types == {"n": "BIGINT", "x": "DOUBLE", "ok": "BOOLEAN", "ts": "TIMESTAMP", "label": "VARCHAR"}
    assert [r[0] for r in con.execute("SELECT ts FROM t ORDER BY n").fetchall()] == [
        dt.datetime(2026, 1, 1, 10, 0),
        dt.datetime(2026, 1, 1, 10, 30),
    ]


def test_value_after_sniff_sample_falls_back_to_sql_inference(tmp_path: Path) -> None:
    rows = "".join(f"{i},{i / 10},2026-01-01 10:00:00\n" for i in range(25_000))
    data = ("id,metric_score,ts\n" + rows + "25000,high,2026-01-01 11:00:00\n").encode()
    con, res = _load(tmp_path, data)
    assert res.inferred_by_sql is True
    assert res.row_count == 25_001
    types = {c["name"]: c["type"] for c in res.columns}
    assert types == {"id": "BIGINT", "metric_score": "VARCHAR", "ts": "TIMESTAMP"}
    assert first_non_numeric_value(con, "t", "metric_score") == (25_001, "high")


def test_sql_inference_keeps_decimals_exact(tmp_path: Path) -> None:
    """A late decimal in an integer column makes it DOUBLE; DuckDB's '2.5' -> BIGINT cast would round to 3."""
    rows = "".join(f"{i}, {i % 7} ,{'0.3' if i % 2 else '1.0'},2026-01-0{i % 9 + 1}\n" for i in range(25_000))
    data = ("n,spaced,w,day\n" + rows + "2.5, 8 ,0.75,2026-01-09\n").encode()
    con, res = _load(tmp_path, data)
    assert res.inferred_by_sql is True and res.row_count == 25_001
    types = {c["name"]: c["type"] for c in res.columns}
    assert types == {"n": "DOUBLE", "spaced": "BIGINT", "w": "DOUBLE", "day": "TIMESTAMP"}
    assert con.execute("SELECT n, spaced, w FROM t WHERE n = 2.5").fetchall() == [(2.5, 8, 0.75)]
    assert con.execute("SELECT sum(w), sum(n) FROM t").fetchone() == pytest.approx(
        (12_500 * 0.3 + 12_500 * 1.0 + 0.75, sum(range(25_000)) + 2.5)
    )
    assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone() == (0,)


def test_wide_file_checks_and_infers_every_column(tmp_path: Path) -> None:
    """100 columns (more counts than one aggregate each can plan quickly): same checks, per column."""
    width = 100
    header = ",".join(f"c{j}" for j in range(width)) + ",d\n"
    rows = "".join(",".join(str(i + j) for j in range(width)) + f",2026-01-0{i % 9 + 1}\n" for i in range(25_000))
    late = ",".join("2.5" if j == 41 else ("high" if j == 77 else "7") for j in range(width)) + ",2026-01-09 10:30\n"
    con, res = _load(tmp_path, (header + rows + late).encode())
    assert res.inferred_by_sql is True and res.row_count == 25_001
    types = {c["name"]: c["type"] for c in res.columns}
    assert types["c41"] == "DOUBLE" and types["c77"] == "VARCHAR" and types["d"] == "TIMESTAMP"
    assert {t for n, t in types.items() if n not in ("c41", "c77", "d")} == {"BIGINT"}
    got = con.execute("SELECT c0, c41, c77, d FROM t WHERE c41 = 2.5").fetchall()
    assert got == [(7, 2.5, "high", dt.datetime(2026, 1, 9, 10, 30))]
    assert con.execute("SELECT sum(c99) FROM t").fetchone() == (sum(range(99, 25_099)) + 7,)


def test_pandas_missing_spellings_are_empty_cells_of_number_columns(tmp_path: Path) -> None:
    """``NA``, ``N/A``, ``None``, ``null``, … in a column of numbers are empty cells (pandas: float64 with NaN)."""
    data = (
        b"dataset_id,weight,latency,label\n"
        b'1,NA,1.5,x\n2,0.5,N/A,None\n3,null,2,NULL\n4,0.25,#N/A,"NA"\n'
        + b"".join(b"%d,0.5,3,y\n" % i for i in range(5, 30_000))
        + b"30000,n/a,4,<NA>\n"
    )
    con, res = _load(tmp_path, data)
    types = {c["name"]: c["type"] for c in res.columns}
    assert types == {"dataset_id": "BIGINT", "weight": "DOUBLE", "latency": "DOUBLE", "label": "VARCHAR"}
    expected = pd.read_csv(io.BytesIO(data))
    assert str(expected["weight"].dtype) == "float64" and str(expected["latency"].dtype) == "float64"
    got = con.execute("SELECT weight, latency FROM t ORDER BY rowid").fetchall()
    want = [
        tuple(None if math.isnan(v) else v for v in row)
        for row in expected[["weight", "latency"]].itertuples(index=False)
    ]
    assert got == want
    # a text column keeps the spellings as text (pandas would make them NaN too)
    labels = con.execute("SELECT label FROM t WHERE rowid IN (0, 1, 2, 3, 29999) ORDER BY rowid").fetchall()
    assert [r[0] for r in labels] == ["x", "None", "NULL", "NA", "<NA>"]


def test_only_true_false_are_booleans_and_long_integers_stay_exact(tmp_path: Path) -> None:
    """DuckDB reads yes/no and T/F as BOOLEAN and rounds 20-digit integers to DOUBLE; pandas does neither."""
    data = b"judgment,flag,ok,big,n,u\nyes,T,true,12345678901234567890,9007199254740993,1_000\nno,F,FALSE,1,2,2_000\n"
    con, res = _load(tmp_path, data)
    types = {c["name"]: c["type"] for c in res.columns}
    assert types == {
        "judgment": "VARCHAR",
        "flag": "VARCHAR",
        "ok": "BOOLEAN",
        "big": "HUGEINT",
        "n": "BIGINT",
        "u": "VARCHAR",
    }
    assert con.execute("SELECT * FROM t").fetchall() == [
        ("yes", "T", True, 12345678901234567890, 9007199254740993, "1_000"),
        ("no", "F", False, 1, 2, "2_000"),
    ]
    # a late 'yes' in a sniffed BOOLEAN column (a full pass); long ids in a sniffed DOUBLE column
    # are looked for in the first rows only (a late one is rounded, as pandas' float64 would)
    rows = "".join(f"{i}.5,{'true' if i % 2 else 'false'}\n" for i in range(25_000))
    con, res = _load(tmp_path, ("x,b\n" + rows + "12345678901234567,yes\n").encode())
    assert res.inferred_by_sql is True
    assert {c["name"]: c["type"] for c in res.columns} == {"x": "VARCHAR", "b": "VARCHAR"}
    assert con.execute("SELECT x, b FROM t WHERE b = 'yes'").fetchall() == [("12345678901234567", "yes")]
    rows = "".join(f"{10**19 + i},{i}.5\n" for i in range(25_000))
    con, res = _load(tmp_path, ("id,x\n" + rows).encode())
    assert {c["name"]: c["type"] for c in res.columns} == {"id": "HUGEINT", "x": "DOUBLE"}
    assert con.execute("SELECT count(DISTINCT id), max(id) FROM t").fetchone() == (25_000, 10**19 + 24_999)


def test_late_time_of_day_in_a_date_column_is_kept(tmp_path: Path) -> None:
    """DuckDB would store '2026-01-09 10:30:00' in a sniffed DATE column as 2026-01-09."""
    rows = "".join(f"{i},2026-01-0{i % 9 + 1}\n" for i in range(25_000))
    con, res = _load(tmp_path, ("id,d\n" + rows).encode())
    assert res.inferred_by_sql is False and {c["name"]: c["type"] for c in res.columns} == {"id": "BIGINT", "d": "DATE"}
    con, res = _load(tmp_path, ("id,d\n" + rows + "25000,2026-01-09 10:30:00\n").encode())
    assert res.inferred_by_sql is True
    assert {c["name"]: c["type"] for c in res.columns} == {"id": "BIGINT", "d": "TIMESTAMP"}
    got = con.execute("SELECT id, d FROM t WHERE id IN (0, 25000) ORDER BY id").fetchall()
    assert got == [(0, dt.datetime(2026, 1, 1)), (25_000, dt.datetime(2026, 1, 9, 10, 30))]


def test_late_utc_offset_in_a_timestamp_column_is_applied(tmp_path: Path) -> None:
    """DuckDB would store '2026-01-01T12:00:00+02:00' in a sniffed TIMESTAMP column as 12:00."""
    rows = "".join(f"2026-01-01 10:00:{i % 60:02d}\n" for i in range(25_000))
    con, res = _load(tmp_path, ("t\n" + rows + "2026-01-01T12:00:00+02:00\n").encode())
    assert res.inferred_by_sql is True and {c["name"]: c["type"] for c in res.columns} == {"t": "TIMESTAMP"}
    assert con.execute("SELECT max(t), min(t) FROM t").fetchone() == (
        dt.datetime(2026, 1, 1, 10, 0, 59),
        dt.datetime(2026, 1, 1, 10, 0),
    )  # 12:00+02:00 is 10:00 UTC, not 12:00
    assert con.execute("SELECT count(*) FROM t WHERE t = TIMESTAMP '2026-01-01 10:00:00'").fetchone() == (418,)


def test_naive_value_after_offsets_is_utc_whatever_the_session_zone(tmp_path: Path) -> None:
    """A sniffed TIMESTAMPTZ column reads a late naive value in the session zone; the loader uses UTC."""
    rows = "".join("2026-01-01T10:00:00+02:00\n" for _ in range(25_000))
    path = _write(tmp_path, "tz.csv", ("t\n" + rows + "2026-01-01 10:00:00\n").encode())
    con = duckdb.connect()
    cur = con.cursor()
    cur.execute("SET TimeZone = 'America/New_York'")
    res = create_table_from_csv(cur, path, "t")
    assert {c["name"]: c["type"] for c in res.columns} == {"t": "TIMESTAMP"}
    got = cur.execute("SELECT t, count(*) FROM t GROUP BY t ORDER BY t").fetchall()
    assert got == [(dt.datetime(2026, 1, 1, 8, 0), 25_000), (dt.datetime(2026, 1, 1, 10, 0), 1)]  # not 15:00
    assert cur.execute("SELECT current_setting('TimeZone')").fetchone() == ("America/New_York",)


def test_zone_names_do_not_carry_over_to_rows_without_one(tmp_path: Path) -> None:
    """DuckDB's reader applies a row's zone name to the next rows without a zone: each row alone, UTC."""
    data = b'x\n"2024-01-02 10:00:00 UTC"\n"2024-01-02 10:00:00 America/New_York"\n"2024-01-02 10:00:00"\n'
    con, _ = _load(tmp_path, data)
    got = [r[0] for r in con.execute("SELECT x FROM t ORDER BY rowid").fetchall()]
    assert got == [dt.datetime(2024, 1, 2, 10), dt.datetime(2024, 1, 2, 15), dt.datetime(2024, 1, 2, 10)]


# Zones DuckDB's casts reject (a blank before the offset or ``Z``, a lowercase ``z``) and their UTC instants,
# worked out by hand; the hours differ so that a time window tells the rows apart.
LOOSE_ZONES = [
    ("2024-01-01 10:00:00 +02:00", dt.datetime(2024, 1, 1, 8)),  # Ruby's Time#to_s
    ("2024-01-01 11:00:00 +0200", dt.datetime(2024, 1, 1, 9)),  # date(1)
    ("2024-01-01 05:00:00 -05", dt.datetime(2024, 1, 1, 10)),
    ("2024-01-01T11:00:00z", dt.datetime(2024, 1, 1, 11)),
    ("2024-01-01T12:00:00.250z", dt.datetime(2024, 1, 1, 12, 0, 0, 250_000)),
    ("2024-01-01T13:00:00 Z", dt.datetime(2024, 1, 1, 13)),
]


def _load_file(tmp_path: Path, data: bytes) -> tuple[duckdb.DuckDBPyConnection, CsvLoadResult]:
    """Load into a DuckDB file (as the store does), in a session zone that is not UTC."""
    con = duckdb.connect(str(tmp_path / "store.duckdb"))
    con.execute("SET TimeZone = 'America/New_York'")
    return con, create_table_from_csv(con, _write(tmp_path, "f.csv", data), "t")


@pytest.mark.parametrize(("text", "instant"), LOOSE_ZONES)
def test_a_zone_after_a_blank_or_a_lowercase_z_is_read_as_the_utc_instant(
    tmp_path: Path, text: str, instant: dt.datetime
) -> None:
    """DuckDB's cast answers NULL for these spellings: the column stayed text (a time filter skipped it)."""
    con, res = _load_file(tmp_path, f"id,ts\n1,{text}\n2,{text}\n3,\n".encode())
    assert {c["name"]: c["type"] for c in res.columns} == {"id": "BIGINT", "ts": "TIMESTAMP"}
    assert con.execute("SELECT id, ts FROM t ORDER BY id").fetchall() == [(1, instant), (2, instant), (3, None)]


@pytest.mark.parametrize("first", ["2024-01-01T07:00:00Z", "2024-01-01 07:00:00"])
def test_loose_zones_after_the_sniff_sample_are_read_not_dropped(tmp_path: Path, first: str) -> None:
    """After 25,000 rows sniffed as zoned timestamps, DuckDB's reader made these values NULL without an error."""
    rows = "".join(f"{i},{first}\n" for i in range(25_000))
    late = "".join(f"{25_000 + i},{text}\n" for i, (text, _) in enumerate(LOOSE_ZONES))
    con, res = _load_file(tmp_path, ("id,ts\n" + rows + late + "99999,\n").encode())
    assert res.inferred_by_sql is True
    assert {c["name"]: c["type"] for c in res.columns} == {"id": "BIGINT", "ts": "TIMESTAMP"}
    got = con.execute("SELECT ts FROM t WHERE id >= 25000 ORDER BY id").fetchall()
    assert got == [(instant,) for _, instant in LOOSE_ZONES] + [(None,)]
    assert con.execute("SELECT DISTINCT ts FROM t WHERE id < 25000").fetchall() == [(dt.datetime(2024, 1, 1, 7),)]


@pytest.mark.parametrize("bad", ["2024-13-01T10:00:00Z", "2024-02-30T10:00:00Z", "2024-01-01T25:00:00+02:00"])
def test_an_impossible_zoned_timestamp_after_the_sniff_sample_is_kept_not_dropped(tmp_path: Path, bad: str) -> None:
    """In a column sniffed as zoned timestamps, DuckDB's reader turned a later impossible one (month 13,
    30 February, hour 25) into NULL without an error: the value was lost. The column now stays text."""
    rows = "".join(f"{i},2024-01-01T07:00:{i % 60:02d}Z\n" for i in range(25_000))
    con, res = _load_file(tmp_path, ("id,ts\n" + rows + f"25000,{bad}\n").encode())
    assert {c["name"]: c["type"] for c in res.columns} == {"id": "BIGINT", "ts": "VARCHAR"}
    assert con.execute("SELECT ts FROM t WHERE id = 25000").fetchall() == [(bad,)]
    assert con.execute("SELECT ts FROM t WHERE id = 61").fetchall() == [("2024-01-01T07:00:01Z",)]


@pytest.mark.parametrize("other", ["not a date", "10:00:00 +02:00", "2024-13-01 10:00:00 +02:00", "Tuesday 10:00 z"])
def test_loose_zones_next_to_text_that_is_no_timestamp_keep_the_column_text(tmp_path: Path, other: str) -> None:
    """Respelling the zone makes no timestamp of other text: one such value keeps every value as written."""
    texts = [text for text, _ in LOOSE_ZONES] + [other]
    data = ("id,ts\n" + "".join(f"{i},{text}\n" for i, text in enumerate(texts))).encode()
    con, res = _load_file(tmp_path, data)
    assert {c["name"]: c["type"] for c in res.columns} == {"id": "BIGINT", "ts": "VARCHAR"}
    assert [r[0] for r in con.execute("SELECT ts FROM t ORDER BY id").fetchall()] == texts


@pytest.mark.parametrize(
    "rows",
    [
        ["01/02/2024", "03/04/2024"],  # read day-first by the sniffer
        ["01/02/2024", "01/13/2024"],  # the same first cell read month-first
        ["1/2/24", "3/4/24"],
    ],
)
def test_non_iso_dates_keep_their_text(tmp_path: Path, rows: list[str]) -> None:
    """A cell's value does not depend on the other rows: non-ISO dates stay text (as pandas keeps them)."""
    con, res = _load(tmp_path, ("d\n" + "\n".join(rows) + "\n").encode())
    assert {c["name"]: c["type"] for c in res.columns} == {"d": "VARCHAR"}
    assert [r[0] for r in con.execute("SELECT d FROM t ORDER BY rowid").fetchall()] == rows


def test_infinity_only_column_is_a_number_not_a_date(tmp_path: Path) -> None:
    con, res = _load(tmp_path, b"x\ninf\n-inf\n")
    assert {c["name"]: c["type"] for c in res.columns} == {"x": "DOUBLE"}
    assert [r[0] for r in con.execute("SELECT x FROM t ORDER BY rowid").fetchall()] == [float("inf"), float("-inf")]


@pytest.mark.parametrize(
    "values",
    [
        ["inf", "0.2", "0.8"],
        ["0.2", "0.8", "inf"],
        ["Infinity", "0.5", "-INF"],
        ["+0.5", "0.25", "1"],
        [""] * 30_000 + ["0.7"],
        [""] * 5 + ["0.7"],
    ],
    ids=["inf-first", "inf-last", "infinity-spellings", "plus-sign", "30k-blanks", "5-blanks"],
)
def test_number_columns_are_numbers_whatever_the_row_order_or_length(tmp_path: Path, values: list[str]) -> None:
    """The sniffer reads a sample; the stored type must not depend on which rows it saw (pandas: float64)."""
    data = ("id,x\n" + "".join(f"r{i},{v}\n" for i, v in enumerate(values))).encode()
    con, res = _load(tmp_path, data)
    assert {c["name"]: c["type"] for c in res.columns} == {"id": "VARCHAR", "x": "DOUBLE"}
    expected = pd.read_csv(io.BytesIO(data))["x"]
    assert expected.dtype == np.float64
    got = [r[0] for r in con.execute("SELECT x FROM t ORDER BY rowid").fetchall()]
    assert got == [None if math.isnan(v) else v for v in expected.tolist()]


def test_text_columns_with_a_blank_sample_stay_text(tmp_path: Path) -> None:
    data = ("id,x,y\n" + "".join(f"r{i},,\n" for i in range(30_000)) + "r,high,\n").encode()
    con, res = _load(tmp_path, data)
    assert {c["name"]: c["type"] for c in res.columns} == {"id": "VARCHAR", "x": "VARCHAR", "y": "VARCHAR"}
    assert con.execute("SELECT count(x), max(x), count(y) FROM t").fetchone() == (1, "high", 0)


def test_sql_inference_reads_naive_timestamps_as_utc(tmp_path: Path) -> None:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'America/New_York'")
    rows = "".join(f"{i},2026-01-01 10:00:00\n" for i in range(25_000))
    data = ("id,ts\n" + rows + "x,2026-01-01T12:00:00+02:00\n").encode()
    res = create_table_from_csv(con, _write(tmp_path, "tz.csv", data), "t")
    assert res.inferred_by_sql is True
    assert {c["name"]: c["type"] for c in res.columns} == {"id": "VARCHAR", "ts": "TIMESTAMP"}
    assert con.execute("SELECT DISTINCT ts FROM t ORDER BY ts").fetchall() == [(dt.datetime(2026, 1, 1, 10, 0),)]
    assert con.execute("SELECT current_setting('TimeZone')").fetchone() == ("America/New_York",)


def test_first_non_numeric_value_none_for_numbers(tmp_path: Path) -> None:
    con, _ = _load(tmp_path, b"s\n1\n\n2.5\n")
    assert first_non_numeric_value(con, "t", "s") is None


# ------------------------------------------------------------------ landing
async def test_ingest_lands_dataset_and_failure_keeps_previous(store: DuckDBStore, tmp_path: Path) -> None:
    def transform(cur: duckdb.DuckDBPyConnection, table: str, load: CsvLoadResult) -> CsvTransform:
        cur.execute(f'ALTER TABLE "{table}" ADD COLUMN doubled DOUBLE')
        cur.execute(f'UPDATE "{table}" SET doubled = score * 2')
        return CsvTransform(format="toy", message=f"{load.row_count} rows", extra={"note": "x"})

    good = _write(tmp_path, "good.csv", b"name,score\na,1\nb,2.5\n")
    res = await ingest_csv_file(store, good, kind="eval", source="upload:good.csv", transform=transform)
    assert res.transform.message == "2 rows"
    assert res.dataset.format == "toy" and res.dataset.row_count == 2
    stored = await store.get_dataset(res.dataset.dataset_id)
    assert stored.format == "toy" and stored.extra == {"note": "x"}
    assert stored.column_names == ["name", "score", "doubled"]
    rows = await store.fetch(f'SELECT name, doubled FROM "{stored.table_name}" ORDER BY name')
    assert rows.rows == [("a", 2.0), ("b", 5.0)]

    for bad in (b"", b"name,score\n", b"name,score\nc,1,9\n", "x\ncafé\n".encode("latin-1")):
        with pytest.raises(Invalid):
            await ingest_csv_file(store, _write(tmp_path, "bad.csv", bad), kind="eval", source="upload:bad.csv")
    latest = await store.resolve_dataset("eval", None)
    assert latest.dataset_id == res.dataset.dataset_id
    assert len(await store.list_datasets("eval")) == 1


async def test_ingest_upload_source_and_cleanup(store: DuckDBStore, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    up = UploadFile(io.BytesIO(b"a,b\n1,2\n"), filename="My Data.CSV")
    res = await ingest_csv_upload(store, up, kind="eval", max_bytes=1000, spool_dir=spool)
    assert res.dataset.source == "upload:My Data.CSV"
    assert res.load.row_count == 1
    assert list(spool.iterdir()) == []
    with pytest.raises(PayloadTooLarge):
        await ingest_csv_upload(store, StreamedUpload("x.csv", 5000), kind="eval", max_bytes=1000, spool_dir=spool)
    assert list(spool.iterdir()) == []


def test_the_start_up_sweep_removes_a_spool_file_carrying_its_own_pid(tmp_path: Path) -> None:
    """The sweep runs before this process spools anything: a file with its own pid is a killed
    predecessor's whose pid was reused (a container restarting the server), not a live upload."""
    mine = tmp_path / f"upload-{os.getpid()}-{uuid.uuid4().hex}.csv"
    other = subprocess.Popen(["sleep", "30"])
    try:
        theirs = tmp_path / f"upload-{other.pid}-{uuid.uuid4().hex}.csv"
        for p in (mine, theirs):
            p.write_bytes(b"a\n1\n")
        assert sweep_orphan_spool_files(tmp_path) == [mine.name]
        assert [p.name for p in tmp_path.iterdir()] == [theirs.name]
    finally:
        other.kill()
        other.wait()
    assert sweep_orphan_spool_files(tmp_path) == [theirs.name]  # its process is gone now
