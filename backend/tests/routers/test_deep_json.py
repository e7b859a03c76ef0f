"""Deeply nested JSON in request input is a client error or plain text, never a 500 (RecursionError)."""

from __future__ import annotations

import base64

import httpx

# Deeper than Python's recursion limit: json.loads raises RecursionError, not ValueError.
DEEP = "[" * 5000 + "]" * 5000


async def test_deep_retrieved_content_cell_is_kept_as_text(client: httpx.AsyncClient) -> None:
    csv = f"dataset_id,query,metric_name,metric_score,retrieved_content\n1,q,m,0.5,{DEEP}\n"
    r = await client.post("/api/data/upload", files={"file": ("deep.csv", csv.encode(), "text/csv")})
    assert r.status_code == 200, r.text
    assert r.json()["row_count"] == 1


async def test_deep_connect_body_is_422(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/database/connect", content=DEEP, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text


async def test_deep_metrics_text_is_400(client: httpx.AsyncClient) -> None:
    rows = [{"dataset_id": "a", "metric_name": "m", "metric_score": 0.5}]
    r = await client.post("/api/analytics/summary", json={"data": rows, "metrics": DEEP})
    assert r.status_code == 400, r.text
    assert "nested too deeply" in r.json()["detail"]


async def test_deep_cursor_is_400(client: httpx.AsyncClient) -> None:
    csv = "dataset_id,query,metric_name,metric_score\n1,q,m,0.5\n"
    up = await client.post("/api/data/upload", files={"file": ("c.csv", csv.encode(), "text/csv")})
    assert up.status_code == 200, up.text
    cursor = base64.urlsafe_b64encode(("[" * 1500 + "]" * 1500).encode()).decode()
    r = await client.get("/api/store/data/eval", params={"dataset_id": up.json()["dataset_id"], "cursor": cursor})
    assert r.status_code == 400, r.text
