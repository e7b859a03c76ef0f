"""What a split sync reads and where it lands: targets, their staging tables, upsert keys and JOIN view."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from app.errors import Invalid
from app.services.column_aliases import (
    EVAL_ALIASES,
    MONITORING_ALIASES,
    normalise_column_key,
    with_canonical_names,
)
from app.services.duckdb_store import INTEGER_TYPES, DuckDBStore, quote_ident, reserved_column_renames

STAGING_SUFFIX = "__staging"
DUPLICATE_COLUMNS = (
    "The query returns two columns of the same name (DuckDB compares column names case-insensitively); "
    "give one of them another alias in the query"
)


@dataclass(frozen=True)
class SyncTarget:
    """One split dataset: its config key, registry kind, internal tables and API view."""

    name: str
    kind: str
    view: str
    aliases: dict[str, str] | None  # None: every name is just normalised
    # §8.1 step 3 (monitoring): the custom map, then the alias table, so a custom target that is an
    # alias ends as its canonical name ({conv: id} → dataset_id), as the upload's rename plan does.
    custom_through_aliases: bool = False

    @property
    def dataset_table(self) -> str:
        """Internal table of the dataset query."""
        return f"{self.name}_dataset"

    @property
    def results_table(self) -> str:
        """Internal table of the results query."""
        return f"{self.name}_results"

    @property
    def dataset_id(self) -> str:
        """Fixed registry id of the synced dataset."""
        return f"sync_{self.name}"

    @property
    def tables(self) -> tuple[str, str]:
        """(dataset table, results table)."""
        return (self.dataset_table, self.results_table)


TARGETS: dict[str, SyncTarget] = {
    "monitoring": SyncTarget(
        "monitoring", "monitoring", "monitoring_data", MONITORING_ALIASES, custom_through_aliases=True
    ),
    "human_signals": SyncTarget("human_signals", "human_signals", "human_signals_raw", None),
    "eval": SyncTarget("eval", "eval", "eval_data", with_canonical_names(EVAL_ALIASES)),
}
METADATA_PART_ROWS = 250_000  # dataset rows per metadata join part (see metadata_parts)


@dataclass
class LoadResult:
    """What one source query put into its staging table."""

    table: str
    rows: int
    truncated: bool
    renames: dict[str, str]
    source_types: dict[str, str]  # stored column → type on the source side
    reader: str


def column_renames(columns: list[str], target: SyncTarget, custom: dict[str, str]) -> dict[str, str]:
    """Source → stored column names: custom map (exact) first, then the alias table (DB-26).

    The custom map's targets are reserved before any alias applies, so ``{event_time: timestamp}``
    wins over an aliased ``created_at`` whatever the column order; two sources mapped to one target,
    or a target the query already returns (and keeps), are refused (Invalid). An alias whose target
    already exists as a source column, or was already produced, is skipped, so the stored table
    never has duplicate names (collision guard). Names compare case-insensitively, as DuckDB's
    identifiers do; a ``rowid`` column becomes ``source_rowid``. For monitoring a custom target that
    is itself an alias becomes its canonical name (``{conv: id}`` → ``dataset_id``), so both sides of
    a split source join on it (:attr:`SyncTarget.custom_through_aliases`).
    """
    aliases = target.aliases
    if target.custom_through_aliases and aliases is not None:
        custom = {src: aliases.get(normalise_column_key(dst), dst) if dst else dst for src, dst in custom.items()}
    seen: dict[str, str] = {}
    for col in columns:
        if col.lower() in seen:
            raise Invalid(f"{DUPLICATE_COLUMNS}: '{seen[col.lower()]}' and '{col}'")
        seen[col.lower()] = col
    existing = set(seen)
    reserved: dict[str, str] = {}  # custom target (lower) → its source column
    for col in columns:
        wanted = custom.get(col)
        if not wanted:
            continue
        if wanted.lower() in reserved:
            raise Invalid(f"The columns map sends both '{reserved[wanted.lower()]}' and '{col}' to '{wanted}'")
        reserved[wanted.lower()] = col
    moved = {c.lower() for c in columns if custom.get(c) and custom[c].lower() != c.lower()}
    for low, src in reserved.items():
        if low in existing and low not in moved and low != src.lower():
            raise Invalid(
                f"The columns map renames '{src}' to '{custom[src]}', a column the query already returns; "
                "rename that column too, or leave it out of the query"
            )
    used: set[str] = set()
    out: dict[str, str] = {}
    for col in columns:
        if custom.get(col):
            new = canonical_case(custom[col], target)
        else:
            if target.aliases is None:
                new = normalise_column_key(col) or col
            else:
                new = target.aliases.get(normalise_column_key(col), col)
            if new.lower() != col.lower() and (new.lower() in existing or new.lower() in reserved):
                new = col
        if new.lower() != col.lower() and new.lower() in used:
            new = col
        new = reserved_column_renames([new]).get(new, new)
        base, i = new, 2
        while new.lower() in used or (new.lower() in reserved and reserved[new.lower()] != col):
            new, i = f"{base}_{i}", i + 1
        used.add(new.lower())
        out[col] = new
    return out


def canonical_case(name: str, target: SyncTarget) -> str:
    """A custom map target in the spelling the store's processing uses when only its case differs.

    ``{score: Metric_Score}`` stored ``Metric_Score``, which the metadata and analytics (they look for
    ``metric_score``) never found, although DuckDB itself treats both as one name. Monitoring and eval
    targets take the case of a canonical alias name; human-signals ones are lowercased, as every
    other human-signals column name is.
    """
    if target.aliases is None:
        return name.lower() if normalise_column_key(name) == name.lower() else name
    canonical = {c.lower(): c for c in target.aliases.values()}
    return canonical.get(name.lower(), name)


def result_keys(columns: list[str], side: str) -> list[str]:
    """Upsert key of an internal table (DB-41): dataset_id, plus metric_name, run_id and id for results.

    An incremental sync treats a re-read row whose key is already stored as an update of it, so
    the key must identify rows: a full sync checks that (:func:`duplicate_key_sync`) and turns
    incremental syncs off while it does not.
    """
    if side == "dataset":
        return ["dataset_id"]
    return [c for c in ("dataset_id", "metric_name", "run_id", "id") if c in columns]


def duplicate_key_sync(cur: duckdb.DuckDBPyConnection, table: str, keys: list[str]) -> bool:
    """True when some key tuple (NULLs equal) is on more than one row of ``table``."""
    cols = ", ".join(quote_ident(k) for k in keys)
    row = cur.execute(f"SELECT 1 FROM {quote_ident(table)} GROUP BY {cols} HAVING count(*) > 1 LIMIT 1").fetchone()
    return row is not None


def view_target(view: str) -> SyncTarget | None:
    """The split sync target whose JOIN view is ``view`` (None for any other table)."""
    return next((t for t in TARGETS.values() if t.view == view), None)


KeyKind = str  # "int", "frac" (floating or decimal), "text" or "other"


def duck_key_kind(type_name: str) -> KeyKind:
    """The kind of a DuckDB ``dataset_id`` type, for :func:`key_join_sql`."""
    if type_name in INTEGER_TYPES:
        return "int"
    if type_name in ("DOUBLE", "FLOAT") or type_name.startswith("DECIMAL"):
        return "frac"
    return "text" if type_name == "VARCHAR" else "other"


def key_join_sql(r_kind: KeyKind, d_kind: KeyKind) -> str:
    """ON condition joining results ``r`` to dataset rows ``d`` whose ``dataset_id`` types differ.

    Two numeric kinds compare as numbers. Fractional ids (PostgreSQL numeric and float8 land as
    DOUBLE: 1 is 1.0) against text compare as numbers, the text read with TRY_CAST (text that is no
    number matches nothing); any other pair, integers against text included, compares text forms.
    """
    numeric = {"int", "frac"}
    if r_kind in numeric and d_kind in numeric:
        return "r.dataset_id = d.dataset_id"
    if r_kind == "text" and d_kind == "frac":
        return "TRY_CAST(r.dataset_id AS DOUBLE) = d.dataset_id"
    if r_kind == "frac" and d_kind == "text":
        return "r.dataset_id = TRY_CAST(d.dataset_id AS DOUBLE)"
    return "CAST(r.dataset_id AS VARCHAR) = CAST(d.dataset_id AS VARCHAR)"


def joined_select_sql(
    cur: duckdb.DuckDBPyConnection,
    target: SyncTarget,
    keys: tuple[str, str] | None = None,
    dataset_part: tuple[int, int] | None = None,
) -> str:
    """The SELECT behind a split target's view: results JOIN dataset on ``dataset_id``.

    Results columns first, then dataset columns (a name taken by the results side is prefixed
    ``dataset_``; ``dataset_id`` appears once). With ``keys``, two more columns of those names hold
    the results and dataset rowids: together a unique row key (keyset pagination). With
    ``dataset_part = (k, n)`` only the dataset rows with ``hash(dataset_id) % n = k`` join (part k of n:
    all rows of one record fall in one part).
    """
    r_desc = DuckDBStore.describe_sync(cur, target.results_table)
    d_desc = DuckDBStore.describe_sync(cur, target.dataset_table)
    r_cols = sorted(c["name"] for c in r_desc)
    d_cols = sorted(c["name"] for c in d_desc if c["name"] != "dataset_id")
    r_type = next(c["type"] for c in r_desc if c["name"] == "dataset_id")
    d_type = next(c["type"] for c in d_desc if c["name"] == "dataset_id")
    on = (
        "r.dataset_id = d.dataset_id"
        if r_type == d_type
        else key_join_sql(duck_key_kind(r_type), duck_key_kind(d_type))
    )
    taken = {c.lower() for c in r_cols}  # DuckDB identifiers are case-insensitive
    select = [f"r.{quote_ident(c)}" for c in r_cols]
    for c in d_cols:
        out = f"dataset_{c}" if c.lower() in taken else c
        base, i = out, 2
        while out.lower() in taken:
            out, i = f"{base}_{i}", i + 1
        taken.add(out.lower())
        select.append(f"d.{quote_ident(c)} AS {quote_ident(out)}")
    if keys:
        select += [f"r.rowid AS {quote_ident(keys[0])}", f"d.rowid AS {quote_ident(keys[1])}"]
    part = f" WHERE hash(d.dataset_id) % {int(dataset_part[1])} = {int(dataset_part[0])}" if dataset_part else ""
    return (
        f"SELECT {', '.join(select)} "
        f"FROM {quote_ident(target.results_table)} AS r JOIN {quote_ident(target.dataset_table)} AS d "
        f"ON {on}{part}"
    )


def metadata_parts(
    cur: duckdb.DuckDBPyConnection, target: SyncTarget, part_rows: int = METADATA_PART_ROWS
) -> list[str] | None:
    """The JOIN view split into parts of at most ``part_rows`` dataset rows (None: one part).

    The metadata scans join the two tables; per part, the join's hash table holds one part of the
    dataset side, so a large sync's metadata step needs no more memory than a small one's.
    """
    row = cur.execute(f"SELECT count(*) FROM {quote_ident(target.dataset_table)}").fetchone()
    n = -(-int(row[0] if row else 0) // part_rows)
    if n <= 1:
        return None
    return [f"({joined_select_sql(cur, target, dataset_part=(k, n))}) AS _axis_part" for k in range(n)]


def trim_staging_to_cap(cur: duckdb.DuckDBPyConnection, staging: str, max_rows: int) -> tuple[int, bool]:
    """Keep the first ``max_rows`` rows of ``staging``; (rows kept, whether any were dropped)."""
    row = cur.execute(f"SELECT count(*) FROM {quote_ident(staging)}").fetchone()
    n = int(row[0]) if row else 0
    if n <= max_rows:
        return n, False
    st = quote_ident(staging)
    cur.execute(f"DELETE FROM {st} WHERE rowid IN (SELECT rowid FROM {st} ORDER BY rowid DESC LIMIT ?)", [n - max_rows])
    return max_rows, True
