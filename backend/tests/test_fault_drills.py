"""Fault drills (issue 7): real faults injected under the running app (uvicorn on loopback).

Each drill loads "old" data, injects the fault while a load of "new" data runs, and checks that:
the client gets a clear error status, the old data is still stored and still served (analytics
answers computed independently in the test), nothing half-written is left behind, and — once the
fault is removed — the same running app loads the new data (no restart).

Faults:
- PostgreSQL backend terminated (``pg_terminate_backend``) during a database-browser import and
  during a sync (the read sleeps server-side on a control flag, so the drill can act mid-read);
- PostgreSQL unreachable when a sync starts (a loopback TCP forwarder whose port is closed, then
  reopened on the same address);
- the DuckDB data directory made read-only during an upload: ``chattr -R +i`` (the immutable flag
  stops root too; ``chmod`` would not), removed afterwards; and read-only when the server starts
  (a copied store without its sync lock file);
- an upload cut off mid-body: a raw socket that declares the full Content-Length, sends half of
  the multipart body and closes; a complete HTTP request whose multipart body is truncated; and an
  in-process ASGI request whose body stream ends in a disconnect (the app answers 400).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import csv
import io
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import httpx
import psycopg
import pytest

from app.config import Settings
from tests.conftest import PgSchema
from tests.robustness import (
    LiveServer,
    TcpProxy,
    capture_uvicorn_logs,
    create_split_source,
    live_server,
    monitoring_kpis,
    source_scores,
    split_queries,
    wait_for,
    write_db_yaml,
    write_duckdb_yaml,
)

pytestmark = pytest.mark.slow

BACKEND = Path(__file__).resolve().parents[1]

N_CASES = 40


# ------------------------------------------------------------------------------------ expectations
def assert_kpis(client: httpx.Client, expected: dict[str, Any], **params: Any) -> None:
    """The monitoring summary equals the expected KPIs."""
    res = client.get("/api/monitoring/analytics/summary", params=params)
    assert res.status_code == 200, res.text
    kpis = res.json()["kpis"]
    assert kpis["total_records"] == expected["total_records"]
    assert kpis["avg_score"] == pytest.approx(expected["avg_score"], rel=1e-9)
    assert kpis["pass_rate"] == pytest.approx(expected["pass_rate"], rel=1e-9)


def monitoring_csv(n_rows: int, offset: float) -> tuple[bytes, dict[str, Any]]:
    """A long-format monitoring CSV (SCORE rows) and its expected KPIs."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["dataset_id", "timestamp", "source_name", "metric_name", "metric_score", "metric_category"])
    scores = []
    for i in range(n_rows):
        score = round(((i * 13) % 17) / 17.0 * 0.9 + offset, 6)
        scores.append(score)
        ts = f"2025-03-{1 + i % 28:02d} {i % 24:02d}:00:00"
        writer.writerow([f"r{i:05d}", ts, "alpha" if i % 2 else "beta", f"m{i % 3}", score, "SCORE"])
    return buf.getvalue().encode(), monitoring_kpis(scores)


def datasets(client: httpx.Client, kind: str) -> list[dict[str, Any]]:
    """Stored datasets of a kind, newest first."""
    res = client.get("/api/store/datasets", params={"kind": kind})
    assert res.status_code == 200, res.text
    return list(res.json()["datasets"])


def leftover_tables(db_path: Path) -> list[str]:
    """Staging/scratch tables left in the DuckDB file (read after the server stopped)."""
    con = duckdb.connect(str(db_path), read_only=True)
    try:
        rows = con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE table_name ILIKE '%staging%' "
            "OR table_name ILIKE '\\_axis\\_%' ESCAPE '\\'"
        ).fetchall()
    finally:
        con.close()
    return [r[0] for r in rows]


def terminate_backends(pg: PgSchema, application_name: str, timeout: float = 30.0) -> int:
    """Wait until a backend whose name starts with ``application_name`` sleeps in ``pg_sleep`` reading this
    test's schema; terminate it.

    The schema filter keeps parallel test runs on the shared server from killing each other's reads.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE starts_with(application_name, %s) AND state = 'active' "
                "AND wait_event = 'PgSleep' AND strpos(query, %s) > 0",
                [application_name, pg.schema],
            ).fetchall()
            for (pid,) in rows:
                conn.execute("SELECT pg_terminate_backend(%s)", [pid])
            if rows:
                return len(rows)
        time.sleep(0.05)
    raise AssertionError(f"no sleeping backend of {application_name} appeared")


@contextmanager
def serving(settings: Settings) -> Iterator[tuple[LiveServer, httpx.Client]]:
    """A live server and a client over real HTTP."""
    with live_server(settings) as server, httpx.Client(base_url=server.base_url, timeout=120) as client:
        yield server, client


def sync_and_wait(client: httpx.Client, dataset: str = "monitoring", full: bool = True) -> dict[str, Any]:
    """Trigger a sync of one dataset and wait for it to settle; return its status entry."""
    res = client.post(f"/api/store/sync/{dataset}", params={"full": full})
    assert res.status_code == 200, res.text
    wait_for(lambda: not client.get("/api/store/status").json()["running"], timeout=90)
    status = client.get("/api/store/status").json()["datasets"]
    return dict(status[f"{dataset}_data"])


def sync_settings(make_settings: Callable[..., Settings], url: str, queries: dict[str, str]) -> Settings:
    """Settings with a monitoring split source at ``url`` and manual syncs."""
    base = make_settings()
    write_db_yaml(base, "monitoring", {"enabled": True, "url": url, **queries})
    write_duckdb_yaml(base, {"sync_mode": "manual"})
    return make_settings()


# ------------------------------------------------------------------------------------ drills
def test_pg_terminated_during_a_sync_keeps_the_previous_data(
    make_settings: Callable[..., Settings], pg: PgSchema
) -> None:
    create_split_source(pg, "mon", N_CASES)
    settings = sync_settings(make_settings, pg.dsn, split_queries(pg, "mon", slow=True))
    old, new = monitoring_kpis(source_scores(N_CASES, 0.0)), monitoring_kpis(source_scores(N_CASES + 5, 0.25))
    with serving(settings) as (_, client):
        assert sync_and_wait(client)["state"] == "ready"
        assert_kpis(client, old)
        create_split_source(pg, "mon", N_CASES + 5, score_shift=0.25)
        pg.execute("UPDATE mon_ctl SET slow = true")

        assert client.post("/api/store/sync/monitoring", params={"full": True}).json()["datasets"] == ["monitoring"]
        assert terminate_backends(pg, "axis_sync_monitoring") >= 1
        wait_for(lambda: not client.get("/api/store/status").json()["running"], timeout=60)
        status = client.get("/api/store/status").json()["datasets"]["monitoring_data"]
        assert status["state"] == "error" and status["error"], status
        assert status["rows"] == old["total_records"]
        assert_kpis(client, old)  # the previous table is still served
        page = client.get("/api/store/data/monitoring", params={"page_size": 1}).json()
        assert page["total"] == old["total_records"]

        pg.execute("UPDATE mon_ctl SET slow = false")  # fault removed: the same app syncs again
        recovered = sync_and_wait(client)
        assert recovered["state"] == "ready" and recovered["error"] is None
        assert_kpis(client, new)
    assert leftover_tables(settings.duckdb_path) == []


def test_pg_unreachable_when_a_sync_starts_then_recovers(make_settings: Callable[..., Settings], pg: PgSchema) -> None:
    create_split_source(pg, "mon", N_CASES)
    proxy = TcpProxy(pg.host, pg.port)
    url = f"postgresql://{pg.user}@127.0.0.1:{proxy.port}/{pg.database}"
    settings = sync_settings(make_settings, url, split_queries(pg, "mon"))
    old, new = monitoring_kpis(source_scores(N_CASES, 0.0)), monitoring_kpis(source_scores(N_CASES + 7, 0.1))
    proxy.start()
    try:
        with serving(settings) as (_, client):
            assert sync_and_wait(client)["state"] == "ready"
            assert_kpis(client, old)
            create_split_source(pg, "mon", N_CASES + 7, score_shift=0.1)

            proxy.stop()  # PostgreSQL unreachable: the port is closed
            failed = sync_and_wait(client)
            assert failed["state"] == "error"
            assert "connect" in failed["error"].lower() or "refused" in failed["error"].lower(), failed
            assert failed["rows"] == old["total_records"]
            assert_kpis(client, old)
            health = client.get("/health")
            assert health.status_code in (200, 503) and health.json()["components"]["duckdb"] == "up"

            proxy.start()  # reachable again on the same address
            recovered = sync_and_wait(client)
            assert recovered["state"] == "ready" and recovered["error"] is None, recovered
            assert_kpis(client, new)
    finally:
        proxy.stop()


def test_pg_terminated_during_a_database_import_keeps_the_previous_dataset(
    make_settings: Callable[..., Settings], pg: PgSchema
) -> None:
    create_split_source(pg, "imp", N_CASES)
    s = pg.schema
    pg.execute(
        f"""CREATE VIEW imp_slow AS SELECT r.dataset_id, r.metric_name, r.metric_score, r.metric_category
            FROM "{s}".imp_rs r,
                 (SELECT pg_sleep(CASE WHEN (SELECT slow FROM "{s}".imp_ctl) THEN 60 ELSE 0 END)) AS _s"""
    )
    settings = make_settings(db_import_batch_rows=100, db_application_name=f"axis-drill-{uuid.uuid4().hex[:8]}")
    body = {"host": pg.host, "port": pg.port, "database": pg.database, "username": pg.user, "password": "x"}
    with serving(settings) as (_, client):
        res = client.post("/api/database/connect", json={**body, "ssl_mode": "disable"})
        assert res.status_code == 200, res.text
        handle = res.json()["handle"]
        query = {"handle": handle, "query": f'SELECT * FROM "{s}".imp_slow', "limit": 10000}
        res = client.post(f"/api/database/{handle}/query-import", params={"store": "monitoring"}, json=query)
        assert res.status_code == 200, res.text
        first = res.json()["dataset_id"]
        old = monitoring_kpis(source_scores(N_CASES, 0.0))
        assert_kpis(client, old, dataset_id=first)

        pg.execute(f'UPDATE "{s}".imp_rs SET metric_score = least(1.0, metric_score + 0.3)')
        pg.execute(f'UPDATE "{s}".imp_ctl SET slow = true')
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(
                client.post, f"/api/database/{handle}/query-import", params={"store": "monitoring"}, json=query
            )
            assert terminate_backends(pg, settings.db_application_name) >= 1
            cut = pending.result(timeout=60)
        assert cut.status_code == 502, cut.text
        assert "connection" in cut.json()["detail"].lower()
        stored = datasets(client, "monitoring")
        assert [d["dataset_id"] for d in stored] == [first]  # nothing half-imported was registered
        assert_kpis(client, old)  # the latest monitoring dataset is still the first import

        pg.execute(f'UPDATE "{s}".imp_ctl SET slow = false')  # fault removed: same handle, same app
        res = client.post(f"/api/database/{handle}/query-import", params={"store": "monitoring"}, json=query)
        assert res.status_code == 200, res.text
        assert res.json()["dataset_id"] != first
        assert_kpis(client, monitoring_kpis(source_scores(N_CASES, 0.3)))
    assert leftover_tables(settings.duckdb_path) == []


@contextmanager
def immutable(path: Path) -> Iterator[None]:
    """``chattr -R +i``: no file under ``path`` can be created, written, renamed or removed, even by root."""
    subprocess.run(["chattr", "-R", "+i", str(path)], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-R", "-i", str(path)], check=True, capture_output=True)


@contextmanager
def immutable_paths(paths: list[Path]) -> Iterator[None]:
    """``chattr +i`` on each path (not recursive), removed afterwards."""
    names = [str(p) for p in paths]
    subprocess.run(["chattr", "+i", *names], check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", *names], check=True, capture_output=True)


def test_read_only_data_directory_during_an_upload(make_settings: Callable[..., Settings]) -> None:
    assert shutil.which("chattr"), "the drill needs chattr (e2fsprogs)"
    settings = make_settings()
    old_csv, old = monitoring_csv(120, 0.05)
    new_csv, new = monitoring_csv(90, 0.1)
    with serving(settings) as (_, client):
        res = client.post("/api/monitoring/upload", files={"file": ("old.csv", old_csv, "text/csv")})
        assert res.status_code == 200, res.text
        first = res.json()["dataset_id"]
        assert_kpis(client, old)

        with immutable(settings.data_dir):
            files_before = sorted(p.name for p in settings.data_dir.rglob("*"))
            res = client.post("/api/monitoring/upload", files={"file": ("new.csv", new_csv, "text/csv")})
            assert res.status_code == 503, (res.status_code, res.text)
            assert "detail" in res.json() and "Traceback" not in res.text
            assert_kpis(client, old)  # reads keep working on the read-only directory
            assert [d["dataset_id"] for d in datasets(client, "monitoring")] == [first]
            assert sorted(p.name for p in settings.data_dir.rglob("*")) == files_before

        # Only the DuckDB files and their directory are immutable (the spool sub-directory stays
        # writable): the CSV parses, and the store's own write (staging table, WAL) fails.
        db_files = [settings.duckdb_path.parent, *settings.duckdb_path.parent.glob(settings.duckdb_path.name + "*")]
        with immutable_paths(db_files):
            res = client.post("/api/monitoring/upload", files={"file": ("new.csv", new_csv, "text/csv")})
            assert res.status_code == 503, (res.status_code, res.text)
            assert_kpis(client, old)
            assert [d["dataset_id"] for d in datasets(client, "monitoring")] == [first]

        res = client.post("/api/monitoring/upload", files={"file": ("new.csv", new_csv, "text/csv")})
        assert res.status_code == 200, res.text  # writable again: the same app stores the upload
        assert_kpis(client, new)
        assert len(datasets(client, "monitoring")) == 2
    assert leftover_tables(settings.duckdb_path) == []


def test_a_data_directory_read_only_at_start_serves_the_stored_data(make_settings: Callable[..., Settings]) -> None:
    """The store's directory is read-only when the server starts (a read-only volume; the store file is writable).

    The stored data is served and writes answer 503. The sync lock file, which a first start creates next to the
    store, is absent from a copied store: creating it failed the start (PermissionError out of the lifespan).
    """
    assert shutil.which("chattr"), "the drill needs chattr (e2fsprogs)"
    base = make_settings()
    source = {"dataset_query": "SELECT 1 AS dataset_id", "results_query": "SELECT 1 AS dataset_id"}
    write_db_yaml(base, "monitoring", {"enabled": True, "url": "postgresql://postgres@127.0.0.1:5432/test", **source})
    write_duckdb_yaml(base, {"sync_mode": "manual"})
    settings = make_settings()
    old_csv, old = monitoring_csv(120, 0.05)
    with serving(settings) as (_, client):
        res = client.post("/api/monitoring/upload", files={"file": ("old.csv", old_csv, "text/csv")})
        assert res.status_code == 200, res.text
    Path(str(settings.duckdb_path) + ".lock").unlink()

    with immutable_paths([settings.data_dir]), serving(settings) as (_, client):
        assert client.get("/health").json()["components"]["duckdb"] == "up"
        assert_kpis(client, old)
        res = client.post("/api/monitoring/upload", files={"file": ("new.csv", old_csv, "text/csv")})
        assert res.status_code == 503, (res.status_code, res.text)
        res = client.post("/api/store/sync/monitoring")
        assert res.status_code == 503 and "lock file" in res.json()["detail"], (res.status_code, res.text)
        assert client.get("/api/store/status").json()["leader"] is False
        assert_kpis(client, old)


def _multipart(name: str, content: bytes, boundary: str) -> bytes:
    return (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )


def _send_and_close(port: int, head: bytes, body_part: bytes) -> bytes:
    """Send a request head and part of its body over a raw socket, half-close it, return what came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head + body_part)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        try:
            while data := sock.recv(65536):
                chunks.append(data)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(chunks)


def test_upload_cut_off_mid_body_stores_nothing(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings()
    old_csv, old = monitoring_csv(120, 0.05)
    new_csv, new = monitoring_csv(3000, 0.1)
    boundary = "axisdrillboundary"
    body = _multipart("new.csv", new_csv, boundary)
    with serving(settings) as (server, client), capture_uvicorn_logs(caplog.handler):
        res = client.post("/api/monitoring/upload", files={"file": ("old.csv", old_csv, "text/csv")})
        assert res.status_code == 200, res.text
        first = res.json()["dataset_id"]
        spool = settings.data_dir / "spool"

        # 1. The socket closes after half of the declared body: no response can reach the client,
        #    and nothing may be stored.
        head = (
            f"POST /api/monitoring/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        reply = _send_and_close(server.port, head, body[: len(body) // 2])
        assert not reply.startswith(b"HTTP/1.1 200"), reply[:200]

        # 2. A complete HTTP request whose multipart body stops mid-file (no closing boundary).
        truncated = body[: len(body) // 2]
        res = client.post(
            "/api/monitoring/upload",
            content=truncated,
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert res.status_code in (400, 422), (res.status_code, res.text)

        wait_for(lambda: not spool.exists() or not any(spool.iterdir()), timeout=10)
        assert [d["dataset_id"] for d in datasets(client, "monitoring")] == [first]
        assert_kpis(client, old)

        res = client.post("/api/monitoring/upload", files={"file": ("new.csv", new_csv, "text/csv")})
        assert res.status_code == 200, res.text
        assert_kpis(client, new)
        assert any("POST /api/monitoring/upload" in r.getMessage() for r in caplog.records)  # uvicorn's log is seen
    errors = [r.getMessage() + (r.exc_text or "") for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []  # a client that went away, or a malformed body, is not a server error


def multipart_endpoints(app: Any) -> list[str]:
    """Every POST operation of the OpenAPI document that takes a multipart body (the upload endpoints)."""
    out = []
    for path, item in app.openapi()["paths"].items():
        content = ((item.get("post") or {}).get("requestBody") or {}).get("content") or {}
        if "multipart/form-data" in content and "{" not in path:
            out.append(path)
    return sorted(out)


async def test_uploads_whose_asgi_body_stream_ends_early_are_refused(
    app_client: tuple[Any, httpx.AsyncClient], caplog: pytest.LogCaptureFixture
) -> None:
    """In-process, for every upload endpoint: half the declared multipart body, then a client disconnect."""
    app, client = app_client
    old_csv, old = monitoring_csv(60, 0.05)
    res = await client.post("/api/monitoring/upload", files={"file": ("old.csv", old_csv, "text/csv")})
    assert res.status_code == 200, res.text
    before = (await client.get("/api/store/datasets")).json()["datasets"]
    boundary = "axisdrillboundary"
    body = _multipart("new.csv", monitoring_csv(2000, 0.2)[0], boundary)
    half = body[: len(body) // 2]
    endpoints = multipart_endpoints(app)
    assert {"/api/monitoring/upload", "/api/data/upload"} <= set(endpoints)
    statuses = {}
    for endpoint in endpoints:
        incoming = [
            {"type": "http.request", "body": half[:4096], "more_body": True},
            {"type": "http.request", "body": half[4096:], "more_body": True},
            {"type": "http.disconnect"},
        ]
        sent: list[dict[str, Any]] = []

        async def receive(incoming: list[dict[str, Any]] = incoming) -> dict[str, Any]:
            return incoming.pop(0) if incoming else {"type": "http.disconnect"}

        async def send(message: dict[str, Any], sent: list[dict[str, Any]] = sent) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": endpoint,
            "raw_path": endpoint.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [
                (b"host", b"testserver"),
                (b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
                (b"content-length", str(len(body)).encode()),
            ],
            "client": ("127.0.0.1", 40000),
            "server": ("testserver", 80),
        }
        await app(scope, receive, send)
        statuses[endpoint] = next(m for m in sent if m["type"] == "http.response.start")["status"]
    assert statuses == dict.fromkeys(endpoints, 400)
    assert (await client.get("/api/store/datasets")).json()["datasets"] == before
    summary = (await client.get("/api/monitoring/analytics/summary")).json()["kpis"]
    assert summary["total_records"] == old["total_records"]
    assert summary["avg_score"] == pytest.approx(old["avg_score"], rel=1e-9)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


# ------------------------------------------------------------------------------------ kill -9
@contextmanager
def server_process(settings: Settings) -> Iterator[tuple[subprocess.Popen[bytes], httpx.Client]]:
    """The app in its own uvicorn process (killable), on the settings' home and custom directories."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AXIS_HOME": str(settings.axis_home),
        "AXIS_CUSTOM_DIR": str(settings.axis_custom_dir),
    }
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "app.main:create_app", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=BACKEND, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:

        def up() -> bool:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise AssertionError(f"the server exited at start (code {proc.returncode}):\n{err[-3000:]}")
            try:
                return client.get("/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, timeout=90)
        yield proc, client
    finally:
        client.close()
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)


def test_a_killed_server_restarts_with_every_landed_upload(make_settings: Callable[..., Settings]) -> None:
    """kill -9 right after uploads (zoned timestamps included): the next start opens the store and serves them."""
    settings = make_settings()
    monitoring, expected = monitoring_csv(200, 0.05)
    rows = monitoring.split(b"\r\n")
    zoned = b"\r\n".join(r.replace(b":00:00,", b":00:00Z," if i % 2 else b":00:00+02:00,") for i, r in enumerate(rows))
    assert zoned.count(b"Z,") == 100
    eval_csv = b"dataset_id,metric_name,metric_score,timestamp\nd1,acc,0.25,2025-01-01T10:00:00Z\nd2,acc,0.75,\n"
    with server_process(settings) as (proc, client):
        mon = client.post("/api/monitoring/upload", files={"file": ("mon.csv", zoned, "text/csv")})
        assert mon.status_code == 200, mon.text
        ev = client.post("/api/data/upload", files={"file": ("ev.csv", eval_csv, "text/csv")})
        assert ev.status_code == 200, ev.text
        before = {d["dataset_id"]: d["row_count"] for d in client.get("/api/store/datasets").json()["datasets"]}
        proc.kill()
        proc.wait(30)
    wal = Path(str(settings.duckdb_path) + ".wal")
    assert wal.exists() and wal.stat().st_size > 0  # the uploads are only in the log: the restart replays it
    with server_process(settings) as (_, client):
        after = {d["dataset_id"]: d["row_count"] for d in client.get("/api/store/datasets").json()["datasets"]}
        assert after == before and after[mon.json()["dataset_id"]] == 200
        assert_kpis(client, expected, dataset_id=mon.json()["dataset_id"])
        summary = client.post("/api/analytics/summary", params={"dataset_id": ev.json()["dataset_id"]}).json()
        assert [(m["metric_name"], m["mean"]) for m in summary["summary"]] == [("acc", 0.5)]


def test_uploads_spooled_by_a_killed_server_are_removed_at_the_next_start(
    make_settings: Callable[..., Settings],
) -> None:
    """kill -9 while an upload is spooled/parsed leaves the whole file in the spool folder: the next start removes it.

    A spool file of a live process (another server on the same AXIS_HOME) is kept.
    """
    settings = make_settings()
    spool = settings.spool_dir
    big, _ = monitoring_csv(300_000, 0.1)
    with server_process(settings) as (proc, client):
        seen: list[Path] = []

        def upload() -> None:
            with contextlib.suppress(httpx.TransportError):
                client.post("/api/monitoring/upload", files={"file": ("big.csv", big, "text/csv")})

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(upload)
            deadline = time.monotonic() + 60
            while not seen and time.monotonic() < deadline and not pending.done():
                seen = list(spool.glob("upload-*.csv")) if spool.exists() else []
                time.sleep(0.001)
            proc.kill()
            proc.wait(30)
            pending.result()
    assert seen, "no spool file appeared while the upload ran"
    assert [p for p in seen if p.exists()], "the killed server's spool file is gone before the restart"
    live = spool / f"upload-{os.getpid()}-{uuid.uuid4().hex}.csv"
    live.write_bytes(b"a,b\n1,2\n")
    with server_process(settings) as (_, client):
        assert client.get("/api/store/datasets").json()["datasets"] == []
    assert [p.name for p in spool.iterdir()] == [live.name]


def test_a_database_import_scratch_table_left_by_a_kill_is_dropped_at_the_next_start(
    make_settings: Callable[..., Settings],
) -> None:
    """A browser import streams into ``_axis_dbimport_<hex>`` before it lands; a kill -9 leaves it in the file."""
    settings = make_settings()
    with server_process(settings):
        pass
    con = duckdb.connect(str(settings.duckdb_path))
    try:
        con.execute("CREATE TABLE _axis_dbimport_0123456789ab AS SELECT range AS n FROM range(1000)")
    finally:
        con.close()
    assert leftover_tables(settings.duckdb_path) == ["_axis_dbimport_0123456789ab"]
    with server_process(settings) as (_, client):
        assert client.get("/api/store/datasets").json()["datasets"] == []
    assert leftover_tables(settings.duckdb_path) == []
