"""The monitoring dataset a request reads (spec §9.1): its filters, its table and one WHERE clause.

A dataset resolves to the given ``dataset_id`` or the latest monitoring dataset (an upload, an
example or the synced ``monitoring_data`` view). Filters on absent columns are ignored; identifiers
come only from allow-lists or the dataset's own columns and pass ``quote_ident``; every value is a
bound parameter.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from app.config.db_configs import MonitoringDBConfig
from app.errors import Invalid, NotFound, Unavailable
from app.services.duckdb_store import (
    INTEGER_TYPES,
    DatasetInfo,
    DuckDBStore,
    quote_ident,
    utc_timestamp_sql,
)
from app.services.sql_stats import (
    finite_double,
)
from app.services.sync_status import STATUS_PREFIX as SYNC_STATUS_PREFIX
from app.services.table_metadata import category_sql, latency_number_sql

KIND = "monitoring"
GROUP_BY_ALLOWED = (
    "environment",
    "source_name",
    "source_component",
    "source_type",
    "metric_name",
    "evaluation_name",
    "model_name",
)
EQUALITY_FILTERS = ("environment", "source_name", "source_component", "source_type")
LATENCY_CANDIDATES = ("latency", "latency_ms", "response_time", "duration", "duration_ms")
NUMERIC_TYPES = (*sorted(INTEGER_TYPES), "FLOAT", "DOUBLE", "REAL")


@dataclass
class MonitoringFilters:
    """The common filter set accepted by every monitoring analytics endpoint."""

    dataset_id: str | None = None
    environment: str | None = None
    source_name: str | None = None
    source_component: str | None = None
    source_type: str | None = None
    time_start: str | None = None
    time_end: str | None = None
    metric_category: str | None = None
    metric_name: str | None = None
    metrics: str | None = None

    def metric_list(self) -> list[str]:
        """The ``metrics`` CSV as a list of trimmed, non-empty names."""
        return [m.strip() for m in (self.metrics or "").split(",") if m.strip()]

    def has_row_filters(self) -> bool:
        """True when anything beyond ``metric_category`` restricts rows."""
        return any(
            v
            for v in (
                self.environment,
                self.source_name,
                self.source_component,
                self.source_type,
                self.time_start,
                self.time_end,
                self.metric_name,
                self.metrics,
            )
        )


@dataclass
class MonitoringTable:
    """A resolved monitoring dataset with its column list and derived SQL expressions."""

    info: DatasetInfo
    types: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, info: DatasetInfo) -> MonitoringTable:
        """Wrap a registry entry."""
        return cls(info, {c["name"]: c["type"].upper() for c in info.columns})

    @property
    def sql(self) -> str:
        """The quoted table name."""
        return quote_ident(self.info.table_name)

    def has(self, name: str) -> bool:
        """True when the column exists."""
        return name in self.types

    @property
    def is_long(self) -> bool:
        """Long format: one row per (record, metric)."""
        return self.has("metric_name") and self.has("metric_score")

    @property
    def score_columns(self) -> list[str]:
        """Wide-format metric columns: every ``*_score`` column except metric_score."""
        return [c for c in self.types if c.endswith("_score") and c != "metric_score"]

    @property
    def latency_column(self) -> str | None:
        """First present latency column (§9.1)."""
        return next((c for c in LATENCY_CANDIDATES if self.has(c)), None)

    def num(self, name: str) -> str:
        """A column as DOUBLE; text cells that do not parse and NaN/±inf become NULL (DB-30).

        An INTERVAL (a latency synced from PostgreSQL) is read in milliseconds.
        """
        typ = self.types.get(name, "")
        if typ.startswith("INTERVAL"):
            return latency_number_sql(quote_ident(name), typ)
        return finite_double(quote_ident(name), try_cast=not typ.startswith((*NUMERIC_TYPES, "DECIMAL")))

    def raw_num(self, name: str) -> str:
        """A column as DOUBLE like :meth:`num`, but non-finite values kept (callers filter them once)."""
        typ = self.types.get(name, "")
        if typ.startswith("INTERVAL"):
            return latency_number_sql(quote_ident(name), typ)
        cast = "CAST" if typ.startswith((*NUMERIC_TYPES, "DECIMAL")) else "TRY_CAST"
        return f"{cast}({quote_ident(name)} AS DOUBLE)"

    def text(self, name: str) -> str:
        """A column as VARCHAR."""
        col = quote_ident(name)
        return col if self.types.get(name) == "VARCHAR" else f"CAST({col} AS VARCHAR)"

    def category(self) -> str:
        """``metric_category`` trimmed, upper-cased, blank → NULL: stored so by uploads and imports
        (plain column, pushed into the scan), normalised on read for synced views."""
        col = quote_ident("metric_category")
        return col if self.info.extra.get("category_normalised") else category_sql(col)

    @property
    def ts(self) -> str | None:
        """The timestamp column as a plain UTC TIMESTAMP expression (None when absent)."""
        if not self.has("timestamp"):
            return None
        return utc_timestamp_sql(quote_ident("timestamp"), self.types["timestamp"])


@dataclass
class Where:
    """An AND-ed list of SQL conditions with their bound parameters."""

    clauses: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)

    def add(self, clause: str, *params: Any) -> None:
        """Append one condition."""
        self.clauses.append(clause)
        self.params.extend(params)

    def sql(self) -> str:
        """``WHERE …`` (or empty)."""
        return ("WHERE " + " AND ".join(self.clauses)) if self.clauses else ""


def parse_time_bound(value: str | None, name: str) -> dt.datetime | None:
    """Parse an ISO timestamp filter to naive UTC; invalid text → 400."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(f"Invalid {name}: expected an ISO-8601 timestamp") from None
    if parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
        except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before year 1 in UTC
            raise Invalid(f"Invalid {name}: {value.strip()[:40]!r} is outside the years 1 to 9999 in UTC") from None
    return parsed


def build_where(
    t: MonitoringTable,
    f: MonitoringFilters,
    config: MonitoringDBConfig,
    *,
    category: str | None = None,
    default_category: str | None = None,
    apply_metric_name: bool = True,
) -> Where:
    """The common filters as one parameterised WHERE; filters on absent columns are ignored."""
    w = Where()
    for name in EQUALITY_FILTERS:
        value = getattr(f, name)
        if value is not None and value != "" and t.has(name):
            w.add(f"{t.text(name)} = ?", value)
    start = parse_time_bound(f.time_start, "time_start")
    end = parse_time_bound(f.time_end, "time_end")
    ts = t.ts
    if ts is not None:
        if start is not None:
            w.add(f"{ts} >= ?", start)
        if end is not None:
            w.add(f"{ts} <= ?", end)
    effective = (category or f.metric_category or default_category or "").strip().upper()
    if effective:
        if t.has("metric_category"):
            cat = t.category()
            if effective == "SCORE":
                w.add(f"({cat} = 'SCORE' OR {cat} IS NULL)")
            else:
                w.add(f"{cat} = ?", effective)
        elif effective != "SCORE":
            w.add("FALSE")
    if apply_metric_name:
        add_metric_name_filters(w, t, f, config)
    return w


def add_metric_name_filters(w: Where, t: MonitoringTable, f: MonitoringFilters, config: MonitoringDBConfig) -> None:
    """metric_name equality (else the visible_metrics list) and the ``metrics`` list, long format only."""
    if not t.has("metric_name"):
        return
    if f.metric_name:
        w.add(f"{t.text('metric_name')} = ?", f.metric_name)
    elif config.visible_metrics:
        w.add(f"list_contains(?, {t.text('metric_name')})", list(config.visible_metrics))
    names = f.metric_list()
    if names and t.is_long:
        w.add(f"list_contains(?, {t.text('metric_name')})", names)


def check_group_by(t: MonitoringTable, group_by: str | None) -> str | None:
    """Allow-list check (400 outside it); a group_by column absent from the table is ignored."""
    if group_by is None or group_by == "":
        return None
    if group_by not in GROUP_BY_ALLOWED:
        raise Invalid(f"Invalid group_by: {group_by}. Allowed: {', '.join(GROUP_BY_ALLOWED)}")
    return group_by if t.has(group_by) else None


async def resolve_monitoring_table(store: DuckDBStore, dataset_id: str | None) -> MonitoringTable:
    """The chosen (or latest) monitoring dataset; 503 while the first monitoring sync is running."""
    try:
        return MonitoringTable.of(await store.resolve_dataset(KIND, dataset_id))
    except NotFound:
        status = await store.kv_get(SYNC_STATUS_PREFIX + "monitoring_data")
        if not dataset_id and isinstance(status, dict) and status.get("state") == "syncing":
            raise Unavailable("Monitoring data is syncing. Try again shortly.") from None
        raise


def wide_metrics(t: MonitoringTable, f: MonitoringFilters) -> list[str]:
    """The wide-format ``*_score`` columns, narrowed to the ``metrics`` filter when one is given."""
    cols = t.score_columns
    wanted = f.metric_list()
    if wanted:
        cols = [c for c in cols if c in wanted]
    return cols


def unpivot_source(t: MonitoringTable, cols: list[str], extra: list[tuple[str, str]], where: Where) -> str:
    """A derived table (metric, s, extras…) over wide score columns, NULL and non-finite scores dropped.

    Columns are unpivoted as plain DOUBLE casts and the finite check runs once on ``s``: a CASE per
    column makes DuckDB's planner quadratic in the column count (5,000 score columns: /trends 51 s).
    """
    select = ", ".join(
        [f"{expr} AS {quote_ident(alias)}" for alias, expr in extra]
        + [f"{t.raw_num(c)} AS {quote_ident(c)}" for c in cols]
    )
    on = ", ".join(quote_ident(c) for c in cols)
    unpivoted = f"(UNPIVOT (SELECT {select} FROM {t.sql} {where.sql()}) ON {on} INTO NAME metric VALUE s)"
    return f"(SELECT * FROM {unpivoted} WHERE isfinite(s))"
