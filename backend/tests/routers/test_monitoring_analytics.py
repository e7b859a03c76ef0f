"""``/api/monitoring/analytics`` over HTTP, on the bundled examples."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from app.config import BACKEND_DIR

BASE = "/api/monitoring/analytics"


async def test_no_data_is_404(client: httpx.AsyncClient) -> None:
    res = await client.get(f"{BASE}/summary")
    assert res.status_code == 404


@pytest.mark.parametrize("example", ["monitoring", "monitoring_long"])
async def test_every_endpoint_answers_over_examples(client: httpx.AsyncClient, example: str) -> None:
    loaded = await client.get(f"/api/monitoring/example/{example}")
    assert loaded.status_code == 200, loaded.text
    ds = loaded.json()["dataset_id"]
    long = example == "monitoring_long"
    metrics = "relevance,faithfulness" if long else "relevance_score,accuracy_score"
    calls = {
        "summary": {"metric_category": "SCORE"},
        "trends": {"granularity": "weekly"},
        "metric-breakdown": {"group_by": "source_name"},
        "latency-distribution": {"group_by": "environment", "bins": 10},
        "class-distribution": {"metric": "relevance" if long else "relevance_score", "group_by": "source_name"},
        "correlation": {"metrics": metrics},
        "classification-breakdown": {},
        "classification-trends": {"metric_name": "sentiment"},
        "analysis-insights": {"limit": 5},
    }
    bodies = {}
    for path, params in calls.items():
        res = await client.get(f"{BASE}/{path}", params={**params, "dataset_id": ds})
        assert res.status_code == 200, (path, res.text)
        bodies[path] = res.json()
        assert bodies[path]["success"] is True
    assert bodies["trends"]["data"] and bodies["metric-breakdown"]["metrics"]
    assert bodies["class-distribution"]["data"]
    assert len(bodies["correlation"]["matrix"]) == 2
    if long:
        _check_long_numbers(bodies)
    else:
        assert bodies["summary"]["kpis"]["total_records"] > 0
        assert sum(bodies["latency-distribution"]["histogram"]["counts"]) > 0


def _check_long_numbers(bodies: dict[str, Any]) -> None:
    """The long example's numbers, computed by pandas from the CSV itself."""
    df = pd.read_csv(BACKEND_DIR / "sample_data" / "monitoring_long_sample.csv")
    scores = df[df["metric_category"] == "SCORE"]
    kpis = bodies["summary"]["kpis"]
    assert kpis["total_records"] == len(scores)
    assert kpis["avg_score"] == pytest.approx(scores["metric_score"].astype(float).mean())
    assert kpis["pass_rate"] == pytest.approx(100.0 * (scores["metric_score"].astype(float) >= 0.5).mean())
    per_metric = {m["name"]: m for m in bodies["metric-breakdown"]["metrics"]}
    for name, grp in scores.groupby("metric_name"):
        assert per_metric[name]["count"] == len(grp)
        assert per_metric[name]["avg"] == pytest.approx(grp["metric_score"].astype(float).mean())
    # latency once per record
    assert sum(bodies["latency-distribution"]["histogram"]["counts"]) == df["dataset_id"].nunique()
    wide = scores.pivot_table(index="dataset_id", columns="metric_name", values="metric_score", aggfunc="mean")
    r = float(np.corrcoef(wide["relevance"].astype(float), wide["faithfulness"].astype(float))[0, 1])
    assert bodies["correlation"]["matrix"][0][1] == pytest.approx(r)
    labels = df[df["metric_category"] == "CLASSIFICATION"].groupby("metric_name")["explanation"].value_counts()
    got = {
        (m["metric_name"], c["value"]): c["count"]
        for m in bodies["classification-breakdown"]["metrics"]
        for c in m["categories"]
    }
    assert got == {(str(k[0]), str(k[1])): int(v) for k, v in labels.items()}
    assert bodies["analysis-insights"]["total_count"] == int((df["metric_category"] == "ANALYSIS").sum())
    assert len(bodies["analysis-insights"]["records"]) == 5


async def test_hostile_params_cannot_alter_the_query(client: httpx.AsyncClient) -> None:
    await client.get("/api/monitoring/example/monitoring_long")
    total = (await client.get(f"{BASE}/summary")).json()["kpis"]["total_records"]
    assert total > 0
    for value in ["Atlas' OR '1'='1", "%", 'Atlas"; DROP TABLE datasets; --', "' UNION SELECT 1 --"]:
        res = await client.get(f"{BASE}/summary", params={"source_name": value})
        assert res.status_code == 200 and res.json()["kpis"]["total_records"] == 0
        res = await client.get(f"{BASE}/analysis-insights", params={"metric_name": value})
        assert res.status_code == 200 and res.json()["total_count"] == 0
    for bad in ["query", "source_name; DROP TABLE datasets", "1=1"]:
        res = await client.get(f"{BASE}/metric-breakdown", params={"group_by": bad})
        assert res.status_code == 400 and "Invalid group_by" in res.json()["detail"]
        res = await client.get(f"{BASE}/latency-distribution", params={"group_by": bad})
        assert res.status_code == 400
    assert (await client.get(f"{BASE}/trends", params={"granularity": "yearly"})).status_code == 422
    assert (await client.get(f"{BASE}/latency-distribution", params={"bins": 500})).status_code == 422
    assert (await client.get(f"{BASE}/summary", params={"time_start": "not a time"})).status_code == 400
    # valid ISO text whose UTC instant is outside years 1-9999: 400, not a 500
    for name, bound in (("time_start", "0001-01-01T00:00:00+14:00"), ("time_end", "9999-12-31T23:00:00-05:00")):
        for path in ("summary", "trends"):
            res = await client.get(f"{BASE}/{path}", params={name: bound})
            assert res.status_code == 400 and "outside the years 1 to 9999" in res.json()["detail"], res.text
    assert (await client.get(f"{BASE}/summary")).json()["kpis"]["total_records"] == total


async def test_unknown_long_metric_and_non_finite_threshold_are_4xx(client: httpx.AsyncClient) -> None:
    await client.get("/api/monitoring/example/monitoring_long")
    res = await client.get(f"{BASE}/class-distribution", params={"metric": "nope", "group_by": "source_name"})
    assert res.status_code == 400 and res.json()["detail"].startswith("Missing metric column: nope")
    for bad in ("nan", "inf", "-inf"):
        res = await client.get(f"{BASE}/metric-breakdown", params={"threshold": bad})
        assert res.status_code == 422, (bad, res.text)
    ok = await client.get(f"{BASE}/metric-breakdown", params={"threshold": "0.7"})
    assert ok.status_code == 200
    df = pd.read_csv(BACKEND_DIR / "sample_data" / "monitoring_long_sample.csv")
    scores = df[df["metric_category"] == "SCORE"]
    expected = {
        str(n): 100.0 * float((g["metric_score"].astype(float) >= 0.7).mean()) for n, g in scores.groupby("metric_name")
    }
    assert {m["name"]: m["pass_rate"] for m in ok.json()["metrics"]} == pytest.approx(expected)
