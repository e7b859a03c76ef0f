"""``/api/monitoring/analytics`` over HTTP, on the bundled examples."""

from __future__ import annotations

import asyncio
import math
import statistics
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from app.config import BACKEND_DIR, Settings
from tests.conftest import PgSchema
from tests.sync_helpers import configure

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
    assert ok.status_code == 200 and ok.json()["threshold"] == 0.7, ok.text
    df = pd.read_csv(BACKEND_DIR / "sample_data" / "monitoring_long_sample.csv")
    scores = df[df["metric_category"] == "SCORE"]
    expected = {
        str(n): 100.0 * float((g["metric_score"].astype(float) >= 0.7).mean()) for n, g in scores.groupby("metric_name")
    }
    assert {m["name"]: m["pass_rate"] for m in ok.json()["metrics"]} == pytest.approx(expected)


def _spec_bucket(v: Fraction, lo: Fraction, hi: Fraction, bins: int) -> int:
    """§9.3 bucket rule in exact arithmetic: clamp(floor((v − lo)/(hi − lo)·bins) + 1, 1, bins)."""
    return min(max(math.floor((v - lo) / (hi - lo) * bins) + 1, 1), bins)


def _spec_quantiles(values: list[Fraction]) -> list[float]:
    """Continuous quantiles (linear interpolation) 0.5, 0.95, 0.99 in exact arithmetic."""
    s = sorted(values)
    out = []
    for q in (Fraction(1, 2), Fraction(95, 100), Fraction(99, 100)):
        rn = (len(s) - 1) * q
        i = math.floor(rn)
        j = min(i + 1, len(s) - 1)
        out.append(float(s[i] + (s[j] - s[i]) * (rn - i)))
    return out


@pytest.mark.parametrize(
    "latencies",
    [
        ["1e16"],  # a constant latency past 2^53: lo + 1 == lo in doubles
        ["9007199254740993", "9007199254740993"],
        ["-1e308", "0", "1e308"],  # max − min leaves the double range
        ["-1.7e308", "1.7e308", "1.7e308", "0"],
    ],
)
async def test_latency_histogram_of_extreme_spans(client: httpx.AsyncClient, latencies: list[str]) -> None:
    """The §9.3 histogram for spans below one ulp or beyond the double range: numbers, never a 500."""
    text = "dataset_id,latency,a_score,environment\n" + "".join(
        f"r{i},{v},0.5,e{i % 2}\n" for i, v in enumerate(latencies)
    )
    up = await client.post("/api/monitoring/upload", files={"file": ("lat.csv", text, "text/csv")})
    assert up.status_code == 200, up.text
    values = [Fraction(float(v)) for v in latencies]
    bins = 5
    lo, hi = min(values), max(values)
    if hi == lo:
        hi = lo + 1
    for group_by in (None, "environment"):
        params: dict[str, Any] = {"bins": bins, **({"group_by": group_by} if group_by else {})}
        res = await client.get(f"{BASE}/latency-distribution", params=params)
        assert res.status_code == 200, res.text
        body = res.json()
        counts = [0] * bins
        for v in values:
            counts[_spec_bucket(v, lo, hi, bins) - 1] += 1
        assert body["histogram"]["counts"] == counts
        edges = [float(lo + (hi - lo) * i / bins) for i in range(bins + 1)]
        assert body["histogram"]["edges"] == pytest.approx(edges, rel=1e-12)
        p = body["percentiles"]
        assert [p["p50"], p["p95"], p["p99"]] == pytest.approx(_spec_quantiles(values), rel=1e-12)
        if group_by:
            groups = sorted({f"e{i % 2}" for i in range(len(values))})
            assert sorted(body["by_group"]) == groups
            for g in groups:
                mine = [v for i, v in enumerate(values) if f"e{i % 2}" == g]
                got = body["by_group"][g]
                want = [0] * bins
                for v in mine:
                    want[_spec_bucket(v, lo, hi, bins) - 1] += 1
                assert got["counts"] == want
                gp = got["percentiles"]
                assert [gp["p50"], gp["p95"], gp["p99"]] == pytest.approx(_spec_quantiles(mine), rel=1e-12)


async def test_long_correlation_names_are_the_same_on_every_path(client: httpx.AsyncClient) -> None:
    """A metric name present in long data counts as existing (§9.3) whether or not it has numeric SCORE
    values: the per-record table (no filters) and the row path (a time window over every row) agree."""
    rows = ["dataset_id,timestamp,metric_name,metric_category,metric_score,explanation"]
    rel = [0.9, 0.4, 0.7, 0.2]
    acc = [0.8, 0.5, 0.6, 0.1]
    for i, (r, a) in enumerate(zip(rel, acc, strict=True)):
        ts = f"2025-05-0{i + 1}T10:00:00Z"
        rows += [
            f"r{i},{ts},relevance,SCORE,{r},",
            f"r{i},{ts},accuracy,,{a},",
            f"r{i},{ts},blank,SCORE,,",  # a SCORE metric without any score
            f"r{i},{ts},tone,CLASSIFICATION,{'good' if i % 2 else 'bad'},label",
        ]
    text = "\n".join(rows) + "\n"
    up = await client.post("/api/monitoring/upload", files={"file": ("c.csv", text, "text/csv")})
    assert up.status_code == 200, up.text
    names = ["relevance", "tone", "accuracy", "blank", "missing"]
    # Independent: every name that is a metric_name value is valid; tone and blank have no SCORE numbers.
    valid = ["relevance", "tone", "accuracy", "blank"]
    r = float(np.corrcoef(rel, acc)[0, 1])
    expected = [
        [1.0, 0.0, r, 0.0],
        [0.0, 0.0, 0.0, 0.0],
        [r, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 0.0],
    ]
    for extra in ({}, {"time_start": "2025-01-01T00:00:00Z"}, {"environment": "prod"}):
        res = await client.get(f"{BASE}/correlation", params={"metrics": ",".join(names), **extra})
        assert res.status_code == 200, res.text
        body = res.json()
        assert body["metrics"] == valid, extra
        assert body["matrix"] == [pytest.approx(row) for row in expected], extra
    # Two names of which only one has numbers are still two existing metrics.
    res = await client.get(f"{BASE}/correlation", params={"metrics": "relevance,tone"})
    assert res.json()["metrics"] == ["relevance", "tone"] and res.json()["matrix"] == [[1.0, 0.0], [0.0, 0.0]]


@pytest.mark.parametrize(
    "latencies",
    [["5e-324"], ["5e-324", "1.5e-323", "2e-323"], ["5e-324", "1.5e-323"], ["1.7e308", "1.7e308"], ["-1e308", "1e308"]],
)
async def test_class_distribution_median_is_exact_at_the_ends_of_the_double_range(
    client: httpx.AsyncClient, latencies: list[str]
) -> None:
    """The median is the middle value (odd count) or the mean of the two middle values, rounded once."""
    text = "dataset_id,latency,a_score,environment\n" + "".join(f"r{i},{v},0.5,prod\n" for i, v in enumerate(latencies))
    up = await client.post("/api/monitoring/upload", files={"file": ("m.csv", text, "text/csv")})
    assert up.status_code == 200, up.text
    res = await client.get(f"{BASE}/class-distribution", params={"metric": "latency", "group_by": "environment"})
    assert res.status_code == 200, res.text
    stats = res.json()["data"][0]["stats"]
    exact = statistics.median(Fraction(float(v)) for v in latencies)
    assert stats["median"] == float(exact)
    assert stats["min"] == min(float(v) for v in latencies) and stats["count"] == len(latencies)


async def test_infinite_timestamps_are_no_time_bucket(client: httpx.AsyncClient) -> None:
    """±infinity timestamps (PostgreSQL sentinels; DuckDB reads the text too) are no point in time: trends
    and classification trends leave them out like unreadable times; insights show them as the stored rows do."""
    rows = ["dataset_id,timestamp,metric_name,metric_category,metric_score,explanation"]
    for rid, ts in (
        ("a", "infinity"),
        ("b", "-infinity"),
        ("c", "2025-01-01T10:00:00Z"),
        ("d", "2025-01-01T12:00:00Z"),
    ):
        rows += [
            f"{rid},{ts},m,SCORE,{0.5 if rid != 'd' else 0.9},",
            f"{rid},{ts},tone,CLASSIFICATION,,{'yes' if rid in 'ad' else 'no'}",
            f"{rid},{ts},note,ANALYSIS,,text {rid}",
        ]
    up = await client.post("/api/monitoring/upload", files={"file": ("inf.csv", "\n".join(rows) + "\n", "text/csv")})
    assert up.status_code == 200, up.text
    assert {r["timestamp"] for r in up.json()["data"]} == {
        "infinity",
        "-infinity",
        "2025-01-01T10:00:00",
        "2025-01-01T12:00:00",
    }
    for granularity in ("hourly", "daily", "weekly"):
        body = (await client.get(f"{BASE}/trends", params={"granularity": granularity})).json()
        assert sum(p["count"] for p in body["data"]) == 2, granularity
        assert all(p["timestamp"].startswith(("2025-01-01", "2024-12-30")) for p in body["data"]), body["data"]
        cls = (
            await client.get(
                f"{BASE}/classification-trends", params={"metric_name": "tone", "granularity": granularity}
            )
        ).json()
        assert sum(sum(p["categories"].values()) for p in cls["data"]) == 2, cls["data"]
    daily = (await client.get(f"{BASE}/trends")).json()["data"]
    assert daily == [
        {
            "timestamp": "2025-01-01T00:00:00",
            "metric": "m",
            "avg": pytest.approx(0.7),
            "p50": pytest.approx(0.7),
            "p95": pytest.approx(0.88),
            "p99": pytest.approx(0.896),
            "count": 2,
        }
    ]
    ins = (await client.get(f"{BASE}/analysis-insights")).json()
    assert [(r["dataset_id"], r["timestamp"]) for r in ins["records"]] == [
        ("a", "infinity"),
        ("d", "2025-01-01T12:00:00"),
        ("c", "2025-01-01T10:00:00"),
        ("b", "-infinity"),
    ]


async def _wait_synced(client: httpx.AsyncClient) -> None:
    for _ in range(600):
        body = (await client.get("/api/store/status")).json()
        if body["datasets"]["monitoring_data"]["state"] in ("ready", "error") and not body["running"]:
            assert body["datasets"]["monitoring_data"]["state"] == "ready", body
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the monitoring sync did not finish")


async def test_synced_and_imported_categories_compare_alike(
    pg: PgSchema, make_settings: Callable[..., Settings], make_client: Callable[[Settings], Any]
) -> None:
    """The same PostgreSQL rows answer the same numbers whether synced or imported: a category is
    compared trimmed and upper-cased, and a blank one is the default SCORE (as NULL is, §9.1)."""
    pg.execute("CREATE TABLE ds (dataset_id text, environment text, latency int)")
    pg.execute("CREATE TABLE rs (dataset_id text, metric_name text, metric_category text, metric_score float8)")
    pg.execute(
        "INSERT INTO ds VALUES ('a','prod',100), ('b','prod',200), ('c','prod',300), ('d','prod',400), ('e','dev',500)"
    )
    cats = {"a": "SCORE", "b": "", "c": " score ", "d": None, "e": "Classification "}
    scores = {"a": 0.9, "b": 0.1, "c": 0.2, "d": 0.8, "e": 0.3}
    for rid, cat in cats.items():
        pg.execute("INSERT INTO rs VALUES (%s, 'm', %s, %s)", (rid, cat, scores[rid]))
    # Independent: SCORE = trimmed/upper-cased SCORE, blank or NULL.
    norm = {rid: (c or "").strip().upper() or "SCORE" for rid, c in cats.items()}
    score_vals = [scores[r] for r in scores if norm[r] == "SCORE"]
    lat = {"a": 100, "b": 200, "c": 300, "d": 400, "e": 500}
    expected = {
        "total_records": len(score_vals),
        "avg_score": pytest.approx(statistics.mean(score_vals)),
        "pass_rate": pytest.approx(100.0 * sum(v >= 0.5 for v in score_vals) / len(score_vals)),
        "p50_latency": pytest.approx(float(np.percentile([lat[r] for r in lat if norm[r] == "SCORE"], 50))),
    }
    answers = []
    for enabled in (True, False):
        settings = configure(make_settings, pg, enabled=enabled)
        async with make_client(settings) as client:
            if enabled:
                started = await client.post("/api/store/sync/monitoring")
                assert started.status_code == 200 and started.json()["datasets"] == ["monitoring"], started.text
                await _wait_synced(client)
            else:
                imported = await client.post("/api/monitoring/db-import")
                assert imported.status_code == 200 and imported.json()["row_count"] == len(cats), imported.text
            got = []
            for params in ({}, {"environment": "prod"}, {"metric_category": "classification"}):
                k = (await client.get(f"{BASE}/summary", params=params)).json()["kpis"]
                got.append({key: k[key] for key in ("total_records", "avg_score", "pass_rate", "p50_latency")})
            bd = (await client.get(f"{BASE}/metric-breakdown")).json()["metrics"]
            got.append([(m["name"], m["count"]) for m in bd])
            page = (await client.get("/api/store/data/monitoring", params={"metric_category": "SCORE"})).json()
            got.append(page["total"])
            answers.append(got)
            assert got[0] == expected, ("sync" if enabled else "import", got[0])
            assert got[1]["total_records"] == 4 and got[2]["total_records"] == 1 and got[4] == 4
    assert answers[0] == answers[1]


async def test_wide_upload_with_thousands_of_score_columns(client: httpx.AsyncClient) -> None:
    """2,500 ``*_score`` columns: summary, trends and breakdown exact (NaN/inf/text skipped) and quick.

    A finite check per column inside the UNPIVOT made DuckDB's planner quadratic in the column count
    (5,000 columns: /trends 51 s, /metric-breakdown 21 s).
    """
    import time

    n = 2500
    header = ["dataset_id", "timestamp", "latency", *(f"c{i}_score" for i in range(n))]
    lines = [",".join(header)]
    for r in range(4):
        cells = [str(round(i * 0.0001 + r * 0.25, 6)) for i in range(n)]
        if r == 3:
            cells[0:3] = ["nan", "-inf", "n/a"]
        lines.append(",".join([f"d{r}", f"2024-01-0{1 + r % 2}T10:00:00Z", str(100 * (r + 1)), *cells]))
    up = await client.post("/api/monitoring/upload", files={"file": ("w.csv", "\n".join(lines) + "\n", "text/csv")})
    assert up.status_code == 200, up.text
    ds = up.json()["dataset_id"]
    values = [[i * 0.0001 + r * 0.25 for i in range(n)] for r in range(4)]
    for i in range(3):
        values[3][i] = float("nan")
    flat = np.array(values).ravel()
    finite = flat[~np.isnan(flat)]

    summary = (await client.get(f"{BASE}/summary", params={"dataset_id": ds})).json()["kpis"]
    assert summary["total_records"] == finite.size == 4 * n - 3
    assert summary["avg_score"] == pytest.approx(float(finite.mean()))
    assert summary["pass_rate"] == pytest.approx(100.0 * float((finite >= 0.5).mean()))

    started = time.monotonic()
    trends = (await client.get(f"{BASE}/trends", params={"dataset_id": ds})).json()
    by_key = {(p["timestamp"][:10], p["metric"]): p for p in trends["data"]}
    assert len(trends["metrics"]) == n and len(trends["data"]) == 2 * n
    assert by_key[("2024-01-02", "c0_score")]["count"] == 1 and by_key[("2024-01-02", "c0_score")]["avg"] == 0.25
    assert by_key[("2024-01-01", "c5_score")]["avg"] == pytest.approx(0.0005 + 0.25)

    breakdown = (await client.get(f"{BASE}/metric-breakdown", params={"dataset_id": ds})).json()["metrics"]
    elapsed = time.monotonic() - started
    got = {m["name"]: m for m in breakdown}
    assert len(got) == n and got["c1_score"]["count"] == 3 and got["c2499_score"]["count"] == 4
    assert got["c2499_score"]["avg"] == pytest.approx(0.2499 + 0.375)
    assert elapsed < 6  # trends + breakdown: ~1 s; 11 s with a finite check per column inside the UNPIVOT


async def test_correlation_refuses_more_metrics_than_the_cap(client: httpx.AsyncClient) -> None:
    """1,000 score columns asked at once ran DuckDB out of memory (500); beyond 100 metrics it is a 400."""
    n = 101
    header = ["dataset_id", *(f"c{i}_score" for i in range(n))]
    lines = [",".join(header)] + [
        ",".join([f"d{r}", *(str((r * (i + 1)) % 7 / 7) for i in range(n))]) for r in range(6)
    ]
    up = await client.post("/api/monitoring/upload", files={"file": ("w.csv", "\n".join(lines) + "\n", "text/csv")})
    assert up.status_code == 200, up.text
    ds = up.json()["dataset_id"]
    names = [f"c{i}_score" for i in range(n)]
    r = await client.get(f"{BASE}/correlation", params={"dataset_id": ds, "metrics": ",".join(names)})
    assert r.status_code == 400
    assert "at most 100 metrics; this request has 101" in r.json()["detail"]
    r = await client.get(f"{BASE}/correlation", params={"dataset_id": ds, "metrics": ",".join(names[:100])})
    assert r.status_code == 200, r.text
    matrix = r.json()["matrix"]
    assert len(matrix) == 100 and matrix[0][0] == 1.0
    col = [[(row * (i + 1)) % 7 / 7 for row in range(6)] for i in (1, 2)]
    assert matrix[1][2] == pytest.approx(np.corrcoef(col[0], col[1])[0, 1])
