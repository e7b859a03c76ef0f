"""``/api/analytics`` over HTTP: upload-then-analyse, metrics parameter forms (DB-15), body forms, errors."""

from __future__ import annotations

import statistics
from typing import Any

import httpx
import numpy as np
import pytest

from tests.services.test_eval_analytics import make_long_rows, rows_to_csv, to_wide, values


async def _load(client: httpx.AsyncClient, rows: list[dict[str, Any]]) -> str:
    r = await client.post("/api/data/upload", files={"file": ("long.csv", rows_to_csv(rows), "text/csv")})
    assert r.status_code == 200, r.text
    dataset_id: str = r.json()["dataset_id"]
    return dataset_id


async def test_upload_then_analyse_matches_inline(client: httpx.AsyncClient) -> None:
    rows = make_long_rows(45, seed=3)
    await _load(client, rows)
    stored = (await client.post("/api/analytics/summary")).json()
    inline = (await client.post("/api/analytics/summary", json=rows)).json()
    wide = (await client.post("/api/analytics/summary", json={"data": to_wide(rows)})).json()
    assert stored["total_records"] == inline["total_records"] == wide["total_records"] == 45
    assert [s["metric_name"] for s in stored["summary"]] == [s["metric_name"] for s in inline["summary"]]
    by_name = {s["metric_name"]: s for s in wide["summary"]}
    for a, b in zip(stored["summary"], inline["summary"], strict=True):
        c = by_name[a["metric_name"]]
        for key in ("mean", "std", "min", "max", "count", "passing_rate"):
            assert a[key] == pytest.approx(b[key]) and a[key] == pytest.approx(c[key])
    m_b = values(rows, "m_b")
    got = {s["metric_name"]: s for s in stored["summary"]}["m_b"]
    assert got["mean"] == pytest.approx(statistics.mean(m_b)) and got["std"] == pytest.approx(statistics.stdev(m_b))

    r = await client.post("/api/analytics/distribution", params={"metric": "m_a", "bins": 6})
    counts, edges = np.histogram(values(rows, "m_a"), bins=6)
    assert r.json()["histogram"] == {"counts": counts.tolist(), "bin_edges": pytest.approx(edges.tolist())}


@pytest.mark.parametrize("params", [
    [("metrics", "m_a"), ("metrics", "m_b"), ("metrics", "m_c")],
    [("metrics", "m_a,m_b,m_c")],
    [("metrics", '["m_a", "m_b", "m_c"]')],
])
async def test_metrics_query_forms(client: httpx.AsyncClient, params: list[tuple[str, str]]) -> None:
    await _load(client, make_long_rows(30))
    r = await client.post("/api/analytics/correlation", params=params)
    assert r.status_code == 200, r.text
    assert r.json()["metrics"] == ["m_a", "m_b", "m_c"]
    r = await client.post("/api/analytics/radar", params=params)
    assert r.json()["metrics"] == ["m_a", "m_b", "m_c"] and r.json()["traces"][0]["name"] == "Overall"
    r = await client.post("/api/analytics/comparison", params=[*params, ("group_by", "evaluation_name")])
    assert r.json()["metrics"] == ["m_a", "m_b", "m_c"] and r.json()["groups"] == ["g1", "g2", "g3"]


async def test_metrics_in_body_with_raw_rows(client: httpx.AsyncClient) -> None:
    rows = to_wide(make_long_rows(30))
    r = await client.post("/api/analytics/correlation", json={"data": rows, "metrics": ["m_a", "flat"]})
    body = r.json()
    assert body["metrics"] == ["m_a", "flat"]
    assert body["correlation"]["m_a"]["flat"] is None  # zero variance → null, not NaN / 500
    assert body["correlation"]["m_a"]["m_a"] == pytest.approx(1.0)
    r = await client.post("/api/analytics/radar", params={"group_by": "evaluation_name"},
                          json={"data": rows, "metrics": "m_a,m_b,m_c"})
    assert [t["name"] for t in r.json()["traces"]] == ["g1", "g2", "g3"]


async def test_scatter_and_dataset_id(client: httpx.AsyncClient) -> None:
    first = await _load(client, make_long_rows(20, seed=1))
    await _load(client, make_long_rows(10, seed=2))
    r = await client.post("/api/analytics/scatter", params={"x_metric": "m_a", "y_metric": "m_c",
                                                            "color_by": "evaluation_name"})
    body = r.json()
    expected = [r_ for r_ in to_wide(make_long_rows(10, seed=2)) if r_["m_c"] is not None]
    assert body["total_points"] == len(expected) == len(body["x"]) == len(body["ids"]) == len(body["color"])
    assert body["color_by"] == "evaluation_name" and body["truncated"] is False
    r = await client.post("/api/analytics/scatter", params={"x_metric": "m_a", "y_metric": "m_c",
                                                            "dataset_id": first})
    assert r.json()["total_points"] == sum(1 for r_ in to_wide(make_long_rows(20, seed=1)) if r_["m_c"] is not None)
    assert "color" not in r.json()


async def test_errors(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/analytics/summary")
    assert r.status_code == 404 and "No eval data loaded" in r.json()["detail"]
    await _load(client, make_long_rows(12))
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("distribution", {"metric": "nope"}, 400, "Metric 'nope' not found"),
        ("comparison", {"group_by": "nope"}, 400, "Column 'nope' not found"),
        ("correlation", {"metrics": "m_a"}, 400, "Need at least 2 metrics for correlation"),
        ("radar", {"metrics": "m_a,m_b"}, 400, "Need at least 3 metrics for radar chart"),
        ("scatter", {"x_metric": "zz", "y_metric": "m_a"}, 400, "X metric 'zz' not found"),
        ("summary", {"dataset_id": "eval_unknown"}, 404, "not found"),
        ("correlation", {"metrics": "[oops"}, 400, "JSON"),
    ]
    for path, params, status, message in cases:
        r = await client.post(f"/api/analytics/{path}", params=params)
        assert r.status_code == status, (path, r.text)
        assert message in r.json()["detail"]
    r = await client.post("/api/analytics/distribution", params={"metric": "m_a", "bins": 0})
    assert r.status_code == 422
    r = await client.post("/api/analytics/distribution", params={"metric": "m_a", "bins": 201})
    assert r.status_code == 422
