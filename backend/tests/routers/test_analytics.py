"""``/api/analytics`` over HTTP: upload-then-analyse, metrics parameter forms (DB-15), body forms, errors."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.services.test_eval_analytics import make_long_rows, rows_to_csv, to_wide, values

MONITORING_SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "monitoring_sample.csv"


async def _load(client: httpx.AsyncClient, rows: list[dict[str, Any]]) -> str:
    r = await client.post("/api/data/upload", files={"file": ("long.csv", rows_to_csv(rows), "text/csv")})
    assert r.status_code == 200, r.text
    dataset_id: str = r.json()["dataset_id"]
    return dataset_id


async def test_upload_then_analyse_matches_inline(client: httpx.AsyncClient) -> None:
    rows = make_long_rows(45, seed=3)
    loaded = await _load(client, rows)
    stored = (await client.post("/api/analytics/summary")).json()
    inline = (await client.post("/api/analytics/summary", json=rows)).json()
    wide = (await client.post("/api/analytics/summary", json={"data": to_wide(rows)})).json()
    assert stored["total_records"] == inline["total_records"] == wide["total_records"] == 45
    # Each answer names the stored dataset it read (none for inline rows).
    assert stored["dataset_id"] == loaded and inline["dataset_id"] is None and wide["dataset_id"] is None
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
    assert r.json()["dataset_id"] == loaded
    counts, edges = np.histogram(values(rows, "m_a"), bins=6)
    assert r.json()["histogram"] == {"counts": counts.tolist(), "bin_edges": pytest.approx(edges.tolist())}


@pytest.mark.parametrize(
    "params",
    [
        [("metrics", "m_a"), ("metrics", "m_b"), ("metrics", "m_c")],
        [("metrics", "m_a,m_b,m_c")],
        [("metrics", '["m_a", "m_b", "m_c"]')],
    ],
)
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
    r = await client.post(
        "/api/analytics/radar", params={"group_by": "evaluation_name"}, json={"data": rows, "metrics": "m_a,m_b,m_c"}
    )
    assert [t["name"] for t in r.json()["traces"]] == ["g1", "g2", "g3"]


async def test_scatter_and_dataset_id(client: httpx.AsyncClient) -> None:
    first = await _load(client, make_long_rows(20, seed=1))
    await _load(client, make_long_rows(10, seed=2))
    r = await client.post(
        "/api/analytics/scatter", params={"x_metric": "m_a", "y_metric": "m_c", "color_by": "evaluation_name"}
    )
    body = r.json()
    expected = [r_ for r_ in to_wide(make_long_rows(10, seed=2)) if r_["m_c"] is not None]
    assert body["total_points"] == len(expected) == len(body["x"]) == len(body["ids"]) == len(body["color"])
    assert body["color_by"] == "evaluation_name" and body["truncated"] is False
    r = await client.post("/api/analytics/scatter", params={"x_metric": "m_a", "y_metric": "m_c", "dataset_id": first})
    assert r.json()["total_points"] == sum(1 for r_ in to_wide(make_long_rows(20, seed=1)) if r_["m_c"] is not None)
    assert "color" not in r.json()


async def test_errors(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/analytics/summary")
    assert r.status_code == 404 and "No eval data loaded" in r.json()["detail"]
    await _load(client, make_long_rows(12))
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        (
            "distribution",
            {"metric": "nope"},
            400,
            "Metric 'nope' not found; metrics: 'const', 'flat', 'm_a', 'm_b', 'm_c'",
        ),
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


async def _upload_text(client: httpx.AsyncClient, text: str) -> str:
    r = await client.post("/api/data/upload", files={"file": ("rows.csv", text.encode(), "text/csv")})
    assert r.status_code == 200, r.text
    dataset_id: str = r.json()["dataset_id"]
    return dataset_id


async def test_one_key_with_two_outputs_is_two_records_stored_inline_and_prepared(client: httpx.AsyncClient) -> None:
    """d1 under one evaluation with two outputs: two points, as the spec's pivot index (no average)."""
    text = (
        "dataset_id,evaluation_name,query,actual_output,metric_name,metric_score\n"
        "d1,E,q1,outA,acc,0.9\nd1,E,q1,outA,rel,0.1\nd1,E,q1,outB,acc,0.2\nd1,E,q1,outB,rel,0.8\n"
        "d2,E,q2,o2,acc,0.5\nd2,E,q2,o2,rel,0.5\n"
    )
    up = await client.post("/api/data/upload", files={"file": ("multi.csv", text.encode(), "text/csv")})
    assert up.status_code == 200, up.text
    params = {"x_metric": "acc", "y_metric": "rel"}
    stored = await client.post("/api/analytics/scatter", params={**params, "dataset_id": up.json()["dataset_id"]})
    inline = await client.post("/api/analytics/scatter", params=params, json=up.json()["data"])
    prepared = await client.post(
        "/api/data/prepare-analytics", params={"format_type": "tree_format"}, json=up.json()["data"]
    )
    assert prepared.status_code == 200, prepared.text
    flat = await client.post("/api/analytics/scatter", params=params, json=prepared.json()["data"])
    for res in (stored, inline, flat):
        assert res.status_code == 200, res.text
        points = sorted(zip(res.json()["x"], res.json()["y"], strict=True))
        assert points == [(0.2, 0.8), (0.5, 0.5), (0.9, 0.1)] and res.json()["total_points"] == 3
    summary = (await client.post("/api/analytics/summary", params={"dataset_id": up.json()["dataset_id"]})).json()
    assert summary["total_records"] == 3
    # a metric row whose query and output are blank is not another record
    blank = (
        "dataset_id,evaluation_name,query,actual_output,metric_name,metric_score\n"
        "r1,exp,Q1,A1,faithfulness,0.9\nr1,exp,,,relevance,0.7\nr2,exp,Q2,A2,faithfulness,0.5\n"
        "r2,exp,Q2,A2,relevance,0.4\n"
    )
    up = await client.post("/api/data/upload", files={"file": ("blank.csv", blank.encode(), "text/csv")})
    assert up.status_code == 200, up.text
    sc = await client.post(
        "/api/analytics/scatter",
        params={"x_metric": "faithfulness", "y_metric": "relevance", "dataset_id": up.json()["dataset_id"]},
    )
    assert sorted(zip(sc.json()["x"], sc.json()["y"], strict=True)) == [(0.5, 0.4), (0.9, 0.7)]


async def test_non_finite_values_are_missing_stored_and_inline(client: httpx.AsyncClient) -> None:
    """CSV ``nan``/``inf`` cells (DuckDB stores them as doubles) and inline ±Infinity count as missing."""
    text = (
        "dataset_id,evaluation_name,query,actual_output,a,b,c\n"
        "r1,e,q,o,0.2,0.1,0.5\nr2,e,q,o,nan,0.3,inf\nr3,e,q,o,0.6,0.9,0.1\nr4,e,q,o,0.8,0.4,-inf\n"
    )
    ds = await _upload_text(client, text)
    finite_a = [0.2, 0.6, 0.8]
    res = await client.post("/api/analytics/summary", params={"dataset_id": ds})
    s = {m["metric_name"]: m for m in res.json()["summary"]}
    assert s["a"]["count"] == 3 and s["a"]["mean"] == pytest.approx(statistics.mean(finite_a))
    assert s["a"]["std"] == pytest.approx(statistics.stdev(finite_a))
    assert s["c"]["count"] == 2 and s["c"]["mean"] == pytest.approx(0.3)
    d = (await client.post("/api/analytics/distribution", params={"dataset_id": ds, "metric": "a", "bins": 3})).json()
    counts, edges = np.histogram(finite_a, bins=3)
    assert d["histogram"] == {"counts": counts.tolist(), "bin_edges": pytest.approx(edges.tolist())}
    assert d["values"] == finite_a and d["stats"]["median"] == pytest.approx(0.6)
    c = (await client.post("/api/analytics/correlation", params={"dataset_id": ds, "metrics": "a,b"})).json()
    pairs = [(0.2, 0.1), (0.6, 0.9), (0.8, 0.4)]  # r2's a is missing
    expected_r = float(np.corrcoef([p[0] for p in pairs], [p[1] for p in pairs])[0, 1])
    assert c["correlation"]["a"]["b"] == pytest.approx(expected_r)
    sc_params = {"dataset_id": ds, "x_metric": "a", "y_metric": "c"}
    sc = (await client.post("/api/analytics/scatter", params=sc_params)).json()
    assert sc["x"] == [0.2, 0.6] and sc["y"] == [0.5, 0.1] and sc["total_points"] == 2
    # The same rows inline, with JSON ±Infinity (Python's json accepts them), give the same summary.
    inline = [
        {"a": 0.2, "c": 0.5},
        {"a": float("nan"), "c": float("inf")},
        {"a": 0.6, "c": 0.1},
        {"a": 0.8, "c": float("-inf")},
    ]
    r = await client.post(
        "/api/analytics/summary", content=json.dumps(inline), headers={"content-type": "application/json"}
    )
    si = {m["metric_name"]: m for m in r.json()["summary"]}
    assert si["a"]["mean"] == s["a"]["mean"] and si["c"]["count"] == 2 and si["c"]["std"] == s["c"]["std"]


async def test_huge_magnitudes_do_not_overflow(client: httpx.AsyncClient) -> None:
    """Sums of squares beyond the double range are retried on scaled values; constant huge values bin."""
    m1 = [1e200, -1e200, 1e200]
    rows = [{"g": "x", "m1": v, "m2": float(i + 1), "m3": 3e300} for i, v in enumerate(m1)]
    s = {m["metric_name"]: m for m in (await client.post("/api/analytics/summary", json=rows)).json()["summary"]}
    assert s["m1"]["std"] == pytest.approx(statistics.stdev(m1)) and s["m1"]["mean"] == pytest.approx(1e200 / 3)
    assert s["m2"]["std"] == pytest.approx(1.0)
    comp = (await client.post("/api/analytics/comparison", params={"group_by": "g"}, json=rows)).json()
    assert comp["comparison"][0]["m1"]["std"] == pytest.approx(statistics.stdev(m1))
    corr = (await client.post("/api/analytics/correlation", params={"metrics": "m1,m2"}, json=rows)).json()
    assert corr["correlation"]["m1"]["m2"] == pytest.approx(0.0, abs=1e-12)  # the +,−,+ pattern vs 1,2,3
    d = (await client.post("/api/analytics/distribution", params={"metric": "m1", "bins": 4}, json=rows)).json()
    assert d["histogram"]["counts"] == [1, 0, 0, 2] and d["stats"]["std"] == pytest.approx(statistics.stdev(m1))
    d = (await client.post("/api/analytics/distribution", params={"metric": "m3", "bins": 4}, json=rows)).json()
    edges = d["histogram"]["bin_edges"]
    assert d["histogram"]["counts"] == [0, 0, 3, 0] and edges[0] < 3e300 < edges[-1] and len(set(edges)) == 5
    spread = [{"m": -1.7e308}, {"m": 1.7e308}, {"m": 0.0}]
    d = (await client.post("/api/analytics/distribution", params={"metric": "m", "bins": 2}, json=spread)).json()
    assert d["histogram"]["counts"] == [1, 2] and d["histogram"]["bin_edges"] == [-1.7e308, 0.0, 1.7e308]
    # edges whose i · step overflows (the span does too); means whose sums overflow
    spread = [{"m": -1.5e308}, {"m": 1.5e308}, {"m": 1e308}]
    d = (await client.post("/api/analytics/distribution", params={"metric": "m", "bins": 4}, json=spread)).json()
    assert d["histogram"]["bin_edges"] == [-1.5e308, -7.5e307, 0.0, 7.5e307, 1.5e308]
    assert d["histogram"]["counts"] == [1, 0, 0, 2] and d["stats"]["mean"] == pytest.approx(1e308 / 3)
    top = [{"g": "x", "m": 1.7e308, "n": 1.0}, {"g": "x", "m": 1.7e308, "n": 2.0}]
    s = {m["metric_name"]: m for m in (await client.post("/api/analytics/summary", json=top)).json()["summary"]}
    assert s["m"]["mean"] == 1.7e308 and s["n"]["mean"] == 1.5
    comp = (await client.post("/api/analytics/comparison", params={"group_by": "g"}, json=top)).json()
    assert comp["comparison"][0]["m"]["mean"] == 1.7e308
    d = (await client.post("/api/analytics/distribution", params={"metric": "m"}, json=top)).json()
    assert d["stats"]["mean"] == 1.7e308


async def test_long_metric_names_are_data_not_identifiers(client: httpx.AsyncClient) -> None:
    """Metrics differing only in case, or named like a key column, pivot into separate columns."""
    acc_upper, acc_lower = [0.6, 0.2, 0.8, 0.4, 0.0, 0.6], [0.8, 0.6, 0.4, 0.2, 0.0, 0.8]
    key_named = [0.1, 0.5, 0.2, 0.9, 0.3, 0.4]
    rows = []
    for i in range(6):
        for name, series in (("Acc", acc_upper), ("acc", acc_lower), ("dataset_id", key_named)):
            rows.append({"dataset_id": f"r{i}", "metric_name": name, "metric_score": series[i]})
    for source in ("inline", "stored"):
        if source == "stored":
            ds = await _load(client, [{**r, "evaluation_name": "e", "query": "q", "actual_output": "o"} for r in rows])
            params: dict[str, str] = {"dataset_id": ds}
            body: Any = None
        else:
            params, body = {}, rows
        c = (
            await client.post(
                "/api/analytics/correlation", params={**params, "metrics": "Acc,acc,dataset_id"}, json=body
            )
        ).json()
        assert c["correlation"]["Acc"]["acc"] == pytest.approx(float(np.corrcoef(acc_upper, acc_lower)[0, 1]))
        assert c["correlation"]["acc"]["dataset_id"] == pytest.approx(float(np.corrcoef(acc_lower, key_named)[0, 1]))
        sc = (
            await client.post(
                "/api/analytics/scatter", params={**params, "x_metric": "Acc", "y_metric": "acc"}, json=body
            )
        ).json()
        assert sc["x"] == acc_upper and sc["y"] == acc_lower and sc["ids"] == [f"r{i}" for i in range(6)]


async def test_long_rows_without_dataset_id_agree_inline_and_stored(client: httpx.AsyncClient) -> None:
    """A flat upload keyed by ``id`` keeps its records although §4.3 fills dataset_id with one constant."""
    xs, ys = [0.996, 0.238, 0.37, 0.013, 0.259, 0.626], [0.47, 0.544, 0.604, 0.837, 0.234, 0.066]
    rows = [
        {"id": f"k{i}", "metric_name": m, "metric_score": v} for i in range(6) for m, v in (("x", xs[i]), ("y", ys[i]))
    ]
    ds = await _load(client, rows)
    for params, body in (({"dataset_id": ds}, None), ({}, rows)):
        s = (await client.post("/api/analytics/summary", params=params, json=body)).json()
        assert s["total_records"] == 6
        c = (await client.post("/api/analytics/correlation", params={**params, "metrics": "x,y"}, json=body)).json()
        assert c["correlation"]["x"]["y"] == pytest.approx(float(np.corrcoef(xs, ys)[0, 1]))
        sc = (
            await client.post("/api/analytics/scatter", params={**params, "x_metric": "x", "y_metric": "y"}, json=body)
        ).json()
        assert sorted(zip(sc["x"], sc["y"], strict=True)) == sorted(zip(xs, ys, strict=True))
    # Only metric columns: every row belongs to the one record the §4.3 fill would make.
    bare = [{"metric_name": "x", "metric_score": v} for v in (0.0, 0.1, 0.2, 0.3)] + [
        {"metric_name": "y", "metric_score": v} for v in (1.0, 1.1, 1.2, 1.3)
    ]
    s = (await client.post("/api/analytics/summary", json=bare)).json()
    assert s["total_records"] == 1 and s["summary"][0]["mean"] == pytest.approx(0.15)
    sc = (await client.post("/api/analytics/scatter", params={"x_metric": "x", "y_metric": "y"}, json=bare)).json()
    assert sc["x"] == [pytest.approx(0.15)] and sc["y"] == [pytest.approx(1.15)]


async def test_the_rows_an_upload_returns_analyse_like_the_stored_dataset(client: httpx.AsyncClient) -> None:
    """The response rows carry §4.3's filled dataset_id/evaluation_name constants; posting them back
    (the Ref flow) gives the records, correlation and scatter of the stored dataset."""
    xs, ys = [0.1, 0.5, 0.9], [0.2, 0.4, 0.95]
    csv = "query,metric_name,metric_score\n" + "".join(
        f"q{i},m1,{x}\nq{i},m2,{y}\n" for i, (x, y) in enumerate(zip(xs, ys, strict=True))
    )
    up = await client.post("/api/data/upload", files={"file": ("t.csv", csv.encode(), "text/csv")})
    assert up.status_code == 200, up.text
    returned = up.json()["data"]
    assert {r["dataset_id"] for r in returned} == {"test_case_1"}
    r_expected = float(np.corrcoef(xs, ys)[0, 1])
    for body in (None, returned):
        s = (await client.post("/api/analytics/summary", json=body)).json()
        assert s["total_records"] == 3
        c = (await client.post("/api/analytics/correlation", params={"metrics": "m1,m2"}, json=body)).json()
        assert c["correlation"]["m1"]["m2"] == pytest.approx(r_expected)
        sc = (
            await client.post("/api/analytics/scatter", params={"x_metric": "m1", "y_metric": "m2"}, json=body)
        ).json()
        assert sorted(zip(sc["x"], sc["y"], strict=True)) == sorted(zip(xs, ys, strict=True))
        assert sc["ids"] == ["test_case_1"] * 3
    # A dataset_id the user gave keeps identifying records, even when it is one value.
    one = [{"dataset_id": "case-7", "query": "q", "metric_name": f"m{i}", "metric_score": 0.5} for i in range(3)]
    assert (await client.post("/api/analytics/summary", json=one)).json()["total_records"] == 1
    # ... and rows of that id with different queries are different records (spec §4.5's index)
    three = [{**row, "query": f"q{i}", "metric_name": "m1"} for i, row in enumerate(one)]
    assert (await client.post("/api/analytics/summary", json=three)).json()["total_records"] == 3


async def test_ids_beyond_int64_posted_back_stay_distinct(client: httpx.AsyncClient) -> None:
    """20-digit ids are exact in the stored dataset (HUGEINT) and in posted rows (were doubles: merged)."""
    csv = "dataset_id,metric_name,metric_score\n12345678901234567890,acc,0.5\n12345678901234567891,acc,0.7\n"
    up = await client.post("/api/data/upload", files={"file": ("ids.csv", csv.encode(), "text/csv")})
    returned = up.json()["data"]
    assert [r["dataset_id"] for r in returned] == [12345678901234567890, 12345678901234567891]
    for body in (None, returned):
        assert (await client.post("/api/analytics/summary", json=body)).json()["total_records"] == 2


async def test_an_empty_column_is_no_metric_inline_or_stored(client: httpx.AsyncClient) -> None:
    """An all-empty column (the sample's ``error``) is text in the stored dataset and in posted rows alike."""
    csv = MONITORING_SAMPLE.read_bytes()
    up = await client.post("/api/data/upload", files={"file": ("m.csv", csv, "text/csv")})
    assert up.status_code == 200, up.text
    returned = up.json()["data"]
    assert all(r["error"] is None for r in returned)
    expected = ["latency_ms", "relevance_score", "coherence_score", "accuracy_score"]
    for body in (None, returned):
        c = (await client.post("/api/analytics/correlation", json=body)).json()
        assert c["metrics"] == expected
        radar = (await client.post("/api/analytics/radar", json=body)).json()
        assert radar["metrics"] == expected


async def test_scatter_columns_named_like_internal_aliases(client: httpx.AsyncClient) -> None:
    """A colour column named ``__axis_p0`` cannot shadow the x values (was a 500)."""
    rows = [{"dataset_id": f"d{i}", "__axis_p0": f"c{i % 2}", "x": i / 10, "y": i / 5} for i in range(4)]
    r = await client.post(
        "/api/analytics/scatter", params={"x_metric": "x", "y_metric": "y", "color_by": "__axis_p0"}, json=rows
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["x"] == [0.0, 0.1, 0.2, 0.3] and got["y"] == [0.0, 0.2, 0.4, 0.6]
    assert got["color"] == ["c0", "c1", "c0", "c1"] and got["ids"] == ["d0", "d1", "d2", "d3"]


async def test_correlation_is_clamped_and_group_metric_clash(client: httpx.AsyncClient) -> None:
    a = [i * 0.1 for i in range(8)]
    rows = [{"a": a[i], "c": 1 - i * 0.05, "group": float(i % 2), "g": "AB"[i % 2]} for i in range(8)]
    c = (await client.post("/api/analytics/correlation", params={"metrics": "a,c"}, json=rows)).json()
    assert c["correlation"]["a"]["c"] == -1.0 and c["correlation"]["a"]["a"] == 1.0
    r = await client.post("/api/analytics/comparison", params={"group_by": "g", "metrics": "a,group"}, json=rows)
    assert r.status_code == 400 and "'group'" in r.json()["detail"]
    comp = (await client.post("/api/analytics/comparison", params={"group_by": "g"}, json=rows)).json()
    assert comp["metrics"] == ["a", "c"] and [e["group"] for e in comp["comparison"]] == ["A", "B"]
    assert comp["comparison"][0]["a"]["mean"] == pytest.approx(statistics.mean(a[0::2]))


async def test_wide_rows_with_many_metric_columns(client: httpx.AsyncClient) -> None:
    """1,500 metric columns (inline and stored) are answered exactly, NaN/inf/null skipped, in seconds.

    One SELECT per column joined by UNION ALL, or a finite check per column, made DuckDB's planner
    quadratic in the column count (3,000 inline columns: minutes and 11 GB of RSS).
    """
    n = 1500
    rows = [
        {"dataset_id": f"d{r}", "grp": "AB"[r % 2], **{f"c{i}": (i * 0.001 + r) for i in range(n)}} for r in range(3)
    ]
    rows[2]["c7"] = None  # missing in one record
    body = json.dumps(rows)
    started = time.monotonic()
    r = await client.post("/api/analytics/summary", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    summary = {s["metric_name"]: s for s in r.json()["summary"]}
    assert len(summary) == n and r.json()["total_records"] == 3
    assert summary["c0"] == {
        "metric_name": "c0",
        "mean": 1.0,
        "std": 1.0,
        "min": 0.0,
        "max": 2.0,
        "count": 3,
        "passing_rate": 2 / 3,
    }
    assert summary["c7"]["count"] == 2 and summary["c7"]["mean"] == pytest.approx(0.007 + 0.5)
    assert summary["c1499"]["mean"] == pytest.approx(1.499 + 1)
    comp = (
        await client.post(
            "/api/analytics/comparison",
            params={"group_by": "grp"},
            content=body,
            headers={"content-type": "application/json"},
        )
    ).json()
    assert comp["groups"] == ["A", "B"] and len(comp["metrics"]) == n
    assert comp["comparison"][0]["c3"] == {"mean": pytest.approx(0.003 + 1), "std": pytest.approx(2**0.5), "count": 2}
    assert comp["comparison"][1]["c3"] == {"mean": pytest.approx(1.003), "std": 0.0, "count": 1}
    assert time.monotonic() - started < 30  # the old per-column UNION ALL took minutes here

    # Stored: the same file uploaded (annotation format keeps it wide), NaN/inf cells are missing values.
    header = ["dataset_id", "evaluation_name", "query", "actual_output", *(f"c{i}" for i in range(n))]
    lines = [",".join(header)]
    for r_ in range(3):
        cells = [str(i * 0.001 + r_) for i in range(n)]
        if r_ == 2:
            cells[7:10] = ["nan", "inf", ""]
        lines.append(",".join([f"d{r_}", "e", "q", "o", *cells]))
    up = await client.post("/api/data/upload", files={"file": ("wide.csv", "\n".join(lines) + "\n", "text/csv")})
    assert up.status_code == 200, up.text
    stored = (await client.post("/api/analytics/summary", params={"dataset_id": up.json()["dataset_id"]})).json()
    by_name = {s["metric_name"]: s for s in stored["summary"]}
    assert len(by_name) == n and stored["total_records"] == 3
    for name in ("c7", "c8", "c9"):
        assert by_name[name]["count"] == 2 and by_name[name]["max"] == pytest.approx(int(name[1:]) * 0.001 + 1)
    dist = (
        await client.post("/api/analytics/distribution", params={"dataset_id": up.json()["dataset_id"], "metric": "c8"})
    ).json()
    assert dist["values"] == pytest.approx([0.008, 1.008]) and dist["values_total"] == 2


async def test_correlation_refuses_more_metrics_than_the_cap(client: httpx.AsyncClient) -> None:
    """A correlation matrix grows with the square of its metrics: beyond 100 it is a 400, not an OOM 500."""
    rows = [{f"c{i}": float((r * (i + 1)) % 7) for i in range(101)} for r in range(6)]
    r = await client.post("/api/analytics/correlation", json=rows)
    assert r.status_code == 400
    assert r.json()["detail"] == (
        "A correlation matrix takes at most 100 metrics; this request has 101. "
        "Name the metrics to correlate in 'metrics'"
    )
    names = [f"c{i}" for i in range(100)]
    r = await client.post("/api/analytics/correlation", params={"metrics": ",".join(names)}, json=rows)
    assert r.status_code == 200, r.text
    got = r.json()["correlation"]
    assert len(got) == 100 and got["c0"]["c0"] == 1.0
    expected = np.corrcoef([row["c1"] for row in rows], [row["c2"] for row in rows])[0, 1]
    assert got["c1"]["c2"] == pytest.approx(expected)


async def test_json_rows_over_the_body_cap_are_refused(make_settings: Any, make_client: Any) -> None:
    """Posted rows are parsed whole (about 10x their size in memory): MAX_UPLOAD_MB caps them as it caps uploads."""
    rows = [{"dataset_id": f"d{i}", "a": i * 0.5, "b": "x" * 40} for i in range(25_000)]  # ~1.5 MB of JSON
    body = json.dumps(rows).encode()
    assert len(body) > 1024 * 1024
    async with make_client(make_settings(max_upload_mb=1)) as client:
        expected = (
            "Request body is larger than the limit of 1 MB (MAX_UPLOAD_MB); "
            "send fewer rows, or upload them as a CSV file and analyse the stored dataset"
        )
        headers = {"content-type": "application/json"}
        # declared length: refused before the body is read
        r = await client.post("/api/analytics/summary", content=body, headers=headers)
        assert r.status_code == 413 and r.json() == {"detail": expected}

        async def chunks() -> Any:  # no Content-Length: cut off once the bytes read pass the cap
            for i in range(0, len(body), 64 * 1024):
                yield body[i : i + 64 * 1024]

        for path in ("/api/analytics/summary", "/api/data/convert-tree"):
            r = await client.post(path, content=chunks(), headers=headers)
            assert r.status_code == 413 and r.json() == {"detail": expected}
        # A multipart content type does not lift the cap (FastAPI reads such a body whole, and its 422
        # echoed it back); past the uploads' own slack it gets the uploads' message.
        big = body + b" " * (256 * 1024)
        multipart = {"content-type": "multipart/form-data; boundary=x"}
        r = await client.post("/api/analytics/summary", content=big, headers=multipart)
        assert r.status_code == 413 and r.json() == {"detail": "Upload is larger than the upload limit of 1 MB"}

        async def big_chunks() -> Any:
            for i in range(0, len(big), 64 * 1024):
                yield big[i : i + 64 * 1024]

        r = await client.post("/api/analytics/summary", content=big_chunks(), headers=multipart)
        assert r.status_code == 413 and r.json() == {"detail": "Upload is larger than the upload limit of 1 MB"}
        small = json.dumps(rows[:1000]).encode()
        r = await client.post("/api/analytics/summary", content=small, headers=headers)
        assert r.status_code == 200 and r.json()["total_records"] == 1000
        assert r.json()["summary"][0]["mean"] == pytest.approx(sum(i * 0.5 for i in range(1000)) / 1000)
