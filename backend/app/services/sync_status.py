"""Persisted sync status records (§10.10): their keys, the API tables that have one, the blank record."""

from __future__ import annotations

from typing import Any

STATUS_PREFIX = "sync_status:"
STATUS_TABLES = ("monitoring_data", "human_signals_raw", "human_signals_cases", "eval_data", "kpi_data")

# Status fields holding an instant (ISO-8601 UTC text with ``Z``; statuses written before the offset
# was stored hold naive UTC text and are read back with the ``Z``).
STATUS_TIME_FIELDS = ("last_sync", "last_incremental", "failed_at")


def blank_status() -> dict[str, Any]:
    """The status of a dataset that never synced (§10.10)."""
    return {
        "state": "not_synced",
        "rows": 0,
        "last_sync": None,
        "error": None,
        "truncated": False,
        "sync_type": None,
        "last_incremental": None,
        "incremental_rows": 0,
        "sync_id": None,
        "reader": None,
    }
