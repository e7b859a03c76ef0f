"""A client that goes away stops the read-only work it started, and never a write (real uvicorn, real PostgreSQL)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from app.config import Settings
from app.request_cancellation import CancelOnDisconnect, is_cancellable
from app.route_paths import route_path
from app.services.duckdb_store import DatasetInfo, DuckDBStore, utc_now
from tests.conftest import PgSchema
from tests.robustness import live_server


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/api/analytics/summary", True),
        ("GET", "/api/monitoring/analytics/trends", True),
        ("GET", "/api/store/data/monitoring", True),
        ("GET", "/api/store/datasets", True),
        ("GET", "/api/human-signals/cases", True),
        ("POST", "/api/database/h123/query", True),
        ("GET", "/api/database/h123/schema", True),
        # rows posted for conversion: DuckDB reads over the posted rows (up to MAX_UPLOAD_MB of JSON)
        ("POST", "/api/data/convert-tree", True),
        ("POST", "/api/data/prepare-analytics", True),
        # writes: never cut off half-way
        ("POST", "/api/database/h123/query-import", False),
        ("POST", "/api/database/h123/import", False),
        ("POST", "/api/data/upload", False),
        ("GET", "/api/data/example/model", False),
        ("GET", "/api/monitoring/example/monitoring", False),
        ("POST", "/api/store/sync", False),
        ("DELETE", "/api/store/datasets/eval_1", False),
        ("DELETE", "/api/database/h123", False),
        ("GET", "/api/store/datasetsX", False),
    ],
)
def test_only_read_only_routes_are_cancellable(method: str, path: str, expected: bool) -> None:
    assert is_cancellable(method, path) is expected


@pytest.mark.parametrize(
    ("root_path", "path", "expected"),
    [
        ("", "/api/analytics/summary", "/api/analytics/summary"),
        ("/axis", "/axis/api/analytics/summary", "/api/analytics/summary"),  # uvicorn --root-path /axis
        ("/axis", "/axis", "/"),
        ("/axis", "/axisx/api/analytics/summary", "/axisx/api/analytics/summary"),  # not under the root path
        ("/axis", "/api/analytics/summary", "/api/analytics/summary"),
    ],
)
def test_routes_are_matched_without_the_root_path(root_path: str, path: str, expected: str) -> None:
    scope = {"type": "http", "path": path, "root_path": root_path}
    assert route_path(scope) == expected
    assert is_cancellable("POST", route_path(scope)) is (expected == "/api/analytics/summary")


async def test_an_app_error_passes_through_unwrapped() -> None:
    """The middleware's task group must not turn the app's own exception into an ExceptionGroup."""

    async def failing_app(scope: Scope, receive: Receive, send: Send) -> None:
        raise LookupError("boom")

    transport = httpx.ASGITransport(app=CancelOnDisconnect(failing_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        with pytest.raises(LookupError, match="boom"):
            await client.post("/api/analytics/summary", json={"data": []})


async def test_body_chunks_reach_the_app_in_order() -> None:
    """A chunked body reaches the app whole and in order through the middleware."""
    seen: list[bytes] = []

    async def echo_app(scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            seen.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"".join(seen)})

    async def chunks() -> AsyncIterator[bytes]:
        for part in (b'{"data": ', b"[1, 2", b", 3]}"):
            yield part

    transport = httpx.ASGITransport(app=CancelOnDisconnect(echo_app))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.post("/api/analytics/summary", content=chunks())
    assert r.status_code == 200 and r.content == b'{"data": [1, 2, 3]}'


def running_queries(pg: PgSchema, marker: str) -> int:
    rows = pg.fetch(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND strpos(query, %s) > 0 "
        "AND pid <> pg_backend_pid()",
        (marker,),
    )
    return int(rows[0][0])


def wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_disconnect_cancels_a_database_query_but_not_an_import(
    pg: PgSchema, make_settings: Callable[..., Settings]
) -> None:
    settings = make_settings()
    with live_server(settings) as server, httpx.Client(base_url=server.base_url, timeout=30) as client:
        conn = {"host": pg.host, "port": pg.port, "database": pg.database, "username": pg.user,
                "password": "unused-trust-auth", "ssl_mode": "disable"}  # fmt: skip
        handle = client.post("/api/database/connect", json=conn).json()["handle"]

        # /query: the client gives up after 1 s; the 30 s query is cancelled at the server
        marker = f"axis_cancel_{uuid.uuid4().hex[:8]}"
        sql = f"SELECT pg_sleep(30) AS s, '{marker}' AS m"
        with pytest.raises(httpx.ReadTimeout):
            client.post(f"/api/database/{handle}/query", json={"handle": handle, "query": sql}, timeout=1.0)
        assert wait_for(lambda: running_queries(pg, marker) == 0, 10.0), "the abandoned query still runs"
        # the handle still works afterwards
        r = client.post(f"/api/database/{handle}/query", json={"handle": handle, "query": "SELECT 6 * 7 AS v"})
        assert r.status_code == 200, r.text
        assert r.json()["data"] == [{"v": 42}]

        # /query-import writes: the client leaving does not stop it, and the dataset lands whole
        before = {d["dataset_id"] for d in client.get("/api/store/datasets").json()["datasets"]}
        marker = f"axis_keep_{uuid.uuid4().hex[:8]}"
        sql = f"SELECT g AS x, '{marker}' AS m, pg_sleep(0.01) AS s FROM generate_series(1, 150) g"
        with pytest.raises(httpx.ReadTimeout):
            client.post(f"/api/database/{handle}/query-import", json={"handle": handle, "query": sql}, timeout=0.5)

        def landed() -> list[dict[str, object]]:
            datasets = client.get("/api/store/datasets").json()["datasets"]
            return [d for d in datasets if d["dataset_id"] not in before]

        assert wait_for(lambda: len(landed()) == 1, 20.0), "the import did not finish after the client left"
        assert landed()[0]["row_count"] == 150


def test_an_abandoned_database_query_rolls_back_its_own_session(
    pg: PgSchema, make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    """The cancel scope that stops an abandoned /query cancels every await after it too: the session's
    ROLLBACK was cut off, and asyncpg's pool logged an ERROR ("Resetting connection with an active
    transaction") for each abandoned query as it took the connection back."""
    settings = make_settings()
    with live_server(settings) as server, httpx.Client(base_url=server.base_url, timeout=30) as client:
        conn = {"host": pg.host, "port": pg.port, "database": pg.database, "username": pg.user,
                "password": "unused-trust-auth", "ssl_mode": "disable"}  # fmt: skip
        handle = client.post("/api/database/connect", json=conn).json()["handle"]
        with caplog.at_level(logging.WARNING):
            for _ in range(2):
                marker = f"axis_rollback_{uuid.uuid4().hex[:8]}"
                sql = f"SELECT pg_sleep(30) AS s, '{marker}' AS m"
                with pytest.raises(httpx.ReadTimeout):
                    client.post(f"/api/database/{handle}/query", json={"handle": handle, "query": sql}, timeout=1.0)
                assert wait_for(lambda m=marker: running_queries(pg, m) == 0, 10.0), "the abandoned query still runs"
            r = client.post(f"/api/database/{handle}/query", json={"handle": handle, "query": "SELECT 1 AS v"})
            assert r.status_code == 200 and r.json()["data"] == [{"v": 1}], r.text
        problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert not [m for m in problems if "active transaction" in m], problems


def test_disconnect_interrupts_a_duckdb_read(make_settings: Callable[..., Settings]) -> None:
    """A store page over a table that takes minutes to count: the client leaves, the DuckDB query stops."""
    settings = make_settings()
    with live_server(settings) as server, httpx.Client(base_url=server.base_url, timeout=30) as client:
        store = server.app.state.store
        # about 100 s of counting on two cores; only an interrupt ends it early
        view = (
            "CREATE VIEW ds_big AS SELECT range AS latency, 'r' || range AS dataset_id, 'q' || range AS query "
            "FROM range(30000000000) WHERE range % 7 = 3"
        )
        server.run(store.execute_write(view))
        info = DatasetInfo(
            dataset_id="big", kind="monitoring", source="upload:big.csv", table_name="ds_big", row_count=0,
            columns=[{"name": "latency", "type": "BIGINT"}, {"name": "dataset_id", "type": "VARCHAR"},
                     {"name": "query", "type": "VARCHAR"}],
            loaded_at=utc_now(),
        )  # fmt: skip
        server.run(store.run_write(lambda cur: DuckDBStore.register_dataset_sync(cur, info)))
        limiter = server.app.state.store.limiter
        with pytest.raises(httpx.ReadTimeout):  # a search no row matches: every row is read
            client.get("/api/store/data/big", params={"search": "no such text"}, timeout=1.0)
        assert wait_for(lambda: limiter.borrowed_tokens == 0, 10.0), "the abandoned DuckDB read still runs"
        r = client.get("/api/store/datasets")
        assert r.status_code == 200 and [d["dataset_id"] for d in r.json()["datasets"]] == ["big"]
