"""Concurrency drill (issue 7): 50 concurrent analytics requests while a sync and an upload run.

Old state: a monitoring dataset synced from PostgreSQL and an uploaded eval CSV. Then the
PostgreSQL source changes, and three things start together on the live app: a full sync of the
monitoring source (its results read sleeps server-side so it overlaps the requests), an upload of
a new eval CSV, and 50 concurrent requests mixed over eval analytics, monitoring analytics and
the store's data/metadata endpoints. Every request must succeed, and every answer must equal
either the old or the new data's answer — both computed independently here (numpy, sets) — never
a mix or a half-loaded table. Afterwards every endpoint answers with the new data.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest

from app.config import Settings
from tests.conftest import PgSchema
from tests.robustness import (
    LiveServer,
    create_split_source,
    monitoring_kpis,
    source_scores,
    split_queries,
    write_db_yaml,
    write_duckdb_yaml,
)

pytestmark = pytest.mark.slow

REQUESTS = 50
OLD_CASES, NEW_CASES = 60, 85


def eval_csv(n_records: int, metrics: list[str], salt: int) -> tuple[bytes, list[tuple[str, str, float]]]:
    """A long-format eval CSV (dataset_id, metric_name, metric_score) and its rows."""
    rows = []
    for i in range(n_records):
        for j, metric in enumerate(metrics):
            rows.append((f"e{i:05d}", metric, round(((i * 31 + j * 17 + salt) % 101) / 100.0, 4)))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["dataset_id", "query", "metric_name", "metric_score"])
    for ds, metric, score in rows:
        writer.writerow([ds, f"question {ds}", metric, score])
    return buf.getvalue().encode(), rows


def eval_summary(rows: list[tuple[str, str, float]]) -> dict[str, Any]:
    """``/api/analytics/summary`` computed by numpy: per metric mean/std/min/max/count/passing_rate."""
    out: dict[str, Any] = {}
    for metric in sorted({m for _, m, _ in rows}):
        v = np.array([s for _, m, s in rows if m == metric])
        out[metric] = {
            "mean": float(v.mean()),
            "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()),
            "max": float(v.max()),
            "count": int(v.size),
            "passing_rate": float((v >= 0.5).mean()),
        }
    return {"metrics": out, "total_records": len({d for d, _, _ in rows})}


class State:
    """The expected answer of each endpoint for one version of the data."""

    def __init__(self, mon_cases: int, mon_shift: float, eval_rows: list[tuple[str, str, float]]) -> None:
        self.kpis = monitoring_kpis(source_scores(mon_cases, mon_shift))
        self.eval = eval_summary(eval_rows)
        self.monitoring_rows = mon_cases * 3
        self.eval_rows = len(eval_rows)


def matches(kind: str, body: dict[str, Any], state: State) -> bool:
    """Whether one response equals ``state``'s answer for that endpoint."""
    if kind == "monitoring_summary":
        k = body["kpis"]
        return bool(
            k["total_records"] == state.kpis["total_records"]
            and np.isclose(k["avg_score"], state.kpis["avg_score"], rtol=1e-9)
            and np.isclose(k["pass_rate"], state.kpis["pass_rate"], rtol=1e-9)
        )
    if kind == "eval_summary":
        got = {m["metric_name"]: m for m in body["summary"]}
        if set(got) != set(state.eval["metrics"]) or body["total_records"] != state.eval["total_records"]:
            return False
        return all(
            got[name]["count"] == exp["count"]
            and all(np.isclose(got[name][f], exp[f], rtol=1e-9, atol=1e-12) for f in exp if f != "count")
            for name, exp in state.eval["metrics"].items()
        )
    if kind == "monitoring_rows":
        return bool(body["total"] == state.monitoring_rows)
    if kind == "eval_rows":
        return bool(body["total"] == state.eval_rows)
    if kind == "monitoring_metadata":
        return bool(body["metadata"]["row_count"] == state.monitoring_rows)
    raise AssertionError(kind)


CALLS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("monitoring_summary", "GET", "/api/monitoring/analytics/summary", {}),
    ("eval_summary", "POST", "/api/analytics/summary", {}),
    ("monitoring_rows", "GET", "/api/store/data/monitoring", {"page_size": 5}),
    ("eval_rows", "GET", "/api/store/data/eval", {"page_size": 5}),
    ("monitoring_metadata", "GET", "/api/store/metadata/monitoring", {}),
]


async def test_fifty_concurrent_analytics_requests_during_a_sync_and_an_upload(
    make_settings: Callable[..., Settings], pg: PgSchema
) -> None:
    create_split_source(pg, "mon", OLD_CASES)
    base = make_settings()
    queries = split_queries(pg, "mon", slow=True, sleep_seconds=1.5)
    write_db_yaml(base, "monitoring", {"enabled": True, "url": pg.dsn, **queries})
    write_duckdb_yaml(base, {"sync_mode": "manual", "query_concurrency": 8})
    settings = make_settings()
    old_csv, old_eval = eval_csv(400, ["accuracy", "relevance", "safety"], salt=3)
    new_csv, new_eval = eval_csv(3000, ["accuracy", "relevance", "safety", "tone"], salt=11)
    old, new = State(OLD_CASES, 0.0, old_eval), State(NEW_CASES, 0.15, new_eval)

    server = LiveServer(settings)
    await asyncio.to_thread(server.start)
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=120) as client:
            assert (await client.post("/api/store/sync/monitoring", params={"full": True})).json()["datasets"] == [
                "monitoring"
            ]
            await _settle(client)
            res = await client.post("/api/data/upload", files={"file": ("old.csv", old_csv, "text/csv")})
            assert res.status_code == 200, res.text
            for kind, method, path, params in CALLS:
                body = (await client.request(method, path, params=params)).json()
                assert matches(kind, body, old), (kind, body)

            create_split_source(pg, "mon", NEW_CASES, score_shift=0.15)
            pg.execute("UPDATE mon_ctl SET slow = true")

            async def one(i: int) -> tuple[str, httpx.Response]:
                await asyncio.sleep(0.04 * i)  # spread over the ~2 s the sync and the upload take
                kind, method, path, params = CALLS[i % len(CALLS)]
                return kind, await client.request(method, path, params=params)

            async def upload() -> httpx.Response:
                await asyncio.sleep(0.3)
                return await client.post("/api/data/upload", files={"file": ("new.csv", new_csv, "text/csv")})

            sync = await client.post("/api/store/sync/monitoring", params={"full": True})
            assert sync.status_code == 200, sync.text
            results = await asyncio.gather(upload(), *(one(i) for i in range(REQUESTS)))
            await _settle(client)
            uploaded, answers = results[0], results[1:]

            assert uploaded.status_code == 200, uploaded.text
            status = (await client.get("/api/store/status")).json()["datasets"]["monitoring_data"]
            assert status["state"] == "ready", status
            errors = [(kind, r.status_code, r.text[:200]) for kind, r in answers if r.status_code != 200]
            assert errors == []
            inconsistent = [
                (kind, r.text[:300])
                for kind, r in answers
                if not (matches(kind, r.json(), old) or matches(kind, r.json(), new))
            ]
            assert inconsistent == []
            for kind, method, path, params in CALLS:
                body = (await client.request(method, path, params=params)).json()
                assert matches(kind, body, new), (kind, body)
    finally:
        await asyncio.to_thread(server.stop)


async def _settle(client: httpx.AsyncClient) -> None:
    """Wait (up to 60 s) until no sync runs."""
    for _ in range(1200):
        if not (await client.get("/api/store/status")).json()["running"]:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the sync did not finish")
