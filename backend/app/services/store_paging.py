"""Pages of ``/api/store/data``: a unique row key per row, opaque keyset cursors and the page queries.

Rows are ordered by the sort column (NULLS LAST), then by the row key, so pages never overlap or
skip ties. A cursor holds the last row's sort value and key; the next page is then read with
``WHERE (sort, key) > last`` — bounded work however deep the page — instead of a growing OFFSET.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

import duckdb

from app.errors import Invalid
from app.services.duckdb_store import DuckDBStore, quote_ident
from app.services.json_rows import seconds_sql
from app.services.sync_targets import joined_select_sql, view_target

KEY_COLUMNS = ("_axis_page_k1", "_axis_page_k2")
SORT_TEXT = "_axis_page_sort"
HIDDEN = frozenset((*KEY_COLUMNS, SORT_TEXT))
_CURSOR_VERSION = 1


@dataclass(frozen=True)
class PageCursor:
    """Where a page starts: row ``pos``, just after the row with sort value ``sort`` (text) and key ``keys``."""

    fingerprint: str
    page: int
    pos: int
    keys: tuple[int, ...]
    sort: str | None


def encode_cursor(c: PageCursor) -> str:
    """Opaque URL-safe token of a cursor."""
    raw = json.dumps([_CURSOR_VERSION, c.fingerprint, c.page, c.pos, list(c.keys), c.sort], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(token: str) -> PageCursor:
    """Parse a token made by :func:`encode_cursor`; 400 when it is not one."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        version, fingerprint, page, pos, keys, sort = json.loads(raw)
        valid = (
            version == _CURSOR_VERSION
            and isinstance(fingerprint, str)
            and isinstance(page, int)
            and isinstance(pos, int)
            and 0 <= pos < 2**62
            and isinstance(keys, list)
            and 1 <= len(keys) <= len(KEY_COLUMNS)
            and all(isinstance(k, int) and -(2**63) <= k < 2**63 for k in keys)
            and (sort is None or isinstance(sort, str))
        )
        if not valid:
            raise ValueError("unknown cursor layout")
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError, RecursionError):
        raise Invalid("cursor is not a value returned as next_cursor by this endpoint") from None
    return PageCursor(fingerprint=fingerprint, page=page, pos=pos, keys=tuple(keys), sort=sort)


# Types whose DESCRIBE name may stand in ``CAST(? AS <type>)``: plain words, a (precision, scale), list
# brackets. Anything else (STRUCT, MAP, UNION, ENUM with its quoted labels) is read by OFFSET pages only.
_CURSOR_SORT_TYPE = re.compile(r"[A-Z][A-Z0-9_]*( [A-Z]+)*(\(\d+(, ?\d+)?\))?(\[\d*\])*")


def cursor_sortable(type_name: str | None) -> bool:
    """True when keyset cursors can page a sort column of this type (its name is safe to put in SQL)."""
    return type_name is None or _CURSOR_SORT_TYPE.fullmatch(type_name) is not None


@dataclass(frozen=True)
class KeyedRelation:
    """A FROM clause whose rows carry a unique, stable key (``keys``: SQL expressions, compared in order)."""

    from_sql: str
    keys: tuple[str, ...]
    scan_in_key_order: bool  # a plain table scan already yields rowid order (no ORDER BY needed)


def keyed_relation(cur: duckdb.DuckDBPyConnection, table: str) -> KeyedRelation | None:
    """A table keyed by its ``rowid``; a split sync view as its JOIN keyed by both sides' rowids.

    Any other view has no such key (None: offset pages only, no cursor).
    """
    if DuckDBStore.is_table_sync(cur, table):
        return KeyedRelation(quote_ident(table), ("rowid",), scan_in_key_order=True)
    target = view_target(table)
    if target is None:
        return None
    select = joined_select_sql(cur, target, keys=KEY_COLUMNS)
    return KeyedRelation(f"({select}) AS _axis_v", tuple(quote_ident(k) for k in KEY_COLUMNS), False)


@dataclass
class PageQuery:
    """One page request over a relation: output columns, bound filters and the sort."""

    columns: list[str]
    where: list[str]
    params: list[Any]
    sort_col: str | None
    sort_type: str | None
    descending: bool
    page_size: int
    interval_columns: frozenset[str] = frozenset()  # served as seconds (json_rows.seconds_sql)


FLOAT_TYPES = ("DOUBLE", "FLOAT", "REAL")


def sort_expr(q: PageQuery) -> str | None:
    """The ORDER BY expression of the sort column, ordering rows as their values are served.

    A float's NaN and ±inf sort as NULL (last): they are served as null (decision 1); ordered as
    DuckDB's values, NaN and +inf came first in a descending sort, so a "highest scores first" page
    opened with blank cells. An INTERVAL sorts by the seconds it is served as (``seconds_sql``, a
    year 365.25 days): DuckDB orders intervals with a month as 30 days, so '12 months' (served as
    31,557,600 s) came before '361 days' (31,190,400 s) and tied with '360 days'.
    """
    if q.sort_col is None:
        return None
    col = quote_ident(q.sort_col)
    sort_type = (q.sort_type or "").upper()
    if sort_type in FLOAT_TYPES:
        return f"(CASE WHEN isfinite({col}) THEN {col} END)"
    if sort_type == "INTERVAL":
        return seconds_sql(col)
    return col


def sort_value_type(q: PageQuery) -> str | None:
    """The DuckDB type of :func:`sort_expr`'s values (a cursor's sort value is cast back to it)."""
    return "DOUBLE" if (q.sort_type or "").upper() == "INTERVAL" else q.sort_type


def _keys_after(keys: tuple[str, ...], values: tuple[int, ...]) -> tuple[str, list[Any]]:
    """``keys > values`` lexicographically, values bound."""
    if len(values) != len(keys):
        raise Invalid("cursor does not belong to this dataset")
    if len(keys) == 1:
        return f"{keys[0]} > ?", [values[0]]
    return f"({keys[0]} > ? OR ({keys[0]} = ? AND {keys[1]} > ?))", [values[0], values[0], values[1]]


def _segments(q: PageQuery, rel: KeyedRelation, after: PageCursor) -> list[tuple[str, list[Any], bool]]:
    """The conditions (with params) that together select the rows after ``after``, in page order.

    Each is a plain AND of range conditions so DuckDB can push it into the scans (an OR over the
    sort value and the key could not be, and costs 2-3x a first page); the flag says whether that
    segment is ordered by the sort column (else by key only: within one tie, or the NULL tail).
    """
    key_cond, key_params = _keys_after(rel.keys, after.keys)
    s = sort_expr(q)
    if s is None:
        return [(key_cond, key_params, False)]
    if after.sort is None:  # already inside the trailing NULLs
        return [(f"{s} IS NULL AND {key_cond}", key_params, False)]
    if not cursor_sortable(q.sort_type):  # dataset_rows offers no cursor for such a sort
        raise Invalid(f"cannot page by cursor when sorting by {q.sort_col}; use page instead")
    value = f"CAST(? AS {sort_value_type(q)})"
    beyond = "<" if q.descending else ">"
    return [
        (f"{s} = {value} AND {key_cond}", [after.sort, *key_params], False),  # the rest of the tie
        (f"{s} {beyond} {value}", [after.sort], True),
        (f"{s} IS NULL", [], False),
    ]


def read_page(
    cur: duckdb.DuckDBPyConnection,
    rel: KeyedRelation | None,
    fallback_from: str,
    q: PageQuery,
    offset: int,
    after: PageCursor | None,
    offset_rows: int,
) -> tuple[list[dict[str, Any]], tuple[int, ...] | None, str | None]:
    """Up to ``page_size`` rows (by OFFSET, or after the cursor) and, when more follow, the last row's key/sort.

    Without a keyed relation (``rel`` None) the rows come from ``fallback_from`` with OFFSET only.
    A cursor page that ends within ``offset_rows`` rows is read by OFFSET too: the same rows (the
    order is total and the cursor's load fixed), and DuckDB's top-N prunes the scan with its dynamic
    filter there (~0.3 s on 4 M joined rows), where a range condition on the sort column changes the
    join plan (~0.55 s). Deeper, OFFSET grows (1.4 s and 2.7 GB at 20 k rows) and the keyset wins.
    """
    s = sort_expr(q)
    direction = "DESC" if q.descending else "ASC"
    select = [
        f"{seconds_sql(quote_ident(c))} AS {quote_ident(c)}" if c in q.interval_columns else quote_ident(c)
        for c in q.columns
    ]
    key_order: list[str] = []
    if rel is not None:
        select += [f"{k} AS {quote_ident(name)}" for k, name in zip(rel.keys, KEY_COLUMNS, strict=False)]
        if s:
            select.append(f"CAST({s} AS VARCHAR) AS {quote_ident(SORT_TEXT)}")
        if s or not rel.scan_in_key_order:
            key_order = list(rel.keys)
    source = rel.from_sql if rel is not None else fallback_from
    want = q.page_size + 1

    def run(conds: list[str], params: list[Any], by_sort: bool, limit: int, skip: int) -> list[dict[str, Any]]:
        order = ([f"{s} {direction} NULLS LAST"] if s and by_sort else []) + key_order
        where = f" WHERE {' AND '.join(conds)}" if conds else ""
        order_sql = f" ORDER BY {', '.join(order)}" if order else ""
        cur.execute(
            f"SELECT {', '.join(select)} FROM {source}{where}{order_sql} LIMIT ? OFFSET ?",
            [*params, limit, skip],
        )
        names = [d[0] for d in cur.description] if cur.description else []
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    if after is not None and after.pos + want <= offset_rows:
        offset, after = after.pos, None
    if after is None or rel is None:
        rows = run(q.where, q.params, True, want, offset)
    else:
        rows = []
        try:
            for cond, params, by_sort in _segments(q, rel, after):
                rows += run([*q.where, cond], [*q.params, *params], by_sort, want - len(rows), 0)
                if len(rows) >= want:
                    break
        except (duckdb.ConversionException, duckdb.InvalidInputException) as exc:
            raise Invalid(f"cursor does not fit this dataset's {q.sort_col or 'row key'} column") from exc
    more = len(rows) > q.page_size
    rows = rows[: q.page_size]
    last_keys = last_sort = None
    if more and rel is not None and rows:
        last = rows[-1]
        last_keys = tuple(int(last[name]) for name in KEY_COLUMNS[: len(rel.keys)])
        last_sort = last.get(SORT_TEXT)
    for row in rows:
        for name in HIDDEN:
            row.pop(name, None)
    return rows, last_keys, last_sort
