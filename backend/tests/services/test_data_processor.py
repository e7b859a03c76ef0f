"""Eval data processing: detection (§4.2), processing (§4.3), aliases (§4.4), tree→wide (§4.5),
prepare-analytics (§4.6), examples and eval-db-import (§4.8) against real DuckDB and PostgreSQL."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from starlette.datastructures import UploadFile

from app.config.db_configs import EvalDBConfig
from app.errors import Invalid, NotFound, Timeout
from app.models.data import ExampleResponse, UploadResponse
from app.services import data_processor as dp
from app.services import eval_db_import as eval_db
from app.services import eval_reshaping as reshaping
from app.services.duckdb_store import DatasetInfo, DuckDBStore
from app.services.pg_source import joined_split_sql
from tests.conftest import PgSchema, fetch_dicts, response_rows

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


def _csv(header: list[str], rows: list[list[Any]]) -> bytes:
    def cell(v: Any) -> str:
        s = "" if v is None else str(v)
        return '"' + s.replace('"', '""') + '"' if any(ch in s for ch in ',"\n') else s

    lines = [",".join(header)] + [",".join(cell(v) for v in r) for r in rows]
    return ("\n".join(lines) + "\n").encode()


async def _upload(
    store: DuckDBStore, tmp_path: Path, data: bytes, name: str = "f.csv", cap: int = 1000
) -> UploadResponse:
    up = UploadFile(io.BytesIO(data), filename=name)
    return await dp.upload_eval_csv(store, up, max_bytes=50 * 1024 * 1024, spool_dir=tmp_path / "spool", row_cap=cap)


async def _dataset(store: DuckDBStore, res: UploadResponse | ExampleResponse) -> DatasetInfo:
    """The stored dataset a load answered with."""
    return await store.get_dataset(res.dataset_id)


# ------------------------------------------------------------------ detection
EVAL_RUNNER_COLS = ["run_id", "dataset_id", "passed"]
TREE_COLS = ["metric_name", "parent", "metric_type", "metric_score"]
FRESH_COLS = ["dataset_id", "evaluation_name", "query", "actual_output"]


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (EVAL_RUNNER_COLS, "eval_runner"),
        (TREE_COLS, "tree_format"),
        (["metric_name", "metric_score"], "flat_format"),
        (["judgment"], "simple_judgment"),
        (FRESH_COLS, "fresh_annotation"),
        (["a", "b"], "unknown"),
        (["Metric_Name", "metric_score"], "unknown"),  # exact, case-sensitive names
        # priority: files that satisfy two rules
        ([*EVAL_RUNNER_COLS, *TREE_COLS], "eval_runner"),
        ([*TREE_COLS, "judgment"], "tree_format"),
        (["metric_name", "metric_score", "judgment"], "flat_format"),
        ([*FRESH_COLS, "judgment"], "simple_judgment"),
        ([*FRESH_COLS, "run_id", "passed"], "eval_runner"),
    ],
)
def test_detect_data_format(columns: list[str], expected: str) -> None:
    assert dp.detect_data_format(columns) == expected


async def test_five_formats_from_real_files(store: DuckDBStore, tmp_path: Path) -> None:
    files = {
        "eval_runner": _csv(
            ["run_id", "dataset_id", "passed", "metric_name", "metric_score", "query"],
            [["r1", "d1", "true", "acc", 0.9, "q"], ["r1", "d2", "false", "acc", 0.2, "q2"]],
        ),
        "tree_format": _csv(
            ["dataset_id", *TREE_COLS], [["d1", "root", "", "metric", 0.7], ["d1", "child", "root", "component", 0.5]]
        ),
        "flat_format": _csv(["dataset_id", "metric_name", "metric_score"], [["d1", "acc", 0.5], ["d2", "acc", 1]]),
        "simple_judgment": _csv([*FRESH_COLS, "judgment"], [["d1", "e", "q", "a", "accept"]]),
        "fresh_annotation": _csv(FRESH_COLS, [["d1", "e", "q", "a"], ["d2", "e", "q2", "a2"]]),
    }
    for fmt, data in files.items():
        res = await _upload(store, tmp_path, data, name=f"{fmt}.CSV")
        assert res.format == fmt, fmt
        info = await _dataset(store, res)
        assert info.format == fmt
        assert info.source == f"upload:{fmt}.CSV"
    # detect-format reports raw columns and row count without storing anything
    before = len(await store.list_datasets("eval"))
    det = await dp.detect_upload_format(
        store,
        UploadFile(io.BytesIO(files["flat_format"]), filename="x.csv"),
        max_bytes=10_000,
        spool_dir=tmp_path / "spool",
    )
    assert (det.format, det.columns, det.row_count) == ("flat_format", ["dataset_id", "metric_name", "metric_score"], 2)
    assert len(await store.list_datasets("eval")) == before


# ------------------------------------------------------------------ processing
async def test_flat_is_processed_and_reported_honestly(store: DuckDBStore, tmp_path: Path) -> None:
    data = _csv(["experiment_name", "metric_name", "metric_score"], [["exp", "acc", 1], ["exp", "f1", ""]])
    res = await _upload(store, tmp_path, data)
    assert res.format == "flat_format"
    assert res.message.startswith("Flat format (as tree) with 2 nodes, root: acc, f1")
    table = (await _dataset(store, res)).table_name
    rows = await fetch_dicts(store, f'SELECT * FROM "{table}" ORDER BY rowid')
    assert rows[0]["evaluation_name"] == "exp" and "experiment_name" not in rows[0]
    assert rows[0]["metric_type"] == "metric" and rows[0]["parent"] is None and rows[0]["weight"] is None
    assert rows[0]["dataset_id"] == "test_case_1" and rows[0]["query"] == "" and rows[0]["critique"] == ""
    assert rows[0]["evaluation_metadata"] == "{}" and rows[0]["data_metadata"] == "{}"
    assert rows[0]["metric_score"] == 1.0 and rows[1]["metric_score"] is None
    assert (await store.describe(table))[2] == {"name": "metric_score", "type": "DOUBLE"}


async def test_tree_parent_blank_to_null_and_metadata_fill(store: DuckDBStore, tmp_path: Path) -> None:
    data = (
        b"dataset_id,metric_name,parent,metric_type,metric_score,data_metadata,retrieved_content\n"
        b'd1,root,"",metric,0.8,,\n'
        b'd1,c1,root,component,0.6,"{""k"": 1}","[""doc""]"\n'
    )
    res = await _upload(store, tmp_path, data)
    assert res.format == "tree_format"
    assert res.message == "Tree format with 2 nodes, root: root"
    table = (await _dataset(store, res)).table_name
    rows = await fetch_dicts(store, f'SELECT parent, data_metadata, retrieved_content FROM "{table}" ORDER BY rowid')
    assert rows == [
        {"parent": None, "data_metadata": "{}", "retrieved_content": "[]"},
        {"parent": "root", "data_metadata": '{"k": 1}', "retrieved_content": '["doc"]'},
    ]
    # the response rows carry retrieved_content parsed (Ref): JSON / Python literal, else the raw text
    assert [r["retrieved_content"] for r in response_rows(res)] == [[], ["doc"]]


def test_parse_literal_list() -> None:
    assert dp.parse_literal_list(None) == []
    assert dp.parse_literal_list('["a", "b"]') == ["a", "b"]
    assert dp.parse_literal_list("['a', 'b']") == ["a", "b"]
    assert dp.parse_literal_list("just text, no list") == "just text, no list"
    assert dp.parse_literal_list("  ") == []


async def test_eval_runner_long_export_is_processed(store: DuckDBStore, tmp_path: Path) -> None:
    res = await _upload(store, tmp_path, (SAMPLES / "hitl_sample.csv").read_bytes())
    assert res.format == "eval_runner"
    assert res.row_count == 39
    assert "escalation_type" in res.message


async def test_eval_runner_wide_export(store: DuckDBStore, tmp_path: Path) -> None:
    data = _csv(["run_id", "dataset_id", "passed", "faithfulness_score"], [["r", "d1", "true", 0.5]])
    res = await _upload(store, tmp_path, data)
    assert (res.format, res.message) == ("eval_runner", "Eval runner export with 1 rows")


async def test_pandas_missing_spellings_and_the_refusal_names_the_files_columns(
    store: DuckDBStore, tmp_path: Path
) -> None:
    """pandas' other missing-value spellings read as missing scores; an undetectable file's message
    names its columns as the file spells them (and says names are case-sensitive)."""
    rows = [["acc", 0.5], ["acc", "#NA"], ["acc", "-1.#IND"], ["acc", "1.#QNAN"]]
    res = await _upload(store, tmp_path, _csv(["metric_name", "metric_score"], rows))
    assert [r["metric_score"] for r in response_rows(res)] == [0.5, None, None, None]
    with pytest.raises(Invalid, match=r"Columns found: Metric_Name, metric_score\. Column names are case-sensitive"):
        await _upload(store, tmp_path, _csv(["Metric_Name", "metric_score"], [["acc", 0.5]]))


async def test_bad_files_keep_previous_dataset(store: DuckDBStore, tmp_path: Path) -> None:
    good = await _upload(store, tmp_path, _csv(["metric_name", "metric_score"], [["acc", 0.5]]))
    text_score = _csv(["metric_name", "metric_score"], [["acc", 0.5], ["acc", "0.7"], ["acc", "high"]])
    with pytest.raises(Invalid, match="'metric_score' must be numeric: data row 3 has the value 'high'"):
        await _upload(store, tmp_path, text_score)
    # DuckDB's cast reads '2_5' as 25: a score with an underscore is text, not a silently changed number
    underscore = _csv(["metric_name", "metric_score"], [["acc", 1.5], ["acc", "2_5"]])
    with pytest.raises(Invalid, match="data row 2 has the value '2_5'"):
        await _upload(store, tmp_path, underscore)
    with pytest.raises(Invalid, match="Could not detect valid data format"):
        await _upload(store, tmp_path, _csv(["a", "b"], [[1, 2]]))
    latest = await store.resolve_dataset("eval", None)
    assert latest.dataset_id == good.dataset_id
    assert [d.dataset_id for d in await store.list_datasets("eval")] == [good.dataset_id]


async def test_missing_score_spellings_are_null(store: DuckDBStore, tmp_path: Path) -> None:
    rows = [["acc", v] for v in ("NA", "N/A", "null", " None ", "0.25", "", "#N/A", "0.75")]
    res = await _upload(store, tmp_path, _csv(["metric_name", "metric_score"], rows))
    assert [r["metric_score"] for r in response_rows(res)] == [None, None, None, None, 0.25, None, None, 0.75]
    table = (await _dataset(store, res)).table_name
    got = await store.fetch(f'SELECT count(metric_score), avg(metric_score) FROM "{table}"')
    assert got.rows == [(2, 0.5)]


async def test_response_rows_capped(store: DuckDBStore, tmp_path: Path) -> None:
    data = _csv(["metric_name", "metric_score"], [[f"m{i % 3}", i / 100] for i in range(25)])
    res = await _upload(store, tmp_path, data, cap=7)
    assert res.row_count == 25 and len(response_rows(res)) == 7 and res.data_truncated is True
    assert len(res.preview) == 10  # preview is always the first 10 rows
    assert [r["metric_score"] for r in response_rows(res)] == [i / 100 for i in range(7)]
    res = await _upload(store, tmp_path, data, cap=100)
    assert len(response_rows(res)) == 25 and res.data_truncated is False and len(res.preview) == 10


# ------------------------------------------------------------------ aliases
def test_alias_renames_with_collision_guard() -> None:
    assert dp.eval_alias_renames(["ID", "Input", "Model Output", "score", "Ground-Truth"]) == {
        "ID": "dataset_id",
        "Input": "query",
        "score": "metric_score",
        "Ground-Truth": "expected_output",
    }
    # target exists → skipped; two sources for one target → only the first
    assert dp.eval_alias_renames(["id", "dataset_id", "input", "prompt", "value"]) == {
        "input": "query",
        "value": "metric_score",
    }
    # custom map (exact original name) wins over the alias table
    assert dp.eval_alias_renames(["score", "grade"], {"grade": "metric_score"}) == {"grade": "metric_score"}
    assert dp.eval_alias_renames(["experiment", "run_name"]) == {"experiment": "evaluation_name"}


def test_alias_collision_guard_ignores_case() -> None:
    # DuckDB binds names case-insensitively: a target taken in another case is taken.
    assert dp.eval_alias_renames(["Query", "input", "Metric_Score", "score"]) == {}
    assert dp.eval_alias_renames(["DATASET_ID", "id", "prompt"]) == {"prompt": "query"}
    # a rename that only changes the case of its own name is applied; one onto another column's name is not
    assert dp.eval_alias_renames(["Score", "x"], {"Score": "score", "x": "SCORE"}) == {"Score": "score"}
    assert dp.eval_alias_renames(["Input", "Prompt"]) == {"Input": "query"}


def test_joined_split_sql_compares_names_ignoring_case() -> None:
    sql = joined_split_sql(
        ["DATASET_ID", "query", "dataset_query", "notes", "Extra"], ["dataset_id", "Query", "Notes", "dataset_NOTES"]
    )
    select = sql.split(" FROM ")[0]
    # dataset "query" overlaps "Query" but its own dataset_query claims that name; dataset notes
    # overlap "Notes" and dataset_notes is a results column: both overlapping columns are left out.
    assert select == ('SELECT r."dataset_id", r."Query", r."Notes", r."dataset_NOTES", d."dataset_query", d."Extra"')
    assert "LEFT JOIN _ds d ON r.dataset_id = d.dataset_id" in sql
    assert joined_split_sql(["dataset_id", "x"], ["Dataset_Id", "y"]).split(" FROM ")[0] == (
        'SELECT r."Dataset_Id", r."y", d."x"'
    )


# ------------------------------------------------------------------ tree → wide
TREE_ROWS: list[dict[str, Any]] = [
    {
        "dataset_id": "d1",
        "evaluation_name": "e",
        "query": "q1",
        "metric_name": "quality",
        "metric_score": 0.8,
        "metric_type": "metric",
        "parent": None,
    },
    {
        "dataset_id": "d1",
        "evaluation_name": "e",
        "query": "q1",
        "metric_name": "faith",
        "metric_score": 0.6,
        "metric_type": "component",
        "parent": "quality",
    },
    {
        "dataset_id": "d1",
        "evaluation_name": "e",
        "query": "q1",
        "metric_name": "faith",
        "metric_score": 0.1,
        "metric_type": "component",
        "parent": "quality",
    },
    {
        "dataset_id": "d2",
        "evaluation_name": None,
        "query": "q2",
        "metric_name": "quality",
        "metric_score": 0.4,
        "metric_type": "metric",
        "parent": None,
    },
]


async def test_convert_tree_keeps_null_index_and_first_score(store: DuckDBStore) -> None:
    res = await reshaping.convert_tree(store, TREE_ROWS)
    assert res.columns == ["dataset_id", "evaluation_name", "query", "data_metadata", "quality", "faith"]
    assert res.data == [
        {
            "dataset_id": "d1",
            "evaluation_name": "e",
            "query": "q1",
            "data_metadata": "{}",
            "quality": 0.8,
            "faith": 0.6,
        },
        {
            "dataset_id": "d2",
            "evaluation_name": None,
            "query": "q2",
            "data_metadata": "{}",
            "quality": 0.4,
            "faith": None,
        },
    ]
    only_components = await reshaping.convert_tree(store, TREE_ROWS, metric_type="component")
    assert [r["dataset_id"] for r in only_components.data] == ["d1"]
    assert only_components.columns[-1] == "faith"


async def test_convert_tree_lowercase_latency_dropped_not_emptied(store: DuckDBStore) -> None:
    rows = [
        {"dataset_id": "d1", "query": "q", "metric_name": m, "metric_score": s}
        for m, s in (("acc", 0.9), ("latency", 2.5), ("PERFORMANCE", 0.3))
    ]
    res = await reshaping.convert_tree(store, rows)
    assert res.columns == ["dataset_id", "query", "data_metadata", "acc"]
    small = [{**r, "metric_score": 0.5} if r["metric_name"] == "latency" else r for r in rows]
    assert "latency" in (await reshaping.convert_tree(store, small)).columns


async def test_convert_tree_needs_metric_columns(store: DuckDBStore) -> None:
    with pytest.raises(Invalid, match="metric_name"):
        await reshaping.convert_tree(store, [{"a": 1}])
    assert (await reshaping.convert_tree(store, [])).data == []


async def test_prepare_analytics(store: DuckDBStore) -> None:
    res = await reshaping.prepare_analytics(store, TREE_ROWS, format_type="tree_format")
    assert res.mapping.model_dump() == {"metrics": ["quality"], "components": ["faith"]}
    assert res.metric_columns == ["quality", "faith"]
    assert len(res.data) == 2

    judg = [{"dataset_id": "a", "judgment": "accept", "score": 1}]
    res = await reshaping.prepare_analytics(store, judg, format_type="simple_judgment")
    assert res.metric_columns == ["judgment"] and res.data == judg

    wide = [{"dataset_id": 1, "query": "q", "acc": 0.5, "f1": 1, "critique": 3, "label": "x"}]
    res = await reshaping.prepare_analytics(store, wide, format_type="fresh_annotation")
    assert res.metric_columns == ["acc", "f1"]
    assert res.mapping.model_dump() == {"metrics": [], "components": []}
    empty = await reshaping.prepare_analytics(store, [], format_type="tree_format")
    assert empty.data == [] and empty.metric_columns == []


# ------------------------------------------------------------------ examples
# Each bundled eval example and the format it is detected as (also used by the router tests).
EXAMPLE_FORMATS = [
    ("model", "tree_format"),
    ("comparison", "tree_format"),
    ("annotation", "simple_judgment"),
    ("align", "fresh_annotation"),
]


@pytest.mark.parametrize(("name", "fmt"), EXAMPLE_FORMATS)
async def test_examples_load_from_sample_data(store: DuckDBStore, name: str, fmt: str) -> None:
    res = await dp.load_example(store, name, sample_dir=SAMPLES, row_cap=50_000)
    assert res.format == fmt and res.row_count > 0
    assert (await _dataset(store, res)).source == f"example:{name}"
    assert res.row_count == len(response_rows(res))


async def test_example_unknown_and_missing(store: DuckDBStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="Available"):
        await dp.load_example(store, "nope", sample_dir=SAMPLES, row_cap=10)
    with pytest.raises(NotFound, match="missing"):
        await dp.load_example(store, "model", sample_dir=tmp_path, row_cap=10)


# ------------------------------------------------------------------ eval-db-import (real PostgreSQL)
def _cfg(pg: PgSchema, **kw: Any) -> EvalDBConfig:
    base: dict[str, Any] = {
        "host": pg.host,
        "port": pg.port,
        "database": pg.database,
        "username": pg.user,
        "ssl_mode": "disable",
    }
    base.update(kw)
    return EvalDBConfig(**base)


async def test_eval_db_import_left_join_aliases(store: DuckDBStore, pg: PgSchema) -> None:
    s = pg.schema
    pg.execute("CREATE TABLE items (dataset_id text, question text, notes_dataset text, shared text)")
    pg.execute("INSERT INTO items VALUES ('d1', 'q1', 'keep me', 'from items'), ('d2', 'q2', 'n2', 'x')")
    pg.execute("CREATE TABLE results (dataset_id text, metric text, score float8, shared text)")
    pg.execute(
        "INSERT INTO results VALUES ('d1', 'acc', 0.9, 'from results'), ('d1', 'f1', 0.7, 'r'),"
        " ('d9', 'acc', 0.1, 'orphan')"
    )
    cfg = _cfg(pg, dataset_query=f'SELECT * FROM "{s}".items', results_query=f'SELECT * FROM "{s}".results')
    res = await eval_db.import_eval_db(store, cfg, row_cap=100)
    assert res.format == "flat_format"
    assert res.message == "Imported 3 records from database"
    assert (await _dataset(store, res)).source == "database"
    rows = {(r["dataset_id"], r["metric_name"]): r for r in response_rows(res)}
    assert set(rows) == {("d1", "acc"), ("d1", "f1"), ("d9", "acc")}
    assert rows[("d1", "acc")]["notes_dataset"] == "keep me"  # legitimate *_dataset column survives
    assert rows[("d1", "acc")]["shared"] == "from results"  # results win
    assert rows[("d1", "acc")]["query"] == "q1"  # alias question → query
    assert rows[("d9", "acc")]["query"] is None and rows[("d9", "acc")]["metric_score"] == 0.1
    assert "shared_dataset" not in res.columns


async def test_eval_db_import_joins_sides_keyed_by_an_alias_like_the_sync(store: DuckDBStore, pg: PgSchema) -> None:
    """``id`` on both sides is the record key (§4.4 alias): the dataset side joins, not left out."""
    s = pg.schema
    pg.execute("CREATE TABLE items (id text, question text, answer text)")
    pg.execute("INSERT INTO items VALUES ('d1', 'q1', 'a1'), ('d2', 'q2', 'a2')")
    pg.execute("CREATE TABLE scores (id text, metric text, score float8)")
    pg.execute("INSERT INTO scores VALUES ('d1', 'acc', 0.9), ('d2', 'acc', 0.4), ('d2', 'f1', 0.6)")
    cfg = _cfg(pg, dataset_query=f'SELECT * FROM "{s}".items', results_query=f'SELECT * FROM "{s}".scores')
    res = await eval_db.import_eval_db(store, cfg, row_cap=100)
    keys = ("dataset_id", "metric_name", "metric_score", "query", "actual_output")
    got = sorted(tuple(r[k] for k in keys) for r in response_rows(res))
    assert got == [("d1", "acc", 0.9, "q1", "a1"), ("d2", "acc", 0.4, "q2", "a2"), ("d2", "f1", 0.6, "q2", "a2")]


async def test_eval_db_import_row_limit_and_results_only(store: DuckDBStore, pg: PgSchema) -> None:
    pg.execute("CREATE TABLE r (metric_name text, metric_score float8)")
    pg.execute("INSERT INTO r SELECT 'm' || (i % 2), i / 10.0 FROM generate_series(1, 30) i")
    pg.execute("CREATE TABLE d (x int)")
    cfg = _cfg(
        pg, dataset_query=f'SELECT * FROM "{pg.schema}".d', results_query=f'SELECT * FROM "{pg.schema}".r', row_limit=12
    )
    res = await eval_db.import_eval_db(store, cfg, row_cap=100)
    assert res.row_count == 12


async def test_eval_db_import_keeps_infinite_timestamps(store: DuckDBStore, pg: PgSchema) -> None:
    """A timestamptz column mixing finite values with ±infinity (asyncpg: naive datetime.min/max) imports."""
    pg.execute("CREATE TABLE r (dataset_id text, metric_name text, metric_score float8, at timestamptz)")
    pg.execute(
        "INSERT INTO r VALUES ('a', 'm', 0.5, '2024-01-02 03:04:05+02'), ('b', 'm', 0.7, '-infinity'),"
        " ('c', 'm', 0.9, 'infinity')"
    )
    cfg = _cfg(pg, dataset_query="SELECT 'x' AS dataset_id WHERE false", results_query=f'SELECT * FROM "{pg.schema}".r')
    res = await eval_db.import_eval_db(store, cfg, row_cap=100)
    assert {r["dataset_id"]: r["at"] for r in response_rows(res)} == {
        "a": "2024-01-02T01:04:05",
        "b": "-infinity",
        "c": "infinity",
    }


def test_retrieved_content_with_a_lone_surrogate_stays_text() -> None:
    assert dp.parse_literal_list('["\\ud800"]') == '["\\ud800"]'
    assert dp.parse_literal_list('["ok", "\\u00e9"]') == ["ok", "é"]
    assert dp.parse_literal_list("{True: 1}") == {True: 1}


async def test_eval_db_import_errors(store: DuckDBStore, pg: PgSchema) -> None:
    with pytest.raises(Invalid, match="not configured"):
        await eval_db.import_eval_db(store, EvalDBConfig(), row_cap=10)
    with pytest.raises(Invalid, match="No SQL queries"):
        await eval_db.import_eval_db(store, _cfg(pg), row_cap=10)
    pg.execute("CREATE TABLE empty_r (dataset_id text)")
    q = f'SELECT * FROM "{pg.schema}".empty_r'
    with pytest.raises(Invalid, match="Results query returned no data"):
        await eval_db.import_eval_db(store, _cfg(pg, dataset_query=q, results_query=q), row_cap=10)
    pg.execute("CREATE TABLE unk (a int)")
    pg.execute("INSERT INTO unk VALUES (1)")
    u = f'SELECT * FROM "{pg.schema}".unk'
    with pytest.raises(Invalid, match="Could not detect"):
        await eval_db.import_eval_db(store, _cfg(pg, dataset_query=u, results_query=u), row_cap=10)
    assert await store.list_datasets("eval") == []


async def test_eval_db_import_timeout(store: DuckDBStore, pg: PgSchema) -> None:
    cfg = _cfg(
        pg, query_timeout=1, dataset_query="SELECT 1 AS x", results_query="SELECT pg_sleep(5) AS s, 'd1' AS dataset_id"
    )
    with pytest.raises(Timeout, match=r"Query timeout exceeded \(1s\)"):
        await eval_db.import_eval_db(store, cfg, row_cap=10)


async def test_eval_db_import_scrubs_secrets(store: DuckDBStore, pg: PgSchema) -> None:
    secret = "s3cretpw42"  # PostgreSQL folds unquoted names to lower case
    cfg = _cfg(
        pg, password=SecretStr(secret), dataset_query="SELECT 1 AS x", results_query=f"SELECT * FROM {secret}_table"
    )
    with pytest.raises(Invalid) as err:  # an unknown table is a configuration problem (400)
        await eval_db.import_eval_db(store, cfg, row_cap=10)
    assert err.value.message == 'Import failed in results_query: relation "***_table" does not exist'
    url = f"postgresql://{pg.user}:{secret}@{pg.host}:{pg.port}/no_such_db_axis?sslmode=disable"
    cfg = EvalDBConfig(url=SecretStr(url), dataset_query="SELECT 1", results_query="SELECT 1")
    with pytest.raises(Invalid) as err2:
        await eval_db.import_eval_db(store, cfg, row_cap=10)
    assert secret not in err2.value.message
    assert "no_such_db_axis" in err2.value.message


def test_eval_db_status() -> None:
    st = eval_db.eval_db_status(
        EvalDBConfig(
            host="h",
            database="d",
            auto_load=True,
            dataset_query="a",
            results_query="b",
            row_limit=99_999,
            query_timeout=500,
        )
    )
    assert (st.configured, st.auto_load, st.has_query, st.row_limit, st.query_timeout) == (True, True, True, 50000, 120)
    st = eval_db.eval_db_status(EvalDBConfig(auto_load=True))
    assert (st.configured, st.auto_load, st.has_query) == (False, False, False)
