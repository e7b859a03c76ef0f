"""Example datasets loaded into an empty store at startup (``AXIS_LOAD_EXAMPLES``)."""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Callable
from typing import Any

import numpy as np

from app.config import Settings
from app.services.duckdb_store import DuckDBStore
from app.services.example_loader import LOAD_EXAMPLES_TASK, load_examples_if_empty
from tests.conftest import PgSchema
from tests.sync_helpers import configure, create_source, joined_count


def csv_rows(settings: Settings, name: str) -> list[dict[str, str]]:
    with (settings.axis_sample_dir / name).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


async def test_loads_every_kind_once(settings: Settings, store: DuckDBStore) -> None:
    ids = await load_examples_if_empty(store, settings)
    assert len(ids) == 6
    datasets = await store.list_datasets()
    by_kind: dict[str, list[str]] = {}
    for ds in datasets:
        by_kind.setdefault(ds.kind, []).append(ds.source)
    assert sorted(by_kind["eval"]) == ["example:annotation", "example:comparison", "example:model"]
    assert sorted(by_kind["monitoring"]) == ["example:monitoring", "example:monitoring_long"]
    assert by_kind["human_signals"] == ["example:hitl"]
    latest_eval = await store.latest_dataset("eval")
    assert latest_eval is not None and latest_eval.source == "example:comparison"
    assert latest_eval.row_count == len(csv_rows(settings, "example_model_comparison.csv"))
    # A second call leaves a non-empty store alone.
    assert await load_examples_if_empty(store, settings) == []
    assert len(await store.list_datasets()) == 6


async def test_app_with_examples_serves_analytics(make_settings: Callable[..., Settings], make_client: Any) -> None:
    settings = make_settings(axis_load_examples=True)
    wrapper = make_client(settings)
    async with wrapper as client:
        task = wrapper.app.state.tasks.get(LOAD_EXAMPLES_TASK)
        assert task is not None
        await asyncio.wait_for(asyncio.shield(task), timeout=60)
        listed = (await client.get("/api/store/datasets")).json()["datasets"]
        assert len(listed) == 6
        summary = (await client.get("/api/monitoring/analytics/summary")).json()
        rows = csv_rows(settings, "monitoring_long_sample.csv")
        records = {r["dataset_id"] for r in rows}
        scores = [float(r["metric_score"]) for r in rows if r["metric_category"].upper() == "SCORE"]
        latency = {r["dataset_id"]: float(r["latency"]) for r in rows if r["metric_category"].upper() == "SCORE"}
        kpis = summary["kpis"]
        assert kpis["total_records"] == len(scores)
        assert abs(kpis["avg_score"] - sum(scores) / len(scores)) < 1e-9
        assert abs(kpis["pass_rate"] - 100.0 * sum(s >= 0.5 for s in scores) / len(scores)) < 1e-9
        assert abs(kpis["p50_latency"] - float(np.percentile(list(latency.values()), 50))) < 1e-9
        assert len(latency) == len(records)
        cases = (await client.get("/api/human-signals/cases")).json()
        assert cases["row_count"] == 3


async def test_no_examples_of_a_kind_a_startup_sync_loads(
    make_settings: Callable[..., Settings], make_client: Any, pg: PgSchema
) -> None:
    """The synced monitoring data stays the default: no monitoring example lands after it."""
    create_source(pg, n_cases=5, metrics=2)
    settings = configure(make_settings, pg, columns={"metric": "metric_name", "score": "metric_score"}, auto_load=True)
    settings = make_settings(axis_load_examples=True)  # the same custom dir: the yaml above applies
    wrapper = make_client(settings)
    async with wrapper as client:
        task = wrapper.app.state.tasks.get(LOAD_EXAMPLES_TASK)
        assert task is not None
        await asyncio.wait_for(asyncio.shield(task), timeout=60)
        for _ in range(600):
            status = (await client.get("/api/store/status")).json()
            if status["datasets"]["monitoring_data"]["state"] == "ready" and not status["running"]:
                break
            await asyncio.sleep(0.05)
        listed = (await client.get("/api/store/datasets")).json()["datasets"]
        by_kind: dict[str, list[str]] = {}
        for ds in listed:
            by_kind.setdefault(ds["kind"], []).append(ds["source"])
        assert by_kind["monitoring"] == ["sync"]
        assert sorted(by_kind["eval"]) == ["example:annotation", "example:comparison", "example:model"]
        assert by_kind["human_signals"] == ["example:hitl"]
        summary = (await client.get("/api/monitoring/analytics/summary")).json()
        assert summary["dataset_id"] == "sync_monitoring" and summary["kpis"]["total_records"] == joined_count(pg)
