"""Shared pieces of the robustness checks (fuzz, fault drills, concurrency drill, secrets audit).

- ``LiveServer``: the real app (``create_app``) served by uvicorn in a thread on a loopback port, so
  requests travel real HTTP and the lifespan runs exactly as in production.
- ``secret_settings``: every secret setting filled with a recognisable marker.
- ``seed_samples``: the bundled sample CSVs uploaded through the real upload endpoints.
- ``write_db_yaml`` / ``create_split_source``: PostgreSQL split sources for the sync engine.
- ``strict_json``: a response body parsed as standard JSON (NaN/Infinity tokens refused).
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
import uvicorn
import yaml

from app.config import Settings
from app.main import create_app
from tests.conftest import PgSchema
from tests.threaded_uvicorn import ThreadedUvicorn

T = TypeVar("T")

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"

# Recognisable, never produced by the app itself and unlikely in generated data.
SECRET_MARKER = "AxSecretMarker7Qz"

# (upload endpoint, sample file) for each dataset kind; an endpoint that does not exist yet is skipped.
SAMPLE_UPLOADS: list[tuple[str, str, str]] = [
    ("eval", "/api/data/upload", "example_model.csv"),
    ("monitoring", "/api/monitoring/upload", "monitoring_long_sample.csv"),
    ("monitoring", "/api/monitoring/upload", "monitoring_sample.csv"),
    ("human_signals", "/api/human-signals/upload", "hitl_sample.csv"),
]


def free_port() -> int:
    """A loopback TCP port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def marker_dsn(pg: PgSchema, marker: str = SECRET_MARKER, port: int | None = None) -> str:
    """The test database's DSN carrying ``marker`` as its password (trust auth ignores it)."""
    return f"postgresql://{pg.user}:{marker}@{pg.host}:{port or pg.port}/{pg.database}"


def secret_settings(marker: str = SECRET_MARKER) -> dict[str, Any]:
    """Settings overrides that fill every secret field (passwords, DSNs, API keys, token) with ``marker``."""
    return {
        "axis_api_token": f"{marker}-token",
        "openai_api_key": f"sk-{marker}-openai",
        "anthropic_api_key": f"sk-ant-{marker}",
        "gateway_api_key": f"gw-{marker}",
        "graph_db_password": f"{marker}-graph",
        "eval_db_password": f"{marker}-evalpw",
        "eval_db_url": f"postgresql://axis:{marker}-evalurl@127.0.0.1:1/evaldb",
        "monitoring_db_password": f"{marker}-monpw",
        "monitoring_db_url": f"postgresql://axis:{marker}-monurl@127.0.0.1:1/mondb",
        "human_signals_db_password": f"{marker}-hspw",
        "human_signals_db_url": f"postgresql://axis:{marker}-hsurl@127.0.0.1:1/hsdb",
    }


def write_db_yaml(settings: Settings, store: str, cfg: dict[str, Any]) -> None:
    """Write ``<store>_db.yaml`` (top key ``<store>_db``) into the settings' config dir."""
    settings.config_dir.mkdir(parents=True, exist_ok=True)
    (settings.config_dir / f"{store}_db.yaml").write_text(yaml.safe_dump({f"{store}_db": cfg}))


def write_duckdb_yaml(settings: Settings, cfg: dict[str, Any]) -> None:
    """Write ``duckdb.yaml`` into the settings' config dir."""
    settings.config_dir.mkdir(parents=True, exist_ok=True)
    (settings.config_dir / "duckdb.yaml").write_text(yaml.safe_dump({"duckdb": cfg}))


def create_split_source(pg: PgSchema, prefix: str, n_cases: int, *, score_shift: float = 0.0) -> None:
    """``<prefix>_ds`` (one row per case) and ``<prefix>_rs`` (3 monitoring metrics per case) plus ``<prefix>_ctl``.

    Scores are ``((g*7 + m) % 10) / 10 + score_shift`` (capped at 1); the control table's ``slow``
    flag makes ``slow_results_query`` sleep so a drill can act while the read is in flight.
    """
    p = prefix
    pg.execute(f"DROP TABLE IF EXISTS {p}_ds, {p}_rs, {p}_ctl")
    pg.execute(
        f"""CREATE TABLE {p}_ds (dataset_id text, query text, actual_output text, timestamp timestamptz,
                                 source_name text, environment text, latency float8)"""
    )
    pg.execute(f"CREATE TABLE {p}_rs (dataset_id text, metric_name text, metric_score float8, metric_category text)")
    pg.execute(
        f"""INSERT INTO {p}_ds SELECT 'c' || lpad(g::text, 5, '0'), 'question ' || g, 'answer ' || g,
                  timestamptz '2024-01-01 00:00:00+00' + g * interval '1 hour',
                  CASE WHEN g % 2 = 0 THEN 'alpha' ELSE 'beta' END,
                  CASE WHEN g % 3 = 0 THEN 'staging' ELSE 'prod' END, 100 + g
           FROM generate_series(1, {int(n_cases)}) g"""
    )
    pg.execute(
        f"""INSERT INTO {p}_rs SELECT 'c' || lpad(g::text, 5, '0'), 'm' || m,
                  least(1.0, ((g * 7 + m) % 10) / 10.0 + {float(score_shift)}), 'SCORE'
           FROM generate_series(1, {int(n_cases)}) g, generate_series(1, 3) m"""
    )
    pg.execute(f"CREATE TABLE {p}_ctl (slow bool)")
    pg.execute(f"INSERT INTO {p}_ctl VALUES (false)")


def split_queries(pg: PgSchema, prefix: str, *, slow: bool = False, sleep_seconds: float = 60) -> dict[str, str]:
    """``dataset_query``/``results_query`` for a split source.

    With ``slow`` the results read sleeps ``sleep_seconds`` server-side while ``<prefix>_ctl.slow`` is true.
    """
    s = pg.schema
    results = f'SELECT * FROM "{s}".{prefix}_rs'
    if slow:
        results = (
            f'SELECT r.* FROM "{s}".{prefix}_rs r, (SELECT pg_sleep(CASE WHEN (SELECT slow FROM "{s}".{prefix}_ctl) '
            f"THEN {float(sleep_seconds)} ELSE 0 END)) AS _s"
        )
    return {"dataset_query": f'SELECT * FROM "{s}".{prefix}_ds', "results_query": results}


def source_scores(n_cases: int, shift: float) -> list[float]:
    """The metric scores ``create_split_source`` writes, computed here independently of PostgreSQL."""
    return [min(1.0, ((g * 7 + m) % 10) / 10.0 + shift) for g in range(1, n_cases + 1) for m in (1, 2, 3)]


def monitoring_kpis(scores: list[float], threshold: float = 0.5) -> dict[str, Any]:
    """``total_records``, ``avg_score`` and ``pass_rate`` (percent) of the monitoring summary, by numpy."""
    arr = np.array(scores, dtype=float)
    return {
        "total_records": int(arr.size),
        "avg_score": float(arr.mean()),
        "pass_rate": float((arr >= threshold).mean() * 100.0),
    }


class LiveServer:
    """``create_app(settings)`` served by uvicorn (lifespan on) in a daemon thread on 127.0.0.1."""

    def __init__(self, settings: Settings, *, port: int | None = None, root_path: str = "") -> None:
        self.settings = settings
        self.root_path = root_path
        self._app: Any = None
        self.port = port or free_port()
        self._runner: ThreadedUvicorn | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def app(self) -> Any:
        """The FastAPI app (built by uvicorn's factory call in ``start``)."""
        if self._app is None:
            raise RuntimeError("the server is not started")
        return self._app

    def _factory(self) -> Any:
        self._loop = asyncio.get_running_loop()  # uvicorn calls the factory inside its serving loop
        self._app = create_app(self.settings)
        return self._app

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the server's event loop (e.g. a store call) and return its result."""
        if self._loop is None:
            raise RuntimeError("the server is not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self, timeout: float = 60.0) -> None:
        """Start serving; return once the lifespan finished and the socket accepts connections.

        As ``make run`` (``uvicorn --factory``), uvicorn configures its logging first and then
        calls the factory, so ``create_app`` sees uvicorn's handlers.
        """
        config = uvicorn.Config(
            self._factory,
            factory=True,
            host="127.0.0.1",
            port=self.port,
            log_level="info",
            lifespan="on",
            timeout_graceful_shutdown=5,
            ws="none",
            root_path=self.root_path,
        )
        self._runner = ThreadedUvicorn(config, "axis-live")
        self._runner.start(timeout)

    def stop(self, timeout: float = 20.0) -> None:
        """Ask uvicorn to exit (runs the lifespan shutdown) and join the thread."""
        if self._runner is not None:
            self._runner.stop(timeout)
            self._runner = None


@contextmanager
def live_server(settings: Settings, *, root_path: str = "") -> Iterator[LiveServer]:
    """A started ``LiveServer`` (``root_path``: as ``uvicorn --root-path``), stopped on exit."""
    server = LiveServer(settings, root_path=root_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def capture_uvicorn_logs(handler: Any) -> Iterator[None]:
    """Also route the uvicorn loggers (which do not propagate to the root logger) to ``handler``.

    Enter it after the server started: uvicorn's logging config replaces the handlers of its loggers.
    """
    loggers = [logging.getLogger(name) for name in ("uvicorn", "uvicorn.access")]
    for lg in loggers:
        lg.addHandler(handler)
    try:
        yield
    finally:
        for lg in loggers:
            lg.removeHandler(handler)


def route_paths(app: Any) -> set[str]:
    """Every path the app's OpenAPI document declares."""
    return set(app.openapi().get("paths", {}))


def seed_samples(
    client: httpx.Client, paths: set[str], uploads: list[tuple[str, str, str]] | None = None
) -> tuple[dict[str, list[str]], list[str]]:
    """Upload the sample CSVs through the endpoints that exist; return (dataset ids per kind, errors)."""
    out: dict[str, list[str]] = {}
    errors: list[str] = []
    for kind, endpoint, name in uploads or SAMPLE_UPLOADS:
        if endpoint not in paths or not (SAMPLE_DIR / name).exists():
            continue
        with open(SAMPLE_DIR / name, "rb") as fh:
            res = client.post(endpoint, files={"file": (name, fh, "text/csv")})
        if res.status_code != 200:
            errors.append(f"seeding {name} through {endpoint}: {res.status_code} {res.text[:300]}")
            continue
        dataset_id = res.json().get("dataset_id")
        if dataset_id:
            out.setdefault(kind, []).append(str(dataset_id))
    return out, errors


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, interval: float = 0.05) -> None:
    """Poll ``predicate`` until it is true (AssertionError after ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


class FakePgAuthServer:
    """A loopback server speaking just enough PostgreSQL wire protocol to refuse a password.

    It answers SSL/GSS requests with ``N``, asks for a cleartext password, records what the client
    sent and replies ``28P01 password authentication failed`` — the real "wrong password" path of a
    driver, without touching the local server's trust-auth configuration.
    """

    def __init__(self) -> None:
        self.passwords: list[str] = []
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-pg-auth", daemon=True)

    def __enter__(self) -> FakePgAuthServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(5)

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    @staticmethod
    def _recv_exact(conn: socket.socket, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError("client went away")
            data += chunk
        return data

    def _handle(self, conn: socket.socket) -> None:
        import struct

        try:
            conn.settimeout(10)
            while True:
                length = struct.unpack("!I", self._recv_exact(conn, 4))[0]
                payload = self._recv_exact(conn, length - 4)
                code = struct.unpack("!I", payload[:4])[0]
                if code in (80877103, 80877104):  # SSLRequest / GSSENCRequest
                    conn.sendall(b"N")
                    continue
                user = "unknown"
                parts = payload[4:].split(b"\x00")
                for key, value in zip(parts[::2], parts[1::2], strict=False):
                    if key == b"user":
                        user = value.decode(errors="replace")
                break
            conn.sendall(b"R" + struct.pack("!II", 8, 3))  # AuthenticationCleartextPassword
            kind = self._recv_exact(conn, 1)
            length = struct.unpack("!I", self._recv_exact(conn, 4))[0]
            body = self._recv_exact(conn, length - 4)
            if kind == b"p":
                self.passwords.append(body.rstrip(b"\x00").decode(errors="replace"))
            fields = [
                b"SFATAL",
                b"VFATAL",
                b"C28P01",
                f'Mpassword authentication failed for user "{user}"'.encode(),
            ]
            message = b"".join(f + b"\x00" for f in fields) + b"\x00"
            conn.sendall(b"E" + struct.pack("!I", len(message) + 4) + message)
        except (OSError, ConnectionError):
            pass
        finally:
            conn.close()


class TcpProxy:
    """A loopback TCP forwarder to ``target`` on a fixed port; ``stop()`` closes the port, ``start()`` reopens it.

    Stands in for a PostgreSQL server that becomes unreachable and comes back on the same address.
    """

    def __init__(self, target_host: str, target_port: int, port: int | None = None) -> None:
        self.target = (target_host, target_port)
        self.port = port or free_port()
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conns: list[socket.socket] = []

    def start(self) -> None:
        """Listen on ``self.port`` and forward every connection."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(32)
        sock.settimeout(0.1)
        self._sock = sock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(sock, self._stop), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Close the listening port and cut every forwarded connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._sock is not None:
            self._sock.close()
        for conn in self._conns:
            with suppress(OSError):
                conn.close()
        self._conns.clear()
        self._sock = None
        self._thread = None

    def _serve(self, sock: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                client, _ = sock.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            self._conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            src.settimeout(None)
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with suppress(OSError):
                    sock.close()


def _refuse_constant(token: str) -> None:
    raise ValueError(f"not standard JSON: {token}")


def strict_json(raw: bytes) -> Any:
    """``raw`` parsed as standard JSON: NaN / Infinity tokens (which ``json.loads`` accepts) are refused."""
    return json.loads(raw, parse_constant=_refuse_constant)
