"""Database service against the real PostgreSQL server and a real DuckDB store."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from app.config import Settings
from app.errors import Invalid, NotFound, PayloadTooLarge, ServiceError, Timeout, Unprocessable
from app.models.database import (
    ColumnFilter,
    ColumnMapping,
    ConnectRequest,
    DistinctValuesRequest,
    PreviewRequest,
    QueryImportRequest,
    QueryRequest,
    TableImportRequest,
    TableRef,
)
from app.services import database_import as di
from app.services import database_service as ds
from app.services import human_signals_service
from app.services.connection_store import ConnectionStore
from app.services.database_session import check_identifier
from app.services.duckdb_store import DuckDBStore, quote_ident
from tests.conftest import PgSchema, response_rows

Env = tuple[ConnectionStore, Settings, str]


def connect_request(pg: PgSchema, **over: Any) -> ConnectRequest:
    values = {"host": pg.host, "port": pg.port, "database": pg.database, "username": pg.user,
              "password": "pw", "ssl_mode": "disable"}  # fmt: skip
    values.update(over)
    return ConnectRequest(**values)


@pytest.fixture
def people(pg: PgSchema) -> PgSchema:
    pg.execute(
        """
        CREATE TABLE people (id int PRIMARY KEY, name text NOT NULL, team text, score numeric(6,2),
                             created timestamptz, "Mixed Case" text);
        INSERT INTO people VALUES
          (1, 'ann', 'red', 1.50, '2024-01-01 10:00:00+02', 'a'),
          (2, 'bob', 'blue', 2.25, '2024-01-02 00:00:00+00', 'b'),
          (3, 'cid', 'red', NULL, NULL, NULL),
          (4, 'dee', NULL, 4.00, '2024-01-04 12:30:00-05', 'd');
        CREATE TABLE secret (v text); INSERT INTO secret VALUES ('classified');
        ANALYZE people; ANALYZE secret;
        """
    )
    return pg


async def _env(settings: Settings, pg: PgSchema) -> tuple[ConnectionStore, str]:
    conns = ds.build_connection_store(settings)
    resp = await ds.connect(conns, settings, "data", connect_request(pg))
    return conns, resp.handle


@pytest.fixture
async def env(settings: Settings, people: PgSchema) -> AsyncIterator[Env]:
    conns, handle = await _env(settings, people)
    try:
        yield conns, settings, handle
    finally:
        await conns.close_all()


def people_count(pg: PgSchema) -> int:
    return int(pg.fetch("SELECT count(*) FROM people")[0][0])


# ------------------------------------------------------------------------------ identifiers
@pytest.mark.parametrize(
    "name",
    [
        'x"; DROP TABLE people; --',
        "people;",
        'peo"ple',
        "people\x00",
        "ｐｅｏｐｌｅ",
        "peo\u200bple",
        "\u202epeople",
        " people",
        "",
        "a" * 64,
        "back\\slash",
    ],
)
def test_check_identifier_rejects(name: str) -> None:
    with pytest.raises(Invalid):
        check_identifier(name, "table")


def test_check_identifier_accepts_real_names() -> None:
    assert check_identifier("Mixed Case", "column") == "Mixed Case"
    assert check_identifier("données_été", "column") == "données_été"
    assert quote_ident('we"ird') == '"we""ird"'


def test_json_value_ref_serialisation() -> None:
    assert ds.json_value(None) is None
    assert ds.json_value([1, "a"]) == [1, "a"]
    assert ds.json_value({"a": 1}) == {"a": 1}
    assert ds.json_value(dt.date(2024, 1, 2)) == "2024-01-02"
    assert ds.json_value(uuid.UUID(int=1)) == "00000000-0000-0000-0000-000000000001"


# ------------------------------------------------------------------------------ defaults + connect
def write_yaml(settings_dir: Path, name: str, text: str) -> None:
    (settings_dir / name).write_text(text, encoding="utf-8")


def test_defaults_never_expose_password(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    cfg_dir = tmp_path / "custom" / "config"
    write_yaml(
        cfg_dir,
        "monitoring_db.yaml",
        "monitoring_db:\n  url: postgresql://mon_user:TopSecret99@db.example:6543/mon?sslmode=require\n"
        "  tables: [public.events]\n  columns: {ts: timestamp}\n  filters: [{column: env, label: Env}]\n",
    )
    settings = make_settings()
    d = ds.get_defaults(settings, "monitoring")
    assert (d.host, d.port, d.database, d.username, d.ssl_mode) == ("db.example", 6543, "mon", "mon_user", "require")
    assert d.has_password is True and d.url is None and d.has_defaults is True
    assert d.tables == ["public.events"] and d.column_rename_map == {"ts": "timestamp"}
    assert d.filters[0].column == "env"
    assert "TopSecret99" not in d.model_dump_json()
    empty = ds.get_defaults(settings, "data")
    assert empty.has_defaults is False and empty.has_password is False
    with pytest.raises(Invalid):
        ds.get_defaults(settings, "nope")


async def test_masked_password_uses_configured_one(
    make_settings: Callable[..., Settings], tmp_path: Path, pg: PgSchema
) -> None:
    settings = make_settings()
    conns = ds.build_connection_store(settings)
    try:
        with pytest.raises(Invalid) as info:
            await ds.connect(conns, settings, "data", connect_request(pg, password=ds.MASKED_PASSWORD))
        assert "No password is configured" in info.value.message
        target = f"  host: {pg.host}\n  port: {pg.port}\n  database: {pg.database}\n  username: {pg.user}\n"
        yaml = "eval_db:\n" + target + "  password: cfgpw\n  ssl_mode: disable\n"
        write_yaml(tmp_path / "custom" / "config", "eval_db.yaml", yaml)
        settings2 = make_settings()
        resp = await ds.connect(conns, settings2, "data", connect_request(pg, password=ds.MASKED_PASSWORD))
        handle = await conns.lookup(resp.handle)
        assert handle.credentials.password == "cfgpw"
        assert resp.message == "Connection successful"
        # the saved password goes to the configured server only: another host, port, database or
        # user is refused before any connection is made (a client could name a server of its own)
        for other in ({"host": "127.0.0.2"}, {"port": 1}, {"database": "postgres"}, {"username": "someone"}):
            with pytest.raises(Invalid, match="only used for the configured server"):
                await ds.connect(conns, settings2, "data", connect_request(pg, password=ds.MASKED_PASSWORD, **other))
        # and never over weaker TLS than configured
        write_yaml(
            tmp_path / "custom" / "config",
            "eval_db.yaml",
            "eval_db:\n" + target + "  password: p\n  ssl_mode: verify-full\n",
        )
        cfg = make_settings().db_config("data")
        req = connect_request(pg, password=ds.MASKED_PASSWORD, ssl_mode="disable")
        assert ds.saved_password_target(cfg, req) == ("p", "verify-full")
    finally:
        await conns.close_all()


# ------------------------------------------------------------------------------ browsing
async def test_tables_schema_and_samples(env: Env, people: PgSchema) -> None:
    conns, settings, handle = env
    tables = await ds.list_tables(conns, settings, handle)
    mine = {(t.schema_name, t.name): t.row_count_estimate for t in tables.tables if t.schema_name == people.schema}
    assert mine == {(people.schema, "people"): 4, (people.schema, "secret"): 1}
    assert not any(t.schema_name in ("pg_catalog", "information_schema") for t in tables.tables)
    keys = [(t.schema_name, t.name) for t in tables.tables]
    assert keys == sorted(keys)

    sch = await ds.table_schema(conns, settings, handle, people.schema, "people")
    assert [(c.name, c.data_type, c.nullable) for c in sch.columns] == [
        ("id", "integer", False), ("name", "text", False), ("team", "text", True), ("score", "numeric(6,2)", True),
        ("created", "timestamp with time zone", True), ("Mixed Case", "text", True),
    ]  # fmt: skip
    assert sorted(sch.sample_values["name"]) == ["ann", "bob", "cid", "dee"]
    assert sorted(sch.sample_values["team"]) == ["blue", "red", "red"]  # NULLs are not samples
    assert sorted(sch.sample_values["score"]) == ["1.50", "2.25", "4.00"] and len(sch.sample_values["created"]) == 3
    with pytest.raises(NotFound) as info:
        await ds.table_schema(conns, settings, handle, people.schema, "nope")
    assert info.value.message == f"Table '{people.schema}.nope' not found"


async def test_distinct_values_and_preview(env: Env, people: PgSchema) -> None:
    conns, settings, handle = env
    table = TableRef(schema_name=people.schema, name="people")
    dv = await ds.distinct_values(conns, settings, handle, DistinctValuesRequest(table=table, column="team"))
    assert dv.values == ["blue", "red"]
    dv = await ds.distinct_values(conns, settings, handle, DistinctValuesRequest(table=table, column="id", limit=2))
    assert dv.values == sorted(["1", "2", "3", "4"])[:2]

    pv = await ds.preview(
        conns, settings, handle,
        PreviewRequest(table=table, mappings=[ColumnMapping(source="id", target="dataset_id"),
                                              ColumnMapping(source="Mixed Case", target="label")],
                       filters=[ColumnFilter(column="team", value="red")], limit=10),
    )  # fmt: skip
    assert sorted(pv.data, key=lambda r: r["dataset_id"]) == [
        {"dataset_id": 1, "label": "a"}, {"dataset_id": 3, "label": None},
    ]  # fmt: skip
    assert pv.row_count == 2
    pv = await ds.preview(conns, settings, handle, PreviewRequest(table=table, limit=1))
    assert pv.row_count == 1 and set(pv.data[0]) == {"id", "name", "team", "score", "created", "Mixed Case"}
    # Numeric filter values compare as text; NULL filters use IS NULL.
    pv = await ds.preview(
        conns,
        settings,
        handle,
        PreviewRequest(
            table=table, filters=[ColumnFilter(column="id", value=2), ColumnFilter(column="Mixed Case", value="b")]
        ),
    )
    assert [r["name"] for r in pv.data] == ["bob"]
    pv = await ds.preview(
        conns, settings, handle, PreviewRequest(table=table, filters=[ColumnFilter(column="team", value=None)])
    )
    assert [r["name"] for r in pv.data] == ["dee"]


@pytest.mark.parametrize(
    "request_factory",
    [
        lambda s: PreviewRequest(table=TableRef(schema_name=s, name='people"; DROP TABLE people; --')),
        lambda s: PreviewRequest(table=TableRef(schema_name=f'{s}"; DROP', name="people")),
        lambda s: PreviewRequest(table=TableRef(schema_name=s, name="ｐｅｏｐｌｅ")),
        lambda s: PreviewRequest(
            table=TableRef(schema_name=s, name="people"),
            mappings=[ColumnMapping(source='id"; DROP TABLE people; --', target="x")],
        ),
        lambda s: PreviewRequest(
            table=TableRef(schema_name=s, name="people"),
            mappings=[ColumnMapping(source="id", target='x" FROM people; DROP TABLE people; --')],
        ),
        lambda s: PreviewRequest(
            table=TableRef(schema_name=s, name="people"), mappings=[ColumnMapping(source="nаme", target="x")]
        ),  # Cyrillic а
        lambda s: PreviewRequest(
            table=TableRef(schema_name=s, name="people"),
            filters=[ColumnFilter(column="team; DROP TABLE people", value="red")],
        ),
        lambda s: PreviewRequest(
            table=TableRef(schema_name=s, name="people"), filters=[ColumnFilter(column="ｔｅａｍ", value="red")]
        ),
        lambda s: PreviewRequest(
            table=TableRef(schema_name=s, name="people"),
            mappings=[ColumnMapping(source="id", target="a"), ColumnMapping(source="name", target="A")],
        ),
    ],
)
async def test_identifier_injection_rejected(env: Env, people: PgSchema, request_factory: Any) -> None:
    conns, settings, handle = env
    with pytest.raises(Invalid) as info:
        await ds.preview(conns, settings, handle, request_factory(people.schema))
    assert info.value.status_code == 400
    assert people_count(people) == 4


async def test_distinct_values_column_injection(env: Env, people: PgSchema) -> None:
    conns, settings, handle = env
    table = TableRef(schema_name=people.schema, name="people")
    for column in ['team"; DROP TABLE people; --', "tеam", "team\u200d", "nope"]:
        with pytest.raises(Invalid):
            await ds.distinct_values(conns, settings, handle, DistinctValuesRequest(table=table, column=column))
    # A well-formed table that does not exist (Cyrillic look-alike) is not found.
    with pytest.raises(NotFound):
        await ds.table_schema(conns, settings, handle, people.schema, "pеople")
    assert people_count(people) == 4


# ------------------------------------------------------------------------------ safe query
async def query(env: Env, sql: str, limit: int = 10) -> list[dict[str, Any]]:
    conns, settings, handle = env
    return (await ds.run_query(conns, settings, handle, QueryRequest(query=sql, limit=limit))).data


async def test_recursive_search_and_cycle_clauses_run(env: Env, people: PgSchema) -> None:
    """PostgreSQL's SEARCH … SET / CYCLE … SET clauses pass the checks and run (values from PostgreSQL)."""
    from tests.services.test_sql_safety import CYCLE_SQL, SEARCH_SQL

    rows = await query(env, SEARCH_SQL)
    assert [r["n"] for r in rows] == [1, 2, 3]
    assert [r["a"] for r in await query(env, CYCLE_SQL)] == [1, 2, 1]
    assert [r["looped"] for r in await query(env, CYCLE_SQL)] == [False, False, True]


async def test_query_basics(env: Env, people: PgSchema) -> None:
    s = people.schema
    rows = await query(env, f'SELECT id, name FROM "{s}".people ORDER BY id LIMIT 5', limit=3)
    assert rows == [{"id": 1, "name": "ann"}, {"id": 2, "name": "bob"}, {"id": 3, "name": "cid"}]
    rows = await query(env, f'SELECT id FROM "{s}".people ORDER BY id LIMIT 2', limit=10)
    assert [r["id"] for r in rows] == [1, 2]
    assert await query(env, "SELECT '100%' AS pct, 'a;b' AS semi, $$x;y$$ AS d;") == [
        {"pct": "100%", "semi": "a;b", "d": "x;y"}
    ]
    assert await query(env, "SELECT 1 AS one -- trailing comment") == [{"one": 1}]
    assert await query(env, "SELECT 1 AS one /* ; DROP TABLE people */") == [{"one": 1}]
    assert await query(env, r"SELECT E'it\'s' AS s") == [{"s": "it's"}]
    rows = await query(
        env,
        f'WITH r AS (SELECT team, count(*) AS n FROM "{s}".people GROUP BY team) '
        "SELECT * FROM r ORDER BY n DESC, team NULLS LAST",
    )
    assert rows == [{"team": "red", "n": 2}, {"team": "blue", "n": 1}, {"team": None, "n": 1}]


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO {s}.people VALUES (9, 'x')",
        "UPDATE {s}.people SET name = 'x'",
        "DELETE FROM {s}.people",
        "DROP TABLE {s}.people",
        "CREATE TABLE {s}.evil (a int)",
        "COPY {s}.people TO STDOUT",
        "WITH x AS (SELECT 1) INSERT INTO {s}.people VALUES (9, 'x')",
        "WITH x AS (SELECT 1) UPDATE {s}.people SET name = 'x'",
        "WITH x AS (SELECT 1) DELETE FROM {s}.people",
        "WITH x AS (SELECT 1) DROP TABLE {s}.people",
        "WITH x AS (DELETE FROM {s}.people RETURNING *) SELECT * FROM x",
        "WITH x AS (SELECT 1) COPY {s}.people TO STDOUT",
        "SELECT 1; DROP TABLE {s}.people",
        "SELECT 1 -- hide\n; DROP TABLE {s}.people",
        "SELECT 1 /* hide */; DELETE FROM {s}.people",
        "SELECT * FROM {s}.people FOR UPDATE",
        "SELECT * INTO {s}.copy FROM {s}.people",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'axis-victim'",
        "SELECT pg_catalog.pg_cancel_backend(1)",
        "SELECT * FROM {s}.people WHERE id = $1",
    ],
)
async def test_dangerous_queries_refused_and_database_unchanged(env: Env, people: PgSchema, sql: str) -> None:
    victim = psycopg.connect(people.dsn, autocommit=True, application_name="axis-victim")
    try:
        with pytest.raises(ServiceError) as info:
            await query(env, sql.format(s=f'"{people.schema}"'))
        assert info.value.status_code in (400, 422)
        assert people_count(people) == 4
        tables = people.fetch("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (people.schema,))
        assert tables == [("people",), ("secret",)]
        assert victim.execute("SELECT 1").fetchone() == (1,)  # the victim backend is still alive
    finally:
        victim.close()


async def test_write_through_function_is_harmless(env: Env, people: PgSchema) -> None:
    s = people.schema
    people.execute(
        "CREATE FUNCTION sneaky() RETURNS int LANGUAGE sql AS "
        f"$$ INSERT INTO \"{s}\".people VALUES (99, 'evil'); SELECT 1 $$"
    )
    people.execute("CREATE SEQUENCE seq")
    with pytest.raises(Invalid) as info:
        await query(env, f'SELECT "{s}".sneaky()')
    assert "read-only" in info.value.message
    assert people_count(people) == 4
    with pytest.raises(Unprocessable):
        await query(env, f"SELECT nextval('\"{s}\".seq')")
    assert people.fetch("SELECT last_value, is_called FROM seq") == [(1, False)]


async def test_query_timeout_is_408(make_settings: Callable[..., Settings], people: PgSchema) -> None:
    settings = make_settings(db_query_timeout_seconds=1)
    conns, handle = await _env(settings, people)
    try:
        with pytest.raises(Timeout) as info:
            await ds.run_query(conns, settings, handle, QueryRequest(query="SELECT pg_sleep(10)"))
        assert info.value.status_code == 408
        # The pooled connection is usable afterwards and not stuck read-only or timed out.
        probe = QueryRequest(query="SELECT current_setting('statement_timeout') AS t")
        res = await ds.run_query(conns, settings, handle, probe)
        assert res.data == [{"t": "1s"}]
        async with conns.connection(handle) as (conn, _):
            assert await conn.fetchval("SHOW transaction_read_only") == "off"
            assert await conn.fetchval("SHOW statement_timeout") == "30s"
    finally:
        await conns.close_all()


async def test_allow_list_enforced(
    make_settings: Callable[..., Settings], tmp_path: Path, people: PgSchema, store: DuckDBStore
) -> None:
    s = people.schema
    write_yaml(tmp_path / "custom" / "config", "eval_db.yaml", f"eval_db:\n  tables: ['{s}.people']\n")
    settings = make_settings()
    conns, handle = await _env(settings, people)
    try:
        env: Env = (conns, settings, handle)
        assert await query(env, f'SELECT count(*) AS n FROM "{s}".people') == [{"n": 4}]
        for sql in (
            f'SELECT * FROM "{s}".secret',
            f'SELECT * FROM "{s}".people, "{s}".secret',
            "SELECT * FROM pg_catalog.pg_authid",
            "SELECT * FROM pg_user",
            # A SEARCH/CYCLE column list must not make a table name look like a CTE.
            "WITH RECURSIVE r(n, pg_authid) AS (SELECT 1, 1 UNION ALL SELECT n + 1, pg_authid FROM r WHERE n < 2) "
            "CYCLE n, pg_authid SET c USING p SELECT rolname, rolsuper FROM pg_authid",
        ):
            with pytest.raises(Unprocessable) as info:
                await query(env, sql)
            assert "allow-list" in info.value.message
        listed = await ds.list_tables(conns, settings, handle)
        assert [(t.schema_name, t.name) for t in listed.tables] == [(s, "people")]
        with pytest.raises(Unprocessable, match="is not in the configured tables allow-list"):
            await ds.preview(conns, settings, handle, PreviewRequest(table=TableRef(schema_name=s, name="secret")))
        with pytest.raises(Unprocessable):
            await di.table_import(
                conns,
                store,
                settings,
                handle,
                TableImportRequest(handle=handle, table=TableRef(schema_name=s, name="secret")),
                None,
            )
    finally:
        await conns.close_all()


async def test_allow_list_refuses_functions_outside_pg_catalog(
    make_settings: Callable[..., Settings], tmp_path: Path, people: PgSchema, store: DuckDBStore
) -> None:
    s = people.schema
    public_fn = f"axis_leak_{uuid.uuid4().hex[:10]}"  # unqualified names resolve through "public, pg_catalog"
    people.execute(
        f'CREATE FUNCTION "{s}".leak() RETURNS SETOF text LANGUAGE sql AS $$ SELECT v FROM "{s}".secret $$;'
        f"CREATE FUNCTION public.{public_fn}(arg text) RETURNS text LANGUAGE sql AS "
        f"$$ SELECT string_agg(v, ',') FROM \"{s}\".secret $$"
    )
    write_yaml(tmp_path / "custom" / "config", "eval_db.yaml", f"eval_db:\n  tables: ['{s}.people']\n")
    settings = make_settings()
    conns, handle = await _env(settings, people)
    try:
        env: Env = (conns, settings, handle)
        refused = {
            f'SELECT * FROM "{s}".leak()': f"'{s}.leak'",
            f'SELECT * FROM ROWS FROM ("{s}".leak())': f"'{s}.leak'",
            f'SELECT p.id, l FROM "{s}".people p LEFT JOIN LATERAL "{s}".leak() l ON true': f"'{s}.leak'",
            f"SELECT * FROM {public_fn}('x')": f"public.{public_fn}",
            f"SELECT * FROM ROWS FROM ({public_fn}('x'))": f"public.{public_fn}",
            f'SELECT * FROM "{s}".people p, LATERAL {public_fn}(p.name) l': f"public.{public_fn}",
            f"SELECT ('x'::text).{public_fn}": f"public.{public_fn}",
            f'SELECT upper(name) FROM "{s}".people WHERE {public_fn}(name) IS NOT NULL': f"public.{public_fn}",
        }
        for sql, name in refused.items():
            with pytest.raises(Unprocessable) as info:
                await query(env, sql)
            assert name in info.value.message and "only built-in (pg_catalog) functions" in info.value.message, sql
            with pytest.raises(Unprocessable):
                req = QueryImportRequest(handle=handle, query=sql)
                await di.query_import(conns, store, settings, handle, req, None)
        # Built-in functions keep working, in FROM too.
        rows = await query(
            env, f'SELECT upper(p.name) AS u, g FROM "{s}".people p, generate_series(1, 2) g WHERE p.id = 1 ORDER BY g'
        )
        assert rows == [{"u": "ANN", "g": 1}, {"u": "ANN", "g": 2}]
        assert await query(env, "SELECT * FROM pg_catalog.generate_series(1, 2) AS g") == [{"g": 1}, {"g": 2}]
    finally:
        await conns.close_all()
        people.execute(f"DROP FUNCTION IF EXISTS public.{public_fn}(text)")
    # Without an allow-list, the role decides: the function runs.
    open_settings = make_settings(axis_custom_dir=tmp_path / "no_allow_list")
    conns, handle = await _env(open_settings, people)
    try:
        assert await query((conns, open_settings, handle), f'SELECT * FROM "{s}".leak() AS v') == [{"v": "classified"}]
    finally:
        await conns.close_all()


async def test_query_result_size_cap(make_settings: Callable[..., Settings], people: PgSchema) -> None:
    settings = make_settings(db_query_max_result_mb=1)
    people.execute("CREATE TABLE blobs AS SELECT g AS id, repeat('x', 400000) AS big FROM generate_series(1, 4) g")
    conns, handle = await _env(settings, people)
    try:
        env: Env = (conns, settings, handle)
        sql = "SELECT repeat('x', 400000) AS big FROM generate_series(1, 4)"
        with pytest.raises(PayloadTooLarge) as info:
            await query(env, sql)
        assert info.value.status_code == 413
        assert "too large: 4 rows hold about 1.5 MB" in info.value.message
        assert "Select fewer or narrower columns" in info.value.message
        assert ds._megabytes(600) == "0.00057" and ds._megabytes(52_000) == "0.05" and ds._megabytes(2**20) == "1.0"
        rows = await query(env, sql, limit=2)  # 0.8 MB fits
        assert [len(r["big"]) for r in rows] == [400000, 400000]
        sch = await ds.table_schema(conns, settings, handle, people.schema, "blobs")
        assert sch.sample_values == {"id": [1, 2, 3, 4], "big": []}  # 400 kB values are not samples
        table = TableRef(schema_name=people.schema, name="blobs")
        with pytest.raises(PayloadTooLarge):
            await ds.preview(conns, settings, handle, PreviewRequest(table=table, limit=4))
        res = await ds.preview(conns, settings, handle, PreviewRequest(table=table, limit=2))
        assert [(r["id"], len(r["big"])) for r in res.data] == [(1, 400000), (2, 400000)]
        # Empty results and NULL-only rows pass through the sized wrapper unchanged.
        assert await query(env, "SELECT 1 AS a WHERE false") == []
        assert await query(env, "SELECT NULL AS a, 2 AS b") == [{"a": None, "b": 2}]
    finally:
        await conns.close_all()


async def test_query_refuses_duplicate_column_names(env: Env, people: PgSchema) -> None:
    with pytest.raises(Invalid) as info:
        await query(env, "SELECT 1 AS a, 2 AS a, 3 AS b")
    assert info.value.message == "Duplicate column names in the result: a. Give each column a unique alias."
    # Names differing in case are different JSON keys.
    assert await query(env, 'SELECT 1 AS a, 2 AS "A"') == [{"a": 1, "A": 2}]


async def test_out_of_range_dates_are_400(env: Env, people: PgSchema, store: DuckDBStore) -> None:
    conns, settings, handle = env
    people.execute("CREATE TABLE far (id int, d date); INSERT INTO far VALUES (1, '20000-01-01')")
    for sql in (
        "SELECT '20000-01-01'::timestamp AS t",
        "SELECT '20000-01-01'::date AS d",
        "SELECT '20000-01-01 00:00+00'::timestamptz AS tz",
    ):
        with pytest.raises(Invalid) as info:
            await query(env, sql)
        assert "dates and timestamps must lie between the years 1 and 9999" in info.value.message
        assert "col::text" in info.value.message
        with pytest.raises(Invalid) as info:
            await di.query_import(conns, store, settings, handle, QueryImportRequest(handle=handle, query=sql), None)
        assert "years 1 and 9999" in info.value.message
    with pytest.raises(Invalid):
        await ds.preview(conns, settings, handle, PreviewRequest(table=TableRef(schema_name=people.schema, name="far")))
    with pytest.raises(Invalid):
        await ds.table_schema(conns, settings, handle, people.schema, "far")
    # The text cast the message suggests works, and the pooled connection is still healthy.
    assert await query(env, "SELECT '20000-01-01'::date::text AS d") == [{"d": "20000-01-01"}]
    leftovers = await store.fetch("SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '_axis_dbimport%'")
    assert leftovers.rows == []


# ------------------------------------------------------------------------------ imports
async def test_import_keeps_the_query_order(env: Env, people: PgSchema, store: DuckDBStore) -> None:
    conns, settings, handle = env
    people.execute("CREATE TABLE events AS SELECT g AS id, 'e' || g AS query FROM generate_series(1, 20) g")
    sql = f'SELECT id, query FROM "{people.schema}".events'

    async def imported(q: str) -> list[int]:
        res = await di.query_import(
            conns, store, settings, handle, QueryImportRequest(handle=handle, query=q, limit=3), None
        )
        info = await store.get_dataset(res.dataset_id or "")
        rows = await store.fetch(f"SELECT id FROM {quote_ident(info.table_name)} ORDER BY rowid")
        assert [r["id"] for r in response_rows(res)] == [r[0] for r in rows.rows]
        return [r[0] for r in rows.rows]

    assert await imported(sql + " ORDER BY id DESC") == [20, 19, 18]  # the latest three, newest first
    assert await imported(f"({sql} ORDER BY query DESC, id)") == [9, 8, 7]
    assert await imported(sql) == [1, 2, 3]  # no ORDER BY: the stable key order
    assert await imported(f"SELECT * FROM ({sql} ORDER BY id DESC) q") == [1, 2, 3]  # inner order is not kept
    # columns of types with no ordering (xid, void) are left out of the stable key, not an error
    odd = f"SELECT id, '7'::xid AS x, pg_sleep(0) AS v FROM \"{people.schema}\".events"
    assert await imported(odd) == [1, 2, 3]


async def test_import_deadline_covers_the_whole_read(
    make_settings: Callable[..., Settings], people: PgSchema, store: DuckDBStore
) -> None:
    app_name = f"axis-d-{uuid.uuid4().hex[:8]}"
    settings = make_settings(db_import_timeout_seconds=3, db_import_batch_rows=100, db_application_name=app_name)
    conns, handle = await _env(settings, people)
    # JSON columns have no ordering, so the rows stream: each FETCH of 100 rows takes ~2 s (under the 3 s
    # statement_timeout, which restarts per FETCH); the whole read would take ~8 s.
    sql = "SELECT to_json(g) AS j, to_json(pg_sleep(0.02)::text) AS s FROM generate_series(1, 400) g"
    try:
        started = time.monotonic()
        with pytest.raises(Timeout) as info:
            await di.query_import(
                conns,
                store,
                settings,
                handle,
                QueryImportRequest(handle=handle, query=sql, limit=400, dedupe_on_id=False),
                None,
            )
        elapsed = time.monotonic() - started
        assert info.value.status_code == 408
        assert info.value.message == "Query timeout exceeded (3s). Simplify the query or add filters."
        assert 2.9 <= elapsed < 5.0
        active = ["x"]
        for _ in range(50):
            active = [
                r[0]
                for r in people.fetch(
                    "SELECT query FROM pg_stat_activity WHERE application_name = %s AND state <> 'idle'", (app_name,)
                )
            ]
            if not active:
                break
            await asyncio.sleep(0.05)
        assert active == []  # the server-side query was cancelled, nothing keeps running
        leftovers = await store.fetch("SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '_axis_dbimport%'")
        assert leftovers.rows == []
        # The handle and its pool still work.
        assert await query((conns, settings, handle), "SELECT 7 AS n") == [{"n": 7}]
    finally:
        await conns.close_all()


async def test_import_dedupes_in_stable_order_and_lands_eval(env: Env, people: PgSchema, store: DuckDBStore) -> None:
    conns, settings, handle = env
    people.execute(
        """
        CREATE TABLE evals (record_id text, metric text, score float8, note text);
        INSERT INTO evals VALUES
          ('c2', 'acc', 0.5, 'z'), ('c1', 'acc', 0.9, 'b'), ('c1', 'acc', 0.1, 'a'),
          ('c1', 'f1', 0.7, NULL), (NULL, 'acc', 0.3, 'n1'), (NULL, 'acc', 0.4, 'n2'), ('c2', 'acc', 0.6, 'y');
        """
    )
    req = QueryImportRequest(handle=handle, query=f'SELECT * FROM "{people.schema}".evals')
    res = await di.query_import(conns, store, settings, handle, req, None)
    assert res.kind == "eval" and res.format == "flat_format"
    # Expected: ORDER BY key then all other columns; the first row of each (dataset_id, metric_name) wins;
    # rows with a NULL key are all kept.
    rows = sorted(
        people.fetch("SELECT record_id, metric, score, note FROM evals"),
        key=lambda r: (r[0] is None, r[0] or "", r[1], r[2], r[3] is None, r[3] or ""),
    )
    seen: set[tuple[str, str]] = set()
    expected = []
    for r in rows:
        if r[0] is not None:
            if (r[0], r[1]) in seen:
                continue
            seen.add((r[0], r[1]))
        expected.append((r[0], r[1], r[2]))
    got = [(r["dataset_id"], r["metric_name"], r["metric_score"]) for r in response_rows(res)]
    assert got == expected
    assert res.duplicates_removed == 7 - len(expected) == 2
    assert res.dataset_id is not None
    info = await store.get_dataset(res.dataset_id)
    assert (info.kind, info.source, info.row_count, info.format) == ("eval", "database", len(expected), "flat_format")
    # dedupe_on_id=false keeps every row.
    req2 = QueryImportRequest(handle=handle, query=f'SELECT * FROM "{people.schema}".evals', dedupe_on_id=False)
    res2 = await di.query_import(conns, store, settings, handle, req2, None)
    assert res2.row_count == 7 and res2.duplicates_removed == 0
    # No scratch tables are left behind in DuckDB.
    leftovers = await store.fetch("SELECT table_name FROM duckdb_tables() WHERE table_name LIKE '_axis_dbimport%'")
    assert leftovers.rows == []


async def test_import_rename_map_of_targeted_store_and_kinds(
    make_settings: Callable[..., Settings], tmp_path: Path, people: PgSchema, store: DuckDBStore
) -> None:
    cfg = tmp_path / "custom" / "config"
    write_yaml(cfg, "eval_db.yaml", "eval_db:\n  columns: {lat_raw: eval_latency}\n")
    write_yaml(cfg, "monitoring_db.yaml", "monitoring_db:\n  columns: {lat_raw: latency, happened: timestamp}\n")
    settings = make_settings()
    people.execute(
        """
        CREATE TABLE mon (id text, happened timestamptz, lat_raw float8, relevance_score float8);
        INSERT INTO mon VALUES ('a', '2024-03-01 12:00:00+01', 120, 0.9), ('b', '2024-03-02 00:00:00+00', 80, 0.4),
                               ('a', '2024-03-03 00:00:00+00', 999, 0.1);
        CREATE TABLE hs (dataset_id text, metric_name text, signals jsonb, source_name text);
        INSERT INTO hs VALUES ('1', 'm', '{"is_ok": true}', 'bot');
        """
    )
    conns, handle = await _env(settings, people)
    try:
        sql = f'SELECT * FROM "{people.schema}".mon'
        mon = await di.query_import(
            conns, store, settings, handle, QueryImportRequest(handle=handle, query=sql), "monitoring"
        )
        assert mon.kind == "monitoring" and mon.format == "monitoring"
        assert mon.columns[:4] == ["dataset_id", "timestamp", "latency", "relevance_score"]
        assert [(r["dataset_id"], r["latency"]) for r in response_rows(mon)] == [("a", 120.0), ("b", 80.0)]
        assert response_rows(mon)[0]["timestamp"] == "2024-03-01T11:00:00"  # UTC, naive
        # Same rows targeted at the data store: the eval map applies (DB-20) and the data still lands as monitoring.
        ev = await di.query_import(conns, store, settings, handle, QueryImportRequest(handle=handle, query=sql), None)
        assert "eval_latency" in ev.columns and "latency" not in ev.columns
        assert ev.kind == "monitoring"
        hs = await di.query_import(
            conns, store, settings, handle,
            QueryImportRequest(handle=handle, query=f'SELECT * FROM "{people.schema}".hs'), "human_signals",
        )  # fmt: skip
        assert hs.kind == "human_signals" and hs.format == "hitl_feedback" and hs.row_count == 1
        cases = await human_signals_service.list_cases(store, settings, 1, 50, hs.dataset_id)
        assert [c["Case_ID"] for c in response_rows(cases)] == ["1"]
        assert response_rows(cases)[0]["m__is_ok"] is True
    finally:
        await conns.close_all()


async def test_table_import_mappings_filters_types(env: Env, people: PgSchema, store: DuckDBStore) -> None:
    conns, settings, handle = env
    req = TableImportRequest(
        handle=handle,
        table=TableRef(schema_name=people.schema, name="people"),
        mappings=[ColumnMapping(source="id", target="dataset_id"), ColumnMapping(source="name", target="query"),
                  ColumnMapping(source="score", target="score_value"), ColumnMapping(source="created", target="ts")],
        filters=[ColumnFilter(column="team", value="red")],
    )  # fmt: skip
    res = await di.table_import(conns, store, settings, handle, req, None)
    assert res.row_count == 2 and res.columns == ["dataset_id", "query", "score_value", "ts"]
    assert response_rows(res) == [
        {"dataset_id": 1, "query": "ann", "score_value": 1.5, "ts": "2024-01-01T08:00:00"},
        {"dataset_id": 3, "query": "cid", "score_value": None, "ts": None},
    ]
    assert res.format == "database_import" and "Warning" not in res.message
    info = await store.get_dataset(res.dataset_id or "")
    assert {c["name"]: c["type"] for c in info.columns} == {
        "dataset_id": "INTEGER", "query": "VARCHAR", "score_value": "DECIMAL(6,2)", "ts": "TIMESTAMP",
    }  # fmt: skip
    with pytest.raises(Invalid):
        await di.table_import(conns, store, settings, handle, req.model_copy(update={"handle": "other"}), None)
    empty = await di.table_import(
        conns, store, settings, handle,
        req.model_copy(update={"filters": [ColumnFilter(column="team", value="green")]}), None,
    )  # fmt: skip
    assert (empty.row_count, empty.dataset_id, empty.format) == (0, None, "database_import")
    assert empty.message == "No data found matching the specified criteria"


async def test_import_limit_and_warning(env: Env, people: PgSchema, store: DuckDBStore) -> None:
    conns, settings, handle = env
    req = QueryImportRequest(handle=handle, query=f'SELECT v FROM "{people.schema}".secret', limit=5)
    res = await di.query_import(conns, store, settings, handle, req, None)
    assert res.row_count == 1 and "Warning: no canonical columns" in res.message
    with pytest.raises(Invalid):
        await di.query_import(
            conns, store, settings, handle, req.model_copy(update={"limit": settings.db_import_max_rows + 1}), None
        )
    with pytest.raises(Invalid) as info:
        await di.query_import(
            conns, store, settings, handle, req.model_copy(update={"query": "SELECT 1 AS a, 2 AS A"}), None
        )
    assert "Duplicate column names" in info.value.message
    info = await store.get_dataset(res.dataset_id or "")
    table = await store.fetch(f"SELECT * FROM {quote_ident(info.table_name)}")
    assert table.rows == [("classified",)]


async def test_query_import_of_types_without_an_ordering(env: Env, store: DuckDBStore) -> None:
    """jsonpath, txid_snapshot and friends have no btree ordering: they stay out of the stable ORDER BY
    (the import was a 400 "could not identify an ordering operator")."""
    conns, settings, handle = env
    sql = "SELECT g AS id, '$.a'::jsonpath AS p, txid_current_snapshot() AS s FROM generate_series(1, 3) g"
    res = await di.query_import(conns, store, settings, handle, QueryImportRequest(handle=handle, query=sql), None)
    info = await store.get_dataset(res.dataset_id or "")
    rows = await store.fetch(f"SELECT id, p FROM {quote_ident(info.table_name)} ORDER BY id")
    assert rows.rows == [(1, '$."a"'), (2, '$."a"'), (3, '$."a"')]
    # a refcursor column, and a json id (the dedupe key) are left out of the ORDER BY too
    sql = (
        "SELECT to_json(g) AS dataset_id, 'q' || g AS query, 'acc' AS metric_name, 0.5 AS metric_score, "
        "'c'::refcursor AS cur FROM generate_series(1, 3) g"
    )
    res = await di.query_import(conns, store, settings, handle, QueryImportRequest(handle=handle, query=sql), None)
    info = await store.get_dataset(res.dataset_id or "")
    rows = await store.fetch(f"SELECT query, cur FROM {quote_ident(info.table_name)} ORDER BY query")
    assert rows.rows == [("q1", "c"), ("q2", "c"), ("q3", "c")]


async def test_query_import_numeric_is_exact(env: Env, people: PgSchema, store: DuckDBStore) -> None:
    conns, settings, handle = env
    sql = (
        f"SELECT id, score, score * 1000000 AS big, (-score)::numeric AS neg, 'NaN'::numeric AS nan, "
        f'1e40::numeric AS huge FROM "{people.schema}".people'
    )
    res = await di.query_import(conns, store, settings, handle, QueryImportRequest(handle=handle, query=sql), None)
    info = await store.get_dataset(res.dataset_id or "")
    types = {c["name"]: c["type"] for c in info.columns}
    # Precision and scale come from the values (PostgreSQL does not report them for query results).
    assert types["score"] == "DECIMAL(3,2)" and types["big"] == "DECIMAL(9,2)" and types["neg"] == "DECIMAL(3,2)"
    assert types["huge"] == "DOUBLE"
    rows = await store.fetch(f"SELECT id, score, big, neg, nan FROM {quote_ident(info.table_name)} ORDER BY id")
    assert rows.rows == [
        (1, decimal.Decimal("1.50"), decimal.Decimal("1500000.00"), decimal.Decimal("-1.50"), None),
        (2, decimal.Decimal("2.25"), decimal.Decimal("2250000.00"), decimal.Decimal("-2.25"), None),
        (3, None, None, None, None),
        (4, decimal.Decimal("4.00"), decimal.Decimal("4000000.00"), decimal.Decimal("-4.00"), None),
    ]
