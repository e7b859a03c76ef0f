"""``/api/data`` over HTTP: Ref shapes, bad input → clear 4xx with the previous dataset still served."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import statistics
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.config import Settings
from tests.conftest import PgSchema
from tests.routers.test_database import create_pg_text_table
from tests.services.test_data_processor import EXAMPLE_FORMATS

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"
BOUNDARY = "axisboundary7MA4YWxkTrZu0gW"


def multipart_stream(filename: str, total_bytes: int, counter: dict[str, int]) -> tuple[AsyncIterator[bytes], int]:
    """A multipart body whose CSV part is generated lazily, 1 MiB at a time; returns (stream, length)."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    line = b"metric_name,metric_score\n" + b"acc,0.5\n" * 100

    async def gen() -> AsyncIterator[bytes]:
        yield head
        remaining = total_bytes
        chunk = (line * (1024 * 1024 // len(line) + 1))[: 1024 * 1024]
        while remaining > 0:
            part = chunk[: min(remaining, len(chunk))]
            remaining -= len(part)
            counter["sent"] = counter.get("sent", 0) + len(part)
            yield part
        yield tail

    return gen(), len(head) + total_bytes + len(tail)


async def upload(client: httpx.AsyncClient, data: bytes, name: str = "data.csv") -> httpx.Response:
    return await client.post("/api/data/upload", files={"file": (name, data, "text/csv")})


async def summary_of_latest(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.post("/api/analytics/summary")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def model_scores() -> dict[str, list[float]]:
    with (SAMPLES / "example_model.csv").open(newline="", encoding="utf-8") as fh:
        out: dict[str, list[float]] = {}
        for row in csv.DictReader(fh):
            if row["metric_score"]:
                out.setdefault(row["metric_name"], []).append(float(row["metric_score"]))
    return out


async def test_upload_ref_shape_and_store(make_settings: Callable[..., Settings], make_client: Any) -> None:
    settings = make_settings(upload_response_row_cap=5)
    async with make_client(settings) as client:
        data = (SAMPLES / "example_model.csv").read_bytes()
        r = await upload(client, data, name="Example_Model.CSV")
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {
            "success",
            "format",
            "row_count",
            "columns",
            "preview",
            "message",
            "data",
            "dataset_id",
            "data_truncated",
        }
        n_rows = sum(1 for _ in csv.DictReader(io.StringIO(data.decode())))
        assert body["success"] is True and body["format"] == "tree_format"
        assert body["row_count"] == n_rows
        assert len(body["preview"]) == 10 and len(body["data"]) == 5 and body["data_truncated"] is True
        assert body["message"].startswith(f"Tree format with {n_rows} nodes, root: answer_quality")
        datasets = (await client.get("/api/store/datasets")).json()
        listed = datasets.get("datasets", datasets) if isinstance(datasets, dict) else datasets
        assert any(d["dataset_id"] == body["dataset_id"] for d in listed)
        summ = await summary_of_latest(client)
        expected = model_scores()
        got = {s["metric_name"]: s for s in summ["summary"]}
        for m, v in expected.items():
            assert got[m]["mean"] == pytest.approx(statistics.mean(v))
            assert got[m]["std"] == pytest.approx(statistics.stdev(v))


async def test_bad_inputs_are_4xx_and_previous_dataset_still_served(client: httpx.AsyncClient) -> None:
    bom = b"\xef\xbb\xbf" + (SAMPLES / "example_model.csv").read_bytes()
    r = await upload(client, bom, name="bom.csv")
    assert r.status_code == 200, r.text
    assert r.json()["columns"][0] == "dataset_id"
    good_id = r.json()["dataset_id"]
    before = await summary_of_latest(client)

    cases: list[tuple[str, bytes, int, str]] = [
        ("latin1.csv", "metric_name,metric_score\ncafé,0.5\n".encode("latin-1"), 400, "not valid UTF-8"),
        ("empty.csv", b"", 400, "Empty CSV file"),
        ("header.csv", b"metric_name,metric_score\n", 400, "header row but no data rows"),
        ("image.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), 400, "binary"),
        ("ragged.csv", b"metric_name,metric_score\nacc,0.5\nacc,0.6,extra\n", 400, "on line 3"),
        ("text.csv", b"metric_name,metric_score\nacc,0.5\nacc,great\n", 400, "'metric_score' must be numeric"),
        ("dup.csv", b"metric_name,metric_score,metric_name\nacc,0.5,x\n", 400, "Duplicate column name"),
        ("unknown.csv", b"a,b\n1,2\n", 400, "Could not detect valid data format"),
        ("semi.csv", b"metric_name;metric_score\nacc;1\n", 400, "separated by semicolons"),
        ("tabs.csv", b"metric_name\tmetric_score\nacc\t1\n", 400, "separated by tabs"),
        ("blank.csv", b"\nmetric_name,metric_score\nacc,1\n", 400, "first line of the CSV file is empty"),
        ("notes.txt", b"metric_name,metric_score\nacc,0.5\n", 400, "Only CSV files are supported"),
    ]
    for name, data, status, message in cases:
        r = await upload(client, data, name=name)
        assert r.status_code == status, (name, r.text)
        assert message in r.json()["detail"], (name, r.json())
        assert await summary_of_latest(client) == before, name
    r = await client.post("/api/data/upload", files={"other": ("x.csv", b"a\n1\n")})
    assert r.status_code == 400 and r.json()["detail"] == "No file provided"
    r = await client.post("/api/analytics/summary", params={"dataset_id": good_id})
    assert r.json() == before


async def test_250mb_upload_refused(make_settings: Callable[..., Settings], make_client: Any) -> None:
    assert Settings(_env_file=None).max_upload_mb == 200  # type: ignore[call-arg]
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    # default cap (200 MB): the declared 250 MB body is refused before it is read
    async with make_client(make_settings()) as client:
        await upload(client, (SAMPLES / "example_model.csv").read_bytes())
        before = await summary_of_latest(client)
        counter: dict[str, int] = {}
        stream, length = multipart_stream("big.csv", 250 * 1024 * 1024, counter)
        r = await client.post("/api/data/upload", content=stream, headers={**headers, "content-length": str(length)})
        assert r.status_code == 413 and "200 MB" in r.json()["detail"]
        assert counter.get("sent", 0) < 250 * 1024 * 1024
        assert await summary_of_latest(client) == before
    # small cap, no Content-Length (chunked): the spool stops at the cap
    async with make_client(make_settings(max_upload_mb=1)) as client:
        await upload(client, (SAMPLES / "example_model.csv").read_bytes())
        before = await summary_of_latest(client)
        counter = {}
        stream, _ = multipart_stream("big.csv", 8 * 1024 * 1024, counter)
        r = await client.post("/api/data/upload", content=stream, headers=headers)
        assert r.status_code == 413, r.text
        assert "1 MB" in r.json()["detail"]
        # refused while reading: the multipart parser never saw (or spooled) the rest of the body
        assert counter["sent"] <= 2 * 1024 * 1024  # of 8 MiB: the cap (1 MB + slack) is passed in chunk 2
        assert await summary_of_latest(client) == before
        spool = Path(make_settings(max_upload_mb=1).data_dir) / "spool"
        assert not spool.exists() or list(spool.iterdir()) == []


async def test_detect_format(client: httpx.AsyncClient) -> None:
    data = (SAMPLES / "annotation_sample.csv").read_bytes()
    r = await client.post("/api/data/detect-format", files={"file": ("a.csv", data)})
    assert r.status_code == 200 and r.json()["format"] == "simple_judgment"
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    assert r.json()["row_count"] == len(rows) and r.json()["columns"] == list(rows[0])
    r = await client.post("/api/data/detect-format", files={"file": ("a.csv", b"x,y\n1,2\n3\n")})
    assert r.status_code == 400 and "line 3" in r.json()["detail"]


async def test_convert_tree_and_prepare_analytics(client: httpx.AsyncClient) -> None:
    rows = [
        {"dataset_id": "d1", "query": "q", "metric_name": "quality", "metric_score": 0.8, "metric_type": "metric"},
        {"dataset_id": "d1", "query": "q", "metric_name": "faith", "metric_score": 0.6, "metric_type": "component"},
    ]
    r = await client.post("/api/data/convert-tree", json=rows)
    assert r.json() == {
        "success": True,
        "columns": ["dataset_id", "query", "data_metadata", "quality", "faith"],
        "data": [{"dataset_id": "d1", "query": "q", "data_metadata": "{}", "quality": 0.8, "faith": 0.6}],
    }
    r = await client.post("/api/data/prepare-analytics", params={"format_type": "tree_format"}, json=rows)
    body = r.json()
    assert body["metric_columns"] == ["quality", "faith"]
    assert body["mapping"] == {"metrics": ["quality"], "components": ["faith"]}
    r = await client.post("/api/data/prepare-analytics", json=rows)
    assert r.status_code == 422


async def test_prepare_analytics_takes_back_an_uploaded_wide_eval_runner_export(client: httpx.AsyncClient) -> None:
    """An eval-runner export without metric rows uploads as ``eval_runner`` (wide); its rows and format posted
    back to prepare-analytics give its numeric columns as metrics (spec §4.6 "otherwise"), not a 400."""
    up = await upload(
        client, b"run_id,dataset_id,passed,score,latency_ms,note\nr1,d1,true,0.5,3,a\nr1,d2,false,0.25,4,b\n"
    )
    assert up.status_code == 200, up.text
    assert up.json()["format"] == "eval_runner"
    r = await client.post(
        "/api/data/prepare-analytics", params={"format_type": up.json()["format"]}, json=up.json()["data"]
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["metric_columns"] == ["score", "latency_ms"]
    assert [row["score"] for row in body["data"]] == [0.5, 0.25]
    # A long eval-runner export still pivots by metric_name.
    long_rows = [
        {"run_id": "r1", "dataset_id": "d1", "passed": True, "metric_name": "acc", "metric_score": 0.75},
        {"run_id": "r1", "dataset_id": "d2", "passed": False, "metric_name": "acc", "metric_score": 0.25},
    ]
    r = await client.post("/api/data/prepare-analytics", params={"format_type": "eval_runner"}, json=long_rows)
    assert r.status_code == 200, r.text
    assert r.json()["metric_columns"] == ["acc"]
    assert [row["acc"] for row in r.json()["data"]] == [0.75, 0.25]


async def test_prepare_analytics_metric_named_like_a_text_input_column(client: httpx.AsyncClient) -> None:
    """A pivoted metric is a metric column whatever an input column of that name held (spec §4.6: the
    numeric columns of the wide table; critique is only excluded for non-tree data)."""
    rows = [
        {"dataset_id": "d1", "metric_name": "critique", "metric_score": 0.4, "critique": "ok", "parent": None},
        {"dataset_id": "d1", "metric_name": "parent", "metric_score": 0.6, "critique": "ok", "parent": None},
        {"dataset_id": "d1", "metric_name": "acc", "metric_score": 0.7, "critique": "ok", "parent": None},
    ]
    r = await client.post("/api/data/prepare-analytics", params={"format_type": "tree_format"}, json=rows)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["metric_columns"] == ["critique", "parent", "acc"]
    assert body["data"] == [{"dataset_id": "d1", "data_metadata": "{}", "critique": 0.4, "parent": 0.6, "acc": 0.7}]


async def test_case_variants_of_processed_columns_take_the_canonical_name(client: httpx.AsyncClient) -> None:
    """DuckDB folds case: 'Parent' or 'Query' is the processor's 'parent'/'query', so it takes that name."""
    r = await upload(client, b"metric_name,metric_score,Parent,Query,Dataset_ID\nacc,1,,q1,a\nsub,0.5,acc,q1,a\n")
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"parent", "query", "dataset_id"} <= set(body["columns"]) and "Parent" not in body["columns"]
    assert [(row["metric_name"], row["parent"], row["query"], row["dataset_id"]) for row in body["data"]] == [
        ("acc", None, "q1", "a"),
        ("sub", "acc", "q1", "a"),
    ]
    assert body["message"].endswith("root: acc")
    r = await upload(client, b"metric_name,metric_score,experiment_name,Evaluation_Name\nacc,1,x,y\n")
    assert r.status_code == 200 and r.json()["data"][0]["evaluation_name"] == "y"  # no rename onto an existing name


async def test_convert_tree_keeps_metric_names_that_differ_in_case(client: httpx.AsyncClient) -> None:
    recs = [
        {"dataset_id": "a", "evaluation_name": "e", "metric_name": m, "metric_score": v, "metric_type": "metric"}
        for m, v in (("Acc", 1), ("acc", 2), ("acc_metric", 3), ("evaluation_name", 4))
    ]
    body = (await client.post("/api/data/convert-tree", json=recs)).json()
    assert body["data"] == [
        {
            "dataset_id": "a",
            "evaluation_name": "e",
            "data_metadata": "{}",
            "Acc": 1.0,
            "acc": 2.0,
            "acc_metric": 3.0,
            "evaluation_name_metric": 4.0,
        }
    ]
    prep = (await client.post("/api/data/prepare-analytics", params={"format_type": "tree_format"}, json=recs)).json()
    assert prep["metric_columns"] == ["Acc", "acc", "acc_metric", "evaluation_name_metric"]
    assert prep["data"] == body["data"]


@pytest.mark.parametrize(("name", "fmt"), EXAMPLE_FORMATS)
async def test_examples(client: httpx.AsyncClient, name: str, fmt: str) -> None:
    r = await client.get(f"/api/data/example/{name}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["format"] == fmt and "preview" not in body
    with (
        SAMPLES
        / Path(
            {
                "model": "example_model.csv",
                "comparison": "example_model_comparison.csv",
                "annotation": "annotation_sample.csv",
                "align": "align_sample.csv",
            }[name]
        )
    ).open(encoding="utf-8-sig", newline="") as fh:
        assert body["row_count"] == sum(1 for _ in csv.DictReader(fh))


async def test_example_errors(make_settings: Callable[..., Settings], make_client: Any, tmp_path: Path) -> None:
    async with make_client(make_settings(axis_sample_dir=tmp_path / "none")) as client:
        r = await client.get("/api/data/example/unknown")
        assert r.status_code == 404 and "Available" in r.json()["detail"]
        r = await client.get("/api/data/example/model")
        assert r.status_code == 404


def _eval_yaml(settings: Settings, pg: PgSchema, **extra: Any) -> None:
    lines = [
        "eval_db:",
        f"  host: {pg.host}",
        f"  port: {pg.port}",
        f"  database: {pg.database}",
        f"  username: {pg.user}",
        "  ssl_mode: disable",
    ]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in extra.items()]
    settings.config_dir.mkdir(parents=True, exist_ok=True)
    (settings.config_dir / "eval_db.yaml").write_text("\n".join(lines) + "\n")
    settings.reload_yaml()


async def test_eval_db_config_and_import(
    make_settings: Callable[..., Settings], make_client: Any, pg: PgSchema
) -> None:
    settings = make_settings()
    async with make_client(settings) as client:
        r = await client.get("/api/data/eval-db-config")
        assert r.json() == {
            "success": True,
            "configured": False,
            "auto_load": False,
            "has_query": False,
            "row_limit": 10000,
            "query_timeout": 60,
            "config_error": None,
        }
        r = await client.post("/api/data/eval-db-import")
        assert r.status_code == 400 and "not configured" in r.json()["detail"]

    pg.execute("CREATE TABLE ds (dataset_id text, prompt text)")
    pg.execute("INSERT INTO ds VALUES ('a', 'question a'), ('b', 'question b')")
    pg.execute("CREATE TABLE res (dataset_id text, metric text, value float8)")
    pg.execute("INSERT INTO res VALUES ('a', 'acc', 1.0), ('b', 'acc', 0.0), ('b', 'f1', 0.25)")
    settings = make_settings()
    _eval_yaml(
        settings,
        pg,
        dataset_query=f"SELECT * FROM {pg.schema}.ds",
        results_query=f"SELECT * FROM {pg.schema}.res",
        query_timeout=2,
    )
    async with make_client(settings) as client:
        cfg = (await client.get("/api/data/eval-db-config")).json()
        assert cfg["configured"] is True and cfg["has_query"] is True and cfg["query_timeout"] == 2
        r = await client.post("/api/data/eval-db-import")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["message"] == "Imported 3 records from database" and body["format"] == "flat_format"
        assert {(d["dataset_id"], d["query"], d["metric_name"], d["metric_score"]) for d in body["data"]} == {
            ("a", "question a", "acc", 1.0),
            ("b", "question b", "acc", 0.0),
            ("b", "question b", "f1", 0.25),
        }
        summ = await summary_of_latest(client)
        assert {s["metric_name"]: s["mean"] for s in summ["summary"]} == {"acc": 0.5, "f1": 0.25}

    # a query with more rows than row_limit is cut there, and the message says which one
    settings = make_settings()
    _eval_yaml(
        settings,
        pg,
        dataset_query=f"SELECT * FROM {pg.schema}.ds",
        results_query=f"SELECT * FROM {pg.schema}.res ORDER BY dataset_id, metric",
        row_limit=2,
    )
    async with make_client(settings) as client:
        body = (await client.post("/api/data/eval-db-import")).json()
        assert body["message"] == (
            "Imported 2 records from database; the results_query returned more than row_limit (2) rows: "
            "raise row_limit to import them all"
        )
        assert sorted((d["dataset_id"], d["metric_name"]) for d in body["data"]) == [("a", "acc"), ("b", "acc")]

    settings = make_settings()
    _eval_yaml(
        settings,
        pg,
        dataset_query="SELECT 1 AS x",
        results_query="SELECT pg_sleep(4), 'a' AS dataset_id",
        query_timeout=1,
    )
    async with make_client(settings) as client:
        r = await client.post("/api/data/eval-db-import")
        assert r.status_code == 408 and "Query timeout exceeded (1s)" in r.json()["detail"]


async def _import_with(
    make_settings: Callable[..., Settings], make_client: Any, pg: PgSchema, **extra: Any
) -> httpx.Response:
    settings = make_settings()
    _eval_yaml(settings, pg, **extra)
    async with make_client(settings) as client:
        before = (await client.get("/api/store/datasets")).json()["datasets"]
        r: httpx.Response = await client.post("/api/data/eval-db-import")
        if r.status_code != 200:  # a failed import registers nothing
            assert (await client.get("/api/store/datasets")).json()["datasets"] == before
        return r


async def test_eval_db_import_refuses_columns_equal_ignoring_case(
    make_settings: Callable[..., Settings], make_client: Any, pg: PgSchema
) -> None:
    head = "SELECT 'a' AS dataset_id, 'acc' AS metric_name, 1.0 AS metric_score, "
    r = await _import_with(
        make_settings,
        make_client,
        pg,
        dataset_query="SELECT 'a' AS dataset_id",
        results_query=head + '1 AS "X", 2 AS x',
    )
    assert r.status_code == 400
    assert r.json()["detail"] == (
        'The results_query returns columns "X" and "x", whose names differ only in case. Column names are '
        "compared case-insensitively; give one of them another name (AS)."
    )
    r = await _import_with(
        make_settings, make_client, pg, dataset_query="SELECT 'a' AS dataset_id", results_query=head + "1 AS x, 2 AS x"
    )
    assert r.status_code == 400
    assert r.json()["detail"] == 'The results_query returns two columns named "x". Give each column its own name (AS).'
    r = await _import_with(
        make_settings,
        make_client,
        pg,
        results_query=head + "1 AS x",
        dataset_query="SELECT 'a' AS dataset_id, 'q' AS \"Query\", 'q2' AS query",
    )
    assert r.status_code == 400
    assert r.json()["detail"].startswith('The dataset_query returns columns "Query" and "query"')


async def test_eval_db_import_case_insensitive_overlap_keeps_every_value(
    make_settings: Callable[..., Settings], make_client: Any, pg: PgSchema
) -> None:
    pg.execute(
        'CREATE TABLE res_case (dataset_id text, "Query" text, input text, metric text, score float8, '
        '"Notes" text, dataset_notes text)'
    )
    pg.execute(
        "INSERT INTO res_case VALUES ('a', 'Q-res', 'I-res', 'acc', 0.3, 'N-res', 'DN-res'), "
        "('b', 'Q-res-b', 'I-res-b', 'acc', 0.7, NULL, NULL)"
    )
    pg.execute("CREATE TABLE ds_case (dataset_id text, query text, notes text, extra text)")
    pg.execute("INSERT INTO ds_case VALUES ('a', 'q-ds', 'n-ds', 'e-ds')")
    r = await _import_with(
        make_settings,
        make_client,
        pg,
        dataset_query=f"SELECT * FROM {pg.schema}.ds_case",
        results_query=f"SELECT * FROM {pg.schema}.res_case",
    )
    assert r.status_code == 200, r.text
    body = r.json()
    cols = body["columns"]
    assert len({c.lower() for c in cols}) == len(cols)  # no names DuckDB would merge or suffix
    assert not any(c.lower().endswith(("_1", "_2")) for c in cols)
    # "input" keeps its name: its alias target `query` is taken by "Query" (case-insensitive guard).
    # The dataset's query overlaps "Query" → dataset_query; its notes overlap "Notes" but dataset_notes
    # is a results column (results win), so the dataset notes are left out. §4.3 processing then
    # gives "Query" the canonical spelling `query` (the same column to DuckDB).
    first = body["data"][0]
    assert {
        k: first[k]
        for k in ("query", "input", "dataset_query", "metric_name", "metric_score", "Notes", "dataset_notes", "extra")
    } == {
        "query": "Q-res",
        "input": "I-res",
        "dataset_query": "q-ds",
        "metric_name": "acc",
        "metric_score": 0.3,
        "Notes": "N-res",
        "dataset_notes": "DN-res",
        "extra": "e-ds",
    }
    second = body["data"][1]
    assert (second["query"], second["input"], second["dataset_query"], second["extra"], second["metric_score"]) == (
        "Q-res-b",
        "I-res-b",
        None,
        None,
        0.7,
    )
    assert "n-ds" not in [v for row in body["data"] for v in row.values()]


async def test_eval_db_import_query_errors_name_the_query(
    make_settings: Callable[..., Settings], make_client: Any, pg: PgSchema
) -> None:
    pg.execute("CREATE TABLE ds (dataset_id text, prompt text)")
    pg.execute("INSERT INTO ds VALUES ('a', 'question a')")
    pg.execute("CREATE TABLE res (dataset_id text, metric text, value float8)")
    pg.execute("INSERT INTO res VALUES ('a', 'acc', 0.5)")
    s = pg.schema
    # Trailing semicolons and a trailing line comment are fine: each query runs as a subquery.
    r = await _import_with(
        make_settings,
        make_client,
        pg,
        dataset_query=f"SELECT * FROM {s}.ds;",
        results_query=f"SELECT * FROM {s}.res -- the results ; ;",
    )
    assert r.status_code == 200, r.text
    assert [(d["query"], d["metric_name"], d["metric_score"]) for d in r.json()["data"]] == [("question a", "acc", 0.5)]

    r = await _import_with(
        make_settings,
        make_client,
        pg,
        dataset_query=f"SELECT * FROM {s}.ds; SELECT 1",
        results_query=f"SELECT * FROM {s}.res",
    )
    assert r.status_code == 400
    assert r.json()["detail"] == 'Import failed in dataset_query: syntax error at or near ";"'
    r = await _import_with(
        make_settings, make_client, pg, dataset_query=f"SELECT * FROM {s}.ds", results_query=f"SELECT nope FROM {s}.res"
    )
    assert r.status_code == 400
    assert r.json()["detail"] == 'Import failed in results_query: column "nope" does not exist'
    r = await _import_with(
        make_settings,
        make_client,
        pg,
        dataset_query=f"SELECT * FROM {s}.ds",
        results_query="SELECT 'a' AS dataset_id, 'acc' AS metric, 1 / 0 AS value",
    )
    assert r.status_code == 400
    assert r.json()["detail"] == "Import failed in results_query: division by zero"
    # A failure of the source server that is not the query's fault is a 502 (upstream), never a 500.
    pg.execute(
        "CREATE FUNCTION disk_full() RETURNS float8 LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = '53100'; END $$"
    )
    r = await _import_with(
        make_settings,
        make_client,
        pg,
        dataset_query=f"SELECT * FROM {s}.ds",
        results_query=f"SELECT 'a' AS dataset_id, 'acc' AS metric, {s}.disk_full() AS value",
    )
    assert r.status_code == 502
    assert r.json()["detail"] == "Import failed in results_query: could not extend file"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://{user}:{pw}@{host}:notaport/{db}", "the port in the URL is not a number from 1 to 65535"),
        (
            "postgresql://{user}:{pw}@{host}:{port}/{db}?sslmode=bogus",
            "sslmode in the URL must be one of disable, prefer, require, verify-ca, verify-full",
        ),
        (
            "mysql://{user}:{pw}@{host}:{port}/{db}",
            "the URL must start with postgresql:// or postgres:// (only PostgreSQL is supported)",
        ),
    ],
)
async def test_eval_db_import_invalid_url_is_a_clear_400(
    make_settings: Callable[..., Settings],
    make_client: Any,
    pg: PgSchema,
    caplog: pytest.LogCaptureFixture,
    url: str,
    problem: str,
) -> None:
    pw = "Sekr1t-pw-77"
    pg.execute("CREATE TABLE res (dataset_id text, metric text, value float8)")
    pg.execute("INSERT INTO res VALUES ('a', 'acc', 0.5)")
    dsn = url.format(user=pg.user, pw=pw, host=pg.host, port=pg.port, db=pg.database)
    settings = make_settings()
    settings.config_dir.mkdir(parents=True, exist_ok=True)
    (settings.config_dir / "eval_db.yaml").write_text(
        f"eval_db:\n  url: {dsn}\n  ssl_mode: disable\n  dataset_query: SELECT 'a' AS dataset_id\n"
        f"  results_query: SELECT * FROM {pg.schema}.res\n"
    )
    with caplog.at_level(logging.WARNING):
        settings.reload_yaml()
    assert pw not in caplog.text and "eval_db.yaml key 'eval_db'" in caplog.text and problem in caplog.text
    async with make_client(settings) as client:
        assert (await client.get("/api/data/eval-db-config")).json()["configured"] is False
        r = await client.post("/api/data/eval-db-import")
    assert r.status_code == 400
    assert r.json()["detail"] == (
        f"The database settings are invalid and were ignored (eval_db.yaml key 'eval_db': "
        f"url: {problem}). Fix them and restart."
    )
    assert pw not in r.text


async def test_upload_data_rows_rendered_by_the_store(make_settings: Callable[..., Settings], make_client: Any) -> None:
    """The capped `data` rows (rendered as JSON by DuckDB, several windows) equal the file's rows."""
    base = dt.datetime(2024, 5, 1, 12, 0, 0)
    lines = ["dataset_id,query,metric_name,metric_score,ts,flag,note"]
    expected = []
    for i in range(20_000):
        score = None if i % 97 == 0 else round((i * 37 % 1000) / 1000, 3)
        ts = base + dt.timedelta(seconds=i, microseconds=(i % 3) * 250_000)
        note = f'say "hi" {i} – ünï' if i % 5 else ""
        quoted = '"' + note.replace('"', '""') + '"' if note else ""
        lines.append(
            f"item_{i // 2},q{i},m{i % 2},{'' if score is None else score},{ts.isoformat(' ')},{i % 3 == 0},{quoted}"
        )
        expected.append({
            "dataset_id": f"item_{i // 2}", "query": f"q{i}", "metric_name": f"m{i % 2}", "metric_score": score,
            "ts": ts.isoformat(), "flag": i % 3 == 0, "note": note or None,
        })  # fmt: skip
    async with make_client(make_settings(upload_response_row_cap=17_001)) as client:
        r = await upload(client, ("\n".join(lines) + "\n").encode())
        assert r.status_code == 200, r.text
        body = r.json()
    assert body["row_count"] == 20_000 and body["data_truncated"] is True
    data = body["data"]
    assert len(data) == 17_001
    assert [{k: row[k] for k in expected[0]} for row in data] == expected[:17_001]
    assert [{k: row[k] for k in expected[0]} for row in body["preview"]] == expected[:10]


@pytest.mark.parametrize("path", ["/api/monitoring/upload", "/api/human-signals/upload"])
async def test_every_upload_refuses_early_and_alike(
    path: str, make_settings: Callable[..., Settings], make_client: Any
) -> None:
    """Monitoring and human-signals uploads read their file like /api/data/upload: 400 / early 413."""
    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    async with make_client(make_settings()) as client:
        r = await client.post(path, files={"other": ("x.csv", b"a\n1\n")})
        assert r.status_code == 400 and r.json()["detail"] == "No file provided"
        counter: dict[str, int] = {}
        stream, length = multipart_stream("big.csv", 250 * 1024 * 1024, counter)
        r = await client.post(path, content=stream, headers={**headers, "content-length": str(length)})
        assert r.status_code == 413 and "200 MB" in r.json()["detail"]
        assert counter.get("sent", 0) < 250 * 1024 * 1024


async def test_eval_db_import_stores_postgres_text_of_driver_objects(
    make_settings: Callable[..., Settings], make_client: Any, pg: PgSchema
) -> None:
    """The split-query import stores PostgreSQL's own text for points, bit strings, ranges, multiranges,
    rows and composites, not the driver's Python objects; arrays of them as lists of that text."""
    expected = create_pg_text_table(pg)
    r = await _import_with(
        make_settings,
        make_client,
        pg,
        dataset_query="SELECT 'a' AS dataset_id, 'q' AS query",
        results_query=(
            "SELECT 'a' AS dataset_id, 'acc' AS metric_name, 1.0 AS metric_score, s.*, ROW(s.k, 'x y') AS rw "
            f'FROM "{pg.schema}".shapes s ORDER BY k'
        ),
    )
    assert r.status_code == 200, r.text
    rows = sorted(r.json()["data"], key=lambda row: row["k"])
    assert [{c: row[c] for c in expected[0]} for row in rows] == expected
    assert [row["rw"] for row in rows] == ['(1,"x y")', '(2,"x y")']
