"""Secrets audit (issue 7): with every secret setting carrying a marker, no response and no log line shows it.

The app runs under uvicorn exactly as ``make run`` starts it (``--factory``: uvicorn configures its
logging, then ``create_app`` installs the redaction filter). Every secret setting — the three
database passwords and DSNs, the OpenAI/Anthropic/gateway keys, the graph password and the API
token — holds ``SECRET_MARKER``; the three database configs point at a closed loopback port with the
marker in their URL. The test then calls every GET operation of the OpenAPI document (path
parameters filled with plausible values), every operation with an empty request, and the error
paths that handle credentials: a wrong password (a loopback server that refuses it the way
PostgreSQL does), an unreachable host, an unknown database, the ``********`` placeholder that
substitutes a configured password, the three database imports with a bad DSN, syncs that fail, and
LLM calls that the provider refuses with an error quoting the key.
Logs are captured at DEBUG on the root and uvicorn loggers, together with everything written to
stdout/stderr; bodies, headers and logs must not contain the marker.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.config import Settings
from tests.conftest import PgSchema
from tests.fake_llm import FakeLLMServer
from tests.robustness import (
    SECRET_MARKER,
    FakePgAuthServer,
    capture_uvicorn_logs,
    free_port,
    live_server,
    route_paths,
    secret_settings,
    seed_samples,
    write_db_yaml,
    write_duckdb_yaml,
)

PATH_VALUES: dict[str, str] = {
    "dataset": "monitoring",
    "dataset_name": "model",
    "store": "data",
    "asset_type": "branding",
    "filename": "logo.png",
}
LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "app", "asyncpg", "httpx", "openai", "anthropic")


class Audit:
    """Every response seen, and where the marker showed up."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.responses: list[tuple[str, httpx.Response]] = []

    def call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send a request and keep its response; a stream is read for at most 15 s or 2 MB."""
        body = b""
        with self.client.stream(method, url, **kwargs) as res:
            deadline = time.monotonic() + 15
            try:
                for chunk in res.iter_bytes():
                    body += chunk
                    if len(body) > 2_000_000 or time.monotonic() > deadline:
                        break
            except httpx.ReadTimeout:
                pass
            headers = [(k, v) for k, v in res.headers.multi_items() if k.lower() != "content-encoding"]
            response = httpx.Response(res.status_code, headers=headers, content=body, request=res.request)
        self.responses.append((f"{method} {url}", response))
        return response

    def leaks(self) -> list[str]:
        found = []
        for label, res in self.responses:
            headers = "\n".join(f"{k}: {v}" for k, v in res.headers.items())
            if SECRET_MARKER in res.text or SECRET_MARKER in headers:
                found.append(f"{label} -> {res.status_code}: {res.text[:300]}")
        return found


def _audit_settings(make_settings: Callable[..., Settings], pg: PgSchema, fake_llm: FakeLLMServer) -> Settings:
    overrides: dict[str, Any] = {
        **secret_settings(),
        "openai_api_base": fake_llm.openai_base_url,
        "anthropic_api_base": fake_llm.anthropic_base_url,
        "db_connect_timeout_seconds": 3.0,
    }
    base = make_settings(**overrides)
    closed = free_port()
    for store in ("eval", "monitoring", "human_signals"):
        write_db_yaml(
            base,
            store,
            {
                "enabled": True,
                "url": f"postgresql://axis:{SECRET_MARKER}-{store}-yaml@127.0.0.1:{closed}/{store}db",
                "dataset_query": "SELECT 1 AS dataset_id",
                "results_query": "SELECT 1 AS dataset_id, 'm' AS metric_name, 0.5 AS metric_score",
                "query_timeout": 5,
            },
        )
    write_duckdb_yaml(base, {"sync_mode": "manual"})
    return make_settings(**overrides)


def _fill_path(path: str, handle: str) -> str:
    def _value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        if name == "handle":
            return handle
        return PATH_VALUES.get(name, "x")

    return re.sub(r"\{([^}]+)\}", _value, path)


@pytest.mark.slow
def test_no_secret_reaches_a_response_or_a_log(
    make_settings: Callable[..., Settings],
    pg: PgSchema,
    fake_llm: FakeLLMServer,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    settings = _audit_settings(make_settings, pg, fake_llm)
    secrets = settings.secret_values()
    assert len(secrets) >= 12 and all(SECRET_MARKER in s for s in secrets)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    token = settings.axis_api_token.get_secret_value() if settings.axis_api_token else ""

    # uvicorn configures its loggers when the server starts, so the capture is attached after that.
    with FakePgAuthServer() as fake_pg, live_server(settings) as server, capture_uvicorn_logs(caplog.handler):
        paths = route_paths(server.app)
        spec = server.app.openapi()
        with httpx.Client(base_url=server.base_url, timeout=60) as anonymous:
            assert anonymous.get("/api/store/datasets").status_code == 401
            wrong = anonymous.get("/api/store/datasets", headers={"Authorization": f"Bearer {token}x"})
            assert wrong.status_code == 401
            assert SECRET_MARKER not in wrong.text
        timeout = httpx.Timeout(60, read=15)
        client = httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=timeout)
        audit = Audit(client)
        with client:
            _seeded, seed_errors = seed_samples(client, paths)
            assert not seed_errors, seed_errors
            handle = "0" * 32
            if "/api/database/connect" in paths:
                handle = _database_error_paths(audit, pg, fake_pg)
            _import_and_sync_error_paths(audit, paths)
            # Every LLM call of the walk fails upstream with an error that quotes the key.
            key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else ""
            fake_llm.fail(401, times=10_000, message=f"Incorrect API key provided: {key}")
            for path, item in spec["paths"].items():
                url = _fill_path(path, handle)
                for method in item:
                    if method == "get":
                        audit.call("GET", url)
                    elif method in ("post", "put", "patch") and "/connect" not in path:
                        audit.call(method.upper(), url, json={})
            if "/api/store/status" in paths:
                audit.call("GET", "/api/store/status")

    for request in fake_llm.requests:  # the providers really were called with the marked keys
        assert SECRET_MARKER in (request.headers.get("authorization", "") + request.headers.get("x-api-key", ""))
    assert len(audit.responses) > len(spec["paths"])
    assert not audit.leaks(), "\n".join(audit.leaks())
    log_lines = [r.getMessage() + "\n" + (r.exc_text or "") for r in caplog.records]
    assert any("GET /api/store/datasets" in line for line in log_lines)  # the access log was captured
    leaked_logs = [line for line in log_lines if SECRET_MARKER in line]
    assert not leaked_logs, "\n".join(leaked_logs[:20])
    out, err = capfd.readouterr()
    leaked_output = [line for line in (out + err).splitlines() if SECRET_MARKER in line]
    assert not leaked_output, "\n".join(leaked_output[:20])
    assert "--- Logging error ---" not in out + err  # the redaction filter keeps every record formattable


def _database_error_paths(audit: Audit, pg: PgSchema, fake_pg: FakePgAuthServer) -> str:
    """Connect failures that carry a password; returns a live handle on the test database."""
    body = {"host": "127.0.0.1", "database": "test", "username": "postgres", "ssl_mode": "disable"}
    # Wrong password: the server asks for it and refuses it.
    res = audit.call(
        "POST", "/api/database/connect", json={**body, "port": fake_pg.port, "password": f"{SECRET_MARKER}-typed"}
    )
    assert res.status_code == 400, res.text
    assert "password" in res.json()["detail"].lower() or "auth" in res.json()["detail"].lower()
    assert fake_pg.passwords == [f"{SECRET_MARKER}-typed"]  # the driver really sent it
    # Unreachable host (closed port), unknown database, unresolvable name.
    res = audit.call(
        "POST", "/api/database/connect", json={**body, "port": free_port(), "password": f"{SECRET_MARKER}-closed"}
    )
    assert res.status_code == 400, res.text
    res = audit.call(
        "POST",
        "/api/database/connect",
        json={**body, "port": pg.port, "database": "axis_no_such_db", "password": f"{SECRET_MARKER}-nodb"},
    )
    assert res.status_code == 400, res.text
    res = audit.call(
        "POST", "/api/database/connect", json={**body, "host": "no-such-host.invalid", "password": SECRET_MARKER}
    )
    assert res.status_code == 400, res.text
    # The placeholder substitutes each store's configured (marker) password; its server is closed.
    for store in ("data", "monitoring", "human_signals"):
        res = audit.call(
            "POST", "/api/database/connect", params={"store": store}, json={**body, "port": 1, "password": "********"}
        )
        assert res.status_code == 400, res.text
        assert audit.call("GET", "/api/database/defaults", params={"store": store}).json()["has_password"] is True
    # Validation errors never echo the submitted password.
    res = audit.call("POST", "/api/database/connect", json={**body, "port": 0, "password": f"{SECRET_MARKER}-422"})
    assert res.status_code == 422
    # A working handle for the GET walk (trust auth accepts any password).
    res = audit.call("POST", "/api/database/connect", json={**body, "port": pg.port, "password": SECRET_MARKER})
    assert res.status_code == 200, res.text
    return str(res.json()["handle"])


def _import_and_sync_error_paths(audit: Audit, paths: set[str]) -> None:
    """One-shot database imports and syncs against the configured (closed) servers."""
    for path in ("/api/data/eval-db-import", "/api/monitoring/db-import", "/api/human-signals/db-import"):
        if path in paths:
            res = audit.call("POST", path)
            assert 400 <= res.status_code < 600 and res.status_code != 500, (path, res.status_code, res.text)
    if "/api/store/sync" in paths:
        started = audit.call("POST", "/api/store/sync", params={"full": True})
        assert started.status_code == 200 and started.json()["sync_id"] and started.json()["datasets"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = audit.call("GET", "/api/store/status").json()
            if not status["running"]:
                break
            time.sleep(0.1)
        states = {t: status["datasets"][t]["state"] for t in ("monitoring_data", "eval_data", "human_signals_raw")}
        assert set(states.values()) == {"error"}, states
        assert all(status["datasets"][t]["error"] for t in states)
