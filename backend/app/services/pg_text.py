"""PostgreSQL's own text for values asyncpg would decode into its own Python objects.

asyncpg decodes geometric types (``Point``, ``Box``, …), bit strings (``BitString``), anonymous rows
(``Record``), ranges (``Range``), multiranges (lists of ``Range``), named composite types
(``Record``) and a few system types (``tid`` and snapshots as tuples, ``pg_lsn`` as an integer,
the one-byte ``"char"`` as ``bytes``).
Written out with ``str`` they became Python object text (``asyncpg.pgproto.types.Point((1.0, 2.0))``,
``<Range [1, 5)>``) in the database browser and in what imports store. Two measures give
PostgreSQL's text instead, the same text ``col::text`` gives (and the sync stores):

* :func:`install_text_codecs`: text codecs for the scalar types, installed on every browser pool
  connection and on the one-shot import connection, so PostgreSQL sends its output text; arrays of
  them become lists of that text.
* :func:`text_reads`: asyncpg refuses custom codecs on range, multirange and composite types (and
  cannot name ``"char"``), so result columns of those types (and arrays of them, domains included)
  are read cast to ``text`` (``text[]`` for arrays) in SQL.

A timestamptz bound of a range is written in the session's TimeZone, as ``::text`` writes it.
A composite with a field asyncpg has no binary codec for (money, tsquery) still fails when the
statement is prepared, before its column types are known: that error asks for a cast to text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# Types asyncpg accepts a text codec for (it treats ``record`` as a scalar), and whose decoded
# object is not PostgreSQL's text.
TEXT_CODEC_TYPES = (
    "point", "line", "lseg", "box", "path", "polygon", "circle", "bit", "varbit", "record",
    "tid", "txid_snapshot", "pg_snapshot", "pg_lsn",
)  # fmt: skip

# Column kinds (asyncpg's ``Type.kind``; a domain reports its base type) read as ``::text``.
TEXT_READ_KINDS = frozenset({"range", "multirange", "composite"})
# The one-byte "char" (asyncpg hands it over as ``bytes``; its codec cannot be set by name: asyncpg
# takes "char" for bpchar) is read as ``::text`` too.
CHAR_OID = 18
TEXT_READ = "({})::text"
TEXT_ARRAY_READ = "({})::text[]"

# Types below this OID are PostgreSQL's hand-assigned built-in types, identical on every server:
# whether an array of one holds ranges or composites is looked up once per process.
_FIRST_GENBKI_OID = 10000
_builtin_arrays: dict[int, bool] = {}

# The array types (of the given OIDs) whose elements, domains unwrapped, are ranges, multiranges,
# composites or "char".
_STRUCTURED_ARRAYS_SQL = """
WITH RECURSIVE elem(array_oid, oid) AS (
    SELECT t.oid, t.typelem FROM pg_catalog.pg_type t WHERE t.oid = ANY($1::oid[]) AND t.typelem <> 0
    UNION ALL
    SELECT e.array_oid, d.typbasetype FROM elem e JOIN pg_catalog.pg_type d ON d.oid = e.oid WHERE d.typtype = 'd'
)
SELECT e.array_oid FROM elem e JOIN pg_catalog.pg_type t ON t.oid = e.oid
WHERE t.typtype IN ('c', 'r', 'm') OR t.oid = 18
"""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


async def install_text_codecs(conn: Any) -> None:
    """Have PostgreSQL send its own text for the types of :data:`TEXT_CODEC_TYPES` on ``conn``.

    Usable as asyncpg's pool ``init``. Built-in types only: no catalogue query is made.
    """
    for name in TEXT_CODEC_TYPES:
        await conn.set_type_codec(name, schema="pg_catalog", encoder=_text, decoder=_text, format="text")


async def text_reads(conn: Any, types: Sequence[Any]) -> dict[int, str]:
    """Positions of result columns (asyncpg ``Type`` per column) to read as PostgreSQL text → how to
    read them (a format string, ``{}`` = the column): ranges, multiranges, composites and "char" as
    ``::text``, arrays of them as ``::text[]``. Arrays of user-defined types cost one catalogue query."""
    out: dict[int, str] = {}
    unknown: dict[int, list[int]] = {}
    for i, t in enumerate(types):
        kind = getattr(t, "kind", "")
        if kind in TEXT_READ_KINDS or (kind == "scalar" and int(t.oid) == CHAR_OID):
            out[i] = TEXT_READ
        elif kind == "array":
            oid = int(t.oid)
            known = _builtin_arrays.get(oid)
            if known is None:
                unknown.setdefault(oid, []).append(i)
            elif known:
                out[i] = TEXT_ARRAY_READ
    if unknown:
        structured = {int(r[0]) for r in await conn.fetch(_STRUCTURED_ARRAYS_SQL, list(unknown))}
        for oid, positions in unknown.items():
            if oid < _FIRST_GENBKI_OID:
                _builtin_arrays[oid] = oid in structured
            if oid in structured:
                out.update(dict.fromkeys(positions, TEXT_ARRAY_READ))
    return out
