"""Run a uvicorn server in a daemon thread (shared by the fake LLM server and the live-app helper)."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn


class ThreadedUvicorn:
    """One uvicorn server in a daemon thread: ``start`` waits until it accepts, ``stop`` joins it."""

    def __init__(self, config: uvicorn.Config, name: str) -> None:
        self.server = uvicorn.Server(config)
        self.name = name
        self._thread: threading.Thread | None = None

    def start(self, timeout: float, sockets: list[socket.socket] | None = None) -> None:
        """Serve in a thread; return once uvicorn is started (lifespan done, socket accepting)."""
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": sockets}, name=self.name, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} server did not start")
            time.sleep(0.01)

    def stop(self, timeout: float) -> None:
        """Ask uvicorn to exit (lifespan shutdown runs), forcing the exit if connections linger."""
        if self._thread is None:
            return
        self.server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.server.force_exit = True
            self._thread.join(timeout)
        self._thread = None
