"""Keyset (cursor) pagination of ``GET /api/store/data/{dataset}`` over a real DuckDB file and PostgreSQL."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import duckdb
import httpx
import pytest
import yaml

from app.config import Settings
from app.services.duckdb_store import DuckDBStore, quote_ident
from tests.conftest import PgSchema
from tests.routers.test_store import MAP, wait_state
from tests.sync_helpers import configure, create_source

# (dataset_id, score, timestamp, query): ties and NULLs in score and timestamp on purpose
ROWS = [
    (
        f"r{i:02d}",
        None if i % 7 == 3 else float(i % 4) / 2,
        None if i % 9 == 5 else dt.datetime(2024, 1, 1) + dt.timedelta(hours=i % 5),
        ["b", "a", "c", "'; DROP TABLE x; --"][i % 4],
    )
    for i in range(37)
]


async def _land(store: DuckDBStore, kind: str, rows: list[tuple[Any, ...]], with_time: bool = True) -> str:
    def build(cur: duckdb.DuckDBPyConnection, staging: str) -> None:
        time_col = ', "timestamp" TIMESTAMP' if with_time else ""
        cur.execute(f"CREATE TABLE {quote_ident(staging)} (dataset_id VARCHAR, score DOUBLE, query VARCHAR{time_col})")
        values = [(r[0], r[1], r[3], r[2]) if with_time else (r[0], r[1], r[3]) for r in rows]
        marks = ", ".join("?" * len(values[0]))
        cur.executemany(f"INSERT INTO {quote_ident(staging)} VALUES ({marks})", values)
        cur.execute("CREATE TABLE IF NOT EXISTS x (v INTEGER)")

    info = await store.land_dataset(kind=kind, source="upload:cursor.csv", build=build)
    return info.dataset_id


def _expected(rows: list[tuple[Any, ...]], col: int, desc: bool) -> list[str]:
    """ORDER BY col (NULLS LAST), ties in insertion order, computed by Python's stable sort."""
    present = sorted((r for r in rows if r[col] is not None), key=lambda r: r[col], reverse=desc)
    return [r[0] for r in present] + [r[0] for r in rows if r[col] is None]


async def _walk(client: httpx.AsyncClient, path: str, **params: Any) -> tuple[list[dict[str, Any]], list[int]]:
    """Follow next_cursor from the first page to the end; returns the rows and the page numbers."""
    rows: list[dict[str, Any]] = []
    pages: list[int] = []
    cursor: str | None = None
    while True:
        query = dict(params, cursor=cursor) if cursor else params
        r = await client.get(path, params=query)
        body = r.json()
        assert r.status_code == 200 and body["page_size"] == int(params.get("page_size", 50)), r.text
        assert len(body["data"]) <= body["page_size"]
        rows += body["data"]
        pages.append(body["page"])
        assert "_axis_page_key" not in json.dumps(body["data"])
        cursor = body["next_cursor"]
        if cursor is None:
            return rows, pages


async def _offset_pages(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    page = 1
    while True:
        body = (await client.get(path, params=dict(params, page=page))).json()
        if not body["data"]:
            return rows
        rows += body["data"]
        page += 1


@pytest.fixture(params=[0, 5000], ids=["keyset", "offset-near-start"])
async def paged_client(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings], make_client: Callable[[Settings], Any]
) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The app with cursor pages read by keyset from the first row (0) or by OFFSET near the start."""
    settings = make_settings()
    (settings.axis_custom_dir / "config" / "duckdb.yaml").write_text(
        yaml.safe_dump({"duckdb": {"page_offset_rows": request.param}})
    )
    settings = make_settings()
    assert settings.duckdb.page_offset_rows == request.param
    wrapper = make_client(settings)
    async with wrapper as client:
        yield wrapper.app, client


async def test_cursor_pages_equal_offset_pages_and_an_independent_sort(
    paged_client: tuple[Any, httpx.AsyncClient],
) -> None:
    app, client = paged_client
    await _land(app.state.store, "monitoring", ROWS)
    path = "/api/store/data/monitoring"
    for sort_by, col in (("score", 1), ("timestamp", 2), ("query", 3)):
        for sort_dir in ("asc", "desc"):
            params = {"sort_by": sort_by, "sort_dir": sort_dir, "page_size": 5}
            rows, pages = await _walk(client, path, **params)
            want = _expected(ROWS, col, sort_dir == "desc")
            assert [r["dataset_id"] for r in rows] == want, (sort_by, sort_dir)
            assert pages == list(range(1, 9))  # 37 rows / 5 per page
            assert [r["dataset_id"] for r in await _offset_pages(client, path, **params)] == want
    # default order (timestamp desc) and a filtered walk; totals are the filtered counts
    rows, _ = await _walk(client, path, page_size=4)
    assert [r["dataset_id"] for r in rows] == _expected(ROWS, 2, True)
    rows, _ = await _walk(client, path, page_size=3, search="drop", sort_by="score", sort_dir="asc")
    assert [r["dataset_id"] for r in rows] == _expected([r for r in ROWS if "DROP" in r[3]], 1, False)
    first = (await client.get(path, params={"search": "drop", "page_size": 3})).json()
    assert first["total"] == sum("DROP" in r[3] for r in ROWS) == 9
    # projection keeps the sort column and never leaks the row key
    proj = (await client.get(path, params={"columns": "query", "sort_by": "score", "page_size": 2})).json()
    assert all(set(r) == {"query", "score"} for r in proj["data"]) and proj["next_cursor"]
    nxt = (
        await client.get(
            path, params={"columns": "query", "sort_by": "score", "page_size": 2, "cursor": proj["next_cursor"]}
        )
    ).json()
    assert nxt["page"] == 2 and all(set(r) == {"query", "score"} for r in nxt["data"])


async def test_nan_and_infinite_sort_values_sort_last_like_the_nulls_they_are_served_as(
    paged_client: tuple[Any, httpx.AsyncClient],
) -> None:
    """NaN and ±inf are served as null (decision 1), so they sort with the NULLs (last) both ways.

    As DuckDB orders them, NaN and +inf came first in a descending sort: a "highest first" page
    opened with blank scores.
    """
    app, client = paged_client
    specials = {3: float("nan"), 8: float("inf"), 13: float("-inf"), 20: float("nan")}
    rows = [(r[0], specials.get(i, r[1]), r[2], r[3]) for i, r in enumerate(ROWS)]
    await _land(app.state.store, "monitoring", rows)
    served = [(r[0], None if r[1] is None or r[1] != r[1] or abs(r[1]) == float("inf") else r[1], *r[2:]) for r in rows]
    path = "/api/store/data/monitoring"
    for sort_dir in ("desc", "asc"):
        params = {"sort_by": "score", "sort_dir": sort_dir, "page_size": 4}
        got, _ = await _walk(client, path, **params)
        assert [r["dataset_id"] for r in got] == _expected(served, 1, sort_dir == "desc"), sort_dir
        assert [r["dataset_id"] for r in await _offset_pages(client, path, **params)] == _expected(
            served, 1, sort_dir == "desc"
        )
        first = (await client.get(path, params={**params, "page_size": 3})).json()["data"]
        assert all(r["score"] is not None for r in first)


async def test_table_without_sort_column_pages_in_stored_order(paged_client: tuple[Any, httpx.AsyncClient]) -> None:
    app, client = paged_client
    await _land(app.state.store, "eval", ROWS, with_time=False)
    rows, pages = await _walk(client, "/api/store/data/eval", page_size=10)
    assert [r["dataset_id"] for r in rows] == [r[0] for r in ROWS] and pages == [1, 2, 3, 4]


@pytest.mark.parametrize("paged_client", [0], indirect=True)  # the keyset path reads the cursor's values
async def test_bad_foreign_and_stale_cursors_are_400(paged_client: tuple[Any, httpx.AsyncClient]) -> None:
    app, client = paged_client
    store: DuckDBStore = app.state.store
    await _land(store, "monitoring", ROWS)
    path = "/api/store/data/monitoring"
    first = (await client.get(path, params={"sort_by": "score", "page_size": 5})).json()
    cursor = first["next_cursor"]

    async def status(**params: Any) -> tuple[int, str]:
        r = await client.get(path, params=params)
        return r.status_code, r.text

    code, text = await status(cursor="not-a-cursor")
    assert code == 400 and "next_cursor" in text
    assert (await status(cursor=base64.urlsafe_b64encode(b'[1,"f",2,5,"x",null]').decode()))[0] == 400
    assert (await status(cursor="A" * 5000))[0] == 422
    # a cursor only continues the query it came from
    code, text = await status(cursor=cursor, sort_by="query")
    assert code == 400 and "different query" in text
    assert (await status(cursor=cursor, sort_by="score", search="drop"))[0] == 400
    assert (await status(cursor=cursor, sort_by="score"))[0] == 200

    # tampered values stay bound parameters: SQL in them is data (or a 400), never SQL
    version, fingerprint, page, pos, keys, _ = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    evil = "'; DROP TABLE x; --"

    def forge(sort: str | None, key_values: list[int] = keys, fp: str = fingerprint) -> str:
        raw = json.dumps([version, fp, page, pos, key_values, sort]).encode()
        return base64.urlsafe_b64encode(raw).decode()

    code, text = await status(cursor=forge(evil), sort_by="score")
    assert code == 400 and "score" in text
    assert (await status(cursor=forge("1", key_values=[10**60]), sort_by="score"))[0] == 400
    assert (await status(cursor=forge("1", key_values=[1, 2, 3]), sort_by="score"))[0] == 400
    by_query = (await client.get(path, params={"sort_by": "query", "sort_dir": "asc", "page_size": 5})).json()
    fp_query = json.loads(base64.urlsafe_b64decode(by_query["next_cursor"] + "=="))[1]
    forged = forge(evil, key_values=[-1], fp=fp_query)
    after_evil = (await client.get(path, params={"sort_by": "query", "sort_dir": "asc", "cursor": forged})).json()
    names = sorted(r[3] for r in ROWS)
    assert [r["query"] for r in after_evil["data"]] == [n for n in names if n >= evil]
    assert (await store.fetch("SELECT count(*) FROM x")).rows == [(0,)]

    # a reload of the dataset retires its cursors
    await _land(store, "monitoring", ROWS[:20])
    code, text = await status(cursor=cursor, sort_by="score")
    assert code == 400 and "reloaded" in text


@pytest.fixture
def source(pg: PgSchema) -> PgSchema:
    create_source(pg, n_cases=30, metrics=3)
    # a duplicated dataset row: each of its 3 results appears twice in the JOIN view
    pg.execute("INSERT INTO ds SELECT * FROM ds WHERE record_id = 'c0007'")
    return pg


async def test_cursor_walks_the_synced_join_view_exactly_once(
    make_settings: Callable[..., Settings], make_client: Callable[[Settings], Any], source: PgSchema
) -> None:
    settings = configure(make_settings, source, columns=MAP, duckdb={"page_offset_rows": 0})
    async with make_client(settings) as client:
        started = (await client.post("/api/store/sync/monitoring")).json()
        assert started["datasets"] == ["monitoring"] and len(started["sync_id"]) == 32
        assert (await wait_state(client, "monitoring_data", {"ready", "error"}))["state"] == "ready"
        expected = Counter(r[0] for r in source.fetch("SELECT rs.seq FROM rs JOIN ds ON rs.dataset_id = ds.record_id"))
        assert expected[71] == 2 and sum(expected.values()) == 93
        # default order: timestamp desc; three results share each timestamp, so ties are everywhere
        rows, pages = await _walk(client, "/api/store/data/monitoring", page_size=4)
        assert Counter(r["seq"] for r in rows) == expected
        stamps = [r["timestamp"] for r in rows]
        assert stamps == sorted(stamps, reverse=True) and pages == list(range(1, 25))
        offset = await _offset_pages(client, "/api/store/data/monitoring", page_size=4)
        assert [(r["seq"], r["query"]) for r in offset] == [(r["seq"], r["query"]) for r in rows]
        prod, _ = await _walk(client, "/api/store/data/monitoring", page_size=5, environment="prod", sort_by="seq")
        want_prod = source.fetch(
            "SELECT rs.seq FROM rs JOIN ds ON rs.dataset_id = ds.record_id WHERE environment = 'prod' ORDER BY 1 DESC"
        )
        assert [r["seq"] for r in prod] == [w[0] for w in want_prod]


async def test_a_source_column_named_rowid_cannot_shadow_the_row_number(
    paged_client: tuple[Any, httpx.AsyncClient], make_settings: Callable[..., Settings], pg: PgSchema
) -> None:
    """Uploads and syncs store a ``rowid`` column as ``source_rowid``; caps and cursors still see every row."""
    _app, client = paged_client
    rows = [{"dataset_id": f"r{i:02d}", "ROWID": 1, "score": i / 10} for i in range(23)]
    csv = "dataset_id,ROWID,score\n" + "".join(f"{r['dataset_id']},1,{r['score']}\n" for r in rows)
    up = await client.post("/api/monitoring/upload", files={"file": ("m.csv", csv.encode(), "text/csv")})
    assert up.status_code == 200, up.text
    walked, _ = await _walk(client, "/api/store/data/monitoring", page_size=5, sort_by="score", sort_dir="asc")
    assert [r["dataset_id"] for r in walked] == [r["dataset_id"] for r in rows]
    assert walked[0]["source_ROWID"] == 1 and "ROWID" not in walked[0]

    create_source(pg)
    pg.execute("ALTER TABLE rs ADD COLUMN rowid int DEFAULT 1")
    settings = configure(make_settings, pg, columns=MAP, duckdb={"max_sync_rows": 25})
    from tests.services.test_sync_engine import Env

    async with Env(settings) as e:
        res = await e.engine.sync_dataset("monitoring")
        assert res.status == "ready" and res.truncated and await e.count("monitoring_results") == 25
        cols = [c["name"] for c in await e.store.describe("monitoring_results")]
        assert "source_rowid" in cols and "rowid" not in cols


async def test_column_names_collide_case_insensitively(make_settings: Callable[..., Settings], pg: PgSchema) -> None:
    """A results ``note`` and a dataset ``Note`` are one DuckDB identifier: the dataset one is prefixed."""
    from tests.services.test_sync_engine import Env

    create_source(pg)
    pg.execute('ALTER TABLE ds RENAME COLUMN note TO "Note"')
    pg.execute("ALTER TABLE rs ADD COLUMN note text DEFAULT 'results side'")
    settings = configure(make_settings, pg, columns=MAP)
    async with Env(settings) as e:
        assert (await e.engine.sync_dataset("monitoring")).status == "ready"
        cols = [c["name"] for c in await e.store.describe("monitoring_data")]
        assert "note" in cols and "dataset_Note" in cols and "Note_1" not in cols
        got = await e.rows("SELECT DISTINCT note FROM monitoring_data")
        assert got == [("results side",)]
    pg.execute('ALTER TABLE rs ADD COLUMN "NOTE" text')
    for reader in ("postgres_extension", "asyncpg"):  # one refusal from both readers (asyncpg renamed silently)
        async with Env(configure(make_settings, pg, columns=MAP, duckdb={"sync_reader": reader})) as e:
            res = await e.engine.sync_dataset("monitoring")
            assert res.status == "error" and "two columns of the same name" in (res.error or ""), reader
    # identical names (SELECT rs.*, ds.note-like) are refused alike
    pg.execute('ALTER TABLE rs DROP COLUMN "NOTE"')
    same = configure(make_settings, pg, columns=MAP, results_query=f'SELECT r.*, r.note FROM "{pg.schema}".rs r')
    for reader in ("postgres_extension", "asyncpg"):
        (same.config_dir / "duckdb.yaml").write_text(f"duckdb:\n  sync_reader: {reader}\n")
        async with Env(make_settings()) as e:
            res = await e.engine.sync_dataset("monitoring")
            assert res.status == "error" and "two columns of the same name" in (res.error or ""), reader


async def test_sorting_by_a_struct_or_enum_column_pages_by_offset(app_client: tuple[Any, httpx.AsyncClient]) -> None:
    """Such a type's name is not put into SQL: no cursor is offered, and offset pages still sort correctly."""
    app, client = app_client

    def build(cur: duckdb.DuckDBPyConnection, staging: str) -> None:
        cur.execute("CREATE TYPE IF NOT EXISTS mood AS ENUM ('sad', 'o''k', 'happy')")
        cur.execute(
            f"CREATE TABLE {quote_ident(staging)} AS SELECT 'r' || lpad(i::VARCHAR, 2, '0') AS dataset_id, "
            "{'w': (i * 7) % 5, 'v': i} AS pair, (['sad', 'o''k', 'happy'])[i % 3 + 1]::mood AS feeling "
            "FROM range(12) t(i)"
        )

    info = await app.state.store.land_dataset(kind="eval", source="upload:nested.csv", build=build)
    for col, key in (("pair", lambda i: ((i * 7) % 5, i)), ("feeling", lambda i: (i % 3, i))):
        first = (
            await client.get(
                "/api/store/data/eval",
                params={"dataset_id": info.dataset_id, "sort_by": col, "sort_dir": "asc", "page_size": 5},
            )
        ).json()
        assert first.get("next_cursor") is None and first["total"] == 12
        ids: list[str] = []
        for page in (1, 2, 3):
            body = (
                await client.get(
                    "/api/store/data/eval",
                    params={
                        "dataset_id": info.dataset_id,
                        "sort_by": col,
                        "sort_dir": "asc",
                        "page_size": 5,
                        "page": page,
                    },
                )
            ).json()
            ids += [row["dataset_id"] for row in body["data"]]
        assert ids == [f"r{i:02d}" for i in sorted(range(12), key=key)]


# (dataset_id, interval text, months, days, seconds): DuckDB orders intervals with a month as 30 days,
# the API serves them as PostgreSQL's epoch seconds (a year 365.25 days, a month 30).
INTERVALS = [
    ("i0", "12 months", 12, 0, 0),
    ("i1", "361 days", 0, 361, 0),
    ("i2", "365 days", 0, 365, 0),
    ("i3", "360 days", 0, 360, 0),
    ("i4", None, 0, 0, 0),
    ("i5", "1 month", 1, 0, 0),
    ("i6", "30 days 1 hour", 0, 30, 3600),
    ("i7", "1 year", 12, 0, 0),
    ("i8", "1 year 1 day", 12, 1, 0),
    ("i9", "2 years -400 days", 24, -400, 0),
]


def _epoch_seconds(months: int, days: int, seconds: int) -> float:
    """PostgreSQL's extract(epoch FROM interval), computed here: whole years 365.25 days, months 30."""
    return (months // 12) * 365.25 * 86400 + (months % 12) * 30 * 86400 + days * 86400 + seconds


async def test_interval_sort_follows_the_seconds_served(paged_client: tuple[Any, httpx.AsyncClient]) -> None:
    """Rows sorted by an INTERVAL column come in the order of the seconds they are served as, on
    cursor and offset pages: '12 months' (31,557,600 s) after '365 days' (31,536,000 s), not tied
    with '360 days' as DuckDB's own interval order has them."""
    app, client = paged_client

    def build(cur: duckdb.DuckDBPyConnection, staging: str) -> None:
        cur.execute(f"CREATE TABLE {quote_ident(staging)} (dataset_id VARCHAR, wait INTERVAL)")
        cur.executemany(
            f"INSERT INTO {quote_ident(staging)} VALUES (?, CAST(? AS INTERVAL))", [(r[0], r[1]) for r in INTERVALS]
        )

    await app.state.store.land_dataset(kind="monitoring", source="upload:intervals.csv", build=build)
    served = [(r[0], None if r[1] is None else _epoch_seconds(*r[2:])) for r in INTERVALS]
    path = "/api/store/data/monitoring"
    for sort_dir in ("asc", "desc"):
        params = {"sort_by": "wait", "sort_dir": sort_dir, "page_size": 2}
        want = _expected(served, 1, sort_dir == "desc")
        rows, pages = await _walk(client, path, **params)
        assert [r["dataset_id"] for r in rows] == want, sort_dir
        assert pages == [1, 2, 3, 4, 5]
        assert {r["dataset_id"]: r["wait"] for r in rows} == dict(served)
        assert [r["dataset_id"] for r in await _offset_pages(client, path, **params)] == want, sort_dir
