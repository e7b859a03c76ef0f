"""App shell: root, health, CORS, API token, JSON cleaning and the error mapping."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import APIRouter
from pydantic import SecretStr

from app import errors
from app.config import Settings
from app.main import create_app
from app.serialization import clean_json, dumps_clean


async def test_root_and_health_probe_duckdb(client: httpx.AsyncClient) -> None:
    root = await client.get("/")
    assert root.json() == {"status": "healthy", "service": "AXIS API", "version": "0.1.0"}
    health = (await client.get("/health")).json()
    assert health["status"] == "healthy"
    assert health["components"]["duckdb"] == "up"
    assert health["components"]["llm"] == "offline"
    assert health["components"]["graph"] == "unconfigured"
    assert health["datasets"] == 0


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
    assert expected["when"] == ["2026-01-02T03:04:05.678000", "2026-01-02T03:04:05.678000+00:00", "2026-01-02"]
    assert expected["dec"] == [2.5, None] and expected["span"] == 90.0 and expected["raw"] == "café"
    # Integers beyond 64 bits (DuckDB HUGEINT) take the standard-library path, still strict JSON.
    huge = {"n": 2**70, "x": math.nan}
    assert json.loads(dumps_clean(huge)) == {"n": 2**70, "x": None}
    assert dumps_clean({"text": "naïve"}) == '{"text":"naïve"}'.encode()


ERROR_CASES = [
    (errors.Invalid, 400),
    (errors.Expired, 401),
    (errors.Unauthorized, 401),
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
