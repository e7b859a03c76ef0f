"""App shell: root, health, CORS, API token, JSON cleaning and the error mapping."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import uuid
from collections.abc import Callable
from typing import Any

import duckdb
import httpx
import numpy as np
import pytest
from fastapi import APIRouter
from pydantic import BaseModel, SecretStr

from app import errors
from app.config import Settings
from app.main import create_app
from app.models.common import Row
from app.serialization import clean_json, dumps_clean
from tests.robustness import live_server


async def test_root_and_health_probe_duckdb(client: httpx.AsyncClient) -> None:
    root = await client.get("/")
    assert root.json() == {"status": "healthy", "service": "AXIS API", "version": "0.1.0"}
    health = (await client.get("/health")).json()
    assert health["status"] == "healthy"
    assert health["components"]["duckdb"] == "up"
    assert health["components"]["llm"] == "offline"
    assert health["components"]["graph"] == "unconfigured"
    assert health["datasets"] == 0
    assert health["sync"] == dict.fromkeys(
        ("monitoring_data", "human_signals_raw", "human_signals_cases", "eval_data", "kpi_data"), "not_synced"
    )


async def test_openapi_lists_fourteen_router_tags(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    names = {t["name"] for t in spec["tags"]}
    assert names == {
        "config",
        "data",
        "analytics",
        "ai",
        "align",
        "reports",
        "database",
        "human-signals",
        "monitoring",
        "monitoring-analytics",
        "eval-runner",
        "memory",
        "memory-graph",
        "store",
    }


async def test_cors_allows_configured_frontends(make_settings: Callable[..., Settings], make_client: Any) -> None:
    settings = make_settings(frontend_urls=" https://a.example , ,https://b.example")
    async with make_client(settings) as client:
        ok = await client.get("/", headers={"Origin": "https://b.example"})
        assert ok.headers["access-control-allow-origin"] == "https://b.example"
        bad = await client.get("/", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in bad.headers


async def test_cors_origins_configured_with_a_trailing_slash_match(
    make_settings: Callable[..., Settings], make_client: Any
) -> None:
    """``FRONTEND_URL=https://app.example/`` never matched a browser's ``Origin: https://app.example``."""
    settings = make_settings(
        frontend_url="https://app.example/", frontend_urls="https://c.example/ ,/, https://d.example:8443/axis/"
    )
    assert settings.cors_origins == [
        "http://localhost:3500", "http://127.0.0.1:3500", "https://app.example", "https://c.example",
        "https://d.example:8443",
    ]  # fmt: skip
    async with make_client(settings) as client:
        for origin in ("https://app.example", "https://c.example", "https://d.example:8443"):
            r = await client.get("/", headers={"Origin": origin})
            assert r.headers["access-control-allow-origin"] == origin


async def test_api_token_guards_api_routes_only(make_settings: Callable[..., Settings], make_client: Any) -> None:
    settings = make_settings(axis_api_token=SecretStr("s3cret-token"))
    async with make_client(settings) as client:
        health = await client.get("/health")
        assert (health.status_code, health.json()["status"]) == (200, "healthy")
        spec = await client.get("/openapi.json")
        assert spec.status_code == 200 and "/api/config/features" in spec.json()["paths"]
        docs = await client.get("/docs")
        assert docs.status_code == 200 and "swagger-ui" in docs.text
        denied = await client.get("/api/config/features")
        assert denied.status_code == 401
        assert "Bearer" in denied.json()["detail"]
        wrong = await client.get("/api/config/features", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = await client.get("/api/config/features", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.json() == {"success": True, "eval_runner_enabled": True, "copilot_enabled": True}
        lower = await client.get("/api/config/features", headers={"Authorization": "bearer s3cret-token"})
        assert lower.json()["success"] is True  # the scheme is case-insensitive
        for header in ("Basic s3cret-token", "s3cret-token", "Bearer s3cret-token-and-more", "Bearer"):
            assert (await client.get("/api/config/features", headers={"Authorization": header})).status_code == 401
        # the OpenAPI declares the bearer token on /api routes, so /docs can send it ("Authorize")
        paths = spec.json()["paths"]
        assert spec.json()["components"]["securitySchemes"]["apiToken"] == {
            "type": "http", "scheme": "bearer", "description": "AXIS_API_TOKEN"
        }  # fmt: skip
        assert paths["/api/config/features"]["get"]["security"] == [{"apiToken": []}]
        assert paths["/api/store/sync"]["post"]["security"] == [{"apiToken": []}]
        assert "security" not in paths["/health"]["get"]


async def test_openapi_declares_no_token_when_none_is_set(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    assert "securitySchemes" not in spec.get("components", {})
    assert "security" not in spec["paths"]["/api/config/features"]["get"]


def test_api_token_is_required_when_served_under_a_root_path(make_settings: Callable[..., Settings]) -> None:
    """Served with ``uvicorn --root-path /axis`` (behind a proxy on a sub-path) the server puts the prefix in
    the request path, and the guard, which looked at that path, let every /api route through without a token."""
    settings = make_settings(axis_api_token=SecretStr("s3cret-token"))
    with live_server(settings, root_path="/axis") as server, httpx.Client(base_url=server.base_url) as client:
        denied = client.get("/api/store/datasets")
        assert denied.status_code == 401 and "Bearer" in denied.json()["detail"]
        ok = client.get("/api/store/datasets", headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200 and ok.json()["datasets"] == []
        assert client.get("/health").status_code == 200  # outside /api: open, as without a root path


def test_clean_json_nan_inf_numpy() -> None:
    cleaned = clean_json(
        {"a": math.nan, "b": [math.inf, -math.inf, 1.5], "c": np.float64("nan"), "d": np.int64(7), "e": np.bool_(True)}
    )
    assert cleaned == {"a": None, "b": [None, None, 1.5], "c": None, "d": 7, "e": True}
    assert type(cleaned["d"]) is int and type(cleaned["e"]) is bool
    # The exact-type fast paths and the subclass/numpy fallbacks agree inside lists and nested keys.
    mixed = clean_json({1: [np.float64(2.5), np.float32("inf"), (3, math.nan), True, None, "s", [np.int8(4)]]})
    assert mixed == {"1": [2.5, None, [3, None], True, None, "s", [4]]}
    assert [type(v) for v in mixed["1"][:2]] == [float, type(None)]


def test_response_bodies_follow_the_clean_json_rules() -> None:
    when = dt.datetime(2026, 1, 2, 3, 4, 5, 678000)
    body = {
        "nan": math.nan,
        "inf": [math.inf, -math.inf, np.float32("nan"), np.float64(1.25)],
        "np": {"i": np.int64(7), "b": np.bool_(False), "arr": np.array([1.5, np.nan])},
        "dec": [decimal.Decimal("2.50"), decimal.Decimal("NaN")],
        "when": [when, when.replace(tzinfo=dt.UTC), when.date()],
        "span": dt.timedelta(seconds=90),
        "raw": b"caf\xc3\xa9",
        "set": {3},
        2: "int key",
        "text": "naïve ✓",
    }
    expected = clean_json(body)
    assert json.loads(dumps_clean(body)) == expected
    assert expected["when"] == ["2026-01-02T03:04:05.678000", "2026-01-02T03:04:05.678000Z", "2026-01-02"]
    assert expected["dec"] == [2.5, None] and expected["span"] == 90.0 and expected["raw"] == "café"
    # Integers beyond 64 bits (DuckDB HUGEINT) take the standard-library path, still strict JSON.
    huge = {"n": 2**70, "x": math.nan}
    assert json.loads(dumps_clean(huge)) == {"n": 2**70, "x": None}
    assert dumps_clean({"text": "naïve"}) == '{"text":"naïve"}'.encode()


def test_clean_json_maps_duckdb_infinities_decimals_intervals_and_blobs() -> None:
    """What DuckDB's client returns for these types, and what the cleaner makes of each."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    row = con.execute(
        "SELECT 'infinity'::TIMESTAMP, '-infinity'::TIMESTAMP, 'infinity'::TIMESTAMPTZ, '-infinity'::TIMESTAMPTZ, "
        "'infinity'::DATE, '-infinity'::DATE, 'infinity'::TIMESTAMP_NS, '-infinity'::TIMESTAMP_S, "
        "'\\xFF\\x00\\xFE'::BLOB, encode('café'), 0.8125::DECIMAL(10, 4), INTERVAL 1500 MILLISECONDS, "
        "INTERVAL 1 DAY + INTERVAL 2 HOURS, TIMESTAMPTZ '2024-05-01 10:00:00+02', TIMESTAMP '2024-05-01 10:00:00.5'"
    ).fetchone()
    assert row is not None
    # The client hands back datetime.max / datetime.min (naive, also for TIMESTAMPTZ) and date.max / date.min.
    assert row[:8] == (
        dt.datetime.max, dt.datetime.min, dt.datetime.max, dt.datetime.min,
        dt.date.max, dt.date.min, dt.datetime.max, dt.datetime.min,
    )  # fmt: skip
    assert (row[8], row[9]) == (b"\xff\x00\xfe", "café".encode()) and type(row[8]) is bytes
    assert (row[10], row[11]) == (decimal.Decimal("0.8125"), dt.timedelta(seconds=1.5))
    assert row[13].utcoffset() == dt.timedelta(0)
    assert clean_json(list(row)) == [
        "infinity", "-infinity", "infinity", "-infinity", "infinity", "-infinity", "infinity", "-infinity",
        "\ufffd\x00\ufffd", "café", 0.8125, 1.5, 93600.0, "2024-05-01T08:00:00Z", "2024-05-01T10:00:00.500000",
    ]  # fmt: skip
    # asyncpg's infinities for timestamptz are UTC-aware; other offsets keep their own spelling.
    aware = [dt.datetime.max.replace(tzinfo=dt.UTC), dt.datetime.min.replace(tzinfo=dt.UTC)]
    plus_two = dt.datetime(2024, 5, 1, 10, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert clean_json([*aware, plus_two]) == ["infinity", "-infinity", "2024-05-01T10:00:00+02:00"]
    # Never raises on bytes, whatever they hold; every form of binary value decodes the same way.
    junk = bytes(range(256))
    assert clean_json([junk, bytearray(junk), memoryview(junk)]) == [junk.decode("utf-8", errors="replace")] * 3
    assert clean_json([decimal.Decimal("sNaN"), decimal.Decimal("-Infinity")]) == [None, None]
    assert json.loads(dumps_clean({"r": list(row)})) == {"r": clean_json(list(row))}


class _Page(BaseModel):
    data: list[Row]


def test_row_lists_serialise_with_the_clean_json_rules() -> None:
    """``Row`` cells are written by the cleaner's rules, not pydantic's (Decimal → str, timedelta → ISO, …)."""
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    row: dict[str, Any] = {
        "ratio": decimal.Decimal("0.8125"),
        "took": dt.timedelta(seconds=1.5),
        "payload": b"\xff\x00ok",
        "end": dt.datetime.max,
        "start": dt.datetime.min,
        "day": dt.date.max,
        "naive": dt.datetime(2024, 5, 1, 10, 0, 0, 500000),
        "utc": dt.datetime(2024, 5, 1, 8, tzinfo=dt.UTC),
        "plus_two": dt.datetime(2024, 5, 1, 10, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "on": dt.date(2024, 5, 1),
        "nan": math.nan,
        "score": 0.5,
        "n": np.int64(7),
        "tags": [decimal.Decimal("2.5"), math.inf, "a"],
        "meta": {"at": dt.datetime.max, "k": 1},
        "id": ident,
        "text": "naïve",
        "flag": True,
        "none": None,
    }
    expected = {
        "ratio": 0.8125,
        "took": 1.5,
        "payload": "\ufffd\x00ok",
        "end": "infinity",
        "start": "-infinity",
        "day": "infinity",
        "naive": "2024-05-01T10:00:00.500000",
        "utc": "2024-05-01T08:00:00Z",
        "plus_two": "2024-05-01T10:00:00+02:00",
        "on": "2024-05-01",
        "nan": None,
        "score": 0.5,
        "n": 7,
        "tags": [2.5, None, "a"],
        "meta": {"at": "infinity", "k": 1},
        "id": str(ident),
        "text": "naïve",
        "flag": True,
        "none": None,
    }
    page = _Page(data=[row, {"plain": 1}])
    assert json.loads(page.model_dump_json()) == {"data": [expected, {"plain": 1}]}
    assert clean_json(row) == expected  # the same rules as every other response body
    # FastAPI's path: dump_python in JSON mode, then CleanJSONResponse.
    assert json.loads(dumps_clean(page.model_dump(mode="json"))) == {"data": [expected, {"plain": 1}]}
    # Python-mode dumps keep the raw values, and the row itself is not modified.
    assert page.model_dump()["data"][0]["ratio"] == decimal.Decimal("0.8125")
    assert row["took"] == dt.timedelta(seconds=1.5)


ERROR_CASES = [
    (errors.Invalid, 400),
    (errors.Expired, 401),
    (errors.NotFound, 404),
    (errors.Timeout, 408),
    (errors.Conflict, 409),
    (errors.PayloadTooLarge, 413),
    (errors.Unprocessable, 422),
    (errors.TooManyRequests, 429),
    (errors.Upstream, 502),
    (errors.Unavailable, 503),
    (errors.ServiceError, 400),
]


def test_every_service_error_subclass_is_covered() -> None:
    def subclasses(cls: type) -> set[type]:
        out = set()
        for sub in cls.__subclasses__():
            out |= {sub} | subclasses(sub)
        return out

    covered = {cls for cls, _ in ERROR_CASES}
    declared = {c for c in subclasses(errors.ServiceError) if c.__module__ == "app.errors"}
    assert declared <= covered


@pytest.mark.parametrize(("exc_cls", "status"), ERROR_CASES)
async def test_error_handler_maps_status(settings: Settings, exc_cls: type[errors.ServiceError], status: int) -> None:
    app = create_app(settings)
    router = APIRouter()

    @router.get("/boom")
    async def boom() -> None:
        raise exc_cls("something specific went wrong")

    @router.get("/crash")
    async def crash() -> None:
        raise KeyError("internal detail")

    @router.get("/nan")
    async def nan() -> dict[str, Any]:
        return {"x": float("nan"), "y": [float("inf"), 2.0]}

    app.include_router(router)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        res = await client.get("/boom")
        assert res.status_code == status
        if exc_cls is errors.Unprocessable:  # FastAPI's 422 list form
            item = {"type": "value_error", "loc": ["body"], "msg": "something specific went wrong"}
            assert res.json() == {"detail": [item]}
        else:
            assert res.json() == {"detail": "something specific went wrong"}
        crash_res = await client.get("/crash")
        assert crash_res.status_code == 500
        assert crash_res.json() == {"detail": "Internal server error"}
        assert (await client.get("/nan")).json() == {"x": None, "y": [None, 2.0]}


async def test_openapi_states_pass_rate_units(client: httpx.AsyncClient) -> None:
    """Decision 13.2: eval passing_rate is a fraction, monitoring pass rates are percentages."""
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    assert schemas["MetricSummary"]["properties"]["passing_rate"]["description"].startswith("Fraction (0–1)")
    for name in ("SummaryKpis", "MetricBreakdownItem", "GroupStats"):
        assert schemas[name]["properties"]["pass_rate"]["description"].startswith("Percent (0–100)"), name


def test_head_on_the_health_routes_over_a_real_server(settings: Settings) -> None:
    """Uptime probes send HEAD: 200 with no body (was 405)."""
    with live_server(settings) as server:
        for path in ("/", "/health"):
            r = httpx.head(server.base_url + path, timeout=30)
            assert r.status_code == 200 and r.content == b"", (path, r.status_code)
            assert httpx.get(server.base_url + path, timeout=30).json()["status"] == "healthy"
