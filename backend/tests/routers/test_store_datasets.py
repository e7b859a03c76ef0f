"""``/api/store/datasets``: the kind filter; ``DELETE /datasets/{id}`` removes a dataset and its derived tables."""

from __future__ import annotations

import asyncio
import csv

import httpx

from app.config import Settings
from app.services.duckdb_store import DATASET_KINDS, DuckDBStore
from tests.conftest import register_synced


async def _tables(store: DuckDBStore) -> set[str]:
    res = await store.fetch("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main'")
    return {r[0] for r in res.rows}


async def test_delete_dataset_and_derived_tables(
    settings: Settings, app_client: tuple[object, httpx.AsyncClient]
) -> None:
    app, client = app_client
    store: DuckDBStore = app.state.store  # type: ignore[attr-defined]
    first = (await client.get("/api/monitoring/example/monitoring")).json()["dataset_id"]
    second = (await client.get("/api/monitoring/example/monitoring_long")).json()["dataset_id"]
    hitl = (await client.get("/api/human-signals/example/hitl")).json()["dataset_id"]
    second_info = await store.get_dataset(second)
    hitl_info = await store.get_dataset(hitl)
    derived = {f"{second_info.table_name}__records", str(hitl_info.extra["cases_table"])}
    before = await _tables(store)
    assert {second_info.table_name, hitl_info.table_name} <= before
    assert derived & before  # at least the cases table exists

    res = await client.delete(f"/api/store/datasets/{second}")
    assert res.status_code == 200 and res.json() == {
        "success": True,
        "message": f"Deleted monitoring dataset {second} (300 rows)",
    }
    res = await client.delete(f"/api/store/datasets/{hitl}")
    assert res.json()["message"] == f"Deleted human_signals dataset {hitl} (39 rows)"

    after = await _tables(store)
    assert second_info.table_name not in after and hitl_info.table_name not in after
    assert not (derived & after)
    ids = [d["dataset_id"] for d in (await client.get("/api/store/datasets")).json()["datasets"]]
    assert ids == [first]
    # The previous monitoring dataset (wide, 50 rows) is the latest again and is served.
    with (settings.axis_sample_dir / "monitoring_sample.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    kpis = (await client.get("/api/monitoring/analytics/summary")).json()["kpis"]
    scores = [float(r[c]) for r in rows for c in ("relevance_score", "coherence_score", "accuracy_score")]
    assert kpis["total_records"] == len(scores)
    assert abs(kpis["avg_score"] - sum(scores) / len(scores)) < 1e-9
    assert (await client.get("/api/human-signals/cases")).status_code == 404

    missing = await client.delete(f"/api/store/datasets/{second}")
    assert missing.status_code == 404 and second in missing.json()["detail"]


async def test_concurrent_deletes_of_one_dataset_report_one_deletion(
    app_client: tuple[object, httpx.AsyncClient],
) -> None:
    """Ten DELETEs of one id at once: one "Deleted", nine 404 (all ten answered "Deleted" before)."""
    _, client = app_client
    keep = (await client.get("/api/monitoring/example/monitoring")).json()["dataset_id"]
    gone = (await client.get("/api/monitoring/example/monitoring_long")).json()["dataset_id"]
    answers = await asyncio.gather(*(client.delete(f"/api/store/datasets/{gone}") for _ in range(10)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] + [404] * 9, [r.text for r in answers]
    ok = next(r for r in answers if r.status_code == 200)
    assert ok.json()["message"] == f"Deleted monitoring dataset {gone} (300 rows)"
    assert all(r.json() == {"detail": f"Dataset '{gone}' not found"} for r in answers if r.status_code == 404)
    ids = [d["dataset_id"] for d in (await client.get("/api/store/datasets")).json()["datasets"]]
    assert ids == [keep]


async def test_synced_dataset_cannot_be_deleted(app_client: tuple[object, httpx.AsyncClient]) -> None:
    app, client = app_client
    store: DuckDBStore = app.state.store  # type: ignore[attr-defined]
    await register_synced(store, "monitoring", "monitoring_data")
    res = await client.delete("/api/store/datasets/sync_monitoring")
    assert res.status_code == 400 and "sync" in res.json()["detail"]
    assert [d["dataset_id"] for d in (await client.get("/api/store/datasets")).json()["datasets"]] == [
        "sync_monitoring"
    ]


async def test_datasets_kind_filter_accepts_only_the_registry_kinds(client: httpx.AsyncClient) -> None:
    monitoring = (await client.get("/api/monitoring/example/monitoring")).json()["dataset_id"]
    hitl = (await client.get("/api/human-signals/example/hitl")).json()["dataset_id"]

    async def ids(kind: str) -> list[str]:
        res = await client.get("/api/store/datasets", params={"kind": kind})
        assert res.status_code == 200, res.text
        return [d["dataset_id"] for d in res.json()["datasets"]]

    assert await ids("monitoring") == [monitoring]
    assert await ids("human_signals") == [hitl]
    assert await ids("eval") == []
    bogus = await client.get("/api/store/datasets", params={"kind": "bogus"})
    assert bogus.status_code == 422
    [error] = bogus.json()["detail"]
    assert error["loc"] == ["query", "kind"] and error["input"] == "bogus"
    assert error["msg"] == "Input should be 'eval', 'monitoring' or 'human_signals'"
    # the listed kinds are the registry's own set
    assert {d["kind"] for d in (await client.get("/api/store/datasets")).json()["datasets"]} <= set(DATASET_KINDS)
