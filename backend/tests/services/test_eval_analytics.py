"""Eval analytics (§5): numbers checked against numpy/statistics on the same rows, inline == stored."""

from __future__ import annotations

import io
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.datastructures import UploadFile

from app.errors import Invalid, NotFound
from app.services import data_processor as dp
from app.services import eval_analytics as ea
from app.services.duckdb_store import DuckDBStore

METRICS = ["m_a", "m_b", "m_c", "const", "flat"]
GROUPS = ["g1", "g2", "g3"]


def make_long_rows(n: int = 60, seed: int = 7) -> list[dict[str, Any]]:
    """Long-format rows with nulls; 'const' has one value everywhere, 'flat' is zero-variance with gaps."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for i in range(n):
        base = float(rng.uniform(0, 1))
        scores = {
            "m_a": round(base, 4),
            "m_b": round(min(1.0, max(0.0, base * 0.6 + float(rng.normal(0.2, 0.15)))), 4),
            "m_c": round(float(rng.uniform(0, 1)), 4),
            "const": 0.75,
            "flat": 0.5,
        }
        if i % 7 == 0:
            scores["m_b"] = None
        if i % 5 == 0:
            scores["m_c"] = None
        if i % 2 == 0:
            scores["flat"] = None
        for m in METRICS:
            rows.append(
                {
                    "dataset_id": f"d{i:03d}",
                    "evaluation_name": GROUPS[i % 3],
                    "metric_name": m,
                    "metric_score": scores[m],
                    "metric_type": "metric",
                }
            )
    return rows


def to_wide(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        rec = out.setdefault(r["dataset_id"], {"dataset_id": r["dataset_id"], "evaluation_name": r["evaluation_name"]})
        rec[r["metric_name"]] = r["metric_score"]
    return list(out.values())


def values(rows: list[dict[str, Any]], metric: str, group: str | None = None) -> list[float]:
    return [
        r["metric_score"]
        for r in rows
        if r["metric_name"] == metric
        and r["metric_score"] is not None
        and (group is None or r["evaluation_name"] == group)
    ]


def rows_to_csv(rows: list[dict[str, Any]]) -> bytes:
    cols = list(rows[0])
    lines = [",".join(cols)] + [",".join("" if r[c] is None else str(r[c]) for c in cols) for r in rows]
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def long_rows() -> list[dict[str, Any]]:
    return make_long_rows()


@pytest.fixture
async def stored(store: DuckDBStore, long_rows: list[dict[str, Any]], tmp_path: Path) -> str:
    up = UploadFile(io.BytesIO(rows_to_csv(long_rows)), filename="long.csv")
    res = await dp.upload_eval_csv(store, up, max_bytes=10**8, spool_dir=tmp_path / "spool", row_cap=10)
    return res.dataset_id


def sources(long_rows: list[dict[str, Any]]) -> list[list[dict[str, Any]] | None]:
    """Bodies: none (the store's latest), inline long rows, inline wide rows: all must give the same numbers."""
    return [None, long_rows, to_wide(long_rows)]


def test_parse_metrics_forms() -> None:
    assert ea.parse_metrics(None) is None
    assert ea.parse_metrics([]) is None
    # every empty form means "not given", as an empty body list does (the frontend sends "[]")
    assert ea.parse_metrics(["[]"]) is None and ea.parse_metrics([""]) is None and ea.parse_metrics(" , ") is None
    assert ea.parse_metrics(["a,b", '["c", "d"]', "a", " e "]) == ["a", "b", "c", "d", "e"]
    assert ea.parse_metrics('["x","y"]') == ["x", "y"]
    assert ea.parse_metrics(None, ["z"]) == ["z"]
    with pytest.raises(Invalid, match="JSON"):
        ea.parse_metrics("[1, 2")


def test_parse_body_forms() -> None:
    assert ea.parse_body([{"a": 1}]) == ([{"a": 1}], None, None)
    assert ea.parse_body({"data": [{"a": 1}], "metrics": "a,b", "dataset_id": "eval_x"}) == (
        [{"a": 1}],
        ["a", "b"],
        "eval_x",
    )
    with pytest.raises(Invalid):
        ea.parse_body({"data": [1, 2]})


async def test_summary_matches_statistics(store: DuckDBStore, stored: str, long_rows: list[dict[str, Any]]) -> None:
    for body in sources(long_rows):
        res = await ea.summary(store, body)
        assert res.total_records == 60
        by = {s.metric_name: s for s in res.summary}
        assert set(by) == set(METRICS)
        for m in METRICS:
            v = values(long_rows, m)
            s = by[m]
            assert s.count == len(v)
            assert s.mean == pytest.approx(statistics.mean(v))
            assert s.std == pytest.approx(statistics.stdev(v))  # n−1
            assert (s.min, s.max) == (min(v), max(v))
            assert s.passing_rate == pytest.approx(sum(x >= 0.5 for x in v) / len(v))


async def test_summary_std_zero_for_single_value(store: DuckDBStore) -> None:
    res = await ea.summary(store, [{"a": 0.3, "b": None}, {"a": None, "b": None}])
    assert [s.model_dump() for s in res.summary] == [
        {"metric_name": "a", "mean": 0.3, "std": 0.0, "min": 0.3, "max": 0.3, "count": 1, "passing_rate": 0.0}
    ]
    assert res.total_records == 2


@pytest.mark.parametrize("bins", [1, 7, 20])
async def test_distribution_matches_numpy(
    store: DuckDBStore, stored: str, long_rows: list[dict[str, Any]], bins: int
) -> None:
    v = np.array(values(long_rows, "m_b"))
    counts, edges = np.histogram(v, bins=bins)
    for body in sources(long_rows):
        res = await ea.distribution(store, body, metric="m_b", bins=bins)
        assert res.histogram.counts == counts.tolist()
        assert res.histogram.bin_edges == pytest.approx(edges.tolist())
        assert sorted(res.values) == sorted(v.tolist())
        st = res.stats
        assert st.mean == pytest.approx(float(v.mean()))
        assert st.median == pytest.approx(float(np.median(v)))
        assert st.std == pytest.approx(float(v.std(ddof=1)))
        assert st.q25 == pytest.approx(float(np.quantile(v, 0.25, method="linear")))
        assert st.q75 == pytest.approx(float(np.quantile(v, 0.75, method="linear")))


async def test_distribution_min_equals_max_and_edge_values(store: DuckDBStore) -> None:
    res = await ea.distribution(store, [{"c": 0.75}, {"c": 0.75}], metric="c", bins=4)
    counts, edges = np.histogram([0.75, 0.75], bins=4)  # numpy uses [v-0.5, v+0.5] too
    assert res.histogram.bin_edges == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.25])
    assert res.histogram.bin_edges == pytest.approx(edges.tolist())
    assert res.histogram.counts == counts.tolist() == [0, 0, 2, 0]
    # last bin right-closed, interior edges go to the right bin
    data = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    res = await ea.distribution(store, [{"x": x} for x in data], metric="x", bins=10)
    assert res.histogram.counts == np.histogram(data, bins=10)[0].tolist()
    assert res.stats.std == pytest.approx(statistics.stdev(data))


async def test_distribution_all_null_and_errors(store: DuckDBStore) -> None:
    res = await ea.distribution(store, [{"x": None, "y": 1.0}], metric="y", bins=3)
    assert res.stats.model_dump() == {"mean": 1.0, "median": 1.0, "std": 0.0, "q25": 1.0, "q75": 1.0}
    with pytest.raises(Invalid, match="Metric 'nope' not found"):
        await ea.distribution(store, [{"y": 1.0}], metric="nope")
    with pytest.raises(Invalid, match="'y' is not numeric; numeric columns: none"):
        await ea.distribution(store, [{"y": "text"}], metric="y")
    with pytest.raises(Invalid, match="'nope' not found; numeric columns: 'a', 'b'"):
        await ea.distribution(store, [{"a": 1.0, "b": 2, "t": "x"}], metric="nope")
    with pytest.raises(Invalid, match="bins"):
        await ea.distribution(store, [{"y": 1.0}], metric="y", bins=0)


def pairwise_r(long_rows: list[dict[str, Any]], a: str, b: str) -> float | None:
    wide = to_wide(long_rows)
    pairs = [(r[a], r[b]) for r in wide if r.get(a) is not None and r.get(b) is not None]
    if len(pairs) < 2:
        return None
    x, y = np.array(pairs).T
    if x.std() == 0 or y.std() == 0:
        return None
    return float(np.corrcoef(x, y)[0, 1])


async def test_correlation_pairwise_complete(store: DuckDBStore, stored: str, long_rows: list[dict[str, Any]]) -> None:
    chosen = ["m_a", "m_b", "m_c", "flat"]
    for body in sources(long_rows):
        res = await ea.correlation(store, body, metrics=chosen)
        assert res.metrics == chosen
        for a in chosen:
            for b in chosen:
                expected = pairwise_r(long_rows, a, b)
                got = res.correlation[a][b]
                if expected is None:
                    assert got is None, (a, b, got)
                else:
                    assert got == pytest.approx(expected), (a, b)
    with pytest.raises(Invalid, match="Need at least 2 metrics"):
        await ea.correlation(store, None, metrics=["m_a", "missing"])


async def test_comparison_one_group_by(store: DuckDBStore, stored: str, long_rows: list[dict[str, Any]]) -> None:
    for body in sources(long_rows):
        res = await ea.comparison(store, body, group_by="evaluation_name", metrics=["m_a", "m_c"])
        assert res.groups == GROUPS and res.metrics == ["m_a", "m_c"]
        for entry in res.comparison:
            for m in ("m_a", "m_c"):
                v = values(long_rows, m, entry["group"])
                assert entry[m]["count"] == len(v)
                assert entry[m]["mean"] == pytest.approx(statistics.mean(v))
                assert entry[m]["std"] == pytest.approx(statistics.stdev(v))
    with pytest.raises(Invalid, match="Column 'nope' not found"):
        await ea.comparison(store, None, group_by="nope", metrics=None)


async def test_comparison_null_groups_dropped_and_empty_metric_omitted(store: DuckDBStore) -> None:
    rows = [
        {"g": "a", "x": 1.0, "y": None},
        {"g": "a", "x": 3.0, "y": None},
        {"g": None, "x": 5.0, "y": 1.0},
        {"g": "b", "x": None, "y": 2.0},
    ]
    res = await ea.comparison(store, rows, group_by="g", metrics=None)
    assert res.groups == ["a", "b"]
    assert res.comparison == [
        {"group": "a", "x": {"mean": 2.0, "std": pytest.approx(math.sqrt(2)), "count": 2}},
        {"group": "b", "y": {"mean": 2.0, "std": 0.0, "count": 1}},
    ]


async def test_group_by_column_named_like_internal_columns(store: DuckDBStore, long_rows: list[dict[str, Any]]) -> None:
    # Long data grouped by its own metric_name, and wide data with columns called "v"/"grp".
    res = await ea.comparison(store, long_rows, group_by="metric_name", metrics=["m_a"])
    assert res.groups == ["m_a"]
    assert res.comparison[0]["m_a"]["mean"] == pytest.approx(statistics.mean(values(long_rows, "m_a")))
    rows = [
        {"v": 1.0, "grp": "a", "metric_name": "x", "w": 2.0, "u": 3.0},
        {"v": 3.0, "grp": "a", "metric_name": "y", "w": 4.0, "u": 5.0},
    ]
    res = await ea.comparison(store, rows, group_by="grp", metrics=["v"])
    assert res.comparison == [{"group": "a", "v": {"mean": 2.0, "std": pytest.approx(math.sqrt(2)), "count": 2}}]
    radar = await ea.radar(store, rows, metrics=["v", "w", "u"], group_by="metric_name")
    assert [t.model_dump() for t in radar.traces] == [
        {"name": "x", "values": [1.0, 2.0, 3.0]},
        {"name": "y", "values": [3.0, 4.0, 5.0]},
    ]


async def test_radar(store: DuckDBStore, stored: str, long_rows: list[dict[str, Any]]) -> None:
    chosen = ["m_a", "m_b", "m_c"]
    for body in sources(long_rows):
        res = await ea.radar(store, body, metrics=chosen, group_by="evaluation_name")
        assert [t.name for t in res.traces] == GROUPS
        for t in res.traces:
            assert t.values == pytest.approx([statistics.mean(values(long_rows, m, t.name)) for m in chosen])
        overall = await ea.radar(store, body, metrics=chosen, group_by=None)
        assert overall.traces[0].name == "Overall"
        assert overall.traces[0].values == pytest.approx([statistics.mean(values(long_rows, m)) for m in chosen])
    with pytest.raises(Invalid, match="Need at least 3 metrics"):
        await ea.radar(store, None, metrics=["m_a", "m_b"], group_by=None)
    # a group_by column that does not exist: the one Overall trace (spec §5: grouping needs an existing column)
    missing = await ea.radar(store, to_wide(long_rows), metrics=chosen, group_by="nope")
    assert [t.name for t in missing.traces] == ["Overall"]
    # means whose sums overflow are taken over scaled values (as /summary does): 1e308 + 1e308 - 1e308
    big = [{"a": 1.0, "b": 2.0, "c": c} for c in (1e308, 1e308, -1e308)]
    res = await ea.radar(store, big, metrics=["a", "b", "c"], group_by=None)
    assert res.traces[0].values == [1.0, 2.0, pytest.approx(1e308 / 3, rel=1e-12)]
    # a group without values of a metric shows it as 0.0
    rows = [{"g": "x", "a": 1.0, "b": None, "c": 2.0}, {"g": "y", "a": 3.0, "b": 5.0, "c": 4.0}]
    nulls = await ea.radar(store, rows, metrics=["a", "b", "c"], group_by="g")
    assert [t.model_dump() for t in nulls.traces] == [
        {"name": "x", "values": [1.0, 0.0, 2.0]},
        {"name": "y", "values": [3.0, 5.0, 4.0]},
    ]


async def test_scatter_drops_null_pairs(store: DuckDBStore, stored: str, long_rows: list[dict[str, Any]]) -> None:
    wide = to_wide(long_rows)
    expected = sorted(
        (r["dataset_id"], r["m_a"], r["m_b"], r["evaluation_name"])
        for r in wide
        if r["m_a"] is not None and r["m_b"] is not None
    )
    for body in sources(long_rows):
        res = await ea.scatter(store, body, x_metric="m_a", y_metric="m_b", color_by="evaluation_name")
        got = sorted(zip(res.ids, res.x, res.y, res.color, strict=True))
        assert got == expected
        assert res.total_points == len(expected) and res.truncated is False
    with pytest.raises(Invalid, match="X metric 'zz' not found"):
        await ea.scatter(store, None, x_metric="zz", y_metric="m_a", color_by=None)
    with pytest.raises(Invalid, match="Y metric 'zz' not found"):
        await ea.scatter(store, None, x_metric="m_a", y_metric="zz", color_by=None)


async def test_scatter_and_values_capped(store: DuckDBStore, tmp_path: Path) -> None:
    n = ea.SCATTER_POINT_CAP + 5000
    lines = ["dataset_id,metric_name,metric_score"]
    for i in range(n):
        lines.append(f"r{i},x,{(i % 997) / 997}")
        lines.append(f"r{i},y,{(i % 991) / 991}")
    up = UploadFile(io.BytesIO(("\n".join(lines) + "\n").encode()), filename="big.csv")
    await dp.upload_eval_csv(store, up, max_bytes=10**8, spool_dir=tmp_path, row_cap=10)
    res = await ea.scatter(store, None, x_metric="x", y_metric="y", color_by=None)
    assert res.total_points == n and res.truncated is True
    assert len(res.x) == len(res.y) == ea.SCATTER_POINT_CAP
    dist = await ea.distribution(store, None, metric="x", bins=10)
    assert dist.values_total == n and dist.values_truncated is True
    assert len(dist.values) == ea.DISTRIBUTION_VALUE_CAP
    assert sum(dist.histogram.counts) == n


async def test_dataset_selection(store: DuckDBStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="No eval data loaded"):
        await ea.summary(store, None)
    ids = []
    for scale in (1.0, 0.5):
        rows = [{"dataset_id": f"d{i}", "metric_name": "s", "metric_score": scale * i / 10} for i in range(5)]
        up = UploadFile(io.BytesIO(rows_to_csv(rows)), filename="s.csv")
        res = await dp.upload_eval_csv(store, up, max_bytes=10**6, spool_dir=tmp_path, row_cap=10)
        ids.append(res.dataset_id)
    latest = await ea.summary(store, None)
    first = await ea.summary(store, None, dataset_id=ids[0])
    assert latest.summary[0].max == 0.2 and first.summary[0].max == 0.4
    # source=store ignores inline rows; an explicit dataset_id beats inline rows
    forced = await ea.summary(store, [{"q": 9.0}], source="store")
    assert forced.summary[0].metric_name == "s"
    with pytest.raises(NotFound):
        await ea.summary(store, None, dataset_id="eval_missing")
    with pytest.raises(Invalid, match="source=body"):
        await ea.summary(store, None, source="body")
