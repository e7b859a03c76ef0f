"""Primary sync reader: DuckDB's postgres extension streams a query's binary COPY into a staging table."""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import logging
import os
import re
import shutil
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from app.errors import Invalid
from app.services.duckdb_store import DuckDBStore, bound_ingest_buffers, quote_ident, quote_literal, utc_instant_sql
from app.services.sync_queries import limit_query, partition_queries, wrap_query
from app.services.sync_targets import (
    DUPLICATE_COLUMNS,
    STAGING_SUFFIX,
    LoadResult,
    SyncTarget,
    column_renames,
    trim_staging_to_cap,
)

logger = logging.getLogger(__name__)


def postgres_extension_file(data_dir: Path) -> Path | None:
    """The postgres extension from the ``duckdb-extension-postgres`` wheel, copied where LOAD finds it."""
    spec = importlib.util.find_spec("duckdb_extension_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    version = duckdb.__version__
    src = Path(next(iter(spec.submodule_search_locations))) / "extensions" / f"v{version}" / "postgres.duckdb_extension"
    if not src.exists():
        return None
    dst = data_dir / "extensions" / f"v{version}" / "postgres_scanner.duckdb_extension"
    if not dst.exists() or dst.stat().st_size != src.stat().st_size:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_suffix(f".{uuid.uuid4().hex[:6]}.tmp")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    return dst


def _projection(plan: ExtensionPlan) -> str:
    parts = []
    for name, typ in plan.columns:
        src = quote_ident(name)
        if typ == "TIMESTAMP WITH TIME ZONE":
            expr = utc_instant_sql(src)
        elif name in plan.numeric_text:  # PostgreSQL's text of a numeric, read by DuckDB's DOUBLE parser
            expr = f"CAST({src} AS {typ})"
        else:
            expr = src
        parts.append(f"{expr} AS {quote_ident(plan.renames.get(name, name))}")
    return ", ".join(parts)


_DECIMAL_RE = re.compile(r"DECIMAL\((\d+),(\d+)\)(\[\])?")


def _duck_type(described: str) -> str:
    """The stored type of a described column: a DECIMAL whose scale is outside its precision is DOUBLE.

    PostgreSQL 15 allows numeric(5,-2) and numeric(3,5); the extension describes them as
    DECIMAL(5,254) and DECIMAL(3,5), which no DuckDB DECIMAL holds (the read failed at the source).
    They travel as text and land as DOUBLE, as the asyncpg reader lands them (``numeric_duck_type``).
    """
    match = _DECIMAL_RE.fullmatch(described)
    if match and int(match.group(2)) > int(match.group(1)):
        return "DOUBLE" + (match.group(3) or "")
    return described


@dataclass
class ExtensionPlan:
    """Source columns, stored names and the PostgreSQL queries (one per stream) of one table.

    ``numeric_text``: DOUBLE columns that are not float8 at the source (numeric, domains over it);
    they travel as text (see :func:`numeric_safe_query`).
    """

    columns: list[tuple[str, str]]
    renames: dict[str, str]
    queries: list[str]
    numeric_text: frozenset[str] = frozenset()


FLOAT8_TYPES = ("double precision", "double precision[]")


def numeric_text_columns(
    cur: duckdb.DuckDBPyConnection, alias: str, query: str, columns: list[tuple[str, str]]
) -> frozenset[str]:
    """The DOUBLE columns whose PostgreSQL type is not float8 (asked of the source without reading a row).

    DuckDB's DESCRIBE gives DOUBLE for float8 and for unconstrained numeric alike; only the latter
    can hold a value float8 cannot (1e400), on which PostgreSQL's cast fails the whole read.
    """
    doubles = [name for name, typ in columns if typ in ("DOUBLE", "DOUBLE[]")]
    if not doubles:
        return frozenset()
    types = ", ".join(f"pg_typeof(_axis_q.{quote_ident(name)})::text AS t{i}" for i, name in enumerate(doubles))
    probe = (
        f"SELECT {types} FROM (SELECT 1) AS _axis_one "
        f"LEFT JOIN (SELECT * FROM (\n{wrap_query(query)}\n) AS _axis_s LIMIT 0) AS _axis_q ON true"
    )
    row = cur.execute("SELECT * FROM postgres_query(?, ?)", [alias, probe]).fetchone() or ()
    return frozenset(name for name, pg_type in zip(doubles, row, strict=True) if pg_type not in FLOAT8_TYPES)


def plan_extension_load(
    cur: duckdb.DuckDBPyConnection,
    alias: str,
    query: str,
    target: SyncTarget,
    custom: dict[str, str],
    max_rows: int,
    partition_column: str | None = None,
    workers: int = 1,
) -> ExtensionPlan:
    """Describe the source query and decide its streams (partitioned when configured and present)."""
    limited = limit_query(query, max_rows + 1)
    try:
        described = cur.execute("DESCRIBE SELECT * FROM postgres_query(?, ?)", [alias, limited]).fetchall()
    except duckdb.BinderException as exc:
        if "duplicate column name" not in str(exc):
            raise
        raise Invalid(f"{DUPLICATE_COLUMNS} ({str(exc).splitlines()[0]})") from None
    columns = [(str(r[0]), _duck_type(str(r[1]))) for r in described]
    renames = column_renames([c for c, _ in columns], target, custom)
    numeric_text = numeric_text_columns(cur, alias, query, columns)
    source = numeric_safe_query(query, columns, numeric_text)
    queries = [limit_query(source, max_rows + 1)]
    if partition_column and workers > 1 and partition_column in {c for c, _ in columns}:
        queries = partition_queries(source, partition_column, workers, max_rows + 1)
    return ExtensionPlan(columns=columns, renames=renames, queries=queries, numeric_text=numeric_text)


def numeric_safe_query(query: str, columns: list[tuple[str, str]], numeric_text: frozenset[str] = frozenset()) -> str:
    """The query with its numeric columns converted on the PostgreSQL side (as the asyncpg reader lands them).

    The extension reads a numeric NaN or ±Infinity as 0, in arrays too: a float8 DOUBLE column is
    sent as ``float8``, a DOUBLE one in ``numeric_text`` (unconstrained numeric) as its text, which
    the projection parses as DOUBLE like the asyncpg reader does (NaN and ±Infinity kept, correctly
    rounded, beyond float8's range ±inf or 0 where PostgreSQL's own cast would fail the read); a
    DECIMAL one (numeric(p,s)) with NaN as NULL; DOUBLE[] lists alike (``float8[]`` or ``text[]``),
    a DECIMAL[] one with its NaN elements NULL. Other columns pass as they are.
    """

    def decimal(typ: str) -> bool:
        return typ.startswith("DECIMAL") and typ.endswith(")")  # not a DECIMAL[] list

    def decimal_list(typ: str) -> bool:
        return typ.startswith("DECIMAL") and typ.endswith(")[]")

    if not any(t in ("DOUBLE", "DOUBLE[]") or decimal(t) or decimal_list(t) for _, t in columns):
        return query
    parts = []
    for name, typ in columns:
        col = f"_axis_n.{quote_ident(name)}"
        if typ in ("DOUBLE", "DOUBLE[]"):
            cast = "text" if name in numeric_text else "float8"
            parts.append(f"{col}::{cast}{typ.removeprefix('DOUBLE')} AS {quote_ident(name)}")
        elif decimal(typ):  # by its text (money lands as DECIMAL too); typmod restored, so the type stays
            numeric = "numeric" + typ.removeprefix("DECIMAL")
            parts.append(f"(CASE WHEN {col}::text = 'NaN' THEN NULL ELSE {col} END)::{numeric} AS {quote_ident(name)}")
        elif decimal_list(typ):
            numeric = "numeric" + typ.removeprefix("DECIMAL").removesuffix("[]")
            parts.append(f"array_replace({col}::numeric[], 'NaN', NULL)::{numeric}[] AS {quote_ident(name)}")
        else:
            parts.append(col)
    return f"SELECT {', '.join(parts)} FROM (\n{wrap_query(query)}\n) AS _axis_n"


def create_staging_from_plan(
    cur: duckdb.DuckDBPyConnection, alias: str, staging: str, plan: ExtensionPlan, stream: int | None
) -> None:
    """Create ``staging``: filled from one stream (CTAS), or empty with the final types (``stream=None``)."""
    bound_ingest_buffers(cur)
    cur.execute(f"DROP TABLE IF EXISTS {quote_ident(staging)}")
    select = f"SELECT {_projection(plan)} FROM postgres_query(?, ?)"
    if stream is not None:
        cur.execute(f"CREATE TABLE {quote_ident(staging)} AS {select}", [alias, plan.queries[stream]])
        return
    typed = cur.execute(f"DESCRIBE {select}", [alias, plan.queries[0]]).fetchall()
    cols = ", ".join(f"{quote_ident(str(r[0]))} {r[1]}" for r in typed)
    cur.execute(f"CREATE TABLE {quote_ident(staging)} ({cols})")


def insert_stream(cur: duckdb.DuckDBPyConnection, alias: str, staging: str, plan: ExtensionPlan, stream: int) -> None:
    """Append one partition stream to ``staging`` (streams run concurrently on their own cursors)."""
    bound_ingest_buffers(cur)
    cur.execute(
        f"INSERT INTO {quote_ident(staging)} SELECT {_projection(plan)} FROM postgres_query(?, ?)",
        [alias, plan.queries[stream]],
    )


def extension_result(staging: str, plan: ExtensionPlan, rows: int, truncated: bool) -> LoadResult:
    """The LoadResult of an extension load."""
    return LoadResult(
        table=staging,
        rows=rows,
        truncated=truncated,
        renames=plan.renames,
        source_types={plan.renames[c]: t for c, t in plan.columns},
        reader="postgres_extension",
    )


async def read_with_extension(
    store: DuckDBStore,
    conninfo: str,
    queries: dict[str, str],
    target: SyncTarget,
    custom: dict[str, str],
    *,
    max_rows: int,
    partition_column: str | None,
    workers: int,
    on_cancel: Callable[[], Awaitable[Any]] | None = None,
) -> dict[str, LoadResult]:
    """Attach the source read-only and stream each ``{table: query}`` into ``<table>__staging`` concurrently.

    A query with a partition column and ``workers > 1`` runs as that many hash-partitioned streams
    appending to one staging table. The attachment is detached afterwards, also on failure.
    ``on_cancel`` runs when the read is cancelled (see ``DuckDBStore.run_staging``).
    """
    alias = f"axis_pg_{uuid.uuid4().hex[:10]}"
    attach_sql = f"ATTACH {quote_literal(conninfo)} AS {quote_ident(alias)} (TYPE postgres, READ_ONLY)"
    await store.run_staging(lambda cur: cur.execute(attach_sql))
    results: dict[str, LoadResult] = {}
    try:

        async def _one(table: str, query: str) -> None:
            staging = table + STAGING_SUFFIX
            plan = await store.run_staging(
                lambda cur: plan_extension_load(cur, alias, query, target, custom, max_rows, partition_column, workers)
            )
            if len(plan.queries) == 1:
                await store.run_staging(
                    lambda cur: create_staging_from_plan(cur, alias, staging, plan, 0), on_cancel=on_cancel
                )
            else:
                await store.run_staging(lambda cur: create_staging_from_plan(cur, alias, staging, plan, None))

                def _insert(cur: duckdb.DuckDBPyConnection, stream: int) -> None:
                    insert_stream(cur, alias, staging, plan, stream)

                async with asyncio.TaskGroup() as parts:
                    for i in range(len(plan.queries)):
                        parts.create_task(store.run_staging(functools.partial(_insert, stream=i), on_cancel=on_cancel))
            rows, truncated = await store.run_staging(lambda cur: trim_staging_to_cap(cur, staging, max_rows))
            results[table] = extension_result(staging, plan, rows, truncated)

        async with asyncio.TaskGroup() as tg:
            for table, query in queries.items():
                tg.create_task(_one(table, query))
    finally:
        detach = store.run_staging(lambda cur: cur.execute(f"DETACH DATABASE IF EXISTS {quote_ident(alias)}"))
        try:
            await asyncio.wait_for(asyncio.shield(detach), timeout=30)
        except TimeoutError:
            logger.warning("Detaching the sync source %s took over 30 s; left to finish in the background", alias)
    return results
