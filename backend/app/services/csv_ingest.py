"""The one CSV ingestion path of AXIS: spool an upload, validate it, parse it with DuckDB, land it.

Every CSV upload (eval data, monitoring, human signals, memory, eval runner) goes through here:

1. :func:`spool_upload` streams an upload (FastAPI ``UploadFile`` or anything with ``filename``
   and ``async read(n)``) to a temp file under a size cap (:class:`PayloadTooLarge` → 413) and
   checks the name (missing → "No file provided", not ``*.csv`` case-insensitively →
   "Only CSV files are supported").
2. :func:`create_table_from_csv` (sync, runs in a worker thread, e.g. inside a
   ``store.land_dataset`` build) checks the encoding (UTF-8 with or without BOM; anything else →
   400 naming the byte offset and line), reads the header (duplicate column names → 400 naming
   them), and builds a typed DuckDB table with ``read_csv`` (RFC-4180: ``,`` delimiter, ``"``
   quote doubled as escape, multi-line quoted cells, strict mode). Ragged rows and broken quoting
   → 400 naming the line. Empty and header-only files → 400. Timezone-aware timestamps are stored
   as plain UTC ``TIMESTAMP``.
3. :func:`ingest_csv_upload` / :func:`ingest_csv_file` combine both with ``store.land_dataset``
   and an optional ``transform(cursor, staging_table, load)`` hook that reshapes the staging table
   and names the format; if anything raises, the previously stored dataset stays untouched.
4. :func:`count_csv_rows` runs the same checks without storing the rows (format detection).

This module must not import FastAPI.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import anyio
import duckdb

from app.errors import Invalid, PayloadTooLarge, Unavailable
from app.services.duckdb_store import (
    INTEGER_TYPES,
    DatasetInfo,
    DuckDBStore,
    bound_ingest_buffers,
    free_reserved_columns_sync,
    is_storage_write_failure,
    named_or_loose_zone_sql,
    quote_ident,
    quote_literal,
    utc_instant_sql,
    zone_respelled_sql,
    zoned_text_sql,
    zoned_text_utc_cases_sql,
)

logger = logging.getLogger(__name__)

SPOOL_CHUNK_BYTES = 1 << 20
_VALIDATE_CHUNK_BYTES = 4 << 20
_UTF8_BOM = b"\xef\xbb\xbf"

# RFC-4180 dialect; header forced on, no rows skipped, no padding of short rows. Lines up to
# MAX_CSV_LINE_BYTES; each parser thread reads CSV_BUFFER_BYTES at a time (DuckDB's default 32 MB
# buffer per thread was ~half of the upload's peak memory; 4 MB parses as fast, bench/README.md).
MAX_CSV_LINE_BYTES = 2 * 1024 * 1024
_HEADER_PROBE_BYTES = MAX_CSV_LINE_BYTES  # a header may be as long as any line
CSV_BUFFER_BYTES = 2 * MAX_CSV_LINE_BYTES
# pandas' default missing-value spellings (``read_csv``'s ``na_values``). A column whose other values
# are numbers (or booleans, timestamps) reads them as empty cells, as the Ref's pandas reader does;
# a text column keeps them as text. (Given to DuckDB's reader as ``nullstr`` they would cost
# 15–50 % of the parse.)
PANDAS_NA_VALUES = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>", "N/A",
    "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip
_NA_SQL = "(" + ", ".join("'" + v + "'" for v in PANDAS_NA_VALUES if v) + ")"
_CSV_DIALECT = (
    "header = true, skip = 0, delim = ',', quote = '\"', escape = '\"', "
    "strict_mode = true, null_padding = false, ignore_errors = false, "
    f"max_line_size = {MAX_CSV_LINE_BYTES}, buffer_size = {CSV_BUFFER_BYTES}"
)


class UploadLike(Protocol):
    """What :func:`spool_upload` needs from an upload (FastAPI's ``UploadFile`` fits)."""

    filename: str | None

    async def read(self, size: int = -1) -> bytes:
        """Read up to ``size`` bytes (``b""`` at the end)."""
        ...


@dataclass
class SpooledCsv:
    """An upload written to a temp file. Use as a context manager or call :meth:`remove`."""

    path: Path
    filename: str
    size_bytes: int

    def remove(self) -> None:
        """Delete the temp file (idempotent)."""
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> SpooledCsv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


@dataclass
class CsvLoadResult:
    """What :func:`create_table_from_csv` built."""

    table: str
    header: list[str]
    columns: list[dict[str, str]]
    row_count: int
    has_bom: bool
    inferred_by_sql: bool = False

    @property
    def column_names(self) -> list[str]:
        """Column names in file order."""
        return [c["name"] for c in self.columns]


@dataclass
class CsvTransform:
    """What a ``transform`` hook reports back: detected format, message and registry extras."""

    format: str | None = None
    message: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class CsvIngestResult:
    """A landed CSV: the registry entry, the raw load facts and the transform's report."""

    dataset: DatasetInfo
    load: CsvLoadResult
    transform: CsvTransform


CsvTransformFn = Callable[[duckdb.DuckDBPyConnection, str, CsvLoadResult], CsvTransform | None]


# ---------------------------------------------------------------------------------------- names
def check_csv_filename(filename: str | None) -> str:
    """Return the bare file name; missing → 'No file provided', not ``.csv`` → 'Only CSV files...'."""
    if filename is None or not filename.strip():
        raise Invalid("No file provided")
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip()
    if not name.lower().endswith(".csv"):
        raise Invalid("Only CSV files are supported")
    return name


# ---------------------------------------------------------------------------------------- spool
MULTIPART_SLACK_BYTES = 64 * 1024


def check_declared_size(content_length: str | None, *, max_bytes: int) -> None:
    """413 before reading anything when a request declares a body over the cap (+ multipart slack)."""
    if content_length is None:
        return
    try:
        declared = int(content_length)
    except ValueError:
        raise Invalid("Invalid Content-Length header") from None
    if declared > max_bytes + MULTIPART_SLACK_BYTES:
        raise upload_too_large(max_bytes)


def upload_too_large(max_bytes: int) -> PayloadTooLarge:
    """The 413 of a request body over the upload cap."""
    return PayloadTooLarge(f"Upload is larger than the upload limit of {_format_limit(max_bytes)}")


async def spool_upload(
    upload: UploadLike,
    *,
    max_bytes: int,
    spool_dir: Path,
    chunk_size: int = SPOOL_CHUNK_BYTES,
) -> SpooledCsv:
    """Stream an upload to a temp file in ``spool_dir``; over ``max_bytes`` → PayloadTooLarge (413).

    The name is checked first (400 before any byte is read). File writes run in worker threads.
    """
    filename = check_csv_filename(upload.filename)
    path = spool_dir / f"upload-{os.getpid()}-{uuid.uuid4().hex}.csv"
    size = 0
    try:
        await anyio.to_thread.run_sync(lambda: spool_dir.mkdir(parents=True, exist_ok=True))
        async with await anyio.open_file(path, "wb") as out:
            while True:
                chunk = await upload.read(chunk_size)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(
                        f"File '{filename}' is larger than the upload limit of {_format_limit(max_bytes)}"
                    )
                await out.write(chunk)
    except BaseException as exc:
        await anyio.to_thread.run_sync(_discard, path)
        if isinstance(exc, OSError):
            # Disk full, read-only or immutable data directory: the server cannot store, not a client error.
            raise Unavailable(f"Cannot store the upload: the data directory is not writable ({exc.strerror})") from None
        raise
    return SpooledCsv(path=path, filename=filename, size_bytes=size)


# ``upload-<pid>-<hex>.csv``: the pid of the server that spooled it; ``upload-<hex>.csv`` (older servers).
_SPOOL_NAME = re.compile(r"upload-(?:(\d+)-)?[0-9a-f]{32}\.csv")
# A spool file of an older server (no pid in its name) untouched this long is an orphan.
LEGACY_SPOOL_ORPHAN_SECONDS = 3600.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def sweep_orphan_spool_files(spool_dir: Path, *, now: float | None = None) -> list[str]:
    """At start: remove spool files whose server is gone (killed mid-upload); return their names.

    A server killed while an upload spools or parses never reaches its ``finally`` and leaves the
    whole upload (up to ``MAX_UPLOAD_MB``) in the spool folder. Files of another live process (a
    server sharing ``AXIS_HOME`` with another ``duckdb.path``) are kept. It runs before this process
    spools anything, so a file carrying our own pid is a killed predecessor's (pids are reused,
    e.g. by a container that restarts its server with the same pid).
    """
    removed: list[str] = []
    try:
        entries = list(spool_dir.iterdir())
    except FileNotFoundError:
        return removed
    moment = time.time() if now is None else now
    for path in entries:
        m = _SPOOL_NAME.fullmatch(path.name)
        if m is None or not path.is_file():
            continue
        if m.group(1) is not None:
            pid = int(m.group(1))
            orphan = pid == os.getpid() or not _pid_alive(pid)
        else:
            orphan = moment - path.stat().st_mtime > LEGACY_SPOOL_ORPHAN_SECONDS
        if orphan:
            _discard(path)
            if not path.exists():
                removed.append(path.name)
    return removed


def _discard(path: Path) -> None:
    """Remove a spool file if it exists (a failing removal is not worth masking the first error)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        logger.warning("Could not remove the spool file %s", path.name)


def _format_limit(max_bytes: int) -> str:
    mb = max_bytes / (1024 * 1024)
    return f"{mb:g} MB" if mb >= 1 else f"{max_bytes} bytes"


# ---------------------------------------------------------------------------------------- encoding
def validate_csv_encoding(path: Path) -> bool:
    """Check the file is non-empty UTF-8 text (BOM allowed); return True when it has a BOM.

    Raises Invalid for an empty file, NUL bytes (binary data) or bytes that are not UTF-8,
    naming the byte offset and line of the first bad byte.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    newlines = 0
    has_bom = False
    has_text = False
    with path.open("rb") as fh:
        first = True
        while True:
            chunk = fh.read(_VALIDATE_CHUNK_BYTES)
            if not chunk:
                break
            if first:
                first = False
                if chunk.startswith(_UTF8_BOM):
                    has_bom = True
                elif chunk.startswith((b"\xff\xfe", b"\xfe\xff")):
                    raise Invalid(
                        "File is not UTF-8: it starts with a UTF-16 byte-order mark. "
                        "Save it as UTF-8 (with or without BOM) and upload again."
                    )
            nul = chunk.find(b"\x00")
            if nul >= 0:
                line = newlines + chunk.count(b"\n", 0, nul) + 1
                raise Invalid(
                    f"File is not a text CSV: NUL byte at byte offset {offset + nul} (line {line}); "
                    "it looks like a binary file"
                )
            try:
                decoder.decode(chunk, False)
            except UnicodeDecodeError as exc:
                bad = exc.start
                line = newlines + chunk.count(b"\n", 0, max(bad, 0)) + 1
                byte = chunk[bad : bad + 1].hex().upper() if 0 <= bad < len(chunk) else "??"
                raise Invalid(
                    f"File is not valid UTF-8: byte 0x{byte} at byte offset {offset + bad} (line {line}) "
                    f"({exc.reason}). Save the file as UTF-8 (with or without BOM) and upload again."
                ) from None
            if not has_text and chunk.strip(b" \t\r\n" + _UTF8_BOM):
                has_text = True
            newlines += chunk.count(b"\n")
            offset += len(chunk)
    try:
        decoder.decode(b"", True)
    except UnicodeDecodeError:
        raise Invalid(
            f"File is not valid UTF-8: truncated multi-byte character at the end of the file "
            f"(byte offset {offset}, line {newlines + 1})"
        ) from None
    if not has_text:
        raise Invalid("Empty CSV file")
    return has_bom


# ---------------------------------------------------------------------------------------- header
def read_csv_header(path: Path) -> list[str]:
    """Parse the header record (RFC-4180); duplicate (case-insensitive) or missing names → Invalid.

    Blank names become ``column<N>`` (1-based position), as pandas exports with an index produce.
    """
    with path.open("rb") as fh:
        probe = fh.read(_HEADER_PROBE_BYTES)
    text = probe.decode("utf-8-sig", errors="ignore")
    reader = csv.reader(io.StringIO(text, newline=""), strict=False)
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        header = []
    if not header or all(not h.strip() for h in header):
        if text.strip():
            raise Invalid("The first line of the CSV file is empty: the header row must be on line 1")
        raise Invalid("CSV file has no header row")
    names: list[str] = []
    seen: dict[str, int] = {}
    for pos, raw in enumerate(header, start=1):
        name = raw.strip() or f"column{pos}"
        key = name.lower()
        if key in seen:
            first = seen[key]
            raise Invalid(
                f"Duplicate column name '{name}' in the header (columns {first} and {pos}); column names must be unique"
            )
        seen[key] = pos
        names.append(name)
    return names


# ---------------------------------------------------------------------------------------- parse
_LINE_RE = re.compile(r"CSV Error on Line:\s*(\d+)")
_ORIGINAL_RE = re.compile(r"Original Line: ?(.*?)\n", re.S)
_COLUMNS_RE = re.compile(r"Expected Number of Columns:\s*(\d+)\s*Found:\s*(\d+)")


def _csv_error_message(exc: duckdb.Error) -> str:
    """Turn DuckDB's long CSV error into one line naming the line and the problem."""
    text = str(exc)
    line_m = _LINE_RE.search(text)
    where = f" on line {line_m.group(1)}" if line_m else ""
    cols_m = _COLUMNS_RE.search(text)
    orig_m = _ORIGINAL_RE.search(text)
    if cols_m:
        expected, found = int(cols_m.group(1)), int(cols_m.group(2))
        if found > expected:  # DuckDB stops counting at the first extra field
            fields = _field_count(orig_m.group(1)) if orig_m else None
            problem = f"expected {expected} columns, found " + (str(fields) if fields else f"more than {expected}")
        else:
            problem = f"expected {expected} columns, found {found}"
    elif "Maximum line size" in text or "does not support a full read" in text:
        # (DuckDB's parallel reader gives up with the second message on a line over 2 x its buffer)
        problem = f"a line is longer than the parser allows ({MAX_CSV_LINE_BYTES // (1024 * 1024)} MB)"
    elif "unterminated quote" in text:
        # DuckDB also says this when a quoted value outgrows its read buffer (a line of more than
        # 2 x max_line_size), so both causes are named.
        problem = (
            "a quoted value is never closed, or a line is longer than the parser allows "
            f"({MAX_CSV_LINE_BYTES // (1024 * 1024)} MB)"
        )
    elif "quote" in text.lower() and "escape" in text.lower():
        problem = "invalid quoting (quotes inside a quoted value must be doubled)"
    else:
        problem = text.split("\n", 1)[0].replace("Invalid Input Error: ", "")[:300]
    snippet = ""
    if orig_m:
        original = orig_m.group(1).strip()
        snippet = f" (line starts: {original[:80]!r})" if original else " (the line holds only spaces)"
    return f"CSV parsing error{where}: {problem}{snippet}"


def _line_ending_note(path: Path) -> str:
    """For a parse error: a note when the file ends lines in more than one way (the reader's usual cause).

    DuckDB's reader expects one kind of line ending per file (pandas reads a mix) and then reports a
    quoting or line-length problem. A CRLF inside a quoted cell of an LF file counts too, so this is
    only said once the parse has failed.
    """
    crlf = lf = cr = 0
    tail = b""
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 22):
            block = tail + chunk
            # a CR ending the block may be the first half of a CRLF split across two reads
            whole, tail = (block[:-1], b"\r") if block.endswith(b"\r") else (block, b"")
            pairs = whole.count(b"\r\n")
            crlf += pairs
            lf += whole.count(b"\n") - pairs
            cr += whole.count(b"\r") - pairs
    cr += tail == b"\r"
    kinds = [name for name, n in (("CRLF", crlf), ("LF", lf), ("CR", cr)) if n]
    if len(kinds) < 2:
        return ""
    return f"; the file ends its lines in more than one way ({', '.join(kinds)}): save it with one kind of line ending"


def _field_count(line: str) -> int | None:
    """Fields of one CSV line (our dialect), or None when it is not one complete record."""
    try:
        records = list(csv.reader([line], strict=True))
    except csv.Error:
        return None
    return len(records[0]) if len(records) == 1 else None


def _read_csv_sql(columns: dict[str, str] | None, names: list[str]) -> str:
    """``read_csv(?)`` with our dialect: explicit VARCHAR columns, or sniffed types with our names."""
    if columns is not None:
        struct = ", ".join(f"{quote_literal(n)}: {quote_literal(t)}" for n, t in columns.items())
        return f"read_csv(?, {_CSV_DIALECT}, auto_detect = false, columns = {{{struct}}})"
    name_list = ", ".join(quote_literal(n) for n in names)
    return f"read_csv(?, {_CSV_DIALECT}, names = [{name_list}])"


@contextmanager
def _encoding_check_alongside(cur: duckdb.DuckDBPyConnection, path: Path) -> Iterator[Future[bool]]:
    """Run :func:`validate_csv_encoding` on a second thread while the block parses with ``cur``.

    The check is a Python pass over every byte (~0.2 s per 170 MB); DuckDB parses at the same time
    (one thread while ingesting, see ``DuckDBStore.ingest_pool``). A failed check interrupts the
    cursor's running statement, and whatever the block raises, a failed check is the error
    reported (it names the byte offset and line). Yields the check's future (True: the file has a
    BOM); the block must not wait for it (a failed check finishes only when the block has ended).
    """

    stop = threading.Event()

    def _check() -> bool:
        try:
            return validate_csv_encoding(path)
        except Invalid:
            # Stop the parse of a file that is not UTF-8 text. Repeat until the block ends: an
            # interrupt that lands while DuckDB still sniffs the file (at bind time) is not kept.
            while not stop.wait(0.02):
                cur.interrupt()
            raise

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="axis-csv-encoding") as pool:
        future = pool.submit(_check)
        try:
            yield future
        except BaseException:
            stop.set()
            problem = future.exception()
            if problem is not None:
                raise problem from None
            raise
        finally:
            stop.set()
        future.result()


def _raise_if_failed(check: Future[bool]) -> None:
    """Raise the encoding check's error now if it has already failed."""
    problem = check.exception() if check.done() else None
    if problem is not None:
        raise problem


def _is_tz_timestamp(type_name: str) -> bool:
    t = type_name.upper()
    return t.startswith("TIMESTAMP WITH TIME ZONE") or t == "TIMESTAMPTZ"


def _not_integer_literal(column: str) -> str:
    """SQL: the text ``column`` is not an integer literal (optional sign, digits, surrounding blanks)."""
    return f"NOT regexp_full_match({column}, '\\s*[+-]?[0-9]+\\s*')"


INFER_SAMPLE_ROWS = 10_000
FIRST_SAMPLE_ROWS = 256  # the first, cheap sample (a text column fails every candidate there)

# Above this many (column, predicate) counts one aggregate per count makes DuckDB's planner
# quadratic (1,000 columns: 7 s to plan); the counts are then taken over the unpivoted values.
WIDE_COUNTS = 64


def _count_per_column(
    cur: duckdb.DuckDBPyConnection, source: str, params: list[Any], checks: Sequence[tuple[str, str]]
) -> list[int]:
    """For each (text column, predicate) the number of its values matching the predicate.

    A predicate is SQL with ``{v}`` for the value and must be false for NULL. Few checks: one
    ``count(*) FILTER`` per check. Many (a wide file): the checked columns are unpivoted into
    (name, value) rows and each distinct predicate is counted per name — a plan whose size does
    not grow with the column count. Both stream ``source`` once.
    """
    if not checks:
        return []
    if len(checks) <= WIDE_COUNTS:
        aggs = ", ".join(f"count(*) FILTER (WHERE {pred.format(v=quote_ident(col))})" for col, pred in checks)
        return [int(x) for x in cur.execute(f"SELECT {aggs} FROM {source}", params).fetchone() or ()]
    preds = list(dict.fromkeys(pred for _, pred in checks))
    cols = ", ".join(quote_ident(c) for c in dict.fromkeys(col for col, _ in checks))
    aggs = ", ".join(f"count(*) FILTER (WHERE {pred.format(v='_axis_v')})" for pred in preds)
    rows = cur.execute(
        f"SELECT _axis_n, {aggs} FROM (UNPIVOT (SELECT {cols} FROM {source}) ON COLUMNS(*) "
        "INTO NAME _axis_n VALUE _axis_v) GROUP BY _axis_n",
        params,
    ).fetchall()
    counts = {(str(r[0]), pred): int(r[1 + j]) for r in rows for j, pred in enumerate(preds)}
    return [counts.get((col, pred), 0) for col, pred in checks]


_PRESENT = f"{{v}} IS NOT NULL AND {{v}} NOT IN {_NA_SQL}"  # a value, not a pandas missing spelling
# DuckDB reads yes/no, t/f and y/n as BOOLEAN; like pandas only true/false (any case) are booleans.
_NOT_BOOLEAN_LITERAL = "{v} IS NOT NULL AND lower(trim({v})) NOT IN ('true', 'false')"
# An integer literal beyond 2^53 that a DOUBLE column would round (an id of 20 digits, say).
_INEXACT_DOUBLE = (
    "length(trim({v})) > 15 AND "
    + _not_integer_literal("{v}").removeprefix("NOT ")
    + " AND coalesce(abs(TRY_CAST(trim({v}) AS HUGEINT)) > 9007199254740992, true)"
)
_NOT_INTEGER = "{v} IS NOT NULL AND " + _not_integer_literal("{v}")
_DATE_WITH_TIME = "TRY_CAST({v} AS TIMESTAMP) IS DISTINCT FROM CAST(TRY_CAST({v} AS DATE) AS TIMESTAMP)"


def _over_value(sql: Callable[[str], str]) -> str:
    """A check predicate (a format string over ``{v}``) from an SQL builder: its regexes' own braces doubled."""
    return sql("\0").replace("{", "{{").replace("}", "}}").replace("\0", "{v}")


_WITH_UTC_OFFSET = _over_value(zoned_text_sql)
# The sniffer also reads day-first or month-first dates (which one depends on the other rows) and
# ``inf`` as a date: only ISO-8601 text (YYYY-MM-DD first) keeps a sniffed date or timestamp type; other
# text keeps its own form, as pandas does.
_INFINITY_SPELLINGS = "('inf', '-inf', '+inf', 'infinity', '-infinity', '+infinity')"
_NOT_ISO_START = "NOT regexp_matches(trim({v}), '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}')"
_NOT_ISO_DATE = f"{{v}} IS NOT NULL AND ({_NOT_ISO_START} OR lower(trim({{v}})) IN {_INFINITY_SPELLINGS})"
_NOT_ISO_TIMESTAMP = f"{{v}} IS NOT NULL AND {_NOT_ISO_START}"
# A zone *name* (UTC, PST, Europe/Berlin) in a sniffed TIMESTAMPTZ column: DuckDB's reader carries it
# over to the next rows without one; the typing path reads each row alone. A zone spelled the way the
# cast rejects (``… 10:00:00 +02:00``, ``…z``): the reader makes it NULL without an error; the typing
# path respells it (:func:`zone_respelled_sql`).
_NOT_INSTANT = f"TRY_CAST({_over_value(zone_respelled_sql)} AS TIMESTAMPTZ) IS NULL"
# An impossible one (month 13, 30 February, hour 25) the reader makes NULL without an error too: the plain
# TIMESTAMP cast (which reads and drops an offset) refuses it, and quickly (the TIMESTAMPTZ cast takes
# ~0.4 ms to refuse ``… 10:00:00 +02:00``).
_ZONE_NAME_OR_NOT_ISO = (
    f"{{v}} IS NOT NULL AND ({_NOT_ISO_START} OR {_over_value(named_or_loose_zone_sql)} "
    "OR TRY_CAST({v} AS TIMESTAMP) IS NULL)"
)


def _text_instant_utc_sql(col: str) -> str:
    """Text timestamps as naive UTC: zoned ones (:func:`zoned_text_sql`) through TIMESTAMPTZ, others as they are."""
    instant = f"timezone('UTC', CAST({col} AS TIMESTAMPTZ))"
    return (
        f"(CASE {zoned_text_utc_cases_sql(col, strict=True)}ELSE coalesce(TRY_CAST({col} AS TIMESTAMP), {instant}) END)"
    )


def _check_sniffed_types_lossless(
    cur: duckdb.DuckDBPyConnection, file_param: str, header: list[str], types: dict[str, str]
) -> None:
    """Raise when a sniffed column's type silently changed a value.

    DuckDB's CSV reader casts text the lenient way: '2.5' into a sniffed BIGINT column becomes 3,
    '2026-01-09 10:30' into a DATE column loses its time, '…T12:00:00+02:00' into a TIMESTAMP
    column loses its offset (12:00 instead of 10:00 UTC), 'yes' becomes true, a 20-digit id in
    a DOUBLE column is rounded, '01/02/2024' becomes a date whose day and month depend on the other
    rows, and a zone name carries over to the next rows. One streaming pass over the file as text
    checks those columns (integer literals only; ISO dates without a time of day; ISO timestamps
    without an offset; no zone names; true/false only); DOUBLE columns are checked for exactness
    on the first INFER_SAMPLE_ROWS rows.
    """
    checks = []
    for name, typ in types.items():
        if typ in INTEGER_TYPES:
            checks.append((name, _NOT_INTEGER))
        elif typ == "DATE":
            checks += [(name, _DATE_WITH_TIME), (name, _NOT_ISO_DATE)]
        elif typ.startswith("TIMESTAMP") and not _is_tz_timestamp(typ):
            checks += [(name, _WITH_UTC_OFFSET), (name, _NOT_ISO_TIMESTAMP)]
        elif _is_tz_timestamp(typ):
            checks.append((name, _ZONE_NAME_OR_NOT_ISO))
        elif typ == "BOOLEAN":
            checks.append((name, _NOT_BOOLEAN_LITERAL))
    sample_checks = [(name, _INEXACT_DOUBLE) for name, typ in types.items() if typ == "DOUBLE"]
    text = _read_csv_sql(dict.fromkeys(header, "VARCHAR"), header)
    # Long integer ids sniffed as DOUBLE show in the first rows; a full pass over every float
    # column would cost a second read of most files.
    sample = f"(SELECT * FROM {text} LIMIT {INFER_SAMPLE_ROWS})"
    if any(_count_per_column(cur, sample, [file_param], sample_checks)) or any(
        _count_per_column(cur, text, [file_param], checks)
    ):
        raise duckdb.ConversionException("a sniffed column's type would change a value")


_INFER_CANDIDATES = ("BIGINT", "HUGEINT", "DOUBLE", "BOOLEAN", "TIMESTAMPTZ")


def _misfit(typ: str) -> str:
    """Predicate: a non-NULL text value ``{v}`` that is not a ``typ`` value (kept exactly)."""
    bad = f"TRY_CAST({{v}} AS {typ}) IS NULL"
    if typ in ("BIGINT", "HUGEINT"):  # DuckDB casts '0.3' to 0 and '2.5' to 3: integers must be integer literals
        bad = f"({bad} OR {_not_integer_literal('{v}')})"
    elif typ == "DOUBLE":  # DuckDB also reads '1_000' as 1000; pandas keeps it as text
        bad = f"({bad} OR contains({{v}}, '_') OR ({_INEXACT_DOUBLE}))"
    elif typ == "BOOLEAN":
        bad = f"({bad} OR lower(trim({{v}})) NOT IN ('true', 'false'))"
    elif typ == "TIMESTAMPTZ":  # DuckDB's cast also reads '1/2/24' (as the year 1): ISO-8601 only
        bad = f"({_NOT_INSTANT} OR {_NOT_ISO_START})"
    return f"{_PRESENT} AND {bad}"


def _infer_types_sql(
    cur: duckdb.DuckDBPyConnection, source: str, params: list[Any], names: list[str]
) -> list[tuple[str, str]]:
    """Pick the first of BIGINT/HUGEINT/DOUBLE/BOOLEAN/TIMESTAMPTZ every non-NULL value fits, else VARCHAR.

    ``source`` is a relation of text columns (the file read as VARCHAR). A candidate that fails on
    the first INFER_SAMPLE_ROWS rows fails on the whole file, so the full pass only checks the
    candidates that survive the sample (a text column's TIMESTAMPTZ check alone costs ~0.3 s
    per million values). Both passes stream the file; nothing is materialised.
    """
    alive = {n: list(_INFER_CANDIDATES) for n in names}
    for rows in (FIRST_SAMPLE_ROWS, INFER_SAMPLE_ROWS):  # text columns fail in the first rows already
        sampled = [(n, t) for n in names for t in alive[n]]
        if not sampled:
            break
        bad = _count_per_column(
            cur, f"(SELECT * FROM {source} LIMIT {rows})", params, [(n, _misfit(t)) for n, t in sampled]
        )
        failed = {check for check, n_bad in zip(sampled, bad, strict=True) if n_bad}
        alive = {n: [t for t in alive[n] if (n, t) not in failed] for n in names}
    typed = [n for n in names if alive[n]]  # the others are text whatever the rest holds
    checks = [(n, t) for n in typed for t in alive[n]]
    full = _count_per_column(cur, source, params, [(n, _PRESENT) for n in typed] + [(n, _misfit(t)) for n, t in checks])
    non_null = dict(zip(typed, full[: len(typed)], strict=True))
    fits = {check for check, bad in zip(checks, full[len(typed) :], strict=True) if bad == 0}
    return [
        (n, next((t for t in alive[n] if (n, t) in fits), "VARCHAR") if non_null.get(n) else "VARCHAR") for n in names
    ]


def _typed_select(cols: Sequence[tuple[str, str]]) -> str:
    """SELECT list converting text columns to their inferred types (zoned timestamps to naive UTC)."""

    def typed(col: str, typ: str) -> str:
        value = _text_instant_utc_sql(col) if typ == "TIMESTAMPTZ" else f"CAST({col} AS {typ})"
        return value if typ == "VARCHAR" else f"CASE WHEN {col} IN {_NA_SQL} THEN NULL ELSE {value} END"

    return ", ".join(f"{typed(quote_ident(n), t)} AS {quote_ident(n)}" for n, t in cols)


def _retype_sniffed_sync(cur: duckdb.DuckDBPyConnection, table: str, types: dict[str, str]) -> bool:
    """Rebuild a sniffed table when a column needs another type; True when a text column was re-typed.

    * Zoned timestamps (TIMESTAMPTZ) become naive UTC TIMESTAMPs. In a rebuild, not by ``ALTER …
      TYPE … USING``: DuckDB cannot replay such an ALTER from its log after a kill (the store
      would not open again).
    * Sniffed VARCHAR columns whose values all fit a type get it, as the text path would type them:
      DuckDB's sniffer reads a sample, so a column that is blank there (30,000 empty cells, then
      numbers) or starts with ``inf`` or ``+0.5`` is text, while the same values in another order
      are numbers (pandas reads numbers either way). A real text column fails every candidate in
      its first rows, so only columns blank or number-like there are scanned in full.

    One CREATE, only when some column changes.
    """
    text_cols = [n for n, t in types.items() if t == "VARCHAR"]
    inferred = dict(_infer_types_sql(cur, quote_ident(table), [], text_cols)) if text_cols else {}
    retyped = {n: t for n, t in inferred.items() if t != "VARCHAR"}
    zoned = [n for n, t in types.items() if _is_tz_timestamp(t)]
    if not retyped and not zoned:
        return False
    select = ", ".join(
        _typed_select([(n, retyped[n])])
        if n in retyped
        else (f"{utc_instant_sql(quote_ident(n))} AS {quote_ident(n)}" if n in zoned else quote_ident(n))
        for n in types
    )
    tmp = quote_ident(f"{table}__typed")
    cur.execute(f"CREATE OR REPLACE TABLE {tmp} AS SELECT {select} FROM {quote_ident(table)}")
    cur.execute(f"DROP TABLE {quote_ident(table)}")
    cur.execute(f"ALTER TABLE {tmp} RENAME TO {quote_ident(table)}")
    return bool(retyped)


def create_table_from_csv(
    cur: duckdb.DuckDBPyConnection,
    path: Path,
    table: str,
    *,
    allow_empty: bool = False,
) -> CsvLoadResult:
    """Validate a CSV file and build ``table`` from it with DuckDB ``read_csv`` (sync; worker thread).

    Types are sniffed by DuckDB; when a later row contradicts the sniffed types (or would be
    changed by them, see :func:`_check_sniffed_types_lossless`) the file is re-read as text and
    each column gets the narrowest type every value fits. Errors → Invalid naming the line or
    column. ``allow_empty`` accepts a header-only file (0 rows). The encoding check runs alongside
    the parse (:func:`_encoding_check_alongside`).
    """
    tz_row = cur.execute("SELECT current_setting('TimeZone')").fetchone()
    previous_tz = str(tz_row[0]) if tz_row else "UTC"
    # Offset-less text timestamps are UTC whatever the session zone: DuckDB reads them into a
    # sniffed TIMESTAMPTZ column (and the inference casts them) in the session's zone.
    cur.execute("SET TimeZone = 'UTC'")
    try:
        with _encoding_check_alongside(cur, path) as encoding:
            load = _build_table_from_csv(cur, path, table, allow_empty=allow_empty, encoding=encoding)
        # Only once the block has ended: a failed check keeps interrupting the cursor until then,
        # so waiting for it inside the block would wait forever when the parse finished first.
        load.has_bom = encoding.result()
    except BaseException:
        try:  # the parse may have finished before the encoding check failed
            cur.execute(f"DROP TABLE IF EXISTS {quote_ident(table)}")
        except duckdb.Error:
            logger.debug("could not drop %s after a failed CSV load", table)
        raise
    finally:
        cur.execute(f"SET TimeZone = {quote_literal(previous_tz)}")
    return load


def _build_table_from_csv(
    cur: duckdb.DuckDBPyConnection, path: Path, table: str, *, allow_empty: bool, encoding: Future[bool]
) -> CsvLoadResult:
    header = read_csv_header(path)
    _raise_if_failed(encoding)  # a binary file usually fails the check within its first chunk
    qtable = quote_ident(table)
    file_param = str(path)
    bound_ingest_buffers(cur)
    cur.execute(f"DROP TABLE IF EXISTS {qtable}")
    inferred = False
    try:
        source = _read_csv_sql(None, header)
        cur.execute(f"CREATE TABLE {qtable} AS SELECT * FROM {source}", [file_param])
        cols = [(c["name"], c["type"]) for c in DuckDBStore.describe_sync(cur, table)]
        if [c[0] for c in cols] != header:
            raise duckdb.InvalidInputException("sniffed columns differ from the header")
        _check_sniffed_types_lossless(cur, file_param, header, dict(cols))
        inferred = _retype_sniffed_sync(cur, table, dict(cols))
    except duckdb.Error as typed_exc:
        if isinstance(typed_exc, duckdb.InterruptException) or is_storage_write_failure(typed_exc):
            raise  # the encoding check stopped the parse, or the store cannot write: not a type problem
        logger.debug("Typed CSV read failed (%s); re-reading as text", str(typed_exc).split("\n", 1)[0])
        cur.execute(f"DROP TABLE IF EXISTS {qtable}")
        text_source = _read_csv_sql(dict.fromkeys(header, "VARCHAR"), header)
        try:
            cols = _infer_types_sql(cur, text_source, [file_param], header)
        except duckdb.InterruptException:
            raise
        except duckdb.Error as exc:  # reads only: the file's own problem
            raise Invalid(_csv_error_message(exc) + _line_ending_note(path)) from None
        select = _typed_select(cols)
        try:
            # The inference may have read only the first rows (every column text there): a later
            # row can still be the file's problem (a ragged row), else the error is the store's.
            cur.execute(f"CREATE TABLE {qtable} AS SELECT {select} FROM {text_source}", [file_param])
        except duckdb.Error as exc:
            if isinstance(exc, duckdb.InterruptException) or is_storage_write_failure(exc):
                raise
            raise Invalid(_csv_error_message(exc) + _line_ending_note(path)) from None
        inferred = True
    free_reserved_columns_sync(cur, table)
    count_row = cur.execute(f"SELECT count(*) FROM {qtable}").fetchone()
    row_count = int(count_row[0]) if count_row else 0
    if row_count == 0 and not allow_empty:
        cur.execute(f"DROP TABLE IF EXISTS {qtable}")
        raise Invalid("CSV file has a header row but no data rows")
    columns = DuckDBStore.describe_sync(cur, table)
    return CsvLoadResult(
        table=table, header=header, columns=columns, row_count=row_count, has_bom=False, inferred_by_sql=inferred
    )


def count_csv_rows(cur: duckdb.DuckDBPyConnection, path: Path) -> tuple[list[str], int]:
    """Header and data-row count of a CSV file, checked like :func:`create_table_from_csv` but not stored.

    The same encoding, header and dialect checks (errors → Invalid naming the line or column); the
    rows are only counted, so a large file costs no memory for its data.
    """
    with _encoding_check_alongside(cur, path):
        header = read_csv_header(path)
        source = _read_csv_sql(dict.fromkeys(header, "VARCHAR"), header)
        try:
            row = cur.execute(f"SELECT count(*) FROM {source}", [str(path)]).fetchone()
        except duckdb.Error as exc:
            raise Invalid(_csv_error_message(exc) + _line_ending_note(path)) from None
    return header, int(row[0]) if row else 0


def first_non_numeric_value(cur: duckdb.DuckDBPyConnection, table: str, column: str) -> tuple[int, str] | None:
    """First (1-based data row, value) of ``column`` that is not a number, or None.

    Not a number: does not cast to DOUBLE, or has an underscore (DuckDB reads ``2_5`` as 25, pandas
    and the CSV sniffer as text). Row numbers follow insertion order (``rowid``), i.e. the order of
    the file's data rows.
    """
    q = quote_ident(column)
    row = cur.execute(
        f"SELECT rowid, CAST({q} AS VARCHAR) FROM {quote_ident(table)} WHERE {q} IS NOT NULL "
        f"AND (TRY_CAST({q} AS DOUBLE) IS NULL OR contains(CAST({q} AS VARCHAR), '_')) ORDER BY rowid LIMIT 1"
    ).fetchone()
    if row is None:
        return None
    return int(row[0]) + 1, str(row[1])


# ---------------------------------------------------------------------------------------- landing
async def ingest_csv_file(
    store: DuckDBStore,
    path: Path,
    *,
    kind: str,
    source: str,
    transform: CsvTransformFn | None = None,
    dataset_id: str | None = None,
    table_name: str | None = None,
    extra: dict[str, Any] | None = None,
    allow_empty: bool = False,
) -> CsvIngestResult:
    """Parse a CSV file on disk into a new stored dataset (staging + atomic swap).

    ``transform(cursor, staging_table, load)`` may reshape the staging table in place and return
    a :class:`CsvTransform` (format, message, extras). Any error leaves the store unchanged.
    """
    holder: dict[str, Any] = {}

    def _build(cur: duckdb.DuckDBPyConnection, staging: str) -> None:
        with store.ingest_pool(cur):
            load = create_table_from_csv(cur, path, staging, allow_empty=allow_empty)
        report = transform(cur, staging, load) if transform is not None else None
        holder["load"] = load
        holder["transform"] = report or CsvTransform()

    def _after_swap(cur: duckdb.DuckDBPyConnection, info: DatasetInfo) -> None:
        report: CsvTransform = holder["transform"]
        if report.format is None and not report.extra:
            return
        info.format = report.format or info.format
        info.extra = {**info.extra, **report.extra}
        DuckDBStore.set_dataset_format_sync(cur, info)

    info = await store.land_dataset(
        kind=kind,
        source=source,
        build=_build,
        dataset_id=dataset_id,
        table_name=table_name,
        extra=extra,
        after_swap=_after_swap,
    )
    return CsvIngestResult(dataset=info, load=holder["load"], transform=holder["transform"])


async def ingest_csv_upload(
    store: DuckDBStore,
    upload: UploadLike,
    *,
    kind: str,
    max_bytes: int,
    spool_dir: Path,
    transform: CsvTransformFn | None = None,
    dataset_id: str | None = None,
    table_name: str | None = None,
    extra: dict[str, Any] | None = None,
    allow_empty: bool = False,
) -> CsvIngestResult:
    """Spool an upload (size cap, name check), parse and land it with source ``upload:<file>``."""
    spooled = await spool_upload(upload, max_bytes=max_bytes, spool_dir=spool_dir)
    try:
        return await ingest_csv_file(
            store,
            spooled.path,
            kind=kind,
            source=f"upload:{spooled.filename}",
            transform=transform,
            dataset_id=dataset_id,
            table_name=table_name,
            extra=extra,
            allow_empty=allow_empty,
        )
    finally:
        await anyio.to_thread.run_sync(spooled.remove)
