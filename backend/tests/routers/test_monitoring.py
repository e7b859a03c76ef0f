"""``/api/monitoring`` over HTTP: upload, examples, db-config."""

from __future__ import annotations

import csv
import io
import statistics

import httpx
import pytest

from tests.services.test_csv_ingest import LOOSE_ZONES

CSV = (
    "ID,Response Time,relevance_score,coherence_score,env\na,100,0.9,0.8,prod\nb,300,0.3,0.6,prod\nc,200,0.7,bad,dev\n"
)


async def test_upload_then_summary_without_ids(client: httpx.AsyncClient) -> None:
    res = await client.post("/api/monitoring/upload", files={"file": ("mon.csv", CSV, "text/csv")})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["success"] and body["format"] == "monitoring" and body["row_count"] == 3
    assert body["metric_columns"] == ["relevance_score", "coherence_score"]
    assert body["columns"][:3] == ["dataset_id", "latency", "relevance_score"]
    assert body["data"][2]["coherence_score"] is None
    assert body["data"][0]["timestamp"].endswith(body["data"][1]["timestamp"][-8:])  # same load time
    assert body["data_truncated"] is False
    ds = body["dataset_id"]
    # wide data: breakdown per *_score column; default threshold = configured pass (0.5)
    bd = (await client.get("/api/monitoring/analytics/metric-breakdown")).json()
    rel = next(m for m in bd["metrics"] if m["name"] == "relevance_score")
    assert bd["dataset_id"] == ds and rel["count"] == 3
    assert rel["pass_rate"] == 100 * 2 / 3 and rel["avg"] == statistics.mean([0.9, 0.3, 0.7])
    lat = (await client.get("/api/monitoring/analytics/latency-distribution", params={"bins": 5})).json()
    assert lat["histogram"]["counts"] == [1, 0, 1, 0, 1] and lat["percentiles"]["p50"] == 200.0


async def test_upload_long_then_summary_kpis(client: httpx.AsyncClient) -> None:
    rows = [["dataset_id", "timestamp", "latency", "metric_name", "metric_category", "metric_score", "explanation"]]
    scores = {"r1": (0.9, 0.2), "r2": (0.6, 0.4), "r3": (0.1, 0.8)}
    lats = {"r1": 100, "r2": 250, "r3": 400}
    for rid, (a, b) in scores.items():
        ts = f"2025-02-0{rid[-1]}T12:00:00Z"
        rows.append([rid, ts, lats[rid], "a", "SCORE", a, ""])
        rows.append([rid, ts, lats[rid], "b", "", b, ""])
        rows.append([rid, ts, lats[rid], "tone", "CLASSIFICATION", "friendly", "friendly"])
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    up = await client.post("/api/monitoring/upload", files={"file": ("long.csv", buf.getvalue(), "text/csv")})
    assert up.status_code == 200, up.text
    k = (await client.get("/api/monitoring/analytics/summary", params={"metric_category": "SCORE"})).json()["kpis"]
    vals = [v for pair in scores.values() for v in pair]
    assert k["total_records"] == 6
    assert abs(k["avg_score"] - statistics.mean(vals)) < 1e-12
    assert k["pass_rate"] == 100 * sum(v >= 0.5 for v in vals) / 6
    assert k["p50_latency"] == 250.0  # one latency per record, not per metric row
    # the echoed rows carry numbers (a text label → null, §8.1 step 5); the store keeps the label
    echoed = {(r["dataset_id"], r["metric_name"]): r["metric_score"] for r in up.json()["data"]}
    expected = {(rid, m): v for rid, pair in scores.items() for m, v in zip("ab", pair, strict=True)}
    assert echoed == {**expected, **{(rid, "tone"): None for rid in scores}}
    assert {(r["dataset_id"], r["metric_name"]): r["metric_score"] for r in up.json()["preview"]} == echoed
    cls = await client.get("/api/monitoring/analytics/classification-breakdown")
    assert cls.status_code == 200, cls.text
    assert [(m["metric_name"], [(c["value"], c["count"]) for c in m["categories"]]) for m in cls.json()["metrics"]] == [
        ("tone", [("friendly", 3)])
    ]
    # store metadata is §10.7's, not the analytics caches kept beside it (a summary, the per-record table)
    await client.get("/api/monitoring/analytics/correlation", params={"metrics": "a,b"})
    meta = (await client.get("/api/store/metadata/monitoring")).json()["metadata"]
    assert set(meta) == {
        "row_count",
        "columns",
        "filter_values",
        "time_range",
        "summary_stats",
        "summary_stats_by_category",
    }
    assert meta["row_count"] == 9 and meta["summary_stats"]["total_records"] == 6


async def test_upload_errors(client: httpx.AsyncClient) -> None:
    res = await client.post("/api/monitoring/upload", files={"file": ("x.csv", "foo,bar\n1,2\n", "text/csv")})
    assert res.status_code == 400 and "Required column: dataset_id" in res.json()["detail"]
    res = await client.post("/api/monitoring/upload", files={"file": ("x.txt", "a\n1\n", "text/plain")})
    assert res.status_code == 400
    res = await client.get("/api/monitoring/example/unknown")
    assert res.status_code == 404


async def test_db_config_defaults(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/monitoring/db-config")).json()
    assert body["configured"] is False and body["connection"] is None
    assert body["thresholds"]["default"] == {"good": 0.7, "pass": 0.5}
    assert body["anomaly_detection"]["z_score"]["threshold"] == 2.0
    res = await client.post("/api/monitoring/db-import")
    assert res.status_code == 400


async def test_epoch_timestamps_are_read_and_unreadable_ones_reported(client: httpx.AsyncClient) -> None:
    """Unix seconds and milliseconds become UTC timestamps; text that is no time is reported, not hidden."""
    text = (
        "dataset_id,timestamp,a_score\n"
        "a,1704153600,0.5\nb,1704157200123,0.7\nc,2024-01-02T03:00:00+01:00,0.9\nd,not a date,0.1\ne,,0.2\n"
    )
    res = await client.post("/api/monitoring/upload", files={"file": ("epoch.csv", text, "text/csv")})
    assert res.status_code == 200, res.text
    body = res.json()
    assert [r["timestamp"] for r in body["data"]] == [
        "2024-01-02T00:00:00",
        "2024-01-02T01:00:00.123000",
        "2024-01-02T02:00:00",
        None,
        None,
    ]
    assert "1 timestamp value(s) could not be read" in body["message"] and "'not a date'" in body["message"]
    trends = (await client.get("/api/monitoring/analytics/trends", params={"granularity": "daily"})).json()
    assert [(p["timestamp"][:10], p["count"]) for p in trends["data"]] == [("2024-01-02", 3)]
    numeric = "dataset_id,timestamp,a_score\na,1704153600,0.5\nb,1704240000.5,0.7\n"
    res = await client.post("/api/monitoring/upload", files={"file": ("n.csv", numeric, "text/csv")})
    assert [r["timestamp"] for r in res.json()["data"]] == ["2024-01-02T00:00:00", "2024-01-03T00:00:00.500000"]
    assert "could not be read" not in res.json()["message"]


@pytest.mark.parametrize("extra", ["", "z,not a date,0.1\n"])
async def test_zones_after_a_blank_or_a_lowercase_z_are_read_and_filtered_as_utc(
    client: httpx.AsyncClient, extra: str
) -> None:
    """``2024-01-01 10:00:00 +02:00`` (Ruby, date(1)), ``…z`` and ``… Z`` were reported as unreadable and stored
    empty; they are the UTC instants, in the stored column (typed, or text next to 'not a date') and in filters."""
    rows = "".join(f"r{i},{text},0.5\n" for i, (text, _) in enumerate(LOOSE_ZONES))
    res = await client.post(
        "/api/monitoring/upload",
        files={"file": ("z.csv", "dataset_id,timestamp,a_score\n" + rows + extra, "text/csv")},
    )
    assert res.status_code == 200, res.text
    body = res.json()
    expected = [instant.isoformat() for _, instant in LOOSE_ZONES]
    assert [r["timestamp"] for r in body["data"]] == expected + ([None] if extra else [])
    if extra:
        assert body["message"] == (
            f"Processed {len(LOOSE_ZONES) + 1} monitoring records; 1 timestamp value(s) could not be read as a "
            "date and time, e.g. 'not a date' (they are stored empty: time filters and trends skip those rows)"
        )
    else:
        assert body["message"] == f"Processed {len(LOOSE_ZONES)} monitoring records"
    # UTC 08:00, 09:00, 10:00, 11:00, 12:00:00.25, 13:00: the bounds are inclusive
    window = {"time_start": "2024-01-01T09:00:00Z", "time_end": "2024-01-01T12:00:00Z"}
    kpis = (await client.get("/api/monitoring/analytics/summary", params=window)).json()["kpis"]
    assert kpis["total_records"] == 3
    page = (await client.get("/api/store/data/monitoring", params=window)).json()
    assert sorted(r["dataset_id"] for r in page["data"]) == ["r1", "r2", "r3"] and page["total"] == 3
    trends = (await client.get("/api/monitoring/analytics/trends", params={"granularity": "hourly"})).json()
    assert [(p["timestamp"][:13], p["count"]) for p in trends["data"]] == [
        (f"2024-01-01T{h:02d}", 1) for h in range(8, 14)
    ]


async def test_wide_rows_with_a_category_column_summarise_alike_cached_or_filtered(client: httpx.AsyncClient) -> None:
    """Wide rows carry metric_category: the cached /summary and a filtered one (same rows) agree."""
    text = "id,metric_category,relevance_score,environment\na,SCORE,0.9,prod\nb,CLASSIFICATION,0.1,prod\nc,,0.7,prod\n"
    up = await client.post("/api/monitoring/upload", files={"file": ("w.csv", text, "text/csv")})
    assert up.json()["row_count"] == 3 and up.json()["metric_columns"] == ["relevance_score"]
    summary = "/api/monitoring/analytics/summary"
    cached = (await client.get(summary)).json()
    filtered = (await client.get(summary, params={"environment": "prod"})).json()
    assert cached["cached"] is True and cached["kpis"] == filtered["kpis"]
    assert cached["kpis"]["total_records"] == 2 and cached["kpis"]["avg_score"] == statistics.mean([0.9, 0.7])
    cls = (await client.get(summary, params={"metric_category": "CLASSIFICATION"})).json()["kpis"]
    assert cls["total_records"] == 1 and cls["avg_score"] == 0.1


async def test_latency_with_a_time_window_and_per_record_class_distribution(client: httpx.AsyncClient) -> None:
    """A time window selects rows (r1 has one row inside), on every path; class-distribution of the
    latency counts each record once (DB-31)."""
    text = (
        "dataset_id,timestamp,latency,metric_name,metric_score,environment\n"
        "r1,2025-06-01T23:59:00Z,100,a,0.1,prod\nr1,2025-06-02T00:01:00Z,100,b,0.9,prod\n"
        "r1,2025-06-02T00:01:00Z,100,c,0.5,prod\nr2,2025-06-02T11:00:00Z,400,a,0.5,prod\n"
    )
    up = await client.post("/api/monitoring/upload", files={"file": ("l.csv", text, "text/csv")})
    assert up.json()["row_count"] == 4 and up.json()["metric_columns"] == ["metric_score"]
    path = "/api/monitoring/analytics/latency-distribution"
    window = {"bins": 5, "time_start": "2025-06-02T00:00:00Z"}
    fast = (await client.get(path, params=window)).json()
    rows = (await client.get(path, params={**window, "metric_category": "SCORE"})).json()
    assert fast["histogram"] == rows["histogram"] and fast["histogram"]["counts"] == [1, 0, 0, 0, 1]
    assert fast["percentiles"]["p50"] == 250.0 == rows["percentiles"]["p50"]
    cd = (
        await client.get(
            "/api/monitoring/analytics/class-distribution", params={"metric": "latency", "group_by": "environment"}
        )
    ).json()
    prod = cd["data"][0]
    assert sorted(prod["values"]) == [100.0, 400.0] and prod["stats"]["count"] == 2 and prod["stats"]["mean"] == 250.0
