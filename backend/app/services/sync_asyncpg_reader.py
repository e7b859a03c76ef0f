"""Fallback sync reader: a chunked asyncpg cursor appending bounded Arrow batches.

It lands what the postgres extension lands (one set of type rules, decision 3). Each result column
is described from the PostgreSQL catalog (domains resolved to their base type, numeric precision and
scale from a rolled-back temporary view, since asyncpg does not expose a result's typmods), travels
the wire in a form asyncpg decodes without building Python objects where it can (epoch ticks for
timestamps and dates, PostgreSQL's own text for numeric and uuid), and becomes its DuckDB type in SQL
while each bounded Arrow batch is appended.
"""

from __future__ import annotations

import logging
import operator
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
import duckdb

from app.config.db_configs import ConnectionParams
from app.errors import Invalid
from app.services.connection_store import connect_source
from app.services.duckdb_store import DuckDBStore, bound_ingest_buffers, quote_ident
from app.services.sync_queries import limit_query
from app.services.sync_targets import STAGING_SUFFIX, LoadResult, SyncTarget, column_renames, trim_staging_to_cap

if TYPE_CHECKING:
    import pyarrow as pa

logger = logging.getLogger(__name__)

DECIMAL_MAX_WIDTH = 38  # widest DuckDB DECIMAL; wider (or unconstrained) numeric lands as DOUBLE

# PostgreSQL timestamps travel as microseconds since 2000-01-01, dates as days since then;
# ±infinity are the extreme int64 / int32 values.
_PG_TICKS_TO_TIMESTAMP = (
    "CASE {0} WHEN 9223372036854775807 THEN TIMESTAMP 'infinity' "
    "WHEN -9223372036854775808 THEN TIMESTAMP '-infinity' ELSE make_timestamp({0} + 946684800000000) END"
)
_PG_TICKS_TO_TIMESTAMPTZ = (
    "CASE {0} WHEN 9223372036854775807 THEN TIMESTAMPTZ 'infinity' "
    "WHEN -9223372036854775808 THEN TIMESTAMPTZ '-infinity' ELSE make_timestamptz({0} + 946684800000000) END"
)
_PG_DAYS_TO_DATE = (
    "CASE {0} WHEN 2147483647 THEN DATE 'infinity' WHEN -2147483648 THEN DATE '-infinity' "
    "ELSE CAST(DATE '2000-01-01' + {0} AS DATE) END"
)


@dataclass(frozen=True)
class _WireKind:
    """How one PostgreSQL base type travels on the asyncpg path and what DuckDB type it lands as."""

    duck: str  # the DuckDB type the postgres extension reports for it
    arrow: str  # Arrow type of the wire values (a key of ``_wire_arrow_type``)
    text: bool = False  # PostgreSQL sends ``::text`` and DuckDB casts it to ``duck``
    convert: str = "{0}"  # DuckDB expression over one wire value ({0}) when it is not a cast
    element_convert: str = ""  # the same inside a list (default: ``convert``)
    in_lists: bool = True  # 1-D arrays land as ``duck[]`` (else as PostgreSQL's array text)
    codec: str = ""  # asyncpg "tuple" codec to install for the type ("ticks" or "interval")


_VARCHAR_WIRE = _WireKind("VARCHAR", "string")
_WIRE_KINDS: dict[str, _WireKind] = {
    "bool": _WireKind("BOOLEAN", "bool"),
    "int2": _WireKind("SMALLINT", "int16"),
    "int4": _WireKind("INTEGER", "int32"),
    "int8": _WireKind("BIGINT", "int64"),
    "float4": _WireKind("FLOAT", "float32"),
    "float8": _WireKind("DOUBLE", "float64"),
    "text": _VARCHAR_WIRE,
    "varchar": _VARCHAR_WIRE,
    "json": _VARCHAR_WIRE,
    "jsonb": _VARCHAR_WIRE,
    "name": _WireKind("VARCHAR", "string", in_lists=False),
    "bpchar": _WireKind("VARCHAR", "string", text=True),  # ::text drops the padding, as the extension does
    "uuid": _WireKind("UUID", "string", text=True),
    "timetz": _WireKind("TIME WITH TIME ZONE", "string", text=True),
    "bytea": _WireKind("BLOB", "binary", in_lists=False),
    "interval": _WireKind("INTERVAL", "interval", codec="interval"),
    "time": _WireKind("TIME", "time_us", codec="ticks"),
    "date": _WireKind("DATE", "int32", convert=_PG_DAYS_TO_DATE, codec="ticks"),
    "timestamp": _WireKind("TIMESTAMP", "int64", convert=_PG_TICKS_TO_TIMESTAMP, codec="ticks"),
    # a scalar timestamptz lands as a plain UTC TIMESTAMP (as the extension path's projection does),
    # a timestamptz[] as TIMESTAMP WITH TIME ZONE[]
    "timestamptz": _WireKind(
        "TIMESTAMP WITH TIME ZONE",
        "int64",
        convert=_PG_TICKS_TO_TIMESTAMP,
        element_convert=_PG_TICKS_TO_TIMESTAMPTZ,
        codec="ticks",
    ),
}


def numeric_duck_type(typmod: int) -> str:
    """The DuckDB type the extension gives ``numeric`` with this typmod: DECIMAL(p,s) or DOUBLE."""
    if typmod < 4:  # -1: unconstrained
        return "DOUBLE"
    precision = ((typmod - 4) >> 16) & 0xFFFF
    scale = (typmod - 4) & 0x7FF
    if scale & 0x400:  # PostgreSQL 15 allows a negative scale (11-bit two's complement)
        scale -= 0x800
    if not 1 <= precision <= DECIMAL_MAX_WIDTH or not 0 <= scale <= precision:
        return "DOUBLE"
    return f"DECIMAL({precision},{scale})"


def _wire_kind(type_name: str, typmod: int) -> _WireKind | None:
    if type_name == "numeric":
        return _WireKind(numeric_duck_type(typmod), "string", text=True)
    return _WIRE_KINDS.get(type_name)


def _text_cast(kind: _WireKind, suffix: str) -> str:
    """DuckDB cast of PostgreSQL's text to ``kind.duck`` (+ ``[]``). NaN fits no DECIMAL: it lands as
    NULL (TRY_CAST) rather than the extension's 0; a DOUBLE keeps NaN and ±Infinity."""
    cast = "TRY_CAST" if kind.duck.startswith("DECIMAL") else "CAST"
    return f"{cast}({{0}} AS {kind.duck}{suffix})"


@dataclass(frozen=True)
class PgResultType:
    """One result column as the PostgreSQL catalog describes it (domains resolved)."""

    base: str  # pg_catalog base type name ('' for anything else: enums, composites, ranges, ...)
    typmod: int
    element: str = ""  # element type name of a 1-D pg_catalog array (``base`` is then '')


@dataclass(frozen=True)
class AsyncpgColumn:
    """How one result column is read: PostgreSQL select expression, Arrow wire type, DuckDB expression."""

    source_type: str  # the DuckDB type the extension reports (``LoadResult.source_types``, watermarks)
    wire_sql: str  # PostgreSQL select-list expression ({0} = the column)
    arrow: str  # Arrow wire type key
    is_list: bool
    load_sql: str  # DuckDB expression over the Arrow column ({0}) that gives the stored value
    codec: str  # asyncpg codec the column needs ("", "ticks" or "interval")


def asyncpg_column(result: PgResultType) -> AsyncpgColumn:
    """The read plan of one column: the extension's DuckDB type; PostgreSQL text for anything else."""
    if result.element:
        kind = _wire_kind(result.element, result.typmod)
        if kind is not None and kind.in_lists:
            if kind.text:
                return AsyncpgColumn(f"{kind.duck}[]", "{0}::text[]", kind.arrow, True, _text_cast(kind, "[]"), "")
            element = kind.element_convert or kind.convert
            load = "{0}" if element == "{0}" else f"list_transform({{0}}, lambda _e: {element.format('_e')})"
            return AsyncpgColumn(f"{kind.duck}[]", "{0}", kind.arrow, True, load, kind.codec)
    elif result.base:
        kind = _wire_kind(result.base, result.typmod)
        if kind is not None:
            if kind.text:
                return AsyncpgColumn(kind.duck, "{0}::text", kind.arrow, False, _text_cast(kind, ""), "")
            return AsyncpgColumn(kind.duck, "{0}", kind.arrow, False, kind.convert, kind.codec)
    return AsyncpgColumn("VARCHAR", "{0}::text", "string", False, "{0}", "")


_TYPE_CATALOG_SQL = """
SELECT t.oid, n.nspname::text, t.typname::text, t.typtype::text, t.typcategory::text, t.typelem, t.typbasetype,
       t.typtypmod
FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
WHERE t.oid = ANY($1::oid[])
"""


async def describe_result_types(conn: Any, columns: list[tuple[int, int]]) -> list[PgResultType]:
    """Resolve (type oid, typmod) pairs through ``pg_type``: domains to their base, arrays to their element."""
    types: dict[int, Any] = {}
    pending = {oid for oid, _ in columns}
    while pending:
        rows = await conn.fetch(_TYPE_CATALOG_SQL, sorted(pending))
        types.update({int(r["oid"]): r for r in rows})
        refs = {int(r["typbasetype"]) for r in rows if r["typtype"] == "d"}
        refs |= {int(r["typelem"]) for r in rows if r["typelem"]}
        pending = refs - types.keys() - {0}
    out = []
    for oid, mod in columns:
        row, typmod = types.get(oid), mod
        for _ in range(32):  # a domain over a domain over ... (the wire itself sends the base type)
            if row is None or row["typtype"] != "d":
                break
            typmod = typmod if typmod >= 0 else int(row["typtypmod"])
            row = types.get(int(row["typbasetype"]))
        if row is None or row["nspname"] != "pg_catalog" or row["typtype"] != "b":
            out.append(PgResultType(base="", typmod=typmod))
            continue
        name = str(row["typname"])
        elem = types.get(int(row["typelem"])) if row["typelem"] else None
        is_array = row["typcategory"] == "A" and elem is not None and name == "_" + str(elem["typname"])
        if is_array and elem is not None and elem["nspname"] == "pg_catalog" and elem["typtype"] == "b":
            out.append(PgResultType(base="", typmod=typmod, element=str(elem["typname"])))
        elif is_array:
            out.append(PgResultType(base="", typmod=typmod))
        else:
            out.append(PgResultType(base=name, typmod=typmod))
    return out


async def describe_typmods(conn: Any, query: str, count: int) -> list[tuple[int, int]] | None:
    """(type oid, typmod) of each result column, from a temporary view over ``query`` that is rolled back.

    None when the source refuses the view (a read-only standby, no TEMP privilege): numeric columns
    then land as DOUBLE, as an unconstrained numeric does.
    """
    view = f"_axis_describe_{uuid.uuid4().hex[:12]}"
    names = ", ".join(quote_ident(f"c{i}") for i in range(count))
    tx = conn.transaction()
    await tx.start()
    try:
        await conn.execute(f"CREATE TEMPORARY VIEW {quote_ident(view)} ({names}) AS {query}")
        rows = await conn.fetch(
            "SELECT atttypid, atttypmod FROM pg_catalog.pg_attribute "
            "WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            f"pg_temp.{view}",
        )
    except asyncpg.PostgresError as exc:
        logger.warning("Cannot describe the sync query's column types (%s); numeric columns land as DOUBLE", exc)
        return None
    finally:
        await tx.rollback()
    return [(int(r["atttypid"]), int(r["atttypmod"])) for r in rows] if len(rows) == count else None


def _interval_month_day_nano(value: tuple[int, int, int]) -> tuple[int, int, int]:
    """asyncpg's interval tuple (months, days, microseconds) as Arrow's month_day_nano."""
    return (value[0], value[1], value[2] * 1000)


def _encode_unused(value: Any) -> Any:
    return value  # the sync read binds no parameters of these types


async def install_wire_codecs(conn: Any, kinds: set[str]) -> None:
    """Have asyncpg decode timestamps, dates and times to their PostgreSQL ticks (±infinity kept)
    and intervals to (months, days, nanoseconds), for the types this read uses."""
    ticks = operator.itemgetter(0)
    for name, kind in _WIRE_KINDS.items():
        if kind.codec and kind.codec in kinds:
            decoder = ticks if kind.codec == "ticks" else _interval_month_day_nano
            await conn.set_type_codec(
                name, schema="pg_catalog", encoder=_encode_unused, decoder=decoder, format="tuple"
            )


def asyncpg_read_query(limited: str, columns: list[AsyncpgColumn]) -> str:
    """The query the cursor runs: each column in its wire form, over the (limited) configured query."""
    names = ", ".join(quote_ident(f"c{i}") for i in range(len(columns)))
    select = ", ".join(col.wire_sql.format(f"_axis_w.{quote_ident(f'c{i}')}") for i, col in enumerate(columns))
    return f"SELECT {select} FROM (\n{limited}\n) AS _axis_w ({names})"


def _wire_arrow_type(key: str, is_list: bool) -> pa.DataType:
    """Arrow type of a wire column (pyarrow is imported only by this fallback path)."""
    import pyarrow as pa

    types = {
        "bool": pa.bool_(),
        "int16": pa.int16(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "float32": pa.float32(),
        "float64": pa.float64(),
        "string": pa.string(),
        "binary": pa.binary(),
        "time_us": pa.time64("us"),
        "interval": pa.month_day_nano_interval(),
    }
    return pa.list_(types[key]) if is_list else types[key]


def chunk_to_arrow(rows: list[Any], names: list[str], columns: list[AsyncpgColumn]) -> pa.Table:
    """One fetched chunk as an Arrow table of the columns' wire types (columns named c0, c1, ...)."""
    import pyarrow as pa

    values: list[Any] = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
    arrays = []
    for name, col, col_values in zip(names, columns, values, strict=True):
        try:
            arrays.append(pa.array(col_values, type=_wire_arrow_type(col.arrow, col.is_list)))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            hint = " (a multi-dimensional array?)" if col.is_list else ""
            raise Invalid(f"Column {name!r} does not fit {col.source_type}{hint}: {exc}") from exc
    return pa.Table.from_arrays(arrays, names=[f"c{i}" for i in range(len(columns))])


def asyncpg_load_select(names: list[str], columns: list[AsyncpgColumn], renames: dict[str, str]) -> str:
    """The DuckDB select list that turns a wire chunk into stored columns (renamed per §10.4)."""
    return ", ".join(
        f"{col.load_sql.format(quote_ident(f'c{i}'))} AS {quote_ident(renames[name])}"
        for i, (name, col) in enumerate(zip(names, columns, strict=True))
    )


def append_arrow_chunk(
    cur: duckdb.DuckDBPyConnection, staging: str, chunk: pa.Table, select: str, create: bool
) -> None:
    """Create (first chunk) or append to ``staging`` from an Arrow chunk through ``select``."""
    view = f"_axis_chunk_{uuid.uuid4().hex[:8]}"
    bound_ingest_buffers(cur)
    cur.register(view, chunk)
    try:
        sql = f"SELECT {select} FROM {quote_ident(view)}"
        if create:
            cur.execute(f"CREATE TABLE {quote_ident(staging)} AS {sql}")
        else:
            cur.execute(f"INSERT INTO {quote_ident(staging)} {sql}")
    finally:
        cur.unregister(view)


async def load_with_asyncpg(
    store: DuckDBStore,
    params: ConnectionParams,
    query: str,
    staging: str,
    target: SyncTarget,
    custom: dict[str, str],
    *,
    application_name: str,
    timeout_ms: int,
    chunk_rows: int,
    max_rows: int,
) -> LoadResult:
    """Read one query through a server-side cursor, ``chunk_rows`` rows per bounded Arrow batch.

    Lands the same DuckDB types and values as the extension reader (see ``asyncpg_column``).
    """
    limited = limit_query(query, max_rows + 1)
    conn = await connect_source(
        params, application_name=application_name, statement_timeout_ms=timeout_ms, connect_timeout=30
    )
    try:
        attrs = (await conn.prepare(limited)).get_attributes()
        names = [a.name for a in attrs]
        if not names:
            raise Invalid(f"The query for {staging.removesuffix(STAGING_SUFFIX)} returns no columns")
        typmods = await describe_typmods(conn, limited, len(names))
        if typmods is None:  # types without typmods: numeric lands as DOUBLE
            typmods = [(int(a.type.oid), -1) for a in attrs]
        async with conn.transaction(readonly=True):
            columns = [asyncpg_column(t) for t in await describe_result_types(conn, typmods)]
            await install_wire_codecs(conn, {c.codec for c in columns})
            renames = column_renames(names, target, custom)
            select = asyncpg_load_select(names, columns, renames)
            stmt = await conn.prepare(asyncpg_read_query(limited, columns))
            await store.run_staging(lambda cur: cur.execute(f"DROP TABLE IF EXISTS {quote_ident(staging)}"))
            cursor = await stmt.cursor()
            first = True
            while True:
                batch = await cursor.fetch(chunk_rows)

                def _append(cur: duckdb.DuckDBPyConnection, rows: list[Any] = batch, create: bool = first) -> None:
                    append_arrow_chunk(cur, staging, chunk_to_arrow(rows, names, columns), select, create)

                if first or batch:
                    await store.run_staging(_append)
                first = False
                if len(batch) < chunk_rows:
                    break
        rows, truncated = await store.run_staging(lambda cur: trim_staging_to_cap(cur, staging, max_rows))
    finally:
        await conn.close()
    return LoadResult(
        table=staging,
        rows=rows,
        truncated=truncated,
        renames=renames,
        source_types={renames[n]: c.source_type for n, c in zip(names, columns, strict=True)},
        reader="asyncpg",
    )
