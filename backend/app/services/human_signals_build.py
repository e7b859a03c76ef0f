"""Human-signals derived build (spec §7.3, §7.4, §10.9): raw signal rows → metric schema and cases.

Everything heavy runs as DuckDB SQL with its JSON functions: cells are parsed with ``TRY_CAST(..
AS JSON)`` (Python-literal cells, the legacy format, are converted in a small fallback pass),
signal objects are expanded by unnesting ``json_keys``/``json_extract`` lists (category dicts
flattened to ``name → value`` with list lambdas), the schema is one GROUP BY over the expanded
signals, and the cases table is one GROUP BY per case pivoting on integer column ids.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb

from app.errors import Invalid
from app.services.duckdb_store import (
    DuckDBStore,
    quote_ident,
)

logger = logging.getLogger(__name__)

REQUIRED = ("metric_name", "dataset_id", "signals")
SOURCE_FIELDS = ("source_name", "source_component", "source_type", "environment")
JSON_COLUMNS = (
    "signals",
    "conversation",
    "conversation_stats",
    "additional_input",
    "evaluation_metadata",
    "actual_reference",
    "additional_output",
)
TEXT_JSON_FIELDS = ("evaluation_metadata", "actual_reference", "additional_output")
MAX_SCHEMA_VALUES = 200
REQUIRED_MESSAGE = "Data does not appear to be in signals format. Required columns: metric_name, dataset_id, signals"


def normalise_name(name: str) -> str:
    """``"Metric Name"`` → ``metric_name`` (lowercase, trimmed, spaces/hyphens → ``_``)."""
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def signal_columns(columns: Sequence[str]) -> dict[str, str]:
    """Normalised name → original column; ``source`` stands in for a missing ``source_name`` (DB-21).

    When two columns normalise to one name (``Metric Name`` and ``metric_name``), the exact one is used.

    Raises Invalid naming the required columns when a V2 column is missing.
    """
    mapping: dict[str, str] = {}
    for col in columns:  # a column already named exactly wins over a display spelling of the same name
        key = normalise_name(col)
        if key not in mapping or col == key:
            mapping[key] = col
    if "source_name" not in mapping and "source" in mapping:
        mapping["source_name"] = mapping["source"]
    missing = [c for c in REQUIRED if c not in mapping]
    if missing:
        raise Invalid(f"{REQUIRED_MESSAGE} (missing: {', '.join(missing)})")
    return mapping


# Whitespace a blank name or value may consist of (SQL ``trim``'s second argument; Python's strip()).
_BLANK = "(' ' || chr(9) || chr(10) || chr(11) || chr(12) || chr(13))"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _parse_literal(text: str) -> str | None:
    """A dict/list cell DuckDB's JSON reader rejected, as JSON text it accepts, else None.

    Such a cell is JSON Python reads (DuckDB refuses a lone surrogate escape such as ``\\ud83d``,
    half an emoji cut off in model output) or a Python literal (``{'a': True}``). Lone surrogates
    become U+FFFD.
    """
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    if isinstance(value, dict | list):
        try:
            return _LONE_SURROGATE.sub("\ufffd", json.dumps(value, default=str, ensure_ascii=False))
        except (TypeError, ValueError, RecursionError):
            return None
    return None


@dataclass
class SignalsBuild:
    """Result of one derived build."""

    metric_schema: dict[str, Any]
    case_count: int
    columns: list[str]


_TYPE_SQL = """CASE jt WHEN 'BOOLEAN' THEN 'boolean' WHEN 'BIGINT' THEN 'number' WHEN 'UBIGINT' THEN 'number'
    WHEN 'DOUBLE' THEN 'number' WHEN 'HUGEINT' THEN 'number' WHEN 'ARRAY' THEN 'array' WHEN 'OBJECT' THEN 'object'
    WHEN 'VARCHAR' THEN 'string' ELSE NULL END"""

_IS_CATEGORY_SQL = """(len(json_keys(v)) > 0 AND list_bool_and(list_transform(
    json_extract(v, '$.*'), cv -> json_type(cv) = 'ARRAY' AND coalesce(list_bool_and(list_transform(
    json_extract(cv, '$[*]'), x -> json_type(x) = 'OBJECT' AND json_exists(x, '$.name'))), true))))"""


def build_signals_tables_sync(
    cur: duckdb.DuckDBPyConnection,
    raw_table: str,
    cases_table: str,
    visible_metrics: Sequence[str] = (),
) -> SignalsBuild:
    """Build ``cases_table`` (§7.4) from the V2 rows in ``raw_table`` and return the schema (§7.3)."""
    described = DuckDBStore.describe_sync(cur, raw_table)
    cols = signal_columns([c["name"] for c in described])
    tag = uuid.uuid4().hex[:8]
    temps = {name: f"_hs_{name}_{tag}" for name in ("rows", "base", "e")}
    try:
        return _build(cur, raw_table, cases_table, cols, list(visible_metrics), temps)
    finally:
        for t in temps.values():
            cur.execute(f"DROP TABLE IF EXISTS {quote_ident(t)}")


def _as_json(expr: str) -> str:
    """``expr`` (text) parsed as a JSON object/array, else NULL."""
    return f"(CASE WHEN regexp_matches({expr}, '^\\s*[\\[{{]') THEN TRY_CAST({expr} AS JSON) END)"


def _literal_fallback(cur: duckdb.DuckDBPyConnection, table: str, pairs: Sequence[tuple[str, str]]) -> None:
    """Parse Python-literal cells (``{'a': True}``) that JSON rejected, only for those rows (one scan)."""
    q = quote_ident(table)
    bad = [
        f"({quote_ident(j)} IS NULL AND {quote_ident(txt)} IS NOT NULL "
        f"AND regexp_matches({quote_ident(txt)}, '^\\s*[\\[{{]'))"
        for txt, j in pairs
    ]
    picks = ", ".join(f"CASE WHEN {b} THEN {quote_ident(txt)} END" for b, (txt, _) in zip(bad, pairs, strict=True))
    rows = cur.execute(f"SELECT _rid, {picks} FROM {q} WHERE {' OR '.join(bad)}").fetchall()
    for i, (_, j) in enumerate(pairs, start=1):
        fixed = [(js, row[0]) for row in rows if row[i] is not None and (js := _parse_literal(row[i])) is not None]
        if fixed:
            cur.executemany(f"UPDATE {q} SET {quote_ident(j)} = TRY_CAST(? AS JSON) WHERE _rid = ?", fixed)


def _build(
    cur: duckdb.DuckDBPyConnection,
    raw_table: str,
    cases_table: str,
    cols: Mapping[str, str],
    visible: list[str],
    temps: Mapping[str, str],
) -> SignalsBuild:
    def text(name: str) -> str:
        return f"CAST({quote_ident(cols[name])} AS VARCHAR)" if name in cols else "NULL::VARCHAR"

    q_raw = quote_ident(raw_table)
    q_rows, q_base, q_e = (quote_ident(temps[n]) for n in ("rows", "base", "e"))
    # 1. Light per-row table: ids, metric, category and the parsed signals object or list; the signals
    #    text is kept only where JSON gave neither (input of the literal fallback).
    cur.execute(
        f"""CREATE TEMP TABLE {q_rows} AS
        SELECT _rid, dataset_id, metric_name, cat,
               CASE WHEN is_obj THEN sj END AS sig_j, CASE WHEN NOT is_obj THEN sig_txt END AS sig_txt FROM (
            SELECT *, coalesce(json_type(sj) IN ('OBJECT', 'ARRAY'), false) AS is_obj FROM (
                SELECT row_number() OVER () AS _rid, {text("dataset_id")} AS dataset_id,
                       trim({text("metric_name")}, {_BLANK}) AS metric_name,
                       lower(trim({text("metric_category")}, {_BLANK})) AS cat,
                       {text("signals")} AS sig_txt, TRY_CAST({text("signals")} AS JSON) AS sj
                FROM {q_raw}))"""
    )
    _literal_fallback(cur, temps["rows"], [("sig_txt", "sig_j")])
    # 2. Per-case fields from each case's first row; heavy JSON is parsed once per case, not per row.
    #    First rows are step 1's row numbers, matched on (row number, case) in a second numbered scan
    #    of only the needed columns. Should the two scans disagree (a view), some case goes unmatched
    #    and the build falls back to one materialised numbering.
    firsts = {"did": quote_ident(cols["dataset_id"]), "ts": text("timestamp")}
    firsts.update({f: text(f) for f in SOURCE_FIELDS})
    firsts.update({c: text(c) for c in JSON_COLUMNS if c != "signals"})
    first_cols = ", ".join(f"{v} AS {quote_ident(k + '_txt')}" for k, v in firsts.items())
    numbered = f"SELECT row_number() OVER () AS rn, {text('dataset_id')} AS _case, {first_cols} FROM {q_raw}"
    json_fields = ", ".join(
        f"{_as_json(quote_ident(c + '_txt'))} AS {quote_ident(c + '_j')}" for c in JSON_COLUMNS if c != "signals"
    )
    base = f"""SELECT row_number() OVER () AS _rid, f._case AS dataset_id, f.rn AS _first,
               f.* EXCLUDE (rn, _case), {json_fields}
        FROM (SELECT n.* FROM numbered n SEMI JOIN firsts USING (rn, _case)) f"""
    cur.execute(
        f"""CREATE TEMP TABLE {q_base} AS
        WITH firsts AS (SELECT dataset_id AS _case, min(_rid) AS rn FROM {q_rows}
                        WHERE dataset_id IS NOT NULL GROUP BY dataset_id),
        numbered AS ({numbered})
        {base}"""
    )
    counts = cur.execute(
        f"SELECT (SELECT count(*) FROM {q_base}), (SELECT count(DISTINCT dataset_id) FROM {q_rows})"
    ).fetchone()
    if counts is None or counts[0] != counts[1]:
        cur.execute(
            f"""CREATE OR REPLACE TEMP TABLE {q_base} AS
            WITH numbered AS MATERIALIZED ({numbered}),
            firsts AS (SELECT _case, min(rn) AS rn FROM numbered WHERE _case IS NOT NULL GROUP BY _case)
            {base}"""
        )
    _literal_fallback(cur, temps["base"], [(c + "_txt", c + "_j") for c in JSON_COLUMNS if c != "signals"])
    # 3. Expanded signals: one row per (row, key); JSON text values parsed; category dicts flattened.
    # Keys and values as parallel lists (an array, from the literal fallback, is keyed by index):
    # scalar JSON functions are far cheaper per row than a lateral json_each.
    is_arr = "json_type(sig_j) = 'ARRAY'"
    keys = (
        f"CASE WHEN {is_arr} THEN list_transform(range(json_array_length(sig_j)::BIGINT), i -> i::VARCHAR) "
        "ELSE json_keys(sig_j) END"
    )
    values = f"CASE WHEN {is_arr} THEN json_extract(sig_j, '$[*]') ELSE json_extract(sig_j, '$.*') END"
    str_json = _as_json("v0 ->> '$'")
    cur.execute(
        f"""CREATE TEMP TABLE {q_e} AS
        WITH e1 AS (
            SELECT _rid, dataset_id, metric_name, k, ord, v, jt,
                   CASE WHEN jt = 'OBJECT' THEN {_IS_CATEGORY_SQL} ELSE false END AS is_cat FROM (
                SELECT _rid, dataset_id, metric_name, k, ord, coalesce(pv, v0) AS v,
                       CASE WHEN pv IS NULL THEN t0 ELSE json_type(pv) END AS jt FROM (
                    SELECT *, CASE WHEN t0 = 'VARCHAR' AND regexp_matches(CAST(v0 AS VARCHAR), '^"\\s*[\\[{{]')
                                   THEN {str_json} END AS pv FROM (
                        SELECT *, json_type(v0) AS t0 FROM (
                            SELECT _rid, dataset_id, metric_name, unnest(ks) AS k,
                                   unnest(range(1, len(ks) + 1)) AS ord, unnest(vs) AS v0
                            FROM (SELECT _rid, dataset_id, metric_name, {keys} AS ks, {values} AS vs FROM {q_rows}
                                  WHERE sig_j IS NOT NULL AND coalesce(metric_name, '') <> '')))
                )
            )
        )
        SELECT dataset_id, metric_name, k, v, jt,
               (_rid::HUGEINT * 4294967296 + ord) * 4294967296 + sub AS pos FROM (
            SELECT _rid, dataset_id, metric_name, k, ord, 0 AS sub, v, jt FROM e1 WHERE NOT is_cat
            UNION ALL
            SELECT _rid, dataset_id, metric_name, k, ord, sub, v, json_type(v) AS jt FROM (
            SELECT _rid, dataset_id, metric_name, item ->> 'name' AS k, ord, sub,
                   CASE WHEN json_exists(item, '$.value') THEN item -> 'value' ELSE item -> 'score' END AS v
            FROM (
                SELECT _rid, dataset_id, metric_name, ord,
                       unnest(items) AS item, unnest(range(1, len(items) + 1)) AS sub
                FROM (SELECT *, flatten(list_transform(json_extract(v, '$.*'), cv -> json_extract(cv, '$[*]')))
                      AS items FROM e1 WHERE is_cat)
            ))
        ) WHERE k IS NOT NULL"""
    )
    schema, common = _metric_schema(cur, q_rows, q_e, cols, visible)
    kept = list(schema["metrics"])
    n_cases = _cases_table(cur, q_base, q_e, cases_table, cols, kept, common, schema, only_kept=bool(visible))
    columns = [c["name"] for c in DuckDBStore.describe_sync(cur, cases_table)]
    return SignalsBuild(metric_schema=schema, case_count=n_cases, columns=columns)


def _metric_schema(
    cur: duckdb.DuckDBPyConnection, q_rows: str, q_e: str, cols: Mapping[str, str], visible: list[str]
) -> tuple[dict[str, Any], list[str]]:
    metrics = cur.execute(
        f"""SELECT metric_name, coalesce(arg_min({{'c': cat}}, _rid).c, 'classification') FROM {q_rows}
            WHERE coalesce(metric_name, '') <> '' GROUP BY metric_name ORDER BY metric_name"""
    ).fetchall()
    # One scan of the expanded signals: per (metric, key, JSON type) counts, first position and
    # distinct string values; majority type, value lists and common keys come from that small result.
    keys = cur.execute(
        f"""WITH g AS (
                SELECT metric_name, k, {_TYPE_SQL} AS t, count(*) AS n, min(pos) AS first_pos,
                       list(DISTINCT v ->> '$') FILTER (WHERE jt = 'VARCHAR') AS vs
                FROM {q_e} GROUP BY metric_name, k, jt),
            tcount AS (SELECT metric_name, k, t, sum(n) AS n, min(first_pos) AS first_pos FROM g
                       WHERE t IS NOT NULL GROUP BY ALL),
            majority AS (SELECT metric_name, k, arg_max(t, (n, -first_pos)) AS t FROM tcount GROUP BY ALL),
            vals AS (SELECT metric_name, k,
                            list_sort(list_filter(vs, x -> trim(x, {_BLANK}) <> ''))[:{MAX_SCHEMA_VALUES}] AS vs
                     FROM g WHERE t = 'string'),
            firsts AS (SELECT metric_name, k, min(first_pos) AS p FROM g GROUP BY ALL)
        SELECT f.metric_name, f.k, coalesce(m.t, 'unknown'), vals.vs, f.p FROM firsts f
        LEFT JOIN majority m USING (metric_name, k) LEFT JOIN vals USING (metric_name, k)
        ORDER BY f.p"""
    ).fetchall()
    common: list[str] = []
    if len(metrics) >= 2:
        key_metrics: dict[str, int] = {}
        for _, k, *_rest in keys:  # ordered by first position, so dict order = first occurrence
            key_metrics[k] = key_metrics.get(k, 0) + 1
        common = [k for k, n in key_metrics.items() if n > len(metrics) / 2]
    out: dict[str, Any] = {}
    for name, cat in metrics:
        if visible and name not in visible:
            continue
        out[name] = {"category": cat or "classification", "signals": [], "signal_types": {}, "values": {}}
    skip = set(common)
    for metric, k, typ, vs, _ in keys:
        spec = out.get(metric)
        if spec is None or k in skip:
            continue
        spec["signals"].append(k)
        spec["signal_types"][k] = typ
        if typ == "string" and vs:
            spec["values"][k] = vs
    schema = {
        "metrics": out,
        "source_fields": [f for f in SOURCE_FIELDS if f in cols],
        "has_timestamp": "timestamp" in cols,
    }
    return schema, common


def _case_column_names(
    taken: set[str], promoted: list[str], signal_cols: list[tuple[str, str]], schema: dict[str, Any]
) -> dict[tuple[str, str], str]:
    """Column name of each promoted key (``('', key)``) and signal (``(metric, key)``), unique ignoring case.

    DuckDB's names are case-insensitive, so ``m__Mood`` and ``m__mood`` (or ``a__b`` + ``c`` and
    ``a`` + ``b__c``) would clash; the later one is numbered (``m__mood_2``) and the schema's signal
    is renamed the same way (``mood_2``), so ``<metric>__<signal>`` still names its column.
    """
    used = {t.lower() for t in taken}
    out: dict[tuple[str, str], str] = {}
    for key in [("", k) for k in promoted] + signal_cols:
        m, k = key
        raw = f"{m}__{k}" if m else k
        base = raw.replace("\x00", "\ufffd")  # a NUL in a JSON key cannot be part of a column name
        name, n = base, 2
        while name.lower() in used:
            name, n = f"{base}_{n}", n + 1
        used.add(name.lower())
        out[key] = name
        if m and name != raw:
            _rename_signal(schema["metrics"][m], k, name[len(m) + 2 :])
    return out


def _rename_signal(spec: dict[str, Any], old: str, new: str) -> None:
    spec["signals"] = [new if s == old else s for s in spec["signals"]]
    for field in ("signal_types", "values"):
        if old in spec.get(field, {}):
            spec[field] = {(new if k == old else k): v for k, v in spec[field].items()}


# Above this many pivoted columns, one FILTER aggregate per column makes DuckDB's planner quadratic
# (1,000 signal keys: 13 s to build two cases); the values are then gathered into one MAP per case.
WIDE_PIVOT_COLUMNS = 64


def _wide_pivot_sql(src: str, n_promoted: int, n_signals: int) -> str:
    """The pivot of :func:`_cases_table` as (key id → value) maps: promoted keys as −id, signals as +id.

    Same values as the per-column aggregates: a promoted key's first non-null value, a signal's last
    value (row order ``pos``); a plan whose size grows linearly with the number of columns.
    """
    per_key = """
        SELECT dataset_id, -cc AS id, arg_min(val, pos) FILTER (WHERE jt <> 'NULL') AS v FROM src
        WHERE cc IS NOT NULL GROUP BY dataset_id, cc
        UNION ALL
        SELECT dataset_id, sc AS id, arg_max(val, pos) AS v FROM src WHERE sc IS NOT NULL GROUP BY dataset_id, sc"""
    cols = [f"mp[{-i}] AS _c{i}" for i in range(1, n_promoted + 1)]
    cols += [f"mp[{i}] AS _s{i}" for i in range(1, n_signals + 1)]
    return f"""WITH src AS ({src}) SELECT dataset_id, {", ".join(cols)} FROM (
        SELECT dataset_id, map_from_entries(list({{'k': id, 'v': v}})) AS mp FROM ({per_key}) GROUP BY dataset_id)"""


def _cases_table(
    cur: duckdb.DuckDBPyConnection,
    q_base: str,
    q_e: str,
    cases_table: str,
    cols: Mapping[str, str],
    kept: list[str],
    common: list[str],
    schema: dict[str, Any],
    *,
    only_kept: bool = False,
) -> int:
    present_sources = [f for f in SOURCE_FIELDS if f in cols]
    proj: list[str] = ['b.dataset_id AS "Case_ID"']
    proj += [f"b.{quote_ident(f + '_txt')} AS {quote_ident(f)}" for f in present_sources]
    agent_fallback = "b.source_name_txt" if "source_name" in cols else "NULL::VARCHAR"
    first_content = "b.first_content"
    # "New <word> case: <label>" (a word in any script, as Python's \w); tabs and CR are blank like spaces
    blank = _BLANK
    label = f"trim(regexp_extract({first_content}, 'New [\\pL\\pN_]+ case:[ \\t]*([^\\r\\n]*)', 1), {blank})"
    proj += [
        "CASE WHEN json_type(b.additional_input_j) = 'OBJECT' THEN b.additional_input_j ->> 'message_url' END "
        'AS "Slack_URL"',
        "CASE WHEN json_type(b.additional_input_j) = 'OBJECT' THEN b.additional_input_j ->> 'sender' "
        f'ELSE {agent_fallback} END AS "Agent_Name"',
        "CAST(b.additional_input_j AS VARCHAR) AS additional_input",
        f"""CASE WHEN coalesce({label}, '') <> '' THEN {label}
            ELSE coalesce(left(trim(list_filter(string_split({first_content}, chr(10)),
                                                x -> trim(x, {blank}) <> '')[1], {blank}), 80), 'Unknown')
            END AS Business""",
        "coalesce(b.msgs, '[]'::JSON) AS Full_Conversation",
        """CASE WHEN b.conversation_stats_j IS NULL OR json_type(b.conversation_stats_j) <> 'OBJECT' THEN 0
            ELSE coalesce(TRY_CAST(b.conversation_stats_j ->> 'turn_count' AS BIGINT),
                 coalesce(TRY_CAST(b.conversation_stats_j ->> 'user_message_count' AS BIGINT), 0)
                 + coalesce(TRY_CAST(b.conversation_stats_j ->> 'ai_message_count' AS BIGINT), 0)) END
            AS Message_Count""",
        "coalesce(b.ts_txt, '') AS \"Timestamp\"",
    ]
    for fld in TEXT_JSON_FIELDS:
        if fld in cols:
            j, t = quote_ident(fld + "_j"), quote_ident(fld + "_txt")
            proj.append(f"coalesce(CAST(b.{j} AS VARCHAR), b.{t}) AS {quote_ident(fld)}")
    fields = [
        "Case_ID",
        "Slack_URL",
        "Agent_Name",
        "additional_input",
        "Business",
        "Full_Conversation",
        "Message_Count",
        "Timestamp",
        *present_sources,
        *[f for f in TEXT_JSON_FIELDS if f in cols],
    ]
    taken = {f.lower() for f in fields}
    # A common key never replaces a case field of its exact name (§7.4); one differing only in case
    # (``timestamp`` next to ``Timestamp``) is kept under a numbered name (DuckDB's names ignore case).
    promoted = [k for k in common if k not in fields]
    signal_cols = [(m, k) for m in kept for k in schema["metrics"][m]["signals"]]
    names = _case_column_names(taken, promoted, signal_cols, schema)
    # Object/array values are stored as JSON strings of their text.
    value = "CASE WHEN jt IN ('OBJECT', 'ARRAY') THEN to_json(CAST(v AS VARCHAR)) ELSE v END"
    aggs: list[str] = []
    params: list[Any] = []
    # Column ids come from joins with small (key → id) tables, so each FILTER is an integer compare.
    joins: list[str] = []
    if promoted:
        joins.append(f"LEFT JOIN (VALUES {', '.join('(?, ?)' for _ in promoted)}) c(k, cc) USING (k)")
        params += [x for i, k in enumerate(promoted, start=1) for x in (k, i)]
    for i, k in enumerate(promoted, start=1):
        aggs.append(f"arg_min(val, pos) FILTER (WHERE cc = {i} AND jt <> 'NULL') AS _c{i}")
        proj.append(f"p._c{i} AS {quote_ident(names[('', k)])}")
    if signal_cols:
        joins.append(
            f"LEFT JOIN (VALUES {', '.join('(?, ?, ?)' for _ in signal_cols)}) s(metric_name, k, sc) "
            "USING (metric_name, k)"
        )
        params += [x for i, (m, k) in enumerate(signal_cols, start=1) for x in (m, k, i)]
    for i, (m, k) in enumerate(signal_cols, start=1):
        aggs.append(f"arg_max(val, pos) FILTER (WHERE sc = {i}) AS _s{i}")
        proj.append(f"p._s{i} AS {quote_ident(names[(m, k)])}")
    cc = "cc" if promoted else "NULL"
    sc = "sc" if signal_cols else "NULL"
    src = f"SELECT dataset_id, {value} AS val, jt, pos, {cc} AS cc, {sc} AS sc FROM {q_e} {' '.join(joins)}"
    if only_kept:
        # Rows of metrics outside visible_metrics are skipped (§7.4): they promote no common key either.
        src += " WHERE list_contains(?::VARCHAR[], metric_name)"
        params.append(kept)
    if len(aggs) <= WIDE_PIVOT_COLUMNS:
        pivot = f"""SELECT dataset_id, {", ".join(aggs) or "NULL AS _none"} FROM ({src})
            WHERE cc IS NOT NULL OR sc IS NOT NULL GROUP BY dataset_id"""
    else:
        pivot = _wide_pivot_sql(src, len(promoted), len(signal_cols))
    sql = f"""
        CREATE OR REPLACE TABLE {quote_ident(cases_table)} AS
        WITH b1 AS (SELECT *, json_extract(conversation_j, ['$.messages', '$.messages[0].content']) AS x
                    FROM {q_base}),
        b AS (SELECT * EXCLUDE (x),
                     CASE WHEN starts_with(ltrim(CAST(x[1] AS VARCHAR)), '[') THEN x[1] END AS msgs,
                     CASE WHEN starts_with(ltrim(CAST(x[1] AS VARCHAR)), '[') THEN x[2] ->> '$' END AS first_content
              FROM b1),
        p AS ({pivot})
        SELECT {", ".join(proj)}
        FROM b LEFT JOIN p USING (dataset_id)
        ORDER BY b.did_txt, b._first
    """
    cur.execute(sql, params)
    row = cur.execute(f"SELECT count(*) FROM {quote_ident(cases_table)}").fetchone()
    return int(row[0]) if row else 0
